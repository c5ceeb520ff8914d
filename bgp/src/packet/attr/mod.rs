//! Path attributes (RFC 4271 §4.3, §5) with RFC 7606 error handling.
//!
//! ```text
//!  0                   1
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Attr. Flags  |Attr. Type Code|   then Attribute Length: 1 octet,
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+   or 2 with the Extended Length flag
//!  O T P E 0 0 0 0
//! ```
//!
//! One [`Descriptor`] row per attribute type says its name, its required
//! Optional/Transitive flags and what RFC 7606 does when it is malformed.
//! Decoded attributes, apart from MP_REACH/MP_UNREACH (which carry NLRI),
//! go into one [`PathAttrs`], shared behind an `Arc` by every route that
//! carries them.

mod as_path;
mod community;
mod list;
mod mp;

use std::net::Ipv4Addr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

pub use as_path::{AsPath, Segment, SegmentType};
pub use community::{Community, ExtCommunity, LargeCommunity};
pub use list::List;
pub(crate) use mp::Decoded;
pub use mp::{MpNextHop, MpReach, MpUnreach};

use super::cxt::Context;
use super::error::{DecodeError, ErrorAction};
use super::notification::{ErrorCode, update_subcode};
use super::open::AS_TRANS;

/// Attribute flag bits (RFC 4271 §4.3).
pub mod flag {
    /// Optional (1) or well-known (0).
    pub const OPTIONAL: u8 = 0x80;
    /// Transitive.
    pub const TRANSITIVE: u8 = 0x40;
    /// Partial: an optional transitive attribute passed on by a speaker that
    /// did not recognise it.
    pub const PARTIAL: u8 = 0x20;
    /// Extended Length: the length field has 2 octets.
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// Attribute type codes (IANA "BGP Path Attributes").
pub mod code {
    /// RFC 4271
    pub const ORIGIN: u8 = 1;
    /// RFC 4271
    pub const AS_PATH: u8 = 2;
    /// RFC 4271
    pub const NEXT_HOP: u8 = 3;
    /// RFC 4271
    pub const MULTI_EXIT_DISC: u8 = 4;
    /// RFC 4271
    pub const LOCAL_PREF: u8 = 5;
    /// RFC 4271
    pub const ATOMIC_AGGREGATE: u8 = 6;
    /// RFC 4271
    pub const AGGREGATOR: u8 = 7;
    /// RFC 1997
    pub const COMMUNITIES: u8 = 8;
    /// RFC 4456
    pub const ORIGINATOR_ID: u8 = 9;
    /// RFC 4456
    pub const CLUSTER_LIST: u8 = 10;
    /// RFC 4760
    pub const MP_REACH_NLRI: u8 = 14;
    /// RFC 4760
    pub const MP_UNREACH_NLRI: u8 = 15;
    /// RFC 4360
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    /// RFC 6793
    pub const AS4_PATH: u8 = 17;
    /// RFC 6793
    pub const AS4_AGGREGATOR: u8 = 18;
    /// RFC 8092
    pub const LARGE_COMMUNITY: u8 = 32;
}

/// ORIGIN (RFC 4271 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// 0: learned from an IGP.
    Igp,
    /// 1: learned from EGP.
    Egp,
    /// 2: learned some other way.
    Incomplete,
}

/// AGGREGATOR / AS4_AGGREGATOR (RFC 4271 §5.1.7, RFC 6793).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Aggregator {
    /// The AS that aggregated.
    pub asn: u32,
    /// Its BGP identifier.
    pub address: Ipv4Addr,
}

/// An attribute kept as bytes: optional transitive ones we do not know are
/// passed on with the Partial bit set (RFC 4271 §5).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawAttr {
    /// Flags as received (Extended Length is recomputed on encode).
    pub flags: u8,
    /// Type code.
    pub code: u8,
    /// Value.
    pub value: Bytes,
}

/// The path attributes of a route, except MP_REACH/MP_UNREACH.
///
/// Empty lists mean "attribute absent". AS_PATH and AGGREGATOR hold the
/// 4-octet view: with a 2-octet peer, AS4_PATH / AS4_AGGREGATOR are merged
/// in on decode (RFC 6793 §4.2.3) and split out again on encode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathAttrs {
    /// ORIGIN.
    pub origin: Option<Origin>,
    /// AS_PATH (empty path ≠ absent: iBGP routes carry an empty one).
    pub as_path: Option<AsPath>,
    /// NEXT_HOP (IPv4 NLRI only; MP routes have theirs in MP_REACH_NLRI).
    pub next_hop: Option<Ipv4Addr>,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// ATOMIC_AGGREGATE.
    pub atomic_aggregate: bool,
    /// AGGREGATOR.
    pub aggregator: Option<Aggregator>,
    /// COMMUNITIES.
    pub communities: List<Community>,
    /// ORIGINATOR_ID (RFC 4456).
    pub originator_id: Option<Ipv4Addr>,
    /// CLUSTER_LIST (RFC 4456), nearest reflector first.
    pub cluster_list: List<Ipv4Addr>,
    /// EXTENDED_COMMUNITIES.
    pub ext_communities: List<ExtCommunity>,
    /// LARGE_COMMUNITY.
    pub large_communities: List<LargeCommunity>,
    /// Unrecognised optional transitive attributes.
    pub unknown: List<RawAttr>,
    /// The next hop of the MP_REACH_NLRI routes that came (or go) with
    /// these attributes (RFC 4760 §3). It travels inside MP_REACH_NLRI, so
    /// the codec neither writes nor reads it here; the RIB keeps it with
    /// the attributes so an IPv6 route's next hop is shared like the rest.
    /// (Boxed: an IPv4 route's set, a full table's usual one, is 25 octets smaller.)
    pub mp_next_hop: Option<Box<MpNextHop>>,
}

/// What RFC 7606 does with a malformed attribute of a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnError {
    TreatAsWithdraw,
    Discard,
    /// MP_REACH/MP_UNREACH: AFI/SAFI disable, or session reset (RFC 7606 §5.3, §7.11).
    Mp,
}

/// One row of the attribute table.
struct Descriptor {
    name: &'static str,
    optional: bool,
    transitive: bool,
    on_error: OnError,
}

/// The attribute table (BIRD's `bgp_attr_table` idea): flags and error
/// handling per type; RFC 7606 §7 gives the actions.
fn descriptor(code: u8) -> Option<&'static Descriptor> {
    use OnError::*;
    const fn row(name: &'static str, optional: bool, transitive: bool, on_error: OnError) -> Descriptor {
        Descriptor { name, optional, transitive, on_error }
    }
    static ORIGIN: Descriptor = row("ORIGIN", false, true, TreatAsWithdraw);
    static AS_PATH: Descriptor = row("AS_PATH", false, true, TreatAsWithdraw);
    static NEXT_HOP: Descriptor = row("NEXT_HOP", false, true, TreatAsWithdraw);
    static MED: Descriptor = row("MULTI_EXIT_DISC", true, false, TreatAsWithdraw);
    static LOCAL_PREF: Descriptor = row("LOCAL_PREF", false, true, TreatAsWithdraw);
    static ATOMIC: Descriptor = row("ATOMIC_AGGREGATE", false, true, Discard);
    static AGGREGATOR: Descriptor = row("AGGREGATOR", true, true, Discard);
    static COMMUNITIES: Descriptor = row("COMMUNITIES", true, true, TreatAsWithdraw);
    static ORIGINATOR: Descriptor = row("ORIGINATOR_ID", true, false, TreatAsWithdraw);
    static CLUSTER: Descriptor = row("CLUSTER_LIST", true, false, TreatAsWithdraw);
    static MP_REACH: Descriptor = row("MP_REACH_NLRI", true, false, Mp);
    static MP_UNREACH: Descriptor = row("MP_UNREACH_NLRI", true, false, Mp);
    static EXT: Descriptor = row("EXTENDED_COMMUNITIES", true, true, TreatAsWithdraw);
    // RFC 6793 §6: malformed AS4_PATH / AS4_AGGREGATOR are discarded.
    static AS4_PATH: Descriptor = row("AS4_PATH", true, true, Discard);
    static AS4_AGGREGATOR: Descriptor = row("AS4_AGGREGATOR", true, true, Discard);
    // RFC 8092 §6: treat-as-withdraw.
    static LARGE: Descriptor = row("LARGE_COMMUNITY", true, true, TreatAsWithdraw);
    Some(match code {
        code::ORIGIN => &ORIGIN,
        code::AS_PATH => &AS_PATH,
        code::NEXT_HOP => &NEXT_HOP,
        code::MULTI_EXIT_DISC => &MED,
        code::LOCAL_PREF => &LOCAL_PREF,
        code::ATOMIC_AGGREGATE => &ATOMIC,
        code::AGGREGATOR => &AGGREGATOR,
        code::COMMUNITIES => &COMMUNITIES,
        code::ORIGINATOR_ID => &ORIGINATOR,
        code::CLUSTER_LIST => &CLUSTER,
        code::MP_REACH_NLRI => &MP_REACH,
        code::MP_UNREACH_NLRI => &MP_UNREACH,
        code::EXTENDED_COMMUNITIES => &EXT,
        code::AS4_PATH => &AS4_PATH,
        code::AS4_AGGREGATOR => &AS4_AGGREGATOR,
        code::LARGE_COMMUNITY => &LARGE,
        _ => return None,
    })
}

/// The decoded path attribute section of an UPDATE.
#[derive(Debug, Default)]
pub(crate) struct Section {
    /// `None` when no attribute went into the set.
    pub attrs: Option<Arc<PathAttrs>>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    /// Errors handled by treat-as-withdraw or attribute discard.
    pub errors: Vec<DecodeError>,
    /// RFC 7606: the UPDATE's routes are to be treated as withdrawn.
    pub withdraw: bool,
}

/// A malformed attribute value: the UPDATE error subcode and why.
struct Malformed(u8, String);

fn length_error(name: &str, len: usize, want: &str) -> Malformed {
    Malformed(update_subcode::ATTRIBUTE_LENGTH_ERROR, format!("{name} length {len}, expected {want}"))
}

/// Fixed-size records, or `None` if `value` does not divide into them.
fn records<const N: usize>(value: &[u8]) -> Option<impl ExactSizeIterator<Item = &[u8; N]> + '_> {
    let (chunks, rest) = value.as_chunks::<N>();
    rest.is_empty().then(|| chunks.iter())
}

fn ipv4_value(name: &str, value: &[u8]) -> Result<Ipv4Addr, Malformed> {
    <[u8; 4]>::try_from(value).map(Ipv4Addr::from).map_err(|_| length_error(name, value.len(), "4"))
}

fn u32_value(name: &str, value: &[u8]) -> Result<u32, Malformed> {
    <[u8; 4]>::try_from(value).map(u32::from_be_bytes).map_err(|_| length_error(name, value.len(), "4"))
}

/// Attributes decoded so far, plus the AS4 ones waiting to be merged.
#[derive(Default)]
struct Decoding {
    /// The attributes, moved into their `Arc` once complete.
    attrs: PathAttrs,
    section: Section,
    as4_path: Option<AsPath>,
    as4_aggregator: Option<Aggregator>,
    /// Attribute type codes met so far (a 256-bit set).
    seen: [u64; 4],
}

/// Decodes the path attribute section. `has_nlri`: the UPDATE's IPv4 NLRI
/// field is not empty (then NEXT_HOP is mandatory). Errors that RFC 7606
/// handles by treat-as-withdraw or discard end up in
/// [`Section::errors`]; the rest are returned.
pub(crate) fn decode_section(mut input: &[u8], cxt: &Context, has_nlri: bool) -> Result<Section, DecodeError> {
    let mut st = Decoding::default();
    while !input.is_empty() {
        let Some((raw, rest)) = split_attr(input) else {
            // RFC 7606 §4: an attribute overrunning the section, or too few
            // octets left for a header: treat-as-withdraw; the section length
            // still locates the NLRI.
            st.section.withdraw = true;
            st.section.errors.push(DecodeError {
                code: ErrorCode::Update,
                subcode: update_subcode::MALFORMED_ATTRIBUTE_LIST,
                data: Vec::new(),
                action: ErrorAction::TreatAsWithdraw,
                reason: format!("path attribute overruns the attribute section ({} octets left)", input.len()),
            });
            break;
        };
        input = rest;
        decode_attr(&mut st, raw.flags, raw.code, raw.value, raw.whole, cxt)?;
    }
    finish(&mut st, cxt, has_nlri)?;
    // Only the shared attributes and the MP attributes leave: the ~300
    // octets of the decoding state are not moved around.
    st.section.attrs = (!st.attrs.is_empty()).then(|| Arc::new(std::mem::take(&mut st.attrs)));
    Ok(std::mem::take(&mut st.section))
}

/// One attribute as found in the section.
struct AttrSlice<'a> {
    flags: u8,
    code: u8,
    value: &'a [u8],
    /// Header and value: the data of a NOTIFICATION about it.
    whole: &'a [u8],
}

/// Splits one attribute off the front of `input`.
fn split_attr(input: &[u8]) -> Option<(AttrSlice<'_>, &[u8])> {
    let (&[flags, code], after) = input.split_first_chunk::<2>()?;
    let (len, header) = if flags & flag::EXTENDED_LENGTH != 0 {
        let (l, _) = after.split_first_chunk::<2>()?;
        (u16::from_be_bytes(*l) as usize, 4)
    } else {
        (*after.first()? as usize, 3)
    };
    let whole = input.get(..header + len)?;
    Some((AttrSlice { flags, code, value: &whole[header..], whole }, &input[header + len..]))
}

fn decode_attr(
    st: &mut Decoding,
    flags: u8,
    code: u8,
    value: &[u8],
    whole: &[u8],
    cxt: &Context,
) -> Result<(), DecodeError> {
    let Some(desc) = descriptor(code) else {
        return unknown_attr(st, flags, code, value, whole);
    };
    let (word, bit) = (code as usize / 64, 1u64 << (code % 64));
    let repeated = st.seen[word] & bit != 0;
    st.seen[word] |= bit;
    if repeated {
        // RFC 7606 §3 g: a repeated MP attribute resets; any other repeat is discarded.
        if desc.on_error == OnError::Mp {
            return Err(DecodeError::reset(
                ErrorCode::Update,
                update_subcode::MALFORMED_ATTRIBUTE_LIST,
                &[],
                format!("{} appears twice", desc.name),
            ));
        }
        st.section.errors.push(DecodeError {
            code: ErrorCode::Update,
            subcode: update_subcode::MALFORMED_ATTRIBUTE_LIST,
            data: whole.to_vec(),
            action: ErrorAction::AttributeDiscard,
            reason: format!("{} appears twice; the repeat is discarded", desc.name),
        });
        return Ok(());
    }
    let flags_ok = (flags & flag::OPTIONAL != 0) == desc.optional && (flags & flag::TRANSITIVE != 0) == desc.transitive;
    if desc.on_error == OnError::Mp {
        return decode_mp(st, flags_ok, code, desc.name, value, whole, cxt);
    }
    let result = if flags_ok {
        decode_known(st, code, desc.name, value, cxt)
    } else {
        Err(Malformed(update_subcode::ATTRIBUTE_FLAGS_ERROR, format!("{} has flags {flags:#04x}", desc.name)))
    };
    let Err(Malformed(subcode, reason)) = result else { return Ok(()) };
    let action = match desc.on_error {
        OnError::TreatAsWithdraw => {
            st.section.withdraw = true;
            ErrorAction::TreatAsWithdraw
        }
        OnError::Discard | OnError::Mp => ErrorAction::AttributeDiscard,
    };
    st.section.errors.push(DecodeError { code: ErrorCode::Update, subcode, data: whole.to_vec(), action, reason });
    Ok(())
}

/// RFC 4271 §5: an unrecognised well-known attribute resets the session;
/// an optional transitive one is kept (and passed on with Partial set); an
/// optional non-transitive one is quietly ignored.
fn unknown_attr(st: &mut Decoding, flags: u8, code: u8, value: &[u8], whole: &[u8]) -> Result<(), DecodeError> {
    if flags & flag::OPTIONAL == 0 {
        return Err(DecodeError::reset(
            ErrorCode::Update,
            update_subcode::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
            whole,
            format!("unrecognised well-known attribute {code}"),
        ));
    }
    if flags & flag::TRANSITIVE != 0 {
        let flags = flags & !flag::EXTENDED_LENGTH;
        st.attrs.unknown.push(RawAttr { flags, code, value: Bytes::copy_from_slice(value) });
    }
    Ok(())
}

fn decode_known(st: &mut Decoding, code: u8, name: &str, value: &[u8], cxt: &Context) -> Result<(), Malformed> {
    let attrs = &mut st.attrs;
    match code {
        code::ORIGIN => {
            attrs.origin = Some(match value {
                [0] => Origin::Igp,
                [1] => Origin::Egp,
                [2] => Origin::Incomplete,
                [v] => {
                    return Err(Malformed(update_subcode::INVALID_ORIGIN_ATTRIBUTE, format!("ORIGIN value {v}")));
                }
                _ => return Err(length_error(name, value.len(), "1")),
            })
        }
        code::AS_PATH => {
            let path = AsPath::decode(value, cxt.four_octet_as)
                .ok_or_else(|| Malformed(update_subcode::MALFORMED_AS_PATH, "malformed AS_PATH".into()))?;
            attrs.as_path = Some(path);
        }
        code::NEXT_HOP => attrs.next_hop = Some(ipv4_value(name, value)?),
        code::MULTI_EXIT_DISC => attrs.med = Some(u32_value(name, value)?),
        code::LOCAL_PREF => attrs.local_pref = Some(u32_value(name, value)?),
        code::ATOMIC_AGGREGATE if value.is_empty() => attrs.atomic_aggregate = true,
        code::ATOMIC_AGGREGATE => return Err(length_error(name, value.len(), "0")),
        code::AGGREGATOR => {
            attrs.aggregator = Some(match (cxt.four_octet_as, value) {
                (false, [a, b, ip @ ..]) if ip.len() == 4 => {
                    Aggregator { asn: u32::from(u16::from_be_bytes([*a, *b])), address: ipv4_value(name, ip)? }
                }
                (true, [a, b, c, d, ip @ ..]) if ip.len() == 4 => {
                    Aggregator { asn: u32::from_be_bytes([*a, *b, *c, *d]), address: ipv4_value(name, ip)? }
                }
                (four, _) => return Err(length_error(name, value.len(), if four { "8" } else { "6" })),
            })
        }
        code::COMMUNITIES => {
            let list = records::<4>(value).ok_or_else(|| length_error(name, value.len(), "a multiple of 4"))?;
            attrs.communities = list.map(|c| Community(u32::from_be_bytes(*c))).collect();
        }
        code::ORIGINATOR_ID => attrs.originator_id = Some(ipv4_value(name, value)?),
        code::CLUSTER_LIST => {
            let list = records::<4>(value).ok_or_else(|| length_error(name, value.len(), "a multiple of 4"))?;
            attrs.cluster_list = list.map(|c| Ipv4Addr::from(*c)).collect();
        }
        code::EXTENDED_COMMUNITIES => {
            let list = records::<8>(value).ok_or_else(|| length_error(name, value.len(), "a multiple of 8"))?;
            attrs.ext_communities = list.map(|c| ExtCommunity(*c)).collect();
        }
        code::LARGE_COMMUNITY => {
            let list = records::<12>(value)
                .filter(|_| !value.is_empty())
                .ok_or_else(|| length_error(name, value.len(), "a non-zero multiple of 12"))?;
            attrs.large_communities = list
                .map(|c| LargeCommunity {
                    global_admin: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                    local_data_1: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                    local_data_2: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
                })
                .collect();
        }
        code::AS4_PATH => {
            let path = AsPath::decode(value, true)
                .filter(|p| !p.has_confed())
                .ok_or_else(|| Malformed(update_subcode::OPTIONAL_ATTRIBUTE_ERROR, "malformed AS4_PATH".into()))?;
            st.as4_path = Some(path);
        }
        code::AS4_AGGREGATOR => {
            let [a, b, c, d, ip @ ..] = value else { return Err(length_error(name, value.len(), "8")) };
            st.as4_aggregator =
                Some(Aggregator { asn: u32::from_be_bytes([*a, *b, *c, *d]), address: ipv4_value(name, ip)? });
        }
        _ => {}
    }
    Ok(())
}

/// MP_REACH_NLRI / MP_UNREACH_NLRI. RFC 7606 §7.11 and §5.3: a malformed
/// one disables its AFI/SAFI when the family can be read, else resets the
/// session; either way the UPDATE cannot be used.
fn decode_mp(
    st: &mut Decoding,
    flags_ok: bool,
    code: u8,
    name: &str,
    value: &[u8],
    whole: &[u8],
    cxt: &Context,
) -> Result<(), DecodeError> {
    if !flags_ok {
        return Err(DecodeError::reset(
            ErrorCode::Update,
            update_subcode::ATTRIBUTE_FLAGS_ERROR,
            whole,
            format!("{name} has flags {:#04x}", whole[0]),
        ));
    }
    let result = if code == code::MP_REACH_NLRI {
        MpReach::decode(value, cxt).map(|d| match d {
            Decoded::Supported(reach) => st.section.mp_reach = Some(reach),
            Decoded::Unsupported(family) => st.section.errors.push(unsupported_family(name, family)),
        })
    } else {
        MpUnreach::decode(value, cxt).map(|d| match d {
            Decoded::Supported(unreach) => st.section.mp_unreach = Some(unreach),
            Decoded::Unsupported(family) => st.section.errors.push(unsupported_family(name, family)),
        })
    };
    result.map_err(|e| {
        let reason = match e.family {
            Some(family) => format!("{name} for {family}: {}", e.reason),
            None => format!("{name}: {}", e.reason),
        };
        let err = DecodeError::reset(ErrorCode::Update, update_subcode::OPTIONAL_ATTRIBUTE_ERROR, whole, reason);
        match e.family {
            Some(family) => err.with_action(ErrorAction::AfiSafiDisable(family)),
            None => err,
        }
    })
}

fn unsupported_family(name: &str, family: super::cxt::Family) -> DecodeError {
    DecodeError {
        code: ErrorCode::Update,
        subcode: update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
        data: Vec::new(),
        action: ErrorAction::AttributeDiscard,
        reason: format!("{name} for {family}, a family not negotiated: ignored"),
    }
}

/// Applies the AS4 merge and the missing-attribute checks.
fn finish(st: &mut Decoding, cxt: &Context, has_nlri: bool) -> Result<(), DecodeError> {
    let attrs = &mut st.attrs;
    // RFC 6793 §4.1: AS4_PATH / AS4_AGGREGATOR between two 4-octet speakers are ignored.
    if !cxt.four_octet_as {
        let aggregator_is_trans = attrs.aggregator.is_none_or(|a| a.asn == u32::from(AS_TRANS));
        // RFC 6793 §4.2.3: an AGGREGATOR with a real 2-octet AS voids both AS4 attributes.
        if aggregator_is_trans {
            if let Some(as4) = st.as4_aggregator {
                attrs.aggregator = Some(as4);
            }
            if let (Some(path), Some(as4)) = (&attrs.as_path, &st.as4_path) {
                attrs.as_path = Some(path.merge_as4(as4));
            }
        }
    }
    // RFC 7606 §3 d: missing well-known mandatory attributes with routes present.
    let announces = has_nlri || st.section.mp_reach.as_ref().is_some_and(|r| !r.nlri.is_empty());
    if announces && !st.section.withdraw {
        let mut missing = Vec::new();
        if attrs.origin.is_none() {
            missing.push(code::ORIGIN);
        }
        if attrs.as_path.is_none() {
            missing.push(code::AS_PATH);
        }
        if has_nlri && attrs.next_hop.is_none() {
            missing.push(code::NEXT_HOP);
        }
        if let Some(&first) = missing.first() {
            st.section.withdraw = true;
            let names: Vec<_> = missing.iter().filter_map(|c| descriptor(*c)).map(|d| d.name).collect();
            st.section.errors.push(DecodeError {
                code: ErrorCode::Update,
                subcode: update_subcode::MISSING_WELL_KNOWN_ATTRIBUTE,
                data: vec![first],
                action: ErrorAction::TreatAsWithdraw,
                reason: format!("missing well-known attribute(s) {}", names.join(", ")),
            });
        }
    }
    Ok(())
}

/// Writes an attribute header for a value of `len` octets.
fn put_header(dst: &mut BytesMut, flags: u8, code: u8, len: usize) {
    if len > 255 {
        dst.put_u8(flags | flag::EXTENDED_LENGTH);
        dst.put_u8(code);
        dst.put_u16(len as u16);
    } else {
        dst.put_u8(flags & !flag::EXTENDED_LENGTH);
        dst.put_u8(code);
        dst.put_u8(len as u8);
    }
}

/// Octets of a header for a value of `len` octets.
pub(crate) fn header_len(len: usize) -> usize {
    if len > 255 { 4 } else { 3 }
}

const WELL_KNOWN: u8 = flag::TRANSITIVE;
const OPT_TRANS: u8 = flag::OPTIONAL | flag::TRANSITIVE;
const OPT_NON_TRANS: u8 = flag::OPTIONAL;

impl PathAttrs {
    /// Whether no attribute is present (equal to the default, without building one).
    pub fn is_empty(&self) -> bool {
        self.origin.is_none()
            && self.as_path.is_none()
            && self.next_hop.is_none()
            && self.med.is_none()
            && self.local_pref.is_none()
            && !self.atomic_aggregate
            && self.aggregator.is_none()
            && self.communities.is_empty()
            && self.originator_id.is_none()
            && self.cluster_list.is_empty()
            && self.ext_communities.is_empty()
            && self.large_communities.is_empty()
            && self.unknown.is_empty()
    }

    /// Shares these attributes.
    pub fn into_shared(self) -> Arc<PathAttrs> {
        Arc::new(self)
    }

    /// AS4_PATH to send to a 2-octet peer, when the path holds a 4-octet AS
    /// (RFC 6793 §4.2.2).
    fn as4_path(&self, cxt: &Context) -> Option<AsPath> {
        let path = self.as_path.as_ref()?;
        (!cxt.four_octet_as && path.has_four_octet_as()).then(|| path.without_confed())
    }

    /// AS4_AGGREGATOR to send to a 2-octet peer (RFC 6793 §4.2.2).
    fn as4_aggregator(&self, cxt: &Context) -> Option<Aggregator> {
        self.aggregator.filter(|a| !cxt.four_octet_as && a.asn > u32::from(u16::MAX))
    }

    /// Writes every attribute with a type code below 14 (before MP_REACH).
    pub(crate) fn encode_low(&self, cxt: &Context, dst: &mut BytesMut) {
        if let Some(origin) = self.origin {
            put_header(dst, WELL_KNOWN, code::ORIGIN, 1);
            dst.put_u8(match origin {
                Origin::Igp => 0,
                Origin::Egp => 1,
                Origin::Incomplete => 2,
            });
        }
        if let Some(path) = &self.as_path {
            put_header(dst, WELL_KNOWN, code::AS_PATH, path.encoded_len(cxt.four_octet_as));
            path.encode(cxt.four_octet_as, dst);
        }
        if let Some(nh) = self.next_hop {
            put_header(dst, WELL_KNOWN, code::NEXT_HOP, 4);
            dst.put_slice(&nh.octets());
        }
        if let Some(med) = self.med {
            put_header(dst, OPT_NON_TRANS, code::MULTI_EXIT_DISC, 4);
            dst.put_u32(med);
        }
        if let Some(lp) = self.local_pref {
            put_header(dst, WELL_KNOWN, code::LOCAL_PREF, 4);
            dst.put_u32(lp);
        }
        if self.atomic_aggregate {
            put_header(dst, WELL_KNOWN, code::ATOMIC_AGGREGATE, 0);
        }
        if let Some(agg) = self.aggregator {
            if cxt.four_octet_as {
                put_header(dst, OPT_TRANS, code::AGGREGATOR, 8);
                dst.put_u32(agg.asn);
            } else {
                put_header(dst, OPT_TRANS, code::AGGREGATOR, 6);
                dst.put_u16(u16::try_from(agg.asn).unwrap_or(AS_TRANS));
            }
            dst.put_slice(&agg.address.octets());
        }
        if !self.communities.is_empty() {
            put_header(dst, OPT_TRANS, code::COMMUNITIES, 4 * self.communities.len());
            for c in &self.communities {
                dst.put_u32(c.0);
            }
        }
        if let Some(id) = self.originator_id {
            put_header(dst, OPT_NON_TRANS, code::ORIGINATOR_ID, 4);
            dst.put_slice(&id.octets());
        }
        if !self.cluster_list.is_empty() {
            put_header(dst, OPT_NON_TRANS, code::CLUSTER_LIST, 4 * self.cluster_list.len());
            for id in &self.cluster_list {
                dst.put_slice(&id.octets());
            }
        }
    }

    /// Writes every attribute with a type code above 15 (after MP_UNREACH),
    /// then the unknown ones with the Partial bit set.
    pub(crate) fn encode_high(&self, cxt: &Context, dst: &mut BytesMut) {
        if !self.ext_communities.is_empty() {
            put_header(dst, OPT_TRANS, code::EXTENDED_COMMUNITIES, 8 * self.ext_communities.len());
            for c in &self.ext_communities {
                dst.put_slice(&c.0);
            }
        }
        if let Some(path) = self.as4_path(cxt) {
            put_header(dst, OPT_TRANS, code::AS4_PATH, path.encoded_len(true));
            path.encode(true, dst);
        }
        if let Some(agg) = self.as4_aggregator(cxt) {
            put_header(dst, OPT_TRANS, code::AS4_AGGREGATOR, 8);
            dst.put_u32(agg.asn);
            dst.put_slice(&agg.address.octets());
        }
        if !self.large_communities.is_empty() {
            put_header(dst, OPT_TRANS, code::LARGE_COMMUNITY, 12 * self.large_communities.len());
            for c in &self.large_communities {
                dst.put_u32(c.global_admin);
                dst.put_u32(c.local_data_1);
                dst.put_u32(c.local_data_2);
            }
        }
        for raw in &self.unknown {
            // RFC 4271 §5: an unrecognised optional transitive attribute is passed on with Partial set.
            put_header(dst, raw.flags | flag::PARTIAL, raw.code, raw.value.len());
            dst.put_slice(&raw.value);
        }
    }
}

/// Writes an MP attribute header for a value of `len` octets.
pub(crate) fn put_mp_header(dst: &mut BytesMut, code: u8, len: usize) {
    put_header(dst, OPT_NON_TRANS, code, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full table holds one attribute set per distinct path (one per
    /// prefix in many tables): with its `Arc` counts it fits a 144-octet
    /// allocation, and a short AS_SEQUENCE needs no allocation of its own.
    #[test]
    fn an_attribute_set_stays_small() {
        assert!(std::mem::size_of::<PathAttrs>() <= 120, "{}", std::mem::size_of::<PathAttrs>());
        let path = AsPath::from_sequence(&[65001, 65002, 65003, 65004, 65005, 65006]);
        assert!(!path.segments[0].asns.spilled());
    }
}
