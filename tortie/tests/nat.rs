//! natOutgoing through the daemon: a pod reaches an outside network that
//! has no route back to any pool only while its pool has natOutgoing, from
//! the node's address; a TCP connection through the NAT survives a
//! `kill -9` and restart of the daemon.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::{Cluster, wait_until};
use tortie_lab::tcp::{connects, listen};

const POOL: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pods}
spec: {cidr: 198.18.0.0/16, blockSize: 26, ipipMode: Never, natOutgoing: NAT}
";

/// An echo server in `ns`: each connection gets back what it sends.
fn echo(ns: &tortie_lab::Netns, at: SocketAddr) {
    let listener = ns.enter(|| TcpListener::bind(at)).unwrap().unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

fn round_trip(stream: &mut TcpStream, text: &[u8]) -> bool {
    let mut back = vec![0u8; text.len()];
    stream.write_all(text).is_ok() && stream.read_exact(&mut back).is_ok() && back == text
}

#[test]
fn nat_outgoing_reaches_the_outside_from_the_node_address_and_survives_a_daemon_restart() {
    let c = Cluster::two_subnets("nat");
    // The outside network: behind the router, routes back to the nodes' subnets only.
    let (_, rtr) = c.routed.as_ref().unwrap();
    let outside = c.lab.netns("out").unwrap();
    tortie_lab::veth((rtr, "eth2"), (&outside, "eth0")).unwrap();
    rtr.add_addr("eth2", "203.0.113.254/24".parse().unwrap()).unwrap();
    outside.add_addr("eth0", "203.0.113.10/24".parse().unwrap()).unwrap();
    for subnet in ["192.0.2.0/24", "198.51.100.0/24"] {
        outside.add_route(&format!("{subnet} via 203.0.113.254")).unwrap();
    }
    let pod = c.pod(0, "web", "198.18.0.1");
    let d = c.start(0);
    let to = SocketAddr::from(([203, 0, 113, 10], 8080));
    let seen = listen(&outside, to).unwrap();
    let t = Duration::from_millis(500);
    wait_until("n1's policy table to be in place", || {
        c.nodes[0].exec("nft", &["list", "table", "inet", "tortie"]).is_ok()
    });
    assert!(!connects(&pod.netns, to, t).unwrap(), "natOutgoing off: the outside has no route back");

    c.apply(&POOL.replace("NAT", "true"));
    wait_until("the pod reaches the outside once natOutgoing is on", || connects(&pod.netns, to, t).unwrap());
    wait_until("the outside to see the connection", || !seen.sources().is_empty());
    assert_eq!(seen.sources()[0].to_string(), "192.0.2.1", "translated to the node's address");

    let at = SocketAddr::from(([203, 0, 113, 10], 7));
    echo(&outside, at);
    let mut stream = pod.netns.enter(|| TcpStream::connect_timeout(&at, Duration::from_secs(2))).unwrap().unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(round_trip(&mut stream, b"before"));
    d.kill_now();
    assert!(round_trip(&mut stream, b"while the daemon is dead"), "the kernel keeps translating");
    let d = c.start(0);
    wait_until("the restarted daemon to rebuild its table", || {
        d.check_running().is_ok()
            && c.nodes[0]
                .http_get("127.0.0.1:9091".parse().unwrap(), "/metrics")
                .is_ok_and(|m| common::metric(&m, "tortie_policy_full_applies_total") >= 1.0)
    });
    assert!(round_trip(&mut stream, b"after the restart"), "the connection survives the restart:\n{}", d.log_tail());

    c.apply(&POOL.replace("NAT", "false"));
    wait_until("natOutgoing off again: no new connection gets out", || !connects(&pod.netns, to, t).unwrap());
    drop(d);
}
