//! The node's IPIP tunnel and its address, as Calico allocates it: while
//! any pool this node may use for tunnels has `ipipMode` other than
//! `Never`, the node holds one address from IPAM (handle
//! `ipip-tunnel-addr-<node>`), publishes it as
//! `spec.bgp.ipv4IPIPTunnelAddr` and runs the tunnel; when none has, the
//! tunnel goes down and the address goes back. Its MTU is FelixConfiguration
//! `ipipMTU`, or the underlay's less the outer header. This is checked at
//! start and at every change of an IP pool or a FelixConfiguration.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tortie_ipam::{self as ipam, Purpose, Request};
use tortie_ipip::EncapTable;
use tortie_ipip::ebpf::PlaneConfig;
use tortie_store::api;
use tortie_store::resources::{EncapMode, FelixConfigurationSpec, Kind, NodeBgp, NodeSpec, Object, Resource};
use tortie_store::syncer::Syncer;

fn handle(node: &str) -> String {
    format!("ipip-tunnel-addr-{node}")
}

/// Whether a pool this node may use for tunnels asks for IPIP.
async fn wanted(kv: &Syncer, node: &str) -> anyhow::Result<bool> {
    let pools = ipam::pools_for(kv, node, Purpose::Tunnel, &[]).await?;
    Ok(pools.iter().any(|p| p.ipip_mode.is_some_and(|m| m != EncapMode::Never)))
}

/// The underlay MTU the tunnel is built for: FelixConfiguration `ipipMTU`
/// plus the outer header, or the node's own.
async fn tunnel_underlay_mtu(kv: &Syncer, node: &str, underlay_mtu: u16) -> u16 {
    let spec = |name: String| async move {
        match api::get(kv, Kind::FelixConfiguration, None, &name).await {
            Ok(Resource::FelixConfiguration(f)) => Some(f.spec),
            _ => None,
        }
    };
    let merged = FelixConfigurationSpec::merged(
        spec("default".into()).await.as_ref(),
        spec(format!("node.{node}")).await.as_ref(),
    );
    merged.ipip_mtu().map_or(underlay_mtu, |m| m.saturating_add(tortie_ipip::OUTER_LEN))
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

/// The tunnel address the Node publishes.
async fn published_address(kv: &Syncer, node: &str) -> anyhow::Result<Option<Ipv4Addr>> {
    Ok(node_resource(kv, node).await?.spec.bgp.and_then(|b| b.ipv4_ipip_tunnel_addr))
}

/// Allocates the tunnel address (`wanted`) or gives it back, and publishes
/// it on the Node; returns it.
async fn address(kv: &Syncer, node: &str, wanted: bool) -> anyhow::Result<Option<Ipv4Addr>> {
    let mut n = node_resource(kv, node).await?;
    let current = n.spec.bgp.as_ref().and_then(|b| b.ipv4_ipip_tunnel_addr);
    let next = match (wanted, current) {
        (true, Some(a)) => Some(a),
        (true, None) => {
            let req = Request {
                node: node.into(),
                handle: handle(node),
                purpose: Purpose::Tunnel,
                attrs: BTreeMap::new(),
                pools: Vec::new(),
            };
            match ipam::assign(kv, &req).await.context("allocating the IPIP tunnel address")?.addr() {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            }
        }
        (false, Some(_)) => {
            ipam::release_handle(kv, &handle(node)).await?;
            None
        }
        (false, None) => None,
    };
    if next != current {
        n.metadata.resource_version = None;
        n.spec.bgp.get_or_insert_with(NodeBgp::default).ipv4_ipip_tunnel_addr = next;
        api::apply(kv, &[Resource::Node(n)]).await.context("publishing the tunnel address")?;
        tracing::info!(node, tunnel_address = ?next, "IPIP tunnel address updated");
    }
    Ok(next)
}

/// What brings a tunnel up and takes it down.
struct Setup {
    kv: Syncer,
    node: String,
    local: Ipv4Addr,
    underlay_mtu: u16,
    encap: watch::Receiver<Arc<EncapTable>>,
    /// Where the device routes go through is published (felix follows it).
    device: watch::Sender<Option<String>>,
    /// Where the eBPF plane pins its maps.
    bpffs: PathBuf,
}

impl Setup {
    /// Makes `tunnel` what the IP pools want now: brought up (its address
    /// allocated first), kept, or taken down (its address given back once
    /// the device is gone). On an error it stays as it was, except that a
    /// tunnel failing to stop is down.
    async fn reconcile(&self, tunnel: &mut Option<(tortie_ipip::Tunnel, u16)>) -> anyhow::Result<()> {
        let wanted = wanted(&self.kv, &self.node).await?;
        let mtu = tunnel_underlay_mtu(&self.kv, &self.node, self.underlay_mtu).await;
        match (wanted, tunnel.take()) {
            (true, Some((t, built))) if built == mtu => *tunnel = Some((t, built)),
            (true, Some((t, built))) => {
                // A new MTU: the tunnel is brought up over itself (the device
                // takes the MTU, the eBPF plane adopts its own maps and
                // programs): its routes stay, no packet waits.
                tracing::info!(device = t.device(), from = built, to = mtu, "IPIP MTU changed");
                drop(t);
                *tunnel = Some((self.bring_up(mtu).await?, mtu));
            }
            (true, None) => *tunnel = Some((self.bring_up(mtu).await?, mtu)),
            (false, Some((t, _))) => {
                let device = t.device();
                // Routes leave the device first, and what is already in the
                // tunnel (ours and the other nodes') arrives; then the device
                // goes, then its address.
                self.device.send_replace(None);
                tracing::info!(device, grace = ?DOWN_GRACE, "no IP pool uses IPIP any more: routes leave the tunnel");
                tokio::time::sleep(DOWN_GRACE).await;
                t.stop(self.local, &self.bpffs)
                    .await
                    .with_context(|| format!("taking the IPIP tunnel {device} down"))?;
                tracing::info!(device, "no IP pool uses IPIP any more: tunnel down");
                address(&self.kv, &self.node, false).await?;
            }
            (false, None) => {
                // A tunnel kept from an earlier run (or left by a failed stop)
                // goes, and its routes with it; then its address.
                let published = published_address(&self.kv, &self.node).await?;
                let kept = tortie_ipip::remove_kept(self.local, published, &self.bpffs).await;
                if kept.context("removing the kept IPIP tunnel")? {
                    tracing::info!(address = ?published, "no pool uses IPIP: removed the tunnel kept from before");
                }
                address(&self.kv, &self.node, false).await?;
            }
        }
        Ok(())
    }

    /// Allocates the tunnel address if needed and starts the tunnel for an
    /// underlay of `mtu`.
    async fn bring_up(&self, mtu: u16) -> anyhow::Result<tortie_ipip::Tunnel> {
        let config = PlaneConfig {
            local: self.local,
            tunnel_address: address(&self.kv, &self.node, true).await?,
            mtu: u32::from(mtu.saturating_sub(tortie_ipip::OUTER_LEN)),
            bpffs: self.bpffs.clone(),
        };
        let t = tortie_ipip::start(&config, self.encap.clone()).await.context("starting the IPIP tunnel")?;
        self.device.send_replace(Some(t.device().to_string()));
        Ok(t)
    }
}

/// The node's IPIP tunnel, up or down as the IP pools ask.
pub struct NodeTunnel {
    /// The device routes go through, while the tunnel is up.
    pub device: watch::Receiver<Option<String>>,
    /// Where the eBPF plane pins its maps (and counters).
    pub bpffs: PathBuf,
    /// Holds the tunnel and follows the pools.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NodeTunnel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sets the tunnel up or down as the IP pools ask now (a failure here
/// stops the start), then follows them: a pool turning to IPIP brings it
/// up, the last one turning to `Never` takes it down.
pub async fn start(
    kv: Syncer,
    node: &str,
    local: Ipv4Addr,
    underlay_mtu: u16,
    bpffs: PathBuf,
    encap: watch::Receiver<Arc<EncapTable>>,
) -> anyhow::Result<NodeTunnel> {
    let (device_tx, device) = watch::channel(None);
    let setup =
        Setup { kv, node: node.to_string(), local, underlay_mtu, encap, device: device_tx, bpffs: bpffs.clone() };
    let mut tunnel = None;
    setup.reconcile(&mut tunnel).await?;
    let task = tokio::spawn(follow_pools(setup, tunnel));
    Ok(NodeTunnel { device, bpffs, task })
}

/// Follows the IP pools, setting the tunnel up or down at each change,
/// until the syncer stops.
async fn follow_pools(setup: Setup, mut tunnel: Option<(tortie_ipip::Tunnel, u16)>) {
    let (pools, felix) = (Kind::IpPool.prefix(None), Kind::FelixConfiguration.prefix(None));
    let mut changes = setup.kv.changes(&[&pools, &felix]);
    loop {
        let was_up = tunnel.is_some();
        let failed = match setup.reconcile(&mut tunnel).await {
            Ok(()) => false,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), retry = ?RETRY, "the IPIP tunnel cannot follow the IP pools");
                true
            }
        };
        if !was_up && let Some((t, _)) = &tunnel {
            tracing::info!(device = t.device(), "an IP pool now uses IPIP: tunnel up");
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
