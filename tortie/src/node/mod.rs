//! `tortie node run`: the node daemon. It registers the Node, then runs
//! felix (datastore → kernel), the BGP speaker with the peers the
//! datastore asks for, and the bridges between them, until SIGTERM/SIGINT.
//! Kernel routes stay when it stops (like BIRD's `persist`): the next start
//! adopts them, so pods keep their connectivity across restarts.

mod addresses;
pub mod bfd;
mod bridge;
pub mod health;
pub mod local_api;
mod metrics;
mod run_lock;
pub mod settings;
pub mod summary;
mod tunnel;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use addresses::Addresses;
use anyhow::Context as _;
use ipnet::IpNet;
use tokio::sync::{mpsc, watch};
use tortie_bgp::rib::policy::Policy;
use tortie_bgp::speaker::{self, SpeakerCommand};
use tortie_felix::agent::{self, AgentConfig};
use tortie_ipip::vxlan;
use tortie_store::Datastore;
use tortie_store::api::{self, ApiError};
use tortie_store::resources::{
    API_VERSION, BgpFilterSpec, KEY_PREFIX, Kind, Metadata, NodeBgp, NodeSpec, Object, Resource,
};
use tortie_store::syncer::Syncer;

use tortie_peering::{self as peers, Me, PlannedPeer, advertise, filters};

/// ECMP paths installed per prefix at most.
const MAX_PATHS: usize = 8;

/// What `tortie node run` and `tortie reflector run` share.
#[derive(clap::Args, Debug)]
pub struct CommonArgs {
    /// This node's name (its Node resource).
    #[arg(long)]
    name: String,
    /// This node's IPv4 address with its subnet length (default: the first
    /// global IPv4 address), or `none` for an IPv6-only node (Calico's `IP`).
    #[arg(long)]
    ip: Option<addresses::Ipv4Setting>,
    /// This node's IPv6 address with its subnet length, for a dual-stack or
    /// IPv6-only cluster (Calico's `IP6`): published as `bgp.ipv6Address`,
    /// and the node-to-node mesh runs over IPv6 too.
    #[arg(long)]
    ip6: Option<ipnet::Ipv6Net>,
    /// The BGP router ID: an IPv4-formatted ID or `hash` (of the node's
    /// name), as Calico's `CALICO_ROUTER_ID` (default: the IPv4 address;
    /// on an IPv6-only node, `hash`).
    #[arg(long)]
    router_id: Option<addresses::RouterIdSetting>,
    /// Where the daemon keeps its API socket and state.
    #[arg(long, default_value = "/var/run/tortie")]
    run_dir: PathBuf,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Also serve Prometheus metrics over TCP here (e.g. 0.0.0.0:9091).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// BGP send hold time, seconds (RFC 9687): a peer that takes nothing
    /// we send for this long is reset (default: the larger of 480 and
    /// twice the session's hold time).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    send_hold_time: Option<u64>,
    /// Where BGPPeer password secrets live: `<dir>/<secret name>/<key>`
    /// (the layout of a mounted Kubernetes secret).
    #[arg(long, default_value = "/etc/tortie/secrets")]
    secrets_dir: PathBuf,
}

/// How routes to other nodes' pods are learned (Calico's
/// `CALICO_NETWORKING_BACKEND`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// BGP: the embedded speaker learns and advertises them (Calico's
    /// BIRD), with IPIP or VXLAN where the pools ask.
    Bird,
    /// No BGP: each node routes other nodes' blocks from the datastore's
    /// block affinities, through VXLAN (or IPIP) where the pools ask and
    /// natively where they say `Never` (Flannel's host-gw shape).
    Vxlan,
}

/// `tortie node run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// How routes to other nodes' pods are learned.
    #[arg(long, value_enum, default_value_t = Backend::Bird, env = "TORTIE_NETWORKING_BACKEND")]
    networking_backend: Backend,
    /// Full route resync interval, seconds (default: FelixConfiguration
    /// `routeRefreshInterval`, else 90).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    route_resync: Option<u64>,
    /// Longest wait for BGP to relearn routes after a start, seconds.
    #[arg(long, default_value_t = 120)]
    relearn_limit: u64,
    /// MTU of the node's network: the IPIP device gets 20 bytes less, the
    /// VXLAN device 50 (unless FelixConfiguration sets them).
    #[arg(long, default_value_t = 1500)]
    underlay_mtu: u16,
    /// How often the policy table in nftables is checked (and repaired if
    /// someone changed it), seconds (default: FelixConfiguration
    /// `nftablesRefreshInterval` / `iptablesRefreshInterval`, else 30).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    policy_check: Option<u64>,
    /// A mounted bpffs: the eBPF IPIP data plane pins its maps under
    /// `<dir>/tortie/` so that they outlive the daemon (mounted there if it
    /// is not; in a container, mount the host's).
    #[arg(long, default_value = "/sys/fs/bpf")]
    bpffs: PathBuf,
}

/// The data plane settings of `tortie node run`.
struct Dataplane {
    backend: Backend,
    resync: Option<u64>,
    relearn: u64,
    underlay_mtu: u16,
    policy_check: Option<u64>,
    bpffs: PathBuf,
}

/// `tortie reflector run`: a dedicated route reflector, no data plane.
#[derive(clap::Args, Debug)]
pub struct ReflectorArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The cluster's CLUSTER_ID (RFC 4456), written to the Node as
    /// `routeReflectorClusterID`; redundant reflectors share it.
    #[arg(long)]
    cluster_id: std::net::Ipv4Addr,
    /// Accept iBGP clients from any address in this range, with no
    /// configuration per client (repeatable).
    #[arg(long)]
    listen_range: Vec<IpNet>,
}

/// Creates or updates this node's Node resource with its address (and,
/// for a dedicated reflector, its cluster id).
async fn register(
    kv: &Datastore,
    name: &str,
    addresses: Addresses,
    cluster_id: Option<std::net::Ipv4Addr>,
) -> anyhow::Result<()> {
    let this_run = |spec: &mut NodeSpec| {
        let bgp = spec.bgp.get_or_insert_with(NodeBgp::default);
        // The addresses this run has, and no other: one from an earlier run
        // that this one lacks (an IPv6-only node, `--ip6` dropped) goes.
        bgp.ipv4_address = addresses.v4.map(IpNet::V4);
        bgp.ipv6_address = addresses.v6.map(IpNet::V6);
        if cluster_id.is_some() {
            bgp.route_reflector_cluster_id = cluster_id;
        }
    };
    // Changed where it stands: the node's other fields (labels, a tunnel
    // address another writer publishes meanwhile) are kept; made only if
    // there is none (one written meanwhile is then changed in turn).
    let mut attempts = 0;
    loop {
        let written = api::update(kv, Kind::Node, None, name, |r| {
            let Resource::Node(n) = r else { return false };
            let before = n.spec.clone();
            this_run(&mut n.spec);
            n.spec != before
        })
        .await;
        let created = match written {
            Ok(_) => break,
            Err(ApiError::NotFound { .. }) => {
                let mut node = Object {
                    api_version: API_VERSION.into(),
                    kind: "Node".into(),
                    metadata: Metadata { name: name.into(), ..Metadata::default() },
                    spec: NodeSpec::default(),
                };
                this_run(&mut node.spec);
                api::create(kv, &Resource::Node(node)).await
            }
            Err(e) => return Err(e).context("registering the Node"),
        };
        match created {
            Ok(()) => break,
            Err(ApiError::Conflict(_)) if attempts < 3 => attempts += 1,
            Err(e) => return Err(e).context("registering the Node"),
        }
    }
    tracing::info!(node = name, address = ?addresses.v4, address6 = ?addresses.v6, router_id = %addresses.router_id, "node registered");
    Ok(())
}

/// Runs the node daemon until SIGTERM or SIGINT.
pub async fn run(kv: Datastore, args: RunArgs) -> anyhow::Result<()> {
    let dataplane = Dataplane {
        backend: args.networking_backend,
        resync: args.route_resync,
        relearn: args.relearn_limit,
        underlay_mtu: args.underlay_mtu,
        policy_check: args.policy_check,
        bpffs: args.bpffs,
    };
    serve(kv, args.common, Some(dataplane), None, Vec::new()).await
}

/// Runs a dedicated route reflector until SIGTERM or SIGINT: the speaker,
/// its peers from the datastore and the API; no routes, pods or tunnels.
pub async fn run_reflector(kv: Datastore, args: ReflectorArgs) -> anyhow::Result<()> {
    serve(kv, args.common, None, Some(args.cluster_id), args.listen_range).await
}

/// The daemon: `dataplane` settings for a node,
/// none for a dedicated reflector with `cluster_id`.
async fn serve(
    kv: Datastore,
    args: CommonArgs,
    dataplane: Option<Dataplane>,
    cluster_id: Option<std::net::Ipv4Addr>,
    listen_ranges: Vec<IpNet>,
) -> anyhow::Result<()> {
    let logs = settings::init_logs(args.log_json);
    std::fs::create_dir_all(&args.run_dir).with_context(|| format!("creating run dir {}", args.run_dir.display()))?;
    // Before anything is touched: one daemon per run directory.
    let _run_lock = run_lock::RunLock::take(&args.run_dir)?;
    let addresses = Addresses::resolve(&args.name, args.ip, args.ip6, args.router_id).await?;
    register(&kv, &args.name, addresses, cluster_id).await?;
    // One watch of the datastore, in memory, for felix, the tunnel and the peers.
    let synced = Syncer::start(kv.clone(), "/calico/").await.context("reading the datastore")?;
    // IPIP, VXLAN and IPv6 VXLAN, where they run.
    let (mut tunnels, mut felix, mut bpffs_dir) = ([None, None, None], None, None);
    // RFC 4724 §4.1: routes of ours already in the kernel mean this daemon
    // restarted with its forwarding state preserved.
    let mut restarted = None;
    let mut bgp = true;
    if let Some(Dataplane { backend, resync, relearn, underlay_mtu, policy_check, bpffs }) = dataplane {
        bgp = backend == Backend::Bird;
        let kept = tortie_felix::netlink::Netlink::open().and_then(|mut nl| nl.routes()).map(|r| r.len());
        match kept {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(routes = n, "restarting with routes in the kernel: graceful restart");
                restarted = Some(Duration::from_secs(relearn));
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the kernel's routes; starting as new"),
        }
        if !bgp {
            restarted = None;
            tracing::info!("networking backend vxlan: no BGP; other nodes' blocks are routed from the datastore");
        }
        let (encap_tx, encap_rx) = watch::channel(Arc::new(tortie_ipip::EncapTable::default()));
        let (vteps_tx, vteps_rx) = watch::channel(Arc::new(tortie_ipip::vxlan::VtepTable::default()));
        // Each tunnel runs once a pool asks for it (the node then holds its
        // address): IPIP and VXLAN carry IPv4 between the nodes' IPv4
        // addresses, the IPv6 VXLAN device IPv6 between their IPv6 ones.
        let start = |encap, local: IpAddr| tunnel::start(synced.clone(), &args.name, local, underlay_mtu, encap);
        let (ipip, vxlan) = match addresses.ipv4() {
            Some(local) => {
                let ipip = start(tunnel::Encap::Ipip { table: encap_rx, bpffs: bpffs.clone() }, local.into()).await?;
                let table = vteps_rx.clone();
                let vxlan = start(tunnel::Encap::Vxlan { table, family: vxlan::Family::V4 }, local.into()).await?;
                (Some(ipip), Some(vxlan))
            }
            None => {
                tracing::info!(
                    "IPv6-only node: no IPIP or IPv4 VXLAN tunnel (they carry IPv4 between IPv4 node addresses)"
                );
                tunnel::remove_leftover(synced.clone(), &args.name, vteps_rx.clone(), vxlan::Family::V4).await;
                (None, None)
            }
        };
        let vxlan6 = match addresses.v6 {
            Some(a) => {
                let encap = tunnel::Encap::Vxlan { table: vteps_rx, family: vxlan::Family::V6 };
                Some(start(encap, a.addr().into()).await?)
            }
            None => {
                tunnel::remove_leftover(synced.clone(), &args.name, vteps_rx, vxlan::Family::V6).await;
                None
            }
        };
        let device = |t: Option<&tunnel::NodeTunnel>| t.map_or_else(|| watch::channel(None).1, |t| t.device.clone());
        let config = AgentConfig {
            node: args.name.clone(),
            route_refresh: resync.map(Duration::from_secs),
            tunnel: device(ipip.as_ref()),
            relearn_limit: Duration::from_secs(relearn),
            encap: Some(encap_tx),
            policy_check: policy_check.map(Duration::from_secs),
            vxlan: device(vxlan.as_ref()),
            vxlan6: device(vxlan6.as_ref()),
            vteps: Some(vteps_tx),
            routes_from_datastore: !bgp,
        };
        felix = Some(agent::start(synced.clone(), config).await.context("starting felix")?);
        tunnels = [ipip, vxlan, vxlan6];
        bpffs_dir = Some(bpffs);
    }

    let plan = Arc::new(Mutex::new((peers::DEFAULT_AS, BTreeMap::new())));
    let (bgp_level_tx, bgp_level_rx) = watch::channel(None);
    let (speaker_commands, statuses, bfd_reports, mut peer_task, speaker_stopped) = if bgp {
        let (best_tx, best_rx) = mpsc::channel(1024);
        let configs = bgp_configs(&synced).await?;
        let listen = listeners(&configs, &args.name, addresses);
        let speaker = speaker::spawn(addresses.router_id, MAX_PATHS, best_tx, listen.iter().copied())
            .await
            .with_context(|| format!("starting the BGP speaker on {listen:?}"))?;
        if let Some(deferral) = restarted {
            speaker.commands.send(SpeakerCommand::Restarted { deferral }).await.context("starting the BGP speaker")?;
        }
        let (advertise_tx, advertise_rx) = watch::channel(Arc::new(advertise::Advertise::default()));
        match &felix {
            Some(f) => {
                drop(bridge::originate(f.originate.clone(), advertise_rx, speaker.commands.clone()).await);
                tokio::spawn(bridge::learned(best_rx, f.learned.clone()));
            }
            // A dedicated reflector installs nothing: best paths are only counted out.
            None => drop(tokio::spawn(async move {
                let mut best_rx = best_rx;
                while best_rx.recv().await.is_some() {}
            })),
        }
        let (bfd_tx, bfd_rx) = watch::channel(bfd::Wanted::new());
        let bfd_sessions = bfd::follow(args.run_dir.clone(), bfd_rx, speaker.commands.clone());
        let manager = PeerManager {
            kv: synced,
            name: args.name.clone(),
            addresses,
            speaker: speaker.commands.clone(),
            plan: plan.clone(),
            listen_ranges,
            secrets_dir: args.secrets_dir.clone(),
            send_hold: args.send_hold_time.map(Duration::from_secs),
            listening: listen,
            advertise: advertise_tx,
            bgp_level: bgp_level_tx,
            bfd: bfd_tx,
        };
        let stopped = Some(speaker.stopped());
        (Some(speaker.commands.clone()), speaker.peers.clone(), bfd_sessions, tokio::spawn(manager.run()), stopped)
    } else {
        // No speaker: no sessions, no BFD, nothing to plan.
        (None, Arc::default(), watch::channel(bfd::Report::default()).1, tokio::spawn(std::future::pending()), None)
    };
    let api_state = local_api::ApiState {
        node: args.name.clone(),
        router_id: addresses.router_id,
        speaker: speaker_commands,
        statuses,
        plan,
        kv: kv.clone(),
        ruleset: felix.as_ref().map(|f| f.ruleset.clone()),
        datastore: health::spawn(kv.clone()),
        bfd: bfd_reports,
        ipip: tunnels[0].as_ref().zip(bpffs_dir.clone()).map(|(ipip, bpffs)| (ipip.device.clone(), bpffs)),
        vxlan: tunnels[1..].iter().flatten().map(|vxlan| vxlan.device.clone()).collect(),
    };
    tokio::spawn(summary::publish(kv.clone(), api_state.clone(), felix.as_ref().map(|f| f.felix_config.clone())));
    let metrics_state = metrics::MetricsState {
        cni: Arc::default(),
        api: api_state.clone(),
        reconcile: felix.as_ref().map(|f| f.stats.clone()),
        policy: felix.as_ref().map(|f| f.policy_stats.clone()),
        ipip: bpffs_dir,
    };
    if let Some(listen) = args.metrics_listen {
        let m = metrics_state.clone();
        tokio::spawn(async move {
            if let Err(e) = metrics::serve_tcp(listen, m).await {
                tracing::error!(error = %e, "metrics listener stopped");
            }
        });
    }
    if let Some(f) = &felix {
        tokio::spawn(settings::follow(
            f.felix_config.clone(),
            bgp_level_rx,
            logs,
            args.metrics_listen,
            metrics_state.clone(),
        ));
    }
    let run_dir = args.run_dir.clone();
    let mut api_task = tokio::spawn(async move { local_api::serve(&run_dir, api_state, metrics_state).await });

    tokio::spawn(trim_heap());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let felix_task = async {
        match felix {
            Some(f) => f.task.await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(felix_task);
    let speaker_stopped = async {
        match speaker_stopped {
            Some(stopped) => stopped.await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(speaker_stopped);
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping; kernel routes stay"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping; kernel routes stay"),
        r = &mut felix_task => return Err(anyhow::anyhow!("felix stopped: {:?}", r?.err())),
        r = &mut peer_task => return Err(anyhow::anyhow!("peer manager stopped: {:?}", r?.err())),
        r = &mut api_task => return Err(anyhow::anyhow!("local API stopped: {:?}", r?.err())),
        () = &mut speaker_stopped => return Err(anyhow::anyhow!("the BGP speaker stopped (its thread ended)")),
    }
    drop(tunnels);
    Ok(())
}

/// Gives freed heap memory back to the kernel now and then: a node daemon
/// is long-lived and mostly idle, and the bursts (a full table, a resync of
/// every pod) leave freed pages that glibc would otherwise keep.
async fn trim_heap() {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tick.tick().await;
        // SAFETY: malloc_trim(3) only releases free memory; no preconditions.
        unsafe { libc::malloc_trim(0) };
    }
}

/// Everything the peer plan reads.
/// A planned session with the policies its BGPPeer's filters give.
type Planned = (Me, Vec<(PlannedPeer, (Policy, Policy))>);

/// A BGPPeer's (or the mesh's) password from `<secrets_dir>/<secret name>/<key>`.
fn read_secret(secrets_dir: &std::path::Path, peer: &str, r: &tortie_store::resources::SecretKeyRef) -> Option<String> {
    let path = secrets_dir.join(&r.name).join(&r.key);
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(s.trim_end_matches(['\n', '\r']).to_string()),
        Err(e) => {
            tracing::error!(peer, secret = %path.display(), error = %e, "BGP password secret unreadable: not peering");
            None
        }
    }
}

/// Where the speaker listens: over IPv4 as `bindMode` says, and on the
/// node's IPv6 address (its own socket: a wildcard one would take IPv4
/// connections too), each at the node's `listenPort`.
fn listeners(configs: &peers::Configs, name: &str, addresses: Addresses) -> Vec<SocketAddr> {
    let v6 = addresses.v6.map(|a| SocketAddr::new(IpAddr::V6(a.addr()), configs.port(name)));
    configs.listen_address(name, addresses.ipv4()).into_iter().chain(v6).collect()
}

/// Every BGPConfiguration: `default` and the nodes' `node.<name>`.
async fn bgp_configs(kv: &Syncer) -> anyhow::Result<peers::Configs> {
    let all = api::list(kv, Kind::BgpConfiguration, None).await?;
    Ok(peers::Configs::new(all.into_iter().filter_map(|r| match r {
        Resource::BgpConfiguration(c) => Some(c),
        _ => None,
    })))
}

async fn plan_peers(
    kv: &Syncer,
    configs: &peers::Configs,
    name: &str,
    addresses: Addresses,
    secrets_dir: &std::path::Path,
    send_hold: Option<Duration>,
) -> anyhow::Result<Planned> {
    let nodes: Vec<Object<NodeSpec>> = api::list(kv, Kind::Node, None)
        .await?
        .into_iter()
        .filter_map(|r| if let Resource::Node(n) = r { Some(n) } else { None })
        .collect();
    let bgp_peers: Vec<_> = api::list(kv, Kind::BgpPeer, None)
        .await?
        .into_iter()
        .filter_map(|r| if let Resource::BgpPeer(p) = r { Some(p) } else { None })
        .collect();
    let mine = nodes.iter().find(|n| n.metadata.name == name);
    let labels = mine.map(|n| n.metadata.labels.clone()).unwrap_or_default();
    let asn =
        mine.and_then(|n| n.spec.bgp.as_ref()?.as_number).or(configs.default.as_number).unwrap_or(peers::DEFAULT_AS);
    let cluster_id = mine.and_then(|n| n.spec.bgp.as_ref()?.route_reflector_cluster_id);
    let address6 = mine.and_then(|n| match n.spec.bgp.as_ref()?.ipv6_address? {
        IpNet::V6(a) => Some(a.addr()),
        IpNet::V4(_) => None,
    });
    let me = Me {
        name: name.to_string(),
        address: addresses.ipv4(),
        address6,
        router_id: addresses.router_id,
        asn,
        labels,
        cluster_id,
        send_hold,
    };
    let filters: BTreeMap<String, BgpFilterSpec> = api::list(kv, Kind::BgpFilter, None)
        .await?
        .into_iter()
        .filter_map(|r| if let Resource::BgpFilter(f) = r { Some((f.metadata.name, f.spec)) } else { None })
        .collect();
    let plan = peers::plan(&me, configs, &nodes, &bgp_peers)
        .into_iter()
        .filter_map(|mut p| {
            // RFC 2385: a peer with a password gets it as its TCP MD5 key; without a readable one, no session.
            let mesh = configs.default.node_mesh_password.as_ref().filter(|_| p.kind == peers::PeerType::Mesh);
            let secret = match mesh {
                Some(pw) => Some(("node-to-node mesh".to_string(), pw.secret_key_ref.clone())),
                None => {
                    p.bgp_peer.as_ref().and_then(|n| bgp_peers.iter().find(|b| &b.metadata.name == n)).and_then(|b| {
                        b.spec.password.as_ref().map(|pw| (b.metadata.name.clone(), pw.secret_key_ref.clone()))
                    })
                }
            };
            if let Some((peer, r)) = secret {
                p.password = Some(read_secret(secrets_dir, &peer, &r)?);
            }
            Some(p)
        })
        .map(|p| {
            let names = p
                .bgp_peer
                .as_ref()
                .and_then(|n| bgp_peers.iter().find(|b| &b.metadata.name == n))
                .map(|b| b.spec.filters.clone())
                .unwrap_or_default();
            let policies = if names.is_empty() {
                (Policy::accept_all(), Policy::accept_all())
            } else {
                filters::policies(&names, &filters)
            };
            (p, policies)
        })
        .collect();
    Ok((me, plan))
}

/// Keeps the speaker's neighbours in line with the datastore: new peers
/// are added, removed ones closed (Cease / Administrative Shutdown),
/// changed ones replaced; the others are not touched.
struct PeerManager {
    kv: Syncer,
    name: String,
    addresses: Addresses,
    speaker: mpsc::Sender<SpeakerCommand>,
    plan: Arc<Mutex<(u32, BTreeMap<String, PlannedPeer>)>>,
    listen_ranges: Vec<IpNet>,
    secrets_dir: PathBuf,
    send_hold: Option<Duration>,
    /// Where the speaker listens, both families (chosen at start).
    listening: Vec<SocketAddr>,
    /// The service ranges and communities for what the node originates.
    advertise: watch::Sender<Arc<advertise::Advertise>>,
    /// The speaker's log level (BGPConfiguration `logSeverityScreen`).
    bgp_level: watch::Sender<Option<&'static str>>,
    /// The peers BFD watches.
    bfd: watch::Sender<bfd::Wanted>,
}

impl PeerManager {
    /// The sessions that want BFD (Calico's `failureDetectionMode:
    /// BFDIfDirectlyConnected`, the mesh's `tortie.io/bfd`), to peers on
    /// the node's own subnet: by peer address.
    fn bfd_peers(&self, running: &BTreeMap<String, (PlannedPeer, (Policy, Policy))>) -> bfd::Wanted {
        let mut wanted = bfd::Wanted::new();
        for (name, (p, _)) in running {
            // Single-hop BFD (RFC 5881): a peer on one of our subnets, over
            // the session's family, from our address of that family.
            let remote = p.remote.ip();
            let on_link = match remote {
                IpAddr::V4(r) => self.addresses.v4.filter(|a| a.trunc().contains(&r)).map(|a| IpAddr::V4(a.addr())),
                IpAddr::V6(r) => self.addresses.v6.filter(|a| a.trunc().contains(&r)).map(|a| IpAddr::V6(a.addr())),
            };
            let Some(local) = on_link.filter(|_| p.session.bfd) else { continue };
            let interval = p.session.bfd_interval.unwrap_or(tortie_store::resources::DEFAULT_BFD_INTERVAL);
            let peer = bfd::WirePeer {
                remote,
                local,
                interval_ms: interval.as_millis() as u64,
                multiplier: p.session.bfd_multiplier.unwrap_or(tortie_store::resources::DEFAULT_BFD_MULTIPLIER),
            };
            wanted.entry(remote).or_insert((Vec::new(), peer)).0.push(name.clone());
        }
        wanted
    }

    async fn run(self) -> anyhow::Result<()> {
        let mut running: BTreeMap<String, (PlannedPeer, (Policy, Policy))> = BTreeMap::new();
        let mut cluster_id = None;
        let mut ranges_added = false;
        // Peers come from resources only (not IPAM, not the nodes' status).
        let mut changes = self.kv.changes(&[KEY_PREFIX]);
        loop {
            let configs = bgp_configs(&self.kv).await?;
            let (me, plan) =
                plan_peers(&self.kv, &configs, &self.name, self.addresses, &self.secrets_dir, self.send_hold).await?;
            let advertise = advertise::Advertise::new(&configs.default, &configs.of(&self.name));
            self.advertise.send_if_modified(|a| {
                let changed = **a != advertise;
                if changed {
                    tracing::info!(services = ?advertise.services, "advertised service ranges and communities");
                    *a = Arc::new(advertise);
                }
                changed
            });
            self.bgp_level.send_if_modified(|l| std::mem::replace(l, configs.of(&self.name).log_level()) != *l);
            let want = listeners(&configs, &self.name, self.addresses);
            if want != self.listening {
                tracing::warn!(listening = ?self.listening, configured = ?want,
                    "BGPConfiguration listenPort or bindMode changed: the speaker moves there when the daemon restarts");
            }
            let wanted: BTreeMap<String, (PlannedPeer, (Policy, Policy))> =
                plan.into_iter().map(|(p, pol)| (p.name.clone(), (p, pol))).collect();
            if me.cluster_id != cluster_id {
                // The Node's routeReflectorClusterID makes this node a route reflector (RFC 4456).
                cluster_id = me.cluster_id;
                let role = cluster_id.map(|id| {
                    Arc::new(tortie_reflector::RouteReflector { cluster_id: id })
                        as Arc<dyn tortie_reflector::Reflector>
                });
                tracing::info!(cluster_id = ?cluster_id, "route-reflector role");
                self.speaker.send(SpeakerCommand::SetReflector(role)).await?;
            }
            if !ranges_added {
                ranges_added = true;
                for range in &self.listen_ranges {
                    // A range of a family this node has no address of stops the daemon, naming it.
                    let template = peers::dynamic_template(&me, *range).map_err(anyhow::Error::msg)?;
                    let r = tortie_bgp::speaker::DynamicRange { range: *range, template };
                    self.speaker.send(SpeakerCommand::AddRange(Box::new(r))).await?;
                }
            }
            for (name, (old, _)) in &running {
                if !wanted.get(name).is_some_and(|(p, _)| p.same_session(old)) {
                    tracing::info!(peer = name, "removing BGP peer");
                    self.speaker.send(SpeakerCommand::RemoveNeighbor(name.clone())).await?;
                }
            }
            for (name, (p, policies)) in &wanted {
                match running.get(name) {
                    Some((old, _)) if old.same_session(p) => {}
                    _ => {
                        let passive = p.passive || p.session.passive;
                        tracing::info!(peer = name, remote = %p.remote, asn = p.asn, kind = ?p.kind, passive, "adding BGP peer");
                        let n = peers::neighbor(&me, p, policies.clone());
                        self.speaker.send(SpeakerCommand::AddNeighbor(Box::new(n))).await?;
                        continue;
                    }
                }
                if running.get(name).map(|(_, pol)| pol) != Some(policies) {
                    // A filter changed: new policies, the session stays up.
                    tracing::info!(peer = name, "BGP filters changed; applying without a session reset");
                    let (import, export) = policies.clone();
                    self.speaker
                        .send(SpeakerCommand::SetPolicies {
                            peer: name.clone(),
                            import: Some(import),
                            export: Some(export),
                        })
                        .await?;
                }
            }
            running = wanted;
            self.bfd.send_if_modified(|b| std::mem::replace(b, self.bfd_peers(&running)) != *b);
            let planned: BTreeMap<String, PlannedPeer> =
                running.iter().map(|(n, (p, _))| (n.clone(), p.clone())).collect();
            *self.plan.lock().unwrap_or_else(|p| p.into_inner()) = (me.asn, planned);
            self.speaker.send(SpeakerCommand::Planned(running.keys().cloned().collect())).await?;
            if !changes.changed().await {
                return Ok(());
            }
            // A burst of changes (an `apply` of many resources) is one re-plan.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory, removed even when the test fails.
    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The first run creates the Node; a later one sets its own addresses
    /// and keeps what others wrote there meanwhile (a label, the VXLAN
    /// tunnel's address): registering does not write the Node it read back
    /// over them.
    #[tokio::test]
    async fn registering_sets_this_run_s_addresses_and_keeps_the_node_s_other_fields() {
        let dir = Scratch(std::env::temp_dir().join(format!("tortie-register-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).unwrap();
        let kv = Datastore::open(&format!("sqlite://{}/store.db", dir.0.display())).await.unwrap();
        let run =
            |v4: &str| Addresses { v4: Some(v4.parse().unwrap()), v6: None, router_id: "192.0.2.1".parse().unwrap() };
        register(&kv, "n1", run("192.0.2.1/24"), None).await.unwrap();
        let tunnel = "198.18.0.1".parse().unwrap();
        api::update(&kv, Kind::Node, None, "n1", |r| {
            let Resource::Node(n) = r else { return false };
            n.metadata.labels.insert("rack".into(), "r1".into());
            n.spec.ipv4_vxlan_tunnel_addr = Some(tunnel);
            true
        })
        .await
        .unwrap();
        register(&kv, "n1", run("192.0.2.2/24"), None).await.unwrap();
        let Ok(Resource::Node(n)) = api::get(&kv, Kind::Node, None, "n1").await else { panic!("no Node n1") };
        let bgp = n.spec.bgp.as_ref().expect("bgp");
        assert_eq!(bgp.ipv4_address, Some("192.0.2.2/24".parse().unwrap()), "this run's address");
        assert_eq!(n.spec.ipv4_vxlan_tunnel_addr, Some(tunnel), "the tunnel's address is kept");
        assert_eq!(n.metadata.labels.get("rack").map(String::as_str), Some("r1"), "the label is kept");
    }
}
