#include "controlplane/rest_api.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "controlplane/config.h"
#include "controlplane/metrics.h"

namespace lb {
namespace {

struct AlgorithmName {
  v1::Algorithm algorithm;
  const char* name;
};
constexpr AlgorithmName kAlgorithmNames[] = {
    {v1::ALGORITHM_ROUND_ROBIN, "round_robin"},
    {v1::ALGORITHM_WEIGHTED_ROUND_ROBIN, "weighted_round_robin"},
    {v1::ALGORITHM_LEAST_CONNECTIONS, "least_connections"},
    {v1::ALGORITHM_WEIGHTED_LEAST_CONNECTIONS, "weighted_least_connections"},
    {v1::ALGORITHM_IP_HASH, "ip_hash"},
    {v1::ALGORITHM_RANDOM, "random"},
    {v1::ALGORITHM_MAGLEV, "maglev"},
};

std::string AlgorithmToName(v1::Algorithm a) {
  if (a == v1::ALGORITHM_UNSPECIFIED) a = v1::ALGORITHM_MAGLEV;
  for (const AlgorithmName& n : kAlgorithmNames) {
    if (n.algorithm == a) return n.name;
  }
  return "maglev";
}

std::string AlgorithmChoices() {
  std::vector<std::string> names;
  for (const AlgorithmName& n : kAlgorithmNames) names.push_back(n.name);
  return absl::StrJoin(names, " | ");
}

// --- JSON via protobuf's mapping ---

std::string ToJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  std::string out;
  auto s = google::protobuf::util::MessageToJsonString(m, &out, o);
  if (!s.ok()) return "{}\n";  // cannot happen for our messages
  out += '\n';
  return out;
}

HttpResponse JsonResponse(int status, const google::protobuf::Message& m) {
  HttpResponse r;
  r.status = status;
  r.body = ToJson(m);
  return r;
}

bool IsFieldPath(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '[' &&
        c != ']') {
      return false;
    }
  }
  return true;
}

// Turns protobuf's JSON parser message into "problem" + the field it names:
//   "foo: Cannot find field."                  -> unknown field "foo"
//   "(port): invalid value true for type ..."  -> field "port"
//   "(backends[0]) bogus: Cannot find field."  -> field "backends[0].bogus"
//   "Unexpected end of string. ..."            -> field "body"
absl::Status JsonParseError(absl::string_view raw) {
  std::string msg(raw.substr(0, raw.find('\n')));
  std::string field;
  std::string rest = msg;
  if (absl::StartsWith(msg, "(")) {
    size_t close = msg.find(')');
    if (close != std::string::npos) {
      field = msg.substr(1, close - 1);
      rest = msg.substr(close + 1);
      if (absl::StartsWith(rest, " ")) {
        size_t colon = rest.find(':');
        std::string name = rest.substr(1, colon == std::string::npos ? 0 : colon - 1);
        if (IsFieldPath(name)) {
          field = absl::StrCat(field, ".", name);
          rest = rest.substr(colon);
        }
      }
      if (absl::StartsWith(rest, ":")) rest = rest.substr(1);
    }
  } else {
    size_t colon = msg.find(':');
    if (colon != std::string::npos && IsFieldPath(msg.substr(0, colon))) {
      field = msg.substr(0, colon);
      rest = msg.substr(colon + 1);
    } else if (colon == 0) {
      rest = msg.substr(1);
    }
  }
  rest = std::string(absl::StripAsciiWhitespace(rest));
  if (rest == "Cannot find field.") {
    return absl::InvalidArgumentError(absl::StrCat(field, ": unknown field"));
  }
  if (field.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("body: not a valid JSON object: ", rest));
  }
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", rest));
}

// Strict JSON (RFC 8259) in front of protobuf's parser, which is lenient:
// protobuf 3.21 takes single-quoted strings, unquoted keys, trailing commas
// and "yes" for a bool. This recognizer parses nothing into the message
// (protobuf still does all the mapping); it refuses what is not JSON, and
// values whose JSON type cannot be the proto field's type, naming the field.
class StrictJsonCheck {
 public:
  explicit StrictJsonCheck(absl::string_view text) : s_(text) {}

  absl::Status Check(const google::protobuf::Descriptor* root) {
    SkipWs();
    if (pos_ >= s_.size() || s_[pos_] != '{') {
      return absl::InvalidArgumentError("body: expected a JSON object");
    }
    if (auto st = Object("", root, 0); !st.ok()) return st;
    SkipWs();
    if (pos_ != s_.size()) return Syntax("unexpected text after the JSON object");
    return absl::OkStatus();
  }

 private:
  using FD = google::protobuf::FieldDescriptor;
  enum class Kind { kObject, kArray, kString, kNumber, kBool, kNull };
  static constexpr int kMaxDepth = 32;

  absl::Status Syntax(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("body: not valid JSON at byte ", pos_, ": ", what));
  }

  void SkipWs() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }

  static std::string Join(const std::string& path, absl::string_view key) {
    return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
  }

  static const FD* FindField(const google::protobuf::Descriptor* d, absl::string_view key) {
    for (int i = 0; i < d->field_count(); ++i) {
      const FD* f = d->field(i);
      if (f->name() == key || f->json_name() == key) return f;
    }
    return nullptr;
  }

  // The message type whose fields an object value for `f` must follow, or
  // nullptr (well-known types and maps are not checked field by field).
  static const google::protobuf::Descriptor* MessageOf(const FD* f) {
    if (f == nullptr || f->type() != FD::TYPE_MESSAGE || f->is_map()) return nullptr;
    const google::protobuf::Descriptor* d = f->message_type();
    return absl::StartsWith(d->full_name(), "google.protobuf.") ? nullptr : d;
  }

  // Is a JSON value of `kind` acceptable for one (non-repeated) value of `f`
  // under the proto3 JSON mapping?
  static bool Compatible(const FD* f, Kind kind, bool is_map_value) {
    if (kind == Kind::kNull) return true;
    if (f->is_map() && !is_map_value) return kind == Kind::kObject;
    switch (f->cpp_type()) {
      case FD::CPPTYPE_BOOL:
        return kind == Kind::kBool;
      case FD::CPPTYPE_STRING:
        return kind == Kind::kString;
      case FD::CPPTYPE_ENUM:
      case FD::CPPTYPE_INT32:
      case FD::CPPTYPE_INT64:
      case FD::CPPTYPE_UINT32:
      case FD::CPPTYPE_UINT64:
      case FD::CPPTYPE_FLOAT:
      case FD::CPPTYPE_DOUBLE:
        return kind == Kind::kNumber || kind == Kind::kString;
      case FD::CPPTYPE_MESSAGE:
        return MessageOf(f) == nullptr || kind == Kind::kObject;
    }
    return false;
  }

  static const char* KindName(Kind k) {
    switch (k) {
      case Kind::kObject:
        return "an object";
      case Kind::kArray:
        return "an array";
      case Kind::kString:
        return "a string";
      case Kind::kNumber:
        return "a number";
      case Kind::kBool:
        return "a boolean";
      case Kind::kNull:
        return "null";
    }
    return "?";
  }

  static const char* Expected(const FD* f) {
    switch (f->cpp_type()) {
      case FD::CPPTYPE_BOOL:
        return "true or false";
      case FD::CPPTYPE_STRING:
        return "a string";
      case FD::CPPTYPE_ENUM:
        return "an enum name";
      case FD::CPPTYPE_MESSAGE:
        return "an object";
      default:
        return "a number";
    }
  }

  // A value for field `f` (nullptr = unchecked) at `path`.
  absl::Status FieldValue(const std::string& path, const FD* f, bool element, int depth) {
    Kind kind;
    const bool repeated = f != nullptr && f->is_repeated() && !f->is_map() && !element;
    if (repeated) {
      SkipWs();
      if (pos_ < s_.size() && s_[pos_] == '[') {
        ++pos_;
        SkipWs();
        if (pos_ < s_.size() && s_[pos_] == ']') {
          ++pos_;
          return absl::OkStatus();
        }
        for (int i = 0;; ++i) {
          if (auto st = FieldValue(absl::StrCat(path, "[", i, "]"), f, true, depth + 1); !st.ok()) {
            return st;
          }
          SkipWs();
          if (pos_ < s_.size() && s_[pos_] == ',') {
            ++pos_;
            continue;
          }
          if (pos_ < s_.size() && s_[pos_] == ']') {
            ++pos_;
            return absl::OkStatus();
          }
          return Syntax("expected ',' or ']'");
        }
      }
      if (auto st = Value(path, nullptr, depth, &kind); !st.ok()) return st;
      if (kind == Kind::kNull) return absl::OkStatus();
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": expected an array, got ", KindName(kind)));
    }
    const google::protobuf::Descriptor* sub = f == nullptr ? nullptr : MessageOf(f);
    const FD* map_value = nullptr;
    if (f != nullptr && f->is_map()) map_value = f->message_type()->map_value();
    if (auto st = Value(path, sub, depth, &kind, map_value); !st.ok()) return st;
    if (f != nullptr && !Compatible(f, kind, false)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": expected ", f->is_map() ? "an object" : Expected(f), ", got ", KindName(kind)));
    }
    return absl::OkStatus();
  }

  absl::Status Value(const std::string& path, const google::protobuf::Descriptor* d, int depth,
                     Kind* kind, const FD* map_value = nullptr) {
    if (depth > kMaxDepth) return Syntax("nested too deeply");
    SkipWs();
    if (pos_ >= s_.size()) return Syntax("unexpected end of input");
    const char c = s_[pos_];
    if (c == '{') {
      *kind = Kind::kObject;
      return Object(path, d, depth, map_value);
    }
    if (c == '[') {
      *kind = Kind::kArray;
      ++pos_;
      SkipWs();
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return absl::OkStatus();
      }
      while (true) {
        Kind k;
        if (auto st = Value(path, nullptr, depth + 1, &k); !st.ok()) return st;
        SkipWs();
        if (pos_ < s_.size() && s_[pos_] == ',') {
          ++pos_;
          continue;
        }
        if (pos_ < s_.size() && s_[pos_] == ']') {
          ++pos_;
          return absl::OkStatus();
        }
        return Syntax("expected ',' or ']'");
      }
    }
    if (c == '"') {
      *kind = Kind::kString;
      return String(nullptr);
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      *kind = Kind::kNumber;
      return Number();
    }
    for (auto [word, k] : {std::pair<absl::string_view, Kind>{"true", Kind::kBool},
                           {"false", Kind::kBool},
                           {"null", Kind::kNull}}) {
      if (s_.substr(pos_, word.size()) == word) {
        pos_ += word.size();
        *kind = k;
        return absl::OkStatus();
      }
    }
    return Syntax("expected a value");
  }

  absl::Status Object(const std::string& path, const google::protobuf::Descriptor* d, int depth,
                      const FD* map_value = nullptr) {
    ++pos_;  // '{'
    SkipWs();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return absl::OkStatus();
    }
    std::vector<std::string> seen;
    while (true) {
      SkipWs();
      if (pos_ >= s_.size() || s_[pos_] != '"') return Syntax("expected a double-quoted key");
      std::string key;
      if (auto st = String(&key); !st.ok()) return st;
      const std::string key_path = Join(path, key);
      if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
        return absl::InvalidArgumentError(absl::StrCat(key_path, ": given more than once"));
      }
      seen.push_back(key);
      SkipWs();
      if (pos_ >= s_.size() || s_[pos_] != ':') return Syntax("expected ':' after a key");
      ++pos_;
      const FD* f = nullptr;
      if (d != nullptr) {
        f = FindField(d, key);
        if (f == nullptr)
          return absl::InvalidArgumentError(absl::StrCat(key_path, ": unknown field"));
      }
      if (map_value != nullptr) {
        if (auto st = FieldValue(key_path, map_value, true, depth + 1); !st.ok()) return st;
      } else if (auto st = FieldValue(key_path, f, false, depth + 1); !st.ok()) {
        return st;
      }
      SkipWs();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return absl::OkStatus();
      }
      return Syntax("expected ',' or '}'");
    }
  }

  // A string at pos_ (on '"'); its decoded value is not needed except for
  // keys, which we keep as written (escapes in keys are refused).
  absl::Status String(std::string* out) {
    ++pos_;
    const size_t start = pos_;
    while (pos_ < s_.size()) {
      const unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        if (out != nullptr) *out = std::string(s_.substr(start, pos_ - start));
        ++pos_;
        return absl::OkStatus();
      }
      if (c < 0x20) return Syntax("control character in a string");
      if (c == '\\') {
        if (out != nullptr) return Syntax("escape sequence in a key");
        if (pos_ + 1 >= s_.size()) break;
        const char e = s_[pos_ + 1];
        if (e == 'u') {
          if (pos_ + 5 >= s_.size()) break;
          for (size_t i = pos_ + 2; i < pos_ + 6; ++i) {
            if (!absl::ascii_isxdigit(static_cast<unsigned char>(s_[i]))) {
              return Syntax("bad \\u escape");
            }
          }
          pos_ += 6;
          continue;
        }
        if (std::strchr("\"\\/bfnrt", e) == nullptr || e == '\0') return Syntax("bad escape");
        pos_ += 2;
        continue;
      }
      if (c >= 0x80) {
        // UTF-8: a lead byte and its continuation bytes (no overlongs or
        // surrogates: protobuf refuses those in strings anyway).
        const int n = (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
        if (n < 0 || c == 0xC0 || c == 0xC1 || c > 0xF4 || pos_ + n >= s_.size()) {
          return Syntax("invalid UTF-8");
        }
        for (int i = 1; i <= n; ++i) {
          if ((static_cast<unsigned char>(s_[pos_ + i]) & 0xC0) != 0x80) {
            return Syntax("invalid UTF-8");
          }
        }
        pos_ += n + 1;
        continue;
      }
      ++pos_;
    }
    return Syntax("unterminated string");
  }

  absl::Status Number() {
    auto digit = [this] { return pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9'; };
    if (s_[pos_] == '-') ++pos_;
    if (!digit()) return Syntax("bad number");
    if (s_[pos_] == '0') {
      ++pos_;
    } else {
      while (digit()) ++pos_;
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (!digit()) return Syntax("bad number");
      while (digit()) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (!digit()) return Syntax("bad number");
      while (digit()) ++pos_;
    }
    return absl::OkStatus();
  }

  absl::string_view s_;
  size_t pos_ = 0;
};

absl::Status ParseBody(const HttpRequest& req, google::protobuf::Message* m) {
  if (absl::StripAsciiWhitespace(req.body).empty()) {
    return absl::InvalidArgumentError("body: expected a JSON object, got an empty body");
  }
  if (auto s = StrictJsonCheck(req.body).Check(m->GetDescriptor()); !s.ok()) return s;
  google::protobuf::util::JsonParseOptions o;
  o.ignore_unknown_fields = false;
  auto s = google::protobuf::util::JsonStringToMessage(req.body, m, o);
  if (!s.ok()) return JsonParseError(std::string(s.message()));
  return absl::OkStatus();
}

std::string FieldOf(absl::string_view message) {
  size_t colon = message.find(": ");
  if (colon == absl::string_view::npos) return "";
  absl::string_view f = message.substr(0, colon);
  return IsFieldPath(f) ? std::string(f) : "";
}

// --- path handling ---

bool PercentDecode(absl::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size() || !absl::ascii_isxdigit(in[i + 1]) ||
        !absl::ascii_isxdigit(in[i + 2])) {
      return false;
    }
    int v = 0;
    absl::SimpleHexAtoi(in.substr(i + 1, 2), &v);
    out->push_back(static_cast<char>(v));
    i += 2;
  }
  return true;
}

// An id path segment. Whatever its shape, a segment that names no id names
// no resource: 404, like an unknown id ("abc", "0" and "99999999999" are no
// more wrong than an id nobody has).
absl::StatusOr<uint32_t> ParseId(const std::string& segment, const char* field, const char* what) {
  uint32_t id = 0;
  if (segment.empty() || segment.size() > 10 ||
      !std::all_of(segment.begin(), segment.end(),
                   [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); }) ||
      !absl::SimpleAtoi(segment, &id) || id == 0) {
    return absl::NotFoundError(absl::StrCat(field, ": no ", what, " \"", QuoteBounded(segment),
                                            "\" (ids are 1..4294967295)"));
  }
  return id;
}

absl::Status CheckPoolName(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 64;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != ':' &&
        c != '-') {
      ok = false;
    }
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("pool: path segment \"", QuoteBounded(name),
                     "\" is not a pool name ([A-Za-z0-9_.:-]{1,64})"));
  }
  return absl::OkStatus();
}

// --- conversions ---

std::string BackendStatusName(const v1::BackendStatus& s) {
  if (s.backend().state() == v1::BACKEND_STATE_DRAINING || s.backend().remove_at_unix_ms() != 0) {
    return "draining";
  }
  switch (s.health()) {
    case v1::HEALTH_STATUS_HEALTHY:
      return "healthy";
    case v1::HEALTH_STATUS_UNHEALTHY:
      return "unhealthy";
    default:
      return "unknown";
  }
}

v1::RestBackend ToRestBackend(const v1::BackendStatus& s) {
  v1::RestBackend r;
  r.set_id(s.backend().id());
  r.set_address(s.backend().address());
  r.set_port(s.backend().port());
  r.set_weight(s.backend().has_weight() ? s.backend().weight() : kDefaultBackendWeight);
  r.set_status(BackendStatusName(s));
  return r;
}

v1::RestAlgorithmConfig ToRestAlgorithm(const v1::Pool& p) {
  v1::RestAlgorithmConfig c;
  c.set_algorithm(AlgorithmToName(p.algorithm()));
  c.set_sticky_sessions(p.sticky_sessions());
  c.set_sticky_ttl_seconds(p.sticky_ttl_seconds() == 0 ? kDefaultStickyTtlSeconds
                                                       : p.sticky_ttl_seconds());
  return c;
}

// --- the routes ---

struct Params {
  std::string pool = kDefaultPool;
  uint32_t backend_id = 0;
  uint32_t vip_id = 0;
};

using RouteFn = HttpResponse (*)(ControlPlane*, const RestApiOptions&, const HttpRequest&,
                                 const Params&);

struct Route {
  const char* method;
  std::vector<std::string> pattern;  // "{pool}", "{backend_id}", "{vip_id}" match one segment
  RouteFn fn;
};

// GetBackend, restricted to the pool named in the path.
absl::StatusOr<v1::BackendStatus> BackendInPool(ControlPlane* cp, const Params& p) {
  auto b = cp->GetBackend(p.backend_id);
  if (!b.ok()) return b.status();
  const std::string pool = b->pool().empty() ? kDefaultPool : b->pool();
  if (pool != p.pool) {
    return absl::NotFoundError(
        absl::StrCat("backend_id: backend ", p.backend_id, " is not in pool \"", p.pool, "\""));
  }
  return b;
}

bool PoolExists(ControlPlane* cp, const std::string& name) {
  const v1::Config c = cp->config();
  return std::any_of(c.pools().begin(), c.pools().end(),
                     [&](const v1::Pool& p) { return p.name() == name; });
}

absl::StatusOr<v1::Pool> FindPool(ControlPlane* cp, const std::string& name) {
  const v1::Config c = cp->config();
  for (const v1::Pool& p : c.pools()) {
    if (p.name() == name) return p;
  }
  return absl::NotFoundError(absl::StrCat("pool: pool \"", name, "\" not found"));
}

HttpResponse ListBackends(ControlPlane* cp, const RestApiOptions&, const HttpRequest&,
                          const Params& p) {
  if (p.pool != kDefaultPool && !PoolExists(cp, p.pool)) {
    return ErrorResponse(
        absl::NotFoundError(absl::StrCat("pool: pool \"", p.pool, "\" not found")));
  }
  v1::RestBackendList resp;
  for (const v1::BackendStatus& b : cp->ListBackends(p.pool))
    *resp.add_backends() = ToRestBackend(b);
  return JsonResponse(200, resp);
}

HttpResponse AddBackend(ControlPlane* cp, const RestApiOptions&, const HttpRequest& req,
                        const Params& p) {
  v1::RestBackendRequest in;
  if (auto s = ParseBody(req, &in); !s.ok()) return ErrorResponse(s);
  if (in.address().empty()) {
    return ErrorResponse(absl::InvalidArgumentError("address: required (an IPv4 or IPv6 literal)"));
  }
  auto address = ParseIpAddress(in.address());
  if (!address.ok()) {
    return ErrorResponse(
        absl::InvalidArgumentError(absl::StrCat("address: ", address.status().message())));
  }
  if (absl::Status st = CheckUnicastAddress(*address); !st.ok()) {
    return ErrorResponse(absl::InvalidArgumentError(absl::StrCat("address: ", st.message())));
  }
  if (in.port() < 1 || in.port() > 65535) {
    return ErrorResponse(absl::InvalidArgumentError(
        absl::StrCat("port: ", in.port(), " is out of range (1..65535)")));
  }
  if (in.has_weight() && (in.weight() < 0 || in.weight() > kMaxBackendWeight)) {
    return ErrorResponse(absl::InvalidArgumentError(
        absl::StrCat("weight: ", in.weight(), " is out of range (0..", kMaxBackendWeight, ")")));
  }
  std::string path =
      in.health_check_path().empty() ? kDefaultHealthCheckPath : in.health_check_path();
  if (path[0] != '/' || path.size() > kMaxHttpPathLen ||
      !std::all_of(path.begin(), path.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
    return ErrorResponse(absl::InvalidArgumentError(
        absl::StrCat("health_check_path: \"", QuoteBounded(in.health_check_path()),
                     "\" is not an HTTP path (starts with '/', printable, at most ",
                     kMaxHttpPathLen, " characters)")));
  }
  v1::Backend b;
  b.set_address(in.address());
  b.set_port(static_cast<uint32_t>(in.port()));
  b.set_weight(in.has_weight() ? static_cast<uint32_t>(in.weight()) : kDefaultBackendWeight);
  b.set_health_check_path(path);
  auto added = cp->AddBackend(p.pool, b);
  if (!added.ok()) return ErrorResponse(added.status());
  HttpResponse r = JsonResponse(201, ToRestBackend(*added));
  const std::string base = p.pool == kDefaultPool && absl::StartsWith(req.path, "/backends")
                               ? "/backends/"
                               : absl::StrCat("/pools/", p.pool, "/backends/");
  r.headers.emplace_back("Location", absl::StrCat(base, added->backend().id()));
  return r;
}

HttpResponse GetBackend(ControlPlane* cp, const RestApiOptions&, const HttpRequest&,
                        const Params& p) {
  auto b = BackendInPool(cp, p);
  if (!b.ok()) return ErrorResponse(b.status());
  return JsonResponse(200, *b);
}

HttpResponse RemoveBackend(ControlPlane* cp, const RestApiOptions&, const HttpRequest&,
                           const Params& p) {
  if (auto b = BackendInPool(cp, p); !b.ok()) return ErrorResponse(b.status());
  auto removed = cp->RemoveBackend(p.backend_id);
  if (!removed.ok()) return ErrorResponse(removed.status());
  v1::RestDeleteResponse out;
  out.set_id(removed->id() != 0 ? removed->id() : p.backend_id);
  out.set_drained_connections(
      static_cast<uint32_t>(std::min<uint64_t>(removed->drained_connections(), UINT32_MAX)));
  return JsonResponse(200, out);
}

HttpResponse BackendHealth(ControlPlane* cp, const RestApiOptions&, const HttpRequest&,
                           const Params& p) {
  if (auto b = BackendInPool(cp, p); !b.ok()) return ErrorResponse(b.status());
  auto h = cp->GetBackendHealth(p.backend_id);
  if (!h.ok()) return ErrorResponse(h.status());
  return JsonResponse(200, *h);
}

HttpResponse GetAlgorithm(ControlPlane* cp, const RestApiOptions&, const HttpRequest&,
                          const Params& p) {
  auto pool = FindPool(cp, p.pool);
  if (!pool.ok()) {
    if (p.pool != kDefaultPool) return ErrorResponse(pool.status());
    v1::Pool empty;  // the default pool before first use: the defaults
    return JsonResponse(200, ToRestAlgorithm(empty));
  }
  return JsonResponse(200, ToRestAlgorithm(*pool));
}

HttpResponse SetAlgorithm(ControlPlane* cp, const RestApiOptions&, const HttpRequest& req,
                          const Params& p) {
  v1::RestAlgorithmConfig in;
  if (auto s = ParseBody(req, &in); !s.ok()) return ErrorResponse(s);
  if (in.algorithm().empty()) {
    return ErrorResponse(absl::InvalidArgumentError(
        absl::StrCat("algorithm: required, one of ", AlgorithmChoices())));
  }
  v1::Algorithm algorithm = v1::ALGORITHM_UNSPECIFIED;
  for (const AlgorithmName& n : kAlgorithmNames) {
    if (in.algorithm() == n.name) algorithm = n.algorithm;
  }
  if (algorithm == v1::ALGORITHM_UNSPECIFIED) {
    return ErrorResponse(absl::InvalidArgumentError(
        absl::StrCat("algorithm: unknown algorithm \"", QuoteBounded(in.algorithm()),
                     "\", expected one of ", AlgorithmChoices())));
  }
  const int64_t ttl = in.has_sticky_ttl_seconds() ? int64_t{in.sticky_ttl_seconds()}
                                                  : int64_t{kDefaultStickyTtlSeconds};
  if (ttl <= 0 || ttl > std::numeric_limits<uint32_t>::max()) {
    return ErrorResponse(absl::InvalidArgumentError(
        absl::StrCat("sticky_ttl_seconds: ", ttl, " is not a positive number of seconds (1..",
                     std::numeric_limits<uint32_t>::max(), ")")));
  }
  auto pool =
      cp->SetPoolAlgorithm(p.pool, algorithm, in.sticky_sessions(), static_cast<uint32_t>(ttl));
  if (!pool.ok()) return ErrorResponse(pool.status());
  return JsonResponse(200, ToRestAlgorithm(*pool));
}

HttpResponse ListPools(ControlPlane* cp, const RestApiOptions&, const HttpRequest&, const Params&) {
  v1::ListPoolsResponse resp;
  const v1::Config c = cp->config();
  for (const v1::Pool& p : c.pools()) *resp.add_pools() = p;
  return JsonResponse(200, resp);
}

HttpResponse CreatePool(ControlPlane* cp, const RestApiOptions&, const HttpRequest& req,
                        const Params&) {
  v1::Pool in;
  if (auto s = ParseBody(req, &in); !s.ok()) return ErrorResponse(s);
  if (auto s = CheckPoolName(in.name()); !s.ok()) {
    return ErrorResponse(absl::InvalidArgumentError(absl::StrCat(
        "name: \"", QuoteBounded(in.name()), "\" is not a pool name ([A-Za-z0-9_.:-]{1,64})")));
  }
  auto created = cp->CreatePool(in);
  if (!created.ok()) return ErrorResponse(created.status());
  HttpResponse r = JsonResponse(201, *created);
  r.headers.emplace_back("Location", absl::StrCat("/pools/", created->name()));
  return r;
}

HttpResponse GetPool(ControlPlane* cp, const RestApiOptions&, const HttpRequest&, const Params& p) {
  auto pool = FindPool(cp, p.pool);
  if (!pool.ok()) return ErrorResponse(pool.status());
  return JsonResponse(200, *pool);
}

HttpResponse DeletePool(ControlPlane* cp, const RestApiOptions&, const HttpRequest&,
                        const Params& p) {
  if (auto s = cp->DeletePool(p.pool); !s.ok()) return ErrorResponse(s);
  v1::DeletePoolResponse out;
  out.set_name(p.pool);
  return JsonResponse(200, out);
}

HttpResponse ListVips(ControlPlane* cp, const RestApiOptions&, const HttpRequest&, const Params&) {
  v1::ListVipsResponse resp;
  for (v1::VipStatus& v : cp->ListVips()) *resp.add_vips() = std::move(v);
  return JsonResponse(200, resp);
}

HttpResponse CreateVip(ControlPlane* cp, const RestApiOptions&, const HttpRequest& req,
                       const Params&) {
  v1::Vip in;
  if (auto s = ParseBody(req, &in); !s.ok()) return ErrorResponse(s);
  auto created = cp->CreateVip(in);
  if (!created.ok()) return ErrorResponse(created.status());
  HttpResponse r = JsonResponse(201, *created);
  r.headers.emplace_back("Location", absl::StrCat("/vips/", created->id()));
  return r;
}

HttpResponse GetVip(ControlPlane* cp, const RestApiOptions&, const HttpRequest&, const Params& p) {
  for (const v1::VipStatus& v : cp->ListVips()) {
    if (v.vip().id() == p.vip_id) return JsonResponse(200, v);
  }
  return ErrorResponse(absl::NotFoundError(absl::StrCat("vip_id: VIP ", p.vip_id, " not found")));
}

HttpResponse DeleteVip(ControlPlane* cp, const RestApiOptions&, const HttpRequest&,
                       const Params& p) {
  if (auto s = cp->DeleteVip(p.vip_id); !s.ok()) return ErrorResponse(s);
  v1::DeleteVipResponse out;
  out.set_id(p.vip_id);
  return JsonResponse(200, out);
}

HttpResponse GetNode(ControlPlane* cp, const RestApiOptions&, const HttpRequest&, const Params&) {
  return JsonResponse(200, cp->config().node());
}

HttpResponse SetNode(ControlPlane* cp, const RestApiOptions&, const HttpRequest& req,
                     const Params&) {
  v1::Node in;
  if (auto s = ParseBody(req, &in); !s.ok()) return ErrorResponse(s);
  auto node = cp->SetNode(in);
  if (!node.ok()) return ErrorResponse(node.status());
  return JsonResponse(200, *node);
}

HttpResponse Metrics(ControlPlane* cp, const RestApiOptions& o, const HttpRequest&, const Params&) {
  HttpResponse r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = o.render_metrics ? o.render_metrics() : RenderMetrics(*cp, MetricsInputs());
  return r;
}

HttpResponse Healthz(ControlPlane*, const RestApiOptions&, const HttpRequest&, const Params&) {
  HttpResponse r;
  r.body = "{\"status\":\"ok\"}\n";
  return r;
}

const std::vector<Route>& Routes() {
  static const auto* routes = new std::vector<Route>{
      {"GET", {"backends"}, ListBackends},
      {"POST", {"backends"}, AddBackend},
      {"GET", {"backends", "{backend_id}"}, GetBackend},
      {"DELETE", {"backends", "{backend_id}"}, RemoveBackend},
      {"GET", {"backends", "{backend_id}", "health"}, BackendHealth},
      {"GET", {"config", "algorithm"}, GetAlgorithm},
      {"PUT", {"config", "algorithm"}, SetAlgorithm},
      {"GET", {"config", "node"}, GetNode},
      {"PUT", {"config", "node"}, SetNode},
      {"GET", {"pools"}, ListPools},
      {"POST", {"pools"}, CreatePool},
      {"GET", {"pools", "{pool}"}, GetPool},
      {"DELETE", {"pools", "{pool}"}, DeletePool},
      {"GET", {"pools", "{pool}", "algorithm"}, GetAlgorithm},
      {"PUT", {"pools", "{pool}", "algorithm"}, SetAlgorithm},
      {"GET", {"pools", "{pool}", "backends"}, ListBackends},
      {"POST", {"pools", "{pool}", "backends"}, AddBackend},
      {"GET", {"pools", "{pool}", "backends", "{backend_id}"}, GetBackend},
      {"DELETE", {"pools", "{pool}", "backends", "{backend_id}"}, RemoveBackend},
      {"GET", {"pools", "{pool}", "backends", "{backend_id}", "health"}, BackendHealth},
      {"GET", {"vips"}, ListVips},
      {"POST", {"vips"}, CreateVip},
      {"GET", {"vips", "{vip_id}"}, GetVip},
      {"DELETE", {"vips", "{vip_id}"}, DeleteVip},
      {"GET", {"metrics"}, Metrics},
      {"GET", {"healthz"}, Healthz},
  };
  return *routes;
}

bool Matches(const Route& r, const std::vector<std::string>& segments) {
  if (r.pattern.size() != segments.size()) return false;
  for (size_t i = 0; i < segments.size(); ++i) {
    if (r.pattern[i][0] == '{') continue;
    if (r.pattern[i] != segments[i]) return false;
  }
  return true;
}

}  // namespace

int HttpStatusFromCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
      return 409;
    case absl::StatusCode::kFailedPrecondition:
      return 412;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kResourceExhausted:
      return 413;
    default:
      return 500;
  }
}

HttpResponse ErrorResponse(const absl::Status& status, const std::string& field) {
  v1::RestError e;
  e.set_error(std::string(status.message()));
  e.set_field(field.empty() ? FieldOf(status.message()) : field);
  HttpResponse r = JsonResponse(HttpStatusFromCode(status.code()), e);
  if (status.code() == absl::StatusCode::kUnauthenticated) {
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"lb-controlplane\"");
  }
  return r;
}

RestApi::RestApi(ControlPlane* cp, RestApiOptions options)
    : cp_(cp), options_(std::move(options)) {}

HttpResponse RestApi::Handle(const HttpRequest& request) const {
  // Host, Origin, Content-Type and the bearer token, before anything else.
  if (std::optional<AdminRefusal> refused = CheckAdminRequest(request, options_.guard)) {
    HttpResponse r = ErrorResponse(refused->status, refused->field);
    r.status = refused->http_status;
    return r;
  }
  // Segments: "/pools/web/backends/" -> {"pools", "web", "backends"}.
  absl::string_view path = request.path;
  if (path.size() > 1 && absl::EndsWith(path, "/")) path.remove_suffix(1);
  std::vector<std::string> segments;
  for (absl::string_view raw : absl::StrSplit(path.substr(1), '/')) {
    std::string seg;
    if (!PercentDecode(raw, &seg)) {
      return ErrorResponse(absl::InvalidArgumentError(
          absl::StrCat("path: bad percent-encoding in \"", QuoteBounded(raw), "\"")));
    }
    segments.push_back(std::move(seg));
  }
  if (segments.size() == 1 && segments[0].empty()) segments.clear();

  const Route* route = nullptr;
  std::vector<std::string> allowed;
  for (const Route& r : Routes()) {
    if (!Matches(r, segments)) continue;
    allowed.push_back(r.method);
    if (request.method == r.method) route = &r;
  }
  if (allowed.empty()) {
    return ErrorResponse(
        absl::NotFoundError(absl::StrCat("path: no such resource: ", QuoteBounded(request.path))));
  }
  if (route == nullptr) {
    if (std::find(allowed.begin(), allowed.end(), "GET") != allowed.end())
      allowed.push_back("HEAD");
    HttpResponse r = ErrorResponse(absl::InvalidArgumentError(
        absl::StrCat("method: ", QuoteBounded(request.method), " is not allowed on ",
                     QuoteBounded(request.path), "; allowed: ", absl::StrJoin(allowed, ", "))));
    r.status = 405;
    r.headers.emplace_back("Allow", absl::StrJoin(allowed, ", "));
    return r;
  }

  Params params;
  for (size_t i = 0; i < segments.size(); ++i) {
    const std::string& pat = route->pattern[i];
    if (pat == "{pool}") {
      // Like an id: a segment that cannot be a pool name names no pool.
      if (auto s = CheckPoolName(segments[i]); !s.ok()) {
        return ErrorResponse(absl::NotFoundError(s.message()));
      }
      params.pool = segments[i];
    } else if (pat == "{backend_id}") {
      auto id = ParseId(segments[i], "backend_id", "backend");
      if (!id.ok()) return ErrorResponse(id.status());
      params.backend_id = *id;
    } else if (pat == "{vip_id}") {
      auto id = ParseId(segments[i], "vip_id", "VIP");
      if (!id.ok()) return ErrorResponse(id.status());
      params.vip_id = *id;
    }
  }
  return route->fn(cp_, options_, request, params);
}

absl::StatusOr<std::unique_ptr<HttpServer>> StartRestServer(const HttpServerOptions& options,
                                                            const RestApiOptions& rest,
                                                            ControlPlane* cp) {
  auto addr = ParseListenAddress(options.listen, "http listen address");
  if (!addr.ok()) return addr.status();
  if (!addr->loopback && rest.guard.bearer_token.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "http listen address ", options.listen,
        " is not loopback: requests over REST must be authenticated, configure a bearer token"));
  }
  RestApiOptions with_listener = rest;
  with_listener.guard.loopback_listener = addr->loopback;
  with_listener.guard.listen_host = addr->host;
  auto api = std::make_shared<RestApi>(cp, std::move(with_listener));
  return HttpServer::Start(options, [api](const HttpRequest& r) { return api->Handle(r); });
}

}  // namespace lb
