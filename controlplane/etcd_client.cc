#include "controlplane/etcd_client.h"

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace lb {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& flag, const std::string& path,
                                    const char* want) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string pem = ss.str();
  if (!absl::StrContains(pem, "-----BEGIN ") || !absl::StrContains(pem, want)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path, " is not a PEM file with a ", want));
  }
  return pem;
}

}  // namespace

absl::StatusOr<EtcdTls> LoadEtcdTls(const StoreUrl& url, const std::string& ca_file,
                                    const std::string& cert_file, const std::string& key_file) {
  EtcdTls tls;
  if (!url.tls) {
    for (const auto& [flag, v] : {std::pair<const char*, const std::string&>{"--etcd_ca", ca_file},
                                  {"--etcd_cert", cert_file},
                                  {"--etcd_key", key_file}}) {
      if (!v.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            flag, ": TLS files need an etcds:// store (--store is ", url.Describe(), ")"));
      }
    }
    return tls;
  }
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError(cert_file.empty() ? "--etcd_key: given without --etcd_cert"
                                                        : "--etcd_cert: given without --etcd_key");
  }
  if (!ca_file.empty()) {
    auto pem = ReadPem("--etcd_ca", ca_file, "CERTIFICATE");
    if (!pem.ok()) return pem.status();
    tls.ca_pem = *std::move(pem);
  }
  if (!cert_file.empty()) {
    auto cert = ReadPem("--etcd_cert", cert_file, "CERTIFICATE");
    if (!cert.ok()) return cert.status();
    auto key = ReadPem("--etcd_key", key_file, "PRIVATE KEY");
    if (!key.ok()) return key.status();
    tls.cert_pem = *std::move(cert);
    tls.key_pem = *std::move(key);
  }
  return tls;
}

std::shared_ptr<grpc::Channel> NewEtcdChannel(const StoreUrl& url, size_t i, const EtcdTls& tls) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // A watch on a member that vanished without a FIN/RST (a partition, a
  // frozen host) would wait forever: ping the connection, and drop it when
  // the member does not answer (etcd accepts pings every 5 s and more
  // rarely: --grpc-keepalive-min-time).
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (url.tls) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = tls.ca_pem;
    o.pem_private_key = tls.key_pem;
    o.pem_cert_chain = tls.cert_pem;
    creds = grpc::SslCredentials(o);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  return grpc::CreateCustomChannel(url.Target(i), creds, args);
}

bool EtcdRetryOnNext(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

std::shared_ptr<grpc::Channel> EtcdCursor::Channel() {
  if (channel_ == nullptr) channel_ = NewEtcdChannel(url_, current_, tls_);
  return channel_;
}

void EtcdCursor::Next() {
  current_ = (current_ + 1) % url_.endpoints.size();
  channel_.reset();
}

}  // namespace lb
