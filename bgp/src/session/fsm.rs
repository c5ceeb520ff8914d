//! The BGP finite state machine (RFC 4271 §8), sans-IO: the runtime feeds
//! it events (administrative, timer, TCP, message) and carries out the
//! actions it returns. No sockets and no clocks: timers are started and
//! stopped by action and come back as events.
//!
//! One `Fsm` runs per TCP connection; when both sides connect at once the
//! runtime runs two and resolves the collision with [`collision_winner`]
//! (RFC 4271 §6.8), feeding [`Event::OpenCollisionDump`] to the loser.
//!
//! Each state's handling below follows the RFC's §8.2.2 text for it, in
//! the same order, so a reader can check it line by line.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::negotiate::{LocalConfig, Negotiated, negotiate};
use crate::packet::{DecodeError, ErrorCode, Message, Notification, Open, cease_subcode, open_subcode};

/// The six states (RFC 4271 §8.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Refusing connections; waiting to start.
    Idle,
    /// Waiting for our outgoing TCP connection.
    Connect,
    /// Waiting for the peer to connect.
    Active,
    /// OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for a KEEPALIVE.
    OpenConfirm,
    /// Up: UPDATEs flow.
    Established,
}

/// The timers (RFC 4271 §8, plus one for damping resets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Next connection attempt.
    ConnectRetry,
    /// Peer silence limit.
    Hold,
    /// Our next KEEPALIVE.
    Keepalive,
    /// Wait for the peer's OPEN before sending ours (RFC 4271 §8.1.1).
    DelayOpen,
    /// Wait in Idle before restarting after an error (damping, §8.1.1).
    IdleHold,
    /// The session has been up long enough to forget earlier flaps.
    Stable,
}

/// Inputs of the FSM (RFC 4271 §8.1.2–8.1.5, merged where the RFC's
/// variants differ only by configuration this FSM already holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Events 1/4: the operator enables the peer.
    ManualStart,
    /// Event 2: the operator disables the peer; `message` goes out with the Cease (RFC 9003).
    ManualStop {
        /// Shutdown communication.
        message: String,
    },
    /// The operator resets the session: Cease / Administrative Reset with
    /// `message` (RFC 4486, RFC 9003), then it starts again.
    ManualReset {
        /// Shutdown communication.
        message: String,
    },
    /// Events 3/5/6/7: the system (re)starts the peer.
    AutomaticStart,
    /// Event 5 (AutomaticStart_with_PassiveTcpEstablishment): the peer's
    /// connection arrived while this enabled peer waits to dial again (the
    /// Idle hold of its back-off): the wait is for our own attempts, so the
    /// peer's is taken (Active, then the connection).
    AutomaticStartPassive,
    /// Event 8: the system stops the peer (e.g. prefix limit).
    AutomaticStop {
        /// The Cease subcode to send.
        subcode: u8,
    },
    /// A timer expired (events 9–13).
    TimerExpired(Timer),
    /// Events 16/17: our connection completed, or we accepted the peer's.
    TcpConnected,
    /// Event 18: the connection failed or closed.
    TcpConnectionFails,
    /// Events 19/20: an OPEN arrived.
    OpenReceived(Open),
    /// Events 21/22/28: a message was malformed (header, OPEN or UPDATE).
    MessageError(DecodeError),
    /// Event 23: this connection lost a collision.
    OpenCollisionDump,
    /// Events 24/25: the peer sent a NOTIFICATION.
    NotificationReceived(Notification),
    /// Event 26.
    KeepaliveReceived,
    /// RFC 9687 §3: what we have to send has made no progress for the
    /// send hold time (the peer stopped reading).
    SendHoldTimerExpired,
    /// Event 27 (and ROUTE-REFRESH, which also proves the peer alive).
    UpdateReceived,
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start (or restart) a timer.
    StartTimer(Timer, Duration),
    /// Stop a timer (no-op if not running).
    StopTimer(Timer),
    /// Open the outgoing TCP connection.
    Connect,
    /// Close the TCP connection.
    Disconnect,
    /// Send a message.
    Send(Message),
    /// The session is up with these terms.
    Up(Box<Negotiated>),
    /// The session (or the attempt) ended: release its resources, withdraw
    /// the peer's routes if it was up.
    Down(Reason),
}

/// Why a session ended, in the words an operator reads in `tortie status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Stopped by the operator.
    AdminStop,
    /// Reset by the operator.
    AdminReset,
    /// Stopped by the system (Cease subcode).
    AutoStop(u8),
    /// We sent this NOTIFICATION.
    Sent(Notification, String),
    /// The peer sent this NOTIFICATION.
    Received(Notification),
    /// The TCP connection failed or closed.
    ConnectionLost,
    /// Hold timer expired.
    HoldTimerExpired,
    /// The peer took nothing we sent for the send hold time (RFC 9687).
    SendHoldTimerExpired,
    /// Lost the collision with the other connection.
    Collision,
    /// An event the state does not expect.
    Unexpected(State),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::AdminStop => f.write_str("Administrative shutdown"),
            Reason::AdminReset => f.write_str("Administrative reset"),
            Reason::AutoStop(sub) => write!(f, "Automatic stop (Cease {sub})"),
            Reason::Sent(n, why) => write!(f, "Error: {why} (sent {n})"),
            Reason::Received(n) => write!(f, "Received: {}", notification_words(n)),
            Reason::ConnectionLost => f.write_str("Socket: Connection closed"),
            Reason::HoldTimerExpired => f.write_str("Error: Hold timer expired"),
            Reason::SendHoldTimerExpired => f.write_str("Error: Send hold timer expired"),
            Reason::Collision => f.write_str("Connection collision"),
            Reason::Unexpected(state) => write!(f, "Error: unexpected event in {state:?}"),
        }
    }
}

/// A NOTIFICATION in words, as BIRD prints it ("Bad peer AS", "Hold timer expired").
pub fn notification_words(n: &Notification) -> String {
    let words = match (n.code, n.subcode) {
        (ErrorCode::MessageHeader, _) => "Message header error",
        (ErrorCode::Open, 1) => "Unsupported version number",
        (ErrorCode::Open, 2) => "Bad peer AS",
        (ErrorCode::Open, 3) => "Bad BGP identifier",
        (ErrorCode::Open, 4) => "Unsupported optional parameter",
        (ErrorCode::Open, 6) => "Unacceptable hold time",
        (ErrorCode::Open, 7) => "Unsupported capability",
        (ErrorCode::Open, _) => "OPEN message error",
        (ErrorCode::Update, _) => "UPDATE message error",
        (ErrorCode::HoldTimerExpired, _) => "Hold timer expired",
        (ErrorCode::Fsm, _) => "Finite state machine error",
        (ErrorCode::Cease, 1) => "Maximum number of prefixes reached",
        (ErrorCode::Cease, 2) => "Administrative shutdown",
        (ErrorCode::Cease, 3) => "Peer de-configured",
        (ErrorCode::Cease, 4) => "Administrative reset",
        (ErrorCode::Cease, 5) => "Connection rejected",
        (ErrorCode::Cease, 6) => "Other configuration change",
        (ErrorCode::Cease, 7) => "Connection collision resolution",
        (ErrorCode::Cease, 8) => "Out of resources",
        (ErrorCode::Cease, _) => "Cease",
        (ErrorCode::RouteRefresh, _) => "ROUTE-REFRESH message error",
        (ErrorCode::SendHoldTimerExpired, _) => "Send hold timer expired",
        (ErrorCode::Other(_), _) => "Unknown error",
    };
    match n.shutdown_message() {
        Some(msg) if !msg.is_empty() => format!("{words}: \"{msg}\""),
        _ => words.to_string(),
    }
}

/// Timers and behaviour of one peer (RFC 4271 §8.1 optional attributes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsmConfig {
    /// ConnectRetryTime (RFC default 120 s).
    pub connect_retry: Duration,
    /// Hold timer while waiting for the peer's OPEN (RFC suggests 4 minutes).
    pub open_hold: Duration,
    /// DelayOpenTime, when DelayOpen is on.
    pub delay_open: Option<Duration>,
    /// PassiveTcpEstablishment: never dial, wait for the peer.
    pub passive: bool,
    /// First wait in Idle after an error.
    pub idle_hold: Duration,
    /// DampPeerOscillations: double the Idle wait after each failure…
    pub damp_peer_oscillations: bool,
    /// …up to this; a session up this long forgets earlier failures.
    pub idle_hold_max: Duration,
    /// SendHoldTime (RFC 9687): how long what we have to send may make no
    /// progress before the session is closed; `None`: the RFC's default,
    /// the larger of 8 minutes and twice the negotiated hold time.
    pub send_hold: Option<Duration>,
}

impl Default for FsmConfig {
    fn default() -> FsmConfig {
        FsmConfig {
            connect_retry: Duration::from_secs(120),
            open_hold: Duration::from_secs(240),
            delay_open: None,
            passive: false,
            idle_hold: Duration::from_secs(1),
            damp_peer_oscillations: true,
            idle_hold_max: Duration::from_secs(120),
            send_hold: None,
        }
    }
}

/// The state machine of one connection to a peer.
#[derive(Debug, Clone)]
pub struct Fsm {
    state: State,
    config: FsmConfig,
    local: LocalConfig,
    /// ConnectRetryCounter (RFC 4271 §8).
    connect_retry_counter: u32,
    /// The current Idle wait (doubles with damping).
    idle_hold: Duration,
    /// Whether the peer is administratively enabled (restart after errors).
    enabled: bool,
    delay_open_running: bool,
    negotiated: Option<Negotiated>,
    /// Timers the FSM has started and not stopped (a set of [`Timer`]s).
    running: u8,
}

/// RFC 6608 FSM error subcodes: unexpected message in a state.
fn fsm_error(state: State) -> Notification {
    let subcode = match state {
        State::OpenSent => 1,
        State::OpenConfirm => 2,
        State::Established => 3,
        _ => 0,
    };
    Notification { code: ErrorCode::Fsm, subcode, data: Default::default() }
}

impl Fsm {
    /// A stopped FSM (Idle) for a peer.
    pub fn new(config: FsmConfig, local: LocalConfig) -> Fsm {
        let idle_hold = config.idle_hold;
        Fsm {
            state: State::Idle,
            config,
            local,
            connect_retry_counter: 0,
            idle_hold,
            enabled: false,
            delay_open_running: false,
            negotiated: None,
            running: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// ConnectRetryCounter: failed attempts since the last success or manual start.
    pub fn connect_retry_counter(&self) -> u32 {
        self.connect_retry_counter
    }

    /// The terms of the session, from OpenConfirm on.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// SendHoldTime (RFC 9687 §3): as configured, or the larger of 8
    /// minutes and twice the negotiated hold time.
    pub fn send_hold(&self) -> Duration {
        let hold = self.negotiated.as_ref().map_or(0, |n| u64::from(n.hold_time));
        self.config.send_hold.unwrap_or(Duration::from_secs((2 * hold).max(480)))
    }

    /// The restart is over: later OPENs carry no R bit (RFC 4724 §4.1).
    pub fn end_restart(&mut self) {
        self.local.end_restart();
    }

    /// Our BGP identifier (for collision resolution).
    pub fn local_id(&self) -> Ipv4Addr {
        self.local.bgp_id
    }

    /// Handles one event; returns the actions in order. The expiry of a
    /// timer the FSM has stopped (a race in the runtime) is ignored.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let mut a = Vec::new();
        if let Event::TimerExpired(t) = &event {
            let bit = 1u8 << (*t as u8);
            if self.running & bit == 0 {
                return a;
            }
            self.running &= !bit;
        }
        match self.state {
            State::Idle => self.idle(event, &mut a),
            State::Connect | State::Active => self.connect_or_active(event, &mut a),
            State::OpenSent => self.open_sent(event, &mut a),
            State::OpenConfirm => self.open_confirm(event, &mut a),
            State::Established => self.established(event, &mut a),
        }
        for action in &a {
            match action {
                Action::StartTimer(t, _) => self.running |= 1 << (*t as u8),
                Action::StopTimer(t) => self.running &= !(1 << (*t as u8)),
                _ => {}
            }
        }
        a
    }

    /// Idle: only a start (or the Idle wait ending) does anything.
    fn idle(&mut self, event: Event, a: &mut Vec<Action>) {
        match event {
            Event::ManualStart => {
                self.enabled = true;
                self.connect_retry_counter = 0;
                self.idle_hold = self.config.idle_hold;
                a.push(Action::StopTimer(Timer::IdleHold));
                self.start(a);
            }
            // With the Idle wait running, an automatic start waits for it (damping).
            Event::AutomaticStart if !self.enabled => {
                self.enabled = true;
                self.start(a);
            }
            Event::TimerExpired(Timer::IdleHold) if self.enabled => self.start(a),
            Event::AutomaticStartPassive if self.enabled => {
                a.push(Action::StopTimer(Timer::IdleHold));
                a.push(Action::StartTimer(Timer::ConnectRetry, self.config.connect_retry));
                self.state = State::Active;
            }
            Event::ManualStop { .. } | Event::AutomaticStop { .. } => {
                self.enabled = false;
                a.push(Action::StopTimer(Timer::IdleHold));
            }
            // RFC 4271 §8.2.2 Idle: any other event is ignored.
            _ => {}
        }
    }

    /// Idle → Connect (dial) or Active (passive).
    fn start(&mut self, a: &mut Vec<Action>) {
        a.push(Action::StartTimer(Timer::ConnectRetry, self.config.connect_retry));
        if self.config.passive {
            self.state = State::Active;
        } else {
            a.push(Action::Connect);
            self.state = State::Connect;
        }
    }

    /// Connect and Active differ only on ConnectRetry expiry, TCP failure
    /// and which state a delayed OPEN waits in.
    fn connect_or_active(&mut self, event: Event, a: &mut Vec<Action>) {
        match event {
            // No session yet: nothing to reset.
            Event::ManualStart | Event::AutomaticStart | Event::AutomaticStartPassive | Event::ManualReset { .. } => {}
            Event::AutomaticStop { subcode } => {
                self.enabled = false;
                self.fail(Reason::AutoStop(subcode), a);
            }
            Event::ManualStop { .. } => {
                self.enabled = false;
                a.extend([
                    Action::Disconnect,
                    Action::StopTimer(Timer::ConnectRetry),
                    Action::StopTimer(Timer::DelayOpen),
                ]);
                self.connect_retry_counter = 0;
                self.delay_open_running = false;
                a.push(Action::Down(Reason::AdminStop));
                self.state = State::Idle;
            }
            Event::TimerExpired(Timer::ConnectRetry) => {
                // Connect: drop the attempt and dial again. Active: dial (go to Connect).
                a.extend([Action::Disconnect, Action::StopTimer(Timer::DelayOpen)]);
                self.delay_open_running = false;
                a.push(Action::StartTimer(Timer::ConnectRetry, self.config.connect_retry));
                if !self.config.passive {
                    a.push(Action::Connect);
                    self.state = State::Connect;
                }
            }
            Event::TimerExpired(Timer::DelayOpen) if self.delay_open_running => {
                self.delay_open_running = false;
                a.push(Action::StopTimer(Timer::ConnectRetry));
                self.send_open(a);
            }
            Event::TcpConnected => {
                a.push(Action::StopTimer(Timer::ConnectRetry));
                match self.config.delay_open {
                    Some(delay) => {
                        self.delay_open_running = true;
                        a.push(Action::StartTimer(Timer::DelayOpen, delay));
                    }
                    None => self.send_open(a),
                }
            }
            // RFC 4271 §8.2.2 Connect, event 18: with DelayOpen running, wait in Active.
            Event::TcpConnectionFails if self.state == State::Connect && self.delay_open_running => {
                self.delay_open_running = false;
                a.extend([Action::StopTimer(Timer::DelayOpen), Action::Disconnect]);
                a.push(Action::StartTimer(Timer::ConnectRetry, self.config.connect_retry));
                self.state = State::Active;
            }
            // Connect without DelayOpen: release and go Idle (the RFC does not count this one).
            Event::TcpConnectionFails if self.state == State::Connect => {
                a.push(Action::StopTimer(Timer::ConnectRetry));
                self.release(a);
                a.push(Action::Down(Reason::ConnectionLost));
                self.go_idle(a);
            }
            // Active, event 18: a counted failure.
            Event::TcpConnectionFails => self.fail(Reason::ConnectionLost, a),
            Event::OpenReceived(open) if self.delay_open_running => {
                self.delay_open_running = false;
                a.extend([Action::StopTimer(Timer::ConnectRetry), Action::StopTimer(Timer::DelayOpen)]);
                a.push(Action::Send(Message::Open(self.local.open())));
                self.accept_open(&open, a);
            }
            Event::MessageError(e) => self.fail_with_notification(e.notification(), e.reason.clone(), a),
            Event::NotificationReceived(n) => {
                // Events 24/25: a version error while waiting on DelayOpen does not count as a failure.
                let version = n.code == ErrorCode::Open && n.subcode == open_subcode::UNSUPPORTED_VERSION_NUMBER;
                if version && self.delay_open_running {
                    self.delay_open_running = false;
                    a.extend([
                        Action::StopTimer(Timer::ConnectRetry),
                        Action::StopTimer(Timer::DelayOpen),
                        Action::Disconnect,
                    ]);
                    a.push(Action::Down(Reason::Received(n)));
                    self.go_idle(a);
                } else {
                    self.fail(Reason::Received(n), a);
                }
            }
            // RFC 4271 §8.2.2 Connect/Active: any other event is an error (no OPEN sent yet, so no NOTIFICATION).
            _ => self.fail(Reason::Unexpected(self.state), a),
        }
    }

    /// Sends our OPEN and waits in OpenSent with the long hold timer.
    fn send_open(&mut self, a: &mut Vec<Action>) {
        a.push(Action::Send(Message::Open(self.local.open())));
        a.push(Action::StartTimer(Timer::Hold, self.config.open_hold));
        self.state = State::OpenSent;
    }

    /// Checks the peer's OPEN; on success KEEPALIVE and OpenConfirm.
    fn accept_open(&mut self, open: &Open, a: &mut Vec<Action>) {
        match negotiate(&self.local, open) {
            Ok(n) => {
                a.push(Action::Send(Message::Keepalive));
                if n.hold_time > 0 {
                    a.push(Action::StartTimer(Timer::Keepalive, Duration::from_secs(n.keepalive.into())));
                    a.push(Action::StartTimer(Timer::Hold, Duration::from_secs(n.hold_time.into())));
                } else {
                    a.extend([Action::StopTimer(Timer::Keepalive), Action::StopTimer(Timer::Hold)]);
                }
                self.negotiated = Some(n);
                self.state = State::OpenConfirm;
            }
            Err(refusal) => self.fail_with_notification(refusal.notification, refusal.reason, a),
        }
    }

    /// Events that OpenSent, OpenConfirm and Established handle alike
    /// (RFC 4271 §8.2.2 repeats them for each); the others come back.
    fn after_open(&mut self, event: Event, a: &mut Vec<Action>) -> Result<(), Event> {
        match event {
            Event::ManualStart | Event::AutomaticStart | Event::AutomaticStartPassive => {}
            Event::ManualStop { message } => self.stop_by_operator(&message, a),
            Event::ManualReset { message } => self.reset_by_operator(&message, a),
            Event::AutomaticStop { subcode } => self.stop_automatically(subcode, a),
            Event::TimerExpired(Timer::Hold) => self.hold_expired(a),
            Event::SendHoldTimerExpired => self.send_hold_expired(a),
            // Only started from OpenConfirm on.
            Event::TimerExpired(Timer::Keepalive) => self.send_keepalive(a),
            Event::NotificationReceived(n) => self.fail(Reason::Received(n), a),
            Event::MessageError(e) => self.fail_with_notification(e.notification(), e.reason.clone(), a),
            Event::OpenCollisionDump => self.lose_collision(a),
            other => return Err(other),
        }
        Ok(())
    }

    /// RFC 6608: an event the state has no use for is an FSM error.
    fn unexpected(&mut self, a: &mut Vec<Action>) {
        let n = fsm_error(self.state);
        self.fail_with_notification(n, format!("unexpected message in {:?}", self.state), a)
    }

    fn open_sent(&mut self, event: Event, a: &mut Vec<Action>) {
        let Err(event) = self.after_open(event, a) else { return };
        match event {
            Event::TcpConnectionFails => {
                // RFC 4271 §8.2.2 OpenSent, event 18: close, restart ConnectRetry, wait in Active.
                a.extend([Action::Disconnect, Action::StopTimer(Timer::Hold)]);
                a.push(Action::StartTimer(Timer::ConnectRetry, self.config.connect_retry));
                self.state = State::Active;
            }
            Event::OpenReceived(open) => {
                a.push(Action::StopTimer(Timer::ConnectRetry));
                self.accept_open(&open, a);
            }
            _ => self.unexpected(a),
        }
    }

    fn open_confirm(&mut self, event: Event, a: &mut Vec<Action>) {
        let Err(event) = self.after_open(event, a) else { return };
        match event {
            Event::TcpConnectionFails => self.fail(Reason::ConnectionLost, a),
            Event::KeepaliveReceived => {
                self.restart_hold(a);
                if self.config.damp_peer_oscillations {
                    a.push(Action::StartTimer(Timer::Stable, self.config.idle_hold_max));
                }
                if let Some(n) = &self.negotiated {
                    a.push(Action::Up(Box::new(n.clone())));
                }
                self.state = State::Established;
            }
            _ => self.unexpected(a),
        }
    }

    fn established(&mut self, event: Event, a: &mut Vec<Action>) {
        let Err(event) = self.after_open(event, a) else { return };
        match event {
            Event::TimerExpired(Timer::Stable) => {
                // Up long enough: earlier flaps are forgiven.
                self.idle_hold = self.config.idle_hold;
                self.connect_retry_counter = 0;
            }
            Event::KeepaliveReceived | Event::UpdateReceived => self.restart_hold(a),
            Event::TcpConnectionFails => self.fail(Reason::ConnectionLost, a),
            _ => self.unexpected(a),
        }
    }

    fn send_keepalive(&mut self, a: &mut Vec<Action>) {
        a.push(Action::Send(Message::Keepalive));
        if let Some(n) = self.negotiated.as_ref().filter(|n| n.keepalive > 0) {
            a.push(Action::StartTimer(Timer::Keepalive, Duration::from_secs(n.keepalive.into())));
        }
    }

    fn restart_hold(&mut self, a: &mut Vec<Action>) {
        if let Some(n) = self.negotiated.as_ref().filter(|n| n.hold_time > 0) {
            a.push(Action::StartTimer(Timer::Hold, Duration::from_secs(n.hold_time.into())));
        }
    }

    /// ManualStop from OpenSent on: Cease / Administrative Shutdown with the
    /// operator's message (RFC 4486, RFC 9003); no automatic restart.
    fn stop_by_operator(&mut self, message: &str, a: &mut Vec<Action>) {
        self.enabled = false;
        a.push(Action::Send(Message::Notification(Notification::cease_with_message(
            cease_subcode::ADMINISTRATIVE_SHUTDOWN,
            message,
        ))));
        self.release(a);
        self.connect_retry_counter = 0;
        a.push(Action::Down(Reason::AdminStop));
        self.go_idle(a);
    }

    /// ManualReset from OpenSent on: Cease / Administrative Reset with the
    /// operator's message; the peer stays enabled and restarts after the Idle wait.
    fn reset_by_operator(&mut self, message: &str, a: &mut Vec<Action>) {
        a.push(Action::Send(Message::Notification(Notification::cease_with_message(
            cease_subcode::ADMINISTRATIVE_RESET,
            message,
        ))));
        self.release(a);
        self.connect_retry_counter = 0;
        self.idle_hold = self.config.idle_hold;
        a.push(Action::Down(Reason::AdminReset));
        self.go_idle(a);
    }

    fn stop_automatically(&mut self, subcode: u8, a: &mut Vec<Action>) {
        let n = Notification { code: ErrorCode::Cease, subcode, data: Default::default() };
        a.push(Action::Send(Message::Notification(n)));
        self.release(a);
        self.connect_retry_counter += 1;
        self.enabled = false;
        a.push(Action::Down(Reason::AutoStop(subcode)));
        self.go_idle(a);
    }

    fn hold_expired(&mut self, a: &mut Vec<Action>) {
        let n = Notification { code: ErrorCode::HoldTimerExpired, subcode: 0, data: Default::default() };
        a.push(Action::Send(Message::Notification(n)));
        self.fail(Reason::HoldTimerExpired, a);
    }

    /// RFC 9687 §3: NOTIFICATION 8 (it may not get through: the peer is
    /// not reading), then the connection is closed as for any error.
    fn send_hold_expired(&mut self, a: &mut Vec<Action>) {
        let n = Notification { code: ErrorCode::SendHoldTimerExpired, subcode: 0, data: Default::default() };
        a.push(Action::Send(Message::Notification(n)));
        self.fail(Reason::SendHoldTimerExpired, a);
    }

    fn lose_collision(&mut self, a: &mut Vec<Action>) {
        let n = Notification {
            code: ErrorCode::Cease,
            subcode: cease_subcode::CONNECTION_COLLISION_RESOLUTION,
            data: Default::default(),
        };
        a.push(Action::Send(Message::Notification(n)));
        self.fail(Reason::Collision, a);
    }

    fn fail_with_notification(&mut self, n: Notification, why: String, a: &mut Vec<Action>) {
        a.push(Action::Send(Message::Notification(n.clone())));
        self.fail(Reason::Sent(n, why), a);
    }

    /// The RFC's common error path: stop ConnectRetry, release resources,
    /// drop the connection, count the failure, damp, go Idle.
    fn fail(&mut self, reason: Reason, a: &mut Vec<Action>) {
        a.push(Action::StopTimer(Timer::ConnectRetry));
        self.release(a);
        self.connect_retry_counter += 1;
        a.push(Action::Down(reason));
        self.go_idle(a);
    }

    /// Stops the session timers and closes the connection.
    fn release(&mut self, a: &mut Vec<Action>) {
        a.extend([
            Action::StopTimer(Timer::Hold),
            Action::StopTimer(Timer::Keepalive),
            Action::StopTimer(Timer::DelayOpen),
            Action::StopTimer(Timer::Stable),
            Action::Disconnect,
        ]);
        self.delay_open_running = false;
        self.negotiated = None;
    }

    /// Idle; if the peer is still enabled, restart after the Idle wait,
    /// doubled after each failure when damping (RFC 4271 §8.1.1).
    fn go_idle(&mut self, a: &mut Vec<Action>) {
        self.state = State::Idle;
        if self.enabled {
            a.push(Action::StartTimer(Timer::IdleHold, self.idle_hold));
            if self.config.damp_peer_oscillations {
                self.idle_hold = (self.idle_hold * 2).min(self.config.idle_hold_max);
            }
        }
    }
}

/// RFC 4271 §6.8: which connection survives a collision. Returns true when
/// the connection *we* initiated is kept. The higher BGP identifier keeps
/// the connection it initiated; with equal identifiers (possible between
/// ASes, RFC 6286 §2.3) the larger AS number keeps its own.
pub fn collision_winner(local_id: Ipv4Addr, local_as: u32, remote_id: Ipv4Addr, remote_as: u32) -> bool {
    if local_id != remote_id { u32::from(local_id) > u32::from(remote_id) } else { local_as > remote_as }
}
