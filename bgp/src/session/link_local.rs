//! Our link-local address towards an IPv6 peer on a shared subnet.
//!
//! RFC 2545 §3: a speaker advertising itself as the next hop sends its
//! global IPv6 address, followed by its link-local address on the link if
//! and only if it shares a subnet with the peer. A peer on the link (a
//! ToR, BIRD with `direct`) then forwards to the link-local address, as
//! its neighbour discovery and ICMPv6 redirects expect.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::Ipv6Net;

/// A session's link to its peer: the connection's local address and our
/// link-local address on the interface it shares with the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnLink {
    /// The connection's local (global) address.
    pub local: Ipv6Addr,
    /// Our link-local address on that interface.
    pub link_local: Ipv6Addr,
}

impl OnLink {
    /// The link-local address to send beside `global`, our next hop: only
    /// when the session runs from that very address, so that both name
    /// the same interface (a session from another address may run over
    /// another link, RFC 2545 §3).
    pub fn beside(self, global: IpAddr) -> Option<Ipv6Addr> {
        (global == IpAddr::V6(self.local)).then_some(self.link_local)
    }
}

/// Our link-local address on the interface whose subnet holds both
/// `local` (the session's address) and `peer`; `None` if no interface
/// does (the peer is reached through a router) or it has no link-local
/// address, or the session itself is over link-local addresses.
pub fn towards(local: Ipv6Addr, peer: Ipv6Addr) -> Option<OnLink> {
    if local.is_unicast_link_local() || peer.is_unicast_link_local() {
        return None;
    }
    match interface_addresses() {
        Ok(addrs) => choose(&addrs, local, peer).map(|link_local| OnLink { local, link_local }),
        Err(e) => {
            tracing::warn!(error = %e, %local, "cannot list interface addresses: no link-local next hop");
            None
        }
    }
}

/// [`towards`] over a list of (interface, address with its prefix).
fn choose(addrs: &[(String, Ipv6Net)], local: Ipv6Addr, peer: Ipv6Addr) -> Option<Ipv6Addr> {
    let (shared, _) = addrs.iter().find(|(_, net)| net.addr() == local && net.contains(&peer))?;
    addrs.iter().find(|(name, net)| name == shared && net.addr().is_unicast_link_local()).map(|(_, net)| net.addr())
}

/// Every IPv6 address of this namespace's interfaces, with its interface.
fn interface_addresses() -> std::io::Result<Vec<(String, Ipv6Net)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs(3) fills `head` with a list freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut at = head;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*at };
        at = ifa.ifa_next;
        // SAFETY: a non-null ifa_addr points at a sockaddr of the family it names.
        let Some(addr) = (unsafe { ifa.ifa_addr.as_ref() }) else { continue };
        if i32::from(addr.sa_family) != libc::AF_INET6 || ifa.ifa_netmask.is_null() {
            continue;
        }
        // SAFETY: an AF_INET6 address and its netmask are sockaddr_in6.
        let (sin6, mask) =
            unsafe { (&*ifa.ifa_addr.cast::<libc::sockaddr_in6>(), &*ifa.ifa_netmask.cast::<libc::sockaddr_in6>()) };
        let len = u128::from_be_bytes(mask.sin6_addr.s6_addr).count_ones() as u8;
        // SAFETY: ifa_name is a NUL-terminated string in the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }.to_string_lossy().into_owned();
        if let Ok(net) = Ipv6Net::new(Ipv6Addr::from(sin6.sin6_addr.s6_addr), len) {
            out.push((name, net));
        }
    }
    // SAFETY: the list from getifaddrs, freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> Vec<(String, Ipv6Net)> {
        [("eth0", "2001:db8::1/64"), ("eth0", "fe80::1/64"), ("eth1", "2001:db8:1::1/64"), ("eth1", "fe80::2/64")]
            .into_iter()
            .map(|(n, a)| (n.to_string(), a.parse().unwrap()))
            .collect()
    }

    #[test]
    fn the_link_local_of_the_interface_shared_with_the_peer() {
        let a = addrs();
        let ip = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert_eq!(choose(&a, ip("2001:db8::1"), ip("2001:db8::2")), Some(ip("fe80::1")));
        assert_eq!(choose(&a, ip("2001:db8:1::1"), ip("2001:db8:1::9")), Some(ip("fe80::2")));
        assert_eq!(choose(&a, ip("2001:db8::1"), ip("2001:db8:5::2")), None, "a peer beyond a router");
        assert_eq!(choose(&a, ip("2001:db8::9"), ip("2001:db8::2")), None, "not our address");
        let no_ll: Vec<_> = a.into_iter().filter(|(_, n)| !n.addr().is_unicast_link_local()).collect();
        assert_eq!(choose(&no_ll, ip("2001:db8::1"), ip("2001:db8::2")), None);
    }

    #[test]
    fn the_link_local_goes_beside_the_next_hop_the_session_runs_from_and_no_other() {
        let link = OnLink { local: "2001:db8::1".parse().unwrap(), link_local: "fe80::1".parse().unwrap() };
        assert_eq!(link.beside("2001:db8::1".parse().unwrap()), Some(link.link_local));
        assert_eq!(link.beside("2001:db8:9::1".parse().unwrap()), None, "a next hop on another interface");
        assert_eq!(link.beside("192.0.2.1".parse().unwrap()), None);
    }

    #[test]
    fn this_hosts_loopback_has_no_link_local_towards_anyone() {
        assert_eq!(towards(Ipv6Addr::LOCALHOST, "::2".parse().unwrap()), None);
    }
}
