//! Resources in Calico's v3 schema (`apiVersion: projectcalico.org/v3`):
//! the kinds tortie supports, their defaults and validation, and how they
//! are read from YAML/JSON documents and keyed in the datastore.
//!
//! Unknown fields are errors that name them (never silently dropped); every
//! error names the document, the field path and the value.

mod bgp;
mod bgp_filter;
mod bgp_peer;
mod felix;
mod felix_defaults;
mod kinds;
mod netset;
mod node;
mod policy;
mod pool;
mod session;
mod validate;
mod workload;

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use bgp::{
    BgpConfigurationSpec, Community, DEFAULT_LONG_LIVED_STALE_TIME, DEFAULT_RESTART_TIME, PrefixAdvertisement,
    ServiceCidr,
};
pub use bgp_filter::{
    AddCommunity, BgpFilterRule, BgpFilterSpec, CommunityMatch, FilterAction, FilterOperation, MatchOperator,
    PrefixLength, PrependAsPath, standard_community,
};
pub use bgp_peer::{BgpPeerSpec, PeerPassword, SecretKeyRef, SourceAddress};
pub use felix::{
    DEFAULT_VXLAN_PORT, DEFAULT_VXLAN_VNI, EndpointToHostAction, FelixConfigurationSpec, ProtoPort, duration_ms,
};
pub use kinds::{Kind, KindInfo};
pub use netset::NetworkSetSpec;
pub use node::{NodeAddress, NodeBgp, NodeSpec, parse_mac};
pub use policy::{
    Action, DEFAULT_TIER, EntityRule, GlobalNetworkPolicySpec, IcmpMatch, NetworkPolicySpec, PolicyType, Port,
    Protocol, Rule, RuleMetadata, TierSpec,
};
pub use pool::{AssignmentMode, EncapMode, IpPoolSpec, IpamConfigSpec};
pub use session::{DEFAULT_BFD_INTERVAL, DEFAULT_BFD_MULTIPLIER, SessionSettings};
pub use validate::Invalid;
pub use workload::{EndpointPort, HostEndpointSpec, ProfileSpec, WorkloadEndpointSpec};

/// The only API version.
pub const API_VERSION: &str = "projectcalico.org/v3";
/// Where resources live in the datastore (Calico's etcd layout).
pub const KEY_PREFIX: &str = "/calico/resources/v3/projectcalico.org/";

/// Object metadata (the subset of Kubernetes ObjectMeta Calico uses).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// Name.
    pub name: String,
    /// Namespace (namespaced kinds only; defaults to `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels (unquoted YAML numbers and booleans are read as strings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "string_map")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "string_map")]
    pub annotations: BTreeMap<String, String>,
    /// The datastore revision of this version (set on read; ignored on apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Unique id (kept as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Creation time (kept as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
}

/// A map of strings where YAML may have left a value unquoted (`enabled:
/// true`, `tier: 1`): booleans and whole numbers are kept as text. A
/// number YAML would rewrite (`1.10` reads as 1.1) must be quoted.
fn string_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, serde_yaml_ng::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match v {
            serde_yaml_ng::Value::String(s) => Ok((k, s)),
            serde_yaml_ng::Value::Bool(b) => Ok((k, b.to_string())),
            serde_yaml_ng::Value::Number(n) if !n.is_f64() => Ok((k, n.to_string())),
            serde_yaml_ng::Value::Number(n) => {
                Err(serde::de::Error::custom(format!("`{k}`: {n} is not kept exactly as a number; quote it")))
            }
            serde_yaml_ng::Value::Null => Ok((k, String::new())),
            other => Err(serde::de::Error::custom(format!("`{k}`: a string, not {other:?}"))),
        })
        .collect()
}

/// One resource: envelope and typed spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Object<S> {
    /// `projectcalico.org/v3`.
    pub api_version: String,
    /// The kind, as written.
    pub kind: String,
    /// Metadata.
    pub metadata: Metadata,
    /// The spec.
    #[serde(default)]
    pub spec: S,
}

/// A `default` / `node.<name>` pair of configuration documents as one: each
/// field the node's document sets wins over `default`'s.
pub(crate) fn overlay<S: Spec>(default: Option<&S>, node: Option<&S>) -> S {
    let fields = |s: Option<&S>| match s.map(serde_json::to_value) {
        Some(Ok(serde_json::Value::Object(m))) => m,
        _ => serde_json::Map::new(),
    };
    let mut all = fields(default);
    all.extend(fields(node));
    serde_json::from_value(serde_json::Value::Object(all)).unwrap_or_default()
}

/// A spec: how to fill in defaults and validate.
pub trait Spec: Default + Clone + Serialize + DeserializeOwned {
    /// Fills in Calico's defaults for absent fields.
    fn apply_defaults(&mut self, _meta: &Metadata) {}
    /// Checks the values (field paths relative to `spec`).
    fn validate(&self, meta: &Metadata) -> Result<(), Invalid>;
    /// What `apply` refuses that an older tortie may have stored: checked
    /// for new documents only, so a stored record still loads and its
    /// consumer decides (it keeps what it enforced before).
    fn refuse(&self, _meta: &Metadata) -> Result<(), Invalid> {
        Ok(())
    }
}

/// Any supported resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    /// BGPConfiguration.
    BgpConfiguration(Object<BgpConfigurationSpec>),
    /// BGPPeer.
    BgpPeer(Object<BgpPeerSpec>),
    /// BGPFilter.
    BgpFilter(Object<BgpFilterSpec>),
    /// Node.
    Node(Object<NodeSpec>),
    /// IPPool.
    IpPool(Object<IpPoolSpec>),
    /// IPAMConfig.
    IpamConfig(Object<IpamConfigSpec>),
    /// WorkloadEndpoint.
    WorkloadEndpoint(Object<WorkloadEndpointSpec>),
    /// NetworkPolicy.
    NetworkPolicy(Object<NetworkPolicySpec>),
    /// GlobalNetworkPolicy.
    GlobalNetworkPolicy(Object<GlobalNetworkPolicySpec>),
    /// HostEndpoint.
    HostEndpoint(Object<HostEndpointSpec>),
    /// Profile.
    Profile(Object<ProfileSpec>),
    /// NetworkSet.
    NetworkSet(Object<NetworkSetSpec>),
    /// GlobalNetworkSet.
    GlobalNetworkSet(Object<NetworkSetSpec>),
    /// FelixConfiguration.
    FelixConfiguration(Object<FelixConfigurationSpec>),
    /// Tier.
    Tier(Object<TierSpec>),
}

/// Runs `$body` with `$o` bound to the typed object, whatever the kind.
macro_rules! with_object {
    ($r:expr, $o:ident => $body:expr) => {
        match $r {
            Resource::BgpConfiguration($o) => $body,
            Resource::BgpPeer($o) => $body,
            Resource::BgpFilter($o) => $body,
            Resource::Node($o) => $body,
            Resource::IpPool($o) => $body,
            Resource::IpamConfig($o) => $body,
            Resource::WorkloadEndpoint($o) => $body,
            Resource::NetworkPolicy($o) => $body,
            Resource::GlobalNetworkPolicy($o) => $body,
            Resource::HostEndpoint($o) => $body,
            Resource::Profile($o) => $body,
            Resource::NetworkSet($o) => $body,
            Resource::GlobalNetworkSet($o) => $body,
            Resource::FelixConfiguration($o) => $body,
            Resource::Tier($o) => $body,
        }
    };
}

/// A document that cannot be used: which one, where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document {document}{name}: {message}")]
pub struct DocumentError {
    /// 1-based position in the input.
    pub document: usize,
    /// ` (Kind name)` when known, for the message.
    pub name: String,
    /// Field path, value and reason.
    pub message: String,
}

impl Resource {
    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            Resource::BgpConfiguration(_) => Kind::BgpConfiguration,
            Resource::BgpPeer(_) => Kind::BgpPeer,
            Resource::BgpFilter(_) => Kind::BgpFilter,
            Resource::Node(_) => Kind::Node,
            Resource::IpPool(_) => Kind::IpPool,
            Resource::IpamConfig(_) => Kind::IpamConfig,
            Resource::WorkloadEndpoint(_) => Kind::WorkloadEndpoint,
            Resource::NetworkPolicy(_) => Kind::NetworkPolicy,
            Resource::GlobalNetworkPolicy(_) => Kind::GlobalNetworkPolicy,
            Resource::HostEndpoint(_) => Kind::HostEndpoint,
            Resource::Profile(_) => Kind::Profile,
            Resource::NetworkSet(_) => Kind::NetworkSet,
            Resource::GlobalNetworkSet(_) => Kind::GlobalNetworkSet,
            Resource::FelixConfiguration(_) => Kind::FelixConfiguration,
            Resource::Tier(_) => Kind::Tier,
        }
    }

    /// The metadata.
    pub fn metadata(&self) -> &Metadata {
        with_object!(self, o => &o.metadata)
    }

    /// The metadata, to change.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        with_object!(self, o => &mut o.metadata)
    }

    /// The datastore key: `<prefix><plural>/[<namespace>/]<name>`.
    pub fn key(&self) -> String {
        let meta = self.metadata();
        self.kind().key(meta.namespace.as_deref(), &meta.name)
    }

    /// The resource as stored (JSON, defaults applied, no resourceVersion).
    pub fn to_json(&self) -> Vec<u8> {
        let mut stored = self.clone();
        stored.metadata_mut().resource_version = None;
        with_object!(&stored, o => serde_json::to_vec(o)).unwrap_or_default()
    }

    /// The resource as YAML.
    pub fn to_yaml(&self) -> String {
        with_object!(self, o => serde_yaml_ng::to_string(o)).unwrap_or_default()
    }

    /// The resource as a JSON value.
    pub fn to_value(&self) -> serde_json::Value {
        with_object!(self, o => serde_json::to_value(o)).unwrap_or_default()
    }

    /// Defaults and validates a resource built in code, exactly as a
    /// document is (`n`: its position, for the error).
    pub fn checked(&self, n: usize) -> Result<Resource, DocumentError> {
        let value = serde_yaml_ng::to_value(self.to_value()).map_err(|e| DocumentError {
            document: n,
            name: format!(" ({} {})", self.kind().info().name, self.metadata().name),
            message: e.to_string(),
        })?;
        decode(self.kind(), value, n, true)
    }

    /// Reads a stored resource, setting `resourceVersion` to `revision`.
    pub fn from_stored(kind: Kind, bytes: &[u8], revision: i64) -> Result<Resource, DocumentError> {
        let value: serde_yaml_ng::Value = serde_json::from_slice(bytes).map_err(|e| DocumentError {
            document: 1,
            name: format!(" (stored {})", kind.info().name),
            message: e.to_string(),
        })?;
        let mut r = decode(kind, value, 1, false)?;
        r.metadata_mut().resource_version = Some(revision.to_string());
        Ok(r)
    }
}

/// Reads every document of a multi-document YAML (or JSON) text, fills in
/// defaults and validates each. A `kind: List` document stands for its
/// `items`, as calicoctl reads it. Fails on the first bad document.
pub fn parse_documents(text: &str) -> Result<Vec<Resource>, DocumentError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let n = i + 1;
        let value = serde_yaml_ng::Value::deserialize(doc).map_err(|e| DocumentError {
            document: n,
            name: String::new(),
            message: format!("malformed YAML: {e}"),
        })?;
        if value.is_null() {
            continue; // an empty document (`---` at the end)
        }
        if value.get("kind").and_then(|k| k.as_str()) == Some("List") {
            let items = value.get("items").and_then(|i| i.as_sequence()).cloned().ok_or_else(|| DocumentError {
                document: n,
                name: " (List)".into(),
                message: "items: a List needs a list of items".into(),
            })?;
            for (j, item) in items.into_iter().enumerate() {
                out.push(document(item, n).map_err(|mut e| {
                    e.name = format!(" (List item {}){}", j + 1, e.name);
                    e
                })?);
            }
            continue;
        }
        out.push(document(value, n)?);
    }
    Ok(out)
}

/// One document: its kind and API version checked, then decoded.
fn document(value: serde_yaml_ng::Value, n: usize) -> Result<Resource, DocumentError> {
    let kind_name = value.get("kind").and_then(|k| k.as_str()).unwrap_or_default().to_string();
    let kind = Kind::from_name(&kind_name).ok_or_else(|| DocumentError {
        document: n,
        name: String::new(),
        message: if kind_name.is_empty() {
            "no `kind`".into()
        } else {
            format!("unknown kind `{kind_name}` (supported: {})", Kind::names().join(", "))
        },
    })?;
    let api = value.get("apiVersion").and_then(|a| a.as_str()).unwrap_or_default();
    if api != API_VERSION {
        return Err(DocumentError {
            document: n,
            name: format!(" ({kind_name})"),
            message: format!("apiVersion: `{api}` (must be {API_VERSION})"),
        });
    }
    decode(kind, value, n, true)
}

/// Reads a typed object; when fields are unknown, names every one of them
/// (serde stops at the first: each is taken out and the rest read again).
fn read_all_unknown<T: DeserializeOwned>(mut value: serde_yaml_ng::Value) -> Result<T, String> {
    let mut unknown = Vec::new();
    loop {
        let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(t) if unknown.is_empty() => return Ok(t),
            Ok(_) => return Err(unknown.join("\n  ")),
            Err(e) => e,
        };
        let path = e.path().to_string();
        let said = plain_words(&e.inner().to_string(), value_at(&value, e.path()));
        let message = if path == "." { said } else { format!("{path}: {said}") };
        let field = message.split_once("unknown field `").and_then(|(_, rest)| rest.split_once('`')).map(|(f, _)| f);
        let removed = field.is_some_and(|f| remove_field(&mut value, e.path(), f));
        unknown.push(message);
        if !removed || unknown.len() >= 50 {
            return Err(unknown.join("\n  "));
        }
    }
}

/// What the operator wrote at `path` (for messages).
fn value_at<'a>(value: &'a serde_yaml_ng::Value, path: &serde_path_to_error::Path) -> Option<&'a serde_yaml_ng::Value> {
    use serde_path_to_error::Segment;
    path.iter().try_fold(value, |at, segment| match segment {
        Segment::Map { key } => at.get(key.as_str()),
        Segment::Seq { index } => at.get(*index),
        Segment::Enum { .. } | Segment::Unknown => None,
    })
}

/// serde's message in an operator's words: the value written and what is
/// expected, never a Rust type name.
fn plain_words(message: &str, written: Option<&serde_yaml_ng::Value>) -> String {
    const EXPECTED: [(&str, &str); 8] = [
        ("untagged enum Raw", "an AS number (1–4294967295, or asdot X.Y)"),
        ("untagged enum Port", "a port (0–65535) or a range lo:hi"),
        ("untagged enum Protocol", "a protocol (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite) or a number 1–255"),
        ("expected u8", "a whole number 0–255"),
        ("expected u16", "a whole number 0–65535"),
        ("expected u32", "a whole number 0–4294967295"),
        ("expected u64", "a whole number 0 or more"),
        ("expected f64", "a number"),
    ];
    let shown = written.map(|v| serde_yaml_ng::to_string(v).unwrap_or_default().trim_end().to_string());
    match (EXPECTED.iter().find(|(rust, _)| message.contains(rust)), shown) {
        (Some((_, expected)), Some(v)) => format!("`{v}`: expected {expected}"),
        (Some((_, expected)), None) => format!("expected {expected}"),
        (None, _) => message.to_string(),
    }
}

/// Takes `field` out of the mapping at `path`; whether it was there.
fn remove_field(value: &mut serde_yaml_ng::Value, path: &serde_path_to_error::Path, field: &str) -> bool {
    use serde_path_to_error::Segment;
    // The path ends at the unknown field itself: its mapping is one up.
    let mut segments: Vec<&Segment> = path.iter().collect();
    if matches!(segments.last(), Some(Segment::Map { key }) if key == field) {
        segments.pop();
    }
    let mut at = value;
    for segment in segments {
        let next = match segment {
            Segment::Map { key } => at.get_mut(key.as_str()),
            Segment::Seq { index } => at.get_mut(*index),
            Segment::Enum { .. } | Segment::Unknown => None,
        };
        match next {
            Some(v) => at = v,
            None => return false,
        }
    }
    at.as_mapping_mut().and_then(|m| m.remove(field)).is_some()
}

/// Decodes one document of a known kind, then defaults and validates it
/// (`new`: a document being applied, not one read back from the store).
fn decode(kind: Kind, value: serde_yaml_ng::Value, n: usize, new: bool) -> Result<Resource, DocumentError> {
    fn typed<S: Spec>(
        kind: Kind,
        value: serde_yaml_ng::Value,
        n: usize,
        new: bool,
        wrap: fn(Object<S>) -> Resource,
    ) -> Result<Resource, DocumentError> {
        let label = value.get("metadata").and_then(|m| m.get("name")).and_then(|v| v.as_str()).unwrap_or("");
        let name = format!(" ({} {label})", kind.info().name);
        let mut obj: Object<S> =
            read_all_unknown(value).map_err(|message| DocumentError { document: n, name: name.clone(), message })?;
        validate::metadata(kind, &mut obj.metadata).map_err(|e| e.in_document(n, &name, "metadata"))?;
        obj.spec.apply_defaults(&obj.metadata);
        obj.spec.validate(&obj.metadata).map_err(|e| e.in_document(n, &name, "spec"))?;
        if new {
            // tortie's annotations are read leniently from the store (a bad one: the defaults).
            session::SessionSettings::from_annotations(kind, &obj.metadata.name, &obj.metadata.annotations)
                .map_err(|e| e.in_document(n, &name, "metadata"))?;
            obj.spec.refuse(&obj.metadata).map_err(|e| e.in_document(n, &name, "spec"))?;
        }
        Ok(wrap(obj))
    }
    match kind {
        Kind::BgpConfiguration => typed(kind, value, n, new, Resource::BgpConfiguration),
        Kind::BgpPeer => typed(kind, value, n, new, Resource::BgpPeer),
        Kind::BgpFilter => typed(kind, value, n, new, Resource::BgpFilter),
        Kind::Node => typed(kind, value, n, new, Resource::Node),
        Kind::IpPool => typed(kind, value, n, new, Resource::IpPool),
        Kind::IpamConfig => typed(kind, value, n, new, Resource::IpamConfig),
        Kind::WorkloadEndpoint => typed(kind, value, n, new, Resource::WorkloadEndpoint),
        Kind::NetworkPolicy => typed(kind, value, n, new, Resource::NetworkPolicy),
        Kind::GlobalNetworkPolicy => typed(kind, value, n, new, Resource::GlobalNetworkPolicy),
        Kind::HostEndpoint => typed(kind, value, n, new, Resource::HostEndpoint),
        Kind::Profile => typed(kind, value, n, new, Resource::Profile),
        Kind::NetworkSet => typed(kind, value, n, new, Resource::NetworkSet),
        Kind::GlobalNetworkSet => typed(kind, value, n, new, Resource::GlobalNetworkSet),
        Kind::FelixConfiguration => typed(kind, value, n, new, Resource::FelixConfiguration),
        Kind::Tier => typed(kind, value, n, new, Resource::Tier),
    }
}
