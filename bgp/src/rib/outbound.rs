//! What one peer is sent for a batch of best-path changes: withdrawals and
//! announcements grouped by attribute set (so prefixes sharing attributes
//! go out together, as BIRD's buckets do), per family — IPv4 in the
//! UPDATE's own fields (RFC 4271 §4.3), IPv6 in MP_REACH_NLRI and
//! MP_UNREACH_NLRI (RFC 4760 §3–4) with its next hop taken from the
//! attributes.

use std::sync::Arc;

use ipnet::IpNet;

use crate::packet::{Family, Ipv4Nlri, MpReach, MpUnreach, Nlri, PathAttrs, Update};

/// The UPDATEs for one peer, being collected.
#[derive(Debug, Default)]
pub struct Outbound {
    v4_withdrawn: Vec<Ipv4Nlri>,
    v4: Buckets<Ipv4Nlri>,
    v6_withdrawn: Vec<Nlri>,
    v6: Buckets<Nlri>,
}

/// Prefixes by attribute set, the sets in the order they first came (so
/// what goes out follows the order of the changes, the same every time).
#[derive(Debug)]
struct Buckets<N> {
    sets: Vec<(Arc<PathAttrs>, Vec<N>)>,
    /// Where each set is, by its contents.
    index: foldhash::HashMap<Arc<PathAttrs>, usize>,
    /// Where each set is, by its allocation, when equal sets are known to
    /// share one (`Outbound::of_shared_sets`): no hashing of their contents.
    shared: Option<foldhash::HashMap<usize, usize>>,
}

impl<N> Default for Buckets<N> {
    fn default() -> Self {
        Buckets { sets: Vec::new(), index: foldhash::HashMap::default(), shared: None }
    }
}

impl<N> Buckets<N> {
    fn add(&mut self, attrs: Arc<PathAttrs>, nlri: Vec<N>) {
        let at = match self.sets.last() {
            // The usual case: the same set as the prefixes before (no hashing).
            Some((last, _)) if Arc::ptr_eq(last, &attrs) => self.sets.len() - 1,
            _ => {
                // (A set held in `sets` keeps its address for as long as this lives.)
                let found = match &self.shared {
                    Some(shared) => shared.get(&(Arc::as_ptr(&attrs) as usize)).copied(),
                    None => self.index.get(&attrs).copied(),
                };
                match found {
                    Some(at) => at,
                    None => {
                        match &mut self.shared {
                            Some(shared) => shared.insert(Arc::as_ptr(&attrs) as usize, self.sets.len()),
                            None => self.index.insert(attrs.clone(), self.sets.len()),
                        };
                        self.sets.push((attrs, Vec::new()));
                        self.sets.len() - 1
                    }
                }
            }
        };
        self.sets[at].1.extend(nlri);
    }

    fn len(&self) -> usize {
        self.sets.iter().map(|(_, nlri)| nlri.len()).sum()
    }
}

impl Outbound {
    /// For attribute sets made so that equal ones share one allocation
    /// (exports remembered by `speaker::memo`): a set is found by its
    /// address. Equal sets of different allocations still go out right,
    /// only in UPDATEs of their own.
    pub fn of_shared_sets() -> Outbound {
        let mut out = Outbound::default();
        (out.v4.shared, out.v6.shared) = (Some(Default::default()), Some(Default::default()));
        out
    }

    /// Whether this was made by [`Outbound::of_shared_sets`].
    pub fn of_shared(&self) -> bool {
        self.v4.shared.is_some()
    }

    /// `prefixes` go out with `attrs` (for IPv6, `attrs.mp_next_hop` is their next hop).
    pub fn announce(&mut self, attrs: Arc<PathAttrs>, prefixes: Vec<IpNet>) {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for prefix in prefixes {
            match prefix {
                IpNet::V4(p) => v4.push(Nlri::new(p)),
                IpNet::V6(_) => v6.push(Nlri::new(prefix)),
            }
        }
        if !v4.is_empty() {
            self.v4.add(attrs.clone(), v4);
        }
        if !v6.is_empty() {
            self.v6.add(attrs, v6);
        }
    }

    /// `prefix` is withdrawn.
    pub fn withdraw(&mut self, prefix: IpNet) {
        match prefix {
            IpNet::V4(p) => self.v4_withdrawn.push(Nlri::new(p)),
            IpNet::V6(_) => self.v6_withdrawn.push(Nlri::new(prefix)),
        }
    }

    /// How many prefixes are announced.
    pub fn announced(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// The UPDATEs: withdrawals first (unless `announcements_only`), then
    /// one UPDATE per attribute set and family, in the order the sets came. The encoder splits any that
    /// do not fit one message.
    pub fn updates(self, announcements_only: bool) -> Vec<Update> {
        let mut out = Vec::new();
        if !announcements_only {
            if !self.v4_withdrawn.is_empty() {
                out.push(Update::withdraw(self.v4_withdrawn));
            }
            if !self.v6_withdrawn.is_empty() {
                let mp_unreach = MpUnreach { family: Family::IPV6_UNICAST, withdrawn: self.v6_withdrawn };
                out.push(Update { mp_unreach: Some(mp_unreach), ..Update::default() });
            }
        }
        out.extend(self.v4.sets.into_iter().map(|(attrs, nlri)| Update::announce(attrs, nlri)));
        for (attrs, nlri) in self.v6.sets {
            // Export gives every IPv6 route a next hop; one without is not sent.
            let Some(next_hop) = attrs.mp_next_hop.as_deref().copied() else { continue };
            let mp_reach = MpReach { family: Family::IPV6_UNICAST, next_hop, nlri };
            out.push(Update { attrs: Some(attrs), mp_reach: Some(mp_reach), ..Update::default() });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;
    use crate::packet::MpNextHop;

    #[test]
    fn families_go_in_their_own_fields_and_shared_attributes_share_an_update() {
        let hop = MpNextHop::Ipv6 { global: "2001:db8::1".parse::<Ipv6Addr>().unwrap(), link_local: None };
        let v6 = PathAttrs { mp_next_hop: Some(Box::new(hop)), ..PathAttrs::default() };
        let v4 = PathAttrs { next_hop: Some("192.0.2.1".parse().unwrap()), ..PathAttrs::default() };
        let mut out = Outbound::default();
        let v6 = Arc::new(v6);
        out.announce(v6.clone(), vec!["2001:db8:1::/48".parse().unwrap()]);
        out.announce(v6, vec!["2001:db8:2::/48".parse().unwrap()]);
        out.announce(Arc::new(v4), vec!["198.18.0.0/24".parse().unwrap()]);
        out.withdraw("2001:db8:3::/48".parse().unwrap());
        out.withdraw("198.18.1.0/24".parse().unwrap());
        let updates = out.updates(false);
        assert_eq!(updates.len(), 4);
        assert_eq!(updates[0].withdrawn.len(), 1);
        assert_eq!(updates[1].mp_unreach.as_ref().map(|u| u.withdrawn.len()), Some(1));
        let reach = updates.iter().find_map(|u| u.mp_reach.as_ref()).unwrap();
        assert_eq!((reach.family, reach.next_hop, reach.nlri.len()), (Family::IPV6_UNICAST, hop, 2));
        assert!(updates.iter().any(|u| u.nlri.len() == 1 && u.mp_reach.is_none()));
        assert_eq!(Outbound::default().updates(false).len(), 0);
    }

    #[test]
    fn shared_sets_are_found_by_their_allocation_and_equal_copies_by_content_otherwise() {
        let attrs = || Arc::new(PathAttrs { med: Some(5), ..PathAttrs::default() });
        let (a, b) = (attrs(), attrs());
        let sets = |mut out: Outbound| {
            out.announce(a.clone(), vec!["198.18.0.0/24".parse().unwrap()]);
            out.announce(b.clone(), vec!["198.18.1.0/24".parse().unwrap()]);
            out.announce(a.clone(), vec!["198.18.2.0/24".parse().unwrap()]);
            out.updates(false).iter().map(|u| u.nlri.len()).collect::<Vec<_>>()
        };
        assert_eq!(sets(Outbound::default()), [3], "equal contents: one UPDATE");
        assert_eq!(sets(Outbound::of_shared_sets()), [2, 1], "by allocation: a's two prefixes together, b's apart");
    }
}
