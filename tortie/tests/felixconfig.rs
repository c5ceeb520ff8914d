//! FelixConfiguration through the daemon, applied with `tortie apply` and
//! taking effect live: what pods may send to their host, the log level,
//! the Prometheus listener, the health endpoints, the route and nftables
//! refresh intervals, the status summary's reporting interval.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Cluster, metric, wait_until};
use tortie_lab::tcp::{connects, listen};

#[test]
fn a_felix_configuration_decides_what_pods_may_send_to_their_host() {
    let c = Cluster::new("felixconf", 1);
    let pod = c.pod(0, "web", "198.18.0.1");
    let _d = c.start(0);
    let host = SocketAddr::from(([192, 0, 2, 1], 8080));
    let _l = listen(&c.nodes[0], host).unwrap();
    let t = Duration::from_millis(500);
    wait_until("the pod reaches its host (tortie's default: Accept)", || connects(&pod.netns, host, t).unwrap());
    let conf = "apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {defaultEndpointToHostAction: Drop, logSeverityScreen: Info}
";
    c.apply(conf);
    wait_until("Drop (Calico's default) stops pod → host traffic", || !connects(&pod.netns, host, t).unwrap());
    c.apply(&conf.replace("default}", "node.n1}").replace("Drop", "Accept"));
    wait_until("the node's own configuration wins", || connects(&pod.netns, host, t).unwrap());
    c.tortie(&["delete", "felixconfiguration", "node.n1"], "");
    wait_until("back to the cluster-wide Drop", || !connects(&pod.netns, host, t).unwrap());
}

/// The node's daemon with its log level left to the datastore (no
/// `TORTIE_LOG`) and no `--metrics-listen`.
fn start_bare(c: &Cluster) -> tortie_lab::Daemon {
    assert!(std::env::var_os("TORTIE_LOG").is_none(), "unset TORTIE_LOG: it wins over logSeverityScreen");
    let bin = env!("CARGO_BIN_EXE_tortie");
    let env = [("TORTIE_DATASTORE", c.url.as_str())];
    c.nodes[0].spawn_tortie_node("tortie-n1", bin, "n1", &c.addrs[0], &[], &env).unwrap()
}

fn scrape(c: &Cluster, port: u16) -> Option<String> {
    c.nodes[0].http_get(SocketAddr::from(([127, 0, 0, 1], port)), "/metrics").ok()
}

#[test]
fn log_level_metrics_listener_and_refresh_intervals_follow_the_felix_configuration() {
    let c = Cluster::new("felixlive", 1);
    let _pod = c.pod(0, "web", "198.18.0.1");
    let d = start_bare(&c);
    wait_until("the daemon's policy table", || c.nodes[0].exec("nft", &["list", "table", "inet", "tortie"]).is_ok());
    assert!(scrape(&c, 9095).is_none(), "no metrics listener unless asked");
    assert!(!d.log().contains(" DEBUG "), "info by default");

    c.apply(
        "apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec:
  logSeverityScreen: Debug
  prometheusMetricsEnabled: true
  prometheusMetricsHost: 127.0.0.1
  prometheusMetricsPort: 9095
  routeRefreshInterval: 1s
  nftablesRefreshInterval: 1s
  healthEnabled: true
  healthPort: 9096
  reportingInterval: 1s
",
    );
    wait_until("Prometheus metrics on 127.0.0.1:9095", || scrape(&c, 9095).is_some());
    let health = |path: &str| c.nodes[0].http_get(SocketAddr::from(([127, 0, 0, 1], 9096)), path).unwrap_or_default();
    wait_until("health endpoints on localhost:9096", || health("/liveness").starts_with("HTTP/1.1 200"));
    let ready = health("/readiness");
    assert!(ready.starts_with("HTTP/1.1 200") && ready.ends_with("ready\n"), "{ready}");
    // The label change below is logged at debug level once the level took.
    c.apply("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: s}\nspec: {nets: [203.0.113.0/24]}\n");
    wait_until("debug lines in the log", || d.log().contains(" DEBUG "));
    let passes = || metric(&scrape(&c, 9095).unwrap(), "tortie_route_reconcile_full_passes_total");
    let before = passes();
    std::thread::sleep(Duration::from_secs(4));
    assert!(passes() >= before + 2.0, "a full route pass every second: {before} -> {}", passes());
    // Someone deletes tortie's table: the 1 s check puts it back.
    c.nodes[0].exec("nft", &["delete", "table", "inet", "tortie"]).unwrap();
    wait_until("the table rebuilt by the 1 s check", || {
        c.nodes[0].exec("nft", &["list", "table", "inet", "tortie"]).is_ok()
    });
    assert!(metric(&scrape(&c, 9095).unwrap(), "tortie_policy_repairs_total") >= 1.0);

    // reportingInterval: the summary for `status --all-nodes` every second, then never.
    let published = || {
        let all: serde_json::Value =
            serde_json::from_str(&c.tortie(&["status", "--all-nodes", "-o", "json"], "")).unwrap();
        (all[0]["published_at"].as_u64().unwrap(), all[0]["interval"].as_u64().unwrap())
    };
    wait_until("summaries every second", || published().1 == 1);
    let (first, _) = published();
    std::thread::sleep(Duration::from_millis(3500));
    assert!(published().0 >= first + 2, "published every second: {first} -> {:?}", published());
    c.apply("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: node.n1}\nspec: {reportingInterval: 0s}\n");
    wait_until("the node stops reporting", || published().1 == 0);
    let (last, _) = published();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(published().0, last, "nothing published after reportingInterval: 0s");
    let table = c.tortie(&["status", "--all-nodes"], "");
    assert!(table.contains("not reporting (reportingInterval 0s)"), "{table}");
    c.tortie(&["delete", "felixconfiguration", "node.n1"], "");

    c.tortie(&["delete", "felixconfiguration", "default"], "");
    wait_until("the metrics listener closed again", || scrape(&c, 9095).is_none());
    wait_until("the health listener closed again", || health("/liveness").is_empty());
    assert!(d.log().contains("log level set by logSeverityScreen"), "{}", d.log_tail());
}

#[test]
fn the_ipip_device_takes_ipip_mtu_and_goes_back_to_the_underlays() {
    let c = Cluster::new("ipipmtu", 1);
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pods}
spec: {cidr: 198.18.0.0/16, blockSize: 26, ipipMode: Always}
",
    );
    let _d = c.start(0);
    let mtu = || {
        let link = c.nodes[0].ip(&["-o", "link", "show", tortie_ipip::ebpf::DEVICE]).unwrap_or_default();
        link.split_whitespace().skip_while(|w| *w != "mtu").nth(1).map(str::to_string)
    };
    wait_until("the tunnel at the underlay's MTU less 20", || mtu().as_deref() == Some("1480"));
    let conf = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {ipipMTU: 1400}\n";
    c.apply(conf);
    wait_until("the tunnel rebuilt at ipipMTU", || mtu().as_deref() == Some("1400"));
    c.tortie(&["delete", "felixconfiguration", "default"], "");
    wait_until("back to the underlay's MTU less 20", || mtu().as_deref() == Some("1480"));
}
