//! The Loc-RIB: every path to every prefix, by peer, with the decision
//! process re-run for a prefix whenever one of its paths changes. Owned by
//! one task.
//!
//! Kept compact for full tables: a stored path is an interned attribute
//! set, a small peer index and two flags (16 octets); the peers' addresses
//! and identifiers live once in a peer table; the chosen paths are kept at
//! the front of each prefix's list instead of in a second list; prefixes
//! live in a B-tree.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::IpNet;

use super::decision::{Origination, Path, select};
use crate::packet::{AttrInterner, PathAttrs};

/// Who a path came from: a peer's name, or `None` for locally originated paths.
pub type PeerKey = Option<Arc<str>>;

/// A change of best path (or multipath set) for a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BestChange {
    /// The prefix.
    pub prefix: IpNet,
    /// The new best path first, then the rest of the multipath set; empty
    /// when the prefix is now unreachable.
    pub paths: Vec<(PeerKey, Path)>,
}

/// A path as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    attrs: Arc<PathAttrs>,
    peer: u32,
    origination: Origination,
    reachable: bool,
}

/// A peer, stored once.
#[derive(Debug, Clone)]
struct PeerInfo {
    key: PeerKey,
    addr: IpAddr,
    id: Ipv4Addr,
    paths: usize,
}

/// The paths to one prefix, without a heap allocation for the usual one.
#[derive(Debug, Default)]
enum Paths {
    #[default]
    None,
    One(Stored),
    Many(Vec<Stored>),
}

impl std::ops::Deref for Paths {
    type Target = [Stored];

    fn deref(&self) -> &[Stored] {
        match self {
            Paths::None => &[],
            Paths::One(s) => std::slice::from_ref(s),
            Paths::Many(v) => v,
        }
    }
}

impl std::ops::DerefMut for Paths {
    fn deref_mut(&mut self) -> &mut [Stored] {
        match self {
            Paths::None => &mut [],
            Paths::One(s) => std::slice::from_mut(s),
            Paths::Many(v) => v,
        }
    }
}

impl Paths {
    fn push(&mut self, s: Stored) {
        *self = match std::mem::take(self) {
            Paths::None => Paths::One(s),
            Paths::One(a) => Paths::Many(vec![a, s]),
            Paths::Many(mut v) => {
                v.push(s);
                Paths::Many(v)
            }
        };
    }

    fn remove(&mut self, at: usize) {
        let mut v = std::mem::take(self).into_vec();
        if at < v.len() {
            v.remove(at);
        }
        *self = Paths::from_vec(v);
    }

    fn from_vec(mut v: Vec<Stored>) -> Paths {
        match v.len() {
            0 => Paths::None,
            1 => v.pop().map_or(Paths::None, Paths::One),
            _ => Paths::Many(v),
        }
    }

    fn into_vec(self) -> Vec<Stored> {
        match self {
            Paths::None => Vec::new(),
            Paths::One(s) => vec![s],
            Paths::Many(v) => v,
        }
    }
}

/// The paths to one prefix; the first `chosen` of them are the best and the
/// rest of the multipath set, in order.
#[derive(Debug, Default)]
struct Entry {
    paths: Paths,
    chosen: u8,
}

impl Entry {
    fn chosen_paths(&self) -> Vec<Stored> {
        self.paths[..usize::from(self.chosen)].to_vec()
    }
}

/// The Loc-RIB.
#[derive(Debug, Default)]
pub struct LocRib {
    /// A B-tree, not a hash table: no doubling (and copying) of a full
    /// table's worth of buckets as it grows, and prefixes come out in order.
    entries: BTreeMap<IpNet, Entry>,
    interner: AttrInterner,
    max_paths: usize,
    peers: Vec<PeerInfo>,
    peer_index: HashMap<PeerKey, u32>,
}

impl LocRib {
    /// An empty RIB; `max_paths` caps the multipath sets (1: no ECMP).
    pub fn new(max_paths: usize) -> LocRib {
        LocRib { max_paths: max_paths.clamp(1, usize::from(u8::MAX)), ..LocRib::default() }
    }

    /// The index of `peer`, registered (or refreshed) with the path's peer details.
    fn peer(&mut self, key: &PeerKey, path: &Path) -> u32 {
        if let Some(&i) = self.peer_index.get(key) {
            let info = &mut self.peers[i as usize];
            (info.addr, info.id) = (path.peer_addr, path.peer_id);
            return i;
        }
        let i = self.peers.len() as u32;
        self.peers.push(PeerInfo { key: key.clone(), addr: path.peer_addr, id: path.peer_id, paths: 0 });
        self.peer_index.insert(key.clone(), i);
        i
    }

    fn path(&self, s: &Stored) -> (PeerKey, Path) {
        let info = &self.peers[s.peer as usize];
        let path = Path {
            attrs: s.attrs.clone(),
            origination: s.origination,
            peer_addr: info.addr,
            peer_id: info.id,
            reachable: s.reachable,
        };
        (info.key.clone(), path)
    }

    /// Adds or replaces `peer`'s path to `prefix`.
    pub fn announce(&mut self, peer: &PeerKey, prefix: IpNet, path: Path) -> Option<BestChange> {
        let index = self.peer(peer, &path);
        let stored = Stored {
            attrs: self.interner.intern(path.attrs),
            peer: index,
            origination: path.origination,
            reachable: path.reachable,
        };
        let entry = self.entries.entry(prefix).or_default();
        let before = entry.chosen_paths();
        match entry.paths.iter_mut().find(|s| s.peer == index) {
            Some(slot) => *slot = stored,
            None => {
                entry.paths.push(stored);
                self.peers[index as usize].paths += 1;
            }
        }
        self.reselect(prefix, before)
    }

    /// Removes `peer`'s path to `prefix`, if it had one.
    pub fn withdraw(&mut self, peer: &PeerKey, prefix: IpNet) -> Option<BestChange> {
        let &index = self.peer_index.get(peer)?;
        let entry = self.entries.get_mut(&prefix)?;
        let at = entry.paths.iter().position(|s| s.peer == index)?;
        let before = entry.chosen_paths();
        entry.paths.remove(at);
        if at < usize::from(entry.chosen) {
            entry.chosen -= 1;
        }
        self.peers[index as usize].paths -= 1;
        self.reselect(prefix, before)
    }

    /// Removes every path from `peer` (its session went down).
    pub fn peer_down(&mut self, peer: &PeerKey) -> Vec<BestChange> {
        let prefixes = self.prefixes_from(peer);
        let changes = prefixes.into_iter().filter_map(|prefix| self.withdraw(peer, prefix)).collect();
        self.interner.collect_garbage();
        changes
    }

    /// The best path first, then the rest of the multipath set.
    pub fn best(&self, prefix: &IpNet) -> Vec<(PeerKey, Path)> {
        self.entries
            .get(prefix)
            .map_or_else(Vec::new, |e| e.paths[..usize::from(e.chosen)].iter().map(|s| self.path(s)).collect())
    }

    /// Every prefix with a best path, and that path.
    pub fn best_paths(&self) -> impl Iterator<Item = (IpNet, (PeerKey, Path))> + '_ {
        self.entries.iter().filter(|(_, e)| e.chosen > 0).map(|(prefix, e)| (*prefix, self.path(&e.paths[0])))
    }

    /// The prefixes `peer` has a path to.
    pub fn prefixes_from(&self, peer: &PeerKey) -> Vec<IpNet> {
        let Some(&index) = self.peer_index.get(peer) else { return Vec::new() };
        self.entries.iter().filter(|(_, e)| e.paths.iter().any(|s| s.peer == index)).map(|(k, _)| *k).collect()
    }

    /// How many paths `peer` has in the RIB.
    pub fn paths_from(&self, peer: &PeerKey) -> usize {
        self.peer_index.get(peer).map_or(0, |&i| self.peers[i as usize].paths)
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

    /// Re-runs the decision for `prefix`, moving the chosen paths to the
    /// front; reports a change from the chosen paths `before`.
    fn reselect(&mut self, prefix: IpNet, before: Vec<Stored>) -> Option<BestChange> {
        let entry = self.entries.get_mut(&prefix)?;
        // The common case in a full table: one path, nothing to compare.
        if entry.paths.len() == 1 {
            entry.chosen = u8::from(entry.paths[0].reachable);
            let changed = entry.paths[..usize::from(entry.chosen)] != before[..];
            return changed.then(|| BestChange { prefix, paths: self.best(&prefix) });
        }
        let entry = self.entries.get(&prefix)?;
        let candidates: Vec<Path> = entry.paths.iter().map(|s| self.path(s).1).collect();
        let order = select(&candidates, self.max_paths).map(|s| s.multipath).unwrap_or_default();
        let entry = self.entries.get_mut(&prefix)?;
        // Chosen paths first, in order; the others after, in their old order.
        let mut paths = std::mem::take(&mut entry.paths).into_vec();
        let mut reordered: Vec<Stored> = order.iter().map(|&i| paths[i].clone()).collect();
        let mut chosen_flags = vec![false; paths.len()];
        for &i in &order {
            chosen_flags[i] = true;
        }
        reordered.extend(paths.drain(..).zip(chosen_flags).filter(|(_, c)| !c).map(|(s, _)| s));
        entry.paths = Paths::from_vec(reordered);
        entry.chosen = order.len() as u8;
        let changed = entry.paths[..order.len()] != before[..];
        if entry.paths.is_empty() {
            self.entries.remove(&prefix);
        }
        changed.then(|| BestChange { prefix, paths: self.best(&prefix) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{AsPath, Origin};

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
        assert_eq!((rib.len(), rib.attribute_sets(), rib.paths_from(&key("a"))), (0, 0, 0));
    }

    #[test]
    fn multipath_sets_are_reported_and_kept_in_order() {
        let mut rib = LocRib::new(4);
        let p: IpNet = "198.18.1.0/24".parse().unwrap();
        for peer in [3, 1, 2] {
            rib.announce(&key(&peer.to_string()), p, path(peer, 100));
        }
        let best: Vec<PeerKey> = rib.best(&p).into_iter().map(|(k, _)| k).collect();
        assert_eq!(best, vec![key("1"), key("2"), key("3")], "equal paths, lowest router id first");
        assert_eq!(rib.withdraw(&key("2"), p).unwrap().paths.len(), 2);
    }
}
