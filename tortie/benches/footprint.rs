//! The node daemon's footprint: idle RSS and CPU of `tortie node run` with
//! 100 BGP peers (eBGP sessions to 100 BIRDs, each sending 10 prefixes:
//! 1,000 learned routes) and 1,000 local pods (WorkloadEndpoints
//! with their veths: 1,000 /32 routes), after it has settled.
//!
//! Run: `cargo bench -p tortie --bench footprint` (root).

#![allow(clippy::unwrap_used)] // a benchmark: a failure aborts the run

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use tortie_lab::peers::Bird;
use tortie_lab::usage::cpu_seconds;
use tortie_lab::{Check, Lab, wait_for};
use tortie_store::Datastore;
use tortie_store::api;
use tortie_store::ipam::IpamBlock;
use tortie_store::kv::Kv;
use tortie_store::resources::parse_documents;

const PEERS: u32 = 100;
const PODS: u32 = 1000;
const PREFIXES_PER_PEER: u32 = 10;

fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
    let line = text.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn main() {
    let lab = Lab::new("bench-footprint").unwrap();
    let url = format!("sqlite://{}/store.db", lab.dir().display());
    let node = lab.netns("node").unwrap();
    let peers = lab.netns("peers").unwrap();
    let pods = lab.netns("pods").unwrap();
    tortie_lab::veth((&node, "eth0"), (&peers, "eth0")).unwrap();
    node.add_addr("eth0", "192.0.2.1/24".parse().unwrap()).unwrap();
    let mut batch = String::new();
    for i in 0..PEERS {
        writeln!(batch, "addr add 192.0.2.{}/24 dev eth0", 101 + i).unwrap();
    }
    std::fs::write(lab.dir().join("peers.batch"), &batch).unwrap();
    peers.ip(&["-batch", lab.dir().join("peers.batch").to_str().unwrap()]).unwrap();

    // 1,000 pods: a veth each (batched), their WorkloadEndpoints and the node's blocks.
    let mut links = String::new();
    let mut yaml = String::from(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: pods}\nspec: {cidr: 198.18.0.0/16, blockSize: 26}\n",
    );
    for i in 0..PEERS {
        write!(yaml, "---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: p{i}}}\nspec: {{peerIP: 192.0.2.{}, asNumber: 65000}}\n", 101 + i).unwrap();
    }
    for i in 0..PODS {
        let addr = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0)) + i);
        writeln!(links, "link add tortie{i} type veth peer name p{i} netns {}", pods.name()).unwrap();
        writeln!(links, "link set tortie{i} up").unwrap();
        write!(
            yaml,
            "---\napiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: pod{i}, namespace: default}}\nspec: {{node: node, interfaceName: tortie{i}, ipNetworks: [{addr}/32]}}\n"
        )
        .unwrap();
    }
    std::fs::write(lab.dir().join("links.batch"), &links).unwrap();
    node.ip(&["-batch", lab.dir().join("links.batch").to_str().unwrap()]).unwrap();
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let kv = Datastore::open(&url).await.unwrap();
        api::apply(&kv, &parse_documents(&yaml).unwrap()).await.unwrap();
        for b in 0..(PODS / 64 + 1) {
            let block = IpamBlock::new(format!("198.18.{}.{}/26", b / 4, (b % 4) * 64).parse().unwrap(), "node");
            kv.put(&block.key(), serde_json::to_vec(&block).unwrap()).await.unwrap();
        }
    });

    // One BIRD per peer address (BIRD matches incoming sessions by neighbour
    // address, so one BIRD cannot hold 100 sessions to the same node), each
    // bound to its address and announcing 10 prefixes of its own.
    let birds: Vec<Bird> = (0..PEERS)
        .map(|i| {
            let me = format!("192.0.2.{}", 101 + i);
            let mut conf = format!(
                "router id {me};\nprotocol device {{ }}\nprotocol static announced {{\n  ipv4;\n"
            );
            for j in 0..PREFIXES_PER_PEER {
                let n = i * PREFIXES_PER_PEER + j;
                writeln!(conf, "  route 240.{}.{}.0/24 blackhole;", n / 256, n % 256).unwrap();
            }
            write!(
                conf,
                "}}\nprotocol bgp tortie {{\n  local {me} as 65000;\n  strict bind on;\n  neighbor 192.0.2.1 as 64512;\n  \
                 ipv4 {{ import all; export where source = RTS_STATIC; }};\n  graceful restart off;\n}}\n"
            )
            .unwrap();
            Bird::start_with_config(&peers, &format!("bird{i}"), &conf).unwrap()
        })
        .collect();
    let run_dir = node.dir().join("run");
    let started = Instant::now();
    let daemon = node
        .spawn(
            "tortie",
            env!("CARGO_BIN_EXE_tortie"),
            &["node", "run", "--name", "node", "--ip", "192.0.2.1/24", "--run-dir", run_dir.to_str().unwrap()],
            &[("TORTIE_DATASTORE", url.as_str()), ("TORTIE_LOG", "warn")],
        )
        .unwrap();
    wait_for("every session Established", Duration::from_secs(120), || {
        daemon.check_running()?;
        let mut up = 0;
        for b in &birds {
            up += usize::from(b.protocol("tortie")?.info.contains("Established"));
        }
        Ok(if up as u32 == PEERS { Check::Done(()) } else { Check::Pending(format!("{up} up")) })
    })
    .unwrap();
    wait_for("1,000 pod routes", Duration::from_secs(60), || {
        let n = node.ip(&["route", "show", "proto", "217"])?.lines().count() as u32;
        Ok(if n >= PODS { Check::Done(()) } else { Check::Pending(format!("{n} routes")) })
    })
    .unwrap();
    let converged = started.elapsed();
    std::thread::sleep(Duration::from_secs(10));
    let pid = daemon.pid();
    let (t0, c0) = (Instant::now(), cpu_seconds(&pid.to_string(), None));
    std::thread::sleep(Duration::from_secs(20));
    let cpu = (cpu_seconds(&pid.to_string(), None) - c0) / t0.elapsed().as_secs_f64() * 100.0;
    let rss = proc_field(pid, "status", "VmRSS:") as f64 / 1024.0;
    let hwm = proc_field(pid, "status", "VmHWM:") as f64 / 1024.0;
    let anon = proc_field(pid, "status", "RssAnon:") as f64 / 1024.0;
    let file = proc_field(pid, "status", "RssFile:") as f64 / 1024.0;
    let threads = proc_field(pid, "status", "Threads:");
    println!("tortie node run, {PEERS} eBGP peers ({} learned paths), {PODS} local pods", PEERS * PREFIXES_PER_PEER);
    println!("  all sessions up and pod routes in:  {:.1} s", converged.as_secs_f64());
    println!(
        "  idle RSS:                           {rss:.1} MiB (peak {hwm:.1} MiB): {anon:.1} MiB heap and stacks, {file:.1} MiB binary and libraries; {threads} threads"
    );
    println!("  idle CPU:                           {cpu:.2} % of one core (over 20 s)");
}
