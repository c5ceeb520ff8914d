//! Whether the datastore answers, for `tortie status` and the metrics: a
//! read every `PROBE_EVERY` that must come back within `PROBE_TIMEOUT`.
//! Losing the datastore stops nothing: felix keeps the kernel as it is,
//! sessions stay up, and the syncer reads everything again once the
//! datastore is back. The probe only says so, and logs each change.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tortie_store::Datastore;
use tortie_store::kv::Kv;

/// How often the datastore is asked.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long an answer may take (etcd without quorum never answers a
/// linearizable read).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// What is read: a key nobody writes.
const PROBE_KEY: &str = "/calico/tortie/v1/health";

/// The datastore as this node last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatastoreHealth {
    /// The last probe was answered.
    pub reachable: bool,
    /// Unix seconds since when that has been so.
    pub since: u64,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Starts probing `kv`; the receiver holds the latest finding.
pub fn spawn(kv: Datastore) -> watch::Receiver<DatastoreHealth> {
    let (tx, rx) = watch::channel(DatastoreHealth { reachable: true, since: now(), error: None });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let error = match tokio::time::timeout(PROBE_TIMEOUT, kv.range(PROBE_KEY)).await {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {PROBE_TIMEOUT:?}")),
            };
            let reachable = error.is_none();
            let changed = tx.send_if_modified(|h| {
                let flipped = h.reachable != reachable;
                if flipped {
                    *h = DatastoreHealth { reachable, since: now(), error: error.clone() };
                }
                flipped
            });
            match (changed, error) {
                (true, Some(e)) => {
                    tracing::error!(error = %e, "datastore unreachable: routes, policy and sessions stay as they are")
                }
                (true, None) => tracing::warn!("datastore reachable again"),
                _ => {}
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}
