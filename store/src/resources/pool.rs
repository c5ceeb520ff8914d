//! IPPool and IPAMConfig.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::validate::{self, Invalid};
use super::{Metadata, Spec};

/// When to encapsulate (IPIP or VXLAN) traffic to pods of this pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncapMode {
    /// Never: routes are native.
    #[default]
    Never,
    /// Always.
    Always,
    /// Only to nodes in another subnet.
    CrossSubnet,
}

/// Which pods a pool serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AssignmentMode {
    /// Any pod that asks for no pool in particular.
    #[default]
    Automatic,
    /// Only pods that ask for it by name or CIDR (CNI `ipam.ipv4_pools`).
    Manual,
}

/// Calico's default block sizes.
const DEFAULT_BLOCK_V4: u8 = 26;
const DEFAULT_BLOCK_V6: u8 = 122;

/// IPPool spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpPoolSpec {
    /// The pool.
    pub cidr: Option<IpNet>,
    /// Prefix length of the blocks handed to nodes (IPv4 20–32, default 26; IPv6 116–128, default 122).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u8>,
    /// IPIP mode (IPv4 only).
    #[serde(default, rename = "ipipMode", skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<EncapMode>,
    /// VXLAN mode.
    #[serde(default, rename = "vxlanMode", skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<EncapMode>,
    /// Masquerade traffic from pods to outside the pools.
    #[serde(default)]
    pub nat_outgoing: bool,
    /// No new addresses from this pool.
    #[serde(default)]
    pub disabled: bool,
    /// Do not advertise this pool's blocks over BGP.
    #[serde(default, rename = "disableBGPExport")]
    pub disable_bgp_export: bool,
    /// Nodes that may take blocks from this pool (default `all()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// `Workload` and/or `Tunnel` (default both).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uses: Vec<String>,
    /// `Automatic` (default) or `Manual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_mode: Option<AssignmentMode>,
}

impl IpPoolSpec {
    /// Whether two pools share any address.
    pub fn overlaps(&self, other: &IpPoolSpec) -> bool {
        match (self.cidr, other.cidr) {
            (Some(a), Some(b)) => a.contains(&b.network()) || b.contains(&a.network()),
            _ => false,
        }
    }
}

impl Spec for IpPoolSpec {
    fn apply_defaults(&mut self, _meta: &Metadata) {
        let v4 = matches!(self.cidr, Some(IpNet::V4(_)));
        self.block_size.get_or_insert(if v4 { DEFAULT_BLOCK_V4 } else { DEFAULT_BLOCK_V6 });
        self.ipip_mode.get_or_insert(EncapMode::Never);
        self.vxlan_mode.get_or_insert(EncapMode::Never);
        self.node_selector.get_or_insert_with(|| "all()".into());
        if self.allowed_uses.is_empty() {
            self.allowed_uses = vec!["Workload".into(), "Tunnel".into()];
        }
        self.assignment_mode.get_or_insert_default();
    }

    fn validate(&self, _meta: &Metadata) -> Result<(), Invalid> {
        let cidr = self.cidr.ok_or_else(|| Invalid::new("cidr", "", "required"))?;
        if cidr.trunc() != cidr {
            return Err(Invalid::new("cidr", cidr, format!("host bits set; did you mean {}?", cidr.trunc())));
        }
        let (lo, hi) = if matches!(cidr, IpNet::V4(_)) { (20, 32) } else { (116, 128) };
        let size = self.block_size.unwrap_or(hi);
        if !(lo..=hi).contains(&size) {
            return Err(Invalid::new("blockSize", size, format!("must be {lo}–{hi} for this address family")));
        }
        if size < cidr.prefix_len() {
            return Err(Invalid::new("blockSize", size, format!("blocks larger than the pool /{}", cidr.prefix_len())));
        }
        let ipip = self.ipip_mode.unwrap_or_default();
        if ipip != EncapMode::Never && matches!(cidr, IpNet::V6(_)) {
            return Err(Invalid::new("ipipMode", format!("{ipip:?}"), "IPIP carries IPv4 only"));
        }
        if ipip != EncapMode::Never && self.vxlan_mode.unwrap_or_default() != EncapMode::Never {
            return Err(Invalid::new(
                "vxlanMode",
                format!("{:?}", self.vxlan_mode.unwrap_or_default()),
                "IPIP and VXLAN cannot both be on",
            ));
        }
        if let Some(s) = &self.node_selector {
            validate::selector("nodeSelector", s)?;
        }
        for (i, u) in self.allowed_uses.iter().enumerate() {
            if u != "Workload" && u != "Tunnel" {
                return Err(Invalid::new(format!("allowedUses[{i}]"), u, "one of Workload, Tunnel"));
            }
        }
        Ok(())
    }
}

/// IPAMConfig spec (one object, named `default`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpamConfigSpec {
    /// Never borrow addresses from another node's block.
    #[serde(default)]
    pub strict_affinity: bool,
    /// Claim new blocks when a node's are full (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_allocate_blocks: Option<bool>,
    /// Blocks a node may hold (0: no limit).
    #[serde(default)]
    pub max_blocks_per_host: u32,
}

impl Spec for IpamConfigSpec {
    fn apply_defaults(&mut self, _meta: &Metadata) {
        self.auto_allocate_blocks.get_or_insert(true);
    }

    fn validate(&self, meta: &Metadata) -> Result<(), Invalid> {
        if meta.name != "default" {
            return Err(Invalid::new("metadata.name", &meta.name, "the IPAMConfig is named `default`"));
        }
        Ok(())
    }
}
