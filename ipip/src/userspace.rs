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
//!
//! Both directions move batches: the TUN runs with offload (virtio-net
//! header), so the kernel hands over 64 KiB TCP super-packets that are cut
//! into MTU-sized segments in place (the outer header written in front of
//! each) and sent with one `sendmmsg`; received packets come in with one
//! `recvmmsg` and go to the TUN coalesced again (GRO).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use crate::packet::{self, Discard, IPPROTO_IPIP, OUTER_LEN, TcpHeaders};
use crate::{TunnelError, batch};

/// Room in front of a received packet: the virtio-net header the TUN wants
/// before the inner packet, which starts after the outer IPv4 header.
const RX_HEAD: usize = 16;
/// Room for a received packet: IPv4's largest (RFC 791), which the
/// underlay's GRO builds from a flow's segments.
const RX_MAX: usize = 65_535;
/// The virtio-net header flag asking the kernel to complete the checksum
/// from `csum_start` (linux/virtio_net.h).
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;

/// The routes of one prefix length: network address → the nodes of its
/// route (an ECMP set, usually one).
type RoutesOfLength = HashMap<u32, Box<[Ipv4Addr]>>;

/// Where each tunnelled prefix goes, and who may send to us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncapTable {
    /// Per prefix length, longest first: network address → the nodes of
    /// its route (an ECMP set, usually one). A cluster's blocks share one
    /// or two lengths, so a lookup (one per packet) is a hash probe or two
    /// whatever the number of blocks.
    routes: Vec<(u8, RoutesOfLength)>,
    /// Cluster nodes: the only accepted outer sources.
    nodes: HashSet<Ipv4Addr>,
}

impl EncapTable {
    /// A table from tunnelled prefixes with their nodes, and the cluster's
    /// node addresses.
    pub fn new(
        routes: impl IntoIterator<Item = (Ipv4Net, Vec<Ipv4Addr>)>,
        nodes: impl IntoIterator<Item = Ipv4Addr>,
    ) -> Self {
        let mut by_len: BTreeMap<u8, RoutesOfLength> = BTreeMap::new();
        for (net, hops) in routes.into_iter().filter(|(_, hops)| !hops.is_empty()) {
            by_len.entry(net.prefix_len()).or_default().entry(u32::from(net.network())).or_insert(hops.into());
        }
        EncapTable { routes: by_len.into_iter().rev().collect(), nodes: nodes.into_iter().collect() }
    }

    /// The node a packet from `src` to `dst` goes to (longest match). Of
    /// an ECMP set, one per flow, as the kernel's multipath hash over the
    /// addresses picks one per flow for `tunl0`: the packets of a flow stay
    /// in order, the flows spread over the set.
    pub fn lookup(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        let key = u32::from(dst);
        let hops = self.routes.iter().find_map(|(len, nets)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
            nets.get(&(key & mask))
        })?;
        match hops.len() {
            1 => hops.first().copied(),
            n => hops.get((flow_hash(src, dst) % n as u64) as usize).copied(),
        }
    }

    /// Whether `src` is a cluster node.
    pub fn is_node(&self, src: Ipv4Addr) -> bool {
        self.nodes.contains(&src)
    }
}

/// A flow's hash over its addresses (splitmix64's finalizer, which spreads
/// every input bit over the output).
fn flow_hash(src: Ipv4Addr, dst: Ipv4Addr) -> u64 {
    let mut x = (u64::from(u32::from(src)) << 32) | u64::from(u32::from(dst));
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
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
    /// TUN reads (each may carry a GSO super-packet cut into many segments).
    pub encap_batches: AtomicU64,
    /// `recvmmsg` calls that returned packets.
    pub decap_batches: AtomicU64,
    /// Delivered packets the underlay's GRO had merged from a TCP flow's
    /// segments (each also counts as one in `decap_packets`).
    pub decap_merged: AtomicU64,
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

/// A running data plane; dropping it stops it (the device, persistent,
/// stays until deleted).
pub struct Userspace {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Userspace {
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

/// Whether this namespace has a device called `name`.
pub(crate) fn exists(name: &str) -> bool {
    let Ok(name) = std::ffi::CString::new(name) else { return false };
    // SAFETY: if_nametoindex(3) reads a NUL-terminated string that lives through the call.
    unsafe { libc::if_nametoindex(name.as_ptr()) != 0 }
}

fn count_drop(c: &Counters, why: Discard) {
    match why {
        Discard::Malformed | Discard::NotIpv4 | Discard::NotIpip | Discard::Fragment => bump(&c.drop_malformed),
    }
}

/// Opens the TUN device and the raw socket and starts both directions,
/// counting into `counters`.
pub fn start(
    config: &Config,
    table: watch::Receiver<Arc<EncapTable>>,
    counters: Arc<Counters>,
) -> Result<Userspace, TunnelError> {
    let mtu = config.underlay_mtu.saturating_sub(OUTER_LEN as u16);
    let mut builder = tun_rs::DeviceBuilder::new().name(&config.device).mtu(mtu).offload(true);
    if let Some(addr) = config.tunnel_address {
        builder = builder.ipv4(addr, 32u8, None);
    }
    let kept = exists(&config.device);
    let tun = Arc::new(
        builder.build_async().map_err(|e| TunnelError::io(format!("creating TUN device {}", config.device), e))?,
    );
    // Persistent, as `tunl0` is: the device, and the kernel routes through
    // it, outlive a daemon restart (packets meanwhile are dropped, not
    // misrouted), and the next daemon attaches to it again.
    tun.persist().map_err(|e| TunnelError::io(format!("making TUN device {} persistent", config.device), e))?;
    if kept {
        tracing::info!(device = config.device, "attached to the TUN device kept from before the restart");
    }
    let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(i32::from(IPPROTO_IPIP))))
        .map_err(|e| TunnelError::io("opening a raw socket for IP protocol 4".into(), e))?;
    // We write the outer header ourselves (RFC 2003 TOS and DF copies).
    raw.set_header_included_v4(true).map_err(|e| TunnelError::io("IP_HDRINCL".into(), e))?;
    raw.set_nonblocking(true).map_err(|e| TunnelError::io("non-blocking raw socket".into(), e))?;
    // SAFETY: the AsyncFd owns the socket, whose descriptor stays open and the same until it is dropped.
    let raw = unsafe { AsyncFd::register(raw) }
        .map_err(|e| TunnelError::io("registering the raw socket".into(), std::io::Error::other(e.to_string())))?;
    let raw = Arc::new(raw);
    tracing::info!(device = config.device, mtu, local = %config.local, "userspace IPIP data plane up");
    let encap = tokio::spawn(encap_loop(tun.clone(), raw.clone(), config.local, mtu, table.clone(), counters.clone()));
    let decap = tokio::spawn(decap_loop(tun, raw, mtu, table, counters));
    Ok(Userspace { tasks: vec![encap, decap] })
}

async fn encap_loop(
    tun: Arc<tun_rs::AsyncDevice>,
    raw: Arc<AsyncFd<Socket>>,
    local: Ipv4Addr,
    mtu: u16,
    table: watch::Receiver<Arc<EncapTable>>,
    c: Arc<Counters>,
) {
    use std::os::fd::AsRawFd;
    let mut original = vec![0u8; tun_rs::VIRTIO_NET_HDR_LEN + 65_535];
    // Segments land after OUTER_LEN bytes: the outer header is written in front, in place.
    let mut bufs = vec![vec![0u8; OUTER_LEN + usize::from(mtu) + 64]; tun_rs::IDEAL_BATCH_SIZE];
    let mut sizes = vec![0usize; tun_rs::IDEAL_BATCH_SIZE];
    loop {
        let n = match tun.recv_multiple(&mut original, &mut bufs, &mut sizes, OUTER_LEN).await {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "TUN read");
                bump(&c.drop_malformed);
                continue;
            }
        };
        bump(&c.encap_batches);
        let routes = table.borrow().clone();
        let mut out: Vec<(usize, Ipv4Addr)> = Vec::with_capacity(n);
        for (i, (buf, size)) in bufs.iter_mut().zip(&sizes).take(n).enumerate() {
            let inner = &buf[OUTER_LEN..OUTER_LEN + size];
            let header = packet::inner_addresses(inner).and_then(|(src, dst)| match routes.lookup(src, dst) {
                Some(node) => packet::outer_header(inner, local, node).map(|h| (h, node)),
                None => Err(Discard::NotIpip),
            });
            match header {
                Ok((h, node)) => {
                    buf[..OUTER_LEN].copy_from_slice(&h);
                    out.push((i, node));
                }
                Err(Discard::NotIpip) => bump(&c.drop_no_route),
                Err(why) => count_drop(&c, why),
            }
        }
        let packets: Vec<(&[u8], Ipv4Addr)> =
            out.iter().map(|(i, node)| (&bufs[*i][..OUTER_LEN + sizes[*i]], *node)).collect();
        let mut sent = 0;
        while sent < packets.len() {
            let Ok(mut guard) = raw.writable().await else { return };
            match guard.try_io(|s| batch::send(s.get_ref().as_raw_fd(), &packets[sent..])) {
                Ok(Ok(k)) => sent += k,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "raw socket send");
                    c.drop_io.fetch_add((packets.len() - sent) as u64, Ordering::Relaxed);
                    break;
                }
                Err(_would_block) => continue,
            }
        }
        for (p, _) in &packets[..sent] {
            bump(&c.encap_packets);
            c.encap_bytes.fetch_add((p.len() - OUTER_LEN) as u64, Ordering::Relaxed);
        }
    }
}

/// What becomes of a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Dropped (counted).
    Dropped,
    /// Unwrapped; it goes to the TUN with its neighbours, coalesced (GRO).
    Packet,
    /// Unwrapped TCP that the underlay's GRO had merged from a flow's
    /// segments (the kernel does IPIP GRO on any interface with GRO on):
    /// longer than the tunnel's MTU, it goes to the TUN whole, marked for
    /// segmentation should the kernel need to cut it again.
    Merged(TcpHeaders),
}

async fn decap_loop(
    tun: Arc<tun_rs::AsyncDevice>,
    raw: Arc<AsyncFd<Socket>>,
    mtu: u16,
    table: watch::Receiver<Arc<EncapTable>>,
    c: Arc<Counters>,
) {
    use std::os::fd::AsRawFd;
    let size = RX_HEAD + OUTER_LEN + RX_MAX;
    // One by one: each is zero pages until a packet lands in it.
    let mut bufs: Vec<Vec<u8>> = (0..tun_rs::IDEAL_BATCH_SIZE).map(|_| vec![0u8; size]).collect();
    let mut lens = vec![0usize; tun_rs::IDEAL_BATCH_SIZE];
    let mut gro = tun_rs::GROTable::default();
    let mut mtus = PathMtus::default();
    // Every inner packet is moved to start at RX_HEAD + OUTER_LEN, where the TUN wants it.
    let start = RX_HEAD + OUTER_LEN;
    loop {
        let Ok(mut guard) = raw.readable().await else { return };
        let n = match guard.try_io(|s| batch::recv(s.get_ref().as_raw_fd(), &mut bufs, RX_HEAD, &mut lens)) {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "raw socket read");
                bump(&c.drop_io);
                continue;
            }
            Err(_would_block) => continue,
        };
        bump(&c.decap_batches);
        let routes = table.borrow().clone();
        let mut deliveries = [Delivery::Dropped; tun_rs::IDEAL_BATCH_SIZE];
        for ((buf, len), delivery) in bufs.iter_mut().zip(&lens).zip(&mut deliveries).take(n) {
            let (src, inner_at, inner_len) = match packet::decapsulate(&buf[RX_HEAD..RX_HEAD + len]) {
                Ok((src, inner)) => (src, inner.as_ptr() as usize - buf.as_ptr() as usize, inner.len()),
                Err(why) => {
                    count_drop(&c, why);
                    continue;
                }
            };
            if !routes.is_node(src) {
                bump(&c.drop_unknown_source);
                continue;
            }
            if inner_at != start {
                buf.copy_within(inner_at..inner_at + inner_len, start);
            }
            buf.truncate(start + inner_len);
            // Only TCP is merged; anything else this long is the kernel's to refuse.
            let merged = (inner_len > usize::from(mtu)).then(|| packet::merged_tcp(&buf[start..])).flatten();
            *delivery = match merged {
                Some(headers) => Delivery::Merged(headers),
                None => Delivery::Packet,
            };
        }
        // In arrival order: runs of packets through the GRO table, merged ones alone.
        let mut run: Vec<&mut Vec<u8>> = Vec::with_capacity(n);
        for (buf, delivery) in bufs.iter_mut().zip(deliveries).take(n) {
            match delivery {
                Delivery::Dropped => {}
                Delivery::Packet => run.push(buf),
                Delivery::Merged(headers) => {
                    deliver_run(&tun, &mut gro, &mut run, start, &c).await;
                    let dst = packet::inner_destination(&buf[start..]).unwrap_or(Ipv4Addr::UNSPECIFIED);
                    let segment = mtus.towards(dst).min(mtu);
                    deliver_merged(&tun, &mut buf[start - tun_rs::VIRTIO_NET_HDR_LEN..], headers, segment, &c).await;
                }
            }
        }
        deliver_run(&tun, &mut gro, &mut run, start, &c).await;
        drop(run);
        // Only the delivered buffers were cut short.
        for (buf, _) in bufs.iter_mut().zip(deliveries).filter(|(_, d)| *d != Delivery::Dropped) {
            debug_assert!(buf.capacity() >= size, "the GRO table grows packets only within their buffer");
            // SAFETY: every byte up to `size` was initialised when the buffer was made;
            // truncating kept them. (A resize would write a 64 KiB buffer per packet.)
            unsafe { buf.set_len(size) };
        }
    }
}

/// Writes unwrapped packets (each at `start` in its buffer) to the TUN,
/// coalescing each flow's consecutive segments; empties `run`.
async fn deliver_run(
    tun: &tun_rs::AsyncDevice,
    gro: &mut tun_rs::GROTable,
    run: &mut Vec<&mut Vec<u8>>,
    start: usize,
    c: &Counters,
) {
    if run.is_empty() {
        return;
    }
    let (count, bytes) = (run.len() as u64, run.iter().map(|b| (b.len() - start) as u64).sum::<u64>());
    match tun.send_multiple(gro, run, start).await {
        Ok(_) => {
            c.decap_packets.fetch_add(count, Ordering::Relaxed);
            c.decap_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        Err(e) => {
            tracing::debug!(error = %e, "TUN write");
            c.drop_io.fetch_add(count, Ordering::Relaxed);
        }
    }
    run.clear();
}

/// How long the MTU towards a destination is taken as known.
const PATH_MTU_KEPT: Duration = Duration::from_secs(10);
/// At most this many destinations are remembered (a node's pods).
const PATH_MTU_ENTRIES: usize = 4096;

/// The MTU towards the destinations merged packets go to. The original
/// segments' size is lost in the merge, and the kernel must be able to
/// cut the packet back into segments that fit where it goes next: a pod's
/// interface may be narrower than the tunnel.
#[derive(Default)]
struct PathMtus {
    known: HashMap<Ipv4Addr, (u16, Instant)>,
}

impl PathMtus {
    /// The MTU of the kernel's route towards `dst` (`u16::MAX` when the
    /// kernel cannot say: the tunnel's MTU then bounds it).
    fn towards(&mut self, dst: Ipv4Addr) -> u16 {
        let now = Instant::now();
        if let Some((mtu, at)) = self.known.get(&dst)
            && now.duration_since(*at) < PATH_MTU_KEPT
        {
            return *mtu;
        }
        if self.known.len() >= PATH_MTU_ENTRIES {
            self.known.clear();
        }
        let mtu = route_mtu(dst).unwrap_or_else(|e| {
            tracing::debug!(%dst, error = %e, "no route MTU towards a merged packet's destination");
            u16::MAX
        });
        self.known.insert(dst, (mtu, now));
        mtu
    }
}

/// The MTU of the route towards `dst`, as a UDP socket connected there
/// sees it (`IP_MTU`, ip(7)); no packet is sent.
fn route_mtu(dst: Ipv4Addr) -> std::io::Result<u16> {
    use std::os::fd::AsRawFd;
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, None)?;
    socket.connect(&std::net::SocketAddrV4::new(dst, 9).into())?;
    let mut mtu: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt(2) writes at most `len` bytes into `mtu`, which lives through the call.
    let rc = unsafe {
        libc::getsockopt(socket.as_raw_fd(), libc::IPPROTO_IP, libc::IP_MTU, (&raw mut mtu).cast(), &mut len)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    u16::try_from(mtu).map_err(|_| std::io::Error::other(format!("route MTU {mtu} out of range")))
}

/// Writes a merged TCP packet (after room for the virtio-net header in
/// `frame`) to the TUN as one GSO frame whose segments, if the kernel must
/// cut it, fit an MTU of `mtu`.
async fn deliver_merged(tun: &tun_rs::AsyncDevice, frame: &mut [u8], headers: TcpHeaders, mtu: u16, c: &Counters) {
    let (hdr_len, inner) = (tun_rs::VIRTIO_NET_HDR_LEN, (frame.len() - tun_rs::VIRTIO_NET_HDR_LEN) as u64);
    let gso_size = usize::from(mtu).saturating_sub(headers.len);
    let header = tun_rs::VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: tun_rs::VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: headers.len as u16,
        gso_size: gso_size as u16,
        csum_start: headers.ip_len as u16,
        csum_offset: packet::TCP_CHECKSUM_OFFSET as u16,
    };
    let written = match gso_size {
        0 => Err(std::io::Error::other("the TCP headers fill the MTU towards the destination")),
        _ => match header.encode(&mut frame[..hdr_len]) {
            Ok(()) => tun.send(frame).await,
            Err(e) => Err(e),
        },
    };
    match written {
        Ok(_) => {
            bump(&c.decap_packets);
            bump(&c.decap_merged);
            c.decap_bytes.fetch_add(inner, Ordering::Relaxed);
        }
        Err(e) => {
            tracing::debug!(error = %e, "TUN write of a merged packet");
            bump(&c.drop_io);
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
        let pod = Ipv4Addr::new(198, 18, 9, 1);
        let t = EncapTable::new(
            [("198.18.0.0/16".parse().unwrap(), vec![n1]), ("198.18.0.64/26".parse().unwrap(), vec![n2])],
            [n1, n2],
        );
        assert_eq!(t.lookup(pod, Ipv4Addr::new(198, 18, 0, 70)), Some(n2));
        assert_eq!(t.lookup(pod, Ipv4Addr::new(198, 18, 1, 1)), Some(n1));
        assert_eq!(t.lookup(pod, Ipv4Addr::new(203, 0, 113, 1)), None);
        let everything = EncapTable::new(
            [("0.0.0.0/0".parse().unwrap(), vec![n1]), ("198.18.0.7/32".parse().unwrap(), vec![n2])],
            [],
        );
        assert_eq!(everything.lookup(pod, Ipv4Addr::new(203, 0, 113, 1)), Some(n1), "a /0 matches all");
        assert_eq!(everything.lookup(pod, Ipv4Addr::new(198, 18, 0, 7)), Some(n2), "a /32 only itself");
        assert!(t.is_node(n2) && !t.is_node(Ipv4Addr::new(203, 0, 113, 9)));
        let none = EncapTable::new([("198.18.0.0/16".parse().unwrap(), vec![])], []);
        assert_eq!(none.lookup(pod, Ipv4Addr::new(198, 18, 0, 1)), None, "a route without nodes is no route");
    }

    #[test]
    fn an_ecmp_set_keeps_each_flow_on_one_node_and_spreads_the_flows() {
        let set = vec![Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 3), Ipv4Addr::new(198, 51, 100, 3)];
        let t = EncapTable::new([("198.18.1.0/26".parse().unwrap(), set.clone())], []);
        let mut per_node = HashMap::new();
        for i in 0..240u32 {
            let (src, dst) = (Ipv4Addr::from(0xc612_0000 + i), Ipv4Addr::new(198, 18, 1, (i % 60) as u8));
            let node = t.lookup(src, dst).unwrap();
            assert!(set.contains(&node));
            assert_eq!(t.lookup(src, dst), Some(node), "a flow stays on its node");
            *per_node.entry(node).or_insert(0) += 1;
        }
        assert_eq!(per_node.len(), 3, "every node of the set carries flows: {per_node:?}");
        assert!(per_node.values().all(|&n| n >= 40), "roughly evenly: {per_node:?}");
    }
}
