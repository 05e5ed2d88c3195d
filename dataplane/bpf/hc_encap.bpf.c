// SPDX-License-Identifier: Apache-2.0
// hc_encap.bpf.c: health checks through the tunnel, on the checker's host.
//
// What it is: a tc clsact egress program (direct action). lb-controlplane
// connects to VIP:port with SO_MARK = mark base + backend id for a pool whose
// health check has through_tunnel set; this program wraps every IPv4 packet
// whose skb->mark is a key of `hc_reals` in an outer IPv4 header (protocol 4,
// IP-in-IP) to that backend, exactly as lb-dataplane would, and sends it
// towards the backend (FIB lookup on the outer destination, then redirect).
// The backend decapsulates (lb-decap) and answers from the VIP directly
// (DSR), so the check passes only when the backend really serves the VIP.
//
// Contract: `hc_reals` maps a u32 mark to struct hc_real (IPv4 address in
// network order; lb-controlplane owns its contents). `hc_config[0]` holds the
// outer source address (network order), filled by the loader (lb-hc-encap).
// `hc_stats` is a per-CPU array of HC_STAT_COUNT u64 counters, each written
// only by the CPU that handles the packet. Packets without a known mark pass
// untouched.
//
// How it fails: a marked packet that cannot be encapsulated or routed (no
// outer source configured, not IPv4, no route or neighbour to the backend,
// headroom, forwarding disabled on the interface) is dropped and counted by reason: a tunnelled
// check must fail rather than reach the VIP some other way.
// clang-format off
// linux/bpf.h (types) must precede the libbpf headers.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
// clang-format on

#define AF_INET 2

#define HC_STAT_ENCAP 0      // encapsulated and sent to the backend
#define HC_STAT_PASS 1       // no mark of ours: untouched
#define HC_STAT_NO_SOURCE 2  // marked, but no outer source configured
#define HC_STAT_NOT_IPV4 3   // marked, not an IPv4 packet (dropped)
#define HC_STAT_NO_ROUTE 4   // marked, no route/neighbour to the backend
#define HC_STAT_ERROR 5      // marked, a helper failed (headroom, store)
#define HC_STAT_COUNT 6

struct hc_real {
  __be32 daddr;  // backend address (IPv4, network order)
};

struct hc_cfg {
  __be32 saddr;  // outer source address (IPv4, network order); 0 = not set
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

// Sends the encapsulated packet towards `daddr`: a FIB lookup gives the
// interface and next hop; a resolved neighbour gives the MACs (plain
// redirect), an unresolved one is left to the neighbour subsystem
// (bpf_redirect_neigh). The lookup is made as if the packet had arrived on
// this interface (a lookup "from the egress point of view" would be pinned
// to this interface and miss a backend behind another one), so the kernel
// wants forwarding enabled on it (net.ipv4.conf.<iface>.forwarding=1;
// otherwise BPF_FIB_LKUP_RET_FWD_DISABLED, counted as no_route).
static __always_inline int Forward(struct __sk_buff* skb, __be32 saddr, __be32 daddr, __u8 tos) {
  struct bpf_fib_lookup fib = {};
  fib.family = AF_INET;
  fib.tos = tos;
  fib.l4_protocol = IPPROTO_IPIP;
  fib.ifindex = skb->ifindex;
  fib.ipv4_src = saddr;
  fib.ipv4_dst = daddr;
  long rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
  if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
    if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), fib.dmac, ETH_ALEN, 0) ||
        bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), fib.smac, ETH_ALEN, 0)) {
      Count(HC_STAT_ERROR);
      return TC_ACT_SHOT;
    }
    Count(HC_STAT_ENCAP);
    return bpf_redirect(fib.ifindex, 0);
  }
  if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
    struct bpf_redir_neigh nh = {};
    nh.nh_family = AF_INET;
    nh.ipv4_nh = fib.ipv4_dst;  // the gateway, or the backend itself on-link
    Count(HC_STAT_ENCAP);
    return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
  }
  Count(HC_STAT_NO_ROUTE);
  return TC_ACT_SHOT;
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
  if (!cfg || cfg->saddr == 0) {
    Count(HC_STAT_NO_SOURCE);
    return TC_ACT_SHOT;
  }
  __be32 saddr = cfg->saddr;
  __be32 daddr = real->daddr;

  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  struct iphdr* inner = (void*)(eth + 1);
  if ((void*)(inner + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || inner->version != 4) {
    Count(HC_STAT_NOT_IPV4);
    return TC_ACT_SHOT;
  }
  __u16 inner_len = bpf_ntohs(inner->tot_len);
  __u8 tos = inner->tos;

  struct iphdr outer = {};
  outer.version = 4;
  outer.ihl = 5;
  outer.tos = tos;
  outer.tot_len = bpf_htons(inner_len + sizeof(struct iphdr));
  outer.frag_off = bpf_htons(0x4000);  // DF: the inner packet is small (a check)
  outer.ttl = 64;
  outer.protocol = IPPROTO_IPIP;
  outer.saddr = saddr;
  outer.daddr = daddr;
  // Computed here: veth leaves outer-header checksums to nobody once a
  // program rewrote the packet (docs: checksum offload on veth).
  outer.check = Ipv4Checksum(&outer);

  // Room for the outer header between Ethernet and the inner IP header; the
  // ENCAP flag keeps the inner headers known to the stack (checksum of the
  // inner TCP segment, GSO).
  if (bpf_skb_adjust_room(skb, sizeof(struct iphdr), BPF_ADJ_ROOM_MAC,
                          BPF_F_ADJ_ROOM_ENCAP_L3_IPV4)) {
    Count(HC_STAT_ERROR);
    return TC_ACT_SHOT;
  }
  if (bpf_skb_store_bytes(skb, sizeof(struct ethhdr), &outer, sizeof(outer), 0)) {
    Count(HC_STAT_ERROR);
    return TC_ACT_SHOT;
  }
  return Forward(skb, saddr, daddr, tos);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
