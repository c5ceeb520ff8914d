//! Many senders, side by side: 100 BIRD injectors (one namespace and AS
//! each, on one bridge) announce 10,000 distinct IPv4 prefixes (/16–/24) each to the
//! system under test, which re-advertises all 1,000,000 to a BIRD monitor.
//! Measured: the time from enabling the injectors' tables until the monitor
//! holds every prefix, and the system under test's peak RSS; BIRD 2 and
//! tortie take turns as the system under test.
//!
//! Run (as root): `cargo bench -p tortie-proto-tests --bench many_senders`
//! (`TORTIE_BENCH_SENDERS`, default 100; `TORTIE_BENCH_PER_SENDER`, default 10000;
//! `TORTIE_BENCH_ROUNDS`, default 3 alternating rounds compared by their medians).

#![allow(clippy::unwrap_used)] // a benchmark: a failure aborts the run

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use tortie_bgp::rib::policy::{Policy, Rule, Verdict};
use tortie_bgp::speaker::Neighbor;
use tortie_lab::peers::{BgpPeer, Bird};
use tortie_lab::table::{TableFamily, describe_lengths, write_table};
use tortie_lab::{Lab, veth};
use tortie_proto_tests::bench::{BENCH_TIMERS, PeakRss, median, rounds, run_speaker, wait_for_prefixes};
use tortie_proto_tests::tortie_neighbor;

/// Sender `i`: 192.0.2.(10+i), AS 65100+i.
fn sender(i: usize) -> (Ipv4Addr, u32) {
    (Ipv4Addr::new(192, 0, 2, 10 + i as u8), 65100 + i as u32)
}

fn injector_config(i: usize, include: &str) -> String {
    let (addr, asn) = sender(i);
    format!(
        "router id {addr};\nprotocol device {{ }}\nprotocol static gen {{\n  ipv4;\n  disabled;\ninclude \"{include}\";\n}}\n\
         protocol bgp sut {{ local {addr} as {asn}; neighbor 192.0.2.1 as 65001; ipv4 {{ import none; export all; }}; {BENCH_TIMERS} }}\n"
    )
}

const MONITOR: &str = "router id 198.51.100.2;\nprotocol device { }\n\
    protocol bgp sut { local as 65003; neighbor 198.51.100.1 as 65001; ipv4 { import all; export none; }; connect delay time 1; connect retry time 1; error wait time 1, 2; hold time 90; keepalive time 30; graceful restart off; }\n";

fn bird_sut_config(senders: usize) -> String {
    let mut c = format!(
        "router id 192.0.2.1;\nprotocol device {{ }}\n\
         protocol bgp mon {{ local as 65001; neighbor 198.51.100.2 as 65003; ipv4 {{ import none; export all; }}; {BENCH_TIMERS} }}\n"
    );
    for i in 0..senders {
        let (addr, asn) = sender(i);
        c.push_str(&format!(
            "protocol bgp inj{i} {{ local 192.0.2.1 as 65001; neighbor {addr} as {asn}; ipv4 {{ import all; export none; }}; {BENCH_TIMERS} }}\n"
        ));
    }
    c
}

/// tortie's neighbours: the monitor, and every sender with an export policy
/// that sends it nothing (as the BIRD under test's `export none`).
fn tortie_neighbors(senders: usize) -> Vec<Neighbor> {
    let mut all = vec![tortie_neighbor("mon", "198.51.100.2", "198.51.100.1", 65003, 90)];
    for i in 0..senders {
        let (addr, asn) = sender(i);
        let mut n = tortie_neighbor(&format!("inj{i}"), &addr.to_string(), "192.0.2.1", asn, 90);
        n.export_policy = Some(Policy { rules: vec![Rule::any(Verdict::Reject)] });
        all.push(n);
    }
    all
}

fn run(sut: &str, senders: usize, per_sender: usize, includes: &[String]) -> (Duration, u64) {
    let lab = Lab::new(&format!("many_senders_{sut}")).unwrap();
    let (mid, mon) = (lab.netns("sut").unwrap(), lab.netns("mon").unwrap());
    let sw = lab.bridge("sw").unwrap();
    sw.attach(&mid, "to-inj").unwrap();
    mid.add_addr("to-inj", "192.0.2.1/24".parse().unwrap()).unwrap();
    veth((&mon, "eth0"), (&mid, "to-mon")).unwrap();
    mon.add_addr("eth0", "198.51.100.2/24".parse().unwrap()).unwrap();
    mid.add_addr("to-mon", "198.51.100.1/24".parse().unwrap()).unwrap();
    let peak = PeakRss::start();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
    let (bird_sut, tortie) = if sut == "bird" {
        (Some(Bird::start_with_config(&mid, "sut", &bird_sut_config(senders)).unwrap()), None)
    } else {
        (None, Some(run_speaker(&mid, tortie_neighbors(senders), stop_rx)))
    };
    let monitor = Bird::start_with_config(&mon, "monitor", MONITOR).unwrap();
    let mut injectors = Vec::new();
    for (i, include) in includes.iter().enumerate() {
        let ns = lab.netns(&format!("i{i}")).unwrap();
        sw.attach(&ns, "eth0").unwrap();
        let (addr, _) = sender(i);
        ns.add_addr("eth0", format!("{addr}/24").parse().unwrap()).unwrap();
        injectors.push(Bird::start_with_config(&ns, &format!("inj{i}"), &injector_config(i, include)).unwrap());
    }
    for inj in &injectors {
        inj.wait_established("192.0.2.1".parse().unwrap(), Duration::from_secs(120)).unwrap();
    }
    monitor.wait_established("198.51.100.1".parse().unwrap(), Duration::from_secs(60)).unwrap();
    let n = senders * per_sender;
    let start = Instant::now();
    for inj in &injectors {
        inj.birdc(&["enable", "gen"]).unwrap();
    }
    let injectors: Vec<&Bird> = injectors.iter().collect();
    let elapsed = wait_for_prefixes(&monitor, &injectors, n as u64, Duration::from_secs(900)) - start;
    let rss_kib = peak.kib(bird_sut.as_ref());
    drop(stop_tx);
    if let Some(t) = tortie {
        t.join().unwrap();
    }
    (elapsed, rss_kib)
}

fn main() {
    tortie_bgp::malloc::tune();
    // criterion-style arguments (`--bench`) are accepted and ignored.
    let env = |k: &str, default: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (senders, per_sender) = (env("TORTIE_BENCH_SENDERS", 100).min(240), env("TORTIE_BENCH_PER_SENDER", 10_000));
    let dir = std::env::temp_dir().join(format!("tortie-many-senders-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut lengths = std::collections::BTreeMap::new();
    let includes: Vec<String> = (0..senders)
        .map(|i| {
            let path = dir.join(format!("table{i}.inc"));
            for (len, n) in write_table(&path, TableFamily::Ipv4, i * per_sender, per_sender).unwrap() {
                *lengths.entry(len).or_default() += n;
            }
            path.display().to_string()
        })
        .collect();
    println!("{}", describe_lengths(&lengths));
    let rounds = rounds(3);
    let mut rows = Vec::new();
    for round in 1..=rounds {
        for sut in ["bird", "tortie"] {
            let (t, rss) = run(sut, senders, per_sender, &includes);
            rows.push((sut, round, t.as_secs_f64(), rss as f64 / 1024.0));
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let n = senders * per_sender;
    println!(
        "\n| system under test | round | senders × prefixes | enable → monitor has all | peak RSS |\n|---|---:|---:|---:|---:|"
    );
    for (sut, round, t, mib) in &rows {
        println!("| {sut} | {round} | {senders} × {per_sender} = {n} | {t:.2} s | {mib:.0} MiB |");
    }
    let medians = |sut: &str| {
        let of = |f: fn(&(&str, usize, f64, f64)) -> f64| median(rows.iter().filter(|r| r.0 == sut).map(f).collect());
        (of(|r| r.2), of(|r| r.3))
    };
    let ((bt, bm), (tt, tm)) = (medians("bird"), medians("tortie"));
    println!("| bird | median | {senders} × {per_sender} = {n} | {bt:.2} s | {bm:.0} MiB |");
    println!("| tortie | median | {senders} × {per_sender} = {n} | {tt:.2} s | {tm:.0} MiB |");
    println!("\ntortie/BIRD, medians of {rounds}: time {:.2}x, memory {:.2}x", tt / bt, tm / bm.max(1.0));
}
