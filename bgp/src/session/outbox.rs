//! A peer's outbound queue: encoded UPDATEs handed over by the speaker,
//! written by the peer's task at the pace of its socket. The speaker never
//! waits on it: past [`HIGH_WATER`] queued bytes a push is refused and the
//! peer is *behind*; the speaker then keeps only which prefixes changed
//! for it (latest state per prefix, bounded by the table size, as BIRD's
//! buckets and FRR's update-group queues do) and sends them once the
//! writer has emptied the queue and says so.
//!
//! The writer sends the queued messages straight from the queue (vectored
//! writes of the very bytes an update group shares): no copy per peer.
//!
//! ```text
//!  speaker ──push(bytes)──▶ Outbox ──peek()/consume(n)──▶ peer task ──▶ socket
//!     ▲                                           │ queue empty after being behind
//!     └───────────── drained (peer name) ◀────────┘
//! ```

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

/// Bytes queued past which a push is refused (the peer is behind).
pub const HIGH_WATER: usize = 1 << 20;

/// Queue slots an empty queue keeps.
const KEEP_SLOTS: usize = 64;

/// Messages the writer hands the socket in one vectored write at most.
pub const WRITE_SLICES: usize = 64;

#[derive(Debug, Default)]
struct Queue {
    messages: VecDeque<Bytes>,
    bytes: usize,
    /// Octets of the first message already written.
    offset: usize,
    /// A push was refused since the queue last emptied.
    behind: bool,
    /// The session the queue is for (its number, from 1), or 0 between
    /// sessions. A push names the session it is meant for and is dropped
    /// unless that one is open: a speaker that has not yet seen a session
    /// end never reaches the next one.
    session: u64,
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
    pub fn push(&self, session: u64, message: Bytes) -> bool {
        self.push_all(session, [&message]) == 1
    }

    /// Queues messages for `session` in order until one is refused (see
    /// [`Outbox::push`]); returns how many were queued (all of them unless
    /// `session` is the open one: they are dropped).
    pub fn push_all<'a>(&self, session: u64, messages: impl IntoIterator<Item = &'a Bytes>) -> usize {
        let mut q = self.lock();
        let open = q.session != 0 && q.session == session;
        let mut queued = 0;
        for message in messages {
            if !open {
                queued += 1;
                continue;
            }
            if q.behind || q.bytes >= HIGH_WATER {
                q.behind = true;
                break;
            }
            q.bytes += message.len();
            q.messages.push_back(message.clone());
            queued += 1;
        }
        drop(q);
        if open && queued > 0 {
            self.queued.notify_one();
        }
        queued
    }

    /// Queues one message whatever the mark (small control messages that
    /// must keep their place, e.g. End-of-RIB); `false` if the peer is
    /// behind (the message must then wait for the backlog).
    pub fn push_control(&self, session: u64, message: Bytes) -> bool {
        let mut q = self.lock();
        if q.session == 0 || q.session != session {
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

    /// The next messages to write (the first without what is written of
    /// it already), at most [`WRITE_SLICES`]: shared bytes, no copy.
    pub fn peek(&self) -> Vec<Bytes> {
        let q = self.lock();
        let mut out: Vec<Bytes> = q.messages.iter().take(WRITE_SLICES).cloned().collect();
        if let Some(first) = out.first_mut() {
            *first = first.slice(q.offset..);
        }
        out
    }

    /// `n` octets were written; returns how many BGP messages that completed
    /// (a queued entry may hold several: see [`messages_in`]),
    /// and whether the queue went empty while the peer was behind (the
    /// speaker must then be told: it has a backlog for this peer).
    pub fn consume(&self, mut n: usize) -> (usize, Taken) {
        let mut q = self.lock();
        let mut done = 0;
        q.bytes = q.bytes.saturating_sub(n);
        while let Some(front) = q.messages.front() {
            let rest = front.len() - q.offset;
            if n < rest {
                q.offset += n;
                break;
            }
            n -= rest;
            done += messages_in(front);
            q.offset = 0;
            q.messages.pop_front();
        }
        if q.messages.is_empty() && q.messages.capacity() > KEEP_SLOTS {
            // A burst's queue is not kept: a reflector has thousands of these.
            q.messages = VecDeque::new();
        }
        if q.messages.is_empty() && q.behind {
            q.behind = false;
            (done, Taken::Drained)
        } else {
            (done, Taken::More)
        }
    }

    /// Whether a message is partly written: nothing else may go on the
    /// wire before its rest (between the messages of an entry, it may).
    pub fn mid_message(&self) -> bool {
        let q = self.lock();
        q.offset > 0 && q.messages.front().is_some_and(|entry| !message_ends(entry).any(|end| end == q.offset))
    }

    /// Session number `session` (from 1) came up: pushes for it are
    /// queued. Called by the peer's own task, which also writes the queue.
    pub fn open(&self, session: u64) {
        *self.lock() = Queue { session, ..Queue::default() };
    }

    /// The session ended: everything queued is dropped, and so are pushes
    /// until the next session is open (called by the peer's own task).
    pub fn close(&self) {
        *self.lock() = Queue::default();
    }

    /// Whether anything waits.
    pub fn is_empty(&self) -> bool {
        self.lock().messages.is_empty()
    }
}

/// How many BGP messages `entry` holds: the speaker queues an update
/// group's UPDATEs of one batch as one entry (one slot per member, not one
/// per UPDATE). Bytes that are not messages count as one.
fn messages_in(entry: &[u8]) -> usize {
    message_ends(entry).count().max(1)
}

/// Where each BGP message in `entry` ends: each gives its length at octets
/// 16–17 (RFC 4271 §4.1). Stops at bytes that are not a message.
fn message_ends(entry: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let &[hi, lo] = entry.get(at + 16..at + 18)? else { return None };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        (len >= 19).then(|| {
            at += len;
            at
        })
    })
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

/// Writes what `outbox` holds as a socket would take `budget` octets per
/// write (tests).
#[cfg(test)]
fn write_all(outbox: &Outbox, budget: usize) -> (Vec<u8>, usize) {
    let (mut wire, mut drained) = (Vec::new(), 0);
    loop {
        let slices = outbox.peek();
        if slices.is_empty() {
            return (wire, drained);
        }
        let mut n = 0;
        for s in &slices {
            let take = s.len().min(budget - n);
            wire.extend_from_slice(&s[..take]);
            n += take;
            if n == budget {
                break;
            }
        }
        if outbox.consume(n).1 == Taken::Drained {
            drained += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_until_the_writer_empties_it_and_then_says_so_once() {
        let out = Outbox::default();
        out.open(1);
        let msg = Bytes::from(vec![0u8; 4096]);
        let mut pushed = 0;
        while out.push(1, msg.clone()) {
            pushed += 1;
        }
        assert_eq!(pushed * 4096, HIGH_WATER);
        assert!(out.is_behind());
        // Control messages wait for the backlog too, once behind.
        assert!(!out.push_control(1, Bytes::from_static(b"eor")));
        let (wire, drained) = write_all(&out, 10_000);
        assert_eq!((wire.len(), drained), (HIGH_WATER, 1));
        assert!(!out.is_behind());
        assert!(out.push(1, msg));
    }

    #[test]
    fn messages_leave_whole_and_in_order_whatever_the_socket_takes_per_write() {
        for budget in [1, 7, 999, 1000, 1001, 65_536] {
            let out = Outbox::default();
            out.open(1);
            for i in 0..100u8 {
                assert!(out.push(1, Bytes::from(vec![i; 1000])));
            }
            let (wire, _) = write_all(&out, budget);
            assert_eq!(wire.len(), 100_000);
            assert!(wire.chunks(1000).enumerate().all(|(i, c)| c.iter().all(|b| usize::from(*b) == i)), "{budget}");
            assert_eq!(out.queued_bytes(), 0);
            assert!(!out.mid_message());
        }
    }

    #[test]
    fn a_message_partly_written_is_known_as_such() {
        let out = Outbox::default();
        out.open(1);
        assert!(out.push(1, Bytes::from_static(b"0123456789")));
        assert_eq!(out.consume(4), (0, Taken::More));
        assert!(out.mid_message());
        assert_eq!(out.peek(), vec![Bytes::from_static(b"456789")]);
        assert_eq!(out.consume(6), (1, Taken::More));
        assert!(!out.mid_message() && out.is_empty());
    }

    #[test]
    fn an_entry_of_several_updates_counts_each_once_it_is_written() {
        let out = Outbox::default();
        out.open(1);
        // Three messages of 19, 23 and 30 octets in one entry (RFC 4271 §4.1 headers).
        let mut joined = Vec::new();
        for len in [19u16, 23, 30] {
            joined.extend([0xff; 16]);
            joined.extend(len.to_be_bytes());
            joined.resize(joined.len() + usize::from(len) - 18, 2);
        }
        assert!(out.push(1, Bytes::from(joined)));
        assert_eq!(out.consume(50), (0, Taken::More), "a part of the entry: nothing done yet");
        assert!(out.mid_message(), "in the third message");
        assert_eq!(out.consume(22), (3, Taken::More));
        assert!(out.is_empty());
    }

    #[test]
    fn between_the_messages_of_an_entry_other_messages_may_go() {
        let out = Outbox::default();
        out.open(1);
        let message = |len: u16| {
            let mut m = vec![0xff; 16];
            m.extend(len.to_be_bytes());
            m.resize(usize::from(len), 2);
            m
        };
        assert!(out.push(1, Bytes::from([message(19), message(23)].concat())));
        assert_eq!(out.consume(19), (0, Taken::More));
        assert!(!out.mid_message(), "the first message is whole on the wire");
        assert_eq!(out.consume(1), (0, Taken::More));
        assert!(out.mid_message());
    }

    #[test]
    fn nothing_pushed_for_one_session_reaches_another() {
        let out = Outbox::default();
        assert!(out.push(1, Bytes::from_static(b"before any session")));
        assert!(out.is_empty());
        out.open(1);
        assert!(out.push(1, Bytes::from_static(b"old session")));
        out.close();
        assert!(out.push(1, Bytes::from_static(b"sent after the end")));
        out.open(2);
        assert!(out.is_empty());
        // A speaker that has not seen session 1 end yet pushes for it: dropped.
        assert!(out.push(1, Bytes::from_static(b"late, for the old session")));
        assert!(out.push_control(1, Bytes::from_static(b"late marker")));
        assert!(out.is_empty());
        assert!(out.push(2, Bytes::from_static(b"for this one")));
        assert_eq!(out.queued_bytes(), 12);
    }
}
