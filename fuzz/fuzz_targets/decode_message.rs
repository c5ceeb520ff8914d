//! Fuzzes the BGP message decoder with every negotiated context, and
//! checks that whatever decodes re-encodes and decodes to the same value.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tortie_bgp::packet::{Context, Family, FamilySet, Message};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else { return };
    let mut add_path = FamilySet::NONE;
    if flags & 4 != 0 {
        add_path.insert(Family::IPV4_UNICAST);
    }
    if flags & 8 != 0 {
        add_path.insert(Family::IPV6_UNICAST);
    }
    let cxt = Context { four_octet_as: flags & 1 != 0, extended_message: flags & 2 != 0, add_path };
    // Let the fuzzer skip the marker: it must not spend its time guessing 16 × 0xff.
    let mut framed = vec![0xff; 16];
    framed.extend_from_slice(input);
    for buf in [input, &framed[..]] {
        let Ok(Some((message, _))) = Message::decode(buf, &cxt) else { continue };
        let mut out = BytesMut::new();
        if message.encode(&cxt, &mut out).is_err() {
            continue;
        }
        // Re-encoding a repaired UPDATE (RFC 7606) gives another message; a clean one must round-trip.
        if let Message::Update(u) = &message {
            if !u.errors.is_empty() {
                continue;
            }
        }
        match Message::decode(&out, &cxt) {
            Ok(Some((again, _))) => assert_eq!(strip(again), strip(message), "round trip changed the message"),
            other => panic!("our own encoding does not decode: {other:?}"),
        }
    }
});

/// Values that legitimately change on a round trip: unknown transitive
/// attributes gain the Partial bit; OPENs with several capability
/// parameters come back as one.
fn strip(m: Message) -> Message {
    match m {
        Message::Update(mut u) => {
            if let Some(attrs) = u.attrs.take() {
                let mut attrs = (*attrs).clone();
                for raw in &mut attrs.unknown {
                    raw.flags |= 0x20;
                }
                u.attrs = Some(attrs.into_shared());
            }
            Message::Update(u)
        }
        other => other,
    }
}
