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
# Prints one line per target, "fuzz <name>: ok, N execs in S s" or
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
failed=0
for t in "${TARGETS[@]}"; do
  dir="$WORK/$t"
  mkdir -p "$dir/corpus"
  cp -r "fuzz/corpus/$t/." "$dir/corpus/"
  limit=()
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
    echo "fuzz $t: ok, ${execs:-0} execs in ${secs} s"
  else
    failed=$((failed + 1))
    crash=$(ls "$dir"/crash-* "$dir"/timeout-* "$dir"/leak-* "$dir"/oom-* 2>/dev/null | head -1)
    echo "fuzz $t: FAILED (exit $rc) after ${execs:-?} execs; input ${crash:-none}, log $dir/log"
    grep -m1 -E 'ERROR: |runtime error|deadly signal' "$dir/log" || true
  fi
done
if ((failed == 0)); then rm -rf "$WORK"; fi
exit $((failed > 0))
