//! Pods for tests of the parts below the CNI plugin (felix, the daemon):
//! a namespace joined to its node by a veth pair and addressed the way
//! Calico's CNI plugin does it — the address as a /32 on `eth0`, a
//! link-scope route to 169.254.1.1 and the default route through it (the
//! host side answers ARP for it by proxy).

use std::net::Ipv4Addr;

use ipnet::IpNet;

use crate::{Lab, Netns, Result, veth};

/// The next hop every pod uses; it exists nowhere (proxy ARP answers).
pub const POD_GATEWAY: &str = "169.254.1.1";

/// A plumbed pod.
pub struct Pod {
    /// The pod's namespace.
    pub netns: Netns,
    /// The host-side interface in the node namespace.
    pub host_if: String,
    /// The pod's address.
    pub addr: Ipv4Addr,
}

impl Pod {
    /// Pings `to` from inside the pod: `count` probes `interval` seconds
    /// apart; returns ping's output (ping fails on any loss when `-c` is
    /// reached without replies).
    pub fn ping(&self, to: Ipv4Addr, count: u32, interval: &str) -> Result<String> {
        let (count, to) = (count.to_string(), to.to_string());
        self.netns.exec("ping", &["-n", "-q", "-c", &count, "-i", interval, "-W", "1", &to])
    }
}

impl Lab {
    /// Creates pod `name` on `node`, reached through `host_if`.
    pub fn pod(&self, node: &Netns, name: &str, host_if: &str, addr: Ipv4Addr) -> Result<Pod> {
        let netns = self.netns(name)?;
        veth((node, host_if), (&netns, "eth0"))?;
        netns.add_addr("eth0", IpNet::from(std::net::IpAddr::V4(addr)))?;
        netns.add_route(&format!("{POD_GATEWAY} dev eth0 scope link"))?;
        netns.add_route(&format!("default via {POD_GATEWAY} dev eth0"))?;
        Ok(Pod { netns, host_if: host_if.to_string(), addr })
    }
}
