//! Stale routes: a gracefully restarting peer's routes are kept, stale,
//! until it re-announces them by End-of-RIB or its restart time ends (RFC
//! 4724 §4.2); a peer doing an enhanced route refresh resends everything
//! between BoRR and EoRR and what it did not resend is gone (RFC 7313 §4).
//! Both end in the same sweep. Also the answer to a refresh request.

use std::collections::HashSet;
use std::time::Duration;

use ipnet::IpNet;

use super::core::{Output, SpeakerCore, Timer, key};
use crate::packet::{Family, Message, RefreshSubtype, RouteRefresh};
use crate::rib::table::BestChange;

impl SpeakerCore {
    /// The session to `peer` dropped and it can restart gracefully: its
    /// routes stay, stale, for `restart_time` at most.
    pub(super) fn peer_restarting(&mut self, peer: &str, restart_time: Duration) {
        self.set_down(peer);
        let epoch = self.mark_stale(peer);
        let routes = self.stale.get(peer).map_or(0, |s| s.prefixes.len());
        tracing::info!(peer, routes, ?restart_time, "peer restarting: its routes are kept as stale");
        self.emit(Output::Timer { after: restart_time, timer: Timer::StaleTimeout { peer: peer.to_string(), epoch } });
    }

    /// Every route from `peer` is stale from now on; returns the new epoch
    /// (unique in this speaker's life: a timer of an earlier restart, even
    /// one whose stale state is gone, never matches a later one).
    fn mark_stale(&mut self, peer: &str) -> u64 {
        self.stale_epochs += 1;
        let stale = self.stale.entry(peer.to_string()).or_default();
        stale.prefixes = self.rib.prefixes_from(&key(peer)).into_iter().collect();
        stale.epoch = self.stale_epochs;
        stale.epoch
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
        // A table still on its way answers this request too: it ends with
        // every prefix as it stands (a peer asking in a loop while it does
        // not read cannot pile tables up).
        if self.backlogs.get(peer).is_some_and(|b| b.owes_table()) {
            return;
        }
        let enhanced = self.negotiated(peer).is_some_and(|n| n.enhanced_route_refresh);
        let marker = |subtype| Message::RouteRefresh(RouteRefresh { family, subtype });
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
            kept.retain(|p, _| !prefixes.contains(p));
        }
        let from = key(peer);
        // In prefix order, as a table goes out (and the same every time).
        let mut prefixes: Vec<IpNet> = prefixes.into_iter().collect();
        prefixes.sort_unstable();
        let changes: Vec<BestChange> = prefixes.into_iter().filter_map(|p| self.rib.withdraw(&from, p)).collect();
        self.changed(changes);
    }
}
