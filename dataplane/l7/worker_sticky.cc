// Sticky sessions in a worker (docs/L7.md "Sticky sessions"): reading the
// pin of a request (signed cookie or source-IP table), honouring it while
// its backend is available, and re-pinning (a new cookie, a new table
// entry) when the answer came from another backend.
#include <ctime>

#include "absl/strings/str_cat.h"
#include "dataplane/l7/conn.h"
#include "dataplane/l7/redis_store.h"
#include "dataplane/l7/worker.h"
#include "lib/l7/sticky_cookie.h"

namespace lb::l7 {

namespace {

std::string StoreKey(const StickyStoreConfig& sc, const PoolConfig& pc, const ClientConn* c) {
  return absl::StrCat(sc.key_prefix, pc.name, ":", c->peer_ip);
}

}  // namespace

bool Worker::StickyLookup(ClientConn* c) {
  c->sticky_backend = -1;
  c->sticky_expiry_s = 0;
  const PoolConfig& pc = config_->pools[c->pool];
  if (pc.sticky == StickyMode::kNone) return false;
  const int64_t now_s = time(nullptr);
  if (pc.sticky == StickyMode::kSourceIp) {
    if (pc.store >= 0) {
      RedisStore* st = stores_[pc.store].get();
      if (st->Lookup(StoreKey(st->config(), pc, c), pc.sticky_ttl_s, c, Now())) {
        c->store_wait = true;
        c->store = pc.store;
        return true;
      }
      counters_->sticky_store_fallbacks[0].Add();  // down: the pool's own pick
      return false;
    }
    c->sticky_backend = pc.affinity->Find(c->ip_hash, now_s);
    return false;
  }
  auto value = FindRequestCookie(c->req, pc.sticky_cookie);
  if (!value) return false;
  std::string key;
  const CookieVerdict v =
      VerifyStickyCookie(config_->sticky_key, pc.name, *value, now_s, &key, &c->sticky_expiry_s);
  if (v != CookieVerdict::kValid) {
    counters_->sticky_invalid[static_cast<int>(v) - 1].Add();
    return false;
  }
  for (size_t b = 0; b < pc.backends.size(); ++b) {
    if (pc.backends[b].addr.text == key) {
      c->sticky_backend = static_cast<int>(b);
      return false;
    }
  }
  counters_->sticky_invalid[kStickyUnknownBackend].Add();  // signed, but no longer in the pool
  return false;
}

void Worker::StoreResults(RedisStore* s) {
  // Taken one at a time: resuming a request may close another client that
  // also waits (Forget then removes its entry from the vector).
  auto& results = s->results();
  while (!results.empty()) {
    const RedisStore::Result r = std::move(results.front());
    results.erase(results.begin());
    ClientConn* c = r.client;
    if (c->dead || !c->store_wait) continue;
    c->store_wait = false;
    c->store = -1;
    const PoolConfig& pc = config_->pools[c->pool];
    switch (r.outcome) {
      case RedisStore::Outcome::kFound:
        for (size_t b = 0; b < pc.backends.size(); ++b) {
          if (pc.backends[b].addr.text == r.value) c->sticky_backend = static_cast<int>(b);
        }
        break;
      case RedisStore::Outcome::kMiss:
        break;
      case RedisStore::Outcome::kDown:
        counters_->sticky_store_fallbacks[0].Add();
        break;
      case RedisStore::Outcome::kTimeout:
        counters_->sticky_store_fallbacks[1].Add();
        break;
      case RedisStore::Outcome::kError:
        counters_->sticky_store_fallbacks[2].Add();
        break;
    }
    Resume(c);
  }
}

void Worker::Resume(ClientConn* c) {
  std::string pending = std::move(c->pending);
  c->pending.clear();
  StartUpstream(c, &pending);
  // The body (if any) can flow now; a pipelined request may wait too.
  if (!c->dead && !c->in_pump && !c->queued) ClientPump(c);
  if (!c->dead) ClientFlush(c);
}

int Worker::StickyBackend(ClientConn* c) {
  const int b = c->sticky_backend;
  if (b < 0 || !c->tried.empty()) return -1;
  // Draining, ejected or at its max_connections: the pool picks (re-pin).
  const Balancer& bal = balancers_[c->pool];
  return bal.Available(b, Now()) && !bal.Full(b) ? b : -1;
}

void Worker::StickyRespond(ClientConn* c, std::string* head) {
  const PoolConfig& pc = config_->pools[c->pool];
  if (pc.sticky == StickyMode::kNone || c->backend < 0) return;
  if (c->sticky_backend >= 0) {
    (c->sticky_backend == c->backend ? counters_->sticky_hits : counters_->sticky_repins).Add();
  }
  const int64_t now_s = time(nullptr);
  if (pc.sticky == StickyMode::kSourceIp) {
    if (pc.store >= 0) {
      // A lookup that found this backend refreshed its TTL already (GETEX).
      if (c->sticky_backend != c->backend) {
        RedisStore* st = stores_[pc.store].get();
        st->Pin(StoreKey(st->config(), pc, c), pc.backends[c->backend].addr.text, pc.sticky_ttl_s);
      }
      return;
    }
    pc.affinity->Put(c->ip_hash, c->backend, now_s, pc.sticky_ttl_s);
    return;
  }
  // A new cookie when there was none for this backend, or when the one
  // held has run through half its TTL (sliding expiry without a
  // Set-Cookie on every answer).
  if (c->sticky_backend == c->backend && c->sticky_expiry_s - now_s > pc.sticky_ttl_s / 2) return;
  const std::string value = SignStickyCookie(
      config_->sticky_key, pc.name, pc.backends[c->backend].addr.text, now_s + pc.sticky_ttl_s);
  const std::string field = absl::StrCat(
      "Set-Cookie: ", pc.sticky_cookie, "=", value, "; Path=/; Max-Age=", pc.sticky_ttl_s,
      "; HttpOnly; SameSite=Lax", c->Secure() ? "; Secure" : "", "\r\n");
  // Before the blank line that ends the head.
  if (head->size() >= 2) head->insert(head->size() - 2, field);
}

}  // namespace lb::l7
