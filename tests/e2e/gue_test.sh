#!/usr/bin/env bash
# shellcheck disable=SC2034  # CP_BIN, TABLES, ... are read by lib.sh
# End to end through a GUE pool: real curl -> router -> lb-dataplane (af_xdp,
# else af_packet) -> IP-in-UDP to port 6080 with the outer source taken per
# flow from node.tunnel_source_ipv4_prefix -> lb-decap --gue_port 6080 ->
# nginx on two backends, replies straight back to the client (DSR).
#
#   gue_test.sh LB_CONTROLPLANE LB_DATAPLANE LB_DECAP
#
# Checks: 20/20 requests through VIP 198.51.100.10 succeed and both backends
# answer; on the backends' bridge ports the LB's packets are UDP to 6080
# (no IP-in-IP at all) from more than one outer source, every one inside
# 10.99.0.128/25; the backends' lb-decap counted decapsulations. Bounded
# (< 60 s); what it starts is killed by pid and the topology removed by
# prefix. Must run as root.
set -euo pipefail
CP_BIN=$(realpath "$1")
DP_BIN=$(realpath "$2")
DECAP_BIN=$(realpath "$3")
. "$(dirname "$0")/lib.sh"
P=g$$

WORK=$(mktemp -d /dev/shm/lb-e2e-gue.XXXXXX)
CP_PID=""
DP_PID=""
CAP_PID=""
stop_all() { stop_pids 30 "$CAP_PID" "$DP_PID" "$CP_PID"; }
show_logs() {
  show_tail 20 "lb-controlplane log" "$WORK/cp.log"
  show_tail 20 "lb-dataplane log" "$WORK/dp.log"
}
install_traps

bash "$TOPO" up --prefix "$P" --backends 2 --lbs 1 --lb_decap "$DECAP_BIN" --gue_port 6080

cat >"$WORK/lb.textproto" <<CFG
node { tunnel_source_ipv4_prefix: "10.99.0.128/25" }
pools {
  name: "web"
  algorithm: ALGORITHM_ROUND_ROBIN
  encapsulation: ENCAPSULATION_GUE
  backends { address: "10.99.0.21" port: 80 }
  backends { address: "10.99.0.22" port: 80 }
}
vips { address: "$VIP4" protocol: PROTOCOL_TCP port: 80 pool: "web" }
CFG
TABLES=$WORK/tables
STATS=$WORK/stats
start_controlplane "" "$WORK/cp.log" "" || fail "lb-controlplane did not publish"
start_dataplane_fallback 1 "$WORK/dp.log"
echo "lb-dataplane on $PMD in $P-lb1 (pid $DP_PID)"

# The LB's packets towards the backends (any encapsulation), on the router.
start_capture "$P-router" l1 "$WORK/l1.pcap" "$WORK/tcpdump.log" \
  "(ip proto 4 or udp) and (dst host 10.99.0.21 or dst host 10.99.0.22)"
wait_log "$WORK/tcpdump.log" "listening on" 50 || fail "tcpdump did not start"

warm_up 5 "http://$VIP4/" || fail "no request through the VIP succeeded during the warm-up"
ok=0
declare -A seen=()
for i in $(seq 20); do
  if body=$(ip netns exec "$P-client" curl -s --max-time 5 "http://$VIP4/"); then
    ok=$((ok + 1))
    seen[$body]=1
  else
    echo "request $i failed"
  fi
done
echo "through the GUE pool: $ok/20 requests, ${#seen[@]} backends answered"

sleep 0.3
stop_pids 30 "$CAP_PID"
CAP_PID=""
tcpdump -nn -r "$WORK/l1.pcap" 2>/dev/null >"$WORK/l1.txt" || true
# Every captured packet is the LB's IP-in-IP or UDP towards a backend: what
# is not GUE to 6080 is IP-in-IP.
ipip=$(grep -vc "\.6080: " "$WORK/l1.txt" || true)
gue=$(grep -c "\.6080: " "$WORK/l1.txt" || true)
sources=$(awk '/\.6080: / { split($3, a, "."); print a[1] "." a[2] "." a[3] "." a[4] }' \
  "$WORK/l1.txt" | sort -u)
nsrc=$(grep -c . <<<"$sources" || true)
echo "LB -> backends: $gue GUE packets, $ipip IP-in-IP, outer sources: $(tr '\n' ' ' <<<"$sources")"
decap=0
for b in 1 2; do
  d=$(ip netns exec "$P-be$b" "$DECAP_BIN" stats --iface eth0 --json |
    /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["decapsulated"])')
  echo "be$b lb-decap decapsulated $d"
  decap=$((decap + d))
done

((ok == 20)) || fail "$ok/20 requests through the GUE pool succeeded"
((${#seen[@]} == 2)) || fail "only ${#seen[@]} backend(s) answered on a round-robin pool"
((gue > 0 && ipip == 0)) || fail "want GUE only towards the backends ($gue GUE, $ipip IP-in-IP)"
((nsrc > 1)) || fail "one outer source for every flow; want several from the prefix"
while read -r s; do
  [[ -z "$s" ]] && continue
  last=${s##*.}
  [[ $s == 10.99.0.* ]] && ((last >= 128)) || fail "outer source $s is outside 10.99.0.128/25"
done <<<"$sources"
((decap > 0)) || fail "the backends' lb-decap decapsulated nothing"
echo "PASS: curl through a GUE pool ($ok/20, $nsrc outer sources, $decap decapsulated)"
