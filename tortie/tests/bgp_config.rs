//! Calico's BGPConfiguration and BGPPeer fields on the wire, against FRR:
//! `listenPort` (each node's own, per-node documents over `default`),
//! `bindMode`, `nodeMeshMaxRestartTime` and `maxRestartTime` as the
//! graceful-restart time peers receive (RFC 4724), `sourceAddress: None`,
//! `numAllowedLocalASNumbers`, the speaker's `logSeverityScreen`; service
//! ranges from every node and communities per prefix.

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
    // n1's log level is left to the datastore (no TORTIE_LOG).
    let env = [("TORTIE_DATASTORE", c.url.as_str())];
    let d1 =
        c.nodes[0].spawn_tortie_node("tortie-n1", env!("CARGO_BIN_EXE_tortie"), "n1", &c.addrs[0], &[], &env).unwrap();
    let _d2 = c.start(1);

    // Each speaker listens where its configuration says.
    wait_until("n1 on *:1179, n2 on 192.0.2.2:2179", || {
        listening(&c.nodes[0]).contains("0.0.0.0:1179") && listening(&c.nodes[1]).contains("192.0.2.2:2179")
    });
    let (l1, l2) = (listening(&c.nodes[0]), listening(&c.nodes[1]));
    assert!(!l1.contains(":179 ") && !l2.contains(":179 "), "nothing on 179:\n{l1}\n{l2}");
    // The mesh: n1 (the lower address) dials n2 at n2's own listenPort.
    let run = |i: usize| c.nodes[i].dir().join("run").display().to_string();
    let peers = |i: usize, addr: &str| c.tortie(&["bgp", "peers", addr, "--run-dir", &run(i)], "");
    // Polled with a plain command: until n1 has planned n2, `bgp peers` says there is no such peer.
    wait_until("the mesh session", || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tortie"))
            .args(["bgp", "peers", "192.0.2.2", "--run-dir", &run(0)])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("Established"))
    });
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
    // The speaker's log level: BGPConfiguration logSeverityScreen, per node.
    assert!(d1.log().contains("INFO tortie_bgp::session::peer: session established"), "{}", d1.log_tail());
    c.apply("apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: node.n1}\nspec: {logSeverityScreen: Warning}\n");
    wait_until("n1's speaker at warning level", || d1.log().contains("tortie_bgp=warn"));
    let quiet_from = d1.log().len();
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
    let after = &d1.log()[quiet_from..];
    assert!(after.contains("adding BGP peer"), "the session was replaced:\n{after}");
    assert!(!after.contains("INFO tortie_bgp"), "no speaker info lines at Warning:\n{after}");
}

/// FRR in AS 65000 at 192.0.2.100 peering with both nodes, spreading over
/// equal paths (`maximum-paths`), zebra installing its choice.
fn ecmp_tor(c: &Cluster) -> (Frr, Netns) {
    let ns = c.lab.netns("tor").unwrap();
    c.switch.attach(&ns, "eth0").unwrap();
    ns.add_addr("eth0", "192.0.2.100/24".parse().unwrap()).unwrap();
    let config = "frr defaults traditional
hostname tor
router bgp 65000
 bgp router-id 192.0.2.100
 no bgp ebgp-requires-policy
 neighbor 192.0.2.1 remote-as 64512
 neighbor 192.0.2.2 remote-as 64512
 address-family ipv4 unicast
  maximum-paths 8
 exit-address-family
";
    (Frr::start_with_config(&ns, "frr-tor", config).unwrap(), ns)
}

#[test]
fn service_ranges_from_every_node_and_communities_per_prefix_reach_the_tor() {
    let c = Cluster::new("bgpsvc", 2);
    let (frr, tor) = ecmp_tor(&c);
    let config = "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec:
  serviceClusterIPs: [{cidr: 198.51.100.0/25}]
  serviceExternalIPs: [{cidr: 203.0.113.0/26}]
  communities: [{name: pods, value: '64512:300:100'}]
  prefixAdvertisements: [{cidr: 198.18.0.0/16, communities: [pods, '65000:7']}]
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: node.n2}
spec:
  prefixAdvertisements: [{cidr: 198.18.0.0/16, communities: ['65000:8']}]
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 192.0.2.100, asNumber: 65000}
";
    c.apply(config);
    let (_d1, _d2) = (c.start(0), c.start(1));
    let fib = |prefix: &str| tor.ip(&["route", "show", prefix]).unwrap();
    wait_until("the cluster-IP range over both nodes in the ToR's FIB", || {
        let r = fib("198.51.100.0/25");
        r.contains("nexthop via 192.0.2.1") && r.contains("nexthop via 192.0.2.2")
    });
    let ext = fib("203.0.113.0/26");
    assert!(ext.contains("nexthop via 192.0.2.1") && ext.contains("nexthop via 192.0.2.2"), "{ext}");

    // Each node's block with the communities of the prefixAdvertisements holding it.
    let route = |prefix: &str| frr.vtysh(&format!("show bgp ipv4 unicast {prefix} json")).unwrap();
    wait_until("n1's block with its communities", || {
        let r = route("198.18.0.0/26");
        r.contains("\"65000:7\"") && r.contains("\"64512:300:100\"")
    });
    wait_until("n2's block with its own node's communities", || route("198.18.0.64/26").contains("\"65000:8\""));
    let n2 = route("198.18.0.64/26");
    assert!(!n2.contains("65000:7") && !n2.contains("64512:300:100"), "node.n2 replaces default's list:\n{n2}");
    assert!(!route("198.51.100.0/25").contains("community"), "services are outside 198.18.0.0/16");

    // Live: the external range goes, the cluster range stays.
    c.apply(&config.replace("  serviceExternalIPs: [{cidr: 203.0.113.0/26}]\n", ""));
    wait_until("the external range withdrawn", || fib("203.0.113.0/26").is_empty());
    assert!(fib("198.51.100.0/25").contains("nexthop via"));
}

/// SYNs that reached `addr` in `host` (an nftables counter).
fn syns(host: &Netns, addr: &str) -> u64 {
    let out = host.exec("nft", &["list", "chain", "inet", "count", "syn"]).unwrap();
    let rule = out.lines().find(|l| l.contains(&format!("daddr {addr} "))).unwrap_or_else(|| panic!("{out}"));
    let packets = rule.split_whitespace().skip_while(|w| *w != "packets").nth(1).unwrap();
    packets.parse().unwrap()
}

#[test]
fn hold_time_keepalive_passive_and_back_off_follow_the_bgppeer() {
    let c = Cluster::new("bgptimers", 1);
    let (frr, _tor) = ecmp_tor(&c);
    // Another host, where nothing listens: every dial there is refused.
    let void = c.lab.netns("void").unwrap();
    c.switch.attach(&void, "eth0").unwrap();
    for a in ["192.0.2.101/24", "192.0.2.102/24"] {
        void.add_addr("eth0", a.parse().unwrap()).unwrap();
    }
    for cmd in [
        "add table inet count",
        "add chain inet count syn { type filter hook input priority 0; }",
        "add rule inet count syn ip daddr 192.0.2.101 tcp flags syn counter",
        "add rule inet count syn ip daddr 192.0.2.102 tcp flags syn counter",
    ] {
        void.exec("nft", &[cmd]).unwrap();
    }
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: tor
  annotations: {tortie.io/hold-time: 9s, tortie.io/passive: 'true'}
spec: {peerIP: 192.0.2.100, asNumber: 65000, keepaliveTime: 2s}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: patient
  annotations: {tortie.io/idle-hold-time: 30s, tortie.io/max-idle-hold-time: 1m}
spec: {peerIP: 192.0.2.101, asNumber: 65000}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: eager
  annotations: {tortie.io/idle-hold-time: 1s, tortie.io/max-idle-hold-time: 1s}
spec: {peerIP: 192.0.2.102, asNumber: 65000}
",
    );
    let started = std::time::Instant::now();
    let _d = c.start(0);
    let neighbor = || {
        let out = frr.vtysh("show bgp neighbors 192.0.2.1 json").unwrap();
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["192.0.2.1"].clone()
    };
    wait_until("the ToR's session (it dials: tortie is passive)", || neighbor()["bgpState"] == "Established");
    let n = neighbor();
    assert_eq!(n["bgpTimerHoldTimeMsecs"], 9000, "the hold time tortie proposed wins (the lower):\n{n:#}");
    // Passive: the session's TCP connection came in to n1's port 179.
    let conns = c.nodes[0].exec("ss", &["-Htn", "state", "established", "dport", "!=", ":9091"]).unwrap();
    assert!(conns.contains("192.0.2.1:179 ") && conns.contains("192.0.2.100:"), "{conns}");
    let run = c.nodes[0].dir().join("run").display().to_string();
    let peer = c.tortie(&["bgp", "peers", "192.0.2.100", "--run-dir", &run], "");
    assert!(peer.contains("9 s (keepalive 2 s)"), "keepaliveTime 2s:\n{peer}");

    // Back-off: every dial to .101 and .102 is refused.
    std::thread::sleep(std::time::Duration::from_secs(10).saturating_sub(started.elapsed()));
    let (patient, eager) = (syns(&void, "192.0.2.101"), syns(&void, "192.0.2.102"));
    assert_eq!(patient, 1, "idle-hold-time 30s: one dial in 10 s");
    assert!(eager >= 7, "idle-hold-time 1s, never more than 1s: a dial every second, not 0, 1, 3, 7 s: {eager}");
}

#[test]
fn local_as_number_and_next_hop_mode_reach_the_tor() {
    let c = Cluster::new("bgplocalas", 2);
    let ns = c.lab.netns("tor").unwrap();
    c.switch.attach(&ns, "eth0").unwrap();
    ns.add_addr("eth0", "192.0.2.100/24".parse().unwrap()).unwrap();
    // The ToR knows n1 only by the AS the BGPPeer gives it.
    let frr = Frr::start_with_config(
        &ns,
        "frr-tor",
        "frr defaults traditional\nhostname tor\nrouter bgp 65000\n bgp router-id 192.0.2.100\n \
         no bgp ebgp-requires-policy\n neighbor 192.0.2.1 remote-as 65100\n",
    )
    .unwrap();
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {node: n1, peerIP: 192.0.2.100, asNumber: 65000, localASNumber: 65100, nextHopMode: Keep}
",
    );
    let (_d1, _d2) = (c.start(0), c.start(1));
    let route = |prefix: &str| {
        let out = frr.vtysh(&format!("show bgp ipv4 unicast {prefix} json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    // n2's block, which n1 learned over the mesh: its next hop kept (n2), the path from AS 65100.
    wait_until("n2's block through n1", || route("198.18.0.64/26")["paths"].as_array().is_some_and(|p| !p.is_empty()));
    let r = route("198.18.0.64/26");
    let path = &r["paths"][0];
    assert_eq!(path["nexthops"][0]["ip"], "192.0.2.2", "nextHopMode Keep:\n{r:#}");
    assert_eq!(path["aspath"]["string"], "65100", "localASNumber 65100:\n{r:#}");
}

#[test]
fn bgp_filter_matches_and_operations_reach_the_wire() {
    let c = Cluster::new("bgpfilterops", 1);
    let ns = c.lab.netns("tor").unwrap();
    c.switch.attach(&ns, "eth0").unwrap();
    ns.add_addr("eth0", "192.0.2.100/24".parse().unwrap()).unwrap();
    // The ToR sends three routes: one tagged 65000:666, one through AS 65010, one plain.
    let frr = Frr::start_with_config(
        &ns,
        "frr-tor",
        "frr defaults traditional
hostname tor
router bgp 65000
 bgp router-id 192.0.2.100
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 192.0.2.1 remote-as 64512
 address-family ipv4 unicast
  network 203.0.113.0/26 route-map tagged
  network 203.0.113.64/26 route-map through
  network 203.0.113.128/26
 exit-address-family
route-map tagged permit 10
 set community 65000:666
route-map through permit 10
 set as-path prepend 65010
",
    )
    .unwrap();
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {name: tor-policy}
spec:
  importV4:
  - {action: Reject, communities: {values: ['65000:666']}}
  - {action: Reject, asPathPrefix: [65000, 65010]}
  exportV4:
  - {action: Reject, peerType: iBGP}
  - action: Accept
    cidr: 198.18.0.0/16
    matchOperator: In
    operations:
    - addCommunity: {value: '65000:42'}
    - prependASPath: {prefix: [65010, 65010]}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 192.0.2.100, asNumber: 65000, filters: [tor-policy]}
",
    );
    let _d = c.start(0);
    // Import: the community and the AS-path rules keep two of the three out of the kernel.
    let plain = "203.0.113.128/26 via 192.0.2.100 dev eth0";
    wait_until("the plain route in n1's kernel", || our_routes(&c.nodes[0]).iter().any(|l| l.starts_with(plain)));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let routes = our_routes(&c.nodes[0]);
    assert!(!routes.iter().any(|l| l.starts_with("203.0.113.0/26") || l.starts_with("203.0.113.64/26")), "{routes:?}");
    // Export: n1's block with the community added and the path prepended (the iBGP rule does not apply to eBGP).
    let route = || {
        let out = frr.vtysh("show bgp ipv4 unicast 198.18.0.0/26 json").unwrap();
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    wait_until("n1's block at the ToR", || route()["paths"].as_array().is_some_and(|p| !p.is_empty()));
    let r = route();
    assert_eq!(r["paths"][0]["aspath"]["string"], "64512 65010 65010", "ours first, then the prepend: {r:#}");
    assert_eq!(r["paths"][0]["community"]["string"], "65000:42", "{r:#}");
}
