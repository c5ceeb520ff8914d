//! Network policy: Calico's NetworkPolicy and GlobalNetworkPolicy, compiled
//! (purely) into tortie's own nftables table `inet tortie` and applied in
//! atomic transactions.
//!
//! ```text
//!  resources ──parse──▶ model (Endpoint, Policy) ──compile──▶ Ruleset ──nft──▶ JSON ──apply──▶ kernel
//!                                                              │ diff with the last one
//!                                                              └─▶ incremental transaction
//! ```

pub mod apply;
pub mod compile;
pub mod host;
pub mod model;
pub mod nfnl;
pub mod nft;
pub mod ruleset;
pub mod show;

pub use compile::{Inputs, compile};
pub use host::HostRules;
pub use model::{Endpoint, NetworkSet, Policy, PolicyError};
pub use ruleset::Ruleset;
