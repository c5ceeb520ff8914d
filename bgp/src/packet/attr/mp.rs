//! MP_REACH_NLRI and MP_UNREACH_NLRI (RFC 4760 §3, §4) for IPv4 and IPv6
//! unicast, with IPv6 global + link-local next hops (RFC 2545 §3) and IPv6
//! next hops for IPv4 NLRI (RFC 8950).
//!
//! ```text
//! MP_REACH_NLRI                              MP_UNREACH_NLRI
//! +---------------------------------------+  +-------------------------------+
//! | AFI (2) | SAFI (1)                    |  | AFI (2) | SAFI (1)            |
//! +---------------------------------------+  +-------------------------------+
//! | Length of Next Hop Network Address (1)|  | Withdrawn Routes (variable)   |
//! +---------------------------------------+  +-------------------------------+
//! | Network Address of Next Hop (variable)|
//! +---------------------------------------+
//! | Reserved (1)                          |
//! +---------------------------------------+
//! | NLRI (variable)                       |
//! +---------------------------------------+
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};

use crate::packet::cxt::{Afi, Context, Family, Safi};
use crate::packet::nlri::{self, Nlri};

/// The next hop of MP_REACH_NLRI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MpNextHop {
    /// 4 octets.
    Ipv4(Ipv4Addr),
    /// 16 octets, or 32 with a link-local address (RFC 2545 §3).
    Ipv6 {
        /// Global address.
        global: Ipv6Addr,
        /// Link-local address, when sent.
        link_local: Option<Ipv6Addr>,
    },
}

impl MpNextHop {
    /// The address to forward to (the global one for IPv6).
    pub fn addr(&self) -> IpAddr {
        match *self {
            MpNextHop::Ipv4(a) => IpAddr::V4(a),
            MpNextHop::Ipv6 { global, .. } => IpAddr::V6(global),
        }
    }

    fn decode(raw: &[u8]) -> Option<MpNextHop> {
        let v6 = |b: &[u8]| <[u8; 16]>::try_from(b).ok().map(Ipv6Addr::from);
        Some(match raw.len() {
            4 => MpNextHop::Ipv4(Ipv4Addr::from(<[u8; 4]>::try_from(raw).ok()?)),
            16 => MpNextHop::Ipv6 { global: v6(raw)?, link_local: None },
            32 => MpNextHop::Ipv6 { global: v6(&raw[..16])?, link_local: Some(v6(&raw[16..])?) },
            _ => return None,
        })
    }

    fn encoded_len(&self) -> usize {
        match self {
            MpNextHop::Ipv4(_) => 4,
            MpNextHop::Ipv6 { link_local: None, .. } => 16,
            MpNextHop::Ipv6 { link_local: Some(_), .. } => 32,
        }
    }

    fn encode(&self, dst: &mut BytesMut) {
        match self {
            MpNextHop::Ipv4(a) => dst.put_slice(&a.octets()),
            MpNextHop::Ipv6 { global, link_local } => {
                dst.put_slice(&global.octets());
                if let Some(ll) = link_local {
                    dst.put_slice(&ll.octets());
                }
            }
        }
    }
}

/// MP_REACH_NLRI: routes of one family with their next hop.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MpReach {
    /// The family of the NLRI.
    pub family: Family,
    /// The next hop.
    pub next_hop: MpNextHop,
    /// The routes.
    pub nlri: Vec<Nlri>,
}

/// MP_UNREACH_NLRI: withdrawn routes of one family. Empty for End-of-RIB
/// (RFC 4724 §2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MpUnreach {
    /// The family.
    pub family: Family,
    /// The withdrawn routes.
    pub withdrawn: Vec<Nlri>,
}

/// Why an MP attribute is malformed; the family when it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MpError {
    pub family: Option<Family>,
    pub reason: String,
}

fn family(input: &[u8]) -> Result<(Family, &[u8]), MpError> {
    let ([a0, a1, safi], rest) = input
        .split_first_chunk::<3>()
        .map(|(h, r)| (*h, r))
        .ok_or(MpError { family: None, reason: "shorter than AFI and SAFI".into() })?;
    Ok((Family { afi: Afi::from_u16(u16::from_be_bytes([a0, a1])), safi: Safi::from_u8(safi) }, rest))
}

/// Decoded MP attribute of a family we do not carry: the caller ignores it.
pub(crate) enum Decoded<T> {
    /// A family we carry.
    Supported(T),
    /// Another family (never negotiated by us): ignored.
    Unsupported(Family),
}

impl MpReach {
    pub(crate) fn decode(input: &[u8], cxt: &Context) -> Result<Decoded<MpReach>, MpError> {
        let (family, rest) = family(input)?;
        if !family.is_supported() {
            return Ok(Decoded::Unsupported(family));
        }
        let err = |reason: String| MpError { family: Some(family), reason };
        let (&nh_len, rest) = rest.split_first().ok_or_else(|| err("no next hop length".into()))?;
        let (raw_nh, rest) = rest.split_at_checked(nh_len as usize).ok_or_else(|| err("next hop overruns".into()))?;
        let next_hop = MpNextHop::decode(raw_nh).ok_or_else(|| err(format!("next hop length {nh_len}")))?;
        let (_reserved, rest) = rest.split_first().ok_or_else(|| err("no reserved octet".into()))?;
        let mut nlri = Vec::new();
        nlri::decode_all(rest, family.afi, cxt.add_path.contains(family), &mut nlri).map_err(|e| err(e.to_string()))?;
        Ok(Decoded::Supported(MpReach { family, next_hop, nlri }))
    }

    /// Octets of the value without any NLRI.
    pub(crate) fn fixed_len(&self) -> usize {
        3 + 1 + self.next_hop.encoded_len() + 1
    }

    /// Writes the value with `nlri` as its routes.
    pub(crate) fn encode_value(&self, nlri: &[Nlri], cxt: &Context, dst: &mut BytesMut) {
        dst.put_u16(self.family.afi.to_u16());
        dst.put_u8(self.family.safi.to_u8());
        dst.put_u8(self.next_hop.encoded_len() as u8);
        self.next_hop.encode(dst);
        dst.put_u8(0);
        let add_path = cxt.add_path.contains(self.family);
        for n in nlri {
            n.encode(add_path, dst);
        }
    }
}

impl MpUnreach {
    pub(crate) fn decode(input: &[u8], cxt: &Context) -> Result<Decoded<MpUnreach>, MpError> {
        let (family, rest) = family(input)?;
        if !family.is_supported() {
            return Ok(Decoded::Unsupported(family));
        }
        let mut withdrawn = Vec::new();
        nlri::decode_all(rest, family.afi, cxt.add_path.contains(family), &mut withdrawn)
            .map_err(|e| MpError { family: Some(family), reason: e.to_string() })?;
        Ok(Decoded::Supported(MpUnreach { family, withdrawn }))
    }

    /// Writes the value with `withdrawn` as its routes.
    pub(crate) fn encode_value(&self, withdrawn: &[Nlri], cxt: &Context, dst: &mut BytesMut) {
        dst.put_u16(self.family.afi.to_u16());
        dst.put_u8(self.family.safi.to_u8());
        let add_path = cxt.add_path.contains(self.family);
        for n in withdrawn {
            n.encode(add_path, dst);
        }
    }
}
