//! The peer plan's unit tests.
use super::*;
use tortie_store::resources::{Metadata, NodeBgp};

/// This node as most tests see it: an IPv4 node of the default AS, its
/// address its router ID.
fn me(name: &str, address: &str) -> Me {
    Me {
        name: name.into(),
        address: Some(address.parse().unwrap()),
        router_id: address.parse().unwrap(),
        address6: None,
        asn: 64512,
        labels: BTreeMap::new(),
        cluster_id: None,
        send_hold: None,
    }
}

fn node(name: &str, addr: &str, labels: &[(&str, &str)]) -> Object<NodeSpec> {
    Object {
        api_version: String::new(),
        kind: "Node".into(),
        metadata: Metadata {
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Metadata::default()
        },
        spec: NodeSpec {
            bgp: Some(NodeBgp { ipv4_address: Some(addr.parse().unwrap()), ..NodeBgp::default() }),
            ..NodeSpec::default()
        },
    }
}

fn peer(name: &str, spec: BgpPeerSpec) -> Object<BgpPeerSpec> {
    Object {
        api_version: String::new(),
        kind: "BGPPeer".into(),
        metadata: Metadata { name: name.into(), ..Metadata::default() },
        spec,
    }
}

#[test]
fn mesh_peers_every_other_node_and_the_higher_address_listens() {
    let me = me("b", "192.0.2.2");
    let nodes = [node("a", "192.0.2.1/24", &[]), node("b", "192.0.2.2/24", &[]), node("c", "192.0.2.3/24", &[])];
    let plan = plan(&me, &Configs::default(), &nodes, &[]);
    let got: Vec<(&str, bool)> = plan.iter().map(|p| (p.name.as_str(), p.passive)).collect();
    assert_eq!(got, [("Mesh_192_0_2_1", true), ("Mesh_192_0_2_3", false)]);
    let off = BgpConfigurationSpec { node_to_node_mesh_enabled: Some(false), ..BgpConfigurationSpec::default() };
    assert!(super::plan(&me, &off.into(), &nodes, &[]).is_empty());
}

#[test]
fn the_mesh_runs_over_ipv6_between_nodes_that_both_have_an_ipv6_address() {
    let me = Me { address6: Some("2001:db8::2".parse().unwrap()), ..me("b", "192.0.2.2") };
    let with_v6 = |name: &str, v4: &str, v6: &str| {
        let mut n = node(name, v4, &[]);
        n.spec.bgp.as_mut().unwrap().ipv6_address = Some(v6.parse().unwrap());
        n
    };
    let nodes = [
        with_v6("a", "192.0.2.1/24", "2001:db8::1/64"),
        with_v6("b", "192.0.2.2/24", "2001:db8::2/64"),
        node("c", "192.0.2.3/24", &[]),
    ];
    let plan = plan(&me, &Configs::default(), &nodes, &[]);
    let got: Vec<(&str, String, bool)> =
        plan.iter().map(|p| (p.name.as_str(), p.remote.to_string(), p.passive)).collect();
    assert_eq!(
        got,
        [
            ("Mesh_192_0_2_1", "192.0.2.1:179".to_string(), true),
            ("Mesh_192_0_2_3", "192.0.2.3:179".to_string(), false),
            ("Mesh_2001_db8__1", "[2001:db8::1]:179".to_string(), true),
        ],
        "c has no IPv6 address: IPv4 only"
    );
    // Each session carries its own family, from our address of that family.
    let v6 = neighbor(&me, &plan[2], (Policy::accept_all(), Policy::accept_all()));
    assert_eq!(v6.session.local.families, [Family::IPV6_UNICAST]);
    assert_eq!(v6.session.local_addr, Some("2001:db8::2".parse().unwrap()));
    assert_eq!(v6.export.local_addr, "2001:db8::2".parse::<IpAddr>().unwrap());
    let v4 = neighbor(&me, &plan[0], (Policy::accept_all(), Policy::accept_all()));
    assert_eq!(v4.session.local.families, [Family::IPV4_UNICAST]);
    // Without an IPv6 address of ours, no IPv6 session.
    let v4_only = Me { address6: None, ..me };
    assert!(super::plan(&v4_only, &Configs::default(), &nodes, &[]).iter().all(|p| p.remote.is_ipv4()));
}

#[test]
fn an_ipv6_only_node_peers_over_ipv6_alone_and_leaves_out_ipv4_peers() {
    let me = Me {
        address: None,
        router_id: "10.0.0.2".parse().unwrap(),
        address6: Some("2001:db8::2".parse().unwrap()),
        labels: [("rr".to_string(), String::new())].into(),
        ..me("b", "192.0.2.254")
    };
    let v6_only = |name: &str, v6: &str, labels: &[(&str, &str)]| {
        let mut n = node(name, "192.0.2.9/24", labels);
        *n.spec.bgp.as_mut().unwrap() = NodeBgp { ipv6_address: Some(v6.parse().unwrap()), ..NodeBgp::default() };
        n
    };
    let mut dual = node("c", "192.0.2.3/24", &[]);
    dual.spec.bgp.as_mut().unwrap().ipv6_address = Some("2001:db8::3/64".parse().unwrap());
    let nodes = [v6_only("a", "2001:db8::1/64", &[("rr", "")]), v6_only("b", "2001:db8::2/64", &[]), dual];
    let peers = [
        peer("tor4", BgpPeerSpec { peer_ip: Some("192.0.2.254".into()), as_number: Some(65000), ..Default::default() }),
        peer(
            "tor6",
            BgpPeerSpec { peer_ip: Some("2001:db8::fe".into()), as_number: Some(65000), ..Default::default() },
        ),
        peer("rrs", BgpPeerSpec { peer_selector: Some("has(rr)".into()), ..BgpPeerSpec::default() }),
    ];
    let plan = plan(&me, &Configs::default(), &nodes, &peers);
    let got: Vec<&str> = plan.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(got, ["Mesh_2001_db8__1", "Mesh_2001_db8__3", "Global_2001_db8__fe"], "no IPv4 session at all");
    let s = neighbor(&me, &plan[2], (Policy::accept_all(), Policy::accept_all()));
    assert_eq!(s.session.local.bgp_id, "10.0.0.2".parse::<Ipv4Addr>().unwrap());
    assert_eq!(s.session.local_addr, Some("2001:db8::2".parse().unwrap()));
    // A peerSelector peering runs over each family both nodes have (b is
    // selected too, so every node peers with it: c over IPv6 only).
    let off = BgpConfigurationSpec { node_to_node_mesh_enabled: Some(false), ..BgpConfigurationSpec::default() };
    let by_selector = super::plan(&me, &off.into(), &nodes, &peers[2..]);
    let got: Vec<&str> = by_selector.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(got, ["Global_2001_db8__1", "Global_2001_db8__3"]);
}

#[test]
fn bgp_peers_apply_globally_by_name_by_node_selector_and_by_peer_selector() {
    let labels: BTreeMap<String, String> = [("rack".to_string(), "r1".to_string())].into();
    let me = Me { labels, ..me("a", "192.0.2.1") };
    let nodes = [node("a", "192.0.2.1/24", &[("rack", "r1")]), node("rr", "192.0.2.9/24", &[("rr", "yes")])];
    let tor = |node: Option<&str>, sel: Option<&str>, ip: &str| BgpPeerSpec {
        node: node.map(String::from),
        node_selector: sel.map(String::from),
        peer_ip: Some(ip.into()),
        as_number: Some(65000),
        ..BgpPeerSpec::default()
    };
    let peers = [
        peer("global", tor(None, None, "203.0.113.1")),
        peer("mine", tor(Some("a"), None, "203.0.113.2")),
        peer("theirs", tor(Some("b"), None, "203.0.113.3")),
        peer("rack", tor(None, Some("rack == 'r1'"), "203.0.113.4:1179")),
        peer("other-rack", tor(None, Some("rack == 'r2'"), "203.0.113.5")),
        peer("rrs", BgpPeerSpec { peer_selector: Some("has(rr)".into()), ..BgpPeerSpec::default() }),
    ];
    let off = BgpConfigurationSpec { node_to_node_mesh_enabled: Some(false), ..BgpConfigurationSpec::default() };
    let got: Vec<(String, PeerType, String, u32)> = plan(&me, &off.clone().into(), &nodes, &peers)
        .into_iter()
        .map(|p| (p.name, p.kind, p.remote.to_string(), p.asn))
        .collect();
    let want = [
        ("Global_192_0_2_9", PeerType::Global, "192.0.2.9:179", 64512),
        ("Global_203_0_113_1", PeerType::Global, "203.0.113.1:179", 65000),
        ("Node_203_0_113_2", PeerType::NodeSpecific, "203.0.113.2:179", 65000),
        ("Node_203_0_113_4", PeerType::NodeSpecific, "203.0.113.4:1179", 65000),
    ];
    let want: Vec<(String, PeerType, String, u32)> =
        want.iter().map(|(n, k, a, s)| (n.to_string(), *k, a.to_string(), *s)).collect();
    assert_eq!(got, want);
}

#[test]
fn restart_times_listen_ports_own_as_and_source_address_come_from_the_configurations() {
    let me = me("a", "192.0.2.1");
    let nodes = [node("a", "192.0.2.1/24", &[]), node("b", "192.0.2.2/24", &[])];
    let mut configs = Configs::from(BgpConfigurationSpec {
        listen_port: Some(1179),
        node_mesh_max_restart_time: Some("5m0s".into()),
        ..BgpConfigurationSpec::default()
    });
    let node_b = BgpConfigurationSpec { listen_port: Some(2179), ..BgpConfigurationSpec::default() };
    configs.nodes.insert("b".into(), node_b);
    let peers = [peer(
        "tor",
        BgpPeerSpec {
            peer_ip: Some("203.0.113.1".into()),
            as_number: Some(65000),
            max_restart_time: Some("30s".into()),
            num_allowed_local_as_numbers: Some(2),
            source_address: Some(SourceAddress::None),
            ..BgpPeerSpec::default()
        },
    )];
    let got: Vec<(String, String, u16, u8, bool)> = plan(&me, &configs, &nodes, &peers)
        .into_iter()
        .map(|p| (p.name, p.remote.to_string(), p.restart_time, p.allow_local_as, p.source_node_ip))
        .collect();
    assert_eq!(
        got,
        [
            ("Mesh_192_0_2_2".to_string(), "192.0.2.2:2179".to_string(), 300, 0, true),
            ("Global_203_0_113_1".to_string(), "203.0.113.1:179".to_string(), 30, 2, false),
        ]
    );
    assert_eq!(configs.port("a"), 1179, "default's listenPort where a node sets none");
    let to_b = peer(
        "to-b",
        BgpPeerSpec { peer_ip: Some("192.0.2.2".into()), as_number: Some(64512), ..BgpPeerSpec::default() },
    );
    let off = Configs {
        default: BgpConfigurationSpec { node_to_node_mesh_enabled: Some(false), ..configs.default.clone() },
        ..configs.clone()
    };
    let got = plan(&me, &off, &nodes, &[to_b]);
    assert_eq!(got[0].remote.to_string(), "192.0.2.2:2179", "a node's peerIP without a port: its listenPort");
    // So too for a node's IPv6 address.
    let v6 = Me { address6: Some("2001:db8::1".parse().unwrap()), ..me.clone() };
    let mut nodes6 = nodes.clone();
    nodes6[1].spec.bgp.as_mut().unwrap().ipv6_address = Some("2001:db8::2/64".parse().unwrap());
    let to_b6 = peer(
        "to-b6",
        BgpPeerSpec { peer_ip: Some("2001:db8::2".into()), as_number: Some(64512), ..BgpPeerSpec::default() },
    );
    let got6 = plan(&v6, &off, &nodes6, &[to_b6]);
    assert_eq!(got6[0].remote.to_string(), "[2001:db8::2]:2179", "{got6:?}");
    // RFC 9494: under LongLivedGracefulRestart, maxRestartTime is the
    // long-lived stale time; the restart time stays Calico's 120 s.
    let llgr = |max: Option<&str>| {
        let spec = BgpPeerSpec {
            peer_ip: Some("203.0.113.1".into()),
            as_number: Some(65000),
            restart_mode: Some("LongLivedGracefulRestart".into()),
            max_restart_time: max.map(String::from),
            ..BgpPeerSpec::default()
        };
        let planned = plan(&me, &off, &nodes, &[peer("tor", spec)]).remove(0);
        let local = neighbor(&me, &planned, (Policy::accept_all(), Policy::accept_all())).session.local;
        let gr = local.graceful_restart.map(|g| g.restart_time);
        (gr, local.long_lived.iter().map(|l| (l.family, l.stale_time, l.forwarding_preserved)).collect::<Vec<_>>())
    };
    assert_eq!(llgr(Some("24h0m0s")), (Some(120), vec![(Family::IPV4_UNICAST, 86_400, true)]));
    assert_eq!(llgr(None), (Some(120), vec![(Family::IPV4_UNICAST, 3600, true)]), "BIRD's default stale time");
    assert!(
        neighbor(&me, &got[0], (Policy::accept_all(), Policy::accept_all())).session.local.long_lived.is_empty(),
        "no restartMode: no LLGR capability"
    );
}

#[test]
fn a_selected_node_peers_back_unless_reverse_peering_is_manual() {
    let nodes = [node("a", "192.0.2.1/24", &[("role", "client")]), node("rr", "192.0.2.9/24", &[("rr", "yes")])];
    let me_rr = Me { labels: [("rr".to_string(), "yes".to_string())].into(), ..me("rr", "192.0.2.9") };
    let to_rr = |reverse: Option<&str>| {
        [peer(
            "to-rr",
            BgpPeerSpec {
                node_selector: Some("role == 'client'".into()),
                peer_selector: Some("has(rr)".into()),
                reverse_peering: reverse.map(String::from),
                ..BgpPeerSpec::default()
            },
        )]
    };
    let off = Configs::from(BgpConfigurationSpec { node_to_node_mesh_enabled: Some(false), ..Default::default() });
    assert_eq!(plan(&me_rr, &off, &nodes, &to_rr(None)).len(), 1, "Auto: the selected node peers back");
    assert!(plan(&me_rr, &off, &nodes, &to_rr(Some("Manual"))).is_empty(), "Manual: it waits for its own BGPPeer");
}

#[test]
fn a_reflector_peers_back_with_every_node_that_selects_it_and_treats_them_as_clients() {
    let mut rr = node("rr", "192.0.2.9/24", &[("rr", "yes")]);
    if let Some(b) = rr.spec.bgp.as_mut() {
        b.route_reflector_cluster_id = Some("203.0.113.250".parse().unwrap());
    }
    let nodes = [rr, node("a", "192.0.2.1/24", &[]), node("b", "192.0.2.2/24", &[])];
    let peers = [peer(
        "to-rr",
        BgpPeerSpec {
            node_selector: Some("all()".into()),
            peer_selector: Some("has(rr)".into()),
            ..BgpPeerSpec::default()
        },
    )];
    let off = BgpConfigurationSpec { node_to_node_mesh_enabled: Some(false), ..BgpConfigurationSpec::default() };
    let me_rr = Me {
        labels: [("rr".to_string(), "yes".to_string())].into(),
        cluster_id: Some("203.0.113.250".parse().unwrap()),
        ..me("rr", "192.0.2.9")
    };
    let got: Vec<(String, bool)> =
        plan(&me_rr, &off.clone().into(), &nodes, &peers).into_iter().map(|p| (p.name, p.rr_client)).collect();
    assert_eq!(got, [("Node_192_0_2_1".to_string(), true), ("Node_192_0_2_2".to_string(), true)]);
    let me_a = me("a", "192.0.2.1");
    let got = plan(&me_a, &off.clone().into(), &nodes, &peers);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].kind, got[0].rr_client), (PeerType::RouteReflector, false));
    let before_its_cluster_id = PlannedPeer { kind: PeerType::NodeSpecific, ..got[0].clone() };
    assert!(got[0].same_session(&before_its_cluster_id), "the peer type alone keeps the session");
    assert!(!got[0].same_session(&PlannedPeer { asn: 1, ..got[0].clone() }), "another AS does not");
}

#[test]
fn a_dynamic_range_template_carries_the_range_family_and_needs_an_address_of_it() {
    let me = Me {
        address: None,
        router_id: "10.0.0.9".parse().unwrap(),
        address6: Some("2001:db8::9".parse().unwrap()),
        cluster_id: Some("10.0.0.1".parse().unwrap()),
        ..me("rr", "192.0.2.254")
    };
    let t = super::dynamic_template(&me, "2001:db8::/64".parse().unwrap()).unwrap();
    assert_eq!(t.session.local.families, vec![Family::IPV6_UNICAST]);
    assert_eq!(t.export.local_addr, "2001:db8::9".parse::<IpAddr>().unwrap());
    assert!(t.export.rr_client);
    let e = super::dynamic_template(&me, "192.0.2.0/24".parse().unwrap()).unwrap_err();
    assert!(e.contains("192.0.2.0/24") && e.contains("bgp.ipv4Address"), "{e}");
    let v4 = Me { address: Some("192.0.2.9".parse().unwrap()), address6: None, ..me };
    let t = super::dynamic_template(&v4, "192.0.2.0/24".parse().unwrap()).unwrap();
    assert_eq!(t.session.local.families, vec![Family::IPV4_UNICAST]);
    assert_eq!(t.export.local_addr, "192.0.2.9".parse::<IpAddr>().unwrap());
    assert!(super::dynamic_template(&v4, "2001:db8::/64".parse().unwrap()).unwrap_err().contains("bgp.ipv6Address"));
}
