//! BIRD 2 (`bird -f`), queried through `birdc -s <socket>`.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::{BgpPeer, Route, SessionState, Speaker, TEST_HOLD_TIME, parse_as_path, write_config};
use crate::{Check, Daemon, LabError, Netns, Result, cmd, wait_for};

/// How long BIRD gets to open its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running BIRD 2 daemon.
pub struct Bird {
    daemon: Daemon,
    ctl: PathBuf,
}

/// One protocol as `birdc show protocols all` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BirdProtocol {
    /// Protocol name from the config.
    pub name: String,
    /// Protocol type (`BGP`, `Static`, `Device`…).
    pub proto: String,
    /// BIRD's protocol state (`up`, `start`, `down`…).
    pub state: String,
    /// The info column (`Established`, `Active`, `BGP Error: Bad peer AS`…).
    pub info: String,
    /// For BGP protocols, the session state.
    pub bgp_state: Option<SessionState>,
    /// For BGP protocols, the neighbour's address.
    pub neighbor_address: Option<IpAddr>,
    /// The last error, e.g. `BGP Error: Bad peer AS` or `Received: Hold timer expired`.
    pub last_error: Option<String>,
    /// Routes imported through the protocol's channel.
    pub imported: u64,
    /// Routes exported through the protocol's channel.
    pub exported: u64,
}

impl Bird {
    /// Renders `speaker` as a BIRD config (static blackholes for the
    /// announced prefixes, one BGP protocol per neighbour with test timers
    /// and graceful restart off) and starts BIRD with it.
    pub fn start(ns: &Netns, speaker: &Speaker) -> Result<Bird> {
        Bird::start_with_config(ns, &format!("bird-{}", speaker.router_id), &render(speaker))
    }

    /// Starts BIRD as a router for `speaker`: its best routes of both
    /// families go into the kernel of `ns` (a ToR that forwards, as FRR's
    /// zebra makes it).
    pub fn start_router(ns: &Netns, speaker: &Speaker) -> Result<Bird> {
        let kernel = "protocol kernel kernel4 { ipv4 { export all; }; merge paths on; }\n\
                      protocol kernel kernel6 { ipv6 { export all; }; merge paths on; }\n";
        Bird::start_with_config(ns, &format!("bird-{}", speaker.router_id), &(render(speaker) + kernel))
    }

    /// Starts BIRD in `ns` with the config text the test wrote; `name`
    /// names its directory, socket and log.
    pub fn start_with_config(ns: &Netns, name: &str, config: &str) -> Result<Bird> {
        Bird::spawn(ns, name, config, &[])
    }

    /// Like `start_with_config`, in graceful-restart recovery (`bird -R`):
    /// BIRD's OPENs then say it restarted with its forwarding state kept.
    pub fn start_recovering(ns: &Netns, name: &str, config: &str) -> Result<Bird> {
        Bird::spawn(ns, name, config, &["-R"])
    }

    fn spawn(ns: &Netns, name: &str, config: &str, extra: &[&str]) -> Result<Bird> {
        cmd::require("bird", "bird2")?;
        let conf = ns.dir().join(format!("{name}.conf"));
        let ctl = ns.dir().join(format!("{name}.ctl"));
        write_config(&conf, config)?;
        let conf_arg = conf.display().to_string();
        cmd::run("bird", &["-p", "-c", &conf_arg])?;
        let ctl_arg = ctl.display().to_string();
        let args: Vec<&str> =
            ["-f", "-c", &conf_arg, "-s", &ctl_arg].into_iter().chain(extra.iter().copied()).collect();
        let daemon = ns.spawn(name, "bird", &args, &[])?;
        let bird = Bird { daemon, ctl };
        wait_for(&format!("{name} control socket"), START_TIMEOUT, || {
            let status = bird.birdc(&["show", "status"])?;
            Ok(if status.contains("Daemon is up and running") { Check::Done(()) } else { Check::Pending(status) })
        })?;
        Ok(bird)
    }

    /// The daemon process.
    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    /// Runs `birdc -s <socket> args…`; fails if BIRD has exited.
    pub fn birdc(&self, args: &[&str]) -> Result<String> {
        self.daemon.check_running()?;
        let ctl = self.ctl.display().to_string();
        let mut full = vec!["-s", ctl.as_str()];
        full.extend_from_slice(args);
        cmd::run("birdc", &full)
    }

    /// A connection to BIRD's control socket, for polling often: no
    /// `birdc` process per question.
    pub fn control(&self) -> Result<BirdControl> {
        let stream = std::os::unix::net::UnixStream::connect(&self.ctl)
            .map_err(|e| LabError::io("connecting to", &self.ctl, e))?;
        let reader = std::io::BufReader::new(stream);
        let mut control = BirdControl { reader, ctl: self.ctl.clone(), name: self.daemon.name().to_string() };
        control.reply()?; // the greeting: "0001 BIRD … ready."
        Ok(control)
    }

    /// Every protocol, from `show protocols all`.
    pub fn protocols(&self) -> Result<Vec<BirdProtocol>> {
        let out = self.birdc(&["show", "protocols", "all"])?;
        parse_protocols(&out).map_err(|why| LabError::parse("protocols", self.daemon.name(), why, &out))
    }

    /// The protocol called `name`.
    pub fn protocol(&self, name: &str) -> Result<BirdProtocol> {
        let out = self.birdc(&["show", "protocols", "all", name])?;
        let mut found =
            parse_protocols(&out).map_err(|why| LabError::parse("protocol", self.daemon.name(), why, &out))?;
        match found.len() {
            1 => Ok(found.remove(0)),
            n => Err(LabError::parse("protocol", self.daemon.name(), format!("{n} protocols named {name}"), &out)),
        }
    }
}

/// An open BIRD control connection (the protocol `birdc` speaks: each
/// reply line starts with a 4-digit code, `-` when more lines follow, or
/// a space continuing the previous line's code; code 0000 ends a reply).
pub struct BirdControl {
    reader: std::io::BufReader<std::os::unix::net::UnixStream>,
    ctl: PathBuf,
    name: String,
}

impl BirdControl {
    /// Sends `command` (`show protocols all sut`) and returns the reply as
    /// `birdc` prints it.
    pub fn command(&mut self, command: &str) -> Result<String> {
        use std::io::Write as _;
        writeln!(self.reader.get_mut(), "{command}").map_err(|e| LabError::io("writing to", &self.ctl, e))?;
        self.reply()
    }

    /// The protocol `name`, from `show protocols all NAME`.
    pub fn protocol(&mut self, name: &str) -> Result<BirdProtocol> {
        let out = self.command(&format!("show protocols all {name}"))?;
        let found = parse_protocols(&out).map_err(|why| LabError::parse("protocol", &self.name, why, &out))?;
        found.into_iter().next().ok_or_else(|| LabError::parse("protocol", &self.name, format!("no {name}"), &out))
    }

    fn reply(&mut self) -> Result<String> {
        use std::io::BufRead as _;
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let read = self.reader.read_line(&mut line).map_err(|e| LabError::io("reading", &self.ctl, e))?;
            if read == 0 {
                return Err(LabError::parse("control reply", &self.name, "the connection closed", &text));
            }
            let line = line.trim_end_matches('\n');
            // As birdc (client/client.c): a numbered line with a space after
            // the code ends the reply; code 0000 carries no text.
            let (last, text_part) = match line.as_bytes() {
                [b' ', ..] => (false, &line[1..]),
                [a, b, c, d, sep @ (b'-' | b' '), ..] if [a, b, c, d].iter().all(|x| x.is_ascii_digit()) => {
                    (*sep == b' ', if &line[..4] == "0000" { "" } else { &line[5..] })
                }
                _ => return Err(LabError::parse("control reply", &self.name, format!("odd line {line:?}"), &text)),
            };
            if !text_part.is_empty() || !last {
                text.push_str(text_part);
                text.push('\n');
            }
            if last {
                return Ok(text);
            }
        }
    }
}

impl BgpPeer for Bird {
    fn label(&self) -> String {
        format!("BIRD {}", self.daemon.name())
    }

    fn session_state(&self, neighbor: IpAddr) -> Result<SessionState> {
        let protocols = self.protocols()?;
        protocols
            .iter()
            .find(|p| p.neighbor_address == Some(neighbor))
            .map(|p| p.bgp_state.unwrap_or(SessionState::Idle))
            .ok_or_else(|| {
                LabError::parse("session", self.daemon.name(), format!("no BGP protocol for {neighbor}"), "")
            })
    }

    fn routes(&self) -> Result<Vec<Route>> {
        let out = self.birdc(&["show", "route", "all"])?;
        parse_routes(&out).map_err(|why| LabError::parse("routes", self.daemon.name(), why, &out))
    }
}

/// The BIRD config for `speaker`.
fn render(speaker: &Speaker) -> String {
    let mut c = String::new();
    let keepalive = TEST_HOLD_TIME / 3;
    let _ = writeln!(c, "router id {};\nprotocol device {{ }}", speaker.router_id);
    for (family, v6) in [("ipv4", false), ("ipv6", true)] {
        let prefixes: Vec<_> = speaker.announce.iter().filter(|p| p.addr().is_ipv6() == v6).collect();
        if !prefixes.is_empty() {
            let _ = writeln!(c, "protocol static announce_{family} {{\n  {family};");
            for prefix in prefixes {
                let _ = writeln!(c, "  route {prefix} blackhole;");
            }
            let _ = writeln!(c, "}}");
        }
    }
    if speaker.neighbors.iter().any(|n| n.bfd) {
        let _ = writeln!(c, "protocol bfd {{\n  interface \"*\" {{ interval 300 ms; multiplier 3; }};\n}}");
    }
    for n in &speaker.neighbors {
        let _ = writeln!(
            c,
            "protocol bgp {} {{\n  local as {};\n  neighbor {} as {};",
            n.name, speaker.asn, n.address, n.asn
        );
        if n.bfd {
            let _ = writeln!(c, "  bfd on;");
        }
        if let Some(local) = n.local_address {
            let _ = writeln!(c, "  source address {local};");
        }
        if let Some(key) = &n.md5_password {
            let _ = writeln!(c, "  password \"{key}\";");
        }
        // RFC 8212: eBGP needs explicit import and export policies. An IPv6
        // neighbour carries IPv6 unicast.
        let family = if n.address.is_ipv6() { "ipv6" } else { "ipv4" };
        let _ = writeln!(
            c,
            "  {family} {{ import all; export where source ~ [ RTS_STATIC, RTS_BGP ]; }};\n  \
             connect delay time 1; connect retry time 1; error wait time 1, 2;\n  \
             hold time {TEST_HOLD_TIME}; keepalive time {keepalive};\n  graceful restart off;\n}}"
        );
    }
    c
}

/// Parses `show protocols [all]` output into protocols.
fn parse_protocols(out: &str) -> Result<Vec<BirdProtocol>, String> {
    let mut protocols: Vec<BirdProtocol> = Vec::new();
    for line in out.lines() {
        if line.trim().is_empty() || line.starts_with("BIRD ") || line.starts_with("Name ") {
            continue;
        }
        if !line.starts_with(' ') {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 5 {
                return Err(format!("short protocol line `{line}`"));
            }
            protocols.push(BirdProtocol {
                name: fields[0].into(),
                proto: fields[1].into(),
                state: fields[3].into(),
                info: fields[5..].join(" "),
                ..BirdProtocol::default()
            });
            continue;
        }
        let Some(p) = protocols.last_mut() else { return Err(format!("detail before any protocol: `{line}`")) };
        let Some((key, value)) = line.trim().split_once(':') else { continue };
        let value = value.trim();
        match key {
            "BGP state" => p.bgp_state = Some(SessionState::from_name(value)),
            "Neighbor address" => p.neighbor_address = value.parse().ok(),
            "Last error" => p.last_error = Some(value.to_string()),
            "Routes" => {
                // "1 imported, 1 exported, 1 preferred"
                for part in value.split(',') {
                    let mut words = part.split_whitespace();
                    let (Some(n), Some(what)) = (words.next(), words.next()) else { continue };
                    let n = n.parse().map_err(|_| format!("bad route count in `{line}`"))?;
                    match what {
                        "imported" => p.imported = n,
                        "exported" => p.exported = n,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(protocols)
}

/// Parses `show route all` output. A line starting with a prefix opens a
/// route; an indented line starting with a route kind is another path for
/// the same prefix; tab-indented lines are attributes of the path above.
fn parse_routes(out: &str) -> Result<Vec<Route>, String> {
    let mut routes: Vec<Route> = Vec::new();
    let mut prefix: Option<IpNet> = None;
    for line in out.lines() {
        if line.trim().is_empty() || line.starts_with("BIRD ") || line.starts_with("Table ") {
            continue;
        }
        if line.starts_with('\t') {
            let Some(route) = routes.last_mut() else { return Err(format!("attribute before any route: `{line}`")) };
            let Some((key, value)) = line.trim().split_once(": ") else { continue };
            match key {
                "BGP.as_path" => route.as_path = parse_as_path(value),
                "BGP.next_hop" => route.next_hop = value.split_whitespace().next().and_then(|a| a.parse().ok()),
                _ => {}
            }
            continue;
        }
        if !line.starts_with(' ') {
            let first = line.split_whitespace().next().unwrap_or_default();
            prefix = Some(first.parse().map_err(|_| format!("bad prefix in `{line}`"))?);
        }
        let Some(prefix) = prefix else { return Err(format!("path before any prefix: `{line}`")) };
        let best = line.split_once(']').is_some_and(|(_, rest)| rest.trim_start().starts_with('*'));
        routes.push(Route { prefix, next_hop: None, as_path: Vec::new(), best });
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROTOCOLS: &str = "BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
bad        BGP        ---        start  16:41:29.470  Active        BGP Error: Bad peer AS
  BGP state:          Active
    Neighbor address: 192.0.2.2
    Neighbor AS:      65077
    Last error:       BGP Error: Bad peer AS
  Channel ipv4
    State:          DOWN

gob        BGP        ---        up     16:40:13.072  Established   
  BGP state:          Established
    Neighbor address: 192.0.2.3
  Channel ipv4
    Routes:         1 imported, 2 exported, 1 preferred
";

    #[test]
    fn protocols_with_errors_and_route_counts_are_read() {
        let p = parse_protocols(PROTOCOLS).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].info, "Active BGP Error: Bad peer AS");
        assert_eq!(p[0].bgp_state, Some(SessionState::Active));
        assert_eq!(p[0].last_error.as_deref(), Some("BGP Error: Bad peer AS"));
        assert_eq!(p[1].neighbor_address, Some("192.0.2.3".parse().unwrap()));
        assert_eq!((p[1].imported, p[1].exported), (1, 2));
    }

    #[test]
    fn routes_with_several_paths_and_attributes_are_read() {
        let out = "BIRD 2.0.12 ready.
Table master4:
198.18.1.0/24        blackhole [announce4 16:40:12.100] * (200)
\tType: static univ
198.18.2.0/24        unicast [gob 16:40:13.072] * (100) [AS65002i]
\tvia 192.0.2.2 on va
\tBGP.as_path: 65002 {65010 65011}
\tBGP.next_hop: 192.0.2.2
                     unicast [bad 16:40:14.072] (100) [AS65004i]
\tBGP.as_path: 65004
\tBGP.next_hop: 192.0.2.4
";
        let r = parse_routes(out).unwrap();
        assert_eq!(r.len(), 3);
        assert!(r[0].best && r[0].next_hop.is_none());
        assert_eq!(r[1].as_path, vec![65002, 65010, 65011]);
        assert!(r[1].best);
        assert_eq!(r[2].prefix, "198.18.2.0/24".parse::<IpNet>().unwrap());
        assert!(!r[2].best);
        assert_eq!(r[2].next_hop, Some("192.0.2.4".parse().unwrap()));
    }
}
