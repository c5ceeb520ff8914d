//! Replays of work the core does a chunk per batch: a peer's paths going
//! and the advertised counts.

use std::net::Ipv4Addr;

use super::Replay;

impl Replay {
    /// One input line, which must be a valid one: its outputs.
    fn must(&mut self, line: &str) -> Vec<String> {
        self.step(line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }
}

/// Peers a and b up (`up` adds its flags), a's `prefixes` announced with
/// `attrs` and sent: a table whose peer then goes.
fn a_table_from_a(up: &str, prefixes: impl Iterator<Item = String>, attrs: &str) -> Replay {
    let mut replay = Replay::new();
    for line in ["peer a 65001 192.0.2.1 policy", "peer b 65002 192.0.2.2 policy"] {
        replay.must(line);
    }
    replay.must(&format!("up a {up}"));
    replay.must(&format!("up b {up}"));
    replay.must(&format!("update a + {} {attrs}", prefixes.collect::<Vec<_>>().join(" ")));
    replay.must("batch");
    replay
}

/// A batch of more best-path changes than one event carries reaches felix
/// as several events, in the batch's order, none over `BEST_CHUNK` routes.
#[test]
fn a_large_batch_reaches_felix_in_chunks_in_order() {
    use super::super::SpeakerEvent;
    use super::super::core::{Input, Output};
    use super::super::send::BEST_CHUNK;
    let n = 2 * BEST_CHUNK + 7;
    let prefix = |i: usize| format!("{}/32", Ipv4Addr::from(0xc612_0000 + i as u32));
    let mut replay = Replay::new();
    replay.must("peer a 65001 192.0.2.1 policy");
    replay.must("up a");
    replay.must(&format!("update a + {} nh 192.0.2.1 path 65001", (0..n).map(prefix).collect::<Vec<_>>().join(" ")));
    let outputs = replay.core.handle(Input::EndOfBatch);
    let chunks: Vec<_> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(SpeakerEvent::Best(routes)) => Some(routes),
            _ => None,
        })
        .collect();
    assert_eq!(chunks.iter().map(|c| c.len()).collect::<Vec<_>>(), [BEST_CHUNK, BEST_CHUNK, 7]);
    let order: Vec<String> = chunks.iter().flat_map(|c| c.iter().map(|(p, _)| p.to_string())).collect();
    assert_eq!(order, (0..n).map(prefix).collect::<Vec<_>>());
}

/// A peer with more paths than two chunks goes down: the first chunk goes
/// with the batch under way, the next at each end of a batch. Its next
/// session waits for the last chunk, so its new routes are not taken for
/// the old session's.
#[test]
fn a_peer_going_down_is_removed_a_chunk_per_batch() {
    use super::super::core::PEER_DOWN_CHUNK;
    let n = 2 * PEER_DOWN_CHUNK + 1000;
    let prefix = |i: usize| format!("{}/32", Ipv4Addr::from(0xc612_0000 + i as u32));
    let mut replay = a_table_from_a("", (0..n).map(prefix), "nh 192.0.2.1 path 65001");
    let withdrawn = |out: &[String]| out.iter().filter(|l| l.starts_with("best ") && l.ends_with(" via -")).count();
    assert_eq!(withdrawn(&replay.must("down a")), 0, "the first chunk waits for the batch's end");
    assert_eq!(
        withdrawn(&replay.must("batch")),
        2 * PEER_DOWN_CHUNK,
        "the first chunk, and the next at the batch's end"
    );
    assert!(replay.core.dropping());
    // The peer comes back before its last chunk went: that chunk goes first.
    let again = prefix(n - 1);
    replay.must("up a");
    assert!(!replay.core.dropping());
    replay.must(&format!("update a + {again} nh 192.0.2.1 path 65001"));
    let out = replay.must("batch");
    assert_eq!(withdrawn(&out), 999, "the rest of the old session's, but the one sent again");
    assert_eq!(replay.core.rib.paths_from(&super::super::core::key("a")), 1);
    assert!(out.contains(&format!("best {again} via 192.0.2.1")), "the new session's route stays");
}

/// A walk resumed among IPv6 prefixes may miss some (`v6_index`): here the
/// index packs itself at the second chunk's last withdrawal, and another
/// peer announces that very prefix (so it goes to the index's end) before
/// the third chunk. The rest of the peer's paths must go all the same.
#[test]
fn a_peer_going_down_loses_every_ipv6_path_though_its_walk_is_cut_short() {
    use super::super::core::PEER_DOWN_CHUNK;
    // Packing comes when under a quarter of the records used is held:
    // exactly at the 2 * PEER_DOWN_CHUNK-th withdrawal.
    let n = 2 * PEER_DOWN_CHUNK * 4 / 3;
    let prefix = |i: usize| format!("2001:db8:{:x}:{:x}::/64", i >> 16, i & 0xffff);
    let mut replay = a_table_from_a("v6", (0..n).map(prefix), "nh6 2001:db8::1 path 65001");
    replay.must("down a");
    replay.must("batch");
    let left = |replay: &Replay| replay.core.rib.paths_from(&super::super::core::key("a"));
    assert_eq!(left(&replay), n - 2 * PEER_DOWN_CHUNK, "two chunks gone");
    replay.must(&format!("update b + {} nh6 2001:db8::2 path 65002", prefix(2 * PEER_DOWN_CHUNK - 1)));
    for _ in 0..3 {
        replay.must("batch");
    }
    assert_eq!((left(&replay), replay.core.dropping()), (0, false));
}

/// A periodic count (the metrics', the node's summary's) of a table larger
/// than a chunk is made a chunk per batch, between other inputs, and
/// replaces the last one when done; an exact one (`tortie status`) is made
/// at once. Members of one update group are counted in one walk, each
/// less the paths it sent.
#[test]
fn a_periodic_count_goes_a_chunk_per_batch_and_an_exact_one_at_once() {
    // Two update groups: a's (with c) and b's.
    let chunk = super::super::counts::chunk_size(2);
    let n = 2 * chunk + 10;
    let prefix = |i: usize| format!("{}/32", Ipv4Addr::from(0xc612_0000 + i as u32));
    // (a path that a does not put its own AS first in: c, of the same AS, may have it.)
    let mut replay = a_table_from_a("", (0..n).map(prefix), "nh 192.0.2.1 path 65009");
    // c is in a's update group (same terms): sent a's paths, as b is.
    replay.must("peer c 65001 192.0.2.3 policy");
    replay.must("up c");
    assert_eq!(replay.must("groups"), ["groups [1, 2]"]);
    let advertised = |replay: &mut Replay, ask: &str| -> Vec<usize> {
        let counts = replay.must(ask);
        counts.iter().map(|l| l.split(' ').nth(4).and_then(|n| n.parse().ok()).unwrap()).collect()
    };
    assert_eq!(advertised(&mut replay, "counts periodic"), [0, 0, 0], "the count has only begun");
    for _ in 0..2 {
        assert!(replay.core.counting());
        replay.must("batch");
    }
    assert!(replay.core.counting(), "a chunk of a table of two and a bit");
    replay.must("batch");
    assert!(!replay.core.counting());
    assert_eq!(advertised(&mut replay, "counts periodic"), [0, n, n], "a is not sent its own paths");
    // A periodic asker takes the count until it is 60 s old; an exact one counts now.
    replay.must(&format!("update a - {}", prefix(0)));
    replay.must("batch");
    assert_eq!(advertised(&mut replay, "counts periodic"), [0, n, n]);
    assert!(!replay.core.counting());
    assert_eq!(advertised(&mut replay, "counts"), [0, n - 1, n - 1]);
    assert!(!replay.core.counting());
}

/// A count resumed among IPv6 prefixes after the index was packed and the
/// prefix it stopped at went would meet prefixes again: it starts over.
#[test]
fn a_count_does_not_meet_ipv6_prefixes_twice_when_the_index_is_packed_under_it() {
    // One update group (d's); packing comes past the index's first chunk of records (4,096).
    let chunk = super::super::counts::chunk_size(1);
    let n = 8 * chunk;
    let prefix = |i: usize| format!("2001:db8:{:x}:{:x}::/64", i >> 16, i & 0xffff);
    let mut replay = Replay::new();
    // d, internal, is sent a's IPv6 paths with their own next hop.
    for line in ["peer a 65001 192.0.2.1 policy", "peer d 65000 192.0.2.4", "up a v6", "up d v6"] {
        replay.must(line);
    }
    replay.must(&format!("update a + {} nh6 2001:db8::1 path 65001", (0..n).map(prefix).collect::<Vec<_>>().join(" ")));
    replay.must("batch");
    replay.must("counts periodic");
    replay.must("batch");
    assert!(replay.core.counting(), "a chunk counted, the walk stopped at prefix {}", chunk - 1);
    // Under a quarter of the records left: the index is packed, and the
    // prefix the walk stopped at is gone.
    let kept = chunk - 23;
    replay.must(&format!("update a - {}", (kept..n).map(prefix).collect::<Vec<_>>().join(" ")));
    replay.must("batch");
    while replay.core.counting() {
        replay.must("batch");
    }
    let counts = replay.must("counts periodic");
    assert_eq!(counts[1], format!("d received 0 advertised {kept} treated-as-withdraw 0 discarded 0"));
}

/// Two peers of one update group come up together, owed a table larger
/// than an outbox takes at once: no shared table (it is given up a chunk
/// into being larger); each gets its own, up to the high-water mark, and
/// is owed the rest.
#[test]
fn a_table_larger_than_an_outbox_takes_is_not_shared() {
    use std::sync::atomic::Ordering::Relaxed;

    use super::super::core::Input;
    use crate::session::outbox::HIGH_WATER;
    let mut replay = Replay::new();
    for line in ["peer a 65001 192.0.2.1 policy", "peer b 65000 192.0.2.2", "peer c 65000 192.0.2.3", "up a"] {
        replay.must(line);
    }
    // Every prefix its own attribute set: an UPDATE of ~50 octets each.
    let n = HIGH_WATER / 40;
    for i in 0..n {
        let prefix = Ipv4Addr::from(0xc612_0000 + i as u32);
        replay.must(&format!("update a + {prefix}/32 nh 192.0.2.1 path 65001 med {i}"));
    }
    replay.core.handle(Input::EndOfBatch);
    for name in ["b", "c"] {
        let up = replay.up(&[name]).unwrap();
        replay.core.handle(up);
    }
    replay.core.handle(Input::EndOfBatch);
    assert_eq!(replay.core.stats.tables_shared.load(Relaxed), 0);
    for name in ["b", "c"] {
        let queued = replay.core.neighbors[name].outbox.queued_bytes();
        assert!(queued >= HIGH_WATER / 2, "{name}: {queued} octets queued, its own table up to the mark");
        assert!(replay.core.backlogs.get(name).is_some_and(|b| !b.is_empty()), "{name} is owed the rest");
    }
}
