//! Route reflection, Calico's way: two nodes with the same
//! `routeReflectorClusterID`, the mesh off, a BGPPeer that peers every node
//! with the reflectors, a BIRD client and an FRR outside the AS. Every
//! client learns every other client's block with ORIGINATOR_ID and
//! CLUSTER_LIST (checked in tortie, BIRD and FRR); the two reflectors do not
//! loop; with one reflector gone, the routes stay and pods still reach each
//! other. Also: a dedicated reflector process, and dynamic neighbours.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{Cluster, addr, block, wait_routes, wait_until};
use serde_json::Value;
use tortie_lab::peers::{BgpPeer, Bird, Frr, Neighbor, Speaker};

const CLUSTER_ID: &str = "203.0.113.250";
const NODES: usize = 6;

fn node_yaml(i: usize) -> String {
    let rr = i < 2;
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: n{}{}}}\nspec: {{bgp: {{ipv4Address: 192.0.2.{}/24{}}}}}\n",
        i + 1,
        if rr { ", labels: {route-reflector: \"true\"}" } else { "" },
        i + 1,
        if rr { format!(", routeReflectorClusterID: {CLUSTER_ID}") } else { String::new() }
    )
}

/// Waits until node `i` of `nodes` has a route to every other node's block,
/// its own blackhole, and `extra`.
fn wait_blocks(c: &Cluster, i: usize, nodes: usize, extra: &[&str], daemon: &tortie_lab::Daemon) {
    let mut want: Vec<String> =
        (0..nodes).filter(|j| *j != i).map(|j| format!("{} via 192.0.2.{} dev eth0", block(j), j + 1)).collect();
    want.push(format!("blackhole {}", block(i)));
    want.extend(extra.iter().map(|s| s.to_string()));
    wait_routes(&c.nodes[i], &want.iter().map(String::as_str).collect::<Vec<_>>(), daemon);
}

/// The BIRD client's prefix, which every node of the first test learns.
const BIRD_ROUTE: &str = "203.0.113.0/24 via 192.0.2.100 dev eth0";

/// No node-to-node mesh: sessions come from BGPPeers alone.
const MESH_OFF: &str = "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: false}
---
";

/// Every node peers with every node labelled `route-reflector`.
const TO_REFLECTORS: &str = "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: to-reflectors}
spec: {nodeSelector: all(), peerSelector: has(route-reflector)}
---
";

#[test]
fn two_reflectors_in_one_cluster_serve_four_clients_without_loops_and_survive_one_loss() {
    let c = Cluster::new("reflector", NODES);
    let mut yaml = [
        MESH_OFF,
        TO_REFLECTORS,
        "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: bird-client}
spec: {nodeSelector: has(route-reflector), peerIP: 192.0.2.100, asNumber: 64512}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: frr-ebgp}
spec: {nodeSelector: has(route-reflector), peerIP: 192.0.2.101, asNumber: 65000}
",
    ]
    .concat();
    (0..NODES).for_each(|i| yaml += &node_yaml(i));
    // A BIRD client (iBGP, announcing 203.0.113.0/24) and an FRR outside the AS (eBGP).
    let bird_ns = c.lab.netns("bird").unwrap();
    c.switch.attach(&bird_ns, "eth0").unwrap();
    bird_ns.add_addr("eth0", "192.0.2.100/24".parse().unwrap()).unwrap();
    let bird_conf = "router id 192.0.2.100;
protocol device { }
protocol static announced { ipv4; route 203.0.113.0/24 blackhole; }
protocol bgp rr1 { local 192.0.2.100 as 64512; neighbor 192.0.2.1 as 64512; direct; ipv4 { import all; export where source = RTS_STATIC; }; graceful restart off; }
protocol bgp rr2 { local 192.0.2.100 as 64512; neighbor 192.0.2.2 as 64512; direct; ipv4 { import all; export where source = RTS_STATIC; }; graceful restart off; }
";
    let bird = Bird::start_with_config(&bird_ns, "bird-client", bird_conf).unwrap();
    let frr_ns = c.lab.netns("frr").unwrap();
    c.switch.attach(&frr_ns, "eth0").unwrap();
    frr_ns.add_addr("eth0", "192.0.2.101/24".parse().unwrap()).unwrap();
    let frr = Frr::start(
        &frr_ns,
        &Speaker {
            router_id: "192.0.2.101".parse().unwrap(),
            asn: 65000,
            announce: Vec::new(),
            neighbors: ["192.0.2.1", "192.0.2.2"].map(|a| Neighbor::new("rr", a.parse().unwrap(), 64512)).to_vec(),
        },
    )
    .unwrap();
    c.apply(&yaml);
    // Pods on two clients: n3 (198.18.0.128/26) and n6 (198.18.1.64/26).
    let a = c.pod(2, "a3", "198.18.0.129");
    let b = c.pod(5, "b6", "198.18.1.65");
    let mut daemons: Vec<_> = (0..NODES).map(|i| c.start(i)).collect();
    let local = |i: usize| -> &'static [&'static str] {
        match i {
            2 => &["198.18.0.129 dev tortiea3 scope link"],
            5 => &["198.18.1.65 dev tortieb6 scope link"],
            _ => &[],
        }
    };
    for (i, d) in daemons.iter().enumerate() {
        wait_blocks(&c, i, NODES, &[&[BIRD_ROUTE][..], local(i)].concat(), d);
    }

    // On a client, n3's block came through both reflectors, stamped by them.
    let run_dir = c.nodes[3].dir().join("run");
    let routes = || c.tortie(&["bgp", "routes", &block(2), "--run-dir", run_dir.to_str().unwrap(), "-o", "json"], "");
    let status = || c.tortie(&["status", "--run-dir", run_dir.to_str().unwrap()], "");
    // Both paths install the same kernel route, so the wait above passes with
    // one: wait for the second reflector's sessions and path too.
    wait_until("both reflectors up on n4", || status().matches("| route reflector | up ").count() == 2);
    wait_until("both reflected paths on n4", || {
        serde_json::from_str::<Value>(&routes()).is_ok_and(|v| v[0]["paths"].as_array().is_some_and(|p| p.len() == 2))
    });
    let json = routes();
    let v: Value = serde_json::from_str(&json).unwrap();
    let paths = v[0]["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 2, "one path per reflector: {json}");
    for p in paths {
        assert_eq!(p["next_hop"], "192.0.2.3", "next hop unchanged: {json}");
        assert_eq!(p["originator_id"], "192.0.2.3", "{json}");
        assert_eq!(p["cluster_list"], serde_json::json!([CLUSTER_ID]), "{json}");
    }
    let status = status();
    assert_eq!(status.matches("| route reflector | up ").count(), 2, "{status}");
    // The reflectors see each other's reflections and drop them (same cluster): no loop,
    // n1 holds n3's block once, straight from n3.
    let rr_dir = c.nodes[0].dir().join("run");
    let json = c.tortie(&["bgp", "routes", &block(2), "--run-dir", rr_dir.to_str().unwrap(), "-o", "json"], "");
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["paths"].as_array().unwrap().len(), 1, "{json}");
    assert!(a.ping(addr("198.18.1.65"), 3, "0.2").unwrap().contains(" 0% packet loss"));

    // The BIRD client learns every node's block, stamped by the reflectors.
    wait_until("BIRD to learn every block", || {
        bird.birdc(&["show", "route", "count"]).is_ok_and(|r| r.contains(&format!("{} of", 2 * NODES + 1)))
    });
    let shown = bird.birdc(&["show", "route", "all", &block(2)]).unwrap();
    assert!(
        shown.contains("BGP.originator_id: 192.0.2.3") && shown.contains(&format!("BGP.cluster_list: {CLUSTER_ID}")),
        "{shown}"
    );
    // …and the clients learn the BIRD client's route through the reflectors.
    let json = c.tortie(&["bgp", "routes", "203.0.113.0/24", "--run-dir", run_dir.to_str().unwrap(), "-o", "json"], "");
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["paths"][0]["originator_id"], "192.0.2.100", "{json}");
    // The eBGP FRR gets every block and the BIRD route, with no RFC 4456 attributes (non-transitive).
    wait_until("FRR to learn every block", || {
        frr.routes().is_ok_and(|r| (0..NODES).all(|i| r.iter().any(|x| x.prefix.to_string() == block(i))))
    });
    let frr_json = frr.vtysh(&format!("show bgp ipv4 unicast {} json", block(2))).unwrap();
    assert!(!frr_json.contains("originatorId") && !frr_json.contains("clusterList"), "{frr_json}");

    // One reflector goes: every route stays, through the other.
    daemons.remove(0).kill_now();
    wait_until("the clients to notice", || {
        let s = c.tortie(&["status", "--run-dir", run_dir.to_str().unwrap()], "");
        s.matches("| route reflector | up ").count() == 1
    });
    for (i, d) in daemons.iter().enumerate().map(|(k, d)| (k + 1, d)) {
        wait_blocks(&c, i, NODES, &[&[BIRD_ROUTE][..], local(i)].concat(), d);
    }
    assert!(b.ping(addr("198.18.0.129"), 3, "0.2").unwrap().contains(" 0% packet loss"));
}

#[test]
fn a_dedicated_reflector_process_serves_nodes_and_installs_nothing() {
    let c = Cluster::new("reflector-run", 4);
    c.apply(
        &[
            MESH_OFF,
            TO_REFLECTORS,
            "apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n4, labels: {route-reflector: \"true\"}}
spec: {bgp: {ipv4Address: 192.0.2.4/24}}
",
        ]
        .concat(),
    );
    let rr_dir = c.nodes[3].dir().join("run");
    let args = ["reflector", "run", "--name", "n4", "--ip", "192.0.2.4/24", "--cluster-id", CLUSTER_ID, "--run-dir"];
    let mut args: Vec<&str> = args.to_vec();
    args.push(rr_dir.to_str().unwrap());
    let rr =
        c.nodes[3].spawn("tortie-rr", env!("CARGO_BIN_EXE_tortie"), &args, &[("TORTIE_DATASTORE", &c.url)]).unwrap();
    let clients: Vec<_> = (0..3).map(|i| c.start(i)).collect();
    for (i, d) in clients.iter().enumerate() {
        wait_blocks(&c, i, 3, &[], d);
    }
    rr.check_running().unwrap();
    assert!(common::our_routes(&c.nodes[3]).is_empty(), "a dedicated reflector installs no routes");
    let status = c.tortie(&["status", "--run-dir", rr_dir.to_str().unwrap()], "");
    assert_eq!(status.matches("| node specific | up ").count(), 3, "{status}");
    let node = c.tortie(&["get", "node", "n4", "-o", "json"], "");
    assert!(node.contains(CLUSTER_ID), "the reflector's Node carries its cluster id: {node}");
}

#[test]
fn a_reflector_with_a_listen_range_needs_no_configuration_per_client() {
    let c = Cluster::new("reflector-range", 4);
    c.apply(
        &[
            MESH_OFF,
            "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: to-reflector}
spec: {nodeSelector: \"!has(route-reflector)\", peerIP: 192.0.2.4, asNumber: 64512}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n4, labels: {route-reflector: \"true\"}}
spec: {bgp: {ipv4Address: 192.0.2.4/24}}
",
        ]
        .concat(),
    );
    let rr_dir = c.nodes[3].dir().join("run");
    let rr_dir_s = rr_dir.to_str().unwrap();
    let args = ["reflector", "run", "--name", "n4", "--ip", "192.0.2.4/24", "--cluster-id", CLUSTER_ID];
    let args = [&args[..], &["--listen-range", "192.0.2.0/24", "--run-dir", rr_dir_s]].concat();
    let rr =
        c.nodes[3].spawn("tortie-rr", env!("CARGO_BIN_EXE_tortie"), &args, &[("TORTIE_DATASTORE", &c.url)]).unwrap();
    let clients: Vec<_> = (0..3).map(|i| c.start(i)).collect();
    for (i, d) in clients.iter().enumerate() {
        wait_blocks(&c, i, 3, &[], d);
    }
    rr.check_running().unwrap();
    let status = c.tortie(&["status", "--run-dir", rr_dir_s], "");
    assert_eq!(status.matches("| dynamic   | up ").count(), 3, "{status}");
}

#[test]
fn a_two_level_reflector_hierarchy_carries_routes_both_ways() {
    let c = Cluster::new("reflector-tiers", 5);
    let upper = "203.0.113.251";
    c.apply(&format!(
        "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {{name: default}}
spec: {{nodeToNodeMeshEnabled: false}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: lower}}
spec: {{nodeSelector: \"group == 'low'\", peerSelector: \"tier == 'low'\"}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: upper}}
spec: {{nodeSelector: \"group == 'top' || tier == 'low'\", peerSelector: \"tier == 'top'\"}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: n1, labels: {{tier: top}}}}
spec: {{bgp: {{ipv4Address: 192.0.2.1/24, routeReflectorClusterID: {upper}}}}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: n2, labels: {{tier: low}}}}
spec: {{bgp: {{ipv4Address: 192.0.2.2/24, routeReflectorClusterID: {CLUSTER_ID}}}}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: n3, labels: {{group: low}}}}
spec: {{bgp: {{ipv4Address: 192.0.2.3/24}}}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: n4, labels: {{group: low}}}}
spec: {{bgp: {{ipv4Address: 192.0.2.4/24}}}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: n5, labels: {{group: top}}}}
spec: {{bgp: {{ipv4Address: 192.0.2.5/24}}}}
"
    ));
    let daemons: Vec<_> = (0..5).map(|i| c.start(i)).collect();
    for (i, d) in daemons.iter().enumerate() {
        wait_blocks(&c, i, 5, &[], d);
    }
    let path = |node: usize, of: usize| {
        let dir = c.nodes[node].dir().join("run");
        let json = c.tortie(&["bgp", "routes", &block(of), "--run-dir", dir.to_str().unwrap(), "-o", "json"], "");
        let v: Value = serde_json::from_str(&json).unwrap();
        v[0]["paths"][0].clone()
    };
    // Up: n3 → lower (n2) → upper (n1) → n5; down: n5 → upper → lower → n3.
    let up = path(4, 2);
    assert_eq!(
        (up["originator_id"].clone(), up["cluster_list"].clone()),
        ("192.0.2.3".into(), serde_json::json!([upper, CLUSTER_ID]))
    );
    let down = path(2, 4);
    assert_eq!(
        (down["originator_id"].clone(), down["cluster_list"].clone()),
        ("192.0.2.5".into(), serde_json::json!([CLUSTER_ID, upper]))
    );
}

#[test]
fn an_ipv6_only_reflector_takes_ipv6_clients_from_its_listen_range() {
    let c = Cluster::new("reflector-v6", 4);
    c.apply(&format!(
        "{MESH_OFF}apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: to-reflector}}
spec: {{nodeSelector: \"!has(route-reflector)\", peerIP: '2001:db8::4', asNumber: 64512}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: n4, labels: {{route-reflector: \"true\"}}}}
spec: {{bgp: {{ipv6Address: '2001:db8::4/64'}}}}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {{name: v6}}
spec: {{cidr: '2001:db8:100::/48'}}
"
    ));
    let blocks = ["2001:db8:100::/122", "2001:db8:100::40/122", "2001:db8:100::80/122"];
    common::block_on(async {
        use tortie_store::kv::Kv as _;
        let kv = tortie_store::Datastore::open(&c.url).await.unwrap();
        for (i, b) in blocks.iter().enumerate() {
            let block = tortie_store::ipam::IpamBlock::new(b.parse().unwrap(), &format!("n{}", i + 1));
            kv.put(&block.key(), serde_json::to_vec(&block).unwrap()).await.unwrap();
        }
    });
    for (i, n) in c.nodes.iter().enumerate() {
        n.ip(&["-6", "addr", "add", &format!("2001:db8::{}/64", i + 1), "dev", "eth0", "nodad"]).unwrap();
    }
    let rr_dir = c.nodes[3].dir().join("run");
    let rr_dir_s = rr_dir.to_str().unwrap();
    let reflector = |range: &str| -> Vec<String> {
        let base = ["reflector", "run", "--name", "n4", "--ip", "none", "--ip6", "2001:db8::4/64", "--cluster-id"];
        let more = [CLUSTER_ID, "--listen-range", range, "--run-dir", rr_dir_s];
        base.iter().chain(&more).map(|s| s.to_string()).collect()
    };
    // A range of a family the reflector has no address of: it stops, naming it.
    let datastore = format!("TORTIE_DATASTORE={}", c.url);
    let args: Vec<String> =
        [datastore, env!("CARGO_BIN_EXE_tortie").to_string()].into_iter().chain(reflector("192.0.2.0/24")).collect();
    let out = c.nodes[3].exec("env", &args);
    let err = format!("{out:?}");
    assert!(err.contains("listen range 192.0.2.0/24 is IPv4 and this node has no IPv4 address"), "{err}");
    let rr = c.nodes[3]
        .spawn("tortie-rr", env!("CARGO_BIN_EXE_tortie"), &reflector("2001:db8::/64"), &[("TORTIE_DATASTORE", &c.url)])
        .unwrap();
    let _clients: Vec<_> =
        (0..3).map(|i| c.start_as(i, "none", &["--ip6", &format!("2001:db8::{}/64", i + 1)])).collect();
    for i in 0..3 {
        wait_until(&format!("n{}'s routes to the other clients' blocks", i + 1), || {
            let have = common::route_lines(&c.nodes[i].ip(&["-6", "route", "show", "proto", "217"]).unwrap())
                .collect::<Vec<_>>()
                .join("\n");
            (0..3)
                .filter(|j| *j != i)
                .all(|j| have.contains(&format!("{} via 2001:db8::{} dev eth0", blocks[j], j + 1)))
        });
    }
    rr.check_running().unwrap();
    let status = c.tortie(&["status", "--run-dir", rr_dir_s], "");
    let v6 = status.split("IPv6 BGP status").nth(1).unwrap();
    assert_eq!(v6.matches("| dynamic   | up ").count(), 3, "{status}");
    assert!(status.contains("No IPv4 peers found"), "{status}");
}
