//! The speaker's BGP listener: accepts connections on one address and hands
//! each to the peer task of its source address. Connections from addresses
//! that are not configured peers are closed at once. Each peer's MD5 key is
//! installed on the listening socket, so unsigned or wrongly signed SYNs
//! never complete the handshake (RFC 2385).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::peer::PeerCommand;
use super::socket::{self, SocketError, SocketOptions};

/// Registered peers: source address → the peer task's commands.
type Peers = Arc<Mutex<HashMap<IpAddr, mpsc::Sender<PeerCommand>>>>;

/// A running listener. Dropping it stops accepting.
pub struct Listener {
    socket: Arc<TcpListener>,
    peers: Peers,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Listens on `addr` (e.g. `0.0.0.0:179`).
    pub fn bind(addr: SocketAddr) -> Result<Listener, SocketError> {
        let socket = Arc::new(socket::listen(addr)?);
        let peers: Peers = Arc::default();
        let task = tokio::spawn(accept_loop(socket.clone(), peers.clone()));
        Ok(Listener { socket, peers, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Routes connections from `peer` to `commands`, with the peer's protections.
    pub fn add_peer(
        &self,
        peer: IpAddr,
        options: &SocketOptions,
        commands: mpsc::Sender<PeerCommand>,
    ) -> Result<(), SocketError> {
        if let Some(key) = &options.md5_key {
            socket::set_md5_key(&*self.socket, peer, Some(key.as_bytes()))?;
        }
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).insert(peer, commands);
        Ok(())
    }

    /// Stops routing connections from `peer` and removes its MD5 key.
    pub fn remove_peer(&self, peer: IpAddr) -> Result<(), SocketError> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).remove(&peer);
        socket::set_md5_key(&*self.socket, peer, None).or_else(|e| match e {
            // No key was set for this peer: nothing to remove.
            SocketError::Os { source, .. } if source.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => Err(other),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(socket: Arc<TcpListener>, peers: Peers) {
    loop {
        let (stream, from) = match socket.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: say so, and keep serving.
                tracing::warn!(error = %e, "BGP listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let target = peers.lock().unwrap_or_else(|p| p.into_inner()).get(&from.ip()).cloned();
        match target {
            Some(commands) => {
                if commands.send(PeerCommand::Incoming(stream)).await.is_err() {
                    tracing::info!(peer = %from.ip(), "connection for a peer that is being removed; closed");
                }
            }
            None => tracing::info!(from = %from, "connection from an address that is not a configured peer; closed"),
        }
    }
}
