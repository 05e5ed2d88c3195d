// lib/l7/source_affinity.h: pin, expiry, replacement, tag mismatch.
#include "lib/l7/source_affinity.h"

#include "gtest/gtest.h"

namespace lb::l7 {
namespace {

TEST(SourceAffinity, PinExpireReplace) {
  SourceAffinity t(4, 1000);
  const uint64_t a = 0x1111'2222'0000'0003ULL;
  EXPECT_EQ(t.Find(a, 1000), -1);
  t.Put(a, 2, 1000, 60);
  EXPECT_EQ(t.Find(a, 1059), 2);
  EXPECT_EQ(t.Find(a, 1060), -1);  // expired
  t.Put(a, 0, 1100, 60);           // backend 0 is a real pin, not "empty"
  EXPECT_EQ(t.Find(a, 1101), 0);
  // Another client in the same slot (same low bits, other tag): a miss,
  // and its Put replaces the first (bounded table, most recent wins).
  const uint64_t b = 0x9999'8888'0000'0003ULL;
  EXPECT_EQ(t.Find(b, 1101), -1);
  t.Put(b, 5, 1101, 60);
  EXPECT_EQ(t.Find(b, 1102), 5);
  EXPECT_EQ(t.Find(a, 1102), -1);
  // A different slot is untouched.
  t.Put(a + 1, 7, 1101, 60);
  EXPECT_EQ(t.Find(b, 1102), 5);
  EXPECT_EQ(t.Find(a + 1, 1102), 7);
}

TEST(SourceAffinity, HugeTtlIsClamped) {
  SourceAffinity t(2, 0);
  t.Put(42ULL << 32, 1, 0, int64_t{1} << 40);
  EXPECT_EQ(t.Find(42ULL << 32, 1'000'000), 1);
}

}  // namespace
}  // namespace lb::l7
