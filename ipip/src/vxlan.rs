//! VXLAN (RFC 7348) the way Calico runs it: the kernel's vxlan device
//! `vxlan.calico` (one VNI, learning off; `vxlan-v6.calico` for IPv6 between
//! the nodes' IPv6 addresses), this node's VTEP on it (a tunnel
//! address and a MAC of its own), and per remote node a permanent
//! neighbour entry (its tunnel address → its MAC) and FDB entry (its MAC →
//! its underlay address). Routes `via <its tunnel address> dev
//! vxlan.calico onlink` (felix's) then resolve to its MAC, and the MAC to
//! the outer destination, with no flooding and no learning.
//!
//! The device and its entries outlive the daemon (traffic keeps flowing
//! across a restart); the next daemon adopts the device when its VNI, port
//! and local address are still right, and brings the entries to what the
//! cluster says by difference. Only entries on this device are touched.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use futures::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::link::{InfoData, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage};
use rtnetlink::{LinkUnspec, LinkVxlan};
use tokio::sync::watch;

use crate::TunnelError;
use crate::kernel::{connect, delete, find};
use crate::table::diff;

/// The device, as Calico names it.
pub const DEVICE: &str = "vxlan.calico";
/// The device carrying IPv6, as Calico names it.
pub const DEVICE_V6: &str = "vxlan-v6.calico";
/// Calico's VXLAN network identifier (FelixConfiguration `vxlanVNI`).
pub const DEFAULT_VNI: u32 = 4096;
/// The IANA VXLAN port (RFC 7348 §5; FelixConfiguration `vxlanPort`).
pub const DEFAULT_PORT: u16 = 4789;

/// Calico's two VXLAN devices: IPv4 between the nodes' IPv4 addresses,
/// and IPv6 between their IPv6 addresses (the outer and the inner family
/// are the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `vxlan.calico`.
    V4,
    /// `vxlan-v6.calico`.
    V6,
}

impl Family {
    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The device's name.
    pub fn device(self) -> &'static str {
        match self {
            Family::V4 => DEVICE,
            Family::V6 => DEVICE_V6,
        }
    }

    /// What the encapsulation takes off the underlay MTU: the outer IP
    /// header (IPv4 20, IPv6 40), UDP (8), VXLAN (8) and the inner
    /// Ethernet header (14).
    pub fn overhead(self) -> u16 {
        match self {
            Family::V4 => 50,
            Family::V6 => 70,
        }
    }

    /// The length of a host prefix.
    fn host_len(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// The neighbour table the tunnel addresses live in.
    fn neighbours(self) -> AddressFamily {
        match self {
            Family::V4 => AddressFamily::Inet,
            Family::V6 => AddressFamily::Inet6,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// This node's end of the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanConfig {
    /// The node's underlay address: the outer source; its interface
    /// carries the encapsulated packets. Its family is the device's.
    pub local: IpAddr,
    /// VXLAN network identifier (24 bits).
    pub vni: u32,
    /// UDP destination port.
    pub port: u16,
    /// The device's MTU.
    pub mtu: u32,
    /// The node's tunnel address (on the device, /32 or /128).
    pub tunnel_address: IpAddr,
    /// The device's MAC (stable: published on the Node).
    pub mac: [u8; 6],
}

impl VxlanConfig {
    /// Which device this is.
    pub fn family(&self) -> Family {
        Family::of(self.local)
    }
}

/// A remote node's tunnel end, from its Node resource; both addresses of
/// one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Vtep {
    /// Its tunnel address (`ipv4VXLANTunnelAddr`, `ipv6VXLANTunnelAddr`).
    pub tunnel_address: IpAddr,
    /// Its device's MAC (`vxlanTunnelMACAddr`, `vxlanTunnelMACAddrV6`).
    pub mac: [u8; 6],
    /// Its underlay address (the outer destination).
    pub node: IpAddr,
}

/// Every remote VTEP of both families, by tunnel address; felix computes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VtepTable {
    vteps: BTreeMap<IpAddr, Vtep>,
}

impl VtepTable {
    /// A table of these VTEPs (of two with one tunnel address, the last wins).
    pub fn new(vteps: impl IntoIterator<Item = Vtep>) -> VtepTable {
        VtepTable { vteps: vteps.into_iter().map(|v| (v.tunnel_address, v)).collect() }
    }

    /// The VTEPs, in tunnel address order.
    pub fn vteps(&self) -> impl Iterator<Item = &Vtep> {
        self.vteps.values()
    }

    /// The VTEP with this tunnel address.
    pub fn get(&self, tunnel_address: IpAddr) -> Option<&Vtep> {
        self.vteps.get(&tunnel_address)
    }

    /// The VTEPs of one device: tunnel and underlay address of `family`.
    pub fn of(&self, family: Family) -> VtepTable {
        let same = |v: &&Vtep| Family::of(v.tunnel_address) == family && Family::of(v.node) == family;
        VtepTable::new(self.vteps().filter(same).copied())
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.vteps.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.vteps.is_empty()
    }
}

/// A MAC as Calico stores it: `66:1c:7e:0a:3b:52` (lowercase).
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter().map(|o| format!("{o:02x}")).collect::<Vec<_>>().join(":")
}

/// A random locally administered unicast MAC (IEEE 802: bit 1 of the first
/// octet set, bit 0 clear), as Calico gives each node's VXLAN device.
pub fn random_mac() -> [u8; 6] {
    let mut mac = [0u8; 6];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut mac));
    if read.is_err() {
        // No /dev/urandom (a chroot without /dev): getrandom(2) reads the
        // same pool; six bytes never come back short once it is seeded.
        // SAFETY: writes at most `mac.len()` bytes into `mac`.
        unsafe { libc::getrandom(mac.as_mut_ptr().cast(), mac.len(), 0) };
    }
    mac[0] = (mac[0] | 0x02) & !0x01;
    mac
}

/// A running plane: a task keeping the neighbour and FDB entries equal to
/// the table. Dropping it stops the task only; device and entries stay.
pub struct Plane {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Plane {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What keeps an existing device from being adopted: each setting that
/// differs from what `config` asks, `setting: have → want`; empty when it
/// can be adopted. The kernel cannot change VNI or port on a device, and
/// Calico makes it again for a new local address or lower device too; a
/// device that learns would fill its FDB from whatever arrives (RFC 7348
/// §4.1), which the static entries are there to avoid.
fn incompatible(link: &LinkMessage, config: &VxlanConfig, underlay: u32) -> Vec<String> {
    let data = link
        .attributes
        .iter()
        .filter_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => Some(infos),
            _ => None,
        })
        .flatten()
        .find_map(|i| match i {
            LinkInfo::Data(InfoData::Vxlan(data)) => Some(data),
            _ => None,
        });
    let Some(data) = data else { return vec!["kind: not a vxlan device".into()] };
    let (mut vni, mut port, mut local, mut lower, mut learning) = (None, None, None, None, None);
    for d in data {
        match d {
            InfoVxlan::Id(v) => vni = Some(*v),
            InfoVxlan::Port(p) => port = Some(*p),
            InfoVxlan::Local(a) => local = Some(IpAddr::V4(*a)),
            InfoVxlan::Local6(a) => local = Some(IpAddr::V6(*a)),
            InfoVxlan::Link(i) => lower = Some(*i),
            InfoVxlan::Learning(l) => learning = Some(*l),
            _ => {}
        }
    }
    fn differs<T: PartialEq + std::fmt::Debug>(name: &str, have: Option<T>, want: T) -> Option<String> {
        (have.as_ref() != Some(&want)).then(|| format!("{name}: {have:?} → {want:?}"))
    }
    [
        differs("vni", vni, config.vni),
        differs("port", port, config.port),
        differs("local", local, config.local),
        differs("dev (ifindex)", lower, underlay),
        differs("learning", learning, false),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Creates the device (or adopts the one there), then follows `table`.
pub async fn start(config: &VxlanConfig, mut table: watch::Receiver<Arc<VtepTable>>) -> Result<Plane, TunnelError> {
    let family = config.family();
    if Family::of(config.tunnel_address) != family {
        return Err(TunnelError::Kernel {
            what: "configuring the VXLAN device",
            why: format!(
                "tunnel address {} over underlay address {}: not one family",
                config.tunnel_address, config.local
            ),
        });
    }
    let handle = connect()?;
    let (underlay, underlay_index) = crate::ebpf::underlay(config.local)?;
    let index = device(&handle, config, underlay_index).await?;
    // Until felix has published a table there is nothing to go by (entries
    // kept from before the restart stay as they are).
    if table.has_changed().unwrap_or(false) {
        let current = table.borrow_and_update().of(family);
        reconcile(&handle, index, family, &current).await?;
    }
    tracing::info!(
        device = family.device(),
        vni = config.vni,
        port = config.port,
        underlay,
        tunnel_address = %config.tunnel_address,
        mac = format_mac(config.mac),
        "VXLAN device up"
    );
    let task = tokio::spawn(async move {
        let mut failed = false;
        while crate::next_pass(&mut table, failed).await {
            let next = table.borrow_and_update().of(family);
            failed = reconcile(&handle, index, family, &next).await.inspect_err(|e| {
                tracing::error!(error = %e, retry = ?crate::RETRY, "VXLAN: the neighbour and FDB entries could not follow the nodes");
            }).is_err();
        }
    });
    Ok(Plane { task })
}

/// The device as `config` says, created or adopted; its index.
async fn device(handle: &rtnetlink::Handle, config: &VxlanConfig, underlay: u32) -> Result<u32, TunnelError> {
    let family = config.family();
    let name = family.device();
    if let Some(link) = find(handle, name).await? {
        let differs = incompatible(&link, config, underlay);
        if differs.is_empty() {
            tracing::debug!(device = name, index = link.header.index, "VXLAN: adopting the device already there");
        } else {
            // Cannot be changed in place: made again (traffic through it
            // stops until felix's routes are back).
            tracing::warn!(
                device = name,
                differs = differs.join(", "),
                "VXLAN device differs from the configuration: recreating it"
            );
            delete(name).await?;
        }
    }
    if find(handle, name).await?.is_none() {
        let link = LinkVxlan::new(name, config.vni).port(config.port).dev(underlay).learning(false);
        let link = match config.local {
            IpAddr::V4(a) => link.local(a),
            IpAddr::V6(a) => link.local6(a),
        };
        let created = handle.link().add(link.build()).execute().await;
        created.map_err(|e| TunnelError::Kernel {
            what: "creating the VXLAN device",
            why: format!("{name} (vni {}, port {}, local {}): {e}", config.vni, config.port, config.local),
        })?;
    }
    let index = find(handle, name)
        .await?
        .ok_or(TunnelError::Kernel { what: "creating the VXLAN device", why: format!("{name} is missing") })?
        .header
        .index;
    // Set before the device comes up: the IPv4 device has no IPv6 (it
    // would only send router and neighbour solicitations into the tunnel);
    // the IPv6 one makes no link-local address of its own, and its tunnel
    // address needs no duplicate detection (IPAM gave it to this node
    // alone, and the probe would go nowhere).
    let sysctls: &[(&str, &str)] = match family {
        Family::V4 => &[("disable_ipv6", "1")],
        Family::V6 => &[("disable_ipv6", "0"), ("addr_gen_mode", "1"), ("accept_dad", "0")],
    };
    for (key, value) in sysctls {
        crate::ebpf::sysctl(&format!("ipv6/conf/{name}/{key}"), value)?;
    }
    let set = LinkUnspec::new_with_index(index).mtu(config.mtu).address(config.mac.to_vec()).up().build();
    handle.link().set(set).execute().await.map_err(|e| TunnelError::Kernel {
        what: "setting up the VXLAN device",
        why: format!("{name} (mtu {}, mac {}): {e}", config.mtu, format_mac(config.mac)),
    })?;
    let len = family.host_len();
    match handle.address().add(index, config.tunnel_address, len).execute().await {
        Ok(()) => {}
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => {}
        Err(e) => {
            return Err(TunnelError::Kernel {
                what: "addressing the VXLAN device",
                why: format!("{name} {}/{len}: {e}", config.tunnel_address),
            });
        }
    }
    Ok(index)
}

/// The neighbour state bit of entries nobody but their writer removes (linux/neighbour.h).
const NUD_PERMANENT: u16 = 0x80;

fn mac_of(msg: &NeighbourMessage) -> Option<[u8; 6]> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(m) => m.as_slice().try_into().ok(),
        _ => None,
    })
}

fn ip_of(msg: &NeighbourMessage) -> Option<IpAddr> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        // An FDB entry (family bridge) carries its destination as raw octets.
        NeighbourAttribute::Destination(NeighbourAddress::Other(o)) => match o.len() {
            4 => <[u8; 4]>::try_from(o.as_slice()).ok().map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            16 => <[u8; 16]>::try_from(o.as_slice()).ok().map(|a| IpAddr::V6(Ipv6Addr::from(a))),
            _ => None,
        },
        _ => None,
    })
}

/// The permanent entries of `family` on the device: (neighbour address, MAC) and the message.
async fn dump(
    handle: &rtnetlink::Handle,
    index: u32,
    family: AddressFamily,
) -> Result<Vec<(IpAddr, [u8; 6], NeighbourMessage)>, TunnelError> {
    let all: Vec<NeighbourMessage> = handle
        .neighbours()
        .get()
        .set_address_family(family)
        .execute()
        .try_collect()
        .await
        .map_err(|e| TunnelError::Kernel { what: "listing neighbours", why: e.to_string() })?;
    Ok(all
        .into_iter()
        // NUD_PERMANENT, alone or with other bits (`bridge fdb add … permanent` adds NUD_NOARP).
        .filter(|m| m.header.ifindex == index && u16::from(m.header.state) & NUD_PERMANENT != 0)
        .filter_map(|m| Some((ip_of(&m)?, mac_of(&m)?, m)))
        .filter(|(_, mac, _)| *mac != [0; 6])
        .collect())
}

/// The entries the kernel has on the device of `family`: neighbours
/// (tunnel address, MAC) and FDB entries (MAC, underlay address).
pub async fn entries(family: Family) -> Result<(Vec<(IpAddr, [u8; 6])>, Vec<([u8; 6], IpAddr)>), TunnelError> {
    let handle = connect()?;
    let Some(link) = find(&handle, family.device()).await? else { return Ok((Vec::new(), Vec::new())) };
    let index = link.header.index;
    let neigh = dump(&handle, index, family.neighbours()).await?.into_iter().map(|(ip, mac, _)| (ip, mac));
    let fdb = dump(&handle, index, AddressFamily::Bridge).await?.into_iter().map(|(ip, mac, _)| (mac, ip));
    Ok((neigh.collect(), fdb.collect()))
}

/// What makes the device's entries equal to a table.
#[derive(Debug, Default, PartialEq, Eq)]
struct Changes {
    /// Neighbours to write: new, or an address whose MAC changed (replaced
    /// in place, so the address never goes unresolved).
    neighbours: Vec<(IpAddr, [u8; 6])>,
    /// Neighbours on the device that no VTEP has.
    stale_neighbours: Vec<IpAddr>,
    /// FDB entries to write: a new MAC, or one whose node moved (replaced
    /// in place: the entry's first remote takes the new destination).
    fdb: Vec<([u8; 6], IpAddr)>,
    /// FDB remotes on the device that no VTEP has (the kernel keeps one per
    /// unicast MAC, but a dump lists each remote, so (MAC, node) pairs).
    stale_fdb: Vec<([u8; 6], IpAddr)>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.neighbours.is_empty()
            && self.stale_neighbours.is_empty()
            && self.fdb.is_empty()
            && self.stale_fdb.is_empty()
    }
}

/// Whether a MAC can be a VTEP's: unicast and not all-zero (the all-zero
/// FDB entry is the device's default destination, for flooding).
fn unicast(mac: [u8; 6]) -> bool {
    mac[0] & 0x01 == 0 && mac != [0; 6]
}

/// The changes that bring `neighbours` and `fdb` (the device's permanent
/// entries) to what `table` says; entries already right are left alone.
fn plan(neighbours: &[(IpAddr, [u8; 6])], fdb: &[([u8; 6], IpAddr)], table: &VtepTable) -> Changes {
    let vteps: Vec<&Vtep> = table.vteps().filter(|v| unicast(v.mac)).collect();
    let want: HashMap<IpAddr, [u8; 6]> = vteps.iter().map(|v| (v.tunnel_address, v.mac)).collect();
    let have: HashMap<IpAddr, [u8; 6]> = neighbours.iter().copied().collect();
    let (mut stale_neighbours, mut write) = diff(&have, &want);
    let want: BTreeMap<[u8; 6], IpAddr> = vteps.iter().map(|v| (v.mac, v.node)).collect();
    let mut fdb_write: Vec<_> =
        want.iter().filter(|(m, n)| !fdb.contains(&(**m, **n))).map(|(m, n)| (*m, *n)).collect();
    let mut stale_fdb: Vec<_> = fdb.iter().filter(|(m, n)| want.get(m) != Some(n)).copied().collect();
    // Sorted: the order of the writes (and of the log) does not depend on hashing.
    stale_neighbours.sort_unstable();
    write.sort_unstable();
    fdb_write.sort_unstable();
    stale_fdb.sort_unstable();
    Changes { neighbours: write, stale_neighbours, fdb: fdb_write, stale_fdb }
}

/// Makes the device's neighbour and FDB entries what `table` (its
/// family's VTEPs) says, by difference: missing or changed ones written
/// first (in place), then strays removed. Entries on other devices are
/// never looked at.
async fn reconcile(
    handle: &rtnetlink::Handle,
    index: u32,
    family: Family,
    table: &VtepTable,
) -> Result<(), TunnelError> {
    let device = family.device();
    for v in table.vteps().filter(|v| !unicast(v.mac)) {
        tracing::warn!(tunnel_address = %v.tunnel_address, node = %v.node, mac = format_mac(v.mac), "VXLAN: a VTEP's MAC is not unicast: left out");
    }
    let neighbours = dump(handle, index, family.neighbours()).await?;
    let fdb = dump(handle, index, AddressFamily::Bridge).await?;
    let have_neigh: Vec<_> = neighbours.iter().map(|(ip, mac, _)| (*ip, *mac)).collect();
    let have_fdb: Vec<_> = fdb.iter().map(|(node, mac, _)| (*mac, *node)).collect();
    let changes = plan(&have_neigh, &have_fdb, table);
    if changes.is_empty() {
        tracing::debug!(device, vteps = table.len(), "VXLAN entries already as the nodes say");
        return Ok(());
    }
    let failed = |what: &'static str, value: String| {
        move |e: rtnetlink::Error| TunnelError::Kernel { what, why: format!("{value} dev {device}: {e}") }
    };
    for (ip, mac) in &changes.neighbours {
        // `ip neigh replace IP lladdr MAC dev vxlan.calico nud permanent`.
        let add = handle.neighbours().add(index, *ip).link_layer_address(mac).replace();
        add.execute().await.map_err(failed("writing a neighbour", format!("{ip} lladdr {}", format_mac(*mac))))?;
    }
    for (mac, node) in &changes.fdb {
        // `bridge fdb replace MAC dev vxlan.calico dst NODE self permanent`
        // (NTF_SELF: the vxlan device's own FDB, not a bridge's).
        let add = handle.neighbours().add_bridge(index, mac).destination(*node);
        let add = add.flags(NeighbourFlags::Own).replace();
        add.execute().await.map_err(failed("writing an FDB entry", format!("{} dst {node}", format_mac(*mac))))?;
    }
    for ip in &changes.stale_neighbours {
        let Some((_, _, msg)) = neighbours.iter().find(|(i, _, _)| i == ip) else { continue };
        let done = handle.neighbours().del(msg.clone()).execute().await;
        gone(done).map_err(failed("removing a neighbour", ip.to_string()))?;
    }
    for (mac, node) in &changes.stale_fdb {
        let Some((_, _, msg)) = fdb.iter().find(|(n, m, _)| n == node && m == mac) else { continue };
        // The remote may be gone already: a replace above took it over.
        let done = handle.neighbours().del(msg.clone()).execute().await;
        gone(done).map_err(failed("removing an FDB entry", format!("{} dst {node}", format_mac(*mac))))?;
    }
    tracing::info!(
        device,
        vteps = table.len(),
        neighbours_written = changes.neighbours.len(),
        neighbours_removed = changes.stale_neighbours.len(),
        fdb_written = changes.fdb.len(),
        fdb_removed = changes.stale_fdb.len(),
        "VXLAN neighbour and FDB entries reconciled"
    );
    Ok(())
}

/// A deletion's result, where "not there" (removed meanwhile) is done.
fn gone(result: Result<(), rtnetlink::Error>) -> Result<(), rtnetlink::Error> {
    match result {
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ENOENT => Ok(()),
        done => done,
    }
}

/// Removes the device of `family` (its entries and the routes through it
/// go with it); whether there was one.
pub async fn remove(family: Family) -> Result<bool, TunnelError> {
    delete(family.device()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_print_as_calico_stores_them_and_random_ones_are_local_unicast() {
        assert_eq!(format_mac([0x66, 0x1c, 0x7e, 0x0a, 0x3b, 0x52]), "66:1c:7e:0a:3b:52");
        for _ in 0..64 {
            let m = random_mac();
            assert_eq!(m[0] & 0x03, 0x02, "{}", format_mac(m));
        }
        assert_ne!(random_mac(), random_mac());
    }

    fn vtep(last: u8, mac: u8, node: u8) -> Vtep {
        Vtep { tunnel_address: [198, 18, 0, last].into(), mac: [2, 0, 0, 0, 0, mac], node: [192, 0, 2, node].into() }
    }

    #[test]
    fn plan_writes_only_what_differs_and_replaces_changed_entries_in_place() {
        let (a, b) = (vtep(1, 1, 1), vtep(2, 2, 2));
        let table = VtepTable::new([a, b]);
        let neighbours = [(a.tunnel_address, a.mac), (b.tunnel_address, [2, 0, 0, 0, 0, 9])];
        let fdb = [(a.mac, a.node), (b.mac, [192, 0, 2, 9].into())];
        let changes = plan(&neighbours, &fdb, &table);
        assert_eq!(changes.neighbours, [(b.tunnel_address, b.mac)], "same address, new MAC: replaced");
        assert_eq!(changes.fdb, [(b.mac, b.node)], "same MAC, new node: replaced");
        assert!(changes.stale_neighbours.is_empty(), "a replaced entry is not removed first");
        assert_eq!(changes.stale_fdb, [(b.mac, [192, 0, 2, 9].into())], "its old remote, if still there");
        let right =
            plan(&[(a.tunnel_address, a.mac), (b.tunnel_address, b.mac)], &[(a.mac, a.node), (b.mac, b.node)], &table);
        assert!(right.is_empty(), "{right:?}");
    }

    #[test]
    fn plan_removes_strays_and_skips_non_unicast_macs() {
        let a = vtep(1, 1, 1);
        let mut zero = vtep(3, 0, 3);
        zero.mac = [0; 6];
        let mut multicast = vtep(4, 0, 4);
        multicast.mac = [1, 0, 0x5e, 0, 0, 1];
        let table = VtepTable::new([a, zero, multicast]);
        let stray: IpAddr = [198, 18, 7, 7].into();
        let changes = plan(
            &[(a.tunnel_address, a.mac), (stray, [2, 0, 0, 0, 7, 7])],
            &[(a.mac, a.node), (a.mac, [192, 0, 2, 99].into()), ([2, 0, 0, 0, 7, 7], [192, 0, 2, 77].into())],
            &table,
        );
        assert_eq!(changes.stale_neighbours, [stray]);
        assert_eq!(changes.stale_fdb, [(a.mac, [192, 0, 2, 99].into()), ([2, 0, 0, 0, 7, 7], [192, 0, 2, 77].into())]);
        assert_eq!((changes.neighbours, changes.fdb), (vec![], vec![]), "nothing for the zero or multicast MAC");
        let empty = plan(&[(a.tunnel_address, a.mac)], &[(a.mac, a.node)], &VtepTable::default());
        assert_eq!((empty.stale_neighbours, empty.stale_fdb), (vec![a.tunnel_address], vec![(a.mac, a.node)]));
    }

    #[test]
    fn a_table_is_keyed_by_tunnel_address() {
        let v = |t: [u8; 4], last: u8| Vtep {
            tunnel_address: t.into(),
            mac: [2, 0, 0, 0, 0, last],
            node: [192, 0, 2, last].into(),
        };
        let table = VtepTable::new([v([198, 18, 0, 64], 2), v([198, 18, 0, 0], 1), v([198, 18, 0, 64], 3)]);
        assert_eq!(table.len(), 2);
        assert_eq!(table.get([198, 18, 0, 64].into()).map(|v| v.mac[5]), Some(3), "the last wins");
        let order: Vec<_> = table.vteps().map(|v| v.tunnel_address.to_string()).collect();
        assert_eq!(order, ["198.18.0.0", "198.18.0.64"]);
    }

    #[test]
    fn each_device_takes_the_vteps_of_its_family() {
        let v4 = vtep(1, 1, 1);
        let v6 = Vtep {
            tunnel_address: "2001:db8:100::1".parse().unwrap(),
            mac: [2, 0, 0, 0, 6, 1],
            node: "2001:db8::1".parse().unwrap(),
        };
        let mixed = Vtep { node: "192.0.2.9".parse().unwrap(), ..v6 };
        let table = VtepTable::new([v4, v6, mixed]);
        assert_eq!(table.of(Family::V4).vteps().copied().collect::<Vec<_>>(), [v4]);
        assert_eq!(table.of(Family::V6).len(), 0, "the last of one tunnel address wins: the mixed one, in neither");
        let table = VtepTable::new([v4, v6]);
        assert_eq!(table.of(Family::V6).vteps().copied().collect::<Vec<_>>(), [v6]);
        assert_eq!((Family::V4.device(), Family::V6.device()), ("vxlan.calico", "vxlan-v6.calico"));
        assert_eq!((Family::V4.overhead(), Family::V6.overhead()), (50, 70));
    }
}
