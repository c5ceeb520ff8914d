//! VXLAN (Calico's `vxlanMode`) on the kernel's vxlan device: n1 and n2
//! share a subnet, n3 sits behind a router that knows no pod routes.
//! With BGP: `CrossSubnet` sends n1↔n3 pod traffic over VXLAN (tshark sees
//! VNI 4096 between the node addresses on the router) and n1↔n2 natively;
//! `Always` and back moves the routes under a running ping; a VXLAN packet
//! from a non-node is dropped and counted before the device sees it.
//! Without BGP (`--networking-backend vxlan`): the same routes come from the
//! datastore; a new node's block is routed once its affinity is written, a
//! deleted node's routes and VTEP entries go; `Never` gives Flannel's
//! host-gw shape; a daemon killed and restarted under a 100/s ping across
//! the subnets loses nothing. IPv6 pools cross the subnets the same way on
//! the IPv6 device `vxlan-v6.calico`, between the nodes' IPv6 addresses.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{Cluster, addr, block_on, capture, wait_routes, wait_until};

/// What tshark shows of a VXLAN packet: outer and inner addresses, VNI, ICMP type.
const VXLAN_FIELDS: &[&str] = &["ip.src", "ip.dst", "vxlan.vni", "icmp.type"];
use tortie_lab::Netns;
use tortie_store::Datastore;
use tortie_store::ipam::IpamBlock;
use tortie_store::kv::Kv;

/// n1's routes under CrossSubnet, its pod `a1` at .1: n2's block (same
/// subnet) native, n3's (across the router) via n3's VTEP (tunnel
/// addresses come first out of each node's block: .0, .64, .128).
const N1_CROSS_SUBNET: [&str; 4] = [
    "198.18.0.1 dev tortiea1 scope link",
    "blackhole 198.18.0.0/26",
    "198.18.0.64/26 via 192.0.2.2 dev eth0",
    "198.18.0.128/26 via 198.18.0.128 dev vxlan.calico onlink",
];

fn pool(mode: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: pods}}\nspec: {{cidr: 198.18.0.0/16, blockSize: 26, vxlanMode: {mode}}}\n"
    )
}

/// The tunnel address and MAC `node` publishes.
fn vtep(c: &Cluster, node: &str) -> (Option<String>, Option<String>) {
    let v: serde_json::Value = serde_json::from_str(&c.tortie(&["get", "node", node, "-o", "json"], "")).unwrap();
    let field = |f: &str| v["spec"][f].as_str().map(String::from);
    (field("ipv4VXLANTunnelAddr"), field("vxlanTunnelMACAddr"))
}

/// Packets the rule commented `comment` in tortie's `chain` dropped on `node`.
fn drops(node: &Netns, chain: &str, comment: &str) -> u64 {
    let chain = node.exec("nft", &["list", "chain", "inet", "tortie", chain]).unwrap();
    let line = chain.lines().find(|l| l.contains(comment)).unwrap_or_else(|| panic!("{chain}"));
    let after = line.split("counter packets ").nth(1).unwrap();
    after.split_whitespace().next().unwrap().parse().unwrap()
}

/// Packets the VXLAN device on `node` received (decapsulated).
fn vxlan_rx(node: &Netns) -> u64 {
    // /sys shows the reader's namespace: read it inside the node's.
    let out = node.exec("cat", &["/sys/class/net/vxlan.calico/statistics/rx_packets"]).unwrap();
    out.trim().parse().unwrap()
}

/// A VXLAN packet (VNI 4096) with an ICMP echo to 198.18.0.129 inside,
/// sent to n3 five times from wherever it runs.
const SPOOF: &str = "import socket
vxlan = bytes([8, 0, 0, 0, 0, 0x10, 0, 0])
eth = bytes([0xff] * 6 + [0x02, 0, 0, 0, 0, 9] + [8, 0])
ip = bytes([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 203, 0, 113, 9, 198, 18, 0, 129])
icmp = bytes([8, 0, 0xf7, 0xff, 0, 0, 0, 0])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(5): s.sendto(vxlan + eth + ip + icmp, ('198.51.100.3', 4789))
";

#[test]
fn cross_subnet_pods_talk_over_vxlan_same_subnet_natively_and_strangers_are_dropped() {
    let c = Cluster::two_subnets("vxlan");
    c.apply(&pool("CrossSubnet"));
    let a = c.pod(0, "a1", "198.18.0.1");
    let b = c.pod(1, "b1", "198.18.0.65");
    let z = c.pod(2, "c1", "198.18.0.129");
    let d: Vec<_> = (0..3).map(|i| c.start(i)).collect();
    wait_routes(&c.nodes[0], &N1_CROSS_SUBNET, &d[0]);
    wait_routes(
        &c.nodes[2],
        &[
            "198.18.0.129 dev tortiec1 scope link",
            "blackhole 198.18.0.128/26",
            "198.18.0.0/26 via 198.18.0.0 dev vxlan.calico onlink",
            "198.18.0.64/26 via 198.18.0.64 dev vxlan.calico onlink",
        ],
        &d[2],
    );
    let link = c.nodes[0].ip(&["-d", "link", "show", "vxlan.calico"]).unwrap();
    for want in ["mtu 1450", "vxlan id 4096", "local 192.0.2.1", "dstport 4789", "nolearning"] {
        assert!(link.contains(want), "{want}: {link}");
    }
    // n1 knows n3's VTEP: its MAC for the tunnel address, and where that MAC lives.
    let (n3_addr, n3_mac) = vtep(&c, "n3");
    assert_eq!(n3_addr.as_deref(), Some("198.18.0.128"));
    let n3_mac = n3_mac.unwrap();
    let neigh = c.nodes[0].ip(&["neigh", "show", "dev", "vxlan.calico"]).unwrap();
    assert!(neigh.contains(&format!("198.18.0.128 lladdr {n3_mac} PERMANENT")), "{neigh}");
    let fdb = c.nodes[0].exec("bridge", &["fdb", "show", "dev", "vxlan.calico"]).unwrap();
    assert!(fdb.contains(&format!("{n3_mac} dst 198.51.100.3 self permanent")), "{fdb}");

    let (_, rtr) = c.routed.as_ref().unwrap();
    let seen = capture(rtr, "eth1", "udp port 4789", VXLAN_FIELDS, || {
        let out = a.ping(z.addr, 3, "0.2").unwrap();
        assert!(out.contains(" 0% packet loss"), "{out}");
    });
    assert!(
        seen.lines().any(|l| l.starts_with("192.0.2.1,198.18.0.1\t198.51.100.3,198.18.0.129\t4096\t8")),
        "VXLAN (VNI 4096) between the nodes around the echo request:\n{seen}"
    );
    assert!(
        seen.lines().any(|l| l.starts_with("198.51.100.3,198.18.0.129\t192.0.2.1,198.18.0.1\t4096\t0")),
        "and its reply:\n{seen}"
    );
    let native = capture(&c.nodes[1], "eth0", "udp port 4789", VXLAN_FIELDS, || {
        let out = a.ping(b.addr, 3, "0.2").unwrap();
        assert!(out.contains(" 0% packet loss"), "{out}");
    });
    assert!(native.trim().is_empty(), "same-subnet traffic is not encapsulated:\n{native}");

    // A TCP transfer over VXLAN.
    let server =
        z.netns.spawn("iperf3-server", "iperf3", &["-s", "-1", "-B", "198.18.0.129", "--forceflush"], &[]).unwrap();
    wait_until("the iperf3 server to listen", || server.log().contains("Server listening"));
    let out = a.netns.exec("iperf3", &["-c", "198.18.0.129", "-n", "20M", "-J"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["end"]["sum_sent"]["bytes"].as_f64().unwrap() as u64 >= 20 * 1024 * 1024, "{out}");
    assert!(v["end"]["sum_received"]["bytes"].as_f64().unwrap() > 0.0, "{out}");
    drop(server);

    // VXLAN from an address that is no cluster node (the router): dropped
    // and counted before the device decapsulates it.
    let stranger = || drops(&c.nodes[2], "input", "VXLAN not from a cluster node");
    let (before, rx) = (stranger(), vxlan_rx(&c.nodes[2]));
    rtr.exec("python3", &["-c", SPOOF]).unwrap();
    wait_until("the spoofed packets to be counted", || stranger() >= before + 5);
    assert_eq!(vxlan_rx(&c.nodes[2]), rx, "none reached the device");
    // Nor from a pod (it would leave masqueraded to its node's address):
    // dropped on its own node (allowVXLANPacketsFromWorkloads: false).
    let from_pod = || drops(&c.nodes[0], "forward-from-workload", "VXLAN from a pod");
    let before = from_pod();
    a.netns.exec("python3", &["-c", SPOOF]).unwrap();
    wait_until("the pod's VXLAN packets to be counted", || from_pod() >= before + 5);
    assert_eq!(vxlan_rx(&c.nodes[2]), rx, "none reached n3's device");
    let status = c.tortie(&["status", "--run-dir", &c.nodes[2].dir().join("run").display().to_string()], "");
    assert!(status.contains("VXLAN: kernel device vxlan.calico."), "{status}");

    // Always, then CrossSubnet again: n1↔n2 moves into the tunnel and back, under a running ping.
    std::thread::scope(|s| {
        let ping = s.spawn(|| a.ping(addr("198.18.0.65"), 150, "0.02"));
        std::thread::sleep(Duration::from_millis(500));
        c.apply(&pool("Always"));
        wait_until("n1↔n2 over VXLAN", || {
            c.nodes[0].ip(&["route", "show", "198.18.0.64/26"]).unwrap().contains("via 198.18.0.64 dev vxlan.calico")
        });
        std::thread::sleep(Duration::from_millis(500));
        c.apply(&pool("CrossSubnet"));
        wait_until("n1↔n2 native again", || {
            c.nodes[0].ip(&["route", "show", "198.18.0.64/26"]).unwrap().contains("via 192.0.2.2 dev eth0")
        });
        let out = ping.join().unwrap().unwrap();
        assert!(out.contains(" 0% packet loss"), "{out}");
    });

    // n3's Node loses its VTEP fields (an operator re-applies an old
    // document): n3 publishes the address IPAM holds for it again, and the
    // other nodes reach it again.
    c.apply("apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n3}\nspec: {bgp: {ipv4Address: 198.51.100.3/24}}\n");
    wait_until("n3 to publish its VTEP again", || {
        let (addr, mac) = vtep(&c, "n3");
        addr.as_deref() == Some("198.18.0.128") && mac.is_some()
    });
    wait_until("pods on n1 and n3 to reach each other again", || {
        a.ping(z.addr, 1, "0.2").is_ok_and(|out| out.contains(" 0% packet loss"))
    });

    // Never: the device, its entries and its address go.
    c.apply(&pool("Never"));
    wait_until("n1's VXLAN device to go", || c.nodes[0].ip(&["link", "show", "vxlan.calico"]).is_err());
    wait_until("the VXLAN tunnel addresses to be released", || {
        ["n1", "n2", "n3"].iter().all(|n| vtep(&c, n).0.is_none())
    });
    assert!(vtep(&c, "n3").1.is_some(), "the node keeps its MAC");
}

/// Writes `block` with affinity to `node`, as IPAM does when it claims one.
fn claim(c: &Cluster, block: &str, node: &str) {
    block_on(async {
        let kv = Datastore::open(&c.url).await.unwrap();
        let b = IpamBlock::new(block.parse().unwrap(), node);
        kv.put(&b.key(), serde_json::to_vec(&b).unwrap()).await.unwrap();
    })
}

#[test]
fn without_bgp_the_datastore_routes_every_block_and_a_restart_loses_nothing() {
    let c = Cluster::two_subnets("vxlan-nobgp");
    c.apply(&pool("CrossSubnet"));
    let a = c.pod(0, "a1", "198.18.0.1");
    let z = c.pod(2, "c1", "198.18.0.129");
    let no_bgp = ["--networking-backend", "vxlan"];
    let mut d: Vec<_> = (0..3).map(|i| c.start_with(i, &no_bgp)).collect();
    wait_routes(&c.nodes[0], &N1_CROSS_SUBNET, &d[0]);
    wait_until("pods on n1 and n3 to reach each other over VXLAN", || {
        a.ping(z.addr, 1, "0.2").is_ok_and(|out| out.contains(" 0% packet loss"))
    });
    let run = |i: usize| c.nodes[i].dir().join("run").display().to_string();
    let status = c.tortie(&["status", "--run-dir", &run(0)], "");
    assert!(status.contains("BGP is disabled (networking backend vxlan)"), "{status}");
    assert!(!d[0].log().contains("adding BGP peer"), "no BGP at all: {}", d[0].log());

    // A node appears in the second subnet (its Node with a VTEP, then its
    // block's affinity): n1 and n2 route the block over VXLAN, n3 natively.
    c.apply(
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n9}\n\
         spec: {bgp: {ipv4Address: 198.51.100.9/24}, ipv4VXLANTunnelAddr: 198.18.1.0, vxlanTunnelMACAddr: '02:00:00:00:00:09'}\n",
    );
    claim(&c, "198.18.1.0/26", "n9");
    let via = ["via 198.18.1.0 dev vxlan.calico", "via 198.18.1.0 dev vxlan.calico", "via 198.51.100.9 dev eth0"];
    for (i, via) in via.iter().enumerate() {
        wait_until(&format!("n{}'s route to n9's block", i + 1), || {
            c.nodes[i].ip(&["route", "show", "198.18.1.0/26"]).unwrap().contains(via)
        });
    }
    let entries = |i: usize| {
        let neigh = c.nodes[i].ip(&["neigh", "show", "dev", "vxlan.calico"]).unwrap();
        let fdb = c.nodes[i].exec("bridge", &["fdb", "show", "dev", "vxlan.calico"]).unwrap();
        (neigh.contains("198.18.1.0 lladdr 02:00:00:00:00:09"), fdb.contains("02:00:00:00:00:09 dst 198.51.100.9"))
    };
    assert_eq!(entries(0), (true, true));
    // It goes: its routes, neighbour and FDB entries go everywhere.
    c.tortie(&["delete", "node", "n9"], "");
    for i in 0..3 {
        wait_until(&format!("n{}'s route to n9's block to go", i + 1), || {
            c.nodes[i].ip(&["route", "show", "198.18.1.0/26"]).unwrap().trim().is_empty()
        });
        wait_until(&format!("n{}'s VTEP entries for n9 to go", i + 1), || entries(i) == (false, false));
    }

    // kill -9 under a 100/s ping across the subnets, a new daemon 3 s later: nothing lost.
    let out = std::thread::scope(|s| {
        let ping = s.spawn(|| a.netns.exec("ping", &["-n", "-D", "-O", "-c", "1000", "-i", "0.01", "198.18.0.129"]));
        std::thread::sleep(Duration::from_secs(2));
        d[0].kill_now();
        // Meanwhile strays appear on the device, and a neighbour on another:
        // the next daemon removes the first two and leaves the third.
        let n1 = &c.nodes[0];
        n1.ip(&[
            "neigh",
            "add",
            "198.18.7.7",
            "lladdr",
            "02:00:00:00:07:07",
            "dev",
            "vxlan.calico",
            "nud",
            "permanent",
        ])
        .unwrap();
        n1.exec(
            "bridge",
            &["fdb", "add", "02:00:00:00:07:07", "dev", "vxlan.calico", "dst", "192.0.2.77", "self", "permanent"],
        )
        .unwrap();
        n1.ip(&["neigh", "add", "192.0.2.77", "lladdr", "02:00:00:00:07:07", "dev", "eth0", "nud", "permanent"])
            .unwrap();
        std::thread::sleep(Duration::from_secs(3));
        d[0] = c.start_with(0, &no_bgp);
        ping.join().unwrap().unwrap()
    });
    assert!(out.contains("1000 packets transmitted, 1000 received"), "{out}");
    let ifindex = |i: usize| c.nodes[i].exec("cat", &["/sys/class/net/vxlan.calico/ifindex"]).unwrap();
    let before = ifindex(0);
    wait_until("the new daemon to take over the device", || d[0].log().contains("VXLAN tunnel up"));
    assert_eq!(ifindex(0), before, "the device was adopted, not made again");
    wait_until("the strays on the device to go", || {
        let neigh = c.nodes[0].ip(&["neigh", "show", "dev", "vxlan.calico"]).unwrap();
        let fdb = c.nodes[0].exec("bridge", &["fdb", "show", "dev", "vxlan.calico"]).unwrap();
        !neigh.contains("198.18.7.7") && !fdb.contains("02:00:00:00:07:07")
    });
    let other = c.nodes[0].ip(&["neigh", "show", "dev", "eth0"]).unwrap();
    assert!(other.contains("192.0.2.77 lladdr 02:00:00:00:07:07 PERMANENT"), "another device's entry stays: {other}");

    // Never, without BGP: Flannel's host-gw shape — native routes from the
    // datastore within the subnet; across the router nothing can go natively.
    c.apply(&pool("Never"));
    wait_routes(
        &c.nodes[0],
        &["198.18.0.1 dev tortiea1 scope link", "blackhole 198.18.0.0/26", "198.18.0.64/26 via 192.0.2.2 dev eth0"],
        &d[0],
    );
}

/// An IPv6 VXLAN packet (VNI 4096) with an ICMPv6 echo inside, sent to n3's
/// IPv6 address five times from wherever it runs.
const SPOOF6: &str = "import socket
vxlan = bytes([8, 0, 0, 0, 0, 0x10, 0, 0])
eth = bytes([0xff] * 6 + [0x02, 0, 0, 0, 0, 9] + [0x86, 0xdd])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for _ in range(5): s.sendto(vxlan + eth + bytes(48), ('2001:db8:1::3', 4789))
";

#[test]
fn ipv6_pools_cross_subnets_over_the_ipv6_vxlan_device() {
    let c = Cluster::two_subnets("vxlan-v6");
    let v6 = ["2001:db8::1/64", "2001:db8::2/64", "2001:db8:1::3/64"];
    for (n, a) in c.nodes.iter().zip(v6) {
        n.ip(&["-6", "addr", "add", a, "dev", "eth0", "nodad"]).unwrap();
        let gw = if a.starts_with("2001:db8:1::") { "2001:db8:1::fe" } else { "2001:db8::fe" };
        n.ip(&["-6", "route", "add", "default", "via", gw]).unwrap();
    }
    let (_, rtr) = c.routed.as_ref().unwrap();
    rtr.ip(&["-6", "addr", "add", "2001:db8::fe/64", "dev", "eth0", "nodad"]).unwrap();
    rtr.ip(&["-6", "addr", "add", "2001:db8:1::fe/64", "dev", "eth1", "nodad"]).unwrap();
    c.apply(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: v6}\n\
         spec: {cidr: '2001:db8:100::/48', vxlanMode: CrossSubnet}\n",
    );
    for (i, block) in ["2001:db8:100::/122", "2001:db8:100::40/122", "2001:db8:100::80/122"].iter().enumerate() {
        claim(&c, block, &format!("n{}", i + 1));
    }
    let mut d: Vec<_> = (0..3).map(|i| c.start_with(i, &["--ip6", v6[i]])).collect();
    // A node's resource (null until it has registered).
    let node = |n: &str| -> serde_json::Value {
        let out = c.tortie_output(&["get", "node", n, "-o", "json"], "");
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    // Each node takes its tunnel address first (the first of its block).
    for n in ["n1", "n2", "n3"] {
        wait_until(&format!("{n}'s IPv6 VTEP"), || node(n)["spec"]["vxlanTunnelMACAddrV6"].is_string());
    }
    let ipam = serde_json::json!({"type": "calico-ipam", "assign_ipv4": "false", "assign_ipv6": "true"});
    let pods: Vec<_> = (0..3).map(|i| c.lab.netns(&format!("p{i}")).unwrap()).collect();
    for (i, pod) in pods.iter().enumerate() {
        let (code, out) = c.cni(i, "ADD", &format!("v6vx{i}"), pod, Some(ipam.clone()));
        assert_eq!(code, 0, "{out}");
    }
    // n1 routes n3's block through n3's IPv6 VTEP, n2's natively.
    let n3 = node("n3");
    assert_eq!(n3["spec"]["ipv6VXLANTunnelAddr"], "2001:db8:100::80", "{n3}");
    let mac = n3["spec"]["vxlanTunnelMACAddrV6"].as_str().unwrap().to_string();
    let route = |i: usize, block: &str| c.nodes[i].ip(&["-6", "route", "show", block]).unwrap();
    wait_until("n1's route to n3's block over the IPv6 device", || {
        route(0, "2001:db8:100::80/122").contains("via 2001:db8:100::80 dev vxlan-v6.calico")
    });
    wait_until("n1's native route to n2's block", || {
        route(0, "2001:db8:100::40/122").contains("via 2001:db8::2 dev eth0")
    });
    let link = c.nodes[0].ip(&["-d", "link", "show", "vxlan-v6.calico"]).unwrap();
    for want in ["mtu 1430", "vxlan id 4096", "local 2001:db8::1", "dstport 4789", "nolearning"] {
        assert!(link.contains(want), "{want}: {link}");
    }
    let neigh = c.nodes[0].ip(&["-6", "neigh", "show", "dev", "vxlan-v6.calico"]).unwrap();
    assert!(neigh.contains(&format!("2001:db8:100::80 lladdr {mac} PERMANENT")), "{neigh}");
    let fdb = c.nodes[0].exec("bridge", &["fdb", "show", "dev", "vxlan-v6.calico"]).unwrap();
    assert!(fdb.contains(&format!("{mac} dst 2001:db8:1::3 self permanent")), "{fdb}");
    // The pods reach each other, encapsulated in IPv6 VXLAN between the nodes.
    let ping = |from: usize, to: &str| {
        pods[from].exec("ping", &["-6", "-n", "-c", "3", "-i", "0.2", "-W", "2", to]).is_ok_and(|o| o.contains(" 0% "))
    };
    let fields = ["ipv6.src", "ipv6.dst", "vxlan.vni", "icmpv6.type"];
    let seen = capture(rtr, "eth1", "udp port 4789", &fields, || {
        wait_until("a pod on n1 reaching a pod on n3", || ping(0, "2001:db8:100::81"));
    });
    assert!(
        seen.lines().any(|l| l.starts_with("2001:db8::1,2001:db8:100::1\t2001:db8:1::3,2001:db8:100::81\t4096\t128")),
        "IPv6 VXLAN (VNI 4096) between the nodes around the echo request:\n{seen}"
    );
    assert!(ping(2, "2001:db8:100::1"), "and back");
    assert!(ping(0, "2001:db8:100::41"), "and natively within the subnet");
    let status = c.tortie(&["status", "--run-dir", &c.nodes[0].dir().join("run").display().to_string()], "");
    assert!(status.contains("vxlan-v6.calico"), "{status}");
    // IPv6 VXLAN from an address that is no cluster node: dropped and counted.
    let stranger = || drops(&c.nodes[2], "input", "IPv6 VXLAN not from a cluster node");
    let before = stranger();
    rtr.exec("python3", &["-c", SPOOF6]).unwrap();
    wait_until("the spoofed IPv6 packets to be counted", || stranger() >= before + 5);
    // n2 starts again without its IPv6 address: what its last run left of
    // the IPv6 tunnel goes (device, tunnel address, the Node's field).
    d[1].kill_now();
    d[1] = c.start(1);
    wait_until("n2's IPv6 VXLAN device to go", || c.nodes[1].ip(&["link", "show", "vxlan-v6.calico"]).is_err());
    wait_until("n2's IPv6 tunnel address to be released", || node("n2")["spec"]["ipv6VXLANTunnelAddr"].is_null());
    // Never: the IPv6 device goes and the tunnel address is released.
    c.apply(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: v6}\nspec: {cidr: '2001:db8:100::/48'}\n",
    );
    wait_until("n1's IPv6 VXLAN device to go", || c.nodes[0].ip(&["link", "show", "vxlan-v6.calico"]).is_err());
    wait_until("n3's IPv6 tunnel address to be released", || node("n3")["spec"]["ipv6VXLANTunnelAddr"].is_null());
}
