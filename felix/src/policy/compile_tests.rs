//! Unit tests of the policy compiler.
use std::collections::BTreeMap;

use tortie_store::resources::{GlobalNetworkPolicySpec, NetworkPolicySpec, WorkloadEndpointSpec, parse_documents};

use super::*;
use crate::policy::model::{Endpoint, Policy};

fn pod(ns: &str, name: &str, node: &str, ip: &str, labels: &[(&str, &str)], ns_labels: &[(&str, &str)]) -> Endpoint {
    let map = |l: &[(&str, &str)]| l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
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
    assert_eq!(rule("{ingress: [{action: Allow, source: {selector: all()}}]}"), [Some(Family::V4), Some(Family::V6)]);
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
    let eps =
        [pod("web", "x", "n1", "198.18.0.1", &[], &[]), pod("web", "y", "n1", "198.18.0.2", &[("role", "worse")], &[])];
    let rs =
        compile(&Inputs { node: "n1", endpoints: &eps, network_sets: &sets, policies: &policies, ..Inputs::default() });
    let set_of = |sel: &str, fam: SetKind| {
        let set = rs.sets.values().find(|s| s.kind == fam && s.comment.ends_with(sel)).unwrap();
        set.elements.iter().map(Element::to_string).collect::<Vec<_>>()
    };
    assert_eq!(set_of("role == 'bad'", SetKind::Ipv4), ["203.0.113.0/24"], "its namespace's sets only; /32 covered");
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
    let rs =
        compile(&Inputs { node: "n1", endpoints: &eps, network_sets: &sets, policies: &policies, ..Inputs::default() });
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
fn the_vxlan_guard_holds_each_familys_nodes_and_comes_first_even_with_ipv6_unpoliced() {
    let nodes: Vec<std::net::IpAddr> =
        ["192.0.2.1", "192.0.2.2", "2001:db8::1"].iter().map(|a| a.parse().unwrap()).collect();
    let with = |ipv6: bool| {
        let vxlan = Some(crate::policy::host::VxlanGuard { port: 4789, nodes: nodes.clone() });
        let host = HostRules { ipv6, vxlan, ..HostRules::default() };
        compile(&Inputs { node: "n1", host, ..Inputs::default() })
    };
    for ipv6 in [true, false] {
        let rs = with(ipv6);
        let v4 = &rs.sets[SET_VXLAN_NODES];
        let v6 = &rs.sets[SET_VXLAN_NODES_V6];
        assert_eq!((v4.kind, v4.elements.len()), (SetKind::Ipv4, 2));
        assert_eq!((v6.kind, v6.elements.len()), (SetKind::Ipv6, 1));
        let input = &rs.chains["input"].rules;
        let guard = |r: &NftRule, family: Family, set: &str| {
            r.verdict == Some(Verdict::Drop)
                && r.conds.iter().any(|c| {
                    matches!(c, Cond::Addr { family: f, target: AddrMatch::Set(s), negate: true, .. } if *f == family && s == set)
                })
        };
        assert!(guard(&input[0], Family::V4, SET_VXLAN_NODES), "ipv6 {ipv6}: {:?}", input[0]);
        assert!(guard(&input[1], Family::V6, SET_VXLAN_NODES_V6), "ipv6 {ipv6}: {:?}", input[1]);
        if !ipv6 {
            assert_eq!(input[2].conds, [Cond::NfProto(Family::V6)], "IPv6 let through only after the guard");
        }
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
    let got = disjoint(nets(&["10.1.2.0/24", "10.0.0.0/8", "10.1.0.0/16", "11.0.0.1/32", "11.0.0.0/31", "10.0.0.0/8"]));
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
        c.rules.iter().position(|r| r.conds.iter().any(|c| matches!(c, Cond::IcmpTypeIn { family: Family::V6, .. })))
    };
    assert!(ndp(later) < Some(later.rules.len() - 1) && ndp(later).is_some());
    let input = &drop.chains["input"];
    let vmap = input.rules.iter().position(|r| matches!(r.verdict, Some(Verdict::Vmap { .. })));
    assert!(ndp(input).is_some() && ndp(input) < vmap);
}

/// A GlobalNetworkPolicy spec from YAML flow text, with Calico's defaults.
fn gnp_spec(spec: &str) -> GlobalNetworkPolicySpec {
    let doc =
        format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: g}}\nspec: {spec}\n");
    match parse_documents(&doc).unwrap().remove(0) {
        tortie_store::resources::Resource::GlobalNetworkPolicy(o) => o.spec,
        _ => unreachable!(),
    }
}
