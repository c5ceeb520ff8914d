//! Routes through tortie between real daemons: BIRD (AS 65002) → tortie
//! (AS 65001) → FRR (AS 65003), plus a prefix tortie originates; attributes
//! arrive intact, paths and next hops are rewritten as eBGP requires, an
//! export filter holds a prefix back, and a withdrawal propagates.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tortie_bgp::packet::{Community, PathAttrs};
use tortie_bgp::rib::policy::{MatchOperator, Policy, Rule, Verdict};
use tortie_bgp::session::State;
use tortie_bgp::session::peer::PeerStatus;
use tortie_bgp::speaker::{self, MaxPrefix, Neighbor, SpeakerCommand, SpeakerStats};
use tortie_lab::peers::{BgpPeer, Bird, ExaBgp, Frr, Neighbor as LabNeighbor, Speaker};
use tortie_lab::{Check, Lab, Netns, veth, wait_for};
use tortie_proto_tests::{ip, net, tortie_neighbor};

const UP: Duration = Duration::from_secs(40);

fn neighbor(name: &str, remote: &str, local: &str, peer_as: u32) -> Neighbor {
    tortie_neighbor(name, remote, local, peer_as, 9)
}

/// The BIRD neighbour of the graceful-restart tests, offering RFC 4724
/// graceful restart (120 s) with the F bit as given.
fn gr_neighbor_bird(forwarding_preserved: bool) -> Neighbor {
    use tortie_bgp::packet::{Family, GracefulRestart, GracefulRestartFamily};
    let mut n = neighbor("bird", "192.0.2.2", "192.0.2.1", 65002);
    n.session.local.graceful_restart = Some(GracefulRestart {
        restarted: false,
        notification: false,
        restart_time: 120,
        families: vec![GracefulRestartFamily { family: Family::IPV4_UNICAST, forwarding_preserved }],
    });
    n
}

/// tortie's speaker in `ns`, until dropped; commands and peer status reach it from the test thread.
struct Tortie {
    /// Taken when it stops: the speaker ends with its last command sender.
    commands: Option<tokio::sync::mpsc::Sender<SpeakerCommand>>,
    peers: Arc<Mutex<HashMap<String, tokio::sync::watch::Receiver<PeerStatus>>>>,
    stats: Arc<SpeakerStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tortie {
    fn start(ns: &Netns, neighbors: Vec<Neighbor>, originate: Vec<(ipnet::IpNet, PathAttrs)>) -> Tortie {
        Tortie::start_with(ns, neighbors, originate, None)
    }

    /// A speaker that restarted with its forwarding state (RFC 4724 §4.1).
    fn start_restarted(
        ns: &Netns,
        neighbors: Vec<Neighbor>,
        originate: Vec<(ipnet::IpNet, PathAttrs)>,
        deferral: Duration,
    ) -> Tortie {
        Tortie::start_with(ns, neighbors, originate, Some(deferral))
    }

    fn start_with(
        ns: &Netns,
        neighbors: Vec<Neighbor>,
        originate: Vec<(ipnet::IpNet, PathAttrs)>,
        deferral: Option<Duration>,
    ) -> Tortie {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (handles_tx, handles_rx) = std::sync::mpsc::channel();
        let ns = ns.clone();
        let thread = std::thread::spawn(move || {
            ns.enter(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    let (best_tx, mut best_rx) = tokio::sync::mpsc::channel(1024);
                    tokio::spawn(async move { while best_rx.recv().await.is_some() {} });
                    let listen = Some("0.0.0.0:179".parse().unwrap());
                    let speaker = speaker::spawn("192.0.2.1".parse().unwrap(), 1, best_tx, listen).await.unwrap();
                    if let Some(deferral) = deferral {
                        speaker.commands.send(SpeakerCommand::Restarted { deferral }).await.unwrap();
                    }
                    for (prefix, attrs) in originate {
                        speaker.commands.send(SpeakerCommand::Originate(prefix, attrs)).await.unwrap();
                    }
                    for n in neighbors {
                        speaker.commands.send(SpeakerCommand::AddNeighbor(Box::new(n))).await.unwrap();
                    }
                    handles_tx.send((speaker.commands.clone(), speaker.peers.clone(), speaker.stats.clone())).unwrap();
                    let _ = stopped.await;
                    // Its sockets closed before the next one listens on port 179.
                    let ended = speaker.stopped();
                    drop(speaker);
                    ended.await;
                });
            })
            .unwrap();
        });
        let (commands, peers, stats) = handles_rx.recv().unwrap();
        Tortie { commands: Some(commands), peers, stats, stop: Some(stop), thread: Some(thread) }
    }

    fn status(&self, peer: &str) -> PeerStatus {
        self.peers.lock().unwrap()[peer].borrow().clone()
    }

    fn command(&self, cmd: SpeakerCommand) {
        self.commands.as_ref().expect("running").blocking_send(cmd).unwrap();
    }
}

impl Drop for Tortie {
    fn drop(&mut self) {
        self.commands = None;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const BIRD: &str = "router id 192.0.2.2;
protocol device { }
protocol static announce4 { ipv4; route 198.18.2.0/24 blackhole; route 198.18.3.0/24 blackhole; }
protocol bgp tortie {
  local as 65002; neighbor 192.0.2.1 as 65001;
  ipv4 {
    import all;
    export filter { if source != RTS_STATIC then reject; bgp_community.add((65002, 100)); bgp_large_community.add((65002, 1, 2)); bgp_med = 7; accept; };
  };
  connect delay time 1; connect retry time 1; error wait time 1, 2; hold time 9; keepalive time 3;
  graceful restart off;
}
";

/// b (192.0.2.2) —— a, tortie (192.0.2.1 | 198.51.100.1) —— c (198.51.100.2).
fn line_of_three(lab: &Lab) -> (Netns, Netns, Netns) {
    let (a, b, c) = (lab.netns("a").unwrap(), lab.netns("b").unwrap(), lab.netns("c").unwrap());
    veth((&a, "to-b"), (&b, "eth0")).unwrap();
    veth((&a, "to-c"), (&c, "eth0")).unwrap();
    a.add_addr("to-b", net("192.0.2.1/24")).unwrap();
    b.add_addr("eth0", net("192.0.2.2/24")).unwrap();
    a.add_addr("to-c", net("198.51.100.1/24")).unwrap();
    c.add_addr("eth0", net("198.51.100.2/24")).unwrap();
    (a, b, c)
}

/// FRR (AS 65003) in `c`, peering with tortie at 198.51.100.1, announcing nothing.
fn frr_monitor(c: &Netns) -> Frr {
    Frr::start(
        c,
        &Speaker {
            router_id: "198.51.100.2".parse().unwrap(),
            asn: 65003,
            announce: vec![],
            neighbors: vec![LabNeighbor::new("tortie", ip("198.51.100.1"), 65001).local_address(ip("198.51.100.2"))],
        },
    )
    .unwrap()
}

#[test]
fn routes_flow_bird_to_tortie_to_frr_with_attributes_and_withdrawals() {
    let lab = Lab::new("routing").unwrap();
    let (a, b, c) = line_of_three(&lab);

    let bird = Bird::start_with_config(&b, "bird", BIRD).unwrap();
    let frr = frr_monitor(&c);
    let own = PathAttrs { communities: vec![Community::new(65001, 1)].into(), ..PathAttrs::default() };
    // Towards FRR, an export filter rejects 198.18.3.0/24 (and, with no other match, accepts the rest).
    let mut to_frr = neighbor("frr", "198.51.100.2", "198.51.100.1", 65003);
    let reject = Rule { cidr: Some((MatchOperator::Equal, net("198.18.3.0/24"))), ..Rule::any(Verdict::Reject) };
    to_frr.export_policy = Some(Policy { rules: vec![reject] });
    let tortie = Tortie::start(
        &a,
        vec![neighbor("bird", "192.0.2.2", "192.0.2.1", 65002), to_frr],
        vec![(net("198.18.1.0/24"), own)],
    );

    // BIRD's route reaches FRR through tortie: AS path 65001 65002, next hop tortie.
    let learned = frr.wait_route(net("198.18.2.0/24"), UP).unwrap();
    assert_eq!(learned.as_path, vec![65001, 65002]);
    assert_eq!(learned.next_hop, Some(ip("198.51.100.1")));
    let detail = frr.vtysh("show bgp ipv4 unicast 198.18.2.0/24 json").unwrap();
    assert!(detail.contains("65002:100"), "standard community kept: {detail}");
    assert!(detail.contains("65002:1:2"), "large community kept: {detail}");
    assert!(!detail.contains("\"metric\":7"), "a neighbour AS's MED is not passed on: {detail}");
    // tortie's own prefix reaches both, with its community.
    let own_at_frr = frr.wait_route(net("198.18.1.0/24"), UP).unwrap();
    assert_eq!(own_at_frr.as_path, vec![65001]);
    let own_at_bird = bird.wait_route(net("198.18.1.0/24"), UP).unwrap();
    assert_eq!((own_at_bird.as_path, own_at_bird.next_hop), (vec![65001], Some(ip("192.0.2.1"))));
    // The filtered prefix never reaches FRR.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !frr.routes().unwrap().iter().any(|r| r.prefix == net("198.18.3.0/24")),
        "export filter let 198.18.3.0/24 through"
    );
    // BIRD does not get its own route back (it is in the path).
    assert!(bird.routes().unwrap().iter().filter(|r| r.prefix == net("198.18.2.0/24")).all(|r| r.as_path.is_empty()));

    // FRR asks for our routes again (ROUTE-REFRESH): it gets them, the session stays.
    let stats = |key: &str| -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&frr.vtysh("show bgp neighbors 198.51.100.1 json").unwrap()).unwrap();
        v["198.51.100.1"]["messageStats"][key].as_u64().unwrap_or(0)
    };
    let (refresh_before, updates_before) = (stats("routeRefreshSent"), stats("updatesRecv"));
    frr.vtysh("clear bgp 198.51.100.1 soft in").unwrap();
    wait_for("FRR to get our table again", UP, || {
        Ok(if stats("updatesRecv") > updates_before {
            Check::Done(())
        } else {
            Check::Pending(format!("{}", stats("updatesRecv")))
        })
    })
    .unwrap();
    assert!(stats("routeRefreshSent") > refresh_before, "FRR did send a ROUTE-REFRESH");

    // A new export policy towards FRR, applied without a session reset: 198.18.2.0/24 goes too.
    let established_before = frr.neighbor(ip("198.51.100.1")).unwrap();
    let reject_both = vec![
        Rule { cidr: Some((MatchOperator::Equal, net("198.18.2.0/24"))), ..Rule::any(Verdict::Reject) },
        Rule { cidr: Some((MatchOperator::Equal, net("198.18.3.0/24"))), ..Rule::any(Verdict::Reject) },
    ];
    tortie.command(SpeakerCommand::SetPolicies {
        peer: "frr".into(),
        import: Some(Policy::accept_all()),
        export: Some(Policy { rules: reject_both }),
    });
    wait_for("FRR to lose 198.18.2.0/24 to the new policy", UP, || {
        let gone = !frr.routes()?.iter().any(|r| r.prefix == net("198.18.2.0/24"));
        Ok(if gone { Check::Done(()) } else { Check::Pending("still there".into()) })
    })
    .unwrap();
    assert_eq!(tortie.status("frr").state, State::Established);
    assert_eq!(frr.neighbor(ip("198.51.100.1")).unwrap().bgp_state, established_before.bgp_state);
    assert!(frr.routes().unwrap().iter().any(|r| r.prefix == net("198.18.1.0/24")), "the rest stays");
    tortie.command(SpeakerCommand::SetPolicies {
        peer: "frr".into(),
        import: Some(Policy::accept_all()),
        export: Some(Policy::accept_all()),
    });
    frr.wait_route(net("198.18.2.0/24"), UP).unwrap();

    // BIRD withdraws: FRR loses the route.
    bird.birdc(&["disable", "announce4"]).unwrap();
    wait_for("FRR to drop 198.18.2.0/24", UP, || {
        let gone = !frr.routes()?.iter().any(|r| r.prefix == net("198.18.2.0/24"));
        Ok(if gone { Check::Done(()) } else { Check::Pending("still there".into()) })
    })
    .unwrap();
    // BIRD's session ends: its routes are gone from FRR, tortie's own stays.
    drop(bird);
    std::thread::sleep(Duration::from_secs(2));
    assert!(frr.routes().unwrap().iter().any(|r| r.prefix == net("198.18.1.0/24")));
}

#[test]
fn a_peer_past_its_prefix_limit_is_stopped_with_cease_6_1_and_restarted() {
    let lab = Lab::new("maxprefix").unwrap();
    let (a, b) = (lab.netns("a").unwrap(), lab.netns("b").unwrap());
    veth((&a, "to-b"), (&b, "eth0")).unwrap();
    a.add_addr("to-b", net("192.0.2.1/24")).unwrap();
    b.add_addr("eth0", net("192.0.2.2/24")).unwrap();
    let mut exa_side = neighbor("exa", "192.0.2.2", "192.0.2.1", 65004);
    exa_side.session.fsm.passive = true;
    exa_side.max_prefix = Some(MaxPrefix { limit: 10, warn_at: 8, restart_after: Duration::from_secs(3) });
    // tortie waits (passive) for ExaBGP, which only dials: the speaker's listener takes its connection.
    let tortie = Tortie::start(&a, vec![], vec![]);
    tortie.command(SpeakerCommand::AddNeighbor(Box::new(exa_side)));
    let exa = ExaBgp::start(
        &b,
        &Speaker {
            router_id: "192.0.2.2".parse().unwrap(),
            asn: 65004,
            announce: (0..20).map(|i| net(&format!("198.18.{i}.0/24"))).collect(),
            neighbors: vec![LabNeighbor::new("tortie", ip("192.0.2.1"), 65001).local_address(ip("192.0.2.2"))],
        },
    )
    .unwrap();
    let stopped = wait_for("tortie to stop ExaBGP for its prefix count", UP, || {
        let s = tortie.status("exa");
        Ok(match &s.last_notification_sent {
            Some(n) if n == "Maximum number of prefixes reached" => Check::Done(s),
            _ => Check::Pending(format!("{:?} {:?}", s.state, s.last_notification_sent)),
        })
    })
    .unwrap();
    assert_ne!(stopped.state, State::Established);
    // After restart_after (3 s) tortie lets ExaBGP in again: a second session comes up.
    wait_for("ExaBGP's second session", UP, || {
        let ups = exa.events()?.iter().filter(|e| e["type"] == "state" && e["neighbor"]["state"] == "up").count();
        Ok(if ups >= 2 { Check::Done(()) } else { Check::Pending(format!("{ups} sessions so far")) })
    })
    .unwrap();
}

#[test]
fn an_update_group_gets_each_update_encoded_once() {
    // tortie and three BIRDs of AS 65003 on one switch: same export rules, one update group.
    let lab = Lab::new("update_group").unwrap();
    let sw = lab.bridge("sw").unwrap();
    let a = lab.netns("a").unwrap();
    sw.attach(&a, "eth0").unwrap();
    a.add_addr("eth0", net("192.0.2.1/24")).unwrap();
    let mut birds = Vec::new();
    let mut neighbors = Vec::new();
    for i in 1..=3u8 {
        let ns = lab.netns(&format!("m{i}")).unwrap();
        sw.attach(&ns, "eth0").unwrap();
        let addr = format!("192.0.2.1{i}");
        ns.add_addr("eth0", net(&format!("{addr}/24"))).unwrap();
        let bird = Bird::start(
            &ns,
            &Speaker {
                router_id: addr.parse().unwrap(),
                asn: 65003,
                announce: vec![],
                neighbors: vec![LabNeighbor::new("tortie", ip("192.0.2.1"), 65001).local_address(ip(&addr))],
            },
        )
        .unwrap();
        neighbors.push(neighbor(&format!("m{i}"), &addr, "192.0.2.1", 65003));
        birds.push(bird);
    }
    let tortie = Tortie::start(&a, neighbors, vec![]);
    for (i, bird) in birds.iter().enumerate() {
        bird.wait_established(ip("192.0.2.1"), UP).unwrap();
        wait_for("tortie's side up", UP, || {
            let s = tortie.status(&format!("m{}", i + 1));
            Ok(if s.state == State::Established { Check::Done(()) } else { Check::Pending(format!("{:?}", s.state)) })
        })
        .unwrap();
    }
    // A BIRD's status shows Established a moment before the speaker hears
    // of it: once each holds a first prefix, the speaker knows all three.
    tortie.command(SpeakerCommand::Originate(net("198.18.6.0/24"), PathAttrs::default()));
    for bird in &birds {
        bird.wait_route(net("198.18.6.0/24"), UP).unwrap();
    }
    let (encoded, sent) = (&tortie.stats.group_updates_encoded, &tortie.stats.group_updates_sent);
    let before = (encoded.load(Ordering::Relaxed), sent.load(Ordering::Relaxed));
    tortie.command(SpeakerCommand::Originate(net("198.18.7.0/24"), PathAttrs::default()));
    for bird in &birds {
        let r = bird.wait_route(net("198.18.7.0/24"), UP).unwrap();
        assert_eq!((r.as_path, r.next_hop), (vec![65001], Some(ip("192.0.2.1"))));
    }
    let after = (encoded.load(Ordering::Relaxed), sent.load(Ordering::Relaxed));
    assert_eq!((after.0 - before.0, after.1 - before.1), (1, 3), "one encoding, three copies");
}

fn bird_gr_config(routes: &[&str]) -> String {
    let statics: String = routes.iter().map(|r| format!("route {r} blackhole; ")).collect();
    format!(
        "router id 192.0.2.2;\ngraceful restart wait 10;\nprotocol device {{ }}\nprotocol static announce4 {{ ipv4; {statics}}}\n\
         protocol bgp tortie {{\n  local as 65002; neighbor 192.0.2.1 as 65001;\n  ipv4 {{ import all; export where source = RTS_STATIC; }};\n  \
         connect delay time 1; connect retry time 1; error wait time 1, 2; hold time 9; keepalive time 3;\n  graceful restart on;\n}}\n"
    )
}

/// tortie (receiving speaker, GR capable) between BIRD (GR on, routes
/// `198.18.10.0/24` and `198.18.11.0/24`) and FRR; BIRD is SIGKILLed while
/// FRR is polled, then `restart` brings BIRD back with only the first route.
fn bird_restarts(restart: impl FnOnce(&Netns, &str) -> Bird) -> (Arc<SpeakerStats>, Vec<String>) {
    let lab = Lab::new("graceful").unwrap();
    let (a, b, c) = line_of_three(&lab);
    let frr = frr_monitor(&c);
    let bird = Bird::start_with_config(&b, "bird", &bird_gr_config(&["198.18.10.0/24", "198.18.11.0/24"])).unwrap();
    let to_bird = gr_neighbor_bird(false);
    let tortie = Tortie::start(&a, vec![to_bird, neighbor("frr", "198.51.100.2", "198.51.100.1", 65003)], vec![]);
    frr.wait_route(net("198.18.10.0/24"), UP).unwrap();
    frr.wait_route(net("198.18.11.0/24"), UP).unwrap();

    // BIRD dies without a NOTIFICATION: tortie keeps both routes (stale); FRR never loses them.
    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(bird.daemon().pid() as i32, libc::SIGKILL) }, 0);
    let held_since = std::time::Instant::now();
    while held_since.elapsed() < Duration::from_secs(4) {
        let routes = frr.routes().unwrap();
        for p in ["198.18.10.0/24", "198.18.11.0/24"] {
            assert!(routes.iter().any(|r| r.prefix == net(p)), "{p} lost while its peer restarts");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(bird);
    let _bird = restart(&b, &bird_gr_config(&["198.18.10.0/24"]));
    // Until the unrefreshed route is swept, note every time FRR lacked the refreshed one.
    let mut gaps = Vec::new();
    wait_for("the unrefreshed route to be swept", UP, || {
        let routes = frr.routes()?;
        let has = |p: &str| routes.iter().any(|r| r.prefix == net(p));
        if !has("198.18.10.0/24") {
            gaps.push(format!("{routes:?}"));
        }
        Ok(if has("198.18.10.0/24") && !has("198.18.11.0/24") {
            Check::Done(())
        } else {
            Check::Pending(format!("{routes:?}"))
        })
    })
    .unwrap();
    (tortie.stats.clone(), gaps)
}

#[test]
fn a_restarting_peer_keeps_its_routes_until_end_of_rib_then_the_rest_is_swept() {
    // `bird -R`: BIRD's new OPEN sets the F bit (forwarding state kept).
    let (stats, gaps) = bird_restarts(|ns, config| Bird::start_recovering(ns, "bird2", config).unwrap());
    assert_eq!(stats.stale_flushed_without_forwarding.load(Ordering::Relaxed), 0);
    assert!(gaps.is_empty(), "the re-announced route never left FRR: {gaps:?}");
}

#[test]
fn a_peer_back_without_its_forwarding_state_loses_its_stale_routes_at_once() {
    // A plain start: BIRD's new OPEN has the F bit clear (RFC 4724 §4.2).
    let (stats, _) = bird_restarts(|ns, config| Bird::start_with_config(ns, "bird2", config).unwrap());
    assert_eq!(stats.stale_flushed_without_forwarding.load(Ordering::Relaxed), 1);
}

#[test]
fn a_restarted_speaker_advertises_only_after_its_peers_end_of_rib_or_the_deferral_limit() {
    let lab = Lab::new("deferral").unwrap();
    let (a, b, _c) = line_of_three(&lab);
    let bird = Bird::start_with_config(&b, "bird", &bird_gr_config(&["198.18.10.0/24"])).unwrap();
    let mine = (net("198.18.20.0/24"), PathAttrs::default());
    // Two configured peers, one of which never comes up: the deferral runs to its limit.
    let down = neighbor("absent", "198.51.100.9", "198.51.100.1", 65009);
    let tortie = Tortie::start_restarted(
        &a,
        vec![neighbor("bird", "192.0.2.2", "192.0.2.1", 65002), down],
        vec![mine.clone()],
        Duration::from_secs(6),
    );
    let started = std::time::Instant::now();
    bird.wait_route(net("198.18.20.0/24"), UP).unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "advertised before the deferral ended: {:?}",
        started.elapsed()
    );
    assert_eq!(tortie.stats.deferrals_ended.load(Ordering::Relaxed), 1);
    drop(tortie);
    drop(bird);

    // Every peer up and its End-of-RIB in: no need to wait for the limit.
    let bird = Bird::start_with_config(&b, "bird-b", &bird_gr_config(&["198.18.10.0/24"])).unwrap();
    let tortie = Tortie::start_restarted(
        &a,
        vec![neighbor("bird", "192.0.2.2", "192.0.2.1", 65002)],
        vec![mine],
        Duration::from_secs(300),
    );
    bird.wait_route(net("198.18.20.0/24"), UP).unwrap();
    assert_eq!(tortie.stats.deferrals_ended.load(Ordering::Relaxed), 1);
}

#[test]
fn bird_keeps_a_restarting_tortie_s_routes_the_whole_time() {
    let lab = Lab::new("gr-tortie").unwrap();
    let (a, b, _c) = line_of_three(&lab);
    let bird = Bird::start_with_config(&b, "bird", &bird_gr_config(&[])).unwrap();
    // tortie restarts with its kernel routes kept: the F bit is set.
    let to_bird = || gr_neighbor_bird(true);
    let mine = (net("198.18.30.0/24"), PathAttrs::default());
    let tortie = Tortie::start(&a, vec![to_bird()], vec![mine.clone()]);
    bird.wait_route(net("198.18.30.0/24"), UP).unwrap();
    let present = || bird.routes().unwrap().iter().any(|r| r.prefix == net("198.18.30.0/24"));

    // Killed: its sockets close with no NOTIFICATION.
    drop(tortie);
    for _ in 0..10 {
        assert!(present(), "BIRD dropped the route of a gracefully restarting peer");
        std::thread::sleep(Duration::from_millis(200));
    }
    let tortie = Tortie::start_restarted(&a, vec![to_bird()], vec![mine], Duration::from_secs(60));
    wait_for("the restarted speaker to finish its deferral", UP, || {
        assert!(present(), "the route left BIRD during the restart");
        Ok(if tortie.stats.deferrals_ended.load(Ordering::Relaxed) == 1 {
            Check::Done(())
        } else {
            Check::Pending("deferring".into())
        })
    })
    .unwrap();
    for _ in 0..10 {
        assert!(present(), "BIRD dropped the route after tortie's End-of-RIB");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(tortie.status("bird").state, State::Established);
}

#[test]
fn soft_reconfiguration_inbound_applies_a_new_import_policy_to_a_peer_that_cannot_refresh() {
    let lab = Lab::new("soft-in").unwrap();
    let (a, b, c) = line_of_three(&lab);
    let frr = frr_monitor(&c);
    let config = bird_gr_config(&["198.18.10.0/24", "198.18.11.0/24"])
        .replace("graceful restart on;", "graceful restart off; enable route refresh off;");
    let bird = Bird::start_with_config(&b, "bird", &config).unwrap();
    let mut to_bird = neighbor("bird", "192.0.2.2", "192.0.2.1", 65002);
    to_bird.soft_reconfiguration_inbound = true;
    let reject_11 = Policy {
        rules: vec![Rule { cidr: Some((MatchOperator::Equal, net("198.18.11.0/24"))), ..Rule::any(Verdict::Reject) }],
    };
    to_bird.import_policy = Some(reject_11);
    let tortie = Tortie::start(&a, vec![to_bird, neighbor("frr", "198.51.100.2", "198.51.100.1", 65003)], vec![]);
    frr.wait_route(net("198.18.10.0/24"), UP).unwrap();
    assert!(!frr.routes().unwrap().iter().any(|r| r.prefix == net("198.18.11.0/24")), "rejected on import");
    let negotiated = tortie.status("bird").negotiated.unwrap();
    assert!(!negotiated.route_refresh, "BIRD was told not to offer route refresh");
    let up_since = tortie.status("bird").since;

    tortie.command(SpeakerCommand::SetPolicies {
        peer: "bird".into(),
        import: Some(Policy::accept_all()),
        export: Some(Policy::accept_all()),
    });
    frr.wait_route(net("198.18.11.0/24"), UP).unwrap();
    let now = tortie.status("bird");
    assert_eq!((now.state, now.since), (State::Established, up_since), "the session was not reset");
    assert!(bird.protocol("tortie").unwrap().info.contains("Established"));
}

/// A BIRD config for an IPv6 session from `local` (AS `asn`) to tortie at
/// `tortie`, announcing `routes` (IPv6 documentation prefixes, RFC 3849).
fn bird_v6_config(router_id: &str, asn: u32, local: &str, tortie: &str, routes: &[&str]) -> String {
    let statics: String = routes.iter().map(|r| format!("route {r} blackhole; ")).collect();
    format!(
        "router id {router_id};\nprotocol device {{ }}\nprotocol static announce6 {{ ipv6; {statics}}}\n\
         protocol bgp tortie {{\n  local {local} as {asn}; neighbor {tortie} as 65001;\n  \
         ipv6 {{ import all; export where source ~ [ RTS_STATIC, RTS_BGP ]; }};\n  \
         connect delay time 1; connect retry time 1; error wait time 1, 2; hold time 9; keepalive time 3;\n  \
         graceful restart off;\n}}\n"
    )
}

#[test]
fn ipv6_routes_flow_bird_to_tortie_to_bird_in_mp_reach_with_next_hop_self_and_withdraw() {
    use tortie_bgp::packet::Family;
    let lab = Lab::new("ipv6").unwrap();
    let (a, b, c) = line_of_three(&lab);
    // IPv6 documentation addresses (RFC 3849) on the same links, no DAD wait.
    for (ns, dev, addr) in [
        (&a, "to-b", "2001:db8:1::1/64"),
        (&b, "eth0", "2001:db8:1::2/64"),
        (&a, "to-c", "2001:db8:2::1/64"),
        (&c, "eth0", "2001:db8:2::2/64"),
    ] {
        ns.ip(&["addr", "add", addr, "dev", dev, "nodad"]).unwrap();
    }
    let injector = Bird::start_with_config(
        &b,
        "bird-b",
        &bird_v6_config("192.0.2.2", 65002, "2001:db8:1::2", "2001:db8:1::1", &["2001:db8:100::/48"]),
    )
    .unwrap();
    let monitor = Bird::start_with_config(
        &c,
        "bird-c",
        &bird_v6_config("198.51.100.2", 65003, "2001:db8:2::2", "2001:db8:2::1", &[]),
    )
    .unwrap();
    let v6 = |mut n: Neighbor| {
        n.session.local.families = vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST];
        n
    };
    let tortie = Tortie::start(
        &a,
        vec![
            v6(neighbor("b", "2001:db8:1::2", "2001:db8:1::1", 65002)),
            v6(neighbor("c", "2001:db8:2::2", "2001:db8:2::1", 65003)),
        ],
        vec![(net("2001:db8:200::/48"), PathAttrs::default())],
    );
    let learned = monitor.wait_route(net("2001:db8:100::/48"), UP).unwrap();
    assert_eq!(learned.as_path, vec![65001, 65002]);
    assert_eq!(learned.next_hop, Some(ip("2001:db8:2::1")), "next hop self, the global address");
    // RFC 2545 §3: on the shared link, our link-local address follows it.
    let link = a.ip(&["-6", "addr", "show", "dev", "to-c", "scope", "link"]).unwrap();
    let ours_ll = link.split_whitespace().skip_while(|w| *w != "inet6").nth(1).unwrap().split('/').next().unwrap();
    let shown = monitor.birdc(&["show", "route", "all", "2001:db8:100::/48"]).unwrap();
    assert!(shown.contains(&format!("BGP.next_hop: 2001:db8:2::1 {ours_ll}")), "{shown}");
    let ours = injector.wait_route(net("2001:db8:200::/48"), UP).unwrap();
    assert_eq!((ours.as_path, ours.next_hop), (vec![65001], Some(ip("2001:db8:1::1"))));
    let negotiated = tortie.status("c").negotiated.unwrap();
    assert!(negotiated.families.contains(&Family::IPV6_UNICAST));

    // BIRD withdraws: MP_UNREACH_NLRI carries it through.
    injector.birdc(&["disable", "announce6"]).unwrap();
    wait_for("the monitor to lose 2001:db8:100::/48", UP, || {
        let gone = !monitor.routes()?.iter().any(|r| r.prefix == net("2001:db8:100::/48"));
        Ok(if gone { Check::Done(()) } else { Check::Pending("still there".into()) })
    })
    .unwrap();
    assert!(monitor.routes().unwrap().iter().any(|r| r.prefix == net("2001:db8:200::/48")), "ours stays");
}

#[test]
fn our_own_as_in_a_received_path_is_a_loop_unless_allow_local_as_permits_it() {
    let lab = Lab::new("allowas").unwrap();
    let (a, b, c) = line_of_three(&lab);
    let frr = frr_monitor(&c);
    // 198.18.50.0/24 arrives with AS_PATH 65002 65001 (ours), 198.18.51.0/24 with 65002.
    let config = "router id 192.0.2.2;\nprotocol device { }\n\
        protocol static announce4 { ipv4; route 198.18.50.0/24 blackhole; route 198.18.51.0/24 blackhole; }\n\
        protocol bgp tortie {\n  local as 65002; neighbor 192.0.2.1 as 65001;\n  \
        ipv4 { import none; export filter { if net = 198.18.50.0/24 then bgp_path.prepend(65001); accept; }; };\n  \
        connect delay time 1; connect retry time 1; error wait time 1, 2; hold time 9; keepalive time 3;\n  graceful restart off;\n}\n";
    let _bird = Bird::start_with_config(&b, "bird", config).unwrap();
    let with_allowance = |allowed: u8| {
        let mut n = neighbor("bird", "192.0.2.2", "192.0.2.1", 65002);
        n.allow_local_as = allowed;
        Tortie::start(&a, vec![n, neighbor("frr", "198.51.100.2", "198.51.100.1", 65003)], vec![])
    };
    let tortie = with_allowance(0);
    frr.wait_route(net("198.18.51.0/24"), UP).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(!frr.routes().unwrap().iter().any(|r| r.prefix == net("198.18.50.0/24")), "a loop: dropped");
    drop(tortie);
    let _tortie = with_allowance(1);
    let r = frr.wait_route(net("198.18.50.0/24"), UP).unwrap();
    assert_eq!(r.as_path, vec![65001, 65002, 65001], "accepted with one occurrence allowed");
}

#[test]
fn malformed_attributes_from_exabgp_are_treated_as_withdraw_or_discarded_and_counted() {
    use tortie_bgp::speaker::{PeerCounts, Query, RoutesPage};
    let lab = Lab::new("rfc7606").unwrap();
    let (a, b, _c) = line_of_three(&lab);
    // RFC 7606: a MULTI_EXIT_DISC of 3 octets (§7.4: treat-as-withdraw) and an
    // ATOMIC_AGGREGATE of 1 octet (§7.6: attribute discard), each on its own
    // route, and one well-formed route; sent by ExaBGP as raw attributes;
    // and two routes whose NEXT_HOP is unusable (tortie's own address, 0.0.0.0).
    let exa_conf = "neighbor 192.0.2.1 {
  router-id 192.0.2.2;
  local-address 192.0.2.2;
  local-as 65002;
  peer-as 65001;
  hold-time 9;
  family { ipv4 unicast; }
  static {
    route 198.18.60.0/24 next-hop 192.0.2.2 attribute [ 0x04 0x80 0x000005 ];
    route 198.18.61.0/24 next-hop 192.0.2.2 attribute [ 0x06 0x40 0x00 ];
    route 198.18.62.0/24 next-hop 192.0.2.2;
    route 198.18.63.0/24 next-hop 192.0.2.1;
    route 198.18.64.0/24 next-hop 0.0.0.0;
  }
}
";
    let exa = ExaBgp::start_with_config(&b, "exa-7606", exa_conf).unwrap();
    // ExaBGP only dials; tortie dials too (refused: ExaBGP does not listen)
    // and takes ExaBGP's connection while it waits to dial again.
    let tortie = Tortie::start(&a, vec![neighbor("exa", "192.0.2.2", "192.0.2.1", 65002)], vec![]);
    let ask_routes = || {
        // (A page holds thousands of routes: these few come in one.)
        let (reply, rx) = tokio::sync::oneshot::channel::<RoutesPage>();
        tortie.command(SpeakerCommand::Query(Query::Routes { prefix: None, after: None, reply }));
        rx.blocking_recv().unwrap().routes.iter().map(|r| r.prefix.to_string()).collect::<Vec<_>>()
    };
    let routes = wait_for("the well-formed routes", UP, || {
        let routes = ask_routes();
        Ok(if routes.len() >= 2 { Check::Done(routes) } else { Check::Pending(format!("{routes:?}")) })
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{:?}", exa.daemon().log_tail(), tortie.status("exa")));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(ask_routes(), vec!["198.18.61.0/24", "198.18.62.0/24"], "treat-as-withdraw left {routes:?}");
    let (tx, rx) = tokio::sync::oneshot::channel::<Vec<PeerCounts>>();
    tortie.command(SpeakerCommand::Query(Query::Peers {
        now: std::time::Instant::now(),
        max_age: std::time::Duration::ZERO,
        reply: tx,
    }));
    let counts = rx.blocking_recv().unwrap();
    let exa = counts.iter().find(|c| c.name == "exa").unwrap();
    assert_eq!((exa.received, exa.treated_as_withdraw, exa.attributes_discarded), (2, 1, 1), "{exa:?}");
    // RFC 4271 §6.3: our own address or 0.0.0.0 as NEXT_HOP: ignored, and counted.
    assert_eq!(exa.next_hop_ignored, 2, "{exa:?}");
}
