//! IPv4 prefixes → a small value, packed for a full table. A B-tree keyed
//! by the prefix fills its nodes only about half when prefixes come in
//! order, as a BGP table does (a node splits in the middle and its left
//! half is never filled again): an IPv4 prefix and a four-octet value,
//! nine octets, took ~20 in `BTreeMap`. Here prefixes sit sorted in runs
//! of up to `RUN` prefixes of one /16, each entry the address's low 16
//! bits, the length and the value (eight octets with a four-octet value;
//! four with none), and the runs sit in a B-tree: ~11 octets per prefix.
//! An insert or removal moves at most a run's prefixes (a peer that sends
//! 100,000 prefixes of one /16 in the worst order gets no quadratic
//! work); a run is a queue, so taking prefixes first to last costs nothing
//! per prefix.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// A prefix within its /16: the address's low 16 bits, then the length
/// (ordered as `Ipv4Net` orders prefixes: address, then length).
type Sub = (u16, u8);

/// A run's key: its /16 and a prefix at or before its first one (and
/// after every prefix of the run before it).
type RunKey = (u16, Sub);

/// The most prefixes a run holds; a run that grows past it splits in two.
#[cfg(not(test))]
const RUN: usize = 512;
/// Small in tests, so that runs split and empty often.
#[cfg(test)]
const RUN: usize = 4;

/// The /16 of `prefix` and the prefix within it.
fn split(prefix: &Ipv4Net) -> RunKey {
    let addr = u32::from(prefix.addr());
    ((addr >> 16) as u16, (addr as u16, prefix.prefix_len()))
}

fn unsplit(top: u16, (low, len): Sub) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::from((u32::from(top) << 16) | u32::from(low)), len)
}

/// Sorted runs of prefixes of one /16 each, by key.
type Runs<S> = BTreeMap<RunKey, VecDeque<(Sub, S)>>;

/// The run of `runs` that holds `key` if any does, to change, with its
/// key (one lookup; `V4Map::run` tells which).
fn run_mut<S>(runs: &mut Runs<S>, key: RunKey) -> Option<(RunKey, &mut VecDeque<(Sub, S)>)> {
    let (&found, run) = runs.range_mut(..=key).next_back()?;
    (found.0 == key.0).then_some((found, run))
}

/// IPv4 prefix → `S`, in prefix order.
#[derive(Debug, Clone)]
pub struct V4Map<S> {
    /// Sorted runs of prefixes of one /16 each; no run is empty.
    runs: Runs<S>,
    len: usize,
}

impl<S> Default for V4Map<S> {
    fn default() -> Self {
        V4Map { runs: BTreeMap::new(), len: 0 }
    }
}

impl<S: Copy> V4Map<S> {
    /// The run that holds `key` if any does: the last run keyed at or
    /// before it, if of the same /16.
    fn run(&self, key: RunKey) -> Option<&VecDeque<(Sub, S)>> {
        let (found, run) = self.runs.range(..=key).next_back()?;
        (found.0 == key.0).then_some(run)
    }

    /// The value of `prefix`.
    pub fn get(&self, prefix: &Ipv4Net) -> Option<&S> {
        let key = split(prefix);
        let run = self.run(key)?;
        let at = run.binary_search_by_key(&key.1, |(k, _)| *k).ok()?;
        Some(&run[at].1)
    }

    /// Sets the value of `prefix`; returns the value it had.
    pub fn insert(&mut self, prefix: Ipv4Net, value: S) -> Option<S> {
        let key = split(&prefix);
        loop {
            if let Some((run_key, run)) = run_mut(&mut self.runs, key) {
                let at = match run.binary_search_by_key(&key.1, |(k, _)| *k) {
                    Ok(at) => return Some(std::mem::replace(&mut run[at].1, value)),
                    Err(at) => at,
                };
                run.insert(at, (key.1, value));
                self.len += 1;
                if run.len() > RUN {
                    let second = run.split_off(run.len() / 2);
                    // The first half keeps no room for the second's prefixes
                    // (prefixes coming in order go to the second from now on).
                    run.shrink_to_fit();
                    self.runs.insert((run_key.0, second[0].0), second);
                }
                return None;
            }
            // Before every run of its /16 (rare: prefixes mostly come in
            // order): the /16's first run is keyed again at it, or it
            // starts a run; then it goes in as above.
            let next = self.runs.range(key..).next().map(|(k, _)| *k).filter(|k| k.0 == key.0);
            let run = next.and_then(|k| self.runs.remove(&k)).unwrap_or_default();
            self.runs.insert(key, run);
        }
    }

    /// Forgets `prefix`; returns the value it had.
    pub fn remove(&mut self, prefix: &Ipv4Net) -> Option<S> {
        let key = split(prefix);
        let (run_key, run) = run_mut(&mut self.runs, key)?;
        let at = run.binary_search_by_key(&key.1, |(k, _)| *k).ok()?;
        let (_, value) = run.remove(at)?;
        self.len -= 1;
        if run.is_empty() {
            self.runs.remove(&run_key);
        } else if run.len() * 4 < run.capacity() {
            // A run that emptied out gives its room back.
            run.shrink_to(run.len() * 2);
        }
        Some(value)
    }

    /// How many prefixes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The first prefix (in prefix order) and its value.
    pub fn first(&self) -> Option<(Ipv4Net, &S)> {
        let ((top, _), run) = self.runs.first_key_value()?;
        let (sub, value) = run.front()?;
        Some((unsplit(*top, *sub), value))
    }

    /// Takes the first prefix (in prefix order) and its value.
    pub fn pop_first(&mut self) -> Option<(Ipv4Net, S)> {
        let mut first = self.runs.first_entry()?;
        let (top, _) = *first.key();
        // (The run's key stays at or before its new first prefix.)
        let (sub, value) = first.get_mut().pop_front()?;
        if first.get().is_empty() {
            first.remove();
        }
        self.len -= 1;
        Some((unsplit(top, sub), value))
    }

    /// Every prefix with its value, in prefix order.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Net, &S)> + '_ {
        self.runs.iter().flat_map(|((top, _), run)| run.iter().map(move |(sub, value)| (unsplit(*top, *sub), value)))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any sequence of inserts, removals and takes (prefixes crowded
        /// into a few /16s, every length, host bits set or not: runs
        /// split, empty and are keyed again) leaves the map holding what a
        /// `BTreeMap` holds, in the same order.
        #[test]
        fn holds_what_an_ordered_map_holds(ops in proptest::collection::vec(
            (0u8..3, 0u32..4, 0u16..16, proptest::sample::select(vec![0u8, 8, 16, 24, 32]), any::<u32>()),
            1..400,
        )) {
            let (mut map, mut model) = (V4Map::default(), BTreeMap::new());
            for (op, top, low, len, value) in ops {
                // Four /16s, the first and last of the address space among them.
                let top = [0u32, 0x0a00, 0xc612, 0xffff][top as usize];
                // Few prefixes per /16 (the first and last among them), so that ops meet.
                let low = u32::from(low) * 0x1111;
                let prefix = Ipv4Net::new_assert(Ipv4Addr::from((top << 16) | low), len);
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
            prop_assert!(map.runs.values().all(|run| !run.is_empty() && run.len() <= RUN), "runs: {:?}", map.runs);
        }
    }
}
