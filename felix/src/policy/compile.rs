//! Policies + endpoints → tortie's nftables table, as a pure function.
//!
//! ```text
//!  forward  prio 0: established → accept; invalid → drop; iifname vmap @workload-from
//!  forward  prio 1: established → accept;                 oifname vmap @workload-to
//!  input    prio 0: established → accept; iifname vmap @workload-from; pod → host accept;
//!                   lo; failsafe in; iifname vmap @host-in; jump host-in-<* endpoint>
//!  output   prio 0: established → accept; oifname vmap @workload-to; host → pod accept;
//!                   lo; failsafe out; oifname vmap @host-out; jump host-out-<* endpoint>
//!
//!  endpoint chain (wl-in-IFACE …): clear pass mark; jump pol-in-P1; passed? → profile;
//!                                  jump pol-in-P2; …; drop (selected, nothing allowed)
//!  policy chain (pol-in-NAME):     one rule per rule (per address family), counted;
//!                                  Allow accept, Deny drop, Log log, Pass mark + return
//! ```
//!
//! Egress (`workload-from`) and ingress (`workload-to`) run in two base
//! chains, so a pod's egress `accept` still leaves the receiving pod's
//! ingress to decide. Rule selectors become named address sets holding every
//! matching endpoint's addresses cluster-wide, so a label change that only
//! moves an endpoint in or out of a selector is a set-element update.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use tortie_store::resources::{Action, EndpointToHostAction as EndpointToHost};

use super::host::{Failsafe, HostRules, NatOutgoing};
use super::model::{Direction, Endpoint, EndpointKind, EndpointSet, Entity, NetworkSet, Policy, PolicyRule};
use super::ruleset::{
    AddrMatch, Applied, Chain, Cond, Element, EndpointPolicies, Family, Hook, MarkOp, NamedSet, NftRule, Ruleset,
    SetKind, Side, Verdict,
};

/// The mark bit a Pass rule sets for its endpoint chain to see (Calico
/// reserves the upper 16 mark bits for policy the same way).
pub const PASS_MARK: u32 = 0x0001_0000;

/// Map: pod interface → the pod's egress chain.
pub const MAP_WORKLOAD_FROM: &str = "workload-from";
/// Map: pod interface → the pod's ingress chain.
pub const MAP_WORKLOAD_TO: &str = "workload-to";
/// Map: host interface → the host endpoint's ingress chain.
pub const MAP_HOST_IN: &str = "host-in";
/// Map: host interface → the host endpoint's egress chain.
pub const MAP_HOST_OUT: &str = "host-out";
/// Map: host interface → the chain for traffic it forwards in (applyOnForward).
pub const MAP_HOST_FORWARD_IN: &str = "host-forward-in";
/// Map: host interface → the chain for traffic it forwards out (applyOnForward).
pub const MAP_HOST_FORWARD_OUT: &str = "host-forward-out";
/// Set: every local pod interface.
pub const SET_WORKLOAD_IFACES: &str = "workload-ifaces";
/// Set: the cluster's node addresses, the only VXLAN sources.
pub const SET_VXLAN_NODES: &str = "vxlan-nodes";
/// Set: the cluster's node IPv6 addresses, the only IPv6 VXLAN sources.
pub const SET_VXLAN_NODES_V6: &str = "vxlan-nodes-v6";

const ESTABLISHED: &[&str] = &["established", "related"];
/// ICMPv6 MLD (130–132) and neighbour discovery (133–136).
const NDP_TYPES: [u8; 7] = [130, 131, 132, 133, 134, 135, 136];
const INVALID: &[&str] = &["invalid"];

/// Everything the table is compiled from.
#[derive(Debug, Clone, Default)]
pub struct Inputs<'a> {
    /// This node.
    pub node: &'a str,
    /// Every endpoint of the cluster (only this node's get chains).
    pub endpoints: &'a [Endpoint],
    /// Every network set.
    pub network_sets: &'a [NetworkSet],
    /// The policies.
    pub policies: &'a [Policy],
    /// The node-wide rules.
    pub host: HostRules,
}

/// Compiles what applies on `input.node`. Policies apply in `order`
/// (absent: last), then by name, as Calico orders them.
pub fn compile(input: &Inputs<'_>) -> Ruleset {
    let (node, endpoints) = (input.node, input.endpoints);
    let mut ordered: Vec<&Policy> = input.policies.iter().collect();
    ordered.sort_by(|a, b| {
        let key = |p: &Policy| p.order.unwrap_or(f64::INFINITY);
        key(a).total_cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
    });
    let mut c = Compiler { rs: Ruleset::default(), sets: BTreeMap::new(), ipv6: input.host.ipv6 };
    for name in
        [MAP_WORKLOAD_FROM, MAP_WORKLOAD_TO, MAP_HOST_IN, MAP_HOST_OUT, MAP_HOST_FORWARD_IN, MAP_HOST_FORWARD_OUT]
    {
        c.rs.maps.insert(name.into(), BTreeMap::new());
    }
    let mut ifaces = NamedSet { kind: SetKind::Ifname, elements: Default::default(), comment: "local pods".into() };
    let (mut wildcard, mut forward_wildcard) = (Vec::new(), Vec::new());
    let local = endpoints.iter().filter(|e| e.node == node && !e.interface.is_empty());
    for ep in local {
        if ep.kind == EndpointKind::Workload {
            ifaces.elements.insert(Element::Name(ep.interface.clone()));
        }
        let mut shown = EndpointPolicies {
            endpoint: ep.name.clone(),
            interface: ep.interface.clone(),
            ingress: None,
            egress: None,
        };
        for dir in [Direction::Ingress, Direction::Egress] {
            let applied: Vec<&Policy> =
                ordered.iter().copied().filter(|p| p.rules(dir).is_some() && p.selects(ep)).collect();
            // A pod no policy selects is allowed (no chain); a host endpoint
            // is default-deny from the moment it exists.
            if ep.kind == EndpointKind::Workload && applied.is_empty() {
                continue;
            }
            // Traffic a host endpoint forwards: only its applyOnForward
            // policies, and none means allowed (as Calico).
            let forwarded: Vec<&Policy> = applied.iter().copied().filter(|p| p.apply_on_forward).collect();
            if ep.kind == EndpointKind::Host && !forwarded.is_empty() {
                let chain = c.endpoint_chain(ep, dir, &forwarded, "hostfwd");
                let map = if dir == Direction::Ingress { MAP_HOST_FORWARD_IN } else { MAP_HOST_FORWARD_OUT };
                if ep.interface == "*" {
                    forward_wildcard.push((dir, chain));
                } else if let Some(m) = c.rs.maps.get_mut(map) {
                    m.insert(ep.interface.clone(), chain);
                }
            }
            let kind = if ep.kind == EndpointKind::Workload { "wl" } else { "host" };
            let chain = c.endpoint_chain(ep, dir, &applied, kind);
            let policies = applied.iter().map(|p| p.name.to_string()).collect();
            let view = Some(Applied { chain: chain.clone(), policies });
            match dir {
                Direction::Ingress => shown.ingress = view,
                Direction::Egress => shown.egress = view,
            }
            let map = match (ep.kind, dir) {
                (EndpointKind::Workload, Direction::Ingress) => MAP_WORKLOAD_TO,
                (EndpointKind::Workload, Direction::Egress) => MAP_WORKLOAD_FROM,
                (EndpointKind::Host, Direction::Ingress) => MAP_HOST_IN,
                (EndpointKind::Host, Direction::Egress) => MAP_HOST_OUT,
            };
            if ep.interface == "*" {
                wildcard.push((dir, chain));
            } else if let Some(m) = c.rs.maps.get_mut(map) {
                m.insert(ep.interface.clone(), chain);
            }
        }
        c.rs.endpoints.push(shown);
    }
    c.rs.sets.insert(SET_WORKLOAD_IFACES.into(), ifaces);
    c.fill_sets(endpoints, input.network_sets);
    c.base_chains(&wildcard, &forward_wildcard, &input.host);
    c.nat_outgoing(&input.host.nat);
    c.rs
}

struct Compiler {
    rs: Ruleset,
    /// IPv6 is policed (`ipv6Support`).
    ipv6: bool,
    /// Address sets the rules use: name → (endpoints, family).
    sets: BTreeMap<String, (EndpointSet, Family)>,
}

impl Compiler {
    /// The endpoint's chain for `dir`: its policies in order, then the
    /// default. Returns the chain's name.
    fn endpoint_chain(&mut self, ep: &Endpoint, dir: Direction, applied: &[&Policy], kind: &str) -> String {
        let name =
            bounded(format!("{kind}-{}-{}", short(dir), if ep.interface == "*" { &ep.name } else { &ep.interface }));
        let profile = if ep.profile_allows { Verdict::Accept } else { Verdict::Drop };
        let mut rules = Vec::new();
        if !applied.is_empty() {
            rules.push(NftRule { mark: Some(MarkOp::Clear(PASS_MARK)), ..NftRule::default() });
        }
        for p in applied {
            let chain = self.policy_chain(p, dir);
            rules.push(NftRule { verdict: Some(Verdict::Jump(chain)), ..NftRule::default() });
            rules.push(NftRule {
                conds: vec![Cond::MarkSet(PASS_MARK)],
                mark: Some(MarkOp::Clear(PASS_MARK)),
                verdict: Some(profile.clone()),
                comment: Some(comment(format!("{}: passed by {}", ep.name, p.name))),
                ..NftRule::default()
            });
        }
        // Selected by a policy and allowed by none: denied. A host endpoint
        // no policy selects falls to its profile.
        let last = if applied.is_empty() { profile } else { Verdict::Drop };
        let why = if applied.is_empty() { "profile" } else { "default deny" };
        rules.push(NftRule {
            counter: true,
            verdict: Some(last),
            comment: Some(comment(format!("{} {} {why}", ep.name, dir.as_str()))),
            ..NftRule::default()
        });
        self.rs.chains.insert(name.clone(), Chain { hook: None, rules });
        name
    }

    /// The policy's chain for `dir` (compiled once, shared by endpoints).
    fn policy_chain(&mut self, p: &Policy, dir: Direction) -> String {
        let name = policy_chain_name(dir, &p.name);
        if self.rs.chains.contains_key(&name) {
            return name;
        }
        let mut rules = Vec::new();
        for (i, r) in p.rules(dir).unwrap_or_default().iter().enumerate() {
            let comment = comment(format!("{} {}[{i}]", p.name, dir.as_str()));
            let ipv6 = self.ipv6;
            for family in families(r).into_iter().filter(|f| ipv6 || *f != Some(Family::V6)) {
                let conds = self.conds(r, family);
                let (mark, verdict, log) = match r.action {
                    Action::Allow => (None, Some(Verdict::Accept), None),
                    Action::Deny => (None, Some(Verdict::Drop), None),
                    Action::Pass => (Some(MarkOp::Set(PASS_MARK)), Some(Verdict::Return), None),
                    Action::Log => {
                        // The kernel keeps 127 octets of a log prefix.
                        let mut prefix = format!("tortie {comment}: ");
                        truncate(&mut prefix, 127);
                        (None, None, Some(prefix))
                    }
                };
                rules.push(NftRule { conds, counter: true, log, mark, verdict, comment: Some(comment.clone()) });
            }
        }
        self.rs.chains.insert(name.clone(), Chain { hook: None, rules });
        name
    }

    fn conds(&mut self, r: &PolicyRule, family: Option<Family>) -> Vec<Cond> {
        let mut conds = Vec::new();
        if let Some(proto) = r.protocol {
            conds.push(Cond::L4Proto { proto, negate: false });
        }
        if let Some(proto) = r.not_protocol {
            conds.push(Cond::L4Proto { proto, negate: true });
        }
        let icmp_family = family.unwrap_or(if r.protocol == Some(58) { Family::V6 } else { Family::V4 });
        for (m, negate) in [(r.icmp, false), (r.not_icmp, true)] {
            if let Some(m) = m {
                conds.push(Cond::Icmp { family: icmp_family, icmp_type: m.icmp_type, code: m.code, negate });
            }
        }
        for (side, e) in [(Side::Source, &r.source), (Side::Destination, &r.destination)] {
            if let Some(f) = family {
                self.addr_conds(&mut conds, side, e, f);
            }
            for (ranges, negate) in [(&e.ports, false), (&e.not_ports, true)] {
                if !ranges.is_empty() {
                    conds.push(Cond::Ports { side, ranges: ranges.clone(), negate });
                }
            }
        }
        if let Some(f) = family
            && !conds.iter().any(|c| matches!(c, Cond::Addr { .. } | Cond::Icmp { .. }))
        {
            conds.push(Cond::NfProto(f));
        }
        conds
    }

    fn addr_conds(&mut self, conds: &mut Vec<Cond>, side: Side, e: &Entity, family: Family) {
        for (nets, negate) in [(&e.nets, false), (&e.not_nets, true)] {
            let of_family: Vec<IpNet> = nets.iter().copied().filter(|n| net_family(n) == family).collect();
            if !of_family.is_empty() {
                conds.push(Cond::Addr { family, side, target: AddrMatch::Nets(of_family), negate });
            }
        }
        for (set, negate) in [(&e.selector, false), (&e.not_selector, true)] {
            if let Some(set) = set {
                let name = self.address_set(set, family);
                conds.push(Cond::Addr { family, side, target: AddrMatch::Set(name), negate });
            }
        }
    }

    fn address_set(&mut self, set: &EndpointSet, family: Family) -> String {
        let fam = if family == Family::V4 { 4 } else { 6 };
        let name = format!("sel{fam}-{:016x}", fnv1a(set.to_string().as_bytes()));
        self.sets.entry(name.clone()).or_insert_with(|| (set.clone(), family));
        name
    }

    /// Each rule selector's set: the addresses of the endpoints and the
    /// networks of the network sets it matches, covered ones left out.
    fn fill_sets(&mut self, endpoints: &[Endpoint], network_sets: &[NetworkSet]) {
        for (name, (set, family)) in &self.sets {
            let addrs =
                endpoints.iter().filter(|ep| set.contains(ep)).flat_map(|ep| ep.addrs.iter().map(|a| IpNet::from(*a)));
            let nets =
                network_sets.iter().filter(|ns| set.contains_networks(ns)).flat_map(|ns| ns.nets.iter().copied());
            let members: Vec<IpNet> = addrs.chain(nets).filter(|n| net_family(n) == *family).collect();
            let elements = disjoint(members).into_iter().map(Element::Net).collect();
            let kind = if *family == Family::V4 { SetKind::Ipv4 } else { SetKind::Ipv6 };
            let mut comment = set.to_string();
            truncate(&mut comment, 120);
            self.rs.sets.insert(name.clone(), NamedSet { kind, elements, comment });
        }
    }

    fn base_chains(&mut self, wildcard: &[(Direction, String)], forward: &[(Direction, String)], host: &HostRules) {
        let rule = |conds: Vec<Cond>, verdict: Verdict| NftRule { conds, verdict: Some(verdict), ..NftRule::default() };
        let established = || rule(vec![Cond::CtState(ESTABLISHED)], Verdict::Accept);
        let vmap = |side: Side, map: &str| rule(vec![], Verdict::Vmap { side, map: map.into() });
        let iface = |side: Side, name: &str| Cond::Ifname { side, name: name.into() };
        let pods = |side: Side| Cond::IfnameInSet { side, set: SET_WORKLOAD_IFACES.into(), negate: false };
        // An all-interfaces host endpoint forwards on every interface but the pods'.
        let forward_jumps = |dir: Direction, side: Side| {
            forward.iter().filter(move |(d, _)| *d == dir).map(move |(_, chain)| {
                let not_pods = Cond::IfnameInSet { side, set: SET_WORKLOAD_IFACES.into(), negate: true };
                rule(vec![not_pods], Verdict::Jump(chain.clone()))
            })
        };
        // Pod → host: accepted here (host endpoint policy never sees it)
        // unless host endpoint policy is to decide; dropped in a later chain.
        let to_host =
            (host.endpoint_to_host != EndpointToHost::Return).then(|| rule(vec![pods(Side::Source)], Verdict::Accept));
        // A pod's IPv6 neighbour and router discovery and MLD with its host
        // (RFC 4861, RFC 2710) pass whatever policy says, as in Calico.
        let ndp = || NftRule {
            conds: vec![pods(Side::Source), Cond::IcmpTypeIn { family: Family::V6, types: NDP_TYPES.to_vec() }],
            verdict: Some(Verdict::Accept),
            comment: Some("pod neighbour discovery".into()),
            ..NftRule::default()
        };
        let jumps = |dir: Direction| {
            wildcard.iter().filter(move |(d, _)| *d == dir).map(|(_, chain)| rule(vec![], Verdict::Jump(chain.clone())))
        };
        // VXLAN from outside the cluster, over either family: dropped
        // before anything accepts it.
        let sets = [
            (Family::V4, SetKind::Ipv4, SET_VXLAN_NODES, ""),
            (Family::V6, SetKind::Ipv6, SET_VXLAN_NODES_V6, "IPv6 "),
        ];
        let vxlan: Vec<NftRule> = host
            .vxlan
            .iter()
            .flat_map(|g| sets.map(|set| (g, set)))
            .map(|(g, (family, kind, set, which))| {
                let nodes = g.nodes.iter().filter(|n| addr_family(n) == family).map(|n| Element::Net(IpNet::from(*n)));
                let comment = format!("the cluster's nodes ({which}VXLAN sources)");
                self.rs.sets.insert(set.into(), NamedSet { kind, elements: nodes.collect(), comment });
                NftRule {
                    conds: vec![
                        Cond::L4Proto { proto: 17, negate: false },
                        Cond::Ports { side: Side::Destination, ranges: vec![(g.port, g.port)], negate: false },
                        Cond::Addr { family, side: Side::Source, target: AddrMatch::Set(set.into()), negate: true },
                    ],
                    counter: true,
                    verdict: Some(Verdict::Drop),
                    comment: Some(format!("{which}VXLAN not from a cluster node")),
                    ..NftRule::default()
                }
            })
            .collect();
        let guards = vxlan.len();
        // Tunnel packets from pods: dropped wherever they go (to another
        // node through the host, or to the host itself).
        let no_tunnels_from_pods = || {
            let drop = |conds: Vec<Cond>, what: &str| NftRule {
                conds: [pods(Side::Source)].into_iter().chain(conds).collect(),
                counter: true,
                verdict: Some(Verdict::Drop),
                comment: Some(format!("{what} from a pod")),
                ..NftRule::default()
            };
            let port = host.vxlan_port;
            [
                drop(
                    vec![
                        Cond::L4Proto { proto: 17, negate: false },
                        Cond::Ports { side: Side::Destination, ranges: vec![(port, port)], negate: false },
                    ],
                    "VXLAN",
                ),
                drop(vec![Cond::L4Proto { proto: 4, negate: false }], "IP-in-IP"),
            ]
        };
        let chains: [(&str, Hook, i32, Vec<NftRule>); 4] = [
            (
                "forward-from-workload",
                Hook::Forward,
                0,
                no_tunnels_from_pods()
                    .into_iter()
                    .chain([
                        established(),
                        rule(vec![Cond::CtState(INVALID)], Verdict::Drop),
                        vmap(Side::Source, MAP_WORKLOAD_FROM),
                        vmap(Side::Source, MAP_HOST_FORWARD_IN),
                    ])
                    .chain(forward_jumps(Direction::Ingress, Side::Source))
                    .collect(),
            ),
            (
                "forward-to-workload",
                Hook::Forward,
                1,
                [
                    established(),
                    vmap(Side::Destination, MAP_WORKLOAD_TO),
                    vmap(Side::Destination, MAP_HOST_FORWARD_OUT),
                ]
                .into_iter()
                .chain(forward_jumps(Direction::Egress, Side::Destination))
                .collect(),
            ),
            (
                "input",
                Hook::Input,
                0,
                vxlan
                    .into_iter()
                    .chain(no_tunnels_from_pods())
                    .chain([established(), ndp(), vmap(Side::Source, MAP_WORKLOAD_FROM)])
                    .chain(to_host)
                    .chain([rule(vec![iface(Side::Source, "lo")], Verdict::Accept)])
                    .chain(failsafe(&host.failsafe_in, Side::Source, "failsafe in"))
                    .chain([vmap(Side::Source, MAP_HOST_IN)])
                    .chain(jumps(Direction::Ingress))
                    .collect(),
            ),
            (
                "output",
                Hook::Output,
                0,
                [
                    established(),
                    vmap(Side::Destination, MAP_WORKLOAD_TO),
                    rule(vec![pods(Side::Destination)], Verdict::Accept),
                    rule(vec![iface(Side::Destination, "lo")], Verdict::Accept),
                ]
                .into_iter()
                .chain(failsafe(&host.failsafe_out, Side::Destination, "failsafe out"))
                .chain([vmap(Side::Destination, MAP_HOST_OUT)])
                .chain(jumps(Direction::Egress))
                .collect(),
            ),
        ];
        for (name, hook, prio, mut rules) in chains {
            if !self.ipv6 {
                // ipv6Support off: IPv6 is not policed at all, but for the
                // VXLAN guard (our own device would take what it let in).
                let at = if name == "input" { guards } else { 0 };
                rules.insert(at, rule(vec![Cond::NfProto(Family::V6)], Verdict::Accept));
            }
            self.rs.chains.insert(name.into(), Chain { hook: Some((hook, prio)), rules });
        }
        if host.endpoint_to_host == EndpointToHost::Drop {
            // After the pod's egress policy (an `accept` there ends only
            // that chain), as Calico drops it after the policy allowed it.
            let drop = NftRule {
                conds: vec![pods(Side::Source)],
                counter: true,
                verdict: Some(Verdict::Drop),
                comment: Some("defaultEndpointToHostAction Drop".into()),
                ..NftRule::default()
            };
            let mut rules = vec![established(), ndp(), drop];
            if !self.ipv6 {
                rules.insert(0, rule(vec![Cond::NfProto(Family::V6)], Verdict::Accept));
            }
            self.rs.chains.insert("input-from-workload".into(), Chain { hook: Some((Hook::Input, 1)), rules });
        }
    }

    /// Calico's natOutgoing: traffic from a pool with it on to anywhere
    /// outside every pool leaves with the node's address.
    fn nat_outgoing(&mut self, nat: &NatOutgoing) {
        let mut rules = Vec::new();
        for family in [Family::V4, Family::V6].into_iter().filter(|f| self.ipv6 || *f == Family::V4) {
            let of = |nets: &[IpNet]| nets.iter().copied().filter(|n| net_family(n) == family).collect::<Vec<_>>();
            let from = of(&nat.masquerade);
            if from.is_empty() {
                continue;
            }
            let mut conds =
                vec![Cond::Addr { family, side: Side::Source, target: AddrMatch::Nets(from), negate: false }];
            let pools = of(&nat.pools);
            if !pools.is_empty() {
                conds.push(Cond::Addr {
                    family,
                    side: Side::Destination,
                    target: AddrMatch::Nets(pools),
                    negate: true,
                });
            }
            let verdict = match nat.address {
                Some(a) if addr_family(&a) == family => Verdict::Snat(a),
                _ => Verdict::Masquerade,
            };
            let comment = Some(format!("natOutgoing {}", if family == Family::V4 { "IPv4" } else { "IPv6" }));
            rules.push(NftRule { conds, counter: true, verdict: Some(verdict), comment, ..NftRule::default() });
        }
        if !rules.is_empty() {
            self.rs.chains.insert("nat-outgoing".into(), Chain { hook: Some((Hook::Postrouting, 100)), rules });
        }
    }
}

/// Failsafe rules: one per protocol and remote network, its ports in a set.
fn failsafe(ports: &[Failsafe], side: Side, what: &str) -> Vec<NftRule> {
    let mut groups: BTreeMap<(u8, Option<IpNet>), Vec<u16>> = BTreeMap::new();
    for f in ports {
        groups.entry((f.protocol, f.net)).or_default().push(f.port);
    }
    groups
        .into_iter()
        .map(|((proto, net), ports)| {
            // `side` is the remote end: the source of what comes in, the destination of what goes out.
            let mut conds: Vec<Cond> = net
                .map(|n| Cond::Addr { family: net_family(&n), side, target: AddrMatch::Nets(vec![n]), negate: false })
                .into_iter()
                .collect();
            conds.push(Cond::DportIn { proto, ports });
            let name = if proto == 6 { "tcp" } else { "udp" };
            let to = net.map(|n| format!(" {n}")).unwrap_or_default();
            NftRule {
                conds,
                counter: true,
                verdict: Some(Verdict::Accept),
                comment: Some(format!("{what} {name}{to}")),
                ..NftRule::default()
            }
        })
        .collect()
}

/// Networks with every one that another covers left out (nft refuses
/// overlapping intervals in a set).
fn disjoint(mut nets: Vec<IpNet>) -> Vec<IpNet> {
    nets.sort_by_key(|n| (n.network(), n.prefix_len()));
    let mut out: Vec<IpNet> = Vec::with_capacity(nets.len());
    for n in nets {
        if !out.last().is_some_and(|last| last.contains(&n)) {
            out.push(n);
        }
    }
    out
}

/// The address families a rule needs a variant for; `None`: one rule that
/// matches no address. Empty when the rule can match nothing.
fn families(r: &PolicyRule) -> Vec<Option<Family>> {
    let sides = [&r.source, &r.destination];
    let addressed = sides
        .iter()
        .any(|e| !e.nets.is_empty() || !e.not_nets.is_empty() || e.selector.is_some() || e.not_selector.is_some());
    let mut fams = match r.ip_version {
        Some(4) => vec![Family::V4],
        Some(6) => vec![Family::V6],
        _ => vec![Family::V4, Family::V6],
    };
    if r.icmp.is_some() || r.not_icmp.is_some() {
        fams.retain(|f| *f == if r.protocol == Some(58) { Family::V6 } else { Family::V4 });
    }
    // `nets` of one family only: the other family's packets never match.
    fams.retain(|f| sides.iter().all(|e| e.nets.is_empty() || e.nets.iter().any(|n| net_family(n) == *f)));
    if !addressed && r.ip_version.is_none() && !fams.is_empty() {
        return vec![None];
    }
    fams.into_iter().map(Some).collect()
}

/// The chain of a policy's rules for one direction.
pub fn policy_chain_name(dir: Direction, policy: &impl std::fmt::Display) -> String {
    bounded(format!("pol-{}-{policy}", short(dir)))
}

/// nft keeps at most 128 octets of a comment: longer ones are cut here, so
/// the compiled comment is the one the kernel lists.
const COMMENT_MAX: usize = 128;
/// Chain names are kept well inside the kernel's 256-octet limit.
const NAME_MAX: usize = 200;

fn comment(mut s: String) -> String {
    truncate(&mut s, COMMENT_MAX);
    s
}

/// A chain name that fits: a long one keeps its start and gets a hash of
/// the whole so two long names never collide.
fn bounded(name: String) -> String {
    if name.len() <= NAME_MAX {
        return name;
    }
    let hash = fnv1a(name.as_bytes());
    let mut head = name;
    truncate(&mut head, NAME_MAX - 17);
    format!("{head}-{hash:016x}")
}

fn short(dir: Direction) -> &'static str {
    match dir {
        Direction::Ingress => "in",
        Direction::Egress => "out",
    }
}

fn net_family(n: &IpNet) -> Family {
    if matches!(n, IpNet::V4(_)) { Family::V4 } else { Family::V6 }
}

fn addr_family(a: &IpAddr) -> Family {
    if a.is_ipv4() { Family::V4 } else { Family::V6 }
}

/// FNV-1a, 64 bits: a stable short name for a selector's set.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
#[path = "compile_tests.rs"]
mod tests;
