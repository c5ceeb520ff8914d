//! nom building blocks shared by the decoders. Parsers fail with `()`: the
//! caller knows which field it was reading and turns that into the
//! [`DecodeError`](super::error::DecodeError) the RFC asks for.

use std::net::Ipv4Addr;

use nom::IResult;
use nom::bytes::complete::take;
use nom::number::complete::be_u32;

/// A nom result over wire bytes with no error detail.
pub(crate) type Res<'a, T> = IResult<&'a [u8], T, ()>;

pub(crate) use nom::Parser;

/// One octet.
pub(crate) fn be_u8(input: &[u8]) -> Res<'_, u8> {
    nom::number::complete::be_u8(input)
}

/// Two octets, network order.
pub(crate) fn be_u16(input: &[u8]) -> Res<'_, u16> {
    nom::number::complete::be_u16(input)
}

/// Four octets as an IPv4 address.
pub(crate) fn ipv4(input: &[u8]) -> Res<'_, Ipv4Addr> {
    be_u32(input).map(|(rest, v)| (rest, Ipv4Addr::from(v)))
}

/// `n` octets.
pub(crate) fn bytes(input: &[u8], n: usize) -> Res<'_, &[u8]> {
    take(n)(input)
}
