//! Properties: `decode(encode(m)) == m` for generated messages; updates too
//! big for one message split into messages that each fit and together carry
//! every prefix; framing over a byte stream; interning shares equal sets.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use common::{decode, decode_all, encode, v4_net};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::collection::vec;
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};
use tortie_bgp::packet::*;

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![Just(Family::IPV4_UNICAST), Just(Family::IPV6_UNICAST)]
}

fn nlri(afi: Afi, add_path: bool) -> impl Strategy<Value = Nlri> {
    let prefix: BoxedStrategy<IpNet> = match afi {
        Afi::Ipv6 => (any::<u128>(), 0u8..=128)
            .prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc()))
            .boxed(),
        _ => (any::<u32>(), 0u8..=32)
            .prop_map(|(a, l)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc()))
            .boxed(),
    };
    let id = if add_path { any::<u32>().prop_map(Some).boxed() } else { Just(None).boxed() };
    (prefix, id).prop_map(|(prefix, path_id)| Nlri { prefix, path_id })
}

/// An NLRI of the UPDATE's own IPv4 fields.
fn ipv4_nlri(add_path: bool) -> impl Strategy<Value = Ipv4Nlri> {
    let prefix = (any::<u32>(), 0u8..=32).prop_map(|(a, l)| Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc());
    let id = if add_path { any::<u32>().prop_map(Some).boxed() } else { Just(None).boxed() };
    (prefix, id).prop_map(|(prefix, path_id)| Nlri { prefix, path_id })
}

fn as_path() -> impl Strategy<Value = AsPath> {
    let kind = prop_oneof![
        Just(SegmentType::Sequence),
        Just(SegmentType::Set),
        Just(SegmentType::ConfedSequence),
        Just(SegmentType::ConfedSet)
    ];
    vec((kind, vec(any::<u32>(), 1..8)).prop_map(|(kind, asns)| Segment { kind, asns: asns.into() }), 0..4)
        .prop_map(|segments| AsPath { segments })
}

fn attrs() -> impl Strategy<Value = PathAttrs> {
    let origin = prop_oneof![Just(Origin::Igp), Just(Origin::Egp), Just(Origin::Incomplete)];
    let ip = any::<u32>().prop_map(Ipv4Addr::from);
    let unknown = (100u8..=200, vec(any::<u8>(), 0..20)).prop_map(|(code, v)| RawAttr {
        flags: 0xe0,
        code,
        value: Bytes::from(v),
    });
    let large = (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(g, a, b)| LargeCommunity {
        global_admin: g,
        local_data_1: a,
        local_data_2: b,
    });
    (
        (origin, as_path(), ip.clone(), proptest::option::of(any::<u32>()), proptest::option::of(any::<u32>())),
        (any::<bool>(), proptest::option::of((any::<u32>(), ip.clone())), vec(any::<u32>(), 0..5)),
        (proptest::option::of(ip.clone()), vec(ip, 0..4), vec(any::<[u8; 8]>(), 0..3), vec(large, 0..3)),
        vec(unknown, 0..2),
    )
        .prop_map(
            |((origin, as_path, nh, med, lp), (atomic, agg, comms), (orig, clusters, ext, large), unknown)| PathAttrs {
                origin: Some(origin),
                as_path: Some(as_path),
                next_hop: Some(nh),
                med,
                local_pref: lp,
                atomic_aggregate: atomic,
                aggregator: agg.map(|(asn, address)| Aggregator { asn, address }),
                communities: comms.into_iter().map(Community).collect(),
                originator_id: orig,
                cluster_list: clusters.into(),
                ext_communities: ext.into_iter().map(ExtCommunity).collect(),
                large_communities: large.into(),
                unknown: unknown.into(),
                // Carried in MP_REACH_NLRI, not among the attributes.
                mp_next_hop: None,
            },
        )
}

fn next_hop(family: Family) -> BoxedStrategy<MpNextHop> {
    match family.afi {
        Afi::Ipv6 => (any::<u128>(), proptest::option::of(any::<u128>()))
            .prop_map(|(g, ll)| MpNextHop::Ipv6 { global: Ipv6Addr::from(g), link_local: ll.map(Ipv6Addr::from) })
            .boxed(),
        _ => any::<u32>().prop_map(|a| MpNextHop::Ipv4(Ipv4Addr::from(a))).boxed(),
    }
}

/// Updates that fit one message under `cxt` and survive decoding unchanged.
fn update(cxt: Context) -> impl Strategy<Value = Update> {
    let v4 = cxt.add_path.contains(Family::IPV4_UNICAST);
    let withdraw_only =
        (vec(ipv4_nlri(v4), 0..20), proptest::option::of(family())).prop_flat_map(move |(withdrawn, mp_family)| {
            let unreach: BoxedStrategy<Option<MpUnreach>> = match mp_family {
                None => Just(None).boxed(),
                Some(family) => vec(nlri(family.afi, cxt.add_path.contains(family)), 0..20)
                    .prop_map(move |w| Some(MpUnreach { family, withdrawn: w }))
                    .boxed(),
            };
            unreach.prop_map(move |mp_unreach| Update { withdrawn: withdrawn.clone(), mp_unreach, ..Update::default() })
        });
    let announce = (attrs(), vec(ipv4_nlri(v4), 0..20), family()).prop_flat_map(move |(attrs, nlri_v4, fam)| {
        let reach = (next_hop(fam), vec(nlri(fam.afi, cxt.add_path.contains(fam)), 1..20))
            .prop_map(move |(next_hop, list)| MpReach { family: fam, next_hop, nlri: list });
        (proptest::option::of(reach), Just(attrs), Just(nlri_v4)).prop_map(|(mp_reach, attrs, nlri)| Update {
            attrs: Some(Arc::new(attrs)),
            nlri,
            mp_reach,
            ..Update::default()
        })
    });
    prop_oneof![withdraw_only, announce]
}

fn capability() -> impl Strategy<Value = Capability> {
    let gr =
        (any::<bool>(), any::<bool>(), 0u16..4096, vec((family(), any::<bool>()), 0..3)).prop_map(|(r, n, t, f)| {
            Capability::GracefulRestart(GracefulRestart {
                restarted: r,
                notification: n,
                restart_time: t,
                families: f
                    .into_iter()
                    .map(|(family, forwarding_preserved)| GracefulRestartFamily { family, forwarding_preserved })
                    .collect(),
            })
        });
    let llgr = vec((family(), any::<bool>(), 0u32..=MAX_LONG_LIVED_STALE_TIME), 0..3).prop_map(|v| {
        Capability::LongLivedGracefulRestart(
            v.into_iter()
                .map(|(family, forwarding_preserved, stale_time)| LongLivedFamily {
                    family,
                    forwarding_preserved,
                    stale_time,
                })
                .collect(),
        )
    });
    let mode = prop_oneof![Just(AddPathMode::Receive), Just(AddPathMode::Send), Just(AddPathMode::Both)];
    prop_oneof![
        family().prop_map(Capability::Multiprotocol),
        Just(Capability::RouteRefresh),
        Just(Capability::EnhancedRouteRefresh),
        Just(Capability::ExtendedMessage),
        any::<u32>().prop_map(Capability::FourOctetAs),
        gr,
        llgr,
        vec((family(), mode), 1..3).prop_map(|v| Capability::AddPath(
            v.into_iter().map(|(family, mode)| AddPathFamily { family, mode }).collect()
        )),
        vec((any::<u16>(), any::<u16>()), 1..3).prop_map(|v| Capability::ExtendedNextHop(
            v.into_iter()
                .map(|(s, n)| ExtendedNextHop { nlri_afi: Afi::Ipv4, nlri_safi: s, next_hop_afi: Afi::from_u16(n) })
                .collect()
        )),
        (100u8..=120, vec(any::<u8>(), 0..10))
            .prop_map(|(code, v)| Capability::Unknown { code, value: Bytes::from(v) }),
    ]
}

fn message(cxt: Context) -> impl Strategy<Value = Message> {
    let open = (any::<u16>(), prop_oneof![Just(0u16), 3u16..], 1u32.., vec(capability(), 0..8)).prop_map(
        |(my_as, hold_time, id, capabilities)| {
            Message::Open(Open { my_as, hold_time, bgp_id: Ipv4Addr::from(id), capabilities })
        },
    );
    let notification = (1u8..=7, any::<u8>(), vec(any::<u8>(), 0..40)).prop_map(|(c, s, d)| {
        Message::Notification(Notification { code: ErrorCode::from_u8(c), subcode: s, data: Bytes::from(d) })
    });
    let refresh = (family(), 0u8..=3).prop_map(|(family, s)| {
        let subtype = match s {
            0 => RefreshSubtype::Request,
            1 => RefreshSubtype::BeginningOfRefresh,
            2 => RefreshSubtype::EndOfRefresh,
            v => RefreshSubtype::Reserved(v),
        };
        Message::RouteRefresh(RouteRefresh { family, subtype })
    });
    prop_oneof![open, notification, refresh, Just(Message::Keepalive), update(cxt).prop_map(Message::Update)]
}

fn context() -> impl Strategy<Value = Context> {
    (any::<bool>(), any::<bool>()).prop_map(|(v4, v6)| {
        let mut add_path = FamilySet::NONE;
        if v4 {
            add_path.insert(Family::IPV4_UNICAST);
        }
        if v6 {
            add_path.insert(Family::IPV6_UNICAST);
        }
        Context { four_octet_as: true, extended_message: true, add_path }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decode_of_encode_is_identity((cxt, m) in context().prop_flat_map(|c| (Just(c), message(c)))) {
        let wire = encode(&m, &cxt);
        prop_assert_eq!(decode(&wire, &cxt), m);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in vec(any::<u8>(), 0..600), cxt in context()) {
        let _ = Message::decode(&bytes, &cxt);
        let mut framed = hex_marker_header(&bytes);
        let _ = Message::decode(&framed, &cxt);
        framed.truncate(framed.len() / 2);
        let _ = Message::decode(&framed, &Context::default());
    }
}

/// `bytes` behind a valid marker and a length that matches (type from the first byte).
fn hex_marker_header(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0xff; 16];
    out.extend(((19 + bytes.len().saturating_sub(1)) as u16).to_be_bytes());
    out.push(bytes.first().map_or(2, |t| t % 6));
    out.extend(bytes.iter().skip(1));
    out
}

fn sample_attrs() -> Arc<PathAttrs> {
    Arc::new(PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::from_sequence(&[65001, 65002])),
        next_hop: Some("192.0.2.1".parse().unwrap()),
        communities: (0..50).map(|i| Community::new(65001, i)).collect(),
        ..PathAttrs::default()
    })
}

fn v4_prefixes(n: u32) -> Vec<Ipv4Nlri> {
    (0..n).map(|i| Nlri::new(Ipv4Net::new(Ipv4Addr::from(0xc612_0000 + (i << 8)), 24).unwrap())).collect()
}

#[test]
fn big_ipv4_update_splits_into_full_messages_that_carry_every_prefix() {
    let cxt = Context { four_octet_as: true, ..Context::default() };
    let prefixes = v4_prefixes(5000);
    let update = Update { withdrawn: v4_prefixes(3000), ..Update::announce(sample_attrs(), prefixes.clone()) };
    let mut wire = BytesMut::new();
    let n = update.encode(&cxt, &mut wire).unwrap();
    let messages = decode_all(&wire, &cxt);
    assert_eq!(messages.len(), n);
    let (mut announced, mut withdrawn) = (Vec::new(), Vec::new());
    for m in &messages {
        let Message::Update(u) = m else { panic!("not an update") };
        if !u.nlri.is_empty() {
            assert_eq!(u.attrs.as_deref(), Some(&*sample_attrs()), "every piece carries the attributes");
        }
        announced.extend(u.nlri.iter().copied());
        withdrawn.extend(u.withdrawn.iter().copied());
    }
    assert_eq!(announced, prefixes);
    assert_eq!(withdrawn, v4_prefixes(3000));
    // Packed: (3000 + 5000) × 4 octets of prefixes need at least 8 messages of 4096; no more than one extra each.
    assert!(n <= 10, "{n} messages");
    let mut offset = 0;
    while offset < wire.len() {
        let len = u16::from_be_bytes([wire[offset + 16], wire[offset + 17]]) as usize;
        assert!(len <= MAX_MESSAGE_LEN);
        offset += len;
    }
}

#[test]
fn big_mp_reach_update_splits_and_extended_messages_need_fewer() {
    let prefixes: Vec<Nlri> = (0..3000u128)
        .map(|i| Nlri::new(IpNet::V6(Ipv6Net::new(Ipv6Addr::from((0x2001_0db8u128 << 96) | (i << 64)), 64).unwrap())))
        .collect();
    let reach = MpReach {
        family: Family::IPV6_UNICAST,
        next_hop: MpNextHop::Ipv6 { global: "2001:db8::1".parse().unwrap(), link_local: None },
        nlri: prefixes.clone(),
    };
    let update = Update { mp_reach: Some(reach), attrs: Some(sample_attrs()), ..Update::default() };
    let count = |cxt: &Context| {
        let mut wire = BytesMut::new();
        let n = update.encode(cxt, &mut wire).unwrap();
        let got: Vec<Nlri> = decode_all(&wire, cxt)
            .into_iter()
            .flat_map(|m| match m {
                Message::Update(u) => u.mp_reach.unwrap().nlri,
                _ => panic!("not an update"),
            })
            .collect();
        assert_eq!(got, prefixes);
        n
    };
    let small = count(&Context { four_octet_as: true, ..Context::default() });
    let big = count(&Context::MODERN);
    assert!(small >= 7 && big == 1, "4096: {small} messages, 65535: {big}");
}

#[test]
fn attributes_that_cannot_fit_are_an_error_not_a_bad_message() {
    let attrs = PathAttrs { communities: (0..1100).map(Community).collect(), ..(*sample_attrs()).clone() };
    let update = Update::announce(Arc::new(attrs), v4_prefixes(1));
    let err = update.encode(&Context::default(), &mut BytesMut::new()).unwrap_err();
    assert!(matches!(err, EncodeError::AttributesTooLarge { max: 4096, .. }), "{err}");
}

#[test]
fn framing_reassembles_messages_split_across_reads() {
    let cxt = Context::MODERN;
    let messages = vec![
        Message::Keepalive,
        Message::Update(Update::announce(sample_attrs(), v4_prefixes(100))),
        Message::Notification(Notification::cease_with_message(cease_subcode::ADMINISTRATIVE_RESET, "bye")),
    ];
    let mut codec = BgpCodec::default();
    codec.context(cxt, cxt);
    let mut stream = BytesMut::new();
    for m in &messages {
        codec.encode(m, &mut stream).unwrap();
    }
    // Pre-encoded bytes (an update group's shared UPDATE) go out as they are.
    codec.encode(Bytes::from(encode(&Message::Keepalive, &cxt)), &mut stream).unwrap();
    let mut got = Vec::new();
    let mut buf = BytesMut::new();
    for chunk in stream.chunks(7) {
        buf.extend_from_slice(chunk);
        while let Some(m) = codec.decode(&mut buf).unwrap() {
            got.push(m);
        }
    }
    let mut want = messages;
    want.push(Message::Keepalive);
    assert_eq!(got, want);
    assert!(buf.is_empty());
}

#[test]
fn interner_stores_each_distinct_attribute_set_once() {
    let mut interner = AttrInterner::default();
    let sets: Vec<PathAttrs> = (0..300).map(|i| PathAttrs { med: Some(i), ..(*sample_attrs()).clone() }).collect();
    let routes: Vec<Arc<PathAttrs>> =
        (0..100_000).map(|i| interner.intern(Arc::new(sets[i % sets.len()].clone()))).collect();
    assert_eq!(interner.len(), 300);
    assert!(Arc::ptr_eq(&routes[0], &routes[300]));
    drop(routes);
    interner.collect_garbage();
    assert!(interner.is_empty());
}

#[test]
fn prefix_helper_is_sane() {
    assert_eq!(v4_prefixes(2)[1].prefix, v4_net("198.18.1.0/24"));
}
