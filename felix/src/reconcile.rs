//! The route reconciler: one task owns tortie's kernel routes. A full pass
//! dumps links and our routes, diffs them against the desired state and
//! applies the difference in batches; it runs at start, when the kernel
//! reports a link change or someone else's route change (debounced), and
//! every `resync` interval — so a restart, a missed event or a meddled-with
//! kernel converges the same way. Between full passes the reconciler
//! applies only the routes the agent changed ([`DesiredCell`] keeps which,
//! with what each was before), so one learned route costs one kernel write,
//! not a dump of the whole table; the kernel's echo of our own changes is
//! dropped before it reaches us (a socket filter), a route of ours someone
//! else deleted is put back, and one someone else wrote brings a full pass.
//!
//! ```text
//!  DesiredCell (routes + what changed) ──▶ ┌ reconciler task ┐ ──spawn_blocking──▶ Netlink
//!  netlink events (links, others' routes, ──▶ └─────────────────┘     (changed routes, or dump + diff)
//!                  our routes deleted)
//! ```

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::Notify;

use crate::calc::{Remote, remote_route};
use crate::compact::{PrefixMap, PrefixSet};
use crate::learned::Learned;
use crate::netlink::{Netlink, NetlinkError, RouteEvent, route_events};
use crate::route::{Change, LearnedHops, Routes, Target, diff_resolving, join};
use crate::sysctl;

/// What the node's routes and interfaces should be, but for what was
/// learned (the cell holds that beside it: see [`View`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// This node's own routes (pods, block blackholes): they win over
    /// learned ones.
    pub local: Routes<String>,
    /// How learned prefixes leave this node.
    pub remote: Remote,
    /// Pod interfaces to configure.
    pub interfaces: BTreeSet<String>,
    /// Keep our gateway routes that are not (yet) desired: set while BGP is
    /// still relearning after a restart, so adopted routes keep forwarding.
    pub keep_learned: bool,
}

/// The desired routes: the local ones, and a route for each learned prefix
/// made from its next hops as it is asked for. A full table is held once,
/// as next hops, not a second time as kernel routes.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    desired: &'a Desired,
    learned: &'a Learned,
}

impl View<'_> {
    /// The route `prefix` should have.
    pub fn target(&self, prefix: &IpNet) -> Option<Target<String>> {
        match self.desired.local.get(prefix) {
            Some(t) => Some(t.clone()),
            None => remote_route(prefix, &self.learned.get(prefix)?, &self.desired.remote),
        }
    }

    /// How learned prefixes leave this node, as the routes are made now.
    pub fn remote(&self) -> &Remote {
        &self.desired.remote
    }

    /// Every desired route, in destination order.
    pub fn routes(&self) -> impl Iterator<Item = (IpNet, Target<String>)> + '_ {
        let local = self.desired.local.iter().map(|(p, t)| (*p, t));
        join(local, self.learned.iter()).filter_map(|(prefix, local, hops)| match local {
            Some(t) => Some((prefix, t.clone())),
            None => Some((prefix, remote_route(&prefix, &hops?, &self.desired.remote)?)),
        })
    }

    /// Marks in `dirty` every route that differs from `self` to `now`.
    fn mark_differences(&self, now: &View<'_>, dirty: &mut Pending) {
        for (prefix, before, after) in join(self.routes(), now.routes()) {
            if before != after {
                dirty.mark(prefix, || before);
            }
        }
    }
}

/// Routes changed since the reconciler last took them, each with its
/// target before the first change (what the kernel should still have):
/// the prefixes, and the targets of those that had one (a table arriving
/// has none, and a set of prefixes costs a fraction of a map of targets;
/// an IPv4 prefix costs 4 octets in the set, and a learned route's target
/// 8 in the map: a table going, its deletions waiting for the kernel).
#[derive(Debug, Default)]
struct Pending {
    prefixes: PrefixSet,
    before: PrefixMap<Target<String>>,
}

impl Pending {
    /// Marks `prefix` changed, `before` giving its target before, unless
    /// it is pending already (the first change's before counts); whether
    /// it was not.
    fn mark(&mut self, prefix: IpNet, before: impl FnOnce() -> Option<Target<String>>) -> bool {
        let new = self.prefixes.insert(prefix, ()).is_none();
        if new && let Some(t) = before() {
            self.before.insert(prefix, t);
        }
        new
    }

    fn pop_first(&mut self) -> Option<(IpNet, Option<Target<String>>)> {
        let (prefix, ()) = self.prefixes.pop_first()?;
        Some((prefix, self.before.remove(&prefix)))
    }

    fn len(&self) -> usize {
        self.prefixes.len()
    }

    fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    fn clear(&mut self) {
        *self = Pending::default();
    }
}

/// Changed routes written in one pass at most.
const CHUNK: usize = 4096;

/// The desired state, shared by the agent (which edits it) and the
/// reconciler (which is told what changed since it last looked).
#[derive(Debug, Default)]
pub struct DesiredCell {
    shared: Mutex<Shared>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct Shared {
    desired: Desired,
    learned: Learned,
    /// Routes changed since the reconciler last took them.
    dirty: Pending,
    /// Interfaces changed, or `keep_learned` did with routes to judge
    /// again: the next pass is a full one.
    full: bool,
    /// A route of ours that is not desired was kept (`keep_learned`) since
    /// `keep_learned` was set: when BGP has converged, a full pass judges it.
    kept: bool,
}

/// Edits of the desired state (see [`DesiredCell::edit`]).
pub struct Editor<'a>(&'a mut Shared);

impl Shared {
    fn view(&self) -> View<'_> {
        View { desired: &self.desired, learned: &self.learned }
    }
}

impl Editor<'_> {
    /// Sets (or with `None`, removes) the next hops learned for one prefix.
    pub fn learned(&mut self, prefix: IpNet, hops: Option<LearnedHops>) {
        let shared = &mut *self.0;
        let hops = hops.filter(|h| !h.is_empty());
        let remote = &shared.desired.remote;
        // (One lookup of the learned map: a full table arrives through here.)
        let after = hops.as_ref().and_then(|h| remote_route(&prefix, h, remote));
        let was = match hops {
            Some(hops) => shared.learned.insert(prefix, hops),
            None => shared.learned.remove(&prefix),
        };
        let before = was.and_then(|h| remote_route(&prefix, &h, remote));
        // A local route wins over a learned one: the kernel's does not change.
        if before != after && !shared.desired.local.contains_key(&prefix) {
            shared.dirty.mark(prefix, || before);
        }
    }

    /// Replaces everything learned; only the routes that differ are marked changed.
    pub fn replace_learned(&mut self, learned: Learned) {
        let shared = &mut *self.0;
        let (before, now) = (
            View { desired: &shared.desired, learned: &shared.learned },
            View { desired: &shared.desired, learned: &learned },
        );
        before.mark_differences(&now, &mut shared.dirty);
        shared.learned = learned;
    }

    /// Replaces the desired state but for what was learned; only the
    /// routes that differ are marked changed.
    pub fn replace(&mut self, desired: Desired) {
        let shared = &mut *self.0;
        let (before, now) = (
            View { desired: &shared.desired, learned: &shared.learned },
            View { desired: &desired, learned: &shared.learned },
        );
        if desired.remote == shared.desired.remote {
            // Only local routes may differ (a pod came or went): a full
            // table of learned ones is not walked for it.
            let prefixes: BTreeSet<IpNet> = shared.desired.local.keys().chain(desired.local.keys()).copied().collect();
            for prefix in prefixes {
                let was = before.target(&prefix);
                if now.target(&prefix) != was {
                    shared.dirty.mark(prefix, || was);
                }
            }
        } else {
            before.mark_differences(&now, &mut shared.dirty);
        }
        let d = &shared.desired;
        // Relearning ends: only routes kept meanwhile need a full pass (a
        // node that started with nothing of ours in the kernel has none).
        let relearning = d.keep_learned != desired.keep_learned && (desired.keep_learned || shared.kept);
        if d.interfaces != desired.interfaces || relearning {
            shared.full = true;
        }
        shared.kept &= desired.keep_learned;
        shared.desired = desired;
    }

    /// The desired routes as they stand.
    pub fn view(&self) -> View<'_> {
        self.0.view()
    }

    /// How many prefixes were learned.
    pub fn learned_len(&self) -> usize {
        self.0.learned.len()
    }
}

/// One changed route: its prefix, its target now and its target before
/// (what the kernel should still have); `None`: no route.
type Changed = (IpNet, Option<Target<String>>, Option<Target<String>>);

/// What the reconciler takes from the cell for one pass.
enum Work {
    /// Everything: dump the kernel and diff it with the desired state as
    /// it stands then (read in place, under the lock: a table is not copied).
    Full,
    /// These routes changed: (prefix, target now, target before).
    Routes(Vec<Changed>, bool),
}

impl DesiredCell {
    /// A cell holding `desired`, its first pass a full one.
    pub fn new(desired: Desired) -> Arc<DesiredCell> {
        Arc::new(DesiredCell {
            shared: Mutex::new(Shared { desired, full: true, ..Shared::default() }),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Edits the desired state; the reconciler wakes when something changed.
    pub fn edit<T>(&self, f: impl FnOnce(&mut Editor<'_>) -> T) -> T {
        let mut shared = self.lock();
        let out = f(&mut Editor(&mut shared));
        let changed = shared.full || !shared.dirty.is_empty();
        drop(shared);
        if changed {
            self.changed.notify_one();
        }
        out
    }

    /// Routes of ours the kernel lost (someone deleted them): put back
    /// what is still desired. A prefix with a change pending already may
    /// be the late echo of our own delete, or a real loss: which one, only
    /// the kernel's table tells, so a full pass settles it.
    fn lost(&self, prefixes: impl IntoIterator<Item = IpNet>) {
        let mut shared = self.lock();
        for p in prefixes {
            if !shared.dirty.mark(p, || None) {
                shared.full = true;
            }
        }
    }

    /// `plan` of the desired state as it stands; what changed before is in
    /// it (the full pass that calls this supersedes the pending changes).
    fn planned(&self, plan: &dyn Fn(&View<'_>) -> Plan) -> Plan {
        let mut shared = self.lock();
        shared.dirty.clear();
        let plan = plan(&shared.view());
        shared.kept |= plan.kept > 0;
        plan
    }

    /// A pass kept routes of ours that are not desired, while BGP
    /// relearned: they are judged when it has converged, or at once by a
    /// full pass if it has meanwhile.
    fn kept(&self) {
        let mut shared = self.lock();
        match shared.desired.keep_learned {
            true => shared.kept = true,
            false => shared.full = true,
        }
    }

    fn take(&self, full: bool) -> Option<Work> {
        let mut shared = self.lock();
        if full || shared.full {
            if !full {
                tracing::debug!(
                    "full pass: the desired state's interfaces or relearning changed, or a loss is unclear"
                );
            }
            shared.full = false;
            return Some(Work::Full);
        }
        if shared.dirty.is_empty() {
            return None;
        }
        // In chunks: a whole table pending (a full table arriving while the
        // kernel is busy) is not copied out at once; the next chunk is taken
        // as soon as this one is written.
        let taken: Vec<_> = (0..shared.dirty.len().min(CHUNK)).filter_map(|_| shared.dirty.pop_first()).collect();
        let view = shared.view();
        let changes = taken.into_iter().map(|(p, before)| (p, view.target(&p), before)).collect();
        Some(Work::Routes(changes, shared.desired.keep_learned))
    }
}

/// Reconciler settings.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// Full resync interval even without events (it may change while the
    /// reconciler runs: FelixConfiguration `routeRefreshInterval`).
    pub resync: tokio::sync::watch::Receiver<Duration>,
    /// Wait after a kernel event for more to arrive.
    pub debounce: Duration,
}

/// The full resync interval when nothing sets it (Calico's too).
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(90);

impl Default for ReconcilerConfig {
    fn default() -> Self {
        ReconcilerConfig { resync: tokio::sync::watch::channel(DEFAULT_RESYNC).1, debounce: Duration::from_millis(20) }
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
    /// Full passes (a dump of the kernel's table), among `passes`.
    pub full_passes: AtomicU64,
    /// Kernel notifications lost to a full event socket (each costs a full pass).
    pub event_overruns: AtomicU64,
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
    /// Learned routes no longer desired but kept while BGP relearns.
    pub kept: usize,
}

/// What a full pass does to the kernel, from the desired state.
#[derive(Default)]
struct Plan {
    changes: Vec<Change>,
    /// Routes of ours not desired, kept while BGP relearns.
    kept: usize,
    /// Desired routes waiting for their interface.
    waiting: usize,
    /// The pod interfaces to configure.
    interfaces: BTreeSet<String>,
}

/// One reconcile pass (blocking) to `desired`, nothing learned.
pub fn pass(nl: &mut Netlink, desired: &Desired) -> Result<PassReport, NetlinkError> {
    full_pass(nl, |plan| plan(&View { desired, learned: &Learned::default() }))
}

/// A full pass: the kernel's links, our nexthop objects and our routes
/// dumped, then diffed with the desired state that `desired` hands to the
/// planner; nexthop objects no route uses go at its end.
fn full_pass(
    nl: &mut Netlink,
    desired: impl FnOnce(&dyn Fn(&View<'_>) -> Plan) -> Plan,
) -> Result<PassReport, NetlinkError> {
    let links = nl.links()?;
    nl.sync_nexthops()?;
    let actual = nl.routes()?;
    let plan = desired(&|v: &View<'_>| {
        let (mut changes, waiting) = diff_resolving(v.routes(), &actual, |name| links.get(name).copied());
        let all = changes.len();
        if v.desired.keep_learned {
            changes.retain(|c| !matches!(c, Change::Delete(_, Target::Gateways(_))));
        }
        Plan { kept: all - changes.len(), changes, waiting, interfaces: v.desired.interfaces.clone() }
    });
    let Plan { changes, kept, waiting, interfaces } = plan;
    let mut report = PassReport { waiting, kept, ..PassReport::default() };
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
            stale.push(Change::Delete(dst, old));
        }
    }
    report.deleted += stale.len();
    for r in nl.apply(stale)? {
        tracing::warn!(change = ?r.change, error = %r.error, "kernel refused to remove a stale route");
    }
    nl.remove_unused_nexthops()?;
    let interfaces = interfaces.iter().filter(|i| links.contains_key(*i));
    for s in sysctl::node().iter().chain(interfaces.flat_map(|i| sysctl::pod_interface(i)).collect::<Vec<_>>().iter()) {
        match sysctl::ensure(s) {
            Ok(true) => tracing::debug!(key = s.key, value = s.value, "sysctl set"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "sysctl"),
        }
    }
    Ok(report)
}

/// Applies the routes that changed (blocking): each desired one is
/// written (replacing ours; added, never over a route someone else owns,
/// when we had none there), each one no longer desired is deleted
/// — unless it is a learned route kept while BGP relearns. A route whose
/// interface is missing waits for the next full pass (a link event).
fn apply_changed(nl: &mut Netlink, changes: Vec<Changed>, keep_learned: bool) -> Result<PassReport, NetlinkError> {
    let links = nl.links()?;
    let mut report = PassReport::default();
    let mut writes = Vec::new();
    for (prefix, now, before) in changes {
        match (now, before) {
            (Some(now), before) if before.as_ref() == Some(&now) => {}
            (Some(now), before) => match now.resolve(|name| links.get(name).copied()) {
                Some(t) if before.is_some() => {
                    report.replaced += 1;
                    writes.push(Change::Replace(prefix, t));
                }
                // A refusal (another owner's route is there) brings a full pass.
                Some(t) => {
                    report.added += 1;
                    writes.push(Change::Add(prefix, t));
                }
                None => report.waiting += 1,
            },
            (None, Some(Target::Gateways(_))) if keep_learned => report.kept += 1,
            (None, Some(before)) => {
                // The kind is all a delete needs of the old route.
                let kind = before.resolve(|_| Some(0u32)).unwrap_or(Target::Blackhole);
                report.deleted += 1;
                writes.push(Change::Delete(prefix, kind));
            }
            (None, None) => {}
        }
    }
    for r in nl.apply(writes)? {
        // A delete of a route already gone is no failure.
        if matches!(r.change, Change::Delete(..)) && r.error.raw_os_error() == Some(ESRCH) {
            continue;
        }
        report.refused.push(format!("{:?}: {}", r.change, r.error));
    }
    Ok(report)
}

/// "No such process": the kernel's answer to deleting a route that is not there.
const ESRCH: i32 = 3;

/// A running reconciler.
pub struct ReconcilerHandle {
    /// Counters.
    pub stats: Arc<ReconcileStats>,
    /// The task.
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the reconciler in this process's network namespace.
pub fn spawn(cell: Arc<DesiredCell>, config: ReconcilerConfig) -> Result<ReconcilerHandle, NetlinkError> {
    let mut nl = Netlink::open()?;
    let events = Netlink::subscribe(&nl)?;
    let (kick_tx, mut kick_rx) = tokio::sync::mpsc::channel::<()>(1);
    let lost_to = cell.clone();
    let stats = Arc::new(ReconcileStats::default());
    let overruns = stats.clone();
    std::thread::Builder::new()
        .name("netlink-events".into())
        .spawn(move || {
            let mut buf = Vec::with_capacity(64 * 1024);
            loop {
                buf.clear();
                // An overrun (ENOBUFS) means events were lost: a full pass all the same.
                let events = match events.recv(&mut buf, 0) {
                    Ok(_) => route_events(&buf),
                    Err(_) => {
                        overruns.event_overruns.fetch_add(1, Ordering::Relaxed);
                        vec![RouteEvent::Other]
                    }
                };
                let (mut lost, mut full) = (Vec::new(), false);
                for e in events {
                    match e {
                        RouteEvent::OursDeleted(p) => lost.push(p),
                        RouteEvent::Other => full = true,
                        RouteEvent::Elsewhere => {}
                    }
                }
                if !lost.is_empty() {
                    lost_to.lost(lost);
                    lost_to.changed.notify_one();
                }
                if full {
                    let _ = kick_tx.try_send(());
                }
                if kick_tx.is_closed() {
                    return;
                }
            }
        })
        .map_err(|source| NetlinkError::Io { what: "event thread", source })?;
    let counters = stats.clone();
    let mut resync = config.resync;
    let mut resync_open = true;
    let task = tokio::spawn(async move {
        let mut next_resync = tokio::time::Instant::now();
        let mut last_full = next_resync;
        let mut refused_before: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut full = true;
        loop {
            let Some(work) = cell.take(std::mem::take(&mut full)) else {
                tokio::select! {
                    () = cell.changed.notified() => {}
                    Some(()) = kick_rx.recv() => {
                        tokio::time::sleep(config.debounce).await;
                        while kick_rx.try_recv().is_ok() {}
                        tracing::debug!("full pass: a link, nexthop or foreign route changed");
                        full = true;
                    }
                    () = tokio::time::sleep_until(next_resync) => {
                        tracing::debug!("full pass: periodic resync");
                        full = true;
                    }
                    open = resync.changed(), if resync_open => {
                        resync_open = open.is_ok();
                        next_resync = last_full + *resync.borrow();
                        tracing::info!(interval = ?*resync.borrow(), "route refresh interval changed");
                    }
                }
                continue;
            };
            let is_full = matches!(work, Work::Full);
            if is_full {
                last_full = tokio::time::Instant::now();
                next_resync = last_full + *resync.borrow();
            }
            let started = Instant::now();
            let cell_for_pass = cell.clone();
            let (back, result) = match tokio::task::spawn_blocking(move || {
                let r = match work {
                    Work::Full => full_pass(&mut nl, |plan| cell_for_pass.planned(plan)),
                    Work::Routes(changes, keep_learned) => apply_changed(&mut nl, changes, keep_learned),
                };
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
            counters.full_passes.fetch_add(u64::from(is_full), Ordering::Relaxed);
            counters.last_pass_us.store(took.as_micros() as u64, Ordering::Relaxed);
            match result {
                Ok(r) => {
                    let applied = r.added + r.replaced + r.deleted;
                    counters.changes.fetch_add(applied as u64, Ordering::Relaxed);
                    counters.errors.fetch_add(r.refused.len() as u64, Ordering::Relaxed);
                    if r.kept > 0 && !is_full {
                        cell.kept();
                    }
                    // A refusal is logged when it first happens, not again at every pass it persists.
                    for refusal in r.refused.iter().filter(|x| !refused_before.contains(*x)) {
                        tracing::warn!(refusal, "kernel refused a route change (retried at every full pass)");
                    }
                    if is_full {
                        let refused_now: std::collections::HashSet<String> = r.refused.iter().cloned().collect();
                        refused_before = refused_now;
                    } else if !r.refused.is_empty() {
                        // A refused change is tried again, and its old route cleared, by a full pass.
                        refused_before.extend(r.refused.iter().cloned());
                        tracing::debug!("full pass: a change was refused");
                        full = true;
                    }
                    if is_full && (applied > 0 || !r.refused.is_empty()) {
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
                    full = true;
                    tokio::time::sleep(config.debounce).await;
                }
            }
        }
    });
    Ok(ReconcilerHandle { stats, task })
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
