// The one table of load-balancing algorithm names: the API enum
// (lb.v1.Algorithm), the table-format value the dataplane reads
// (lb::Algorithm, lib/table_format.h), the classic REST API's name
// ("weighted_round_robin"), which is also what Explain, metrics and logs
// display, and, for algorithms that do not pick by flow hash, the per-lcore
// state the pick depends on. ALGORITHM_UNSPECIFIED means Maglev everywhere.
//
// Pure functions over a constant table; any thread.
#ifndef LB_CONTROLPLANE_ALGORITHMS_H_
#define LB_CONTROLPLANE_ALGORITHMS_H_

#include <optional>
#include <string>
#include <string_view>

#include "lb/v1/config.pb.h"
#include "lib/table_format.h"

namespace lb {

struct AlgorithmInfo {
  v1::Algorithm api;
  Algorithm table;
  const char* name;  // classic REST API name and display name
  // What a per-lcore pick depends on; nullptr for the hash-ring algorithms.
  const char* per_lcore_state;
};

// Every algorithm, in the order the REST API lists them.
const AlgorithmInfo* AlgorithmTable(size_t* size);

// Lookups; nullptr for an unknown value or name. UNSPECIFIED finds Maglev.
const AlgorithmInfo* FindAlgorithm(v1::Algorithm a);
const AlgorithmInfo* FindAlgorithm(Algorithm a);
const AlgorithmInfo* FindAlgorithmByName(std::string_view name);

// Display name ("maglev" for UNSPECIFIED; "unknown" for values outside the
// table).
const char* AlgorithmName(v1::Algorithm a);
const char* AlgorithmName(Algorithm a);

// The table-format value of an API algorithm; nullopt for an unknown value.
std::optional<Algorithm> TableAlgorithm(v1::Algorithm a);

// "round_robin | weighted_round_robin | ...", for error messages.
std::string AlgorithmChoices();

}  // namespace lb

#endif  // LB_CONTROLPLANE_ALGORITHMS_H_
