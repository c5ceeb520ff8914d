//! The Loc-RIB's IPv4 prefixes: a B-tree per /16 of address space,
//! reached by indexing an array with the address's top 16 bits.
//!
//! One B-tree of a million prefixes costs an eight-level descent per
//! announcement; a /16 holds at most a few hundred prefixes of a real
//! table, so its tree is two or three levels deep and the array step is
//! one load. The array (64 Ki pointers, 512 KiB) is allocated when the
//! first IPv4 prefix arrives. Prefixes still come out in order: the buckets are in address
//! order, and within one the keys are.

use std::collections::BTreeMap;

/// An IPv4 prefix as a key: address and length in one integer, ordered as
/// `Ipv4Net` orders them (address, then length).
pub(super) type V4Key = u64;

/// A map from IPv4 prefix keys to `V`, bucketed by /16.
#[derive(Debug)]
pub(super) struct V4Index<V> {
    // Boxed: an 8-octet slot (a bare map is 24), so the array is 512 KiB.
    #[allow(clippy::box_collection)]
    buckets: Vec<Option<Box<BTreeMap<V4Key, V>>>>,
    len: usize,
}

impl<V> Default for V4Index<V> {
    fn default() -> Self {
        V4Index { buckets: Vec::new(), len: 0 }
    }
}

/// The bucket of `key`: the top 16 bits of its address.
fn bucket(key: V4Key) -> usize {
    ((key >> 24) & 0xffff) as usize
}

/// Runs `f` on `tree` with the index's count following; also tells
/// whether `f` left the tree empty (to be freed).
fn counted<V, T>(
    tree: &mut BTreeMap<V4Key, V>,
    len: &mut usize,
    f: impl FnOnce(&mut BTreeMap<V4Key, V>) -> T,
) -> (T, bool) {
    let before = tree.len();
    let out = f(tree);
    *len = *len + tree.len() - before;
    (out, tree.is_empty())
}

impl<V> V4Index<V> {
    /// The value at `key`.
    pub(super) fn get(&self, key: V4Key) -> Option<&V> {
        self.buckets.get(bucket(key))?.as_ref()?.get(&key)
    }

    /// Runs `f` on the B-tree that holds (or will hold) `key`, keeping the
    /// count right and dropping the tree if `f` leaves it empty.
    pub(super) fn with_bucket<T>(&mut self, key: V4Key, f: impl FnOnce(&mut BTreeMap<V4Key, V>) -> T) -> T {
        if self.buckets.is_empty() {
            self.buckets.resize_with(1 << 16, || None);
        }
        let slot = &mut self.buckets[bucket(key)];
        let (out, empty) = counted(slot.get_or_insert_with(Box::default), &mut self.len, f);
        if empty {
            *slot = None;
        }
        out
    }

    /// Like `with_bucket`, but only when the bucket of `key` holds
    /// something (a withdrawal has nothing to do elsewhere).
    pub(super) fn with_existing_bucket<T>(
        &mut self,
        key: V4Key,
        f: impl FnOnce(&mut BTreeMap<V4Key, V>) -> T,
    ) -> Option<T> {
        let slot = self.buckets.get_mut(bucket(key))?;
        let (out, empty) = counted(slot.as_mut()?, &mut self.len, f);
        if empty {
            *slot = None;
        }
        Some(out)
    }

    /// Every key and value, in key order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (V4Key, &V)> {
        self.buckets.iter().flatten().flat_map(|tree| tree.iter().map(|(k, v)| (*k, v)))
    }

    /// How many keys are held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Whether no key is held.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_out_in_order_across_buckets_and_empty_buckets_go() {
        let mut index = V4Index::default();
        let keys: [V4Key; 4] = [(0xf001_0000 << 8) | 24, (0x0a00_0000 << 8) | 8, (0x0a00_0000 << 8) | 16, 0];
        for key in keys {
            index.with_bucket(key, |tree| tree.insert(key, key));
        }
        assert_eq!(index.len(), 4);
        let mut sorted = keys;
        sorted.sort_unstable();
        assert_eq!(index.iter().map(|(k, _)| k).collect::<Vec<_>>(), sorted);
        assert_eq!(index.get(keys[1]), Some(&keys[1]));
        index.with_bucket(keys[0], |tree| tree.remove(&keys[0]));
        assert_eq!((index.len(), index.get(keys[0])), (3, None));
        let elsewhere = (0xc000_0200 << 8) | 24;
        assert_eq!(index.with_existing_bucket(elsewhere, |tree| tree.remove(&elsewhere)), None, "no bucket, no call");
        assert!(index.buckets[bucket(elsewhere)].is_none(), "and none made");
        assert!(index.buckets[bucket(keys[0])].is_none(), "an emptied bucket is freed");
        index.with_bucket(keys[1], |tree| tree.remove(&keys[1]));
        index.with_bucket(keys[2], |tree| tree.remove(&keys[2]));
        index.with_bucket(keys[3], |tree| tree.remove(&keys[3]));
        assert!(index.is_empty());
    }
}
