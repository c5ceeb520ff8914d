//! The cost of BFD sessions: N sessions at 100 ms × 3 between two
//! namespaces joined by a veth (each session between its own pair of
//! addresses), run by `tortie_bfd` on both sides in this process; the
//! process's CPU over 10 s once all are up, and its resident memory before
//! and after, halved for one side.
//!
//! Run: `cargo bench -p tortie-bfd --bench sessions` (root; `TORTIE_BENCH_SESSIONS`, default 100).

#![allow(clippy::unwrap_used)] // a benchmark: a failure aborts the run

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use tortie_bfd::{Peer, State, Timers};
use tortie_lab::Lab;

/// The i-th address of each side: 198.18.a.b on one, 198.19.a.b on the other.
fn addr(side: u8, i: u16) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18 + side, (i / 250) as u8, (i % 250 + 1) as u8))
}

/// This process's CPU time (user + system) and resident set size.
fn usage() -> (Duration, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let rss = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = rss.split_whitespace().nth(1).unwrap().parse().unwrap();
    (Duration::from_secs_f64(ticks as f64 / hz), kib * 1024)
}

fn main() {
    let n: u16 = std::env::var("TORTIE_BENCH_SESSIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let lab = Lab::new("bench-bfd").unwrap();
    let sides = [lab.netns("a").unwrap(), lab.netns("b").unwrap()];
    tortie_lab::veth((&sides[0], "eth0"), (&sides[1], "eth0")).unwrap();
    for (s, ns) in sides.iter().enumerate() {
        for i in 0..n {
            ns.ip(&["addr", "add", &format!("{}/15", addr(s as u8, i)), "dev", "eth0"]).unwrap();
        }
    }
    let timers = Timers {
        desired_min_tx: Duration::from_millis(100),
        required_min_rx: Duration::from_millis(100),
        detect_mult: 3,
    };
    let (_, before_rss) = usage();
    // Each side's task runs on a runtime thread made inside its namespace.
    let runs: Vec<_> = (0..2u8)
        .map(|s| {
            let ns = sides[usize::from(s)].clone();
            std::thread::spawn(move || {
                ns.enter(|| {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(async {
                        let (bfd, _events) = tortie_bfd::start().unwrap();
                        let peers = (0..n).map(|i| Peer { remote: addr(1 - s, i), local: addr(s, i), timers });
                        bfd.set_peers(peers.collect());
                        let started = Instant::now();
                        let mut sessions = bfd.sessions.clone();
                        while sessions.borrow().iter().filter(|v| v.state == State::Up).count() < usize::from(n) {
                            tokio::time::timeout(Duration::from_secs(30), sessions.changed()).await.unwrap().unwrap();
                        }
                        let up = started.elapsed();
                        // Measured while every session runs, then a look at the counters.
                        tokio::time::sleep(Duration::from_secs(12)).await;
                        let down = bfd.sessions.borrow().iter().filter(|v| v.state != State::Up).count();
                        (up, down)
                    })
                })
                .unwrap()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(5));
    let (cpu0, rss) = usage();
    std::thread::sleep(Duration::from_secs(5));
    let (cpu1, _) = usage();
    let results: Vec<(Duration, usize)> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    let per_side_cpu = (cpu1 - cpu0).as_secs_f64() / 5.0 / 2.0;
    println!("{n} BFD sessions at 100 ms x 3, both ends in this process:");
    println!(
        "  all up after {:?} / {:?}; sessions down meanwhile: {:?}",
        results[0].0,
        results[1].0,
        [results[0].1, results[1].1]
    );
    println!("  CPU per side: {:.2} % of one core", per_side_cpu * 100.0);
    println!(
        "  memory per side: {:.2} MiB (RSS {:.1} → {:.1} MiB, halved)",
        (rss.saturating_sub(before_rss)) as f64 / 2.0 / 1048576.0,
        before_rss as f64 / 1048576.0,
        rss as f64 / 1048576.0
    );
}
