//! Pod plumbing the Calico way, over rtnetlink: a veth pair whose host end
//! (`tortie` + a hash of the container id and interface, MAC
//! `ee:ee:ee:ee:ee:ee`) stays on the node and whose other end becomes the
//! pod's `eth0` with the pod address as a /32, a link-scope route to
//! 169.254.1.1 and the default route through it. The host end answers ARP
//! for 169.254.1.1 by proxy (felix sets `proxy_arp` on it), so the pod
//! needs no subnet and no gateway that really exists. IPv6 the same way:
//! the pod's address as a /128 and its default route via
//! fe80::ecee:eeff:feee:eeee, which is the host end's own link-local
//! address (RFC 4291 appendix A: the EUI-64 of `ee:ee:ee:ee:ee:ee`), made
//! without duplicate address detection so it answers at once.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol, RouteScope};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

/// The pods' gateway: an address that exists nowhere, answered by proxy ARP.
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The pods' IPv6 gateway: the host end's link-local address (Calico's).
pub const POD_GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);
/// The host end's MAC (Calico's): the pod always sends to it.
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// Default host interface prefix.
pub const DEFAULT_PREFIX: &str = "tortie";
/// Linux interface names: at most 15 bytes (IFNAMSIZ − 1).
const IFNAME_MAX: usize = 15;

/// Why plumbing failed.
#[derive(Debug, thiserror::Error)]
pub enum PlumbError {
    /// The pod's namespace cannot be opened or entered.
    #[error("network namespace {path}: {why}")]
    Netns {
        /// `CNI_NETNS`.
        path: String,
        /// Why.
        why: String,
    },
    /// The kernel refused a request.
    #[error("{what}: {source}")]
    Netlink {
        /// What was being done.
        what: String,
        /// The error.
        source: rtnetlink::Error,
    },
    /// An I/O failure around netlink.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// The host-side interface name for a container's interface:
/// `prefix` + hex of a stable 64-bit FNV-1a hash of `container_id.ifname`,
/// 15 bytes in all.
pub fn host_ifname(prefix: &str, container_id: &str, ifname: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id.bytes().chain(std::iter::once(b'.')).chain(ifname.bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let keep = IFNAME_MAX.saturating_sub(prefix.len()).max(4);
    let prefix = &prefix[..prefix.len().min(IFNAME_MAX - keep)];
    format!("{prefix}{}", &format!("{hash:016x}")[..keep])
}

/// The pod end's MAC, derived from its address as Kubernetes does
/// (`0a:58:` + the IPv4 address, or the IPv6 address's last four octets;
/// locally administered, unicast), so it is known before the interface exists.
pub fn pod_mac(address: IpAddr) -> [u8; 6] {
    let o = match address {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(a) => {
            let b = a.octets();
            [b[12], b[13], b[14], b[15]]
        }
    };
    [0x0a, 0x58, o[0], o[1], o[2], o[3]]
}

/// The usual `aa:bb:…` form.
pub fn mac_string(mac: &[u8]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// What to plumb.
#[derive(Debug, Clone)]
pub struct PodLink {
    /// Host-side name.
    pub host_if: String,
    /// Name inside the pod (`CNI_IFNAME`).
    pub pod_if: String,
    /// `CNI_NETNS`.
    pub netns: String,
    /// The pod's IPv4 address, if it has one.
    pub v4: Option<Ipv4Addr>,
    /// The pod's IPv6 address, if it has one.
    pub v6: Option<Ipv6Addr>,
    /// MTU of both ends.
    pub mtu: u32,
}

impl PodLink {
    /// The pod end's MAC: from its IPv4 address, else its IPv6 one.
    pub fn mac(&self) -> [u8; 6] {
        pod_mac(self.v4.map(IpAddr::V4).or(self.v6.map(IpAddr::V6)).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
    }
}

/// The link-local address of `mac` (RFC 4291 appendix A: the modified
/// EUI-64 interface identifier under fe80::/64).
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    let m = mac;
    Ipv6Addr::from([0xfe, 0x80, 0, 0, 0, 0, 0, 0, m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]])
}

/// Adds `address/len` to interface `index` without duplicate address
/// detection (IFA_F_NODAD): usable at once, not tentative. Added before the
/// interface comes up, it is also the link-local address the kernel would
/// have made (and would have run detection for). Already there is fine.
async fn add_nodad(h: &Handle, index: u32, address: Ipv6Addr, len: u8) -> Result<(), PlumbError> {
    use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
    let mut request = h.address().add(index, IpAddr::V6(address), len);
    let message = request.message_mut();
    message.header.flags = AddressHeaderFlags::Nodad;
    message.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
    match request.execute().await {
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
        done => done.map_err(nl(format!("adding {address}/{len}"))),
    }
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> PlumbError {
    let what = what.into();
    move |source| PlumbError::Netlink { what, source }
}

/// A netlink handle in the caller's namespace, its connection driven on this runtime.
fn connect() -> Result<Handle, PlumbError> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|source| PlumbError::Io { what: "netlink socket", source })?;
    tokio::spawn(connection);
    Ok(handle)
}

async fn link(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, PlumbError> {
    match handle.link().get().match_name(name.to_string()).execute().try_next().await {
        Ok(link) => Ok(link),
        // ENODEV: no such interface.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(nl(format!("looking up {name}"))(e)),
    }
}

fn open_netns(path: &str) -> Result<File, PlumbError> {
    File::open(path).map_err(|e| PlumbError::Netns { path: path.into(), why: e.to_string() })
}

/// Runs `f` on a thread inside the namespace at `path`, with its own runtime.
fn in_netns<T: Send>(path: &str, f: impl AsyncFnOnce(Handle) -> Result<T, PlumbError> + Send) -> Result<T, PlumbError> {
    let file = open_netns(path)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns(2) on an open namespace fd; only this thread moves.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                let why = std::io::Error::last_os_error().to_string();
                return Err(PlumbError::Netns { path: path.into(), why });
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| PlumbError::Io { what: "runtime", source })?;
            rt.block_on(async { f(connect()?).await })
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Creates the veth pair (a leftover host end of a retried ADD is replaced)
/// and configures both ends. On failure nothing is left behind.
pub async fn add(p: &PodLink) -> Result<(), PlumbError> {
    let handle = connect()?;
    if let Some(old) = link(&handle, &p.host_if).await? {
        handle.link().del(old.header.index).execute().await.map_err(nl(format!("removing stale {}", p.host_if)))?;
    }
    let netns = open_netns(&p.netns)?;
    let mut msg = LinkVeth::new(&p.host_if, &p.pod_if).mtu(p.mtu).build();
    // The peer is born inside the pod's namespace, already named CNI_IFNAME.
    for attr in &mut msg.attributes {
        if let LinkAttribute::LinkInfo(infos) = attr {
            for info in infos {
                if let rtnetlink::packet_route::link::LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) = info {
                    peer.attributes.push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
                    peer.attributes.push(LinkAttribute::Mtu(p.mtu));
                    peer.attributes.push(LinkAttribute::Address(p.mac().to_vec()));
                }
            }
        }
    }
    handle.link().add(msg).execute().await.map_err(nl(format!("creating veth {} / {}", p.host_if, p.pod_if)))?;
    let result = configure(&handle, p).await;
    if result.is_err() {
        del(&p.host_if).await.ok();
    }
    result
}

/// No IPv6 address of the kernel's making on a veth end (IFLA_INET6_ADDR_GEN_MODE
/// none, set before the link comes up; the kernel takes it in a change, not
/// at creation): each end's link-local is ours, so the kernel has no second
/// one to generate and run duplicate address detection for.
fn no_address_generation() -> LinkAttribute {
    use rtnetlink::packet_route::link::{AfSpecInet6, AfSpecUnspec, In6AddrGenMode};
    LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)])])
}

async fn configure(handle: &Handle, p: &PodLink) -> Result<(), PlumbError> {
    let host = link(handle, &p.host_if).await?.ok_or_else(|| PlumbError::Io {
        what: "host veth vanished",
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    if p.v6.is_some() {
        // The pods' IPv6 gateway is this end's link-local address: valid at once.
        add_nodad(handle, host.header.index, POD_GATEWAY_V6, 64).await?;
    }
    let mut set = LinkUnspec::new_with_index(host.header.index).address(HOST_MAC.to_vec()).build();
    if p.v6.is_some() {
        set.attributes.push(no_address_generation());
    }
    handle.link().set(set).execute().await.map_err(nl(format!("setting {}'s address", p.host_if)))?;
    // The pod end is set up first: the link has no carrier (and IPv6 no
    // duplicate address detection to run) until the host end comes up.
    configure_pod(p).await?;
    let up = LinkUnspec::new_with_index(host.header.index).up().build();
    handle.link().set(up).execute().await.map_err(nl(format!("bringing up {}", p.host_if)))
}

/// The pod end: up, its addresses and default routes.
async fn configure_pod(p: &PodLink) -> Result<(), PlumbError> {
    let pod_if = p.pod_if.clone();
    let (v4, v6, mac) = (p.v4, p.v6, p.mac());
    in_netns(&p.netns, async move |h: Handle| {
        let eth = link(&h, &pod_if).await?.ok_or_else(|| PlumbError::Io {
            what: "pod interface missing after creation",
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
        let index = eth.header.index;
        if v6.is_some() {
            // Before the link comes up: the kernel applies it after a change of flags.
            let mut set = LinkUnspec::new_with_index(index).build();
            set.attributes.push(no_address_generation());
            h.link().set(set).execute().await.map_err(nl(format!("setting {pod_if}'s addrgenmode")))?;
            add_nodad(&h, index, link_local(mac), 64).await?;
        }
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl(format!("bringing up {pod_if}")))?;
        if let Some(lo) = link(&h, "lo").await? {
            h.link()
                .set(LinkUnspec::new_with_index(lo.header.index).up().build())
                .execute()
                .await
                .map_err(nl("bringing up lo"))?;
        }
        if let Some(address) = v4 {
            let added = h.address().add(index, IpAddr::V4(address), 32).execute().await;
            added.map_err(nl(format!("adding {address}/32")))?;
            let gw = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(POD_GATEWAY, 32)
                .output_interface(index)
                .scope(RouteScope::Link)
                .protocol(RouteProtocol::Boot)
                .build();
            h.route().add(gw).execute().await.map_err(nl(format!("adding route {POD_GATEWAY} dev {pod_if}")))?;
            let default = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(POD_GATEWAY)
                .output_interface(index)
                .protocol(RouteProtocol::Boot)
                .build();
            h.route().add(default).execute().await.map_err(nl("adding the default route"))?;
        }
        if let Some(address) = v6 {
            add_nodad(&h, index, address, 128).await?;
            // The gateway is link-local: on-link through the pod's interface.
            let default = RouteMessageBuilder::<Ipv6Addr>::new()
                .gateway(POD_GATEWAY_V6)
                .output_interface(index)
                .protocol(RouteProtocol::Boot)
                .build();
            h.route().add(default).execute().await.map_err(nl("adding the IPv6 default route"))?;
        }
        Ok(())
    })
}

/// Removes the host end (and with it the pod end); fine if it is gone.
pub async fn del(host_if: &str) -> Result<bool, PlumbError> {
    let handle = connect()?;
    match link(&handle, host_if).await? {
        Some(l) => match handle.link().del(l.header.index).execute().await {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(false),
            Err(e) => Err(nl(format!("removing {host_if}"))(e)),
        },
        None => Ok(false),
    }
}

/// What CHECK verifies: the host end exists; in the pod, the interface has
/// each address (/32, /128) and the default route of each family via its
/// gateway.
pub async fn check(p: &PodLink) -> Result<Vec<String>, PlumbError> {
    let mut problems = Vec::new();
    let handle = connect()?;
    if link(&handle, &p.host_if).await?.is_none() {
        problems.push(format!("host interface {} is missing", p.host_if));
    }
    let pod_if = p.pod_if.clone();
    let wanted: Vec<(IpAddr, u8, IpAddr)> =
        p.v4.map(|a| (IpAddr::V4(a), 32, IpAddr::V4(POD_GATEWAY)))
            .into_iter()
            .chain(p.v6.map(|a| (IpAddr::V6(a), 128, IpAddr::V6(POD_GATEWAY_V6))))
            .collect();
    let in_pod = in_netns(&p.netns, async move |h: Handle| {
        let mut problems = Vec::new();
        let Some(eth) = link(&h, &pod_if).await? else {
            return Ok(vec![format!("{pod_if} is missing in the pod")]);
        };
        let addrs: Vec<_> = h
            .address()
            .get()
            .set_link_index_filter(eth.header.index)
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing pod addresses"))?;
        let mut routes: Vec<_> = h
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing pod routes"))?;
        let v6_routes: Vec<_> = h
            .route()
            .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing pod IPv6 routes"))?;
        routes.extend(v6_routes);
        for (address, len, gateway) in wanted {
            let has = addrs.iter().any(|a| {
                a.header.prefix_len == len
                    && a.attributes.iter().any(
                        |x| matches!(x, rtnetlink::packet_route::address::AddressAttribute::Address(v) if *v == address),
                    )
            });
            if !has {
                problems.push(format!("{pod_if} lacks {address}/{len}"));
            }
            let default = routes.iter().any(|r| {
                r.header.destination_prefix_length == 0
                    && r.attributes.iter().any(|a| match a {
                        RouteAttribute::Gateway(RouteAddress::Inet(g)) => IpAddr::V4(*g) == gateway,
                        RouteAttribute::Gateway(RouteAddress::Inet6(g)) => IpAddr::V6(*g) == gateway,
                        _ => false,
                    })
            });
            if !default {
                problems.push(format!("no default route via {gateway} in the pod"));
            }
        }
        Ok(problems)
    })?;
    problems.extend(in_pod);
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ipv6_gateway_is_the_host_ends_own_link_local_address() {
        assert_eq!(link_local(HOST_MAC), POD_GATEWAY_V6);
        assert_eq!(link_local([0x0a, 0x58, 0xc6, 0x12, 0, 0]).to_string(), "fe80::858:c6ff:fe12:0");
    }

    #[test]
    fn host_names_are_stable_15_bytes_and_differ_per_container_and_interface() {
        let a = host_ifname(DEFAULT_PREFIX, "abc123", "eth0");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("tortie"));
        assert_eq!(a, host_ifname(DEFAULT_PREFIX, "abc123", "eth0"));
        assert_ne!(a, host_ifname(DEFAULT_PREFIX, "abc124", "eth0"));
        assert_ne!(a, host_ifname(DEFAULT_PREFIX, "abc123", "eth1"));
        assert_eq!(host_ifname("cali", "x", "eth0").len(), 15);
        assert_eq!(host_ifname("a-very-long-prefix", "x", "eth0").len(), 15);
    }
}
