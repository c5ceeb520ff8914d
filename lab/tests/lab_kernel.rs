//! The lab against the real kernel: namespaces, veth, bridges, routes,
//! sysctls, daemons, and that nothing survives a drop or a panic.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::time::Duration;

use tortie_lab::{Check, Lab, Netns, leftovers, veth, wait_for};

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

fn ping(from: &Netns, to: &str) -> tortie_lab::Result<String> {
    from.exec("ping", &["-c", "1", "-W", "1", to])
}

#[test]
fn veth_pair_carries_ping_between_namespaces() {
    let lab = Lab::new("veth_ping").unwrap();
    let (a, b) = (lab.netns("a").unwrap(), lab.netns("b").unwrap());
    veth((&a, "eth-a"), (&b, "eth-b")).unwrap();
    a.add_addr("eth-a", net("192.0.2.1/24")).unwrap();
    b.add_addr("eth-b", net("192.0.2.2/24")).unwrap();
    ping(&a, "192.0.2.2").unwrap();
}

#[test]
fn routed_path_needs_forwarding_in_the_middle_namespace() {
    let lab = Lab::new("routed").unwrap();
    let (a, r, b) = (lab.netns("a").unwrap(), lab.netns("r").unwrap(), lab.netns("b").unwrap());
    veth((&a, "eth0"), (&r, "to-a")).unwrap();
    veth((&b, "eth0"), (&r, "to-b")).unwrap();
    a.add_addr("eth0", net("192.0.2.1/24")).unwrap();
    r.add_addr("to-a", net("192.0.2.254/24")).unwrap();
    b.add_addr("eth0", net("198.51.100.1/24")).unwrap();
    r.add_addr("to-b", net("198.51.100.254/24")).unwrap();
    a.add_route("198.51.100.0/24 via 192.0.2.254").unwrap();
    b.add_route("192.0.2.0/24 via 198.51.100.254").unwrap();
    r.sysctl("net.ipv4.ip_forward", "0").unwrap();
    assert!(ping(&a, "198.51.100.1").is_err(), "forwarding off must drop");
    r.enable_forwarding().unwrap();
    ping(&a, "198.51.100.1").unwrap();
}

#[test]
fn bridge_connects_three_nodes() {
    let lab = Lab::new("bridge").unwrap();
    let sw = lab.bridge("sw").unwrap();
    let nodes: Vec<_> = (1..=3).map(|i| lab.netns(&format!("n{i}")).unwrap()).collect();
    for (i, node) in nodes.iter().enumerate() {
        sw.attach(node, "eth0").unwrap();
        node.add_addr("eth0", net(&format!("192.0.2.{}/24", i + 1))).unwrap();
    }
    ping(&nodes[0], "192.0.2.3").unwrap();
    ping(&nodes[2], "192.0.2.2").unwrap();
}

#[test]
fn bad_interface_name_is_refused_with_the_name() {
    let lab = Lab::new("ifname").unwrap();
    let (a, b) = (lab.netns("a").unwrap(), lab.netns("b").unwrap());
    let err = veth((&a, "much-too-long-name0"), (&b, "x")).unwrap_err().to_string();
    assert!(err.contains("much-too-long-name0"), "{err}");
}

#[test]
fn daemon_exit_is_reported_with_status_and_log() {
    let lab = Lab::new("daemon_exit").unwrap();
    let a = lab.netns("a").unwrap();
    let d = a.spawn("echoer", "sh", &["-c", "echo hello-from-ns; exit 3"], &[]).unwrap();
    let err = wait_for("echoer to exit", Duration::from_secs(5), || {
        d.check_running().map(|()| Check::<()>::Pending("running".into()))
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("echoer") && err.contains("exit status: 3") && err.contains("hello-from-ns"), "{err}");
}

#[test]
fn drop_removes_namespaces_processes_and_run_dir() {
    let lab = Lab::new("drop_clean").unwrap();
    let prefix = lab.prefix().to_string();
    let dir = lab.dir().to_path_buf();
    let a = lab.netns("a").unwrap();
    let d = a.spawn("sleeper", "sleep", &["600"], &[]).unwrap();
    let pid = d.pid();
    assert!(!leftovers::find(&prefix).unwrap().is_empty());
    drop((d, a, lab));
    assert_eq!(leftovers::find(&prefix).unwrap(), leftovers::Leftovers::default());
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "sleep {pid} survived");
    assert!(!dir.exists(), "{} survived", dir.display());
}

#[test]
fn panic_inside_a_test_still_cleans_up() {
    let prefix = std::sync::Mutex::new(String::new());
    let result = std::panic::catch_unwind(|| {
        let lab = Lab::new("panics").unwrap();
        *prefix.lock().unwrap() = lab.prefix().to_string();
        let a = lab.netns("a").unwrap();
        // A process that ignores SIGTERM still goes (SIGKILL after the grace period)…
        let _d = a.spawn("stubborn", "sh", &["-c", "trap '' TERM; sleep 600"], &[]).unwrap();
        // …and so does one started inside the namespace behind the lab's back.
        a.exec("sh", &["-c", "sleep 600 >/dev/null 2>&1 &"]).unwrap();
        panic!("test body fails");
    });
    assert!(result.is_err());
    let prefix = prefix.into_inner().unwrap();
    assert!(!prefix.is_empty());
    assert_eq!(leftovers::find(&prefix).unwrap(), leftovers::Leftovers::default());
}

#[test]
fn concurrent_labs_get_distinct_names() {
    let labs: Vec<Lab> = (0..4).map(|_| Lab::new("same").unwrap()).collect();
    let spaces: Vec<Netns> = labs.iter().map(|l| l.netns("x").unwrap()).collect();
    let names: std::collections::BTreeSet<_> = spaces.iter().map(|n| n.name().to_string()).collect();
    assert_eq!(names.len(), 4);
}
