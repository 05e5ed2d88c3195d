#!/usr/bin/env bash
# Sets up 2 MiB hugepages for DPDK and the shared table/stats regions, or says
# clearly that it falls back (EAL --no-huge, regions on /dev/shm tmpfs).
#
#   scripts/hugepages.sh [pages]     (default 256 = 512 MiB)
#
# Prints one line: "hugepages: <n> x 2MiB at /dev/hugepages" or
# "hugepages: unavailable (<why>); falling back to --no-huge and /dev/shm".
# Exit status is 0 either way: every caller must work in both modes.
set -uo pipefail

PAGES="${1:-256}"
MNT=/dev/hugepages

fallback() {
  echo "hugepages: unavailable ($1); falling back to --no-huge and /dev/shm"
  exit 0
}

[[ -w /proc/sys/vm/nr_hugepages ]] || fallback "/proc/sys/vm/nr_hugepages not writable"
cur=$(cat /proc/sys/vm/nr_hugepages)
if (( cur < PAGES )); then
  echo "$PAGES" > /proc/sys/vm/nr_hugepages 2>/dev/null || fallback "cannot reserve $PAGES pages"
fi
got=$(cat /proc/sys/vm/nr_hugepages)
(( got > 0 )) || fallback "kernel granted 0 pages"
mkdir -p "$MNT" 2>/dev/null || fallback "cannot create $MNT"
if ! grep -qs " $MNT hugetlbfs " /proc/mounts; then
  mount -t hugetlbfs nodev "$MNT" 2>/dev/null || fallback "cannot mount hugetlbfs on $MNT"
fi
echo "hugepages: $got x 2MiB at $MNT ($(grep HugePages_Free /proc/meminfo | awk '{print $2}') free)"
