//! GoBGP 3 (`gobgpd`), queried and fed through the `gobgp` CLI's JSON.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::{BgpPeer, Route, SessionState, Speaker, TEST_HOLD_TIME, write_config};
use crate::{Check, Daemon, LabError, Netns, Result, cmd, wait_for};

/// How long gobgpd gets to open its API socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running gobgpd.
///
/// GoBGP makes its first outgoing connection 5–10 s after start whatever
/// its timers say; tests let the other side dial.
pub struct GoBgp {
    daemon: Daemon,
    target: String,
}

impl GoBgp {
    /// Renders `speaker` as a gobgpd TOML config, starts it, and injects the
    /// announced prefixes into its global RIB (GoBGP has no static routes in
    /// its config).
    pub fn start(ns: &Netns, speaker: &Speaker) -> Result<GoBgp> {
        let gobgp = GoBgp::start_with_config(ns, &format!("gobgp-{}", speaker.router_id), &render(speaker))?;
        for prefix in &speaker.announce {
            gobgp.announce(*prefix)?;
        }
        Ok(gobgp)
    }

    /// Starts gobgpd in `ns` with the TOML config the test wrote.
    pub fn start_with_config(ns: &Netns, name: &str, config: &str) -> Result<GoBgp> {
        cmd::require("gobgpd", "gobgpd")?;
        let conf = ns.dir().join(format!("{name}.toml"));
        let sock = ns.dir().join(format!("{name}.sock"));
        write_config(&conf, config)?;
        // A stale socket makes gobgpd exit.
        let _ = std::fs::remove_file(&sock);
        let target = format!("unix://{}", sock.display());
        let args =
            ["-f", &conf.display().to_string(), "--api-hosts", &target, "--pprof-disable", "-p"].map(String::from);
        let daemon = ns.spawn(name, "gobgpd", &args, &[])?;
        let gobgp = GoBgp { daemon, target };
        wait_for(&format!("{name} API socket"), START_TIMEOUT, || gobgp.gobgp(&["global"]).map(Check::Done))?;
        Ok(gobgp)
    }

    /// The daemon process.
    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    /// Runs `gobgp --target <socket> args…`; fails if gobgpd has exited.
    pub fn gobgp(&self, args: &[&str]) -> Result<String> {
        self.daemon.check_running()?;
        let mut full = vec!["--target", self.target.as_str()];
        full.extend_from_slice(args);
        cmd::run("gobgp", &full)
    }

    /// Originates `prefix` (origin IGP).
    pub fn announce(&self, prefix: IpNet) -> Result<()> {
        self.gobgp(&["global", "rib", "add", "-a", family(prefix), &prefix.to_string(), "origin", "igp"]).map(drop)
    }

    /// Stops originating `prefix`.
    pub fn withdraw(&self, prefix: IpNet) -> Result<()> {
        self.gobgp(&["global", "rib", "del", "-a", family(prefix), &prefix.to_string()]).map(drop)
    }
}

fn family(prefix: IpNet) -> &'static str {
    match prefix {
        IpNet::V4(_) => "ipv4",
        IpNet::V6(_) => "ipv6",
    }
}

impl BgpPeer for GoBgp {
    fn label(&self) -> String {
        format!("GoBGP {}", self.daemon.name())
    }

    fn session_state(&self, neighbor: IpAddr) -> Result<SessionState> {
        let out = self.gobgp(&["-j", "neighbor", &neighbor.to_string()])?;
        let peer: Peer =
            serde_json::from_str(&out).map_err(|e| LabError::parse("neighbor", self.daemon.name(), e, &out))?;
        // gobgp's api.PeerState.SessionState enum.
        Ok(match peer.state.session_state {
            2 => SessionState::Connect,
            3 => SessionState::Active,
            4 => SessionState::OpenSent,
            5 => SessionState::OpenConfirm,
            6 => SessionState::Established,
            _ => SessionState::Idle,
        })
    }

    fn routes(&self) -> Result<Vec<Route>> {
        let out = self.gobgp(&["-j", "global", "rib", "-a", "ipv4"])?;
        parse_rib(&out).map_err(|e| LabError::parse("global rib", self.daemon.name(), e, &out))
    }
}

#[derive(Deserialize)]
struct Peer {
    #[serde(default)]
    state: PeerState,
}

#[derive(Deserialize, Default)]
struct PeerState {
    #[serde(default)]
    session_state: u8,
}

#[derive(Deserialize)]
struct RibPath {
    #[serde(default)]
    best: bool,
    #[serde(default)]
    attrs: Vec<Attr>,
}

/// A path attribute in gobgp's JSON: `type` is the RFC 4271 type code.
#[derive(Deserialize)]
struct Attr {
    #[serde(rename = "type")]
    code: u8,
    #[serde(default)]
    as_paths: Vec<AsSegment>,
    #[serde(default)]
    nexthop: Option<IpAddr>,
}

#[derive(Deserialize)]
struct AsSegment {
    #[serde(default)]
    asns: Vec<u32>,
}

/// Attribute type codes (RFC 4271 §5.1.2, §5.1.3).
const AS_PATH: u8 = 2;
const NEXT_HOP: u8 = 3;

fn parse_rib(out: &str) -> Result<Vec<Route>, String> {
    // An empty RIB prints nothing at all.
    if out.trim().is_empty() {
        return Ok(Vec::new());
    }
    let rib: std::collections::BTreeMap<String, Vec<RibPath>> = serde_json::from_str(out).map_err(|e| e.to_string())?;
    let mut routes = Vec::new();
    for (prefix, paths) in rib {
        let prefix = prefix.parse().map_err(|_| format!("bad prefix {prefix}"))?;
        for p in paths {
            let as_path = p
                .attrs
                .iter()
                .filter(|a| a.code == AS_PATH)
                .flat_map(|a| &a.as_paths)
                .flat_map(|s| s.asns.clone())
                .collect();
            let next_hop =
                p.attrs.iter().find(|a| a.code == NEXT_HOP).and_then(|a| a.nexthop).filter(|ip| !ip.is_unspecified());
            routes.push(Route { prefix, next_hop, as_path, best: p.best });
        }
    }
    Ok(routes)
}

/// The gobgpd TOML config for `speaker`.
fn render(speaker: &Speaker) -> String {
    let mut c = String::new();
    let locals: Vec<String> =
        speaker.neighbors.iter().filter_map(|n| n.local_address).map(|a| format!("\"{a}\"")).collect();
    let _ = writeln!(c, "[global.config]\n  as = {}\n  router-id = \"{}\"", speaker.asn, speaker.router_id);
    if !locals.is_empty() {
        let _ = writeln!(c, "  local-address-list = [{}]", locals.join(", "));
    }
    for n in &speaker.neighbors {
        let _ = writeln!(
            c,
            "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    peer-as = {}",
            n.address, n.asn
        );
        if let Some(key) = &n.md5_password {
            let _ = writeln!(c, "    auth-password = \"{key}\"");
        }
        if let Some(local) = n.local_address {
            let _ = writeln!(c, "  [neighbors.transport.config]\n    local-address = \"{local}\"");
        }
        let _ = writeln!(
            c,
            "  [neighbors.timers.config]\n    connect-retry = 1\n    hold-time = {TEST_HOLD_TIME}\n    keepalive-interval = {}\n  \
             [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-unicast\"",
            TEST_HOLD_TIME / 3
        );
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_rib_json_is_read() {
        let out = r#"{"198.18.1.0/24":[{"nlri":{"prefix":"198.18.1.0/24"},"best":true,"attrs":[{"type":1,"value":0},
            {"type":2,"as_paths":[{"segment_type":2,"num":2,"asns":[65001,65007]}]},{"type":3,"nexthop":"192.0.2.1"}]}],
            "198.18.2.0/24":[{"nlri":{"prefix":"198.18.2.0/24"},"best":true,"attrs":[{"type":1,"value":0},{"type":3,"nexthop":"0.0.0.0"}]}]}"#;
        let r = parse_rib(out).unwrap();
        assert_eq!(r[0].as_path, vec![65001, 65007]);
        assert_eq!(r[0].next_hop, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(r[1].next_hop, None);
        assert!(parse_rib("").unwrap().is_empty());
    }
}
