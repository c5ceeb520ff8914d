//! `tortie node run` on lab nodes: felix turns the datastore into kernel
//! routes, the embedded speakers exchange the nodes' blocks, and pods on
//! different nodes reach each other — also while a daemon is SIGKILLed and
//! restarted.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{Cluster, addr, block_on, our_routes, wait_routes, wait_until};
use tortie_store::Datastore;
use tortie_store::ipam::IpamBlock;
use tortie_store::kv::Kv;

#[test]
fn routes_follow_the_datastore_and_pods_reach_pods_on_other_nodes() {
    let c = Cluster::new("node-routes", 2);
    let a = [c.pod(0, "a1", "198.18.0.1"), c.pod(0, "a2", "198.18.0.2"), c.pod(0, "a3", "198.18.0.3")];
    let b = c.pod(1, "b1", "198.18.0.65");
    c.nodes[0].add_route("198.18.200.0/24 via 192.0.2.9 proto static").unwrap();
    let d1 = c.start(0);
    let d2 = c.start(1);
    wait_routes(
        &c.nodes[0],
        &[
            "198.18.0.1 dev tortiea1 scope link",
            "198.18.0.2 dev tortiea2 scope link",
            "198.18.0.3 dev tortiea3 scope link",
            "blackhole 198.18.0.0/26",
            "198.18.0.64/26 via 192.0.2.2 dev eth0",
        ],
        &d1,
    );
    wait_routes(
        &c.nodes[1],
        &["198.18.0.65 dev tortieb1 scope link", "blackhole 198.18.0.64/26", "198.18.0.0/26 via 192.0.2.1 dev eth0"],
        &d2,
    );
    for pod in &a {
        let out = pod.ping(b.addr, 3, "0.2").unwrap();
        assert!(out.contains(" 0% packet loss"), "{out}");
    }
    let proxy_arp = c.nodes[0].exec("cat", &["/proc/sys/net/ipv4/conf/tortiea1/proxy_arp"]).unwrap();
    assert_eq!(proxy_arp.trim(), "1");

    // A deleted pod's route goes; a stray route with our protocol goes; a foreign one stays.
    c.tortie(&["delete", "workloadendpoint", "a3"], "");
    c.nodes[0].add_route("198.18.100.0/24 dev eth0 proto 217").unwrap();
    wait_routes(
        &c.nodes[0],
        &[
            "198.18.0.1 dev tortiea1 scope link",
            "198.18.0.2 dev tortiea2 scope link",
            "blackhole 198.18.0.0/26",
            "198.18.0.64/26 via 192.0.2.2 dev eth0",
        ],
        &d1,
    );
    let all = c.nodes[0].ip(&["route", "show"]).unwrap();
    assert!(all.contains("198.18.200.0/24 via 192.0.2.9 dev eth0 proto static"), "{all}");
    // A route of ours someone else deletes is written again on the kernel's
    // notice (Calico's routeRefreshInterval, 90 s, is far beyond the wait).
    c.nodes[0].ip(&["route", "del", "198.18.0.2", "dev", "tortiea2"]).unwrap();
    let started = std::time::Instant::now();
    wait_until("the deleted pod route back", || our_routes(&c.nodes[0]).contains("198.18.0.2 dev tortiea2 scope link"));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // The deleted pod's address now falls into the blackhole, not the default route.
    let out = a[0].netns.exec("ping", &["-n", "-c", "1", "-W", "1", "198.18.0.3"]);
    assert!(out.is_err(), "a deleted pod's address must not answer");

    // n2 loses its block: it withdraws it and n1 removes the learned route; n2's
    // pod keeps its address, now outside any of n2's blocks, so n2 announces its /32.
    block_on(async {
        let kv = Datastore::open(&c.url).await.unwrap();
        kv.delete(&IpamBlock::new("198.18.0.64/26".parse().unwrap(), "n2").key()).await.unwrap();
    });
    wait_routes(
        &c.nodes[0],
        &[
            "198.18.0.1 dev tortiea1 scope link",
            "198.18.0.2 dev tortiea2 scope link",
            "blackhole 198.18.0.0/26",
            "198.18.0.65 via 192.0.2.2 dev eth0",
        ],
        &d1,
    );
    assert!(a[0].ping(b.addr, 2, "0.2").unwrap().contains(" 0% packet loss"));
}

#[test]
fn a_daemon_killed_and_restarted_under_a_running_ping_loses_no_packet() {
    let c = Cluster::new("node-restart", 2);
    let a = c.pod(0, "a1", "198.18.0.1");
    let b = c.pod(1, "b1", "198.18.0.65");
    let d1 = c.start(0);
    let d2 = c.start(1);
    let all_a =
        ["198.18.0.1 dev tortiea1 scope link", "blackhole 198.18.0.0/26", "198.18.0.64/26 via 192.0.2.2 dev eth0"];
    wait_routes(&c.nodes[0], &all_a, &d1);
    wait_routes(
        &c.nodes[1],
        &["198.18.0.65 dev tortieb1 scope link", "blackhole 198.18.0.64/26", "198.18.0.0/26 via 192.0.2.1 dev eth0"],
        &d2,
    );
    std::thread::scope(|s| {
        // 8 s of pings, 50 per second, both ways through both nodes' routes.
        let ping = s.spawn(|| a.ping(addr("198.18.0.65"), 400, "0.02"));
        std::thread::sleep(Duration::from_secs(1));
        d1.kill_now();
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(our_routes(&c.nodes[0]).len(), 3, "routes stay while the daemon is down");
        let d1 = c.start(0);
        std::thread::sleep(Duration::from_secs(1));
        d1.check_running().unwrap();
        let out = ping.join().unwrap().unwrap();
        assert!(out.contains("400 received") && out.contains(" 0% packet loss"), "{out}");
        wait_routes(&c.nodes[0], &all_a, &d1);
        assert!(b.ping(addr("198.18.0.1"), 2, "0.2").unwrap().contains(" 0% packet loss"));
        // RFC 4724 §4.1: it knew it restarted and waited for its peer's End-of-RIB
        // (the kernel routes it kept satisfy the wait above before that ends).
        wait_until("the restarted daemon's deferral to end", || d1.log().contains("route selection deferral over"));
        let log = d1.log();
        assert!(log.contains("graceful restart") && log.contains("route selection deferral over"), "{log}");
        assert!(log.contains("every peer sent End-of-RIB"), "{log}");
        // Convergence is the peer's End-of-RIB too, not a timer: felix may drop
        // routes not relearned as soon as it is in (long before the relearn limit).
        wait_until("the restarted daemon to converge", || d1.log().contains("BGP converged: every planned peer"));
        assert!(!d1.log().contains("did not converge in time"), "{}", d1.log());
    });
}

#[test]
fn a_node_holds_a_tunnel_address_from_the_pool_while_the_pool_uses_ipip() {
    let c = Cluster::new("node-tunnel", 1);
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pods}
spec: {cidr: 198.18.0.0/16, blockSize: 26, ipipMode: CrossSubnet}
",
    );
    let tunnel_addr = || {
        let node = c.tortie(&["get", "node", "n1", "-o", "json"], "");
        let v: serde_json::Value = serde_json::from_str(&node).unwrap();
        v["spec"]["bgp"]["ipv4IPIPTunnelAddr"].as_str().map(String::from)
    };
    let d = c.start(0);
    wait_routes(&c.nodes[0], &["blackhole 198.18.0.0/26"], &d);
    // From the node's own block, held under the tunnel handle.
    assert_eq!(tunnel_addr().as_deref(), Some("198.18.0.0"));
    drop(d);
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pods}
spec: {cidr: 198.18.0.0/16, blockSize: 26, ipipMode: Never}
",
    );
    let d = c.start(0);
    wait_routes(&c.nodes[0], &["blackhole 198.18.0.0/26"], &d);
    common::wait_until("the tunnel address to be released", || tunnel_addr().is_none());
    let ipam = c.tortie(&["ipam", "show"], "");
    assert!(ipam.lines().any(|l| l.contains("198.18.0.0/16") && l.contains("| 0 (0%)")), "{ipam}");
}
