//! tortie's BGP sessions against real BIRD, FRR, GoBGP and ExaBGP in lab
//! namespaces: Established active and passive, MD5, hold timer expiry on a
//! frozen peer and recovery.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tortie_bgp::session::peer::{self, PeerCommand, PeerConfig, PeerStatus};
use tortie_bgp::session::socket::{self, SocketOptions};
use tortie_bgp::session::{FsmConfig, LocalConfig, State};
use tortie_lab::peers::{BgpPeer, Bird, ExaBgp, Frr, GoBgp, Neighbor, SessionState, Speaker};
use tortie_lab::{Check, Lab, Netns, wait_for};
use tortie_proto_tests::Pair;

const UP: Duration = Duration::from_secs(40);

/// tortie's peer task for one neighbour, running in a namespace on its own
/// runtime; optionally listening for the neighbour's connection too.
struct Tortie {
    status: Arc<Mutex<PeerStatus>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tortie {
    fn start(ns: &Netns, config: PeerConfig, listen: Option<SocketAddr>) -> Tortie {
        let status = Arc::new(Mutex::new(PeerStatus::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ns, shared) = (ns.clone(), status.clone());
        let thread = std::thread::spawn(move || {
            ns.enter(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    let (events, mut events_rx) = tokio::sync::mpsc::channel(64);
                    let (peer_ip, md5) = (config.remote.ip(), config.socket.clone());
                    let handle = peer::spawn(config, events);
                    if let Some(addr) = listen {
                        let listener = socket::listen(addr).unwrap();
                        if let Some(key) = &md5.md5_key {
                            socket::set_md5_key(&listener, peer_ip, Some(key.as_bytes())).unwrap();
                        }
                        let commands = handle.commands.clone();
                        tokio::spawn(async move {
                            while let Ok((stream, from)) = listener.accept().await {
                                if from.ip() == peer_ip {
                                    let _ = commands.send(PeerCommand::Incoming(stream)).await;
                                }
                            }
                        });
                    }
                    tokio::spawn(async move { while events_rx.recv().await.is_some() {} });
                    handle.commands.send(PeerCommand::Start).await.unwrap();
                    let mut watch = handle.status.clone();
                    let mirror = async {
                        loop {
                            *shared.lock().unwrap() = watch.borrow_and_update().clone();
                            if watch.changed().await.is_err() {
                                break;
                            }
                        }
                    };
                    tokio::select! { _ = stopped => {}, () = mirror => {} }
                    let _ = handle.commands.send(PeerCommand::Stop { message: "test over".into() }).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                });
            })
            .unwrap();
        });
        Tortie { status, stop: Some(stop), thread: Some(thread) }
    }

    fn status(&self) -> PeerStatus {
        self.status.lock().unwrap().clone()
    }

    fn wait_state(&self, state: State, timeout: Duration) -> PeerStatus {
        wait_for(&format!("tortie to reach {state:?}"), timeout, || {
            let s = self.status();
            Ok(if s.state == state {
                Check::Done(s)
            } else {
                Check::Pending(format!("{:?}, last error {:?}", s.state, s.last_error))
            })
        })
        .unwrap()
    }
}

impl Drop for Tortie {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// tortie in `a` (AS 65001, 192.0.2.1) towards the peer in `b` (192.0.2.2).
fn config(pair: &Pair, peer_as: u32, md5: Option<&str>, passive: bool) -> PeerConfig {
    let mut local = LocalConfig::new(65001, "192.0.2.1".parse().unwrap(), peer_as);
    local.hold_time = 9;
    PeerConfig {
        name: "peer-b".into(),
        remote: SocketAddr::new(pair.b_ip(), 179),
        local_addr: Some(pair.a_ip()),
        local,
        fsm: FsmConfig { connect_retry: Duration::from_secs(2), passive, ..FsmConfig::default() },
        socket: SocketOptions { md5_key: md5.map(String::from), ..SocketOptions::default() },
    }
}

fn speaker_b(pair: &Pair, asn: u32, md5: Option<&str>) -> Speaker {
    let mut n = Neighbor::new("tortie", pair.a_ip(), 65001).local_address(pair.b_ip());
    if let Some(k) = md5 {
        n = n.md5_password(k);
    }
    Speaker { router_id: "192.0.2.2".parse().unwrap(), asn, announce: vec![], neighbors: vec![n] }
}

fn listen_addr(pair: &Pair) -> Option<SocketAddr> {
    Some(SocketAddr::new(pair.a_ip(), 179))
}

#[test]
fn bird_session_establishes_with_tortie_active_and_survives_keepalives() {
    let lab = Lab::new("sess_bird").unwrap();
    let pair = Pair::new(&lab).unwrap();
    let bird = Bird::start(&pair.b, &speaker_b(&pair, 65002, None)).unwrap();
    // Both sides dial and listen: whichever connection wins the collision, the session comes up once.
    let tortie = Tortie::start(&pair.a, config(&pair, 65002, None, false), listen_addr(&pair));
    let up = tortie.wait_state(State::Established, UP);
    let n = up.negotiated.unwrap();
    assert_eq!((n.peer_asn, n.hold_time, n.keepalive, n.four_octet_as), (65002, 9, 3, true));
    bird.wait_established(pair.a_ip(), UP).unwrap();
    // Past a full hold time, still up on both sides: keepalives flow.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(tortie.status().state, State::Established);
    assert_eq!(bird.session_state(pair.a_ip()).unwrap(), SessionState::Established);
    assert!(tortie.status().messages_in >= 4, "{:?}", tortie.status());
}

#[test]
fn sessions_with_frr_gobgp_and_exabgp_establish_active_and_passive() {
    let lab = Lab::new("sess_others").unwrap();
    // FRR: tortie dials.
    {
        let pair = Pair::new(&lab).unwrap();
        let frr = Frr::start(&pair.b, &speaker_b(&pair, 65003, None)).unwrap();
        let tortie = Tortie::start(&pair.a, config(&pair, 65003, None, false), listen_addr(&pair));
        tortie.wait_state(State::Established, UP);
        frr.wait_established(pair.a_ip(), UP).unwrap();
    }
    let lab = Lab::new("sess_others2").unwrap();
    // GoBGP: tortie passive, GoBGP dials (after its own 5–10 s start delay).
    {
        let pair = Pair::new(&lab).unwrap();
        let gobgp = GoBgp::start(&pair.b, &speaker_b(&pair, 65012, None)).unwrap();
        let tortie = Tortie::start(&pair.a, config(&pair, 65012, None, true), listen_addr(&pair));
        tortie.wait_state(State::Established, UP);
        gobgp.wait_established(pair.a_ip(), UP).unwrap();
    }
    let lab = Lab::new("sess_others3").unwrap();
    // ExaBGP only dials: tortie passive.
    {
        let pair = Pair::new(&lab).unwrap();
        let tortie = Tortie::start(&pair.a, config(&pair, 65004, None, true), listen_addr(&pair));
        let exa = ExaBgp::start(&pair.b, &speaker_b(&pair, 65004, None)).unwrap();
        tortie.wait_state(State::Established, UP);
        exa.wait_established(pair.a_ip(), UP).unwrap();
    }
}

#[test]
fn md5_with_bird_right_key_establishes_wrong_key_never_does() {
    let lab = Lab::new("sess_md5").unwrap();
    let pair = Pair::new(&lab).unwrap();
    let bird = Bird::start(&pair.b, &speaker_b(&pair, 65002, Some("lab-md5-secret"))).unwrap();
    {
        let tortie = Tortie::start(&pair.a, config(&pair, 65002, Some("lab-md5-secret"), false), listen_addr(&pair));
        tortie.wait_state(State::Established, UP);
    }
    // BIRD still has the right key; tortie now has a wrong one.
    let tortie = Tortie::start(&pair.a, config(&pair, 65002, Some("wrong-key"), false), listen_addr(&pair));
    std::thread::sleep(Duration::from_secs(8));
    let s = tortie.status();
    assert_ne!(s.state, State::Established, "{s:?}");
    assert_ne!(bird.session_state(pair.a_ip()).unwrap(), SessionState::Established);
}

#[test]
fn frozen_peer_hits_the_hold_timer_then_the_session_recovers() {
    let lab = Lab::new("sess_hold").unwrap();
    let pair = Pair::new(&lab).unwrap();
    let bird = Bird::start(&pair.b, &speaker_b(&pair, 65002, None)).unwrap();
    let tortie = Tortie::start(&pair.a, config(&pair, 65002, None, false), listen_addr(&pair));
    tortie.wait_state(State::Established, UP);
    let pid = bird.daemon().pid() as i32;
    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let down = wait_for("tortie to leave Established", Duration::from_secs(20), || {
        let s = tortie.status();
        Ok(if s.state != State::Established { Check::Done(s) } else { Check::Pending("still up".into()) })
    })
    .unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    assert_eq!(down.last_notification_sent.as_deref(), Some("Hold timer expired"), "{down:?}");
    assert!(down.last_error.unwrap_or_default().contains("Hold timer expired"));
    tortie.wait_state(State::Established, UP);
}
