//! `tortie status`, `tortie bgp peers|routes` and `--all-nodes` against
//! running daemons; BGPPeers added to and removed from a running cluster;
//! the API socket is root's only.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::process::Command;

use common::{Cluster, wait_routes, wait_until};
use serde_json::Value;
use tortie_lab::peers::{BgpPeer, Bird, Neighbor, Speaker};

fn run_dir(c: &Cluster, i: usize) -> String {
    c.nodes[i].dir().join("run").display().to_string()
}

/// The body of a GET on a daemon's API socket.
fn raw_get(run_dir: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(format!("{run_dir}/tortie.sock")).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n").unwrap().1.to_string()
}

fn status_json(c: &Cluster, i: usize) -> Value {
    serde_json::from_str(&c.tortie(&["status", "--run-dir", &run_dir(c, i), "-o", "json"], "")).unwrap()
}

fn peer<'a>(status: &'a Value, addr: &str) -> Option<&'a Value> {
    status["peers"].as_array().unwrap().iter().find(|p| p["address"] == addr)
}

#[test]
fn status_shows_sessions_and_peers_come_and_go_without_touching_the_others() {
    let c = Cluster::new("status", 2);
    let _a = c.pod(0, "a1", "198.18.0.1");
    let d1 = c.start(0);
    // n2 logs in JSON (one object per line, for a log collector).
    let d2 = c.start_with(1, &["--log-json"]);
    wait_routes(
        &c.nodes[0],
        &["198.18.0.1 dev tortiea1 scope link", "blackhole 198.18.0.0/26", "198.18.0.64/26 via 192.0.2.2 dev eth0"],
        &d1,
    );
    wait_until("n1 to count n2's prefix", || {
        peer(&status_json(&c, 0), "192.0.2.2")
            .is_some_and(|p| p["prefixes_received"] == 1 && p["prefixes_advertised"] == 1)
    });

    let table = c.tortie(&["status", "--run-dir", &run_dir(&c, 0)], "");
    assert!(table.starts_with("tortie process is running.\n\nIPv4 BGP status\n+"), "{table}");
    let row = table.lines().find(|l| l.contains("192.0.2.2")).unwrap();
    assert!(
        row.contains("| node-to-node mesh |") && row.contains("| up ") && row.contains("| Established |"),
        "{table}"
    );
    assert!(table.ends_with("IPv6 BGP status\nNo IPv6 peers found.\n"), "{table}");
    let alias = c.tortie(&["node", "status", "--run-dir", &run_dir(&c, 0)], "");
    assert_eq!(alias.lines().count(), table.lines().count());

    let peers = c.tortie(&["bgp", "peers", "192.0.2.2", "--run-dir", &run_dir(&c, 0)], "");
    assert!(peers.contains("Mesh_192_0_2_2") && peers.contains("Neighbor AS:") && peers.contains("64512"), "{peers}");
    assert!(peers.contains("4-octet-as 64512") && peers.contains("graceful-restart 120s ipv4-unicast(F)"), "{peers}");
    let routes = c.tortie(&["bgp", "routes", "198.18.0.64/26", "--run-dir", &run_dir(&c, 0)], "");
    assert!(
        routes.contains("198.18.0.64/26") && routes.contains("via 192.0.2.2") && routes.contains("Mesh_192_0_2_2"),
        "{routes}"
    );
    assert!(routes.contains("ORIGIN: IGP"), "{routes}");

    // Every daemon publishes its summary every 10 s.
    let mut all = String::new();
    wait_until("both nodes' summaries with their mesh session", || {
        all = c.tortie(&["status", "--all-nodes"], "");
        all.matches("| node-to-node mesh | up").count() == 2
    });
    assert!(all.contains("Node n1 (AS 64512") && all.contains("Node n2") && !all.contains("STALE"), "{all}");

    // The API's IPAM summary: the pool and n1's block (the test's pod took no IPAM address).
    let ipam = raw_get(&run_dir(&c, 0), "/ipam");
    let v: Value = serde_json::from_str(&ipam).unwrap();
    assert_eq!(v["pools"][0], serde_json::json!(["198.18.0.0/16", 65536, 0]), "{ipam}");
    assert_eq!(v["blocks"][0], serde_json::json!(["198.18.0.0/26", 64, 0]), "{ipam}");

    // Only root may use the API.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_tortie"), "status", "--run-dir"])
        .arg(run_dir(&c, 0))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("ermission denied"), "{err}");

    // A ToR joins: a node-specific BGPPeer on the running cluster.
    let tor = c.lab.netns("tor").unwrap();
    c.switch.attach(&tor, "eth0").unwrap();
    tor.add_addr("eth0", "192.0.2.100/24".parse().unwrap()).unwrap();
    let speaker = Speaker {
        router_id: "192.0.2.100".parse().unwrap(),
        asn: 65000,
        announce: vec!["203.0.113.0/24".parse().unwrap()],
        neighbors: vec![Neighbor::new("n1", "192.0.2.1".parse().unwrap(), 64512)],
    };
    let bird = Bird::start(&tor, &speaker).unwrap();
    let mesh_since = peer(&status_json(&c, 0), "192.0.2.2").unwrap()["since"].clone();
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {node: n1, peerIP: 192.0.2.100, asNumber: 65000}
",
    );
    wait_until("the ToR session", || {
        peer(&status_json(&c, 0), "192.0.2.100")
            .is_some_and(|p| p["info"] == "Established" && p["peer_type"] == "node specific")
    });
    wait_until("the ToR to learn n1's block", || {
        bird.birdc(&["show", "route", "198.18.0.0/26"]).is_ok_and(|r| r.contains("198.18.0.0/26"))
    });
    assert_eq!(peer(&status_json(&c, 0), "192.0.2.2").unwrap()["since"], mesh_since, "the mesh session was not reset");

    // A BGPFilter on the ToR peer: its route goes, without a session reset; and comes back.
    let tor_route =
        || c.tortie(&["bgp", "routes", "203.0.113.0/24", "--run-dir", &run_dir(&c, 0)], "").contains("via 192.0.2.100");
    wait_until("n1 to learn the ToR's route", tor_route);
    let tor_since = peer(&status_json(&c, 0), "192.0.2.100").unwrap()["since"].clone();
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {name: no-tor-routes}
spec:
  importV4: [{action: Reject, matchOperator: In, cidr: 203.0.113.0/24}]
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {node: n1, peerIP: 192.0.2.100, asNumber: 65000, filters: [no-tor-routes]}
",
    );
    wait_until("the filter to drop the ToR's route", || !tor_route());
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {node: n1, peerIP: 192.0.2.100, asNumber: 65000}
",
    );
    wait_until("the route to return once the filter is gone", tor_route);
    // An export filter on `source: RemotePeers`: the ToR keeps n1's own
    // block and no longer gets the one n1 learned from n2.
    // A failing birdc panics rather than reading as "absent" in the negative wait below.
    let tor_has = |prefix: &str| bird.routes().unwrap().iter().any(|r| r.prefix.to_string() == prefix);
    wait_until("the ToR to learn n2's block through n1", || tor_has("198.18.0.64/26"));
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {name: own-blocks-only}
spec:
  exportV4: [{action: Reject, source: RemotePeers}]
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {node: n1, peerIP: 192.0.2.100, asNumber: 65000, filters: [own-blocks-only]}
",
    );
    wait_until("the filter to withhold n2's block from the ToR", || !tor_has("198.18.0.64/26"));
    assert!(tor_has("198.18.0.0/26"), "n1's own block still goes to the ToR");
    assert_eq!(
        peer(&status_json(&c, 0), "192.0.2.100").unwrap()["since"],
        tor_since,
        "filters never reset the session"
    );

    // Removed: the ToR hears Cease / Administrative Shutdown.
    c.tortie(&["delete", "bgppeer", "tor"], "");
    let mut seen = String::new();
    wait_until("the ToR to hear the Cease", || {
        let p = bird.protocol("n1").unwrap();
        seen = format!("{p:?}");
        p.last_error.is_some_and(|e| e.contains("Administrative shutdown"))
    });
    assert!(peer(&status_json(&c, 0), "192.0.2.100").is_none(), "{seen}");
    assert_eq!(peer(&status_json(&c, 0), "192.0.2.2").unwrap()["since"], mesh_since);

    let log = d2.log();
    let lines: Vec<Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert!(
        lines.iter().any(|l| l["level"] == "INFO" && l["fields"]["message"].as_str().is_some_and(|m| !m.is_empty())),
        "{log}"
    );
}
