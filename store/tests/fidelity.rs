//! What `apply` accepts it enforces: FelixConfiguration at Calico's
//! defaults or tortie's honoured fields, network sets, the default tier,
//! calicoctl's leniencies, and refusals that name every bad field.

#![allow(clippy::unwrap_used)]

use tortie_store::resources::*;

fn error_of(yaml: &str) -> String {
    parse_documents(yaml).unwrap_err().to_string()
}

const HEAD: &str = "apiVersion: projectcalico.org/v3\n";

/// The FelixConfiguration Calico's operator writes on a new cluster, plus
/// Calico's defaults spelled as people write them.
const OPERATOR_DEFAULT: &str = r#"
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata:
  name: default
spec:
  bpfConnectTimeLoadBalancing: TCP
  bpfHostNetworkedNATWithoutCTLB: Enabled
  bpfLogLevel: ""
  floatingIPs: Disabled
  healthPort: 9099
  logSeverityScreen: Info
  routeRefreshInterval: 1m30s
  iptablesMarkMask: "0xffff0000"
  kubeNodePortRanges: ["30000:32767"]
  vxlanVNI: 4096
  defaultEndpointToHostAction: Drop
  natOutgoingAddress: ""
  reportingInterval: 0s
  ipipEnabled: true
  failsafeInboundHostPorts:
  - {protocol: TCP, port: 22, net: ""}
  - {protocol: udp, port: 68, net: 192.0.2.0/24}
"#;

#[test]
fn felix_configuration_at_calicos_defaults_applies_and_honoured_fields_are_typed() {
    let docs = parse_documents(OPERATOR_DEFAULT).unwrap();
    let Resource::FelixConfiguration(f) = &docs[0] else { panic!("{docs:?}") };
    assert_eq!(f.spec.endpoint_to_host(), Some(EndpointToHostAction::Drop));
    assert_eq!(f.spec.nat_outgoing_address, None, "empty is unset");
    let ports = f.spec.failsafe_inbound_host_ports.as_ref().unwrap();
    assert_eq!(
        ports.iter().map(|p| (p.protocol_number(), p.port)).collect::<Vec<_>>(),
        [(Some(6), 22), (Some(17), 68)]
    );
    // It reads back as it was stored.
    let again = Resource::from_stored(Kind::FelixConfiguration, &docs[0].to_json(), 7).unwrap();
    assert_eq!(again.to_json(), docs[0].to_json());
}

#[test]
fn felix_configuration_names_every_field_tortie_cannot_honour() {
    let yaml = format!(
        "{HEAD}kind: FelixConfiguration\nmetadata: {{name: default}}\nspec:\n  bpfEnabled: true\n  wireguardEnabled: true\n  logSeverityScreen: Info\n  noSuchField: 1\n  defaultEndpointToHostAction: Maybe\n  routeRefreshInterval: 500ms\n  nftablesRefreshInterval: soon\n  ipipMTU: 100\n  prometheusMetricsHost: metrics.example\n  chainInsertMode: Append\n  reportingInterval: 500ms\n  removeExternalRoutes: false\n"
    );
    let err = error_of(&yaml);
    for needle in [
        "spec.bpfEnabled: `true`: tortie supports only Calico's default here (false)",
        "spec.wireguardEnabled: `true`",
        "spec.noSuchField: `1`: not a FelixConfiguration field",
        "spec.defaultEndpointToHostAction: `Maybe`: one of Drop, Return, Accept",
        "spec.routeRefreshInterval: `500ms`: a duration of at least 1s",
        "spec.nftablesRefreshInterval: `soon`",
        "spec.ipipMTU: `100`: 0 (the underlay's less 20) or 576–65515",
        "spec.prometheusMetricsHost: `metrics.example`",
        "spec.chainInsertMode: `Append`: tortie supports only Calico's default here (`Insert`): tortie's rules live in their own nftables table",
        "spec.reportingInterval: `500ms`: 0s (off) or a duration of at least 1s",
    ] {
        assert!(err.contains(needle), "{err}\n(missing {needle:?})");
    }
    assert!(!err.contains("logSeverityScreen"), "Calico's default is never an error: {err}");
    assert!(!err.contains("removeExternalRoutes"), "tortie never removes others' routes: {err}");
    let node = format!("{HEAD}kind: FelixConfiguration\nmetadata: {{name: rack1}}\nspec: {{}}\n");
    assert!(error_of(&node).contains("`node.<node name>`"));
}

#[test]
fn node_felix_configuration_overrides_the_default_field_by_field() {
    let spec = |yaml: &str| match parse_documents(&format!(
        "{HEAD}kind: FelixConfiguration\nmetadata: {{name: default}}\nspec: {yaml}\n"
    ))
    .unwrap()
    .remove(0)
    {
        Resource::FelixConfiguration(f) => f.spec,
        _ => unreachable!(),
    };
    let default = spec(
        "{defaultEndpointToHostAction: Return, natOutgoingAddress: 192.0.2.9, iptablesRefreshInterval: 1m, logSeverityScreen: Warning}",
    );
    let node =
        spec("{defaultEndpointToHostAction: accept, nftablesRefreshInterval: 10s, prometheusMetricsEnabled: true}");
    let merged = FelixConfigurationSpec::merged(Some(&default), Some(&node));
    assert_eq!(merged.endpoint_to_host(), Some(EndpointToHostAction::Accept));
    assert_eq!(merged.nat_outgoing_address, Some("192.0.2.9".parse().unwrap()));
    assert_eq!(merged.policy_refresh(), Some(std::time::Duration::from_secs(10)), "nftables' name wins");
    assert_eq!(merged.log_level(), Some("warn"));
    assert_eq!(merged.metrics_listen(), Some("0.0.0.0:9091".parse().unwrap()), "Calico's defaults");
    assert_eq!(
        FelixConfigurationSpec::merged(Some(&default), None).policy_refresh(),
        Some(std::time::Duration::from_secs(60))
    );
    assert_eq!(FelixConfigurationSpec::merged(None, None).endpoint_to_host(), None);
}

#[test]
fn untracked_and_pre_dnat_policies_are_refused_by_name() {
    let yaml = format!(
        "{HEAD}kind: GlobalNetworkPolicy\nmetadata: {{name: g}}\nspec:\n  selector: has(host)\n  doNotTrack: true\n  applyOnForward: true\n  ingress: [{{action: Allow}}]\n"
    );
    let err = error_of(&yaml);
    assert!(err.contains("spec.doNotTrack: `true`: untracked policy is not supported"), "{err}");
    assert!(!err.contains("applyOnForward"), "applyOnForward is enforced, not refused: {err}");
    let pre = format!(
        "{HEAD}kind: GlobalNetworkPolicy\nmetadata: {{name: g}}\nspec: {{preDNAT: true, applyOnForward: true}}\n"
    );
    assert!(error_of(&pre).contains("spec.preDNAT: `true`"));
    // BGP documents an older tortie stored unchecked still load (their
    // consumers fall back to the defaults); apply refuses each.
    let stored: [(Kind, &str, &str); 4] = [
        (
            Kind::BgpPeer,
            r#"{"metadata":{"name":"p"},"spec":{"peerIP":"192.0.2.9","asNumber":65000,"maxRestartTime":"2h"}}"#,
            "spec.maxRestartTime",
        ),
        (
            Kind::BgpPeer,
            r#"{"metadata":{"name":"p"},"spec":{"peerIP":"192.0.2.9","asNumber":65000,"numAllowedLocalASNumbers":20}}"#,
            "spec.numAllowedLocalASNumbers",
        ),
        (
            Kind::BgpPeer,
            r#"{"metadata":{"name":"p","annotations":{"tortie.io/hold":"9s"}},"spec":{"peerIP":"192.0.2.9","asNumber":65000}}"#,
            "metadata.annotations.tortie.io/hold",
        ),
        (Kind::BgpConfiguration, r#"{"metadata":{"name":"node.n1"},"spec":{"asNumber":65000}}"#, "spec.asNumber"),
    ];
    for (kind, json, field) in stored {
        let full = format!(r#"{{"apiVersion":"projectcalico.org/v3","kind":"{}",{}"#, kind.info().name, &json[1..]);
        assert!(Resource::from_stored(kind, full.as_bytes(), 5).is_ok(), "{full} loads");
        let err = parse_documents(&full).unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
    // A policy an older tortie stored still loads: felix, not the loader, refuses it.
    let stored = br#"{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkPolicy","metadata":{"name":"g"},"spec":{"doNotTrack":true,"applyOnForward":true}}"#;
    let Resource::GlobalNetworkPolicy(old) = Resource::from_stored(Kind::GlobalNetworkPolicy, stored, 3).unwrap()
    else {
        panic!()
    };
    assert_eq!(old.spec.unsupported_modes().len(), 1);
    let defaults = format!(
        "{HEAD}kind: GlobalNetworkPolicy\nmetadata: {{name: g}}\nspec: {{doNotTrack: false, preDNAT: false, applyOnForward: false}}\n"
    );
    assert!(parse_documents(&defaults).is_ok(), "Calico's defaults are never an error");
}

#[test]
fn only_the_default_tier_exists() {
    let policy = |tier: &str| {
        format!(
            "{HEAD}kind: NetworkPolicy\nmetadata: {{name: p, namespace: web}}\nspec: {{tier: {tier}, selector: all()}}\n"
        )
    };
    assert!(parse_documents(&policy("default")).is_ok(), "Calico fills in `tier: default`");
    assert!(error_of(&policy("security")).contains("spec.tier: `security`: tortie has only the `default` tier"));
    let tier = |name: &str, action: &str| {
        format!("{HEAD}kind: Tier\nmetadata: {{name: {name}}}\nspec: {{order: 1000, defaultAction: {action}}}\n")
    };
    assert!(parse_documents(&tier("default", "Deny")).is_ok());
    assert!(error_of(&tier("security", "Deny")).contains("metadata.name: `security`"));
    assert!(error_of(&tier("default", "Pass")).contains("defaultAction"));
}

#[test]
fn calicoctl_leniencies_lists_ipamconfiguration_unquoted_labels_rule_annotations() {
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n- {HEAD}  kind: IPPool\n  metadata: {{name: a}}\n  spec: {{cidr: 198.18.0.0/16}}\n- {HEAD}  kind: IPAMConfiguration\n  metadata: {{name: default}}\n  spec: {{strictAffinity: true}}\n"
    );
    let docs = parse_documents(&list).unwrap();
    assert_eq!(docs.iter().map(Resource::kind).collect::<Vec<_>>(), [Kind::IpPool, Kind::IpamConfig]);
    let bad_item = format!(
        "apiVersion: v1\nkind: List\nitems:\n- {HEAD}  kind: IPPool\n  metadata: {{name: a}}\n  spec: {{cidr: nope}}\n"
    );
    assert!(error_of(&bad_item).contains("document 1 (List item 1) (IPPool a): spec.cidr"), "{}", error_of(&bad_item));

    let labelled = format!(
        "{HEAD}kind: GlobalNetworkSet\nmetadata:\n  name: bad\n  labels: {{enabled: true, rank: 5, role: bad-actors}}\nspec:\n  nets: [198.51.100.0/28, 203.0.113.0/24]\n"
    );
    let docs = parse_documents(&labelled).unwrap();
    let labels = &docs[0].metadata().labels;
    assert_eq!((labels["enabled"].as_str(), labels["rank"].as_str()), ("true", "5"));
    let float = labelled.replace("rank: 5", "version: 1.10");
    assert!(error_of(&float).contains("quote it"), "1.10 would read as 1.1: {}", error_of(&float));
    assert!(error_of("apiVersion: v1\nkind: List\n").contains("items"), "a List without items is refused");

    let annotated = format!(
        "{HEAD}kind: GlobalNetworkPolicy\nmetadata: {{name: g}}\nspec:\n  ingress:\n  - action: Deny\n    metadata: {{annotations: {{reason: known bad}}}}\n    source: {{selector: role == 'bad-actors'}}\n"
    );
    assert!(parse_documents(&annotated).is_ok());
}

#[test]
fn network_sets_hold_nets_and_namespaced_ones_default_their_namespace() {
    let yaml = format!(
        "{HEAD}kind: NetworkSet\nmetadata: {{name: db, labels: {{role: db}}}}\nspec: {{nets: [198.51.100.0/28]}}\n---\n{HEAD}kind: GlobalNetworkSet\nmetadata: {{name: bad}}\nspec: {{nets: [2001:db8::/32]}}\n"
    );
    let docs = parse_documents(&yaml).unwrap();
    assert_eq!(docs[0].key(), format!("{KEY_PREFIX}networksets/default/db"));
    assert_eq!(docs[1].key(), format!("{KEY_PREFIX}globalnetworksets/bad"));
    let bad = format!("{HEAD}kind: GlobalNetworkSet\nmetadata: {{name: bad}}\nspec: {{nets: [198.51.100.300/28]}}\n");
    assert!(error_of(&bad).contains("spec.nets[0]"), "{}", error_of(&bad));
}

#[test]
fn every_unknown_field_of_a_document_is_named_not_only_the_first() {
    let yaml = format!(
        "{HEAD}kind: IPPool\nmetadata: {{name: p, colour: red}}\nspec:\n  cidr: 198.18.0.0/16\n  ipipMod: Always\n  natOutgoin: true\n---\n{HEAD}kind: GlobalNetworkPolicy\nmetadata: {{name: g}}\nspec:\n  ingress:\n  - action: Allow\n    sorce: {{nets: [192.0.2.0/24]}}\n    destination: {{prts: [80]}}\n"
    );
    let err = error_of(&yaml);
    for needle in [
        "metadata.colour: unknown field `colour`",
        "spec.ipipMod: unknown field `ipipMod`",
        "spec.natOutgoin: unknown field",
    ] {
        assert!(err.contains(needle), "{err}\n(missing {needle:?})");
    }
    assert!(err.contains("expected one of"), "serde's list of the fields there is kept: {err}");
    let policy = yaml.split("---\n").nth(1).unwrap();
    let err = error_of(policy);
    assert!(err.contains("spec.ingress[0].sorce: unknown field `sorce`"), "{err}");
    assert!(err.contains("spec.ingress[0].destination.prts: unknown field `prts`"), "{err}");
}

#[test]
fn bad_numbers_name_the_field_and_the_value_without_rust_types() {
    let cases = [
        (
            format!("{HEAD}kind: BGPPeer\nmetadata: {{name: t}}\nspec: {{peerIP: 192.0.2.3, asNumber: -1}}\n"),
            "spec.asNumber: `-1`: expected an AS number",
        ),
        (
            format!(
                "{HEAD}kind: GlobalNetworkPolicy\nmetadata: {{name: g}}\nspec:\n  ingress: [{{action: Allow, protocol: TCP, destination: {{ports: [70000]}}}}]\n"
            ),
            "spec.ingress[0].destination.ports[0]: `70000`: expected a port (0–65535)",
        ),
        (
            format!("{HEAD}kind: IPPool\nmetadata: {{name: p}}\nspec: {{cidr: 198.18.0.0/16, blockSize: 300}}\n"),
            "spec.blockSize: `300`: expected a whole number 0–255",
        ),
        (
            format!(
                "{HEAD}kind: GlobalNetworkPolicy\nmetadata: {{name: g}}\nspec:\n  ingress: [{{action: Allow, protocol: 300}}]\n"
            ),
            "spec.ingress[0].protocol: `300`: expected a protocol",
        ),
    ];
    for (yaml, want) in cases {
        let err = error_of(&yaml);
        assert!(err.contains(want), "{err}\n(missing {want:?})");
        for rust in ["u8", "u16", "u32", "untagged", "enum", "Raw"] {
            assert!(!err.contains(rust), "a Rust type name in: {err}");
        }
    }
}

#[test]
fn vxlan_mode_is_accepted_on_pools_of_both_families_and_its_felix_settings_are_checked() {
    let pool =
        |cidr: &str, spec: &str| format!("{HEAD}kind: IPPool\nmetadata: {{name: p}}\nspec: {{cidr: {cidr}, {spec}}}\n");
    for mode in ["Never", "Always", "CrossSubnet"] {
        assert!(parse_documents(&pool("198.18.0.0/16", &format!("vxlanMode: {mode}"))).is_ok(), "{mode}");
    }
    let err = error_of(&pool("198.18.0.0/16", "vxlanMode: Always, ipipMode: CrossSubnet"));
    assert!(err.contains("spec.vxlanMode: `Always`: IPIP and VXLAN cannot both be on"), "{err}");
    for mode in ["Never", "Always", "CrossSubnet"] {
        assert!(parse_documents(&pool("'2001:db8:100::/48'", &format!("vxlanMode: {mode}"))).is_ok(), "IPv6 {mode}");
    }
    let err = error_of(&pool("'2001:db8:100::/48'", "ipipMode: Always"));
    assert!(err.contains("spec.ipipMode: `Always`: IPIP carries IPv4 only"), "{err}");
    let felix = |spec: &str| format!("{HEAD}kind: FelixConfiguration\nmetadata: {{name: default}}\nspec: {spec}\n");
    assert!(
        parse_documents(&felix(
            "{vxlanVNI: 4097, vxlanPort: 8472, vxlanMTU: 1400, vxlanMTUV6: 1380, vxlanEnabled: true}"
        ))
        .is_ok()
    );
    for (spec, want) in [
        ("{vxlanVNI: 16777216}", "spec.vxlanVNI: `16777216`: 1–16777215"),
        ("{vxlanVNI: 0}", "spec.vxlanVNI: `0`"),
        ("{vxlanPort: 0}", "spec.vxlanPort: `0`: 1–65535"),
        ("{vxlanMTU: 100}", "spec.vxlanMTU: `100`: 0 (the underlay's less 50) or 576–65485"),
        ("{vxlanMTUV6: 1200}", "spec.vxlanMTUV6: `1200`: 0 (the underlay's less 70) or 1280–65465"),
        ("{routeSource: WorkloadIPs}", "from IPAM block affinities"),
    ] {
        let err = error_of(&felix(spec));
        assert!(err.contains(want), "{spec}: {err}\n(missing {want:?})");
    }
    let node =
        |mac: &str| format!("{HEAD}kind: Node\nmetadata: {{name: n1}}\nspec: {{vxlanTunnelMACAddr: \"{mac}\"}}\n");
    assert!(parse_documents(&node("66:1c:7e:0a:3b:52")).is_ok());
    let err = error_of(&node("66:1c:7e:0a:3b"));
    assert!(err.contains("spec.vxlanTunnelMACAddr: `66:1c:7e:0a:3b`: a MAC address"), "{err}");
    let err = error_of(&node("01:00:5e:00:00:01"));
    assert!(err.contains("spec.vxlanTunnelMACAddr: `01:00:5e:00:00:01`: a unicast MAC address"), "{err}");
    let v6 = format!(
        "{HEAD}kind: Node\nmetadata: {{name: n1}}\nspec: {{ipv6VXLANTunnelAddr: '2001:db8:100::', vxlanTunnelMACAddrV6: 66:1c:7e:0a:3b:5}}\n"
    );
    assert!(error_of(&v6).contains("spec.vxlanTunnelMACAddrV6: `66:1c:7e:0a:3b:5`: a MAC address"));
}

#[test]
fn bgp_configuration_refuses_what_a_node_may_not_set() {
    let doc =
        |name: &str, spec: &str| format!("{HEAD}kind: BGPConfiguration\nmetadata: {{name: {name}}}\nspec: {spec}\n");
    let err = error_of(&doc("node.n1", "{asNumber: 65001}"));
    assert!(err.contains("spec.asNumber") && err.contains("only the `default` BGPConfiguration"), "{err}");
    let err = error_of(&doc("node.n1", "{serviceClusterIPs: [{cidr: 198.51.100.0/24}]}"));
    assert!(err.contains("spec.serviceClusterIPs"), "{err}");
    let v6 = doc("default", "{serviceLoadBalancerIPs: [{cidr: '2001:db8:300::/120'}]}");
    assert!(parse_documents(&v6).is_ok(), "IPv6 service ranges are taken (dual stack)");
    let err = error_of(&doc("default", "{nodeMeshMaxRestartTime: 2h}"));
    assert!(err.contains("spec.nodeMeshMaxRestartTime: `2h`: whole seconds up to 4095"), "{err}");
    let err = error_of(&format!(
        "{HEAD}kind: BGPPeer\nmetadata: {{name: p}}\nspec: {{peerIP: 192.0.2.9, asNumber: 65000, maxRestartTime: 1.5s}}\n"
    ));
    assert!(err.contains("spec.maxRestartTime: `1.5s`"), "{err}");
    let v6 = "{HEAD}kind: BGPFilter\nmetadata: {name: f}\nspec: {importV6: [{action: Reject, cidr: '2001:db8::/32', matchOperator: In}], exportV6: [{action: Reject, source: RemotePeers}]}\n";
    assert!(parse_documents(&v6.replace("{HEAD}", HEAD)).is_ok(), "IPv6 filter rules are taken (dual stack)");
    let err = error_of(&format!(
        "{HEAD}kind: BGPFilter\nmetadata: {{name: f}}\nspec: {{importV6: [{{action: Accept, interface: 'eth*'}}]}}\n"
    ));
    assert!(err.contains("spec.importV6[0].interface: `eth*`"), "{err}");
    let filter =
        |rule: &str| error_of(&format!("{HEAD}kind: BGPFilter\nmetadata: {{name: f}}\nspec: {{exportV4: [{rule}]}}\n"));
    assert!(filter("{action: Accept, interface: 'eth*'}").contains("spec.exportV4[0].interface: `eth*`"));
    assert!(filter("{action: Accept, priority: 512}").contains("spec.exportV4[0].priority: `512`"));
    let err = filter("{action: Accept, operations: [{setPriority: {value: 5}}]}");
    assert!(err.contains("spec.exportV4[0].operations[0].setPriority"), "{err}");
    let err = filter("{action: Reject, operations: [{addCommunity: {value: '65000:1'}}]}");
    assert!(err.contains("spec.exportV4[0].operations: `1`: only with action Accept"), "{err}");
    let err = filter("{action: Accept, communities: {values: ['65000:1:2']}}");
    assert!(err.contains("large communities are not matched yet"), "{err}");
    let err = filter("{action: Accept, peerType: external}");
    assert!(err.contains("spec.exportV4[0].peerType: `external`: eBGP or iBGP"), "{err}");
    let peer = |extra: &str| {
        format!("{HEAD}kind: BGPPeer\nmetadata: {{name: p}}\nspec: {{peerIP: 192.0.2.9, asNumber: 65000{extra}}}\n")
    };
    let defaults =
        peer(", restartMode: GracefulRestart, birdGatewayMode: Recursive, reachableBy: '', localWorkloadSelector: ''");
    assert!(parse_documents(&defaults).is_ok(), "Calico's defaults are never an error");
    let ok = parse_documents(&peer(", restartMode: LongLivedGracefulRestart, maxRestartTime: 24h0m0s"));
    assert!(ok.is_ok(), "RFC 9494's 24-bit stale time: {ok:?}");
    let err = error_of(&peer(", restartMode: LongLivedGracefulRestart, maxRestartTime: 5000h"));
    assert!(err.contains("spec.maxRestartTime: `5000h`: under LongLivedGracefulRestart"), "{err}");
    let err = error_of(&peer(", maxRestartTime: 24h0m0s"));
    assert!(err.contains("spec.maxRestartTime: `24h0m0s`: whole seconds up to 4095"), "{err}");
    let err = error_of(&peer(", restartMode: Eventually"));
    assert!(err.contains("spec.restartMode: `Eventually`: GracefulRestart or LongLivedGracefulRestart"), "{err}");
    assert!(error_of(&peer(", birdGatewayMode: DirectIfDirectlyConnected")).contains("spec.birdGatewayMode"));
    assert!(error_of(&peer(", reachableBy: 192.0.2.254")).contains("spec.reachableBy: `192.0.2.254`"));
    assert!(error_of(&peer(", localWorkloadSelector: all()")).contains("spec.localWorkloadSelector"));
    // Calico's defaults in a node's document are no error (older tortie filled them in).
    let ok = parse_documents(&doc("node.n1", "{asNumber: 64512, nodeToNodeMeshEnabled: true, listenPort: 1179}"));
    assert!(ok.is_ok(), "{ok:?}");
}
