//! IPIP across subnets with the eBPF data plane (this kernel has no ipip
//! module): n1 and n2 share a subnet, n3 sits behind a router that
//! knows no pod routes. With `CrossSubnet`, n1↔n2 pod traffic is native and
//! n1↔n3 is encapsulated (tshark sees IPv4-in-IPv4 on the router); a
//! protocol-4 packet from a non-node is dropped and counted; switching the
//! pool to `Always` and back to `Never` moves the routes while a ping runs;
//! a pool that turns to IPIP after the daemons started brings the tunnel up
//! and one turning back to `Never` takes it down and gives its address
//! back; the tunnel device outlives a daemon restart; segments the receiving
//! node's GRO merged arrive whole and intact.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Cluster, addr, capture, metric, metrics, wait_routes, wait_until};

/// What tshark shows of an IPIP packet: outer and inner addresses, protocols, ICMP type.
const IPIP_FIELDS: &[&str] = &["ip.src", "ip.dst", "ip.proto", "icmp.type"];

/// n1's routes, its pod `a1` at `pod`, with both other blocks in the tunnel.
fn n1_tunnelled(pod: &str) -> [String; 4] {
    [
        format!("{pod} dev tortiea1 scope link"),
        "blackhole 198.18.0.0/26".into(),
        "198.18.0.64/26 via 192.0.2.2 dev tortie-ipip onlink".into(),
        "198.18.0.128/26 via 198.51.100.3 dev tortie-ipip onlink".into(),
    ]
}

/// n1's routes, its pod `a1` at `pod`, with no tunnel: n2's block native,
/// n3's (behind the router) absent.
fn n1_native(pod: &str) -> [String; 3] {
    [
        format!("{pod} dev tortiea1 scope link"),
        "blackhole 198.18.0.0/26".into(),
        "198.18.0.64/26 via 192.0.2.2 dev eth0".into(),
    ]
}

fn pool(mode: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: pods}}\nspec: {{cidr: 198.18.0.0/16, blockSize: 26, ipipMode: {mode}}}\n"
    )
}

#[test]
fn cross_subnet_pods_talk_through_the_ebpf_tunnel_and_same_subnet_pods_natively() {
    let c = Cluster::two_subnets("ipip");
    c.apply(&pool("CrossSubnet"));
    let a = c.pod(0, "a1", "198.18.0.1");
    let b = c.pod(1, "b1", "198.18.0.65");
    let z = c.pod(2, "c1", "198.18.0.129");
    let d: Vec<_> = (0..3).map(|i| c.start(i)).collect();
    // Tunnel addresses come first out of each node's block (.0, .64, .128).
    wait_routes(
        &c.nodes[0],
        &[
            "198.18.0.1 dev tortiea1 scope link",
            "blackhole 198.18.0.0/26",
            "198.18.0.64/26 via 192.0.2.2 dev eth0",
            "198.18.0.128/26 via 198.51.100.3 dev tortie-ipip onlink",
        ],
        &d[0],
    );
    wait_routes(
        &c.nodes[2],
        &[
            "198.18.0.129 dev tortiec1 scope link",
            "blackhole 198.18.0.128/26",
            "198.18.0.0/26 via 192.0.2.1 dev tortie-ipip onlink",
            "198.18.0.64/26 via 192.0.2.2 dev tortie-ipip onlink",
        ],
        &d[2],
    );
    let mtu = c.nodes[0].ip(&["link", "show", "tortie-ipip"]).unwrap();
    assert!(mtu.contains("mtu 1480"), "underlay 1500 − 20: {mtu}");
    // A packet with DF that does not fit the tunnel gets ICMP "fragmentation needed" (mtu 1480).
    let big = a.netns.exec("ping", &["-n", "-c", "1", "-W", "1", "-M", "do", "-s", "1460", "198.18.0.129"]);
    let text = format!("{big:?}");
    assert!(big.is_err() && text.contains("mtu = 1480"), "{text}");

    let (_, rtr) = c.routed.as_ref().unwrap();
    let seen = capture(rtr, "eth1", "ip proto 4", IPIP_FIELDS, || {
        let out = a.ping(z.addr, 3, "0.2").unwrap();
        assert!(out.contains(" 0% packet loss"), "{out}");
    });
    assert!(
        seen.lines().any(|l| l.starts_with("192.0.2.1,198.18.0.1\t198.51.100.3,198.18.0.129\t4,1\t8")),
        "IPv4-in-IPv4 echo request:\n{seen}"
    );
    assert!(
        seen.lines().any(|l| l.starts_with("198.51.100.3,198.18.0.129\t192.0.2.1,198.18.0.1\t4,1\t0")),
        "and its reply:\n{seen}"
    );
    let native = capture(&c.nodes[1], "eth0", "ip proto 4", IPIP_FIELDS, || {
        let out = a.ping(b.addr, 3, "0.2").unwrap();
        assert!(out.contains(" 0% packet loss"), "{out}");
    });
    assert!(native.trim().is_empty(), "same-subnet traffic is not encapsulated:\n{native}");

    // A TCP transfer through the tunnel.
    let server =
        z.netns.spawn("iperf3-server", "iperf3", &["-s", "-1", "-B", "198.18.0.129", "--forceflush"], &[]).unwrap();
    wait_until("the iperf3 server to listen", || server.log().contains("Server listening"));
    let out = a.netns.exec("iperf3", &["-c", "198.18.0.129", "-n", "20M", "-J"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // iperf3 stops at the first whole buffer past `-n`: at least 20 MiB.
    assert!(v["end"]["sum_sent"]["bytes"].as_f64().unwrap() as u64 >= 20 * 1024 * 1024, "{out}");
    // The receiver's tally is taken when the sender stops, with some still
    // in flight through the tunnel: only that data arrived is certain.
    assert!(v["end"]["sum_received"]["bytes"].as_f64().unwrap() > 0.0, "{out}");
    drop(server);
    let m = metrics(&c.nodes[2]);
    assert!(metric(&m, "tortie_ipip_decap_packets_total") > 1000.0, "{m}");

    // Protocol 4 from an address that is no cluster node: dropped and counted.
    let before = metric(&metrics(&c.nodes[2]), "tortie_ipip_dropped_packets_total{reason=\"unknown_source\"}");
    let spoof = "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)\ninner = bytes([0x45,0,0,28,0,0,0,0,64,1,0,0,203,0,113,9,198,18,0,129]) + bytes([8,0,0xf7,0xff,0,0,0,0])\nfor _ in range(5): s.sendto(inner, ('198.51.100.3', 0))\n";
    rtr.exec("python3", &["-c", spoof]).unwrap();
    wait_until("the spoofed packets to be counted", || {
        metric(&metrics(&c.nodes[2]), "tortie_ipip_dropped_packets_total{reason=\"unknown_source\"}") >= before + 5.0
    });

    // Always, then Never: n1↔n2 moves into the tunnel and back, under a running ping.
    std::thread::scope(|s| {
        let ping = s.spawn(|| a.ping(addr("198.18.0.65"), 150, "0.02"));
        std::thread::sleep(Duration::from_millis(500));
        c.apply(&pool("Always"));
        wait_routes(&c.nodes[0], &n1_tunnelled("198.18.0.1"), &d[0]);
        std::thread::sleep(Duration::from_millis(500));
        c.apply(&pool("Never"));
        wait_routes(&c.nodes[0], &n1_native("198.18.0.1"), &d[0]);
        let out = ping.join().unwrap().unwrap();
        assert!(out.contains(" 0% packet loss"), "{out}");
    });
    let dropped_route = c.nodes[0].ip(&["route", "show", "198.18.0.128/26"]).unwrap();
    assert!(
        dropped_route.trim().is_empty(),
        "n3's block cannot be reached natively across the router: {dropped_route}"
    );
}

#[test]
fn the_tunnel_follows_the_pools_up_and_down_and_outlives_a_daemon_restart() {
    let c = Cluster::two_subnets("ipip-late");
    c.apply(&pool("Never"));
    // The pods' addresses come from outside IPAM here: the top of each
    // block, which the tunnel addresses (allocated from the bottom) never reach.
    let a = c.pod(0, "a1", "198.18.0.62");
    let z = c.pod(2, "c1", "198.18.0.190");
    // Someone else's TC program on n1's underlay: tortie must leave it be.
    let foreign = c.nodes[0].dir().join("foreign.c");
    let source = "int foreign(void *skb) { return 0; }\nchar l[] __attribute__((section(\"license\"))) = \"GPL\";\n";
    std::fs::write(&foreign, source).unwrap();
    let object = c.nodes[0].dir().join("foreign.o").display().to_string();
    let cc = ["-O2", "-target", "bpf", "-c", foreign.to_str().unwrap(), "-o", &object];
    assert!(Command::new("clang").args(cc).status().unwrap().success());
    c.nodes[0].exec("tc", &["qdisc", "add", "dev", "eth0", "clsact"]).unwrap();
    let add = ["filter", "add", "dev", "eth0", "ingress", "pref", "10", "bpf", "da", "obj", &object, "sec", ".text"];
    c.nodes[0].exec("tc", &add).unwrap();
    let ingress = || c.nodes[0].exec("tc", &["filter", "show", "dev", "eth0", "ingress"]).unwrap();
    let mut d: Vec<_> = (0..3).map(|i| c.start(i)).collect();
    // No pool uses IPIP: no tunnel, and n3's block cannot be reached natively across the router.
    wait_routes(&c.nodes[0], &n1_native("198.18.0.62"), &d[0]);
    assert!(c.nodes[0].ip(&["link", "show", "tortie-ipip"]).is_err(), "no tunnel device yet");

    c.apply(&pool("Always"));
    wait_until("n1's tunnel to come up", || d[0].log().contains("an IP pool now uses IPIP: tunnel up"));
    wait_routes(&c.nodes[0], &n1_tunnelled("198.18.0.62"), &d[0]);
    wait_until("pods on n1 and n3 to reach each other through the tunnel", || {
        a.ping(z.addr, 1, "0.2").is_ok_and(|out| out.contains(" 0% packet loss"))
    });
    let m = metrics(&c.nodes[2]);
    assert!(metric(&m, "tortie_ipip_decap_packets_total") > 0.0, "the tunnel's counters are exported:\n{m}");
    let both = ingress();
    assert!(both.contains("foreign.o") && both.contains("tortie_decap"), "ours beside the other:\n{both}");
    let status = c.tortie(&["status", "--run-dir", &c.nodes[2].dir().join("run").display().to_string()], "");
    assert!(status.contains("IPIP: eBPF data plane on tortie-ipip: "), "{status}");

    // n1's daemon dies: the (persistent) device and the routes through it stay.
    d[0].kill_now();
    let kept = c.nodes[0].ip(&["route", "show", "198.18.0.128/26"]).unwrap();
    assert!(kept.contains("dev tortie-ipip"), "the route through the tunnel stays while the daemon is down: {kept}");
    d[0] = c.start(0);
    wait_until("n1's new daemon to adopt the kept maps", || {
        d[0].log().contains("IPIP: adopted the maps kept from before the restart")
    });
    wait_until("pods on n1 and n3 to reach each other again", || {
        a.ping(z.addr, 1, "0.2").is_ok_and(|out| out.contains(" 0% packet loss"))
    });

    // n1's daemon dies again, and meanwhile its Node loses its tunnel
    // address (as a node taking its tunnel down withdraws it): the other
    // nodes stop wrapping what they send n1 (n2 reaches n1's block
    // natively); n1's next daemon, its tunnel up, publishes the address
    // again, and they wrap again.
    d[0].kill_now();
    let n2_to_n1 = |how: &str| {
        ["blackhole 198.18.0.64/26".to_string(), format!("198.18.0.0/26 via 192.0.2.1 {how}")]
            .into_iter()
            .chain(["198.18.0.128/26 via 198.51.100.3 dev tortie-ipip onlink".to_string()])
            .collect::<Vec<_>>()
    };
    wait_routes(&c.nodes[1], &n2_to_n1("dev tortie-ipip onlink"), &d[1]);
    let mut n1: serde_json::Value = serde_json::from_str(&c.tortie(&["get", "node", "n1", "-o", "json"], "")).unwrap();
    n1["spec"]["bgp"].as_object_mut().unwrap().remove("ipv4IPIPTunnelAddr");
    n1["metadata"].as_object_mut().unwrap().remove("resourceVersion");
    c.apply(&n1.to_string());
    wait_routes(&c.nodes[1], &n2_to_n1("dev eth0"), &d[1]);
    d[0] = c.start(0);
    wait_routes(&c.nodes[1], &n2_to_n1("dev tortie-ipip onlink"), &d[1]);
    assert!(tunnel_addr(&c, "n1").is_some());

    // Back to Never while the daemon runs: the routes go native, the device
    // goes, and the tunnel address goes back to the pool.
    c.apply(&pool("Never"));
    wait_until("n1's tunnel to go down", || d[0].log().contains("no IP pool uses IPIP any more: tunnel down"));
    wait_routes(&c.nodes[0], &n1_native("198.18.0.62"), &d[0]);
    assert!(c.nodes[0].ip(&["link", "show", "tortie-ipip"]).is_err(), "the device is gone");
    let left = ingress();
    assert!(left.contains("foreign.o") && !left.contains("tortie_decap"), "only ours went:\n{left}");
    wait_until("the tunnel addresses to be released", || {
        ["n1", "n2", "n3"].iter().all(|n| tunnel_addr(&c, n).is_none())
    });
    let ipam = c.tortie(&["ipam", "show"], "");
    assert!(
        ipam.lines().any(|l| l.contains("198.18.0.0/16") && l.contains("| 0 (0%)")),
        "no address in use (the lab's pods have theirs from outside IPAM):\n{ipam}"
    );

    // And IPIP again: the tunnel comes back up, with an address again.
    c.apply(&pool("Always"));
    wait_routes(&c.nodes[0], &n1_tunnelled("198.18.0.62"), &d[0]);
    wait_until("pods on n1 and n3 to reach each other through the tunnel again", || {
        a.ping(z.addr, 1, "0.2").is_ok_and(|out| out.contains(" 0% packet loss"))
    });
    assert!(tunnel_addr(&c, "n1").is_some());

    // Never while the daemon is down: the next daemon removes the kept device.
    d[0].kill_now();
    c.apply(&pool("Never"));
    d[0] = c.start(0);
    wait_until("n1's device to go", || c.nodes[0].ip(&["link", "show", "tortie-ipip"]).is_err());
    wait_routes(&c.nodes[0], &n1_native("198.18.0.62"), &d[0]);
}

/// The tunnel address `node` publishes.
fn tunnel_addr(c: &Cluster, node: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(&c.tortie(&["get", "node", node, "-o", "json"], "")).unwrap();
    v["spec"]["bgp"]["ipv4IPIPTunnelAddr"].as_str().map(String::from)
}

/// Receives one TCP connection on 198.18.0.129:5001; prints its length and SHA-256.
const SINK: &str = "import hashlib, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('198.18.0.129', 5001))
s.listen(1)
print('listening', flush=True)
c, _ = s.accept()
h, n = hashlib.sha256(), 0
while b := c.recv(1 << 20):
    h.update(b)
    n += len(b)
print('received', n, h.hexdigest(), flush=True)
";

/// Sends 32 MiB of pseudo-random data to the sink; prints its length and SHA-256.
const SOURCE: &str = "import hashlib, random, socket
data = random.Random(2003).randbytes(32 << 20)
c = socket.create_connection(('198.18.0.129', 5001), timeout=60)
c.sendall(data)
c.close()
print('received', len(data), hashlib.sha256(data).hexdigest())
";

#[test]
fn segments_the_underlays_gro_merged_arrive_whole_and_intact() {
    let c = Cluster::two_subnets("ipip-gro");
    c.apply(&pool("CrossSubnet"));
    let a = c.pod(0, "a1", "198.18.0.1");
    let z = c.pod(2, "c1", "198.18.0.129");
    let _daemons: Vec<_> = (0..3).map(|i| c.start(i)).collect();
    // n3's link as a NIC on a wire: frames of the MTU arrive, and GRO merges them.
    let (swb, _) = c.routed.as_ref().unwrap();
    swb.wire_like(1, &c.nodes[2], "eth0").unwrap();
    // And the receiving pod's link narrower than the tunnel (1480): merged
    // packets must be cut to fit it, not the tunnel, if cut at all.
    z.netns.ip(&["link", "set", "eth0", "mtu", "1400"]).unwrap();
    c.nodes[2].ip(&["link", "set", "tortiec1", "mtu", "1400"]).unwrap();
    wait_until("pods on n1 and n3 to reach each other through the tunnel", || {
        a.ping(z.addr, 1, "0.2").is_ok_and(|out| out.contains(" 0% packet loss"))
    });

    let malformed = || metric(&metrics(&c.nodes[2]), "tortie_ipip_dropped_packets_total{reason=\"malformed\"}");
    let malformed_before = malformed();
    let sink = z.netns.spawn("sink", "python3", &["-c", SINK], &[]).unwrap();
    wait_until("the sink to listen", || sink.log().contains("listening"));
    let sent = a.netns.exec("python3", &["-c", SOURCE]).unwrap();
    let sent = sent.lines().find(|l| l.starts_with("received")).unwrap().to_string();
    wait_until("the sink to have it all", || sink.log().lines().any(|l| l == sent));
    let m = metrics(&c.nodes[2]);
    assert!(
        metric(&m, "tortie_ipip_decap_merged_total") > 0.0,
        "merged packets arrived:
{m}"
    );
    assert_eq!(malformed(), malformed_before, "none cut short as malformed:\n{m}");
}

#[test]
fn the_kernel_ipip_tunnel_is_cleanly_unsupported_here() {
    let lab = tortie_lab::Lab::new("ipip-kernel").unwrap();
    let ns = lab.netns("node").unwrap();
    let result = ns
        .enter(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(tortie_ipip::kernel::setup(None, 1480))
        })
        .unwrap();
    assert!(matches!(result, Err(tortie_ipip::TunnelError::Unsupported)), "{result:?}");
    assert!(ns.ip(&["link", "show", "tunl0"]).is_err(), "nothing left behind");
}

#[test]
fn a_daemon_killed_and_restarted_under_a_ping_through_the_tunnel_loses_nothing() {
    let c = Cluster::two_subnets("ipip-kill");
    c.apply(&pool("CrossSubnet"));
    let a = c.pod(0, "a1", "198.18.0.1");
    let z = c.pod(2, "c1", "198.18.0.129");
    let mut d: Vec<_> = (0..3).map(|i| c.start(i)).collect();
    wait_until("pods on n1 and n3 to reach each other through the tunnel", || {
        a.ping(z.addr, 1, "0.2").is_ok_and(|out| out.contains(" 0% packet loss"))
    });
    // n1's pinned blocks map, and what is in it.
    let netns = std::path::Path::new("/run/netns").join(c.nodes[0].name());
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(netns).unwrap());
    let blocks = tortie_lab::bpffs().unwrap().join(format!("tortie/net-{ino}/tortie_blocks")).display().to_string();
    let dump = || c.nodes[0].exec("bpftool", &["-j", "map", "dump", "pinned", &blocks]).unwrap();
    // 100 pings a second for 15 s; n1's daemon dies at once (kill -9) and
    // a new one starts 3 s later: the programs and maps it left forward on,
    // and the new one takes them over without a gap.
    let out = std::thread::scope(|s| {
        let ping = s.spawn(|| a.netns.exec("ping", &["-n", "-D", "-O", "-c", "1500", "-i", "0.01", "198.18.0.129"]));
        std::thread::sleep(Duration::from_secs(3));
        d[0].kill_now();
        // Meanwhile a stray entry appears in the pinned blocks map
        // (203.0.113.0/24 → 192.0.2.99): the next daemon must take it out.
        let (key, value) = ("24 0 0 0 203 0 113 0", "1 0 0 0 192 0 2 99 0 0 0 0 0 0 0 0 0 0 0 0");
        let mut args = vec!["map", "update", "pinned", blocks.as_str(), "key"];
        args.extend(key.split_whitespace());
        args.push("value");
        args.extend(value.split_whitespace());
        c.nodes[0].exec("bpftool", &args).unwrap();
        assert!(dump().contains("\"0xcb\""), "the stray entry is in: {}", dump());
        std::thread::sleep(Duration::from_secs(3));
        d[0] = c.start(0);
        wait_until("n1's new daemon to adopt the kept maps", || {
            d[0].log().contains("IPIP: adopted the maps kept from before the restart")
        });
        ping.join().unwrap().unwrap()
    });
    assert!(out.contains("1500 packets transmitted, 1500 received"), "{out}");
    wait_until("the stray entry gone once BGP has relearned", || !dump().contains("\"0xcb\""));
    let m = metrics(&c.nodes[0]);
    assert!(metric(&m, "tortie_ipip_encap_packets_total") >= 1500.0, "the counters survived the restart:\n{m}");
}
