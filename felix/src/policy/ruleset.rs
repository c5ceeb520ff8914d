//! The compiled form: tortie's own table as plain data (chains of rules,
//! named sets, verdict maps), which `nft.rs` turns into nftables JSON and
//! which two versions of can be diffed into an incremental transaction.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

/// The table tortie owns (`inet`: one ruleset for IPv4 and IPv6).
pub const TABLE: &str = "tortie";

/// IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4 (`ip`).
    V4,
    /// IPv6 (`ip6`).
    V6,
}

/// The element type of a named set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    /// `ipv4_addr`.
    Ipv4,
    /// `ipv6_addr`.
    Ipv6,
    /// `ifname`.
    Ifname,
}

/// A set element: a network (an address is a host-length one) or an
/// interface name. Ordered by address, as nft builds intervals fastest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    /// An address or network (address sets hold intervals: never two that overlap).
    Net(IpNet),
    /// An interface name.
    Name(String),
}

impl std::fmt::Display for Element {
    /// As nft lists it: `198.18.0.1`, `198.51.100.0/28`, `cali1234`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Element::Net(n) if n.prefix_len() == n.max_prefix_len() => write!(f, "{}", n.addr()),
            Element::Net(n) => write!(f, "{n}"),
            Element::Name(s) => f.write_str(s),
        }
    }
}

impl Element {
    /// An element as nft lists it (`None`: not one tortie writes).
    pub fn parse(text: &str, kind: SetKind) -> Option<Element> {
        match kind {
            SetKind::Ifname => Some(Element::Name(text.to_string())),
            SetKind::Ipv4 | SetKind::Ipv6 => text
                .parse::<IpNet>()
                .ok()
                .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
                .map(Element::Net),
        }
    }
}

/// A named set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedSet {
    /// Element type.
    pub kind: SetKind,
    /// Elements.
    pub elements: BTreeSet<Element>,
    /// What it stands for (a selector, …).
    pub comment: String,
}

/// Packet side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `saddr` / `sport` / `iifname`.
    Source,
    /// `daddr` / `dport` / `oifname`.
    Destination,
}

/// What an address is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrMatch {
    /// A named set.
    Set(String),
    /// Literal networks (one family).
    Nets(Vec<IpNet>),
}

/// One condition of a rule; all must hold. `negate` turns `==`/`in` into `!=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// `ct state { … }`.
    CtState(&'static [&'static str]),
    /// `iifname`/`oifname` `==` a name.
    Ifname {
        /// Which interface.
        side: Side,
        /// The name.
        name: String,
    },
    /// `iifname`/`oifname` in (or, `negate`, not in) a named set.
    IfnameInSet {
        /// Which interface.
        side: Side,
        /// The set.
        set: String,
        /// Not in it.
        negate: bool,
    },
    /// `ip[6] saddr/daddr` in a set or networks.
    Addr {
        /// `ip` or `ip6`.
        family: Family,
        /// Which address.
        side: Side,
        /// Compared with.
        target: AddrMatch,
        /// `!=`.
        negate: bool,
    },
    /// `meta l4proto`.
    L4Proto {
        /// IP protocol number.
        proto: u8,
        /// `!=`.
        negate: bool,
    },
    /// `th sport/dport` in port ranges.
    Ports {
        /// Which port.
        side: Side,
        /// Inclusive ranges.
        ranges: Vec<(u16, u16)>,
        /// `!=`.
        negate: bool,
    },
    /// `icmp[v6] type`, and `code` when given.
    Icmp {
        /// `icmp` or `icmpv6`.
        family: Family,
        /// Type.
        icmp_type: u8,
        /// Code.
        code: Option<u8>,
        /// `!=` (on the pair when a code is given).
        negate: bool,
    },
    /// `icmp[v6] type` in a list of types.
    IcmpTypeIn {
        /// `icmp` or `icmpv6`.
        family: Family,
        /// Types.
        types: Vec<u8>,
    },
    /// `meta mark & bit == bit`.
    MarkSet(u32),
    /// `meta nfproto ipv4|ipv6`.
    NfProto(Family),
    /// `tcp`/`udp` `dport` in a list of ports.
    DportIn {
        /// 6 or 17.
        proto: u8,
        /// Ports.
        ports: Vec<u16>,
    },
}

/// What a matching rule does to the packet mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkOp {
    /// `meta mark set meta mark | bit`.
    Set(u32),
    /// `meta mark set meta mark & ~bit`.
    Clear(u32),
}

/// The verdict of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `accept`.
    Accept,
    /// `drop`.
    Drop,
    /// `return`.
    Return,
    /// `jump CHAIN`.
    Jump(String),
    /// `iifname`/`oifname` `vmap @MAP`.
    Vmap {
        /// `iifname` or `oifname`.
        side: Side,
        /// The map.
        map: String,
    },
    /// `masquerade`: source NAT to the outgoing interface's address.
    Masquerade,
    /// `snat ip[6] to ADDR`.
    Snat(std::net::IpAddr),
}

/// One nftables rule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NftRule {
    /// Conditions.
    pub conds: Vec<Cond>,
    /// Count packets and bytes.
    pub counter: bool,
    /// `log prefix "…"`.
    pub log: Option<String>,
    /// Mark change.
    pub mark: Option<MarkOp>,
    /// Verdict (`None`: go on).
    pub verdict: Option<Verdict>,
    /// Where the rule comes from (`policy ingress[0]`).
    pub comment: Option<String>,
}

/// A netfilter hook a base chain sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `forward`.
    Forward,
    /// `input`.
    Input,
    /// `output`.
    Output,
    /// `postrouting`, in a `nat` chain (source NAT).
    Postrouting,
}

/// A chain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chain {
    /// For base chains: the hook and priority.
    pub hook: Option<(Hook, i32)>,
    /// Rules, in order.
    pub rules: Vec<NftRule>,
}

/// The chain and policies that apply to an endpoint in one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The endpoint's chain.
    pub chain: String,
    /// Policies, in order.
    pub policies: Vec<String>,
}

/// What applies to one local endpoint (for `tortie policy show`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPolicies {
    /// The endpoint (`namespace/name` or host endpoint name).
    pub endpoint: String,
    /// Its interface.
    pub interface: String,
    /// Ingress (`None`: no policy selects it, all allowed).
    pub ingress: Option<Applied>,
    /// Egress.
    pub egress: Option<Applied>,
}

/// The whole table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    /// Chains by name.
    pub chains: BTreeMap<String, Chain>,
    /// Named sets by name.
    pub sets: BTreeMap<String, NamedSet>,
    /// Verdict maps by name: interface name → chain to jump to.
    pub maps: BTreeMap<String, BTreeMap<String, String>>,
    /// What applies to each local endpoint.
    pub endpoints: Vec<EndpointPolicies>,
}
