//! One watch of the datastore for a whole node (Calico's syncer): the keys
//! under a prefix, kept in memory and read by every part of the node
//! (felix, peering, tunnels) through the same [`Kv`] interface, and a
//! notice to each part when keys under the prefixes it cares about change
//! — so a part is not woken by writes it does not read (the node's own
//! status every 10 s), and a change costs no round trip to etcd per part.
//!
//! When the watch's history has been compacted away, or the watch breaks,
//! the syncer reads everything again and tells every part. Writes go
//! straight to the datastore; a transaction returns once the syncer has
//! seen its writes, so a part reads what it just wrote.
//!
//! ```text
//!  datastore ──range + watch (one)──▶ Syncer task ──▶ cache (BTreeMap, revision)
//!                                          └──▶ Changes per part (prefix filter)
//!  part ──range/get──▶ cache        part ──txn──▶ datastore, then waits for the cache
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::kv::{EventKind, KeyValue, Kv, LeaseId, Op, Range, Revision, Txn, TxnResponse, Watch};
use crate::{Datastore, StoreError};

/// How long a transaction waits for the syncer to see its writes.
const SEE_WRITE: Duration = Duration::from_secs(10);
/// Pause before reading everything again after a failed attempt.
const RETRY: Duration = Duration::from_secs(1);

/// The datastore as one node sees it (cheap to clone: one shared cache).
#[derive(Clone)]
pub struct Syncer {
    inner: Arc<Inner>,
}

struct Inner {
    store: Datastore,
    prefix: String,
    cache: RwLock<Cache>,
    parts: Mutex<Vec<Part>>,
    /// The cache's revision, for writers waiting to see their write.
    seen: watch::Sender<Revision>,
}

#[derive(Default)]
struct Cache {
    items: BTreeMap<String, KeyValue>,
    revision: Revision,
}

/// A part of the node and the prefixes it reads.
struct Part {
    prefixes: Vec<String>,
    notify: watch::Sender<u64>,
}

/// Notices of changes under one part's prefixes.
pub struct Changes {
    rx: watch::Receiver<u64>,
}

impl Changes {
    /// Waits for the next change (several in a row are one notice);
    /// `false` when the syncer has stopped.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }
}

impl Syncer {
    /// Reads everything under `prefix` and follows it from then on.
    pub async fn start(store: Datastore, prefix: &str) -> Result<Syncer, StoreError> {
        let first = store.range(prefix).await?;
        let (seen, _) = watch::channel(first.revision);
        let cache =
            Cache { revision: first.revision, items: first.kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect() };
        let inner = Arc::new(Inner {
            store,
            prefix: prefix.to_string(),
            cache: RwLock::new(cache),
            parts: Mutex::new(Vec::new()),
            seen,
        });
        tokio::spawn(follow(Arc::downgrade(&inner)));
        Ok(Syncer { inner })
    }

    /// Notices for changes to keys under any of `prefixes`.
    pub fn changes(&self, prefixes: &[&str]) -> Changes {
        let (notify, rx) = watch::channel(0);
        let prefixes = prefixes.iter().map(|p| p.to_string()).collect();
        self.inner.parts().push(Part { prefixes, notify });
        Changes { rx }
    }

    /// The datastore behind it.
    pub fn store(&self) -> &Datastore {
        &self.inner.store
    }

    /// The revision the cache is at.
    pub fn revision(&self) -> Revision {
        self.inner.cache().revision
    }

    fn covers(&self, key: &str) -> bool {
        key.starts_with(&self.inner.prefix)
    }
}

impl Inner {
    fn cache(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn cache_mut(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }

    fn parts(&self) -> std::sync::MutexGuard<'_, Vec<Part>> {
        self.parts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the parts that read any of `keys` (every part with `None`).
    fn notify(&self, keys: Option<&[&str]>) {
        let mut parts = self.parts();
        parts.retain(|p| !p.notify.is_closed());
        for part in parts.iter() {
            let hit =
                keys.is_none_or(|keys| keys.iter().any(|k| part.prefixes.iter().any(|p| k.starts_with(p.as_str()))));
            if hit {
                part.notify.send_modify(|n| *n += 1);
            }
        }
    }
}

/// The syncer's task: watch, apply, notify; read everything again when the
/// watch cannot go on. Ends when the last [`Syncer`] is dropped.
async fn follow(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else { return };
        let from = strong.cache().revision + 1;
        let watched = strong.store.watch(&strong.prefix, from).await;
        drop(strong);
        match watched {
            Ok(mut watch) => {
                while let Some(batch) = watch.next().await {
                    let Some(strong) = inner.upgrade() else { return };
                    match batch {
                        Ok(events) => apply(&strong, events),
                        Err(e) => {
                            tracing::warn!(error = %e, "datastore watch lost; reading everything again");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch the datastore; retrying"),
        }
        // History gone or the watch broken: a fresh read, and every part is told.
        loop {
            let Some(strong) = inner.upgrade() else { return };
            match strong.store.range(&strong.prefix).await {
                Ok(range) => {
                    let revision = range.revision;
                    *strong.cache_mut() =
                        Cache { revision, items: range.kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect() };
                    strong.seen.send_replace(revision);
                    strong.notify(None);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the datastore; retrying");
                    drop(strong);
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }
}

/// One revision's events into the cache, then the notices.
fn apply(inner: &Inner, events: Vec<crate::kv::Event>) {
    let keys: Vec<String> = events.iter().map(|e| e.kv.key.clone()).collect();
    let revision = {
        let mut cache = inner.cache_mut();
        for e in events {
            cache.revision = cache.revision.max(e.kv.mod_revision);
            match e.kind {
                EventKind::Put => {
                    cache.items.insert(e.kv.key.clone(), e.kv);
                }
                EventKind::Delete => {
                    cache.items.remove(&e.kv.key);
                }
            }
        }
        cache.revision
    };
    inner.seen.send_replace(revision);
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    inner.notify(Some(&keys));
}

impl Kv for Syncer {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        if !self.covers(key) {
            return self.inner.store.get(key).await;
        }
        Ok(self.inner.cache().items.get(key).cloned())
    }

    async fn range(&self, prefix: &str) -> Result<Range, StoreError> {
        if !self.covers(prefix) {
            return self.inner.store.range(prefix).await;
        }
        let cache = self.inner.cache();
        let kvs = cache
            .items
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect();
        Ok(Range { kvs, revision: cache.revision })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        let ops = |ops: &[Op]| ops.iter().any(|op| self.covers(op_key(op)));
        let (mine_on_success, mine_on_failure) = (ops(&txn.success), ops(&txn.failure));
        let response = self.inner.store.txn(txn).await?;
        let wrote_here = if response.succeeded { mine_on_success } else { mine_on_failure };
        if wrote_here {
            // The write is ours to read next: wait for the watch to bring it.
            let mut seen = self.inner.seen.subscribe();
            let reached = tokio::time::timeout(SEE_WRITE, seen.wait_for(|r| *r >= response.revision)).await;
            if !matches!(reached, Ok(Ok(_))) {
                tracing::warn!(revision = response.revision, "the datastore watch has not brought our own write yet");
            }
        }
        Ok(response)
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        self.inner.store.watch(prefix, from).await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.inner.store.grant_lease(ttl).await
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.store.keep_alive(lease).await
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.store.revoke_lease(lease).await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.store.compact(revision).await
    }
}

fn op_key(op: &Op) -> &str {
    match op {
        Op::Put { key, .. } | Op::Delete { key } => key,
    }
}
