//! When the peers' tables are in: the end of a restarted speaker's
//! route-selection deferral (RFC 4724 §4.1) and the node's convergence,
//! both on one rule ([`tables_in`]).

use std::sync::atomic::Ordering;

use super::SpeakerEvent;
use super::core::{Output, SpeakerCore};
use crate::graceful::{PeerState, tables_in};
use crate::session::peer::PeerCommand;

impl SpeakerCore {
    /// Ends the selection deferral when every peer is in (or `why` says the
    /// wait is over anyway): each up peer gets the table and End-of-RIB.
    pub(super) fn check_deferral(&mut self) {
        if !self.deferral {
            return;
        }
        let peers = self.neighbors.keys().filter(|name| !self.dynamic.contains(*name));
        if tables_in(peers.map(|name| self.peer_state(name)), &self.end_of_rib) {
            self.end_deferral("every peer sent End-of-RIB");
        }
    }

    /// Announces convergence once every planned peer has given its table.
    pub(super) fn check_converged(&mut self) {
        if self.converged {
            return;
        }
        let Some(planned) = &self.planned else { return };
        if tables_in(planned.iter().map(|name| self.peer_state(name)), &self.end_of_rib) {
            self.converged = true;
            tracing::info!(
                peers = planned.len(),
                routes = self.rib.len(),
                "BGP converged: every planned peer sent its table"
            );
            self.emit(Output::Event(SpeakerEvent::Converged));
        }
    }

    /// A configured peer as the End-of-RIB rules see it.
    fn peer_state<'a>(&self, name: &'a str) -> PeerState<'a> {
        let graceful = self.negotiated(name).is_some_and(|n| n.peer_graceful_restart.is_some());
        PeerState { name, up: self.up.contains(name), graceful }
    }

    pub(super) fn end_deferral(&mut self, why: &str) {
        if !std::mem::take(&mut self.deferral) {
            return;
        }
        self.stats.deferrals_ended.fetch_add(1, Ordering::Relaxed);
        tracing::info!(why, routes = self.rib.best_paths().count(), "route selection deferral over: advertising");
        // The restart is over: a session that comes up later is a normal one.
        let mut names = Vec::with_capacity(self.neighbors.len());
        for (name, session) in &mut self.neighbors {
            session.neighbor.session.local.end_restart();
            names.push(name.clone());
        }
        names.sort_unstable();
        for name in names {
            self.tell(&name, PeerCommand::EndRestart);
        }
        let up: Vec<String> = self.up.iter().cloned().collect();
        for peer in up {
            self.send_table(&peer, false);
        }
    }
}
