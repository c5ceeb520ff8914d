//! Leases on the SQLite engine. Expiry times are wall-clock milliseconds,
//! shared by every process on the host; any process with the store open
//! runs a reaper that deletes expired leases and their keys (as delete
//! events), and compacts old history.

use std::sync::Weak;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use super::{Fail, Inner, Writer, compact, compacted_revision, current_revision};
use crate::StoreError;
use crate::kv::LeaseId;

/// How often the reaper looks for expired leases.
const REAP_EVERY: Duration = Duration::from_millis(100);
/// History kept for watches to resume from (revisions).
pub(crate) const KEEP_REVISIONS: i64 = 100_000;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub(super) fn grant(c: &mut Connection, ttl: Duration) -> Result<LeaseId, Fail> {
    let ttl_ms = ttl.as_millis() as i64;
    let w = Writer::begin(c)?;
    let id: LeaseId = w.tx.query_row(
        "INSERT INTO lease (ttl_ms, expires_ms) VALUES (?1, ?2) RETURNING id",
        params![ttl_ms, now_ms() + ttl_ms],
        |r| r.get(0),
    )?;
    w.commit()?;
    Ok(id)
}

pub(super) fn keep_alive(c: &mut Connection, id: LeaseId) -> Result<(), Fail> {
    let w = Writer::begin(c)?;
    let changed = w.tx.execute(
        "UPDATE lease SET expires_ms = ?2 + ttl_ms WHERE id = ?1 AND expires_ms > ?2",
        params![id, now_ms()],
    )?;
    w.commit()?;
    if changed == 0 { Err(Fail::Store(StoreError::LeaseNotFound(id))) } else { Ok(()) }
}

pub(super) fn revoke(c: &mut Connection, id: LeaseId) -> Result<(), Fail> {
    let mut w = Writer::begin(c)?;
    let found = w.tx.execute("DELETE FROM lease WHERE id = ?1", [id])?;
    if found == 0 {
        return Err(Fail::Store(StoreError::LeaseNotFound(id)));
    }
    delete_keys_of(&mut w, id)?;
    w.commit()?;
    Ok(())
}

fn delete_keys_of(w: &mut Writer<'_>, id: LeaseId) -> rusqlite::Result<()> {
    let keys: Vec<Vec<u8>> = {
        let mut stmt = w.tx.prepare_cached("SELECT key FROM kv WHERE lease = ?1")?;
        stmt.query_map([id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
    };
    for key in keys {
        w.delete(&key)?;
    }
    Ok(())
}

/// Expires leases whose time has come; returns how many.
fn expire(c: &mut Connection) -> rusqlite::Result<usize> {
    let now = now_ms();
    // Cheap read first: most ticks find nothing and take no write lock.
    let any: Option<i64> =
        c.query_row("SELECT id FROM lease WHERE expires_ms <= ?1 LIMIT 1", [now], |r| r.get(0)).optional()?;
    if any.is_none() {
        return Ok(0);
    }
    let mut w = Writer::begin(c)?;
    let ids: Vec<LeaseId> = {
        let mut stmt = w.tx.prepare_cached("SELECT id FROM lease WHERE expires_ms <= ?1")?;
        stmt.query_map([now], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
    };
    for id in &ids {
        w.tx.execute("DELETE FROM lease WHERE id = ?1", [id])?;
        delete_keys_of(&mut w, *id)?;
    }
    w.commit()?;
    Ok(ids.len())
}

/// Starts the reaper thread; it stops when the store is dropped.
pub(super) fn start_reaper(inner: Weak<Inner>) {
    let spawned = std::thread::Builder::new().name("tortie-store-reaper".into()).spawn(move || {
        let mut ticks: u64 = 0;
        while let Some(inner) = inner.upgrade() {
            let result = inner.with_conn(|c| {
                let expired = expire(c)?;
                if expired > 0 {
                    tracing::info!(store = %inner.path.display(), expired, "leases expired; their keys are deleted");
                }
                // Every ~10 s, keep the history bounded.
                if ticks.is_multiple_of(100) {
                    let current = current_revision(c)?;
                    if current - compacted_revision(c)? > 2 * KEEP_REVISIONS {
                        compact(c, current - KEEP_REVISIONS)?;
                    }
                }
                Ok(())
            });
            if let Err(e) = result {
                tracing::warn!(error = %e, "lease reaper");
            }
            drop(inner);
            ticks += 1;
            std::thread::sleep(REAP_EVERY);
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the lease reaper: leases will not expire in this process");
    }
}
