//! When traffic to a next hop is wrapped in IP-in-IP or VXLAN.

use std::net::IpAddr;

use ipnet::IpNet;

/// When to encapsulate traffic to a pool's pods (Calico's `ipipMode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EncapMode {
    /// Never: routes are native.
    #[default]
    Never,
    /// Always.
    Always,
    /// Only to nodes in another subnet.
    CrossSubnet,
}

/// Whether traffic for a pool in `mode`, sent to the node at `next_hop`,
/// must be encapsulated. `local` is this node's address of the next hop's
/// family with its subnet length (`spec.bgp.ipv4Address` or
/// `ipv6Address`): `CrossSubnet` encapsulates only when the next hop lies
/// outside that subnet (and, not knowing the subnet, assumes it does — the
/// safe choice across an unknown fabric).
pub fn encapsulate(mode: EncapMode, local: Option<IpNet>, next_hop: IpAddr) -> bool {
    match mode {
        EncapMode::Never => false,
        EncapMode::Always => true,
        EncapMode::CrossSubnet => !local.is_some_and(|l| l.trunc().contains(&next_hop)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_decide_per_next_hop() {
        let local = Some("192.0.2.1/24".parse().unwrap());
        let same: IpAddr = "192.0.2.77".parse().unwrap();
        let other: IpAddr = "198.51.100.2".parse().unwrap();
        let table = [
            (EncapMode::Never, same, false),
            (EncapMode::Never, other, false),
            (EncapMode::Always, same, true),
            (EncapMode::Always, other, true),
            (EncapMode::CrossSubnet, same, false),
            (EncapMode::CrossSubnet, other, true),
        ];
        for (mode, nh, want) in table {
            assert_eq!(encapsulate(mode, local, nh), want, "{mode:?} to {nh}");
        }
        assert!(encapsulate(EncapMode::CrossSubnet, None, same), "unknown subnet: encapsulate");
        let local6 = Some("2001:db8::1/64".parse().unwrap());
        assert!(!encapsulate(EncapMode::CrossSubnet, local6, "2001:db8::2".parse().unwrap()));
        assert!(encapsulate(EncapMode::CrossSubnet, local6, "2001:db8:1::2".parse().unwrap()));
    }
}
