//! # tortie-ipip — IP-in-IP tunnelling (RFC 2003)
//!
//! Owns the encapsulation decision per IP pool (Always / CrossSubnet /
//! Never), the kernel `tunl0` device where the kernel has the ipip module,
//! and a userspace data plane (TUN + raw IP protocol 4 socket) where it has
//! not.
//!
//! Must not: decide routes beyond "this next hop needs encapsulation".

mod batch;
pub mod kernel;
mod mode;
pub mod packet;
pub mod userspace;

use std::net::Ipv4Addr;
use std::sync::Arc;

pub use mode::{EncapMode, encapsulate};
use tokio::sync::watch;
pub use userspace::EncapTable;

/// The userspace data plane's device name.
pub const USERSPACE_DEVICE: &str = "tortie-ipip";

/// Why the tunnel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The kernel has no ipip support (no module).
    #[error("the kernel has no IPIP support (no ipip module)")]
    Unsupported,
    /// The kernel refused a request.
    #[error("{what}: {why}")]
    Kernel {
        /// What was being done.
        what: &'static str,
        /// The kernel's answer.
        why: String,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

impl TunnelError {
    fn io(what: String, source: std::io::Error) -> TunnelError {
        TunnelError::Io { what, source }
    }
}

/// A running tunnel.
pub enum Tunnel {
    /// The kernel's `tunl0`, with the tunnel address given to it.
    Kernel(Option<Ipv4Addr>),
    /// The userspace data plane.
    Userspace(userspace::Userspace),
}

impl Tunnel {
    /// The device routes go through.
    pub fn device(&self) -> &'static str {
        match self {
            Tunnel::Kernel(_) => kernel::DEVICE,
            Tunnel::Userspace(_) => USERSPACE_DEVICE,
        }
    }

    /// Takes the tunnel down (no pool asks for IPIP any more): the
    /// userspace plane stops and its device goes, and the kernel routes
    /// through it with it; `tunl0`, which belongs to the ipip module,
    /// gives back the tunnel address and goes down.
    pub async fn stop(self) -> Result<(), TunnelError> {
        match self {
            Tunnel::Kernel(Some(address)) => kernel::teardown(address).await.map(|_| ()),
            Tunnel::Kernel(None) => Ok(()),
            Tunnel::Userspace(plane) => {
                drop(plane);
                kernel::delete(USERSPACE_DEVICE).await.map(|_| ())
            }
        }
    }
}

/// Removes a tunnel kept from an earlier run once no pool asks for IPIP:
/// the userspace data plane's (persistent) device, and `tunnel_address`
/// (the one the node published) on `tunl0`; whether there was either.
pub async fn remove_kept(tunnel_address: Option<Ipv4Addr>) -> Result<bool, TunnelError> {
    let device = userspace::exists(USERSPACE_DEVICE) && kernel::delete(USERSPACE_DEVICE).await?;
    let address = match tunnel_address {
        Some(a) => kernel::teardown(a).await?,
        None => false,
    };
    Ok(device || address)
}

/// Brings IPIP up: the kernel's `tunl0` where it exists, else (saying so)
/// the userspace data plane, which `table` feeds and which counts into
/// `counters`.
pub async fn start(
    local: Ipv4Addr,
    tunnel_address: Option<Ipv4Addr>,
    underlay_mtu: u16,
    table: watch::Receiver<Arc<EncapTable>>,
    counters: Arc<userspace::Counters>,
) -> Result<Tunnel, TunnelError> {
    let mtu = u32::from(underlay_mtu.saturating_sub(packet::OUTER_LEN as u16));
    match kernel::setup(tunnel_address, mtu).await {
        Ok(()) => {
            tracing::info!(device = kernel::DEVICE, "kernel IPIP tunnel up");
            Ok(Tunnel::Kernel(tunnel_address))
        }
        Err(TunnelError::Unsupported) => {
            tracing::info!("kernel has no ipip module: using tortie's userspace IPIP data plane (TUN + raw socket)");
            let config = userspace::Config { device: USERSPACE_DEVICE.into(), local, tunnel_address, underlay_mtu };
            userspace::start(&config, table, counters).map(Tunnel::Userspace)
        }
        Err(e) => Err(e),
    }
}
