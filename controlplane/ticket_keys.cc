#include "controlplane/ticket_keys.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>

#include "absl/status/status.h"

namespace lb {

uint32_t MaxTicketLifetimeS(const v1::L7Config& config) {
  uint32_t longest = 0;
  for (const v1::L7Listener& l : config.listeners()) {
    if (!l.has_tls()) continue;
    const uint32_t t = l.tls().session_timeout_s() == 0 ? 300 : l.tls().session_timeout_s();
    longest = std::max(longest, t);
  }
  return longest == 0 ? 300 : longest;
}

size_t PreviousTicketKeysToKeep(uint32_t lifetime_s, uint32_t rotate_s) {
  if (rotate_s == 0) rotate_s = 1;
  const size_t periods = (static_cast<size_t>(lifetime_s) + rotate_s - 1) / rotate_s;
  return std::min(periods + 1, kMaxPreviousTicketKeys);
}

bool TicketKeyRotationDue(const v1::L7TicketKeys& keys, int64_t now_unix_s, uint32_t rotate_s) {
  if (keys.keys_size() < 2) return true;
  const int64_t age = now_unix_s - keys.rotated_unix_s();
  return age >= static_cast<int64_t>(rotate_s) || age < -static_cast<int64_t>(rotate_s);
}

absl::StatusOr<v1::L7TicketKeys> RotateTicketKeys(const v1::L7TicketKeys& keys, int64_t now_unix_s,
                                                  size_t keep_previous) {
  auto fresh = [](std::string* k) {
    k->assign(kTicketKeyBytes, '\0');
    return RAND_bytes(reinterpret_cast<unsigned char*>(&(*k)[0]), kTicketKeyBytes) == 1;
  };
  v1::L7TicketKeys out;
  out.set_generation(keys.generation() + 1);
  out.set_rotated_unix_s(now_unix_s);
  const bool first = keys.keys_size() < 2;
  if (!fresh(out.add_keys()) || (first && !fresh(out.add_keys()))) {
    return absl::InternalError("ticket keys: RAND_bytes failed; keys not rotated");
  }
  if (!first) {
    // Old next -> current, old current -> previous[0], ...
    const size_t keep = std::min<size_t>(keys.keys_size(), 2 + keep_previous - 1);
    for (size_t i = 0; i < keep; ++i) out.add_keys(keys.keys(static_cast<int>(i)));
  }
  return out;
}

std::string TicketKeysForNodes(const v1::L7TicketKeys& keys) {
  if (keys.keys_size() < 2) return std::string();
  std::string out;
  out.reserve(keys.keys_size() * kTicketKeyBytes);
  out += keys.keys(1);
  out += keys.keys(0);
  for (int i = 2; i < keys.keys_size(); ++i) out += keys.keys(i);
  return out;
}

void InjectTicketKeys(const v1::L7TicketKeys& keys, v1::L7Config* config) {
  std::string bytes = TicketKeysForNodes(keys);
  if (bytes.empty()) return;
  for (v1::L7Listener& l : *config->mutable_listeners()) {
    if (!l.has_tls()) continue;
    v1::L7Tls* t = l.mutable_tls();
    if (t->disable_session_tickets() || !t->session_ticket_key_file().empty()) continue;
    t->set_session_ticket_keys(bytes);
  }
  OPENSSL_cleanse(&bytes[0], bytes.size());
}

}  // namespace lb
