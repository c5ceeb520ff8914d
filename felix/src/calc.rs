//! The calculation: a snapshot of cluster state in, this node's desired
//! dataplane out. Pure — no I/O — so every rule is a unit test.
//!
//! Local state comes from the datastore: one `/32 dev <host veth> scope
//! link` per local pod address, one blackhole per block affine to this node
//! (so unallocated addresses are dropped, not sent to the default route),
//! and the prefixes to originate over BGP. Remote state comes from BGP, or
//! without BGP from the datastore's block affinities ([`from_datastore`]):
//! each remote prefix becomes `via <node>` natively, through the IPIP
//! tunnel when the pool's `ipipMode` says so, or `via <node's VTEP>` on the
//! VXLAN device when its `vxlanMode` does.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use tortie_ipip::vxlan::Vtep;
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
    /// This node's IPv6 address with its subnet length (`spec.bgp.ipv6Address`).
    pub node_address6: Option<IpNet>,
    /// Workload endpoints of every node (only this node's are used).
    pub endpoints: Vec<WorkloadEndpointSpec>,
    /// IPAM blocks of every node.
    pub blocks: Vec<IpamBlock>,
    /// IP pools.
    pub pools: Vec<IpPoolSpec>,
    /// Every node's IPv4 address (the IPIP data plane accepts only these).
    pub nodes: Vec<Ipv4Addr>,
    /// Every node's name and IPv4 address (routes from the datastore).
    pub node_addresses: BTreeMap<String, Ipv4Addr>,
    /// Every node's name and IPv6 address, where it has one.
    pub node_addresses6: BTreeMap<String, std::net::Ipv6Addr>,
    /// Every node's VXLAN tunnel ends, by its address of their family
    /// (IPv4: `vxlan.calico`, IPv6: `vxlan-v6.calico`; this node's too).
    pub vteps: BTreeMap<IpAddr, Vtep>,
    /// The IPv4 addresses of the nodes that publish an IPIP tunnel address
    /// (`spec.bgp.ipv4IPIPTunnelAddr`): a node does once its tunnel
    /// unwraps what others send it, and stops before it takes it down.
    pub ipip_nodes: BTreeSet<IpAddr>,
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

/// How remote routes leave this node: the kernel route of a learned
/// prefix is made from its next hops and these ([`remote_route`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Remote {
    /// This node's address with its subnet length.
    pub node_address: Option<IpNet>,
    /// This node's IPv6 address with its subnet length.
    pub node_address6: Option<IpNet>,
    /// IP pools (their `ipipMode` and `vxlanMode`).
    pub pools: Vec<IpPoolSpec>,
    /// The IPIP tunnel device, when one is up.
    pub tunnel: Option<String>,
    /// The VXLAN device, when one is up.
    pub vxlan: Option<String>,
    /// The IPv6 VXLAN device, when one is up.
    pub vxlan6: Option<String>,
    /// The nodes' VXLAN tunnel ends, by node address.
    pub vteps: BTreeMap<IpAddr, Vtep>,
    /// The nodes whose IPIP tunnel is up, by node address ([`Snapshot::ipip_nodes`]).
    pub ipip_nodes: BTreeSet<IpAddr>,
}

/// Nodes whose VTEP clashes with another's on one device (the same tunnel
/// address or MAC: the kernel can keep one entry for each, so either node
/// would get the other's traffic): all of them are left out until it is
/// fixed. The two devices are apart: a node may use one MAC on both.
pub fn clashing_vteps(vteps: &BTreeMap<IpAddr, Vtep>) -> BTreeSet<IpAddr> {
    let mut by_address: BTreeMap<IpAddr, Vec<IpAddr>> = BTreeMap::new();
    let mut by_mac: BTreeMap<(bool, [u8; 6]), Vec<IpAddr>> = BTreeMap::new();
    for (node, v) in vteps {
        by_address.entry(v.tunnel_address).or_default().push(*node);
        by_mac.entry((node.is_ipv4(), v.mac)).or_default().push(*node);
    }
    let groups = by_address.into_values().chain(by_mac.into_values());
    groups.filter(|nodes| nodes.len() > 1).flatten().collect()
}

/// The remote nodes' VXLAN tunnel ends (this node's own left out).
pub fn remote_vteps(s: &Snapshot) -> tortie_ipip::vxlan::VtepTable {
    let own = |a: &IpAddr| is_own(&[s.node_address, s.node_address6], a);
    tortie_ipip::vxlan::VtepTable::new(s.vteps.iter().filter(|(a, _)| !own(a)).map(|(_, v)| *v))
}

/// Whether `a` is one of this node's `addresses`.
fn is_own(addresses: &[Option<IpNet>; 2], a: &IpAddr) -> bool {
    addresses.iter().flatten().any(|n| n.addr() == *a)
}

/// What BGP would have taught, from the datastore alone (no BGP: Calico's
/// `vxlan` networking backend, or Flannel's host-gw shape): each block
/// affine to another node via that node's address of the block's family,
/// and each address a pod of another node borrowed from a block not its
/// node's, on its own. A node without an address of that family gets none.
pub fn from_datastore(s: &Snapshot) -> BTreeMap<IpNet, LearnedHops> {
    let mut learned = BTreeMap::new();
    let via = |node: &str, net: &IpNet| {
        if node == s.node {
            return None;
        }
        match net {
            IpNet::V4(_) => s.node_addresses.get(node).map(|a| IpAddr::V4(*a)),
            IpNet::V6(_) => s.node_addresses6.get(node).map(|a| IpAddr::V6(*a)),
        }
    };
    let mut blocks_of: BTreeMap<&str, Vec<IpNet>> = BTreeMap::new();
    for b in &s.blocks {
        let Some(node) = b.affinity.as_deref().and_then(|a| a.strip_prefix("host:")) else { continue };
        blocks_of.entry(node).or_default().push(b.cidr);
        if let Some(hop) = via(node, &b.cidr) {
            learned.insert(b.cidr, smallvec::smallvec![hop]);
        }
    }
    for ep in s.endpoints.iter() {
        let own = blocks_of.get(ep.node.as_str()).map(Vec::as_slice).unwrap_or_default();
        for addr in &ep.ip_networks {
            let host = IpNet::from(addr.addr());
            if let Some(hop) = via(&ep.node, &host).filter(|_| !own.iter().any(|b| b.contains(&host))) {
                learned.insert(host, smallvec::smallvec![hop]);
            }
        }
    }
    learned
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

fn encap_mode(mode: Option<EncapMode>) -> tortie_ipip::EncapMode {
    match mode {
        Some(EncapMode::Always) => tortie_ipip::EncapMode::Always,
        Some(EncapMode::CrossSubnet) => tortie_ipip::EncapMode::CrossSubnet,
        Some(EncapMode::Never) | None => tortie_ipip::EncapMode::Never,
    }
}

/// The kernel route for one learned prefix: via its next hops natively,
/// through the IPIP tunnel as its pool's `ipipMode` says, or via the next
/// hop's VTEP on the VXLAN device of its family as its `vxlanMode` says
/// (natively while that device, or the next hop's tunnel, is not there
/// yet: a node that does not unwrap would drop what we wrap). A
/// next hop that is this node is skipped (a route back to ourselves);
/// `None` when none is left.
pub fn remote_route(prefix: &IpNet, next_hops: &[IpAddr], r: &Remote) -> Option<Target<String>> {
    let pool = pool_of(&r.pools, prefix);
    let ipip = encap_mode(pool.and_then(|p| p.ipip_mode));
    let vxlan = encap_mode(pool.and_then(|p| p.vxlan_mode));
    // This node's address and VXLAN device of the next hop's family.
    let of_family = |nh: &IpAddr| match nh {
        IpAddr::V4(_) => (r.node_address, r.vxlan.as_deref()),
        IpAddr::V6(_) => (r.node_address6, r.vxlan6.as_deref()),
    };
    let mut hops: crate::route::Hops<String> = next_hops
        .iter()
        .filter(|nh| !is_own(&[r.node_address, r.node_address6], nh))
        .map(|nh| {
            let (local, device) = of_family(nh);
            match (r.tunnel.as_deref(), device.zip(r.vteps.get(nh))) {
                (_, Some((dev, v))) if tortie_ipip::encapsulate(vxlan, local, *nh) => {
                    NextHop { gateway: v.tunnel_address, device: Some(dev.to_string()), onlink: true }
                }
                // IP-in-IP carries IPv4 only (the set holds IPv4 addresses).
                (Some(dev), _) if r.ipip_nodes.contains(nh) && tortie_ipip::encapsulate(ipip, r.node_address, *nh) => {
                    NextHop { gateway: *nh, device: Some(dev.to_string()), onlink: true }
                }
                _ => NextHop { gateway: *nh, device: None, onlink: false },
            }
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
            node_address6: None,
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
            node_addresses: BTreeMap::new(),
            node_addresses6: BTreeMap::new(),
            vteps: BTreeMap::new(),
            ipip_nodes: BTreeSet::new(),
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

    /// Kernel routes for what BGP learned.
    fn remote(learned: &BTreeMap<IpNet, LearnedHops>, r: &Remote) -> Routes<String> {
        learned.iter().filter_map(|(prefix, next_hops)| Some((*prefix, remote_route(prefix, next_hops, r)?))).collect()
    }

    /// The prefixes through the tunnel device and the nodes behind each.
    fn tunnelled(routes: &Routes<String>, tunnel: &str) -> Vec<(ipnet::Ipv4Net, Vec<std::net::Ipv4Addr>)> {
        routes.iter().filter_map(|(prefix, target)| tunnel_nodes(prefix, target, tunnel)).collect()
    }

    #[test]
    fn learned_routes_go_native_or_through_the_tunnel_as_the_pool_says() {
        let pools =
            vec![pool("198.18.0.0/16", EncapMode::CrossSubnet, true), pool("198.19.0.0/16", EncapMode::Always, true)];
        let r = Remote {
            node_address: Some(net("192.0.2.1/24")),
            pools,
            tunnel: Some("tunl0".into()),
            ipip_nodes: ["192.0.2.2", "192.0.2.3", "198.51.100.2", "198.51.100.3"].map(|a| a.parse().unwrap()).into(),
            ..Remote::default()
        };
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
        let no_tunnel = Remote { tunnel: None, ..r.clone() };
        let routes = remote(&learned(&[("198.19.1.0/26", &["192.0.2.2"])]), &no_tunnel);
        assert_eq!(routes[&net("198.19.1.0/26")], Target::Gateways(smallvec::smallvec![native("192.0.2.2")]));
        // A node whose tunnel is not up (no tunnel address published) is
        // reached natively: it would drop what we wrap.
        let not_up =
            Remote { ipip_nodes: r.ipip_nodes.iter().copied().filter(|a| a.to_string() != "192.0.2.2").collect(), ..r };
        let routes = remote(&learned(&[("198.19.1.0/26", &["192.0.2.2"]), ("198.19.2.0/26", &["192.0.2.3"])]), &not_up);
        assert_eq!(routes[&net("198.19.1.0/26")], Target::Gateways(smallvec::smallvec![native("192.0.2.2")]));
        assert_eq!(routes[&net("198.19.2.0/26")], Target::Gateways(smallvec::smallvec![tunnel("192.0.2.3")]));
    }

    fn vxlan_pool(cidr: &str, mode: EncapMode) -> IpPoolSpec {
        IpPoolSpec { vxlan_mode: Some(mode), ..pool(cidr, EncapMode::Never, true) }
    }

    fn vtep(node: &str, tunnel: &str, last: u8) -> (IpAddr, Vtep) {
        let node = node.parse().unwrap();
        (node, Vtep { tunnel_address: tunnel.parse().unwrap(), mac: [0x66, 0, 0, 0, 0, last], node })
    }

    #[test]
    fn vxlan_pools_route_via_the_nodes_vtep_on_the_device_cross_subnet_only_when_asked() {
        let pools =
            vec![vxlan_pool("198.18.0.0/16", EncapMode::CrossSubnet), vxlan_pool("198.19.0.0/16", EncapMode::Always)];
        let vteps: BTreeMap<_, _> =
            [vtep("192.0.2.2", "198.18.64.0", 2), vtep("198.51.100.2", "198.18.128.0", 3)].into_iter().collect();
        let r = Remote {
            node_address: Some(net("192.0.2.1/24")),
            pools,
            tunnel: Some("tortie-ipip".into()),
            vxlan: Some("vxlan.calico".into()),
            vteps,
            // Their IPIP tunnels up too: the pools' `ipipMode: Never` keeps IPIP off.
            ipip_nodes: ["192.0.2.2", "198.51.100.2", "198.51.100.9"].map(|a| a.parse().unwrap()).into(),
            ..Remote::default()
        };
        let native = |g: &str| NextHop { gateway: g.parse().unwrap(), device: None, onlink: false };
        let vx = |g: &str| NextHop { gateway: g.parse().unwrap(), device: Some("vxlan.calico".into()), onlink: true };
        let routes = remote(
            &learned(&[
                ("198.18.1.0/26", &["192.0.2.2"]),
                ("198.18.2.0/26", &["198.51.100.2"]),
                ("198.19.1.0/26", &["192.0.2.2"]),
                ("198.19.2.0/26", &["198.51.100.9"]),
            ]),
            &r,
        );
        let want: Routes<String> = [
            (net("198.18.1.0/26"), Target::Gateways(smallvec::smallvec![native("192.0.2.2")])),
            (net("198.18.2.0/26"), Target::Gateways(smallvec::smallvec![vx("198.18.128.0")])),
            (net("198.19.1.0/26"), Target::Gateways(smallvec::smallvec![vx("198.18.64.0")])),
            (net("198.19.2.0/26"), Target::Gateways(smallvec::smallvec![native("198.51.100.9")])),
        ]
        .into();
        assert_eq!(routes, want, "CrossSubnet native within the subnet; no VTEP yet: native; never IPIP");
        assert!(tunnelled(&routes, "tortie-ipip").is_empty(), "nothing for the IPIP plane");
        let down = Remote { vxlan: None, ..r.clone() };
        let routes = remote(&learned(&[("198.19.1.0/26", &["192.0.2.2"])]), &down);
        assert_eq!(routes[&net("198.19.1.0/26")], Target::Gateways(smallvec::smallvec![native("192.0.2.2")]));
    }

    #[test]
    fn ipv6_vxlan_pools_route_via_the_nodes_ipv6_vtep_on_the_ipv6_device() {
        let pools = vec![vxlan_pool("2001:db8:100::/48", EncapMode::CrossSubnet)];
        let vteps: BTreeMap<_, _> = [
            vtep("2001:db8::2", "2001:db8:100::40", 2),
            vtep("2001:db8:1::3", "2001:db8:100::80", 3),
            vtep("192.0.2.3", "198.18.0.128", 3),
        ]
        .into_iter()
        .collect();
        let r = Remote {
            node_address: Some(net("192.0.2.1/24")),
            node_address6: Some(net("2001:db8::1/64")),
            pools,
            tunnel: Some("tortie-ipip".into()),
            vxlan: Some("vxlan.calico".into()),
            vxlan6: Some("vxlan-v6.calico".into()),
            vteps,
            ipip_nodes: ["192.0.2.3".parse().unwrap()].into(),
        };
        let native = |g: &str| NextHop { gateway: g.parse().unwrap(), device: None, onlink: false };
        let vx6 =
            |g: &str| NextHop { gateway: g.parse().unwrap(), device: Some("vxlan-v6.calico".into()), onlink: true };
        let routes = remote(
            &learned(&[
                ("2001:db8:100::40/122", &["2001:db8::2"]),
                ("2001:db8:100::80/122", &["2001:db8:1::3"]),
                ("2001:db8:100::c0/122", &["2001:db8::1"]),
            ]),
            &r,
        );
        let want: Routes<String> = [
            (net("2001:db8:100::40/122"), Target::Gateways(smallvec::smallvec![native("2001:db8::2")])),
            (net("2001:db8:100::80/122"), Target::Gateways(smallvec::smallvec![vx6("2001:db8:100::80")])),
        ]
        .into();
        assert_eq!(routes, want, "CrossSubnet by the IPv6 subnet; our own IPv6 address is no next hop");
        let down = Remote { vxlan6: None, ..r.clone() };
        let routes = remote(&learned(&[("2001:db8:100::80/122", &["2001:db8:1::3"])]), &down);
        let native_only = Target::Gateways(smallvec::smallvec![native("2001:db8:1::3")]);
        assert_eq!(routes[&net("2001:db8:100::80/122")], native_only, "no IPv6 device: native, never IPIP");
    }

    #[test]
    fn without_bgp_remote_blocks_and_borrowed_addresses_come_from_the_datastore() {
        let mut s = snapshot();
        s.node_addresses = [("n1", "192.0.2.1"), ("n2", "198.51.100.2")]
            .into_iter()
            .map(|(n, a)| (n.to_string(), a.parse().unwrap()))
            .collect();
        // n2 has a pod borrowed from n1's block, and one from a block of no known node.
        s.endpoints.push(endpoint("n2", "tortie6", "198.18.0.9/32"));
        s.blocks.push(IpamBlock::new(net("198.18.1.0/26"), "n9"));
        // IPv6: n2's block via its IPv6 address; n3 has none, so its block goes unrouted.
        s.node_addresses6 = [("n2".to_string(), "2001:db8::2".parse().unwrap())].into();
        s.node_addresses.insert("n3".into(), "192.0.2.3".parse().unwrap());
        s.blocks.push(IpamBlock::new(net("2001:db8:100::40/122"), "n2"));
        s.blocks.push(IpamBlock::new(net("2001:db8:100::80/122"), "n3"));
        let hops = |a: &str| -> LearnedHops { smallvec::smallvec![a.parse::<IpAddr>().unwrap()] };
        let want: BTreeMap<IpNet, LearnedHops> = [
            (net("198.18.0.64/26"), hops("198.51.100.2")),
            (net("198.18.0.3/32"), hops("198.51.100.2")),
            (net("198.18.0.9/32"), hops("198.51.100.2")),
            (net("2001:db8:100::40/122"), hops("2001:db8::2")),
        ]
        .into();
        assert_eq!(from_datastore(&s), want, "not our own blocks or pods; not a node without an address");
        s.vteps = [vtep("192.0.2.1", "198.18.0.0", 1), vtep("198.51.100.2", "198.18.0.64", 2)].into_iter().collect();
        let table = remote_vteps(&s);
        assert_eq!(table.vteps().map(|v| v.node.to_string()).collect::<Vec<_>>(), ["198.51.100.2"], "not ourselves");
        // Two nodes claiming one MAC, or one tunnel address: both left out.
        let mut clash = s.vteps.clone();
        clash.extend([vtep("192.0.2.7", "198.18.0.192", 2), vtep("192.0.2.8", "198.18.0.0", 8)]);
        let left_out: Vec<String> = clashing_vteps(&clash).iter().map(ToString::to_string).collect();
        assert_eq!(left_out, ["192.0.2.1", "192.0.2.7", "192.0.2.8", "198.51.100.2"]);
        assert!(clashing_vteps(&s.vteps).is_empty());
        // A node's IPv6 VTEP may share its IPv4 one's MAC (another device);
        // our own IPv6 VTEP is left out too.
        s.node_address6 = Some(net("2001:db8::1/64"));
        s.vteps.extend([vtep("2001:db8::1", "2001:db8:100::", 1), vtep("2001:db8::2", "2001:db8:100::40", 2)]);
        assert!(clashing_vteps(&s.vteps).is_empty());
        let nodes: Vec<String> = remote_vteps(&s).vteps().map(|v| v.node.to_string()).collect();
        assert_eq!(nodes, ["198.51.100.2", "2001:db8::2"]);
    }
}
