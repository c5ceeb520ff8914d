//! The Loc-RIB: every path to every prefix, by peer, with the decision
//! process re-run for a prefix whenever one of its paths changes. Owned by
//! one task.
//!
//! Kept compact for full tables: a stored path is an interned attribute
//! set's address, a peer index, the origination and two flags packed in 12
//! octets (`stored`); the peers' addresses and identifiers live once in a
//! peer table (`peers`); the usual single path sits inline in its entry
//! (16 octets in all), two or more on the heap with the chosen ones in
//! front; IPv4 prefixes are keyed by one 8-octet integer rather than an
//! 18-octet `IpNet`, in a small hash table per /16 (`v4_index`) whose slot
//! is the prefix's (first) path with the key in its spare bits (12 octets
//! a slot; a prefix's further paths in a map beside); IPv6 ones by the
//! address's octets and the length in one array, in chunks found through
//! a hash table (`v6_index`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use smallvec::SmallVec;

use super::decision::{Origination, Path, select};
use super::entries::{Entries, Entry, EntryRef, ManyPaths, V4Paths};
use super::peers::{PeerInfo, Peers};
pub use super::stored::AttrsRef;
use super::stored::{MAX_PEERS, Stored};
use super::v4_index::V4Key;
use super::v6_index::{Cursor, V6Index, V6Key};
use crate::packet::{AttrInterner, MpNextHop, PathAttrs};

/// Who a path came from: a peer's name, or `None` for locally originated paths.
pub type PeerKey = Option<Arc<str>>;

/// The chosen paths of a prefix: the best first, then the rest of the
/// multipath set. One path (the usual case) sits inline: a full table's
/// million changes cost no allocation each.
pub type ChosenPaths = SmallVec<[(PeerKey, Path); 1]>;

/// A change of best path (or multipath set) for a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BestChange {
    /// The prefix.
    pub prefix: IpNet,
    /// The new best path first, then the rest of the multipath set; empty
    /// when the prefix is now unreachable.
    pub paths: ChosenPaths,
    /// The prefix's best path before, or `None` when it had none: a peer
    /// needs a withdrawal only if it was sent that path (not its source,
    /// not one the export rules withheld it from).
    pub was: Option<(PeerKey, Path)>,
}

/// The next hops to forward a prefix to: one per chosen path (ECMP).
pub type NextHops = SmallVec<[IpAddr; 1]>;

impl BestChange {
    /// The next hops of its chosen paths learned from peers (our own are
    /// not forwarded through anyone): NEXT_HOP for IPv4, MP_REACH_NLRI's
    /// global address for IPv6 (RFC 4760 §3, RFC 2545 §3). None when the
    /// prefix is gone or our own is best.
    pub fn next_hops(&self) -> NextHops {
        let hop = |(_, p): &(PeerKey, Path)| match (self.prefix, p.attrs.mp_next_hop.as_deref().copied()) {
            _ if p.origination == Origination::Local => None,
            (IpNet::V6(_), Some(MpNextHop::Ipv6 { global, .. })) => Some(IpAddr::V6(global)),
            (IpNet::V6(_), _) => None,
            (IpNet::V4(_), _) => p.attrs.next_hop.map(IpAddr::V4),
        };
        match self.paths.as_slice() {
            // The usual one path, built in place (collecting into the
            // SmallVec, a push loop, was most of the cost of the routes
            // sent to felix: a full table is a million of them).
            [one] => hop(one).map_or_else(NextHops::new, |h| NextHops::from_buf([h])),
            paths => paths.iter().filter_map(hop).collect(),
        }
    }
}

/// A path as the Loc-RIB holds it, borrowed: no reference count taken (a
/// walk of a reflector's table for each client that comes up took two per
/// prefix, a cache miss on each source's key and attribute set).
#[derive(Debug, Clone, Copy)]
pub struct PathRef<'a> {
    /// Who it came from: the Loc-RIB keeps one allocation per peer name,
    /// so the paths of one peer share it.
    pub from: &'a PeerKey,
    /// The path attributes.
    pub attrs: AttrsRef<'a>,
    /// Local, eBGP or iBGP.
    pub origination: Origination,
    /// The peer's address (unspecified for local paths).
    pub peer_addr: IpAddr,
    /// The peer's BGP identifier (ours for local paths).
    pub peer_id: Ipv4Addr,
    /// Whether the next hop is reachable.
    pub reachable: bool,
}

impl PathRef<'_> {
    /// The path as `Path`.
    pub fn path(self) -> Path {
        Path {
            attrs: self.attrs.to_arc(),
            origination: self.origination,
            peer_addr: self.peer_addr,
            peer_id: self.peer_id,
            reachable: self.reachable,
        }
    }

    /// The path as `Path`, with its source.
    pub fn to_owned(self) -> (PeerKey, Path) {
        (self.from.clone(), self.path())
    }
}

impl<'a> From<&'a (PeerKey, Path)> for PathRef<'a> {
    fn from((from, path): &'a (PeerKey, Path)) -> PathRef<'a> {
        PathRef {
            from,
            attrs: AttrsRef::from(&path.attrs),
            origination: path.origination,
            peer_addr: path.peer_addr,
            peer_id: path.peer_id,
            reachable: path.reachable,
        }
    }
}

/// Where a walk of the Loc-RIB stopped (`LocRib::best_paths_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walk(Place);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// After this IPv4 prefix.
    V4(V4Key),
    /// Among the IPv6 prefixes.
    V6(Cursor),
}

/// An IPv4 prefix as a key: address and length in one integer,
/// ordered as `Ipv4Net` orders them (address, then length).
fn v4_key(net: &Ipv4Net) -> V4Key {
    (u64::from(u32::from(net.addr())) << 8) | u64::from(net.prefix_len())
}

fn v4_net(key: V4Key) -> IpNet {
    // The key came from a valid prefix: its length is at most 32.
    let len = (key & 0xff) as u8;
    IpNet::V4(Ipv4Net::new(Ipv4Addr::from((key >> 8) as u32), len).unwrap_or_default())
}

fn v6_key(net: &Ipv6Net) -> V6Key {
    let mut key = [0; 17];
    key[..16].copy_from_slice(&net.addr().octets());
    key[16] = net.prefix_len();
    key
}

fn v6_net(key: V6Key) -> IpNet {
    let mut octets = [0; 16];
    octets.copy_from_slice(&key[..16]);
    // The key came from a valid prefix: its length is at most 128.
    IpNet::V6(Ipv6Net::new(Ipv6Addr::from(octets), key[16]).unwrap_or_default())
}

/// The Loc-RIB.
#[derive(Debug, Default)]
pub struct LocRib {
    /// A table per /16: no doubling (and copying) of a full table's worth
    /// of slots as it grows, only of one /16's; prefixes come out in order.
    v4: V4Paths,
    v6: V6Index<Entry>,
    interner: AttrInterner,
    max_paths: usize,
    peers: Peers,
}

/// The decision for a prefix's `paths`: its entry with the chosen paths in
/// front (`None` when no path is left).
fn settle(mut paths: Vec<Stored>, peers: &[PeerInfo], max_paths: usize) -> Option<Entry> {
    match paths.len() {
        0 => return None,
        1 => return paths.pop().map(Entry::One),
        _ => {}
    }
    let candidates: Vec<Path> = paths.iter().map(|s| path(peers, s).1).collect();
    let order = select(&candidates, max_paths).map(|s| s.multipath).unwrap_or_default();
    // Chosen paths first, in order; the others after, in their old order.
    let mut chosen_flags = vec![false; paths.len()];
    for &i in &order {
        chosen_flags[i] = true;
    }
    let mut reordered: Vec<Stored> = order.iter().map(|&i| paths[i].clone()).collect();
    reordered.extend(paths.drain(..).zip(chosen_flags).filter(|(_, c)| !c).map(|(s, _)| s));
    Some(Entry::Many(Box::new(ManyPaths { paths: reordered, chosen: order.len() as u8 })))
}

fn path_ref<'a>(peers: &'a [PeerInfo], s: &'a Stored) -> PathRef<'a> {
    let info = &peers[s.peer() as usize];
    PathRef {
        from: &info.key,
        attrs: s.attrs(),
        origination: s.origination(),
        peer_addr: info.addr,
        peer_id: info.id,
        reachable: s.reachable(),
    }
}

fn path(peers: &[PeerInfo], s: &Stored) -> (PeerKey, Path) {
    path_ref(peers, s).to_owned()
}

/// A prefix's new chosen paths, and its best before (if it had one).
type Changed = (ChosenPaths, Option<(PeerKey, Path)>);

/// What changed for a prefix: its chosen paths now, when they differ from
/// `before`.
fn change(entry: Option<EntryRef<'_>>, before: &[Stored], peers: &[PeerInfo]) -> Option<Changed> {
    let now = entry.map_or(&[][..], EntryRef::chosen);
    (now != before).then(|| {
        let paths = match now {
            // The usual single path, built in place.
            [one] => ChosenPaths::from_buf([path(peers, one)]),
            _ => now.iter().map(|s| path(peers, s)).collect(),
        };
        (paths, before.first().map(|s| path(peers, s)))
    })
}

/// Adds or replaces `stored`'s peer's path in `map` at `key`; the new
/// chosen paths if they changed. `added` tells whether the peer had no
/// path there before.
fn announce_in<K: Copy>(
    map: &mut impl Entries<K>,
    key: K,
    stored: Stored,
    peers: &[PeerInfo],
    max_paths: usize,
    added: &mut bool,
) -> Option<Changed> {
    let entry = match map.find(&key) {
        Ok(entry) => entry,
        Err(vacant) => {
            *added = true;
            let entry = map.insert_new(key, stored, vacant);
            return change(Some(entry), &[], peers);
        }
    };
    // The usual replacement: the one path, by the same peer.
    if let EntryRef::One(s) = entry
        && s.peer() == stored.peer()
    {
        let before = s.reachable().then(|| s.clone());
        if let Some(s) = map.one_mut(&key) {
            s.replace_path(stored);
        }
        return change(map.get(&key), before.as_slice(), peers);
    }
    let before = entry.chosen().to_vec();
    let mut paths = entry.paths().to_vec();
    match paths.iter_mut().find(|s| s.peer() == stored.peer()) {
        Some(slot) => *slot = stored,
        None => {
            *added = true;
            paths.push(stored);
        }
    }
    if let Some(settled) = settle(paths, peers, max_paths) {
        map.set(key, settled);
    }
    change(map.get(&key), &before, peers)
}

/// Removes `peer`'s path from `map` at `key`; `None` when it had none
/// there, else the new chosen paths if they changed.
fn withdraw_in<K: Copy>(
    map: &mut impl Entries<K>,
    key: &K,
    peer: u32,
    peers: &[PeerInfo],
    max_paths: usize,
) -> Option<Option<Changed>> {
    let entry = map.get(key)?;
    let at = entry.paths().iter().position(|s| s.peer() == peer)?;
    // The usual withdrawal: the prefix's one path goes, and the prefix with it.
    if let EntryRef::One(_) = entry {
        let before = match map.remove(key) {
            Some(Entry::One(s)) if s.reachable() => vec![s],
            _ => Vec::new(),
        };
        return Some(change(None, &before, peers));
    }
    let before = entry.chosen().to_vec();
    let mut paths = entry.paths().to_vec();
    paths.remove(at);
    match settle(paths, peers, max_paths) {
        Some(settled) => map.set(*key, settled),
        None => drop(map.remove(key)),
    }
    Some(change(map.get(key), &before, peers))
}

impl LocRib {
    /// An empty RIB; `max_paths` caps the multipath sets (1: no ECMP).
    pub fn new(max_paths: usize) -> LocRib {
        LocRib { max_paths: max_paths.clamp(1, usize::from(u8::MAX)), ..LocRib::default() }
    }

    fn entry(&self, prefix: &IpNet) -> Option<EntryRef<'_>> {
        match prefix {
            IpNet::V4(net) => self.v4.get(&v4_key(net)),
            IpNet::V6(net) => Entries::get(&self.v6, &v6_key(net)),
        }
    }

    /// Every prefix after `after` (from the first when `None`) and its
    /// entry, with where a walk resumes after each: IPv4 prefixes in
    /// order, then IPv6 ones in `v6_index`'s order.
    fn entries_after(&self, after: Option<Walk>) -> impl Iterator<Item = (Walk, IpNet, EntryRef<'_>)> + '_ {
        let (v4_after, v6_after) = match after {
            None => (Some(None), None),
            Some(Walk(Place::V4(key))) => (Some(Some(key)), None),
            Some(Walk(Place::V6(cursor))) => (None, Some(cursor)),
        };
        let v4 =
            v4_after.into_iter().flat_map(|a| self.v4.iter_after(a)).map(|(k, e)| (Walk(Place::V4(k)), v4_net(k), e));
        v4.chain(self.v6.iter_after(v6_after).map(|(c, k, e)| (Walk(Place::V6(c)), v6_net(*k), e.as_ref())))
    }

    fn entries(&self) -> impl Iterator<Item = (IpNet, EntryRef<'_>)> + '_ {
        self.entries_after(None).map(|(_, prefix, e)| (prefix, e))
    }

    /// Adds or replaces `peer`'s path to `prefix`.
    pub fn announce(&mut self, peer: &PeerKey, prefix: IpNet, path: Path) -> Option<BestChange> {
        let Some(index) = self.peers.register(peer, &path) else {
            tracing::error!(?peer, %prefix, "the Loc-RIB holds paths of {MAX_PEERS} peers: this path is left out");
            return None;
        };
        let stored = Stored::new(self.interner.intern(path.attrs), index, path.origination, path.reachable);
        let (peers, max_paths, mut added) = (self.peers.infos(), self.max_paths, false);
        let changed = match prefix {
            IpNet::V4(net) => announce_in(&mut self.v4, v4_key(&net), stored, peers, max_paths, &mut added),
            IpNet::V6(net) => announce_in(&mut self.v6, v6_key(&net), stored, peers, max_paths, &mut added),
        };
        if added {
            self.peers.added(index);
        }
        changed.map(|(paths, was)| BestChange { prefix, paths, was })
    }

    /// The RIB's shared copy of `attrs` (an equal set it holds, or `attrs`):
    /// a caller announcing many prefixes with one set interns it once, and
    /// `announce` then takes it as it is (a count taken and dropped per
    /// prefix otherwise).
    pub fn intern(&mut self, attrs: Arc<PathAttrs>) -> Arc<PathAttrs> {
        self.interner.intern(attrs)
    }

    /// Has the place of `prefix` fetched into the cache: a caller going
    /// through many prefixes calls this a few ahead of the one it
    /// announces or withdraws, so the memory access overlaps with work.
    pub fn prefetch(&self, prefix: &IpNet) {
        if let IpNet::V4(net) = prefix {
            self.v4.prefetch(v4_key(net));
        }
    }

    /// Removes `peer`'s path to `prefix`, if it had one.
    pub fn withdraw(&mut self, peer: &PeerKey, prefix: IpNet) -> Option<BestChange> {
        let index = self.peers.known(peer)?;
        let (peers, max_paths) = (self.peers.infos(), self.max_paths);
        let changed = match prefix {
            IpNet::V4(net) => withdraw_in(&mut self.v4, &v4_key(&net), index, peers, max_paths),
            IpNet::V6(net) => withdraw_in(&mut self.v6, &v6_key(&net), index, peers, max_paths),
        }?;
        self.peers.removed(index, peer);
        changed.map(|(paths, was)| BestChange { prefix, paths, was })
    }

    /// Removes up to `limit` of `peer`'s paths (its session went down),
    /// walking on from `after` (from the first prefix when `None`): the
    /// best-path changes, and where the next call goes on from (`None`:
    /// nothing of `peer`'s is left). A peer with a full table goes a chunk
    /// at a time, each chunk's changes sent before the next is made.
    pub fn peer_down_from(
        &mut self,
        peer: &PeerKey,
        after: Option<Walk>,
        limit: usize,
    ) -> (Vec<BestChange>, Option<Walk>) {
        let Some(index) = self.peers.get(peer) else { return (Vec::new(), None) };
        let mut last = None;
        let prefixes: Vec<IpNet> = self
            .entries_after(after)
            .filter(|(_, _, e)| e.paths().iter().any(|s| s.peer() == index))
            .take(limit)
            .map(|(walk, prefix, _)| {
                last = Some(walk);
                prefix
            })
            .collect();
        let full = prefixes.len() == limit;
        let changes = prefixes.into_iter().filter_map(|prefix| self.withdraw(peer, prefix)).collect();
        (changes, last.filter(|_| full && self.paths_from(peer) > 0))
    }

    /// The best path first, then the rest of the multipath set.
    pub fn best(&self, prefix: &IpNet) -> Vec<(PeerKey, Path)> {
        self.entry(prefix).map_or_else(Vec::new, |e| e.chosen().iter().map(|s| path(self.peers.infos(), s)).collect())
    }

    /// The best path to `prefix`, borrowed.
    pub fn best_path(&self, prefix: &IpNet) -> Option<PathRef<'_>> {
        Some(path_ref(self.peers.infos(), self.entry(prefix)?.chosen().first()?))
    }

    /// Every prefix with a best path, and that path.
    pub fn best_paths(&self) -> impl Iterator<Item = (IpNet, PathRef<'_>)> + '_ {
        self.best_paths_after(None).map(|(_, prefix, best)| (prefix, best))
    }

    /// Every prefix with a best path after `after` (from the first when
    /// `None`), and that path, with where the walk resumes after each. A
    /// walk resumed meets every prefix that was there when it started and
    /// is still there (it may miss ones added since, which are changes, and
    /// meet some IPv6 prefixes twice: `v6_index`).
    pub fn best_paths_after(&self, after: Option<Walk>) -> impl Iterator<Item = (Walk, IpNet, PathRef<'_>)> + '_ {
        self.entries_after(after)
            .filter_map(|(at, prefix, e)| Some((at, prefix, path_ref(self.peers.infos(), e.chosen().first()?))))
    }

    /// Whether a walk resumed after `after` goes on where it stopped: one
    /// among the IPv6 prefixes starts over, meeting prefixes again, when
    /// the index was packed meanwhile and the prefix it stopped at went.
    pub fn resumes(&self, after: Walk) -> bool {
        match after.0 {
            Place::V4(_) => true,
            Place::V6(cursor) => self.v6.resumes(&cursor),
        }
    }

    /// The prefixes `peer` has a path to.
    pub fn prefixes_from(&self, peer: &PeerKey) -> Vec<IpNet> {
        let Some(index) = self.peers.get(peer) else { return Vec::new() };
        self.entries().filter(|(_, e)| e.paths().iter().any(|s| s.peer() == index)).map(|(k, _)| k).collect()
    }

    /// `peer`'s path to `prefix`, if it has one.
    pub fn path_from(&self, peer: &PeerKey, prefix: &IpNet) -> Option<Path> {
        let index = self.peers.get(peer)?;
        let stored = self.entry(prefix)?.paths().iter().find(|s| s.peer() == index)?;
        Some(path(self.peers.infos(), stored).1)
    }

    /// The attribute set of `peer`'s path to `prefix`, if it has one.
    pub fn attrs_from(&self, peer: &PeerKey, prefix: &IpNet) -> Option<AttrsRef<'_>> {
        let index = self.peers.get(peer)?;
        Some(self.entry(prefix)?.paths().iter().find(|s| s.peer() == index)?.attrs())
    }

    /// How many paths `peer` has in the RIB.
    pub fn paths_from(&self, peer: &PeerKey) -> usize {
        self.peers.paths(peer)
    }

    /// How many prefixes have at least one path.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether the RIB holds no path.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Distinct attribute sets held.
    pub fn attribute_sets(&self) -> usize {
        self.interner.len()
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
    fn next_hops_are_the_chosen_paths_learned_from_peers() {
        let hop = |peer: u8| Path {
            attrs: Arc::new(PathAttrs {
                next_hop: Some(Ipv4Addr::new(192, 0, 2, peer)),
                ..(*path(peer, 100).attrs).clone()
            }),
            ..path(peer, 100)
        };
        let change = |prefix: &str, paths: Vec<Path>| BestChange {
            prefix: prefix.parse().unwrap(),
            paths: paths.into_iter().map(|p| (key("x"), p)).collect(),
            was: None,
        };
        let v4 = |a: u8| IpAddr::from([192, 0, 2, a]);
        assert_eq!(change("198.18.1.0/24", vec![hop(1)]).next_hops().as_slice(), [v4(1)]);
        assert_eq!(change("198.18.1.0/24", vec![hop(1), hop(2)]).next_hops().as_slice(), [v4(1), v4(2)], "multipath");
        assert!(change("198.18.1.0/24", vec![]).next_hops().is_empty(), "gone");
        let local = Path { origination: Origination::Local, ..hop(1) };
        assert!(change("198.18.1.0/24", vec![local.clone()]).next_hops().is_empty(), "our own");
        assert_eq!(change("198.18.1.0/24", vec![local, hop(2)]).next_hops().as_slice(), [v4(2)]);
        // IPv6: MP_REACH_NLRI's global address (RFC 2545 §3), never NEXT_HOP.
        let global: std::net::Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mp = Box::new(MpNextHop::Ipv6 { global, link_local: None });
        let v6 = Path { attrs: Arc::new(PathAttrs { mp_next_hop: Some(mp), ..(*hop(2).attrs).clone() }), ..hop(2) };
        assert_eq!(change("2001:db8:1::/48", vec![v6]).next_hops().as_slice(), [IpAddr::V6(global)]);
        assert!(change("2001:db8:1::/48", vec![hop(1)]).next_hops().is_empty(), "no IPv6 next hop");
    }

    #[test]
    fn a_peer_whose_last_path_went_gives_its_index_to_the_next_new_peer() {
        let mut rib = LocRib::new(4);
        let (p, q): (IpNet, IpNet) = ("198.18.1.0/24".parse().unwrap(), "198.18.2.0/24".parse().unwrap());
        rib.announce(&key("a"), p, path(1, 100));
        rib.announce(&key("b"), p, path(2, 100));
        rib.announce(&key("b"), q, path(2, 100));
        assert!(rib.withdraw(&key("b"), p).is_some());
        assert_eq!((rib.peers.len(), rib.paths_from(&key("b"))), (2, 1), "b still holds q");
        rib.withdraw(&key("b"), q);
        assert_eq!((rib.paths_from(&key("b")), rib.withdraw(&key("b"), q)), (0, None));
        // c takes b's index: its paths are told apart from a's, with c's own details.
        rib.announce(&key("c"), p, path(3, 50));
        assert_eq!(rib.peers.len(), 2, "no new index while one is free");
        let id = |peer| rib.path_from(&key(peer), &p).map(|path| path.peer_id);
        assert_eq!(
            (id("a"), id("c"), id("b")),
            (Some(Ipv4Addr::new(192, 0, 2, 1)), Some(Ipv4Addr::new(192, 0, 2, 3)), None)
        );
        assert_eq!((rib.paths_from(&key("c")), rib.paths_from(&key("a"))), (1, 1));
        // b comes back: a new index, as a new peer.
        rib.announce(&key("b"), q, path(2, 100));
        assert_eq!((rib.peers.len(), rib.paths_from(&key("b"))), (3, 1));
        assert_eq!(rib.best(&q)[0].0, key("b"));
    }

    #[test]
    fn best_path_follows_announcements_withdrawals_and_sessions() {
        let mut rib = LocRib::new(1);
        let p: IpNet = "198.18.1.0/24".parse().unwrap();
        let c = rib.announce(&key("a"), p, path(1, 100)).unwrap();
        assert_eq!((&c.paths[0].0, c.was.is_none()), (&key("a"), true));
        assert_eq!(rib.paths_from(&key("a")), 1);
        // A better path takes over; a worse one changes nothing.
        let c = rib.announce(&key("b"), p, path(2, 200)).unwrap();
        assert_eq!((&c.paths[0].0, c.was.map(|w| w.0)), (&key("b"), Some(key("a"))), "a's was the best before");
        assert_eq!(rib.announce(&key("c"), p, path(3, 50)), None);
        // Replacing b's path with a worse one hands the prefix back to a.
        assert_eq!(rib.announce(&key("b"), p, path(2, 10)).unwrap().paths[0].0, key("a"));
        // a's session ends: c is next (lp 50 > 10).
        let (changes, _) = rib.peer_down_from(&key("a"), None, usize::MAX);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].paths[0].0, key("c"));
        rib.withdraw(&key("c"), p);
        let last = rib.withdraw(&key("b"), p).unwrap();
        assert!(last.paths.is_empty() && last.was.is_some_and(|w| w.0 == key("b")), "unreachable now, b's before");
        assert_eq!((rib.is_empty(), rib.paths_from(&key("b"))), (true, 0));
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
        // A chunk at a time, each going on where the last stopped.
        let (mut after, mut changes) = (None, 0);
        for _ in 0..3 {
            let (chunk, next) = rib.peer_down_from(&key("a"), after, 400);
            (changes, after) = (changes + chunk.len(), next);
        }
        assert_eq!((changes, after, rib.len(), rib.paths_from(&key("a"))), (1000, None, 0, 0));
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

    proptest::proptest! {
        /// Any run of announcements (reachable or not), withdrawals and
        /// sessions ending, over prefixes of one /16 and IPv6, leaves each
        /// prefix with the chosen paths the decision process picks from its
        /// paths held apart, reports a change exactly when they change, and
        /// counts and walks what is held (the IPv4 tables' slots keep
        /// their keys and say rightly when a prefix has more paths).
        #[test]
        fn the_rib_holds_what_the_decision_process_picks(
            max_paths in 1usize..3,
            ops in proptest::collection::vec((0u8..4, 1u8..4, 0usize..14, 0u32..3, proptest::bool::weighted(0.8)), 1..120),
        ) {
            use std::collections::BTreeMap;
            // Twelve in one /16 (its table grows past its first 8 slots and
            // shrinks again), two IPv6.
            let v4 = ["198.18.0.0/16", "198.18.1.0/24", "198.18.1.0/25", "198.18.200.0/24"]
                .into_iter()
                .map(String::from)
                .chain((0..8).map(|i| format!("198.18.{}.0/24", 10 + 7 * i)));
            let prefixes: Vec<IpNet> =
                v4.chain(["2001:db8::/32".into(), "2001:db8::/48".into()]).map(|p| p.parse().unwrap()).collect();
            let mut rib = LocRib::new(max_paths);
            let mut model: BTreeMap<IpNet, BTreeMap<u8, Path>> = BTreeMap::new();
            let chosen = |paths: Option<&BTreeMap<u8, Path>>| -> Vec<(PeerKey, Path)> {
                let Some(paths) = paths else { return Vec::new() };
                let (peers, candidates): (Vec<u8>, Vec<Path>) = paths.iter().map(|(k, v)| (*k, v.clone())).unzip();
                let Some(s) = select(&candidates, max_paths) else { return Vec::new() };
                s.multipath.iter().map(|&i| (key(&peers[i].to_string()), candidates[i].clone())).collect()
            };
            for (op, peer, at, lp, reachable) in ops {
                let prefix = prefixes[at];
                let before = chosen(model.get(&prefix));
                let got = match op {
                    0 | 1 => {
                        let p = Path { reachable, ..path(peer, 100 + lp) };
                        model.entry(prefix).or_default().insert(peer, p.clone());
                        rib.announce(&key(&peer.to_string()), prefix, p)
                    }
                    2 => {
                        if let Some(paths) = model.get_mut(&prefix) {
                            paths.remove(&peer);
                        }
                        rib.withdraw(&key(&peer.to_string()), prefix)
                    }
                    _ => {
                        model.values_mut().for_each(|paths| { paths.remove(&peer); });
                        rib.peer_down_from(&key(&peer.to_string()), None, usize::MAX);
                        None
                    }
                };
                model.retain(|_, paths| !paths.is_empty());
                let now = chosen(model.get(&prefix));
                if op < 3 {
                    let want = (now != before).then(|| now.clone());
                    proptest::prop_assert_eq!(got.map(|c| c.paths.to_vec()), want, "the change of {}", prefix);
                }
                for p in &prefixes {
                    proptest::prop_assert_eq!(rib.best(p), chosen(model.get(p)), "the chosen paths of {}", p);
                }
                proptest::prop_assert_eq!(rib.len(), model.len());
                let multipath = model.iter().filter(|(p, paths)| matches!(p, IpNet::V4(_)) && paths.len() > 1).count();
                proptest::prop_assert_eq!(rib.v4.multipath(), multipath, "IPv4 prefixes with more paths, in the map beside");
                for peer in 1u8..4 {
                    let held = model.values().filter(|paths| paths.contains_key(&peer)).count();
                    proptest::prop_assert_eq!(rib.paths_from(&key(&peer.to_string())), held);
                }
                // IPv4 prefixes in order, then IPv6 ones in the index's order.
                let mut walked: Vec<IpNet> = rib.best_paths().map(|(p, _)| p).collect();
                let v4 = walked.iter().take_while(|p| matches!(p, IpNet::V4(_))).count();
                walked[v4..].sort();
                let want: Vec<IpNet> = model.keys().filter(|p| !chosen(model.get(p)).is_empty()).copied().collect();
                proptest::prop_assert_eq!(walked, want);
            }
        }
    }

    #[test]
    fn an_entry_with_one_path_takes_16_octets() {
        assert_eq!(std::mem::size_of::<Stored>(), 12);
        assert_eq!(std::mem::size_of::<Entry>(), 16);
        assert_eq!(std::mem::size_of::<Option<Stored>>(), 12, "an IPv4 table's slot, its key inside");
    }

    #[test]
    fn unreachable_paths_are_kept_but_not_chosen() {
        let mut rib = LocRib::new(1);
        let p: IpNet = "198.18.1.0/24".parse().unwrap();
        assert_eq!(rib.announce(&key("a"), p, Path { reachable: false, ..path(1, 100) }), None);
        assert_eq!((rib.len(), rib.best(&p).len()), (1, 0));
        assert_eq!(rib.announce(&key("a"), p, path(1, 100)).unwrap().paths.len(), 1);
        assert!(rib.announce(&key("a"), p, Path { reachable: false, ..path(1, 100) }).unwrap().paths.is_empty());
        assert_eq!(rib.withdraw(&key("a"), p), None, "it was not chosen: nothing changes");
        assert!(rib.is_empty());
    }

    #[test]
    fn ipv4_prefixes_come_out_in_order_and_then_ipv6_ones() {
        let mut rib = LocRib::new(1);
        for p in ["2001:db8::/32", "198.18.2.0/24", "198.18.1.0/25", "198.18.1.0/24", "10.0.0.0/8"] {
            rib.announce(&key("a"), p.parse().unwrap(), path(1, 100));
        }
        let order: Vec<String> = rib.best_paths().map(|(p, _)| p.to_string()).collect();
        assert_eq!(order, ["10.0.0.0/8", "198.18.1.0/24", "198.18.1.0/25", "198.18.2.0/24", "2001:db8::/32"]);
        assert_eq!(rib.prefixes_from(&key("a")).len(), 5);
    }

    #[test]
    fn a_walk_resumes_where_it_stopped_through_both_families() {
        let mut rib = LocRib::new(1);
        let all = ["10.0.0.0/8", "198.18.1.0/24", "2001:db8::/32", "2001:db8:1::/48", "3fff::/20"];
        for p in all {
            rib.announce(&key("a"), p.parse().unwrap(), path(1, 100));
        }
        let mut walked = Vec::new();
        let mut after = None;
        while let Some((at, prefix, _)) = rib.best_paths_after(after).next() {
            walked.push(prefix.to_string());
            after = Some(at);
        }
        assert_eq!(walked, all);
        // The prefix a walk stopped at may go meanwhile.
        let (at, _, _) = rib.best_paths_after(None).nth(2).unwrap();
        rib.withdraw(&key("a"), "2001:db8::/32".parse().unwrap());
        let rest: Vec<String> = rib.best_paths_after(Some(at)).map(|(_, p, _)| p.to_string()).collect();
        assert_eq!(rest, ["2001:db8:1::/48", "3fff::/20"]);
    }
}
