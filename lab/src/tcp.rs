//! TCP probes inside namespaces: a listener that accepts and closes every
//! connection, and a connect attempt that says whether the handshake
//! completed. Sockets keep the namespace they were created in, so both are
//! plain std sockets opened inside `Netns::enter`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::{LabError, Netns, Result};

/// A listener that accepts (and closes) connections until dropped.
pub struct Listener {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
}

impl Listener {
    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
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
    let (s, a) = (stop.clone(), accepted.clone());
    std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok(_) => {
                    a.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Ok(Listener { stop, accepted })
}

/// Whether a TCP connection from inside `netns` to `to` completes within
/// `timeout`.
pub fn connects(netns: &Netns, to: SocketAddr, timeout: Duration) -> Result<bool> {
    netns.enter(|| TcpStream::connect_timeout(&to, timeout).is_ok())
}
