//! # tortie-proto-tests — interop and end-to-end tests with real peers
//!
//! Owns the tests in `tests/` that run tortie against BIRD 2, FRR, GoBGP and
//! ExaBGP (and etcd) in network namespaces, plus the small fixtures they
//! share (this file). Peers come from `tortie-lab`'s harnesses.
//!
//! Must not: skip a test because a peer is missing. The harness fails with
//! the package to install; `scripts/test` installs them all.

pub mod bench;

use std::net::IpAddr;

use ipnet::IpNet;
use tortie_lab::{Lab, Netns, Result};

/// Two namespaces joined by one veth link on 192.0.2.0/24 (RFC 5737 TEST-NET-1).
pub struct Pair {
    /// The first namespace, interface `eth-a`, address 192.0.2.1.
    pub a: Netns,
    /// The second namespace, interface `eth-b`, address 192.0.2.2.
    pub b: Netns,
}

impl Pair {
    /// Creates the pair inside `lab`.
    pub fn new(lab: &Lab) -> Result<Pair> {
        let (a, b) = (lab.netns("a")?, lab.netns("b")?);
        tortie_lab::veth((&a, "eth-a"), (&b, "eth-b"))?;
        a.add_addr("eth-a", net("192.0.2.1/24"))?;
        b.add_addr("eth-b", net("192.0.2.2/24"))?;
        Ok(Pair { a, b })
    }

    /// Address of `a`.
    pub fn a_ip(&self) -> IpAddr {
        ip("192.0.2.1")
    }

    /// Address of `b`.
    pub fn b_ip(&self) -> IpAddr {
        ip("192.0.2.2")
    }
}

/// Parses a literal address; panics on a typo in a test.
pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("bad address literal {s}: {e}"))
}

/// Parses a literal prefix; panics on a typo in a test.
pub fn net(s: &str) -> IpNet {
    s.parse().unwrap_or_else(|e| panic!("bad prefix literal {s}: {e}"))
}

/// A neighbour of tortie (AS 65001, router id 192.0.2.1) as the interop tests
/// and benches configure it: `hold_time` seconds, 2 s connect retry, and
/// accept-all import and export policies (RFC 8212 wants explicit ones).
pub fn tortie_neighbor(
    name: &str,
    remote: &str,
    local: &str,
    peer_as: u32,
    hold_time: u16,
) -> tortie_bgp::speaker::Neighbor {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tortie_bgp::rib::export::{ExportPeer, NextHopMode};
    use tortie_bgp::rib::policy::Policy;
    use tortie_bgp::session::peer::PeerConfig;
    use tortie_bgp::session::socket::SocketOptions;
    use tortie_bgp::session::{FsmConfig, LocalConfig};

    let mut session_local =
        LocalConfig::new(65001, "192.0.2.1".parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST), peer_as);
    session_local.hold_time = hold_time;
    // A session carries the family of its addresses (RFC 4760).
    if ip(remote).is_ipv6() {
        session_local.families = vec![tortie_bgp::packet::Family::IPV6_UNICAST];
    }
    tortie_bgp::speaker::Neighbor {
        session: PeerConfig {
            name: name.into(),
            remote: SocketAddr::new(ip(remote), 179),
            local_addr: Some(ip(local)),
            local: session_local,
            fsm: FsmConfig { connect_retry: Duration::from_secs(2), ..FsmConfig::default() },
            socket: SocketOptions::default(),
        },
        export: ExportPeer {
            local_as: 65001,
            peer_as,
            local_addr: ip(local),
            next_hop: NextHopMode::Auto,
            prepend: 0,
            rr_client: false,
            long_lived: false,
            link_local: None,
        },
        import_policy: Some(Policy::accept_all()),
        export_policy: Some(Policy::accept_all()),
        max_prefix: None,
        allow_local_as: 0,
        soft_reconfiguration_inbound: false,
    }
}
