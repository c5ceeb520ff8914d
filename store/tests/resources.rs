//! Calico v3 YAML as operators write it for calicoctl: parsed, defaulted and
//! validated; bad documents rejected with the document, field and value.

#![allow(clippy::unwrap_used)]

use tortie_store::resources::*;

/// An operator's calicoctl YAML, as Calico's docs show it.
const CALICOCTL_YAML: &str = r#"
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  logSeverityScreen: Info
  nodeToNodeMeshEnabled: false
  asNumber: 63400
  serviceClusterIPs:
    - cidr: 198.18.96.0/20
  communities:
    - name: bgp-large-community
      value: 63400:300:100
  prefixAdvertisements:
    - cidr: 198.18.0.0/16
      communities:
        - bgp-large-community
        - 63400:120
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: rack1-tor
spec:
  peerIP: 192.0.2.254
  asNumber: "64567"
  nodeSelector: rack == 'rack-1'
  filters:
    - export-pods-only
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: peer-with-route-reflectors
spec:
  nodeSelector: all()
  peerSelector: route-reflector == 'true'
---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata:
  name: export-pods-only
spec:
  exportV4:
    - action: Accept
      matchOperator: In
      cidr: 198.18.0.0/16
      prefixLength:
        min: 24
        max: 32
    - action: Reject
---
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node-1
  labels:
    rack: rack-1
    route-reflector: "true"
spec:
  bgp:
    ipv4Address: 192.0.2.1/24
    asNumber: 64512
    routeReflectorClusterID: 224.0.0.1
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 198.18.0.0/16
  ipipMode: CrossSubnet
  natOutgoing: true
---
apiVersion: projectcalico.org/v3
kind: IPAMConfig
metadata:
  name: default
spec:
  strictAffinity: false
  maxBlocksPerHost: 4
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-tcp-6379
  namespace: production
spec:
  selector: role == 'database'
  types:
    - Ingress
    - Egress
  ingress:
    - action: Allow
      metadata:
        annotations: {}
      protocol: TCP
      source:
        selector: role == 'frontend'
      destination:
        ports:
          - 6379
  egress:
    - action: Allow
"#;

#[test]
fn calicoctl_yaml_applies_with_calico_defaults() {
    // A rule's `metadata` (annotations) is kept, as calicoctl keeps it.
    let docs = parse_documents(CALICOCTL_YAML).unwrap();
    let kinds: Vec<Kind> = docs.iter().map(Resource::kind).collect();
    assert_eq!(
        kinds,
        vec![
            Kind::BgpConfiguration,
            Kind::BgpPeer,
            Kind::BgpPeer,
            Kind::BgpFilter,
            Kind::Node,
            Kind::IpPool,
            Kind::IpamConfig,
            Kind::NetworkPolicy
        ]
    );
    let Resource::BgpConfiguration(bgp) = &docs[0] else { panic!() };
    assert_eq!(
        (bgp.spec.as_number, bgp.spec.node_to_node_mesh_enabled, bgp.spec.listen_port),
        (Some(63400), Some(false), Some(179))
    );
    let Resource::BgpPeer(peer) = &docs[1] else { panic!() };
    assert_eq!(peer.spec.as_number, Some(64567), "AS given as a string");
    let Resource::IpPool(pool) = &docs[5] else { panic!() };
    assert_eq!(
        (pool.spec.block_size, pool.spec.ipip_mode, pool.spec.vxlan_mode),
        (Some(26), Some(EncapMode::CrossSubnet), Some(EncapMode::Never))
    );
    assert_eq!(pool.spec.node_selector.as_deref(), Some("all()"));
    let Resource::NetworkPolicy(np) = &docs[7] else { panic!() };
    assert_eq!(np.metadata.namespace.as_deref(), Some("production"));
    assert_eq!(docs[7].key(), "/calico/resources/v3/projectcalico.org/networkpolicies/production/allow-tcp-6379");
    assert_eq!(docs[5].key(), "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool");
}

#[test]
fn stored_form_reads_back_with_its_revision() {
    let yaml = CALICOCTL_YAML.replace("      metadata:\n        annotations: {}\n", "");
    for r in parse_documents(&yaml).unwrap() {
        let back = Resource::from_stored(r.kind(), &r.to_json(), 42).unwrap();
        assert_eq!(back.metadata().resource_version.as_deref(), Some("42"));
        assert_eq!(back.to_json(), r.to_json(), "{:?}", r.kind());
        // And its YAML applies again unchanged (calicoctl get -o yaml | calicoctl apply).
        assert_eq!(parse_documents(&back.to_yaml()).unwrap()[0].to_json(), r.to_json());
    }
}

fn error_of(yaml: &str) -> String {
    parse_documents(yaml).unwrap_err().to_string()
}

#[test]
fn bad_documents_name_document_field_and_value() {
    let head = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\nspec:\n";
    let cases = [
        ("kind: Pod\napiVersion: projectcalico.org/v3\nmetadata: {name: x}", &["document 1", "unknown kind `Pod`"][..]),
        ("apiVersion: v1\nkind: IPPool\nmetadata: {name: x}", &["apiVersion", "`v1`"]),
        (
            &format!("{head}  cidr: 198.18.0.0/16\n  ipipMod: Always\n"),
            &["spec", "unknown field `ipipMod`", "ipipMode"],
        ),
        (&format!("{head}  cidr: 198.18.0.300/16\n"), &["spec.cidr", "invalid IP address syntax"]),
        (&format!("{head}  cidr: 198.18.1.0/16\n"), &["spec.cidr", "198.18.1.0/16", "did you mean 198.18.0.0/16"]),
        (&format!("{head}  cidr: 198.18.0.0/16\n  blockSize: 19\n"), &["spec.blockSize", "`19`", "20–32"]),
        (&format!("{head}  cidr: 2001:db8::/48\n  ipipMode: Always\n"), &["spec.ipipMode", "IPv4 only"]),
        (
            &format!("{head}  cidr: 198.18.0.0/16\n  ipipMode: Sometimes\n"),
            &["spec.ipipMode", "unknown variant `Sometimes`"],
        ),
        (
            &format!("{head}  cidr: 198.18.0.0/16\n  nodeSelector: rack = 'x'\n"),
            &["spec.nodeSelector", "rack = 'x'", "operator"],
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: t}\nspec: {peerIP: 192.0.2.300, asNumber: 1}",
            &["spec.peerIP", "192.0.2.300"],
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: t}\nspec: {peerIP: 192.0.2.3, asNumber: 1.x}",
            &["spec.asNumber", "1.x"],
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: t}\nspec: {peerIP: 192.0.2.3}",
            &["spec.asNumber", "required with peerIP"],
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: Bad_Name}\nspec: {cidr: 198.18.0.0/16}",
            &["metadata.name", "Bad_Name"],
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p, namespace: x}\nspec: {cidr: 198.18.0.0/16}",
            &["metadata.namespace", "not namespaced"],
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: IPAMConfig\nmetadata: {name: other}\nspec: {}",
            &["metadata.name", "`default`"],
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  ingress:\n  - action: Allow\n    protocol: ICMP\n    destination: {ports: [80]}\n",
            &["spec.ingress[0].destination.ports", "TCP, UDP or SCTP"],
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  ingress:\n  - action: Allow\n    protocol: TCP\n    source: {ports: ['90:80']}\n",
            &["spec.ingress[0].source.ports[0]", "90:80"],
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  egress:\n  - action: Maybe\n",
            &["spec.egress[0].action", "unknown variant `Maybe`"],
        ),
        ("key: [unclosed", &["document 1", "malformed YAML"]),
    ];
    for (yaml, needles) in cases {
        let err = error_of(yaml);
        for n in needles {
            assert!(err.contains(n), "{yaml:?}\n-> {err}\n(missing {n:?})");
        }
    }
}

#[test]
fn errors_point_at_the_right_document() {
    let good = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: a}\nspec: {cidr: 198.18.0.0/16}\n";
    let bad = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: b}\nspec: {cidr: nope}\n";
    let err = parse_documents(&format!("{good}---\n{good}---\n{bad}")).unwrap_err();
    assert_eq!(err.document, 3);
    assert!(err.to_string().starts_with("document 3 (IPPool b): spec.cidr"), "{err}");
    // JSON is YAML too.
    let json = r#"{"apiVersion":"projectcalico.org/v3","kind":"Node","metadata":{"name":"n1"},"spec":{"bgp":{"ipv4Address":"192.0.2.7/24"}}}"#;
    assert_eq!(parse_documents(json).unwrap()[0].kind(), Kind::Node);
}

#[test]
fn pools_overlap_when_they_share_addresses() {
    let pool = |cidr: &str| IpPoolSpec { cidr: Some(cidr.parse().unwrap()), ..IpPoolSpec::default() };
    assert!(pool("198.18.0.0/16").overlaps(&pool("198.18.4.0/24")));
    assert!(pool("198.18.4.0/24").overlaps(&pool("198.18.0.0/16")));
    assert!(!pool("198.18.0.0/16").overlaps(&pool("198.19.0.0/16")));
    assert!(pool("2001:db8:100::/48").overlaps(&pool("2001:db8:100:1::/64")), "IPv6 too");
    assert!(!pool("2001:db8:100::/48").overlaps(&pool("2001:db8:101::/48")));
    assert!(!pool("198.18.0.0/16").overlaps(&pool("2001:db8:100::/48")), "never across families");
}

#[test]
fn ipv6_pools_take_calicos_block_size_and_refuse_one_outside_116_to_128() {
    let docs = |spec: &str| {
        parse_documents(&format!(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: v6}}\nspec: {spec}\n"
        ))
    };
    let ok = docs("{cidr: '2001:db8:100::/48'}").unwrap();
    let Resource::IpPool(p) = &ok[0] else { panic!() };
    assert_eq!(p.spec.block_size, Some(122), "Calico's IPv6 default");
    let err = docs("{cidr: '2001:db8:100::/48', blockSize: 115}").unwrap_err().to_string();
    assert!(err.contains("spec.blockSize: `115`: must be 116–128 for this address family"), "{err}");
}

#[test]
fn cli_kind_names() {
    for (arg, kind) in [
        ("ippools", Kind::IpPool),
        ("IPPool", Kind::IpPool),
        ("pool", Kind::IpPool),
        ("bgppeer", Kind::BgpPeer),
        ("wep", Kind::WorkloadEndpoint),
        ("gnp", Kind::GlobalNetworkPolicy),
        ("nodes", Kind::Node),
    ] {
        assert_eq!(Kind::from_cli(arg), Some(kind), "{arg}");
    }
    assert_eq!(Kind::from_cli("pods"), None);
}

#[test]
fn the_example_files_parse_and_validate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let docs = parse_documents(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            kinds.extend(docs.iter().map(Resource::kind));
        }
    }
    for kind in [Kind::IpPool, Kind::BgpConfiguration, Kind::BgpPeer, Kind::BgpFilter] {
        assert!(kinds.contains(&kind), "{kind:?} in the examples: {kinds:?}");
    }
}
