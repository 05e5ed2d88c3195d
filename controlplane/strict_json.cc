#include "controlplane/strict_json.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "controlplane/config.h"

namespace lb {
namespace {

// The longest field path or parser message echoed in an error.
constexpr size_t kMaxEchoedPath = 4 * kMaxQuotedBytes;

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
  // protobuf's message may quote what the client sent: bound both parts.
  if (field.size() > kMaxEchoedPath) field = absl::StrCat(field.substr(0, kMaxEchoedPath), "...");
  if (rest.size() > kMaxEchoedPath) rest = absl::StrCat(rest.substr(0, kMaxEchoedPath), "...");
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

  // After an array element or object member: ',' (another follows) or
  // `close` (the container ends); anything else is the caller's syntax error.
  enum class After { kMore, kEnd, kBad };
  After AfterElement(char close) {
    SkipWs();
    if (pos_ < s_.size() && (s_[pos_] == ',' || s_[pos_] == close)) {
      return s_[pos_++] == ',' ? After::kMore : After::kEnd;
    }
    return After::kBad;
  }

  void SkipWs() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }

  // Keys are echoed in error messages, so at most kMaxQuotedBytes of each
  // (C-escaped, "..." when cut): a megabyte key never comes back whole.
  static std::string Join(const std::string& path, absl::string_view key) {
    // Spaces escaped too, so that the message's "field: " prefix names the
    // whole key (a key with spaces was cut short: fuzz/rest_json_fuzz.cc).
    // An empty key is shown as "" so the message still names it.
    const std::string shown = key.empty()
                                  ? std::string("\"\"")
                                  : absl::StrReplaceAll(QuoteBounded(key), {{" ", "\\x20"}});
    return path.empty() ? shown : absl::StrCat(path, ".", shown);
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
          const After a = AfterElement(']');
          if (a == After::kMore) continue;
          if (a == After::kEnd) return absl::OkStatus();
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
        const After a = AfterElement(']');
        if (a == After::kMore) continue;
        if (a == After::kEnd) return absl::OkStatus();
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
      const After a = AfterElement('}');
      if (a == After::kMore) continue;
      if (a == After::kEnd) return absl::OkStatus();
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

}  // namespace

absl::Status ParseStrictJson(absl::string_view body, google::protobuf::Message* m) {
  if (absl::StripAsciiWhitespace(body).empty()) {
    return absl::InvalidArgumentError("body: expected a JSON object, got an empty body");
  }
  if (auto s = StrictJsonCheck(body).Check(m->GetDescriptor()); !s.ok()) return s;
  google::protobuf::util::JsonParseOptions o;
  o.ignore_unknown_fields = false;
  auto s = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(body.data(), body.size()), m, o);
  if (!s.ok()) return JsonParseError(std::string(s.message()));
  return absl::OkStatus();
}

std::string FieldOfError(absl::string_view message) {
  size_t colon = message.find(": ");
  if (colon == absl::string_view::npos) return "";
  // Any key the client sent may be the field (an unknown key "addre{ss"
  // too, found by fuzz/rest_json_fuzz.cc): visible ASCII without spaces,
  // as QuoteBounded leaves it.
  absl::string_view f = message.substr(0, colon);
  const bool visible = std::all_of(f.begin(), f.end(), [](char c) { return c > 0x20 && c < 0x7f; });
  return !f.empty() && visible ? std::string(f) : "";
}

}  // namespace lb
