//! The I/O around the sessions (RFC 5881, single hop, IPv4 and IPv6):
//! Control packets received on UDP 3784 with TTL or hop limit 255 (GTSM,
//! §5), sent from a source port in 49152–65535 (§4) with TTL or hop limit
//! 255, one socket per session; one task runs every session's timers. Its
//! user sets the peers it wants and hears of their state changes.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::unix::AsyncFd;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::packet::{Control, Diag, Malformed, State};
use crate::session::{Change, Session, Timers};

/// RFC 5881 §4: the destination port of single-hop Control packets.
pub const PORT: u16 = 3784;

/// AdminDown packets sent when a session is removed.
const ADMIN_DOWN_PACKETS: usize = 3;
/// RFC 5881 §5: sent with, and accepted only at, TTL 255.
const TTL: u8 = 255;
/// RFC 5881 §4: source ports.
const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// A peer to run a session with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its address (directly connected).
    pub remote: IpAddr,
    /// Ours on the link to it.
    pub local: IpAddr,
    /// Intervals and multiplier.
    pub timers: Timers,
}

/// A session's state change, for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The peer.
    pub peer: IpAddr,
    /// What changed.
    pub change: Change,
    /// The peer's own state as last heard: AdminDown means it took the
    /// session out of service, which is no failure (RFC 5882 §3.2).
    pub remote: State,
}

/// One session, as `tortie bfd show` and `tortie status` see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The peer.
    pub peer: IpAddr,
    /// Ours.
    pub local: IpAddr,
    /// State.
    pub state: State,
    /// Why it last went down.
    pub diag: Diag,
    /// Unix seconds of the last state change.
    pub since: u64,
    /// The interval we send at, and the peer's detection time for us.
    pub tx_interval: Option<Duration>,
    /// Our detection time for the peer.
    pub detection_time: Option<Duration>,
    /// Our and the peer's discriminators.
    pub discriminators: (u32, u32),
    /// The state the peer last reported (bfd.RemoteSessionState).
    pub remote_state: State,
}

/// Packets received and what became of them.
#[derive(Debug, Default)]
pub struct Counters {
    /// Valid packets delivered to a session.
    pub received: AtomicU64,
    /// Packets sent.
    pub sent: AtomicU64,
    /// Discarded: TTL not 255 (RFC 5881 §5).
    pub bad_ttl: AtomicU64,
    /// Discarded by RFC 5880 §6.8.6, by reason.
    pub malformed: [AtomicU64; 8],
    /// Discarded: no session for it.
    pub no_session: AtomicU64,
    /// Sessions that came up, and went down.
    pub ups: AtomicU64,
    /// Sessions that went down from Up.
    pub downs: AtomicU64,
}

impl Counters {
    fn malformed(&self, why: Malformed) -> &AtomicU64 {
        let i = Malformed::ALL.iter().position(|m| *m == why).unwrap_or_default();
        &self.malformed[i]
    }

    /// The count of packets discarded for `why`.
    pub fn malformed_count(&self, why: Malformed) -> u64 {
        self.malformed(why).load(Ordering::Relaxed)
    }
}

/// The running task: set the peers, read their states and the counters.
pub struct Bfd {
    peers: watch::Sender<Vec<Peer>>,
    /// Every session, as of the task's last step.
    pub sessions: watch::Receiver<Vec<View>>,
    /// What was received, sent and discarded.
    pub counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Bfd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Bfd {
    /// Runs sessions with exactly `peers` (new ones start Down, gone ones
    /// stop, changed ones start again).
    pub fn set_peers(&self, peers: Vec<Peer>) {
        self.peers.send_replace(peers);
    }
}

/// Opens UDP 3784 and starts the task; state changes come on the receiver.
pub fn start() -> std::io::Result<(Bfd, mpsc::UnboundedReceiver<Event>)> {
    let rx4 = std::net::UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT)))?;
    set_int(&rx4, libc::IPPROTO_IP, libc::IP_RECVTTL, 1)?;
    // IPv6 where the kernel has it (its own socket: IPv4 stays on the other).
    let rx6 = match v6_socket() {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "BFD: no IPv6 (UDP [::]:3784); IPv4 sessions only");
            None
        }
    };
    let register = |s: std::net::UdpSocket| -> std::io::Result<Rx> {
        s.set_nonblocking(true)?;
        // SAFETY: the AsyncFd owns the socket, whose descriptor stays open and the same until it is dropped.
        Ok(unsafe { AsyncFd::register(s) }?)
    };
    let rx = (register(rx4)?, rx6.map(register).transpose()?);
    let (peers, peers_rx) = watch::channel(Vec::new());
    let (views_tx, sessions) = watch::channel(Vec::new());
    let (events_tx, events) = mpsc::unbounded_channel();
    let counters = Arc::new(Counters::default());
    let task = Task {
        sessions: HashMap::new(),
        by_discr: HashMap::new(),
        counters: counters.clone(),
        events: events_tx,
        views: views_tx,
        seed: seed(),
        dirty: false,
    };
    let task = tokio::spawn(task.run(rx, peers_rx));
    Ok((Bfd { peers, sessions, counters, task }, events))
}

/// UDP [::]:3784 for IPv6 only, reporting each datagram's hop limit.
fn v6_socket() -> std::io::Result<std::net::UdpSocket> {
    // SAFETY: socket(2) with constant arguments; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor this function owns.
    let socket = unsafe { <std::net::UdpSocket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    set_int(&socket, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    set_int(&socket, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
    let mut addr: libc::sockaddr_in6 =
        // SAFETY: all-zero is a valid sockaddr_in6 (the unspecified address).
        unsafe { std::mem::zeroed() };
    addr.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    addr.sin6_port = PORT.to_be();
    // SAFETY: bind(2) reads a sockaddr_in6 of the length given.
    let done = unsafe { libc::bind(fd, (&raw const addr).cast(), size_of::<libc::sockaddr_in6>() as libc::socklen_t) };
    if done != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(socket)
}

fn set_int(socket: &impl std::os::fd::AsRawFd, level: i32, name: i32, value: i32) -> std::io::Result<()> {
    // SAFETY: setsockopt(2) reads an int that lives through the call.
    let done = unsafe {
        libc::setsockopt(socket.as_raw_fd(), level, name, (&raw const value).cast(), size_of::<i32>() as u32)
    };
    if done == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

fn seed() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (now.as_nanos() as u64 ^ u64::from(std::process::id()) << 32) | 1
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A receiving socket.
type Rx = AsyncFd<std::net::UdpSocket>;

struct Entry {
    peer: Peer,
    session: Session,
    socket: UdpSocket,
    next_tx: Instant,
    since: u64,
}

struct Task {
    sessions: HashMap<IpAddr, Entry>,
    by_discr: HashMap<u32, IpAddr>,
    counters: Arc<Counters>,
    events: mpsc::UnboundedSender<Event>,
    views: watch::Sender<Vec<View>>,
    /// xorshift state: discriminators and jitter.
    seed: u64,
    /// Something `View` shows changed since the last publication.
    dirty: bool,
}

impl Task {
    fn random(&mut self) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    fn jitter(&mut self) -> f64 {
        (self.random() >> 11) as f64 / (1u64 << 53) as f64
    }

    async fn run(mut self, rx: (Rx, Option<Rx>), mut peers: watch::Receiver<Vec<Peer>>) {
        let (rx4, rx6) = rx;
        let mut buf = [0u8; 512];
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                changed = peers.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let wanted = peers.borrow_and_update().clone();
                    self.set(wanted).await;
                }
                ready = rx4.readable() => {
                    let Ok(guard) = ready else { return };
                    self.drain(guard, &mut buf).await;
                }
                ready = async { match &rx6 { Some(rx) => rx.readable().await, None => std::future::pending().await } } => {
                    let Ok(guard) = ready else { return };
                    self.drain(guard, &mut buf).await;
                }
                () = tokio::time::sleep_until(deadline) => {}
            }
            // A packet in does not make anything due (its answers went out).
            if Instant::now() >= deadline {
                self.timers().await;
            }
            if std::mem::take(&mut self.dirty) {
                self.publish();
            }
        }
    }

    /// Every datagram waiting on a socket, then back to waiting.
    async fn drain(&mut self, mut guard: tokio::io::unix::AsyncFdReadyGuard<'_, std::net::UdpSocket>, buf: &mut [u8]) {
        loop {
            match recv(guard.get_inner(), buf) {
                Ok((len, from, ttl)) => self.received(&buf[..len.min(buf.len())], from, ttl).await,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "BFD: receiving");
                    return;
                }
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        self.sessions
            .values()
            .flat_map(|e| [Some(e.next_tx), e.session.detection_deadline().map(Instant::from_std)])
            .flatten()
            .min()
            .unwrap_or(far)
    }

    async fn set(&mut self, wanted: Vec<Peer>) {
        self.dirty = true;
        let keep: HashMap<IpAddr, Peer> = wanted.into_iter().map(|p| (p.remote, p)).collect();
        // New timers on the same link: the session stays, a Poll tells the peer.
        for (ip, e) in self.sessions.iter_mut() {
            if let Some(p) = keep.get(ip).filter(|p| p.local == e.peer.local && p.timers != e.peer.timers) {
                tracing::info!(peer = %ip, timers = ?p.timers, "BFD timers changed");
                e.peer = *p;
                e.session.set_timers(p.timers);
            }
        }
        let gone: Vec<IpAddr> =
            self.sessions.iter().filter(|(ip, e)| keep.get(*ip) != Some(&e.peer)).map(|(ip, _)| *ip).collect();
        for ip in gone {
            if let Some(mut e) = self.sessions.remove(&ip) {
                self.by_discr.remove(&e.session.local_discr());
                // RFC 5880 §6.8.16: the peer hears AdminDown, not silence,
                // so it does not take the removal for a failure; sent a few
                // times, so one lost packet does not make it a failure.
                if e.session.admin_down().is_some() && e.session.tx_interval().is_some() {
                    for _ in 0..ADMIN_DOWN_PACKETS {
                        send(&mut e, &self.counters).await;
                    }
                }
                tracing::info!(peer = %ip, "BFD session removed");
            }
        }
        for (ip, peer) in keep {
            if self.sessions.contains_key(&ip) {
                continue;
            }
            match self.open(peer).await {
                Ok(entry) => {
                    tracing::info!(peer = %ip, local = %peer.local, timers = ?peer.timers, "BFD session added");
                    self.by_discr.insert(entry.session.local_discr(), ip);
                    self.sessions.insert(ip, entry);
                }
                Err(e) => {
                    tracing::error!(peer = %ip, local = %peer.local, error = %e, "BFD: cannot open the session's socket")
                }
            }
        }
    }

    async fn open(&mut self, peer: Peer) -> std::io::Result<Entry> {
        let discr = loop {
            let d = self.random() as u32;
            if d != 0 && !self.by_discr.contains_key(&d) {
                break d;
            }
        };
        // A source port of the range, not in use (RFC 5881 §4).
        let span = u32::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
        let first = (self.random() % u64::from(span)) as u32;
        let mut last = None;
        for i in 0..64 {
            let port = *SOURCE_PORTS.start() + ((first + i) % span) as u16;
            match UdpSocket::bind(SocketAddr::new(peer.local, port)).await {
                Ok(socket) => {
                    match peer.remote {
                        IpAddr::V4(_) => set_int(&socket, libc::IPPROTO_IP, libc::IP_TTL, i32::from(TTL))?,
                        IpAddr::V6(_) => set_int(&socket, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, i32::from(TTL))?,
                    }
                    socket.connect(SocketAddr::new(peer.remote, PORT)).await?;
                    return Ok(Entry {
                        peer,
                        session: Session::new(discr, peer.timers),
                        socket,
                        next_tx: Instant::now(),
                        since: unix_now(),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no source port free")))
    }

    async fn received(&mut self, bytes: &[u8], from: IpAddr, ttl: Option<u8>) {
        if ttl != Some(TTL) {
            self.counters.bad_ttl.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let packet = match Control::decode(bytes) {
            Ok(p) => p,
            Err(why) => {
                self.counters.malformed(why).fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%from, why = why.as_str(), "BFD: packet discarded");
                return;
            }
        };
        // RFC 5880 §6.8.6: by Your Discriminator, else (single hop) by the source.
        let ip = match packet.your_discriminator {
            0 => Some(from),
            d => self.by_discr.get(&d).copied().filter(|ip| *ip == from),
        };
        let jitter = self.jitter();
        let Some(entry) = ip.and_then(|ip| self.sessions.get_mut(&ip)) else {
            self.counters.no_session.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let shown = |s: &Session| (s.tx_interval(), s.detection_time(), s.remote_discr());
        let before = shown(&entry.session);
        let change = entry.session.receive(&packet, now.into_std());
        self.dirty |= shown(&entry.session) != before;
        // A faster rate (the session came Up, the peer takes more) applies
        // from now: what we advertise is what the peer's detection counts on.
        if let Some(wait) = entry.session.next_tx(jitter) {
            entry.next_tx = entry.next_tx.min(now + wait);
        }
        let peer = entry.peer.remote;
        if entry.session.must_send() {
            send(entry, &self.counters).await;
        }
        if let Some(change) = change {
            self.changed(peer, change);
        }
    }

    /// Sends what is due and takes down the sessions whose peers went silent.
    async fn timers(&mut self) {
        let now = Instant::now();
        let peers: Vec<IpAddr> = self.sessions.keys().copied().collect();
        for ip in peers {
            let jitter = self.jitter();
            let Some(entry) = self.sessions.get_mut(&ip) else { continue };
            let change = entry.session.tick(now.into_std());
            if now + entry.session.early() >= entry.next_tx || change.is_some() {
                if entry.session.tx_interval().is_some() {
                    send(entry, &self.counters).await;
                }
                let wait = entry.session.next_tx(jitter).unwrap_or(Duration::from_secs(1));
                entry.next_tx = now + wait;
            }
            if let Some(change) = change {
                self.changed(ip, change);
            }
        }
    }

    fn changed(&mut self, peer: IpAddr, change: Change) {
        self.dirty = true;
        let mut remote = State::Down;
        if let Some(e) = self.sessions.get_mut(&peer) {
            e.since = unix_now();
            remote = e.session.remote_state();
        }
        match change.to {
            State::Up => {
                self.counters.ups.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%peer, "BFD session up");
            }
            _ if change.from == State::Up => {
                self.counters.downs.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, to = %change.to, diag = %change.diag, "BFD session down");
            }
            _ => tracing::debug!(%peer, from = %change.from, to = %change.to, "BFD session state"),
        }
        let _ = self.events.send(Event { peer, change, remote });
    }

    fn publish(&self) {
        let mut views: Vec<View> = self
            .sessions
            .values()
            .map(|e| View {
                peer: e.peer.remote,
                local: e.peer.local,
                state: e.session.state(),
                diag: e.session.diag(),
                since: e.since,
                tx_interval: e.session.tx_interval(),
                detection_time: e.session.detection_time(),
                discriminators: (e.session.local_discr(), e.session.remote_discr()),
                remote_state: e.session.remote_state(),
            })
            .collect();
        views.sort_by_key(|v| v.peer);
        self.views.send_if_modified(|old| {
            let changed = *old != views;
            if changed {
                *old = views;
            }
            changed
        });
    }
}

async fn send(entry: &mut Entry, counters: &Counters) {
    let bytes = entry.session.packet().encode();
    match entry.socket.send(&bytes).await {
        Ok(_) => {
            counters.sent.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => tracing::debug!(peer = %entry.peer.remote, error = %e, "BFD: sending"),
    }
}

/// One datagram: its length, source and TTL or hop limit (IP_RECVTTL, IPV6_RECVHOPLIMIT).
fn recv(socket: &std::net::UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, IpAddr, Option<u8>)> {
    // SAFETY: all-zero sockaddr_storage and msghdr are valid; recvmsg(2)
    // fills them, writing at most the lengths given, into buffers that live
    // through the call; the address is read as the family it names.
    unsafe {
        let mut from: libc::sockaddr_storage = std::mem::zeroed();
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let mut control = [0u8; 64];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&raw mut from).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len();
        let n = libc::recvmsg(socket.as_raw_fd(), &mut msg, 0);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ttl = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let hops = (c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_TTL)
                || (c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_HOPLIMIT);
            if hops {
                let value: i32 = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                ttl = u8::try_from(value).ok();
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        let addr = match i32::from(from.ss_family) {
            libc::AF_INET6 => {
                let sin6 = &*(&raw const from).cast::<libc::sockaddr_in6>();
                IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
            }
            _ => {
                let sin = &*(&raw const from).cast::<libc::sockaddr_in>();
                IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
            }
        };
        Ok((n as usize, addr, ttl))
    }
}
