#!/usr/bin/env bash
# GET /metrics of the real lb-controlplane passes `promtool check metrics`,
# without a dataplane and with a running lb-dataplane (net_pcap vdev, one
# lcore, --no-huge), and its values follow what happened: publishes, REST
# changes, packets per lcore / VIP / backend, drops by reason.
#
# Usage: metrics_test.sh <lb-controlplane> <lb-dataplane>
# Everything lives in one temporary directory; the processes this script
# starts are stopped by pid on exit, pass or fail.
set -euo pipefail

CP=${1:?usage: metrics_test.sh <lb-controlplane> <lb-dataplane>}
DP=${2:?usage: metrics_test.sh <lb-controlplane> <lb-dataplane>}
PY=/usr/bin/python3
VIP_LABEL='vip="198.51.100.1:80/tcp"'

tmp=$(mktemp -d /tmp/lb-metrics-test.XXXXXX)
cp_pid=""
dp_pid=""
cleanup() {
  for pid in $dp_pid $cp_pid; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

failures=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
check() {  # check <description> <command...>
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

command -v promtool >/dev/null || { echo "FAIL promtool not installed (scripts/install-deps.sh)"; exit 1; }

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
if [[ -z $base ]]; then
  echo "FAIL lb-controlplane did not start"
  cat "$tmp/cp.err"
  exit 1
fi

scrape() { curl -sS --max-time 5 "$base/metrics" >"$tmp/metrics.txt"; }
value() {  # value <sample name with labels>: prints its value or "absent"
  awk -v k="$1" '$1 == k { print $2; found = 1 } END { if (!found) print "absent" }' \
    "$tmp/metrics.txt"
}
sum_of() {  # sum over every sample of a family
  awk -v f="$1" 'index($1, f "{") == 1 || $1 == f { s += $2 } END { print s + 0 }' \
    "$tmp/metrics.txt"
}
promtool_ok() {
  if promtool check metrics <"$tmp/metrics.txt" >"$tmp/promtool.out" 2>&1; then
    return 0
  fi
  cat "$tmp/promtool.out"
  return 1
}
eq() { [[ "$1" == "$2" ]] || { echo "     got '$1', want '$2'"; return 1; }; }
ge() { [[ "$1" =~ ^[0-9.e+-]+$ ]] && awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }' || {
  echo "     got '$1', want >= $2"; return 1; }; }

# --- without a dataplane ---
scrape
check "no dataplane: promtool check metrics passes" promtool_ok
check "content type is text format 0.0.4" \
  eq "$(curl -sS -o /dev/null -w '%{content_type}' "$base/metrics")" \
  "text/plain; version=0.0.4; charset=utf-8"
check "lb_build_info has the version" eq "$(value 'lb_build_info{version="0.1.0"}')" 1
check "lb_dataplane_up 0" eq "$(value lb_dataplane_up)" 0
check "no lcore samples without a dataplane" eq "$(value 'lb_lcore_rx_packets_total{lcore="0"}')" absent
check "lb_table_generation 1" eq "$(value lb_table_generation)" 1
check "lb_stuck_lcores 0" eq "$(value lb_stuck_lcores)" 0
check "lb_store_conflicts_total 0 (file store)" eq "$(value lb_store_conflicts_total)" 0
check "VIP packets 0" eq "$(value "lb_vip_packets_total{$VIP_LABEL}")" 0
check "VIP has 2 members" eq "$(value "lb_vip_active_members{$VIP_LABEL}")" 2
check "VIP fingerprint info metric" \
  grep -qE "^lb_vip_table_info\{$VIP_LABEL,pool=\"default\",fingerprint=\"[0-9a-f]{16}\"\} 1$" \
  "$tmp/metrics.txt"
check "backend up" eq "$(value 'lb_backend_up{pool="default",backend="10.1.0.1:80",backend_id="1"}')" 1
check "backend health unknown" \
  eq "$(value 'lb_backend_health{pool="default",backend="10.1.0.1:80",backend_id="1",status="unknown"}')" 1
check "publish histogram counts the start-up publish" eq "$(value lb_publish_duration_seconds_count)" 1
check "publish histogram +Inf bucket" \
  eq "$(value 'lb_publish_duration_seconds_bucket{le="+Inf"}')" 1
check "health-check histogram present" eq "$(value lb_health_check_duration_seconds_count)" 0
for family in lb_build_info lb_dataplane_up lb_table_generation lb_stuck_lcores \
  lb_vip_packets_total lb_vip_bytes_total lb_vip_new_flows_total lb_vip_table_info \
  lb_backend_up lb_backend_packets_total lb_backend_flows_total lb_backend_active_flows \
  lb_backend_full_skips_total \
  lb_publish_duration_seconds lb_health_check_duration_seconds; do
  check "HELP and TYPE for $family" grep -q "^# TYPE $family " "$tmp/metrics.txt"
done

# A REST change is a publish: generation, histogram and backend series follow.
curl -sS --max-time 5 -o /dev/null -X POST -H 'Content-Type: application/json' \
  -d '{"address":"10.1.0.3","port":80}' "$base/backends"
scrape
check "after POST /backends: promtool passes" promtool_ok
check "after POST /backends: generation 2" eq "$(value lb_table_generation)" 2
check "after POST /backends: 2 publishes observed" eq "$(value lb_publish_duration_seconds_count)" 2
check "after POST /backends: new backend series" \
  eq "$(value 'lb_backend_up{pool="default",backend="10.1.0.3:80",backend_id="3"}')" 1
check "after POST /backends: VIP has 3 members" eq "$(value "lb_vip_active_members{$VIP_LABEL}")" 3

# --- with a dataplane: 100 SYNs to the VIP (100 flows) and 1 packet for nobody ---
"$PY" - "$tmp/in.pcap" <<'EOF'
import struct, sys

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def syn(src, dst, sport, dport):
    ip_src, ip_dst = bytes(map(int, src.split("."))), bytes(map(int, dst.split(".")))
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", csum(ip_src + ip_dst + struct.pack("!BBH", 0, 6, 20) + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, ip_src, ip_dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    eth = bytes.fromhex("020000000002" "020000000099" "0800")
    return eth + ip + tcp

pkts = [syn(f"203.0.113.{i % 50 + 1}", "198.51.100.1", 20000 + i, 80) for i in range(100)]
pkts.append(syn("203.0.113.1", "198.51.100.99", 1, 80))
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for p in pkts:
        f.write(struct.pack("<IIII", 0, 0, len(p), len(p)) + p)
EOF

timeout 60 "$DP" -l 0 --no-huge -m 256 --no-pci --file-prefix "lbmetrics$$" \
  --log-level lib.eal:error --vdev="net_pcap0,rx_pcap=$tmp/in.pcap,tx_pcap=$tmp/out.pcap" -- \
  --table_region "$tmp/tables" --stats_region "$tmp/stats" --ipv4 192.0.2.2 \
  --gateway_mac 02:00:00:00:00:01 --idle_exit_ms 3000 --conn_table_size 4096 \
  --wait_for_table_s 5 >"$tmp/dp.log" 2>&1 &
dp_pid=$!
seen=""
for _ in $(seq 100); do
  scrape
  if [[ $(value lb_dataplane_up) == 1 && $(value 'lb_lcore_rx_packets_total{lcore="0"}') == 101 ]]; then
    seen=yes
    break
  fi
  kill -0 "$dp_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -z $seen ]]; then
  fail "dataplane running with 101 packets received never showed up in /metrics"
  cat "$tmp/dp.log"
else
  check "with a dataplane: promtool check metrics passes" promtool_ok
  check "lcore online" eq "$(value 'lb_lcore_online{lcore="0"}')" 1
  check "lcore observed the published generation" \
    eq "$(value 'lb_lcore_observed_generation{lcore="0"}')" 2
  check "lcore rx packets 101" eq "$(value 'lb_lcore_rx_packets_total{lcore="0"}')" 101
  check "lcore rx bytes 101 * 54" eq "$(value 'lb_lcore_rx_bytes_total{lcore="0"}')" 5454
  check "lcore tx packets 100" eq "$(value 'lb_lcore_tx_packets_total{lcore="0"}')" 100
  check "lcore tx bytes 100 * 74" eq "$(value 'lb_lcore_tx_bytes_total{lcore="0"}')" 7400
  check "lcore new flows 100" eq "$(value 'lb_lcore_new_flows_total{lcore="0"}')" 100
  check "lcore conn table 100 entries" eq "$(value 'lb_lcore_conn_table_entries{lcore="0"}')" 100
  check "lcore drop not_for_us 1" \
    eq "$(value 'lb_lcore_drops_total{lcore="0",reason="not_for_us"}')" 1
  check "lcore drop no_backend 0 (every reason is exposed)" \
    eq "$(value 'lb_lcore_drops_total{lcore="0",reason="no_backend"}')" 0
  check "lcore evictions 0" eq "$(value 'lb_lcore_conn_table_evictions_total{lcore="0"}')" 0
  check "VIP packets 100" eq "$(value "lb_vip_packets_total{$VIP_LABEL}")" 100
  check "VIP bytes 100 * 40 (inner packets)" eq "$(value "lb_vip_bytes_total{$VIP_LABEL}")" 4000
  check "VIP new flows 100" eq "$(value "lb_vip_new_flows_total{$VIP_LABEL}")" 100
  check "backend flows sum to 100" eq "$(sum_of lb_backend_flows_total)" 100
  check "backend packets sum to 100" eq "$(sum_of lb_backend_packets_total)" 100
  check "backend active flows sum to 100" eq "$(sum_of lb_backend_active_flows)" 100
  check "every backend got flows" \
    ge "$(value 'lb_backend_flows_total{pool="default",backend="10.1.0.3:80",backend_id="3"}')" 1
  # The NIC's own counters (rte_eth_stats_get, copied every monitor period):
  # net_pcap counts every replayed packet, whatever the lcore made of it.
  for _ in $(seq 50); do
    [[ $(value 'lb_port_rx_packets_total{port="0"}') == 101 ]] && break
    sleep 0.1
    scrape
  done
  check "port rx packets = the 101 replayed" eq "$(value 'lb_port_rx_packets_total{port="0"}')" 101
  check "port tx packets 100" eq "$(value 'lb_port_tx_packets_total{port="0"}')" 100
  check "port rx missed 0" eq "$(value 'lb_port_rx_missed_total{port="0"}')" 0
  check "port rx errors 0" eq "$(value 'lb_port_rx_errors_total{port="0"}')" 0
  check "port rx nombuf 0" eq "$(value 'lb_port_rx_nombuf_total{port="0"}')" 0
  check "port tx errors 0" eq "$(value 'lb_port_tx_errors_total{port="0"}')" 0
  check "port counters: promtool passes" promtool_ok
fi

# The dataplane exits after 3 s without packets; the stats stay readable.
for _ in $(seq 100); do kill -0 "$dp_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$dp_pid" 2>/dev/null; then
  fail "lb-dataplane did not exit on --idle_exit_ms"
else
  wait "$dp_pid" && dp_rc=0 || dp_rc=$?
  check "lb-dataplane exit status 0" eq "$dp_rc" 0
fi
scrape
check "after the dataplane left: promtool check metrics passes" promtool_ok
check "after the dataplane left: lb_dataplane_up 0" eq "$(value lb_dataplane_up)" 0

kill -TERM "$cp_pid"
wait "$cp_pid" && cp_rc=0 || cp_rc=$?
check "lb-controlplane exit status 0 on SIGTERM" eq "$cp_rc" 0
check "exit summary names the port counters" \
  grep -qE "stopped: .*; port 0 rx=101 tx=100 rx_missed=0 rx_errors=0 rx_nombuf=0 tx_errors=0" \
  "$tmp/dp.log"

echo "$failures failure(s)"
((failures == 0))
