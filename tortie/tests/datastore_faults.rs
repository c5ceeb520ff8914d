//! The datastore failing under a running cluster (issue #26): a three-member
//! etcd cluster (real Raft) loses one member, then its majority for 30 s,
//! while one pod pings another on the other node 100 times a second. The
//! data planes keep forwarding untouched, `tortie status` says the
//! datastore is unreachable, a CNI ADD fails with a clear error and leaves
//! nothing behind, and once the members are back every node is in step
//! again with no route or nftables change.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, metric, metrics, wait_routes, wait_until};
use tortie_lab::Netns;

/// What may not change while the datastore is away: tortie's routes and
/// its nftables table, rule handles included.
fn dataplane(node: &Netns) -> (String, String) {
    let routes = node.ip(&["route", "show", "proto", "217"]).unwrap();
    let table = node.exec("nft", &["-a", "list", "table", "inet", "tortie"]).unwrap();
    // The failsafe rules count packets: those numbers move, the rules must not.
    let table = table
        .lines()
        .map(|l| match l.find("counter packets") {
            Some(at) => {
                let rest = &l[at..];
                let end = rest.find(" accept").unwrap_or(rest.len());
                format!("{}counter{}", &l[..at], &rest[end..])
            }
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    (routes, table)
}

/// Kernel and nftables writes the daemon on `node` has made.
fn writes(node: &Netns) -> (f64, f64, f64) {
    let m = metrics(node);
    let w = |name| metric(&m, name);
    (
        w("tortie_route_changes_total"),
        w("tortie_policy_full_applies_total"),
        w("tortie_policy_incremental_applies_total"),
    )
}

#[test]
fn etcd_losing_a_member_or_its_majority_stops_no_packet_and_the_nodes_catch_up() {
    let (c, mut etcd) = Cluster::with_etcd("etcdfault", 2);
    let a = c.pod(0, "a", "198.18.0.1");
    let _b = c.pod(1, "b", "198.18.0.65");
    let (d1, d2) = (c.start(0), c.start(1));
    wait_routes(
        &c.nodes[0],
        &["198.18.0.1 dev tortiea scope link", "blackhole 198.18.0.0/26", "198.18.0.64/26 via 192.0.2.2 dev eth0"],
        &d1,
    );
    wait_routes(
        &c.nodes[1],
        &["198.18.0.65 dev tortieb scope link", "blackhole 198.18.0.64/26", "198.18.0.0/26 via 192.0.2.1 dev eth0"],
        &d2,
    );
    let run = |i: usize| c.nodes[i].dir().join("run").display().to_string();
    let status = |i: usize| c.tortie(&["status", "--run-dir", &run(i)], "");
    wait_until("the mesh up", || status(0).contains("| up "));
    let before: Vec<_> = c.nodes.iter().map(dataplane).collect();
    let written: Vec<_> = c.nodes.iter().map(writes).collect();

    // 100 packets a second from a to b for the whole exercise.
    let ping = Command::new("ip")
        .args(["netns", "exec", a.netns.name(), "ping", "-n", "-q", "-i", "0.01", "198.18.0.65"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    // One member gone: a majority is left, nothing changes.
    etcd.kill(2);
    std::thread::sleep(Duration::from_secs(5));
    assert!(!status(0).contains("UNREACHABLE"), "two of three members answer:\n{}", status(0));
    c.apply("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: still-writable}\nspec: {nets: [203.0.113.0/24]}\n");

    // The majority gone for 30 s.
    etcd.kill(1);
    let lost = Instant::now();
    for i in 0..2 {
        wait_until("status says the datastore is unreachable", || status(i).contains("DATASTORE UNREACHABLE"));
    }
    assert_eq!(metric(&metrics(&c.nodes[0]), "tortie_datastore_reachable"), 0.0);
    let container = c.lab.netns("outage").unwrap();
    let links_before = c.nodes[0].ip(&["-o", "link"]).unwrap().lines().count();
    let (code, out) = c.cni(0, "ADD", "outage-1", &container, None);
    assert_ne!(code, 0, "no address without the datastore: {out}");
    let err: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(err["code"], 11, "CNI 'try again later': {out}");
    assert!(err["msg"].as_str().unwrap().contains("datastore"), "{out}");
    assert_eq!(c.nodes[0].ip(&["-o", "link"]).unwrap().lines().count(), links_before, "no veth left behind");
    assert_eq!(container.ip(&["-o", "link"]).unwrap().lines().count(), 1, "only lo in the container");
    std::thread::sleep(Duration::from_secs(30).saturating_sub(lost.elapsed()));
    let during: Vec<_> = c.nodes.iter().map(dataplane).collect();
    assert_eq!(during, before, "routes and rules untouched while the datastore is away");

    // Members back: every node catches up, writing nothing it did not need to.
    etcd.restart(1).unwrap();
    etcd.restart(2).unwrap();
    for i in 0..2 {
        wait_until("status says nothing of the datastore", || !status(i).contains("UNREACHABLE"));
    }
    std::thread::sleep(Duration::from_secs(3));
    let after: Vec<_> = c.nodes.iter().map(dataplane).collect();
    assert_eq!(after, before);
    let now: Vec<_> = c.nodes.iter().map(writes).collect();
    assert_eq!(now, written, "no kernel route or nftables write for an outage that changed nothing");

    // The pings: not one lost.
    // SAFETY: kill(2) on our own child's pid; SIGINT makes ping print its summary.
    unsafe { libc::kill(ping.id() as i32, libc::SIGINT) };
    let out = String::from_utf8(ping.wait_with_output().unwrap().stdout).unwrap();
    let stats = out.lines().find(|l| l.contains("packets transmitted")).unwrap_or_else(|| panic!("{out}"));
    let sent: u64 = stats.split_whitespace().next().unwrap().parse().unwrap();
    assert!(sent > 2000, "at most 100 a second, at least half that on a busy machine: {stats}");
    assert!(stats.contains(" 0% packet loss"), "{stats}");
}
