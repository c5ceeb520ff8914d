//! Resource operations on a datastore: apply (validated whole, written in
//! one transaction), update (read, changed and written back unless written
//! since), get, list and delete.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::net::IpAddr;

use crate::StoreError;
use crate::kv::{Compare, Kv, Op, Txn};
use crate::resources::{DocumentError, Kind, Resource};

/// Retries of an apply that raced another writer.
const APPLY_ATTEMPTS: usize = 5;

/// How long an update keeps trying while other writers of the resource get in first.
const UPDATE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// What an apply did to one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Kind.
    pub kind: Kind,
    /// Namespace, for namespaced kinds.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// Created (true) or updated (false).
    pub created: bool,
}

/// Why a resource operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The datastore failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A document is invalid.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// The batch conflicts with itself or with what is stored.
    #[error("{0}")]
    Conflict(String),
    /// No such resource.
    #[error("{kind} `{name}` not found")]
    NotFound {
        /// Kind name.
        kind: &'static str,
        /// `namespace/name` or `name`.
        name: String,
    },
}

fn display_name(r: &Resource) -> String {
    let m = r.metadata();
    shown(m.namespace.as_deref(), &m.name)
}

/// Creates or updates every resource, or none: the batch is checked whole
/// (duplicates, overlapping IP pools, also against stored pools) and
/// written in one compare-and-swap transaction, retried if another writer
/// got in between.
pub async fn apply<K: Kv>(kv: &K, resources: &[Resource]) -> Result<Vec<Applied>, ApiError> {
    // Whoever built them, nothing invalid reaches the store.
    let resources = &resources.iter().enumerate().map(|(i, r)| r.checked(i + 1)).collect::<Result<Vec<_>, _>>()?;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in resources.iter().enumerate() {
        if let Some(first) = seen.insert(r.key(), i) {
            return Err(ApiError::Conflict(format!(
                "documents {} and {} are both {} `{}`",
                first + 1,
                i + 1,
                r.kind().info().name,
                display_name(r)
            )));
        }
    }
    for _ in 0..APPLY_ATTEMPTS {
        let mut compares = Vec::new();
        let mut applied = Vec::new();
        for r in resources {
            let existing = kv.get(&r.key()).await?;
            compares.push(Compare::ModRevision(r.key(), existing.as_ref().map_or(0, |kv| kv.mod_revision)));
            let m = r.metadata();
            applied.push(Applied {
                kind: r.kind(),
                namespace: m.namespace.clone(),
                name: m.name.clone(),
                created: existing.is_none(),
            });
        }
        compares.extend(checked_against_stored(kv, resources).await?);
        let success = resources.iter().map(|r| Op::Put { key: r.key(), value: r.to_json(), lease: None }).collect();
        if kv.txn(Txn { compares, success, failure: Vec::new() }).await?.succeeded {
            return Ok(applied);
        }
    }
    Err(ApiError::Conflict(format!("the datastore kept changing during {APPLY_ATTEMPTS} attempts; try again")))
}

/// Creates `resource`, validated as `apply` validates, only if nothing is
/// stored by its name: a writer that finds it missing and makes it anew
/// does not put its default over one written meanwhile (it gets
/// `Conflict`, and can then change that one where it stands: `update`).
pub async fn create<K: Kv>(kv: &K, resource: &Resource) -> Result<(), ApiError> {
    let resource = resource.checked(1)?;
    let key = resource.key();
    let mut compares = vec![Compare::ModRevision(key.clone(), 0)];
    compares.extend(checked_against_stored(kv, std::slice::from_ref(&resource)).await?);
    let success = vec![Op::Put { key: key.clone(), value: resource.to_json(), lease: None }];
    if kv.txn(Txn { compares, success, failure: Vec::new() }).await?.succeeded {
        return Ok(());
    }
    let m = resource.metadata();
    Err(ApiError::Conflict(format!(
        "{} `{}` exists already, or the datastore changed while it was being created",
        resource.kind().info().name,
        shown(m.namespace.as_deref(), &m.name)
    )))
}

/// What a batch is checked against besides itself (IP pools against the
/// stored ones, BGP peers' families): compares pinning what the checks read.
async fn checked_against_stored<K: Kv>(kv: &K, resources: &[Resource]) -> Result<Vec<Compare>, ApiError> {
    let mut compares = Vec::new();
    if resources.iter().any(|r| r.kind() == Kind::IpPool) {
        compares.extend(check_pools(kv, resources).await?);
    }
    if resources.iter().any(|r| r.kind() == Kind::BgpPeer) {
        compares.extend(check_peer_families(kv, resources).await?);
    }
    Ok(compares)
}

/// Changes one stored resource where it stands: reads it, has `change`
/// edit it (`change` says whether it changed anything: nothing is written
/// if not) and writes it back, validated as `apply` validates, only if
/// nothing wrote it since the read; else reads and changes it again. Two
/// writers changing different fields of one resource (a node's IPIP and
/// VXLAN tunnels publishing their addresses on its Node) both keep their
/// change, where a read followed by `apply` lets the later writer put the
/// earlier one's field back. Returns the resource as it now stands.
pub async fn update<K: Kv>(
    kv: &K,
    kind: Kind,
    namespace: Option<&str>,
    name: &str,
    mut change: impl FnMut(&mut Resource) -> bool,
) -> Result<Resource, ApiError> {
    let namespace = default_namespace(kind, namespace);
    let key = kind.key(namespace, name);
    let deadline = std::time::Instant::now() + UPDATE_PATIENCE;
    for lost in 0u32.. {
        if lost > 0 {
            // Another writer got in. Writers that lost together would retry
            // together (and one reading a cache behind the store, always
            // late): each waits a random while, longer as it keeps losing.
            if std::time::Instant::now() >= deadline {
                break;
            }
            let most = 2u64 << lost.min(7);
            let jitter = std::collections::hash_map::RandomState::new().hash_one(lost) % (most / 2);
            tokio::time::sleep(std::time::Duration::from_millis(most / 2 + jitter)).await;
        }
        let Some(item) = kv.get(&key).await? else { return Err(not_found(kind, namespace, name)) };
        let mut resource = Resource::from_stored(kind, &item.value, item.mod_revision)?;
        if !change(&mut resource) {
            return Ok(resource);
        }
        let mut resource = resource.checked(1)?;
        if resource.key() != key {
            return Err(ApiError::Conflict(format!(
                "{} `{}` cannot be renamed or moved by an update",
                kind.info().name,
                shown(namespace, name)
            )));
        }
        let mut compares = vec![Compare::ModRevision(key.clone(), item.mod_revision)];
        compares.extend(checked_against_stored(kv, std::slice::from_ref(&resource)).await?);
        let success = vec![Op::Put { key: key.clone(), value: resource.to_json(), lease: None }];
        let written = kv.txn(Txn { compares, success, failure: Vec::new() }).await?;
        if written.succeeded {
            resource.metadata_mut().resource_version = Some(written.revision.to_string());
            return Ok(resource);
        }
    }
    Err(ApiError::Conflict(format!(
        "{} `{}` kept changing for {} s of attempts to update it; try again",
        kind.info().name,
        shown(namespace, name),
        UPDATE_PATIENCE.as_secs()
    )))
}

/// Calico: IP pools must not overlap. Returns compares that pin the stored
/// pools this check relied on.
async fn check_pools<K: Kv>(kv: &K, batch: &[Resource]) -> Result<Vec<Compare>, ApiError> {
    let stored = kv.range(&Kind::IpPool.prefix(None)).await?;
    let mut pools: Vec<Resource> = Vec::new();
    let mut compares = Vec::new();
    for item in &stored.kvs {
        let r = Resource::from_stored(Kind::IpPool, &item.value, item.mod_revision)?;
        // A pool in the batch replaces its stored version.
        if !batch.iter().any(|b| b.key() == r.key()) {
            compares.push(Compare::ModRevision(item.key.clone(), item.mod_revision));
            pools.push(r);
        }
    }
    let new: Vec<&Resource> = batch.iter().filter(|r| r.kind() == Kind::IpPool).collect();
    for (i, a) in new.iter().enumerate() {
        let Resource::IpPool(pa) = a else { continue };
        let others = pools.iter().chain(new[i + 1..].iter().copied());
        for b in others {
            if let Resource::IpPool(pb) = b
                && pa.spec.overlaps(&pb.spec)
            {
                let cidr = |p: &crate::resources::IpPoolSpec| p.cidr.map(|c| c.to_string()).unwrap_or_default();
                return Err(ApiError::Conflict(format!(
                    "IPPool `{}` ({}) overlaps IPPool `{}` ({})",
                    pa.metadata.name,
                    cidr(&pa.spec),
                    pb.metadata.name,
                    cidr(&pb.spec)
                )));
            }
        }
    }
    Ok(compares)
}

/// A BGPPeer for one node whose peerIP is of a family that node has no
/// address of (an IPv4 peer of an IPv6-only node, or the reverse) could
/// never have a session: refused. Returns compares that pin the stored
/// Nodes this check relied on.
async fn check_peer_families<K: Kv>(kv: &K, batch: &[Resource]) -> Result<Vec<Compare>, ApiError> {
    let mut compares = Vec::new();
    for r in batch {
        let Resource::BgpPeer(p) = r else { continue };
        let (Some(node), Some(ip)) = (&p.spec.node, p.spec.peer_address()) else { continue };
        let in_batch = batch.iter().find_map(|b| match b {
            Resource::Node(n) if &n.metadata.name == node => Some(n.spec.clone()),
            _ => None,
        });
        let spec = match in_batch {
            Some(spec) => spec,
            None => {
                let key = Kind::Node.key(None, node);
                let Some(item) = kv.get(&key).await? else { continue };
                compares.push(Compare::ModRevision(key, item.mod_revision));
                match Resource::from_stored(Kind::Node, &item.value, item.mod_revision)? {
                    Resource::Node(n) => n.spec,
                    _ => continue,
                }
            }
        };
        let Some(bgp) = &spec.bgp else { continue };
        let lacks = match ip {
            IpAddr::V4(_) if bgp.ipv4_address.is_none() && bgp.ipv6_address.is_some() => {
                Some(("IPv4", "bgp.ipv4Address"))
            }
            IpAddr::V6(_) if bgp.ipv6_address.is_none() && bgp.ipv4_address.is_some() => {
                Some(("IPv6", "bgp.ipv6Address"))
            }
            _ => None,
        };
        if let Some((family, field)) = lacks {
            return Err(ApiError::Conflict(format!(
                "BGPPeer `{}`: peerIP {ip} is {family}, and node `{node}` has no {family} address ({field}): \
                 it could never have this session",
                p.metadata.name
            )));
        }
    }
    Ok(compares)
}

/// Every resource of `kind` (in `namespace`, or all namespaces).
pub async fn list<K: Kv>(kv: &K, kind: Kind, namespace: Option<&str>) -> Result<Vec<Resource>, ApiError> {
    let range = kv.range(&kind.prefix(namespace)).await?;
    range
        .kvs
        .iter()
        .map(|item| Resource::from_stored(kind, &item.value, item.mod_revision).map_err(ApiError::from))
        .collect()
}

/// One resource.
pub async fn get<K: Kv>(kv: &K, kind: Kind, namespace: Option<&str>, name: &str) -> Result<Resource, ApiError> {
    let namespace = default_namespace(kind, namespace);
    match kv.get(&kind.key(namespace, name)).await? {
        Some(item) => Ok(Resource::from_stored(kind, &item.value, item.mod_revision)?),
        None => Err(not_found(kind, namespace, name)),
    }
}

/// Deletes one resource; [`ApiError::NotFound`] if it does not exist.
pub async fn delete<K: Kv>(kv: &K, kind: Kind, namespace: Option<&str>, name: &str) -> Result<(), ApiError> {
    let namespace = default_namespace(kind, namespace);
    let key = kind.key(namespace, name);
    let Some(item) = kv.get(&key).await? else { return Err(not_found(kind, namespace, name)) };
    let txn = Txn {
        compares: vec![Compare::ModRevision(key.clone(), item.mod_revision)],
        success: vec![Op::Delete { key }],
        failure: Vec::new(),
    };
    if kv.txn(txn).await?.succeeded {
        Ok(())
    } else {
        Err(ApiError::Conflict(format!("{} `{name}` changed while being deleted; try again", kind.info().name)))
    }
}

fn default_namespace(kind: Kind, namespace: Option<&str>) -> Option<&str> {
    if kind.info().namespaced { Some(namespace.unwrap_or("default")) } else { None }
}

fn not_found(kind: Kind, namespace: Option<&str>, name: &str) -> ApiError {
    ApiError::NotFound { kind: kind.info().name, name: shown(namespace, name) }
}

/// `namespace/name`, or `name` for a kind without namespaces.
fn shown(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}
