#!/usr/bin/env bash
# End to end (issue 4, test 6): a real Prometheus server (Debian package
# `prometheus`, run directly with its own config and TSDB in a temp dir,
# scrape_interval 1s) scrapes the real lb-controlplane's /metrics while a
# real lb-dataplane (one lcore, --no-huge, net_null vdev: an endless stream
# of packets, so the lcore counters keep moving) receives traffic.
#
#   prometheus_test.sh LB_CONTROLPLANE LB_DATAPLANE
#
# Checks: Prometheus reports the target up; its HTTP API
# (/api/v1/query?query=lb_lcore_rx_packets_total) returns the lcore counter
# of lcore 0 with a value > 0, and the value grows between two queries;
# rate() over it is > 0; `promtool check metrics` passes on the text scraped
# during the traffic. Everything listens on 127.0.0.1 only; every process is
# stopped by pid and the temp dir removed on exit, pass or fail. Bounded
# (< 60 s: every wait has a limit).
set -euo pipefail
CP=$(realpath "${1:?usage: prometheus_test.sh <lb-controlplane> <lb-dataplane>}")
DP=$(realpath "${2:?usage: prometheus_test.sh <lb-controlplane> <lb-dataplane>}")
PY=/usr/bin/python3
. "$(dirname "$0")/lib.sh"

for tool in prometheus promtool curl; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool not installed (scripts/install-deps.sh)"; exit 1; }
done

tmp=$(mktemp -d /tmp/lb-e2e-prom.XXXXXX)
cp_pid=""
dp_pid=""
prom_pid=""
cleanup() {
  local rc=$?
  trap - EXIT
  stop_pids 50 "$prom_pid" "$dp_pid" "$cp_pid"
  if ((rc != 0)); then
    show_tail 20 "lb-controlplane log" "$tmp/cp.err"
    show_tail 20 "lb-dataplane log" "$tmp/dp.log"
    show_tail 20 "prometheus log" "$tmp/prom.log"
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. lb-controlplane: REST + /metrics on an ephemeral loopback port.
cat >"$tmp/boot.textproto" <<'EOF'
node { tunnel_source_ipv4: "192.0.2.1" }
tables { ring_size: 251 }
pools { name: "default"
  backends { address: "10.1.0.1" port: 80 }
  backends { address: "10.1.0.2" port: 80 } }
vips { address: "198.51.100.1" protocol: PROTOCOL_TCP port: 80 pool: "default" }
EOF
"$CP" --config="$tmp/boot.textproto" --state_dir="$tmp/state" --table_region="$tmp/tables" \
  --stats_region="$tmp/stats" --max_ring_size=251 --max_vips=8 --max_backends=64 \
  --max_members=256 --http_listen=127.0.0.1:0 --grpc_listen= \
  >"$tmp/cp.out" 2>"$tmp/cp.err" &
cp_pid=$!
base=""
for _ in $(seq 150); do
  base=$(sed -n 's/.*REST API and \/metrics on \(http:\/\/[^ ]*\).*/\1/p' "$tmp/cp.err")
  [[ -n $base ]] && break
  kill -0 "$cp_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -n $base ]] || fail "lb-controlplane did not start"
target=${base#http://}
target=${target%/}
echo "lb-controlplane /metrics on $base"

# 2. lb-dataplane on a net_null port: packets arrive without end (dropped as
#    not for us), so lb_lcore_rx_packets_total grows for the whole test.
"$DP" -l 0 --no-huge -m 256 --no-pci --file-prefix "lbprom$$" \
  --log-level lib.eal:error --vdev="net_null0" -- \
  --table_region "$tmp/tables" --stats_region "$tmp/stats" --ipv4 192.0.2.2 \
  --gateway_mac 02:00:00:00:00:01 --conn_table_size 4096 \
  --wait_for_table_s 5 >"$tmp/dp.log" 2>&1 &
dp_pid=$!
up=""
for _ in $(seq 100); do
  m=$(curl -sS --max-time 2 "$base/metrics" 2>/dev/null || true)
  if grep -q '^lb_dataplane_up 1$' <<<"$m"; then up=yes; break; fi
  kill -0 "$dp_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -n $up ]] || fail "lb-dataplane did not come up (lb_dataplane_up never 1)"

# 3. Prometheus on a free loopback port, scraping every second.
prom_port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: lb-controlplane
    metrics_path: /metrics
    static_configs:
      - targets: ["$target"]
EOF
promtool check config "$tmp/prometheus.yml" >/dev/null || fail "promtool check config refused our prometheus.yml"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" --storage.tsdb.retention.time=1h \
  >"$tmp/prom.log" 2>&1 &
prom_pid=$!
papi="http://127.0.0.1:$prom_port"
ready=""
for _ in $(seq 200); do
  if curl -sf --max-time 1 "$papi/-/ready" >/dev/null 2>&1; then ready=yes; break; fi
  kill -0 "$prom_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -n $ready ]] || fail "prometheus did not become ready on $papi"
echo "prometheus ready on $papi (pid $prom_pid)"

# query EXPR: prints "<value> <labels as json>" per series, nothing if none.
query() {
  curl -sS --max-time 3 -G "$papi/api/v1/query" --data-urlencode "query=$1" | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
if d.get("status") != "success":
    sys.exit("query failed: " + json.dumps(d))
for r in d["data"]["result"]:
    print(r["value"][1], json.dumps(r["metric"], sort_keys=True))'
}
# wait_for EXPR: until the query returns a series (bounded, 20 s).
wait_for() {
  local out=""
  for _ in $(seq 40); do
    out=$(query "$1" 2>/dev/null || true)
    [[ -n $out ]] && { echo "$out"; return 0; }
    sleep 0.5
  done
  return 1
}

# 4. Prometheus sees the target up and the lcore counters.
up_out=$(wait_for 'up{job="lb-controlplane"} == 1') || {
  curl -sS --max-time 3 "$papi/api/v1/targets" || true
  fail "prometheus never scraped lb-controlplane successfully"
}
echo "up: $up_out"
rx1=$(wait_for 'lb_lcore_rx_packets_total{job="lb-controlplane",lcore="0"} > 0') ||
  fail "prometheus returned no lb_lcore_rx_packets_total{lcore=\"0\"} > 0"
echo "lb_lcore_rx_packets_total (1st query): $rx1"
all=$(query 'lb_lcore_rx_packets_total')
echo "all lcore rx series:"; echo "$all" | sed 's/^/  /'
grep -q '"lcore": "0"' <<<"$all" || fail "lb_lcore_rx_packets_total has no lcore=\"0\" series"
# A later scrape shows more packets (the traffic goes on).
v1=${rx1%% *}
sleep 2.5
rx2=$(query 'lb_lcore_rx_packets_total{job="lb-controlplane",lcore="0"}')
v2=${rx2%% *}
echo "lb_lcore_rx_packets_total (2nd query, 2.5 s later): $v2"
"$PY" -c 'import sys; sys.exit(0 if float(sys.argv[2]) > float(sys.argv[1]) > 0 else 1)' "$v1" "${v2:-0}" ||
  fail "lcore rx counter did not grow between queries ($v1 -> ${v2:-none})"
rate=$(wait_for 'rate(lb_lcore_rx_packets_total{lcore="0"}[5s]) > 0') ||
  fail "rate(lb_lcore_rx_packets_total[5s]) is not > 0"
echo "rate over 5 s: ${rate%% *} packets/s"
for family in lb_lcore_tx_packets_total lb_lcore_drops_total lb_lcore_online lb_table_generation; do
  series=$(query "$family") || fail "query $family failed"
  [[ -n $series ]] || fail "prometheus has no $family series"
done
echo "prometheus also has lb_lcore_tx_packets_total, lb_lcore_drops_total, lb_lcore_online, lb_table_generation"

# 5. promtool on the text scraped during the traffic.
curl -sS --max-time 5 "$base/metrics" >"$tmp/metrics.txt" || fail "GET /metrics failed"
grep -q '^lb_lcore_rx_packets_total{lcore="0"} ' "$tmp/metrics.txt" ||
  fail "scraped text has no lcore 0 rx counter"
promtool check metrics <"$tmp/metrics.txt" >"$tmp/promtool.out" 2>&1 || {
  cat "$tmp/promtool.out"; fail "promtool check metrics"
}
echo "promtool check metrics: ok ($(grep -vc '^#' "$tmp/metrics.txt") samples)"
echo "PASS: prometheus e2e in $(($(date +%s) - START)) s"
