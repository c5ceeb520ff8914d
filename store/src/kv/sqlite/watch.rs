//! Watches on the SQLite engine: a thread per watch polls the store's
//! revision every few milliseconds and, when it moved, reads the new log
//! entries under the prefix in one snapshot. Another process's commit is
//! seen within one poll interval.

use std::path::PathBuf;
use std::time::Duration;

use rusqlite::params;

use super::{compacted_revision, connect, current_revision};
use crate::StoreError;
use crate::kv::{Event, EventKind, KeyValue, Revision, Watch, prefix_end};

/// How often a watch looks for new revisions.
const POLL: Duration = Duration::from_millis(5);

/// Starts a watch of `prefix` from revision `from` (≤ 0: from the next revision).
pub(super) fn start(path: PathBuf, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
    let conn = connect(&path)?;
    let (tx, watch) = Watch::channel();
    let (start, end) = (prefix.as_bytes().to_vec(), prefix_end(prefix));
    let sql = move |e: rusqlite::Error| StoreError::Sqlite { path: path.display().to_string(), message: e.to_string() };
    let mut next = if from > 0 { from } else { current_revision(&conn).map_err(&sql)? + 1 };
    std::thread::Builder::new()
        .name("tortie-store-watch".into())
        .spawn(move || {
            while !tx.is_closed() {
                match poll(&conn, &start, &end, next) {
                    Ok(Polled::Events(batches, current)) => {
                        next = current + 1;
                        for batch in batches {
                            // Bounded: a slow consumer stalls this poller (and may then be compacted past).
                            if tx.blocking_send(Ok(batch)).is_err() {
                                return;
                            }
                        }
                    }
                    Ok(Polled::Compacted(compacted)) => {
                        let _ = tx.blocking_send(Err(StoreError::Compacted { requested: next, compacted }));
                        return;
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(sql(e)));
                        return;
                    }
                }
                std::thread::sleep(POLL);
            }
        })
        .map_err(|e| StoreError::Sqlite { path: String::new(), message: format!("cannot start watch thread: {e}") })?;
    Ok(watch)
}

enum Polled {
    /// Batches (one per revision) and the revision read at.
    Events(Vec<Vec<Event>>, Revision),
    /// The next revision wanted is older than the compaction point.
    Compacted(Revision),
}

fn poll(conn: &rusqlite::Connection, start: &[u8], end: &[u8], next: Revision) -> rusqlite::Result<Polled> {
    // One read transaction: the revision and the log rows come from one snapshot.
    let tx = conn.unchecked_transaction()?;
    let current = current_revision(&tx)?;
    if current < next {
        return Ok(Polled::Events(Vec::new(), next - 1));
    }
    let compacted = compacted_revision(&tx)?;
    if next < compacted {
        return Ok(Polled::Compacted(compacted));
    }
    let mut stmt = tx.prepare_cached(
        "SELECT revision, key, deleted, value, create_revision, version, lease FROM log
         WHERE revision >= ?1 AND key >= ?2 AND (?3 = x'' OR key < ?3) ORDER BY revision, sub",
    )?;
    let mut batches: Vec<Vec<Event>> = Vec::new();
    let mut last = None;
    let mut rows = stmt.query(params![next, start, end])?;
    while let Some(r) = rows.next()? {
        let revision: Revision = r.get(0)?;
        let key: Vec<u8> = r.get(1)?;
        let deleted: bool = r.get(2)?;
        let event = Event {
            kind: if deleted { EventKind::Delete } else { EventKind::Put },
            kv: KeyValue {
                key: String::from_utf8_lossy(&key).into_owned(),
                value: r.get(3)?,
                create_revision: r.get(4)?,
                mod_revision: revision,
                version: r.get(5)?,
                lease: r.get(6)?,
            },
        };
        match batches.last_mut() {
            Some(batch) if last == Some(revision) => batch.push(event),
            _ => batches.push(vec![event]),
        }
        last = Some(revision);
    }
    Ok(Polled::Events(batches, current))
}
