//! A network-set change through the whole node daemon: 1,000
//! GlobalNetworkSets × 100 nets behind one deny policy in the datastore,
//! `tortie node run` enforcing it; then one net added to one set with
//! `tortie apply`, timed from the start of the apply until the daemon has
//! written it to nf_tables (its `policy_netlink_element_writes` counter,
//! polled every 2 ms), ten times; and the first load after a start.
//!
//! Run: `cargo bench -p tortie --bench netset_daemon` (root; nftables).

#![allow(clippy::unwrap_used)] // a benchmark: a failure aborts the run

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use tortie_lab::Lab;

const SETS: u32 = 1000;
const NETS: u32 = 100;

/// Set `s` (labelled bad-actors): 100 /28s from 240.0.0.0/4 (rule data
/// only), plus `extra`.
fn set(s: u32, extra: Option<&str>) -> String {
    let mut nets: Vec<String> = (0..NETS)
        .map(|n| {
            let a = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(240, 0, 0, 0)) + (s * NETS + n) * 16);
            format!("{a}/28")
        })
        .collect();
    nets.extend(extra.map(String::from));
    format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {{name: bad{s}, labels: {{role: bad-actors}}}}\nspec: {{nets: [{}]}}\n",
        nets.join(", ")
    )
}

fn main() {
    let lab = Lab::new("bench-netset-daemon").unwrap();
    let url = format!("sqlite://{}/store.db", lab.dir().display());
    let node = lab.netns("node").unwrap();
    let peer = lab.netns("peer").unwrap();
    tortie_lab::veth((&node, "eth0"), (&peer, "eth0")).unwrap();
    node.add_addr("eth0", "192.0.2.1/24".parse().unwrap()).unwrap();
    let bin = env!("CARGO_BIN_EXE_tortie");
    let apply = |yaml: &str| {
        let path = lab.dir().join("doc.yaml");
        std::fs::write(&path, yaml).unwrap();
        let out = Command::new(bin)
            .args(["apply", "-f", path.to_str().unwrap()])
            .env("TORTIE_DATASTORE", &url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let mut yaml = String::from(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: pods}\nspec: {cidr: 198.18.0.0/16, blockSize: 26}\n---\napiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: web, namespace: default}\nspec: {node: n1, pod: web, endpoint: eth0, interfaceName: tortieweb, ipNetworks: [198.18.0.1/32]}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: deny-bad-actors}\nspec:\n  selector: all()\n  ingress: [{action: Deny, source: {selector: role == 'bad-actors'}}, {action: Allow}]\n",
    );
    for s in 0..SETS {
        write!(yaml, "---\n{}", set(s, None)).unwrap();
    }
    apply(&yaml);

    let started = Instant::now();
    let env = [("TORTIE_DATASTORE", url.as_str()), ("TORTIE_LOG", "warn")];
    let daemon = node
        .spawn_tortie_node("tortie-n1", bin, "n1", "192.0.2.1/24", &["--metrics-listen", "127.0.0.1:9091"], &env)
        .unwrap();
    let metric = |name: &str| -> Option<f64> {
        let text = node.http_get("127.0.0.1:9091".parse().unwrap(), "/metrics").ok()?;
        text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
    };
    while metric("tortie_policy_full_applies_total").unwrap_or(0.0) < 1.0 {
        assert!(started.elapsed() < Duration::from_secs(60), "no policy table after 60 s:\n{}", daemon.log_tail());
        std::thread::sleep(Duration::from_millis(5));
    }
    let first = started.elapsed();

    let mut times = Vec::new();
    for i in 0..10 {
        let before = metric("tortie_policy_netlink_element_writes_total").unwrap();
        let extra = format!("241.0.{i}.0/28");
        let t = Instant::now();
        apply(&set(SETS / 2, Some(&extra)));
        while metric("tortie_policy_netlink_element_writes_total").unwrap() == before {
            assert!(t.elapsed() < Duration::from_secs(10), "no element write:\n{}", daemon.log_tail());
            std::thread::sleep(Duration::from_millis(2));
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!("network sets through the daemon: {SETS} GlobalNetworkSets x {NETS} nets, one deny policy");
    println!("  daemon start until the first table is in nftables   {:>8.0} ms", first.as_secs_f64() * 1e3);
    println!(
        "  one net added with `tortie apply`, until written     min {:.1} / median {:.1} / max {:.1} ms (10 runs)",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
}
