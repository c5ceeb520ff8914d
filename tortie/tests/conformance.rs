//! Malformed and semantically wrong BGP input, side by side: our own test
//! peer (raw bytes, written case by case from RFC 4271 §6, RFC 7606 §3–§7
//! and RFC 2918) opens an eBGP session to each system under test — the
//! tortie daemon, BIRD 2, FRR and GoBGP, each waiting passively for it —
//! sends one case, then a well-formed control route, and reads what
//! happened: a NOTIFICATION (code/subcode), the route kept, or the route
//! treated as withdrawn with the session up. tortie must do what the RFCs
//! say in every case; the others' results are printed for
//! `docs/conformance.md`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Cluster, our_routes};
use tortie_lab::Netns;
use tortie_lab::peers::{BgpPeer, Bird, Frr, GoBgp};

/// What a system did with a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The session was reset with this NOTIFICATION.
    Reset(u8, u8),
    /// The route is in the RIB (attributes discarded or kept).
    Kept,
    /// The route is not, and the session and the control route are.
    Withdrawn,
    /// The session stays up (a message that carries no route).
    Up,
    /// Something else (no NOTIFICATION, session gone, or no control route).
    Other,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Reset(c, s) => write!(f, "NOTIFICATION {c}/{s}"),
            Outcome::Kept => write!(f, "route kept"),
            Outcome::Withdrawn => write!(f, "treat-as-withdraw"),
            Outcome::Up => write!(f, "ignored, session up"),
            Outcome::Other => write!(f, "other"),
        }
    }
}

const TESTER_AS: u32 = 65001;
const SUT_AS: u32 = 65002;

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend(((19 + body.len()) as u16).to_be_bytes());
    m.push(kind);
    m.extend(body);
    m
}

/// OPEN: AS_TRANS in the 2-octet field, hold 90 s, IPv4 unicast, 4-octet AS
/// (RFC 6793), route refresh (RFC 2918).
fn open(id: Ipv4Addr) -> Vec<u8> {
    let mut caps = vec![1, 4, 0, 1, 0, 1]; // multiprotocol IPv4 unicast
    caps.extend([65, 4]);
    caps.extend(TESTER_AS.to_be_bytes());
    caps.extend([2, 0]); // route refresh
    let mut body = vec![4];
    body.extend(23456u16.to_be_bytes());
    body.extend(90u16.to_be_bytes());
    body.extend(id.octets());
    body.push(caps.len() as u8 + 2);
    body.extend([2, caps.len() as u8]);
    body.extend(caps);
    message(1, &body)
}

fn attr(flags: u8, code: u8, value: &[u8]) -> Vec<u8> {
    let mut a = vec![flags, code, value.len() as u8];
    a.extend(value);
    a
}

fn origin() -> Vec<u8> {
    attr(0x40, 1, &[0])
}

fn as_path() -> Vec<u8> {
    let mut v = vec![2, 1];
    v.extend(TESTER_AS.to_be_bytes());
    attr(0x40, 2, &v)
}

fn next_hop(a: Ipv4Addr) -> Vec<u8> {
    attr(0x40, 3, &a.octets())
}

/// An UPDATE announcing `prefix` (a /24) with `attrs`.
fn update(attrs: &[u8], prefix: Ipv4Addr) -> Vec<u8> {
    let mut body = vec![0, 0];
    body.extend((attrs.len() as u16).to_be_bytes());
    body.extend(attrs);
    body.push(24);
    body.extend(&prefix.octets()[..3]);
    message(2, &body)
}

/// One case: a name with its rule, the bytes (given the tester's and the
/// system's addresses and the case's prefix), and what the RFCs want.
struct Case {
    name: &'static str,
    bytes: fn(Ipv4Addr, Ipv4Addr, Ipv4Addr) -> Vec<u8>,
    want: Outcome,
}

fn good(me: Ipv4Addr) -> Vec<u8> {
    [origin(), as_path(), next_hop(me)].concat()
}

fn cases() -> Vec<Case> {
    use Outcome::*;
    vec![
        Case {
            name: "ORIGIN of 2 octets (RFC 7606 §7.1)",
            bytes: |me, _, p| update(&[attr(0x40, 1, &[0, 0]), as_path(), next_hop(me)].concat(), p),
            want: Withdrawn,
        },
        Case {
            name: "ORIGIN value 3, undefined (RFC 7606 §7.1)",
            bytes: |me, _, p| update(&[attr(0x40, 1, &[3]), as_path(), next_hop(me)].concat(), p),
            want: Withdrawn,
        },
        Case {
            name: "AS_PATH segment longer than the attribute (RFC 7606 §7.2)",
            bytes: |me, _, p| update(&[origin(), attr(0x40, 2, &[2, 2, 0, 0, 0xfd, 0xe9]), next_hop(me)].concat(), p),
            want: Withdrawn,
        },
        Case {
            name: "NEXT_HOP of 5 octets (RFC 7606 §7.3)",
            bytes: |me, _, p| {
                let mut nh = me.octets().to_vec();
                nh.push(0);
                update(&[origin(), as_path(), attr(0x40, 3, &nh)].concat(), p)
            },
            want: Withdrawn,
        },
        Case {
            name: "NEXT_HOP 0.0.0.0 (RFC 4271 §6.3)",
            bytes: |_, _, p| update(&[origin(), as_path(), next_hop(Ipv4Addr::UNSPECIFIED)].concat(), p),
            want: Withdrawn,
        },
        Case {
            name: "NEXT_HOP the receiver's own address (RFC 4271 §6.3)",
            bytes: |_, sut, p| update(&[origin(), as_path(), next_hop(sut)].concat(), p),
            want: Withdrawn,
        },
        Case {
            name: "MULTI_EXIT_DISC of 3 octets (RFC 7606 §7.4)",
            bytes: |me, _, p| update(&[good(me), attr(0x80, 4, &[0, 0, 5])].concat(), p),
            want: Withdrawn,
        },
        Case {
            name: "LOCAL_PREF from an external peer (RFC 7606 §7.5: discard)",
            bytes: |me, _, p| update(&[good(me), attr(0x40, 5, &[0, 0, 0, 200])].concat(), p),
            want: Kept,
        },
        Case {
            name: "ATOMIC_AGGREGATE of 1 octet (RFC 7606 §7.6: discard)",
            bytes: |me, _, p| update(&[good(me), attr(0x40, 6, &[0])].concat(), p),
            want: Kept,
        },
        Case {
            name: "AGGREGATOR of 5 octets (RFC 7606 §7.7: discard)",
            bytes: |me, _, p| update(&[good(me), attr(0xc0, 7, &[0, 0, 0xfd, 0xe9, 1])].concat(), p),
            want: Kept,
        },
        Case {
            name: "COMMUNITIES of 3 octets (RFC 7606 §7.8)",
            bytes: |me, _, p| update(&[good(me), attr(0xc0, 8, &[0, 1, 2])].concat(), p),
            want: Withdrawn,
        },
        Case {
            name: "ORIGIN missing (RFC 7606 §3.d)",
            bytes: |me, _, p| update(&[as_path(), next_hop(me)].concat(), p),
            want: Withdrawn,
        },
        Case {
            name: "ORIGIN flagged optional (RFC 7606 §3.c)",
            bytes: |me, _, p| update(&[attr(0xc0, 1, &[0]), as_path(), next_hop(me)].concat(), p),
            want: Withdrawn,
        },
        Case {
            name: "MULTI_EXIT_DISC twice (RFC 7606 §3.g: all but the first discarded)",
            bytes: |me, _, p| {
                update(&[good(me), attr(0x80, 4, &[0, 0, 0, 5]), attr(0x80, 4, &[0, 0, 0, 6])].concat(), p)
            },
            want: Kept,
        },
        Case {
            name: "unknown optional transitive attribute (RFC 4271 §5: passed on)",
            bytes: |me, _, p| update(&[good(me), attr(0xc0, 250, &[1, 2, 3])].concat(), p),
            want: Kept,
        },
        Case {
            name: "unknown well-known attribute (RFC 4271 §6.3: 3/2)",
            bytes: |me, _, p| update(&[good(me), attr(0x40, 250, &[1])].concat(), p),
            want: Reset(3, 2),
        },
        Case {
            name: "last attribute running past the path attributes (RFC 7606 §4: treat-as-withdraw, the NLRI found by the total length)",
            bytes: |me, _, p| {
                let mut a = good(me);
                a.extend([0x40, 5, 200, 0, 0]);
                update(&a, p)
            },
            want: Withdrawn,
        },
        Case {
            name: "Withdrawn Routes Length past the message (RFC 4271 §6.3: 3/1)",
            bytes: |_, _, _| message(2, &[0, 9, 0, 0]),
            want: Reset(3, 1),
        },
        Case {
            name: "NLRI prefix length 33 (RFC 7606 §5.3, RFC 4271 §6.3: 3/10)",
            bytes: |me, _, p| {
                let mut m = update(&good(me), p);
                let at = m.len() - 4;
                m[at] = 33;
                m
            },
            want: Reset(3, 10),
        },
        Case {
            name: "message of 4,097 octets without Extended Messages (RFC 8654, RFC 4271 §6.1: 1/2)",
            bytes: |me, _, p| {
                let mut attrs = good(me);
                attrs.extend(attr(0xc0, 250, &[0; 255]).repeat(16));
                let mut m = update(&attrs, p);
                m.resize(4097, 0);
                m[16..18].copy_from_slice(&4097u16.to_be_bytes());
                m
            },
            want: Reset(1, 2),
        },
        Case {
            name: "ROUTE-REFRESH for IPv6, not negotiated (RFC 2918 §4: ignored)",
            bytes: |_, _, _| message(5, &[0, 2, 0, 1]),
            want: Up,
        },
    ]
}

/// A system under test: its address, its name in the table, and what
/// it holds.
trait System {
    fn prefixes(&self) -> Vec<Ipv4Addr>;
}

struct Daemon<'a>(&'a Netns);

impl System for Daemon<'_> {
    fn prefixes(&self) -> Vec<Ipv4Addr> {
        our_routes(self.0).iter().filter_map(|l| l.split_once('/').and_then(|(p, _)| p.parse().ok())).collect()
    }
}

impl<T: BgpPeer> System for T {
    fn prefixes(&self) -> Vec<Ipv4Addr> {
        self.routes()
            .unwrap_or_default()
            .iter()
            .filter_map(|r| match r.prefix.addr() {
                std::net::IpAddr::V4(a) => Some(a),
                std::net::IpAddr::V6(_) => None,
            })
            .collect()
    }
}

/// Reads messages for `window`; returns the first NOTIFICATION's code and
/// subcode, and whether the connection is still open.
fn read_for(stream: &mut TcpStream, window: Duration) -> (Option<(u8, u8)>, bool) {
    let until = Instant::now() + window;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (notification(&buf), true);
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return (notification(&buf), false),
            Ok(n) => buf.extend(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return (notification(&buf), true);
            }
            Err(_) => return (notification(&buf), false),
        }
    }
}

fn notification(buf: &[u8]) -> Option<(u8, u8)> {
    let mut at = 0;
    while at + 19 <= buf.len() {
        let len = usize::from(u16::from_be_bytes([buf[at + 16], buf[at + 17]]));
        if buf[at + 18] == 3 && at + 21 <= buf.len() {
            return Some((buf[at + 19], buf[at + 20]));
        }
        at += len.max(19);
    }
    None
}

/// Runs every case against the system at `sut` from `tester` (its address
/// `me`): one session per case.
fn run(tester: &Netns, me: Ipv4Addr, sut: Ipv4Addr, system: &dyn System) -> Vec<Outcome> {
    cases()
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let (bad, control) = (Ipv4Addr::new(198, 19, i as u8, 0), Ipv4Addr::new(198, 19, 100 + i as u8, 0));
            // The system may still be waiting out its back-off from the last case.
            let connect = Instant::now();
            let mut stream = loop {
                let attempt = tester.enter(move || {
                    let mut s =
                        TcpStream::connect_timeout(&SocketAddr::from((sut, 179)), Duration::from_secs(1)).ok()?;
                    s.write_all(&open(me)).ok()?;
                    s.write_all(&message(4, &[])).ok()?;
                    let (n, open) = read_for(&mut s, Duration::from_millis(700));
                    (n.is_none() && open).then_some(s)
                });
                match attempt.unwrap() {
                    Some(s) => break s,
                    None if connect.elapsed() < Duration::from_secs(40) => {
                        std::thread::sleep(Duration::from_millis(500))
                    }
                    None => panic!("{sut} never took a session for {}", case.name),
                }
            };
            stream.write_all(&(case.bytes)(me, sut, bad)).ok();
            stream.write_all(&update(&good(me), control)).ok();
            let (n, open) = read_for(&mut stream, Duration::from_millis(1500));
            let held = system.prefixes();
            let outcome = match n {
                Some((code, sub)) => Outcome::Reset(code, sub),
                None if !open => Outcome::Other,
                None if held.contains(&bad) => Outcome::Kept,
                None if case.want == Outcome::Up && held.contains(&control) => Outcome::Up,
                None if held.contains(&control) => Outcome::Withdrawn,
                None => Outcome::Other,
            };
            drop(stream);
            outcome
        })
        .collect()
}

/// A namespace on the switch at `addr`.
fn host(c: &Cluster, name: &str, addr: &str) -> Netns {
    let ns = c.lab.netns(name).unwrap();
    c.switch.attach(&ns, "eth0").unwrap();
    ns.add_addr("eth0", format!("{addr}/24").parse().unwrap()).unwrap();
    ns
}

#[test]
fn malformed_input_side_by_side_tortie_conforms_in_every_case() {
    let c = Cluster::new("conformance", 1);
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 65002, nodeToNodeMeshEnabled: false}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: tester
  annotations: {tortie.io/passive: 'true', tortie.io/idle-hold-time: 1s, tortie.io/max-idle-hold-time: 1s}
spec: {node: n1, peerIP: 192.0.2.51, asNumber: 65001}
",
    );
    let _daemon = c.start(0);
    let passive = |sut: &str, me: &str| {
        format!(
            "router id {sut};\nprotocol device {{ }}\nprotocol bgp tester {{\n  local {sut} as {SUT_AS};\n  \
             neighbor {me} as {TESTER_AS};\n  passive on;\n  ipv4 {{ import all; export none; }};\n  \
             error wait time 1, 1;\n  graceful restart off;\n}}\n"
        )
    };
    let bird_ns = host(&c, "bird", "192.0.2.11");
    let bird = Bird::start_with_config(&bird_ns, "bird-sut", &passive("192.0.2.11", "192.0.2.52")).unwrap();
    let frr_ns = host(&c, "frr", "192.0.2.12");
    let frr = Frr::start_with_config(
        &frr_ns,
        "frr-sut",
        &format!(
            "frr defaults traditional\nhostname sut\nrouter bgp {SUT_AS}\n bgp router-id 192.0.2.12\n \
             no bgp ebgp-requires-policy\n no bgp network import-check\n neighbor 192.0.2.53 remote-as {TESTER_AS}\n \
             neighbor 192.0.2.53 passive\n"
        ),
    )
    .unwrap();
    let gobgp_ns = host(&c, "gobgp", "192.0.2.13");
    let gobgp = GoBgp::start_with_config(
        &gobgp_ns,
        "gobgp-sut",
        &format!(
            "[global.config]\n  as = {SUT_AS}\n  router-id = \"192.0.2.13\"\n  local-address-list = [\"192.0.2.13\"]\n\
             [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"192.0.2.54\"\n    peer-as = {TESTER_AS}\n  \
             [neighbors.transport.config]\n    passive-mode = true\n    local-address = \"192.0.2.13\"\n  \
             [neighbors.timers.config]\n    idle-hold-time-after-reset = 1\n  \
             [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-unicast\"\n"
        ),
    )
    .unwrap();
    let testers: Vec<(Netns, Ipv4Addr)> = (51..=54)
        .map(|i| (host(&c, &format!("tester{i}"), &format!("192.0.2.{i}")), Ipv4Addr::new(192, 0, 2, i)))
        .collect();
    let daemon = Daemon(&c.nodes[0]);
    let systems: [(&str, Ipv4Addr, &(dyn System + Sync)); 4] = [
        ("tortie", Ipv4Addr::new(192, 0, 2, 1), &daemon),
        ("BIRD 2", Ipv4Addr::new(192, 0, 2, 11), &bird),
        ("FRR", Ipv4Addr::new(192, 0, 2, 12), &frr),
        ("GoBGP", Ipv4Addr::new(192, 0, 2, 13), &gobgp),
    ];
    let results: Vec<Vec<Outcome>> = std::thread::scope(|s| {
        let runs: Vec<_> = systems
            .iter()
            .zip(&testers)
            .map(|((name, sut, system), (tester, me))| {
                s.spawn(move || {
                    let started = Instant::now();
                    let outcomes = run(tester, *me, *sut, *system);
                    println!("{name}: {} cases in {:.1} s", outcomes.len(), started.elapsed().as_secs_f64());
                    outcomes
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });

    let mut table = String::from("| case | RFC | tortie | BIRD 2 | FRR | GoBGP |\n|---|---|---|---|---|---|\n");
    for (i, case) in cases().iter().enumerate() {
        let cell = |o: Outcome| if o == case.want { format!("{o} ✓") } else { format!("{o} ✗") };
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            case.name,
            case.want,
            cell(results[0][i]),
            cell(results[1][i]),
            cell(results[2][i]),
            cell(results[3][i])
        ));
    }
    println!("{table}");
    let wrong: Vec<&str> =
        cases().iter().zip(&results[0]).filter(|(case, got)| case.want != **got).map(|(case, _)| case.name).collect();
    assert!(wrong.is_empty(), "tortie differs from the RFCs in: {wrong:?}\n{table}");
}
