//! The BFD Control packet (RFC 5880 §4.1), and the reception checks of
//! §6.8.6 that need nothing but the packet.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       My Discriminator                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      Your Discriminator                       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Desired Min TX Interval                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                   Required Min RX Interval                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Required Min Echo RX Interval                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Auth Type   |   Auth Len    |    Authentication Data...     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

/// The mandatory section's length.
pub const LEN: usize = 24;

/// RFC 5880 §4.1: Sta.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// 0.
    AdminDown,
    /// 1.
    Down,
    /// 2.
    Init,
    /// 3.
    Up,
}

impl State {
    fn from_bits(bits: u8) -> State {
        match bits & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    fn bits(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        })
    }
}

/// RFC 5880 §4.1: the Diagnostic codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diag {
    /// 0: No Diagnostic.
    None,
    /// 1: Control Detection Time Expired.
    TimeExpired,
    /// 2: Echo Function Failed.
    EchoFailed,
    /// 3: Neighbor Signaled Session Down.
    NeighborDown,
    /// 4: Forwarding Plane Reset.
    ForwardingReset,
    /// 5: Path Down.
    PathDown,
    /// 6: Concatenated Path Down.
    ConcatenatedPathDown,
    /// 7: Administratively Down.
    AdminDown,
    /// 8: Reverse Concatenated Path Down.
    ReverseConcatenatedPathDown,
    /// 9–31: reserved, kept as received.
    Reserved(u8),
}

impl Diag {
    fn from_bits(bits: u8) -> Diag {
        match bits & 0x1f {
            0 => Diag::None,
            1 => Diag::TimeExpired,
            2 => Diag::EchoFailed,
            3 => Diag::NeighborDown,
            4 => Diag::ForwardingReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatenatedPathDown,
            7 => Diag::AdminDown,
            8 => Diag::ReverseConcatenatedPathDown,
            n => Diag::Reserved(n),
        }
    }

    fn bits(self) -> u8 {
        match self {
            Diag::None => 0,
            Diag::TimeExpired => 1,
            Diag::EchoFailed => 2,
            Diag::NeighborDown => 3,
            Diag::ForwardingReset => 4,
            Diag::PathDown => 5,
            Diag::ConcatenatedPathDown => 6,
            Diag::AdminDown => 7,
            Diag::ReverseConcatenatedPathDown => 8,
            Diag::Reserved(n) => n & 0x1f,
        }
    }
}

impl std::fmt::Display for Diag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Diag::None => f.write_str("none"),
            Diag::TimeExpired => f.write_str("control detection time expired"),
            Diag::EchoFailed => f.write_str("echo function failed"),
            Diag::NeighborDown => f.write_str("neighbor signaled session down"),
            Diag::ForwardingReset => f.write_str("forwarding plane reset"),
            Diag::PathDown => f.write_str("path down"),
            Diag::ConcatenatedPathDown => f.write_str("concatenated path down"),
            Diag::AdminDown => f.write_str("administratively down"),
            Diag::ReverseConcatenatedPathDown => f.write_str("reverse concatenated path down"),
            Diag::Reserved(n) => write!(f, "reserved diagnostic {n}"),
        }
    }
}

/// A BFD Control packet (without authentication: this speaker neither
/// sends nor accepts any, RFC 5880 §6.8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    /// Why the sender's session last left Up.
    pub diag: Diag,
    /// The sender's state.
    pub state: State,
    /// P: a Poll Sequence is under way.
    pub poll: bool,
    /// F: the answer to a Poll.
    pub final_: bool,
    /// C: the sender's BFD does not share fate with its control plane.
    pub control_plane_independent: bool,
    /// D: demand mode (not supported here: never set by us).
    pub demand: bool,
    /// Detect Mult.
    pub detect_mult: u8,
    /// My Discriminator.
    pub my_discriminator: u32,
    /// Your Discriminator.
    pub your_discriminator: u32,
    /// Desired Min TX Interval, microseconds.
    pub desired_min_tx: u32,
    /// Required Min RX Interval, microseconds.
    pub required_min_rx: u32,
    /// Required Min Echo RX Interval, microseconds.
    pub required_min_echo_rx: u32,
}

/// Why a received packet is discarded (RFC 5880 §6.8.6), one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Malformed {
    /// Shorter than the mandatory section, or than its Length field.
    Truncated,
    /// Version is not 1.
    Version,
    /// Length below 24 (26 with authentication).
    Length,
    /// Detect Mult is zero.
    DetectMult,
    /// The Multipoint bit is set.
    Multipoint,
    /// My Discriminator is zero.
    MyDiscriminator,
    /// Your Discriminator is zero while the sender's state is not Down or AdminDown.
    YourDiscriminator,
    /// Authentication present (none is configured here).
    Authentication,
}

impl Malformed {
    /// Every reason, in counter order.
    pub const ALL: [Malformed; 8] = [
        Malformed::Truncated,
        Malformed::Version,
        Malformed::Length,
        Malformed::DetectMult,
        Malformed::Multipoint,
        Malformed::MyDiscriminator,
        Malformed::YourDiscriminator,
        Malformed::Authentication,
    ];

    /// For counters and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::Truncated => "truncated",
            Malformed::Version => "version",
            Malformed::Length => "length",
            Malformed::DetectMult => "detect_mult",
            Malformed::Multipoint => "multipoint",
            Malformed::MyDiscriminator => "my_discriminator",
            Malformed::YourDiscriminator => "your_discriminator",
            Malformed::Authentication => "authentication",
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Control {
    /// Decodes a UDP payload, applying the checks of RFC 5880 §6.8.6 that
    /// need nothing but the packet.
    pub fn decode(b: &[u8]) -> Result<Control, Malformed> {
        if b.len() < LEN {
            return Err(Malformed::Truncated);
        }
        if b[0] >> 5 != 1 {
            return Err(Malformed::Version);
        }
        let flags = b[1];
        let auth = flags & 0x04 != 0;
        let length = usize::from(b[3]);
        if length < if auth { LEN + 2 } else { LEN } {
            return Err(Malformed::Length);
        }
        if length > b.len() {
            return Err(Malformed::Truncated);
        }
        if b[2] == 0 {
            return Err(Malformed::DetectMult);
        }
        if flags & 0x01 != 0 {
            return Err(Malformed::Multipoint);
        }
        let state = State::from_bits(flags >> 6);
        let (my_discriminator, your_discriminator) = (u32_at(b, 4), u32_at(b, 8));
        if my_discriminator == 0 {
            return Err(Malformed::MyDiscriminator);
        }
        if your_discriminator == 0 && !matches!(state, State::Down | State::AdminDown) {
            return Err(Malformed::YourDiscriminator);
        }
        if auth {
            return Err(Malformed::Authentication);
        }
        Ok(Control {
            diag: Diag::from_bits(b[0]),
            state,
            poll: flags & 0x20 != 0,
            final_: flags & 0x10 != 0,
            control_plane_independent: flags & 0x08 != 0,
            demand: flags & 0x02 != 0,
            detect_mult: b[2],
            my_discriminator,
            your_discriminator,
            desired_min_tx: u32_at(b, 12),
            required_min_rx: u32_at(b, 16),
            required_min_echo_rx: u32_at(b, 20),
        })
    }

    /// The 24 octets on the wire.
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = 1 << 5 | self.diag.bits();
        b[1] = self.state.bits() << 6
            | u8::from(self.poll) << 5
            | u8::from(self.final_) << 4
            | u8::from(self.control_plane_independent) << 3
            | u8::from(self.demand) << 1;
        b[2] = self.detect_mult;
        b[3] = LEN as u8;
        for (at, v) in [
            (4, self.my_discriminator),
            (8, self.your_discriminator),
            (12, self.desired_min_tx),
            (16, self.required_min_rx),
            (20, self.required_min_echo_rx),
        ] {
            b[at..at + 4].copy_from_slice(&v.to_be_bytes());
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Control {
        Control {
            diag: Diag::None,
            state: State::Up,
            poll: false,
            final_: true,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: 0x0102_0304,
            your_discriminator: 7,
            desired_min_tx: 300_000,
            required_min_rx: 300_000,
            required_min_echo_rx: 0,
        }
    }

    #[test]
    fn a_packet_written_from_the_diagram_decodes_and_encodes_back() {
        // Version 1, diag 0; Up, F; mult 3; length 24; discriminators; 300 ms, 300 ms, 0.
        let wire = [0x20, 0xd0, 3, 24, 1, 2, 3, 4, 0, 0, 0, 7, 0, 4, 0x93, 0xe0, 0, 4, 0x93, 0xe0, 0, 0, 0, 0];
        assert_eq!(Control::decode(&wire), Ok(up()));
        assert_eq!(up().encode(), wire);
        let down = Control { state: State::Down, diag: Diag::TimeExpired, your_discriminator: 0, ..up() };
        assert_eq!(Control::decode(&down.encode()), Ok(down), "Down may leave Your Discriminator 0");
    }

    #[test]
    fn every_check_of_rfc_5880_6_8_6_discards_with_its_reason() {
        let good = up().encode();
        let with = |f: &dyn Fn(&mut [u8; LEN])| {
            let mut b = good;
            f(&mut b);
            Control::decode(&b)
        };
        assert_eq!(Control::decode(&good[..23]), Err(Malformed::Truncated));
        assert_eq!(with(&|b| b[0] = 0x40), Err(Malformed::Version), "version 2");
        assert_eq!(with(&|b| b[3] = 20), Err(Malformed::Length));
        assert_eq!(with(&|b| b[3] = 30), Err(Malformed::Truncated), "Length beyond the payload");
        assert_eq!(with(&|b| b[2] = 0), Err(Malformed::DetectMult));
        assert_eq!(with(&|b| b[1] |= 1), Err(Malformed::Multipoint));
        assert_eq!(with(&|b| b[4..8].fill(0)), Err(Malformed::MyDiscriminator));
        assert_eq!(with(&|b| b[8..12].fill(0)), Err(Malformed::YourDiscriminator), "Up needs Your Discriminator");
        assert_eq!(with(&|b| b[1] |= 4), Err(Malformed::Length), "A bit: 26 octets at least");
        let mut long = [0u8; 26];
        long[..LEN].copy_from_slice(&good);
        long[1] |= 4;
        long[3] = 26;
        assert_eq!(Control::decode(&long), Err(Malformed::Authentication));
    }
}
