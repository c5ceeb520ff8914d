//! `tortie-cni` as a runtime calls it: a process per command, the network
//! configuration on stdin, `CNI_*` in the environment, inside the node's
//! namespace, against a real kernel and the embedded datastore.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tortie_ipam as ipam;
use tortie_lab::{Lab, Netns};
use tortie_store::Datastore;
use tortie_store::api;
use tortie_store::resources::{Kind, parse_documents};

struct Setup {
    lab: Lab,
    url: String,
}

impl Setup {
    fn new(purpose: &str, pool: Option<&str>) -> Setup {
        let lab = Lab::new(purpose).unwrap();
        let url = format!("sqlite://{}/store.db", lab.dir().display());
        let s = Setup { lab, url };
        if let Some(yaml) = pool {
            s.apply(yaml);
        }
        s
    }

    fn apply(&self, yaml: &str) {
        block_on(async {
            let kv = Datastore::open(&self.url).await.unwrap();
            api::apply(&kv, &parse_documents(yaml).unwrap()).await.unwrap();
        });
    }

    fn conf(&self, node: &str) -> Value {
        json!({"cniVersion": "1.1.0", "name": "k8s-pod-network", "type": "tortie-cni",
               "datastore": self.url, "nodename": node, "mtu": 1400})
    }
}

fn pool(cidr: &str, block: u8) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: pool}}\nspec: {{cidr: {cidr}, blockSize: {block}}}\n"
    )
}

fn block_on<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// Runs the plugin in `node`'s namespace.
fn cni(node: &Netns, command: &str, container: &str, netns: Option<&Netns>, stdin: &str) -> (i32, String) {
    let child = spawn_cni(node, command, container, netns.map(|n| format!("/run/netns/{}", n.name())), stdin);
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap())
}

fn spawn_cni(node: &Netns, command: &str, container: &str, netns: Option<String>, stdin: &str) -> std::process::Child {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", node.name(), env!("CARGO_BIN_EXE_tortie-cni")])
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/opt/cni/bin")
        .env_remove("CNI_NETNS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(ns) = netns {
        c.env("CNI_NETNS", ns);
    }
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child
}

fn ok(r: (i32, String)) -> Value {
    assert_eq!(r.0, 0, "plugin failed: {}", r.1);
    if r.1.trim().is_empty() { Value::Null } else { serde_json::from_str(&r.1).unwrap() }
}

fn err(r: (i32, String)) -> (u64, String) {
    assert_eq!(r.0, 1, "plugin should fail: {}", r.1);
    let v: Value = serde_json::from_str(&r.1).unwrap();
    (v["code"].as_u64().unwrap(), v["msg"].as_str().unwrap().to_string())
}

fn allocated(url: &str) -> Vec<(String, String)> {
    block_on(async {
        let kv = Datastore::open(url).await.unwrap();
        let mut out = Vec::new();
        for b in ipam::blocks(&kv).await.unwrap() {
            for (ip, a) in ipam::block::allocated(&b.block) {
                out.push((ip.to_string(), a.handle_id.clone().unwrap_or_default()));
            }
        }
        out
    })
}

fn endpoints(url: &str) -> usize {
    block_on(async {
        let kv = Datastore::open(url).await.unwrap();
        api::list(&kv, Kind::WorkloadEndpoint, None).await.unwrap().len()
    })
}

#[test]
fn add_plumbs_the_pod_check_confirms_it_and_del_undoes_everything() {
    let s = Setup::new("cni-add", Some(&pool("198.18.0.0/16", 26)));
    let node = s.lab.netns("node").unwrap();
    let pod = s.lab.netns("pod").unwrap();
    let conf = s.conf("n1");
    let result = ok(cni(&node, "ADD", "c0ffee", Some(&pod), &conf.to_string()));

    assert_eq!(result["cniVersion"], "1.1.0");
    assert_eq!(result["ips"][0]["address"], "198.18.0.0/32");
    assert_eq!(result["routes"][0], json!({"dst": "0.0.0.0/0", "gw": "169.254.1.1"}));
    let host_if = result["interfaces"][0]["name"].as_str().unwrap().to_string();
    assert!(host_if.starts_with("tortie") && host_if.len() == 15, "{host_if}");
    assert_eq!(result["interfaces"][0]["mac"], "ee:ee:ee:ee:ee:ee");
    assert_eq!(result["interfaces"][1]["sandbox"], format!("/run/netns/{}", pod.name()));

    let link = node.ip(&["-d", "link", "show", &host_if]).unwrap();
    assert!(link.contains("ee:ee:ee:ee:ee:ee") && link.contains("mtu 1400") && link.contains("state UP"), "{link}");
    let addr = pod.ip(&["addr", "show", "eth0"]).unwrap();
    assert!(addr.contains("inet 198.18.0.0/32") && addr.contains("mtu 1400"), "{addr}");
    let routes = pod.ip(&["route", "show"]).unwrap();
    assert!(routes.contains("default via 169.254.1.1 dev eth0"), "{routes}");
    assert!(routes.contains("169.254.1.1 dev eth0 scope link"), "{routes}");
    assert_eq!(allocated(&s.url), [("198.18.0.0".to_string(), "k8s-pod-network.c0ffee".to_string())]);
    assert_eq!(endpoints(&s.url), 1);

    let mut with_prev = conf.clone();
    with_prev["prevResult"] = result.clone();
    ok(cni(&node, "CHECK", "c0ffee", Some(&pod), &with_prev.to_string()));
    // CHECK notices a pod whose default route went missing.
    pod.ip(&["route", "del", "default"]).unwrap();
    let (code, _) = err(cni(&node, "CHECK", "c0ffee", Some(&pod), &with_prev.to_string()));
    assert_eq!(code, 103);

    ok(cni(&node, "DEL", "c0ffee", Some(&pod), &with_prev.to_string()));
    assert!(node.ip(&["link", "show", &host_if]).is_err(), "host veth removed");
    assert!(allocated(&s.url).is_empty());
    assert_eq!(endpoints(&s.url), 0);
    // DEL is idempotent, also without a namespace.
    ok(cni(&node, "DEL", "c0ffee", Some(&pod), &conf.to_string()));
    ok(cni(&node, "DEL", "c0ffee", None, &conf.to_string()));
}

#[test]
fn a_dual_stack_pod_gets_an_address_of_each_family_and_reaches_through_its_host_over_ipv6() {
    let s = Setup::new("cni-dual", Some(&pool("198.18.0.0/16", 26)));
    s.apply(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: v6}\nspec: {cidr: '2001:db8:100::/48'}\n",
    );
    let node = s.lab.netns("node").unwrap();
    let pods = [s.lab.netns("a").unwrap(), s.lab.netns("b").unwrap()];
    let mut conf = s.conf("n1");
    conf["ipam"] = json!({"type": "calico-ipam", "assign_ipv4": "true", "assign_ipv6": "true"});
    let results: Vec<Value> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| ok(cni(&node, "ADD", &format!("pod{i}"), Some(pod), &conf.to_string())))
        .collect();
    let r = &results[0];
    assert_eq!(r["ips"][0], json!({"address": "198.18.0.0/32", "gateway": "169.254.1.1", "interface": 1}));
    assert_eq!(
        r["ips"][1],
        json!({"address": "2001:db8:100::/128", "gateway": "fe80::ecee:eeff:feee:eeee", "interface": 1})
    );
    assert_eq!(r["routes"][1], json!({"dst": "::/0", "gw": "fe80::ecee:eeff:feee:eeee"}));
    let addr = pods[0].ip(&["-6", "addr", "show", "eth0"]).unwrap();
    assert!(addr.contains("inet6 2001:db8:100::/128") && !addr.contains("tentative"), "{addr}");
    assert_eq!(addr.matches("inet6 ").count(), 2, "its /128 and our link-local, none of the kernel's: {addr}");
    let routes = pods[0].ip(&["-6", "route", "show"]).unwrap();
    assert!(routes.contains("default via fe80::ecee:eeff:feee:eeee dev eth0"), "{routes}");
    let host_if = |r: &Value| r["interfaces"][0]["name"].as_str().unwrap().to_string();
    let host = node.ip(&["-6", "addr", "show", &host_if(r)]).unwrap();
    assert!(host.contains("inet6 fe80::ecee:eeff:feee:eeee/64 scope link") && !host.contains("tentative"), "{host}");
    assert_eq!(host.matches("inet6 ").count(), 1, "{host}");
    assert_eq!(endpoints(&s.url), 2);
    // Through the host (felix's /128 routes and forwarding, here by hand): pod a reaches pod b.
    node.exec("sysctl", &["-q", "-w", "net.ipv6.conf.all.forwarding=1"]).unwrap();
    for (i, r) in results.iter().enumerate() {
        node.ip(&["-6", "route", "add", &format!("2001:db8:100::{i}/128"), "dev", &host_if(r)]).unwrap();
    }
    let ping = pods[0].exec("ping", &["-6", "-n", "-c", "2", "-i", "0.2", "-W", "2", "2001:db8:100::1"]).unwrap();
    assert!(ping.contains(" 0% packet loss"), "{ping}");

    let mut with_prev = conf.clone();
    with_prev["prevResult"] = r.clone();
    ok(cni(&node, "CHECK", "pod0", Some(&pods[0]), &with_prev.to_string()));
    pods[0].ip(&["-6", "route", "del", "default"]).unwrap();
    let (code, _) = err(cni(&node, "CHECK", "pod0", Some(&pods[0]), &with_prev.to_string()));
    assert_eq!(code, 103, "a missing IPv6 default route is noticed");
    for (i, pod) in pods.iter().enumerate() {
        ok(cni(&node, "DEL", &format!("pod{i}"), Some(pod), &conf.to_string()));
    }
    assert!(allocated(&s.url).is_empty(), "both families freed: {:?}", allocated(&s.url));
    assert_eq!(endpoints(&s.url), 0);
}

#[test]
fn bad_input_gets_the_spec_error_code_and_writes_nothing() {
    let s = Setup::new("cni-errors", None);
    let node = s.lab.netns("node").unwrap();
    let pod = s.lab.netns("pod").unwrap();
    let conf = s.conf("n1");

    let (code, msg) = err(cni(&node, "ADD", "c1", Some(&pod), "{ not json"));
    assert_eq!(code, 4, "{msg}");
    let mut old = conf.clone();
    old["cniVersion"] = json!("0.3.1");
    let (code, msg) = err(cni(&node, "ADD", "c1", Some(&pod), &old.to_string()));
    assert_eq!(code, 1, "{msg}");
    let (code, msg) = err(cni(&node, "ADD", "c1", None, &conf.to_string()));
    assert_eq!(code, 7, "{msg}");
    assert!(msg.contains("CNI_NETNS"));
    // STATUS: not ready without a pool.
    let (code, msg) = err(cni(&node, "STATUS", "", None, &conf.to_string()));
    assert_eq!(code, 50, "{msg}");
    let (code, msg) = err(cni(&node, "ADD", "c1", Some(&pod), &conf.to_string()));
    assert_eq!(code, 100, "{msg}");
    assert!(msg.contains("IPPool"), "{msg}");

    // A pool of one /31 block: two pods fit, the third is refused and leaves no trace.
    s.apply(&pool("198.18.0.0/31", 31));
    ok(cni(&node, "STATUS", "", None, &conf.to_string()));
    let pods: Vec<Netns> = (0..3).map(|i| s.lab.netns(&format!("p{i}")).unwrap()).collect();
    ok(cni(&node, "ADD", "c1", Some(&pods[0]), &conf.to_string()));
    ok(cni(&node, "ADD", "c2", Some(&pods[1]), &conf.to_string()));
    let (code, msg) = err(cni(&node, "ADD", "c3", Some(&pods[2]), &conf.to_string()));
    assert_eq!(code, 100, "{msg}");
    assert!(msg.contains("n1") && msg.contains("full"), "{msg}");
    assert_eq!(allocated(&s.url).len(), 2);
    assert_eq!(endpoints(&s.url), 2);
    assert!(pods[2].ip(&["link", "show", "eth0"]).is_err(), "no interface left in the refused pod");
    // A namespace that does not exist: code 7, nothing allocated.
    let gone = spawn_cni(&node, "ADD", "c4", Some("/run/netns/does-not-exist".into()), &conf.to_string());
    let out = gone.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["code"] == 7 || v["code"] == 100, "{v}");
    assert_eq!(allocated(&s.url).len(), 2);
    // Dual stack with no IPv6 pool: refused whole, no IPv4 address taken either.
    s.apply(&pool("198.18.1.0/24", 26));
    let mut dual = conf.clone();
    dual["ipam"] = json!({"type": "calico-ipam", "assign_ipv4": "true", "assign_ipv6": "true"});
    let (code, msg) = err(cni(&node, "ADD", "c5", Some(&pods[2]), &dual.to_string()));
    assert_eq!(code, 100, "{msg}");
    assert!(msg.contains("IPv6"), "{msg}");
    assert_eq!(allocated(&s.url).len(), 2, "the IPv4 address was not kept");
    assert_eq!(endpoints(&s.url), 2);
}

/// Starts `count` ADDs at once on `node` (one process each), pods named `tag-i`.
/// `count` ADDs at once on `node` with `conf`: the pods and each one's addresses.
fn concurrent_adds(s: &Setup, node: &Netns, conf: &Value, tag: &str, count: usize) -> (Vec<Netns>, Vec<Vec<String>>) {
    let pods: Vec<Netns> = (0..count).map(|i| s.lab.netns(&format!("{tag}{i}")).unwrap()).collect();
    let conf = conf.to_string();
    let children: Vec<_> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| spawn_cni(node, "ADD", &format!("{tag}-{i}"), Some(format!("/run/netns/{}", p.name())), &conf))
        .collect();
    let addrs = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            let v = ok((out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap()));
            v["ips"].as_array().unwrap().iter().map(|ip| ip["address"].as_str().unwrap().to_string()).collect()
        })
        .collect();
    (pods, addrs)
}

#[test]
fn concurrent_adds_on_one_and_two_nodes_never_share_an_address_and_del_frees_all() {
    let s = Setup::new("cni-race", Some(&pool("198.18.0.0/16", 26)));
    let n1 = s.lab.netns("n1").unwrap();
    let n2 = s.lab.netns("n2").unwrap();
    let (_p, one) = concurrent_adds(&s, &n1, &s.conf("n1"), "a", 100);
    let one: Vec<String> = one.concat();
    let unique: HashSet<&String> = one.iter().collect();
    assert_eq!(unique.len(), 100, "duplicate addresses: {one:?}");

    let ((_q, two_a), (_r, two_b)) = std::thread::scope(|t| {
        let a = t.spawn(|| concurrent_adds(&s, &n1, &s.conf("n1"), "b", 50));
        let b = t.spawn(|| concurrent_adds(&s, &n2, &s.conf("n2"), "c", 50));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (two_a, two_b) = (two_a.concat(), two_b.concat());
    let all: HashSet<&String> = one.iter().chain(&two_a).chain(&two_b).collect();
    assert_eq!(all.len(), 200, "duplicate addresses across nodes");
    assert_eq!(allocated(&s.url).len(), 200);
    assert_eq!(endpoints(&s.url), 200);

    let conf = s.conf("n1").to_string();
    let dels: Vec<_> = (0..100)
        .map(|i| spawn_cni(&n1, "DEL", &format!("a-{i}"), None, &conf))
        .chain((0..50).map(|i| spawn_cni(&n1, "DEL", &format!("b-{i}"), None, &conf)))
        .chain((0..50).map(|i| spawn_cni(&n2, "DEL", &format!("c-{i}"), None, &s.conf("n2").to_string())))
        .collect();
    for d in dels {
        assert!(d.wait_with_output().unwrap().status.success());
    }
    assert!(allocated(&s.url).is_empty(), "every address freed");
    assert_eq!(endpoints(&s.url), 0);
}

#[test]
fn concurrent_dual_stack_adds_never_share_an_address_in_either_family_and_del_frees_both() {
    let s = Setup::new("cni-race6", Some(&pool("198.18.0.0/16", 26)));
    s.apply(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: v6}\nspec: {cidr: '2001:db8:100::/48'}\n",
    );
    let n1 = s.lab.netns("n1").unwrap();
    let mut conf = s.conf("n1");
    conf["ipam"] = json!({"assign_ipv4": "true", "assign_ipv6": "true"});
    let (_p, addrs) = concurrent_adds(&s, &n1, &conf, "d", 100);
    assert!(addrs.iter().all(|a| a.len() == 2), "an address of each family each: {addrs:?}");
    for family in 0..2 {
        let unique: HashSet<&String> = addrs.iter().map(|a| &a[family]).collect();
        assert_eq!(unique.len(), 100, "duplicate addresses: {addrs:?}");
    }
    assert_eq!(allocated(&s.url).len(), 200);
    let dels: Vec<_> = (0..100).map(|i| spawn_cni(&n1, "DEL", &format!("d-{i}"), None, &conf.to_string())).collect();
    for d in dels {
        assert!(d.wait_with_output().unwrap().status.success());
    }
    assert!(allocated(&s.url).is_empty(), "both families freed");
    assert_eq!(endpoints(&s.url), 0);
}

#[test]
fn gc_after_adds_killed_midway_leaves_nothing_behind() {
    let s = Setup::new("cni-gc", Some(&pool("198.18.0.0/16", 26)));
    let node = s.lab.netns("node").unwrap();
    let conf = s.conf("n1");
    let keep = s.lab.netns("keep").unwrap();
    let kept = ok(cni(&node, "ADD", "keep", Some(&keep), &conf.to_string()));
    // SIGKILL ADDs at different moments, so some die before, some during, some after each step.
    for i in 0..12 {
        let pod = s.lab.netns(&format!("k{i}")).unwrap();
        let mut child = spawn_cni(
            &node,
            "ADD",
            &format!("killed-{i}"),
            Some(format!("/run/netns/{}", pod.name())),
            &conf.to_string(),
        );
        std::thread::sleep(Duration::from_millis(3 * i));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    ok(cni(&node, "GC", "", None, &gc.to_string()));
    let kept_ip = kept["ips"][0]["address"].as_str().unwrap().trim_end_matches("/32").to_string();
    assert_eq!(allocated(&s.url), [(kept_ip, "k8s-pod-network.keep".to_string())]);
    assert_eq!(endpoints(&s.url), 1);
    let links = node.ip(&["-o", "link", "show"]).unwrap();
    let host_ifs: Vec<&str> = links.lines().filter(|l| l.contains(": tortie")).collect();
    assert_eq!(host_ifs.len(), 1, "only the kept pod's veth is left: {links}");
}
