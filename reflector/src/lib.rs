//! # tortie-reflector — the route-reflector role (RFC 4456)
//!
//! Owns the reflection rules (client / non-client / eBGP), ORIGINATOR_ID and
//! CLUSTER_LIST handling and their loop checks, and the standalone reflector
//! deployment (`tortie reflector run`).
//!
//! Must not: re-implement sessions or the RIB; it plugs into `tortie-bgp`'s.
