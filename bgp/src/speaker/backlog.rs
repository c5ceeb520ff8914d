//! What a peer is still owed while its outbox refuses pushes (or until
//! it is drained): not the UPDATEs themselves but which prefixes changed,
//! and the rest of any table being sent, so at most one entry per prefix
//! is held whatever the rate of change, and what finally goes out is the
//! state of the Loc-RIB at that moment (BIRD's buckets and FRR's
//! update-group queues coalesce the same way). Messages that must follow
//! what came before them (End-of-RIB, refresh markers) keep their place.

use std::collections::{BTreeSet, VecDeque};

use ipnet::IpNet;

use crate::packet::{Message, Update};
use crate::rib::table::Walk;

/// One thing owed, in order.
#[derive(Debug)]
pub(super) enum Owed {
    /// These prefixes' current state (sent in prefix order): the exported best path, or a
    /// withdrawal when there is none to export.
    Prefixes(BTreeSet<IpNet>),
    /// Every best path after `after` (in the Loc-RIB's walk): the rest of
    /// a table; with `withdraw_rest`, withdrawals for those it may no
    /// longer have.
    Table {
        /// Where the table stopped last.
        after: Option<Walk>,
        /// Withdraw what the export no longer allows.
        withdraw_rest: bool,
    },
    /// A message that must come after what is before it.
    Message(Message),
}

/// What one peer is owed, oldest first.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    owed: VecDeque<Owed>,
}

impl Backlog {
    /// Nothing is owed.
    pub(super) fn is_empty(&self) -> bool {
        self.owed.is_empty()
    }

    /// These prefixes changed (kept once each, after what is owed already).
    pub(super) fn prefixes(&mut self, prefixes: impl IntoIterator<Item = IpNet>) {
        if let Some(Owed::Prefixes(set)) = self.owed.back_mut() {
            set.extend(prefixes);
            return;
        }
        let set: BTreeSet<IpNet> = prefixes.into_iter().collect();
        if !set.is_empty() {
            self.owed.push_back(Owed::Prefixes(set));
        }
    }

    /// These prefixes are due before anything else (the outbox refused
    /// them, or a shared table went without them).
    pub(super) fn requeue(&mut self, prefixes: Vec<IpNet>) {
        if prefixes.is_empty() {
            return;
        }
        match self.owed.front_mut() {
            Some(Owed::Prefixes(set)) => set.extend(prefixes),
            _ => self.owed.push_front(Owed::Prefixes(prefixes.into_iter().collect())),
        }
    }

    /// Whether (the rest of) a table is owed already.
    pub(super) fn owes_table(&self) -> bool {
        self.owed.iter().any(|o| matches!(o, Owed::Table { .. }))
    }

    /// The whole table is owed.
    pub(super) fn table(&mut self, withdraw_rest: bool) {
        self.owed.push_back(Owed::Table { after: None, withdraw_rest });
    }

    /// Frames the first table owed that has not begun with `before` and
    /// `after` (a refresh's BoRR and EoRR), unless `before` is owed ahead
    /// of it already; whether there is such a table.
    pub(super) fn frame_unbegun_table(&mut self, before: Message, after: Message) -> bool {
        let Some(at) = self.owed.iter().position(|o| matches!(o, Owed::Table { after: None, .. })) else {
            return false;
        };
        if !self.owed.iter().take(at).any(|o| matches!(o, Owed::Message(m) if *m == before)) {
            self.owed.insert(at + 1, Owed::Message(after));
            self.owed.insert(at, Owed::Message(before));
        }
        true
    }

    /// A message is owed after everything before it.
    pub(super) fn message(&mut self, message: Message) {
        self.owed.push_back(Owed::Message(message));
    }

    /// The oldest thing owed.
    pub(super) fn front(&self) -> Option<&Owed> {
        self.owed.front()
    }

    /// The oldest thing owed, to work on.
    pub(super) fn front_mut(&mut self) -> Option<&mut Owed> {
        self.owed.front_mut()
    }

    /// The oldest thing owed is paid.
    pub(super) fn pop(&mut self) {
        self.owed.pop_front();
    }
}

/// Every prefix an UPDATE announces or withdraws.
pub(super) fn prefixes_of(update: &Update) -> impl Iterator<Item = IpNet> + '_ {
    let v4 = update.withdrawn.iter().chain(&update.nlri).map(|n| IpNet::V4(n.prefix));
    let reach = update.mp_reach.iter().flat_map(|r| r.nlri.iter().map(|n| n.prefix));
    let unreach = update.mp_unreach.iter().flat_map(|u| u.withdrawn.iter().map(|n| n.prefix));
    v4.chain(reach).chain(unreach)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Family, Nlri};

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn changes_to_one_prefix_are_owed_once_and_messages_keep_their_place() {
        let mut b = Backlog::default();
        assert!(b.is_empty());
        b.prefixes([net("198.18.0.0/26"), net("198.18.0.64/26")]);
        b.prefixes([net("198.18.0.0/26")]);
        b.message(Message::Update(Update::end_of_rib(Family::IPV4_UNICAST)));
        b.prefixes([net("198.18.1.0/26")]);
        match b.front_mut() {
            Some(Owed::Prefixes(set)) => assert_eq!(set.len(), 2),
            other => panic!("{other:?}"),
        }
        b.pop();
        assert!(matches!(b.front_mut(), Some(Owed::Message(_))));
        b.requeue(vec![net("198.18.0.0/26")]);
        match b.front_mut() {
            Some(Owed::Prefixes(set)) => assert!(set.contains(&net("198.18.0.0/26"))),
            other => panic!("{other:?}"),
        }
        b.pop();
        b.pop();
        assert!(matches!(b.front_mut(), Some(Owed::Prefixes(s)) if s.contains(&net("198.18.1.0/26"))));
        b.pop();
        assert!(b.is_empty());
        b.prefixes(Vec::new());
        assert!(b.is_empty(), "no empty entries");
    }

    #[test]
    fn an_update_names_every_prefix_it_touches() {
        let mut u = Update::withdraw(vec![Nlri::new("198.18.0.0/24".parse().unwrap())]);
        u.nlri.push(Nlri::new("198.18.1.0/24".parse().unwrap()));
        u.mp_unreach = Some(crate::packet::MpUnreach {
            family: Family::IPV6_UNICAST,
            withdrawn: vec![Nlri::new(net("2001:db8:100::/64"))],
        });
        let all: Vec<IpNet> = prefixes_of(&u).collect();
        assert_eq!(all, vec![net("198.18.0.0/24"), net("198.18.1.0/24"), net("2001:db8:100::/64")]);
    }
}
