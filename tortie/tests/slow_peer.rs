//! One peer that stops reading stalls nobody else: a node daemon between
//! a BIRD feeder and a healthy BIRD receiver, with a third peer that
//! completes OPEN, sends KEEPALIVEs and never reads again. The feeder's
//! table (one prefix per UPDATE) and later changes reach the receiver, the
//! local API and metrics answer, the feeder's session stays up, and the
//! stalled peer is reset at its send hold time (RFC 9687).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{Cluster, metrics, wait_until};
use serde_json::Value;
use tortie_bgp::packet::{Context, Message, Open};
use tortie_bgp::session::LocalConfig;
use tortie_lab::peers::Bird;
use tortie_lab::{Check, Netns, wait_for};

/// Prefixes the feeder announces, each with its own MED (its own attribute set).
const TABLE: usize = 20_000;
/// The daemon's send hold time in this test, seconds.
const SEND_HOLD: u64 = 15;

fn feeder_config() -> String {
    let mut routes = String::new();
    for i in 0..TABLE {
        routes.push_str(&format!("route 240.{}.{}.0/24 blackhole {{ bgp_med = {i}; }};\n", i / 256, i % 256));
    }
    format!(
        "router id 192.0.2.10;\nprotocol device {{ }}\n\
         protocol static gen {{ ipv4; disabled;\n{routes}}}\n\
         protocol static extra {{ ipv4; disabled;\n route 203.0.113.0/24 blackhole;\n}}\n\
         protocol bgp n1 {{ local as 65010; neighbor 192.0.2.1 as 64512; ipv4 {{ import none; export all; }};\n \
           connect delay time 1; connect retry time 1; error wait time 1, 2; hold time 9; keepalive time 3; graceful restart off; }}\n"
    )
}

const RECEIVER: &str = "router id 192.0.2.11;\nprotocol device { }\n\
    protocol bgp n1 { local as 65011; neighbor 192.0.2.1 as 64512; ipv4 { import all; export none; };\n \
      connect delay time 1; connect retry time 1; error wait time 1, 2; hold time 9; keepalive time 3; graceful restart off; }\n";

const PEERS: &str = "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: feeder}
spec: {node: n1, peerIP: 192.0.2.10, asNumber: 65010}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: receiver}
spec: {node: n1, peerIP: 192.0.2.11, asNumber: 65011}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: stalled}
spec: {node: n1, peerIP: 192.0.2.12, asNumber: 65012}
";

/// The stalled peer: takes tortie's connection on a listener with a tiny
/// receive buffer, answers its OPEN, reads up to the KEEPALIVE that
/// establishes the session, then only writes a KEEPALIVE every 3 s (hold
/// time 9). When `resume` is set it reads again until it holds `TABLE`
/// prefixes of 240.0.0.0/4 (what tortie kept back for it while it was
/// behind), reports that on `caught_up` and stops reading for good, until
/// the connection fails. Returns when it failed.
fn stalled_peer(
    ns: &Netns,
    stop: Arc<AtomicBool>,
    resume: Arc<AtomicBool>,
    caught_up: std::sync::mpsc::Sender<usize>,
) -> std::thread::JoinHandle<Option<Instant>> {
    let listener = ns
        .enter(|| {
            let l = TcpListener::bind("192.0.2.12:179").unwrap();
            tortie_lab::tcp::small_receive_buffer(&l, 4096).unwrap();
            l
        })
        .unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut local = LocalConfig::new(65012, "192.0.2.12".parse().unwrap(), 64512);
        local.hold_time = 9;
        let open: Open = local.open();
        let mut buf = BytesMut::new();
        Message::Open(open).encode(&Context::default(), &mut buf).unwrap();
        Message::Keepalive.encode(&Context::default(), &mut buf).unwrap();
        s.write_all(&buf).unwrap();
        // tortie's OPEN and KEEPALIVE: read until the KEEPALIVE is in (the
        // End-of-RIB may follow in the same read; nothing more is read).
        let mut got = Vec::new();
        let mut chunk = [0u8; 512];
        while !has_keepalive(&got) {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "tortie closed before the session came up");
            got.extend_from_slice(&chunk[..n]);
        }
        let mut keepalive = BytesMut::new();
        Message::Keepalive.encode(&Context::default(), &mut keepalive).unwrap();
        // Nothing is read until `resume`, and nothing after catching up.
        let mut resumed = false;
        while !stop.load(Ordering::Relaxed) {
            if s.write_all(&keepalive).is_err() {
                return Some(Instant::now());
            }
            if !resumed && resume.load(Ordering::Relaxed) {
                resumed = true;
                let _ = caught_up.send(catch_up(&mut s, &keepalive));
            }
            std::thread::sleep(Duration::from_secs(3));
        }
        None
    })
}

/// Reads UPDATEs (writing KEEPALIVEs meanwhile) until `TABLE` prefixes of
/// 240.0.0.0/4 are announced, or 60 s pass; returns how many are.
fn catch_up(s: &mut std::net::TcpStream, keepalive: &[u8]) -> usize {
    let cxt = Context { four_octet_as: true, extended_message: true, ..Context::default() };
    let bench: ipnet::Ipv4Net = "240.0.0.0/4".parse().unwrap();
    let mut held = std::collections::HashSet::new();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let (started, mut last_keepalive) = (Instant::now(), Instant::now());
    while held.len() < TABLE && started.elapsed() < Duration::from_secs(60) {
        if last_keepalive.elapsed() > Duration::from_secs(2) {
            s.write_all(keepalive).unwrap();
            last_keepalive = Instant::now();
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => continue,
        }
        let mut at = 0;
        while let Ok(Some((message, len))) = Message::decode(&buf[at..], &cxt) {
            at += len;
            if let Message::Update(u) = message {
                for n in &u.withdrawn {
                    held.remove(&n.prefix);
                }
                held.extend(u.nlri.iter().map(|n| n.prefix).filter(|p| bench.contains(p)));
            }
        }
        buf.drain(..at);
    }
    held.len()
}

/// Whether the messages in `b` include a KEEPALIVE.
fn has_keepalive(b: &[u8]) -> bool {
    let mut at = 0;
    while let Ok(Some((message, len))) = Message::decode(&b[at..], &Context::default()) {
        if matches!(message, Message::Keepalive) {
            return true;
        }
        at += len;
    }
    false
}

fn status(c: &Cluster) -> Value {
    let run_dir = c.nodes[0].dir().join("run").display().to_string();
    serde_json::from_str(&c.tortie(&["status", "-o", "json", "--run-dir", &run_dir], "")).unwrap()
}

fn peer_info(status: &Value, addr: &str) -> String {
    status["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["address"] == addr))
        .map(|p| format!("{} {}", p["info"].as_str().unwrap_or(""), p["last_error"].as_str().unwrap_or("")))
        .unwrap_or_default()
}

fn imported(bird: &Bird) -> u64 {
    bird.protocol("n1").map(|p| p.imported).unwrap_or(0)
}

#[test]
fn a_peer_that_stops_reading_stalls_nobody_else_and_is_reset_at_its_send_hold_time() {
    let c = Cluster::new("slow_peer", 1);
    // tortie's socket buffers small (this namespace only), so that what it
    // has for a peer that does not read always outgrows them: the kernel's
    // autotuning would otherwise absorb a re-announced table now and then.
    c.nodes[0].exec("sysctl", &["-q", "-w", "net.ipv4.tcp_wmem=4096 16384 65536"]).unwrap();
    let mut ns = Vec::new();
    for (name, addr) in [("feed", "192.0.2.10/24"), ("recv", "192.0.2.11/24"), ("stall", "192.0.2.12/24")] {
        let n = c.lab.netns(name).unwrap();
        c.switch.attach(&n, "eth0").unwrap();
        n.add_addr("eth0", addr.parse().unwrap()).unwrap();
        ns.push(n);
    }
    let (stop, resume) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (caught_up_tx, caught_up) = std::sync::mpsc::channel();
    let stalled = stalled_peer(&ns[2], stop.clone(), resume.clone(), caught_up_tx);
    let receiver = Bird::start_with_config(&ns[1], "receiver", RECEIVER).unwrap();
    let feeder = Bird::start_with_config(&ns[0], "feeder", &feeder_config()).unwrap();
    c.apply(PEERS);
    let daemon = c.start_with(0, &["--send-hold-time", &SEND_HOLD.to_string()]);
    wait_for("every session Established", Duration::from_secs(60), || {
        daemon.check_running()?;
        if !c.nodes[0].dir().join("run/tortie.sock").exists() {
            return Ok(Check::Pending("the API socket".into()));
        }
        let s = status(&c);
        let up = ["192.0.2.10", "192.0.2.11", "192.0.2.12"].iter().all(|a| peer_info(&s, a).starts_with("Established"));
        Ok(if up { Check::Done(()) } else { Check::Pending(s.to_string()) })
    })
    .unwrap();

    // The table, one prefix per UPDATE, while the stalled peer is connected.
    let started = Instant::now();
    feeder.birdc(&["enable", "gen"]).unwrap();
    wait_for("the receiver to hold the feeder's table", Duration::from_secs(120), || {
        daemon.check_running()?;
        let n = imported(&receiver);
        Ok(if n as usize >= TABLE { Check::Done(()) } else { Check::Pending(format!("{n} of {TABLE}")) })
    })
    .unwrap();
    let table_time = started.elapsed();
    // It really is stalled: its receive queue is full and tortie still has more for it.
    let queues = ns[2].exec("ss", &["-tnH", "state", "established", "sport", "= :179"]).unwrap();
    let recv_q: u64 = queues.split_whitespace().next().and_then(|q| q.parse().ok()).unwrap_or(0);
    assert!(recv_q > 0, "the stalled peer's receive queue: {queues}");
    assert!(peer_info(&status(&c), "192.0.2.12").starts_with("Established"), "the stalled peer is still up");

    // A change reaches the receiver, and its withdrawal too.
    let before = imported(&receiver);
    let t = Instant::now();
    feeder.birdc(&["enable", "extra"]).unwrap();
    wait_until("the change at the receiver", || imported(&receiver) == before + 1);
    let change_time = t.elapsed();
    feeder.birdc(&["disable", "extra"]).unwrap();
    wait_until("the withdrawal at the receiver", || imported(&receiver) == before);

    // The local API and metrics answer; the feeder's session stayed up all along.
    let m = metrics(&c.nodes[0]);
    for addr in ["192.0.2.10", "192.0.2.11"] {
        let line = m.lines().find(|l| l.starts_with("tortie_bgp_session_established") && l.contains(addr));
        assert!(line.is_some_and(|l| l.ends_with(" 1")), "{addr} in:\n{m}");
    }
    let feed = feeder.protocol("n1").unwrap();
    assert!(feed.info.contains("Established") && feed.last_error.is_none(), "{feed:?}");

    // Once the stalled peer reads again it gets the whole table (what was
    // kept back for it, sent from the Loc-RIB), and then falls behind again
    // when the feeder withdraws and announces it all again.
    resume.store(true, Ordering::Relaxed);
    let held = caught_up.recv_timeout(Duration::from_secs(90)).unwrap();
    assert_eq!(held, TABLE, "the stalled peer caught up on the table once it read again");
    assert!(peer_info(&status(&c), "192.0.2.12").starts_with("Established"));
    feeder.birdc(&["disable", "gen"]).unwrap();
    wait_until("the withdrawals at the receiver", || imported(&receiver) + TABLE as u64 == before);
    let stall_began = Instant::now();
    feeder.birdc(&["enable", "gen"]).unwrap();
    wait_until("the table again at the receiver", || imported(&receiver) == before);

    // The stalled peer is reset at its send hold time.
    wait_for("the stalled peer's reset", Duration::from_secs(SEND_HOLD + 30), || {
        let info = peer_info(&status(&c), "192.0.2.12");
        Ok(if info.contains("Send hold timer expired") { Check::Done(()) } else { Check::Pending(info) })
    })
    .unwrap();
    let reset_after = stall_began.elapsed();
    // Its next KEEPALIVEs find the connection closed.
    wait_until("the stalled peer to see its connection closed", || stalled.is_finished());
    stop.store(true, Ordering::Relaxed);
    let closed = stalled.join().unwrap();
    assert!(closed.is_some(), "the stalled peer saw its connection closed");
    assert!(!daemon.log().contains('\x1b'), "a log file gets no terminal colours");
    assert!(daemon.log().contains("send hold time"), "the reset is logged with its reason:\n{}", daemon.log_tail());
    println!(
        "table of {TABLE} at the receiver in {table_time:?}; a change in {change_time:?}; stalled peer reset {reset_after:?} after the table (send hold {SEND_HOLD} s)"
    );
}
