#include "controlplane/health_response.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace lb {

std::optional<int> ParseHealthStatusLine(absl::string_view line) {
  if (!absl::ConsumePrefix(&line, "HTTP/")) return std::nullopt;
  const size_t sp = line.find(' ');
  if (sp == absl::string_view::npos || line.size() < sp + 4) return std::nullopt;
  int code = 0;
  for (size_t i = sp + 1; i < sp + 4; ++i) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(line[i]))) return std::nullopt;
    code = code * 10 + (line[i] - '0');
  }
  if (line.size() > sp + 4 && line[sp + 4] != ' ') return std::nullopt;
  return code;
}

int64_t ParseHealthContentLength(absl::string_view headers) {
  while (!headers.empty()) {
    const size_t eol = headers.find('\n');
    const absl::string_view line = headers.substr(0, eol);
    headers = eol == absl::string_view::npos ? absl::string_view() : headers.substr(eol + 1);
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    if (!absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(line.substr(0, colon)),
                                "content-length")) {
      continue;
    }
    int64_t v = -1;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(colon + 1)), &v) && v >= 0) {
      return v;
    }
    return -1;
  }
  return -1;
}

HealthResponseParser::Verdict HealthResponseParser::Fail(std::string error) {
  error_ = std::move(error);
  buf_.clear();
  verdict_ = Verdict::kUnhealthy;
  return verdict_;
}

bool HealthResponseParser::TakeStatusLine() {
  const size_t eol = buf_.find('\n');
  if (eol == std::string::npos) {
    if (buf_.size() > kMaxHealthHeaderBytes) {
      Fail(absl::StrCat("status line exceeds ", kMaxHealthHeaderBytes, " bytes"));
    }
    return false;
  }
  absl::string_view line(buf_.data(), eol);
  absl::ConsumeSuffix(&line, "\r");
  const std::optional<int> code = ParseHealthStatusLine(line);
  if (!code) {
    Fail(absl::StrCat("malformed status line \"", absl::CHexEscape(line.substr(0, 64)), "\""));
    return false;
  }
  if (*code < 200 || *code > 299) {
    Fail(absl::StrCat("HTTP ", *code));
    return false;
  }
  have_status_ = true;
  return true;
}

HealthResponseParser::Verdict HealthResponseParser::Feed(absl::string_view bytes) {
  if (verdict_ != Verdict::kNeedMore) return verdict_;
  if (!have_headers_) {
    const size_t old = buf_.size();
    buf_.append(bytes.data(), bytes.size());
    if (!have_status_ && !TakeStatusLine()) return verdict_;
    // The end of the headers may straddle two chunks: search from 3 bytes back.
    const size_t from = old >= 3 ? old - 3 : 0;
    size_t end = buf_.find("\r\n\r\n", from);
    size_t sep = 4;
    if (end == std::string::npos) {
      end = buf_.find("\n\n", from);
      sep = 2;
    }
    if (end == std::string::npos) {
      if (buf_.size() > kMaxHealthHeaderBytes) {
        return Fail(absl::StrCat("response headers exceed ", kMaxHealthHeaderBytes, " bytes"));
      }
      return verdict_;
    }
    have_headers_ = true;
    content_length_ = ParseHealthContentLength(absl::string_view(buf_.data(), end));
    body_bytes_ = buf_.size() - (end + sep);
    buf_.clear();
    buf_.shrink_to_fit();
  } else {
    body_bytes_ += bytes.size();
  }
  // The body is read, never stored, up to the configured limit.
  if (body_bytes_ >= max_body_bytes_ ||
      (content_length_ >= 0 && body_bytes_ >= uint64_t(content_length_))) {
    verdict_ = Verdict::kHealthy;
  }
  return verdict_;
}

HealthResponseParser::Verdict HealthResponseParser::Finish() {
  if (verdict_ != Verdict::kNeedMore) return verdict_;
  if (!have_status_) return Fail("connection closed before the status line");
  buf_.clear();
  verdict_ = Verdict::kHealthy;  // 2xx, body shorter than announced or unannounced
  return verdict_;
}

}  // namespace lb
