#!/usr/bin/env bash
# shellcheck disable=SC2034  # CP_BIN, TABLES, DP_MTU, ... are read by lib.sh
# End to end with jumbo frames: every link at MTU 9100, the client at 9000,
# lb-dataplane on net_af_packet (9,216-byte ring frames, four to a block; af_xdp on veth stops near
# 3,500) with --mtu 9080, lb-decap in tc mode (native XDP on veth refuses
# such an MTU), nginx on one backend.
#
#   jumbo_test.sh LB_CONTROLPLANE LB_DATAPLANE LB_DECAP
#
# Checks: the dataplane sized its mbufs for --mtu (af_packet reports MTU 1500
# whatever the interface's; its port line says mbuf_data >= 9100); 5/5 uploads of 256 KiB through VIP 198.51.100.10 get
# nginx's answer; on the backend's bridge port, IP-in-IP packets larger than
# 9,000 bytes crossed (full-size 8,960-byte segments encapsulated whole, not
# fragmented or clamped); the dataplane dropped nothing as truncated or
# too_big. Before mbufs followed the MTU, af_packet could not hand such frames
# to 2 KiB mbufs and every upload hung. Bounded (< 90 s); everything it starts
# is killed by pid and the topology removed by prefix. Must run as root.
set -euo pipefail
CP_BIN=$(realpath "$1")
DP_BIN=$(realpath "$2")
DECAP_BIN=$(realpath "$3")
. "$(dirname "$0")/lib.sh"
P=j$$

WORK=$(mktemp -d /dev/shm/lb-e2e-jumbo.XXXXXX)
CP_PID=""
DP_PID=""
CAP_PID=""
stop_all() { stop_pids 30 "$CAP_PID" "$DP_PID" "$CP_PID"; }
show_logs() {
  show_tail 20 "lb-controlplane log" "$WORK/cp.log"
  show_tail 30 "lb-dataplane log" "$WORK/dp.log"
}
install_traps

bash "$TOPO" up --prefix "$P" --backends 1 --lbs 1 --lb_decap "$DECAP_BIN" \
  --mtu 9100 --decap_mode tc
# The client's own MTU stays below the LB's egress MTU minus the 20-byte
# tunnel header, so its full-size segments need no PMTU discovery.
ip -n "$P-client" link set eth0 mtu 9000

cat >"$WORK/lb.textproto" <<CFG
node { tunnel_source_ipv4: "10.99.0.11" }
pools { name: "web" backends { address: "10.99.0.21" port: 80 } }
vips { address: "$VIP4" protocol: PROTOCOL_TCP port: 80 pool: "web" }
CFG
TABLES=$WORK/tables
STATS=$WORK/stats
start_controlplane "" "$WORK/cp.log" "" || fail "lb-controlplane did not publish"

DP_MTU=9080
start_dataplane 1 "net_af_packet0,iface=eth0,framesz=9216,blocksz=36864,framecnt=512" \
  "$WORK/dp.log" || fail "lb-dataplane did not start on af_packet"
data=$(grep -o "mbuf_data [0-9]*" "$WORK/dp.log" | head -n 1 | awk '{ print $2 }')
echo "lb-dataplane port: $(grep -o "port 0 .*" "$WORK/dp.log" | head -n 1)"
((${data:-0} >= 9100)) || fail "mbufs hold ${data:-?} bytes, not a 9100-MTU frame"

start_capture "$P-router" b1 "$WORK/b1.pcap" "$WORK/tcpdump.log" "ip proto 4 and greater 9000"
wait_log "$WORK/tcpdump.log" "listening on" 50 || fail "tcpdump did not start"

head -c 262144 /dev/urandom >"$WORK/body"
warm_up 5 "http://$VIP4/" || fail "no request through the VIP succeeded during the warm-up"
ok=0
for i in $(seq 5); do
  if out=$(ip netns exec "$P-client" curl -s --max-time 10 --data-binary "@$WORK/body" \
    -H "Content-Type: application/octet-stream" "http://$VIP4/upload") &&
    [[ $out == received ]]; then
    ok=$((ok + 1))
  else
    echo "upload $i failed: '${out:-}'"
  fi
done
echo "uploads of 256 KiB through the VIP: $ok/5"

sleep 0.3
stop_pids 30 "$CAP_PID"
CAP_PID=""
big=$(tcpdump -nn -r "$WORK/b1.pcap" 2>/dev/null | wc -l)
echo "IP-in-IP packets > 9000 bytes on the backend's port: $big"
stop_pids 50 "$DP_PID"
DP_PID=""
summary=$(grep "stopped:" "$WORK/dp.log" | tail -n 1)
echo "lb-dataplane: $summary"

((ok == 5)) || fail "$ok/5 uploads succeeded"
((big >= 20)) || fail "only $big jumbo IP-in-IP packets reached the backend"
for reason in truncated too_big; do
  if grep -q "$reason=[1-9]" <<<"$summary"; then fail "the dataplane dropped packets as $reason"; fi
done
echo "PASS: jumbo frames through the LB ($ok/5 uploads, $big encapsulated jumbo packets)"
