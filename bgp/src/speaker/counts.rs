//! Per-neighbour prefix counts, for `tortie status` and the metrics. What
//! a peer was advertised is not kept (there is no Adj-RIB-Out), so it is
//! counted by running the peer's export over the Loc-RIB: tens of
//! milliseconds of the core's time per peer for a full table. A count is
//! therefore redone only when some input that can change it (not a query,
//! nor the end of a batch) arrived since the last one, and only if the
//! last is older than the asker allows: `tortie status` asks
//! for exact numbers, while the metrics and the node's periodic summary
//! take ones up to [`PERIODIC`] old, so a scrape or a summary every few
//! seconds does not hold the core up a full table's count each time (the
//! numbers are exact once routes settle). A peer that came up since the
//! last count is counted on its own, at once, while that stays within
//! [`NEW_PEERS_BUDGET`] for a periodic asker: a reflector whose clients come
//! up by the thousand would otherwise export its whole table once per new
//! client per summary (measured: half its CPU at 5,000 clients); past the
//! budget, a new peer shows what it had been advertised at the last count
//! (nothing) until a later ask.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::PeerCounts;
use super::core::{SpeakerCore, key};
use super::send::Before;
use crate::rib::decision::Path;
use crate::rib::table::PeerKey;

/// How old the advertised counts of periodic askers (metrics, the node's
/// summary) may be while routes change.
pub const PERIODIC: Duration = Duration::from_secs(60);

/// Best paths a periodic ask may look at to count peers that came up since
/// the last count (an exact ask counts them all).
pub const NEW_PEERS_BUDGET: usize = 1_000_000;

/// Best paths an advertised count looks at a time (a count must not copy
/// a full table).
const COUNT_CHUNK: usize = 4096;

/// The last advertised counts.
#[derive(Debug, Default)]
pub(super) struct Advertised {
    /// When they were counted, and how many inputs the core had handled then.
    counted: Option<(Instant, u64)>,
    by_peer: HashMap<String, usize>,
}

impl Advertised {
    /// A peer's count goes with its session (the next one is counted afresh).
    pub(super) fn forget(&mut self, name: &str) {
        self.by_peer.remove(name);
    }
}

/// How many of `new` peers that came up since the last count an ask counts:
/// all for an exact ask, else as many as [`NEW_PEERS_BUDGET`] best paths
/// allow with a table of `table`.
fn new_to_count(new: usize, table: usize, max_age: Duration) -> usize {
    if max_age.is_zero() { new } else { new.min(NEW_PEERS_BUDGET / table.max(1)) }
}

impl SpeakerCore {
    /// Every neighbour's counts at `now`, the advertised ones at most
    /// `max_age` old (see the module documentation).
    pub(super) fn peer_counts(&mut self, now: Instant, max_age: Duration) -> Vec<PeerCounts> {
        let due = match self.advertised.counted {
            None => true,
            Some((at, inputs)) => inputs != self.inputs && now.saturating_duration_since(at) >= max_age,
        };
        if due {
            let by_peer = self.up.iter().map(|name| (name.clone(), self.count_advertised(name))).collect();
            self.advertised = Advertised { counted: Some((now, self.inputs)), by_peer };
        }
        // A peer that came up since is counted on its own (within the budget).
        let mut new: Vec<String> =
            self.up.iter().filter(|p| !self.advertised.by_peer.contains_key(*p)).cloned().collect();
        new.sort_unstable();
        let counted = new_to_count(new.len(), self.rib.len(), max_age);
        for name in new.into_iter().take(counted) {
            let count = self.count_advertised(&name);
            self.advertised.by_peer.insert(name, count);
        }
        self.neighbors.keys().map(|name| self.counts(name)).collect()
    }

    /// The prefixes `name` is advertised now, counted (a walk of the whole table).
    fn count_advertised(&self, name: &str) -> usize {
        let mut advertised = 0;
        if self.up.contains(name) {
            let mut all = self.rib.best_paths();
            loop {
                let chunk: Vec<(IpNet, (PeerKey, Path))> = all.by_ref().take(COUNT_CHUNK).collect();
                if chunk.is_empty() {
                    break;
                }
                advertised +=
                    self.exports(name, chunk.iter().map(|(p, best)| (*p, Some(best), Before::Nothing))).announced();
            }
        }
        advertised
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
            // A peer that is down holds nothing from us (its count went with its session).
            advertised: self.advertised.by_peer.get(name).copied().unwrap_or(0),
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
    fn new_peers_are_counted_at_once_within_the_budget_or_when_exact_numbers_are_asked() {
        assert_eq!(new_to_count(3, 10, PERIODIC), 3, "a node's few peers: all at once");
        assert_eq!(new_to_count(5000, 20_000, PERIODIC), 50, "a reflector's clients: a budget's worth per ask");
        assert_eq!(new_to_count(1, 2_000_000, PERIODIC), 0, "a table past the budget waits for the periodic count");
        assert_eq!(new_to_count(5000, 20_000, Duration::ZERO), 5000, "tortie status: every one");
        assert_eq!(new_to_count(2, 0, PERIODIC), 2);
    }

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
