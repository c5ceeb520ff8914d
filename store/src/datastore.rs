//! Choosing an engine from the datastore URL (`--datastore` /
//! `TORTIE_DATASTORE`).

use std::path::PathBuf;
use std::time::Duration;

use crate::StoreError;
use crate::kv::etcd::EtcdStore;
use crate::kv::sqlite::SqliteStore;
use crate::kv::{KeyValue, Kv, LeaseId, Range, Revision, Txn, TxnResponse, Watch};

/// The default: an embedded SQLite file.
pub const DEFAULT_URL: &str = "sqlite:///var/lib/tortie/store.db";

/// An open datastore, whichever engine serves it.
#[derive(Clone)]
pub enum Datastore {
    /// `sqlite:///path/to/file.db`
    Sqlite(SqliteStore),
    /// `etcd://host:port[,host:port…]`
    Etcd(Box<EtcdStore>),
}

impl Datastore {
    /// Opens the datastore at `url`.
    pub async fn open(url: &str) -> Result<Datastore, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::BadUrl { url: url.into(), why: "no file path after sqlite://".into() });
            }
            let path = PathBuf::from(path);
            return tokio::task::spawn_blocking(move || SqliteStore::open(&path))
                .await
                .map_err(|e| StoreError::BadUrl { url: url.into(), why: e.to_string() })?
                .map(Datastore::Sqlite);
        }
        if url.starts_with("etcd://") {
            return EtcdStore::connect(url).await.map(|s| Datastore::Etcd(Box::new(s)));
        }
        Err(StoreError::BadUrl { url: url.into(), why: "use sqlite:///path or etcd://host:port[,host:port]".into() })
    }
}

/// Dispatches one call to the engine.
macro_rules! each {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Datastore::Sqlite($s) => $call.await,
            Datastore::Etcd($s) => $call.await,
        }
    };
}

impl Kv for Datastore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        each!(self, s => s.get(key))
    }

    async fn range(&self, prefix: &str) -> Result<Range, StoreError> {
        each!(self, s => s.range(prefix))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        each!(self, s => s.txn(txn))
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        each!(self, s => s.watch(prefix, from))
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        each!(self, s => s.grant_lease(ttl))
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        each!(self, s => s.keep_alive(lease))
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        each!(self, s => s.revoke_lease(lease))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        each!(self, s => s.compact(revision))
    }
}
