//! The Loc-RIB's peers, stored once: a stored path names its peer by an
//! index here (`stored`), where the peer's key, address and identifier
//! are, with how many paths it holds. An index whose peer's last path went
//! is given to the next new peer (dynamic neighbours come and go).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use super::decision::Path;
use super::stored::MAX_PEERS;
use super::table::PeerKey;

/// A peer, stored once.
#[derive(Debug, Clone)]
pub(super) struct PeerInfo {
    pub(super) key: PeerKey,
    pub(super) addr: IpAddr,
    pub(super) id: Ipv4Addr,
    paths: usize,
}

/// The peers, by index and by key.
#[derive(Debug, Default)]
pub(super) struct Peers {
    infos: Vec<PeerInfo>,
    index: HashMap<PeerKey, u32>,
    /// Indices of peers whose last path went, for new peers.
    free: Vec<u32>,
    /// The peer of the last announcement: an UPDATE's prefixes come from one.
    last: Option<(PeerKey, u32)>,
}

impl Peers {
    /// Every peer, by index.
    pub(super) fn infos(&self) -> &[PeerInfo] {
        &self.infos
    }

    /// The index of `key`, registered (or refreshed) with the path's peer
    /// details; `None` when `MAX_PEERS` peers all hold paths.
    pub(super) fn register(&mut self, key: &PeerKey, path: &Path) -> Option<u32> {
        if let Some(i) = self.known(key) {
            let info = &mut self.infos[i as usize];
            (info.addr, info.id) = (path.peer_addr, path.peer_id);
            return Some(i);
        }
        let info = PeerInfo { key: key.clone(), addr: path.peer_addr, id: path.peer_id, paths: 0 };
        let i = match self.free.pop() {
            Some(i) => {
                self.infos[i as usize] = info;
                i
            }
            None => {
                // (A stored path has room for so many peers' indices, and
                // only peers holding paths keep one: out of reach.)
                let i = u32::try_from(self.infos.len()).ok().filter(|&i| i < MAX_PEERS)?;
                self.infos.push(info);
                i
            }
        };
        self.index.insert(key.clone(), i);
        Some(i)
    }

    /// The index of `key` if it is registered. An UPDATE's prefixes come
    /// from one peer: the last one asked for is recognised by its allocation
    /// (or both local), with no string hashed and no count touched.
    pub(super) fn known(&mut self, key: &PeerKey) -> Option<u32> {
        match &self.last {
            Some((last, i)) if last.as_ref().map(Arc::as_ptr) == key.as_ref().map(Arc::as_ptr) => Some(*i),
            _ => self.index.get(key).copied().inspect(|&i| self.last = Some((key.clone(), i))),
        }
    }

    /// The index of `key` if it is registered (no cache: a shared borrow).
    pub(super) fn get(&self, key: &PeerKey) -> Option<u32> {
        self.index.get(key).copied()
    }

    /// Peer `i` has one path more.
    pub(super) fn added(&mut self, i: u32) {
        self.infos[i as usize].paths += 1;
    }

    /// Peer `i` (`key`) has one path less; with none left, its index goes
    /// to the next new peer (no stored path names it any more).
    pub(super) fn removed(&mut self, i: u32, key: &PeerKey) {
        let info = &mut self.infos[i as usize];
        info.paths -= 1;
        if info.paths == 0 {
            self.index.remove(key);
            self.last = None;
            self.free.push(i);
        }
    }

    /// How many paths `key` holds.
    pub(super) fn paths(&self, key: &PeerKey) -> usize {
        self.get(key).map_or(0, |i| self.infos[i as usize].paths)
    }

    /// How many indices are given out or free.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.infos.len()
    }
}
