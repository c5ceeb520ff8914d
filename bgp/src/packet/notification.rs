//! NOTIFICATION (RFC 4271 §4.5) with RFC 9003 shutdown communication.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::DecodeError;

/// NOTIFICATION error codes (RFC 4271 §4.5, RFC 7313 §5, RFC 9687 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 1: Message Header Error.
    MessageHeader,
    /// 2: OPEN Message Error.
    Open,
    /// 3: UPDATE Message Error.
    Update,
    /// 4: Hold Timer Expired.
    HoldTimerExpired,
    /// 5: Finite State Machine Error.
    Fsm,
    /// 6: Cease.
    Cease,
    /// 7: ROUTE-REFRESH Message Error (RFC 7313).
    RouteRefresh,
    /// 8: Send Hold Timer Expired (RFC 9687).
    SendHoldTimerExpired,
    /// Any other code, kept as received.
    Other(u8),
}

impl ErrorCode {
    /// The code for a wire value.
    pub fn from_u8(v: u8) -> ErrorCode {
        match v {
            1 => ErrorCode::MessageHeader,
            2 => ErrorCode::Open,
            3 => ErrorCode::Update,
            4 => ErrorCode::HoldTimerExpired,
            5 => ErrorCode::Fsm,
            6 => ErrorCode::Cease,
            7 => ErrorCode::RouteRefresh,
            8 => ErrorCode::SendHoldTimerExpired,
            v => ErrorCode::Other(v),
        }
    }

    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            ErrorCode::MessageHeader => 1,
            ErrorCode::Open => 2,
            ErrorCode::Update => 3,
            ErrorCode::HoldTimerExpired => 4,
            ErrorCode::Fsm => 5,
            ErrorCode::Cease => 6,
            ErrorCode::RouteRefresh => 7,
            ErrorCode::SendHoldTimerExpired => 8,
            ErrorCode::Other(v) => v,
        }
    }
}

/// Message Header Error subcodes (RFC 4271 §6.1).
pub mod header_subcode {
    /// The marker is not all ones.
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    /// The length field is out of range for the type.
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    /// The type is not known.
    pub const BAD_MESSAGE_TYPE: u8 = 3;
}

/// OPEN Message Error subcodes (RFC 4271 §6.2, RFC 5492 §5).
pub mod open_subcode {
    /// Version other than 4.
    pub const UNSUPPORTED_VERSION_NUMBER: u8 = 1;
    /// The peer's AS is not the configured one.
    pub const BAD_PEER_AS: u8 = 2;
    /// The BGP identifier is not acceptable.
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    /// An optional parameter is not recognised.
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    /// Hold time 1 or 2, or refused by policy.
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    /// A required capability is missing (RFC 5492).
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
}

/// UPDATE Message Error subcodes (RFC 4271 §6.3).
pub mod update_subcode {
    /// Lengths in the UPDATE do not add up.
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    /// A well-known attribute is not recognised.
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    /// A well-known mandatory attribute is missing.
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    /// Flags conflict with the attribute type.
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    /// An attribute's length is wrong for its type.
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    /// ORIGIN has an undefined value.
    pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
    /// NEXT_HOP is syntactically wrong.
    pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
    /// An optional attribute is malformed.
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    /// NLRI is syntactically wrong.
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    /// AS_PATH is malformed.
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// Cease subcodes (RFC 4486 §4, RFC 8203/9003).
pub mod cease_subcode {
    /// A prefix limit was exceeded.
    pub const MAXIMUM_PREFIXES_REACHED: u8 = 1;
    /// The operator shut the session down (may carry a shutdown message).
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    /// The peer was removed from the configuration.
    pub const PEER_DECONFIGURED: u8 = 3;
    /// The operator reset the session (may carry a shutdown message).
    pub const ADMINISTRATIVE_RESET: u8 = 4;
    /// Connection refused by the local system.
    pub const CONNECTION_REJECTED: u8 = 5;
    /// The peer's configuration changed.
    pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
    /// Loser of connection collision resolution (RFC 4271 §6.8).
    pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
    /// Out of resources.
    pub const OUT_OF_RESOURCES: u8 = 8;
}

/// RFC 9003 §2: a shutdown communication is at most 255 octets of UTF-8.
pub const MAX_SHUTDOWN_MESSAGE_LEN: usize = 255;

/// A NOTIFICATION message.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Error code    | Error subcode |   Data (variable)             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notification {
    /// Error code.
    pub code: ErrorCode,
    /// Error subcode.
    pub subcode: u8,
    /// Data.
    pub data: Bytes,
}

impl Notification {
    /// An administrative Cease (shutdown or reset, RFC 4486) carrying an
    /// RFC 9003 shutdown communication, truncated to 255 octets on a
    /// character boundary.
    pub fn cease_with_message(subcode: u8, message: &str) -> Notification {
        let mut end = message.len().min(MAX_SHUTDOWN_MESSAGE_LEN);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let mut data = BytesMut::with_capacity(end + 1);
        data.put_u8(end as u8);
        data.put_slice(&message.as_bytes()[..end]);
        Notification { code: ErrorCode::Cease, subcode, data: data.freeze() }
    }

    /// The RFC 9003 shutdown communication of an Administrative Shutdown or
    /// Reset, if it carries a well-formed one.
    pub fn shutdown_message(&self) -> Option<&str> {
        let admin = [cease_subcode::ADMINISTRATIVE_SHUTDOWN, cease_subcode::ADMINISTRATIVE_RESET];
        if self.code != ErrorCode::Cease || !admin.contains(&self.subcode) {
            return None;
        }
        let (&len, text) = self.data.split_first()?;
        std::str::from_utf8(text.get(..len as usize)?).ok()
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Notification, DecodeError> {
        match body {
            [code, subcode, data @ ..] => Ok(Notification {
                code: ErrorCode::from_u8(*code),
                subcode: *subcode,
                data: Bytes::copy_from_slice(data),
            }),
            _ => Err(super::header::bad_length(super::header::MessageType::Notification, body.len())),
        }
    }

    pub(crate) fn encode_body(&self, dst: &mut BytesMut) {
        dst.put_u8(self.code.to_u8());
        dst.put_u8(self.subcode);
        dst.put_slice(&self.data);
    }
}

impl std::fmt::Display for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.code.to_u8(), self.subcode)?;
        if let Some(msg) = self.shutdown_message() {
            write!(f, " \"{msg}\"")?;
        }
        Ok(())
    }
}
