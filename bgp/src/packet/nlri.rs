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

/// One prefix of an UPDATE with its ADD-PATH path identifier.
///
/// `P` is the prefix type: [`IpNet`] (the default) in MP_REACH_NLRI and
/// MP_UNREACH_NLRI, whose family is read at run time (RFC 4760 §3, §4);
/// [`Ipv4Net`] in the UPDATE's own Withdrawn Routes and NLRI fields, which
/// carry IPv4 only (RFC 4271 §4.3). An [`Ipv4Nlri`] takes 16 octets against
/// 28 for an `Nlri<IpNet>`: the decoder writes, and every reader walks,
/// little more than half the memory per prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nlri<P = IpNet> {
    /// The prefix, host bits cleared.
    pub prefix: P,
    /// ADD-PATH path identifier; `None` when add-path is not in use.
    pub path_id: Option<u32>,
}

/// An NLRI of the UPDATE's Withdrawn Routes or NLRI field: IPv4 alone.
pub type Ipv4Nlri = Nlri<Ipv4Net>;

/// A prefix type an [`Nlri`] holds: [`IpNet`] or [`Ipv4Net`].
pub trait NlriPrefix: Copy + Into<IpNet> + sealed::Sealed {
    /// The prefix with its host bits cleared.
    fn trunc(&self) -> Self;
}

mod sealed {
    /// Only the prefix types the codec reads and writes are NLRI prefixes.
    pub trait Sealed {}
    impl Sealed for ipnet::IpNet {}
    impl Sealed for ipnet::Ipv4Net {}
}

impl NlriPrefix for IpNet {
    fn trunc(&self) -> IpNet {
        IpNet::trunc(self)
    }
}

impl NlriPrefix for Ipv4Net {
    fn trunc(&self) -> Ipv4Net {
        Ipv4Net::trunc(self)
    }
}

impl<P: NlriPrefix> Nlri<P> {
    /// A prefix without path identifier; host bits are cleared.
    pub fn new(prefix: P) -> Nlri<P> {
        Nlri { prefix: prefix.trunc(), path_id: None }
    }

    /// Octets on the wire, with a path identifier when `add_path`.
    pub(crate) fn encoded_len(&self, add_path: bool) -> usize {
        let id = if add_path { 4 } else { 0 };
        id + 1 + (self.prefix.into().prefix_len() as usize).div_ceil(8)
    }

    /// Writes the NLRI; the path identifier only when `add_path` (0 if the
    /// NLRI has none).
    pub(crate) fn encode(&self, add_path: bool, dst: &mut BytesMut) {
        if add_path {
            dst.put_u32(self.path_id.unwrap_or(0));
        }
        let prefix: IpNet = self.prefix.into();
        let len = prefix.prefix_len();
        dst.put_u8(len);
        let octets = (len as usize).div_ceil(8);
        match prefix {
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

/// Appends every NLRI of `input` (a whole MP_REACH/MP_UNREACH NLRI field
/// of family `afi`) to `out`.
pub(crate) fn decode_all(input: &[u8], afi: Afi, add_path: bool, out: &mut Vec<Nlri>) -> Result<(), NlriError> {
    match (afi, add_path) {
        (Afi::Ipv4, false) => decode_v4::<false, IpNet>(input, out),
        (Afi::Ipv4, true) => decode_v4::<true, IpNet>(input, out),
        (Afi::Ipv6, false) => decode_v6::<false>(input, out),
        (Afi::Ipv6, true) => decode_v6::<true>(input, out),
        (other, _) => Err(NlriError::UnsupportedAfi(other)),
    }
}

/// Every NLRI of the UPDATE's Withdrawn Routes or NLRI field (RFC 4271 §4.3).
pub(crate) fn decode_ipv4(input: &[u8], add_path: bool) -> Result<Vec<Ipv4Nlri>, NlriError> {
    let mut out = Vec::new();
    if add_path {
        decode_v4::<true, Ipv4Net>(input, &mut out)?;
    } else {
        decode_v4::<false, Ipv4Net>(input, &mut out)?;
    }
    Ok(out)
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
///
/// Consecutive NLRI usually share a length (a table is mostly /24s). The
/// first NLRI of a run is read and checked alone; the ones after it that
/// repeat its length octet are then whole NLRI of the same size, found at a
/// fixed stride, and go in as one batch: the position of the next prefix no
/// longer waits on the load of the current length octet.
fn decode_v4<const ADD_PATH: bool, P: From<Ipv4Net>>(input: &[u8], out: &mut Vec<Nlri<P>>) -> Result<(), NlriError> {
    // At most one prefix per 1 (+4) octets; /17s to /24s (4 octets) are the
    // common case, with a few /16s and shorter (3 or fewer) among them:
    // room for them too, or the vector is copied to grow for the last few.
    out.reserve(input.len() / (id_len::<ADD_PATH>() + 3));
    let mut pos = 0;
    while let Some(rest) = input.get(pos..).filter(|r| !r.is_empty()) {
        let (_, after_id) = path_id::<ADD_PATH>(rest)?;
        let Some((&len, addr)) = after_id.split_first() else { return Err(NlriError::Truncated) };
        if len > 32 {
            return Err(NlriError::BadLength(len));
        }
        let octets = (len as usize).div_ceil(8);
        if addr.len() < octets {
            return Err(NlriError::Truncated);
        }
        // One copy of the run loop per NLRI size, so every index in it is a constant.
        pos += match (ADD_PATH, octets) {
            (false, 0) => v4_run::<1, 0, P>(rest, len, out),
            (false, 1) => v4_run::<2, 1, P>(rest, len, out),
            (false, 2) => v4_run::<3, 2, P>(rest, len, out),
            (false, 3) => v4_run::<4, 3, P>(rest, len, out),
            (false, _) => v4_run::<5, 4, P>(rest, len, out),
            (true, 0) => v4_run::<5, 0, P>(rest, len, out),
            (true, 1) => v4_run::<6, 1, P>(rest, len, out),
            (true, 2) => v4_run::<7, 2, P>(rest, len, out),
            (true, 3) => v4_run::<8, 3, P>(rest, len, out),
            (true, _) => v4_run::<9, 4, P>(rest, len, out),
        };
    }
    Ok(())
}

/// Octets of the path identifier.
const fn id_len<const ADD_PATH: bool>() -> usize {
    if ADD_PATH { 4 } else { 0 }
}

/// Appends the run of NLRI at the start of `input` that all have length
/// `len`: `SIZE` octets each, `OCTETS` of them the address, a path
/// identifier in front when `SIZE` leaves room for one. `input` starts with
/// one whole such NLRI. Returns the octets read.
#[inline(always)]
fn v4_run<const SIZE: usize, const OCTETS: usize, P: From<Ipv4Net>>(
    input: &[u8],
    len: u8,
    out: &mut Vec<Nlri<P>>,
) -> usize {
    let add_path = SIZE == 4 + 1 + OCTETS;
    let (whole, _) = input.as_chunks::<SIZE>();
    let same = move |nlri: &[u8; SIZE]| nlri[SIZE - OCTETS - 1] == len;
    // Eight NLRI at a time without a branch between them, then one by one.
    let (blocks, _) = whole.as_chunks::<8>();
    let n = 8 * blocks.iter().take_while(|block| block.iter().fold(true, |all, nlri| all & same(nlri))).count();
    let n = n + whole[n..].iter().take_while(|nlri| same(nlri)).count();
    let mask = MASK32[len as usize];
    // A slice iterator has an exact length: `extend` writes without a capacity check per item.
    out.extend(whole[..n].iter().map(move |nlri| {
        let path_id = match nlri.first_chunk::<4>() {
            Some(id) if add_path => Some(u32::from_be_bytes(*id)),
            _ => None,
        };
        let mut addr = [0u8; 4];
        if let Some(octets) = nlri.last_chunk::<OCTETS>() {
            addr[..OCTETS].copy_from_slice(octets);
        }
        let prefix = Ipv4Net::new_assert(Ipv4Addr::from(u32::from_be_bytes(addr) & mask), len);
        Nlri { prefix: P::from(prefix), path_id }
    }));
    n * SIZE
}

/// IPv6 prefixes, with the same runs of equal lengths as [`decode_v4`].
fn decode_v6<const ADD_PATH: bool>(input: &[u8], out: &mut Vec<Nlri>) -> Result<(), NlriError> {
    let id = id_len::<ADD_PATH>();
    // Nothing shorter than a /32 (5 octets) is common: room for a whole
    // field of /32s at once (a table's /36s to /48s are 6 or 7 octets; a
    // second allocation and copy per UPDATE cost more than the slack).
    out.reserve(input.len() / (id + 5));
    let mut pos = 0;
    while let Some(rest) = input.get(pos..).filter(|r| !r.is_empty()) {
        let (path_id, after_id) = path_id::<ADD_PATH>(rest)?;
        let Some((&len, rest)) = after_id.split_first() else { return Err(NlriError::Truncated) };
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
        let mask = mask128(len);
        out.push(Nlri { prefix: IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(raw & mask), len)), path_id });
        let stride = id + 1 + octets;
        pos += stride;
        // The run of the same length, while sixteen octets can be read after
        // the length octet (so the whole prefix is there).
        while let Some(nlri) = input.get(pos..pos + id + 1 + 16) {
            let Some((&next_len, addr)) = nlri[id..].split_first() else { break };
            let Some(addr) = addr.first_chunk::<16>().filter(|_| next_len == len) else { break };
            let path_id = match nlri.first_chunk::<4>() {
                Some(id) if ADD_PATH => Some(u32::from_be_bytes(*id)),
                _ => None,
            };
            let bits = u128::from_be_bytes(*addr) & mask;
            out.push(Nlri { prefix: IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(bits), len)), path_id });
            pos += stride;
        }
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

    /// The NLRI field read one prefix at a time, octet by octet: what the
    /// run-batching loops must agree with.
    fn reference(mut input: &[u8], afi: Afi, add_path: bool) -> Result<Vec<Nlri>, NlriError> {
        let max = if afi == Afi::Ipv4 { 32 } else { 128 };
        let mut out = Vec::new();
        while !input.is_empty() {
            let mut path_id = None;
            if add_path {
                let (id, rest) = input.split_first_chunk::<4>().ok_or(NlriError::Truncated)?;
                path_id = Some(u32::from_be_bytes(*id));
                input = rest;
            }
            let (&len, rest) = input.split_first().ok_or(NlriError::Truncated)?;
            if len > max {
                return Err(NlriError::BadLength(len));
            }
            let (addr, rest) = rest.split_at_checked((len as usize).div_ceil(8)).ok_or(NlriError::Truncated)?;
            let mut octets = [0u8; 16];
            octets[..addr.len()].copy_from_slice(addr);
            let prefix = match afi {
                Afi::Ipv4 => {
                    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]), len))
                }
                _ => IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(octets), len)),
            };
            out.push(Nlri { prefix: prefix.trunc(), path_id });
            input = rest;
        }
        Ok(out)
    }

    proptest::proptest! {
        /// Runs of equal lengths, changes of length, host bits, prefixes at
        /// the very end of the field and malformed tails all decode as the
        /// reference reads them.
        #[test]
        fn batched_runs_decode_as_one_prefix_at_a_time(
            lens in proptest::collection::vec(proptest::sample::select(vec![0u8, 1, 7, 8, 9, 16, 23, 24, 31, 32, 48, 64, 127, 128]), 0..40),
            repeats in proptest::collection::vec(1usize..6, 40),
            fill in proptest::num::u8::ANY,
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..6),
            add_path in proptest::bool::ANY,
        ) {
            for afi in [Afi::Ipv4, Afi::Ipv6] {
                let mut wire = Vec::new();
                let mut k = 0u32;
                for (len, times) in lens.iter().zip(&repeats) {
                    for _ in 0..*times {
                        k += 1;
                        if add_path {
                            wire.extend_from_slice(&k.to_be_bytes());
                        }
                        wire.push(*len);
                        wire.extend((0..(*len as usize).div_ceil(8)).map(|i| fill.wrapping_add(i as u8).wrapping_mul(k as u8)));
                    }
                }
                for with_tail in [false, true] {
                    if with_tail {
                        wire.extend_from_slice(&tail);
                    }
                    let mut got = Vec::new();
                    let got = decode_all(&wire, afi, add_path, &mut got).map(|()| got);
                    let want = reference(&wire, afi, add_path);
                    if afi == Afi::Ipv4 {
                        // The UPDATE's own fields: the same prefixes as `Ipv4Net`.
                        let fields = decode_ipv4(&wire, add_path)
                            .map(|v| v.into_iter().map(|n| Nlri { prefix: IpNet::V4(n.prefix), path_id: n.path_id }).collect());
                        proptest::prop_assert_eq!(&fields, &want, "{:?}", wire);
                    }
                    proptest::prop_assert_eq!(got, want, "{:?}", wire);
                }
            }
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
