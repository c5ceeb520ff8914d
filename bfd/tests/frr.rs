//! tortie's BFD against FRR's bfdd over a veth, in namespaces: the session
//! comes up with the negotiated intervals; each side takes it down when the
//! other goes silent; malformed packets and a wrong TTL are discarded and
//! counted.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tortie_bfd::{Diag, Malformed, Peer, State, Timers};
use tortie_lab::peers::Frr;
use tortie_lab::{Check, Lab, wait_for};

const OURS: &str = "192.0.2.1";
const FRR: &str = "192.0.2.2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// FRR's view of its peer 192.0.2.1 (`show bfd peers json`).
fn frr_peer(frr: &Frr) -> serde_json::Value {
    let out = frr.vtysh("show bfd peers json").unwrap();
    let all: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    all.into_iter().find(|p| p["peer"] == OURS).unwrap_or_default()
}

/// Sends `payload` to our port 3784 from FRR's namespace with `ttl`.
fn inject(lab_ns: &tortie_lab::Netns, payload: &[u8], ttl: u8) {
    let bytes: Vec<String> = payload.iter().map(u8::to_string).collect();
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, {ttl})\ns.bind(('{FRR}', 49999))\n\
         s.sendto(bytes([{}]), ('{OURS}', 3784))\n",
        bytes.join(",")
    );
    lab_ns.exec("python3", &["-c", &script]).unwrap();
}

/// The next state change, within 10 s.
async fn next(events: &mut tokio::sync::mpsc::UnboundedReceiver<tortie_bfd::Event>) -> tortie_bfd::Event {
    tokio::time::timeout(Duration::from_secs(10), events.recv()).await.unwrap().unwrap()
}

#[test]
fn a_session_with_frr_comes_up_and_either_side_detects_the_others_silence() {
    let lab = Lab::new("bfd-frr").unwrap();
    let (ours, theirs) = (lab.netns("ours").unwrap(), lab.netns("frr").unwrap());
    tortie_lab::veth((&ours, "eth0"), (&theirs, "eth0")).unwrap();
    ours.add_addr("eth0", format!("{OURS}/24").parse().unwrap()).unwrap();
    theirs.add_addr("eth0", format!("{FRR}/24").parse().unwrap()).unwrap();
    let mut frr = Frr::start_with_config(&theirs, "frr-bfd", "frr defaults traditional\nhostname frr\n").unwrap();
    let bfdd = format!(
        "bfd\n peer {OURS} local-address {FRR}\n  receive-interval 300\n  transmit-interval 300\n  detect-multiplier 3\n !\n!\n"
    );
    frr.start_bfdd(&theirs, &bfdd).unwrap();

    // The session's task runs on a worker thread (in our namespace, like
    // the thread that makes it); this one may block on FRR's vty meanwhile.
    let runtime = || tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    ours.enter(|| {
        runtime().block_on(async {
            let (bfd, mut events) = tortie_bfd::start().unwrap();
            let peer = Peer { remote: ip(FRR), local: ip(OURS), timers: Timers::default() };
            bfd.set_peers(vec![peer]);
            let mut event = next(&mut events).await;
            while event.change.to != State::Up {
                assert_eq!(event.change.to, State::Init, "Down → Init → Up, or Down → Up");
                event = next(&mut events).await;
            }
            // Both at 300 ms × 3 once the Poll Sequence settled.
            wait_for("FRR to see the session up at 300 ms", Duration::from_secs(10), || {
                let p = frr_peer(&frr);
                let fast = p["status"] == "up" && p["transmit-interval"] == 300 && p["receive-interval"] == 300;
                Ok(if fast { Check::Done(()) } else { Check::Pending(p.to_string()) })
            })
            .unwrap();
            assert_eq!(frr_peer(&frr)["remote-detect-multiplier"], 3, "{}", frr_peer(&frr));
            let view = bfd.sessions.borrow().first().cloned().unwrap();
            assert_eq!((view.state, view.tx_interval), (State::Up, Some(Duration::from_millis(300))), "{view:?}");
            assert_eq!(view.detection_time, Some(Duration::from_millis(900)));

            // Malformed packets and a wrong TTL: discarded, counted, the session unharmed.
            let good = tortie_bfd::Control {
                diag: Diag::None,
                state: State::Up,
                poll: false,
                final_: false,
                control_plane_independent: false,
                demand: false,
                detect_mult: 3,
                my_discriminator: 99,
                your_discriminator: view.discriminators.0,
                desired_min_tx: 300_000,
                required_min_rx: 300_000,
                required_min_echo_rx: 0,
            }
            .encode();
            let mut bad_version = good;
            bad_version[0] = 0x40;
            let mut no_mult = good;
            no_mult[2] = 0;
            let mut no_discr = good;
            no_discr[4..8].fill(0);
            for (payload, ttl) in
                [(&bad_version[..], 255), (&no_mult, 255), (&no_discr, 255), (&good[..20], 255), (&good, 64)]
            {
                inject(&theirs, payload, ttl);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let c = &bfd.counters;
            let counts = [Malformed::Version, Malformed::DetectMult, Malformed::MyDiscriminator, Malformed::Truncated]
                .map(|m| c.malformed_count(m));
            assert_eq!(counts, [1, 1, 1, 1], "one of each");
            assert_eq!(c.bad_ttl.load(std::sync::atomic::Ordering::Relaxed), 1, "TTL 64 (RFC 5881 §5)");
            assert_eq!(bfd.sessions.borrow()[0].state, State::Up, "the session did not notice");

            // FRR falls silent: down after the detection time, not the BGP hold time.
            frr.bfdd().unwrap().kill_now();
            let silent = Instant::now();
            let down = next(&mut events).await;
            let took = silent.elapsed();
            assert_eq!((down.change.to, down.change.diag), (State::Down, Diag::TimeExpired), "{down:?}");
            println!("tortie saw FRR's silence after {took:?} (detection time 900 ms)");
            assert!(took < Duration::from_secs(3), "{took:?}");

            // Back up, then we fall silent: FRR takes it down.
            frr.start_bfdd(&theirs, &bfdd).unwrap();
            let mut event = next(&mut events).await;
            while event.change.to != State::Up {
                event = next(&mut events).await;
            }
            wait_for("FRR up again", Duration::from_secs(10), || {
                Ok(if frr_peer(&frr)["status"] == "up" { Check::Done(()) } else { Check::Pending(String::new()) })
            })
            .unwrap();
            drop(bfd);
            let silent = Instant::now();
            wait_for("FRR to see tortie's silence", Duration::from_secs(10), || {
                let p = frr_peer(&frr);
                Ok(if p["status"] == "down" { Check::Done(()) } else { Check::Pending(p.to_string()) })
            })
            .unwrap();
            println!("FRR saw tortie's silence after {:?}", silent.elapsed());
            assert_eq!(frr_peer(&frr)["diagnostic"], "control detection time expired", "{}", frr_peer(&frr));
        })
    })
    .unwrap();
}

#[test]
fn an_ipv6_session_with_frr_comes_up_and_goes_down_with_frrs_silence() {
    let lab = Lab::new("bfd-frr6").unwrap();
    let (ours, theirs) = (lab.netns("ours").unwrap(), lab.netns("frr").unwrap());
    tortie_lab::veth((&ours, "eth0"), (&theirs, "eth0")).unwrap();
    // RFC 3849 addresses, no duplicate address detection to wait for.
    ours.ip(&["addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad"]).unwrap();
    theirs.ip(&["addr", "add", "2001:db8::2/64", "dev", "eth0", "nodad"]).unwrap();
    let frr = Frr::start_with_config(&theirs, "frr-bfd6", "frr defaults traditional\nhostname frr\n").unwrap();
    let mut frr = frr;
    let bfdd =
        "bfd\n peer 2001:db8::1 local-address 2001:db8::2\n  receive-interval 300\n  transmit-interval 300\n !\n!\n";
    frr.start_bfdd(&theirs, bfdd).unwrap();
    let runtime = || tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    ours.enter(|| {
        runtime().block_on(async {
            let (bfd, mut events) = tortie_bfd::start().unwrap();
            bfd.set_peers(vec![Peer {
                remote: ip("2001:db8::2"),
                local: ip("2001:db8::1"),
                timers: Timers::default(),
            }]);
            let mut event = next(&mut events).await;
            while event.change.to != State::Up {
                event = next(&mut events).await;
            }
            wait_for("FRR to see the IPv6 session up", Duration::from_secs(10), || {
                let out = frr.vtysh("show bfd peers json").unwrap();
                let all: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
                let up = all.iter().any(|p| p["peer"] == "2001:db8::1" && p["status"] == "up");
                Ok(if up { Check::Done(()) } else { Check::Pending(out) })
            })
            .unwrap();
            frr.bfdd().unwrap().kill_now();
            let down = next(&mut events).await;
            assert_eq!((down.change.to, down.change.diag), (State::Down, Diag::TimeExpired), "{down:?}");
            drop(bfd);
        })
    })
    .unwrap();
}
