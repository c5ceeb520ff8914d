//! The desired-state cell's unit tests.

use super::*;
use crate::route::NextHop;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn via(gw: &str) -> Target<String> {
    Target::Gateways(smallvec::smallvec![NextHop { gateway: gw.parse().unwrap(), device: None, onlink: false }])
}

/// One next hop learned (no tunnel or VXLAN pool: the route is `via(gw)`).
fn hop(gw: &str) -> Option<LearnedHops> {
    Some(smallvec::smallvec![gw.parse().unwrap()])
}

/// A cell desiring one route, 198.18.0.64/26 via 192.0.2.2.
fn one_route() -> Arc<DesiredCell> {
    let cell = DesiredCell::new(Desired::default());
    cell.edit(|e| e.learned(net("198.18.0.64/26"), hop("192.0.2.2")));
    cell
}

/// An empty desired state whose first full pass is done.
fn settled() -> Arc<DesiredCell> {
    let cell = DesiredCell::new(Desired::default());
    full(&cell);
    cell
}

/// A full pass taken as the reconciler takes it: how many routes it plans from.
fn full(cell: &DesiredCell) -> usize {
    assert!(matches!(cell.take(false), Some(Work::Full)), "a full pass");
    planned_count(cell)
}

/// How many routes a full pass's plan starts from.
fn planned_count(cell: &DesiredCell) -> usize {
    let seen = std::cell::Cell::new(usize::MAX);
    cell.planned(&|v| {
        seen.set(v.routes().count());
        Plan::default()
    });
    seen.get()
}

fn changes(cell: &DesiredCell) -> Vec<Changed> {
    match cell.take(false) {
        Some(Work::Routes(c, _)) => c,
        Some(Work::Full) => panic!("a full pass"),
        None => Vec::new(),
    }
}

#[test]
fn one_changed_route_is_one_change_with_what_it_replaces() {
    let mut learned = Learned::default();
    for i in 0..20_000u32 {
        let block = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0)) + 64 * i);
        learned.insert(IpNet::new(block.into(), 26).unwrap(), hop("192.0.2.2").unwrap());
    }
    let cell = DesiredCell::new(Desired::default());
    cell.edit(|e| e.replace_learned(learned));
    assert_eq!(full(&cell), 20_000, "the first pass is full");
    assert!(cell.take(false).is_none(), "nothing changed since");
    let block = net("198.18.0.64/26");
    cell.edit(|e| e.learned(block, hop("192.0.2.3")));
    assert_eq!(changes(&cell), vec![(block, Some(via("192.0.2.3")), Some(via("192.0.2.2")))]);
    // Setting what is there already is no change; a change and its undo leave a no-op to skip.
    cell.edit(|e| e.learned(block, hop("192.0.2.3")));
    assert!(changes(&cell).is_empty());
    cell.edit(|e| {
        e.learned(block, hop("192.0.2.4"));
        e.learned(block, hop("192.0.2.3"));
    });
    assert_eq!(changes(&cell), vec![(block, Some(via("192.0.2.3")), Some(via("192.0.2.3")))]);
    // Removing reports what was there (a delete needs its kind); removing nothing is nothing.
    cell.edit(|e| e.learned(block, None));
    cell.edit(|e| e.learned(net("203.0.113.0/24"), None));
    assert_eq!(changes(&cell), vec![(block, None, Some(via("192.0.2.3")))]);
}

#[test]
fn a_whole_new_state_marks_only_what_differs_and_interfaces_make_a_full_pass() {
    let cell = settled();
    let mut d = Desired::default();
    d.local.insert(net("198.18.0.0/26"), Target::Blackhole);
    d.local.insert(net("198.18.0.64/26"), via("192.0.2.2"));
    cell.edit(|e| e.replace(d.clone()));
    assert_eq!(changes(&cell).len(), 2);
    d.local.remove(&net("198.18.0.0/26"));
    d.local.insert(net("198.18.0.128/26"), via("192.0.2.3"));
    cell.edit(|e| e.replace(d.clone()));
    assert_eq!(
        changes(&cell),
        vec![
            (net("198.18.0.0/26"), None, Some(Target::Blackhole)),
            (net("198.18.0.128/26"), Some(via("192.0.2.3")), None)
        ]
    );
    d.interfaces.insert("tortie0".into());
    cell.edit(|e| e.replace(d));
    full(&cell);
}

#[test]
fn a_full_pass_plans_from_the_state_as_it_stands_and_supersedes_what_was_pending() {
    let cell = one_route();
    full(&cell);
    cell.edit(|e| e.learned(net("198.18.0.0/26"), hop("192.0.2.3")));
    assert!(matches!(cell.take(true), Some(Work::Full)));
    // A change between the take and the plan is in the plan.
    cell.edit(|e| e.learned(net("198.18.0.128/26"), hop("192.0.2.4")));
    let seen = planned_count(&cell);
    assert_eq!(seen, 3);
    assert!(changes(&cell).is_empty(), "nothing left pending: the full pass covered both");
}

#[test]
fn learned_routes_are_made_from_their_next_hops_and_local_ones_win() {
    use tortie_store::resources::{EncapMode, IpPoolSpec};
    let cell = settled();
    let mut d = Desired::default();
    d.local.insert(net("198.18.0.0/26"), Target::Blackhole);
    cell.edit(|e| e.replace(d.clone()));
    assert_eq!(changes(&cell), vec![(net("198.18.0.0/26"), Some(Target::Blackhole), None)]);
    // Our own block learned back changes nothing: local knowledge wins.
    cell.edit(|e| e.learned(net("198.18.0.0/26"), hop("192.0.2.2")));
    assert!(changes(&cell).is_empty());
    cell.edit(|e| e.learned(net("198.18.1.0/26"), hop("192.0.2.2")));
    assert_eq!(changes(&cell), vec![(net("198.18.1.0/26"), Some(via("192.0.2.2")), None)]);
    // The tunnel comes up for an IPIP pool: the learned route moves onto
    // it without being learned again.
    let pool =
        IpPoolSpec { cidr: Some(net("198.18.0.0/16")), ipip_mode: Some(EncapMode::Always), ..Default::default() };
    d.remote = Remote {
        node_address: Some(net("192.0.2.1/24")),
        pools: vec![pool],
        tunnel: Some("tunl0".into()),
        ipip_nodes: ["192.0.2.2".parse().unwrap()].into(),
        ..Remote::default()
    };
    cell.edit(|e| e.replace(d.clone()));
    let gateway = "192.0.2.2".parse().unwrap();
    let tunnel = Target::Gateways(smallvec::smallvec![NextHop { gateway, device: Some("tunl0".into()), onlink: true }]);
    assert_eq!(changes(&cell), vec![(net("198.18.1.0/26"), Some(tunnel.clone()), Some(via("192.0.2.2")))]);
    // The local block goes: what was learned for it takes its place.
    d.local.clear();
    cell.edit(|e| e.replace(d));
    assert_eq!(changes(&cell), vec![(net("198.18.0.0/26"), Some(tunnel), Some(Target::Blackhole))]);
    let seen = planned_count(&cell);
    assert_eq!(seen, 2);
}

#[test]
fn a_table_of_changes_is_taken_in_chunks_and_none_is_lost() {
    let cell = settled();
    let blocks: Vec<IpNet> = (0..10_000u32)
        .map(|i| IpNet::new(std::net::Ipv4Addr::from(0xc612_0000 + 64 * i).into(), 26).unwrap())
        .collect();
    cell.edit(|e| blocks.iter().for_each(|b| e.learned(*b, hop("192.0.2.2"))));
    let sizes: Vec<usize> = std::iter::from_fn(|| Some(changes(&cell).len()).filter(|n| *n > 0)).collect();
    assert_eq!(sizes, [CHUNK, CHUNK, 10_000 - 2 * CHUNK]);
}

#[test]
fn a_route_someone_else_deleted_is_written_again() {
    let cell = one_route();
    full(&cell);
    cell.lost([net("198.18.0.64/26"), net("203.0.113.0/24")]);
    assert_eq!(
        changes(&cell),
        vec![(net("198.18.0.64/26"), Some(via("192.0.2.2")), None), (net("203.0.113.0/24"), None, None)]
    );
}

#[test]
fn a_loss_reported_while_a_change_is_pending_is_settled_by_a_full_pass() {
    let cell = one_route();
    full(&cell);
    // The route goes (a delete is pending), then the late echo of an
    // earlier delete of ours arrives: the pending delete must not be lost.
    cell.edit(|e| e.learned(net("198.18.0.64/26"), None));
    cell.lost([net("198.18.0.64/26")]);
    assert_eq!(full(&cell), 0);
}

#[test]
fn relearning_ends_with_a_full_pass_only_when_routes_were_kept() {
    let relearning = Desired { keep_learned: true, ..Desired::default() };
    // A node that started with nothing of ours in the kernel: BGP's
    // convergence has nothing left to judge.
    let cell = DesiredCell::new(relearning.clone());
    full(&cell);
    cell.edit(|e| e.replace(Desired::default()));
    assert!(cell.take(false).is_none(), "no full pass");
    // A full pass kept a route of ours that is not desired: convergence judges it.
    let cell = DesiredCell::new(relearning.clone());
    assert!(matches!(cell.take(false), Some(Work::Full)));
    cell.planned(&|_| Plan { kept: 1, ..Plan::default() });
    cell.edit(|e| e.replace(Desired::default()));
    full(&cell);
    // A pass of changes that kept one reports it after convergence: a full pass at once.
    let cell = DesiredCell::new(relearning);
    full(&cell);
    cell.edit(|e| e.replace(Desired::default()));
    cell.kept();
    full(&cell);
}
