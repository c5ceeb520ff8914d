//! BFD on the node-to-node mesh (`tortie.io/bfd` on the default
//! BGPConfiguration), three nodes on one link with a pod each: a node that
//! falls silent (all its traffic dropped) is routed around in about a
//! second, not after the BGP hold time, and comes back when it speaks
//! again; a node daemon killed and restarted under a 100/s ping loses
//! nothing, because the BFD helper outlives it and the peers keep its
//! routes by graceful restart.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, our_routes, wait_until};
use tortie_lab::peers::{BgpPeer as _, Frr};
use tortie_lab::{Check, wait_for};

const MESH_BFD: &str = "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
  annotations: {tortie.io/bfd: 'true', tortie.io/bfd-interval: 300ms, tortie.io/bfd-multiplier: '3'}
spec: {nodeToNodeMeshEnabled: true}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pods}
spec: {cidr: 198.18.0.0/16, blockSize: 26, ipipMode: Never}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 192.0.2.100, asNumber: 65000, failureDetectionMode: BFDIfDirectlyConnected}
";

/// FRR at 192.0.2.100 peering with the three nodes, BFD on each session
/// (bgpd registers them with bfdd, 300 ms × 3 by default).
fn tor(c: &Cluster) -> Frr {
    let ns = c.lab.netns("tor").unwrap();
    c.switch.attach(&ns, "eth0").unwrap();
    ns.add_addr("eth0", "192.0.2.100/24".parse().unwrap()).unwrap();
    let mut config = "frr defaults traditional\nhostname tor\nrouter bgp 65000\n bgp router-id 192.0.2.100\n \
                      no bgp ebgp-requires-policy\n"
        .to_string();
    for n in 1..=3 {
        config += &format!(" neighbor 192.0.2.{n} remote-as 64512\n neighbor 192.0.2.{n} bfd\n");
    }
    let mut frr = Frr::start_with_config(&ns, "frr-tor", &config).unwrap();
    frr.start_bfdd(&ns, "bfd\n!\n").unwrap();
    frr
}

fn tor_has(frr: &Frr, prefix: &str) -> bool {
    frr.routes().unwrap().iter().any(|r| r.prefix.to_string() == prefix)
}

fn has_route(c: &Cluster, node: usize, prefix: &str) -> bool {
    our_routes(&c.nodes[node]).iter().any(|r| r.starts_with(prefix))
}

/// Drops every packet in and out of node `i` (as a node that lost power), or stops.
fn silence(c: &Cluster, i: usize, on: bool) {
    let ns = &c.nodes[i];
    if on {
        let rules = "table inet silence {\n chain in { type filter hook prerouting priority -500; policy drop; }\n \
                     chain out { type filter hook output priority -500; policy drop; }\n}\n";
        let file = ns.dir().join("silence.nft");
        std::fs::write(&file, rules).unwrap();
        ns.exec("nft", &["-f", file.to_str().unwrap()]).unwrap();
    } else {
        ns.exec("nft", &["delete", "table", "inet", "silence"]).unwrap();
    }
}

#[test]
fn a_silent_node_is_routed_around_in_a_second_and_a_restarting_daemon_loses_nothing() {
    let c = Cluster::new("bfd", 3);
    c.apply(MESH_BFD);
    let pods: Vec<_> = [("a1", "198.18.0.1"), ("b1", "198.18.0.65"), ("c1", "198.18.0.129")]
        .iter()
        .enumerate()
        .map(|(i, (n, a))| c.pod(i, n, a))
        .collect();
    let frr = tor(&c);
    let mut d: Vec<_> = (0..3).map(|i| c.start(i)).collect();
    let run = |i: usize| c.nodes[i].dir().join("run").display().to_string();
    // Sessions Up on node `i` (0 while its daemon does not answer).
    let up = |i: usize| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tortie"))
            .args(["bfd", "show", "--run-dir", &run(i)])
            .output();
        out.map_or(0, |o| String::from_utf8_lossy(&o.stdout).matches(" Up ").count())
    };
    wait_until("every BFD session up (the other nodes and the ToR)", || (0..3).all(|i| up(i) == 3));
    let status = c.tortie(&["status", "--run-dir", &run(0)], "");
    assert!(status.contains("Established (BFD Up)"), "{status}");
    let m = common::metrics(&c.nodes[0]);
    assert!(m.contains("tortie_bfd_session{peer=\"192.0.2.100\",state=\"Up\"} 1"), "{m}");
    let shown = c.tortie(&["bfd", "show", "--run-dir", &run(0)], "");
    assert!(shown.contains("tx 300 ms") && shown.contains("detect 900 ms"), "{shown}");
    wait_until("n1 and the ToR route to n3's block", || {
        has_route(&c, 0, "198.18.0.128/26 via 192.0.2.3") && tor_has(&frr, "198.18.0.128/26")
    });

    // Steady state: every node's BGP has converged (until then a starting
    // node keeps the routes it learned, as after a restart).
    wait_until("BGP converged on every node", || d.iter().all(|d| d.log().contains("BGP converged")));
    // And the ToR's BFD sessions settled at 300 ms both ways (its bgpd
    // re-registers them as its sessions come up, which may flap them once).
    wait_until("the ToR's BFD sessions up at 300 ms for 2 s", || {
        let out = frr.vtysh("show bfd peers json").unwrap_or_default();
        let peers: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_default();
        peers.len() == 3
            && peers.iter().all(|p| {
                p["status"] == "up" && p["remote-transmit-interval"] == 300 && p["uptime"].as_u64().unwrap_or(0) >= 2
            })
    });
    // n3 falls silent: BFD (300 ms × 3) takes n1's session down, and its routes with it.
    silence(&c, 2, true);
    let silent = Instant::now();
    let (mut n1_took, mut tor_took) = (None, None);
    let dropped = || {
        if n1_took.is_none() && !has_route(&c, 0, "198.18.0.128/26") {
            n1_took = Some(silent.elapsed());
        }
        if tor_took.is_none() && !tor_has(&frr, "198.18.0.128/26") {
            tor_took = Some(silent.elapsed());
        }
        Ok(match (n1_took, tor_took) {
            (Some(_), Some(_)) => Check::Done(()),
            _ => Check::Pending(format!(
                "n1 {n1_took:?} ToR {tor_took:?}; ToR's BFD: {}; ToR's BGP to n3: {}",
                frr.vtysh("show bfd peer 192.0.2.3").unwrap_or_default(),
                frr.vtysh("show bgp summary").unwrap_or_default()
            )),
        })
    };
    wait_for("n1 and the ToR to drop n3's block", Duration::from_secs(20), dropped).unwrap();
    let (n1_took, tor_took) = (n1_took.unwrap(), tor_took.unwrap());
    println!(
        "n3 fell silent: n1 removed its block after {n1_took:?}, FRR after {tor_took:?} (BFD 300 ms x 3; hold time 90 s)"
    );
    assert!(n1_took < Duration::from_secs(5) && tor_took < Duration::from_secs(5), "BFD, not the hold time");
    assert!(d[0].log().contains("BFD: unreachable"), "{}", d[0].log_tail());
    // n3 speaks again: BFD comes up, then BGP, then its routes.
    silence(&c, 2, false);
    wait_until("n3's block back on n1 and the ToR", || {
        has_route(&c, 0, "198.18.0.128/26 via 192.0.2.3") && tor_has(&frr, "198.18.0.128/26")
    });

    // n1's daemon dies (kill -9) under a 100/s ping from n2's pod to n1's:
    // the BFD helper stays, n2 keeps n1's routes by graceful restart.
    let out = std::thread::scope(|s| {
        let ping = s.spawn(|| pods[1].netns.exec("ping", &["-n", "-O", "-c", "1000", "-i", "0.01", "198.18.0.1"]));
        std::thread::sleep(Duration::from_secs(2));
        d[0].kill_now();
        std::thread::sleep(Duration::from_secs(2));
        d[0] = c.start(0);
        ping.join().unwrap().unwrap()
    });
    assert!(out.contains("1000 packets transmitted, 1000 received"), "{out}");
    let n2_lost_n1 = d[1].log().lines().any(|l| l.contains("BFD: unreachable") && l.contains("Mesh_192_0_2_1"));
    assert!(!n2_lost_n1, "n2's BFD session to n1 stayed up:\n{}", d[1].log_tail());
    wait_until("n1's new daemon to see its BFD sessions up", || up(0) == 3);
    let tor_view = frr.vtysh("show bfd peers json").unwrap();
    let peers: Vec<serde_json::Value> = serde_json::from_str(&tor_view).unwrap();
    let n1 = peers.iter().find(|p| p["peer"] == "192.0.2.1").unwrap();
    assert_eq!(n1["status"], "up", "the ToR's BFD session to n1 outlived n1's daemon: {n1}");
}
