//! The node daemon end to end, side by side with BIRD: a BIRD feeder
//! announces N prefixes, one per UPDATE (each its own MED, so its own
//! attribute set), to the system under test, which installs every route
//! in its kernel and re-advertises them to a BIRD receiver. The system
//! under test is `tortie node run` (felix installing the learned routes)
//! or BIRD 2 with `protocol kernel { ipv4 { export all; }; }`. Measured:
//! from enabling the feeder's table until the receiver holds every prefix,
//! and until the node's kernel does; the system under test's peak RSS.
//! Then one more prefix on top of the table: the time until the node's
//! kernel has it, and (tortie) how many kernel route changes felix made for
//! it and how long its reconcile pass took.
//!
//! Run (as root): `cargo bench -p tortie --bench daemon_table`
//! (`TORTIE_BENCH_PREFIXES`, default 200000; `TORTIE_BENCH_ROUNDS`,
//! default 3 alternating rounds, medians compared; `TORTIE_BENCH_SUT=tortie`,
//! `bird`, `direct` or `stalled` runs one alone; `TORTIE_BENCH_TABLE=internet`
//! sends the Internet-table mix instead: /16–/24 nested as in the Internet's table,
//! 300 attribute sets shared by many prefixes, `tortie_lab::table`). A third
//! run, `direct`, peers the feeder with the receiver, no system in the
//! middle: the time no system under test can beat (its CPU and RSS figures
//! are the feeder's). A fourth, `stalled`, is tortie with a third peer that
//! brings its session up and then never reads (`tortie_lab::peers::Stalled`):
//! issue #25 asks the table to come as fast as without it (± 20 %).

#![allow(clippy::unwrap_used)] // a benchmark: a failure aborts the run

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use tortie_lab::peers::{BgpPeer, Bird, Stalled};
use tortie_lab::usage::cpu_seconds;
use tortie_lab::{Check, Lab, Netns, wait_for};
use tortie_store::Datastore;
use tortie_store::api;
use tortie_store::resources::parse_documents;

const TIMERS: &str = "connect delay time 1; connect retry time 1; error wait time 1, 2; hold time 90; keepalive time 30; graceful restart off;";

/// The feeder's table: `n` /24s of 240.0.0.0/4 (routes only, never
/// traffic: DESIGN.md), each its own attribute set; or with `internet`,
/// the include file of `n` prefixes in the Internet table's mix.
fn feeder_config(n: usize, internet: Option<&std::path::Path>, to: (&str, u32)) -> String {
    let mut c = String::from("router id 192.0.2.10;\nprotocol device { }\nprotocol static gen { ipv4; disabled;\n");
    match internet {
        Some(include) => writeln!(c, "include \"{}\";", include.display()).unwrap(),
        None => {
            for i in 0..n {
                let a = 240 * (1 << 24) + (i as u32) * 256;
                writeln!(c, "route {}/24 blackhole {{ bgp_med = {i}; }};", std::net::Ipv4Addr::from(a)).unwrap();
            }
        }
    }
    // One more prefix (more specific than any of the table), enabled once the
    // table is in: a block changing on a big node.
    c.push_str("}\nprotocol static one { ipv4; disabled; route 240.0.0.128/25 blackhole { bgp_med = 1; }; }\n");
    let (ip, asn) = to;
    writeln!(
        c,
        "protocol bgp sut {{ local as 65010; neighbor {ip} as {asn}; ipv4 {{ import none; export all; }}; {TIMERS} }}"
    )
    .unwrap();
    c
}

fn receiver_config(from: (&str, u32)) -> String {
    let (ip, asn) = from;
    format!(
        "router id 192.0.2.11;\nprotocol device {{ }}\n\
         protocol bgp sut {{ local as 65011; neighbor {ip} as {asn}; ipv4 {{ import all; export none; }}; {TIMERS} }}\n"
    )
}

/// Where the feeder and the receiver peer: the system under test, or
/// (`direct`, the floor no system in the middle can beat) each other.
fn peers_of(sut: &str) -> ((&'static str, u32), (&'static str, u32)) {
    if sut == "direct" {
        (("192.0.2.11", 65011), ("192.0.2.10", 65010))
    } else {
        (("192.0.2.1", 64512), ("192.0.2.1", 64512))
    }
}

fn bird_sut_config() -> String {
    format!(
        "router id 192.0.2.1;\nprotocol device {{ }}\nprotocol kernel {{ ipv4 {{ export all; }}; merge paths on; }}\n\
         protocol bgp feed {{ local as 64512; neighbor 192.0.2.10 as 65010; ipv4 {{ import all; export none; }}; {TIMERS} }}\n\
         protocol bgp recv {{ local as 64512; neighbor 192.0.2.11 as 65011; ipv4 {{ import none; export all; }}; {TIMERS} }}\n"
    )
}

const TORTIE_RESOURCES: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pods}
spec: {cidr: 198.18.0.0/16, blockSize: 26, ipipMode: Never}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: feeder}
spec: {node: sut, peerIP: 192.0.2.10, asNumber: 65010}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: receiver}
spec: {node: sut, peerIP: 192.0.2.11, asNumber: 65011}
";

/// The peer that stops reading, for `stalled`.
const STALLED_PEER: &str = "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: stalled}
spec: {node: sut, peerIP: 192.0.2.12, asNumber: 65012}
";

/// What tortie's socket to the stalled peer holds unsent, octets (`ss`'s Send-Q).
fn unsent_to_stalled(ns: &Netns) -> u64 {
    let out = ns.exec("ss", &["-tnH", "state", "established", "dst", "192.0.2.12"]).unwrap();
    out.lines().filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()).sum()
}

/// The IPv4 prefixes in `ns`'s FIB (the main and local tables, one trie
/// while no rule asks for another: none does here), from the kernel's trie
/// statistics: a walk of the trie in the kernel, with no route formatted or
/// copied out (dumping 200,000 routes with `ip route` every 50 ms took most
/// of a core from the system under test).
fn kernel_prefixes(ns: &Netns) -> usize {
    let stats = ns.enter(|| std::fs::read_to_string("/proc/thread-self/net/fib_triestat")).unwrap().unwrap();
    let main = stats.split("Main:").nth(1).unwrap_or_default();
    let prefixes = main.lines().find_map(|l| l.trim().strip_prefix("Prefixes:"));
    prefixes.and_then(|p| p.trim().parse().ok()).unwrap_or_else(|| panic!("no prefix count in {stats}"))
}

fn peak_rss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = text.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: 0 kB");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

struct Measured {
    receiver: Duration,
    kernel: Duration,
    rss_kib: u64,
    cpu: f64,
    /// Until the one more prefix is in the kernel.
    one: Duration,
}

/// A counter or gauge from a metrics page.
fn metric(page: &str, name: &str) -> u64 {
    let line = page.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '));
    line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
}

fn run(sut: &str, n: usize, internet: Option<&std::path::Path>) -> Measured {
    let lab = Lab::new(&format!("daemon_table_{sut}")).unwrap();
    let switch = lab.bridge("sw").unwrap();
    let mut ns = Vec::new();
    let stalled = sut == "stalled";
    let nodes =
        [("sut", "192.0.2.1/24"), ("feed", "192.0.2.10/24"), ("recv", "192.0.2.11/24"), ("stall", "192.0.2.12/24")];
    for (name, addr) in &nodes[..if stalled { 4 } else { 3 }] {
        let node = lab.netns(name).unwrap();
        switch.attach(&node, "eth0").unwrap();
        node.add_addr("eth0", addr.parse().unwrap()).unwrap();
        ns.push(node);
    }
    let stalled_peer = stalled.then(|| Stalled::start(&ns[3], "192.0.2.12".parse().unwrap(), 65012).unwrap());
    let (bird_sut, tortie) = if sut == "direct" {
        (None, None)
    } else if sut == "bird" {
        (Some(Bird::start_with_config(&ns[0], "sut", &bird_sut_config()).unwrap()), None)
    } else {
        let url = format!("sqlite://{}/store.db", lab.dir().display());
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
            let kv = Datastore::open(&url).await.unwrap();
            api::apply(&kv, &parse_documents(TORTIE_RESOURCES).unwrap()).await.unwrap();
            if stalled {
                api::apply(&kv, &parse_documents(STALLED_PEER).unwrap()).await.unwrap();
            }
        });
        // `TORTIE_BENCH_BIN`: a wrapper to run the daemon under (a profiler, heaptrack).
        let bin = std::env::var("TORTIE_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tortie").into());
        let env = [("TORTIE_DATASTORE", url.as_str()), ("TORTIE_LOG", "warn")];
        let extra = ["--metrics-listen", "127.0.0.1:9091"];
        (None, Some(ns[0].spawn_tortie_node("tortie-sut", &bin, "sut", "192.0.2.1/24", &extra, &env).unwrap()))
    };
    let (to, from) = peers_of(sut);
    let receiver = Bird::start_with_config(&ns[2], "receiver", &receiver_config(from)).unwrap();
    let feeder = Bird::start_with_config(&ns[1], "feeder", &feeder_config(n, internet, to)).unwrap();
    feeder.wait_established(to.0.parse().unwrap(), Duration::from_secs(60)).unwrap();
    receiver.wait_established(from.0.parse().unwrap(), Duration::from_secs(60)).unwrap();
    if let Some(peer) = &stalled_peer {
        wait_for("the stalled peer's session", Duration::from_secs(60), || {
            Ok(if peer.is_up() { Check::Done(()) } else { Check::Pending("not up".to_string()) })
        })
        .unwrap();
    }
    // Direct, the feeder's own figures stand for the system under test's (no kernel).
    let pid = match (&bird_sut, &tortie) {
        (Some(b), _) => b.daemon().pid(),
        (_, Some(t)) => t.pid(),
        _ => feeder.daemon().pid(),
    };
    let direct = sut == "direct";
    let baseline = kernel_prefixes(&ns[0]);
    let cpu_before = cpu_seconds(&pid.to_string(), None);
    let start = Instant::now();
    feeder.birdc(&["enable", "gen"]).unwrap();
    let (mut at_receiver, mut in_kernel) = (None, None);
    wait_for("the receiver and the kernel to hold the table", Duration::from_secs(900), || {
        if at_receiver.is_none() && receiver.protocol("sut").map(|p| p.imported as usize).unwrap_or(0) >= n {
            at_receiver = Some(start.elapsed());
        }
        if in_kernel.is_none() && (direct || kernel_prefixes(&ns[0]) >= baseline + n) {
            in_kernel = Some(start.elapsed());
        }
        Ok(match (at_receiver, in_kernel) {
            (Some(r), Some(k)) => Check::Done((r, k)),
            _ => {
                std::thread::sleep(Duration::from_millis(50));
                Check::Pending(format!("receiver {at_receiver:?}, kernel {in_kernel:?}"))
            }
        })
    })
    .unwrap();
    let cpu = cpu_seconds(&pid.to_string(), None) - cpu_before;
    if stalled {
        // The table piled up for the peer that does not read: it was stalled all along.
        let unsent = unsent_to_stalled(&ns[0]);
        assert!(unsent > 64 * 1024, "only {unsent} octets wait for the stalled peer: it was not stalled");
        println!("  {unsent} octets wait unsent for the stalled peer");
    }
    let metrics = || ns[0].http_get("127.0.0.1:9091".parse().unwrap(), "/metrics").unwrap();
    if tortie.is_some() {
        // The first scrape since the table came: it asks for advertised
        // counts, which a periodic asker gets without waiting for them.
        let scrape = Instant::now();
        let m = metrics();
        let scrape = scrape.elapsed();
        let full = [
            "tortie_route_reconcile_passes_total",
            "tortie_route_reconcile_full_passes_total",
            "tortie_route_event_overruns_total",
            "tortie_route_reconcile_errors_total",
        ]
        .map(|name| format!("{name} {}", metric(&m, name)));
        println!("  {}; first metrics scrape {:.1} ms", full.join(", "), scrape.as_secs_f64() * 1000.0);
    }
    if direct {
        let (receiver, kernel) = (at_receiver.unwrap(), Duration::ZERO);
        return Measured { receiver, kernel, rss_kib: peak_rss_kib(pid), cpu, one: Duration::ZERO };
    }
    // One more prefix on the full table.
    let changes_before = tortie.as_ref().map(|_| metric(&metrics(), "tortie_route_changes_total"));
    let start = Instant::now();
    feeder.birdc(&["enable", "one"]).unwrap();
    // Polled back to back with a FIB lookup of an address in it (`ip route
    // get fibmatch`: the route that matches, not a walk of the whole table
    // as the prefix count is, which at a million routes takes a core).
    let holds_one = || {
        // (An error: no route matches yet.)
        let got = ns[0].ip(&["route", "get", "fibmatch", "240.0.0.129"]);
        got.is_ok_and(|route| route.starts_with("240.0.0.128/25"))
    };
    while !holds_one() {
        assert!(start.elapsed() < Duration::from_secs(60), "the one more prefix never reached the kernel");
        std::thread::sleep(Duration::from_millis(1));
    }
    let one = start.elapsed();
    if let Some(before) = changes_before {
        // The reconciler may still be counting: give it its pass.
        std::thread::sleep(Duration::from_millis(200));
        let m = metrics();
        println!(
            "  one more prefix: {} kernel route change(s), reconcile pass {} µs",
            metric(&m, "tortie_route_changes_total") - before,
            metric(&m, "tortie_route_reconcile_last_pass_microseconds")
        );
    }
    Measured { receiver: at_receiver.unwrap(), kernel: in_kernel.unwrap(), rss_kib: peak_rss_kib(pid), cpu, one }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::var("TORTIE_BENCH_PREFIXES").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let rounds: usize = std::env::var("TORTIE_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    // The Internet-table mix, written once for every round.
    let internet = match std::env::var("TORTIE_BENCH_TABLE").as_deref() {
        Ok("internet") => {
            let path = std::env::temp_dir().join(format!("tortie-daemon-table-{}.inc", std::process::id()));
            let lengths = tortie_lab::table::write_table(&path, tortie_lab::table::TableFamily::Ipv4, 0, n).unwrap();
            println!(
                "daemon end to end: {n} prefixes, the Internet-table mix ({}), {rounds} rounds each",
                tortie_lab::table::describe_lengths(&lengths)
            );
            Some(path)
        }
        Ok("one-per-update") | Err(_) => {
            println!("daemon end to end: {n} prefixes, one per UPDATE, {rounds} rounds each");
            None
        }
        Ok(other) => panic!("TORTIE_BENCH_TABLE={other}: internet or one-per-update"),
    };
    let only = std::env::var("TORTIE_BENCH_SUT").ok();
    let mut results: Vec<(&str, Vec<Measured>)> =
        vec![("bird", Vec::new()), ("tortie", Vec::new()), ("direct", Vec::new()), ("stalled", Vec::new())];
    for round in 0..rounds {
        for (sut, runs) in results.iter_mut().filter(|(sut, _)| only.as_deref().is_none_or(|o| o == *sut)) {
            let m = run(sut, n, internet.as_deref());
            println!(
                "round {round} {sut:6}: receiver {:7.2} s, kernel {:7.2} s, peak RSS {:6.1} MiB, CPU {:6.2} s, one more prefix {:6.1} ms",
                m.receiver.as_secs_f64(),
                m.kernel.as_secs_f64(),
                m.rss_kib as f64 / 1024.0,
                m.cpu,
                m.one.as_secs_f64() * 1000.0
            );
            runs.push(m);
        }
    }
    if let Some(path) = &internet {
        std::fs::remove_file(path).unwrap();
    }
    let med = |runs: &[Measured], f: fn(&Measured) -> f64| median(runs.iter().map(f).collect());
    let (bird, tortie, direct, stalled) = (&results[0].1, &results[1].1, &results[2].1, &results[3].1);
    if !direct.is_empty() {
        let floor = med(direct, |m| m.receiver.as_secs_f64());
        println!("median receiver holds all with no system in the middle (the floor): {floor:.2} s");
    }
    if !stalled.is_empty() && !tortie.is_empty() {
        let (with, without) = (med(stalled, |m| m.receiver.as_secs_f64()), med(tortie, |m| m.receiver.as_secs_f64()));
        println!(
            "median receiver holds all through tortie with a stalled peer {with:.2} s, without {without:.2} s: {:.2}x",
            with / without
        );
    }
    if bird.is_empty() || tortie.is_empty() {
        return;
    }
    for (what, f) in [
        ("receiver holds all, s", (|m: &Measured| m.receiver.as_secs_f64()) as fn(&Measured) -> f64),
        ("kernel holds all, s", |m: &Measured| m.kernel.as_secs_f64()),
        ("peak RSS, MiB", |m: &Measured| m.rss_kib as f64 / 1024.0),
        ("CPU, s", |m: &Measured| m.cpu),
        ("one more prefix, ms", |m: &Measured| m.one.as_secs_f64() * 1000.0),
    ] {
        let (b, t) = (med(bird, f), med(tortie, f));
        println!("median {what:24} BIRD {b:8.2}  tortie {t:8.2}  ratio {:.2}x", t / b);
    }
}
