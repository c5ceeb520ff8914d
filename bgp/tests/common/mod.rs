//! Helpers shared by the codec tests.

#![allow(dead_code, clippy::unwrap_used)]

use bytes::BytesMut;
use tortie_bgp::packet::{Context, Message};

/// Bytes from hex with any whitespace; `M` stands for the 16-octet marker.
pub fn hex(s: &str) -> Vec<u8> {
    let expanded = s.replace('M', &"ff".repeat(16));
    let digits: String = expanded.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex: {s}");
    (0..digits.len()).step_by(2).map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap()).collect()
}

/// Decodes exactly one whole message.
pub fn decode(bytes: &[u8], cxt: &Context) -> Message {
    let (message, used) = Message::decode(bytes, cxt).unwrap().expect("a whole message");
    assert_eq!(used, bytes.len(), "message length");
    message
}

/// Encodes one message.
pub fn encode(message: &Message, cxt: &Context) -> Vec<u8> {
    let mut out = BytesMut::new();
    message.encode(cxt, &mut out).unwrap();
    out.to_vec()
}

/// Decodes every message in `bytes`.
pub fn decode_all(mut bytes: &[u8], cxt: &Context) -> Vec<Message> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (m, used) = Message::decode(bytes, cxt).unwrap().expect("whole messages only");
        out.push(m);
        bytes = &bytes[used..];
    }
    out
}

pub fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

/// An IPv4 prefix, as the UPDATE's own NLRI and Withdrawn Routes fields hold them.
pub fn v4_net(s: &str) -> ipnet::Ipv4Net {
    s.parse().unwrap()
}
