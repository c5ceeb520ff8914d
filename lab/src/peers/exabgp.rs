//! ExaBGP 4.2, driven through its API: commands go in through a FIFO that a
//! small relay process forwards to ExaBGP; ExaBGP's JSON events (session
//! state, received UPDATEs) come back into an events file.
//!
//! ExaBGP only dials out; the other side must listen.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::Value;

use super::{BgpPeer, Route, SessionState, Speaker, TEST_HOLD_TIME, write_config};
use crate::{Check, Daemon, LabError, Netns, Result, cmd, wait_for};

/// The relay between the FIFO, ExaBGP and the events file.
const RELAY: &str = include_str!("exabgp_relay.py");
/// How long a command waits for the relay to open the FIFO.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// A running ExaBGP.
pub struct ExaBgp {
    daemon: Daemon,
    fifo: PathBuf,
    events: PathBuf,
}

impl ExaBgp {
    /// Renders `speaker` as an ExaBGP config (every neighbour needs a
    /// `local_address`: ExaBGP dials from it) and starts ExaBGP.
    pub fn start(ns: &Netns, speaker: &Speaker) -> Result<ExaBgp> {
        let name = format!("exabgp-{}", speaker.router_id);
        let (fifo, events) = (ns.dir().join(format!("{name}.cmd")), ns.dir().join(format!("{name}.events")));
        let config = render(speaker, &ns.dir().join(format!("{name}-relay.py")), &fifo, &events)?;
        ExaBgp::start_with_config(ns, &name, &config)
    }

    /// Starts ExaBGP with the config text the test wrote. Its API process
    /// must be the relay at `<ns dir>/<name>-relay.py` with arguments
    /// `<ns dir>/<name>.cmd <ns dir>/<name>.events` and `encoder json`, as
    /// [`ExaBgp::start`] renders it.
    pub fn start_with_config(ns: &Netns, name: &str, config: &str) -> Result<ExaBgp> {
        cmd::require("exabgp", "exabgp")?;
        let conf = ns.dir().join(format!("{name}.conf"));
        let fifo = ns.dir().join(format!("{name}.cmd"));
        let events = ns.dir().join(format!("{name}.events"));
        write_config(&ns.dir().join(format!("{name}-relay.py")), RELAY)?;
        write_config(&conf, config)?;
        write_config(&events, "")?;
        cmd::run("mkfifo", &["-m", "0600", &fifo.display().to_string()])?;
        let env = [("exabgp.daemon.drop", "false"), ("exabgp.api.cli", "false"), ("exabgp.log.destination", "stdout")];
        let daemon = ns.spawn(name, "exabgp", &[conf.display().to_string()], &env)?;
        Ok(ExaBgp { daemon, fifo, events })
    }

    /// The daemon process.
    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    /// Sends one API command, e.g. `announce route 198.18.5.0/24 next-hop self`.
    pub fn command(&self, line: &str) -> Result<()> {
        let mut fifo = wait_for(
            &format!("{} API relay to open {}", self.daemon.name(), self.fifo.display()),
            COMMAND_TIMEOUT,
            || {
                self.daemon.check_running()?;
                // Non-blocking open fails with ENXIO until the relay has the FIFO open for reading.
                match std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&self.fifo) {
                    Ok(f) => Ok(Check::Done(f)),
                    Err(e) => Ok(Check::Pending(e.to_string())),
                }
            },
        )?;
        fifo.write_all(format!("{line}\n").as_bytes()).map_err(|e| LabError::io("writing command to", &self.fifo, e))
    }

    /// Announces `prefix` with this speaker as next hop.
    pub fn announce(&self, prefix: IpNet) -> Result<()> {
        self.command(&format!("announce route {prefix} next-hop self"))
    }

    /// Withdraws `prefix`.
    pub fn withdraw(&self, prefix: IpNet) -> Result<()> {
        self.command(&format!("withdraw route {prefix}"))
    }

    /// Every JSON event ExaBGP has reported so far, in order.
    pub fn events(&self) -> Result<Vec<Value>> {
        let text = std::fs::read_to_string(&self.events).map_err(|e| LabError::io("reading", &self.events, e))?;
        // Acks ("done", "error") are plain text; events are JSON objects.
        Ok(text.lines().filter(|l| l.starts_with('{')).filter_map(|l| serde_json::from_str(l).ok()).collect())
    }
}

impl BgpPeer for ExaBgp {
    fn label(&self) -> String {
        format!("ExaBGP {}", self.daemon.name())
    }

    fn session_state(&self, neighbor: IpAddr) -> Result<SessionState> {
        self.daemon.check_running()?;
        let peer = neighbor.to_string();
        let last = self
            .events()?
            .into_iter()
            .rfind(|e| e["type"] == "state" && e["neighbor"]["address"]["peer"] == peer.as_str());
        Ok(match last.as_ref().and_then(|e| e["neighbor"]["state"].as_str()) {
            Some("up") => SessionState::Established,
            Some("connected") => SessionState::OpenSent,
            _ => SessionState::Idle,
        })
    }

    /// Routes ExaBGP received (it has no RIB of its own: this replays the
    /// UPDATE events, announcements then withdrawals, in order).
    fn routes(&self) -> Result<Vec<Route>> {
        self.daemon.check_running()?;
        let mut table: BTreeMap<IpNet, Route> = BTreeMap::new();
        for event in self.events()? {
            let update = &event["neighbor"]["message"]["update"];
            if event["type"] != "update" || update.is_null() {
                continue;
            }
            let mut as_path = Vec::new();
            flatten_asns(&update["attribute"]["as-path"], &mut as_path);
            for (_family, by_next_hop) in update["announce"].as_object().into_iter().flatten() {
                for (next_hop, nlris) in by_next_hop.as_object().into_iter().flatten() {
                    for prefix in nlri_prefixes(nlris) {
                        let route =
                            Route { prefix, next_hop: next_hop.parse().ok(), as_path: as_path.clone(), best: true };
                        table.insert(prefix, route);
                    }
                }
            }
            for (_family, nlris) in update["withdraw"].as_object().into_iter().flatten() {
                for prefix in nlri_prefixes(nlris) {
                    table.remove(&prefix);
                }
            }
        }
        Ok(table.into_values().collect())
    }
}

/// `[{"nlri": "198.18.1.0/24"}, …]` → prefixes.
fn nlri_prefixes(list: &Value) -> Vec<IpNet> {
    list.as_array().into_iter().flatten().filter_map(|n| n["nlri"].as_str()?.parse().ok()).collect()
}

/// AS numbers of an ExaBGP `as-path` (numbers, possibly nested for AS_SETs).
fn flatten_asns(value: &Value, out: &mut Vec<u32>) {
    match value {
        Value::Number(n) => out.extend(n.as_u64().and_then(|n| u32::try_from(n).ok())),
        Value::Array(items) => items.iter().for_each(|v| flatten_asns(v, out)),
        _ => {}
    }
}

/// The ExaBGP config for `speaker`, with the relay as API process.
fn render(
    speaker: &Speaker,
    relay: &std::path::Path,
    fifo: &std::path::Path,
    events: &std::path::Path,
) -> Result<String> {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "process relay {{\n  run /usr/bin/python3 {} {} {};\n  encoder json;\n}}",
        relay.display(),
        fifo.display(),
        events.display()
    );
    for n in &speaker.neighbors {
        let local = n.local_address.ok_or_else(|| LabError::InvalidName {
            what: "ExaBGP neighbor",
            value: n.name.clone(),
            why: "ExaBGP needs local_address (it only dials out)",
        })?;
        let _ = writeln!(
            c,
            "neighbor {} {{\n  router-id {};\n  local-address {local};\n  local-as {};\n  peer-as {};\n  hold-time {TEST_HOLD_TIME};",
            n.address, speaker.router_id, speaker.asn, n.asn
        );
        if let Some(key) = &n.md5_password {
            let _ = writeln!(c, "  md5-password \"{key}\";");
        }
        let _ = writeln!(
            c,
            "  family {{ ipv4 unicast; }}\n  api {{ processes [ relay ]; neighbor-changes; receive {{ parsed; update; notification; }} }}"
        );
        if !speaker.announce.is_empty() {
            let _ = writeln!(c, "  static {{");
            for prefix in &speaker.announce {
                let _ = writeln!(c, "    route {prefix} next-hop self;");
            }
            let _ = writeln!(c, "  }}");
        }
        let _ = writeln!(c, "}}");
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_paths_with_sets_flatten_in_order() {
        let mut out = Vec::new();
        flatten_asns(&serde_json::json!([65001, [65002, 65003], 65004]), &mut out);
        assert_eq!(out, vec![65001, 65002, 65003, 65004]);
    }
}
