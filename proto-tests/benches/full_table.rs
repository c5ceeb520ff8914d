//! Full-table propagation, side by side (the method of the public bgperf
//! benchmarks): a BIRD injector announces N IPv4 prefixes (300 distinct
//! attribute sets, lengths /16–/24 in the Internet table's shape; or, with
//! `TORTIE_BENCH_FAMILY=ipv6`, IPv6 prefixes of 3fff::/20, /36–/44, over
//! IPv6 sessions) to the system under test, which re-advertises them to a
//! BIRD monitor. Measured: the time from the injector's first UPDATE on the
//! wire (and from enabling its table) until the monitor holds every prefix,
//! and the system under test's peak RSS; BIRD 2 and tortie take turns as the
//! system under test. A third row, `direct`, has the injector peer with the
//! monitor itself (multihop, the middle namespace only forwarding packets):
//! the floor under both, what the two BIRDs take with nothing between them.
//!
//! Run (as root): `cargo bench -p tortie-proto-tests --bench full_table`
//! (`TORTIE_BENCH_PREFIXES`, default 1000000; `TORTIE_BENCH_ROUNDS`, default
//! 5 alternating rounds compared by their medians; `TORTIE_BENCH_SUT=tortie`,
//! `bird` or `direct` runs one side alone). tortie runs in this process with malloc tuned
//! as the daemon tunes it.

#![allow(clippy::unwrap_used)] // a benchmark: a failure aborts the run

use std::time::{Duration, Instant};

use tortie_lab::peers::{BgpPeer, Bird};
use tortie_lab::table::{TableFamily, describe_lengths, write_table};
use tortie_lab::usage::cpu_seconds;
use tortie_lab::{Check, Lab, veth, wait_for};
use tortie_proto_tests::bench::{BENCH_TIMERS, PeakRss, median, rounds, run_speaker, wait_for_prefixes};
use tortie_proto_tests::tortie_neighbor;

/// A BGP neighbour in BIRD's terms: address, AS, extra options.
type Peer = (&'static str, u32, &'static str);

/// The two links' addresses (system under test, injector or monitor) and
/// BIRD's channel name, per family: an IPv6 table runs over IPv6 sessions.
struct Links {
    channel: &'static str,
    inj: (&'static str, &'static str),
    mon: (&'static str, &'static str),
    len: u8,
}

impl Links {
    fn of(family: TableFamily) -> Links {
        match family {
            TableFamily::Ipv4 => Links {
                channel: "ipv4",
                inj: ("192.0.2.1", "192.0.2.2"),
                mon: ("198.51.100.1", "198.51.100.2"),
                len: 24,
            },
            TableFamily::Ipv6 => Links {
                channel: "ipv6",
                inj: ("2001:db8::1", "2001:db8::2"),
                mon: ("2001:db8:1::1", "2001:db8:1::2"),
                len: 64,
            },
        }
    }

    /// Whom the injector and the monitor peer with: the system under
    /// test (AS 65001), or, `direct`, each other across the forwarding middle.
    fn peers(&self, direct: bool) -> (Peer, Peer) {
        if direct {
            ((self.mon.1, 65003, "multihop;"), (self.inj.1, 65002, "multihop;"))
        } else {
            ((self.inj.0, 65001, ""), (self.mon.0, 65001, ""))
        }
    }

    fn injector_config(&self, include: &str, (to, asn, hop): Peer) -> String {
        let ch = self.channel;
        format!(
            "router id 192.0.2.2;\nprotocol device {{ }}\nprotocol static gen {{\n  {ch};\n  disabled;\ninclude \"{include}\";\n}}\n\
             protocol bgp sut {{ local as 65002; neighbor {to} as {asn}; {hop} {ch} {{ import none; export all; }}; {BENCH_TIMERS} }}\n"
        )
    }

    fn monitor_config(&self, (to, asn, hop): Peer) -> String {
        let ch = self.channel;
        format!(
            "router id 198.51.100.2;\nprotocol device {{ }}\n\
             protocol bgp sut {{ local as 65003; neighbor {to} as {asn}; {hop} {ch} {{ import all; export none; }}; {BENCH_TIMERS} }}\n"
        )
    }

    fn bird_sut_config(&self) -> String {
        let (ch, (_, inj), (_, mon)) = (self.channel, self.inj, self.mon);
        format!(
            "router id 192.0.2.1;\nprotocol device {{ }}\n\
             protocol bgp inj {{ local as 65001; neighbor {inj} as 65002; {ch} {{ import all; export none; }}; {BENCH_TIMERS} }}\n\
             protocol bgp mon {{ local as 65001; neighbor {mon} as 65003; {ch} {{ import none; export all; }}; {BENCH_TIMERS} }}\n"
        )
    }
}

/// (enable → monitor has all, first UPDATE on the wire → monitor has all, peak RSS KiB).
/// One run's measures.
struct Measured {
    /// From `enable` of the injector's table until the monitor holds every prefix.
    from_enable: Duration,
    /// From the injector's first UPDATE on the wire until then.
    from_first: Duration,
    /// The system under test's peak RSS, KiB.
    rss_kib: u64,
    /// The system under test's CPU seconds over the run.
    cpu: f64,
    /// The monitor's CPU seconds over the run: the work the system under
    /// test's UPDATEs cause downstream.
    monitor_cpu: f64,
}

fn run(sut: &str, n: usize, include: &std::path::Path, links: &Links) -> Measured {
    let lab = Lab::new(&format!("full_table_{sut}")).unwrap();
    let (inj, mid, mon) = (lab.netns("inj").unwrap(), lab.netns("sut").unwrap(), lab.netns("mon").unwrap());
    veth((&inj, "eth0"), (&mid, "to-inj")).unwrap();
    veth((&mon, "eth0"), (&mid, "to-mon")).unwrap();
    for (ns, dev, a) in [
        (&inj, "eth0", links.inj.1),
        (&mid, "to-inj", links.inj.0),
        (&mon, "eth0", links.mon.1),
        (&mid, "to-mon", links.mon.0),
    ] {
        ns.add_addr(dev, format!("{a}/{}", links.len).parse().unwrap()).unwrap();
    }
    let direct = sut == "direct";
    let (to_sut, from_sut) = links.peers(direct);
    let peak = PeakRss::start();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
    let (bird_sut, tortie) = if direct {
        mid.enable_forwarding().unwrap();
        inj.add_route(&format!("default via {}", links.inj.0)).unwrap();
        mon.add_route(&format!("default via {}", links.mon.0)).unwrap();
        (None, None)
    } else if sut == "bird" {
        (Some(Bird::start_with_config(&mid, "sut", &links.bird_sut_config()).unwrap()), None)
    } else {
        let neighbors = vec![
            tortie_neighbor("inj", links.inj.1, links.inj.0, 65002, 90),
            tortie_neighbor("mon", links.mon.1, links.mon.0, 65003, 90),
        ];
        (None, Some(run_speaker(&mid, neighbors, stop_rx)))
    };
    let monitor = Bird::start_with_config(&mon, "monitor", &links.monitor_config(from_sut)).unwrap();
    let injector =
        Bird::start_with_config(&inj, "injector", &links.injector_config(&include.display().to_string(), to_sut))
            .unwrap();
    injector.wait_established(to_sut.0.parse().unwrap(), Duration::from_secs(60)).unwrap();
    monitor.wait_established(from_sut.0.parse().unwrap(), Duration::from_secs(60)).unwrap();
    // The first UPDATE on the wire: a capture on the injector's link that
    // stops at the first injector packet bigger than an OPEN or KEEPALIVE.
    // tcpdump, not tshark: tshark's start-up (its dissectors) ran on into
    // the measured window, a core for tens of milliseconds.
    let capture = inj
        .spawn(
            "first-update",
            "tcpdump",
            &["-i", "eth0", "-n", "-l", "-c", "1", "-tt", &format!("src host {} and greater 300", links.inj.1)],
            &[],
        )
        .unwrap();
    wait_for("the capture to start", Duration::from_secs(30), || {
        Ok(if capture.log().contains("listening on") { Check::Done(()) } else { Check::Pending(capture.log()) })
    })
    .unwrap();
    let sut_cpu = || match &bird_sut {
        Some(b) => cpu_seconds(&b.daemon().pid().to_string(), None),
        None if direct => 0.0,
        // The speaker's thread and the runtime that takes its best paths
        // (felix's place), not the bench's own threads.
        None => cpu_seconds("self", Some("bgp-speaker")) + cpu_seconds("self", Some("tokio-rt-worker")),
    };
    let monitor_cpu = || cpu_seconds(&monitor.daemon().pid().to_string(), None);
    let (cpu_before, monitor_before) = (sut_cpu(), monitor_cpu());
    let start = Instant::now();
    injector.birdc(&["enable", "gen"]).unwrap();
    let done_at = wait_for_prefixes(&monitor, &[&injector], n as u64, Duration::from_secs(600));
    let elapsed = done_at - start;
    let (cpu, monitor_cpu) = (sut_cpu() - cpu_before, monitor_cpu() - monitor_before);
    let done =
        (std::time::SystemTime::now() - done_at.elapsed()).duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    // The capture may print its packet after a short table is already
    // through; its line starts with the time (`-tt`: seconds since the epoch).
    let first_update: f64 = wait_for("the first UPDATE's capture", Duration::from_secs(10), || {
        let log = capture.log();
        Ok(match log.lines().find_map(|l| l.split_whitespace().next()?.parse().ok()) {
            Some(t) => Check::Done(t),
            None => Check::Pending(log),
        })
    })
    .unwrap();
    let from_first = Duration::from_secs_f64((done - first_update).max(0.0));
    let rss_kib = if direct { 0 } else { peak.kib(bird_sut.as_ref()) };
    drop(stop_tx);
    if let Some(t) = tortie {
        t.join().unwrap();
    }
    Measured { from_enable: elapsed, from_first, rss_kib, cpu, monitor_cpu }
}

fn main() {
    tortie_bgp::malloc::tune();
    // criterion-style arguments (`--bench`) are accepted and ignored.
    let n: usize = std::env::var("TORTIE_BENCH_PREFIXES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("tortie-full-table-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let include = dir.join("table.inc");
    let family = TableFamily::from_env();
    let links = Links::of(family);
    println!("{family:?}, {}", describe_lengths(&write_table(&include, family, 0, n).unwrap()));
    // `TORTIE_BENCH_SUT=tortie` (or `bird`) runs one side alone, e.g. under a profiler.
    let only = std::env::var("TORTIE_BENCH_SUT").ok();
    let rounds = rounds(5);
    let suts: Vec<&str> =
        ["bird", "tortie", "direct"].into_iter().filter(|s| only.as_deref().is_none_or(|o| o == *s)).collect();
    let mut rows = Vec::new();
    for round in 1..=rounds {
        for &sut in &suts {
            rows.push((sut, round, run(sut, n, &include, &links)));
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    println!(
        "\n| system under test | round | prefixes | enable → monitor has all | first UPDATE → monitor has all | peak RSS | CPU | monitor CPU |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (sut, round, m) in &rows {
        println!(
            "| {sut} | {round} | {n} | {:.2} s | {:.2} s | {:.0} MiB | {:.3} s | {:.3} s |",
            m.from_enable.as_secs_f64(),
            m.from_first.as_secs_f64(),
            m.rss_kib as f64 / 1024.0,
            m.cpu,
            m.monitor_cpu
        );
    }
    let median = |sut: &str| {
        let of = |f: fn(&Measured) -> f64| median(rows.iter().filter(|r| r.0 == sut).map(|r| f(&r.2)).collect());
        [
            of(|m| m.from_enable.as_secs_f64()),
            of(|m| m.from_first.as_secs_f64()),
            of(|m| m.rss_kib as f64),
            of(|m| m.cpu),
            of(|m| m.monitor_cpu),
        ]
    };
    for &sut in &suts {
        let [t, f, m, c, mc] = median(sut);
        println!("| {sut} | median | {n} | {t:.2} s | {f:.2} s | {:.0} MiB | {c:.3} s | {mc:.3} s |", m / 1024.0);
    }
    if !(suts.contains(&"bird") && suts.contains(&"tortie")) {
        return;
    }
    let ([bt, bf, bm, bc, _], [tt, tf, tm, tc, _]) = (median("bird"), median("tortie"));
    println!(
        "\ntortie/BIRD, medians of {rounds}: time {:.2}x (from the first UPDATE {:.2}x), memory {:.2}x, CPU {:.2}x",
        tt / bt,
        tf / bf,
        tm / bm.max(1.0),
        tc / bc
    );
    if suts.contains(&"direct") {
        let [dt, df, ..] = median("direct");
        println!(
            "the floor (injector straight to monitor) against BIRD between them: time {:.2}x (from the first UPDATE {:.2}x)",
            dt / bt,
            df / bf
        );
    }
}
