//! FelixConfiguration (`default` and `node.<name>`): the fields tortie
//! acts on, typed; every other field of Calico's schema accepted only at
//! Calico's own default (or unset), refused by name otherwise; a field
//! that is not Calico's refused by name. Every bad field is reported.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::felix_defaults::{ALSO_ACCEPTED, CALICO_DEFAULTS, CalicoDefault, WHY_DEFAULT_ONLY};
use super::validate::Invalid;
use super::{Metadata, Spec};

/// A failsafe port: protocol, port, optionally the remote network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtoPort {
    /// `TCP` or `UDP` (any case).
    pub protocol: String,
    /// The port.
    pub port: u16,
    /// Only for this remote network (`""`: any, as Calico exports it).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "empty_is_none")]
    pub net: Option<IpNet>,
}

impl ProtoPort {
    /// The IP protocol number (6 or 17; checked at apply).
    pub fn protocol_number(&self) -> Option<u8> {
        match self.protocol.to_ascii_lowercase().as_str() {
            "tcp" => Some(6),
            "udp" => Some(17),
            _ => None,
        }
    }
}

/// FelixConfiguration spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FelixConfigurationSpec {
    /// Ports the host always accepts, whatever host endpoint policy says
    /// (absent: Calico's defaults; `[]`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_inbound_host_ports: Option<Vec<ProtoPort>>,
    /// Ports the host may always connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_outbound_host_ports: Option<Vec<ProtoPort>>,
    /// Pod → own host traffic after the pod's egress policy: `Drop`,
    /// `Return` (host endpoint policy decides) or `Accept` (any case;
    /// tortie's default when unset is `Accept`, as Calico's Kubernetes
    /// manifests set it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_endpoint_to_host_action: Option<String>,
    /// The source address for natOutgoing (unset: the outgoing interface's).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "empty_is_none")]
    pub nat_outgoing_address: Option<IpAddr>,
    /// How often the route reconciler compares the kernel with what it
    /// wants even without events (Go duration; tortie's default 90s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_refresh_interval: Option<String>,
    /// How often tortie's nftables table is checked and repaired (tortie's
    /// default 30s); `nftablesRefreshInterval` wins when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_refresh_interval: Option<String>,
    /// The same, by its nftables name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables_refresh_interval: Option<String>,
    /// The daemon's log level: `Trace`, `Debug`, `Info`, `Warning`,
    /// `Error`, `Fatal` (any case; unless `TORTIE_LOG` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    /// Serve Prometheus metrics over TCP (unless `--metrics-listen` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_enabled: Option<bool>,
    /// Where (`""`: every address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_host: Option<String>,
    /// Port (Calico's default 9091).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_port: Option<u16>,
    /// MTU of the IPIP tunnel device (0 or unset: the underlay's less the
    /// 20-byte outer header).
    #[serde(default, rename = "ipipMTU", skip_serializing_if = "Option::is_none")]
    pub ipip_mtu: Option<u16>,
    /// MTU of the VXLAN device (0 or unset: the underlay's less the
    /// 50-byte encapsulation).
    #[serde(default, rename = "vxlanMTU", skip_serializing_if = "Option::is_none")]
    pub vxlan_mtu: Option<u16>,
    /// MTU of the IPv6 VXLAN device (0 or unset: the underlay's less the
    /// 70-byte encapsulation).
    #[serde(default, rename = "vxlanMTUV6", skip_serializing_if = "Option::is_none")]
    pub vxlan_mtu_v6: Option<u16>,
    /// The VXLAN network identifier (Calico's default 4096).
    #[serde(default, rename = "vxlanVNI", skip_serializing_if = "Option::is_none")]
    pub vxlan_vni: Option<u32>,
    /// The VXLAN UDP port (Calico's default 4789, RFC 7348's).
    #[serde(default, rename = "vxlanPort", skip_serializing_if = "Option::is_none")]
    pub vxlan_port: Option<u16>,
    /// Police IPv6 as well as IPv4 (default true; false: IPv6 passes unpoliced).
    #[serde(default, rename = "ipv6Support", skip_serializing_if = "Option::is_none")]
    pub ipv6_support: Option<bool>,
    /// Serve `/liveness` and `/readiness` over HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_enabled: Option<bool>,
    /// Where (Calico's default `localhost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_host: Option<String>,
    /// How often the node publishes its session summary for `tortie status
    /// --all-nodes` (Go duration; unset: 10s; `0s`, as calico-node writes
    /// it: published once, then never, and shown as not reporting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_interval: Option<String>,
    /// Port (Calico's default 9099).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_port: Option<u16>,
    /// Calico's other fields: accepted only at Calico's default.
    #[serde(flatten)]
    pub calico_defaults: BTreeMap<String, serde_json::Value>,
}

/// Calico's VXLAN network identifier.
pub const DEFAULT_VXLAN_VNI: u32 = 4096;
/// Calico's VXLAN UDP port (RFC 7348 §5's).
pub const DEFAULT_VXLAN_PORT: u16 = 4789;

/// A listener's address when `enabled`: `host` (`""`: `default_host`;
/// `localhost` is 127.0.0.1) and `port`.
fn listen(
    enabled: Option<bool>,
    host: Option<&str>,
    default_host: &str,
    port: Option<u16>,
    default_port: u16,
) -> Option<std::net::SocketAddr> {
    if enabled != Some(true) {
        return None;
    }
    let host = host.filter(|h| !h.is_empty()).unwrap_or(default_host);
    let ip: IpAddr = if host == "localhost" { IpAddr::from([127, 0, 0, 1]) } else { host.parse().ok()? };
    Some(std::net::SocketAddr::new(ip, port.unwrap_or(default_port)))
}

/// `""` means unset, as in Calico.
fn empty_is_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let text = Option::<String>::deserialize(d)?.unwrap_or_default();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|e| serde::de::Error::custom(format!("`{text}`: {e}")))
}

/// What happens to traffic from a pod to its own host once the pod's
/// egress policy allowed it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EndpointToHostAction {
    /// Dropped.
    Drop,
    /// Host endpoint policy decides, as for traffic from elsewhere.
    Return,
    /// Accepted (tortie's default, the value Calico's Kubernetes manifests set).
    #[default]
    Accept,
}

impl FelixConfigurationSpec {
    /// `defaultEndpointToHostAction`, parsed (`None`: unset or invalid,
    /// which apply refuses).
    pub fn endpoint_to_host(&self) -> Option<EndpointToHostAction> {
        match self.default_endpoint_to_host_action.as_deref()?.to_ascii_lowercase().as_str() {
            "drop" => Some(EndpointToHostAction::Drop),
            "return" => Some(EndpointToHostAction::Return),
            "accept" => Some(EndpointToHostAction::Accept),
            _ => None,
        }
    }

    /// `node.<name>` over `default`: each field set in the node's own wins.
    pub fn merged(default: Option<&FelixConfigurationSpec>, node: Option<&FelixConfigurationSpec>) -> Self {
        super::overlay(default, node)
    }

    /// The route reconciler's full-pass interval, when set.
    pub fn route_refresh(&self) -> Option<Duration> {
        self.route_refresh_interval.as_deref().and_then(duration)
    }

    /// The nftables check interval, when set.
    pub fn policy_refresh(&self) -> Option<Duration> {
        self.nftables_refresh_interval.as_deref().or(self.iptables_refresh_interval.as_deref()).and_then(duration)
    }

    /// The summary publication interval (`Duration::ZERO`: off; `None`:
    /// unset or invalid).
    pub fn reporting(&self) -> Option<Duration> {
        let ms = duration_ms(self.reporting_interval.as_deref()?)?;
        (ms == 0 || ms >= 1000).then(|| Duration::from_millis(ms))
    }

    /// The IPIP device MTU, when set (0 is unset).
    pub fn ipip_mtu(&self) -> Option<u16> {
        self.ipip_mtu.filter(|m| *m != 0)
    }

    /// The VXLAN device MTU, when set (0 is unset).
    pub fn vxlan_mtu(&self) -> Option<u16> {
        self.vxlan_mtu.filter(|m| *m != 0)
    }

    /// The IPv6 VXLAN device MTU, when set (0 is unset).
    pub fn vxlan_mtu_v6(&self) -> Option<u16> {
        self.vxlan_mtu_v6.filter(|m| *m != 0)
    }

    /// The VXLAN network identifier (Calico's default 4096).
    pub fn vxlan_vni(&self) -> u32 {
        self.vxlan_vni.unwrap_or(DEFAULT_VXLAN_VNI)
    }

    /// The VXLAN UDP port (Calico's default 4789).
    pub fn vxlan_port(&self) -> u16 {
        self.vxlan_port.unwrap_or(DEFAULT_VXLAN_PORT)
    }

    /// The log level as a `tracing` directive (`None`: unset or invalid).
    pub fn log_level(&self) -> Option<&'static str> {
        match self.log_severity_screen.as_deref()?.to_ascii_lowercase().as_str() {
            "trace" => Some("trace"),
            "debug" => Some("debug"),
            "info" => Some("info"),
            "warning" | "warn" => Some("warn"),
            "error" | "fatal" | "panic" => Some("error"),
            _ => None,
        }
    }

    /// Where to serve Prometheus metrics, when enabled (Calico's defaults:
    /// every address, port 9091).
    pub fn metrics_listen(&self) -> Option<std::net::SocketAddr> {
        listen(
            self.prometheus_metrics_enabled,
            self.prometheus_metrics_host.as_deref(),
            "0.0.0.0",
            self.prometheus_metrics_port,
            9091,
        )
    }

    /// Where to serve the health endpoints, when enabled (Calico's
    /// defaults: localhost, port 9099).
    pub fn health_listen(&self) -> Option<std::net::SocketAddr> {
        listen(self.health_enabled, self.health_host.as_deref(), "localhost", self.health_port, 9099)
    }
}

impl Spec for FelixConfigurationSpec {
    fn validate(&self, meta: &Metadata) -> Result<(), Invalid> {
        let mut bad = Vec::new();
        if meta.name != "default" && !meta.name.starts_with("node.") {
            bad.push(Invalid::new("metadata.name", &meta.name, "`default` or `node.<node name>`"));
        }
        for (which, ports) in [
            ("failsafeInboundHostPorts", &self.failsafe_inbound_host_ports),
            ("failsafeOutboundHostPorts", &self.failsafe_outbound_host_ports),
        ] {
            for (i, p) in ports.iter().flatten().enumerate() {
                if p.protocol_number().is_none() {
                    bad.push(Invalid::new(format!("{which}[{i}].protocol"), &p.protocol, "TCP or UDP"));
                }
            }
        }
        if let Some(a) = &self.default_endpoint_to_host_action
            && self.endpoint_to_host().is_none()
        {
            bad.push(Invalid::new("defaultEndpointToHostAction", a, "one of Drop, Return, Accept"));
        }
        for (field, value) in [
            ("routeRefreshInterval", &self.route_refresh_interval),
            ("iptablesRefreshInterval", &self.iptables_refresh_interval),
            ("nftablesRefreshInterval", &self.nftables_refresh_interval),
        ] {
            if let Some(v) = value.as_deref().filter(|v| duration(v).is_none()) {
                bad.push(Invalid::new(field, v, "a duration of at least 1s, like 90s or 1m30s"));
            }
        }
        if let Some(r) = self.reporting_interval.as_deref().filter(|_| self.reporting().is_none()) {
            bad.push(Invalid::new("reportingInterval", r, "0s (off) or a duration of at least 1s, like 30s"));
        }
        if let Some(l) = &self.log_severity_screen
            && self.log_level().is_none()
        {
            bad.push(Invalid::new("logSeverityScreen", l, "one of Trace, Debug, Info, Warning, Error, Fatal"));
        }
        if let Some(m) = self.ipip_mtu().filter(|m| !(576..=65515).contains(m)) {
            bad.push(Invalid::new("ipipMTU", m, "0 (the underlay's less 20) or 576–65515"));
        }
        if let Some(m) = self.vxlan_mtu().filter(|m| !(576..=65485).contains(m)) {
            bad.push(Invalid::new("vxlanMTU", m, "0 (the underlay's less 50) or 576–65485"));
        }
        // RFC 8200 §5: every IPv6 link carries 1280 octets.
        if let Some(m) = self.vxlan_mtu_v6().filter(|m| !(1280..=65465).contains(m)) {
            bad.push(Invalid::new("vxlanMTUV6", m, "0 (the underlay's less 70) or 1280–65465"));
        }
        // RFC 7348 §5: a 24-bit VNI.
        if let Some(v) = self.vxlan_vni.filter(|v| !(1..=0xff_ffff).contains(v)) {
            bad.push(Invalid::new("vxlanVNI", v, "1–16777215 (24 bits, RFC 7348)"));
        }
        if self.vxlan_port == Some(0) {
            bad.push(Invalid::new("vxlanPort", 0, "1–65535"));
        }
        for (field, host) in
            [("prometheusMetricsHost", &self.prometheus_metrics_host), ("healthHost", &self.health_host)]
        {
            if let Some(h) = host.as_deref().filter(|h| !h.is_empty() && *h != "localhost")
                && h.parse::<IpAddr>().is_err()
            {
                bad.push(Invalid::new(field, h, "an IP address, `localhost` or empty (the default)"));
            }
        }
        for (field, json) in &self.calico_defaults {
            let value = json.as_str().map_or_else(|| json.to_string(), str::to_string);
            match CALICO_DEFAULTS.iter().find(|(name, _)| name == field) {
                None => bad.push(Invalid::new(field, value, "not a FelixConfiguration field")),
                Some((_, default))
                    if !is_default(json, *default)
                        && !ALSO_ACCEPTED.iter().any(|(f, v)| f == field && is_default(json, *v)) =>
                {
                    let why = WHY_DEFAULT_ONLY.iter().find(|(f, _)| f == field).map(|(_, why)| format!(": {why}"));
                    bad.push(Invalid::new(
                        field,
                        value,
                        format!(
                            "tortie supports only Calico's default here ({}){}",
                            shown(*default),
                            why.unwrap_or_default()
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        Invalid::all(bad)
    }
}

/// Whether `value` is Calico's default (or unset: null or `""`).
fn is_default(value: &serde_json::Value, default: CalicoDefault) -> bool {
    use serde_json::Value;
    if value.is_null() || value.as_str() == Some("") {
        return true;
    }
    match default {
        CalicoDefault::Unset => false,
        CalicoDefault::Bool(b) => value.as_bool() == Some(b),
        CalicoDefault::Int(n) => value.as_i64() == Some(n) || value.as_str().and_then(parse_int) == Some(n),
        CalicoDefault::Text(t) => value.as_str().is_some_and(|v| v.eq_ignore_ascii_case(t)),
        CalicoDefault::Millis(ms) => value.as_str().and_then(duration_ms) == Some(ms),
        CalicoDefault::List(json) => serde_json::from_str::<Value>(json).is_ok_and(|d| same_list(value, &d)),
    }
}

/// Lists compared as strings (`[30000:32767]` and `["30000:32767"]` alike).
fn same_list(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    let texts = |v: &serde_json::Value| {
        v.as_array()
            .map(|l| l.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string)).collect::<Vec<_>>())
    };
    texts(a).is_some() && texts(a) == texts(b)
}

fn parse_int(s: &str) -> Option<i64> {
    match s.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// A refresh interval: a Go duration of at least one second.
fn duration(text: &str) -> Option<Duration> {
    duration_ms(text).filter(|ms| *ms >= 1000).map(Duration::from_millis)
}

/// A Go duration (`90s`, `1m30s`, `500ms`, `1h`) in milliseconds.
pub fn duration_ms(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    if rest == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1_000.0,
            "ms" => 1.0,
            "us" | "µs" => 0.001,
            "ns" => 0.000_001,
            _ => return None,
        };
        total += value * unit;
        rest = &rest[u..];
    }
    Some(total.round() as u64)
}

fn shown(d: CalicoDefault) -> String {
    match d {
        CalicoDefault::Unset => "unset".into(),
        CalicoDefault::Bool(b) => b.to_string(),
        CalicoDefault::Int(n) => n.to_string(),
        CalicoDefault::Text(t) => format!("`{t}`"),
        CalicoDefault::Millis(ms) => format!("{}s", ms as f64 / 1000.0),
        CalicoDefault::List(l) => l.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_read_as_calico_writes_them() {
        assert_eq!(duration_ms("90s"), Some(90_000));
        assert_eq!(duration_ms("1m30s"), Some(90_000));
        assert_eq!(duration_ms("1h"), Some(3_600_000));
        assert_eq!(duration_ms("50ms"), Some(50));
        assert_eq!(duration_ms("0"), Some(0));
        assert_eq!(duration_ms("1.5s"), Some(1_500));
        assert_eq!(duration_ms("ten"), None);
        assert_eq!(duration_ms("10x"), None);
    }

    #[test]
    fn calico_defaults_in_any_spelling_are_defaults() {
        use serde_json::json;
        assert!(is_default(&json!("1m30s"), CalicoDefault::Millis(90_000)));
        assert!(is_default(&json!("info"), CalicoDefault::Text("Info")));
        assert!(is_default(&json!(""), CalicoDefault::Text("Off")), "empty is unset");
        assert!(is_default(&json!("0xffff0000"), CalicoDefault::Int(0xffff_0000)));
        assert!(is_default(&json!(["30000:32767"]), CalicoDefault::List(r#"["30000:32767"]"#)));
        assert!(!is_default(&json!(true), CalicoDefault::Bool(false)));
        assert!(!is_default(&json!("Debug"), CalicoDefault::Text("Info")));
        assert!(!is_default(&json!(1), CalicoDefault::Unset));
    }
}
