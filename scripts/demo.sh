#!/usr/bin/env bash
# The demo: one command on a fresh machine.
#
# Installs what is missing, builds, sets up hugepages (or falls back), starts
# lb-controlplane with a VIP and three backends, replays 2,000 client flows
# through lb-dataplane (DPDK, net_pcap port), and shows:
#   1. how the flows spread over the backends (weighted Maglev),
#   2. a backend taken down: only its flows move,
#   3. the backend back: every flow returns to where it was,
#   4. a broken config refused by name while the running table stays.
# Everything it starts or creates is removed on exit, Ctrl-C or failure, and
# it exits non-zero if any of the four outcomes above is not what it says.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Preparing: packages, build, hugepages"
bash scripts/install-deps.sh
BUILD=${BUILD_DIR:-build}
[[ -f "$BUILD/build.ninja" ]] || meson setup "$BUILD" --buildtype=debugoptimized >/dev/null
ninja -C "$BUILD" controlplane/lb-controlplane dataplane/l4/lb-dataplane >/dev/null
HUGE_LINE=$(bash scripts/hugepages.sh)
echo "$HUGE_LINE"

WORK=$(mktemp -d /dev/shm/lb-demo.XXXXXX)
if [[ "$HUGE_LINE" == *"at /dev/hugepages"* ]]; then
  REGIONS=/dev/hugepages
  EAL_MEM=(--in-memory -m 256)
else
  REGIONS=$WORK
  EAL_MEM=(--no-huge -m 256)
fi
TABLES=$REGIONS/lb-demo-$$-tables
STATS=$REGIONS/lb-demo-$$-stats
CP_PID=""
cleanup() {
  [[ -n "$CP_PID" ]] && kill "$CP_PID" 2>/dev/null && wait "$CP_PID" 2>/dev/null || true
  rm -f "$TABLES" "$STATS"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

write_config() {  # $1 = state of backend 10.1.0.2
  cat > "$WORK/lb.textproto" <<CFG
# VIP 198.51.100.10:80/tcp -> pool "web", weighted Maglev, IP-in-IP from 192.0.2.1
node { tunnel_source_ipv4: "192.0.2.1" }
pools {
  name: "web"
  algorithm: ALGORITHM_MAGLEV
  backends { address: "10.1.0.1" port: 80 weight: 1 }
  backends { address: "10.1.0.2" port: 80 weight: 1 state: $1 }
  backends { address: "10.1.0.3" port: 80 weight: 2 }
}
vips { address: "198.51.100.10" protocol: PROTOCOL_TCP port: 80 pool: "web" }
CFG
}

wait_generation() {  # $1 = generation to wait for in the control plane's log
  for _ in $(seq 100); do
    grep -q "published generation=$1 " "$WORK/cp.log" && return 0
    sleep 0.1
  done
  echo "lb-controlplane did not publish generation $1:"; cat "$WORK/cp.log"; exit 1
}

replay() {  # $1 = label
  local out="$WORK/out-$1.pcap"
  "$BUILD/dataplane/l4/lb-dataplane" -l 0 "${EAL_MEM[@]}" --no-pci --log-level lib.eal:error \
      --vdev="net_pcap0,rx_pcap=$WORK/in.pcap,tx_pcap=$out" -- \
      --table_region "$TABLES" --stats_region "$STATS" --ipv4 192.0.2.2 \
      --gateway_mac 02:00:00:00:00:01 --idle_exit_ms 300 --conn_table_size 65536 \
      2>/dev/null | grep -E "stopped" | sed 's/^/  /'
}

say "Starting lb-controlplane: VIP 198.51.100.10:80 -> 10.1.0.1 (w1), 10.1.0.2 (w1), 10.1.0.3 (w2)"
write_config BACKEND_STATE_ACTIVE
"$BUILD/controlplane/lb-controlplane" --config "$WORK/lb.textproto" --table_region "$TABLES" \
    --stats_region "$STATS" --max_vips 16 --max_backends 64 --state_dir "$WORK/state" \
    --grpc_listen= --http_listen= >"$WORK/cp.log" 2>&1 &
CP_PID=$!
wait_generation 1
grep -E "^(published|vip)" "$WORK/cp.log" | sed 's/^/  /'

say "Client traffic: 2,000 TCP flows x 3 packets through lb-dataplane"
/usr/bin/python3 scripts/demo_pcap.py gen "$WORK/in.pcap" 198.51.100.10 80 2000 3
replay first
/usr/bin/python3 scripts/demo_pcap.py read "$WORK/out-first.pcap" "" "$WORK/first.json"

say "Backend 10.1.0.2 goes down (config change + SIGHUP): only its flows move"
write_config BACKEND_STATE_DOWN
kill -HUP "$CP_PID"
wait_generation 2
replay down
/usr/bin/python3 scripts/demo_pcap.py read "$WORK/out-down.pcap" "$WORK/first.json" \
  | tee "$WORK/down.txt"
# Only the downed backend's flows may move, and all of them must.
grep -Eq "kept their backend, ([0-9]+) moved \(\1 of them were on a backend that is now down\)" \
  "$WORK/down.txt" || { echo "demo: flows moved that should not have"; exit 1; }

say "Backend 10.1.0.2 comes back: consistent hashing returns every flow to its backend"
write_config BACKEND_STATE_ACTIVE
kill -HUP "$CP_PID"
wait_generation 3
replay back
/usr/bin/python3 scripts/demo_pcap.py read "$WORK/out-back.pcap" "$WORK/first.json" \
  | tee "$WORK/back.txt"
grep -q "2000 flows kept their backend, 0 moved" "$WORK/back.txt" \
  || { echo "demo: flows did not return to their backends"; exit 1; }

say "A broken config is refused by name; the running table stays at generation 3"
sed -i 's/10.1.0.3/10.1.0.300/' "$WORK/lb.textproto"
kill -HUP "$CP_PID"
for _ in $(seq 50); do grep -q "10.1.0.300" "$WORK/cp.log" && break; sleep 0.1; done
grep -E "10.1.0.300|keeping" "$WORK/cp.log" | sed 's/^/  /'
grep -q 'pools\[0\].backends\[2\].address.*keeping generation 3' "$WORK/cp.log" \
  || { echo "demo: the broken config was not refused by name"; exit 1; }

say "Done: everything the demo created is being removed"
