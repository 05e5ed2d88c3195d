#!/usr/bin/env bash
# The demo: one command on a fresh machine, as root.
#
# Installs what is missing, builds, sets up hugepages (or falls back), builds
# a small network of namespaces (scripts/topology.sh: client, router, one LB
# node, two L7 nodes, three nginx backends), starts lb-controlplane (in the
# router namespace, so its health checker reaches the backends) and
# lb-dataplane (in the LB namespace, af_xdp on its veth), registers VIP
# 198.51.100.10:80 and three backends with lbctl, and shows with real HTTP
# requests from the client:
#   1. how requests spread over the three backends (Maglev), and key metrics,
#   2. a backend's nginx stopped: the health check marks it down and no
#      request goes there any more (and none fails),
#   3. its nginx started again: it is marked healthy and gets requests again,
#   4. the L7 tier: lb-l7 on the two L7 nodes, VIP 198.51.100.10:8080 through
#      lb-dataplane to them (IP-in-IP, lb-decap, DSR) and on to the three
#      nginx; which L7 node and which nginx answered each request,
#   5. HTTPS through L4 and L7 (lb-l7 terminates TLS) with a sticky session:
#      one cookie keeps a client on one nginx across both L7 nodes,
#   6. a backend crashing (nginx killed -9) under wrk load through the L7
#      tier: lb-l7 retries on another backend and ejects it, no request fails.
# Everything it starts or creates is removed on exit, Ctrl-C or failure, and
# it exits non-zero if any step does not do what it says. Bounded (< 90 s
# after the build).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { echo "demo: FAILED: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || { echo "demo: run as root (it creates network namespaces)" >&2; exit 1; }

say "Preparing: packages, build, hugepages"
bash scripts/install-deps.sh
BUILD=${BUILD_DIR:-build}
[[ -f "$BUILD/build.ninja" ]] || meson setup "$BUILD" --buildtype=debugoptimized >/dev/null
ninja -C "$BUILD" controlplane/lb-controlplane dataplane/l4/lb-dataplane controlplane/cli/lbctl \
  dataplane/bpf/lb-decap dataplane/bpf/decap.bpf.o dataplane/l7/lb-l7 >/dev/null
echo "build: lb-controlplane, lb-dataplane, lbctl, lb-decap, lb-l7 up to date in $BUILD/"
HUGE_LINE=$(bash scripts/hugepages.sh)
echo "$HUGE_LINE"
if [[ "$HUGE_LINE" == *"at /dev/hugepages"* ]]; then
  EAL_MEM=(--in-memory -m 256)
else
  EAL_MEM=(--no-huge -m 512)
fi
B=$(realpath "$BUILD")
CP_BIN=$B/controlplane/lb-controlplane
DP_BIN=$B/dataplane/l4/lb-dataplane
LBCTL_BIN=$B/controlplane/cli/lbctl
DECAP_BIN=$B/dataplane/bpf/lb-decap
L7_BIN=$B/dataplane/l7/lb-l7

P=demo$$
R=$P-router
VIP=198.51.100.10
GRPC=127.0.0.1:50051   # inside $R (its own loopback)
HTTP=127.0.0.1:8080    # inside $R: REST API and /metrics
WORK=$(mktemp -d /dev/shm/lb-demo.XXXXXX)
CP_PID=""
DP_PID=""
L7_PIDS=()
WRK_PID=""
cleanup() {
  local rc=$?
  trap - EXIT
  trap '' INT TERM  # a second Ctrl-C must not cut the cleanup short
  echo
  echo "== Cleaning up: stopping lb-l7, lb-dataplane and lb-controlplane, removing namespaces $P-*"
  for pid in "$WRK_PID" "${L7_PIDS[@]}" "$DP_PID" "$CP_PID"; do
    [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "$WRK_PID" "${L7_PIDS[@]}" "$DP_PID" "$CP_PID"; do
    [[ -z "$pid" ]] && continue
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  bash scripts/topology.sh down --prefix "$P" 2>&1 | sed 's/^/  /' || true
  rm -rf "/var/run/dpdk/lb-demo-$P"  # the EAL's runtime directory (--file-prefix)
  if ((rc != 0 && rc != 130)); then
    echo "--- lb-controlplane log (last lines)"; tail -n 15 "$WORK/cp.log" 2>/dev/null || true
    echo "--- lb-dataplane log (last lines)"; tail -n 15 "$WORK/dp.log" 2>/dev/null || true
    for f in "$WORK"/l7n*.log; do
      [[ -f "$f" ]] || continue
      echo "--- lb-l7 log $(basename "$f" .log) (last lines)"; tail -n 10 "$f"
    done
  fi
  rm -rf "$WORK"
  if ((rc == 0)); then echo "demo: PASS in $(($(date +%s) - START)) s"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

lbctl() { ip netns exec "$R" "$LBCTL_BIN" --server "$GRPC" "$@"; }
# One field of backend $1 (2 = be2) from `lbctl backend list --json`.
backend_field() {
  lbctl backend list --json | /usr/bin/python3 -c '
import json, sys
doc = json.load(sys.stdin)
for b in doc.get("backends", []):
    if b["backend"]["address"] == sys.argv[1]:
        print(b.get(sys.argv[2], "")); break' "10.99.0.2$1" "$2"
}
# Waits up to $3 s until backend $1 has health $2; prints how many ms have
# passed since $4 (date +%s%N, default now).
wait_health() {
  local t0=${4:-$(date +%s%N)} deadline h
  deadline=$(($(date +%s) + $3))
  while (($(date +%s) < deadline)); do
    h=$(backend_field "$1" health || true)
    if [[ "$h" == "HEALTH_STATUS_$2" ]]; then
      echo $((($(date +%s%N) - t0) / 1000000))
      return 0
    fi
    sleep 0.1
  done
  return 1
}
# Waits until every online dataplane lcore runs the newest table generation;
# prints that generation.
wait_dataplane_caught_up() {
  local g
  for _ in $(seq 50); do
    if g=$(lbctl stats --json | /usr/bin/python3 -c '
import json, sys
s = json.load(sys.stdin)
g = int(s.get("generation", 0))
online = [c for c in s.get("lcores", []) if c.get("online")]
ok = online and all(int(c.get("observed_generation", 0)) >= g for c in online)
print(g)
sys.exit(0 if ok else 1)'); then
      echo "$g"
      return 0
    fi
    sleep 0.1
  done
  fail "lb-dataplane did not pick up the newest table generation within 5 s"
}

# Sends $1 HTTP requests to the VIP from the client namespace, one new TCP
# connection each; counts answers per backend into OK and COUNT[beN].
declare -A COUNT
send() {
  local body
  OK=0
  FAILED=0
  COUNT=([be1]=0 [be2]=0 [be3]=0)
  for _ in $(seq "$1"); do
    if body=$(ip netns exec "$P-client" curl -s --max-time 4 "http://$VIP/"); then
      case $body in
        "backend $P-be1") COUNT[be1]=$((COUNT[be1] + 1)) ;;
        "backend $P-be2") COUNT[be2]=$((COUNT[be2] + 1)) ;;
        "backend $P-be3") COUNT[be3]=$((COUNT[be3] + 1)) ;;
        *) fail "unexpected answer '$body'" ;;
      esac
      OK=$((OK + 1))
    else
      FAILED=$((FAILED + 1))
    fi
  done
  echo "$OK of $1 requests answered, $FAILED failed"
  for b in be1 be2 be3; do
    printf '  %-9s (10.99.0.2%s)  %3d requests  %s\n' "$P-$b" "${b#be}" "${COUNT[$b]}" \
      "$(printf '%*s' $((COUNT[$b] / 2)) '' | tr ' ' '#')"
  done
}
metric() {  # sum of a Prometheus metric's samples from /metrics
  awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d", s }' "$WORK/metrics"
}
show_metrics() {
  ip netns exec "$R" curl -s --max-time 2 "http://$HTTP/metrics" >"$WORK/metrics" \
    || fail "GET /metrics failed"
  echo "table generation published:      $(metric lb_table_generation)"
  echo "packets forwarded by the lcores: $(metric lb_lcore_forwarded_packets_total)"
  echo "new flows seen by the lcores:    $(metric lb_lcore_new_flows_total)"
  local reasons
  reasons=$(awk '$1 ~ /^lb_lcore_drops_total\{/ && $2 > 0 {
      match($1, /reason="[^"]*"/); r = substr($1, RSTART + 8, RLENGTH - 9); n[r] += $2 }
    END { for (r in n) printf "%s%s=%d", (k++ ? ", " : ""), r, n[r] }' "$WORK/metrics")
  echo "packets dropped by the lcores:   $(metric lb_lcore_drops_total)${reasons:+ ($reasons)}"
}

say "Network: client -> router -> LB node -> 3 nginx backends, and 2 L7 nodes (namespaces $P-*)"
echo "requests reach a backend through lb-dataplane (IP-in-IP); replies go straight back (DSR)"
bash scripts/topology.sh up --prefix "$P" --backends 3 --l7_nodes 2 --lbs 1 --lb_decap "$DECAP_BIN" \
  | grep -v "^topology" | sed 's/^ *//; s/^/  /'
NGINX_DIR=/tmp/$P-nginx

say "lb-controlplane in $R (gRPC $GRPC, metrics http://$HTTP/metrics)"
cat >"$WORK/node.textproto" <<CFG
# Only the node: VIPs, pools and backends are added with lbctl below.
node { tunnel_source_ipv4: "10.99.0.11" }
CFG
ip netns exec "$R" "$CP_BIN" --config "$WORK/node.textproto" --state_dir "$WORK/state" \
  --table_region "$WORK/tables" --stats_region "$WORK/stats" --max_vips 16 --max_backends 64 \
  --grpc_listen "$GRPC" --http_listen "$HTTP" >"$WORK/cp.log" 2>&1 &
CP_PID=$!
for _ in $(seq 100); do lbctl tables >/dev/null 2>&1 && break; sleep 0.1; done
lbctl tables >/dev/null || fail "lb-controlplane's gRPC API did not answer within 10 s"
echo "lb-controlplane is up (pid $CP_PID); state in $WORK/state"

say "Configuring with lbctl: pool, health check, 3 backends, VIP"
run() { echo "\$ lbctl $*"; lbctl "$@" >/dev/null || fail "lbctl $* failed"; }
run pool add web --algorithm maglev
run pool set-health-check web http --http_path /health --interval_ms 500 --timeout_ms 400 \
  --healthy_threshold 2 --unhealthy_threshold 2
for i in 1 2 3; do run backend add "10.99.0.2$i:80" --pool web; done
run vip add "$VIP:80" tcp --pool web
for i in 1 2 3; do
  wait_health "$i" HEALTHY 10 >/dev/null || fail "backend 10.99.0.2$i never became healthy"
done
echo "all three backends pass their health check:"
lbctl backend list | sed 's/^/  /'

say "lb-dataplane in $P-lb1 (DPDK on the veth, as 10.99.0.11)"
start_dataplane() {  # $1 = vdev, rest = EAL memory flags
  local vdev=$1
  shift
  ip netns exec "$P-lb1" "$DP_BIN" -l 0 "$@" --no-pci --file-prefix "lb-demo-$P" \
    --log-level lib.eal:error --vdev="$vdev" -- \
    --table_region "$WORK/tables" --stats_region "$WORK/stats" --wait_for_table_s 5 \
    --ipv4 10.99.0.11 --gateway_ipv4 10.99.0.1 \
    --mtu 1600 --conn_table_size 65536 --sticky_table_size 4096 >"$WORK/dp.log" 2>&1 &
  DP_PID=$!
  for _ in $(seq 100); do
    grep -q "] port [0-9]* " "$WORK/dp.log" && return 0
    kill -0 "$DP_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$DP_PID" 2>/dev/null || true
  wait "$DP_PID" 2>/dev/null || true
  DP_PID=""
  return 1
}
PMD=""
for try in "net_af_xdp0,iface=eth0 af_xdp" "net_af_packet0,iface=eth0 af_packet"; do
  read -r vdev name <<<"$try"
  if start_dataplane "$vdev" "${EAL_MEM[@]}"; then PMD=$name; break; fi
  if [[ "${EAL_MEM[0]}" != --no-huge ]] && start_dataplane "$vdev" --no-huge -m 512; then
    PMD="$name (--no-huge)"; break
  fi
  echo "the $name port did not come up:"; tail -n 3 "$WORK/dp.log" | sed 's/^/  /'
done
[[ -n "$PMD" ]] || fail "lb-dataplane did not start"
echo "lb-dataplane is up on $PMD (pid $DP_PID)"
GEN=$(wait_dataplane_caught_up) || exit 1
echo "it forwards with table generation $GEN (published by lb-controlplane)"
# The first packets wait for ARP on the way: a short, bounded warm-up.
for _ in $(seq 10); do
  ip netns exec "$P-client" curl -s --max-time 1 -o /dev/null "http://$VIP/" && break
  sleep 0.3
done

say "1. 60 HTTP requests from $P-client to http://$VIP/ (a new connection each)"
send 60
((OK == 60)) || fail "$FAILED of 60 requests failed with every backend healthy"
for b in be1 be2 be3; do
  ((COUNT[$b] > 0)) || fail "backend $P-$b got no request"
done
echo "key metrics (lb-controlplane /metrics):"
show_metrics | sed 's/^/  /'

say "2. Backend 10.99.0.22 fails: its nginx is stopped"
NGINX_PID=$(cat "$NGINX_DIR/be2/nginx.pid")
T_DOWN=$(date +%s%N)
kill -QUIT "$NGINX_PID"
for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$NGINX_PID" 2>/dev/null && fail "nginx in $P-be2 did not stop"
echo "nginx in $P-be2 stopped; waiting for the health check (every 500 ms, 2 failures)"
ms=$(wait_health 2 UNHEALTHY 10 "$T_DOWN") || fail "backend 10.99.0.22 was not marked unhealthy within 10 s"
echo "health check marked it unhealthy $ms ms after nginx was stopped:"
lbctl backend list | sed 's/^/  /'
[[ $(backend_field 2 effective_state) == BACKEND_STATE_DOWN ]] \
  || fail "backend 10.99.0.22 is unhealthy but its effective state is not DOWN"
GEN=$(wait_dataplane_caught_up) || exit 1
echo "lb-controlplane published a table without it; lb-dataplane now runs generation $GEN"
send 60
((COUNT[be2] == 0)) || fail "${COUNT[be2]} requests still reached the downed backend"
((OK == 60)) || fail "$FAILED of 60 requests failed after the failure was detected"
echo "traffic moved away: every request answered by the two healthy backends"

say "3. Backend 10.99.0.22 recovers: its nginx is started again"
T_UP=$(date +%s%N)
ip netns exec "$P-be2" nginx -p "$NGINX_DIR/be2" -c "$NGINX_DIR/be2/nginx.conf" \
  -e "$NGINX_DIR/be2/error.log" || fail "nginx did not start again in $P-be2"
echo "nginx in $P-be2 started; waiting for the health check (2 successes)"
ms=$(wait_health 2 HEALTHY 10 "$T_UP") || fail "backend 10.99.0.22 was not marked healthy within 10 s"
echo "health check marked it healthy $ms ms after nginx was started:"
lbctl backend list | sed 's/^/  /'
GEN=$(wait_dataplane_caught_up) || exit 1
echo "lb-controlplane published a table with it again; lb-dataplane now runs generation $GEN"
send 60
((OK == 60)) || fail "$FAILED of 60 requests failed after the backend recovered"
((COUNT[be2] > 0)) || fail "no request returned to the recovered backend"
echo "traffic returned: all three backends answer again"
echo "key metrics (lb-controlplane /metrics):"
show_metrics | sed 's/^/  /'

say "4. The L7 tier: lb-l7 on $P-l7n1 and $P-l7n2, behind lb-dataplane"
echo "VIP $VIP:8080 -> lb-dataplane (Maglev over the two L7 nodes, IP-in-IP) -> lb-decap"
echo "-> lb-l7 on $VIP:8080 (the VIP on lo) -> round robin over the three nginx; replies go"
echo "from the L7 node straight to the client. Each lb-l7 adds 'X-L7-Node' to its answers."
# One ECDSA certificate for demo.lb.test (and the VIP's address) and one
# sticky-cookie key, both shared by the two L7 nodes: either node can finish
# the other's TLS sessions and honours the other's cookies.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=demo.lb.test" -addext "subjectAltName=DNS:demo.lb.test,IP:$VIP" \
  -keyout "$WORK/demo.key" -out "$WORK/demo.crt" 2>/dev/null || fail "openssl could not make a certificate"
head -c 32 /dev/urandom >"$WORK/sticky.key"
chmod 600 "$WORK/demo.key" "$WORK/sticky.key"
for k in 1 2; do
  cat >"$WORK/l7n$k.textproto" <<CFG
sticky_secret_file: "$WORK/sticky.key"
listeners {
  name: "vip_https"
  address: "$VIP"
  port: 8443
  tls { certificates { cert_file: "$WORK/demo.crt" key_file: "$WORK/demo.key" } }
  routes { name: "all_https" pool: "app_sticky"
           response_headers_to_add { name: "X-L7-Node" value: "l7n$k" } }
}
pools {
  name: "app_sticky"
  algorithm: ALGORITHM_ROUND_ROBIN
  backends { address: "10.99.0.21" port: 80 }
  backends { address: "10.99.0.22" port: 80 }
  backends { address: "10.99.0.23" port: 80 }
  sticky_sessions: true
  sticky_ttl_seconds: 600
  eject_after_failures: 1
  eject_ms: 30000
}
listeners {
  name: "vip"
  address: "$VIP"
  port: 8080
  routes { name: "all" pool: "app"
           response_headers_to_add { name: "X-L7-Node" value: "l7n$k" } }
}
pools {
  name: "app"
  algorithm: ALGORITHM_ROUND_ROBIN
  backends { address: "10.99.0.21" port: 80 }
  backends { address: "10.99.0.22" port: 80 }
  backends { address: "10.99.0.23" port: 80 }
  eject_after_failures: 1
  eject_ms: 30000
}
CFG
  ip netns exec "$P-l7n$k" "$L7_BIN" --config "$WORK/l7n$k.textproto" --workers 1 \
    --admin_port 9180 --access_log "$WORK/l7n$k-access.log" >"$WORK/l7n$k.log" 2>&1 &
  L7_PIDS+=($!)
done
for k in 1 2; do
  for _ in $(seq 50); do grep -q "lb-l7 ready" "$WORK/l7n$k.log" && break; sleep 0.1; done
  grep -q "lb-l7 ready" "$WORK/l7n$k.log" || fail "lb-l7 did not start on $P-l7n$k"
  echo "lb-l7 is up on $P-l7n$k (10.99.0.10$k, pid ${L7_PIDS[k - 1]}), listening on $VIP:8080"
done
run pool add l7nodes   # a DSR pool whose backends are the L7 nodes
for k in 1 2; do run backend add "10.99.0.10$k:8080" --pool l7nodes; done
run vip add "$VIP:8080" tcp --pool l7nodes
run vip add "$VIP:8443" tcp --pool l7nodes
GEN=$(wait_dataplane_caught_up) || exit 1
echo "lb-dataplane now runs generation $GEN"
for _ in $(seq 10); do
  ip netns exec "$P-client" curl -s --max-time 1 -o /dev/null "http://$VIP:8080/" && break
  sleep 0.3
done
echo
echo "60 requests to http://$VIP:8080/ (a new connection each):"
declare -A PAIR=()
L7OK=0
for _ in $(seq 60); do
  out=$(ip netns exec "$P-client" curl -sf --max-time 2 -w '%header{x-l7-node}' "http://$VIP:8080/") \
    || continue
  L7OK=$((L7OK + 1))
  body=${out%%$'\n'*}
  key="${out##*$'\n'} ${body##* }"
  PAIR[$key]=$((${PAIR[$key]:-0} + 1))
done
echo "$L7OK of 60 answered"
for k in 1 2; do
  for b in 1 2 3; do
    printf '  L7 node %-9s -> nginx %-9s %3d requests\n' "l7n$k" "$P-be$b" "${PAIR["l7n$k $P-be$b"]:-0}"
  done
done
((L7OK == 60)) || fail "$((60 - L7OK)) of 60 requests through the L7 tier failed"
for k in 1 2; do
  for b in 1 2 3; do
    ((${PAIR["l7n$k $P-be$b"]:-0} > 0)) || fail "L7 node l7n$k never reached nginx $P-be$b"
  done
done
echo "both L7 nodes answer, and each reaches all three nginx. One access log line of l7n1:"
tail -n 1 "$WORK/l7n1-access.log" | sed 's/^/  /'

say "5. HTTPS and a sticky session through L4 and L7: https://demo.lb.test:8443/"
echo "lb-l7 terminates TLS on $VIP:8443 (ECDSA P-256, TLS 1.2/1.3); its pool pins each client"
echo "to one nginx with an HMAC-signed cookie that both L7 nodes honour (one shared key)."
CURL_TLS=(curl -sf --max-time 2 --cacert "$WORK/demo.crt" --resolve "demo.lb.test:8443:$VIP")
for _ in $(seq 10); do
  ip netns exec "$P-client" "${CURL_TLS[@]}" -o /dev/null https://demo.lb.test:8443/ && break
  sleep 0.3
done
echo "\$ openssl s_client -brief -servername demo.lb.test -connect $VIP:8443"
ip netns exec "$P-client" timeout 5 openssl s_client -brief -servername demo.lb.test \
  -CAfile "$WORK/demo.crt" -connect "$VIP:8443" </dev/null 2>&1 \
  | grep -E "^(Protocol version|Ciphersuite|Peer certificate|Verification)" | sed 's/^/  /'
echo "20 requests, a new TCP connection and a new TLS handshake each, one cookie jar:"
declare -A SNODE=() SBACK=()
SOK=0
for _ in $(seq 20); do
  out=$(ip netns exec "$P-client" "${CURL_TLS[@]}" -b "$WORK/jar" -c "$WORK/jar" \
    -w '%header{x-l7-node}' https://demo.lb.test:8443/) || continue
  SOK=$((SOK + 1))
  body=${out%%$'\n'*}
  SNODE[${out##*$'\n'}]=$((${SNODE[${out##*$'\n'}]:-0} + 1))
  SBACK[${body##* }]=$((${SBACK[${body##* }]:-0} + 1))
done
echo "$SOK of 20 answered; L7 nodes: l7n1 ${SNODE[l7n1]:-0}, l7n2 ${SNODE[l7n2]:-0}; nginx:" \
  "$(for b in "${!SBACK[@]}"; do printf '%s %d  ' "$b" "${SBACK[$b]}"; done)"
echo "the cookie lb-l7 set: $(awk '{ sub(/^#HttpOnly_/, "") } !/^#/ && NF >= 7 { print $6 "=" substr($7, 1, 24) "..." }' "$WORK/jar")"
((SOK == 20)) || fail "$((20 - SOK)) of 20 HTTPS requests failed"
((${#SBACK[@]} == 1)) || fail "the sticky session moved between nginx backends"
((${SNODE[l7n1]:-0} > 0 && ${SNODE[l7n2]:-0} > 0)) \
  || echo "(all 20 connections happened to hash to one L7 node)"
echo "every request reached the same nginx, whichever L7 node terminated its TLS"

say "6. A backend crashes under load: nginx of $P-be3 killed -9 during 6 s of wrk"
echo "\$ wrk -t1 -c10 -d6s http://$VIP:8080/   (keep-alive GETs through L4 and L7)"
ip netns exec "$P-client" timeout 20 wrk -t1 -c10 -d6s --timeout 2s "http://$VIP:8080/" \
  >"$WORK/wrk.txt" 2>&1 &
WRK_PID=$!
sleep 2
for pid in $(ip netns pids "$P-be3"); do kill -KILL "$pid" 2>/dev/null || true; done
echo "2 s in: every process of $P-be3 killed -9"
wait "$WRK_PID" || fail "wrk failed: $(tail -n 3 "$WORK/wrk.txt")"
WRK_PID=""
sed 's/^/  /' "$WORK/wrk.txt"
l7_metric() {  # sum of a metric's samples over both lb-l7
  local k
  for k in 1 2; do
    ip netns exec "$P-l7n$k" curl -s --max-time 2 "http://127.0.0.1:9180/metrics"
  done | awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d", s }'
}
WRK_FAILED=$(awk '/Socket errors:/ { gsub(",", ""); s += $4 + $6 + $8 + $10 }
  /Non-2xx or 3xx responses:/ { s += $5 } END { print s + 0 }' "$WORK/wrk.txt")
WRK_TOTAL=$(awk '/requests in/ { print $1 }' "$WORK/wrk.txt")
echo "lb-l7 on both nodes: $(l7_metric lb_l7_upstream_retries_total) request(s) resent to another backend," \
  "$(l7_metric lb_l7_backend_ejections_total) ejection(s) of 10.99.0.23:"
grep -h "ejected" "$WORK"/l7n*.log | sed 's/^/  /'
echo "failed requests: $WRK_FAILED of ${WRK_TOTAL:-?}"
((${WRK_TOTAL:-0} > 0)) || fail "wrk completed no request"
((WRK_FAILED == 0)) || fail "$WRK_FAILED request(s) failed while a backend crashed behind lb-l7"
echo "the crash cost no request: lb-l7 resent the ones caught on be3 and stopped picking it"
