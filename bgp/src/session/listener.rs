//! The speaker's BGP listener: accepts connections on one address and hands
//! each to the peer task of its source address. A connection from an
//! address inside a dynamic-neighbour range (BIRD's `neighbor range`, FRR's
//! `bgp listen range`) goes to the speaker, which makes a peer for it;
//! connections from anywhere else are closed at once. Each peer's MD5 key is
//! installed on the listening socket, so unsigned or wrongly signed SYNs
//! never complete the handshake (RFC 2385).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::peer::PeerCommand;
use super::socket::{self, SocketError, SocketOptions};

/// Registered peers: source address → the peer task's commands.
type Peers = Arc<Mutex<HashMap<IpAddr, mpsc::Sender<PeerCommand>>>>;

/// Dynamic-neighbour ranges and where their connections go.
#[derive(Default)]
struct Dynamic {
    ranges: Vec<IpNet>,
    to: Option<mpsc::Sender<(TcpStream, SocketAddr)>>,
}

/// A running listener. Dropping it stops accepting.
pub struct Listener {
    socket: Arc<TcpListener>,
    peers: Peers,
    dynamic: Arc<Mutex<Dynamic>>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Listens on `addr` (e.g. `0.0.0.0:179`).
    pub fn bind(addr: SocketAddr) -> Result<Listener, SocketError> {
        let socket = Arc::new(socket::listen(addr)?);
        let peers: Peers = Arc::default();
        let dynamic: Arc<Mutex<Dynamic>> = Arc::default();
        let task = tokio::spawn(accept_loop(socket.clone(), peers.clone(), dynamic.clone()));
        Ok(Listener { socket, peers, dynamic, task })
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

    /// Accepts connections from any address in `range` that is not a
    /// configured peer, handing them to `to` (the speaker makes the peer).
    pub fn add_range(&self, range: IpNet, to: mpsc::Sender<(TcpStream, SocketAddr)>) {
        let mut d = self.dynamic.lock().unwrap_or_else(|p| p.into_inner());
        d.ranges.push(range);
        d.to = Some(to);
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

async fn accept_loop(socket: Arc<TcpListener>, peers: Peers, dynamic: Arc<Mutex<Dynamic>>) {
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
            None => {
                let to = {
                    let d = dynamic.lock().unwrap_or_else(|p| p.into_inner());
                    d.ranges.iter().any(|r| r.contains(&from.ip())).then(|| d.to.clone()).flatten()
                };
                match to {
                    Some(to) => {
                        let _ = to.send((stream, from)).await;
                    }
                    None => {
                        tracing::info!(from = %from, "connection from an address that is not a configured peer; closed")
                    }
                }
            }
        }
    }
}
