//! Bulk route tables for BIRD to inject (routes only, never traffic):
//! Internet-shaped prefix lengths and shared attribute sets, over IPv4
//! (240.0.0.0/4) or IPv6 (3fff::/20, RFC 9637), as DESIGN.md reserves.

use std::io::Write;
use std::path::Path;

/// Prefix lengths of the injected tables and their weights per mille, in
/// the shape of the Internet's IPv4 table (mostly /24s, then /22 and /23,
/// a tail of shorter prefixes). Where a shorter prefix is drawn that its
/// block already has, or whose block starts before the table's first slot,
/// a /24 is written instead, so the written mix is a little more /24-heavy.
const LENGTH_WEIGHTS: [(u8, u32); 9] =
    [(16, 4), (17, 5), (18, 10), (19, 25), (20, 45), (21, 50), (22, 140), (23, 110), (24, 611)];

/// The length drawn for slot `i`: a fixed hash of `i` against `LENGTH_WEIGHTS`.
fn drawn_length(i: usize) -> u8 {
    let mut x = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    let mut draw = ((x ^ (x >> 31)) % 1000) as u32;
    for (len, weight) in LENGTH_WEIGHTS {
        if draw < weight {
            return len;
        }
        draw -= weight;
    }
    24
}

/// The address family of a bench table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFamily {
    /// Prefixes of 240.0.0.0/4, /16–/24.
    Ipv4,
    /// Prefixes of 3fff::/20 (RFC 9637), /36–/44: the IPv4 table's shape,
    /// each length 20 bits longer.
    Ipv6,
}

impl TableFamily {
    /// `TORTIE_BENCH_FAMILY`: `ipv6`, or IPv4 by default.
    pub fn from_env() -> TableFamily {
        match std::env::var("TORTIE_BENCH_FAMILY").as_deref() {
            Ok("ipv6") => TableFamily::Ipv6,
            Ok("ipv4") | Err(_) => TableFamily::Ipv4,
            Ok(other) => panic!("TORTIE_BENCH_FAMILY={other}: ipv4 or ipv6"),
        }
    }

    /// How much longer this family's prefixes are than the IPv4 table's.
    fn shift(self) -> u8 {
        match self {
            TableFamily::Ipv4 => 0,
            TableFamily::Ipv6 => 20,
        }
    }
}

/// Writes a BIRD static-protocol include of `count` prefixes of
/// 240.0.0.0/4, or of 3fff::/20 for IPv6 (routes only, never traffic), one per /24 slot from the
/// `first`-th: a /24, or a shorter prefix covering the slot (more-specifics
/// under less-specifics, as in the Internet's table), lengths after
/// `LENGTH_WEIGHTS`; cycling through 300 attribute sets (MED and a
/// community). Tables of disjoint slot ranges share no prefix. Returns how
/// many prefixes of each length it wrote, by length.
pub fn write_table(
    path: &Path,
    family: TableFamily,
    first: usize,
    count: usize,
) -> std::io::Result<std::collections::BTreeMap<u8, usize>> {
    assert!(first + count <= 1 << 20, "240.0.0.0/4 holds 2^20 /24 slots, not {}", first + count);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut lengths = std::collections::BTreeMap::new();
    // The block each length last covered: slots are walked in order, so a
    // block already written is the last one of its length.
    let mut last_block = [usize::MAX; 25];
    for i in first..first + count {
        let drawn = drawn_length(i);
        let block = i & !((1usize << (24 - drawn)) - 1);
        let len = if block >= first && last_block[usize::from(drawn)] != block { drawn } else { 24 };
        let slot = if len == 24 { i } else { block };
        last_block[usize::from(len)] = slot;
        let len = len + family.shift();
        *lengths.entry(len).or_default() += 1;
        let set = i % 300;
        let prefix = match family {
            TableFamily::Ipv4 => {
                std::net::IpAddr::from(std::net::Ipv4Addr::from(0xf000_0000u32 + ((slot as u32) << 8)))
            }
            // A /24 slot is a /44 here: 3fff::/20 (RFC 9637) holds 2^24 of them.
            TableFamily::Ipv6 => {
                std::net::IpAddr::from(std::net::Ipv6Addr::from((0x3fffu128 << 112) + ((slot as u128) << 84)))
            }
        };
        writeln!(out, "route {prefix}/{len} blackhole {{ bgp_med = {set}; bgp_community.add((65002, {set})); }};")?;
    }
    out.flush()?;
    Ok(lengths)
}

/// The prefix-length mix of a table, as a line for a bench's output.
pub fn describe_lengths(lengths: &std::collections::BTreeMap<u8, usize>) -> String {
    let total: usize = lengths.values().sum();
    let shares: Vec<String> =
        lengths.iter().map(|(len, n)| format!("/{len} {:.1} %", 100.0 * *n as f64 / total.max(1) as f64)).collect();
    format!("prefix lengths: {}", shares.join(", "))
}
