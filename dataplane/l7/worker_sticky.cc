// Sticky sessions in a worker (docs/L7.md "Sticky sessions"): reading the
// pin of a request (signed cookie or source-IP table), honouring it while
// its backend is available, and re-pinning (a new cookie, a new table
// entry) when the answer came from another backend.
#include <ctime>

#include "absl/strings/str_cat.h"
#include "dataplane/l7/conn.h"
#include "dataplane/l7/worker.h"
#include "lib/l7/sticky_cookie.h"

namespace lb::l7 {

void Worker::StickyLookup(ClientConn* c) {
  c->sticky_backend = -1;
  c->sticky_expiry_s = 0;
  const PoolConfig& pc = config_->pools[c->pool];
  if (pc.sticky == StickyMode::kNone) return;
  const int64_t now_s = time(nullptr);
  if (pc.sticky == StickyMode::kSourceIp) {
    c->sticky_backend = pc.affinity->Find(c->ip_hash, now_s);
    return;
  }
  auto value = FindRequestCookie(c->req, pc.sticky_cookie);
  if (!value) return;
  std::string key;
  const CookieVerdict v =
      VerifyStickyCookie(config_->sticky_key, pc.name, *value, now_s, &key, &c->sticky_expiry_s);
  if (v != CookieVerdict::kValid) {
    counters_->sticky_invalid[static_cast<int>(v) - 1].Add();
    return;
  }
  for (size_t b = 0; b < pc.backends.size(); ++b) {
    if (pc.backends[b].addr.text == key) {
      c->sticky_backend = static_cast<int>(b);
      return;
    }
  }
  counters_->sticky_invalid[kStickyUnknownBackend].Add();  // signed, but no longer in the pool
}

int Worker::StickyBackend(ClientConn* c) {
  const int b = c->sticky_backend;
  if (b < 0 || !c->tried.empty()) return -1;
  return balancers_[c->pool].Available(b, Now()) ? b : -1;
}

void Worker::StickyRespond(ClientConn* c, std::string* head) {
  const PoolConfig& pc = config_->pools[c->pool];
  if (pc.sticky == StickyMode::kNone || c->backend < 0) return;
  if (c->sticky_backend >= 0) {
    (c->sticky_backend == c->backend ? counters_->sticky_hits : counters_->sticky_repins).Add();
  }
  const int64_t now_s = time(nullptr);
  if (pc.sticky == StickyMode::kSourceIp) {
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
