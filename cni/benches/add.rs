//! CNI ADD as a runtime sees it — a `tortie-cni` process per pod, from
//! spawn to exit, veth plumbing and IPAM included — on one node, with the
//! embedded SQLite datastore and with a real etcd, side by side: the
//! latency of 100 ADDs one after another (p50/p99), and the time to
//! network 100 pods started all at once.
//!
//! Run: `cargo bench -p tortie-cni --bench add` (as root).

#![allow(clippy::unwrap_used)] // a benchmark: a failure aborts the run

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tortie_lab::peers::Etcd;
use tortie_lab::{Lab, Netns};
use tortie_store::Datastore;
use tortie_store::api;
use tortie_store::resources::parse_documents;

const PODS: usize = 100;
const POOL: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: bench}
spec: {cidr: 198.18.0.0/16, blockSize: 26}
";
/// The IPv6 pool of the dual-stack rows.
const POOL6: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: bench6}
spec: {cidr: '2001:db8:100::/48'}
";

/// Starts the plugin directly in the node's namespace, as a runtime living
/// there does (no `ip netns exec` in between: that costs more than the ADD).
fn spawn(node: &Netns, command: &str, container: &str, pod: Option<&Netns>, conf: &str) -> Child {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let ns = std::fs::File::open(format!("/run/netns/{}", node.name())).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_tortie-cni"));
    // SAFETY: setns(2) between fork and exec touches no memory of the parent.
    unsafe {
        c.pre_exec(move || {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    c.env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_IFNAME", "eth0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(p) = pod {
        c.env("CNI_NETNS", format!("/run/netns/{}", p.name()));
    }
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(conf.as_bytes()).unwrap();
    child
}

fn finish(child: Child) {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

fn pct(sorted: &[Duration], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

fn del_all(node: &Netns, tag: &str, conf: &str) {
    let dels: Vec<Child> = (0..PODS).map(|i| spawn(node, "DEL", &format!("{tag}{i}"), None, conf)).collect();
    dels.into_iter().for_each(finish);
}

/// One row: `engine` at `url`; with `dual`, an address of each family per pod.
fn bench(engine: &str, url: &str, node: &Netns, pods: &[Netns], dual: bool) {
    // From inside the node, where the datastore is reachable. The store stays
    // open meanwhile, as the node's daemon keeps it (for SQLite: the WAL and
    // its index stay warm instead of being rebuilt by every plugin process).
    let (rt, kv) = node
        .enter(|| {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            let kv = rt.block_on(async {
                let kv = Datastore::open(url).await.unwrap();
                api::apply(&kv, &parse_documents(POOL).unwrap()).await.unwrap();
                if dual {
                    api::apply(&kv, &parse_documents(POOL6).unwrap()).await.unwrap();
                }
                kv
            });
            (rt, kv)
        })
        .unwrap();
    let conf = json!({"cniVersion": "1.1.0", "name": "bench", "type": "tortie-cni", "datastore": url, "nodename": "n1",
        "ipam": {"assign_ipv4": "true", "assign_ipv6": dual.to_string()}})
    .to_string();
    let mut lat = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let t = Instant::now();
        finish(spawn(node, "ADD", &format!("s{i}"), Some(pod), &conf));
        lat.push(t.elapsed());
    }
    lat.sort();
    del_all(node, "s", &conf);
    let t = Instant::now();
    let adds: Vec<Child> =
        pods.iter().enumerate().map(|(i, p)| spawn(node, "ADD", &format!("c{i}"), Some(p), &conf)).collect();
    adds.into_iter().for_each(finish);
    let burst = t.elapsed();
    del_all(node, "c", &conf);
    drop(kv);
    drop(rt);
    println!(
        "  {engine:<14} ADD p50 {:>6.1} ms  p99 {:>6.1} ms  100 sequential {:>6.2} s  100 at once {:>6.2} s",
        pct(&lat, 50),
        pct(&lat, 99),
        lat.iter().sum::<Duration>().as_secs_f64(),
        burst.as_secs_f64()
    );
}

fn main() {
    let lab = Lab::new("bench-cni").unwrap();
    let node = lab.netns("node").unwrap();
    let pods: Vec<Netns> = (0..PODS).map(|i| lab.netns(&format!("p{i}")).unwrap()).collect();
    let etcd = Etcd::start_in(&lab, &node).unwrap();
    println!("tortie-cni ADD on one node ({PODS} pods; process spawn, IPAM, veth, WorkloadEndpoint)");
    bench("sqlite", &format!("sqlite://{}/store.db", lab.dir().display()), &node, &pods, false);
    bench("sqlite dual", &format!("sqlite://{}/dual.db", lab.dir().display()), &node, &pods, true);
    bench("etcd", &format!("etcd://{}", etcd.endpoint()), &node, &pods, false);
}
