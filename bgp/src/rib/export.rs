//! What a path looks like when sent to a given peer, or why it is not sent
//! (RFC 4271 §9.2, RFC 4456 §8, RFC 8212).

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

use crate::packet::{AsPath, Community, MpNextHop, PathAttrs, Segment, SegmentType};
use crate::rib::decision::{DEFAULT_LOCAL_PREF, Origination, Path};
use crate::rib::policy::{PeerType, Policy, Source};

/// The route-reflector role (RFC 4456), decided outside the speaker (the
/// `tortie-reflector` crate implements it): which iBGP-learned paths may be
/// reflected to which iBGP peers, what a reflected path carries, and which
/// received paths have looped.
pub trait Reflector: Send + Sync + std::fmt::Debug {
    /// Whether a path learned from an iBGP peer (a client or not) may go to
    /// another iBGP peer (a client or not).
    fn reflects(&self, from_client: bool, to_client: bool) -> bool;
    /// Stamps a reflected path: ORIGINATOR_ID (the peer it came from, when
    /// absent) and this reflector's CLUSTER_ID in front of CLUSTER_LIST.
    fn stamp(&self, attrs: &mut PathAttrs, originator: std::net::Ipv4Addr);
    /// Whether a received path came back through this reflector (to drop).
    fn looped(&self, attrs: &PathAttrs) -> bool;
}

/// Where an iBGP-learned path comes from, for reflection.
#[derive(Debug, Clone, Copy)]
pub struct Reflection<'a> {
    /// The reflector role.
    pub reflector: &'a dyn Reflector,
    /// Whether the path came from one of our clients.
    pub from_client: bool,
}

/// Next-hop handling towards a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NextHopMode {
    /// Always our session address.
    SelfAddr,
    /// Always the path's next hop (route servers, `keepOriginalNextHop`).
    Keep,
    /// Ours towards eBGP peers and for our own routes; kept towards iBGP peers.
    Auto,
}

/// The side of a session that exports decide on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExportPeer {
    /// Our AS on this session.
    pub local_as: u32,
    /// The peer's AS.
    pub peer_as: u32,
    /// Our address on the session (next-hop self).
    pub local_addr: IpAddr,
    /// Next-hop handling.
    pub next_hop: NextHopMode,
    /// Extra prepends of our AS towards this eBGP peer.
    pub prepend: u8,
    /// This iBGP peer is a route-reflector client of ours (RFC 4456 §6).
    pub rr_client: bool,
    /// The peer advertised long-lived graceful restart in its session's
    /// OPEN (RFC 9494): it may be sent LLGR_STALE routes (set when the
    /// session comes up).
    pub long_lived: bool,
    /// Our link-local address on the link to this peer, when the session
    /// is on a subnet we share (set when it comes up): RFC 2545 §3 sends it
    /// after the global next hop we set.
    pub link_local: Option<Ipv6Addr>,
}

impl ExportPeer {
    /// Whether the session is internal.
    pub fn is_ibgp(&self) -> bool {
        self.local_as == self.peer_as
    }
}

/// Why a path is not sent to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Withheld {
    /// iBGP-learned paths do not go to iBGP peers (RFC 4271 §9.2) unless reflected.
    SplitHorizon,
    /// RFC 8212: no export policy towards an eBGP peer.
    NoExportPolicy,
    /// The peer's AS is already in the path: it would drop it (RFC 4271 §9.1.2).
    AsPathLoop,
    /// The export policy rejected it.
    Policy,
    /// An IPv6 route needs an IPv6 next hop, and the session gives none
    /// to set it to (next hop self over IPv4 transport).
    NoNextHop,
    /// RFC 9494 §4.5: an LLGR_STALE route goes only to a peer that
    /// advertised long-lived graceful restart.
    LongLivedStale,
}

/// Why nothing at all may go to `to` under its export `policy`, if so:
/// such a peer is sent no path, so it needs no withdrawal either.
pub fn withholds_everything(to: &ExportPeer, policy: Option<&Policy>) -> Option<Withheld> {
    match policy {
        None if !to.is_ibgp() => Some(Withheld::NoExportPolicy),
        Some(p) if p.rejects_everything() => Some(Withheld::Policy),
        _ => None,
    }
}

/// The attributes to send `path` to `prefix` with to `to` under its export
/// `policy`, or why it is withheld. With a `reflection` role, iBGP-learned
/// paths may be reflected to iBGP peers (RFC 4456 §8).
pub fn export(
    prefix: &IpNet,
    path: &Path,
    to: &ExportPeer,
    policy: Option<&Policy>,
    reflection: Option<Reflection<'_>>,
) -> Result<PathAttrs, Withheld> {
    let ibgp = to.is_ibgp();
    let mut reflected = None;
    if ibgp && path.origination == Origination::Ibgp {
        match reflection {
            Some(r) if r.reflector.reflects(r.from_client, to.rr_client) => reflected = Some(r.reflector),
            _ => return Err(Withheld::SplitHorizon),
        }
    }
    if let Some(why) = withholds_everything(to, policy) {
        return Err(why);
    }
    if !to.long_lived && path.attrs.communities.contains(&Community::LLGR_STALE) {
        return Err(Withheld::LongLivedStale);
    }
    // The export policy sees the path as this speaker holds it, before its
    // own AS goes in front (as BIRD's export filters do): a prepend comes
    // after our AS on the wire, and an AS-path match sees the received path.
    let mut attrs = match policy {
        Some(policy) => {
            let peer = if ibgp { PeerType::Ibgp } else { PeerType::Ebgp };
            let source = if path.origination == Origination::Local { Source::Local } else { Source::RemotePeers };
            policy.apply(prefix, &path.attrs, peer, source).ok_or(Withheld::Policy)?
        }
        None => (*path.attrs).clone(),
    };
    let as_path = attrs.as_path.take().unwrap_or_default();
    if !ibgp && as_path.asns().any(|a| a == to.peer_as) {
        return Err(Withheld::AsPathLoop);
    }
    if ibgp {
        attrs.as_path = Some(as_path);
        attrs.local_pref.get_or_insert(DEFAULT_LOCAL_PREF);
        if let Some(r) = reflected {
            r.stamp(&mut attrs, path.peer_id);
        }
    } else {
        attrs.as_path = Some(prepend(&as_path, to.local_as, 1 + usize::from(to.prepend)));
        // LOCAL_PREF is internal (RFC 4271 §5.1.5); a neighbour AS's MED stops here (§5.1.4);
        // ORIGINATOR_ID and CLUSTER_LIST are non-transitive (RFC 4456 §8).
        attrs.local_pref = None;
        if path.origination != Origination::Local {
            attrs.med = None;
        }
        attrs.originator_id = None;
        attrs.cluster_list.clear();
    }
    let has_next_hop = if prefix.addr().is_ipv4() { attrs.next_hop.is_some() } else { attrs.mp_next_hop.is_some() };
    let next_hop_self = match to.next_hop {
        NextHopMode::SelfAddr => true,
        NextHopMode::Keep => false,
        NextHopMode::Auto => !ibgp || path.origination == Origination::Local || !has_next_hop,
    };
    match prefix {
        IpNet::V4(_) => {
            attrs.mp_next_hop = None;
            if next_hop_self && let IpAddr::V4(v4) = to.local_addr {
                attrs.next_hop = Some(v4);
            }
        }
        // RFC 4760 §3 / RFC 2545 §3: the next hop rides in MP_REACH_NLRI. Ours
        // goes with our link-local address when the peer shares our link; a
        // received link-local one means something only on its own link, so
        // only the global address is passed on.
        IpNet::V6(_) => {
            attrs.next_hop = None;
            let hop = match (next_hop_self, to.local_addr, attrs.mp_next_hop.as_deref().copied()) {
                (true, IpAddr::V6(global), _) => MpNextHop::Ipv6 { global, link_local: to.link_local },
                (false, _, Some(MpNextHop::Ipv6 { global, .. })) => MpNextHop::Ipv6 { global, link_local: None },
                _ => return Err(Withheld::NoNextHop),
            };
            attrs.mp_next_hop = Some(Box::new(hop));
        }
    }
    Ok(attrs)
}

/// `asn` added `times` in front of `path` (RFC 4271 §5.1.2).
fn prepend(path: &AsPath, asn: u32, times: usize) -> AsPath {
    let mut segments = path.segments.clone();
    match segments.first_mut() {
        Some(Segment { kind: SegmentType::Sequence, asns }) if asns.len() + times <= 255 => {
            asns.insert_many(0, std::iter::repeat_n(asn, times));
        }
        _ => segments.insert(0, Segment { kind: SegmentType::Sequence, asns: smallvec::smallvec![asn; times] }),
    }
    AsPath { segments }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use super::*;
    use crate::packet::Origin;

    fn learned(origination: Origination) -> Path {
        Path {
            attrs: Arc::new(PathAttrs {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::from_sequence(&[65002])),
                next_hop: Some(Ipv4Addr::new(192, 0, 2, 2)),
                med: Some(5),
                local_pref: Some(200),
                originator_id: Some(Ipv4Addr::new(192, 0, 2, 9)),
                cluster_list: vec![Ipv4Addr::new(10, 0, 0, 1)].into(),
                ..PathAttrs::default()
            }),
            origination,
            peer_addr: "192.0.2.2".parse().unwrap(),
            peer_id: Ipv4Addr::new(192, 0, 2, 2),
            reachable: true,
        }
    }

    fn out(path: &Path, to: &ExportPeer) -> Result<PathAttrs, Withheld> {
        export(&"198.18.2.0/24".parse().unwrap(), path, to, Some(&Policy::accept_all()), None)
    }

    fn peer(peer_as: u32) -> ExportPeer {
        ExportPeer {
            local_as: 65001,
            peer_as,
            local_addr: "198.51.100.1".parse().unwrap(),
            next_hop: NextHopMode::Auto,
            prepend: 0,
            rr_client: false,
            long_lived: false,
            link_local: None,
        }
    }

    #[test]
    fn an_export_policys_prepend_goes_after_our_own_as_and_its_as_path_match_sees_the_received_path() {
        use crate::rib::policy::{Operation, Rule, Verdict};
        let mut prepend = Rule::any(Verdict::Accept);
        prepend.operations = vec![Operation::Prepend(65010, 2)];
        let policy = Policy { rules: vec![prepend] };
        let prefix = "198.18.2.0/24".parse().unwrap();
        let out = export(&prefix, &learned(Origination::Ebgp), &peer(65003), Some(&policy), None).unwrap();
        let path: Vec<u32> = out.as_path.unwrap().asns().collect();
        assert_eq!(path, [65001, 65010, 65010, 65002], "ours first (RFC 4271 §5.1.2), then the policy's");
        let mut reject = Rule::any(Verdict::Reject);
        reject.as_path_prefix = vec![65002];
        let policy = Policy { rules: vec![reject, Rule::any(Verdict::Accept)] };
        let out = export(&prefix, &learned(Origination::Ebgp), &peer(65003), Some(&policy), None);
        assert_eq!(out, Err(Withheld::Policy), "the received path starts with 65002, not with our AS");
    }

    #[test]
    fn ebgp_export_prepends_sets_next_hop_and_drops_internal_attributes() {
        let a = out(&learned(Origination::Ebgp), &peer(65003)).unwrap();
        assert_eq!(a.as_path.unwrap().asns().collect::<Vec<_>>(), vec![65001, 65002]);
        assert_eq!(a.next_hop, Some(Ipv4Addr::new(198, 51, 100, 1)));
        assert_eq!((a.local_pref, a.med, a.originator_id), (None, None, None));
        assert!(a.cluster_list.is_empty());
        let twice = out(&learned(Origination::Ebgp), &ExportPeer { prepend: 2, ..peer(65003) }).unwrap();
        assert_eq!(twice.as_path.unwrap().asns().collect::<Vec<_>>(), vec![65001, 65001, 65001, 65002]);
    }

    #[test]
    fn ipv6_routes_carry_a_global_next_hop_and_our_link_local_one_only_on_a_shared_link() {
        let hop =
            MpNextHop::Ipv6 { global: "2001:db8::2".parse().unwrap(), link_local: Some("fe80::2".parse().unwrap()) };
        let v6 = Path {
            attrs: Arc::new(PathAttrs {
                next_hop: None,
                mp_next_hop: Some(Box::new(hop)),
                ..(*learned(Origination::Ebgp).attrs).clone()
            }),
            ..learned(Origination::Ebgp)
        };
        let prefix: IpNet = "2001:db8:100::/48".parse().unwrap();
        let to = |peer_as, local: &str| ExportPeer { local_addr: local.parse().unwrap(), ..peer(peer_as) };
        let send = |to: &ExportPeer| export(&prefix, &v6, to, Some(&Policy::accept_all()), None);
        let ebgp = send(&to(65003, "2001:db8::1")).unwrap();
        assert_eq!(
            ebgp.mp_next_hop.as_deref().copied(),
            Some(MpNextHop::Ipv6 { global: "2001:db8::1".parse().unwrap(), link_local: None })
        );
        assert_eq!(ebgp.next_hop, None, "no IPv4 NEXT_HOP for IPv6 routes");
        // RFC 2545 §3: on a shared link, our link-local address follows our global one.
        let on_link = ExportPeer { link_local: Some("fe80::1".parse().unwrap()), ..to(65003, "2001:db8::1") };
        assert_eq!(
            send(&on_link).unwrap().mp_next_hop.as_deref().copied(),
            Some(MpNextHop::Ipv6 {
                global: "2001:db8::1".parse().unwrap(),
                link_local: Some("fe80::1".parse().unwrap())
            })
        );
        let keep = ExportPeer { link_local: Some("fe80::1".parse().unwrap()), ..to(65001, "2001:db8::1") };
        assert_eq!(
            send(&keep).unwrap().mp_next_hop.as_deref().copied(),
            Some(MpNextHop::Ipv6 { global: "2001:db8::2".parse().unwrap(), link_local: None }),
            "another router's next hop passed on: not our link-local"
        );
        let ibgp = send(&to(65001, "192.0.2.1")).unwrap();
        assert_eq!(
            ibgp.mp_next_hop.as_deref().copied(),
            Some(MpNextHop::Ipv6 { global: "2001:db8::2".parse().unwrap(), link_local: None })
        );
        assert_eq!(send(&to(65003, "192.0.2.1")), Err(Withheld::NoNextHop), "next hop self needs an IPv6 session");
    }

    #[test]
    fn ibgp_export_keeps_path_and_next_hop_and_carries_local_pref() {
        let a = out(&learned(Origination::Ebgp), &peer(65001)).unwrap();
        assert_eq!(a.as_path.unwrap().asns().collect::<Vec<_>>(), vec![65002]);
        assert_eq!((a.next_hop, a.local_pref), (Some(Ipv4Addr::new(192, 0, 2, 2)), Some(200)));
        let own = out(&Path { origination: Origination::Local, ..learned(Origination::Local) }, &peer(65001)).unwrap();
        assert_eq!(own.next_hop, Some(Ipv4Addr::new(198, 51, 100, 1)), "our own routes: next hop self");
    }

    #[test]
    fn split_horizon_rfc8212_and_loops_withhold() {
        assert_eq!(out(&learned(Origination::Ibgp), &peer(65001)), Err(Withheld::SplitHorizon));
        assert_eq!(
            out(&learned(Origination::Ibgp), &ExportPeer { rr_client: true, ..peer(65001) }),
            Err(Withheld::SplitHorizon),
            "no reflector role: split horizon"
        );
        let prefix = "198.18.2.0/24".parse().unwrap();
        assert_eq!(
            export(&prefix, &learned(Origination::Ebgp), &peer(65003), None, None),
            Err(Withheld::NoExportPolicy)
        );
        let reject = Policy { rules: vec![crate::rib::policy::Rule::any(crate::rib::policy::Verdict::Reject)] };
        assert_eq!(
            export(&prefix, &learned(Origination::Ebgp), &peer(65003), Some(&reject), None),
            Err(Withheld::Policy)
        );
        assert_eq!(out(&learned(Origination::Ebgp), &peer(65002)), Err(Withheld::AsPathLoop));
    }
}
