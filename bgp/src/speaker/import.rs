//! Import: an UPDATE from a peer through loop detection (RFC 4271 §9.1.2,
//! RFC 4456 §8) and the import policy into the Loc-RIB, kept as received
//! first for soft reconfiguration inbound; End-of-RIB (RFC 4724) and the
//! prefix limit (RFC 4486).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::IpNet;

use super::core::{Output, SpeakerCore, Timer, key};
use crate::packet::{DecodeError, ErrorAction, Family, PathAttrs, Update, cease_subcode};
use crate::rib::decision::{Origination, Path};
use crate::rib::policy::{PeerType, Source};
use crate::session::peer::PeerCommand;

/// How many prefixes of an UPDATE ahead of the one it imports the speaker
/// has the RIB fetch into the cache: far enough for the memory access to
/// finish while it works on the ones between.
const PREFETCH_AHEAD: usize = 8;

/// Routes from a peer: each prefix with its attributes, or `None` for a
/// withdrawal. The attributes are borrowed: an UPDATE's prefixes share one
/// set, and a count taken and dropped per prefix (two atomic operations)
/// was a few per cent of a full table's import.
pub(super) type Routes<'a> = [(IpNet, Option<&'a Arc<PathAttrs>>)];

/// What import makes of a received attribute set: the set as the RIB
/// takes it (none when its NEXT_HOP is unusable), and whether it is a loop.
type Usable = (Option<Arc<PathAttrs>>, bool);

/// `routes` with their attributes borrowed.
pub(super) fn borrowed(routes: &[(IpNet, Option<Arc<PathAttrs>>)]) -> Vec<(IpNet, Option<&Arc<PathAttrs>>)> {
    routes.iter().map(|(prefix, attrs)| (*prefix, attrs.as_ref())).collect()
}

impl SpeakerCore {
    /// An UPDATE from `peer`: its routes into the RIB, then what its
    /// End-of-RIB ends and whether it passed its prefix limit.
    pub(super) fn update(&mut self, peer: &str, update: Update) {
        if self.over_limit.contains(peer) {
            return;
        }
        self.note_malformed(peer, &update.errors);
        let end_of_rib = update.end_of_rib_family();
        if let Some(stale) = self.stale.get_mut(peer) {
            for n in update.withdrawn.iter().chain(&update.nlri) {
                stale.prefixes.remove(&IpNet::V4(n.prefix));
            }
            let mp = update.mp_reach.iter().flat_map(|r| &r.nlri);
            for n in mp.chain(update.mp_unreach.iter().flat_map(|u| &u.withdrawn)) {
                stale.prefixes.remove(&n.prefix);
            }
        }
        self.learn(peer, update);
        if let Some(family) = end_of_rib
            && self.stale.contains_key(peer)
        {
            // RFC 4724 §4.2: what the peer did not re-announce by End-of-RIB is gone.
            self.sweep_stale_family(peer, family);
        }
        // A peer's table is in once it has sent End-of-RIB for every family
        // its session carries (an IPv6 session's is IPv6 unicast's).
        if let Some(family) = end_of_rib {
            let families = self.negotiated(peer).map_or_else(|| vec![Family::IPV4_UNICAST], |n| n.families.clone());
            let seen = self.end_of_rib_families.entry(peer.to_string()).or_default();
            seen.insert(family);
            if families.iter().all(|f| seen.contains(f)) {
                self.end_of_rib.insert(peer.to_string());
                self.check_deferral();
            }
        }
        self.check_limit(peer);
    }

    /// Counts and logs what RFC 7606 made of an UPDATE's malformed
    /// attributes (§6 asks for a log; see [`log_due`]).
    fn note_malformed(&mut self, peer: &str, errors: &[DecodeError]) {
        let Some(session) = self.neighbors.get_mut(peer) else { return };
        for e in errors {
            let slot = match e.action {
                ErrorAction::TreatAsWithdraw => 0,
                ErrorAction::AttributeDiscard => 1,
                // The session layer resets or stops the family for the others.
                _ => continue,
            };
            session.revised[slot] += 1;
            let count = session.revised[slot];
            if log_due(count - 1, count) {
                tracing::warn!(peer, action = %e.action, reason = e.reason, count, "malformed UPDATE attribute (RFC 7606)");
            }
        }
    }

    /// Applies an UPDATE from `peer` to the RIB (keeping it as received
    /// first, with soft reconfiguration inbound).
    fn learn(&mut self, peer: &str, update: Update) {
        let Some(session) = self.neighbors.get(peer) else { return };
        let attrs = update.attrs;
        // IPv6 unicast (RFC 4760): its next hop is kept with the attributes.
        let v6_reach = update.mp_reach.as_ref().filter(|r| r.family == Family::IPV6_UNICAST);
        let v6 = v6_reach.and_then(|r| {
            attrs.as_ref().map(|a| Arc::new(PathAttrs { mp_next_hop: Some(Box::new(r.next_hop)), ..(**a).clone() }))
        });
        let withdrawn = update.withdrawn.iter().map(|n| (IpNet::V4(n.prefix), None));
        // NLRI without attributes (RFC 7606 treat-as-withdraw) are withdrawals.
        let announced = update.nlri.iter().map(|n| (IpNet::V4(n.prefix), attrs.as_ref()));
        let mut routes: Vec<(IpNet, Option<&Arc<PathAttrs>>)> = withdrawn.chain(announced).collect();
        if let Some(u) = update.mp_unreach.as_ref().filter(|u| u.family == Family::IPV6_UNICAST) {
            routes.extend(u.withdrawn.iter().map(|n| (n.prefix, None)));
        }
        if let Some(r) = v6_reach {
            routes.extend(r.nlri.iter().map(|n| (n.prefix, v6.as_ref())));
        }
        let soft = session.neighbor.soft_reconfiguration_inbound.then(|| session.key.clone());
        self.import(peer, &routes);
        if let Some(from) = soft {
            self.received.entry(peer.to_string()).or_default().imported(&self.rib, &from, &routes);
        }
    }

    /// Puts routes from `peer` (attributes, or `None` for a withdrawal)
    /// through loop detection and the import policy into the RIB; the
    /// best-path changes join the batch under way (sent by `flush`).
    pub(super) fn import(&mut self, peer: &str, routes: &Routes<'_>) {
        let Some(session) = self.neighbors.get(peer) else { return };
        let neighbor = &session.neighbor;
        let from = session.key.clone();
        let ibgp = neighbor.export.is_ibgp();
        let (origination, peer_type) =
            if ibgp { (Origination::Ibgp, PeerType::Ibgp) } else { (Origination::Ebgp, PeerType::Ebgp) };
        let peer_id = session.negotiated.as_ref().map_or(Ipv4Addr::UNSPECIFIED, |n| n.peer_id);
        let (peer_addr, local_as, policy): (IpAddr, u32, _) =
            (neighbor.session.remote.ip(), neighbor.export.local_as, neighbor.import_policy.as_ref());
        let allowed = usize::from(neighbor.allow_local_as);
        let local_addr = neighbor.export.local_addr;
        // What one attribute set allows (the prefixes of an UPDATE share
        // it): the set as usable, or none, and whether it is a loop.
        let mut last: Option<(&Arc<PathAttrs>, Usable)> = None;
        // The changes go straight into the batch under way.
        let changes = &mut self.pending;
        let before = changes.len();
        changes.reserve(routes.len());
        let mut ignored = 0u64;
        for (i, &(prefix, attrs)) in routes.iter().enumerate() {
            if let Some((ahead, _)) = routes.get(i + PREFETCH_AHEAD) {
                self.rib.prefetch(ahead);
            }
            let Some(received) = attrs else {
                changes.extend(self.rib.withdraw(&from, prefix));
                continue;
            };
            let (attrs, looped) = match &last {
                Some((seen, (usable, looped))) if Arc::ptr_eq(seen, received) => (usable.clone(), *looped),
                _ => {
                    let usable = usable(received.clone(), prefix.addr().is_ipv6(), ibgp, local_addr);
                    // RFC 4271 §9.1.2: a path through our own AS (more often than
                    // `allow_local_as` permits) is a loop, as good as withdrawn;
                    // RFC 4456 §8: so is one that names us as ORIGINATOR_ID or (for a
                    // reflector) carries our CLUSTER_ID.
                    let looped = usable.as_ref().is_some_and(|attrs| {
                        attrs.as_path.as_ref().is_some_and(|p| p.occurrences(local_as) > allowed)
                            || attrs.originator_id == Some(self.router_id)
                            || self.reflector.as_ref().is_some_and(|r| r.looped(attrs))
                    });
                    // The RIB's shared copy, once for the set (not a loop: kept out).
                    let usable = usable.map(|attrs| if looped { attrs } else { self.rib.intern(attrs) });
                    last = Some((received, (usable.clone(), looped)));
                    (usable, looped)
                }
            };
            let Some(attrs) = attrs else {
                // Not a usable route: as good as withdrawn.
                ignored += 1;
                changes.extend(self.rib.withdraw(&from, prefix));
                continue;
            };
            let accepted = match &policy {
                _ if looped => None,
                Some(p) => p.apply_shared(&prefix, attrs, peer_type, Source::RemotePeers),
                // RFC 8212: nothing from an eBGP peer without an import policy.
                None if ibgp => Some(attrs),
                None => None,
            };
            match accepted {
                Some(attrs) => {
                    let path = Path { attrs, origination, peer_addr, peer_id, reachable: true };
                    changes.extend(self.rib.announce(&from, prefix, path));
                }
                None => changes.extend(self.rib.withdraw(&from, prefix)),
            }
        }
        if changes.len() > before {
            self.pending_pieces += 1;
        }
        if ignored > 0 {
            self.note_ignored(peer, ignored);
        }
    }

    /// Counts routes ignored for an unusable NEXT_HOP (RFC 4271 §6.3) and
    /// logs it (see [`log_due`]).
    fn note_ignored(&mut self, peer: &str, routes: u64) {
        let Some(session) = self.neighbors.get_mut(peer) else { return };
        let before = session.ignored;
        session.ignored += routes;
        if log_due(before, session.ignored) {
            let total = session.ignored;
            tracing::warn!(peer, total, "routes with an unusable NEXT_HOP ignored (RFC 4271 §6.3)");
        }
    }

    /// RFC 4486: past its prefix limit a peer is stopped (Cease 6/1), its
    /// routes dropped, and restarted after `restart_after`.
    fn check_limit(&mut self, peer: &str) {
        let Some(limit) = self.neighbors.get(peer).and_then(|s| s.neighbor.max_prefix) else { return };
        let count = self.rib.paths_from(&key(peer));
        if count >= limit.warn_at && count <= limit.limit {
            tracing::warn!(peer, count, limit = limit.limit, "peer is close to its prefix limit");
        }
        if count <= limit.limit {
            return;
        }
        tracing::warn!(peer, count, limit = limit.limit, "prefix limit exceeded: stopping the session");
        self.over_limit.insert(peer.to_string());
        self.tell(peer, PeerCommand::AutoStop { subcode: cease_subcode::MAXIMUM_PREFIXES_REACHED });
        // Nothing of the session is kept (the next one sends its routes again).
        self.received.remove(peer);
        self.drop_paths(peer);
        self.emit(Output::Timer { after: limit.restart_after, timer: Timer::LimitOver { peer: peer.to_string() } });
    }
}

/// Whether a count going from `before` to `after` is logged: the first one,
/// then whenever it passes a power of two (a peer sending thousands of bad
/// routes cannot flood the log, and the log still shows how many).
fn log_due(before: u64, after: u64) -> bool {
    before == 0 || before.ilog2() != after.ilog2()
}

/// A received attribute set as this speaker may use it, or `None` when its
/// routes are to be ignored:
/// - RFC 4271 §6.3 (and RFC 7606 §7.3): a NEXT_HOP that is not a usable
///   host address (0.0.0.0, a multicast or broadcast address) or that is
///   our own address on the session makes the route unusable: ignored, no
///   NOTIFICATION;
/// - RFC 4271 §5.1.5 (and RFC 7606 §7.5): a LOCAL_PREF from an external
///   peer is discarded.
fn usable(attrs: Arc<PathAttrs>, v6: bool, ibgp: bool, local_addr: IpAddr) -> Option<Arc<PathAttrs>> {
    use crate::packet::MpNextHop;
    // An IPv6 route's next hop is in MP_REACH_NLRI; an IPv4 route's in NEXT_HOP
    // (or, with RFC 8950's extended next hop, in MP_REACH_NLRI too).
    let hop = match (v6, attrs.next_hop, attrs.mp_next_hop.as_deref().copied()) {
        (false, Some(hop), _) => Some(IpAddr::V4(hop)),
        (_, _, Some(MpNextHop::Ipv6 { global, .. })) => Some(IpAddr::V6(global)),
        (_, _, Some(MpNextHop::Ipv4(hop))) => Some(IpAddr::V4(hop)),
        _ => None,
    };
    let unusable = hop.is_some_and(|hop| {
        hop.is_unspecified()
            || hop.is_multicast()
            || hop == local_addr
            || matches!(hop, IpAddr::V4(v4) if v4.is_broadcast())
    });
    if unusable {
        return None;
    }
    if !ibgp && attrs.local_pref.is_some() {
        return Some(Arc::new(PathAttrs { local_pref: None, ..(*attrs).clone() }));
    }
    Some(attrs)
}

#[cfg(test)]
mod tests {
    use super::log_due;

    #[test]
    fn a_count_is_logged_first_and_then_at_each_power_of_two_it_passes() {
        let logged: Vec<u64> = (1..=20).filter(|&n| log_due(n - 1, n)).collect();
        assert_eq!(logged, [1, 2, 4, 8, 16]);
        assert!(log_due(5, 300), "a jump past 8 … 256 is logged once");
        assert!(!log_due(300, 500));
    }
}
