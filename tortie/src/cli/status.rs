//! `tortie status` (alias `tortie node status`) in the layout of
//! `calicoctl node status`, `tortie bgp peers` and `tortie bgp routes`
//! (the depth of `birdc show protocols all` / `show route all`), read from
//! the daemon's local API; `tortie status --all-nodes` reads the summaries
//! every daemon publishes to the datastore.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tortie_store::Datastore;

use crate::node::local_api::{IpipStatus, PeerDetail, Route, Status, socket_path};
use crate::node::summary::{self, Published};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// calicoctl's tables.
    Table,
    /// The same facts as JSON.
    Json,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The daemon's run directory (where its API socket is).
    #[arg(long, default_value = "/var/run/tortie")]
    run_dir: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Every node's sessions, from the summaries in the datastore.
    #[arg(long)]
    all_nodes: bool,
}

#[derive(Args, Debug)]
pub struct PeersArgs {
    /// One peer (by address); all when absent.
    address: Option<std::net::IpAddr>,
    /// The daemon's run directory.
    #[arg(long, default_value = "/var/run/tortie")]
    run_dir: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Args, Debug)]
pub struct BfdShowArgs {
    /// The daemon's run directory.
    #[arg(long, default_value = "/var/run/tortie")]
    run_dir: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

/// `tortie bfd show`: each BFD session with its state, intervals and age.
pub async fn bfd_show(args: BfdShowArgs) -> anyhow::Result<()> {
    let body = get(&args.run_dir, "/bfd").await?;
    let sessions: Vec<crate::node::bfd::Session> = serde_json::from_str(&body).context("decoding the BFD sessions")?;
    if let Output::Json = args.output {
        println!("{}", serde_json::to_string_pretty(&sessions)?);
        return Ok(());
    }
    if sessions.is_empty() {
        println!("No BFD sessions (BGPPeer failureDetectionMode, or tortie.io/bfd on the default BGPConfiguration).");
    }
    let now = now();
    let ms = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{v} ms"));
    for s in &sessions {
        println!(
            "{:<16} local {:<16} {:<9} peer={:<9} since {:<10} tx {:<8} detect {:<8} last diagnostic: {}",
            s.peer.to_string(),
            s.local.to_string(),
            s.state,
            s.remote_state,
            since(s.since, now),
            ms(s.tx_ms),
            ms(s.detect_ms),
            s.diag
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct RoutesArgs {
    /// One prefix; all when absent.
    prefix: Option<IpNet>,
    /// The daemon's run directory.
    #[arg(long, default_value = "/var/run/tortie")]
    run_dir: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

/// A daemon's status, from its API socket in `run_dir`.
pub async fn fetch(run_dir: &Path) -> anyhow::Result<Status> {
    serde_json::from_str(&get(run_dir, "/status").await?).context("decoding the daemon's status")
}

/// GETs `path` from the daemon's socket; the body of a 200 answer.
pub(crate) async fn get(run_dir: &Path, path: &str) -> anyhow::Result<String> {
    let socket = socket_path(run_dir);
    let mut stream = tokio::net::UnixStream::connect(&socket)
        .await
        .with_context(|| format!("tortie process is not running (cannot connect to {})", socket.display()))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: tortie\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await?;
    let reply = String::from_utf8_lossy(&reply);
    let (head, body) = reply.split_once("\r\n\r\n").context("malformed answer from the daemon")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("the daemon answered: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}

/// `HH:MM:SS` for today (UTC), else `YYYY-MM-DD`, as BIRD shows it.
pub fn since(secs: u64, now: u64) -> String {
    if secs == 0 {
        return "-".into();
    }
    let (day, now_day) = (secs / 86_400, now / 86_400);
    if day == now_day {
        let s = secs % 86_400;
        return format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60);
    }
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = day as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// calicoctl's two tables, "IPv4 BGP status" and "IPv6 BGP status", each
/// with the sessions over that family, a blank line between them.
fn family_tables(peers: &[crate::node::local_api::PeerSummary], now: u64) -> String {
    let (v4, v6): (Vec<_>, Vec<_>) = peers.iter().partition(|p| p.address.is_ipv4());
    format!("{}\n{}", family_table("IPv4", &v4, now), family_table("IPv6", &v6, now))
}

fn family_table(family: &str, peers: &[&crate::node::local_api::PeerSummary], now: u64) -> String {
    let mut out = format!("{family} BGP status\n");
    if peers.is_empty() {
        out.push_str(&format!("No {family} peers found.\n"));
        return out;
    }
    let rows: Vec<[String; 5]> = peers
        .iter()
        .map(|p| [p.address.to_string(), p.peer_type.clone(), p.state.clone(), since(p.since, now), p.info.clone()])
        .collect();
    out.push_str(&ascii_table(["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"], &rows));
    out
}

/// The table calicoctl prints (Go's tablewriter): `+---+` rules, centred
/// headers (the spare space on the right), left-aligned cells.
fn ascii_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let rule = widths.iter().fold("+".to_string(), |acc, w| acc + &"-".repeat(w + 2) + "+") + "\n";
    let line = |cells: Vec<String>| cells.iter().fold("|".to_string(), |acc, c| acc + " " + c + " |") + "\n";
    let centred = header
        .iter()
        .zip(widths)
        .map(|(h, w)| {
            let pad = w - h.chars().count();
            format!("{}{h}{}", " ".repeat(pad / 2), " ".repeat(pad - pad / 2))
        })
        .collect();
    let mut out = rule.clone() + &line(centred) + &rule;
    for row in rows {
        out += &line(row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect());
    }
    out + &rule
}

/// The `calicoctl node status` layout.
pub fn render(status: &Status, now: u64) -> String {
    // Only a datastore that does not answer is worth a line.
    let datastore = match &status.datastore {
        Some(h) if !h.reachable => format!(
            "DATASTORE UNREACHABLE since {}: {}; routes, policy and sessions stay as they are.\n",
            since(h.since, now),
            h.error.as_deref().unwrap_or("no answer")
        ),
        _ => String::new(),
    };
    let ipip = match &status.ipip {
        Some(IpipStatus { device, packets: Some([encap, decap, no_route, stranger, malformed]) }) => format!(
            "IPIP: eBPF data plane on {device}: {encap} packets encapsulated, {decap} decapsulated; \
             dropped {no_route} with no tunnelled route, {stranger} not from a cluster node, {malformed} malformed.\n"
        ),
        Some(IpipStatus { device, packets: None }) => format!("IPIP: kernel tunnel {device}.\n"),
        None => String::new(),
    };
    let vxlan = status.vxlan.as_ref().map(|d| format!("VXLAN: kernel device {d}.\n")).unwrap_or_default();
    if status.bgp_disabled {
        return format!(
            "tortie process is running.\n{datastore}{ipip}{vxlan}\nBGP is disabled (networking backend vxlan): \
             routes to other nodes come from the datastore's block affinities.\n"
        );
    }
    format!("tortie process is running.\n{datastore}{ipip}{vxlan}\n{}", family_tables(&status.peers, now))
}

fn render_all(nodes: &[Published], now: u64) -> String {
    let mut out = String::new();
    for n in nodes {
        let stale = n.stale(now).map(|why| format!("  ({why})")).unwrap_or_default();
        let _ = writeln!(out, "Node {} (AS {}, router id {}){stale}", n.status.node, n.status.asn, n.status.router_id);
        match n.status.bgp_disabled {
            true => out.push_str("BGP is disabled (networking backend vxlan)\n"),
            false => out.push_str(&family_tables(&n.status.peers, now)),
        }
        out.push('\n');
    }
    out
}

pub async fn status(args: StatusArgs, open: impl AsyncFnOnce() -> anyhow::Result<Datastore>) -> anyhow::Result<()> {
    if args.all_nodes {
        let nodes = summary::read_all(&open().await?).await?;
        match args.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&nodes)?),
            Output::Table => print!("{}", render_all(&nodes, now())),
        }
        return Ok(());
    }
    let status = fetch(&args.run_dir).await?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&status)?),
        Output::Table => print!("{}", render(&status, now())),
    }
    Ok(())
}

fn render_peer(p: &PeerDetail, now: u64) -> String {
    let s = &p.summary;
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut out = format!("{:<20} BGP  {:<6} {:<10} {}\n", s.name, s.state, since(s.since, now), s.info);
    let rows = [
        ("Peer type", s.peer_type.clone()),
        ("Neighbor address", s.address.to_string()),
        ("Neighbor AS", s.asn.to_string()),
        ("Neighbor ID", opt(p.neighbor_id.map(|i| i.to_string()))),
        ("FSM state", p.fsm_state.clone()),
        ("Passive", p.passive.to_string()),
        ("Hold timer", opt(p.hold_time.map(|h| format!("{h} s (keepalive {} s)", p.keepalive.unwrap_or(0))))),
        ("Capabilities", if p.capabilities.is_empty() { "-".into() } else { p.capabilities.join(", ") }),
        ("Routes", format!("{} imported, {} exported", s.prefixes_received, s.prefixes_advertised)),
        ("Messages", format!("{} received, {} sent", p.messages[0], p.messages[1])),
        ("Updates", format!("{} received, {} sent", p.messages[2], p.messages[3])),
        (
            "Malformed (RFC 7606)",
            format!("{} treated as withdraw, {} attributes discarded", p.malformed[0], p.malformed[1]),
        ),
        ("Unusable NEXT_HOP", format!("{} routes ignored (RFC 4271 §6.3)", p.next_hop_ignored)),
        ("Last error", opt(p.last_error.clone())),
        ("Last notification sent", opt(p.last_notification_sent.clone())),
        ("Last notification received", opt(p.last_notification_received.clone())),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "  {:<28} {v}", format!("{k}:"));
    }
    out
}

pub async fn peers(args: PeersArgs) -> anyhow::Result<()> {
    let body = get(&args.run_dir, "/peers").await?;
    let mut peers: Vec<PeerDetail> = serde_json::from_str(&body).context("decoding the daemon's peers")?;
    if let Some(addr) = args.address {
        peers.retain(|p| p.summary.address == addr);
        if peers.is_empty() {
            bail!("no BGP peer with address {addr}");
        }
    }
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&peers)?),
        Output::Table => peers.iter().for_each(|p| println!("{}", render_peer(p, now()))),
    }
    Ok(())
}

fn render_routes(routes: &[Route]) -> String {
    let mut out = String::new();
    for r in routes {
        for (i, p) in r.paths.iter().enumerate() {
            let prefix = if i == 0 { r.prefix.to_string() } else { String::new() };
            let via = p.next_hop.map_or("-".into(), |n| n.to_string());
            let from = p.from.clone().unwrap_or_else(|| "local".into());
            let mark = if i == 0 { "* (best)" } else { "  (multipath)" };
            let _ = writeln!(out, "{prefix:<20} via {via:<15} from {from:<20} [{}] {mark}", p.source);
            let lp = p.local_pref.map_or("-".into(), |v| v.to_string());
            let med = p.med.map_or("-".into(), |v| v.to_string());
            let _ = writeln!(
                out,
                "{:<20} AS_PATH: {}  ORIGIN: {}  LOCAL_PREF: {lp}  MED: {med}{}",
                "",
                if p.as_path.is_empty() { "(empty)" } else { &p.as_path },
                p.origin,
                if p.communities.is_empty() {
                    String::new()
                } else {
                    format!("  COMMUNITIES: {}", p.communities.join(" "))
                }
            );
        }
    }
    out
}

pub async fn routes(args: RoutesArgs) -> anyhow::Result<()> {
    let path = match args.prefix {
        Some(p) => format!("/routes?prefix={}", p.to_string().replace('/', "%2F")),
        None => "/routes".into(),
    };
    let routes: Vec<Route> = serde_json::from_str(&get(&args.run_dir, &path).await?).context("decoding the routes")?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&routes)?),
        Output::Table => print!("{}", render_routes(&routes)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::health::DatastoreHealth;
    use crate::node::local_api::PeerSummary;

    fn peer(addr: &str, kind: &str, state: &str, since: u64, info: &str) -> PeerSummary {
        PeerSummary {
            name: String::new(),
            address: addr.parse().unwrap(),
            asn: 64512,
            peer_type: kind.into(),
            state: state.into(),
            since,
            info: info.into(),
            prefixes_received: 0,
            prefixes_advertised: 0,
        }
    }

    #[test]
    fn status_matches_the_calicoctl_layout() {
        let now = 1_764_100_000; // 2025-11-25 19:46:40 UTC
        let status = Status {
            node: "n1".into(),
            asn: 64512,
            router_id: "192.0.2.1".parse().unwrap(),
            peers: vec![
                peer("192.0.2.2", "node-to-node mesh", "up", now - 100, "Established"),
                peer("203.0.113.1", "global", "start", now - 90_000, "Active Socket: Connection refused"),
            ],
            datastore: Some(DatastoreHealth { reachable: true, since: now - 500, error: None }),
            ipip: None,
            vxlan: None,
            bgp_disabled: false,
        };
        let golden = "\
tortie process is running.

IPv4 BGP status
+--------------+-------------------+-------+------------+-----------------------------------+
| PEER ADDRESS |     PEER TYPE     | STATE |   SINCE    |               INFO                |
+--------------+-------------------+-------+------------+-----------------------------------+
| 192.0.2.2    | node-to-node mesh | up    | 19:45:00   | Established                       |
| 203.0.113.1  | global            | start | 2025-11-24 | Active Socket: Connection refused |
+--------------+-------------------+-------+------------+-----------------------------------+

IPv6 BGP status
No IPv6 peers found.
";
        assert_eq!(render(&status, now), golden);
        let lost = DatastoreHealth { reachable: false, since: now - 40, error: Some("no answer within 3s".into()) };
        let status = Status { datastore: Some(lost), ..status };
        let head = "tortie process is running.\nDATASTORE UNREACHABLE since 19:46:00: no answer within 3s; \
                    routes, policy and sessions stay as they are.\n\nIPv4 BGP status\n";
        assert!(render(&status, now).starts_with(head), "{}", render(&status, now));
        let ipip = IpipStatus { device: "tortie-ipip".into(), packets: Some([1500, 1498, 0, 5, 0]) };
        let status = Status { datastore: None, ipip: Some(ipip), ..status };
        let head = "tortie process is running.\nIPIP: eBPF data plane on tortie-ipip: 1500 packets encapsulated, \
                    1498 decapsulated; dropped 0 with no tunnelled route, 5 not from a cluster node, 0 malformed.\n\n";
        assert!(render(&status, now).starts_with(head), "{}", render(&status, now));
        let status =
            Status { ipip: None, vxlan: Some("vxlan.calico".into()), bgp_disabled: true, peers: vec![], ..status };
        assert_eq!(
            render(&status, now),
            "tortie process is running.\nVXLAN: kernel device vxlan.calico.\n\nBGP is disabled (networking backend \
             vxlan): routes to other nodes come from the datastore's block affinities.\n"
        );
    }

    #[test]
    fn all_nodes_flags_a_node_whose_summary_is_stale_by_its_own_interval() {
        let now = 1_764_100_000;
        let node = |name: &str, age: u64, interval: u64| Published {
            published_at: now - age,
            interval,
            status: Status {
                node: name.into(),
                asn: 64512,
                router_id: "192.0.2.1".parse().unwrap(),
                peers: vec![
                    peer("192.0.2.2", "node-to-node mesh", "up", now - 100, "Established"),
                    peer("2001:db8::2", "node-to-node mesh", "up", now - 100, "Established"),
                ],
                datastore: None,
                ipip: None,
                vxlan: None,
                bgp_disabled: false,
            },
        };
        let nodes = [node("fresh", 5, 10), node("gone", 45, 10), node("slow", 80, 30), node("quiet", 500, 0)];
        let out = render_all(&nodes, now);
        // Each node's sessions under the heading of their family.
        let fresh = out.split("Node gone").next().unwrap();
        let (v4, v6) = fresh.split_once("IPv6 BGP status").unwrap();
        assert!(v4.contains("IPv4 BGP status") && v4.contains("| 192.0.2.2 ") && !v4.contains("2001:db8"), "{out}");
        assert!(v6.contains("| 2001:db8::2 ") && !v6.contains("192.0.2.2"), "{out}");
        let line = |name: &str| out.lines().find(|l| l.starts_with(&format!("Node {name} "))).unwrap().to_string();
        let flagged = |name: &str| line(name).contains("STALE") || line(name).contains("not reporting");
        assert!(!flagged("fresh"), "{out}");
        assert!(line("gone").contains("STALE: last summary 45 s ago"), "{out}");
        assert!(!flagged("slow"), "three reportingIntervals of 30 s have not passed: {out}");
        assert!(line("quiet").contains("not reporting (reportingInterval 0s)"), "{out}");
    }

    #[test]
    fn since_shows_the_time_today_and_the_date_before() {
        assert_eq!(since(0, 10), "-");
        assert_eq!(since(86_400 * 20_000 + 3_661, 86_400 * 20_000 + 4_000), "01:01:01");
        assert_eq!(since(951_782_400, 1_000_000_000), "2000-02-29");
    }
}
