//! A lab cluster for the daemon's end-to-end tests: nodes on one switch,
//! the embedded datastore, a pod pool with one /26 block per node, pods
//! plumbed as the CNI plugin does, and `tortie node run` per node.

#![allow(dead_code, clippy::unwrap_used)] // shared by several test crates; each uses a part

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use tortie_lab::{Check, Daemon, Lab, Netns, Pod, wait_for};
use tortie_store::Datastore;
use tortie_store::ipam::IpamBlock;
use tortie_store::kv::Kv;

const POOL: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pods}
spec: {cidr: 198.18.0.0/16, blockSize: 26, ipipMode: Never}
";

pub struct Cluster {
    pub lab: Lab,
    pub switch: tortie_lab::Bridge,
    pub url: String,
    pub nodes: Vec<Netns>,
}

impl Cluster {
    /// `n` nodes on one link, 192.0.2.(i+1)/24, each with a /26 block
    /// 198.18.0.(64·i)/26, and the default pool.
    pub fn new(purpose: &str, n: usize) -> Cluster {
        let lab = Lab::new(purpose).unwrap();
        let url = format!("sqlite://{}/store.db", lab.dir().display());
        let switch = lab.bridge("sw").unwrap();
        let mut nodes = Vec::new();
        for i in 0..n {
            let node = lab.netns(&format!("n{}", i + 1)).unwrap();
            switch.attach(&node, "eth0").unwrap();
            node.add_addr("eth0", format!("192.0.2.{}/24", i + 1).parse().unwrap()).unwrap();
            // Proxy ARP answers for the pods' gateway 169.254.1.1 only when the
            // node has a route to it: as on real hosts, a default route (to nowhere here).
            node.add_route("default via 192.0.2.254").unwrap();
            nodes.push(node);
        }
        let c = Cluster { lab, url, nodes, switch };
        c.apply(POOL);
        block_on(async {
            let kv = Datastore::open(&c.url).await.unwrap();
            for i in 0..n {
                let block = IpamBlock::new(format!("198.18.0.{}/26", 64 * i).parse().unwrap(), &format!("n{}", i + 1));
                kv.put(&block.key(), serde_json::to_vec(&block).unwrap()).await.unwrap();
            }
        });
        c
    }

    pub fn tortie(&self, args: &[&str], stdin: &str) -> String {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tortie"))
            .args(args)
            .env("TORTIE_DATASTORE", &self.url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "tortie {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn apply(&self, yaml: &str) {
        self.tortie(&["apply", "-f", "-"], yaml);
    }

    /// Pod `name` on node `i` (0-based) at `addr`, with its WorkloadEndpoint.
    pub fn pod(&self, i: usize, name: &str, addr: &str) -> Pod {
        let host_if = format!("tortie{name}");
        let pod = self.lab.pod(&self.nodes[i], name, &host_if, addr.parse().unwrap()).unwrap();
        self.apply(&format!(
            "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: {name}, namespace: default}}
spec: {{node: n{}, pod: {name}, endpoint: eth0, interfaceName: {host_if}, ipNetworks: [{addr}/32]}}
",
            i + 1
        ));
        pod
    }

    pub fn start(&self, i: usize) -> Daemon {
        let node = &self.nodes[i];
        let name = format!("n{}", i + 1);
        let ip = format!("192.0.2.{}/24", i + 1);
        let run_dir = node.dir().join("run");
        let bin = env!("CARGO_BIN_EXE_tortie");
        let args = ["node", "run", "--name", &name, "--ip", &ip, "--run-dir", run_dir.to_str().unwrap()];
        node.spawn(&format!("tortie-{name}"), bin, &args, &[("TORTIE_DATASTORE", &self.url), ("TORTIE_LOG", "info")])
            .unwrap()
    }
}

pub fn block_on<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// tortie's routes on a node, one normalised `ip route` line each.
pub fn our_routes(node: &Netns) -> BTreeSet<String> {
    node.ip(&["route", "show", "proto", "217"])
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

pub fn wait_routes(node: &Netns, want: &[&str], daemon: &Daemon) {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    wait_for(&format!("tortie routes on {}", node.name()), Duration::from_secs(20), || {
        daemon.check_running()?;
        let have = our_routes(node);
        Ok(if have == want { Check::Done(()) } else { Check::Pending(format!("want {want:?}, have {have:?}")) })
    })
    .unwrap();
}

pub fn addr(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Waits up to 20 s for `done`.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    wait_for(what, Duration::from_secs(20), || {
        Ok(if done() { Check::Done(()) } else { Check::Pending(String::new()) })
    })
    .unwrap();
}
