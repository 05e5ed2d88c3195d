// The access log of lb-l7: one line per answered request, written by a
// thread of its own so that a slow disk never blocks a worker's loop.
//
// Workers format lines into their own buffer (no lock per request) and hand
// the buffer over with Submit() at most once per timer tick; the writer
// thread appends to the file. When the writer is more than kMaxPendingBytes
// behind, a submitted buffer is dropped and counted (dropped_lines), never
// waited for.
//
// Line: key=value pairs separated by spaces, values without spaces or
// quotes (path and method are escaped %XX):
//   ts=2026-12-06T17:06:00.123Z rid=... client=1.2.3.4 listener=main
//   route=api pool=api backend=10.0.0.1:80 method=GET path=/v1/x status=200
//   req_body=0 resp_bytes=612 ms=1.234 attempts=1
//
// Threads: Submit from any worker; Start/Stop from main.
#ifndef LB_DATAPLANE_L7_ACCESS_LOG_H_
#define LB_DATAPLANE_L7_ACCESS_LOG_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace lb::l7 {

class AccessLog {
 public:
  static constexpr size_t kMaxPendingBytes = 8 << 20;
  ~AccessLog();
  absl::Status Open(const std::string& path);
  // Takes the content of `lines` (leaves it empty).
  void Submit(std::string* lines, uint64_t nlines);
  void Stop();  // writes what is pending, then joins
  uint64_t dropped_lines() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  void Loop();
  int fd_ = -1;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string pending_;
  bool stop_ = false;
  std::atomic<uint64_t> dropped_{0};
  std::thread thread_;
};

// Appends `s` to `out` with bytes outside visible ASCII, '%', '"' and '\'
// written %XX.
void AppendEscaped(absl::string_view s, std::string* out);

}  // namespace lb::l7

#endif  // LB_DATAPLANE_L7_ACCESS_LOG_H_
