//! VXLAN without BGP, through the whole node daemon: one node
//! (`--networking-backend vxlan`, a `vxlanMode: Always` pool) while 1,000
//! simulated remote nodes appear. Timed, by polling the kernel every 2 ms:
//! - their 1,000 Nodes (each with a VTEP) applied in one transaction →
//!   1,000 neighbour and 1,000 FDB entries on `vxlan.calico`;
//! - their 1,000 block affinities written in one transaction → 1,000
//!   routes via their VTEPs;
//! - one more node (Node, then block), five times → its neighbour, FDB
//!   entry and route;
//!
//! and, side by side, the same 1,000 neighbours, FDB entries and routes
//! written by `ip -batch` / `bridge -batch` on a bare vxlan device.
//! The simulated nodes' underlay addresses are from 240.0.0.0/4 (entries
//! only, never traffic).
//!
//! Run: `cargo bench -p tortie --bench vxlan_datastore` (root).

#![allow(clippy::unwrap_used)] // a benchmark: a failure aborts the run

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use tortie_lab::{Lab, Netns};
use tortie_store::Datastore;
use tortie_store::ipam::IpamBlock;
use tortie_store::kv::{Kv, Op, Txn};

const NODES: u32 = 1000;

/// Simulated node `i`: its name, underlay address, block (its VTEP is the
/// block's first address) and MAC.
fn node(i: u32) -> (String, Ipv4Addr, Ipv4Addr, String) {
    let underlay = Ipv4Addr::from(u32::from(Ipv4Addr::new(240, 0, 0, 1)) + i);
    let block = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + 64 * i);
    (format!("sim{i}"), underlay, block, format!("02:00:00:00:{:02x}:{:02x}", i >> 8, i & 0xff))
}

fn node_yaml(i: u32) -> String {
    let (name, underlay, vtep, mac) = node(i);
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: {name}}}\nspec: {{bgp: {{ipv4Address: {underlay}/4}}, ipv4VXLANTunnelAddr: {vtep}, vxlanTunnelMACAddr: '{mac}'}}\n"
    )
}

fn blocks_txn(range: std::ops::Range<u32>) -> Txn {
    let success = range
        .map(|i| {
            let (name, _, block, _) = node(i);
            let b = IpamBlock::new(format!("{block}/26").parse().unwrap(), &name);
            Op::Put { key: b.key(), value: serde_json::to_vec(&b).unwrap(), lease: None }
        })
        .collect();
    Txn { compares: Vec::new(), success, failure: Vec::new() }
}

/// Lines of `program args` in `ns` (0 on an error).
fn count(ns: &Netns, program: &str, args: &[&str]) -> usize {
    ns.exec(program, args).map_or(0, |out| out.lines().filter(|l| !l.trim().is_empty()).count())
}

/// Polls every 2 ms until `done`; the time since `from`.
fn until(from: Instant, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let deadline = from + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 60 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    from.elapsed()
}

fn main() {
    let lab = Lab::new("bench-vxlan-ds").unwrap();
    let url = format!("sqlite://{}/store.db", lab.dir().display());
    let n1 = lab.netns("n1").unwrap();
    let peer = lab.netns("peer").unwrap();
    tortie_lab::veth((&n1, "eth0"), (&peer, "eth0")).unwrap();
    n1.add_addr("eth0", "192.0.2.1/24".parse().unwrap()).unwrap();
    let bin = env!("CARGO_BIN_EXE_tortie");
    let apply = |yaml: &str| {
        let path = lab.dir().join("doc.yaml");
        std::fs::write(&path, yaml).unwrap();
        let out = Command::new(bin)
            .args(["apply", "-f", path.to_str().unwrap()])
            .env("TORTIE_DATASTORE", &url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    apply(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: pods}\nspec: {cidr: 198.18.0.0/16, blockSize: 26, vxlanMode: Always}\n",
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let kv = rt.block_on(Datastore::open(&url)).unwrap();
    let own = IpamBlock::new("198.18.255.192/26".parse().unwrap(), "n1");
    rt.block_on(kv.put(&own.key(), serde_json::to_vec(&own).unwrap())).unwrap();
    let env = [("TORTIE_DATASTORE", url.as_str()), ("TORTIE_LOG", "warn")];
    let args = ["--networking-backend", "vxlan"];
    let _daemon = n1.spawn_tortie_node("tortie", bin, "n1", "192.0.2.1/24", &args, &env).unwrap();
    until(Instant::now(), "the VXLAN device", || n1.ip(&["link", "show", "vxlan.calico"]).is_ok());

    let neigh = || count(&n1, "ip", &["neigh", "show", "dev", "vxlan.calico", "nud", "permanent"]);
    let fdb = || count(&n1, "bridge", &["fdb", "show", "dev", "vxlan.calico", "self", "permanent"]);
    let routes = || count(&n1, "ip", &["route", "show", "dev", "vxlan.calico"]);
    let n = NODES as usize;

    let mut yaml = String::new();
    for i in 0..NODES {
        yaml.push_str(&node_yaml(i));
    }
    let t = Instant::now();
    apply(&yaml);
    let applied = t.elapsed();
    let vteps = until(t, "1,000 VTEPs", || neigh() >= n && fdb() >= n);

    let t = Instant::now();
    rt.block_on(kv.txn(blocks_txn(0..NODES))).unwrap();
    let blocks = until(t, "1,000 routes", || routes() >= n);

    let mut one = Vec::new();
    for i in NODES..NODES + 5 {
        let (_, _, block, _) = node(i);
        let t = Instant::now();
        apply(&node_yaml(i));
        let vtep = until(t, "one more VTEP", || {
            n1.ip(&["neigh", "show", &block.to_string(), "dev", "vxlan.calico"]).is_ok_and(|o| o.contains("lladdr"))
        });
        let t = Instant::now();
        rt.block_on(kv.txn(blocks_txn(i..i + 1))).unwrap();
        let route = until(t, "one more route", || {
            n1.ip(&["route", "show", &format!("{block}/26")]).is_ok_and(|o| o.contains("vxlan.calico"))
        });
        one.push((vtep, route));
    }

    // The same entries by ip -batch / bridge -batch on a bare device.
    let bare = lab.netns("bare").unwrap();
    let peer2 = lab.netns("peer2").unwrap();
    tortie_lab::veth((&bare, "eth0"), (&peer2, "eth0")).unwrap();
    bare.add_addr("eth0", "192.0.2.1/24".parse().unwrap()).unwrap();
    bare.ip(&[
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "4096",
        "dstport",
        "4789",
        "local",
        "192.0.2.1",
        "nolearning",
    ])
    .unwrap();
    bare.ip(&["link", "set", "vx0", "up"]).unwrap();
    let (mut ip_batch, mut bridge_batch, mut route_batch) = (String::new(), String::new(), String::new());
    for i in 0..NODES {
        let (_, underlay, vtep, mac) = node(i);
        writeln!(ip_batch, "neigh add {vtep} lladdr {mac} dev vx0 nud permanent").unwrap();
        writeln!(bridge_batch, "fdb add {mac} dev vx0 dst {underlay} self permanent").unwrap();
        writeln!(route_batch, "route add {vtep}/26 via {vtep} dev vx0 onlink").unwrap();
    }
    let batch = |program: &str, text: &str| {
        let file = lab.dir().join(format!("{program}.batch"));
        std::fs::write(&file, text).unwrap();
        let t = Instant::now();
        bare.exec(program, &["-batch", file.to_str().unwrap()]).unwrap();
        t.elapsed()
    };
    let by_ip = batch("ip", &ip_batch) + batch("bridge", &bridge_batch);
    let by_ip_routes = batch("ip", &route_batch);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("VXLAN without BGP, one node daemon, {NODES} simulated remote nodes");
    println!("  {NODES} Nodes applied (one transaction, {:.0} ms for tortie apply)", ms(applied));
    println!(
        "    → {NODES} neighbours + {NODES} FDB entries: {:.0} ms after the apply began   (ip/bridge -batch: {:.0} ms)",
        ms(vteps),
        ms(by_ip)
    );
    println!(
        "  {NODES} block affinities (one transaction) → {NODES} routes: {:.0} ms   (ip -batch: {:.0} ms)",
        ms(blocks),
        ms(by_ip_routes)
    );
    for (i, (vtep, route)) in one.iter().enumerate() {
        println!(
            "  one more node #{}: Node → neighbour + FDB {:.1} ms; block → route {:.1} ms",
            i + 1,
            ms(*vtep),
            ms(*route)
        );
    }
}
