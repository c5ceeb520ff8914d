//! What a session negotiated, as far as the wire format depends on it, and
//! the address families tortie speaks.

/// Address Family Identifier (IANA; RFC 4760 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Afi {
    /// IPv4 (1).
    Ipv4,
    /// IPv6 (2).
    Ipv6,
    /// Any other value, kept as received.
    Other(u16),
}

impl Afi {
    /// The AFI for a wire value.
    pub fn from_u16(value: u16) -> Afi {
        match value {
            1 => Afi::Ipv4,
            2 => Afi::Ipv6,
            v => Afi::Other(v),
        }
    }

    /// The wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            Afi::Ipv4 => 1,
            Afi::Ipv6 => 2,
            Afi::Other(v) => v,
        }
    }
}

/// Subsequent Address Family Identifier (IANA; RFC 4760 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Safi {
    /// Unicast forwarding (1).
    Unicast,
    /// Multicast forwarding (2).
    Multicast,
    /// Any other value, kept as received.
    Other(u8),
}

impl Safi {
    /// The SAFI for a wire value.
    pub fn from_u8(value: u8) -> Safi {
        match value {
            1 => Safi::Unicast,
            2 => Safi::Multicast,
            v => Safi::Other(v),
        }
    }

    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Safi::Unicast => 1,
            Safi::Multicast => 2,
            Safi::Other(v) => v,
        }
    }
}

/// An address family: AFI and SAFI together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Family {
    /// Address family.
    pub afi: Afi,
    /// Subsequent address family.
    pub safi: Safi,
}

impl Family {
    /// IPv4 unicast.
    pub const IPV4_UNICAST: Family = Family { afi: Afi::Ipv4, safi: Safi::Unicast };
    /// IPv6 unicast.
    pub const IPV6_UNICAST: Family = Family { afi: Afi::Ipv6, safi: Safi::Unicast };

    /// Whether tortie carries routes of this family (IPv4 and IPv6 unicast).
    pub fn is_supported(self) -> bool {
        self == Family::IPV4_UNICAST || self == Family::IPV6_UNICAST
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Family::IPV4_UNICAST => f.write_str("ipv4-unicast"),
            Family::IPV6_UNICAST => f.write_str("ipv6-unicast"),
            Family { afi, safi } => write!(f, "afi {}/safi {}", afi.to_u16(), safi.to_u8()),
        }
    }
}

/// The families for which ADD-PATH path identifiers are on the wire in one
/// direction (RFC 7911 §3). Only the supported families can be members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FamilySet {
    ipv4_unicast: bool,
    ipv6_unicast: bool,
}

impl FamilySet {
    /// No family.
    pub const NONE: FamilySet = FamilySet { ipv4_unicast: false, ipv6_unicast: false };
    /// IPv4 and IPv6 unicast.
    pub const ALL: FamilySet = FamilySet { ipv4_unicast: true, ipv6_unicast: true };

    /// Adds `family`; unsupported families are ignored (returns false).
    pub fn insert(&mut self, family: Family) -> bool {
        match family {
            Family::IPV4_UNICAST => self.ipv4_unicast = true,
            Family::IPV6_UNICAST => self.ipv6_unicast = true,
            _ => return false,
        }
        true
    }

    /// Whether `family` is in the set.
    pub fn contains(&self, family: Family) -> bool {
        match family {
            Family::IPV4_UNICAST => self.ipv4_unicast,
            Family::IPV6_UNICAST => self.ipv6_unicast,
            _ => false,
        }
    }
}

/// What the wire format of one direction of a session depends on.
///
/// Decoding uses the receive side (`add_path` = families in which the peer
/// sends path identifiers), encoding the send side. Before the OPEN exchange
/// completes, use [`Context::default`]: 2-octet AS numbers, 4096-octet
/// messages, no path identifiers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Context {
    /// Both sides advertised the 4-octet AS capability (RFC 6793).
    pub four_octet_as: bool,
    /// Both sides advertised the extended message capability (RFC 8654).
    pub extended_message: bool,
    /// Families whose NLRI carry a 4-octet path identifier (RFC 7911).
    pub add_path: FamilySet,
}

/// RFC 4271 §4.1: the maximum message size.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// RFC 8654 §3: the maximum size of any message but OPEN and KEEPALIVE once
/// extended messages are negotiated.
pub const MAX_EXTENDED_MESSAGE_LEN: usize = 65535;

impl Context {
    /// A context for a 4-octet-AS session with extended messages and no add-path.
    pub const MODERN: Context = Context { four_octet_as: true, extended_message: true, add_path: FamilySet::NONE };

    /// The largest message this direction allows.
    pub fn max_message_len(&self) -> usize {
        if self.extended_message { MAX_EXTENDED_MESSAGE_LEN } else { MAX_MESSAGE_LEN }
    }
}
