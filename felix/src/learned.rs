//! What BGP (or the datastore) taught: each prefix's next hops, kept
//! compact for a full table. Nearly every learned prefix is IPv4 with one
//! IPv4 next hop: those take 9 octets in a map of their own (a general
//! entry, an `IpNet` and a `LearnedHops`, takes 50); the rest (IPv6, ECMP
//! sets) are kept as they come.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

use crate::route::{LearnedHops, join};

/// Prefix → next hops (never empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Learned {
    /// IPv4 prefixes with one IPv4 next hop.
    v4: BTreeMap<Ipv4Net, Ipv4Addr>,
    /// Every other prefix (IPv6, ECMP sets).
    other: BTreeMap<IpNet, LearnedHops>,
}

/// The one IPv4 next hop of an IPv4 prefix, when that is what it has.
fn single_v4(prefix: &IpNet, hops: &[IpAddr]) -> Option<(Ipv4Net, Ipv4Addr)> {
    match (prefix, hops) {
        (IpNet::V4(p), [IpAddr::V4(hop)]) => Some((*p, *hop)),
        _ => None,
    }
}

impl Learned {
    /// The next hops of `prefix`.
    pub fn get(&self, prefix: &IpNet) -> Option<LearnedHops> {
        if let IpNet::V4(p) = prefix
            && let Some(hop) = self.v4.get(p)
        {
            return Some(smallvec::smallvec![IpAddr::V4(*hop)]);
        }
        self.other.get(prefix).cloned()
    }

    /// Sets the next hops of `prefix` (none: it is forgotten).
    pub fn insert(&mut self, prefix: IpNet, hops: LearnedHops) {
        self.remove(&prefix);
        match single_v4(&prefix, &hops) {
            Some((p, hop)) => {
                self.v4.insert(p, hop);
            }
            None if hops.is_empty() => {}
            None => {
                self.other.insert(prefix, hops);
            }
        }
    }

    /// Forgets `prefix`; whether it was there.
    pub fn remove(&mut self, prefix: &IpNet) -> bool {
        let v4 = match prefix {
            IpNet::V4(p) => self.v4.remove(p).is_some(),
            IpNet::V6(_) => false,
        };
        v4 || self.other.remove(prefix).is_some()
    }

    /// How many prefixes.
    pub fn len(&self) -> usize {
        self.v4.len() + self.other.len()
    }

    /// Whether none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every prefix with its next hops, in prefix order.
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, LearnedHops)> + '_ {
        let v4 = self.v4.iter().map(|(p, hop)| (IpNet::V4(*p), hop));
        join(v4, self.other.iter().map(|(p, hops)| (*p, hops))).map(|(prefix, one, many)| {
            let hops = match (one, many) {
                (Some(hop), _) => smallvec::smallvec![IpAddr::V4(*hop)],
                (None, Some(hops)) => hops.clone(),
                (None, None) => LearnedHops::new(),
            };
            (prefix, hops)
        })
    }
}

impl FromIterator<(IpNet, LearnedHops)> for Learned {
    fn from_iter<T: IntoIterator<Item = (IpNet, LearnedHops)>>(iter: T) -> Self {
        let mut learned = Learned::default();
        for (prefix, hops) in iter {
            learned.insert(prefix, hops);
        }
        learned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hops(list: &[&str]) -> LearnedHops {
        list.iter().map(|h| h.parse().unwrap()).collect()
    }

    #[test]
    fn holds_what_a_map_holds_in_its_order_whatever_the_shape() {
        let mut learned = Learned::default();
        let mut model: BTreeMap<IpNet, LearnedHops> = BTreeMap::new();
        let ops: [(&str, &[&str]); 9] = [
            ("198.18.1.0/26", &["192.0.2.2"]),
            ("2001:db8:100::40/122", &["2001:db8::2"]),
            ("198.18.0.0/26", &["192.0.2.2", "192.0.2.3"]),
            // An IPv4 prefix via an IPv6 next hop (RFC 8950) is no single IPv4 one.
            ("198.18.2.0/26", &["2001:db8::3"]),
            // A prefix changing shape moves between the maps.
            ("198.18.1.0/26", &["192.0.2.2", "192.0.2.4"]),
            ("198.18.0.0/26", &["192.0.2.5"]),
            ("198.18.0.0/25", &["192.0.2.5"]),
            ("198.18.2.0/26", &[]),
            ("10.0.0.0/8", &["192.0.2.9"]),
        ];
        for (prefix, list) in ops {
            let (prefix, h) = (prefix.parse().unwrap(), hops(list));
            learned.insert(prefix, h.clone());
            if h.is_empty() {
                model.remove(&prefix);
            } else {
                model.insert(prefix, h);
            }
            assert_eq!(learned.iter().collect::<Vec<_>>(), model.clone().into_iter().collect::<Vec<_>>());
            assert_eq!(learned.len(), model.len());
            for p in model.keys() {
                assert_eq!(learned.get(p).as_ref(), model.get(p));
            }
        }
        assert!(learned.remove(&"198.18.0.0/26".parse().unwrap()));
        assert!(learned.remove(&"198.18.1.0/26".parse().unwrap()));
        assert!(!learned.remove(&"198.18.1.0/26".parse().unwrap()));
        assert_eq!(learned.len(), 3);
    }
}
