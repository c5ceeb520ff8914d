//! UPDATE decode (and encode) speed of tortie's codec next to the other Rust
//! BGP codecs, in one run on the same bytes.
//!
//! Three corpora of 1000 UPDATEs each are built with tortie's own encoder
//! (4-octet AS, no add-path, 4096-octet messages) in the setup:
//!
//! * `ipv4`: ORIGIN, AS_PATH (3 ASNs), NEXT_HOP, MED and 200 consecutive /24s
//!   from 240.0.0.0/4 in the NLRI field;
//! * `ipv6`: ORIGIN, AS_PATH and MP_REACH_NLRI (IPv6 unicast, global and
//!   link-local next hop) with 100 /48s from 2001:db8::/32;
//! * `communities`: ORIGIN, AS_PATH, NEXT_HOP, 40 standard, 5 extended and 10
//!   large communities, 20 IPv4 /24s.
//!
//! Every decoder walks every prefix and attribute of its result into a
//! [`Tally`] that goes to `black_box`, so lazy decoders cannot skip work, and
//! the tallies are compared (outside the timed loop) before anything is
//! measured. At the end the bench prints a markdown table (ns/message,
//! ns/prefix) read back from criterion's estimates.
//!
//! Run: `cargo bench -p tortie-bgp --bench codec`.

// A bench, not library code: setup failures should stop it loudly.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use tortie_bgp::packet::{
    AsPath, Community, Context, ExtCommunity, Family, FamilySet, Ipv4Nlri, LargeCommunity, Message, MpNextHop, MpReach,
    Nlri, Origin, PathAttrs, Update,
};

/// The session both ends negotiated: 4-octet AS, no extended messages, no add-path.
const CXT: Context = Context { four_octet_as: true, extended_message: false, add_path: FamilySet::NONE };
/// UPDATEs per corpus.
const MESSAGES: usize = 1000;

// ---------------------------------------------------------------------------
// What every decoder must find.

/// Everything a decoder read out of its results. Equal tallies mean equal
/// readings of the corpus (up to wrapping sums).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    /// Prefixes (NLRI field, withdrawn field, MP_REACH, MP_UNREACH).
    prefixes: u64,
    /// Sum of prefix lengths.
    prefix_len_sum: u64,
    /// Wrapping sum of the prefix addresses (IPv4: the address; IPv6: its top 64 bits).
    addr_sum: u64,
    /// Standard, extended and large communities.
    communities: u64,
    /// Wrapping sum of community values (standard value, large community's
    /// three parts, a route target's local administrator).
    community_sum: u64,
    /// Sum of the AS numbers in AS_PATH.
    asn_sum: u64,
    /// Wrapping sum of ORIGIN, MED, LOCAL_PREF and next hops (low 32 bits of
    /// each IPv6 address, link-local included).
    attr_sum: u64,
}

impl Tally {
    fn v4(&mut self, addr: Ipv4Addr, len: u8) {
        self.prefixes += 1;
        self.prefix_len_sum += u64::from(len);
        self.addr_sum = self.addr_sum.wrapping_add(u64::from(u32::from(addr)));
    }

    fn v6(&mut self, addr: Ipv6Addr, len: u8) {
        self.prefixes += 1;
        self.prefix_len_sum += u64::from(len);
        self.addr_sum = self.addr_sum.wrapping_add((u128::from(addr) >> 64) as u64);
    }

    fn net(&mut self, net: IpNet) {
        match net {
            IpNet::V4(n) => self.v4(n.network(), n.prefix_len()),
            IpNet::V6(n) => self.v6(n.network(), n.prefix_len()),
        }
    }

    fn community(&mut self, value: u64) {
        self.communities += 1;
        self.community_sum = self.community_sum.wrapping_add(value);
    }

    fn attr(&mut self, value: u64) {
        self.attr_sum = self.attr_sum.wrapping_add(value);
    }

    fn ip(&mut self, addr: IpAddr) {
        match addr {
            IpAddr::V4(a) => self.attr(u64::from(u32::from(a))),
            IpAddr::V6(a) => self.v6_hop(a),
        }
    }

    fn v6_hop(&mut self, addr: Ipv6Addr) {
        self.attr(u128::from(addr) as u32 as u64);
    }

    fn large(&mut self, global: u32, l1: u32, l2: u32) {
        self.community(u64::from(global) + u64::from(l1) + u64::from(l2));
    }

    /// Names of the fields that differ from `other`, with both values.
    fn differences(&self, other: &Tally) -> Vec<String> {
        let fields = [
            ("prefix lengths", self.prefix_len_sum, other.prefix_len_sum),
            ("prefix addresses", self.addr_sum, other.addr_sum),
            ("community values", self.community_sum, other.community_sum),
            ("AS_PATH ASNs", self.asn_sum, other.asn_sum),
            ("ORIGIN/MED/LOCAL_PREF/next hops", self.attr_sum, other.attr_sum),
        ];
        fields.iter().filter(|(_, a, b)| a != b).map(|(name, a, b)| format!("{name} (sum {a}, encoded {b})")).collect()
    }
}

/// A route target's local administrator, from the 8 wire octets of an
/// extended community (0 for other types).
fn rt_local(ext: &[u8; 8]) -> u64 {
    if ext[0] == 0x00 && ext[1] == 0x02 { u64::from(u32::from_be_bytes([ext[4], ext[5], ext[6], ext[7]])) } else { 0 }
}

// ---------------------------------------------------------------------------
// The corpora, built with tortie's encoder.

/// UPDATE messages back to back, and where each one is.
struct Corpus {
    name: &'static str,
    bytes: Bytes,
    messages: Vec<Range<usize>>,
    /// The UPDATEs the bytes were encoded from.
    updates: Vec<Update>,
}

impl Corpus {
    fn build(name: &'static str, updates: Vec<Update>) -> Corpus {
        let mut buf = BytesMut::new();
        let mut messages = Vec::with_capacity(updates.len());
        for u in &updates {
            let start = buf.len();
            let written = u.encode(&CXT, &mut buf).unwrap();
            assert_eq!(written, 1, "{name}: an UPDATE did not fit one 4096-octet message");
            assert!(buf.len() - start <= 4096);
            messages.push(start..buf.len());
        }
        Corpus { name, bytes: buf.freeze(), messages, updates }
    }

    fn message(&self, i: usize) -> &[u8] {
        &self.bytes[self.messages[i].clone()]
    }
}

fn as_path(i: usize) -> AsPath {
    let i = i as u32;
    AsPath::from_sequence(&[65001, 4_200_000_000 + i, 64512 + (i % 1000)])
}

/// The n-th /24 of 240.0.0.0/4.
fn v4_24(n: usize) -> Ipv4Nlri {
    let addr = Ipv4Addr::from(0xF000_0000u32 + ((n as u32) << 8));
    Nlri::new(Ipv4Net::new(addr, 24).unwrap())
}

fn ipv4_corpus() -> Corpus {
    let updates = (0..MESSAGES)
        .map(|i| {
            let attrs = PathAttrs {
                origin: Some(Origin::Igp),
                as_path: Some(as_path(i)),
                next_hop: Some(Ipv4Addr::new(192, 0, 2, 1 + (i % 200) as u8)),
                med: Some(i as u32 * 10),
                ..PathAttrs::default()
            };
            Update::announce(attrs.into_shared(), (0..200).map(|j| v4_24(i * 200 + j)).collect())
        })
        .collect();
    Corpus::build("ipv4", updates)
}

fn ipv6_corpus() -> Corpus {
    let updates = (0..MESSAGES)
        .map(|i| {
            let attrs = PathAttrs { origin: Some(Origin::Igp), as_path: Some(as_path(i)), ..PathAttrs::default() };
            let nlri = (0..100)
                .map(|j| {
                    // 2001:db8:N::/48, wrapping after the 65536 /48s of the /32.
                    let n = ((i * 100 + j) % 65536) as u16;
                    let addr = Ipv6Addr::new(0x2001, 0x0db8, n, 0, 0, 0, 0, 0);
                    Nlri::new(IpNet::V6(Ipv6Net::new(addr, 48).unwrap()))
                })
                .collect();
            let next_hop = MpNextHop::Ipv6 {
                global: Ipv6Addr::new(0x2001, 0x0db8, 0xffff, 0, 0, 0, 0, 1 + (i % 200) as u16),
                link_local: Some(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1 + (i % 200) as u16)),
            };
            Update {
                attrs: Some(attrs.into_shared()),
                mp_reach: Some(MpReach { family: Family::IPV6_UNICAST, next_hop, nlri }),
                ..Update::default()
            }
        })
        .collect();
    Corpus::build("ipv6", updates)
}

fn communities_corpus() -> Corpus {
    let updates = (0..MESSAGES)
        .map(|i| {
            let n = i as u32;
            let attrs = PathAttrs {
                origin: Some(Origin::Igp),
                as_path: Some(as_path(i)),
                next_hop: Some(Ipv4Addr::new(192, 0, 2, 1 + (i % 200) as u8)),
                // Distinct within a message: zettabgp keeps communities in sets.
                communities: (0..40).map(|c| Community::new(64512 + c, (i % 65536) as u16)).collect(),
                ext_communities: (0..5).map(|e| ExtCommunity::route_target(65001, n * 5 + e)).collect(),
                large_communities: (0..10)
                    .map(|l| LargeCommunity { global_admin: 4_200_000_000 + l, local_data_1: n, local_data_2: l })
                    .collect(),
                ..PathAttrs::default()
            };
            // After the ipv4 corpus's prefixes, so the two do not overlap.
            Update::announce(attrs.into_shared(), (0..20).map(|j| v4_24(200_000 + i * 20 + j)).collect())
        })
        .collect();
    Corpus::build("communities", updates)
}

// ---------------------------------------------------------------------------
// The decoders. Each decodes every message of a corpus and walks the result.

type DecodeFn = fn(&Corpus) -> Result<Tally, String>;

/// Decoders in table order: tortie first.
const DECODERS: &[(&str, DecodeFn)] = &[
    ("tortie", tortie::decode),
    ("bgpkit-parser", bgpkit::decode),
    ("zettabgp", zetta::decode),
    ("netgauze-bgp-pkt", netgauze::decode),
];

mod tortie {
    use super::*;

    pub fn decode(corpus: &Corpus) -> Result<Tally, String> {
        let mut t = Tally::default();
        for i in 0..corpus.messages.len() {
            let msg = corpus.message(i);
            match Message::decode(msg, &CXT) {
                Ok(Some((Message::Update(u), len))) if len == msg.len() => walk(&u, &mut t),
                other => return Err(format!("message {i}: {other:?}")),
            }
        }
        Ok(t)
    }

    pub fn walk(u: &Update, t: &mut Tally) {
        for n in u.withdrawn.iter().chain(&u.nlri) {
            t.v4(n.prefix.network(), n.prefix.prefix_len());
        }
        if let Some(r) = &u.mp_reach {
            match r.next_hop {
                MpNextHop::Ipv4(a) => t.attr(u64::from(u32::from(a))),
                MpNextHop::Ipv6 { global, link_local } => {
                    t.v6_hop(global);
                    if let Some(ll) = link_local {
                        t.v6_hop(ll);
                    }
                }
            }
            for n in &r.nlri {
                t.net(n.prefix);
            }
        }
        if let Some(r) = &u.mp_unreach {
            for n in &r.withdrawn {
                t.net(n.prefix);
            }
        }
        let Some(a) = &u.attrs else { return };
        if let Some(o) = a.origin {
            t.attr(match o {
                Origin::Igp => 0,
                Origin::Egp => 1,
                Origin::Incomplete => 2,
            });
        }
        if let Some(path) = &a.as_path {
            for s in &path.segments {
                t.asn_sum += s.asns.iter().map(|&x| u64::from(x)).sum::<u64>();
            }
        }
        if let Some(nh) = a.next_hop {
            t.attr(u64::from(u32::from(nh)));
        }
        t.attr(u64::from(a.med.unwrap_or(0)) + u64::from(a.local_pref.unwrap_or(0)));
        for c in &a.communities {
            t.community(u64::from(c.0));
        }
        for c in &a.ext_communities {
            t.community(rt_local(&c.0));
        }
        for c in &a.large_communities {
            t.large(c.global_admin, c.local_data_1, c.local_data_2);
        }
    }
}

mod bgpkit {
    use bgpkit_parser::models::{
        AsPathSegment, AsnLength, AttributeValue, BgpMessage, Community, ExtendedCommunity, NextHopAddress, Nlri,
    };

    use super::*;

    pub fn decode(corpus: &Corpus) -> Result<Tally, String> {
        let mut t = Tally::default();
        for (i, range) in corpus.messages.iter().enumerate() {
            // The API takes `Bytes`: a slice of the corpus is a reference count, no copy.
            let mut data = corpus.bytes.slice(range.clone());
            match bgpkit_parser::parser::bgp::parse_bgp_message(&mut data, false, &AsnLength::Bits32) {
                Ok(BgpMessage::Update(u)) => {
                    for p in u.withdrawn_prefixes.iter().chain(&u.announced_prefixes) {
                        t.net(p.prefix);
                    }
                    for attr in u.attributes.iter() {
                        walk_attr(attr, &mut t);
                    }
                }
                other => return Err(format!("message {i}: {other:?}")),
            }
        }
        Ok(t)
    }

    fn nlri(n: &Nlri, t: &mut Tally) {
        match n.next_hop {
            Some(NextHopAddress::Ipv4(a)) => t.attr(u64::from(u32::from(a))),
            Some(NextHopAddress::Ipv6(a)) => t.v6_hop(a),
            Some(NextHopAddress::Ipv6LinkLocal(g, ll)) => {
                t.v6_hop(g);
                t.v6_hop(ll);
            }
            _ => {}
        }
        for p in &n.prefixes {
            t.net(p.prefix);
        }
    }

    fn walk_attr(attr: &AttributeValue, t: &mut Tally) {
        match attr {
            AttributeValue::Origin(o) => t.attr(*o as u64),
            AttributeValue::AsPath(path) => {
                for s in &path.segments {
                    let (AsPathSegment::AsSequence(asns)
                    | AsPathSegment::AsSet(asns)
                    | AsPathSegment::ConfedSequence(asns)
                    | AsPathSegment::ConfedSet(asns)) = s;
                    t.asn_sum += asns.iter().map(|a| u64::from(a.to_u32())).sum::<u64>();
                }
            }
            AttributeValue::NextHop(a) => t.ip(*a),
            AttributeValue::MultiExitDiscriminator(v) | AttributeValue::LocalPreference(v) => t.attr(u64::from(*v)),
            AttributeValue::Communities(list) => {
                for c in list {
                    t.community(match c {
                        Community::NoExport => 0xFFFF_FF01,
                        Community::NoAdvertise => 0xFFFF_FF02,
                        Community::NoExportSubConfed => 0xFFFF_FF03,
                        Community::Custom(asn, v) => u64::from(asn.to_u32() << 16 | u32::from(*v)),
                    });
                }
            }
            AttributeValue::ExtendedCommunities(list) => {
                for c in list {
                    t.community(match c {
                        ExtendedCommunity::TransitiveTwoOctetAs(rt) if rt.subtype == 0x02 => {
                            u64::from(u32::from_be_bytes(rt.local_admin))
                        }
                        _ => 0,
                    });
                }
            }
            AttributeValue::LargeCommunities(list) => {
                for c in list {
                    t.large(c.global_admin, c.local_data[0], c.local_data[1]);
                }
            }
            AttributeValue::MpReachNlri(n) | AttributeValue::MpUnreachNlri(n) => nlri(n, t),
            _ => {}
        }
    }
}

mod zetta {
    use zettabgp::prelude::{
        BgpASitem, BgpAddr, BgpAddrs, BgpAttrItem, BgpMessage, BgpMessageType, BgpSessionParams, BgpTransportMode,
        BgpUpdateMessage,
    };

    use super::*;

    /// A 4-octet-AS IPv4 session without add-path.
    pub fn session() -> BgpSessionParams {
        let mut params =
            BgpSessionParams::new(65000, 90, BgpTransportMode::IPv4, Ipv4Addr::new(192, 0, 2, 254), vec![]);
        params.has_as32bit = true;
        // Otherwise zettabgp guesses add-path from NLRI that start with two zero octets.
        params.fuzzy_pathid = false;
        params
    }

    pub fn decode(corpus: &Corpus) -> Result<Tally, String> {
        let params = session();
        let mut t = Tally::default();
        for i in 0..corpus.messages.len() {
            let msg = corpus.message(i);
            let (kind, len) = params.decode_message_head(msg).map_err(|e| format!("message {i}: {e:?}"))?;
            if kind != BgpMessageType::Update || 19 + len != msg.len() {
                return Err(format!("message {i}: {kind:?} of {len} octets"));
            }
            let mut u = BgpUpdateMessage::new();
            u.decode_from(&params, &msg[19..]).map_err(|e| format!("message {i}: {e:?}"))?;
            addrs(&u.withdraws, &mut t);
            addrs(&u.updates, &mut t);
            for attr in &u.attrs {
                walk_attr(attr, &mut t);
            }
        }
        Ok(t)
    }

    fn addrs(a: &BgpAddrs, t: &mut Tally) {
        match a {
            BgpAddrs::IPV4U(list) => list.iter().for_each(|p| t.v4(p.addr, p.prefixlen)),
            BgpAddrs::IPV6U(list) => list.iter().for_each(|p| t.v6(p.addr, p.prefixlen)),
            // No other family is in the corpora; a mismatch shows in the tally check.
            _ => {}
        }
    }

    fn walk_attr(attr: &BgpAttrItem, t: &mut Tally) {
        match attr {
            BgpAttrItem::Origin(o) => t.attr(o.value as u64),
            BgpAttrItem::ASPath(path) => {
                for item in &path.value {
                    t.asn_sum += match item {
                        BgpASitem::Seq(s) => s.value.iter().map(|a| u64::from(a.value)).sum::<u64>(),
                        BgpASitem::Set(s) => s.value.iter().map(|a| u64::from(a.value)).sum::<u64>(),
                    };
                }
            }
            BgpAttrItem::NextHop(nh) => t.ip(nh.value),
            BgpAttrItem::MED(m) => t.attr(u64::from(m.value)),
            BgpAttrItem::LocalPref(l) => t.attr(u64::from(l.value)),
            BgpAttrItem::CommunityList(list) => list.value.iter().for_each(|c| t.community(u64::from(c.value))),
            BgpAttrItem::ExtCommunityList(list) => list
                .value
                .iter()
                .for_each(|c| t.community(if c.ctype == 0x00 && c.subtype == 0x02 { u64::from(c.b) } else { 0 })),
            BgpAttrItem::LargeCommunityList(list) => list.value.iter().for_each(|c| t.large(c.ga, c.ldp1, c.ldp2)),
            BgpAttrItem::MPUpdates(mp) => {
                match mp.nexthop {
                    BgpAddr::V4(a) => t.attr(u64::from(u32::from(a))),
                    // zettabgp keeps only the first 16 octets of a 32-octet IPv6 next hop.
                    BgpAddr::V6(a) => t.v6_hop(a),
                    _ => {}
                }
                addrs(&mp.addrs, t);
            }
            BgpAttrItem::MPWithdraws(mp) => addrs(&mp.addrs, t),
            _ => {}
        }
    }
}

mod netgauze {
    use netgauze_bgp_pkt::BgpMessage;
    use netgauze_bgp_pkt::community::{ExtendedCommunity, TransitiveTwoOctetExtendedCommunity};
    use netgauze_bgp_pkt::path_attribute::{AsPath, MpReach, MpUnreach, PathAttributeValue};
    use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
    use netgauze_parse_utils::reader::SliceReader;
    use netgauze_parse_utils::traits::ParseFromWithOneInput;

    use super::*;

    pub fn decode(corpus: &Corpus) -> Result<Tally, String> {
        // Default: 4-octet AS, no add-path, fail on any malformed attribute.
        let mut ctx = BgpParsingContext::default();
        let mut t = Tally::default();
        for i in 0..corpus.messages.len() {
            let msg = corpus.message(i);
            let mut reader = SliceReader::new(msg);
            match BgpMessage::parse(&mut reader, &mut ctx) {
                Ok(BgpMessage::Update(u)) if reader.remaining() == 0 => {
                    for p in u.withdraw_routes().iter().chain(u.nlri()) {
                        let net = p.network().address();
                        t.v4(net.network(), net.prefix_len());
                    }
                    for attr in u.path_attributes() {
                        walk_attr(attr.value(), &mut t);
                    }
                }
                other => return Err(format!("message {i}: {other:?}")),
            }
        }
        Ok(t)
    }

    fn walk_attr(attr: &PathAttributeValue, t: &mut Tally) {
        match attr {
            PathAttributeValue::Origin(o) => t.attr(u64::from(u8::from(*o))),
            PathAttributeValue::AsPath(AsPath::As4PathSegments(segments)) => {
                for s in segments {
                    t.asn_sum += s.as_numbers().iter().map(|&a| u64::from(a)).sum::<u64>();
                }
            }
            PathAttributeValue::AsPath(AsPath::As2PathSegments(segments)) => {
                for s in segments {
                    t.asn_sum += s.as_numbers().iter().map(|&a| u64::from(a)).sum::<u64>();
                }
            }
            PathAttributeValue::NextHop(nh) => t.attr(u64::from(u32::from(nh.next_hop()))),
            PathAttributeValue::MultiExitDiscriminator(m) => t.attr(u64::from(m.metric())),
            PathAttributeValue::LocalPreference(l) => t.attr(u64::from(l.metric())),
            PathAttributeValue::Communities(list) => {
                list.communities().iter().for_each(|c| t.community(u64::from(c.value())))
            }
            PathAttributeValue::ExtendedCommunities(list) => list.communities().iter().for_each(|c| {
                t.community(match c {
                    ExtendedCommunity::TransitiveTwoOctet(TransitiveTwoOctetExtendedCommunity::RouteTarget {
                        local_admin,
                        ..
                    }) => u64::from(*local_admin),
                    _ => 0,
                })
            }),
            PathAttributeValue::LargeCommunities(list) => {
                list.communities().iter().for_each(|c| t.large(c.global_admin(), c.local_data1(), c.local_data2()))
            }
            PathAttributeValue::MpReach(MpReach::Ipv4Unicast { next_hop, next_hop_local, nlri }) => {
                t.ip(*next_hop);
                if let Some(ll) = next_hop_local {
                    t.v6_hop(*ll);
                }
                for p in nlri {
                    let net = p.network().address();
                    t.v4(net.network(), net.prefix_len());
                }
            }
            PathAttributeValue::MpReach(MpReach::Ipv6Unicast { next_hop_global, next_hop_local, nlri }) => {
                t.v6_hop(*next_hop_global);
                if let Some(ll) = next_hop_local {
                    t.v6_hop(*ll);
                }
                for p in nlri {
                    let net = p.network().address();
                    t.v6(net.network(), net.prefix_len());
                }
            }
            PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { nlri }) => {
                for p in nlri {
                    let net = p.network().address();
                    t.v6(net.network(), net.prefix_len());
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// The run.

/// A decoder's standing on one corpus, decided before timing.
enum Verdict {
    /// Same prefixes and communities as tortie's encoder put in.
    Ok,
    /// Decoded, but read something else than what was encoded.
    Wrong(Tally),
    /// Could not decode the corpus.
    Failed(String),
}

/// What the corpus holds, counted from the `Update` values it was encoded from.
fn expected(corpus: &Corpus) -> Tally {
    let mut t = Tally::default();
    for u in &corpus.updates {
        tortie::walk(u, &mut t);
    }
    t
}

/// Decodes each corpus once with each decoder and compares what they found.
fn check(corpus: &Corpus) -> Vec<Verdict> {
    let want = expected(corpus);
    eprintln!(
        "corpus {}: {} messages, {} octets, {} prefixes, {} communities",
        corpus.name,
        corpus.messages.len(),
        corpus.bytes.len(),
        want.prefixes,
        want.communities
    );
    DECODERS
        .iter()
        .map(|(name, decode)| match decode(corpus) {
            Err(e) => {
                eprintln!("  {name}: CANNOT DECODE this corpus: {e}");
                Verdict::Failed(e)
            }
            Ok(got) if got.prefixes != want.prefixes || got.communities != want.communities => {
                eprintln!("  {name}: WRONG counts: {got:?}, encoded {want:?}");
                Verdict::Wrong(got)
            }
            Ok(got) => {
                if got != want {
                    eprintln!(
                        "  {name}: same prefix and community counts, but it read other values for: {}",
                        got.differences(&want).join(", ")
                    );
                } else {
                    eprintln!("  {name}: ok, same tally as encoded");
                }
                Verdict::Ok
            }
        })
        .collect()
}

fn criterion_dir() -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("..").join("criterion"))
}

/// Nanoseconds per iteration from criterion's estimates (slope when
/// linear sampling gave one, else the mean), if this run wrote them (not in
/// `--test` mode, nor for benchmarks a filter left out).
fn estimate(dir: &std::path::Path, group: &str, bench: &str, since: SystemTime) -> Option<f64> {
    let path = dir.join(group).join(bench).join("new").join("estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < since {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let pick = |k: &str| json.get(k)?.get("point_estimate")?.as_f64();
    pick("slope").or_else(|| pick("mean"))
}

fn main() {
    let started = SystemTime::now();
    let corpora = [ipv4_corpus(), ipv6_corpus(), communities_corpus()];
    let verdicts: Vec<Vec<Verdict>> = corpora.iter().map(check).collect();

    // Encode input: the UPDATEs as tortie decodes them; re-encoding must give the same bytes.
    let decoded: Vec<Vec<Update>> = corpora
        .iter()
        .map(|c| {
            (0..c.messages.len())
                .map(|i| match Message::decode(c.message(i), &CXT).unwrap() {
                    Some((Message::Update(u), _)) => u,
                    other => panic!("{}: message {i} decoded as {other:?}", c.name),
                })
                .collect()
        })
        .collect();
    for (c, updates) in corpora.iter().zip(&decoded) {
        let mut out = BytesMut::new();
        for u in updates {
            u.encode(&CXT, &mut out).unwrap();
        }
        assert_eq!(&out[..], &c.bytes[..], "{}: decode then encode changed the bytes", c.name);
    }

    let dir = criterion_dir();
    let mut crit = Criterion::default()
        .output_directory(&dir)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6))
        .configure_from_args();

    for (c, verdict) in corpora.iter().zip(&verdicts) {
        let want = expected(c);
        let mut group = crit.benchmark_group(format!("decode-{}", c.name));
        group.throughput(Throughput::Elements(want.prefixes));
        for ((name, decode), v) in DECODERS.iter().zip(verdict) {
            if let Verdict::Ok = v {
                group.bench_function(*name, |b| b.iter(|| black_box(decode(black_box(c)).unwrap())));
            }
        }
        group.finish();
    }
    for (c, updates) in corpora.iter().zip(&decoded) {
        let prefixes = expected(c).prefixes;
        let mut group = crit.benchmark_group(format!("encode-{}", c.name));
        group.throughput(Throughput::Elements(prefixes));
        let mut buf = BytesMut::with_capacity(4096);
        group.bench_function("tortie", |b| {
            b.iter(|| {
                let mut octets = 0;
                for u in black_box(updates) {
                    buf.clear();
                    u.encode(&CXT, &mut buf).unwrap();
                    octets += buf.len();
                }
                black_box(octets)
            })
        });
        group.finish();
    }
    crit.final_summary();
    report(&dir, started, &corpora, &verdicts);
}

/// Prints the markdown tables for docs/benchmarks.md.
fn report(dir: &std::path::Path, since: SystemTime, corpora: &[Corpus], verdicts: &[Vec<Verdict>]) {
    println!();
    println!("| corpus | decoder | ns/message | ns/prefix | ratio vs fastest other |");
    println!("|---|---|---:|---:|---:|");
    let mut summary = Vec::new();
    for (c, verdict) in corpora.iter().zip(verdicts) {
        let want = expected(c);
        let group = format!("decode-{}", c.name);
        let times: BTreeMap<&str, f64> = DECODERS
            .iter()
            .zip(verdict)
            .filter(|(_, v)| matches!(v, Verdict::Ok))
            .filter_map(|((name, _), _)| Some((*name, estimate(dir, &group, name, since)?)))
            .collect();
        for ((name, _), v) in DECODERS.iter().zip(verdict) {
            let Some(&ns) = times.get(name) else {
                let why = match v {
                    Verdict::Failed(e) => format!("cannot decode: {}", e.chars().take(120).collect::<String>()),
                    Verdict::Wrong(t) => {
                        format!("wrong result: {} prefixes, {} communities", t.prefixes, t.communities)
                    }
                    Verdict::Ok => "not measured in this run".into(),
                };
                println!("| {} | {name} | — | — | {why} |", c.name);
                continue;
            };
            let best_other = times.iter().filter(|(n, _)| *n != name).map(|(_, t)| *t).fold(f64::INFINITY, f64::min);
            let ratio = if best_other.is_finite() { format!("{:.2}", ns / best_other) } else { "—".into() };
            println!(
                "| {} | {name} | {:.0} | {:.2} | {ratio} |",
                c.name,
                ns / c.messages.len() as f64,
                ns / want.prefixes as f64
            );
        }
        if let Some(&ours) = times.get("tortie") {
            let fastest = times.iter().filter(|(n, _)| **n != "tortie").min_by(|a, b| a.1.total_cmp(b.1));
            if let Some((other, t)) = fastest {
                summary.push(format!(
                    "{}: tortie is {:.2}x faster per prefix than the fastest other crate ({other})",
                    c.name,
                    t / ours
                ));
            }
        }
    }
    println!();
    println!("| corpus | encode ns/message | encode ns/prefix | prefixes/s |");
    println!("|---|---:|---:|---:|");
    for c in corpora {
        let prefixes = expected(c).prefixes as f64;
        if let Some(ns) = estimate(dir, &format!("encode-{}", c.name), "tortie", since) {
            println!(
                "| {} | {:.0} | {:.2} | {:.1} M |",
                c.name,
                ns / c.messages.len() as f64,
                ns / prefixes,
                prefixes / ns * 1e3
            );
        }
    }
    println!();
    for line in summary {
        println!("{line}");
    }
}
