#!/usr/bin/env bash
# shellcheck disable=SC2034  # CP_BIN, TABLES, DP_IPV6, ... are read by lib.sh
# End to end (issue 4, test 2): a backend dies under wrk load. Real
# lb-controlplane (inside the router namespace, so its HTTP health checks on
# /health reach 10.99.0.21..23: interval 200 ms, unhealthy after 2 failures,
# healthy after 2 successes) + lb-dataplane (af_xdp on veth, af_packet
# fallback) + lb-decap + nginx on three backends; network from
# scripts/topology.sh (prefix f<pid>).
#
#   failover_test.sh LB_CONTROLPLANE LB_DATAPLANE LB_DECAP LBCTL
#
# Phase 1: `wrk -t1 -c10 -d8s -H 'Connection: close'` from the client
# namespace (every request is a new connection, so it measures where NEW
# connections go); 2 s in, every process of backend 2 is killed -9. The test
# prints the failed requests during detection (wrk's socket errors + non-2xx)
# and the time from the kill until lbctl shows the backend UNHEALTHY, which
# must be within the thresholds (asserted < 3 s: 2 x 200 ms interval + check
# timeout + publish, with slack for a loaded CI machine).
# Phase 2 (after detection): a 3 s wrk with Connection: close has 0 failed
# requests, and 30 curls all succeed, none answered by the killed backend,
# both surviving backends answer.
# Bounded (< 90 s: every wait has a limit); everything it starts is killed by
# pid, the topology removed by prefix, also on failure. Must run as root.
set -euo pipefail
CP_BIN=$(realpath "$1")
DP_BIN=$(realpath "$2")
DECAP_BIN=$(realpath "$3")
LBCTL_BIN=$(realpath "$4")
. "$(dirname "$0")/lib.sh"
P=f$$
KILLED=2  # backend index killed

command -v wrk >/dev/null || { echo "FAIL: wrk not installed (scripts/install-deps.sh)"; exit 1; }

WORK=$(mktemp -d /dev/shm/lb-e2e-failover.XXXXXX)
CP_PID=""
DP_PID=""
WRK_PID=""
stop_all() { stop_pids 30 "$WRK_PID" "$DP_PID" "$CP_PID"; }
show_logs() {
  show_tail 30 "lb-controlplane log" "$WORK/cp.log"
  show_tail 20 "lb-dataplane log" "$WORK/dp.log"
}
install_traps
now_ms() { date +%s%3N; }

# 1. The network: client, router, lb1, be1..3 (nginx + lb-decap).
bash "$TOPO" up --prefix "$P" --backends 3 --lbs 1 --lb_decap "$DECAP_BIN" >/dev/null

# 2. The control plane inside the router namespace (health checks reach the
#    backends), gRPC on its loopback; regions in /dev/shm shared with the
#    dataplane in <p>-lb1 (namespaces do not separate files).
cat > "$WORK/lb.textproto" <<CFG
node { tunnel_source_ipv4: "10.99.0.11" tunnel_source_ipv6: "fd00:99::11" }
pools {
  name: "web4"
  algorithm: ALGORITHM_MAGLEV
  health_check {
    kind: HEALTH_CHECK_KIND_HTTP
    interval_ms: 200
    timeout_ms: 150
    unhealthy_threshold: 2
    healthy_threshold: 2
    http_path: "/health"
  }
  backends { address: "10.99.0.21" port: 80 }
  backends { address: "10.99.0.22" port: 80 }
  backends { address: "10.99.0.23" port: 80 }
}
vips { address: "$VIP4" protocol: PROTOCOL_TCP port: 80 pool: "web4" }
CFG
TABLES=$WORK/tables
STATS=$WORK/stats
start_controlplane "$P-router" "$WORK/cp.log" "$GRPC" || fail "lb-controlplane did not publish"

# health_of K: HEALTH_STATUS_* of backend 10.99.0.2K (or "?" when unknown).
health_of() {
  lbctl backend list --json 2>/dev/null | /usr/bin/python3 -c '
import json, sys
addr = sys.argv[1]
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    for b in json.loads(line).get("backends", []):
        if b.get("backend", {}).get("address") == addr:
            print(b.get("health", "?")); sys.exit(0)
print("?")' "10.99.0.2$1"
}

# 3. The dataplane inside <p>-lb1 on af_xdp over its veth (net_af_packet if
#    the af_xdp port does not come up).
DP_IPV6=yes
start_dataplane_fallback 1 "$WORK/dp.log"
echo "lb-dataplane on $PMD in $P-lb1 (pid $DP_PID); lb-controlplane in $P-router (pid $CP_PID)"

# 4. All three backends healthy (bounded), then a warm-up through the VIP.
all_healthy=""
for _ in $(seq 50); do
  if [[ $(health_of 1) == HEALTH_STATUS_HEALTHY && $(health_of 2) == HEALTH_STATUS_HEALTHY &&
        $(health_of 3) == HEALTH_STATUS_HEALTHY ]]; then
    all_healthy=yes; break
  fi
  sleep 0.1
done
[[ -n $all_healthy ]] || { lbctl backend list || true; fail "backends did not all become healthy"; }
warm_up 10 "http://$VIP4/" || fail "no request through the VIP succeeded during the warm-up"
declare -A seen0=()
for _ in $(seq 30); do
  body=$(ip netns exec "$P-client" curl -s --max-time 2 "http://$VIP4/") || continue
  seen0[$body]=1
done
((${#seen0[@]} == 3)) || fail "before the kill only ${#seen0[@]} backend(s) answered: ${!seen0[*]}"
echo "before the kill: all 3 backends answer through the VIP"

# 5. Phase 1: wrk for 8 s, backend 2 killed 2 s in.
ip netns exec "$P-client" timeout 20 wrk -t1 -c10 -d8s --timeout 2s -H 'Connection: close' \
  "http://$VIP4/" >"$WORK/wrk1.txt" 2>&1 &
WRK_PID=$!
sleep 2
kill -0 "$WRK_PID" 2>/dev/null || { cat "$WORK/wrk1.txt"; fail "wrk exited early"; }
victims=$(ip netns pids "$P-be$KILLED")
[[ -n $victims ]] || fail "no process in $P-be$KILLED to kill"
t_kill=$(now_ms)
for pid in $victims; do kill -KILL "$pid" 2>/dev/null || true; done
t_down=""
for _ in $(seq 100); do
  if [[ $(health_of "$KILLED") == HEALTH_STATUS_UNHEALTHY ]]; then t_down=$(now_ms); break; fi
  sleep 0.05
done
wait "$WRK_PID" && wrk_rc=0 || wrk_rc=$?
WRK_PID=""
cat "$WORK/wrk1.txt"
((wrk_rc == 0)) || fail "wrk (phase 1) exited with $wrk_rc"
[[ -n $t_down ]] || fail "backend $KILLED never showed UNHEALTHY in lbctl backend list"
detect_ms=$((t_down - t_kill))
failed1=$(wrk_failed "$WORK/wrk1.txt")
total1=$(wrk_requests "$WORK/wrk1.txt")
echo "phase 1: backend $KILLED (10.99.0.2$KILLED) killed at 2 s; UNHEALTHY in lbctl after ${detect_ms} ms"
echo "phase 1: failed requests during detection: $failed1 of ${total1:-?}"
grep -i "health\|unhealthy" "$WORK/cp.log" | tail -n 3 || true

# 6. Phase 2: after detection, no request fails and none reaches backend 2.
ip netns exec "$P-client" timeout 15 wrk -t1 -c10 -d3s --timeout 2s -H 'Connection: close' \
  "http://$VIP4/" >"$WORK/wrk2.txt" 2>&1 && wrk_rc=0 || wrk_rc=$?
cat "$WORK/wrk2.txt"
((wrk_rc == 0)) || fail "wrk (phase 2) exited with $wrk_rc"
failed2=$(wrk_failed "$WORK/wrk2.txt")
total2=$(wrk_requests "$WORK/wrk2.txt")
ok=0
declare -A seen=()
for i in $(seq 30); do
  if body=$(ip netns exec "$P-client" curl -s --max-time 2 "http://$VIP4/"); then
    ok=$((ok + 1))
    seen[$body]=$((${seen[$body]:-0} + 1))
  else
    echo "phase 2: curl $i failed"
  fi
done
echo "phase 2: wrk $failed2 failed of ${total2:-?}; curl $ok/30 succeeded"
for b in "${!seen[@]}"; do echo "  $b: ${seen[$b]}"; done

# 7. Verdicts.
((${total1:-0} > 0)) || fail "phase 1: wrk completed no request"
((detect_ms < 3000)) || fail "detection took ${detect_ms} ms (thresholds: 2 x 200 ms)"
((${total2:-0} > 0)) || fail "phase 2: wrk completed no request"
((failed2 == 0)) || fail "phase 2: $failed2 request(s) failed after detection"
((ok == 30)) || fail "phase 2: only $ok/30 curls succeeded"
[[ -z "${seen[backend $P-be$KILLED]:-}" ]] || fail "phase 2: the killed backend answered"
((${#seen[@]} == 2)) || fail "phase 2: ${#seen[@]} backend(s) answered, want the 2 survivors"
echo "RESULT failover: detect_ms=$detect_ms failed_during_detection=$failed1 requests_phase1=$total1 failed_after=$failed2"
echo "PASS: failover e2e ($PMD) in $(($(date +%s) - START)) s"
