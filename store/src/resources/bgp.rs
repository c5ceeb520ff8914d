//! BGPConfiguration, BGPPeer and BGPFilter.

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

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
fn as_numbers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
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
fn community_value(field: &str, v: &str) -> Result<(), Invalid> {
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

fn restart_field(field: &str, v: &str) -> Result<(), Invalid> {
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
const LONG_LIVED: &str = "LongLivedGracefulRestart";

/// Calico's `failureDetectionMode` for BFD.
const BFD_IF_DIRECTLY_CONNECTED: &str = "BFDIfDirectlyConnected";

/// A long-lived stale time (RFC 9494 §3: 24 bits of seconds) from a Go
/// duration; `None`: not one.
fn long_lived_stale_time(v: &str) -> Option<u32> {
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

/// Which source address a BGPPeer session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceAddress {
    /// The node's address (default).
    UseNodeIP,
    /// Let routing choose.
    None,
}

/// A key in a Kubernetes secret (the BGP password).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key in the secret.
    pub key: String,
}

/// `password: {secretKeyRef: …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerPassword {
    /// Where the password is.
    pub secret_key_ref: SecretKeyRef,
}

/// BGPPeer spec: an explicit peer (`peerIP` + `asNumber`) or the nodes
/// matching `peerSelector`; for every node, one node, or the nodes matching
/// `nodeSelector`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpPeerSpec {
    /// The node this peering applies to (empty: all nodes, or `nodeSelector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Nodes this peering applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// The peer's address, optionally `:port`.
    #[serde(default, rename = "peerIP", skip_serializing_if = "Option::is_none")]
    pub peer_ip: Option<String>,
    /// The peer's AS.
    #[serde(default, deserialize_with = "as_number", skip_serializing_if = "Option::is_none")]
    pub as_number: Option<u32>,
    /// Peer with the nodes matching this selector instead of `peerIP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_selector: Option<String>,
    /// Keep the next hop of routes from this peer when re-advertising.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_original_next_hop: bool,
    /// TCP MD5 password (RFC 2385).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PeerPassword>,
    /// Source address choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<SourceAddress>,
    /// Graceful restart time (e.g. `120s`); under
    /// `restartMode: LongLivedGracefulRestart`, the long-lived stale time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart_time: Option<String>,
    /// Keepalive interval (Go duration; unset: a third of the hold time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<String>,
    /// How many times our own AS may appear in received paths.
    #[serde(default, rename = "numAllowedLocalASNumbers", skip_serializing_if = "Option::is_none")]
    pub num_allowed_local_as_numbers: Option<u32>,
    /// Our AS on these sessions instead of the node's (BIRD's `local as`).
    #[serde(
        default,
        rename = "localASNumber",
        deserialize_with = "as_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_as_number: Option<u32>,
    /// Next hop of what we send: `Auto` (ours towards eBGP peers and for
    /// our own routes, kept towards iBGP peers), `Self` or `Keep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_mode: Option<String>,
    /// `Auto`: the nodes a `peerSelector` selects peer back; `Manual`:
    /// only if a BGPPeer of their own says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_peering: Option<String>,
    /// `GracefulRestart` (Calico's default) or `LongLivedGracefulRestart`
    /// (RFC 9494: also the long-lived graceful restart capability, its
    /// stale time `maxRestartTime`, as Calico configures BIRD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_mode: Option<String>,
    /// `Recursive` (Calico's default) or `DirectIfDirectlyConnected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bird_gateway_mode: Option<String>,
    /// A gateway to reach the peer through (unset: the peer is reachable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable_by: Option<String>,
    /// Peer with this node's pods that the selector matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_workload_selector: Option<String>,
    /// `None` (Calico's default) or `BFDIfDirectlyConnected`: BFD (RFC
    /// 5880) on the sessions to a directly connected peer, which go down
    /// as soon as it does (intervals: `tortie.io/bfd-interval`,
    /// `tortie.io/bfd-multiplier`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_detection_mode: Option<String>,
    /// GTSM: the peer is at most this many hops away (RFC 5082).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_security: Option<u8>,
    /// BGPFilter names, applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
}

impl BgpPeerSpec {
    /// The peer's address, without a port (`None`: no or an invalid peerIP).
    pub fn peer_address(&self) -> Option<std::net::IpAddr> {
        validate::ip_with_port("peerIP", self.peer_ip.as_deref()?).ok().map(|(ip, _)| ip)
    }

    /// The keepalive interval, seconds (`None`: unset or invalid).
    pub fn keepalive(&self) -> Option<u16> {
        let ms = super::felix::duration_ms(self.keepalive_time.as_deref()?)?;
        u16::try_from(ms / 1000).ok().filter(|s| (1..=21845).contains(s) && ms % 1000 == 0)
    }

    /// Whether `failureDetectionMode` asks for BFD.
    pub fn bfd(&self) -> bool {
        self.failure_detection_mode.as_deref() == Some(BFD_IF_DIRECTLY_CONNECTED)
    }

    /// Whether `restartMode` asks for long-lived graceful restart.
    fn long_lived(&self) -> bool {
        self.restart_mode.as_deref() == Some(LONG_LIVED)
    }

    /// The graceful-restart time advertised to this peer: `maxRestartTime`,
    /// unless that is the long-lived stale time.
    pub fn restart_time(&self) -> u16 {
        match self.max_restart_time.as_deref() {
            Some(t) if !self.long_lived() => restart_time(t).unwrap_or(DEFAULT_RESTART_TIME),
            _ => DEFAULT_RESTART_TIME,
        }
    }

    /// The long-lived stale time advertised to this peer, and the longest
    /// its routes are kept past its restart time (RFC 9494); `None` without
    /// `restartMode: LongLivedGracefulRestart`.
    pub fn long_lived_stale_time(&self) -> Option<u32> {
        self.long_lived().then(|| {
            self.max_restart_time.as_deref().and_then(long_lived_stale_time).unwrap_or(DEFAULT_LONG_LIVED_STALE_TIME)
        })
    }
}

impl Spec for BgpPeerSpec {
    /// Ranges an older tortie stored unchecked: its consumers fall back to
    /// the defaults for such values, so the record still loads.
    fn refuse(&self, meta: &Metadata) -> Result<(), Invalid> {
        // The hold time proposed: the annotation's, else the speaker's 90 s.
        let hold = super::SessionSettings::from_annotations(super::Kind::BgpPeer, &meta.name, &meta.annotations)?
            .hold_time
            .unwrap_or(90);
        if let Some(k) = self.keepalive()
            && hold > 0
            && k >= hold
        {
            return Err(Invalid::new("keepaliveTime", k, format!("less than the hold time {hold} s (RFC 4271 §10)")));
        }
        match &self.max_restart_time {
            Some(t) if self.long_lived() && long_lived_stale_time(t).is_none() => {
                return Err(Invalid::new(
                    "maxRestartTime",
                    t,
                    "under LongLivedGracefulRestart, the long-lived stale time: whole seconds up to 16777215 (RFC 9494's 24 bits), such as 1h0m0s",
                ));
            }
            Some(t) if !self.long_lived() => restart_field("maxRestartTime", t)?,
            _ => {}
        }
        if let Some(k) = self.keepalive_time.as_deref().filter(|_| self.keepalive().is_none()) {
            return Err(Invalid::new("keepaliveTime", k, "whole seconds, 1–21845, like 20s"));
        }
        if let Some(n) = self.num_allowed_local_as_numbers.filter(|n| *n > 10) {
            return Err(Invalid::new("numAllowedLocalASNumbers", n, "0–10"));
        }
        Ok(())
    }

    fn apply_defaults(&mut self, _meta: &Metadata) {
        if self.peer_ip.is_some() {
            self.source_address.get_or_insert(SourceAddress::UseNodeIP);
        }
    }

    fn validate(&self, _meta: &Metadata) -> Result<(), Invalid> {
        if self.node.is_some() && self.node_selector.is_some() {
            return Err(Invalid::new(
                "nodeSelector",
                self.node_selector.as_deref().unwrap_or(""),
                "use node or nodeSelector, not both",
            ));
        }
        if let Some(s) = &self.node_selector {
            validate::selector("nodeSelector", s)?;
        }
        match (&self.peer_ip, &self.peer_selector) {
            (Some(ip), None) => {
                validate::ip_with_port("peerIP", ip)?;
                let asn = self.as_number.ok_or_else(|| Invalid::new("asNumber", "", "required with peerIP"))?;
                validate::as_number("asNumber", asn)?;
            }
            (None, Some(s)) => validate::selector("peerSelector", s)?,
            (Some(ip), Some(_)) => return Err(Invalid::new("peerIP", ip, "use peerIP or peerSelector, not both")),
            (None, None) => {
                return Err(Invalid::new("peerIP", "", "one of peerIP (with asNumber) or peerSelector is required"));
            }
        }
        if let Some(asn) = self.local_as_number {
            validate::as_number("localASNumber", asn)?;
        }
        if let Some(m) = self.next_hop_mode.as_deref().filter(|m| !["Auto", "Self", "Keep"].contains(m)) {
            return Err(Invalid::new("nextHopMode", m, "one of Auto, Self, Keep"));
        }
        if self.keep_original_next_hop && self.next_hop_mode.as_deref().is_some_and(|m| m != "Keep") {
            return Err(Invalid::new(
                "nextHopMode",
                self.next_hop_mode.as_deref().unwrap_or_default(),
                "keepOriginalNextHop: true says Keep",
            ));
        }
        // Calico's defaults (what tortie does) pass; the rest is refused by name.
        let unset = |v: &Option<String>| v.as_deref().is_none_or(str::is_empty);
        if let Some(m) = self.restart_mode.as_deref().filter(|m| !["GracefulRestart", LONG_LIVED, ""].contains(m)) {
            return Err(Invalid::new("restartMode", m, "GracefulRestart or LongLivedGracefulRestart"));
        }
        if let Some(m) = self.bird_gateway_mode.as_deref().filter(|m| *m != "Recursive" && !m.is_empty()) {
            return Err(Invalid::new(
                "birdGatewayMode",
                m,
                "Recursive only: tortie installs a learned route via its next hop and lets the kernel find the way to it",
            ));
        }
        if !unset(&self.reachable_by) {
            let v = self.reachable_by.as_deref().unwrap_or_default();
            return Err(Invalid::new("reachableBy", v, "tortie adds no route towards a peer; route to it yourself"));
        }
        if !unset(&self.local_workload_selector) {
            let v = self.local_workload_selector.as_deref().unwrap_or_default();
            return Err(Invalid::new("localWorkloadSelector", v, "tortie does not peer with pods yet"));
        }
        if let Some(m) =
            self.failure_detection_mode.as_deref().filter(|m| !["None", BFD_IF_DIRECTLY_CONNECTED, ""].contains(m))
        {
            return Err(Invalid::new("failureDetectionMode", m, "None or BFDIfDirectlyConnected"));
        }
        if let Some(r) = self.reverse_peering.as_deref().filter(|r| !["Auto", "Manual"].contains(r)) {
            return Err(Invalid::new("reversePeering", r, "one of Auto, Manual"));
        }
        if self.reverse_peering.as_deref() == Some("Manual") && self.peer_selector.is_none() {
            // Auto is Calico's default, meaningful with peerSelector and harmless without.
            return Err(Invalid::new("reversePeering", "Manual", "only with peerSelector"));
        }
        if self.ttl_security == Some(0) {
            return Err(Invalid::new("ttlSecurity", 0, "hops must be 1–255"));
        }
        Ok(())
    }
}

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
