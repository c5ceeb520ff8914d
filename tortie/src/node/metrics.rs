//! Prometheus metrics (text format 0.0.4 / OpenMetrics), computed at each
//! scrape from the daemon's live state: BGP sessions and prefixes per
//! peer, UPDATEs in/out, route reconcile passes, changes, errors and the
//! last pass's duration, and the IPIP data plane's counters. Served on the
//! local API socket (`/metrics`) and, with `--metrics-listen`, over TCP.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tortie_felix::reconcile::ReconcileStats;

use super::local_api::ApiState;

/// CNI ADD/DEL outcomes and latencies, as the plugin reports them.
#[derive(Debug, Clone)]
pub struct CniMetrics {
    requests: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
}

fn cni_buckets() -> Histogram {
    Histogram::new([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0])
}

impl Default for CniMetrics {
    fn default() -> Self {
        CniMetrics { requests: Family::default(), duration: Family::new_with_constructor(cni_buckets) }
    }
}

impl CniMetrics {
    /// Records one command.
    pub fn record(&self, e: &tortie_cni::report::CniEvent) {
        let result = if e.ok { "ok" } else { "error" };
        let labels = vec![("command".to_string(), e.command.clone()), ("result".to_string(), result.to_string())];
        self.requests.get_or_create(&labels).inc();
        self.duration.get_or_create(&vec![("command".to_string(), e.command.clone())]).observe(e.seconds);
    }
}

/// What the metrics read.
#[derive(Clone)]
pub struct MetricsState {
    /// CNI commands reported by the plugin.
    pub cni: Arc<CniMetrics>,
    /// Sessions and prefixes.
    pub api: ApiState,
    /// The route reconciler (absent on a dedicated reflector).
    pub reconcile: Option<Arc<ReconcileStats>>,
    /// The policy data plane (absent on a dedicated reflector).
    pub policy: Option<Arc<tortie_felix::policy::apply::PolicyStats>>,
    /// The bpffs the eBPF IPIP data plane pins its counters under, read
    /// while it runs (absent on a dedicated reflector).
    pub ipip: Option<std::path::PathBuf>,
}

type Labels = Vec<(String, String)>;

fn counter(registry: &mut Registry, name: &str, help: &str, value: &AtomicU64) {
    let c: Counter = Counter::default();
    c.inc_by(value.load(Ordering::Relaxed));
    registry.register(name, help, c);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

/// The metrics text of this moment.
pub async fn render(state: &MetricsState) -> String {
    let mut r = Registry::with_prefix("tortie");
    let (_, peers) = state.api.details(tortie_bgp::speaker::counts::PERIODIC).await;
    let established = Family::<Labels, Gauge>::default();
    let received = Family::<Labels, Gauge>::default();
    let advertised = Family::<Labels, Gauge>::default();
    let updates_in = Family::<Labels, Counter>::default();
    let updates_out = Family::<Labels, Counter>::default();
    let treated_as_withdraw = Family::<Labels, Counter>::default();
    let discarded = Family::<Labels, Counter>::default();
    let next_hop_ignored = Family::<Labels, Counter>::default();
    for p in &peers {
        let labels = vec![
            ("peer".to_string(), p.summary.name.clone()),
            ("address".to_string(), p.summary.address.to_string()),
            ("type".to_string(), p.summary.peer_type.clone()),
        ];
        established.get_or_create(&labels).set(i64::from(p.summary.state == "up"));
        received.get_or_create(&labels).set(p.summary.prefixes_received as i64);
        advertised.get_or_create(&labels).set(p.summary.prefixes_advertised as i64);
        updates_in.get_or_create(&labels).inc_by(p.messages[2]);
        updates_out.get_or_create(&labels).inc_by(p.messages[3]);
        treated_as_withdraw.get_or_create(&labels).inc_by(p.malformed[0]);
        discarded.get_or_create(&labels).inc_by(p.malformed[1]);
        next_hop_ignored.get_or_create(&labels).inc_by(p.next_hop_ignored);
    }
    r.register("bgp_session_established", "1 when the BGP session is Established", established);
    r.register("bgp_prefixes_received", "Paths received from the peer (after import policy)", received);
    r.register("bgp_prefixes_advertised", "Prefixes advertised to the peer", advertised);
    r.register("bgp_updates_received", "UPDATE messages received", updates_in);
    r.register(
        "bgp_malformed_treated_as_withdraw",
        "Malformed attributes whose routes were treated as withdrawn (RFC 7606)",
        treated_as_withdraw,
    );
    r.register("bgp_malformed_attributes_discarded", "Malformed attributes discarded (RFC 7606)", discarded);
    r.register("bgp_next_hop_ignored", "Routes ignored for an unusable NEXT_HOP (RFC 4271 §6.3)", next_hop_ignored);
    r.register("bgp_updates_sent", "UPDATE messages sent", updates_out);
    let reachable = Gauge::<i64>::default();
    reachable.set(i64::from(state.api.datastore.borrow().reachable));
    r.register("datastore_reachable", "1 while the datastore answers the node's probe", reachable);
    if let Some(s) = &state.policy {
        counter(&mut r, "policy_full_applies", "Whole-table nftables transactions", &s.full);
        counter(&mut r, "policy_incremental_applies", "Incremental nftables transactions", &s.incremental);
        counter(
            &mut r,
            "policy_element_only_applies",
            "Transactions that changed only set/map elements",
            &s.elements_only,
        );
        counter(
            &mut r,
            "policy_netlink_element_writes",
            "Set-element updates written straight to nf_tables (without nft)",
            &s.netlink_writes,
        );
        counter(&mut r, "policy_repairs", "Rebuilds after the table was changed outside tortie", &s.repairs);
        counter(&mut r, "policy_apply_failures", "nftables transactions that failed", &s.failures);
        let last = s.last_apply_us.load(Ordering::Relaxed) as i64;
        gauge(&mut r, "policy_last_apply_microseconds", "Duration of the last nftables transaction", last);
    }
    if let Some(s) = &state.reconcile {
        counter(&mut r, "route_reconcile_passes", "Route reconcile passes", &s.passes);
        counter(
            &mut r,
            "route_reconcile_full_passes",
            "Route reconcile passes that dumped the kernel's table",
            &s.full_passes,
        );
        counter(&mut r, "route_event_overruns", "Kernel route notifications lost to a full socket", &s.event_overruns);
        counter(&mut r, "route_changes", "Kernel route changes applied", &s.changes);
        counter(&mut r, "route_reconcile_errors", "Route changes refused and failed passes", &s.errors);
        let last = s.last_pass_us.load(Ordering::Relaxed) as i64;
        gauge(&mut r, "route_reconcile_last_pass_microseconds", "Duration of the last reconcile pass", last);
    }
    let bfd = Family::<Labels, Gauge>::default();
    let report = state.api.bfd.borrow().clone();
    for s in &report.sessions {
        let labels = vec![("peer".to_string(), s.peer.to_string()), ("state".to_string(), s.state.clone())];
        bfd.get_or_create(&labels).set(1);
    }
    r.register("bfd_session", "BFD sessions by peer and state (RFC 5880)", bfd);
    let packets = Family::<Labels, Counter>::default();
    let c = &report.counters;
    let kinds = [("received", c.received), ("sent", c.sent), ("bad_ttl", c.bad_ttl), ("no_session", c.no_session)];
    let malformed = c.malformed.iter().map(|(why, v)| (why.as_str(), *v));
    for (kind, v) in kinds.into_iter().chain(malformed) {
        packets.get_or_create(&vec![("kind".to_string(), kind.to_string())]).inc_by(v);
    }
    r.register("bfd_packets", "BFD packets received, sent and discarded (by RFC 5880 §6.8.6 reason)", packets);
    r.register("cni_requests", "CNI commands by outcome", state.cni.requests.clone());
    r.register("cni_duration_seconds", "CNI command latency", state.cni.duration.clone());
    if let Some(c) = state.ipip.as_deref().and_then(tortie_ipip::ebpf::counters) {
        let value = |v: u64| AtomicU64::new(v);
        counter(&mut r, "ipip_encap_packets", "Packets encapsulated and sent", &value(c.encap_packets));
        counter(&mut r, "ipip_encap_bytes", "Inner bytes encapsulated and sent", &value(c.encap_bytes));
        counter(&mut r, "ipip_decap_packets", "Packets decapsulated and delivered", &value(c.decap_packets));
        counter(&mut r, "ipip_decap_bytes", "Inner bytes decapsulated and delivered", &value(c.decap_bytes));
        counter(
            &mut r,
            "ipip_decap_merged",
            "Delivered packets the underlay's GRO had merged from a TCP flow's segments",
            &value(c.decap_merged),
        );
        let drops = Family::<Labels, Counter>::default();
        for (reason, v) in
            [("no_route", c.drop_no_route), ("unknown_source", c.drop_unknown_source), ("malformed", c.drop_malformed)]
        {
            drops.get_or_create(&vec![("reason".to_string(), reason.to_string())]).inc_by(v);
        }
        r.register("ipip_dropped_packets", "Packets the IPIP data plane dropped, by reason", drops);
    }
    let mut out = String::new();
    if let Err(e) = encode(&mut out, &r) {
        tracing::warn!(error = %e, "encoding metrics");
    }
    out
}

/// Serves `/metrics` over TCP on `listen`.
pub async fn serve_tcp(listen: std::net::SocketAddr, state: MetricsState) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding metrics listener {listen}"))?;
    tracing::info!(%listen, "metrics listening");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(
            |axum::extract::State(s): axum::extract::State<MetricsState>| async move { render(&s).await },
        ),
    );
    axum::serve(listener, app.with_state(state)).await.context("serving metrics")
}
