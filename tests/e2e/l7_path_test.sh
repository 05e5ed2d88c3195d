#!/usr/bin/env bash
# shellcheck disable=SC2034  # CP_BIN, TABLES, DP_IPV6, ... are read by lib.sh
# End to end (issue 10, "Namespaces" tier): the full L4 + L7 path
#
#   client -> router -> lb-dataplane (VIP, Maglev, IP-in-IP, DSR)
#          -> two L7 nodes (lb-decap, VIP on lo, lb-l7 on VIP:80)
#          -> three nginx backends
#
# with the real binaries; network from scripts/topology.sh --l7_nodes 2
# (prefix h<pid>). lb-controlplane runs in the router namespace (lbctl), the
# L4 pool holds the two L7 nodes (10.99.0.101, .102), each lb-l7 (2 workers)
# round-robins over nginx 10.99.0.21..23 and adds `X-L7-Node: l7nK` to its
# answers; replies leave the L7 node straight to the client.
#
#   l7_path_test.sh LB_CONTROLPLANE LB_DATAPLANE LB_DECAP LBCTL LB_L7
#
# 1. 60 curls through the VIP (a new connection each): every answer has an
#    X-L7-Node header, both L7 nodes and all three nginx answer, each L7 node
#    reaches all three nginx, and each lb-l7's access log names the backends
#    it used.
# 2. wrk -c10 keep-alive GETs for 6 s; 2 s in, nginx of be2 is killed -9:
#    0 failed requests (lb-l7 resends idempotent requests to another backend
#    and ejects be2); afterwards no answer comes from be2.
# 3. lb-l7 on L7 node 1 restarted under load, the way an operator does it:
#    lbctl backend drain (L4: no new flows to node 1), SIGTERM (lb-l7 stops
#    accepting, finishes in-flight requests with Connection: close, closes
#    idle keep-alive connections), a new lb-l7, then back to active. Two wrk
#    run at once: one with Connection: close (every request a new flow) must
#    have 0 failures -- the L4 tier moves new flows cleanly; one keep-alive
#    must have 0 failures too: a keep-alive connection idle at the SIGTERM
#    keeps a grace (--drain_idle_grace_ms) in which its next request is
#    answered with Connection: close, so wrk reconnects (through L4, to the
#    other node) instead of losing a request sent as the server closed. The
#    old lb-l7 exits 0, the new one answers fresh curls.
# Bounded (~40 s; every wait has a limit); everything it starts is stopped by
# pid, the topology removed by prefix, also on failure. Must run as root.
set -euo pipefail
CP_BIN=$(realpath "$1")
DP_BIN=$(realpath "$2")
DECAP_BIN=$(realpath "$3")
LBCTL_BIN=$(realpath "$4")
L7_BIN=$(realpath "$5")
. "$(dirname "$0")/lib.sh"
P=h$$
PY=/usr/bin/python3
KILLED=2  # nginx backend killed in part 2

command -v wrk >/dev/null || { echo "FAIL: wrk not installed (scripts/install-deps.sh)"; exit 1; }

WORK=$(mktemp -d /dev/shm/lb-e2e-l7path.XXXXXX)
CP_PID=""
DP_PID=""
WRK_PID=""
WRK2_PID=""
L7_PID=("" "" "")  # by L7 node number
stop_all() {
  stop_pids 40 "$WRK_PID" "$WRK2_PID" "${L7_PID[1]}" "${L7_PID[2]}" "$DP_PID" "$CP_PID"
  rm -rf "/var/run/dpdk/lb-e2e-$P"  # the EAL's runtime directory (--file-prefix)
}
show_logs() {
  show_tail 20 "lb-controlplane log" "$WORK/cp.log"
  show_tail 20 "lb-dataplane log" "$WORK/dp.log"
  show_tail 20 "lb-l7 node 1 log" "$WORK/l7n1.log"
  show_tail 20 "lb-l7 node 2 log" "$WORK/l7n2.log"
}
install_traps

# 1. The network: client, router, lb1, L7 nodes l7n1..2, nginx be1..3.
bash "$TOPO" up --prefix "$P" --backends 3 --l7_nodes 2 --lbs 1 --lb_decap "$DECAP_BIN" >/dev/null

# 2. L4: one Maglev pool of the two L7 nodes behind the VIP.
l7_tier_config >"$WORK/lb.textproto"
TABLES=$WORK/tables
STATS=$WORK/stats
start_controlplane "$P-router" "$WORK/cp.log" "$GRPC" || fail "lb-controlplane did not publish"
DP_IPV6=yes
start_dataplane_fallback 1 "$WORK/dp.log"
echo "lb-dataplane on $PMD in $P-lb1 (pid $DP_PID); lb-controlplane in $P-router (pid $CP_PID)"

# backend_id ADDRESS: the L4 id of that backend (empty when absent).
backend_id() {
  lbctl backend list --json 2>/dev/null | "$PY" -c '
import json, sys
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    for b in json.loads(line).get("backends", []):
        be = b.get("backend", {})
        if be.get("address") == sys.argv[1]:
            print(be.get("id", 0)); sys.exit(0)' "$1"
}

# dataplane_caught_up: 0 once every online lcore runs the newest published
# table generation (checked every 0.1 s, up to 5 s).
dataplane_caught_up() {
  for _ in $(seq 50); do
    lbctl stats --json 2>/dev/null | "$PY" -c '
import json, sys
s = json.load(sys.stdin)
g = int(s.get("generation", 0))
online = [c for c in s.get("lcores", []) if c.get("online")]
sys.exit(0 if online and all(int(c.get("observed_generation", 0)) >= g for c in online) else 1)' \
      && return 0
    sleep 0.1
  done
  return 1
}

# 3. lb-l7 on each L7 node: VIP:80, round robin over the three nginx.
for k in 1 2; do
  cat > "$WORK/l7n$k.textproto" <<CFG
listeners {
  name: "vip"
  address: "$VIP4"
  port: 80
  routes { name: "all" pool: "app"
           response_headers_to_add { name: "X-L7-Node" value: "l7n$k" } }
}
pools {
  name: "app"
  algorithm: ALGORITHM_ROUND_ROBIN
  backends { address: "10.99.0.21" port: 80 }
  backends { address: "10.99.0.22" port: 80 }
  backends { address: "10.99.0.23" port: 80 }
  connect_retries: 2
  eject_after_failures: 1
  eject_ms: 30000
}
timeouts { upstream_connect_ms: 1000 upstream_response_ms: 5000 }
CFG
done
# start_l7 K: lb-l7 in <p>-l7nK (log appended to $WORK/l7nK.log, access log
# $WORK/l7nK-access.log, /metrics on its own loopback :9180); sets
# L7_PID[K]. 0 once it logged "lb-l7 ready", 1 after 10 s or when it exited.
start_l7() {
  local k=$1 n
  echo "--- start $(date +%T.%N)" >>"$WORK/l7n$k.log"
  # Counted before the start: the new process may log "ready" at once.
  n=$(grep -c "lb-l7 ready" "$WORK/l7n$k.log" || true)
  ip netns exec "$P-l7n$k" "$L7_BIN" --config "$WORK/l7n$k.textproto" --workers 2 \
    --drain_timeout_ms 3000 --admin_port 9180 --access_log "$WORK/l7n$k-access.log" \
    >>"$WORK/l7n$k.log" 2>&1 &
  L7_PID[k]=$!
  for _ in $(seq 100); do
    (($(grep -c "lb-l7 ready" "$WORK/l7n$k.log" || true) > n)) && return 0
    kill -0 "${L7_PID[k]}" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
# l7_metric K NAME: the sum of NAME's samples on lb-l7 of node K; fails
# (prints nothing) when /metrics does not answer.
l7_metric() {
  local text
  text=$(ip netns exec "$P-l7n$1" curl -sf --max-time 2 "http://127.0.0.1:9180/metrics") || return 1
  awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d", s }' <<<"$text"
}
for k in 1 2; do
  start_l7 "$k" || fail "lb-l7 did not start on $P-l7n$k"
done
echo "lb-l7 on $P-l7n1 (pid ${L7_PID[1]}) and $P-l7n2 (pid ${L7_PID[2]}), listening on $VIP4:80"
warm_up 10 "http://$VIP4/" || fail "no request through the VIP succeeded during the warm-up"

# curl_spread N TAG: N curls through the VIP, a new connection each; prints
# "TAG: ok=.. failed=.." and one "node backend count" line per pair seen;
# the pairs also go to $WORK/TAG.pairs.
curl_spread() {
  local n=$1 tag=$2 ok=0 failed=0 out node body
  : >"$WORK/$tag.raw"
  for _ in $(seq "$n"); do
    if out=$(ip netns exec "$P-client" curl -sf --max-time 2 -w '%header{x-l7-node}' "http://$VIP4/"); then
      body=${out%%$'\n'*}
      node=${out##*$'\n'}
      echo "${node:-none} ${body##* }" >>"$WORK/$tag.raw"
      ok=$((ok + 1))
    else
      failed=$((failed + 1))
    fi
  done
  sort "$WORK/$tag.raw" | uniq -c | awk '{ print $2, $3, $1 }' >"$WORK/$tag.pairs"
  echo "$tag: ok=$ok failed=$failed"
  sed 's/^/  /' "$WORK/$tag.pairs"
  [[ $ok == "$n" ]]
}

# ---------------------------------------------------------------- part 1
curl_spread 60 part1 || fail "part 1: a curl through the VIP failed"
grep -q "^none " "$WORK/part1.pairs" && fail "part 1: an answer without X-L7-Node (not through lb-l7)"
for k in 1 2; do
  for b in 1 2 3; do
    grep -q "^l7n$k $P-be$b " "$WORK/part1.pairs" || fail "part 1: l7n$k never answered with be$b"
  done
  for b in 1 2 3; do
    grep -q "backend=10.99.0.2$b:80 .*status=200" "$WORK/l7n$k-access.log" \
      || fail "part 1: the access log of l7n$k has no 200 from 10.99.0.2$b"
  done
done
echo "part 1: both L7 nodes answer through the VIP, each reaching all three nginx (access logs agree)"

# ---------------------------------------------------------------- part 2
ip netns exec "$P-client" timeout 20 wrk -t1 -c10 -d6s --timeout 2s "http://$VIP4/" \
  >"$WORK/wrk2.txt" 2>&1 &
WRK_PID=$!
sleep 2
kill -0 "$WRK_PID" 2>/dev/null || { cat "$WORK/wrk2.txt"; fail "part 2: wrk exited early"; }
victims=$(ip netns pids "$P-be$KILLED")
[[ -n $victims ]] || fail "part 2: no process in $P-be$KILLED to kill"
for pid in $victims; do kill -KILL "$pid" 2>/dev/null || true; done
wait "$WRK_PID" && rc=0 || rc=$?
WRK_PID=""
cat "$WORK/wrk2.txt"
((rc == 0)) || fail "part 2: wrk exited with $rc"
failed2=$(wrk_failed "$WORK/wrk2.txt")
total2=$(wrk_requests "$WORK/wrk2.txt")
rps2=$(awk '/^Requests\/sec:/ { print $2 }' "$WORK/wrk2.txt")
retries2=0
eject2=0
for k in 1 2; do
  r=$(l7_metric "$k" lb_l7_upstream_retries_total) || fail "part 2: no /metrics from lb-l7 on l7n$k"
  e=$(l7_metric "$k" lb_l7_backend_ejections_total) || fail "part 2: no /metrics from lb-l7 on l7n$k"
  retries2=$((retries2 + r))
  eject2=$((eject2 + e))
done
echo "part 2: nginx of be$KILLED killed -9 at 2 s: $failed2 failed of ${total2:-?} ($rps2 req/s);" \
  "lb-l7 retries=$retries2 ejections=$eject2"
((${total2:-0} > 0)) || fail "part 2: wrk completed no request"
((failed2 == 0)) || fail "part 2: $failed2 request(s) failed while a backend died"
curl_spread 30 part2 || fail "part 2: a curl failed after the kill"
grep -q " $P-be$KILLED " "$WORK/part2.pairs" && fail "part 2: the killed backend answered"

# ---------------------------------------------------------------- part 3
ID1=$(backend_id 10.99.0.101)
[[ -n $ID1 ]] || fail "part 3: no L4 backend id for 10.99.0.101"
ip netns exec "$P-client" timeout 20 wrk -t1 -c12 -d8s --timeout 2s "http://$VIP4/" \
  >"$WORK/wrk3ka.txt" 2>&1 &
WRK_PID=$!
ip netns exec "$P-client" timeout 20 wrk -t1 -c4 -d8s --timeout 2s -H 'Connection: close' \
  "http://$VIP4/" >"$WORK/wrk3close.txt" 2>&1 &
WRK2_PID=$!
sleep 2
t0=$(date +%s%N)
lbctl backend drain "$ID1" >/dev/null || fail "part 3: lbctl backend drain $ID1 failed"
dataplane_caught_up || fail "part 3: lb-dataplane did not take the drain within 5 s"
open1=$(l7_metric 1 lb_l7_connections_open) || fail "part 3: no /metrics from lb-l7 on l7n1"
open2=$(l7_metric 2 lb_l7_connections_open) || fail "part 3: no /metrics from lb-l7 on l7n2"
old=${L7_PID[1]}
kill -TERM "$old"
for _ in $(seq 50); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
kill -0 "$old" 2>/dev/null && fail "part 3: lb-l7 on l7n1 did not exit within 5 s of SIGTERM"
wait "$old" && old_rc=0 || old_rc=$?
L7_PID[1]=""
t_exit=$(date +%s%N)
start_l7 1 || fail "part 3: the new lb-l7 did not start on $P-l7n1"
lbctl backend update "$ID1" --state active >/dev/null || fail "part 3: lbctl backend update $ID1 failed"
dataplane_caught_up || fail "part 3: lb-dataplane did not take the re-activation within 5 s"
t1=$(date +%s%N)
wait "$WRK_PID" && rc=0 || rc=$?
WRK_PID=""
wait "$WRK2_PID" && rc2=0 || rc2=$?
WRK2_PID=""
echo "--- wrk keep-alive"; cat "$WORK/wrk3ka.txt"
echo "--- wrk Connection: close"; cat "$WORK/wrk3close.txt"
((rc == 0 && rc2 == 0)) || fail "part 3: wrk exited with $rc / $rc2"
failed3ka=$(wrk_failed "$WORK/wrk3ka.txt")
total3ka=$(wrk_requests "$WORK/wrk3ka.txt")
failed3c=$(wrk_failed "$WORK/wrk3close.txt")
total3c=$(wrk_requests "$WORK/wrk3close.txt")
echo "part 3: l7n1 drained at L4, SIGTERM with $open1 client connection(s) open (l7n2: $open2), old lb-l7 exit $old_rc" \
  "after $(((t_exit - t0) / 1000000)) ms, new one active after $(((t1 - t0) / 1000000)) ms"
echo "part 3: keep-alive wrk $failed3ka failed of ${total3ka:-?}; Connection: close wrk" \
  "$failed3c failed of ${total3c:-?}"
((old_rc == 0)) || fail "part 3: the old lb-l7 exited with $old_rc after SIGTERM"
((${total3ka:-0} > 0 && ${total3c:-0} > 0)) || fail "part 3: a wrk completed no request"
((failed3c == 0)) || fail "part 3: $failed3c new-connection request(s) failed during the restart"
((failed3ka == 0)) || fail "part 3: $failed3ka keep-alive request(s) failed during the restart ($open1 connections on node 1 at SIGTERM)"
curl_spread 40 part3 || fail "part 3: a curl failed after the restart"
grep -q "^l7n1 " "$WORK/part3.pairs" || fail "part 3: the new lb-l7 on l7n1 answered no curl"
grep -q "^l7n2 " "$WORK/part3.pairs" || fail "part 3: l7n2 answered no curl"

echo "RESULT l7_path: kill_failed=$failed2 kill_requests=$total2 kill_rps=$rps2 retries=$retries2" \
  "restart_keepalive_failed=$failed3ka restart_keepalive_requests=$total3ka" \
  "restart_close_failed=$failed3c restart_close_requests=$total3c open_at_sigterm=$open1"
echo "PASS: l7 path e2e ($PMD) in $(($(date +%s) - START)) s"
