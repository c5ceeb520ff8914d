//! ROUTE-REFRESH (RFC 2918 §3) with the RFC 7313 §3 message subtypes.
//!
//! ```text
//!  0       7      15      23      31
//! +-------+-------+-------+-------+
//! |      AFI      | Subtype | SAFI |
//! +-------+-------+-------+-------+
//! ```

use bytes::{BufMut, BytesMut};

use super::cxt::{Afi, Family, Safi};
use super::error::DecodeError;
use super::notification::ErrorCode;

/// RFC 7313 §5: ROUTE-REFRESH Message Error subcode Invalid Message Length.
const INVALID_MESSAGE_LENGTH: u8 = 1;

/// The ROUTE-REFRESH subtype (RFC 7313 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefreshSubtype {
    /// 0: a normal route refresh request (RFC 2918).
    Request,
    /// 1: Beginning of Route Refresh.
    BeginningOfRefresh,
    /// 2: End of Route Refresh.
    EndOfRefresh,
    /// Reserved values, to be ignored by the receiver (RFC 7313 §5).
    Reserved(u8),
}

/// A ROUTE-REFRESH message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteRefresh {
    /// The family to refresh.
    pub family: Family,
    /// Request, BoRR or EoRR.
    pub subtype: RefreshSubtype,
}

impl RouteRefresh {
    pub(crate) fn decode(body: &[u8]) -> Result<RouteRefresh, DecodeError> {
        let [a0, a1, subtype, safi] = body else {
            return Err(DecodeError::reset(
                ErrorCode::RouteRefresh,
                INVALID_MESSAGE_LENGTH,
                body,
                format!("ROUTE-REFRESH body of {} octets (must be 4)", body.len()),
            ));
        };
        let subtype = match subtype {
            0 => RefreshSubtype::Request,
            1 => RefreshSubtype::BeginningOfRefresh,
            2 => RefreshSubtype::EndOfRefresh,
            v => RefreshSubtype::Reserved(*v),
        };
        let family = Family { afi: Afi::from_u16(u16::from_be_bytes([*a0, *a1])), safi: Safi::from_u8(*safi) };
        Ok(RouteRefresh { family, subtype })
    }

    pub(crate) fn encode_body(&self, dst: &mut BytesMut) {
        dst.put_u16(self.family.afi.to_u16());
        dst.put_u8(match self.subtype {
            RefreshSubtype::Request => 0,
            RefreshSubtype::BeginningOfRefresh => 1,
            RefreshSubtype::EndOfRefresh => 2,
            RefreshSubtype::Reserved(v) => v,
        });
        dst.put_u8(self.family.safi.to_u8());
    }
}
