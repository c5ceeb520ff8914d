//! The kernel tunnel, where the kernel has the ipip module: tortie owns
//! `tunl0` (the module's catch-all device, remote any), gives it the node's
//! tunnel address and the MTU, and brings it up. Routes through it
//! (`via <node> dev tunl0 onlink`) make the kernel encapsulate towards the
//! gateway.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::{LinkIpIp, LinkUnspec};

use crate::TunnelError;

/// The kernel's IPIP device.
pub const DEVICE: &str = "tunl0";

fn unsupported(e: &rtnetlink::Error) -> bool {
    // No ipip module: EOPNOTSUPP ("Unknown device type" from ip(8)).
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::EOPNOTSUPP)
}

fn nl(what: &'static str) -> impl Fn(rtnetlink::Error) -> TunnelError {
    move |e| TunnelError::Kernel { what, why: e.to_string() }
}

pub(crate) fn connect() -> Result<rtnetlink::Handle, TunnelError> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| TunnelError::io("netlink socket".into(), e))?;
    tokio::spawn(connection);
    Ok(handle)
}

/// The link called `name`, if there is one.
pub(crate) async fn find(handle: &rtnetlink::Handle, name: &str) -> Result<Option<LinkMessage>, TunnelError> {
    match handle.link().get().match_name(name.to_string()).execute().try_next().await {
        Ok(link) => Ok(link),
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(TunnelError::Kernel { what: "looking up a link", why: format!("{name}: {e}") }),
    }
}

/// Deletes the link called `name`; whether there was one.
pub(crate) async fn delete(name: &str) -> Result<bool, TunnelError> {
    let handle = connect()?;
    let Some(link) = find(&handle, name).await? else { return Ok(false) };
    let index = link.header.index;
    let failed = |e: rtnetlink::Error| TunnelError::Kernel { what: "deleting a link", why: format!("{name}: {e}") };
    handle.link().del(index).execute().await.map_err(failed)?;
    Ok(true)
}

/// Sets up `tunl0`; [`TunnelError::Unsupported`] when the kernel has no
/// ipip support.
pub async fn setup(tunnel_address: Option<Ipv4Addr>, mtu: u32) -> Result<(), TunnelError> {
    let handle = connect()?;
    let link = match find(&handle, DEVICE).await? {
        Some(l) => l,
        None => {
            if let Err(e) = handle.link().add(LinkIpIp::new(DEVICE).build()).execute().await {
                return Err(if unsupported(&e) { TunnelError::Unsupported } else { nl("creating tunl0")(e) });
            }
            find(&handle, DEVICE)
                .await?
                .ok_or(TunnelError::Kernel { what: "creating tunl0", why: "not there after creation".into() })?
        }
    };
    let index = link.header.index;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).mtu(mtu).up().build())
        .execute()
        .await
        .map_err(nl("bringing up tunl0"))?;
    if let Some(addr) = tunnel_address {
        match handle.address().add(index, IpAddr::V4(addr), 32).execute().await {
            Ok(()) => {}
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => {}
            Err(e) => return Err(nl("addressing tunl0")(e)),
        }
    }
    Ok(())
}

/// Takes `tunnel_address` off `tunl0` and brings it down (the device
/// itself belongs to the ipip module and stays); whether `tunl0` had it.
pub async fn teardown(tunnel_address: Ipv4Addr) -> Result<bool, TunnelError> {
    let handle = connect()?;
    let Some(link) = find(&handle, DEVICE).await? else { return Ok(false) };
    let index = link.header.index;
    let addresses: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing tunl0's addresses"))?;
    let ours = addresses.into_iter().find(|msg| {
        msg.attributes.iter().any(|a| {
            matches!(a, rtnetlink::packet_route::address::AddressAttribute::Address(IpAddr::V4(a)) if *a == tunnel_address)
        })
    });
    let Some(ours) = ours else { return Ok(false) };
    handle.address().del(ours).execute().await.map_err(nl("taking the tunnel address off tunl0"))?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).down().build())
        .execute()
        .await
        .map_err(nl("bringing down tunl0"))?;
    Ok(true)
}
