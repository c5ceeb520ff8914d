//! `tortie lab up` and `tortie lab down` as a newcomer runs them: the lab
//! comes up with every session Established, the ToR holding every node's
//! blocks and every pod reaching every other pod (and, with `--encap vxlan
//! --no-bgp --ipv6`, over both families with no BGP at all); `down` leaves
//! nothing.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::process::Command;

/// Takes the lab down even when an assertion fails.
struct Down;

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_tortie")).args(["lab", "down"]).output();
    }
}

fn tortie(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tortie")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn check_up(out: &str, nodes: usize) {
    // Every node: n − 1 mesh sessions and the ToR, all up.
    assert_eq!(out.matches("tortie process is running.").count(), nodes, "{out}");
    assert_eq!(out.matches("| node-to-node mesh | up ").count(), nodes * (nodes - 1), "{out}");
    assert_eq!(out.matches("| node specific     | up ").count(), nodes, "{out}");
    assert!(!out.contains("| start "), "{out}");
    // The ToR has one block per node.
    let tor_routes = out.lines().filter(|l| l.starts_with("  198.18.0.") && l.contains("/26 via ")).count();
    assert_eq!(tor_routes, nodes, "{out}");
    check_reachability(out, nodes);
    // The service range: a path through every node at the ToR.
    let service = out.split("=== The service range").nth(1).unwrap_or_default().split("===").next().unwrap();
    assert_eq!(service.matches(" via ").count(), nodes, "{out}");
}

/// A dual-stack lab: both families' sessions up, the ToR holding each
/// node's IPv6 block, every pod reaching every other over IPv6 too.
fn check_dual(out: &str, nodes: usize) {
    assert_eq!(out.matches("| node-to-node mesh | up ").count(), 2 * nodes * (nodes - 1), "{out}");
    assert_eq!(out.matches("| node specific     | up ").count(), 2 * nodes, "{out}");
    assert!(!out.contains("| start ") && !out.contains("No IPv6 peers found"), "{out}");
    let tor6 = out.lines().filter(|l| l.starts_with("  2001:db8:100:") && l.contains("/122 via ")).count();
    assert_eq!(tor6, nodes, "the ToR has each node's IPv6 block: {out}");
    assert!(
        out.lines().any(|l| l.starts_with("  2001:db8:200::/112 via 2001:db8:0:")),
        "the IPv6 service range: {out}"
    );
    let pods = 2 * nodes;
    let v6 = out.split("over IPv6 (ping -6").nth(1).unwrap_or_default().split("===").next().unwrap();
    assert_eq!(v6.matches(" ok").count(), pods * (pods - 1), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}

/// Every pod answered every other, and reaches the outside through natOutgoing.
fn check_reachability(out: &str, nodes: usize) {
    let pods = 2 * nodes;
    let matrix =
        out.split("=== Pod-to-pod").nth(1).unwrap_or_default().split("=== Pods to the outside").next().unwrap();
    assert_eq!(matrix.matches(" ok").count(), pods * (pods - 1), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    // Every pod reaches the outside network through natOutgoing.
    let outside = out.split("=== Pods to the outside").nth(1).unwrap_or_default();
    assert_eq!(outside.lines().filter(|l| l.trim_end().ends_with(" ok")).count(), pods, "{out}");
}

fn check_down() {
    let (ok, out) = tortie(&["lab", "down"]);
    assert!(ok && out.contains("lab removed"), "{out}");
    let left = tortie_lab::leftovers::find("tlab-").unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(!std::env::temp_dir().join("tortie-lab/tlab-lab").exists());
}

#[test]
fn lab_up_builds_a_working_cluster_and_lab_down_leaves_nothing() {
    let _guard = Down;
    let (ok, out) = tortie(&["lab", "up", "--nodes", "3"]);
    assert!(ok, "{out}");
    check_up(&out, 3);
    let (ok, again) = tortie(&["lab", "up"]);
    assert!(!ok && again.contains("tortie lab down"), "a second lab is refused: {again}");
    check_down();

    let (ok, out) = tortie(&["lab", "up", "--nodes", "2", "--tor", "bird"]);
    assert!(ok, "{out}");
    check_up(&out, 2);
    check_down();

    // Dual stack, with FRR and with BIRD: sessions over both families,
    // every pod reaching every other over both.
    for (nodes, tor) in [(3, "frr"), (2, "bird")] {
        let (ok, out) = tortie(&["lab", "up", "--nodes", &nodes.to_string(), "--tor", tor, "--ipv6"]);
        assert!(ok, "{out}");
        check_dual(&out, nodes);
        check_down();
    }

    // VXLAN without BGP, dual stack: the nodes route each other's blocks
    // from the datastore, IPv6 across the subnets on the IPv6 device.
    let (ok, out) = tortie(&["lab", "up", "--nodes", "3", "--encap", "vxlan", "--no-bgp", "--ipv6"]);
    assert!(ok, "{out}");
    assert_eq!(out.matches("BGP is disabled (networking backend vxlan)").count(), 3, "{out}");
    assert_eq!(out.matches("VXLAN: kernel device vxlan.calico, vxlan-v6.calico.").count(), 3, "{out}");
    check_reachability(&out, 3);
    let v6 = out.split("over IPv6 (ping -6").nth(1).unwrap_or_default().split("===").next().unwrap();
    assert_eq!(v6.matches(" ok").count(), 6 * 5, "{out}");
    check_down();
    let (ok, out) = tortie(&["lab", "up", "--no-bgp", "--ipv6"]);
    assert!(!ok && out.contains("--ipv6 --no-bgp needs --encap vxlan"), "{out}");
    let (ok, out) = tortie(&["lab", "down"]);
    assert!(ok && out.contains("no lab is up"), "{out}");
}
