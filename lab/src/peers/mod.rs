//! Typed harnesses for real BGP speakers and etcd.
//!
//! Each BGP harness starts its daemon in a lab namespace from a
//! [`Speaker`] description (or from config text the test writes), waits
//! until its control interface answers, and reports sessions and routes in
//! the common types below, so a test reads the same whichever daemon it
//! talks to. Daemon-specific queries stay on each harness.

mod bird;
mod etcd;
mod exabgp;
mod frr;
mod gobgp;
mod stalled;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::IpNet;

use crate::{Check, Result, wait_for};

pub use bird::{Bird, BirdControl, BirdProtocol};
pub use etcd::{Etcd, EtcdCluster, Security, TlsFiles};
pub use exabgp::ExaBgp;
pub use frr::{Frr, FrrNeighbor};
pub use gobgp::GoBgp;
pub use stalled::Stalled;

/// Hold time the harnesses configure (seconds): short, so tests notice a
/// dead session quickly. Keepalive is a third of it.
pub const TEST_HOLD_TIME: u16 = 9;

/// One BGP speaker to start: identity, prefixes it originates, neighbours.
#[derive(Debug, Clone)]
pub struct Speaker {
    /// BGP identifier.
    pub router_id: Ipv4Addr,
    /// Local AS number.
    pub asn: u32,
    /// IPv4 prefixes this speaker originates.
    pub announce: Vec<IpNet>,
    /// Its BGP neighbours.
    pub neighbors: Vec<Neighbor>,
}

/// A BGP neighbour of a [`Speaker`].
#[derive(Debug, Clone)]
pub struct Neighbor {
    /// A short name (BIRD uses it as the protocol name: letters, digits, `_`).
    pub name: String,
    /// The neighbour's address.
    pub address: IpAddr,
    /// The AS the neighbour is expected to have.
    pub asn: u32,
    /// The local address to use for this session, if not chosen by routing.
    pub local_address: Option<IpAddr>,
    /// TCP MD5 signature key (RFC 2385).
    pub md5_password: Option<String>,
    /// BFD on the session (RFC 5880, 300 ms × 3).
    pub bfd: bool,
}

impl Neighbor {
    /// A neighbour with no local address pinned and no MD5 key.
    pub fn new(name: &str, address: IpAddr, asn: u32) -> Neighbor {
        Neighbor { name: name.to_string(), address, asn, local_address: None, md5_password: None, bfd: false }
    }

    /// Watches the session with BFD (the daemon runs its BFD side too).
    pub fn bfd(mut self) -> Neighbor {
        self.bfd = true;
        self
    }

    /// Pins the local address of the session.
    pub fn local_address(mut self, addr: IpAddr) -> Neighbor {
        self.local_address = Some(addr);
        self
    }

    /// Protects the session with a TCP MD5 signature key.
    pub fn md5_password(mut self, key: &str) -> Neighbor {
        self.md5_password = Some(key.to_string());
        self
    }
}

/// A BGP session's state (RFC 4271 §8.2.2), as the peer daemon reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Idle, or a state the daemon does not name.
    Idle,
    /// Waiting for an outgoing TCP connection.
    Connect,
    /// Waiting for an incoming TCP connection.
    Active,
    /// OPEN sent.
    OpenSent,
    /// OPEN received, waiting for KEEPALIVE.
    OpenConfirm,
    /// Up: routes flow.
    Established,
}

impl SessionState {
    /// Reads the usual spellings ("Established", "OPENSENT", "Open Confirm"…);
    /// anything unknown reads as `Idle`.
    pub fn from_name(name: &str) -> SessionState {
        let key: String = name.chars().filter(char::is_ascii_alphabetic).collect::<String>().to_ascii_lowercase();
        match key.as_str() {
            "connect" => SessionState::Connect,
            "active" => SessionState::Active,
            "opensent" => SessionState::OpenSent,
            "openconfirm" => SessionState::OpenConfirm,
            "established" => SessionState::Established,
            _ => SessionState::Idle,
        }
    }
}

/// A route in a peer's BGP table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The destination prefix.
    pub prefix: IpNet,
    /// BGP NEXT_HOP, when the route has one (locally originated ones may not).
    pub next_hop: Option<IpAddr>,
    /// AS_PATH flattened to AS numbers, nearest AS first.
    pub as_path: Vec<u32>,
    /// Whether the daemon selected it as best path.
    pub best: bool,
}

/// What every BGP harness answers.
pub trait BgpPeer {
    /// A name for messages (daemon and router id).
    fn label(&self) -> String;

    /// The state of the session with `neighbor`, or an error if the daemon
    /// does not know that neighbour or has exited.
    fn session_state(&self, neighbor: IpAddr) -> Result<SessionState>;

    /// Every route in the daemon's BGP table (IPv4 unicast).
    fn routes(&self) -> Result<Vec<Route>>;

    /// Waits until the session with `neighbor` is Established.
    fn wait_established(&self, neighbor: IpAddr, timeout: Duration) -> Result<()> {
        wait_for(&format!("{} session with {neighbor} to be Established", self.label()), timeout, || {
            let state = self.session_state(neighbor)?;
            Ok(match state {
                SessionState::Established => Check::Done(()),
                other => Check::Pending(format!("state {other:?}")),
            })
        })
    }

    /// Waits until the table holds a route for `prefix` and returns it.
    fn wait_route(&self, prefix: IpNet, timeout: Duration) -> Result<Route> {
        wait_for(&format!("{} to learn {prefix}", self.label()), timeout, || {
            let routes = self.routes()?;
            Ok(match routes.iter().find(|r| r.prefix == prefix) {
                Some(route) => Check::Done(route.clone()),
                None => Check::Pending(format!("{} routes, none for {prefix}", routes.len())),
            })
        })
    }
}

/// Writes `text` to `path`, world-readable (peers may drop privileges).
fn write_config(path: &std::path::Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| crate::LabError::io("writing config", path, e))
}

/// AS numbers in a textual AS path such as `65001 {65002 65003}`.
fn parse_as_path(text: &str) -> Vec<u32> {
    text.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect()
}
