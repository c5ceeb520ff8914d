//! The BGP-4 wire codec: bytes ⇄ typed messages, with no I/O.
//!
//! [`Message::decode`] reads one whole message; [`Message::encode`] writes
//! one (or, for an UPDATE too big for one, several). Both take the
//! [`Context`] the session negotiated. [`BgpCodec`] frames a byte stream for
//! `tokio_util::codec`. Every decode error carries the NOTIFICATION it maps
//! to and the RFC 7606 action; nothing from the wire can panic.

mod attr;
mod capability;
pub(crate) mod codec;
mod cxt;
mod error;
mod header;
mod intern;
mod nlri;
mod notification;
mod open;
mod route_refresh;
mod update;
mod wire;

use bytes::BytesMut;

pub use attr::{
    Aggregator, AsPath, Community, ExtCommunity, LargeCommunity, MpNextHop, MpReach, MpUnreach, Origin, PathAttrs,
    RawAttr, Segment, SegmentType, code as attr_code, flag as attr_flag,
};
pub use capability::{
    AddPathFamily, AddPathMode, Capability, ExtendedNextHop, GracefulRestart, GracefulRestartFamily, LongLivedFamily,
    MAX_LONG_LIVED_STALE_TIME,
};
pub use codec::{BgpCodec, CodecError};
pub use cxt::{Afi, Context, Family, FamilySet, MAX_EXTENDED_MESSAGE_LEN, MAX_MESSAGE_LEN, Safi};
pub use error::{DecodeError, ErrorAction};
pub(crate) use header::parse_header;
pub use header::{HEADER_LEN, MessageType};
pub use intern::AttrInterner;
pub use nlri::{Ipv4Nlri, Nlri, NlriPrefix};
pub use notification::{
    ErrorCode, MAX_SHUTDOWN_MESSAGE_LEN, Notification, cease_subcode, header_subcode, open_subcode, update_subcode,
};
pub use open::{AS_TRANS, BGP_VERSION, Open};
pub use route_refresh::{RefreshSubtype, RouteRefresh};
pub use update::{EncodeError, Update};

/// A BGP message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message {
    /// OPEN.
    Open(Open),
    /// UPDATE.
    Update(Update),
    /// NOTIFICATION.
    Notification(Notification),
    /// KEEPALIVE: a header alone.
    Keepalive,
    /// ROUTE-REFRESH.
    RouteRefresh(RouteRefresh),
}

impl Message {
    /// Decodes one whole message (header included). Returns `Ok(None)`
    /// while `buf` holds less than the message; otherwise the message and
    /// how many octets it took.
    pub fn decode(buf: &[u8], cxt: &Context) -> Result<Option<(Message, usize)>, DecodeError> {
        let Some((ty, len)) = header::parse_header(buf, cxt)? else { return Ok(None) };
        let Some(body) = buf.get(HEADER_LEN..len) else { return Ok(None) };
        let message = match ty {
            MessageType::Open => Message::Open(Open::decode(body)?),
            MessageType::Update => Message::Update(Update::decode(body, cxt)?),
            MessageType::Notification => Message::Notification(Notification::decode(body)?),
            MessageType::Keepalive => Message::Keepalive,
            MessageType::RouteRefresh => Message::RouteRefresh(RouteRefresh::decode(body)?),
        };
        Ok(Some((message, len)))
    }

    /// Appends the encoded message to `dst`; an UPDATE larger than the
    /// negotiated limit becomes several messages.
    pub fn encode(&self, cxt: &Context, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let body = |ty, dst: &mut BytesMut, write: &dyn Fn(&mut BytesMut)| {
            let start = header::begin(dst, ty);
            write(dst);
            header::finish(dst, start);
        };
        match self {
            Message::Open(open) => body(MessageType::Open, dst, &|d| open.encode_body(d)),
            Message::Update(update) => return update.encode(cxt, dst).map(drop),
            Message::Notification(n) => body(MessageType::Notification, dst, &|d| n.encode_body(d)),
            Message::Keepalive => body(MessageType::Keepalive, dst, &|_| {}),
            Message::RouteRefresh(r) => body(MessageType::RouteRefresh, dst, &|d| r.encode_body(d)),
        }
        Ok(())
    }
}
