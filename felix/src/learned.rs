//! What BGP (or the datastore) taught: each prefix's next hops, kept
//! compact for a full table (an IPv4 prefix with one IPv4 next hop in 8
//! octets, see [`PrefixMap`]; IPv6 and ECMP sets as they come).

use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;

use crate::compact::{Compact, PrefixMap};
use crate::route::LearnedHops;

/// Prefix → next hops (never empty).
pub type Learned = PrefixMap<LearnedHops>;

impl Compact for LearnedHops {
    /// The one IPv4 next hop.
    type Small = Ipv4Addr;

    fn small(&self, _: &Ipv4Net) -> Option<Ipv4Addr> {
        match self.as_slice() {
            [IpAddr::V4(hop)] => Some(*hop),
            _ => None,
        }
    }

    fn from_small(hop: Ipv4Addr) -> Self {
        smallvec::smallvec![IpAddr::V4(hop)]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ipnet::IpNet;

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
            if h.is_empty() {
                learned.remove(&prefix);
                model.remove(&prefix);
            } else {
                learned.insert(prefix, h.clone());
                model.insert(prefix, h);
            }
            assert_eq!(learned.iter().collect::<Vec<_>>(), model.clone().into_iter().collect::<Vec<_>>());
            assert_eq!(learned.len(), model.len());
            for p in model.keys() {
                assert_eq!(learned.get(p).as_ref(), model.get(p));
            }
        }
        assert!(learned.remove(&"198.18.0.0/26".parse().unwrap()).is_some());
        assert_eq!(learned.remove(&"198.18.1.0/26".parse().unwrap()), Some(hops(&["192.0.2.2", "192.0.2.4"])));
        assert!(learned.remove(&"198.18.1.0/26".parse().unwrap()).is_none());
        assert_eq!(learned.len(), 3);
    }
}
