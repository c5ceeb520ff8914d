//! The contract "what tortie accepts, it does", as a guard: every field of
//! every resource struct is listed here with what acts on it — the place
//! outside `store/` that reads it, a refusal at apply for any value but
//! Calico's default, metadata kept as written (no behaviour in Calico
//! either), or an open issue that tracks a field still stored without
//! effect. A field added without an entry, an entry whose reader no longer
//! reads it, or an entry for a field that is gone fails this test.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;

/// What acts on a field.
enum Use {
    /// Read there (file under the workspace, text that reads it).
    Reads(&'static str, &'static str),
    /// Accepted only at Calico's default; anything else refused at apply.
    Refused,
    /// Kept as written; no behaviour (Calico's neither): metadata, notes.
    Kept,
    /// Stored without effect today; the issue that makes it work.
    Tracked(&'static str),
}

use Use::{Kept, Reads, Refused, Tracked};

const FIELDS: &[(&str, Use)] = &[
    // bgp.rs
    ("ServiceCidr.cidr", Reads("peering/src/advertise.rs", ".cidr.trunc()")),
    ("Community.name", Reads("peering/src/advertise.rs", ".name == c")),
    ("Community.value", Reads("peering/src/advertise.rs", ".value.as_str()")),
    ("PrefixAdvertisement.cidr", Reads("peering/src/advertise.rs", "p.cidr.trunc()")),
    ("PrefixAdvertisement.communities", Reads("peering/src/advertise.rs", "p.communities")),
    ("BgpConfigurationSpec.log_severity_screen", Reads("tortie/src/node/mod.rs", ".log_level()")),
    ("BgpConfigurationSpec.node_mesh_password", Reads("tortie/src/node/mod.rs", ".node_mesh_password")),
    ("BgpConfigurationSpec.node_to_node_mesh_enabled", Reads("peering/src/plan.rs", ".node_to_node_mesh_enabled")),
    ("BgpConfigurationSpec.as_number", Reads("peering/src/plan.rs", ".as_number")),
    ("BgpConfigurationSpec.listen_port", Reads("peering/src/plan.rs", ".listen_port")),
    ("BgpConfigurationSpec.service_cluster_ips", Reads("peering/src/advertise.rs", ".service_cluster_ips")),
    ("BgpConfigurationSpec.service_external_ips", Reads("peering/src/advertise.rs", ".service_external_ips")),
    ("BgpConfigurationSpec.service_load_balancer_ips", Reads("peering/src/advertise.rs", ".service_load_balancer_ips")),
    ("BgpConfigurationSpec.communities", Reads("peering/src/advertise.rs", "mine.communities")),
    ("BgpConfigurationSpec.prefix_advertisements", Reads("peering/src/advertise.rs", ".prefix_advertisements")),
    ("BgpConfigurationSpec.node_mesh_max_restart_time", Reads("peering/src/plan.rs", ".mesh_restart_time()")),
    ("BgpConfigurationSpec.bind_mode", Reads("peering/src/plan.rs", ".bind_mode")),
    ("SecretKeyRef.name", Reads("tortie/src/node/mod.rs", "join(&r.name)")),
    ("SecretKeyRef.key", Reads("tortie/src/node/mod.rs", "join(&r.key)")),
    ("PeerPassword.secret_key_ref", Reads("tortie/src/node/mod.rs", ".secret_key_ref")),
    ("BgpPeerSpec.node", Reads("peering/src/plan.rs", "&s.node")),
    ("BgpPeerSpec.node_selector", Reads("peering/src/plan.rs", "s.node_selector")),
    ("BgpPeerSpec.peer_ip", Reads("peering/src/plan.rs", ".peer_ip")),
    ("BgpPeerSpec.as_number", Reads("peering/src/plan.rs", ".as_number")),
    ("BgpPeerSpec.peer_selector", Reads("peering/src/plan.rs", ".peer_selector")),
    ("BgpPeerSpec.keep_original_next_hop", Reads("peering/src/plan.rs", ".keep_original_next_hop")),
    ("BgpPeerSpec.password", Reads("tortie/src/node/mod.rs", "spec.password")),
    ("BgpPeerSpec.source_address", Reads("peering/src/plan.rs", ".source_address")),
    ("BgpPeerSpec.max_restart_time", Reads("peering/src/plan.rs", ".restart_time()")),
    ("BgpPeerSpec.num_allowed_local_as_numbers", Reads("peering/src/plan.rs", ".num_allowed_local_as_numbers")),
    ("BgpPeerSpec.ttl_security", Reads("peering/src/plan.rs", ".ttl_security")),
    ("BgpPeerSpec.keepalive_time", Reads("peering/src/plan.rs", ".keepalive()")),
    ("BgpPeerSpec.local_as_number", Reads("peering/src/plan.rs", ".local_as_number")),
    ("BgpPeerSpec.next_hop_mode", Reads("peering/src/plan.rs", ".next_hop_mode")),
    ("BgpPeerSpec.reverse_peering", Reads("peering/src/plan.rs", ".reverse_peering")),
    ("BgpPeerSpec.restart_mode", Reads("peering/src/plan.rs", ".long_lived_stale_time()")),
    ("BgpPeerSpec.failure_detection_mode", Reads("peering/src/plan.rs", "bfd: s.bfd()")),
    ("BgpPeerSpec.bird_gateway_mode", Refused),
    ("BgpPeerSpec.reachable_by", Refused),
    ("BgpPeerSpec.local_workload_selector", Refused),
    ("SessionSettings.hold_time", Reads("peering/src/plan.rs", "p.session.hold_time")),
    ("SessionSettings.keepalive", Reads("peering/src/plan.rs", "p.session.keepalive")),
    ("SessionSettings.passive", Reads("peering/src/plan.rs", "p.session.passive")),
    ("SessionSettings.idle_hold", Reads("peering/src/plan.rs", "p.session.idle_hold")),
    ("SessionSettings.max_idle_hold", Reads("peering/src/plan.rs", "p.session.max_idle_hold")),
    ("SessionSettings.bfd", Reads("tortie/src/node/mod.rs", "p.session.bfd")),
    ("SessionSettings.bfd_interval", Reads("tortie/src/node/mod.rs", "p.session.bfd_interval")),
    ("SessionSettings.bfd_multiplier", Reads("tortie/src/node/mod.rs", "p.session.bfd_multiplier")),
    ("BgpPeerSpec.filters", Reads("tortie/src/node/mod.rs", ".filters")),
    ("PrefixLength.min", Reads("peering/src/filters.rs", "l.min")),
    ("PrefixLength.max", Reads("peering/src/filters.rs", "l.max")),
    ("BgpFilterRule.action", Reads("peering/src/filters.rs", "r.action")),
    ("BgpFilterRule.cidr", Reads("peering/src/filters.rs", "r.cidr")),
    ("BgpFilterRule.match_operator", Reads("peering/src/filters.rs", "r.match_operator")),
    ("BgpFilterRule.prefix_length", Reads("peering/src/filters.rs", "r.prefix_length")),
    ("BgpFilterRule.source", Reads("peering/src/filters.rs", "r.source")),
    ("BgpFilterRule.peer_type", Reads("peering/src/filters.rs", "r.peer_type")),
    ("BgpFilterRule.communities", Reads("peering/src/filters.rs", "r.communities")),
    ("BgpFilterRule.as_path_prefix", Reads("peering/src/filters.rs", "r.as_path_prefix")),
    ("BgpFilterRule.operations", Reads("peering/src/filters.rs", "r.operations")),
    ("BgpFilterRule.interface", Refused),
    ("BgpFilterRule.priority", Refused),
    ("CommunityMatch.values", Reads("peering/src/filters.rs", "c.values")),
    ("FilterOperation.add_community", Reads("peering/src/filters.rs", "op.add_community")),
    ("FilterOperation.prepend_as_path", Reads("peering/src/filters.rs", "op.prepend_as_path")),
    ("FilterOperation.set_priority", Refused),
    ("AddCommunity.value", Reads("peering/src/filters.rs", "a.value")),
    ("PrependAsPath.prefix", Reads("peering/src/filters.rs", "p.prefix")),
    ("BgpFilterSpec.export_v4", Reads("peering/src/filters.rs", ".export_v4")),
    ("BgpFilterSpec.import_v4", Reads("peering/src/filters.rs", ".import_v4")),
    ("BgpFilterSpec.export_v6", Reads("peering/src/filters.rs", "f.export_v6")),
    ("BgpFilterSpec.import_v6", Reads("peering/src/filters.rs", "f.import_v6")),
    // felix.rs
    ("ProtoPort.protocol", Reads("felix/src/policy/host.rs", "p.protocol_number()")),
    ("ProtoPort.port", Reads("felix/src/policy/host.rs", "p.port")),
    ("ProtoPort.net", Reads("felix/src/policy/host.rs", "p.net")),
    (
        "FelixConfigurationSpec.failsafe_inbound_host_ports",
        Reads("felix/src/policy/host.rs", ".failsafe_inbound_host_ports"),
    ),
    (
        "FelixConfigurationSpec.failsafe_outbound_host_ports",
        Reads("felix/src/policy/host.rs", ".failsafe_outbound_host_ports"),
    ),
    (
        "FelixConfigurationSpec.default_endpoint_to_host_action",
        Reads("felix/src/policy/host.rs", ".endpoint_to_host()"),
    ),
    ("FelixConfigurationSpec.nat_outgoing_address", Reads("felix/src/policy/host.rs", ".nat_outgoing_address")),
    ("FelixConfigurationSpec.route_refresh_interval", Reads("felix/src/agent.rs", ".route_refresh()")),
    ("FelixConfigurationSpec.iptables_refresh_interval", Reads("felix/src/agent.rs", ".policy_refresh()")),
    ("FelixConfigurationSpec.nftables_refresh_interval", Reads("felix/src/agent.rs", ".policy_refresh()")),
    ("FelixConfigurationSpec.log_severity_screen", Reads("tortie/src/node/settings.rs", ".log_level()")),
    ("FelixConfigurationSpec.prometheus_metrics_enabled", Reads("tortie/src/node/settings.rs", ".metrics_listen()")),
    ("FelixConfigurationSpec.prometheus_metrics_host", Reads("tortie/src/node/settings.rs", ".metrics_listen()")),
    ("FelixConfigurationSpec.prometheus_metrics_port", Reads("tortie/src/node/settings.rs", ".metrics_listen()")),
    ("FelixConfigurationSpec.ipip_mtu", Reads("tortie/src/node/tunnel.rs", ".ipip_mtu()")),
    ("FelixConfigurationSpec.vxlan_mtu", Reads("tortie/src/node/tunnel.rs", ".vxlan_mtu()")),
    ("FelixConfigurationSpec.vxlan_mtu_v6", Reads("tortie/src/node/tunnel.rs", ".vxlan_mtu_v6()")),
    ("FelixConfigurationSpec.vxlan_vni", Reads("tortie/src/node/tunnel.rs", ".vxlan_vni()")),
    ("FelixConfigurationSpec.vxlan_port", Reads("tortie/src/node/tunnel.rs", ".vxlan_port()")),
    ("FelixConfigurationSpec.ipv6_support", Reads("felix/src/policy/host.rs", ".ipv6_support")),
    ("FelixConfigurationSpec.health_enabled", Reads("tortie/src/node/settings.rs", ".health_listen()")),
    ("FelixConfigurationSpec.health_host", Reads("tortie/src/node/settings.rs", ".health_listen()")),
    ("FelixConfigurationSpec.reporting_interval", Reads("tortie/src/node/summary.rs", ".reporting()")),
    ("FelixConfigurationSpec.health_port", Reads("tortie/src/node/settings.rs", ".health_listen()")),
    ("FelixConfigurationSpec.calico_defaults", Refused),
    // mod.rs
    ("Metadata.name", Kept),
    ("Metadata.namespace", Reads("felix/src/agent.rs", "metadata.namespace")),
    ("Metadata.labels", Reads("felix/src/agent.rs", "metadata.labels")),
    ("Metadata.annotations", Kept),
    // Never stored: a read sets it from the key's revision.
    ("Metadata.resource_version", Reads("store/src/resources/mod.rs", "resource_version = Some(revision")),
    ("Metadata.uid", Kept),
    ("Metadata.creation_timestamp", Kept),
    ("Object.api_version", Kept),
    ("Object.kind", Kept),
    ("Object.metadata", Kept),
    ("Object.spec", Kept),
    // netset.rs
    ("NetworkSetSpec.nets", Reads("felix/src/agent.rs", "n.spec.nets")),
    // node.rs
    ("NodeBgp.ipv4_address", Reads("felix/src/agent.rs", ".ipv4_address")),
    ("NodeBgp.ipv6_address", Reads("peering/src/plan.rs", ".ipv6_address")),
    ("NodeBgp.as_number", Reads("peering/src/plan.rs", ".as_number")),
    ("NodeBgp.ipv4_ipip_tunnel_addr", Reads("tortie/src/node/tunnel.rs", ".ipv4_ipip_tunnel_addr")),
    ("NodeBgp.route_reflector_cluster_id", Reads("peering/src/plan.rs", ".route_reflector_cluster_id")),
    ("NodeAddress.address", Tracked("#24 Node addresses")),
    ("NodeAddress.kind", Tracked("#24 Node addresses")),
    ("NodeSpec.bgp", Reads("felix/src/agent.rs", "spec.bgp")),
    ("NodeSpec.addresses", Tracked("#24 Node addresses")),
    ("NodeSpec.ipv4_vxlan_tunnel_addr", Reads("felix/src/agent.rs", ".ipv4_vxlan_tunnel_addr")),
    ("NodeSpec.vxlan_tunnel_mac_addr", Reads("felix/src/agent.rs", ".vxlan_tunnel_mac_addr")),
    ("NodeSpec.ipv6_vxlan_tunnel_addr", Reads("felix/src/agent.rs", ".ipv6_vxlan_tunnel_addr")),
    ("NodeSpec.vxlan_tunnel_mac_addr_v6", Reads("felix/src/agent.rs", ".vxlan_tunnel_mac_addr_v6")),
    // policy.rs
    ("IcmpMatch.icmp_type", Reads("felix/src/policy/model.rs", "icmp_type: Some(t)")),
    ("IcmpMatch.code", Reads("felix/src/policy/model.rs", "code: *code")),
    ("EntityRule.nets", Reads("felix/src/policy/model.rs", "e.nets")),
    ("EntityRule.not_nets", Reads("felix/src/policy/model.rs", "e.not_nets")),
    ("EntityRule.selector", Reads("felix/src/policy/model.rs", "e.selector")),
    ("EntityRule.not_selector", Reads("felix/src/policy/model.rs", "e.not_selector")),
    ("EntityRule.namespace_selector", Reads("felix/src/policy/model.rs", "e.namespace_selector")),
    ("EntityRule.ports", Reads("felix/src/policy/model.rs", "e.ports")),
    ("EntityRule.not_ports", Reads("felix/src/policy/model.rs", "e.not_ports")),
    ("RuleMetadata.annotations", Kept),
    ("Rule.action", Reads("felix/src/policy/model.rs", "r.action")),
    ("Rule.metadata", Kept),
    ("Rule.protocol", Reads("felix/src/policy/model.rs", "r.protocol")),
    ("Rule.not_protocol", Reads("felix/src/policy/model.rs", "r.not_protocol")),
    ("Rule.icmp", Reads("felix/src/policy/model.rs", "r.icmp")),
    ("Rule.not_icmp", Reads("felix/src/policy/model.rs", "r.not_icmp")),
    ("Rule.ip_version", Reads("felix/src/policy/model.rs", "r.ip_version")),
    ("Rule.source", Reads("felix/src/policy/model.rs", "r.source")),
    ("Rule.destination", Reads("felix/src/policy/model.rs", "r.destination")),
    // One tier: its order and action are those of the only tier (Deny).
    ("TierSpec.order", Kept),
    ("TierSpec.default_action", Refused),
    ("NetworkPolicySpec.tier", Refused),
    ("NetworkPolicySpec.order", Reads("felix/src/policy/model.rs", "spec.order")),
    ("NetworkPolicySpec.selector", Reads("felix/src/policy/model.rs", "spec.selector")),
    ("NetworkPolicySpec.types", Reads("felix/src/policy/model.rs", "spec.types")),
    ("NetworkPolicySpec.ingress", Reads("felix/src/policy/model.rs", "spec.ingress")),
    ("NetworkPolicySpec.egress", Reads("felix/src/policy/model.rs", "spec.egress")),
    ("NetworkPolicySpec.service_account_selector", Reads("felix/src/policy/model.rs", "spec.service_account_selector")),
    ("GlobalNetworkPolicySpec.tier", Refused),
    ("GlobalNetworkPolicySpec.order", Reads("felix/src/policy/model.rs", "spec.order")),
    ("GlobalNetworkPolicySpec.selector", Reads("felix/src/policy/model.rs", "spec.selector")),
    ("GlobalNetworkPolicySpec.namespace_selector", Reads("felix/src/policy/model.rs", "spec.namespace_selector")),
    ("GlobalNetworkPolicySpec.types", Reads("felix/src/policy/model.rs", "spec.types")),
    ("GlobalNetworkPolicySpec.ingress", Reads("felix/src/policy/model.rs", "spec.ingress")),
    ("GlobalNetworkPolicySpec.egress", Reads("felix/src/policy/model.rs", "spec.egress")),
    (
        "GlobalNetworkPolicySpec.service_account_selector",
        Reads("felix/src/policy/model.rs", "spec.service_account_selector"),
    ),
    ("GlobalNetworkPolicySpec.do_not_track", Refused),
    ("GlobalNetworkPolicySpec.pre_dnat", Refused),
    ("GlobalNetworkPolicySpec.apply_on_forward", Reads("felix/src/policy/model.rs", "spec.apply_on_forward")),
    // pool.rs
    ("IpPoolSpec.cidr", Reads("ipam/src/lib.rs", ".cidr")),
    ("IpPoolSpec.block_size", Reads("ipam/src/lib.rs", ".block_size")),
    ("IpPoolSpec.ipip_mode", Reads("felix/src/calc.rs", ".ipip_mode")),
    ("IpPoolSpec.vxlan_mode", Reads("felix/src/calc.rs", ".vxlan_mode")),
    ("IpPoolSpec.nat_outgoing", Reads("felix/src/policy/host.rs", "p.nat_outgoing")),
    ("IpPoolSpec.disabled", Reads("ipam/src/lib.rs", ".disabled")),
    ("IpPoolSpec.disable_bgp_export", Reads("felix/src/calc.rs", ".disable_bgp_export")),
    ("IpPoolSpec.node_selector", Reads("ipam/src/lib.rs", ".node_selector")),
    ("IpPoolSpec.allowed_uses", Reads("ipam/src/lib.rs", ".allowed_uses")),
    ("IpPoolSpec.assignment_mode", Reads("ipam/src/lib.rs", ".assignment_mode")),
    ("IpamConfigSpec.strict_affinity", Reads("ipam/src/lib.rs", ".strict_affinity")),
    ("IpamConfigSpec.auto_allocate_blocks", Reads("ipam/src/lib.rs", ".auto_allocate_blocks")),
    ("IpamConfigSpec.max_blocks_per_host", Reads("ipam/src/lib.rs", ".max_blocks_per_host")),
    // workload.rs: what the CNI plugin writes about a pod; informational in Calico.
    ("EndpointPort.name", Kept),
    ("EndpointPort.protocol", Kept),
    ("EndpointPort.port", Kept),
    ("WorkloadEndpointSpec.orchestrator", Reads("felix/src/policy/model.rs", "spec.orchestrator")),
    ("WorkloadEndpointSpec.workload", Kept),
    ("WorkloadEndpointSpec.node", Reads("felix/src/calc.rs", ".node")),
    ("WorkloadEndpointSpec.container_id", Reads("cni/src/plugin.rs", "container_id")),
    ("WorkloadEndpointSpec.pod", Kept),
    ("WorkloadEndpointSpec.endpoint", Kept),
    ("WorkloadEndpointSpec.service_account_name", Reads("felix/src/policy/model.rs", "spec.service_account_name")),
    ("WorkloadEndpointSpec.ip_networks", Reads("felix/src/calc.rs", ".ip_networks")),
    ("WorkloadEndpointSpec.profiles", Kept),
    ("WorkloadEndpointSpec.interface_name", Reads("felix/src/calc.rs", ".interface_name")),
    ("WorkloadEndpointSpec.mac", Kept),
    ("WorkloadEndpointSpec.ports", Kept),
    ("HostEndpointSpec.node", Reads("felix/src/policy/model.rs", "spec.node")),
    ("HostEndpointSpec.interface_name", Reads("felix/src/policy/model.rs", "spec.interface_name")),
    ("HostEndpointSpec.expected_ips", Reads("felix/src/policy/model.rs", "spec.expected_ips")),
    ("HostEndpointSpec.profiles", Reads("felix/src/policy/model.rs", "spec.profiles")),
    ("HostEndpointSpec.ports", Kept),
    ("ProfileSpec.labels_to_apply", Reads("felix/src/agent.rs", ".labels_to_apply")),
];

/// Structs of the resource sources that are not resources (errors, the kind table).
const NOT_RESOURCES: [&str; 3] = ["DocumentError", "Invalid", "KindInfo"];

/// `Struct.field` for every `pub field:` of a `pub struct` in the resource sources.
fn declared(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(root.join("store/src/resources")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut current = None;
        for line in text.lines() {
            let t = line.trim_start();
            if let Some(rest) = t.strip_prefix("pub struct ") {
                current = rest
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .next()
                    .filter(|s| !NOT_RESOURCES.contains(s))
                    .map(str::to_string);
            } else if let (Some(s), Some(rest)) = (&current, t.strip_prefix("pub "))
                && let Some((field, _)) = rest.split_once(": ")
                && field.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
                && line.starts_with("    pub ")
            {
                out.insert(format!("{s}.{field}"));
            }
        }
    }
    out
}

#[test]
fn every_resource_field_is_acted_on_refused_or_tracked() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let declared = declared(root);
    let listed: BTreeSet<String> = FIELDS.iter().map(|(f, _)| f.to_string()).collect();
    let unlisted: Vec<_> = declared.difference(&listed).collect();
    assert!(unlisted.is_empty(), "fields with no entry (say what acts on each): {unlisted:?}");
    let gone: Vec<_> = listed.difference(&declared).collect();
    assert!(gone.is_empty(), "entries for fields that no longer exist: {gone:?}");
    for (field, how) in FIELDS {
        if let Reads(file, text) = how {
            let source = std::fs::read_to_string(root.join(file)).unwrap_or_default();
            assert!(source.contains(text), "{field}: {file} no longer reads it ({text:?})");
        }
    }
    let tracked: Vec<String> = FIELDS
        .iter()
        .filter_map(|(f, h)| match h {
            Tracked(issue) => Some(format!("{f} ({issue})")),
            _ => None,
        })
        .collect();
    println!("stored without effect, tracked by open issues: {tracked:?}");
}
