//! A peer's outbound queue: encoded UPDATEs handed over by the speaker,
//! written by the peer's task at the pace of its socket. The speaker never
//! waits on it: past [`HIGH_WATER`] queued bytes a push is refused and the
//! peer is *behind*; the speaker then keeps only which prefixes changed
//! for it (latest state per prefix, bounded by the table size, as BIRD's
//! buckets and FRR's update-group queues do) and sends them once the
//! writer has emptied the queue and says so.
//!
//! ```text
//!  speaker ──push(bytes)──▶ Outbox ──take()──▶ peer task ──▶ socket
//!     ▲                                           │ queue empty after being behind
//!     └───────────── drained (peer name) ◀────────┘
//! ```

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

/// Bytes queued past which a push is refused (the peer is behind).
pub const HIGH_WATER: usize = 1 << 20;

/// Bytes the writer takes from the queue at a time.
pub const CHUNK: usize = 64 * 1024;

#[derive(Debug, Default)]
struct Queue {
    messages: VecDeque<Bytes>,
    bytes: usize,
    /// A push was refused since the queue last emptied.
    behind: bool,
    /// A session is up and the speaker knows it: between the session's
    /// end and the speaker's next Up, pushes are dropped, so nothing meant
    /// for one session reaches the next.
    open: bool,
}

/// One peer's outbound queue (shared by the speaker and the peer task).
#[derive(Debug, Default)]
pub struct Outbox {
    queue: Mutex<Queue>,
    /// Wakes the writer when something was queued.
    pub queued: Notify,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one encoded message unless the queue is past its high-water
    /// mark; `false` means refused, and the peer is behind until the writer
    /// has emptied the queue.
    pub fn push(&self, message: Bytes) -> bool {
        let mut q = self.lock();
        if !q.open {
            return true;
        }
        if q.behind || q.bytes >= HIGH_WATER {
            q.behind = true;
            return false;
        }
        q.bytes += message.len();
        q.messages.push_back(message);
        drop(q);
        self.queued.notify_one();
        true
    }

    /// Queues one message whatever the mark (small control messages that
    /// must keep their place, e.g. End-of-RIB); `false` if the peer is
    /// behind (the message must then wait for the backlog).
    pub fn push_control(&self, message: Bytes) -> bool {
        let mut q = self.lock();
        if !q.open {
            return true;
        }
        if q.behind {
            return false;
        }
        q.bytes += message.len();
        q.messages.push_back(message);
        drop(q);
        self.queued.notify_one();
        true
    }

    /// Whether pushes are being refused.
    pub fn is_behind(&self) -> bool {
        self.lock().behind
    }

    /// Bytes waiting.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Moves whole messages, about [`CHUNK`] bytes, into `buf`; returns how
    /// many, and whether the queue went empty while the peer was behind
    /// (the speaker must then be told: it has a backlog for this peer).
    pub fn take(&self, buf: &mut BytesMut) -> (usize, Taken) {
        let mut q = self.lock();
        let start = buf.len();
        let mut taken = 0;
        while let Some(m) = q.messages.front() {
            if buf.len() > start && buf.len() - start + m.len() > CHUNK {
                break;
            }
            buf.extend_from_slice(m);
            q.bytes -= m.len();
            q.messages.pop_front();
            taken += 1;
        }
        if q.messages.is_empty() && q.behind {
            q.behind = false;
            (taken, Taken::Drained)
        } else {
            (taken, Taken::More)
        }
    }

    /// The speaker has seen the session come up: pushes are queued.
    pub fn open(&self) {
        *self.lock() = Queue { open: true, ..Queue::default() };
    }

    /// The session ended: everything queued is dropped, and pushes are
    /// until the speaker sees the next session up.
    pub fn close(&self) {
        *self.lock() = Queue::default();
    }

    /// Whether anything waits.
    pub fn is_empty(&self) -> bool {
        self.lock().messages.is_empty()
    }
}

/// What [`Outbox::take`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Nothing to report.
    More,
    /// The queue emptied after a refused push: the speaker's backlog for
    /// this peer may go now.
    Drained,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_until_the_writer_empties_it_and_then_says_so_once() {
        let out = Outbox::default();
        out.open();
        let msg = Bytes::from(vec![0u8; 4096]);
        let mut pushed = 0;
        while out.push(msg.clone()) {
            pushed += 1;
        }
        assert_eq!(pushed * 4096, HIGH_WATER);
        assert!(out.is_behind());
        // Control messages wait for the backlog too, once behind.
        assert!(!out.push_control(Bytes::from_static(b"eor")));
        let mut buf = BytesMut::new();
        let mut drained = 0;
        loop {
            buf.clear();
            let (_, taken) = out.take(&mut buf);
            assert!(buf.len() <= CHUNK);
            if taken == Taken::Drained {
                drained += 1;
            }
            if out.is_empty() {
                break;
            }
        }
        assert_eq!(drained, 1);
        assert!(!out.is_behind());
        assert_eq!(out.take(&mut buf), (0, Taken::More));
        assert!(out.push(msg));
    }

    #[test]
    fn messages_leave_whole_and_in_order() {
        let out = Outbox::default();
        out.open();
        for i in 0..100u8 {
            assert!(out.push(Bytes::from(vec![i; 1000])));
        }
        let mut all = BytesMut::new();
        while !out.is_empty() {
            let mut buf = BytesMut::new();
            out.take(&mut buf);
            assert_eq!(buf.len() % 1000, 0, "only whole messages");
            all.extend_from_slice(&buf);
        }
        assert!(all.chunks(1000).enumerate().all(|(i, c)| c.iter().all(|b| usize::from(*b) == i)));
        assert_eq!(out.queued_bytes(), 0);
    }

    #[test]
    fn nothing_pushed_between_sessions_reaches_the_next() {
        let out = Outbox::default();
        assert!(out.push(Bytes::from_static(b"before any session")));
        assert!(out.is_empty());
        out.open();
        assert!(out.push(Bytes::from_static(b"old session")));
        out.close();
        assert!(out.push(Bytes::from_static(b"sent after the end")));
        out.open();
        assert!(out.is_empty());
    }
}
