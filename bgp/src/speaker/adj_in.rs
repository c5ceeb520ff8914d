//! Soft reconfiguration inbound: a peer's routes as it sent them (RFC 4271
//! §3.2's Adj-RIB-In, before the import policy), kept for the peers
//! configured so, that a changed import policy can judge them again
//! without asking the peer to resend.
//!
//! Most routes are imported unchanged: the Loc-RIB holds the very attribute
//! set received (or an equal one). Those are not stored a second time; kept
//! here are only the others — routes kept out (by the import policy, loop
//! detection or an unusable NEXT_HOP), routes the import changed, and routes
//! whose Loc-RIB path changed since (LLGR_STALE added, RFC 9494). A peer's
//! million accepted routes cost nothing here (they had cost ~70 MB).

use std::collections::HashSet;
use std::sync::Arc;

use ipnet::IpNet;

use super::import::Routes;
use crate::packet::PathAttrs;
use crate::rib::table::{LocRib, PeerKey};

/// One peer's routes as received, where the Loc-RIB does not hold them so.
#[derive(Debug, Default, Clone)]
pub(super) struct AdjRibIn {
    differs: foldhash::HashMap<IpNet, Arc<PathAttrs>>,
}

impl AdjRibIn {
    /// Notes `routes` as received from the peer `from` (attributes, or `None`
    /// for a withdrawal) once they have been imported into `rib`.
    pub(super) fn imported(&mut self, rib: &LocRib, from: &PeerKey, routes: &Routes<'_>) {
        // The prefixes of an UPDATE share one set: two sets are compared once.
        let mut compared: Option<(*const PathAttrs, *const PathAttrs, bool)> = None;
        for (prefix, received) in routes {
            let as_received = received.as_ref().is_none_or(|received| match rib.attrs_from(from, prefix) {
                None => false,
                Some(held) if held.as_ptr() == Arc::as_ptr(received) => true,
                Some(held) => {
                    let pair = (Arc::as_ptr(received), held.as_ptr());
                    match compared {
                        Some((r, h, same)) if (r, h) == pair => same,
                        _ => {
                            let same = *held == ***received;
                            compared = Some((pair.0, pair.1, same));
                            same
                        }
                    }
                }
            });
            match received {
                Some(received) if !as_received => {
                    self.differs.insert(*prefix, Arc::clone(received));
                }
                _ if !self.differs.is_empty() => {
                    self.differs.remove(prefix);
                }
                _ => {}
            }
        }
    }

    /// `prefix`'s Loc-RIB path from the peer, `held`, is about to change
    /// other than by an import: what was received is kept here first.
    pub(super) fn keep(&mut self, prefix: IpNet, held: &Arc<PathAttrs>) {
        self.differs.entry(prefix).or_insert_with(|| held.clone());
    }

    /// The peer's routes to `prefixes` are gone.
    pub(super) fn forget(&mut self, prefixes: &HashSet<IpNet>) {
        if !self.differs.is_empty() {
            self.differs.retain(|p, _| !prefixes.contains(p));
        }
    }

    /// The prefixes of the routes kept here.
    pub(super) fn prefixes(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.differs.keys().copied()
    }

    /// Every route as received from `from`, in prefix order: those kept
    /// here, and the rest as the Loc-RIB holds them.
    pub(super) fn routes(&self, rib: &LocRib, from: &PeerKey) -> Vec<(IpNet, Arc<PathAttrs>)> {
        let mut routes: Vec<(IpNet, Arc<PathAttrs>)> = self.differs.iter().map(|(p, a)| (*p, a.clone())).collect();
        let held = rib.prefixes_from(from).into_iter().filter(|p| !self.differs.contains_key(p));
        routes.extend(held.filter_map(|p| Some((p, rib.attrs_from(from, &p)?.to_arc()))));
        routes.sort_unstable_by_key(|(prefix, _)| *prefix);
        routes
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::rib::decision::{Origination, Path};
    use crate::speaker::import::borrowed;

    fn attrs(med: u32) -> Arc<PathAttrs> {
        Arc::new(PathAttrs { med: Some(med), next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)), ..Default::default() })
    }

    fn path(attrs: &Arc<PathAttrs>) -> Path {
        Path {
            attrs: attrs.clone(),
            origination: Origination::Ibgp,
            peer_addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            peer_id: Ipv4Addr::new(192, 0, 2, 1),
            reachable: true,
        }
    }

    #[test]
    fn only_routes_the_loc_rib_does_not_hold_as_received_are_stored_and_all_come_back() {
        let (mut rib, mut adj) = (LocRib::default(), AdjRibIn::default());
        let from: PeerKey = Some(Arc::from("peer"));
        let p = |s: &str| -> IpNet { s.parse().unwrap() };
        let (a, b, c) = (attrs(1), attrs(2), attrs(3));
        // Accepted as received (the same set, and an equal one), changed, kept out.
        rib.announce(&from, p("198.51.100.0/24"), path(&a));
        rib.announce(&from, p("198.51.101.0/24"), path(&attrs(2)));
        rib.announce(&from, p("198.51.102.0/24"), path(&attrs(30)));
        let received = vec![
            (p("198.51.100.0/24"), Some(a.clone())),
            (p("198.51.101.0/24"), Some(b.clone())),
            (p("198.51.102.0/24"), Some(c.clone())),
            (p("198.51.103.0/24"), Some(a.clone())),
        ];
        adj.imported(&rib, &from, &borrowed(&received));
        assert_eq!(adj.differs.len(), 2, "{:?}", adj.differs.keys());
        let all: Vec<(IpNet, Option<Arc<PathAttrs>>)> =
            adj.routes(&rib, &from).into_iter().map(|(p, a)| (p, Some(a))).collect();
        assert_eq!(all, received);
        // Imported as received now: no longer stored; withdrawn: gone.
        rib.announce(&from, p("198.51.102.0/24"), path(&c));
        rib.withdraw(&from, p("198.51.103.0/24"));
        adj.imported(&rib, &from, &[(p("198.51.102.0/24"), Some(&c)), (p("198.51.103.0/24"), None)]);
        assert!(adj.differs.is_empty());
        // A Loc-RIB path about to change (LLGR_STALE) keeps what was received.
        adj.keep(p("198.51.100.0/24"), &a);
        rib.announce(&from, p("198.51.100.0/24"), path(&attrs(99)));
        assert_eq!(
            adj.routes(&rib, &from),
            [(p("198.51.100.0/24"), a), (p("198.51.101.0/24"), b), (p("198.51.102.0/24"), c)]
        );
        adj.forget(&[p("198.51.100.0/24")].into());
        assert!(adj.differs.is_empty());
    }
}
