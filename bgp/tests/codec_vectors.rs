//! Wire vectors `(bytes, value)` written from the RFC packet diagrams: each
//! decodes to the value, and the value encodes back to the same bytes.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{decode, encode, hex, net, v4_net};
use tortie_bgp::packet::*;

fn v4(s: &str) -> std::net::Ipv4Addr {
    s.parse().unwrap()
}

fn vectors() -> Vec<(&'static str, String, Context, Message)> {
    let four = Context { four_octet_as: true, ..Context::default() };
    vec![
        ("keepalive", "M 0013 04".into(), Context::default(), Message::Keepalive),
        (
            "open: AS 65001, hold 90, multiprotocol, route refresh, 4-octet AS",
            "M 002d 01  04 fde9 005a c0000201 10  02 0e  01 04 0001 00 01  02 00  41 04 0000fde9".into(),
            Context::default(),
            Message::Open(Open::new(
                65001,
                90,
                v4("192.0.2.1"),
                vec![Capability::Multiprotocol(Family::IPV4_UNICAST), Capability::RouteRefresh],
            )),
        ),
        (
            "open: AS 4200000000 as AS_TRANS, GR, add-path, extended next hop and message, unknown capability",
            "M 0043 01  04 5ba0 0009 c0000202 26  02 24
             41 04 fa56ea00  40 06 8078 0001 01 80  45 04 0001 01 03  05 06 0001 0001 0002
             06 00  46 00  49 02 766d"
                .into(),
            Context::default(),
            Message::Open(Open::new(
                4_200_000_000,
                9,
                v4("192.0.2.2"),
                vec![
                    Capability::FourOctetAs(4_200_000_000),
                    Capability::GracefulRestart(GracefulRestart {
                        restarted: true,
                        notification: false,
                        restart_time: 120,
                        families: vec![GracefulRestartFamily {
                            family: Family::IPV4_UNICAST,
                            forwarding_preserved: true,
                        }],
                    }),
                    Capability::AddPath(vec![AddPathFamily { family: Family::IPV4_UNICAST, mode: AddPathMode::Both }]),
                    Capability::ExtendedNextHop(vec![ExtendedNextHop {
                        nlri_afi: Afi::Ipv4,
                        nlri_safi: 1,
                        next_hop_afi: Afi::Ipv6,
                    }]),
                    Capability::ExtendedMessage,
                    Capability::EnhancedRouteRefresh,
                    Capability::Unknown { code: 0x49, value: bytes::Bytes::from_static(b"vm") },
                ],
            )),
        ),
        (
            "open: long-lived graceful restart (RFC 9494 §3), IPv4 unicast with F, stale time 3600 s, after GR with time 0",
            "M 0032 01  04 fde9 005a c0000201 15  02 13  40 02 0000  47 07 0001 01 80 000e10  41 04 0000fde9".into(),
            Context::default(),
            Message::Open(Open::new(
                65001,
                90,
                v4("192.0.2.1"),
                vec![
                    Capability::GracefulRestart(GracefulRestart {
                        restarted: false,
                        notification: false,
                        restart_time: 0,
                        families: vec![],
                    }),
                    Capability::LongLivedGracefulRestart(vec![LongLivedFamily {
                        family: Family::IPV4_UNICAST,
                        forwarding_preserved: true,
                        stale_time: 3600,
                    }]),
                ],
            )),
        ),
        (
            "update: withdrawn, ORIGIN, AS_PATH, NEXT_HOP, MED, LOCAL_PREF, COMMUNITIES, two NLRI",
            "M 0051 02  0004 18c61209  002d
             40 01 01 00  40 02 06 02 01 0000fde9  40 03 04 c0000201  80 04 04 0000000a  40 05 04 00000064
             c0 08 08 fde90064 ffffff01
             18 c61201  19 c6120200"
                .into(),
            four,
            Message::Update(Update {
                withdrawn: vec![Nlri::new(v4_net("198.18.9.0/24"))],
                attrs: Some(Arc::new(PathAttrs {
                    origin: Some(Origin::Igp),
                    as_path: Some(AsPath::from_sequence(&[65001])),
                    next_hop: Some(v4("192.0.2.1")),
                    med: Some(10),
                    local_pref: Some(100),
                    communities: vec![Community::new(65001, 100), Community::NO_EXPORT].into(),
                    ..PathAttrs::default()
                })),
                nlri: vec![Nlri::new(v4_net("198.18.1.0/24")), Nlri::new(v4_net("198.18.2.0/25"))],
                ..Update::default()
            }),
        ),
        (
            "update: MP_REACH_NLRI IPv6 with global and link-local next hop",
            "M 0055 02  0000  003e  40 01 01 00  40 02 06 02 01 0000fde9
             80 0e 2e 0002 01 20 20010db8000000000000000000000001 fe800000000000000000000000000001 00
             40 20010db800000001"
                .into(),
            four,
            Message::Update(Update {
                attrs: Some(Arc::new(PathAttrs {
                    origin: Some(Origin::Igp),
                    as_path: Some(AsPath::from_sequence(&[65001])),
                    ..PathAttrs::default()
                })),
                mp_reach: Some(MpReach {
                    family: Family::IPV6_UNICAST,
                    next_hop: MpNextHop::Ipv6 {
                        global: "2001:db8::1".parse().unwrap(),
                        link_local: Some("fe80::1".parse().unwrap()),
                    },
                    nlri: vec![Nlri::new(net("2001:db8:0:1::/64"))],
                }),
                ..Update::default()
            }),
        ),
        (
            "end-of-rib ipv4",
            "M 0017 02 0000 0000".into(),
            four,
            Message::Update(Update::end_of_rib(Family::IPV4_UNICAST)),
        ),
        (
            "end-of-rib ipv6",
            "M 001d 02 0000 0006 80 0f 03 0002 01".into(),
            four,
            Message::Update(Update::end_of_rib(Family::IPV6_UNICAST)),
        ),
        (
            "notification: cease / administrative shutdown with RFC 9003 message",
            "M 0021 03 06 02 0b 6d61696e74656e616e6365".into(),
            Context::default(),
            Message::Notification(Notification::cease_with_message(
                cease_subcode::ADMINISTRATIVE_SHUTDOWN,
                "maintenance",
            )),
        ),
        (
            "notification: hold timer expired",
            "M 0015 03 04 00".into(),
            Context::default(),
            Message::Notification(Notification {
                code: ErrorCode::HoldTimerExpired,
                subcode: 0,
                data: bytes::Bytes::new(),
            }),
        ),
        (
            "route-refresh: BoRR ipv4 unicast",
            "M 0017 05 0001 01 01".into(),
            Context::default(),
            Message::RouteRefresh(RouteRefresh {
                family: Family::IPV4_UNICAST,
                subtype: RefreshSubtype::BeginningOfRefresh,
            }),
        ),
    ]
}

#[test]
fn every_vector_decodes_to_its_value_and_encodes_to_its_bytes() {
    for (name, wire, cxt, value) in vectors() {
        let wire = hex(&wire);
        assert_eq!(decode(&wire, &cxt), value, "decode {name}");
        assert_eq!(encode(&value, &cxt), wire, "encode {name}");
    }
}

#[test]
fn end_of_rib_is_recognised() {
    let four = Context::MODERN;
    for family in [Family::IPV4_UNICAST, Family::IPV6_UNICAST] {
        let Message::Update(u) = decode(&encode(&Message::Update(Update::end_of_rib(family)), &four), &four) else {
            panic!("not an update")
        };
        assert_eq!(u.end_of_rib_family(), Some(family));
    }
    assert_eq!(Update::withdraw(vec![Nlri::new(v4_net("198.18.0.0/24"))]).end_of_rib_family(), None);
}

#[test]
fn rfc9072_extended_optional_parameters_decode() {
    // Non-Ext OP Len 255, Non-Ext OP Type 255, Extended Opt. Parm. Length 5, one parameter with a 2-octet length.
    let wire = hex("M 0025 01 04 fde9 005a c0000201 ff ff 0005 02 0002 02 00");
    let Message::Open(open) = decode(&wire, &Context::default()) else { panic!("not an open") };
    assert_eq!(open.capabilities, vec![Capability::RouteRefresh]);
}

#[test]
fn open_with_many_capabilities_uses_rfc9072_format_and_reads_back() {
    let caps: Vec<Capability> =
        (0..100).map(|i| Capability::Unknown { code: 200, value: bytes::Bytes::from(vec![i as u8; 3]) }).collect();
    let open = Message::Open(Open::new(65001, 90, v4("192.0.2.1"), caps));
    let wire = encode(&open, &Context::default());
    assert_eq!(&wire[28..30], &[0xff, 0xff], "extended format marker");
    assert_eq!(decode(&wire, &Context::default()), open);
}

#[test]
fn shutdown_message_is_read_and_truncated_on_a_char_boundary() {
    let n = Notification::cease_with_message(cease_subcode::ADMINISTRATIVE_RESET, &"é".repeat(200));
    let msg = n.shutdown_message().unwrap();
    assert_eq!(msg.len(), 254, "255 octets cut inside a 2-octet char");
    assert_eq!(n.to_string(), format!("6/4 \"{msg}\""));
    let other = Notification { code: ErrorCode::Cease, subcode: 3, data: bytes::Bytes::from_static(b"\x02hi") };
    assert_eq!(other.shutdown_message(), None, "only admin shutdown/reset carry one");
}
