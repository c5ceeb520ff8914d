//! Replay tests of the speaker core: each script in `replay/` is a stream
//! of inputs, each followed by the outputs it must produce, exactly and in
//! order (`>` lines): the core's outputs first, then the messages each
//! peer's outbox holds, decoded, peers in name order. No sockets, no
//! tasks, no clock: a script runs in microseconds.
//!
//! Inputs (our AS is 65000, our identifier and session address 192.0.2.254;
//! on IPv6 sessions, to a peer ADDR of IPv6, our address is 2001:db8::fe and
//! the peer's identifier 198.51.100.N for its address's last octet N):
//!
//! ```text
//! peer NAME AS ADDR [rr-client] [soft] [gr] [llgr SECS] [limit N] [policy] [import-none]
//! up NAME [gr] [gr-lost] [llgr SECS] [llgr-lost SECS] [enhanced] [v6] [v6-only]
//!        (the table goes at once, as at the end of a batch of its own)
//! together NAME [flags], NAME [flags]…   (sessions up in one batch, then its end;
//!        a part `refresh NAME …` is a request in that batch, `stall NAME`
//!        stalls a session that came up in it)
//! down NAME [graceful SECS [long-lived SECS]]
//! update NAME + PREFIX… [nh ADDR] [nh6 ADDR] [path AS…] [lp N] [med N] [community AA:NN]
//!        [treat-as-withdraw] [discard]  (as the codec marks a malformed attribute)
//! update NAME - PREFIX…                        eor NAME [ipv6]
//! refresh NAME request|request-v6|borr|eorr               remove NAME
//! originate PREFIX                             withdraw PREFIX
//! restarted SECS    planned NAME…    export-none NAME    import-all NAME    import-none NAME
//! reachable NAME yes|no   (BFD's word on the peer)
//! timer stale NAME EPOCH | timer deferral | timer limit NAME
//! range PREFIX AS (dynamic neighbours)       accept ADDR (a connection from it)
//! stats          (UPDATEs encoded for update groups, and copies sent)
//! shared         (peers handed a table encoded once for several)
//! groups         (the update groups' sizes)
//! counts [periodic]  (each peer's prefix counts and RFC 7606 counters:
//!                 exact, or as the metrics ask, 60 s old at most)
//! stall NAME     (its outbox stops being read: fills to the high-water mark)
//! resume NAME    (its writer empties the outbox, reporting Drained if due)
//! batch          (the end of a batch: changes go to peers and felix)
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use ipnet::IpNet;

use super::core::{Input, Output, SpeakerCore, Timer};
use super::{DynamicRange, MaxPrefix, Neighbor, SpeakerCommand, SpeakerEvent};
use crate::packet::{
    AsPath, Community, Context, DecodeError, ErrorAction, ErrorCode, Family, GracefulRestart, GracefulRestartFamily,
    LongLivedFamily, Message, MpNextHop, Nlri, Origin, PathAttrs, RefreshSubtype, RouteRefresh, Update,
};
use crate::rib::export::{ExportPeer, NextHopMode};
use crate::rib::policy::{Policy, Rule, Verdict};
use crate::session::negotiate::{LocalConfig, Negotiated};
use crate::session::outbox::{HIGH_WATER, Taken};
use crate::session::peer::{PeerCommand, PeerConfig, PeerEvent};

const LOCAL_AS: u32 = 65000;
const ROUTER_ID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
/// Our session address on IPv6 sessions.
const LOCAL_V6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe);

struct Replay {
    core: SpeakerCore,
    /// The send context of each up peer (to decode what it is sent).
    tx: HashMap<String, Context>,
    /// Peers whose outbox is not being read.
    stalled: HashSet<String>,
    /// Sessions established so far (their numbers).
    sessions: u64,
}

impl Replay {
    fn new() -> Replay {
        Replay {
            core: SpeakerCore::new(ROUTER_ID, 1, Arc::default()),
            tx: HashMap::new(),
            stalled: HashSet::new(),
            sessions: 0,
        }
    }
}

/// Runs the script `name`, panicking at the first input whose outputs
/// differ from the ones written under it.
fn run(name: &str, script: &str) {
    let mut replay = Replay::new();
    let mut lines = script.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.trim().starts_with('#'));
    let mut next = lines.next();
    while let Some((at, line)) = next {
        let mut expected = Vec::new();
        next = lines.next();
        while let Some((_, l)) = next.filter(|(_, l)| l.trim_start().starts_with('>')) {
            expected.push(l.trim_start()[1..].trim().to_string());
            next = lines.next();
        }
        let actual = replay.step(line.trim()).unwrap_or_else(|e| panic!("{name}:{}: {line}: {e}", at + 1));
        if actual != expected {
            panic!(
                "{name}:{}: {line}\n  expected:\n{}\n  got:\n{}",
                at + 1,
                expected.iter().map(|l| format!("    > {l}\n")).collect::<String>(),
                actual.iter().map(|l| format!("    > {l}\n")).collect::<String>()
            );
        }
    }
}

/// Runs the script `name` and writes it back with the outputs it gives
/// under each input (`TORTIE_REPLAY_BLESS=1 cargo test -p tortie-bgp
/// replay`, after a change of output format; review the diff).
fn bless(name: &str, script: &str) {
    let mut replay = Replay::new();
    let mut blessed = String::new();
    for (at, line) in script.lines().enumerate() {
        let input = line.trim();
        if input.starts_with('>') {
            continue;
        }
        blessed.push_str(line);
        blessed.push('\n');
        if input.is_empty() || input.starts_with('#') {
            continue;
        }
        let actual = replay.step(input).unwrap_or_else(|e| panic!("{name}:{}: {line}: {e}", at + 1));
        for l in actual {
            blessed.push_str(&format!("> {l}\n"));
        }
    }
    let path = format!("{}/src/speaker/replay/{name}.replay", env!("CARGO_MANIFEST_DIR"));
    std::fs::write(&path, blessed).unwrap_or_else(|e| panic!("{path}: {e}"));
}

type Result<T> = std::result::Result<T, String>;

/// `refresh NAME request|request-v6|borr|eorr`'s input.
fn refresh(words: &[&str]) -> Result<Input> {
    let peer = words.first().ok_or("name missing")?.to_string();
    let (subtype, family) = match words.get(1).copied() {
        Some("request") => (RefreshSubtype::Request, Family::IPV4_UNICAST),
        Some("request-v6") => (RefreshSubtype::Request, Family::IPV6_UNICAST),
        Some("borr") => (RefreshSubtype::BeginningOfRefresh, Family::IPV4_UNICAST),
        Some("eorr") => (RefreshSubtype::EndOfRefresh, Family::IPV4_UNICAST),
        other => return Err(format!("bad refresh {other:?}")),
    };
    Ok(Input::Peer(PeerEvent::RouteRefresh { peer, refresh: RouteRefresh { family, subtype } }))
}

fn parse<T: std::str::FromStr>(word: Option<&str>, what: &str) -> Result<T> {
    word.ok_or_else(|| format!("{what} missing"))?.parse().map_err(|_| format!("bad {what}: {word:?}"))
}

impl Replay {
    /// One input line: its outputs, rendered.
    fn step(&mut self, line: &str) -> Result<Vec<String>> {
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or_default();
        let rest: Vec<&str> = words.collect();
        let name = rest.first().map(|n| n.to_string()).unwrap_or_default();
        let input = match verb {
            "peer" => Input::Command(SpeakerCommand::AddNeighbor(Box::new(self.neighbor(&rest)?))),
            "up" => self.up(&rest)?,
            "together" => {
                // Sessions up in one batch: their tables go at its end.
                let mut outputs = Vec::new();
                for words in rest.join(" ").split(',') {
                    let words: Vec<&str> = words.split_whitespace().collect();
                    let input = match words.split_first() {
                        Some((&"refresh", words)) => refresh(words)?,
                        Some((&"stall", [name])) => {
                            self.stall(name)?;
                            continue;
                        }
                        _ => self.up(&words)?,
                    };
                    outputs.extend(self.core.handle(input));
                }
                outputs.extend(self.core.handle(Input::EndOfBatch));
                let mut out: Vec<String> = outputs.iter().flat_map(render).collect();
                out.extend(self.wire());
                return Ok(out);
            }
            "down" => {
                let secs = |at: usize| parse(rest.get(at).copied(), "seconds").map(Duration::from_secs);
                let graceful = match rest.get(1) {
                    Some(&"graceful") => Some(crate::graceful::Retention {
                        restart: secs(2)?,
                        long_lived: if rest.get(3) == Some(&"long-lived") { secs(4)? } else { Duration::ZERO },
                    }),
                    _ => None,
                };
                self.tx.remove(&name);
                if let Some(session) = self.core.neighbors.get(&name) {
                    session.outbox.close();
                }
                Input::Peer(PeerEvent::Down { peer: name, reason: "replay".into(), graceful })
            }
            "update" => Input::Peer(PeerEvent::Update { updates: vec![self.update(&rest)?], peer: name }),
            "eor" => Input::Peer(PeerEvent::Update {
                peer: name,
                updates: vec![Update::end_of_rib(match rest.get(1) {
                    Some(&"ipv6") => Family::IPV6_UNICAST,
                    _ => Family::IPV4_UNICAST,
                })],
            }),
            "refresh" => refresh(&rest)?,
            "remove" => Input::Command(SpeakerCommand::RemoveNeighbor(name)),
            "range" => {
                let range: IpNet = parse(rest.first().copied(), "range")?;
                let words = ["template", rest.get(1).copied().unwrap_or_default(), "0.0.0.0"];
                Input::Command(SpeakerCommand::AddRange(Box::new(DynamicRange {
                    range,
                    template: self.neighbor(&words)?,
                })))
            }
            "accept" => Input::Accepted(SocketAddr::new(parse(rest.first().copied(), "address")?, 40000)),
            "originate" => {
                Input::Command(SpeakerCommand::Originate(parse(rest.first().copied(), "prefix")?, PathAttrs::default()))
            }
            "withdraw" => Input::Command(SpeakerCommand::Withdraw(parse(rest.first().copied(), "prefix")?)),
            "restarted" => {
                let deferral = Duration::from_secs(parse(rest.first().copied(), "seconds")?);
                Input::Command(SpeakerCommand::Restarted { deferral })
            }
            "planned" => Input::Command(SpeakerCommand::Planned(rest.iter().map(|n| n.to_string()).collect())),
            "reachable" => {
                Input::Command(SpeakerCommand::Reachable { peer: name, reachable: rest.get(1) == Some(&"yes") })
            }
            "export-none" | "import-all" | "import-none" => {
                let reject = Policy { rules: vec![Rule::any(Verdict::Reject)] };
                let (import, export) = match verb {
                    "export-none" => (None, Some(reject)),
                    "import-none" => (Some(reject), None),
                    _ => (Some(Policy::accept_all()), None),
                };
                Input::Command(SpeakerCommand::SetPolicies { peer: name, import, export })
            }
            "timer" => Input::Timer(match rest.first().copied() {
                Some("stale") => Timer::StaleTimeout {
                    peer: rest.get(1).ok_or("peer missing")?.to_string(),
                    epoch: parse(rest.get(2).copied(), "epoch")?,
                },
                Some("deferral") => Timer::DeferralOver,
                Some("limit") => Timer::LimitOver { peer: rest.get(1).ok_or("peer missing")?.to_string() },
                other => return Err(format!("bad timer {other:?}")),
            }),
            "stall" => {
                self.stall(&name)?;
                return Ok(Vec::new());
            }
            "resume" => {
                self.stalled.remove(&name);
                return Ok(self.wire());
            }
            "batch" => Input::EndOfBatch,
            "counts" => {
                let max_age = if rest.first() == Some(&"periodic") { super::counts::PERIODIC } else { Duration::ZERO };
                let (tx, mut rx) = tokio::sync::oneshot::channel();
                let now = std::time::Instant::now();
                self.core.handle(Input::Command(SpeakerCommand::Query(super::Query::Peers {
                    now,
                    max_age,
                    reply: tx,
                })));
                let mut counts = rx.try_recv().map_err(|e| e.to_string())?;
                counts.sort_by(|a, b| a.name.cmp(&b.name));
                return Ok(counts
                    .iter()
                    .map(|c| {
                        format!(
                            "{} received {} advertised {} treated-as-withdraw {} discarded {}",
                            c.name, c.received, c.advertised, c.treated_as_withdraw, c.attributes_discarded
                        )
                    })
                    .collect());
            }
            "groups" => {
                let mut sizes: Vec<usize> = self.core.update_groups.groups.iter().map(|(_, m)| m.len()).collect();
                sizes.sort_unstable();
                return Ok(vec![format!("groups {sizes:?}")]);
            }
            "stats" => {
                let stats = &self.core.stats;
                let (encoded, sent) =
                    (stats.group_updates_encoded.load(Relaxed), stats.group_updates_sent.load(Relaxed));
                return Ok(vec![format!("encoded {encoded} sent {sent}")]);
            }
            "shared" => {
                let shared = self.core.stats.tables_shared.load(Relaxed);
                return Ok(vec![format!("tables shared {shared}")]);
            }
            other => return Err(format!("unknown input {other:?}")),
        };
        let up = matches!(input, Input::Peer(PeerEvent::Up { .. }));
        let outputs = self.core.handle(input);
        if up {
            // A session's table waits for the end of the batch it came up
            // in (`tables`); a script's sessions come up alone, their tables
            // go at once (`tables_shared` has several come up together).
            self.core.send_fresh_tables();
        }
        let mut out: Vec<String> = outputs.iter().flat_map(render).collect();
        out.extend(self.wire());
        Ok(out)
    }

    /// `name`'s socket stops taking data: its outbox is at its mark.
    fn stall(&mut self, name: &str) -> Result<()> {
        let session = self.core.neighbors.get(name).ok_or("no such peer")?;
        session.outbox.push(session.session, Bytes::from(vec![0; HIGH_WATER]));
        self.stalled.insert(name.to_string());
        Ok(())
    }

    /// A session of `words[0]` up (`up`'s flags after it).
    fn up(&mut self, words: &[&str]) -> Result<Input> {
        let name = words.first().ok_or("name missing")?.to_string();
        // As the peer's task does: a new session number opens its outbox.
        let negotiated = Box::new(self.negotiated(words)?);
        self.sessions += 1;
        self.core.neighbors.get(&name).ok_or("no such peer")?.outbox.open(self.sessions);
        Ok(Input::Peer(PeerEvent::Up { negotiated, peer: name, session: self.sessions, link_local: None }))
    }

    /// A configured peer's identifier (its IPv4 address; for an IPv6
    /// peer, 198.51.100.N for its address's last octet N) and AS.
    fn peer(&self, name: &str) -> Result<(Ipv4Addr, u32)> {
        let n = &self.core.neighbors.get(name).ok_or("no such peer")?.neighbor;
        let id = match n.session.remote.ip() {
            IpAddr::V4(addr) => addr,
            IpAddr::V6(addr) => Ipv4Addr::new(198, 51, 100, addr.octets()[15]),
        };
        Ok((id, n.session.local.peer_asn))
    }

    fn neighbor(&mut self, words: &[&str]) -> Result<Neighbor> {
        let name = words.first().ok_or("name missing")?.to_string();
        let asn: u32 = parse(words.get(1).copied(), "AS")?;
        let addr: IpAddr = parse(words.get(2).copied(), "address")?;
        let flag = |f: &str| words.contains(&f);
        let mut local = LocalConfig::new(LOCAL_AS, ROUTER_ID, asn);
        if flag("gr") {
            local.graceful_restart = Some(graceful(false, true, &[Family::IPV4_UNICAST]));
        }
        if let Some(stale_time) = value(words, "llgr")? {
            local.long_lived = long_lived(stale_time, true);
        }
        let limit = match words.iter().position(|w| *w == "limit") {
            Some(i) => {
                let limit = parse(words.get(i + 1).copied(), "limit")?;
                Some(MaxPrefix { limit, warn_at: limit, restart_after: Duration::from_secs(60) })
            }
            None => None,
        };
        let policy = flag("policy").then(Policy::accept_all);
        Ok(Neighbor {
            session: PeerConfig {
                name,
                remote: SocketAddr::new(addr, 179),
                local_addr: None,
                local,
                fsm: Default::default(),
                socket: Default::default(),
            },
            export: ExportPeer {
                local_as: LOCAL_AS,
                peer_as: asn,
                local_addr: if addr.is_ipv4() { IpAddr::V4(ROUTER_ID) } else { IpAddr::V6(LOCAL_V6) },
                next_hop: NextHopMode::Auto,
                prepend: 0,
                rr_client: flag("rr-client"),
                long_lived: false,
                link_local: None,
            },
            import_policy: policy.clone(),
            export_policy: policy,
            max_prefix: limit,
            allow_local_as: 0,
            soft_reconfiguration_inbound: flag("soft"),
        })
    }

    fn negotiated(&mut self, words: &[&str]) -> Result<Negotiated> {
        let name = words.first().ok_or("name missing")?;
        let (addr, asn) = self.peer(name)?;
        let flag = |f: &str| words.contains(&f);
        let mut families = vec![Family::IPV4_UNICAST];
        if flag("v6") {
            families.push(Family::IPV6_UNICAST);
        }
        if flag("v6-only") {
            families = vec![Family::IPV6_UNICAST];
        }
        let peer_graceful_restart = (flag("gr") || flag("gr-lost")).then(|| graceful(true, flag("gr"), &families));
        let peer_long_lived = match (value(words, "llgr")?, value(words, "llgr-lost")?) {
            (Some(t), _) => long_lived(t, true),
            (None, Some(t)) => long_lived(t, false),
            (None, None) => Vec::new(),
        };
        let n = Negotiated {
            peer_asn: asn,
            peer_id: addr,
            hold_time: 90,
            keepalive: 30,
            families,
            four_octet_as: true,
            route_refresh: true,
            enhanced_route_refresh: flag("enhanced"),
            extended_message: false,
            add_path_rx: Default::default(),
            add_path_tx: Default::default(),
            peer_graceful_restart,
            peer_long_lived,
            peer_capabilities: Vec::new(),
        };
        self.tx.insert(name.to_string(), n.tx());
        Ok(n)
    }

    fn update(&self, words: &[&str]) -> Result<Update> {
        let name = words.first().ok_or("name missing")?;
        let (addr, _) = self.peer(name)?;
        let sign = *words.get(1).ok_or("+ or - missing")?;
        let (mut prefixes, mut v6_prefixes, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        // An IPv6 peer's own address, or 2001:db8::1.
        let mut v6_hop = match self.core.neighbors.get(*name).map(|n| n.neighbor.session.remote.ip()) {
            Some(IpAddr::V6(addr)) => addr,
            _ => std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
        };
        let mut attrs = PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            next_hop: Some(addr),
            ..Default::default()
        };
        let mut i = 2;
        while let Some(&w) = words.get(i) {
            i += 1;
            match w {
                "nh" => attrs.next_hop = Some(parse(words.get(i).copied(), "next hop")?),
                "lp" => attrs.local_pref = Some(parse(words.get(i).copied(), "local pref")?),
                "med" => attrs.med = Some(parse(words.get(i).copied(), "MED")?),
                "community" => {
                    let text = words.get(i).copied().unwrap_or_default();
                    let (asn, value) = text.split_once(':').ok_or("community is AA:NN")?;
                    let c = Community::new(parse(Some(asn), "community AS")?, parse(Some(value), "community value")?);
                    attrs.communities.extend([c]);
                }
                "path" => {
                    let mut asns = Vec::new();
                    while let Some(asn) = words.get(i).and_then(|w| w.parse::<u32>().ok()) {
                        asns.push(asn);
                        i += 1;
                    }
                    attrs.as_path = Some(AsPath::from_sequence(&asns));
                    continue;
                }
                "nh6" => v6_hop = parse(words.get(i).copied(), "IPv6 next hop")?,
                // As the codec leaves an UPDATE with a malformed attribute (RFC 7606).
                "treat-as-withdraw" | "discard" => {
                    let action =
                        if w == "discard" { ErrorAction::AttributeDiscard } else { ErrorAction::TreatAsWithdraw };
                    let reason = format!("replayed ({w})");
                    errors.push(DecodeError { code: ErrorCode::Update, subcode: 1, data: Vec::new(), action, reason });
                    continue;
                }
                prefix => {
                    match parse::<IpNet>(Some(prefix), "prefix")? {
                        IpNet::V4(p) => prefixes.push(Nlri::new(p)),
                        v6 => v6_prefixes.push(Nlri::new(v6)),
                    }
                    continue;
                }
            }
            i += 1;
        }
        let family = Family::IPV6_UNICAST;
        let withdraw = errors.iter().any(|e| e.action == ErrorAction::TreatAsWithdraw);
        let mut update = match sign {
            "+" => Update {
                mp_reach: (!v6_prefixes.is_empty()).then_some(crate::packet::MpReach {
                    family,
                    next_hop: MpNextHop::Ipv6 { global: v6_hop, link_local: None },
                    nlri: v6_prefixes,
                }),
                ..Update::announce(Arc::new(attrs), prefixes)
            },
            "-" => Update {
                mp_unreach: (!v6_prefixes.is_empty())
                    .then_some(crate::packet::MpUnreach { family, withdrawn: v6_prefixes }),
                ..Update::withdraw(prefixes)
            },
            other => return Err(format!("bad sign {other:?}")),
        };
        if withdraw {
            // RFC 7606 treat-as-withdraw: the NLRI stay, the attributes go.
            update.attrs = None;
        }
        update.errors = errors;
        Ok(update)
    }

    /// What the peers' outboxes hold, decoded (and taken: the writer sent
    /// it), with what the core does when a writer reports its outbox drained.
    fn wire(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let mut drained = Vec::new();
        let names: BTreeMap<&String, _> = self.core.neighbors.iter().collect();
        for (name, session) in names {
            if self.stalled.contains(name) {
                continue;
            }
            let cxt = self.tx.get(name).copied().unwrap_or_default();
            loop {
                let queued = session.outbox.peek();
                if queued.is_empty() {
                    break;
                }
                let mut written = 0;
                for bytes in &queued {
                    written += bytes.len();
                    if bytes.len() == HIGH_WATER && bytes.iter().all(|b| *b == 0) {
                        continue; // what `stall` put there
                    }
                    let mut at = 0;
                    while at < bytes.len() {
                        match Message::decode(&bytes[at..], &cxt) {
                            Ok(Some((message, len))) => {
                                out.push(format!("{name} <- {}", message_text(&message)));
                                at += len;
                            }
                            other => panic!("{name}: undecodable bytes in the outbox: {other:?}"),
                        }
                    }
                }
                if session.outbox.consume(written).1 == Taken::Drained {
                    drained.push(name.clone());
                }
            }
        }
        for peer in drained {
            let outputs = self.core.handle(Input::Peer(PeerEvent::Drained { peer }));
            out.extend(outputs.iter().flat_map(render));
            out.extend(self.wire());
        }
        out
    }
}

/// The number after `key` in `words`, if `key` is there.
fn value(words: &[&str], key: &str) -> Result<Option<u32>> {
    match words.iter().position(|w| *w == key) {
        Some(i) => parse(words.get(i + 1).copied(), key).map(Some),
        None => Ok(None),
    }
}

fn long_lived(stale_time: u32, forwarding_preserved: bool) -> Vec<LongLivedFamily> {
    vec![LongLivedFamily { family: Family::IPV4_UNICAST, forwarding_preserved, stale_time }]
}

/// The peer's graceful-restart capability, for each family its session carries.
fn graceful(restarted: bool, forwarding_preserved: bool, families: &[Family]) -> GracefulRestart {
    GracefulRestart {
        restarted,
        notification: false,
        restart_time: 120,
        families: families
            .iter()
            .map(|family| GracefulRestartFamily { family: *family, forwarding_preserved })
            .collect(),
    }
}

/// One output as a script line (or lines: a batch is one per prefix).
fn render(output: &Output) -> Vec<String> {
    let one = match output {
        Output::Spawn { config, .. } => format!("spawn {}", config.name),
        Output::Peer(name, command) => format!("{name}: {}", command_text(command)),
        Output::Accept(name) => format!("accept {name}"),
        Output::Forget { peer, .. } => format!("forget {peer}"),
        Output::Listen(range) => format!("listen {range}"),
        Output::Timer { after, timer } => match timer {
            Timer::StaleTimeout { peer, epoch } => format!("timer {}s stale {peer} {epoch}", after.as_secs()),
            Timer::DeferralOver => format!("timer {}s deferral", after.as_secs()),
            Timer::LimitOver { peer } => format!("timer {}s limit {peer}", after.as_secs()),
        },
        Output::Event(SpeakerEvent::Converged) => "converged".into(),
        Output::Event(SpeakerEvent::Best(routes)) => {
            return routes
                .iter()
                .map(|(prefix, hops)| {
                    let via: Vec<String> = hops.iter().map(ToString::to_string).collect();
                    let via = if via.is_empty() { "-".to_string() } else { via.join(" ") };
                    format!("best {prefix} via {via}")
                })
                .collect();
        }
    };
    vec![one]
}

fn command_text(command: &PeerCommand) -> String {
    match command {
        PeerCommand::Start => "start".into(),
        PeerCommand::Stop { .. } => "stop".into(),
        PeerCommand::Reset { .. } => "reset".into(),
        PeerCommand::AutoStop { subcode } => format!("auto-stop {subcode}"),
        PeerCommand::AutoStart => "auto-start".into(),
        PeerCommand::Incoming(_) => "incoming".into(),
        PeerCommand::Send(message) => format!("send {}", message_text(message)),
        PeerCommand::EndRestart => "end-restart".into(),
    }
}

fn message_text(message: &Message) -> String {
    match message {
        Message::Update(u) => update_text(u),
        Message::RouteRefresh(r) => {
            let text = match r.subtype {
                RefreshSubtype::Request => "refresh request".into(),
                RefreshSubtype::BeginningOfRefresh => "borr".into(),
                RefreshSubtype::EndOfRefresh => "eorr".into(),
                RefreshSubtype::Reserved(n) => format!("refresh {n}"),
            };
            if r.family == Family::IPV6_UNICAST { format!("{text} ipv6") } else { text }
        }
        other => format!("{other:?}"),
    }
}

fn update_text(u: &Update) -> String {
    if let Some(family) = u.end_of_rib_family() {
        return if family == Family::IPV4_UNICAST { "eor".into() } else { "eor ipv6".into() };
    }
    let mut text = String::new();
    // Each side: the IPv4 field, then the MP attribute's.
    let both = |v4: &[crate::packet::Ipv4Nlri], mp: Option<&[Nlri]>| -> Vec<IpNet> {
        v4.iter().map(|n| IpNet::V4(n.prefix)).chain(mp.unwrap_or_default().iter().map(|n| n.prefix)).collect()
    };
    let withdrawn = both(&u.withdrawn, u.mp_unreach.as_ref().map(|m| m.withdrawn.as_slice()));
    let announced = both(&u.nlri, u.mp_reach.as_ref().map(|m| m.nlri.as_slice()));
    if !withdrawn.is_empty() {
        let _ = write!(text, "- {}", words(&withdrawn));
    }
    if !announced.is_empty() {
        if !text.is_empty() {
            text.push(' ');
        }
        let _ = write!(text, "+ {}", words(&announced));
        if let Some(a) = &u.attrs {
            text.push_str(&attrs_text(a, u.mp_reach.as_ref().map(|m| m.next_hop)));
        }
    }
    text
}

fn words<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(" ")
}

fn attrs_text(a: &PathAttrs, mp: Option<MpNextHop>) -> String {
    let mut t = String::new();
    match (a.next_hop, mp) {
        (_, Some(MpNextHop::Ipv6 { global, .. })) => {
            let _ = write!(t, " nh {global}");
        }
        (Some(nh), _) => {
            let _ = write!(t, " nh {nh}");
        }
        _ => {}
    }
    let path: Vec<u32> = a.as_path.iter().flat_map(|p| p.asns()).collect();
    let _ = write!(t, " path {}", if path.is_empty() { "-".into() } else { words(&path) });
    if let Some(lp) = a.local_pref {
        let _ = write!(t, " lp {lp}");
    }
    if let Some(med) = a.med {
        let _ = write!(t, " med {med}");
    }
    if let Some(o) = a.originator_id {
        let _ = write!(t, " originator {o}");
    }
    if !a.cluster_list.is_empty() {
        let _ = write!(t, " cluster {}", words(&a.cluster_list));
    }
    if !a.communities.is_empty() {
        let _ = write!(t, " community {}", words(&a.communities));
    }
    t
}

macro_rules! replay {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let script = include_str!(concat!("replay/", stringify!($name), ".replay"));
                if std::env::var_os("TORTIE_REPLAY_BLESS").is_some() {
                    bless(stringify!($name), script);
                } else {
                    run(stringify!($name), script);
                }
            }
        )*
    };
}

replay!(
    deferral_families,
    propagation,
    graceful_restart,
    deferral,
    deferral_limit,
    route_refresh,
    prefix_limit,
    slow_peer,
    policies,
    dynamic,
    groups_and_families,
    received_attributes,
    long_lived_graceful_restart,
    long_lived_soft_reconfiguration,
    soft_reconfiguration,
    tables,
);

/// Work done a chunk per batch (a peer's paths going, counts), driven
/// line by line.
mod chunked;
