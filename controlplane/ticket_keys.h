// lb-l7's session ticket keys, owned by the control plane (docs/L7.md
// "Ticket keys from the control plane"): pure functions over
// v1::L7TicketKeys; ControlPlane (control_plane_l7.cc) stores and streams
// the result.
//
// The key list (l7.proto L7TicketKeys): keys[0] = next (decrypt only),
// keys[1] = current (encrypts), keys[2..] = previous (decrypt). A rotation
// draws a fresh next key and shifts: the old next becomes current, the old
// current the newest previous key. Keeping the next key one period ahead
// means every node already decrypts with a key before the first node
// encrypts with it, whatever order the nodes see the rotation in.
//
// How many previous keys: a ticket encrypted with the current key at the
// last moment of its period must be accepted for its whole lifetime L (the
// longest session_timeout_s of the TLS listeners, 0 = 300): ceil(L / period)
// previous keys, plus one for the time a rotation takes to reach every node.
// At most kMaxPreviousTicketKeys.
//
// Key bytes never go to a log line or a message (only generations and counts).
//
// Threads: any (RAND_bytes is thread-safe).
#ifndef LB_CONTROLPLANE_TICKET_KEYS_H_
#define LB_CONTROLPLANE_TICKET_KEYS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "lb/v1/l7.pb.h"

namespace lb {

inline constexpr size_t kTicketKeyBytes = 80;  // 16 name, 32 HMAC, 32 AES-256 (nginx)
inline constexpr size_t kMaxPreviousTicketKeys = 1022;
inline constexpr uint32_t kDefaultTicketKeyRotateS = 3600;

// The longest ticket lifetime of `config`'s TLS listeners (seconds).
uint32_t MaxTicketLifetimeS(const v1::L7Config& config);
// Previous keys to keep for tickets that live `lifetime_s` with a rotation
// every `rotate_s` (>= 1).
size_t PreviousTicketKeysToKeep(uint32_t lifetime_s, uint32_t rotate_s);

// True when `keys` is empty (never generated) or its generation is at least
// `rotate_s` old at `now_unix_s` (or dated in the future by more than that:
// a clock stepped back must not freeze the keys).
bool TicketKeyRotationDue(const v1::L7TicketKeys& keys, int64_t now_unix_s, uint32_t rotate_s);

// The next generation: on empty keys a fresh next and current key; else a
// fresh next key, the rest shifted, previous keys beyond `keep_previous`
// dropped. Internal error only when the random generator fails.
absl::StatusOr<v1::L7TicketKeys> RotateTicketKeys(const v1::L7TicketKeys& keys, int64_t now_unix_s,
                                                  size_t keep_previous);

// What lb-l7 takes (L7Tls.session_ticket_keys, nginx's order): current
// first (it encrypts), then next, then the previous ones. "" when none.
std::string TicketKeysForNodes(const v1::L7TicketKeys& keys);

// Puts TicketKeysForNodes into every TLS listener that has tickets enabled
// and no session_ticket_key_file of its own (an operator's file wins).
void InjectTicketKeys(const v1::L7TicketKeys& keys, v1::L7Config* config);

}  // namespace lb

#endif  // LB_CONTROLPLANE_TICKET_KEYS_H_
