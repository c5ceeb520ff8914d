//! A BGP peer that stops reading (issue #25's slow peer): it takes the
//! connection of the speaker under test on port 179 with a 4 KiB receive
//! buffer (8 KiB as the kernel counts it), answers its OPEN with one of
//! its own (no capabilities: IPv4 unicast, RFC 4271 §4.2) and a
//! KEEPALIVE, reads until the speaker's KEEPALIVE has come (the session is
//! up), and from then on only writes a KEEPALIVE every third of the hold
//! time, reading nothing, so that all the speaker sends it piles up in
//! the speaker's socket.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{LabError, Netns, Result};

/// The hold time its OPEN offers, seconds (RFC 4271 §4.2); it writes a KEEPALIVE every third of it.
const HOLD_TIME: u16 = 9;
/// A BGP message's header: marker, length, type (RFC 4271 §4.1).
const HEADER: usize = 19;
const KEEPALIVE: u8 = 4;

/// A message of `kind` with `body`.
fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((HEADER + body.len()) as u16).to_be_bytes());
    m.push(kind);
    m.extend_from_slice(body);
    m
}

/// An OPEN (RFC 4271 §4.2): version 4, `asn`, the hold time, `id`, no optional parameters.
fn open(asn: u16, id: Ipv4Addr) -> Vec<u8> {
    let mut body = vec![4];
    body.extend_from_slice(&asn.to_be_bytes());
    body.extend_from_slice(&HOLD_TIME.to_be_bytes());
    body.extend_from_slice(&id.octets());
    body.push(0);
    message(1, &body)
}

/// The hold time the session runs with, seconds (RFC 4271 §4.2: the
/// smaller of the two OPENs'): `b` starts with the speaker's OPEN.
fn negotiated_hold_time(b: &[u8]) -> u16 {
    b.get(22..24).map_or(HOLD_TIME, |h| u16::from_be_bytes([h[0], h[1]]).min(HOLD_TIME))
}

/// Whether the whole messages at the start of `b` include a KEEPALIVE.
fn has_keepalive(b: &[u8]) -> bool {
    let mut at = 0;
    while let Some(header) = b.get(at..at + HEADER) {
        if header[18] == KEEPALIVE {
            return true;
        }
        at += usize::from(u16::from_be_bytes([header[16], header[17]])).max(HEADER);
    }
    false
}

/// The peer, running until dropped.
pub struct Stalled {
    stop: Arc<AtomicBool>,
    up: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Stalled {
    /// Listens on `addr`:179 in `ns` as AS `asn` for one connection.
    pub fn start(ns: &Netns, addr: Ipv4Addr, asn: u16) -> Result<Stalled> {
        let fail = |e: std::io::Error| LabError::io("the stalled peer listening in", ns.dir(), e);
        let listener = ns.enter(|| TcpListener::bind((addr, 179)))?.map_err(fail)?;
        // (Set on the listener, so that the window it offers starts small.)
        crate::tcp::small_receive_buffer(&listener, 4096).map_err(fail)?;
        listener.set_nonblocking(true).map_err(fail)?;
        let (stop, up) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (stop_in, up_in) = (stop.clone(), up.clone());
        let thread = std::thread::spawn(move || {
            // An error ends the peer: the speaker under test sees its session go.
            if let Err(e) = serve(&listener, open(asn, addr), &stop_in, &up_in) {
                eprintln!("the stalled peer {addr}: {e}");
            }
        });
        Ok(Stalled { stop, up, thread: Some(thread) })
    }

    /// Whether the session is up (and nothing is read any more).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}

/// Takes one connection, brings the session up, then only writes KEEPALIVEs.
fn serve(listener: &TcpListener, open: Vec<u8>, stop: &AtomicBool, up: &AtomicBool) -> std::io::Result<()> {
    let pause = Duration::from_millis(100);
    let mut s: TcpStream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && !stop.load(Ordering::Relaxed) => {
                std::thread::sleep(pause)
            }
            Err(e) => return Err(e),
        }
    };
    s.set_nonblocking(false)?;
    let keepalive = message(KEEPALIVE, &[]);
    s.write_all(&open)?;
    s.write_all(&keepalive)?;
    // The speaker's OPEN and KEEPALIVE (perhaps more behind them in the
    // same read; nothing is read after).
    s.set_read_timeout(Some(pause))?;
    let (mut got, mut chunk) = (Vec::new(), [0u8; 512]);
    while !has_keepalive(&got) {
        match s.read(&mut chunk) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
    }
    up.store(true, Ordering::Relaxed);
    // (A hold time of zero: no KEEPALIVEs at all, RFC 4271 §4.4.)
    let hold = negotiated_hold_time(&got);
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if hold > 0 && last.elapsed() >= Duration::from_secs(u64::from(hold / 3).max(1)) {
            s.write_all(&keepalive)?;
            last = Instant::now();
        }
        std::thread::sleep(pause);
    }
    Ok(())
}

impl Drop for Stalled {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_messages_are_framed_as_rfc_4271_says_and_a_keepalive_is_found_behind_others() {
        let o = open(65012, Ipv4Addr::new(192, 0, 2, 12));
        assert_eq!(o.len(), 29, "an OPEN with no optional parameters");
        assert_eq!((&o[16..19], &o[19..22], &o[22..24]), (&[0, 29, 1][..], &[4, 0xfd, 0xf4][..], &[0, 9][..]));
        let k = message(KEEPALIVE, &[]);
        assert_eq!(k.len(), HEADER);
        assert!(!has_keepalive(&o) && has_keepalive(&k));
        assert!(has_keepalive(&[o.clone(), k.clone()].concat()), "behind the OPEN");
        assert!(!has_keepalive(&[o.clone(), k[..10].to_vec()].concat()), "not a cut one");
        let theirs = |hold: u16| [&o[..22], &hold.to_be_bytes()[..], &o[24..]].concat();
        assert_eq!((negotiated_hold_time(&theirs(3)), negotiated_hold_time(&theirs(90))), (3, HOLD_TIME));
        assert_eq!(negotiated_hold_time(&theirs(0)), 0);
    }
}
