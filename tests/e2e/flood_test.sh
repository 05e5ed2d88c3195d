#!/usr/bin/env bash
# shellcheck disable=SC2034  # CP_BIN, TABLES, ... are read by lib.sh
# End to end: the SYN-flood guard. curl and kept-alive HTTP connections from
# the client namespace keep working while a second client namespace of our
# own (<p>-flood, behind the router) floods the VIP with spoofed SYNs from
# random sources (tests/e2e/syn_flood.py: raw socket, bounded in count and
# time). lb-dataplane runs with a small connection table (4096 entries) and
# --new_flow_rate_limit 1000, on a ROUND-ROBIN pool, where a lost entry
# would move a connection (Maglev would hide it).
#
#   flood_test.sh LB_CONTROLPLANE LB_DATAPLANE LB_DECAP
#
# Checks: 6 kept-alive connections (a request every 200 ms) all keep
# answering during the flood, each from the backend it started on; 12 idle
# kept-alive connections (one request before the flood, one after: their
# entries are the stalest, what a table without the guard evicts first) still
# answer from their backend after it (idle_conns.py); 20/20
# fresh curls during the flood succeed; the flood sent at least 10x the
# table's capacity; the dataplane forwarded the excess statelessly
# (syn_guard_stateless > 0 in the stats region). Bounded (< 90 s); everything
# it starts is killed by pid, the namespaces removed by prefix, also on
# failure. Must run as root.
set -euo pipefail
CP_BIN=$(realpath "$1")
DP_BIN=$(realpath "$2")
DECAP_BIN=$(realpath "$3")
. "$(dirname "$0")/lib.sh"
P=g$$
HERE=$(cd "$(dirname "$0")" && pwd)
TABLE=4096
FLOOD=50000  # > 10x the table
RATE=12000   # SYNs per second: about 4 s of flood

WORK=$(mktemp -d /dev/shm/lb-e2e-flood.XXXXXX)
CP_PID=""
DP_PID=""
KA_PID=""
IDLE_PID=""
FLOOD_PID=""
stop_all() {
  stop_pids 30 "$FLOOD_PID" "$IDLE_PID" "$KA_PID" "$DP_PID" "$CP_PID"
  ip netns del "$P-flood" 2>/dev/null || true
}
show_logs() {
  show_tail 20 "lb-controlplane log" "$WORK/cp.log"
  show_tail 30 "lb-dataplane log" "$WORK/dp.log"
  show_tail 20 "keep-alive clients" "$WORK/ka.log"
  show_tail 20 "idle clients" "$WORK/idle.log"
  show_tail 5 "flood" "$WORK/flood.log"
}
install_traps

# 1. The network (scripts/topology.sh) plus the flooding namespace:
#    <p>-flood eth0 172.31.2.2/24 <-> router f0 172.31.2.1 (the router has
#    rp_filter off, so spoofed sources pass as from any Internet client).
bash "$TOPO" up --prefix "$P" --backends 3 --lbs 1 --lb_decap "$DECAP_BIN"
ip netns add "$P-flood"
ip link add f0 netns "$P-router" type veth peer name eth0 netns "$P-flood"
ip -n "$P-flood" addr add 172.31.2.2/24 dev eth0
ip -n "$P-flood" link set eth0 up
ip -n "$P-flood" link set lo up
ip -n "$P-flood" route add default via 172.31.2.1
ip -n "$P-router" addr add 172.31.2.1/24 dev f0
ip -n "$P-router" link set f0 up

# 2. Control plane: one round-robin pool behind the VIP.
cat > "$WORK/lb.textproto" <<CFG
node { tunnel_source_ipv4: "10.99.0.11" }
pools {
  name: "web4"
  algorithm: ALGORITHM_ROUND_ROBIN
  backends { address: "10.99.0.21" port: 80 }
  backends { address: "10.99.0.22" port: 80 }
  backends { address: "10.99.0.23" port: 80 }
}
vips { address: "$VIP4" protocol: PROTOCOL_TCP port: 80 pool: "web4" }
CFG
TABLES=$WORK/tables
STATS=$WORK/stats
start_controlplane "" "$WORK/cp.log" "" || fail "lb-controlplane did not publish"

# 3. The dataplane (as lib.sh start_dataplane, with the guard's flags and a
#    small table), af_xdp first, af_packet if that port does not come up.
start_guarded() {
  ip netns exec "$P-lb1" "$DP_BIN" -l 0 --no-huge -m 512 --no-pci \
    --file-prefix "lb-e2e-$P" --log-level lib.eal:error --vdev="$1" -- \
    --table_region "$TABLES" --stats_region "$STATS" --wait_for_table_s 5 \
    --ipv4 10.99.0.11 --gateway_ipv4 10.99.0.1 --mtu 1600 \
    --conn_table_size "$TABLE" --new_flow_rate_limit 1000 --tcp_syn_timeout_s 5 \
    >"$WORK/dp.log" 2>&1 &
  DP_PID=$!
  wait_log "$WORK/dp.log" "] port [0-9]* " 100 "$DP_PID"
}
if ! start_guarded "net_af_xdp0,iface=eth0"; then
  echo "af_xdp port did not come up; falling back to af_packet"
  kill -KILL "$DP_PID" 2>/dev/null || true
  wait "$DP_PID" 2>/dev/null || true
  PMD=af_packet
  start_guarded "net_af_packet0,iface=eth0" || fail "lb-dataplane did not start"
fi
echo "lb-dataplane on $PMD in $P-lb1 (pid $DP_PID)"
warm_up 5 "http://$VIP4/" || fail "no request to the VIP succeeded during the warm-up"

# 4. Idle and busy kept-alive connections, then the flood, with fresh curls
#    during it.
TRIGGER=$WORK/flood-started
RESUME=$WORK/flood-over
ip netns exec "$P-client" /usr/bin/python3 "$HERE/idle_conns.py" "$VIP4" 12 "$RESUME" 40 \
  >"$WORK/idle.log" 2>&1 &
IDLE_PID=$!
wait_log "$WORK/idle.log" "READY" 100 "$IDLE_PID" || fail "idle clients did not start"
ip netns exec "$P-client" /usr/bin/python3 "$HERE/keepalive_clients.py" "$VIP4" 6 "$TRIGGER" \
  6 30 3 >"$WORK/ka.log" 2>&1 &
KA_PID=$!
wait_log "$WORK/ka.log" "READY" 100 "$KA_PID" || fail "keep-alive clients did not start"
ip netns exec "$P-flood" /usr/bin/python3 "$HERE/syn_flood.py" "$VIP4" 80 "$FLOOD" "$RATE" 8 \
  >"$WORK/flood.log" 2>&1 &
FLOOD_PID=$!
touch "$TRIGGER"
sleep 0.5
ok=0
for i in $(seq 20); do
  if ip netns exec "$P-client" curl -s --max-time 3 -o /dev/null "http://$VIP4/"; then
    ok=$((ok + 1))
  else
    echo "fresh request $i during the flood failed"
  fi
  sleep 0.1
done
wait "$FLOOD_PID" || fail "the flood generator failed: $(cat "$WORK/flood.log")"
FLOOD_PID=""
sent=$(sed -n 's/^sent \([0-9]*\) .*/\1/p' "$WORK/flood.log")
echo "flood: $(cat "$WORK/flood.log"); fresh curls during it: $ok/20"
touch "$RESUME"
for _ in $(seq 100); do grep -q "^DONE" "$WORK/ka.log" && break; sleep 0.1; done
wait "$KA_PID" 2>/dev/null || true
KA_PID=""
cat "$WORK/ka.log"
wait_log "$WORK/idle.log" "^DONE" 100 "$IDLE_PID" || fail "idle clients did not finish"
wait "$IDLE_PID" 2>/dev/null || true
IDLE_PID=""
cat "$WORK/idle.log"
read -r stateless engaged < <(/usr/bin/python3 - "$STATS" <<'PY'
import struct, sys
with open(sys.argv[1], "rb") as f:
    lcores_offset = struct.unpack_from("<Q", f.read(80), 48)[0]
    f.seek(lcores_offset + 160)  # LcoreStats::syn_guard_stateless, syn_guard_engaged
    print(*struct.unpack("<QQ", f.read(16)))
PY
)
echo "lcore 0: syn_guard_stateless=$stateless syn_guard_engaged=$engaged"

# 5. Verdicts.
((${sent:-0} >= 10 * TABLE)) || fail "the flood sent only ${sent:-0} SYNs (< 10 x $TABLE)"
((ok == 20)) || fail "only $ok/20 fresh requests succeeded during the flood"
conns=$(grep -c '"port"' "$WORK/ka.log" || true)
((conns == 6)) || fail "$conns/6 keep-alive connections reported"
if grep '"port"' "$WORK/ka.log" | grep -v '"error": ""'; then
  fail "a kept-alive connection failed or changed backend during the flood"
fi
if grep '"port"' "$WORK/ka.log" | grep -q '"after": 0,'; then
  fail "a kept-alive connection made no request during the flood"
fi
idle=$(grep -c '"port"' "$WORK/idle.log" || true)
((idle == 12)) || fail "$idle/12 idle connections reported"
if grep '"port"' "$WORK/idle.log" | grep -v '"error": ""'; then
  fail "an idle kept-alive connection failed or moved after the flood"
fi
((stateless > 0)) || fail "the guard forwarded nothing statelessly (syn_guard_stateless 0)"
echo "PASS: flood e2e ($PMD) in $(($(date +%s) - START)) s"
