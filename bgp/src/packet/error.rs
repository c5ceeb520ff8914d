//! Decode errors: each carries the NOTIFICATION it maps to (RFC 4271 §6)
//! and the RFC 7606 action a receiver takes.

use super::cxt::Family;
use super::notification::{ErrorCode, Notification};

/// What a receiver does about a malformed message (RFC 7606 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorAction {
    /// Send the NOTIFICATION and close the session.
    SessionReset,
    /// Stop using this address family with the peer (RFC 4760 §7, RFC 7606 §2),
    /// or reset the session when that is not possible.
    AfiSafiDisable(Family),
    /// Handle the UPDATE as if it withdrew every route it carries.
    TreatAsWithdraw,
    /// Drop the bad attribute and go on with the UPDATE.
    AttributeDiscard,
}

impl std::fmt::Display for ErrorAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorAction::SessionReset => f.write_str("session reset"),
            ErrorAction::AfiSafiDisable(family) => write!(f, "{family} disabled"),
            ErrorAction::TreatAsWithdraw => f.write_str("treat-as-withdraw"),
            ErrorAction::AttributeDiscard => f.write_str("attribute discarded"),
        }
    }
}

/// A malformed message or attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{reason} ({action}; NOTIFICATION {code}/{subcode})", code = self.code.to_u8())]
pub struct DecodeError {
    /// NOTIFICATION error code.
    pub code: ErrorCode,
    /// NOTIFICATION error subcode.
    pub subcode: u8,
    /// NOTIFICATION data (often the offending field or attribute).
    pub data: Vec<u8>,
    /// What the receiver does about it.
    pub action: ErrorAction,
    /// What was wrong, in words, with the values involved.
    pub reason: String,
}

impl DecodeError {
    /// An error that resets the session.
    pub(crate) fn reset(code: ErrorCode, subcode: u8, data: &[u8], reason: impl Into<String>) -> DecodeError {
        DecodeError { code, subcode, data: data.to_vec(), action: ErrorAction::SessionReset, reason: reason.into() }
    }

    /// The same error with another action.
    pub(crate) fn with_action(mut self, action: ErrorAction) -> DecodeError {
        self.action = action;
        self
    }

    /// Whether the session cannot go on after this error.
    pub fn is_fatal(&self) -> bool {
        matches!(self.action, ErrorAction::SessionReset | ErrorAction::AfiSafiDisable(_))
    }

    /// The NOTIFICATION to send for this error.
    pub fn notification(&self) -> Notification {
        Notification { code: self.code, subcode: self.subcode, data: self.data.clone().into() }
    }
}
