//! BGPConfiguration, and what BGPPeer and BGPFilter share with it.

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

use super::bgp_peer::PeerPassword;
use super::validate::{self, Invalid};
use super::{Metadata, Spec};

/// Calico's default AS number.
pub const DEFAULT_AS_NUMBER: u32 = 64512;
/// The BGP port.
pub const DEFAULT_LISTEN_PORT: u16 = 179;

/// An AS number as written: a number, a string, or asdot `X.Y` (RFC 5396).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawAs {
    Num(u64),
    Text(String),
}

impl RawAs {
    fn value<E: serde::de::Error>(self) -> Result<u32, E> {
        let bad = |v: &str| E::custom(format!("`{v}` is not an AS number (1–4294967295, or asdot X.Y)"));
        match self {
            RawAs::Num(n) => u32::try_from(n).map_err(|_| bad(&n.to_string())),
            RawAs::Text(t) => match t.split_once('.') {
                Some((hi, lo)) => {
                    let (hi, lo) = (hi.parse::<u16>().map_err(|_| bad(&t))?, lo.parse::<u16>().map_err(|_| bad(&t))?);
                    Ok(u32::from(hi) << 16 | u32::from(lo))
                }
                None => t.parse().map_err(|_| bad(&t)),
            },
        }
    }
}

/// Reads an AS number written as a number, a string, or asdot `X.Y` (RFC 5396).
pub(super) fn as_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Option::<RawAs>::deserialize(d)?.map(RawAs::value).transpose()
}

/// Reads a list of AS numbers, each as [`as_number`] reads one.
pub(super) fn as_numbers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    Vec::<RawAs>::deserialize(d)?.into_iter().map(RawAs::value).collect()
}

/// A `cidr` entry (service IP advertisement).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceCidr {
    /// The prefix.
    pub cidr: IpNet,
}

/// A named community (`name: value`, value `aa:nn` or `aa:nn:mm`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Community {
    /// Name to refer to it by.
    pub name: String,
    /// Standard (`65001:100`) or large (`65001:1:2`) community.
    pub value: String,
}

/// Communities to attach to a prefix when advertising it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixAdvertisement {
    /// The prefix (or the pools/blocks inside it).
    pub cidr: IpNet,
    /// Community names (from `communities`) or literal values.
    #[serde(default)]
    pub communities: Vec<String>,
}

/// BGPConfiguration spec (name `default` for the cluster, `node.<name>` per node).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpConfigurationSpec {
    /// Log level of the BGP speaker (Info, Debug, Warning, Error, Fatal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    /// Full iBGP mesh between nodes (default true).
    #[serde(default, rename = "nodeToNodeMeshEnabled", skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    /// Default AS of nodes (default 64512).
    #[serde(default, deserialize_with = "as_number", skip_serializing_if = "Option::is_none")]
    pub as_number: Option<u32>,
    /// BGP port (default 179).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    /// Service cluster IP ranges to advertise.
    #[serde(default, rename = "serviceClusterIPs", skip_serializing_if = "Vec::is_empty")]
    pub service_cluster_ips: Vec<ServiceCidr>,
    /// Service external IP ranges to advertise.
    #[serde(default, rename = "serviceExternalIPs", skip_serializing_if = "Vec::is_empty")]
    pub service_external_ips: Vec<ServiceCidr>,
    /// Service load-balancer IP ranges to advertise.
    #[serde(default, rename = "serviceLoadBalancerIPs", skip_serializing_if = "Vec::is_empty")]
    pub service_load_balancer_ips: Vec<ServiceCidr>,
    /// Named communities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<Community>,
    /// Communities per advertised prefix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    /// Graceful restart time for mesh peers (e.g. `120s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_max_restart_time: Option<String>,
    /// `NodeIP` (listen on the node address only) or `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_mode: Option<String>,
    /// TCP MD5 key (RFC 2385) of every node-to-node mesh session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<PeerPassword>,
}

/// A `aa:nn` or `aa:nn:mm` community value.
pub(super) fn community_value(field: &str, v: &str) -> Result<(), Invalid> {
    let parts: Vec<&str> = v.split(':').collect();
    let ok = match parts.as_slice() {
        [a, n] => a.parse::<u16>().is_ok() && n.parse::<u16>().is_ok(),
        [a, b, c] => a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok() && c.parse::<u32>().is_ok(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(field, v, "a community is aa:nn (16-bit each) or aa:nn:mm (32-bit each)"))
    }
}

/// A graceful-restart time (RFC 4724 §3: 12 bits of seconds) from a Go
/// duration (`120s`, `2m0s`); `None`: not one.
pub fn restart_time(v: &str) -> Option<u16> {
    whole_seconds(v, 4095)?.try_into().ok()
}

/// A Go duration of whole seconds, at most `max`.
fn whole_seconds(v: &str, max: u64) -> Option<u64> {
    let ms = super::felix::duration_ms(v)?;
    (ms % 1000 == 0 && ms / 1000 <= max).then_some(ms / 1000)
}

pub(super) fn restart_field(field: &str, v: &str) -> Result<(), Invalid> {
    match restart_time(v) {
        Some(_) => Ok(()),
        None => Err(Invalid::new(field, v, "whole seconds up to 4095 (RFC 4724's 12 bits), such as 120s or 2m0s")),
    }
}

impl BgpConfigurationSpec {
    /// A node's effective configuration: the fields its `node.<name>`
    /// document sets, over `default`'s.
    pub fn merged(default: Option<&BgpConfigurationSpec>, node: Option<&BgpConfigurationSpec>) -> Self {
        super::overlay(default, node)
    }

    /// The BGP speaker's log level as a `tracing` level (`None`: unset).
    pub fn log_level(&self) -> Option<&'static str> {
        match self.log_severity_screen.as_deref()? {
            "Debug" => Some("debug"),
            "Info" => Some("info"),
            "Warning" => Some("warn"),
            _ => Some("error"),
        }
    }

    /// The graceful-restart time advertised to mesh peers (Calico's default 120 s).
    pub fn mesh_restart_time(&self) -> u16 {
        self.node_mesh_max_restart_time.as_deref().and_then(restart_time).unwrap_or(DEFAULT_RESTART_TIME)
    }
}

/// Calico's graceful-restart time (RFC 4724), seconds.
pub const DEFAULT_RESTART_TIME: u16 = 120;

/// BIRD's default long-lived stale time, which Calico leaves in place when
/// a BGPPeer sets no `maxRestartTime`.
pub const DEFAULT_LONG_LIVED_STALE_TIME: u32 = 3600;

/// Calico's `restartMode` for RFC 9494.
pub(super) const LONG_LIVED: &str = "LongLivedGracefulRestart";

/// Calico's `failureDetectionMode` for BFD.
pub(super) const BFD_IF_DIRECTLY_CONNECTED: &str = "BFDIfDirectlyConnected";

/// A long-lived stale time (RFC 9494 §3: 24 bits of seconds) from a Go
/// duration; `None`: not one.
pub(super) fn long_lived_stale_time(v: &str) -> Option<u32> {
    whole_seconds(v, 0x00ff_ffff)?.try_into().ok()
}

impl Spec for BgpConfigurationSpec {
    fn apply_defaults(&mut self, meta: &Metadata) {
        // A node's document holds only what it overrides.
        if meta.name != "default" {
            return;
        }
        self.node_to_node_mesh_enabled.get_or_insert(true);
        self.as_number.get_or_insert(DEFAULT_AS_NUMBER);
        self.listen_port.get_or_insert(DEFAULT_LISTEN_PORT);
        self.log_severity_screen.get_or_insert_with(|| "Info".into());
    }

    fn validate(&self, meta: &Metadata) -> Result<(), Invalid> {
        if meta.name != "default" && !meta.name.starts_with("node.") {
            return Err(Invalid::new("metadata.name", &meta.name, "must be `default` or `node.<node name>`"));
        }
        if let Some(asn) = self.as_number {
            validate::as_number("asNumber", asn)?;
        }
        if self.listen_port == Some(0) {
            return Err(Invalid::new("listenPort", 0, "must be 1–65535"));
        }
        if let Some(level) = &self.log_severity_screen
            && !["Debug", "Info", "Warning", "Error", "Fatal"].contains(&level.as_str())
        {
            return Err(Invalid::new("logSeverityScreen", level, "one of Debug, Info, Warning, Error, Fatal"));
        }
        for (i, c) in self.communities.iter().enumerate() {
            community_value(&format!("communities[{i}].value"), &c.value)?;
        }
        for (i, adv) in self.prefix_advertisements.iter().enumerate() {
            for (j, c) in adv.communities.iter().enumerate() {
                if !self.communities.iter().any(|n| &n.name == c) {
                    community_value(&format!("prefixAdvertisements[{i}].communities[{j}]"), c)?;
                }
            }
        }
        if let Some(mode) = &self.bind_mode
            && mode != "None"
            && mode != "NodeIP"
        {
            return Err(Invalid::new("bindMode", mode, "one of None, NodeIP"));
        }
        Ok(())
    }

    fn refuse(&self, meta: &Metadata) -> Result<(), Invalid> {
        if let Some(t) = &self.node_mesh_max_restart_time {
            restart_field("nodeMeshMaxRestartTime", t)?;
        }
        if meta.name != "default" {
            // Calico: cluster-wide only (a node's AS is its Node's
            // `bgp.asNumber`). Calico's defaults pass: older tortie filled
            // them in on every document.
            let cluster_wide = [
                ("nodeToNodeMeshEnabled", self.node_to_node_mesh_enabled.is_some_and(|m| !m)),
                ("asNumber", self.as_number.is_some_and(|a| a != DEFAULT_AS_NUMBER)),
                ("serviceClusterIPs", !self.service_cluster_ips.is_empty()),
                ("serviceExternalIPs", !self.service_external_ips.is_empty()),
                ("serviceLoadBalancerIPs", !self.service_load_balancer_ips.is_empty()),
                ("nodeMeshPassword", self.node_mesh_password.is_some()),
            ];
            if let Some((field, _)) = cluster_wide.iter().find(|(_, set)| *set) {
                return Err(Invalid::new(
                    *field,
                    "(set)",
                    format!("only the `default` BGPConfiguration may set it, not {}", meta.name),
                ));
            }
        }
        Ok(())
    }
}
