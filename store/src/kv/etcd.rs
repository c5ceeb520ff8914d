//! The etcd v3 engine (etcd-client over gRPC), for clusters.
//!
//! URL: `etcd://host:port[,host:port…][?ca=FILE&cert=FILE&key=FILE&user=NAME]`;
//! with `ca`/`cert` the endpoints are dialled over TLS (client certificate
//! when `cert` and `key` are given); with `user`, the password comes from
//! `TORTIE_ETCD_PASSWORD` so it never shows in a process list.

use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare as EtcdCompare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn as EtcdTxn, TxnOp, WatchOptions,
};

use super::{Compare, Event, EventKind, KeyValue, Kv, LeaseId, Op, Range, Revision, Txn, TxnResponse, Watch};
use crate::StoreError;

/// Attempts to reach etcd before giving up (with 0.5 s, 1 s back-off).
const CONNECT_ATTEMPTS: u32 = 3;
/// Per-attempt connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Per-request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before sending again while etcd elects a leader.
const ELECTION_WAIT: Duration = Duration::from_millis(250);

/// The etcd engine. Clones share one gRPC channel.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    url: String,
    /// How often a request that never reached a member is sent again.
    resends: usize,
}

/// Where and how to reach etcd, from an `etcd://` URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `host:port` endpoints.
    pub endpoints: Vec<String>,
    /// CA bundle (PEM) to verify etcd's certificate.
    pub ca: Option<String>,
    /// Client certificate (PEM).
    pub cert: Option<String>,
    /// Client key (PEM).
    pub key: Option<String>,
    /// User name for etcd authentication.
    pub user: Option<String>,
    /// That user's password (from `TORTIE_ETCD_PASSWORD` when parsed from a URL).
    pub password: Option<String>,
}

impl EtcdConfig {
    /// Parses `etcd://host:port[,…][?ca=…&cert=…&key=…&user=…]`.
    pub fn parse(url: &str) -> Result<EtcdConfig, StoreError> {
        let bad = |why: &str| StoreError::BadUrl { url: url.into(), why: why.into() };
        let rest = url.strip_prefix("etcd://").ok_or_else(|| bad("must start with etcd://"))?;
        let (hosts, query) = rest.split_once('?').unwrap_or((rest, ""));
        let endpoints: Vec<String> = hosts.split(',').map(str::to_string).collect();
        for e in &endpoints {
            let port = e.rsplit_once(':').and_then(|(h, p)| (!h.is_empty()).then_some(p));
            if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
                return Err(bad(&format!("endpoint `{e}` is not host:port")));
            }
        }
        let mut config = EtcdConfig { endpoints, ..EtcdConfig::default() };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| bad(&format!("query part `{pair}` is not key=value")))?;
            let slot = match k {
                "ca" => &mut config.ca,
                "cert" => &mut config.cert,
                "key" => &mut config.key,
                "user" => &mut config.user,
                other => return Err(bad(&format!("unknown option `{other}` (known: ca, cert, key, user)"))),
            };
            *slot = Some(v.to_string());
        }
        if config.cert.is_some() != config.key.is_some() {
            return Err(bad("cert and key go together"));
        }
        if let Some(user) = &config.user {
            let password = std::env::var("TORTIE_ETCD_PASSWORD")
                .map_err(|_| bad(&format!("user `{user}` given but TORTIE_ETCD_PASSWORD is not set")))?;
            config.password = Some(password);
        }
        Ok(config)
    }

    fn options(&self, url: &str) -> Result<ConnectOptions, StoreError> {
        let mut options = ConnectOptions::new().with_connect_timeout(CONNECT_TIMEOUT).with_timeout(REQUEST_TIMEOUT);
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.with_user(user.clone(), password.clone());
        }
        if self.ca.is_some() || self.cert.is_some() {
            let read = |path: &str| {
                std::fs::read(path)
                    .map_err(|e| StoreError::BadUrl { url: url.into(), why: format!("cannot read {path}: {e}") })
            };
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.ca {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            options = options.with_tls(tls);
        }
        Ok(options)
    }
}

impl EtcdStore {
    /// Connects to the etcd of an `etcd://` URL, retrying a bounded number of times.
    pub async fn connect(url: &str) -> Result<EtcdStore, StoreError> {
        EtcdStore::connect_config(url, &EtcdConfig::parse(url)?).await
    }

    /// Connects with `config`; `url` names the store in errors.
    pub async fn connect_config(url: &str, config: &EtcdConfig) -> Result<EtcdStore, StoreError> {
        let scheme = if config.ca.is_some() || config.cert.is_some() { "https" } else { "http" };
        let endpoints: Vec<String> = config.endpoints.iter().map(|e| format!("{scheme}://{e}")).collect();
        let options = config.options(url)?;
        let mut last_error = String::new();
        for attempt in 0..CONNECT_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 << (attempt - 1))).await;
            }
            match try_connect(&endpoints, options.clone()).await {
                Ok(client) => {
                    let resends = 2 * config.endpoints.len();
                    return Ok(EtcdStore { client, url: url.to_string(), resends });
                }
                // etcd answered, and said no (bad credentials, permission): retrying will not help.
                Err(etcd_client::Error::GRpcStatus(status)) if answered(&status) => {
                    return Err(StoreError::Etcd { url: url.to_string(), message: status.message().to_string() });
                }
                Err(e) => last_error = e.to_string(),
            }
            tracing::warn!(url, attempt = attempt + 1, error = %last_error, "etcd not reachable yet");
        }
        Err(StoreError::Unreachable { url: url.to_string(), attempts: CONNECT_ATTEMPTS, last_error })
    }

    /// Runs `call`; one whose request never reached a member (the member
    /// the channel picked is down, and the channel still picks it now and
    /// then) is sent again, to the same pick of members, up to `resends`
    /// times. Nothing reached etcd, so a compare-and-swap is as safe to
    /// send again as a read.
    async fn resent<T, F, Fut>(&self, mut call: F) -> Result<T, etcd_client::Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut sent = 0;
        loop {
            match call(self.client.clone()).await {
                Err(e) if sent < self.resends && never_arrived(&e) => sent += 1,
                // A new leader is being elected: its term starts within an election timeout.
                Err(e) if sent < self.resends && electing(&e) => {
                    sent += 1;
                    tokio::time::sleep(ELECTION_WAIT).await;
                }
                done => return done,
            }
        }
    }

    fn err(&self, e: etcd_client::Error) -> StoreError {
        let (url, message) = (self.url.clone(), e.to_string());
        if unanswered(&e) { StoreError::Unavailable { url, message } } else { StoreError::Etcd { url, message } }
    }

    /// etcd reports an unknown lease as a gRPC error with this text.
    fn lease_err(&self, e: etcd_client::Error, lease: LeaseId) -> StoreError {
        if e.to_string().contains("lease not found") { StoreError::LeaseNotFound(lease) } else { self.err(e) }
    }
}

/// Whether etcd itself refused us (credentials, permissions), as opposed to
/// a connection that failed (which surfaces as Unavailable, Cancelled…).
fn answered(status: &tonic::Status) -> bool {
    use tonic::Code::{FailedPrecondition, InvalidArgument, PermissionDenied, Unauthenticated};
    matches!(status.code(), Unauthenticated | PermissionDenied | InvalidArgument | FailedPrecondition)
}

/// etcd is between leaders ("leader changed", "no leader"): the request
/// was not applied.
fn electing(e: &etcd_client::Error) -> bool {
    // Only the answers that say the request was not proposed: "request timed
    // out, possibly due to previous leader failure" may have been committed,
    // and sending a transaction again would make our own write its conflict.
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::Unavailable
        && ["etcdserver: no leader", "etcdserver: leader changed"].contains(&s.message()))
}

/// No answer at all: a transport failure, a timeout, or a member without
/// quorum that cannot serve the request.
fn unanswered(e: &etcd_client::Error) -> bool {
    use tonic::Code::{Cancelled, DeadlineExceeded, Unavailable};
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(s) => matches!(s.code(), Unavailable | Cancelled | DeadlineExceeded),
        _ => false,
    }
}

/// A request that failed before any member had it: no connection could be
/// made to the member chosen.
fn never_arrived(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::Unavailable && s.message().contains("connect error")
        }
        _ => false,
    }
}

/// One connection attempt; the channel connects lazily, so one cheap call proves etcd answers.
async fn try_connect(endpoints: &[String], options: ConnectOptions) -> Result<Client, etcd_client::Error> {
    let mut client = Client::connect(endpoints, Some(options)).await?;
    client.status().await?;
    Ok(client)
}

trait ResultExt<T> {
    fn or_etcd(self, store: &EtcdStore) -> Result<T, StoreError>;
}

impl<T> ResultExt<T> for Result<T, etcd_client::Error> {
    fn or_etcd(self, store: &EtcdStore) -> Result<T, StoreError> {
        self.map_err(|e| store.err(e))
    }
}

fn convert(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: (kv.lease() != 0).then_some(kv.lease()),
    }
}

fn op(o: &Op) -> TxnOp {
    match o {
        Op::Put { key, value, lease } => {
            TxnOp::put(key.as_bytes(), value.clone(), lease.map(|l| PutOptions::new().with_lease(l)))
        }
        Op::Delete { key } => TxnOp::delete(key.as_bytes(), None),
    }
}

impl Kv for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let resp = self.resent(|mut c| async move { c.get(key, None).await }).await.or_etcd(self)?;
        Ok(resp.kvs().first().map(convert))
    }

    async fn range(&self, prefix: &str) -> Result<Range, StoreError> {
        let options = GetOptions::new().with_prefix();
        let resp = self.resent(|mut c| {
            let options = options.clone();
            async move { c.get(prefix, Some(options)).await }
        });
        let resp = resp.await.or_etcd(self)?;
        let revision = resp.header().map_or(0, |h| h.revision());
        Ok(Range { kvs: resp.kvs().iter().map(convert).collect(), revision })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        let compares: Vec<EtcdCompare> = txn
            .compares
            .iter()
            .map(|Compare::ModRevision(key, rev)| EtcdCompare::mod_revision(key.as_bytes(), CompareOp::Equal, *rev))
            .collect();
        let request = EtcdTxn::new()
            .when(compares)
            .and_then(txn.success.iter().map(op).collect::<Vec<_>>())
            .or_else(txn.failure.iter().map(op).collect::<Vec<_>>());
        // etcd: a put with an unknown lease fails the whole request.
        let lease = txn.success.iter().chain(&txn.failure).find_map(|o| match o {
            Op::Put { lease, .. } => *lease,
            Op::Delete { .. } => None,
        });
        let resp = self.resent(|mut c| {
            let request = request.clone();
            async move { c.txn(request).await }
        });
        let resp = resp.await.map_err(|e| match lease {
            Some(lease) => self.lease_err(e, lease),
            None => self.err(e),
        })?;
        Ok(TxnResponse { succeeded: resp.succeeded(), revision: resp.header().map_or(0, |h| h.revision()) })
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        let mut options = WatchOptions::new().with_prefix();
        if from > 0 {
            options = options.with_start_revision(from);
        }
        let watched = self.resent(|mut c| {
            let options = options.clone();
            async move { c.watch(prefix, Some(options)).await }
        });
        let mut stream = watched.await.or_etcd(self)?;
        let (tx, watch) = Watch::channel();
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                let resp = match stream.message().await {
                    Ok(Some(resp)) => resp,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(store.err(e))).await;
                        return;
                    }
                };
                if resp.compact_revision() > 0 {
                    let compacted = StoreError::Compacted { requested: from, compacted: resp.compact_revision() };
                    let _ = tx.send(Err(compacted)).await;
                    return;
                }
                // One response may span revisions: split into one batch per revision.
                let mut batches: Vec<Vec<Event>> = Vec::new();
                for e in resp.events() {
                    let Some(kv) = e.kv() else { continue };
                    let kind = match e.event_type() {
                        EventType::Put => EventKind::Put,
                        EventType::Delete => EventKind::Delete,
                    };
                    let event = Event { kind, kv: convert(kv) };
                    match batches.last_mut() {
                        Some(b) if b[0].kv.mod_revision == event.kv.mod_revision => b.push(event),
                        _ => batches.push(vec![event]),
                    }
                }
                for batch in batches {
                    if tx.send(Ok(batch)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(watch)
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        // etcd counts TTLs in whole seconds.
        let secs = ttl.as_secs().max(1) as i64;
        Ok(self.resent(|mut c| async move { c.lease_grant(secs, None).await }).await.or_etcd(self)?.id())
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        let lease_err = |e| self.lease_err(e, lease);
        let kept = self.resent(|mut c| async move { c.lease_keep_alive(lease).await });
        let (mut keeper, mut stream) = kept.await.map_err(lease_err)?;
        keeper.keep_alive().await.map_err(lease_err)?;
        match stream.message().await.map_err(lease_err)? {
            Some(resp) if resp.ttl() > 0 => Ok(()),
            _ => Err(StoreError::LeaseNotFound(lease)),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.client.clone().lease_revoke(lease).await.map(drop).map_err(|e| self.lease_err(e, lease))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.client.clone().compact(revision, None).await.map(drop).or_etcd(self)
    }
}
