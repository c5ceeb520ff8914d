//! Puts the compiled table into the kernel through `nft -j -f -` (one
//! atomic transaction each time), incrementally when the kernel has the
//! previous version, and checks periodically that nobody changed it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::watch;

use super::ruleset::{Element, Ruleset, TABLE};
use super::{nfnl, nft};

/// `nft` failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// It could not be run.
    #[error("cannot run nft (install the nftables package): {0}")]
    Spawn(#[from] std::io::Error),
    /// It refused the input.
    #[error("nft {args}: {stderr}")]
    Refused {
        /// The arguments.
        args: String,
        /// What nft said.
        stderr: String,
    },
    /// Its output was not the JSON expected.
    #[error("nft printed unreadable JSON: {0}")]
    Output(#[from] serde_json::Error),
}

/// Runs `nft ARGS` with `input` on stdin; returns stdout.
async fn nft(args: &[&str], input: Option<&str>) -> Result<String, NftError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if input.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(NftError::Refused { args: args.join(" "), stderr });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Applies one transaction atomically.
pub async fn apply(tx: &nft::Transaction) -> Result<(), NftError> {
    nft(&["-j", "-f", "-"], Some(&nft::document(tx))).await.map(drop)
}

/// tortie's table as nft lists it (`None` when it does not exist).
pub async fn list() -> Result<Option<Value>, NftError> {
    match nft(&["-j", "list", "table", "inet", TABLE], None).await {
        Ok(out) => Ok(Some(serde_json::from_str(&out)?)),
        Err(NftError::Refused { stderr, .. }) if stderr.contains("No such file or directory") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes tortie's table (nothing else), if it exists.
pub async fn remove() -> Result<(), NftError> {
    match nft(&["delete", "table", "inet", TABLE], None).await {
        Err(NftError::Refused { stderr, .. }) if stderr.contains("No such file or directory") => Ok(()),
        other => other.map(drop),
    }
}

/// Whether a listing of the table still has what `rs` put there: the same
/// chains with the same rules (counted, with their comments, in order), the
/// same set elements and the same map entries. Cheap to evaluate, and the
/// listing is taken only at the periodic check, never after an apply.
fn matches(listing: &Value, rs: &Ruleset) -> bool {
    let objects = listing.get("nftables").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut chains: BTreeMap<&str, Vec<Option<&str>>> = BTreeMap::new();
    let (mut sets, mut maps) = (0, 0);
    for o in objects {
        if let Some(c) = o.get("chain").and_then(|c| c.get("name")).and_then(Value::as_str) {
            chains.entry(c).or_default();
        } else if let Some(r) = o.get("rule") {
            let Some(chain) = r.get("chain").and_then(Value::as_str) else { return false };
            chains.entry(chain).or_default().push(r.get("comment").and_then(Value::as_str));
        } else if let Some(set) = o.get("set") {
            let name = set.get("name").and_then(Value::as_str).unwrap_or_default();
            let Some(want) = rs.sets.get(name) else { return false };
            let listed: Option<BTreeSet<Element>> =
                elements(set).map(|e| element_text(e).and_then(|t| Element::parse(&t, want.kind))).collect();
            if listed.is_none_or(|l| want.elements != l) {
                return false;
            }
            sets += 1;
        } else if let Some(map) = o.get("map") {
            let name = map.get("name").and_then(Value::as_str).unwrap_or_default();
            let listed: BTreeMap<String, String> = elements(map)
                .filter_map(|e| {
                    let key = e.get(0)?.as_str()?.to_string();
                    Some((key, e.get(1)?.get("jump")?.get("target")?.as_str()?.to_string()))
                })
                .collect();
            if rs.maps.get(name).is_none_or(|want| *want != listed) {
                return false;
            }
            maps += 1;
        }
    }
    let same_rules = rs.chains.iter().all(|(name, chain)| {
        chains.get(name.as_str()).is_some_and(|got| {
            got.len() == chain.rules.len() && got.iter().zip(&chain.rules).all(|(c, r)| *c == r.comment.as_deref())
        })
    });
    same_rules && chains.len() == rs.chains.len() && sets == rs.sets.len() && maps == rs.maps.len()
}

/// A listed set element as the compiler writes it: an address or name,
/// or `addr/len` for a network (nft lists those as prefix objects).
fn element_text(e: &Value) -> Option<String> {
    if let Some(s) = e.as_str() {
        return Some(s.to_string());
    }
    let prefix = e.get("prefix")?;
    Some(format!("{}/{}", prefix.get("addr")?.as_str()?, prefix.get("len")?.as_u64()?))
}

/// The `elem` list of a listed set or map (absent when empty).
fn elements(object: &Value) -> impl Iterator<Item = &Value> {
    object.get("elem").and_then(Value::as_array).into_iter().flatten()
}

/// One rule's counters, with the comment that says where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleCounter {
    /// The chain.
    pub chain: String,
    /// The rule's comment.
    pub comment: String,
    /// Packets matched.
    pub packets: u64,
    /// Bytes matched.
    pub bytes: u64,
}

/// The counters of every commented, counted rule in a listing.
pub fn counters(listing: &Value) -> Vec<RuleCounter> {
    let objects = listing.get("nftables").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    objects
        .iter()
        .filter_map(|o| o.get("rule"))
        .filter_map(|r| {
            let comment = r.get("comment")?.as_str()?.to_string();
            let chain = r.get("chain")?.as_str()?.to_string();
            let counter = r.get("expr")?.as_array()?.iter().find_map(|e| e.get("counter"))?;
            let n = |k: &str| counter.get(k).and_then(Value::as_u64).unwrap_or(0);
            Some(RuleCounter { chain, comment, packets: n("packets"), bytes: n("bytes") })
        })
        .collect()
}

/// What the policy data plane has done.
#[derive(Debug, Default)]
pub struct PolicyStats {
    /// Whole-table transactions.
    pub full: AtomicU64,
    /// Incremental transactions.
    pub incremental: AtomicU64,
    /// Transactions that changed only set/map elements.
    pub elements_only: AtomicU64,
    /// Updates of address-set elements written straight to nf_tables
    /// (among `elements_only`; the others went through `nft`).
    pub netlink_writes: AtomicU64,
    /// Repairs after the table was changed outside tortie.
    pub repairs: AtomicU64,
    /// Failed transactions.
    pub failures: AtomicU64,
    /// Duration of the last transaction, in microseconds.
    pub last_apply_us: AtomicU64,
}

/// Keeps the kernel's table equal to the latest compiled one: applies each
/// change (incrementally from what was applied last), and every
/// `check_every` (which may change while it runs) compares the kernel's
/// table with what was applied, rebuilding it if it differs. The receiver
/// turns true once the first table was applied (or failed to be).
pub fn spawn(
    mut desired: watch::Receiver<Arc<Ruleset>>,
    mut check_every: watch::Receiver<Duration>,
) -> (tokio::task::JoinHandle<()>, Arc<PolicyStats>, watch::Receiver<bool>) {
    let stats = Arc::new(PolicyStats::default());
    let st = stats.clone();
    let (first_tx, first_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        // What the kernel has (None: unknown, rebuild).
        let mut applied: Option<Arc<Ruleset>> = None;
        let mut next_check = tokio::time::Instant::now() + *check_every.borrow();
        let mut every_open = true;
        loop {
            let want = desired.borrow_and_update().clone();
            let same = applied.as_ref().is_some_and(|have| Arc::ptr_eq(have, &want) || **have == *want);
            if !same {
                applied = sync(applied, want, &st).await;
            }
            first_tx.send_replace(true);
            tokio::select! {
                changed = desired.changed() => if changed.is_err() { return },
                open = check_every.changed(), if every_open => {
                    every_open = open.is_ok();
                    next_check = tokio::time::Instant::now() + *check_every.borrow();
                }
                () = tokio::time::sleep_until(next_check) => {
                    next_check = tokio::time::Instant::now() + *check_every.borrow();
                    let Some(have) = &applied else { continue };
                    match list().await {
                        Ok(Some(now)) if matches(&now, have) => {}
                        Ok(_) => {
                            tracing::warn!(table = TABLE, "nftables table was changed outside tortie; rebuilding it");
                            st.repairs.fetch_add(1, Ordering::Relaxed);
                            let have = have.clone();
                            applied = sync(None, have, &st).await;
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot list tortie's nftables table"),
                    }
                }
            }
        }
    });
    (task, stats, first_rx)
}

/// Moves the kernel from `have` (None: unknown) to `want`; returns what the
/// kernel then has, or None when it failed (the next change rebuilds).
async fn sync(mut have: Option<Arc<Ruleset>>, want: Arc<Ruleset>, st: &PolicyStats) -> Option<Arc<Ruleset>> {
    let started = Instant::now();
    // Address-set elements only: straight to nf_tables, without nft reading
    // the sets first (it falls back to nft if the kernel says no).
    if let Some(deltas) = have.as_ref().and_then(|h| nft::set_deltas(h, &want)).filter(|d| nfnl::writable(d)) {
        if deltas.is_empty() {
            return Some(want); // nothing the kernel holds differs
        }
        let diffed = started.elapsed();
        match nfnl::apply(TABLE, &deltas) {
            Ok(()) => {
                st.incremental.fetch_add(1, Ordering::Relaxed);
                st.elements_only.fetch_add(1, Ordering::Relaxed);
                st.netlink_writes.fetch_add(1, Ordering::Relaxed);
                st.last_apply_us.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                tracing::debug!(sets = deltas.len(), ?diffed, took = ?started.elapsed(), "set elements written over netlink");
                return Some(want);
            }
            // No answer: whether the kernel took it is unknown, so rebuild.
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                tracing::warn!(error = %e, "no answer to the set-element write; rebuilding the table");
                have = None;
            }
            Err(e) => tracing::warn!(error = %e, "writing set elements over netlink failed; using nft"),
        }
    }
    let incremental = have.as_ref().map(|h| nft::incremental(h, &want));
    let result = match &incremental {
        Some(tx) if tx.is_empty() => Ok(()),
        Some(tx) => match apply(tx).await {
            Ok(()) => {
                st.incremental.fetch_add(1, Ordering::Relaxed);
                if nft::elements_only(tx) {
                    st.elements_only.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "incremental nftables update failed; rebuilding the table");
                full(&want, st).await
            }
        },
        None => full(&want, st).await,
    };
    st.last_apply_us.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    match result {
        Ok(()) => {
            tracing::debug!(chains = want.chains.len(), sets = want.sets.len(), took = ?started.elapsed(), "policy applied");
            Some(want)
        }
        Err(e) => {
            st.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "cannot apply policy to nftables; the previous table stays in force");
            None
        }
    }
}

async fn full(want: &Ruleset, st: &PolicyStats) -> Result<(), NftError> {
    apply(&nft::full(want)).await?;
    st.full.fetch_add(1, Ordering::Relaxed);
    Ok(())
}
