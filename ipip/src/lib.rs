//! # tortie-ipip — IP-in-IP tunnelling (RFC 2003)
//!
//! Owns the encapsulation decision per IP pool (Always / CrossSubnet /
//! Never), the kernel `tunl0` device where the kernel has the ipip module,
//! and a userspace data plane (TUN + raw IP protocol 4 socket) where it has
//! not.
//!
//! Must not: decide routes beyond "this next hop needs encapsulation".

mod mode;

pub use mode::encapsulate;
