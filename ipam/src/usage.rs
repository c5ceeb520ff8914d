//! Counting addresses for `tortie ipam show`: per pool, per block, and the
//! addresses a node borrowed from another node's block. Pure.

use std::net::IpAddr;

use ipnet::IpNet;
use tortie_store::ipam::IpamBlock;

use super::{ATTR_NODE, block};

/// One row of `ipam show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The pool or block.
    pub cidr: IpNet,
    /// The node a block is affine to (blocks only).
    pub node: Option<String>,
    /// Addresses in it.
    pub total: u128,
    /// Addresses allocated.
    pub in_use: u128,
}

impl Usage {
    /// Addresses free.
    pub fn free(&self) -> u128 {
        self.total - self.in_use
    }
}

fn size(cidr: IpNet) -> u128 {
    1u128 << (cidr.max_prefix_len() - cidr.prefix_len()).min(127)
}

fn affine_node(b: &IpamBlock) -> Option<String> {
    b.affinity.as_deref().and_then(|a| a.strip_prefix("host:")).map(String::from)
}

/// Per pool: its size and the addresses allocated in its blocks.
pub fn pools(pools: &[IpNet], blocks: &[IpamBlock]) -> Vec<Usage> {
    pools
        .iter()
        .map(|pool| {
            let in_use =
                blocks.iter().filter(|b| pool.contains(&b.cidr)).map(|b| block::allocated(b).count() as u128).sum();
            Usage { cidr: *pool, node: None, total: size(*pool), in_use }
        })
        .collect()
}

/// Per block.
pub fn blocks(blocks: &[IpamBlock]) -> Vec<Usage> {
    blocks
        .iter()
        .map(|b| Usage {
            cidr: b.cidr,
            node: affine_node(b),
            total: b.allocations.len() as u128,
            in_use: block::allocated(b).count() as u128,
        })
        .collect()
}

/// An address allocated to a node other than the block's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Borrowed {
    /// The address.
    pub ip: IpAddr,
    /// The block it is in.
    pub block: IpNet,
    /// The block's node.
    pub block_node: Option<String>,
    /// The node using it.
    pub node: String,
}

/// Every borrowed address.
pub fn borrowed(blocks: &[IpamBlock]) -> Vec<Borrowed> {
    let mut out = Vec::new();
    for b in blocks {
        let owner = affine_node(b);
        for (ip, attr) in block::allocated(b) {
            if let Some(node) = attr.secondary.get(ATTR_NODE).filter(|n| Some(*n) != owner.as_ref()) {
                out.push(Borrowed { ip, block: b.cidr, block_node: owner.clone(), node: node.clone() });
            }
        }
    }
    out
}

/// A disagreement between IPAM and the WorkloadEndpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// An address allocated to a handle that no endpoint uses (a leak:
    /// `tortie ipam release --ip` or CNI GC frees it).
    Leaked {
        /// The address.
        ip: IpAddr,
        /// Its handle.
        handle: String,
    },
    /// An endpoint's address that IPAM does not hold (it could be handed out twice).
    Unallocated {
        /// The address.
        ip: IpAddr,
        /// The endpoint (`namespace/name`).
        endpoint: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Leaked { ip, handle } => {
                write!(f, "{ip} is allocated to {handle} but no WorkloadEndpoint uses it")
            }
            Problem::Unallocated { ip, endpoint } => {
                write!(f, "{ip} is used by WorkloadEndpoint {endpoint} but IPAM does not hold it")
            }
        }
    }
}

/// An endpoint as the check sees it.
#[derive(Debug, Clone)]
pub struct EndpointAddrs {
    /// `namespace/name`.
    pub name: String,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
}

/// Compares allocations with the endpoints that should hold them.
pub fn check(blocks: &[IpamBlock], endpoints: &[EndpointAddrs]) -> Vec<Problem> {
    let used: std::collections::HashSet<IpAddr> = endpoints.iter().flat_map(|e| e.addresses.iter().copied()).collect();
    let mut held = std::collections::HashSet::new();
    let mut problems = Vec::new();
    for b in blocks {
        for (ip, attr) in block::allocated(b) {
            held.insert(ip);
            if !used.contains(&ip) {
                problems.push(Problem::Leaked { ip, handle: attr.handle_id.clone().unwrap_or_default() });
            }
        }
    }
    for e in endpoints {
        for ip in e.addresses.iter().filter(|ip| !held.contains(ip)) {
            problems.push(Problem::Unallocated { ip: *ip, endpoint: e.name.clone() });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use tortie_store::ipam::AllocationAttribute;

    fn attr(node: &str) -> AllocationAttribute {
        AllocationAttribute { handle_id: Some("h".into()), secondary: [(ATTR_NODE.into(), node.into())].into() }
    }

    #[test]
    fn counts_pools_blocks_and_borrowed_addresses() {
        let mut a = IpamBlock::new("198.18.0.0/26".parse().unwrap(), "n1");
        block::allocate(&mut a, attr("n1"));
        block::allocate(&mut a, attr("n2"));
        let b = IpamBlock::new("198.18.0.64/26".parse().unwrap(), "n2");
        let all = [a, b];
        let p = pools(&["198.18.0.0/16".parse().unwrap(), "198.19.0.0/24".parse().unwrap()], &all);
        assert_eq!((p[0].total, p[0].in_use, p[0].free()), (65536, 2, 65534));
        assert_eq!((p[1].total, p[1].in_use), (256, 0));
        let rows = blocks(&all);
        assert_eq!((rows[0].node.as_deref(), rows[0].in_use, rows[1].in_use), (Some("n1"), 2, 0));
        let lent = borrowed(&all);
        assert_eq!(lent.len(), 1);
        assert_eq!((lent[0].ip.to_string(), lent[0].node.as_str()), ("198.18.0.1".into(), "n2"));
    }

    #[test]
    fn check_finds_leaks_and_unallocated_endpoint_addresses() {
        let mut a = IpamBlock::new("198.18.0.0/26".parse().unwrap(), "n1");
        block::allocate(&mut a, attr("n1"));
        block::allocate(&mut a, attr("n1"));
        let eps = [
            EndpointAddrs { name: "default/p0".into(), addresses: vec!["198.18.0.0".parse().unwrap()] },
            EndpointAddrs { name: "default/p9".into(), addresses: vec!["198.18.0.9".parse().unwrap()] },
        ];
        let found: Vec<String> = check(&[a], &eps).iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                "198.18.0.1 is allocated to h but no WorkloadEndpoint uses it",
                "198.18.0.9 is used by WorkloadEndpoint default/p9 but IPAM does not hold it"
            ]
        );
    }
}
