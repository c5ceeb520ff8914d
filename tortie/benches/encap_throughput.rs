//! TCP throughput between two pods on two nodes through tortie's eBPF IPIP
//! data plane and through the kernel's VXLAN device against the same pods
//! over a native route, in the same run (iperf3, 5 s each: native, IPIP,
//! VXLAN, native again), and the machine's CPU seconds per GB carried on
//! each path (the data planes run in the kernel, charged to no daemon).
//!
//! Run: `cargo bench -p tortie --bench encap_throughput` (root;
//! `TORTIE_BENCH_MTU`, default 1500, is the underlay MTU: the nodes' links
//! get it, the pods 20 octets less for IPIP and 50 for VXLAN, as Calico
//! sizes pods, and the daemons are told with `--underlay-mtu`). `TORTIE_BENCH_WIRE=1` makes the
//! node links behave as NICs on a wire: frames of at most the MTU, merged by
//! GRO on arrival (by default the veths pass 64 KiB GSO packets whole).

#![allow(clippy::unwrap_used)] // a benchmark: a failure aborts the run

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use tortie_lab::{Check, Daemon, Lab, Netns, wait_for};
use tortie_store::Datastore;
use tortie_store::ipam::IpamBlock;
use tortie_store::kv::Kv;

fn pool(ipip: &str, vxlan: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: pods}}\nspec: {{cidr: 198.18.0.0/16, blockSize: 26, ipipMode: {ipip}, vxlanMode: {vxlan}}}\n"
    )
}

fn apply(url: &str, yaml: &str) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tortie"))
        .args(["apply", "-f", "-"])
        .env("TORTIE_DATASTORE", url)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success());
}

/// The machine's busy CPU time so far, in ticks (`/proc/stat`: all but idle and iowait).
fn busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cpu: Vec<u64> = stat.lines().next().unwrap().split_whitespace().skip(1).map(|v| v.parse().unwrap()).collect();
    cpu.iter().sum::<u64>() - cpu[3] - cpu[4]
}

fn wait_route(node: &Netns, want: &str) {
    wait_for(want, Duration::from_secs(30), || {
        let r = node.ip(&["route", "show", "198.18.0.64/26"])?;
        Ok(if r.contains(want) { Check::Done(()) } else { Check::Pending(r) })
    })
    .unwrap();
}

/// iperf3 from pod a to pod b for 5 s: (bits/s received, the machine's CPU seconds per GB).
fn iperf(a: &Netns, b: &Netns) -> (f64, f64) {
    let server = b.spawn("iperf3-s", "iperf3", &["-s", "-1", "-B", "198.18.0.126"], &[]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let before = busy_ticks();
    let out = a.exec("iperf3", &["-c", "198.18.0.126", "-t", "5", "-J"]).unwrap();
    let ticks = busy_ticks() - before;
    drop(server);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = &v["end"]["sum_received"];
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let bytes = r["bytes"].as_f64().unwrap();
    (r["bits_per_second"].as_f64().unwrap(), ticks as f64 / hz / (bytes / 1e9))
}

fn main() {
    let mtu: u16 = std::env::var("TORTIE_BENCH_MTU").ok().and_then(|v| v.parse().ok()).unwrap_or(1500);
    let wire = std::env::var("TORTIE_BENCH_WIRE").is_ok_and(|v| v == "1");
    let lab = Lab::new("bench-encap").unwrap();
    let url = format!("sqlite://{}/store.db", lab.dir().display());
    let sw = lab.bridge("sw").unwrap();
    let mut nodes = Vec::new();
    for i in 0..2 {
        let n = lab.netns(&format!("n{}", i + 1)).unwrap();
        sw.attach(&n, "eth0").unwrap();
        // Both ends of the link (the bridge follows its ports).
        n.ip(&["link", "set", "eth0", "mtu", &mtu.to_string()]).unwrap();
        sw.netns().ip(&["link", "set", &format!("port{i}"), "mtu", &mtu.to_string()]).unwrap();
        if wire {
            sw.wire_like(i, &n, "eth0").unwrap();
        }
        n.add_addr("eth0", format!("192.0.2.{}/24", i + 1).parse().unwrap()).unwrap();
        n.add_route("default via 192.0.2.254").unwrap();
        nodes.push(n);
    }
    // CrossSubnet at start: both daemons bring up the tunnel; same-subnet traffic stays native.
    apply(&url, &pool("CrossSubnet", "Never"));
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let kv = Datastore::open(&url).await.unwrap();
        for i in 0..2 {
            let b = IpamBlock::new(format!("198.18.0.{}/26", 64 * i).parse().unwrap(), &format!("n{}", i + 1));
            kv.put(&b.key(), serde_json::to_vec(&b).unwrap()).await.unwrap();
        }
    });
    let a = lab.pod(&nodes[0], "a", "tortiea", "198.18.0.62".parse().unwrap()).unwrap();
    let b = lab.pod(&nodes[1], "b", "tortieb", "198.18.0.126".parse().unwrap()).unwrap();
    for (i, (pod, ifname, addr)) in
        [("a", "tortiea", "198.18.0.62"), ("b", "tortieb", "198.18.0.126")].iter().enumerate()
    {
        apply(
            &url,
            &format!(
                "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: {pod}, namespace: default}}\nspec: {{node: n{}, interfaceName: {ifname}, ipNetworks: [{addr}/32]}}\n",
                i + 1
            ),
        );
    }
    let pod_mtu = |overhead: u16| {
        let m = (mtu - overhead).to_string();
        for (pod, node, host_if) in [(&a, &nodes[0], "tortiea"), (&b, &nodes[1], "tortieb")] {
            pod.netns.ip(&["link", "set", "eth0", "mtu", &m]).unwrap();
            node.ip(&["link", "set", host_if, "mtu", &m]).unwrap();
        }
    };
    pod_mtu(20);
    let _daemons: Vec<Daemon> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let (name, ip) = (format!("n{}", i + 1), format!("192.0.2.{}/24", i + 1));
            let underlay = mtu.to_string();
            let env = [("TORTIE_DATASTORE", url.as_str()), ("TORTIE_LOG", "warn")];
            let bin = env!("CARGO_BIN_EXE_tortie");
            n.spawn_tortie_node("tortie", bin, &name, &ip, &["--underlay-mtu", &underlay], &env).unwrap()
        })
        .collect();
    wait_route(&nodes[0], "via 192.0.2.2 dev eth0");
    let native = iperf(&a.netns, &b.netns);
    apply(&url, &pool("Always", "Never"));
    wait_route(&nodes[0], "dev tortie-ipip");
    let tunnel = iperf(&a.netns, &b.netns);
    let metric = |node: &Netns, name: &str| -> f64 {
        use std::io::{Read, Write};
        let sock = node.dir().join("run/tortie.sock");
        let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
    };
    // Read while the tunnel is up (its counters go with it).
    let merged = metric(&nodes[1], "tortie_ipip_decap_merged_total");
    apply(&url, &pool("Never", "Always"));
    wait_route(&nodes[0], "dev vxlan.calico");
    pod_mtu(50);
    let vxlan = iperf(&a.netns, &b.netns);
    apply(&url, &pool("Never", "Never"));
    wait_route(&nodes[0], "via 192.0.2.2 dev eth0");
    let again = iperf(&a.netns, &b.netns);
    let links = if wire { "frames of the MTU, GRO" } else { "veth, GSO packets whole" };
    println!(
        "iperf3 TCP, pod to pod on two nodes, 5 s each, underlay MTU {mtu} ({links}), pods {} (VXLAN: {})",
        mtu - 20,
        mtu - 50
    );
    println!("  merged by the underlay's GRO: {merged:.0} packets");
    let line = |what: &str, (bps, cpu): (f64, f64)| {
        println!("  {what:<20} {:>8.0} Mbit/s  ({:.2}x native)  {cpu:.2} CPU-s per GB", bps / 1e6, bps / native.0);
    };
    line("native route", native);
    line("eBPF IPIP", tunnel);
    line("kernel VXLAN", vxlan);
    line("native route again", again);
}
