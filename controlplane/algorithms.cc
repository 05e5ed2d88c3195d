#include "controlplane/algorithms.h"

#include <iterator>

#include "absl/strings/str_join.h"

namespace lb {
namespace {

// Order: the classic REST API's listing (AlgorithmChoices).
constexpr AlgorithmInfo kAlgorithms[] = {
    {v1::ALGORITHM_ROUND_ROBIN, Algorithm::kRoundRobin, "round_robin",
     "each lcore's rotation position"},
    {v1::ALGORITHM_WEIGHTED_ROUND_ROBIN, Algorithm::kWeightedRoundRobin, "weighted_round_robin",
     "each lcore's smooth weighted round-robin state"},
    {v1::ALGORITHM_LEAST_CONNECTIONS, Algorithm::kLeastConnections, "least_connections",
     "the live flows each lcore holds per backend"},
    {v1::ALGORITHM_WEIGHTED_LEAST_CONNECTIONS, Algorithm::kWeightedLeastConnections,
     "weighted_least_connections", "the live flows each lcore holds per backend"},
    {v1::ALGORITHM_IP_HASH, Algorithm::kIpHash, "ip_hash", nullptr},
    {v1::ALGORITHM_RANDOM, Algorithm::kRandom, "random", "each lcore's random generator"},
    {v1::ALGORITHM_MAGLEV, Algorithm::kMaglev, "maglev", nullptr},
};
static_assert(std::size(kAlgorithms) == kNumAlgorithms, "one row per table-format algorithm");

}  // namespace

const AlgorithmInfo* AlgorithmTable(size_t* size) {
  *size = std::size(kAlgorithms);
  return kAlgorithms;
}

const AlgorithmInfo* FindAlgorithm(v1::Algorithm a) {
  if (a == v1::ALGORITHM_UNSPECIFIED) a = v1::ALGORITHM_MAGLEV;
  for (const AlgorithmInfo& i : kAlgorithms) {
    if (i.api == a) return &i;
  }
  return nullptr;
}

const AlgorithmInfo* FindAlgorithm(Algorithm a) {
  for (const AlgorithmInfo& i : kAlgorithms) {
    if (i.table == a) return &i;
  }
  return nullptr;
}

const AlgorithmInfo* FindAlgorithmByName(std::string_view name) {
  for (const AlgorithmInfo& i : kAlgorithms) {
    if (name == i.name) return &i;
  }
  return nullptr;
}

const char* AlgorithmName(v1::Algorithm a) {
  const AlgorithmInfo* i = FindAlgorithm(a);
  return i == nullptr ? "unknown" : i->name;
}

const char* AlgorithmName(Algorithm a) {
  const AlgorithmInfo* i = FindAlgorithm(a);
  return i == nullptr ? "unknown" : i->name;
}

std::optional<Algorithm> TableAlgorithm(v1::Algorithm a) {
  const AlgorithmInfo* i = FindAlgorithm(a);
  if (i == nullptr) return std::nullopt;
  return i->table;
}

std::string AlgorithmChoices() {
  std::vector<const char*> names;
  for (const AlgorithmInfo& i : kAlgorithms) names.push_back(i.name);
  return absl::StrJoin(names, " | ");
}

}  // namespace lb
