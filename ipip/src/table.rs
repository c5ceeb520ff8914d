//! What the data plane is told: each tunnelled block with the nodes of its
//! route, and the cluster's node addresses (the only outer sources it
//! unwraps). Felix computes it; the eBPF plane keeps its maps equal to it
//! by difference (`diff`): entries added, changed or removed, never a
//! flush, so a table adopted from an earlier run converges like any other.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The most nodes one block's route spreads over (the BPF map's value).
pub const MAX_HOPS: usize = 4;

/// Where each tunnelled block goes, and who may send to us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncapTable {
    /// Tunnelled block → the nodes of its route (an ECMP set, usually one).
    routes: BTreeMap<Ipv4Net, Vec<Ipv4Addr>>,
    /// Cluster nodes: the only accepted outer sources.
    nodes: BTreeSet<Ipv4Addr>,
    /// BGP is relearning after a restart: see [`EncapTable::relearning`].
    relearning: bool,
}

impl EncapTable {
    /// A table from tunnelled prefixes with their nodes (a block without
    /// nodes is left out; of more than [`MAX_HOPS`], the first are kept),
    /// and the cluster's node addresses.
    pub fn new(
        routes: impl IntoIterator<Item = (Ipv4Net, Vec<Ipv4Addr>)>,
        nodes: impl IntoIterator<Item = Ipv4Addr>,
    ) -> Self {
        let routes = routes
            .into_iter()
            .filter(|(_, hops)| !hops.is_empty())
            .map(|(net, mut hops)| {
                hops.truncate(MAX_HOPS);
                (net.trunc(), hops)
            })
            .collect();
        EncapTable { routes, nodes: nodes.into_iter().collect(), relearning: false }
    }

    /// Marks the table as made while BGP relearns after a restart: felix
    /// keeps the kernel's learned routes meanwhile (RFC 4724), so blocks
    /// not in the table yet may still carry traffic, and the data plane
    /// adds and changes entries but removes none.
    pub fn relearning(self, relearning: bool) -> Self {
        EncapTable { relearning, ..self }
    }

    /// Whether BGP is relearning (entries missing from it stay).
    pub fn is_relearning(&self) -> bool {
        self.relearning
    }

    /// Each tunnelled block with the nodes of its route.
    pub fn routes(&self) -> impl Iterator<Item = (&Ipv4Net, &[Ipv4Addr])> {
        self.routes.iter().map(|(net, hops)| (net, hops.as_slice()))
    }

    /// The cluster's node addresses.
    pub fn nodes(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.nodes.iter().copied()
    }
}

/// What makes a map equal to `desired`: the keys to remove, and the
/// entries to add or change. Entries already right are left alone.
pub fn diff<K: Eq + Hash + Clone, V: PartialEq + Clone>(
    current: &HashMap<K, V>,
    desired: &HashMap<K, V>,
) -> (Vec<K>, Vec<(K, V)>) {
    let remove = current.keys().filter(|k| !desired.contains_key(*k)).cloned().collect();
    let upsert =
        desired.iter().filter(|(k, v)| current.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    (remove, upsert)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_without_nodes_are_left_out_and_ecmp_sets_are_capped() {
        let many: Vec<Ipv4Addr> = (1..=6).map(|i| Ipv4Addr::new(192, 0, 2, i)).collect();
        let t = EncapTable::new(
            [("198.18.0.0/26".parse().unwrap(), vec![]), ("198.18.0.77/26".parse().unwrap(), many.clone())],
            [Ipv4Addr::new(192, 0, 2, 1)],
        );
        let routes: Vec<_> = t.routes().map(|(n, h)| (n.to_string(), h.len())).collect();
        assert_eq!(routes, [("198.18.0.64/26".to_string(), MAX_HOPS)], "truncated to its network, capped");
        assert_eq!(t.nodes().collect::<Vec<_>>(), [Ipv4Addr::new(192, 0, 2, 1)]);
    }

    #[test]
    fn diff_removes_strays_and_writes_only_what_differs() {
        let current: HashMap<u8, u8> = [(1, 10), (2, 20), (3, 30)].into();
        let desired: HashMap<u8, u8> = [(2, 20), (3, 31), (4, 40)].into();
        let (remove, mut upsert) = diff(&current, &desired);
        upsert.sort_unstable();
        assert_eq!(remove, [1]);
        assert_eq!(upsert, [(3, 31), (4, 40)]);
        assert_eq!(diff(&desired, &desired), (vec![], vec![]), "equal: nothing to do");
    }
}
