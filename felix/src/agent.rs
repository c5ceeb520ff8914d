//! The agent: watches the datastore, keeps the calculation's inputs, and
//! publishes the desired state to the route reconciler and the prefixes to
//! originate to whoever speaks BGP (the `tortie node run` composition root
//! bridges them to the speaker; felix itself never speaks BGP).
//!
//! ```text
//!  datastore watch ──▶ ┌ agent task ┐ ──DesiredCell──▶ reconciler ──▶ kernel
//!  Learned (from BGP) ─▶ │ Snapshot + │ ──watch<originate>──▶ speaker bridge
//!                      └ learned map┘
//! ```
//!
//! Restart safety: the reconciler starts only once the first snapshot is
//! in, and until BGP says it has relearned (or `relearn_limit` passes) the
//! gateway routes already in the kernel are kept, so a restarting agent
//! never interrupts traffic to other nodes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::{mpsc, watch};
use tortie_ipip::EncapTable;
use tortie_ipip::vxlan::{Vtep, VtepTable};
use tortie_store::ipam::{IPAM_PREFIX, IpamBlock};
use tortie_store::kv::Kv;
use tortie_store::resources::{FelixConfigurationSpec, KEY_PREFIX, Kind, Resource};
use tortie_store::syncer::Syncer;

use crate::calc::{self, Remote, Snapshot};
use crate::policy::model::{NAMESPACE_PROFILE_PREFIX, PolicyName};
use crate::policy::{Endpoint, HostRules, Inputs, Policy, Ruleset, apply as policy_apply};
use crate::reconcile::{self, Desired, DesiredCell, ReconcileStats, ReconcilerConfig};
use crate::route::LearnedHops;

/// Agent settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node's name (its Node resource).
    pub node: String,
    /// The route reconciler's full-pass interval when set on the command
    /// line (it wins over FelixConfiguration `routeRefreshInterval`).
    pub route_refresh: Option<Duration>,
    /// The IPIP tunnel device, once one is up (it may come up while the
    /// agent runs: a pool turned to IPIP; routes then move onto it).
    pub tunnel: watch::Receiver<Option<String>>,
    /// Longest wait for BGP to relearn after a start before routes it did
    /// not relearn are removed.
    pub relearn_limit: Duration,
    /// Where the eBPF IPIP data plane learns which prefixes it carries
    /// to which node (when it runs).
    pub encap: Option<watch::Sender<Arc<EncapTable>>>,
    /// How often the nftables table is compared with what was applied,
    /// when set on the command line (it wins over FelixConfiguration
    /// `nftablesRefreshInterval` / `iptablesRefreshInterval`).
    pub policy_check: Option<Duration>,
    /// The VXLAN device, once one is up (as `tunnel`).
    pub vxlan: watch::Receiver<Option<String>>,
    /// The IPv6 VXLAN device, once one is up.
    pub vxlan6: watch::Receiver<Option<String>>,
    /// Where the VXLAN data plane learns the remote nodes' tunnel ends.
    pub vteps: Option<watch::Sender<Arc<VtepTable>>>,
    /// No BGP: other nodes' blocks are routed from the datastore's block
    /// affinities (Calico's `vxlan` networking backend).
    pub routes_from_datastore: bool,
}

/// How often the nftables table is checked when nothing sets it.
pub const DEFAULT_POLICY_CHECK: Duration = Duration::from_secs(30);

/// News from BGP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Learned {
    /// The best next hops for each prefix of a batch (or a chunk of one) of
    /// changes; empty when it is gone. Later batches override earlier ones.
    Routes(Vec<(IpNet, LearnedHops)>),
    /// Every peer has sent its table: routes not relearned may go.
    Converged,
}

/// A felix failure.
#[derive(Debug, thiserror::Error)]
pub enum FelixError {
    /// The datastore failed.
    #[error("datastore: {0}")]
    Store(#[from] tortie_store::StoreError),
    /// A stored record is unreadable.
    #[error("datastore record {key}: {why}")]
    Record {
        /// Its key.
        key: String,
        /// Why.
        why: String,
    },
    /// netlink failed.
    #[error(transparent)]
    Netlink(#[from] crate::netlink::NetlinkError),
}

/// A running agent.
pub struct Agent {
    /// Prefixes to originate (latest set).
    pub originate: watch::Receiver<BTreeSet<IpNet>>,
    /// Where BGP's news goes (bounded).
    pub learned: mpsc::Sender<Learned>,
    /// The reconciler's counters.
    pub stats: Arc<ReconcileStats>,
    /// The policy table in force (latest compiled).
    pub ruleset: watch::Receiver<Arc<Ruleset>>,
    /// The policy data plane's counters.
    pub policy_stats: Arc<policy_apply::PolicyStats>,
    /// This node's FelixConfiguration (`node.<name>` over `default`), for
    /// the process-wide settings (log level, metrics listener).
    pub felix_config: watch::Receiver<Arc<FelixConfigurationSpec>>,
    /// The agent task (ends on a datastore failure it cannot recover from).
    pub task: tokio::task::JoinHandle<Result<(), FelixError>>,
}

/// Records as last decoded, by key, with the revision they were decoded
/// at: a datastore change decodes again only the records that changed.
#[derive(Default)]
pub struct Decoded {
    resources: HashMap<String, (i64, Resource)>,
    blocks: HashMap<String, (i64, IpamBlock)>,
}

impl Decoded {
    /// `key` at `revision`, decoded by `decode` unless it already was.
    fn get<T: Clone, E>(
        cache: &mut HashMap<String, (i64, T)>,
        key: &str,
        revision: i64,
        decode: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        if let Some((rev, value)) = cache.get(key)
            && *rev == revision
        {
            return Ok(value.clone());
        }
        let value = decode()?;
        cache.insert(key.to_string(), (revision, value.clone()));
        Ok(value)
    }
}

/// Reads everything the calculation needs (from `cache` what is unchanged).
pub async fn load(kv: &impl Kv, node: &str, cache: &mut Decoded) -> Result<(Snapshot, i64), FelixError> {
    let mut s = Snapshot { node: node.to_string(), ..Snapshot::default() };
    let (mut felix_default, mut felix_node) = (None, None);
    let everything = kv.range("/calico/").await?;
    let present: std::collections::HashSet<&str> = everything.kvs.iter().map(|i| i.key.as_str()).collect();
    cache.resources.retain(|k, _| present.contains(k.as_str()));
    cache.blocks.retain(|k, _| present.contains(k.as_str()));
    for item in &everything.kvs {
        // One unreadable record must not stop the node: it is skipped, loudly.
        let skip = |why: String| tracing::warn!(key = item.key, why, "skipping an unreadable datastore record");
        if item.key.starts_with(&format!("{IPAM_PREFIX}assignment/")) {
            match Decoded::get(&mut cache.blocks, &item.key, item.mod_revision, || {
                serde_json::from_slice::<IpamBlock>(&item.value)
            }) {
                Ok(block) => s.blocks.push(block),
                Err(e) => skip(e.to_string()),
            }
            continue;
        }
        let kind = [
            Kind::Node,
            Kind::IpPool,
            Kind::WorkloadEndpoint,
            Kind::NetworkPolicy,
            Kind::GlobalNetworkPolicy,
            Kind::HostEndpoint,
            Kind::Profile,
            Kind::NetworkSet,
            Kind::GlobalNetworkSet,
            Kind::FelixConfiguration,
        ]
        .into_iter()
        .find(|k| item.key.starts_with(&k.prefix(None)));
        let Some(kind) = kind else { continue };
        let policy = &mut s.policy;
        match Decoded::get(&mut cache.resources, &item.key, item.mod_revision, || {
            Resource::from_stored(kind, &item.value, item.mod_revision)
        }) {
            Ok(Resource::Node(n)) => {
                let address = n.spec.bgp.as_ref().and_then(|b| b.ipv4_address);
                let address6 = n.spec.bgp.as_ref().and_then(|b| b.ipv6_address);
                let mac = |m: &Option<String>| m.as_deref().and_then(tortie_store::resources::parse_mac);
                let mut vtep = |node: IpAddr, tunnel_address: Option<IpAddr>, mac: Option<[u8; 6]>| {
                    if let (Some(tunnel_address), Some(mac)) = (tunnel_address, mac) {
                        s.vteps.insert(node, Vtep { tunnel_address, mac, node });
                    }
                };
                if let Some(a) = n.spec.ipv4_address() {
                    s.nodes.push(a);
                    s.node_addresses.insert(n.metadata.name.clone(), a);
                    let tunnel = n.spec.ipv4_vxlan_tunnel_addr.map(IpAddr::V4);
                    vtep(a.into(), tunnel, mac(&n.spec.vxlan_tunnel_mac_addr));
                    if n.spec.bgp.as_ref().is_some_and(|b| b.ipv4_ipip_tunnel_addr.is_some()) {
                        s.ipip_nodes.insert(a.into());
                    }
                }
                if let Some(IpNet::V6(a)) = address6 {
                    s.node_addresses6.insert(n.metadata.name.clone(), a.addr());
                    let tunnel = n.spec.ipv6_vxlan_tunnel_addr.map(IpAddr::V6);
                    vtep(a.addr().into(), tunnel, mac(&n.spec.vxlan_tunnel_mac_addr_v6));
                }
                if n.metadata.name == node {
                    s.node_address = address;
                    s.node_address6 = address6;
                }
            }
            Ok(Resource::IpPool(p)) => s.pools.push(p.spec),
            Ok(Resource::WorkloadEndpoint(w)) => {
                let ns = w.metadata.namespace.unwrap_or_default();
                policy.workloads.push((ns, w.metadata.name, w.metadata.labels, w.spec.clone()));
                s.endpoints.push(w.spec);
            }
            Ok(Resource::HostEndpoint(h)) => {
                policy.hosts.push(Endpoint::host(&h.metadata.name, &h.metadata.labels, &h.spec))
            }
            Ok(Resource::Profile(p)) => {
                if let Some(ns) = p.metadata.name.strip_prefix(NAMESPACE_PROFILE_PREFIX) {
                    policy.namespaces.insert(ns.to_string(), p.spec.labels_to_apply);
                }
            }
            Ok(Resource::NetworkPolicy(p)) => {
                let ns = p.metadata.namespace.unwrap_or_default();
                policy.policies.push(Policy::namespaced(&ns, &p.metadata.name, &p.spec));
            }
            Ok(Resource::GlobalNetworkPolicy(p)) => policy.policies.push(Policy::global(&p.metadata.name, &p.spec)),
            Ok(Resource::NetworkSet(n)) => {
                policy.network_sets.push((n.metadata.namespace, n.metadata.name, n.metadata.labels, n.spec.nets))
            }
            Ok(Resource::GlobalNetworkSet(n)) => {
                policy.network_sets.push((None, n.metadata.name, n.metadata.labels, n.spec.nets))
            }
            Ok(Resource::FelixConfiguration(f)) if f.metadata.name == "default" => felix_default = Some(f.spec),
            Ok(Resource::FelixConfiguration(f)) if f.metadata.name.strip_prefix("node.") == Some(node) => {
                felix_node = Some(f.spec)
            }
            Ok(_) => {}
            Err(e) => skip(e.to_string()),
        }
    }
    s.felix = FelixConfigurationSpec::merged(felix_default.as_ref(), felix_node.as_ref());
    for node in calc::clashing_vteps(&s.vteps) {
        if let Some(v) = s.vteps.remove(&node) {
            tracing::error!(
                %node,
                tunnel_address = %v.tunnel_address,
                mac = tortie_ipip::vxlan::format_mac(v.mac),
                "VXLAN: this node's tunnel address or MAC is another node's too: its VTEP is left out until that is fixed"
            );
        }
    }
    Ok((s, everything.revision))
}

/// How long a prefix that left the tunnel stays in the IPIP table: the
/// table changes before the reconciler moves the kernel route, and packets
/// the old route still sends into the tunnel must find their node.
const ENCAP_GRACE: Duration = Duration::from_secs(10);

struct State {
    config: AgentConfig,
    snapshot: Snapshot,
    /// The batches of next hops learned since the last recalculation, as
    /// BGP sent them (none: withdrawn; a prefix's later change overrides
    /// its earlier one); what was learned before is in the desired state's
    /// cell, held once. Kept as they came, not copied into a map: a table
    /// arriving while felix catches up is many batches.
    learned: Vec<Vec<(IpNet, LearnedHops)>>,
    /// The next recalculation covers everything (the datastore, the
    /// tunnel or the relearning state changed).
    full: bool,
    /// This node's own routes, as last calculated (they win over learned ones).
    local: calc::Local,
    /// Where the desired state goes (the reconciler reads it).
    cell: Arc<DesiredCell>,
    keep_learned: bool,
    /// Prefixes that left the tunnel: their node and when they left.
    encap_retired: BTreeMap<ipnet::Ipv4Net, (Vec<std::net::Ipv4Addr>, std::time::Instant)>,
    encap_current: BTreeMap<ipnet::Ipv4Net, Vec<std::net::Ipv4Addr>>,
    /// The policies in force: a policy that stops parsing keeps its last
    /// good version, so nothing already enforced is disturbed.
    enforced: BTreeMap<PolicyName, Policy>,
    /// Policy errors last reported (each is logged once).
    policy_errors: Vec<String>,
}

impl State {
    /// The route refresh interval: the command line's, the
    /// FelixConfiguration's, or the default.
    fn route_refresh(&self) -> Duration {
        self.config.route_refresh.or(self.snapshot.felix.route_refresh()).unwrap_or(reconcile::DEFAULT_RESYNC)
    }

    /// The nftables check interval, likewise.
    fn policy_check(&self) -> Duration {
        self.config.policy_check.or(self.snapshot.felix.policy_refresh()).unwrap_or(DEFAULT_POLICY_CHECK)
    }

    fn learn(&mut self, news: Learned) {
        match news {
            Learned::Routes(routes) => self.learned.push(routes),
            Learned::Converged if self.keep_learned => {
                let routes = self.cell.edit(|e| e.learned_len());
                tracing::info!(routes, "BGP converged; routes not relearned may now go");
                self.keep_learned = false;
                self.full = true;
            }
            Learned::Converged => {}
        }
    }

    fn ruleset(&mut self) -> Ruleset {
        let mut current = BTreeMap::new();
        let mut errors = Vec::new();
        for parsed in &self.snapshot.policy.policies {
            match parsed {
                Ok(p) => {
                    current.insert(p.name.clone(), p.clone());
                }
                Err(e) => {
                    if let Some(old) = self.enforced.get(&e.policy) {
                        current.insert(e.policy.clone(), old.clone());
                    }
                    errors.push(e.to_string());
                }
            }
        }
        let s = &self.snapshot;
        let nodes: Vec<IpAddr> = s
            .nodes
            .iter()
            .copied()
            .map(IpAddr::from)
            .chain(s.node_addresses6.values().copied().map(IpAddr::from))
            .collect();
        let host = HostRules::new(&s.pools, &s.felix, &nodes);
        if let Some(a) = host.nat.unused_address() {
            errors.push(format!(
                "FelixConfiguration natOutgoingAddress {a}: no pool of its address family has natOutgoing; \
                 the other family's pools masquerade to the outgoing interface's address"
            ));
        }
        for e in errors.iter().filter(|e| !self.policy_errors.contains(e)) {
            tracing::error!(error = %e, "cannot be enforced as written (a policy's previous version, if any, stays in force)");
        }
        self.policy_errors = errors;
        self.enforced = current;
        let policies: Vec<Policy> = self.enforced.values().cloned().collect();
        let records = &self.snapshot.policy;
        crate::policy::compile(&Inputs {
            node: &self.config.node,
            endpoints: &records.endpoints(),
            network_sets: &records.network_sets(),
            policies: &policies,
            host,
        })
    }

    /// Brings the desired state up to date: everything after a full-scale
    /// change (returning the prefixes to originate), or else only the
    /// learned routes that changed — work in proportion to the change.
    fn recalc(&mut self) -> Option<BTreeSet<IpNet>> {
        let full = std::mem::take(&mut self.full);
        // Withdrawn: no next hops.
        let learned = std::mem::take(&mut self.learned)
            .into_iter()
            .flatten()
            .map(|(p, hops)| (p, (!hops.is_empty()).then_some(hops)));
        if full {
            let tunnel = self.config.tunnel.borrow().clone();
            let snapshot = &self.snapshot;
            let remote = Remote {
                node_address: snapshot.node_address,
                node_address6: snapshot.node_address6,
                pools: snapshot.pools.clone(),
                tunnel: tunnel.clone(),
                vxlan: self.config.vxlan.borrow().clone(),
                vxlan6: self.config.vxlan6.borrow().clone(),
                vteps: snapshot.vteps.clone(),
                ipip_nodes: snapshot.ipip_nodes.clone(),
            };
            if let Some(tx) = &self.config.vteps {
                publish(tx, Arc::new(calc::remote_vteps(snapshot)));
            }
            self.local = calc::local(snapshot);
            let desired = Desired {
                local: self.local.routes.clone(),
                remote,
                interfaces: self.local.interfaces.clone(),
                keep_learned: self.keep_learned,
            };
            let from_datastore = self.config.routes_from_datastore.then(|| calc::from_datastore(snapshot));
            let encap: Vec<_> = self.cell.edit(|e| {
                match from_datastore {
                    Some(all) => e.replace_learned(all.into_iter().collect()),
                    None => learned.for_each(|(prefix, hops)| e.learned(prefix, hops)),
                }
                // Local knowledge wins over what BGP says of the same prefix.
                e.replace(desired);
                let Some(dev) = &tunnel else { return Vec::new() };
                e.view().routes().filter_map(|(prefix, target)| calc::tunnel_nodes(&prefix, &target, dev)).collect()
            });
            // Prefixes no longer through the tunnel leave its table; the rest are set anew.
            let tunnelled: BTreeSet<_> = encap.iter().map(|(n, _)| *n).collect();
            let left: Vec<_> =
                self.encap_current.keys().filter(|n| !tunnelled.contains(n)).map(|n| (*n, None)).collect();
            let updates = encap.into_iter().map(|(n, nodes)| (n, Some(nodes))).chain(left);
            self.set_encap(updates.collect());
            return Some(self.local.originate.clone());
        }
        let mut encap = Vec::new();
        let local = &self.local.routes;
        self.cell.edit(|e| {
            // The tunnel the routes are made with (the last full recalculation's).
            let tunnel = e.view().remote().tunnel.clone();
            for (prefix, hops) in learned {
                e.learned(prefix, hops);
                if let (Some(dev), IpNet::V4(net)) = (&tunnel, prefix)
                    && !local.contains_key(&prefix)
                {
                    let target = e.view().target(&prefix);
                    encap.push((net, target.and_then(|t| calc::tunnel_nodes(&prefix, &t, dev)).map(|(_, n)| n)));
                }
            }
        });
        if !encap.is_empty() {
            self.set_encap(encap);
        }
        None
    }

    /// Updates the IPIP data plane's table (when it runs): each
    /// prefix's nodes behind the tunnel, or `None` when it left the tunnel
    /// (it stays for `ENCAP_GRACE`, for packets still in flight).
    fn set_encap(&mut self, updates: Vec<(ipnet::Ipv4Net, Option<Vec<std::net::Ipv4Addr>>)>) {
        let Some(tx) = &self.config.encap else { return };
        let now = std::time::Instant::now();
        for (net, nodes) in updates {
            match nodes {
                Some(nodes) => {
                    self.encap_retired.remove(&net);
                    self.encap_current.insert(net, nodes);
                }
                None => {
                    if let Some(nodes) = self.encap_current.remove(&net) {
                        self.encap_retired.insert(net, (nodes, now));
                    }
                }
            }
        }
        self.encap_retired.retain(|_, (_, at)| now.duration_since(*at) < ENCAP_GRACE);
        let entries = self.encap_current.iter().map(|(n, a)| (*n, a.clone()));
        let retired = self.encap_retired.iter().map(|(n, (a, _))| (*n, a.clone()));
        let table =
            EncapTable::new(entries.chain(retired), self.snapshot.nodes.iter().copied()).relearning(self.keep_learned);
        publish(tx, Arc::new(table));
    }
}

/// Loads the first snapshot, starts the reconciler and the agent task.
pub async fn start(kv: Syncer, config: AgentConfig) -> Result<Agent, FelixError> {
    // What the calculation reads: resources and IPAM blocks (not, e.g., the
    // nodes' status). Asked before the first load: no change falls between.
    let mut changes = kv.changes(&[KEY_PREFIX, IPAM_PREFIX]);
    let mut decoded = Decoded::default();
    let (snapshot, _) = load(&kv, &config.node, &mut decoded).await?;
    let from_datastore = config.routes_from_datastore;
    let mut state = State {
        config,
        snapshot,
        learned: Vec::new(),
        full: true,
        local: calc::Local::default(),
        cell: DesiredCell::new(Desired::default()),
        // Without BGP the datastore is the whole story from the first load.
        keep_learned: !from_datastore,
        encap_retired: BTreeMap::new(),
        encap_current: BTreeMap::new(),
        enforced: BTreeMap::new(),
        policy_errors: Vec::new(),
    };
    let (ruleset_tx, ruleset_rx) = watch::channel(Arc::new(state.ruleset()));
    let (felix_tx, felix_rx) = watch::channel(Arc::new(state.snapshot.felix.clone()));
    let (check_tx, check_rx) = watch::channel(state.policy_check());
    let (resync_tx, resync_rx) = watch::channel(state.route_refresh());
    let (_policy_task, policy_stats, mut first_applied) = policy_apply::spawn(ruleset_rx.clone(), check_rx);
    // The table in place before anything else starts: connections made
    // before it (BGP's) would be unknown to conntrack, and the first packet
    // of theirs it sees (a FIN, when a host endpoint denies all) is `new`,
    // not `established`, and may be dropped.
    if tokio::time::timeout(FIRST_APPLY, first_applied.wait_for(|done| *done)).await.is_err() {
        tracing::warn!(waited = ?FIRST_APPLY, "the nftables table is not applied yet; starting without it");
    }
    let originate = state.recalc().unwrap_or_default();
    let (originate_tx, originate_rx) = watch::channel(originate);
    let reconciler =
        reconcile::spawn(state.cell.clone(), ReconcilerConfig { resync: resync_rx, ..ReconcilerConfig::default() })?;
    let (learned_tx, mut learned_rx) = mpsc::channel(1024);
    let task = tokio::spawn(async move {
        let relearned = tokio::time::sleep(state.config.relearn_limit);
        tokio::pin!(relearned);
        let mut policy_dirty = false;
        let (mut tunnel, mut tunnel_open) = (state.config.tunnel.clone(), true);
        let (mut vxlan, mut vxlan_open) = (state.config.vxlan.clone(), true);
        let (mut vxlan6, mut vxlan6_open) = (state.config.vxlan6.clone(), true);
        loop {
            tokio::select! {
                running = changes.changed() => {
                    if !running {
                        return Ok(());
                    }
                    // From the syncer's memory: no datastore round trip.
                    let (snapshot, rev) = load(&kv, &state.config.node, &mut decoded).await?;
                    state.snapshot = snapshot;
                    state.full = true;
                    policy_dirty = true;
                    publish(&felix_tx, Arc::new(state.snapshot.felix.clone()));
                    publish(&check_tx, state.policy_check());
                    publish(&resync_tx, state.route_refresh());
                    tracing::debug!(revision = rev, "datastore changed; recalculated");
                }
                news = learned_rx.recv() => match news {
                    Some(news) => state.learn(news),
                    None => return Ok(()),
                },
                open = tunnel.changed(), if tunnel_open => {
                    // The tunnel came up: routes that want it move onto it.
                    tunnel_open = open.is_ok();
                    state.full = true;
                }
                open = vxlan.changed(), if vxlan_open => {
                    vxlan_open = open.is_ok();
                    state.full = true;
                }
                open = vxlan6.changed(), if vxlan6_open => {
                    vxlan6_open = open.is_ok();
                    state.full = true;
                }
                () = &mut relearned, if state.keep_learned => {
                    tracing::warn!(limit = ?state.config.relearn_limit, "BGP did not converge in time; removing routes not relearned");
                    state.keep_learned = false;
                    state.full = true;
                }
            }
            // Batch what is already queued before recalculating.
            while let Ok(news) = learned_rx.try_recv() {
                state.learn(news);
            }
            if std::mem::take(&mut policy_dirty) {
                let started = std::time::Instant::now();
                let ruleset = state.ruleset();
                tracing::debug!(took = ?started.elapsed(), "policy compiled");
                publish(&ruleset_tx, Arc::new(ruleset));
            }
            if let Some(originate) = state.recalc() {
                publish(&originate_tx, originate);
            }
        }
    });
    Ok(Agent {
        originate: originate_rx,
        learned: learned_tx,
        stats: reconciler.stats,
        ruleset: ruleset_rx,
        policy_stats,
        felix_config: felix_rx,
        task,
    })
}

/// How long `start` waits for the first nftables table.
const FIRST_APPLY: Duration = Duration::from_secs(10);

/// Sends `value` when it differs from what the receivers have.
fn publish<T: PartialEq>(tx: &watch::Sender<T>, value: T) {
    tx.send_if_modified(|have| {
        let changed = *have != value;
        if changed {
            *have = value;
        }
        changed
    });
}
