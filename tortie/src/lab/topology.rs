//! The lab's shape, decided before anything is built (pure): which node
//! sits in which subnet with which address, and the resources the
//! datastore starts with.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The ToR's AS.
pub const TOR_AS: u32 = 65000;
/// The nodes' AS (Calico's default).
pub const NODE_AS: u32 = 64512;

/// One of the two subnets behind the ToR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    /// `a` or `b` (the nodes' `subnet` label).
    pub label: &'static str,
    /// First three octets.
    pub base: [u8; 3],
    /// Its IPv6 /64's fourth group (2001:db8:0:<this>::/64).
    pub base6: u16,
}

/// 192.0.2.0/24 and 198.51.100.0/24 (test ranges), 2001:db8:0:a::/64 and
/// 2001:db8:0:b::/64 (RFC 3849), the ToR at .254 and ::fe in both.
pub const SUBNETS: [Subnet; 2] =
    [Subnet { label: "a", base: [192, 0, 2], base6: 0xa }, Subnet { label: "b", base: [198, 51, 100], base6: 0xb }];

/// The pods' IPv6 pool (`--ipv6`).
pub const POOL6: &str = "2001:db8:100::/48";

impl Subnet {
    /// The host `.n` of this subnet.
    pub fn host(self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.base[0], self.base[1], self.base[2], n)
    }

    /// The ToR's address here.
    pub fn tor(self) -> Ipv4Addr {
        self.host(254)
    }

    /// The IPv6 host `::n` of this subnet.
    pub fn host6(self, n: u8) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, 0, self.base6, 0, 0, 0, u16::from(n))
    }

    /// The ToR's IPv6 address here.
    pub fn tor6(self) -> Ipv6Addr {
        self.host6(0xfe)
    }
}

/// One lab node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNode {
    /// `n1`, `n2`…
    pub name: String,
    /// Its subnet.
    pub subnet: Subnet,
    /// Its address (/24).
    pub address: Ipv4Addr,
    /// Its IPv6 address (/64), used with `--ipv6`.
    pub address6: Ipv6Addr,
}

/// Nodes alternate between the two subnets: n1 in a, n2 in b, n3 in a…
pub fn nodes(count: usize) -> Vec<LabNode> {
    (0..count)
        .map(|i| {
            let subnet = SUBNETS[i % 2];
            let host = 11 + i as u8;
            LabNode { name: format!("n{}", i + 1), subnet, address: subnet.host(host), address6: subnet.host6(host) }
        })
        .collect()
}

/// The "outside" network behind the ToR (no route back to any pod pool).
pub const OUTSIDE_TOR: &str = "203.0.113.254/24";
/// The outside host.
pub const OUTSIDE_HOST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The service cluster-IP range every node advertises (`serviceClusterIPs`).
pub const SERVICE_RANGE: &str = "198.19.0.0/24";
/// Its IPv6 counterpart, with `--ipv6`.
pub const SERVICE_RANGE6: &str = "2001:db8:200::/112";

/// How pods' traffic crosses between the subnets.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Encap {
    /// IP-in-IP (the pool's `ipipMode: CrossSubnet`).
    Ipip,
    /// VXLAN (the pool's `vxlanMode: CrossSubnet`).
    Vxlan,
}

/// The resources the lab starts with: the default pool as Calico ships it
/// (CrossSubnet IPIP or VXLAN, natOutgoing), with `ipv6` an IPv6 pool, the
/// nodes with their subnet label, and with `bgp` the BGP configuration
/// (with a service cluster-IP range, advertised from every node, and BFD on
/// the mesh's sessions between nodes of one subnet) and one BGPPeer per
/// subnet (and family) towards the ToR, with BFD over IPv4, exporting only
/// the node's own routes.
pub fn resources(nodes: &[LabNode], encap: Encap, bgp: bool, ipv6: bool) -> String {
    let mode = match encap {
        Encap::Ipip => "ipipMode",
        Encap::Vxlan => "vxlanMode",
    };
    let mut yaml = format!(
        "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {{name: default-ipv4-ippool}}
spec: {{cidr: 198.18.0.0/16, blockSize: 26, {mode}: CrossSubnet, natOutgoing: true}}
"
    );
    if ipv6 {
        // IPv6 crosses the subnets natively (the ToR learns the blocks), or
        // on the IPv6 VXLAN device.
        let vxlan = if encap == Encap::Vxlan { ", vxlanMode: CrossSubnet" } else { "" };
        yaml += &format!(
            "---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {{name: default-ipv6-ippool}}
spec: {{cidr: '{POOL6}'{vxlan}}}
"
        );
    }
    if bgp {
        // Each node tells the ToR of its own blocks only (what it learned
        // from the mesh, the owner announces): one path per block at the
        // ToR, always through its node.
        yaml += "---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {name: own-routes-only}
spec: {exportV4: [{action: Reject, source: RemotePeers}], exportV6: [{action: Reject, source: RemotePeers}]}
";
        yaml += &format!(
            "---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {{name: default, annotations: {{tortie.io/bfd: 'true'}}}}
spec: {{asNumber: {NODE_AS}, nodeToNodeMeshEnabled: true, serviceClusterIPs: [{{cidr: {SERVICE_RANGE}}}{}]}}
",
            if ipv6 { format!(", {{cidr: '{SERVICE_RANGE6}'}}") } else { String::new() }
        );
    }
    for n in nodes {
        yaml += &format!(
            "---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: {}, labels: {{subnet: {}}}}}
spec: {{bgp: {{ipv4Address: {}/24}}}}
",
            n.name, n.subnet.label, n.address
        );
    }
    for s in SUBNETS.iter().filter(|_| bgp) {
        yaml += &format!(
            "---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: tor-{}}}
spec: {{nodeSelector: \"subnet == '{}'\", peerIP: {}, asNumber: {TOR_AS}, failureDetectionMode: BFDIfDirectlyConnected, filters: [own-routes-only]}}
",
            s.label,
            s.label,
            s.tor()
        );
        if ipv6 {
            yaml += &format!(
                "---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: tor-{}-v6}}
spec: {{nodeSelector: \"subnet == '{}'\", peerIP: '{}', asNumber: {TOR_AS}, filters: [own-routes-only]}}
",
                s.label,
                s.label,
                s.tor6()
            );
        }
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_alternate_subnets_and_the_resources_parse() {
        let n = nodes(3);
        let got: Vec<String> = n.iter().map(|n| format!("{} {} {}", n.name, n.subnet.label, n.address)).collect();
        assert_eq!(got, ["n1 a 192.0.2.11", "n2 b 198.51.100.12", "n3 a 192.0.2.13"]);
        let docs = tortie_store::resources::parse_documents(&resources(&n, Encap::Ipip, true, false)).unwrap();
        assert_eq!(docs.len(), 3 + 3 + 2);
        let dual = tortie_store::resources::parse_documents(&resources(&n, Encap::Ipip, true, true)).unwrap();
        assert_eq!(dual.len(), 4 + 3 + 4, "an IPv6 pool and an IPv6 BGPPeer per subnet more");
        assert_eq!(n[1].address6.to_string(), "2001:db8:0:b::c");
        let yaml = resources(&n, Encap::Vxlan, false, false);
        assert!(yaml.contains("vxlanMode: CrossSubnet") && !yaml.contains("BGPPeer"), "{yaml}");
        assert_eq!(tortie_store::resources::parse_documents(&yaml).unwrap().len(), 1 + 3);
    }
}
