//! # tortie-lab — network-namespace labs with real peers
//!
//! Owns the test bed that `proto-tests/` and `tortie lab` share: network
//! namespaces with unique names, veth links (point-to-point or into a bridge
//! namespace), addresses, routes and sysctls; long-lived processes run
//! inside a namespace with their output collected to a log; and typed
//! harnesses for real peers (BIRD 2, FRR, GoBGP, ExaBGP, etcd).
//!
//! Everything it creates is removed on `Drop`, also while a test panics:
//! processes first (SIGTERM, then SIGKILL to the whole process group), then
//! the namespaces (after killing anything still inside), then the run
//! directory.
//!
//! Must not: contain tortie's own logic. It drives the kernel through
//! `ip(8)` and the peers through their own CLIs, exactly as an operator
//! would, so a test failure points at tortie and not at the harness.

mod bpffs;
mod cmd;
mod daemon;
mod error;
mod lab;
pub mod leftovers;
mod netns;
pub mod peers;
pub mod pod;
pub mod table;
pub mod tcp;
pub mod usage;
mod wait;

pub use bpffs::bpffs;
pub use daemon::Daemon;
pub use error::{LabError, Result};
pub use lab::Lab;
pub use netns::{Bridge, Netns, veth};
pub use pod::Pod;
pub use wait::{Check, wait_for};
