//! Independent check of our encoder: Wireshark's BGP dissector (tshark)
//! reads every message we write, finds no malformed packet and no expert
//! warning, and sees the values we put in.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tortie_bgp::packet::*;
use tortie_proto_tests::net;

fn attrs() -> PathAttrs {
    PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath {
            segments: vec![
                Segment { kind: SegmentType::Sequence, asns: [65001, 4_200_000_000][..].into() },
                Segment { kind: SegmentType::Set, asns: [65010, 65011][..].into() },
            ],
        }),
        next_hop: Some("192.0.2.1".parse().unwrap()),
        med: Some(10),
        local_pref: Some(200),
        atomic_aggregate: true,
        aggregator: Some(Aggregator { asn: 65001, address: "192.0.2.1".parse().unwrap() }),
        communities: vec![Community::new(65001, 100), Community::NO_EXPORT].into(),
        originator_id: Some("192.0.2.9".parse().unwrap()),
        cluster_list: vec!["192.0.2.10".parse().unwrap()].into(),
        ext_communities: vec![ExtCommunity::route_target(65001, 7)].into(),
        large_communities: vec![LargeCommunity { global_admin: 4_200_000_000, local_data_1: 1, local_data_2: 2 }]
            .into(),
        unknown: vec![RawAttr { flags: 0xc0, code: 0xf0, value: Bytes::from_static(b"\x01\x02") }].into(),
        mp_next_hop: None,
    }
}

fn prefixes(n: u32) -> Vec<Ipv4Nlri> {
    (0..n).map(|i| Nlri::new(ipnet::Ipv4Net::new(Ipv4Addr::from(0xc612_0000 + (i << 8)), 24).unwrap())).collect()
}

/// Every message we write, as (context, message).
fn messages() -> Vec<(Context, Message)> {
    let four = Context { four_octet_as: true, ..Context::default() };
    let two = Context::default();
    let caps = vec![
        Capability::Multiprotocol(Family::IPV4_UNICAST),
        Capability::Multiprotocol(Family::IPV6_UNICAST),
        Capability::RouteRefresh,
        Capability::EnhancedRouteRefresh,
        Capability::GracefulRestart(GracefulRestart {
            restarted: false,
            notification: true,
            restart_time: 120,
            families: vec![GracefulRestartFamily { family: Family::IPV4_UNICAST, forwarding_preserved: true }],
        }),
        Capability::AddPath(vec![AddPathFamily { family: Family::IPV4_UNICAST, mode: AddPathMode::Both }]),
        Capability::ExtendedNextHop(vec![ExtendedNextHop {
            nlri_afi: Afi::Ipv4,
            nlri_safi: 1,
            next_hop_afi: Afi::Ipv6,
        }]),
        Capability::ExtendedMessage,
    ];
    let mp = MpReach {
        family: Family::IPV6_UNICAST,
        next_hop: MpNextHop::Ipv6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: Some("fe80::1".parse().unwrap()),
        },
        nlri: vec![Nlri::new(net("2001:db8:1::/48")), Nlri::new(net("2001:db8:2::/64"))],
    };
    vec![
        (two, Message::Open(Open::new(4_200_000_000, 90, "192.0.2.1".parse().unwrap(), caps))),
        (four, Message::Keepalive),
        (
            four,
            Message::Update(Update { withdrawn: prefixes(3), ..Update::announce(Arc::new(attrs()), prefixes(500)) }),
        ),
        (two, Message::Update(Update::announce(Arc::new(attrs()), prefixes(20)))),
        (four, Message::Update(Update { attrs: Some(Arc::new(attrs())), mp_reach: Some(mp), ..Update::default() })),
        (
            four,
            Message::Update(Update {
                mp_unreach: Some(MpUnreach {
                    family: Family::IPV6_UNICAST,
                    withdrawn: vec![Nlri::new(net("2001:db8:1::/48"))],
                }),
                ..Update::default()
            }),
        ),
        (four, Message::Update(Update::end_of_rib(Family::IPV4_UNICAST))),
        (four, Message::Update(Update::end_of_rib(Family::IPV6_UNICAST))),
        (
            four,
            Message::RouteRefresh(RouteRefresh { family: Family::IPV4_UNICAST, subtype: RefreshSubtype::EndOfRefresh }),
        ),
        (
            four,
            Message::Notification(Notification::cease_with_message(
                cease_subcode::ADMINISTRATIVE_SHUTDOWN,
                "maintenance window",
            )),
        ),
    ]
}

fn tshark(pcap: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .args(["-n", "-r", &pcap.display().to_string(), "-d", "tcp.port==179,bgp"])
        .args(args)
        .output()
        .expect("tshark is not installed: run scripts/test (installs the tshark package)");
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn tshark_dissects_everything_we_encode_without_complaint() {
    let dir = std::env::temp_dir().join(format!("tortie-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // One packet per encoded message, in text2pcap's hexdump format.
    let mut dump = String::new();
    let mut types = Vec::new();
    for (cxt, m) in messages() {
        let mut wire = BytesMut::new();
        m.encode(&cxt, &mut wire).unwrap();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let len = u16::from_be_bytes([rest[16], rest[17]]) as usize;
            types.push(rest[18].to_string());
            for (i, line) in rest[..len].chunks(16).enumerate() {
                let _ = write!(dump, "{:06x}", i * 16);
                for b in line {
                    let _ = write!(dump, " {b:02x}");
                }
                dump.push('\n');
            }
            dump.push('\n');
            rest = &rest[len..];
        }
    }
    let txt = dir.join("messages.txt");
    let pcap = dir.join("messages.pcap");
    std::fs::write(&txt, dump).unwrap();
    let status = Command::new("text2pcap")
        .args(["-q", "-4", "192.0.2.1,192.0.2.2", "-T", "40000,179"])
        .args([&txt, &pcap])
        .status()
        .expect("text2pcap (package wireshark-common, pulled in by tshark) is not installed");
    assert!(status.success());

    let complaints = tshark(&pcap, &["-Y", "_ws.malformed || _ws.expert.severity >= 0x00600000", "-V"]);
    assert!(complaints.trim().is_empty(), "tshark complains:\n{complaints}");
    let seen: Vec<String> = tshark(&pcap, &["-Y", "bgp", "-T", "fields", "-e", "bgp.type", "-E", "aggregator=,"])
        .lines()
        .flat_map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>())
        .collect();
    assert_eq!(seen, types, "tshark saw other messages than we wrote");
    let detail = tshark(&pcap, &["-Y", "bgp", "-V"]);
    for expected in [
        "198.18.1.0/24",
        "2001:db8:1::/48",
        "fe80::1",
        "4200000000",
        "65001:100",
        "maintenance window",
        "Large communities: 4200000000:1:2",
        "Cluster List: 192.0.2.10",
        "Originator identifier: 192.0.2.9",
        "Flags: 0xe0, Optional, Transitive, Partial",
        "Path Attribute - AS_PATH: 65001 23456 {65010, 65011}",
        "Path Attribute - AS4_PATH: 65001 4200000000 {65010, 65011}",
        "My AS: 23456 (AS_TRANS)",
        "Restart Timers: 0x4078, Graceful notification",
    ] {
        assert!(detail.contains(expected), "tshark output lacks {expected:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
