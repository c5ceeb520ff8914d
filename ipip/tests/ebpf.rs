//! The eBPF IPIP plane's nodes map (the sources it unwraps) on the real
//! kernel, before and after felix's first table: a fresh plane takes the
//! nodes it was started with, the first table replaces them, and a plane
//! started again adopts the map as it was (a restart keeps unwrapping
//! for the nodes of the last table, whatever the datastore says then).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tortie_ipip::EncapTable;
use tortie_ipip::ebpf::{self, PlaneConfig};
use tortie_lab::Lab;

const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn config(nodes: &[Ipv4Addr]) -> PlaneConfig {
    PlaneConfig {
        local: LOCAL,
        tunnel_address: Some(Ipv4Addr::new(198, 18, 0, 1)),
        mtu: 1480,
        bpffs: tortie_lab::bpffs().unwrap(),
        nodes: nodes.to_vec(),
    }
}

/// The addresses in this namespace's pinned nodes map (bpftool's JSON:
/// each key four octets, `"0xc0","0x00","0x02","0x02"`), sorted.
fn nodes_map() -> Vec<Ipv4Addr> {
    let pins = ebpf::pin_dir(&tortie_lab::bpffs().unwrap()).unwrap().join("tortie_nodes");
    let out = std::process::Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(&pins)
        .output()
        .expect("bpftool (scripts/install-deps installs it)");
    assert!(out.status.success(), "bpftool: {}", String::from_utf8_lossy(&out.stderr));
    let json = String::from_utf8(out.stdout).unwrap();
    let mut nodes: Vec<Ipv4Addr> = json
        .split("\"key\":[")
        .skip(1)
        .map(|entry| {
            let octets: Vec<u8> = entry
                .split(']')
                .next()
                .unwrap()
                .split(',')
                .map(|o| u8::from_str_radix(o.trim().trim_matches('"').trim_start_matches("0x"), 16).unwrap())
                .collect();
            Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3])
        })
        .collect();
    nodes.sort_unstable();
    nodes
}

async fn settled(what: &str, want: &[Ipv4Addr]) {
    for _ in 0..100 {
        if nodes_map() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(nodes_map(), want, "{what}: not within 5 s");
}

#[test]
fn a_fresh_plane_unwraps_for_the_nodes_it_starts_with_until_the_first_table_and_a_restart_adopts_the_map() {
    let lab = Lab::new("ipip-nodes").unwrap();
    let ns = lab.netns("n1").unwrap();
    // The underlay: an interface that holds the node's address.
    ns.ip(&["link", "add", "u0", "type", "veth", "peer", "name", "u1"]).unwrap();
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "u0"]).unwrap();
    for dev in ["u0", "u1"] {
        ns.ip(&["link", "set", dev, "up"]).unwrap();
    }
    let [n2, n3, n4] = [2, 3, 4].map(|i| Ipv4Addr::new(192, 0, 2, i));
    ns.enter(|| {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
            // No table yet (felix has not published one): the nodes it started with.
            let (tx, rx) = watch::channel(Arc::new(EncapTable::default()));
            let plane = ebpf::start(&config(&[n3, n2]), rx).await.unwrap();
            assert_eq!(nodes_map(), [n2, n3], "a fresh plane's nodes before any table");
            // The first table replaces them.
            tx.send_replace(Arc::new(EncapTable::new([], [n2])));
            settled("the first table's nodes", &[n2]).await;
            drop(plane);
            // Started again, before a table: the map is adopted as it was.
            let (_tx, rx) = watch::channel(Arc::new(EncapTable::default()));
            let _plane = ebpf::start(&config(&[n4]), rx).await.unwrap();
            assert_eq!(nodes_map(), [n2], "an adopted map is kept until the next table");
            assert!(ebpf::remove(LOCAL, &config(&[]).bpffs).await.unwrap(), "the plane was there to remove");
        })
    })
    .unwrap();
}
