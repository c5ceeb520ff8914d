//! Datastore errors, each naming the store, key or value involved.

use crate::kv::{LeaseId, Revision};

/// What went wrong talking to the datastore.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The datastore URL cannot be used.
    #[error("datastore URL `{url}`: {why}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The datastore did not answer within the retry budget.
    #[error("datastore {url} unreachable after {attempts} attempts: {last_error}")]
    Unreachable {
        /// Where we tried.
        url: String,
        /// How many times.
        attempts: u32,
        /// The last failure.
        last_error: String,
    },
    /// A request got no answer: no member could be reached, or the members
    /// reached have no quorum (etcd). Trying again later may succeed.
    #[error("datastore {url} did not answer: {message}")]
    Unavailable {
        /// Where we asked.
        url: String,
        /// What the client saw.
        message: String,
    },
    /// The history a watch asked for has been compacted away: list again and
    /// watch from the new revision.
    #[error("revision {requested} has been compacted (oldest kept: {compacted}); resync from a fresh list")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The compaction point.
        compacted: Revision,
    },
    /// A revision in the future was asked for.
    #[error("revision {requested} is ahead of the store's {current}")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// The lease does not exist (expired or revoked).
    #[error("lease {0:#x} not found (expired or revoked)")]
    LeaseNotFound(LeaseId),
    /// The embedded SQLite file failed.
    #[error("SQLite store {path}: {message}")]
    Sqlite {
        /// The database file.
        path: String,
        /// SQLite's message.
        message: String,
    },
    /// etcd answered with an error.
    #[error("etcd {url}: {message}")]
    Etcd {
        /// The endpoints.
        url: String,
        /// etcd's message.
        message: String,
    },
}
