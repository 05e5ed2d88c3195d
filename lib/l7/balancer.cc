#include "lib/l7/balancer.h"

#include <algorithm>

#include "lib/maglev.h"

namespace lb::l7 {

Balancer::Balancer(BalanceAlgorithm algorithm, std::vector<uint32_t> weights, PassiveHealth health,
                   uint64_t seed, ActiveCounts* shared)
    : algorithm_(algorithm), health_(health), shared_(shared), rng_(seed | 1) {
  backends_.resize(weights.size());
  for (size_t i = 0; i < weights.size(); ++i) backends_[i].weight = weights[i];
}

uint64_t Balancer::NextRandom() {
  // xorshift64*: per worker, no lock, good enough to spread picks.
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return rng_ * 0x2545F4914F6CDD1DULL;
}

bool Balancer::Available(int b, int64_t now_ns) const {
  return backends_[b].weight > 0 && backends_[b].ejected_until <= now_ns && !draining(b) &&
         !down(b);
}

bool Balancer::Usable(int b, int64_t now_ns, absl::Span<const int> exclude) {
  if (!Available(b, now_ns) || std::find(exclude.begin(), exclude.end(), b) != exclude.end()) {
    return false;
  }
  if (Full(b)) {
    saw_full_ = true;
    return false;
  }
  return true;
}

int Balancer::Pick(uint64_t client_hash, int64_t now_ns, absl::Span<const int> exclude) {
  saw_full_ = false;
  const int n = size();
  if (n == 0) return -1;
  switch (algorithm_) {
    case BalanceAlgorithm::kRoundRobin:
      for (int i = 0; i < n; ++i) {
        const int b = static_cast<int>((rr_next_ + i) % n);
        if (Usable(b, now_ns, exclude)) {
          rr_next_ = (b + 1) % n;
          return b;
        }
      }
      return -1;
    case BalanceAlgorithm::kWeightedRoundRobin: {
      int best = -1;
      int64_t total = 0;
      for (int b = 0; b < n; ++b) {
        if (!Usable(b, now_ns, exclude)) continue;
        State& s = backends_[b];
        s.current += s.weight;
        total += s.weight;
        if (best < 0 || s.current > backends_[best].current) best = b;
      }
      if (best >= 0) backends_[best].current -= total;
      return best;
    }
    case BalanceAlgorithm::kLeastConnections: {
      int best = -1;
      for (int i = 0; i < n; ++i) {
        const int b = static_cast<int>((rr_next_ + i) % n);
        if (!Usable(b, now_ns, exclude)) continue;
        if (best < 0 || active(b) < active(best)) best = b;
      }
      if (best >= 0) rr_next_ = (best + 1) % n;
      return best;
    }
    case BalanceAlgorithm::kWeightedLeastConnections: {
      int best = -1;
      for (int i = 0; i < n; ++i) {
        const int b = static_cast<int>((rr_next_ + i) % n);
        if (!Usable(b, now_ns, exclude)) continue;
        if (best < 0 || int64_t{active(b)} * backends_[best].weight <
                            int64_t{active(best)} * backends_[b].weight) {
          best = b;
        }
      }
      if (best >= 0) rr_next_ = (best + 1) % n;
      return best;
    }
    case BalanceAlgorithm::kIpHash: {
      const int start = static_cast<int>(client_hash % n);
      for (int i = 0; i < n; ++i) {
        const int b = (start + i) % n;
        if (Usable(b, now_ns, exclude)) return b;
      }
      return -1;
    }
    case BalanceAlgorithm::kRandom: {
      int usable = 0;
      for (int b = 0; b < n; ++b) usable += Usable(b, now_ns, exclude);
      if (usable == 0) return -1;
      // The k-th usable backend, for two independent k.
      auto nth = [&](int k) {
        for (int b = 0; b < n; ++b) {
          if (Usable(b, now_ns, exclude) && k-- == 0) return b;
        }
        return -1;
      };
      const int a = nth(static_cast<int>(NextRandom() % usable));
      const int c = nth(static_cast<int>(NextRandom() % usable));
      return active(c) < active(a) ? c : a;
    }
    case BalanceAlgorithm::kMaglev:
      return PickMaglev(client_hash, now_ns, exclude);
  }
  return -1;
}

int Balancer::PickMaglev(uint64_t key_hash, int64_t now_ns, absl::Span<const int> exclude) {
  if (ring_ == nullptr || ring_->empty()) return -1;
  // With nothing usable the walk below would scan the whole ring.
  bool any = false;
  for (int b = 0; b < size() && !any; ++b) any = Usable(b, now_ns, exclude);
  if (!any) return -1;
  const std::vector<uint32_t>& ring = *ring_;
  const size_t m = ring.size();
  // The next ring entry after an unavailable one: a backend's keys spread
  // over the others in proportion to their slots (the ring is a
  // permutation mix), and keys of available backends never move.
  for (size_t i = 0, at = key_hash % m; i < m; ++i, at = at + 1 == m ? 0 : at + 1) {
    const int b = static_cast<int>(ring[at]) - 1;
    if (b >= 0 && Usable(b, now_ns, exclude)) return b;
  }
  return -1;
}

absl::StatusOr<std::vector<uint32_t>> BuildMaglevRing(absl::Span<const std::string> keys,
                                                      absl::Span<const uint32_t> weights,
                                                      uint64_t table_size) {
  if (absl::Status st = ValidateMaglevTableSize(table_size); !st.ok()) return st;
  std::vector<MaglevBackend> backends;
  for (size_t i = 0; i < keys.size(); ++i) {
    backends.push_back(
        {keys[i], i < weights.size() ? weights[i] : 1, static_cast<uint32_t>(i + 1)});
  }
  std::vector<uint32_t> ring(table_size);
  if (absl::Status st = BuildMaglevTable(backends, absl::MakeSpan(ring)); !st.ok()) return st;
  return ring;
}

uint64_t HashKey(absl::string_view key) {
  // Any fixed seed; it only has to be the same on every node.
  return MaglevKeyHash(key, 0x6c62'6c37'6b65'7973ULL);
}

void Balancer::OnConnectFailure(int b, int64_t now_ns) {
  State& s = backends_[b];
  ++s.failures;
  if (health_.consecutive_failures != 0 && s.failures >= health_.consecutive_failures) {
    s.ejected_until = now_ns + health_.eject_ns;
    // One more failure after the ejection ejects it again.
    s.failures = health_.consecutive_failures - 1;
  }
}

void Balancer::OnConnectSuccess(int b) { backends_[b].failures = 0; }

void Balancer::OnResponse(int b, int status, int64_t now_ns) {
  State& s = backends_[b];
  if (status < 500) {
    s.errors_5xx = 0;
    return;
  }
  ++s.errors_5xx;
  if (health_.consecutive_5xx != 0 && s.errors_5xx >= health_.consecutive_5xx) {
    s.ejected_until = now_ns + health_.eject_ns;
    s.errors_5xx = health_.consecutive_5xx - 1;
  }
}

}  // namespace lb::l7
