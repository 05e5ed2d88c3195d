// The HTTP health check's reading of a backend's response: status line,
// headers, body length. A pure function over the bytes as they arrive (no
// socket, no clock), fed untrusted input: whatever a backend, or anything
// that answers on its address, sends back. Fuzzed by
// fuzz/health_response_fuzz.cc.
//
// Contract
//  * Healthy = a "HTTP/<version> <3 digits>[ <reason>]" status line (LF or
//    CRLF terminated) with a 2xx code, then either the end of the headers
//    ("\r\n\r\n" or "\n\n") followed by Content-Length bytes of body (or
//    max_body_bytes of it, whichever comes first), or the connection closing
//    at any point after the status line (body shorter than announced or not
//    announced).
//  * Unhealthy, with the reason: a status line that is not one ("malformed
//    status line \"...\"", escaped, at most 64 bytes of it), a non-2xx code
//    ("HTTP 503"), a status line or header block longer than
//    kMaxHealthHeaderBytes, or the connection closing before the status line.
//  * The body is counted, never stored. At most kMaxHealthHeaderBytes plus the
//    last chunk fed are held.
//  * Once decided, further Feed/Finish calls return the same verdict.
//
// Threads: one object per check in flight, used by one thread at a time.
#ifndef LB_CONTROLPLANE_HEALTH_RESPONSE_H_
#define LB_CONTROLPLANE_HEALTH_RESPONSE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace lb {

// A health endpoint's status line and headers must fit in this much.
inline constexpr size_t kMaxHealthHeaderBytes = 16384;

// "HTTP/1.1 503 Service Unavailable" -> 503; nullopt when malformed.
std::optional<int> ParseHealthStatusLine(absl::string_view line);

// Content-Length from a header block, -1 when absent or unparsable.
int64_t ParseHealthContentLength(absl::string_view headers);

class HealthResponseParser {
 public:
  enum class Verdict { kNeedMore, kHealthy, kUnhealthy };

  explicit HealthResponseParser(uint64_t max_body_bytes) : max_body_bytes_(max_body_bytes) {}

  // Consumes the next bytes of the response.
  Verdict Feed(absl::string_view bytes);
  // The peer closed the connection (recv returned 0).
  Verdict Finish();

  Verdict verdict() const { return verdict_; }
  // Why the response is unhealthy; "" otherwise.
  const std::string& error() const { return error_; }
  // Bytes held while looking for the end of the status line or headers.
  size_t buffered_bytes() const { return buf_.size(); }

 private:
  Verdict Fail(std::string error);
  // Returns false when the status line is complete and not a 2xx one.
  bool TakeStatusLine();

  const uint64_t max_body_bytes_;
  Verdict verdict_ = Verdict::kNeedMore;
  std::string error_;
  std::string buf_;
  bool have_status_ = false;
  bool have_headers_ = false;
  int64_t content_length_ = -1;
  uint64_t body_bytes_ = 0;
};

}  // namespace lb

#endif  // LB_CONTROLPLANE_HEALTH_RESPONSE_H_
