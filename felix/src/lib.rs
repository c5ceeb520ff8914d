//! # tortie-felix — the node agent
//!
//! Owns the path from cluster state to this node's kernel: a pure calculation
//! from a datastore snapshot to desired state (per-pod /32 routes, blackholes
//! for affine IPAM blocks, interface sysctls), a reconciler that diffs desired
//! against actual and touches only what tortie owns (its route protocol
//! number), the prefixes to originate, and the installation of routes the BGP
//! speaker learned.
//!
//! Must not: speak BGP or parse packets.

pub mod agent;
pub mod calc;
pub mod compact;
pub mod learned;
pub mod netlink;
pub mod nexthop;
pub mod policy;
pub mod reconcile;
pub mod route;
pub mod sysctl;
mod v4map;
