//! The peer harnesses against the real daemons: BIRD ↔ GoBGP, BIRD ↔ FRR
//! and BIRD ↔ ExaBGP sessions come up and routes flow both ways; a wrong
//! peer AS never comes up and both sides show the NOTIFICATION; etcd
//! answers; a dead or misconfigured daemon is an error, never a quiet pass.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use tortie_lab::peers::{BgpPeer, Bird, Etcd, ExaBgp, Frr, GoBgp, Neighbor, SessionState, Speaker};
use tortie_lab::{Lab, LabError};
use tortie_proto_tests::{Pair, net};

/// Generous: GoBGP may wait 5–10 s before it accepts, CI machines are slow.
const UP: Duration = Duration::from_secs(40);

/// BIRD in `a` (AS 65001, announces 198.18.1.0/24) with one neighbour.
fn bird_a(pair: &Pair, neighbor: Neighbor) -> Bird {
    let speaker = Speaker {
        router_id: "192.0.2.1".parse().unwrap(),
        asn: 65001,
        announce: vec![net("198.18.1.0/24")],
        neighbors: vec![neighbor],
    };
    Bird::start(&pair.a, &speaker).unwrap()
}

/// A speaker in `b` (router id 192.0.2.2) peering with BIRD in `a`.
fn speaker_b(pair: &Pair, asn: u32, announce: &str) -> Speaker {
    Speaker {
        router_id: "192.0.2.2".parse().unwrap(),
        asn,
        announce: vec![net(announce)],
        neighbors: vec![Neighbor::new("bird_a", pair.a_ip(), 65001).local_address(pair.b_ip())],
    }
}

/// Both sides Established, each holding the other's prefix with the other's AS first.
fn assert_exchange(bird: &Bird, other: &dyn BgpPeer, pair: &Pair, other_as: u32, other_prefix: &str) {
    bird.wait_established(pair.b_ip(), UP).unwrap();
    other.wait_established(pair.a_ip(), UP).unwrap();
    let learned = bird.wait_route(net(other_prefix), UP).unwrap();
    assert_eq!(learned.as_path, vec![other_as]);
    assert_eq!(learned.next_hop, Some(pair.b_ip()));
    let learned = other.wait_route(net("198.18.1.0/24"), UP).unwrap();
    assert_eq!(learned.as_path, vec![65001]);
    assert_eq!(learned.next_hop, Some(pair.a_ip()));
}

#[test]
fn bird_and_gobgp_exchange_prefixes() {
    let lab = Lab::new("bird_gobgp").unwrap();
    let pair = Pair::new(&lab).unwrap();
    let gobgp = GoBgp::start(&pair.b, &speaker_b(&pair, 65002, "198.18.2.0/24")).unwrap();
    let bird = bird_a(&pair, Neighbor::new("gobgp_b", pair.b_ip(), 65002));
    assert_exchange(&bird, &gobgp, &pair, 65002, "198.18.2.0/24");
}

#[test]
fn bird_and_frr_exchange_prefixes() {
    let lab = Lab::new("bird_frr").unwrap();
    let pair = Pair::new(&lab).unwrap();
    let frr = Frr::start(&pair.b, &speaker_b(&pair, 65003, "198.18.3.0/24")).unwrap();
    let bird = bird_a(&pair, Neighbor::new("frr_b", pair.b_ip(), 65003));
    assert_exchange(&bird, &frr, &pair, 65003, "198.18.3.0/24");
}

#[test]
fn bird_and_exabgp_exchange_prefixes_and_withdraw() {
    let lab = Lab::new("bird_exabgp").unwrap();
    let pair = Pair::new(&lab).unwrap();
    let bird = bird_a(&pair, Neighbor::new("exa_b", pair.b_ip(), 65004));
    let exa = ExaBgp::start(&pair.b, &speaker_b(&pair, 65004, "198.18.4.0/24")).unwrap();
    assert_exchange(&bird, &exa, &pair, 65004, "198.18.4.0/24");
    // The API pipe: a route announced at run time arrives, then leaves on withdraw.
    exa.announce(net("198.18.5.0/24")).unwrap();
    bird.wait_route(net("198.18.5.0/24"), UP).unwrap();
    // The control connection the benches poll answers as birdc does.
    let mut control = bird.control().unwrap();
    let birdc = bird.birdc(&["show", "protocols", "all", "exa_b"]).unwrap();
    let direct = control.command("show protocols all exa_b").unwrap();
    // The hold and keepalive timers count down between the two calls, and BIRD
    // prints the state's "Since" time rounded anew each time (one run read
    // .935 then .934); every other word must match.
    let clock = |w: &&str| w.len() == 12 && w.as_bytes()[2] == b':' && w.as_bytes()[8] == b'.';
    let steady = |text: &str| {
        let lines = text.lines().filter(|l| !l.contains("timer:"));
        lines
            .map(|l| l.split_whitespace().filter(|w| !clock(w)).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        direct.contains("Established") && steady(&birdc).ends_with(&steady(&direct)),
        "birdc:\n{birdc}\ndirect:\n{direct}"
    );
    assert_eq!(control.protocol("exa_b").unwrap().imported, 2);
    exa.withdraw(net("198.18.5.0/24")).unwrap();
    tortie_lab::wait_for("BIRD to drop 198.18.5.0/24", UP, || {
        let gone = !bird.routes()?.iter().any(|r| r.prefix == net("198.18.5.0/24"));
        Ok(if gone { tortie_lab::Check::Done(()) } else { tortie_lab::Check::Pending("still there".into()) })
    })
    .unwrap();
}

#[test]
fn wrong_peer_as_never_establishes_and_both_sides_show_the_notification() {
    let lab = Lab::new("bad_peer_as").unwrap();
    let pair = Pair::new(&lab).unwrap();
    let frr = Frr::start(&pair.b, &speaker_b(&pair, 65003, "198.18.3.0/24")).unwrap();
    // BIRD expects AS 65099 where FRR is AS 65003: RFC 4271 §6.2, NOTIFICATION 2/2 Bad Peer AS.
    let bird = bird_a(&pair, Neighbor::new("frr_b", pair.b_ip(), 65099));
    let watch = Instant::now();
    // Both sides retry; what each shows of the last attempt is sampled
    // throughout (a later attempt may end differently, e.g. refused).
    let (mut saw_error, mut frr_saw) = (false, Vec::new());
    while watch.elapsed() < Duration::from_secs(8) {
        assert_ne!(bird.session_state(pair.b_ip()).unwrap(), SessionState::Established);
        assert_ne!(frr.session_state(pair.a_ip()).unwrap(), SessionState::Established);
        saw_error |= bird.protocol("frr_b").unwrap().last_error.is_some_and(|e| e.contains("Bad peer AS"));
        frr_saw.extend(frr.neighbor(pair.a_ip()).unwrap().last_notification_reason);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(saw_error, "BIRD never reported Bad peer AS: {:?}", bird.protocol("frr_b").unwrap());
    assert!(frr_saw.iter().any(|r| r == "OPEN Message Error/Bad Peer AS"), "FRR's last notifications: {frr_saw:?}");
    assert!(bird.routes().unwrap().iter().all(|r| r.prefix != net("198.18.3.0/24")));
}

#[test]
fn etcd_answers_put_and_get() {
    let lab = Lab::new("etcd").unwrap();
    let etcd = Etcd::start(&lab).unwrap();
    assert_eq!(etcd.get("/tortie/smoke").unwrap(), None);
    etcd.put("/tortie/smoke", "hello etcd").unwrap();
    assert_eq!(etcd.get("/tortie/smoke").unwrap().as_deref(), Some("hello etcd"));
    etcd.put("/tortie/empty", "").unwrap();
    assert_eq!(etcd.get("/tortie/empty").unwrap().as_deref(), Some(""));
}

#[test]
fn broken_config_fails_start_with_the_daemons_complaint() {
    let lab = Lab::new("broken_config").unwrap();
    let ns = lab.netns("a").unwrap();
    let err = Bird::start_with_config(&ns, "broken", "router id 192.0.2.1;\nprotocol bgp { neighbor as; }\n")
        .err()
        .expect("a broken BIRD config must not start");
    assert!(matches!(err, LabError::Command { .. }), "{err}");
    assert!(err.to_string().contains("syntax error"), "{err}");
}

#[test]
fn a_killed_daemon_is_an_error_not_an_idle_session() {
    let lab = Lab::new("killed").unwrap();
    let pair = Pair::new(&lab).unwrap();
    let bird = bird_a(&pair, Neighbor::new("gobgp_b", pair.b_ip(), 65002));
    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(bird.daemon().pid() as i32, libc::SIGKILL) }, 0);
    let err = tortie_lab::wait_for("BIRD to be seen dead", UP, || {
        bird.session_state(pair.b_ip()).map(|s| tortie_lab::Check::<()>::Pending(format!("{s:?}")))
    })
    .unwrap_err();
    assert!(matches!(err, LabError::DaemonExited { .. }), "{err}");
}
