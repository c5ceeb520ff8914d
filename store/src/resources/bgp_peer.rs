//! BGPPeer: a session of the node's speaker, Calico's way.

use serde::{Deserialize, Serialize};

use super::bgp::{
    BFD_IF_DIRECTLY_CONNECTED, DEFAULT_LONG_LIVED_STALE_TIME, DEFAULT_RESTART_TIME, LONG_LIVED, as_number,
    long_lived_stale_time, restart_field, restart_time,
};
use super::validate::{self, Invalid};
use super::{Metadata, Spec};

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
