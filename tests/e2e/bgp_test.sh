#!/usr/bin/env bash
# shellcheck disable=SC2034  # CP_BIN, TABLES, DP_FILE_PREFIX, ... are read by lib.sh
# End to end (issue 12): routes that follow health, BGP through BIRD 2.
# Network from scripts/topology.sh --lbs 2 (prefix bg<pid>), without its
# static VIP route: the router runs BIRD (bgp to both nodes, bfd on, kernel
# protocol with `merge paths on`: ECMP); each LB node runs lb-controlplane
# (BGP announcer: --bgp_routes_file, --bgp_bird_socket, --bgp_drain_file),
# lb-dataplane (af_xdp, --exception_path=bg<k>x<pid>: the node's kernel
# address 10.99.0.11<k> lives on that tap) and BIRD, whose BGP and BFD
# sessions to the router run through the exception path. The BIRD configs
# are those of docs/OPERATIONS.md.
#
#   bgp_test.sh LB_CONTROLPLANE LB_DATAPLANE LB_DECAP LBCTL
#
# Checks:
#  * the router learns 198.51.100.10/32 from both nodes and installs one
#    ECMP route with two next hops; curl through the VIP works;
#  * drain: node 2's drain file -> its announcement is withdrawn (time
#    printed), a curl every 50 ms from the client meanwhile: 0 failures;
#    drain file removed -> ECMP again;
#  * kill -9 of node 2's lb-dataplane under wrk (Connection: close, new
#    connections): the route via node 2 disappears at the router (BFD; time
#    from the kill printed as withdraw_ms), then 20 new connections all
#    succeed through node 1; wrk's failures during detection are printed.
# Bounded (< 90 s: every wait has a limit); everything it starts is killed by
# pid, the topology removed by prefix, also on failure. Must run as root.
set -euo pipefail
CP_BIN=$(realpath "$1")
DP_BIN=$(realpath "$2")
DECAP_BIN=$(realpath "$3")
LBCTL_BIN=$(realpath "$4")
. "$(dirname "$0")/lib.sh"
command -v bird >/dev/null || { echo "FAIL: bird not installed (scripts/install-deps.sh: bird2)"; exit 1; }
command -v wrk >/dev/null || { echo "FAIL: wrk not installed (scripts/install-deps.sh)"; exit 1; }
P=bg$$
WORK=$(mktemp -d /dev/shm/lb-e2e-bgp.XXXXXX)
PIDS=()      # control planes, curl loops, wrk
DP_PIDS=()   # dataplanes by node
BIRD_PIDS=() # BIRDs (router, node 1, node 2)
DP_PID=""
stop_all() { stop_pids 30 "${BIRD_PIDS[@]}" "${DP_PIDS[@]}" "${PIDS[@]}"; }
show_logs() {
  for k in 1 2; do
    show_tail 15 "lb-controlplane $k log" "$WORK/cp$k.log"
    show_tail 15 "lb-dataplane $k log" "$WORK/dp$k.log"
    show_tail 15 "node $k BIRD log" "$WORK/n$k/bird.log"
  done
  show_tail 20 "router BIRD log" "$WORK/router/bird.log"
  echo "--- router routes"; ip netns exec "$P-router" ip route 2>/dev/null || true
}
install_traps
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# 1. The network; the router's static VIP routes go: BGP provides them.
bash "$TOPO" up --prefix "$P" --backends 3 --lbs 2 --lb_decap "$DECAP_BIN" >/dev/null
ip netns exec "$P-router" ip route del "$VIP4/32"
ip netns exec "$P-router" ip -6 route del 2001:db8:100::10/128 2>/dev/null || true

# 2. The router's BIRD (docs/OPERATIONS.md, "ECMP with BGP").
mkdir -p "$WORK/router"
cat >"$WORK/router/bird.conf" <<CONF
log "$WORK/router/bird.log" all;
router id 10.99.0.1;
protocol device { scan time 10; }
protocol bfd {
  interface "br0" { min rx interval 100 ms; min tx interval 100 ms; multiplier 5; };
}
protocol kernel {
  ipv4 { import none; export all; };
  merge paths on;
}
template bgp lbnode {
  local 10.99.0.1 as 65000;
  bfd on;
  hold time 3;
  connect delay time 1;
  connect retry time 2;
  error wait time 1, 5;
  ipv4 { import all; export none; };
}
protocol bgp lb1 from lbnode { neighbor 10.99.0.111 as 65001; }
protocol bgp lb2 from lbnode { neighbor 10.99.0.112 as 65001; }
CONF
bird_start() {  # NETNS DIR
  ip netns exec "$1" bird -f -c "$2/bird.conf" -s "$2/bird.ctl" -P "$2/bird.pid" \
    >"$2/bird.out" 2>&1 &
  BIRD_PIDS+=($!)
}
bird_start "$P-router" "$WORK/router"

# 3. Per node: control plane with the announcer, dataplane with the exception
#    path, the kernel address on the tap, BIRD.
for k in 1 2; do
  n=$WORK/n$k
  mkdir -p "$n"
  node_config "10.99.0.1$k" >"$n/lb.textproto"
  ip netns exec "$P-lb$k" "$CP_BIN" --config "$n/lb.textproto" --state_dir "$n/state" \
    --table_region "$n/tables" --stats_region "$n/stats" --max_vips 16 --max_backends 64 \
    --grpc_listen="$GRPC" --http_listen= --bgp_routes_file "$n/vips.conf" \
    --bgp_bird_socket "$n/bird.ctl" --bgp_drain_file "$n/drain" >"$WORK/cp$k.log" 2>&1 &
  PIDS+=($!)
done
for k in 1 2; do
  wait_log "$WORK/cp$k.log" "published generation=1 " 100 || fail "lb-controlplane $k did not publish"
done
for k in 1 2; do
  n=$WORK/n$k
  TAP=bg${k}x$$
  TABLES=$n/tables
  STATS=$n/stats
  DP_FILE_PREFIX=lb-e2e-$P-$k
  DP_EXTRA_ARGS="--exception_path=$TAP"
  start_dataplane_fallback "$k" "$WORK/dp$k.log" "$k"
  DP_PIDS+=("$DP_PID")
  wait_log "$WORK/dp$k.log" "exception path: kernel interface $TAP" 50 "$DP_PID" ||
    fail "lb-dataplane $k did not create its exception path"
  DP_PID=""
  ip netns exec "$P-lb$k" ip link set lo up
  ip netns exec "$P-lb$k" ip addr add "10.99.0.11$k/24" dev "$TAP"
  ip netns exec "$P-lb$k" ip link set "$TAP" up
  cat >"$n/bird.conf" <<CONF
log "$n/bird.log" all;
router id 10.99.0.11$k;
protocol device { scan time 10; }
protocol bfd {
  interface "$TAP" { min rx interval 100 ms; min tx interval 100 ms; multiplier 5; };
}
# lb-controlplane's announcer owns this file: protocol static lb_vips4 / lb_vips6.
include "$n/vips.conf";
protocol bgp uplink {
  local 10.99.0.11$k as 65001;
  neighbor 10.99.0.1 as 65000;
  bfd on;
  hold time 3;
  connect delay time 1;
  connect retry time 2;
  error wait time 1, 5;
  ipv4 { import none; export where proto = "lb_vips4"; next hop self; };
}
CONF
  wait_log "$n/vips.conf" "protocol static lb_vips4" 50 || fail "node $k: no $n/vips.conf"
  bird_start "$P-lb$k" "$n"
done
echo "lb-dataplane on $PMD with the exception path on both nodes; BIRD on the router and both nodes"

# route_hops: the next hops of the VIP's route at the router, sorted.
route_hops() {
  ip netns exec "$P-router" ip route show "$VIP4/32" 2>/dev/null | grep -o 'via [0-9.]*' |
    awk '{ print $2 }' | sort | tr '\n' ' ' | sed 's/ $//'
}
# wait_hops WANT TRIES: 0 once route_hops is WANT (checked every 10 ms).
wait_hops() {
  for _ in $(seq "$2"); do
    [[ "$(route_hops)" == "$1" ]] && return 0
    sleep 0.01
  done
  return 1
}
BOTH="10.99.0.111 10.99.0.112"
t0=$(now_ms)
wait_hops "$BOTH" 1500 || fail "the router did not install the ECMP route (next hops: '$(route_hops)')"
echo "router: ECMP route after $(($(now_ms) - t0)) ms: $(ip netns exec "$P-router" ip route show "$VIP4/32" | tr -s '\n\t ' ' ')"
warm_up 10 "http://$VIP4/" || fail "no request through the VIP succeeded"
# BFD must be up on both sessions before anything is measured (until then
# only the BGP hold time would notice a dead node).
rbirdc() { ip netns exec "$P-router" birdc -s "$WORK/router/bird.ctl" "$@" 2>&1; }
# Up, and past BFD's slow start: the detection timeout (last column) is the
# configured 5 x 100 ms, not the 1 s idle interval's.
bfd_up() { rbirdc show bfd sessions | awk '$3 == "Up" && $NF + 0 > 0 && $NF + 0 <= 0.5' | wc -l; }
for _ in $(seq 100); do
  (($(bfd_up) == 2)) && break
  sleep 0.1
done
(($(bfd_up) == 2)) || fail "the router's BFD sessions did not come up: $(rbirdc show bfd sessions | tr '\n' ' ')"
echo "router: BFD sessions to both nodes Up: $(rbirdc show bfd sessions | awk '$3 == "Up" { print $1, "timeout", $NF }' | tr '\n' ' ')"

# 4. Drain node 2 under a curl every 50 ms: withdrawn first, no failure.
ip netns exec "$P-client" bash -c '
  ok=0; bad=0
  while [[ ! -e "$1" ]]; do
    if curl -s --max-time 2 -o /dev/null "http://$2/"; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
    sleep 0.05
  done
  echo "ok=$ok bad=$bad"' _ "$WORK/curls.stop" "$VIP4" >"$WORK/curls.out" 2>&1 &
CURL_PID=$!
PIDS+=("$CURL_PID")
sleep 1
t0=$(now_ms)
touch "$WORK/n2/drain"
wait_hops "10.99.0.111" 1000 || fail "drain: node 2's route was not withdrawn (next hops: '$(route_hops)')"
drain_ms=$(($(now_ms) - t0))
echo "drain: node 2 withdrawn at the router after $drain_ms ms"
sleep 1
touch "$WORK/curls.stop"
wait "$CURL_PID" 2>/dev/null || true
read -r curl_ok curl_bad < <(sed -n 's/^ok=\([0-9]*\) bad=\([0-9]*\)$/\1 \2/p' "$WORK/curls.out")
echo "drain: curls during the drain: ok=$curl_ok failed=$curl_bad"
((curl_ok > 0)) || fail "drain: no curl succeeded"
((curl_bad == 0)) || fail "drain: $curl_bad requests failed"
grep -q "bgp: announcing nothing (node drained)" "$WORK/cp2.log" || fail "node 2's announcer did not log the drain"
rm -f "$WORK/n2/drain"
wait_hops "$BOTH" 1000 || fail "undrain: the ECMP route did not come back (next hops: '$(route_hops)')"
echo "undrain: ECMP route back"

# 5. kill -9 of node 2's dataplane under wrk (new connection per request).
ip netns exec "$P-client" timeout 20 wrk -t1 -c10 -d6s --timeout 2s -H 'Connection: close' \
  "http://$VIP4/" >"$WORK/wrk.txt" 2>&1 &
WRK_PID=$!
PIDS+=("$WRK_PID")
sleep 2
kill -0 "$WRK_PID" 2>/dev/null || { cat "$WORK/wrk.txt"; fail "wrk exited early"; }
t0=$(now_ms)
kill -KILL "${DP_PIDS[1]}"
wait_hops "10.99.0.111" 1000 || fail "kill -9: node 2's route was not withdrawn within 10 s (next hops: '$(route_hops)')"
withdraw_ms=$(($(now_ms) - t0))
echo "kill -9 of node 2's lb-dataplane: route withdrawn at the router after $withdraw_ms ms"
bfd_state=$(rbirdc show bfd sessions | awk '$1 == "10.99.0.112" { print $3 }')
lb2_error=$(rbirdc show protocols all lb2 | sed -n 's/^ *Last error: *//p')
echo "router BIRD: BFD session to 10.99.0.112 '$bfd_state', lb2 last error '$lb2_error'"
[[ "$bfd_state" == Down || "$lb2_error" == *BFD* ]] ||
  fail "the router did not lose node 2 through BFD (BFD '$bfd_state', last error '$lb2_error')"
wait "${DP_PIDS[1]}" 2>/dev/null || true
DP_PIDS[1]=""
wait "$WRK_PID" && wrk_rc=0 || wrk_rc=$?
((wrk_rc == 0)) || { cat "$WORK/wrk.txt"; fail "wrk failed (exit $wrk_rc)"; }
wrk_bad=$(wrk_failed "$WORK/wrk.txt")
wrk_all=$(wrk_requests "$WORK/wrk.txt")
echo "wrk (Connection: close, kill 2 s in): $wrk_all requests, $wrk_bad failed (in flight on node 2 or sent before the withdrawal)"
bad=0
for _ in $(seq 20); do
  ip netns exec "$P-client" curl -s --max-time 2 -o /dev/null "http://$VIP4/" || bad=$((bad + 1))
done
echo "after the withdrawal: 20 new connections, $bad failed"
((bad == 0)) || fail "$bad of 20 new connections failed after the withdrawal"
grep -q "bgp: announcing nothing (dataplane not alive" "$WORK/cp2.log" ||
  fail "node 2's announcer did not notice its dead dataplane"
echo "RESULT bgp: withdraw_ms=$withdraw_ms bfd=on drain_ms=$drain_ms drain_failed=$curl_bad wrk_failed=$wrk_bad/$wrk_all"
echo "PASS: bgp e2e ($PMD) in $(($(date +%s) - START)) s"
