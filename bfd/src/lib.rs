//! # tortie-bfd — Bidirectional Forwarding Detection (RFC 5880, 5881)
//!
//! Owns the Control packet codec, one session's state machine (sans-IO:
//! packets and the time in, packets and state changes out) and the UDP task
//! that runs the sessions of single-hop IPv4 peers. It tells its user "peer
//! X is up / down", nothing more.
//!
//! Must not: know BGP.

pub mod packet;
pub mod session;
pub mod udp;

pub use packet::{Control, Diag, Malformed, State};
pub use session::{Change, Session, Timers};
pub use udp::{Bfd, Event, Peer, View, start};
