//! Route reflection, Calico's way: two nodes with the same
//! `routeReflectorClusterID`, the mesh off, a BGPPeer that peers every node
//! with the reflectors. Every client learns every other client's block with
//! ORIGINATOR_ID and CLUSTER_LIST; the two reflectors do not loop; with one
//! reflector gone, the routes stay and pods still reach each other.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{Cluster, addr, block, wait_routes, wait_until};
use serde_json::Value;

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

/// Node `i`'s routes to every other node's block, plus its own blackhole and `local`.
fn routes(i: usize, local: &[&str]) -> Vec<String> {
    let mut want: Vec<String> =
        (0..NODES).filter(|j| *j != i).map(|j| format!("{} via 192.0.2.{} dev eth0", block(j), j + 1)).collect();
    want.push(format!("blackhole {}", block(i)));
    want.extend(local.iter().map(|s| s.to_string()));
    want
}

#[test]
fn two_reflectors_in_one_cluster_serve_four_clients_without_loops_and_survive_one_loss() {
    let c = Cluster::new("reflector", NODES);
    let mut yaml = String::from(
        "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: false}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: to-reflectors}
spec: {nodeSelector: all(), peerSelector: has(route-reflector)}
",
    );
    (0..NODES).for_each(|i| yaml += &node_yaml(i));
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
        let want = routes(i, local(i));
        wait_routes(&c.nodes[i], &want.iter().map(String::as_str).collect::<Vec<_>>(), d);
    }

    // On a client, n3's block came through both reflectors, stamped by them.
    let run_dir = c.nodes[3].dir().join("run");
    let json = c.tortie(&["bgp", "routes", &block(2), "--run-dir", run_dir.to_str().unwrap(), "-o", "json"], "");
    let v: Value = serde_json::from_str(&json).unwrap();
    let paths = v[0]["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 2, "one path per reflector: {json}");
    for p in paths {
        assert_eq!(p["next_hop"], "192.0.2.3", "next hop unchanged: {json}");
        assert_eq!(p["originator_id"], "192.0.2.3", "{json}");
        assert_eq!(p["cluster_list"], serde_json::json!([CLUSTER_ID]), "{json}");
    }
    let status = c.tortie(&["status", "--run-dir", run_dir.to_str().unwrap()], "");
    assert_eq!(status.matches("| route reflector | up ").count(), 2, "{status}");
    // The reflectors see each other's reflections and drop them (same cluster): no loop,
    // n1 holds n3's block once, straight from n3.
    let rr_dir = c.nodes[0].dir().join("run");
    let json = c.tortie(&["bgp", "routes", &block(2), "--run-dir", rr_dir.to_str().unwrap(), "-o", "json"], "");
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["paths"].as_array().unwrap().len(), 1, "{json}");
    assert!(a.ping(addr("198.18.1.65"), 3, "0.2").unwrap().contains(" 0% packet loss"));

    // One reflector goes: every route stays, through the other.
    daemons.remove(0).kill_now();
    wait_until("the clients to notice", || {
        let s = c.tortie(&["status", "--run-dir", run_dir.to_str().unwrap()], "");
        s.matches("| route reflector | up ").count() == 1
    });
    for (i, d) in daemons.iter().enumerate().map(|(k, d)| (k + 1, d)) {
        let want = routes(i, local(i));
        wait_routes(&c.nodes[i], &want.iter().map(String::as_str).collect::<Vec<_>>(), d);
    }
    assert!(b.ping(addr("198.18.0.129"), 3, "0.2").unwrap().contains(" 0% packet loss"));
}

#[test]
fn a_dedicated_reflector_process_serves_nodes_and_installs_nothing() {
    let c = Cluster::new("reflector-run", 4);
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: false}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: to-reflectors}
spec: {nodeSelector: all(), peerSelector: has(route-reflector)}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n4, labels: {route-reflector: \"true\"}}
spec: {bgp: {ipv4Address: 192.0.2.4/24}}
",
    );
    let rr_dir = c.nodes[3].dir().join("run");
    let args = ["reflector", "run", "--name", "n4", "--ip", "192.0.2.4/24", "--cluster-id", CLUSTER_ID, "--run-dir"];
    let mut args: Vec<&str> = args.to_vec();
    args.push(rr_dir.to_str().unwrap());
    let rr =
        c.nodes[3].spawn("tortie-rr", env!("CARGO_BIN_EXE_tortie"), &args, &[("TORTIE_DATASTORE", &c.url)]).unwrap();
    let clients: Vec<_> = (0..3).map(|i| c.start(i)).collect();
    for (i, d) in clients.iter().enumerate() {
        let mut want: Vec<String> =
            (0..3).filter(|j| *j != i).map(|j| format!("{} via 192.0.2.{} dev eth0", block(j), j + 1)).collect();
        want.push(format!("blackhole {}", block(i)));
        wait_routes(&c.nodes[i], &want.iter().map(String::as_str).collect::<Vec<_>>(), d);
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
        "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: false}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: to-reflector}
spec: {nodeSelector: \"!has(route-reflector)\", peerIP: 192.0.2.4, asNumber: 64512}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n4, labels: {route-reflector: \"true\"}}
spec: {bgp: {ipv4Address: 192.0.2.4/24}}
",
    );
    let rr_dir = c.nodes[3].dir().join("run");
    let rr_dir_s = rr_dir.to_str().unwrap();
    let args = ["reflector", "run", "--name", "n4", "--ip", "192.0.2.4/24", "--cluster-id", CLUSTER_ID];
    let args = [&args[..], &["--listen-range", "192.0.2.0/24", "--run-dir", rr_dir_s]].concat();
    let rr =
        c.nodes[3].spawn("tortie-rr", env!("CARGO_BIN_EXE_tortie"), &args, &[("TORTIE_DATASTORE", &c.url)]).unwrap();
    let clients: Vec<_> = (0..3).map(|i| c.start(i)).collect();
    for (i, d) in clients.iter().enumerate() {
        let mut want: Vec<String> =
            (0..3).filter(|j| *j != i).map(|j| format!("{} via 192.0.2.{} dev eth0", block(j), j + 1)).collect();
        want.push(format!("blackhole {}", block(i)));
        wait_routes(&c.nodes[i], &want.iter().map(String::as_str).collect::<Vec<_>>(), d);
    }
    rr.check_running().unwrap();
    let status = c.tortie(&["status", "--run-dir", rr_dir_s], "");
    assert_eq!(status.matches("| dynamic   | up ").count(), 3, "{status}");
}
