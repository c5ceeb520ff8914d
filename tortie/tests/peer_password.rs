//! A BGPPeer's password (a secret, as Calico references it) becomes the
//! session's TCP MD5 key (RFC 2385): with the right key the ToR's session
//! comes up; a ToR with another key never gets one.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{Cluster, wait_until};
use tortie_lab::peers::{Bird, Neighbor, Speaker};

fn tor(c: &Cluster, name: &str, addr: &str, key: &str) -> Bird {
    let ns = c.lab.netns(name).unwrap();
    c.switch.attach(&ns, "eth0").unwrap();
    ns.add_addr("eth0", format!("{addr}/24").parse().unwrap()).unwrap();
    let n1 =
        Neighbor::new("n1", "192.0.2.1".parse().unwrap(), 64512).local_address(addr.parse().unwrap()).md5_password(key);
    Bird::start(
        &ns,
        &Speaker { router_id: addr.parse().unwrap(), asn: 65000, announce: Vec::new(), neighbors: vec![n1] },
    )
    .unwrap()
}

#[test]
fn a_bgppeer_password_secret_becomes_the_md5_key() {
    let c = Cluster::new("md5", 1);
    let secret = c.lab.dir().join("secrets/tor-secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("password"), "s3cret\n").unwrap();
    let good = tor(&c, "tor1", "192.0.2.100", "s3cret");
    let bad = tor(&c, "tor2", "192.0.2.101", "wrong");
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor1}
spec: {peerIP: 192.0.2.100, asNumber: 65000, password: {secretKeyRef: {name: tor-secret, key: password}}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor2}
spec: {peerIP: 192.0.2.101, asNumber: 65000, password: {secretKeyRef: {name: tor-secret, key: password}}}
",
    );
    let _d = c.start(0);
    wait_until("the session with the right key", || good.protocol("n1").is_ok_and(|p| p.info.contains("Established")));
    std::thread::sleep(Duration::from_secs(3));
    let p = bad.protocol("n1").unwrap();
    assert!(!p.info.contains("Established"), "a ToR with another key must not get a session: {p:?}");
}
