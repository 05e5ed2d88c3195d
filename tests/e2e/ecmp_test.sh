#!/usr/bin/env bash
# shellcheck disable=SC2034  # CP_BIN, TABLES, DP_IPV6, ... are read by lib.sh
# End to end (issue 4, test 4): two LB nodes behind an ECMP route, one
# removed under long-lived TCP connections. Network from scripts/topology.sh
# --lbs 2 (prefix m<pid>): the router hashes 198.51.100.10 on L4
# (fib_multipath_hash_policy=1) over 10.99.0.11 (<p>-lb1) and 10.99.0.12
# (<p>-lb2).
#
#   ecmp_test.sh LB_CONTROLPLANE LB_DATAPLANE LB_DECAP LBCTL
#
# Each LB node is its own machine: its own lb-controlplane (inside the node's
# namespace, gRPC on that namespace's loopback), its own state dir and
# table/stats regions, the same pools and VIPs (only node{} differs: the
# tunnel source). Checks:
#  * both control planes publish byte-identical Maglev rings (the per-VIP
#    fingerprints of `lbctl tables --json` are equal);
#  * 20 HTTP/1.1 keep-alive connections from the client (python3, one request
#    every 200 ms per connection) spread over both nodes, and both nodes
#    forwarded traffic (lbctl stats of each node; a capture on the router's
#    port to lb2 names the flows it carried);
#  * the route is replaced by its lb1 nexthop alone: lb2's flows arrive at
#    lb1, which has no connection entry for them but picks the same backend by
#    Maglev; every connection keeps answering for 3 more seconds. Prints the
#    share of moved connections (and of all) that survived; asserts >= 90 %.
# Bounded (< 60 s: every wait has a limit); everything it starts is killed by
# pid, the topology removed by prefix, also on failure. Must run as root.
set -euo pipefail
CP_BIN=$(realpath "$1")
DP_BIN=$(realpath "$2")
DECAP_BIN=$(realpath "$3")
LBCTL_BIN=$(realpath "$4")
. "$(dirname "$0")/lib.sh"
P=m$$
NCONN=20

WORK=$(mktemp -d /dev/shm/lb-e2e-ecmp.XXXXXX)
PIDS=()  # every long-running process we started (clients, captures, dataplanes, control planes)
DP_PID=""
stop_all() { stop_pids 30 "${PIDS[@]}" "$DP_PID"; }
show_logs() {
  for k in 1 2; do
    show_tail 15 "lb-controlplane $k log" "$WORK/cp$k.log"
    show_tail 15 "lb-dataplane $k log" "$WORK/dp$k.log"
  done
  show_tail 30 "clients" "$WORK/clients.out"
}
install_traps

# 1. The network: client, router (ECMP), lb1, lb2, be1..3 (nginx + lb-decap).
bash "$TOPO" up --prefix "$P" --backends 3 --lbs 2 --lb_decap "$DECAP_BIN" >/dev/null

# 2. One control plane per LB node, in the node's namespace.
for k in 1 2; do
  mkdir -p "$WORK/n$k"
  node_config "10.99.0.1$k" >"$WORK/n$k/lb.textproto"
  ip netns exec "$P-lb$k" "$CP_BIN" --config "$WORK/n$k/lb.textproto" --state_dir "$WORK/n$k/state" \
    --table_region "$WORK/n$k/tables" --stats_region "$WORK/n$k/stats" --max_vips 16 \
    --max_backends 64 --grpc_listen="$GRPC" --http_listen= >"$WORK/cp$k.log" 2>&1 &
  PIDS+=($!)
done
for k in 1 2; do
  wait_log "$WORK/cp$k.log" "published generation=1 " 100 || fail "lb-controlplane $k did not publish"
done
# VIP fingerprint lines of each node (node_tables without its generation).
fp1=$(node_tables 1 | grep -v "^generation ") || fail "lbctl tables on node 1 failed"
fp2=$(node_tables 2 | grep -v "^generation ") || fail "lbctl tables on node 2 failed"
echo "node 1 tables: $fp1"
echo "node 2 tables: $fp2"
[[ -n $fp1 && $fp1 != *" -"* ]] || fail "node 1 published no VIP fingerprint"
[[ "$fp1" == "$fp2" ]] || fail "the two control planes built different Maglev tables"

# 3. One dataplane per LB node (af_xdp, net_af_packet if the port does not come up).
for k in 1 2; do
  TABLES=$WORK/n$k/tables
  STATS=$WORK/n$k/stats
  DP_FILE_PREFIX=lb-e2e-$P-$k
  start_dataplane_fallback "$k" "$WORK/dp$k.log" "$k"
  PIDS+=("$DP_PID")
  DP_PID=""
done
echo "lb-dataplane on $PMD in $P-lb1 and $P-lb2"

# Warm-up through the VIP (ARP on the way).
warm_up 10 "http://$VIP4/" || fail "no request through the VIP succeeded during the warm-up"

# forwarded K: packets node K's dataplane forwarded (sum over lcores).
forwarded() {
  node_lbctl "$1" stats --json | /usr/bin/python3 -c '
import json, sys
doc = json.loads(sys.stdin.read())
print(sum(int(l.get("forwarded", 0)) for l in doc.get("lcores", [])))'
}

# 4. Long-lived keep-alive connections. tests/e2e/keepalive_clients.py VIP N TRIGGER AFTER_S
#    LIMIT_S RECV_S prints READY when every connection has answered, keeps
#    requesting until the file TRIGGER exists (at most LIMIT_S) plus AFTER_S
#    (counting those requests as "after"), and prints one JSON line per
#    connection; a connection that failed, or whose last request got no answer
#    within RECV_S, has an "error".

# Capture on the router's port to lb2: which client ports it carries.
start_capture "$P-router" l2 "$WORK/l2.pcap" "$WORK/tcpdump.log" "tcp and dst host $VIP4"
PIDS+=("$CAP_PID")
wait_log "$WORK/tcpdump.log" "listening on" 50 || fail "tcpdump on l2 did not start"

fw1_0=$(forwarded 1)
fw2_0=$(forwarded 2)
ip netns exec "$P-client" timeout 40 /usr/bin/python3 "$ROOT/tests/e2e/keepalive_clients.py" "$VIP4" "$NCONN" \
  "$WORK/switched" 3 25 2 >"$WORK/clients.out" 2>&1 &
CL_PID=$!
PIDS+=("$CL_PID")
wait_log "$WORK/clients.out" "^READY" 100 || fail "the clients did not get ready"
ready=$(grep "^READY" "$WORK/clients.out" | wc -w)
ready=$((ready - 1))
((ready == NCONN)) || fail "only $ready/$NCONN keep-alive connections answered before the switch"
sleep 2  # keep-alive traffic over both nodes

# 5. Both nodes forwarded; which flows ride on lb2.
fw1_1=$(forwarded 1)
fw2_1=$(forwarded 2)
d1=$((fw1_1 - fw1_0))
d2=$((fw2_1 - fw2_0))
echo "before the switch: lb1 forwarded $d1 packets, lb2 forwarded $d2 (keep-alive traffic)"
kill -INT "$CAP_PID" 2>/dev/null || true
wait "$CAP_PID" 2>/dev/null || true
declare -A on_lb2=()
while read -r sport; do on_lb2[$sport]=1; done < <(
  tcpdump -nn -r "$WORK/l2.pcap" 2>/dev/null |
    sed -n "s/.* 172\.31\.1\.2\.\([0-9]*\) > $VIP4\.80:.*/\1/p" | sort -u)
echo "connections carried by lb2: ${#on_lb2[@]} of $NCONN"

# 6. lb2's nexthop removed: the route points at lb1 alone.
ip netns exec "$P-router" ip route replace "$VIP4/32" via 10.99.0.11 dev br0
touch "$WORK/switched"
echo "router: $(ip netns exec "$P-router" ip route show "$VIP4/32" | tr '\n' ' ')"
wait_log "$WORK/clients.out" "^DONE" 100 || fail "the clients did not finish"
wait "$CL_PID" 2>/dev/null || true
fw2_2=$(forwarded 2)

# 7. Survival: a connection survived when it never failed and kept answering
#    (>= 10 requests in the 3 s after the switch, same backend).
read -r total alive moved moved_alive dist < <(
  grep '^{' "$WORK/clients.out" | /usr/bin/python3 -c '
import json, sys
moved_ports = set(int(p) for p in sys.argv[1:])
total = alive = moved = moved_alive = 0
dist = {}
for line in sys.stdin:
    c = json.loads(line)
    total += 1
    ok = not c["error"] and c["after"] >= 10
    alive += ok
    dist[c["backend"]] = dist.get(c["backend"], 0) + 1
    if c["port"] in moved_ports:
        moved += 1
        moved_alive += ok
    if not ok:
        print("dead connection:", line.strip(), file=sys.stderr)
print(total, alive, moved, moved_alive,
      ",".join("%s=%d" % (b.split()[-1], k) for b, k in sorted(dist.items())))' "${!on_lb2[@]}")
echo "backends of the connections: $dist"
echo "after the switch: lb2 forwarded $((fw2_2 - fw2_1)) more packets (in-flight only)"
echo "moved from lb2 to lb1: $moved connections, $moved_alive survived; all: $alive/$total survived"

# 8. Verdicts.
((d1 > 0)) || fail "lb1 forwarded nothing before the switch"
((d2 > 0)) || fail "lb2 forwarded nothing before the switch"
((moved > 0)) || fail "no connection rode on lb2 (nothing moved)"
((moved < total)) || fail "every connection rode on lb2 (ECMP did not spread)"
((total == NCONN)) || fail "the client reported $total/$NCONN connections"
((moved_alive * 10 >= moved * 9)) || fail "only $moved_alive/$moved moved connections survived (< 90 %)"
((alive * 10 >= total * 9)) || fail "only $alive/$total connections survived (< 90 %)"
share=$(awk -v a="$moved_alive" -v m="$moved" 'BEGIN { printf "%.1f", 100 * a / m }')
echo "RESULT ecmp: moved=$moved moved_survived=$moved_alive share_survived=${share}% all_survived=$alive/$total"
echo "PASS: ecmp e2e ($PMD) in $(($(date +%s) - START)) s"
