#!/usr/bin/env bash
# shellcheck disable=SC2034  # CP_BIN, TABLES, ... are read by lib.sh
# End to end (issue 12): the exception path. lb-dataplane owns the LB node's
# eth0 (af_xdp; af_packet if af_xdp does not come up); the node's kernel has
# its own address 10.99.0.111 and a TCP listener (python3 http.server :8111).
#
#   exception_path_test.sh LB_CONTROLPLANE LB_DATAPLANE LB_DECAP LBCTL
#
#  1. Without --exception_path (the address on lo): from the router, ping and
#     a TCP connection to 10.99.0.111 fail (the router's ARP requests, from
#     the gateway, only teach the dataplane the gateway's MAC); with a static
#     neighbour on the router they still fail and the dataplane counts the
#     packets as not_for_us drops, as before.
#  2. With --exception_path=xpk<pid> (a net_tap interface; the address moved
#     onto it): ping and an HTTP request to 10.99.0.111:8111 from the router
#     succeed through the DPDK port; lbctl stats shows to_kernel > 0 and
#     from_kernel > 0; the VIP is still forwarded (curl from the client).
# Bounded (< 60 s); everything it starts is killed by pid, the topology
# removed by prefix, also on failure. Must run as root.
set -euo pipefail
CP_BIN=$(realpath "$1")
DP_BIN=$(realpath "$2")
DECAP_BIN=$(realpath "$3")
LBCTL_BIN=$(realpath "$4")
. "$(dirname "$0")/lib.sh"
P=xp$$
TAP=xpk$$
KADDR=10.99.0.111
WORK=$(mktemp -d /dev/shm/lb-e2e-xp.XXXXXX)
TABLES=$WORK/tables
STATS=$WORK/stats
PIDS=()
DP_PID=""
CP_PID=""
stop_all() { stop_pids 30 "$DP_PID" "${PIDS[@]}" "$CP_PID"; }
show_logs() {
  show_tail 20 "lb-controlplane log" "$WORK/cp.log"
  show_tail 30 "lb-dataplane log" "$WORK/dp.log"
  show_tail 10 "kernel http server" "$WORK/http.log"
}
install_traps

bash "$TOPO" up --prefix "$P" --backends 1 --lb_decap "$DECAP_BIN" >/dev/null
cat >"$WORK/lb.textproto" <<CFG
pools {
  name: "web4"
  algorithm: ALGORITHM_MAGLEV
  backends { address: "10.99.0.21" port: 80 }
}
vips { address: "$VIP4" protocol: PROTOCOL_TCP port: 80 pool: "web4" }
CFG
start_controlplane "$P-router" "$WORK/cp.log" "$GRPC" || fail "lb-controlplane did not publish"

# The node's kernel service: a TCP listener on every address of the node.
ip netns exec "$P-lb1" ip link set lo up
ip netns exec "$P-lb1" ip addr add "$KADDR/32" dev lo
ip netns exec "$P-lb1" /usr/bin/python3 -m http.server 8111 --bind 0.0.0.0 \
  --directory "$WORK" >"$WORK/http.log" 2>&1 &
PIDS+=($!)

# stat NAME: the sum over lcores of an lbctl stats --json counter (drops by
# reason as drops.NAME).
stat() {
  lbctl stats --json | /usr/bin/python3 -c '
import json, sys
name = sys.argv[1]
doc = json.loads(sys.stdin.read())
total = 0
for l in doc.get("lcores", []):
    if name.startswith("drops."):
        total += int(l.get("drops", {}).get(name[6:], 0))
    else:
        camel = name.split("_")[0] + "".join(w.title() for w in name.split("_")[1:])
        total += int(l.get(name, l.get(camel, 0)))
print(total)' "$1"
}
kernel_ping() { ip netns exec "$P-router" ping -c 2 -i 0.3 -W 1 "$KADDR" >/dev/null 2>&1; }
kernel_tcp() {
  ip netns exec "$P-router" curl -s --max-time 2 -o /dev/null -w '%{http_code}' \
    "http://$KADDR:8111/lb.textproto" 2>/dev/null || true
}

# 1. Without the exception path.
start_dataplane_fallback 1 "$WORK/dp.log"
echo "lb-dataplane on $PMD, no exception path"
warm_up 10 "http://$VIP4/" || fail "VIP not forwarded (no exception path)"
ip netns exec "$P-router" ip neigh flush dev br0 2>/dev/null || true
if kernel_ping; then fail "ping to the kernel address succeeded without the exception path"; fi
code=$(kernel_tcp)
[[ "$code" != 200 ]] || fail "TCP to the kernel address succeeded without the exception path"
# The router cannot resolve .111 (ARP dropped as arp_ignored); give it a
# static neighbour so that IP packets reach the dataplane too (not_for_us).
mac=$(ip netns exec "$P-lb1" cat /sys/class/net/eth0/address)
ip netns exec "$P-router" ip neigh replace "$KADDR" lladdr "$mac" dev br0
if kernel_ping; then fail "ping to the kernel address succeeded without the exception path"; fi
code=$(kernel_tcp)
[[ "$code" != 200 ]] || fail "TCP to the kernel address succeeded without the exception path"
arp_drops=$(stat drops.arp_ignored)
nfu_drops=$(stat drops.not_for_us)
echo "without the exception path: ping and TCP to $KADDR fail; drops arp_ignored=$arp_drops not_for_us=$nfu_drops"
((nfu_drops > 0)) || fail "packets for the kernel address were not counted as not_for_us"
ip netns exec "$P-router" ip neigh del "$KADDR" dev br0 2>/dev/null || true
stop_pids 30 "$DP_PID"
DP_PID=""

# 2. With the exception path.
DP_EXTRA_ARGS="--exception_path=$TAP"
start_dataplane 1 "$VDEV" "$WORK/dp.log" || fail "lb-dataplane with --exception_path did not start"
wait_log "$WORK/dp.log" "exception path: kernel interface $TAP" 50 "$DP_PID" ||
  fail "lb-dataplane did not create the exception path"
ip netns exec "$P-lb1" ip addr del "$KADDR/32" dev lo
ip netns exec "$P-lb1" ip addr add "$KADDR/24" dev "$TAP"
ip netns exec "$P-lb1" ip link set "$TAP" up
echo "lb-dataplane on $PMD with --exception_path=$TAP ($KADDR/24 on it)"
ok=0
for _ in $(seq 20); do
  if kernel_ping; then ok=1; break; fi
  sleep 0.3
done
((ok)) || fail "ping to the kernel address through the exception path failed"
code=$(kernel_tcp)
[[ "$code" == 200 ]] || fail "HTTP to $KADDR:8111 through the exception path: got '$code'"
warm_up 10 "http://$VIP4/" || fail "VIP not forwarded with the exception path on"
to_k=$(stat to_kernel)
from_k=$(stat from_kernel)
echo "with the exception path: ping and HTTP to $KADDR:8111 answered; to_kernel=$to_k from_kernel=$from_k; VIP forwarded"
((to_k > 0)) || fail "to_kernel stayed 0"
((from_k > 0)) || fail "from_kernel stayed 0"
echo "PASS: exception path e2e ($PMD) in $(($(date +%s) - START)) s"
