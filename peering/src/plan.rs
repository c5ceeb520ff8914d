//! Which BGP sessions a node runs, decided from the datastore the way
//! Calico decides it: the node-to-node mesh (every other node, unless
//! `nodeToNodeMeshEnabled: false`), global BGPPeers, BGPPeers for this
//! node by name or `nodeSelector`, and `peerSelector` peers (the nodes a
//! selector matches). Pure: resources in, a plan out.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

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
        IpNet::V4(a) => Some(a.addr()),
        IpNet::V6(_) => None,
    }
}

fn node_address6(n: &Object<NodeSpec>) -> Option<Ipv6Addr> {
    match n.spec.bgp.as_ref()?.ipv6_address? {
        IpNet::V6(a) => Some(a.addr()),
        IpNet::V4(_) => None,
    }
}

/// Whether `ip` is one of node `n`'s addresses.
fn node_holds(n: &Object<NodeSpec>, ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => node_address(n) == Some(v4),
        IpAddr::V6(v6) => node_address6(n) == Some(v6),
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
                    let node = nodes.iter().find(|n| node_holds(n, a));
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
/// dial us from `range`, reflected to as clients when we are a reflector.
/// Their sessions carry the range's family, so this node needs an address
/// of that family to source them and to be their next hop.
pub fn dynamic_template(me: &Me, range: IpNet) -> Result<Neighbor, String> {
    let any = match range {
        IpNet::V4(_) if me.address.is_none() => {
            return Err(format!("listen range {range} is IPv4 and this node has no IPv4 address (bgp.ipv4Address)"));
        }
        IpNet::V6(_) if me.address6.is_none() => {
            return Err(format!("listen range {range} is IPv6 and this node has no IPv6 address (bgp.ipv6Address)"));
        }
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let template = PlannedPeer::dynamic("Dynamic", SocketAddr::new(any, BGP_PORT), me.asn, me.cluster_id.is_some());
    Ok(neighbor(me, &template, (Policy::accept_all(), Policy::accept_all())))
}

/// The speaker's configuration for a planned session, with its (import,
/// export) policies.
pub fn neighbor(me: &Me, p: &PlannedPeer, policies: (Policy, Policy)) -> Neighbor {
    let local_as = p.local_as.unwrap_or(me.asn);
    let mut local = LocalConfig::new(local_as, me.router_id, p.asn);
    // A session carries its own address family (RFC 4760): IPv4 unicast
    // over IPv4, IPv6 unicast over IPv6, with our address of that family
    // as the source and the next hop (neither `plan` nor `dynamic_template`
    // makes a session of a family we have no address of).
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
#[path = "plan_tests.rs"]
mod tests;
