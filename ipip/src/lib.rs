//! # tortie-ipip — encapsulation: IP-in-IP (RFC 2003) and VXLAN (RFC 7348)
//!
//! Owns the encapsulation decision per IP pool (Always / CrossSubnet /
//! Never), the eBPF IPIP data plane (TC programs on a tunnel device and the
//! underlay, outliving the daemon) wherever the kernel loads them, the
//! kernel `tunl0` device where it does not but has the ipip module, and
//! the kernel's vxlan device with its neighbour and FDB entries
//! ([`vxlan`]).
//!
//! Must not: decide routes beyond "this next hop needs encapsulation".

pub mod ebpf;
pub mod kernel;
mod mode;
mod table;
pub mod vxlan;

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

pub use mode::{EncapMode, encapsulate};
pub use table::{EncapTable, MAX_HOPS};
use tokio::sync::watch;

/// The outer IPv4 header's length (no options): what the tunnel takes off the MTU.
pub const OUTER_LEN: u16 = 20;

/// How soon a data plane that could not follow its table tries again (a
/// stable cluster may publish no new table for a long time).
const RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits for the next reason to reconcile a data plane: a new table, or
/// after a failed pass the retry time; `false` once the table's sender is gone.
async fn next_pass<T>(table: &mut watch::Receiver<T>, failed: bool) -> bool {
    let retry = async {
        match failed {
            true => tokio::time::sleep(RETRY).await,
            false => std::future::pending().await,
        }
    };
    tokio::select! {
        changed = table.changed() => changed.is_ok(),
        () = retry => true,
    }
}

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
    /// The eBPF data plane.
    Ebpf(ebpf::Plane),
    /// The kernel's `tunl0`, with the tunnel address given to it.
    Kernel(Option<Ipv4Addr>),
}

impl Tunnel {
    /// The device routes go through.
    pub fn device(&self) -> &'static str {
        match self {
            Tunnel::Ebpf(_) => ebpf::DEVICE,
            Tunnel::Kernel(_) => kernel::DEVICE,
        }
    }

    /// Takes the tunnel down (no pool asks for IPIP any more): the eBPF
    /// plane's device, programs and maps go, and the kernel routes through
    /// it with them; `tunl0`, which belongs to the ipip module, gives back
    /// the tunnel address and goes down.
    pub async fn stop(self, local: Ipv4Addr, bpffs: &Path) -> Result<(), TunnelError> {
        match self {
            Tunnel::Ebpf(plane) => {
                drop(plane);
                ebpf::remove(local, bpffs).await.map(|_| ())
            }
            Tunnel::Kernel(Some(address)) => kernel::teardown(address).await.map(|_| ()),
            Tunnel::Kernel(None) => Ok(()),
        }
    }
}

/// Removes a tunnel kept from an earlier run once no pool asks for IPIP:
/// the eBPF plane's device, program and pinned maps, and `tunnel_address`
/// (the node's tunnel address) on `tunl0`; whether there was any.
pub async fn remove_kept(local: Ipv4Addr, tunnel_address: Option<Ipv4Addr>, bpffs: &Path) -> Result<bool, TunnelError> {
    let plane = ebpf::remove(local, bpffs).await?;
    let address = match tunnel_address {
        Some(a) => kernel::teardown(a).await?,
        None => false,
    };
    Ok(plane || address)
}

/// Brings IPIP up: the eBPF data plane where the kernel loads its
/// programs, else the kernel's `tunl0` where the ipip module is, else an
/// error naming both.
pub async fn start(config: &ebpf::PlaneConfig, table: watch::Receiver<Arc<EncapTable>>) -> Result<Tunnel, TunnelError> {
    let bpf = match ebpf::start(config, table).await {
        Ok(plane) => return Ok(Tunnel::Ebpf(plane)),
        Err(e) => e,
    };
    tracing::warn!(error = %bpf, "the eBPF IPIP data plane cannot run here: trying the kernel's tunl0");
    // Whatever part of it did start (device, a program, pinned maps) goes:
    // two planes must not both claim protocol 4.
    if let Err(e) = ebpf::remove(config.local, &config.bpffs).await {
        tracing::warn!(error = %e, "removing the half-started eBPF IPIP data plane");
    }
    match kernel::setup(config.tunnel_address, config.mtu).await {
        Ok(()) => {
            tracing::info!(device = kernel::DEVICE, "kernel IPIP tunnel up");
            Ok(Tunnel::Kernel(config.tunnel_address))
        }
        Err(TunnelError::Unsupported) => Err(TunnelError::Kernel {
            what: "starting IPIP",
            why: format!("no eBPF data plane ({bpf}) and no ipip module in the kernel"),
        }),
        Err(e) => Err(e),
    }
}
