//! `tortie ipam show / check / release` over allocations made by the IPAM
//! library (as the CNI plugin makes them): block claims, `maxBlocksPerHost`,
//! borrowing, `strictAffinity`, leaks and their release.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::process::Command;

use tortie_ipam::{self as ipam, IpamError, Purpose, Request};
use tortie_store::Datastore;
use tortie_store::api;
use tortie_store::resources::parse_documents;

fn block_on<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn tortie(url: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tortie")).args(args).env("TORTIE_DATASTORE", url).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn row_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no row with {needle}:\n{text}"))
}

#[test]
fn show_check_and_release_follow_claims_borrowing_and_leaks() {
    let lab = tortie_lab::Lab::new("cli-ipam").unwrap();
    let url = format!("sqlite://{}/store.db", lab.dir().display());
    let setup = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: tiny}
spec: {cidr: 198.18.0.0/30, blockSize: 31}
---
apiVersion: projectcalico.org/v3
kind: IPAMConfig
metadata: {name: default}
spec: {maxBlocksPerHost: 1}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: p1, namespace: default}
spec: {node: n1, interfaceName: tortiep1, ipNetworks: [198.18.0.0/32]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: p2, namespace: default}
spec: {node: n2, interfaceName: tortiep2, ipNetworks: [198.18.0.2/32]}
";
    let assigned = block_on(async {
        let kv = Datastore::open(&url).await.unwrap();
        api::apply(&kv, &parse_documents(setup).unwrap()).await.unwrap();
        let req = |node: &str, handle: &str| Request {
            node: node.into(),
            handle: handle.into(),
            purpose: Purpose::Workload,
            family: tortie_ipam::Family::V4,
            attrs: BTreeMap::new(),
            pools: Vec::new(),
        };
        let mut got = Vec::new();
        for (node, handle) in [("n1", "net.p1"), ("n2", "net.p2"), ("n2", "net.p3"), ("n2", "net.p4")] {
            got.push(ipam::assign(&kv, &req(node, handle)).await.unwrap().to_string());
        }
        // Every address is taken now.
        let full = ipam::assign(&kv, &req("n1", "net.p5")).await.unwrap_err();
        assert!(matches!(full, IpamError::Exhausted { .. }), "{full}");
        got
    });
    // n1 claims the first block; n2 the second (its only one: maxBlocksPerHost 1),
    // then borrows n1's spare address.
    assert_eq!(assigned, ["198.18.0.0/32", "198.18.0.2/32", "198.18.0.3/32", "198.18.0.1/32"]);

    let (ok, show) = tortie(&url, &["ipam", "show", "--show-blocks"]);
    assert!(ok, "{show}");
    let pool = row_with(&show, "198.18.0.0/30");
    assert!(pool.contains("IP Pool") && pool.contains("| 4 ") && pool.contains("4 (100%)"), "{show}");
    let block = row_with(&show, "198.18.0.2/31");
    assert!(block.contains("Block") && block.contains("2 (100%)"), "{show}");
    let (_, borrowed) = tortie(&url, &["ipam", "show", "--show-borrowed"]);
    let row = row_with(&borrowed, "198.18.0.1 ");
    assert!(row.contains("n2") && row.contains("198.18.0.0/31") && row.contains("n1"), "{borrowed}");

    // p3 and p4 have addresses but no endpoint: two leaks.
    let (ok, check) = tortie(&url, &["ipam", "check"]);
    assert!(!ok, "{check}");
    assert!(
        check.contains("198.18.0.3 is allocated to net.p3") && check.contains("198.18.0.1 is allocated to net.p4"),
        "{check}"
    );
    for ip in ["198.18.0.3", "198.18.0.1"] {
        let (ok, out) = tortie(&url, &["ipam", "release", "--ip", ip]);
        assert!(ok && out.contains("released"), "{out}");
    }
    let (ok, out) = tortie(&url, &["ipam", "release", "--ip", "198.18.0.1"]);
    assert!(!ok && out.contains("not allocated"), "{out}");
    let (ok, check) = tortie(&url, &["ipam", "check"]);
    assert!(ok && check.contains("consistent"), "{check}");

    // strictAffinity: n1's block is full and it may not borrow from n2's, which has a free address.
    block_on(async {
        let kv = Datastore::open(&url).await.unwrap();
        let strict = "apiVersion: projectcalico.org/v3
kind: IPAMConfig
metadata: {name: default}
spec: {maxBlocksPerHost: 1, strictAffinity: true}
";
        api::apply(&kv, &parse_documents(strict).unwrap()).await.unwrap();
        let req = Request {
            node: "n1".into(),
            handle: "net.p6".into(),
            purpose: Purpose::Workload,
            family: tortie_ipam::Family::V4,
            attrs: BTreeMap::new(),
            pools: Vec::new(),
        };
        ipam::assign(&kv, &req).await.unwrap();
        let req = Request {
            node: "n1".into(),
            handle: "net.p7".into(),
            purpose: Purpose::Workload,
            family: tortie_ipam::Family::V4,
            attrs: BTreeMap::new(),
            pools: Vec::new(),
        };
        let e = ipam::assign(&kv, &req).await.unwrap_err().to_string();
        assert!(e.contains("strictAffinity"), "{e}");
    });
}

#[test]
fn manual_pools_serve_only_pods_that_ask_for_them_and_selectors_still_apply() {
    let lab = tortie_lab::Lab::new("ipam-modes").unwrap();
    let url = format!("sqlite://{}/store.db", lab.dir().display());
    let setup = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: general}
spec: {cidr: 198.18.0.0/24}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: reserved}
spec: {cidr: 198.18.1.0/24, assignmentMode: Manual}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: rack2}
spec: {cidr: 198.18.2.0/24, nodeSelector: rack == '2'}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: tunnels}
spec: {cidr: 198.18.3.0/24, allowedUses: [Tunnel]}
";
    block_on(async {
        let kv = Datastore::open(&url).await.unwrap();
        api::apply(&kv, &parse_documents(setup).unwrap()).await.unwrap();
        let req = |handle: &str, pools: &[&str]| Request {
            node: "n1".into(),
            handle: handle.into(),
            purpose: Purpose::Workload,
            family: tortie_ipam::Family::V4,
            attrs: BTreeMap::new(),
            pools: pools.iter().map(|p| p.to_string()).collect(),
        };
        let in_net = |ip: ipnet::IpNet, net: &str| net.parse::<ipnet::IpNet>().unwrap().contains(&ip);
        for i in 0..5 {
            let ip = ipam::assign(&kv, &req(&format!("net.a{i}"), &[])).await.unwrap();
            assert!(
                in_net(ip, "198.18.0.0/24"),
                "no pool asked: Automatic pools only (not Manual, rack2 or Tunnel): {ip}"
            );
        }
        let ip = ipam::assign(&kv, &req("net.m", &["reserved"])).await.unwrap();
        assert!(in_net(ip, "198.18.1.0/24"), "asked by name: {ip}");
        let ip = ipam::assign(&kv, &req("net.c", &["198.18.1.0/24"])).await.unwrap();
        assert!(in_net(ip, "198.18.1.0/24"), "asked by CIDR: {ip}");
        for (pools, why) in [
            (&["rack2"][..], "requested IPPool rack2: its nodeSelector does not select this node"),
            (&["tunnels"][..], "requested IPPool tunnels: its allowedUses exclude this use"),
            (&["nope"][..], "no IPPool is named `nope`"),
        ] {
            let err = ipam::assign(&kv, &req("net.x", pools)).await.unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
    });
}

#[test]
fn ipv6_pools_hand_out_addresses_from_122_blocks_apart_from_ipv4_ones() {
    let lab = tortie_lab::Lab::new("cli-ipam-v6").unwrap();
    let url = format!("sqlite://{}/store.db", lab.dir().display());
    let setup = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: v6}
spec: {cidr: '2001:db8:100::/48'}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: v4}
spec: {cidr: 198.18.0.0/16}
";
    let got = block_on(async {
        let kv = Datastore::open(&url).await.unwrap();
        api::apply(&kv, &parse_documents(setup).unwrap()).await.unwrap();
        let req = |node: &str, handle: &str, family| Request {
            node: node.into(),
            handle: handle.into(),
            purpose: Purpose::Workload,
            family,
            attrs: BTreeMap::new(),
            pools: Vec::new(),
        };
        let mut got = Vec::new();
        for (node, handle, family) in [
            ("n1", "net.a", tortie_ipam::Family::V6),
            ("n1", "net.a", tortie_ipam::Family::V4),
            ("n1", "net.b", tortie_ipam::Family::V6),
            ("n2", "net.c", tortie_ipam::Family::V6),
        ] {
            got.push(ipam::assign(&kv, &req(node, handle, family)).await.unwrap().to_string());
        }
        // Asking for IPv6 from an IPv4 pool names the mismatch.
        let mut wrong = req("n1", "net.d", tortie_ipam::Family::V6);
        wrong.pools = vec!["v4".into()];
        let e = ipam::assign(&kv, &wrong).await.unwrap_err().to_string();
        assert!(e.contains("no free IPv6 address for node n1: requested IPPool v4: it is not IPv6"), "{e}");
        // One handle, both families: released together.
        let freed = ipam::release_handle(&kv, "net.a").await.unwrap();
        assert_eq!(freed.len(), 2, "{freed:?}");
        got
    });
    // Calico's IPv6 block size: /122, one per node, claimed in order.
    assert_eq!(got, ["2001:db8:100::/128", "198.18.0.0/32", "2001:db8:100::1/128", "2001:db8:100::40/128"]);
    let (ok, show) = tortie(&url, &["ipam", "show", "--show-blocks"]);
    assert!(ok, "{show}");
    assert!(row_with(&show, "2001:db8:100::40/122").contains("Block"), "{show}");
}
