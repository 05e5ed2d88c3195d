// ConnTable's half-open class (the SYN-flood guard's part in lib/): its own
// timeout, confirmation by ACK, and eviction that takes unconfirmed entries
// before established ones. The rest of ConnTable is in conn_table_test.cc.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "lib/conn_table.h"
#include "tests/unit/conn_keys.h"

namespace lb {
namespace {

// Values of SYN-flood flows carry this bit, established ones do not.
constexpr uint32_t kFloodBit = 1u << 30;

std::unique_ptr<ConnTable> MakeTable(uint32_t capacity, ConnTableOptions o = {}) {
  o.capacity = capacity;
  auto t = ConnTable::Create(o);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

uint32_t Insert(ConnTable& t, uint32_t id, uint32_t value, ConnClass c, uint32_t now,
                ConnValue* evicted_value = nullptr) {
  const FlowKey k = MakeKey(id);
  bool evicted = false;
  ConnValue ev{};
  const uint32_t e = t.Insert(k, TestHash(k), ConnValue{value, 0}, c, now, &evicted, &ev);
  if (evicted_value != nullptr) *evicted_value = evicted ? ev : ConnValue{0, 0};
  return e;
}

uint32_t Lookup(ConnTable& t, uint32_t id, uint32_t now, uint8_t flags) {
  const FlowKey k = MakeKey(id);
  ConnValue v;
  return t.Lookup(k, TestHash(k), now, flags, &v);
}

TEST(ConnTableHalfOpen, RefusesSynTimeoutOutOfRange) {
  for (uint32_t ms : {0u, 1u << 31}) {
    ConnTableOptions o;
    o.capacity = 16;
    o.tcp_syn_timeout_ms = ms;
    auto t = ConnTable::Create(o);
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(t.status().message(), "conn table tcp_syn_timeout_ms " + std::to_string(ms) +
                                        " is out of range: must be in [1, 2^31) ms");
  }
}

TEST(ConnTableHalfOpen, ExpiresOnItsOwnShortTimeout) {
  ConnTableOptions o;
  o.tcp_timeout_ms = 10000;
  o.tcp_syn_timeout_ms = 100;
  auto t = MakeTable(64, o);
  ASSERT_NE(t, nullptr);
  Insert(*t, 1, 1, ConnClass::kTcpSyn, 1000);
  Insert(*t, 2, 2, ConnClass::kTcp, 1000);
  // A retransmitted SYN refreshes the entry but does not confirm it.
  ASSERT_NE(Lookup(*t, 1, 1050, kSyn), ConnTable::kNoEntry);
  EXPECT_EQ(t->ClassOf(Lookup(*t, 1, 1050, kSyn)), ConnClass::kTcpSyn);
  EXPECT_NE(Lookup(*t, 1, 1150, 0), ConnTable::kNoEntry) << "100 ms after the last packet";
  EXPECT_EQ(Lookup(*t, 1, 1251, kSyn), ConnTable::kNoEntry) << "101 ms idle: expired";
  ConnValue v;
  const FlowKey k1 = MakeKey(1);
  EXPECT_FALSE(t->Peek(k1, TestHash(k1), 1251, &v));
  // The established entry keeps the TCP timeout; Sweep frees only the other.
  EXPECT_EQ(t->Sweep(1251, 1000, nullptr, nullptr), 1u);
  EXPECT_EQ(t->size(), 1u);
  EXPECT_NE(Lookup(*t, 2, 1251, kAck), ConnTable::kNoEntry);
  EXPECT_TRUE(t->Validate().ok());
}

TEST(ConnTableHalfOpen, AckConfirmsFinOrRstCloses) {
  ConnTableOptions o;
  o.tcp_timeout_ms = 10000;
  o.tcp_closing_timeout_ms = 500;
  o.tcp_syn_timeout_ms = 100;
  auto t = MakeTable(64, o);
  ASSERT_NE(t, nullptr);
  const uint32_t e = Insert(*t, 1, 1, ConnClass::kTcpSyn, 0);
  EXPECT_EQ(t->ClassOf(e), ConnClass::kTcpSyn);
  EXPECT_EQ(Lookup(*t, 1, 10, kAck), e);
  EXPECT_EQ(t->ClassOf(e), ConnClass::kTcp);
  EXPECT_NE(Lookup(*t, 1, 5000, kAck), ConnTable::kNoEntry) << "confirmed: the TCP timeout";

  const uint32_t touched = Insert(*t, 2, 2, ConnClass::kTcpSyn, 0);
  t->Touch(touched, 10, kSyn | kAck);
  EXPECT_EQ(t->ClassOf(touched), ConnClass::kTcp) << "Touch confirms as Lookup does";

  for (uint8_t flags : {kFin, kRst, static_cast<uint8_t>(kFin | kAck)}) {
    const uint32_t id = 10 + flags;
    const uint32_t h = Insert(*t, id, id, ConnClass::kTcpSyn, 0);
    EXPECT_EQ(Lookup(*t, id, 10, flags), h);
    EXPECT_EQ(t->ClassOf(h), ConnClass::kTcpClosing) << "flags " << int{flags};
  }
  EXPECT_TRUE(t->Validate().ok());
}

// Fills a 1024-entry table to `established` confirmed flows, then inserts
// ten times its capacity of half-open flows (a SYN flood) within their
// timeout (nothing expires). A shadow of every handle checks each eviction: an
// established flow may only go when both of the new flow's buckets held no
// half-open entry. Returns how many established flows were evicted.
uint64_t Flood(uint32_t established, ConnClass flood_class) {
  auto t = MakeTable(1024);
  if (t == nullptr) return ~0ull;
  const uint32_t buckets = static_cast<uint32_t>(t->capacity() / ConnTable::kWays);
  std::map<uint32_t, uint32_t> live;  // handle -> value
  for (uint32_t i = 1; i <= established; ++i) live[Insert(*t, i, i, ConnClass::kTcp, 0)] = i;
  // Filling may already evict a few (two full buckets); count the flood only.
  const uint64_t fill_evictions = t->evictions();
  uint64_t established_evicted = 0;
  for (uint32_t i = 0; i < 10 * 1024; ++i) {
    const uint32_t id = 1'000'000 + i;
    const uint64_t h = TestHash(MakeKey(id));
    const uint32_t primary = static_cast<uint32_t>(h) & (buckets - 1);
    uint32_t alt = static_cast<uint32_t>(h >> 24) & (buckets - 1);
    if (alt == primary) alt ^= 1;
    bool half_open_there = false;
    for (const uint32_t b : {primary, alt}) {
      for (uint32_t w = 0; w < ConnTable::kWays; ++w) {
        auto it = live.find(b * ConnTable::kWays + w);
        half_open_there |= it != live.end() && (it->second & kFloodBit) != 0;
      }
    }
    ConnValue ev;
    // The flood is newer than the established flows (stalest-first alone
    // would pick them), and spans 1.3 s, inside the half-open timeout.
    const uint32_t e = Insert(*t, id, id | kFloodBit, flood_class, 1 + i / 8, &ev);
    if (ev.backend_slot != 0 && (ev.backend_slot & kFloodBit) == 0) {
      ++established_evicted;
      if (flood_class == ConnClass::kTcpSyn) {
        EXPECT_FALSE(half_open_there) << "flow " << ev.backend_slot << " evicted for SYN " << i
                                      << " while a half-open entry was in its buckets";
      }
    }
    live[e] = id | kFloodBit;
  }
  EXPECT_TRUE(t->Validate().ok());
  if (flood_class == ConnClass::kTcpSyn) {
    EXPECT_EQ(t->evictions() - fill_evictions - t->half_open_evictions(), established_evicted);
  }
  return established_evicted;
}

TEST(ConnTableHalfOpen, FloodEvictsHalfOpenBeforeEstablished) {
  // A quarter full: no bucket pair is ever all established, so none goes.
  EXPECT_EQ(Flood(256, ConnClass::kTcpSyn), 0u);
  // Fuller tables: established flows go only from all-established buckets.
  const uint64_t half = Flood(512, ConnClass::kTcpSyn);
  const uint64_t three_quarters = Flood(768, ConnClass::kTcpSyn);
  EXPECT_LT(half, 512u / 20);
  // The same flood inserted as ordinary TCP entries (before the half-open
  // class) pushes nearly every established flow out.
  const uint64_t before = Flood(256, ConnClass::kTcp);
  EXPECT_GT(before, 256u * 9 / 10);
  std::printf(
      "established flows evicted by a 10x SYN flood: 25%% full %d, 50%% %llu, 75%% %llu;"
      " without the half-open class, 25%% full: %llu of 256\n",
      0, static_cast<unsigned long long>(half), static_cast<unsigned long long>(three_quarters),
      static_cast<unsigned long long>(before));
}

}  // namespace
}  // namespace lb
