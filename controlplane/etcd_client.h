// What etcd_store.cc and leader.cc share to reach an etcd cluster: one gRPC
// channel per member, plain or TLS, and the failover rule.
//
// Members: the --store URL lists one or more endpoints of one cluster
// (store_url.h). A caller uses one member at a time (EtcdCursor). A call
// that gets no answer from it (UNAVAILABLE: connection refused or reset,
// TLS handshake failed, "etcdserver: no leader"; DEADLINE_EXCEEDED) is
// retried on the next member, each attempt with its own deadline, until
// every member was tried once; the member that answered becomes the current
// one. Any other gRPC error is etcd's answer and is not retried. Every
// member serves the whole key space (reads are linearizable, through the
// raft leader), so which member answers does not change the result.
//
// TLS (etcds://): the server's certificate is verified against --etcd_ca
// (the system roots when empty) for the endpoint's host name or address;
// --etcd_cert/--etcd_key present a client certificate, for an etcd started
// with --client-cert-auth --trusted-ca-file. The files are read once at
// start; errors name the flag.
#ifndef LB_CONTROLPLANE_ETCD_CLIENT_H_
#define LB_CONTROLPLANE_ETCD_CLIENT_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "controlplane/store_url.h"
#include "grpcpp/grpcpp.h"

namespace lb {

// PEM contents (not paths).
struct EtcdTls {
  std::string ca_pem;    // empty: the system roots
  std::string cert_pem;  // with key_pem: the client certificate
  std::string key_pem;
};

// Reads the files for `url`. Plain etcd:// with any of them set, a cert
// without a key (or the reverse), an unreadable or non-PEM file: an
// InvalidArgument naming the flag.
absl::StatusOr<EtcdTls> LoadEtcdTls(const StoreUrl& url, const std::string& ca_file,
                                    const std::string& cert_file, const std::string& key_file);

// A channel of its own to member `i` (local subchannel pool: after a member
// was away, a new channel connects at once instead of waiting out gRPC's
// reconnect backoff), keep-alive pings so a stream on a member that
// vanished without a FIN/RST ends.
std::shared_ptr<grpc::Channel> NewEtcdChannel(const StoreUrl& url, size_t i, const EtcdTls& tls);

// True for a failure that may be a member's alone (try the next one).
bool EtcdRetryOnNext(const grpc::Status& s);

// Which member a caller talks to. Not thread-safe: one per thread.
class EtcdCursor {
 public:
  EtcdCursor(const StoreUrl& url, const EtcdTls& tls) : url_(url), tls_(tls) {}
  size_t size() const { return url_.endpoints.size(); }
  size_t current() const { return current_; }
  std::string Target() const { return url_.Target(current_); }
  // A channel to the current member, created on first use and after Next.
  std::shared_ptr<grpc::Channel> Channel();
  // Moves to the following member (wrapping) and drops the channel.
  void Next();

 private:
  const StoreUrl url_;
  const EtcdTls tls_;
  size_t current_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace lb

#endif  // LB_CONTROLPLANE_ETCD_CLIENT_H_
