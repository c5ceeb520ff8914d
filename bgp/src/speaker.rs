//! The speaker: one task that owns the Loc-RIB, runs the peers' session
//! tasks, learns their routes, and sends each up peer the best paths its
//! export rules allow — the whole table when it comes up, then changes.
//! Prefixes sharing an attribute set go out together in one UPDATE
//! (split into as many messages as the size limit needs).
//!
//! ```text
//!  SpeakerCommand ──▶ ┌── speaker task ──┐ ──▶ PeerCommand::Send(UPDATE) ──▶ peer tasks
//!  PeerEvent      ──▶ │ LocRib + exports │ ──▶ BestChange (for felix)
//!                     └──────────────────┘
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tokio::sync::mpsc;

use crate::packet::{Family, Message, Nlri, PathAttrs, Update};
use crate::rib::decision::{Origination, Path};
use crate::rib::export::{ExportPeer, export};
use crate::rib::policy::{PeerType, Policy};
use crate::rib::table::{BestChange, LocRib, PeerKey};
use crate::session::peer::{self, PeerCommand, PeerConfig, PeerEvent, PeerHandle};

/// A neighbour: its session and its export side.
#[derive(Debug, Clone)]
pub struct Neighbor {
    /// Session configuration (its `name` identifies the peer).
    pub session: PeerConfig,
    /// Export rules towards it.
    pub export: ExportPeer,
    /// Import policy (RFC 8212: without one, nothing is imported from an eBGP peer).
    pub import_policy: Option<Policy>,
    /// Export policy (RFC 8212: without one, nothing is exported to an eBGP peer).
    pub export_policy: Option<Policy>,
}

/// What the speaker is told to do.
#[derive(Debug)]
pub enum SpeakerCommand {
    /// Add a neighbour and start its session.
    AddNeighbor(Box<Neighbor>),
    /// Originate a prefix with these attributes (ORIGIN and AS_PATH are filled in if absent).
    Originate(IpNet, PathAttrs),
    /// Stop originating a prefix.
    Withdraw(IpNet),
}

/// Handles to a running speaker.
pub struct SpeakerHandle {
    /// Commands (bounded).
    pub commands: mpsc::Sender<SpeakerCommand>,
    /// The peers' session handles, by name, for status.
    pub peers: Arc<std::sync::Mutex<HashMap<String, tokio::sync::watch::Receiver<peer::PeerStatus>>>>,
}

/// Channel sizes: commands, peer events.
const BUFFER: usize = 1024;

struct Up {
    neighbor: Neighbor,
}

struct Speaker {
    rib: LocRib,
    neighbors: HashMap<String, (Neighbor, PeerHandle)>,
    up: HashMap<String, Up>,
    events_tx: mpsc::Sender<PeerEvent>,
    best_tx: mpsc::Sender<BestChange>,
    statuses: Arc<std::sync::Mutex<HashMap<String, tokio::sync::watch::Receiver<peer::PeerStatus>>>>,
    router_id: std::net::Ipv4Addr,
}

/// Starts the speaker; best-path changes go to `best` (felix installs them).
pub fn spawn(router_id: std::net::Ipv4Addr, max_paths: usize, best: mpsc::Sender<BestChange>) -> SpeakerHandle {
    let (commands, mut commands_rx) = mpsc::channel(BUFFER);
    let (events_tx, mut events_rx) = mpsc::channel(BUFFER);
    let statuses = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let mut speaker = Speaker {
        rib: LocRib::new(max_paths),
        neighbors: HashMap::new(),
        up: HashMap::new(),
        events_tx,
        best_tx: best,
        statuses: statuses.clone(),
        router_id,
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                cmd = commands_rx.recv() => match cmd {
                    Some(cmd) => speaker.command(cmd).await,
                    None => return,
                },
                Some(event) = events_rx.recv() => speaker.peer_event(event).await,
            }
        }
    });
    SpeakerHandle { commands, peers: statuses }
}

impl Speaker {
    async fn command(&mut self, cmd: SpeakerCommand) {
        match cmd {
            SpeakerCommand::AddNeighbor(n) => {
                let handle = peer::spawn(n.session.clone(), self.events_tx.clone());
                let _ = handle.commands.send(PeerCommand::Start).await;
                self.statuses
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(n.session.name.clone(), handle.status.clone());
                self.neighbors.insert(n.session.name.clone(), (*n, handle));
            }
            SpeakerCommand::Originate(prefix, mut attrs) => {
                attrs.origin.get_or_insert(crate::packet::Origin::Igp);
                attrs.as_path.get_or_insert_with(Default::default);
                let path = Path {
                    attrs: Arc::new(attrs),
                    origination: Origination::Local,
                    peer_addr: IpAddr::from([0, 0, 0, 0]),
                    peer_id: self.router_id,
                    reachable: true,
                };
                let change = self.rib.announce(&None, prefix, path);
                self.propagate(change.into_iter().collect()).await;
            }
            SpeakerCommand::Withdraw(prefix) => {
                let change = self.rib.withdraw(&None, prefix);
                self.propagate(change.into_iter().collect()).await;
            }
        }
    }

    async fn peer_event(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Up { peer, .. } => {
                let Some((neighbor, _)) = self.neighbors.get(&peer) else { return };
                self.up.insert(peer.clone(), Up { neighbor: neighbor.clone() });
                // The whole table, then End-of-RIB (RFC 4724 §2).
                let all: Vec<(IpNet, (PeerKey, Path))> = self.rib.best_paths().map(|(p, b)| (*p, b.clone())).collect();
                let mut updates = Vec::new();
                if let Some(up) = self.up.get(&peer) {
                    let mut groups: HashMap<Arc<PathAttrs>, Vec<Nlri>> = HashMap::new();
                    for (prefix, (from, path)) in &all {
                        if from.as_deref() == Some(peer.as_str()) {
                            continue;
                        }
                        if let Ok(attrs) = export(prefix, path, &up.neighbor.export, up.neighbor.export_policy.as_ref())
                        {
                            groups.entry(Arc::new(attrs)).or_default().push(Nlri::new(*prefix));
                        }
                    }
                    updates.extend(groups.into_iter().map(|(attrs, nlri)| Update::announce(attrs, nlri)));
                }
                updates.push(Update::end_of_rib(Family::IPV4_UNICAST));
                for u in updates {
                    self.send(&peer, u).await;
                }
            }
            PeerEvent::Down { peer, .. } => {
                self.up.remove(&peer);
                let changes = self.rib.peer_down(&Some(Arc::from(peer.as_str())));
                self.propagate(changes).await;
            }
            PeerEvent::Update { peer, update } => {
                let changes = self.learn(&peer, *update);
                self.propagate(changes).await;
            }
            PeerEvent::RouteRefresh { .. } => {}
        }
    }

    /// Applies an UPDATE from `peer` to the RIB.
    fn learn(&mut self, peer: &str, update: Update) -> Vec<BestChange> {
        let Some((neighbor, handle)) = self.neighbors.get(peer) else { return Vec::new() };
        let key: PeerKey = Some(Arc::from(peer));
        let export_side = &neighbor.export;
        let origination = if export_side.is_ibgp() { Origination::Ibgp } else { Origination::Ebgp };
        // RFC 8212: nothing from an eBGP peer without an import policy.
        let importing = export_side.is_ibgp() || neighbor.import_policy.is_some();
        let peer_type = if export_side.is_ibgp() { PeerType::Ibgp } else { PeerType::Ebgp };
        let policy = neighbor.import_policy.clone();
        let peer_id = handle.status.borrow().negotiated.as_ref().map_or(std::net::Ipv4Addr::UNSPECIFIED, |n| n.peer_id);
        let peer_addr = neighbor.session.remote.ip();
        let local_as = export_side.local_as;
        let mut changes = Vec::new();
        for n in &update.withdrawn {
            changes.extend(self.rib.withdraw(&key, n.prefix));
        }
        let Some(attrs) = update.attrs else { return changes };
        // RFC 4271 §9.1.2: a path through our own AS is a loop: treat as withdrawn.
        let looped = attrs.as_path.as_ref().is_some_and(|p| p.asns().any(|a| a == local_as));
        for n in &update.nlri {
            let accepted = match (&policy, importing && !looped) {
                (_, false) => None,
                (Some(p), true) => p.apply(&n.prefix, &attrs, peer_type).map(Arc::new),
                (None, true) => Some(attrs.clone()),
            };
            match accepted {
                Some(attrs) => {
                    let path = Path { attrs, origination, peer_addr, peer_id, reachable: true };
                    changes.extend(self.rib.announce(&key, n.prefix, path));
                }
                None => changes.extend(self.rib.withdraw(&key, n.prefix)),
            }
        }
        changes
    }

    /// Sends every up peer the effect of `changes`, and felix the changes.
    async fn propagate(&mut self, changes: Vec<BestChange>) {
        if changes.is_empty() {
            return;
        }
        let peers: Vec<String> = self.up.keys().cloned().collect();
        for name in peers {
            let Some(up) = self.up.get(&name) else { continue };
            let mut groups: HashMap<Arc<PathAttrs>, Vec<Nlri>> = HashMap::new();
            let mut withdrawn = Vec::new();
            for c in &changes {
                let exported = c.paths.first().and_then(|(from, path)| {
                    if from.as_deref() == Some(name.as_str()) {
                        None
                    } else {
                        export(&c.prefix, path, &up.neighbor.export, up.neighbor.export_policy.as_ref()).ok()
                    }
                });
                match exported {
                    Some(attrs) => groups.entry(Arc::new(attrs)).or_default().push(Nlri::new(c.prefix)),
                    None => withdrawn.push(Nlri::new(c.prefix)),
                }
            }
            if !withdrawn.is_empty() {
                self.send(&name, Update::withdraw(withdrawn)).await;
            }
            for (attrs, nlri) in groups {
                self.send(&name, Update::announce(attrs, nlri)).await;
            }
        }
        for c in changes {
            let _ = self.best_tx.send(c).await;
        }
    }

    async fn send(&self, peer: &str, update: Update) {
        if let Some((_, handle)) = self.neighbors.get(peer) {
            let _ = handle.commands.send(PeerCommand::Send(Message::Update(update))).await;
        }
    }
}
