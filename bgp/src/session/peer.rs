//! The session runtime: one tokio task per peer. It owns the peer's
//! connection(s) and timers, feeds the FSM events and carries out its
//! actions, frames messages with the codec, and reports status and routes
//! on bounded channels.
//!
//! Collisions (RFC 4271 §6.8): a second connection from the peer gets its
//! own FSM; when an OPEN arrives while both exist, [`collision_winner`]
//! decides and the loser is sent Cease 6/7.
//!
//! The speaker's UPDATEs come through the peer's [`Outbox`], which the
//! task drains at the socket's pace while it goes on reading, so the
//! speaker never waits on this peer and a peer that stops reading stalls
//! only its own session, until the send hold timer closes it (RFC 9687).
//!
//! ```text
//!  commands ──▶ ┌──────────── peer task ────────────┐ ──▶ events (Up, Down, Update, Drained)
//!  (start, stop,│ Link{FSM, socket, timers} (main)  │
//!   incoming)   │ Link{FSM, socket, timers} (second)│ ──▶ status (watch)
//!  Outbox ────▶ └───────────────────────────────────┘
//! ```

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::codec::Framed;

use super::framing::{close_gracefully, framed, take_buffered_updates};
use super::fsm::{Action, Event, Fsm, FsmConfig, Reason, State, Timer, collision_winner, notification_words};
use super::negotiate::{LocalConfig, Negotiated};
use super::outbox::{Outbox, Taken};
use super::send_hold::SendHold;
use super::socket::{self, SocketError, SocketOptions};
use crate::packet::{BgpCodec, CodecError, Message, RouteRefresh, Update};

/// Commands a peer task obeys.
#[derive(Debug)]
pub enum PeerCommand {
    /// Enable the peer (ManualStart).
    Start,
    /// Disable it with a shutdown message (ManualStop, Cease 6/2).
    Stop {
        /// RFC 9003 shutdown communication.
        message: String,
    },
    /// Reset the session (Cease 6/4 with a message), then start again.
    Reset {
        /// RFC 9003 shutdown communication.
        message: String,
    },
    /// Stop the session on the system's behalf (AutomaticStop, Cease `subcode`).
    AutoStop {
        /// Cease subcode, e.g. 1 for the prefix limit (RFC 4486).
        subcode: u8,
    },
    /// Start it again on the system's behalf (AutomaticStart).
    AutoStart,
    /// A connection the speaker's listener accepted from this peer.
    Incoming(TcpStream),
    /// Send a message now, ahead of what waits in the outbox.
    Send(Box<Message>),
    /// The speaker's graceful restart is over: OPENs from now on carry no
    /// Restart State bit (RFC 4724 §4.1).
    EndRestart,
}

/// What a peer reports to the rest of the speaker.
#[derive(Debug, Clone)]
pub enum PeerEvent {
    /// The session came up.
    Up {
        /// Peer name.
        peer: String,
        /// The terms.
        negotiated: Box<Negotiated>,
        /// Its number: what the speaker pushes to the outbox names it.
        session: u64,
        /// The link to the peer, when the session runs over IPv6 on a
        /// subnet we share (RFC 2545 §3).
        link_local: Option<super::link_local::OnLink>,
    },
    /// The session went down (its routes are gone).
    Down {
        /// Peer name.
        peer: String,
        /// Why, in words.
        reason: String,
        /// RFC 4724: the connection just dropped (no NOTIFICATION) and the
        /// peer can restart gracefully: keep its routes, stale, this long.
        graceful: Option<crate::graceful::Retention>,
    },
    /// UPDATEs from an established session, in the order received: those
    /// read together (a table arrives back to back) go as one event.
    Update {
        /// Peer name.
        peer: String,
        /// The UPDATEs.
        updates: Vec<Update>,
    },
    /// The peer asked for our routes again.
    RouteRefresh {
        /// Peer name.
        peer: String,
        /// What it asked for.
        refresh: RouteRefresh,
    },
    /// The outbox emptied after refusing the speaker's pushes: what the
    /// speaker kept back for this peer may go now.
    Drained {
        /// Peer name.
        peer: String,
    },
}

/// One peer's configuration.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Name for logs and status.
    pub name: String,
    /// The peer's address and port.
    pub remote: SocketAddr,
    /// Local address to connect from.
    pub local_addr: Option<IpAddr>,
    /// Our side of the session.
    pub local: LocalConfig,
    /// Timers and FSM options.
    pub fsm: FsmConfig,
    /// MD5, GTSM, TTL.
    pub socket: SocketOptions,
}

/// A peer's state for `tortie status`.
#[derive(Debug, Clone)]
pub struct PeerStatus {
    /// FSM state (of the connection that got furthest).
    pub state: State,
    /// When it entered this state.
    pub since: SystemTime,
    /// The last error, as BIRD words it.
    pub last_error: Option<String>,
    /// Terms, while up.
    pub negotiated: Option<Negotiated>,
    /// Messages received / sent.
    pub messages_in: u64,
    /// Messages sent.
    pub messages_out: u64,
    /// UPDATEs received.
    pub updates_in: u64,
    /// UPDATEs sent.
    pub updates_out: u64,
    /// Last NOTIFICATION we sent, in words.
    pub last_notification_sent: Option<String>,
    /// Last NOTIFICATION we received, in words.
    pub last_notification_received: Option<String>,
}

impl Default for PeerStatus {
    fn default() -> PeerStatus {
        PeerStatus {
            state: State::Idle,
            since: SystemTime::now(),
            last_error: None,
            negotiated: None,
            messages_in: 0,
            messages_out: 0,
            updates_in: 0,
            updates_out: 0,
            last_notification_sent: None,
            last_notification_received: None,
        }
    }
}

/// The handle the speaker keeps for a peer task.
pub struct PeerHandle {
    /// Commands (bounded).
    pub commands: mpsc::Sender<PeerCommand>,
    /// The latest status. A change of state (with its negotiated terms,
    /// or an error) wakes `changed()`; the message counters are updated in
    /// place without a wake-up, read with `borrow()`.
    pub status: watch::Receiver<PeerStatus>,
    /// Where the speaker's UPDATEs wait for the socket.
    pub outbox: Arc<Outbox>,
    /// The task; it ends when `commands` is dropped.
    pub task: tokio::task::JoinHandle<()>,
}

/// Commands buffered per peer.
const COMMAND_BUFFER: usize = 64;

/// Starts the task of one peer. It begins Idle: send [`PeerCommand::Start`].
pub fn spawn(config: PeerConfig, events: mpsc::Sender<PeerEvent>) -> PeerHandle {
    spawn_with(config, events, Arc::default())
}

/// [`spawn`], writing the UPDATEs the speaker queues in `outbox`.
pub fn spawn_with(config: PeerConfig, events: mpsc::Sender<PeerEvent>, outbox: Arc<Outbox>) -> PeerHandle {
    let (commands, rx) = mpsc::channel(COMMAND_BUFFER);
    let (status_tx, status) = watch::channel(PeerStatus::default());
    let main = Link::new(&config, true);
    let runner = Runner {
        config,
        main,
        second: None,
        events,
        status: status_tx,
        commands: rx,
        deferred: VecDeque::new(),
        outbox: outbox.clone(),
        sessions: 0,
    };
    PeerHandle { commands, status, outbox, task: tokio::spawn(runner.run()) }
}

type Connecting = Pin<Box<dyn Future<Output = Result<TcpStream, SocketError>> + Send>>;

/// One connection attempt and its FSM.
struct Link {
    fsm: Fsm,
    framed: Option<Framed<TcpStream, BgpCodec>>,
    connecting: Option<Connecting>,
    timers: [Option<Instant>; 6],
    /// We dialled it (true) or the peer did.
    outgoing: bool,
    /// RFC 9687: what we have to send must move.
    send_hold: SendHold,
}

const TIMERS: [Timer; 6] =
    [Timer::ConnectRetry, Timer::Hold, Timer::Keepalive, Timer::DelayOpen, Timer::IdleHold, Timer::Stable];

/// What happened on a link.
enum LinkInput {
    Connected(Result<TcpStream, SocketError>),
    Received(Option<Result<Message, CodecError>>),
    Timer(Timer),
    /// Messages from the outbox went into the write buffer.
    Sent(usize),
    /// The outbox emptied after refusing pushes.
    Drained(usize),
    /// The outbox got something to write.
    Queued,
    /// Writing failed.
    WriteFailed(CodecError),
    /// Nothing we had to send moved for the send hold time (RFC 9687).
    SendHoldExpired,
}

/// Our link-local address towards the peer of an IPv6 connection on a
/// shared subnet.
fn on_link(stream: &TcpStream) -> Option<super::link_local::OnLink> {
    match (stream.local_addr().ok()?.ip(), stream.peer_addr().ok()?.ip()) {
        (std::net::IpAddr::V6(local), std::net::IpAddr::V6(peer)) => super::link_local::towards(local, peer),
        _ => None,
    }
}

/// One step of a connection's I/O: [`poll_write`], then a read.
/// Cancel-safe: its state is the buffers and the queue.
fn poll_io(
    framed: &mut Framed<TcpStream, BgpCodec>,
    outbox: Option<&Outbox>,
    send_hold: (&mut SendHold, Duration),
    cx: &mut Context<'_>,
) -> Poll<LinkInput> {
    if let Poll::Ready(input) = poll_write(framed, outbox, send_hold, cx) {
        return Poll::Ready(input);
    }
    framed.poll_next_unpin(cx).map(LinkInput::Received)
}

/// What the socket takes of our own messages (the write buffer) and of
/// the outbox (if given: written from the queue itself, vectored, no
/// copy); a message partly written goes on before anything else. Pending
/// when nothing was sent and nothing went wrong: the socket is full (its
/// writability will wake the task) or nothing waits.
fn poll_write(
    framed: &mut Framed<TcpStream, BgpCodec>,
    outbox: Option<&Outbox>,
    send_hold: (&mut SendHold, Duration),
    cx: &mut Context<'_>,
) -> Poll<LinkInput> {
    let (mut sent, mut drained, mut progress, mut blocked) = (0, false, false, false);
    loop {
        let queued = outbox.filter(|o| !o.is_empty());
        if !framed.write_buffer().is_empty() && !queued.is_some_and(Outbox::mid_message) {
            let before = framed.write_buffer().len();
            match SinkExt::<Bytes>::poll_flush_unpin(framed, cx) {
                Poll::Ready(Ok(())) => progress = true,
                Poll::Ready(Err(e)) => return Poll::Ready(LinkInput::WriteFailed(e)),
                Poll::Pending => {
                    progress |= framed.write_buffer().len() < before;
                    blocked = true;
                    break;
                }
            }
            continue;
        }
        let Some(out) = queued else { break };
        let messages = out.peek();
        let slices: Vec<std::io::IoSlice<'_>> = messages.iter().map(|m| std::io::IoSlice::new(m)).collect();
        match Pin::new(framed.get_mut()).poll_write_vectored(cx, &slices) {
            Poll::Ready(Ok(0)) => {
                return Poll::Ready(LinkInput::WriteFailed(std::io::Error::from(std::io::ErrorKind::WriteZero).into()));
            }
            Poll::Ready(Ok(n)) => {
                let (done, taken) = out.consume(n);
                sent += done;
                drained |= taken == Taken::Drained;
                progress = true;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(LinkInput::WriteFailed(e.into())),
            Poll::Pending => {
                blocked = true;
                break;
            }
        }
    }
    // RFC 9687: the send hold timer runs from the last progress while something waits.
    let (timer, hold) = send_hold;
    if timer.step(blocked, progress, hold, cx) {
        return Poll::Ready(LinkInput::SendHoldExpired);
    }
    if drained {
        return Poll::Ready(LinkInput::Drained(sent));
    }
    if sent > 0 {
        return Poll::Ready(LinkInput::Sent(sent));
    }
    Poll::Pending
}

impl Link {
    fn new(config: &PeerConfig, outgoing: bool) -> Link {
        Link {
            fsm: Fsm::new(config.fsm.clone(), config.local.clone()),
            framed: None,
            connecting: None,
            timers: [None; 6],
            outgoing,
            send_hold: SendHold::new(),
        }
    }

    fn next_timer(&self) -> Option<(Timer, Instant)> {
        TIMERS.iter().zip(self.timers).filter_map(|(t, at)| at.map(|at| (*t, at))).min_by_key(|(_, at)| *at)
    }

    /// Waits for the next thing to happen on this link (cancel-safe);
    /// `outbox` is drained into the socket when given (the main link, Established).
    async fn next(&mut self, outbox: Option<&Outbox>) -> LinkInput {
        let timer = self.next_timer();
        let hold = self.fsm.send_hold();
        let Link { framed, connecting, timers, send_hold, .. } = self;
        tokio::select! {
            result = async { connecting.as_mut().expect("guarded").await }, if connecting.is_some() => {
                *connecting = None;
                LinkInput::Connected(result)
            }
            input = std::future::poll_fn(|cx| poll_io(framed.as_mut().expect("guarded"), outbox, (&mut *send_hold, hold), cx)), if framed.is_some() => input,
            () = async { tokio::time::sleep_until(timer.map_or_else(Instant::now, |(_, at)| at)).await }, if timer.is_some() => {
                let t = timer.map_or(Timer::Hold, |(t, _)| t);
                timers[t as usize] = None;
                LinkInput::Timer(t)
            }
            () = async { outbox.expect("guarded").queued.notified().await }, if outbox.is_some() => LinkInput::Queued,
            // Idle with nothing running: nothing can happen on this link until a command arrives.
            else => std::future::pending().await,
        }
    }
}

struct Runner {
    config: PeerConfig,
    main: Link,
    /// A second connection while a collision is resolved (RFC 4271 §6.8):
    /// boxed, so the rare case costs no room in every session task.
    second: Option<Box<Link>>,
    events: mpsc::Sender<PeerEvent>,
    status: watch::Sender<PeerStatus>,
    commands: mpsc::Receiver<PeerCommand>,
    /// Commands taken while an event waited for room (see `report`), in order.
    deferred: VecDeque<PeerCommand>,
    /// The speaker's UPDATEs for this peer.
    outbox: Arc<Outbox>,
    /// Sessions established so far (each one's number opens the outbox).
    sessions: u64,
}

/// Which link an event belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Main,
    Second,
}

impl Runner {
    async fn run(mut self) {
        loop {
            // Commands' futures boxed: the task's allocation (one per
            // session: thousands on a reflector) holds only the common path.
            if let Some(cmd) = self.deferred.pop_front() {
                Box::pin(self.command(cmd)).await;
                continue;
            }
            let outbox = (self.main.fsm.state() == State::Established).then_some(&*self.outbox);
            let (which, input) = tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => {
                        Box::pin(self.command(cmd)).await;
                        continue;
                    }
                    None => return,
                },
                input = self.main.next(outbox) => (Which::Main, input),
                input = async { self.second.as_mut().expect("guarded").next(None).await }, if self.second.is_some() => (Which::Second, input),
            };
            let event = match input {
                LinkInput::Connected(Ok(stream)) => {
                    self.link(which).framed = Some(framed(stream));
                    Event::TcpConnected
                }
                LinkInput::Connected(Err(e)) => {
                    self.note_error(format!("Socket: {}", e.to_string().rsplit(": ").next().unwrap_or_default()));
                    Event::TcpConnectionFails
                }
                LinkInput::Timer(t) => Event::TimerExpired(t),
                LinkInput::Queued => continue,
                LinkInput::Sent(n) => {
                    self.count_sent(n);
                    continue;
                }
                LinkInput::Drained(n) => {
                    self.count_sent(n);
                    self.report(PeerEvent::Drained { peer: self.config.name.clone() }).await;
                    continue;
                }
                LinkInput::WriteFailed(e) => {
                    self.note_error(format!("Socket: {e}"));
                    Event::TcpConnectionFails
                }
                LinkInput::SendHoldExpired => {
                    let send_hold = self.link(which).fsm.send_hold();
                    tracing::warn!(peer = %self.config.name, ?send_hold, queued = self.outbox.queued_bytes(), "the peer took nothing we sent for the send hold time: closing (RFC 9687)");
                    Event::SendHoldTimerExpired
                }
                LinkInput::Received(None) => Event::TcpConnectionFails,
                LinkInput::Received(Some(Err(CodecError::Decode(e)))) => Event::MessageError(e),
                LinkInput::Received(Some(Err(e))) => {
                    self.note_error(format!("Socket: {e}"));
                    Event::TcpConnectionFails
                }
                LinkInput::Received(Some(Ok(message))) => match self.received(which, message).await {
                    Some(event) => event,
                    None => continue,
                },
            };
            self.handle(which, event).await;
        }
    }

    fn link(&mut self, which: Which) -> &mut Link {
        match (which, self.second.as_mut()) {
            (Which::Second, Some(l)) => l,
            _ => &mut self.main,
        }
    }

    /// Messages from the outbox are UPDATEs but for the rare End-of-RIB
    /// framing (ROUTE-REFRESH markers), counted as UPDATEs too.
    fn count_sent(&mut self, n: usize) {
        self.count(|s| {
            s.messages_out += n as u64;
            s.updates_out += n as u64;
        });
    }

    /// Updates the status's message counters without waking its watchers:
    /// they are read when asked for (a table is hundreds of thousands of
    /// messages, each a wake-up otherwise).
    fn count(&self, f: impl FnOnce(&mut PeerStatus)) {
        self.status.send_if_modified(|s| {
            f(s);
            false
        });
    }

    fn note_error(&mut self, error: String) {
        self.status.send_modify(|s| s.last_error = Some(error));
    }

    async fn command(&mut self, cmd: PeerCommand) {
        match cmd {
            PeerCommand::Start => self.handle(Which::Main, Event::ManualStart).await,
            PeerCommand::Stop { message } => {
                if self.second.is_some() {
                    self.handle(Which::Second, Event::ManualStop { message: message.clone() }).await;
                    self.second = None;
                }
                self.handle(Which::Main, Event::ManualStop { message }).await;
            }
            PeerCommand::Reset { message } => self.handle(Which::Main, Event::ManualReset { message }).await,
            PeerCommand::AutoStop { subcode } => self.handle(Which::Main, Event::AutomaticStop { subcode }).await,
            PeerCommand::AutoStart => self.handle(Which::Main, Event::AutomaticStart).await,
            PeerCommand::EndRestart => {
                self.config.local.end_restart();
                self.main.fsm.end_restart();
                if let Some(second) = &mut self.second {
                    second.fsm.end_restart();
                }
            }
            PeerCommand::Incoming(stream) => self.incoming(stream).await,
            PeerCommand::Send(message) => {
                if self.main.fsm.state() == State::Established {
                    self.send(Which::Main, *message);
                }
            }
        }
    }

    /// A connection from the peer: take it if we have none going, run it
    /// beside ours if ours is still opening (collision), refuse it otherwise.
    async fn incoming(&mut self, stream: TcpStream) {
        let peer = self.config.remote.ip();
        if let Err(e) = socket::protect(&stream, peer, &self.config.socket) {
            tracing::warn!(peer = %self.config.name, error = %e, "cannot protect an incoming connection; refused");
            return;
        }
        if self.main.fsm.state() == State::Idle {
            // Waiting to dial again after a failure: the peer's own connection is taken.
            self.handle(Which::Main, Event::AutomaticStartPassive).await;
        }
        match self.main.fsm.state() {
            State::Connect | State::Active => {
                // Our dial (if any) is abandoned: the peer's connection is up already.
                self.main.connecting = None;
                self.main.framed = Some(framed(stream));
                self.main.outgoing = false;
                self.handle(Which::Main, Event::TcpConnected).await;
            }
            State::OpenSent | State::OpenConfirm if self.second.is_none() => {
                let mut link = Link::new(&self.config, false);
                link.framed = Some(framed(stream));
                self.second = Some(Box::new(link));
                self.handle(Which::Second, Event::ManualStart).await;
                self.handle(Which::Second, Event::TcpConnected).await;
            }
            // A stopped peer refuses connections (RFC 4271 §8.2.2); an Established session wins.
            _ => {
                tracing::info!(peer = %self.config.name, state = ?self.main.fsm.state(), "refused a connection from the peer")
            }
        }
    }

    /// Hands `event` to the speaker. While the speaker's queue is full this
    /// peer goes on writing the UPDATEs the speaker gives it: a speaker
    /// waiting to hand this peer an UPDATE and this peer waiting to hand the
    /// speaker one would otherwise wait for each other for ever (as 100
    /// senders each also receiving the others' routes showed). Any other
    /// command waits, in order with everything after it, until the event
    /// is handed over; the command queue is drained all the same, so the
    /// speaker never waits on this peer while this peer waits on it.
    ///
    /// The outbox goes on into the socket meanwhile (a reflector's 5,000
    /// sessions waiting here held up to 4.9 million queued UPDATEs); a
    /// failed write or the send hold timer is left to the link's next step.
    async fn report(&mut self, event: PeerEvent) {
        let events = self.events.clone();
        let mut next = Some(event);
        let mut write = true;
        while let Some(event) = next.take() {
            // One reservation for the whole wait: its place in the queue is kept.
            let reserve = events.reserve();
            tokio::pin!(reserve);
            let mut drained = false;
            loop {
                let established = self.main.fsm.state() == State::Established;
                let outbox = (write && established).then_some(&*self.outbox);
                let hold = self.main.fsm.send_hold();
                let Link { framed, send_hold, .. } = &mut self.main;
                tokio::select! {
                    permit = &mut reserve => {
                        if let Ok(permit) = permit {
                            permit.send(event);
                        }
                        break;
                    }
                    Some(cmd) = self.commands.recv() => match cmd {
                        PeerCommand::Send(_) | PeerCommand::EndRestart if self.deferred.is_empty() => {
                            // Boxed: a command is rare here, and its future would
                            // otherwise sit in every session task's allocation.
                            Box::pin(self.command(cmd)).await;
                        }
                        other => self.deferred.push_back(other),
                    },
                    input = std::future::poll_fn(|cx| poll_write(framed.as_mut().expect("guarded"), outbox, (&mut *send_hold, hold), cx)), if outbox.is_some() && framed.is_some() => match input {
                        LinkInput::Sent(n) => self.count_sent(n),
                        LinkInput::Drained(n) => {
                            self.count_sent(n);
                            drained = true;
                        }
                        _ => write = false,
                    },
                    () = async { outbox.expect("guarded").queued.notified().await }, if outbox.is_some() => {}
                }
            }
            // The queue emptied after the peer was behind: the speaker hears it next.
            next = drained.then(|| PeerEvent::Drained { peer: self.config.name.clone() });
        }
    }

    /// Bookkeeping for a received message; returns its FSM event.
    async fn received(&mut self, which: Which, message: Message) -> Option<Event> {
        let name = self.config.name.clone();
        self.count(|s| s.messages_in += 1);
        Some(match message {
            Message::Open(open) => {
                // A surviving second link is `main` now; `link(Second)` falls back to it.
                if !self.resolve_collision(which, &open).await {
                    return None;
                }
                Event::OpenReceived(open)
            }
            Message::Keepalive => Event::KeepaliveReceived,
            Message::Notification(n) => {
                let words = notification_words(&n);
                self.status.send_modify(|s| s.last_notification_received = Some(words));
                Event::NotificationReceived(n)
            }
            Message::Update(update) => {
                let mut updates = vec![update];
                let established = self.link(which).fsm.state() == State::Established;
                // Those already read follow it, with no trip through the I/O select.
                if established && let Some(framed) = self.link(which).framed.as_mut() {
                    take_buffered_updates(framed, &mut updates);
                }
                let n = updates.len() as u64;
                self.count(|s| {
                    s.messages_in += n - 1;
                    s.updates_in += n;
                });
                if established {
                    self.report(PeerEvent::Update { peer: name, updates }).await;
                }
                // One event for them all: each would restart the hold timer at this same instant.
                Event::UpdateReceived
            }
            Message::RouteRefresh(refresh) => {
                if self.link(which).fsm.state() == State::Established {
                    self.report(PeerEvent::RouteRefresh { peer: name, refresh }).await;
                }
                Event::UpdateReceived
            }
        })
    }

    /// RFC 4271 §6.8: with two connections, the OPEN's identifier decides
    /// which one lives; the loser gets OpenCollisionDump (Cease 6/7).
    /// Returns whether the link the OPEN arrived on (`which`) survives; a
    /// surviving second link becomes the main one.
    async fn resolve_collision(&mut self, which: Which, open: &crate::packet::Open) -> bool {
        if self.second.is_none() {
            return true;
        }
        let keep_ours = collision_winner(self.config.local.bgp_id, self.config.local.asn, open.bgp_id, open.asn());
        // Keep the connection we dialled if we win, the peer's if it wins.
        let main_survives = self.main.outgoing == keep_ours;
        tracing::info!(peer = %self.config.name, kept = if keep_ours { "ours" } else { "the peer's" }, "connection collision resolved");
        if main_survives {
            self.handle(Which::Second, Event::OpenCollisionDump).await;
            self.second = None;
        } else {
            self.handle(Which::Main, Event::OpenCollisionDump).await;
            if let Some(second) = self.second.take() {
                self.main = *second;
            }
        }
        main_survives == (which == Which::Main)
    }

    /// Puts `message` in the link's write buffer (the link's I/O writes it).
    fn send(&mut self, which: Which, message: Message) {
        let Some(framed) = self.link(which).framed.as_mut() else { return };
        let tx = framed.codec().tx;
        let result = message.encode(&tx, framed.write_buffer_mut());
        let is_update = matches!(message, Message::Update(_));
        match result {
            Ok(()) => self.count(|s| {
                s.messages_out += 1;
                s.updates_out += u64::from(is_update);
            }),
            Err(e) => tracing::warn!(peer = %self.config.name, error = %e, "cannot encode a message"),
        }
    }

    /// Runs an event through the link's FSM and carries out the actions.
    async fn handle(&mut self, which: Which, event: Event) {
        let mut queue = vec![event];
        // Up and Down go to the speaker once every action is carried out.
        let mut reports = Vec::new();
        while let Some(event) = queue.pop() {
            let before = self.link(which).fsm.state();
            let actions = self.link(which).fsm.handle(event);
            for action in actions {
                match action {
                    Action::StartTimer(t, d) => self.link(which).timers[t as usize] = Some(Instant::now() + d),
                    Action::StopTimer(t) => self.link(which).timers[t as usize] = None,
                    Action::Connect => {
                        let (remote, local, opts) =
                            (self.config.remote, self.config.local_addr, self.config.socket.clone());
                        let link = self.link(which);
                        link.outgoing = true;
                        link.connecting = Some(Box::pin(async move { socket::connect(remote, local, &opts).await }));
                    }
                    Action::Disconnect => {
                        // Behind an UPDATE cut short, a NOTIFICATION would only be garbage to the peer.
                        let cut_short = which == Which::Main && self.outbox.mid_message();
                        let link = self.link(which);
                        link.connecting = None;
                        link.send_hold.clear();
                        if let Some(framed) = link.framed.take()
                            && !cut_short
                        {
                            // In the background: the session is down now, whatever the
                            // peer does with the NOTIFICATION (an unreachable one takes
                            // the whole CLOSE_FLUSH, which would hold back its routes' removal).
                            tokio::spawn(close_gracefully(framed));
                        }
                    }
                    Action::Send(message) => {
                        if let Message::Notification(n) = &message {
                            let words = notification_words(n);
                            self.status.send_modify(|s| s.last_notification_sent = Some(words));
                        }
                        self.send(which, message);
                    }
                    Action::Up(n) => {
                        if let Some(framed) = self.link(which).framed.as_mut() {
                            framed.codec_mut().context(n.rx(), n.tx());
                        }
                        tracing::info!(peer = %self.config.name, asn = n.peer_asn, id = %n.peer_id, hold = n.hold_time, "session established");
                        self.status.send_modify(|s| s.negotiated = Some((*n).clone()));
                        // The outbox takes what the speaker queues for this session only.
                        self.sessions += 1;
                        self.outbox.open(self.sessions);
                        let (peer, session) = (self.config.name.clone(), self.sessions);
                        let link_local = self.link(which).framed.as_ref().and_then(|f| on_link(f.get_ref()));
                        reports.push(PeerEvent::Up { peer, negotiated: n, session, link_local });
                    }
                    Action::Down(reason) => {
                        let words = reason.to_string();
                        tracing::info!(peer = %self.config.name, reason = %words, "session down");
                        let was_up = before == State::Established;
                        // RFC 4724 §4.2: graceful only when the connection dropped without a NOTIFICATION.
                        let graceful = match (&reason, self.status.borrow().negotiated.as_ref()) {
                            (Reason::ConnectionLost, Some(n)) => crate::graceful::retention(&self.config.local, n),
                            _ => None,
                        };
                        self.status.send_modify(|s| {
                            s.negotiated = None;
                            s.last_error = Some(words.clone());
                        });
                        if which == Which::Main {
                            // Nothing queued for this session may reach the next.
                            self.outbox.close();
                        }
                        if was_up {
                            let peer = self.config.name.clone();
                            reports.push(PeerEvent::Down { peer, reason: words, graceful });
                        }
                    }
                }
            }
            let after = self.link(which).fsm.state();
            if which == Which::Main && after != before {
                self.status.send_modify(|s| {
                    s.state = after;
                    s.since = SystemTime::now();
                });
            }
        }
        for event in reports {
            // Boxed: `report` may carry out a command, which may come back here.
            Box::pin(self.report(event)).await;
        }
    }
}
