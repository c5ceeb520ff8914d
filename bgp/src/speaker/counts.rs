//! Per-neighbour prefix counts, for `tortie status` and the metrics. What
//! a peer was advertised is not kept (there is no Adj-RIB-Out), so it is
//! counted by running the export over the Loc-RIB, once per update group
//! rather than per peer: the group's members are exported the same paths
//! but each its own, so a member's count is the group's less the paths it
//! sent itself (counted per source in the same walk).
//!
//! A count is redone only when some input that can change it (not a
//! query, nor the end of a batch) arrived since the last one, or an
//! update group has none yet. `tortie status` asks for exact numbers and
//! gets a count made there and then; the metrics and the node's periodic
//! summary take ones up to [`PERIODIC`] old, and the count they start is
//! made a chunk at the end of each batch that has nothing to send, between
//! other inputs (measured: a full table's count in one go held every
//! session's UPDATEs and the scrape itself up for 0.14 s at 200,000
//! prefixes; for a reflector with thousands of clients in one group it
//! was a walk per client). Such a walk sees the table as it moves; the
//! numbers are exact once routes settle.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::PeerCounts;
use super::core::{SpeakerCore, key};
use super::groups::GroupKey;
use super::send::Before;
use crate::rib::table::{PathRef, PeerKey, Walk};

/// How old the advertised counts of periodic askers (metrics, the node's
/// summary) may be while routes change.
pub const PERIODIC: Duration = Duration::from_secs(60);

/// Best paths a count looks at a time with one update group, between
/// other inputs for a periodic asker: ~1–2 ms of the core's time with one
/// prefix per UPDATE (an input that comes meanwhile waits that long), and
/// no copy of a full table for an exact one.
const COUNT_CHUNK: usize = 1024;

/// Best paths a count looks at a time with `groups` update groups (each
/// exports them all): a chunk takes about as long with many.
pub(super) fn chunk_size(groups: usize) -> usize {
    (COUNT_CHUNK / groups.max(1)).max(COUNT_CHUNK / 16)
}

/// What an update group's members are advertised: the paths its export
/// lets through, and how many of them each source sent (a member is not
/// sent its own).
#[derive(Debug, Default, Clone)]
struct GroupCount {
    exported: usize,
    by_source: HashMap<PeerKey, usize>,
}

/// Advertised counts: the last complete ones and the one under way.
#[derive(Debug, Default)]
pub(super) struct Advertised {
    /// When the last complete count began, and how many inputs the core
    /// had handled then.
    counted: Option<(Instant, u64)>,
    groups: HashMap<GroupKey, GroupCount>,
    walk: Option<CountWalk>,
}

/// A count made a chunk per batch: the groups there when it began.
#[derive(Debug)]
struct CountWalk {
    began: (Instant, u64),
    after: Option<Walk>,
    groups: HashMap<GroupKey, GroupCount>,
}

impl SpeakerCore {
    /// Every neighbour's counts at `now`, the advertised ones at most
    /// `max_age` old (see the module documentation).
    pub(super) fn peer_counts(&mut self, now: Instant, max_age: Duration) -> Vec<PeerCounts> {
        let uncounted = self.update_groups.groups.iter().any(|(k, _)| !self.advertised.groups.contains_key(k));
        let due = uncounted
            || match self.advertised.counted {
                None => true,
                Some((at, inputs)) => inputs != self.inputs && now.saturating_duration_since(at) >= max_age,
            };
        if due && max_age.is_zero() {
            self.advertised.walk = Some(self.count_walk(now));
            while self.counting() {
                self.count_chunk();
            }
        } else if due && !self.counting() {
            self.advertised.walk = Some(self.count_walk(now));
        }
        self.neighbors.keys().map(|name| self.counts(name)).collect()
    }

    /// Whether a count is under way (the core's task ends batches for it
    /// without waiting for inputs).
    pub(crate) fn counting(&self) -> bool {
        self.advertised.walk.is_some()
    }

    fn count_walk(&self, now: Instant) -> CountWalk {
        let groups = self.update_groups.groups.iter().map(|(k, _)| (k.clone(), GroupCount::default())).collect();
        CountWalk { began: (now, self.inputs), after: None, groups }
    }

    /// The count under way, a chunk further; done, it replaces the last.
    pub(super) fn count_chunk(&mut self) {
        let Some(mut walk) = self.advertised.walk.take() else { return };
        if walk.after.is_some_and(|after| !self.rib.resumes(after)) {
            // It would count prefixes twice: over again.
            walk = CountWalk { began: walk.began, ..self.count_walk(walk.began.0) };
        }
        let size = chunk_size(self.update_groups.groups.len());
        let chunk: Vec<(Walk, IpNet, PathRef<'_>)> = self.rib.best_paths_after(walk.after).take(size).collect();
        walk.after = chunk.last().map(|(at, ..)| *at);
        // The chunk's paths by where they came from (their places in it).
        let mut by_source: HashMap<&PeerKey, Vec<usize>> = HashMap::new();
        for (i, (_, _, best)) in chunk.iter().enumerate() {
            by_source.entry(best.from).or_default().push(i);
        }
        for (group, members) in &self.update_groups.groups {
            let (Some(count), Some(first)) = (walk.groups.get_mut(group), members.first()) else { continue };
            for (source, paths) in &by_source {
                let items = paths.iter().map(|&i| (chunk[i].1, Some(chunk[i].2), Before::Nothing));
                let exported = self.exports_as(first, None, items).announced();
                count.exported += exported;
                *count.by_source.entry((*source).clone()).or_default() += exported;
            }
        }
        if chunk.len() < size {
            // Done: the groups that went meanwhile go from the counts too.
            walk.groups.retain(|k, _| self.update_groups.has(k));
            self.advertised.counted = Some(walk.began);
            self.advertised.groups = walk.groups;
        } else {
            self.advertised.walk = Some(walk);
        }
    }

    /// What `name` is advertised as of the last count: its group's paths
    /// but its own (a peer that is down holds nothing from us).
    fn advertised(&self, name: &str) -> usize {
        let count = self.update_groups.group_of(name).filter(|_| self.up.contains(name));
        count
            .and_then(|g| self.advertised.groups.get(g))
            .map_or(0, |g| g.exported - g.by_source.get(&key(name)).copied().unwrap_or(0))
    }

    fn counts(&self, name: &str) -> PeerCounts {
        let (remote, asn, revised, ignored) =
            self.neighbors.get(name).map_or((SocketAddr::from(([0, 0, 0, 0], 0)), 0, [0; 2], 0), |s| {
                (s.neighbor.session.remote, s.neighbor.session.local.peer_asn, s.revised, s.ignored)
            });
        PeerCounts {
            name: name.to_string(),
            remote,
            asn,
            dynamic: self.dynamic.contains(name),
            received: self.rib.paths_from(&key(name)),
            advertised: self.advertised(name),
            treated_as_withdraw: revised[0],
            attributes_discarded: revised[1],
            next_hop_ignored: ignored,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::core::Input;
    use super::super::{Query, SpeakerCommand};
    use super::*;

    #[test]
    fn neither_a_query_nor_the_end_of_a_batch_can_change_a_count() {
        let mut core = SpeakerCore::new("192.0.2.254".parse().unwrap(), 1, Arc::default());
        let query = || {
            let (reply, _) = tokio::sync::oneshot::channel();
            Input::Command(SpeakerCommand::Query(Query::Peers { now: Instant::now(), max_age: Duration::ZERO, reply }))
        };
        core.handle(query());
        core.handle(Input::EndOfBatch);
        assert_eq!(core.inputs, 0);
        core.handle(Input::Command(SpeakerCommand::RemoveNeighbor("gone".into())));
        assert_eq!(core.inputs, 1, "anything else may");
    }
}
