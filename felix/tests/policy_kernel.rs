#![allow(clippy::unwrap_used)]
//! Policy compiled and applied to a real kernel: pods in namespaces behind a
//! node namespace, real TCP handshakes and pings decide what passes.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tortie_felix::policy::host::NatOutgoing;
use tortie_felix::policy::ruleset::Element;
use tortie_felix::policy::{Endpoint, HostRules, Inputs, NetworkSet, Policy, Ruleset, apply, compile, nft};
use tortie_lab::tcp::{connects, listen};
use tortie_lab::{Lab, Netns, Pod};
use tortie_store::resources::{Resource, WorkloadEndpointSpec, parse_documents};

/// A node namespace with pods `a`…: 198.18.0.2, .3, … behind `pa`, `pb`, ….
struct Bed {
    lab: Lab,
    node: Netns,
    peer: Netns,
    pods: Vec<Pod>,
}

impl Bed {
    fn new(purpose: &str, pods: usize) -> Bed {
        let lab = Lab::new(purpose).unwrap();
        let node = lab.netns("node").unwrap();
        let peer = lab.netns("peer").unwrap();
        tortie_lab::veth((&node, "eth0"), (&peer, "eth0")).unwrap();
        node.add_addr("eth0", "192.0.2.1/24".parse().unwrap()).unwrap();
        peer.add_addr("eth0", "192.0.2.2/24".parse().unwrap()).unwrap();
        // Proxy ARP answers for 169.254.1.1 only with a default route.
        node.add_route("default via 192.0.2.2").unwrap();
        node.enable_forwarding().unwrap();
        let mut all = vec![];
        for i in 0..pods {
            let name = ((b'a' + i as u8) as char).to_string();
            let addr = Ipv4Addr::new(198, 18, 0, 2 + i as u8);
            let pod = lab.pod(&node, &name, &format!("p{name}"), addr).unwrap();
            node.sysctl(&format!("net.ipv4.conf.p{name}.proxy_arp"), "1").unwrap();
            node.sysctl(&format!("net.ipv4.neigh.p{name}.proxy_delay"), "0").unwrap();
            node.add_route(&format!("{addr}/32 dev p{name}")).unwrap();
            all.push(pod);
        }
        Bed { lab, node, peer, pods: all }
    }

    /// The pods as endpoints, labelled `role=<name>` plus `extra`.
    fn endpoints(&self, extra: &[(&str, &str, &str)]) -> Vec<Endpoint> {
        self.pods
            .iter()
            .map(|p| {
                let name = p.netns.name().rsplit('-').next().unwrap().to_string();
                let mut labels = BTreeMap::from([("role".to_string(), name.clone())]);
                for (who, k, v) in extra {
                    if *who == name {
                        labels.insert(k.to_string(), v.to_string());
                    }
                }
                let spec = WorkloadEndpointSpec {
                    node: "node".into(),
                    interface_name: p.host_if.clone(),
                    ip_networks: vec![format!("{}/32", p.addr).parse().unwrap()],
                    ..Default::default()
                };
                Endpoint::workload("default", &name, &labels, &spec, &BTreeMap::new())
            })
            .collect()
    }

    fn apply(&self, tx: nft::Transaction) {
        self.in_node(|| apply::apply(&tx)).unwrap();
    }

    fn in_node<T: Send>(&self, f: impl AsyncFnOnce() -> T + Send) -> T {
        self.node
            .enter(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f()))
            .unwrap()
    }

    /// The table as `nft list` prints it (for failure messages).
    fn dump(&self) -> String {
        self.node.exec("nft", &["list", "table", "inet", "tortie"]).unwrap_or_else(|e| e.to_string())
    }

    fn tcp(&self, from: usize, to: usize, port: u16) -> bool {
        let to = SocketAddr::from((self.pods[to].addr, port));
        connects(&self.pods[from].netns, to, Duration::from_millis(700)).unwrap()
    }

    fn listen_all(&self, ports: &[u16]) -> Vec<tortie_lab::tcp::Listener> {
        let mut all = vec![];
        for p in &self.pods {
            for port in ports {
                all.push(listen(&p.netns, SocketAddr::from((p.addr, *port))).unwrap());
            }
        }
        all
    }
}

fn policies(yaml: &str) -> Vec<Policy> {
    parse_documents(yaml)
        .unwrap()
        .into_iter()
        .map(|r| match r {
            Resource::NetworkPolicy(o) => {
                Policy::namespaced(o.metadata.namespace.as_deref().unwrap_or("default"), &o.metadata.name, &o.spec)
            }
            Resource::GlobalNetworkPolicy(o) => Policy::global(&o.metadata.name, &o.spec),
            other => panic!("not a policy: {other:?}"),
        })
        .collect::<Result<_, _>>()
        .unwrap()
}

const ORDERED: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: pass-a}
spec:
  order: 5
  selector: role == 'b'
  ingress: [{action: Pass, source: {selector: role == 'a'}}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: deny-c, namespace: default}
spec:
  order: 10
  selector: role == 'b'
  ingress: [{action: Deny, source: {selector: role == 'c'}}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: deny-a, namespace: default}
spec:
  order: 15
  selector: role == 'b'
  ingress: [{action: Deny, source: {selector: role == 'a'}}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-8080, namespace: default}
spec:
  order: 20
  selector: role == 'b'
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [8080]}}]
"#;

#[test]
fn order_deny_allow_and_pass_decide_real_traffic() {
    let bed = Bed::new("pol-order", 4);
    let _listeners = bed.listen_all(&[8080, 9090]);
    let (a, b, c, d) = (0, 1, 2, 3);
    assert!(bed.tcp(c, b, 9090), "before any policy everything connects");
    let rs = compile(&Inputs {
        node: "node",
        endpoints: &bed.endpoints(&[]),
        policies: &policies(ORDERED),
        ..Inputs::default()
    });
    bed.apply(nft::full(&rs));

    assert!(bed.tcp(d, b, 8080), "allow-8080 admits d");
    assert!(!bed.tcp(d, b, 9090), "b is selected: what no rule allows is denied");
    assert!(!bed.tcp(c, b, 8080), "deny-c (order 10) comes before allow-8080 (order 20)");
    assert!(bed.tcp(a, b, 9090), "pass-a skips deny-a and the default deny:\n{}", bed.dump());
    assert!(bed.tcp(b, a, 9090), "a is selected by no policy; b has no egress policy");
    assert!(bed.pods[a].ping(bed.pods[b].addr, 1, "0.2").is_ok(), "ping from a is passed too");
    assert!(bed.pods[d].ping(bed.pods[b].addr, 1, "0.2").is_err(), "ping from d is denied");

    let listing = bed.in_node(apply::list).unwrap().unwrap();
    let counters = apply::counters(&listing);
    let hits = |comment: &str| counters.iter().find(|c| c.comment == comment).map(|c| c.packets).unwrap();
    assert!(hits("default/deny-c ingress[0]") >= 1, "{counters:?}");
    assert!(hits("pass-a ingress[0]") >= 2, "{counters:?}");
    assert_eq!(hits("default/deny-a ingress[0]"), 0, "passed traffic never reaches deny-a: {counters:?}");
}

const FRONT_ONLY: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: front-only, namespace: default}
spec:
  selector: role == 'b'
  ingress: [{action: Allow, protocol: TCP, source: {selector: tier == 'front'}, destination: {ports: ["8000:8100"]}}]
"#;

#[test]
fn a_label_change_moves_only_set_elements_and_the_rule_follows_the_pod() {
    let bed = Bed::new("pol-label", 2);
    let _listeners = bed.listen_all(&[8080]);
    let pols = policies(FRONT_ONLY);
    let before =
        compile(&Inputs { node: "node", endpoints: &bed.endpoints(&[]), policies: &pols, ..Inputs::default() });
    bed.apply(nft::full(&before));
    assert!(!bed.tcp(0, 1, 8080), "a is not tier=front yet");
    let handles = |bed: &Bed| {
        let listing = bed.in_node(apply::list).unwrap().unwrap();
        let rules: Vec<_> = listing["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o.get("rule"))
            .map(|r| (r["chain"].to_string(), r["handle"].as_u64().unwrap()))
            .collect();
        rules
    };
    let rules_before = handles(&bed);

    let after = compile(&Inputs {
        node: "node",
        endpoints: &bed.endpoints(&[("a", "tier", "front")]),
        policies: &pols,
        ..Inputs::default()
    });
    let tx = nft::incremental(&before, &after);
    assert!(nft::elements_only(&tx), "only set elements change: {tx:?}");
    assert_eq!(tx.len(), 1, "one element added: {tx:?}");
    bed.apply(tx);
    assert!(bed.tcp(0, 1, 8080), "a is tier=front now");
    assert_eq!(handles(&bed), rules_before, "no rule was rebuilt");
}

#[test]
fn default_deny_starts_the_moment_a_policy_selects_a_pod_and_ends_with_it() {
    let bed = Bed::new("pol-default", 2);
    let _listeners = bed.listen_all(&[8080]);
    let none = compile(&Inputs { node: "node", endpoints: &bed.endpoints(&[]), policies: &[], ..Inputs::default() });
    bed.apply(nft::full(&none));
    assert!(bed.tcp(0, 1, 8080));
    let selected = policies(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: quiet, namespace: default}\nspec: {selector: role == 'b'}\n",
    );
    let some =
        compile(&Inputs { node: "node", endpoints: &bed.endpoints(&[]), policies: &selected, ..Inputs::default() });
    bed.apply(nft::incremental(&none, &some));
    assert!(!bed.tcp(0, 1, 8080), "selected with no ingress rule: denied");
    assert!(bed.tcp(1, 0, 8080), "the policy has no Egress type: b still connects out");
    bed.apply(nft::incremental(&some, &none));
    assert!(bed.tcp(0, 1, 8080), "policy gone: allowed again");
    let listing = bed.in_node(apply::list).unwrap().unwrap();
    assert!(!listing.to_string().contains("pol-in-default/quiet"), "its chain is gone");
}

const EGRESS: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: out, namespace: default}
spec:
  selector: role == 'b'
  types: [Egress]
  egress:
  - {action: Allow, protocol: TCP, destination: {nets: [198.18.0.0/24], notNets: [198.18.0.4/32], notPorts: [9090]}}
  - {action: Allow, protocol: ICMP, icmp: {type: 8}}
"#;

#[test]
fn egress_rules_match_nets_not_nets_ports_and_icmp() {
    let bed = Bed::new("pol-egress", 3);
    let _listeners = bed.listen_all(&[8080, 9090]);
    bed.apply(nft::full(&compile(&Inputs {
        node: "node",
        endpoints: &bed.endpoints(&[]),
        policies: &policies(EGRESS),
        ..Inputs::default()
    })));
    assert!(bed.tcp(1, 0, 8080), "to a: in nets, not in notNets:\n{}", bed.dump());
    assert!(!bed.tcp(1, 0, 9090), "notPorts");
    assert!(!bed.tcp(1, 2, 8080), "c is in notNets");
    assert!(bed.pods[1].ping(bed.pods[2].addr, 1, "0.2").is_ok(), "echo request allowed");
    assert!(bed.tcp(0, 1, 8080), "ingress to b is not selected");
}

const HOST_DENY_ALL: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: host-deny-all}
spec:
  selector: has(host-endpoint)
  types: [Ingress, Egress]
"#;

#[test]
fn failsafe_ports_stay_open_under_a_deny_all_host_policy() {
    let bed = Bed::new("pol-failsafe", 1);
    let node_addr = |port| SocketAddr::from(([192, 0, 2, 1], port));
    let _l: Vec<_> = [22, 179, 8080].iter().map(|p| listen(&bed.node, node_addr(*p)).unwrap()).collect();
    let hep = parse_documents(
        "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: node-all, labels: {host-endpoint: ''}}\nspec: {node: node, interfaceName: '*'}\n",
    )
    .unwrap();
    let Resource::HostEndpoint(h) = &hep[0] else { panic!() };
    let mut endpoints = bed.endpoints(&[]);
    endpoints.push(Endpoint::host(&h.metadata.name, &h.metadata.labels, &h.spec));
    bed.apply(nft::full(&compile(&Inputs {
        node: "node",
        endpoints: &endpoints,
        policies: &policies(HOST_DENY_ALL),
        ..Inputs::default()
    })));
    let t = Duration::from_millis(700);
    assert!(connects(&bed.peer, node_addr(22), t).unwrap(), "SSH is failsafe");
    assert!(connects(&bed.peer, node_addr(179), t).unwrap(), "BGP is failsafe");
    assert!(!connects(&bed.peer, node_addr(8080), t).unwrap(), "everything else is denied");
    assert!(bed.peer.exec("ping", &["-c", "1", "-W", "1", "192.0.2.1"]).is_err(), "ping is denied");
    let _peer_listener = listen(&bed.peer, SocketAddr::from(([192, 0, 2, 2], 179))).unwrap();
    assert!(connects(&bed.node, SocketAddr::from(([192, 0, 2, 2], 179)), t).unwrap(), "outbound BGP is failsafe");
    assert!(bed.pods[0].ping(Ipv4Addr::new(192, 0, 2, 1), 1, "0.2").is_ok(), "pods still reach the host");
}

#[test]
fn a_table_changed_behind_tortie_is_rebuilt() {
    let bed = Bed::new("pol-repair", 2);
    let _listeners = bed.listen_all(&[8080]);
    let rs: Ruleset = compile(&Inputs {
        node: "node",
        endpoints: &bed.endpoints(&[]),
        policies: &policies(FRONT_ONLY),
        ..Inputs::default()
    });
    let stats = bed.in_node(async || {
        let (tx, rx) = tokio::sync::watch::channel(std::sync::Arc::new(rs));
        let (task, stats, mut first) = apply::spawn(rx, tokio::sync::watch::channel(Duration::from_millis(200)).1);
        // Each apply, check and repair runs an `nft` process: on a loaded
        // machine they take their time, so wait for each step's counter.
        let counted = async |what: &str, counter: &std::sync::atomic::AtomicU64, at_least: u64| {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while counter.load(std::sync::atomic::Ordering::Relaxed) < at_least {
                assert!(tokio::time::Instant::now() < deadline, "no {what} within 20 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        // What `agent::start` waits for before BGP starts: said once the
        // first table is in, not before.
        tokio::time::timeout(Duration::from_secs(20), first.wait_for(|done| *done)).await.unwrap().unwrap();
        assert_eq!(stats.full.load(std::sync::atomic::Ordering::Relaxed), 1, "the first table applied");
        counted("first full apply", &stats.full, 1).await;
        // Someone flushes our endpoint chain: b's default deny is gone.
        let out = tokio::process::Command::new("nft")
            .args(["flush", "chain", "inet", "tortie", "wl-in-pb"])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "nft flush: {}", String::from_utf8_lossy(&out.stderr));
        counted("repair", &stats.repairs, 1).await;
        counted("rebuild", &stats.full, 2).await;
        // Another check or two: the repaired table is not repaired again.
        tokio::time::sleep(Duration::from_millis(500)).await;
        task.abort();
        drop(tx);
        stats
    });
    assert_eq!(stats.repairs.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(stats.full.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    assert!(!bed.tcp(0, 1, 8080), "default deny is back");
    drop(bed.lab);
}

/// The node's routes to the peer network and an "outside" address there
/// (203.0.113.10, on the peer, which has no route back to the pods).
fn outside(bed: &Bed) -> SocketAddr {
    bed.peer.add_addr("eth0", "203.0.113.10/32".parse().unwrap()).unwrap();
    SocketAddr::from(([203, 0, 113, 10], 8080))
}

/// The sources `l` has seen once it has accepted `n` connections.
fn seen(l: &tortie_lab::tcp::Listener, n: usize) -> Vec<std::net::IpAddr> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while l.sources().len() < n && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    l.sources()
}

fn with_nat(bed: &Bed, masquerade: &[&str], address: Option<&str>) -> Ruleset {
    let host = HostRules {
        nat: NatOutgoing {
            pools: vec!["198.18.0.0/24".parse().unwrap(), "198.19.0.0/24".parse().unwrap()],
            masquerade: masquerade.iter().map(|n| n.parse().unwrap()).collect(),
            address: address.map(|a| a.parse().unwrap()),
        },
        ..HostRules::default()
    };
    compile(&Inputs { node: "node", endpoints: &bed.endpoints(&[]), host, ..Inputs::default() })
}

#[test]
fn nat_outgoing_translates_only_pod_traffic_that_leaves_every_pool() {
    let bed = Bed::new("pol-nat", 2);
    let to = outside(&bed);
    let far = listen(&bed.peer, to).unwrap();
    let near = listen(&bed.pods[1].netns, SocketAddr::from((bed.pods[1].addr, 8080))).unwrap();
    let t = Duration::from_millis(700);
    bed.apply(nft::full(&with_nat(&bed, &[], None)));
    assert!(!connects(&bed.pods[0].netns, to, t).unwrap(), "no natOutgoing: the outside cannot answer a pod");

    let on = with_nat(&bed, &["198.18.0.0/24"], None);
    bed.apply(nft::full(&on));
    assert!(connects(&bed.pods[0].netns, to, t).unwrap(), "natOutgoing on:\n{}", bed.dump());
    assert_eq!(seen(&far, 1), ["192.0.2.1".parse::<std::net::IpAddr>().unwrap()], "masqueraded to the node's address");
    assert!(bed.tcp(0, 1, 8080));
    assert_eq!(seen(&near, 1), [std::net::IpAddr::from(bed.pods[0].addr)], "pod to pod is never translated");

    // natOutgoingAddress: that source instead of the interface's.
    bed.node.add_addr("eth0", "192.0.2.9/24".parse().unwrap()).unwrap();
    let fixed = with_nat(&bed, &["198.18.0.0/24"], Some("192.0.2.9"));
    bed.apply(nft::incremental(&on, &fixed));
    assert!(connects(&bed.pods[0].netns, to, t).unwrap());
    assert_eq!(seen(&far, 2).last(), Some(&"192.0.2.9".parse().unwrap()), "natOutgoingAddress is the source");

    // Turned off live: the next connection is not translated.
    let off = with_nat(&bed, &[], None);
    bed.apply(nft::incremental(&fixed, &off));
    assert!(!connects(&bed.pods[0].netns, to, t).unwrap(), "natOutgoing off again:\n{}", bed.dump());
}

const DENY_BAD_ACTORS: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-bad-actors}
spec:
  order: 10
  selector: all()
  ingress:
  - {action: Deny, source: {selector: role == 'bad-actors'}}
  - {action: Allow}
"#;

/// A pod listening on 8080 that the peer (192.0.2.2) can reach.
fn bad_actors_bed(purpose: &str) -> (Bed, Vec<tortie_lab::tcp::Listener>, SocketAddr) {
    let bed = Bed::new(purpose, 1);
    bed.peer.add_route("198.18.0.0/24 via 192.0.2.1").unwrap();
    let listeners = bed.listen_all(&[8080]);
    let pod = SocketAddr::from((bed.pods[0].addr, 8080));
    (bed, listeners, pod)
}

/// The table with DENY_BAD_ACTORS and one global set `bad` of `nets`.
fn bad_actors(bed: &Bed, nets: &[&str]) -> Ruleset {
    let labels = BTreeMap::from([("role".to_string(), "bad-actors".to_string())]);
    let nets: Vec<ipnet::IpNet> = nets.iter().map(|n| n.parse().unwrap()).collect();
    let set = NetworkSet::new(None, "bad", &labels, &nets, &BTreeMap::new());
    let (eps, pols) = (bed.endpoints(&[]), policies(DENY_BAD_ACTORS));
    compile(&Inputs { node: "node", endpoints: &eps, network_sets: &[set], policies: &pols, ..Inputs::default() })
}

#[test]
fn a_global_network_set_denies_its_nets_and_changes_as_set_elements_only() {
    let (bed, _l, pod) = bad_actors_bed("pol-netset");
    let t = Duration::from_millis(700);
    let table = |nets: &[&str]| bad_actors(&bed, nets);
    let elsewhere = table(&["203.0.113.0/24"]);
    bed.apply(nft::full(&elsewhere));
    assert!(connects(&bed.peer, pod, t).unwrap(), "the peer is not a bad actor yet:\n{}", bed.dump());

    let handles = || {
        let listing =
            bed.node.exec("nft", &["-a", "list", "chain", "inet", "tortie", "pol-in-deny-bad-actors"]).unwrap();
        listing.lines().filter_map(|l| l.split_once("# handle ").map(|(_, h)| h.to_string())).collect::<Vec<_>>()
    };
    let before = handles();
    let listed = table(&["203.0.113.0/24", "192.0.2.0/28"]);
    let tx = nft::incremental(&elsewhere, &listed);
    assert!(nft::elements_only(&tx), "a net added is a set-element update: {tx:?}");
    bed.apply(tx);
    assert!(!connects(&bed.peer, pod, t).unwrap(), "192.0.2.2 is in the set now:\n{}", bed.dump());

    // A wider net replaces the narrower one it covers, in one transaction.
    let wider = table(&["192.0.2.0/24", "192.0.2.0/28", "203.0.113.0/24"]);
    assert_eq!(
        wider
            .sets
            .values()
            .find(|s| s.elements.contains(&Element::Net("192.0.2.0/24".parse().unwrap())))
            .unwrap()
            .elements
            .len(),
        2
    );
    bed.apply(nft::incremental(&listed, &wider));
    assert!(!connects(&bed.peer, pod, t).unwrap());
    bed.apply(nft::incremental(&wider, &elsewhere));
    assert!(connects(&bed.peer, pod, t).unwrap(), "removed from the set: allowed again");
    assert_eq!(handles(), before, "no rule was rewritten");
}

#[test]
fn set_elements_written_over_netlink_block_at_once_and_list_as_compiled() {
    let (bed, _l, pod) = bad_actors_bed("pol-nfnl");
    let t = Duration::from_millis(700);
    let table = |nets: &[&str]| std::sync::Arc::new(bad_actors(&bed, nets));
    let (tx, rx) = tokio::sync::watch::channel(table(&["203.0.113.0/24"]));
    let check = tokio::sync::watch::channel(Duration::from_millis(200)).1;
    let (stats, runtime) = bed
        .node
        .enter(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let stats = rt.block_on(async { apply::spawn(rx, check).1 });
            (stats, rt)
        })
        .unwrap();
    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let turn = |millis: u64| {
        bed.node.enter(|| runtime.block_on(async { tokio::time::sleep(Duration::from_millis(millis)).await })).unwrap()
    };
    turn(300);
    assert_eq!(count(&stats.full), 1);
    assert!(connects(&bed.peer, pod, t).unwrap());

    // Adjacent to what is there, then a wider net over a narrower one, then back.
    for (nets, blocked) in [
        (&["203.0.113.0/24", "192.0.2.0/31", "192.0.2.2/31"][..], true),
        (&["203.0.113.0/24", "192.0.2.0/24"][..], true),
        (&["203.0.113.0/24"][..], false),
    ] {
        let before = count(&stats.elements_only);
        tx.send(table(nets)).unwrap();
        turn(100);
        assert_eq!(count(&stats.elements_only), before + 1, "{nets:?}: one elements-only update");
        assert_eq!(count(&stats.netlink_writes), before + 1, "{nets:?}: written over netlink, not by nft");
        assert_eq!(connects(&bed.peer, pod, t).unwrap(), !blocked, "{nets:?}:\n{}", bed.dump());
    }
    // The periodic check lists the table: what netlink wrote reads back as compiled.
    turn(700);
    assert_eq!(count(&stats.repairs), 0, "no repair: the listing matches:\n{}", bed.dump());
    assert_eq!(count(&stats.full), 1, "never rebuilt");
    assert_eq!(count(&stats.failures), 0);
}

const FORWARD_POLICY: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: edge}
spec:
  selector: has(host-endpoint)
  applyOnForward: FORWARD
  types: [Ingress, Egress]
  ingress:
  - {action: Deny, protocol: TCP, destination: {ports: [8080]}}
  - {action: Allow}
  egress:
  - {action: Deny, protocol: TCP, destination: {ports: [7070]}}
  - {action: Allow}
"#;

#[test]
fn apply_on_forward_polices_what_a_host_endpoint_forwards_and_only_then() {
    let bed = Bed::new("pol-forward", 1);
    bed.peer.add_route("198.18.0.0/24 via 192.0.2.1").unwrap();
    let _pod_listeners = bed.listen_all(&[8080, 9090]);
    let _peer_listeners: Vec<_> =
        [7070, 7071].iter().map(|p| listen(&bed.peer, SocketAddr::from(([192, 0, 2, 2], *p))).unwrap()).collect();
    let _node_listener = listen(&bed.node, SocketAddr::from(([192, 0, 2, 1], 8080))).unwrap();
    let hep = parse_documents(
        "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: node-eth0, labels: {host-endpoint: ''}}\nspec: {node: node, interfaceName: eth0}\n",
    )
    .unwrap();
    let Resource::HostEndpoint(h) = &hep[0] else { panic!() };
    let mut endpoints = bed.endpoints(&[]);
    endpoints.push(Endpoint::host(&h.metadata.name, &h.metadata.labels, &h.spec));
    let t = Duration::from_millis(700);
    let pod = |port: u16| SocketAddr::from((bed.pods[0].addr, port));
    let peer = |port: u16| SocketAddr::from(([192, 0, 2, 2], port));
    for forward in [false, true] {
        let pols = policies(&FORWARD_POLICY.replace("FORWARD", &forward.to_string()));
        bed.apply(nft::full(&compile(&Inputs {
            node: "node",
            endpoints: &endpoints,
            policies: &pols,
            ..Inputs::default()
        })));
        assert!(
            !connects(&bed.peer, SocketAddr::from(([192, 0, 2, 1], 8080)), t).unwrap(),
            "the host's own 8080 is denied"
        );
        assert_eq!(
            connects(&bed.peer, pod(8080), t).unwrap(),
            !forward,
            "forwarded in to 8080 (applyOnForward {forward})"
        );
        assert!(connects(&bed.peer, pod(9090), t).unwrap(), "forwarded in, allowed");
        assert_eq!(
            connects(&bed.pods[0].netns, peer(7070), t).unwrap(),
            !forward,
            "forwarded out to 7070 (applyOnForward {forward}):\n{}",
            bed.dump()
        );
        assert!(connects(&bed.pods[0].netns, peer(7071), t).unwrap(), "forwarded out, allowed");
    }
}
