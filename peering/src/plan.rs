//! Which BGP sessions a node runs, decided from the datastore the way
//! Calico decides it: the node-to-node mesh (every other node, unless
//! `nodeToNodeMeshEnabled: false`), global BGPPeers, BGPPeers for this
//! node by name or `nodeSelector`, and `peerSelector` peers (the nodes a
//! selector matches). Pure: resources in, a plan out.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tortie_bgp::packet::{Family, GracefulRestart, GracefulRestartFamily, LongLivedFamily};
use tortie_bgp::rib::export::{ExportPeer, NextHopMode};
use tortie_bgp::rib::policy::Policy;
use tortie_bgp::session::peer::PeerConfig;
use tortie_bgp::session::socket::SocketOptions;
use tortie_bgp::session::{FsmConfig, LocalConfig};
use tortie_bgp::speaker::Neighbor;
use tortie_store::resources::{
    BgpConfigurationSpec, BgpPeerSpec, DEFAULT_RESTART_TIME, Kind, NodeSpec, Object, SessionSettings, SourceAddress,
};
use tortie_store::selector::Selector;

/// Calico's default AS.
pub const DEFAULT_AS: u32 = 64512;
/// The BGP port (RFC 4271 §8.2.1).
const BGP_PORT: u16 = 179;

/// The BGPConfigurations: `default` (cluster-wide) and the nodes' own
/// `node.<name>` overrides.
#[derive(Debug, Clone, Default)]
pub struct Configs {
    /// `default`.
    pub default: BgpConfigurationSpec,
    /// `node.<name>`, by node name.
    pub nodes: BTreeMap<String, BgpConfigurationSpec>,
    /// The mesh's session settings (`default`'s `tortie.io/` annotations).
    pub mesh: SessionSettings,
}

impl From<BgpConfigurationSpec> for Configs {
    fn from(default: BgpConfigurationSpec) -> Configs {
        Configs { default, ..Configs::default() }
    }
}

impl Configs {
    /// From the stored documents: `default`, `node.<name>` (others are
    /// refused at apply). The mesh's session settings come from
    /// `default`'s annotations (checked at apply; a record stored
    /// otherwise keeps the defaults).
    pub fn new(documents: impl IntoIterator<Item = Object<BgpConfigurationSpec>>) -> Configs {
        let mut configs = Configs::default();
        for c in documents {
            match c.metadata.name.strip_prefix("node.") {
                Some(node) => drop(configs.nodes.insert(node.to_string(), c.spec)),
                None if c.metadata.name == "default" => {
                    configs.mesh =
                        SessionSettings::from_annotations(Kind::BgpConfiguration, "default", &c.metadata.annotations)
                            .unwrap_or_default();
                    configs.default = c.spec;
                }
                None => {}
            }
        }
        configs
    }

    /// Where `node`'s speaker listens for IPv4 sessions: its `listenPort`
    /// (default 179) on its `address` with `bindMode: NodeIP`, on every
    /// address otherwise (Calico's default `None`); nowhere on an IPv6-only
    /// node (no `address`).
    pub fn listen_address(&self, node: &str, address: Option<Ipv4Addr>) -> Option<SocketAddr> {
        let ip = match self.of(node).bind_mode.as_deref() {
            Some("NodeIP") => address?,
            _ => address.map(|_| Ipv4Addr::UNSPECIFIED)?,
        };
        Some(SocketAddr::new(IpAddr::V4(ip), self.port(node)))
    }

    /// What applies to `node`: its own fields over `default`'s.
    pub fn of(&self, node: &str) -> BgpConfigurationSpec {
        BgpConfigurationSpec::merged(Some(&self.default), self.nodes.get(node))
    }

    /// The port `node`'s speaker listens on (`listenPort`).
    pub fn port(&self, node: &str) -> u16 {
        self.of(node).listen_port.unwrap_or(BGP_PORT)
    }
}

/// How a peer came to be (the `PEER TYPE` column of `tortie status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerType {
    /// Another node, through the full mesh.
    Mesh,
    /// A BGPPeer for every node.
    Global,
    /// A BGPPeer for this node (by name or selector).
    NodeSpecific,
    /// A route reflector (a node with `routeReflectorClusterID`) chosen by a BGPPeer.
    RouteReflector,
    /// A peer that connected from a dynamic-neighbour range.
    Dynamic,
}

/// One planned session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPeer {
    /// Session name (Calico's BIRD protocol naming: `Mesh_192_0_2_2`).
    pub name: String,
    /// How it came to be.
    pub kind: PeerType,
    /// Where.
    pub remote: SocketAddr,
    /// Its AS.
    pub asn: u32,
    /// Wait for it to dial (mesh: the side with the higher address listens).
    pub passive: bool,
    /// The next hop of what we send it.
    pub next_hop: NextHopMode,
    /// Our AS on this session, when not the node's (`localASNumber`).
    pub local_as: Option<u32>,
    /// GTSM hops.
    pub ttl_security: Option<u8>,
    /// The BGPPeer it comes from (its `filters` give the policies).
    pub bgp_peer: Option<String>,
    /// TCP MD5 key (RFC 2385), from the BGPPeer's password secret.
    pub password: Option<String>,
    /// It is our route-reflector client (Calico's rule: we are a reflector,
    /// it is in our AS, and it is not a reflector of our own cluster).
    pub rr_client: bool,
    /// The graceful-restart time we advertise to it (RFC 4724 §3;
    /// `nodeMeshMaxRestartTime` or the BGPPeer's `maxRestartTime`).
    pub restart_time: u16,
    /// The long-lived stale time we advertise to it and keep its routes
    /// for at most (RFC 9494; the BGPPeer's `restartMode:
    /// LongLivedGracefulRestart`); `None`: no long-lived graceful restart.
    pub long_lived_stale_time: Option<u32>,
    /// How often our own AS may appear in its paths before they count as a
    /// loop (the BGPPeer's `numAllowedLocalASNumbers`).
    pub allow_local_as: u8,
    /// Dial from the node's address (`sourceAddress: UseNodeIP`, the
    /// default) rather than whatever the route to it picks (`None`).
    pub source_node_ip: bool,
    /// Timers, back-off and passive mode.
    pub session: SessionSettings,
}

impl PlannedPeer {
    /// A peer that dials us from a dynamic-neighbour range.
    pub fn dynamic(name: &str, remote: SocketAddr, asn: u32, rr_client: bool) -> PlannedPeer {
        PlannedPeer {
            name: name.into(),
            kind: PeerType::Dynamic,
            remote,
            asn,
            passive: true,
            next_hop: NextHopMode::Auto,
            local_as: None,
            ttl_security: None,
            bgp_peer: None,
            password: None,
            rr_client,
            restart_time: DEFAULT_RESTART_TIME,
            long_lived_stale_time: None,
            allow_local_as: 0,
            source_node_ip: true,
            session: SessionSettings::default(),
        }
    }

    /// Whether `other` is the same session: everything but `kind`, which
    /// only names the peer in `tortie status` (a node becoming a reflector
    /// must not reset its sessions), and BFD, which watches the session
    /// from outside (turned on, off or retimed, the session stays).
    pub fn same_session(&self, other: &PlannedPeer) -> bool {
        let mut other = other.clone();
        other.kind = self.kind;
        other.session.bfd = self.session.bfd;
        other.session.bfd_interval = self.session.bfd_interval;
        other.session.bfd_multiplier = self.session.bfd_multiplier;
        *self == other
    }
}

/// This node, as the plan sees it.
#[derive(Debug, Clone)]
pub struct Me {
    /// Node name.
    pub name: String,
    /// Node IPv4 address (`bgp.ipv4Address`; none on an IPv6-only node).
    pub address: Option<Ipv4Addr>,
    /// Node IPv6 address (`bgp.ipv6Address`): the mesh runs over IPv6 too.
    pub address6: Option<Ipv6Addr>,
    /// The BGP identifier: the IPv4 address, or for an IPv6-only node
    /// one given or made from its name (Calico's `CALICO_ROUTER_ID`).
    pub router_id: Ipv4Addr,
    /// Node AS.
    pub asn: u32,
    /// Node labels (for `nodeSelector`).
    pub labels: BTreeMap<String, String>,
    /// This node's `routeReflectorClusterID`: it is a route reflector.
    pub cluster_id: Option<Ipv4Addr>,
    /// The send hold time of its sessions (RFC 9687; `None`: the RFC's default).
    pub send_hold: Option<Duration>,
}

impl Me {
    /// Whether `ip` is one of this node's own addresses.
    fn holds(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.address == Some(v4),
            IpAddr::V6(v6) => self.address6 == Some(v6),
        }
    }

    /// Whether this node has an address of `ip`'s family to peer with it
    /// from; logs the BGPPeer `name` left out if not (`tortie apply`
    /// refuses such a BGPPeer for one node; one for all nodes or by
    /// selector is left out only where it cannot work).
    fn peers_over(&self, name: &str, ip: IpAddr) -> bool {
        let (has, family, field) = match ip {
            IpAddr::V4(_) => (self.address.is_some(), "IPv4", "bgp.ipv4Address"),
            IpAddr::V6(_) => (self.address6.is_some(), "IPv6", "bgp.ipv6Address"),
        };
        if !has {
            tracing::error!(
                bgp_peer = name,
                peer_ip = %ip,
                node = self.name,
                "BGPPeer left out: its peerIP is {family} and this node has no {family} address ({field})"
            );
        }
        has
    }
}

fn session_name(prefix: &str, addr: IpAddr) -> String {
    format!("{prefix}_{}", addr.to_string().replace(['.', ':'], "_"))
}

fn node_address(n: &Object<NodeSpec>) -> Option<Ipv4Addr> {
    match n.spec.bgp.as_ref()?.ipv4_address? {
        ipnet::IpNet::V4(a) => Some(a.addr()),
        ipnet::IpNet::V6(_) => None,
    }
}

fn node_address6(n: &Object<NodeSpec>) -> Option<Ipv6Addr> {
    match n.spec.bgp.as_ref()?.ipv6_address? {
        ipnet::IpNet::V6(a) => Some(a.addr()),
        ipnet::IpNet::V4(_) => None,
    }
}

fn cluster_id(n: &Object<NodeSpec>) -> Option<Ipv4Addr> {
    n.spec.bgp.as_ref()?.route_reflector_cluster_id
}

/// Calico's rule for a reflector's peers: an iBGP peer is a client unless
/// it is a reflector of the same cluster (a different cluster's reflector is
/// a client too: that makes hierarchies).
fn is_client(me: &Me, peer_as: u32, peer_cluster: Option<Ipv4Addr>) -> bool {
    me.cluster_id.is_some() && peer_as == me.asn && peer_cluster != me.cluster_id
}

fn selects(selector: Option<&str>, labels: &BTreeMap<String, String>) -> bool {
    selector.is_none_or(|s| Selector::parse(s).is_ok_and(|sel| sel.matches(labels)))
}

/// The sessions this node should run.
pub fn plan(
    me: &Me,
    configs: &Configs,
    nodes: &[Object<NodeSpec>],
    bgp_peers: &[Object<BgpPeerSpec>],
) -> Vec<PlannedPeer> {
    let config = &configs.default;
    let default_as = config.as_number.unwrap_or(DEFAULT_AS);
    let mesh_restart = configs.of(&me.name).mesh_restart_time();
    let node_as = |n: &Object<NodeSpec>| n.spec.bgp.as_ref().and_then(|b| b.as_number).unwrap_or(default_as);
    let mut out: BTreeMap<IpAddr, PlannedPeer> = BTreeMap::new();
    let mut add = |p: PlannedPeer| {
        // One session per address: the first reason wins (mesh, then peers by name).
        out.entry(p.remote.ip()).or_insert(p);
    };
    if config.node_to_node_mesh_enabled.unwrap_or(true) {
        // Over IPv4, and over IPv6 between nodes that both have an IPv6
        // address (as Calico runs BIRD and BIRD6): each session carries its
        // own family.
        let v4 = nodes.iter().filter_map(|n| Some((n, IpAddr::V4(node_address(n)?), IpAddr::V4(me.address?))));
        let v6 = nodes.iter().filter_map(|n| Some((n, IpAddr::V6(node_address6(n)?), IpAddr::V6(me.address6?))));
        for (n, addr, mine) in v4.chain(v6).filter(|(n, _, _)| n.metadata.name != me.name) {
            add(PlannedPeer {
                name: session_name("Mesh", addr),
                kind: PeerType::Mesh,
                remote: SocketAddr::new(addr, configs.port(&n.metadata.name)),
                asn: node_as(n),
                passive: mine > addr,
                next_hop: NextHopMode::Auto,
                local_as: None,
                ttl_security: None,
                bgp_peer: None,
                password: None,
                rr_client: is_client(me, node_as(n), cluster_id(n)),
                restart_time: mesh_restart,
                long_lived_stale_time: None,
                allow_local_as: 0,
                source_node_ip: true,
                session: configs.mesh,
            });
        }
    }
    for p in bgp_peers {
        let s = &p.spec;
        // Which nodes the BGPPeer applies to (`node`, `nodeSelector`, or all).
        let applies_to = |name: &str, labels: &BTreeMap<String, String>| match (&s.node, &s.node_selector) {
            (Some(node), _) => node == name,
            (None, Some(sel)) => selects(Some(sel), labels),
            (None, None) => true,
        };
        let kind =
            if s.node.is_none() && s.node_selector.is_none() { PeerType::Global } else { PeerType::NodeSpecific };
        let base = |name: String, remote: SocketAddr, asn: u32| PlannedPeer {
            name,
            kind,
            remote,
            asn,
            passive: false,
            next_hop: match (s.keep_original_next_hop, s.next_hop_mode.as_deref()) {
                (true, _) | (_, Some("Keep")) => NextHopMode::Keep,
                (_, Some("Self")) => NextHopMode::SelfAddr,
                _ => NextHopMode::Auto,
            },
            local_as: s.local_as_number,
            ttl_security: s.ttl_security,
            bgp_peer: Some(p.metadata.name.clone()),
            password: None,
            rr_client: false,
            restart_time: s.restart_time(),
            long_lived_stale_time: s.long_lived_stale_time(),
            allow_local_as: s.num_allowed_local_as_numbers.map_or(0, |n| n.min(10) as u8),
            source_node_ip: s.source_address != Some(SourceAddress::None),
            session: SessionSettings {
                keepalive: s.keepalive(),
                bfd: s.bfd(),
                ..SessionSettings::from_annotations(Kind::BgpPeer, &p.metadata.name, &p.metadata.annotations)
                    .unwrap_or_default()
            },
        };
        let prefix = if kind == PeerType::Global { "Global" } else { "Node" };
        // A selected node: a session over each family both nodes have an address of.
        let node_peers = |n: &Object<NodeSpec>| {
            let v4 = node_address(n).map(IpAddr::V4).filter(|_| me.address.is_some());
            let v6 = node_address6(n).map(IpAddr::V6).filter(|_| me.address6.is_some());
            v4.into_iter()
                .chain(v6)
                .map(|addr| {
                    let remote = SocketAddr::new(addr, configs.port(&n.metadata.name));
                    let mut peer = base(session_name(prefix, addr), remote, node_as(n));
                    peer.rr_client = is_client(me, node_as(n), cluster_id(n));
                    if cluster_id(n).is_some() {
                        peer.kind = PeerType::RouteReflector;
                    }
                    peer
                })
                .collect::<Vec<_>>()
        };
        let others = || nodes.iter().filter(|n| n.metadata.name != me.name);
        match (s.peer_ip.as_deref(), s.peer_selector.as_deref()) {
            (Some(ip), _) if applies_to(&me.name, &me.labels) => {
                let remote = ip.parse::<SocketAddr>().ok().or_else(|| {
                    // Calico: a node's address without a port means that node's listenPort.
                    let a = ip.parse::<IpAddr>().ok()?;
                    let node = nodes.iter().find(|n| node_address(n).map(IpAddr::from) == Some(a));
                    Some(SocketAddr::new(a, node.map_or(BGP_PORT, |n| configs.port(&n.metadata.name))))
                });
                if let Some(remote) = remote
                    && !me.holds(remote.ip())
                    && me.peers_over(&p.metadata.name, remote.ip())
                {
                    let asn = s.as_number.unwrap_or(me.asn);
                    let mut peer = base(session_name(prefix, remote.ip()), remote, asn);
                    peer.rr_client = is_client(me, asn, None);
                    add(peer);
                }
            }
            (None, Some(sel)) => {
                // Node-to-node peerings are symmetric, as in Calico: the nodes the
                // BGPPeer applies to peer with the nodes its peerSelector selects,
                // and those with them.
                if applies_to(&me.name, &me.labels) {
                    others().filter(|n| selects(Some(sel), &n.metadata.labels)).flat_map(node_peers).for_each(&mut add);
                }
                if selects(Some(sel), &me.labels) && s.reverse_peering.as_deref() != Some("Manual") {
                    others()
                        .filter(|n| applies_to(&n.metadata.name, &n.metadata.labels))
                        .flat_map(node_peers)
                        .for_each(&mut add);
                }
            }
            _ => {}
        }
    }
    out.into_values().collect()
}

/// The template of a dynamic-neighbour range: iBGP peers of our AS that
/// dial us, reflected to as clients when we are a reflector.
pub fn dynamic_template(me: &Me) -> Neighbor {
    let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), BGP_PORT);
    let template = PlannedPeer::dynamic("Dynamic", any, me.asn, me.cluster_id.is_some());
    neighbor(me, &template, (Policy::accept_all(), Policy::accept_all()))
}

/// The speaker's configuration for a planned session, with its (import,
/// export) policies.
pub fn neighbor(me: &Me, p: &PlannedPeer, policies: (Policy, Policy)) -> Neighbor {
    let local_as = p.local_as.unwrap_or(me.asn);
    let mut local = LocalConfig::new(local_as, me.router_id, p.asn);
    // A session carries its own address family (RFC 4760): IPv4 unicast
    // over IPv4, IPv6 unicast over IPv6, with our address of that family
    // as the source and the next hop (`plan` makes no session of a family
    // we have no address of; a dynamic-neighbour template has none yet).
    let (family, local_addr) = match p.remote.ip() {
        IpAddr::V6(_) => (Family::IPV6_UNICAST, me.address6.map_or(IpAddr::V4(me.router_id), IpAddr::V6)),
        IpAddr::V4(_) => (Family::IPV4_UNICAST, IpAddr::V4(me.address.unwrap_or(me.router_id))),
    };
    local.families = vec![family];
    let defaults = FsmConfig::default();
    local.hold_time = p.session.hold_time.unwrap_or(local.hold_time);
    local.keepalive = p.session.keepalive.or(local.keepalive);
    // Our kernel routes survive a restart of the daemon: peers may keep forwarding to us.
    local.graceful_restart = Some(GracefulRestart {
        restarted: false,
        notification: false,
        restart_time: p.restart_time,
        families: vec![GracefulRestartFamily { family, forwarding_preserved: true }],
    });
    local.long_lived = p
        .long_lived_stale_time
        .map(|stale_time| LongLivedFamily { family, forwarding_preserved: true, stale_time })
        .into_iter()
        .collect();
    Neighbor {
        session: PeerConfig {
            name: p.name.clone(),
            remote: p.remote,
            local_addr: p.source_node_ip.then_some(local_addr),
            local,
            fsm: FsmConfig {
                connect_retry: Duration::from_secs(5),
                passive: p.passive || p.session.passive,
                send_hold: me.send_hold,
                idle_hold: p.session.idle_hold.unwrap_or(defaults.idle_hold),
                idle_hold_max: p.session.max_idle_hold.unwrap_or(defaults.idle_hold_max),
                ..defaults
            },
            socket: SocketOptions {
                ttl_security: p.ttl_security,
                md5_key: p.password.clone(),
                ..SocketOptions::default()
            },
        },
        export: ExportPeer {
            local_as,
            peer_as: p.asn,
            local_addr,
            next_hop: p.next_hop,
            prepend: 0,
            rr_client: p.rr_client,
            long_lived: false,
            link_local: None,
        },
        // Explicit policies (RFC 8212); without filters they accept everything, as Calico does.
        import_policy: Some(policies.0),
        export_policy: Some(policies.1),
        max_prefix: None,
        allow_local_as: p.allow_local_as,
        // A BGPFilter change reaches the routes of a ToR or other external
        // peer even when it cannot refresh; tortie nodes always can.
        soft_reconfiguration_inbound: p.bgp_peer.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tortie_store::resources::{Metadata, NodeBgp};

    fn node(name: &str, addr: &str, labels: &[(&str, &str)]) -> Object<NodeSpec> {
        Object {
            api_version: String::new(),
            kind: "Node".into(),
            metadata: Metadata {
                name: name.into(),
                labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                ..Metadata::default()
            },
            spec: NodeSpec {
                bgp: Some(NodeBgp { ipv4_address: Some(addr.parse().unwrap()), ..NodeBgp::default() }),
                ..NodeSpec::default()
            },
        }
    }

    fn peer(name: &str, spec: BgpPeerSpec) -> Object<BgpPeerSpec> {
        Object {
            api_version: String::new(),
            kind: "BGPPeer".into(),
            metadata: Metadata { name: name.into(), ..Metadata::default() },
            spec,
        }
    }

    #[test]
    fn mesh_peers_every_other_node_and_the_higher_address_listens() {
        let me = Me {
            name: "b".into(),
            address: Some("192.0.2.2".parse().unwrap()),
            router_id: "192.0.2.2".parse().unwrap(),
            address6: None,
            asn: 64512,
            labels: BTreeMap::new(),
            cluster_id: None,
            send_hold: None,
        };
        let nodes = [node("a", "192.0.2.1/24", &[]), node("b", "192.0.2.2/24", &[]), node("c", "192.0.2.3/24", &[])];
        let plan = plan(&me, &Configs::default(), &nodes, &[]);
        let got: Vec<(&str, bool)> = plan.iter().map(|p| (p.name.as_str(), p.passive)).collect();
        assert_eq!(got, [("Mesh_192_0_2_1", true), ("Mesh_192_0_2_3", false)]);
        let off = BgpConfigurationSpec { node_to_node_mesh_enabled: Some(false), ..BgpConfigurationSpec::default() };
        assert!(super::plan(&me, &off.into(), &nodes, &[]).is_empty());
    }

    #[test]
    fn the_mesh_runs_over_ipv6_between_nodes_that_both_have_an_ipv6_address() {
        let me = Me {
            name: "b".into(),
            address: Some("192.0.2.2".parse().unwrap()),
            router_id: "192.0.2.2".parse().unwrap(),
            address6: Some("2001:db8::2".parse().unwrap()),
            asn: 64512,
            labels: BTreeMap::new(),
            cluster_id: None,
            send_hold: None,
        };
        let with_v6 = |name: &str, v4: &str, v6: &str| {
            let mut n = node(name, v4, &[]);
            n.spec.bgp.as_mut().unwrap().ipv6_address = Some(v6.parse().unwrap());
            n
        };
        let nodes = [
            with_v6("a", "192.0.2.1/24", "2001:db8::1/64"),
            with_v6("b", "192.0.2.2/24", "2001:db8::2/64"),
            node("c", "192.0.2.3/24", &[]),
        ];
        let plan = plan(&me, &Configs::default(), &nodes, &[]);
        let got: Vec<(&str, String, bool)> =
            plan.iter().map(|p| (p.name.as_str(), p.remote.to_string(), p.passive)).collect();
        assert_eq!(
            got,
            [
                ("Mesh_192_0_2_1", "192.0.2.1:179".to_string(), true),
                ("Mesh_192_0_2_3", "192.0.2.3:179".to_string(), false),
                ("Mesh_2001_db8__1", "[2001:db8::1]:179".to_string(), true),
            ],
            "c has no IPv6 address: IPv4 only"
        );
        // Each session carries its own family, from our address of that family.
        let v6 = neighbor(&me, &plan[2], (Policy::accept_all(), Policy::accept_all()));
        assert_eq!(v6.session.local.families, [Family::IPV6_UNICAST]);
        assert_eq!(v6.session.local_addr, Some("2001:db8::2".parse().unwrap()));
        assert_eq!(v6.export.local_addr, "2001:db8::2".parse::<IpAddr>().unwrap());
        let v4 = neighbor(&me, &plan[0], (Policy::accept_all(), Policy::accept_all()));
        assert_eq!(v4.session.local.families, [Family::IPV4_UNICAST]);
        // Without an IPv6 address of ours, no IPv6 session.
        let v4_only = Me { address6: None, ..me };
        assert!(super::plan(&v4_only, &Configs::default(), &nodes, &[]).iter().all(|p| p.remote.is_ipv4()));
    }

    #[test]
    fn an_ipv6_only_node_peers_over_ipv6_alone_and_leaves_out_ipv4_peers() {
        let me = Me {
            name: "b".into(),
            address: None,
            router_id: "10.0.0.2".parse().unwrap(),
            address6: Some("2001:db8::2".parse().unwrap()),
            asn: 64512,
            labels: [("rr".to_string(), String::new())].into(),
            cluster_id: None,
            send_hold: None,
        };
        let v6_only = |name: &str, v6: &str, labels: &[(&str, &str)]| {
            let mut n = node(name, "192.0.2.9/24", labels);
            *n.spec.bgp.as_mut().unwrap() = NodeBgp { ipv6_address: Some(v6.parse().unwrap()), ..NodeBgp::default() };
            n
        };
        let mut dual = node("c", "192.0.2.3/24", &[]);
        dual.spec.bgp.as_mut().unwrap().ipv6_address = Some("2001:db8::3/64".parse().unwrap());
        let nodes = [v6_only("a", "2001:db8::1/64", &[("rr", "")]), v6_only("b", "2001:db8::2/64", &[]), dual];
        let peers = [
            peer(
                "tor4",
                BgpPeerSpec { peer_ip: Some("192.0.2.254".into()), as_number: Some(65000), ..Default::default() },
            ),
            peer(
                "tor6",
                BgpPeerSpec { peer_ip: Some("2001:db8::fe".into()), as_number: Some(65000), ..Default::default() },
            ),
            peer("rrs", BgpPeerSpec { peer_selector: Some("has(rr)".into()), ..BgpPeerSpec::default() }),
        ];
        let plan = plan(&me, &Configs::default(), &nodes, &peers);
        let got: Vec<&str> = plan.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(got, ["Mesh_2001_db8__1", "Mesh_2001_db8__3", "Global_2001_db8__fe"], "no IPv4 session at all");
        let s = neighbor(&me, &plan[2], (Policy::accept_all(), Policy::accept_all()));
        assert_eq!(s.session.local.bgp_id, "10.0.0.2".parse::<Ipv4Addr>().unwrap());
        assert_eq!(s.session.local_addr, Some("2001:db8::2".parse().unwrap()));
        // A peerSelector peering runs over each family both nodes have (b is
        // selected too, so every node peers with it: c over IPv6 only).
        let off = BgpConfigurationSpec { node_to_node_mesh_enabled: Some(false), ..BgpConfigurationSpec::default() };
        let by_selector = super::plan(&me, &off.into(), &nodes, &peers[2..]);
        let got: Vec<&str> = by_selector.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(got, ["Global_2001_db8__1", "Global_2001_db8__3"]);
    }

    #[test]
    fn bgp_peers_apply_globally_by_name_by_node_selector_and_by_peer_selector() {
        let labels: BTreeMap<String, String> = [("rack".to_string(), "r1".to_string())].into();
        let me = Me {
            name: "a".into(),
            address: Some("192.0.2.1".parse().unwrap()),
            router_id: "192.0.2.1".parse().unwrap(),
            address6: None,
            asn: 64512,
            labels,
            cluster_id: None,
            send_hold: None,
        };
        let nodes = [node("a", "192.0.2.1/24", &[("rack", "r1")]), node("rr", "192.0.2.9/24", &[("rr", "yes")])];
        let tor = |node: Option<&str>, sel: Option<&str>, ip: &str| BgpPeerSpec {
            node: node.map(String::from),
            node_selector: sel.map(String::from),
            peer_ip: Some(ip.into()),
            as_number: Some(65000),
            ..BgpPeerSpec::default()
        };
        let peers = [
            peer("global", tor(None, None, "203.0.113.1")),
            peer("mine", tor(Some("a"), None, "203.0.113.2")),
            peer("theirs", tor(Some("b"), None, "203.0.113.3")),
            peer("rack", tor(None, Some("rack == 'r1'"), "203.0.113.4:1179")),
            peer("other-rack", tor(None, Some("rack == 'r2'"), "203.0.113.5")),
            peer("rrs", BgpPeerSpec { peer_selector: Some("has(rr)".into()), ..BgpPeerSpec::default() }),
        ];
        let off = BgpConfigurationSpec { node_to_node_mesh_enabled: Some(false), ..BgpConfigurationSpec::default() };
        let got: Vec<(String, PeerType, String, u32)> = plan(&me, &off.clone().into(), &nodes, &peers)
            .into_iter()
            .map(|p| (p.name, p.kind, p.remote.to_string(), p.asn))
            .collect();
        let want = [
            ("Global_192_0_2_9", PeerType::Global, "192.0.2.9:179", 64512),
            ("Global_203_0_113_1", PeerType::Global, "203.0.113.1:179", 65000),
            ("Node_203_0_113_2", PeerType::NodeSpecific, "203.0.113.2:179", 65000),
            ("Node_203_0_113_4", PeerType::NodeSpecific, "203.0.113.4:1179", 65000),
        ];
        let want: Vec<(String, PeerType, String, u32)> =
            want.iter().map(|(n, k, a, s)| (n.to_string(), *k, a.to_string(), *s)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn restart_times_listen_ports_own_as_and_source_address_come_from_the_configurations() {
        let me = Me {
            name: "a".into(),
            address: Some("192.0.2.1".parse().unwrap()),
            router_id: "192.0.2.1".parse().unwrap(),
            address6: None,
            asn: 64512,
            labels: BTreeMap::new(),
            cluster_id: None,
            send_hold: None,
        };
        let nodes = [node("a", "192.0.2.1/24", &[]), node("b", "192.0.2.2/24", &[])];
        let mut configs = Configs::from(BgpConfigurationSpec {
            listen_port: Some(1179),
            node_mesh_max_restart_time: Some("5m0s".into()),
            ..BgpConfigurationSpec::default()
        });
        let node_b = BgpConfigurationSpec { listen_port: Some(2179), ..BgpConfigurationSpec::default() };
        configs.nodes.insert("b".into(), node_b);
        let peers = [peer(
            "tor",
            BgpPeerSpec {
                peer_ip: Some("203.0.113.1".into()),
                as_number: Some(65000),
                max_restart_time: Some("30s".into()),
                num_allowed_local_as_numbers: Some(2),
                source_address: Some(SourceAddress::None),
                ..BgpPeerSpec::default()
            },
        )];
        let got: Vec<(String, String, u16, u8, bool)> = plan(&me, &configs, &nodes, &peers)
            .into_iter()
            .map(|p| (p.name, p.remote.to_string(), p.restart_time, p.allow_local_as, p.source_node_ip))
            .collect();
        assert_eq!(
            got,
            [
                ("Mesh_192_0_2_2".to_string(), "192.0.2.2:2179".to_string(), 300, 0, true),
                ("Global_203_0_113_1".to_string(), "203.0.113.1:179".to_string(), 30, 2, false),
            ]
        );
        assert_eq!(configs.port("a"), 1179, "default's listenPort where a node sets none");
        let to_b = peer(
            "to-b",
            BgpPeerSpec { peer_ip: Some("192.0.2.2".into()), as_number: Some(64512), ..BgpPeerSpec::default() },
        );
        let off = Configs {
            default: BgpConfigurationSpec { node_to_node_mesh_enabled: Some(false), ..configs.default.clone() },
            ..configs.clone()
        };
        let got = plan(&me, &off, &nodes, &[to_b]);
        assert_eq!(got[0].remote.to_string(), "192.0.2.2:2179", "a node's peerIP without a port: its listenPort");
        // RFC 9494: under LongLivedGracefulRestart, maxRestartTime is the
        // long-lived stale time; the restart time stays Calico's 120 s.
        let llgr = |max: Option<&str>| {
            let spec = BgpPeerSpec {
                peer_ip: Some("203.0.113.1".into()),
                as_number: Some(65000),
                restart_mode: Some("LongLivedGracefulRestart".into()),
                max_restart_time: max.map(String::from),
                ..BgpPeerSpec::default()
            };
            let planned = plan(&me, &off, &nodes, &[peer("tor", spec)]).remove(0);
            let local = neighbor(&me, &planned, (Policy::accept_all(), Policy::accept_all())).session.local;
            let gr = local.graceful_restart.map(|g| g.restart_time);
            (gr, local.long_lived.iter().map(|l| (l.family, l.stale_time, l.forwarding_preserved)).collect::<Vec<_>>())
        };
        assert_eq!(llgr(Some("24h0m0s")), (Some(120), vec![(Family::IPV4_UNICAST, 86_400, true)]));
        assert_eq!(llgr(None), (Some(120), vec![(Family::IPV4_UNICAST, 3600, true)]), "BIRD's default stale time");
        assert!(
            neighbor(&me, &got[0], (Policy::accept_all(), Policy::accept_all())).session.local.long_lived.is_empty(),
            "no restartMode: no LLGR capability"
        );
    }

    #[test]
    fn a_selected_node_peers_back_unless_reverse_peering_is_manual() {
        let nodes = [node("a", "192.0.2.1/24", &[("role", "client")]), node("rr", "192.0.2.9/24", &[("rr", "yes")])];
        let me_rr = Me {
            name: "rr".into(),
            address: Some("192.0.2.9".parse().unwrap()),
            router_id: "192.0.2.9".parse().unwrap(),
            address6: None,
            asn: 64512,
            labels: [("rr".to_string(), "yes".to_string())].into(),
            cluster_id: None,
            send_hold: None,
        };
        let to_rr = |reverse: Option<&str>| {
            [peer(
                "to-rr",
                BgpPeerSpec {
                    node_selector: Some("role == 'client'".into()),
                    peer_selector: Some("has(rr)".into()),
                    reverse_peering: reverse.map(String::from),
                    ..BgpPeerSpec::default()
                },
            )]
        };
        let off = Configs::from(BgpConfigurationSpec { node_to_node_mesh_enabled: Some(false), ..Default::default() });
        assert_eq!(plan(&me_rr, &off, &nodes, &to_rr(None)).len(), 1, "Auto: the selected node peers back");
        assert!(plan(&me_rr, &off, &nodes, &to_rr(Some("Manual"))).is_empty(), "Manual: it waits for its own BGPPeer");
    }

    #[test]
    fn a_reflector_peers_back_with_every_node_that_selects_it_and_treats_them_as_clients() {
        let mut rr = node("rr", "192.0.2.9/24", &[("rr", "yes")]);
        if let Some(b) = rr.spec.bgp.as_mut() {
            b.route_reflector_cluster_id = Some("203.0.113.250".parse().unwrap());
        }
        let nodes = [rr, node("a", "192.0.2.1/24", &[]), node("b", "192.0.2.2/24", &[])];
        let peers = [peer(
            "to-rr",
            BgpPeerSpec {
                node_selector: Some("all()".into()),
                peer_selector: Some("has(rr)".into()),
                ..BgpPeerSpec::default()
            },
        )];
        let off = BgpConfigurationSpec { node_to_node_mesh_enabled: Some(false), ..BgpConfigurationSpec::default() };
        let me_rr = Me {
            name: "rr".into(),
            address: Some("192.0.2.9".parse().unwrap()),
            router_id: "192.0.2.9".parse().unwrap(),
            address6: None,
            asn: 64512,
            labels: [("rr".to_string(), "yes".to_string())].into(),
            cluster_id: Some("203.0.113.250".parse().unwrap()),
            send_hold: None,
        };
        let got: Vec<(String, bool)> =
            plan(&me_rr, &off.clone().into(), &nodes, &peers).into_iter().map(|p| (p.name, p.rr_client)).collect();
        assert_eq!(got, [("Node_192_0_2_1".to_string(), true), ("Node_192_0_2_2".to_string(), true)]);
        let me_a = Me {
            name: "a".into(),
            address: Some("192.0.2.1".parse().unwrap()),
            router_id: "192.0.2.1".parse().unwrap(),
            address6: None,
            asn: 64512,
            labels: BTreeMap::new(),
            cluster_id: None,
            send_hold: None,
        };
        let got = plan(&me_a, &off.clone().into(), &nodes, &peers);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].kind, got[0].rr_client), (PeerType::RouteReflector, false));
        let before_its_cluster_id = PlannedPeer { kind: PeerType::NodeSpecific, ..got[0].clone() };
        assert!(got[0].same_session(&before_its_cluster_id), "the peer type alone keeps the session");
        assert!(!got[0].same_session(&PlannedPeer { asn: 1, ..got[0].clone() }), "another AS does not");
    }
}
