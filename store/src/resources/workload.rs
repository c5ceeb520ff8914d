//! WorkloadEndpoint: a pod's interface, written by the CNI plugin.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::validate::Invalid;
use super::{Metadata, Spec};

/// A named port of the workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointPort {
    /// Port name.
    pub name: String,
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// Port number.
    pub port: u16,
}

/// WorkloadEndpoint spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEndpointSpec {
    /// `k8s`, `cni`…
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub orchestrator: String,
    /// Workload name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload: String,
    /// The node hosting it.
    #[serde(default)]
    pub node: String,
    /// Container id.
    #[serde(rename = "containerID", default, skip_serializing_if = "String::is_empty")]
    pub container_id: String,
    /// Pod name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    /// Interface name in the pod (`eth0`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    /// Service account.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_name: String,
    /// Addresses (`/32` or `/128`).
    #[serde(default, rename = "ipNetworks")]
    pub ip_networks: Vec<IpNet>,
    /// Profiles (namespace and service-account profiles).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// Host side interface name.
    #[serde(default)]
    pub interface_name: String,
    /// Pod interface MAC.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// Named ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

impl Spec for WorkloadEndpointSpec {
    fn validate(&self, _meta: &Metadata) -> Result<(), Invalid> {
        if self.node.is_empty() {
            return Err(Invalid::new("node", "", "required"));
        }
        if self.interface_name.len() > 15 {
            return Err(Invalid::new("interfaceName", &self.interface_name, "at most 15 characters (IFNAMSIZ)"));
        }
        for (i, p) in self.ports.iter().enumerate() {
            if !["TCP", "UDP", "SCTP"].contains(&p.protocol.as_str()) {
                return Err(Invalid::new(format!("ports[{i}].protocol"), &p.protocol, "one of TCP, UDP, SCTP"));
            }
        }
        Ok(())
    }
}

/// HostEndpoint spec: one of the node's own interfaces (or all of them,
/// `interfaceName: "*"`) under policy. Its labels (in the metadata) are what
/// GlobalNetworkPolicy selectors match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostEndpointSpec {
    /// The node it belongs to.
    pub node: String,
    /// The interface, or `*` for every interface of the node.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface_name: String,
    /// The addresses the endpoint has (used when rule selectors match it).
    #[serde(default, rename = "expectedIPs", skip_serializing_if = "Vec::is_empty")]
    pub expected_ips: Vec<std::net::IpAddr>,
    /// Profiles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// Named ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

impl Spec for HostEndpointSpec {
    fn validate(&self, _meta: &Metadata) -> Result<(), Invalid> {
        if self.node.is_empty() {
            return Err(Invalid::new("node", "", "required"));
        }
        if self.interface_name.is_empty() && self.expected_ips.is_empty() {
            return Err(Invalid::new("interfaceName", "", "an interface name, `*`, or expectedIPs"));
        }
        if self.interface_name.len() > 15 {
            return Err(Invalid::new("interfaceName", &self.interface_name, "at most 15 characters (IFNAMSIZ)"));
        }
        Ok(())
    }
}

/// Profile spec. tortie uses profiles for namespace labels: Calico's
/// Kubernetes controllers write one profile `kns.<namespace>` per namespace
/// whose `labelsToApply` are the namespace's labels, which policies'
/// `namespaceSelector`s match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileSpec {
    /// Labels given to the endpoints (for `kns.` profiles: of the namespace).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels_to_apply: std::collections::BTreeMap<String, String>,
}

impl Spec for ProfileSpec {
    fn validate(&self, _meta: &Metadata) -> Result<(), Invalid> {
        Ok(())
    }
}
