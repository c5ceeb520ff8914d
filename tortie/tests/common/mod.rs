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
    /// The switch of the first subnet (192.0.2.0/24).
    pub switch: tortie_lab::Bridge,
    /// The second subnet's switch and the router between the two, if any.
    pub routed: Option<(tortie_lab::Bridge, Netns)>,
    pub url: String,
    pub nodes: Vec<Netns>,
    /// Each node's address with its subnet length.
    pub addrs: Vec<String>,
    /// Where the test's own datastore clients run (`None`: here; an etcd
    /// cluster is reachable only from the lab's switch).
    pub client: Option<Netns>,
}

impl Cluster {
    /// `n` nodes on one link, 192.0.2.(i+1)/24, each with a /26 block
    /// 198.18.0.(64·i)/26, and the default pool.
    pub fn new(purpose: &str, n: usize) -> Cluster {
        let addrs: Vec<String> = (0..n).map(|i| format!("192.0.2.{}/24", i + 1)).collect();
        Cluster::build(purpose, &addrs, false)
    }

    /// n1 and n2 in 192.0.2.0/24, n3 in 198.51.100.0/24, a router (.254 in
    /// both) between them that knows no pod routes.
    pub fn two_subnets(purpose: &str) -> Cluster {
        let addrs = ["192.0.2.1/24", "192.0.2.2/24", "198.51.100.3/24"].map(String::from);
        Cluster::build(purpose, &addrs, true)
    }

    /// `n` nodes as [`Cluster::new`] on a three-member etcd cluster (one
    /// member per namespace on the nodes' switch, 192.0.2.201–203).
    pub fn with_etcd(purpose: &str, n: usize) -> (Cluster, tortie_lab::peers::EtcdCluster) {
        let addrs: Vec<String> = (0..n).map(|i| format!("192.0.2.{}/24", i + 1)).collect();
        let lab = Lab::new(purpose).unwrap();
        let switch = lab.bridge("sw").unwrap();
        let members: Vec<(Netns, Ipv4Addr)> = (1..=3)
            .map(|i| {
                let ns = lab.netns(&format!("etcd{i}")).unwrap();
                switch.attach(&ns, "eth0").unwrap();
                let addr = Ipv4Addr::new(192, 0, 2, 200 + i);
                ns.add_addr("eth0", format!("{addr}/24").parse().unwrap()).unwrap();
                (ns, addr)
            })
            .collect();
        let etcd = tortie_lab::peers::EtcdCluster::start(&lab, &members).unwrap();
        let url = etcd.url();
        let client = Some(members[0].0.clone());
        (Cluster::build_on(lab, switch, url, &addrs, false, client), etcd)
    }

    fn build(purpose: &str, addrs: &[String], routed: bool) -> Cluster {
        let lab = Lab::new(purpose).unwrap();
        let url = format!("sqlite://{}/store.db", lab.dir().display());
        let switch = lab.bridge("sw").unwrap();
        Cluster::build_on(lab, switch, url, addrs, routed, None)
    }

    fn build_on(
        lab: Lab,
        switch: tortie_lab::Bridge,
        url: String,
        addrs: &[String],
        routed: bool,
        client: Option<Netns>,
    ) -> Cluster {
        let routed = routed.then(|| {
            let (b, rtr) = (lab.bridge("swb").unwrap(), lab.netns("rtr").unwrap());
            switch.attach(&rtr, "eth0").unwrap();
            b.attach(&rtr, "eth1").unwrap();
            rtr.add_addr("eth0", "192.0.2.254/24".parse().unwrap()).unwrap();
            rtr.add_addr("eth1", "198.51.100.254/24".parse().unwrap()).unwrap();
            rtr.enable_forwarding().unwrap();
            (b, rtr)
        });
        let mut nodes = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let node = lab.netns(&format!("n{}", i + 1)).unwrap();
            let second = addr.starts_with("198.51.100.");
            match (&routed, second) {
                (Some((b, _)), true) => b.attach(&node, "eth0").unwrap(),
                _ => switch.attach(&node, "eth0").unwrap(),
            }
            node.add_addr("eth0", addr.parse().unwrap()).unwrap();
            // Proxy ARP answers for the pods' gateway 169.254.1.1 only when the node
            // has a route to it: as on real hosts, a default route (here the router,
            // or nowhere).
            node.add_route(if second { "default via 198.51.100.254" } else { "default via 192.0.2.254" }).unwrap();
            nodes.push(node);
        }
        let c = Cluster { lab, switch, routed, url, nodes, addrs: addrs.to_vec(), client };
        c.apply(POOL);
        let blocks = || {
            block_on(async {
                let kv = Datastore::open(&c.url).await.unwrap();
                for i in 0..addrs.len() {
                    let block = IpamBlock::new(block(i).parse().unwrap(), &format!("n{}", i + 1));
                    kv.put(&block.key(), serde_json::to_vec(&block).unwrap()).await.unwrap();
                }
            })
        };
        match &c.client {
            Some(ns) => ns.enter(blocks).unwrap(),
            None => blocks(),
        }
        c
    }

    /// `tortie args…` with `stdin`, however it ends.
    pub fn tortie_output(&self, args: &[&str], stdin: &str) -> std::process::Output {
        let mut command = match &self.client {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_tortie")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_tortie")),
        };
        let mut child = command
            .args(args)
            .env("TORTIE_DATASTORE", &self.url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn tortie(&self, args: &[&str], stdin: &str) -> String {
        let out = self.tortie_output(args, stdin);
        assert!(out.status.success(), "tortie {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// `tortie status` of the daemon whose run directory is `run`, or
    /// `None` while its local API does not answer yet (the daemon
    /// registers its Node before it opens the API).
    pub fn status(&self, run: &str) -> Option<String> {
        let out = self.tortie_output(&["status", "--run-dir", run], "");
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
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

    /// Runs `tortie-cni COMMAND` (the tortie binary under the plugin's
    /// name) for container `id` in `pod`, on node `i` (0-based), with this
    /// `ipam` section if given: (exit code, stdout).
    pub fn cni(
        &self,
        i: usize,
        command: &str,
        id: &str,
        pod: &Netns,
        ipam: Option<serde_json::Value>,
    ) -> (i32, String) {
        let dir = self.lab.dir().join("cni-bin");
        std::fs::create_dir_all(&dir).unwrap();
        let plugin = dir.join("tortie-cni");
        if !plugin.exists() {
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tortie"), &plugin).unwrap();
        }
        let mut conf = serde_json::json!({"cniVersion": "1.1.0", "name": "k8s-pod-network", "type": "tortie-cni",
            "datastore": self.url, "nodename": format!("n{}", i + 1), "mtu": 1400});
        if let Some(ipam) = ipam {
            conf["ipam"] = ipam;
        }
        let mut child = Command::new("ip")
            .args(["netns", "exec", self.nodes[i].name()])
            .arg(&plugin)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", dir.display().to_string())
            .env("CNI_NETNS", format!("/run/netns/{}", pod.name()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts `tortie node run` on node `i` (0-based), with metrics on
    /// 127.0.0.1:9091 there and secrets under `<lab dir>/secrets`.
    pub fn start(&self, i: usize) -> Daemon {
        self.start_with(i, &[])
    }

    /// `start` with more `node run` arguments.
    pub fn start_with(&self, i: usize, more: &[&str]) -> Daemon {
        self.start_as(i, &self.addrs[i], more)
    }

    /// `start_with`, the node's `--ip` being `ip` (`none`: IPv6-only).
    pub fn start_as(&self, i: usize, ip: &str, more: &[&str]) -> Daemon {
        let node = &self.nodes[i];
        let name = format!("n{}", i + 1);
        let bin = env!("CARGO_BIN_EXE_tortie");
        let secrets = self.lab.dir().join("secrets").display().to_string();
        let mut extra = vec!["--metrics-listen", "127.0.0.1:9091", "--secrets-dir", &secrets];
        extra.extend_from_slice(more);
        let env = [("TORTIE_DATASTORE", self.url.as_str()), ("TORTIE_LOG", "info")];
        node.spawn_tortie_node(&format!("tortie-{name}"), bin, &name, ip, &extra, &env).unwrap()
    }
}

/// Node `i`'s /26 block (0-based): 198.18.0.0/26, 198.18.0.64/26, …
pub fn block(i: usize) -> String {
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + 64 * i as u32;
    format!("{}/26", Ipv4Addr::from(base))
}

pub fn block_on<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// tortie's routes on a node, one normalised `ip route` line each.
pub fn our_routes(node: &Netns) -> BTreeSet<String> {
    route_lines(&node.ip(&["route", "show", "proto", "217"]).unwrap()).collect()
}

/// `ip route` lines normalised: spaces collapsed, and without the id of a
/// route's nexthop object (`nhid N`: objects are numbered as made).
pub fn route_lines(shown: &str) -> impl Iterator<Item = String> + '_ {
    shown.lines().map(|l| {
        let mut words = Vec::new();
        let mut all = l.split_whitespace();
        while let Some(w) = all.next() {
            match w {
                "nhid" => drop(all.next()),
                w => words.push(w),
            }
        }
        words.join(" ")
    })
}

pub fn wait_routes<S: AsRef<str>>(node: &Netns, want: &[S], daemon: &Daemon) {
    let want: BTreeSet<String> = want.iter().map(|s| s.as_ref().to_string()).collect();
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

/// The metrics text of node `node`'s daemon.
pub fn metrics(node: &Netns) -> String {
    node.http_get("127.0.0.1:9091".parse().unwrap(), "/metrics").unwrap()
}

/// A metric's value (first sample whose line starts with `name`).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

/// Captures packets matching `filter` on `ns`:`ifname` while `during`
/// runs; tshark's lines of `fields` (tab-separated, repeated fields
/// comma-separated: the outer header's value first).
pub fn capture(ns: &Netns, ifname: &str, filter: &str, fields: &[&str], during: impl FnOnce()) -> String {
    let file = ns.dir().join(format!("{ifname}-{}.pcap", filter.replace(' ', "_")));
    let cap = ns
        .spawn(
            &format!("dumpcap-{ifname}"),
            "dumpcap",
            &["-i", ifname, "-f", filter, "-w", file.to_str().unwrap()],
            &[],
        )
        .unwrap();
    wait_until(&format!("dumpcap to capture on {ifname}"), || cap.log().contains("Capturing on"));
    during();
    std::thread::sleep(Duration::from_millis(300));
    drop(cap);
    let mut args = vec!["-r", file.to_str().unwrap(), "-T", "fields"];
    for f in fields {
        args.extend(["-e", f]);
    }
    let out = Command::new("tshark").args(&args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
