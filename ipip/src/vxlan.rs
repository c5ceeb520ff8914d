//! VXLAN (RFC 7348) the way Calico runs it: the kernel's vxlan device
//! `vxlan.calico` (one VNI, learning off), this node's VTEP on it (a tunnel
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

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use futures::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::link::{InfoData, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage};
use rtnetlink::{LinkUnspec, LinkVxlan};
use tokio::sync::watch;

use crate::TunnelError;
use crate::kernel::{connect, delete, find};

/// The device, as Calico names it.
pub const DEVICE: &str = "vxlan.calico";
/// Calico's VXLAN network identifier (FelixConfiguration `vxlanVNI`).
pub const DEFAULT_VNI: u32 = 4096;
/// The IANA VXLAN port (RFC 7348 §5; FelixConfiguration `vxlanPort`).
pub const DEFAULT_PORT: u16 = 4789;
/// What VXLAN over IPv4 takes off the underlay MTU: outer IPv4 (20), UDP
/// (8), VXLAN (8) and the inner Ethernet header (14).
pub const OVERHEAD: u16 = 50;

/// This node's end of the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanConfig {
    /// The node's underlay address: the outer source; its interface
    /// carries the encapsulated packets.
    pub local: Ipv4Addr,
    /// VXLAN network identifier (24 bits).
    pub vni: u32,
    /// UDP destination port.
    pub port: u16,
    /// The device's MTU.
    pub mtu: u32,
    /// The node's tunnel address (on the device, /32).
    pub tunnel_address: Ipv4Addr,
    /// The device's MAC (stable: published on the Node).
    pub mac: [u8; 6],
}

/// A remote node's tunnel end, from its Node resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Vtep {
    /// Its tunnel address (`ipv4VXLANTunnelAddr`).
    pub tunnel_address: Ipv4Addr,
    /// Its device's MAC (`vxlanTunnelMACAddr`).
    pub mac: [u8; 6],
    /// Its underlay address (the outer destination).
    pub node: Ipv4Addr,
}

/// Every remote VTEP, by tunnel address; felix computes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VtepTable {
    vteps: BTreeMap<Ipv4Addr, Vtep>,
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
    pub fn get(&self, tunnel_address: Ipv4Addr) -> Option<&Vtep> {
        self.vteps.get(&tunnel_address)
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

/// A MAC as Calico stores it: `66:1c:7e:0a:3b:52`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter().map(|o| format!("{o:02x}")).collect::<Vec<_>>().join(":")
}

/// A random locally administered unicast MAC (IEEE 802: bit 1 of the first
/// octet set, bit 0 clear), as Calico gives each node's VXLAN device.
pub fn random_mac() -> [u8; 6] {
    let mut mac = [0u8; 6];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut mac));
    if read.is_err() {
        // No /dev/urandom: the clock's nanoseconds and our pid, mixed.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mixed = (nanos.as_nanos() as u64) ^ (u64::from(std::process::id()) << 24);
        mac.copy_from_slice(&mixed.to_le_bytes()[..6]);
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

fn nl(what: &'static str) -> impl Fn(rtnetlink::Error) -> TunnelError {
    move |e| TunnelError::Kernel { what, why: format!("{DEVICE}: {e}") }
}

/// A vxlan link's VNI, port and local address; `None` if it is no vxlan link.
fn vxlan_params(link: &LinkMessage) -> Option<(Option<u32>, Option<u16>, Option<Ipv4Addr>)> {
    let infos = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => Some(infos),
        _ => None,
    })?;
    let data = infos.iter().find_map(|i| match i {
        LinkInfo::Data(InfoData::Vxlan(data)) => Some(data),
        _ => None,
    })?;
    let (mut vni, mut port, mut local) = (None, None, None);
    for d in data {
        match d {
            InfoVxlan::Id(v) => vni = Some(*v),
            InfoVxlan::Port(p) => port = Some(*p),
            InfoVxlan::Local(a) => local = Some(*a),
            _ => {}
        }
    }
    Some((vni, port, local))
}

/// Creates the device (or adopts the one there), then follows `table`.
pub async fn start(config: &VxlanConfig, mut table: watch::Receiver<Arc<VtepTable>>) -> Result<Plane, TunnelError> {
    let handle = connect()?;
    let (underlay, underlay_index) = crate::ebpf::underlay(config.local)?;
    let index = device(&handle, config, underlay_index).await?;
    // No IPv6 on the device: nothing to answer neighbour discovery for.
    crate::ebpf::sysctl(&format!("ipv6/conf/{DEVICE}/disable_ipv6"), "1")?;
    // Until felix has published a table there is nothing to go by (entries
    // kept from before the restart stay as they are).
    if table.has_changed().unwrap_or(false) {
        let current = table.borrow_and_update().clone();
        reconcile(&handle, index, &current).await?;
    }
    tracing::info!(
        device = DEVICE,
        vni = config.vni,
        port = config.port,
        underlay,
        tunnel_address = %config.tunnel_address,
        mac = format_mac(config.mac),
        "VXLAN device up"
    );
    let task = tokio::spawn(async move {
        while table.changed().await.is_ok() {
            let next = table.borrow_and_update().clone();
            if let Err(e) = reconcile(&handle, index, &next).await {
                tracing::error!(error = %e, "VXLAN: the neighbour and FDB entries could not follow the nodes");
            }
        }
    });
    Ok(Plane { task })
}

/// The device as `config` says, created or adopted; its index.
async fn device(handle: &rtnetlink::Handle, config: &VxlanConfig, underlay: u32) -> Result<u32, TunnelError> {
    if let Some(link) = find(handle, DEVICE).await? {
        let want = (Some(config.vni), Some(config.port), Some(config.local));
        match vxlan_params(&link) {
            Some(have) if have == want => {}
            have => {
                // A VNI, port or address change (or a foreign device by our
                // name) cannot be made in place: the device is made again.
                tracing::warn!(
                    device = DEVICE,
                    ?have,
                    ?want,
                    "VXLAN device differs from the configuration: recreating it"
                );
                delete(DEVICE).await?;
            }
        }
    }
    if find(handle, DEVICE).await?.is_none() {
        let link = LinkVxlan::new(DEVICE, config.vni)
            .port(config.port)
            .local(config.local)
            .dev(underlay)
            .learning(false)
            .build();
        handle.link().add(link).execute().await.map_err(nl("creating the VXLAN device"))?;
    }
    let index = find(handle, DEVICE)
        .await?
        .ok_or(TunnelError::Kernel { what: "creating the VXLAN device", why: format!("{DEVICE} is missing") })?
        .header
        .index;
    let set = LinkUnspec::new_with_index(index).mtu(config.mtu).address(config.mac.to_vec()).up().build();
    handle.link().set(set).execute().await.map_err(nl("setting up the VXLAN device"))?;
    match handle.address().add(index, config.tunnel_address.into(), 32).execute().await {
        Ok(()) => {}
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => {}
        Err(e) => return Err(nl("addressing the VXLAN device")(e)),
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

fn ipv4_of(msg: &NeighbourMessage) -> Option<Ipv4Addr> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => Some(*a),
        // An FDB entry (family bridge) carries its IPv4 destination as raw octets.
        NeighbourAttribute::Destination(NeighbourAddress::Other(o)) => {
            <[u8; 4]>::try_from(o.as_slice()).ok().map(Ipv4Addr::from)
        }
        _ => None,
    })
}

/// The permanent entries of `family` on the device: (neighbour IPv4, MAC) and the message.
async fn dump(
    handle: &rtnetlink::Handle,
    index: u32,
    family: AddressFamily,
) -> Result<Vec<(Ipv4Addr, [u8; 6], NeighbourMessage)>, TunnelError> {
    let all: Vec<NeighbourMessage> = handle
        .neighbours()
        .get()
        .set_address_family(family)
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing neighbours"))?;
    Ok(all
        .into_iter()
        // NUD_PERMANENT, alone or with other bits (`bridge fdb add … permanent` adds NUD_NOARP).
        .filter(|m| m.header.ifindex == index && u16::from(m.header.state) & NUD_PERMANENT != 0)
        .filter_map(|m| Some((ipv4_of(&m)?, mac_of(&m)?, m)))
        .filter(|(_, mac, _)| *mac != [0; 6])
        .collect())
}

/// The entries the kernel has on the device: neighbours (tunnel address,
/// MAC) and FDB entries (MAC, underlay address).
pub async fn entries() -> Result<(Vec<(Ipv4Addr, [u8; 6])>, Vec<([u8; 6], Ipv4Addr)>), TunnelError> {
    let handle = connect()?;
    let Some(link) = find(&handle, DEVICE).await? else { return Ok((Vec::new(), Vec::new())) };
    let index = link.header.index;
    let neigh = dump(&handle, index, AddressFamily::Inet).await?.into_iter().map(|(ip, mac, _)| (ip, mac));
    let fdb = dump(&handle, index, AddressFamily::Bridge).await?.into_iter().map(|(ip, mac, _)| (mac, ip));
    Ok((neigh.collect(), fdb.collect()))
}

/// Makes the device's neighbour and FDB entries what `table` says, by
/// difference: strays removed, missing or changed ones written.
async fn reconcile(handle: &rtnetlink::Handle, index: u32, table: &VtepTable) -> Result<(), TunnelError> {
    let neighbours = dump(handle, index, AddressFamily::Inet).await?;
    let fdb = dump(handle, index, AddressFamily::Bridge).await?;
    let want_neigh: BTreeMap<Ipv4Addr, [u8; 6]> = table.vteps().map(|v| (v.tunnel_address, v.mac)).collect();
    let want_fdb: BTreeMap<[u8; 6], Ipv4Addr> = table.vteps().map(|v| (v.mac, v.node)).collect();
    let (mut removed, mut written) = (0, 0);
    for (ip, mac, msg) in &neighbours {
        if want_neigh.get(ip) != Some(mac) {
            handle.neighbours().del(msg.clone()).execute().await.map_err(nl("removing a neighbour"))?;
            removed += 1;
        }
    }
    for (mac, node, msg) in fdb.iter().map(|(node, mac, msg)| (mac, node, msg)) {
        if want_fdb.get(mac) != Some(node) {
            handle.neighbours().del(msg.clone()).execute().await.map_err(nl("removing an FDB entry"))?;
            removed += 1;
        }
    }
    let have_neigh: BTreeMap<Ipv4Addr, [u8; 6]> = neighbours.iter().map(|(ip, mac, _)| (*ip, *mac)).collect();
    let have_fdb: BTreeMap<[u8; 6], Ipv4Addr> = fdb.iter().map(|(node, mac, _)| (*mac, *node)).collect();
    for (ip, mac) in &want_neigh {
        if have_neigh.get(ip) != Some(mac) {
            let add = handle.neighbours().add(index, IpAddr::V4(*ip)).link_layer_address(mac).replace();
            add.execute().await.map_err(nl("writing a neighbour"))?;
            written += 1;
        }
    }
    for (mac, node) in &want_fdb {
        if have_fdb.get(mac) != Some(node) {
            // `bridge fdb replace MAC dev vxlan.calico dst NODE self permanent`.
            let add = handle.neighbours().add_bridge(index, mac).destination(IpAddr::V4(*node));
            add.flags(NeighbourFlags::Own).replace().execute().await.map_err(nl("writing an FDB entry"))?;
            written += 1;
        }
    }
    if removed + written > 0 {
        tracing::info!(
            device = DEVICE,
            vteps = table.len(),
            removed,
            written,
            "VXLAN neighbour and FDB entries reconciled"
        );
    }
    Ok(())
}

/// Removes the device (its entries and the routes through it go with it);
/// whether there was one.
pub async fn remove() -> Result<bool, TunnelError> {
    delete(DEVICE).await
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
}
