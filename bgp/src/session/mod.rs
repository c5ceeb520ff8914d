//! BGP sessions: the pure cores — capability negotiation and the RFC 4271
//! finite state machine. The runtime (sockets, MD5, TTL security, timers)
//! feeds them events and carries out their actions.

mod framing;
pub mod fsm;
pub mod link_local;
pub mod listener;
pub mod negotiate;
pub mod outbox;
pub mod peer;
mod send_hold;
pub mod socket;

pub use fsm::{Action, Event, Fsm, FsmConfig, Reason, State, Timer, collision_winner, notification_words};
pub use negotiate::{LocalConfig, Negotiated, Refusal, Required, negotiate};
