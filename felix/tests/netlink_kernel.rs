#![allow(clippy::unwrap_used)]
//! The netlink layer against a real kernel, in a namespace of its own.

use tortie_felix::netlink::{Netlink, RouteEvent, route_events};
use tortie_felix::route::{Change, KernelRoutes, NextHop, Routes, Target, diff};
use tortie_lab::Lab;

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

#[test]
fn routes_of_every_shape_round_trip_through_the_kernel_and_foreign_ones_are_invisible() {
    let lab = Lab::new("felix-nl").unwrap();
    let node = lab.netns("node").unwrap();
    let peer = lab.netns("peer").unwrap();
    tortie_lab::veth((&node, "eth0"), (&peer, "eth0")).unwrap();
    node.add_addr("eth0", net("192.0.2.1/24")).unwrap();
    node.ip(&["link", "add", "vpod", "type", "veth", "peer", "name", "vpodp"]).unwrap();
    node.link_up("vpod").unwrap();
    node.add_route("198.18.7.0/24 via 192.0.2.9 dev eth0 proto static").unwrap();

    let (links, after) = node
        .enter(|| {
            let mut nl = Netlink::open().unwrap();
            let links = nl.links().unwrap();
            let (eth0, vpod) = (links["eth0"], links["vpod"]);
            let desired: Routes<u32> = [
                (net("198.18.0.5/32"), Target::Device(vpod)),
                (net("198.18.0.0/26"), Target::Blackhole),
                (
                    net("198.18.1.0/26"),
                    Target::Gateways(smallvec::smallvec![NextHop {
                        gateway: "192.0.2.2".parse().unwrap(),
                        device: None,
                        onlink: false,
                    }]),
                ),
                (
                    net("198.18.2.0/26"),
                    Target::Gateways(smallvec::smallvec![
                        NextHop { gateway: "192.0.2.2".parse().unwrap(), device: Some(eth0), onlink: false },
                        NextHop { gateway: "192.0.2.3".parse().unwrap(), device: Some(eth0), onlink: false },
                    ]),
                ),
                (
                    net("198.18.3.0/26"),
                    Target::Gateways(smallvec::smallvec![NextHop {
                        gateway: "203.0.113.9".parse().unwrap(),
                        device: Some(eth0),
                        onlink: true,
                    }]),
                ),
            ]
            .into();
            assert!(nl.routes().unwrap().is_empty(), "the static route is not ours");
            let refused = nl.apply(diff(&desired, &KernelRoutes::default())).unwrap();
            assert!(refused.is_empty(), "{refused:?}");
            let actual = nl.routes().unwrap();
            assert!(diff(&desired, &actual).is_empty(), "kernel has {actual:?}");
            // Adding over a foreign route is refused, not done by replacing it.
            let foreign = Change::Add(net("198.18.7.0/24"), Target::Blackhole);
            let refused = nl.apply(vec![foreign]).unwrap();
            assert_eq!(refused.len(), 1);
            assert_eq!(refused[0].error.kind(), std::io::ErrorKind::AlreadyExists);
            // Removing everything of ours leaves the foreign route.
            assert!(nl.apply(diff(&Routes::new(), &actual)).unwrap().is_empty());
            (links, nl.routes().unwrap())
        })
        .unwrap();
    assert!(links.contains_key("lo"));
    assert!(after.is_empty());
    let table = node.ip(&["route", "show"]).unwrap();
    assert!(table.contains("198.18.7.0/24 via 192.0.2.9 dev eth0 proto static"), "{table}");
    assert!(!table.contains("198.18.0"), "{table}");
}

/// The event socket hears another socket's route changes, and not the
/// echoes of the reconciler's own writes (the kernel drops them for it).
#[test]
fn the_event_socket_hears_others_changes_and_not_our_own() {
    let lab = Lab::new("felix-ev").unwrap();
    let node = lab.netns("node").unwrap();
    let heard = node
        .enter(|| {
            let (mut ours, mut other) = (Netlink::open().unwrap(), Netlink::open().unwrap());
            let events = Netlink::subscribe(&ours).unwrap();
            events.set_non_blocking(true).unwrap();
            let (mine, theirs) = (net("198.18.0.0/26"), net("198.18.1.0/26"));
            // A route in the local table (as the kernel's for an address): not felix's.
            let other_table = ["route", "add", "blackhole", "198.18.2.0/26", "table", "local"];
            assert!(std::process::Command::new("ip").args(other_table).status().unwrap().success());
            for (nl, prefix) in [(&mut ours, mine), (&mut other, theirs)] {
                let writes = [Change::Add(prefix, Target::Blackhole), Change::Delete(prefix, Target::Blackhole)];
                assert!(nl.apply(writes.into()).unwrap().is_empty());
            }
            // Notifications come in order: once the other's delete is in,
            // any of ours would have come before it.
            hear(&events, |heard| heard.contains(&RouteEvent::OursDeleted(theirs)))
        })
        .unwrap();
    // The route in the local table (`Elsewhere`), the other's add (someone
    // else's write: `Other`), then its delete; nothing of ours.
    assert_eq!(heard, [RouteEvent::Elsewhere, RouteEvent::Other, RouteEvent::OursDeleted(net("198.18.1.0/26"))]);
}

/// The events `events` hears until `enough` says so (5 s at most).
fn hear(events: &netlink_sys::Socket, enough: impl Fn(&[RouteEvent]) -> bool) -> Vec<RouteEvent> {
    let (mut heard, mut buf) = (Vec::new(), Vec::with_capacity(64 * 1024));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !enough(&heard) {
        assert!(std::time::Instant::now() < deadline, "not heard in time: {heard:?}");
        buf.clear();
        match events.recv(&mut buf, 0) {
            Ok(_) => heard.extend(route_events(&buf)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => panic!("event socket: {e}"),
        }
    }
    heard
}

/// A nexthop object removed takes its routes without a route
/// notification: the event socket hears the object go (the reconciler
/// then makes a full pass).
#[test]
fn the_event_socket_hears_a_nexthop_object_go_with_its_routes() {
    let lab = Lab::new("felix-nhev").unwrap();
    let node = lab.netns("node").unwrap();
    let peer = lab.netns("peer").unwrap();
    tortie_lab::veth((&node, "eth0"), (&peer, "eth0")).unwrap();
    node.add_addr("eth0", net("192.0.2.1/24")).unwrap();
    let hop = NextHop { gateway: "192.0.2.2".parse().unwrap(), device: None, onlink: false };
    let route = Change::Add(net("198.18.1.0/26"), Target::Gateways(smallvec::smallvec![hop]));
    let heard = node
        .enter(|| {
            let mut ours = Netlink::open().unwrap();
            assert!(ours.apply(vec![route]).unwrap().is_empty());
            let events = Netlink::subscribe(&ours).unwrap();
            events.set_non_blocking(true).unwrap();
            let shown = std::process::Command::new("ip").args(["route", "show", "198.18.1.0/26"]).output().unwrap();
            let shown = String::from_utf8(shown.stdout).unwrap();
            let id =
                shown.split_whitespace().skip_while(|w| *w != "nhid").nth(1).expect("a nexthop object").to_string();
            std::process::Command::new("ip").args(["nexthop", "del", "id", &id]).status().unwrap();
            hear(&events, |heard| !heard.is_empty())
        })
        .unwrap();
    assert_eq!(heard, [RouteEvent::Other]);
    assert_eq!(node.ip(&["route", "show", "198.18.1.0/26"]).unwrap().trim(), "", "the route went with it, unannounced");
}
