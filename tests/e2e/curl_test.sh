#!/usr/bin/env bash
# shellcheck disable=SC2034  # CP_BIN, TABLES, DP_IPV6, ... are read by lib.sh
# End to end: real curl -> router -> lb-dataplane (af_xdp on veth) -> IP-in-IP
# / IPv6-in-IPv6 -> lb-decap -> nginx on three backends, replies straight back
# to the client (DSR). Network from scripts/topology.sh (prefix e<pid>).
#
#   curl_test.sh LB_CONTROLPLANE LB_DATAPLANE LB_DECAP
#
# Checks: 30/30 IPv4 requests through VIP 198.51.100.10 succeed, at least 2
# distinct backends answer, and 10/10 IPv6 requests through
# [2001:db8:100::10] succeed; the dataplane forwarded packets and every
# backend that answered decapsulated some (lb-decap stats); on the router,
# no packet with a VIP source crossed the LB's bridge port while the backends'
# ports carried the replies (DSR). Bounded (< 90 s: every wait has a limit);
# everything it starts is killed by pid and the topology removed by prefix,
# also on failure. Must run as root.
set -euo pipefail
CP_BIN=$(realpath "$1")
DP_BIN=$(realpath "$2")
DECAP_BIN=$(realpath "$3")
. "$(dirname "$0")/lib.sh"
P=e$$
VIP6=2001:db8:100::10

WORK=$(mktemp -d /dev/shm/lb-e2e-curl.XXXXXX)
CP_PID=""
DP_PID=""
CAP_PIDS=()
stop_all() { stop_pids 30 "${CAP_PIDS[@]}" "$DP_PID" "$CP_PID"; }
show_logs() {
  show_tail 20 "lb-controlplane log" "$WORK/cp.log"
  show_tail 20 "lb-dataplane log" "$WORK/dp.log"
}
install_traps

# 1. The network: client, router, lb1, be1..3 (nginx + lb-decap).
bash "$TOPO" up --prefix "$P" --backends 3 --lbs 1 --lb_decap "$DECAP_BIN"

# 2. The control plane in the root namespace; only the table/stats regions
#    connect it to the dataplane (no listeners).
cat > "$WORK/lb.textproto" <<CFG
node { tunnel_source_ipv4: "10.99.0.11" tunnel_source_ipv6: "fd00:99::11" }
pools {
  name: "web4"
  algorithm: ALGORITHM_MAGLEV
  backends { address: "10.99.0.21" port: 80 }
  backends { address: "10.99.0.22" port: 80 }
  backends { address: "10.99.0.23" port: 80 }
}
pools {
  name: "web6"
  algorithm: ALGORITHM_MAGLEV
  backends { address: "fd00:99::21" port: 80 }
  backends { address: "fd00:99::22" port: 80 }
  backends { address: "fd00:99::23" port: 80 }
}
vips { address: "$VIP4" protocol: PROTOCOL_TCP port: 80 pool: "web4" }
vips { address: "$VIP6" protocol: PROTOCOL_TCP port: 80 pool: "web6" }
CFG
TABLES=$WORK/tables
STATS=$WORK/stats
start_controlplane "" "$WORK/cp.log" "" || fail "lb-controlplane did not publish"

# 3. The dataplane inside <p>-lb1 on af_xdp over its veth (net_af_packet if
#    the af_xdp port does not come up).
DP_IPV6=yes
start_dataplane_fallback 1 "$WORK/dp.log"
echo "lb-dataplane on $PMD in $P-lb1 (pid $DP_PID)"

# 4. Captures on the router: the LB's bridge port and the backends' ports.
for port in l1 b1 b2 b3; do
  start_capture "$P-router" "$port" "$WORK/$port.pcap" "$WORK/tcpdump-$port.log" \
    "src host $VIP4 or src host $VIP6"
  CAP_PIDS+=("$CAP_PID")
done
for port in l1 b1 b2 b3; do
  wait_log "$WORK/tcpdump-$port.log" "listening on" 50 || fail "tcpdump on $port did not start"
done

# 5. Traffic. The first request may wait for ARP/NDP on the way; allow a
#    short warm-up (bounded) before counting. The verdict needs every request
#    to succeed, so a loop stops after 3 failures (keeps the test < 90 s).
warm() {  # $1 = URL
  warm_up 5 "$1" || fail "no request to $1 succeeded during the warm-up (12 s)"
}
warm "http://$VIP4/"
ok4=0
declare -A seen=()
for i in $(seq 30); do
  if body=$(ip netns exec "$P-client" curl -s --max-time 5 "http://$VIP4/"); then
    ok4=$((ok4 + 1))
    seen[$body]=$((${seen[$body]:-0} + 1))
  else
    echo "IPv4 request $i failed"
    ((i - ok4 < 3)) || break
  fi
done
echo "IPv4 via VIP $VIP4: $ok4/30 succeeded"
for b in "${!seen[@]}"; do echo "  $b: ${seen[$b]}"; done

warm "http://[$VIP6]/"
ok6=0
declare -A seen6=()
for i in $(seq 10); do
  if body=$(ip netns exec "$P-client" curl -g -s --max-time 5 "http://[$VIP6]/"); then
    ok6=$((ok6 + 1))
    seen6[$body]=$((${seen6[$body]:-0} + 1))
  else
    echo "IPv6 request $i failed"
    ((i - ok6 < 3)) || break
  fi
done
echo "IPv6 via VIP [$VIP6]: $ok6/10 succeeded"
for b in "${!seen6[@]}"; do echo "  $b: ${seen6[$b]}"; done

# 6. Backend decapsulation counters, then stop the captures and the
#    dataplane (it prints its counters on exit).
sleep 0.3
declare -A decap=()
decap_total=0
for i in 1 2 3; do
  js=$(ip netns exec "$P-be$i" "$DECAP_BIN" stats --iface eth0 --json) \
    || fail "lb-decap stats failed on $P-be$i"
  decap[$P-be$i]=$(grep -o '"decapsulated":[0-9]*' <<<"$js" | head -n 1 | cut -d: -f2)
  [[ -n "${decap[$P-be$i]}" ]] || fail "lb-decap stats on $P-be$i: no decapsulated count in '$js'"
  decap_total=$((decap_total + ${decap[$P-be$i]}))
done
echo "lb-decap decapsulated: be1=${decap[$P-be1]} be2=${decap[$P-be2]} be3=${decap[$P-be3]} total=$decap_total"
for pid in "${CAP_PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
for pid in "${CAP_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
CAP_PIDS=()
kill -TERM "$DP_PID" 2>/dev/null || true
for _ in $(seq 50); do kill -0 "$DP_PID" 2>/dev/null || break; sleep 0.1; done
wait "$DP_PID" 2>/dev/null || true
DP_PID=""
stop_line=$(grep "] stopped: " "$WORK/dp.log" || true)
echo "${stop_line:-lb-dataplane printed no counters}"
forwarded=$(sed -n 's/.* forwarded=\([0-9]*\).*/\1/p' <<<"$stop_line")

count() { tcpdump -nn -r "$1" 2>/dev/null | wc -l; }
via_lb=$(count "$WORK/l1.pcap")
via_be=0
for port in b1 b2 b3; do via_be=$((via_be + $(count "$WORK/$port.pcap"))); done
echo "packets with a VIP source: $via_lb on the LB's port, $via_be on the backends' ports"

# 7. Verdicts.
((ok4 == 30)) || fail "IPv4: only $ok4/30 requests succeeded"
((${#seen[@]} >= 2)) || fail "IPv4: only ${#seen[@]} distinct backend(s) answered"
for b in "${!seen[@]}"; do
  [[ "$b" =~ ^backend\ $P-be[1-3]$ ]] || fail "IPv4: unexpected page '$b'"
done
((ok6 == 10)) || fail "IPv6: only $ok6/10 requests succeeded"
for b in "${!seen6[@]}"; do
  [[ "$b" =~ ^backend\ $P-be[1-3]$ ]] || fail "IPv6: unexpected page '$b'"
done
if [[ -z "$forwarded" ]] || ((forwarded == 0)); then fail "lb-dataplane forwarded nothing"; fi
for b in "${!seen[@]}" "${!seen6[@]}"; do
  n=${b#backend }
  ((${decap[$n]:-0} > 0)) || fail "$n answered but lb-decap decapsulated nothing there"
done
((via_lb == 0)) || fail "DSR: $via_lb packets from a VIP source crossed the LB's port"
((via_be > 0)) || fail "DSR: no reply from a VIP source seen on the backends' ports"
echo "PASS: curl e2e ($PMD) in $(($(date +%s) - START)) s"
