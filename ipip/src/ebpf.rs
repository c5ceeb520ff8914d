//! The eBPF IPIP data plane, for kernels without the ipip module: two TC
//! programs (`bpf/ipip.c`, built by `build.rs`) do RFC 2003 in the kernel,
//! on GSO super-packets.
//!
//! ```text
//!  route `via <node> dev tortie-ipip onlink` ─▶ tortie-ipip egress: tortie_encap
//!        (outer header from the block's node) ─▶ redirect to the underlay, next hop resolved
//!  underlay ingress: tortie_decap (protocol 4 from a node to us) ─▶ inner packet up the stack
//! ```
//!
//! `tortie-ipip` is one end of a veth pair with ARP off (the routes'
//! next hops need no neighbour); nothing reaches its peer. The programs
//! stay attached and the maps stay pinned (under `<bpffs>/tortie/net-<netns
//! inode>`) when the daemon exits, so forwarding goes on; the next daemon
//! adopts the pinned maps, puts its own programs in place of the attached
//! ones in one netlink request (no gap), and brings the maps to what the
//! cluster says by difference. It touches only the filters at its own
//! priority and handle, and detaches only programs of its own names.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, Map, MapData, PerCpuArray};
use aya::programs::tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions};
use aya::programs::{ProgramError, SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader, Pod};
use rtnetlink::{LinkUnspec, LinkVeth};
use tokio::sync::watch;

use crate::TunnelError;
use crate::table::{EncapTable, MAX_HOPS, diff};

/// The device tunnelled routes go through.
pub const DEVICE: &str = "tortie-ipip";
/// Its veth peer, which nothing reaches.
const PEER: &str = "tortie-ipip-p";

/// The TC programs, compiled by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ipip.bpf.o"));

const ENCAP: &str = "tortie_encap";
const DECAP: &str = "tortie_decap";
/// Where tortie's filters sit on an interface's clsact hooks: first (the
/// decapsulation passes everything on, so filters after it still see the
/// packets, the inner ones once unwrapped).
const PRIORITY: u16 = 1;
const HANDLE: u32 = 0x7471;

/// The maps, as `bpf/ipip.c` names them.
const BLOCKS: &str = "tortie_blocks";
const NODES: &str = "tortie_nodes";
const CONFIG: &str = "tortie_config";
const COUNTERS: &str = "tortie_counters";

/// `struct hops`: the nodes of a block's route, network order.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hops {
    count: u32,
    node: [u32; MAX_HOPS],
}

// SAFETY: plain integers, no padding, any bit pattern valid.
unsafe impl Pod for Hops {}

/// `struct config`: this node's underlay address (network order) and interface.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Config {
    local: u32,
    ifindex: u32,
}

// SAFETY: plain integers, no padding, any bit pattern valid.
unsafe impl Pod for Config {}

/// An address as the programs compare it: its octets in memory order.
fn wire(addr: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

/// The data plane's counters (`enum counter` in `bpf/ipip.c`), summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets encapsulated and sent (a GSO super-packet counts its segments).
    pub encap_packets: u64,
    /// Inner bytes encapsulated.
    pub encap_bytes: u64,
    /// Packets decapsulated and delivered.
    pub decap_packets: u64,
    /// Inner bytes delivered.
    pub decap_bytes: u64,
    /// Delivered super-packets the underlay's GRO had merged.
    pub decap_merged: u64,
    /// Dropped: no tunnelled block for the inner destination.
    pub drop_no_route: u64,
    /// Dropped: protocol 4 not from a cluster node, or not to this node.
    pub drop_unknown_source: u64,
    /// Dropped: malformed (options, fragments, not IPv4 inside).
    pub drop_malformed: u64,
}

/// What the plane needs to know of the node.
#[derive(Debug, Clone)]
pub struct PlaneConfig {
    /// This node's underlay address (the outer source; its interface is the underlay).
    pub local: Ipv4Addr,
    /// The node's tunnel address (on the device, /32).
    pub tunnel_address: Option<Ipv4Addr>,
    /// The device's MTU (the underlay's less the outer header).
    pub mtu: u32,
    /// A mounted bpffs; the maps are pinned under it.
    pub bpffs: PathBuf,
    /// The cluster's node addresses as the datastore has them at the
    /// start: a fresh plane (no maps to adopt) unwraps what they send
    /// until the first table comes.
    pub nodes: Vec<Ipv4Addr>,
}

/// A running plane: a task keeping the maps equal to the table. Dropping
/// it stops the task only; the programs, maps and device stay.
pub struct Plane {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Plane {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn bpf_error(what: &'static str) -> impl Fn(String) -> TunnelError {
    move |why| TunnelError::Kernel { what, why }
}

/// `statfs(2)`'s f_type of a bpffs (linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Mounts a bpffs at `path` unless one is there already.
fn mount_bpffs(path: &Path) -> Result<(), TunnelError> {
    let io = |what: &str, e| TunnelError::io(format!("{what} {}", path.display()), e);
    std::fs::create_dir_all(path).map_err(|e| io("creating", e))?;
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| bpf_error("naming the bpffs")(e.to_string()))?;
    // SAFETY: an all-zero statfs is valid; statfs(2) fills it from a NUL-terminated path.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; both live through the call.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut fs) } != 0 {
        return Err(io("checking", std::io::Error::last_os_error()));
    }
    if fs.f_type as i64 == BPF_FS_MAGIC {
        return Ok(());
    }
    // SAFETY: mount(2) with NUL-terminated strings that live through the call and no data.
    let done = unsafe { libc::mount(c"bpf".as_ptr(), c_path.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) };
    if done != 0 {
        return Err(io("mounting a bpffs at", std::io::Error::last_os_error()));
    }
    tracing::info!(path = %path.display(), "mounted a bpffs for the IPIP maps");
    Ok(())
}

/// Where this network namespace's maps are pinned: the calling thread's
/// (`/proc/self` would name the process's first thread's).
pub fn pin_dir(bpffs: &Path) -> Result<PathBuf, TunnelError> {
    let ns = std::fs::metadata("/proc/thread-self/ns/net")
        .map_err(|e| TunnelError::io("reading this network namespace's identity".into(), e))?;
    Ok(bpffs.join("tortie").join(format!("net-{}", ns.ino())))
}

/// The interface holding `local`, and its index.
pub(crate) fn underlay(local: IpAddr) -> Result<(String, u32), TunnelError> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs(3) fills `head` with a list freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(TunnelError::io("listing addresses".into(), std::io::Error::last_os_error()));
    }
    let mut found = None;
    let mut at = head;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*at };
        at = ifa.ifa_next;
        // SAFETY: a non-null ifa_addr points at a sockaddr of the family it names.
        let Some(addr) = (unsafe { ifa.ifa_addr.as_ref() }) else { continue };
        let held = match i32::from(addr.sa_family) {
            // SAFETY: an AF_INET address is a sockaddr_in.
            libc::AF_INET => IpAddr::from(
                u32::from_be(unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() }.sin_addr.s_addr).to_be_bytes(),
            ),
            // SAFETY: an AF_INET6 address is a sockaddr_in6.
            libc::AF_INET6 => IpAddr::from(unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in6>() }.sin6_addr.s6_addr),
            _ => continue,
        };
        if held == local {
            // SAFETY: ifa_name is a NUL-terminated string in the list.
            let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
            found = Some(name.to_string_lossy().into_owned());
            break;
        }
    }
    // SAFETY: the list from getifaddrs, freed once.
    unsafe { libc::freeifaddrs(head) };
    let name = found.ok_or_else(|| TunnelError::Kernel {
        what: "finding the underlay interface",
        why: format!("no interface holds the node address {local}"),
    })?;
    let cname = std::ffi::CString::new(name.clone()).map_err(|e| bpf_error("naming the underlay")(e.to_string()))?;
    // SAFETY: if_nametoindex(3) reads a NUL-terminated string that lives through the call.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    Ok((name, index))
}

/// Starts (or adopts) the plane: device, maps, programs; then keeps the
/// maps equal to `table`.
pub async fn start(config: &PlaneConfig, mut table: watch::Receiver<Arc<EncapTable>>) -> Result<Plane, TunnelError> {
    let (underlay, ifindex) = underlay(config.local.into())?;
    mount_bpffs(&config.bpffs)?;
    let pins = pin_dir(&config.bpffs)?;
    let adopted = std::fs::read_dir(&pins).is_ok_and(|mut d| d.next().is_some());
    std::fs::create_dir_all(&pins).map_err(|e| TunnelError::io(format!("creating {}", pins.display()), e))?;
    let mut bpf = EbpfLoader::new()
        .map_pin_path(&pins)
        .load(OBJECT)
        .map_err(|e| bpf_error("loading the IPIP programs")(format!("{e:#}")))?;
    device(config).await?;
    let mut settings =
        Array::<_, Config>::try_from(map(&mut bpf, CONFIG)?).map_err(|e| bpf_error("config map")(e.to_string()))?;
    settings
        .set(0, Config { local: wire(config.local), ifindex }, 0)
        .map_err(|e| bpf_error("writing the config map")(e.to_string()))?;
    attach(&mut bpf, ENCAP, DEVICE, TcAttachType::Egress)?;
    loosen_rp_filter(&underlay)?;
    attach(&mut bpf, DECAP, &underlay, TcAttachType::Ingress)?;
    // Until felix has published a table, maps adopted from before the
    // restart stay as they are, and fresh ones take the nodes the
    // datastore knows: other nodes wrap for this one once its tunnel
    // address is published, maybe before felix's first table, and what
    // they send must not be dropped as from unknown sources meanwhile.
    if table.has_changed().unwrap_or(false) {
        let current = table.borrow_and_update().clone();
        reconcile(&mut bpf, &current)?;
    } else if !adopted {
        reconcile(&mut bpf, &EncapTable::new([], config.nodes.iter().copied()))?;
    }
    if adopted {
        tracing::info!(pins = %pins.display(), "IPIP: adopted the maps kept from before the restart");
    }
    tracing::info!(
        device = DEVICE,
        underlay,
        "eBPF IPIP data plane up (TC programs on {DEVICE} egress, {underlay} ingress)"
    );
    let task = tokio::spawn(async move {
        let mut failed = false;
        while crate::next_pass(&mut table, failed).await {
            let next = table.borrow_and_update().clone();
            failed = reconcile(&mut bpf, &next)
                .inspect_err(|e| tracing::error!(error = %e, retry = ?crate::RETRY, "IPIP: the maps could not follow the routes"))
                .is_err();
        }
    });
    Ok(Plane { task })
}

fn map<'a>(bpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Map, TunnelError> {
    bpf.map_mut(name).ok_or(TunnelError::Kernel { what: "finding a map", why: format!("{name} is not in the object") })
}

/// The veth pair, ARP off on our end, at `config.mtu`, up, with the tunnel
/// address; kept if it is there.
async fn device(config: &PlaneConfig) -> Result<(), TunnelError> {
    let handle = crate::kernel::connect()?;
    let nl =
        |what: &'static str| move |e: rtnetlink::Error| TunnelError::Kernel { what, why: format!("{DEVICE}: {e}") };
    if crate::kernel::find(&handle, DEVICE).await?.is_none() {
        handle.link().add(LinkVeth::new(DEVICE, PEER).build()).execute().await.map_err(nl("creating the veth pair"))?;
    }
    for (name, ours) in [(DEVICE, true), (PEER, false)] {
        let link = crate::kernel::find(&handle, name)
            .await?
            .ok_or(TunnelError::Kernel { what: "creating the veth pair", why: format!("{name} is missing") })?;
        let mut set = LinkUnspec::new_with_index(link.header.index).up();
        if ours {
            set = set.mtu(config.mtu).arp(false);
        }
        handle.link().set(set.build()).execute().await.map_err(nl("setting up the device"))?;
        if ours && let Some(addr) = config.tunnel_address {
            match handle.address().add(link.header.index, addr.into(), 32).execute().await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => {}
                Err(e) => return Err(nl("addressing the device")(e)),
            }
        }
    }
    // Whatever reaches the peer (no program on our end yet) is not routed
    // on; and the pair carries no IPv6 (its neighbour discovery would reach
    // the encapsulation and be counted as malformed).
    sysctl(&format!("ipv4/conf/{PEER}/forwarding"), "0")?;
    for name in [DEVICE, PEER] {
        sysctl(&format!("ipv6/conf/{name}/disable_ipv6"), "1")?;
    }
    Ok(())
}

/// Writes `/proc/sys/net/<key>` where the kernel has it (no IPv6: no
/// `ipv6/` keys, nothing to turn off).
pub(crate) fn sysctl(key: &str, value: &str) -> Result<(), TunnelError> {
    let path = format!("/proc/sys/net/{key}");
    match std::fs::write(&path, value) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && key.starts_with("ipv6/") => Ok(()),
        done => done.map_err(|e| TunnelError::io(format!("writing {path}"), e)),
    }
}

/// RFC 3704 strict reverse-path filtering on the underlay would drop every
/// decapsulated packet (it arrives there, but its source, a remote pod, is
/// routed through the tunnel device): the underlay is made loose, as a
/// tunnel needs, and the log says so. The kernel applies the larger of
/// `all` and the interface's value, so a loose interface wins over a
/// strict `all`.
fn loosen_rp_filter(underlay: &str) -> Result<(), TunnelError> {
    let read = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{name}/rp_filter"))
            .ok()
            .and_then(|v| v.trim().parse::<u8>().ok())
            .unwrap_or(0)
    };
    if read("all").max(read(underlay)) == 1 {
        sysctl(&format!("ipv4/conf/{underlay}/rp_filter"), "2")?;
        tracing::warn!(
            underlay,
            "strict rp_filter would drop decapsulated IPIP packets: set to loose (2) on the underlay"
        );
    }
    Ok(())
}

/// Puts program `name` on `iface`'s `hook` at tortie's priority and
/// handle: in place of the one there (one netlink request: no gap), or
/// new. The filter stays when the daemon exits.
fn attach(bpf: &mut Ebpf, name: &'static str, iface: &str, hook: TcAttachType) -> Result<(), TunnelError> {
    let failed = |e: ProgramError| TunnelError::Kernel {
        what: "attaching a TC program",
        why: format!("{name} on {iface}: {e:#}"),
    };
    let program: &mut SchedClassifier = bpf
        .program_mut(name)
        .ok_or(TunnelError::Kernel { what: "finding a program", why: format!("{name} is not in the object") })?
        .try_into()
        .map_err(failed)?;
    program.load().map_err(failed)?;
    if let Err(e) = tc::qdisc_add_clsact(iface)
        && e.kind() != std::io::ErrorKind::AlreadyExists
    {
        return Err(TunnelError::io(format!("adding the clsact qdisc to {iface}"), e));
    }
    let options = TcAttachOptions::Netlink(NlOptions { priority: PRIORITY, handle: HANDLE });
    let link = match program.attach_with_options(iface, hook, options) {
        Ok(link) => link,
        Err(ProgramError::TcError(tc::TcError::NetlinkError { io_error }))
            if io_error.raw_os_error() == Some(libc::EEXIST) =>
        {
            let kept = SchedClassifierLink::attached(iface, hook, PRIORITY, HANDLE)
                .map_err(|e| TunnelError::io(format!("finding the kept filter on {iface}"), e))?;
            tracing::info!(program = name, iface, "IPIP: replacing the program kept from before");
            program.attach_to_link(kept).map_err(failed)?
        }
        Err(e) => return Err(failed(e)),
    };
    // Owned, then forgotten: dropping it would detach the filter.
    std::mem::forget(program.take_link(link).map_err(failed)?);
    Ok(())
}

/// Makes the block and node maps what `table` says, by difference.
fn reconcile(bpf: &mut Ebpf, table: &EncapTable) -> Result<(), TunnelError> {
    let fail = |what: &'static str| move |e: aya::maps::MapError| TunnelError::Kernel { what, why: e.to_string() };
    let desired: HashMap<(u32, u32), Hops> = table
        .routes()
        .map(|(net, hops)| {
            let mut node = [0; MAX_HOPS];
            node.iter_mut().zip(hops).for_each(|(slot, h)| *slot = wire(*h));
            ((u32::from(net.prefix_len()), wire(net.network())), Hops { count: hops.len() as u32, node })
        })
        .collect();
    let mut blocks = LpmTrie::<_, u32, Hops>::try_from(map(bpf, BLOCKS)?).map_err(fail("the blocks map"))?;
    let mut current = HashMap::new();
    for key in blocks.keys() {
        let key = key.map_err(fail("listing the blocks map"))?;
        let value = blocks.get(&key, 0).map_err(fail("reading the blocks map"))?;
        current.insert((key.prefix_len(), key.data()), value);
    }
    let (mut remove, upsert) = diff(&current, &desired);
    if table.is_relearning() {
        remove.clear();
    }
    for (len, addr) in &remove {
        blocks.remove(&Key::new(*len, *addr)).map_err(fail("removing a block"))?;
    }
    for ((len, addr), hops) in &upsert {
        blocks.insert(&Key::new(*len, *addr), hops, 0).map_err(fail("writing a block"))?;
    }
    let desired: HashMap<u32, u8> = table.nodes().map(|n| (wire(n), 1)).collect();
    let mut nodes = aya::maps::HashMap::<_, u32, u8>::try_from(map(bpf, NODES)?).map_err(fail("the nodes map"))?;
    let current: HashMap<u32, u8> = nodes.iter().collect::<Result<_, _>>().map_err(fail("listing the nodes map"))?;
    let (gone, new) = diff(&current, &desired);
    for n in &gone {
        nodes.remove(n).map_err(fail("removing a node"))?;
    }
    for (n, v) in &new {
        nodes.insert(n, v, 0).map_err(fail("writing a node"))?;
    }
    if !(remove.is_empty() && upsert.is_empty() && gone.is_empty() && new.is_empty()) {
        tracing::debug!(
            blocks_removed = remove.len(),
            blocks_written = upsert.len(),
            nodes_removed = gone.len(),
            nodes_added = new.len(),
            "IPIP maps reconciled"
        );
    }
    Ok(())
}

/// The counters of the plane pinned under `bpffs`, if there is one.
pub fn counters(bpffs: &Path) -> Option<Counters> {
    let data = MapData::from_pin(pin_dir(bpffs).ok()?.join(COUNTERS)).ok()?;
    let array = PerCpuArray::<_, u64>::try_from(Map::PerCpuArray(data)).ok()?;
    let sum = |i: u32| array.get(&i, 0).map_or(0, |per_cpu| per_cpu.iter().sum());
    Some(Counters {
        encap_packets: sum(0),
        encap_bytes: sum(1),
        decap_packets: sum(2),
        decap_bytes: sum(3),
        decap_merged: sum(4),
        drop_no_route: sum(5),
        drop_unknown_source: sum(6),
        drop_malformed: sum(7),
    })
}

/// Removes the plane: the device (its filter with it), tortie's program
/// on the underlay, the pinned maps; whether there was any of it.
pub async fn remove(local: Ipv4Addr, bpffs: &Path) -> Result<bool, TunnelError> {
    let device = crate::kernel::delete(DEVICE).await?;
    let program = match underlay(local.into()) {
        Ok((iface, _)) => match tc::qdisc_detach_program(&iface, TcAttachType::Ingress, DECAP) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(TunnelError::io(format!("detaching {DECAP} from {iface}"), e)),
        },
        Err(_) => false,
    };
    let pins = pin_dir(bpffs)?;
    let pinned = pins.exists();
    if pinned {
        std::fs::remove_dir_all(&pins).map_err(|e| TunnelError::io(format!("removing {}", pins.display()), e))?;
    }
    Ok(device || program || pinned)
}
