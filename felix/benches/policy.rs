//! Network policy at scale: 1,000 endpoints × 200 policies — the time to
//! compile, the first full nftables apply, and an incremental update after
//! one label change; then the per-packet cost between two real pods (ping
//! latency and iperf3 TCP throughput) with no table, with 10 and with 1,000
//! endpoints present, in the same run.
//!
//! Run: `cargo bench -p tortie-felix --bench policy` (root; nftables and iperf3 installed).

#![allow(clippy::unwrap_used)] // a benchmark: a failure aborts the run

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use tortie_felix::policy::{Endpoint, Inputs, Policy, apply, compile, nft};
use tortie_lab::{Lab, Netns, Pod};
use tortie_store::resources::{Resource, WorkloadEndpointSpec, parse_documents};

const POLICIES: usize = 200;

/// Endpoint `i`: labels app=app{i%50}, role=r{i%20}; the first two are the real pods.
fn endpoint(i: usize, iface: &str, addr: Ipv4Addr, role: usize) -> Endpoint {
    let labels =
        BTreeMap::from([("app".to_string(), format!("app{}", i % 50)), ("role".to_string(), format!("r{role}"))]);
    let spec = WorkloadEndpointSpec {
        node: "node".into(),
        interface_name: iface.into(),
        ip_networks: vec![format!("{addr}/32").parse().unwrap()],
        ..Default::default()
    };
    Endpoint::workload("default", &format!("ep{i}"), &labels, &spec, &BTreeMap::new())
}

/// `n` endpoints: the two real pods (app0, role r0), then synthetic ones
/// (interfaces that exist only as names in the maps).
fn endpoints(n: usize, pods: &[Pod]) -> Vec<Endpoint> {
    (0..n)
        .map(|i| match pods.get(i) {
            Some(p) => endpoint(0, &p.host_if, p.addr, 0),
            None => endpoint(
                i,
                &format!("cali{i:08x}"),
                Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 16, 0)) + i as u32),
                i % 20,
            ),
        })
        .collect()
}

/// Policy `i` selects app{i%50} and allows TCP 5201 and ICMP from role r{i%20}.
fn policies() -> Vec<Policy> {
    let yaml: String = (0..POLICIES)
        .map(|i| {
            format!(
                "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: p{i}, namespace: default}}\nspec:\n  order: {i}\n  selector: app == 'app{}'\n  ingress:\n  - {{action: Allow, protocol: TCP, source: {{selector: role == 'r{}'}}, destination: {{ports: [5201, '8000:8100']}}}}\n  - {{action: Allow, protocol: ICMP, source: {{selector: role == 'r{}'}}}}\n---\n",
                i % 50,
                i % 20,
                i % 20
            )
        })
        .collect();
    parse_documents(&yaml)
        .unwrap()
        .into_iter()
        .map(|r| match r {
            Resource::NetworkPolicy(o) => Policy::namespaced("default", &o.metadata.name, &o.spec).unwrap(),
            _ => unreachable!(),
        })
        .collect()
}

fn in_ns<T: Send>(ns: &Netns, f: impl AsyncFnOnce() -> T + Send) -> T {
    ns.enter(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f())).unwrap()
}

/// Average ping RTT (µs) from a to b over 500 probes.
fn ping_us(a: &Pod, b: &Pod) -> f64 {
    let out = a.netns.exec("ping", &["-q", "-c", "500", "-i", "0.002", &b.addr.to_string()]).unwrap();
    let rtt = out.lines().find(|l| l.contains("min/avg/max")).unwrap();
    let avg: f64 = rtt.split('=').nth(1).unwrap().trim().split('/').nth(1).unwrap().parse().unwrap();
    avg * 1000.0
}

/// iperf3 TCP from a to b for 3 s, Gbit/s.
fn iperf_gbps(a: &Pod, b: &Pod) -> f64 {
    let server = b.netns.spawn("iperf3-s", "iperf3", &["-s", "-1", "-B", &b.addr.to_string()], &[]).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let out = a.netns.exec("iperf3", &["-c", &b.addr.to_string(), "-t", "3", "-J"]).unwrap();
    drop(server);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap() / 1e9
}

fn main() {
    let lab = Lab::new("bench-policy").unwrap();
    let node = lab.netns("node").unwrap();
    let peer = lab.netns("peer").unwrap();
    tortie_lab::veth((&node, "eth0"), (&peer, "eth0")).unwrap();
    node.add_addr("eth0", "192.0.2.1/24".parse().unwrap()).unwrap();
    node.add_route("default via 192.0.2.2").unwrap();
    node.enable_forwarding().unwrap();
    let mut pods = vec![];
    for (name, addr) in [("a", Ipv4Addr::new(198, 18, 0, 2)), ("b", Ipv4Addr::new(198, 18, 0, 3))] {
        let pod = lab.pod(&node, name, &format!("p{name}"), addr).unwrap();
        node.sysctl(&format!("net.ipv4.conf.p{name}.proxy_arp"), "1").unwrap();
        node.sysctl(&format!("net.ipv4.neigh.p{name}.proxy_delay"), "0").unwrap();
        node.add_route(&format!("{addr}/32 dev p{name}")).unwrap();
        pods.push(pod);
    }
    let pols = policies();

    // Scale: 1,000 endpoints × 200 policies.
    let eps = endpoints(1000, &pods);
    let t = Instant::now();
    let rs = compile(&Inputs { node: "node", endpoints: &eps, policies: &pols, ..Inputs::default() });
    let compile_time = t.elapsed();
    let tx = nft::full(&rs);
    let rules: usize = rs.chains.values().map(|c| c.rules.len()).sum();
    let t = Instant::now();
    in_ns(&node, async || apply::apply(&tx).await.unwrap());
    let full_apply = t.elapsed();
    // One label change: endpoint 500 moves from role r0 to r1.
    let mut changed = eps.clone();
    changed[500] = endpoint(500, &eps[500].interface, "198.18.17.244".parse().unwrap(), 1);
    let t = Instant::now();
    let rs2 = compile(&Inputs { node: "node", endpoints: &changed, policies: &pols, ..Inputs::default() });
    let inc = nft::incremental(&rs, &rs2);
    in_ns(&node, async || apply::apply(&inc).await.unwrap());
    let incremental = t.elapsed();
    assert!(nft::elements_only(&inc), "a label change is a set-element update");
    let t = Instant::now();
    in_ns(&node, async || apply::list().await.unwrap());
    let listing = t.elapsed();

    println!(
        "policy at scale: 1000 endpoints x {POLICIES} policies ({} chains, {rules} rules, {} sets)",
        rs.chains.len(),
        rs.sets.len()
    );
    println!("  compile                          {:>8.1} ms", compile_time.as_secs_f64() * 1e3);
    println!("  first full apply (nft -j -f -)   {:>8.1} ms", full_apply.as_secs_f64() * 1e3);
    println!(
        "  one label change: compile + diff + apply {:>8.1} ms ({} commands, elements only)",
        incremental.as_secs_f64() * 1e3,
        inc.len()
    );

    println!("  list the table (the repair check's fingerprint) {:>8.1} ms", listing.as_secs_f64() * 1e3);

    // Per-packet cost between the two real pods.
    println!("per-packet cost, pod a -> pod b on one node (both selected by 4 policies):");
    println!("  {:<22} {:>12} {:>14}", "endpoints present", "ping avg us", "iperf3 Gbit/s");
    let mut rows = vec![];
    for n in [0usize, 10, 1000] {
        if n == 0 {
            in_ns(&node, apply::remove).unwrap();
        } else {
            in_ns(&node, async || {
                apply::apply(&nft::full(&compile(&Inputs {
                    node: "node",
                    endpoints: &endpoints(n, &pods),
                    policies: &pols,
                    ..Inputs::default()
                })))
                .await
                .unwrap()
            });
        }
        let (p, g) = (ping_us(&pods[0], &pods[1]), iperf_gbps(&pods[0], &pods[1]));
        let label = if n == 0 { "no table".to_string() } else { n.to_string() };
        println!("  {label:<22} {p:>12.1} {g:>14.2}");
        rows.push((p, g));
    }
    println!("  1000 vs 10: ping {:.2}x, throughput {:.2}x", rows[2].0 / rows[1].0, rows[2].1 / rows[1].1);
}
