//! One key-value interface with etcd's data model, and its two engines.
//!
//! Every write gets the next value of one global, monotonic revision (a
//! transaction's writes share one). Each key records the revision that
//! created it, the one that last modified it and how many times it was
//! written. Watches replay history from a revision in order; when that
//! history has been compacted away the watch ends with
//! [`StoreError::Compacted`] and the watcher resyncs from a fresh
//! [`Kv::range`].

pub mod etcd;
pub mod sqlite;

use std::future::Future;
use std::time::Duration;

use crate::StoreError;

/// A revision of the whole store (etcd's `revision`).
pub type Revision = i64;

/// A lease id.
pub type LeaseId = i64;

/// A key with its value and history counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value (empty for a delete event).
    pub value: Vec<u8>,
    /// Revision of the write that created the key.
    pub create_revision: Revision,
    /// Revision of the last write to the key (of the delete, for a delete event).
    pub mod_revision: Revision,
    /// Writes since creation (1 after the first put; 0 in a delete event).
    pub version: i64,
    /// The lease the key is bound to, if any.
    pub lease: Option<LeaseId>,
}

/// The keys under a prefix, as of one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// Keys in byte order.
    pub kvs: Vec<KeyValue>,
    /// The store's revision when read; watch from `revision + 1` to follow on.
    pub revision: Revision,
}

/// A condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's `mod_revision` equals the given one; 0 means "the key does not exist".
    ModRevision(String, Revision),
}

/// A write in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets a key, optionally bound to a lease.
    Put {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
        /// Lease to attach.
        lease: Option<LeaseId>,
    },
    /// Removes a key (no-op if absent).
    Delete {
        /// Key.
        key: String,
    },
}

/// A compare-and-swap transaction: if every compare holds, the `success`
/// writes apply, else the `failure` writes; atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// Conditions.
    pub compares: Vec<Compare>,
    /// Writes when all conditions hold.
    pub success: Vec<Op>,
    /// Writes otherwise.
    pub failure: Vec<Op>,
}

/// The outcome of a [`Txn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether the compares held.
    pub succeeded: bool,
    /// The store revision after the transaction.
    pub revision: Revision,
}

/// Put or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key was written.
    Put,
    /// The key was deleted (or its lease expired).
    Delete,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change (value empty for a delete).
    pub kv: KeyValue,
}

/// A stream of changes under a prefix, in revision order, in batches of
/// one revision each. Ends with `Err(StoreError::Compacted)` when the
/// requested history is gone, or `None` when the engine stops.
pub struct Watch {
    rx: tokio::sync::mpsc::Receiver<Result<Vec<Event>, StoreError>>,
}

/// How many batches a watch buffers before its producer waits (bounded).
pub(crate) const WATCH_BUFFER: usize = 256;

impl Watch {
    pub(crate) fn channel() -> (tokio::sync::mpsc::Sender<Result<Vec<Event>, StoreError>>, Watch) {
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_BUFFER);
        (tx, Watch { rx })
    }

    /// The next batch of events.
    pub async fn next(&mut self) -> Option<Result<Vec<Event>, StoreError>> {
        self.rx.recv().await
    }
}

/// The operations every engine provides.
pub trait Kv: Send + Sync {
    /// One key.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<KeyValue>, StoreError>> + Send;

    /// Every key starting with `prefix`, with the revision read at.
    fn range(&self, prefix: &str) -> impl Future<Output = Result<Range, StoreError>> + Send;

    /// Sets `key`; returns the new revision.
    fn put(&self, key: &str, value: Vec<u8>) -> impl Future<Output = Result<Revision, StoreError>> + Send {
        let txn = Txn { success: vec![Op::Put { key: key.into(), value, lease: None }], ..Txn::default() };
        async move { self.txn(txn).await.map(|r| r.revision) }
    }

    /// Removes `key`; returns the revision after (unchanged if it was absent).
    fn delete(&self, key: &str) -> impl Future<Output = Result<Revision, StoreError>> + Send {
        let txn = Txn { success: vec![Op::Delete { key: key.into() }], ..Txn::default() };
        async move { self.txn(txn).await.map(|r| r.revision) }
    }

    /// Runs a compare-and-swap transaction.
    fn txn(&self, txn: Txn) -> impl Future<Output = Result<TxnResponse, StoreError>> + Send;

    /// Follows changes under `prefix` from revision `from` (inclusive).
    fn watch(&self, prefix: &str, from: Revision) -> impl Future<Output = Result<Watch, StoreError>> + Send;

    /// Grants a lease that expires `ttl` after its last keep-alive.
    fn grant_lease(&self, ttl: Duration) -> impl Future<Output = Result<LeaseId, StoreError>> + Send;

    /// Renews a lease; [`StoreError::LeaseNotFound`] once it has expired.
    fn keep_alive(&self, lease: LeaseId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Ends a lease now, deleting its keys.
    fn revoke_lease(&self, lease: LeaseId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Drops history before `revision`: watches from earlier revisions get
    /// [`StoreError::Compacted`].
    fn compact(&self, revision: Revision) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The first key after every key starting with `prefix` (etcd's range_end);
/// empty means "no end".
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    Vec::new()
}
