//! Dual stack on one node (issue #24, its first part): pods plumbed by
//! `tortie-cni` with an address of each family get their IPv6 /128 routes
//! and their block's blackhole from the node daemon, and reach each other
//! over IPv6 through the node, policy in force; the routes stay across a
//! daemon restart.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{Cluster, wait_until};

/// tortie's IPv6 routes on node `i`, normalised.
fn v6_routes(c: &Cluster, i: usize) -> Vec<String> {
    let out = c.nodes[i].ip(&["-6", "route", "show", "proto", "217"]).unwrap();
    common::route_lines(&out).map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" ")).collect()
}

#[test]
fn dual_stack_pods_on_a_node_are_routed_over_ipv6_and_a_restart_keeps_their_routes() {
    let c = Cluster::new("dual", 1);
    c.apply(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: v6}\nspec: {cidr: '2001:db8:100::/48'}\n",
    );
    let mut d = c.start(0);
    let ipam = serde_json::json!({"type": "calico-ipam", "assign_ipv4": "true", "assign_ipv6": "true"});
    let pods: Vec<_> = (0..2).map(|i| c.lab.netns(&format!("p{i}")).unwrap()).collect();
    let host_ifs: Vec<String> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| {
            let (code, out) = c.cni(0, "ADD", &format!("dual{i}"), pod, Some(ipam.clone()));
            assert_eq!(code, 0, "{out}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            let want = ["2001:db8:100::/128", "2001:db8:100::1/128"][i];
            assert_eq!(v["ips"][1]["address"], want, "{out}");
            v["interfaces"][0]["name"].as_str().unwrap().to_string()
        })
        .collect();
    let want = [
        format!("2001:db8:100:: dev {}", host_ifs[0]),
        format!("2001:db8:100::1 dev {}", host_ifs[1]),
        "blackhole 2001:db8:100::/122".to_string(),
    ];
    wait_until("the pods' IPv6 routes and their block's blackhole", || {
        let have = v6_routes(&c, 0);
        want.iter().all(|w| have.iter().any(|h| h.starts_with(w.as_str())))
    });
    let ping = |from: usize, to: &str| {
        pods[from].exec("ping", &["-6", "-n", "-c", "2", "-i", "0.2", "-W", "2", to]).is_ok_and(|o| o.contains(" 0% "))
    };
    wait_until("pod 0 reaching pod 1 over IPv6", || ping(0, "2001:db8:100::1"));
    assert!(ping(1, "2001:db8:100::"), "and back");

    // A policy that denies the other pod's IPv6 address cuts IPv6 (and only it).
    c.apply(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: no-v6-from-p0}\n\
         spec: {selector: all(), ingress: [{action: Deny, source: {nets: ['2001:db8:100::/128']}}, {action: Allow}]}\n",
    );
    wait_until("the policy to cut pod 0's IPv6", || !ping(0, "2001:db8:100::1"));
    assert!(
        pods[0].exec("ping", &["-n", "-c", "1", "-W", "2", "198.18.0.1"]).is_ok_and(|o| o.contains(" 0% ")),
        "IPv4 still passes"
    );
    c.tortie(&["delete", "globalnetworkpolicy", "no-v6-from-p0"], "");
    wait_until("IPv6 back", || ping(0, "2001:db8:100::1"));

    // kill -9: the routes stay while no daemon runs; the next one keeps them.
    d.kill_now();
    let kept = v6_routes(&c, 0);
    assert!(want.iter().all(|w| kept.iter().any(|h| h.starts_with(w.as_str()))), "{kept:?}");
    assert!(ping(0, "2001:db8:100::1"), "traffic flows with no daemon");
    d = c.start(0);
    wait_until("the new daemon up", || d.log().contains("local API listening"));
    assert!(ping(0, "2001:db8:100::1"));
    let (code, out) = c.cni(0, "DEL", "dual0", &pods[0], Some(ipam.clone()));
    assert_eq!(code, 0, "{out}");
    wait_until("pod 0's IPv6 route to go", || !v6_routes(&c, 0).iter().any(|r| r.starts_with("2001:db8:100:: dev")));
}

#[test]
fn the_mesh_runs_over_ipv6_too_and_pods_on_two_nodes_reach_each_other_over_ipv6() {
    let c = Cluster::new("dual-mesh", 2);
    c.apply(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: v6}\nspec: {cidr: '2001:db8:100::/48'}\n",
    );
    for (i, n) in c.nodes.iter().enumerate() {
        n.ip(&["-6", "addr", "add", &format!("2001:db8::{}/64", i + 1), "dev", "eth0", "nodad"]).unwrap();
    }
    let d: Vec<_> = (0..2).map(|i| c.start_with(i, &["--ip6", &format!("2001:db8::{}/64", i + 1)])).collect();
    let ipam = serde_json::json!({"type": "calico-ipam", "assign_ipv4": "true", "assign_ipv6": "true"});
    let pods: Vec<_> = (0..2).map(|i| c.lab.netns(&format!("p{i}")).unwrap()).collect();
    for (i, pod) in pods.iter().enumerate() {
        let (code, out) = c.cni(i, "ADD", &format!("mesh{i}"), pod, Some(ipam.clone()));
        assert_eq!(code, 0, "{out}");
    }
    // Each node's IPv6 block reaches the other over the IPv6 session, next hop its IPv6 address.
    wait_until("n1's route to n2's IPv6 block", || {
        v6_routes(&c, 0).iter().any(|r| r.starts_with("2001:db8:100::40/122 via 2001:db8::2"))
    });
    wait_until("n2's route to n1's IPv6 block", || {
        v6_routes(&c, 1).iter().any(|r| r.starts_with("2001:db8:100::/122 via 2001:db8::1"))
    });
    let run = c.nodes[0].dir().join("run").display().to_string();
    // Both sessions up. n2 may have refused n1's first IPv4 connection (it
    // came before n2's speaker knew the peer), so n1 may be waiting out its
    // ConnectRetry time (5 s) for that one.
    let sessions_up = || {
        let Some(status) = c.status(&run) else { return false };
        let (v4, v6) = status.split_once("IPv6 BGP status").unwrap();
        let v6_up = v6.contains("| 2001:db8::2 ") && v6.contains("| node-to-node mesh | up ");
        let v4_up = v4.contains("| 192.0.2.2 ") && v4.contains("| up ");
        v4_up && v6_up
    };
    wait_until("n1's IPv4 and IPv6 mesh sessions both up", sessions_up);
    // `tortie bgp routes` shows both families, each with its next hop.
    let routes = c.tortie(&["bgp", "routes", "--run-dir", &run], "");
    assert!(routes.contains("2001:db8:100::40/122 via 2001:db8::2 "), "{routes}");
    assert!(routes.contains("198.18.0.64/26") && routes.contains("via 192.0.2.2 "), "{routes}");
    let ping = |from: usize, to: &str| {
        pods[from].exec("ping", &["-6", "-n", "-c", "2", "-i", "0.2", "-W", "2", to]).is_ok_and(|o| o.contains(" 0% "))
    };
    wait_until("a pod on n1 reaching a pod on n2 over IPv6", || ping(0, "2001:db8:100::40"));
    assert!(ping(1, "2001:db8:100::"), "and back");
    assert!(
        pods[0].exec("ping", &["-n", "-c", "1", "-W", "2", "198.18.0.64"]).is_ok_and(|o| o.contains(" 0% ")),
        "and over IPv4"
    );
    // n1's daemon killed and restarted under a 100/s IPv6 ping to n2's pod:
    // the kernel routes stay, n2 keeps n1's routes (graceful restart), nothing is lost.
    let mut d = d;
    let out = std::thread::scope(|s| {
        let ping = s.spawn(|| pods[0].exec("ping", &["-6", "-n", "-c", "1000", "-i", "0.01", "2001:db8:100::40"]));
        std::thread::sleep(std::time::Duration::from_secs(2));
        d[0].kill_now();
        std::thread::sleep(std::time::Duration::from_secs(3));
        d[0] = c.start_with(0, &["--ip6", "2001:db8::1/64"]);
        ping.join().unwrap().unwrap()
    });
    assert!(out.contains("1000 packets transmitted, 1000 received"), "{out}");
    wait_until("n1's IPv6 session back", || {
        let status = c.status(&run).unwrap_or_default();
        status.split("IPv6 BGP status").nth(1).is_some_and(|v6| v6.contains("| up "))
    });
}

#[test]
fn ipv6_only_nodes_peer_and_route_over_ipv6_alone_and_an_ipv4_peer_is_refused() {
    let c = Cluster::new("v6-only", 2);
    c.apply(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: v6}\nspec: {cidr: '2001:db8:100::/48'}\n---\n\
         apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\n\
         metadata: {name: default, annotations: {tortie.io/bfd: 'true'}}\nspec: {nodeToNodeMeshEnabled: true}\n",
    );
    for (i, n) in c.nodes.iter().enumerate() {
        n.ip(&["-6", "addr", "add", &format!("2001:db8::{}/64", i + 1), "dev", "eth0", "nodad"]).unwrap();
    }
    // Calico's IP=none: no IPv4 address, the router ID from the node name.
    let d: Vec<_> = (0..2).map(|i| c.start_as(i, "none", &["--ip6", &format!("2001:db8::{}/64", i + 1)])).collect();
    wait_until("n1 registered", || c.tortie_output(&["get", "node", "n1"], "").status.success());
    let node = c.tortie(&["get", "node", "n1", "-o", "yaml"], "");
    assert!(node.contains("ipv6Address: 2001:db8::1/64") && !node.contains("ipv4Address"), "{node}");
    let wide = c.tortie(&["get", "nodes", "-o", "wide"], "");
    assert!(wide.contains("IPV6") && wide.contains("2001:db8::1/64"), "{wide}");
    let run = c.nodes[0].dir().join("run").display().to_string();
    wait_until("n1's IPv6 mesh session up", || {
        let status = c.status(&run).unwrap_or_default();
        status.contains("No IPv4 peers found") && status.contains("| 2001:db8::2 ") && status.contains("| up ")
    });
    // BFD runs on the IPv6 session (RFC 5881 over IPv6) and shows in the status.
    wait_until("n1's BFD session with n2 up over IPv6", || {
        let shown = c.tortie(&["bfd", "show", "--run-dir", &run], "");
        shown.lines().any(|l| l.contains("2001:db8::2") && l.contains(" Up "))
    });
    wait_until("the status to show it", || c.status(&run).is_some_and(|s| s.contains("(BFD Up)")));
    let ipam = serde_json::json!({"type": "calico-ipam", "assign_ipv4": "false", "assign_ipv6": "true"});
    let pods: Vec<_> = (0..2).map(|i| c.lab.netns(&format!("p{i}")).unwrap()).collect();
    for (i, pod) in pods.iter().enumerate() {
        let (code, out) = c.cni(i, "ADD", &format!("v6only{i}"), pod, Some(ipam.clone()));
        assert_eq!(code, 0, "{out}");
        assert!(!out.contains("198.18."), "no IPv4 address: {out}");
    }
    wait_until("n1's route to n2's IPv6 block", || {
        v6_routes(&c, 0).iter().any(|r| r.starts_with("2001:db8:100::40/122 via 2001:db8::2"))
    });
    let ping = |from: usize, to: &str| {
        pods[from].exec("ping", &["-6", "-n", "-c", "2", "-i", "0.2", "-W", "2", to]).is_ok_and(|o| o.contains(" 0% "))
    };
    wait_until("a pod on n1 reaching a pod on n2 over IPv6", || ping(0, "2001:db8:100::40"));
    assert!(ping(1, "2001:db8:100::"), "and back");
    // An IPv4 peer for an IPv6-only node: refused at apply, field and value named.
    let peer = |name: &str, node: &str, ip: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: {name}}}\n\
             spec: {{{node}peerIP: {ip}, asNumber: 65000}}\n"
        )
    };
    let out = c.tortie_output(&["apply", "-f", "-"], &peer("tor4", "node: n1, ", "192.0.2.254"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused");
    assert!(
        err.contains("BGPPeer `tor4`") && err.contains("peerIP 192.0.2.254 is IPv4") && err.contains("`n1`"),
        "{err}"
    );
    assert!(!c.tortie(&["get", "bgppeer"], "").contains("tor4"), "nothing stored");
    // One for every node is taken (a dual-stack node could use it), and an
    // IPv6-only node leaves it out, saying why.
    c.apply(&peer("tor4all", "", "192.0.2.254"));
    wait_until("n1 to say why it leaves the IPv4 peer out", || {
        d[0].log().contains("BGPPeer left out: its peerIP is IPv4 and this node has no IPv4 address")
    });
    let status = c.tortie(&["status", "--run-dir", &run], "");
    assert!(status.contains("No IPv4 peers found"), "{status}");
    // A new listenPort: the IPv6 listener moves at the next start, and says so.
    c.apply(
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\n\
         metadata: {name: default, annotations: {tortie.io/bfd: 'true'}}\nspec: {nodeToNodeMeshEnabled: true, listenPort: 1179}\n",
    );
    wait_until("n1 to say its listener moves at the next start", || {
        d[0].log().contains("listenPort or bindMode changed") && d[0].log().contains("[2001:db8::1]:1179")
    });
}
