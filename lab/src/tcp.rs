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

/// Gives `listener` (and the connections it takes) a receive buffer of
/// `octets` (the kernel doubles it): a peer on it is slow to take what
/// it is sent. Set before a connection comes, so its window starts small.
pub fn small_receive_buffer(listener: &TcpListener, octets: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket and a c_int option of its size.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const octets).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}
