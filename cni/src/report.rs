//! Telling the node daemon how an ADD or DEL went, for its metrics: one
//! small JSON POST to its local API socket (`<run_dir>/tortie.sock`), with
//! a short timeout. The plugin's answer never waits on it or fails by it —
//! a node without a daemon simply has no CNI metrics.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The daemon's default run directory.
pub const DEFAULT_RUN_DIR: &str = "/var/run/tortie";
/// The API socket's name there.
const SOCKET: &str = "tortie.sock";
/// How long the report may take.
const TIMEOUT: Duration = Duration::from_millis(100);

/// One finished command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CniEvent {
    /// `ADD` or `DEL`.
    pub command: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// How long it took, seconds.
    pub seconds: f64,
}

/// Sends `event` to the daemon of `run_dir`; failures are ignored (debug log).
pub fn send(run_dir: &Path, event: &CniEvent) {
    let result = (|| -> std::io::Result<()> {
        let body = serde_json::to_vec(event)?;
        let mut s = UnixStream::connect(run_dir.join(SOCKET))?;
        s.set_write_timeout(Some(TIMEOUT))?;
        s.set_read_timeout(Some(TIMEOUT))?;
        let head = format!(
            "POST /cni HTTP/1.1\r\nHost: tortie\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes())?;
        s.write_all(&body)?;
        let mut reply = [0u8; 64];
        let _ = s.read(&mut reply)?;
        Ok(())
    })();
    if let Err(e) = result {
        tracing::debug!(error = %e, "no node daemon to report the CNI command to");
    }
}
