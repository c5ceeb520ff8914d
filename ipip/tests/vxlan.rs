//! The VXLAN plane on the real kernel, in two namespaces joined by a veth:
//! each node's device and VTEP carry a ping between addresses of their
//! blocks; entries follow the table by difference (strays on the device
//! go, entries on other devices stay, a node leaving takes its entries);
//! a plane started again adopts the device (same ifindex), and one with
//! another VNI makes it again. The IPv6 device runs beside the IPv4 one.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tortie_ipip::vxlan::{self, DEVICE, DEVICE_V6, Family, Vtep, VtepTable, VxlanConfig};
use tortie_lab::{Lab, Netns};

fn config(local: &str, tunnel: &str, mac: [u8; 6], vni: u32) -> VxlanConfig {
    let local: IpAddr = local.parse().unwrap();
    VxlanConfig {
        local,
        vni,
        port: vxlan::DEFAULT_PORT,
        // The veth's 1500 less the encapsulation.
        mtu: u32::from(1500 - Family::of(local).overhead()),
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
type Entries = (Vec<(IpAddr, [u8; 6])>, Vec<([u8; 6], IpAddr)>);

fn shown(ns: &Netns, family: Family) -> Entries {
    let device = family.device();
    let neigh = ns.ip(&["neigh", "show", "dev", device, "nud", "permanent"]).unwrap();
    let mut neigh: Vec<_> = neigh
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [ip, "lladdr", mac, ..] => Some((ip.parse().unwrap(), tortie_store::resources::parse_mac(mac).unwrap())),
            _ => None,
        })
        .collect();
    let fdb = ns.exec("bridge", &["fdb", "show", "dev", device]).unwrap();
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
fn settled(ns: &Netns, family: Family, what: &str, want: Entries) {
    let sorted = |(mut n, mut f): Entries| {
        n.sort_unstable();
        f.sort_unstable();
        (n, f)
    };
    wait(what, || inside(ns, async || vxlan::entries(family).await).is_ok_and(|e| sorted(e) == want));
    assert_eq!(shown(ns, family), want, "{what}: ip neigh / bridge fdb");
}

fn want(vteps: &[Vtep]) -> Entries {
    let mut neigh: Vec<_> = vteps.iter().map(|v| (v.tunnel_address, v.mac)).collect();
    let mut fdb: Vec<_> = vteps.iter().map(|v| (v.mac, v.node)).collect();
    neigh.sort_unstable();
    fdb.sort_unstable();
    (neigh, fdb)
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
    let (neigh, fdb) = inside(&n1, async || vxlan::entries(Family::V4).await).unwrap();
    assert_eq!(neigh, vec![(c2.tunnel_address, c2.mac)]);
    assert_eq!(fdb, vec![(c2.mac, c2.local)]);
    assert_eq!(shown(&n1, Family::V4), (neigh, fdb), "ip neigh / bridge fdb agree");

    // Strays on the device go at the next publication; another device's
    // entry stays.
    n1.ip(&["neigh", "add", "198.18.7.7", "lladdr", "02:00:00:00:07:07", "dev", DEVICE, "nud", "permanent"]).unwrap();
    n1.exec("bridge", &["fdb", "add", "02:00:00:00:07:07", "dev", DEVICE, "dst", "192.0.2.77", "self", "permanent"])
        .unwrap();
    n1.ip(&["neigh", "add", "192.0.2.77", "lladdr", "02:00:00:00:07:07", "dev", "eth0", "nud", "permanent"]).unwrap();
    assert_eq!(shown(&n1, Family::V4).1.len(), 2, "the stray is there");
    let third = Vtep {
        tunnel_address: Ipv4Addr::new(198, 18, 0, 128).into(),
        mac: [2, 0, 0, 0, 0, 3],
        node: [192, 0, 2, 3].into(),
    };
    p1.publish(VtepTable::new([vtep(&c2), third]));
    let settled = |what: &str, want: Entries| settled(&n1, Family::V4, what, want);
    settled("the strays to go and the third VTEP to come", want(&[vtep(&c2), third]));
    let other = n1.ip(&["neigh", "show", "dev", "eth0"]).unwrap();
    assert!(other.contains("192.0.2.77 lladdr 02:00:00:00:07:07 PERMANENT"), "{other}");
    let fdb = n1.exec("bridge", &["fdb", "show", "dev", DEVICE]).unwrap();
    assert!(fdb.contains("02:00:00:00:00:03 dst 192.0.2.3 self permanent"), "{fdb}");

    // A VTEP's node moves (same MAC, new destination), then its MAC changes
    // (same tunnel address): both follow.
    let moved = Vtep { node: [192, 0, 2, 4].into(), ..third };
    p1.publish(VtepTable::new([vtep(&c2), moved]));
    settled("the third VTEP's FDB entry to move", want(&[vtep(&c2), moved]));
    let new_mac = Vtep { mac: [2, 0, 0, 0, 0, 4], ..moved };
    p1.publish(VtepTable::new([vtep(&c2), new_mac]));
    settled("the third VTEP's MAC to change", want(&[vtep(&c2), new_mac]));

    // A table without n2: its entries go, and with them the path to it.
    p1.publish(VtepTable::new([new_mac]));
    settled("n2's entries to go", want(&[new_mac]));
    assert!(n1.exec("ping", &["-n", "-c", "1", "-W", "1", "-I", "198.18.0.10", "198.18.0.74"]).is_err());
    p1.publish(VtepTable::new([vtep(&c2)]));
    settled("n2's entries to come back", want(&[vtep(&c2)]));

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
    assert!(inside(&n1, async || vxlan::remove(Family::V4).await).unwrap());
    assert!(!inside(&n1, async || vxlan::remove(Family::V4).await).unwrap());
    assert!(n1.ip(&["link", "show", DEVICE]).is_err());
}

#[test]
fn the_ipv6_device_carries_ipv6_between_ipv6_node_addresses_beside_the_ipv4_one() {
    let lab = Lab::new("vxlan-v6").unwrap();
    let (n1, n2) = (lab.netns("n1").unwrap(), lab.netns("n2").unwrap());
    tortie_lab::veth((&n1, "eth0"), (&n2, "eth0")).unwrap();
    for (n, i) in [(&n1, 1), (&n2, 2)] {
        n.add_addr("eth0", format!("192.0.2.{i}/24").parse().unwrap()).unwrap();
        n.ip(&["-6", "addr", "add", &format!("2001:db8::{i}/64"), "dev", "eth0", "nodad"]).unwrap();
    }
    let v4 = (
        config("192.0.2.1", "198.18.0.0", vxlan::random_mac(), vxlan::DEFAULT_VNI),
        config("192.0.2.2", "198.18.0.64", vxlan::random_mac(), vxlan::DEFAULT_VNI),
    );
    let v6 = (
        config("2001:db8::1", "2001:db8:100::", vxlan::random_mac(), vxlan::DEFAULT_VNI),
        config("2001:db8::2", "2001:db8:100::40", vxlan::random_mac(), vxlan::DEFAULT_VNI),
    );
    // One table for both devices (as felix publishes it): each takes its family.
    let both = |a: &VxlanConfig, b: &VxlanConfig| VtepTable::new([vtep(a), vtep(b)]);
    let _p4 =
        (Running::start(&n1, v4.0.clone(), both(&v4.1, &v6.1)), Running::start(&n2, v4.1.clone(), both(&v4.0, &v6.0)));
    let p6 = Running::start(&n1, v6.0.clone(), both(&v4.1, &v6.1));
    let _p6 = Running::start(&n2, v6.1.clone(), both(&v4.0, &v6.0));
    let link = n1.ip(&["-d", "link", "show", DEVICE_V6]).unwrap();
    for want in ["mtu 1430", "vxlan id 4096", "local 2001:db8::1", "dstport 4789", "nolearning"] {
        assert!(link.contains(want), "{want}: {link}");
    }
    let addrs = n1.ip(&["-6", "addr", "show", "dev", DEVICE_V6]).unwrap();
    assert!(addrs.contains("inet6 2001:db8:100::/128") && !addrs.contains("fe80"), "no link-local, no DAD: {addrs}");
    assert!(!addrs.contains("tentative"), "{addrs}");
    settled(&n1, Family::V6, "n1's IPv6 entries", want(&[vtep(&v6.1)]));
    settled(&n1, Family::V4, "n1's IPv4 entries", want(&[vtep(&v4.1)]));
    n1.ip(&["-6", "route", "add", "2001:db8:100::40/122", "via", "2001:db8:100::40", "dev", DEVICE_V6, "onlink"])
        .unwrap();
    n2.ip(&["-6", "route", "add", "2001:db8:100::/122", "via", "2001:db8:100::", "dev", DEVICE_V6, "onlink"]).unwrap();
    n1.ip(&["-6", "addr", "add", "2001:db8:100::a/128", "dev", "lo"]).unwrap();
    n2.ip(&["-6", "addr", "add", "2001:db8:100::4a/128", "dev", "lo"]).unwrap();
    let ping = |n: &Netns| {
        n.exec("ping", &["-6", "-n", "-c", "3", "-i", "0.2", "-W", "1", "-I", "2001:db8:100::a", "2001:db8:100::4a"])
    };
    let out = ping(&n1).unwrap();
    assert!(out.contains(" 0% packet loss"), "{out}");
    // The packets went through the tunnel: VXLAN over IPv6 on the underlay.
    let rx = n2.exec("cat", &[&format!("/sys/class/net/{DEVICE_V6}/statistics/rx_packets")]).unwrap();
    assert!(rx.trim().parse::<u64>().unwrap() >= 3, "received on n2's {DEVICE_V6}: {rx}");
    // Started again, the IPv6 device is adopted; removing it leaves the IPv4 one.
    let ifindex = || n1.exec("cat", &[&format!("/sys/class/net/{DEVICE_V6}/ifindex")]).unwrap();
    let before = ifindex();
    drop(p6);
    let _p6 = Running::start(&n1, v6.0.clone(), both(&v4.1, &v6.1));
    assert_eq!(ifindex(), before, "adopted, not made again");
    assert!(ping(&n1).unwrap().contains(" 0% packet loss"));
    assert!(inside(&n1, async || vxlan::remove(Family::V6).await).unwrap());
    assert!(n1.ip(&["link", "show", DEVICE_V6]).is_err());
    assert!(n1.ip(&["link", "show", DEVICE]).is_ok(), "the IPv4 device stays");
}
