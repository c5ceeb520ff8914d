//! The daemon's local API: HTTP/1.1 + JSON over a Unix socket in the run
//! directory, mode 0600 (root only). `tortie status`, `tortie bgp peers`
//! and `tortie bgp routes` read it. The types here are the wire format of
//! both sides.
//!
//! ```text
//!  GET /status          node, AS, router id, one summary per peer
//!  GET /peers           one detail per peer (capabilities, timers, counters, errors)
//!  GET /routes[?prefix] the Loc-RIB's best paths
//!  GET /ipam            address usage: the pools, this node's blocks
//!  GET /metrics         Prometheus metrics
//!  POST /cni            the CNI plugin reports an ADD/DEL (outcome, duration)
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::extract::{Query as QueryParams, State as Shared};
use axum::routing::get;
use axum::{Json, Router};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tortie_bgp::session::State;
use tortie_bgp::session::peer::PeerStatus;
use tortie_bgp::speaker::{PeerCounts, Query, RouteView, SpeakerCommand};

use super::health::DatastoreHealth;
use tortie_peering::{PeerType, PlannedPeer};

/// The socket's file name in the run directory.
pub const SOCKET: &str = "tortie.sock";

/// `GET /status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Node name.
    pub node: String,
    /// Node AS.
    pub asn: u32,
    /// BGP router id.
    pub router_id: Ipv4Addr,
    /// One per configured peer.
    pub peers: Vec<PeerSummary>,
    /// Whether the datastore answers (absent in summaries from older daemons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore: Option<DatastoreHealth>,
    /// The IPIP tunnel, while it is up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip: Option<IpipStatus>,
    /// The VXLAN devices that are up (IPv4, IPv6), comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<String>,
    /// No BGP (the `vxlan` networking backend): routes come from the datastore.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bgp_disabled: bool,
}

/// The IPIP tunnel in `tortie status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpipStatus {
    /// The device routes go through (`tortie-ipip`: the eBPF plane; `tunl0`: the kernel's).
    pub device: String,
    /// The eBPF plane's counters: encapsulated, decapsulated, and dropped
    /// for no route, not from a node, malformed (packets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets: Option<[u64; 5]>,
}

/// A row of `tortie status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSummary {
    /// Session name (`Mesh_192_0_2_2`).
    pub name: String,
    /// Peer address.
    pub address: IpAddr,
    /// Peer AS.
    pub asn: u32,
    /// `node-to-node mesh`, `global`, `node specific`, `route reflector`.
    pub peer_type: String,
    /// `up` when Established, else `start` (BIRD's protocol states).
    pub state: String,
    /// Unix seconds of the last state change.
    pub since: u64,
    /// `Established`, or the FSM state and the last error.
    pub info: String,
    /// Paths received.
    pub prefixes_received: usize,
    /// Prefixes advertised.
    pub prefixes_advertised: usize,
}

/// One peer in depth (`GET /peers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerDetail {
    /// The summary.
    #[serde(flatten)]
    pub summary: PeerSummary,
    /// FSM state.
    pub fsm_state: String,
    /// Waits for the peer to dial.
    pub passive: bool,
    /// The peer's BGP identifier, once known.
    pub neighbor_id: Option<Ipv4Addr>,
    /// Negotiated hold time and keepalive, seconds.
    pub hold_time: Option<u16>,
    /// Keepalive interval.
    pub keepalive: Option<u16>,
    /// The peer's capabilities.
    pub capabilities: Vec<String>,
    /// Messages received / sent, UPDATEs received / sent.
    pub messages: [u64; 4],
    /// Malformed attributes from the peer (RFC 7606): routes treated as
    /// withdrawn, attributes discarded.
    #[serde(default)]
    pub malformed: [u64; 2],
    /// Routes ignored for an unusable NEXT_HOP (RFC 4271 §6.3).
    #[serde(default)]
    pub next_hop_ignored: u64,
    /// Last error.
    pub last_error: Option<String>,
    /// Last NOTIFICATION sent.
    pub last_notification_sent: Option<String>,
    /// Last NOTIFICATION received.
    pub last_notification_received: Option<String>,
}

/// One path of a route (`GET /routes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutePath {
    /// The peer it came from; `None` for our own.
    pub from: Option<String>,
    /// Next hop: NEXT_HOP, or MP_REACH_NLRI's (the global one for IPv6).
    pub next_hop: Option<IpAddr>,
    /// AS path as text.
    pub as_path: String,
    /// ORIGIN.
    pub origin: String,
    /// LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// MED.
    pub med: Option<u32>,
    /// Communities, large communities.
    pub communities: Vec<String>,
    /// iBGP, eBGP or local.
    pub source: String,
    /// ORIGINATOR_ID (RFC 4456), on reflected routes.
    pub originator_id: Option<Ipv4Addr>,
    /// CLUSTER_LIST (RFC 4456), nearest cluster first.
    pub cluster_list: Vec<Ipv4Addr>,
}

/// One prefix, best path first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The prefix.
    pub prefix: IpNet,
    /// Its multipath set, best first.
    pub paths: Vec<RoutePath>,
}

/// What the API reads.
#[derive(Clone)]
pub struct ApiState {
    /// Node name.
    pub node: String,
    /// Router id.
    pub router_id: Ipv4Addr,
    /// The speaker (none with the `vxlan` networking backend: no BGP).
    pub speaker: Option<mpsc::Sender<SpeakerCommand>>,
    /// Session states by peer name.
    pub statuses: Arc<Mutex<HashMap<String, watch::Receiver<PeerStatus>>>>,
    /// The planned peers (and our AS), kept by the peer manager.
    pub plan: Arc<Mutex<(u32, BTreeMap<String, PlannedPeer>)>>,
    /// The datastore (for the IPAM summary).
    pub kv: tortie_store::Datastore,
    /// The policy table in force (nodes only; a reflector has none).
    pub ruleset: Option<watch::Receiver<Arc<tortie_felix::policy::Ruleset>>>,
    /// Whether the datastore answers.
    pub datastore: watch::Receiver<DatastoreHealth>,
    /// The BFD sessions, as the helper reports them.
    pub bfd: watch::Receiver<super::bfd::Report>,
    /// The IPIP tunnel's device while it is up, and the bpffs its counters
    /// are pinned in (nodes only).
    pub ipip: Option<(watch::Receiver<Option<String>>, std::path::PathBuf)>,
    /// The VXLAN devices (IPv4, IPv6) while they are up (nodes only).
    pub vxlan: Vec<watch::Receiver<Option<String>>>,
}

/// `GET /ipam`: address usage of the pools, and of this node's blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamSummary {
    /// Per pool: CIDR, addresses, in use.
    pub pools: Vec<(IpNet, u128, u128)>,
    /// Per block affine to this node: CIDR, addresses, in use.
    pub blocks: Vec<(IpNet, u128, u128)>,
}

fn peer_type(kind: PeerType) -> &'static str {
    match kind {
        PeerType::Mesh => "node-to-node mesh",
        PeerType::Global => "global",
        PeerType::NodeSpecific => "node specific",
        PeerType::RouteReflector => "route reflector",
        PeerType::Dynamic => "dynamic",
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl ApiState {
    async fn ask<T>(&self, query: impl FnOnce(oneshot::Sender<T>) -> Query) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.speaker.as_ref()?.send(SpeakerCommand::Query(query(tx))).await.ok()?;
        rx.await.ok()
    }

    /// Every planned peer in detail, the advertised counts at most
    /// `max_age` old (a count runs the export over the whole table).
    pub(crate) async fn details(&self, max_age: Duration) -> (u32, Vec<PeerDetail>) {
        let now = std::time::Instant::now();
        let counts: HashMap<String, PeerCounts> = self
            .ask(|reply| Query::Peers { now, max_age, reply })
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.name.clone(), c))
            .collect();
        let (asn, mut plan) = self.plan.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // Peers that connected from a dynamic-neighbour range are in no plan: the speaker knows them.
        for c in counts.values().filter(|c| c.dynamic) {
            plan.entry(c.name.clone()).or_insert_with(|| PlannedPeer::dynamic(&c.name, c.remote, c.asn, false));
        }
        let statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let peers = plan
            .values()
            .map(|p| {
                let status = statuses.get(&p.name).map(|s| s.borrow().clone());
                let established = status.as_ref().is_some_and(|s| s.state == State::Established);
                let fsm_state = status.as_ref().map_or("Idle".to_string(), |s| format!("{:?}", s.state));
                let error = status.as_ref().and_then(|s| s.last_error.clone());
                let mut info = match (&error, established) {
                    (_, true) => "Established".to_string(),
                    (Some(e), false) => format!("{fsm_state} {e}"),
                    (None, false) => fsm_state.clone(),
                };
                if let Some(b) = self.bfd.borrow().sessions.iter().find(|b| b.peer == p.remote.ip()) {
                    info.push_str(&format!(" (BFD {})", b.state));
                }
                let negotiated = status.as_ref().and_then(|s| s.negotiated.clone());
                let c = counts.get(&p.name);
                PeerDetail {
                    summary: PeerSummary {
                        name: p.name.clone(),
                        address: p.remote.ip(),
                        asn: p.asn,
                        peer_type: peer_type(p.kind).into(),
                        state: if established { "up" } else { "start" }.into(),
                        since: status.as_ref().map_or(0, |s| unix(s.since)),
                        info,
                        prefixes_received: c.map_or(0, |c| c.received),
                        prefixes_advertised: c.map_or(0, |c| c.advertised),
                    },
                    fsm_state,
                    passive: p.passive,
                    neighbor_id: negotiated.as_ref().map(|n| n.peer_id),
                    hold_time: negotiated.as_ref().map(|n| n.hold_time),
                    keepalive: negotiated.as_ref().map(|n| n.keepalive),
                    capabilities: negotiated
                        .as_ref()
                        .map(|n| n.peer_capabilities.iter().map(ToString::to_string).collect())
                        .unwrap_or_default(),
                    messages: status
                        .as_ref()
                        .map_or([0; 4], |s| [s.messages_in, s.messages_out, s.updates_in, s.updates_out]),
                    malformed: c.map_or([0; 2], |c| [c.treated_as_withdraw, c.attributes_discarded]),
                    next_hop_ignored: c.map_or(0, |c| c.next_hop_ignored),
                    last_error: error,
                    last_notification_sent: status.as_ref().and_then(|s| s.last_notification_sent.clone()),
                    last_notification_received: status.as_ref().and_then(|s| s.last_notification_received.clone()),
                }
            })
            .collect();
        (asn, peers)
    }
}

fn route(r: RouteView) -> Route {
    let paths = r
        .paths
        .into_iter()
        .map(|(from, p)| {
            let a = &p.attrs;
            let communities = a
                .communities
                .iter()
                .map(ToString::to_string)
                .chain(a.large_communities.iter().map(ToString::to_string));
            RoutePath {
                from,
                next_hop: a.next_hop.map(IpAddr::V4).or(a.mp_next_hop.as_deref().map(|h| h.addr())),
                as_path: a.as_path.as_ref().map(ToString::to_string).unwrap_or_default(),
                origin: a.origin.map(|o| format!("{o:?}").to_uppercase()).unwrap_or_default(),
                local_pref: a.local_pref,
                med: a.med,
                communities: communities.collect(),
                source: format!("{:?}", p.origination),
                originator_id: a.originator_id,
                cluster_list: a.cluster_list.to_vec(),
            }
        })
        .collect();
    Route { prefix: r.prefix, paths }
}

impl ApiState {
    /// The node's session summary, the advertised counts at most `max_age` old.
    pub async fn status(&self, max_age: Duration) -> Status {
        let (asn, details) = self.details(max_age).await;
        Status {
            node: self.node.clone(),
            asn,
            router_id: self.router_id,
            peers: details.into_iter().map(|d| d.summary).collect(),
            datastore: Some(self.datastore.borrow().clone()),
            ipip: self.ipip.as_ref().and_then(|(device, bpffs)| {
                let device = device.borrow().clone()?;
                let packets = (device == tortie_ipip::ebpf::DEVICE)
                    .then(|| tortie_ipip::ebpf::counters(bpffs))
                    .flatten()
                    .map(|c| {
                        [c.encap_packets, c.decap_packets, c.drop_no_route, c.drop_unknown_source, c.drop_malformed]
                    });
                Some(IpipStatus { device, packets })
            }),
            vxlan: Some(self.vxlan.iter().filter_map(|d| d.borrow().clone()).collect::<Vec<_>>().join(", "))
                .filter(|d| !d.is_empty()),
            bgp_disabled: self.speaker.is_none(),
        }
    }
}

/// `GET /bfd`: the BFD sessions.
async fn bfd(Shared(s): Shared<ApiState>) -> Json<Vec<super::bfd::Session>> {
    Json(s.bfd.borrow().sessions.clone())
}

async fn status(Shared(s): Shared<ApiState>) -> Json<Status> {
    Json(s.status(Duration::ZERO).await)
}

async fn peers(Shared(s): Shared<ApiState>) -> Json<Vec<PeerDetail>> {
    Json(s.details(Duration::ZERO).await.1)
}

async fn ipam(Shared(s): Shared<ApiState>) -> Result<Json<IpamSummary>, (axum::http::StatusCode, String)> {
    let fail = |e: String| (axum::http::StatusCode::SERVICE_UNAVAILABLE, e);
    let blocks: Vec<_> =
        tortie_ipam::blocks(&s.kv).await.map_err(|e| fail(e.to_string()))?.into_iter().map(|b| b.block).collect();
    let pools: Vec<IpNet> = tortie_store::api::list(&s.kv, tortie_store::resources::Kind::IpPool, None)
        .await
        .map_err(|e| fail(e.to_string()))?
        .into_iter()
        .filter_map(|r| if let tortie_store::resources::Resource::IpPool(p) = r { p.spec.cidr } else { None })
        .collect();
    let usage = tortie_ipam::usage::pools(&pools, &blocks).into_iter().map(|u| (u.cidr, u.total, u.in_use)).collect();
    let mine = tortie_ipam::usage::blocks(&blocks)
        .into_iter()
        .filter(|u| u.node.as_deref() == Some(s.node.as_str()))
        .map(|u| (u.cidr, u.total, u.in_use))
        .collect();
    Ok(Json(IpamSummary { pools: usage, blocks: mine }))
}

#[derive(Deserialize)]
struct RoutesParams {
    prefix: Option<IpNet>,
}

async fn routes(Shared(s): Shared<ApiState>, QueryParams(p): QueryParams<RoutesParams>) -> Json<Vec<Route>> {
    // In prefix order for people (the RIB keeps IPv6 prefixes in its own,
    // and a walk may meet one of them twice: the later page's stands).
    let (mut views, mut after) = (std::collections::BTreeMap::new(), None);
    // A page at a time: the speaker serves its sessions in between.
    while let Some(page) = s.ask(|reply| Query::Routes { prefix: p.prefix, after, reply }).await {
        views.extend(page.routes.into_iter().map(|v| (v.prefix, v)));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Json(views.into_values().map(route).collect())
}

#[derive(Deserialize)]
struct PolicyParams {
    endpoint: Option<String>,
}

/// `GET /policy[?endpoint=E]`: what applies to the local endpoints, with counters.
async fn policy(
    Shared(s): Shared<ApiState>,
    QueryParams(p): QueryParams<PolicyParams>,
) -> Result<Json<Vec<tortie_felix::policy::show::EndpointView>>, (axum::http::StatusCode, String)> {
    use tortie_felix::policy::{apply, show};
    let Some(ruleset) = &s.ruleset else {
        return Err((axum::http::StatusCode::NOT_FOUND, "this daemon has no data plane (a route reflector)".into()));
    };
    let ruleset = ruleset.borrow().clone();
    let listing = apply::list().await.map_err(|e| (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let counters = listing.as_ref().map(apply::counters).unwrap_or_default();
    Ok(Json(show::views(&ruleset, &counters, p.endpoint.as_deref())))
}

/// The socket path in `run_dir`.
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join(SOCKET)
}

/// Serves the API on `<run_dir>/tortie.sock` (replacing a stale socket).
pub async fn serve(run_dir: &Path, state: ApiState, metrics: super::metrics::MetricsState) -> anyhow::Result<()> {
    let path = socket_path(run_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing stale socket {}", path.display())),
    }
    let listener = tokio::net::UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    tracing::info!(socket = %path.display(), "local API listening");
    let app =
        Router::new()
            .route("/status", get(status))
            .route("/peers", get(peers))
            .route("/bfd", get(bfd))
            .route("/routes", get(routes))
            .route("/ipam", get(ipam))
            .route("/policy", get(policy))
            .with_state(state)
            .merge(
                Router::new()
                    .route(
                        "/metrics",
                        get(|Shared(m): Shared<super::metrics::MetricsState>| async move {
                            super::metrics::render(&m).await
                        }),
                    )
                    .route(
                        "/cni",
                        axum::routing::post(
                            |Shared(m): Shared<super::metrics::MetricsState>,
                             Json(e): Json<tortie_cni::report::CniEvent>| async move {
                                m.cni.record(&e)
                            },
                        ),
                    )
                    .with_state(metrics),
            );
    axum::serve(listener, app).await.context("serving the local API")
}
