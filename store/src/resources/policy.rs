//! NetworkPolicy (namespaced) and GlobalNetworkPolicy, and their rules.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::validate::{self, Invalid};
use super::{Metadata, Spec};

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Accept; evaluation ends.
    Allow,
    /// Drop; evaluation ends.
    Deny,
    /// Log and go on.
    Log,
    /// Skip the rest of this tier's policies.
    Pass,
}

/// Direction a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyType {
    /// Traffic to the endpoint.
    Ingress,
    /// Traffic from the endpoint.
    Egress,
}

/// A protocol by name or number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Protocol {
    /// IP protocol number.
    Number(u8),
    /// `TCP`, `UDP`, `ICMP`, `ICMPv6`, `SCTP`, `UDPLite`.
    Name(String),
}

impl Protocol {
    const NAMES: [&'static str; 6] = ["TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite"];

    /// Whether rules with this protocol may match ports.
    pub fn has_ports(&self) -> bool {
        match self {
            Protocol::Name(n) => ["TCP", "UDP", "SCTP", "UDPLite"].contains(&n.as_str()),
            Protocol::Number(n) => [6, 17, 132, 136].contains(n),
        }
    }

    fn is_icmp(&self) -> bool {
        matches!(self, Protocol::Name(n) if n == "ICMP" || n == "ICMPv6") || matches!(self, Protocol::Number(1 | 58))
    }
}

/// A port: a number or a range `lo:hi`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Port {
    /// One port.
    Number(u16),
    /// `"8080:8090"`.
    Text(String),
}

impl Port {
    /// The range this port stands for (`None` when it is not one).
    pub fn range(&self) -> Option<(u16, u16)> {
        match self {
            Port::Number(p) => Some((*p, *p)),
            Port::Text(t) => {
                let (lo, hi) = t.split_once(':')?;
                Some((lo.parse().ok()?, hi.parse().ok()?))
            }
        }
    }

    fn check(&self, field: &str) -> Result<(), Invalid> {
        match self {
            Port::Number(_) => Ok(()),
            Port::Text(t) if t.contains(':') => match self.range() {
                Some((lo, hi)) if lo <= hi => Ok(()),
                _ => Err(Invalid::new(field, t, "a port range is lo:hi with lo ≤ hi ≤ 65535")),
            },
            // Named ports would need per-endpoint (address, port) sets; not yet.
            Port::Text(t) => {
                Err(Invalid::new(field, t, "a port number or a range lo:hi (named ports are not supported)"))
            }
        }
    }
}

/// ICMP type and code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IcmpMatch {
    /// ICMP type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    /// ICMP code (needs a type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u8>,
}

/// The source or destination side of a rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRule {
    /// Addresses in any of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<IpNet>,
    /// Addresses in none of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<IpNet>,
    /// Endpoints matching this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Endpoints not matching this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_selector: Option<String>,
    /// Endpoints in namespaces matching this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// Ports matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Ports not matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<Port>,
}

/// A rule's own metadata (annotations for people; no effect on traffic,
/// as in Calico).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleMetadata {
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "super::string_map")]
    pub annotations: BTreeMap<String, String>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// What to do.
    pub action: Action,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RuleMetadata>,
    /// Protocol matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Protocol not matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<Protocol>,
    /// ICMP type/code matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpMatch>,
    /// ICMP type/code not matched.
    #[serde(default, rename = "notICMP", skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<IcmpMatch>,
    /// 4 or 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
    /// Source side.
    #[serde(default)]
    pub source: EntityRule,
    /// Destination side.
    #[serde(default)]
    pub destination: EntityRule,
}

impl Rule {
    fn check(&self, field: &str) -> Result<(), Invalid> {
        let f = |s: &str| format!("{field}.{s}");
        if let Some(Protocol::Name(n)) = &self.protocol
            && !Protocol::NAMES.contains(&n.as_str())
        {
            return Err(Invalid::new(f("protocol"), n, "one of TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite, or 1–255"));
        }
        if let Some(v) = self.ip_version.filter(|v| *v != 4 && *v != 6) {
            return Err(Invalid::new(f("ipVersion"), v, "4 or 6"));
        }
        for (which, icmp) in [("icmp", &self.icmp), ("notICMP", &self.not_icmp)] {
            let Some(icmp) = icmp else { continue };
            if !self.protocol.as_ref().is_some_and(Protocol::is_icmp) {
                return Err(Invalid::new(f(which), format!("{icmp:?}"), "needs protocol ICMP or ICMPv6"));
            }
            if icmp.code.is_some() && icmp.icmp_type.is_none() {
                return Err(Invalid::new(f(&format!("{which}.code")), icmp.code.unwrap_or(0), "needs a type"));
            }
        }
        for (side, e) in [("source", &self.source), ("destination", &self.destination)] {
            for (sel, text) in [
                ("selector", &e.selector),
                ("notSelector", &e.not_selector),
                ("namespaceSelector", &e.namespace_selector),
            ] {
                if let Some(t) = text {
                    validate::selector(&f(&format!("{side}.{sel}")), t)?;
                }
            }
            for (which, ports) in [("ports", &e.ports), ("notPorts", &e.not_ports)] {
                if !ports.is_empty() && !self.protocol.as_ref().is_some_and(Protocol::has_ports) {
                    return Err(Invalid::new(
                        f(&format!("{side}.{which}")),
                        format!("{ports:?}"),
                        "ports need protocol TCP, UDP or SCTP",
                    ));
                }
                for (i, p) in ports.iter().enumerate() {
                    p.check(&f(&format!("{side}.{which}[{i}]")))?;
                }
            }
        }
        Ok(())
    }
}

/// Checks the parts both policy kinds share; fills `types` in as Calico does.
fn check_common(
    tier: &Option<String>,
    selector: &Option<String>,
    ingress: &[Rule],
    egress: &[Rule],
    order: Option<f64>,
) -> Result<(), Invalid> {
    if let Some(t) = tier.as_ref().filter(|t| *t != DEFAULT_TIER) {
        return Err(Invalid::new("tier", t, "tortie has only the `default` tier"));
    }
    if let Some(s) = selector {
        validate::selector("selector", s)?;
    }
    if let Some(o) = order.filter(|o| !o.is_finite()) {
        return Err(Invalid::new("order", o, "a finite number"));
    }
    for (i, r) in ingress.iter().enumerate() {
        r.check(&format!("ingress[{i}]"))?;
    }
    for (i, r) in egress.iter().enumerate() {
        r.check(&format!("egress[{i}]"))?;
    }
    Ok(())
}

/// Calico: without `types`, a policy is Ingress, plus Egress when it has egress rules.
fn default_types(types: &mut Vec<PolicyType>, egress: &[Rule]) {
    if types.is_empty() {
        types.push(PolicyType::Ingress);
        if !egress.is_empty() {
            types.push(PolicyType::Egress);
        }
    }
}

/// The one tier tortie has.
pub const DEFAULT_TIER: &str = "default";

/// Tier spec: only the `default` tier exists in tortie.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierSpec {
    /// Its order among tiers (one tier: no effect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// What happens to traffic no policy of the tier decides (`Deny`, Calico's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<Action>,
}

impl Spec for TierSpec {
    fn validate(&self, meta: &Metadata) -> Result<(), Invalid> {
        if meta.name != DEFAULT_TIER {
            return Err(Invalid::new("metadata.name", &meta.name, "tortie has only the `default` tier"));
        }
        match self.default_action {
            None | Some(Action::Deny) => Ok(()),
            Some(a) => Err(Invalid::new("defaultAction", format!("{a:?}"), "the default tier's action is Deny")),
        }
    }
}

/// NetworkPolicy spec (applies within its namespace).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicySpec {
    /// The tier: only `default` (what Calico fills in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Lower applies first; absent is last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// Endpoints the policy applies to (default all in the namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Directions.
    #[serde(default)]
    pub types: Vec<PolicyType>,
    /// Ingress rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    /// Egress rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Endpoints whose service account matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
}

impl Spec for NetworkPolicySpec {
    fn apply_defaults(&mut self, _meta: &Metadata) {
        default_types(&mut self.types, &self.egress);
    }

    fn validate(&self, _meta: &Metadata) -> Result<(), Invalid> {
        check_common(&self.tier, &self.selector, &self.ingress, &self.egress, self.order)
    }
}

/// GlobalNetworkPolicy spec (applies cluster-wide).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalNetworkPolicySpec {
    /// The tier: only `default` (what Calico fills in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Lower applies first; absent is last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// Endpoints the policy applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Namespaces whose endpoints it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// Directions.
    #[serde(default)]
    pub types: Vec<PolicyType>,
    /// Ingress rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    /// Egress rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Endpoints whose service account matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
    /// Untracked (raw table) policy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub do_not_track: bool,
    /// Applies before DNAT.
    #[serde(default, rename = "preDNAT", skip_serializing_if = "std::ops::Not::not")]
    pub pre_dnat: bool,
    /// Applies to traffic a host endpoint forwards too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub apply_on_forward: bool,
}

impl GlobalNetworkPolicySpec {
    /// The host endpoint policy modes tortie lacks that this policy asks
    /// for: (field, why).
    pub fn unsupported_modes(&self) -> Vec<(&'static str, &'static str)> {
        // Refused rather than stored without effect: tortie polices host
        // endpoints' own and forwarded traffic after connection tracking
        // and DNAT only.
        let modes = [
            ("doNotTrack", self.do_not_track, "untracked policy is not supported"),
            ("preDNAT", self.pre_dnat, "pre-DNAT policy is not supported"),
        ];
        modes.into_iter().filter(|(_, on, _)| *on).map(|(f, _, why)| (f, why)).collect()
    }
}

impl Spec for GlobalNetworkPolicySpec {
    fn apply_defaults(&mut self, _meta: &Metadata) {
        default_types(&mut self.types, &self.egress);
    }

    fn refuse(&self, _meta: &Metadata) -> Result<(), Invalid> {
        Invalid::all(self.unsupported_modes().into_iter().map(|(f, why)| Invalid::new(f, true, why)).collect())
    }

    fn validate(&self, _meta: &Metadata) -> Result<(), Invalid> {
        check_common(&self.tier, &self.selector, &self.ingress, &self.egress, self.order)?;
        if let Some(s) = &self.namespace_selector {
            validate::selector("namespaceSelector", s)?;
        }
        Ok(())
    }
}
