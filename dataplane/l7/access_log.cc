#include "dataplane/l7/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace lb::l7 {

void AppendEscaped(absl::string_view s, std::string* out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : s) {
    if (c <= 0x20 || c >= 0x7f || c == '%' || c == '"' || c == '\\') {
      out->push_back('%');
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 15]);
    } else {
      out->push_back(static_cast<char>(c));
    }
  }
}

AccessLog::~AccessLog() { Stop(); }

absl::Status AccessLog::Open(const std::string& path) {
  fd_ = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd_ < 0) return absl::UnavailableError(absl::StrCat(path, ": ", strerror(errno)));
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void AccessLog::Submit(std::string* lines, uint64_t nlines) {
  if (lines->empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (pending_.size() + lines->size() > kMaxPendingBytes) {
      dropped_.fetch_add(nlines, std::memory_order_relaxed);
      lines->clear();
      return;
    }
    pending_.append(*lines);
  }
  lines->clear();
  cv_.notify_one();
}

void AccessLog::Loop() {
  std::string batch;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !pending_.empty(); });
      if (pending_.empty() && stop_) return;
      batch.swap(pending_);
    }
    size_t off = 0;
    while (off < batch.size()) {
      const ssize_t n = write(fd_, batch.data() + off, batch.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // disk full or I/O error: this batch is lost
      off += static_cast<size_t>(n);
    }
    batch.clear();
  }
}

void AccessLog::Stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
  close(fd_);
  fd_ = -1;
}

}  // namespace lb::l7
