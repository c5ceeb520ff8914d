//! Kernel routes as felix thinks of them, and the pure diff between the
//! routes a node should have and the routes it has.
//!
//! A route is a destination and a [`Target`]. Targets name interfaces by a
//! type parameter: the calculation speaks of interface names (`Target<String>`),
//! the kernel of interface indexes (`Target<u32>`); [`Target::resolve`] turns
//! one into the other just before reconciling.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use smallvec::SmallVec;

use crate::compact::{Compact, PrefixMap};

/// tortie's route protocol number (`rtm_protocol`). Every route felix
/// installs carries it; routes with any other number are never touched.
/// 217 is unassigned in iproute2's `rt_protos` (BIRD is 12, bgp 186).
pub const ROUTE_PROTOCOL: u8 = 217;

/// One next hop of a gateway route.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NextHop<I> {
    /// The gateway (another node's address).
    pub gateway: IpAddr,
    /// The device to leave by, when it must be pinned (the IPIP tunnel).
    pub device: Option<I>,
    /// `onlink`: the gateway is reachable on `device` even though no
    /// address of the device covers it (tunnel next hops).
    pub onlink: bool,
}

/// The next hops BGP chose for a prefix (one, or an ECMP set), inline when one.
pub type LearnedHops = SmallVec<[IpAddr; 1]>;

/// The next hops of a gateway route: one (the usual case) sits inline,
/// so a table of learned routes costs no allocation per route for them.
pub type Hops<I> = SmallVec<[NextHop<I>; 1]>;

/// Where a destination goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target<I> {
    /// `dev IF scope link`: a local pod behind its host veth.
    Device(I),
    /// `blackhole`: an affine block's unallocated addresses are dropped here
    /// rather than leaking to the default route.
    Blackhole,
    /// `via GW [dev IF] [onlink]`, several for an ECMP set (kept sorted).
    Gateways(Hops<I>),
}

impl<I: Clone> Target<I> {
    /// Maps interface names to indexes (or back); `None` if an interface is
    /// missing (the route waits for it).
    pub fn resolve<J>(&self, mut index: impl FnMut(&I) -> Option<J>) -> Option<Target<J>> {
        Some(match self {
            Target::Device(i) => Target::Device(index(i)?),
            Target::Blackhole => Target::Blackhole,
            Target::Gateways(hops) => Target::Gateways(
                hops.iter()
                    .map(|h| {
                        let device = match &h.device {
                            Some(d) => Some(index(d)?),
                            None => None,
                        };
                        Some(NextHop { gateway: h.gateway, device, onlink: h.onlink })
                    })
                    .collect::<Option<_>>()?,
            ),
        })
    }
}

impl Target<u32> {
    /// Whether the kernel's `actual` route does what `self` asks. A next hop
    /// without a pinned device accepts whatever device the kernel chose.
    pub fn satisfied_by(&self, actual: &Target<u32>) -> bool {
        match (self, actual) {
            (Target::Gateways(want), Target::Gateways(have)) => {
                want.len() == have.len()
                    && want.iter().zip(have).all(|(w, h)| {
                        w.gateway == h.gateway && w.onlink == h.onlink && (w.device.is_none() || w.device == h.device)
                    })
            }
            _ => self == actual,
        }
    }
}

/// Routes by destination (one per destination in the main table).
pub type Routes<I> = BTreeMap<IpNet, Target<I>>;

/// The kernel's routes (ours), as a full pass dumps them: a full table's
/// IPv4 routes via one IPv4 gateway in 16 octets each (see [`PrefixMap`]).
pub type KernelRoutes = PrefixMap<Target<u32>>;

/// An IPv4 route via one IPv4 gateway out of a known device.
#[derive(Debug, Clone, Copy)]
pub struct ViaV4 {
    gateway: Ipv4Addr,
    device: u32,
    onlink: bool,
}

impl Compact for Target<u32> {
    type Small = ViaV4;

    fn small(&self, _: &Ipv4Net) -> Option<ViaV4> {
        match self {
            Target::Gateways(hops) => match hops.as_slice() {
                [NextHop { gateway: IpAddr::V4(gateway), device: Some(device), onlink }] => {
                    Some(ViaV4 { gateway: *gateway, device: *device, onlink: *onlink })
                }
                _ => None,
            },
            _ => None,
        }
    }

    fn from_small(v: ViaV4) -> Self {
        Target::Gateways(smallvec::smallvec![NextHop {
            gateway: IpAddr::V4(v.gateway),
            device: Some(v.device),
            onlink: v.onlink
        }])
    }
}

/// A desired route via one IPv4 gateway, with no device or flag of its
/// own (as a learned route is made without a tunnel), is its gateway.
impl Compact for Target<String> {
    type Small = Ipv4Addr;

    fn small(&self, _: &Ipv4Net) -> Option<Ipv4Addr> {
        match self {
            Target::Gateways(hops) => match hops.as_slice() {
                [NextHop { gateway: IpAddr::V4(gateway), device: None, onlink: false }] => Some(*gateway),
                _ => None,
            },
            _ => None,
        }
    }

    fn from_small(gateway: Ipv4Addr) -> Self {
        Target::Gateways(smallvec::smallvec![NextHop { gateway: IpAddr::V4(gateway), device: None, onlink: false }])
    }
}

/// One change to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new route (fails rather than replace a route someone else owns).
    Add(IpNet, Target<u32>),
    /// Replace our route with a different target.
    Replace(IpNet, Target<u32>),
    /// Remove our route.
    Delete(IpNet, Target<u32>),
}

/// What turns `actual` (our routes in the kernel) into `desired`: deletes
/// first, so that a destination moving between targets never briefly has two.
pub fn diff(desired: &Routes<u32>, actual: &KernelRoutes) -> Vec<Change> {
    diff_resolving(desired.iter().map(|(dst, t)| (*dst, t.clone())), actual, |i| Some(*i)).0
}

/// [`diff`] from routes (in destination order) naming their interfaces by
/// `I`, each resolved by `index` as it is compared (no resolved copy of the
/// table is made); with how many desired routes wait for an interface
/// (those are not desired yet: a route of ours there goes).
pub fn diff_resolving<I: Clone>(
    desired: impl IntoIterator<Item = (IpNet, Target<I>)>,
    actual: &KernelRoutes,
    index: impl Fn(&I) -> Option<u32>,
) -> (Vec<Change>, usize) {
    let (mut changes, mut writes, mut waiting) = (Vec::new(), Vec::new(), 0);
    for (dst, want, have) in join(desired, actual.iter()) {
        let want = want.and_then(|t| {
            let resolved = t.resolve(|i| index(i));
            waiting += usize::from(resolved.is_none());
            resolved
        });
        match (want, have) {
            (None, Some(have)) => changes.push(Change::Delete(dst, have)),
            (Some(want), None) => writes.push(Change::Add(dst, want)),
            (Some(want), Some(have)) if !want.satisfied_by(&have) => writes.push(Change::Replace(dst, want)),
            _ => {}
        }
    }
    changes.extend(writes);
    (changes, waiting)
}

/// Two sequences in ascending key order walked side by side: each key
/// with what either has of it.
pub fn join<K: Ord, A, B>(
    a: impl IntoIterator<Item = (K, A)>,
    b: impl IntoIterator<Item = (K, B)>,
) -> impl Iterator<Item = (K, Option<A>, Option<B>)> {
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    std::iter::from_fn(move || {
        let order = match (a.peek(), b.peek()) {
            (None, None) => return None,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((x, _)), Some((y, _))) => x.cmp(y),
        };
        Some(match order {
            std::cmp::Ordering::Less => a.next().map(|(k, v)| (k, Some(v), None))?,
            std::cmp::Ordering::Greater => b.next().map(|(k, w)| (k, None, Some(w)))?,
            std::cmp::Ordering::Equal => {
                let ((k, v), (_, w)) = (a.next()?, b.next()?);
                (k, Some(v), Some(w))
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn via(gw: &str, dev: Option<u32>) -> NextHop<u32> {
        NextHop { gateway: gw.parse().unwrap(), device: dev, onlink: dev.is_some() }
    }

    #[test]
    fn a_desired_route_via_one_plain_ipv4_gateway_is_compact_and_no_other() {
        let p = "198.18.1.0/26".parse().unwrap();
        let hop = |device: Option<&str>, onlink| NextHop {
            gateway: "192.0.2.2".parse().unwrap(),
            device: device.map(String::from),
            onlink,
        };
        let plain = Target::Gateways(smallvec::smallvec![hop(None, false)]);
        let small = plain.small(&p).unwrap();
        assert_eq!(Target::<String>::from_small(small), plain);
        for other in [
            Target::Gateways(smallvec::smallvec![hop(Some("tunl0"), true)]),
            Target::Gateways(smallvec::smallvec![hop(None, true)]),
            Target::Gateways(smallvec::smallvec![hop(None, false), hop(None, false)]),
            Target::Blackhole,
        ] {
            assert_eq!(other.small(&p), None, "{other:?}");
        }
    }

    #[test]
    fn diff_adds_missing_replaces_changed_deletes_unwanted_and_keeps_the_rest() {
        let desired: Routes<u32> = [
            (net("198.18.0.1/32"), Target::Device(7)),
            (net("198.18.0.0/26"), Target::Blackhole),
            (net("198.18.1.0/26"), Target::Gateways(smallvec::smallvec![via("192.0.2.2", None)])),
        ]
        .into();
        let actual: KernelRoutes = [
            (net("198.18.0.1/32"), Target::Device(7)),
            (net("198.18.0.0/26"), Target::Device(3)),
            (net("198.18.9.0/26"), Target::Blackhole),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            diff(&desired, &actual),
            vec![
                Change::Delete(net("198.18.9.0/26"), Target::Blackhole),
                Change::Replace(net("198.18.0.0/26"), Target::Blackhole),
                Change::Add(net("198.18.1.0/26"), Target::Gateways(smallvec::smallvec![via("192.0.2.2", None)])),
            ]
        );
        assert!(diff(&desired, &desired.clone().into_iter().collect()).is_empty());
        // Named interfaces, resolved as compared: one that is missing waits,
        // and a route of ours at its destination goes meanwhile.
        let named: Routes<String> = [
            (net("198.18.0.0/26"), Target::Device("tortie0".to_string())),
            (net("198.18.0.64/26"), Target::Device("gone".to_string())),
        ]
        .into();
        let actual: KernelRoutes = [(net("198.18.0.64/26"), Target::Device(7))].into_iter().collect();
        let index = |n: &String| (n == "tortie0").then_some(4);
        assert_eq!(
            diff_resolving(named.clone(), &actual, index),
            (
                vec![
                    Change::Delete(net("198.18.0.64/26"), Target::Device(7)),
                    Change::Add(net("198.18.0.0/26"), Target::Device(4))
                ],
                1
            )
        );
    }

    #[test]
    fn a_gateway_without_a_pinned_device_accepts_the_kernels_choice() {
        let want = Target::Gateways(smallvec::smallvec![via("192.0.2.2", None)]);
        let chosen = Target::Gateways(smallvec::smallvec![NextHop {
            gateway: "192.0.2.2".parse().unwrap(),
            device: Some(4),
            onlink: false
        }]);
        assert!(want.satisfied_by(&chosen));
        let pinned = Target::Gateways(smallvec::smallvec![via("192.0.2.2", Some(9))]);
        assert!(!pinned.satisfied_by(&chosen), "a tunnel route must leave by the tunnel");
        let ecmp = Target::Gateways(smallvec::smallvec![via("192.0.2.2", None), via("192.0.2.3", None)]);
        assert!(!ecmp.satisfied_by(&chosen));
    }

    #[test]
    fn resolve_waits_for_missing_interfaces() {
        let t: Target<String> = Target::Device("tortie1".into());
        assert_eq!(t.resolve(|n| (n == "tortie1").then_some(5)), Some(Target::Device(5)));
        assert_eq!(t.resolve(|_| None::<u32>), None);
        let gw: Target<String> = Target::Gateways(smallvec::smallvec![NextHop {
            gateway: "192.0.2.2".parse().unwrap(),
            device: Some("tunl0".into()),
            onlink: true,
        }]);
        assert_eq!(gw.resolve(|_| None::<u32>), None);
        assert_eq!(Target::<String>::Blackhole.resolve(|_| None::<u32>), Some(Target::Blackhole));
    }
}
