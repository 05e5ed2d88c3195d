#!/usr/bin/env bash
# shellcheck disable=SC2034  # CP_BIN, TABLES, DP_IPV6, ... are read by lib.sh
# End to end (issue 10, "Namespaces" tier): sticky sessions held across both
# L7 nodes with a shared Redis, and an L7 configuration change streamed by
# the control plane under keep-alive load, through the full path
#
#   client -> router -> lb-dataplane (Maglev, IP-in-IP, DSR) -> two L7 nodes
#          (lb-decap, VIP on lo, lb-l7 --controlplane) -> three nginx
#
#   l7_sticky_cp_test.sh LB_CONTROLPLANE LB_DATAPLANE LB_DECAP LBCTL LB_L7
#
# Network from scripts/topology.sh --l7_nodes 2 (prefix l7hc<pid>).
# lb-controlplane runs in the router namespace with its gRPC API on
# 10.99.0.1:50051 (a bearer token: it is off loopback) so that both lb-l7
# (--controlplane) subscribe to it; a real redis-server, also in the router
# namespace on 10.99.0.1:6379, is both nodes' sticky_store; both read the
# same sticky_secret_file. The L7 configuration comes from `lbctl l7 set`
# only: routes by header X-Pool to a cookie-sticky pool and a source-IP-
# sticky pool (pins in Redis), the rest round robin.
#
# 1. Cookie: a client gets the cookie from one L7 node; 24 new connections
#    with it (Maglev spreads them over both L7 nodes): every answer from
#    the one nginx the cookie names, both L7 nodes answered (access logs).
# 2. Source IP through Redis: 24 new connections without a cookie: one
#    nginx for all, both L7 nodes answered, Redis holds the pin.
# 3. `lbctl l7 set` of a changed configuration (a new route, the round-
#    robin pool made least_connections) under wrk -c10 keep-alive load:
#    both lb-l7 apply generation 2 from the stream, wrk has 0 failed
#    requests and 0 socket errors (connect/read/write/timeout), and every
#    keep-alive connection survives the change (ss: the same local ports
#    before and after; lb_l7_connections_adopted_total: handed to the new
#    workers); the new route answers.
# Bounded (~40 s; every wait has a limit); everything it starts is stopped by
# pid, the topology removed by prefix, also on failure. Must run as root.
set -euo pipefail
CP_BIN=$(realpath "$1")
DP_BIN=$(realpath "$2")
DECAP_BIN=$(realpath "$3")
LBCTL_BIN=$(realpath "$4")
L7_BIN=$(realpath "$5")
. "$(dirname "$0")/lib.sh"
P=l7hc$$
GRPC_NET=10.99.0.1:50051
REDIS_ADDR=10.99.0.1
REDIS_PORT=6379

for c in wrk redis-server redis-cli ss; do
  command -v "$c" >/dev/null || { echo "FAIL: $c not installed (scripts/install-deps.sh)"; exit 1; }
done

WORK=$(mktemp -d /dev/shm/lb-e2e-l7hc.XXXXXX)
CP_PID=""
DP_PID=""
WRK_PID=""
REDIS_PID=""
L7_PID=("" "" "")
stop_all() {
  stop_pids 40 "$WRK_PID" "${L7_PID[1]}" "${L7_PID[2]}" "$DP_PID" "$CP_PID" "$REDIS_PID"
  rm -rf "/var/run/dpdk/lb-e2e-$P"
}
show_logs() {
  show_tail 20 "lb-controlplane log" "$WORK/cp.log"
  show_tail 10 "lb-dataplane log" "$WORK/dp.log"
  show_tail 20 "lb-l7 node 1 log" "$WORK/l7n1.log"
  show_tail 20 "lb-l7 node 2 log" "$WORK/l7n2.log"
  show_tail 10 "redis-server log" "$WORK/redis.log"
}
install_traps

bash "$TOPO" up --prefix "$P" --backends 3 --l7_nodes 2 --lbs 1 --lb_decap "$DECAP_BIN" >/dev/null

# Redis in the router namespace, reachable from both L7 nodes over br0.
ip netns exec "$P-router" redis-server --bind "$REDIS_ADDR" --port "$REDIS_PORT" --save "" \
  --appendonly no --protected-mode no --daemonize no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
redis() { ip netns exec "$P-router" redis-cli -h "$REDIS_ADDR" -p "$REDIS_PORT" "$@"; }
for _ in $(seq 50); do redis PING 2>/dev/null | grep -q PONG && break; sleep 0.1; done
redis PING | grep -q PONG || fail "redis-server did not answer on $REDIS_ADDR:$REDIS_PORT"

# L4: the two L7 nodes behind the VIP.
l7_tier_config >"$WORK/lb.textproto"
TABLES=$WORK/tables
STATS=$WORK/stats
head -c 24 /dev/urandom | base64 | tr -d '=+/' >"$WORK/token"
chmod 600 "$WORK/token"
ip netns exec "$P-router" "$CP_BIN" --config "$WORK/lb.textproto" --state_dir "$WORK/state" \
  --table_region "$TABLES" --stats_region "$STATS" --max_vips 16 --max_backends 64 \
  --grpc_listen="0.0.0.0:50051" --http_listen= --auth_token_file "$WORK/token" \
  >"$WORK/cp.log" 2>&1 &
CP_PID=$!
wait_log "$WORK/cp.log" "published generation=1 " 100 "$CP_PID" || fail "lb-controlplane did not publish"
lbctl() { ip netns exec "$P-router" "$LBCTL_BIN" --server "$GRPC" --token_file "$WORK/token" "$@"; }
start_dataplane_fallback 1 "$WORK/dp.log"
echo "lb-dataplane on $PMD (pid $DP_PID); lb-controlplane (pid $CP_PID) gRPC on $GRPC_NET;" \
  "redis-server (pid $REDIS_PID) on $REDIS_ADDR:$REDIS_PORT"

head -c 32 /dev/urandom >"$WORK/sticky.key"
chmod 600 "$WORK/sticky.key"
# l7_config ALGORITHM EXTRA_ROUTE: the configuration both nodes run.
l7_config() {
  cat <<CFG
sticky_secret_file: "$WORK/sticky.key"
sticky_store { redis_address: "$REDIS_ADDR:$REDIS_PORT" timeout_ms: 200 }
listeners {
  name: "vip" address: "$VIP4" port: 80 default_pool: "app"
  routes { name: "cookie" pool: "cookie" headers { name: "X-Pool" exact: "cookie" } }
  routes { name: "srcip" pool: "srcip" headers { name: "X-Pool" exact: "srcip" } }
  $2
}
pools { name: "app" algorithm: $1
  backends { address: "10.99.0.21" port: 80 } backends { address: "10.99.0.22" port: 80 }
  backends { address: "10.99.0.23" port: 80 } }
pools { name: "cookie" sticky_sessions: true sticky_ttl_seconds: 600
  backends { address: "10.99.0.21" port: 80 } backends { address: "10.99.0.22" port: 80 }
  backends { address: "10.99.0.23" port: 80 } }
pools { name: "srcip" sticky_sessions: true sticky_source_ip: true sticky_ttl_seconds: 600
  backends { address: "10.99.0.21" port: 80 } backends { address: "10.99.0.22" port: 80 }
  backends { address: "10.99.0.23" port: 80 } }
timeouts { upstream_connect_ms: 1000 upstream_response_ms: 5000 idle_ms: 30000 }
CFG
}
l7_config ALGORITHM_ROUND_ROBIN "" >"$WORK/l7-1.textproto"
out=$(lbctl l7 set "$WORK/l7-1.textproto") || fail "lbctl l7 set: $out"
[[ $out == *"generation 1"* ]] || fail "lbctl l7 set did not store generation 1: $out"

start_l7() {
  local k=$1
  ip netns exec "$P-l7n$k" "$L7_BIN" --controlplane "$GRPC_NET" \
    --controlplane_token_file "$WORK/token" --controlplane_start_timeout_ms 10000 --workers 2 \
    --admin_port 9180 --access_log "$WORK/l7n$k-access.log" >"$WORK/l7n$k.log" 2>&1 &
  L7_PID[k]=$!
  wait_log "$WORK/l7n$k.log" "lb-l7 ready" 150 "${L7_PID[k]}"
}
l7_metric() {
  local text
  text=$(ip netns exec "$P-l7n$1" curl -sf --max-time 2 "http://127.0.0.1:9180/metrics") || return 1
  awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d", s }' <<<"$text"
}
for k in 1 2; do start_l7 "$k" || fail "lb-l7 did not start on $P-l7n$k"; done
for k in 1 2; do
  for _ in $(seq 50); do [[ $(l7_metric "$k" lb_l7_config_generation || true) == 1 ]] && break; sleep 0.1; done
  [[ $(l7_metric "$k" lb_l7_config_generation) == 1 ]] || fail "lb-l7 on l7n$k does not run generation 1"
done
echo "lb-l7 on both L7 nodes run generation 1 from the control plane"
warm_up 10 "http://$VIP4/" || fail "no request through the VIP succeeded during the warm-up"

# sticky_run TAG N CURL_ARGS...: N curls through the VIP (a new connection
# each) with CURL_ARGS; the bodies' last words go to $WORK/TAG.backends.
sticky_run() {
  local tag=$1 n=$2 out
  shift 2
  : >"$WORK/$tag.backends"
  for _ in $(seq "$n"); do
    out=$(ip netns exec "$P-client" curl -sf --max-time 2 "$@" "http://$VIP4/") \
      || fail "$tag: a curl through the VIP failed"
    echo "${out##* }" >>"$WORK/$tag.backends"
  done
}
# route_count K ROUTE: access log lines of node K for ROUTE.
route_count() { grep -c " route=$2 " "$WORK/l7n$1-access.log" || true; }
# wait_logged ROUTE N: 0 once both access logs hold N lines for ROUTE
# together (lb-l7 writes them off the loop, a moment late), up to 3 s.
wait_logged() {
  for _ in $(seq 30); do
    (($(route_count 1 "$1") + $(route_count 2 "$1") >= $2)) && return 0
    sleep 0.1
  done
  return 1
}
# check_sticky TAG ROUTE N: one backend in TAG's answers, both nodes
# answered (N requests of ROUTE in the access logs).
check_sticky() {
  local tag=$1 route=$2 n1 n2 backends
  wait_logged "$route" "$3" || fail "$tag: the access logs do not hold the $3 $route requests"
  backends=$(sort -u "$WORK/$tag.backends" | tr '\n' ' ')
  n1=$(route_count 1 "$route")
  n2=$(route_count 2 "$route")
  echo "$tag: $(wc -l <"$WORK/$tag.backends") answers from nginx: $backends(l7n1 $n1, l7n2 $n2)"
  (($(sort -u "$WORK/$tag.backends" | wc -l) == 1)) || fail "$tag: the session moved between backends: $backends"
  ((n1 > 0 && n2 > 0)) || fail "$tag: not both L7 nodes answered (l7n1 $n1, l7n2 $n2)"
}

# ---------------------------------------------------------------- part 1
hdr=$(ip netns exec "$P-client" curl -sf --max-time 2 -D - -o /dev/null -H 'X-Pool: cookie' "http://$VIP4/") \
  || fail "part 1: the first cookie request failed"
cookie=$(sed -n 's/^[Ss]et-[Cc]ookie: *\(lb_sticky=[^;]*\).*/\1/p' <<<"$hdr" | tr -d '\r')
[[ -n $cookie ]] || fail "part 1: no sticky cookie in: $hdr"
sticky_run part1 24 -H 'X-Pool: cookie' -H "Cookie: $cookie"
check_sticky part1 cookie 25  # and the request that got the cookie

# ---------------------------------------------------------------- part 2
sticky_run part2 24 -H 'X-Pool: srcip'
check_sticky part2 srcip 24
pin=$(redis GET "lb:sticky:srcip:172.31.1.2")
[[ $pin == 10.99.0.2?:80 ]] || fail "part 2: Redis does not hold the client's pin (got '$pin')"
want=$(sort -u "$WORK/part2.backends")
[[ $want == "$P-be${pin:9:1}" ]] || fail "part 2: Redis pins $pin but the answers came from $want"
echo "part 2: Redis holds the pin $pin (TTL $(redis TTL lb:sticky:srcip:172.31.1.2) s)"

# ---------------------------------------------------------------- part 3
wrk_ports() {
  ip netns exec "$P-client" ss -tnH state established dst "$VIP4:80" \
    | awk '{ n = split($3, a, ":"); print a[n] }' | sort -u
}
ip netns exec "$P-client" timeout 20 wrk -t1 -c10 -d8s --timeout 2s "http://$VIP4/" \
  >"$WORK/wrk3.txt" 2>&1 &
WRK_PID=$!
sleep 2
kill -0 "$WRK_PID" 2>/dev/null || { cat "$WORK/wrk3.txt"; fail "part 3: wrk exited early"; }
wrk_ports >"$WORK/ports.before"
l7_config ALGORITHM_LEAST_CONNECTIONS \
  'routes { name: "extra" pool: "cookie" headers { name: "X-Pool" exact: "extra" } }' \
  >"$WORK/l7-2.textproto"
t0=$(date +%s%N)
out=$(lbctl l7 set "$WORK/l7-2.textproto") || fail "part 3: lbctl l7 set: $out"
[[ $out == *"generation 2"* ]] || fail "part 3: lbctl l7 set did not store generation 2: $out"
for k in 1 2; do
  for _ in $(seq 50); do [[ $(l7_metric "$k" lb_l7_config_generation || true) == 2 ]] && break; sleep 0.1; done
  [[ $(l7_metric "$k" lb_l7_config_generation) == 2 ]] || fail "part 3: lb-l7 on l7n$k did not apply generation 2"
done
t1=$(date +%s%N)
sleep 2
wrk_ports >"$WORK/ports.after"
wait "$WRK_PID" && rc=0 || rc=$?
WRK_PID=""
cat "$WORK/wrk3.txt"
((rc == 0)) || fail "part 3: wrk exited with $rc"
failed3=$(wrk_failed "$WORK/wrk3.txt")
total3=$(wrk_requests "$WORK/wrk3.txt")
kept=$(comm -12 "$WORK/ports.before" "$WORK/ports.after" | wc -l)
before=$(wc -l <"$WORK/ports.before")
adopted=$(($(l7_metric 1 lb_l7_connections_adopted_total) + $(l7_metric 2 lb_l7_connections_adopted_total)))
echo "part 3: generation 2 applied on both L7 nodes $(((t1 - t0) / 1000000)) ms after lbctl l7 set;" \
  "wrk $failed3 failed of ${total3:-?}; $kept of $before keep-alive connections kept across the change" \
  "($adopted handed to the new workers)"
((${total3:-0} > 0)) || fail "part 3: wrk completed no request"
grep -q "Socket errors" "$WORK/wrk3.txt" && fail "part 3: wrk counted socket errors"
((failed3 == 0)) || fail "part 3: $failed3 request(s) failed during the configuration change"
((before > 0 && kept == before)) || fail "part 3: the change closed $((before - kept)) of $before keep-alive connections"
((adopted >= before)) || fail "part 3: only $adopted connection(s) handed to the new workers"
out=$(ip netns exec "$P-client" curl -sf --max-time 2 -H 'X-Pool: extra' "http://$VIP4/") \
  || fail "part 3: the new route did not answer"
wait_logged extra 1 || fail "part 3: the new route was not used"

echo "RESULT l7_sticky_cp: cookie_requests=24 srcip_requests=24 change_failed=$failed3" \
  "change_requests=$total3 conns_kept=$kept/$before adopted=$adopted apply_ms=$(((t1 - t0) / 1000000))"
echo "PASS: l7 sticky + control plane e2e ($PMD) in $(($(date +%s) - START)) s"
