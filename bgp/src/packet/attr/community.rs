//! Communities: standard (RFC 1997), extended (RFC 4360) and large (RFC 8092).

use std::fmt;

/// A standard community: `AS:value` in 4 octets (RFC 1997).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u32);

impl Community {
    /// RFC 8326: GRACEFUL_SHUTDOWN.
    pub const GRACEFUL_SHUTDOWN: Community = Community(0xFFFF_0000);
    /// RFC 7611: ACCEPT_OWN.
    pub const ACCEPT_OWN: Community = Community(0xFFFF_0001);
    /// RFC 9494: LLGR_STALE.
    pub const LLGR_STALE: Community = Community(0xFFFF_0006);
    /// RFC 9494: NO_LLGR.
    pub const NO_LLGR: Community = Community(0xFFFF_0007);
    /// RFC 7999: BLACKHOLE.
    pub const BLACKHOLE: Community = Community(0xFFFF_029A);
    /// RFC 1997: NO_EXPORT — not beyond the AS (or confederation).
    pub const NO_EXPORT: Community = Community(0xFFFF_FF01);
    /// RFC 1997: NO_ADVERTISE — to no peer at all.
    pub const NO_ADVERTISE: Community = Community(0xFFFF_FF02);
    /// RFC 1997: NO_EXPORT_SUBCONFED — not beyond the member AS.
    pub const NO_EXPORT_SUBCONFED: Community = Community(0xFFFF_FF03);
    /// RFC 3765: NOPEER.
    pub const NOPEER: Community = Community(0xFFFF_FF04);

    /// `asn:value`.
    pub fn new(asn: u16, value: u16) -> Community {
        Community(u32::from(asn) << 16 | u32::from(value))
    }

    /// The well-known name, if this is a well-known community.
    pub fn well_known_name(self) -> Option<&'static str> {
        Some(match self {
            Community::GRACEFUL_SHUTDOWN => "graceful-shutdown",
            Community::ACCEPT_OWN => "accept-own",
            Community::LLGR_STALE => "llgr-stale",
            Community::NO_LLGR => "no-llgr",
            Community::BLACKHOLE => "blackhole",
            Community::NO_EXPORT => "no-export",
            Community::NO_ADVERTISE => "no-advertise",
            Community::NO_EXPORT_SUBCONFED => "no-export-subconfed",
            Community::NOPEER => "nopeer",
            _ => return None,
        })
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.well_known_name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{}:{}", self.0 >> 16, self.0 & 0xffff),
        }
    }
}

/// An extended community: 8 octets, type and sub-type first (RFC 4360 §2).
///
/// ```text
/// +-------------------------------+
/// | Type high | Type low(*) |     |
/// +-------------------------------+  Value (6 or 7 octets)
/// |                               |
/// +-------------------------------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtCommunity(pub [u8; 8]);

impl ExtCommunity {
    /// RFC 4360 §3.1: Two-Octet AS Specific, Route Target sub-type.
    pub fn route_target(asn: u16, value: u32) -> ExtCommunity {
        let mut b = [0u8; 8];
        b[0] = 0x00;
        b[1] = 0x02;
        b[2..4].copy_from_slice(&asn.to_be_bytes());
        b[4..8].copy_from_slice(&value.to_be_bytes());
        ExtCommunity(b)
    }

    /// Type high octet.
    pub fn type_high(&self) -> u8 {
        self.0[0]
    }

    /// Whether the community may cross AS boundaries (RFC 4360 §2: T bit clear).
    pub fn is_transitive(&self) -> bool {
        self.0[0] & 0x40 == 0
    }
}

/// A large community: `global:local1:local2`, 12 octets (RFC 8092 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    /// Global administrator (an AS number).
    pub global_admin: u32,
    /// Local data part 1.
    pub local_data_1: u32,
    /// Local data part 2.
    pub local_data_2: u32,
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.global_admin, self.local_data_1, self.local_data_2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn communities_print_names_or_as_value() {
        assert_eq!(Community::NO_EXPORT.to_string(), "no-export");
        assert_eq!(Community::new(65001, 100).to_string(), "65001:100");
        assert_eq!(Community::new(65535, 0), Community::GRACEFUL_SHUTDOWN);
        let lc = LargeCommunity { global_admin: 4_200_000_000, local_data_1: 1, local_data_2: 2 };
        assert_eq!(lc.to_string(), "4200000000:1:2");
        assert!(ExtCommunity::route_target(65001, 7).is_transitive());
    }
}
