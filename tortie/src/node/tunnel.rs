//! The node's IPIP tunnel and its address, as Calico allocates it: while
//! any pool this node may use for tunnels has `ipipMode` other than
//! `Never`, the node holds one address from IPAM (handle
//! `ipip-tunnel-addr-<node>`) and publishes it as
//! `spec.bgp.ipv4IPIPTunnelAddr`; at start without such a pool it gives it
//! back. The tunnel comes up at start when a pool asks for IPIP, or later,
//! when one first does; once up it stays up (its address is on the device,
//! so it is not given back while the daemon runs).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use tokio::sync::watch;
use tortie_cni::ipam::{self, Purpose, Request};
use tortie_ipip::EncapTable;
use tortie_ipip::userspace::Counters;
use tortie_store::Datastore;
use tortie_store::api;
use tortie_store::kv::Kv;
use tortie_store::resources::{EncapMode, Kind, NodeBgp, Resource};

fn handle(node: &str) -> String {
    format!("ipip-tunnel-addr-{node}")
}

/// Allocates or releases the tunnel address; returns it.
pub async fn ensure(kv: &Datastore, node: &str) -> anyhow::Result<Option<std::net::Ipv4Addr>> {
    let pools = ipam::pools_for(kv, node, Purpose::Tunnel).await?;
    let wanted = pools.iter().any(|p| p.ipip_mode.is_some_and(|m| m != EncapMode::Never));
    let Resource::Node(mut n) = api::get(kv, Kind::Node, None, node).await? else {
        anyhow::bail!("Node {node} is not a Node");
    };
    let current = n.spec.bgp.as_ref().and_then(|b| b.ipv4_ipip_tunnel_addr);
    let next = match (wanted, current) {
        (true, Some(a)) => Some(a),
        (true, None) => {
            let req =
                Request { node: node.into(), handle: handle(node), purpose: Purpose::Tunnel, attrs: BTreeMap::new() };
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

/// What brings a tunnel up.
struct Setup {
    kv: Datastore,
    node: String,
    local: Ipv4Addr,
    underlay_mtu: u16,
    encap: watch::Receiver<Arc<EncapTable>>,
}

impl Setup {
    /// The tunnel, if a pool asks for one now.
    async fn bring_up(&self) -> anyhow::Result<Option<tortie_ipip::Tunnel>> {
        let Some(address) = ensure(&self.kv, &self.node).await? else { return Ok(None) };
        let tunnel = tortie_ipip::start(self.local, Some(address), self.underlay_mtu, self.encap.clone())
            .await
            .context("starting the IPIP tunnel")?;
        Ok(Some(tunnel))
    }
}

/// The node's IPIP tunnel, up or waiting for a pool to ask for it.
pub struct NodeTunnel {
    /// The device routes go through, once up.
    pub device: watch::Receiver<Option<String>>,
    /// The userspace data plane's counters, once it runs.
    pub counters: Arc<OnceLock<Arc<Counters>>>,
    /// Holds the tunnel (dropping it takes the userspace plane down).
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NodeTunnel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn publish(tunnel: &tortie_ipip::Tunnel, device: &watch::Sender<Option<String>>, counters: &OnceLock<Arc<Counters>>) {
    if let tortie_ipip::Tunnel::Userspace(u) = tunnel {
        let _ = counters.set(u.counters.clone());
    }
    device.send_replace(Some(tunnel.device().to_string()));
}

/// Brings the tunnel up now if a pool asks for it (a failure here stops
/// the start), else follows the IP pools and brings it up when one does.
pub async fn start(
    kv: Datastore,
    node: &str,
    local: Ipv4Addr,
    underlay_mtu: u16,
    encap: watch::Receiver<Arc<EncapTable>>,
) -> anyhow::Result<NodeTunnel> {
    let setup = Setup { kv, node: node.to_string(), local, underlay_mtu, encap };
    let (device_tx, device) = watch::channel(None);
    let counters = Arc::new(OnceLock::new());
    let now = setup.bring_up().await?;
    match &now {
        Some(t) => publish(t, &device_tx, &counters),
        // No pool asks for IPIP: a device kept from an earlier run goes, and its routes with it.
        None => match tortie_ipip::remove_kept_device().await {
            Ok(true) => {
                tracing::info!(device = tortie_ipip::USERSPACE_DEVICE, "no pool uses IPIP: removed the kept TUN device")
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot remove the kept TUN device"),
        },
    }
    let slot = counters.clone();
    let task = tokio::spawn(async move {
        // The tunnel lives as long as this task: until the daemon stops.
        let _tunnel = match now {
            Some(t) => t,
            None => match wait_for_a_pool(&setup, &device_tx, &slot).await {
                Some(t) => t,
                None => return,
            },
        };
        std::future::pending::<()>().await;
    });
    Ok(NodeTunnel { device, counters, task })
}

/// Follows the IP pools until one asks for IPIP and the tunnel is up;
/// `None` if the datastore watch ends first.
async fn wait_for_a_pool(
    setup: &Setup,
    device: &watch::Sender<Option<String>>,
    counters: &OnceLock<Arc<Counters>>,
) -> Option<tortie_ipip::Tunnel> {
    let prefix = Kind::IpPool.prefix(None);
    loop {
        let from = match setup.kv.range(&prefix).await {
            Ok(r) => r.revision + 1,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read IP pools; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut watch = match setup.kv.watch(&prefix, from).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch IP pools; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            match watch.next().await {
                None => return None,
                Some(Err(_)) => break, // compacted or broken: watch again from now
                Some(Ok(_)) => {}
            }
            match setup.bring_up().await {
                Ok(Some(t)) => {
                    tracing::info!(device = t.device(), "an IP pool now uses IPIP: tunnel up");
                    publish(&t, device, counters);
                    return Some(t);
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = format!("{e:#}"), "an IP pool uses IPIP but the tunnel cannot start"),
            }
        }
    }
}
