//! # tortie-reflector — the route-reflector role (RFC 4456)
//!
//! Owns the reflection rules — which iBGP-learned paths go to which iBGP
//! peers, ORIGINATOR_ID and CLUSTER_LIST on reflected paths, and the loop
//! checks — as the [`Reflector`] the speaker in `tortie-bgp` consults. It
//! re-implements neither sessions nor the RIB: a node (or a dedicated
//! reflector process) gives its speaker a [`RouteReflector`] and marks its
//! clients.
//!
//! Must not: re-implement sessions or the RIB.

use std::net::Ipv4Addr;

use tortie_bgp::packet::PathAttrs;
pub use tortie_bgp::rib::export::Reflector;

/// A route reflector with a CLUSTER_ID (RFC 4456 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteReflector {
    /// The cluster's id; redundant reflectors of one cluster share it.
    pub cluster_id: Ipv4Addr,
}

impl Reflector for RouteReflector {
    /// RFC 4456 §6: a route from a client goes to every other client and
    /// to the non-clients; one from a non-client goes to the clients only.
    /// (eBGP-learned and local routes go to everyone: no split horizon.)
    fn reflects(&self, from_client: bool, to_client: bool) -> bool {
        from_client || to_client
    }

    /// RFC 4456 §8: ORIGINATOR_ID is the BGP id of the route's originator in
    /// the AS, set by the first reflector and kept after; each reflector
    /// prepends its CLUSTER_ID to CLUSTER_LIST.
    fn stamp(&self, attrs: &mut PathAttrs, originator: Ipv4Addr) {
        attrs.originator_id.get_or_insert(originator);
        attrs.cluster_list.insert(0, self.cluster_id);
    }

    /// RFC 4456 §8: a route whose CLUSTER_LIST holds our CLUSTER_ID has
    /// been here before.
    fn looped(&self, attrs: &PathAttrs) -> bool {
        attrs.cluster_list.contains(&self.cluster_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RR: RouteReflector = RouteReflector { cluster_id: Ipv4Addr::new(203, 0, 113, 250) };

    #[test]
    fn reflection_follows_rfc_4456_section_6() {
        // (from a client?, to a client?, reflected?)
        let table = [(true, true, true), (true, false, true), (false, true, true), (false, false, false)];
        for (from, to, want) in table {
            assert_eq!(RR.reflects(from, to), want, "from client {from} to client {to}");
        }
    }

    #[test]
    fn reflected_paths_carry_the_originator_and_the_cluster_and_loops_are_seen() {
        let mut attrs = PathAttrs::default();
        let origin = Ipv4Addr::new(192, 0, 2, 1);
        RR.stamp(&mut attrs, origin);
        assert_eq!((attrs.originator_id, attrs.cluster_list.to_vec()), (Some(origin), vec![RR.cluster_id]));
        assert!(RR.looped(&attrs));
        // A second reflector keeps the originator and prepends its cluster.
        let upper = RouteReflector { cluster_id: Ipv4Addr::new(203, 0, 113, 251) };
        assert!(!upper.looped(&attrs));
        upper.stamp(&mut attrs, Ipv4Addr::new(192, 0, 2, 99));
        assert_eq!(attrs.originator_id, Some(origin));
        assert_eq!(*attrs.cluster_list, [upper.cluster_id, RR.cluster_id]);
    }
}
