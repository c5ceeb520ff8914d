//! The supported kinds: one row each with the names the CLI accepts, the
//! datastore key segment and whether the kind is namespaced.

use super::KEY_PREFIX;

/// A supported kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// BGPConfiguration
    BgpConfiguration,
    /// BGPPeer
    BgpPeer,
    /// BGPFilter
    BgpFilter,
    /// Node
    Node,
    /// IPPool
    IpPool,
    /// IPAMConfig
    IpamConfig,
    /// WorkloadEndpoint
    WorkloadEndpoint,
    /// NetworkPolicy
    NetworkPolicy,
    /// GlobalNetworkPolicy
    GlobalNetworkPolicy,
    /// HostEndpoint
    HostEndpoint,
    /// Profile
    Profile,
    /// NetworkSet
    NetworkSet,
    /// GlobalNetworkSet
    GlobalNetworkSet,
    /// FelixConfiguration
    FelixConfiguration,
    /// Tier
    Tier,
}

/// What the CLI and the datastore need to know about a kind.
#[derive(Debug)]
pub struct KindInfo {
    /// The kind as written in YAML.
    pub name: &'static str,
    /// The plural, lower case: the datastore key segment and a CLI name.
    pub plural: &'static str,
    /// Short names the CLI also accepts.
    pub short: &'static [&'static str],
    /// Whether objects live in a namespace.
    pub namespaced: bool,
}

const KINDS: [(Kind, KindInfo); 15] = [
    (
        Kind::BgpConfiguration,
        KindInfo { name: "BGPConfiguration", plural: "bgpconfigurations", short: &["bgpconfig"], namespaced: false },
    ),
    (Kind::BgpPeer, KindInfo { name: "BGPPeer", plural: "bgppeers", short: &[], namespaced: false }),
    (Kind::BgpFilter, KindInfo { name: "BGPFilter", plural: "bgpfilters", short: &[], namespaced: false }),
    (Kind::Node, KindInfo { name: "Node", plural: "nodes", short: &["no"], namespaced: false }),
    (Kind::IpPool, KindInfo { name: "IPPool", plural: "ippools", short: &["pool"], namespaced: false }),
    (
        Kind::IpamConfig,
        KindInfo { name: "IPAMConfig", plural: "ipamconfigs", short: &["ipamconfig"], namespaced: false },
    ),
    (
        Kind::WorkloadEndpoint,
        KindInfo { name: "WorkloadEndpoint", plural: "workloadendpoints", short: &["wep"], namespaced: true },
    ),
    (
        Kind::NetworkPolicy,
        KindInfo { name: "NetworkPolicy", plural: "networkpolicies", short: &["netpol"], namespaced: true },
    ),
    (
        Kind::GlobalNetworkPolicy,
        KindInfo { name: "GlobalNetworkPolicy", plural: "globalnetworkpolicies", short: &["gnp"], namespaced: false },
    ),
    (
        Kind::HostEndpoint,
        KindInfo { name: "HostEndpoint", plural: "hostendpoints", short: &["hep"], namespaced: false },
    ),
    (Kind::Profile, KindInfo { name: "Profile", plural: "profiles", short: &["pro"], namespaced: false }),
    (Kind::NetworkSet, KindInfo { name: "NetworkSet", plural: "networksets", short: &["netsets"], namespaced: true }),
    (
        Kind::GlobalNetworkSet,
        KindInfo { name: "GlobalNetworkSet", plural: "globalnetworksets", short: &[], namespaced: false },
    ),
    (
        Kind::FelixConfiguration,
        KindInfo {
            name: "FelixConfiguration",
            plural: "felixconfigurations",
            short: &["felixconfig"],
            namespaced: false,
        },
    ),
    (Kind::Tier, KindInfo { name: "Tier", plural: "tiers", short: &[], namespaced: false }),
];

/// Other names calicoctl accepts for a kind in YAML.
const ALIASES: [(&str, Kind); 1] = [("IPAMConfiguration", Kind::IpamConfig)];

impl Kind {
    /// Every kind, in table order.
    pub fn all() -> impl Iterator<Item = Kind> {
        KINDS.iter().map(|(k, _)| *k)
    }

    /// The table row.
    pub fn info(self) -> &'static KindInfo {
        // Every variant has a row; the fallback is never reached.
        KINDS.iter().find(|(k, _)| *k == self).map_or(&KINDS[0].1, |(_, info)| info)
    }

    /// The kind named exactly as in YAML (`IPPool`).
    pub fn from_name(name: &str) -> Option<Kind> {
        let alias = ALIASES.iter().find(|(a, _)| *a == name).map(|(_, k)| *k);
        KINDS.iter().find(|(_, i)| i.name == name).map(|(k, _)| *k).or(alias)
    }

    /// The kind for a CLI argument: the YAML name, singular or plural, any
    /// case, or a short name (`ippool`, `ippools`, `IPPool`, `pool`).
    pub fn from_cli(arg: &str) -> Option<Kind> {
        let a = arg.to_ascii_lowercase();
        KINDS
            .iter()
            .find(|(_, i)| i.name.to_ascii_lowercase() == a || i.plural == a || i.short.contains(&a.as_str()))
            .map(|(k, _)| *k)
    }

    /// YAML names of every kind.
    pub fn names() -> Vec<&'static str> {
        KINDS.iter().map(|(_, i)| i.name).collect()
    }

    /// The datastore key of an object.
    pub fn key(self, namespace: Option<&str>, name: &str) -> String {
        match namespace.filter(|_| self.info().namespaced) {
            Some(ns) => format!("{KEY_PREFIX}{}/{ns}/{name}", self.info().plural),
            None => format!("{KEY_PREFIX}{}/{name}", self.info().plural),
        }
    }

    /// The key prefix of every object of this kind (in `namespace`, if given).
    pub fn prefix(self, namespace: Option<&str>) -> String {
        match namespace.filter(|_| self.info().namespaced) {
            Some(ns) => format!("{KEY_PREFIX}{}/{ns}/", self.info().plural),
            None => format!("{KEY_PREFIX}{}/", self.info().plural),
        }
    }
}
