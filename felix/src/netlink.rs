//! The kernel side of the route reconciler: a blocking rtnetlink socket
//! that dumps links and tortie's routes, and applies route changes in
//! batches — many requests in one `sendmsg`, one ACK each — which is what
//! lets it keep pace with (and beat) `ip -batch`, which waits for every
//! ACK before sending the next request. A route through one gateway names
//! a nexthop object (`nexthop`) rather than carrying the gateway.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteNextHop, RouteNextHopFlags,
    RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::nexthop::{Nexthops, RTNLGRP_NEXTHOP, route_nexthop_id};
use crate::route::{Change, KernelRoutes, NextHop, ROUTE_PROTOCOL, Target};

/// Requests per `sendmsg`. Only the last asks for an ACK (the kernel
/// handles a batch in order, so its ACK means the batch is done); failures
/// are reported whatever the flags. Each reply costs ~1 KiB of receive
/// buffer (skb truesize), so a batch of failures must fit the default 208 KiB.
const BATCH_REQUESTS: usize = 128;
/// Receive buffer for one `recv` (a dump part or a run of ACKs).
const RECV_BYTES: usize = 256 * 1024;
/// A dump the kernel marks as interrupted by a concurrent change is redone.
const DUMP_ATTEMPTS: usize = 5;

/// Receive buffer of the event socket, bytes.
const EVENT_BUFFER: libc::c_int = 16 << 20;

/// rtnetlink multicast groups (linux/rtnetlink.h `RTNLGRP_*`).
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV6_ROUTE: u32 = 11;

/// A netlink failure.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket failed.
    #[error("netlink {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The kernel sent something unparseable.
    #[error("netlink {what}: undecodable message: {why}")]
    Decode {
        /// What was being done.
        what: &'static str,
        /// The decoder's complaint.
        why: String,
    },
}

pub(crate) fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> NetlinkError {
    move |source| NetlinkError::Io { what, source }
}

/// A change the kernel refused, with its reason.
#[derive(Debug)]
pub struct Refused {
    /// The change.
    pub change: Change,
    /// The kernel's errno.
    pub error: io::Error,
}

/// A blocking rtnetlink socket in the calling thread's network namespace.
pub struct Netlink {
    pub(crate) socket: Socket,
    seq: u32,
    rx: Vec<u8>,
    /// tortie's nexthop objects (`nexthop`).
    pub(crate) nexthops: Nexthops,
}

impl Netlink {
    /// Opens a socket.
    pub fn open() -> Result<Netlink, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(io_err("socket"))?;
        socket.bind_auto().map_err(io_err("bind"))?;
        // ACKs for failed requests carry only the request's header.
        socket.set_cap_ack(true).map_err(io_err("NETLINK_CAP_ACK"))?;
        Ok(Netlink { socket, seq: 0, rx: Vec::with_capacity(RECV_BYTES), nexthops: Nexthops::default() })
    }

    /// The socket's netlink port: the kernel's notification of a change
    /// this socket made carries it as the sender (`nlmsg_pid`).
    pub fn port(&self) -> Result<u32, NetlinkError> {
        let mut addr = SocketAddr::new(0, 0);
        self.socket.get_address(&mut addr).map_err(io_err("socket address"))?;
        Ok(addr.port_number())
    }

    /// A socket that wakes up on every link and route change (for the
    /// reconciler's event-driven resync) but those `own` made: the kernel
    /// drops its echoes of our own writes before they are queued (a
    /// table arriving would otherwise echo every route back to us).
    pub fn subscribe(own: &Netlink) -> Result<Socket, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(io_err("socket"))?;
        socket.bind(&SocketAddr::new(0, 0)).map_err(io_err("bind"))?;
        ignore_port(&socket, own.port()?)?;
        for group in [RTNLGRP_LINK, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE] {
            socket.add_membership(group).map_err(io_err("join multicast group"))?;
        }
        // A nexthop object removed takes its routes with it, unannounced.
        if let Err(e) = socket.add_membership(RTNLGRP_NEXTHOP) {
            tracing::debug!(error = %e, "no nexthop notifications (a kernel without nexthop objects)");
        }
        // A table arriving is a notification per route: room for a burst, past
        // `rmem_max` where allowed (root), so an overrun (and the full pass it
        // costs) is rare.
        let size: libc::c_int = EVENT_BUFFER;
        // SAFETY: a valid socket and a c_int option of the right size.
        let forced = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&raw const size).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if forced != 0 {
            socket.set_rx_buf_sz(EVENT_BUFFER).map_err(io_err("event socket buffer"))?;
        }
        Ok(socket)
    }

    pub(crate) fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Interface name → index.
    pub fn links(&mut self) -> Result<HashMap<String, u32>, NetlinkError> {
        let request = RouteNetlinkMessage::GetLink(LinkMessage::default());
        self.dump("link dump", request, |links: &mut HashMap<String, u32>, msg| {
            if let RouteNetlinkMessage::NewLink(link) = msg {
                for attr in link.attributes {
                    if let LinkAttribute::IfName(name) = attr {
                        links.insert(name, link.header.index);
                    }
                }
            }
        })
    }

    /// Global-scope IPv4 addresses with their prefix lengths, in interface order.
    pub fn ipv4_addresses(&mut self) -> Result<Vec<IpNet>, NetlinkError> {
        let request = RouteNetlinkMessage::GetAddress(AddressMessage::default());
        let mut found = self.dump("address dump", request, |found: &mut Vec<(u32, IpNet)>, msg| {
            if let RouteNetlinkMessage::NewAddress(a) = msg
                && a.header.family == AddressFamily::Inet
                && a.header.scope == AddressScope::Universe
            {
                for attr in a.attributes {
                    if let AddressAttribute::Local(ip) = attr
                        && let Ok(net) = IpNet::new(ip, a.header.prefix_len)
                    {
                        found.push((a.header.index, net));
                    }
                }
            }
        })?;
        found.sort_by_key(|(index, _)| *index);
        Ok(found.into_iter().map(|(_, net)| net).collect())
    }

    /// tortie's routes in the main table (both families); the nexthop
    /// objects any route refers to are noted as used.
    pub fn routes(&mut self) -> Result<KernelRoutes, NetlinkError> {
        let request = RouteNetlinkMessage::GetRoute(RouteMessage::default());
        let nexthops = std::mem::take(&mut self.nexthops);
        let dumped = self.dump("route dump", request, |(routes, used): &mut (KernelRoutes, HashSet<u32>), msg| {
            if let RouteNetlinkMessage::NewRoute(route) = msg {
                used.extend(route_nexthop_id(&route));
                if let Some((dst, target)) = ours(&route, &nexthops) {
                    routes.insert(dst, target);
                }
            }
        });
        self.nexthops = nexthops;
        let (routes, used) = dumped?;
        self.nexthops.used = used;
        Ok(routes)
    }

    /// Sends one request that has one answer, and returns it.
    pub(crate) fn ask(
        &mut self,
        what: &'static str,
        request: RouteNetlinkMessage,
    ) -> Result<Option<RouteNetlinkMessage>, NetlinkError> {
        let seq = self.next_seq();
        let mut buf = Vec::new();
        push(&mut buf, request, NLM_F_REQUEST, seq);
        self.socket.send(&buf, 0).map_err(io_err(what))?;
        let mut answer = None;
        while answer.is_none() {
            self.recv(what, |header, payload| {
                if header.sequence_number == seq {
                    answer = Some(match payload {
                        NetlinkPayload::InnerMessage(msg) => Ok(Some(msg)),
                        NetlinkPayload::Error(e) if e.code.is_some() => {
                            Err(NetlinkError::Io { what, source: e.to_io() })
                        }
                        _ => Ok(None),
                    });
                }
                Ok(())
            })?;
        }
        answer.unwrap_or(Ok(None))
    }

    /// Runs a dump, folding each message into a fresh `T` as it arrives
    /// (a full table's messages are never held at once); redone when the
    /// kernel says a change interrupted it.
    fn dump<T: Default>(
        &mut self,
        what: &'static str,
        request: RouteNetlinkMessage,
        mut each: impl FnMut(&mut T, RouteNetlinkMessage),
    ) -> Result<T, NetlinkError> {
        for _ in 0..DUMP_ATTEMPTS {
            let mut out = T::default();
            let seq = self.next_seq();
            let mut buf = Vec::new();
            push(&mut buf, request.clone(), NLM_F_REQUEST | NLM_F_DUMP, seq);
            self.socket.send(&buf, 0).map_err(io_err(what))?;
            let mut interrupted = false;
            let mut done = false;
            while !done {
                self.recv(what, |header, payload| {
                    if header.sequence_number != seq {
                        return Ok(());
                    }
                    interrupted |= header.flags & NLM_F_DUMP_INTR != 0;
                    match payload {
                        NetlinkPayload::InnerMessage(msg) => each(&mut out, msg),
                        NetlinkPayload::Done(_) => done = true,
                        NetlinkPayload::Error(e) => return Err(NetlinkError::Io { what, source: e.to_io() }),
                        _ => {}
                    }
                    Ok(())
                })?;
            }
            if !interrupted {
                return Ok(out);
            }
        }
        Err(NetlinkError::Io { what, source: io::Error::other("dump interrupted by changes every time") })
    }

    /// Receives one datagram and hands each message in it to `each`.
    fn recv(
        &mut self,
        what: &'static str,
        mut each: impl FnMut(NetlinkHeader, NetlinkPayload<RouteNetlinkMessage>) -> Result<(), NetlinkError>,
    ) -> Result<(), NetlinkError> {
        self.recv_raw(what, |_, _, octets| {
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(octets)
                .map_err(|e| NetlinkError::Decode { what, why: e.to_string() })?;
            let (header, payload) = msg.into_parts();
            each(header, payload)
        })
    }

    /// Receives one datagram and hands each message in it to `each` as
    /// octets, with its type and sequence number (for messages the parser
    /// does not know: nexthop objects).
    pub(crate) fn recv_raw(
        &mut self,
        what: &'static str,
        mut each: impl FnMut(u16, u32, &[u8]) -> Result<(), NetlinkError>,
    ) -> Result<(), NetlinkError> {
        self.rx.clear();
        self.socket.recv(&mut self.rx, 0).map_err(io_err(what))?;
        let mut rest = &self.rx[..];
        // struct nlmsghdr: length, type, flags, sequence, port (host order).
        while let Some(head) = rest.first_chunk::<16>() {
            let len = u32::from_ne_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let Some(msg) = rest.get(..len).filter(|_| len >= 16) else {
                return Err(NetlinkError::Decode { what, why: format!("a message of {len} octets in {}", rest.len()) });
            };
            each(
                u16::from_ne_bytes([head[4], head[5]]),
                u32::from_ne_bytes([head[8], head[9], head[10], head[11]]),
                msg,
            )?;
            rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
        }
        Ok(())
    }

    /// Applies `changes` in batches; returns the ones the kernel refused
    /// (the rest are applied: the kernel handles each request on its own).
    /// A write refused for naming a nexthop object the kernel no longer
    /// has is made again at once, through a new object or with its gateway.
    pub fn apply(&mut self, changes: Vec<Change>) -> Result<Vec<Refused>, NetlinkError> {
        let mut refused = Vec::new();
        let mut again = Vec::new();
        for (r, nexthop) in self.apply_once(changes)? {
            match nexthop {
                Some(id) if self.refused_nexthop(id, &r.error) => again.push(r.change),
                _ => refused.push(r),
            }
        }
        if !again.is_empty() {
            refused.extend(self.apply_once(again)?.into_iter().map(|(r, _)| r));
        }
        Ok(refused)
    }

    /// [`Netlink::apply`]'s batches; each refusal with the nexthop object
    /// its write named.
    fn apply_once(&mut self, changes: Vec<Change>) -> Result<Vec<(Refused, Option<u32>)>, NetlinkError> {
        let mut refused = Vec::new();
        let mut buf = Vec::with_capacity(BATCH_REQUESTS * 64);
        // Each write through one gateway names its nexthop object (made
        // first, outside the batches: their sequence numbers run on).
        let ids: Vec<Option<u32>> = changes
            .iter()
            .map(|c| match c {
                Change::Add(_, Target::Gateways(hops)) | Change::Replace(_, Target::Gateways(hops))
                    if hops.len() == 1 =>
                {
                    self.nexthop_for(&hops[0])
                }
                _ => None,
            })
            .collect();
        let mut changes = changes.into_iter().zip(ids).peekable();
        // A batch's requests have consecutive sequence numbers from `first`:
        // the reply to one finds its change at its offset.
        let mut pending: Vec<Option<(Change, Option<u32>)>> = Vec::with_capacity(BATCH_REQUESTS);
        while changes.peek().is_some() {
            buf.clear();
            pending.clear();
            let (first, mut last) = (self.seq.wrapping_add(1), 0);
            while pending.len() < BATCH_REQUESTS
                && let Some((change, nexthop)) = changes.next()
            {
                last = self.next_seq();
                let (msg, flags) = request(&change, nexthop);
                let ack = if pending.len() + 1 == BATCH_REQUESTS || changes.peek().is_none() { NLM_F_ACK } else { 0 };
                push(&mut buf, msg, NLM_F_REQUEST | ack | flags, last);
                pending.push(Some((change, nexthop)));
            }
            self.socket.send(&buf, 0).map_err(io_err("route change"))?;
            let mut done = false;
            while !done {
                self.recv("route change", |header, payload| {
                    let at = header.sequence_number.wrapping_sub(first) as usize;
                    if let NetlinkPayload::Error(e) = payload
                        && let Some((change, nexthop)) = pending.get_mut(at).and_then(Option::take)
                    {
                        done |= header.sequence_number == last;
                        if e.code.is_some() {
                            refused.push((Refused { change, error: e.to_io() }, nexthop));
                        }
                    }
                    Ok(())
                })?;
            }
        }
        Ok(refused)
    }
}

/// What one kernel notification means to the reconciler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteEvent {
    /// One of our routes was deleted by someone else (the kernel, when its
    /// device went, or another program): the reconciler puts it back.
    OursDeleted(IpNet),
    /// A route in the local table changed (the kernel's own, for the
    /// node's addresses, as when IPv6 finishes duplicate address detection
    /// on a new link): nothing felix writes or resolves its next hops by.
    Elsewhere,
    /// A link, a route written by someone else (with our protocol or
    /// not), or a message that does not parse: the reconciler looks at
    /// everything again.
    Other,
}

/// Has the kernel drop, before queueing them on `socket`, the messages
/// whose sender (`nlmsg_pid`, the header's fourth word) is `port`: a
/// classic BPF socket filter (`SO_ATTACH_FILTER`), which netlink runs on
/// every multicast delivery.
fn ignore_port(socket: &Socket, port: u32) -> Result<(), NetlinkError> {
    // A BPF word load reads network order; the header is in host order.
    let port = u32::from_be_bytes(port.to_ne_bytes());
    let code = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter { code: code as u16, jt, jf, k };
    let mut program = [
        code(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 12),
        code(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, port),
        code(libc::BPF_RET | libc::BPF_K, 0, 0, 0),
        code(libc::BPF_RET | libc::BPF_K, 0, 0, u32::MAX),
    ];
    let filter = libc::sock_fprog { len: program.len() as u16, filter: program.as_mut_ptr() };
    // SAFETY: a valid socket, and a program that outlives the call (the kernel copies it).
    let attached = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(socket),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const filter).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if attached != 0 {
        return Err(io_err("event socket filter")(io::Error::last_os_error()));
    }
    Ok(())
}

/// The notifications in one datagram of the event socket. Read straight
/// from the octets (rtnetlink(7)): a table arriving makes one echo per
/// route, and only the message type, the protocol, the table and the
/// destination matter here.
pub fn route_events(datagram: &[u8]) -> Vec<RouteEvent> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        // struct nlmsghdr: length, type, flags, sequence, port (host order).
        let Some(len) = rest.first_chunk::<4>().map(|l| u32::from_ne_bytes(*l) as usize) else { break };
        let Some(msg) = rest.get(..len).filter(|_| len >= NLMSG_HEADER) else {
            out.push(RouteEvent::Other);
            break;
        };
        out.push(route_event(msg).unwrap_or(RouteEvent::Other));
        rest = rest.get((len + 3) & !3..).unwrap_or_default();
    }
    out
}

/// The length of `struct nlmsghdr`, and of `struct rtmsg` after it.
const NLMSG_HEADER: usize = 16;
const RTMSG: usize = 12;
/// rtnetlink message types (linux/rtnetlink.h) and route attributes.
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTA_DST: u16 = 1;
const RTA_TABLE: u16 = 15;
const RT_TABLE_LOCAL: u32 = 255;

/// The deletion of one of our routes in the main table, or a change in
/// the local table, if `msg` is one (the socket sees no echo of our own
/// writes: `Netlink::subscribe`). Other tables (policy routing) may change
/// the device a next hop is resolved to: a full pass looks again.
fn route_event(msg: &[u8]) -> Option<RouteEvent> {
    let kind = u16::from_ne_bytes(*msg.get(4..)?.first_chunk::<2>()?);
    if kind != RTM_NEWROUTE && kind != RTM_DELROUTE {
        return None;
    }
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    let rtm = msg.get(NLMSG_HEADER..NLMSG_HEADER + RTMSG)?;
    let mut route = RouteHead {
        family: rtm[0],
        dst_len: rtm[1],
        table: u32::from(rtm[4]),
        protocol: rtm[5],
        kind: rtm[7],
        dst: None,
    };
    let mut attrs = msg.get(NLMSG_HEADER + RTMSG..)?;
    // struct rtattr: length, type, then the value, padded to 4 octets.
    while let Some(rta) = attrs.first_chunk::<4>() {
        let len = usize::from(u16::from_ne_bytes([rta[0], rta[1]]));
        let value = attrs.get(4..len)?;
        match u16::from_ne_bytes([rta[2], rta[3]]) {
            RTA_TABLE => route.table = u32::from_ne_bytes(*value.first_chunk::<4>()?),
            RTA_DST => {
                route.dst = match value.len() {
                    4 => Some(IpAddr::from(*value.first_chunk::<4>()?)),
                    16 => Some(IpAddr::from(*value.first_chunk::<16>()?)),
                    _ => return None,
                }
            }
            _ => {}
        }
        attrs = attrs.get(((len + 3) & !3).max(4)..).unwrap_or_default();
    }
    match (route.table, kind) {
        (RT_TABLE_LOCAL, _) => Some(RouteEvent::Elsewhere),
        (table, RTM_DELROUTE) if table == u32::from(RouteHeader::RT_TABLE_MAIN) => {
            Some(RouteEvent::OursDeleted(route.ours()?))
        }
        _ => None,
    }
}

/// What decides whether a route is one of ours, from a message's header
/// and attributes (read from octets or parsed).
struct RouteHead {
    family: u8,
    dst_len: u8,
    /// `rtm_table`, or `RTA_TABLE` when there is one.
    table: u32,
    protocol: u8,
    /// `rtm_type`.
    kind: u8,
    /// `RTA_DST`.
    dst: Option<IpAddr>,
}

impl RouteHead {
    /// The destination, when the route is ours: our protocol, the main
    /// table, a type felix writes (one of another type, such as
    /// unreachable, is someone else's doing, for a full pass to judge).
    fn ours(&self) -> Option<IpNet> {
        let main = u32::from(RouteHeader::RT_TABLE_MAIN);
        let kinds = [u8::from(RouteType::Unicast), u8::from(RouteType::BlackHole)];
        if self.protocol != ROUTE_PROTOCOL || self.table != main || !kinds.contains(&self.kind) {
            return None;
        }
        // No destination: the default route, which has no length either.
        let dst = match (self.dst, AddressFamily::from(self.family)) {
            (Some(a), _) => a,
            (None, AddressFamily::Inet) if self.dst_len == 0 => IpAddr::from([0u8; 4]),
            (None, AddressFamily::Inet6) if self.dst_len == 0 => IpAddr::from([0u16; 8]),
            _ => return None,
        };
        IpNet::new(dst, self.dst_len).ok()
    }
}

/// Appends one request to `buf`.
fn push(buf: &mut Vec<u8>, msg: RouteNetlinkMessage, flags: u16, seq: u32) {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    msg.finalize();
    let start = buf.len();
    buf.resize(start + msg.buffer_len(), 0);
    msg.serialize(&mut buf[start..]);
}

fn family(dst: &IpNet) -> AddressFamily {
    family_of(dst.addr())
}

pub(crate) fn family_of(addr: IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn kind(target: &Target<u32>) -> RouteType {
    match target {
        Target::Blackhole => RouteType::BlackHole,
        _ => RouteType::Unicast,
    }
}

/// The request for one change (through nexthop object `nexthop`, if any)
/// and its `NLM_F_*` flags.
fn request(change: &Change, nexthop: Option<u32>) -> (RouteNetlinkMessage, u16) {
    match change {
        // EXCL: never overwrite a route another owner installed for the same destination.
        Change::Add(dst, t) => {
            (RouteNetlinkMessage::NewRoute(route_message(dst, t, nexthop)), NLM_F_CREATE | NLM_F_EXCL)
        }
        Change::Replace(dst, t) => {
            (RouteNetlinkMessage::NewRoute(route_message(dst, t, nexthop)), NLM_F_CREATE | NLM_F_REPLACE)
        }
        Change::Delete(dst, t) => {
            // Match on destination, type and our protocol only (scope "nowhere" = any).
            let mut msg = header_only(dst, kind(t));
            msg.header.scope = RouteScope::NoWhere;
            (RouteNetlinkMessage::DelRoute(msg), 0)
        }
    }
}

fn header_only(dst: &IpNet, kind: RouteType) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family(dst);
    msg.header.destination_prefix_length = dst.prefix_len();
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::from(ROUTE_PROTOCOL);
    msg.header.kind = kind;
    msg.attributes.push(RouteAttribute::Destination(RouteAddress::from(dst.network())));
    msg
}

fn route_message(dst: &IpNet, target: &Target<u32>, nexthop: Option<u32>) -> RouteMessage {
    let mut msg = header_only(dst, kind(target));
    match target {
        Target::Gateways(_) if let Some(id) = nexthop => msg.attributes.push(RouteAttribute::NhId(id)),
        Target::Device(index) => {
            msg.header.scope = RouteScope::Link;
            msg.attributes.push(RouteAttribute::Oif(*index));
        }
        Target::Blackhole => {}
        Target::Gateways(hops) if hops.len() == 1 => {
            let hop = &hops[0];
            msg.attributes.push(RouteAttribute::Gateway(RouteAddress::from(hop.gateway)));
            if let Some(index) = hop.device {
                msg.attributes.push(RouteAttribute::Oif(index));
            }
            if hop.onlink {
                msg.header.flags |= RouteFlags::Onlink;
            }
        }
        Target::Gateways(hops) => {
            let hops = hops
                .iter()
                .map(|hop| {
                    let mut nh = RouteNextHop::default();
                    nh.interface_index = hop.device.unwrap_or(0);
                    if hop.onlink {
                        nh.flags |= RouteNextHopFlags::Onlink;
                    }
                    nh.attributes.push(RouteAttribute::Gateway(RouteAddress::from(hop.gateway)));
                    nh
                })
                .collect();
            msg.attributes.push(RouteAttribute::MultiPath(hops));
        }
    }
    msg
}

fn address(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// A route from a dump, if it is one of ours in the main table and of a
/// shape felix installs (one through a nexthop object that shows only its
/// id is resolved through `nexthops`).
fn ours(route: &RouteMessage, nexthops: &Nexthops) -> Option<(IpNet, Target<u32>)> {
    let h = &route.header;
    let mut table = u32::from(h.table);
    let (mut dst, mut gateway, mut oif, mut multipath) = (None, None, None, None);
    for attr in &route.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => dst = address(a),
            RouteAttribute::Gateway(a) => gateway = address(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::MultiPath(hops) => multipath = Some(hops),
            _ => {}
        }
    }
    let head = RouteHead {
        family: u8::from(h.address_family),
        dst_len: h.destination_prefix_length,
        table,
        protocol: u8::from(h.protocol),
        kind: u8::from(h.kind),
        dst,
    };
    let dst = head.ours()?;
    let target = match (h.kind, gateway, oif, multipath) {
        (RouteType::BlackHole, ..) => Target::Blackhole,
        (RouteType::Unicast, _, _, Some(hops)) => {
            let mut hops: crate::route::Hops<u32> = hops
                .iter()
                .filter_map(|nh| {
                    let gateway = nh.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(g) => address(g),
                        _ => None,
                    })?;
                    let onlink = nh.flags.contains(RouteNextHopFlags::Onlink);
                    Some(NextHop { gateway, device: Some(nh.interface_index), onlink })
                })
                .collect();
            hops.sort();
            Target::Gateways(hops)
        }
        (RouteType::Unicast, Some(gateway), oif, None) => Target::Gateways(smallvec::smallvec![NextHop {
            gateway,
            device: oif,
            onlink: h.flags.contains(RouteFlags::Onlink)
        }]),
        (RouteType::Unicast, None, Some(oif), None) => Target::Device(oif),
        // No gateway shown (`nexthop_compat_mode` 0): the object's; one not
        // ours is no next hop felix would write, so the route is replaced.
        (RouteType::Unicast, None, None, None) if let Some(id) = route_nexthop_id(route) => {
            Target::Gateways(nexthops.get(id).cloned().into_iter().collect())
        }
        _ => return None,
    };
    Some((dst, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// `messages` serialised into one datagram, as the kernel sends them.
    fn datagram(messages: Vec<RouteNetlinkMessage>) -> Vec<u8> {
        let mut buf = Vec::new();
        for m in messages {
            push(&mut buf, m, 0, 0);
        }
        buf
    }

    #[test]
    fn events_name_deletions_of_our_routes_in_the_main_table_and_nothing_else() {
        let via = Target::Gateways(smallvec::smallvec![NextHop {
            gateway: "192.0.2.2".parse().unwrap(),
            device: None,
            onlink: false
        }]);
        let ours = |c: Change| request(&c, None).0;
        let mut foreign = route_message(&net("198.51.100.0/24"), &via, None);
        foreign.header.protocol = RouteProtocol::Boot;
        let mut other_table = route_message(&net("198.18.9.0/26"), &via, None);
        other_table.attributes.push(RouteAttribute::Table(100));
        let mut local_table = route_message(&net("fe80::1/128"), &Target::Blackhole, None);
        local_table.header.table = 255;
        let mut unreachable = route_message(&net("198.18.0.0/26"), &Target::Blackhole, None);
        unreachable.header.kind = RouteType::Unreachable;
        let got = route_events(&datagram(vec![
            ours(Change::Add(net("198.18.0.64/26"), via.clone())),
            ours(Change::Delete(net("2001:db8:100::40/122"), Target::Blackhole)),
            ours(Change::Replace(net("0.0.0.0/0"), via.clone())),
            RouteNetlinkMessage::NewRoute(foreign),
            RouteNetlinkMessage::NewRoute(other_table),
            RouteNetlinkMessage::NewRoute(unreachable),
            RouteNetlinkMessage::NewLink(LinkMessage::default()),
            RouteNetlinkMessage::DelRoute(local_table),
        ]));
        assert_eq!(
            got,
            [
                RouteEvent::Other,
                RouteEvent::OursDeleted(net("2001:db8:100::40/122")),
                RouteEvent::Other,
                RouteEvent::Other,
                RouteEvent::Other,
                RouteEvent::Other,
                RouteEvent::Other,
                RouteEvent::Elsewhere,
            ]
        );
    }

    #[test]
    fn a_cut_or_garbled_datagram_is_other_and_never_a_panic() {
        let whole = datagram(vec![request(&Change::Delete(net("198.18.0.64/26"), Target::Blackhole), None).0]);
        for cut in 0..whole.len() {
            let got = route_events(&whole[..cut]);
            assert!(got.iter().all(|e| *e == RouteEvent::Other), "cut at {cut}: {got:?}");
            // The message's own length cut too: its attributes end early.
            let mut short = whole[..cut.max(NLMSG_HEADER)].to_vec();
            let len = (short.len() as u32).to_ne_bytes();
            short[..4].copy_from_slice(&len);
            let got = route_events(&short);
            let ok =
                got.iter().all(|e| *e == RouteEvent::Other || *e == RouteEvent::OursDeleted(net("198.18.0.64/26")));
            assert!(ok, "length cut at {cut}: {got:?}");
        }
        // An attribute claiming fewer than its own 4 octets.
        let mut bad = whole.clone();
        bad[NLMSG_HEADER + RTMSG..NLMSG_HEADER + RTMSG + 2].copy_from_slice(&2u16.to_ne_bytes());
        assert_eq!(route_events(&bad), [RouteEvent::Other]);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut bytes = whole.clone();
            for _ in 0..4 {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let at = (state >> 33) as usize % bytes.len();
                bytes[at] = (state >> 20) as u8;
            }
            drop(route_events(&bytes));
        }
    }
}
