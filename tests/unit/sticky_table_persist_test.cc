// StickyTable in a shared file (CreateShared, lib/sticky_table_shm.h): a
// "restart" (destroy the table, create it again on the same file) keeps
// every client's backend and stamp; an incompatible file (other size, bad
// magic, other ABI) starts empty, says why and counts the discard.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "lib/sticky_table.h"
#include "lib/sticky_table_shm.h"

namespace lb {
namespace {

constexpr uint32_t kTtlMs = 60000;

void Client(uint32_t id, uint8_t out[16]) {
  std::memset(out, 0, 16);
  out[0] = 10;
  std::memcpy(out + 1, &id, 3);
}

class StickyTablePersistTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/dev/shm/lb-sticky-persist.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = StickyTableFileName(dir_ + "/stats");
  }
  void TearDown() override {
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  std::unique_ptr<StickyTable> Open(SharedFileAttach* a, uint32_t capacity = 1000) {
    auto t = StickyTable::CreateShared(capacity, path_, a);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? std::move(*t) : nullptr;
  }
  // n clients of VIP 3, client id -> backend (id % 7 + 1, incarnation id), at now_ms.
  static void Fill(StickyTable* t, uint32_t n, uint32_t now_ms) {
    for (uint32_t id = 1; id <= n; ++id) {
      uint8_t c[16];
      Client(id, c);
      t->Insert(3, AddrFamily::kIPv4, c, StickyValue{id % 7 + 1, id}, now_ms);
    }
  }
  static size_t Found(StickyTable* t, uint32_t n, uint32_t now_ms) {
    size_t found = 0;
    for (uint32_t id = 1; id <= n; ++id) {
      uint8_t c[16];
      Client(id, c);
      StickyValue v{};
      if (!t->Lookup(3, AddrFamily::kIPv4, c, now_ms, kTtlMs, &v)) continue;
      EXPECT_EQ(v.backend_slot, id % 7 + 1);
      EXPECT_EQ(v.incarnation, id);
      ++found;
    }
    return found;
  }
  template <typename T>
  void Poke(size_t offset, T v) {
    const int fd = open(path_.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, &v, sizeof(v), static_cast<off_t>(offset)),
              static_cast<ssize_t>(sizeof(v)));
    close(fd);
  }
  std::string dir_;
  std::string path_;
};

TEST_F(StickyTablePersistTest, RestartKeepsEveryClientAndItsStamp) {
  SharedFileAttach a;
  auto t = Open(&a);
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(a.created);
  EXPECT_TRUE(t->shared());
  Fill(t.get(), 500, 1000);
  const size_t before = t->CountEntries();
  ASSERT_GT(before, 450u);  // a few full 5-way buckets replace their stalest
  t.reset();                // the old process exits cleanly

  t = Open(&a);
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(a.attached);
  EXPECT_FALSE(a.was_dirty);
  EXPECT_EQ(a.entries, before);
  // 50 s later on the same monotonic clock: inside the 60 s TTL.
  EXPECT_EQ(Found(t.get(), 500, 51000), before);
  // The kept stamps still expire on time (1000 + 60000 is the edge).
  EXPECT_EQ(Found(t.get(), 500, 61001), 0u);
}

TEST_F(StickyTablePersistTest, CrashWithABucketLockHeldAttachesUnlocked) {
  SharedFileAttach a;
  auto t = Open(&a);
  Fill(t.get(), 50, 1000);
  t.reset();
  // A crash inside Insert: the file marked open by a writer that is gone
  // (pid 0 never exists as a process) and every bucket's lock word held
  // (256 buckets of 128 bytes, the lock word first).
  Poke<uint32_t>(offsetof(StickyTableFileHeader, state), kSharedFileOpen);
  for (size_t b = 0; b < 256; ++b) Poke<uint32_t>(kStickyTableHeaderBytes + b * 128, 1);
  t = Open(&a);
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(a.attached);
  EXPECT_TRUE(a.was_dirty);
  EXPECT_EQ(Found(t.get(), 50, 2000), 50u);  // would spin forever on a held lock
}

TEST_F(StickyTablePersistTest, OtherSizeStartsEmptyAndSaysWhy) {
  SharedFileAttach a;
  auto t = Open(&a, 1000);
  Fill(t.get(), 100, 1000);
  t.reset();
  t = Open(&a, 5000);
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(a.discarded);
  EXPECT_FALSE(a.attached);
  EXPECT_NE(a.reason.find("num_buckets 256, --sticky_table_size makes 1024"), std::string::npos)
      << a.reason;
  EXPECT_EQ(a.discards, 1u);
  EXPECT_EQ(t->CountEntries(), 0u);
  EXPECT_EQ(Found(t.get(), 100, 2000), 0u);
  Fill(t.get(), 10, 1000);
  t.reset();
  t = Open(&a, 5000);  // the re-created file is attachable at its new size
  EXPECT_TRUE(a.attached);
  EXPECT_EQ(a.entries, 10u);
}

TEST_F(StickyTablePersistTest, BadMagicOrOtherAbiStartsEmptyAndCountsDiscards) {
  SharedFileAttach a;
  auto t = Open(&a);
  Fill(t.get(), 100, 1000);
  t.reset();
  Poke<uint32_t>(offsetof(StickyTableFileHeader, abi_version), kStickyTableAbiVersion + 1);
  t = Open(&a);
  EXPECT_TRUE(a.discarded);
  EXPECT_NE(a.reason.find("ABI version 2, this binary writes 1"), std::string::npos) << a.reason;
  EXPECT_EQ(a.discards, 1u);
  EXPECT_EQ(Found(t.get(), 100, 2000), 0u);
  Fill(t.get(), 100, 1000);
  t.reset();
  Poke<uint64_t>(offsetof(StickyTableFileHeader, magic), 0x1234);
  t = Open(&a);
  EXPECT_TRUE(a.discarded);
  EXPECT_NE(a.reason.find("bad magic"), std::string::npos) << a.reason;
  EXPECT_EQ(a.discards, 1u);  // a foreign file's counter is not trusted
  EXPECT_EQ(Found(t.get(), 100, 2000), 0u);
  t.reset();
  Poke<uint32_t>(offsetof(StickyTableFileHeader, abi_version), kStickyTableAbiVersion + 1);
  t = Open(&a);
  EXPECT_EQ(a.discards, 2u);
  // The reason and the counter are in the file for an operator.
  t.reset();
  const int fd = open(path_.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  StickyTableFileHeader h;
  ASSERT_EQ(pread(fd, &h, sizeof(h), 0), static_cast<ssize_t>(sizeof(h)));
  close(fd);
  EXPECT_EQ(h.discards, 2u);
  EXPECT_NE(std::string(h.last_discard_reason).find("ABI version"), std::string::npos);
  EXPECT_EQ(h.state, kSharedFileClosed);
}

TEST_F(StickyTablePersistTest, LiveOwnerRefuses) {
  SharedFileAttach a;
  auto t = Open(&a);
  ASSERT_NE(t, nullptr);
  Poke<uint32_t>(offsetof(StickyTableFileHeader, writer_pid), static_cast<uint32_t>(getppid()));
  auto refused = StickyTable::CreateShared(1000, path_, &a);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("in use by pid"), std::string::npos)
      << refused.status();
}

}  // namespace
}  // namespace lb
