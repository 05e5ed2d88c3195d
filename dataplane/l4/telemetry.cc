#include "dataplane/l4/telemetry.h"

#include <arpa/inet.h>
#include <rte_telemetry.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "lib/drop_reasons.h"
#include "lib/table_format.h"

namespace lb::dp {
namespace {

// Set once by RegisterTelemetry, before any callback can run.
const StatsRegion* g_stats = nullptr;
const TableReader* g_tables = nullptr;
uint16_t g_workers = 0;

uint64_t Load(const std::atomic<uint64_t>& v) { return v.load(std::memory_order_relaxed); }

// One worker's counters into `d` (a started dict); with `by_reason`, its
// drops by reason as a nested dict, else their sum.
void AddLcore(rte_tel_data* d, uint16_t i, bool by_reason) {
  const LcoreStats& l = g_stats->Lcore(i);
  rte_tel_data_add_dict_u64(d, "lcore", l.lcore_id);
  rte_tel_data_add_dict_u64(d, "rx_packets", Load(l.rx_packets));
  rte_tel_data_add_dict_u64(d, "tx_packets", Load(l.tx_packets));
  rte_tel_data_add_dict_u64(d, "forwarded", Load(l.forwarded));
  rte_tel_data_add_dict_u64(d, "replies", Load(l.replies));
  rte_tel_data_add_dict_u64(d, "to_kernel", Load(l.to_kernel));
  rte_tel_data_add_dict_u64(d, "from_kernel", Load(l.from_kernel));
  rte_tel_data_add_dict_u64(d, "new_flows", Load(l.new_flows));
  rte_tel_data_add_dict_u64(d, "conn_entries", Load(l.conn_entries));
  rte_tel_data_add_dict_u64(d, "conn_evictions", Load(l.conn_evictions));
  rte_tel_data_add_dict_u64(d, "table_swaps", Load(l.table_swaps));
  rte_tel_data_add_dict_u64(d, "observed_generation", Load(l.observed_generation));
  if (!by_reason) {
    uint64_t drops = 0;
    for (int r = 0; r < kNumDropReasons; ++r) drops += Load(l.drops[r]);
    rte_tel_data_add_dict_u64(d, "drops", drops);
    return;
  }
  rte_tel_data* reasons = rte_tel_data_alloc();
  if (reasons == nullptr) return;
  rte_tel_data_start_dict(reasons);
  for (int r = 0; r < kNumDropReasons; ++r) {
    rte_tel_data_add_dict_u64(reasons, DropReasonName(static_cast<DropReason>(r)),
                              Load(l.drops[r]));
  }
  rte_tel_data_add_dict_container(d, "drops", reasons, 0);
}

int HandleLcores(const char* /*cmd*/, const char* params, rte_tel_data* d) {
  rte_tel_data_start_dict(d);
  if (params != nullptr && *params != '\0') {
    uint32_t i = 0;
    if (!absl::SimpleAtoi(params, &i) || i >= g_workers) return -EINVAL;
    AddLcore(d, static_cast<uint16_t>(i), /*by_reason=*/true);
    return 0;
  }
  for (uint16_t i = 0; i < g_workers; ++i) {
    rte_tel_data* one = rte_tel_data_alloc();
    if (one == nullptr) return -ENOMEM;
    rte_tel_data_start_dict(one);
    AddLcore(one, i, /*by_reason=*/false);
    rte_tel_data_add_dict_container(d, std::to_string(i).c_str(), one, 0);
  }
  return 0;
}

// "198.51.100.10:80/tcp", "[2001:db8::1]:443/udp".
std::string VipName(const VipEntry& e) {
  char text[INET6_ADDRSTRLEN] = "?";
  const bool v6 = e.family == static_cast<uint8_t>(AddrFamily::kIPv6);
  inet_ntop(v6 ? AF_INET6 : AF_INET, e.addr, text, sizeof(text));
  const char* proto = e.proto == 6 ? "tcp" : e.proto == 17 ? "udp" : "ip";
  return v6 ? absl::StrCat("[", text, "]:", e.port, "/", proto)
            : absl::StrCat(text, ":", e.port, "/", proto);
}

// The VIPs of generation g into `d`; false when g's slot changed meanwhile.
bool AddVips(rte_tel_data* d, uint64_t g) {
  const SlotView slot = g_tables->Slot(g);
  const uint32_t num_vips = slot.header->num_vips;
  if (num_vips > slot.max_vips) return false;  // a slot being rewritten
  for (uint32_t v = 0; v < num_vips; ++v) {
    const VipEntry e = slot.vips[v];
    if (!(e.flags & kVipInUse)) continue;
    rte_tel_data* one = rte_tel_data_alloc();
    if (one == nullptr) return true;
    rte_tel_data_start_dict(one);
    rte_tel_data_add_dict_string(one, "vip", VipName(e).c_str());
    rte_tel_data_add_dict_u64(one, "members", e.member_count);
    uint64_t packets = 0, bytes = 0, new_flows = 0, drops = 0;
    for (uint16_t i = 0; i < g_workers && v < g_stats->header().max_vips; ++i) {
      const VipCounters& c = g_stats->Vips(i)[v];
      packets += Load(c.packets);
      bytes += Load(c.bytes);
      new_flows += Load(c.new_flows);
      drops += Load(c.drops);
    }
    rte_tel_data_add_dict_u64(one, "packets", packets);
    rte_tel_data_add_dict_u64(one, "bytes", bytes);
    rte_tel_data_add_dict_u64(one, "new_flows", new_flows);
    rte_tel_data_add_dict_u64(one, "drops", drops);
    // Keyed by the VIP id: DPDK accepts only [A-Za-z0-9_/.-] in names.
    rte_tel_data_add_dict_container(d, std::to_string(e.vip_id).c_str(), one, 0);
  }
  return g_tables->generation() == g;
}

int HandleVips(const char* /*cmd*/, const char* /*params*/, rte_tel_data* d) {
  for (int attempt = 0; attempt < 4; ++attempt) {
    rte_tel_data_start_dict(d);  // restarts the dict (drops a torn attempt)
    const uint64_t g = g_tables->generation();
    if (g == 0) return 0;  // nothing published yet
    if (AddVips(d, g)) return 0;
  }
  return -EAGAIN;
}

}  // namespace

void RegisterTelemetry(const StatsRegion* stats, const TableReader* tables, uint16_t workers) {
  g_stats = stats;
  g_tables = tables;
  g_workers = workers;
  rte_telemetry_register_cmd("/lb/lcores", HandleLcores,
                             "Per-worker counters. Parameters: int worker index (optional)");
  rte_telemetry_register_cmd("/lb/vips", HandleVips,
                             "VIPs of the published table with counters summed over workers");
}

}  // namespace lb::dp
