//! tortie's BGP sessions against real BIRD, FRR, GoBGP and ExaBGP in lab
//! namespaces: Established active and passive, MD5, hold timer expiry on a
//! frozen peer and recovery; a peer task whose speaker is busy keeps taking
//! its commands.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tortie_bgp::packet::{Message, Update};
use tortie_bgp::session::listener::Listener;
use tortie_bgp::session::peer::{self, PeerCommand, PeerConfig, PeerEvent, PeerStatus};
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
    /// The UPDATEs the task reported, one entry per event.
    reported: Arc<Mutex<Vec<Vec<Update>>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tortie {
    fn start(ns: &Netns, config: PeerConfig, listen: Option<SocketAddr>) -> Tortie {
        let status = Arc::new(Mutex::new(PeerStatus::default()));
        let reported = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ns, shared, updates) = (ns.clone(), status.clone(), reported.clone());
        let thread = std::thread::spawn(move || {
            ns.enter(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    let (events, mut events_rx) = tokio::sync::mpsc::channel(64);
                    let (peer_ip, md5) = (config.remote.ip(), config.socket.clone());
                    let handle = peer::spawn(config, events);
                    // The speaker's listener routes the peer's connections to its task.
                    let _listener = listen.map(|addr| {
                        let listener = Listener::bind(addr).unwrap();
                        listener.add_peer(peer_ip, &md5, handle.commands.clone()).unwrap();
                        listener
                    });
                    tokio::spawn(async move {
                        while let Some(event) = events_rx.recv().await {
                            if let PeerEvent::Update { updates: batch, .. } = event {
                                updates.lock().unwrap().push(batch);
                            }
                        }
                    });
                    handle.commands.send(PeerCommand::Start).await.unwrap();
                    let mut watch = handle.status.clone();
                    let mirror = async {
                        loop {
                            *shared.lock().unwrap() = watch.borrow_and_update().clone();
                            // A change of state wakes the watch; the message
                            // counters change in place, read every 50 ms.
                            tokio::select! {
                                changed = watch.changed() => if changed.is_err() { break },
                                () = tokio::time::sleep(Duration::from_millis(50)) => {}
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
        Tortie { status, reported, stop: Some(stop), thread: Some(thread) }
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
fn md5_with_bird_right_key_establishes_wrong_or_missing_key_never_does() {
    let lab = Lab::new("sess_md5").unwrap();
    let pair = Pair::new(&lab).unwrap();
    let bird = Bird::start(&pair.b, &speaker_b(&pair, 65002, Some("lab-md5-secret"))).unwrap();
    {
        let tortie = Tortie::start(&pair.a, config(&pair, 65002, Some("lab-md5-secret"), false), listen_addr(&pair));
        tortie.wait_state(State::Established, UP);
    }
    // BIRD still has the right key; tortie now has a wrong one, then none.
    for key in [Some("wrong-key"), None] {
        let tortie = Tortie::start(&pair.a, config(&pair, 65002, key, false), listen_addr(&pair));
        std::thread::sleep(Duration::from_secs(6));
        let s = tortie.status();
        assert_ne!(s.state, State::Established, "key {key:?}: {s:?}");
        assert!(!matches!(s.state, State::OpenSent | State::OpenConfirm), "no OPEN may get through: {s:?}");
        assert_ne!(bird.session_state(pair.a_ip()).unwrap(), SessionState::Established);
    }
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

#[test]
fn ibgp_and_four_octet_as_sessions_establish() {
    // iBGP with BIRD: both in AS 65001.
    let lab = Lab::new("sess_ibgp").unwrap();
    let pair = Pair::new(&lab).unwrap();
    let bird = Bird::start(&pair.b, &Speaker { asn: 65001, ..speaker_b(&pair, 65001, None) }).unwrap();
    let tortie = Tortie::start(&pair.a, config(&pair, 65001, None, false), listen_addr(&pair));
    let n = tortie.wait_state(State::Established, UP).negotiated.unwrap();
    assert_eq!(n.peer_asn, 65001);
    bird.wait_established(pair.a_ip(), UP).unwrap();
    drop((tortie, bird));

    // 4-octet AS on both sides: tortie AS 4200000000, FRR AS 4200000001.
    let lab = Lab::new("sess_as4").unwrap();
    let pair = Pair::new(&lab).unwrap();
    let mut frr_side = speaker_b(&pair, 4_200_000_001, None);
    frr_side.neighbors[0].asn = 4_200_000_000;
    let frr = Frr::start(&pair.b, &frr_side).unwrap();
    let mut cfg = config(&pair, 4_200_000_001, None, false);
    cfg.local.asn = 4_200_000_000;
    let tortie = Tortie::start(&pair.a, cfg, listen_addr(&pair));
    let n = tortie.wait_state(State::Established, UP).negotiated.unwrap();
    assert!(n.four_octet_as && n.peer_asn == 4_200_000_001);
    frr.wait_established(pair.a_ip(), UP).unwrap();
}

#[test]
fn a_two_octet_only_peer_sees_as_trans() {
    // ExaBGP with the 4-octet AS capability turned off peers with tortie AS 4200000000:
    // it sees My AS 23456 (AS_TRANS) and must be configured with it.
    let lab = Lab::new("sess_as2").unwrap();
    let pair = Pair::new(&lab).unwrap();
    let mut cfg = config(&pair, 65004, None, true);
    cfg.local.asn = 4_200_000_000;
    let tortie = Tortie::start(&pair.a, cfg, listen_addr(&pair));
    let exa_conf = "neighbor 192.0.2.1 {
  router-id 192.0.2.2;
  local-address 192.0.2.2;
  local-as 65004;
  peer-as 23456;
  hold-time 9;
  capability { asn4 disable; }
  family { ipv4 unicast; }
}
";
    let exa = ExaBgp::start_with_config(&pair.b, "exa-as2", exa_conf).unwrap();
    // Established at all proves ExaBGP accepted My AS 23456 from us.
    let n = tortie.wait_state(State::Established, UP).negotiated.unwrap();
    assert!(!n.four_octet_as, "{n:?}");
    assert_eq!(n.peer_asn, 65004);
    exa.daemon().check_running().unwrap();
}

#[test]
fn a_restarted_peer_is_reconnected_with_back_off() {
    let lab = Lab::new("sess_restart").unwrap();
    let pair = Pair::new(&lab).unwrap();
    let bird = Bird::start(&pair.b, &speaker_b(&pair, 65002, None)).unwrap();
    let tortie = Tortie::start(&pair.a, config(&pair, 65002, None, false), listen_addr(&pair));
    tortie.wait_state(State::Established, UP);
    drop(bird);
    let down = wait_for("tortie to see the peer go", UP, || {
        let s = tortie.status();
        Ok(if s.state != State::Established { Check::Done(s) } else { Check::Pending("up".into()) })
    })
    .unwrap();
    assert!(down.last_error.is_some(), "{down:?}");
    // While the peer is gone, attempts fail (connection refused) and back off.
    std::thread::sleep(Duration::from_secs(4));
    let waiting = tortie.status();
    assert!(waiting.state != State::Established, "{waiting:?}");
    let bird = Bird::start(&pair.b, &speaker_b(&pair, 65002, None)).unwrap();
    tortie.wait_state(State::Established, UP);
    bird.wait_established(pair.a_ip(), UP).unwrap();
}

#[test]
fn an_operator_stop_reaches_frr_with_its_shutdown_message() {
    let lab = Lab::new("sess_shutdown").unwrap();
    let pair = Pair::new(&lab).unwrap();
    let frr = Frr::start(&pair.b, &speaker_b(&pair, 65003, None)).unwrap();
    let tortie = Tortie::start(&pair.a, config(&pair, 65003, None, false), listen_addr(&pair));
    tortie.wait_state(State::Established, UP);
    frr.wait_established(pair.a_ip(), UP).unwrap();
    drop(tortie); // sends ManualStop { message: "test over" }
    let seen = wait_for("FRR to record the shutdown", UP, || {
        let n = frr.neighbor(pair.a_ip())?;
        Ok(match n.last_notification_reason {
            Some(r) if r.contains("Administrative Shutdown") => Check::Done(r),
            other => Check::Pending(format!("{other:?}")),
        })
    })
    .unwrap();
    assert!(seen.contains("Cease"), "{seen}");
}

/// A scripted BGP speaker (our own test client, not a stand-in for a
/// product): it completes the OPEN exchange with tortie, then sends `bad`
/// and returns every message tortie sends back until it closes, and how many
/// times tortie connected.
/// A peer that sends `bad` once tortie's first KEEPALIVE is in, then waits
/// `pause` before reading on (tortie has closed by then: what it sent must
/// still arrive); returns what it read and how many connections tortie made.
fn scripted_peer(ns: &Netns, bad: Vec<u8>, pause: Duration, window: Duration) -> (Vec<Message>, usize) {
    use futures::{SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::Framed;
    use tortie_bgp::packet::BgpCodec;
    ns.enter(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = socket::listen("192.0.2.2:179".parse().unwrap()).unwrap();
            let (mut received, mut connections) = (Vec::new(), 0);
            let _ = tokio::time::timeout(window, async {
                loop {
                    let Ok((stream, _)) = listener.accept().await else { return };
                    connections += 1;
                    if connections > 1 {
                        continue; // tortie came back: it survived
                    }
                    let mut framed = Framed::new(stream, BgpCodec::default());
                    let open = LocalConfig::new(65002, "192.0.2.2".parse().unwrap(), 65001).open();
                    framed.send(&Message::Open(open)).await.unwrap();
                    framed.send(&Message::Keepalive).await.unwrap();
                    while let Some(Ok(m)) = framed.next().await {
                        let keepalive = m == Message::Keepalive;
                        received.push(m);
                        if keepalive {
                            // tortie may close before it has all of it: no error here.
                            let _ = framed.get_mut().write_all(&bad).await;
                            tokio::time::sleep(pause).await;
                        }
                    }
                }
            })
            .await;
            (received, connections)
        })
    })
    .unwrap()
}

/// A lab pair with tortie on `a` dialling a scripted peer on `b` (AS
/// 65002), back half a second after each failure.
fn tortie_for_a_scripted_peer(name: &str) -> (Lab, Pair, Tortie) {
    let lab = Lab::new(name).unwrap();
    let pair = Pair::new(&lab).unwrap();
    let mut cfg = config(&pair, 65002, None, false);
    cfg.fsm.idle_hold = Duration::from_millis(500);
    let tortie = Tortie::start(&pair.a, cfg, None);
    (lab, pair, tortie)
}

/// The first NOTIFICATION among what the peer read (a failure if none came).
fn first_notification(received: &[Message]) -> tortie_bgp::packet::Notification {
    let n = received.iter().find_map(|m| match m {
        Message::Notification(n) => Some(n.clone()),
        _ => None,
    });
    n.unwrap_or_else(|| panic!("no NOTIFICATION reached the peer: {received:?}"))
}

#[test]
fn malformed_input_gets_its_notification_and_the_session_task_survives() {
    use tortie_bgp::packet::ErrorCode;
    let (_lab, pair, tortie) = tortie_for_a_scripted_peer("sess_malformed");
    // An UPDATE whose Withdrawn Routes Length (9) runs past the message: RFC 4271 §6.3, 3/1.
    let mut bad = vec![0xff; 16];
    bad.extend([0x00, 0x17, 0x02, 0x00, 0x09, 0x00, 0x00]);
    let (received, connections) = scripted_peer(&pair.b, bad, Duration::ZERO, Duration::from_secs(8));
    let n = first_notification(&received);
    assert_eq!((n.code, n.subcode), (ErrorCode::Update, 1));
    assert!(connections >= 2, "tortie did not come back after the error ({connections} connection)");
    let status = tortie.status();
    assert_eq!(status.last_notification_sent.as_deref(), Some("UPDATE message error"), "{status:?}");
}

#[test]
fn updates_read_together_reach_the_speaker_in_order_and_a_bad_one_after_them_still_gets_its_notification() {
    use tortie_bgp::packet::{AsPath, Context, ErrorCode, Nlri, Origin, PathAttrs};
    let (_lab, pair, tortie) = tortie_for_a_scripted_peer("sess_batched");
    // 40 UPDATEs of one prefix each, then the malformed one, in one write.
    let sent: Vec<Update> = (0..40u32)
        .map(|i| {
            let attrs = PathAttrs {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::from_sequence(&[65002])),
                next_hop: Some("192.0.2.2".parse().unwrap()),
                med: Some(i),
                ..PathAttrs::default()
            };
            let prefix = ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0xc633_6400 + (i << 8)), 24).unwrap();
            Update::announce(Arc::new(attrs), vec![Nlri::new(prefix)])
        })
        .collect();
    let mut wire = bytes::BytesMut::new();
    for update in &sent {
        // Both sides offer 4-octet AS numbers (RFC 6793).
        let cxt = Context { four_octet_as: true, ..Context::default() };
        Message::Update(update.clone()).encode(&cxt, &mut wire).unwrap();
    }
    wire.extend_from_slice(&[0xff; 16]);
    wire.extend_from_slice(&[0x00, 0x17, 0x02, 0x00, 0x09, 0x00, 0x00]);
    let (received, _) = scripted_peer(&pair.b, wire.to_vec(), Duration::ZERO, Duration::from_secs(8));
    let n = first_notification(&received);
    assert_eq!((n.code, n.subcode), (ErrorCode::Update, 1));
    let reported = tortie.reported.lock().unwrap().clone();
    let flat: Vec<&Update> = reported.iter().flatten().collect();
    let meds = |u: &[&Update]| u.iter().map(|u| u.attrs.as_ref().and_then(|a| a.med)).collect::<Vec<_>>();
    assert_eq!(meds(&flat), meds(&sent.iter().collect::<Vec<_>>()), "every good UPDATE, once, in order");
    assert_eq!(flat, sent.iter().collect::<Vec<_>>(), "and as sent");
    assert!(
        reported.iter().any(|batch| batch.len() > 1),
        "read together, reported together: {:?}",
        reported.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

#[test]
fn a_bad_message_length_gets_notification_1_2_on_the_wire_not_a_reset() {
    use tortie_bgp::packet::ErrorCode;
    let (_lab, pair, _tortie) = tortie_for_a_scripted_peer("sess_overlong");
    // A header saying 18 octets (less than a header), then 256 KiB more:
    // RFC 4271 §6.1, 1/2 with the length as data. tortie stops reading at
    // the header, so the rest is still unread in its socket when it closes;
    // the NOTIFICATION must arrive all the same (closing with unread bytes
    // makes the kernel send a RST, which drops what was queued before it).
    let mut bad = vec![0xff; 16];
    bad.extend([0x00, 0x12, 0x02]);
    bad.resize(19 + 256 * 1024, 0);
    let (received, _) = scripted_peer(&pair.b, bad, Duration::from_millis(300), Duration::from_secs(4));
    let n = first_notification(&received);
    assert_eq!((n.code, n.subcode, n.data.as_ref()), (ErrorCode::MessageHeader, 2, &[0x00, 0x12][..]));
}

/// One session to `daemon` in every mode it supports: eBGP and iBGP, tortie
/// dialling (active) and tortie waiting (passive). ExaBGP only dials, so
/// tortie is only passive with it.
fn matrix(daemon: &str) {
    for (ibgp, passive) in [(false, false), (false, true), (true, false), (true, true)] {
        if daemon == "exabgp" && !passive {
            continue;
        }
        let lab = Lab::new(&format!("matrix_{daemon}")).unwrap();
        let pair = Pair::new(&lab).unwrap();
        let peer_as = if ibgp { 65001 } else { 65002 };
        let speaker = speaker_b(&pair, peer_as, None);
        let what = format!(
            "{daemon} {} tortie {}",
            if ibgp { "iBGP" } else { "eBGP" },
            if passive { "passive" } else { "active" }
        );
        // tortie listens only when passive, so an active tortie must be the one that dials.
        let listen = passive.then(|| listen_addr(&pair)).flatten();
        let tortie = Tortie::start(&pair.a, config(&pair, peer_as, None, passive), listen);
        let peer: Box<dyn BgpPeer> = match daemon {
            "bird" => Box::new(Bird::start(&pair.b, &speaker).unwrap()),
            "frr" => Box::new(Frr::start(&pair.b, &speaker).unwrap()),
            "gobgp" => Box::new(GoBgp::start(&pair.b, &speaker).unwrap()),
            _ => Box::new(ExaBgp::start(&pair.b, &speaker).unwrap()),
        };
        let n = wait_for(&format!("{what}: Established"), UP, || {
            let s = tortie.status();
            Ok(match s.negotiated {
                Some(n) if s.state == State::Established => Check::Done(n),
                _ => Check::Pending(format!("{:?} {:?}", s.state, s.last_error)),
            })
        })
        .unwrap();
        assert_eq!(n.peer_asn, peer_as, "{what}");
        peer.wait_established(pair.a_ip(), UP).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

#[test]
fn matrix_bird() {
    matrix("bird");
}

#[test]
fn matrix_frr() {
    matrix("frr");
}

#[test]
fn matrix_gobgp() {
    matrix("gobgp");
}

#[test]
fn matrix_exabgp() {
    matrix("exabgp");
}

/// Starts a session whose event queue (room for one, never read: a busy
/// speaker) the session's Up fills, and waits until BIRD's first UPDATE is
/// read and waits for room.
async fn until_an_update_waits(handle: &peer::PeerHandle) {
    handle.commands.send(PeerCommand::Start).await.unwrap();
    // (The message counters wake no watcher: polled.)
    let got_update = || {
        let s = handle.status.borrow();
        s.state == State::Established && s.updates_in >= 1
    };
    let received = async {
        while !got_update() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(UP, received).await.unwrap();
}

#[test]
fn a_peer_waiting_on_a_full_speaker_queue_keeps_taking_its_commands() {
    let lab = Lab::new("sess_drain").unwrap();
    let pair = Pair::new(&lab).unwrap();
    let mut speaker = speaker_b(&pair, 65002, None);
    speaker.announce = vec!["198.18.1.0/24".parse().unwrap(), "198.18.2.0/24".parse().unwrap()];
    let _bird = Bird::start(&pair.b, &speaker).unwrap();
    let config = config(&pair, 65002, None, false);
    let (all_taken, established) = pair
        .a
        .enter(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let (events, mut events_rx) = tokio::sync::mpsc::channel(1);
                let handle = peer::spawn(config, events);
                until_an_update_waits(&handle).await;
                // A command that is not an UPDATE (the end of a restart), then
                // more UPDATE sends than the command queue holds: the speaker
                // must never wait on a peer that waits on the speaker.
                let commands = async {
                    handle.commands.send(PeerCommand::EndRestart).await.unwrap();
                    for _ in 0..200 {
                        handle.commands.send(PeerCommand::Send(Box::new(Message::Keepalive))).await.unwrap();
                    }
                };
                let all_taken = tokio::time::timeout(Duration::from_secs(10), commands).await.is_ok();
                tokio::spawn(async move { while events_rx.recv().await.is_some() {} });
                tokio::time::sleep(Duration::from_millis(500)).await;
                let established = handle.status.borrow().state == State::Established;
                let _ = handle.commands.send(PeerCommand::Stop { message: "test over".into() }).await;
                (all_taken, established)
            })
        })
        .unwrap();
    assert!(all_taken, "the peer stopped taking commands while its event waited");
    assert!(established, "the session survived");
}

/// While its event waits for room in a busy speaker's queue, a session
/// still writes what the speaker already queued for it in its outbox (a
/// reflector's sessions waiting there held millions of queued UPDATEs).
#[test]
fn a_peer_waiting_on_a_full_speaker_queue_still_sends_its_outbox() {
    use tortie_bgp::packet::{AsPath, Context, Nlri, Origin, PathAttrs};
    use tortie_bgp::session::outbox::Outbox;
    let lab = Lab::new("sess_outbox").unwrap();
    let pair = Pair::new(&lab).unwrap();
    let mut speaker = speaker_b(&pair, 65002, None);
    speaker.announce = vec!["198.18.1.0/24".parse().unwrap()];
    let bird = Bird::start(&pair.b, &speaker).unwrap();
    let config = config(&pair, 65002, None, false);
    let queued: Vec<ipnet::IpNet> = (0..50u32)
        .map(|i| ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0xc612_6400 + (i << 8)), 24).unwrap().into())
        .collect();
    let wanted = queued.clone();
    let (learned, unread) = pair
        .a
        .enter(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let (events, events_rx) = tokio::sync::mpsc::channel(1);
                let outbox = Arc::new(Outbox::default());
                let handle = peer::spawn_with(config, events, outbox.clone());
                until_an_update_waits(&handle).await;
                // The speaker's UPDATEs for this session (its first), one prefix each.
                let attrs = PathAttrs {
                    origin: Some(Origin::Igp),
                    as_path: Some(AsPath::from_sequence(&[65001])),
                    next_hop: Some("192.0.2.1".parse().unwrap()),
                    ..PathAttrs::default()
                };
                let cxt = Context { four_octet_as: true, ..Context::default() };
                for prefix in &queued {
                    let ipnet::IpNet::V4(p) = prefix else { unreachable!() };
                    let mut wire = bytes::BytesMut::new();
                    let update = Update::announce(Arc::new(attrs.clone()), vec![Nlri::new(*p)]);
                    Message::Update(update).encode(&cxt, &mut wire).unwrap();
                    assert!(outbox.push(1, wire.freeze()), "the outbox took the UPDATE");
                }
                // BIRD is asked between sleeps: the session task runs meanwhile.
                let mut learned = Vec::new();
                for _ in 0..100 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    learned = bird.routes().unwrap().into_iter().map(|r| r.prefix).collect();
                    if queued.iter().all(|p| learned.contains(p)) {
                        break;
                    }
                }
                let unread = events_rx.len();
                let _ = handle.commands.try_send(PeerCommand::Stop { message: "test over".into() });
                (learned, unread)
            })
        })
        .unwrap();
    let missing: Vec<_> = wanted.iter().filter(|p| !learned.contains(p)).collect();
    assert!(missing.is_empty(), "BIRD never got {} of the queued UPDATEs: {missing:?}", missing.len());
    assert_eq!(unread, 1, "the speaker's queue stayed full throughout (the session's Up, unread)");
}
