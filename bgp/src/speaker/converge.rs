//! When the peers' tables are in: the end of a restarted speaker's
//! route-selection deferral (RFC 4724 §4.1) and the node's convergence,
//! both on one rule ([`tables_in`]).

use std::sync::atomic::Ordering;

use super::{Speaker, SpeakerEvent};
use crate::graceful::{PeerState, tables_in};
use crate::session::peer::PeerCommand;

impl Speaker {
    /// Ends the selection deferral when every peer is in (or `why` says the
    /// wait is over anyway): each up peer gets the table and End-of-RIB.
    pub(super) async fn check_deferral(&mut self) {
        if !self.deferral {
            return;
        }
        let peers = self.neighbors.keys().filter(|name| !self.dynamic.contains(*name));
        if tables_in(peers.map(|name| self.peer_state(name)), &self.end_of_rib) {
            self.end_deferral("every peer sent End-of-RIB").await;
        }
    }

    /// Announces convergence once every planned peer has given its table.
    pub(super) async fn check_converged(&mut self) {
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
            let _ = self.best_tx.send(SpeakerEvent::Converged).await;
        }
    }

    /// A configured peer as the End-of-RIB rules see it.
    fn peer_state<'a>(&self, name: &'a str) -> PeerState<'a> {
        let graceful = self.neighbors.get(name).is_some_and(|(_, h)| {
            h.status.borrow().negotiated.as_ref().is_some_and(|n| n.peer_graceful_restart.is_some())
        });
        PeerState { name, up: self.up.contains(name), graceful }
    }

    pub(super) async fn end_deferral(&mut self, why: &str) {
        if !std::mem::take(&mut self.deferral) {
            return;
        }
        self.stats.deferrals_ended.fetch_add(1, Ordering::Relaxed);
        tracing::info!(why, routes = self.rib.best_paths().count(), "route selection deferral over: advertising");
        // The restart is over: a session that comes up later is a normal one.
        for (neighbor, handle) in self.neighbors.values_mut() {
            neighbor.session.local.end_restart();
            let _ = handle.commands.send(PeerCommand::EndRestart).await;
        }
        let up: Vec<String> = self.up.iter().cloned().collect();
        for peer in up {
            self.send_table(&peer, false);
        }
    }
}
