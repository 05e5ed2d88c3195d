#!/usr/bin/env bash
# The test command: installs what is missing, builds, sets up hugepages (or
# falls back), runs every meson test suite (unit, fixtures, binaries,
# fuzz-seeds), then every fuzz target for a short while (scripts/fuzz.sh, in
# its own clang build; FUZZ_SECONDS, default 10 s each; 0 skips them).
#
#   scripts/test.sh [meson test args...]     e.g. scripts/test.sh --suite unit
#
# Ends with one line "tests: N passed, N failed, N skipped" (each fuzz target
# counts as one test) and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/hugepages.sh

BUILD=${BUILD_DIR:-build}
if [[ ! -f "$BUILD/build.ninja" ]]; then
  meson setup "$BUILD" --buildtype=debugoptimized
fi
ninja -C "$BUILD"

set +e
meson test -C "$BUILD" --print-errorlogs --num-processes "${TEST_JOBS:-2}" "$@"
rc=$?
set -e

# Only with the whole run: a selection (scripts/test.sh --suite unit) skips it.
FUZZ_LOG=$(mktemp)
if (($# == 0)) && ((${FUZZ_SECONDS:-10} > 0)); then
  set +e
  bash scripts/fuzz.sh "${FUZZ_SECONDS:-10}" | tee "$FUZZ_LOG"
  fuzz_rc=${PIPESTATUS[0]}
  if ((fuzz_rc != 0)); then
    rc=1
    # A build that failed before any target ran still counts as a failure.
    grep -q '^fuzz .*FAILED' "$FUZZ_LOG" || echo "fuzz build: FAILED" >>"$FUZZ_LOG"
  fi
  set -e
fi

# One closing line a CI reader understands, from meson's own log.
python3 - "$BUILD/meson-logs/testlog.json" "$FUZZ_LOG" <<'PY'
import json, sys
passed = failed = skipped = 0
with open(sys.argv[2]) as f:
    for line in f:
        if line.startswith("fuzz "):
            if ": ok," in line:
                passed += 1
            else:
                failed += 1
with open(sys.argv[1]) as f:
    for line in f:
        r = json.loads(line)
        res = r.get("result")
        if res in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif res == "SKIP":
            skipped += 1
        else:
            failed += 1
print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
PY
rm -f "$FUZZ_LOG"
exit $rc
