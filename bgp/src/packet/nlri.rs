//! Prefixes as NLRI (RFC 4271 §4.3) with optional ADD-PATH path
//! identifiers (RFC 7911 §3).
//!
//! ```text
//! +---------------------------+
//! |   Path Identifier (4)     |   only when add-path is negotiated
//! +---------------------------+
//! |   Length (1 octet)        |
//! +---------------------------+
//! |   Prefix (variable)       |   ceil(Length / 8) octets
//! +---------------------------+
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::cxt::Afi;

/// One prefix of an UPDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nlri {
    /// The prefix, host bits cleared.
    pub prefix: IpNet,
    /// ADD-PATH path identifier; `None` when add-path is not in use.
    pub path_id: Option<u32>,
}

impl Nlri {
    /// A prefix without path identifier; host bits are cleared.
    pub fn new(prefix: IpNet) -> Nlri {
        Nlri { prefix: prefix.trunc(), path_id: None }
    }

    /// Octets on the wire, with a path identifier when `add_path`.
    pub(crate) fn encoded_len(&self, add_path: bool) -> usize {
        let id = if add_path { 4 } else { 0 };
        id + 1 + (self.prefix.prefix_len() as usize).div_ceil(8)
    }

    /// Writes the NLRI; the path identifier only when `add_path` (0 if the
    /// NLRI has none).
    pub(crate) fn encode(&self, add_path: bool, dst: &mut BytesMut) {
        if add_path {
            dst.put_u32(self.path_id.unwrap_or(0));
        }
        let len = self.prefix.prefix_len();
        dst.put_u8(len);
        let octets = (len as usize).div_ceil(8);
        match self.prefix {
            IpNet::V4(p) => dst.put_slice(&p.network().octets()[..octets]),
            IpNet::V6(p) => dst.put_slice(&p.network().octets()[..octets]),
        }
    }
}

/// Why an NLRI field could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NlriError {
    /// A prefix length beyond the address size.
    BadLength(u8),
    /// The field ends inside a prefix.
    Truncated,
    /// NLRI of an address family we cannot represent.
    UnsupportedAfi(Afi),
}

impl std::fmt::Display for NlriError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NlriError::BadLength(len) => write!(f, "prefix length {len} is too long"),
            NlriError::Truncated => f.write_str("prefix runs past the end of its field"),
            NlriError::UnsupportedAfi(afi) => write!(f, "NLRI of AFI {}", afi.to_u16()),
        }
    }
}

/// Appends every NLRI of `input` (a whole field) to `out`.
pub(crate) fn decode_all(input: &[u8], afi: Afi, add_path: bool, out: &mut Vec<Nlri>) -> Result<(), NlriError> {
    match (afi, add_path) {
        (Afi::Ipv4, false) => decode_v4::<false>(input, out),
        (Afi::Ipv4, true) => decode_v4::<true>(input, out),
        (Afi::Ipv6, false) => decode_v6::<false>(input, out),
        (Afi::Ipv6, true) => decode_v6::<true>(input, out),
        (other, _) => Err(NlriError::UnsupportedAfi(other)),
    }
}

/// Splits the path identifier off when add-path is on.
#[inline(always)]
fn path_id<const ADD_PATH: bool>(input: &[u8]) -> Result<(Option<u32>, &[u8]), NlriError> {
    if !ADD_PATH {
        return Ok((None, input));
    }
    let (id, rest) = input.split_first_chunk::<4>().ok_or(NlriError::Truncated)?;
    Ok((Some(u32::from_be_bytes(*id)), rest))
}

/// The hot loop of UPDATE decoding: IPv4 prefixes, one specialised copy
/// with and one without path identifiers.
fn decode_v4<const ADD_PATH: bool>(mut input: &[u8], out: &mut Vec<Nlri>) -> Result<(), NlriError> {
    // At most one prefix per 1 (+4) octets; /24s (4 octets) are the common case.
    out.reserve(input.len() / if ADD_PATH { 8 } else { 4 });
    while !input.is_empty() {
        let (path_id, rest) = path_id::<ADD_PATH>(input)?;
        let Some((&len, rest)) = rest.split_first() else { return Err(NlriError::Truncated) };
        if len > 32 {
            return Err(NlriError::BadLength(len));
        }
        let octets = (len as usize).div_ceil(8);
        if rest.len() < octets {
            return Err(NlriError::Truncated);
        }
        // Read four octets whenever they are there and mask: the octets past
        // the prefix (the next NLRI) fall under the mask.
        let raw = match rest.first_chunk::<4>() {
            Some(four) => u32::from_be_bytes(*four),
            None => {
                let mut a = [0u8; 4];
                a[..octets].copy_from_slice(&rest[..octets]);
                u32::from_be_bytes(a)
            }
        };
        input = &rest[octets..];
        let prefix = Ipv4Net::new_assert(Ipv4Addr::from(raw & MASK32[len as usize]), len);
        out.push(Nlri { prefix: IpNet::V4(prefix), path_id });
    }
    Ok(())
}

fn decode_v6<const ADD_PATH: bool>(mut input: &[u8], out: &mut Vec<Nlri>) -> Result<(), NlriError> {
    // /48s (7 octets) to /64s (9) are the common case.
    out.reserve(input.len() / if ADD_PATH { 11 } else { 7 });
    while !input.is_empty() {
        let (path_id, rest) = path_id::<ADD_PATH>(input)?;
        let Some((&len, rest)) = rest.split_first() else { return Err(NlriError::Truncated) };
        if len > 128 {
            return Err(NlriError::BadLength(len));
        }
        let octets = (len as usize).div_ceil(8);
        let Some(addr) = rest.get(..octets) else { return Err(NlriError::Truncated) };
        // Read sixteen octets when they are there and mask, as for IPv4.
        let raw = match rest.first_chunk::<16>() {
            Some(all) => u128::from_be_bytes(*all),
            None => {
                let mut a = [0u8; 16];
                a[..octets].copy_from_slice(addr);
                u128::from_be_bytes(a)
            }
        };
        let rest = &rest[octets..];
        let bits = raw & mask128(len);
        out.push(Nlri { prefix: IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(bits), len)), path_id });
        input = rest;
    }
    Ok(())
}

/// `MASK32[n]`: the top `n` bits set.
const MASK32: [u32; 33] = {
    let mut m = [0u32; 33];
    let mut n = 1;
    while n <= 32 {
        m[n] = u32::MAX << (32 - n);
        n += 1;
    }
    m
};

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// `(wire, afi, add_path, decoded)`, from the RFC 4271 §4.3 layout.
    #[test]
    fn nlri_vectors() {
        let cases: &[(&[u8], Afi, bool, Vec<Nlri>)] = &[
            (&[0], Afi::Ipv4, false, vec![Nlri::new(p("0.0.0.0/0"))]),
            (&[24, 198, 18, 1], Afi::Ipv4, false, vec![Nlri::new(p("198.18.1.0/24"))]),
            (
                &[32, 198, 18, 1, 7, 17, 198, 18, 128],
                Afi::Ipv4,
                false,
                vec![Nlri::new(p("198.18.1.7/32")), Nlri::new(p("198.18.128.0/17"))],
            ),
            // Host bits past the length are ignored (cleared).
            (&[23, 198, 18, 1], Afi::Ipv4, false, vec![Nlri::new(p("198.18.0.0/23"))]),
            (
                &[0, 0, 0, 9, 24, 198, 18, 1],
                Afi::Ipv4,
                true,
                vec![Nlri { prefix: p("198.18.1.0/24"), path_id: Some(9) }],
            ),
            (&[64, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1], Afi::Ipv6, false, vec![Nlri::new(p("2001:db8:0:1::/64"))]),
        ];
        for (wire, afi, add_path, want) in cases {
            let mut got = Vec::new();
            decode_all(wire, *afi, *add_path, &mut got).unwrap();
            assert_eq!(&got, want, "{wire:?}");
        }
    }

    #[test]
    fn malformed_nlri_is_refused() {
        let mut out = Vec::new();
        assert_eq!(decode_all(&[33, 1, 2, 3, 4, 5], Afi::Ipv4, false, &mut out), Err(NlriError::BadLength(33)));
        assert_eq!(decode_all(&[24, 198, 18], Afi::Ipv4, false, &mut out), Err(NlriError::Truncated));
        assert_eq!(decode_all(&[0, 0, 1], Afi::Ipv4, true, &mut out), Err(NlriError::Truncated));
        assert_eq!(decode_all(&[129], Afi::Ipv6, false, &mut out), Err(NlriError::BadLength(129)));
    }
}
