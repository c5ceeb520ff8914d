// SPDX-License-Identifier: MIT OR GPL-2.0
//
// tortie's IPIP data plane (RFC 2003) as two TC programs:
//
//   tortie_encap  egress of the tunnel device (`tortie-ipip`, the routes'
//                 device): the inner packet gets an outer IPv4 header, this
//                 node → the node of the inner destination's block, and goes
//                 out the underlay interface (the kernel resolves the next
//                 hop: bpf_redirect_neigh).
//   tortie_decap  ingress of the underlay interface: protocol 4 from a
//                 cluster node to this node loses its outer header and goes
//                 on up the stack to the pod; any other protocol 4 is dropped.
//
// Both work on GSO super-packets (bpf_skb_adjust_room's encap/decap flags
// fix the GSO type). State lives in maps the daemon pins and keeps in step
// with the cluster; the programs keep forwarding while no daemon runs.

#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// Linux 6.3 (older uapi headers lack it).
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#endif

#define IP_DF 0x4000
#define ECN_MASK 0x03
#define ECN_CE 0x03
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define OUTER_LEN ((int)sizeof(struct iphdr))
// RFC 2003 §3.1: the outer TTL must get the packet to the tunnel's end.
#define OUTER_TTL 64
#define MAX_HOPS 4

// A tunnelled block: prefix length, then the network address (network order).
struct block {
	__u32 prefixlen;
	__u32 addr;
};

// The nodes of a block's route (an ECMP set, usually one), network order.
struct hops {
	__u32 count;
	__u32 node[MAX_HOPS];
};

// This node: its underlay address (network order) and the underlay's ifindex.
struct config {
	__u32 local;
	__u32 ifindex;
};

enum counter {
	ENCAP_PACKETS,
	ENCAP_BYTES,
	DECAP_PACKETS,
	DECAP_BYTES,
	DECAP_MERGED,
	DROP_NO_ROUTE,
	DROP_UNKNOWN_SOURCE,
	DROP_MALFORMED,
	COUNTERS,
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1 << 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct block);
	__type(value, struct hops);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tortie_blocks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__type(key, __u32);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tortie_nodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tortie_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tortie_counters SEC(".maps");

static __always_inline void count(__u32 which, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&tortie_counters, &which);
	if (c)
		*c += n;
}

// Packets on the wire: a GSO super-packet counts as its segments.
static __always_inline __u64 segments(struct __sk_buff *skb)
{
	return skb->gso_segs > 1 ? skb->gso_segs : 1;
}

static __always_inline __u16 csum_fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

SEC("classifier")
int tortie_encap(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *inner = (void *)(eth + 1);
	if ((void *)(inner + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP)) {
		count(DROP_MALFORMED, 1);
		return TC_ACT_SHOT;
	}
	struct block key = { .prefixlen = 32, .addr = inner->daddr };
	struct hops *hops = bpf_map_lookup_elem(&tortie_blocks, &key);
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&tortie_config, &zero);
	if (!hops || !cfg || hops->count == 0) {
		count(DROP_NO_ROUTE, segments(skb));
		return TC_ACT_SHOT;
	}
	// One node of an ECMP set per flow (the kernel's flow hash).
	__u32 n = hops->count < MAX_HOPS ? hops->count : MAX_HOPS;
	__u32 pick = bpf_get_hash_recalc(skb) % n;
	// Constant indices: the verifier sees every access in bounds.
	__u32 node = pick == 3 ? hops->node[3] : pick == 2 ? hops->node[2] : pick == 1 ? hops->node[1] : hops->node[0];
	__u32 local = cfg->local, ifindex = cfg->ifindex;
	// RFC 2003 §3.1: TOS copied; DF copied (set it and the outer packet
	// is never fragmented, the inner's sender learns the path MTU).
	__u8 tos = inner->tos;
	__u16 df = inner->frag_off & bpf_htons(IP_DF);
	__u32 len = skb->len - sizeof(struct ethhdr) + OUTER_LEN;
	if (len > 0xffff) {
		count(DROP_MALFORMED, segments(skb));
		return TC_ACT_SHOT;
	}
	__u64 segs = segments(skb), bytes = skb->len - sizeof(struct ethhdr);
	if (bpf_skb_adjust_room(skb, OUTER_LEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO)) {
		count(DROP_MALFORMED, segs);
		return TC_ACT_SHOT;
	}
	struct iphdr outer = {
		.version = 4,
		.ihl = 5,
		.tos = tos,
		.tot_len = bpf_htons(len),
		.id = df ? 0 : (__u16)bpf_get_prandom_u32(),
		.frag_off = df,
		.ttl = OUTER_TTL,
		.protocol = IPPROTO_IPIP,
		.saddr = local,
		.daddr = node,
	};
	outer.check = csum_fold(bpf_csum_diff(0, 0, (__be32 *)&outer, OUTER_LEN, 0));
	if (bpf_skb_store_bytes(skb, sizeof(struct ethhdr), &outer, OUTER_LEN, 0)) {
		count(DROP_MALFORMED, segs);
		return TC_ACT_SHOT;
	}
	count(ENCAP_PACKETS, segs);
	count(ENCAP_BYTES, bytes);
	return bpf_redirect_neigh(ifindex, 0, 0, 0);
}

SEC("classifier")
int tortie_decap(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *outer = (void *)(eth + 1);
	// TC_ACT_UNSPEC: on to the next filter (someone else's), if any.
	if ((void *)(outer + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || outer->protocol != IPPROTO_IPIP)
		return TC_ACT_UNSPEC;
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&tortie_config, &zero);
	__u32 src = outer->saddr;
	if (!cfg || outer->daddr != cfg->local || !bpf_map_lookup_elem(&tortie_nodes, &src)) {
		count(DROP_UNKNOWN_SOURCE, segments(skb));
		return TC_ACT_SHOT;
	}
	// No options, no fragments: nothing else is ours to unwrap.
	struct iphdr *inner = (void *)(outer + 1);
	if (outer->ihl != 5 || (outer->frag_off & bpf_htons(IP_MF | IP_OFFSET)) || (void *)(inner + 1) > end ||
	    inner->version != 4) {
		count(DROP_MALFORMED, segments(skb));
		return TC_ACT_SHOT;
	}
	__u64 segs = segments(skb);
	// RFC 6040 §4.2: congestion marked on the outer header (CE) is carried
	// to the inner one; an inner packet that is not ECN-capable is dropped.
	__u8 outer_ecn = outer->tos & ECN_MASK, inner_tos = inner->tos, inner_vihl = *(__u8 *)inner;
	if (outer_ecn == ECN_CE && (inner_tos & ECN_MASK) == 0) {
		count(DROP_MALFORMED, segs);
		return TC_ACT_SHOT;
	}
	// FIXED_GSO: a merged packet's segments keep their size (the inner
	// segments were that size inside the outer ones). DECAP_L3_IPV4 (Linux
	// 6.3) also clears the tunnel's GSO type; an older kernel refuses the
	// flag, and the room is taken without it.
	if (bpf_skb_adjust_room(skb, -OUTER_LEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_DECAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO) &&
	    bpf_skb_adjust_room(skb, -OUTER_LEN, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO)) {
		count(DROP_MALFORMED, segs);
		return TC_ACT_SHOT;
	}
	if (outer_ecn == ECN_CE && (inner_tos & ECN_MASK) != ECN_CE) {
		__u8 marked = inner_tos | ECN_CE;
		// The TOS byte is the low byte of the header's first 16-bit word.
		__u16 from = bpf_htons((__u16)(inner_vihl << 8) | inner_tos), to = bpf_htons((__u16)(inner_vihl << 8) | marked);
		if (bpf_l3_csum_replace(skb, sizeof(struct ethhdr) + offsetof(struct iphdr, check), from, to, 2) ||
		    bpf_skb_store_bytes(skb, sizeof(struct ethhdr) + offsetof(struct iphdr, tos), &marked, 1, 0)) {
			count(DROP_MALFORMED, segs);
			return TC_ACT_SHOT;
		}
	}
	count(DECAP_PACKETS, segs);
	count(DECAP_BYTES, skb->len - sizeof(struct ethhdr));
	if (segs > 1)
		count(DECAP_MERGED, 1);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
