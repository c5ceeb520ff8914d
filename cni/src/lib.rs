//! # tortie-cni — the CNI plugin and IPAM
//!
//! Owns the CNI protocol (spec 1.0 / 1.1: ADD, DEL, CHECK, STATUS, GC,
//! VERSION), pod veth plumbing the Calico way, and block IPAM with node
//! affinity.
//!
//! ```text
//!  runtime ──env + stdin──▶ spec (parse, check) ──▶ plugin ──▶ ipam  (CAS on the datastore)
//!                                                          ├──▶ plumb (rtnetlink: veth, address, routes)
//!                                                          └──▶ WorkloadEndpoint (felix picks it up)
//! ```
//!
//! Must not: keep state outside the datastore.

pub mod ipam;
pub mod plugin;
pub mod plumb;
pub mod report;
pub mod spec;
