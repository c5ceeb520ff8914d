//! Sending: what each up peer is owed for a batch of best-path changes,
//! a whole table, or a message, handed to its outbox without waiting. An
//! update group's UPDATEs are encoded once for all its members; a member
//! whose outbox refuses (it is behind) keeps a [`Backlog`] of which
//! prefixes changed, sent from the Loc-RIB as it is then once the outbox
//! has drained (`PeerEvent::Drained`).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use ipnet::IpNet;
use smallvec::SmallVec;

use super::SpeakerEvent;
use super::backlog::{Owed, prefixes_of};
use super::core::{Output, SpeakerCore};
use crate::packet::{Context, Family, Message, PathAttrs, Update};
use crate::rib::decision::Origination;
use crate::rib::export::{Reflection, export};
use crate::rib::outbound::Outbound;
use crate::rib::policy::Policy;
use crate::rib::table::{BestChange, NextHops, PathRef};
use crate::session::outbox::HIGH_WATER;

/// Prefixes a table or a behind peer's backlog is exported at a time:
/// small enough that a drained outbox (empty, so it takes at least
/// `HIGH_WATER`) always takes a chunk's worth.
pub(super) const DRAIN_CHUNK: usize = 4096;

/// What exporting a path depends on besides its prefix: its attribute set
/// and source by address (the Loc-RIB shares equal sets, and a peer's
/// paths share its key), how it was learned, the source's identifier.
/// Compared by address only, nothing behind is read (a reflector's walk
/// meets a new source every few prefixes, a cache miss each): two equal
/// sets in two allocations only start two runs. Good while the paths an
/// export is given are borrowed.
#[derive(PartialEq, Eq)]
struct ExportRun {
    attrs: *const PathAttrs,
    from: Option<*const u8>,
    origination: Origination,
    peer_id: Ipv4Addr,
    /// The family: the next hop is exported differently for each.
    ipv4: bool,
}

impl ExportRun {
    fn of(prefix: &IpNet, best: PathRef<'_>) -> ExportRun {
        ExportRun {
            attrs: best.attrs.as_ptr(),
            from: best.from.as_ref().map(|k| Arc::as_ptr(k).cast::<u8>()),
            origination: best.origination,
            peer_id: best.peer_id,
            ipv4: prefix.addr().is_ipv4(),
        }
    }

    /// Whether `best` for `prefix` exports as the path this run started with.
    fn holds(&self, prefix: &IpNet, best: PathRef<'_>) -> bool {
        *self == ExportRun::of(prefix, best)
    }
}

/// The room for changes a batch keeps for the next one, at most.
const RECYCLED_CHANGES: usize = 4096;

/// The most best-path changes one `SpeakerEvent::Best` carries: 512 routes
/// of 56 octets are 28 KiB, under the size malloc maps on its own.
pub(super) const BEST_CHUNK: usize = 512;
const _: () = assert!(BEST_CHUNK * size_of::<(IpNet, NextHops)>() < crate::malloc::MMAP_THRESHOLD);

impl SpeakerCore {
    /// Best-path changes for the batch under way (sent by `flush`).
    pub(super) fn changed(&mut self, changes: Vec<BestChange>) {
        if !changes.is_empty() {
            if self.pending.is_empty() {
                self.pending = changes;
            } else {
                self.pending.extend(changes);
            }
            self.pending_pieces += 1;
        }
    }

    /// Sends every up peer the effect of the batch's changes, and felix the
    /// changes. Peers of one update group get the same bytes, encoded once;
    /// a member whose own path is among the changes gets its own
    /// computation (a path never goes back to the peer it came from).
    pub(super) fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut changes = std::mem::take(&mut self.pending);
        if std::mem::take(&mut self.pending_pieces) > 1 {
            changes = coalesce(changes, &mut self.coalesce_at);
        }
        // While selection is deferred, peers get the whole table at its end.
        if !self.deferral {
            self.export_changes(&changes);
        }
        // A message per chunk of the batch, not per change (a full table is
        // a million changes), and no larger: a chunk stays below the size
        // malloc maps on its own (`crate::malloc`), so each one reuses the
        // heap rather than having pages mapped, faulted in and unmapped.
        for chunk in changes.chunks(BEST_CHUNK) {
            let routes = chunk.iter().map(|c| (c.prefix, c.next_hops())).collect();
            self.emit(Output::Event(SpeakerEvent::Best(routes)));
        }
        // The next batch fills the same room (a batch is about a thousand
        // changes): not grown again from nothing, copied at each doubling.
        // A larger one (a peer's paths going) is let go.
        if changes.capacity() <= RECYCLED_CHANGES {
            changes.clear();
            self.pending = changes;
        }
    }

    fn export_changes(&mut self, changes: &[BestChange]) {
        // A member's own UPDATEs below do not change the groups.
        let plan = std::mem::take(&mut self.update_groups);
        // Only groups of two or more share their UPDATEs.
        let involves = plan.groups.iter().any(|(_, members)| members.len() > 1).then(|| involves(changes));
        for (key, members) in &plan.groups {
            if let [only] = members.as_slice() {
                // A group of one: its member's own export (which holds back
                // its own paths), not the group's and then its own again.
                let out = self.exports(only, items(changes));
                self.send_updates(only, out);
                continue;
            }
            let (Some(first), Some(involves)) = (members.first(), &involves) else { continue };
            // The group's UPDATEs, as a member no change involves gets them.
            let updates = self.exports_as(first, None, items(changes)).updates(false);
            // Which UPDATEs involve which members (mostly none or one: an UPDATE is one attribute set).
            let mut carries: HashMap<&str, Vec<usize>> = HashMap::new();
            for (i, u) in updates.iter().enumerate() {
                for source in prefixes_of(u).filter_map(|p| involves.get(&p)).flatten() {
                    let at = carries.entry(source).or_default();
                    if at.last() != Some(&i) {
                        at.push(i);
                    }
                }
            }
            let encoded: Vec<(usize, Bytes)> =
                updates.iter().enumerate().filter_map(|(i, u)| Some((i, encode_update(u, &key.tx)?))).collect();
            self.stats.group_updates_encoded.fetch_add(encoded.len() as u64, Ordering::Relaxed);
            // The batch's UPDATEs as one outbox entry, shared by the members
            // none of them involves: a slot per member, not one per UPDATE
            // (5,000 reflector clients held millions of slots otherwise).
            // Made when first wanted; a member it would take past the
            // high-water mark gets the UPDATEs one by one, up to the mark.
            let size: usize = encoded.iter().map(|(_, b)| b.len()).sum();
            let mut joined: Option<Bytes> = None;
            for member in members {
                let Some(session) = self.neighbors.get(member.as_str()) else { continue };
                let own: &[usize] = carries.get(member.as_str()).map_or(&[], Vec::as_slice);
                let theirs = encoded.iter().filter(|(i, _)| !own.contains(i));
                let whole = own.is_empty() && encoded.len() > 1 && session.outbox.queued_bytes() + size <= HIGH_WATER;
                let pushed = if self.owes(member) {
                    0
                } else if whole {
                    let joined = joined.get_or_insert_with(|| {
                        let mut all = BytesMut::with_capacity(size);
                        encoded.iter().for_each(|(_, b)| all.extend_from_slice(b));
                        all.freeze()
                    });
                    if session.outbox.push(session.session, joined.clone()) { encoded.len() } else { 0 }
                } else {
                    session.outbox.push_all(session.session, theirs.clone().map(|(_, b)| b))
                };
                self.stats.group_updates_sent.fetch_add(pushed as u64, Ordering::Relaxed);
                if pushed < theirs.clone().count() {
                    let rest = theirs.skip(pushed).flat_map(|(i, _)| prefixes_of(&updates[*i]));
                    self.backlogs.entry(member.clone()).or_default().prefixes(rest);
                }
                if !own.is_empty() {
                    // The UPDATEs that involve it, made for it alone.
                    let mine: foldhash::HashSet<IpNet> = own.iter().flat_map(|&i| prefixes_of(&updates[i])).collect();
                    let its: Vec<BestChange> = changes.iter().filter(|c| mine.contains(&c.prefix)).cloned().collect();
                    let its = self.exports(member, items(&its));
                    self.send_updates(member, its);
                }
            }
        }
        self.update_groups = plan;
    }

    /// Sends `peer` every best path it may have, then End-of-RIB; with
    /// `withdraw_rest`, withdraws the prefixes it may no longer have.
    pub(super) fn send_table(&mut self, peer: &str, withdraw_rest: bool) {
        self.owe_table(peer, withdraw_rest);
        self.drain(peer);
    }

    /// `peer` is owed the table, then End-of-RIB (sent by `drain`).
    pub(super) fn owe_table(&mut self, peer: &str, withdraw_rest: bool) {
        // RFC 4724 §2: End-of-RIB for every family the session carries.
        let families = self.negotiated(peer).map(|n| n.families.clone());
        let backlog = self.backlogs.entry(peer.to_string()).or_default();
        backlog.table(withdraw_rest);
        for family in families.unwrap_or_else(|| vec![Family::IPV4_UNICAST]) {
            backlog.message(Message::Update(Update::end_of_rib(family)));
        }
    }

    /// Whether `peer` is owed something already (new changes wait behind it).
    fn owes(&self, peer: &str) -> bool {
        self.backlogs.get(peer).is_some_and(|b| !b.is_empty())
    }

    /// Queues `out`'s UPDATEs for `peer`, behind its backlog if it has one.
    fn send_updates(&mut self, peer: &str, out: Outbound) {
        let remembered = out.of_shared();
        let updates = out.updates(false);
        let refused = if self.owes(peer) { Some(0) } else { self.push_updates(peer, &updates, remembered) };
        if let Some(i) = refused {
            self.backlogs.entry(peer.to_string()).or_default().prefixes(updates[i..].iter().flat_map(prefixes_of));
        }
    }

    /// Queues a message for `peer` after everything owed to it already.
    pub(super) fn send_message(&mut self, peer: &str, message: Message) {
        let backlog = self.backlogs.entry(peer.to_string()).or_default();
        let waiting = !backlog.is_empty();
        backlog.message(message);
        if !waiting {
            self.drain(peer);
        }
    }

    /// Encodes `updates` for `peer` and hands them to its outbox; returns
    /// the index of the first one refused (that one and the rest are not queued).
    fn push_updates(&self, peer: &str, updates: &[Update], remembered: bool) -> Option<usize> {
        let session = self.neighbors.get(peer)?;
        let tx = session.negotiated.as_ref().map(|n| n.tx())?;
        // Only UPDATEs of remembered (interned) sets are remembered encoded:
        // others are new allocations each time, never found again.
        let encode = |u: &Update| {
            if remembered { self.export_memo.encoded(u, tx, || encode_update(u, &tx)) } else { encode_update(u, &tx) }
        };
        let encoded: Vec<(usize, Bytes)> =
            updates.iter().enumerate().filter_map(|(i, u)| Some((i, encode(u)?))).collect();
        let pushed = session.outbox.push_all(session.session, encoded.iter().map(|(_, b)| b));
        encoded.get(pushed).map(|(i, _)| *i)
    }

    /// Works through what `peer` is owed until its outbox refuses more (the
    /// rest waits for `PeerEvent::Drained`) or nothing is owed.
    pub(super) fn drain(&mut self, peer: &str) {
        if !self.up.contains(peer) || self.deferral {
            return;
        }
        let Some(mut backlog) = self.backlogs.remove(peer) else { return };
        while let Some(owed) = backlog.front_mut() {
            // What the outbox refused (to go again first), or `None` when `owed` is paid.
            let refused: Option<Vec<IpNet>> = match owed {
                Owed::Prefixes(set) => {
                    let chunk: Vec<IpNet> = std::iter::from_fn(|| set.pop_first()).take(DRAIN_CHUNK).collect();
                    let items = chunk.iter().map(|p| (*p, self.rib.best_path(p), Before::Unknown));
                    let out = self.exports(peer, items);
                    let remembered = out.of_shared();
                    let updates = out.updates(false);
                    match self.push_updates(peer, &updates, remembered) {
                        Some(i) => Some(updates[i..].iter().flat_map(prefixes_of).collect()),
                        None if set.is_empty() => None,
                        None => continue,
                    }
                }
                Owed::Table { after, withdraw_rest } => {
                    // One walk of the Loc-RIB for as long as the outbox takes it.
                    let withdraw_rest = *withdraw_rest;
                    let mut rest = self.rib.best_paths_after(*after);
                    loop {
                        let mut last = None;
                        let chunk = rest.by_ref().take(DRAIN_CHUNK).inspect(|(at, ..)| last = Some(*at));
                        let out = self.exports(peer, chunk.map(|(_, p, best)| (p, Some(best), Before::Unknown)));
                        let Some(last) = last else { break None };
                        *after = Some(last);
                        let remembered = out.of_shared();
                        let updates = out.updates(!withdraw_rest);
                        if let Some(i) = self.push_updates(peer, &updates, remembered) {
                            break Some(updates[i..].iter().flat_map(prefixes_of).collect());
                        }
                    }
                }
                Owed::Message(message) => {
                    let Some(session) = self.neighbors.get(peer) else { break };
                    let tx = session.negotiated.as_ref().map(|n| n.tx()).unwrap_or_default();
                    if encode(message, &tx).is_some_and(|bytes| !session.outbox.push_control(session.session, bytes)) {
                        break;
                    }
                    None
                }
            };
            match refused {
                Some(prefixes) => {
                    backlog.requeue(prefixes);
                    break;
                }
                None => backlog.pop(),
            }
        }
        if !backlog.is_empty() {
            self.backlogs.insert(peer.to_string(), backlog);
        }
    }

    /// What `peer` gets for each (prefix, best path or none, what it may
    /// hold from before): withdrawals, and announcements grouped by
    /// attribute set, per family. Each family goes only to a peer whose
    /// session carries it (RFC 4760 §8: an IPv6-only session gets no IPv4).
    pub(super) fn exports<'a>(
        &self,
        peer: &str,
        items: impl Iterator<Item = (IpNet, Option<PathRef<'a>>, Before<'a>)>,
    ) -> Outbound {
        self.exports_as(peer, Some(peer), items)
    }

    /// `exports` under `peer`'s export configuration, holding back the
    /// paths that came from `own` (none: as for a peer that sent none of them).
    pub(super) fn exports_as<'a>(
        &self,
        peer: &str,
        own: Option<&str>,
        items: impl Iterator<Item = (IpNet, Option<PathRef<'a>>, Before<'a>)>,
    ) -> Outbound {
        let Some(session) = self.neighbors.get(peer) else { return Outbound::default() };
        let neighbor = &session.neighbor;
        let families = session.negotiated.as_ref().map_or(&[Family::IPV4_UNICAST][..], |n| n.families.as_slice());
        let carries = |prefix: &IpNet| {
            families.contains(if prefix.addr().is_ipv6() { &Family::IPV6_UNICAST } else { &Family::IPV4_UNICAST })
        };
        // Unless the policy looks at the prefix, a path's outcome is the same for every
        // prefix: a run of prefixes sharing one (a full table's usual order) is exported
        // once, and so is a run of the paths they had before; and it is remembered
        // for the next peer with the same terms (`memo`).
        let policy = neighbor.export_policy.as_ref();
        let per_prefix = policy.is_some_and(Policy::depends_on_prefix);
        let terms = self.export_memo.terms(&neighbor.export, policy);
        let mut out = if per_prefix { Outbound::default() } else { Outbound::of_shared_sets() };
        let export_to = |prefix: &IpNet, best: PathRef<'a>| {
            // Never back to the peer it came from.
            if own.is_some() && best.from.as_deref() == own {
                return None;
            }
            let from_client =
                self.reflector.is_some() && best.from.as_ref().is_some_and(|f| self.rr_clients.contains(f));
            let reflection = self.reflector.as_deref().map(|reflector| Reflection { reflector, from_client });
            let made = || export(prefix, &best.path(), &neighbor.export, policy, reflection).ok();
            if per_prefix {
                return made().map(Arc::new);
            }
            self.export_memo.get_or(terms, best, from_client, prefix.addr().is_ipv4(), made)
        };
        let mut run: Option<(ExportRun, Option<Arc<PathAttrs>>, Vec<IpNet>)> = None;
        let mut before_run: Option<(ExportRun, bool)> = None;
        // Whether the peer holds something from us for `prefix`: a withdrawal is due.
        let mut held = |prefix: &IpNet, before: Before<'a>| match before {
            Before::Nothing => false,
            Before::Unknown => true,
            Before::Was(old) => match &before_run {
                Some((key, held)) if !per_prefix && key.holds(prefix, old) => *held,
                _ => {
                    let held = export_to(prefix, old).is_some();
                    before_run = Some((ExportRun::of(prefix, old), held));
                    held
                }
            },
        };
        for (prefix, best, before) in items {
            if !carries(&prefix) {
                continue;
            }
            if let (Some(best), Some((key, outcome, prefixes))) = (best, &mut run)
                && key.holds(&prefix, best)
            {
                match outcome {
                    Some(_) => prefixes.push(prefix),
                    None if held(&prefix, before) => out.withdraw(prefix),
                    None => {}
                }
                continue;
            }
            if let Some((_, Some(attrs), prefixes)) = run.take() {
                out.announce(attrs, prefixes);
            }
            let exported = best.and_then(|best| export_to(&prefix, best));
            match (&exported, best.filter(|_| !per_prefix)) {
                (Some(_), Some(best)) => run = Some((ExportRun::of(&prefix, best), exported, vec![prefix])),
                (None, Some(best)) => {
                    if held(&prefix, before) {
                        out.withdraw(prefix);
                    }
                    run = Some((ExportRun::of(&prefix, best), None, Vec::new()));
                }
                (Some(attrs), None) => out.announce(attrs.clone(), vec![prefix]),
                (None, None) => {
                    if held(&prefix, before) {
                        out.withdraw(prefix);
                    }
                }
            }
        }
        if let Some((_, Some(attrs), prefixes)) = run {
            out.announce(attrs, prefixes);
        }
        out
    }
}

/// What a peer may hold from us for a prefix, before a change.
#[derive(Debug, Clone, Copy)]
pub(super) enum Before<'a> {
    /// The prefix had no best path: nobody was sent it.
    Nothing,
    /// This best path: the peer holds it if the export let it through.
    Was(PathRef<'a>),
    /// Not known (what a backlog or a table sends): a withdrawal may be due.
    Unknown,
}

/// The export items of `changes`: each prefix with its best path now and before.
fn items(changes: &[BestChange]) -> impl Iterator<Item = (IpNet, Option<PathRef<'_>>, Before<'_>)> {
    changes.iter().map(|c| {
        (
            c.prefix,
            c.paths.first().map(PathRef::from),
            c.was.as_ref().map_or(Before::Nothing, |w| Before::Was(w.into())),
        )
    })
}

/// One change per prefix: its last state, with where its best path came
/// from before the first (a prefix that came and went within the batch is
/// no change at all).
/// `at` is scratch room kept between batches (a new map per batch, grown
/// from nothing and its pages faulted in, showed in a full table's profile).
fn coalesce(mut changes: Vec<BestChange>, at: &mut foldhash::HashMap<IpNet, usize>) -> Vec<BestChange> {
    // In place (a batch is up to a few hundred KiB: no second copy of it);
    // foldhash: seeded per process, a fraction of SipHash's cost per prefix.
    if at.capacity() > RECYCLED_CHANGES {
        *at = foldhash::HashMap::default();
    }
    at.clear();
    // changes[..kept] are the prefixes met so far, each in its last state.
    let mut kept = 0;
    for i in 0..changes.len() {
        match at.entry(changes[i].prefix) {
            std::collections::hash_map::Entry::Occupied(first) => {
                let j = *first.get();
                let was = changes[j].was.take();
                changes.swap(j, i);
                changes[j].was = was;
            }
            std::collections::hash_map::Entry::Vacant(new) => {
                new.insert(kept);
                // (A change is over 100 octets: a batch with no prefix twice
                // moves none of them.)
                if kept != i {
                    changes.swap(kept, i);
                }
                kept += 1;
            }
        }
    }
    changes.truncate(kept);
    changes.retain(|c| c.was.is_some() || !c.paths.is_empty());
    changes
}

/// The peers each change involves: where its new and its old best path
/// came from. Neither gets a group's UPDATE for it: its own path never goes
/// back to it, and it was never sent the old one. (Per prefix: one or two
/// names inline, no allocation; foldhash.)
fn involves(changes: &[BestChange]) -> foldhash::HashMap<IpNet, SmallVec<[&str; 2]>> {
    let mut involves: foldhash::HashMap<IpNet, SmallVec<[&str; 2]>> =
        foldhash::HashMapExt::with_capacity(changes.len());
    for c in changes {
        let sources = [c.paths.first(), c.was.as_ref()].map(|p| p.and_then(|(from, _)| from.as_deref()));
        for source in sources.into_iter().flatten() {
            let at = involves.entry(c.prefix).or_default();
            if !at.contains(&source) {
                at.push(source);
            }
        }
    }
    involves
}

/// One message in its wire form, or `None` (logged) if it cannot be encoded.
fn encode(message: &Message, tx: &Context) -> Option<Bytes> {
    wire(|buf| message.encode(tx, buf))
}

/// An UPDATE in its wire form (several messages if it does not fit one).
pub(super) fn encode_update(update: &Update, tx: &Context) -> Option<Bytes> {
    wire(|buf| update.encode(tx, buf).map(drop))
}

fn wire(write: impl FnOnce(&mut BytesMut) -> Result<(), crate::packet::EncodeError>) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    match write(&mut buf) {
        // A buffer that grew by doubling (an UPDATE of many prefixes is
        // several messages; a single one is sized before it is written):
        // what is queued for a peer keeps only its octets, not room never
        // written of more than a quarter of them.
        Ok(()) if buf.capacity() - buf.len() > buf.len() / 4 => Some(Bytes::copy_from_slice(&buf)),
        Ok(()) => Some(buf.freeze()),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a message for a peer");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rib::decision::Path;
    use crate::rib::table::{ChosenPaths, PeerKey};

    fn change(prefix: &str, via: Option<&str>, was: Option<&str>) -> BestChange {
        let paths: ChosenPaths = via
            .map(|peer| {
                let path = Path {
                    attrs: Arc::new(PathAttrs::default()),
                    origination: Origination::Ebgp,
                    peer_addr: "192.0.2.10".parse().unwrap(),
                    peer_id: "192.0.2.10".parse().unwrap(),
                    reachable: true,
                };
                (Some(Arc::from(peer)), path)
            })
            .into_iter()
            .collect();
        let was = was.and_then(|w| change(prefix, Some(w), None).paths.first().cloned());
        BestChange { prefix: prefix.parse().unwrap(), paths, was }
    }

    #[test]
    fn a_batch_keeps_each_prefix_s_last_state_and_where_its_best_came_from_at_the_start() {
        let batch = vec![
            change("240.0.0.0/24", Some("a"), None),
            change("240.0.1.0/24", Some("a"), Some("c")),
            change("240.0.0.0/24", Some("b"), Some("a")),
            // Came and went within the batch: nobody was sent it, nobody needs a withdrawal.
            change("240.0.2.0/24", Some("a"), None),
            change("240.0.2.0/24", None, Some("a")),
            // Went and came back.
            change("240.0.1.0/24", None, Some("a")),
            change("240.0.1.0/24", Some("b"), None),
        ];
        let out = coalesce(batch, &mut foldhash::HashMap::default());
        let name = |k: &PeerKey| k.as_deref().map(String::from);
        let summary: Vec<(String, Option<String>, Option<String>)> = out
            .iter()
            .map(|c| {
                let was = c.was.as_ref().and_then(|(p, _)| name(p));
                (c.prefix.to_string(), c.paths.first().and_then(|(p, _)| name(p)), was)
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("240.0.0.0/24".into(), Some("b".into()), None),
                ("240.0.1.0/24".into(), Some("b".into()), Some("c".into()))
            ]
        );
    }
}
