//! Internal IPAM records, stored where Calico keeps them: blocks of
//! addresses, a node's affinity for a block, and handles (one per pod
//! interface) that name what an allocation belongs to. The CNI plugin's
//! IPAM updates them with compare-and-swap transactions.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Key prefix of the IPAM records.
pub const IPAM_PREFIX: &str = "/calico/ipam/v2/";

fn family(cidr: IpNet) -> &'static str {
    match cidr {
        IpNet::V4(_) => "ipv4",
        IpNet::V6(_) => "ipv6",
    }
}

/// `198.18.0.0/26` → `198.18.0.0-26` (Calico's key form of a CIDR).
pub fn cidr_key(cidr: IpNet) -> String {
    cidr.to_string().replace('/', "-")
}

/// The datastore key of the block in `key form` (a handle names its
/// blocks so): IPv6 blocks live apart from IPv4 ones.
pub fn block_key(cidr_key: &str) -> String {
    let family = if cidr_key.contains(':') { "ipv6" } else { "ipv4" };
    format!("{IPAM_PREFIX}assignment/{family}/block/{cidr_key}")
}

/// Who an allocated address belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocationAttribute {
    /// The handle (e.g. `k8s-pod-network.<container id>`).
    #[serde(rename = "handle_id", default, skip_serializing_if = "Option::is_none")]
    pub handle_id: Option<String>,
    /// Extra attributes (namespace, pod, node).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub secondary: std::collections::BTreeMap<String, String>,
}

/// A block of addresses handed to one node (`/calico/ipam/v2/assignment/ipv4/block/<cidr>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamBlock {
    /// The block.
    pub cidr: IpNet,
    /// `host:<node>` for the node that has affinity, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    /// Per address (by ordinal): index into `attributes`, or `None` if free.
    pub allocations: Vec<Option<usize>>,
    /// Free ordinals, in the order they will be handed out.
    pub unallocated: Vec<usize>,
    /// Attributes shared by allocations.
    #[serde(default)]
    pub attributes: Vec<AllocationAttribute>,
    /// Being released (no new allocations).
    #[serde(default)]
    pub deleted: bool,
}

impl IpamBlock {
    /// An empty block for `cidr` with affinity to `node`.
    pub fn new(cidr: IpNet, node: &str) -> IpamBlock {
        let size = 1usize << (cidr.max_prefix_len() - cidr.prefix_len()).min(16);
        IpamBlock {
            cidr,
            affinity: Some(format!("host:{node}")),
            allocations: vec![None; size],
            unallocated: (0..size).collect(),
            attributes: Vec::new(),
            deleted: false,
        }
    }

    /// The datastore key.
    pub fn key(&self) -> String {
        block_key(&cidr_key(self.cidr))
    }
}

/// State of a node's claim on a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AffinityState {
    /// Claimed, block not written yet.
    Pending,
    /// The block is the node's.
    Confirmed,
    /// Being released.
    PendingDeletion,
}

/// A node's affinity for a block (`/calico/ipam/v2/host/<node>/ipv4/block/<cidr>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockAffinity {
    /// The node.
    pub node: String,
    /// The block.
    pub cidr: IpNet,
    /// Claim state.
    pub state: AffinityState,
}

impl BlockAffinity {
    /// The datastore key.
    pub fn key(&self) -> String {
        format!("{IPAM_PREFIX}host/{}/{}/block/{}", self.node, family(self.cidr), cidr_key(self.cidr))
    }
}

/// The addresses one owner holds, counted per block (`/calico/ipam/v2/handle/<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamHandle {
    /// The handle id.
    pub handle_id: String,
    /// Block CIDR (key form) → addresses held in it.
    pub block: std::collections::BTreeMap<String, u32>,
}

impl IpamHandle {
    /// The datastore key.
    pub fn key(&self) -> String {
        format!("{IPAM_PREFIX}handle/{}", self.handle_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_live_where_calico_keeps_them_and_round_trip() {
        let cidr: IpNet = "198.18.0.64/26".parse().unwrap();
        let block = IpamBlock::new(cidr, "node-1");
        assert_eq!(block.key(), "/calico/ipam/v2/assignment/ipv4/block/198.18.0.64-26");
        assert_eq!((block.allocations.len(), block.unallocated.len()), (64, 64));
        let json = serde_json::to_vec(&block).unwrap();
        assert_eq!(serde_json::from_slice::<IpamBlock>(&json).unwrap(), block);
        let aff = BlockAffinity { node: "node-1".into(), cidr, state: AffinityState::Confirmed };
        assert_eq!(aff.key(), "/calico/ipam/v2/host/node-1/ipv4/block/198.18.0.64-26");
        assert!(String::from_utf8(serde_json::to_vec(&aff).unwrap()).unwrap().contains("\"confirmed\""));
        let handle =
            IpamHandle { handle_id: "k8s-pod-network.abc".into(), block: [("198.18.0.64-26".into(), 1)].into() };
        assert_eq!(handle.key(), "/calico/ipam/v2/handle/k8s-pod-network.abc");
        let v6 = IpamBlock::new("2001:db8::/122".parse().unwrap(), "n");
        assert_eq!(v6.key(), "/calico/ipam/v2/assignment/ipv6/block/2001:db8::-122");
    }
}
