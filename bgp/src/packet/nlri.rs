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
pub(crate) fn decode_all(mut input: &[u8], afi: Afi, add_path: bool, out: &mut Vec<Nlri>) -> Result<(), NlriError> {
    let max_len = match afi {
        Afi::Ipv4 => 32,
        Afi::Ipv6 => 128,
        other => return Err(NlriError::UnsupportedAfi(other)),
    };
    while let Some((nlri, rest)) = decode_one(input, max_len, add_path)? {
        out.push(nlri);
        input = rest;
    }
    Ok(())
}

/// Reads one NLRI, or `None` at the end of the field.
fn decode_one(input: &[u8], max_len: u8, add_path: bool) -> Result<Option<(Nlri, &[u8])>, NlriError> {
    if input.is_empty() {
        return Ok(None);
    }
    let (path_id, input) = if add_path {
        let (id, rest) = input.split_first_chunk::<4>().ok_or(NlriError::Truncated)?;
        (Some(u32::from_be_bytes(*id)), rest)
    } else {
        (None, input)
    };
    let (&len, rest) = input.split_first().ok_or(NlriError::Truncated)?;
    if len > max_len {
        return Err(NlriError::BadLength(len));
    }
    let octets = (len as usize).div_ceil(8);
    let (addr, rest) = rest.split_at_checked(octets).ok_or(NlriError::Truncated)?;
    let prefix = if max_len == 32 {
        let mut a = [0u8; 4];
        a[..octets].copy_from_slice(addr);
        let bits = u32::from_be_bytes(a) & mask32(len);
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::from(bits), len))
    } else {
        let mut a = [0u8; 16];
        a[..octets].copy_from_slice(addr);
        let bits = u128::from_be_bytes(a) & mask128(len);
        IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(bits), len))
    };
    Ok(Some((Nlri { prefix, path_id }, rest)))
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

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
