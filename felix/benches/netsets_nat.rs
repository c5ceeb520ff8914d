//! Network sets and natOutgoing at scale, side by side in one run:
//! 1,000 GlobalNetworkSets × 100 nets behind one deny policy — compile, the
//! first full nftables apply, and one net added (compile + diff + apply);
//! then iperf3 TCP from a pod to a host outside the pools, with natOutgoing
//! (masquerade) and without it (a route back instead), on the same path.
//!
//! Run: `cargo bench -p tortie-felix --bench netsets_nat` (root; nftables and iperf3 installed).

#![allow(clippy::unwrap_used)] // a benchmark: a failure aborts the run

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tortie_felix::policy::host::NatOutgoing;
use tortie_felix::policy::ruleset::TABLE;
use tortie_felix::policy::{Endpoint, HostRules, Inputs, NetworkSet, Policy, apply, compile, nfnl, nft};
use tortie_lab::{Lab, Netns, Pod};
use tortie_store::resources::{Resource, WorkloadEndpointSpec, parse_documents};

const SETS: usize = 1000;
const NETS: usize = 100;

fn in_ns<T: Send>(ns: &Netns, f: impl AsyncFnOnce() -> T + Send) -> T {
    ns.enter(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f())).unwrap()
}

/// Set `s`: 100 /28s from 240.0.0.0/4 (rule data only, never traffic).
fn network_sets(extra: Option<IpNet>) -> Vec<NetworkSet> {
    let labels = BTreeMap::from([("role".to_string(), "bad-actors".to_string())]);
    (0..SETS)
        .map(|s| {
            let mut nets: Vec<IpNet> = (0..NETS)
                .map(|n| {
                    let base = u32::from(Ipv4Addr::new(240, 0, 0, 0)) + ((s * NETS + n) as u32) * 16;
                    IpNet::new(Ipv4Addr::from(base).into(), 28).unwrap()
                })
                .collect();
            if s == SETS / 2 {
                nets.extend(extra);
            }
            NetworkSet::new(None, &format!("bad{s}"), &labels, &nets, &BTreeMap::new())
        })
        .collect()
}

fn deny_policy() -> Vec<Policy> {
    let yaml = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: deny-bad-actors}\nspec:\n  selector: all()\n  ingress: [{action: Deny, source: {selector: role == 'bad-actors'}}, {action: Allow}]\n";
    match parse_documents(yaml).unwrap().remove(0) {
        Resource::GlobalNetworkPolicy(o) => vec![Policy::global(&o.metadata.name, &o.spec).unwrap()],
        _ => unreachable!(),
    }
}

fn pod_endpoint(p: &Pod) -> Endpoint {
    let spec = WorkloadEndpointSpec {
        node: "node".into(),
        interface_name: p.host_if.clone(),
        ip_networks: vec![format!("{}/32", p.addr).parse().unwrap()],
        ..Default::default()
    };
    Endpoint::workload("default", "a", &BTreeMap::new(), &spec, &BTreeMap::new())
}

/// iperf3 TCP from the pod to 192.0.2.2 (the peer) for 3 s, Gbit/s.
fn iperf_gbps(pod: &Pod, peer: &Netns) -> f64 {
    let server = peer.spawn("iperf3-s", "iperf3", &["-s", "-1", "-B", "192.0.2.2"], &[]).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let out = pod.netns.exec("iperf3", &["-c", "192.0.2.2", "-t", "3", "-J"]).unwrap();
    drop(server);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap() / 1e9
}

fn main() {
    let lab = Lab::new("bench-netsets").unwrap();
    let node = lab.netns("node").unwrap();
    let peer = lab.netns("peer").unwrap();
    tortie_lab::veth((&node, "eth0"), (&peer, "eth0")).unwrap();
    node.add_addr("eth0", "192.0.2.1/24".parse().unwrap()).unwrap();
    peer.add_addr("eth0", "192.0.2.2/24".parse().unwrap()).unwrap();
    node.add_route("default via 192.0.2.2").unwrap();
    node.enable_forwarding().unwrap();
    let pod = lab.pod(&node, "a", "pa", Ipv4Addr::new(198, 18, 0, 2)).unwrap();
    node.sysctl("net.ipv4.conf.pa.proxy_arp", "1").unwrap();
    node.sysctl("net.ipv4.neigh.pa.proxy_delay", "0").unwrap();
    node.add_route("198.18.0.2/32 dev pa").unwrap();
    let eps = vec![pod_endpoint(&pod)];
    let pols = deny_policy();

    let sets = network_sets(None);
    let t = Instant::now();
    let rs =
        compile(&Inputs { node: "node", endpoints: &eps, network_sets: &sets, policies: &pols, ..Inputs::default() });
    let compile_time = t.elapsed();
    let elements: usize = rs.sets.values().map(|s| s.elements.len()).sum();
    let t = Instant::now();
    let full = nft::full(&rs);
    let json = t.elapsed();
    in_ns(&node, async || apply::apply(&full).await.unwrap());
    let first = t.elapsed();
    let grown = network_sets(Some("241.0.0.0/28".parse().unwrap()));
    let t = Instant::now();
    let rs2 =
        compile(&Inputs { node: "node", endpoints: &eps, network_sets: &grown, policies: &pols, ..Inputs::default() });
    // What the daemon does: an elements-only change goes straight to nf_tables.
    let deltas = nft::set_deltas(&rs, &rs2).unwrap();
    node.enter(|| nfnl::apply(TABLE, &deltas)).unwrap().unwrap();
    let one_net = t.elapsed();
    assert_eq!(deltas.iter().map(|d| d.add.len() + d.remove.len()).sum::<usize>(), 1, "one net added: {deltas:?}");
    // The same change through nft, for comparison.
    let grown_again = network_sets(Some("241.0.0.16/28".parse().unwrap()));
    let rs3 = compile(&Inputs {
        node: "node",
        endpoints: &eps,
        network_sets: &grown_again,
        policies: &pols,
        ..Inputs::default()
    });
    let t = Instant::now();
    in_ns(&node, async || apply::apply(&nft::incremental(&rs2, &rs3)).await.unwrap());
    let through_nft = t.elapsed();
    println!("network sets: {SETS} GlobalNetworkSets x {NETS} nets, one deny policy ({elements} set elements)");
    println!("  compile                              {:>8.1} ms", compile_time.as_secs_f64() * 1e3);
    println!(
        "  compile + first full apply           {:>8.1} ms (of which the JSON {:.1} ms)",
        (compile_time + first).as_secs_f64() * 1e3,
        json.as_secs_f64() * 1e3
    );
    println!(
        "  one net added: compile + diff + apply {:>7.1} ms (over netlink, as the daemon)",
        one_net.as_secs_f64() * 1e3
    );
    println!("  one more net through `nft -j -f` instead {:>7.1} ms (apply only)", through_nft.as_secs_f64() * 1e3);

    // natOutgoing: the same path, translated or routed back.
    println!("natOutgoing: iperf3 TCP, pod -> host outside the pools (3 runs each, alternating)");
    let nat = HostRules {
        nat: NatOutgoing {
            pools: vec!["198.18.0.0/16".parse().unwrap()],
            masquerade: vec!["198.18.0.0/16".parse().unwrap()],
            address: None,
        },
        ..HostRules::default()
    };
    let with_nat = compile(&Inputs { node: "node", endpoints: &eps, host: nat, ..Inputs::default() });
    let without = compile(&Inputs { node: "node", endpoints: &eps, ..Inputs::default() });
    let (mut routed, mut natted) = (vec![], vec![]);
    for _ in 0..3 {
        in_ns(&node, async || apply::apply(&nft::full(&without)).await.unwrap());
        peer.add_route("198.18.0.0/16 via 192.0.2.1").unwrap();
        routed.push(iperf_gbps(&pod, &peer));
        peer.ip(&["route", "del", "198.18.0.0/16"]).unwrap();
        in_ns(&node, async || apply::apply(&nft::full(&with_nat)).await.unwrap());
        natted.push(iperf_gbps(&pod, &peer));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (r, n) = (median(&mut routed), median(&mut natted));
    println!("  {:<34} {:>8.2} Gbit/s (median; runs {routed:.2?})", "routed back, no NAT", r);
    println!("  {:<34} {:>8.2} Gbit/s (median; runs {natted:.2?})", "natOutgoing (masquerade)", n);
    println!("  natOutgoing vs no NAT: {:.2}x", n / r);
}
