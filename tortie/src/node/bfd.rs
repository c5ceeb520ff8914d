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
}

#[derive(Debug, Serialize, Deserialize)]
enum ToHelper {
    Peers(Vec<WirePeer>),
}

#[derive(Debug, Serialize, Deserialize)]
enum FromHelper {
    Sessions(Vec<Session>),
    Changed { peer: IpAddr, up: bool, diag: String },
}

fn line<T: Serialize>(message: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(message).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

fn views(bfd: &tortie_bfd::Bfd) -> Vec<Session> {
    let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
    bfd.sessions
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
        })
        .collect()
}

/// `tortie bfd run`: the helper, until it has been alone for [`ALONE`].
pub async fn run_helper(run_dir: &Path) -> anyhow::Result<()> {
    let path = socket(run_dir);
    if UnixStream::connect(&path).await.is_ok() {
        anyhow::bail!("a BFD helper already serves {}", path.display());
    }
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).with_context(|| format!("listening on {}", path.display()))?;
    let (bfd, mut events) = tortie_bfd::start().context("opening UDP 3784 for BFD")?;
    let mut sessions = bfd.sessions.clone();
    tracing::info!(socket = %path.display(), "BFD helper up");
    let mut client: Option<(
        tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
        tokio::net::unix::OwnedWriteHalf,
    )> = None;
    let mut alone = Box::pin(tokio::time::sleep(ALONE));
    loop {
        let alone_now = client.is_none();
        let next_line = async {
            match &mut client {
                Some((lines, _)) => lines.next_line().await,
                None => std::future::pending().await,
            }
        };
        let mut outgoing = None;
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted.context("accepting the node daemon")?;
                let (read, write) = stream.into_split();
                client = Some((BufReader::new(read).lines(), write));
                tracing::info!("BFD helper: the node daemon connected");
                outgoing = Some(line(&FromHelper::Sessions(views(&bfd))));
            }
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
                // Up, and down from Up, are news for BGP; Down ⇄ Init is not.
                let up = e.change.to == State::Up;
                if up || e.change.from == State::Up {
                    let diag = e.change.diag.to_string();
                    outgoing = Some(line(&FromHelper::Changed { peer: e.peer, up, diag }));
                }
            }
            Ok(()) = sessions.changed() => {
                outgoing = Some(line(&FromHelper::Sessions(views(&bfd))));
            }
            () = &mut alone, if alone_now => {
                tracing::warn!(alone = ?ALONE, "BFD helper: no node daemon for this long; stopping");
                let _ = std::fs::remove_file(&path);
                return Ok(());
            }
        }
        if let (Some(bytes), Some((_, write))) = (outgoing, &mut client)
            && write.write_all(&bytes).await.is_err()
        {
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
/// a peer becomes unreachable or reachable; the sessions' states go to the
/// returned watch.
pub fn follow(
    run_dir: PathBuf,
    mut wanted: watch::Receiver<Wanted>,
    speaker: mpsc::Sender<SpeakerCommand>,
) -> watch::Receiver<Vec<Session>> {
    let (tx, rx) = watch::channel(Vec::new());
    tokio::spawn(async move {
        loop {
            // No helper until a peer asks for BFD.
            loop {
                let none = wanted.borrow_and_update().is_empty();
                if !none {
                    break;
                }
                if wanted.changed().await.is_err() {
                    return;
                }
            }
            if let Err(e) = serve(&run_dir, &mut wanted, &speaker, &tx).await {
                tracing::error!(error = format!("{e:#}"), "BFD helper link lost; trying again");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    rx
}

async fn serve(
    run_dir: &Path,
    wanted: &mut watch::Receiver<Wanted>,
    speaker: &mpsc::Sender<SpeakerCommand>,
    sessions: &watch::Sender<Vec<Session>>,
) -> anyhow::Result<()> {
    let (read, mut write) = connect(run_dir).await?.into_split();
    let mut lines = BufReader::new(read).lines();
    // Per peer: when BFD last went down, and the hold-down it got then.
    let mut flaps: std::collections::HashMap<IpAddr, (tokio::time::Instant, Option<Duration>)> = Default::default();
    let (start_tx, mut start_rx) = mpsc::unbounded_channel::<(IpAddr, tokio::time::Instant)>();
    let send = |w: &Wanted| line(&ToHelper::Peers(w.values().map(|(_, p)| *p).collect()));
    let first = send(&wanted.borrow_and_update());
    write.write_all(&first).await?;
    loop {
        tokio::select! {
            changed = wanted.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let bytes = send(&wanted.borrow_and_update());
                write.write_all(&bytes).await?;
            }
            Some((peer, down_at)) = start_rx.recv() => {
                // Only if BFD has not gone down again meanwhile.
                if flaps.get(&peer).is_some_and(|(since, _)| *since == down_at) {
                    let names = wanted.borrow().get(&peer).map(|(n, _)| n.clone()).unwrap_or_default();
                    for name in names {
                        speaker.send(SpeakerCommand::Reachable { peer: name, reachable: true }).await?;
                    }
                }
            }
            got = lines.next_line() => {
                let text = got?.context("the BFD helper closed the connection")?;
                match serde_json::from_str::<FromHelper>(&text)? {
                    FromHelper::Sessions(s) => {
                        sessions.send_replace(s);
                    }
                    FromHelper::Changed { peer, up: false, diag } => {
                        let names = wanted.borrow().get(&peer).map(|(n, _)| n.clone()).unwrap_or_default();
                        tracing::info!(%peer, diag, sessions = ?names, "BFD session down");
                        // The last hold-down counts only if the last flap was recent.
                        let recent = |(at, _): &&(tokio::time::Instant, Option<Duration>)| at.elapsed() < 2 * MAX_HOLD_DOWN;
                        let hold = flaps.get(&peer).filter(recent).and_then(|(_, hold)| *hold);
                        flaps.insert(peer, (tokio::time::Instant::now(), hold));
                        for name in names {
                            speaker.send(SpeakerCommand::Reachable { peer: name, reachable: false }).await?;
                        }
                    }
                    FromHelper::Changed { peer, up: true, .. } => {
                        let Some((since, previous)) = flaps.get_mut(&peer) else { continue };
                        // RFC 5882 §3.2: a flapping link must not flap BGP as fast.
                        let hold = hold_down(*previous, since.elapsed());
                        *previous = Some(hold);
                        let down_at = *since;
                        tracing::info!(%peer, ?hold, "BFD session up; BGP starts again after the hold-down");
                        let tx = start_tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(hold).await;
                            let _ = tx.send((peer, down_at));
                        });
                    }
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
}
