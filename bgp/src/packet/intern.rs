//! Interning of path attributes: equal attribute sets share one `Arc`, so a
//! table of a million prefixes with a few hundred distinct sets stores each
//! set once.

use std::collections::HashSet;
use std::sync::Arc;

use super::PathAttrs;

/// A set of shared attribute sets. Owned by whoever owns the table (one
/// RIB task); not a global.
#[derive(Debug, Default)]
pub struct AttrInterner {
    sets: HashSet<Arc<PathAttrs>>,
}

impl AttrInterner {
    /// The shared copy of `attrs`: the one already held when equal, else `attrs` itself.
    pub fn intern(&mut self, attrs: Arc<PathAttrs>) -> Arc<PathAttrs> {
        if let Some(existing) = self.sets.get(&attrs) {
            return existing.clone();
        }
        self.sets.insert(attrs.clone());
        attrs
    }

    /// Drops sets no route uses any more (only the interner holds them).
    pub fn collect_garbage(&mut self) {
        self.sets.retain(|a| Arc::strong_count(a) > 1);
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
