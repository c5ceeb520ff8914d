//! Stale routes: a gracefully restarting peer's routes are kept, stale,
//! until it re-announces them by End-of-RIB or its restart time ends (RFC
//! 4724 §4.2), then, with long-lived graceful restart, for the long-lived
//! stale time as least preferred, tagged LLGR_STALE (RFC 9494 §4.2); a peer
//! doing an enhanced route refresh resends everything between BoRR and
//! EoRR and what it did not resend is gone (RFC 7313 §4). All end in the
//! same sweep. Also the answer to a refresh request.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ipnet::IpNet;

use super::core::{Output, SpeakerCore, Timer, key};
use crate::graceful::{Phase, Retention};
use crate::packet::{Community, Family, Message, PathAttrs, RefreshSubtype, RouteRefresh};
use crate::rib::decision::Path;
use crate::rib::table::BestChange;

impl SpeakerCore {
    /// The session to `peer` dropped and it can restart gracefully: its
    /// routes stay, stale, for the restart time, then for the long-lived
    /// stale time if there is one.
    pub(super) fn peer_restarting(&mut self, peer: &str, retention: Retention) {
        self.set_down(peer);
        let epoch = self.mark_stale(peer);
        let Some(stale) = self.stale.get_mut(peer) else { return };
        stale.long_lived = retention.long_lived;
        let routes = stale.prefixes.len();
        let Retention { restart, long_lived } = retention;
        tracing::info!(peer, routes, ?restart, ?long_lived, "peer restarting: its routes are kept as stale");
        if restart.is_zero() {
            // RFC 9494 §4.2: no restart time, straight to long-lived.
            self.begin_long_lived(peer);
        } else {
            self.emit(Output::Timer { after: restart, timer: Timer::StaleTimeout { peer: peer.to_string(), epoch } });
        }
    }

    /// A stale timer of `peer` is due: the end of the restart time goes on
    /// to the long-lived stale period if there is one and the peer is still
    /// away; otherwise its stale routes go.
    pub(super) fn stale_timeout(&mut self, peer: &str, epoch: u64) {
        let Some(stale) = self.stale.get(peer).filter(|s| s.epoch == epoch) else { return };
        if stale.phase == Phase::Restart && !stale.long_lived.is_zero() && !self.up.contains(peer) {
            self.begin_long_lived(peer);
            return;
        }
        tracing::info!(peer, phase = ?stale.phase, "stale time over: stale routes removed");
        self.sweep_stale(peer);
    }

    /// RFC 9494 §4.2: the restart time is over and `peer` is still away.
    /// Its stale routes marked NO_LLGR go; the rest stay, with LLGR_STALE
    /// added (least preferred from now on, `decision.rs`, and sent only to
    /// peers that understand it, `export.rs`), for the long-lived stale time.
    fn begin_long_lived(&mut self, peer: &str) {
        let epoch = self.mark_epoch(peer);
        let Some(stale) = self.stale.get_mut(peer) else { return };
        let after = std::mem::take(&mut stale.long_lived);
        stale.phase = Phase::LongLived;
        let mut prefixes: Vec<IpNet> = stale.prefixes.iter().copied().collect();
        prefixes.sort_unstable();
        let from = key(peer);
        // The peer's routes share few attribute sets: each is tagged once.
        let mut tagged: HashMap<*const PathAttrs, Option<Arc<PathAttrs>>> = HashMap::new();
        let (mut changes, mut dropped) = (Vec::new(), HashSet::new());
        for prefix in prefixes {
            let Some(path) = self.rib.path_from(&from, &prefix) else { continue };
            let attrs = tagged.entry(Arc::as_ptr(&path.attrs)).or_insert_with(|| long_lived_stale(&path.attrs));
            if let Some(kept) = self.received.get_mut(peer) {
                // Its path changes: what was received is kept aside first.
                kept.keep(prefix, &path.attrs);
            }
            match attrs {
                Some(attrs) => changes.extend(self.rib.announce(&from, prefix, Path { attrs: attrs.clone(), ..path })),
                None => {
                    dropped.insert(prefix);
                }
            }
        }
        tracing::info!(
            peer,
            kept = changes.len(),
            no_llgr = dropped.len(),
            ?after,
            "restart time over: routes kept as long-lived stale (RFC 9494), NO_LLGR routes removed"
        );
        self.changed(changes);
        if let Some(stale) = self.stale.get_mut(peer) {
            stale.prefixes.retain(|p| !dropped.contains(p));
        }
        self.withdraw_stale(peer, dropped);
        self.emit(Output::Timer { after, timer: Timer::StaleTimeout { peer: peer.to_string(), epoch } });
    }

    /// Every route from `peer` is stale from now on; returns the new epoch.
    fn mark_stale(&mut self, peer: &str) -> u64 {
        let mut prefixes: HashSet<IpNet> = self.rib.prefixes_from(&key(peer)).into_iter().collect();
        // RFC 4724 §4.2: the peer's routes, those the import policy kept out
        // (kept for soft reconfiguration) too: unless the peer sends one
        // again, a sweep takes it away, and a later policy cannot bring it back.
        if let Some(kept) = self.received.get(peer) {
            prefixes.extend(kept.prefixes());
        }
        let stale = self.stale.entry(peer.to_string()).or_default();
        (stale.prefixes, stale.phase, stale.long_lived) = (prefixes, Phase::Restart, Default::default());
        self.mark_epoch(peer)
    }

    /// A new epoch for `peer`'s stale routes (unique in this speaker's
    /// life: a timer of an earlier phase or restart, even one whose stale
    /// state is gone, never matches a later one).
    fn mark_epoch(&mut self, peer: &str) -> u64 {
        self.stale_epochs += 1;
        let epoch = self.stale_epochs;
        if let Some(stale) = self.stale.get_mut(peer) {
            stale.epoch = epoch;
        }
        epoch
    }

    /// A ROUTE-REFRESH from `peer`.
    pub(super) fn route_refresh(&mut self, peer: &str, refresh: RouteRefresh) {
        let family = refresh.family;
        if !self.negotiated(peer).is_some_and(|n| n.families.contains(&family)) {
            // RFC 2918 §4: a family the session does not carry is ignored.
            tracing::warn!(peer, ?family, "ROUTE-REFRESH for a family the session does not carry: ignored");
            return;
        }
        match refresh.subtype {
            RefreshSubtype::Request => self.answer_refresh(peer, family),
            RefreshSubtype::BeginningOfRefresh => {
                self.mark_stale(peer);
            }
            RefreshSubtype::EndOfRefresh => self.sweep_stale(peer),
            RefreshSubtype::Reserved(_) => {}
        }
    }

    /// RFC 2918 / RFC 7313: the whole table again, framed by BoRR and EoRR
    /// when enhanced route refresh was negotiated.
    fn answer_refresh(&mut self, peer: &str, family: Family) {
        let enhanced = self.negotiated(peer).is_some_and(|n| n.enhanced_route_refresh);
        let marker = |subtype| Message::RouteRefresh(RouteRefresh { family, subtype });
        // A table still on its way answers this request too: it ends with
        // every prefix as it stands (a peer asking in a loop while it does
        // not read cannot pile tables up). With enhanced refresh the answer
        // is framed by BoRR and EoRR (RFC 7313 §4): a table not begun yet
        // (the one a session that just came up is owed, or a refresh's
        // queued already) is framed; one under way cannot be, and a framed
        // one goes after it.
        if let Some(backlog) = self.backlogs.get_mut(peer).filter(|b| b.owes_table()) {
            let (begin, end) = (marker(RefreshSubtype::BeginningOfRefresh), marker(RefreshSubtype::EndOfRefresh));
            if !enhanced || backlog.frame_unbegun_table(begin, end) {
                return;
            }
        }
        if enhanced {
            self.send_message(peer, marker(RefreshSubtype::BeginningOfRefresh));
        }
        self.send_table(peer, false);
        if enhanced {
            self.send_message(peer, marker(RefreshSubtype::EndOfRefresh));
        }
    }

    /// Removes a restarting peer's routes of `family` it did not refresh
    /// (its End-of-RIB for that family came); the rest stay stale.
    pub(super) fn sweep_stale_family(&mut self, peer: &str, family: Family) {
        let Some(stale) = self.stale.get_mut(peer) else { return };
        let v4 = family == Family::IPV4_UNICAST;
        let (swept, rest): (HashSet<IpNet>, HashSet<IpNet>) =
            std::mem::take(&mut stale.prefixes).into_iter().partition(|p| p.addr().is_ipv4() == v4);
        stale.prefixes = rest;
        if stale.prefixes.is_empty() {
            self.stale.remove(peer);
        }
        self.withdraw_stale(peer, swept);
    }

    /// Removes a restarting (or refreshing) peer's routes it did not refresh.
    pub(super) fn sweep_stale(&mut self, peer: &str) {
        let Some(stale) = self.stale.remove(peer) else { return };
        self.withdraw_stale(peer, stale.prefixes);
    }

    fn withdraw_stale(&mut self, peer: &str, prefixes: HashSet<IpNet>) {
        if let Some(kept) = self.received.get_mut(peer) {
            kept.forget(&prefixes);
        }
        let from = key(peer);
        // In prefix order, as a table goes out (and the same every time).
        let mut prefixes: Vec<IpNet> = prefixes.into_iter().collect();
        prefixes.sort_unstable();
        let changes: Vec<BestChange> = prefixes.into_iter().filter_map(|p| self.rib.withdraw(&from, p)).collect();
        self.changed(changes);
    }
}

/// The attributes of a route kept past the restart time: LLGR_STALE added,
/// or `None` when the route is marked NO_LLGR and must go (RFC 9494 §4.2).
pub(super) fn long_lived_stale(attrs: &Arc<PathAttrs>) -> Option<Arc<PathAttrs>> {
    if attrs.communities.contains(&Community::NO_LLGR) {
        return None;
    }
    if attrs.communities.contains(&Community::LLGR_STALE) {
        return Some(attrs.clone());
    }
    let mut tagged = (**attrs).clone();
    tagged.communities.extend([Community::LLGR_STALE]);
    Some(Arc::new(tagged))
}
