//! Capabilities advertised in OPEN (RFC 5492), one type per capability.
//!
//! ```text
//! +------------------------------+
//! | Capability Code (1 octet)    |
//! +------------------------------+
//! | Capability Length (1 octet)  |
//! +------------------------------+
//! | Capability Value (variable)  |
//! +------------------------------+
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use super::cxt::{Afi, Family, Safi};
use super::error::DecodeError;
use super::notification::ErrorCode;
use super::wire::{Parser, Res, be_u8, be_u16, bytes};

/// Capability codes (IANA "Capability Codes").
mod code {
    pub const MULTIPROTOCOL: u8 = 1;
    pub const ROUTE_REFRESH: u8 = 2;
    pub const EXTENDED_NEXT_HOP: u8 = 5;
    pub const EXTENDED_MESSAGE: u8 = 6;
    pub const GRACEFUL_RESTART: u8 = 64;
    pub const FOUR_OCTET_AS: u8 = 65;
    pub const ADD_PATH: u8 = 69;
    pub const ENHANCED_ROUTE_REFRESH: u8 = 70;
    pub const LONG_LIVED_GRACEFUL_RESTART: u8 = 71;
}

/// One capability.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Capability {
    /// RFC 4760 §8: `AFI (2) | Reserved (1) | SAFI (1)`.
    Multiprotocol(Family),
    /// RFC 2918: no value.
    RouteRefresh,
    /// RFC 7313: no value.
    EnhancedRouteRefresh,
    /// RFC 6793: the speaker's 4-octet AS number.
    FourOctetAs(u32),
    /// RFC 4724 §3.
    GracefulRestart(GracefulRestart),
    /// RFC 9494 §3: `(AFI (2) | SAFI (1) | Flags (1) | Long-lived Stale Time (3))*`.
    LongLivedGracefulRestart(Vec<LongLivedFamily>),
    /// RFC 7911 §4: `(AFI (2) | SAFI (1) | Send/Receive (1))*`.
    AddPath(Vec<AddPathFamily>),
    /// RFC 8950 §3: `(NLRI AFI (2) | NLRI SAFI (2) | Nexthop AFI (2))*`.
    ExtendedNextHop(Vec<ExtendedNextHop>),
    /// RFC 8654: no value.
    ExtendedMessage,
    /// Any other capability, kept as received.
    Unknown {
        /// Capability code.
        code: u8,
        /// Capability value.
        value: Bytes,
    },
}

/// The graceful restart capability (RFC 4724 §3).
///
/// ```text
/// +--------------------------------------------------+
/// | Restart Flags (4 bits)                           |
/// +--------------------------------------------------+
/// | Restart Time in seconds (12 bits)                |
/// +--------------------------------------------------+
/// | Address Family Identifier (16 bits)              |
/// +--------------------------------------------------+
/// | Subsequent Address Family Identifier (8 bits)    |
/// +--------------------------------------------------+
/// | Flags for Address Family (8 bits)                |
/// +--------------------------------------------------+
/// | ...                                              |
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GracefulRestart {
    /// R bit: the speaker has restarted.
    pub restarted: bool,
    /// N bit (RFC 8538): graceful restart also covers NOTIFICATIONs.
    pub notification: bool,
    /// Restart time in seconds (12 bits).
    pub restart_time: u16,
    /// Families and whether forwarding state was preserved for each.
    pub families: Vec<GracefulRestartFamily>,
}

/// One family in [`GracefulRestart`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GracefulRestartFamily {
    /// The family.
    pub family: Family,
    /// F bit: forwarding state preserved across the restart.
    pub forwarding_preserved: bool,
}

/// One family in the long-lived graceful restart capability (RFC 9494 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LongLivedFamily {
    /// The family.
    pub family: Family,
    /// F bit: forwarding state preserved across the restart.
    pub forwarding_preserved: bool,
    /// How long, in seconds (24 bits), a receiver may keep this family's
    /// routes once the graceful-restart time is over.
    pub stale_time: u32,
}

/// RFC 9494 §3: the largest long-lived stale time (24 bits).
pub const MAX_LONG_LIVED_STALE_TIME: u32 = 0x00ff_ffff;

/// Add-path directions (RFC 7911 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddPathMode {
    /// 1: able to receive multiple paths.
    Receive,
    /// 2: able to send multiple paths.
    Send,
    /// 3: both.
    Both,
}

/// One family in the add-path capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddPathFamily {
    /// The family.
    pub family: Family,
    /// Send, receive or both.
    pub mode: AddPathMode,
}

/// One tuple of the extended next hop capability (RFC 8950).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExtendedNextHop {
    /// NLRI AFI.
    pub nlri_afi: Afi,
    /// NLRI SAFI (two octets here).
    pub nlri_safi: u16,
    /// AFI of the next hops allowed for that NLRI.
    pub next_hop_afi: Afi,
}

/// RFC 4724 §3: restart flag bits and the time mask.
const GR_RESTARTED: u16 = 0x8000;
const GR_NOTIFICATION: u16 = 0x4000;
const GR_TIME_MASK: u16 = 0x0fff;
const GR_FORWARDING: u8 = 0x80;

fn malformed(code: u8, why: &str, value: &[u8]) -> DecodeError {
    // RFC 5492 defines no subcode for a malformed capability: Unspecific (0).
    DecodeError::reset(ErrorCode::Open, 0, value, format!("malformed capability {code}: {why}"))
}

fn family(input: &[u8]) -> Res<'_, Family> {
    (be_u16, be_u8)
        .parse(input)
        .map(|(r, (afi, safi))| (r, Family { afi: Afi::from_u16(afi), safi: Safi::from_u8(safi) }))
}

/// Splits `input` into fixed-size records, failing if it does not divide evenly.
fn records<'a, T>(input: &'a [u8], size: usize, mut one: impl FnMut(&'a [u8]) -> Res<'a, T>) -> Option<Vec<T>> {
    if !input.len().is_multiple_of(size) {
        return None;
    }
    input.chunks_exact(size).map(|chunk| one(chunk).ok().map(|(_, v)| v)).collect()
}

impl Capability {
    /// Decodes every capability in the value of one Capabilities optional parameter.
    pub(crate) fn decode_all(mut input: &[u8], out: &mut Vec<Capability>) -> Result<(), DecodeError> {
        while !input.is_empty() {
            let Ok((rest, (code, len))) = (be_u8, be_u8).parse(input) else {
                return Err(malformed(0, "truncated capability header", input));
            };
            let Ok((rest, value)) = bytes(rest, len as usize) else {
                return Err(malformed(code, "value runs past the parameter", input));
            };
            out.push(Capability::decode(code, value)?);
            input = rest;
        }
        Ok(())
    }

    fn decode(code: u8, value: &[u8]) -> Result<Capability, DecodeError> {
        let bad = |why: &str| malformed(code, why, value);
        let empty = |cap: Capability| if value.is_empty() { Ok(cap) } else { Err(bad("expected no value")) };
        match code {
            code::MULTIPROTOCOL => match value {
                [a0, a1, _reserved, safi] => Ok(Capability::Multiprotocol(Family {
                    afi: Afi::from_u16(u16::from_be_bytes([*a0, *a1])),
                    safi: Safi::from_u8(*safi),
                })),
                _ => Err(bad("length is not 4")),
            },
            code::ROUTE_REFRESH => empty(Capability::RouteRefresh),
            code::ENHANCED_ROUTE_REFRESH => empty(Capability::EnhancedRouteRefresh),
            code::EXTENDED_MESSAGE => empty(Capability::ExtendedMessage),
            code::FOUR_OCTET_AS => match value {
                [a, b, c, d] => Ok(Capability::FourOctetAs(u32::from_be_bytes([*a, *b, *c, *d]))),
                _ => Err(bad("length is not 4")),
            },
            code::GRACEFUL_RESTART => {
                let Ok((rest, flags_time)) = be_u16(value) else { return Err(bad("shorter than 2 octets")) };
                let families = records(rest, 4, |r| {
                    (family, be_u8).parse(r).map(|(r, (family, flags))| {
                        (r, GracefulRestartFamily { family, forwarding_preserved: flags & GR_FORWARDING != 0 })
                    })
                })
                .ok_or_else(|| bad("family list is not a multiple of 4 octets"))?;
                Ok(Capability::GracefulRestart(GracefulRestart {
                    restarted: flags_time & GR_RESTARTED != 0,
                    notification: flags_time & GR_NOTIFICATION != 0,
                    restart_time: flags_time & GR_TIME_MASK,
                    families,
                }))
            }
            code::LONG_LIVED_GRACEFUL_RESTART => {
                let families = records(value, 7, |r| {
                    (family, be_u8, be_u8, be_u16).parse(r).map(|(r, (family, flags, high, low))| {
                        let stale_time = u32::from(high) << 16 | u32::from(low);
                        (r, LongLivedFamily { family, forwarding_preserved: flags & GR_FORWARDING != 0, stale_time })
                    })
                })
                .ok_or_else(|| bad("length is not a multiple of 7"))?;
                Ok(Capability::LongLivedGracefulRestart(families))
            }
            code::ADD_PATH => {
                let families = records(value, 4, |r| (family, be_u8).parse(r))
                    .ok_or_else(|| bad("length is not a multiple of 4"))?
                    .into_iter()
                    .map(|(family, mode)| {
                        let mode = match mode {
                            1 => AddPathMode::Receive,
                            2 => AddPathMode::Send,
                            3 => AddPathMode::Both,
                            _ => return Err(bad("send/receive value is not 1, 2 or 3")),
                        };
                        Ok(AddPathFamily { family, mode })
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Capability::AddPath(families))
            }
            code::EXTENDED_NEXT_HOP => {
                let tuples = records(value, 6, |r| {
                    (be_u16, be_u16, be_u16).parse(r).map(|(r, (afi, safi, nh))| {
                        let tuple = ExtendedNextHop {
                            nlri_afi: Afi::from_u16(afi),
                            nlri_safi: safi,
                            next_hop_afi: Afi::from_u16(nh),
                        };
                        (r, tuple)
                    })
                })
                .ok_or_else(|| bad("length is not a multiple of 6"))?;
                Ok(Capability::ExtendedNextHop(tuples))
            }
            code => Ok(Capability::Unknown { code, value: Bytes::copy_from_slice(value) }),
        }
    }

    /// Writes code, length and value.
    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        let put_family = |dst: &mut BytesMut, f: Family| {
            dst.put_u16(f.afi.to_u16());
            dst.put_u8(f.safi.to_u8());
        };
        let (code, start) = (self.code(), dst.len());
        dst.put_u8(code);
        dst.put_u8(0);
        match self {
            Capability::Multiprotocol(f) => {
                dst.put_u16(f.afi.to_u16());
                dst.put_u8(0);
                dst.put_u8(f.safi.to_u8());
            }
            Capability::RouteRefresh | Capability::EnhancedRouteRefresh | Capability::ExtendedMessage => {}
            Capability::FourOctetAs(asn) => dst.put_u32(*asn),
            Capability::GracefulRestart(gr) => {
                let mut flags_time = gr.restart_time & GR_TIME_MASK;
                if gr.restarted {
                    flags_time |= GR_RESTARTED;
                }
                if gr.notification {
                    flags_time |= GR_NOTIFICATION;
                }
                dst.put_u16(flags_time);
                for f in &gr.families {
                    put_family(dst, f.family);
                    dst.put_u8(if f.forwarding_preserved { GR_FORWARDING } else { 0 });
                }
            }
            Capability::LongLivedGracefulRestart(families) => {
                for f in families {
                    put_family(dst, f.family);
                    dst.put_u8(if f.forwarding_preserved { GR_FORWARDING } else { 0 });
                    let time = f.stale_time.min(MAX_LONG_LIVED_STALE_TIME);
                    dst.put_slice(&time.to_be_bytes()[1..]);
                }
            }
            Capability::AddPath(families) => {
                for f in families {
                    put_family(dst, f.family);
                    dst.put_u8(match f.mode {
                        AddPathMode::Receive => 1,
                        AddPathMode::Send => 2,
                        AddPathMode::Both => 3,
                    });
                }
            }
            Capability::ExtendedNextHop(tuples) => {
                for t in tuples {
                    dst.put_u16(t.nlri_afi.to_u16());
                    dst.put_u16(t.nlri_safi);
                    dst.put_u16(t.next_hop_afi.to_u16());
                }
            }
            Capability::Unknown { value, .. } => dst.put_slice(value),
        }
        dst[start + 1] = (dst.len() - start - 2) as u8;
    }

    /// The capability code.
    pub fn code(&self) -> u8 {
        match self {
            Capability::Multiprotocol(_) => code::MULTIPROTOCOL,
            Capability::RouteRefresh => code::ROUTE_REFRESH,
            Capability::EnhancedRouteRefresh => code::ENHANCED_ROUTE_REFRESH,
            Capability::FourOctetAs(_) => code::FOUR_OCTET_AS,
            Capability::GracefulRestart(_) => code::GRACEFUL_RESTART,
            Capability::LongLivedGracefulRestart(_) => code::LONG_LIVED_GRACEFUL_RESTART,
            Capability::AddPath(_) => code::ADD_PATH,
            Capability::ExtendedNextHop(_) => code::EXTENDED_NEXT_HOP,
            Capability::ExtendedMessage => code::EXTENDED_MESSAGE,
            Capability::Unknown { code, .. } => *code,
        }
    }

    /// Octets this capability takes on the wire (code and length included).
    pub(crate) fn encoded_len(&self) -> usize {
        2 + match self {
            Capability::Multiprotocol(_) | Capability::FourOctetAs(_) => 4,
            Capability::RouteRefresh | Capability::EnhancedRouteRefresh | Capability::ExtendedMessage => 0,
            Capability::GracefulRestart(gr) => 2 + 4 * gr.families.len(),
            Capability::LongLivedGracefulRestart(families) => 7 * families.len(),
            Capability::AddPath(families) => 4 * families.len(),
            Capability::ExtendedNextHop(tuples) => 6 * tuples.len(),
            Capability::Unknown { value, .. } => value.len(),
        }
    }
}

/// How operators read capabilities (`birdc show protocols all` style).
impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Capability::Multiprotocol(family) => write!(f, "multiprotocol {family}"),
            Capability::RouteRefresh => f.write_str("route-refresh"),
            Capability::EnhancedRouteRefresh => f.write_str("enhanced-route-refresh"),
            Capability::FourOctetAs(asn) => write!(f, "4-octet-as {asn}"),
            Capability::GracefulRestart(gr) => {
                write!(f, "graceful-restart {}s", gr.restart_time)?;
                if gr.restarted {
                    f.write_str(" restarted")?;
                }
                for fam in &gr.families {
                    write!(f, " {}{}", fam.family, if fam.forwarding_preserved { "(F)" } else { "" })?;
                }
                Ok(())
            }
            Capability::LongLivedGracefulRestart(families) => {
                f.write_str("long-lived-graceful-restart")?;
                families.iter().try_for_each(|l| {
                    write!(f, " {} {}s{}", l.family, l.stale_time, if l.forwarding_preserved { "(F)" } else { "" })
                })
            }
            Capability::AddPath(families) => {
                f.write_str("add-path")?;
                families.iter().try_for_each(|a| write!(f, " {} {:?}", a.family, a.mode))
            }
            Capability::ExtendedNextHop(list) => {
                f.write_str("extended-next-hop")?;
                list.iter().try_for_each(|e| write!(f, " {:?}/{} via {:?}", e.nlri_afi, e.nlri_safi, e.next_hop_afi))
            }
            Capability::ExtendedMessage => f.write_str("extended-message"),
            Capability::Unknown { code, value } => write!(f, "capability {code} ({} bytes)", value.len()),
        }
    }
}
