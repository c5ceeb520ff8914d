//! What `tortie policy show` prints: per local endpoint and direction, the
//! policies in order with each rule's action and counters, then the
//! endpoint's own default. Policy chains are shared by the endpoints they
//! select, so a policy rule's counters are that rule's total on this node.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::apply::RuleCounter;
use super::compile::policy_chain_name;
use super::model::Direction;
use super::ruleset::{Applied, NftRule, Ruleset, Verdict};

/// One counted rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleView {
    /// The policy (`namespace/name` or `name`); empty for the endpoint's default.
    pub policy: String,
    /// `ingress[0]`, or `default deny` / `profile`.
    pub rule: String,
    /// Allow, Deny, Pass or Log.
    pub action: String,
    /// Packets matched.
    pub packets: u64,
    /// Bytes matched.
    pub bytes: u64,
}

/// One local endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointView {
    /// `namespace/name` or the host endpoint's name.
    pub endpoint: String,
    /// Its interface.
    pub interface: String,
    /// Ingress rules in evaluation order (empty: no policy, all allowed).
    pub ingress: Vec<RuleView>,
    /// Egress rules in evaluation order.
    pub egress: Vec<RuleView>,
}

/// Views of every local endpoint (or the one named `only`: endpoint or
/// interface name).
pub fn views(rs: &Ruleset, counters: &[RuleCounter], only: Option<&str>) -> Vec<EndpointView> {
    // (chain, comment) → totals; a rule's address-family copies add up.
    let mut totals: HashMap<(&str, &str), (u64, u64)> = HashMap::new();
    for c in counters {
        let t = totals.entry((c.chain.as_str(), c.comment.as_str())).or_default();
        *t = (t.0 + c.packets, t.1 + c.bytes);
    }
    let count = |chain: &str, comment: &str| totals.get(&(chain, comment)).copied().unwrap_or_default();
    let direction = |applied: &Option<Applied>, dir: Direction| {
        let Some(applied) = applied else { return vec![] };
        let mut rows = Vec::new();
        for policy in &applied.policies {
            let chain = policy_chain_name(dir, policy);
            let Some(policy_chain) = rs.chains.get(&chain) else { continue };
            let mut seen: Vec<&str> = Vec::new();
            for r in &policy_chain.rules {
                let Some(comment) = r.comment.as_deref() else { continue };
                if seen.contains(&comment) {
                    continue; // the other address family's copy of the rule
                }
                seen.push(comment);
                let (packets, bytes) = count(&chain, comment);
                let rule = comment.rsplit(' ').next().unwrap_or(comment).to_string();
                rows.push(RuleView { policy: policy.clone(), rule, action: action(r).into(), packets, bytes });
            }
        }
        if let Some(last) = rs.chains.get(&applied.chain).and_then(|c| c.rules.last()) {
            let comment = last.comment.as_deref().unwrap_or_default();
            let (packets, bytes) = count(&applied.chain, comment);
            let rule = if comment.ends_with("default deny") { "default deny" } else { "profile" };
            rows.push(RuleView {
                policy: String::new(),
                rule: rule.into(),
                action: action(last).into(),
                packets,
                bytes,
            });
        }
        rows
    };
    rs.endpoints
        .iter()
        .filter(|e| only.is_none_or(|o| e.endpoint == o || e.interface == o))
        .map(|e| EndpointView {
            endpoint: e.endpoint.clone(),
            interface: e.interface.clone(),
            ingress: direction(&e.ingress, Direction::Ingress),
            egress: direction(&e.egress, Direction::Egress),
        })
        .collect()
}

fn action(r: &NftRule) -> &'static str {
    match (&r.verdict, &r.log) {
        (Some(Verdict::Accept), _) => "Allow",
        (Some(Verdict::Drop), _) => "Deny",
        (Some(Verdict::Return), _) => "Pass",
        _ => "Log",
    }
}
