//! Node: a host's BGP identity and addresses.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::bgp::as_number;
use super::validate::{self, Invalid};
use super::{Metadata, Spec};

/// `spec.bgp`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeBgp {
    /// The node's IPv4 address with its subnet length (`192.0.2.1/24`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<IpNet>,
    /// The node's IPv6 address with its subnet length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<IpNet>,
    /// The node's AS (default: BGPConfiguration's).
    #[serde(default, deserialize_with = "as_number", skip_serializing_if = "Option::is_none")]
    pub as_number: Option<u32>,
    /// Address of the node's IPIP tunnel device.
    #[serde(default, rename = "ipv4IPIPTunnelAddr", skip_serializing_if = "Option::is_none")]
    pub ipv4_ipip_tunnel_addr: Option<Ipv4Addr>,
    /// Makes the node a route reflector with this cluster id.
    #[serde(default, rename = "routeReflectorClusterID", skip_serializing_if = "Option::is_none")]
    pub route_reflector_cluster_id: Option<Ipv4Addr>,
}

/// One of the node's addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAddress {
    /// The address (with or without length).
    pub address: String,
    /// `InternalIP`, `ExternalIP`, `CalicoNodeIP`…
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// Node spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// BGP settings; absent on a node that runs no BGP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBgp>,
    /// Addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    /// Address of the node's VXLAN tunnel device.
    #[serde(default, rename = "ipv4VXLANTunnelAddr", skip_serializing_if = "Option::is_none")]
    pub ipv4_vxlan_tunnel_addr: Option<Ipv4Addr>,
    /// MAC address of the node's VXLAN tunnel device (`66:1c:7e:…`).
    #[serde(default, rename = "vxlanTunnelMACAddr", skip_serializing_if = "Option::is_none")]
    pub vxlan_tunnel_mac_addr: Option<String>,
    /// Address of the node's IPv6 VXLAN tunnel device.
    #[serde(default, rename = "ipv6VXLANTunnelAddr", skip_serializing_if = "Option::is_none")]
    pub ipv6_vxlan_tunnel_addr: Option<Ipv6Addr>,
    /// MAC address of the node's IPv6 VXLAN tunnel device.
    #[serde(default, rename = "vxlanTunnelMACAddrV6", skip_serializing_if = "Option::is_none")]
    pub vxlan_tunnel_mac_addr_v6: Option<String>,
}

impl NodeSpec {
    /// The node's IPv4 address (`bgp.ipv4Address`, without its subnet length).
    pub fn ipv4_address(&self) -> Option<Ipv4Addr> {
        match self.bgp.as_ref()?.ipv4_address? {
            IpNet::V4(a) => Some(a.addr()),
            IpNet::V6(_) => None,
        }
    }
}

/// A MAC address as Calico writes it (`vxlanTunnelMACAddr`): six two-digit
/// hexadecimal octets, colon-separated (`66:1c:7e:0a:3b:52`; either case).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut octets = s.split(':');
    for slot in &mut mac {
        // Two hex digits, nothing else (from_str_radix alone takes a `+`).
        let o = octets.next().filter(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()))?;
        *slot = u8::from_str_radix(o, 16).ok()?;
    }
    octets.next().is_none().then_some(mac)
}

impl Spec for NodeSpec {
    fn validate(&self, _meta: &Metadata) -> Result<(), Invalid> {
        if let Some(bgp) = &self.bgp {
            if let Some(a) = bgp.ipv4_address.filter(|a| !matches!(a, IpNet::V4(_))) {
                return Err(Invalid::new("bgp.ipv4Address", a, "not an IPv4 address"));
            }
            if let Some(a) = bgp.ipv6_address.filter(|a| !matches!(a, IpNet::V6(_))) {
                return Err(Invalid::new("bgp.ipv6Address", a, "not an IPv6 address"));
            }
            if let Some(asn) = bgp.as_number {
                validate::as_number("bgp.asNumber", asn)?;
            }
        }
        for (field, mac) in [
            ("vxlanTunnelMACAddr", &self.vxlan_tunnel_mac_addr),
            ("vxlanTunnelMACAddrV6", &self.vxlan_tunnel_mac_addr_v6),
        ] {
            let Some(m) = mac.as_deref() else { continue };
            match parse_mac(m) {
                None => return Err(Invalid::new(field, m, "a MAC address like 66:1c:7e:0a:3b:52")),
                // IEEE 802: the group bit set is no device's own address.
                Some(mac) if mac[0] & 0x01 != 0 || mac == [0; 6] => {
                    return Err(Invalid::new(field, m, "a unicast MAC address (not multicast, not zero)"));
                }
                Some(_) => {}
            }
        }
        for (i, a) in self.addresses.iter().enumerate() {
            let ok = a.address.parse::<IpNet>().is_ok() || a.address.parse::<std::net::IpAddr>().is_ok();
            if !ok {
                return Err(Invalid::new(format!("addresses[{i}].address"), &a.address, "not an IP address"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_mac;

    #[test]
    fn macs_parse_as_calico_writes_them() {
        let mac = [0x66, 0x1c, 0x7e, 0x0a, 0x3b, 0x52];
        assert_eq!(parse_mac("66:1c:7e:0a:3b:52"), Some(mac));
        assert_eq!(parse_mac("66:1C:7E:0A:3B:52"), Some(mac), "either case");
        for bad in [
            "",
            "66:1c:7e:0a:3b",
            "66:1c:7e:0a:3b:52:00",
            "66-1c-7e-0a-3b-52",
            "6:1c:7e:0a:3b:52",
            "+6:1c:7e:0a:3b:52",
            "g6:1c:7e:0a:3b:52",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
