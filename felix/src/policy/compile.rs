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
        let chains: [(&str, Hook, i32, Vec<NftRule>); 4] = [
            (
                "forward-from-workload",
                Hook::Forward,
                0,
                [
                    established(),
                    rule(vec![Cond::CtState(INVALID)], Verdict::Drop),
                    vmap(Side::Source, MAP_WORKLOAD_FROM),
                    vmap(Side::Source, MAP_HOST_FORWARD_IN),
                ]
                .into_iter()
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
                [established(), ndp(), vmap(Side::Source, MAP_WORKLOAD_FROM)]
                    .into_iter()
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
                // ipv6Support off: IPv6 is not policed at all.
                rules.insert(0, rule(vec![Cond::NfProto(Family::V6)], Verdict::Accept));
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
mod tests {
    use std::collections::BTreeMap;

    use tortie_store::resources::{GlobalNetworkPolicySpec, NetworkPolicySpec, WorkloadEndpointSpec, parse_documents};

    use super::*;
    use crate::policy::model::{Endpoint, Policy};

    fn pod(
        ns: &str,
        name: &str,
        node: &str,
        ip: &str,
        labels: &[(&str, &str)],
        ns_labels: &[(&str, &str)],
    ) -> Endpoint {
        let map =
            |l: &[(&str, &str)]| l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        let spec = WorkloadEndpointSpec {
            node: node.into(),
            interface_name: format!("cali{name}"),
            ip_networks: vec![format!("{ip}/32").parse().unwrap()],
            ..Default::default()
        };
        Endpoint::workload(ns, name, &map(labels), &spec, &map(ns_labels))
    }

    fn parse(yaml: &str) -> Vec<Policy> {
        parse_documents(yaml)
            .unwrap()
            .into_iter()
            .map(|r| match r {
                tortie_store::resources::Resource::NetworkPolicy(o) => {
                    Policy::namespaced(o.metadata.namespace.as_deref().unwrap(), &o.metadata.name, &o.spec).unwrap()
                }
                tortie_store::resources::Resource::GlobalNetworkPolicy(o) => {
                    Policy::global(&o.metadata.name, &o.spec).unwrap()
                }
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn jumps(rs: &Ruleset, chain: &str) -> Vec<String> {
        rs.chains[chain]
            .rules
            .iter()
            .filter_map(|r| match &r.verdict {
                Some(Verdict::Jump(c)) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn policies_apply_in_order_then_name_and_absent_order_is_last() {
        let p = |name: &str, order: Option<f64>| Policy {
            order,
            ..Policy::namespaced("default", name, &NetworkPolicySpec { types: vec![], ..Default::default() }).unwrap()
        };
        let mut policies = vec![p("z", None), p("b", Some(10.0)), p("a", Some(10.0)), p("c", Some(1.5))];
        for x in &mut policies {
            x.ingress = Some(vec![]);
        }
        let rs = compile(&Inputs {
            node: "n1",
            endpoints: &[pod("default", "web", "n1", "198.18.0.1", &[], &[])],
            policies: &policies,
            ..Inputs::default()
        });
        assert_eq!(
            jumps(&rs, "wl-in-caliweb"),
            ["pol-in-default/c", "pol-in-default/a", "pol-in-default/b", "pol-in-default/z"]
        );
        assert_eq!(rs.maps[MAP_WORKLOAD_TO]["caliweb"], "wl-in-caliweb");
        assert!(rs.maps[MAP_WORKLOAD_FROM].is_empty(), "no Egress type: no egress chain");
    }

    #[test]
    fn only_this_nodes_endpoints_get_chains_but_sets_hold_every_nodes_addresses() {
        let policies = parse(
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: default}\nspec:\n  selector: all()\n  ingress: [{action: Allow, source: {selector: role == 'x'}}]\n",
        );
        let eps = [
            pod("default", "a", "n1", "198.18.0.1", &[("role", "x")], &[]),
            pod("default", "b", "n2", "198.18.0.65", &[("role", "x")], &[]),
            pod("other", "c", "n2", "198.18.0.66", &[("role", "x")], &[]),
        ];
        let rs = compile(&Inputs { node: "n1", endpoints: &eps, policies: &policies, ..Inputs::default() });
        assert!(rs.chains.contains_key("wl-in-calia") && !rs.chains.contains_key("wl-in-calib"));
        let v4: Vec<_> = rs.sets.values().filter(|s| s.kind == SetKind::Ipv4).collect();
        assert_eq!(v4.len(), 1);
        let want: Vec<String> = vec!["198.18.0.1".into(), "198.18.0.65".into()];
        assert_eq!(
            v4[0].elements.iter().map(Element::to_string).collect::<Vec<_>>(),
            want,
            "a NetworkPolicy's selector stays in its namespace"
        );
    }

    #[test]
    fn namespace_selectors_match_the_namespace_profile_labels() {
        let policies = parse(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  namespaceSelector: team == 'blue'\n  ingress: [{action: Allow, source: {namespaceSelector: projectcalico.org/name == 'ops'}}]\n",
        );
        let eps = [
            pod("blue-ns", "a", "n1", "198.18.0.1", &[], &[("team", "blue")]),
            pod("red-ns", "b", "n1", "198.18.0.2", &[], &[("team", "red")]),
            pod("ops", "c", "n2", "198.18.0.65", &[], &[]),
        ];
        let rs = compile(&Inputs { node: "n1", endpoints: &eps, policies: &policies, ..Inputs::default() });
        assert!(rs.maps[MAP_WORKLOAD_TO].contains_key("calia") && !rs.maps[MAP_WORKLOAD_TO].contains_key("calib"));
        let members: Vec<_> = rs
            .sets
            .values()
            .filter(|s| s.kind == SetKind::Ipv4)
            .flat_map(|s| s.elements.iter().map(Element::to_string))
            .collect();
        assert_eq!(members, ["198.18.0.65"]);
    }

    #[test]
    fn rules_split_by_address_family_only_when_they_match_addresses() {
        let rule = |yaml: &str| {
            let spec: GlobalNetworkPolicySpec = gnp_spec(yaml);
            let p = Policy::global("g", &spec).unwrap();
            families(&p.ingress.unwrap()[0])
        };
        assert_eq!(rule("{ingress: [{action: Allow, protocol: TCP}]}"), [None]);
        assert_eq!(rule("{ingress: [{action: Allow, source: {nets: [198.18.0.0/16]}}]}"), [Some(Family::V4)]);
        assert_eq!(
            rule("{ingress: [{action: Allow, source: {selector: all()}}]}"),
            [Some(Family::V4), Some(Family::V6)]
        );
        // ICMPv6 with no address: one rule; `icmpv6 type` itself implies IPv6.
        assert_eq!(rule("{ingress: [{action: Allow, protocol: ICMPv6, icmp: {type: 128}}]}"), [None]);
        assert_eq!(
            rule("{ingress: [{action: Allow, ipVersion: 6, source: {nets: [198.18.0.0/16]}}]}"),
            Vec::<Option<Family>>::new()
        );
    }

    #[test]
    fn long_names_fit_the_kernels_limits_and_stay_distinct() {
        let long = |c: char| c.to_string().repeat(240);
        let (a, b) = (
            policy_chain_name(Direction::Ingress, &long('a')),
            policy_chain_name(Direction::Ingress, &format!("{}b", long('a'))),
        );
        assert!(a.len() <= NAME_MAX && b.len() <= NAME_MAX);
        assert_ne!(a, b);
        assert_eq!(policy_chain_name(Direction::Egress, &"ns/p"), "pol-out-ns/p", "short names stay readable");
        assert_eq!(comment("x".repeat(300)).len(), COMMENT_MAX);
    }

    #[test]
    fn rule_selectors_match_network_sets_in_their_scope_and_covered_nets_are_left_out() {
        let policies = parse(
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: web}\nspec:\n  ingress: [{action: Deny, source: {selector: role == 'bad'}}]\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  ingress: [{action: Deny, source: {selector: role == 'worse'}}]\n",
        );
        let labels = |v: &str| BTreeMap::from([("role".to_string(), v.to_string())]);
        let nets = |n: &[&str]| n.iter().map(|x| x.parse().unwrap()).collect::<Vec<IpNet>>();
        let none = BTreeMap::new();
        let sets = [
            NetworkSet::new(Some("web"), "a", &labels("bad"), &nets(&["203.0.113.0/24", "203.0.113.7/32"]), &none),
            NetworkSet::new(Some("db"), "b", &labels("bad"), &nets(&["198.51.100.0/24"]), &none),
            NetworkSet::new(None, "c", &labels("bad"), &nets(&["192.0.2.0/24"]), &none),
            NetworkSet::new(None, "d", &labels("worse"), &nets(&["192.0.2.128/25", "198.51.100.1/32"]), &none),
            NetworkSet::new(Some("db"), "e", &labels("worse"), &nets(&["2001:db8::/48"]), &none),
        ];
        let eps = [
            pod("web", "x", "n1", "198.18.0.1", &[], &[]),
            pod("web", "y", "n1", "198.18.0.2", &[("role", "worse")], &[]),
        ];
        let rs = compile(&Inputs {
            node: "n1",
            endpoints: &eps,
            network_sets: &sets,
            policies: &policies,
            ..Inputs::default()
        });
        let set_of = |sel: &str, fam: SetKind| {
            let set = rs.sets.values().find(|s| s.kind == fam && s.comment.ends_with(sel)).unwrap();
            set.elements.iter().map(Element::to_string).collect::<Vec<_>>()
        };
        assert_eq!(
            set_of("role == 'bad'", SetKind::Ipv4),
            ["203.0.113.0/24"],
            "its namespace's sets only; /32 covered"
        );
        assert_eq!(
            set_of("role == 'worse'", SetKind::Ipv4),
            ["192.0.2.128/25", "198.18.0.2", "198.51.100.1"],
            "a global policy: global sets, every namespace's sets and endpoints"
        );
        assert_eq!(set_of("role == 'worse'", SetKind::Ipv6), ["2001:db8::/48"]);
    }

    #[test]
    fn global_in_a_namespace_selector_takes_what_lives_in_no_namespace() {
        let policies = parse(
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: web}\nspec:\n  ingress: [{action: Deny, source: {namespaceSelector: global(), selector: role == 'bad'}}]\n",
        );
        let labels = BTreeMap::from([("role".to_string(), "bad".to_string())]);
        let nets = |n: &str| vec![n.parse::<IpNet>().unwrap()];
        let none = BTreeMap::new();
        let sets = [
            NetworkSet::new(None, "g", &labels, &nets("192.0.2.0/24"), &none),
            NetworkSet::new(Some("web"), "n", &labels, &nets("198.51.100.0/24"), &none),
        ];
        let eps = [pod("web", "x", "n1", "198.18.0.1", &[("role", "bad")], &[])];
        let rs = compile(&Inputs {
            node: "n1",
            endpoints: &eps,
            network_sets: &sets,
            policies: &policies,
            ..Inputs::default()
        });
        let v4: Vec<String> = rs
            .sets
            .values()
            .filter(|s| s.kind == SetKind::Ipv4 && s.comment.starts_with("namespaces"))
            .flat_map(|s| s.elements.iter().map(Element::to_string))
            .collect();
        assert_eq!(v4, ["192.0.2.0/24"], "the global set only: not the namespace's set nor its pod");
    }

    #[test]
    fn ipv6_support_off_leaves_ipv6_unpoliced_and_compiles_no_ipv6_rule() {
        let policies = parse(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  ingress: [{action: Allow, source: {selector: role == 'x'}}, {action: Deny, source: {nets: ['2001:db8::/32']}}]\n",
        );
        let eps = [pod("web", "x", "n1", "198.18.0.1", &[("role", "x")], &[])];
        let with = |ipv6: bool| {
            let host = HostRules { ipv6, endpoint_to_host: EndpointToHost::Drop, ..HostRules::default() };
            compile(&Inputs { node: "n1", endpoints: &eps, policies: &policies, host, ..Inputs::default() })
        };
        let v6_sets = |rs: &Ruleset| rs.sets.values().filter(|s| s.kind == SetKind::Ipv6).count();
        let v6_addr_rules = |rs: &Ruleset| {
            rs.chains
                .values()
                .flat_map(|c| &c.rules)
                .filter(|r| r.conds.iter().any(|c| matches!(c, Cond::Addr { family: Family::V6, .. })))
                .count()
        };
        let on = with(true);
        assert_eq!((v6_sets(&on), v6_addr_rules(&on)), (1, 2));
        let off = with(false);
        assert_eq!((v6_sets(&off), v6_addr_rules(&off)), (0, 0));
        for (name, chain) in off.chains.iter().filter(|(_, c)| c.hook.is_some()) {
            assert_eq!(chain.rules[0].conds, [Cond::NfProto(Family::V6)], "{name} lets IPv6 through first");
            assert_eq!(chain.rules[0].verdict, Some(Verdict::Accept));
        }
    }

    #[test]
    fn an_all_interfaces_host_endpoint_polices_forwarding_on_every_interface_but_the_pods() {
        let policies = parse(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: edge}\nspec:\n  selector: has(hep)\n  applyOnForward: true\n  ingress: [{action: Allow}]\n",
        );
        let hep = tortie_store::resources::HostEndpointSpec {
            node: "n1".into(),
            interface_name: "*".into(),
            ..Default::default()
        };
        let eps = [Endpoint::host("all", &BTreeMap::from([("hep".to_string(), String::new())]), &hep)];
        let rs = compile(&Inputs { node: "n1", endpoints: &eps, policies: &policies, ..Inputs::default() });
        let jump = rs.chains["forward-from-workload"].rules.last().unwrap();
        assert_eq!(jump.verdict, Some(Verdict::Jump("hostfwd-in-all".into())));
        assert_eq!(
            jump.conds,
            [Cond::IfnameInSet { side: Side::Source, set: SET_WORKLOAD_IFACES.into(), negate: true }],
            "not from a pod"
        );
        assert!(rs.chains.contains_key("hostfwd-in-all") && !rs.chains.contains_key("hostfwd-out-all"), "Ingress only");
    }

    #[test]
    fn disjoint_keeps_only_networks_nothing_else_covers() {
        let nets = |n: &[&str]| n.iter().map(|x| x.parse().unwrap()).collect::<Vec<IpNet>>();
        let got =
            disjoint(nets(&["10.1.2.0/24", "10.0.0.0/8", "10.1.0.0/16", "11.0.0.1/32", "11.0.0.0/31", "10.0.0.0/8"]));
        assert_eq!(got, nets(&["10.0.0.0/8", "11.0.0.0/31"]));
    }

    #[test]
    fn nat_outgoing_leaves_pool_to_pool_traffic_alone_and_uses_the_configured_address() {
        let host = |address: Option<&str>| HostRules {
            nat: NatOutgoing {
                pools: vec!["198.18.0.0/16".parse().unwrap(), "2001:db8:100::/48".parse().unwrap()],
                masquerade: vec!["198.18.0.0/16".parse().unwrap()],
                address: address.map(|a| a.parse().unwrap()),
            },
            ..HostRules::default()
        };
        let rs = compile(&Inputs { node: "n1", host: host(None), ..Inputs::default() });
        let chain = &rs.chains["nat-outgoing"];
        assert_eq!(chain.hook, Some((Hook::Postrouting, 100)));
        assert_eq!(chain.rules.len(), 1, "no IPv6 pool has natOutgoing");
        let r = &chain.rules[0];
        assert_eq!(r.verdict, Some(Verdict::Masquerade));
        assert!(r.conds.contains(&Cond::Addr {
            family: Family::V4,
            side: Side::Destination,
            target: AddrMatch::Nets(vec!["198.18.0.0/16".parse().unwrap()]),
            negate: true
        }));
        let fixed = compile(&Inputs { node: "n1", host: host(Some("192.0.2.9")), ..Inputs::default() });
        assert_eq!(fixed.chains["nat-outgoing"].rules[0].verdict, Some(Verdict::Snat("192.0.2.9".parse().unwrap())));
        assert!(!compile(&Inputs::default()).chains.contains_key("nat-outgoing"), "no pool with natOutgoing: no chain");
    }

    #[test]
    fn endpoint_to_host_action_decides_where_pod_to_host_traffic_goes() {
        let with = |action| {
            let host = HostRules { endpoint_to_host: action, ..HostRules::default() };
            compile(&Inputs { node: "n1", host, ..Inputs::default() })
        };
        let accepts_pods = |rs: &Ruleset| {
            rs.chains["input"]
                .rules
                .iter()
                .any(|r| r.verdict == Some(Verdict::Accept) && matches!(r.conds.as_slice(), [Cond::IfnameInSet { .. }]))
        };
        let accept = with(EndpointToHost::Accept);
        assert!(accepts_pods(&accept) && !accept.chains.contains_key("input-from-workload"));
        let ret = with(EndpointToHost::Return);
        assert!(!accepts_pods(&ret), "Return: host endpoint policy decides");
        let drop = with(EndpointToHost::Drop);
        let later = &drop.chains["input-from-workload"];
        assert_eq!(later.hook, Some((Hook::Input, 1)), "after the pod's egress policy");
        assert_eq!(later.rules.last().unwrap().verdict, Some(Verdict::Drop));
        // IPv6 neighbour discovery with the host passes before both the
        // pod's policy and the drop.
        let ndp = |c: &Chain| {
            c.rules
                .iter()
                .position(|r| r.conds.iter().any(|c| matches!(c, Cond::IcmpTypeIn { family: Family::V6, .. })))
        };
        assert!(ndp(later) < Some(later.rules.len() - 1) && ndp(later).is_some());
        let input = &drop.chains["input"];
        let vmap = input.rules.iter().position(|r| matches!(r.verdict, Some(Verdict::Vmap { .. })));
        assert!(ndp(input).is_some() && ndp(input) < vmap);
    }

    /// A GlobalNetworkPolicy spec from YAML flow text, with Calico's defaults.
    fn gnp_spec(spec: &str) -> GlobalNetworkPolicySpec {
        let doc = format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: g}}\nspec: {spec}\n"
        );
        match parse_documents(&doc).unwrap().remove(0) {
            tortie_store::resources::Resource::GlobalNetworkPolicy(o) => o.spec,
            _ => unreachable!(),
        }
    }
}
