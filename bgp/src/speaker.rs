//! The speaker: one task that owns the Loc-RIB, runs the peers' session
//! tasks, learns their routes through the import policy, and sends each up
//! peer the best paths its export rules and policy allow — the whole table
//! when it comes up (or asks with ROUTE-REFRESH, or its export policy
//! changes), then changes. Prefixes sharing an attribute set go out
//! together in one UPDATE (split into as many messages as the size limit
//! needs). A peer that sends more prefixes than its limit is stopped with
//! Cease 6/1 and restarted after a while (RFC 4486).
//!
//! ```text
//!  SpeakerCommand ──▶ ┌── speaker task ──┐ ──▶ PeerCommand (UPDATE, stop/start) ──▶ peer tasks
//!  PeerEvent      ──▶ │ LocRib + exports │ ──▶ BestChange (for felix)
//!                     └──────────────────┘
//! ```

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot, watch};

use crate::graceful::{Stale, forwarding_preserved};
use crate::packet::{Family, Message, Origin, PathAttrs, RefreshSubtype, RouteRefresh, Update, cease_subcode};
use crate::rib::decision::{Origination, Path};
use crate::rib::export::{ExportPeer, Reflector};
use crate::rib::policy::{PeerType, Policy, Source};
use crate::rib::table::{BestChange, LocRib, PeerKey};
use crate::session::listener::Listener;
use crate::session::peer::{self, PeerCommand, PeerConfig, PeerEvent, PeerHandle, PeerStatus};
use crate::session::socket::SocketError;

mod backlog;
mod converge;
mod groups;
mod send;
use backlog::Backlog;
use groups::UpdateGroups;

/// A prefix limit (RFC 4486 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPrefix {
    /// Prefixes accepted from the peer at most.
    pub limit: usize,
    /// Log a warning from this many on.
    pub warn_at: usize,
    /// Restart the session this long after stopping it.
    pub restart_after: Duration,
}

/// A neighbour: its session, export side and policies.
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
    /// Prefix limit.
    pub max_prefix: Option<MaxPrefix>,
    /// How many times our own AS may appear in a received AS_PATH before
    /// the route counts as a loop (`allow local as`; 0: never, RFC 4271 §9.1.2).
    pub allow_local_as: u8,
    /// Soft reconfiguration inbound: keep the routes as received (before
    /// the import policy) so a new import policy is applied to them at once,
    /// without asking the peer to resend (needed for peers without route
    /// refresh; costs the memory of the pre-policy view).
    pub soft_reconfiguration_inbound: bool,
}

/// What the speaker is told to do.
#[derive(Debug)]
pub enum SpeakerCommand {
    /// Add a neighbour and start its session.
    AddNeighbor(Box<Neighbor>),
    /// Change a neighbour's policies without resetting its session: the
    /// peer is asked to resend (ROUTE-REFRESH) for a new import policy, and
    /// gets the table again for a new export policy.
    SetPolicies {
        /// Peer name.
        peer: String,
        /// New import policy.
        import: Option<Policy>,
        /// New export policy.
        export: Option<Policy>,
    },
    /// Close a neighbour's session (Cease / Administrative Shutdown, RFC
    /// 4486) and forget it and its routes.
    RemoveNeighbor(String),
    /// Take on (or give up) the route-reflector role (RFC 4456); every up
    /// peer gets the table again under the new rules.
    SetReflector(Option<Arc<dyn Reflector>>),
    /// Accept sessions from any address in a range, each peer made from a
    /// template (dynamic neighbours: no per-client configuration).
    AddRange(Box<DynamicRange>),
    /// Read-only views for status tools.
    Query(Query),
    /// Originate a prefix (ORIGIN and AS_PATH are filled in when absent).
    Originate(IpNet, PathAttrs),
    /// Stop originating a prefix.
    Withdraw(IpNet),
    /// The peers whose tables make BGP converged for this node (its
    /// configured sessions): once each is up and has sent End-of-RIB (if it
    /// speaks graceful restart), [`SpeakerEvent::Converged`] goes out, once.
    Planned(Vec<String>),
    /// This speaker restarted with its forwarding state preserved (RFC 4724
    /// §4.1): sessions it opens set the Restart State bit, and nothing is
    /// advertised until every peer has sent End-of-RIB or `deferral` ends;
    /// then each peer gets the table and End-of-RIB.
    Restarted {
        /// The selection deferral limit.
        deferral: Duration,
    },
}

/// A dynamic-neighbour range: a peer connecting from inside it gets the
/// template's configuration with its own address, waits passively, and is
/// forgotten when its session ends (unless it restarts gracefully).
#[derive(Debug, Clone)]
pub struct DynamicRange {
    /// Where peers may connect from.
    pub range: IpNet,
    /// Their configuration (name and address are filled in per peer).
    pub template: Neighbor,
}

/// A question for the speaker; the answer comes back on the channel.
#[derive(Debug)]
pub enum Query {
    /// Prefix counts per neighbour.
    Peers(oneshot::Sender<Vec<PeerCounts>>),
    /// The Loc-RIB's best paths (for one prefix, or all).
    Routes(Option<IpNet>, oneshot::Sender<Vec<RouteView>>),
}

/// A neighbour's prefix counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCounts {
    /// Peer name.
    pub name: String,
    /// Its address.
    pub remote: SocketAddr,
    /// Its AS.
    pub asn: u32,
    /// Made from a dynamic-neighbour range.
    pub dynamic: bool,
    /// Paths received from it (after import policy).
    pub received: usize,
    /// Prefixes it is sent (export rules and policy applied); 0 while down.
    pub advertised: usize,
}

/// One prefix of the Loc-RIB with its multipath set, best first.
#[derive(Debug, Clone)]
pub struct RouteView {
    /// The prefix.
    pub prefix: IpNet,
    /// (peer name or `None` for our own, path).
    pub paths: Vec<(Option<String>, Path)>,
}

/// What the speaker tells its user (felix, through the node).
#[derive(Debug)]
pub enum SpeakerEvent {
    /// A batch of best-path changes.
    Best(Vec<BestChange>),
    /// Every planned peer has given us its table (see [`SpeakerCommand::Planned`]).
    Converged,
}

/// Handles to a running speaker.
pub struct SpeakerHandle {
    /// Commands (bounded).
    pub commands: mpsc::Sender<SpeakerCommand>,
    /// The peers' session status, by name.
    pub peers: Arc<Mutex<HashMap<String, watch::Receiver<PeerStatus>>>>,
    /// Counters.
    pub stats: Arc<SpeakerStats>,
}

/// Speaker counters (for metrics and tests).
#[derive(Debug, Default)]
pub struct SpeakerStats {
    /// UPDATEs encoded for update groups.
    pub group_updates_encoded: AtomicU64,
    /// Copies of them written to group members.
    pub group_updates_sent: AtomicU64,
    /// Restarted peers whose stale routes went at once: their new OPEN did
    /// not say forwarding state was preserved (RFC 4724 §4.2).
    pub stale_flushed_without_forwarding: AtomicU64,
    /// Route-selection deferrals ended (RFC 4724 §4.1), by End-of-RIB or timer.
    pub deferrals_ended: AtomicU64,
}

/// Channel sizes: commands, peer events.
const BUFFER: usize = 1024;

/// Peer events taken into one batch of best-path changes at most…
const BATCH_EVENTS: usize = 256;
/// …and changes (past this, the batch goes out).
const BATCH_CHANGES: usize = 16 * 1024;

/// How many prefixes of an UPDATE ahead of the one it imports the speaker
/// has the RIB fetch into the cache: far enough for the memory access to
/// finish while it works on the ones between.
const PREFETCH_AHEAD: usize = 8;

/// The speaker's own timers.
enum Internal {
    /// A gracefully restarting peer's stale routes are due (RFC 4724 §4.2).
    StaleTimeout { peer: String, epoch: u64 },
    /// The selection deferral limit (RFC 4724 §4.1).
    DeferralOver,
}

struct Speaker {
    rib: LocRib,
    listener: Option<Listener>,
    stale: HashMap<String, Stale>,
    /// While this speaker restarts: advertising waits (RFC 4724 §4.1).
    deferral: bool,
    /// Peers whose IPv4 End-of-RIB arrived in their current session.
    end_of_rib: HashSet<String>,
    /// The peers convergence waits for, once the node has said.
    planned: Option<HashSet<String>>,
    /// Convergence was announced.
    converged: bool,
    /// Pre-policy Adj-RIB-In of peers with soft reconfiguration inbound.
    received: HashMap<String, HashMap<IpNet, Arc<PathAttrs>>>,
    internal_tx: mpsc::Sender<Internal>,
    neighbors: HashMap<String, (Neighbor, PeerHandle)>,
    up: HashSet<String>,
    /// The up peers grouped for export; `None` after a change to `up` or
    /// to a neighbour's configuration, planned again when next needed.
    update_groups: Arc<UpdateGroups>,
    /// Best-path changes not yet sent to peers and felix (see `flush`), and
    /// whether they came in more than one piece (a prefix may then change
    /// twice).
    pending: Vec<BestChange>,
    pending_pieces: usize,
    /// What each peer whose outbox refused (or may refuse) is still owed.
    backlogs: HashMap<String, Backlog>,
    /// Peers stopped for exceeding their prefix limit (until restarted).
    over_limit: HashSet<String>,
    events_tx: mpsc::Sender<PeerEvent>,
    best_tx: mpsc::Sender<SpeakerEvent>,
    statuses: Arc<Mutex<HashMap<String, watch::Receiver<PeerStatus>>>>,
    stats: Arc<SpeakerStats>,
    router_id: Ipv4Addr,
    reflector: Option<Arc<dyn Reflector>>,
    ranges: Vec<DynamicRange>,
    /// Peers made from ranges.
    dynamic: HashSet<String>,
    dynamic_tx: mpsc::Sender<(tokio::net::TcpStream, SocketAddr)>,
}

/// Starts the speaker, listening on `listen` for peers that dial in;
/// best-path changes go to `best` in batches (felix installs them).
pub fn spawn(
    router_id: Ipv4Addr,
    max_paths: usize,
    best: mpsc::Sender<SpeakerEvent>,
    listen: Option<SocketAddr>,
) -> Result<SpeakerHandle, SocketError> {
    let listener = listen.map(Listener::bind).transpose()?;
    let (commands, mut commands_rx) = mpsc::channel(BUFFER);
    let (events_tx, mut events_rx) = mpsc::channel(BUFFER);
    let (internal_tx, mut internal_rx) = mpsc::channel(BUFFER);
    let (dynamic_tx, mut dynamic_rx) = mpsc::channel(BUFFER);
    let statuses = Arc::new(Mutex::new(HashMap::new()));
    let stats = Arc::new(SpeakerStats::default());
    let mut speaker = Speaker {
        rib: LocRib::new(max_paths),
        listener,
        stale: HashMap::new(),
        deferral: false,
        end_of_rib: HashSet::new(),
        planned: None,
        converged: false,
        received: HashMap::new(),
        internal_tx,
        neighbors: HashMap::new(),
        up: HashSet::new(),
        update_groups: Arc::default(),
        pending: Vec::new(),
        pending_pieces: 0,
        backlogs: HashMap::new(),
        over_limit: HashSet::new(),
        events_tx,
        best_tx: best,
        statuses: statuses.clone(),
        stats: stats.clone(),
        router_id,
        reflector: None,
        ranges: Vec::new(),
        dynamic: HashSet::new(),
        dynamic_tx,
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                cmd = commands_rx.recv() => match cmd {
                    Some(cmd) => speaker.command(cmd).await,
                    None => return,
                },
                Some(event) = events_rx.recv() => speaker.peer_event(event).await,
                Some((stream, from)) = dynamic_rx.recv() => speaker.dynamic_peer(stream, from).await,
                Some(internal) = internal_rx.recv() => match internal {
                    Internal::StaleTimeout { peer, epoch } => {
                        if speaker.stale.get(&peer).is_some_and(|s| s.epoch == epoch) {
                            tracing::info!(peer, "graceful restart time over: stale routes removed");
                            speaker.sweep_stale(&peer).await;
                        }
                    }
                    Internal::DeferralOver => speaker.end_deferral("the selection deferral limit passed").await,
                },
            }
            // What the peers have sent meanwhile joins this batch: one
            // export, one encoding per update group and one hand-off to felix
            // for many UPDATEs (a table mostly arrives one prefix per UPDATE).
            let mut budget = BATCH_EVENTS;
            while budget > 0
                && speaker.pending.len() < BATCH_CHANGES
                && let Ok(event) = events_rx.try_recv()
            {
                speaker.peer_event(event).await;
                budget -= 1;
            }
            speaker.flush().await;
            speaker.check_converged().await;
        }
    });
    Ok(SpeakerHandle { commands, peers: statuses, stats })
}

fn key(peer: &str) -> PeerKey {
    Some(Arc::from(peer))
}

impl Speaker {
    async fn command(&mut self, cmd: SpeakerCommand) {
        match cmd {
            SpeakerCommand::AddNeighbor(n) => self.add_neighbor(*n).await,
            SpeakerCommand::AddRange(r) => {
                match &self.listener {
                    Some(listener) => {
                        tracing::info!(range = %r.range, "accepting dynamic neighbours");
                        listener.add_range(r.range, self.dynamic_tx.clone());
                    }
                    None => tracing::warn!(range = %r.range, "dynamic neighbours need a listener; range ignored"),
                }
                self.ranges.push(*r);
            }
            SpeakerCommand::SetPolicies { peer, import, export } => {
                let Some((neighbor, handle)) = self.neighbors.get_mut(&peer) else { return };
                let (import_changed, export_changed) =
                    (neighbor.import_policy != import, neighbor.export_policy != export);
                neighbor.import_policy = import;
                neighbor.export_policy = export;
                if self.up.contains(&peer) {
                    Arc::make_mut(&mut self.update_groups).join(&peer, neighbor, handle);
                }
                let refresh = handle.status.borrow().negotiated.as_ref().is_some_and(|n| n.route_refresh);
                if import_changed && neighbor.soft_reconfiguration_inbound {
                    // The routes as received, judged again by the new import policy.
                    let kept = self.received.get(&peer).cloned().unwrap_or_default();
                    tracing::info!(peer, routes = kept.len(), "import policy changed: re-importing the stored routes");
                    let changes =
                        self.import(&peer, kept.into_iter().map(|(prefix, attrs)| (prefix, Some(attrs))).collect());
                    self.changed(changes);
                } else if import_changed && refresh {
                    // RFC 2918: the peer resends its routes; the new import policy judges them.
                    let ask = RouteRefresh { family: Family::IPV4_UNICAST, subtype: RefreshSubtype::Request };
                    let _ = handle.commands.send(PeerCommand::Send(Box::new(Message::RouteRefresh(ask)))).await;
                }
                if export_changed && self.up.contains(&peer) {
                    self.send_table(&peer, true);
                }
            }
            SpeakerCommand::SetReflector(reflector) => {
                tracing::info!(reflector = ?reflector, "route-reflector role changed");
                self.reflector = reflector;
                let up: Vec<String> = self.up.iter().cloned().collect();
                for peer in up {
                    self.send_table(&peer, true);
                }
            }
            SpeakerCommand::RemoveNeighbor(name) => self.remove_neighbor(&name).await,
            SpeakerCommand::Query(Query::Peers(reply)) => {
                let counts = self.neighbors.keys().map(|name| self.counts(name)).collect();
                let _ = reply.send(counts);
            }
            SpeakerCommand::Query(Query::Routes(prefix, reply)) => {
                let view = |prefix: IpNet| RouteView {
                    prefix,
                    paths: self
                        .rib
                        .best(&prefix)
                        .into_iter()
                        .map(|(peer, path)| (peer.map(|p| p.to_string()), path))
                        .collect(),
                };
                let routes = match prefix {
                    Some(p) => vec![view(p)].into_iter().filter(|r| !r.paths.is_empty()).collect(),
                    None => self.rib.best_paths().map(|(p, _)| view(p)).collect(),
                };
                let _ = reply.send(routes);
            }
            SpeakerCommand::Originate(prefix, mut attrs) => {
                attrs.origin.get_or_insert(Origin::Igp);
                attrs.as_path.get_or_insert_with(Default::default);
                let path = Path {
                    attrs: Arc::new(attrs),
                    origination: Origination::Local,
                    peer_addr: IpAddr::from([0, 0, 0, 0]),
                    peer_id: self.router_id,
                    reachable: true,
                };
                let change = self.rib.announce(&None, prefix, path);
                self.changed(change.into_iter().collect());
            }
            SpeakerCommand::Withdraw(prefix) => {
                let change = self.rib.withdraw(&None, prefix);
                self.changed(change.into_iter().collect());
            }
            SpeakerCommand::Planned(peers) => self.planned = Some(peers.into_iter().collect()),
            SpeakerCommand::Restarted { deferral } => {
                tracing::info!(
                    ?deferral,
                    "restarted with forwarding state preserved: advertising waits for the peers' End-of-RIB"
                );
                self.deferral = true;
                let tx = self.internal_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(deferral).await;
                    let _ = tx.send(Internal::DeferralOver).await;
                });
            }
        }
    }

    async fn peer_event(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Up { peer, negotiated } => {
                self.over_limit.remove(&peer);
                self.set_up(&peer, true);
                self.backlogs.remove(&peer);
                if let Some((_, handle)) = self.neighbors.get(&peer) {
                    handle.outbox.open();
                }
                if self.stale.contains_key(&peer) && !forwarding_preserved(negotiated.peer_graceful_restart.as_ref()) {
                    // RFC 4724 §4.2: the peer lost its forwarding state; its stale routes are void.
                    tracing::info!(peer, "peer restarted without its forwarding state: stale routes removed");
                    self.stats.stale_flushed_without_forwarding.fetch_add(1, Ordering::Relaxed);
                    self.sweep_stale(&peer).await;
                }
                if self.deferral {
                    self.check_deferral().await;
                } else {
                    self.send_table(&peer, false);
                }
            }
            PeerEvent::Drained { peer } => self.drain(&peer),
            PeerEvent::Down { peer, graceful: Some(restart_time), .. } => {
                // RFC 4724 §4.2: keep the routes, stale, while the peer restarts.
                self.set_up(&peer, false);
                let stale = self.stale.entry(peer.clone()).or_default();
                stale.prefixes = self.rib.prefixes_from(&key(&peer)).into_iter().collect();
                stale.epoch += 1;
                tracing::info!(
                    peer,
                    routes = stale.prefixes.len(),
                    ?restart_time,
                    "peer restarting: its routes are kept as stale"
                );
                let (tx, epoch) = (self.internal_tx.clone(), stale.epoch);
                tokio::spawn(async move {
                    tokio::time::sleep(restart_time).await;
                    let _ = tx.send(Internal::StaleTimeout { peer, epoch }).await;
                });
            }
            PeerEvent::Down { peer, .. } if self.dynamic.contains(&peer) => {
                // A dynamic neighbour exists while its session does.
                tracing::info!(peer, "dynamic neighbour gone");
                self.remove_neighbor(&peer).await;
            }
            PeerEvent::Down { peer, .. } => {
                self.set_up(&peer, false);
                self.stale.remove(&peer);
                self.received.remove(&peer);
                let changes = self.rib.peer_down(&key(&peer));
                self.changed(changes);
            }
            PeerEvent::Update { peer, update } => {
                if self.over_limit.contains(&peer) {
                    return;
                }
                let end_of_rib = update.end_of_rib_family();
                if let Some(stale) = self.stale.get_mut(&peer) {
                    for n in update.withdrawn.iter().chain(&update.nlri) {
                        stale.prefixes.remove(&IpNet::V4(n.prefix));
                    }
                    let mp = update.mp_reach.iter().flat_map(|r| &r.nlri);
                    for n in mp.chain(update.mp_unreach.iter().flat_map(|u| &u.withdrawn)) {
                        stale.prefixes.remove(&n.prefix);
                    }
                }
                let changes = self.learn(&peer, *update);
                self.changed(changes);
                if let Some(family) = end_of_rib
                    && self.stale.contains_key(&peer)
                {
                    // RFC 4724 §4.2: what the peer did not re-announce by End-of-RIB is gone.
                    self.sweep_stale_family(&peer, family).await;
                }
                if end_of_rib == Some(Family::IPV4_UNICAST) {
                    self.end_of_rib.insert(peer.clone());
                    self.check_deferral().await;
                }
                self.check_limit(&peer).await;
            }
            PeerEvent::RouteRefresh { peer, refresh } => match refresh.subtype {
                RefreshSubtype::Request => self.answer_refresh(&peer),
                // RFC 7313 §4: the peer resends everything between BoRR and EoRR;
                // what it did not resend by EoRR is gone (the same sweep as graceful restart).
                RefreshSubtype::BeginningOfRefresh => {
                    let stale = self.stale.entry(peer.clone()).or_default();
                    stale.prefixes = self.rib.prefixes_from(&key(&peer)).into_iter().collect();
                    stale.epoch += 1;
                }
                RefreshSubtype::EndOfRefresh => self.sweep_stale(&peer).await,
                RefreshSubtype::Reserved(_) => {}
            },
        }
    }

    /// Applies an UPDATE from `peer` to the RIB (keeping it as received
    /// first, with soft reconfiguration inbound).
    fn learn(&mut self, peer: &str, update: Update) -> Vec<BestChange> {
        let Some((neighbor, _)) = self.neighbors.get(peer) else { return Vec::new() };
        let attrs = update.attrs;
        let withdrawn = update.withdrawn.iter().map(|n| (IpNet::V4(n.prefix), None));
        // NLRI without attributes (RFC 7606 treat-as-withdraw) are withdrawals.
        let announced = update.nlri.iter().map(|n| (IpNet::V4(n.prefix), attrs.clone()));
        let mut routes: Vec<(IpNet, Option<Arc<PathAttrs>>)> = withdrawn.chain(announced).collect();
        // IPv6 unicast (RFC 4760): its next hop is kept with the attributes.
        if let Some(u) = update.mp_unreach.as_ref().filter(|u| u.family == Family::IPV6_UNICAST) {
            routes.extend(u.withdrawn.iter().map(|n| (n.prefix, None)));
        }
        if let Some(r) = update.mp_reach.as_ref().filter(|r| r.family == Family::IPV6_UNICAST) {
            let v6 = attrs.as_ref().map(|a| Arc::new(PathAttrs { mp_next_hop: Some(r.next_hop), ..(**a).clone() }));
            routes.extend(r.nlri.iter().map(|n| (n.prefix, v6.clone())));
        }
        if neighbor.soft_reconfiguration_inbound {
            let kept = self.received.entry(peer.to_string()).or_default();
            for (prefix, attrs) in &routes {
                match attrs {
                    Some(a) => kept.insert(*prefix, a.clone()),
                    None => kept.remove(prefix),
                };
            }
        }
        self.import(peer, routes)
    }

    /// Puts routes from `peer` (attributes, or `None` for a withdrawal)
    /// through loop detection and the import policy into the RIB.
    fn import(&mut self, peer: &str, mut routes: Vec<(IpNet, Option<Arc<PathAttrs>>)>) -> Vec<BestChange> {
        let Some((neighbor, handle)) = self.neighbors.get(peer) else { return Vec::new() };
        let from = key(peer);
        let ibgp = neighbor.export.is_ibgp();
        let (origination, peer_type) =
            if ibgp { (Origination::Ibgp, PeerType::Ibgp) } else { (Origination::Ebgp, PeerType::Ebgp) };
        let peer_id = handle.status.borrow().negotiated.as_ref().map_or(Ipv4Addr::UNSPECIFIED, |n| n.peer_id);
        let (peer_addr, local_as, policy) =
            (neighbor.session.remote.ip(), neighbor.export.local_as, neighbor.import_policy.clone());
        let allowed = usize::from(neighbor.allow_local_as);
        let mut changes = Vec::new();
        for i in 0..routes.len() {
            if let Some((ahead, _)) = routes.get(i + PREFETCH_AHEAD) {
                self.rib.prefetch(ahead);
            }
            let (prefix, attrs) = (routes[i].0, routes[i].1.take());
            let Some(attrs) = attrs else {
                changes.extend(self.rib.withdraw(&from, prefix));
                continue;
            };
            // RFC 4271 §9.1.2: a path through our own AS (more often than
            // `allow_local_as` permits) is a loop, as good as withdrawn;
            // RFC 4456 §8: so is one that names us as ORIGINATOR_ID or (for a
            // reflector) carries our CLUSTER_ID.
            let looped = attrs.as_path.as_ref().is_some_and(|p| p.occurrences(local_as) > allowed)
                || attrs.originator_id == Some(self.router_id)
                || self.reflector.as_ref().is_some_and(|r| r.looped(&attrs));
            let accepted = match &policy {
                _ if looped => None,
                Some(p) => p.apply_shared(&prefix, attrs, peer_type, Source::RemotePeers),
                // RFC 8212: nothing from an eBGP peer without an import policy.
                None if ibgp => Some(attrs),
                None => None,
            };
            match accepted {
                Some(attrs) => {
                    let path = Path { attrs, origination, peer_addr, peer_id, reachable: true };
                    changes.extend(self.rib.announce(&from, prefix, path));
                }
                None => changes.extend(self.rib.withdraw(&from, prefix)),
            }
        }
        changes
    }

    /// Removes a restarting peer's routes of `family` it did not refresh
    /// (its End-of-RIB for that family came); the rest stay stale.
    async fn sweep_stale_family(&mut self, peer: &str, family: Family) {
        let Some(stale) = self.stale.get_mut(peer) else { return };
        let v4 = family == Family::IPV4_UNICAST;
        let (swept, rest): (HashSet<IpNet>, HashSet<IpNet>) =
            std::mem::take(&mut stale.prefixes).into_iter().partition(|p| p.addr().is_ipv4() == v4);
        stale.prefixes = rest;
        if stale.prefixes.is_empty() {
            self.stale.remove(peer);
        }
        self.withdraw_stale(peer, swept).await;
    }

    /// Removes a restarting peer's routes it did not refresh.
    async fn sweep_stale(&mut self, peer: &str) {
        let Some(stale) = self.stale.remove(peer) else { return };
        self.withdraw_stale(peer, stale.prefixes).await;
    }

    async fn withdraw_stale(&mut self, peer: &str, prefixes: HashSet<IpNet>) {
        if let Some(kept) = self.received.get_mut(peer) {
            kept.retain(|p, _| !prefixes.contains(p));
        }
        let from = key(peer);
        let changes: Vec<BestChange> = prefixes.into_iter().filter_map(|p| self.rib.withdraw(&from, p)).collect();
        self.changed(changes);
    }

    /// RFC 4486: past its prefix limit a peer is stopped (Cease 6/1), its
    /// routes dropped, and restarted after `restart_after`.
    async fn check_limit(&mut self, peer: &str) {
        let Some((neighbor, handle)) = self.neighbors.get(peer) else { return };
        let Some(limit) = neighbor.max_prefix else { return };
        let count = self.rib.paths_from(&key(peer));
        if count >= limit.warn_at && count <= limit.limit {
            tracing::warn!(peer, count, limit = limit.limit, "peer is close to its prefix limit");
        }
        if count <= limit.limit {
            return;
        }
        tracing::warn!(peer, count, limit = limit.limit, "prefix limit exceeded: stopping the session");
        self.over_limit.insert(peer.to_string());
        let commands = handle.commands.clone();
        let _ = commands.send(PeerCommand::AutoStop { subcode: cease_subcode::MAXIMUM_PREFIXES_REACHED }).await;
        let changes = self.rib.peer_down(&key(peer));
        self.changed(changes);
        tokio::spawn(async move {
            tokio::time::sleep(limit.restart_after).await;
            let _ = commands.send(PeerCommand::AutoStart).await;
        });
    }

    /// RFC 2918 / RFC 7313: the whole table again, framed by BoRR and EoRR
    /// when enhanced route refresh was negotiated.
    fn answer_refresh(&mut self, peer: &str) {
        let Some((_, handle)) = self.neighbors.get(peer) else { return };
        let enhanced = handle.status.borrow().negotiated.as_ref().is_some_and(|n| n.enhanced_route_refresh);
        let marker = |subtype| Message::RouteRefresh(RouteRefresh { family: Family::IPV4_UNICAST, subtype });
        if enhanced {
            self.send_message(peer, marker(RefreshSubtype::BeginningOfRefresh));
        }
        self.send_table(peer, false);
        if enhanced {
            self.send_message(peer, marker(RefreshSubtype::EndOfRefresh));
        }
    }

    async fn add_neighbor(&mut self, mut n: Neighbor) {
        if self.deferral
            && let Some(gr) = &mut n.session.local.graceful_restart
        {
            // RFC 4724 §3: the Restart State bit, while this speaker restarts.
            gr.restarted = true;
        }
        let handle = peer::spawn(n.session.clone(), self.events_tx.clone());
        if let Some(listener) = &self.listener
            && let Err(e) = listener.add_peer(n.session.remote.ip(), &n.session.socket, handle.commands.clone())
        {
            tracing::error!(peer = %n.session.name, error = %e, "cannot accept connections from this peer");
        }
        let _ = handle.commands.send(PeerCommand::Start).await;
        self.statuses.lock().unwrap_or_else(|p| p.into_inner()).insert(n.session.name.clone(), handle.status.clone());
        self.neighbors.insert(n.session.name.clone(), (n, handle));
    }

    async fn remove_neighbor(&mut self, name: &str) {
        let name = name.to_string();
        let Some((neighbor, handle)) = self.neighbors.remove(&name) else { return };
        if let Some(listener) = &self.listener
            && let Err(e) = listener.remove_peer(neighbor.session.remote.ip())
        {
            tracing::warn!(peer = name, error = %e, "removing the peer from the listener");
        }
        let _ = handle.commands.send(PeerCommand::Stop { message: "peer removed from the configuration".into() }).await;
        self.statuses.lock().unwrap_or_else(|p| p.into_inner()).remove(&name);
        self.set_up(&name, false);
        self.stale.remove(&name);
        self.received.remove(&name);
        self.over_limit.remove(&name);
        tracing::info!(peer = name, "neighbour removed");
        let changes = self.rib.peer_down(&key(&name));
        self.changed(changes);
        self.dynamic.remove(&name);
    }

    /// A connection from inside a dynamic-neighbour range: a peer for it,
    /// from the range's template, then the connection.
    async fn dynamic_peer(&mut self, stream: tokio::net::TcpStream, from: SocketAddr) {
        let Some(range) = self.ranges.iter().find(|r| r.range.contains(&from.ip())) else { return };
        let mut n = range.template.clone();
        let name = format!("Dynamic_{}", from.ip().to_string().replace(['.', ':'], "_"));
        n.session.name = name.clone();
        n.session.remote = SocketAddr::new(from.ip(), 179);
        n.session.fsm.passive = true;
        tracing::info!(peer = name, from = %from.ip(), range = %range.range, "dynamic neighbour");
        self.add_neighbor(n).await;
        self.dynamic.insert(name.clone());
        if let Some((_, handle)) = self.neighbors.get(&name) {
            let _ = handle.commands.send(PeerCommand::Incoming(stream)).await;
        }
    }

    fn counts(&self, name: &str) -> PeerCounts {
        let advertised = if self.up.contains(name) {
            let all: Vec<(IpNet, (PeerKey, Path))> = self.rib.best_paths().collect();
            self.exports(name, all.iter().map(|(p, best)| (*p, Some(best), false))).announced()
        } else {
            0
        };
        let (remote, asn) = self
            .neighbors
            .get(name)
            .map_or((SocketAddr::from(([0, 0, 0, 0], 0)), 0), |(n, _)| (n.session.remote, n.session.local.peer_asn));
        PeerCounts {
            name: name.to_string(),
            remote,
            asn,
            dynamic: self.dynamic.contains(name),
            received: self.rib.paths_from(&key(name)),
            advertised,
        }
    }

    /// Marks `peer` up (it joins its update group) or down (it leaves it).
    fn set_up(&mut self, peer: &str, up: bool) {
        let groups = Arc::make_mut(&mut self.update_groups);
        if up {
            self.up.insert(peer.to_string());
            if let Some((neighbor, handle)) = self.neighbors.get(peer) {
                groups.join(peer, neighbor, handle);
            }
        } else {
            self.up.remove(peer);
            groups.leave(peer);
            self.backlogs.remove(peer);
            self.end_of_rib.remove(peer);
        }
    }

    /// The up peers grouped for export.
    fn update_groups(&self) -> Arc<UpdateGroups> {
        self.update_groups.clone()
    }
}
