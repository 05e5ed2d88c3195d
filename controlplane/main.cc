// lb-controlplane: loads the config, validates it as a whole, builds the
// forwarding tables and publishes them into the shared table region that
// lb-dataplane reads. Runs until SIGTERM/SIGINT; SIGHUP reloads the config.
//
// Output: one line per publish on stdout,
//   published generation=N vips=V backends=B build_ms=X wait_ms=Y
// followed by one line per VIP,
//   vip <addr>:<port>/<proto> pool=<name> members=<n> fingerprint=<16 hex>
// Errors and warnings go to stderr, one line each, naming the flag or the
// config field at fault. Exit status: 0 on a clean stop (or --once/--check
// success), 1 on any error.
#include <signal.h>

#include <cinttypes>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "controlplane/config.h"
#include "controlplane/publisher.h"
#include "gflags/gflags.h"
#include "lib/shm_region.h"

DEFINE_string(config, "",
              "Required. Config file: protobuf text format (*.textproto, *.txtpb, *.pbtxt) or "
              "proto3 JSON (*.json) of lb.v1.Config (proto/lb/v1/config.proto).");
DEFINE_string(table_region, "",
              "Table region file the dataplane reads. Default: <first writable hugetlbfs "
              "mount, else /dev/shm>/lb-tables.");
DEFINE_string(stats_region, "",
              "Stats region file the dataplane writes (read here to know when a table slot is "
              "free to reuse). A missing file means no dataplane has run: publish at once. "
              "Default: <same directory as the default table region>/lb-stats.");
DEFINE_bool(recreate_tables, false,
            "Replace an existing table region whose capacities or ABI differ instead of "
            "refusing to start. Forgets slot numbers and incarnations: a running dataplane "
            "must be restarted.");
DEFINE_uint32(max_vips, 64, "Table region capacity: VIPs (1..4096).");
DEFINE_uint32(max_backends, 4096,
              "Table region capacity: backend slots including the reserved slot 0, so at most "
              "max_backends - 1 backends across all pools.");
DEFINE_uint32(max_members, 16384,
              "Table region capacity: the sum over VIPs of their active backends.");
DEFINE_uint32(max_ring_size, 65537,
              "Table region capacity: Maglev ring entries per VIP; must be >= the config's "
              "tables.ring_size.");
DEFINE_uint32(reclaim_timeout_ms, 2000,
              "How long a publish waits for every live dataplane lcore to leave the table slot "
              "it is about to overwrite. On timeout the publish is refused (the table stays as "
              "it was) and the lcores still holding the slot are named.");
DEFINE_uint32(stuck_lcore_ms, 500,
              "An lcore whose heartbeat is older than this while it still holds the slot is "
              "reported as stuck.");
DEFINE_bool(once, false,
            "Validate, publish one generation and exit: 0 on success, 1 on any error.");
DEFINE_bool(check, false,
            "Validate the config against the --max_* capacities, print OK or the errors, and exit "
            "0/1. Touches no region.");

namespace lb {
namespace {

void Error(const std::string& msg) {
  std::fprintf(stderr, "lb-controlplane: error: %s\n", msg.c_str());
  std::fflush(stderr);
}

void Info(const std::string& msg) {
  std::fprintf(stderr, "lb-controlplane: %s\n", msg.c_str());
  std::fflush(stderr);
}

TableCapacities CapacitiesFromFlags() {
  TableCapacities c;
  c.max_vips = FLAGS_max_vips;
  c.max_backends = FLAGS_max_backends;
  c.max_members = FLAGS_max_members;
  c.max_ring_size = FLAGS_max_ring_size;
  return c;
}

// Loads and validates; on failure the message names the file and the field.
absl::StatusOr<DesiredState> LoadDesired(const TableCapacities& caps) {
  auto config = LoadConfigFile(FLAGS_config);
  if (!config.ok()) return config.status();
  std::vector<std::string> warnings;
  auto desired = ValidateConfig(*config, caps, &warnings);
  for (const std::string& w : warnings) Info(absl::StrCat("warning: ", FLAGS_config, ": ", w));
  if (!desired.ok()) {
    return absl::Status(
        desired.status().code(),
        absl::StrCat("config ", FLAGS_config, " refused: ", desired.status().message()));
  }
  return desired;
}

void PrintReport(const PublishReport& r) {
  std::printf("published generation=%" PRIu64 " vips=%zu backends=%u build_ms=%.2f wait_ms=%.2f\n",
              r.generation, r.build.vips.size(), r.build.backends_in_use, r.build_ms, r.wait_ms);
  for (const VipSummary& v : r.build.vips) {
    std::printf("vip %s pool=%s members=%u fingerprint=%016" PRIx64 "\n", v.key.c_str(),
                v.pool.c_str(), v.members, v.fingerprint);
  }
  std::fflush(stdout);
}

int Run() {
  if (FLAGS_config.empty()) {
    Error("--config is required (see --help)");
    return 1;
  }
  const TableCapacities caps = CapacitiesFromFlags();
  if (auto layout = ComputeTableLayout(caps); !layout.ok()) {
    Error(absl::StrCat("--", layout.status().message()));
    return 1;
  }

  auto desired = LoadDesired(caps);
  if (!desired.ok()) {
    Error(std::string(desired.status().message()));
    return 1;
  }
  if (FLAGS_check) {
    std::printf("OK %s: %zu pools, %zu backends, %zu vips, ring_size %u\n", FLAGS_config.c_str(),
                desired->pools.size(), desired->NumBackends(), desired->vips.size(),
                desired->ring_size);
    return 0;
  }

  // Signals are taken synchronously with sigwait(); block them before any
  // wait so that a SIGHUP sent during start-up is not lost.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  if (!FLAGS_once) pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const RegionDir dir = DefaultRegionDir();
  PublisherOptions opts;
  opts.table_path = FLAGS_table_region.empty() ? dir.path + "/lb-tables" : FLAGS_table_region;
  opts.stats_path = FLAGS_stats_region.empty() ? dir.path + "/lb-stats" : FLAGS_stats_region;
  opts.caps = caps;
  opts.recreate_tables = FLAGS_recreate_tables;
  opts.reclaim_timeout_ns = uint64_t{FLAGS_reclaim_timeout_ms} * 1'000'000;
  opts.stuck_after_ns = uint64_t{FLAGS_stuck_lcore_ms} * 1'000'000;

  auto publisher = Publisher::Open(opts);
  if (!publisher.ok()) {
    Error(std::string(publisher.status().message()));
    return 1;
  }
  Info(absl::StrCat("table region ", opts.table_path,
                    FLAGS_table_region.empty() ? (dir.hugetlbfs ? " (hugetlbfs)" : " (tmpfs)") : "",
                    " at generation ", publisher->published_generation(), "; stats region ",
                    opts.stats_path));

  auto report = publisher->Publish(*desired);
  if (!report.ok()) {
    Error(std::string(report.status().message()));
    return 1;
  }
  PrintReport(*report);
  if (FLAGS_once) return 0;

  while (true) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGTERM || sig == SIGINT) {
      Info(absl::StrCat("signal ", sig, ": exiting; generation ", publisher->published_generation(),
                        " stays published"));
      return 0;
    }
    Info(absl::StrCat("SIGHUP: reloading ", FLAGS_config));
    auto next = LoadDesired(caps);
    if (!next.ok()) {
      Error(absl::StrCat(next.status().message(), "; keeping generation ",
                         publisher->published_generation()));
      continue;
    }
    auto r = publisher->Publish(*next);
    if (!r.ok()) {
      Error(absl::StrCat(r.status().message(), "; keeping generation ",
                         publisher->published_generation()));
      continue;
    }
    PrintReport(*r);
  }
}

}  // namespace
}  // namespace lb

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "builds the load balancer's forwarding tables from a config and publishes them into "
      "shared memory for lb-dataplane.\n"
      "  lb-controlplane --config=lb.textproto            publish, then run: SIGHUP reloads,\n"
      "                                                   SIGTERM/SIGINT exit 0\n"
      "  lb-controlplane --config=lb.textproto --once     publish once and exit\n"
      "  lb-controlplane --config=lb.json --check         validate only");
  gflags::SetVersionString("0.1.0");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (argc > 1) {
    lb::Error(absl::StrCat("unexpected argument \"", argv[1], "\" (flags only; see --help)"));
    return 1;
  }
  return lb::Run();
}
