//! The message header (RFC 4271 §4.1) and its checks (§6.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                                                               +
//! |                           Marker                              |
//! +                                                               +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Length               |      Type     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use bytes::{BufMut, BytesMut};

use super::cxt::{Context, MAX_MESSAGE_LEN};
use super::error::DecodeError;
use super::notification::{ErrorCode, header_subcode};

/// Marker, length and type.
pub const HEADER_LEN: usize = 19;
/// RFC 4271 §4.1: the marker is all ones.
const MARKER: [u8; 16] = [0xff; 16];

/// The message types (RFC 4271 §4.1, RFC 2918 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 1
    Open,
    /// 2
    Update,
    /// 3
    Notification,
    /// 4
    Keepalive,
    /// 5 (RFC 2918)
    RouteRefresh,
}

impl MessageType {
    fn from_u8(v: u8) -> Option<MessageType> {
        Some(match v {
            1 => MessageType::Open,
            2 => MessageType::Update,
            3 => MessageType::Notification,
            4 => MessageType::Keepalive,
            5 => MessageType::RouteRefresh,
            _ => return None,
        })
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            MessageType::Open => 1,
            MessageType::Update => 2,
            MessageType::Notification => 3,
            MessageType::Keepalive => 4,
            MessageType::RouteRefresh => 5,
        }
    }

    /// RFC 4271 §6.1: the smallest valid length of each type (header included).
    fn min_len(self) -> usize {
        match self {
            MessageType::Open => 29,
            MessageType::Update => 23,
            MessageType::Notification => 21,
            MessageType::Keepalive => 19,
            MessageType::RouteRefresh => 23,
        }
    }

    /// The largest valid length: a KEEPALIVE is a header alone (RFC 4271
    /// §4.4); RFC 8654 §3 keeps OPEN at 4096.
    fn max_len(self, cxt: &Context) -> usize {
        match self {
            MessageType::Keepalive => HEADER_LEN,
            MessageType::Open => MAX_MESSAGE_LEN,
            _ => cxt.max_message_len(),
        }
    }
}

/// Reads a header from the start of `buf`: the message type and the whole
/// message length, or `None` while fewer than 19 octets are there.
pub(crate) fn parse_header(buf: &[u8], cxt: &Context) -> Result<Option<(MessageType, usize)>, DecodeError> {
    let Some(header) = buf.get(..HEADER_LEN) else { return Ok(None) };
    if header[..16] != MARKER {
        return Err(DecodeError::reset(
            ErrorCode::MessageHeader,
            header_subcode::CONNECTION_NOT_SYNCHRONIZED,
            &[],
            "marker is not all ones",
        ));
    }
    let len_field = &header[16..18];
    let len = u16::from_be_bytes([len_field[0], len_field[1]]) as usize;
    let Some(ty) = MessageType::from_u8(header[18]) else {
        return Err(DecodeError::reset(
            ErrorCode::MessageHeader,
            header_subcode::BAD_MESSAGE_TYPE,
            &header[18..19],
            format!("unknown message type {}", header[18]),
        ));
    };
    if len < ty.min_len() || len > ty.max_len(cxt) {
        return Err(bad_length(ty, len));
    }
    Ok(Some((ty, len)))
}

/// RFC 4271 §6.1: Bad Message Length, with the length field as data.
pub(crate) fn bad_length(ty: MessageType, len: usize) -> DecodeError {
    let field = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
    DecodeError::reset(
        ErrorCode::MessageHeader,
        header_subcode::BAD_MESSAGE_LENGTH,
        &field,
        format!("{ty:?} message length {len} is out of range"),
    )
}

/// Writes a header with a zero length, returning where the message starts
/// so [`finish`] can fill the length in.
pub(crate) fn begin(dst: &mut BytesMut, ty: MessageType) -> usize {
    let start = dst.len();
    dst.put_slice(&MARKER);
    dst.put_u16(0);
    dst.put_u8(ty.to_u8());
    start
}

/// Fills in the length of the message that [`begin`] started at `start`.
pub(crate) fn finish(dst: &mut BytesMut, start: usize) {
    let len = (dst.len() - start) as u16;
    dst[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
}
