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
