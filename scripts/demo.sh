#!/usr/bin/env bash
# The demo: one command on a fresh machine, as root.
#
# Installs what is missing, builds, sets up hugepages (or falls back), builds
# a small network of namespaces (scripts/topology.sh: client, router, one LB
# node, three nginx backends), starts lb-controlplane (in the router
# namespace, so its health checker reaches the backends) and lb-dataplane (in
# the LB namespace, af_xdp on its veth), registers VIP 198.51.100.10:80 and
# three backends with lbctl, and shows with real HTTP requests from the client:
#   1. how requests spread over the three backends (Maglev), and key metrics,
#   2. a backend's nginx stopped: the health check marks it down and no
#      request goes there any more (and none fails),
#   3. its nginx started again: it is marked healthy and gets requests again.
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
  dataplane/bpf/lb-decap dataplane/bpf/decap.bpf.o >/dev/null
echo "build: lb-controlplane, lb-dataplane, lbctl, lb-decap up to date in $BUILD/"
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

P=demo$$
R=$P-router
VIP=198.51.100.10
GRPC=127.0.0.1:50051   # inside $R (its own loopback)
HTTP=127.0.0.1:8080    # inside $R: REST API and /metrics
WORK=$(mktemp -d /dev/shm/lb-demo.XXXXXX)
CP_PID=""
DP_PID=""
cleanup() {
  local rc=$?
  trap - EXIT
  trap '' INT TERM  # a second Ctrl-C must not cut the cleanup short
  echo
  echo "== Cleaning up: stopping lb-dataplane and lb-controlplane, removing namespaces $P-*"
  for pid in "$DP_PID" "$CP_PID"; do
    [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "$DP_PID" "$CP_PID"; do
    [[ -z "$pid" ]] && continue
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  bash scripts/topology.sh down --prefix "$P" 2>&1 | sed 's/^/  /' || true
  if ((rc != 0 && rc != 130)); then
    echo "--- lb-controlplane log (last lines)"; tail -n 15 "$WORK/cp.log" 2>/dev/null || true
    echo "--- lb-dataplane log (last lines)"; tail -n 15 "$WORK/dp.log" 2>/dev/null || true
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
    if body=$(ip netns exec "$P-client" curl -s --max-time 2 "http://$VIP/"); then
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

say "Network: client -> router -> LB node -> 3 nginx backends (namespaces $P-*)"
echo "requests reach a backend through lb-dataplane (IP-in-IP); replies go straight back (DSR)"
bash scripts/topology.sh up --prefix "$P" --backends 3 --lbs 1 --lb_decap "$DECAP_BIN" \
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
