//! UPDATE (RFC 4271 §4.3), End-of-RIB (RFC 4724 §2), and splitting an
//! update that does not fit one message into several.
//!
//! ```text
//! +-----------------------------------------------------+
//! |   Withdrawn Routes Length (2 octets)                |
//! +-----------------------------------------------------+
//! |   Withdrawn Routes (variable)                       |
//! +-----------------------------------------------------+
//! |   Total Path Attribute Length (2 octets)            |
//! +-----------------------------------------------------+
//! |   Path Attributes (variable)                        |
//! +-----------------------------------------------------+
//! |   Network Layer Reachability Information (variable) |
//! +-----------------------------------------------------+
//! ```

use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::attr::{self, MpReach, MpUnreach, PathAttrs, code};
use super::cxt::{Context, Family};
use super::error::DecodeError;
use super::header::{self, HEADER_LEN, MessageType};
use super::nlri::{self, Ipv4Nlri, Nlri, NlriPrefix};
use super::notification::{ErrorCode, update_subcode};
use super::wire::{be_u16, bytes};

/// An UPDATE message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Update {
    /// IPv4 routes withdrawn (the Withdrawn Routes field).
    pub withdrawn: Vec<Ipv4Nlri>,
    /// Path attributes of the announced routes; `None` when the UPDATE has
    /// none besides MP_REACH/MP_UNREACH (or after treat-as-withdraw).
    pub attrs: Option<Arc<PathAttrs>>,
    /// IPv4 routes announced (the NLRI field).
    pub nlri: Vec<Ipv4Nlri>,
    /// MP_REACH_NLRI: announced routes of another family.
    pub mp_reach: Option<MpReach>,
    /// MP_UNREACH_NLRI: withdrawn routes of another family.
    pub mp_unreach: Option<MpUnreach>,
    /// Errors the decoder handled under RFC 7606 (treat-as-withdraw or
    /// attribute discard), for the log. Empty for UPDATEs built locally;
    /// not encoded.
    pub errors: Vec<DecodeError>,
}

/// Why an UPDATE could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The attributes alone do not leave room for one prefix.
    #[error("path attributes take {len} octets; a message holds at most {max} (extended messages not negotiated?)")]
    AttributesTooLarge {
        /// Octets the attributes need.
        len: usize,
        /// The message size limit in force.
        max: usize,
    },
}

/// The largest NLRI: path id, length and a full IPv6 address.
const MAX_NLRI_LEN: usize = 4 + 1 + 16;
/// An empty UPDATE: header plus the two length fields.
const EMPTY_UPDATE_LEN: usize = HEADER_LEN + 4;
/// An MP attribute header with extended length (the worst case).
const MP_HEADER_LEN: usize = 4;

impl Update {
    /// Announces `nlri` (IPv4, NLRI field) with `attrs`.
    pub fn announce(attrs: Arc<PathAttrs>, nlri: Vec<Ipv4Nlri>) -> Update {
        Update { attrs: Some(attrs), nlri, ..Update::default() }
    }

    /// Withdraws IPv4 `nlri`.
    pub fn withdraw(withdrawn: Vec<Ipv4Nlri>) -> Update {
        Update { withdrawn, ..Update::default() }
    }

    /// The End-of-RIB marker for `family` (RFC 4724 §2): an empty UPDATE
    /// for IPv4 unicast, an empty MP_UNREACH_NLRI otherwise.
    pub fn end_of_rib(family: Family) -> Update {
        if family == Family::IPV4_UNICAST {
            Update::default()
        } else {
            Update { mp_unreach: Some(MpUnreach { family, withdrawn: Vec::new() }), ..Update::default() }
        }
    }

    /// The family this UPDATE marks End-of-RIB for, if it is such a marker.
    pub fn end_of_rib_family(&self) -> Option<Family> {
        if !self.withdrawn.is_empty() || self.attrs.is_some() || !self.nlri.is_empty() || self.mp_reach.is_some() {
            return None;
        }
        match &self.mp_unreach {
            None => Some(Family::IPV4_UNICAST),
            Some(u) if u.withdrawn.is_empty() => Some(u.family),
            Some(_) => None,
        }
    }

    pub(crate) fn decode(body: &[u8], cxt: &Context) -> Result<Update, DecodeError> {
        // RFC 7606 §5.3 / RFC 4271 §6.3: lengths that do not add up reset the session.
        let list_error =
            |why: String| DecodeError::reset(ErrorCode::Update, update_subcode::MALFORMED_ATTRIBUTE_LIST, &[], why);
        let field = |input| -> Result<(&[u8], &[u8]), DecodeError> {
            let (rest, len) = be_u16(input).map_err(|_| list_error("truncated length field".into()))?;
            let (rest, field) = bytes(rest, len as usize)
                .map_err(|_| list_error(format!("length {len} runs past the message ({} octets left)", rest.len())))?;
            Ok((field, rest))
        };
        let (withdrawn_raw, rest) = field(body)?;
        let (attrs_raw, nlri_raw) = field(rest)?;
        let network_error = |what: &str, e: nlri::NlriError| {
            DecodeError::reset(ErrorCode::Update, update_subcode::INVALID_NETWORK_FIELD, &[], format!("{what}: {e}"))
        };
        let v4_add_path = cxt.add_path.contains(Family::IPV4_UNICAST);
        let withdrawn =
            nlri::decode_ipv4(withdrawn_raw, v4_add_path).map_err(|e| network_error("withdrawn routes", e))?;
        let nlri = nlri::decode_ipv4(nlri_raw, v4_add_path).map_err(|e| network_error("NLRI", e))?;
        let section = attr::decode_section(attrs_raw, cxt, !nlri.is_empty())?;
        let mut update = Update {
            withdrawn,
            attrs: section.attrs,
            nlri,
            mp_reach: section.mp_reach,
            mp_unreach: section.mp_unreach,
            errors: section.errors,
        };
        if section.withdraw {
            update.treat_as_withdraw()?;
        }
        Ok(update)
    }

    /// RFC 7606 §2: every route the UPDATE announces becomes a withdrawal.
    fn treat_as_withdraw(&mut self) -> Result<(), DecodeError> {
        self.attrs = None;
        self.withdrawn.append(&mut self.nlri);
        let Some(reach) = self.mp_reach.take() else { return Ok(()) };
        match &mut self.mp_unreach {
            None => self.mp_unreach = Some(MpUnreach { family: reach.family, withdrawn: reach.nlri }),
            Some(unreach) if unreach.family == reach.family => unreach.withdrawn.extend(reach.nlri),
            Some(unreach) => {
                return Err(DecodeError::reset(
                    ErrorCode::Update,
                    update_subcode::MALFORMED_ATTRIBUTE_LIST,
                    &[],
                    format!(
                        "treat-as-withdraw of {} routes impossible beside MP_UNREACH_NLRI for {}",
                        reach.family, unreach.family
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Encodes the UPDATE as one message, or as several when it does not
    /// fit the size limit: withdrawals first, then announcements, each
    /// message packed with as many prefixes as fit. Returns how many
    /// messages were written.
    pub fn encode(&self, cxt: &Context, dst: &mut BytesMut) -> Result<usize, EncodeError> {
        let max = cxt.max_message_len();
        let v4_add_path = cxt.add_path.contains(Family::IPV4_UNICAST);
        let (mut low, mut high) = (BytesMut::new(), BytesMut::new());
        if let Some(attrs) = &self.attrs {
            attrs.encode_low(cxt, &mut low);
            attrs.encode_high(cxt, &mut high);
        }
        let unreach_len = self.mp_unreach.as_ref().map_or(0, |u| {
            let len = 3 + nlri_len(&u.withdrawn, cxt.add_path.contains(u.family));
            attr::header_len(len) + len
        });
        let reach_len = self.mp_reach.as_ref().map_or(0, |r| {
            let len = r.fixed_len() + nlri_len(&r.nlri, cxt.add_path.contains(r.family));
            attr::header_len(len) + len
        });
        let total = EMPTY_UPDATE_LEN
            + nlri_len(&self.withdrawn, v4_add_path)
            + low.len()
            + unreach_len
            + reach_len
            + high.len()
            + nlri_len(&self.nlri, v4_add_path);
        if total <= max {
            // Sized once, not grown by doubling as it is written.
            dst.reserve(total);
            write_message(dst, &self.withdrawn, v4_add_path, &self.nlri, |dst| {
                dst.put_slice(&low);
                if let Some(u) = &self.mp_unreach {
                    put_mp_unreach(u, &u.withdrawn, cxt, dst);
                }
                if let Some(r) = &self.mp_reach {
                    put_mp_reach(r, &r.nlri, cxt, dst);
                }
                dst.put_slice(&high);
            });
            return Ok(1);
        }
        let mut messages = 0;
        let room = max - EMPTY_UPDATE_LEN;
        for chunk in chunks(&self.withdrawn, v4_add_path, room) {
            write_message(dst, chunk, v4_add_path, &[], |_| {});
            messages += 1;
        }
        if let Some(u) = &self.mp_unreach {
            let room = room - MP_HEADER_LEN - 3;
            for chunk in chunks(&u.withdrawn, cxt.add_path.contains(u.family), room) {
                write_message(dst, &[], false, &[], |dst| put_mp_unreach(u, chunk, cxt, dst));
                messages += 1;
            }
        }
        let attrs_len = low.len() + high.len();
        let too_large = |len: usize| EncodeError::AttributesTooLarge { len, max };
        if !self.nlri.is_empty() {
            let room = room.checked_sub(attrs_len).filter(|r| *r >= MAX_NLRI_LEN).ok_or(too_large(attrs_len))?;
            for chunk in chunks(&self.nlri, v4_add_path, room) {
                write_message(dst, &[], false, chunk, |dst| {
                    dst.put_slice(&low);
                    dst.put_slice(&high);
                });
                messages += 1;
            }
        }
        if let Some(r) = &self.mp_reach {
            let fixed = attrs_len + MP_HEADER_LEN + r.fixed_len();
            let room = room.checked_sub(fixed).filter(|r| *r >= MAX_NLRI_LEN).ok_or(too_large(fixed))?;
            for chunk in chunks(&r.nlri, cxt.add_path.contains(r.family), room) {
                write_message(dst, &[], false, &[], |dst| {
                    dst.put_slice(&low);
                    put_mp_reach(r, chunk, cxt, dst);
                    dst.put_slice(&high);
                });
                messages += 1;
            }
        }
        Ok(messages)
    }
}

/// Octets of the encoded `list`.
fn nlri_len<P: NlriPrefix>(list: &[Nlri<P>], add_path: bool) -> usize {
    list.iter().map(|n| n.encoded_len(add_path)).sum()
}

/// Slices of `list` whose encodings each fit `room` octets (at least one
/// NLRI per slice; `room` is never below [`MAX_NLRI_LEN`] here).
fn chunks<P: NlriPrefix>(list: &[Nlri<P>], add_path: bool, room: usize) -> impl Iterator<Item = &[Nlri<P>]> {
    let mut rest = list;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (mut used, mut n) = (0, 0);
        while let Some(next) = rest.get(n) {
            let len = next.encoded_len(add_path);
            if used + len > room && n > 0 {
                break;
            }
            used += len;
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

fn put_mp_reach(r: &MpReach, nlri: &[Nlri], cxt: &Context, dst: &mut BytesMut) {
    let add_path = cxt.add_path.contains(r.family);
    let len = r.fixed_len() + nlri.iter().map(|n| n.encoded_len(add_path)).sum::<usize>();
    attr::put_mp_header(dst, code::MP_REACH_NLRI, len);
    r.encode_value(nlri, cxt, dst);
}

fn put_mp_unreach(u: &MpUnreach, withdrawn: &[Nlri], cxt: &Context, dst: &mut BytesMut) {
    let add_path = cxt.add_path.contains(u.family);
    let len = 3 + withdrawn.iter().map(|n| n.encoded_len(add_path)).sum::<usize>();
    attr::put_mp_header(dst, code::MP_UNREACH_NLRI, len);
    u.encode_value(withdrawn, cxt, dst);
}

/// Writes one UPDATE message; `attrs` writes the path attribute section.
fn write_message(
    dst: &mut BytesMut,
    withdrawn: &[Ipv4Nlri],
    add_path: bool,
    nlri: &[Ipv4Nlri],
    attrs: impl FnOnce(&mut BytesMut),
) {
    let start = header::begin(dst, MessageType::Update);
    let field = dst.len();
    dst.put_u16(0);
    for n in withdrawn {
        n.encode(add_path, dst);
    }
    let len = (dst.len() - field - 2) as u16;
    dst[field..field + 2].copy_from_slice(&len.to_be_bytes());
    let field = dst.len();
    dst.put_u16(0);
    attrs(dst);
    let len = (dst.len() - field - 2) as u16;
    dst[field..field + 2].copy_from_slice(&len.to_be_bytes());
    for n in nlri {
        n.encode(add_path, dst);
    }
    header::finish(dst, start);
}
