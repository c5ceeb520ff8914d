//! Route reflection at scale, side by side (bgperf-style): N simulated
//! Calico nodes on distinct loopback addresses (127.0.0.0/8), each
//! announcing one /26 and three /32s, against `tortie reflector run`
//! (dynamic neighbours) and against BIRD 2 as a reflector (one `rr client`
//! protocol per node). Measured: the time from the clients starting until
//! every client holds every other client's routes, and the reflector's peak
//! RSS and CPU seconds. The clients are a load generator on `tortie-bgp`'s
//! session layer: they count prefixes and keep no RIB, so the reflector is
//! the bottleneck.
//!
//! Run: `cargo bench -p tortie --bench reflector` (root;
//! `TORTIE_BENCH_CLIENTS=100,500,1000` by default; `TORTIE_BENCH_SUT=tortie`
//! or `bird` runs one side alone).

#![allow(clippy::unwrap_used)] // a benchmark: a failure aborts the run

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use tokio::sync::mpsc;
use tortie_bgp::packet::{Ipv4Nlri, Message, Nlri, Origin, PathAttrs, Update};
use tortie_bgp::session::peer::{self, PeerCommand, PeerConfig, PeerEvent};
use tortie_bgp::session::socket::SocketOptions;
use tortie_bgp::session::{FsmConfig, LocalConfig};
use tortie_lab::peers::Bird;
use tortie_lab::{Daemon, Lab, Netns};

const AS: u32 = 64512;
const CLUSTER_ID: &str = "203.0.113.250";
const RR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// Client `i`'s address: 127.1.x.y.
fn client_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// Client `i`'s routes: its /26 and three /32s in it (198.18.0.0/15).
fn client_routes(i: usize) -> Vec<Ipv4Nlri> {
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + 64 * i as u32;
    let mut v = vec![Nlri::new(Ipv4Net::new(Ipv4Addr::from(base), 26).unwrap())];
    v.extend((1..=3).map(|k| Nlri::new(Ipv4Net::new(Ipv4Addr::from(base + k), 32).unwrap())));
    v
}

/// The routes one client holds, a bit per route of the 4·n clients send.
struct Routes {
    bits: Vec<u64>,
    count: usize,
}

impl Routes {
    fn new(n: usize) -> Routes {
        Routes { bits: vec![0; (4 * n).div_ceil(64)], count: 0 }
    }

    /// Client `i`'s /26 is route 4·i, its /32s 4·i+1..=3 (see `client_routes`).
    fn set(&mut self, prefix: &Ipv4Net, on: bool) {
        let offset = u32::from(prefix.addr()).wrapping_sub(u32::from(Ipv4Addr::new(198, 18, 0, 0))) as usize;
        let slot = if prefix.prefix_len() == 26 { 0 } else { offset % 64 };
        let index = 4 * (offset / 64) + slot;
        let Some(word) = self.bits.get_mut(index / 64) else { return };
        let bit = 1u64 << (index % 64);
        match (on, *word & bit != 0) {
            (true, false) => self.count += 1,
            (false, true) => self.count -= 1,
            _ => {}
        }
        if on {
            *word |= bit;
        } else {
            *word &= !bit;
        }
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn peak_rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 =
        s.lines().find(|l| l.starts_with("VmHWM:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024.0
}

/// Runs `n` clients against the reflector at 127.0.0.1:179 (inside the
/// caller's namespace); returns the time until all of them are full.
async fn clients(n: usize) -> Duration {
    let (tx, mut rx) = mpsc::channel(65_536);
    let started = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let addr = client_addr(i);
        let config = PeerConfig {
            name: i.to_string(),
            remote: SocketAddr::new(IpAddr::V4(RR), 179),
            local_addr: Some(IpAddr::V4(addr)),
            local: LocalConfig::new(AS, addr, AS),
            fsm: FsmConfig { connect_retry: Duration::from_secs(1), ..FsmConfig::default() },
            socket: SocketOptions::default(),
        };
        let h = peer::spawn(config, tx.clone());
        h.commands.send(PeerCommand::Start).await.unwrap();
        handles.push(h);
    }
    let want = 4 * (n - 1);
    // Which of the 4·n routes each client holds: a bit each (5,000 clients
    // hold 100 million routes between them).
    let mut held: Vec<Routes> = (0..n).map(|_| Routes::new(n)).collect();
    let mut full = 0;
    while full < n {
        let Some(event) = rx.recv().await else { break };
        match event {
            PeerEvent::Up { peer, .. } => {
                let i: usize = peer.parse().unwrap();
                let mut attrs = PathAttrs { origin: Some(Origin::Igp), local_pref: Some(100), ..PathAttrs::default() };
                attrs.as_path = Some(Default::default());
                attrs.next_hop = Some(client_addr(i));
                let update = Update::announce(Arc::new(attrs), client_routes(i));
                handles[i].commands.send(PeerCommand::Send(Box::new(Message::Update(update)))).await.unwrap();
            }
            PeerEvent::Update { peer, update } => {
                let i: usize = peer.parse().unwrap();
                let before = held[i].count;
                for w in &update.withdrawn {
                    held[i].set(&w.prefix, false);
                }
                for a in &update.nlri {
                    held[i].set(&a.prefix, true);
                }
                if before < want && held[i].count >= want {
                    full += 1;
                }
            }
            PeerEvent::Down { peer, reason, .. } => panic!("client {peer} lost its session: {reason}"),
            _ => {}
        }
    }
    started.elapsed()
}

fn run_clients(ns: &Netns, n: usize) -> Duration {
    ns.enter(|| {
        raise_nofile();
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap().block_on(clients(n))
    })
    .unwrap()
}

fn raise_nofile() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

fn bird_config(n: usize) -> String {
    let mut c = format!("router id {RR};\nprotocol device {{ }}\nprotocol direct {{ ipv4; interface \"lo\"; }}\n");
    for i in 0..n {
        writeln!(
            c,
            "protocol bgp c{i} {{ local {RR} as {AS}; neighbor {} as {AS}; rr client; rr cluster id {CLUSTER_ID}; \
             ipv4 {{ import all; export where source = RTS_BGP; }}; passive on; graceful restart off; }}",
            client_addr(i)
        )
        .unwrap();
    }
    c
}

fn measure(name: &str, n: usize, daemon: &Daemon, ns: &Netns) {
    std::thread::sleep(Duration::from_millis(500));
    let (pid, t0) = (daemon.pid(), cpu_ticks(daemon.pid()));
    let took = run_clients(ns, n);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (cpu_ticks(pid) - t0) as f64 / hz;
    println!(
        "  {name:<7} N={n:<5} converged {:>7.2} s   peak RSS {:>7.1} MiB   CPU {:>6.2} s",
        took.as_secs_f64(),
        peak_rss_mib(pid),
        cpu
    );
}

fn main() {
    raise_nofile();
    let sizes: Vec<usize> = std::env::var("TORTIE_BENCH_CLIENTS")
        .unwrap_or_else(|_| "100,500,1000".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    println!("route reflector, N clients × (one /26 + three /32s), every client learns every other's routes");
    let only = std::env::var("TORTIE_BENCH_SUT").ok();
    let runs = |sut: &str| only.as_deref().is_none_or(|o| o == sut);
    for n in sizes {
        if runs("bird") {
            let lab = Lab::new("bench-rr-bird").unwrap();
            let ns = lab.netns("rr").unwrap();
            let bird = Bird::start_with_config(&ns, "bird-rr", &bird_config(n)).unwrap();
            measure("BIRD", n, bird.daemon(), &ns);
        }
        if runs("tortie") {
            let lab = Lab::new("bench-rr-tortie").unwrap();
            let ns = lab.netns("rr").unwrap();
            let url = format!("sqlite://{}/store.db", lab.dir().display());
            let run = ns.dir().join("run");
            let args = ["reflector", "run", "--name", "rr", "--ip", "127.0.0.1/8", "--cluster-id", CLUSTER_ID];
            let args = [&args[..], &["--listen-range", "127.0.0.0/8", "--run-dir", run.to_str().unwrap()]].concat();
            let env = [("TORTIE_DATASTORE", url.as_str()), ("TORTIE_LOG", "warn")];
            let tortie = ns.spawn("tortie-rr", env!("CARGO_BIN_EXE_tortie"), &args, &env).unwrap();
            measure("tortie", n, &tortie, &ns);
        }
    }
}
