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

/// The permanent entries on the device as ip(8) and bridge(8) show them:
/// (neighbour address, MAC) and (MAC, destination), sorted.
type Entries = (Vec<(Ipv4Addr, [u8; 6])>, Vec<([u8; 6], Ipv4Addr)>);

fn shown(ns: &Netns) -> Entries {
    let neigh = ns.ip(&["neigh", "show", "dev", DEVICE, "nud", "permanent"]).unwrap();
    let mut neigh: Vec<_> = neigh
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [ip, "lladdr", mac, ..] => Some((ip.parse().unwrap(), tortie_store::resources::parse_mac(mac).unwrap())),
            _ => None,
        })
        .collect();
    let fdb = ns.exec("bridge", &["fdb", "show", "dev", DEVICE]).unwrap();
    let mut fdb: Vec<_> = fdb
        .lines()
        .filter(|l| l.contains(" permanent"))
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [mac, "dst", ip, ..] => Some((tortie_store::resources::parse_mac(mac).unwrap(), ip.parse().unwrap())),
            _ => None,
        })
        .collect();
    neigh.sort_unstable();
    fdb.sort_unstable();
    (neigh, fdb)
}

/// Waits until `entries()` is `want`, then checks that ip(8) and bridge(8) agree.
fn settled(ns: &Netns, what: &str, want: Entries) {
    let sorted = |(mut n, mut f): Entries| {
        n.sort_unstable();
        f.sort_unstable();
        (n, f)
    };
    wait(what, || inside(ns, vxlan::entries).is_ok_and(|e| sorted(e) == want));
    assert_eq!(shown(ns), want, "{what}: ip neigh / bridge fdb");
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
    assert_eq!(shown(&n1), (neigh, fdb), "ip neigh / bridge fdb agree");

    // Strays on the device go at the next publication; another device's
    // entry stays.
    n1.ip(&["neigh", "add", "198.18.7.7", "lladdr", "02:00:00:00:07:07", "dev", DEVICE, "nud", "permanent"]).unwrap();
    n1.exec("bridge", &["fdb", "add", "02:00:00:00:07:07", "dev", DEVICE, "dst", "192.0.2.77", "self", "permanent"])
        .unwrap();
    n1.ip(&["neigh", "add", "192.0.2.77", "lladdr", "02:00:00:00:07:07", "dev", "eth0", "nud", "permanent"]).unwrap();
    assert_eq!(shown(&n1).1.len(), 2, "the stray is there");
    let third =
        Vtep { tunnel_address: Ipv4Addr::new(198, 18, 0, 128), mac: [2, 0, 0, 0, 0, 3], node: [192, 0, 2, 3].into() };
    p1.publish(VtepTable::new([vtep(&c2), third]));
    let want = |vteps: &[Vtep]| {
        let mut neigh: Vec<_> = vteps.iter().map(|v| (v.tunnel_address, v.mac)).collect();
        let mut fdb: Vec<_> = vteps.iter().map(|v| (v.mac, v.node)).collect();
        neigh.sort_unstable();
        fdb.sort_unstable();
        (neigh, fdb)
    };
    settled(&n1, "the strays to go and the third VTEP to come", want(&[vtep(&c2), third]));
    let other = n1.ip(&["neigh", "show", "dev", "eth0"]).unwrap();
    assert!(other.contains("192.0.2.77 lladdr 02:00:00:00:07:07 PERMANENT"), "{other}");
    let fdb = n1.exec("bridge", &["fdb", "show", "dev", DEVICE]).unwrap();
    assert!(fdb.contains("02:00:00:00:00:03 dst 192.0.2.3 self permanent"), "{fdb}");

    // A VTEP's node moves (same MAC, new destination), then its MAC changes
    // (same tunnel address): both follow.
    let moved = Vtep { node: [192, 0, 2, 4].into(), ..third };
    p1.publish(VtepTable::new([vtep(&c2), moved]));
    settled(&n1, "the third VTEP's FDB entry to move", want(&[vtep(&c2), moved]));
    let new_mac = Vtep { mac: [2, 0, 0, 0, 0, 4], ..moved };
    p1.publish(VtepTable::new([vtep(&c2), new_mac]));
    settled(&n1, "the third VTEP's MAC to change", want(&[vtep(&c2), new_mac]));

    // A table without n2: its entries go, and with them the path to it.
    p1.publish(VtepTable::new([new_mac]));
    settled(&n1, "n2's entries to go", want(&[new_mac]));
    assert!(n1.exec("ping", &["-n", "-c", "1", "-W", "1", "-I", "198.18.0.10", "198.18.0.74"]).is_err());
    p1.publish(VtepTable::new([vtep(&c2)]));
    settled(&n1, "n2's entries to come back", want(&[vtep(&c2)]));

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
