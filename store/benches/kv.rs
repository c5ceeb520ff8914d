//! 10,000 WorkloadEndpoint puts and their watch delivery, on each engine:
//! writes/s (durable: SQLite `synchronous=FULL`, etcd's fsync'd raft log),
//! one write per transaction and batched 100 per transaction, and the
//! watch latency (write submitted → event at a watcher) p50/p99.
//!
//! Run: `cargo bench -p tortie-store --bench kv`

#![allow(clippy::unwrap_used)] // a benchmark: a failure aborts the run

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tortie_store::Datastore;
use tortie_store::kv::{Kv, Op, Txn};

const PUTS: usize = 10_000;
const BATCH: usize = 100;

/// A WorkloadEndpoint as the CNI plugin writes it (~600 bytes of JSON).
fn wep(i: usize) -> (String, Vec<u8>) {
    let name = format!("node1-k8s-pod{i}-eth0");
    let value = format!(
        r#"{{"apiVersion":"projectcalico.org/v3","kind":"WorkloadEndpoint","metadata":{{"name":"{name}","namespace":"default","labels":{{"app":"bench","projectcalico.org/namespace":"default","projectcalico.org/orchestrator":"k8s"}}}},"spec":{{"orchestrator":"k8s","workload":"","node":"node1","containerID":"{i:064x}","pod":"pod{i}","endpoint":"eth0","serviceAccountName":"default","ipNetworks":["198.18.{}.{}/32"],"profiles":["kns.default","ksa.default.default"],"interfaceName":"tortie{i:09x}","mac":"ee:ee:ee:ee:ee:ee"}}}}"#,
        i / 256,
        i % 256
    );
    (format!("/calico/resources/v3/projectcalico.org/workloadendpoints/default/{name}"), value.into_bytes())
}

struct Result_ {
    writes_per_s: f64,
    p50: Duration,
    p99: Duration,
}

async fn run(store: &Datastore, tag: &str, batch: usize) -> Result_ {
    let prefix = format!("/calico/resources/v3/projectcalico.org/workloadendpoints/default/{tag}");
    let start_rev = store.range(&prefix).await.unwrap().revision + 1;
    let mut watch = store.watch(&prefix, start_rev).await.unwrap();
    let committed: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let received = tokio::spawn(async move {
        let mut seen = Vec::with_capacity(PUTS);
        while seen.len() < PUTS {
            let batch = watch.next().await.unwrap().unwrap();
            let now = Instant::now();
            seen.extend(batch.iter().map(|e| (e.kv.mod_revision, now)));
        }
        seen
    });
    let start = Instant::now();
    for chunk in (0..PUTS).collect::<Vec<_>>().chunks(batch) {
        let success = chunk
            .iter()
            .map(|i| {
                let (key, value) = wep(*i);
                Op::Put { key: key.replace("/default/", &format!("/default/{tag}")), value, lease: None }
            })
            .collect();
        let submitted = Instant::now();
        let rev = store.txn(Txn { success, ..Txn::default() }).await.unwrap().revision;
        committed.lock().unwrap().insert(rev, submitted);
    }
    let elapsed = start.elapsed();
    let seen = received.await.unwrap();
    let committed = committed.lock().unwrap();
    let mut latencies: Vec<Duration> =
        seen.iter().filter_map(|(rev, at)| committed.get(rev).map(|c| at.saturating_duration_since(*c))).collect();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    Result_ { writes_per_s: PUTS as f64 / elapsed.as_secs_f64(), p50: pct(0.50), p99: pct(0.99) }
}

async fn measure(engine: &str, store: &Datastore) {
    for (mode, batch) in [("1 per txn", 1), ("100 per txn", BATCH)] {
        let r = run(store, &format!("{}b", batch), batch).await;
        println!(
            "| {engine} | {mode} | {:.0} | {:.1} | {:.1} |",
            r.writes_per_s,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3
        );
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!("| engine | writes | writes/s | write→watch p50 ms | write→watch p99 ms |\n|---|---|---|---|---|");
    let dir = std::env::temp_dir().join(format!("tortie-kv-bench-{}", std::process::id()));
    rt.block_on(async {
        let sqlite = Datastore::open(&format!("sqlite://{}/store.db", dir.display())).await.unwrap();
        measure("SQLite (WAL, synchronous=FULL)", &sqlite).await;
    });
    std::fs::remove_dir_all(&dir).unwrap();
    let lab = tortie_lab::Lab::new("kv_bench").unwrap();
    let etcd = tortie_lab::peers::Etcd::start(&lab).unwrap();
    rt.block_on(async {
        let store = Datastore::open(&format!("etcd://{}", etcd.endpoint())).await.unwrap();
        measure("etcd 3.4 (one member, loopback)", &store).await;
    });
}
