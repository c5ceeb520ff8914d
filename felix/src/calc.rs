//! The calculation: a snapshot of cluster state in, this node's desired
//! dataplane out. Pure — no I/O — so every rule is a unit test.
//!
//! Local state comes from the datastore: one `/32 dev <host veth> scope
//! link` per local pod address, one blackhole per block affine to this node
//! (so unallocated addresses are dropped, not sent to the default route),
//! and the prefixes to originate over BGP. Remote state comes from BGP:
//! each learned prefix becomes `via <node>` natively, or through the IPIP
//! tunnel when the pool's `ipipMode` says so.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use tortie_store::ipam::IpamBlock;
use tortie_store::resources::{EncapMode, IpPoolSpec, WorkloadEndpointSpec};

use crate::route::{LearnedHops, NextHop, Routes, Target};

/// What the calculation reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// This node's name.
    pub node: String,
    /// This node's address with its subnet length (`spec.bgp.ipv4Address`).
    pub node_address: Option<IpNet>,
    /// Workload endpoints of every node (only this node's are used).
    pub endpoints: Vec<WorkloadEndpointSpec>,
    /// IPAM blocks of every node.
    pub blocks: Vec<IpamBlock>,
    /// IP pools.
    pub pools: Vec<IpPoolSpec>,
    /// Every node's IPv4 address (the IPIP data plane accepts only these).
    pub nodes: Vec<std::net::Ipv4Addr>,
    /// What network policy reads.
    pub policy: crate::policy::model::Records,
    /// This node's FelixConfiguration (`node.<name>` over `default`).
    pub felix: tortie_store::resources::FelixConfigurationSpec,
}

/// This node's desired local state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Local {
    /// Pod routes and block blackholes.
    pub routes: Routes<String>,
    /// Prefixes to announce over BGP.
    pub originate: BTreeSet<IpNet>,
    /// Host-side pod interfaces (they get the proxy-ARP sysctls).
    pub interfaces: BTreeSet<String>,
}

fn pool_of<'a>(pools: &'a [IpPoolSpec], net: &IpNet) -> Option<&'a IpPoolSpec> {
    pools.iter().find(|p| p.cidr.is_some_and(|c| c.contains(net)))
}

fn exported(pools: &[IpPoolSpec], net: &IpNet) -> bool {
    pool_of(pools, net).is_some_and(|p| !p.disable_bgp_export)
}

/// Computes this node's local routes, the prefixes it originates and its
/// pod interfaces.
pub fn local(s: &Snapshot) -> Local {
    let mut out = Local::default();
    let affinity = format!("host:{}", s.node);
    let own_blocks: Vec<IpNet> =
        s.blocks.iter().filter(|b| b.affinity.as_deref() == Some(affinity.as_str())).map(|b| b.cidr).collect();
    for block in &own_blocks {
        out.routes.insert(*block, Target::Blackhole);
        if exported(&s.pools, block) {
            out.originate.insert(*block);
        }
    }
    for ep in s.endpoints.iter().filter(|ep| ep.node == s.node && !ep.interface_name.is_empty()) {
        out.interfaces.insert(ep.interface_name.clone());
        for addr in &ep.ip_networks {
            let host = IpNet::from(addr.addr());
            out.routes.insert(host, Target::Device(ep.interface_name.clone()));
            // An address borrowed from another node's block is announced on its own.
            let borrowed = !own_blocks.iter().any(|b| b.contains(&host));
            if borrowed && exported(&s.pools, &host) {
                out.originate.insert(host);
            }
        }
    }
    out
}

/// How remote routes leave this node.
#[derive(Debug, Clone, Copy)]
pub struct Remote<'a> {
    /// This node's address with its subnet length.
    pub node_address: Option<IpNet>,
    /// IP pools (their `ipipMode`).
    pub pools: &'a [IpPoolSpec],
    /// The IPIP tunnel device, when one is up.
    pub tunnel: Option<&'a str>,
}

/// The prefixes routed through the tunnel device and the nodes behind each
/// (its ECMP set), for the eBPF IPIP data plane.
pub fn tunnelled(routes: &Routes<String>, tunnel: &str) -> Vec<(ipnet::Ipv4Net, Vec<std::net::Ipv4Addr>)> {
    routes.iter().filter_map(|(prefix, target)| tunnel_nodes(prefix, target, tunnel)).collect()
}

/// The nodes behind the tunnel device of one route, if it goes through it.
pub fn tunnel_nodes(
    prefix: &IpNet,
    target: &Target<String>,
    tunnel: &str,
) -> Option<(ipnet::Ipv4Net, Vec<std::net::Ipv4Addr>)> {
    let (IpNet::V4(p), Target::Gateways(hops)) = (prefix, target) else { return None };
    let nodes: Vec<_> = hops
        .iter()
        .filter(|h| h.device.as_deref() == Some(tunnel))
        .filter_map(|h| match h.gateway {
            IpAddr::V4(g) => Some(g),
            IpAddr::V6(_) => None,
        })
        .collect();
    (!nodes.is_empty()).then_some((*p, nodes))
}

/// Kernel routes for what BGP learned: prefix → next hops (the ECMP set).
pub fn remote(learned: &BTreeMap<IpNet, LearnedHops>, r: &Remote<'_>) -> Routes<String> {
    learned.iter().filter_map(|(prefix, next_hops)| Some((*prefix, remote_route(prefix, next_hops, r)?))).collect()
}

/// The kernel route for one learned prefix: via its next hops natively, or
/// through the tunnel as its pool's `ipipMode` says. A next hop that is
/// this node is skipped (a route back to ourselves); `None` when none is left.
pub fn remote_route(prefix: &IpNet, next_hops: &[IpAddr], r: &Remote<'_>) -> Option<Target<String>> {
    let own = r.node_address.map(|a| a.addr());
    let mode = match pool_of(r.pools, prefix).and_then(|p| p.ipip_mode) {
        Some(EncapMode::Always) => tortie_ipip::EncapMode::Always,
        Some(EncapMode::CrossSubnet) => tortie_ipip::EncapMode::CrossSubnet,
        Some(EncapMode::Never) | None => tortie_ipip::EncapMode::Never,
    };
    let mut hops: crate::route::Hops<String> = next_hops
        .iter()
        .filter(|nh| Some(**nh) != own)
        .map(|nh| match r.tunnel {
            Some(dev) if tortie_ipip::encapsulate(mode, r.node_address, *nh) => {
                NextHop { gateway: *nh, device: Some(dev.to_string()), onlink: true }
            }
            _ => NextHop { gateway: *nh, device: None, onlink: false },
        })
        .collect();
    if hops.is_empty() {
        return None;
    }
    hops.sort();
    hops.dedup();
    Some(Target::Gateways(hops))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn pool(cidr: &str, ipip: EncapMode, export: bool) -> IpPoolSpec {
        IpPoolSpec {
            cidr: Some(net(cidr)),
            block_size: Some(26),
            ipip_mode: Some(ipip),
            disable_bgp_export: !export,
            ..IpPoolSpec::default()
        }
    }

    fn endpoint(node: &str, iface: &str, addr: &str) -> WorkloadEndpointSpec {
        WorkloadEndpointSpec {
            node: node.into(),
            interface_name: iface.into(),
            ip_networks: vec![net(addr)],
            ..WorkloadEndpointSpec::default()
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            node: "n1".into(),
            node_address: Some(net("192.0.2.1/24")),
            endpoints: vec![
                endpoint("n1", "tortie1", "198.18.0.1/32"),
                endpoint("n1", "tortie2", "198.18.0.2/32"),
                endpoint("n1", "tortie3", "198.18.0.70/32"),
                endpoint("n2", "tortie4", "198.18.0.3/32"),
                endpoint("n1", "tortie5", "198.19.0.1/32"),
            ],
            blocks: vec![
                IpamBlock::new(net("198.18.0.0/26"), "n1"),
                IpamBlock::new(net("198.18.0.64/26"), "n2"),
                IpamBlock::new(net("198.19.0.0/26"), "n1"),
            ],
            pools: vec![pool("198.18.0.0/16", EncapMode::Never, true), pool("198.19.0.0/16", EncapMode::Never, false)],
            nodes: Vec::new(),
            policy: Default::default(),
            felix: Default::default(),
        }
    }

    #[test]
    fn local_pods_get_host_routes_and_own_blocks_get_blackholes() {
        let out = local(&snapshot());
        let dev = |s: &str| Target::Device(s.to_string());
        let want: Routes<String> = [
            (net("198.18.0.1/32"), dev("tortie1")),
            (net("198.18.0.2/32"), dev("tortie2")),
            (net("198.18.0.70/32"), dev("tortie3")),
            (net("198.19.0.1/32"), dev("tortie5")),
            (net("198.18.0.0/26"), Target::Blackhole),
            (net("198.19.0.0/26"), Target::Blackhole),
        ]
        .into();
        assert_eq!(out.routes, want, "n2's pod and n2's block are not ours");
        assert_eq!(out.interfaces, ["tortie1", "tortie2", "tortie3", "tortie5"].map(String::from).into());
    }

    #[test]
    fn originates_own_blocks_and_borrowed_addresses_but_not_unexported_pools() {
        let out = local(&snapshot());
        assert_eq!(out.originate, [net("198.18.0.0/26"), net("198.18.0.70/32")].into());
    }

    fn learned(entries: &[(&str, &[&str])]) -> BTreeMap<IpNet, LearnedHops> {
        entries.iter().map(|(p, nhs)| (net(p), nhs.iter().map(|n| n.parse().unwrap()).collect())).collect()
    }

    #[test]
    fn learned_routes_go_native_or_through_the_tunnel_as_the_pool_says() {
        let pools =
            [pool("198.18.0.0/16", EncapMode::CrossSubnet, true), pool("198.19.0.0/16", EncapMode::Always, true)];
        let r = Remote { node_address: Some(net("192.0.2.1/24")), pools: &pools, tunnel: Some("tunl0") };
        let routes = remote(
            &learned(&[
                ("198.18.1.0/26", &["192.0.2.2"]),
                ("198.18.2.0/26", &["198.51.100.2"]),
                ("198.19.1.0/26", &["192.0.2.2"]),
                ("198.18.3.0/26", &["192.0.2.3", "192.0.2.2"]),
                ("198.18.4.0/26", &["192.0.2.1"]),
                ("198.18.5.0/26", &["198.51.100.3", "198.51.100.2"]),
            ]),
            &r,
        );
        let native = |g: &str| NextHop { gateway: g.parse().unwrap(), device: None, onlink: false };
        let tunnel = |g: &str| NextHop { gateway: g.parse().unwrap(), device: Some("tunl0".to_string()), onlink: true };
        let want: Routes<String> = [
            (net("198.18.1.0/26"), Target::Gateways(smallvec::smallvec![native("192.0.2.2")])),
            (net("198.18.2.0/26"), Target::Gateways(smallvec::smallvec![tunnel("198.51.100.2")])),
            (net("198.19.1.0/26"), Target::Gateways(smallvec::smallvec![tunnel("192.0.2.2")])),
            (net("198.18.3.0/26"), Target::Gateways(smallvec::smallvec![native("192.0.2.2"), native("192.0.2.3")])),
            (
                net("198.18.5.0/26"),
                Target::Gateways(smallvec::smallvec![tunnel("198.51.100.2"), tunnel("198.51.100.3")]),
            ),
        ]
        .into();
        assert_eq!(routes, want, "sorted ECMP set; no route via ourselves");
        assert_eq!(
            tunnelled(&routes, "tunl0"),
            [
                ("198.18.2.0/26".parse().unwrap(), vec!["198.51.100.2".parse().unwrap()]),
                (
                    "198.18.5.0/26".parse().unwrap(),
                    vec!["198.51.100.2".parse().unwrap(), "198.51.100.3".parse().unwrap()]
                ),
                ("198.19.1.0/26".parse().unwrap(), vec!["192.0.2.2".parse().unwrap()])
            ],
            "every node of an ECMP set through the tunnel"
        );
        let no_tunnel = Remote { tunnel: None, ..r };
        let routes = remote(&learned(&[("198.19.1.0/26", &["192.0.2.2"])]), &no_tunnel);
        assert_eq!(routes[&net("198.19.1.0/26")], Target::Gateways(smallvec::smallvec![native("192.0.2.2")]));
    }
}
