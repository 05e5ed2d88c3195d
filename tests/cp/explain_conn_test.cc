// Explain answers from the dataplane's real connection tables, read-only
// through their shared files (<stats_region>.conn.<lcore>, lib/conn_table_shm.h):
// a pinned flow names its lcore and backend (even one the pick would not
// give), an unpinned one says what the pick would be.
#include <netinet/in.h>

#include "lib/backend_pick.h"
#include "lib/conn_table.h"
#include "lib/conn_table_shm.h"
#include "lib/vip_flow.h"
#include "tests/cp/control_plane_test_util.h"

namespace lb {
namespace {

v1::ExplainRequest Req(uint32_t sport) {
  v1::ExplainRequest r;
  r.set_src("203.0.113.7");
  r.set_src_port(sport);
  r.set_dst("198.51.100.1");
  r.set_dst_port(80);
  r.set_protocol(v1::PROTOCOL_TCP);
  return r;
}

FlowKey Key(uint16_t sport) {
  FlowKey k;
  std::memset(&k, 0, sizeof(k));
  auto s = ParseIpAddress("203.0.113.7");
  auto d = ParseIpAddress("198.51.100.1");
  std::memcpy(k.src, s->bytes.data(), 16);
  std::memcpy(k.dst, d->bytes.data(), 16);
  k.sport = sport;
  k.dport = 80;
  k.proto = IPPROTO_TCP;
  k.family = s->family;
  return k;
}

TEST_F(ControlPlaneTest, ExplainAnswersFromTheDataplanesConnectionTables) {
  auto cp = Make(ParseOrDie(kBase));
  ASSERT_NE(cp, nullptr);
  const SlotView slot = Published();
  auto r = cp->Explain(Req(1000));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_CONTAINS(r->reason(), "connection table not consulted");
  const uint32_t ring_pick_id = r->backend_id();

  // A dataplane with two lcores left its tables (as lb-dataplane does).
  ConnTableOptions o;
  o.capacity = 1024;
  ConnTableAttach a;
  auto t0 = ConnTable::CreateShared(o, ConnTableFileName(stats_, 0), 0, &a);
  auto t1 = ConnTable::CreateShared(o, ConnTableFileName(stats_, 1), 1, &a);
  ASSERT_TRUE(t0.ok() && t1.ok());
  r = cp->Explain(Req(1000));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_CONTAINS(r->reason(), "not pinned in any of 2 connection table(s); the pick would be");
  EXPECT_EQ(r->backend_id(), ring_pick_id);

  // Lcore 1 pins the flow to a backend the ring does not pick for it.
  const int vip = slot.FindVip(AddrFamily::kIPv4, Key(1000).dst, IPPROTO_TCP, 80);
  ASSERT_GE(vip, 0);
  uint32_t other = 0;
  for (uint32_t s = 1; s < slot.header->num_backends && other == 0; ++s) {
    if (slot.backends[s].backend_id != ring_pick_id &&
        StillServes(slot, s, slot.backends[s].incarnation)) {
      other = s;
    }
  }
  ASSERT_NE(other, 0u);
  FlowKey k = Key(1000);
  const uint64_t hash = VipFlowHash(slot.vips[vip], &k);
  bool evicted = false;
  ConnValue old;
  (*t1)->Insert(k, hash, ConnValue{other, slot.backends[other].incarnation}, ConnClass::kTcp,
                static_cast<uint32_t>(MonotonicNs() / 1000000), &evicted, &old);
  r = cp->Explain(Req(1000));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_CONTAINS(r->reason(), absl::StrCat("pinned on lcore 1 to backend slot ", other));
  EXPECT_EQ(r->backend_id(), slot.backends[other].backend_id);
  // Another flow of the same client is not pinned.
  r = cp->Explain(Req(1001));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_CONTAINS(r->reason(), "not pinned in any of 2");
}

}  // namespace
}  // namespace lb
