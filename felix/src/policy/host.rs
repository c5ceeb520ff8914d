//! The node-wide part of the table, from FelixConfiguration and the IP
//! pools: failsafe ports, what pods may send to their host, NAT for
//! pods' traffic leaving the pools (Calico's `natOutgoing`), and VXLAN
//! accepted only from the cluster's nodes.

use std::net::IpAddr;

use ipnet::IpNet;
use tortie_store::resources::{EndpointToHostAction, FelixConfigurationSpec, IpPoolSpec, ProtoPort};

/// A port the host always accepts (inbound) or may always use (outbound),
/// whatever host endpoint policy says (Calico's failsafe ports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failsafe {
    /// IP protocol number (6 or 17).
    pub protocol: u8,
    /// Destination port.
    pub port: u16,
    /// Only for this remote network (`None`: any).
    pub net: Option<IpNet>,
}

impl Failsafe {
    const fn tcp(port: u16) -> Failsafe {
        Failsafe { protocol: 6, port, net: None }
    }

    const fn udp(port: u16) -> Failsafe {
        Failsafe { protocol: 17, port, net: None }
    }
}

/// Calico's default `failsafeInboundHostPorts`: SSH, DHCP, BGP, etcd,
/// Typha, the Kubernetes API server and Calico's own.
pub const FAILSAFE_INBOUND: [Failsafe; 9] = [
    Failsafe::tcp(22),
    Failsafe::udp(68),
    Failsafe::tcp(179),
    Failsafe::tcp(2379),
    Failsafe::tcp(2380),
    Failsafe::tcp(5473),
    Failsafe::tcp(6443),
    Failsafe::tcp(6666),
    Failsafe::tcp(6667),
];

/// Calico's default `failsafeOutboundHostPorts`: DNS, DHCP, BGP, etcd,
/// Typha, the Kubernetes API server and Calico's own.
pub const FAILSAFE_OUTBOUND: [Failsafe; 9] = [
    Failsafe::udp(53),
    Failsafe::udp(67),
    Failsafe::tcp(179),
    Failsafe::tcp(2379),
    Failsafe::tcp(2380),
    Failsafe::tcp(5473),
    Failsafe::tcp(6443),
    Failsafe::tcp(6666),
    Failsafe::tcp(6667),
];

/// Source NAT for pods' traffic that leaves every pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatOutgoing {
    /// Every pool: traffic to these is never translated.
    pub pools: Vec<IpNet>,
    /// Pools with `natOutgoing: true`: traffic from these is translated.
    pub masquerade: Vec<IpNet>,
    /// The source address to use (`natOutgoingAddress`); `None`: the
    /// outgoing interface's address (masquerade).
    pub address: Option<IpAddr>,
}

impl NatOutgoing {
    /// `address` when no pool of its family masquerades (so it is used
    /// nowhere) while a pool of the other family does.
    pub fn unused_address(&self) -> Option<IpAddr> {
        let a = self.address?;
        let same = |n: &IpNet| n.addr().is_ipv4() == a.is_ipv4();
        (!self.masquerade.is_empty() && !self.masquerade.iter().any(same)).then_some(a)
    }
}

/// While a pool uses VXLAN: only the cluster's nodes may send to the VXLAN
/// port (anyone else could inject packets that the device would decapsulate
/// and deliver as if from a pod); the rest is dropped and counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VxlanGuard {
    /// The UDP port (FelixConfiguration `vxlanPort`).
    pub port: u16,
    /// Every node's addresses (IPv4 and IPv6).
    pub nodes: Vec<IpAddr>,
}

/// The node-wide rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRules {
    /// Inbound failsafe ports.
    pub failsafe_in: Vec<Failsafe>,
    /// Outbound failsafe ports.
    pub failsafe_out: Vec<Failsafe>,
    /// Pod → host traffic.
    pub endpoint_to_host: EndpointToHostAction,
    /// NAT for pods' outgoing traffic.
    pub nat: NatOutgoing,
    /// Police IPv6 too (`ipv6Support`; off: IPv6 passes unpoliced, as
    /// Calico leaves it without ip6tables rules).
    pub ipv6: bool,
    /// VXLAN from nodes only, while a pool uses it.
    pub vxlan: Option<VxlanGuard>,
    /// The VXLAN port: pods may not send to it, nor IP-in-IP (Calico's
    /// `allowVXLANPacketsFromWorkloads` and `allowIPIPPacketsFromWorkloads`,
    /// false): a pod could otherwise have its packets masqueraded to its
    /// node's address and decapsulated by another node as if from a node.
    pub vxlan_port: u16,
}

impl HostRules {
    /// The rules for these pools, this node's FelixConfiguration
    /// (Calico's defaults for what it leaves unset) and the cluster's nodes.
    pub fn new(pools: &[IpPoolSpec], felix: &FelixConfigurationSpec, nodes: &[IpAddr]) -> HostRules {
        let vxlan = pools.iter().any(|p| p.vxlan_mode.is_some_and(|m| m != tortie_store::resources::EncapMode::Never));
        let cidrs =
            |nat_only: bool| pools.iter().filter(|p| !nat_only || p.nat_outgoing).filter_map(|p| p.cidr).collect();
        let ports = |given: &Option<Vec<ProtoPort>>, default: &[Failsafe]| match given {
            Some(list) => list
                .iter()
                .filter_map(|p| Some(Failsafe { protocol: p.protocol_number()?, port: p.port, net: p.net }))
                .collect(),
            None => default.to_vec(),
        };
        HostRules {
            failsafe_in: ports(&felix.failsafe_inbound_host_ports, &FAILSAFE_INBOUND),
            failsafe_out: ports(&felix.failsafe_outbound_host_ports, &FAILSAFE_OUTBOUND),
            endpoint_to_host: felix.endpoint_to_host().unwrap_or_default(),
            nat: NatOutgoing { pools: cidrs(false), masquerade: cidrs(true), address: felix.nat_outgoing_address },
            ipv6: felix.ipv6_support.unwrap_or(true),
            vxlan: vxlan.then(|| VxlanGuard { port: felix.vxlan_port(), nodes: nodes.to_vec() }),
            vxlan_port: felix.vxlan_port(),
        }
    }
}

impl Default for HostRules {
    fn default() -> HostRules {
        HostRules {
            failsafe_in: FAILSAFE_INBOUND.to_vec(),
            failsafe_out: FAILSAFE_OUTBOUND.to_vec(),
            endpoint_to_host: EndpointToHostAction::default(),
            nat: NatOutgoing::default(),
            ipv6: true,
            vxlan: None,
            vxlan_port: tortie_store::resources::DEFAULT_VXLAN_PORT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nat_address_of_the_wrong_family_is_reported() {
        let nat = |masq: &str, addr: &str| NatOutgoing {
            pools: vec![],
            masquerade: vec![masq.parse().unwrap()],
            address: Some(addr.parse().unwrap()),
        };
        assert_eq!(nat("198.18.0.0/16", "2001:db8::1").unused_address(), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(nat("198.18.0.0/16", "192.0.2.9").unused_address(), None);
        assert_eq!(
            NatOutgoing { address: Some("192.0.2.9".parse().unwrap()), ..NatOutgoing::default() }.unused_address(),
            None
        );
    }
}
