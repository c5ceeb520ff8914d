//! # tortie-store — the datastore
//!
//! Owns the resource model (Calico's `projectcalico.org/v3` schema) and one
//! etcd-style key-value interface (get, range, put, delete, compare-and-swap
//! transactions, watch from a revision, leases) with two engines: an embedded
//! SQLite file (the default, shared by several processes on one host) and
//! etcd v3 for clusters.
//!
//! Must not: know who consumes the resources.

pub mod api;
mod datastore;
mod error;
pub mod ipam;
pub mod kv;
pub mod resources;
pub mod selector;
pub mod syncer;

pub use datastore::{DEFAULT_URL, Datastore};
pub use error::StoreError;
