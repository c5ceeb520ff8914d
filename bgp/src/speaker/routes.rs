//! The Loc-RIB's best paths as the local API shows them (`tortie bgp
//! routes`): one prefix's, or all of them a page at a time, so that a
//! full table's listing never holds the speaker's thread (and every
//! session's keepalives) for longer than a page takes.

use ipnet::IpNet;

use super::core::SpeakerCore;
use super::{RouteView, RoutesPage};
use crate::rib::table::Walk;

/// Routes a page holds at most: ~2 ms of the core's time.
const PAGE: usize = 4096;

impl SpeakerCore {
    /// `prefix`'s best paths, or a page of every prefix's after `after`.
    pub(super) fn routes(&self, prefix: Option<IpNet>, after: Option<Walk>) -> RoutesPage {
        let view = |prefix: IpNet| RouteView {
            prefix,
            paths: self.rib.best(&prefix).into_iter().map(|(peer, path)| (peer.map(|p| p.to_string()), path)).collect(),
        };
        match prefix {
            Some(p) => {
                RoutesPage { routes: vec![view(p)].into_iter().filter(|r| !r.paths.is_empty()).collect(), next: None }
            }
            None => {
                let mut next = None;
                let routes: Vec<RouteView> = self
                    .rib
                    .best_paths_after(after)
                    .take(PAGE)
                    .map(|(walk, prefix, _)| {
                        next = Some(walk);
                        view(prefix)
                    })
                    .collect();
                RoutesPage { next: next.filter(|_| routes.len() == PAGE), routes }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::super::SpeakerCommand;
    use super::super::core::Input;
    use super::*;
    use crate::packet::PathAttrs;

    #[test]
    fn every_route_comes_once_over_the_pages_and_one_prefix_alone() {
        let mut core = SpeakerCore::new("192.0.2.254".parse().unwrap(), 1, Arc::default());
        let prefixes: BTreeSet<IpNet> = (0..PAGE as u32 + 100)
            .map(|i| IpNet::V4(ipnet::Ipv4Net::new((0xc612_0000 + (i << 4)).into(), 28).unwrap()))
            .chain(["2001:db8::/48".parse().unwrap(), "2001:db8:1::/48".parse().unwrap()])
            .collect();
        for p in &prefixes {
            core.handle(Input::Command(SpeakerCommand::Originate(*p, PathAttrs::default())));
        }
        let (mut seen, mut after, mut pages) = (Vec::new(), None, 0);
        loop {
            let page = core.routes(None, after);
            assert!(page.routes.len() <= PAGE);
            assert!(page.routes.iter().all(|r| r.paths.len() == 1 && r.paths[0].0.is_none()), "our own paths");
            seen.extend(page.routes.iter().map(|r| r.prefix));
            pages += 1;
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(pages, 2);
        assert_eq!(seen.len(), prefixes.len(), "each once");
        assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), prefixes);
        let one: IpNet = "198.18.0.16/28".parse().unwrap();
        let page = core.routes(Some(one), None);
        assert_eq!((page.routes.len(), page.routes[0].prefix, page.next), (1, one, None));
        assert!(core.routes(Some("198.51.100.0/24".parse().unwrap()), None).routes.is_empty());
    }
}
