//! Programming a node's routes: tortie's reconciler against `ip -batch`
//! with the same routes, in the same run, in a fresh namespace — 10,000
//! pod /32s spread over 100 veths plus 200 block blackholes. Also the
//! no-change resync (dump links and routes, diff, nothing to apply).
//!
//! Run: `cargo bench -p tortie-felix --bench routes` (as root; each
//! number is the median of `ROUNDS` alternating rounds).

#![allow(clippy::unwrap_used)] // a benchmark: a failure aborts the run

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tortie_felix::netlink::Netlink;
use tortie_felix::reconcile::{Desired, pass};
use tortie_felix::route::{ROUTE_PROTOCOL, Target};
use tortie_lab::Lab;

const PODS: u32 = 10_000;
const BLOCKS: u32 = 200;
const VETHS: u32 = 100;
const ROUNDS: usize = 5;

fn pod(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i)
}

fn block(i: u32) -> IpNet {
    IpNet::new(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + i * 64).into(), 26).unwrap()
}

fn veth(i: u32) -> String {
    format!("tortie{}", i % VETHS)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let lab = Lab::new("bench-routes").unwrap();
    let ns = lab.netns("node").unwrap();
    let peer = lab.netns("pods").unwrap();
    for i in 0..VETHS {
        tortie_lab::veth((&ns, &veth(i)), (&peer, &format!("p{i}"))).unwrap();
    }
    let total = PODS + BLOCKS;

    let mut batch = String::new();
    for i in 0..PODS {
        writeln!(batch, "route add {}/32 dev {} scope link proto {ROUTE_PROTOCOL}", pod(i), veth(i)).unwrap();
    }
    for i in 0..BLOCKS {
        writeln!(batch, "route add blackhole {} proto {ROUTE_PROTOCOL}", block(i)).unwrap();
    }
    let batch_file = lab.dir().join("routes.batch");
    std::fs::write(&batch_file, batch).unwrap();

    let mut desired = Desired::default();
    for i in 0..PODS {
        desired.local.insert(IpNet::from(std::net::IpAddr::V4(pod(i))), Target::Device(veth(i)));
    }
    for i in 0..BLOCKS {
        desired.local.insert(block(i), Target::Blackhole);
    }
    let empty = Desired::default();

    let (mut ip_batch, mut tortie, mut resync) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        ns.ip(&["-batch", batch_file.to_str().unwrap()]).unwrap();
        ip_batch.push(t.elapsed());
        let count = ns.ip(&["route", "show", "proto", &ROUTE_PROTOCOL.to_string()]).unwrap().lines().count();
        assert_eq!(count as u32, total, "ip -batch installed every route");
        ns.ip(&["route", "flush", "proto", &ROUTE_PROTOCOL.to_string()]).unwrap();

        let (apply, noop) = ns
            .enter(|| {
                let mut nl = Netlink::open().unwrap();
                let t = Instant::now();
                let report = pass(&mut nl, &desired).unwrap();
                let apply = t.elapsed();
                assert_eq!(report.added as u32, total);
                let t = Instant::now();
                let report = pass(&mut nl, &desired).unwrap();
                let noop = t.elapsed();
                assert_eq!(report.added + report.replaced + report.deleted, 0);
                assert_eq!(nl.routes().unwrap().len() as u32, total);
                pass(&mut nl, &empty).unwrap();
                (apply, noop)
            })
            .unwrap();
        tortie.push(apply);
        resync.push(noop);
    }
    let (ip_batch, tortie, resync) = (median(ip_batch), median(tortie), median(resync));
    let rate = |d: Duration| f64::from(total) / d.as_secs_f64();
    println!("{total} routes ({PODS} pod /32s over {VETHS} veths + {BLOCKS} blackholes), median of {ROUNDS} rounds");
    println!("  ip -batch            {:>8.1} ms  {:>9.0} routes/s", ip_batch.as_secs_f64() * 1e3, rate(ip_batch));
    println!(
        "  tortie reconciler    {:>8.1} ms  {:>9.0} routes/s  ({:.2}x ip -batch)",
        tortie.as_secs_f64() * 1e3,
        rate(tortie),
        rate(tortie) / rate(ip_batch)
    );
    println!("  no-change resync     {:>8.1} ms", resync.as_secs_f64() * 1e3);
}
