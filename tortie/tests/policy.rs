//! Network policy through the daemon: policies and labels written with
//! `tortie apply` reach every node's nftables table, real connections obey
//! them, a label change is a set-element update, `tortie policy show`
//! counts, a bad policy is refused without disturbing what is enforced, and
//! a deny-all host policy leaves BGP up (failsafe).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Cluster, addr, metric, metrics, wait_routes, wait_until};
use tortie_lab::tcp::{connects, listen};

/// Re-applies pod `name`'s WorkloadEndpoint with `labels`.
fn label(c: &Cluster, node: usize, name: &str, ip: &str, labels: &str) {
    c.apply(&format!(
        "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: {name}, namespace: default, labels: {{{labels}}}}}
spec: {{node: n{}, pod: {name}, endpoint: eth0, interfaceName: tortie{name}, ipNetworks: [{ip}/32]}}
",
        node + 1
    ));
}

const DB_POLICY: &str = "apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: default}
spec:
  selector: app == 'db'
  ingress: [{action: Allow, protocol: TCP, source: {selector: role == 'client'}, destination: {ports: [5432]}}]
";

#[test]
fn policy_follows_labels_across_nodes_is_shown_and_a_bad_policy_changes_nothing() {
    let c = Cluster::new("policy", 2);
    let db = c.pod(0, "db", "198.18.0.1");
    let app = c.pod(1, "app", "198.18.0.65");
    label(&c, 0, "db", "198.18.0.1", "app: db");
    let (d1, d2) = (c.start(0), c.start(1));
    let want =
        ["198.18.0.65 dev tortieapp scope link", "blackhole 198.18.0.64/26", "198.18.0.0/26 via 192.0.2.1 dev eth0"];
    wait_routes(&c.nodes[1], &want, &d2);
    let _listener = listen(&db.netns, SocketAddr::from((db.addr, 5432))).unwrap();
    let to_db = SocketAddr::from((db.addr, 5432));
    let reach = || connects(&app.netns, to_db, Duration::from_millis(500)).unwrap();
    wait_until("app reaches db before any policy", reach);

    c.apply(DB_POLICY);
    wait_until("db is default-deny once selected", || !reach());
    let m = metrics(&c.nodes[0]);
    let elements_before = metric(&m, "tortie_policy_element_only_applies_total");

    label(&c, 1, "app", "198.18.0.65", "role: client");
    wait_until("app (now role=client, on the other node) reaches db", reach);
    // Counted once the `nft` process is reaped, which may be just after the rule works.
    let element_applies = || metric(&metrics(&c.nodes[0]), "tortie_policy_element_only_applies_total");
    wait_until("the element-only apply to be counted", || element_applies() > elements_before);
    let m = metrics(&c.nodes[0]);
    assert_eq!(
        metric(&m, "tortie_policy_element_only_applies_total"),
        elements_before + 1.0,
        "a label change on another node is one set-element update on db's node:\n{m}"
    );

    let run_dir = c.nodes[0].dir().join("run");
    let run_dir = run_dir.to_str().unwrap();
    let shown: serde_json::Value =
        serde_json::from_str(&c.tortie(&["policy", "show", "default/db", "--run-dir", run_dir, "-o", "json"], ""))
            .unwrap();
    let ingress = &shown[0]["ingress"];
    assert_eq!(ingress[0]["policy"], "default/db", "{shown}");
    assert_eq!(ingress[0]["action"], "Allow", "{shown}");
    assert!(ingress[0]["packets"].as_u64().unwrap() >= 1, "{shown}");
    assert_eq!(ingress[1]["rule"], "default deny", "{shown}");
    assert!(ingress[1]["packets"].as_u64().unwrap() >= 1, "the denied attempts were counted: {shown}");
    let table = c.tortie(&["policy", "show", "--run-dir", run_dir], "");
    assert!(table.contains("default/db (tortiedb)") && table.contains("egress: no policy selects it"), "{table}");

    // A bad port range or selector is refused with the policy and field
    // named; what is enforced stays as it was.
    let before = c.nodes[0].exec("nft", &["-j", "list", "table", "inet", "tortie"]).unwrap();
    let refused = |yaml: String| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tortie"))
            .args(["apply", "-f", "-"])
            .env("TORTIE_DATASTORE", &c.url)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(yaml.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused(DB_POLICY.replace("ports: [5432]", "ports: ['6000:5000']"));
    assert!(
        err.contains("NetworkPolicy db")
            && err.contains("ingress[0].destination.ports[0]")
            && err.contains("6000:5000"),
        "{err}"
    );
    let err = refused(DB_POLICY.replace("selector: app == 'db'", "selector: app == "));
    assert!(err.contains("NetworkPolicy db") && err.contains("selector"), "{err}");
    std::thread::sleep(Duration::from_secs(1));
    let after = c.nodes[0].exec("nft", &["-j", "list", "table", "inet", "tortie"]).unwrap();
    let strip =
        |s: &str| s.split("\"counter\"").map(|p| p.split_once('}').map_or(p, |(_, rest)| rest)).collect::<String>();
    assert_eq!(strip(&before), strip(&after), "the table did not change");
    assert!(reach(), "the allowed flow still flows");
    d1.check_running().unwrap();
    d2.check_running().unwrap();
}

#[test]
fn a_deny_all_host_policy_leaves_bgp_and_the_pods_working() {
    let c = Cluster::new("policy-host", 2);
    let a = c.pod(0, "a", "198.18.0.1");
    let b = c.pod(1, "b", "198.18.0.65");
    let (d1, d2) = (c.start(0), c.start(1));
    let want =
        ["198.18.0.1 dev tortiea scope link", "blackhole 198.18.0.0/26", "198.18.0.64/26 via 192.0.2.2 dev eth0"];
    wait_routes(&c.nodes[0], &want, &d1);
    let node0 = addr(c.addrs[0].split('/').next().unwrap());
    let _ssh = listen(&c.nodes[0], SocketAddr::from((node0, 22))).unwrap();
    let _web = listen(&c.nodes[0], SocketAddr::from((node0, 8080))).unwrap();
    let from_n2 = |port| connects(&c.nodes[1], SocketAddr::from((node0, port)), Duration::from_millis(500)).unwrap();
    assert!(from_n2(8080));
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-all, labels: {host-endpoint: ''}}
spec: {node: n1, interfaceName: '*'}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: host-deny-all}
spec: {selector: has(host-endpoint), types: [Ingress, Egress]}
",
    );
    wait_until("the host endpoint is default-deny", || !from_n2(8080));
    assert!(from_n2(22), "SSH is failsafe");
    // A new BGP session must get through: restart the other node's daemon.
    d2.kill_now();
    drop(d2);
    let d2 = c.start(1);
    let run_dir = c.nodes[1].dir().join("run");
    wait_until("the BGP session comes back through the failsafe", || {
        // The restarted daemon's own view: only a new connection makes it Established.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tortie"))
            .args(["status", "--run-dir", run_dir.to_str().unwrap(), "-o", "json"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("Established")
    });
    assert!(a.ping(b.addr, 3, "0.2").is_ok(), "pods are not host endpoints: they still talk");
    d1.check_running().unwrap();
    d2.check_running().unwrap();
}

const BAD_ACTORS: &str = "apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: known-bad, labels: {role: bad-actors}}
spec: {nets: [NETS]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-bad-actors}
spec:
  order: 10
  selector: all()
  ingress: [{action: Deny, source: {selector: role == 'bad-actors'}}, {action: Allow}]
";

#[test]
fn calicos_bad_actors_pattern_blocks_a_network_set_within_a_second_with_no_rule_rewritten() {
    let c = Cluster::new("policy-netset", 2);
    let web = c.pod(0, "web", "198.18.0.1");
    let (_d1, d2) = (c.start(0), c.start(1));
    wait_routes(&c.nodes[1], &["blackhole 198.18.0.64/26", "198.18.0.0/26 via 192.0.2.1 dev eth0"], &d2);
    let _listener = listen(&web.netns, SocketAddr::from((web.addr, 8080))).unwrap();
    let to_web = SocketAddr::from((web.addr, 8080));
    // n2 (192.0.2.2) is the client whose network turns bad.
    let reach = || connects(&c.nodes[1], to_web, Duration::from_millis(300)).unwrap();
    c.apply(&BAD_ACTORS.replace("NETS", "203.0.113.0/24"));
    wait_until("n2 reaches web while its network is not listed", reach);
    let handles = || {
        let listing =
            c.nodes[0].exec("nft", &["-a", "list", "chain", "inet", "tortie", "pol-in-deny-bad-actors"]).unwrap();
        listing.lines().filter_map(|l| l.split_once("# handle ").map(|(_, h)| h.to_string())).collect::<Vec<_>>()
    };
    let chain = ["list", "chain", "inet", "tortie", "pol-in-deny-bad-actors"];
    wait_until("the policy in n1's table", || c.nodes[0].exec("nft", &chain).is_ok());
    let before = handles();
    let writes = || metric(&metrics(&c.nodes[0]), "tortie_policy_netlink_element_writes_total");
    let writes_before = writes();

    let listed_at = std::time::Instant::now();
    c.apply(&BAD_ACTORS.replace("NETS", "203.0.113.0/24, 192.0.2.0/28"));
    wait_until("n2 blocked once its network is in the set", || !reach());
    let blocked_in = listed_at.elapsed();
    assert!(blocked_in < Duration::from_secs(3), "blocked after {blocked_in:?}");
    assert_eq!(handles(), before, "the deny rule was not rewritten");
    wait_until("the element update counted", || writes() > writes_before);

    c.apply(&BAD_ACTORS.replace("NETS", "203.0.113.0/24"));
    wait_until("n2 allowed again once its network left the set", reach);
    assert_eq!(handles(), before);
}
