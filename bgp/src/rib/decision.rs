//! The decision process (RFC 4271 §9.1.2.2): choosing the best path to a
//! prefix, and the multipath set, by successive elimination — each step
//! keeps only the candidates that are best in one respect, in this order:
//!
//! 1. reachable next hop (others are not eligible), then not LLGR_STALE
//!    (RFC 9494 §4.3: long-lived stale paths are least preferred, before
//!    any other step)
//! 2. highest LOCAL_PREF (100 when absent)
//! 3. locally originated
//! 4. shortest AS_PATH (an AS_SET counts 1, confederation segments 0)
//! 5. lowest ORIGIN (IGP < EGP < INCOMPLETE)
//! 6. lowest MED, compared only among paths from the same neighbouring AS
//!    (absent MED counts as 0)
//! 7. eBGP over iBGP
//! 8. lowest ORIGINATOR_ID, or the peer's BGP identifier (RFC 4456 §9)
//! 9. shortest CLUSTER_LIST
//! 10. lowest peer address
//!
//! Elimination, unlike sorting with a comparator, stays correct although
//! MED is not comparable across neighbouring ASes, and its result does not
//! depend on the order the paths arrived in. The multipath (ECMP) set is
//! what survives steps 1–7: paths equal up to the router-id tie-break.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::packet::{Community, Origin, PathAttrs};

/// RFC 4271 §5.1.5: LOCAL_PREF assumed for paths without one.
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// How we learned a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origination {
    /// Originated by this speaker (felix's prefixes).
    Local,
    /// From an external peer.
    Ebgp,
    /// From an internal peer.
    Ibgp,
}

/// One path to a prefix, as the decision process sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The path attributes (shared).
    pub attrs: Arc<PathAttrs>,
    /// Local, eBGP or iBGP.
    pub origination: Origination,
    /// The peer's address (unspecified for local paths).
    pub peer_addr: IpAddr,
    /// The peer's BGP identifier (ours for local paths).
    pub peer_id: Ipv4Addr,
    /// Whether the next hop is reachable.
    pub reachable: bool,
}

/// The outcome for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Index of the best path in the candidates given.
    pub best: usize,
    /// Indices of the multipath set, best first, at most the cap given
    /// (always containing `best`).
    pub multipath: Vec<usize>,
}

fn local_pref(p: &Path) -> u32 {
    p.attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
}

fn as_path_len(p: &Path) -> usize {
    p.attrs.as_path.as_ref().map_or(0, |a| a.path_len())
}

fn origin_rank(p: &Path) -> u8 {
    match p.attrs.origin {
        Some(Origin::Igp) => 0,
        Some(Origin::Egp) => 1,
        Some(Origin::Incomplete) | None => 2,
    }
}

/// The neighbouring AS for MED comparison: the first AS of the path (none for local or empty paths).
fn neighbour_as(p: &Path) -> Option<u32> {
    p.attrs.as_path.as_ref().and_then(|a| a.first_as())
}

fn router_id(p: &Path) -> u32 {
    u32::from(p.attrs.originator_id.unwrap_or(p.peer_id))
}

/// Keeps the candidates with the smallest `key`.
fn keep_min<K: Ord>(set: &mut Vec<usize>, paths: &[Path], key: impl Fn(&Path) -> K) {
    if let Some(min) = set.iter().map(|&i| key(&paths[i])).min() {
        set.retain(|&i| key(&paths[i]) == min);
    }
}

/// Runs the decision process over `paths`; `None` when no path is eligible.
/// `max_paths` caps the multipath set (1: no ECMP).
pub fn select(paths: &[Path], max_paths: usize) -> Option<Selection> {
    let mut set: Vec<usize> = (0..paths.len()).filter(|&i| paths[i].reachable).collect();
    if set.is_empty() {
        return None;
    }
    keep_min(&mut set, paths, |p| p.attrs.communities.contains(&Community::LLGR_STALE));
    keep_min(&mut set, paths, |p| std::cmp::Reverse(local_pref(p)));
    keep_min(&mut set, paths, |p| p.origination != Origination::Local);
    keep_min(&mut set, paths, as_path_len);
    keep_min(&mut set, paths, origin_rank);
    // MED: within each neighbouring AS, drop all but the lowest MED.
    let snapshot = set.clone();
    set.retain(|&i| {
        let (asn, med) = (neighbour_as(&paths[i]), paths[i].attrs.med.unwrap_or(0));
        snapshot.iter().all(|&j| neighbour_as(&paths[j]) != asn || paths[j].attrs.med.unwrap_or(0) >= med)
    });
    keep_min(&mut set, paths, |p| p.origination == Origination::Ibgp);
    // The multipath set: equal so far; ordered by the remaining tie-breaks.
    let mut multipath = set.clone();
    multipath.sort_by_key(|&i| (router_id(&paths[i]), paths[i].attrs.cluster_list.len(), paths[i].peer_addr));
    keep_min(&mut set, paths, router_id);
    keep_min(&mut set, paths, |p| p.attrs.cluster_list.len());
    keep_min(&mut set, paths, |p| p.peer_addr);
    let best = *set.first()?;
    multipath.retain(|&i| i != best);
    multipath.insert(0, best);
    multipath.truncate(max_paths.max(1));
    Some(Selection { best, multipath })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::AsPath;

    fn path(peer: u8, f: impl FnOnce(&mut PathAttrs, &mut Path)) -> Path {
        let mut attrs = PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::from_sequence(&[65000 + u32::from(peer)])),
            ..PathAttrs::default()
        };
        let mut p = Path {
            attrs: Arc::new(PathAttrs::default()),
            origination: Origination::Ebgp,
            peer_addr: IpAddr::from([192, 0, 2, peer]),
            peer_id: Ipv4Addr::new(192, 0, 2, peer),
            reachable: true,
        };
        f(&mut attrs, &mut p);
        p.attrs = Arc::new(attrs);
        p
    }

    fn best(paths: &[Path]) -> usize {
        select(paths, 1).unwrap().best
    }

    #[test]
    fn each_tie_break_decides_in_rfc_order() {
        // (name, path 0, path 1, expected winner): path 1 always differs in one respect.
        let cases: Vec<(&str, Path, Path, usize)> = vec![
            (
                "unreachable next hop is not eligible",
                path(1, |_, p| p.reachable = false),
                path(2, |a, _| a.local_pref = Some(1)),
                1,
            ),
            (
                "higher LOCAL_PREF",
                path(1, |a, _| a.local_pref = Some(100)),
                path(2, |a, _| a.local_pref = Some(200)),
                1,
            ),
            ("absent LOCAL_PREF counts 100", path(1, |a, _| a.local_pref = Some(99)), path(2, |_, _| {}), 1),
            (
                "locally originated",
                path(1, |_, _| {}),
                path(2, |a, p| {
                    p.origination = Origination::Local;
                    a.as_path = Some(AsPath::default());
                }),
                1,
            ),
            (
                "shorter AS_PATH",
                path(1, |a, _| a.as_path = Some(AsPath::from_sequence(&[65001, 65009]))),
                path(2, |_, _| {}),
                1,
            ),
            (
                "lower ORIGIN",
                path(1, |a, _| a.origin = Some(Origin::Incomplete)),
                path(2, |a, _| a.origin = Some(Origin::Egp)),
                1,
            ),
            (
                "lower MED, same neighbour AS",
                path(1, |a, _| {
                    a.med = Some(20);
                    a.as_path = Some(AsPath::from_sequence(&[65009]));
                }),
                path(2, |a, _| {
                    a.med = Some(10);
                    a.as_path = Some(AsPath::from_sequence(&[65009]));
                }),
                1,
            ),
            ("eBGP over iBGP", path(1, |_, p| p.origination = Origination::Ibgp), path(2, |_, _| {}), 1),
            ("lower router id", path(2, |_, _| {}), path(1, |_, _| {}), 1),
            (
                "ORIGINATOR_ID stands for the router id",
                path(1, |a, _| a.originator_id = Some(Ipv4Addr::new(192, 0, 2, 200))),
                path(2, |_, _| {}),
                1,
            ),
            (
                "shorter CLUSTER_LIST",
                path(1, |a, p| {
                    a.cluster_list = vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2)].into();
                    p.peer_id = Ipv4Addr::new(10, 0, 0, 1);
                }),
                path(2, |a, p| {
                    a.cluster_list = vec![Ipv4Addr::new(1, 1, 1, 1)].into();
                    p.peer_id = Ipv4Addr::new(10, 0, 0, 1);
                }),
                1,
            ),
            (
                "lower peer address",
                path(9, |_, p| p.peer_id = Ipv4Addr::new(10, 0, 0, 1)),
                path(3, |_, p| p.peer_id = Ipv4Addr::new(10, 0, 0, 1)),
                1,
            ),
        ];
        for (name, a, b, want) in cases {
            // The same pair the other way round picks the same path.
            assert_eq!(best(&[a.clone(), b.clone()]), want, "{name}");
            assert_eq!(best(&[b, a]), 1 - want, "{name} (reversed)");
        }
    }

    #[test]
    fn med_is_compared_only_within_a_neighbouring_as() {
        let from = |peer, asn: u32, med| {
            path(peer, move |a, _| {
                a.as_path = Some(AsPath::from_sequence(&[asn]));
                a.med = Some(med);
            })
        };
        // A (AS 1, MED 10) loses to B (AS 1, MED 5); C (AS 2, MED 50) is not compared with them on MED.
        let paths = [from(1, 1, 10), from(2, 1, 5), from(3, 2, 50)];
        let sel = select(&paths, 8).unwrap();
        assert_eq!(sel.best, 1, "router id decides between B (192.0.2.2) and C (192.0.2.3)");
        assert_eq!(sel.multipath, vec![1, 2]);
    }

    #[test]
    fn multipath_holds_paths_equal_up_to_the_router_id_capped() {
        let paths = [
            path(3, |_, _| {}),
            path(1, |_, _| {}),
            path(2, |_, _| {}),
            path(4, |a, _| a.as_path = Some(AsPath::from_sequence(&[65004, 65009]))),
            path(5, |_, p| p.origination = Origination::Ibgp),
        ];
        assert_eq!(select(&paths, 8).unwrap(), Selection { best: 1, multipath: vec![1, 2, 0] });
        assert_eq!(select(&paths, 2).unwrap().multipath, vec![1, 2]);
        assert_eq!(select(&paths, 1).unwrap().multipath, vec![1]);
        assert_eq!(select(&[path(1, |_, p| p.reachable = false)], 4), None);
    }

    #[test]
    fn the_choice_does_not_depend_on_arrival_order() {
        use proptest::prelude::*;
        let strategy = proptest::collection::vec((1u8..8, 0u32..3, 0u32..3, 0u32..2, any::<bool>(), 1u32..4), 1..7);
        proptest!(|(specs in strategy, seed in any::<u64>())| {
            let paths: Vec<Path> = specs
                .iter()
                .enumerate()
                .map(|(i, &(peer, lp, med, len, ibgp, asn))| {
                    path(peer.wrapping_add(i as u8 * 8), |a, p| {
                        a.local_pref = Some(100 + lp);
                        a.med = Some(med);
                        a.as_path = Some(AsPath::from_sequence(&vec![64500 + asn; 1 + len as usize]));
                        if ibgp {
                            p.origination = Origination::Ibgp;
                        }
                    })
                })
                .collect();
            let first = select(&paths, 4).unwrap();
            // A deterministic shuffle.
            let mut order: Vec<usize> = (0..paths.len()).collect();
            let mut s = seed;
            for i in (1..order.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (s >> 33) as usize % (i + 1));
            }
            let shuffled: Vec<Path> = order.iter().map(|&i| paths[i].clone()).collect();
            let second = select(&shuffled, 4).unwrap();
            prop_assert_eq!(&paths[first.best], &shuffled[second.best]);
            let a: Vec<&Path> = first.multipath.iter().map(|&i| &paths[i]).collect();
            let b: Vec<&Path> = second.multipath.iter().map(|&i| &shuffled[i]).collect();
            prop_assert_eq!(a, b);
        });
    }
}
