// Session-persistence table: TTL after the last packet, refresh, replacement
// of the stalest entry in a full bucket, and concurrent use from two threads.
#include "lib/sticky_table.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace lb {
namespace {

const uint8_t kClientA[16] = {203, 0, 113, 7};
const uint8_t kClientB[16] = {203, 0, 113, 8};
const uint8_t kClient6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7};

TEST(StickyTableTest, CreateRefusesBadCapacity) {
  EXPECT_FALSE(StickyTable::Create(0).ok());
  auto big = StickyTable::Create((1u << 26) + 1);
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("capacity"), std::string::npos);
  auto t = StickyTable::Create(100);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)->capacity(), 32u * StickyTable::kWays);  // 32 buckets of 5 >= 100
}

TEST(StickyTableTest, LookupHonoursTtlFromTheLastRefresh) {
  auto t = *StickyTable::Create(1024);
  StickyValue v;
  EXPECT_FALSE(t->Lookup(1, AddrFamily::kIPv4, kClientA, 1000, 10000, &v));
  t->Insert(1, AddrFamily::kIPv4, kClientA, {5, 2}, 1000);
  ASSERT_TRUE(t->Lookup(1, AddrFamily::kIPv4, kClientA, 11000, 10000, &v));
  EXPECT_EQ(v.backend_slot, 5u);
  EXPECT_EQ(v.incarnation, 2u);
  EXPECT_FALSE(t->Lookup(1, AddrFamily::kIPv4, kClientA, 11001, 10000, &v));
  // Keyed by VIP and family too.
  EXPECT_FALSE(t->Lookup(2, AddrFamily::kIPv4, kClientA, 1000, 10000, &v));
  EXPECT_FALSE(t->Lookup(1, AddrFamily::kIPv4, kClientB, 1000, 10000, &v));
  EXPECT_FALSE(t->Lookup(1, AddrFamily::kIPv6, kClientA, 1000, 10000, &v));

  // Refresh only writes once the stamp is older than ttl/4, and then extends.
  t->Refresh(1, AddrFamily::kIPv4, kClientA, 2000, 10000);  // 1000 old < 2500: no write
  EXPECT_FALSE(t->Lookup(1, AddrFamily::kIPv4, kClientA, 11001, 10000, &v));
  t->Refresh(1, AddrFamily::kIPv4, kClientA, 9000, 10000);  // 8000 old: stamped 9000
  EXPECT_TRUE(t->Lookup(1, AddrFamily::kIPv4, kClientA, 19000, 10000, &v));
  EXPECT_FALSE(t->Lookup(1, AddrFamily::kIPv4, kClientA, 19001, 10000, &v));

  t->Insert(1, AddrFamily::kIPv6, kClient6, {7, 1}, 0xFFFFFF00u);  // across the wrap
  ASSERT_TRUE(t->Lookup(1, AddrFamily::kIPv6, kClient6, 0x100, 10000, &v));
  EXPECT_EQ(v.backend_slot, 7u);
  t->Erase(1, AddrFamily::kIPv6, kClient6);
  EXPECT_FALSE(t->Lookup(1, AddrFamily::kIPv6, kClient6, 0x100, 10000, &v));
}

TEST(StickyTableTest, InsertOverwritesTheSameClient) {
  auto t = *StickyTable::Create(64);
  t->Insert(3, AddrFamily::kIPv4, kClientA, {1, 1}, 10);
  t->Insert(3, AddrFamily::kIPv4, kClientA, {2, 4}, 20);
  StickyValue v;
  ASSERT_TRUE(t->Lookup(3, AddrFamily::kIPv4, kClientA, 30, 1000, &v));
  EXPECT_EQ(v.backend_slot, 2u);
  EXPECT_EQ(v.incarnation, 4u);
}

// A table of one bucket: the sixth client replaces the stalest of five.
TEST(StickyTableTest, FullBucketReplacesTheStalest) {
  auto t = *StickyTable::Create(StickyTable::kWays);
  ASSERT_EQ(t->capacity(), StickyTable::kWays);
  uint8_t c[6][16] = {};
  for (int i = 0; i < 6; ++i) c[i][3] = static_cast<uint8_t>(i + 1);
  const uint32_t stamps[5] = {500, 100, 400, 300, 200};  // client 1 is the stalest
  for (int i = 0; i < 5; ++i)
    t->Insert(9, AddrFamily::kIPv4, c[i], {uint32_t(i + 1), 1}, stamps[i]);
  t->Insert(9, AddrFamily::kIPv4, c[5], {6, 1}, 600);
  StickyValue v;
  EXPECT_FALSE(t->Lookup(9, AddrFamily::kIPv4, c[1], 600, 100000, &v));
  for (int i : {0, 2, 3, 4, 5}) {
    ASSERT_TRUE(t->Lookup(9, AddrFamily::kIPv4, c[i], 600, 100000, &v)) << i;
    EXPECT_EQ(v.backend_slot, uint32_t(i + 1));
  }
}

// Two lcores insert and look up overlapping clients: every answer is a value
// that was written for that client (values derive from the client).
TEST(StickyTableTest, ConcurrentWritersNeverMixClients) {
  auto t = *StickyTable::Create(256);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bad{0}, hits{0};
  auto worker = [&](uint32_t seed) {
    uint32_t x = seed;
    uint32_t now = 1;
    while (!stop.load(std::memory_order_relaxed)) {
      x = x * 1664525u + 1013904223u;
      uint8_t client[16] = {10, 0, static_cast<uint8_t>(x >> 24 & 3),
                            static_cast<uint8_t>(x >> 16)};
      const uint32_t want = (uint32_t(client[2]) << 8 | client[3]) + 1;
      StickyValue v;
      if (t->Lookup(1, AddrFamily::kIPv4, client, now, 1u << 30, &v)) {
        hits.fetch_add(1, std::memory_order_relaxed);
        if (v.backend_slot != want || v.incarnation != want * 3) bad.fetch_add(1);
      } else {
        t->Insert(1, AddrFamily::kIPv4, client, {want, want * 3}, now);
      }
      t->Refresh(1, AddrFamily::kIPv4, client, now, 8);
      ++now;
    }
  };
  std::thread a(worker, 1), b(worker, 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop = true;
  a.join();
  b.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GT(hits.load(), 1000u);
}

}  // namespace
}  // namespace lb
