//! The Loc-RIB's IPv4 prefixes: a small open-addressing hash table per /16
//! of address space, reached by indexing arrays with the address's top 8
//! bits, then the next 8 (a /8's 256 buckets are made when its first
//! prefix comes: a node whose routes sit in a few /8s, as a cluster's pod
//! addresses do, holds 6 KiB of buckets per /8, not 1.5 MiB for all of
//! IPv4 as one array of 64 Ki buckets did).
//!
//! Why not a tree: a full table's UPDATE carries prefixes scattered over
//! the address space (a sender groups prefixes by attribute set), so every
//! insert in a tree is a chain of dependent cache misses, root to leaf.
//! Here the slot a prefix lands in follows from the prefix alone, so the
//! speaker asks for the slots of the next prefixes of an UPDATE to be
//! fetched (`prefetch`) while it works on the current one. The hash mixes
//! a secret drawn per index into the key, so a peer cannot choose prefixes
//! that pile up in one probe run (a peer is not trusted with our CPU).
//! Linear probing with backward-shift deletion (no tombstones). A table
//! grows by half at 3/4 full, so it sits 1/2 to 3/4 full, and a table
//! filling moves each entry about twice (growing by a quarter kept tables
//! 3/5 to 3/4 full but moved each entry about four times: a fifth of the
//! speaker's CPU on a full table; doubling sits 3/8 to 3/4 full, and the
//! slots are most of a full table's memory). A table holds any number of
//! slots: a key's home slot is its hash scaled to that number (a multiply,
//! not a mask); it shrinks below 1/8 full. Prefixes still come out in
//! order: the /16s are walked in address order and each one's prefixes
//! sorted.

/// An IPv4 prefix as a key: address and length in one integer, ordered as
/// `Ipv4Net` orders them (address, then length).
pub(super) type V4Key = u64;

/// A prefix within its /16: the address's low 16 bits, then the length
/// (six bits); ordered as the keys are.
pub(super) type SubKey = u32;

/// A value that holds its own key within its /16 (22 bits), so that a
/// slot is the value alone: a key beside the value would take a slot of
/// its own alignment more (the Loc-RIB's 12-octet path: 16), and slots are
/// most of a full table's memory. The index sets it when the value goes in and reads it to
/// probe; whoever changes a value in place leaves it be.
pub(super) trait Keyed {
    /// The key the index set.
    fn sub_key(&self) -> SubKey;
    /// Sets the key (the index's, when the value goes in).
    fn set_sub_key(&mut self, sub: SubKey);
}

/// Where a key that is not held goes: the first empty slot of its probe
/// in its /16's table, as `V4Index::find` left it (`None`: no table yet).
/// Good until the index changes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Vacant(Option<usize>);

/// The smallest table a /16 with prefixes gets.
const MIN_SLOTS: usize = 8;

/// The prefixes of one /16.
#[derive(Debug)]
struct Bucket<V> {
    /// The slots (any number, at least `MIN_SLOTS`), or none while the /16 is empty.
    slots: Box<[Option<V>]>,
    len: usize,
}

impl<V> Default for Bucket<V> {
    fn default() -> Self {
        Bucket { slots: Box::default(), len: 0 }
    }
}

/// The bucket of `key`: the top 16 bits of its address.
fn bucket(key: V4Key) -> usize {
    ((key >> 24) & 0xffff) as usize
}

fn sub_key(key: V4Key) -> SubKey {
    ((((key >> 8) & 0xffff) << 6) | (key & 0x3f)) as SubKey
}

fn full_key(bucket: usize, sub: SubKey) -> V4Key {
    ((bucket as u64) << 24) | (u64::from(sub >> 6) << 8) | u64::from(sub & 0x3f)
}

/// Asks the CPU to fetch the cache line at `at` (a hint: no effect on
/// what the program computes).
fn prefetch<T>(at: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache; `at` is a valid reference anyway.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>((at as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// The hash of `sub` under `seed`: splitmix64's finalizer (a bijection
/// that spreads every input bit over the output) of the key and the secret.
fn mix(sub: SubKey, seed: u64) -> u64 {
    let mut x = u64::from(sub) ^ seed;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl<V: Keyed> Bucket<V> {
    /// Where `sub`'s probe starts: its hash scaled to the table's slots
    /// (the top 32 bits times the slots, over 2^32: uniform, and below the slots).
    fn home(&self, sub: SubKey, seed: u64) -> usize {
        (((mix(sub, seed) >> 32) * self.slots.len() as u64) >> 32) as usize
    }

    /// The slot after `i`, round the end.
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() { 0 } else { i + 1 }
    }

    /// How far slot `to` is from slot `from`, going forward round the end.
    fn distance(&self, from: usize, to: usize) -> usize {
        if to >= from { to - from } else { to + self.slots.len() - from }
    }

    /// The slot holding `sub`, or the first empty slot of its probe
    /// (where it would go; `None` while there is no table).
    fn probe(&self, sub: SubKey, seed: u64) -> Result<usize, Vacant> {
        if self.slots.is_empty() {
            return Err(Vacant(None));
        }
        let mut i = self.home(sub, seed);
        loop {
            match &self.slots[i] {
                None => return Err(Vacant(Some(i))),
                Some(v) if v.sub_key() == sub => return Ok(i),
                Some(_) => i = self.next(i),
            }
        }
    }

    /// Puts `sub` (not held) in, at `vacant` when the table need not
    /// grow first; the slot it went to. Linear probing needs room: at 3/4
    /// full an insert probes about 8 slots on average (at 7/8, 32), so the
    /// table grows there.
    fn insert_new(&mut self, sub: SubKey, mut value: V, seed: u64, vacant: Vacant) -> usize {
        let grow = (self.len + 1) * 4 > self.slots.len() * 3;
        if grow {
            self.resize((self.slots.len() + self.slots.len() / 2).max(MIN_SLOTS), seed);
        }
        // (A hint whose slot was filled since is not trusted.)
        let i = match vacant.0 {
            Some(i) if !grow && self.slots.get(i).is_some_and(Option::is_none) => i,
            _ => self.vacant(sub, seed),
        };
        debug_assert_eq!(i, self.vacant(sub, seed), "the slot found for {sub} is still its first empty one");
        value.set_sub_key(sub);
        self.slots[i] = Some(value);
        self.len += 1;
        i
    }

    /// The first empty slot of `sub`'s probe (the table has one).
    #[inline]
    fn vacant(&self, sub: SubKey, seed: u64) -> usize {
        let mut i = self.home(sub, seed);
        while self.slots[i].is_some() {
            i = self.next(i);
        }
        i
    }

    /// Takes the value at slot `at` out, closing the gap behind it.
    fn remove_at(&mut self, at: usize, seed: u64) -> Option<V> {
        let value = self.slots[at].take()?;
        self.len -= 1;
        // Backward-shift deletion: a later entry of the same run moves
        // into the hole unless that would put it before its home slot.
        let (mut hole, mut j) = (at, self.next(at));
        while let Some(v) = &self.slots[j] {
            let home = self.home(v.sub_key(), seed);
            if self.distance(home, j) >= self.distance(hole, j) {
                self.slots.swap(hole, j);
                hole = j;
            }
            j = self.next(j);
        }
        if self.len == 0 {
            self.slots = Box::default();
        } else if self.len * 8 < self.slots.len() && self.slots.len() > MIN_SLOTS {
            self.resize((self.slots.len() / 2).max(MIN_SLOTS), seed);
        }
        Some(value)
    }

    fn resize(&mut self, slots: usize, seed: u64) {
        debug_assert!(slots > self.len, "{slots} slots for {} entries: no empty slot to end a probe", self.len);
        let old = std::mem::replace(&mut self.slots, (0..slots).map(|_| None).collect());
        // Each entry straight to its new slot, the count unchanged (a table
        // growing by half moves each entry about twice; through
        // `insert_new`, a call and a growth check per move, a million
        // inserts in the full-table bench's order took ~10 % longer).
        for value in old.into_vec().into_iter().flatten() {
            let i = self.vacant(value.sub_key(), seed);
            self.slots[i] = Some(value);
        }
    }

    /// The prefixes held after `after` (all when `None`), sorted; only
    /// those are sorted (a walk resumed in a large /16, as a reflector's
    /// tables are sent in chunks, sorts less and less of it).
    fn sorted_after(&self, after: Option<SubKey>) -> Vec<(SubKey, &V)> {
        let held = self.slots.iter().flatten().map(|v| (v.sub_key(), v));
        let mut held: Vec<(SubKey, &V)> = held.filter(|(k, _)| after.is_none_or(|a| *k > a)).collect();
        held.sort_unstable_by_key(|(k, _)| *k);
        held
    }
}

/// A map from IPv4 prefix keys to `V`, bucketed by /16.
#[derive(Debug)]
pub(super) struct V4Index<V> {
    /// Per /8 (256, or none while the index is empty): its 256 /16
    /// buckets, or none while no prefix of it came.
    blocks: Vec<Option<Box<[Bucket<V>; 256]>>>,
    len: usize,
    /// The hash's secret, drawn when the index is made.
    seed: u64,
}

impl<V> Default for V4Index<V> {
    fn default() -> Self {
        use std::hash::BuildHasher;
        let seed = std::collections::hash_map::RandomState::new().hash_one(0u64);
        V4Index { blocks: Vec::new(), len: 0, seed }
    }
}

impl<V: Keyed> V4Index<V> {
    /// The bucket of `key`'s /16, if its /8 has buckets.
    fn bucket_of(&self, key: V4Key) -> Option<&Bucket<V>> {
        let b = bucket(key);
        Some(&self.blocks.get(b >> 8)?.as_deref()?[b & 0xff])
    }

    fn bucket_of_mut(&mut self, key: V4Key) -> Option<&mut Bucket<V>> {
        let b = bucket(key);
        Some(&mut self.blocks.get_mut(b >> 8)?.as_deref_mut()?[b & 0xff])
    }

    /// The value at `key`, or where it would go (for `insert_new`: one
    /// probe for a look and an insert).
    pub(super) fn find(&self, key: V4Key) -> Result<&V, Vacant> {
        let b = self.bucket_of(key).ok_or(Vacant(None))?;
        let at = b.probe(sub_key(key), self.seed)?;
        b.slots[at].as_ref().ok_or(Vacant(None))
    }

    /// The value at `key`, to change in place (its key left as it is), or
    /// where it would go (as `find`).
    pub(super) fn find_mut(&mut self, key: V4Key) -> Result<&mut V, Vacant> {
        let seed = self.seed;
        let b = self.bucket_of_mut(key).ok_or(Vacant(None))?;
        let at = b.probe(sub_key(key), seed)?;
        b.slots[at].as_mut().ok_or(Vacant(None))
    }

    /// Puts `value` at `key`, which holds nothing yet: `vacant` is what
    /// `find` said of it, with no change to the index since.
    pub(super) fn insert_new(&mut self, key: V4Key, value: V, vacant: Vacant) -> &mut V {
        if self.blocks.is_empty() {
            self.blocks.resize_with(256, || None);
        }
        self.len += 1;
        let b = bucket(key);
        let block = self.blocks[b >> 8].get_or_insert_with(|| Box::new(std::array::from_fn(|_| Bucket::default())));
        let b = &mut block[b & 0xff];
        let at = b.insert_new(sub_key(key), value, self.seed, vacant);
        match &mut b.slots[at] {
            Some(value) => value,
            None => unreachable!("insert_new filled this slot"),
        }
    }

    /// Takes the value at `key` out.
    pub(super) fn remove(&mut self, key: V4Key) -> Option<V> {
        let seed = self.seed;
        let b = self.bucket_of_mut(key)?;
        let value = b.remove_at(b.probe(sub_key(key), seed).ok()?, seed)?;
        self.len -= 1;
        Some(value)
    }

    /// Has the slot where `key` would be looked for fetched into the cache
    /// (the speaker calls it a few prefixes ahead of the one it works on).
    pub(super) fn prefetch(&self, key: V4Key) {
        if let Some(b) = self.bucket_of(key)
            && !b.slots.is_empty()
        {
            prefetch(&b.slots[b.home(sub_key(key), self.seed)]);
        }
    }

    /// Every key and value after `after` (from the first when `None`), in key order.
    pub(super) fn iter_after(&self, after: Option<V4Key>) -> impl Iterator<Item = (V4Key, &V)> {
        let first = after.map_or(0, bucket);
        let blocks = self.blocks.iter().enumerate().skip(first >> 8);
        let blocks = blocks.filter_map(|(n, block)| Some((n, block.as_deref()?)));
        let buckets = blocks.flat_map(|(n, block)| block.iter().enumerate().map(move |(j, b)| ((n << 8) | j, b)));
        buckets.skip_while(move |(i, _)| *i < first).filter(|(_, b)| b.len > 0).flat_map(move |(i, b)| {
            // Within `after`'s own /16, only what comes after it.
            let from = after.filter(|a| bucket(*a) == i).map(sub_key);
            b.sorted_after(from).into_iter().map(move |(sub, v)| (full_key(i, sub), v))
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

    fn key(addr: u32, len: u8) -> V4Key {
        (u64::from(addr) << 8) | u64::from(len)
    }

    /// A value with room for its key (none set until it goes in).
    #[derive(Debug, Clone, Copy)]
    struct Val(SubKey, u64);

    impl Keyed for Val {
        fn sub_key(&self) -> SubKey {
            self.0
        }
        fn set_sub_key(&mut self, sub: SubKey) {
            self.0 = sub;
        }
    }

    fn val(v: u64) -> Val {
        Val(SubKey::MAX, v)
    }

    /// Puts `v` at `k` (not held) as the Loc-RIB does: a look, then an insert where it said.
    fn put(index: &mut V4Index<Val>, k: V4Key, v: Val) {
        let vacant = index.find(k).expect_err("not held yet");
        index.insert_new(k, v, vacant);
    }

    /// What `index` holds at `k`.
    fn at(index: &V4Index<Val>, k: V4Key) -> Option<u64> {
        index.find(k).ok().map(|v| v.1)
    }

    #[test]
    fn keys_come_out_in_order_across_buckets_and_emptied_buckets_free_their_table() {
        let mut index = V4Index::default();
        let keys = [key(0xf001_0000, 24), key(0x0a00_0000, 8), key(0x0a00_0000, 16), key(0, 0), key(0x0a00_0100, 24)];
        for k in keys {
            put(&mut index, k, val(k));
        }
        assert_eq!(index.len(), 5);
        let mut sorted = keys;
        sorted.sort_unstable();
        assert_eq!(index.iter_after(None).map(|(k, _)| k).collect::<Vec<_>>(), sorted);
        assert_eq!(at(&index, keys[1]), Some(keys[1]));
        assert!(index.iter_after(None).all(|(k, v)| sub_key(k) == v.0), "each value holds its key");
        let after: Vec<V4Key> = index.iter_after(Some(sorted[1])).map(|(k, _)| k).collect();
        assert_eq!(after, sorted[2..], "a walk resumes after its key");
        assert_eq!(index.remove(keys[0]).map(|v| v.1), Some(keys[0]));
        assert_eq!((index.len(), at(&index, keys[0])), (4, None));
        assert!(index.remove(keys[0]).is_none());
        assert!(index.bucket_of(keys[0]).unwrap().slots.is_empty(), "an emptied /16 holds no table");
        assert!(index.bucket_of(key(0xc000_0200, 24)).is_none(), "a /8 no prefix came to has no buckets");
        let elsewhere = key(0xc000_0200, 24);
        assert!(index.remove(elsewhere).is_none());
        index.find_mut(keys[4]).unwrap().1 = 7;
        assert_eq!(at(&index, keys[4]), Some(7));
        for k in &keys[1..] {
            index.remove(*k);
        }
        assert!(index.is_empty());
    }

    #[test]
    fn a_table_grows_by_half_and_so_stays_at_least_half_full() {
        let (mut index, mut slots) = (V4Index::default(), 0);
        for n in 1..4096u32 {
            put(&mut index, key(0xc612_0000 | (n << 4), 28), val(u64::from(n)));
            let b = index.bucket_of(key(0xc612_0000, 16)).unwrap();
            if b.slots.len() != slots {
                assert_eq!(b.slots.len(), (slots + slots / 2).max(MIN_SLOTS), "{slots} slots grew by half");
                slots = b.slots.len();
            }
            assert!(b.len * 4 <= b.slots.len() * 3, "{} in {} slots: over 3/4 full", b.len, b.slots.len());
            if b.len > 64 {
                assert!(b.len * 2 >= b.slots.len(), "{} in {} slots: under half full", b.len, b.slots.len());
            }
        }
        assert!((1..4096u32).all(|n| at(&index, key(0xc612_0000 | (n << 4), 28)) == Some(u64::from(n))));
    }

    proptest! {
        /// Any run of inserts and removals (many prefixes in few /16s, the
        /// first and last among them, every length: long probe runs,
        /// growing and shrinking tables) leaves the index
        /// holding what an ordered map holds, in the same order.
        #[test]
        fn the_index_holds_what_an_ordered_map_holds(
            ops in proptest::collection::vec(
                (any::<bool>(), prop_oneof![Just(0u32), Just(0xc612), Just(0xffff)], 0u32..600, 0u8..=32),
                1..600,
            )
        ) {
            let (mut index, mut model) = (V4Index::<Val>::default(), BTreeMap::new());
            for (insert, net16, low, len) in ops {
                // A valid prefix: its host bits cleared, as decoding leaves them.
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
                let k = key(((net16 << 16) | (low << 4)) & mask, len);
                if insert {
                    let value = u64::from(low);
                    match index.find(k) {
                        Ok(_) => index.find_mut(k).unwrap().1 = value,
                        Err(vacant) => { index.insert_new(k, val(value), vacant); }
                    }
                    model.insert(k, value);
                } else {
                    prop_assert_eq!(index.remove(k).map(|v| v.1), model.remove(&k));
                }
                prop_assert_eq!(index.len(), model.len());
            }
            // Each /16's count is what its slots hold (a resize keeps it, not recounts it).
            for block in index.blocks.iter().flatten() {
                for b in block.iter() {
                    prop_assert_eq!(b.len, b.slots.iter().flatten().count());
                }
            }
            let held: Vec<(V4Key, u64)> = index.iter_after(None).map(|(k, v)| (k, v.1)).collect();
            let want: Vec<(V4Key, u64)> = model.clone().into_iter().collect();
            prop_assert_eq!(held, want);
            // A walk resumed after any key held (or not held) meets what comes after it.
            for after in model.keys().step_by(7).copied().chain([key(0xc612_0100, 24), key(0, 0)]) {
                let held: Vec<V4Key> = index.iter_after(Some(after)).map(|(k, _)| k).collect();
                let want: Vec<V4Key> = model.range(after + 1..).map(|(k, _)| *k).collect();
                prop_assert_eq!(held, want);
            }
        }
    }
}
