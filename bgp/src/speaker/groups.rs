//! Update groups (FRR's term): the up peers that get identical UPDATEs —
//! same export rules and policy, same negotiated send context — so each
//! change is exported and encoded once per group.
//!
//! A peer joins its group when it comes up (or its export policy changes)
//! and leaves it when it goes down: a full table from many senders is tens
//! of thousands of small UPDATEs, and a reflector's clients arrive by the
//! thousand, so nothing looks at every peer's terms per UPDATE or per arrival.

use std::collections::HashMap;

use super::core::Session;
use crate::packet::{Context, Family};
use crate::rib::export::{ExportPeer, withholds_everything};
use crate::rib::policy::Policy;

/// What makes two peers' UPDATEs identical.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct GroupKey {
    export: ExportPeer,
    policy: Option<Policy>,
    /// The send context the group's UPDATEs are encoded with.
    pub(super) tx: Context,
    families: Vec<Family>,
}

/// The up peers to send changes to, grouped; kept up to date as peers
/// come and go (a reflector's thousands of clients each join once, not a
/// plan of every peer per arrival).
#[derive(Debug, Default, Clone)]
pub(super) struct UpdateGroups {
    /// Groups with their members.
    pub(super) groups: Vec<(GroupKey, Vec<String>)>,
    index: HashMap<GroupKey, usize>,
    /// Each member's group (a peer joining is not looked for among every
    /// member of every group: a reflector's thousands of clients).
    member_of: HashMap<String, usize>,
}

impl UpdateGroups {
    /// An up peer joins the group of peers with its terms. A peer that may
    /// be sent nothing (RFC 8212, or a policy that rejects everything) is
    /// left out: it was never sent anything (a policy change resends the table).
    pub(super) fn join(&mut self, name: &str, session: &Session) {
        self.leave(name);
        let neighbor = &session.neighbor;
        if withholds_everything(&neighbor.export, neighbor.export_policy.as_ref()).is_some() {
            return;
        }
        // Only an up peer (its terms known) is in a group.
        let Some(negotiated) = &session.negotiated else { return };
        let (tx, families) = (negotiated.tx(), negotiated.families.clone());
        let key = GroupKey { export: neighbor.export.clone(), policy: neighbor.export_policy.clone(), tx, families };
        let g = match self.index.get(&key) {
            Some(&g) => g,
            None => {
                self.index.insert(key.clone(), self.groups.len());
                self.groups.push((key, Vec::new()));
                self.groups.len() - 1
            }
        };
        self.groups[g].1.push(name.to_string());
        self.member_of.insert(name.to_string(), g);
    }

    /// The group `name` is a member of.
    pub(super) fn group_of(&self, name: &str) -> Option<&GroupKey> {
        self.member_of.get(name).map(|&g| &self.groups[g].0)
    }

    /// Whether a group with these terms has members.
    pub(super) fn has(&self, key: &GroupKey) -> bool {
        self.index.contains_key(key)
    }

    /// A peer that went down (or whose terms change) leaves its group; a
    /// group left empty goes (dynamic neighbours of many kinds come and go).
    pub(super) fn leave(&mut self, name: &str) {
        let Some(g) = self.member_of.remove(name) else { return };
        let members = &mut self.groups[g].1;
        members.retain(|m| m != name);
        if !members.is_empty() {
            return;
        }
        let (key, _) = self.groups.swap_remove(g);
        self.index.remove(&key);
        if let Some((moved, members)) = self.groups.get(g) {
            self.index.insert(moved.clone(), g);
            for m in members {
                self.member_of.insert(m.clone(), g);
            }
        }
    }
}
