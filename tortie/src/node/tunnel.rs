//! The node's tunnels and their addresses, as Calico allocates them: while
//! any pool this node may use for tunnels has `ipipMode` (or `vxlanMode`)
//! other than `Never`, the node holds one address from such a pool (handle
//! `ipip-tunnel-addr-<node>` or `vxlan-tunnel-addr-<node>`), runs the
//! tunnel and then publishes the address on its Node
//! (`spec.bgp.ipv4IPIPTunnelAddr`, `spec.ipv4VXLANTunnelAddr` with
//! `spec.vxlanTunnelMACAddr`); when none has, the address is withdrawn from
//! the Node, the tunnel goes down and the address goes back (the VXLAN MAC
//! stays the node's). Other nodes wrap what they send this one only while
//! it publishes (felix): not before its tunnel is up, nor after it started
//! taking it down. IPv6 pools with `vxlanMode` do the same for the IPv6 VXLAN
//! device (`vxlan-v6-tunnel-addr-<node>`, `spec.ipv6VXLANTunnelAddr`,
//! `spec.vxlanTunnelMACAddrV6`) between the nodes' IPv6 addresses. The
//! device's settings come from FelixConfiguration (`ipipMTU`; `vxlanMTU`
//! or `vxlanMTUV6`, `vxlanVNI`, `vxlanPort`) or the underlay's MTU less the
//! encapsulation. This is checked at start and at every change of an IP
//! pool or a FelixConfiguration.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ipnet::IpNet;
use tokio::sync::watch;
use tortie_ipam::{self as ipam, Family, Purpose, Request};
use tortie_ipip::EncapTable;
use tortie_ipip::ebpf::PlaneConfig;
use tortie_ipip::vxlan::{self, VtepTable, VxlanConfig};
use tortie_store::api;
use tortie_store::resources::{
    EncapMode, FelixConfigurationSpec, IpPoolSpec, Kind, NodeBgp, NodeSpec, Object, Resource, parse_mac,
};
use tortie_store::syncer::Syncer;

/// Which tunnel, with what its data plane follows.
#[derive(Clone)]
pub enum Encap {
    /// IP-in-IP (RFC 2003): the blocks it carries, and where its maps are pinned.
    Ipip { table: watch::Receiver<Arc<EncapTable>>, bpffs: PathBuf },
    /// VXLAN (RFC 7348) over one family: the remote nodes' tunnel ends.
    Vxlan { table: watch::Receiver<Arc<VtepTable>>, family: vxlan::Family },
}

/// What the device is built with; a change rebuilds it in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    mtu: u32,
    vni: u32,
    port: u16,
    /// The tunnel address and (VXLAN) MAC the Node publishes: an edit of
    /// the Node is put back, or taken onto the device.
    address: Option<IpAddr>,
    mac: Option<[u8; 6]>,
}

/// A tunnel that runs.
enum Running {
    /// With the bpffs its maps are pinned under.
    Ipip(tortie_ipip::Tunnel, PathBuf),
    Vxlan(vxlan::Plane, vxlan::Family),
}

impl Running {
    fn device(&self) -> &'static str {
        match self {
            Running::Ipip(t, _) => t.device(),
            Running::Vxlan(_, family) => family.device(),
        }
    }

    /// Takes the tunnel down: its device goes, and the routes through it.
    async fn stop(self, local: IpAddr) -> anyhow::Result<()> {
        match self {
            Running::Ipip(t, bpffs) => Ok(t.stop(ipv4(local)?, &bpffs).await?),
            Running::Vxlan(plane, family) => {
                drop(plane);
                Ok(vxlan::remove(family).await.map(drop)?)
            }
        }
    }
}

/// The IPv4 address IPIP needs (`start` runs it on nodes with one only).
fn ipv4(a: IpAddr) -> anyhow::Result<Ipv4Addr> {
    match a {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(a) => anyhow::bail!("IPIP carries IPv4 between IPv4 addresses, not from {a}"),
    }
}

impl Encap {
    fn name(&self) -> &'static str {
        match self {
            Encap::Ipip { .. } => "IPIP",
            Encap::Vxlan { family: vxlan::Family::V4, .. } => "VXLAN",
            Encap::Vxlan { family: vxlan::Family::V6, .. } => "IPv6 VXLAN",
        }
    }

    fn handle(&self, node: &str) -> String {
        match self {
            Encap::Ipip { .. } => format!("ipip-tunnel-addr-{node}"),
            Encap::Vxlan { family: vxlan::Family::V4, .. } => format!("vxlan-tunnel-addr-{node}"),
            Encap::Vxlan { family: vxlan::Family::V6, .. } => format!("vxlan-v6-tunnel-addr-{node}"),
        }
    }

    /// The family of the pools, the addresses and the underlay.
    fn family(&self) -> Family {
        match self {
            Encap::Ipip { .. } | Encap::Vxlan { family: vxlan::Family::V4, .. } => Family::V4,
            Encap::Vxlan { family: vxlan::Family::V6, .. } => Family::V6,
        }
    }

    /// The pool's mode for this tunnel.
    fn mode(&self, pool: &IpPoolSpec) -> Option<EncapMode> {
        match self {
            Encap::Ipip { .. } => pool.ipip_mode,
            Encap::Vxlan { .. } => pool.vxlan_mode,
        }
    }

    /// The tunnel address the Node publishes.
    fn published(&self, spec: &NodeSpec) -> Option<IpAddr> {
        match self {
            Encap::Ipip { .. } => spec.bgp.as_ref().and_then(|b| b.ipv4_ipip_tunnel_addr).map(IpAddr::V4),
            Encap::Vxlan { family: vxlan::Family::V4, .. } => spec.ipv4_vxlan_tunnel_addr.map(IpAddr::V4),
            Encap::Vxlan { family: vxlan::Family::V6, .. } => spec.ipv6_vxlan_tunnel_addr.map(IpAddr::V6),
        }
    }

    /// The Node's field for the device's MAC (VXLAN only).
    fn mac_field<'a>(&self, spec: &'a mut NodeSpec) -> Option<&'a mut Option<String>> {
        match self {
            Encap::Ipip { .. } => None,
            Encap::Vxlan { family: vxlan::Family::V4, .. } => Some(&mut spec.vxlan_tunnel_mac_addr),
            Encap::Vxlan { family: vxlan::Family::V6, .. } => Some(&mut spec.vxlan_tunnel_mac_addr_v6),
        }
    }

    /// Publishes `address`; with `mac`, makes sure the node has its VXLAN MAC.
    fn publish(&self, spec: &mut NodeSpec, address: Option<IpAddr>, mac: bool) {
        match (self, address) {
            (Encap::Ipip { .. }, _) => {
                let v4 = address.and_then(|a| ipv4(a).ok());
                spec.bgp.get_or_insert_with(NodeBgp::default).ipv4_ipip_tunnel_addr = v4;
            }
            (Encap::Vxlan { family: vxlan::Family::V4, .. }, Some(IpAddr::V4(a))) => {
                spec.ipv4_vxlan_tunnel_addr = Some(a);
            }
            (Encap::Vxlan { family: vxlan::Family::V6, .. }, Some(IpAddr::V6(a))) => {
                spec.ipv6_vxlan_tunnel_addr = Some(a);
            }
            (Encap::Vxlan { family: vxlan::Family::V4, .. }, _) => spec.ipv4_vxlan_tunnel_addr = None,
            (Encap::Vxlan { family: vxlan::Family::V6, .. }, _) => spec.ipv6_vxlan_tunnel_addr = None,
        }
        if mac
            && let Some(mac) = self.mac_field(spec)
            && mac.as_deref().and_then(parse_mac).is_none()
        {
            *mac = Some(vxlan::format_mac(vxlan::random_mac()));
        }
    }

    /// The device's settings: FelixConfiguration's, or the underlay's MTU
    /// less the encapsulation.
    fn settings(&self, felix: &FelixConfigurationSpec, underlay_mtu: u16) -> Settings {
        let (mtu, overhead) = match self {
            Encap::Ipip { .. } => (felix.ipip_mtu(), tortie_ipip::OUTER_LEN),
            Encap::Vxlan { family: f @ vxlan::Family::V4, .. } => (felix.vxlan_mtu(), f.overhead()),
            Encap::Vxlan { family: f @ vxlan::Family::V6, .. } => (felix.vxlan_mtu_v6(), f.overhead()),
        };
        let mtu = u32::from(mtu.unwrap_or(underlay_mtu.saturating_sub(overhead)));
        match self {
            Encap::Ipip { .. } => Settings { mtu, vni: 0, port: 0, address: None, mac: None },
            Encap::Vxlan { .. } => {
                Settings { mtu, vni: felix.vxlan_vni(), port: felix.vxlan_port(), address: None, mac: None }
            }
        }
    }
}

/// How long a tunnel no pool wants any more stays up: felix moves the
/// routes off it, and packets already in it (ours and the other nodes',
/// which move theirs at the same time) still arrive.
const DOWN_GRACE: Duration = Duration::from_secs(2);

/// How soon a failed change of the tunnel is tried again.
const RETRY: Duration = Duration::from_secs(5);

async fn node_resource(kv: &Syncer, node: &str) -> anyhow::Result<Object<NodeSpec>> {
    match api::get(kv, Kind::Node, None, node).await? {
        Resource::Node(n) => Ok(n),
        _ => anyhow::bail!("Node {node} is not a Node"),
    }
}

/// This node's FelixConfiguration (`node.<name>` over `default`).
async fn felix_config(kv: &Syncer, node: &str) -> FelixConfigurationSpec {
    let spec = |name: String| async move {
        match api::get(kv, Kind::FelixConfiguration, None, &name).await {
            Ok(Resource::FelixConfiguration(f)) => Some(f.spec),
            _ => None,
        }
    };
    FelixConfigurationSpec::merged(spec("default".into()).await.as_ref(), spec(format!("node.{node}")).await.as_ref())
}

/// What brings a tunnel up and takes it down.
struct Setup {
    kv: Syncer,
    node: String,
    /// The node's address of the tunnel's family (the outer source).
    local: IpAddr,
    underlay_mtu: u16,
    encap: Encap,
    /// Where the device routes go through is published (felix follows it).
    device: watch::Sender<Option<String>>,
}

impl Setup {
    /// The pools this node may use for tunnels that ask for this one.
    async fn pools(&self) -> anyhow::Result<Vec<IpPoolSpec>> {
        let pools = ipam::pools_for(&self.kv, &self.node, Purpose::Tunnel, self.encap.family(), &[]).await?;
        Ok(pools.into_iter().filter(|p| self.encap.mode(p).is_some_and(|m| m != EncapMode::Never)).collect())
    }

    /// The tunnel address this node holds from `pools`, allocated if it
    /// holds none. What IPAM holds for us is the truth: the published one
    /// while IPAM holds it, else one IPAM holds.
    async fn hold(&self, pools: &[IpPoolSpec]) -> anyhow::Result<IpAddr> {
        let (kind, node) = (self.encap.name(), self.node.as_str());
        let current = self.encap.published(&node_resource(&self.kv, node).await?.spec);
        let held = self.held().await?;
        if let Some(a) = current.filter(|a| held.contains(a)).or(held.first().copied()) {
            return Ok(a);
        }
        let req = Request {
            node: node.into(),
            handle: self.encap.handle(node),
            purpose: Purpose::Tunnel,
            family: self.encap.family(),
            attrs: BTreeMap::new(),
            // Calico's way: the address comes from a pool of this tunnel.
            pools: pools.iter().filter_map(|p| p.cidr).map(|c| c.to_string()).collect(),
        };
        let assigned = ipam::assign(&self.kv, &req).await;
        Ok(assigned.with_context(|| format!("allocating the {kind} tunnel address"))?.addr())
    }

    /// The tunnel addresses IPAM holds for this node.
    async fn held(&self) -> anyhow::Result<Vec<IpAddr>> {
        let held = ipam::addresses_of(&self.kv, &self.encap.handle(&self.node)).await?;
        Ok(held.into_iter().filter(|a| Family::of(&IpNet::from(*a)) == self.encap.family()).collect())
    }

    /// Writes the Node as the tunnel stands: the tunnel address published
    /// (other nodes wrap what they send here only while it is: felix) or
    /// not, and the node's VXLAN MAC, made once and kept; returns the MAC.
    /// Only this tunnel's fields change, in place (`api::update`): the
    /// node's other tunnels write theirs on the same Node, maybe at once.
    async fn publish(&self, address: Option<IpAddr>, mac: bool) -> anyhow::Result<Option<[u8; 6]>> {
        let (kind, node) = (self.encap.name(), self.node.as_str());
        let mut changed = false;
        let written = api::update(&self.kv, Kind::Node, None, node, |r| {
            let Resource::Node(n) = r else { return false };
            let before = n.spec.clone();
            self.encap.publish(&mut n.spec, address, mac);
            changed = n.spec != before;
            changed
        })
        .await
        .context("publishing the tunnel address")?;
        let Resource::Node(mut n) = written else { anyhow::bail!("Node {node} is not a Node") };
        let mac = self.encap.mac_field(&mut n.spec).and_then(|m| m.as_deref().and_then(parse_mac));
        if changed {
            tracing::info!(node, tunnel_address = ?address, ?mac, "{kind} tunnel address updated");
        }
        Ok(mac)
    }

    /// Unpublishes the tunnel address, then gives it back.
    async fn release(&self) -> anyhow::Result<()> {
        self.publish(None, false).await?;
        ipam::release_handle(&self.kv, &self.encap.handle(&self.node)).await?;
        Ok(())
    }

    /// Makes `tunnel` what the IP pools want now: brought up (its address
    /// allocated first, published once it runs), kept, rebuilt in place for
    /// new settings, or taken down (its address unpublished first, given
    /// back once the device is gone). On an error it stays as it was,
    /// except that a tunnel failing to stop is down, and one failing to
    /// come up is down and unpublished.
    async fn reconcile(&self, tunnel: &mut Option<(Running, Settings)>) -> anyhow::Result<()> {
        let pools = self.pools().await?;
        let mut settings = self.encap.settings(&felix_config(&self.kv, &self.node).await, self.underlay_mtu);
        let kind = self.encap.name();
        if pools.is_empty() {
            let Some((t, built)) = tunnel.take() else { return self.remove_kept("no pool uses it").await };
            // Other nodes stop wrapping for this one (its address is no
            // longer published), its own routes leave the device, and what
            // is already in the tunnel still arrives; then the device goes,
            // then its address.
            if let Err(e) = self.publish(None, false).await {
                *tunnel = Some((t, built));
                return Err(e);
            }
            let device = t.device();
            self.device.send_replace(None);
            tracing::info!(device, grace = ?DOWN_GRACE, "no IP pool uses {kind} any more: routes leave the tunnel");
            tokio::time::sleep(DOWN_GRACE).await;
            t.stop(self.local).await.with_context(|| format!("taking the {kind} tunnel {device} down"))?;
            tracing::info!(device, "no IP pool uses {kind} any more: tunnel down");
            return self.release().await;
        }
        // Held (allocated, or kept); the Node keeps what it publishes until
        // the tunnel is up (a tunnel kept from an earlier run still carries
        // traffic meanwhile).
        let address = self.hold(&pools).await?;
        let published = self.encap.published(&node_resource(&self.kv, &self.node).await?.spec);
        (settings.address, settings.mac) = (Some(address), self.publish(published, true).await?);
        let up = match tunnel.take() {
            Some((t, built)) if built == settings => Ok(t),
            Some((t, built)) => {
                // New settings: the tunnel is brought up over itself (the
                // device takes them, the plane adopts what it had): its
                // routes stay.
                tracing::info!(device = t.device(), from = ?built, to = ?settings, "{kind} settings changed");
                drop(t);
                self.bring_up(settings).await
            }
            None => self.bring_up(settings).await,
        };
        match up {
            Ok(t) => *tunnel = Some((t, settings)),
            Err(e) => {
                // Nothing unwraps here: routes leave the device, and other
                // nodes stop wrapping for this one.
                self.device.send_replace(None);
                if let Err(u) = self.publish(None, true).await {
                    tracing::warn!(error = format!("{u:#}"), "cannot withdraw the {kind} tunnel address");
                }
                return Err(e);
            }
        }
        // Published once the tunnel is up (again, if the Node lost it).
        self.publish(Some(address), true).await.map(drop)
    }

    /// A tunnel kept from an earlier run (or left by a failed stop) goes,
    /// and its routes with it; then its address.
    async fn remove_kept(&self, why: &str) -> anyhow::Result<()> {
        let kind = self.encap.name();
        let published = self.encap.published(&node_resource(&self.kv, &self.node).await?.spec);
        // The address a kept `tunl0` holds: the published one, or (a stop
        // that failed after the Node stopped publishing it) the one IPAM holds.
        let address = match published {
            Some(a) => Some(a),
            None => self.held().await?.first().copied(),
        };
        let kept = match &self.encap {
            Encap::Ipip { bpffs, .. } => {
                let address = address.and_then(|a| ipv4(a).ok());
                tortie_ipip::remove_kept(ipv4(self.local)?, address, bpffs).await
            }
            Encap::Vxlan { family, .. } => vxlan::remove(*family).await,
        };
        if kept.with_context(|| format!("removing the kept {kind} tunnel"))? {
            tracing::info!(?address, "{why}: removed the {kind} tunnel kept from before");
        }
        self.release().await
    }

    /// Starts the tunnel as `settings` say (its address and MAC allocated already).
    async fn bring_up(&self, settings: Settings) -> anyhow::Result<Running> {
        let (tunnel_address, mac) = (settings.address, settings.mac);
        let kind = self.encap.name();
        let running = match &self.encap {
            Encap::Ipip { table, bpffs } => {
                // (A fresh plane unwraps for them until felix's first table:
                // none when they cannot be read, as before there was a seed.)
                let nodes = api::list(&self.kv, Kind::Node, None).await.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cannot list the nodes: the {kind} plane waits for felix's first table");
                    Vec::new()
                });
                let config = PlaneConfig {
                    local: ipv4(self.local)?,
                    tunnel_address: tunnel_address.map(ipv4).transpose()?,
                    mtu: settings.mtu,
                    bpffs: bpffs.clone(),
                    nodes: nodes
                        .iter()
                        .filter_map(|r| match r {
                            Resource::Node(n) => n.spec.ipv4_address(),
                            _ => None,
                        })
                        .collect(),
                };
                let t = tortie_ipip::start(&config, table.clone()).await.context("starting the IPIP tunnel")?;
                Running::Ipip(t, bpffs.clone())
            }
            Encap::Vxlan { table, family } => {
                let (Some(tunnel_address), Some(mac)) = (tunnel_address, mac) else {
                    anyhow::bail!("the {kind} tunnel needs a {family} tunnel address and a MAC on Node {}", self.node);
                };
                let config = VxlanConfig {
                    local: self.local,
                    vni: settings.vni,
                    port: settings.port,
                    mtu: settings.mtu,
                    tunnel_address,
                    mac,
                };
                let plane = vxlan::start(&config, table.clone())
                    .await
                    .with_context(|| format!("starting the {kind} tunnel"))?;
                Running::Vxlan(plane, *family)
            }
        };
        tracing::info!(device = running.device(), ?settings, "{kind} tunnel up");
        self.device.send_replace(Some(running.device().to_string()));
        Ok(running)
    }
}

/// The node's tunnel of one kind, up or down as the IP pools ask.
pub struct NodeTunnel {
    /// The device routes go through, while the tunnel is up.
    pub device: watch::Receiver<Option<String>>,
    /// Holds the tunnel and follows the pools.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NodeTunnel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sets the tunnel up or down as the IP pools ask now (a failure here
/// stops the start), then follows them: a pool turning to the tunnel
/// brings it up, the last one turning to `Never` takes it down.
pub async fn start(
    kv: Syncer,
    node: &str,
    local: IpAddr,
    underlay_mtu: u16,
    encap: Encap,
) -> anyhow::Result<NodeTunnel> {
    let (device_tx, device) = watch::channel(None);
    let setup = Setup { kv, node: node.to_string(), local, underlay_mtu, encap, device: device_tx };
    let mut tunnel = None;
    setup.reconcile(&mut tunnel).await?;
    let task = tokio::spawn(follow_pools(setup, tunnel));
    Ok(NodeTunnel { device, task })
}

/// The VXLAN tunnel of a `family` this node has no address of (now): what
/// an earlier run left of it goes (the device with its routes, the tunnel
/// address and its publication on the Node).
pub async fn remove_leftover(kv: Syncer, node: &str, table: watch::Receiver<Arc<VtepTable>>, family: vxlan::Family) {
    let local = match family {
        vxlan::Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        vxlan::Family::V6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    };
    let (device, _) = watch::channel(None);
    let encap = Encap::Vxlan { table, family };
    let setup = Setup { kv, node: node.to_string(), local, underlay_mtu: 0, encap, device };
    if let Err(e) = setup.remove_kept(&format!("this node has no {family} address")).await {
        tracing::warn!(error = format!("{e:#}"), "cannot remove what an earlier run left of the {family} VXLAN tunnel");
    }
}

/// Follows the IP pools, setting the tunnel up or down at each change,
/// until the syncer stops.
async fn follow_pools(setup: Setup, mut tunnel: Option<(Running, Settings)>) {
    let (pools, felix) = (Kind::IpPool.prefix(None), Kind::FelixConfiguration.prefix(None));
    // And this node's own Node: its tunnel address and MAC are ours to keep.
    let node = format!("{}{}", Kind::Node.prefix(None), setup.node);
    let mut changes = setup.kv.changes(&[&pools, &felix, &node]);
    let kind = setup.encap.name();
    loop {
        let was_up = tunnel.is_some();
        let failed = match setup.reconcile(&mut tunnel).await {
            Ok(()) => false,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), retry = ?RETRY, "the {kind} tunnel cannot follow the IP pools");
                true
            }
        };
        if !was_up && let Some((t, _)) = &tunnel {
            tracing::info!(device = t.device(), "an IP pool now uses {kind}: tunnel up");
        }
        // The next change, or (after a failure) the retry, whichever comes first.
        let retry = async {
            match failed {
                true => tokio::time::sleep(RETRY).await,
                false => std::future::pending().await,
            }
        };
        tokio::select! {
            running = changes.changed() => if !running { return },
            () = retry => {}
        }
    }
}
