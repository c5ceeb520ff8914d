//! The FSM as a table (RFC 4271 §8.2.2): every state × every event, with
//! the next state and the actions that matter (timers started, connects,
//! disconnects, messages sent, session up/down). Stopping timers is left
//! out of the summaries: it is always safe and the RFC lists it everywhere.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

use tortie_bgp::packet::{DecodeError, ErrorAction, ErrorCode, Message, Notification, Open};
use tortie_bgp::session::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn local() -> LocalConfig {
    LocalConfig::new(65001, ip("192.0.2.1"), 65002)
}

fn config(passive: bool, delay_open: bool) -> FsmConfig {
    FsmConfig {
        connect_retry: Duration::from_secs(5),
        passive,
        delay_open: delay_open.then_some(Duration::from_secs(2)),
        ..FsmConfig::default()
    }
}

fn peer_open(asn: u32) -> Open {
    LocalConfig::new(asn, ip("192.0.2.2"), 65001).open()
}

/// The events of the table, by short name.
fn event(name: &str) -> Event {
    match name {
        "ManualStart" => Event::ManualStart,
        "ManualStop" => Event::ManualStop { message: "maintenance".into() },
        "AutomaticStart" => Event::AutomaticStart,
        "PassiveStart" => Event::AutomaticStartPassive,
        "AutomaticStop" => Event::AutomaticStop { subcode: 1 },
        "ConnectRetry" => Event::TimerExpired(Timer::ConnectRetry),
        "Hold" => Event::TimerExpired(Timer::Hold),
        "Keepalive" => Event::TimerExpired(Timer::Keepalive),
        "DelayOpen" => Event::TimerExpired(Timer::DelayOpen),
        "IdleHold" => Event::TimerExpired(Timer::IdleHold),
        "TcpConnected" => Event::TcpConnected,
        "TcpFails" => Event::TcpConnectionFails,
        "Open" => Event::OpenReceived(peer_open(65002)),
        "OpenBadAs" => Event::OpenReceived(peer_open(65099)),
        "MsgError" => Event::MessageError(DecodeError {
            code: ErrorCode::Update,
            subcode: 1,
            data: vec![],
            action: ErrorAction::SessionReset,
            reason: "test".into(),
        }),
        "Collision" => Event::OpenCollisionDump,
        "Notification" => {
            Event::NotificationReceived(Notification { code: ErrorCode::Cease, subcode: 2, data: Default::default() })
        }
        "KeepaliveMsg" => Event::KeepaliveReceived,
        "Update" => Event::UpdateReceived,
        other => panic!("no event {other}"),
    }
}

/// Actions as short words; stopped timers omitted.
fn summary(actions: &[Action]) -> String {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartTimer(t, _) => Some(format!("start {t:?}")),
            Action::StopTimer(_) => None,
            Action::Connect => Some("connect".into()),
            Action::Disconnect => Some("disconnect".into()),
            Action::Send(Message::Open(_)) => Some("OPEN".into()),
            Action::Send(Message::Keepalive) => Some("KEEPALIVE".into()),
            Action::Send(Message::Notification(n)) => Some(format!("NOTIFICATION {}/{}", n.code.to_u8(), n.subcode)),
            Action::Send(other) => Some(format!("{other:?}")),
            Action::Up(_) => Some("up".into()),
            Action::Down(r) => Some(format!("down {}", format!("{r:?}").split('(').next().unwrap())),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An FSM driven into `state` the way a real session gets there.
fn fsm_in(state: State) -> Fsm {
    let passive = state == State::Active;
    let mut f = Fsm::new(config(passive, false), local());
    let path: &[&str] = match state {
        State::Idle => &[],
        State::Connect | State::Active => &["ManualStart"],
        State::OpenSent => &["ManualStart", "TcpConnected"],
        State::OpenConfirm => &["ManualStart", "TcpConnected", "Open"],
        State::Established => &["ManualStart", "TcpConnected", "Open", "KeepaliveMsg"],
    };
    for e in path {
        f.handle(event(e));
    }
    assert_eq!(f.state(), state);
    f
}

const IDLE: &[(&str, State, &str)] = &[
    ("ManualStart", State::Connect, "start ConnectRetry, connect"),
    ("ManualStop", State::Idle, ""),
    ("AutomaticStart", State::Connect, "start ConnectRetry, connect"),
    // A stopped peer (never started here) takes no connection.
    ("PassiveStart", State::Idle, ""),
    ("AutomaticStop", State::Idle, ""),
    ("ConnectRetry", State::Idle, ""),
    ("Hold", State::Idle, ""),
    ("Keepalive", State::Idle, ""),
    ("DelayOpen", State::Idle, ""),
    ("IdleHold", State::Idle, ""),
    ("TcpConnected", State::Idle, ""),
    ("TcpFails", State::Idle, ""),
    ("Open", State::Idle, ""),
    ("MsgError", State::Idle, ""),
    ("Collision", State::Idle, ""),
    ("Notification", State::Idle, ""),
    ("KeepaliveMsg", State::Idle, ""),
    ("Update", State::Idle, ""),
];

const CONNECT: &[(&str, State, &str)] = &[
    ("ManualStart", State::Connect, ""),
    ("ManualStop", State::Idle, "disconnect, down AdminStop"),
    ("AutomaticStart", State::Connect, ""),
    ("PassiveStart", State::Connect, ""),
    ("AutomaticStop", State::Idle, "disconnect, down AutoStop"),
    ("ConnectRetry", State::Connect, "disconnect, start ConnectRetry, connect"),
    ("Hold", State::Connect, ""),
    ("Keepalive", State::Connect, ""),
    ("DelayOpen", State::Connect, ""),
    ("IdleHold", State::Connect, ""),
    ("TcpConnected", State::OpenSent, "OPEN, start Hold"),
    ("TcpFails", State::Idle, "disconnect, down ConnectionLost, start IdleHold"),
    ("Open", State::Idle, "disconnect, down Unexpected, start IdleHold"),
    ("MsgError", State::Idle, "NOTIFICATION 3/1, disconnect, down Sent, start IdleHold"),
    ("Collision", State::Idle, "disconnect, down Unexpected, start IdleHold"),
    ("Notification", State::Idle, "disconnect, down Received, start IdleHold"),
    ("KeepaliveMsg", State::Idle, "disconnect, down Unexpected, start IdleHold"),
    ("Update", State::Idle, "disconnect, down Unexpected, start IdleHold"),
];

const ACTIVE: &[(&str, State, &str)] = &[
    ("ManualStart", State::Active, ""),
    ("ManualStop", State::Idle, "disconnect, down AdminStop"),
    ("AutomaticStart", State::Active, ""),
    ("PassiveStart", State::Active, ""),
    ("AutomaticStop", State::Idle, "disconnect, down AutoStop"),
    // Passive: never dials, keeps waiting.
    ("ConnectRetry", State::Active, "disconnect, start ConnectRetry"),
    ("Hold", State::Active, ""),
    ("Keepalive", State::Active, ""),
    ("DelayOpen", State::Active, ""),
    ("IdleHold", State::Active, ""),
    ("TcpConnected", State::OpenSent, "OPEN, start Hold"),
    ("TcpFails", State::Idle, "disconnect, down ConnectionLost, start IdleHold"),
    ("Open", State::Idle, "disconnect, down Unexpected, start IdleHold"),
    ("MsgError", State::Idle, "NOTIFICATION 3/1, disconnect, down Sent, start IdleHold"),
    ("Collision", State::Idle, "disconnect, down Unexpected, start IdleHold"),
    ("Notification", State::Idle, "disconnect, down Received, start IdleHold"),
    ("KeepaliveMsg", State::Idle, "disconnect, down Unexpected, start IdleHold"),
    ("Update", State::Idle, "disconnect, down Unexpected, start IdleHold"),
];

const OPEN_SENT: &[(&str, State, &str)] = &[
    ("ManualStart", State::OpenSent, ""),
    ("ManualStop", State::Idle, "NOTIFICATION 6/2, disconnect, down AdminStop"),
    ("AutomaticStart", State::OpenSent, ""),
    ("PassiveStart", State::OpenSent, ""),
    ("AutomaticStop", State::Idle, "NOTIFICATION 6/1, disconnect, down AutoStop"),
    ("ConnectRetry", State::OpenSent, ""),
    ("Hold", State::Idle, "NOTIFICATION 4/0, disconnect, down HoldTimerExpired, start IdleHold"),
    ("Keepalive", State::OpenSent, ""),
    ("DelayOpen", State::OpenSent, ""),
    ("IdleHold", State::OpenSent, ""),
    ("TcpConnected", State::Idle, "NOTIFICATION 5/1, disconnect, down Sent, start IdleHold"),
    ("TcpFails", State::Active, "disconnect, start ConnectRetry"),
    ("Open", State::OpenConfirm, "KEEPALIVE, start Keepalive, start Hold"),
    ("OpenBadAs", State::Idle, "NOTIFICATION 2/2, disconnect, down Sent, start IdleHold"),
    ("MsgError", State::Idle, "NOTIFICATION 3/1, disconnect, down Sent, start IdleHold"),
    ("Collision", State::Idle, "NOTIFICATION 6/7, disconnect, down Collision, start IdleHold"),
    ("Notification", State::Idle, "disconnect, down Received, start IdleHold"),
    ("KeepaliveMsg", State::Idle, "NOTIFICATION 5/1, disconnect, down Sent, start IdleHold"),
    ("Update", State::Idle, "NOTIFICATION 5/1, disconnect, down Sent, start IdleHold"),
];

const OPEN_CONFIRM: &[(&str, State, &str)] = &[
    ("ManualStart", State::OpenConfirm, ""),
    ("ManualStop", State::Idle, "NOTIFICATION 6/2, disconnect, down AdminStop"),
    ("AutomaticStart", State::OpenConfirm, ""),
    ("PassiveStart", State::OpenConfirm, ""),
    ("AutomaticStop", State::Idle, "NOTIFICATION 6/1, disconnect, down AutoStop"),
    ("ConnectRetry", State::OpenConfirm, ""),
    ("Hold", State::Idle, "NOTIFICATION 4/0, disconnect, down HoldTimerExpired, start IdleHold"),
    ("Keepalive", State::OpenConfirm, "KEEPALIVE, start Keepalive"),
    ("DelayOpen", State::OpenConfirm, ""),
    ("IdleHold", State::OpenConfirm, ""),
    ("TcpConnected", State::Idle, "NOTIFICATION 5/2, disconnect, down Sent, start IdleHold"),
    ("TcpFails", State::Idle, "disconnect, down ConnectionLost, start IdleHold"),
    ("Open", State::Idle, "NOTIFICATION 5/2, disconnect, down Sent, start IdleHold"),
    ("MsgError", State::Idle, "NOTIFICATION 3/1, disconnect, down Sent, start IdleHold"),
    ("Collision", State::Idle, "NOTIFICATION 6/7, disconnect, down Collision, start IdleHold"),
    ("Notification", State::Idle, "disconnect, down Received, start IdleHold"),
    ("KeepaliveMsg", State::Established, "start Hold, start Stable, up"),
    ("Update", State::Idle, "NOTIFICATION 5/2, disconnect, down Sent, start IdleHold"),
];

const ESTABLISHED: &[(&str, State, &str)] = &[
    ("ManualStart", State::Established, ""),
    ("ManualStop", State::Idle, "NOTIFICATION 6/2, disconnect, down AdminStop"),
    ("AutomaticStart", State::Established, ""),
    ("PassiveStart", State::Established, ""),
    ("AutomaticStop", State::Idle, "NOTIFICATION 6/1, disconnect, down AutoStop"),
    ("ConnectRetry", State::Established, ""),
    ("Hold", State::Idle, "NOTIFICATION 4/0, disconnect, down HoldTimerExpired, start IdleHold"),
    ("Keepalive", State::Established, "KEEPALIVE, start Keepalive"),
    ("DelayOpen", State::Established, ""),
    ("IdleHold", State::Established, ""),
    ("TcpConnected", State::Idle, "NOTIFICATION 5/3, disconnect, down Sent, start IdleHold"),
    ("TcpFails", State::Idle, "disconnect, down ConnectionLost, start IdleHold"),
    ("Open", State::Idle, "NOTIFICATION 5/3, disconnect, down Sent, start IdleHold"),
    ("MsgError", State::Idle, "NOTIFICATION 3/1, disconnect, down Sent, start IdleHold"),
    ("Collision", State::Idle, "NOTIFICATION 6/7, disconnect, down Collision, start IdleHold"),
    ("Notification", State::Idle, "disconnect, down Received, start IdleHold"),
    ("KeepaliveMsg", State::Established, "start Hold"),
    ("Update", State::Established, "start Hold"),
];

#[test]
fn every_state_and_event_matches_the_table() {
    let tables = [
        (State::Idle, IDLE),
        (State::Connect, CONNECT),
        (State::Active, ACTIVE),
        (State::OpenSent, OPEN_SENT),
        (State::OpenConfirm, OPEN_CONFIRM),
        (State::Established, ESTABLISHED),
    ];
    let mut failures = Vec::new();
    for (state, table) in tables {
        for (name, next, actions) in table {
            let mut f = fsm_in(state);
            let got = f.handle(event(name));
            if f.state() != *next || summary(&got) != *actions {
                failures.push(format!(
                    "{state:?} + {name}: want {next:?} [{actions}], got {:?} [{}]",
                    f.state(),
                    summary(&got)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn delay_open_waits_for_the_peer_then_answers_its_open() {
    let mut f = Fsm::new(config(false, true), local());
    f.handle(Event::ManualStart);
    assert_eq!(summary(&f.handle(Event::TcpConnected)), "start DelayOpen");
    assert_eq!(f.state(), State::Connect);
    // The peer speaks first: we answer with OPEN and KEEPALIVE at once.
    assert_eq!(summary(&f.handle(event("Open"))), "OPEN, KEEPALIVE, start Keepalive, start Hold");
    assert_eq!(f.state(), State::OpenConfirm);

    let mut g = Fsm::new(config(false, true), local());
    g.handle(Event::ManualStart);
    g.handle(Event::TcpConnected);
    assert_eq!(summary(&g.handle(event("DelayOpen"))), "OPEN, start Hold");
    assert_eq!(g.state(), State::OpenSent);

    // The connection fails while DelayOpen runs: wait in Active.
    let mut h = Fsm::new(config(false, true), local());
    h.handle(Event::ManualStart);
    h.handle(Event::TcpConnected);
    assert_eq!(summary(&h.handle(Event::TcpConnectionFails)), "disconnect, start ConnectRetry");
    assert_eq!(h.state(), State::Active);
}

#[test]
fn a_flapping_peer_waits_longer_each_time_up_to_the_cap() {
    let mut f = Fsm::new(
        FsmConfig { idle_hold: Duration::from_secs(1), idle_hold_max: Duration::from_secs(8), ..config(false, false) },
        local(),
    );
    f.handle(Event::ManualStart);
    let mut waits = Vec::new();
    for _ in 0..6 {
        // The dial fails (connection refused): Idle, and a longer wait each time.
        let actions = f.handle(Event::TcpConnectionFails);
        let wait = actions.iter().find_map(|a| match a {
            Action::StartTimer(Timer::IdleHold, d) => Some(d.as_secs()),
            _ => None,
        });
        waits.push(wait.unwrap());
        assert_eq!(summary(&f.handle(Event::TimerExpired(Timer::IdleHold))), "start ConnectRetry, connect");
    }
    assert_eq!(waits, vec![1, 2, 4, 8, 8, 8]);
    // A session that stays up forgets: after Stable, the wait is back to 1 s.
    for e in ["TcpConnected", "Open", "KeepaliveMsg"] {
        f.handle(event(e));
    }
    f.handle(Event::TimerExpired(Timer::Stable));
    let actions = f.handle(Event::TcpConnectionFails);
    assert!(actions.contains(&Action::StartTimer(Timer::IdleHold, Duration::from_secs(1))), "{actions:?}");
    assert_eq!(f.connect_retry_counter(), 1);
}

#[test]
fn an_operator_stop_sends_the_shutdown_message_and_stays_down() {
    let mut f = fsm_in(State::Established);
    let actions = f.handle(Event::ManualStop { message: "maintenance".into() });
    let sent = actions.iter().find_map(|a| match a {
        Action::Send(Message::Notification(n)) => Some(n.clone()),
        _ => None,
    });
    assert_eq!(sent.unwrap().shutdown_message(), Some("maintenance"));
    assert!(!actions.iter().any(|a| matches!(a, Action::StartTimer(Timer::IdleHold, _))), "no automatic restart");
    assert_eq!(
        f.handle(Event::AutomaticStart),
        vec![Action::StartTimer(Timer::ConnectRetry, Duration::from_secs(5)), Action::Connect]
    );
}

#[test]
fn an_operator_reset_sends_6_4_with_its_message_and_restarts() {
    let mut f = fsm_in(State::Established);
    let actions = f.handle(Event::ManualReset { message: "new config".into() });
    assert_eq!(summary(&actions), "NOTIFICATION 6/4, disconnect, down AdminReset, start IdleHold");
    let sent = actions.iter().find_map(|a| match a {
        Action::Send(Message::Notification(n)) => n.shutdown_message().map(String::from),
        _ => None,
    });
    assert_eq!(sent.as_deref(), Some("new config"));
    assert_eq!(f.state(), State::Idle);
    assert_eq!(summary(&f.handle(Event::TimerExpired(Timer::IdleHold))), "start ConnectRetry, connect");
    // In states without a session there is nothing to reset.
    let mut idle = fsm_in(State::Idle);
    assert_eq!(summary(&idle.handle(Event::ManualReset { message: String::new() })), "");
}

#[test]
fn hold_time_zero_runs_no_timers() {
    let mut open = peer_open(65002);
    open.hold_time = 0;
    let mut l = local();
    l.hold_time = 0;
    let mut f0 = Fsm::new(config(false, false), l);
    f0.handle(Event::ManualStart);
    f0.handle(Event::TcpConnected);
    assert_eq!(summary(&f0.handle(Event::OpenReceived(open))), "KEEPALIVE");
    assert_eq!(summary(&f0.handle(Event::KeepaliveReceived)), "start Stable, up");
    assert_eq!(summary(&f0.handle(Event::UpdateReceived)), "");
}

#[test]
fn collisions_keep_the_connection_of_the_higher_identifier() {
    // (local id, local AS, remote id, remote AS, we keep our own connection)
    let cases = [
        ("192.0.2.2", 65001, "192.0.2.1", 65002, true),
        ("192.0.2.1", 65001, "192.0.2.2", 65002, false),
        // Same identifier (different ASes, RFC 6286 §2.3): the larger AS keeps its own.
        ("192.0.2.9", 65009, "192.0.2.9", 65001, true),
        ("192.0.2.9", 65001, "192.0.2.9", 65009, false),
    ];
    for (lid, las, rid, ras, ours) in cases {
        assert_eq!(collision_winner(ip(lid), las, ip(rid), ras), ours, "{lid}/{las} vs {rid}/{ras}");
    }
    // The loser's FSM sends Cease 6/7 and goes Idle.
    let mut loser = fsm_in(State::OpenConfirm);
    assert!(summary(&loser.handle(Event::OpenCollisionDump)).starts_with("NOTIFICATION 6/7"));
    assert_eq!(loser.state(), State::Idle);
}

#[test]
fn reasons_read_like_bird() {
    let n = |code, subcode| Notification { code, subcode, data: Default::default() };
    assert_eq!(Reason::Received(n(ErrorCode::Open, 2)).to_string(), "Received: Bad peer AS");
    assert_eq!(Reason::HoldTimerExpired.to_string(), "Error: Hold timer expired");
    let shut = Notification::cease_with_message(2, "upgrading");
    assert_eq!(Reason::Received(shut).to_string(), "Received: Administrative shutdown: \"upgrading\"");
}

#[test]
fn the_restart_state_bit_goes_out_only_until_the_restart_is_over() {
    use tortie_bgp::packet::{Capability, GracefulRestart};
    let mut restarting = local();
    restarting.graceful_restart =
        Some(GracefulRestart { restarted: true, notification: false, restart_time: 120, families: vec![] });
    let mut f = Fsm::new(config(false, false), restarting);
    // The R bit in the OPEN a connection gets, if it gets one.
    let r_bit = |actions: Vec<Action>| {
        actions.into_iter().find_map(|a| match a {
            Action::Send(Message::Open(open)) => open.capabilities.into_iter().find_map(|c| match c {
                Capability::GracefulRestart(gr) => Some(gr.restarted),
                _ => None,
            }),
            _ => None,
        })
    };
    f.handle(Event::ManualStart);
    assert_eq!(r_bit(f.handle(Event::TcpConnected)), Some(true), "while restarting (RFC 4724 §4.1)");
    f.handle(Event::TcpConnectionFails);
    f.end_restart();
    f.handle(Event::TimerExpired(Timer::ConnectRetry));
    assert_eq!(r_bit(f.handle(Event::TcpConnected)), Some(false), "after the restart: a normal OPEN");
}

#[test]
fn a_peer_waiting_to_dial_again_takes_the_peers_own_connection() {
    let mut f = Fsm::new(config(false, false), local());
    f.handle(Event::ManualStart);
    f.handle(Event::TcpConnectionFails);
    assert_eq!(f.state(), State::Idle, "the dial failed: it waits (back-off)");
    let actions = f.handle(Event::AutomaticStartPassive);
    assert_eq!((f.state(), summary(&actions)), (State::Active, "start ConnectRetry".to_string()));
    let actions = f.handle(Event::TcpConnected);
    assert_eq!((f.state(), summary(&actions)), (State::OpenSent, "OPEN, start Hold".to_string()));
    // Stopped by the operator (or at its prefix limit): no connection is taken.
    f.handle(Event::ManualStop { message: "maintenance".into() });
    f.handle(Event::AutomaticStartPassive);
    assert_eq!(f.state(), State::Idle);
}
