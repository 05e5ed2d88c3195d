#include "controlplane/config_lookup.h"

#include <netinet/in.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "controlplane/config.h"

namespace lb {

std::string Canonical(const std::string& text) {
  auto a = ParseIpAddress(text);
  return a.ok() ? a->text : "";
}

int FindPoolIndex(const v1::Config& c, const std::string& name) {
  for (int i = 0; i < c.pools_size(); ++i) {
    if (c.pools(i).name() == name) return i;
  }
  return -1;
}

int FindVipIndex(const v1::Config& c, uint32_t id) {
  if (id == 0) return -1;
  for (int i = 0; i < c.vips_size(); ++i) {
    if (c.vips(i).id() == id) return i;
  }
  return -1;
}

BackendRef FindBackendRef(const v1::Config& c, uint32_t id) {
  if (id == 0) return {};
  for (int i = 0; i < c.pools_size(); ++i) {
    for (int j = 0; j < c.pools(i).backends_size(); ++j) {
      if (c.pools(i).backends(j).id() == id) return {i, j};
    }
  }
  return {};
}

size_t NumBackends(const v1::Config& c) {
  size_t n = 0;
  for (const v1::Pool& p : c.pools()) n += static_cast<size_t>(p.backends_size());
  return n;
}

bool IsProxy(const v1::Pool& p) { return p.kind() == v1::POOL_KIND_PROXY; }

bool HealthChecked(const v1::Pool& p) {
  switch (p.health_check().kind()) {
    case v1::HEALTH_CHECK_KIND_TCP:
    case v1::HEALTH_CHECK_KIND_HTTP:
    case v1::HEALTH_CHECK_KIND_SCRIPT:
      return true;
    default:
      return false;
  }
}

std::string BackendIdentity(const v1::Pool& p, const v1::Backend& b) {
  std::string a = Canonical(b.address());
  if (a.empty()) a = b.address();
  return IsProxy(p) ? absl::StrCat(a, "|", b.port()) : a;
}

std::string BackendName(const v1::Backend& b) {
  return absl::StrCat(b.address(), ":", b.port(), " (id ", b.id(), ")");
}

uint8_t ProtoNumber(v1::Protocol p) {
  return p == v1::PROTOCOL_TCP ? IPPROTO_TCP : p == v1::PROTOCOL_UDP ? IPPROTO_UDP : 0;
}

std::string VipKeyOf(const v1::Vip& v) {
  auto a = ParseIpAddress(v.address());
  const uint8_t proto = ProtoNumber(v.protocol());
  if (!a.ok() || proto == 0 || v.port() > 65535) return "";
  return VipKey(*a, proto, static_cast<uint16_t>(v.port()));
}

std::string BackendPath(int pool, int backend) {
  return absl::StrCat("pools[", pool, "].backends[", backend, "]");
}

absl::Status Rename(const absl::Status& st, const Renames& renames) {
  if (st.ok() || renames.empty()) return st;
  std::string msg(st.message());
  for (const auto& [from, to] : renames) msg = absl::StrReplaceAll(msg, {{from, to}});
  return absl::Status(st.code(), msg);
}

std::string Rfc3339(uint64_t unix_ms) {
  if (unix_ms == 0) return "";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ",
                          absl::FromUnixMillis(static_cast<int64_t>(unix_ms)), absl::UTCTimeZone());
}

}  // namespace lb
