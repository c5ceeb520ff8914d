//! Update groups (FRR's term): the up peers that get identical UPDATEs —
//! same export rules and policy, same negotiated send context — so each
//! change is exported and encoded once per group.
//!
//! The grouping is planned once and kept until a peer goes up or down or a
//! neighbour's configuration changes; a full table from many senders is
//! tens of thousands of small UPDATEs, and looking at every peer's terms
//! for each of them was most of the work.

use std::collections::{HashMap, HashSet};

use super::Neighbor;
use crate::packet::{Context, Family};
use crate::rib::export::ExportPeer;
use crate::rib::policy::Policy;
use crate::session::peer::PeerHandle;

/// What makes two peers' UPDATEs identical.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct GroupKey {
    export: ExportPeer,
    policy: Option<Policy>,
    /// The send context the group's UPDATEs are encoded with.
    pub(super) tx: Context,
    families: Vec<Family>,
}

/// The up peers to send changes to, grouped.
#[derive(Debug, Default)]
pub(super) struct UpdateGroups {
    /// Groups with their members, by name (in name order).
    pub(super) groups: Vec<(GroupKey, Vec<String>)>,
    /// Up peers whose negotiated terms are not known yet: each on its own.
    pub(super) ungrouped: Vec<String>,
}

impl UpdateGroups {
    /// Groups the `up` peers among `neighbors`. A peer whose export policy
    /// rejects everything is left out: it was never sent anything (a policy
    /// change resends the table).
    pub(super) fn plan(neighbors: &HashMap<String, (Neighbor, PeerHandle)>, up: &HashSet<String>) -> UpdateGroups {
        let mut names: Vec<&String> = up.iter().collect();
        names.sort();
        let mut plan = UpdateGroups::default();
        let mut index: HashMap<GroupKey, usize> = HashMap::new();
        for name in names {
            let Some((neighbor, handle)) = neighbors.get(name) else { continue };
            if neighbor.export_policy.as_ref().is_some_and(Policy::rejects_everything) {
                continue;
            }
            let terms = handle.status.borrow().negotiated.as_ref().map(|n| (n.tx(), n.families.clone()));
            let Some((tx, families)) = terms else {
                plan.ungrouped.push(name.clone());
                continue;
            };
            let key =
                GroupKey { export: neighbor.export.clone(), policy: neighbor.export_policy.clone(), tx, families };
            match index.get(&key) {
                Some(&i) => plan.groups[i].1.push(name.clone()),
                None => {
                    index.insert(key.clone(), plan.groups.len());
                    plan.groups.push((key, vec![name.clone()]));
                }
            }
        }
        plan
    }
}
