// lb-l7's session ticket keys as the control plane rotates them
// (controlplane/ticket_keys.h): how many previous keys cover a ticket's
// lifetime, when a rotation is due, what a rotation keeps and drops, the
// order lb-l7 receives (current first), and which listeners get them.
#include "controlplane/ticket_keys.h"

#include <set>
#include <string>

#include "gtest/gtest.h"
#include "proto/text_parse.h"

namespace lb {
namespace {

v1::L7TicketKeys Rotated(int times, size_t keep) {
  v1::L7TicketKeys k;
  for (int i = 0; i < times; ++i) {
    auto r = RotateTicketKeys(k, 1000 + i, keep);
    EXPECT_TRUE(r.ok()) << r.status();
    k = *r;
  }
  return k;
}

TEST(TicketKeysTest, PreviousKeysCoverTheTicketLifetimePlusOnePeriod) {
  EXPECT_EQ(PreviousTicketKeysToKeep(300, 3600), 2u);   // ceil(300/3600) + 1
  EXPECT_EQ(PreviousTicketKeysToKeep(3600, 3600), 2u);  // exactly one period + 1
  EXPECT_EQ(PreviousTicketKeysToKeep(3601, 3600), 3u);
  EXPECT_EQ(PreviousTicketKeysToKeep(86400, 3600), 25u);
  EXPECT_EQ(PreviousTicketKeysToKeep(300, 0), 301u);                      // 0 is taken as 1
  EXPECT_EQ(PreviousTicketKeysToKeep(86400, 1), kMaxPreviousTicketKeys);  // bounded
}

TEST(TicketKeysTest, LifetimeIsTheLongestTlsListenerTimeout) {
  v1::L7Config c;
  EXPECT_EQ(MaxTicketLifetimeS(c), 300u);  // no TLS listener: the default
  ASSERT_TRUE(ParseTextProto(R"pb(
                               listeners { name: "plain" port: 80 }
                               listeners {
                                 name: "a"
                                 port: 443
                                 tls { session_timeout_s: 600 }
                               }
                               listeners {
                                 name: "b"
                                 port: 444
                                 tls {}
                               }
                             )pb",
                             "test", &c)
                  .ok());
  EXPECT_EQ(MaxTicketLifetimeS(c), 600u);
  c.mutable_listeners(1)->mutable_tls()->set_session_timeout_s(100);
  EXPECT_EQ(MaxTicketLifetimeS(c), 300u);  // b's default 300 is longer
}

TEST(TicketKeysTest, RotationDue) {
  v1::L7TicketKeys k;
  EXPECT_TRUE(TicketKeyRotationDue(k, 5000, 3600));  // never generated
  k = Rotated(1, 2);
  ASSERT_EQ(k.rotated_unix_s(), 1000);
  EXPECT_FALSE(TicketKeyRotationDue(k, 1000, 3600));
  EXPECT_FALSE(TicketKeyRotationDue(k, 4599, 3600));
  EXPECT_TRUE(TicketKeyRotationDue(k, 4600, 3600));
  // A clock stepped back by more than a period does not freeze the keys.
  EXPECT_FALSE(TicketKeyRotationDue(k, 0, 3600));
  EXPECT_TRUE(TicketKeyRotationDue(k, 1000 - 3601, 3600));
}

TEST(TicketKeysTest, FirstGenerationHasANextAndACurrentKey) {
  const v1::L7TicketKeys k = Rotated(1, 2);
  EXPECT_EQ(k.generation(), 1u);
  ASSERT_EQ(k.keys_size(), 2);
  EXPECT_EQ(k.keys(0).size(), kTicketKeyBytes);
  EXPECT_EQ(k.keys(1).size(), kTicketKeyBytes);
  EXPECT_NE(k.keys(0), k.keys(1));
  EXPECT_NE(k.keys(0), std::string(kTicketKeyBytes, '\0'));
}

TEST(TicketKeysTest, RotationShiftsNextToCurrentAndKeepsPreviousOnes) {
  const v1::L7TicketKeys a = Rotated(1, 2);
  auto b = RotateTicketKeys(a, 2000, 2);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->generation(), 2u);
  EXPECT_EQ(b->rotated_unix_s(), 2000);
  ASSERT_EQ(b->keys_size(), 3);
  EXPECT_EQ(b->keys(1), a.keys(0));  // the next key now encrypts
  EXPECT_EQ(b->keys(2), a.keys(1));  // the old current one still decrypts
  EXPECT_NE(b->keys(0), a.keys(0));  // a fresh next key
  // With 2 previous keys kept, the list stops growing at 4.
  v1::L7TicketKeys k = *b;
  std::set<std::string> seen(k.keys().begin(), k.keys().end());
  for (int i = 0; i < 5; ++i) {
    const v1::L7TicketKeys before = k;
    k = *RotateTicketKeys(k, 3000 + i, 2);
    EXPECT_LE(k.keys_size(), 4);
    EXPECT_EQ(k.keys(1), before.keys(0));
    EXPECT_EQ(k.keys(2), before.keys(1));
    if (before.keys_size() >= 3) {
      EXPECT_EQ(k.keys(3), before.keys(2));
    }
    seen.insert(k.keys(0));
  }
  EXPECT_EQ(k.keys_size(), 4);
  EXPECT_EQ(k.generation(), 7u);
  EXPECT_EQ(seen.size(), 8u);  // every drawn key is new
}

TEST(TicketKeysTest, NodesGetCurrentFirstThenNextThenPrevious) {
  v1::L7TicketKeys k;
  EXPECT_EQ(TicketKeysForNodes(k), "");
  k.add_keys(std::string(80, 'n'));
  EXPECT_EQ(TicketKeysForNodes(k), "");  // not a complete generation
  k.add_keys(std::string(80, 'c'));
  k.add_keys(std::string(80, 'p'));
  EXPECT_EQ(TicketKeysForNodes(k),
            std::string(80, 'c') + std::string(80, 'n') + std::string(80, 'p'));
}

TEST(TicketKeysTest, InjectedIntoTlsListenersWithTicketsAndNoKeyFile) {
  v1::L7Config c;
  ASSERT_TRUE(ParseTextProto(R"pb(
                               listeners { name: "plain" port: 80 }
                               listeners {
                                 name: "tls"
                                 port: 443
                                 tls {}
                               }
                               listeners {
                                 name: "own_file"
                                 port: 444
                                 tls { session_ticket_key_file: "/etc/k" }
                               }
                               listeners {
                                 name: "no_tickets"
                                 port: 445
                                 tls { disable_session_tickets: true }
                               }
                             )pb",
                             "test", &c)
                  .ok());
  const v1::L7TicketKeys k = Rotated(2, 2);
  v1::L7Config none = c;
  InjectTicketKeys(v1::L7TicketKeys(), &none);
  EXPECT_EQ(none.listeners(1).tls().session_ticket_keys(), "");
  InjectTicketKeys(k, &c);
  EXPECT_FALSE(c.listeners(0).has_tls());
  EXPECT_EQ(c.listeners(1).tls().session_ticket_keys(), TicketKeysForNodes(k));
  EXPECT_EQ(c.listeners(1).tls().session_ticket_keys().size(), 3 * kTicketKeyBytes);
  EXPECT_EQ(c.listeners(2).tls().session_ticket_keys(), "");
  EXPECT_EQ(c.listeners(3).tls().session_ticket_keys(), "");
}

}  // namespace
}  // namespace lb
