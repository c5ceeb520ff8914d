//! The VXLAN plane on the real kernel, in two namespaces joined by a veth:
//! each node's device and VTEP carry a ping between addresses of their
//! blocks; entries follow the table by difference (strays on the device
//! go, entries on other devices stay, a node leaving takes its entries);
//! a plane started again adopts the device (same ifindex), and one with
//! another VNI makes it again.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tortie_ipip::vxlan::{self, DEVICE, Vtep, VtepTable, VxlanConfig};
use tortie_lab::{Lab, Netns};

fn config(local: &str, tunnel: &str, mac: [u8; 6], vni: u32) -> VxlanConfig {
    VxlanConfig {
        local: local.parse().unwrap(),
        vni,
        port: vxlan::DEFAULT_PORT,
        mtu: 1450,
        tunnel_address: tunnel.parse().unwrap(),
        mac,
    }
}

fn vtep(c: &VxlanConfig) -> Vtep {
    Vtep { tunnel_address: c.tunnel_address, mac: c.mac, node: c.local }
}

/// Runs `f` in `ns` on a runtime of its own (the plane works in the
/// namespace of the thread that starts it).
fn inside<T: Send>(ns: &Netns, f: impl AsyncFnOnce() -> T + Send) -> T {
    ns.enter(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f())).unwrap()
}

/// A plane started in `ns`, with its table's sender; the runtime stays up
/// in a thread of the namespace until the returned sender is dropped.
struct Running {
    table: watch::Sender<Arc<VtepTable>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(ns: &Netns, config: VxlanConfig, table: VtepTable) -> Running {
        let (tx, rx) = watch::channel(Arc::new(VtepTable::default()));
        tx.send_replace(Arc::new(table));
        let path = std::path::Path::new("/run/netns").join(ns.name());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let file = std::fs::File::open(path).unwrap();
            // SAFETY: setns(2) on a valid namespace fd; only this thread moves.
            assert_eq!(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut rx = rx;
                // The table is already there: marked new for the plane.
                rx.mark_changed();
                let plane = vxlan::start(&config, rx.clone()).await;
                ready_tx.send(plane.as_ref().map(|_| ()).map_err(|e| e.to_string())).unwrap();
                let _plane = plane.unwrap();
                // Until the sender goes.
                while rx.changed().await.is_ok() {}
            });
        });
        ready_rx.recv().unwrap().unwrap();
        Running { table: tx, thread: Some(thread) }
    }

    fn publish(&self, table: VtepTable) {
        self.table.send_replace(Arc::new(table));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let (tx, _) = watch::channel(Arc::new(VtepTable::default()));
        drop(std::mem::replace(&mut self.table, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn wait(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within 10 s");
}

#[test]
fn two_nodes_talk_over_vxlan_and_entries_follow_the_table() {
    let lab = Lab::new("vxlan-plane").unwrap();
    let (n1, n2) = (lab.netns("n1").unwrap(), lab.netns("n2").unwrap());
    tortie_lab::veth((&n1, "eth0"), (&n2, "eth0")).unwrap();
    n1.add_addr("eth0", "192.0.2.1/24".parse().unwrap()).unwrap();
    n2.add_addr("eth0", "192.0.2.2/24".parse().unwrap()).unwrap();
    let (c1, c2) = (
        config("192.0.2.1", "198.18.0.0", vxlan::random_mac(), vxlan::DEFAULT_VNI),
        config("192.0.2.2", "198.18.0.64", vxlan::random_mac(), vxlan::DEFAULT_VNI),
    );
    let p1 = Running::start(&n1, c1.clone(), VtepTable::new([vtep(&c2)]));
    let p2 = Running::start(&n2, c2.clone(), VtepTable::new([vtep(&c1)]));
    n1.ip(&["route", "add", "198.18.0.64/26", "via", "198.18.0.64", "dev", DEVICE, "onlink"]).unwrap();
    n2.ip(&["route", "add", "198.18.0.0/26", "via", "198.18.0.0", "dev", DEVICE, "onlink"]).unwrap();
    n1.add_addr("lo", "198.18.0.10/32".parse().unwrap()).unwrap();
    n2.add_addr("lo", "198.18.0.74/32".parse().unwrap()).unwrap();
    let ping = n1.exec("ping", &["-n", "-c", "3", "-i", "0.2", "-W", "1", "-I", "198.18.0.10", "198.18.0.74"]).unwrap();
    assert!(ping.contains(" 0% packet loss"), "{ping}");
    let link = n1.ip(&["-d", "link", "show", DEVICE]).unwrap();
    for want in
        ["mtu 1450", "vxlan id 4096", "local 192.0.2.1", "dstport 4789", "nolearning", &vxlan::format_mac(c1.mac)]
    {
        assert!(link.contains(want), "{want}: {link}");
    }
    let (neigh, fdb) = inside(&n1, vxlan::entries).unwrap();
    assert_eq!(neigh, vec![(c2.tunnel_address, c2.mac)]);
    assert_eq!(fdb, vec![(c2.mac, c2.local)]);

    // Strays on the device go at the next publication; another device's entry stays.
    n1.ip(&["neigh", "add", "198.18.7.7", "lladdr", "02:00:00:00:07:07", "dev", DEVICE, "nud", "permanent"]).unwrap();
    n1.exec("bridge", &["fdb", "add", "02:00:00:00:07:07", "dev", DEVICE, "dst", "192.0.2.77", "self", "permanent"])
        .unwrap();
    n1.ip(&["neigh", "add", "192.0.2.77", "lladdr", "02:00:00:00:07:07", "dev", "eth0", "nud", "permanent"]).unwrap();
    let third =
        Vtep { tunnel_address: Ipv4Addr::new(198, 18, 0, 128), mac: [2, 0, 0, 0, 0, 3], node: [192, 0, 2, 3].into() };
    p1.publish(VtepTable::new([vtep(&c2), third]));
    wait("the strays to go and the third VTEP to come", || {
        let (neigh, fdb) = inside(&n1, vxlan::entries).unwrap_or_default();
        neigh.len() == 2 && fdb.len() == 2 && !neigh.iter().any(|(a, _)| a.octets() == [198, 18, 7, 7])
    });
    let other = n1.ip(&["neigh", "show", "dev", "eth0"]).unwrap();
    assert!(other.contains("192.0.2.77 lladdr 02:00:00:00:07:07 PERMANENT"), "{other}");
    let shown = n1.exec("bridge", &["fdb", "show", "dev", DEVICE]).unwrap();
    assert!(shown.contains("02:00:00:00:00:03 dst 192.0.2.3 self permanent"), "{shown}");
    assert!(!shown.contains("02:00:00:00:07:07"), "{shown}");

    // A node leaves: its entries go.
    p1.publish(VtepTable::new([vtep(&c2)]));
    wait("the third VTEP's entries to go", || {
        inside(&n1, vxlan::entries).is_ok_and(|(neigh, fdb)| neigh.len() == 1 && fdb.len() == 1)
    });

    // Started again: the device is adopted (same ifindex), traffic still flows.
    let ifindex = || n1.exec("cat", &[&format!("/sys/class/net/{DEVICE}/ifindex")]).unwrap();
    let before = ifindex();
    drop(p1);
    let p1 = Running::start(&n1, c1.clone(), VtepTable::new([vtep(&c2)]));
    assert_eq!(ifindex(), before, "adopted, not made again");
    let ping = n1.exec("ping", &["-n", "-c", "2", "-i", "0.2", "-W", "1", "-I", "198.18.0.10", "198.18.0.74"]).unwrap();
    assert!(ping.contains(" 0% packet loss"), "{ping}");
    // Another VNI cannot be set in place: the device is made again.
    drop(p1);
    let _p1 = Running::start(&n1, VxlanConfig { vni: 4097, ..c1 }, VtepTable::new([vtep(&c2)]));
    assert_ne!(ifindex(), before, "made again");
    assert!(n1.ip(&["-d", "link", "show", DEVICE]).unwrap().contains("vxlan id 4097"));
    drop(p2);
    assert!(inside(&n1, vxlan::remove).unwrap());
    assert!(!inside(&n1, vxlan::remove).unwrap());
    assert!(n1.ip(&["link", "show", DEVICE]).is_err());
}
