//! The userspace IPIP data plane, for kernels without the ipip module: a
//! TUN device the kernel routes tunnelled traffic into (`via <node> dev
//! <tun> onlink`, the same routes as with `tunl0`), and a raw IPv4 socket
//! for protocol 4 that sends the encapsulated packets and receives the
//! peers'. Only packets from known cluster nodes are unwrapped — never an
//! open relay. The wire format is RFC 2003's, so the other end can be a
//! Linux kernel `ipip` tunnel.
//!
//! ```text
//!  kernel route ─▶ TUN ─▶ encap task (lookup inner dst → node) ─▶ raw socket (proto 4) ─▶ underlay
//!  underlay ─▶ raw socket ─▶ decap task (known node?) ─▶ TUN ─▶ kernel
//! ```

use std::collections::HashSet;
use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ipnet::Ipv4Net;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use crate::TunnelError;
use crate::packet::{self, Discard, IPPROTO_IPIP, OUTER_LEN};

/// Where each tunnelled prefix goes, and who may send to us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncapTable {
    /// (prefix, node), longest prefix first.
    routes: Vec<(Ipv4Net, Ipv4Addr)>,
    /// Cluster nodes: the only accepted outer sources.
    nodes: HashSet<Ipv4Addr>,
}

impl EncapTable {
    /// A table from tunnelled prefixes and the cluster's node addresses.
    pub fn new(
        routes: impl IntoIterator<Item = (Ipv4Net, Ipv4Addr)>,
        nodes: impl IntoIterator<Item = Ipv4Addr>,
    ) -> Self {
        let mut routes: Vec<_> = routes.into_iter().collect();
        routes.sort_by(|a, b| b.0.prefix_len().cmp(&a.0.prefix_len()).then(a.0.cmp(&b.0)));
        EncapTable { routes, nodes: nodes.into_iter().collect() }
    }

    /// The node behind `dst` (longest match).
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        self.routes.iter().find(|(net, _)| net.contains(&dst)).map(|(_, node)| *node)
    }

    /// Whether `src` is a cluster node.
    pub fn is_node(&self, src: Ipv4Addr) -> bool {
        self.nodes.contains(&src)
    }
}

/// Data-plane counters (exported as metrics).
#[derive(Debug, Default)]
pub struct Counters {
    /// Packets and bytes wrapped and sent.
    pub encap_packets: AtomicU64,
    /// Bytes of inner packets sent.
    pub encap_bytes: AtomicU64,
    /// Packets unwrapped and delivered.
    pub decap_packets: AtomicU64,
    /// Bytes of inner packets delivered.
    pub decap_bytes: AtomicU64,
    /// Dropped: no tunnelled route for the inner destination.
    pub drop_no_route: AtomicU64,
    /// Dropped: outer source is not a cluster node.
    pub drop_unknown_source: AtomicU64,
    /// Dropped: malformed, not IPv4, a fragment.
    pub drop_malformed: AtomicU64,
    /// Dropped: a send or write failed.
    pub drop_io: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Data-plane settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// TUN device name (≤ 15 bytes).
    pub device: String,
    /// This node's underlay address (outer source).
    pub local: Ipv4Addr,
    /// The node's tunnel address (on the device, /32).
    pub tunnel_address: Option<Ipv4Addr>,
    /// Underlay MTU; the device gets 20 bytes less (the outer header).
    pub underlay_mtu: u16,
}

/// A running data plane; dropping it stops it and removes the device.
pub struct Userspace {
    /// Counters.
    pub counters: Arc<Counters>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Userspace {
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

fn count_drop(c: &Counters, why: Discard) {
    match why {
        Discard::Malformed | Discard::NotIpv4 | Discard::NotIpip | Discard::Fragment => bump(&c.drop_malformed),
    }
}

/// Opens the TUN device and the raw socket and starts both directions.
pub fn start(config: &Config, table: watch::Receiver<Arc<EncapTable>>) -> Result<Userspace, TunnelError> {
    let mtu = config.underlay_mtu.saturating_sub(OUTER_LEN as u16);
    let mut builder = tun_rs::DeviceBuilder::new().name(&config.device).mtu(mtu);
    if let Some(addr) = config.tunnel_address {
        builder = builder.ipv4(addr, 32u8, None);
    }
    let tun = Arc::new(
        builder.build_async().map_err(|e| TunnelError::io(format!("creating TUN device {}", config.device), e))?,
    );
    let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(i32::from(IPPROTO_IPIP))))
        .map_err(|e| TunnelError::io("opening a raw socket for IP protocol 4".into(), e))?;
    // We write the outer header ourselves (RFC 2003 TOS and DF copies).
    raw.set_header_included_v4(true).map_err(|e| TunnelError::io("IP_HDRINCL".into(), e))?;
    raw.set_nonblocking(true).map_err(|e| TunnelError::io("non-blocking raw socket".into(), e))?;
    // SAFETY: the AsyncFd owns the socket, whose descriptor stays open and the same until it is dropped.
    let raw = unsafe { AsyncFd::register(raw) }
        .map_err(|e| TunnelError::io("registering the raw socket".into(), std::io::Error::other(e.to_string())))?;
    let raw = Arc::new(raw);
    let counters = Arc::new(Counters::default());
    tracing::info!(device = config.device, mtu, local = %config.local, "userspace IPIP data plane up");
    let encap = tokio::spawn(encap_loop(tun.clone(), raw.clone(), config.local, table.clone(), counters.clone()));
    let decap = tokio::spawn(decap_loop(tun, raw, table, counters.clone()));
    Ok(Userspace { counters, tasks: vec![encap, decap] })
}

async fn encap_loop(
    tun: Arc<tun_rs::AsyncDevice>,
    raw: Arc<AsyncFd<Socket>>,
    local: Ipv4Addr,
    table: watch::Receiver<Arc<EncapTable>>,
    c: Arc<Counters>,
) {
    let mut buf = vec![0u8; 65_536];
    let mut out = Vec::with_capacity(65_536 + OUTER_LEN);
    loop {
        let n = match tun.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "reading the TUN device failed; IPIP send side stopped");
                return;
            }
        };
        let inner = &buf[..n];
        let dst = match packet::inner_destination(inner) {
            Ok(dst) => dst,
            Err(why) => {
                count_drop(&c, why);
                continue;
            }
        };
        let Some(node) = table.borrow().lookup(dst) else {
            bump(&c.drop_no_route);
            continue;
        };
        if let Err(why) = packet::encapsulate(inner, local, node, &mut out) {
            count_drop(&c, why);
            continue;
        }
        let to = SockAddr::from(SocketAddrV4::new(node, 0));
        let sent = loop {
            let Ok(mut guard) = raw.writable().await else { break false };
            match guard.try_io(|s| s.get_ref().send_to(&out, &to)) {
                Ok(result) => break result.is_ok(),
                Err(_would_block) => continue,
            }
        };
        if sent {
            bump(&c.encap_packets);
            c.encap_bytes.fetch_add(n as u64, Ordering::Relaxed);
        } else {
            bump(&c.drop_io);
        }
    }
}

async fn decap_loop(
    tun: Arc<tun_rs::AsyncDevice>,
    raw: Arc<AsyncFd<Socket>>,
    table: watch::Receiver<Arc<EncapTable>>,
    c: Arc<Counters>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok(mut guard) = raw.readable().await else { return };
        // Drain everything that is queued before waiting again (batched).
        loop {
            let n = match guard.try_io(|s| (&mut s.get_ref()).read(&mut buf)) {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "raw socket read");
                    bump(&c.drop_io);
                    break;
                }
                Err(_would_block) => break,
            };
            let (src, inner) = match packet::decapsulate(&buf[..n]) {
                Ok(x) => x,
                Err(why) => {
                    count_drop(&c, why);
                    continue;
                }
            };
            if !table.borrow().is_node(src) {
                bump(&c.drop_unknown_source);
                continue;
            }
            match tun.send(inner).await {
                Ok(_) => {
                    bump(&c.decap_packets);
                    c.decap_bytes.fetch_add(inner.len() as u64, Ordering::Relaxed);
                }
                Err(_) => bump(&c.drop_io),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_takes_the_longest_match_and_sources_must_be_nodes() {
        let n1 = Ipv4Addr::new(192, 0, 2, 1);
        let n2 = Ipv4Addr::new(198, 51, 100, 2);
        let t = EncapTable::new(
            [("198.18.0.0/16".parse().unwrap(), n1), ("198.18.0.64/26".parse().unwrap(), n2)],
            [n1, n2],
        );
        assert_eq!(t.lookup(Ipv4Addr::new(198, 18, 0, 70)), Some(n2));
        assert_eq!(t.lookup(Ipv4Addr::new(198, 18, 1, 1)), Some(n1));
        assert_eq!(t.lookup(Ipv4Addr::new(203, 0, 113, 1)), None);
        assert!(t.is_node(n2) && !t.is_node(Ipv4Addr::new(203, 0, 113, 9)));
    }
}
