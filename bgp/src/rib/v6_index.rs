//! The Loc-RIB's IPv6 prefixes: records in fixed-size chunks, found through
//! a hash table of their positions.
//!
//! Why not a tree: IPv6 keys are 17 octets, and a B-tree search compares a
//! key at every step of a chain of dependent cache misses, root to leaf
//! (most of the speaker's time on an IPv6 full table). Here a prefix costs
//! one hash and, usually, two memory accesses: its position, its record.
//! Why not one hash table of records: it doubles, copying the whole table
//! (twice its memory while it does, at a million prefixes tens of MiB); a
//! chunk never moves, and only the positions (4 octets each) are copied.
//! The hash is foldhash with a secret drawn per index: a peer cannot
//! compute which prefixes collide without it (foldhash is fast rather than
//! strongly DoS-resistant; hashbrown's probing keeps a collision run short).
//!
//! Records come out in the order of their positions, and a record never
//! moves but when the index is packed, so a walk resumed after a position
//! (`Cursor`) meets every record that was there when it started and is
//! still there. A removed record's position is reused: a record placed
//! since may land before the cursor (the caller deals with changes on their
//! own). When the records fill less than a quarter of the positions, they
//! are packed again, in their order (the `generation` moves on, and a
//! cursor of before resumes after its record's new position, or starts
//! over if that record is gone: prefixes may then be met twice).

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// An IPv6 prefix as a key: the address's octets, then the length.
pub(super) type V6Key = [u8; 17];

/// Records per chunk (40 octets each for the Loc-RIB: 160 KiB).
const CHUNK: usize = 4096;

/// Records of one chunk; `None` where one was removed.
type Chunk<V> = Box<[Option<(V6Key, V)>]>;

/// Where a walk stopped: after the record at `at`, as the index was in
/// `generation`, which has `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cursor {
    generation: u64,
    at: u32,
    key: V6Key,
}

/// A map from IPv6 prefix keys to `V`.
#[derive(Debug)]
pub(super) struct V6Index<V> {
    /// The position of every record, by its key's hash.
    table: HashTable<u32>,
    /// The records.
    chunks: Vec<Chunk<V>>,
    /// Positions of removed records, to be used first.
    free: Vec<u32>,
    /// Positions handed out (the next fresh one).
    used: u32,
    len: usize,
    /// Times the records were packed.
    generation: u64,
    hasher: foldhash::fast::RandomState,
}

impl<V> Default for V6Index<V> {
    fn default() -> Self {
        V6Index {
            table: HashTable::new(),
            chunks: Vec::new(),
            free: Vec::new(),
            used: 0,
            len: 0,
            generation: 0,
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

fn split(at: u32) -> (usize, usize) {
    (at as usize / CHUNK, at as usize % CHUNK)
}

impl<V> V6Index<V> {
    fn hash(&self, key: &V6Key) -> u64 {
        self.hasher.hash_one(key)
    }

    fn record(&self, at: u32) -> Option<&(V6Key, V)> {
        let (chunk, slot) = split(at);
        self.chunks.get(chunk)?.get(slot)?.as_ref()
    }

    /// Whether the record at `at` has `key` (what the table compares).
    fn holds(chunks: &[Chunk<V>], at: u32, key: &V6Key) -> bool {
        let (chunk, slot) = split(at);
        chunks.get(chunk).and_then(|c| c.get(slot)).is_some_and(|r| r.as_ref().is_some_and(|(k, _)| k == key))
    }

    fn position(&self, key: &V6Key) -> Option<u32> {
        self.table.find(self.hash(key), |&at| Self::holds(&self.chunks, at, key)).copied()
    }

    /// The value at `key`.
    pub(super) fn get(&self, key: &V6Key) -> Option<&V> {
        self.record(self.position(key)?).map(|(_, v)| v)
    }

    /// The value at `key`, to change in place.
    pub(super) fn get_mut(&mut self, key: &V6Key) -> Option<&mut V> {
        let (chunk, slot) = split(self.position(key)?);
        self.chunks[chunk][slot].as_mut().map(|(_, v)| v)
    }

    /// Puts `value` at `key`, which holds nothing yet (the caller looked).
    pub(super) fn insert_new(&mut self, key: V6Key, value: V) -> &mut V {
        let at = match self.free.pop() {
            Some(at) => at,
            None => {
                if self.used as usize == self.chunks.len() * CHUNK {
                    self.chunks.push((0..CHUNK).map(|_| None).collect());
                }
                self.used += 1;
                self.used - 1
            }
        };
        if self.table.len() == self.table.capacity() {
            self.grow();
        }
        let (chunk, slot) = split(at);
        self.chunks[chunk][slot] = Some((key, value));
        let (hasher, chunks) = (&self.hasher, &self.chunks);
        self.table.insert_unique(hasher.hash_one(key), at, |&a| Self::rehash(hasher, chunks, a));
        self.len += 1;
        match &mut self.chunks[chunk][slot] {
            Some((_, value)) => value,
            None => unreachable!("insert_new filled this slot"),
        }
    }

    /// The hash of the record at `at`'s key.
    fn rehash(hasher: &foldhash::fast::RandomState, chunks: &[Chunk<V>], at: u32) -> u64 {
        let (c, s) = split(at);
        chunks[c][s].as_ref().map_or(0, |(k, _)| hasher.hash_one(k))
    }

    /// Twice the room for positions, filled by reading the records in
    /// their order: the table's own growth would visit them in its bucket
    /// order, a cache miss for every record of a full table.
    fn grow(&mut self) {
        let mut table = HashTable::with_capacity((self.table.len() * 2).max(64));
        for (c, chunk) in self.chunks.iter().enumerate() {
            for (s, record) in chunk.iter().enumerate() {
                if let Some((key, _)) = record {
                    let at = (c * CHUNK + s) as u32;
                    table
                        .insert_unique(self.hasher.hash_one(key), at, |&a| Self::rehash(&self.hasher, &self.chunks, a));
                }
            }
        }
        self.table = table;
    }

    /// Takes the value at `key` out.
    pub(super) fn remove(&mut self, key: &V6Key) -> Option<V> {
        let hash = self.hash(key);
        let chunks = &self.chunks;
        let (at, _) = self.table.find_entry(hash, |&at| Self::holds(chunks, at, key)).ok()?.remove();
        let (chunk, slot) = split(at);
        let (_, value) = self.chunks[chunk][slot].take()?;
        self.free.push(at);
        self.len -= 1;
        if self.len == 0 {
            *self = V6Index { hasher: self.hasher, generation: self.generation + 1, ..V6Index::default() };
        } else if self.len * 4 < self.used as usize && self.used as usize > CHUNK {
            self.pack();
        }
        Some(value)
    }

    /// Moves the records to the front, in their order, and frees the rest.
    fn pack(&mut self) {
        let chunks = std::mem::take(&mut self.chunks);
        let records = chunks.into_iter().flat_map(|c| c.into_vec().into_iter().flatten());
        let mut packed = V6Index {
            table: HashTable::with_capacity(self.len),
            hasher: self.hasher,
            generation: self.generation + 1,
            ..V6Index::default()
        };
        for (key, value) in records {
            packed.insert_new(key, value);
        }
        *self = packed;
    }

    /// Whether a walk resumed after `cursor` goes on where it stopped
    /// (else it starts over, and meets keys again).
    pub(super) fn resumes(&self, cursor: &Cursor) -> bool {
        cursor.generation == self.generation || self.position(&cursor.key).is_some()
    }

    /// Every key and value after `from` (from the first when `None`), with
    /// where a walk resumes after each.
    pub(super) fn iter_after(&self, from: Option<Cursor>) -> impl Iterator<Item = (Cursor, &V6Key, &V)> {
        let start = match from {
            Some(c) if c.generation == self.generation => c.at as usize + 1,
            Some(c) => self.position(&c.key).map_or(0, |at| at as usize + 1),
            None => 0,
        };
        let generation = self.generation;
        let chunks = self.chunks.iter().enumerate().skip(start / CHUNK);
        chunks
            .flat_map(|(c, chunk)| chunk.iter().enumerate().map(move |(s, r)| (c * CHUNK + s, r)))
            .skip_while(move |(at, _)| *at < start)
            .filter_map(move |(at, r)| {
                let (k, v) = r.as_ref()?;
                Some((Cursor { generation, at: at as u32, key: *k }, k, v))
            })
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
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn key(n: u32, len: u8) -> V6Key {
        let mut k = [0; 17];
        k[..2].copy_from_slice(&[0x3f, 0xff]);
        k[4..8].copy_from_slice(&n.to_be_bytes());
        k[16] = len;
        k
    }

    #[test]
    fn removed_positions_are_reused_and_an_emptied_index_frees_everything() {
        let mut index = V6Index::default();
        for n in 0..3 {
            index.insert_new(key(n, 48), n);
        }
        assert_eq!(index.remove(&key(1, 48)), Some(1));
        assert_eq!(index.get(&key(1, 48)), None);
        assert_eq!(index.remove(&key(1, 48)), None);
        index.insert_new(key(9, 64), 9);
        let walked: Vec<u32> = index.iter_after(None).map(|(_, _, v)| *v).collect();
        assert_eq!(walked, [0, 9, 2], "the new record took the freed position");
        *index.get_mut(&key(9, 64)).unwrap() = 7;
        assert_eq!(index.get(&key(9, 64)), Some(&7));
        for k in [key(0, 48), key(9, 64), key(2, 48)] {
            index.remove(&k);
        }
        assert!(index.is_empty() && index.chunks.is_empty() && index.free.is_empty());
    }

    #[test]
    fn a_walk_resumes_after_its_cursor_and_after_its_record_once_the_records_are_packed() {
        let mut index = V6Index::default();
        let n = 3 * CHUNK as u32;
        for i in 0..n {
            index.insert_new(key(i, 48), i);
        }
        let (cursor, _, &at) = index.iter_after(None).nth(9).unwrap();
        assert_eq!(at, 9);
        // Records before and after the cursor go; the walk goes on after it.
        index.remove(&key(3, 48));
        index.remove(&key(11, 48));
        let next: Vec<u32> = index.iter_after(Some(cursor)).take(3).map(|(_, _, v)| *v).collect();
        assert_eq!(next, [10, 12, 13]);
        // Emptied below a quarter: packed into one chunk; the walk goes on
        // after its record (kept: 8 is kept, 9 goes), or over if it is gone.
        let (kept, _, _) = index.iter_after(None).find(|(_, _, v)| **v == 8).unwrap();
        for i in (0..n).filter(|i| i % 8 != 0) {
            index.remove(&key(i, 48));
        }
        assert_eq!((index.len(), index.chunks.len()), (n as usize / 8, 1));
        let next = index.iter_after(Some(kept)).next().map(|(_, _, v)| *v);
        assert_eq!(next, Some(16));
        let first = index.iter_after(Some(cursor)).next().map(|(_, _, v)| *v);
        assert_eq!(first, Some(0));
        assert!(index.iter_after(None).all(|(_, k, v)| index.get(k) == Some(v)));
    }

    proptest! {
        /// Any run of inserts and removals leaves the index holding what a
        /// map holds.
        #[test]
        fn the_index_holds_what_a_map_holds(
            ops in proptest::collection::vec((any::<bool>(), 0u32..5000, prop_oneof![Just(48u8), Just(128)]), 1..3000)
        ) {
            let (mut index, mut model) = (V6Index::default(), BTreeMap::new());
            for (insert, n, len) in ops {
                let k = key(n, len);
                if insert {
                    match index.get_mut(&k) {
                        Some(v) => *v = n,
                        None => { index.insert_new(k, n); }
                    }
                    model.insert(k, n);
                } else {
                    prop_assert_eq!(index.remove(&k), model.remove(&k));
                }
                prop_assert_eq!(index.len(), model.len());
                // One position per record, through growth and packing.
                prop_assert_eq!(index.table.len(), model.len());
            }
            let mut held: Vec<(V6Key, u32)> = index.iter_after(None).map(|(_, k, v)| (*k, *v)).collect();
            held.sort_unstable();
            let want: Vec<(V6Key, u32)> = model.into_iter().collect();
            prop_assert_eq!(held, want);
        }
    }
}
