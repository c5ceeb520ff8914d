//! Cluster-wide status: every daemon publishes its session summary to the
//! datastore every FelixConfiguration `reportingInterval` (`DEFAULT_INTERVAL`
//! when unset); `tortie status --all-nodes` reads them all from anywhere and
//! flags a node whose summary is older than three intervals (its daemon is
//! down or cut off from the datastore), or that does not report at all.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tortie_store::Datastore;
use tortie_store::kv::Kv;
use tortie_store::resources::FelixConfigurationSpec;

use super::local_api::{ApiState, Status};

/// Where the summaries live (outside Calico's key space).
const PREFIX: &str = "/calico/tortie/v1/status/";
/// How often a daemon publishes unless `reportingInterval` says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// One node's summary as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Unix seconds when it was written.
    pub published_at: u64,
    /// Seconds until the next one (0: none will follow; absent in
    /// summaries from before it was recorded: `DEFAULT_INTERVAL`).
    #[serde(default = "default_interval")]
    pub interval: u64,
    /// The summary.
    pub status: Status,
}

fn default_interval() -> u64 {
    DEFAULT_INTERVAL.as_secs()
}

impl Published {
    /// Why the summary cannot be trusted as current, if it cannot.
    pub fn stale(&self, now: u64) -> Option<String> {
        let age = now.saturating_sub(self.published_at);
        if self.interval == 0 {
            Some(format!("not reporting (reportingInterval 0s); summary {age} s old"))
        } else if age > self.interval.saturating_mul(3) {
            Some(format!("STALE: last summary {age} s ago — is the daemon running?"))
        } else {
            None
        }
    }
}

/// Publishes this node's summary at every `reportingInterval` (failures
/// are logged and retried at the next tick), and whenever the
/// FelixConfiguration changes; at `0s` only then.
pub async fn publish(kv: Datastore, api: ApiState, mut config: Option<watch::Receiver<Arc<FelixConfigurationSpec>>>) {
    let interval = |c: &Option<watch::Receiver<Arc<FelixConfigurationSpec>>>| {
        c.as_ref().and_then(|c| c.borrow().reporting()).unwrap_or(DEFAULT_INTERVAL)
    };
    let mut every = interval(&config);
    loop {
        let published_at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let summary = Published {
            published_at,
            interval: every.as_secs(),
            status: api.status(tortie_bgp::speaker::counts::PERIODIC).await,
        };
        let key = format!("{PREFIX}{}", api.node);
        match serde_json::to_vec(&summary) {
            Ok(value) => {
                if let Err(e) = kv.put(&key, value).await {
                    tracing::warn!(error = %e, "cannot publish the session summary");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode the session summary"),
        }
        let changed = async {
            match config.as_mut() {
                Some(c) => c.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        let tick =
            async { if every.is_zero() { std::future::pending().await } else { tokio::time::sleep(every).await } };
        tokio::select! {
            () = tick => {}
            alive = changed => {
                if !alive {
                    config = None;
                }
                let now = interval(&config);
                if now != every {
                    tracing::info!(?now, was = ?every, "summary publication interval set by FelixConfiguration reportingInterval");
                    every = now;
                }
            }
        }
    }
}

/// Every node's last summary, by node name.
pub async fn read_all(kv: &Datastore) -> anyhow::Result<Vec<Published>> {
    let range = kv.range(PREFIX).await?;
    Ok(range.kvs.iter().filter_map(|item| serde_json::from_slice(&item.value).ok()).collect())
}
