//! TCP probes inside namespaces: a listener that accepts and closes every
//! connection, and a connect attempt that says whether the handshake
//! completed. Sockets keep the namespace they were created in, so both are
//! plain std sockets opened inside `Netns::enter`.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{LabError, Netns, Result};

/// A listener that accepts (and closes) connections until dropped.
pub struct Listener {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    sources: Arc<Mutex<Vec<IpAddr>>>,
}

impl Listener {
    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// The source address of each connection accepted so far, in order
    /// (what the listener saw: after any NAT on the way).
    pub fn sources(&self) -> Vec<IpAddr> {
        self.sources.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Listens on `addr` inside `netns`.
pub fn listen(netns: &Netns, addr: SocketAddr) -> Result<Listener> {
    let listener =
        netns.enter(|| TcpListener::bind(addr))?.map_err(|e| LabError::io("listening in", netns.dir(), e))?;
    listener.set_nonblocking(true).map_err(|e| LabError::io("listening in", netns.dir(), e))?;
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let sources = Arc::new(Mutex::new(Vec::new()));
    let (s, a, from) = (stop.clone(), accepted.clone(), sources.clone());
    std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((_, peer)) => {
                    if let Ok(mut f) = from.lock() {
                        f.push(peer.ip());
                    }
                    a.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Ok(Listener { stop, accepted, sources })
}

/// Whether a TCP connection from inside `netns` to `to` completes within
/// `timeout`.
pub fn connects(netns: &Netns, to: SocketAddr, timeout: Duration) -> Result<bool> {
    netns.enter(|| TcpStream::connect_timeout(&to, timeout).is_ok())
}
