//! IP-in-IP encapsulation (RFC 2003) as pure functions over bytes: build
//! the outer header for an inner IPv4 packet, and take an outer packet
//! apart. The data plane feeds them and writes the results.
//!
//! ```text
//!   outer IPv4 header (20 bytes, protocol 4)  |  inner IPv4 packet, unchanged
//! ```

use std::net::Ipv4Addr;

/// IP protocol number of IP-in-IP (RFC 2003 §3).
pub const IPPROTO_IPIP: u8 = 4;
/// Outer header length (no options).
pub const OUTER_LEN: usize = 20;
/// TTL of the outer header: "appropriate for delivering to the tunnel
/// exit point" (RFC 2003 §3.1) — the underlay's default.
const OUTER_TTL: u8 = 64;
/// The Don't Fragment bit in the flags/fragment-offset word.
const DF: u16 = 0x4000;

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Discard {
    /// Too short or lengths disagree.
    Malformed,
    /// Not IPv4 (IPIP carries IPv4 only).
    NotIpv4,
    /// The outer packet is not protocol 4.
    NotIpip,
    /// A fragment of an outer packet (the kernel reassembles before a raw socket; seen only when forged).
    Fragment,
}

/// The ones'-complement sum of `bytes` as 16-bit words (RFC 1071), folded.
fn sum16(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn checksum(header: &[u8]) -> u16 {
    !sum16(header)
}

/// IP protocol number of TCP.
const IPPROTO_TCP: u8 = 6;
/// Offset of the checksum in the TCP header (RFC 9293 §3.1).
pub const TCP_CHECKSUM_OFFSET: usize = 16;

/// Where a TCP/IPv4 packet's headers end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpHeaders {
    /// The IPv4 header's length: where the TCP header starts.
    pub ip_len: usize,
    /// The IPv4 and TCP headers' length: where the payload starts.
    pub len: usize,
}

/// The headers of a TCP/IPv4 packet in the form the kernel's GRO leaves a
/// merged packet in: its TCP checksum field holds the sum of the
/// pseudo-header (RFC 9293 §3.1) over its whole length, for the kernel to
/// complete per segment (it checked every segment's checksum as it merged
/// them). `None` for anything else — a fragment, another protocol, or a
/// long packet with a whole checksum, which nobody vouched for and which
/// must not be handed on as verified.
pub fn merged_tcp(inner: &[u8]) -> Option<TcpHeaders> {
    if inner.len() < 20 || inner[0] >> 4 != 4 || inner[9] != IPPROTO_TCP {
        return None;
    }
    let ip_len = usize::from(inner[0] & 0x0f) * 4;
    let frag = u16::from_be_bytes([inner[6], inner[7]]);
    let tcp_len = u16::try_from(inner.len().checked_sub(ip_len)?).ok()?;
    if ip_len < 20 || frag & 0x3fff != 0 || usize::from(u16::from_be_bytes([inner[2], inner[3]])) != inner.len() {
        return None;
    }
    let len = ip_len + usize::from(*inner.get(ip_len + 12)? >> 4) * 4;
    if len < ip_len + 20 || len > inner.len() {
        return None;
    }
    let mut pseudo = [0u8; 12];
    pseudo[..8].copy_from_slice(&inner[12..20]);
    pseudo[9] = IPPROTO_TCP;
    pseudo[10..].copy_from_slice(&tcp_len.to_be_bytes());
    let at = ip_len + TCP_CHECKSUM_OFFSET;
    let field = u16::from_be_bytes([inner[at], inner[at + 1]]);
    // Ones' complement: 0x0000 and 0xffff are both zero.
    let zero = |v: u16| if v == 0xffff { 0 } else { v };
    (zero(field) == zero(sum16(&pseudo))).then_some(TcpHeaders { ip_len, len })
}

/// The inner packet's source and destination, if it is a well-formed IPv4 packet.
pub fn inner_addresses(inner: &[u8]) -> Result<(Ipv4Addr, Ipv4Addr), Discard> {
    if inner.len() < 20 {
        return Err(Discard::Malformed);
    }
    if inner[0] >> 4 != 4 {
        return Err(Discard::NotIpv4);
    }
    Ok((
        Ipv4Addr::new(inner[12], inner[13], inner[14], inner[15]),
        Ipv4Addr::new(inner[16], inner[17], inner[18], inner[19]),
    ))
}

/// The inner packet's destination, if it is a well-formed IPv4 packet.
pub fn inner_destination(inner: &[u8]) -> Result<Ipv4Addr, Discard> {
    inner_addresses(inner).map(|(_, dst)| dst)
}

/// The outer header for `inner` from `src` to `dst`: TOS copied from the
/// inner header and DF copied too (RFC 2003 §3.1), TTL 64, identification 0
/// (the kernel fills it in).
pub fn outer_header(inner: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<[u8; OUTER_LEN], Discard> {
    inner_destination(inner)?;
    let total = u16::try_from(OUTER_LEN + inner.len()).map_err(|_| Discard::Malformed)?;
    let inner_df = u16::from_be_bytes([inner[6], inner[7]]) & DF;
    let mut h = [0u8; OUTER_LEN];
    h[0] = 0x45;
    h[1] = inner[1];
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[6..8].copy_from_slice(&inner_df.to_be_bytes());
    h[8] = OUTER_TTL;
    h[9] = IPPROTO_IPIP;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    Ok(h)
}

/// The whole outer packet (header, then `inner`) in `out`.
pub fn encapsulate(inner: &[u8], src: Ipv4Addr, dst: Ipv4Addr, out: &mut Vec<u8>) -> Result<(), Discard> {
    let header = outer_header(inner, src, dst)?;
    out.clear();
    out.extend_from_slice(&header);
    out.extend_from_slice(inner);
    Ok(())
}

/// Takes a received outer packet apart: its source and the inner packet.
pub fn decapsulate(packet: &[u8]) -> Result<(Ipv4Addr, &[u8]), Discard> {
    if packet.len() < OUTER_LEN {
        return Err(Discard::Malformed);
    }
    if packet[0] >> 4 != 4 {
        return Err(Discard::NotIpv4);
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if ihl < OUTER_LEN || total < ihl || total > packet.len() {
        return Err(Discard::Malformed);
    }
    if packet[9] != IPPROTO_IPIP {
        return Err(Discard::NotIpip);
    }
    let frag = u16::from_be_bytes([packet[6], packet[7]]);
    if frag & 0x3fff != 0 {
        return Err(Discard::Fragment);
    }
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let inner = &packet[ihl..total];
    inner_destination(inner)?;
    Ok((src, inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ICMP echo from 198.18.0.1 to 198.18.0.65, TOS 0x10, DF set.
    fn inner() -> Vec<u8> {
        let mut p =
            vec![0x45, 0x10, 0x00, 0x1c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 198, 18, 0, 1, 198, 18, 0, 65];
        let sum = checksum(&p);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p.extend_from_slice(&[8, 0, 0xf7, 0xff, 0, 0, 0, 0]);
        p
    }

    #[test]
    fn encapsulation_follows_rfc_2003_and_round_trips() {
        let inner = inner();
        let mut out = Vec::new();
        encapsulate(&inner, Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 2), &mut out).unwrap();
        assert_eq!(out.len(), 20 + inner.len());
        assert_eq!(out[0], 0x45);
        assert_eq!(out[1], 0x10, "TOS copied");
        assert_eq!(u16::from_be_bytes([out[2], out[3]]) as usize, out.len());
        assert_eq!(u16::from_be_bytes([out[6], out[7]]), DF, "DF copied");
        assert_eq!((out[8], out[9]), (64, 4));
        assert_eq!(checksum(&out[..20]), 0, "a valid header sums to zero");
        let (src, back) = decapsulate(&out).unwrap();
        assert_eq!(src, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(back, &inner[..]);
    }

    /// A TCP segment from 198.18.0.1:5000 to 198.18.0.65:80 with a 12-byte
    /// option block and `payload` bytes of data, its checksum complete.
    fn tcp(payload: usize) -> Vec<u8> {
        let total = (20 + 32 + payload) as u16;
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 65];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0x13, 0x88, 0, 80, 0, 0, 0, 1, 0, 0, 0, 1, 0x80, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        p.extend((0..payload).map(|i| i as u8));
        let mut pseudo = vec![198, 18, 0, 1, 198, 18, 0, 65, 0, 6];
        pseudo.extend_from_slice(&(total - 20).to_be_bytes());
        pseudo.extend_from_slice(&p[20..]);
        let sum = checksum(&pseudo);
        p[36..38].copy_from_slice(&sum.to_be_bytes());
        p
    }

    #[test]
    fn only_tcp_in_the_form_gro_leaves_counts_as_merged() {
        let whole = tcp(60_000);
        assert_eq!(merged_tcp(&whole), None, "a whole checksum: nobody merged it");
        // What GRO leaves: the pseudo-header sum over the merged length,
        // which completes to the whole checksum over the data.
        let mut merged = whole.clone();
        let at = 20 + TCP_CHECKSUM_OFFSET;
        let mut pseudo = vec![198, 18, 0, 1, 198, 18, 0, 65, 0, 6];
        pseudo.extend_from_slice(&((whole.len() - 20) as u16).to_be_bytes());
        merged[at..at + 2].copy_from_slice(&sum16(&pseudo).to_be_bytes());
        assert_eq!(merged_tcp(&merged), Some(TcpHeaders { ip_len: 20, len: 52 }));
        let mut completed = merged.clone();
        let sum = checksum(&completed[20..]);
        completed[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(completed, whole, "the kernel's completion gives the whole checksum back");
        assert_eq!(merged_tcp(&inner()), None, "ICMP");
        assert_eq!(merged_tcp(&merged[..120]), None, "length disagrees with the header");
        let mut frag = merged.clone();
        frag[6] = 0x20;
        assert_eq!(merged_tcp(&frag), None, "a fragment");
        let mut short_offset = merged.clone();
        short_offset[32] = 0x40;
        assert_eq!(merged_tcp(&short_offset), None, "TCP header shorter than 20 octets");
    }

    #[test]
    fn bad_packets_are_dropped_with_a_reason() {
        let mut out = Vec::new();
        assert_eq!(encapsulate(&[0x60; 40], Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, &mut out), Err(Discard::NotIpv4));
        assert_eq!(decapsulate(&[0x45; 10]), Err(Discard::Malformed));
        encapsulate(&inner(), Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, &mut out).unwrap();
        let mut udp = out.clone();
        udp[9] = 17;
        assert_eq!(decapsulate(&udp), Err(Discard::NotIpip));
        let mut frag = out.clone();
        frag[7] = 1;
        assert_eq!(decapsulate(&frag), Err(Discard::Fragment));
        let mut short = out.clone();
        short[3] = 200;
        assert_eq!(decapsulate(&short), Err(Discard::Malformed));
    }
}
