//! Between felix and the speaker: felix's prefixes to originate (with the
//! service ranges and communities the BGPConfiguration adds) become speaker
//! commands; the speaker's best paths become felix's learned
//! routes, a batch at a time; and when the speaker says every planned peer
//! has sent its table, felix hears that BGP has converged.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tokio::sync::{mpsc, watch};
use tortie_bgp::packet::{MpNextHop, PathAttrs};
use tortie_bgp::rib::decision::Origination;
use tortie_bgp::rib::table::BestChange;
use tortie_bgp::speaker::{SpeakerCommand, SpeakerEvent};
use tortie_felix::agent::Learned;
use tortie_felix::route::LearnedHops;

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

/// The learned next hops of a best-path change (local paths are felix's
/// own): NEXT_HOP for IPv4, MP_REACH_NLRI's global address for IPv6
/// (RFC 4760 §3, RFC 2545 §3).
fn next_hops(change: &BestChange) -> LearnedHops {
    change
        .paths
        .iter()
        .filter(|(_, p)| p.origination != Origination::Local)
        .filter_map(|(_, p)| match (change.prefix, p.attrs.mp_next_hop) {
            (IpNet::V6(_), Some(MpNextHop::Ipv6 { global, .. })) => Some(IpAddr::V6(global)),
            (IpNet::V6(_), _) => None,
            (IpNet::V4(_), _) => p.attrs.next_hop.map(IpAddr::V4),
        })
        .collect()
}

/// Hands the speaker's news to felix: each batch of best-path changes as
/// one batch of learned routes, and convergence (every planned peer sent
/// its table: the speaker's End-of-RIB rule) as it comes.
pub async fn learned(mut events: mpsc::Receiver<SpeakerEvent>, felix: mpsc::Sender<Learned>) {
    while let Some(event) = events.recv().await {
        let news = match event {
            SpeakerEvent::Best(changes) => Learned::Routes(changes.iter().map(|c| (c.prefix, next_hops(c))).collect()),
            SpeakerEvent::Converged => Learned::Converged,
        };
        if felix.send(news).await.is_err() {
            return;
        }
    }
}
