//! Framing for sessions: a `tokio_util::codec` Decoder/Encoder over the
//! message codec. The encoder also takes pre-encoded bytes, so an UPDATE
//! encoded once per update group goes to every member as is.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::{Context, DecodeError, EncodeError, Message};

/// Errors of a framed session.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The peer sent something malformed.
    #[error("malformed message: {0}")]
    Decode(#[from] DecodeError),
    /// We could not encode a message.
    #[error("cannot encode: {0}")]
    Encode(#[from] EncodeError),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How much room to make for the next read in the middle of a stream of
/// messages (a full table arriving back to back: large reads, few syscalls).
const READ_CHUNK: usize = 64 * 1024;
/// How much when the buffer is empty: an idle session gets KEEPALIVEs
/// (19 octets) and the odd small UPDATE (a reflector client's block and
/// routes); a larger message makes room for `READ_CHUNK` once it is begun.
/// Five thousand idle clients then hold 2.5 MiB, not 20.
pub(crate) const IDLE_CHUNK: usize = 512;

/// The session framing; update [`BgpCodec::context`] once OPENs are exchanged.
#[derive(Debug, Clone, Default)]
pub struct BgpCodec {
    /// What was negotiated for decoding (receive direction).
    pub rx: Context,
    /// What was negotiated for encoding (send direction).
    pub tx: Context,
}

impl BgpCodec {
    /// Sets both directions' context.
    pub fn context(&mut self, rx: Context, tx: Context) {
        self.rx = rx;
        self.tx = tx;
    }
}

impl Decoder for BgpCodec {
    type Item = Message;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, CodecError> {
        match Message::decode(src, &self.rx)? {
            Some((message, len)) => {
                src.advance(len);
                Ok(Some(message))
            }
            None => {
                // Read in large chunks once a stream is flowing: a full table arrives
                // as back-to-back messages, and small reads cost a syscall each.
                src.reserve(if src.is_empty() { IDLE_CHUNK } else { READ_CHUNK });
                Ok(None)
            }
        }
    }
}

impl Encoder<&Message> for BgpCodec {
    type Error = CodecError;

    fn encode(&mut self, message: &Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(message.encode(&self.tx, dst)?)
    }
}

impl Encoder<Bytes> for BgpCodec {
    type Error = CodecError;

    fn encode(&mut self, encoded: Bytes, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(&encoded);
        Ok(())
    }
}
