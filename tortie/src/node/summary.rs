//! Cluster-wide status: every daemon publishes its session summary to the
//! datastore every `INTERVAL`; `tortie status --all-nodes` reads them all
//! from anywhere and flags a node whose summary is older than `STALE_AFTER`
//! (its daemon is down or cut off from the datastore).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tortie_store::Datastore;
use tortie_store::kv::Kv;

use super::local_api::{ApiState, Status};

/// Where the summaries live (outside Calico's key space).
const PREFIX: &str = "/calico/tortie/v1/status/";
/// How often a daemon publishes.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Older than this: flagged as stale (three missed publications).
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// One node's summary as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Unix seconds when it was written.
    pub published_at: u64,
    /// The summary.
    pub status: Status,
}

/// Publishes this node's summary now and every `INTERVAL` (failures are
/// logged and retried at the next tick).
pub async fn publish(kv: Datastore, api: ApiState) {
    let mut tick = tokio::time::interval(INTERVAL);
    loop {
        tick.tick().await;
        let published_at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let summary = Published { published_at, status: api.status().await };
        let key = format!("{PREFIX}{}", api.node);
        match serde_json::to_vec(&summary) {
            Ok(value) => {
                if let Err(e) = kv.put(&key, value).await {
                    tracing::warn!(error = %e, "cannot publish the session summary");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode the session summary"),
        }
    }
}

/// Every node's last summary, by node name.
pub async fn read_all(kv: &Datastore) -> anyhow::Result<Vec<Published>> {
    let range = kv.range(PREFIX).await?;
    Ok(range.kvs.iter().filter_map(|item| serde_json::from_slice(&item.value).ok()).collect())
}
