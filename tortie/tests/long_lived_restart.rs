//! Long-lived graceful restart (RFC 9494) on the wire: BGPPeer
//! `restartMode: LongLivedGracefulRestart` against FRR (the restarting
//! peer), with GoBGP (speaks LLGR) and BIRD (does not) watching what n1
//! passes on. A peer's routes outlive its restart time only under LLGR,
//! least preferred and tagged LLGR_STALE, sent on only to GoBGP; NO_LLGR
//! routes and the routes of a peer without LLGR go at the restart time;
//! the rest go when the long-lived stale time (`maxRestartTime`) ends.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, our_routes, wait_until};
use tortie_lab::peers::{BgpPeer, Bird, Frr, GoBgp};
use tortie_lab::{Check, Netns, wait_for};

/// FRR's graceful-restart time: the routes' first life.
const RESTART_TIME: u64 = 3;
/// n1's long-lived stale time for tor-a (its `maxRestartTime`), below FRR's.
const STALE_TIME: u64 = 15;

/// LLGR_STALE (RFC 9494 §4.6), as GoBGP prints a community: 65535:6.
const LLGR_STALE: u64 = 0xFFFF_0006;

fn host(c: &Cluster, name: &str, addr: &str) -> Netns {
    let ns = c.lab.netns(name).unwrap();
    c.switch.attach(&ns, "eth0").unwrap();
    ns.add_addr("eth0", format!("{addr}/24").parse().unwrap()).unwrap();
    ns
}

/// An FRR that restarts gracefully within 3 s and offers a long-lived
/// stale time of an hour, announcing `prefix` and `no_llgr` (tagged NO_LLGR).
fn restarting_frr(ns: &Netns, name: &str, addr: &str, asn: u32, prefix: &str, no_llgr: &str) -> Frr {
    let config = format!(
        "frr defaults traditional
hostname {name}
router bgp {asn}
 bgp router-id {addr}
 bgp graceful-restart
 bgp graceful-restart restart-time {RESTART_TIME}
 bgp graceful-restart preserve-fw-state
 bgp long-lived-graceful-restart stale-time 3600
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 192.0.2.1 remote-as 64512
 neighbor 192.0.2.1 timers 3 9
 address-family ipv4 unicast
  network {prefix}
  network {no_llgr} route-map no-llgr
 exit-address-family
route-map no-llgr permit 10
 set community no-llgr
"
    );
    Frr::start_with_config(ns, name, &config).unwrap()
}

/// GoBGP's paths to `prefix`: for each, whether it carries LLGR_STALE.
fn gobgp_paths(gobgp: &GoBgp, prefix: &str) -> Vec<bool> {
    let out = gobgp.gobgp(&["-j", "global", "rib", "-a", "ipv4", prefix]).unwrap_or_default();
    let rib: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let Some(paths) = rib.get(prefix).and_then(|p| p.as_array()) else { return Vec::new() };
    paths
        .iter()
        .map(|p| {
            let attrs = p["attrs"].as_array().cloned().unwrap_or_default();
            attrs.iter().any(|a| {
                a["communities"].as_array().is_some_and(|cs| cs.iter().any(|c| c.as_u64() == Some(LLGR_STALE)))
            })
        })
        .collect()
}

fn bird_has(bird: &Bird, prefix: &str) -> bool {
    bird.routes().unwrap().iter().any(|r| r.prefix.to_string() == prefix)
}

fn in_kernel(c: &Cluster, route: &str) -> bool {
    our_routes(&c.nodes[0]).iter().any(|l| l.starts_with(route))
}

#[test]
fn routes_outlive_the_restart_time_only_under_long_lived_graceful_restart() {
    let c = Cluster::new("llgr", 1);
    c.apply(&format!(
        "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: tor-a}}
spec: {{node: n1, peerIP: 192.0.2.100, asNumber: 65000, restartMode: LongLivedGracefulRestart, maxRestartTime: {STALE_TIME}s}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: tor-b}}
spec: {{node: n1, peerIP: 192.0.2.101, asNumber: 65001}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: gobgp}}
spec: {{node: n1, peerIP: 192.0.2.102, asNumber: 65002, restartMode: LongLivedGracefulRestart}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: bird}}
spec: {{node: n1, peerIP: 192.0.2.103, asNumber: 65003}}
"
    ));
    let (a_ns, b_ns) = (host(&c, "tor-a", "192.0.2.100"), host(&c, "tor-b", "192.0.2.101"));
    let frr_a = restarting_frr(&a_ns, "frr-a", "192.0.2.100", 65000, "203.0.113.0/25", "203.0.113.128/25");
    let frr_b = restarting_frr(&b_ns, "frr-b", "192.0.2.101", 65001, "198.51.100.0/25", "198.51.100.128/25");
    let gobgp = GoBgp::start_with_config(
        &host(&c, "gobgp", "192.0.2.102"),
        "gobgp",
        "[global.config]\n  as = 65002\n  router-id = \"192.0.2.102\"\n  local-address-list = [\"192.0.2.102\"]\n\
         [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"192.0.2.1\"\n    peer-as = 64512\n  \
         [neighbors.graceful-restart.config]\n    enabled = true\n    long-lived-enabled = true\n  \
         [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-unicast\"\n    \
         [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n    \
         [neighbors.afi-safis.long-lived-graceful-restart.config]\n      enabled = true\n      restart-time = 3600\n",
    )
    .unwrap();
    let bird = Bird::start_with_config(
        &host(&c, "bird", "192.0.2.103"),
        "bird",
        "router id 192.0.2.103;\nprotocol device { }\nprotocol bgp n1 {\n  local 192.0.2.103 as 65003;\n  \
         neighbor 192.0.2.1 as 64512;\n  ipv4 { import all; export none; };\n  graceful restart off;\n}\n",
    )
    .unwrap();
    let _daemon = c.start(0);

    let (a_route, a_no_llgr) = ("203.0.113.0/25 via 192.0.2.100", "203.0.113.128/25 via 192.0.2.100");
    let b_route = "198.51.100.0/25 via 192.0.2.101";
    wait_until("both ToRs' routes in n1's kernel, passed on to GoBGP and BIRD", || {
        in_kernel(&c, a_route)
            && in_kernel(&c, a_no_llgr)
            && in_kernel(&c, b_route)
            && gobgp_paths(&gobgp, "203.0.113.0/25") == [false]
            && bird_has(&bird, "203.0.113.0/25")
    });
    // What FRR sees of n1 (RFC 9494 §3): the capability both ways.
    let out = frr_a.vtysh("show bgp neighbors 192.0.2.1 json").unwrap();
    let n: serde_json::Value = serde_json::from_str(&out).unwrap();
    let caps = &n["192.0.2.1"]["neighborCapabilities"];
    assert_eq!(caps["longLivedGracefulRestart"], "advertisedAndReceived", "{caps:#}");

    // Both ToRs die (no NOTIFICATION): graceful restart for both.
    frr_a.bgpd().kill_now();
    frr_b.bgpd().kill_now();
    let died = Instant::now();
    wait_until("past the restart time: tor-b's routes and the NO_LLGR route gone, tor-a's tagged LLGR_STALE", || {
        !in_kernel(&c, b_route)
            && !in_kernel(&c, a_no_llgr)
            && gobgp_paths(&gobgp, "203.0.113.0/25") == [true]
            && !bird_has(&bird, "203.0.113.0/25")
    });
    assert!(died.elapsed() >= Duration::from_secs(RESTART_TIME - 1), "not before the restart time");
    assert!(in_kernel(&c, a_route), "under LLGR, tor-a's route still forwards: {:?}", our_routes(&c.nodes[0]));
    let run = c.nodes[0].dir().join("run").display().to_string();
    let routes = c.tortie(&["bgp", "routes", "203.0.113.0/25", "--run-dir", &run], "");
    assert!(routes.contains("llgr-stale"), "{routes}");
    drop((frr_a, frr_b));

    // tor-a comes back within the stale time: its routes are fresh again everywhere.
    let frr_a = restarting_frr(&a_ns, "frr-a2", "192.0.2.100", 65000, "203.0.113.0/25", "203.0.113.128/25");
    wait_until("tor-a back: its route fresh at GoBGP, and at BIRD again", || {
        in_kernel(&c, a_no_llgr)
            && gobgp_paths(&gobgp, "203.0.113.0/25") == [false]
            && bird_has(&bird, "203.0.113.0/25")
    });

    // It dies again and stays away: its routes go when the stale time ends.
    frr_a.bgpd().kill_now();
    let died = Instant::now();
    let gone = || Ok(if in_kernel(&c, a_route) { Check::Pending(String::new()) } else { Check::Done(()) });
    wait_for("tor-a's route gone after its restart and long-lived stale times", Duration::from_secs(60), gone).unwrap();
    let kept = died.elapsed();
    assert!(kept >= Duration::from_secs(RESTART_TIME + STALE_TIME - 1), "kept {kept:?}");
    assert!(gobgp_paths(&gobgp, "203.0.113.0/25").is_empty(), "withdrawn from GoBGP too");
}
