// SPDX-License-Identifier: Apache-2.0
// decap.bpf.c: backend-side decapsulation for the L4 load balancer.
//
// What it is: an XDP program (section "xdp") and a tc cls_bpf direct-action
// program (section "tc") with the same rule. A packet whose outer header is
//   IPv4 proto 4 (IPv4-in-IPv4), IPv4 proto 41 (IPv6-in-IPv4, what the
//   dataplane sends an IPv6 VIP's flows to an IPv4 backend),
//   IPv6 next header 41 (IPv6-in-IPv6) or IPv6 next header 4 (IPv4-in-IPv6)
// or, with a GUE port configured (`config` map, lb-decap attach --gue_port),
//   IPv4/IPv6 UDP to that port whose payload is an IPv4 or IPv6 packet (GUE
//   variant 1, "direct IP": the payload's first nibble is the IP version),
// and whose outer destination is in the `local_addrs` map loses its outer IP
// (and UDP) header and continues into the local stack as the inner packet
// (XDP_PASS / TC_ACT_OK). Everything else passes untouched. Only the outer
// destination is matched: the outer source may vary per flow (the load
// balancer's tunnel_source_ipv4_prefix) and the UDP source port does.
//
// Contract: `local_addrs` keys are 16-byte addresses; IPv4 addresses are
// stored IPv4-mapped (::ffff:a.b.c.d). `stats` is a per-CPU array of three
// u64 counters (kStatDecap, kStatPass, kStatMalformed), each written only by
// the CPU that handles the packet. `config` entry 0 holds the GUE port in
// network order (0 = GUE off).
//
// How it fails: a tunnel packet addressed to us whose inner header is
// truncated or of the wrong IP version is dropped and counted "malformed";
// a truncated outer Ethernet/IP header is counted "malformed" and passed to
// the stack, which drops it by its own rules. Outer IPv4 options are
// honoured (IHL); outer IPv4 fragments addressed to us are dropped as
// malformed (no reassembly here); outer IPv6 extension headers are not
// parsed (such packets pass untouched).
// clang-format off
// linux/bpf.h (types) must precede the libbpf headers.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
// clang-format on

#define STAT_DECAP 0
#define STAT_PASS 1
#define STAT_MALFORMED 2
#define STAT_COUNT 3

#define NEXTHDR_IPV6 41

struct addr_key {
  __u8 addr[16];
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 256);
  __type(key, struct addr_key);
  __type(value, __u8);
} local_addrs SEC(".maps");

struct decap_config {
  __be16 gue_port;  // 0 = no GUE decapsulation
  __u16 pad;
};

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct decap_config);
} config SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, STAT_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} stats SEC(".maps");

static __always_inline void Count(__u32 idx) {
  __u64* v = bpf_map_lookup_elem(&stats, &idx);
  if (v) *v += 1;
}

// Verdict of the shared parser.
enum verdict {
  V_PASS = 0,        // not for us: hand to the stack untouched
  V_MALFORMED_PASS,  // truncated outer header: stack decides
  V_MALFORMED_DROP,  // tunnel to us with a bad inner header
  V_DECAP,           // strip `outer_len` bytes after Ethernet
};

struct decap_plan {
  __u32 outer_len;    // outer IP (+ UDP) header length to remove
  __u16 inner_proto;  // inner EtherType (network order)
  __u16 outer_proto;  // outer EtherType (network order)
};

static __always_inline int IsLocal4(__be32 daddr) {
  struct addr_key k = {};
  k.addr[10] = 0xff;
  k.addr[11] = 0xff;
  __builtin_memcpy(&k.addr[12], &daddr, 4);
  return bpf_map_lookup_elem(&local_addrs, &k) != NULL;
}

static __always_inline int IsLocal6(const struct in6_addr* daddr) {
  struct addr_key k;
  __builtin_memcpy(k.addr, daddr, 16);
  return bpf_map_lookup_elem(&local_addrs, &k) != NULL;
}

#define UDP_HLEN 8

// GUE: true if the UDP header at `udp` goes to the configured GUE port; then
// the inner family comes from the payload's version nibble (V_MALFORMED_DROP
// if it is neither 4 nor 6 or the payload is missing).
static __always_inline int IsGue(void* udp, void* data_end) {
  __u32 zero = 0;
  struct decap_config* cfg = bpf_map_lookup_elem(&config, &zero);
  if (!cfg || cfg->gue_port == 0) return 0;
  if (udp + UDP_HLEN > data_end) return 0;
  return *(__be16*)(udp + 2) == cfg->gue_port;
}

static __always_inline enum verdict GueInner(void* payload, void* data_end,
                                             struct decap_plan* plan) {
  if (payload + 1 > data_end) return V_MALFORMED_DROP;
  __u8 version = *(__u8*)payload >> 4;
  if (version == 4)
    plan->inner_proto = bpf_htons(ETH_P_IP);
  else if (version == 6)
    plan->inner_proto = bpf_htons(ETH_P_IPV6);
  else
    return V_MALFORMED_DROP;
  return V_DECAP;
}

// Checks that an inner header of the expected version starts at `p`.
static __always_inline enum verdict CheckInner(void* p, void* data_end, __u16 inner_proto) {
  if (inner_proto == bpf_htons(ETH_P_IP)) {
    struct iphdr* in = p;
    if ((void*)(in + 1) > data_end || in->version != 4 || in->ihl < 5) return V_MALFORMED_DROP;
  } else {
    struct ipv6hdr* in6 = p;
    if ((void*)(in6 + 1) > data_end || in6->version != 6) return V_MALFORMED_DROP;
  }
  return V_DECAP;
}

// Parses [data, data_end) starting at the Ethernet header.
static __always_inline enum verdict Classify(void* data, void* data_end, struct decap_plan* plan) {
  struct ethhdr* eth = data;
  if ((void*)(eth + 1) > data_end) return V_MALFORMED_PASS;
  plan->outer_proto = eth->h_proto;

  if (eth->h_proto == bpf_htons(ETH_P_IP)) {
    struct iphdr* ip = (void*)(eth + 1);
    if ((void*)(ip + 1) > data_end) return V_MALFORMED_PASS;
    __u32 hlen = ip->ihl * 4;
    int gue = 0;
    if (ip->protocol == IPPROTO_IPIP) {
      plan->inner_proto = bpf_htons(ETH_P_IP);
    } else if (ip->protocol == NEXTHDR_IPV6) {
      plan->inner_proto = bpf_htons(ETH_P_IPV6);
    } else if (ip->protocol == IPPROTO_UDP && hlen >= sizeof(*ip) && hlen <= 60) {
      gue = IsGue((void*)ip + hlen, data_end);
      if (!gue) return V_PASS;
    } else {
      return V_PASS;
    }
    if (!IsLocal4(ip->daddr)) return V_PASS;
    if (hlen < sizeof(*ip) || hlen > 60) return V_MALFORMED_DROP;
    // Outer fragments need reassembly first; the stack has no IPIP module,
    // so they are dropped as malformed rather than half-decapsulated.
    if (ip->frag_off & bpf_htons(0x3fff)) return V_MALFORMED_DROP;
    plan->outer_len = hlen + (gue ? UDP_HLEN : 0);
    void* inner = (void*)ip + plan->outer_len;
    if (gue) {
      enum verdict v = GueInner(inner, data_end, plan);
      if (v != V_DECAP) return v;
    }
    return CheckInner(inner, data_end, plan->inner_proto);
  }

  if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr* ip6 = (void*)(eth + 1);
    if ((void*)(ip6 + 1) > data_end) return V_MALFORMED_PASS;
    int gue = 0;
    if (ip6->nexthdr == NEXTHDR_IPV6) {
      plan->inner_proto = bpf_htons(ETH_P_IPV6);
    } else if (ip6->nexthdr == IPPROTO_IPIP) {
      plan->inner_proto = bpf_htons(ETH_P_IP);
    } else if (ip6->nexthdr == IPPROTO_UDP) {
      gue = IsGue((void*)(ip6 + 1), data_end);
      if (!gue) return V_PASS;
    } else {
      return V_PASS;
    }
    if (!IsLocal6(&ip6->daddr)) return V_PASS;
    plan->outer_len = sizeof(*ip6) + (gue ? UDP_HLEN : 0);
    void* inner = (void*)ip6 + plan->outer_len;
    if (gue) {
      enum verdict v = GueInner(inner, data_end, plan);
      if (v != V_DECAP) return v;
    }
    return CheckInner(inner, data_end, plan->inner_proto);
  }
  return V_PASS;
}

SEC("xdp")
int lb_decap_xdp(struct xdp_md* ctx) {
  void* data = (void*)(long)ctx->data;
  void* data_end = (void*)(long)ctx->data_end;
  struct decap_plan plan = {};
  enum verdict v = Classify(data, data_end, &plan);

  if (v == V_PASS) {
    Count(STAT_PASS);
    return XDP_PASS;
  }
  if (v == V_MALFORMED_PASS) {
    Count(STAT_MALFORMED);
    return XDP_PASS;
  }
  if (v == V_MALFORMED_DROP) {
    Count(STAT_MALFORMED);
    return XDP_DROP;
  }

  // Move the Ethernet header forward over the outer IP header, then drop the
  // first outer_len bytes. outer_len is 20..60 (IPv4) or 40 (IPv6), 8 more
  // with GUE; all >= ETH_HLEN so source and destination do not overlap.
  __u32 off = plan.outer_len;
  if (off < 20 || off > 68) {
    Count(STAT_MALFORMED);
    return XDP_DROP;
  }
  struct ethhdr* old_eth = data;
  struct ethhdr* new_eth = data + off;
  if ((void*)(old_eth + 1) > data_end || (void*)(new_eth + 1) > data_end) {
    Count(STAT_MALFORMED);
    return XDP_DROP;
  }
  __builtin_memcpy(new_eth->h_dest, old_eth->h_dest, ETH_ALEN);
  __builtin_memcpy(new_eth->h_source, old_eth->h_source, ETH_ALEN);
  new_eth->h_proto = plan.inner_proto;
  if (bpf_xdp_adjust_head(ctx, (int)off)) {
    Count(STAT_MALFORMED);
    return XDP_DROP;
  }
  Count(STAT_DECAP);
  return XDP_PASS;
}

// Ethernet + the longest outer header (IPv4 with options) + GUE's UDP + an
// inner IPv6 header: what Classify reads.
#define DECAP_PARSE_LEN (14 + 60 + UDP_HLEN + 40)

SEC("tc")
int lb_decap_tc(struct __sk_buff* skb) {
  // Direct access reaches only the skb's linear part; a packet another
  // sender built in pages (af_packet, GSO) may hold just its Ethernet header
  // there. Pull what Classify reads (or the whole packet when shorter).
  __u32 pull = skb->len < DECAP_PARSE_LEN ? skb->len : DECAP_PARSE_LEN;
  if (bpf_skb_pull_data(skb, pull)) {
    Count(STAT_MALFORMED);
    return TC_ACT_OK;
  }
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct decap_plan plan = {};
  enum verdict v = Classify(data, data_end, &plan);

  if (v == V_PASS) {
    Count(STAT_PASS);
    return TC_ACT_OK;
  }
  if (v == V_MALFORMED_PASS) {
    Count(STAT_MALFORMED);
    return TC_ACT_OK;
  }
  if (v == V_MALFORMED_DROP) {
    Count(STAT_MALFORMED);
    return TC_ACT_SHOT;
  }

  __s32 off = (__s32)plan.outer_len;
  if (plan.outer_proto != plan.inner_proto) {
    // The skb's protocol must become the inner one. IPv4-in-IPv6:
    // change_proto removes 20 bytes of the (outer) IPv6 header. IPv6-in-IPv4:
    // it inserts 20 bytes after the MAC header. Either way it sets
    // skb->protocol, and the rest of the outer header goes below.
    if (bpf_skb_change_proto(skb, plan.inner_proto, 0)) {
      Count(STAT_MALFORMED);
      return TC_ACT_SHOT;
    }
    off += plan.inner_proto == bpf_htons(ETH_P_IP) ? -20 : 20;
  }
  if (bpf_skb_adjust_room(skb, -off, BPF_ADJ_ROOM_MAC, 0)) {
    Count(STAT_MALFORMED);
    return TC_ACT_SHOT;
  }
  __u16 proto = plan.inner_proto;
  if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_proto), &proto, sizeof(proto), 0)) {
    Count(STAT_MALFORMED);
    return TC_ACT_SHOT;
  }
  Count(STAT_DECAP);
  return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
