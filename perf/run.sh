#!/usr/bin/env bash
# Builds and runs one benchmark in a release build (build-perf/).
#
#   perf/run.sh <name> [args...]   name: maglev | l4 | mem | control | e2e | l7 | tls | cluster
#
# Extra arguments go to the benchmark unchanged (e.g. perf/run.sh l4
# --flows=1048576 --scenarios=established).
#
# Sets up build-perf with buildtype=release if it does not exist, builds only
# the benchmark's own target (ninja -j1: the machine is shared), then runs it.
# The benchmark's output goes to stdout unchanged, one line per case (see each
# benchmark's header comment for the format); results belong in perf/RESULTS.md.
# Exit status: the benchmark's; 2 for an unknown or not yet built benchmark.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build-perf"

usage() {
  echo "usage: perf/run.sh <maglev|l4|mem|control|e2e|l7|tls|cluster> [benchmark args...]" >&2
  exit 2
}

not_yet_built() {
  echo "perf/run.sh: benchmark '$1' not yet built" >&2
  exit 2
}

# Configures build-perf once, then builds the given ninja targets.
build() {
  if [[ ! -d "$BUILD" ]]; then
    meson setup "$BUILD" "$ROOT" --buildtype=release >&2
  fi
  ninja -C "$BUILD" -j1 "$@" >&2
}

[[ $# -ge 1 ]] || usage
name="$1"
shift

case "$name" in
  maglev)
    build perf/maglev_bench
    exec "$BUILD/perf/maglev_bench" "$@"
    ;;
  l4)
    # Worker::ProcessBurst over prebuilt mbufs (scenarios: perf/l4_bench.cc).
    # About 20 s on 2 vCPUs; needs ~1.2 GiB of RAM for the 8M-flow table.
    build perf/l4_bench
    exec "$BUILD/perf/l4_bench" "$@"
    ;;
  mem)
    # The connection table's memory pattern without the table: batches of 32
    # chains of dependent random line loads over 1 MiB, 144 MiB (the 1M-flow
    # table) and 1.2 GiB (the 8M-flow table), on THP. A few seconds; read the
    # l4 figures at 1M and 8M against it (perf/mem_probe.cc).
    build perf/mem_probe
    exec "$BUILD/perf/mem_probe" "$@"
    ;;
  control)
    # API call -> every lcore of a real lb-dataplane (net_null port) on the
    # new generation, for 10 and 1,000 backends; then the health checker's
    # CPU cost for 1,000 backends at 1 s against local listeners.
    build perf/control_bench perf/healthcheck_bench dataplane/l4/lb-dataplane
    "$BUILD/perf/control_bench" "$BUILD/dataplane/l4/lb-dataplane" "$@"
    exec "$BUILD/perf/healthcheck_bench"
    ;;
  e2e)
    # HTTP through the VIP vs straight to the backend (wrk in the client
    # namespace of scripts/topology.sh), then lb-dataplane's forwarding rate
    # over dpdk-testpmd macswap on the same af_xdp veth with the same
    # generator (testpmd txonly). Root; about 40 s; see perf/e2e_bench.sh.
    build controlplane/lb-controlplane dataplane/l4/lb-dataplane dataplane/bpf/lb-decap \
      dataplane/bpf/decap.bpf.o
    exec bash "$ROOT/perf/e2e_bench.sh" "$BUILD/controlplane/lb-controlplane" \
      "$BUILD/dataplane/l4/lb-dataplane" "$BUILD/dataplane/bpf/lb-decap" "$@"
    ;;
  l7)
    # lb-l7 beside HAProxy and nginx as reverse proxies of one nginx backend,
    # each pinned to CPU 0, wrk on CPU 1: requests per proxy CPU-second for
    # small answers (7 interleaved lb-l7/HAProxy rounds, median ratio), 16
    # KiB and 1 MiB answers, h2c small answers with h2load (lb-l7 and
    # HAProxy), the p99 each proxy adds at half the saturating rate
    # (perf/latency_client, open loop, interleaved rounds), then bytes per
    # idle connection at 10,000. About 4 min; see perf/l7_bench.sh
    # (L7_ONLY=h1_small or latency for one case). Optional arg: seconds per
    # run. Per-request counts (syscalls, user instructions):
    # bash perf/l7_cost.sh <lb-l7>; kernel-side counts (TCP segments, ACKs,
    # wake-ups, IPIs, user/system us) in a namespace of their own:
    # bash perf/l7_kern.sh <lb-l7> (root).
    build dataplane/l7/lb-l7 perf/latency_client
    exec bash "$ROOT/perf/l7_bench.sh" "$BUILD/dataplane/l7/lb-l7" "$@"
    ;;
  tls)
    # lb-l7 beside HAProxy terminating TLS for one nginx backend, each pinned
    # to CPU 0, the client on CPU 1: full handshakes (ECDSA, RSA), resumed
    # handshakes and HTTPS keep-alive requests per proxy CPU-second, 7
    # interleaved lb-l7/HAProxy rounds per case (median ratio). About
    # 4.5 min; see perf/tls_bench.sh. Optional arg: seconds per run (3).
    # Per-handshake and per-request counts (syscalls, user instructions):
    # bash perf/tls_cost.sh <lb-l7>.
    build dataplane/l7/lb-l7
    exec bash "$ROOT/perf/tls_bench.sh" "$BUILD/dataplane/l7/lb-l7" "$@"
    ;;
  cluster)
    # A change through one of N control planes on one etcd -> every node's
    # table region on the new generation; fingerprints checked equal after
    # the run; then leader health verdicts reaching every node. Args: [nodes=3]
    # [changes=200] [health=40]. About 30 s, root (a network namespace); see
    # perf/cluster_bench.py. Then dataplane death -> route withdrawn at the
    # router: tests/e2e/bgp_test.sh (root; BIRD on a router and three nodes,
    # BFD 5 x 100 ms, kill -9 of one lb-dataplane; the time from the kill to
    # the router's route change as `ip monitor` stamps it), about 25 s more;
    # prints `cluster withdraw_ms=N bfd=on nodes=3`.
    build controlplane/lb-controlplane dataplane/l4/lb-dataplane dataplane/bpf/lb-decap \
      dataplane/bpf/decap.bpf.o controlplane/cli/lbctl
    /usr/bin/python3 "$ROOT/perf/cluster_bench.py" "$BUILD/controlplane/lb-controlplane" "$@"
    out=$(bash "$ROOT/tests/e2e/bgp_test.sh" "$BUILD/controlplane/lb-controlplane" \
      "$BUILD/dataplane/l4/lb-dataplane" "$BUILD/dataplane/bpf/lb-decap" \
      "$BUILD/controlplane/cli/lbctl" 2>&1) || { echo "$out" | tail -40 >&2; exit 1; }
    sed -n 's/^RESULT bgp: nodes=\([0-9]*\) .*withdraw_ms=\([0-9]*\) bfd=on.*/cluster withdraw_ms=\2 bfd=on nodes=\1/p' <<<"$out"
    ;;
  *)
    usage
    ;;
esac
