//! What this node originates, with which attributes, as Calico's BIRD
//! templates decide it: the prefixes felix asks for (its blocks), the
//! cluster's service ranges (`serviceClusterIPs`, `serviceExternalIPs`,
//! `serviceLoadBalancerIPs`, advertised from every node so the fabric
//! spreads the traffic over all of them), and on each prefix the
//! communities of every `prefixAdvertisements` entry whose `cidr` holds it
//! (standard RFC 1997 `aa:nn`, large RFC 8092 `aa:nn:mm`). Pure.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use tortie_bgp::packet::PathAttrs;
use tortie_bgp::packet::{Community, LargeCommunity};
use tortie_store::resources::BgpConfigurationSpec;

/// The BGPConfiguration fields that shape originations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Advertise {
    /// The service ranges (the cluster-wide `default` document's).
    pub services: BTreeSet<IpNet>,
    /// Per range: the communities its prefixes carry.
    pub communities: Vec<(IpNet, Vec<Tag>)>,
}

/// A community value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// `aa:nn`.
    Standard(Community),
    /// `aa:nn:mm`.
    Large(LargeCommunity),
}

fn tag(value: &str) -> Option<Tag> {
    let parts: Vec<&str> = value.split(':').collect();
    match parts.as_slice() {
        [a, n] => Some(Tag::Standard(Community::new(a.parse().ok()?, n.parse().ok()?))),
        [a, b, c] => Some(Tag::Large(LargeCommunity {
            global_admin: a.parse().ok()?,
            local_data_1: b.parse().ok()?,
            local_data_2: c.parse().ok()?,
        })),
        _ => None,
    }
}

impl Advertise {
    /// From the cluster's `default` document and this node's effective one
    /// (communities are per node; `apply` checked every value). IPv6
    /// ranges go out on the IPv6 sessions (their next hop: our IPv6 address).
    pub fn new(cluster: &BgpConfigurationSpec, mine: &BgpConfigurationSpec) -> Advertise {
        let services =
            [&cluster.service_cluster_ips, &cluster.service_external_ips, &cluster.service_load_balancer_ips]
                .into_iter()
                .flatten()
                .map(|s| s.cidr.trunc())
                .collect();
        let value = |c: &String| {
            let named = mine.communities.iter().find(|n| &n.name == c);
            tag(named.map_or(c.as_str(), |n| n.value.as_str()))
        };
        let communities = mine
            .prefix_advertisements
            .iter()
            .map(|p| (p.cidr.trunc(), p.communities.iter().filter_map(value).collect()))
            .collect();
        Advertise { services, communities }
    }

    /// Every prefix to originate, with its attributes.
    pub fn originations(&self, felix: &BTreeSet<IpNet>) -> BTreeMap<IpNet, PathAttrs> {
        felix
            .iter()
            .chain(&self.services)
            .map(|prefix| {
                let mut attrs = PathAttrs::default();
                for (_, tags) in self.communities.iter().filter(|(cidr, _)| cidr.contains(prefix)) {
                    for t in tags {
                        match *t {
                            Tag::Standard(c) if !attrs.communities.contains(&c) => attrs.communities.extend([c]),
                            Tag::Large(c) if !attrs.large_communities.contains(&c) => {
                                attrs.large_communities.extend([c])
                            }
                            _ => {}
                        }
                    }
                }
                (*prefix, attrs)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tortie_store::resources::{Community as Named, PrefixAdvertisement, ServiceCidr};

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn services_from_the_cluster_and_communities_by_containment() {
        let cluster = BgpConfigurationSpec {
            service_cluster_ips: vec![ServiceCidr { cidr: net("198.51.100.0/25") }],
            service_external_ips: vec![ServiceCidr { cidr: net("203.0.113.7/24") }],
            service_load_balancer_ips: vec![ServiceCidr { cidr: net("2001:db8:300::/120") }],
            ..BgpConfigurationSpec::default()
        };
        let mine = BgpConfigurationSpec {
            communities: vec![Named { name: "pods".into(), value: "64512:300:100".into() }],
            prefix_advertisements: vec![
                PrefixAdvertisement { cidr: net("198.18.0.0/16"), communities: vec!["pods".into(), "65000:1".into()] },
                PrefixAdvertisement {
                    cidr: net("198.18.0.0/26"),
                    communities: vec!["65000:1".into(), "65000:2".into()],
                },
            ],
            ..BgpConfigurationSpec::default()
        };
        let adv = Advertise::new(&cluster, &mine);
        let got = adv.originations(&[net("198.18.0.0/26"), net("198.18.1.0/26")].into());
        let show = |p: &str| {
            let a = &got[&net(p)];
            let std: Vec<String> = a.communities.iter().map(|c| format!("{}:{}", c.0 >> 16, c.0 & 0xffff)).collect();
            let large: Vec<String> = a.large_communities.iter().map(|c| c.to_string()).collect();
            (std, large)
        };
        let keys: Vec<String> = got.keys().map(|k| k.to_string()).collect();
        assert_eq!(
            keys,
            ["198.18.0.0/26", "198.18.1.0/26", "198.51.100.0/25", "203.0.113.0/24", "2001:db8:300::/120"],
            "both families"
        );
        assert_eq!(show("198.18.0.0/26"), (vec!["65000:1".into(), "65000:2".into()], vec!["64512:300:100".into()]));
        assert_eq!(show("198.18.1.0/26"), (vec!["65000:1".into()], vec!["64512:300:100".into()]));
        assert_eq!(show("198.51.100.0/25"), (vec![], vec![]));
    }
}
