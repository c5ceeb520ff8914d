//! Calico's BGPConfiguration and BGPPeer fields on the wire, against FRR:
//! `listenPort` (each node's own, per-node documents over `default`),
//! `bindMode`, `nodeMeshMaxRestartTime` and `maxRestartTime` as the
//! graceful-restart time peers receive (RFC 4724), `sourceAddress: None`,
//! and `numAllowedLocalASNumbers`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{Cluster, our_routes, wait_until};
use tortie_lab::Netns;
use tortie_lab::peers::Frr;

/// FRR in AS 65000 at 192.0.2.100, a neighbour of n1's second address
/// 192.0.2.11 only, announcing 203.0.113.0/25 with our AS 64512 already
/// in its path and 203.0.113.128/25 without.
fn tor(c: &Cluster) -> Frr {
    let ns = c.lab.netns("tor").unwrap();
    c.switch.attach(&ns, "eth0").unwrap();
    ns.add_addr("eth0", "192.0.2.100/24".parse().unwrap()).unwrap();
    let config = "frr defaults traditional
hostname tor
router bgp 65000
 bgp router-id 192.0.2.100
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 192.0.2.11 remote-as 64512
 neighbor 192.0.2.11 timers 3 9
 address-family ipv4 unicast
  network 203.0.113.0/25 route-map ours-inside
  network 203.0.113.128/25
 exit-address-family
route-map ours-inside permit 10
 set as-path prepend 64512
";
    Frr::start_with_config(&ns, "frr-tor", config).unwrap()
}

fn listening(node: &Netns) -> String {
    node.exec("ss", &["-Hltn", "sport", "!=", ":9091"]).unwrap()
}

fn frr_neighbor(frr: &Frr) -> serde_json::Value {
    let out = frr.vtysh("show bgp neighbors 192.0.2.11 json").unwrap();
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["192.0.2.11"].clone()
}

#[test]
fn bgp_configuration_and_peer_fields_reach_the_wire() {
    let c = Cluster::new("bgpconf", 2);
    // n1 dials the ToR from a second address when the source is left to routing.
    c.nodes[0].add_addr("eth0", "192.0.2.11/24".parse().unwrap()).unwrap();
    c.nodes[0].add_route("192.0.2.100/32 dev eth0 src 192.0.2.11").unwrap();
    let frr = tor(&c);
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {listenPort: 1179, nodeMeshMaxRestartTime: 5m0s}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: node.n2}
spec: {listenPort: 2179, bindMode: NodeIP}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {node: n1, peerIP: 192.0.2.100, asNumber: 65000, maxRestartTime: 45s, sourceAddress: None, numAllowedLocalASNumbers: 1}
",
    );
    let (_d1, _d2) = (c.start(0), c.start(1));

    // Each speaker listens where its configuration says.
    wait_until("n1 on *:1179, n2 on 192.0.2.2:2179", || {
        listening(&c.nodes[0]).contains("0.0.0.0:1179") && listening(&c.nodes[1]).contains("192.0.2.2:2179")
    });
    let (l1, l2) = (listening(&c.nodes[0]), listening(&c.nodes[1]));
    assert!(!l1.contains(":179 ") && !l2.contains(":179 "), "nothing on 179:\n{l1}\n{l2}");
    // The mesh: n1 (the lower address) dials n2 at n2's own listenPort.
    let run = |i: usize| c.nodes[i].dir().join("run").display().to_string();
    let peers = |i: usize, addr: &str| c.tortie(&["bgp", "peers", addr, "--run-dir", &run(i)], "");
    wait_until("the mesh session", || peers(0, "192.0.2.2").contains("Established"));
    // What n2 received from n1: the mesh restart time (RFC 4724 §3).
    let seen = peers(1, "192.0.2.1");
    assert!(seen.contains("graceful-restart 300s"), "nodeMeshMaxRestartTime 5m0s:\n{seen}");

    // The ToR knows n1 only as 192.0.2.11: the session proves sourceAddress None.
    wait_until("the ToR session from 192.0.2.11", || frr_neighbor(&frr)["bgpState"] == "Established");
    let n = frr_neighbor(&frr);
    assert_eq!(n["gracefulRestartInfo"]["timers"]["receivedRestartTimer"], 45, "maxRestartTime 45s:\n{n:#}");

    // numAllowedLocalASNumbers 1: a path with our AS once is not a loop.
    let inside = "203.0.113.0/25 via 192.0.2.100 dev eth0";
    let outside = "203.0.113.128/25 via 192.0.2.100 dev eth0";
    wait_until("both ToR routes in n1's kernel", || {
        let r = our_routes(&c.nodes[0]);
        r.iter().any(|l| l.starts_with(inside)) && r.iter().any(|l| l.starts_with(outside))
    });
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {node: n1, peerIP: 192.0.2.100, asNumber: 65000, maxRestartTime: 45s, sourceAddress: None}
",
    );
    wait_until("without it, the path with our AS is a loop (RFC 4271 §9.1.2)", || {
        let r = our_routes(&c.nodes[0]);
        !r.iter().any(|l| l.starts_with(inside)) && r.iter().any(|l| l.starts_with(outside))
    });
}
