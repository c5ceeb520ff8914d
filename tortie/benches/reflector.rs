//! Route reflection at scale, side by side (bgperf-style): N simulated
//! Calico nodes on distinct loopback addresses (127.0.0.0/8), each
//! announcing one /26 and three /32s, against `tortie reflector run`
//! (dynamic neighbours) and against BIRD 2 as a reflector (one `rr client`
//! protocol per node). Measured: the time from the clients starting until
//! every client holds every other client's routes, and the reflector's peak
//! RSS and CPU seconds. The clients are a light load generator: raw BGP
//! over TCP, an OPEN, KEEPALIVEs and one UPDATE out; of what comes in, only
//! the message headers and the UPDATEs' prefixes are read (no attribute is
//! decoded), a bit per route marking what each holds. 5,000 clients receive
//! 100 million routes between them; decoding them whole on one thread made
//! the generator miss its own hold timers.
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
use std::sync::atomic::{AtomicUsize, Ordering};
use tortie_bgp::packet::{Ipv4Nlri, Nlri};
use tortie_lab::peers::Bird;
use tortie_lab::usage::cpu_seconds;
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

fn peak_rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 =
        s.lines().find(|l| l.starts_with("VmHWM:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024.0
}

/// Client `i`'s OPEN (RFC 4271 §4.2): version 4, AS, hold time, BGP id,
/// capabilities IPv4 unicast (RFC 4760) and 4-octet AS (RFC 6793).
fn open(i: usize) -> Vec<u8> {
    let mut caps = vec![1, 4, 0, 1, 0, 1, 65, 4];
    caps.extend(AS.to_be_bytes());
    let mut body = vec![4];
    body.extend((AS as u16).to_be_bytes());
    body.extend(HOLD_TIME.to_be_bytes());
    body.extend(client_addr(i).octets());
    body.push(caps.len() as u8 + 2);
    body.extend([2, caps.len() as u8]);
    body.extend(caps);
    message(1, &body)
}

/// Client `i`'s UPDATE (RFC 4271 §4.3): ORIGIN IGP, an empty AS_PATH,
/// NEXT_HOP itself, LOCAL_PREF 100, and its four prefixes.
fn update(i: usize) -> Vec<u8> {
    let mut attrs = vec![0x40, 1, 1, 0, 0x40, 2, 0, 0x40, 3, 4];
    attrs.extend(client_addr(i).octets());
    attrs.extend([0x40, 5, 4, 0, 0, 0, 100]);
    let mut body = vec![0, 0];
    body.extend((attrs.len() as u16).to_be_bytes());
    body.extend(attrs);
    for nlri in client_routes(i) {
        let len = nlri.prefix.prefix_len();
        body.push(len);
        body.extend(&nlri.prefix.addr().octets()[..usize::from(len).div_ceil(8)]);
    }
    message(2, &body)
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend((19 + body.len() as u16).to_be_bytes());
    m.push(kind);
    m.extend(body);
    m
}

/// The hold time the clients offer; they send a KEEPALIVE every third of it.
const HOLD_TIME: u16 = 240;

/// Marks the prefixes of `field` (RFC 4271 §4.3 encoding) held or not.
fn mark(routes: &mut Routes, mut field: &[u8], on: bool) -> Result<(), String> {
    while let [len, rest @ ..] = field {
        if *len > 32 {
            return Err(format!("a prefix of length {len}"));
        }
        let n = usize::from(*len).div_ceil(8);
        let (bytes, rest) = (rest.get(..n).ok_or("a cut prefix")?, &rest[n..]);
        let mut octets = [0; 4];
        octets[..n].copy_from_slice(bytes);
        let prefix = Ipv4Net::new(Ipv4Addr::from(octets), *len).map_err(|e| e.to_string())?;
        routes.set(&prefix, on);
        field = rest;
    }
    Ok(())
}

/// One client: a session (see `session`), started again a second after
/// it fails (BIRD resets connections that come before its protocols are
/// ready), up to `ATTEMPTS` times. Runs until the bench drops it.
async fn client(i: usize, n: usize, full: Arc<AtomicUsize>, done: Arc<tokio::sync::Notify>) -> Result<(), String> {
    let mut counted = false;
    let mut failed = Vec::new();
    while failed.len() < ATTEMPTS {
        let Err(e) = session(i, n, &mut counted, &full, &done).await;
        failed.push(e);
        RETRIES.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(format!("client {i}: {failed:?}"))
}

/// Sessions a client starts before it gives up.
const ATTEMPTS: usize = 30;

/// Sessions started again, over the run (BIRD's listen queue overflows
/// when thousands connect at once: their handshakes are reset or their SYNs
/// dropped, and TCP tries again after 1, 2, 4… s).
static RETRIES: AtomicUsize = AtomicUsize::new(0);

/// Connects from client `i`'s address, opens, announces its routes once the
/// session is up, and counts what it is sent; `full` goes up (once, for
/// every session of the client: `counted`) when it holds every other
/// client's routes. Returns only with the error that ended the session.
async fn session(
    i: usize,
    n: usize,
    counted: &mut bool,
    full: &AtomicUsize,
    done: &tokio::sync::Notify,
) -> Result<std::convert::Infallible, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket.bind(SocketAddr::new(IpAddr::V4(client_addr(i)), 0)).map_err(|e| e.to_string())?;
    let mut stream = socket.connect(SocketAddr::new(IpAddr::V4(RR), 179)).await.map_err(|e| e.to_string())?;
    stream.write_all(&open(i)).await.map_err(|e| e.to_string())?;
    let (want, mut routes, mut announced) = (4 * (n - 1), Routes::new(n), false);
    let mut buf = bytes::BytesMut::with_capacity(4096);
    let every = Duration::from_secs(u64::from(HOLD_TIME) / 3);
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            read = stream.read_buf(&mut buf) => {
                if read.map_err(|e| e.to_string())? == 0 {
                    return Err(format!("client {i}: the reflector closed the session"));
                }
            }
            _ = keepalive.tick() => {
                stream.write_all(&message(4, &[])).await.map_err(|e| e.to_string())?;
                continue;
            }
        }
        while buf.len() >= 19 {
            let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
            if len < 19 {
                return Err(format!("client {i}: a message of {len} octets"));
            }
            if buf.len() < len {
                break;
            }
            let m = buf.split_to(len);
            match m[18] {
                // The reflector's OPEN: a KEEPALIVE confirms it (RFC 4271 §8.2.2, OpenSent).
                1 => stream.write_all(&message(4, &[])).await.map_err(|e| e.to_string())?,
                // The reflector's KEEPALIVE confirms our OPEN: the session is up.
                4 if !announced => {
                    announced = true;
                    stream.write_all(&update(i)).await.map_err(|e| e.to_string())?;
                }
                2 => {
                    // RFC 4271 §4.3: withdrawn routes, path attributes (skipped), NLRI.
                    let cut = || format!("client {i}: a cut UPDATE");
                    let field = |at: usize| -> Result<(usize, usize), String> {
                        let len = m.get(at..at + 2).ok_or_else(cut)?;
                        Ok((at + 2, at + 2 + usize::from(u16::from_be_bytes([len[0], len[1]]))))
                    };
                    let (from, to) = field(19)?;
                    mark(&mut routes, m.get(from..to).ok_or_else(cut)?, false)?;
                    let (_, nlri) = field(to)?;
                    let before = routes.count;
                    mark(&mut routes, m.get(nlri..).ok_or_else(cut)?, true)?;
                    if before < want
                        && routes.count >= want
                        && !std::mem::replace(counted, true)
                        && full.fetch_add(1, Ordering::Relaxed) + 1 == n
                    {
                        done.notify_one();
                    }
                }
                3 => return Err(format!("client {i}: NOTIFICATION {:?}", &m[19..])),
                _ => {}
            }
        }
    }
}

/// Runs `n` clients against the reflector at 127.0.0.1:179 (inside the
/// caller's namespace); returns the time until all of them are full.
async fn clients(n: usize) -> Duration {
    let (full, done) = (Arc::new(AtomicUsize::new(0)), Arc::new(tokio::sync::Notify::new()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        tasks.spawn(client(i, n, full.clone(), done.clone()));
    }
    tokio::select! {
        () = done.notified() => started.elapsed(),
        Some(ended) = tasks.join_next() => panic!("a client stopped: {ended:?}"),
    }
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
    let pid = daemon.pid();
    let t0 = cpu_seconds(&pid.to_string(), None);
    RETRIES.store(0, Ordering::Relaxed);
    let took = run_clients(ns, n);
    let cpu = cpu_seconds(&pid.to_string(), None) - t0;
    println!(
        "  {name:<7} N={n:<5} converged {:>7.2} s   peak RSS {:>7.1} MiB   CPU {:>6.2} s   sessions started again {}",
        took.as_secs_f64(),
        peak_rss_mib(pid),
        cpu,
        RETRIES.load(Ordering::Relaxed)
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
            // `TORTIE_BENCH_BIN`: a wrapper to run the reflector under (a profiler, heaptrack).
            let bin = std::env::var("TORTIE_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tortie").into());
            let tortie = ns.spawn("tortie-rr", &bin, &args, &env).unwrap();
            measure("tortie", n, &tortie, &ns);
        }
    }
}
