//! The send hold timer of a session (RFC 9687).

use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::Instant;

/// The send hold timer (RFC 9687): it runs from the last progress while
/// something we have to send waits for the socket, and is polled with the
/// socket itself, so it runs out whether or not anything else happens.
pub(super) struct SendHold {
    since: Option<Instant>,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl SendHold {
    pub(super) fn new() -> SendHold {
        SendHold { since: None, timer: Box::pin(tokio::time::sleep(Duration::ZERO)) }
    }

    /// Takes one I/O step's outcome: `blocked` (something waits for the
    /// socket), `progress` (some of it went); `true` when the timer ran out.
    pub(super) fn step(&mut self, blocked: bool, progress: bool, hold: Duration, cx: &mut Context<'_>) -> bool {
        if !blocked {
            self.since = None;
            return false;
        }
        if progress || self.since.is_none() {
            let now = Instant::now();
            self.since = Some(now);
            self.timer.as_mut().reset(now + hold);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }

    pub(super) fn clear(&mut self) {
        self.since = None;
    }
}
