//! Route policy in the shape of Calico's BGPFilter: ordered rules, the
//! first that matches decides (Accept or Reject) and may change the route;
//! a route no rule matches is accepted.

use std::sync::Arc;

use ipnet::IpNet;

use crate::packet::{AsPath, Community, PathAttrs, Segment, SegmentType};

/// How a rule's CIDR is compared with the route's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOperator {
    /// The prefix is the CIDR.
    Equal,
    /// The prefix is not the CIDR.
    NotEqual,
    /// The prefix lies inside the CIDR (or is it).
    In,
    /// The prefix lies outside the CIDR.
    NotIn,
}

/// Which kind of peer the route came from (import) or goes to (export).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerType {
    /// External.
    Ebgp,
    /// Internal.
    Ibgp,
}

/// Where a route comes from, as a rule's `source` condition sees it
/// (Calico's BGPFilter `source: RemotePeers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Originated by this node (its blocks, felix's prefixes).
    Local,
    /// Learned from a BGP peer.
    RemotePeers,
}

/// Accept or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Let the route through (after the rule's operations).
    Accept,
    /// Drop it.
    Reject,
}

/// A change to the route of an accepted match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Add a community (once).
    AddCommunity(Community),
    /// Set LOCAL_PREF.
    SetLocalPref(u32),
    /// Prepend an AS number this many times.
    Prepend(u32, u8),
}

/// One rule: every condition given must hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// CIDR condition.
    pub cidr: Option<(MatchOperator, IpNet)>,
    /// Prefix length range (inclusive).
    pub prefix_length: Option<(u8, u8)>,
    /// The route carries this community.
    pub community: Option<Community>,
    /// The AS_PATH starts with these AS numbers.
    pub as_path_prefix: Vec<u32>,
    /// The peer is of this type.
    pub peer_type: Option<PeerType>,
    /// The route comes from here.
    pub source: Option<Source>,
    /// The route is of this family (a BGPFilter's `exportV4` or `exportV6`
    /// rules: each list sees only its own family's routes).
    pub ipv6: Option<bool>,
    /// The decision.
    pub verdict: Verdict,
    /// Changes applied when accepted.
    pub operations: Vec<Operation>,
}

impl Rule {
    /// A rule matching everything with `verdict`.
    pub fn any(verdict: Verdict) -> Rule {
        Rule {
            cidr: None,
            prefix_length: None,
            community: None,
            as_path_prefix: Vec::new(),
            peer_type: None,
            source: None,
            ipv6: None,
            verdict,
            operations: Vec::new(),
        }
    }

    fn matches(&self, prefix: &IpNet, attrs: &PathAttrs, peer: PeerType, source: Source) -> bool {
        let cidr_ok = self.cidr.is_none_or(|(op, cidr)| {
            let same_family = matches!((prefix, cidr), (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_)));
            match op {
                MatchOperator::Equal => *prefix == cidr,
                MatchOperator::NotEqual => *prefix != cidr,
                MatchOperator::In => same_family && cidr.contains(prefix),
                MatchOperator::NotIn => !(same_family && cidr.contains(prefix)),
            }
        });
        let len_ok = self.prefix_length.is_none_or(|(lo, hi)| (lo..=hi).contains(&prefix.prefix_len()));
        let community_ok = self.community.is_none_or(|c| attrs.communities.contains(&c));
        let path_ok = self.as_path_prefix.is_empty() || {
            let asns: Vec<u32> =
                attrs.as_path.as_ref().map(|p| p.asns().take(self.as_path_prefix.len()).collect()).unwrap_or_default();
            asns == self.as_path_prefix
        };
        let peer_ok = self.peer_type.is_none_or(|t| t == peer);
        let source_ok = self.source.is_none_or(|s| s == source);
        let family_ok = self.ipv6.is_none_or(|v6| v6 == prefix.addr().is_ipv6());
        cidr_ok && len_ok && community_ok && path_ok && peer_ok && source_ok && family_ok
    }
}

/// An ordered list of rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Policy {
    /// Rules, first match wins.
    pub rules: Vec<Rule>,
}

impl Policy {
    /// A policy accepting everything unchanged (an explicit policy for RFC 8212).
    pub fn accept_all() -> Policy {
        Policy { rules: vec![Rule::any(Verdict::Accept)] }
    }

    /// The route's attributes after the policy, or `None` when rejected.
    pub fn apply(&self, prefix: &IpNet, attrs: &PathAttrs, peer: PeerType, source: Source) -> Option<PathAttrs> {
        let Some(rule) = self.rules.iter().find(|r| r.matches(prefix, attrs, peer, source)) else {
            return Some(attrs.clone());
        };
        if rule.verdict == Verdict::Reject {
            return None;
        }
        let mut out = attrs.clone();
        for op in &rule.operations {
            match *op {
                Operation::AddCommunity(c) => {
                    if !out.communities.contains(&c) {
                        out.communities.push(c);
                    }
                }
                Operation::SetLocalPref(lp) => out.local_pref = Some(lp),
                Operation::Prepend(asn, times) => {
                    let mut segments = out.as_path.take().unwrap_or_default().segments;
                    segments.insert(
                        0,
                        Segment { kind: SegmentType::Sequence, asns: smallvec::smallvec![asn; usize::from(times)] },
                    );
                    out.as_path = Some(AsPath { segments });
                }
            }
        }
        Some(out)
    }

    /// [`Policy::apply`] to a shared attribute set: the same `Arc` back when
    /// the policy accepts the route unchanged (the usual import of a full
    /// table: no copy per prefix, and consecutive prefixes keep sharing one set).
    pub fn apply_shared(
        &self,
        prefix: &IpNet,
        attrs: Arc<PathAttrs>,
        peer: PeerType,
        source: Source,
    ) -> Option<Arc<PathAttrs>> {
        match self.rules.iter().find(|r| r.matches(prefix, &attrs, peer, source)) {
            None => Some(attrs),
            Some(rule) if rule.verdict == Verdict::Accept && rule.operations.is_empty() => Some(attrs),
            Some(_) => self.apply(prefix, &attrs, peer, source).map(Arc::new),
        }
    }

    /// Whether the policy rejects every route whatever it is (its first
    /// rule matches anything and rejects): export can skip building the
    /// attributes it would reject.
    pub fn rejects_everything(&self) -> bool {
        self.rules.first().is_some_and(|r| *r == Rule::any(Verdict::Reject))
    }

    /// Whether the outcome can depend on the prefix (a rule has a CIDR or
    /// prefix-length condition); when not, one outcome serves every prefix
    /// with the same attributes.
    pub fn depends_on_prefix(&self) -> bool {
        self.rules.iter().any(|r| r.cidr.is_some() || r.prefix_length.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn attrs() -> PathAttrs {
        PathAttrs {
            as_path: Some(AsPath::from_sequence(&[65002, 65010])),
            communities: vec![Community::new(65002, 100)].into(),
            ..PathAttrs::default()
        }
    }

    fn rule(f: impl FnOnce(&mut Rule)) -> Rule {
        let mut r = Rule::any(Verdict::Reject);
        f(&mut r);
        r
    }

    #[test]
    fn each_condition_matches_as_documented() {
        // (rule, prefix, peer type, matches)
        let cases: Vec<(Rule, &str, PeerType, bool)> = vec![
            (
                rule(|r| r.cidr = Some((MatchOperator::Equal, p("198.18.0.0/16")))),
                "198.18.0.0/16",
                PeerType::Ebgp,
                true,
            ),
            (
                rule(|r| r.cidr = Some((MatchOperator::Equal, p("198.18.0.0/16")))),
                "198.18.1.0/24",
                PeerType::Ebgp,
                false,
            ),
            (
                rule(|r| r.cidr = Some((MatchOperator::NotEqual, p("198.18.0.0/16")))),
                "198.18.1.0/24",
                PeerType::Ebgp,
                true,
            ),
            (rule(|r| r.cidr = Some((MatchOperator::In, p("198.18.0.0/16")))), "198.18.1.0/24", PeerType::Ebgp, true),
            (rule(|r| r.cidr = Some((MatchOperator::In, p("198.18.0.0/16")))), "198.19.1.0/24", PeerType::Ebgp, false),
            (
                rule(|r| r.cidr = Some((MatchOperator::NotIn, p("198.18.0.0/16")))),
                "198.19.1.0/24",
                PeerType::Ebgp,
                true,
            ),
            (rule(|r| r.cidr = Some((MatchOperator::In, p("198.18.0.0/16")))), "2001:db8::/32", PeerType::Ebgp, false),
            (rule(|r| r.prefix_length = Some((24, 32))), "198.18.1.0/24", PeerType::Ebgp, true),
            (rule(|r| r.prefix_length = Some((25, 32))), "198.18.1.0/24", PeerType::Ebgp, false),
            (rule(|r| r.community = Some(Community::new(65002, 100))), "198.18.1.0/24", PeerType::Ebgp, true),
            (rule(|r| r.community = Some(Community::NO_EXPORT)), "198.18.1.0/24", PeerType::Ebgp, false),
            (rule(|r| r.as_path_prefix = vec![65002]), "198.18.1.0/24", PeerType::Ebgp, true),
            (rule(|r| r.as_path_prefix = vec![65010]), "198.18.1.0/24", PeerType::Ebgp, false),
            (rule(|r| r.peer_type = Some(PeerType::Ibgp)), "198.18.1.0/24", PeerType::Ebgp, false),
        ];
        for (r, prefix, peer, want) in cases {
            assert_eq!(r.matches(&p(prefix), &attrs(), peer, Source::RemotePeers), want, "{r:?} on {prefix}");
        }
        // Calico's `source: RemotePeers`: learned routes only, not this node's own.
        let learned_only = rule(|r| r.source = Some(Source::RemotePeers));
        assert!(learned_only.matches(&p("198.18.1.0/24"), &attrs(), PeerType::Ebgp, Source::RemotePeers));
        assert!(!learned_only.matches(&p("198.18.1.0/24"), &attrs(), PeerType::Ebgp, Source::Local));
        // A BGPFilter's exportV4 rules see IPv4 routes only, exportV6 rules IPv6 only.
        let v6_only = rule(|r| r.ipv6 = Some(true));
        assert!(v6_only.matches(&p("2001:db8:100::/122"), &attrs(), PeerType::Ebgp, Source::Local));
        assert!(!v6_only.matches(&p("198.18.1.0/24"), &attrs(), PeerType::Ebgp, Source::Local));
    }

    #[test]
    fn first_match_wins_and_no_match_accepts() {
        let policy = Policy {
            rules: vec![
                rule(|r| r.cidr = Some((MatchOperator::Equal, p("198.18.9.0/24")))),
                Rule {
                    operations: vec![
                        Operation::AddCommunity(Community::NO_EXPORT),
                        Operation::SetLocalPref(300),
                        Operation::Prepend(65001, 2),
                    ],
                    ..rule(|r| {
                        r.cidr = Some((MatchOperator::In, p("198.18.0.0/16")));
                        r.verdict = Verdict::Accept;
                    })
                },
                rule(|r| r.cidr = Some((MatchOperator::In, p("198.18.0.0/15")))),
            ],
        };
        assert_eq!(
            policy.apply(&p("198.18.9.0/24"), &attrs(), PeerType::Ebgp, Source::RemotePeers),
            None,
            "rejected by the first rule"
        );
        let changed = policy.apply(&p("198.18.1.0/24"), &attrs(), PeerType::Ebgp, Source::RemotePeers).unwrap();
        assert_eq!(changed.communities, vec![Community::new(65002, 100), Community::NO_EXPORT].into());
        assert_eq!(changed.local_pref, Some(300));
        assert_eq!(changed.as_path.unwrap().asns().collect::<Vec<_>>(), vec![65001, 65001, 65002, 65010]);
        assert_eq!(
            policy.apply(&p("198.19.1.0/24"), &attrs(), PeerType::Ebgp, Source::RemotePeers),
            None,
            "third rule"
        );
        assert_eq!(
            policy.apply(&p("203.0.113.0/24"), &attrs(), PeerType::Ebgp, Source::RemotePeers),
            Some(attrs()),
            "no match: accepted unchanged"
        );
    }

    #[test]
    fn an_unchanged_route_keeps_its_shared_attribute_set() {
        let shared = Arc::new(attrs());
        let prefix = p("198.18.1.0/24");
        let accept = Policy::accept_all();
        let kept = accept.apply_shared(&prefix, shared.clone(), PeerType::Ebgp, Source::RemotePeers).unwrap();
        assert!(Arc::ptr_eq(&kept, &shared), "accepted unchanged: no copy");
        let tag = Community::new(65001, 1);
        let add = Policy {
            rules: vec![rule(|r| (r.verdict, r.operations) = (Verdict::Accept, vec![Operation::AddCommunity(tag)]))],
        };
        let changed = add.apply_shared(&prefix, shared.clone(), PeerType::Ebgp, Source::RemotePeers).unwrap();
        assert_eq!(*changed, add.apply(&prefix, &shared, PeerType::Ebgp, Source::RemotePeers).unwrap());
        assert!(changed.communities.contains(&tag));
        assert_eq!(
            Policy { rules: vec![Rule::any(Verdict::Reject)] }.apply_shared(
                &prefix,
                shared.clone(),
                PeerType::Ebgp,
                Source::RemotePeers
            ),
            None
        );
        assert!(!add.depends_on_prefix());
        assert!(Policy { rules: vec![rule(|r| r.prefix_length = Some((24, 24)))] }.depends_on_prefix());
    }
}
