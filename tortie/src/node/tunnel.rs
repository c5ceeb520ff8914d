//! The node's IPIP tunnel address, as Calico allocates it: while any pool
//! this node may use for tunnels has `ipipMode` other than `Never`, the
//! node holds one address from IPAM (handle `ipip-tunnel-addr-<node>`) and
//! publishes it as `spec.bgp.ipv4IPIPTunnelAddr`; otherwise it gives it back.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::Context as _;
use tortie_cni::ipam::{self, Purpose, Request};
use tortie_store::Datastore;
use tortie_store::api;
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
