// Control-plane latency: API call accepted -> every live lcore of a real
// lb-dataplane forwards with the new table generation.
//
//   control_bench <path to lb-dataplane> [--ops=N] [--backends=N] [--warmup=N]
//
// Starts lb-dataplane on a net_null port (one lcore, --no-huge), runs the real
// ControlPlane in this process over regions and a store in a /dev/shm temp
// dir, and for 10 and 1,000 backends (or only --backends) times N UpdateBackend calls (a weight
// flip: a new Maglev ring every time), after --warmup calls (default 5) that
// are not in the figures: the first call after start takes 13-15 ms (cold
// code and first-touch allocations; the second 2.5-3.9 ms), and with 200
// calls the p99 is the third slowest, so two cold calls would set it. The
// first call's latency is printed on its own. Prints one line per size:
//
//   control backends=<n> api_to_lcores_ms_p50=<x> api_to_lcores_ms_p99=<y>
//
// then "# ... first_call_ms=<x> warmup=<n> slowest=<i:ms ...>" (the six
// slowest measured calls by index, to see whether the tail is spread or
// bunched), followed by "#" lines with the publish and build times (build = BuildTables
// with the Maglev rings + the slot check), so the "beyond the Maglev build"
// target can be read off, and one "# ... phases_ms_p50/p99" line with the
// wall-clock phases of each call (lb::PublishReport): before_validate (the
// candidate config), validate (ValidateConfig), reclaim_wait, build, save
// (Store::Save with its fsync) and observe (Commit -> every live lcore on
// the generation). The latencies are the ControlPlane's own
// (ApiToLcoresLatenciesMs): from the call being accepted to every live
// lcore's observed_generation reaching the new generation.
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "controlplane/control_plane.h"
#include "controlplane/store.h"
#include "lib/shm_region.h"

namespace {

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(q * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

lb::v1::Config MakeConfig(int backends) {
  lb::v1::Config c;
  c.mutable_node()->set_tunnel_source_ipv4("192.0.2.1");
  lb::v1::Pool* p = c.add_pools();
  p->set_name("web");
  for (int i = 0; i < backends; ++i) {
    lb::v1::Backend* b = p->add_backends();
    b->set_address(absl::StrCat("10.1.", i / 200, ".", i % 200 + 1));
    b->set_port(80);
    b->set_id(static_cast<uint32_t>(i + 1));
  }
  lb::v1::Vip* v = c.add_vips();
  v->set_address("198.51.100.10");
  v->set_protocol(lb::v1::PROTOCOL_TCP);
  v->set_port(80);
  v->set_pool("web");
  return c;
}

int Run(const std::string& dataplane, int backends, int ops, int warmup) {
  char tmpl[] = "/dev/shm/lb-control-bench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string dir = tmpl;
  lb::ControlPlaneOptions o;
  o.publisher.table_path = dir + "/tables";
  o.publisher.stats_path = dir + "/stats";
  o.bootstrap = MakeConfig(backends);
  // Build time of every publish (BuildTables + slot check), from the
  // publish callback, which runs under the control plane's mutex.
  auto build_ms = std::make_shared<std::vector<double>>();
  auto phases = std::make_shared<std::vector<lb::PublishReport>>();
  o.on_publish = [build_ms, phases](const lb::PublishReport& r) {
    build_ms->push_back(r.build_ms);
    lb::PublishReport p = r;
    p.build = {};
    p.build.fill_ms = r.build.fill_ms;
    phases->push_back(std::move(p));
  };
  auto store = lb::NewFileStore(dir + "/state");
  if (!store.ok()) {
    std::fprintf(stderr, "store: %s\n", std::string(store.status().message()).c_str());
    return 1;
  }
  auto cp = lb::ControlPlane::Create(o, std::move(*store));
  if (!cp.ok()) {
    std::fprintf(stderr, "control plane: %s\n", std::string(cp.status().message()).c_str());
    return 1;
  }

  const pid_t child = fork();
  if (child == 0) {
    const std::string prefix = absl::StrCat("--file-prefix=ctlbench", getpid());
    execl(dataplane.c_str(), dataplane.c_str(), "-l", "0", "--no-huge", "-m", "256", "--no-pci",
          prefix.c_str(), "--log-level", "lib.eal:error", "--vdev=net_null0", "--",
          "--table_region", o.publisher.table_path.c_str(), "--stats_region",
          o.publisher.stats_path.c_str(), "--gateway_mac", "02:00:00:00:00:01", "--conn_table_size",
          "4096", static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait until the dataplane's lcore is online and on the current generation.
  bool up = false;
  for (int i = 0; i < 200 && !up; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto stats = lb::StatsRegion::Attach(o.publisher.stats_path);
    if (!stats.ok() || stats->control().num_lcores.load() == 0) continue;
    up = stats->Lcore(0).observed_generation.load() == (*cp)->generation();
  }
  int rc = 0;
  if (!up) {
    std::fprintf(stderr, "lb-dataplane did not come up\n");
    rc = 1;
  } else {
    const size_t cold = (*cp)->ApiToLcoresLatenciesMs().size();
    size_t before = cold;
    size_t builds_before = build_ms->size();
    for (int i = 0; i < warmup + ops && rc == 0; ++i) {
      if (i == warmup) {
        before = (*cp)->ApiToLcoresLatenciesMs().size();
        builds_before = build_ms->size();
      }
      lb::v1::UpdateBackendRequest req;
      req.set_id(static_cast<uint32_t>(1 + i % backends));
      req.set_weight(static_cast<uint32_t>(1 + (i / backends) % 2 + 1));
      auto r = (*cp)->UpdateBackend(req);
      if (!r.ok()) {
        std::fprintf(stderr, "UpdateBackend: %s\n", std::string(r.status().message()).c_str());
        rc = 1;
      }
    }
    std::vector<double> lat = (*cp)->ApiToLcoresLatenciesMs();
    const double first_call = lat.size() > cold ? lat[cold] : 0;
    std::vector<double> pub = (*cp)->PublishLatenciesMs();
    lat.erase(lat.begin(), lat.begin() + static_cast<long>(std::min(before, lat.size())));
    pub.erase(pub.begin(), pub.begin() + static_cast<long>(std::min(before, pub.size())));
    std::printf("control backends=%d api_to_lcores_ms_p50=%.3f api_to_lcores_ms_p99=%.3f\n",
                backends, Percentile(lat, 0.5), Percentile(lat, 0.99));
    std::vector<size_t> slow(lat.size());
    for (size_t i = 0; i < slow.size(); ++i) slow[i] = i;
    std::sort(slow.begin(), slow.end(), [&lat](size_t a, size_t b) { return lat[a] > lat[b]; });
    std::string slowest;
    for (size_t i = 0; i < slow.size() && i < 6; ++i) {
      absl::StrAppend(&slowest, i == 0 ? "" : ",", slow[i], ":", absl::SixDigits(lat[slow[i]]));
    }
    std::printf("# backends=%d first_call_ms=%.3f warmup=%d slowest=%s\n", backends, first_call,
                warmup, slowest.c_str());
    std::vector<double> build(build_ms->begin() + static_cast<long>(builds_before),
                              build_ms->end());
    std::printf(
        "# backends=%d ops=%zu publish_ms_p50=%.3f publish_ms_p99=%.3f "
        "lcores_after_publish_ms_p50=%.3f build_ms_p50=%.3f build_ms_p99=%.3f\n",
        backends, lat.size(), Percentile(pub, 0.5), Percentile(pub, 0.99),
        Percentile(lat, 0.5) - Percentile(pub, 0.5), Percentile(build, 0.5),
        Percentile(build, 0.99));
    // Wall-clock phases of each UpdateBackend (PublishReport): p50 / p99.
    std::vector<lb::PublishReport> ph(phases->begin() + static_cast<long>(builds_before),
                                      phases->end());
    auto p50_p99 = [](const std::vector<double>& v) {
      return absl::StrCat(absl::SixDigits(Percentile(v, 0.5)), "/",
                          absl::SixDigits(Percentile(v, 0.99)));
    };
    auto pick = [&ph, &p50_p99](double lb::PublishReport::*f) {
      std::vector<double> v;
      for (const lb::PublishReport& r : ph) v.push_back(r.*f);
      return p50_p99(v);
    };
    std::vector<double> fill;
    for (const lb::PublishReport& r : ph) fill.push_back(r.build.fill_ms);
    std::printf(
        "# backends=%d phases_ms_p50/p99 before_validate=%s validate=%s reclaim_wait=%s "
        "build=%s (fill=%s check_seal=%s) save=%s observe=%s\n",
        backends, pick(&lb::PublishReport::before_validate_ms).c_str(),
        pick(&lb::PublishReport::validate_ms).c_str(), pick(&lb::PublishReport::wait_ms).c_str(),
        pick(&lb::PublishReport::build_ms).c_str(), p50_p99(fill).c_str(),
        pick(&lb::PublishReport::check_seal_ms).c_str(), pick(&lb::PublishReport::save_ms).c_str(),
        pick(&lb::PublishReport::observe_ms).c_str());
  }
  kill(child, SIGTERM);
  int status = 0;
  waitpid(child, &status, 0);
  cp->reset();
  std::filesystem::remove_all(dir);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: control_bench <lb-dataplane> [--ops=N] [--backends=N] [--warmup=N]\n");
    return 2;
  }
  // The dataplane's lcore busy-polls CPU 0 (-l 0); keep the control plane
  // off it, or every measurement includes a scheduler time slice.
  if (sysconf(_SC_NPROCESSORS_ONLN) > 1) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(1, &set);
    sched_setaffinity(0, sizeof(set), &set);
  }
  int ops = 200;
  int warmup = 5;
  std::vector<int> sizes = {10, 1000};
  for (int i = 2; i < argc; ++i) {
    int n = 0;
    if (std::sscanf(argv[i], "--backends=%d", &n) == 1 && n > 0) {
      sizes = {n};
    } else if (std::sscanf(argv[i], "--warmup=%d", &n) == 1 && n >= 0) {
      warmup = n;
    } else if (std::sscanf(argv[i], "--ops=%d", &ops) != 1 || ops <= 0) {
      std::fprintf(stderr, "control_bench: bad argument %s\n", argv[i]);
      return 2;
    }
  }
  for (int n : sizes) {
    if (Run(argv[1], n, ops, warmup) != 0) return 1;
  }
  return 0;
}
