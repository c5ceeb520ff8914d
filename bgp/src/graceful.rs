//! Graceful restart (RFC 4724) state the speaker keeps: the stale routes of
//! a restarting peer (receiving side, §4.2) and the route-selection
//! deferral of a restarting speaker (§4.1). Plain data and rules; the
//! speaker task does the I/O and the timers.

use std::collections::HashSet;

use ipnet::IpNet;

use crate::packet::{Family, GracefulRestart};

/// Routes of a gracefully restarting peer, kept until it refreshes them.
#[derive(Debug, Default)]
pub(crate) struct Stale {
    /// Its prefixes not re-announced yet.
    pub prefixes: HashSet<IpNet>,
    /// Tells an old timer from the current one.
    pub epoch: u64,
}

/// RFC 4724 §4.2: whether a restarted peer kept its IPv4 unicast forwarding
/// state (the F bit of its new OPEN). When not, its stale routes must go at
/// once rather than at its End-of-RIB.
pub(crate) fn forwarding_preserved(gr: Option<&GracefulRestart>) -> bool {
    gr.is_some_and(|gr| gr.families.iter().any(|f| f.family == Family::IPV4_UNICAST && f.forwarding_preserved))
}

/// One configured peer, as the deferral and convergence see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerState<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its session is Established.
    pub up: bool,
    /// It advertised the graceful restart capability.
    pub graceful: bool,
}

/// Whether every one of `peers` has given us its table: it is up, and if
/// it speaks graceful restart its End-of-RIB arrived (`end_of_rib`); one
/// that does not is not waited for. RFC 4724 §4.1 ends the route-selection
/// deferral of a restarted speaker on this, or on a timer; the node takes
/// BGP as converged on it.
pub(crate) fn tables_in<'a>(mut peers: impl Iterator<Item = PeerState<'a>>, end_of_rib: &HashSet<String>) -> bool {
    peers.all(|p| p.up && (!p.graceful || end_of_rib.contains(p.name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::GracefulRestartFamily;

    fn gr(forwarding: bool) -> GracefulRestart {
        GracefulRestart {
            restarted: true,
            notification: false,
            restart_time: 120,
            families: vec![GracefulRestartFamily { family: Family::IPV4_UNICAST, forwarding_preserved: forwarding }],
        }
    }

    #[test]
    fn forwarding_is_preserved_only_with_the_f_bit_for_ipv4_unicast() {
        assert!(forwarding_preserved(Some(&gr(true))));
        assert!(!forwarding_preserved(Some(&gr(false))));
        assert!(!forwarding_preserved(None), "no capability in the new OPEN");
        let mut v6 = gr(true);
        v6.families[0].family = Family::IPV6_UNICAST;
        assert!(!forwarding_preserved(Some(&v6)));
    }

    #[test]
    fn tables_are_in_when_every_peer_is_up_and_every_graceful_peer_sent_end_of_rib() {
        let p = |name, up, graceful| PeerState { name, up, graceful };
        let mut eor = HashSet::new();
        assert!(!tables_in([p("a", true, true), p("b", true, false)].into_iter(), &eor), "a has not sent End-of-RIB");
        eor.insert("a".to_string());
        assert!(tables_in([p("a", true, true), p("b", true, false)].into_iter(), &eor), "b has no GR: not waited for");
        assert!(
            !tables_in([p("a", true, true), p("c", false, true)].into_iter(), &eor),
            "c is down: wait (the timer ends it)"
        );
        assert!(tables_in(std::iter::empty(), &eor), "no peers: nothing to wait for");
    }
}
