//! A list attribute (COMMUNITIES, CLUSTER_LIST, the extended and large
//! communities, unrecognised attributes) in one pointer: most routes carry
//! none of them, and a table holds an attribute set per prefix, so an
//! empty list costs 8 bytes and no allocation instead of a `Vec`'s 24.

use std::fmt;
use std::ops::Deref;

/// A list that is `None` when empty (never an empty box: equal lists are
/// equal, hash and order alike, whichever way they were made).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
// The box is the point: one pointer (8 bytes) in every attribute set, the
// Vec's three words only for the few lists there are.
#[allow(clippy::box_collection)]
pub struct List<T>(Option<Box<Vec<T>>>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(None)
    }
}

impl<T> Deref for List<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl<T: fmt::Debug> fmt::Debug for List<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T> From<Vec<T>> for List<T> {
    fn from(v: Vec<T>) -> Self {
        List((!v.is_empty()).then(|| Box::new(v)))
    }
}

impl<T> FromIterator<T> for List<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        iter.into_iter().collect::<Vec<T>>().into()
    }
}

impl<T> Extend<T> for List<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        let mut v = self.0.take().map_or_else(Vec::new, |b| *b);
        v.extend(iter);
        *self = v.into();
    }
}

impl<'a, T> IntoIterator for &'a List<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T> List<T> {
    /// Adds `item` at the end.
    pub fn push(&mut self, item: T) {
        self.0.get_or_insert_with(Box::default).push(item);
    }

    /// Puts `item` at `index` (`index` ≤ the length).
    pub fn insert(&mut self, index: usize, item: T) {
        self.0.get_or_insert_with(Box::default).insert(index, item);
    }

    /// Keeps the items `keep` says yes to.
    pub fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        if let Some(v) = &mut self.0 {
            v.retain(keep);
            if v.is_empty() {
                self.0 = None;
            }
        }
    }

    /// Empties the list.
    pub fn clear(&mut self) {
        self.0 = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_list_is_one_pointer_and_equal_however_it_was_made() {
        assert_eq!(std::mem::size_of::<List<u32>>(), 8);
        let mut l: List<u32> = vec![1, 2].into();
        l.retain(|x| *x > 5);
        assert_eq!(l, List::default());
        l.push(3);
        l.insert(0, 1);
        l.extend([4]);
        assert_eq!(&*l, &[1, 3, 4]);
        assert_eq!(l, [1, 3, 4].into_iter().collect());
        assert!(List::<u32>::default() < l);
        l.clear();
        assert!(l.is_empty());
    }
}
