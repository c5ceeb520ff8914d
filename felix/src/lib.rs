//! # tortie-felix — the node agent
//!
//! Owns the path from cluster state to this node's kernel: a pure calculation
//! from a datastore snapshot to desired state (per-pod /32 routes, blackholes
//! for affine IPAM blocks, interface sysctls, ACLs), reconcilers that diff
//! desired against actual and touch only what tortie owns (its route protocol
//! number, its nftables table), the prefixes to originate, and the
//! installation of routes the BGP speaker learned.
//!
//! Must not: speak BGP or parse packets.
