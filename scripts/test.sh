#!/usr/bin/env bash
# The test command: installs what is missing, builds, sets up hugepages (or
# falls back) and runs every meson test suite (unit, fixtures, binaries).
#
#   scripts/test.sh [meson test args...]     e.g. scripts/test.sh --suite unit
#
# Ends with one line "N passed, N failed" and exits non-zero on any failure.
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

# One closing line a CI reader understands, from meson's own log.
python3 - "$BUILD/meson-logs/testlog.json" <<'PY'
import json, sys
passed = failed = skipped = 0
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
exit $rc
