#!/usr/bin/env bash
# End-to-end benchmark (issue 4, Benchmarks): HTTP through the VIP vs straight
# to the backend, and lb-dataplane's forwarding rate vs dpdk-testpmd macswap.
#
#   perf/e2e_bench.sh LB_CONTROLPLANE LB_DATAPLANE LB_DECAP [--duration S] [--rounds N]
#
# Part 1 (scripts/topology.sh, prefix pe<pid>, one backend): the VIP's pool is
# the single backend 10.99.0.21, so both paths end at the same nginx. From the
# client namespace, `wrk -t1 -c16 -d<S>s --latency` against
# http://10.99.0.21/ (direct: client -> router -> backend) and
# http://198.51.100.10/ (via_lb: client -> router -> lb-dataplane (af_xdp) ->
# IP-in-IP -> lb-decap -> nginx, reply straight back), in that order, N rounds.
# Prints per round and path:
#   e2e path=<direct|via_lb> rps=<x> p50_ms=<y> p99_ms=<z>
# and then `e2e_added p50_ms=<via_lb - direct> p99_ms=<...>` (medians).
#
# Part 2: two namespaces pt<pid>-gen and pt<pid>-dut joined by one veth pair
# (eth0 each side). The traffic generator is dpdk-testpmd --forward-mode=txonly
# on af_xdp in -gen (64-byte UDP/IPv4 frames to 198.51.100.10:53, one flow,
# dst MAC = the DUT's eth0), on CPU 1. The device under test runs on af_xdp on
# the DUT's eth0, on CPU 0, in turn: dpdk-testpmd --forward-mode=macswap, then
# lb-dataplane (UDP VIP 198.51.100.10:53 -> one backend, static next-hop MAC
# = the generator's eth0). Each DUT's rate = packets its eth0 transmitted
# (kernel counter /sys/class/net/eth0/statistics/tx_packets, the same
# measurement for both) over a fixed window after a warm-up. N rounds
# alternating testpmd, lb; medians. Prints
#   dataplane_pps dut=<testpmd|lb> round=<k> pps=<x> rx_pps=<y>
#   dataplane_vs_testpmd ratio=<median over rounds of lb pps / testpmd pps>
# or `dataplane_vs_testpmd ratio=unavailable reason=<...>` when a DUT does not
# come up.
# Bounded (about 4 + rounds x (2 x duration + 20) s); every process it starts
# is killed by pid, namespaces removed by name, temp dir deleted, also on
# failure. Must run as root.
set -euo pipefail
CP_BIN=$(realpath "$1")
DP_BIN=$(realpath "$2")
DECAP_BIN=$(realpath "$3")
shift 3
DURATION=5
ROUNDS=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "e2e_bench.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[[ "$DURATION" =~ ^[0-9]+$ && "$ROUNDS" =~ ^[0-9]+$ ]] && ((DURATION >= 1 && DURATION <= 60 && ROUNDS >= 1 && ROUNDS <= 5)) \
  || { echo "e2e_bench.sh: --duration 1..60, --rounds 1..5" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "e2e_bench.sh: must run as root" >&2; exit 1; }
command -v wrk >/dev/null || { echo "e2e_bench.sh: wrk missing" >&2; exit 1; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOPO=$ROOT/scripts/topology.sh
P=pe$$
T=pt$$
VIP4=198.51.100.10

WORK=$(mktemp -d /dev/shm/lb-e2e-bench.XXXXXX)
PIDS=()
stop_pid() {  # TERM, wait up to 3 s, KILL
  local pid=$1
  [[ -z "$pid" ]] && return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  bash "$TOPO" down --prefix "$P" >/dev/null 2>&1 || true
  for n in "$T-gen" "$T-dut"; do
    if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$n"; then
      for pid in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
      ip netns delete "$n" 2>/dev/null || true
    fi
  done
  if ((rc != 0)); then
    for f in "$WORK"/*.log; do [[ -f $f ]] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }; done
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "e2e_bench.sh: $*" >&2; exit 1; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ------------------------------------------------------------ part 1: HTTP
bash "$TOPO" up --prefix "$P" --backends 1 --lbs 1 --lb_decap "$DECAP_BIN" >/dev/null
cat > "$WORK/lb.textproto" <<CFG
node { tunnel_source_ipv4: "10.99.0.11" }
pools {
  name: "web4"
  algorithm: ALGORITHM_MAGLEV
  backends { address: "10.99.0.21" port: 80 }
}
vips { address: "$VIP4" protocol: PROTOCOL_TCP port: 80 pool: "web4" }
CFG
"$CP_BIN" --config "$WORK/lb.textproto" --state_dir "$WORK/state" \
  --table_region "$WORK/tables" --stats_region "$WORK/stats" --max_vips 16 --max_backends 64 \
  --grpc_listen= --http_listen= >"$WORK/cp.log" 2>&1 &
CP_PID=$!
PIDS+=("$CP_PID")
for _ in $(seq 100); do grep -q "published generation=1 " "$WORK/cp.log" && break; sleep 0.1; done
grep -q "published generation=1 " "$WORK/cp.log" || fail "lb-controlplane did not publish"
ip netns exec "$P-lb1" "$DP_BIN" -l 0 --no-huge -m 512 --no-pci --file-prefix "lb-bench-$P" \
  --log-level lib.eal:error --vdev=net_af_xdp0,iface=eth0 -- \
  --table_region "$WORK/tables" --stats_region "$WORK/stats" --wait_for_table_s 5 \
  --ipv4 10.99.0.11 --gateway_ipv4 10.99.0.1 \
  --mtu 1600 --conn_table_size 65536 --sticky_table_size 4096 >"$WORK/dp.log" 2>&1 &
DP_PID=$!
PIDS+=("$DP_PID")
for _ in $(seq 100); do grep -q "] port [0-9]* " "$WORK/dp.log" && break; sleep 0.1; done
grep -q "] port [0-9]* " "$WORK/dp.log" || fail "lb-dataplane (af_xdp) did not start"
for url in "http://10.99.0.21/" "http://$VIP4/"; do
  ok=""
  for _ in $(seq 10); do
    ip netns exec "$P-client" curl -s --max-time 2 -o /dev/null "$url" && { ok=1; break; }
    sleep 0.5
  done
  [[ -n $ok ]] || fail "warm-up: no request to $url succeeded"
done

# wrk_line PATH FILE: the result line from wrk --latency output (ms).
wrk_line() {
  awk -v path="$1" '
    function ms(v) {
      if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
      if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
      if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
      return -1
    }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /^Requests\/sec:/ { rps = $2 }
    /Socket errors:/ { errs = $0 }
    END { printf "e2e path=%s rps=%s p50_ms=%.3f p99_ms=%.3f\n", path, rps, p50, p99
          if (errs != "") printf "# %s %s\n", path, errs }' "$2"
}
for ((r = 1; r <= ROUNDS; r++)); do
  for path in direct via_lb; do
    url=http://10.99.0.21/
    [[ $path == via_lb ]] && url=http://$VIP4/
    ip netns exec "$P-client" timeout $((DURATION + 15)) \
      wrk -t1 -c16 -d"${DURATION}s" --timeout 2s --latency "$url" >"$WORK/wrk-$path-$r.log" 2>&1 \
      || fail "wrk $path failed: $(tail -n 3 "$WORK/wrk-$path-$r.log")"
    wrk_line "$path" "$WORK/wrk-$path-$r.log" | tee -a "$WORK/e2e.txt"
  done
done
get() { grep "^e2e path=$1 " "$WORK/e2e.txt" | sed -n "s/.* $2=\([0-9.]*\).*/\1/p" | median; }
awk -v d50="$(get direct p50_ms)" -v v50="$(get via_lb p50_ms)" -v d99="$(get direct p99_ms)" \
  -v v99="$(get via_lb p99_ms)" 'BEGIN { printf "e2e_added p50_ms=%.3f p99_ms=%.3f\n", v50 - d50, v99 - d99 }'
for pid in "$DP_PID" "$CP_PID"; do stop_pid "$pid"; done
PIDS=()
bash "$TOPO" down --prefix "$P" >/dev/null 2>&1 || true

# ------------------------------------------------------------ part 2: testpmd
command -v dpdk-testpmd >/dev/null || {
  echo "dataplane_vs_testpmd ratio=unavailable reason=dpdk-testpmd_not_installed"; exit 0; }
ip netns add "$T-gen"
ip netns add "$T-dut"
ip link add eth0 netns "$T-gen" type veth peer name eth0 netns "$T-dut"
for n in gen dut; do
  ip netns exec "$T-$n" ip link set lo up
  ip netns exec "$T-$n" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1 >/dev/null
  ip netns exec "$T-$n" ip link set eth0 up
done
GEN_MAC=$(ip netns exec "$T-gen" cat /sys/class/net/eth0/address)
DUT_MAC=$(ip netns exec "$T-dut" cat /sys/class/net/eth0/address)
counter() { ip netns exec "$T-$1" cat "/sys/class/net/eth0/statistics/$2"; }

# The generator, on CPU 1 (main and forwarding lcore on the same CPU; the main
# one only sleeps). Runs until we stop it.
ip netns exec "$T-gen" dpdk-testpmd --lcores '0@1,1@1' --no-huge -m 256 --no-pci \
  --file-prefix "gen-$T" --log-level lib.eal:error --vdev net_af_xdp0,iface=eth0 -- \
  --forward-mode=txonly --port-topology=loop --nb-cores=1 --total-num-mbufs=16384 \
  --eth-peer="0,$DUT_MAC" --tx-ip=172.31.1.2,$VIP4 --tx-udp=40000,53 --txpkts=64 \
  --stats-period 60 --auto-start </dev/null >"$WORK/gen.log" 2>&1 &
GEN_PID=$!
PIDS+=("$GEN_PID")
sleep 3
kill -0 "$GEN_PID" 2>/dev/null || {
  echo "dataplane_vs_testpmd ratio=unavailable reason=testpmd_txonly_generator_did_not_start"; exit 0; }

cat > "$WORK/udp.textproto" <<CFG
node { tunnel_source_ipv4: "10.98.0.2" }
pools {
  name: "udp"
  algorithm: ALGORITHM_MAGLEV
  backends { address: "10.98.0.21" port: 53 }
}
vips { address: "$VIP4" protocol: PROTOCOL_UDP port: 53 pool: "udp" }
CFG
"$CP_BIN" --config "$WORK/udp.textproto" --state_dir "$WORK/state2" \
  --table_region "$WORK/tables2" --stats_region "$WORK/stats2" --max_vips 16 --max_backends 64 \
  --grpc_listen= --http_listen= >"$WORK/cp2.log" 2>&1 &
CP2_PID=$!
PIDS+=("$CP2_PID")
for _ in $(seq 100); do grep -q "published generation=1 " "$WORK/cp2.log" && break; sleep 0.1; done
grep -q "published generation=1 " "$WORK/cp2.log" || fail "lb-controlplane (udp) did not publish"

# run_dut NAME ROUND: start the DUT on CPU 0, warm up 2 s, count DURATION s.
run_dut() {
  local name=$1 r=$2 log="$WORK/dut-$1-$2.log" pid
  if [[ $name == testpmd ]]; then
    ip netns exec "$T-dut" dpdk-testpmd --lcores '0@0,1@0' --no-huge -m 256 --no-pci \
      --file-prefix "dut-$T" --log-level lib.eal:error --vdev net_af_xdp0,iface=eth0 -- \
      --forward-mode=macswap --port-topology=loop --nb-cores=1 --total-num-mbufs=16384 \
      --stats-period 60 --auto-start </dev/null >"$log" 2>&1 &
  else
    ip netns exec "$T-dut" "$DP_BIN" -l 0 --no-huge -m 256 --no-pci --file-prefix "dut-$T" \
      --log-level lib.eal:error --vdev=net_af_xdp0,iface=eth0 -- \
      --table_region "$WORK/tables2" --stats_region "$WORK/stats2" --wait_for_table_s 5 \
      --ipv4 10.98.0.2 --gateway_mac "$GEN_MAC" --mtu 1500 \
      --conn_table_size 65536 --sticky_table_size 4096 >"$log" 2>&1 &
  fi
  pid=$!
  PIDS+=("$pid")
  sleep 2
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "# $name did not start: $(tail -n 2 "$log" | tr '\n' ' ')"
    return 1
  fi
  local tx0 rx0 gtx0 t0 tx1 rx1 gtx1 t1
  tx0=$(counter dut tx_packets); rx0=$(counter dut rx_packets); gtx0=$(counter gen tx_packets)
  t0=$(date +%s.%N)
  sleep "$DURATION"
  tx1=$(counter dut tx_packets); rx1=$(counter dut rx_packets); gtx1=$(counter gen tx_packets)
  t1=$(date +%s.%N)
  stop_pid "$pid"
  awk -v n="$name" -v r="$r" -v tx=$((tx1 - tx0)) -v rx=$((rx1 - rx0)) -v g=$((gtx1 - gtx0)) \
    -v dt="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
    'BEGIN { printf "dataplane_pps dut=%s round=%d pps=%.0f rx_pps=%.0f gen_pps=%.0f\n", n, r, tx / dt, rx / dt, g / dt }' \
    | tee -a "$WORK/pps.txt"
}
for ((r = 1; r <= ROUNDS; r++)); do
  run_dut testpmd "$r" || { echo "dataplane_vs_testpmd ratio=unavailable reason=testpmd_macswap_did_not_start"; exit 0; }
  run_dut lb "$r" || { echo "dataplane_vs_testpmd ratio=unavailable reason=lb-dataplane_did_not_start"; exit 0; }
done
# Per round, the two DUTs ran back to back under the same conditions: the
# ratio is the median of the per-round ratios (the generator's own rate varies
# with the load on the shared CPUs). A DUT that forwarded >= 95% of what it
# received kept up with the generator: the round then bounds the ratio from
# below only (flagged generator_bound).
pps() { grep "^dataplane_pps dut=$1 round=$2 " "$WORK/pps.txt" | sed -n "s/.* $3=\([0-9.]*\).*/\1/p"; }
ratios=()
bound=0
for ((r = 1; r <= ROUNDS; r++)); do
  tp=$(pps testpmd "$r" pps)
  lb=$(pps lb "$r" pps)
  awk -v t="$tp" 'BEGIN { exit !(t > 0) }' || {
    echo "dataplane_vs_testpmd ratio=unavailable reason=testpmd_forwarded_nothing_in_round_$r"; exit 0; }
  ratios+=("$(awk -v l="$lb" -v t="$tp" 'BEGIN { printf "%.3f", l / t }')")
  for d in testpmd lb; do
    if awk -v x="$(pps "$d" "$r" pps)" -v y="$(pps "$d" "$r" rx_pps)" 'BEGIN { exit !(x >= 0.95 * y) }'; then
      bound=$((bound + 1))
    fi
  done
  echo "# round $r ratio=${ratios[-1]}"
done
ratio=$(printf '%s\n' "${ratios[@]}" | median)
echo "dataplane_vs_testpmd ratio=$ratio rounds=$ROUNDS generator_bound_runs=$bound/$((2 * ROUNDS))"
