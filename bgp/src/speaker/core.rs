//! The speaker's core, without I/O: it owns the Loc-RIB, the neighbours'
//! configuration and their outboxes, and turns each [`Input`] (a command,
//! a peer's event, one of its own timers, the end of a batch) into
//! [`Output`]s (start or stop a session, set a timer, tell felix) that the
//! task in `speaker.rs` carries out. UPDATEs go straight into the peers'
//! outboxes, which are queues, not sockets: the peer tasks write them.
//! Tested by replaying input streams (`replay.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::backlog::Backlog;
use super::groups::UpdateGroups;
use super::import::borrowed;
use super::{DynamicRange, Neighbor, Query, SpeakerCommand, SpeakerEvent, SpeakerStats};
use crate::packet::{Family, Message, Origin, PathAttrs, RefreshSubtype, RouteRefresh};
use crate::rib::decision::{Origination, Path};
use crate::rib::export::Reflector;
use crate::rib::table::{BestChange, LocRib, PeerKey, Walk};
use crate::session::negotiate::Negotiated;
use crate::session::outbox::Outbox;
use crate::session::peer::{PeerCommand, PeerConfig, PeerEvent};

/// What the core is given.
#[derive(Debug)]
pub(crate) enum Input {
    /// From the node.
    Command(SpeakerCommand),
    /// From a peer's session task.
    Peer(PeerEvent),
    /// One of the timers it asked for is due.
    Timer(Timer),
    /// A connection from `from`, inside a dynamic-neighbour range.
    Accepted(SocketAddr),
    /// The inputs of one batch are in: the changes go out.
    EndOfBatch,
}

/// What the core asks its task to do, in order.
#[derive(Debug)]
pub(crate) enum Output {
    /// Run a session task for a new neighbour, writing from `outbox`.
    Spawn {
        /// Its configuration.
        config: Box<PeerConfig>,
        /// Where the core queues its UPDATEs.
        outbox: Arc<Outbox>,
    },
    /// A command for a neighbour's session task.
    Peer(String, PeerCommand),
    /// The connection just accepted (see [`Input::Accepted`]) belongs to this peer.
    Accept(String),
    /// The neighbour is gone: stop accepting its connections from `remote`.
    Forget {
        /// Its name.
        peer: String,
        /// Its address.
        remote: IpAddr,
    },
    /// Accept connections from a dynamic-neighbour range.
    Listen(IpNet),
    /// Give the core `timer` back after `after`.
    Timer {
        /// How long from now.
        after: Duration,
        /// Which.
        timer: Timer,
    },
    /// For the node (felix).
    Event(SpeakerEvent),
}

/// The core's own timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Timer {
    /// A gracefully restarting peer's stale routes are due (RFC 4724 §4.2).
    StaleTimeout {
        /// The peer.
        peer: String,
        /// Which restart (an older timer is void).
        epoch: u64,
    },
    /// The selection deferral limit (RFC 4724 §4.1).
    DeferralOver,
    /// A peer stopped at its prefix limit may start again (RFC 4486).
    LimitOver {
        /// The peer.
        peer: String,
    },
}

/// A neighbour as the core keeps it.
#[derive(Debug)]
pub(super) struct Session {
    /// Its configuration.
    pub(super) neighbor: Neighbor,
    /// Its paths' key in the Loc-RIB, made once: the RIB knows the peer of
    /// the UPDATE before by this allocation, with no name hashed.
    pub(super) key: PeerKey,
    /// Where its UPDATEs wait for its session task.
    pub(super) outbox: Arc<Outbox>,
    /// The terms of its session, while it is up.
    pub(super) negotiated: Option<Box<Negotiated>>,
    /// The number of that session (what pushes to the outbox name).
    pub(super) session: u64,
    /// Malformed attributes met so far, by what was done (RFC 7606 §2):
    /// routes treated as withdrawn, attribute discarded.
    pub(super) revised: [u64; 2],
    /// Routes ignored for an unusable NEXT_HOP (RFC 4271 §6.3).
    pub(super) ignored: u64,
}

/// The speaker's state and rules (see the module documentation).
pub(crate) struct SpeakerCore {
    pub(super) rib: LocRib,
    pub(super) stale: HashMap<String, crate::graceful::Stale>,
    /// Stale epochs handed out so far.
    pub(super) stale_epochs: u64,
    /// While this speaker restarts: advertising waits (RFC 4724 §4.1).
    pub(super) deferral: bool,
    /// Peers whose End-of-RIB arrived for every family of their current session.
    pub(super) end_of_rib: HashSet<String>,
    /// The families whose End-of-RIB each peer has sent in its current session.
    pub(super) end_of_rib_families: HashMap<String, HashSet<Family>>,
    /// The peers convergence waits for, once the node has said.
    pub(super) planned: Option<HashSet<String>>,
    /// Convergence was announced.
    pub(super) converged: bool,
    /// Pre-policy Adj-RIB-In of peers with soft reconfiguration inbound.
    pub(super) received: HashMap<String, super::adj_in::AdjRibIn>,
    /// (foldhash: seeded per process, cheap per lookup.)
    pub(super) neighbors: foldhash::HashMap<String, Session>,
    /// The neighbours that are route-reflector clients (RFC 4456 §6), by
    /// name: export asks it of each path's source, and a small set of
    /// names is cheaper to ask than the sessions (a reflector's table walk
    /// meets a new source every few prefixes).
    pub(super) rr_clients: foldhash::HashSet<Arc<str>>,
    /// Paths as exported, per export terms (see `memo`).
    pub(super) export_memo: super::memo::ExportMemo,
    pub(super) up: HashSet<String>,
    /// The up peers grouped for export.
    pub(super) update_groups: UpdateGroups,
    /// Best-path changes not yet sent to peers and felix (see `flush`), and
    /// whether they came in more than one piece (a prefix may then change
    /// twice).
    pub(super) pending: Vec<BestChange>,
    pub(super) pending_pieces: usize,
    /// Scratch room for coalescing a batch's changes (`send::coalesce`).
    pub(super) coalesce_at: foldhash::HashMap<IpNet, usize>,
    /// Peers that came up in the batch under way, owed the table at its
    /// end (`tables`).
    pub(super) fresh_tables: Vec<String>,
    /// What each peer whose outbox refused (or may refuse) is still owed.
    pub(super) backlogs: HashMap<String, Backlog>,
    /// Peers stopped for exceeding their prefix limit (until restarted).
    pub(super) over_limit: HashSet<String>,
    pub(super) stats: Arc<SpeakerStats>,
    pub(super) router_id: Ipv4Addr,
    pub(super) reflector: Option<Arc<dyn Reflector>>,
    pub(super) ranges: Vec<DynamicRange>,
    /// Peers made from ranges.
    pub(super) dynamic: HashSet<String>,
    /// Inputs that can change a count, handled so far: what one is as of.
    pub(super) inputs: u64,
    /// The last advertised counts (`counts`).
    pub(super) advertised: super::counts::Advertised,
    /// Peers whose paths are being removed, a chunk per batch, and where
    /// the walk of the Loc-RIB goes on (see `drop_paths`).
    dropping: BTreeMap<String, Option<Walk>>,
    out: Vec<Output>,
}

/// RFC 9384: the Cease subcode "BFD Down".
const CEASE_BFD_DOWN: u8 = 10;

/// The paths of a peer that went down removed (and their changes sent) at
/// a time: a batch's worth.
pub(super) const PEER_DOWN_CHUNK: usize = 16_384;

pub(super) fn key(peer: &str) -> PeerKey {
    Some(Arc::from(peer))
}

impl SpeakerCore {
    /// A speaker with BGP identifier `router_id` keeping up to `max_paths`
    /// equal-cost paths per prefix.
    pub(crate) fn new(router_id: Ipv4Addr, max_paths: usize, stats: Arc<SpeakerStats>) -> SpeakerCore {
        SpeakerCore {
            rib: LocRib::new(max_paths),
            stale: HashMap::new(),
            stale_epochs: 0,
            deferral: false,
            end_of_rib: HashSet::new(),
            end_of_rib_families: HashMap::new(),
            planned: None,
            converged: false,
            received: HashMap::new(),
            neighbors: foldhash::HashMap::default(),
            rr_clients: foldhash::HashSet::default(),
            export_memo: super::memo::ExportMemo::default(),
            up: HashSet::new(),
            update_groups: UpdateGroups::default(),
            pending: Vec::new(),
            pending_pieces: 0,
            coalesce_at: foldhash::HashMap::default(),
            fresh_tables: Vec::new(),
            backlogs: HashMap::new(),
            over_limit: HashSet::new(),
            stats,
            router_id,
            reflector: None,
            ranges: Vec::new(),
            dynamic: HashSet::new(),
            inputs: 0,
            advertised: super::counts::Advertised::default(),
            dropping: BTreeMap::new(),
            out: Vec::new(),
        }
    }

    /// Takes one input; returns what to do about it, in order.
    pub(crate) fn handle(&mut self, input: Input) -> Vec<Output> {
        // What can change a count: not a query, nor the end of a batch
        // (it only sends what earlier inputs changed).
        if !matches!(input, Input::Command(SpeakerCommand::Query(_)) | Input::EndOfBatch) {
            self.inputs += 1;
        }
        match input {
            Input::Command(cmd) => self.command(cmd),
            Input::Peer(event) => self.peer_event(event),
            Input::Timer(timer) => self.timer(timer),
            Input::Accepted(from) => self.accepted(from),
            Input::EndOfBatch => {
                self.send_fresh_tables();
                self.flush();
                if let Some(peer) = self.dropping.keys().next().cloned() {
                    self.drop_chunk(&peer);
                    self.flush();
                }
                self.check_converged();
                // A count goes on in a batch with nothing to send: its chunk
                // never holds up what a batch sends.
                if self.out.is_empty() {
                    self.count_chunk();
                }
            }
        }
        std::mem::take(&mut self.out)
    }

    /// The batch under way holds this many changes.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether paths of a peer that went are still to be removed.
    pub(crate) fn dropping(&self) -> bool {
        !self.dropping.is_empty()
    }

    /// Whether work that goes a chunk per batch is left (a peer's paths to
    /// remove, a count): its task ends batches (`Input::EndOfBatch`)
    /// without waiting for inputs until it is done.
    pub(crate) fn unfinished(&self) -> bool {
        self.dropping() || self.counting()
    }

    pub(super) fn emit(&mut self, output: Output) {
        self.out.push(output);
    }

    /// A command for `peer`'s session task.
    pub(super) fn tell(&mut self, peer: &str, command: PeerCommand) {
        self.emit(Output::Peer(peer.to_string(), command));
    }

    /// The terms of `peer`'s session, while it is up.
    pub(super) fn negotiated(&self, peer: &str) -> Option<&Negotiated> {
        self.neighbors.get(peer)?.negotiated.as_deref()
    }

    fn command(&mut self, cmd: SpeakerCommand) {
        match cmd {
            SpeakerCommand::AddNeighbor(n) => self.add_neighbor(*n),
            SpeakerCommand::AddRange(r) => {
                self.emit(Output::Listen(r.range));
                self.ranges.push(*r);
            }
            SpeakerCommand::SetPolicies { peer, import, export } => self.set_policies(&peer, import, export),
            SpeakerCommand::SetReflector(reflector) => {
                tracing::info!(reflector = ?reflector, "route-reflector role changed");
                self.reflector = reflector;
                self.export_memo.clear();
                let up: Vec<String> = self.up.iter().cloned().collect();
                for peer in up {
                    self.send_table(&peer, true);
                }
            }
            SpeakerCommand::RemoveNeighbor(name) => self.remove_neighbor(&name),
            SpeakerCommand::Query(Query::Peers { now, max_age, reply }) => {
                let _ = reply.send(self.peer_counts(now, max_age));
            }
            SpeakerCommand::Query(Query::Routes { prefix, after, reply }) => {
                let _ = reply.send(self.routes(prefix, after));
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
            SpeakerCommand::Reachable { peer, reachable } if self.neighbors.contains_key(&peer) => {
                if reachable {
                    tracing::info!(peer, "BFD: reachable again, the session may start");
                    self.tell(&peer, PeerCommand::AutoStart);
                } else {
                    tracing::warn!(peer, "BFD: unreachable, the session goes down with its routes");
                    self.tell(&peer, PeerCommand::AutoStop { subcode: CEASE_BFD_DOWN });
                }
            }
            SpeakerCommand::Reachable { .. } => {}
            SpeakerCommand::Restarted { deferral } => {
                tracing::info!(
                    ?deferral,
                    "restarted with forwarding state preserved: advertising waits for the peers' End-of-RIB"
                );
                self.deferral = true;
                self.emit(Output::Timer { after: deferral, timer: Timer::DeferralOver });
            }
        }
    }

    fn timer(&mut self, timer: Timer) {
        match timer {
            Timer::StaleTimeout { peer, epoch } => self.stale_timeout(&peer, epoch),
            Timer::DeferralOver => self.end_deferral("the selection deferral limit passed"),
            Timer::LimitOver { peer } => {
                if self.over_limit.contains(&peer) {
                    self.tell(&peer, PeerCommand::AutoStart);
                }
            }
        }
    }

    /// New policies for `peer`, without resetting its session: the peer is
    /// asked to resend (ROUTE-REFRESH) for a new import policy, and gets
    /// the table again for a new export policy.
    fn set_policies(
        &mut self,
        peer: &str,
        import: Option<crate::rib::policy::Policy>,
        export: Option<crate::rib::policy::Policy>,
    ) {
        let Some(session) = self.neighbors.get_mut(peer) else { return };
        let neighbor = &mut session.neighbor;
        let (import_changed, export_changed) = (neighbor.import_policy != import, neighbor.export_policy != export);
        neighbor.import_policy = import;
        neighbor.export_policy = export;
        let soft = neighbor.soft_reconfiguration_inbound;
        // The families to ask for again: each the session carries.
        let refresh = match session.negotiated.as_ref() {
            Some(n) if n.route_refresh => n.families.clone(),
            _ => Vec::new(),
        };
        if self.up.contains(peer) {
            self.update_groups.join(peer, session);
        }
        if import_changed && soft {
            // The routes as received, judged again by the new import policy.
            let from = key(peer);
            let kept = self.received.get(peer).map(|k| k.routes(&self.rib, &from)).unwrap_or_default();
            tracing::info!(peer, routes = kept.len(), "import policy changed: re-importing the stored routes");
            // RFC 4724 / RFC 9494 §4.2: while the peer is away, only its stale
            // routes are judged again (those the old policy kept out are stale
            // too: a sweep takes them away with the rest), and long-lived stale ones
            // stay so (or go, if NO_LLGR).
            let away = !self.up.contains(peer);
            let stale = self.stale.get(peer);
            // (In prefix order: the order of import is the order the RIB
            // walks its IPv6 prefixes in.)
            let judged: Vec<(IpNet, Option<Arc<PathAttrs>>)> = kept
                .into_iter()
                .filter(|(prefix, _)| !away || stale.is_none_or(|s| s.prefixes.contains(prefix)))
                .map(|(prefix, attrs)| (prefix, Some(attrs)))
                .collect();
            let long_lived = stale.filter(|s| s.phase == crate::graceful::Phase::LongLived);
            let routes: Vec<_> = judged
                .iter()
                .map(|(prefix, attrs)| match (long_lived, attrs) {
                    (Some(s), Some(attrs)) if s.prefixes.contains(prefix) => {
                        (*prefix, super::stale::long_lived_stale(attrs))
                    }
                    _ => (*prefix, attrs.clone()),
                })
                .collect();
            self.import(peer, &borrowed(&routes));
            // What the Loc-RIB now holds as received needs no copy here.
            if let Some(kept) = self.received.get_mut(peer) {
                kept.imported(&self.rib, &from, &borrowed(&judged));
            }
        } else if import_changed {
            // RFC 2918: the peer resends its routes of each family; the new
            // import policy judges them.
            for family in refresh {
                let ask = RouteRefresh { family, subtype: RefreshSubtype::Request };
                self.tell(peer, PeerCommand::Send(Box::new(Message::RouteRefresh(ask))));
            }
        }
        if export_changed && self.up.contains(peer) {
            self.send_table(peer, true);
        }
    }

    fn peer_event(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Up { peer, negotiated, session, link_local } => {
                // The new session's paths must not be taken for the old one's.
                self.finish_dropping(&peer);
                self.peer_up(&peer, negotiated, session, link_local)
            }
            PeerEvent::Drained { peer } => self.drain(&peer),
            PeerEvent::Down { peer, graceful: Some(retention), .. } => self.peer_restarting(&peer, retention),
            PeerEvent::Down { peer, .. } if self.dynamic.contains(&peer) => {
                // A dynamic neighbour exists while its session does.
                tracing::info!(peer, "dynamic neighbour gone");
                self.remove_neighbor(&peer);
            }
            PeerEvent::Down { peer, .. } => {
                self.set_down(&peer);
                self.stale.remove(&peer);
                self.received.remove(&peer);
                self.drop_paths(&peer);
            }
            PeerEvent::Update { peer, updates } => {
                for update in updates {
                    self.update(&peer, update);
                }
            }
            PeerEvent::RouteRefresh { peer, refresh } => self.route_refresh(&peer, refresh),
        }
    }

    fn peer_up(
        &mut self,
        peer: &str,
        negotiated: Box<Negotiated>,
        number: u64,
        link_local: Option<crate::session::link_local::OnLink>,
    ) {
        let Some(session) = self.neighbors.get_mut(peer) else { return };
        let phase = self.stale.get(peer).map(|s| s.phase).unwrap_or_default();
        let preserved = crate::graceful::forwarding_preserved(&negotiated, phase);
        // RFC 9494 §4.5: long-lived stale routes go only to peers that advertised LLGR.
        session.neighbor.export.long_lived = !negotiated.peer_long_lived.is_empty();
        session.neighbor.export.link_local = link_local.and_then(|l| l.beside(session.neighbor.export.local_addr));
        session.negotiated = Some(negotiated);
        session.session = number;
        self.over_limit.remove(peer);
        self.backlogs.remove(peer);
        self.up.insert(peer.to_string());
        if let Some(session) = self.neighbors.get(peer) {
            self.update_groups.join(peer, session);
        }
        if self.stale.contains_key(peer) && !preserved {
            // RFC 4724 §4.2: the peer lost its forwarding state; its stale routes are void.
            tracing::info!(peer, "peer restarted without its forwarding state: stale routes removed");
            self.stats.stale_flushed_without_forwarding.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.sweep_stale(peer);
        }
        if self.deferral {
            self.check_deferral();
        } else {
            self.send_table_at_end(peer);
        }
    }

    /// Marks `peer` down: it leaves its update group and is owed nothing.
    pub(super) fn set_down(&mut self, peer: &str) {
        self.up.remove(peer);
        self.update_groups.leave(peer);
        self.backlogs.remove(peer);
        self.end_of_rib.remove(peer);
        self.end_of_rib_families.remove(peer);
        if let Some(session) = self.neighbors.get_mut(peer) {
            session.negotiated = None;
        }
    }

    fn add_neighbor(&mut self, mut n: Neighbor) {
        if self.deferral
            && let Some(gr) = &mut n.session.local.graceful_restart
        {
            // RFC 4724 §3: the Restart State bit, while this speaker restarts.
            gr.restarted = true;
        }
        let name = n.session.name.clone();
        let outbox = Arc::new(Outbox::default());
        self.emit(Output::Spawn { config: Box::new(n.session.clone()), outbox: outbox.clone() });
        self.tell(&name, PeerCommand::Start);
        let key = key(&name);
        match key.as_ref() {
            Some(client) if n.export.rr_client => self.rr_clients.insert(client.clone()),
            _ => self.rr_clients.remove(name.as_str()),
        };
        self.neighbors.insert(
            name.clone(),
            Session { neighbor: n, key, outbox, negotiated: None, session: 0, revised: [0; 2], ignored: 0 },
        );
    }

    pub(super) fn remove_neighbor(&mut self, name: &str) {
        let Some(session) = self.neighbors.remove(name) else { return };
        self.rr_clients.remove(name);
        self.tell(name, PeerCommand::Stop { message: "peer removed from the configuration".into() });
        self.emit(Output::Forget { peer: name.to_string(), remote: session.neighbor.session.remote.ip() });
        self.set_down(name);
        self.stale.remove(name);
        self.received.remove(name);
        self.over_limit.remove(name);
        self.dynamic.remove(name);
        tracing::info!(peer = name, "neighbour removed");
        self.drop_paths(name);
    }

    /// Removes every path from `peer`, [`PEER_DOWN_CHUNK`] at a time: the
    /// first chunk now, with the batch under way, then one at each end of
    /// a batch, whose changes go out (to the peers' outboxes and to felix,
    /// which may make the task wait) before the next is made. A full
    /// table's peer going down never holds a million changes at once
    /// (measured: 45 MB of them queued for felix at a million, when the
    /// chunks were all made in one go), and other peers' inputs are
    /// handled meanwhile. The peer's next session waits for the last chunk.
    pub(super) fn drop_paths(&mut self, peer: &str) {
        self.dropping.entry(peer.to_string()).or_insert(None);
        self.drop_chunk(peer);
    }

    /// Removes the next chunk of `peer`'s paths.
    fn drop_chunk(&mut self, peer: &str) {
        let Some(after) = self.dropping.get(peer).copied() else { return };
        let from = key(peer);
        let (changes, next) = self.rib.peer_down_from(&from, after, PEER_DOWN_CHUNK);
        self.changed(changes);
        match next {
            Some(next) => self.dropping.insert(peer.to_string(), Some(next)),
            // A walk resumed among IPv6 prefixes may miss some that other
            // peers' inputs moved meanwhile (`v6_index`): once more from the start.
            None if after.is_some() && self.rib.paths_from(&from) > 0 => self.dropping.insert(peer.to_string(), None),
            None => self.dropping.remove(peer),
        };
    }

    /// Removes what is left of `peer`'s paths at once.
    fn finish_dropping(&mut self, peer: &str) {
        while self.dropping.contains_key(peer) {
            self.flush();
            self.drop_chunk(peer);
        }
    }

    /// A connection from inside a dynamic-neighbour range: a peer for it,
    /// from the range's template, then the connection.
    fn accepted(&mut self, from: SocketAddr) {
        let Some(range) = self.ranges.iter().find(|r| r.range.contains(&from.ip())) else { return };
        let mut n = range.template.clone();
        let name = format!("Dynamic_{}", from.ip().to_string().replace(['.', ':'], "_"));
        n.session.name = name.clone();
        n.session.remote = SocketAddr::new(from.ip(), 179);
        n.session.fsm.passive = true;
        tracing::info!(peer = name, from = %from.ip(), range = %range.range, "dynamic neighbour");
        self.add_neighbor(n);
        self.dynamic.insert(name.clone());
        self.emit(Output::Accept(name));
    }
}
