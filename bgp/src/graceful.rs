//! Graceful restart (RFC 4724) and long-lived graceful restart (RFC 9494)
//! state the speaker keeps: the stale routes of a restarting peer
//! (receiving side, RFC 4724 §4.2, RFC 9494 §4.2) and the route-selection
//! deferral of a restarting speaker (RFC 4724 §4.1). Plain data and rules;
//! the speaker task does the I/O and the timers.

use std::collections::HashSet;
use std::time::Duration;

use ipnet::IpNet;

use crate::packet::{Family, LongLivedFamily};
use crate::session::negotiate::{LocalConfig, Negotiated};

/// How long a peer's routes outlive its session: the graceful-restart time
/// it advertised, then the long-lived stale time both sides agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// RFC 4724 §4.2: the peer's restart time.
    pub restart: Duration,
    /// RFC 9494 §4.2: the long-lived stale period that follows (zero: none).
    pub long_lived: Duration,
}

/// What a dropped session leaves of the peer's routes: `None` when they go
/// at once. Graceful restart covers a connection that dropped without a
/// NOTIFICATION (RFC 4724 §4.2); long-lived graceful restart applies when
/// both sides advertised it for IPv4 unicast, for the smaller of the two
/// stale times — ours is the longest this speaker keeps anything (RFC 9494
/// §4.2 lets the receiver cap it).
pub(crate) fn retention(local: &LocalConfig, negotiated: &Negotiated) -> Option<Retention> {
    let gr = negotiated.peer_graceful_restart.as_ref()?;
    let stale =
        |families: &[LongLivedFamily]| families.iter().find(|f| f.family == Family::IPV4_UNICAST).map(|f| f.stale_time);
    let long_lived = match (stale(&local.long_lived), stale(&negotiated.peer_long_lived)) {
        (Some(ours), Some(theirs)) => ours.min(theirs),
        _ => 0,
    };
    let retention = Retention {
        restart: Duration::from_secs(gr.restart_time.into()),
        long_lived: Duration::from_secs(long_lived.into()),
    };
    (!retention.restart.is_zero() || !retention.long_lived.is_zero()).then_some(retention)
}

/// The phase of a peer's stale routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Phase {
    /// RFC 4724 §4.2: within the restart time; `long_lived` may follow.
    #[default]
    Restart,
    /// RFC 9494 §4.2: past it, kept as least preferred with LLGR_STALE.
    LongLived,
}

/// Routes of a gracefully restarting peer, kept until it refreshes them.
#[derive(Debug, Default)]
pub(crate) struct Stale {
    /// Its prefixes not re-announced yet.
    pub prefixes: HashSet<IpNet>,
    /// Tells an old timer from the current one.
    pub epoch: u64,
    /// Where the restart is.
    pub phase: Phase,
    /// The long-lived stale period to follow the restart time (zero: none).
    pub long_lived: Duration,
}

/// RFC 4724 §4.2, RFC 9494 §4.2: whether a restarted peer kept its
/// forwarding state for the families its session carries (its stale routes
/// are of those) — the F bit of each in its new OPEN, in the long-lived
/// capability once the routes are long-lived stale. When not, its stale
/// routes must go at once rather than at its End-of-RIB.
pub(crate) fn forwarding_preserved(negotiated: &Negotiated, phase: Phase) -> bool {
    let kept = |family: Family| match phase {
        Phase::Restart => negotiated
            .peer_graceful_restart
            .as_ref()
            .is_some_and(|gr| gr.families.iter().any(|f| f.family == family && f.forwarding_preserved)),
        Phase::LongLived => negotiated.peer_long_lived.iter().any(|f| f.family == family && f.forwarding_preserved),
    };
    !negotiated.families.is_empty() && negotiated.families.iter().all(|f| kept(*f))
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
    use crate::packet::{Capability, GracefulRestart, GracefulRestartFamily, Open};
    use crate::session::negotiate::negotiate;

    const V4: Family = Family::IPV4_UNICAST;

    fn gr(restart_time: u16, forwarding: bool) -> Capability {
        Capability::GracefulRestart(GracefulRestart {
            restarted: true,
            notification: false,
            restart_time,
            families: vec![GracefulRestartFamily { family: V4, forwarding_preserved: forwarding }],
        })
    }

    fn llgr(family: Family, stale_time: u32, forwarding_preserved: bool) -> Vec<LongLivedFamily> {
        vec![LongLivedFamily { family, forwarding_preserved, stale_time }]
    }

    fn ours(long_lived: Vec<LongLivedFamily>) -> LocalConfig {
        let mut local = LocalConfig::new(65000, "192.0.2.254".parse().unwrap(), 65001);
        local.long_lived = long_lived;
        local
    }

    /// What negotiation makes of a peer OPEN with `caps`.
    fn peer(local: &LocalConfig, caps: Vec<Capability>) -> Negotiated {
        negotiate(local, &Open::new(65001, 90, "192.0.2.1".parse().unwrap(), caps)).unwrap()
    }

    #[test]
    fn forwarding_is_preserved_only_with_the_f_bit_for_ipv4_unicast_of_the_phase() {
        let local = ours(Vec::new());
        let check = |caps, phase| forwarding_preserved(&peer(&local, caps), phase);
        assert!(check(vec![gr(120, true)], Phase::Restart));
        assert!(!check(vec![gr(120, false)], Phase::Restart));
        assert!(!check(vec![], Phase::Restart), "no capability in the new OPEN");
        let v6 = Capability::GracefulRestart(GracefulRestart {
            restarted: true,
            notification: false,
            restart_time: 120,
            families: vec![GracefulRestartFamily { family: Family::IPV6_UNICAST, forwarding_preserved: true }],
        });
        assert!(!check(vec![v6], Phase::Restart));
        // Long-lived stale routes look at the long-lived capability's F bit.
        let long = |f| Capability::LongLivedGracefulRestart(llgr(V4, 60, f));
        assert!(check(vec![gr(120, false), long(true)], Phase::LongLived));
        assert!(!check(vec![gr(120, true), long(false)], Phase::LongLived));
        assert!(!check(vec![long(true)], Phase::LongLived), "without graceful restart it means nothing (RFC 9494 §3)");
    }

    #[test]
    fn retention_is_the_restart_time_then_the_smaller_long_lived_stale_time() {
        let s = Duration::from_secs;
        let long = |t| Capability::LongLivedGracefulRestart(llgr(V4, t, true));
        let plain = ours(Vec::new());
        assert_eq!(retention(&plain, &peer(&plain, vec![])), None, "no graceful restart: routes go at once");
        assert_eq!(retention(&plain, &peer(&plain, vec![gr(0, true)])), None, "restart time 0, no LLGR");
        assert_eq!(
            retention(&plain, &peer(&plain, vec![gr(90, true), long(600)])),
            Some(Retention { restart: s(90), long_lived: s(0) }),
            "the peer offers LLGR, we do not: graceful restart only"
        );
        let llgr_on = ours(llgr(V4, 3600, true));
        assert_eq!(
            retention(&llgr_on, &peer(&llgr_on, vec![gr(90, true)])),
            Some(Retention { restart: s(90), long_lived: s(0) }),
            "we offer LLGR, the peer does not"
        );
        assert_eq!(
            retention(&llgr_on, &peer(&llgr_on, vec![gr(90, true), long(600)])),
            Some(Retention { restart: s(90), long_lived: s(600) }),
            "the peer's shorter stale time"
        );
        assert_eq!(
            retention(&llgr_on, &peer(&llgr_on, vec![gr(0, true), long(86_400)])),
            Some(Retention { restart: s(0), long_lived: s(3600) }),
            "restart time 0: straight to long-lived, capped by ours"
        );
        let v6_only = Capability::LongLivedGracefulRestart(llgr(Family::IPV6_UNICAST, 600, true));
        assert_eq!(
            retention(&llgr_on, &peer(&llgr_on, vec![gr(90, true), v6_only])),
            Some(Retention { restart: s(90), long_lived: s(0) }),
            "IPv4 unicast decides"
        );
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
