//! BFD for the node's BGP sessions, in a process of its own (`tortie bfd
//! run`, as FRR has bfdd): it outlives the node daemon, so a daemon that
//! crashes or restarts keeps its BFD sessions up and the peers keep
//! forwarding to it (BGP graceful restart covers the sessions), while a
//! node that dies falls silent and is detected in under a second.
//!
//! The daemon starts the helper when a peer first asks for BFD, and talks
//! to it over `<run dir>/bfd.sock` in JSON lines: it sends the peers it
//! wants; the helper sends the sessions' states and each state change.
//! A helper left without a daemon for [`ALONE`] stops (a node taken out of
//! service does not keep its peers' sessions up).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};
use tortie_bfd::{Peer, State, Timers};
use tortie_bgp::speaker::SpeakerCommand;

/// How long a helper keeps its sessions without a daemon: a restart takes
/// seconds; a node whose daemon is gone this long is out of service.
const ALONE: Duration = Duration::from_secs(120);

/// The first wait between BFD coming back up and BGP starting again.
const HOLD_DOWN: Duration = Duration::from_secs(1);
/// The longest that wait grows to while the link keeps flapping.
const MAX_HOLD_DOWN: Duration = Duration::from_secs(60);

/// Flap dampening: how long BGP waits after BFD comes up again, given the
/// wait the peer had last time and how long ago it last went down. Each
/// flap within [`MAX_HOLD_DOWN`] of the previous doubles the wait (up to
/// it); a peer down for longer than that starts again from [`HOLD_DOWN`].
pub fn hold_down(previous: Option<Duration>, down_for: Duration) -> Duration {
    match previous {
        Some(hold) if down_for < MAX_HOLD_DOWN => (hold * 2).min(MAX_HOLD_DOWN),
        _ => HOLD_DOWN,
    }
}

/// The helper's socket in a run directory.
fn socket(run_dir: &Path) -> PathBuf {
    run_dir.join("bfd.sock")
}

/// A peer as sent to the helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WirePeer {
    /// The peer.
    pub remote: IpAddr,
    /// Our address on its link.
    pub local: IpAddr,
    /// Desired Min TX and Required Min RX, milliseconds.
    pub interval_ms: u64,
    /// Detect Mult.
    pub multiplier: u8,
}

/// One session as the helper reports it (`tortie status`, `tortie bfd show`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The peer.
    pub peer: IpAddr,
    /// Ours.
    pub local: IpAddr,
    /// `Up`, `Down`, `Init`, `AdminDown`.
    pub state: String,
    /// Why it last went down.
    pub diag: String,
    /// Unix seconds of the last state change.
    pub since: u64,
    /// The interval we send at, milliseconds.
    pub tx_ms: Option<u64>,
    /// Our detection time for the peer, milliseconds.
    pub detect_ms: Option<u64>,
    /// The state the peer last reported.
    #[serde(default)]
    pub remote_state: String,
}

/// The helper's packet counters (metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Valid packets delivered to a session.
    pub received: u64,
    /// Packets sent.
    pub sent: u64,
    /// Discarded: TTL or hop limit not 255 (RFC 5881 §5).
    pub bad_ttl: u64,
    /// Discarded: no session for it.
    pub no_session: u64,
    /// Discarded by RFC 5880 §6.8.6, per reason.
    pub malformed: BTreeMap<String, u64>,
}

/// What the helper reports: every session, and its counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The sessions.
    pub sessions: Vec<Session>,
    /// The counters.
    pub counters: Counters,
}

#[derive(Debug, Serialize, Deserialize)]
enum ToHelper {
    Peers(Vec<WirePeer>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum FromHelper {
    Report(Report),
    Changed { peer: IpAddr, up: bool, diag: String },
}

/// How often the helper reports its counters while nothing changes.
const REPORT_EVERY: Duration = Duration::from_secs(5);

fn line<T: Serialize>(message: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(message).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

fn report(bfd: &tortie_bfd::Bfd) -> FromHelper {
    use std::sync::atomic::Ordering::Relaxed;
    let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
    let sessions = bfd
        .sessions
        .borrow()
        .iter()
        .map(|v| Session {
            peer: v.peer,
            local: v.local,
            state: v.state.to_string(),
            diag: v.diag.to_string(),
            since: v.since,
            tx_ms: ms(v.tx_interval),
            detect_ms: ms(v.detection_time),
            remote_state: v.remote_state.to_string(),
        })
        .collect();
    let c = &bfd.counters;
    let counters = Counters {
        received: c.received.load(Relaxed),
        sent: c.sent.load(Relaxed),
        bad_ttl: c.bad_ttl.load(Relaxed),
        no_session: c.no_session.load(Relaxed),
        malformed: tortie_bfd::Malformed::ALL.iter().map(|m| (m.as_str().to_string(), c.malformed_count(*m))).collect(),
    };
    FromHelper::Report(Report { sessions, counters })
}

/// `tortie bfd run`: the helper, until it has been alone for [`ALONE`].
pub async fn run_helper(run_dir: &Path) -> anyhow::Result<()> {
    let path = socket(run_dir);
    if UnixStream::connect(&path).await.is_ok() {
        anyhow::bail!("a BFD helper already serves {}", path.display());
    }
    // UDP first: a helper that cannot have the port leaves no socket behind
    // for the daemon to find.
    let (bfd, mut events) = tortie_bfd::start().context("opening UDP 3784 for BFD")?;
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).with_context(|| format!("listening on {}", path.display()))?;
    let mut sessions = bfd.sessions.clone();
    tracing::info!(socket = %path.display(), "BFD helper up");
    let mut client: Option<(
        tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
        tokio::net::unix::OwnedWriteHalf,
    )> = None;
    // Up/down changes while no daemon listens: the latest per peer, told
    // to the next one, so none is lost across a daemon restart.
    let mut missed: BTreeMap<IpAddr, FromHelper> = BTreeMap::new();
    let mut alone = Box::pin(tokio::time::sleep(ALONE));
    let mut tick = tokio::time::interval(REPORT_EVERY);
    loop {
        let alone_now = client.is_none();
        let next_line = async {
            match &mut client {
                Some((lines, _)) => lines.next_line().await,
                None => std::future::pending().await,
            }
        };
        let mut outgoing = Vec::new();
        tokio::select! {
            accepted = listener.accept() => match accepted {
                // One daemon per run directory: another connection (a
                // second daemon, or a probe) is closed at once.
                Ok(_) if client.is_some() => tracing::warn!("BFD helper: a second client refused"),
                Ok((stream, _)) => {
                    let (read, write) = stream.into_split();
                    client = Some((BufReader::new(read).lines(), write));
                    tracing::info!(missed = missed.len(), "BFD helper: the node daemon connected");
                    outgoing.push(report(&bfd));
                    outgoing.extend(std::mem::take(&mut missed).into_values());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "BFD helper: accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            got = next_line => match got {
                Ok(Some(text)) => match serde_json::from_str::<ToHelper>(&text) {
                    Ok(ToHelper::Peers(peers)) => bfd.set_peers(peers.iter().map(|p| Peer {
                        remote: p.remote,
                        local: p.local,
                        timers: Timers {
                            desired_min_tx: Duration::from_millis(p.interval_ms),
                            required_min_rx: Duration::from_millis(p.interval_ms),
                            detect_mult: p.multiplier,
                        },
                    }).collect()),
                    Err(e) => tracing::warn!(error = %e, "BFD helper: unreadable request"),
                },
                _ => {
                    tracing::warn!(alone = ?ALONE, "BFD helper: the node daemon went away; sessions stay up meanwhile");
                    client = None;
                    alone.as_mut().reset(tokio::time::Instant::now() + ALONE);
                }
            },
            Some(e) = events.recv() => {
                // Up, and down from Up, are news for BGP; Down ⇄ Init is
                // not, nor a peer taking its session out of service
                // (AdminDown: RFC 5882 §3.2, BGP must not act on it).
                let up = e.change.to == State::Up;
                if e.remote == State::AdminDown && !up {
                    tracing::info!(peer = %e.peer, "BFD: the peer took the session out of service (AdminDown); BGP left alone");
                } else if up || e.change.from == State::Up {
                    let diag = e.change.diag.to_string();
                    let changed = FromHelper::Changed { peer: e.peer, up, diag };
                    match client {
                        Some(_) => outgoing.push(changed),
                        None => { missed.insert(e.peer, changed); }
                    }
                }
            }
            Ok(()) = sessions.changed() => outgoing.push(report(&bfd)),
            _ = tick.tick() => outgoing.push(report(&bfd)),
            () = &mut alone, if alone_now => {
                tracing::warn!(alone = ?ALONE, "BFD helper: no node daemon for this long; stopping");
                let _ = std::fs::remove_file(&path);
                return Ok(());
            }
        }
        let bytes: Vec<u8> = outgoing.iter().flat_map(line).collect();
        if let (false, Some((_, write))) = (bytes.is_empty(), &mut client)
            && write.write_all(&bytes).await.is_err()
        {
            // The next connection starts from a full report; the changes
            // are told again.
            for changed in outgoing.into_iter().filter(|m| matches!(m, FromHelper::Changed { .. })) {
                if let FromHelper::Changed { peer, .. } = changed {
                    missed.insert(peer, changed);
                }
            }
            client = None;
            alone.as_mut().reset(tokio::time::Instant::now() + ALONE);
        }
    }
}

/// Connects to the run directory's helper, starting one if there is none.
async fn connect(run_dir: &Path) -> anyhow::Result<UnixStream> {
    let path = socket(run_dir);
    if let Ok(s) = UnixStream::connect(&path).await {
        return Ok(s);
    }
    let exe = std::env::current_exe().context("locating the tortie binary")?;
    let log = std::fs::File::create(run_dir.join("bfd.log")).context("creating bfd.log")?;
    let mut command = std::process::Command::new(exe);
    command.args(["bfd", "run", "--run-dir"]).arg(run_dir).stdin(std::process::Stdio::null());
    command.stdout(log.try_clone()?).stderr(log);
    // Its own session: a signal to the daemon's process group spares it.
    // SAFETY: setsid(2) is async-signal-safe, as pre_exec requires.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command.spawn().context("starting the BFD helper")?;
    tracing::info!(pid = child.id(), "started the BFD helper");
    // Reaped when it exits (while the daemon lives).
    std::thread::spawn(move || child.wait());
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(s) = UnixStream::connect(&path).await {
            return Ok(s);
        }
    }
    anyhow::bail!("the BFD helper did not open {} (see bfd.log)", path.display())
}

/// The BFD peers of the daemon's sessions: per peer address, its sessions' names and settings.
pub type Wanted = BTreeMap<IpAddr, (Vec<String>, WirePeer)>;

/// Keeps the helper's peers equal to `wanted` and tells the speaker when
/// a peer becomes unreachable or reachable; the helper's reports go to the
/// returned watch.
pub fn follow(
    run_dir: PathBuf,
    mut wanted: watch::Receiver<Wanted>,
    speaker: mpsc::Sender<SpeakerCommand>,
) -> watch::Receiver<Report> {
    let (tx, rx) = watch::channel(Report::default());
    tokio::spawn(async move {
        // Kept across reconnections to the helper: a peer stopped while
        // the link to the helper is down is started again when it is back.
        let mut flaps = Flaps::default();
        loop {
            // No helper until a peer asks for BFD; sessions BFD stopped
            // start again once none does.
            loop {
                let none = wanted.borrow_and_update().is_empty();
                if !none {
                    break;
                }
                let current = wanted.borrow().clone();
                if release(&mut flaps, &current, &speaker).await.is_err() || wanted.changed().await.is_err() {
                    return;
                }
            }
            if let Err(e) = serve(&run_dir, &mut wanted, &speaker, &tx, &mut flaps).await {
                tracing::error!(error = format!("{e:#}"), "BFD helper link lost; trying again");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    rx
}

/// What BFD did to each peer's BGP sessions.
struct Flaps {
    /// Per peer: when BFD last went down, and the hold-down it got then.
    last: std::collections::HashMap<IpAddr, (tokio::time::Instant, Option<Duration>)>,
    /// Peers whose sessions are stopped until BFD is up again, with the sessions' names.
    stopped: std::collections::HashMap<IpAddr, std::collections::BTreeSet<String>>,
    /// A peer's hold-down ran out (with the time of the fall it answers).
    start_tx: mpsc::UnboundedSender<(IpAddr, tokio::time::Instant)>,
    start_rx: mpsc::UnboundedReceiver<(IpAddr, tokio::time::Instant)>,
}

impl Default for Flaps {
    fn default() -> Flaps {
        let (start_tx, start_rx) = mpsc::unbounded_channel();
        Flaps { last: Default::default(), stopped: Default::default(), start_tx, start_rx }
    }
}

impl Flaps {
    /// BFD went down: the sessions stop; the hold-down to come counts the flap.
    fn down(&mut self, peer: IpAddr, sessions: Vec<String>) {
        // The last hold-down counts only if the last flap was recent.
        let recent = |(at, _): &&(tokio::time::Instant, Option<Duration>)| at.elapsed() < 2 * MAX_HOLD_DOWN;
        let hold = self.last.get(&peer).filter(recent).and_then(|(_, hold)| *hold);
        self.last.insert(peer, (tokio::time::Instant::now(), hold));
        self.stopped.entry(peer).or_default().extend(sessions);
    }

    /// BFD is up: if the sessions were stopped, they start after the hold-down.
    fn up(&mut self, peer: IpAddr) {
        if !self.stopped.contains_key(&peer) {
            return;
        }
        let Some((since, previous)) = self.last.get_mut(&peer) else { return };
        // RFC 5882 §3.2: a flapping link must not flap BGP as fast.
        let hold = hold_down(*previous, since.elapsed());
        *previous = Some(hold);
        let down_at = *since;
        tracing::info!(%peer, ?hold, "BFD session up; BGP starts again after the hold-down");
        let tx = self.start_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            let _ = tx.send((peer, down_at));
        });
    }

    /// A hold-down ran out: the sessions that start now (none if BFD has
    /// gone down again meanwhile).
    fn start(&mut self, peer: IpAddr, down_at: tokio::time::Instant) -> Vec<String> {
        let due = self.last.get(&peer).is_some_and(|(since, _)| *since == down_at);
        if due { self.stopped.remove(&peer).unwrap_or_default().into_iter().collect() } else { Vec::new() }
    }

    /// BFD is no longer asked for: the sessions it stopped start now.
    fn released(&mut self, wanted: &Wanted) -> Vec<String> {
        let gone: Vec<IpAddr> = self.stopped.keys().filter(|p| !wanted.contains_key(p)).copied().collect();
        gone.iter().flat_map(|p| self.stopped.remove(p).unwrap_or_default()).collect()
    }
}

/// Starts the sessions BFD stopped for peers `wanted` no longer has.
async fn release(
    flaps: &mut Flaps,
    wanted: &Wanted,
    speaker: &mpsc::Sender<SpeakerCommand>,
) -> Result<(), mpsc::error::SendError<SpeakerCommand>> {
    let released = flaps.released(wanted);
    if !released.is_empty() {
        tracing::info!(sessions = ?released, "BFD no longer asked for: the sessions it stopped start again");
    }
    for peer in released {
        speaker.send(SpeakerCommand::Reachable { peer, reachable: true }).await?;
    }
    Ok(())
}

async fn serve(
    run_dir: &Path,
    wanted: &mut watch::Receiver<Wanted>,
    speaker: &mpsc::Sender<SpeakerCommand>,
    reports: &watch::Sender<Report>,
    flaps: &mut Flaps,
) -> anyhow::Result<()> {
    let (read, mut write) = connect(run_dir).await?.into_split();
    let mut lines = BufReader::new(read).lines();
    let send = |w: &Wanted| line(&ToHelper::Peers(w.values().map(|(_, p)| *p).collect()));
    let first = send(&wanted.borrow_and_update());
    // What was turned off while the link was down is released now.
    let current = wanted.borrow().clone();
    release(flaps, &current, speaker).await?;
    write.write_all(&first).await?;
    let reachable = |names: Vec<String>, reachable: bool| {
        names.into_iter().map(move |name| SpeakerCommand::Reachable { peer: name, reachable })
    };
    let mut fresh = true;
    loop {
        tokio::select! {
            changed = wanted.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let bytes = send(&wanted.borrow_and_update());
                let current = wanted.borrow().clone();
                release(flaps, &current, speaker).await?;
                write.write_all(&bytes).await?;
            }
            Some((peer, down_at)) = flaps.start_rx.recv() => {
                for command in reachable(flaps.start(peer, down_at), true) {
                    speaker.send(command).await?;
                }
            }
            got = lines.next_line() => {
                let text = got?.context("the BFD helper closed the connection")?;
                match serde_json::from_str::<FromHelper>(&text)? {
                    FromHelper::Report(r) => {
                        // The first report after a reconnection: a stopped
                        // peer whose session came up meanwhile starts again.
                        if std::mem::take(&mut fresh) {
                            let up: Vec<IpAddr> =
                                r.sessions.iter().filter(|s| s.state == State::Up.to_string()).map(|s| s.peer).collect();
                            up.into_iter().for_each(|peer| flaps.up(peer));
                        }
                        reports.send_replace(r);
                    }
                    FromHelper::Changed { peer, up: false, diag } => {
                        let names = wanted.borrow().get(&peer).map(|(n, _)| n.clone()).unwrap_or_default();
                        tracing::info!(%peer, diag, sessions = ?names, "BFD session down");
                        flaps.down(peer, names.clone());
                        for command in reachable(names, false) {
                            speaker.send(command).await?;
                        }
                    }
                    FromHelper::Changed { peer, up: true, .. } => flaps.up(peer),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_down_doubles_while_the_link_flaps_and_starts_over_once_it_settles() {
        let s = Duration::from_secs;
        assert_eq!(hold_down(None, s(0)), s(1), "a first flap");
        assert_eq!(hold_down(Some(s(1)), s(2)), s(2));
        assert_eq!(hold_down(Some(s(16)), s(5)), s(32));
        assert_eq!(hold_down(Some(s(32)), s(5)), s(60), "capped");
        assert_eq!(hold_down(Some(s(60)), s(61)), s(1), "down longer than the cap: a new start");
    }

    /// Real time (about 3 s: hold-downs of 1 and 2 s): tokio's paused clock
    /// (`test-util`) would make `cargo bench` build another binary than
    /// `cargo build --release`, with other symbol names than
    /// `text-order.txt`'s.
    #[tokio::test]
    async fn stopped_sessions_start_after_the_hold_down_unless_bfd_falls_again_or_is_turned_off() {
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.2".parse().unwrap(), "192.0.2.3".parse().unwrap());
        let mut flaps = Flaps::default();
        flaps.up(a);
        assert!(flaps.stopped.is_empty(), "up with nothing stopped: nothing to start");
        flaps.down(a, vec!["Mesh_a".into()]);
        flaps.up(a);
        let (peer, at) = flaps.start_rx.recv().await.unwrap();
        assert_eq!(flaps.start(peer, at), vec!["Mesh_a".to_string()], "started after the hold-down");
        // Down, up, and down again before the hold-down ends: no start.
        flaps.down(a, vec!["Mesh_a".into()]);
        flaps.up(a);
        tokio::time::sleep(Duration::from_millis(10)).await;
        flaps.down(a, vec!["Mesh_a".into()]);
        let (peer, at) = flaps.start_rx.recv().await.unwrap();
        assert!(flaps.start(peer, at).is_empty(), "a start for an older fall is void");
        // BFD turned off for a stopped peer: its sessions start at once.
        flaps.down(b, vec!["Global_b".into()]);
        let wanted: Wanted = BTreeMap::new();
        let mut released = flaps.released(&wanted);
        released.sort();
        assert_eq!(released, vec!["Global_b".to_string(), "Mesh_a".to_string()]);
        assert!(flaps.stopped.is_empty());
    }
}
