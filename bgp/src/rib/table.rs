//! The Loc-RIB: every path to every prefix, by peer, with the decision
//! process re-run for a prefix whenever one of its paths changes. Owned by
//! one task; attribute sets are interned so equal sets are stored once.

use std::collections::HashMap;
use std::sync::Arc;

use ipnet::IpNet;

use super::decision::{Path, Selection, select};
use crate::packet::AttrInterner;

/// Who a path came from: a peer's name, or `None` for locally originated paths.
pub type PeerKey = Option<Arc<str>>;

/// The paths to one prefix and the current choice.
#[derive(Debug, Default)]
struct Entry {
    paths: Vec<(PeerKey, Path)>,
    /// The best path first, then the rest of the multipath set.
    chosen: Vec<(PeerKey, Path)>,
}

/// A change of best path (or multipath set) for a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BestChange {
    /// The prefix.
    pub prefix: IpNet,
    /// The new best path first, then the rest of the multipath set; empty
    /// when the prefix is now unreachable.
    pub paths: Vec<(PeerKey, Path)>,
}

/// The Loc-RIB.
#[derive(Debug, Default)]
pub struct LocRib {
    entries: HashMap<IpNet, Entry>,
    interner: AttrInterner,
    max_paths: usize,
    /// Paths held per peer (for prefix limits and status).
    per_peer: HashMap<PeerKey, usize>,
}

impl LocRib {
    /// An empty RIB; `max_paths` caps the multipath sets (1: no ECMP).
    pub fn new(max_paths: usize) -> LocRib {
        LocRib { max_paths: max_paths.max(1), ..LocRib::default() }
    }

    /// Adds or replaces `peer`'s path to `prefix`.
    pub fn announce(&mut self, peer: &PeerKey, prefix: IpNet, mut path: Path) -> Option<BestChange> {
        path.attrs = self.interner.intern(path.attrs);
        let entry = self.entries.entry(prefix).or_default();
        match entry.paths.iter_mut().find(|(p, _)| p == peer) {
            Some(slot) => slot.1 = path,
            None => {
                entry.paths.push((peer.clone(), path));
                *self.per_peer.entry(peer.clone()).or_default() += 1;
            }
        }
        self.reselect(prefix)
    }

    /// Removes `peer`'s path to `prefix`, if it had one.
    pub fn withdraw(&mut self, peer: &PeerKey, prefix: IpNet) -> Option<BestChange> {
        let entry = self.entries.get_mut(&prefix)?;
        let before = entry.paths.len();
        entry.paths.retain(|(p, _)| p != peer);
        if entry.paths.len() == before {
            return None;
        }
        if let Some(n) = self.per_peer.get_mut(peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(peer);
            }
        }
        self.reselect(prefix)
    }

    /// Removes every path from `peer` (its session went down).
    pub fn peer_down(&mut self, peer: &PeerKey) -> Vec<BestChange> {
        let prefixes: Vec<IpNet> =
            self.entries.iter().filter(|(_, e)| e.paths.iter().any(|(p, _)| p == peer)).map(|(k, _)| *k).collect();
        let changes = prefixes.into_iter().filter_map(|prefix| self.withdraw(peer, prefix)).collect();
        self.interner.collect_garbage();
        changes
    }

    /// The best path first, then the rest of the multipath set.
    pub fn best(&self, prefix: &IpNet) -> &[(PeerKey, Path)] {
        self.entries.get(prefix).map_or(&[], |e| &e.chosen)
    }

    /// Every prefix with a best path, and that path.
    pub fn best_paths(&self) -> impl Iterator<Item = (&IpNet, &(PeerKey, Path))> {
        self.entries.iter().filter_map(|(prefix, e)| e.chosen.first().map(|best| (prefix, best)))
    }

    /// How many paths `peer` has in the RIB.
    pub fn paths_from(&self, peer: &PeerKey) -> usize {
        self.per_peer.get(peer).copied().unwrap_or(0)
    }

    /// How many prefixes have at least one path.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the RIB holds no path.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Distinct attribute sets held.
    pub fn attribute_sets(&self) -> usize {
        self.interner.len()
    }

    /// Re-runs the decision for `prefix`; reports a change of the chosen paths.
    fn reselect(&mut self, prefix: IpNet) -> Option<BestChange> {
        let max_paths = self.max_paths;
        let entry = self.entries.get_mut(&prefix)?;
        let paths: Vec<Path> = entry.paths.iter().map(|(_, p)| p.clone()).collect();
        let chosen: Vec<(PeerKey, Path)> = select(&paths, max_paths)
            .map_or_else(Vec::new, |s: Selection| s.multipath.iter().map(|&i| entry.paths[i].clone()).collect());
        let changed = chosen != entry.chosen;
        entry.chosen = chosen.clone();
        if entry.paths.is_empty() {
            self.entries.remove(&prefix);
        }
        changed.then_some(BestChange { prefix, paths: chosen })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::packet::{AsPath, Origin, PathAttrs};
    use crate::rib::decision::Origination;

    fn path(peer: u8, lp: u32) -> Path {
        Path {
            attrs: Arc::new(PathAttrs {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::from_sequence(&[65000 + u32::from(peer)])),
                local_pref: Some(lp),
                ..PathAttrs::default()
            }),
            origination: Origination::Ebgp,
            peer_addr: IpAddr::from([192, 0, 2, peer]),
            peer_id: Ipv4Addr::new(192, 0, 2, peer),
            reachable: true,
        }
    }

    fn key(name: &str) -> PeerKey {
        Some(Arc::from(name))
    }

    #[test]
    fn best_path_follows_announcements_withdrawals_and_sessions() {
        let mut rib = LocRib::new(1);
        let p: IpNet = "198.18.1.0/24".parse().unwrap();
        let c = rib.announce(&key("a"), p, path(1, 100)).unwrap();
        assert_eq!(c.paths[0].0, key("a"));
        assert_eq!(rib.paths_from(&key("a")), 1);
        // A better path takes over; a worse one changes nothing.
        assert_eq!(rib.announce(&key("b"), p, path(2, 200)).unwrap().paths[0].0, key("b"));
        assert_eq!(rib.announce(&key("c"), p, path(3, 50)), None);
        // Replacing b's path with a worse one hands the prefix back to a.
        assert_eq!(rib.announce(&key("b"), p, path(2, 10)).unwrap().paths[0].0, key("a"));
        // a's session ends: c is next (lp 50 > 10).
        let changes = rib.peer_down(&key("a"));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].paths[0].0, key("c"));
        rib.withdraw(&key("c"), p);
        let last = rib.withdraw(&key("b"), p).unwrap();
        assert!(last.paths.is_empty(), "unreachable now");
        assert!(rib.is_empty());
        assert_eq!(rib.withdraw(&key("b"), p), None, "withdrawing nothing changes nothing");
    }

    #[test]
    fn equal_attribute_sets_are_stored_once() {
        let mut rib = LocRib::new(1);
        for i in 0..1000u32 {
            let prefix = IpNet::from(ipnet::Ipv4Net::new(Ipv4Addr::from(0xc612_0000 + (i << 8)), 24).unwrap());
            rib.announce(&key("a"), prefix, path(1, 100 + i % 3));
        }
        assert_eq!((rib.len(), rib.attribute_sets(), rib.paths_from(&key("a"))), (1000, 3, 1000));
        rib.peer_down(&key("a"));
        assert_eq!(rib.paths_from(&key("a")), 0);
        assert_eq!((rib.len(), rib.attribute_sets()), (0, 0));
    }
}
