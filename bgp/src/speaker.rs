//! The speaker: one task, on a thread of its own with its peers' session
//! tasks, that owns the Loc-RIB, learns the peers' routes through the
//! import policy, and sends each up peer the best paths its export rules
//! and policy allow — the whole table
//! when it comes up (or asks with ROUTE-REFRESH, or its export policy
//! changes), then changes. Prefixes sharing an attribute set go out
//! together in one UPDATE (split into as many messages as the size limit
//! needs). A peer that sends more prefixes than its limit is stopped with
//! Cease 6/1 and restarted after a while (RFC 4486).
//!
//! ```text
//!  SpeakerCommand ──▶ ┌──── speaker task ─────┐ ──▶ PeerCommand (start/stop) ──▶ peer tasks
//!  PeerEvent      ──▶ │ SpeakerCore (no I/O): │ ──▶ UPDATEs into each peer's outbox
//!  timers         ──▶ │ LocRib, exports, GR   │ ──▶ SpeakerEvent (for felix)
//!                     └───────────────────────┘
//! ```
//!
//! The rules live in the core (`speaker/core.rs` and the files beside it,
//! by concern); this file holds the public types and the task around it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot, watch};

use crate::packet::PathAttrs;
use crate::rib::decision::Path;
use crate::rib::export::{ExportPeer, Reflector};
use crate::rib::policy::Policy;
use crate::rib::table::{NextHops, Walk};
use crate::session::listener::Listener;
use crate::session::peer::{self, PeerCommand, PeerConfig, PeerEvent, PeerStatus};
use crate::session::socket::SocketError;

mod adj_in;
mod backlog;
mod converge;
mod core;
pub mod counts;
mod groups;
mod import;
mod memo;
#[cfg(test)]
mod replay;
mod routes;
mod send;
mod stale;
mod tables;
use core::{Input, Output, SpeakerCore, Timer};

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
    /// Whether a neighbour can be reached, as BFD says (RFC 5882 §4.1): an
    /// unreachable one's session goes down at once (Cease, BFD Down: RFC
    /// 9384), its routes with it, and it stays down until it is reachable.
    Reachable {
        /// Peer name.
        peer: String,
        /// Reachable or not.
        reachable: bool,
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
    Peers {
        /// The time of asking.
        now: std::time::Instant,
        /// How old the advertised counts may be (they cost a run of the
        /// export over the table; `counts::PERIODIC` for periodic askers).
        max_age: std::time::Duration,
        /// Where the counts go.
        reply: oneshot::Sender<Vec<PeerCounts>>,
    },
    /// The Loc-RIB's best paths: `prefix`'s, or with `None` a page of them
    /// all after `after` (from the first when `None`); ask for the next
    /// page after `RoutesPage::next` until it is `None`. (The speaker's
    /// thread serves the sessions between pages: a full table at once
    /// would hold them up for as long as it takes.)
    Routes {
        /// One prefix, or all.
        prefix: Option<IpNet>,
        /// Where the page starts (from `RoutesPage::next`).
        after: Option<Walk>,
        /// Where the page goes.
        reply: oneshot::Sender<RoutesPage>,
    },
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
    /// Malformed attributes whose UPDATE's routes were treated as withdrawn
    /// (RFC 7606 §2), since the neighbour was configured.
    pub treated_as_withdraw: u64,
    /// Malformed attributes discarded (RFC 7606 §2), since then.
    pub attributes_discarded: u64,
    /// Routes ignored for an unusable NEXT_HOP (RFC 4271 §6.3), since then.
    pub next_hop_ignored: u64,
}

/// One prefix of the Loc-RIB with its multipath set, best first.
#[derive(Debug, Clone)]
pub struct RouteView {
    /// The prefix.
    pub prefix: IpNet,
    /// (peer name or `None` for our own, path).
    pub paths: Vec<(Option<String>, Path)>,
}

/// A page of the Loc-RIB's best paths, in the RIB's order: IPv4 prefixes
/// in order, then IPv6 ones in the RIB's own order (a walk resumed may
/// meet one of those twice, after the RIB moved it).
#[derive(Debug, Default)]
pub struct RoutesPage {
    /// The routes.
    pub routes: Vec<RouteView>,
    /// Where the next page starts; `None` after the last.
    pub next: Option<Walk>,
}

/// What the speaker tells its user (felix, through the node).
#[derive(Debug)]
pub enum SpeakerEvent {
    /// Best-path changes, as forwarding needs them: each changed prefix with
    /// its next hops ([`crate::rib::table::BestChange::next_hops`]; none: no
    /// learned route). A batch comes as one or more of these in order, each
    /// at most 512 routes (kept under malloc's mmap threshold); a later
    /// change of a prefix comes after an earlier one. Made and dropped by the speaker's own task:
    /// the paths' shared counts never go back and forth between threads.
    Best(Vec<(IpNet, NextHops)>),
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
    /// Closed when the speaker's thread ends: its sessions and listeners
    /// are gone (the last command sender went, or it panicked).
    ended: watch::Receiver<()>,
}

impl SpeakerHandle {
    /// Resolves once the speaker's thread has ended, its sockets closed.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut ended = self.ended.clone();
        async move { while ended.changed().await.is_ok() {} }
    }
}

/// Speaker counters (for metrics and tests).
#[derive(Debug, Default)]
pub struct SpeakerStats {
    /// UPDATEs encoded for update groups.
    pub group_updates_encoded: AtomicU64,
    /// Copies of them written to group members.
    pub group_updates_sent: AtomicU64,
    /// Peers handed a whole table encoded once for several that came up
    /// together (`speaker::tables`).
    pub tables_shared: AtomicU64,
    /// Restarted peers whose stale routes went at once: their new OPEN did
    /// not say forwarding state was preserved (RFC 4724 §4.2).
    pub stale_flushed_without_forwarding: AtomicU64,
    /// Route-selection deferrals ended (RFC 4724 §4.1), by End-of-RIB or timer.
    pub deferrals_ended: AtomicU64,
}

/// Channel sizes: commands, timers, accepted connections…
const BUFFER: usize = 1024;
/// …and peer events. An event is up to `UPDATES_PER_EVENT` UPDATEs of at
/// most two standard messages' octets together, so the 256 queued hold no
/// more octets, decoded, than 1,024 single UPDATEs did (each session
/// waiting for room holds one event more); Up, Down and Drained events
/// share the room.
const EVENTS: usize = 256;

/// Peer events taken into one batch of best-path changes at most…
const BATCH_EVENTS: usize = 256;
/// …and changes (past this, the batch goes out). A batch in flight is held
/// twice (the changes and their coalesced copy, ~250 octets a change): an
/// IPv6 UPDATE carries hundreds of prefixes, and at 16 Ki changes a batch
/// was 40 % of the speaker's peak heap for a 200,000-prefix table, for no
/// CPU saved (docs/benchmarks.md).
const BATCH_CHANGES: usize = 1024;

/// The I/O around the core: channels, session tasks, the listeners, timers.
struct Shell {
    /// One per address family at most (a node's IPv4 and IPv6 addresses).
    listeners: Vec<Listener>,
    /// The running session tasks' command queues, by peer name.
    peers: HashMap<String, mpsc::Sender<PeerCommand>>,
    statuses: Arc<Mutex<HashMap<String, watch::Receiver<PeerStatus>>>>,
    events_tx: mpsc::Sender<PeerEvent>,
    timers_tx: mpsc::Sender<Timer>,
    dynamic_tx: mpsc::Sender<(tokio::net::TcpStream, SocketAddr)>,
    best_tx: mpsc::Sender<SpeakerEvent>,
}

/// Why the speaker did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be opened.
    #[error(transparent)]
    Listen(#[from] SocketError),
    /// Its thread or runtime could not be made.
    #[error("starting the speaker's thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Starts the speaker, listening on each address of `listen` (one per
/// family) for peers that dial in; best-path changes go to `best` in
/// chunks of a batch (felix installs them).
///
/// The speaker and its sessions run on a thread of their own, one
/// runtime for all of them, in the network namespace of the thread that
/// first polls this: a session's events reach the core, and the core's
/// UPDATEs its writer, without waking another thread (on a runtime shared
/// with felix and the datastore, such wakes through the kernel took a fifth
/// of the speaker's threads' time on a full table). The thread ends, and
/// [`SpeakerHandle::stopped`] resolves, once every command sender is gone.
pub async fn spawn(
    router_id: Ipv4Addr,
    max_paths: usize,
    best: mpsc::Sender<SpeakerEvent>,
    listen: impl IntoIterator<Item = SocketAddr>,
) -> Result<SpeakerHandle, StartError> {
    let listen: Vec<SocketAddr> = listen.into_iter().collect();
    let (commands, commands_rx) = mpsc::channel(BUFFER);
    let statuses = Arc::new(Mutex::new(HashMap::new()));
    let stats = Arc::new(SpeakerStats::default());
    let (started_tx, started_rx) = oneshot::channel();
    let core = SpeakerCore::new(router_id, max_paths, stats.clone());
    let shown = statuses.clone();
    let (ending, ended) = watch::channel(());
    std::thread::Builder::new().name("bgp-speaker".into()).spawn(move || {
        // Dropped last, after the runtime and with it every socket.
        let _ending = ending;
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => return drop(started_tx.send(Err(StartError::Thread(e)))),
        };
        runtime.block_on(async move {
            match listen.into_iter().map(Listener::bind).collect::<Result<Vec<_>, _>>() {
                Ok(listeners) => {
                    let _ = started_tx.send(Ok(()));
                    run(core, listeners, shown, best, commands_rx).await;
                }
                Err(e) => drop(started_tx.send(Err(e.into()))),
            }
        });
    })?;
    let gone = || StartError::Thread(std::io::Error::other("the speaker's thread ended as it started"));
    started_rx.await.unwrap_or_else(|_| Err(gone()))?;
    Ok(SpeakerHandle { commands, peers: statuses, stats, ended })
}

/// The speaker's loop: inputs to the core in batches, its outputs carried
/// out, until the commands' senders are all gone.
async fn run(
    mut core: SpeakerCore,
    listeners: Vec<Listener>,
    statuses: Arc<Mutex<HashMap<String, watch::Receiver<PeerStatus>>>>,
    best: mpsc::Sender<SpeakerEvent>,
    mut commands_rx: mpsc::Receiver<SpeakerCommand>,
) {
    let (events_tx, mut events_rx) = mpsc::channel(EVENTS);
    let (timers_tx, mut timers_rx) = mpsc::channel(BUFFER);
    let (dynamic_tx, mut dynamic_rx) = mpsc::channel(BUFFER);
    let mut shell =
        Shell { listeners, peers: HashMap::new(), statuses, events_tx, timers_tx, dynamic_tx, best_tx: best };
    loop {
        let mut accepted = None;
        let mut out = tokio::select! {
            cmd = commands_rx.recv() => match cmd {
                Some(cmd) => core.handle(Input::Command(cmd)),
                None => return,
            },
            Some(event) = events_rx.recv() => core.handle(Input::Peer(event)),
            Some((stream, from)) = dynamic_rx.recv() => {
                accepted = Some(stream);
                core.handle(Input::Accepted(from))
            }
            Some(timer) = timers_rx.recv() => core.handle(Input::Timer(timer)),
            // A peer's paths still going, a count: the next chunk, at this
            // batch's end, once the runtime has run what waits (the
            // sessions' tasks, which this one woke).
            () = tokio::task::yield_now(), if core.unfinished() => Vec::new(),
        };
        // What the peers have sent meanwhile joins this batch: one
        // export, one encoding per update group and one hand-off to felix
        // for many UPDATEs (a table mostly arrives one prefix per UPDATE).
        let mut budget = BATCH_EVENTS;
        while budget > 0
            && core.pending() < BATCH_CHANGES
            && let Ok(event) = events_rx.try_recv()
        {
            out.extend(core.handle(Input::Peer(event)));
            budget -= 1;
        }
        out.extend(core.handle(Input::EndOfBatch));
        for output in out {
            shell.carry_out(output, &mut accepted).await;
        }
    }
}

impl Shell {
    /// The listener of `addr`'s family.
    fn listener(&self, addr: IpAddr) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.local_addr().is_ok_and(|a| a.is_ipv4() == addr.is_ipv4()))
    }

    /// Does what the core asked; `accepted` is the connection of an
    /// [`Input::Accepted`] in this batch.
    async fn carry_out(&mut self, output: Output, accepted: &mut Option<tokio::net::TcpStream>) {
        match output {
            Output::Spawn { config, outbox } => {
                let name = config.name.clone();
                let handle = peer::spawn_with((*config).clone(), self.events_tx.clone(), outbox);
                if let Some(listener) = self.listener(config.remote.ip())
                    && let Err(e) = listener.add_peer(config.remote.ip(), &config.socket, handle.commands.clone())
                {
                    tracing::error!(peer = name, error = %e, "cannot accept connections from this peer");
                }
                self.statuses.lock().unwrap_or_else(|p| p.into_inner()).insert(name.clone(), handle.status);
                self.peers.insert(name, handle.commands);
            }
            Output::Peer(name, command) => {
                if let Some(commands) = self.peers.get(&name) {
                    let _ = commands.send(command).await;
                }
            }
            Output::Accept(name) => {
                if let (Some(stream), Some(commands)) = (accepted.take(), self.peers.get(&name)) {
                    let _ = commands.send(PeerCommand::Incoming(stream)).await;
                }
            }
            Output::Forget { peer, remote } => {
                if let Some(listener) = self.listener(remote)
                    && let Err(e) = listener.remove_peer(remote)
                {
                    tracing::warn!(peer, error = %e, "removing the peer from the listener");
                }
                self.statuses.lock().unwrap_or_else(|p| p.into_inner()).remove(&peer);
                self.peers.remove(&peer);
            }
            Output::Listen(range) => match self.listener(range.addr()) {
                Some(listener) => {
                    tracing::info!(%range, "accepting dynamic neighbours");
                    listener.add_range(range, self.dynamic_tx.clone());
                }
                None => tracing::warn!(%range, "dynamic neighbours need a listener; range ignored"),
            },
            Output::Timer { after, timer } => {
                let tx = self.timers_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = tx.send(timer).await;
                });
            }
            Output::Event(event) => {
                let _ = self.best_tx.send(event).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The speaker's thread ends with its last command sender, and a
    /// listener that cannot bind is refused at start.
    #[tokio::test]
    async fn the_thread_ends_with_the_last_command_sender_and_a_bad_listener_is_refused() {
        let (best, _best_rx) = mpsc::channel(1);
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let speaker = spawn(Ipv4Addr::new(192, 0, 2, 1), 1, best.clone(), [listen]).await.expect("starts");
        let stopped = speaker.stopped();
        let commands = speaker.commands.clone();
        drop(speaker);
        let running = tokio::time::timeout(Duration::from_millis(200), commands.closed()).await;
        assert!(running.is_err(), "a command sender is left: the speaker runs on");
        drop(commands);
        tokio::time::timeout(Duration::from_secs(5), stopped).await.expect("the thread ended");

        // A port another socket listens on: the bind fails and says so.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = taken.local_addr().expect("its address");
        match spawn(Ipv4Addr::new(192, 0, 2, 1), 1, best, [port]).await {
            Err(StartError::Listen(e)) => assert!(e.to_string().contains("binding the listener"), "{e}"),
            other => panic!("expected a listener error, got {:?}", other.map(|_| ())),
        }
    }
}
