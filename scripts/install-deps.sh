#!/usr/bin/env bash
# Installs every Debian package the build, tests and benchmarks need.
# Idempotent: packages already present are not fetched again, and apt-get
# update runs only when something is missing.
set -euo pipefail

PKGS=(
  # build
  build-essential pkg-config meson ninja-build clang llvm clang-format
  # fuzzing (scripts/fuzz.sh): clang-14 with libFuzzer and the sanitizers
  clang-14 libfuzzer-14-dev libclang-rt-14-dev
  # dataplane
  dpdk dpdk-dev libdpdk-dev libnuma-dev libpcap-dev
  libbpf-dev libxdp-dev bpftool linux-libc-dev
  # common libraries
  libabsl-dev libgflags-dev libgoogle-glog-dev
  libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc
  libgtest-dev libgmock-dev libbenchmark-dev libnghttp2-dev
  libssl-dev openssl  # lb-l7 TLS (OpenSSL 3); openssl req/s_client in tests/l7
  libhttp-parser-dev libre2-dev  # lb-l7: HTTP/1 framing, route regexes
  libhiredis-dev  # lb-l7: the shared sticky store (Redis, async client)
  # tools used by tests
  python3-scapy tcpdump iproute2 iputils-ping ethtool curl
  wrk  # load generator of the end-to-end failover test (tests/e2e)
  nghttp2-client  # h2load: HTTP/2 load in tests/l7/l7_h2_test.py and perf/run.sh l7
  nginx  # backends of the end-to-end tests (scripts/topology.sh)
  haproxy  # the peer proxy of perf/run.sh l7 (perf/l7_bench.sh)
  prometheus  # ships promtool (tests/api/metrics_test.sh)
  testssl.sh  # TLS verdicts on an lb-l7 listener (tests/l7/l7_testssl_test.py)
  etcd-server etcd-client  # the etcd store of lb-controlplane (tests/cluster)
  redis-server  # the shared sticky store of lb-l7 (tests/l7/l7_store_test.py)
  bird2  # BGP: the node and router BIRDs of tests/e2e/bgp_test.sh
  keepalived  # VRRP pair of tests/e2e/vrrp_test.sh
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
