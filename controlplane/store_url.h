// --store: where lb-controlplane keeps its desired state.
//
//   file:///var/lib/lb   the embedded file store in that directory (store.h)
//   etcd://host:port/prefix
//                        etcd's v3 API at host:port (plain HTTP/2, no TLS),
//                        the state under the key <prefix>/state
//                        (etcd_store.h); host is a name, an IPv4 address or
//                        a bracketed IPv6 address; the prefix is one or more
//                        path segments of [A-Za-z0-9._-]
//
// Pure parsing (unit-tested in tests/cp/store_url_test.cc). Errors are
// InvalidArgument naming what is wrong; the caller prefixes the flag.
#ifndef LB_CONTROLPLANE_STORE_URL_H_
#define LB_CONTROLPLANE_STORE_URL_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lb {

struct StoreUrl {
  enum class Kind { kFile, kEtcd };
  Kind kind = Kind::kFile;
  std::string dir;     // kFile: the state directory
  std::string host;    // kEtcd: without brackets
  uint16_t port = 0;   // kEtcd
  std::string prefix;  // kEtcd: "/lb/prod" (leading '/', no trailing '/')

  // "host:port" for a gRPC target ("[::1]:2379" for IPv6).
  std::string Target() const;
  // The key the state lives under: prefix + "/state".
  std::string StateKey() const;
};

absl::StatusOr<StoreUrl> ParseStoreUrl(absl::string_view url);

}  // namespace lb

#endif  // LB_CONTROLPLANE_STORE_URL_H_
