//! Exported attribute sets, remembered per export terms: a reflector sends
//! each client that comes up the table its group's other members were
//! sent, and exporting a path (a copy of its attributes, ORIGINATOR_ID and
//! CLUSTER_LIST stamped, RFC 4456 §8) was most of the cost of that table.
//!
//! What `export` makes of a path depends on the receiving side's terms
//! (`ExportPeer` and export policy), the path's attributes, whether its
//! source is a reflector client, how it was learned and the source's BGP
//! identifier, and the prefix's family (the next hop) — not on the prefix
//! itself unless the policy looks at it, and then nothing is remembered.
//! (The source's key is in the key too, though the rule that a path never
//! goes back to its source is applied before the memo.) An entry holds the
//! source's attribute set and key, so the addresses it is found by stay
//! theirs; the memos are emptied when they reach `CAP` entries (withdrawn
//! paths do not stay for ever, and a full table of distinct sets does not
//! keep a copy of each). When a memo filled up with few hits (a table of
//! distinct sets: every prefix its own, as tables mostly arrive), the memo
//! is passed by for the next `PASS_BY` exports, which are only interned.
//! Exported sets are interned: equal ones share one allocation, so the
//! UPDATEs being collected find a set by its address
//! (`Outbound::of_shared_sets`) and still put equal sets together.
//!
//! The UPDATEs of such a table are remembered in their wire form too: an
//! IPv4 UPDATE that only announces (a reflector client's block and its
//! routes under one attribute set) is the same bytes for every peer with
//! the same send context, found by its attribute set's address and checked
//! against its prefixes; only small ones (`SMALL` octets: a few prefixes),
//! so the memo holds at most `CAP` times that.

use std::cell::{Cell, RefCell};
use std::net::Ipv4Addr;
use std::sync::Arc;

use bytes::Bytes;

use crate::packet::{AttrInterner, Context, Ipv4Nlri, PathAttrs, Update};
use crate::rib::decision::Origination;
use crate::rib::export::ExportPeer;
use crate::rib::policy::Policy;
use crate::rib::table::{PathRef, PeerKey};

/// Entries the memos hold at most, all terms together, and the encoded
/// memo on its own (a 5,000-client reflector's sets fit).
const CAP: usize = 8192;

/// Exports that go past the memo after it filled with fewer than `CAP / 8`
/// hits; then it is tried again.
const PASS_BY: usize = 4 * CAP;

/// The largest UPDATE remembered in its wire form.
const SMALL: usize = 256;

/// Distinct terms remembered; more (neighbours reconfigured again and
/// again) and everything is dropped.
const MAX_TERMS: usize = 64;

/// A path as export sees it, by the addresses of what it shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Source {
    attrs: usize,
    from: usize,
    origination: Origination,
    peer_id: Ipv4Addr,
    from_client: bool,
    ipv4: bool,
}

/// What a path was exported as, with what keeps its `Source` addresses taken.
type Exported = (Arc<PathAttrs>, PeerKey, Option<Arc<PathAttrs>>);

/// An UPDATE as encoded, with its attribute set (keeping the address it is
/// found by) and prefixes.
type Encoded = (Arc<PathAttrs>, Vec<Ipv4Nlri>, Bytes);

/// The memo (see the module documentation): per terms, a few.
#[derive(Debug, Default)]
pub(super) struct ExportMemo {
    terms: RefCell<Vec<(Terms, foldhash::HashMap<Source, Exported>)>>,
    /// Hits since the memos were last emptied.
    hits: Cell<usize>,
    /// Exports still to go past the memos.
    passing_by: Cell<usize>,
    /// The exported sets, one allocation per distinct one.
    interner: RefCell<AttrInterner>,
    /// UPDATEs as encoded, by send context and attribute set.
    encoded: RefCell<foldhash::HashMap<(Context, usize), Encoded>>,
}

/// The receiving side's terms.
type Terms = (ExportPeer, Option<Policy>);

/// Which terms' memo (`ExportMemo::terms`).
#[derive(Debug, Clone, Copy)]
pub(super) struct TermsAt(usize);

impl ExportMemo {
    /// The memo of `peer` and `policy`'s terms, made if new.
    pub(super) fn terms(&self, peer: &ExportPeer, policy: Option<&Policy>) -> TermsAt {
        let mut all = self.terms.borrow_mut();
        if let Some(at) = all.iter().position(|((p, pol), _)| p == peer && pol.as_ref() == policy) {
            return TermsAt(at);
        }
        if all.len() >= MAX_TERMS {
            all.clear();
        }
        all.push(((peer.clone(), policy.cloned()), foldhash::HashMap::default()));
        TermsAt(all.len() - 1)
    }

    /// What `path` exports as under the terms `at`: remembered, or made by
    /// `export` and remembered.
    pub(super) fn get_or(
        &self,
        at: TermsAt,
        path: PathRef<'_>,
        from_client: bool,
        ipv4: bool,
        export: impl FnOnce() -> Option<PathAttrs>,
    ) -> Option<Arc<PathAttrs>> {
        let source = Source {
            attrs: path.attrs.as_ptr() as usize,
            from: path.from.as_ref().map_or(0, |k| Arc::as_ptr(k).cast::<u8>() as usize),
            origination: path.origination,
            peer_id: path.peer_id,
            from_client,
            ipv4,
        };
        let intern = |attrs| self.interner.borrow_mut().intern(Arc::new(attrs));
        if let Some(left) = self.passing_by.get().checked_sub(1) {
            self.passing_by.set(left);
            return export().map(intern);
        }
        let mut all = self.terms.borrow_mut();
        if let Some((_, _, exported)) = all.get(at.0).and_then(|(_, memo)| memo.get(&source)) {
            self.hits.set(self.hits.get() + 1);
            return exported.clone();
        }
        // The cap is for all terms together (their entries stay in place).
        if all.iter().map(|(_, memo)| memo.len()).sum::<usize>() >= CAP {
            all.iter_mut().for_each(|(_, memo)| memo.clear());
            if self.hits.replace(0) < CAP / 8 {
                self.passing_by.set(PASS_BY);
            }
        }
        let Some((_, memo)) = all.get_mut(at.0) else { return export().map(Arc::new) };
        let exported = export().map(intern);
        memo.insert(source, (path.attrs.to_arc(), path.from.clone(), exported.clone()));
        exported
    }

    /// `update` encoded for `tx`: remembered (an announcement of IPv4
    /// prefixes only), or made by `encode` (and remembered if so).
    pub(super) fn encoded(
        &self,
        update: &Update,
        tx: Context,
        encode: impl FnOnce() -> Option<Bytes>,
    ) -> Option<Bytes> {
        let plain = update.withdrawn.is_empty() && update.mp_reach.is_none() && update.mp_unreach.is_none();
        let Some(attrs) = update.attrs.as_ref().filter(|_| plain && !update.nlri.is_empty()) else { return encode() };
        let key = (tx, Arc::as_ptr(attrs) as usize);
        let mut memo = self.encoded.borrow_mut();
        if let Some((_, nlri, bytes)) = memo.get(&key)
            && *nlri == update.nlri
        {
            return Some(bytes.clone());
        }
        let bytes = encode()?;
        if bytes.len() > SMALL {
            return Some(bytes);
        }
        if memo.len() >= CAP {
            memo.clear();
        }
        memo.insert(key, (attrs.clone(), update.nlri.clone(), bytes.clone()));
        Some(bytes)
    }

    /// Forgets everything (the reflector role changed).
    pub(super) fn clear(&self) {
        self.terms.borrow_mut().clear();
        self.encoded.borrow_mut().clear();
        *self.interner.borrow_mut() = AttrInterner::default();
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::net::IpAddr;

    use super::*;
    use crate::packet::Nlri;
    use crate::rib::decision::Path;
    use crate::rib::export::NextHopMode;

    fn terms(peer_as: u32) -> ExportPeer {
        ExportPeer {
            local_as: 64512,
            peer_as,
            local_addr: IpAddr::from([192, 0, 2, 1]),
            next_hop: NextHopMode::Auto,
            prepend: 0,
            rr_client: true,
            long_lived: false,
            link_local: None,
        }
    }

    fn best(from: &str, med: u32) -> (PeerKey, Path) {
        let attrs = Arc::new(PathAttrs { med: Some(med), ..PathAttrs::default() });
        let path = Path {
            attrs,
            origination: Origination::Ibgp,
            peer_addr: IpAddr::from([192, 0, 2, 9]),
            peer_id: Ipv4Addr::new(192, 0, 2, 9),
            reachable: true,
        };
        (Some(Arc::from(from)), path)
    }

    #[test]
    fn a_path_is_exported_once_per_terms_source_and_family() {
        let memo = ExportMemo::default();
        let made = Cell::new(0);
        let export = |med: u32| {
            made.set(made.get() + 1);
            Some(PathAttrs { med: Some(med + 1), ..PathAttrs::default() })
        };
        let (client, other) = (memo.terms(&terms(64512), None), memo.terms(&terms(64513), None));
        let path = best("a", 10);
        let first = memo.get_or(client, (&path).into(), true, true, || export(10)).unwrap();
        let again = memo.get_or(client, (&path).into(), true, true, || export(99)).unwrap();
        assert!(Arc::ptr_eq(&first, &again) && made.get() == 1, "remembered: the same set, not made again");
        assert_eq!(memo.terms(&terms(64512), None).0, client.0, "the same terms find the same memo");
        // Other terms, family, client flag, or an equal set from another
        // allocation or source: made anew.
        memo.get_or(other, (&path).into(), true, true, || export(10));
        memo.get_or(client, (&path).into(), true, false, || export(10));
        memo.get_or(client, (&path).into(), false, true, || export(10));
        memo.get_or(client, (&best("a", 10)).into(), true, true, || export(10));
        memo.get_or(client, (&(Some(Arc::from("a")), path.1.clone())).into(), true, true, || export(10));
        assert_eq!(made.get(), 6);
        let equal = memo.get_or(client, (&best("c", 10)).into(), true, true, || export(10)).unwrap();
        assert!(Arc::ptr_eq(&first, &equal), "equal exports share one allocation");
        made.set(made.get() - 1);
        // Withheld is remembered too.
        assert_eq!(memo.get_or(client, (&best("b", 1)).into(), true, true, || None), None);
        memo.clear();
        let client = memo.terms(&terms(64512), None);
        memo.get_or(client, (&path).into(), true, true, || export(10));
        assert_eq!(made.get(), 7, "cleared");
    }

    #[test]
    fn small_announcements_are_encoded_once_per_context() {
        let memo = ExportMemo::default();
        let made = Cell::new(0);
        let encode = |n: usize| {
            made.set(made.get() + 1);
            Some(Bytes::from(vec![0; n]))
        };
        let nlri = |p: &str| vec![Nlri::new(p.parse::<ipnet::Ipv4Net>().unwrap())];
        let attrs = Arc::new(PathAttrs::default());
        let update = Update::announce(attrs.clone(), nlri("198.18.0.0/26"));
        let tx = Context::default();
        let first = memo.encoded(&update, tx, || encode(40)).unwrap();
        assert_eq!(memo.encoded(&update, tx, || encode(41)), Some(first), "remembered");
        assert_eq!(made.get(), 1);
        // Another context, other prefixes, a withdrawal, or too large: encoded anew.
        memo.encoded(&update, Context { four_octet_as: true, ..tx }, || encode(40));
        memo.encoded(&Update::announce(attrs.clone(), nlri("198.18.0.64/26")), tx, || encode(40));
        let mut withdraws = update.clone();
        withdraws.withdrawn = nlri("198.18.1.0/26");
        memo.encoded(&withdraws, tx, || encode(40));
        memo.encoded(&withdraws, tx, || encode(40));
        let big = Update::announce(attrs, nlri("198.18.2.0/26"));
        memo.encoded(&big, tx, || encode(SMALL + 1));
        memo.encoded(&big, tx, || encode(SMALL + 1));
        assert_eq!(made.get(), 7);
    }

    #[test]
    fn a_memo_that_mostly_misses_is_passed_by_for_a_while() {
        let memo = ExportMemo::default();
        let at = memo.terms(&terms(64512), None);
        let made = Cell::new(0);
        let export = || {
            made.set(made.get() + 1);
            Some(PathAttrs::default())
        };
        // A table of distinct sources fills the memo without a hit.
        let paths: Vec<_> = (0..=CAP as u32).map(|i| best("a", i)).collect();
        for path in &paths {
            memo.get_or(at, path.into(), true, true, export);
        }
        // Now passed by: an export is made again though remembered before,
        // and still interned (equal sets share one allocation).
        let (first, again) = (
            memo.get_or(at, (&paths[CAP]).into(), true, true, export),
            memo.get_or(at, (&paths[CAP]).into(), true, true, export),
        );
        assert_eq!(made.get(), CAP + 3);
        assert!(Arc::ptr_eq(&first.unwrap(), &again.unwrap()));
        // After `PASS_BY` exports the memo is tried again.
        for _ in 2..PASS_BY {
            memo.get_or(at, (&paths[0]).into(), true, true, export);
        }
        memo.get_or(at, (&paths[0]).into(), true, true, export);
        memo.get_or(at, (&paths[0]).into(), true, true, export);
        assert_eq!(made.get(), CAP + 1 + PASS_BY + 1, "remembered again");
    }

    #[test]
    fn withdrawn_paths_are_not_held_for_ever() {
        let memo = ExportMemo::default();
        let at = memo.terms(&terms(64512), None);
        for i in 0..3 * CAP as u32 {
            memo.get_or(at, (&best("a", i)).into(), true, true, || Some(PathAttrs::default()));
        }
        let held = memo.terms.borrow()[at.0].1.len();
        assert!(held <= CAP, "{held} entries held");
    }
}
