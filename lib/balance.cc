#include "lib/balance.h"

#include <algorithm>
#include <atomic>
#include <climits>

namespace lb {

void Balancer::Init(uint32_t max_vips, uint32_t max_members, uint32_t lcore) {
  rr_cursor_.assign(max_vips, 0);
  swrr_current_.assign(max_members, 0);
  rng_ = 0x9E3779B97F4A7C15ull ^ (static_cast<uint64_t>(lcore) + 1) * 0xD6E8FEB86659FD93ull;
}

void Balancer::Restart() {
  std::fill(rr_cursor_.begin(), rr_cursor_.end(), 0);
  std::fill(swrr_current_.begin(), swrr_current_.end(), 0);
}

uint32_t Balancer::RoundRobin(const SlotView& slot, int vip) {
  const VipEntry& v = slot.vips[vip];
  if (v.member_count == 0) return 0;
  return slot.members[v.member_begin + rr_cursor_[vip]++ % v.member_count];
}

uint32_t Balancer::SmoothWeighted(const SlotView& slot, int vip) {
  const VipEntry& v = slot.vips[vip];
  const uint32_t* members = slot.members + v.member_begin;
  if (v.member_count == 0) return 0;
  int64_t total = 0;
  int64_t best_w = INT64_MIN;
  uint32_t best = 0;
  int64_t* cur = swrr_current_.data() + v.member_begin;
  for (uint32_t i = 0; i < v.member_count; ++i) {
    const int64_t w = slot.backends[members[i]].weight;
    cur[i] += w;
    total += w;
    if (cur[i] > best_w) {
      best_w = cur[i];
      best = i;
    }
  }
  cur[best] -= total;
  return members[best];
}

uint32_t Balancer::Random(const SlotView& slot, int vip) {
  const VipEntry& v = slot.vips[vip];
  if (v.member_count == 0) return 0;
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  const uint64_t r = rng_ * 0x2545F4914F6CDD1Dull;
  return slot.members[v.member_begin + RingIndex(r, v.member_count)];
}

uint32_t Balancer::LeastConnections(const SlotView& slot, int vip, const BackendCounters* counters,
                                    bool weighted) {
  const VipEntry& v = slot.vips[vip];
  const uint32_t* members = slot.members + v.member_begin;
  if (v.member_count == 0) return 0;
  uint32_t best = 0;
  uint64_t best_f = 0, best_w = 1;
  for (uint32_t i = 0; i < v.member_count; ++i) {
    const uint64_t f = counters[members[i]].active_flows.load(std::memory_order_relaxed);
    const uint64_t w = weighted ? slot.backends[members[i]].weight : 1;
    if (i == 0 || f * best_w < best_f * w) {
      best = i;
      best_f = f;
      best_w = w;
    }
  }
  return members[best];
}

uint32_t Balancer::PickMember(const SlotView& slot, int vip, const BackendCounters* counters) {
  switch (static_cast<Algorithm>(slot.vips[vip].algorithm)) {
    case Algorithm::kRoundRobin:
      return RoundRobin(slot, vip);
    case Algorithm::kWeightedRoundRobin:
      return SmoothWeighted(slot, vip);
    case Algorithm::kRandom:
      return Random(slot, vip);
    case Algorithm::kLeastConnections:
      return LeastConnections(slot, vip, counters, false);
    case Algorithm::kWeightedLeastConnections:
      return LeastConnections(slot, vip, counters, true);
    case Algorithm::kMaglev:
    case Algorithm::kIpHash:
      break;  // consistent: Pick handles them before calling here
  }
  return 0;
}

}  // namespace lb
