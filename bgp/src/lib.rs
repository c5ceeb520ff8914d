//! # tortie-bgp — the BGP-4 speaker
//!
//! Owns everything BGP: the wire codec (bytes ⇄ typed messages), the session
//! finite state machine (RFC 4271 §8), sessions, the RIBs, the decision
//! process, policy and update groups. The codec, the FSM and the decision
//! process are sans-IO: pure functions and plain structs, with sockets and
//! clocks kept at the edges.
//!
//! Must not: know about pods, netlink or the datastore. Callers hand it
//! prefixes to originate and read best paths back.

mod graceful;
pub use graceful::Retention;
pub mod malloc;
pub mod packet;
pub mod rib;
pub mod session;
pub mod speaker;
