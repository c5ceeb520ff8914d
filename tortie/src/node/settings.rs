//! The process-wide settings a FelixConfiguration carries, applied live:
//! the log level (`logSeverityScreen`, unless `TORTIE_LOG` is set) and the
//! Prometheus listener (`prometheusMetricsEnabled` / `Host` / `Port`,
//! unless `--metrics-listen` is given). Like Felix, what the operator set
//! on the command line or in the environment wins over the datastore.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tortie_store::resources::FelixConfigurationSpec;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt as _;

use super::metrics::{self, MetricsState};

/// The environment variable whose filter wins over `logSeverityScreen`.
const LOG_ENV: &str = "TORTIE_LOG";

/// Changes the log filter while the daemon runs (`None`: `TORTIE_LOG` is
/// set and decides).
#[derive(Clone)]
pub struct LogLevel(Option<reload::Handle<EnvFilter, tracing_subscriber::Registry>>);

/// Starts logging to stderr (JSON lines with `json`), at `TORTIE_LOG` or
/// `info` until a FelixConfiguration says otherwise.
pub fn init_logs(json: bool) -> LogLevel {
    let from_env = EnvFilter::try_from_env(LOG_ENV).ok();
    let fixed = from_env.is_some();
    let (filter, handle) = reload::Layer::new(from_env.unwrap_or_else(|| EnvFilter::new("info")));
    // Colours only for a person at a terminal, never in a log file or journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry.with(fmt.json()).init()
    } else {
        registry.with(fmt).init()
    }
    LogLevel((!fixed).then_some(handle))
}

impl LogLevel {
    fn set(&self, level: &str) {
        let Some(handle) = &self.0 else { return };
        match handle.reload(EnvFilter::new(level)) {
            Ok(()) => tracing::info!(level, "log level set by FelixConfiguration logSeverityScreen"),
            Err(e) => tracing::warn!(error = %e, "cannot change the log level"),
        }
    }
}

/// Follows the FelixConfiguration until the daemon stops.
pub async fn follow(
    mut config: watch::Receiver<Arc<FelixConfigurationSpec>>,
    logs: LogLevel,
    metrics_flag: Option<SocketAddr>,
    state: MetricsState,
) {
    let (mut level, mut listen): (Option<&str>, Option<SocketAddr>) = (None, None);
    let mut server: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let (want_level, want_listen) = {
            let c = config.borrow_and_update();
            (c.log_level().unwrap_or("info"), metrics_flag.is_none().then(|| c.metrics_listen()).flatten())
        };
        if level != Some(want_level) {
            if level.is_some() || want_level != "info" {
                logs.set(want_level);
            }
            level = Some(want_level);
        }
        if listen != want_listen {
            if let Some(s) = server.take() {
                s.abort();
                tracing::info!(listen = ?listen, "Prometheus metrics listener stopped (FelixConfiguration)");
            }
            server = want_listen.map(|at| {
                let s = state.clone();
                tokio::spawn(async move {
                    if let Err(e) = metrics::serve_tcp(at, s).await {
                        tracing::error!(error = %e, "metrics listener (FelixConfiguration prometheusMetrics*) stopped");
                    }
                })
            });
            listen = want_listen;
        }
        if config.changed().await.is_err() {
            return;
        }
    }
}
