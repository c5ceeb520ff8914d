//! The CNI protocol (spec 1.0.0 and 1.1.0): what the runtime hands the
//! plugin (environment + network configuration on stdin), what the plugin
//! prints back (a result or an error), and the error codes the spec
//! defines. No I/O here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The spec version of our results when the config does not say.
pub const CNI_VERSION: &str = "1.1.0";
/// Spec versions this plugin speaks.
pub const SUPPORTED_VERSIONS: [&str; 2] = ["1.0.0", "1.1.0"];

/// CNI spec §"Error": well-known error codes.
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 4;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 7;
    /// Try again later (a transient condition, e.g. the datastore is unreachable).
    pub const TRY_AGAIN: u32 = 11;
    /// STATUS: the plugin is not available.
    pub const NOT_AVAILABLE: u32 = 50;
    /// Ours: no free address (pool exhausted or forbidden).
    pub const IPAM_EXHAUSTED: u32 = 100;
    /// Ours: the kernel refused to plumb the pod.
    pub const PLUMBING: u32 = 101;
    /// Ours: the datastore failed in a way retrying will not fix.
    pub const DATASTORE: u32 = 102;
    /// Ours: CHECK found the pod's network not as ADD left it.
    pub const CHECK_FAILED: u32 = 103;
}

/// An error result: printed as JSON on stdout with exit status 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CNI error {code}: {msg}")]
pub struct CniError {
    /// The spec's or our code.
    pub code: u32,
    /// What went wrong and what to fix.
    pub msg: String,
    /// More detail.
    pub details: String,
}

impl CniError {
    /// An error with no details.
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError { code, msg: msg.into(), details: String::new() }
    }

    /// The JSON the spec wants on stdout.
    pub fn to_json(&self, version: &str) -> Value {
        let mut v = json!({ "cniVersion": version, "code": self.code, "msg": self.msg });
        if !self.details.is_empty() {
            v["details"] = Value::String(self.details.clone());
        }
        v
    }
}

/// A container attachment the runtime still uses (CNI GC, spec 1.1).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Attachment {
    /// Container id.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Interface name.
    pub ifname: String,
}

/// The network configuration on stdin (the fields tortie reads; the rest
/// of a conflist entry is the runtime's business and is ignored).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NetConf {
    /// Spec version the runtime speaks.
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// Network name (part of every IPAM handle).
    pub name: String,
    /// Must be `tortie-cni`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Datastore URL (default: `TORTIE_DATASTORE`, then the embedded default).
    #[serde(default)]
    pub datastore: Option<String>,
    /// This node's name (default: `TORTIE_NODENAME`, then the hostname).
    #[serde(default)]
    pub nodename: Option<String>,
    /// Pod interface MTU.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Prefix of host-side interface names.
    #[serde(default)]
    pub interface_prefix: Option<String>,
    /// The node daemon's run directory (its API socket; default /var/run/tortie).
    #[serde(default)]
    pub run_dir: Option<std::path::PathBuf>,
    /// IPAM settings, in Calico's CNI configuration shape (read by
    /// `ipam()` where an address is assigned: DEL and GC never fail on it).
    #[serde(default)]
    pub ipam: Option<Value>,
    /// The result of ADD (CHECK, DEL).
    #[serde(default, rename = "prevResult")]
    pub prev_result: Option<Value>,
    /// GC: attachments still in use.
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
}

/// The `ipam` section: tortie's own block IPAM (Calico's `calico-ipam`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpamConf {
    /// `calico-ipam` or `tortie-ipam` (the same IPAM); absent is fine.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Pools (names or CIDRs) to take IPv4 addresses from, in order; empty:
    /// every `Automatic` pool. A pod's own choice (`CNI_ARGS`
    /// `TORTIE_IPV4_POOLS=a,b`) wins, as Calico's pod annotation does.
    #[serde(default)]
    pub ipv4_pools: Vec<String>,
    /// The same for IPv6 (`TORTIE_IPV6_POOLS=a,b`).
    #[serde(default)]
    pub ipv6_pools: Vec<String>,
    /// Give the pod an IPv4 address (Calico's `"true"` by default; a string
    /// as Calico writes it, or a boolean).
    #[serde(default)]
    pub assign_ipv4: Option<Value>,
    /// Give the pod an IPv6 address too (Calico's default `"false"`).
    #[serde(default)]
    pub assign_ipv6: Option<Value>,
}

/// The `CNI_ARGS` key a pod names its IPv4 pools with (comma-separated).
pub const ARG_IPV4_POOLS: &str = "TORTIE_IPV4_POOLS";
/// And its IPv6 pools.
pub const ARG_IPV6_POOLS: &str = "TORTIE_IPV6_POOLS";

/// `"true"`/`"false"` (Calico's form) or a boolean; `None` when unset.
fn flag(field: &str, v: &Option<Value>) -> Result<Option<bool>, CniError> {
    match v {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => {
            Err(CniError::new(code::INVALID_CONFIG, format!("`ipam.{field}` is {other}: \"true\" or \"false\"")))
        }
    }
}

impl NetConf {
    /// The `ipam` section, checked: its type must be ours and every field known.
    pub fn ipam(&self) -> Result<IpamConf, CniError> {
        let conf: IpamConf = match &self.ipam {
            None => IpamConf::default(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| CniError::new(code::INVALID_CONFIG, format!("`ipam`: {e}")))?,
        };
        if let Some(kind) = conf.kind.as_deref()
            && kind != "calico-ipam"
            && kind != "tortie-ipam"
        {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!(
                    "`ipam.type` is {kind:?}: tortie assigns addresses with its own IPAM (\"calico-ipam\" or \"tortie-ipam\")"
                ),
            ));
        }
        Ok(conf)
    }

    /// The families this invocation assigns (Calico's `assign_ipv4`,
    /// default on, and `assign_ipv6`, default off), each with the pools it
    /// asks for: the pod's, else the network's.
    pub fn families(
        &self,
        args: &std::collections::BTreeMap<String, String>,
    ) -> Result<Vec<(tortie_ipam::Family, Vec<String>)>, CniError> {
        let ipam = self.ipam()?;
        let pools = |arg: &str, conf: &[String]| match args.get(arg) {
            Some(list) => list.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect(),
            None => conf.to_vec(),
        };
        let mut out = Vec::new();
        if flag("assign_ipv4", &ipam.assign_ipv4)?.unwrap_or(true) {
            out.push((tortie_ipam::Family::V4, pools(ARG_IPV4_POOLS, &ipam.ipv4_pools)));
        }
        if flag("assign_ipv6", &ipam.assign_ipv6)?.unwrap_or(false) {
            out.push((tortie_ipam::Family::V6, pools(ARG_IPV6_POOLS, &ipam.ipv6_pools)));
        }
        if out.is_empty() {
            return Err(CniError::new(code::INVALID_CONFIG, "`ipam.assign_ipv4` and `ipam.assign_ipv6` are both off"));
        }
        Ok(out)
    }

    /// Parses and checks stdin; errors carry code 4 (or 1 for the version).
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let conf: NetConf = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(code::INVALID_CONFIG, format!("network configuration on stdin is not valid JSON: {e}"))
        })?;
        if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "cniVersion {:?} is not supported; use one of {}",
                    conf.cni_version,
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        if conf.name.is_empty() {
            return Err(CniError::new(code::INVALID_CONFIG, "network configuration has no `name`"));
        }
        if conf.kind != "tortie-cni" {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!("`type` is {:?}, expected \"tortie-cni\"", conf.kind),
            ));
        }
        if conf.mtu.is_some_and(|m| !(576..=65535).contains(&m)) {
            return Err(CniError::new(code::INVALID_CONFIG, format!("`mtu` {:?} is outside 576–65535", conf.mtu)));
        }
        Ok(conf)
    }
}

/// The `CNI_*` environment of one invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`.
    pub netns: Option<String>,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS` as key/value pairs (`K8S_POD_NAME`, `K8S_POD_NAMESPACE`…).
    pub args: BTreeMap<String, String>,
}

impl Env {
    /// Reads the variables through `get`; checks what `command` needs (code 7).
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let command = get("CNI_COMMAND").ok_or_else(|| CniError::new(code::INVALID_ENV, "CNI_COMMAND is not set"))?;
        let args = get("CNI_ARGS")
            .unwrap_or_default()
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = Env {
            command,
            container_id: get("CNI_CONTAINERID").unwrap_or_default(),
            netns: get("CNI_NETNS").filter(|s| !s.is_empty()),
            ifname: get("CNI_IFNAME").unwrap_or_default(),
            args,
        };
        let needs: &[&str] = match env.command.as_str() {
            "ADD" | "CHECK" => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
            "DEL" => &["CNI_CONTAINERID", "CNI_IFNAME"],
            _ => &[],
        };
        for var in needs {
            let missing = match *var {
                "CNI_CONTAINERID" => env.container_id.is_empty(),
                "CNI_NETNS" => env.netns.is_none(),
                _ => env.ifname.is_empty(),
            };
            if missing {
                return Err(CniError::new(code::INVALID_ENV, format!("{var} is not set; {} needs it", env.command)));
            }
        }
        if env.ifname.len() > 15 || env.ifname.contains(['/', ' ']) {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("CNI_IFNAME {:?} is not a valid interface name", env.ifname),
            ));
        }
        Ok(env)
    }
}

/// The result of ADD (spec §"Success").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddResult {
    /// Spec version.
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// Host side first, then the pod's interface.
    pub interfaces: Vec<Interface>,
    /// Addresses.
    pub ips: Vec<IpConfig>,
    /// Routes in the pod.
    pub routes: Vec<RouteConfig>,
    /// DNS (none from us).
    pub dns: Value,
}

/// An interface in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Name.
    pub name: String,
    /// MAC address.
    pub mac: String,
    /// The pod's namespace path (pod interfaces only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// An address in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length.
    pub address: String,
    /// Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    pub interface: usize,
}

/// A route in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteConfig {
    /// Destination.
    pub dst: String,
    /// Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Env, CniError> {
        let vars: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Env::read(|k| vars.get(k).cloned())
    }

    #[test]
    fn pools_come_from_the_pod_then_the_network_and_only_our_ipam_is_accepted() {
        let conf = |ipam: &str| {
            NetConf::parse(
                format!(r#"{{"cniVersion":"1.0.0","name":"n","type":"tortie-cni","ipam":{ipam}}}"#).as_bytes(),
            )
        };
        use tortie_ipam::Family::{V4, V6};
        let c = conf(r#"{"type":"calico-ipam","ipv4_pools":["reserved","198.18.1.0/24"]}"#).unwrap();
        assert_eq!(c.families(&BTreeMap::new()).unwrap(), [(V4, vec!["reserved".into(), "198.18.1.0/24".into()])]);
        let pod = BTreeMap::from([(ARG_IPV4_POOLS.to_string(), "a, b".to_string())]);
        assert_eq!(c.families(&pod).unwrap(), [(V4, vec!["a".into(), "b".into()])], "the pod's choice wins");
        // Calico's dual-stack configuration: both families, strings or booleans.
        let dual = conf(r#"{"type":"calico-ipam","assign_ipv4":"true","assign_ipv6":"true","ipv6_pools":["v6"]}"#);
        assert_eq!(dual.unwrap().families(&BTreeMap::new()).unwrap(), [(V4, vec![]), (V6, vec!["v6".into()])]);
        let v6_only = conf(r#"{"assign_ipv4":false,"assign_ipv6":true}"#).unwrap();
        assert_eq!(v6_only.families(&BTreeMap::new()).unwrap(), [(V6, vec![])]);
        let none = conf(r#"{"assign_ipv4":"false"}"#).unwrap();
        assert!(none.families(&BTreeMap::new()).unwrap_err().msg.contains("both off"));
        let bad = conf(r#"{"assign_ipv6":"yes"}"#).unwrap();
        assert!(bad.families(&BTreeMap::new()).unwrap_err().msg.contains("`ipam.assign_ipv6` is \"yes\""));
        // Parsed for every command (DEL must never fail on it), refused where addresses are assigned.
        let other = conf(r#"{"type":"host-local"}"#).unwrap();
        assert!(other.families(&BTreeMap::new()).unwrap_err().msg.contains("`ipam.type` is \"host-local\""));
        let unknown = conf(r#"{"ipv7_pools":["x"]}"#).unwrap();
        assert!(unknown.ipam().unwrap_err().msg.contains("ipv7_pools"), "unknown ipam fields are named");
    }

    #[test]
    fn env_requires_what_each_command_needs() {
        assert_eq!(env(&[]).unwrap_err().code, code::INVALID_ENV);
        let err = env(&[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c"), ("CNI_IFNAME", "eth0")]).unwrap_err();
        assert_eq!(err.code, code::INVALID_ENV);
        assert!(err.msg.contains("CNI_NETNS"), "{}", err.msg);
        let del = env(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "c"), ("CNI_IFNAME", "eth0")]).unwrap();
        assert_eq!(del.netns, None, "DEL works without a namespace");
        let add = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web-0"),
        ])
        .unwrap();
        assert_eq!(add.args["K8S_POD_NAME"], "web-0");
    }

    #[test]
    fn config_errors_name_the_field_and_use_the_spec_codes() {
        assert_eq!(NetConf::parse(b"{not json").unwrap_err().code, code::INVALID_CONFIG);
        let old = NetConf::parse(br#"{"cniVersion":"0.3.1","name":"n","type":"tortie-cni"}"#).unwrap_err();
        assert_eq!(old.code, code::INCOMPATIBLE_VERSION);
        assert!(old.msg.contains("0.3.1") && old.msg.contains("1.1.0"));
        let wrong = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#).unwrap_err();
        assert!(wrong.msg.contains("bridge"));
        let mtu = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"tortie-cni","mtu":100}"#).unwrap_err();
        assert!(mtu.msg.contains("mtu"));
        let ok =
            NetConf::parse(br#"{"cniVersion":"1.1.0","name":"n","type":"tortie-cni","mtu":1440,"other":1}"#).unwrap();
        assert_eq!(ok.mtu, Some(1440));
    }
}
