//! tortie's BFD against BIRD 2's bfd protocol over a veth, in namespaces:
//! the session comes up at 300 ms × 3, and each side takes it down when the
//! other goes silent.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tortie_bfd::{Diag, Peer, State, Timers};
use tortie_lab::peers::Bird;
use tortie_lab::{Check, Lab, Netns, wait_for};

const OURS: &str = "192.0.2.1";
const BIRD: &str = "192.0.2.2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn start_bird(ns: &Netns, name: &str) -> Bird {
    let config = format!(
        "router id {BIRD};\nprotocol device {{ }}\nprotocol bfd {{\n  interface \"eth0\" {{ interval 300 ms; multiplier 3; }};\n  \
         neighbor {OURS} local {BIRD};\n}}\n"
    );
    Bird::start_with_config(ns, name, &config).unwrap()
}

/// BIRD's line for our session (`birdc show bfd sessions`).
fn bird_session(bird: &Bird) -> String {
    let out = bird.birdc(&["show", "bfd", "sessions"]).unwrap_or_default();
    out.lines().find(|l| l.starts_with(OURS)).unwrap_or_default().to_string()
}

async fn next(events: &mut tokio::sync::mpsc::UnboundedReceiver<tortie_bfd::Event>) -> tortie_bfd::Event {
    tokio::time::timeout(Duration::from_secs(10), events.recv()).await.unwrap().unwrap()
}

#[test]
fn a_session_with_bird_comes_up_and_either_side_detects_the_others_silence() {
    let lab = Lab::new("bfd-bird").unwrap();
    let (ours, theirs) = (lab.netns("ours").unwrap(), lab.netns("bird").unwrap());
    tortie_lab::veth((&ours, "eth0"), (&theirs, "eth0")).unwrap();
    ours.add_addr("eth0", format!("{OURS}/24").parse().unwrap()).unwrap();
    theirs.add_addr("eth0", format!("{BIRD}/24").parse().unwrap()).unwrap();
    let mut bird = start_bird(&theirs, "bird-bfd");
    let runtime = || tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    ours.enter(|| {
        runtime().block_on(async {
            let (bfd, mut events) = tortie_bfd::start().unwrap();
            bfd.set_peers(vec![Peer { remote: ip(BIRD), local: ip(OURS), timers: Timers::default() }]);
            let mut event = next(&mut events).await;
            while event.change.to != State::Up {
                event = next(&mut events).await;
            }
            wait_for("BIRD to see the session up at 300 ms", Duration::from_secs(10), || {
                let line = bird_session(&bird);
                let fast = line.contains(" Up ") && line.contains("0.300") && line.contains("0.900");
                Ok(if fast { Check::Done(()) } else { Check::Pending(line) })
            })
            .unwrap();
            assert_eq!(bfd.sessions.borrow()[0].detection_time, Some(Duration::from_millis(900)));

            // BIRD dies: down after the detection time.
            bird.daemon().kill_now();
            let silent = Instant::now();
            let down = next(&mut events).await;
            assert_eq!((down.change.to, down.change.diag), (State::Down, Diag::TimeExpired), "{down:?}");
            println!("tortie saw BIRD's silence after {:?}", silent.elapsed());
            assert!(silent.elapsed() < Duration::from_secs(3));

            // BIRD again; then we fall silent and BIRD takes the session down.
            drop(bird);
            bird = start_bird(&theirs, "bird-bfd-2");
            let mut event = next(&mut events).await;
            while event.change.to != State::Up {
                event = next(&mut events).await;
            }
            wait_for("BIRD up again", Duration::from_secs(10), || {
                let line = bird_session(&bird);
                Ok(if line.contains(" Up ") { Check::Done(()) } else { Check::Pending(line) })
            })
            .unwrap();
            drop(bfd);
            let silent = Instant::now();
            wait_for("BIRD to see tortie's silence", Duration::from_secs(10), || {
                let line = bird_session(&bird);
                Ok(if line.contains(" Down ") { Check::Done(()) } else { Check::Pending(line) })
            })
            .unwrap();
            println!("BIRD saw tortie's silence after {:?}", silent.elapsed());
        })
    })
    .unwrap();
}
