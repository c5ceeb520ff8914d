//! A map from prefixes that keeps a full table's usual entry small. Nearly
//! every route of a full table is an IPv4 prefix via one IPv4 next hop:
//! those sit in a map of their own in a compact form (four octets of the
//! prefix and a few of value, in sorted runs: [`V4Map`]; a general entry,
//! an `IpNet` and a route's value, takes 50–70 octets before the B-tree's
//! own); every other entry is kept as it comes. Used for the next hops BGP
//! taught and for the kernel's routes dumped by a full pass.

use std::collections::BTreeMap;

use ipnet::{IpNet, Ipv4Net};

use crate::route::join;
use crate::v4map::V4Map;

/// A set of prefixes: every IPv4 one is compact (4 octets).
pub type PrefixSet = PrefixMap<()>;

impl Compact for () {
    type Small = ();

    fn small(&self, _: &Ipv4Net) -> Option<()> {
        Some(())
    }

    fn from_small((): ()) -> Self {}
}

/// A value with a compact form for the common IPv4 case.
pub trait Compact: Sized + Clone {
    /// The compact form.
    type Small: Copy;
    /// The compact form of `self` as the value of the IPv4 prefix `prefix`,
    /// when it has one.
    fn small(&self, prefix: &Ipv4Net) -> Option<Self::Small>;
    /// The value a compact form stands for.
    fn from_small(small: Self::Small) -> Self;
}

/// Prefix → `V`, in prefix order.
#[derive(Debug, Clone)]
pub struct PrefixMap<V: Compact> {
    /// IPv4 prefixes whose value has a compact form.
    v4: V4Map<V::Small>,
    /// Every other prefix.
    other: BTreeMap<IpNet, V>,
}

impl<V: Compact> Default for PrefixMap<V> {
    fn default() -> Self {
        Self { v4: V4Map::default(), other: BTreeMap::new() }
    }
}

impl<V: Compact + PartialEq> PartialEq for PrefixMap<V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<V: Compact> PrefixMap<V> {
    /// The value of `prefix`.
    pub fn get(&self, prefix: &IpNet) -> Option<V> {
        if let IpNet::V4(p) = prefix
            && let Some(small) = self.v4.get(p)
        {
            return Some(V::from_small(*small));
        }
        self.other.get(prefix).cloned()
    }

    /// Sets the value of `prefix`; returns the value it had.
    pub fn insert(&mut self, prefix: IpNet, value: V) -> Option<V> {
        let small = match &prefix {
            IpNet::V4(p) => value.small(p).map(|s| (*p, s)),
            IpNet::V6(_) => None,
        };
        let (v4, other) = match small {
            Some((p, small)) => (self.v4.insert(p, small), self.other.remove(&prefix)),
            None => {
                let v4 = match &prefix {
                    IpNet::V4(p) => self.v4.remove(p),
                    IpNet::V6(_) => None,
                };
                (v4, self.other.insert(prefix, value))
            }
        };
        v4.map(V::from_small).or(other)
    }

    /// Forgets `prefix`; returns the value it had.
    pub fn remove(&mut self, prefix: &IpNet) -> Option<V> {
        let v4 = match prefix {
            IpNet::V4(p) => self.v4.remove(p),
            IpNet::V6(_) => None,
        };
        v4.map(V::from_small).or_else(|| self.other.remove(prefix))
    }

    /// How many prefixes.
    pub fn len(&self) -> usize {
        self.v4.len() + self.other.len()
    }

    /// Whether none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the first prefix (in prefix order) and its value.
    pub fn pop_first(&mut self) -> Option<(IpNet, V)> {
        let v4_first = match (self.v4.first(), self.other.first_key_value()) {
            (None, None) => return None,
            (Some((a, _)), Some((b, _))) => IpNet::V4(a) < *b,
            (a, _) => a.is_some(),
        };
        if v4_first {
            self.v4.pop_first().map(|(p, small)| (IpNet::V4(p), V::from_small(small)))
        } else {
            self.other.pop_first()
        }
    }

    /// Every prefix with its value, in prefix order.
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, V)> + '_ {
        let v4 = self.v4.iter().map(|(p, small)| (IpNet::V4(p), small));
        join(v4, self.other.iter().map(|(p, v)| (*p, v))).filter_map(|(prefix, small, value)| {
            // A prefix is in one map only (`insert`).
            let value = small.map(|s| V::from_small(*s)).or_else(|| value.cloned())?;
            Some((prefix, value))
        })
    }
}

impl<V: Compact> FromIterator<(IpNet, V)> for PrefixMap<V> {
    fn from_iter<T: IntoIterator<Item = (IpNet, V)>>(iter: T) -> Self {
        let mut map = PrefixMap::default();
        for (prefix, value) in iter {
            map.insert(prefix, value);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{KernelRoutes, NextHop, Routes, Target};

    fn via(gateway: &str, device: Option<u32>, onlink: bool) -> Target<u32> {
        Target::Gateways(smallvec::smallvec![NextHop { gateway: gateway.parse().unwrap(), device, onlink }])
    }

    #[test]
    fn kernel_routes_hold_what_a_map_holds_in_its_order_whatever_the_shape() {
        let net = |s: &str| -> IpNet { s.parse().unwrap() };
        let ops = [
            ("198.18.1.0/24", via("192.0.2.2", Some(3), false)),
            ("198.18.0.0/24", via("192.0.2.3", Some(4), true)),
            ("198.18.0.0/26", Target::Blackhole),
            ("198.18.0.5/32", Target::Device(9)),
            ("2001:db8::/64", via("2001:db8::2", Some(3), false)),
            // No device known, an IPv6 gateway: not compact.
            ("198.18.2.0/24", via("192.0.2.2", None, false)),
            ("198.18.3.0/24", via("2001:db8::2", Some(3), false)),
            // A prefix changing shape moves between the maps, both ways.
            ("198.18.1.0/24", Target::Blackhole),
            ("198.18.0.5/32", via("192.0.2.9", Some(2), false)),
        ];
        let (mut map, mut model) = (KernelRoutes::default(), Routes::new());
        for (prefix, target) in ops {
            map.insert(net(prefix), target.clone());
            model.insert(net(prefix), target);
            assert_eq!(map.iter().collect::<Vec<_>>(), model.clone().into_iter().collect::<Vec<_>>());
            assert_eq!(map.len(), model.len());
            assert!(model.iter().all(|(p, t)| map.get(p).as_ref() == Some(t)));
        }
        assert_eq!(map.v4.len(), 2, "the IPv4 single-gateway routes with a device are compact");
        assert_eq!(map.insert(net("198.18.0.5/32"), Target::Device(2)), Some(via("192.0.2.9", Some(2), false)));
        assert_eq!(map.insert(net("198.18.0.5/32"), via("192.0.2.8", Some(2), false)), Some(Target::Device(2)));
        assert_eq!(map.remove(&net("198.18.0.5/32")), Some(via("192.0.2.8", Some(2), false)));
        assert_eq!(map.remove(&net("198.18.1.0/24")), Some(Target::Blackhole));
        assert_eq!(map.remove(&net("198.18.1.0/24")), None);
        assert_eq!(map.len(), 5);
        // Taken first to last, in prefix order, across both maps.
        let mut taken = Vec::new();
        while let Some((prefix, _)) = map.pop_first() {
            taken.push(prefix);
        }
        let mut order: Vec<IpNet> = model.keys().copied().collect();
        order.retain(|p| !["198.18.0.5/32", "198.18.1.0/24"].contains(&p.to_string().as_str()));
        assert_eq!(taken, order);
        assert!(map.is_empty());
    }
}
