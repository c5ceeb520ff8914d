//! The route reconciler: one task owns tortie's kernel routes. Each pass
//! dumps links and our routes, diffs them against the desired state and
//! applies the difference in batches. Passes run when the desired state
//! changes, when the kernel reports a link or route change (debounced), and
//! every `resync` interval — so a restart, a missed event or a meddled-with
//! kernel converges the same way.
//!
//! ```text
//!  watch<Desired> ──▶ ┌ reconciler task ┐ ──spawn_blocking──▶ Netlink (dump, diff, batch apply)
//!  netlink events ──▶ └─────────────────┘
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::netlink::{Netlink, NetlinkError};
use crate::route::{Change, Routes, Target, diff};
use crate::sysctl;

/// What the node's routes and interfaces should be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// Every route tortie should own.
    pub routes: Routes<String>,
    /// Pod interfaces to configure.
    pub interfaces: BTreeSet<String>,
    /// Keep our gateway routes that are not (yet) desired: set while BGP is
    /// still relearning after a restart, so adopted routes keep forwarding.
    pub keep_learned: bool,
}

/// Reconciler settings.
#[derive(Debug, Clone, Copy)]
pub struct ReconcilerConfig {
    /// Full resync interval even without events.
    pub resync: Duration,
    /// Wait after a kernel event for more to arrive.
    pub debounce: Duration,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        ReconcilerConfig { resync: Duration::from_secs(90), debounce: Duration::from_millis(20) }
    }
}

/// Counters (for metrics and tests).
#[derive(Debug, Default)]
pub struct ReconcileStats {
    /// Passes run.
    pub passes: AtomicU64,
    /// Route changes applied.
    pub changes: AtomicU64,
    /// Route changes the kernel refused, and failed passes.
    pub errors: AtomicU64,
    /// Duration of the last pass, µs.
    pub last_pass_us: AtomicU64,
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Routes added, replaced, deleted.
    pub added: usize,
    /// Routes replaced.
    pub replaced: usize,
    /// Routes deleted.
    pub deleted: usize,
    /// Changes the kernel refused, each with its error.
    pub refused: Vec<String>,
    /// Desired routes waiting for their interface.
    pub waiting: usize,
}

/// One reconcile pass (blocking).
pub fn pass(nl: &mut Netlink, desired: &Desired) -> Result<PassReport, NetlinkError> {
    let links = nl.links()?;
    let mut report = PassReport::default();
    let mut want = Routes::new();
    for (dst, target) in &desired.routes {
        match target.resolve(|name| links.get(name).copied()) {
            Some(t) => {
                want.insert(*dst, t);
            }
            None => report.waiting += 1,
        }
    }
    let actual = nl.routes()?;
    let mut changes = diff(&want, &actual);
    if desired.keep_learned {
        changes.retain(|c| !matches!(c, Change::Delete(_, Target::Gateways(_))));
    }
    for c in &changes {
        match c {
            Change::Add(..) => report.added += 1,
            Change::Replace(..) => report.replaced += 1,
            Change::Delete(..) => report.deleted += 1,
        }
    }
    let mut stale = Vec::new();
    for r in nl.apply(changes)? {
        report.refused.push(format!("{:?}: {}", r.change, r.error));
        // The old route must not outlive the decision to change it (e.g. a next hop
        // that left the tunnel but is not reachable natively): remove it.
        if let Change::Replace(dst, _) = r.change
            && let Some(old) = actual.get(&dst)
        {
            stale.push(Change::Delete(dst, old.clone()));
        }
    }
    report.deleted += stale.len();
    for r in nl.apply(stale)? {
        tracing::warn!(change = ?r.change, error = %r.error, "kernel refused to remove a stale route");
    }
    let interfaces = desired.interfaces.iter().filter(|i| links.contains_key(*i));
    for s in sysctl::node().iter().chain(interfaces.flat_map(|i| sysctl::pod_interface(i)).collect::<Vec<_>>().iter()) {
        match sysctl::ensure(s) {
            Ok(true) => tracing::debug!(key = s.key, value = s.value, "sysctl set"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "sysctl"),
        }
    }
    Ok(report)
}

/// A running reconciler.
pub struct ReconcilerHandle {
    /// Counters.
    pub stats: Arc<ReconcileStats>,
    /// The task.
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the reconciler in this process's network namespace.
pub fn spawn(
    mut desired: watch::Receiver<Arc<Desired>>,
    config: ReconcilerConfig,
) -> Result<ReconcilerHandle, NetlinkError> {
    let mut nl = Netlink::open()?;
    let events = Netlink::subscribe()?;
    let (kick_tx, mut kick_rx) = mpsc::channel::<()>(1);
    std::thread::Builder::new()
        .name("netlink-events".into())
        .spawn(move || {
            let mut buf = Vec::with_capacity(64 * 1024);
            loop {
                buf.clear();
                // An overrun (ENOBUFS) means events were lost: resync all the same.
                let _ = events.recv(&mut buf, 0);
                if kick_tx.try_send(()).is_err() && kick_tx.is_closed() {
                    return;
                }
            }
        })
        .map_err(|source| NetlinkError::Io { what: "event thread", source })?;
    let stats = Arc::new(ReconcileStats::default());
    let counters = stats.clone();
    let task = tokio::spawn(async move {
        let mut next_resync = tokio::time::Instant::now();
        let mut refused_before: std::collections::HashSet<String> = std::collections::HashSet::new();
        loop {
            tokio::select! {
                changed = desired.changed() => if changed.is_err() { return },
                Some(()) = kick_rx.recv() => {
                    tokio::time::sleep(config.debounce).await;
                    while kick_rx.try_recv().is_ok() {}
                }
                () = tokio::time::sleep_until(next_resync) => {}
            }
            next_resync = tokio::time::Instant::now() + config.resync;
            let want = desired.borrow_and_update().clone();
            let started = Instant::now();
            let (back, result) = match tokio::task::spawn_blocking(move || {
                let r = pass(&mut nl, &want);
                (nl, r)
            })
            .await
            {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(error = %e, "route reconciler pass panicked; stopping");
                    return;
                }
            };
            nl = back;
            let took = started.elapsed();
            counters.passes.fetch_add(1, Ordering::Relaxed);
            counters.last_pass_us.store(took.as_micros() as u64, Ordering::Relaxed);
            match result {
                Ok(r) => {
                    let applied = r.added + r.replaced + r.deleted;
                    counters.changes.fetch_add(applied as u64, Ordering::Relaxed);
                    counters.errors.fetch_add(r.refused.len() as u64, Ordering::Relaxed);
                    // A refusal is logged when it first happens, not again at every pass it persists.
                    for refusal in r.refused.iter().filter(|x| !refused_before.contains(*x)) {
                        tracing::warn!(refusal, "kernel refused a route change (retried at every pass)");
                    }
                    let refused_now: std::collections::HashSet<String> = r.refused.iter().cloned().collect();
                    let refusals_changed = refused_now != refused_before;
                    refused_before = refused_now;
                    if applied > 0 || refusals_changed {
                        tracing::info!(
                            added = r.added,
                            replaced = r.replaced,
                            deleted = r.deleted,
                            refused = r.refused.len(),
                            waiting_for_interface = r.waiting,
                            ms = took.as_millis() as u64,
                            "routes reconciled"
                        );
                    }
                }
                Err(e) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "route reconcile pass failed; retrying at the next event or resync");
                }
            }
        }
    });
    Ok(ReconcilerHandle { stats, task })
}
