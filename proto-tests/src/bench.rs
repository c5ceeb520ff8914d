//! What the side-by-side propagation benchmarks share: BIRD's route count
//! and peak memory from `/proc` (the injected tables: `tortie_lab::table`).

use std::time::{Duration, Instant};

use tortie_lab::Netns;
use tortie_lab::peers::{Bird, BirdControl};

/// BIRD timers for benchmark sessions (long hold times: nothing should flap under load).
pub const BENCH_TIMERS: &str = "connect delay time 1; connect retry time 1; error wait time 1, 2; hold time 90; keepalive time 30; graceful restart off;";

/// Waits until a BIRD monitor holds `n` routes from the system under test
/// and returns when it did. Polls every 10 ms over control connections
/// (a `birdc` process per poll would cost the monitor more than the poll
/// saves) the import counter of the monitor's protocol `sut` (`show route
/// count` would walk the whole table, taking the monitor's CPU from the
/// import being timed); every 0.1 s it pokes the injectors, which keeps
/// BIRD 2.0.12 from holding its last routes back (LAB.md).
pub fn wait_for_prefixes(monitor: &Bird, injectors: &[&Bird], n: u64, timeout: Duration) -> Instant {
    let start = Instant::now();
    let mut monitor = monitor.control().unwrap_or_else(|e| panic!("the monitor's control socket: {e}"));
    let mut injectors: Vec<BirdControl> =
        injectors.iter().map(|b| b.control().unwrap_or_else(|e| panic!("an injector's control socket: {e}"))).collect();
    let mut poll = 0u64;
    loop {
        if poll.is_multiple_of(10) {
            for injector in &mut injectors {
                let _ = injector.command("show status");
            }
        }
        let count = monitor.protocol("sut").map_or(0, |p| p.imported);
        if count >= n {
            return Instant::now();
        }
        assert!(start.elapsed() < timeout, "the monitor holds {count} of {n} prefixes after {timeout:?}");
        std::thread::sleep(POLL);
        poll += 1;
    }
}

/// How often `wait_for_prefixes` asks the monitor.
const POLL: Duration = Duration::from_millis(10);

/// The system under test's peak memory: BIRD's own peak RSS, or for the
/// in-process tortie this process's peak above what was resident at
/// `start` (taken before tortie starts).
pub struct PeakRss {
    baseline_kib: u64,
}

impl PeakRss {
    /// Starts measuring: what an earlier round freed goes back to the
    /// kernel, and the process's peak (VmHWM) is reset (`clear_refs` 5).
    pub fn start() -> PeakRss {
        // SAFETY: malloc_trim(3) only releases free memory.
        unsafe { libc::malloc_trim(0) };
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        PeakRss { baseline_kib: kib("self", "VmRSS:") }
    }

    /// The peak in KiB: of `bird` when BIRD is the system under test, else tortie's.
    pub fn kib(&self, bird: Option<&Bird>) -> u64 {
        match bird {
            Some(b) => kib(&b.daemon().pid().to_string(), "VmHWM:"),
            None => kib("self", "VmHWM:").saturating_sub(self.baseline_kib),
        }
    }
}

/// How many alternating rounds a side-by-side bench runs
/// (`TORTIE_BENCH_ROUNDS`): one run swings ±15 % on a shared 2-core machine.
pub fn rounds(default: usize) -> usize {
    std::env::var("TORTIE_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).filter(|&r| r > 0).unwrap_or(default)
}

/// The median of `values` (the upper one of an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS:`, `VmHWM:`); `pid` may be `self`.
fn kib(pid: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
}

/// Runs tortie's speaker in `ns` with `neighbors` (on its own thread, as
/// in the daemon; best-path changes drained on a two-thread runtime, felix's
/// place) until `stop` fires.
pub fn run_speaker(
    ns: &Netns,
    neighbors: Vec<tortie_bgp::speaker::Neighbor>,
    stop: std::sync::mpsc::Receiver<()>,
) -> std::thread::JoinHandle<()> {
    use tortie_bgp::speaker::{self, SpeakerCommand};
    let ns = ns.clone();
    std::thread::spawn(move || {
        let run = move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            rt.block_on(async move {
                let (best_tx, mut best_rx) = tokio::sync::mpsc::channel(4096);
                tokio::spawn(async move { while best_rx.recv().await.is_some() {} });
                let listen = std::net::SocketAddr::from(([0, 0, 0, 0], 179));
                let s = speaker::spawn(std::net::Ipv4Addr::new(192, 0, 2, 1), 1, best_tx, Some(listen))
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                for n in neighbors {
                    let _ = s.commands.send(SpeakerCommand::AddNeighbor(Box::new(n))).await;
                }
                let _ = tokio::task::spawn_blocking(move || stop.recv()).await;
                Ok::<(), std::io::Error>(())
            })
        };
        if let Err(e) = ns.enter(run).map(|r| r.map_err(|e| e.to_string())) {
            panic!("the speaker under test failed: {e}");
        }
    })
}
