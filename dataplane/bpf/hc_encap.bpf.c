// SPDX-License-Identifier: Apache-2.0
// hc_encap.bpf.c: health checks through the tunnel, on the checker's host.
//
// What it is: a tc clsact egress program (direct action). lb-controlplane
// connects to VIP:port with SO_MARK = mark base + backend id for a pool whose
// health check has through_tunnel set; this program wraps every packet whose
// skb->mark is a key of `hc_reals` in an outer header of the backend's
// family, exactly as lb-dataplane would (protocol / next header 4 for an
// inner IPv4 packet, 41 for an inner IPv6 one), and sends it towards the
// backend (FIB lookup on the outer destination, then redirect). The backend
// decapsulates (lb-decap) and answers from the VIP directly (DSR), so the
// check passes only when the backend really serves the VIP.
//
// Contract: `hc_reals` maps a u32 mark to struct hc_real (family 4 or 6 and
// the address in network order; lb-controlplane owns its contents).
// `hc_config[0]` holds the outer source addresses (network order; zero =
// not set), filled by the loader (lb-hc-encap). `hc_stats` is a per-CPU
// array of HC_STAT_COUNT u64 counters, each written only by the CPU that
// handles the packet. Packets without a known mark pass untouched.
//
// How it fails: a marked packet that cannot be encapsulated or routed (no
// outer source of the backend's family, an inner packet that is not IP, no
// route or neighbour to the backend, headroom, forwarding disabled on the
// interface) is dropped and counted by reason: a tunnelled check must fail
// rather than reach the VIP some other way.
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

#define AF_INET 2
#define AF_INET6 10
#define NEXTHDR_IPV6 41

#define HC_STAT_ENCAP 0        // encapsulated and sent to the backend
#define HC_STAT_PASS 1         // no mark of ours: untouched
#define HC_STAT_NO_SOURCE 2    // marked, but no outer source configured
#define HC_STAT_UNSUPPORTED 3  // marked, not an IP packet (or truncated)
#define HC_STAT_NO_ROUTE 4     // marked, no route/neighbour to the backend
#define HC_STAT_ERROR 5        // marked, a helper failed (headroom, store)
#define HC_STAT_COUNT 6

struct hc_real {
  __u32 family;   // 4 or 6
  __u8 addr[16];  // network order; IPv4 in the first 4 bytes
};

struct hc_cfg {
  __be32 saddr;     // outer IPv4 source; 0 = not set
  __u8 saddr6[16];  // outer IPv6 source; :: = not set
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __type(key, __u32);
  __type(value, struct hc_real);
} hc_reals SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct hc_cfg);
} hc_config SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, HC_STAT_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} hc_stats SEC(".maps");

static __always_inline void Count(__u32 idx) {
  __u64* v = bpf_map_lookup_elem(&hc_stats, &idx);
  if (v) *v += 1;
}

// One's-complement checksum of a 20-byte IPv4 header (check field zero).
static __always_inline __u16 Ipv4Checksum(const struct iphdr* ip) {
  const __u16* w = (const __u16*)ip;
  __u32 sum = 0;
#pragma unroll
  for (int i = 0; i < (int)(sizeof(struct iphdr) / 2); ++i) sum += w[i];
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return (__u16)~sum;
}

// Sends the encapsulated packet to the outer destination in `fib`: a FIB
// lookup gives the interface and next hop; a resolved neighbour gives the
// MACs (plain redirect), an unresolved one is left to the neighbour subsystem
// (bpf_redirect_neigh). The lookup is made as if the packet had arrived on
// this interface (a lookup "from the egress point of view" would be pinned
// to this interface and miss a backend behind another one), so the kernel
// wants forwarding enabled on it (net.ipv4.conf.<iface>.forwarding=1, and
// net.ipv6.conf.<iface>.forwarding=1 for IPv6 backends; otherwise
// BPF_FIB_LKUP_RET_FWD_DISABLED, counted as no_route).
static __always_inline int Forward(struct __sk_buff* skb, struct bpf_fib_lookup* fib) {
  long rc = bpf_fib_lookup(skb, fib, sizeof(*fib), 0);
  if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
    if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), fib->dmac, ETH_ALEN, 0) ||
        bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), fib->smac, ETH_ALEN, 0)) {
      Count(HC_STAT_ERROR);
      return TC_ACT_SHOT;
    }
    Count(HC_STAT_ENCAP);
    return bpf_redirect(fib->ifindex, 0);
  }
  if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
    // The next hop (the gateway, or the backend itself on-link) is in the
    // lookup's destination fields.
    struct bpf_redir_neigh nh = {};
    if (fib->family == AF_INET) {
      nh.nh_family = AF_INET;
      nh.ipv4_nh = fib->ipv4_dst;
    } else {
      nh.nh_family = AF_INET6;
      __builtin_memcpy(nh.ipv6_nh, fib->ipv6_dst, 16);
    }
    Count(HC_STAT_ENCAP);
    return bpf_redirect_neigh(fib->ifindex, &nh, sizeof(nh), 0);
  }
  Count(HC_STAT_NO_ROUTE);
  return TC_ACT_SHOT;
}

// What the outer header needs to know about the inner packet.
struct inner_info {
  __u16 eth_proto;  // ETH_P_IP or ETH_P_IPV6 (host order)
  __u16 len;        // whole inner IP packet, bytes
  __u8 tos;         // IPv4 TOS / IPv6 traffic class
};

// Opens room for `outer_len` bytes between Ethernet and the inner header and
// writes `outer` there; the Ethernet type becomes the outer family's. The
// ENCAP flag keeps the inner headers known to the stack (checksum of the
// inner TCP segment, GSO) and switches skb->protocol when the families differ.
static __always_inline int PushOuter(struct __sk_buff* skb, const void* outer, __u32 outer_len,
                                     __u64 flags, __u16 outer_eth_proto) {
  __be16 proto = bpf_htons(outer_eth_proto);
  if (bpf_skb_adjust_room(skb, outer_len, BPF_ADJ_ROOM_MAC, flags) ||
      bpf_skb_store_bytes(skb, sizeof(struct ethhdr), outer, outer_len, 0) ||
      bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_proto), &proto, sizeof(proto), 0)) {
    Count(HC_STAT_ERROR);
    return -1;
  }
  return 0;
}

// Outer IPv4 (IPv4 in IPv4, protocol 4; IPv6 in IPv4, protocol 41).
static __always_inline int Encap4(struct __sk_buff* skb, const struct hc_cfg* cfg,
                                  const struct hc_real* real, const struct inner_info* in) {
  if (cfg->saddr == 0) {
    Count(HC_STAT_NO_SOURCE);
    return TC_ACT_SHOT;
  }
  struct iphdr outer = {};
  outer.version = 4;
  outer.ihl = 5;
  outer.tos = in->tos;
  outer.tot_len = bpf_htons(in->len + sizeof(struct iphdr));
  outer.frag_off = bpf_htons(0x4000);  // DF: the inner packet is small (a check)
  outer.ttl = 64;
  outer.protocol = in->eth_proto == ETH_P_IP ? IPPROTO_IPIP : NEXTHDR_IPV6;
  outer.saddr = cfg->saddr;
  __builtin_memcpy(&outer.daddr, real->addr, 4);
  // Computed here: nothing downstream fills in an outer header checksum of
  // a packet a program built (docs: checksum offload on veth).
  outer.check = Ipv4Checksum(&outer);

  struct bpf_fib_lookup fib = {};
  fib.family = AF_INET;
  fib.tos = outer.tos;
  fib.l4_protocol = outer.protocol;
  fib.ifindex = skb->ifindex;
  fib.ipv4_src = outer.saddr;
  fib.ipv4_dst = outer.daddr;
  if (PushOuter(skb, &outer, sizeof(outer), BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, ETH_P_IP))
    return TC_ACT_SHOT;
  return Forward(skb, &fib);
}

static __always_inline int IsZero16(const __u8* a) {
  __u64 lo, hi;
  __builtin_memcpy(&lo, a, 8);
  __builtin_memcpy(&hi, a + 8, 8);
  return (lo | hi) == 0;
}

// Outer IPv6 (IPv6 in IPv6, next header 41; IPv4 in IPv6, next header 4).
static __always_inline int Encap6(struct __sk_buff* skb, const struct hc_cfg* cfg,
                                  const struct hc_real* real, const struct inner_info* in) {
  if (IsZero16(cfg->saddr6)) {
    Count(HC_STAT_NO_SOURCE);
    return TC_ACT_SHOT;
  }
  struct ipv6hdr outer = {};
  outer.version = 6;
  outer.priority = in->tos >> 4;  // traffic class kept, as the dataplane does
  outer.flow_lbl[0] = (in->tos & 0x0f) << 4;
  outer.payload_len = bpf_htons(in->len);
  outer.nexthdr = in->eth_proto == ETH_P_IP ? IPPROTO_IPIP : NEXTHDR_IPV6;
  outer.hop_limit = 64;
  __builtin_memcpy(&outer.saddr, cfg->saddr6, 16);
  __builtin_memcpy(&outer.daddr, real->addr, 16);

  struct bpf_fib_lookup fib = {};
  fib.family = AF_INET6;
  fib.l4_protocol = outer.nexthdr;
  fib.ifindex = skb->ifindex;
  __builtin_memcpy(fib.ipv6_src, cfg->saddr6, 16);
  __builtin_memcpy(fib.ipv6_dst, real->addr, 16);
  if (PushOuter(skb, &outer, sizeof(outer), BPF_F_ADJ_ROOM_ENCAP_L3_IPV6, ETH_P_IPV6))
    return TC_ACT_SHOT;
  return Forward(skb, &fib);
}

// The inner packet's family, length and TOS; 0 when it is neither a whole
// IPv4 nor a whole IPv6 header.
static __always_inline int ParseInner(struct __sk_buff* skb, struct inner_info* in) {
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  if ((void*)(eth + 1) > data_end) return 0;
  if (eth->h_proto == bpf_htons(ETH_P_IP)) {
    struct iphdr* ip = (void*)(eth + 1);
    if ((void*)(ip + 1) > data_end || ip->version != 4) return 0;
    in->eth_proto = ETH_P_IP;
    in->len = bpf_ntohs(ip->tot_len);
    in->tos = ip->tos;
    return 1;
  }
  if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr* ip6 = (void*)(eth + 1);
    if ((void*)(ip6 + 1) > data_end || ip6->version != 6) return 0;
    in->eth_proto = ETH_P_IPV6;
    in->len = bpf_ntohs(ip6->payload_len) + sizeof(struct ipv6hdr);
    in->tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
    return 1;
  }
  return 0;
}

SEC("tc")
int lb_hc_encap(struct __sk_buff* skb) {
  __u32 mark = skb->mark;
  if (mark == 0) {
    Count(HC_STAT_PASS);
    return TC_ACT_OK;
  }
  struct hc_real* real = bpf_map_lookup_elem(&hc_reals, &mark);
  if (!real) {
    Count(HC_STAT_PASS);
    return TC_ACT_OK;
  }
  __u32 zero = 0;
  struct hc_cfg* cfg = bpf_map_lookup_elem(&hc_config, &zero);
  if (!cfg) {
    Count(HC_STAT_NO_SOURCE);
    return TC_ACT_SHOT;
  }
  struct inner_info in = {};
  if (!ParseInner(skb, &in)) {
    Count(HC_STAT_UNSUPPORTED);  // not IP, or truncated
    return TC_ACT_SHOT;
  }
  if (real->family == 4) return Encap4(skb, cfg, real, &in);
  if (real->family == 6) return Encap6(skb, cfg, real, &in);
  Count(HC_STAT_UNSUPPORTED);
  return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
