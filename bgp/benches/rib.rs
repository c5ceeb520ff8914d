//! The Loc-RIB's cost per prefix for a full table: one peer announces
//! 1,000,000 IPv4 /24s of 240.0.0.0/4 in 300 attribute sets into an empty
//! Loc-RIB, as a sender's UPDATEs bring them: grouped by attribute set
//! (the prefixes sharing one go together), each group in a shuffled order
//! (a sender walks its own table, not the address space); then the same
//! peer withdraws them all, in the same order. Like the speaker, the loops
//! have the RIB fetch the place of the prefix 8 ahead into the cache. This is the RIB's
//! share of what `proto-tests/benches/full_table.rs` measures end to end,
//! without the sessions and the machine's noise around it.
//!
//! Run: `cargo bench -p tortie-bgp --bench rib`.

// A bench, not library code: setup failures should stop it loudly.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use ipnet::{IpNet, Ipv4Net};
use tortie_bgp::packet::{AsPath, Community, Origin, PathAttrs};
use tortie_bgp::rib::decision::{Origination, Path};
use tortie_bgp::rib::table::{LocRib, PeerKey};

const PREFIXES: usize = 1_000_000;
const ATTRIBUTE_SETS: u32 = 300;

/// The announcements: (prefix, path), grouped by path, each group in a fixed pseudo-random order.
fn table() -> Vec<(IpNet, Path)> {
    let paths: Vec<Path> = (0..ATTRIBUTE_SETS)
        .map(|i| Path {
            attrs: Arc::new(PathAttrs {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::from_sequence(&[65002])),
                next_hop: Some(Ipv4Addr::new(192, 0, 2, 2)),
                med: Some(i),
                communities: vec![Community(65002 << 16 | i)].into(),
                ..PathAttrs::default()
            }),
            origination: Origination::Ebgp,
            peer_addr: IpAddr::from([192, 0, 2, 2]),
            peer_id: Ipv4Addr::new(192, 0, 2, 2),
            reachable: true,
        })
        .collect();
    let mut slots: Vec<u32> = (0..PREFIXES as u32).collect();
    // Fisher-Yates with a fixed xorshift: the same order every run.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..slots.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        slots.swap(i, (x % (i as u64 + 1)) as usize);
    }
    slots.sort_by_key(|s| s % ATTRIBUTE_SETS);
    slots
        .iter()
        .map(|&s| {
            let net = Ipv4Net::new(Ipv4Addr::from(0xf000_0000 | (s << 8)), 24).unwrap();
            (IpNet::V4(net), paths[(s % ATTRIBUTE_SETS) as usize].clone())
        })
        .collect()
}

fn main() {
    let mut c = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(20)).configure_from_args();
    let announcements = table();
    let peer: PeerKey = Some(Arc::from("sender"));
    let mut group = c.benchmark_group("loc_rib");
    group.throughput(Throughput::Elements(PREFIXES as u64));
    group.bench_function("announce a full table", |b| {
        b.iter_batched(
            || announcements.clone(),
            |table| {
                let mut rib = LocRib::new(1);
                for (i, (prefix, path)) in table.into_iter().enumerate() {
                    if let Some((ahead, _)) = announcements.get(i + 8) {
                        rib.prefetch(ahead);
                    }
                    black_box(rib.announce(&peer, prefix, path));
                }
                rib
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("withdraw a full table", |b| {
        b.iter_batched(
            || {
                let mut rib = LocRib::new(1);
                for (prefix, path) in announcements.clone() {
                    rib.announce(&peer, prefix, path);
                }
                rib
            },
            |mut rib| {
                for (i, (prefix, _)) in announcements.iter().enumerate() {
                    if let Some((ahead, _)) = announcements.get(i + 8) {
                        rib.prefetch(ahead);
                    }
                    black_box(rib.withdraw(&peer, *prefix));
                }
                rib
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}
