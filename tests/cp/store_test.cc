// The file store (controlplane/store.h): atomic save/load round trips, a
// corrupt or empty file refused with DataLoss naming the file and line (and
// left untouched), temp files from a crash ignored and removed, one process
// per state directory, and saves killed with SIGKILL at random moments
// always leaving a file that loads (the previous or the new version).
#include "controlplane/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"

namespace lb {
namespace {

using google::protobuf::util::MessageDifferencer;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

v1::Config Sample(uint64_t version, int backends) {
  v1::Config c;
  c.set_version(version);
  c.mutable_node()->set_tunnel_source_ipv4("192.0.2.1");
  v1::Pool* p = c.add_pools();
  p->set_name("web");
  p->set_sticky_sessions(true);
  p->mutable_health_check()->set_kind(v1::HEALTH_CHECK_KIND_HTTP);
  p->mutable_health_check()->set_http_path("/health");
  for (int i = 0; i < backends; ++i) {
    v1::Backend* b = p->add_backends();
    b->set_id(static_cast<uint32_t>(i + 1));
    b->set_address(absl::StrCat("10.0.", i / 250, ".", i % 250 + 1));
    b->set_port(80);
    b->set_weight(static_cast<uint32_t>(i % 3));
  }
  v1::Vip* v = c.add_vips();
  v->set_id(1);
  v->set_address("198.51.100.1");
  v->set_protocol(v1::PROTOCOL_TCP);
  v->set_port(80);
  v->set_pool("web");
  return c;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat("/dev/shm/lb-store-test-", getpid(), "-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_EQ(system(("rm -rf '" + dir_ + "'").c_str()), 0);
    file_ = dir_ + "/state.textproto";
  }
  void TearDown() override { ASSERT_EQ(system(("rm -rf '" + dir_ + "'").c_str()), 0); }

  std::string dir_, file_;
};

TEST_F(StoreTest, EmptyDirectoryLoadsNothingAndIsCreated) {
  auto store = NewFileStore(dir_ + "/nested/deeper");
  ASSERT_TRUE(store.ok()) << store.status();
  auto loaded = (*store)->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->has_value());
  EXPECT_EQ((*store)->Describe(), "file " + dir_ + "/nested/deeper/state.textproto");
}

TEST_F(StoreTest, SaveLoadRoundTripIsHumanReadableAndLeavesNoTempFiles) {
  auto store = NewFileStore(dir_);
  ASSERT_TRUE(store.ok()) << store.status();
  for (uint64_t v = 1; v <= 3; ++v) {
    const v1::Config c = Sample(v, static_cast<int>(v * 10));
    ASSERT_TRUE((*store)->Save(c).ok());
    auto loaded = (*store)->Load();
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ASSERT_TRUE(loaded->has_value());
    EXPECT_TRUE(MessageDifferencer::Equals(**loaded, c)) << (*loaded)->DebugString();
  }
  const std::string text = ReadFile(file_);
  EXPECT_NE(text.find("version: 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("name: \"web\""), std::string::npos) << text;
  EXPECT_EQ(ListDir(dir_), (std::vector<std::string>{".lock", "state.textproto"}));
  // A fresh store over the same directory (a restart) reads the same.
  store->reset();
  auto again = NewFileStore(dir_);
  ASSERT_TRUE(again.ok()) << again.status();
  auto loaded = (*again)->Load();
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((*loaded)->version(), 3u);
  EXPECT_EQ((*loaded)->pools(0).backends_size(), 30);
}

TEST_F(StoreTest, VersionZeroIsNotSaved) {
  auto store = NewFileStore(dir_);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->Save(Sample(0, 1)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(access(file_.c_str(), F_OK), -1);
}

TEST_F(StoreTest, CorruptFileIsRefusedNamingFileAndLineAndLeftAlone) {
  {
    auto store = NewFileStore(dir_);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Save(Sample(4, 3)).ok());
  }
  // A torn write as a non-atomic writer would leave it: cut mid-message.
  std::string text = ReadFile(file_);
  const std::string torn = text.substr(0, text.size() / 2) + "\n  bogus_field: 1\n";
  WriteFile(file_, torn);
  auto store = NewFileStore(dir_);
  ASSERT_TRUE(store.ok()) << store.status();
  auto loaded = (*store)->Load();
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss) << loaded.status();
  EXPECT_NE(loaded.status().message().find(file_ + ":"), std::string::npos) << loaded.status();
  // "<file>:<line>:<column>:" with the 1-based line of the bad field.
  const int bad_line = static_cast<int>(std::count(torn.begin(), torn.end(), '\n'));
  EXPECT_NE(loaded.status().message().find(absl::StrCat(file_, ":", bad_line, ":")),
            std::string::npos)
      << loaded.status();
  EXPECT_EQ(ReadFile(file_), torn) << "a corrupt state file must never be replaced by Load";

  WriteFile(file_, "");
  auto empty = (*store)->Load();
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kDataLoss) << empty.status();
  EXPECT_NE(empty.status().message().find(file_), std::string::npos);

  WriteFile(file_, "pools { name: \"web\" }\n");  // parses, but carries no version
  auto unversioned = (*store)->Load();
  EXPECT_EQ(unversioned.status().code(), absl::StatusCode::kDataLoss) << unversioned.status();
  EXPECT_NE(unversioned.status().message().find("version"), std::string::npos);
}

TEST_F(StoreTest, TempLeftoversAreIgnoredAndRemoved) {
  {
    auto store = NewFileStore(dir_);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Save(Sample(7, 2)).ok());
  }
  WriteFile(dir_ + "/state.textproto.tmp.999999.1", "pools { name: \"half-writ");
  WriteFile(dir_ + "/state.textproto.tmp.999999.2", Sample(8, 5).DebugString());
  WriteFile(dir_ + "/unrelated", "kept");
  auto store = NewFileStore(dir_);
  ASSERT_TRUE(store.ok()) << store.status();
  auto loaded = (*store)->Load();
  ASSERT_TRUE(loaded.ok() && loaded->has_value()) << loaded.status();
  // Only the renamed file is the state: an unrenamed temp file was never
  // acknowledged, even when it is complete.
  EXPECT_EQ((*loaded)->version(), 7u);
  EXPECT_EQ(ListDir(dir_), (std::vector<std::string>{".lock", "state.textproto", "unrelated"}));
}

TEST_F(StoreTest, OneProcessPerDirectory) {
  auto first = NewFileStore(dir_);
  ASSERT_TRUE(first.ok());
  auto second = NewFileStore(dir_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("in use"), std::string::npos) << second.status();
  first->reset();
  EXPECT_TRUE(NewFileStore(dir_).ok());
}

TEST_F(StoreTest, NotADirectoryIsRefused) {
  ASSERT_EQ(mkdir(dir_.c_str(), 0750), 0);
  WriteFile(dir_ + "/file", "x");
  auto store = NewFileStore(dir_ + "/file");
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find(dir_ + "/file"), std::string::npos) << store.status();
}

// A child saves versions 1, 2, 3, ... as fast as it can (large configs, so a
// kill often lands mid-write) and reports each acknowledged version on a
// pipe; the parent SIGKILLs it at a random moment. The file must then load,
// with the last acknowledged version or the one after it (saved but not yet
// reported).
TEST_F(StoreTest, KillNineDuringSavesAlwaysLeavesALoadableVersion) {
  std::mt19937 rng(12345);
  uint64_t last_seen = 0;
  for (int round = 0; round < 25; ++round) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      auto store = NewFileStore(dir_);
      if (!store.ok()) _exit(3);
      auto loaded = (*store)->Load();
      if (!loaded.ok()) _exit(4);
      uint64_t v = loaded->has_value() ? (*loaded)->version() : 0;
      while (true) {
        ++v;
        if (!(*store)->Save(Sample(v, 300 + static_cast<int>(v % 200))).ok()) _exit(5);
        if (write(fds[1], &v, sizeof(v)) != sizeof(v)) _exit(6);
      }
    }
    close(fds[1]);
    usleep(std::uniform_int_distribution<int>(2000, 40000)(rng));
    kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early with " << WEXITSTATUS(status);
    uint64_t acked = last_seen, v = 0;
    while (read(fds[0], &v, sizeof(v)) == sizeof(v)) acked = v;
    close(fds[0]);

    auto store = NewFileStore(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    auto loaded = (*store)->Load();
    ASSERT_TRUE(loaded.ok()) << "round " << round << ": " << loaded.status();
    if (acked == 0 && !loaded->has_value()) continue;
    ASSERT_TRUE(loaded->has_value()) << "round " << round;
    const uint64_t got = (*loaded)->version();
    EXPECT_TRUE(got == acked || got == acked + 1)
        << "round " << round << ": loaded " << got << ", last acknowledged " << acked;
    EXPECT_TRUE(
        MessageDifferencer::Equals(**loaded, Sample(got, 300 + static_cast<int>(got % 200))));
    last_seen = got;
    for (const std::string& n : ListDir(dir_)) {
      EXPECT_EQ(n.find(".tmp."), std::string::npos) << "leftover " << n << " not removed";
    }
  }
  EXPECT_GT(last_seen, 25u) << "the child hardly saved anything; the test proved little";
}

}  // namespace
}  // namespace lb
