// --store: where lb-controlplane keeps its desired state.
//
//   file:///var/lib/lb   the embedded file store in that directory (store.h)
//   etcd://host:port[,host:port...]/prefix
//                        etcd's v3 API at the members host:port (plain
//                        HTTP/2), the state under the key <prefix>/state
//                        (etcd_store.h); several members of one cluster are
//                        separated by commas (up to 16; the client fails
//                        over between them, etcd_client.h); host is a name,
//                        an IPv4 address or a bracketed IPv6 address; the
//                        prefix is one or more path segments of [A-Za-z0-9._-]
//   etcds://...          the same over TLS (--etcd_ca, --etcd_cert, --etcd_key)
//
// Pure parsing (unit-tested in tests/cp/store_url_test.cc). Errors are
// InvalidArgument naming what is wrong; the caller prefixes the flag.
#ifndef LB_CONTROLPLANE_STORE_URL_H_
#define LB_CONTROLPLANE_STORE_URL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lb {

struct StoreUrl {
  enum class Kind { kFile, kEtcd };
  Kind kind = Kind::kFile;
  struct Endpoint {
    std::string host;  // without brackets
    uint16_t port = 0;
  };
  std::string dir;                  // kFile: the state directory
  std::vector<Endpoint> endpoints;  // kEtcd: at least one, in the URL's order
  bool tls = false;                 // kEtcd: etcds://
  std::string prefix;               // kEtcd: "/lb/prod" (leading '/', no trailing '/')

  // "host:port" of endpoint i for a gRPC target ("[::1]:2379" for IPv6).
  std::string Target(size_t i) const;
  // Every endpoint, comma-separated ("h1:2379,h2:2379").
  std::string Targets() const;
  // The URL back: "etcd://h1:2379,h2:2379/lb" (or etcds://).
  std::string Describe() const;
  // The key the state lives under: prefix + "/state".
  std::string StateKey() const;
};

absl::StatusOr<StoreUrl> ParseStoreUrl(absl::string_view url);

}  // namespace lb

#endif  // LB_CONTROLPLANE_STORE_URL_H_
