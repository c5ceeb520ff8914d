//! Interface sysctls for pod interfaces, as Calico sets them: the host side
//! of a pod's veth answers ARP for every address (`proxy_arp`, at once:
//! `proxy_delay` 0) because the pod's default gateway, 169.254.1.1, exists
//! nowhere; and the node forwards.

use std::io;
use std::path::PathBuf;

/// One setting under `/proc/sys/net`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    /// Path below `/proc/sys/net/`.
    pub key: String,
    /// Wanted value.
    pub value: &'static str,
    /// IPv6 keys are absent where IPv6 is off; that is not an error.
    pub optional: bool,
}

fn sysctl(key: String, value: &'static str, optional: bool) -> Sysctl {
    Sysctl { key, value, optional }
}

/// Node-wide forwarding.
pub fn node() -> Vec<Sysctl> {
    vec![sysctl("ipv4/ip_forward".into(), "1", false), sysctl("ipv6/conf/all/forwarding".into(), "1", true)]
}

/// The settings of one host-side pod interface.
pub fn pod_interface(name: &str) -> Vec<Sysctl> {
    vec![
        sysctl(format!("ipv4/conf/{name}/proxy_arp"), "1", false),
        sysctl(format!("ipv4/neigh/{name}/proxy_delay"), "0", false),
        sysctl(format!("ipv4/conf/{name}/forwarding"), "1", false),
        sysctl(format!("ipv6/conf/{name}/proxy_ndp"), "1", true),
        sysctl(format!("ipv6/conf/{name}/forwarding"), "1", true),
    ]
}

/// Writes the value if it differs (no write, no churn otherwise); returns
/// whether it wrote.
pub fn ensure(s: &Sysctl) -> io::Result<bool> {
    let path = PathBuf::from("/proc/sys/net").join(&s.key);
    let current = match std::fs::read_to_string(&path) {
        Ok(v) => v,
        Err(e) if s.optional && e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    if current.trim() == s.value {
        return Ok(false);
    }
    std::fs::write(&path, s.value).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(true)
}
