// The HMAC key of lb-l7's sticky cookies (lib/l7/sticky_cookie.h).
//
// LoadStickyKey reads `sticky_secret_file` (at least 32 bytes, mode 0600 or
// stricter, owner-only) into config->sticky_key when some pool uses sticky
// cookies. Without a file it draws 32 random bytes (OpenSSL RAND_bytes) and
// logs one warning: cookies then hold for this process only, and two L7
// nodes each refuse the other's cookies (they re-pin, they never fail).
// Errors (InvalidArgument/NotFound) name the field: the process refuses to
// start. Threads: the main thread, before the workers start.
#ifndef LB_DATAPLANE_L7_STICKY_KEY_H_
#define LB_DATAPLANE_L7_STICKY_KEY_H_

#include "absl/status/status.h"
#include "proto/l7_config.h"

namespace lb::l7 {

absl::Status LoadStickyKey(RuntimeConfig* config);

}  // namespace lb::l7

#endif  // LB_DATAPLANE_L7_STICKY_KEY_H_
