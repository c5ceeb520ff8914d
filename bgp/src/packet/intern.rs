//! Interning of path attributes: equal attribute sets share one `Arc`, so a
//! table of a million prefixes with a few hundred distinct sets stores each
//! set once.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;

use super::PathAttrs;

/// Sets held below which no collection is made.
const COLLECT_FROM: usize = 1024;

/// A set of shared attribute sets. Owned by whoever owns the table (one
/// RIB task); not a global.
///
/// A set no route uses any more (only the interner holds it) is dropped at
/// the next collection, which comes when the sets held have doubled since
/// the last one: a peer replacing its paths' attributes over and over holds
/// at most twice its live sets, at an amortised constant cost per set.
#[derive(Debug, Default)]
pub struct AttrInterner {
    /// The sets, found by their hash: one hash of a new set serves both to
    /// look for it and to put it in (a table of distinct sets, one per
    /// prefix, is mostly new ones).
    sets: HashTable<Arc<PathAttrs>>,
    hasher: foldhash::fast::RandomState,
    /// The last set asked for and its shared copy: the prefixes of one
    /// UPDATE arrive with one `Arc`, which then costs no hashing.
    last: Option<(Arc<PathAttrs>, Arc<PathAttrs>)>,
    /// Sets held when the next collection is due.
    collect_at: usize,
}

impl AttrInterner {
    /// The shared copy of `attrs`: the one already held when equal, else `attrs` itself.
    pub fn intern(&mut self, attrs: Arc<PathAttrs>) -> Arc<PathAttrs> {
        if let Some((asked, shared)) = &self.last {
            // The shared copy itself (a caller that interned an UPDATE's set
            // once, for its prefixes): handed back, its count untouched.
            if Arc::ptr_eq(shared, &attrs) {
                return attrs;
            }
            // The same allocation as last asked (held here, so unchanged): the same answer.
            if Arc::ptr_eq(asked, &attrs) {
                return shared.clone();
            }
        }
        let hash = self.hasher.hash_one(&*attrs);
        let shared = match self.sets.find(hash, |held| **held == *attrs) {
            Some(existing) => existing.clone(),
            None => {
                if self.sets.len() >= self.collect_at.max(COLLECT_FROM) {
                    self.collect_garbage();
                }
                let hasher = &self.hasher;
                self.sets.insert_unique(hash, attrs.clone(), |held| hasher.hash_one(&**held));
                attrs.clone()
            }
        };
        self.last = Some((attrs, shared.clone()));
        shared
    }

    /// Drops sets no route uses any more (only the interner holds them).
    pub fn collect_garbage(&mut self) {
        self.last = None;
        self.sets.retain(|a| Arc::strong_count(a) > 1);
        self.collect_at = 2 * self.sets.len();
    }

    /// How many distinct sets are held.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    /// Whether no set is held.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(med: u32) -> Arc<PathAttrs> {
        Arc::new(PathAttrs { med: Some(med), ..PathAttrs::default() })
    }

    #[test]
    fn equal_sets_share_one_copy_and_unused_ones_are_collected() {
        let mut interner = AttrInterner::default();
        let first = interner.intern(set(1));
        let asked = set(1);
        assert!(Arc::ptr_eq(&interner.intern(asked.clone()), &first), "equal content: the held copy");
        assert!(Arc::ptr_eq(&interner.intern(asked), &first), "asked again with the same allocation");
        // The shared copy itself comes back as it is: no count taken or dropped.
        let (held, counted) = (first.clone(), Arc::strong_count(&first));
        let back = interner.intern(held);
        assert!(Arc::ptr_eq(&back, &first) && Arc::strong_count(&first) == counted, "the shared copy, as given");
        drop(back);
        let other = interner.intern(set(2));
        assert_eq!(interner.len(), 2);
        drop((first, other));
        interner.collect_garbage();
        assert!(interner.is_empty(), "nothing uses them any more");
    }

    #[test]
    fn sets_replaced_over_and_over_are_collected_on_the_way() {
        let mut interner = AttrInterner::default();
        // 500 routes in use, each replaced by a new set 100 times.
        let mut live: Vec<Arc<PathAttrs>> = (0..500).map(|i| interner.intern(set(i))).collect();
        for round in 1..=100 {
            for (i, slot) in live.iter_mut().enumerate() {
                *slot = interner.intern(set(round * 1000 + i as u32));
            }
        }
        assert!(interner.len() <= 2 * COLLECT_FROM, "{} sets held for 500 in use", interner.len());
    }
}
