//! A session's framing over its TCP connection: opening it, taking the
//! UPDATEs already read, and closing it so its last message arrives.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::SinkExt;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::packet::{BgpCodec, Message, MessageType, Update, parse_header};

/// How long a closing connection may take to deliver what it was last
/// given (a NOTIFICATION): the peer may not be reading at all.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);

/// A session's framing over `stream`, which sends each message at once
/// (TCP_NODELAY, as BGP daemons set it: a KEEPALIVE or a NOTIFICATION must
/// not wait for more data).
pub(super) fn framed(stream: TcpStream) -> Framed<TcpStream, BgpCodec> {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    // The read buffer as the codec keeps it when idle (it grows for a
    // stream of UPDATEs). The session's own messages (OPEN, KEEPALIVE,
    // NOTIFICATION) are written into the write buffer; UPDATEs go straight
    // from the outbox (`poll_io`): no room is held for them.
    let mut framed = Framed::with_capacity(stream, BgpCodec::default(), crate::packet::codec::IDLE_CHUNK);
    *framed.write_buffer_mut() = BytesMut::new();
    framed
}

/// Closes a connection so that what it was last given (a NOTIFICATION)
/// arrives, if the peer takes it within [`CLOSE_FLUSH`]: written out, our
/// side shut (FIN after it), and what the peer still sends read and dropped
/// until it closes too. Closing with unread bytes in the receive queue would
/// make the kernel answer with a RST, and the peer's kernel drop the
/// NOTIFICATION with it (RFC 4271 §6: the NOTIFICATION is sent, then the
/// connection closed).
pub(super) async fn close_gracefully(mut framed: Framed<TcpStream, BgpCodec>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(CLOSE_FLUSH, async move {
        SinkExt::<Bytes>::flush(&mut framed).await.map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut stream = framed.into_inner();
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// UPDATEs reported to the speaker in one event at most: those already
/// read go together, for one hand-off rather than one each (a table arrives
/// one prefix per UPDATE, back to back)…
const UPDATES_PER_EVENT: usize = 16;
/// …and the UPDATEs that join the first take up to a standard message's
/// octets (RFC 4271 §4.1) together: big UPDATEs, with hundreds of prefixes
/// each, go one or two to an event, so the speaker's batches stay their size.
const JOINING_OCTETS: usize = 4096;

/// The next message in the read buffer, if it is a whole UPDATE of at most
/// `room` octets that decodes, and its length: taken with no I/O. Anything
/// else stays for `poll_io` (its header alone is read).
fn buffered_update(framed: &mut Framed<TcpStream, BgpCodec>, room: usize) -> Option<(Update, usize)> {
    let (buf, cxt) = (framed.read_buffer(), &framed.codec().rx);
    match parse_header(buf, cxt) {
        Ok(Some((MessageType::Update, len))) if len <= room && len <= buf.len() => {}
        _ => return None,
    }
    match Message::decode(buf, cxt) {
        Ok(Some((Message::Update(update), len))) => {
            framed.read_buffer_mut().advance(len);
            Some((update, len))
        }
        _ => None,
    }
}

/// Puts after `updates` the UPDATEs already whole in the read buffer, up to
/// [`UPDATES_PER_EVENT`] in all and [`JOINING_OCTETS`] joining.
pub(super) fn take_buffered_updates(framed: &mut Framed<TcpStream, BgpCodec>, updates: &mut Vec<Update>) {
    let mut room = JOINING_OCTETS;
    while updates.len() < UPDATES_PER_EVENT
        && let Some((update, len)) = buffered_update(framed, room)
    {
        updates.push(update);
        room -= len;
    }
}
