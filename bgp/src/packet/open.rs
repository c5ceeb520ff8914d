//! OPEN (RFC 4271 §4.2) with RFC 9072 extended optional parameters.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+
//! |    Version    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     My Autonomous System      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Hold Time           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         BGP Identifier                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Opt Parm Len  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |             Optional Parameters (variable)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! RFC 9072: when Opt Parm Len is 255 and the next octet (Non-Ext OP Type)
//! is 255, a 2-octet Extended Opt. Parm. Length follows and every
//! parameter has a 2-octet length.

use std::net::Ipv4Addr;

use bytes::{BufMut, BytesMut};

use super::capability::Capability;
use super::error::DecodeError;
use super::notification::{ErrorCode, open_subcode};
use super::wire::{Parser, be_u8, be_u16, bytes, ipv4};

/// RFC 4271: the only version.
pub const BGP_VERSION: u8 = 4;
/// RFC 6793 §9: the 2-octet AS that stands in for a 4-octet one.
pub const AS_TRANS: u16 = 23456;
/// Optional parameter type 2: Capabilities (RFC 5492 §4).
const PARAM_CAPABILITIES: u8 = 2;
/// RFC 9072 §2: the Non-Ext OP Type value that announces the extended format.
const EXTENDED_PARAMS: u8 = 255;

/// An OPEN message. Capabilities from every Capabilities parameter are
/// gathered into one list, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Open {
    /// My Autonomous System: the 2-octet AS, or AS_TRANS.
    pub my_as: u16,
    /// Proposed hold time in seconds: 0 or at least 3.
    pub hold_time: u16,
    /// BGP identifier.
    pub bgp_id: Ipv4Addr,
    /// Capabilities.
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// An OPEN for `asn`: My AS is `asn` when it fits two octets, AS_TRANS
    /// otherwise (RFC 6793 §3); the 4-octet AS capability is added when
    /// `capabilities` lacks it.
    pub fn new(asn: u32, hold_time: u16, bgp_id: Ipv4Addr, mut capabilities: Vec<Capability>) -> Open {
        if !capabilities.iter().any(|c| matches!(c, Capability::FourOctetAs(_))) {
            capabilities.push(Capability::FourOctetAs(asn));
        }
        let my_as = u16::try_from(asn).unwrap_or(AS_TRANS);
        Open { my_as, hold_time, bgp_id, capabilities }
    }

    /// The speaker's AS: from the 4-octet AS capability when present.
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| if let Capability::FourOctetAs(asn) = c { Some(*asn) } else { None })
            .unwrap_or(u32::from(self.my_as))
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Open, DecodeError> {
        let short =
            || super::header::bad_length(super::header::MessageType::Open, body.len() + super::header::HEADER_LEN);
        let Ok((rest, (version, my_as, hold_time, bgp_id, param_len))) =
            (be_u8, be_u16, be_u16, ipv4, be_u8).parse(body)
        else {
            return Err(short());
        };
        if version != BGP_VERSION {
            // RFC 4271 §6.2: data is the largest version we support.
            return Err(DecodeError::reset(
                ErrorCode::Open,
                open_subcode::UNSUPPORTED_VERSION_NUMBER,
                &u16::from(BGP_VERSION).to_be_bytes(),
                format!("BGP version {version}; only 4 is supported"),
            ));
        }
        if hold_time == 1 || hold_time == 2 {
            return Err(DecodeError::reset(
                ErrorCode::Open,
                open_subcode::UNACCEPTABLE_HOLD_TIME,
                &[],
                format!("hold time {hold_time} s (must be 0 or at least 3)"),
            ));
        }
        if bgp_id.is_unspecified() {
            // RFC 6286 §2.2: a non-zero 4-octet identifier.
            return Err(DecodeError::reset(
                ErrorCode::Open,
                open_subcode::BAD_BGP_IDENTIFIER,
                &[],
                "BGP identifier 0.0.0.0",
            ));
        }
        let (params, extended) = match rest {
            [EXTENDED_PARAMS, hi, lo, params @ ..] if param_len == EXTENDED_PARAMS => {
                (params, Some(u16::from_be_bytes([*hi, *lo]) as usize))
            }
            _ => (rest, None),
        };
        let declared = extended.unwrap_or(param_len as usize);
        if declared != params.len() {
            return Err(DecodeError::reset(
                ErrorCode::Open,
                0,
                &[],
                format!("optional parameters length {declared} but {} octets follow", params.len()),
            ));
        }
        let mut capabilities = Vec::new();
        let mut input = params;
        while !input.is_empty() {
            let header = if extended.is_some() {
                (be_u8, be_u16).parse(input).map(|(r, (t, l))| (r, (t, l as usize)))
            } else {
                (be_u8, be_u8).parse(input).map(|(r, (t, l))| (r, (t, l as usize)))
            };
            let Ok((rest, (ty, len))) = header else {
                return Err(DecodeError::reset(ErrorCode::Open, 0, &[], "truncated optional parameter"));
            };
            let Ok((rest, value)) = bytes(rest, len) else {
                return Err(DecodeError::reset(ErrorCode::Open, 0, &[], format!("optional parameter {ty} overruns")));
            };
            if ty != PARAM_CAPABILITIES {
                return Err(DecodeError::reset(
                    ErrorCode::Open,
                    open_subcode::UNSUPPORTED_OPTIONAL_PARAMETER,
                    &[],
                    format!("optional parameter type {ty}"),
                ));
            }
            Capability::decode_all(value, &mut capabilities)?;
            input = rest;
        }
        Ok(Open { my_as, hold_time, bgp_id, capabilities })
    }

    pub(crate) fn encode_body(&self, dst: &mut BytesMut) {
        dst.put_u8(BGP_VERSION);
        dst.put_u16(self.my_as);
        dst.put_u16(self.hold_time);
        dst.put_u32(self.bgp_id.into());
        let caps_len: usize = self.capabilities.iter().map(Capability::encoded_len).sum();
        if self.capabilities.is_empty() {
            dst.put_u8(0);
        } else if caps_len + 2 <= 255 {
            dst.put_u8((caps_len + 2) as u8);
            dst.put_u8(PARAM_CAPABILITIES);
            dst.put_u8(caps_len as u8);
        } else {
            // RFC 9072 §2: the extended format, used only when needed.
            dst.put_slice(&[EXTENDED_PARAMS, EXTENDED_PARAMS]);
            dst.put_u16((caps_len + 3) as u16);
            dst.put_u8(PARAM_CAPABILITIES);
            dst.put_u16(caps_len as u16);
        }
        for cap in &self.capabilities {
            cap.encode(dst);
        }
    }
}
