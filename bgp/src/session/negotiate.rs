//! Capability negotiation (RFC 5492) and OPEN checks (RFC 4271 §6.2): our
//! OPEN from the peer's configuration, and what both sides agreed on from
//! the peer's OPEN — or the NOTIFICATION that refuses it.

use std::net::Ipv4Addr;

use bytes::{Bytes, BytesMut};

use crate::packet::{
    AddPathFamily, AddPathMode, Capability, Context, ErrorCode, ExtendedNextHop, Family, FamilySet, GracefulRestart,
    LongLivedFamily, Notification, Open, open_subcode,
};

/// A capability the session cannot do without (NOTIFICATION 2/7 if missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Required {
    /// RFC 6793 4-octet AS numbers.
    FourOctetAs,
    /// Multiprotocol support for a family.
    Family(Family),
    /// RFC 2918 route refresh.
    RouteRefresh,
    /// RFC 4724 graceful restart.
    GracefulRestart,
    /// RFC 8654 extended messages.
    ExtendedMessage,
}

/// What we offer a peer, and what we expect of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    /// Our AS towards this peer.
    pub asn: u32,
    /// Our BGP identifier.
    pub bgp_id: Ipv4Addr,
    /// The AS the peer must have.
    pub peer_asn: u32,
    /// Hold time we propose (0 or ≥ 3 s).
    pub hold_time: u16,
    /// Keepalive interval; `None`: a third of the negotiated hold time.
    pub keepalive: Option<u16>,
    /// Families we carry.
    pub families: Vec<Family>,
    /// Offer route refresh (and enhanced route refresh).
    pub route_refresh: bool,
    /// Graceful restart we advertise.
    pub graceful_restart: Option<GracefulRestart>,
    /// Long-lived graceful restart we advertise (RFC 9494; empty: none).
    /// It goes out only alongside `graceful_restart` (§3), and the stale
    /// times are also the longest we keep a peer's routes (§4.2).
    pub long_lived: Vec<LongLivedFamily>,
    /// Add-path per family.
    pub add_path: Vec<AddPathFamily>,
    /// Offer extended messages.
    pub extended_message: bool,
    /// Offer IPv6 next hops for IPv4 routes (RFC 8950).
    pub extended_next_hop: bool,
    /// Capabilities the peer must have.
    pub required: Vec<Required>,
}

impl LocalConfig {
    /// Defaults for a peer: IPv4 unicast, route refresh, extended messages,
    /// hold time 90 s, no graceful restart or add-path.
    pub fn new(asn: u32, bgp_id: Ipv4Addr, peer_asn: u32) -> LocalConfig {
        LocalConfig {
            asn,
            bgp_id,
            peer_asn,
            hold_time: 90,
            keepalive: None,
            families: vec![Family::IPV4_UNICAST],
            route_refresh: true,
            graceful_restart: None,
            long_lived: Vec::new(),
            add_path: Vec::new(),
            extended_message: true,
            extended_next_hop: false,
            required: Vec::new(),
        }
    }

    /// Clears the Restart State (R) bit: RFC 4724 §4.1 sets it only in the
    /// OPENs of a speaker that is still restarting, so once its deferral is
    /// over a new session must not claim a restart.
    pub fn end_restart(&mut self) {
        if let Some(gr) = &mut self.graceful_restart {
            gr.restarted = false;
        }
    }

    /// The OPEN we send.
    pub fn open(&self) -> Open {
        let mut caps: Vec<Capability> = self.families.iter().map(|f| Capability::Multiprotocol(*f)).collect();
        if self.route_refresh {
            caps.push(Capability::RouteRefresh);
            caps.push(Capability::EnhancedRouteRefresh);
        }
        caps.push(Capability::FourOctetAs(self.asn));
        if let Some(gr) = &self.graceful_restart {
            caps.push(Capability::GracefulRestart(gr.clone()));
            if !self.long_lived.is_empty() {
                caps.push(Capability::LongLivedGracefulRestart(self.long_lived.clone()));
            }
        }
        if !self.add_path.is_empty() {
            caps.push(Capability::AddPath(self.add_path.clone()));
        }
        if self.extended_message {
            caps.push(Capability::ExtendedMessage);
        }
        if self.extended_next_hop {
            let hop = ExtendedNextHop {
                nlri_afi: crate::packet::Afi::Ipv4,
                nlri_safi: 1,
                next_hop_afi: crate::packet::Afi::Ipv6,
            };
            caps.push(Capability::ExtendedNextHop(vec![hop]));
        }
        Open::new(self.asn, self.hold_time, self.bgp_id, caps)
    }
}

/// What both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The peer's AS.
    pub peer_asn: u32,
    /// The peer's BGP identifier.
    pub peer_id: Ipv4Addr,
    /// Hold time in use (0: no hold timer, no keepalives).
    pub hold_time: u16,
    /// Keepalive interval in use (0 when the hold time is 0).
    pub keepalive: u16,
    /// Families both carry.
    pub families: Vec<Family>,
    /// Both speak 4-octet AS numbers.
    pub four_octet_as: bool,
    /// Both accept ROUTE-REFRESH.
    pub route_refresh: bool,
    /// Both do enhanced route refresh.
    pub enhanced_route_refresh: bool,
    /// Both accept extended messages.
    pub extended_message: bool,
    /// Families in which the peer sends us path identifiers.
    pub add_path_rx: FamilySet,
    /// Families in which we send path identifiers.
    pub add_path_tx: FamilySet,
    /// The peer's graceful restart capability.
    pub peer_graceful_restart: Option<GracefulRestart>,
    /// The peer's long-lived graceful restart families (RFC 9494 §3:
    /// empty when it sent none, or sent it without graceful restart).
    pub peer_long_lived: Vec<LongLivedFamily>,
    /// The peer's capabilities as received.
    pub peer_capabilities: Vec<Capability>,
}

impl Negotiated {
    /// The codec context for what we receive.
    pub fn rx(&self) -> Context {
        Context {
            four_octet_as: self.four_octet_as,
            extended_message: self.extended_message,
            add_path: self.add_path_rx,
        }
    }

    /// The codec context for what we send.
    pub fn tx(&self) -> Context {
        Context {
            four_octet_as: self.four_octet_as,
            extended_message: self.extended_message,
            add_path: self.add_path_tx,
        }
    }
}

/// Why we refuse a peer's OPEN: the NOTIFICATION and the reason in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What we send.
    pub notification: Notification,
    /// The reason, for the log and the status.
    pub reason: String,
}

fn refuse(subcode: u8, data: Bytes, reason: String) -> Refusal {
    Refusal { notification: Notification { code: ErrorCode::Open, subcode, data }, reason }
}

/// Checks the peer's OPEN against `local` and works out the session's terms.
pub fn negotiate(local: &LocalConfig, peer: &Open) -> Result<Negotiated, Refusal> {
    let peer_asn = peer.asn();
    if peer_asn != local.peer_asn {
        // RFC 4271 §6.2: Bad Peer AS.
        return Err(refuse(
            open_subcode::BAD_PEER_AS,
            Bytes::new(),
            format!("Bad peer AS: {peer_asn} (expected {})", local.peer_asn),
        ));
    }
    if peer_asn == local.asn && peer.bgp_id == local.bgp_id {
        // RFC 6286 §2.2: within an AS the identifiers must differ.
        return Err(refuse(
            open_subcode::BAD_BGP_IDENTIFIER,
            Bytes::new(),
            format!("Bad BGP identifier: {} is ours", peer.bgp_id),
        ));
    }
    let caps = &peer.capabilities;
    let has = |f: &dyn Fn(&Capability) -> bool| caps.iter().any(f);
    // RFC 4760 §8: a speaker without multiprotocol capabilities carries IPv4 unicast only.
    let peer_families: Vec<Family> = {
        let mp: Vec<Family> =
            caps.iter().filter_map(|c| if let Capability::Multiprotocol(f) = c { Some(*f) } else { None }).collect();
        if mp.is_empty() { vec![Family::IPV4_UNICAST] } else { mp }
    };
    let four_octet_as = has(&|c| matches!(c, Capability::FourOctetAs(_)));
    let route_refresh = local.route_refresh && has(&|c| matches!(c, Capability::RouteRefresh));
    let extended_message = local.extended_message && has(&|c| matches!(c, Capability::ExtendedMessage));
    let peer_gr = caps.iter().find_map(|c| if let Capability::GracefulRestart(g) = c { Some(g.clone()) } else { None });
    // RFC 9494 §3: the capability means nothing without graceful restart's.
    let peer_long_lived = caps
        .iter()
        .find_map(|c| if let Capability::LongLivedGracefulRestart(l) = c { Some(l.clone()) } else { None })
        .filter(|_| peer_gr.is_some())
        .unwrap_or_default();
    for req in &local.required {
        let present = match req {
            Required::FourOctetAs => four_octet_as,
            Required::Family(f) => peer_families.contains(f),
            Required::RouteRefresh => has(&|c| matches!(c, Capability::RouteRefresh)),
            Required::GracefulRestart => peer_gr.is_some(),
            Required::ExtendedMessage => has(&|c| matches!(c, Capability::ExtendedMessage)),
        };
        if !present {
            // RFC 5492 §5: Unsupported Capability, with the capability we need as data.
            let wanted = match req {
                Required::FourOctetAs => Capability::FourOctetAs(local.asn),
                Required::Family(f) => Capability::Multiprotocol(*f),
                Required::RouteRefresh => Capability::RouteRefresh,
                Required::GracefulRestart => {
                    Capability::GracefulRestart(local.graceful_restart.clone().unwrap_or(GracefulRestart {
                        restarted: false,
                        notification: false,
                        restart_time: 0,
                        families: Vec::new(),
                    }))
                }
                Required::ExtendedMessage => Capability::ExtendedMessage,
            };
            let mut data = BytesMut::new();
            wanted.encode(&mut data);
            return Err(refuse(
                open_subcode::UNSUPPORTED_CAPABILITY,
                data.freeze(),
                format!("Unsupported capability: peer lacks {req:?}"),
            ));
        }
    }
    let families: Vec<Family> = local.families.iter().copied().filter(|f| peer_families.contains(f)).collect();
    // RFC 4271 §4.2: the smaller hold time; 1 and 2 s were refused by the codec.
    let hold_time = local.hold_time.min(peer.hold_time);
    // RFC 4271 §10: a third of the hold time unless configured; a configured
    // interval shrinks with the hold time when the peer's is smaller (as
    // BIRD scales it), and stays below it.
    let keepalive = match (hold_time, local.keepalive) {
        (0, _) => 0,
        (h, Some(k)) => {
            let scaled = u32::from(k) * u32::from(h) / u32::from(local.hold_time.max(h));
            scaled.clamp(1, u32::from(h) - 1) as u16
        }
        (h, None) => h / 3,
    };
    let peer_add_path: Vec<AddPathFamily> = caps
        .iter()
        .filter_map(|c| if let Capability::AddPath(v) = c { Some(v.clone()) } else { None })
        .flatten()
        .collect();
    let (mut add_path_rx, mut add_path_tx) = (FamilySet::NONE, FamilySet::NONE);
    for ours in &local.add_path {
        let Some(theirs) = peer_add_path.iter().find(|p| p.family == ours.family) else { continue };
        if !families.contains(&ours.family) {
            continue;
        }
        let can = |m: AddPathMode, dir: AddPathMode| m == dir || m == AddPathMode::Both;
        // RFC 7911 §4: we receive when we can receive and they can send, and the reverse.
        if can(ours.mode, AddPathMode::Receive) && can(theirs.mode, AddPathMode::Send) {
            add_path_rx.insert(ours.family);
        }
        if can(ours.mode, AddPathMode::Send) && can(theirs.mode, AddPathMode::Receive) {
            add_path_tx.insert(ours.family);
        }
    }
    Ok(Negotiated {
        peer_asn,
        peer_id: peer.bgp_id,
        hold_time,
        keepalive,
        families,
        four_octet_as,
        route_refresh,
        enhanced_route_refresh: route_refresh && has(&|c| matches!(c, Capability::EnhancedRouteRefresh)),
        extended_message,
        add_path_rx,
        add_path_tx,
        peer_graceful_restart: peer_gr,
        peer_long_lived,
        peer_capabilities: caps.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn local() -> LocalConfig {
        LocalConfig::new(65001, ip("192.0.2.1"), 65002)
    }

    #[test]
    fn terms_are_the_intersection_and_the_smaller_hold_time() {
        let mut ours = local();
        ours.families.push(Family::IPV6_UNICAST);
        ours.add_path = vec![AddPathFamily { family: Family::IPV4_UNICAST, mode: AddPathMode::Both }];
        let mut theirs = LocalConfig::new(65002, ip("192.0.2.2"), 65001);
        theirs.hold_time = 9;
        theirs.add_path = vec![AddPathFamily { family: Family::IPV4_UNICAST, mode: AddPathMode::Send }];
        let n = negotiate(&ours, &theirs.open()).unwrap();
        assert_eq!((n.hold_time, n.keepalive), (9, 3));
        assert_eq!(n.families, vec![Family::IPV4_UNICAST]);
        assert!(n.four_octet_as && n.route_refresh && n.enhanced_route_refresh && n.extended_message);
        assert!(n.add_path_rx.contains(Family::IPV4_UNICAST) && !n.add_path_tx.contains(Family::IPV4_UNICAST));
        assert_eq!(n.rx().add_path, n.add_path_rx);
    }

    #[test]
    fn a_configured_keepalive_is_kept_and_shrinks_with_a_smaller_hold_time() {
        let mut ours = local();
        ours.keepalive = Some(60);
        let theirs = LocalConfig::new(65002, ip("192.0.2.2"), 65001);
        assert_eq!(negotiate(&ours, &theirs.open()).unwrap().keepalive, 60, "60 s under a 90 s hold time");
        let mut short = theirs.clone();
        short.hold_time = 9;
        assert_eq!(negotiate(&ours, &short.open()).unwrap().keepalive, 6, "scaled: 60 × 9 / 90");
        short.hold_time = 3;
        assert_eq!(negotiate(&ours, &short.open()).unwrap().keepalive, 2, "below the hold time");
    }

    #[test]
    fn hold_time_zero_means_no_keepalives() {
        let mut theirs = LocalConfig::new(65002, ip("192.0.2.2"), 65001);
        theirs.hold_time = 0;
        let n = negotiate(&local(), &theirs.open()).unwrap();
        assert_eq!((n.hold_time, n.keepalive), (0, 0));
    }

    #[test]
    fn bad_peer_as_and_own_identifier_are_refused() {
        let wrong = LocalConfig::new(65099, ip("192.0.2.2"), 65001);
        let r = negotiate(&local(), &wrong.open()).unwrap_err();
        assert_eq!((r.notification.code, r.notification.subcode), (ErrorCode::Open, 2));
        assert!(r.reason.contains("65099"), "{}", r.reason);
        let mut ibgp = local();
        ibgp.peer_asn = 65001;
        let same_id = LocalConfig::new(65001, ip("192.0.2.1"), 65001);
        assert_eq!(negotiate(&ibgp, &same_id.open()).unwrap_err().notification.subcode, 3);
    }

    #[test]
    fn two_octet_peer_is_seen_through_as_trans() {
        // A peer without the 4-octet capability (as ExaBGP can be configured).
        let old = Open { my_as: 65002, hold_time: 90, bgp_id: ip("192.0.2.2"), capabilities: vec![] };
        let n = negotiate(&local(), &old).unwrap();
        assert!(!n.four_octet_as && n.families == vec![Family::IPV4_UNICAST]);
        // We are AS 4200000000: our OPEN says AS_TRANS and carries the real AS in the capability.
        let big = LocalConfig::new(4_200_000_000, ip("192.0.2.1"), 65002).open();
        assert_eq!((big.my_as, big.asn()), (crate::packet::AS_TRANS, 4_200_000_000));
        // A 2-octet peer expected as a 4-octet AS can only show AS_TRANS: Bad Peer AS.
        let mut expects_big = local();
        expects_big.peer_asn = 4_200_000_001;
        let trans =
            Open { my_as: crate::packet::AS_TRANS, hold_time: 90, bgp_id: ip("192.0.2.2"), capabilities: vec![] };
        assert_eq!(negotiate(&expects_big, &trans).unwrap_err().notification.subcode, 2);
    }

    #[test]
    fn missing_required_capability_is_notification_2_7_with_the_capability() {
        let mut ours = local();
        ours.required = vec![Required::FourOctetAs];
        let old = Open { my_as: 65002, hold_time: 90, bgp_id: ip("192.0.2.2"), capabilities: vec![] };
        let r = negotiate(&ours, &old).unwrap_err();
        assert_eq!((r.notification.code, r.notification.subcode), (ErrorCode::Open, 7));
        assert_eq!(&r.notification.data[..], &[65, 4, 0, 0, 0xfd, 0xe9]);
        ours.required = vec![Required::Family(Family::IPV6_UNICAST)];
        let r = negotiate(&ours, &LocalConfig::new(65002, ip("192.0.2.2"), 65001).open()).unwrap_err();
        assert_eq!(&r.notification.data[..], &[1, 4, 0, 2, 0, 1]);
    }
}
