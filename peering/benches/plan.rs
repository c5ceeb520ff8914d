//! Planning a large cluster's BGP sessions, pure: 1,000 nodes with the mesh
//! off, 3 route reflectors (`routeReflectorClusterID`), 50 BGPPeers with
//! selectors (47 racks to their ToRs, the clients to the reflectors, the
//! reflectors to each other) and 100 BGPFilters of 10 rules each; the plan
//! of a client node and of a reflector (every client is its session), and
//! the policies of a peer naming all 100 filters. Then one label changes on
//! one node (it moves rack): the plan is made again, and the sessions that
//! differ — what the peer manager touches — are counted.
//!
//! Run: `cargo bench -p tortie-peering --bench plan` (no root needed).

#![allow(clippy::unwrap_used)] // a benchmark: a failure aborts the run

use std::collections::BTreeMap;
use std::time::Instant;

use tortie_peering::{Configs, Me, PlannedPeer, filters, plan};
use tortie_store::resources::{
    BgpConfigurationSpec, BgpFilterRule, BgpFilterSpec, BgpPeerSpec, FilterAction, MatchOperator, Metadata, NodeBgp,
    NodeSpec, Object,
};

const NODES: u32 = 1000;
const RACKS: u32 = 47;

fn object<S>(kind: &str, name: &str, labels: &[(&str, String)], spec: S) -> Object<S> {
    Object {
        api_version: "projectcalico.org/v3".into(),
        kind: kind.into(),
        metadata: Metadata {
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            ..Metadata::default()
        },
        spec,
    }
}

fn node(i: u32, rack: u32) -> Object<NodeSpec> {
    let reflector = i < 3;
    let addr = format!("10.{}.{}.{}/16", i / 65536, (i / 256) % 256, i % 256);
    let mut labels = vec![("rack", format!("r{rack}"))];
    if reflector {
        labels.push(("route-reflector", "true".into()));
    }
    let bgp = NodeBgp {
        ipv4_address: Some(addr.parse().unwrap()),
        route_reflector_cluster_id: reflector.then(|| "192.0.2.250".parse().unwrap()),
        ..NodeBgp::default()
    };
    object("Node", &format!("node{i}"), &labels, NodeSpec { bgp: Some(bgp), ..NodeSpec::default() })
}

fn peers() -> Vec<Object<BgpPeerSpec>> {
    let mut out: Vec<_> = (0..RACKS)
        .map(|r| {
            let spec = BgpPeerSpec {
                node_selector: Some(format!("rack == 'r{r}'")),
                peer_ip: Some(format!("203.0.113.{}", r + 1)),
                as_number: Some(65000 + r),
                filters: (0..100).map(|f| format!("f{f}")).collect(),
                ..BgpPeerSpec::default()
            };
            object("BGPPeer", &format!("tor-r{r}"), &[], spec)
        })
        .collect();
    let selector = |node: &str, peer: &str| BgpPeerSpec {
        node_selector: Some(node.into()),
        peer_selector: Some(peer.into()),
        ..BgpPeerSpec::default()
    };
    out.push(object("BGPPeer", "to-rr", &[], selector("!has(route-reflector)", "has(route-reflector)")));
    out.push(object("BGPPeer", "rr-mesh", &[], selector("has(route-reflector)", "has(route-reflector)")));
    out.push(object(
        "BGPPeer",
        "rr-tor",
        &[],
        BgpPeerSpec {
            node_selector: Some("has(route-reflector)".into()),
            peer_ip: Some("203.0.113.200".into()),
            as_number: Some(65100),
            ..BgpPeerSpec::default()
        },
    ));
    out
}

fn filter_set() -> BTreeMap<String, BgpFilterSpec> {
    (0..100)
        .map(|f| {
            let rules = (0..10)
                .map(|r| BgpFilterRule {
                    cidr: Some(format!("198.18.{}.0/24", (f * 10 + r) % 256).parse().unwrap()),
                    match_operator: Some(MatchOperator::In),
                    ..BgpFilterRule::new(if r % 2 == 0 { FilterAction::Accept } else { FilterAction::Reject })
                })
                .collect::<Vec<_>>();
            (format!("f{f}"), BgpFilterSpec { export_v4: rules.clone(), import_v4: rules, ..BgpFilterSpec::default() })
        })
        .collect()
}

fn me(n: &Object<NodeSpec>) -> Me {
    let bgp = n.spec.bgp.as_ref().unwrap();
    let ipnet::IpNet::V4(a) = bgp.ipv4_address.unwrap() else { unreachable!() };
    Me {
        name: n.metadata.name.clone(),
        address: Some(a.addr()),
        router_id: a.addr(),
        address6: None,
        asn: 64512,
        labels: n.metadata.labels.clone(),
        cluster_id: bgp.route_reflector_cluster_id,
        send_hold: None,
    }
}

/// The median of `rounds` runs of `f`, in milliseconds.
fn time<T>(rounds: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..rounds {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], last.unwrap())
}

fn touched(before: &[PlannedPeer], after: &[PlannedPeer]) -> usize {
    let find = |list: &[PlannedPeer], p: &PlannedPeer| list.iter().any(|q| q.name == p.name && q.same_session(p));
    after.iter().filter(|p| !find(before, p)).count()
        + before.iter().filter(|p| !after.iter().any(|q| q.name == p.name)).count()
}

fn main() {
    let mut nodes: Vec<_> = (0..NODES).map(|i| node(i, i % RACKS)).collect();
    let peers = peers();
    let filters = filter_set();
    let configs = Configs::from(BgpConfigurationSpec {
        node_to_node_mesh_enabled: Some(false),
        ..BgpConfigurationSpec::default()
    });
    let (client, reflector) = (me(&nodes[500]), me(&nodes[0]));
    let (client_ms, client_plan) = time(21, || plan(&client, &configs, &nodes, &peers));
    let (rr_ms, rr_plan) = time(21, || plan(&reflector, &configs, &nodes, &peers));
    let names: Vec<String> = (0..100).map(|f| format!("f{f}")).collect();
    let (policy_ms, _) = time(21, || filters::policies(&names, &filters));

    // Node 500 moves from its rack to another: a new label.
    nodes[500].metadata.labels.insert("rack".into(), "r46".into());
    let moved = me(&nodes[500]);
    let (_, client_after) = time(1, || plan(&moved, &configs, &nodes, &peers));
    let (_, rr_after) = time(1, || plan(&reflector, &configs, &nodes, &peers));

    println!("BGP plan of a 1,000-node cluster (mesh off, 3 reflectors, 50 BGPPeers, 100 BGPFilters), median of 21");
    println!("  a client node:      {client_ms:>7.2} ms  ({} sessions)", client_plan.len());
    println!("  a reflector:        {rr_ms:>7.2} ms  ({} sessions)", rr_plan.len());
    println!("  policies of 100 filters x 10 rules: {policy_ms:>7.3} ms");
    println!(
        "  one label changed (node500 moves rack): sessions touched on node500 {}, on a reflector {}",
        touched(&client_plan, &client_after),
        touched(&rr_plan, &rr_after)
    );
}
