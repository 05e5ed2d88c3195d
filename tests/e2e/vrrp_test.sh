#!/usr/bin/env bash
# shellcheck disable=SC2034  # CP_BIN, TABLES, DP_EXTRA_ARGS, ... are read by lib.sh
# End to end (issue 12): an active-passive pair with keepalived, where the
# router has no ECMP. Network from scripts/topology.sh --lbs 2 (prefix
# v<pid>); the router routes the VIP 198.51.100.10 via the floating address
# 10.99.0.10, which VRRP keeps on the master.
#
#   vrrp_test.sh LB_CONTROLPLANE LB_DATAPLANE LB_DECAP LBCTL
#
# Each LB node runs its own lb-controlplane (same pools and VIP: identical
# Maglev tables), lb-dataplane on eth0 with --exception_path (a tap
# interface carrying the node's kernel address 10.99.0.11K/24, where the
# floating address goes too), and keepalived (VRRPv3, unicast adverts
# through the exception path, every 200 ms). A dataplane that dies takes
# its tap interface with it, so the master falls silent and the backup takes
# over after three missed adverts; one that hangs is caught by a track
# script asking the node's lb-controlplane whether a live dataplane writes
# the stats region (lb_dataplane_up). keepalived's vrrp_track_process cannot
# be used here: the kernel's process connector answers only in the initial
# network namespace.
# Checks:
#  * lb1 is master: it holds 10.99.0.10 and every request reaches the VIP
#    through lb1's dataplane;
#  * 10 long-lived keep-alive connections and a probe opening a new
#    connection every 50 ms run while lb1's lb-dataplane is killed -9;
#  * lb2 takes the floating address over (gratuitous ARP from its kernel
#    through its dataplane); the gap (from the kill to the first answered
#    new connection after the last failed one) is printed;
#  * new connections succeed after the gap, and every long-lived connection
#    keeps answering from the same backend (lb2 has no entry for them but
#    picks what lb1 picked: identical tables).
# Bounded (< 60 s); everything it starts is killed by pid, the topology
# removed by prefix, also on failure. Must run as root.
set -euo pipefail
CP_BIN=$(realpath "$1")
DP_BIN=$(realpath "$2")
DECAP_BIN=$(realpath "$3")
LBCTL_BIN=$(realpath "$4")
. "$(dirname "$0")/lib.sh"
P=v$$
FLOAT=10.99.0.10
NCONN=10
command -v keepalived >/dev/null || fail "keepalived missing (scripts/install-deps.sh)"

WORK=$(mktemp -d /dev/shm/lb-e2e-vrrp.XXXXXX)
PIDS=()    # control planes, clients, probe
KA_PIDS=() # keepalived (stopped first: no failover while we tear down)
DPS=()     # dataplanes by node (index 1, 2)
DP_PID=""
stop_all() { stop_pids 30 "${KA_PIDS[@]}" "${PIDS[@]}" "${DPS[@]}" "$DP_PID"; }
show_logs() {
  for k in 1 2; do
    show_tail 10 "lb-controlplane $k log" "$WORK/cp$k.log"
    show_tail 15 "lb-dataplane $k log" "$WORK/dp$k.log"
    show_tail 25 "keepalived $k log" "$WORK/ka$k.log"
  done
  show_tail 20 "clients" "$WORK/clients.out"
  show_tail 20 "probe" "$WORK/probe.out"
}
install_traps

# 1. The network: client, router, lb1, lb2, be1..3 (nginx + lb-decap). The
#    router's VIP route goes via the floating address instead of ECMP.
bash "$TOPO" up --prefix "$P" --backends 3 --lbs 2 --lb_decap "$DECAP_BIN" >/dev/null
ip netns exec "$P-router" ip route replace "$VIP4/32" via "$FLOAT" dev br0
# Linux ignores an ARP that would change a neighbour updated less than
# locktime (1 s) ago; a router that keeps the old master's MAC waits for its
# neighbour probes to fail (about 4 s here). Accept the new master's
# gratuitous ARP at once, as hardware routers do.
ip netns exec "$P-router" sysctl -qw net.ipv4.neigh.br0.locktime=0

# 2. One control plane per node (REST on the node's loopback for the track
#    script), identical pools and VIP.
for k in 1 2; do
  mkdir -p "$WORK/n$k"
  node_config "10.99.0.1$k" >"$WORK/n$k/lb.textproto"
  ip netns exec "$P-lb$k" ip link set lo up
  ip netns exec "$P-lb$k" "$CP_BIN" --config "$WORK/n$k/lb.textproto" --state_dir "$WORK/n$k/state" \
    --table_region "$WORK/n$k/tables" --stats_region "$WORK/n$k/stats" --max_vips 16 \
    --max_backends 64 --grpc_listen="$GRPC" --http_listen=127.0.0.1:8080 >"$WORK/cp$k.log" 2>&1 &
  PIDS+=($!)
done
for k in 1 2; do
  wait_log "$WORK/cp$k.log" "published generation=1 " 100 || fail "lb-controlplane $k did not publish"
done

# 3. One dataplane per node with its exception path.
for k in 1 2; do
  TABLES=$WORK/n$k/tables
  STATS=$WORK/n$k/stats
  DP_FILE_PREFIX=lb-e2e-$P-$k
  DP_EXTRA_ARGS="--exception_path=$P-x$k"
  start_dataplane_fallback "$k" "$WORK/dp$k.log" "$k"
  DPS[k]=$DP_PID
  DP_PID=""
  wait_log "$WORK/dp$k.log" "exception path: kernel interface $P-x$k" 50 "${DPS[k]}" ||
    fail "lb-dataplane $k did not create its exception path"
  ip netns exec "$P-lb$k" ip addr add "10.99.0.11$k/24" dev "$P-x$k"
  ip netns exec "$P-lb$k" ip link set "$P-x$k" up
done
echo "lb-dataplane on $PMD with an exception path in $P-lb1 (kernel 10.99.0.111) and $P-lb2 (10.99.0.112)"

# 4. keepalived on each node: lb1 priority 150, lb2 100; unicast adverts to
#    the peer's kernel address through both exception paths.
for k in 1 2; do
  peer=$((3 - k))
  prio=$((k == 1 ? 150 : 100))
  cat >"$WORK/ka$k.conf" <<KA
global_defs {
  router_id lb$k
  script_user root
  enable_script_security
  vrrp_garp_master_repeat 3
  vrrp_garp_interval 0.01
  vrrp_garp_master_delay 1
}
vrrp_script dataplane_up {
  script "/bin/sh -c 'curl -sf --max-time 1 http://127.0.0.1:8080/metrics | grep -qx \"lb_dataplane_up 1\"'"
  interval 1
  fall 2
  rise 1
}
vrrp_instance lb_vip {
  state BACKUP
  interface $P-x$k
  virtual_router_id 51
  version 3
  priority $prio
  advert_int 0.2
  unicast_src_ip 10.99.0.11$k
  unicast_peer {
    10.99.0.11$peer
  }
  virtual_ipaddress {
    $FLOAT/24 dev $P-x$k
  }
  track_script {
    dataplane_up
  }
}
KA
  ip netns exec "$P-lb$k" keepalived --dont-fork --log-console --log-detail --vrrp \
    --use-file "$WORK/ka$k.conf" --pid "$WORK/ka$k.pid" --vrrp_pid "$WORK/vrrp$k.pid" \
    >"$WORK/ka$k.log" 2>&1 &
  KA_PIDS+=($!)
done
wait_log "$WORK/ka1.log" "Entering MASTER STATE" 100 || fail "keepalived on lb1 did not become master"
has_float() { ip netns exec "$P-lb$1" ip -4 -o addr show dev "$P-x$1" | grep -q " $FLOAT/"; }
has_float 1 || fail "lb1 is master but does not hold $FLOAT"
if has_float 2; then fail "both nodes hold $FLOAT"; fi
echo "keepalived: lb1 is master and holds $FLOAT; lb2 is backup"

warm_up 20 "http://$VIP4/" || fail "no request through the VIP succeeded via lb1"
forwarded() {  # K: packets node K's dataplane forwarded (sum over lcores)
  ip netns exec "$P-lb$1" "$LBCTL_BIN" --server "$GRPC" stats --json | /usr/bin/python3 -c '
import json, sys
print(sum(int(l.get("forwarded", 0)) for l in json.loads(sys.stdin.read()).get("lcores", [])))'
}

# 5. Long-lived connections and a probe of new connections, then lb1's
#    dataplane killed -9.
ip netns exec "$P-client" timeout 40 /usr/bin/python3 "$ROOT/tests/e2e/keepalive_clients.py" "$VIP4" \
  "$NCONN" "$WORK/switched" 4 25 4 >"$WORK/clients.out" 2>&1 &
CL_PID=$!
PIDS+=("$CL_PID")
wait_log "$WORK/clients.out" "^READY" 100 || fail "the clients did not get ready"
fw1=$(forwarded 1)
((fw1 > 0)) || fail "lb1 forwarded nothing while it was master"
ip netns exec "$P-client" timeout 30 /usr/bin/python3 - "$VIP4" "$WORK/probe.stop" >"$WORK/probe.out" 2>&1 <<'PY' &
import os, socket, sys, time
vip, stop = sys.argv[1], sys.argv[2]
while not os.path.exists(stop):
    t = time.time()
    ok = 0
    try:
        with socket.create_connection((vip, 80), timeout=0.3) as s:
            s.settimeout(0.3)
            s.sendall(b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            ok = int(s.recv(64).startswith(b"HTTP/1.1 200"))
    except OSError:
        pass
    print("%.3f %d" % (t, ok), flush=True)
    time.sleep(max(0.0, 0.05 - (time.time() - t)))
PY
PIDS+=($!)
sleep 1
T_KILL_NS=$(date +%s%N)
T_KILL=$((T_KILL_NS / 1000000000)).$(printf '%09d' $((T_KILL_NS % 1000000000)))
kill -KILL "${DPS[1]}"
touch "$WORK/switched"
echo "lb1's lb-dataplane killed -9"
took_over=0
for _ in $(seq 50); do
  if has_float 2; then took_over=1; break; fi
  sleep 0.1
done
((took_over)) || fail "keepalived on lb2 did not take $FLOAT over within 5 s"
echo "lb2 holds $FLOAT $((($(date +%s%N) - T_KILL_NS) / 1000000)) ms after the kill"
wait_log "$WORK/clients.out" "^DONE" 150 || fail "the clients did not finish"
# The probe goes on until its last 12 connections all answered (bounded: a
# long gap on a loaded machine must not leave too few probes after it).
for _ in $(seq 100); do
  (($(tail -n 12 "$WORK/probe.out" | grep -c ' 1$') == 12)) && break
  sleep 0.1
done
touch "$WORK/probe.stop"
sleep 0.5

# 6. Verdicts: the gap, new connections after it, long-lived connections.
read -r gap_ms fails_after oks_after < <(/usr/bin/python3 - "$T_KILL" "$WORK/probe.out" <<'PY'
import sys
t_kill = float(sys.argv[1])
rows = [tuple(map(float, l.split())) for l in open(sys.argv[2]) if l.strip()]
after = [(t, ok) for t, ok in rows if t >= t_kill]
last_fail = max([t for t, ok in after if not ok], default=t_kill)
first_ok = min([t for t, ok in after if ok and t > last_fail], default=None)
gap = -1 if first_ok is None else (first_ok - t_kill) * 1000
tail = [ok for t, ok in after if t > last_fail]
print("%d %d %d" % (gap, sum(1 for t, ok in after if not ok), len(tail)))
PY
)
fw2=$(forwarded 2)
read -r total alive < <(grep '^{' "$WORK/clients.out" | /usr/bin/python3 -c '
import json, sys
total = alive = 0
for line in sys.stdin:
    c = json.loads(line)
    total += 1
    if not c["error"] and c["after"] >= 5:
        alive += 1
    else:
        print("dead connection:", line.strip(), file=sys.stderr)
print(total, alive)')
echo "failover: $fails_after new connections failed after the kill; gap ${gap_ms} ms;" \
  "$oks_after answered after it; lb2 forwarded $fw2 packets"
echo "long-lived connections: $alive/$total kept answering from the same backend"
((gap_ms >= 0)) || fail "no new connection succeeded after the failover"
((oks_after >= 10)) || fail "only $oks_after new connections answered after the gap"
((fw2 > 0)) || fail "lb2 forwarded nothing after taking over"
((total == NCONN)) || fail "the client reported $total/$NCONN connections"
((alive == total)) || fail "only $alive/$total long-lived connections survived the failover"
echo "RESULT vrrp: gap_ms=$gap_ms survived=$alive/$total"
echo "PASS: vrrp e2e ($PMD) in $(($(date +%s) - START)) s"
