//! Whole tables for peers that come up together. A peer that comes up is
//! owed every best path it may have, then End-of-RIB (RFC 4724 §2), and a
//! reflector's clients come up by the hundred: walking, exporting and
//! encoding the Loc-RIB once per client was most of a 5,000-client
//! reflector's work, one cache miss after another on each source's
//! attributes. So a table owed to a peer that came up waits for the end of
//! its batch; then the members of an update group that came up in that
//! batch are all handed the same table, walked, exported and encoded once,
//! as one shared buffer. A member with paths of its own in the Loc-RIB
//! (its UPDATE came in the same batch, or it restarts with stale paths)
//! gets the buffer without the UPDATEs that carry them (a path never goes
//! back to the peer it came from): slices of it, no copy. Everything else
//! goes each peer's own way (`drain`): a peer alone of its group in its
//! batch, one whose table is framed by a refresh's BoRR and EoRR, a table
//! larger than an outbox takes at once.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use ipnet::IpNet;

use super::backlog::{Owed, prefixes_of};
use super::core::SpeakerCore;
use super::groups::GroupKey;
use super::send::{Before, DRAIN_CHUNK, encode_update};
use crate::packet::Context;
use crate::rib::table::PeerKey;
use crate::session::outbox::HIGH_WATER;

/// A table encoded once for an update group's members.
struct Image {
    bytes: Bytes,
    /// The UPDATEs in `bytes` that carry a member's own paths.
    cuts: Vec<Cut>,
    /// Which of them carry each member's, in order (a reflector's clients
    /// coming back together after a restart: thousands of members, each
    /// with cuts of its own).
    cuts_of: foldhash::HashMap<std::sync::Arc<str>, Vec<usize>>,
}

/// An UPDATE of an [`Image`] that carries paths of members.
struct Cut {
    /// Where it is in the image.
    at: Range<usize>,
    /// Its prefixes, each with its best path's source when that is a
    /// member with paths of its own.
    prefixes: Vec<(IpNet, PeerKey)>,
}

impl Cut {
    /// The prefixes `member` is still owed once this UPDATE is held back
    /// from it: those whose path is not its own.
    fn owed_to<'a>(&'a self, member: &'a str) -> impl Iterator<Item = IpNet> + 'a {
        self.prefixes.iter().filter(move |(_, from)| from.as_deref() != Some(member)).map(|(p, _)| *p)
    }
}

impl SpeakerCore {
    /// `peer` just came up: it is owed the table, sent at the end of the
    /// batch (`send_fresh_tables`).
    pub(super) fn send_table_at_end(&mut self, peer: &str) {
        self.owe_table(peer, false);
        self.fresh_tables.push(peer.to_string());
    }

    /// Sends the tables owed to the peers that came up in this batch.
    pub(super) fn send_fresh_tables(&mut self) {
        let mut together: Vec<(GroupKey, Vec<String>)> = Vec::new();
        let mut fresh = std::mem::take(&mut self.fresh_tables);
        // A peer that came up twice in the batch is owed one table.
        fresh.sort_unstable();
        fresh.dedup();
        for peer in fresh {
            match self.shares_table(&peer) {
                Some(key) => match together.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, members)) => members.push(peer),
                    None => together.push((key, vec![peer])),
                },
                None => self.drain(&peer),
            }
        }
        for (key, members) in together {
            let image = match members.as_slice() {
                [first, _, ..] => self.table_image(first, &members, &key.tx),
                _ => None,
            };
            let mut handed = 0;
            for member in &members {
                if let Some(image) = &image
                    && self.hand_table(member, image)
                {
                    handed += 1;
                }
                self.drain(member);
            }
            self.stats.tables_shared.fetch_add(handed, std::sync::atomic::Ordering::Relaxed);
            if handed > 0 {
                tracing::debug!(
                    peers = handed,
                    octets = image.map_or(0, |i| i.bytes.len()),
                    "one table for peers that came up together"
                );
            }
        }
    }

    /// The update group of `peer` if its table can be the one its group's
    /// members that came up with it get: it is up and owed a whole table
    /// first (announcements only).
    fn shares_table(&self, peer: &str) -> Option<GroupKey> {
        let shares = self.owes_fresh_table(peer) && self.up.contains(peer);
        shares.then(|| self.update_groups.group_of(peer).cloned()).flatten()
    }

    /// Whether the first thing `peer` is owed is a whole table, to announce
    /// only (nothing sent of it yet), with selection not deferred.
    fn owes_fresh_table(&self, peer: &str) -> bool {
        let front = self.backlogs.get(peer).and_then(|b| b.front());
        !self.deferral && matches!(front, Some(Owed::Table { after: None, withdraw_rest: false }))
    }

    /// The whole table as the update group of `members` gets it (nothing
    /// held back; `first`'s export), encoded for `tx`, with the UPDATEs
    /// that carry members' own paths marked; `None` when it is larger than
    /// an outbox takes at once (found a chunk of the walk at a time: no
    /// more of a large table is exported).
    fn table_image(&self, first: &str, members: &[String], tx: &Context) -> Option<Image> {
        // Every prefix takes four octets at least.
        if self.rib.len() * 4 > HIGH_WATER {
            return None;
        }
        let with_paths: foldhash::HashSet<&str> = members
            .iter()
            .filter(|m| self.neighbors.get(m.as_str()).is_some_and(|s| self.rib.paths_from(&s.key) > 0))
            .map(String::as_str)
            .collect();
        // The prefixes whose best path is a member's own, and whose.
        let mut own: foldhash::HashMap<IpNet, PeerKey> = foldhash::HashMap::default();
        let mut walk = self.rib.best_paths_after(None);
        let mut cuts = Vec::new();
        let mut cuts_of: foldhash::HashMap<std::sync::Arc<str>, Vec<usize>> = foldhash::HashMap::default();
        let mut bytes = BytesMut::new();
        loop {
            let mut more = false;
            let chunk = walk.by_ref().take(DRAIN_CHUNK).inspect(|(_, prefix, best)| {
                more = true;
                if !with_paths.is_empty() && best.from.as_deref().is_some_and(|from| with_paths.contains(from)) {
                    own.insert(*prefix, best.from.clone());
                }
            });
            let out =
                self.exports_as(first, None, chunk.map(|(_, prefix, best)| (prefix, Some(best), Before::Unknown)));
            for update in out.updates(true) {
                let start = bytes.len();
                bytes.extend_from_slice(&encode_update(&update, tx)?);
                if bytes.len() > HIGH_WATER {
                    return None;
                }
                if !own.is_empty() && prefixes_of(&update).any(|p| own.contains_key(&p)) {
                    let prefixes: Vec<(IpNet, PeerKey)> =
                        prefixes_of(&update).map(|p| (p, own.get(&p).cloned().flatten())).collect();
                    for member in prefixes.iter().filter_map(|(_, from)| from.clone()) {
                        let at = cuts_of.entry(member).or_default();
                        if at.last() != Some(&cuts.len()) {
                            at.push(cuts.len());
                        }
                    }
                    cuts.push(Cut { at: start..bytes.len(), prefixes });
                }
            }
            if !more {
                return Some(Image { bytes: bytes.freeze(), cuts, cuts_of });
            }
        }
    }

    /// Hands `peer` the table `image` less the UPDATEs that carry its own
    /// paths, in place of the table it is owed first; whether its outbox
    /// took it. What those UPDATEs carry from others is owed to it next.
    fn hand_table(&mut self, peer: &str, image: &Image) -> bool {
        let Some(session) = self.neighbors.get(peer).filter(|_| self.owes_fresh_table(peer)) else { return false };
        let cuts: Vec<&Cut> =
            image.cuts_of.get(peer).map_or(Vec::new(), |at| at.iter().map(|&i| &image.cuts[i]).collect());
        // The image between the UPDATEs held back (shared bytes, no copy).
        let end = image.bytes.len();
        let mut pieces = Vec::with_capacity(cuts.len() + 1);
        let mut from = 0;
        for at in cuts.iter().map(|c| c.at.clone()).chain(std::iter::once(end..end)) {
            if at.start > from {
                pieces.push(image.bytes.slice(from..at.start));
            }
            from = at.end;
        }
        let size: usize = pieces.iter().map(Bytes::len).sum();
        // What fits is taken whole: the outbox refuses only past the mark.
        let fits = !session.outbox.is_behind() && session.outbox.queued_bytes() + size <= HIGH_WATER;
        if !fits || session.outbox.push_all(session.session, &pieces) < pieces.len() {
            return false;
        }
        if let Some(backlog) = self.backlogs.get_mut(peer) {
            backlog.pop();
            backlog.requeue(cuts.iter().flat_map(|c| c.owed_to(peer)).collect());
        }
        true
    }
}
