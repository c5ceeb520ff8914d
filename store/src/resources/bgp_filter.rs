//! BGPFilter: import and export rules per family.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::bgp::{as_numbers, community_value};
use super::validate::{self, Invalid};
use super::{Metadata, Spec};

/// Accept or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilterAction {
    /// Let the route through.
    Accept,
    /// Drop the route.
    Reject,
}

/// How a rule's `cidr` is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchOperator {
    /// The route is exactly the CIDR.
    Equal,
    /// The route is not the CIDR.
    NotEqual,
    /// The route is inside the CIDR.
    In,
    /// The route is outside the CIDR.
    NotIn,
}

/// Bounds on the route's prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixLength {
    /// Minimum length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u8>,
    /// Maximum length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u8>,
}

/// One BGPFilter rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpFilterRule {
    /// What to do with a matching route.
    pub action: FilterAction,
    /// The CIDR to compare with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<IpNet>,
    /// How to compare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_operator: Option<MatchOperator>,
    /// Prefix length bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_length: Option<PrefixLength>,
    /// `RemotePeers`: only routes learned from peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `eBGP` or `iBGP`: only for peers of that type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_type: Option<String>,
    /// Only routes carrying this community (one value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communities: Option<CommunityMatch>,
    /// Only routes whose AS_PATH begins with these AS numbers.
    #[serde(default, rename = "asPathPrefix", deserialize_with = "as_numbers", skip_serializing_if = "Vec::is_empty")]
    pub as_path_prefix: Vec<u32>,
    /// Only routes out of this interface (Calico: kernel routes BIRD exports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Only routes of this kernel route priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Changes to an accepted route, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<FilterOperation>,
}

impl BgpFilterRule {
    /// A rule that matches every route, with `action`.
    pub fn new(action: FilterAction) -> BgpFilterRule {
        BgpFilterRule {
            action,
            cidr: None,
            match_operator: None,
            prefix_length: None,
            source: None,
            peer_type: None,
            communities: None,
            as_path_prefix: Vec::new(),
            interface: None,
            priority: None,
            operations: Vec::new(),
        }
    }
}

/// `communities: {values: [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommunityMatch {
    /// The community (`aa:nn`; exactly one).
    pub values: Vec<String>,
}

/// One change to an accepted route: exactly one field set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterOperation {
    /// Add a community.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_community: Option<AddCommunity>,
    /// Put AS numbers in front of the AS_PATH.
    #[serde(default, rename = "prependASPath", skip_serializing_if = "Option::is_none")]
    pub prepend_as_path: Option<PrependAsPath>,
    /// Set the kernel route priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_priority: Option<serde_json::Value>,
}

/// `addCommunity: {value}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddCommunity {
    /// `aa:nn`.
    pub value: String,
}

/// `prependASPath: {prefix: [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrependAsPath {
    /// The AS numbers, in the order the path will start with them.
    #[serde(deserialize_with = "as_numbers")]
    pub prefix: Vec<u32>,
}

impl FilterOperation {
    fn count(&self) -> usize {
        usize::from(self.add_community.is_some())
            + usize::from(self.prepend_as_path.is_some())
            + usize::from(self.set_priority.is_some())
    }
}

/// A standard community `aa:nn` (16 bits each), as the policy engine holds it.
pub fn standard_community(v: &str) -> Option<(u16, u16)> {
    let (a, n) = v.split_once(':')?;
    Some((a.parse().ok()?, n.parse().ok()?))
}

/// BGPFilter spec: ordered rules per direction and family.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpFilterSpec {
    /// IPv4 routes sent.
    #[serde(default, rename = "exportV4", skip_serializing_if = "Vec::is_empty")]
    pub export_v4: Vec<BgpFilterRule>,
    /// IPv4 routes received.
    #[serde(default, rename = "importV4", skip_serializing_if = "Vec::is_empty")]
    pub import_v4: Vec<BgpFilterRule>,
    /// IPv6 routes sent.
    #[serde(default, rename = "exportV6", skip_serializing_if = "Vec::is_empty")]
    pub export_v6: Vec<BgpFilterRule>,
    /// IPv6 routes received.
    #[serde(default, rename = "importV6", skip_serializing_if = "Vec::is_empty")]
    pub import_v6: Vec<BgpFilterRule>,
}

impl Spec for BgpFilterSpec {
    fn validate(&self, _meta: &Metadata) -> Result<(), Invalid> {
        let sets = [
            ("exportV4", &self.export_v4, 32u8, true),
            ("importV4", &self.import_v4, 32, true),
            ("exportV6", &self.export_v6, 128, false),
            ("importV6", &self.import_v6, 128, false),
        ];
        for (name, rules, max_len, v4) in sets {
            for (i, r) in rules.iter().enumerate() {
                let field = |f: &str| format!("{name}[{i}].{f}");
                if let Some(cidr) = r.cidr {
                    if matches!(cidr, IpNet::V4(_)) != v4 {
                        return Err(Invalid::new(field("cidr"), cidr, format!("wrong address family for {name}")));
                    }
                    if r.match_operator.is_none() {
                        return Err(Invalid::new(field("matchOperator"), "", "required with cidr"));
                    }
                } else if r.match_operator.is_some() {
                    return Err(Invalid::new(field("cidr"), "", "required with matchOperator"));
                }
                if let Some(PrefixLength { min, max }) = r.prefix_length {
                    for (f, v) in [("prefixLength.min", min), ("prefixLength.max", max)] {
                        if let Some(v) = v.filter(|v| *v > max_len) {
                            return Err(Invalid::new(field(f), v, format!("at most {max_len}")));
                        }
                    }
                    if let (Some(lo), Some(hi)) = (min, max)
                        && lo > hi
                    {
                        return Err(Invalid::new(field("prefixLength.min"), lo, format!("greater than max {hi}")));
                    }
                }
                if let Some(s) = r.source.as_deref().filter(|s| *s != "RemotePeers") {
                    return Err(Invalid::new(field("source"), s, "only RemotePeers"));
                }
                if let Some(t) = r.peer_type.as_deref().filter(|t| !["eBGP", "iBGP"].contains(t)) {
                    return Err(Invalid::new(field("peerType"), t, "eBGP or iBGP"));
                }
                if let Some(c) = &r.communities {
                    match c.values.as_slice() {
                        [v] => community_value(&field("communities.values[0]"), v)?,
                        _ => {
                            return Err(Invalid::new(
                                field("communities.values"),
                                c.values.join(", "),
                                "exactly one value",
                            ));
                        }
                    }
                }
                for (j, asn) in r.as_path_prefix.iter().enumerate() {
                    validate::as_number(&field(&format!("asPathPrefix[{j}]")), *asn)?;
                }
                if !r.operations.is_empty() && r.action != FilterAction::Accept {
                    return Err(Invalid::new(field("operations"), r.operations.len(), "only with action Accept"));
                }
                for (j, op) in r.operations.iter().enumerate() {
                    let f = |x: &str| field(&format!("operations[{j}]{x}"));
                    if op.count() != 1 {
                        return Err(Invalid::new(
                            f(""),
                            op.count(),
                            "exactly one of addCommunity, prependASPath, setPriority",
                        ));
                    }
                    if let Some(a) = &op.add_community {
                        community_value(&f(".addCommunity.value"), &a.value)?;
                    }
                    if let Some(p) = &op.prepend_as_path {
                        if !(1..=10).contains(&p.prefix.len()) {
                            return Err(Invalid::new(f(".prependASPath.prefix"), p.prefix.len(), "1–10 AS numbers"));
                        }
                        for (k, asn) in p.prefix.iter().enumerate() {
                            validate::as_number(&f(&format!(".prependASPath.prefix[{k}]")), *asn)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn refuse(&self, _meta: &Metadata) -> Result<(), Invalid> {
        for (name, rules) in [
            ("exportV4", &self.export_v4),
            ("importV4", &self.import_v4),
            ("exportV6", &self.export_v6),
            ("importV6", &self.import_v6),
        ] {
            for (i, r) in rules.iter().enumerate() {
                let field = |f: &str| format!("{name}[{i}].{f}");
                // What tortie's routes cannot carry or be told apart by.
                if let Some(ifname) = &r.interface {
                    return Err(Invalid::new(
                        field("interface"),
                        ifname,
                        "tortie exports no kernel routes by interface",
                    ));
                }
                if let Some(p) = r.priority {
                    return Err(Invalid::new(field("priority"), p, "tortie's routes have no priority to match"));
                }
                let large = |v: &str| standard_community(v).is_none();
                if let Some(v) = r.communities.iter().flat_map(|c| &c.values).find(|v| large(v)) {
                    return Err(Invalid::new(
                        field("communities.values[0]"),
                        v,
                        "large communities are not matched yet (aa:nn only)",
                    ));
                }
                for (j, op) in r.operations.iter().enumerate() {
                    if let Some(a) = op.add_community.as_ref().filter(|a| large(&a.value)) {
                        return Err(Invalid::new(
                            field(&format!("operations[{j}].addCommunity.value")),
                            &a.value,
                            "large communities are not added yet (aa:nn only)",
                        ));
                    }
                    if op.set_priority.is_some() {
                        return Err(Invalid::new(
                            field(&format!("operations[{j}].setPriority")),
                            "(set)",
                            "tortie's routes have no priority to set",
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
