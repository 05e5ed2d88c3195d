#include "controlplane/explain.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "controlplane/algorithms.h"
#include "controlplane/config.h"
#include "controlplane/config_lookup.h"
#include "lib/backend_pick.h"
#include "lib/conn_table.h"
#include "lib/conn_table_shm.h"
#include "lib/maglev.h"
#include "lib/vip_flow.h"

namespace lb {
namespace {

absl::StatusOr<FlowKey> ParseFlow(const v1::ExplainRequest& req, IpAddress* dst_out) {
  auto src = ParseIpAddress(req.src());
  if (!src.ok()) return absl::InvalidArgumentError(absl::StrCat("src: ", src.status().message()));
  auto dst = ParseIpAddress(req.dst());
  if (!dst.ok()) return absl::InvalidArgumentError(absl::StrCat("dst: ", dst.status().message()));
  if (src->family != dst->family) {
    return absl::InvalidArgumentError("dst: address family differs from src");
  }
  const uint8_t proto = ProtoNumber(req.protocol());
  if (proto == 0) {
    return absl::InvalidArgumentError("protocol: required (PROTOCOL_TCP or PROTOCOL_UDP)");
  }
  if (req.src_port() > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("src_port: ", req.src_port(), " is not a port"));
  }
  if (req.dst_port() > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("dst_port: ", req.dst_port(), " is not a port"));
  }
  FlowKey key;
  std::memset(&key, 0, sizeof(key));
  std::memcpy(key.src, src->bytes.data(), 16);
  std::memcpy(key.dst, dst->bytes.data(), 16);
  key.sport = static_cast<uint16_t>(req.src_port());
  key.dport = static_cast<uint16_t>(req.dst_port());
  key.proto = proto;
  key.family = src->family;
  *dst_out = *dst;
  return key;
}

// The candidates of a per-lcore algorithm, for the reason text.
std::string PerLcoreReason(const SlotView& slot, const VipEntry& v, Algorithm alg) {
  std::vector<std::string> candidates;
  for (uint32_t i = 0; i < v.member_count; ++i) {
    const uint32_t ms = slot.members[v.member_begin + i];
    if (ms == 0 || ms >= slot.header->num_backends) continue;
    const BackendEntry& b = slot.backends[ms];
    candidates.push_back(absl::StrCat(
        "id ", b.backend_id, " ",
        IpAddressFromBytes(static_cast<AddrFamily>(b.family), b.addr).text, " w", b.weight));
  }
  const AlgorithmInfo* info = FindAlgorithm(alg);
  const char* state = info != nullptr && info->per_lcore_state != nullptr
                          ? info->per_lcore_state
                          : "the live flows each lcore holds per backend";
  return absl::StrCat(AlgorithmName(alg), ": the pick depends on ", state,
                      ", not on the flow; candidates: ",
                      candidates.empty() ? "none (the packet is dropped, no_backend)"
                                         : absl::StrJoin(candidates, ", "));
}

// The dataplane's connection tables, read-only: the first lcore whose table
// pins `key` (hashed as the dataplane does). *tables: how many files were
// readable (0: no dataplane ran with --conn_table_persist).
struct Pinned {
  int lcore = -1;
  ConnValue value{};
};
Pinned FindPinned(const std::string& prefix, const VipEntry& v, FlowKey key, int* tables) {
  *tables = 0;
  Pinned p;
  if (prefix.empty()) return p;
  const uint64_t hash = VipFlowHash(v, &key);
  const uint32_t now_ms = static_cast<uint32_t>(MonotonicNs() / 1000000);
  for (uint32_t i = 0; i < kMaxLcores; ++i) {
    auto t = ConnTable::OpenForPeek(ConnTableFileName(prefix, i), nullptr);
    if (!t.ok()) continue;
    ++*tables;
    if (p.lcore < 0 && (*t)->Peek(key, hash, now_ms, &p.value)) p.lcore = static_cast<int>(i);
  }
  return p;
}

}  // namespace

RingPick PickFromRing(const SlotView& slot, int vip, FlowKey key) {
  // The dataplane's own pick (lib/vip_flow.h, lib/backend_pick.h).
  const VipEntry& v = slot.vips[vip];
  const Algorithm alg = static_cast<Algorithm>(v.algorithm);
  const char* hashed = alg == Algorithm::kIpHash ? "source-address hash"
                       : VipHashesFragments(v)   ? "src/dst/proto hash (fragment-tolerant VIP)"
                                                 : "5-tuple hash";
  const uint64_t flow_hash = VipFlowHash(v, &key);
  RingPick pick;
  RingLookup ring;
  BackendPick chosen;
  const bool found = PickConsistentBackend(slot, vip, key, flow_hash, &chosen, &ring);
  pick.slot = found ? chosen.slot : 0;
  pick.how = absl::StrFormat("%s ring[%u] of %u (%s %016x)", AlgorithmName(alg), ring.index,
                             slot.header->ring_size, hashed, ring.hash);
  if (!found) {
    absl::StrAppend(&pick.how, "; no active backend there: the packet is dropped (no_backend)");
  }
  return pick;
}

absl::StatusOr<v1::ExplainResponse> ExplainFlow(const v1::ExplainRequest& req, const SlotView& slot,
                                                uint64_t generation, const v1::Config& config,
                                                const std::string& conn_prefix) {
  IpAddress dst;
  auto key = ParseFlow(req, &dst);
  if (!key.ok()) return key.status();
  if (generation == 0 || slot.header->generation != generation) {
    return absl::FailedPreconditionError("no table generation is published yet");
  }
  const int vip = slot.FindVip(key->family, key->dst, key->proto, key->dport);
  if (vip < 0) {
    return absl::NotFoundError(
        absl::StrCat("dst: no VIP matches ", VipKey(dst, key->proto, key->dport), " in generation ",
                     generation, " (the dataplane drops such packets as not_for_us)"));
  }
  const VipEntry& v = slot.vips[vip];
  const Algorithm alg = static_cast<Algorithm>(v.algorithm);
  v1::ExplainResponse resp;
  resp.set_vip_id(v.vip_id);
  resp.set_vip(
      VipKey(IpAddressFromBytes(static_cast<AddrFamily>(v.family), v.addr), v.proto, v.port));
  resp.set_generation(generation);
  resp.set_algorithm(AlgorithmName(alg));
  std::string reason;
  uint32_t s = 0;
  if (IsConsistentAlgorithm(alg)) {
    RingPick pick = PickFromRing(slot, vip, *key);
    s = pick.slot;
    reason = std::move(pick.how);
  } else {
    reason = PerLcoreReason(slot, v, alg);
  }
  int tables = 0;
  const Pinned pinned = FindPinned(conn_prefix, v, *key, &tables);
  if (pinned.lcore >= 0) {
    const bool serves = StillServes(slot, pinned.value.backend_slot, pinned.value.incarnation);
    if (serves) {
      reason = absl::StrFormat(
          "pinned on lcore %d to backend slot %u by its connection table (it keeps that "
          "backend while it is active or draining); a new flow would get: %s",
          pinned.lcore, pinned.value.backend_slot, reason);
      s = pinned.value.backend_slot;
    } else {
      reason = absl::StrFormat(
          "pinned on lcore %d to backend slot %u, which no longer serves: its next packet is "
          "re-picked; the pick would be: %s",
          pinned.lcore, pinned.value.backend_slot, reason);
    }
  } else if (tables > 0) {
    reason = absl::StrFormat("not pinned in any of %d connection table(s); the pick would be: %s",
                             tables, reason);
  }
  if (s != 0) {
    const BackendEntry& b = slot.backends[s];
    resp.set_backend_id(b.backend_id);
    resp.set_backend(IpAddressFromBytes(static_cast<AddrFamily>(b.family), b.addr).text);
  }
  // Sticky sessions are per-node state in the dataplane, like the
  // connection table.
  for (const v1::Vip& cv : config.vips()) {
    if (cv.id() != v.vip_id) continue;
    const int pi = FindPoolIndex(config, cv.pool());
    if (pi >= 0 && config.pools(pi).sticky_sessions()) {
      absl::StrAppend(&reason,
                      "; sticky sessions: a client address seen within the TTL keeps the backend "
                      "it had");
    }
  }
  if (tables == 0) {
    absl::StrAppend(&reason,
                    "; connection table not consulted (no table file of a dataplane): a flow "
                    "already pinned keeps its backend while that backend is active or draining");
  }
  resp.set_reason(reason);
  return resp;
}

}  // namespace lb
