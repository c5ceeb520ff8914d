//! Polling for a condition with a deadline, keeping the last observation so
//! a timeout says what the lab saw instead of just "timed out".

use std::time::{Duration, Instant};

use crate::{LabError, Result};

/// How often [`wait_for`] polls.
const POLL: Duration = Duration::from_millis(100);

/// One observation of a condition being waited for.
#[derive(Debug)]
pub enum Check<T> {
    /// The condition holds; waiting ends with this value.
    Done(T),
    /// Not yet; the text says what was seen instead (reported on timeout).
    Pending(String),
}

/// Calls `probe` every 100 ms until it returns [`Check::Done`] or `timeout`
/// passes. Errors count as "not yet" (a control socket that is not up yet),
/// except [`LabError::DaemonExited`], which can never clear and ends the
/// wait at once. A timeout reports the last observation.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<Check<T>>) -> Result<T> {
    let start = Instant::now();
    let mut last;
    loop {
        match probe() {
            Ok(Check::Done(value)) => return Ok(value),
            Ok(Check::Pending(seen)) => last = seen,
            Err(e @ LabError::DaemonExited { .. }) => return Err(e),
            Err(e) => last = e.to_string(),
        }
        if start.elapsed() >= timeout {
            return Err(LabError::Timeout { what: what.to_string(), after: timeout, last });
        }
        std::thread::sleep(POLL);
    }
}
