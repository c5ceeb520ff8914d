//! The embedded engine: one SQLite file (WAL mode, `synchronous=FULL`)
//! shared safely by every process on the host — node daemons, CNI plugin
//! invocations, the CLI. SQLite's file locks serialise writers; each write
//! transaction takes the write lock up front (`BEGIN IMMEDIATE`) so two
//! processes never deadlock upgrading a read lock.
//!
//! Tables: `meta` (current and compacted revision), `kv` (live keys), `log`
//! (every change, for watches, until compacted) and `lease`. Watches poll
//! the revision (see [`watch`]); leases are expired by a reaper thread in
//! every process that has the store open (see [`lease`]).

mod lease;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Compare, KeyValue, Kv, LeaseId, Op, Range, Revision, Txn, TxnResponse, Watch, prefix_end};
use crate::StoreError;

/// How long a writer waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 1), ('compacted', 0), ('schema', 1);
CREATE TABLE IF NOT EXISTS kv (
  key BLOB PRIMARY KEY, value BLOB NOT NULL,
  create_revision INTEGER NOT NULL, mod_revision INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_by_lease ON kv (lease) WHERE lease IS NOT NULL;
CREATE TABLE IF NOT EXISTS log (
  revision INTEGER NOT NULL, sub INTEGER NOT NULL, key BLOB NOT NULL, deleted INTEGER NOT NULL,
  value BLOB NOT NULL, create_revision INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER,
  PRIMARY KEY (revision, sub)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lease (id INTEGER PRIMARY KEY, ttl_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL);
";

/// The SQLite engine. Clones share one connection.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// An error inside a blocking SQLite call: SQLite's own, or a store error.
pub(crate) enum Fail {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Fail {
        Fail::Sql(e)
    }
}

impl Fail {
    fn into_store(self, path: &Path) -> StoreError {
        match self {
            Fail::Sql(e) => StoreError::Sqlite { path: path.display().to_string(), message: e.to_string() },
            Fail::Store(e) => e,
        }
    }
}

/// Opens a connection with the pragmas every user of the file needs.
pub(crate) fn connect(path: &Path) -> Result<Connection, StoreError> {
    let sql = |e: rusqlite::Error| StoreError::Sqlite { path: path.display().to_string(), message: e.to_string() };
    let conn = Connection::open(path).map_err(sql)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
    // WAL: readers never block the writer. Switching to it needs the file to
    // ourselves, which the busy handler does not wait for: retry while
    // another process holds it (only ever on a brand-new file).
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        let mode: rusqlite::Result<String> = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0));
        match mode {
            Ok(_) => break,
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(sql(e)),
        }
    }
    // FULL: a committed write survives power loss.
    conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the store file at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Sqlite {
                path: path.display().to_string(),
                message: format!("cannot create directory {}: {e}", dir.display()),
            })?;
        }
        let mut conn = connect(path)?;
        let sql = |e: rusqlite::Error| StoreError::Sqlite { path: path.display().to_string(), message: e.to_string() };
        // The write lock only when the schema is missing: processes that open a
        // ready store (every CNI invocation) do not queue behind writers.
        let ready: bool = conn
            .query_row("SELECT count(*) = 3 FROM sqlite_master WHERE name IN ('meta', 'kv', 'log')", [], |r| r.get(0))
            .map_err(sql)?;
        if !ready {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
            tx.execute_batch(SCHEMA).map_err(sql)?;
            tx.commit().map_err(sql)?;
        }
        let inner = Arc::new(Inner { path: path.to_path_buf(), conn: Mutex::new(conn) });
        lease::start_reaper(Arc::downgrade(&inner));
        Ok(SqliteStore { inner })
    }

    /// The file this store uses.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the connection in a blocking thread.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, Fail> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        let joined = tokio::task::spawn_blocking(move || inner.with_conn(f)).await;
        joined.unwrap_or_else(|e| {
            Err(StoreError::Sqlite { path: self.inner.path.display().to_string(), message: format!("worker: {e}") })
        })
    }

    /// The current revision.
    pub async fn revision(&self) -> Result<Revision, StoreError> {
        self.call(|c| Ok(current_revision(c)?)).await
    }
}

impl Inner {
    pub(crate) fn with_conn<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T, Fail>) -> Result<T, StoreError> {
        // A poisoned lock means a panic mid-call; SQLite rolled the transaction back, the connection is fine.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn).map_err(|e| e.into_store(&self.path))
    }
}

pub(crate) fn current_revision(c: &Connection) -> rusqlite::Result<Revision> {
    c.query_row("SELECT value FROM meta WHERE name = 'revision'", [], |r| r.get(0))
}

pub(crate) fn compacted_revision(c: &Connection) -> rusqlite::Result<Revision> {
    c.query_row("SELECT value FROM meta WHERE name = 'compacted'", [], |r| r.get(0))
}

fn row_to_kv(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyValue> {
    let key: Vec<u8> = r.get(0)?;
    Ok(KeyValue {
        key: String::from_utf8_lossy(&key).into_owned(),
        value: r.get(1)?,
        create_revision: r.get(2)?,
        mod_revision: r.get(3)?,
        version: r.get(4)?,
        lease: r.get(5)?,
    })
}

/// A write transaction that takes its revision on the first change.
pub(crate) struct Writer<'c> {
    tx: rusqlite::Transaction<'c>,
    revision: Option<Revision>,
    sub: i64,
}

impl<'c> Writer<'c> {
    pub(crate) fn begin(conn: &'c mut Connection) -> rusqlite::Result<Writer<'c>> {
        Ok(Writer { tx: conn.transaction_with_behavior(TransactionBehavior::Immediate)?, revision: None, sub: 0 })
    }

    fn next_revision(&mut self) -> rusqlite::Result<Revision> {
        if let Some(rev) = self.revision {
            return Ok(rev);
        }
        let rev = self.tx.query_row(
            "UPDATE meta SET value = value + 1 WHERE name = 'revision' RETURNING value",
            [],
            |r| r.get(0),
        )?;
        self.revision = Some(rev);
        Ok(rev)
    }

    fn log(
        &mut self,
        key: &[u8],
        deleted: bool,
        value: &[u8],
        create: Revision,
        version: i64,
        lease: Option<LeaseId>,
    ) -> rusqlite::Result<()> {
        let rev = self.next_revision()?;
        self.tx.execute(
            "INSERT INTO log (revision, sub, key, deleted, value, create_revision, version, lease) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![rev, self.sub, key, deleted, value, create, version, lease],
        )?;
        self.sub += 1;
        Ok(())
    }

    pub(crate) fn put(&mut self, key: &str, value: &[u8], lease: Option<LeaseId>) -> Result<(), Fail> {
        if let Some(id) = lease {
            let exists: Option<i64> =
                self.tx.query_row("SELECT id FROM lease WHERE id = ?1", [id], |r| r.get(0)).optional()?;
            if exists.is_none() {
                return Err(Fail::Store(StoreError::LeaseNotFound(id)));
            }
        }
        let rev = self.next_revision()?;
        let (create, version): (Revision, i64) = self.tx.query_row(
            "INSERT INTO kv (key, value, create_revision, mod_revision, version, lease) VALUES (?1, ?2, ?3, ?3, 1, ?4)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_revision = excluded.mod_revision,
               version = version + 1, lease = excluded.lease
             RETURNING create_revision, version",
            params![key.as_bytes(), value, rev, lease],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        self.log(key.as_bytes(), false, value, create, version, lease)?;
        Ok(())
    }

    pub(crate) fn delete(&mut self, key: &[u8]) -> rusqlite::Result<()> {
        let gone: Option<(Revision, Option<LeaseId>)> = self
            .tx
            .query_row("DELETE FROM kv WHERE key = ?1 RETURNING create_revision, lease", [key], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        if let Some((create, lease)) = gone {
            self.log(key, true, &[], create, 0, lease)?;
        }
        Ok(())
    }

    /// Commits; returns the revision after the transaction.
    pub(crate) fn commit(self) -> rusqlite::Result<Revision> {
        let rev = match self.revision {
            Some(rev) => rev,
            None => current_revision(&self.tx)?,
        };
        self.tx.commit()?;
        Ok(rev)
    }
}

impl Kv for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.as_bytes().to_vec();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT key, value, create_revision, mod_revision, version, lease FROM kv WHERE key = ?1",
                [key],
                row_to_kv,
            )
            .optional()?)
        })
        .await
    }

    async fn range(&self, prefix: &str) -> Result<Range, StoreError> {
        let (start, end) = (prefix.as_bytes().to_vec(), prefix_end(prefix));
        self.call(move |c| {
            let tx = c.transaction()?;
            let revision = current_revision(&tx)?;
            let kvs = {
                let mut stmt = tx.prepare_cached(
                    "SELECT key, value, create_revision, mod_revision, version, lease FROM kv
                     WHERE key >= ?1 AND (?2 = x'' OR key < ?2) ORDER BY key",
                )?;
                stmt.query_map(params![start, end], row_to_kv)?.collect::<rusqlite::Result<Vec<_>>>()?
            };
            tx.commit()?;
            Ok(Range { kvs, revision })
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.call(move |c| {
            let mut w = Writer::begin(c)?;
            let mut succeeded = true;
            for Compare::ModRevision(key, want) in &txn.compares {
                let have: Revision =
                    w.tx.query_row("SELECT mod_revision FROM kv WHERE key = ?1", [key.as_bytes()], |r| r.get(0))
                        .optional()?
                        .unwrap_or(0);
                succeeded &= have == *want;
            }
            for op in if succeeded { &txn.success } else { &txn.failure } {
                match op {
                    Op::Put { key, value, lease } => w.put(key, value, *lease)?,
                    Op::Delete { key } => w.delete(key.as_bytes())?,
                }
            }
            Ok(TxnResponse { succeeded, revision: w.commit()? })
        })
        .await
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        watch::start(self.inner.path.clone(), prefix, from)
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.call(move |c| lease::grant(c, ttl)).await
    }

    async fn keep_alive(&self, id: LeaseId) -> Result<(), StoreError> {
        self.call(move |c| lease::keep_alive(c, id)).await
    }

    async fn revoke_lease(&self, id: LeaseId) -> Result<(), StoreError> {
        self.call(move |c| lease::revoke(c, id)).await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.call(move |c| compact(c, revision)).await
    }
}

/// Drops the history before `revision`.
pub(crate) fn compact(c: &mut Connection, revision: Revision) -> Result<(), Fail> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = current_revision(&tx)?;
    if revision > current {
        return Err(Fail::Store(StoreError::FutureRevision { requested: revision, current }));
    }
    if revision > compacted_revision(&tx)? {
        tx.execute("DELETE FROM log WHERE revision < ?1", [revision])?;
        tx.execute("UPDATE meta SET value = ?1 WHERE name = 'compacted'", [revision])?;
    }
    tx.commit()?;
    Ok(())
}
