//! # tortie-ipam — block IPAM with node affinity, the Calico way
//!
//! Used by the CNI plugin (pod addresses) and the node (tunnel addresses,
//! the API's usage summary); the records are Calico's, in the datastore.
//!
//! Block IPAM with node affinity, the Calico way: a node claims whole
//! blocks of a pool (`blockSize`) and hands out their addresses, so the
//! cluster routes a few blocks per node instead of one route per pod.
//!
//! Every change is one compare-and-swap transaction over the records it
//! read (the block, the handle, the affinity), retried on conflict — so
//! any number of CNI processes on any number of nodes can allocate at once
//! without a lock and without handing out an address twice. A handle
//! (`<network>.<containerID>`) names what an ADD took, so DEL releases
//! exactly that.

pub mod block;
pub mod usage;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use tortie_store::api;
use tortie_store::ipam::{
    AffinityState, AllocationAttribute, BlockAffinity, IPAM_PREFIX, IpamBlock, IpamHandle, cidr_key,
};
use tortie_store::kv::{Compare, Kv, Op, Txn};
use tortie_store::resources::{AssignmentMode, IpPoolSpec, IpamConfigSpec, Kind, Resource};
use tortie_store::selector::Selector;
use tortie_store::{StoreError, resources::Spec};

/// Attempts of one operation that keeps losing compare-and-swap races.
const ATTEMPTS: usize = 100;
/// Secondary attribute naming the node an address was given to.
pub const ATTR_NODE: &str = "node";

/// Why an IPAM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The datastore failed.
    #[error("datastore: {0}")]
    Store(#[from] StoreError),
    /// Reading resources failed.
    #[error("datastore: {0}")]
    Api(#[from] api::ApiError),
    /// A record could not be read.
    #[error("IPAM record {key}: {why}")]
    Record {
        /// Key.
        key: String,
        /// Why.
        why: String,
    },
    /// No address is left for this node.
    #[error("no free {family} address for node {node}: {why}")]
    Exhausted {
        /// The address family asked for.
        family: Family,
        /// The node.
        node: String,
        /// What is full or forbidden.
        why: String,
    },
    /// Requests that cannot be served in one transaction.
    #[error("IPAM request: {0}")]
    Request(String),
    /// Too many concurrent writers won every race.
    #[error("the IPAM records kept changing during {ATTEMPTS} attempts; try again")]
    Contended,
}

/// A block as read, with the revision its write must compare against.
#[derive(Debug, Clone)]
pub struct StoredBlock {
    /// The record.
    pub block: IpamBlock,
    /// Its `mod_revision`.
    pub revision: i64,
}

fn record_error(key: &str, e: impl std::fmt::Display) -> IpamError {
    IpamError::Record { key: key.into(), why: e.to_string() }
}

fn put<T: serde::Serialize>(key: String, value: &T) -> Op {
    Op::Put { key, value: serde_json::to_vec(value).unwrap_or_default(), lease: None }
}

/// Every block, IPv4 then IPv6.
pub async fn blocks<K: Kv>(kv: &K) -> Result<Vec<StoredBlock>, IpamError> {
    let range = kv.range(&format!("{IPAM_PREFIX}assignment/")).await?;
    range
        .kvs
        .iter()
        .map(|item| {
            let block = serde_json::from_slice(&item.value).map_err(|e| record_error(&item.key, e))?;
            Ok(StoredBlock { block, revision: item.mod_revision })
        })
        .collect()
}

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of `net`.
    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// What an address is used for (IPPool `allowedUses`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A pod's interface.
    Workload,
    /// The node's tunnel device.
    Tunnel,
}

impl Purpose {
    fn allowed_use(self) -> &'static str {
        match self {
            Purpose::Workload => "Workload",
            Purpose::Tunnel => "Tunnel",
        }
    }
}

/// Pools a node may take addresses from for `purpose` (of `family`, enabled,
/// allowed for that use, `nodeSelector` matching the node's labels): the
/// `requested` ones (by name or CIDR, in that order), or else every
/// `Automatic` one. A requested pool that cannot serve is an error that
/// says why.
pub async fn pools_for<K: Kv>(
    kv: &K,
    node: &str,
    purpose: Purpose,
    family: Family,
    requested: &[String],
) -> Result<Vec<IpPoolSpec>, IpamError> {
    Pools::read(kv, node).await?.select(node, purpose, family, requested)
}

/// The pools and the node's labels, read once for every family of a request.
struct Pools {
    labels: BTreeMap<String, String>,
    all: Vec<(String, IpPoolSpec)>,
}

impl Pools {
    async fn read<K: Kv>(kv: &K, node: &str) -> Result<Pools, IpamError> {
        let labels = match api::get(kv, Kind::Node, None, node).await {
            Ok(Resource::Node(n)) => n.metadata.labels,
            _ => BTreeMap::new(),
        };
        let all = api::list(kv, Kind::IpPool, None)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                Resource::IpPool(p) => Some((p.metadata.name, p.spec)),
                _ => None,
            })
            .collect();
        Ok(Pools { labels, all })
    }

    /// The pools `node` may take a `family` address from for `purpose`: the
    /// `requested` ones (by name or CIDR, each refused with the reason), or
    /// every automatic one that allows it.
    fn select(
        &self,
        node: &str,
        purpose: Purpose,
        family: Family,
        requested: &[String],
    ) -> Result<Vec<IpPoolSpec>, IpamError> {
        let Pools { labels, all } = self;
        let refusal = |s: &IpPoolSpec| {
            if s.cidr.map(|c| Family::of(&c)) != Some(family) {
                Some(match family {
                    Family::V4 => "it is not IPv4",
                    Family::V6 => "it is not IPv6",
                })
            } else if s.disabled {
                Some("it is disabled")
            } else if !s.allowed_uses.iter().any(|u| u == purpose.allowed_use()) {
                Some("its allowedUses exclude this use")
            } else if !s
                .node_selector
                .as_deref()
                .is_none_or(|sel| Selector::parse(sel).is_ok_and(|sel| sel.matches(labels)))
            {
                Some("its nodeSelector does not select this node")
            } else {
                None
            }
        };
        if requested.is_empty() {
            let automatic = |s: &IpPoolSpec| s.assignment_mode.unwrap_or_default() == AssignmentMode::Automatic;
            return Ok(all.iter().map(|(_, s)| s).filter(|s| automatic(s) && refusal(s).is_none()).cloned().collect());
        }
        requested
            .iter()
            .map(|want| {
                let (name, spec) = all
                    .iter()
                    .find(|(name, s)| name == want || s.cidr.is_some_and(|c| c.to_string() == *want))
                    .ok_or_else(|| IpamError::Exhausted {
                        family,
                        node: node.into(),
                        why: format!("no IPPool is named `{want}` or has that CIDR"),
                    })?;
                match refusal(spec) {
                    Some(why) => Err(IpamError::Exhausted {
                        family,
                        node: node.into(),
                        why: format!("requested IPPool {name}: {why}"),
                    }),
                    None => Ok(spec.clone()),
                }
            })
            .collect()
    }
}

async fn ipam_config<K: Kv>(kv: &K) -> Result<IpamConfigSpec, IpamError> {
    Ok(match api::get(kv, Kind::IpamConfig, None, "default").await {
        Ok(Resource::IpamConfig(c)) => c.spec,
        Ok(_) | Err(api::ApiError::NotFound { .. }) => {
            let mut c = IpamConfigSpec::default();
            c.apply_defaults(&tortie_store::resources::Metadata { name: "default".into(), ..Default::default() });
            c
        }
        Err(e) => return Err(e.into()),
    })
}

/// What an address is for.
#[derive(Debug, Clone)]
pub struct Request {
    /// The node asking.
    pub node: String,
    /// The handle (`<network>.<containerID>`).
    pub handle: String,
    /// What the address is for.
    pub purpose: Purpose,
    /// Which family.
    pub family: Family,
    /// Extra attributes (namespace, pod); the node is added.
    pub attrs: BTreeMap<String, String>,
    /// The pools asked for by name or CIDR (empty: the automatic ones).
    pub pools: Vec<String>,
}

/// The handle record and its revision (0: absent).
async fn handle<K: Kv>(kv: &K, id: &str) -> Result<(IpamHandle, i64), IpamError> {
    let key = IpamHandle { handle_id: id.into(), block: BTreeMap::new() }.key();
    match kv.get(&key).await? {
        Some(item) => Ok((serde_json::from_slice(&item.value).map_err(|e| record_error(&key, e))?, item.mod_revision)),
        None => Ok((IpamHandle { handle_id: id.into(), block: BTreeMap::new() }, 0)),
    }
}

/// The addresses `handle_id` holds now (from its blocks, so an address
/// released since is not among them).
pub async fn addresses_of<K: Kv>(kv: &K, handle_id: &str) -> Result<Vec<IpAddr>, IpamError> {
    let (handle, _) = handle(kv, handle_id).await?;
    let mut out = Vec::new();
    for block_key in handle.block.keys() {
        let key = tortie_store::ipam::block_key(block_key);
        let Some(item) = kv.get(&key).await? else { continue };
        let block: IpamBlock = serde_json::from_slice(&item.value).map_err(|e| record_error(&key, e))?;
        out.extend(
            block::allocated(&block).filter(|(_, a)| a.handle_id.as_deref() == Some(handle_id)).map(|(ip, _)| ip),
        );
    }
    Ok(out)
}

fn in_pool(pools: &[IpPoolSpec], cidr: IpNet) -> Option<&IpPoolSpec> {
    pools.iter().find(|p| p.cidr.is_some_and(|c| c.contains(&cidr)))
}

/// Assigns one address of the request's family: from the node's blocks; else from a newly
/// claimed block (up to `maxBlocksPerHost`); else, unless `strictAffinity`,
/// borrowed from another node's block.
pub async fn assign<K: Kv>(kv: &K, req: &Request) -> Result<IpNet, IpamError> {
    let got = assign_all(kv, std::slice::from_ref(req), |_| Vec::new()).await?;
    got.into_iter().next().ok_or(IpamError::Contended)
}

/// The first of `reqs`, once they are known to share its node and handle
/// and to ask for each family at most once.
fn together(reqs: &[Request]) -> Result<Option<&Request>, IpamError> {
    let Some(first) = reqs.first() else { return Ok(None) };
    for (i, r) in reqs.iter().enumerate() {
        if r.node != first.node || r.handle != first.handle {
            return Err(IpamError::Request(format!(
                "one transaction serves one node and handle: {} for {} beside {} for {}",
                r.handle, r.node, first.handle, first.node
            )));
        }
        if reqs[..i].iter().any(|o| o.family == r.family) {
            return Err(IpamError::Request(format!("two {} requests for handle {}", r.family, r.handle)));
        }
    }
    Ok(Some(first))
}

/// [`assign`] for each request (one per family, a dual-stack pod's two),
/// all in one compare-and-swap transaction that also writes
/// `also(addresses)` (the CNI plugin's WorkloadEndpoint: the addresses and
/// their user appear together, or nothing does). The requests share one
/// node and one handle (the first's); the pools, the IPAM configuration,
/// the handle and the blocks are read once for all of them.
pub async fn assign_all<K: Kv>(
    kv: &K,
    reqs: &[Request],
    also: impl Fn(&[IpNet]) -> Vec<Op>,
) -> Result<Vec<IpNet>, IpamError> {
    let Some(first) = together(reqs)? else { return Ok(Vec::new()) };
    let read = Pools::read(kv, &first.node).await?;
    let pools: Vec<Vec<IpPoolSpec>> = reqs
        .iter()
        .map(|req| {
            let pools = read.select(&req.node, req.purpose, req.family, &req.pools)?;
            if pools.is_empty() {
                return Err(IpamError::Exhausted {
                    family: req.family,
                    node: req.node.clone(),
                    why: format!(
                        "no enabled {} IPPool allowed for {} use selects this node",
                        req.family,
                        req.purpose.allowed_use()
                    ),
                });
            }
            Ok(pools)
        })
        .collect::<Result<_, _>>()?;
    let config = ipam_config(kv).await?;
    let affinity = format!("host:{}", first.node);
    'attempt: for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            // Spread racing writers apart (pseudo-random from the handle and the attempt).
            let spread = (first.handle.bytes().map(u64::from).sum::<u64>() * 7 + attempt as u64 * 13) % 20;
            tokio::time::sleep(Duration::from_millis(1 + spread)).await;
        }
        let (mut handle, handle_rev) = handle(kv, &first.handle).await?;
        let all = blocks(kv).await?;
        let mut compares = vec![Compare::ModRevision(handle.key(), handle_rev)];
        let mut ops = Vec::new();
        let mut addresses = Vec::new();
        for (req, pools) in reqs.iter().zip(&pools) {
            let (mut block, block_rev, claimed) = choose_block(req, pools, &config, &affinity, &all)?;
            let mut secondary = req.attrs.clone();
            secondary.insert(ATTR_NODE.into(), req.node.clone());
            let attr = AllocationAttribute { handle_id: Some(first.handle.clone()), secondary };
            let Some(ip) = block::allocate(&mut block, attr) else { continue 'attempt };
            *handle.block.entry(cidr_key(block.cidr)).or_insert(0) += 1;
            compares.push(Compare::ModRevision(block.key(), block_rev));
            ops.push(put(block.key(), &block));
            if claimed {
                let aff = BlockAffinity { node: req.node.clone(), cidr: block.cidr, state: AffinityState::Confirmed };
                ops.push(put(aff.key(), &aff));
                tracing::info!(node = req.node, block = %block.cidr, "claimed an IPAM block");
            }
            addresses.push(IpNet::from(ip));
        }
        ops.push(put(handle.key(), &handle));
        ops.extend(also(&addresses));
        if kv.txn(Txn { compares, success: ops, failure: Vec::new() }).await?.succeeded {
            return Ok(addresses);
        }
    }
    Err(IpamError::Contended)
}

/// The block `req`'s address comes from, with its revision (0: claimed
/// now) and whether it is claimed now: 1. one of the node's blocks with a
/// free address; 2. else the next unclaimed block of the first pool that
/// has one; 3. else one borrowed from another node's block.
fn choose_block(
    req: &Request,
    pools: &[IpPoolSpec],
    config: &IpamConfigSpec,
    affinity: &str,
    all: &[StoredBlock],
) -> Result<(IpamBlock, i64, bool), IpamError> {
    let mine: Vec<&StoredBlock> = all
        .iter()
        .filter(|b| b.block.affinity.as_deref() == Some(affinity) && in_pool(pools, b.block.cidr).is_some())
        .collect();
    if let Some(b) = mine.iter().find(|b| !b.block.deleted && !b.block.unallocated.is_empty()) {
        return Ok((b.block.clone(), b.revision, false));
    }
    let may_claim = config.auto_allocate_blocks.unwrap_or(true)
        && (config.max_blocks_per_host == 0 || mine.len() < config.max_blocks_per_host as usize);
    let taken: Vec<IpNet> = all.iter().map(|b| b.block.cidr).collect();
    let fresh = pools.iter().find_map(|p| block::next_free_block(p.cidr?, p.block_size.unwrap_or(26), &taken));
    if let (Some(cidr), true) = (fresh, may_claim) {
        return Ok((IpamBlock::new(cidr, &req.node), 0, true));
    }
    let borrowable = all
        .iter()
        .filter(|_| !config.strict_affinity)
        .find(|b| !b.block.deleted && !b.block.unallocated.is_empty() && in_pool(pools, b.block.cidr).is_some());
    match borrowable {
        Some(b) => Ok((b.block.clone(), b.revision, false)),
        None => Err(exhausted(req, config, mine.len(), fresh.is_some())),
    }
}

fn exhausted(req: &Request, config: &IpamConfigSpec, blocks: usize, pool_has_room: bool) -> IpamError {
    let mut why = format!("its {blocks} block(s) are full");
    if !pool_has_room {
        why.push_str(", the pools have no unclaimed block left");
    } else if config.max_blocks_per_host > 0 {
        why.push_str(&format!(", maxBlocksPerHost is {}", config.max_blocks_per_host));
    }
    if config.strict_affinity {
        why.push_str(", and strictAffinity forbids borrowing from other nodes' blocks");
    } else {
        why.push_str(", and no other node's block has a free address");
    }
    IpamError::Exhausted { family: req.family, node: req.node.clone(), why }
}

/// Releases every address of `handle_id`; returns them (none if the handle
/// is unknown: releasing twice is fine).
pub async fn release_handle<K: Kv>(kv: &K, handle_id: &str) -> Result<Vec<IpAddr>, IpamError> {
    let mut freed = Vec::new();
    for _ in 0..ATTEMPTS {
        let (mut handle, handle_rev) = handle(kv, handle_id).await?;
        let Some(block_key) = handle.block.keys().next().cloned() else {
            if handle_rev != 0 {
                let txn = Txn {
                    compares: vec![Compare::ModRevision(handle.key(), handle_rev)],
                    success: vec![Op::Delete { key: handle.key() }],
                    failure: Vec::new(),
                };
                kv.txn(txn).await?;
            }
            return Ok(freed);
        };
        handle.block.remove(&block_key);
        let key = tortie_store::ipam::block_key(&block_key);
        let mut compares = vec![Compare::ModRevision(handle.key(), handle_rev)];
        let mut ops =
            vec![if handle.block.is_empty() { Op::Delete { key: handle.key() } } else { put(handle.key(), &handle) }];
        let mut released = Vec::new();
        if let Some(item) = kv.get(&key).await? {
            let mut block: IpamBlock = serde_json::from_slice(&item.value).map_err(|e| record_error(&key, e))?;
            released = block::release_where(&mut block, |a| a.handle_id.as_deref() == Some(handle_id));
            compares.push(Compare::ModRevision(key.clone(), item.mod_revision));
            ops.push(put(key, &block));
        }
        if kv.txn(Txn { compares, success: ops, failure: Vec::new() }).await?.succeeded {
            freed.extend(released);
        }
    }
    Err(IpamError::Contended)
}

/// Releases one address whatever holds it; returns its attribute if it
/// was allocated.
pub async fn release_ip<K: Kv>(kv: &K, ip: IpAddr) -> Result<Option<AllocationAttribute>, IpamError> {
    for _ in 0..ATTEMPTS {
        let Some(stored) = blocks(kv).await?.into_iter().find(|b| b.block.cidr.contains(&ip)) else { return Ok(None) };
        let mut block = stored.block;
        let Some(attr) = block::release_ip(&mut block, ip) else { return Ok(None) };
        let mut compares = vec![Compare::ModRevision(block.key(), stored.revision)];
        let mut ops = vec![put(block.key(), &block)];
        if let Some(id) = &attr.handle_id {
            let (mut handle, rev) = handle(kv, id).await?;
            let key = cidr_key(block.cidr);
            if let Some(n) = handle.block.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    handle.block.remove(&key);
                }
            }
            compares.push(Compare::ModRevision(handle.key(), rev));
            ops.push(if handle.block.is_empty() {
                Op::Delete { key: handle.key() }
            } else {
                put(handle.key(), &handle)
            });
        }
        if kv.txn(Txn { compares, success: ops, failure: Vec::new() }).await?.succeeded {
            return Ok(Some(attr));
        }
    }
    Err(IpamError::Contended)
}

/// Handles of `node` under `network.` whose container is not in `valid`
/// (CNI GC): their addresses are released; returns the handles.
pub async fn gc<K: Kv>(kv: &K, node: &str, network: &str, valid: &HashSet<String>) -> Result<Vec<String>, IpamError> {
    let prefix = format!("{network}.");
    let mut stale: Vec<String> = Vec::new();
    for b in blocks(kv).await? {
        for (_, attr) in block::allocated(&b.block) {
            let Some(id) = attr.handle_id.as_deref() else { continue };
            let ours = attr.secondary.get(ATTR_NODE).is_some_and(|n| n == node) && id.starts_with(&prefix);
            if ours && !valid.contains(id) && !stale.iter().any(|s| s == id) {
                stale.push(id.to_string());
            }
        }
    }
    for id in &stale {
        let freed = release_handle(kv, id).await?;
        tracing::info!(handle = id, addresses = ?freed, "garbage-collected an allocation whose container is gone");
    }
    Ok(stale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(node: &str, handle: &str, family: Family) -> Request {
        Request {
            node: node.into(),
            handle: handle.into(),
            purpose: Purpose::Workload,
            family,
            attrs: BTreeMap::new(),
            pools: Vec::new(),
        }
    }

    #[test]
    fn one_transaction_takes_one_node_one_handle_and_each_family_once() {
        let (v4, v6) = (Family::V4, Family::V6);
        assert!(together(&[]).unwrap().is_none());
        let both = [req("n1", "k8s-pod-network.a", v4), req("n1", "k8s-pod-network.a", v6)];
        assert_eq!(together(&both).unwrap().unwrap().family, v4);
        let twice = [req("n1", "h", v4), req("n1", "h", v4)];
        assert!(together(&twice).unwrap_err().to_string().contains("two IPv4 requests for handle h"));
        let nodes = [req("n1", "h", v4), req("n2", "h", v6)];
        assert!(together(&nodes).unwrap_err().to_string().contains("h for n2 beside h for n1"));
        let handles = [req("n1", "h", v4), req("n1", "g", v6)];
        assert!(together(&handles).is_err());
    }
}
