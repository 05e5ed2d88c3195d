#!/usr/bin/env bash
# Runs every libFuzzer target (fuzz/meson.build) for a while, as the test
# command does after the meson tests, or for a long run.
#
#   scripts/fuzz.sh [seconds] [target...]   default 10 s each, every target
#   FUZZ_FLAGS="-runs=10000000" scripts/fuzz.sh 0 config   a run by count (0: no time limit)
#
# Configures and builds build-fuzz (clang-14, -Dfuzz=true: -fsanitize=
# fuzzer,address,undefined) when needed, building only the fuzz targets and
# what they link. Each target runs on a copy of fuzz/corpus/<name> (the tree's
# corpus never grows) plus fuzz/regressions/<name>; a crash, sanitizer report
# or timeout keeps the work directory and names the input that caused it.
# Runs FUZZ_JOBS targets at once (default: one per CPU). Prints one line per
# target, in target order, "fuzz <name>: ok, N execs in S s" or
# "fuzz <name>: FAILED ...", and exits non-zero if any target failed.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${1:-10}
shift || true
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
CCACHE=$(command -v ccache || true)

if [[ ! -f "$BUILD/build.ninja" ]]; then
  CC="${CCACHE:+ccache }clang-14" CXX="${CCACHE:+ccache }clang++-14" \
    meson setup "$BUILD" --buildtype=debugoptimized -Dfuzz=true -Db_lundef=false >/dev/null
fi

# Every fuzz target meson knows (one line in fuzz/meson.build each).
mapfile -t ALL < <(meson introspect "$BUILD" --targets | python3 -c '
import json, sys
for t in json.load(sys.stdin):
    if t["type"] == "executable" and t["name"].endswith("_fuzz"):
        print(t["name"][:-len("_fuzz")])' | sort)
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=("${ALL[@]}")
NINJA_TARGETS=()
for t in "${TARGETS[@]}"; do NINJA_TARGETS+=("fuzz/${t}_fuzz"); done
ninja -C "$BUILD" "${NINJA_TARGETS[@]}" >"$BUILD/fuzz-build.log" 2>&1 ||
  { tail -n 30 "$BUILD/fuzz-build.log"; exit 1; }

WORK=$(mktemp -d /tmp/lb-fuzz.XXXXXX)
# run_one TARGET: one target's run; its line goes to $WORK/TARGET/result.
run_one() {
  local t=$1 dir="$WORK/$1" limit=() start rc secs execs crash
  mkdir -p "$dir/corpus"
  cp -r "fuzz/corpus/$t/." "$dir/corpus/"
  ((SECONDS_EACH > 0)) && limit=(-max_total_time="$SECONDS_EACH")
  start=$(date +%s)
  set +e
  # shellcheck disable=SC2086  # FUZZ_FLAGS is a list of libFuzzer flags
  "$BUILD/fuzz/${t}_fuzz" "${limit[@]}" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$dir/" ${FUZZ_FLAGS:-} "$dir/corpus" "fuzz/regressions/$t" \
    >"$dir/log" 2>&1
  rc=$?
  set -e
  secs=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
  if ((rc == 0)); then
    echo "fuzz $t: ok, ${execs:-0} execs in ${secs} s" >"$dir/result"
  else
    crash=$(ls "$dir"/crash-* "$dir"/timeout-* "$dir"/leak-* "$dir"/oom-* 2>/dev/null | head -1 || true)
    {
      echo "fuzz $t: FAILED (exit $rc) after ${execs:-?} execs; input ${crash:-none}, log $dir/log"
      grep -m1 -E 'ERROR: |runtime error|deadly signal' "$dir/log" || true
    } >"$dir/result"
  fi
}

# Each libFuzzer process is single-threaded: run one per CPU (FUZZ_JOBS),
# so every target still gets its full time on a core of its own, and print
# the lines in target order.
JOBS=${FUZZ_JOBS:-$(nproc)}
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT  # no fuzzer outlives the script
running=0
for t in "${TARGETS[@]}"; do
  if ((running >= JOBS)); then
    wait -n || true  # run_one's status is its result file
    running=$((running - 1))
  fi
  run_one "$t" &
  running=$((running + 1))
done
wait || true
failed=0
for t in "${TARGETS[@]}"; do
  [[ -f "$WORK/$t/result" ]] || echo "fuzz $t: FAILED (no result; see $WORK/$t)" >"$WORK/$t/result"
  cat "$WORK/$t/result"
  grep -q '^fuzz .*: ok,' "$WORK/$t/result" || failed=$((failed + 1))
done
if ((failed == 0)); then rm -rf "$WORK"; fi
exit $((failed > 0))
