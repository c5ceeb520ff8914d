//! The process-wide settings a FelixConfiguration carries, applied live:
//! the log level (`logSeverityScreen`, unless `TORTIE_LOG` is set; the BGP
//! speaker's follows the BGPConfiguration's `logSeverityScreen`), the
//! Prometheus listener (`prometheusMetricsEnabled` / `Host` / `Port`,
//! unless `--metrics-listen` is given) and the health endpoints
//! (`healthEnabled` / `Host` / `Port`: `/liveness`, `/readiness`). Like Felix, what the operator set
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
            Ok(()) => tracing::info!(level, "log level set by logSeverityScreen"),
            Err(e) => tracing::warn!(error = %e, "cannot change the log level"),
        }
    }
}

/// An HTTP listener that follows its configured address: started, moved
/// or stopped as the address changes.
struct Listener {
    what: &'static str,
    at: Option<SocketAddr>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Listener {
    fn new(what: &'static str) -> Listener {
        Listener { what, at: None, task: None }
    }

    async fn set<F>(&mut self, want: Option<SocketAddr>, serve: impl FnOnce(SocketAddr) -> F)
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        if self.at == want {
            return;
        }
        if let Some(task) = self.task.take() {
            task.abort();
            // Its socket is closed once the task is gone: only then bind again.
            let _ = task.await;
            tracing::info!(listen = ?self.at, what = self.what, "listener stopped (FelixConfiguration)");
        }
        let what = self.what;
        self.task = want.map(|at| {
            let running = serve(at);
            tokio::spawn(async move {
                if let Err(e) = running.await {
                    tracing::error!(error = %e, what, "listener (FelixConfiguration) stopped");
                }
            })
        });
        self.at = want;
    }
}

/// `/liveness` answers while the daemon runs; `/readiness` once the first
/// route pass and the first policy table are in the kernel.
async fn serve_health(at: SocketAddr, state: MetricsState) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use axum::http::StatusCode;
    let listener = tokio::net::TcpListener::bind(at).await.with_context(|| format!("binding health listener {at}"))?;
    tracing::info!(listen = %at, "health endpoints listening");
    let ready = |s: &MetricsState| {
        let done = |c: Option<&std::sync::atomic::AtomicU64>| {
            c.is_none_or(|c| c.load(std::sync::atomic::Ordering::Relaxed) > 0)
        };
        done(s.reconcile.as_ref().map(|r| &r.passes)) && done(s.policy.as_ref().map(|p| &p.full))
    };
    let app =
        axum::Router::new().route("/liveness", axum::routing::get(|| async { (StatusCode::OK, "live\n") })).route(
            "/readiness",
            axum::routing::get(move |axum::extract::State(s): axum::extract::State<MetricsState>| async move {
                if ready(&s) { (StatusCode::OK, "ready\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready\n") }
            }),
        );
    axum::serve(listener, app.with_state(state)).await.context("serving health endpoints")
}

/// Follows the FelixConfiguration until the daemon stops.
pub async fn follow(
    mut config: watch::Receiver<Arc<FelixConfigurationSpec>>,
    mut bgp_level: watch::Receiver<Option<&'static str>>,
    logs: LogLevel,
    metrics_flag: Option<SocketAddr>,
    state: MetricsState,
) {
    let mut level: Option<String> = None;
    let (mut metrics, mut health) = (Listener::new("Prometheus metrics"), Listener::new("health"));
    loop {
        let (want_level, want_metrics, want_health) = {
            let c = config.borrow_and_update();
            let metrics = metrics_flag.is_none().then(|| c.metrics_listen()).flatten();
            let mut level = c.log_level().unwrap_or("info").to_string();
            if let Some(bgp) = *bgp_level.borrow_and_update() {
                level.push_str(&format!(",tortie_bgp={bgp}"));
            }
            (level, metrics, c.health_listen())
        };
        if level.as_ref() != Some(&want_level) {
            if level.is_some() || want_level != "info" {
                logs.set(&want_level);
            }
            level = Some(want_level);
        }
        metrics.set(want_metrics, |at| metrics::serve_tcp(at, state.clone())).await;
        health.set(want_health, |at| serve_health(at, state.clone())).await;
        tokio::select! {
            r = config.changed() => if r.is_err() { return },
            r = bgp_level.changed() => if r.is_err() { return },
        }
    }
}
