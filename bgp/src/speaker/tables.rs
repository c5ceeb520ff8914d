//! Whole tables for peers that come up together. A peer that comes up is
//! owed every best path it may have, then End-of-RIB (RFC 4724 §2), and a
//! reflector's clients come up by the hundred: walking, exporting and
//! encoding the Loc-RIB once per client was most of a 5,000-client
//! reflector's work, one cache miss after another on each source's
//! attributes. So a table owed to a peer that came up waits for the end of
//! its batch; then the members of an update group that came up in that
//! batch and have no paths of their own in the Loc-RIB (nothing to hold
//! back from them) are all handed the same table, walked, exported and
//! encoded once, as one shared buffer. Everything else goes each peer's
//! own way (`drain`): a peer alone in its batch, one with paths of its own,
//! a table larger than an outbox takes at once, a refresh.

use bytes::{Bytes, BytesMut};

use super::backlog::Owed;
use super::core::SpeakerCore;
use super::groups::GroupKey;
use super::send::{Before, DRAIN_CHUNK, encode_update};
use crate::packet::Context;
use crate::session::outbox::HIGH_WATER;

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
                [first, _, ..] => self.table_image(first, &key.tx),
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
                    octets = image.map_or(0, |i| i.len()),
                    "one table for peers that came up together"
                );
            }
        }
    }

    /// The update group of `peer` if its table can be the one its group's
    /// members that came up with it get: it is up, owed a whole table
    /// first (announcements only), and the Loc-RIB holds no path from it.
    fn shares_table(&self, peer: &str) -> Option<GroupKey> {
        let session = self.neighbors.get(peer)?;
        let shares = self.owes_fresh_table(peer) && self.up.contains(peer) && self.rib.paths_from(&session.key) == 0;
        shares.then(|| self.update_groups.group_of(peer).cloned()).flatten()
    }

    /// Whether the first thing `peer` is owed is a whole table, to announce
    /// only (nothing sent of it yet), with selection not deferred.
    fn owes_fresh_table(&self, peer: &str) -> bool {
        let front = self.backlogs.get(peer).and_then(|b| b.front());
        !self.deferral && matches!(front, Some(Owed::Table { after: None, withdraw_rest: false }))
    }

    /// The whole table as `first`'s update group gets it, encoded for `tx`;
    /// `None` when it is larger than an outbox takes at once (found a
    /// chunk of the walk at a time: no more of a large table is exported).
    fn table_image(&self, first: &str, tx: &Context) -> Option<Bytes> {
        // Every prefix takes four octets at least.
        if self.rib.len() * 4 > HIGH_WATER {
            return None;
        }
        let mut walk = self.rib.best_paths_after(None);
        let mut image = BytesMut::new();
        loop {
            let mut more = false;
            let chunk = walk.by_ref().take(DRAIN_CHUNK).inspect(|_| more = true);
            let out =
                self.exports_as(first, None, chunk.map(|(_, prefix, best)| (prefix, Some(best), Before::Unknown)));
            for update in out.updates(true) {
                image.extend_from_slice(&encode_update(&update, tx)?);
                if image.len() > HIGH_WATER {
                    return None;
                }
            }
            if !more {
                return Some(image.freeze());
            }
        }
    }

    /// Hands `peer` the table `image`, in place of the table it is owed
    /// first; whether its outbox took it.
    fn hand_table(&mut self, peer: &str, image: &Bytes) -> bool {
        let Some(session) = self.neighbors.get(peer).filter(|_| self.owes_fresh_table(peer)) else { return false };
        let fits = session.outbox.queued_bytes() + image.len() <= HIGH_WATER;
        if !fits || !(image.is_empty() || session.outbox.push(session.session, image.clone())) {
            return false;
        }
        if let Some(backlog) = self.backlogs.get_mut(peer) {
            backlog.pop();
        }
        true
    }
}
