//! How the Loc-RIB holds a prefix's paths: a prefix's entry (its one
//! stored path inline, or two or more on the heap), and the IPv4 tables
//! whose slot is a prefix's path itself, its key inside.

use super::stored::Stored;
use super::v4_index::{V4Index, V4Key, Vacant};
use super::v6_index::{V6Index, V6Key};

/// The paths to one prefix (a prefix without paths has no entry).
#[derive(Debug)]
pub(super) enum Entry {
    /// The usual case in a full table: one path, chosen when reachable.
    One(Stored),
    /// Two or more paths.
    Many(Box<ManyPaths>),
}

/// Two or more paths to a prefix; the first `chosen` of them are the best
/// and the rest of the multipath set, in order.
#[derive(Debug)]
pub(super) struct ManyPaths {
    pub(super) paths: Vec<Stored>,
    pub(super) chosen: u8,
}

impl Entry {
    pub(super) fn as_ref(&self) -> EntryRef<'_> {
        match self {
            Entry::One(s) => EntryRef::One(s),
            Entry::Many(m) => EntryRef::Many(m),
        }
    }
}

/// A prefix's paths, as found.
#[derive(Debug, Clone, Copy)]
pub(super) enum EntryRef<'a> {
    One(&'a Stored),
    Many(&'a ManyPaths),
}

impl<'a> EntryRef<'a> {
    pub(super) fn paths(self) -> &'a [Stored] {
        match self {
            EntryRef::One(s) => std::slice::from_ref(s),
            EntryRef::Many(m) => &m.paths,
        }
    }

    pub(super) fn chosen(self) -> &'a [Stored] {
        match self {
            EntryRef::One(s) if s.reachable() => std::slice::from_ref(s),
            EntryRef::One(_) => &[],
            EntryRef::Many(m) => &m.paths[..usize::from(m.chosen)],
        }
    }
}

/// The IPv4 prefixes' paths: each prefix's path (its first, when it has
/// more) in its /16's table with the prefix's key in the path's room, a
/// slot of 12 octets (a key beside a 16-octet entry took 24, and the
/// slots are most of a full table's memory). A prefix with two or more
/// paths has them all in `many` too, as its slot says.
#[derive(Debug, Default)]
pub(super) struct V4Paths {
    index: V4Index<Stored>,
    many: foldhash::HashMap<V4Key, Box<ManyPaths>>,
}

impl V4Paths {
    /// The paths of the prefix at `key`, whose slot holds `first`.
    fn view<'a>(&'a self, key: V4Key, first: &'a Stored) -> EntryRef<'a> {
        match first.many().then(|| self.many.get(&key)).flatten() {
            Some(many) => EntryRef::Many(many),
            None => {
                debug_assert!(!first.many(), "a slot flagged with more paths has them in the map");
                EntryRef::One(first)
            }
        }
    }

    /// How many prefixes.
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether none.
    pub(super) fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Has `key`'s slot fetched into the cache (`V4Index::prefetch`).
    pub(super) fn prefetch(&self, key: V4Key) {
        self.index.prefetch(key);
    }

    /// The prefixes with two or more paths.
    #[cfg(test)]
    pub(super) fn multipath(&self) -> usize {
        self.many.len()
    }

    /// Forgets `key`'s other paths; the map gives back its room once
    /// mostly empty (a second full table's peer gone).
    fn forget_many(&mut self, key: V4Key) -> Option<Box<ManyPaths>> {
        let many = self.many.remove(&key);
        if self.many.len() * 4 < self.many.capacity() {
            self.many.shrink_to(self.many.len() * 2);
        }
        many
    }

    pub(super) fn iter_after(&self, after: Option<V4Key>) -> impl Iterator<Item = (V4Key, EntryRef<'_>)> + '_ {
        self.index.iter_after(after).map(|(key, first)| (key, self.view(key, first)))
    }

    /// Puts `first` in `key`'s slot (held or new), flagged with whether the
    /// prefix's paths are in `many`; whether the slot was flagged before.
    fn put_first(&mut self, key: V4Key, mut first: Stored, many: bool) -> bool {
        match self.index.find_mut(key) {
            Ok(slot) => {
                let had = slot.many();
                slot.replace_path(first);
                slot.set_many(many);
                had
            }
            Err(vacant) => {
                first.set_many(many);
                self.index.insert_new(key, first, vacant);
                false
            }
        }
    }
}

/// What `announce_in` and `withdraw_in` need of a family's prefix map.
pub(super) trait Entries<K> {
    /// Where a prefix not held would go (`find` to `insert_new`).
    type Vacant: Copy;
    /// The prefix's paths, or where its first would go.
    fn find(&self, key: &K) -> Result<EntryRef<'_>, Self::Vacant>;
    fn get(&self, key: &K) -> Option<EntryRef<'_>> {
        self.find(key).ok()
    }
    /// The prefix's path when it has one only, to change in place
    /// (`Stored::replace_path`).
    fn one_mut(&mut self, key: &K) -> Option<&mut Stored>;
    /// Puts in the one path of a prefix that has none, where `find` said
    /// (with no change since).
    fn insert_new(&mut self, key: K, stored: Stored, vacant: Self::Vacant) -> EntryRef<'_>;
    /// Sets the entry of a prefix that has one.
    fn set(&mut self, key: K, entry: Entry);
    /// Takes the prefix's entry out.
    fn remove(&mut self, key: &K) -> Option<Entry>;
}

impl Entries<V4Key> for V4Paths {
    type Vacant = Vacant;
    fn find(&self, key: &V4Key) -> Result<EntryRef<'_>, Vacant> {
        Ok(self.view(*key, self.index.find(*key)?))
    }
    fn one_mut(&mut self, key: &V4Key) -> Option<&mut Stored> {
        self.index.find_mut(*key).ok().filter(|s| !s.many())
    }
    fn insert_new(&mut self, key: V4Key, mut stored: Stored, vacant: Vacant) -> EntryRef<'_> {
        stored.set_many(false);
        EntryRef::One(self.index.insert_new(key, stored, vacant))
    }
    fn set(&mut self, key: V4Key, entry: Entry) {
        match entry {
            Entry::One(first) => {
                if self.put_first(key, first, false) {
                    self.forget_many(key);
                }
            }
            Entry::Many(m) => match m.paths.first().cloned() {
                Some(first) => {
                    self.many.insert(key, m);
                    self.put_first(key, first, true);
                }
                None => drop(self.remove(&key)),
            },
        }
    }
    fn remove(&mut self, key: &V4Key) -> Option<Entry> {
        let first = self.index.remove(*key)?;
        match first.many() {
            true => self.forget_many(*key).map(Entry::Many),
            false => Some(Entry::One(first)),
        }
    }
}

impl Entries<V6Key> for V6Index<Entry> {
    type Vacant = ();
    fn find(&self, key: &V6Key) -> Result<EntryRef<'_>, ()> {
        V6Index::get(self, key).map(Entry::as_ref).ok_or(())
    }
    fn one_mut(&mut self, key: &V6Key) -> Option<&mut Stored> {
        match self.get_mut(key) {
            Some(Entry::One(s)) => Some(s),
            _ => None,
        }
    }
    fn insert_new(&mut self, key: V6Key, stored: Stored, (): ()) -> EntryRef<'_> {
        V6Index::insert_new(self, key, Entry::One(stored)).as_ref()
    }
    fn set(&mut self, key: V6Key, entry: Entry) {
        match self.get_mut(&key) {
            Some(held) => *held = entry,
            None => {
                V6Index::insert_new(self, key, entry);
            }
        }
    }
    fn remove(&mut self, key: &V6Key) -> Option<Entry> {
        V6Index::remove(self, key)
    }
}
