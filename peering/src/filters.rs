//! Calico BGPFilters → the speaker's policies. A BGPPeer's `filters` are
//! applied in order, their rules concatenated: the first rule that matches
//! decides; a route no rule matches is accepted (Calico's default).

use std::collections::BTreeMap;

use tortie_bgp::rib::policy::{self, Policy, Rule, Verdict};
use tortie_store::resources::{BgpFilterRule, BgpFilterSpec, FilterAction, MatchOperator};

fn operator(op: MatchOperator) -> policy::MatchOperator {
    match op {
        MatchOperator::Equal => policy::MatchOperator::Equal,
        MatchOperator::NotEqual => policy::MatchOperator::NotEqual,
        MatchOperator::In => policy::MatchOperator::In,
        MatchOperator::NotIn => policy::MatchOperator::NotIn,
    }
}

fn rule(filter: &str, r: &BgpFilterRule) -> Option<Rule> {
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
        (lo, l.max.unwrap_or(32))
    });
    out.source = source;
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
        import.extend(f.import_v4.iter().filter_map(|r| rule(name, r)));
        export.extend(f.export_v4.iter().filter_map(|r| rule(name, r)));
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
            action: FilterAction::Reject,
            cidr: Some("203.0.113.0/24".parse().unwrap()),
            match_operator: Some(MatchOperator::In),
            prefix_length: Some(PrefixLength { min: None, max: Some(28) }),
            source: None,
        };
        let learned = BgpFilterRule {
            action: FilterAction::Reject,
            cidr: None,
            match_operator: None,
            prefix_length: None,
            source: Some("RemotePeers".into()),
        };
        let spec = BgpFilterSpec { import_v4: vec![reject], export_v4: vec![learned], ..BgpFilterSpec::default() };
        let filters = BTreeMap::from([("f".to_string(), spec)]);
        let (import, export) = policies(&["missing".into(), "f".into()], &filters);
        assert_eq!(import.rules.len(), 1);
        let not_learned =
            Rule { verdict: Verdict::Reject, source: Some(policy::Source::RemotePeers), ..Rule::any(Verdict::Reject) };
        assert_eq!(export.rules, vec![not_learned], "`source: RemotePeers` kept, not skipped");
        let r = &import.rules[0];
        assert_eq!(r.verdict, Verdict::Reject);
        assert_eq!(r.cidr, Some((policy::MatchOperator::In, "203.0.113.0/24".parse().unwrap())));
        assert_eq!(r.prefix_length, Some((24, 28)));
    }
}
