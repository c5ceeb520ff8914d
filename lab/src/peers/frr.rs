//! FRR 8 (zebra + bgpd in the foreground), queried through `vtysh` JSON.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{BgpPeer, Route, SessionState, Speaker, TEST_HOLD_TIME, parse_as_path, write_config};
use crate::{Check, Daemon, LabError, Netns, Result, cmd, wait_for};

/// How long bgpd gets to answer on its vty socket.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running FRR: zebra and bgpd (and bfdd, once started) sharing a run directory.
pub struct Frr {
    // Declared first, dropped first: bfdd and bgpd go before zebra.
    bfdd: Option<Daemon>,
    bgpd: Daemon,
    _zebra: Daemon,
    dir: PathBuf,
}

/// A neighbour as `show bgp neighbors <addr> json` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrrNeighbor {
    /// Session state (`Established`, `Active`, `Idle`…).
    #[serde(default)]
    pub bgp_state: String,
    /// The reason of the last NOTIFICATION sent or received, e.g.
    /// `OPEN Message Error/Bad Peer AS`.
    #[serde(default)]
    pub last_notification_reason: Option<String>,
    /// Why the session last went down.
    #[serde(default)]
    pub last_reset_due_to: Option<String>,
}

impl Frr {
    /// Renders `speaker` as a bgpd config (test timers, no RFC 8212 policy
    /// requirement, `network` statements for the announced prefixes) and
    /// starts zebra and bgpd.
    pub fn start(ns: &Netns, speaker: &Speaker) -> Result<Frr> {
        let mut frr = Frr::start_with_config(ns, &format!("frr-{}", speaker.router_id), &render(speaker))?;
        if speaker.neighbors.iter().any(|n| n.bfd) {
            // bgpd registers its `neighbor … bfd` sessions with bfdd.
            frr.start_bfdd(ns, "bfd\n!\n")?;
        }
        Ok(frr)
    }

    /// Starts zebra and bgpd in `ns` with the bgpd config text the test
    /// wrote; `name` names their directory.
    pub fn start_with_config(ns: &Netns, name: &str, bgpd_config: &str) -> Result<Frr> {
        cmd::require("vtysh", "frr")?;
        let dir = ns.dir().join(name);
        std::fs::create_dir_all(&dir).map_err(|e| LabError::io("creating", &dir, e))?;
        // bgpd and zebra drop root for user frr, which must own the run directory.
        cmd::run("chown", &["frr:frr", &dir.display().to_string()])?;
        let file = |f: &str| dir.join(f).display().to_string();
        write_config(&dir.join("zebra.conf"), &format!("hostname {name}\n"))?;
        write_config(&dir.join("bgpd.conf"), bgpd_config)?;
        write_config(&dir.join("vtysh.conf"), "")?;
        cmd::run("/usr/lib/frr/bgpd", &["-C", "-f", &file("bgpd.conf")])?;
        let common = |daemon: &str| {
            vec![
                "-f".to_string(),
                file(&format!("{daemon}.conf")),
                "-i".into(),
                file(&format!("{daemon}.pid")),
                "-z".into(),
                file("zserv.api"),
                "--vty_socket".into(),
                dir.display().to_string(),
                // No vty TCP port: several FRRs may share a host.
                "-P".into(),
                "0".into(),
            ]
        };
        let zebra = ns.spawn(&format!("{name}-zebra"), "/usr/lib/frr/zebra", &common("zebra"), &[])?;
        wait_for(&format!("{name} zebra socket"), START_TIMEOUT, || {
            zebra.check_running()?;
            Ok(if dir.join("zserv.api").exists() { Check::Done(()) } else { Check::Pending("no zserv.api yet".into()) })
        })?;
        let bgpd = ns.spawn(&format!("{name}-bgpd"), "/usr/lib/frr/bgpd", &common("bgpd"), &[])?;
        let frr = Frr { bfdd: None, bgpd, _zebra: zebra, dir };
        wait_for(&format!("{name} bgpd vty"), START_TIMEOUT, || frr.vtysh("show bgp summary json").map(Check::Done))?;
        Ok(frr)
    }

    /// The bgpd process.
    pub fn bgpd(&self) -> &Daemon {
        &self.bgpd
    }

    /// Starts FRR's BFD daemon in `ns` with the bfdd config text the test
    /// wrote (`bfd` / `peer …` blocks), and waits for its vty.
    pub fn start_bfdd(&mut self, ns: &Netns, config: &str) -> Result<()> {
        let file = |f: &str| self.dir.join(f).display().to_string();
        write_config(&self.dir.join("bfdd.conf"), config)?;
        let args = [
            "-f".to_string(),
            file("bfdd.conf"),
            "-i".into(),
            file("bfdd.pid"),
            "-z".into(),
            file("zserv.api"),
            "--vty_socket".into(),
            self.dir.display().to_string(),
            "-P".into(),
            "0".into(),
        ];
        let name = format!("{}-bfdd", self.bgpd.name().trim_end_matches("-bgpd"));
        self.bfdd = Some(ns.spawn(&name, "/usr/lib/frr/bfdd", &args, &[])?);
        wait_for(&format!("{name} vty"), START_TIMEOUT, || self.vtysh("show bfd peers json").map(Check::Done)).map(drop)
    }

    /// The bfdd process, once started.
    pub fn bfdd(&self) -> Option<&Daemon> {
        self.bfdd.as_ref()
    }

    /// Runs one vtysh command against this FRR; fails if bgpd has exited.
    pub fn vtysh(&self, command: &str) -> Result<String> {
        self.bgpd.check_running()?;
        let dir = self.dir.display().to_string();
        cmd::run("vtysh", &["--vty_socket", &dir, "--config_dir", &dir, "-c", command])
    }

    /// The neighbour at `address`, from `show bgp neighbors <address> json`.
    pub fn neighbor(&self, address: IpAddr) -> Result<FrrNeighbor> {
        let out = self.vtysh(&format!("show bgp neighbors {address} json"))?;
        let mut all: std::collections::HashMap<String, FrrNeighbor> =
            serde_json::from_str(&out).map_err(|e| LabError::parse("neighbor", self.bgpd.name(), e, &out))?;
        all.remove(&address.to_string())
            .ok_or_else(|| LabError::parse("neighbor", self.bgpd.name(), format!("no neighbor {address}"), &out))
    }
}

impl BgpPeer for Frr {
    fn label(&self) -> String {
        format!("FRR {}", self.bgpd.name())
    }

    fn session_state(&self, neighbor: IpAddr) -> Result<SessionState> {
        Ok(SessionState::from_name(&self.neighbor(neighbor)?.bgp_state))
    }

    fn routes(&self) -> Result<Vec<Route>> {
        let mut routes = Vec::new();
        for family in ["ipv4", "ipv6"] {
            let out = self.vtysh(&format!("show bgp {family} unicast json"))?;
            routes.extend(parse_routes(&out).map_err(|e| LabError::parse("routes", self.bgpd.name(), e, &out))?);
        }
        Ok(routes)
    }
}

#[derive(Deserialize)]
struct Table {
    #[serde(default)]
    routes: std::collections::BTreeMap<String, Vec<Path>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Path {
    #[serde(default)]
    bestpath: bool,
    #[serde(default)]
    path: String,
    #[serde(default)]
    nexthops: Vec<NextHop>,
}

#[derive(Deserialize)]
struct NextHop {
    ip: IpAddr,
}

fn parse_routes(out: &str) -> Result<Vec<Route>, String> {
    let table: Table = serde_json::from_str(out).map_err(|e| e.to_string())?;
    let mut routes = Vec::new();
    for (prefix, paths) in table.routes {
        let prefix = prefix.parse().map_err(|_| format!("bad prefix {prefix}"))?;
        for p in paths {
            let next_hop = p.nexthops.first().map(|n| n.ip).filter(|ip| !ip.is_unspecified());
            routes.push(Route { prefix, next_hop, as_path: parse_as_path(&p.path), best: p.bestpath });
        }
    }
    Ok(routes)
}

/// The bgpd config for `speaker`.
fn render(speaker: &Speaker) -> String {
    let mut c = String::new();
    let keepalive = TEST_HOLD_TIME / 3;
    let _ = writeln!(
        c,
        "router bgp {asn}\n bgp router-id {id}\n no bgp ebgp-requires-policy\n no bgp network import-check\n \
         timers bgp {keepalive} {TEST_HOLD_TIME}\n coalesce-time 50",
        asn = speaker.asn,
        id = speaker.router_id
    );
    for n in &speaker.neighbors {
        let _ = writeln!(c, " neighbor {} remote-as {}\n neighbor {} timers connect 1", n.address, n.asn, n.address);
        if let Some(local) = n.local_address {
            let _ = writeln!(c, " neighbor {} update-source {local}", n.address);
        }
        if let Some(key) = &n.md5_password {
            let _ = writeln!(c, " neighbor {} password {key}", n.address);
        }
        if n.bfd {
            let _ = writeln!(c, " neighbor {} bfd", n.address);
        }
    }
    // IPv4 neighbours carry IPv4 unicast, IPv6 neighbours IPv6 unicast (FRR
    // would also activate IPv4 unicast on an IPv6 session by default).
    for (family, v6) in [("ipv4", false), ("ipv6", true)] {
        let _ = writeln!(c, " address-family {family} unicast");
        for n in &speaker.neighbors {
            let verb = if n.address.is_ipv6() == v6 { "" } else { "no " };
            let _ = writeln!(c, "  {verb}neighbor {} activate", n.address);
        }
        for prefix in speaker.announce.iter().filter(|p| p.addr().is_ipv6() == v6) {
            let _ = writeln!(c, "  network {prefix}");
        }
        let _ = writeln!(c, " exit-address-family");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_from_show_bgp_json_are_read() {
        let out = r#"{ "routerId": "192.0.2.2", "routes": {
 "198.18.1.0/24": [{"valid":true,"bestpath":true,"path":"65001 65005","nexthops":[{"ip":"192.0.2.1","afi":"ipv4"}]},
                   {"valid":true,"path":"65009","nexthops":[{"ip":"192.0.2.9","afi":"ipv4"}]}],
 "198.18.3.0/24": [{"valid":true,"bestpath":true,"path":"","nexthops":[{"ip":"0.0.0.0","afi":"ipv4"}]}] } }"#;
        let r = parse_routes(out).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].as_path, vec![65001, 65005]);
        assert!(r[0].best && !r[1].best);
        assert_eq!(r[1].next_hop, Some("192.0.2.9".parse().unwrap()));
        assert_eq!(r[2].next_hop, None);
    }
}
