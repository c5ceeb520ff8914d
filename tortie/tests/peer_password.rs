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

#[test]
fn the_mesh_password_is_every_mesh_sessions_md5_key() {
    let c = Cluster::new("meshmd5", 2);
    let secrets = |dir: &str, password: &str| {
        let d = c.lab.dir().join(dir);
        std::fs::create_dir_all(d.join("mesh-secret")).unwrap();
        std::fs::write(d.join("mesh-secret/password"), password).unwrap();
        d.display().to_string()
    };
    let (right, wrong) = (secrets("secrets", "m3sh\n"), secrets("secrets-other", "other\n"));
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeMeshPassword: {secretKeyRef: {name: mesh-secret, key: password}}}
",
    );
    let run = |i: usize| c.nodes[i].dir().join("run").display().to_string();
    let up = |i: usize| c.tortie(&["status", "--run-dir", &run(i)], "").contains("| up ");
    // n1 reads the lab's secrets (`Cluster::start`); n2 reads `dir`.
    let n2_with = |dir: &str| {
        let env = [("TORTIE_DATASTORE", c.url.as_str()), ("TORTIE_LOG", "info")];
        let extra = ["--secrets-dir", dir];
        c.nodes[1]
            .spawn_tortie_node("tortie-n2", env!("CARGO_BIN_EXE_tortie"), "n2", &c.addrs[1], &extra, &env)
            .unwrap()
    };
    let _d1 = c.start(0);
    // Different keys on the two ends: TCP itself drops the other side's segments.
    let d2 = n2_with(&wrong);
    wait_until("both daemons answering", || {
        std::path::Path::new(&run(0)).join("tortie.sock").exists()
            && std::path::Path::new(&run(1)).join("tortie.sock").exists()
    });
    std::thread::sleep(Duration::from_secs(4));
    assert!(!up(0) && !up(1), "a mesh session with another key must not come up");
    drop(d2);
    let _d2 = n2_with(&right);
    wait_until("the mesh with the same key on both ends", || up(0) && up(1));
}
