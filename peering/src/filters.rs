//! Calico BGPFilters → the speaker's policies. A BGPPeer's `filters` are
//! applied in order, their rules concatenated: the first rule that matches
//! decides; a route no rule matches is accepted (Calico's default).

use std::collections::BTreeMap;

use tortie_bgp::packet::Community;
use tortie_bgp::rib::policy::{self, Operation, Policy, Rule, Verdict};
use tortie_store::resources::{BgpFilterRule, BgpFilterSpec, FilterAction, MatchOperator, standard_community};

fn operator(op: MatchOperator) -> policy::MatchOperator {
    match op {
        MatchOperator::Equal => policy::MatchOperator::Equal,
        MatchOperator::NotEqual => policy::MatchOperator::NotEqual,
        MatchOperator::In => policy::MatchOperator::In,
        MatchOperator::NotIn => policy::MatchOperator::NotIn,
    }
}

fn rule(filter: &str, r: &BgpFilterRule, ipv6: bool) -> Option<Rule> {
    let source = match r.source.as_deref() {
        None => None,
        Some("RemotePeers") => Some(policy::Source::RemotePeers),
        // The store refuses other values; one that got in some other way is not guessed at.
        Some(other) => {
            tracing::warn!(filter, source = other, "BGPFilter rule with an unknown `source`; rule skipped");
            return None;
        }
    };
    let verdict = match r.action {
        FilterAction::Accept => Verdict::Accept,
        FilterAction::Reject => Verdict::Reject,
    };
    let mut out = Rule::any(verdict);
    out.cidr = r.cidr.zip(r.match_operator).map(|(cidr, op)| (operator(op), cidr));
    out.prefix_length = r.prefix_length.map(|l| {
        let lo = l.min.unwrap_or_else(|| r.cidr.map_or(0, |c| c.prefix_len()));
        (lo, l.max.unwrap_or(if ipv6 { 128 } else { 32 }))
    });
    out.ipv6 = Some(ipv6);
    out.source = source;
    out.peer_type = match r.peer_type.as_deref() {
        Some("eBGP") => Some(policy::PeerType::Ebgp),
        Some("iBGP") => Some(policy::PeerType::Ibgp),
        _ => None,
    };
    // `apply` let in only standard communities here (large ones are refused).
    let community = |v: &str| standard_community(v).map(|(a, n)| Community::new(a, n));
    out.community = r.communities.as_ref().and_then(|c| c.values.first()).and_then(|v| community(v));
    out.as_path_prefix = r.as_path_prefix.clone();
    for op in &r.operations {
        if let Some(c) = op.add_community.as_ref().and_then(|a| community(&a.value)) {
            out.operations.push(Operation::AddCommunity(c));
        }
        // Each prepend goes in front: the last AS first, so the path starts as listed.
        if let Some(p) = &op.prepend_as_path {
            out.operations.extend(p.prefix.iter().rev().map(|asn| Operation::Prepend(*asn, 1)));
        }
    }
    Some(out)
}

/// (import, export) policies from the filters named, in order; missing
/// filters are reported and skipped.
pub fn policies(names: &[String], filters: &BTreeMap<String, BgpFilterSpec>) -> (Policy, Policy) {
    let (mut import, mut export) = (Vec::new(), Vec::new());
    for name in names {
        let Some(f) = filters.get(name) else {
            tracing::warn!(filter = name, "BGPPeer names a BGPFilter that does not exist; skipped");
            continue;
        };
        import.extend(f.import_v4.iter().filter_map(|r| rule(name, r, false)));
        import.extend(f.import_v6.iter().filter_map(|r| rule(name, r, true)));
        export.extend(f.export_v4.iter().filter_map(|r| rule(name, r, false)));
        export.extend(f.export_v6.iter().filter_map(|r| rule(name, r, true)));
    }
    (Policy { rules: import }, Policy { rules: export })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tortie_store::resources::PrefixLength;

    #[test]
    fn filters_become_ordered_rules_with_their_source_and_missing_ones_are_skipped() {
        let reject = BgpFilterRule {
            cidr: Some("203.0.113.0/24".parse().unwrap()),
            match_operator: Some(MatchOperator::In),
            prefix_length: Some(PrefixLength { min: None, max: Some(28) }),
            ..BgpFilterRule::new(FilterAction::Reject)
        };
        let learned = BgpFilterRule { source: Some("RemotePeers".into()), ..BgpFilterRule::new(FilterAction::Reject) };
        let spec = BgpFilterSpec {
            import_v4: vec![reject],
            export_v4: vec![learned.clone()],
            export_v6: vec![learned],
            ..BgpFilterSpec::default()
        };
        let filters = BTreeMap::from([("f".to_string(), spec)]);
        let (import, export) = policies(&["missing".into(), "f".into()], &filters);
        assert_eq!(import.rules.len(), 1);
        let not_learned = |ipv6| Rule {
            verdict: Verdict::Reject,
            source: Some(policy::Source::RemotePeers),
            ipv6: Some(ipv6),
            ..Rule::any(Verdict::Reject)
        };
        assert_eq!(export.rules, vec![not_learned(false), not_learned(true)], "`source: RemotePeers` kept, per family");
        let r = &import.rules[0];
        assert_eq!(r.verdict, Verdict::Reject);
        assert_eq!(r.cidr, Some((policy::MatchOperator::In, "203.0.113.0/24".parse().unwrap())));
        assert_eq!(r.prefix_length, Some((24, 28)));
    }

    #[test]
    fn peer_type_community_and_path_matches_and_operations_become_the_rules() {
        use tortie_store::resources::{AddCommunity, CommunityMatch, FilterOperation, PrependAsPath};
        let tag = BgpFilterRule {
            peer_type: Some("eBGP".into()),
            communities: Some(CommunityMatch { values: vec!["65000:666".into()] }),
            as_path_prefix: vec![65000, 65010],
            operations: vec![
                FilterOperation {
                    add_community: Some(AddCommunity { value: "65000:42".into() }),
                    ..Default::default()
                },
                FilterOperation {
                    prepend_as_path: Some(PrependAsPath { prefix: vec![64512, 64513] }),
                    ..Default::default()
                },
            ],
            ..BgpFilterRule::new(FilterAction::Accept)
        };
        let spec = BgpFilterSpec { export_v4: vec![tag], ..BgpFilterSpec::default() };
        let (_, export) = policies(&["f".into()], &BTreeMap::from([("f".to_string(), spec)]));
        let r = &export.rules[0];
        assert_eq!(r.peer_type, Some(policy::PeerType::Ebgp));
        assert_eq!(r.community, Some(Community::new(65000, 666)));
        assert_eq!(r.as_path_prefix, vec![65000, 65010]);
        assert_eq!(
            r.operations,
            vec![
                Operation::AddCommunity(Community::new(65000, 42)),
                Operation::Prepend(64513, 1),
                Operation::Prepend(64512, 1)
            ],
            "prepended last AS first, so the path starts 64512 64513"
        );
    }
}
