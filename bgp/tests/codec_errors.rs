//! Malformed input: every error maps to the NOTIFICATION of RFC 4271 §6 and
//! the action of RFC 7606, and UPDATEs repaired under RFC 7606 come out as
//! the RFC says.

#![allow(clippy::unwrap_used)]

mod common;

use common::{decode, encode, hex, net, v4_net};
use tortie_bgp::packet::*;

const FOUR: Context = Context { four_octet_as: true, extended_message: false, add_path: FamilySet::NONE };

/// An UPDATE from hex pieces, with the length fields computed.
fn update(withdrawn: &str, attrs: &str, nlri: &str) -> Vec<u8> {
    let (w, a, n) = (hex(withdrawn), hex(attrs), hex(nlri));
    let mut body = Vec::new();
    body.extend((w.len() as u16).to_be_bytes());
    body.extend(&w);
    body.extend((a.len() as u16).to_be_bytes());
    body.extend(&a);
    body.extend(&n);
    let mut msg = hex("M");
    msg.extend(((19 + body.len()) as u16).to_be_bytes());
    msg.push(2);
    msg.extend(body);
    msg
}

/// ORIGIN IGP, AS_PATH 65001 (4-octet), NEXT_HOP 192.0.2.1.
const BASE: &str = "40 01 01 00  40 02 06 02 01 0000fde9  40 03 04 c0000201";
const NLRI: &str = "18 c61201";

fn error(wire: &[u8], cxt: &Context) -> DecodeError {
    match Message::decode(wire, cxt) {
        Err(e) => e,
        Ok(m) => panic!("{wire:02x?} must be refused, decoded as {m:?}"),
    }
}

fn repaired(wire: &[u8]) -> Update {
    match decode(wire, &FOUR) {
        Message::Update(u) => u,
        other => panic!("not an update: {other:?}"),
    }
}

#[test]
fn fatal_errors_map_to_their_notifications() {
    // (name, wire, (code, subcode), data)
    type Case = (&'static str, Vec<u8>, (ErrorCode, u8), Vec<u8>);
    let cases: Vec<Case> = vec![
        ("marker", hex("fe ff ffffffffffffffffffffffffffff 0013 04"), (ErrorCode::MessageHeader, 1), vec![]),
        ("length below 19", hex("M 0012 04"), (ErrorCode::MessageHeader, 2), vec![0, 0x12]),
        ("keepalive of 20", hex("M 0014 04 00"), (ErrorCode::MessageHeader, 2), vec![0, 0x14]),
        ("length above 4096", hex("M 1001 02"), (ErrorCode::MessageHeader, 2), vec![0x10, 0x01]),
        ("type 9", hex("M 0013 09"), (ErrorCode::MessageHeader, 3), vec![9]),
        ("version 3", hex("M 001d 01 03 fde9 005a c0000201 00"), (ErrorCode::Open, 1), vec![0, 4]),
        ("hold time 2", hex("M 001d 01 04 fde9 0002 c0000201 00"), (ErrorCode::Open, 6), vec![]),
        ("bgp id 0", hex("M 001d 01 04 fde9 005a 00000000 00"), (ErrorCode::Open, 3), vec![]),
        ("optional parameter 1", hex("M 0020 01 04 fde9 005a c0000201 03 01 01 00"), (ErrorCode::Open, 4), vec![]),
        (
            "capability overruns",
            hex("M 0021 01 04 fde9 005a c0000201 04 02 02 41 04"),
            (ErrorCode::Open, 0),
            hex("41 04"),
        ),
        ("withdrawn length overruns", hex("M 0017 02 0009 0000"), (ErrorCode::Update, 1), vec![]),
        ("attribute length overruns", hex("M 0017 02 0000 0001"), (ErrorCode::Update, 1), vec![]),
        ("NLRI /33", update("", BASE, "21 c6120101 00"), (ErrorCode::Update, 10), vec![]),
        ("withdrawn truncated", update("18 c612", "", ""), (ErrorCode::Update, 10), vec![]),
        ("unknown well-known attribute", update("", "40 63 01 00", ""), (ErrorCode::Update, 2), hex("40 63 01 00")),
        ("MP_REACH twice", update("", "80 0f 03 0002 01  80 0f 03 0002 01", ""), (ErrorCode::Update, 1), vec![]),
        (
            "route-refresh of 5 octets",
            hex("M 0018 05 0001 00 01 00"),
            (ErrorCode::RouteRefresh, 1),
            hex("0001 00 01 00"),
        ),
    ];
    for (name, wire, (code, subcode), data) in cases {
        let e = error(&wire, &FOUR);
        assert_eq!((e.code, e.subcode), (code, subcode), "{name}: {e}");
        assert_eq!(e.data, data, "{name}: data");
        assert_eq!(e.action, ErrorAction::SessionReset, "{name}");
        assert_eq!(e.notification().code, code);
    }
}

#[test]
fn malformed_mp_reach_disables_its_family() {
    // IPv6 unicast with a 5-octet next hop.
    let e = error(&update("", &format!("{BASE} 80 0e 0a 0002 01 05 0102030405 00"), ""), &FOUR);
    assert_eq!(e.action, ErrorAction::AfiSafiDisable(Family::IPV6_UNICAST), "{e}");
    assert_eq!((e.code, e.subcode), (ErrorCode::Update, 9));
    assert!(e.is_fatal());
}

#[test]
fn treat_as_withdraw_turns_announcements_into_withdrawals() {
    let cases = [
        ("ORIGIN value 5", "40 01 01 05  40 02 06 02 01 0000fde9  40 03 04 c0000201", 6),
        ("ORIGIN flagged optional", "c0 01 01 00  40 02 06 02 01 0000fde9  40 03 04 c0000201", 4),
        ("malformed AS_PATH", "40 01 01 00  40 02 05 02 02 0000fde9  40 03 04 c0000201", 11),
        ("NEXT_HOP of 5 octets", "40 01 01 00  40 02 06 02 01 0000fde9  40 03 05 c000020101", 5),
        ("missing NEXT_HOP", "40 01 01 00  40 02 06 02 01 0000fde9", 3),
        ("COMMUNITIES of 6 octets", &format!("{BASE} c0 08 06 000000000000"), 5),
        ("LOCAL_PREF of 2 octets", &format!("{BASE} 40 05 02 0064"), 5),
        ("LARGE_COMMUNITY of 0 octets", &format!("{BASE} c0 20 00"), 5),
        ("attribute overruns the section", &format!("{BASE} c0 08 08 0000"), 1),
    ];
    for (name, attrs, subcode) in cases {
        let u = repaired(&update("18 c61209", attrs, NLRI));
        assert_eq!(u.nlri, vec![], "{name}");
        assert_eq!(u.attrs, None, "{name}");
        assert_eq!(u.withdrawn, vec![Nlri::new(v4_net("198.18.9.0/24")), Nlri::new(v4_net("198.18.1.0/24"))], "{name}");
        let e = u.errors.iter().find(|e| e.action == ErrorAction::TreatAsWithdraw).expect(name);
        assert_eq!(e.subcode, subcode, "{name}: {e}");
    }
}

#[test]
fn treat_as_withdraw_covers_mp_reach_routes() {
    let mp = "80 0e 1e 0002 01 10 20010db8000000000000000000000001 00 40 20010db800000001";
    let u = repaired(&update("", &format!("40 01 01 07 40 02 00 {mp}"), ""));
    assert!(u.mp_reach.is_none());
    let unreach = u.mp_unreach.unwrap();
    assert_eq!((unreach.family, unreach.withdrawn), (Family::IPV6_UNICAST, vec![Nlri::new(net("2001:db8:0:1::/64"))]));
}

#[test]
fn attribute_discard_keeps_the_route() {
    let cases = [
        ("ATOMIC_AGGREGATE of 1 octet", format!("{BASE} 40 06 01 00")),
        ("AGGREGATOR of 5 octets", format!("{BASE} c0 07 05 0000fde900")),
        ("second MED", format!("{BASE} 80 04 04 00000001 80 04 04 00000002")),
    ];
    for (name, attrs) in cases {
        let u = repaired(&update("", &attrs, NLRI));
        assert_eq!(u.nlri, vec![Nlri::new(v4_net("198.18.1.0/24"))], "{name}");
        let attrs = u.attrs.as_ref().expect(name);
        assert!(!attrs.atomic_aggregate && attrs.aggregator.is_none(), "{name}");
        assert!(u.errors.iter().all(|e| e.action == ErrorAction::AttributeDiscard), "{name}: {:?}", u.errors);
        assert_eq!(u.errors.len(), 1, "{name}");
        if name == "second MED" {
            assert_eq!(attrs.med, Some(1), "the first one stays");
        }
    }
}

#[test]
fn unknown_optional_attributes_pass_on_if_transitive_with_partial_set() {
    let u = repaired(&update("", &format!("{BASE} c0 63 02 abcd 80 64 01 ff"), NLRI));
    let attrs = u.attrs.clone().unwrap();
    assert_eq!(
        attrs.unknown,
        vec![RawAttr { flags: 0xc0, code: 0x63, value: bytes::Bytes::from_static(&[0xab, 0xcd]) }].into()
    );
    assert!(u.errors.is_empty(), "optional non-transitive unknowns are dropped quietly");
    let resent = encode(&Message::Update(u), &FOUR);
    let tail = hex("e0 63 02 abcd");
    assert!(resent.windows(tail.len()).any(|w| w == tail), "Partial bit set when passed on");
}

#[test]
fn two_octet_peers_get_as_trans_and_as4_path_and_we_merge_it_back() {
    let two = Context::default();
    let attrs = PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::from_sequence(&[65001, 4_200_000_000, 4_200_000_001])),
        next_hop: Some("192.0.2.1".parse().unwrap()),
        aggregator: Some(Aggregator { asn: 4_200_000_000, address: "192.0.2.9".parse().unwrap() }),
        ..PathAttrs::default()
    };
    let msg = Message::Update(Update::announce(attrs.clone().into_shared(), vec![Nlri::new(v4_net("198.18.1.0/24"))]));
    let wire = encode(&msg, &two);
    // AS_PATH with AS_TRANS (5ba0) in 2-octet form, AGGREGATOR with AS_TRANS, then AS4_PATH and AS4_AGGREGATOR.
    for piece in ["40 02 08 02 03 fde9 5ba0 5ba0", "c0 07 06 5ba0 c0000209", "c0 11", "c0 12 08 fa56ea00 c0000209"] {
        let piece = hex(piece);
        assert!(wire.windows(piece.len()).any(|w| w == piece), "missing {piece:02x?} in {wire:02x?}");
    }
    assert_eq!(decode(&wire, &two), msg, "merged back per RFC 6793 §4.2.3");
    // Between two 4-octet speakers, AS4_PATH is neither sent nor believed.
    let wire4 = encode(&msg, &FOUR);
    assert!(!wire4.windows(2).any(|w| w == [0xc0, 0x11]));
}

#[test]
fn real_2_octet_aggregator_voids_the_as4_attributes() {
    // AS_PATH 65001 23456 from a 2-octet speaker, AGGREGATOR 65001 (not AS_TRANS), AS4_PATH 4200000000.
    let attrs = "40 01 01 00  40 02 06 02 02 fde9 5ba0  40 03 04 c0000201  c0 07 06 fde9 c0000209
                 c0 11 06 02 01 fa56ea00";
    let Message::Update(u) = decode(&update("", attrs, NLRI), &Context::default()) else { panic!() };
    let path = u.attrs.unwrap().as_path.clone().unwrap();
    assert_eq!(path.asns().collect::<Vec<_>>(), vec![65001, 23456]);
}

#[test]
fn truncated_input_waits_for_more() {
    let wire = update("", BASE, NLRI);
    for cut in [0, 10, 18, 19, wire.len() - 1] {
        assert_eq!(Message::decode(&wire[..cut], &FOUR).unwrap(), None, "cut at {cut}");
    }
}
