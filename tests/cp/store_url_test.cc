// --store URL parsing (controlplane/store_url.h): the accepted forms with
// every field written out, and each refusal naming what is wrong.
#include "controlplane/store_url.h"

#include <string>

#include "gtest/gtest.h"

namespace lb {
namespace {

TEST(StoreUrl, EtcdIpv4) {
  auto u = ParseStoreUrl("etcd://127.0.0.1:2379/lb/prod");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->kind, StoreUrl::Kind::kEtcd);
  ASSERT_EQ(u->endpoints.size(), 1u);
  EXPECT_EQ(u->endpoints[0].host, "127.0.0.1");
  EXPECT_EQ(u->endpoints[0].port, 2379);
  EXPECT_FALSE(u->tls);
  EXPECT_EQ(u->prefix, "/lb/prod");
  EXPECT_EQ(u->Target(0), "127.0.0.1:2379");
  EXPECT_EQ(u->Describe(), "etcd://127.0.0.1:2379/lb/prod");
  EXPECT_EQ(u->StateKey(), "/lb/prod/state");
}

TEST(StoreUrl, EtcdNameTrailingSlashAndIpv6) {
  auto u = ParseStoreUrl("etcd://etcd-0.example.net:12379/lb/");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->endpoints[0].host, "etcd-0.example.net");
  EXPECT_EQ(u->prefix, "/lb");
  auto v6 = ParseStoreUrl("etcd://[::1]:2379/x");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->endpoints[0].host, "::1");
  EXPECT_EQ(v6->Target(0), "[::1]:2379");
  EXPECT_EQ(v6->StateKey(), "/x/state");
}

TEST(StoreUrl, EtcdClusterAndTls) {
  auto u = ParseStoreUrl("etcds://h1:2379,10.0.0.2:2380,[fd00::3]:2379/lb/prod");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_TRUE(u->tls);
  ASSERT_EQ(u->endpoints.size(), 3u);
  EXPECT_EQ(u->Target(0), "h1:2379");
  EXPECT_EQ(u->Target(1), "10.0.0.2:2380");
  EXPECT_EQ(u->endpoints[2].host, "fd00::3");
  EXPECT_EQ(u->Target(2), "[fd00::3]:2379");
  EXPECT_EQ(u->Targets(), "h1:2379,10.0.0.2:2380,[fd00::3]:2379");
  EXPECT_EQ(u->Describe(), "etcds://h1:2379,10.0.0.2:2380,[fd00::3]:2379/lb/prod");
  EXPECT_EQ(u->StateKey(), "/lb/prod/state");
}

TEST(StoreUrl, File) {
  auto u = ParseStoreUrl("file:///var/lib/lb");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->kind, StoreUrl::Kind::kFile);
  EXPECT_EQ(u->dir, "/var/lib/lb");
}

TEST(StoreUrl, Refusals) {
  const struct {
    const char* url;
    const char* why;
  } cases[] = {
      {"", "unknown store"},
      {"redis://h:1/p", "unknown store"},
      {"file://relative", "file:///absolute"},
      {"etcd://127.0.0.1:2379", "no prefix"},
      {"etcd://127.0.0.1:2379/", "no prefix"},
      {"etcd://127.0.0.1/lb", "no port"},
      {"etcd://:2379/lb", "empty host"},
      {"etcd://h:0/lb", "port must be 1-65535"},
      {"etcd://h:65536/lb", "port must be 1-65535"},
      {"etcd://h:+1/lb", "port must be 1-65535"},
      {"etcd://h:x/lb", "port must be 1-65535"},
      {"etcd://[::1/lb", "unclosed '['"},
      {"etcd://[::1]/lb", "want [ipv6]:port"},
      {"etcd://[zz]:1/lb", "IPv6 address"},
      {"etcd://h_x:1/lb", "bad character in the host"},
      {"etcd://u@h:1/lb", "no user, query or fragment"},
      {"etcd://h:1/lb?x=1", "no user, query or fragment"},
      {"etcd://h:1/a//b", "empty, '.' or '..' segment"},
      {"etcd://h:1/a/../b", "empty, '.' or '..' segment"},
      {"etcd://h:1/a b", "[A-Za-z0-9._-]"},
      {"etcd://h:1,/lb", "no port"},
      {"etcd://,h:1/lb", "no port"},
      {"etcd://h:1,h:1/lb", "an endpoint appears twice"},
      {"etcd://h:1,h2/lb", "no port"},
      {"etcds://h:1", "no prefix"},
      {"etcd://1:1,2:1,3:1,4:1,5:1,6:1,7:1,8:1,9:1,10:1,11:1,12:1,13:1,14:1,15:1,16:1,17:1/x",
       "more than 16 endpoints"},
  };
  for (const auto& c : cases) {
    auto u = ParseStoreUrl(c.url);
    ASSERT_FALSE(u.ok()) << c.url;
    EXPECT_EQ(u.status().code(), absl::StatusCode::kInvalidArgument) << c.url;
    EXPECT_NE(std::string(u.status().message()).find(c.why), std::string::npos)
        << c.url << " -> " << u.status();
  }
  EXPECT_FALSE(ParseStoreUrl(std::string(2000, 'a')).ok());
}

}  // namespace
}  // namespace lb
