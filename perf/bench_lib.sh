# shellcheck shell=bash
# Shared by the proxy benchmarks (perf/l7_bench.sh, perf/tls_bench.sh):
# bench_setup NAME TOOL... checks that each TOOL is installed (exit 2 naming
# it), makes the temp dir $WORK and arranges that, on exit, every pid in
# PIDS and in $WORK/*.pid is killed and $WORK removed.

bench_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in "$WORK"/*.pid; do [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null || true; done
  sleep 0.3
  rm -rf "$WORK"
}

bench_setup() {
  local name=$1 t
  shift
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "$name: $t missing (scripts/install-deps.sh)" >&2; exit 2; }
  done
  WORK=$(mktemp -d "/tmp/$name.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
}
