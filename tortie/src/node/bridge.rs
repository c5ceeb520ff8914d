//! Between felix and the speaker: felix's prefixes to originate (with the
//! service ranges and communities the BGPConfiguration adds) become speaker
//! commands; the speaker's best paths become felix's learned
//! routes, a batch at a time; and when the speaker says every planned peer
//! has sent its table, felix hears that BGP has converged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ipnet::IpNet;
use tokio::sync::{mpsc, watch};
use tortie_bgp::packet::PathAttrs;
use tortie_bgp::speaker::{SpeakerCommand, SpeakerEvent};
use tortie_felix::agent::Learned;

use tortie_peering::Advertise;

/// Originates what felix asks for and what the BGPConfiguration adds,
/// re-originates a prefix whose attributes changed, and withdraws what is
/// no longer wanted. The first set is handed to the speaker before this
/// returns — so before any peer is added: a restarted speaker's first
/// table and End-of-RIB hold this node's own blocks, and its peers sweep
/// none of them (RFC 4724 §4.1) — then a task follows the changes.
pub async fn originate(
    mut felix: watch::Receiver<BTreeSet<IpNet>>,
    mut config: watch::Receiver<Arc<Advertise>>,
    speaker: mpsc::Sender<SpeakerCommand>,
) -> tokio::task::JoinHandle<()> {
    let mut current: BTreeMap<IpNet, PathAttrs> = BTreeMap::new();
    let mut running = sync(&mut current, &mut felix, &mut config, &speaker).await;
    tokio::spawn(async move {
        while running {
            tokio::select! {
                r = felix.changed() => if r.is_err() { return },
                r = config.changed() => if r.is_err() { return },
            }
            running = sync(&mut current, &mut felix, &mut config, &speaker).await;
        }
    })
}

/// Brings the speaker's originations from `current` to what felix and the
/// configuration say now; false once the speaker is gone.
async fn sync(
    current: &mut BTreeMap<IpNet, PathAttrs>,
    felix: &mut watch::Receiver<BTreeSet<IpNet>>,
    config: &mut watch::Receiver<Arc<Advertise>>,
    speaker: &mpsc::Sender<SpeakerCommand>,
) -> bool {
    let next = config.borrow_and_update().originations(&felix.borrow_and_update());
    for gone in current.keys().filter(|p| !next.contains_key(p)) {
        if speaker.send(SpeakerCommand::Withdraw(*gone)).await.is_err() {
            return false;
        }
    }
    for (prefix, attrs) in next.iter().filter(|(p, a)| current.get(p) != Some(a)) {
        if speaker.send(SpeakerCommand::Originate(*prefix, attrs.clone())).await.is_err() {
            return false;
        }
    }
    *current = next;
    true
}

/// Hands the speaker's news to felix: each chunk of best-path changes as
/// one batch of learned routes, in order, and convergence (every planned peer sent
/// its table: the speaker's End-of-RIB rule) as it comes.
pub async fn learned(mut events: mpsc::Receiver<SpeakerEvent>, felix: mpsc::Sender<Learned>) {
    while let Some(event) = events.recv().await {
        let news = match event {
            SpeakerEvent::Best(routes) => Learned::Routes(routes),
            SpeakerEvent::Converged => Learned::Converged,
        };
        if felix.send(news).await.is_err() {
            return;
        }
    }
}
