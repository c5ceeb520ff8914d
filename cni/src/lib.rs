//! # tortie-cni — the CNI plugin
//!
//! Owns the CNI protocol (spec 1.0 / 1.1: ADD, DEL, CHECK, STATUS, GC,
//! VERSION) and pod veth plumbing the Calico way; addresses come from
//! block IPAM with node affinity (`tortie-ipam`).
//!
//! ```text
//!  runtime ──env + stdin──▶ spec (parse, check) ──▶ plugin ──▶ tortie-ipam (CAS on the datastore)
//!                                                          ├──▶ plumb (rtnetlink: veth, address, routes)
//!                                                          └──▶ WorkloadEndpoint (felix picks it up)
//! ```
//!
//! Must not: keep state outside the datastore.

pub mod plugin;
pub mod plumb;
pub mod report;
pub mod spec;
