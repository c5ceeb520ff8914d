#![allow(clippy::unwrap_used)]
//! Nexthop objects against a real kernel, in a namespace of its own: routes
//! through one gateway share one object; a restart adopts them; one the
//! kernel loses is made again; one no route names goes.

use std::collections::BTreeSet;

use tortie_felix::netlink::Netlink;
use tortie_felix::reconcile::{Desired, PassReport, pass};
use tortie_felix::route::{NextHop, Routes, Target};
use tortie_lab::{Lab, Netns};

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

fn via(gateways: &[&str], device: Option<&str>, onlink: bool) -> Target<String> {
    let hops = gateways
        .iter()
        .map(|g| NextHop { gateway: g.parse().unwrap(), device: device.map(String::from), onlink })
        .collect();
    Target::Gateways(hops)
}

/// One full pass to `local` with a fresh socket (as after a restart).
fn pass_to(node: &Netns, local: &Routes<String>) -> PassReport {
    let desired = Desired { local: local.clone(), ..Desired::default() };
    let report = node.enter(|| pass(&mut Netlink::open().unwrap(), &desired).unwrap()).unwrap();
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    report
}

/// tortie's nexthop objects as `ip nexthop` shows them, ids left out.
fn objects(node: &Netns) -> BTreeSet<String> {
    let shown = node.ip(&["nexthop", "show", "proto", "217"]).unwrap();
    shown.lines().map(|l| l.split_once(' ').unwrap().1.split_once(' ').unwrap().1.trim().to_string()).collect()
}

/// The id a route names (`nhid N`), if any.
fn nhid(node: &Netns, prefix: &str) -> Option<String> {
    let shown = node.ip(&["route", "show", prefix]).unwrap();
    shown.split_whitespace().skip_while(|w| *w != "nhid").nth(1).map(String::from)
}

#[test]
fn routes_through_a_gateway_share_its_nexthop_object_from_make_to_adoption_to_removal() {
    let lab = Lab::new("felix-nh").unwrap();
    let node = lab.netns("node").unwrap();
    let peer = lab.netns("peer").unwrap();
    tortie_lab::veth((&node, "eth0"), (&peer, "eth0")).unwrap();
    node.add_addr("eth0", net("192.0.2.1/24")).unwrap();
    // Another program's object through the same gateway: never adopted, never removed.
    node.ip(&["nexthop", "add", "id", "7", "via", "192.0.2.2", "dev", "eth0"]).unwrap();
    let mut local: Routes<String> = [
        (net("198.18.1.0/26"), via(&["192.0.2.2"], None, false)),
        (net("198.18.2.0/26"), via(&["192.0.2.2"], None, false)),
        (net("198.18.3.0/26"), via(&["192.0.2.3"], None, false)),
        (net("198.18.4.0/26"), via(&["203.0.113.9"], Some("eth0"), true)),
        // An ECMP set carries its gateways (no group objects).
        (net("198.18.5.0/26"), via(&["192.0.2.2", "192.0.2.3"], Some("eth0"), false)),
    ]
    .into();

    assert_eq!(pass_to(&node, &local).added, 5);
    let want: BTreeSet<String> = [
        "via 192.0.2.2 dev eth0 scope link proto 217",
        "via 192.0.2.3 dev eth0 scope link proto 217",
        "via 203.0.113.9 dev eth0 scope link proto 217 onlink",
    ]
    .map(String::from)
    .into();
    assert_eq!(objects(&node), want);
    let shared = nhid(&node, "198.18.1.0/26").expect("a route through one gateway names its object");
    assert_eq!(nhid(&node, "198.18.2.0/26").as_ref(), Some(&shared));
    assert_ne!(shared, "7");
    assert_ne!(nhid(&node, "198.18.3.0/26").as_ref(), Some(&shared));
    assert_eq!(nhid(&node, "198.18.5.0/26"), None);
    let shown = node.ip(&["route", "show", "198.18.1.0/26"]).unwrap();
    assert!(shown.contains("via 192.0.2.2 dev eth0 proto 217"), "{shown}");

    // A restart: the objects are adopted, nothing is written again.
    let again = pass_to(&node, &local);
    assert_eq!((again.added, again.replaced, again.deleted), (0, 0, 0));
    assert_eq!(objects(&node), want);
    assert_eq!(nhid(&node, "198.18.1.0/26").as_ref(), Some(&shared));

    // Dumps that show only the id (`nexthop_compat_mode` 0) read the same.
    std::process::Command::new("ip")
        .args(["netns", "exec", node.name(), "sysctl", "-qw", "net.ipv4.nexthop_compat_mode=0"])
        .status()
        .unwrap();
    let compat_off = pass_to(&node, &local);
    assert_eq!((compat_off.added, compat_off.replaced, compat_off.deleted), (0, 0, 0));

    // The kernel loses an object (as when its device goes): its routes go
    // with it, and the next pass makes both again.
    node.ip(&["nexthop", "del", "id", &shared]).unwrap();
    assert_eq!(node.ip(&["route", "show", "198.18.1.0/26"]).unwrap().trim(), "");
    let restored = pass_to(&node, &local);
    assert_eq!(restored.added, 2);
    assert_eq!(objects(&node), want);

    // The last route through a gateway leaves: its object goes at the next
    // full pass (the first that finds no route naming it), and not
    // another program's through the same gateway.
    local.remove(&net("198.18.1.0/26"));
    local.remove(&net("198.18.2.0/26"));
    assert_eq!(pass_to(&node, &local).deleted, 2);
    assert_eq!(objects(&node), want, "still named by the routes the pass began with");
    pass_to(&node, &local);
    assert_eq!(objects(&node), want.iter().skip(1).cloned().collect());
    pass_to(&node, &Routes::new());
    pass_to(&node, &Routes::new());
    assert!(objects(&node).is_empty());
    assert!(node.ip(&["nexthop", "show", "id", "7"]).unwrap().contains("via 192.0.2.2"));

    // A gateway on no connected subnet gets no object: the route goes to
    // the kernel with its gateway, and is refused as it always was.
    let far: Routes<String> = [(net("198.18.6.0/26"), via(&["198.51.100.1"], None, false))].into();
    let desired = Desired { local: far, ..Desired::default() };
    let report = node.enter(|| pass(&mut Netlink::open().unwrap(), &desired).unwrap()).unwrap();
    assert_eq!(report.refused.len(), 1, "{:?}", report.refused);
    assert!(report.refused[0].contains("198.51.100.1"), "{:?}", report.refused);
    assert!(objects(&node).is_empty());
}

/// Between full passes, a write naming an object the kernel has since
/// lost is refused; it is made again at once through a new object.
#[test]
fn a_write_naming_a_lost_object_is_made_again_at_once() {
    use tortie_felix::route::Change;
    let lab = Lab::new("felix-nhlost").unwrap();
    let node = lab.netns("node").unwrap();
    let peer = lab.netns("peer").unwrap();
    tortie_lab::veth((&node, "eth0"), (&peer, "eth0")).unwrap();
    node.add_addr("eth0", net("192.0.2.1/24")).unwrap();
    let hop = NextHop { gateway: "192.0.2.2".parse().unwrap(), device: None, onlink: false };
    let add = |p: &str| Change::Add(net(p), Target::Gateways(smallvec::smallvec![hop.clone()]));
    node.enter(|| {
        let mut nl = Netlink::open().unwrap();
        nl.sync_nexthops().unwrap();
        assert!(nl.apply(vec![add("198.18.1.0/26")]).unwrap().is_empty());
        let id = nhid_here("198.18.1.0/26").unwrap();
        std::process::Command::new("ip").args(["nexthop", "del", "id", &id]).status().unwrap();
        let refused = nl.apply(vec![add("198.18.2.0/26")]).unwrap();
        assert!(refused.is_empty(), "{refused:?}");
        let again = nhid_here("198.18.2.0/26").expect("through a new object");
        assert_ne!(again, id);
    })
    .unwrap();
}

/// `nhid` of a route in the calling thread's namespace.
fn nhid_here(prefix: &str) -> Option<String> {
    let shown = std::process::Command::new("ip").args(["route", "show", prefix]).output().unwrap();
    let shown = String::from_utf8(shown.stdout).unwrap();
    shown.split_whitespace().skip_while(|w| *w != "nhid").nth(1).map(String::from)
}
