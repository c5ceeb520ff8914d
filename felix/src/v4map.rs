//! IPv4 prefixes → a small value, packed for a full table. A B-tree keyed
//! by the prefix fills its nodes only about half when prefixes come in
//! order, as a BGP table does (a node splits in the middle and its left
//! half is never filled again): an IPv4 prefix and a four-octet value,
//! nine octets, took ~20 in `BTreeMap`. Here the prefixes of each /16 sit
//! sorted in one queue, each entry the address's low 16 bits, the length
//! and the value (eight octets with a four-octet value; four with none),
//! and the queues sit in a B-tree by /16: ~11 octets per prefix. A queue
//! (not a vector) so that taking prefixes first to last costs nothing per
//! prefix; an insert or removal in the middle moves at most the /16's
//! other prefixes.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// A prefix within its /16: the address's low 16 bits, then the length
/// (ordered as `Ipv4Net` orders prefixes: address, then length).
type Sub = (u16, u8);

/// The /16 of `prefix` and the prefix within it.
fn split(prefix: &Ipv4Net) -> (u16, Sub) {
    let addr = u32::from(prefix.addr());
    ((addr >> 16) as u16, (addr as u16, prefix.prefix_len()))
}

fn unsplit(top: u16, (low, len): Sub) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::from((u32::from(top) << 16) | u32::from(low)), len)
}

/// IPv4 prefix → `S`, in prefix order.
#[derive(Debug, Clone)]
pub struct V4Map<S> {
    /// Per /16 (the address's top 16 bits), its prefixes in order; a /16
    /// without prefixes has no queue.
    buckets: BTreeMap<u16, VecDeque<(Sub, S)>>,
    len: usize,
}

impl<S> Default for V4Map<S> {
    fn default() -> Self {
        V4Map { buckets: BTreeMap::new(), len: 0 }
    }
}

impl<S: Copy> V4Map<S> {
    /// The value of `prefix`.
    pub fn get(&self, prefix: &Ipv4Net) -> Option<&S> {
        let (top, sub) = split(prefix);
        let queue = self.buckets.get(&top)?;
        let at = queue.binary_search_by_key(&sub, |(k, _)| *k).ok()?;
        Some(&queue[at].1)
    }

    /// Sets the value of `prefix`; returns the value it had.
    pub fn insert(&mut self, prefix: Ipv4Net, value: S) -> Option<S> {
        let (top, sub) = split(&prefix);
        let queue = self.buckets.entry(top).or_default();
        match queue.binary_search_by_key(&sub, |(k, _)| *k) {
            Ok(at) => Some(std::mem::replace(&mut queue[at].1, value)),
            Err(at) => {
                queue.insert(at, (sub, value));
                self.len += 1;
                None
            }
        }
    }

    /// Forgets `prefix`; returns the value it had.
    pub fn remove(&mut self, prefix: &Ipv4Net) -> Option<S> {
        let (top, sub) = split(prefix);
        let queue = self.buckets.get_mut(&top)?;
        let at = queue.binary_search_by_key(&sub, |(k, _)| *k).ok()?;
        let (_, value) = queue.remove(at)?;
        self.len -= 1;
        if queue.is_empty() {
            self.buckets.remove(&top);
        } else if queue.len() * 4 < queue.capacity() {
            // A /16 that emptied out gives its room back.
            queue.shrink_to(queue.len() * 2);
        }
        Some(value)
    }

    /// How many prefixes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The first prefix (in prefix order) and its value.
    pub fn first(&self) -> Option<(Ipv4Net, &S)> {
        let (top, queue) = self.buckets.first_key_value()?;
        let (sub, value) = queue.front()?;
        Some((unsplit(*top, *sub), value))
    }

    /// Takes the first prefix (in prefix order) and its value.
    pub fn pop_first(&mut self) -> Option<(Ipv4Net, S)> {
        let mut first = self.buckets.first_entry()?;
        let top = *first.key();
        let (sub, value) = first.get_mut().pop_front()?;
        if first.get().is_empty() {
            first.remove();
        }
        self.len -= 1;
        Some((unsplit(top, sub), value))
    }

    /// Every prefix with its value, in prefix order.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Net, &S)> + '_ {
        self.buckets.iter().flat_map(|(top, queue)| queue.iter().map(move |(sub, value)| (unsplit(*top, *sub), value)))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any run of inserts, removals and takes (prefixes crowded into a
        /// few /16s, every length, host bits set or not) leaves the map
        /// holding what a `BTreeMap` holds, in the same order.
        #[test]
        fn holds_what_an_ordered_map_holds(ops in proptest::collection::vec(
            (0u8..3, 0u32..4, any::<u16>(), 0u8..=32, any::<u32>()), 1..400,
        )) {
            let (mut map, mut model) = (V4Map::default(), BTreeMap::new());
            for (op, top, low, len, value) in ops {
                // Four /16s, the first and last of the address space among them.
                let top = [0u32, 0x0a00, 0xc612, 0xffff][top as usize];
                let prefix = Ipv4Net::new_assert(Ipv4Addr::from((top << 16) | u32::from(low)), len);
                match op {
                    0 => prop_assert_eq!(map.insert(prefix, value), model.insert(prefix, value)),
                    1 => prop_assert_eq!(map.remove(&prefix), model.remove(&prefix)),
                    _ => prop_assert_eq!(map.pop_first(), model.pop_first()),
                }
                prop_assert_eq!(map.len(), model.len());
                prop_assert_eq!(map.get(&prefix), model.get(&prefix));
                prop_assert_eq!(map.first(), model.first_key_value().map(|(p, v)| (*p, v)));
            }
            prop_assert!(map.iter().map(|(p, v)| (p, *v)).eq(model.iter().map(|(p, v)| (*p, *v))));
            let emptied = map.buckets.values().all(|q| !q.is_empty());
            prop_assert!(emptied, "a /16 without prefixes has no queue");
        }
    }
}
