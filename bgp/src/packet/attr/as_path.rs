//! AS_PATH and AS4_PATH (RFC 4271 §4.3, RFC 5065 §3, RFC 6793 §4).
//!
//! ```text
//! AS_PATH is a sequence of segments:
//! +------------------+-------------------+---------------------------+
//! | segment type (1) | segment length (1)| AS numbers (2 or 4 each)  |
//! +------------------+-------------------+---------------------------+
//! ```
//! AS numbers are 4 octets when both sides have the 4-octet AS capability,
//! 2 octets otherwise; AS4_PATH always uses 4.

use bytes::{BufMut, BytesMut};

use crate::packet::open::AS_TRANS;

/// Segment types (RFC 4271 §4.3, RFC 5065 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SegmentType {
    /// 1: unordered set (counts as one AS in path length).
    Set,
    /// 2: ordered sequence.
    Sequence,
    /// 3: confederation sequence (not counted).
    ConfedSequence,
    /// 4: confederation set (not counted).
    ConfedSet,
}

impl SegmentType {
    fn from_u8(v: u8) -> Option<SegmentType> {
        Some(match v {
            1 => SegmentType::Set,
            2 => SegmentType::Sequence,
            3 => SegmentType::ConfedSequence,
            4 => SegmentType::ConfedSet,
            _ => return None,
        })
    }

    fn to_u8(self) -> u8 {
        match self {
            SegmentType::Set => 1,
            SegmentType::Sequence => 2,
            SegmentType::ConfedSequence => 3,
            SegmentType::ConfedSet => 4,
        }
    }

    fn is_confed(self) -> bool {
        matches!(self, SegmentType::ConfedSequence | SegmentType::ConfedSet)
    }
}

/// One path segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Segment {
    /// Segment type.
    pub kind: SegmentType,
    /// Its AS numbers (1 to 255 of them).
    pub asns: Asns,
}

/// A segment's AS numbers: up to six inline (a path is nearly always one
/// short AS_SEQUENCE, and a full table holds one per attribute set).
pub type Asns = smallvec::SmallVec<[u32; 6]>;

/// An AS path: the segments, nearest AS first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AsPath {
    /// Segments in wire order.
    pub segments: Vec<Segment>,
}

/// At most 255 AS numbers fit one segment (1-octet segment length).
const MAX_SEGMENT_ASNS: usize = 255;

impl AsPath {
    /// A path that is one AS_SEQUENCE of `asns` (empty for no ASes).
    pub fn from_sequence(asns: &[u32]) -> AsPath {
        let segments =
            asns.chunks(MAX_SEGMENT_ASNS).map(|c| Segment { kind: SegmentType::Sequence, asns: c.into() }).collect();
        AsPath { segments }
    }

    /// RFC 4271 §9.1.2.2 a: path length for route selection; an AS_SET
    /// counts 1, confederation segments count 0 (RFC 5065 §5.3).
    pub fn path_len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s.kind {
                SegmentType::Sequence => s.asns.len(),
                SegmentType::Set => 1,
                SegmentType::ConfedSequence | SegmentType::ConfedSet => 0,
            })
            .sum()
    }

    /// The AS that sent the route (first AS of a leading AS_SEQUENCE).
    pub fn first_as(&self) -> Option<u32> {
        match self.segments.first() {
            Some(Segment { kind: SegmentType::Sequence, asns }) => asns.first().copied(),
            _ => None,
        }
    }

    /// Every AS number in the path, in order (for loop detection).
    pub fn asns(&self) -> impl Iterator<Item = u32> + '_ {
        self.segments.iter().flat_map(|s| s.asns.iter().copied())
    }

    /// How many times `asn` appears (in sequences and sets alike).
    pub fn occurrences(&self, asn: u32) -> usize {
        self.asns().filter(|a| *a == asn).count()
    }

    /// Whether any AS number needs 4 octets.
    pub(crate) fn has_four_octet_as(&self) -> bool {
        self.asns().any(|a| a > u32::from(u16::MAX))
    }

    /// Decodes a whole AS_PATH / AS4_PATH value. `None` means malformed
    /// (RFC 7606 §7.2): an unknown segment type, an empty segment, or a
    /// segment overrunning the attribute.
    pub(crate) fn decode(mut input: &[u8], four_octet: bool) -> Option<AsPath> {
        let width = if four_octet { 4 } else { 2 };
        // Nearly every path is one AS_SEQUENCE.
        let mut segments = Vec::with_capacity(1);
        while !input.is_empty() {
            let (&[kind, count], rest) = input.split_first_chunk::<2>()?;
            let kind = SegmentType::from_u8(kind)?;
            if count == 0 {
                return None;
            }
            let (raw, rest) = rest.split_at_checked(count as usize * width)?;
            let asns = if four_octet {
                raw.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect()
            } else {
                raw.chunks_exact(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).collect()
            };
            segments.push(Segment { kind, asns });
            input = rest;
        }
        Some(AsPath { segments })
    }

    /// Octets of the encoded value.
    pub(crate) fn encoded_len(&self, four_octet: bool) -> usize {
        let width = if four_octet { 4 } else { 2 };
        self.split_segments().map(|(_, asns)| 2 + asns.len() * width).sum()
    }

    /// Writes the value; with 2-octet AS numbers, a 4-octet AS becomes
    /// AS_TRANS (RFC 6793 §4.2.2).
    pub(crate) fn encode(&self, four_octet: bool, dst: &mut BytesMut) {
        for (kind, asns) in self.split_segments() {
            dst.put_u8(kind.to_u8());
            dst.put_u8(asns.len() as u8);
            for &asn in asns {
                if four_octet {
                    dst.put_u32(asn);
                } else {
                    dst.put_u16(u16::try_from(asn).unwrap_or(AS_TRANS));
                }
            }
        }
    }

    /// Segments as written: a segment longer than 255 ASes becomes several.
    fn split_segments(&self) -> impl Iterator<Item = (SegmentType, &[u32])> {
        self.segments.iter().flat_map(|s| s.asns.chunks(MAX_SEGMENT_ASNS).map(move |c| (s.kind, c)))
    }

    /// The path without confederation segments, for AS4_PATH (RFC 6793 §3).
    pub(crate) fn without_confed(&self) -> AsPath {
        AsPath { segments: self.segments.iter().filter(|s| !s.kind.is_confed()).cloned().collect() }
    }

    /// Whether the path holds a confederation segment.
    pub(crate) fn has_confed(&self) -> bool {
        self.segments.iter().any(|s| s.kind.is_confed())
    }

    /// RFC 6793 §4.2.3: rebuilds the 4-octet path from a 2-octet AS_PATH
    /// (`self`) and the AS4_PATH. When AS_PATH is shorter than AS4_PATH the
    /// AS4_PATH is ignored; otherwise the leading ASes of AS_PATH that
    /// AS4_PATH lacks are kept in front of it.
    pub(crate) fn merge_as4(&self, as4: &AsPath) -> AsPath {
        let (len, len4) = (self.path_len(), as4.path_len());
        if len < len4 {
            return self.clone();
        }
        let mut keep = len - len4;
        let mut segments = Vec::new();
        for s in &self.segments {
            match s.kind {
                // Confederation segments count 0 and never travel in AS4_PATH: keep the leading ones.
                SegmentType::ConfedSequence | SegmentType::ConfedSet => segments.push(s.clone()),
                _ if keep == 0 => break,
                SegmentType::Sequence => {
                    let n = keep.min(s.asns.len());
                    segments.push(Segment { kind: s.kind, asns: s.asns[..n].into() });
                    keep -= n;
                }
                SegmentType::Set => {
                    segments.push(s.clone());
                    keep -= 1;
                }
            }
        }
        segments.extend(as4.segments.iter().cloned());
        AsPath { segments }
    }
}

impl std::fmt::Display for AsPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for s in &self.segments {
            let list = s.asns.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
            let sep = if first { "" } else { " " };
            first = false;
            match s.kind {
                SegmentType::Sequence => write!(f, "{sep}{list}")?,
                SegmentType::Set => write!(f, "{sep}{{{list}}}")?,
                SegmentType::ConfedSequence => write!(f, "{sep}({list})")?,
                SegmentType::ConfedSet => write!(f, "{sep}[{list}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(asns: &[u32]) -> Segment {
        Segment { kind: SegmentType::Sequence, asns: asns.into() }
    }

    #[test]
    fn occurrences_count_sequences_and_sets() {
        let path = AsPath {
            segments: vec![
                seq(&[65001, 65002, 65001]),
                Segment { kind: SegmentType::Set, asns: smallvec::smallvec![65001] },
            ],
        };
        assert_eq!((path.occurrences(65001), path.occurrences(65002), path.occurrences(1)), (3, 1, 0));
    }

    #[test]
    fn as_path_vectors() {
        // (wire, four_octet, path)
        let cases: &[(&[u8], bool, AsPath)] = &[
            (&[], true, AsPath::default()),
            (&[2, 2, 0xfd, 0xe9, 0xfd, 0xea], false, AsPath { segments: vec![seq(&[65001, 65002])] }),
            (&[2, 1, 0xfa, 0x56, 0xea, 0x00], true, AsPath { segments: vec![seq(&[4_200_000_000])] }),
            (
                &[2, 1, 0, 0, 0xfd, 0xe9, 1, 2, 0, 0, 0, 1, 0, 0, 0, 2],
                true,
                AsPath {
                    segments: vec![seq(&[65001]), Segment { kind: SegmentType::Set, asns: smallvec::smallvec![1, 2] }],
                },
            ),
        ];
        for (wire, four, path) in cases {
            assert_eq!(AsPath::decode(wire, *four).as_ref(), Some(path), "{wire:?}");
            let mut out = BytesMut::new();
            path.encode(*four, &mut out);
            assert_eq!(&out[..], *wire);
            assert_eq!(path.encoded_len(*four), wire.len());
        }
    }

    #[test]
    fn malformed_as_paths_are_refused() {
        for wire in [&[2, 2, 0xfd, 0xe9][..], &[5, 1, 0, 1], &[2, 0], &[2], &[2, 1, 0, 1, 7]] {
            assert_eq!(AsPath::decode(wire, false), None, "{wire:?}");
        }
    }

    #[test]
    fn path_len_counts_set_as_one_and_confed_as_zero() {
        let path = AsPath {
            segments: vec![
                Segment { kind: SegmentType::ConfedSequence, asns: smallvec::smallvec![64512, 64513] },
                seq(&[1, 2, 3]),
                Segment { kind: SegmentType::Set, asns: smallvec::smallvec![4, 5, 6] },
            ],
        };
        assert_eq!(path.path_len(), 4);
    }

    #[test]
    fn as4_merge_follows_rfc6793() {
        let trans = u32::from(AS_TRANS);
        // AS_PATH 65001 AS_TRANS AS_TRANS, AS4_PATH 4200000001 4200000002 → 65001 4200000001 4200000002.
        let two = AsPath { segments: vec![seq(&[65001, trans, trans])] };
        let four = AsPath { segments: vec![seq(&[4_200_000_001, 4_200_000_002])] };
        assert_eq!(
            two.merge_as4(&four),
            AsPath { segments: vec![seq(&[65001]), seq(&[4_200_000_001, 4_200_000_002])] }
        );
        // An AS4_PATH longer than AS_PATH is ignored.
        let short = AsPath { segments: vec![seq(&[trans])] };
        assert_eq!(short.merge_as4(&four), short);
    }

    #[test]
    fn long_sequences_split_into_segments_of_255() {
        let asns: Vec<u32> = (1..=300).collect();
        let path = AsPath { segments: vec![seq(&asns)] };
        let mut out = BytesMut::new();
        path.encode(true, &mut out);
        let back = AsPath::decode(&out, true).unwrap();
        assert_eq!(back.segments.len(), 2);
        assert_eq!(back.asns().collect::<Vec<_>>(), asns);
    }
}
