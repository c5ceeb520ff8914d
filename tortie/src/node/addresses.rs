//! The node's addresses and BGP identifier, as Calico's `IP`, `IP6` and
//! `CALICO_ROUTER_ID` give them: an IPv4 address (autodetected unless
//! given, or `none` for an IPv6-only node), an optional IPv6 address, and
//! the router ID (the IPv4 address; on an IPv6-only node one given or made
//! from a hash of the node's name).

use std::net::Ipv4Addr;
use std::str::FromStr;

use anyhow::Context as _;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// `--ip`: an address with its subnet length, or `none`.
#[derive(Clone, Copy, Debug)]
pub enum Ipv4Setting {
    /// No IPv4 address: an IPv6-only node (Calico's `IP=none`).
    None,
    /// This address.
    Address(Ipv4Net),
}

impl FromStr for Ipv4Setting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Ipv4Setting::None),
            _ => {
                s.parse().map(Ipv4Setting::Address).map_err(|_| format!("`{s}`: ADDR/LEN (e.g. 192.0.2.1/24) or none"))
            }
        }
    }
}

/// `--router-id`: an IPv4-formatted identifier, or `hash` (of the node name).
#[derive(Clone, Copy, Debug)]
pub enum RouterIdSetting {
    /// Made from the node's name.
    Hash,
    /// This one.
    Id(Ipv4Addr),
}

impl FromStr for RouterIdSetting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "hash" => Ok(RouterIdSetting::Hash),
            _ => s
                .parse()
                .ok()
                .filter(|id: &Ipv4Addr| !id.is_unspecified())
                .map(RouterIdSetting::Id)
                .ok_or_else(|| format!("`{s}`: an IPv4-formatted ID other than 0.0.0.0 (RFC 6286), or hash")),
        }
    }
}

/// What the node runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses {
    /// `bgp.ipv4Address` (none on an IPv6-only node).
    pub v4: Option<Ipv4Net>,
    /// `bgp.ipv6Address`.
    pub v6: Option<Ipv6Net>,
    /// The BGP identifier (RFC 6286: any non-zero 32 bits, unique in the AS).
    pub router_id: Ipv4Addr,
}

impl Addresses {
    /// From the command line: `--ip` (absent: the host's first global IPv4
    /// address), `--ip6`, `--router-id` (absent: the IPv4 address, or for
    /// an IPv6-only node the hash of `name`).
    pub async fn resolve(
        name: &str,
        ip: Option<Ipv4Setting>,
        ip6: Option<Ipv6Net>,
        router_id: Option<RouterIdSetting>,
    ) -> anyhow::Result<Addresses> {
        let v4 = match ip {
            Some(Ipv4Setting::Address(a)) => Some(a),
            Some(Ipv4Setting::None) => None,
            None => Some(discover().await?),
        };
        anyhow::ensure!(
            v4.is_some() || ip6.is_some(),
            "--ip none needs --ip6: an IPv6-only node peers and routes over its IPv6 address"
        );
        let router_id = match (router_id, v4) {
            (Some(RouterIdSetting::Id(id)), _) => id,
            (Some(RouterIdSetting::Hash), _) | (None, None) => hashed(name),
            (None, Some(a)) => a.addr(),
        };
        Ok(Addresses { v4, v6: ip6, router_id })
    }

    /// The IPv4 address, without its subnet.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.v4.map(|a| a.addr())
    }
}

/// The first global IPv4 address of this host.
async fn discover() -> anyhow::Result<Ipv4Net> {
    let found = tokio::task::spawn_blocking(|| tortie_felix::netlink::Netlink::open()?.ipv4_addresses()).await??;
    found
        .into_iter()
        .find_map(|a| match a {
            IpNet::V4(v4) => Some(v4),
            IpNet::V6(_) => None,
        })
        .context("no global IPv4 address on this host; pass --ip ADDR/LEN (or --ip none with --ip6)")
}

/// A router ID from the node's name (as Calico's `CALICO_ROUTER_ID=hash`):
/// FNV-1a over the name, never 0.0.0.0. Stable across restarts; two names
/// colliding (one chance in ~4 billion per pair) would need `--router-id`.
fn hashed(name: &str) -> Ipv4Addr {
    let hash = name.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    Ipv4Addr::from(hash.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_as_calico_spells_them_and_bad_ones_name_the_value() {
        assert!(matches!("none".parse(), Ok(Ipv4Setting::None)));
        assert!(matches!("192.0.2.1/24".parse(), Ok(Ipv4Setting::Address(_))));
        assert!("192.0.2.1".parse::<Ipv4Setting>().unwrap_err().contains("`192.0.2.1`"));
        assert!(matches!("hash".parse(), Ok(RouterIdSetting::Hash)));
        assert!("0.0.0.0".parse::<RouterIdSetting>().unwrap_err().contains("0.0.0.0"));
    }

    #[test]
    fn an_ipv6_only_node_gets_a_stable_router_id_from_its_name() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let v6 = Some("2001:db8::1/64".parse().unwrap());
        let a = rt.block_on(Addresses::resolve("n1", Some(Ipv4Setting::None), v6, None)).unwrap();
        assert_eq!((a.v4, a.router_id), (None, hashed("n1")));
        assert_ne!(hashed("n1"), hashed("n2"));
        let given = Some(RouterIdSetting::Id("10.0.0.1".parse().unwrap()));
        assert_eq!(
            rt.block_on(Addresses::resolve("n1", Some(Ipv4Setting::None), v6, given)).unwrap().router_id.to_string(),
            "10.0.0.1"
        );
        let dual = Some(Ipv4Setting::Address("192.0.2.1/24".parse().unwrap()));
        assert_eq!(rt.block_on(Addresses::resolve("n1", dual, v6, None)).unwrap().router_id.to_string(), "192.0.2.1");
        let neither = rt.block_on(Addresses::resolve("n1", Some(Ipv4Setting::None), None, None)).unwrap_err();
        assert!(neither.to_string().contains("--ip6"), "{neither}");
    }
}
