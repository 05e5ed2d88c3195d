// ConnTable in a shared file (CreateShared / OpenForPeek, lib/conn_table_shm.h):
// a "restart" (destroy the table, create it again on the same file) keeps
// every entry; an incompatible or corrupt file starts empty and says why.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "lib/conn_table.h"
#include "lib/conn_table_shm.h"

namespace lb {
namespace {

FlowKey MakeKey(uint32_t id) {
  FlowKey k;
  std::memset(&k, 0, sizeof(k));
  std::memcpy(k.src, &id, 4);
  k.dst[0] = 192;
  k.dst[3] = 1;
  k.sport = static_cast<uint16_t>(1024 + (id & 0x3fff));
  k.dport = 443;
  k.proto = 6;
  k.family = AddrFamily::kIPv4;
  return k;
}

uint64_t Hash(uint32_t id) {  // splitmix64 finaliser
  uint64_t x = id + 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

class ConnTablePersistTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/dev/shm/lb-conn-persist.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = ConnTableFileName(dir_ + "/stats", 0);
    opt_.capacity = 4096;
  }
  void TearDown() override {
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  std::unique_ptr<ConnTable> Open(ConnTableAttach* a, uint32_t owner = 0) {
    auto t = ConnTable::CreateShared(opt_, path_, owner, a);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? std::move(*t) : nullptr;
  }
  // Fills n flows (value = id, id ^ 0x5a5a) as established TCP at now_ms.
  static void Fill(ConnTable* t, uint32_t n, uint32_t now_ms) {
    for (uint32_t id = 1; id <= n; ++id) {
      bool evicted = false;
      ConnValue old;
      t->Insert(MakeKey(id), Hash(id), ConnValue{id, id ^ 0x5a5au}, ConnClass::kTcp, now_ms,
                &evicted, &old);
    }
  }
  template <typename T>
  void PokeHeader(size_t offset, T v) {
    const int fd = open(path_.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, &v, sizeof(v), static_cast<off_t>(offset)),
              static_cast<ssize_t>(sizeof(v)));
    close(fd);
  }
  std::string dir_;
  std::string path_;
  ConnTableOptions opt_;
};

TEST_F(ConnTablePersistTest, RestartKeepsEveryEntryWithItsValue) {
  ConnTableAttach a;
  auto t = Open(&a);
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(a.created);
  EXPECT_FALSE(a.attached || a.discarded);
  EXPECT_TRUE(t->shared());
  Fill(t.get(), 3000, 1000);
  const size_t before = t->size();
  ASSERT_GT(before, 2900u);  // a few evictions at 73% load are possible
  t.reset();                 // the old process exits cleanly

  auto t2 = Open(&a);
  ASSERT_NE(t2, nullptr);
  EXPECT_TRUE(a.attached);
  EXPECT_FALSE(a.was_dirty);
  EXPECT_EQ(a.entries, before);
  EXPECT_EQ(t2->size(), before);
  EXPECT_TRUE(t2->Validate().ok()) << t2->Validate();
  size_t found = 0;
  for (uint32_t id = 1; id <= 3000; ++id) {
    ConnValue v{};
    // 200 s later on the same monotonic clock: still inside the 300 s timeout.
    if (t2->Lookup(MakeKey(id), Hash(id), 201000, 0x10, &v) != ConnTable::kNoEntry) {
      ++found;
      EXPECT_EQ(v.backend_slot, id);
      EXPECT_EQ(v.incarnation, id ^ 0x5a5au);
    }
  }
  EXPECT_EQ(found, before);
  // And the kept entries still expire on time.
  ConnValue v{};
  EXPECT_EQ(t2->Lookup(MakeKey(1), Hash(1), 201000 + 300001, 0x10, &v), ConnTable::kNoEntry);
}

TEST_F(ConnTablePersistTest, OtherCapacityStartsEmptyAndSaysWhy) {
  ConnTableAttach a;
  auto t = Open(&a);
  Fill(t.get(), 100, 1000);
  t.reset();
  opt_.capacity = 8192;
  t = Open(&a);
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(a.discarded);
  EXPECT_FALSE(a.attached);
  EXPECT_NE(a.reason.find("capacity 4096"), std::string::npos) << a.reason;
  EXPECT_EQ(a.discards, 1u);
  EXPECT_EQ(t->size(), 0u);
  EXPECT_EQ(t->capacity(), 8192u);
  Fill(t.get(), 10, 1000);
  t.reset();
  t = Open(&a);  // the re-created file is attachable at its new size
  EXPECT_TRUE(a.attached);
  EXPECT_EQ(t->size(), 10u);
}

TEST_F(ConnTablePersistTest, OtherAbiStartsEmptyAndCountsDiscards) {
  ConnTableAttach a;
  auto t = Open(&a);
  Fill(t.get(), 100, 1000);
  t.reset();
  PokeHeader<uint32_t>(offsetof(ConnTableFileHeader, abi_version), kConnTableAbiVersion + 1);
  t = Open(&a);
  EXPECT_TRUE(a.discarded);
  EXPECT_NE(a.reason.find("ABI version"), std::string::npos) << a.reason;
  EXPECT_EQ(t->size(), 0u);
  t.reset();
  PokeHeader<uint64_t>(offsetof(ConnTableFileHeader, magic), 0x1234);
  t = Open(&a);
  EXPECT_TRUE(a.discarded);
  EXPECT_NE(a.reason.find("magic"), std::string::npos) << a.reason;
  t.reset();
  PokeHeader<uint32_t>(offsetof(ConnTableFileHeader, abi_version), kConnTableAbiVersion + 1);
  t = Open(&a);
  EXPECT_EQ(a.discards, 2u);  // counted across discards (the bad magic lost the count)
}

TEST_F(ConnTablePersistTest, OtherOwnerLcoreStartsEmpty) {
  ConnTableAttach a;
  auto t = Open(&a, 0);
  Fill(t.get(), 10, 1000);
  t.reset();
  t = Open(&a, 1);
  EXPECT_TRUE(a.discarded);
  EXPECT_NE(a.reason.find("owner lcore 0"), std::string::npos) << a.reason;
}

TEST_F(ConnTablePersistTest, CorruptBookkeepingStartsEmpty) {
  ConnTableAttach a;
  auto t = Open(&a);
  Fill(t.get(), 10, 1000);
  t.reset();
  // Mark every way of bucket 0 valid and overflowed (Bucket::valid, in_alt):
  // entries whose hash puts them in bucket 0 cannot have it as alternate.
  const size_t valid_byte = kConnTableHeaderBytes + 16 + 32 + 8;
  PokeHeader<uint16_t>(valid_byte, 0xffff);
  t = Open(&a);
  EXPECT_TRUE(a.discarded);
  EXPECT_NE(a.reason.find("does not validate"), std::string::npos) << a.reason;
  EXPECT_EQ(t->size(), 0u);
}

TEST_F(ConnTablePersistTest, CrashedOwnerAttachesLiveOwnerRefuses) {
  ConnTableAttach a;
  auto t = Open(&a);
  Fill(t.get(), 50, 1000);
  t.reset();
  const pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  PokeHeader<uint32_t>(offsetof(ConnTableFileHeader, state), kConnFileOpen);
  PokeHeader<uint32_t>(offsetof(ConnTableFileHeader, writer_pid), static_cast<uint32_t>(child));
  t = Open(&a);
  EXPECT_TRUE(a.attached);
  EXPECT_TRUE(a.was_dirty);
  EXPECT_EQ(t->size(), 50u);
  t.reset();
  PokeHeader<uint32_t>(offsetof(ConnTableFileHeader, state), kConnFileOpen);
  PokeHeader<uint32_t>(offsetof(ConnTableFileHeader, writer_pid), static_cast<uint32_t>(getppid()));
  auto refused = ConnTable::CreateShared(opt_, path_, 0, &a);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("in use by pid"), std::string::npos);
}

TEST_F(ConnTablePersistTest, OpenForPeekReadsTheOwnersEntries) {
  ConnTableAttach a;
  auto t = Open(&a);
  Fill(t.get(), 500, 1000);
  auto peek = ConnTable::OpenForPeek(path_, &opt_);
  ASSERT_TRUE(peek.ok()) << peek.status();
  ConnValue v{};
  ASSERT_TRUE((*peek)->Peek(MakeKey(42), Hash(42), 2000, &v));
  EXPECT_EQ(v.backend_slot, 42u);
  EXPECT_FALSE((*peek)->Peek(MakeKey(501), Hash(501), 2000, &v));
  EXPECT_FALSE(ConnTable::OpenForPeek(dir_ + "/missing", nullptr).ok());
}

}  // namespace
}  // namespace lb
