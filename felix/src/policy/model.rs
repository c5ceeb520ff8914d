//! What the policy compiler reads: endpoints with their labels and the
//! policies, parsed and checked (selectors parsed, protocols and ports as
//! numbers). Built from datastore resources; parsing is where a bad policy
//! is caught, so the compiler itself cannot fail.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use tortie_store::resources::{
    Action, EntityRule, GlobalNetworkPolicySpec, HostEndpointSpec, IcmpMatch, NetworkPolicySpec, PolicyType, Protocol,
    Rule, WorkloadEndpointSpec,
};
use tortie_store::selector::{Labels, Selector};

/// Calico's implicit endpoint label: the namespace.
pub const LABEL_NAMESPACE: &str = "projectcalico.org/namespace";
/// Calico's implicit endpoint label: the orchestrator.
pub const LABEL_ORCHESTRATOR: &str = "projectcalico.org/orchestrator";
/// Calico's implicit endpoint label: the service account.
pub const LABEL_SERVICE_ACCOUNT: &str = "projectcalico.org/serviceaccount";
/// Calico's implicit namespace (and service account) label: its name.
pub const LABEL_NAME: &str = "projectcalico.org/name";
/// The profile that makes a host endpoint allow what no policy decides.
pub const DEFAULT_ALLOW_PROFILE: &str = "projectcalico-default-allow";

/// Whether an endpoint is a pod's interface or one of a host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EndpointKind {
    /// A WorkloadEndpoint (pod).
    Workload,
    /// A HostEndpoint.
    Host,
}

/// An endpoint policies may select, on any node.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// Pod or host.
    pub kind: EndpointKind,
    /// `namespace/name` for a workload, the name for a host endpoint.
    pub name: String,
    /// The node it lives on.
    pub node: String,
    /// The workload's namespace.
    pub namespace: Option<String>,
    /// Host-side interface (`*`: every interface of a host; empty: none).
    pub interface: String,
    /// Its addresses (what rule selectors match in packets).
    pub addrs: Vec<IpAddr>,
    /// Labels, with Calico's implicit ones.
    pub labels: Labels,
    /// The labels of its namespace (from the `kns.<namespace>` profile).
    pub namespace_labels: Labels,
    /// The labels of its service account.
    pub service_account_labels: Labels,
    /// What happens to traffic no policy decides, when some policy selects
    /// it: Kubernetes' namespace profile allows it for pods; a host endpoint
    /// denies it unless it has the default-allow profile.
    pub profile_allows: bool,
}

impl Endpoint {
    /// A pod's endpoint from its WorkloadEndpoint.
    pub fn workload(
        namespace: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        spec: &WorkloadEndpointSpec,
        namespace_labels: &Labels,
    ) -> Endpoint {
        let mut all = labels.clone();
        all.insert(LABEL_NAMESPACE.into(), namespace.into());
        if !spec.orchestrator.is_empty() {
            all.insert(LABEL_ORCHESTRATOR.into(), spec.orchestrator.clone());
        }
        let mut sa = Labels::new();
        if !spec.service_account_name.is_empty() {
            all.insert(LABEL_SERVICE_ACCOUNT.into(), spec.service_account_name.clone());
            sa.insert(LABEL_NAME.into(), spec.service_account_name.clone());
        }
        let mut ns = namespace_labels.clone();
        ns.insert(LABEL_NAME.into(), namespace.into());
        Endpoint {
            kind: EndpointKind::Workload,
            name: format!("{namespace}/{name}"),
            node: spec.node.clone(),
            namespace: Some(namespace.into()),
            interface: spec.interface_name.clone(),
            addrs: spec.ip_networks.iter().map(IpNet::addr).collect(),
            labels: all,
            namespace_labels: ns,
            service_account_labels: sa,
            profile_allows: true,
        }
    }

    /// A host endpoint from its HostEndpoint.
    pub fn host(name: &str, labels: &BTreeMap<String, String>, spec: &HostEndpointSpec) -> Endpoint {
        Endpoint {
            kind: EndpointKind::Host,
            name: name.into(),
            node: spec.node.clone(),
            namespace: None,
            interface: spec.interface_name.clone(),
            addrs: spec.expected_ips.clone(),
            labels: labels.clone(),
            namespace_labels: Labels::new(),
            service_account_labels: Labels::new(),
            profile_allows: spec.profiles.iter().any(|p| p == DEFAULT_ALLOW_PROFILE),
        }
    }
}

/// A NetworkSet or GlobalNetworkSet: networks rule selectors match
/// alongside endpoints (policies never apply to it).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSet {
    /// `namespace/name`, or the name of a global one.
    pub name: String,
    /// A NetworkSet's namespace (`None`: a GlobalNetworkSet).
    pub namespace: Option<String>,
    /// Labels, with the namespace label for a namespaced one.
    pub labels: Labels,
    /// The labels of its namespace.
    pub namespace_labels: Labels,
    /// The networks.
    pub nets: Vec<IpNet>,
}

impl NetworkSet {
    /// A network set from its resource (`namespace`: `None` for a global one).
    pub fn new(
        namespace: Option<&str>,
        name: &str,
        labels: &BTreeMap<String, String>,
        nets: &[IpNet],
        namespace_labels: &Labels,
    ) -> NetworkSet {
        let mut all = labels.clone();
        let mut ns_labels = Labels::new();
        if let Some(ns) = namespace {
            all.insert(LABEL_NAMESPACE.into(), ns.into());
            ns_labels = namespace_labels.clone();
            ns_labels.insert(LABEL_NAME.into(), ns.into());
        }
        NetworkSet {
            name: namespace.map_or_else(|| name.to_string(), |ns| format!("{ns}/{name}")),
            namespace: namespace.map(str::to_string),
            labels: all,
            namespace_labels: ns_labels,
            nets: nets.iter().map(IpNet::trunc).collect(),
        }
    }
}

/// Traffic direction as the endpoint sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// Into the endpoint.
    Ingress,
    /// Out of the endpoint.
    Egress,
}

impl Direction {
    /// `ingress` / `egress`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// Which endpoints a rule's `selector` may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Pods of one namespace (a NetworkPolicy's rule).
    Namespace(String),
    /// Pods of the namespaces a `namespaceSelector` matches.
    Namespaces(Selector),
    /// Every endpoint, pods and hosts (a GlobalNetworkPolicy's rule).
    Global,
}

/// A set of endpoints named by a rule: its addresses become a named set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSet {
    /// Where to look.
    pub scope: Scope,
    /// Which endpoints there.
    pub selector: Selector,
}

impl EndpointSet {
    /// Whether `ep` is in the set.
    pub fn contains(&self, ep: &Endpoint) -> bool {
        let namespace = ep.namespace.as_deref().filter(|_| ep.kind == EndpointKind::Workload);
        self.in_scope(namespace, &ep.namespace_labels) && self.selector.matches(&ep.labels)
    }

    /// Whether the networks of `set` are in the set (Calico: a rule's
    /// selector matches network sets of the namespaces it may name; a
    /// GlobalNetworkPolicy's, every network set).
    pub fn contains_networks(&self, set: &NetworkSet) -> bool {
        self.in_scope(set.namespace.as_deref(), &set.namespace_labels) && self.selector.matches(&set.labels)
    }

    /// Whether something in `namespace` (`None`: not namespaced) is in scope.
    fn in_scope(&self, namespace: Option<&str>, namespace_labels: &Labels) -> bool {
        match &self.scope {
            Scope::Namespace(ns) => namespace == Some(ns),
            // `global()` takes what lives in no namespace.
            Scope::Namespaces(sel) => match namespace {
                Some(_) => sel.matches(namespace_labels),
                None => sel.matches_global(),
            },
            Scope::Global => true,
        }
    }
}

impl fmt::Display for EndpointSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Scope::Namespace(ns) => write!(f, "namespace {ns}: {}", self.selector),
            Scope::Namespaces(sel) => write!(f, "namespaces {sel}: {}", self.selector),
            Scope::Global => write!(f, "global: {}", self.selector),
        }
    }
}

/// One side of a rule, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entity {
    /// Addresses in any of these.
    pub nets: Vec<IpNet>,
    /// Addresses in none of these.
    pub not_nets: Vec<IpNet>,
    /// Addresses of these endpoints.
    pub selector: Option<EndpointSet>,
    /// Not the addresses of these endpoints.
    pub not_selector: Option<EndpointSet>,
    /// Port ranges matched.
    pub ports: Vec<(u16, u16)>,
    /// Port ranges not matched.
    pub not_ports: Vec<(u16, u16)>,
}

/// ICMP type and optional code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmp {
    /// Type.
    pub icmp_type: u8,
    /// Code.
    pub code: Option<u8>,
}

/// One rule, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRule {
    /// What a match does.
    pub action: Action,
    /// IP protocol number.
    pub protocol: Option<u8>,
    /// IP protocol number not matched.
    pub not_protocol: Option<u8>,
    /// ICMP match.
    pub icmp: Option<Icmp>,
    /// ICMP not matched.
    pub not_icmp: Option<Icmp>,
    /// 4 or 6.
    pub ip_version: Option<u8>,
    /// Source side.
    pub source: Entity,
    /// Destination side.
    pub destination: Entity,
}

/// A policy's name: `namespace/name` or, for a global one, `name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyName {
    /// Namespace of a NetworkPolicy.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

/// A policy, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Its name.
    pub name: PolicyName,
    /// Lower first; `None` last.
    pub order: Option<f64>,
    /// Endpoints it applies to.
    pub selector: Selector,
    /// Namespaces whose pods it applies to (GlobalNetworkPolicy).
    pub namespace_selector: Option<Selector>,
    /// Service accounts whose pods it applies to.
    pub service_account_selector: Option<Selector>,
    /// Ingress rules, when the policy has type Ingress.
    pub ingress: Option<Vec<PolicyRule>>,
    /// Egress rules, when the policy has type Egress.
    pub egress: Option<Vec<PolicyRule>>,
    /// Also applies to traffic a host endpoint forwards (`applyOnForward`).
    pub apply_on_forward: bool,
}

/// A policy that cannot be enforced: which, where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {policy}: {field}: {why}")]
pub struct PolicyError {
    /// The policy.
    pub policy: PolicyName,
    /// The field path.
    pub field: String,
    /// What is wrong.
    pub why: String,
}

impl Policy {
    /// Parses a NetworkPolicy in `namespace`.
    pub fn namespaced(namespace: &str, name: &str, spec: &NetworkPolicySpec) -> Result<Policy, PolicyError> {
        let pname = PolicyName { namespace: Some(namespace.into()), name: name.into() };
        let p = Parse { policy: &pname, rule_scope: Scope::Namespace(namespace.into()) };
        Ok(Policy {
            order: spec.order,
            selector: p.selector("selector", spec.selector.as_deref())?,
            namespace_selector: None,
            service_account_selector: p.optional("serviceAccountSelector", spec.service_account_selector.as_deref())?,
            ingress: p.rules(&spec.types, PolicyType::Ingress, &spec.ingress)?,
            egress: p.rules(&spec.types, PolicyType::Egress, &spec.egress)?,
            apply_on_forward: false,
            name: pname,
        })
    }

    /// Parses a GlobalNetworkPolicy.
    pub fn global(name: &str, spec: &GlobalNetworkPolicySpec) -> Result<Policy, PolicyError> {
        let pname = PolicyName { namespace: None, name: name.into() };
        let p = Parse { policy: &pname, rule_scope: Scope::Global };
        // Stored by an older tortie: apply refuses these now; never enforced
        // as something else (the version enforced before stays).
        if let Some((field, why)) = spec.unsupported_modes().first() {
            return Err(p.error(field, why));
        }
        Ok(Policy {
            order: spec.order,
            selector: p.selector("selector", spec.selector.as_deref())?,
            namespace_selector: p.optional("namespaceSelector", spec.namespace_selector.as_deref())?,
            service_account_selector: p.optional("serviceAccountSelector", spec.service_account_selector.as_deref())?,
            ingress: p.rules(&spec.types, PolicyType::Ingress, &spec.ingress)?,
            egress: p.rules(&spec.types, PolicyType::Egress, &spec.egress)?,
            apply_on_forward: spec.apply_on_forward,
            name: pname,
        })
    }

    /// The rules for a direction, when the policy has that type.
    pub fn rules(&self, dir: Direction) -> Option<&[PolicyRule]> {
        match dir {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }

    /// Whether the policy applies to `ep`.
    pub fn selects(&self, ep: &Endpoint) -> bool {
        let scoped = match (&self.name.namespace, &self.namespace_selector) {
            (Some(ns), _) => ep.kind == EndpointKind::Workload && ep.namespace.as_deref() == Some(ns),
            (None, Some(sel)) if ep.kind == EndpointKind::Workload => sel.matches(&ep.namespace_labels),
            (None, Some(sel)) => sel.matches_global(),
            (None, None) => true,
        };
        scoped
            && self.selector.matches(&ep.labels)
            && self.service_account_selector.as_ref().is_none_or(|s| s.matches(&ep.service_account_labels))
    }
}

/// Parsing context: the policy (for errors) and its rules' selector scope.
struct Parse<'a> {
    policy: &'a PolicyName,
    rule_scope: Scope,
}

impl Parse<'_> {
    fn error(&self, field: &str, why: impl fmt::Display) -> PolicyError {
        PolicyError { policy: self.policy.clone(), field: field.into(), why: why.to_string() }
    }

    fn selector(&self, field: &str, text: Option<&str>) -> Result<Selector, PolicyError> {
        Selector::parse(text.unwrap_or("")).map_err(|e| self.error(field, e))
    }

    fn optional(&self, field: &str, text: Option<&str>) -> Result<Option<Selector>, PolicyError> {
        text.map(|t| self.selector(field, Some(t))).transpose()
    }

    fn rules(
        &self,
        types: &[PolicyType],
        ty: PolicyType,
        rules: &[Rule],
    ) -> Result<Option<Vec<PolicyRule>>, PolicyError> {
        if !types.contains(&ty) {
            return Ok(None);
        }
        let dir = if ty == PolicyType::Ingress { "ingress" } else { "egress" };
        rules.iter().enumerate().map(|(i, r)| self.rule(&format!("{dir}[{i}]"), r)).collect::<Result<_, _>>().map(Some)
    }

    fn rule(&self, field: &str, r: &Rule) -> Result<PolicyRule, PolicyError> {
        let proto = |which: &str, p: &Option<Protocol>| -> Result<Option<u8>, PolicyError> {
            p.as_ref()
                .map(|p| {
                    protocol_number(p)
                        .ok_or_else(|| self.error(&format!("{field}.{which}"), format!("unknown protocol {p:?}")))
                })
                .transpose()
        };
        let icmp = |which: &str, m: &Option<IcmpMatch>| -> Result<Option<Icmp>, PolicyError> {
            match m {
                None => Ok(None),
                Some(IcmpMatch { icmp_type: Some(t), code }) => Ok(Some(Icmp { icmp_type: *t, code: *code })),
                Some(IcmpMatch { icmp_type: None, .. }) => Err(self.error(&format!("{field}.{which}"), "needs a type")),
            }
        };
        Ok(PolicyRule {
            action: r.action,
            protocol: proto("protocol", &r.protocol)?,
            not_protocol: proto("notProtocol", &r.not_protocol)?,
            icmp: icmp("icmp", &r.icmp)?,
            not_icmp: icmp("notICMP", &r.not_icmp)?,
            ip_version: r.ip_version,
            source: self.entity(&format!("{field}.source"), &r.source)?,
            destination: self.entity(&format!("{field}.destination"), &r.destination)?,
        })
    }

    fn entity(&self, field: &str, e: &EntityRule) -> Result<Entity, PolicyError> {
        let scope = match &e.namespace_selector {
            Some(ns) => Scope::Namespaces(self.selector(&format!("{field}.namespaceSelector"), Some(ns))?),
            None => self.rule_scope.clone(),
        };
        let set = |which: &str, text: &Option<String>| -> Result<Option<EndpointSet>, PolicyError> {
            text.as_deref()
                .map(|t| {
                    Ok(EndpointSet {
                        scope: scope.clone(),
                        selector: self.selector(&format!("{field}.{which}"), Some(t))?,
                    })
                })
                .transpose()
        };
        let mut selector = set("selector", &e.selector)?;
        // A namespaceSelector alone names every pod of those namespaces.
        if selector.is_none() && e.namespace_selector.is_some() {
            selector = Some(EndpointSet { scope: scope.clone(), selector: Selector::All });
        }
        let ports =
            |which: &str, ports: &[tortie_store::resources::Port]| -> Result<Vec<(u16, u16)>, PolicyError> {
                ports
                    .iter()
                    .enumerate()
                    .map(|(i, p)| match p.range() {
                        Some((lo, hi)) if lo <= hi => Ok((lo, hi)),
                        _ => Err(self
                            .error(&format!("{field}.{which}[{i}]"), format!("{p:?} is not a port or a range lo:hi"))),
                    })
                    .collect()
            };
        Ok(Entity {
            nets: e.nets.iter().map(IpNet::trunc).collect(),
            not_nets: e.not_nets.iter().map(IpNet::trunc).collect(),
            selector,
            not_selector: set("notSelector", &e.not_selector)?,
            ports: ports("ports", &e.ports)?,
            not_ports: ports("notPorts", &e.not_ports)?,
        })
    }
}

/// The IP protocol number of a protocol name or number.
fn protocol_number(p: &Protocol) -> Option<u8> {
    match p {
        Protocol::Number(n) => Some(*n),
        Protocol::Name(n) => match n.as_str() {
            "TCP" => Some(6),
            "UDP" => Some(17),
            "ICMP" => Some(1),
            "ICMPv6" => Some(58),
            "SCTP" => Some(132),
            "UDPLite" => Some(136),
            _ => None,
        },
    }
}

/// Policy inputs as read from the datastore, before endpoints get their
/// namespace labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Records {
    /// Workload endpoints: namespace, name, labels, spec.
    pub workloads: Vec<(String, String, Labels, WorkloadEndpointSpec)>,
    /// Host endpoints.
    pub hosts: Vec<Endpoint>,
    /// Namespace labels, from the `kns.<namespace>` profiles.
    pub namespaces: BTreeMap<String, Labels>,
    /// Policies, each parsed or the reason it cannot be enforced.
    pub policies: Vec<Result<Policy, PolicyError>>,
    /// Network sets: namespace (`None`: global), name, labels, nets.
    pub network_sets: Vec<(Option<String>, String, Labels, Vec<IpNet>)>,
}

/// The profile name prefix Calico uses for a namespace's labels.
pub const NAMESPACE_PROFILE_PREFIX: &str = "kns.";

impl Records {
    /// Every endpoint, workloads with their namespace's labels.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let none = Labels::new();
        let workloads = self.workloads.iter().map(|(ns, name, labels, spec)| {
            Endpoint::workload(ns, name, labels, spec, self.namespaces.get(ns).unwrap_or(&none))
        });
        workloads.chain(self.hosts.iter().cloned()).collect()
    }

    /// Every network set, namespaced ones with their namespace's labels.
    pub fn network_sets(&self) -> Vec<NetworkSet> {
        let none = Labels::new();
        self.network_sets
            .iter()
            .map(|(ns, name, labels, nets)| {
                let ns_labels = ns.as_ref().and_then(|n| self.namespaces.get(n)).unwrap_or(&none);
                NetworkSet::new(ns.as_deref(), name, labels, nets, ns_labels)
            })
            .collect()
    }
}
