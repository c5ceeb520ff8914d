//! One BFD session's state machine (RFC 5880 §6.8), without I/O: it is
//! given the packets received and the time, and says what to send, when,
//! and when the session changed state. Asynchronous mode only (no demand
//! mode, no echo function), no authentication.

use std::time::{Duration, Instant};

use crate::packet::{Control, Diag, State};

/// RFC 5880 §6.8.3: while a session is not Up, it sends no faster than once a second.
const SLOW_TX: Duration = Duration::from_secs(1);

/// A session's timers (RFC 5880 §6.8.1 bfd.DesiredMinTxInterval,
/// bfd.RequiredMinRxInterval, bfd.DetectMult).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// How often we would like to send.
    pub desired_min_tx: Duration,
    /// How often we can take packets.
    pub required_min_rx: Duration,
    /// Packets missed before the peer counts us down.
    pub detect_mult: u8,
}

impl Default for Timers {
    /// 300 ms × 3, as FRR and Calico's BIRD default to.
    fn default() -> Timers {
        Timers {
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            detect_mult: 3,
        }
    }
}

/// A change of the session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The state before.
    pub from: State,
    /// The state now.
    pub to: State,
    /// Why (our bfd.LocalDiag).
    pub diag: Diag,
}

/// One session.
#[derive(Debug, Clone)]
pub struct Session {
    timers: Timers,
    state: State,
    remote_state: State,
    local_discr: u32,
    remote_discr: u32,
    local_diag: Diag,
    /// The peer's Required Min RX, Desired Min TX (µs) and Detect Mult.
    remote_min_rx: u32,
    remote_min_tx: u32,
    remote_mult: u8,
    /// A Poll Sequence of ours is under way (RFC 5880 §6.5).
    polling: bool,
    /// The timers in force before a change, until its Poll Sequence ends.
    previous: Option<Timers>,
    /// The peer polled: the next packet carries F, and goes at once.
    answer_poll: bool,
    last_rx: Option<Instant>,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl Session {
    /// A new session, Down, with our discriminator `local_discr` (non-zero,
    /// unique on this system: RFC 5880 §6.3).
    pub fn new(local_discr: u32, timers: Timers) -> Session {
        Session {
            timers,
            state: State::Down,
            remote_state: State::Down,
            local_discr,
            remote_discr: 0,
            local_diag: Diag::None,
            // RFC 5880 §6.8.1: initial bfd.RemoteMinRxInterval.
            remote_min_rx: 1,
            remote_min_tx: 0,
            remote_mult: 0,
            polling: false,
            previous: None,
            answer_poll: false,
            last_rx: None,
        }
    }

    /// The session's state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Why it last went down.
    pub fn diag(&self) -> Diag {
        self.local_diag
    }

    /// The state the peer last reported (bfd.RemoteSessionState).
    pub fn remote_state(&self) -> State {
        self.remote_state
    }

    /// Our discriminator.
    pub fn local_discr(&self) -> u32 {
        self.local_discr
    }

    /// The peer's discriminator (0 until heard from).
    pub fn remote_discr(&self) -> u32 {
        self.remote_discr
    }

    /// The configured timers.
    pub fn timers(&self) -> Timers {
        self.timers
    }

    /// bfd.DesiredMinTxInterval as sent: the configured one once Up, at
    /// least a second before (RFC 5880 §6.8.3).
    fn desired_min_tx(&self) -> Duration {
        if self.state == State::Up { self.timers.desired_min_tx } else { self.timers.desired_min_tx.max(SLOW_TX) }
    }

    /// The interval packets actually go at (at most the interval before a
    /// change until its Poll Sequence ends: RFC 5880 §6.8.3).
    fn sending_min_tx(&self) -> Duration {
        // `previous` is held only while Up (leaving Up ends the sequence).
        let now = self.desired_min_tx();
        self.previous.map_or(now, |p| now.min(p.desired_min_tx))
    }

    /// New timers (RFC 5880 §6.8.3): the session stays as it is and tells
    /// the peer by a Poll Sequence; until the peer's Final, packets go no
    /// slower and silence is judged no sooner than before.
    pub fn set_timers(&mut self, timers: Timers) {
        if timers == self.timers {
            return;
        }
        let old = std::mem::replace(&mut self.timers, timers);
        if self.state == State::Up {
            self.previous.get_or_insert(old);
            self.polling = true;
        }
    }

    /// The session is taken out of service (RFC 5880 §6.8.16): AdminDown,
    /// which the peer must not take for a failure (RFC 5882 §3.2).
    pub fn admin_down(&mut self) -> Option<Change> {
        self.set_state(State::AdminDown, Diag::AdminDown)
    }

    /// The interval we send at: the larger of ours and what the peer can
    /// take (RFC 5880 §6.8.7); `None` while the peer wants nothing (0).
    pub fn tx_interval(&self) -> Option<Duration> {
        (self.remote_min_rx != 0).then(|| self.sending_min_tx().max(Duration::from_micros(self.remote_min_rx.into())))
    }

    /// The interval the peer sends at and the time without its packets
    /// after which the session is down (RFC 5880 §6.8.4): its Detect Mult
    /// times the larger of our Required Min RX and its Desired Min TX.
    pub fn detection_time(&self) -> Option<Duration> {
        (self.remote_mult != 0).then(|| {
            let ours = self
                .previous
                .map_or(self.timers.required_min_rx, |p| p.required_min_rx.max(self.timers.required_min_rx));
            let interval = ours.max(Duration::from_micros(self.remote_min_tx.into()));
            interval * u32::from(self.remote_mult)
        })
    }

    /// When the session goes down for want of packets, if it is Init or Up.
    pub fn detection_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Init | State::Up => Some(self.last_rx? + self.detection_time()?),
            State::Down | State::AdminDown => None,
        }
    }

    /// The wait before the next packet, jittered: 80–100 % of the interval
    /// (80–90 % with a Detect Mult of 1); `jitter` is a random number in
    /// [0, 1). RFC 5880 §6.8.7 allows 75–100 % (75–90 %): the other 5 % is
    /// [`Session::early`], so that one wake-up sends every packet about due.
    pub fn next_tx(&self, jitter: f64) -> Option<Duration> {
        let interval = self.tx_interval()?;
        let top = if self.timers.detect_mult == 1 { 0.9 } else { 1.0 };
        Some(interval.mul_f64(top - (top - 0.8) * jitter.clamp(0.0, 1.0)))
    }

    /// How early a packet may go: 5 % of the interval (with the jitter of
    /// [`Session::next_tx`], never below RFC 5880's 75 %).
    pub fn early(&self) -> Duration {
        self.tx_interval().map_or(Duration::ZERO, |i| i / 20)
    }

    /// Whether a packet must go at once, whatever the timer (an answer to a Poll).
    pub fn must_send(&self) -> bool {
        self.answer_poll
    }

    /// The next packet to send (taking the pending Final with it).
    pub fn packet(&mut self) -> Control {
        let final_ = std::mem::take(&mut self.answer_poll);
        Control {
            diag: self.local_diag,
            state: self.state,
            // RFC 5880 §6.5: P and F never together.
            poll: self.polling && !final_,
            final_,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.timers.detect_mult,
            my_discriminator: self.local_discr,
            your_discriminator: self.remote_discr,
            desired_min_tx: micros(self.desired_min_tx()),
            required_min_rx: micros(self.timers.required_min_rx),
            required_min_echo_rx: 0,
        }
    }

    fn set_state(&mut self, to: State, diag: Diag) -> Option<Change> {
        let from = self.state;
        if from == to {
            return None;
        }
        self.state = to;
        if to != State::Up {
            self.local_diag = diag;
        }
        // RFC 5880 §6.8.3: our Desired Min TX changes with Up; a Poll
        // Sequence tells the peer (leaving Up, the slower rate needs none to be safe).
        self.polling = to == State::Up;
        self.previous = None;
        Some(Change { from, to, diag })
    }

    /// A valid packet from the peer (RFC 5880 §6.8.6, after the checks of
    /// [`Control::decode`] and the demultiplexing).
    pub fn receive(&mut self, p: &Control, now: Instant) -> Option<Change> {
        self.remote_discr = p.my_discriminator;
        self.remote_state = p.state;
        self.remote_min_rx = p.required_min_rx;
        self.remote_min_tx = p.desired_min_tx;
        self.remote_mult = p.detect_mult;
        self.last_rx = Some(now);
        if p.final_ {
            self.polling = false;
            self.previous = None;
        }
        if p.poll {
            self.answer_poll = true;
        }
        if self.state == State::AdminDown {
            return None;
        }
        match (p.state, self.state) {
            (State::AdminDown, State::Init | State::Up) => self.set_state(State::Down, Diag::NeighborDown),
            (State::AdminDown, _) => None,
            (State::Down, State::Down) => self.set_state(State::Init, Diag::None),
            (State::Init, State::Down) => self.set_state(State::Up, Diag::None),
            (State::Init | State::Up, State::Init) => self.set_state(State::Up, Diag::None),
            (State::Down, State::Up) => self.set_state(State::Down, Diag::NeighborDown),
            _ => None,
        }
    }

    /// The time is `now`: the session goes down if the peer has been
    /// silent for the detection time (RFC 5880 §6.8.4), and forgets the
    /// peer's discriminator (§6.8.1).
    pub fn tick(&mut self, now: Instant) -> Option<Change> {
        let deadline = self.detection_deadline()?;
        if now < deadline {
            return None;
        }
        self.remote_discr = 0;
        self.remote_mult = 0;
        self.remote_min_rx = 1;
        self.set_state(State::Down, Diag::TimeExpired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Two sessions exchanging packets: the usual three-way handshake.
    #[test]
    fn two_sessions_come_up_down_init_up_and_switch_to_the_fast_rate_by_a_poll() {
        let t0 = Instant::now();
        let (mut a, mut b) = (Session::new(1, Timers::default()), Session::new(2, Timers::default()));
        assert_eq!(a.tx_interval(), Some(SLOW_TX), "a second while not Up");
        let p = a.packet();
        assert_eq!((p.state, p.your_discriminator), (State::Down, 0));
        assert_eq!(b.receive(&p, t0), Some(Change { from: State::Down, to: State::Init, diag: Diag::None }));
        assert_eq!(a.receive(&b.packet(), t0), Some(Change { from: State::Down, to: State::Up, diag: Diag::None }));
        // a is Up: it sends at 300 ms and polls to say so.
        let p = a.packet();
        assert!(p.poll && p.desired_min_tx == 300_000, "{p:?}");
        assert_eq!(b.receive(&p, t0).map(|c| c.to), Some(State::Up));
        assert!(b.must_send(), "a Poll is answered at once");
        let answer = b.packet();
        assert!(answer.final_ && !answer.poll, "F, not P with it: {answer:?}");
        a.receive(&answer, t0);
        assert!(!a.packet().poll, "the Poll Sequence ended with the Final");
        assert_eq!(a.tx_interval(), Some(ms(300)));
        assert_eq!(a.detection_time(), Some(ms(900)), "3 × max(300, 300)");
    }

    #[test]
    fn silence_for_the_detection_time_takes_the_session_down() {
        let t0 = Instant::now();
        let (mut a, mut b) = (Session::new(1, Timers::default()), Session::new(2, Timers::default()));
        b.receive(&a.packet(), t0);
        a.receive(&b.packet(), t0);
        b.receive(&a.packet(), t0);
        assert_eq!((a.state(), b.state()), (State::Up, State::Up));
        // b's last word said 1 s (it was not Up yet when it spoke): 3 × 1 s.
        assert_eq!(a.tick(t0 + ms(2900)), None);
        let down = a.tick(t0 + ms(3000));
        assert_eq!(down, Some(Change { from: State::Up, to: State::Down, diag: Diag::TimeExpired }));
        assert_eq!((a.remote_discr(), a.packet().your_discriminator), (0, 0), "the peer is forgotten");
        assert_eq!(a.tick(t0 + ms(9000)), None, "Down has no detection timer");
    }

    #[test]
    fn a_peer_saying_down_or_admin_down_takes_an_up_session_down() {
        let t0 = Instant::now();
        let up = |s: &mut Session| {
            let peer = Control { state: State::Init, ..Session::new(9, Timers::default()).packet() };
            s.receive(&Control { your_discriminator: s.local_discr(), ..peer }, t0);
            assert_eq!(s.state(), State::Up);
        };
        let mut a = Session::new(1, Timers::default());
        up(&mut a);
        let down = Control { state: State::Down, diag: Diag::TimeExpired, ..a.packet() };
        assert_eq!(a.receive(&down, t0).map(|c| (c.to, c.diag)), Some((State::Down, Diag::NeighborDown)));
        let mut b = Session::new(2, Timers::default());
        up(&mut b);
        let admin = Control { state: State::AdminDown, ..b.packet() };
        assert_eq!(b.receive(&admin, t0).map(|c| c.to), Some(State::Down));
        assert_eq!(b.receive(&admin, t0), None, "AdminDown keeps a Down session Down");
    }

    #[test]
    fn the_rates_follow_what_the_peer_can_take_and_jitter_stays_in_its_band() {
        let t0 = Instant::now();
        let fast = Timers { desired_min_tx: ms(100), required_min_rx: ms(100), detect_mult: 3 };
        let mut a = Session::new(1, fast);
        let peer = |state, rx: u32| Control {
            state,
            required_min_rx: rx,
            your_discriminator: 1,
            ..Session::new(2, Timers::default()).packet()
        };
        a.receive(&peer(State::Init, 500_000), t0);
        assert_eq!(a.tx_interval(), Some(ms(500)), "the peer takes one packet per 500 ms");
        assert_eq!(a.next_tx(0.0), Some(ms(500)));
        assert_eq!(a.next_tx(0.999_999).map(|d| d.as_millis()), Some(400), "80 % at the most jitter");
        assert_eq!(a.early(), ms(25), "and up to 5 % early: 75 % at the least");
        a.receive(&peer(State::Up, 0), t0);
        assert_eq!(a.tx_interval(), None, "Required Min RX 0: send nothing (RFC 5880 §6.8.7)");
        let one = Session::new(3, Timers { detect_mult: 1, ..fast });
        assert_eq!(one.next_tx(0.999_999).map(|d| d.as_millis()), Some(800), "80–90 % with Detect Mult 1");
        assert_eq!(one.next_tx(0.0).map(|d| d.as_millis()), Some(900));
    }

    #[test]
    fn new_timers_keep_the_session_up_and_take_effect_by_a_poll_sequence() {
        let t0 = Instant::now();
        let slow = Timers { desired_min_tx: ms(300), required_min_rx: ms(300), detect_mult: 3 };
        let mut a = Session::new(1, slow);
        let peer = |state, poll, final_| Control {
            state,
            poll,
            final_,
            desired_min_tx: 100_000,
            required_min_rx: 100_000,
            your_discriminator: 1,
            ..Session::new(2, Timers::default()).packet()
        };
        a.receive(&peer(State::Init, false, false), t0);
        a.receive(&peer(State::Up, false, true), t0);
        assert_eq!(a.state(), State::Up);
        assert_eq!(a.detection_time(), Some(ms(900)));
        // Faster: detection stays at the old (longer) time until the Final.
        a.set_timers(Timers { desired_min_tx: ms(100), required_min_rx: ms(100), detect_mult: 3 });
        assert_eq!(a.state(), State::Up, "a timer change does not reset the session");
        let p = a.packet();
        assert!(p.poll, "RFC 5880 §6.8.3: a Poll Sequence tells the peer");
        assert_eq!((p.desired_min_tx, p.required_min_rx), (100_000, 100_000));
        assert_eq!(a.detection_time(), Some(ms(900)), "no sooner than before, until the Final");
        a.receive(&peer(State::Up, false, true), t0);
        assert!(!a.packet().poll);
        assert_eq!(a.detection_time(), Some(ms(300)));
        // Slower: packets keep the old (faster) pace until the Final.
        a.set_timers(slow);
        assert_eq!(a.tx_interval(), Some(ms(100)));
        a.receive(&peer(State::Up, false, true), t0);
        assert_eq!(a.tx_interval(), Some(ms(300)));
        // Taken out of service: AdminDown, told to the peer.
        assert_eq!(a.admin_down().map(|c| (c.to, c.diag)), Some((State::AdminDown, Diag::AdminDown)));
        assert_eq!(a.packet().state, State::AdminDown);
    }
}
