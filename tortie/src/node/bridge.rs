//! Between felix and the speaker: felix's prefixes to originate become
//! speaker commands; the speaker's best paths become felix's learned
//! routes; and once every session has come up and had time to send its
//! table, felix hears that BGP has converged.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::{mpsc, watch};
use tortie_bgp::packet::PathAttrs;
use tortie_bgp::rib::decision::Origination;
use tortie_bgp::rib::table::BestChange;
use tortie_bgp::session::State;
use tortie_bgp::session::peer::PeerStatus;
use tortie_bgp::speaker::SpeakerCommand;
use tortie_felix::agent::Learned;

/// How long after the last session came up the tables are taken as sent.
const SETTLE: Duration = Duration::from_secs(3);

/// Originates what felix asks for, and withdraws what it no longer does.
pub async fn originate(mut wanted: watch::Receiver<BTreeSet<IpNet>>, speaker: mpsc::Sender<SpeakerCommand>) {
    let mut current = BTreeSet::new();
    loop {
        let next = wanted.borrow_and_update().clone();
        for gone in current.difference(&next) {
            if speaker.send(SpeakerCommand::Withdraw(*gone)).await.is_err() {
                return;
            }
        }
        for new in next.difference(&current) {
            if speaker.send(SpeakerCommand::Originate(*new, PathAttrs::default())).await.is_err() {
                return;
            }
        }
        current = next;
        if wanted.changed().await.is_err() {
            return;
        }
    }
}

/// The learned next hops of a best-path change (local paths are felix's own).
fn next_hops(change: &BestChange) -> Vec<IpAddr> {
    change
        .paths
        .iter()
        .filter(|(_, p)| p.origination != Origination::Local)
        .filter_map(|(_, p)| p.attrs.next_hop.map(IpAddr::V4))
        .collect()
}

/// Hands the speaker's best paths to felix, a batch at a time.
pub async fn learned(mut best: mpsc::Receiver<Vec<BestChange>>, felix: mpsc::Sender<Learned>) {
    while let Some(changes) = best.recv().await {
        let routes = changes.iter().map(|c| (c.prefix, next_hops(c))).collect();
        if felix.send(Learned::Routes(routes)).await.is_err() {
            return;
        }
    }
}

/// Tells felix BGP has converged: the peers planned (`None` until the
/// first plan) all Established, or none planned, and `SETTLE` passed since.
pub async fn converged(
    planned: watch::Receiver<Option<Vec<String>>>,
    statuses: Arc<Mutex<HashMap<String, watch::Receiver<PeerStatus>>>>,
    felix: mpsc::Sender<Learned>,
) {
    loop {
        let all_up = {
            let names = planned.borrow().clone();
            let statuses = statuses.lock().unwrap_or_else(|e| e.into_inner());
            names.is_some_and(|names| {
                names.iter().all(|n| statuses.get(n).is_some_and(|s| s.borrow().state == State::Established))
            })
        };
        if all_up {
            tokio::time::sleep(SETTLE).await;
            let _ = felix.send(Learned::Converged).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
