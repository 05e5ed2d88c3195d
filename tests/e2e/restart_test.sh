#!/usr/bin/env bash
# shellcheck disable=SC2034  # CP_BIN, TABLES, DP_IPV6, ... are read by lib.sh
# End to end (issue 4, test 5): the LB's processes restarted under load.
# Network from scripts/topology.sh --lbs 1 (prefix r<pid>); lb-controlplane
# inside the router namespace (gRPC on its loopback), lb-dataplane on af_xdp
# (af_packet fallback) in <p>-lb1, nginx + lb-decap on three backends.
#
#   restart_test.sh LB_CONTROLPLANE LB_DATAPLANE LB_DECAP LBCTL
#
# Phase 1: `wrk -t1 -c10 -d8s -H 'Connection: close'` from the client;
# lb-controlplane is killed -9 at 2 s and started again at 4 s with the same
# --state_dir and regions. Asserts: 0 failed requests (the dataplane keeps
# forwarding with the last published table), the restarted control plane
# publishes again and its per-VIP Maglev fingerprints (`lbctl tables --json`)
# equal those from before the kill (it moves no flow).
# Phase 2: 20 HTTP/1.1 keep-alive connections (python3, one request every
# 200 ms each) to the IPv6 VIP, a ROUND-ROBIN pool of be1 and be2; then
# `lbctl backend add` puts be3 in that pool, and lb-dataplane is stopped
# (SIGTERM) and started again on the same regions. The new process attaches
# the connection tables the old one left (<stats>.conn.<lcore>), so every
# connection keeps its backend although a fresh round-robin pick over three
# backends would move most of them. Asserts: 20/20 connections survive on
# their backend, the new dataplane logs the attach, and 10/10 new requests
# succeed.
# Sticky sessions across the restart: a third VIP ($VIPS, added to the
# backends' lo and routed by this test) on a sticky ROUND-ROBIN pool of
# be1..be3. Before the restart the client's requests all reach one backend X,
# and X is then set draining: no fresh pick can choose it any more, only the
# sticky table (a persistent client follows a draining backend). After the
# restart every NEW connection (new source port: no connection-table entry)
# must still reach X. Without the sticky file (--sticky_table_persist=false,
# DP_EXTRA_ARGS) they land on another backend and the test fails.
# Bounded (< 60 s: every wait has a limit); everything it starts is killed by
# pid, the topology removed by prefix, also on failure. Must run as root.
set -euo pipefail
CP_BIN=$(realpath "$1")
DP_BIN=$(realpath "$2")
DECAP_BIN=$(realpath "$3")
LBCTL_BIN=$(realpath "$4")
. "$(dirname "$0")/lib.sh"
P=r$$
VIP6=2001:db8:100::10
VIPS=198.51.100.20
NCONN=20

command -v wrk >/dev/null || { echo "FAIL: wrk not installed (scripts/install-deps.sh)"; exit 1; }

WORK=$(mktemp -d /dev/shm/lb-e2e-restart.XXXXXX)
CP_PID=""
DP_PID=""
WRK_PID=""
CL_PID=""
stop_all() { stop_pids 30 "$CL_PID" "$WRK_PID" "$DP_PID" "$CP_PID"; }
show_logs() {
  for f in cp1 cp2 dp1 dp2; do show_tail 15 "$f.log" "$WORK/$f.log"; done
  show_tail 30 "clients" "$WORK/clients.out"
}
install_traps

# 1. The network: client, router, lb1, be1..3 (nginx + lb-decap).
bash "$TOPO" up --prefix "$P" --backends 3 --lbs 1 --lb_decap "$DECAP_BIN" >/dev/null
# The sticky VIP: on every backend's lo, routed to lb1 like the others.
for i in 1 2 3; do ip netns exec "$P-be$i" ip addr add "$VIPS/32" dev lo; done
ip netns exec "$P-router" ip route add "$VIPS/32" via 10.99.0.11 dev br0

# 2. The control plane (started twice with the same flags; log cp1 / cp2).
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
  algorithm: ALGORITHM_ROUND_ROBIN
  backends { address: "fd00:99::21" port: 80 }
  backends { address: "fd00:99::22" port: 80 }
}
pools {
  name: "sticky4"
  algorithm: ALGORITHM_ROUND_ROBIN
  sticky_sessions: true
  sticky_ttl_seconds: 600
  backends { address: "10.99.0.21" port: 80 }
  backends { address: "10.99.0.22" port: 80 }
  backends { address: "10.99.0.23" port: 80 }
}
vips { address: "$VIP4" protocol: PROTOCOL_TCP port: 80 pool: "web4" }
vips { address: "$VIPS" protocol: PROTOCOL_TCP port: 80 pool: "sticky4" }
vips { address: "$VIP6" protocol: PROTOCOL_TCP port: 80 pool: "web6" }
CFG
DP_IPV6=yes
TABLES=$WORK/tables
STATS=$WORK/stats
# start_cp LOG_NAME: the control plane in <p>-router, up once it published
# any generation (the restart continues from the state dir).
start_cp() { start_controlplane "$P-router" "$WORK/$1.log" "$GRPC" "published generation="; }
start_cp cp1 || fail "lb-controlplane did not publish"
# tables: "generation G" then "vip fingerprint" lines of the published tables.
tables() {
  lbctl tables --json | /usr/bin/python3 -c '
import json, sys
doc = json.loads(sys.stdin.read())
print("generation", doc.get("generation", 0))
for v in doc.get("vips", []):
    print(json.dumps(v.get("vip", {}), sort_keys=True), v.get("fingerprint", "-"))'
}
# Only the Maglev VIP has a fingerprint (round robin has no ring).
fingerprints() { grep -F "$VIP4" <<<"$1"; }
generation() { sed -n 's/^generation //p' <<<"$1"; }

# 3. The dataplane (started twice on the same regions; log dp1 / dp2).
start_dataplane_fallback 1 "$WORK/dp1.log"
echo "lb-dataplane on $PMD in $P-lb1 (pid $DP_PID); lb-controlplane in $P-router (pid $CP_PID)"

warm_up 10 "http://$VIP4/" || fail "no request through the VIP succeeded during the warm-up"
t_before=$(tables) || fail "lbctl tables failed"
fp_before=$(fingerprints "$t_before")
gen_before=$(generation "$t_before")
echo "before the kill: generation $gen_before; $fp_before"
[[ -n $fp_before && $fp_before != *" -"* ]] || fail "no VIP fingerprint published"

# 4. Phase 1: wrk for 8 s; the control plane killed -9 at 2 s, restarted at 4 s.
ip netns exec "$P-client" timeout 20 wrk -t1 -c10 -d8s --timeout 2s -H 'Connection: close' \
  "http://$VIP4/" >"$WORK/wrk1.txt" 2>&1 &
WRK_PID=$!
sleep 2
kill -0 "$WRK_PID" 2>/dev/null || { cat "$WORK/wrk1.txt"; fail "wrk exited early"; }
kill -KILL "$CP_PID"
wait "$CP_PID" 2>/dev/null || true
CP_PID=""
echo "phase 1: lb-controlplane killed -9 at 2 s"
sleep 2
t_restart=$(date +%s%3N)
start_cp cp2 || fail "the restarted lb-controlplane did not publish"
echo "phase 1: lb-controlplane restarted at 4 s (pid $CP_PID), published after $(($(date +%s%3N) - t_restart)) ms"
wait "$WRK_PID" && wrk_rc=0 || wrk_rc=$?
WRK_PID=""
cat "$WORK/wrk1.txt"
((wrk_rc == 0)) || fail "wrk (phase 1) exited with $wrk_rc"
failed1=$(wrk_failed "$WORK/wrk1.txt")
total1=$(wrk_requests "$WORK/wrk1.txt")
grep "published generation=\|table region\|state version" "$WORK/cp2.log" || true
t_after=$(tables) || fail "lbctl tables failed after the restart"
fp_after=$(fingerprints "$t_after")
gen_after=$(generation "$t_after")
echo "after the restart: generation $gen_after; $fp_after"
echo "phase 1: failed requests: $failed1 of ${total1:-?}"
((${total1:-0} > 0)) || fail "phase 1: wrk completed no request"
((failed1 == 0)) || fail "phase 1: $failed1 request(s) failed while the control plane was down/restarting"
[[ "$fp_after" == "$fp_before" ]] || fail "the restarted control plane published a different table"

# 5. Phase 2: long-lived keep-alive connections. tests/e2e/keepalive_clients.py VIP N TRIGGER AFTER_S
#    LIMIT_S RECV_S prints READY when every connection has answered, keeps
#    requesting until the file TRIGGER exists (at most LIMIT_S) plus AFTER_S
#    (counting those requests as "after"), and prints one JSON line per
#    connection; a connection that failed, or whose last request got no answer
#    within RECV_S, has an "error".

ip netns exec "$P-client" timeout 40 /usr/bin/python3 "$ROOT/tests/e2e/keepalive_clients.py" "$VIP6" "$NCONN" \
  "$WORK/restarted" 6 20 8 >"$WORK/clients.out" 2>&1 &
CL_PID=$!
wait_log "$WORK/clients.out" "^READY" 100 || fail "the clients did not get ready"
ready=$(grep "^READY" "$WORK/clients.out" | wc -w)
ready=$((ready - 1))
((ready == NCONN)) || fail "only $ready/$NCONN keep-alive connections answered before the restart"
# A third backend joins the round-robin pool before the restart: a re-pick
# would now spread the connections over three backends.
gen_added=$(generation "$(tables)")
lbctl backend add "[fd00:99::23]:80" --pool web6 >/dev/null || fail "lbctl backend add [fd00:99::23]:80 failed"
for _ in $(seq 50); do
  (($(generation "$(tables)") > gen_added)) && break
  sleep 0.1
done
(($(generation "$(tables)") > gen_added)) || fail "no generation published after the backend was added"
sleep 1
# The sticky client: five new connections all on one backend X, which is
# then set draining (a fresh pick can no longer choose it). A request that
# times out (a SYN lost on a loaded 2-core guest) is retried: stickiness is
# per client address, so the retry asks the same question again.
sticky_get() {
  ip netns exec "$P-client" curl -s --max-time 3 --retry 2 "http://$VIPS/" || echo "failed"
}
sticky_x=$(sticky_get)
[[ $sticky_x == "backend "* ]] || fail "no answer from the sticky VIP $VIPS ($sticky_x)"
for i in 1 2 3 4; do
  got=$(sticky_get)
  [[ $got == "$sticky_x" ]] || fail "sticky VIP before the restart: request $i reached '$got', not '$sticky_x'"
done
x_addr=10.99.0.2${sticky_x##*-be}  # the page says "backend <p>-beN"
x_id=$(lbctl backend list --pool sticky4 --json | /usr/bin/python3 -c '
import json, sys
for line in sys.stdin:
    if line.strip():
        for b in json.loads(line).get("backends", []):
            if b.get("backend", {}).get("address") == sys.argv[1]:
                print(b["backend"]["id"]); sys.exit(0)' "$x_addr")
[[ -n $x_id ]] || fail "backend $x_addr not found in pool sticky4"
gen_drain=$(generation "$(tables)")
lbctl backend update "$x_id" --state draining >/dev/null || fail "lbctl backend update $x_id --state draining failed"
for _ in $(seq 50); do
  (($(generation "$(tables)") > gen_drain)) && break
  sleep 0.1
done
(($(generation "$(tables)") > gen_drain)) || fail "no generation published after draining $x_addr"
sleep 0.5
got=$(sticky_get)
[[ $got == "$sticky_x" ]] || fail "sticky VIP: the client left its draining backend before the restart ('$got')"
echo "sticky VIP $VIPS: the client is on $sticky_x ($x_addr, backend id $x_id, now draining)"
# The dataplane stopped (SIGTERM, bounded) and started again on the same
# regions: a new process that attaches the old connection tables.
touch "$WORK/restarted"
t_stop=$(date +%s%3N)
stop_pids 50 "$DP_PID"
DP_PID=""
grep "] stopped: " "$WORK/dp1.log" || true
start_dataplane 1 "$VDEV" "$WORK/dp2.log" || fail "the restarted lb-dataplane did not start"
gap_ms=$(($(date +%s%3N) - t_stop))
echo "phase 2: lb-dataplane restarted (pid $DP_PID); ${gap_ms} ms from SIGTERM to the new port up"
wait_log "$WORK/clients.out" "^DONE" 200 || fail "the clients did not finish"
wait "$CL_PID" 2>/dev/null || true
CL_PID=""

# A connection survived when it never failed and its requests after the
# restart were answered (the last one included), on the same backend.
read -r total alive dist < <(
  grep '^{' "$WORK/clients.out" | /usr/bin/python3 -c '
import json, sys
total = alive = 0
dist = {}
for line in sys.stdin:
    c = json.loads(line)
    total += 1
    ok = not c["error"] and c["after"] >= 3
    alive += ok
    dist[c["backend"]] = dist.get(c["backend"], 0) + 1
    if not ok:
        print("dead connection:", line.strip(), file=sys.stderr)
print(total, alive, ",".join("%s=%d" % (b.split()[-1], k) for b, k in sorted(dist.items())))')
echo "backends of the connections: $dist"
echo "phase 2: long-lived connections that survived the dataplane restart: $alive/$total"

# 6. The sticky client's new connections after the restart: still on X,
#    which only the attached sticky table can explain (X is draining).
sticky_after=""
for i in 1 2 3 4 5; do sticky_after+="$(sticky_get);"; done
echo "sticky VIP after the restart: $sticky_after"
grep "sticky table" "$WORK/dp2.log" || true

# 7. The new dataplane forwards new connections.
ok=0
for i in $(seq 10); do
  if ip netns exec "$P-client" curl -s --max-time 3 -o /dev/null "http://$VIP4/"; then
    ok=$((ok + 1))
  else
    echo "phase 2: new request $i failed"
  fi
done
echo "phase 2: new requests through the restarted dataplane: $ok/10"
# Informational: what the (still running) control plane sees of the new dataplane.
cp_view=$(lbctl stats --json 2>&1 | /usr/bin/python3 -c '
import json, sys
try:
    doc = json.loads(sys.stdin.read())
except ValueError as e:
    print("unreadable (%s)" % e); sys.exit(0)
print("dataplane_running=%s forwarded=%d" % (doc.get("dataplane_running", False),
      sum(int(l.get("forwarded", 0)) for l in doc.get("lcores", []))))') || cp_view="lbctl stats failed"
echo "phase 2: lbctl stats after the dataplane restart: $cp_view"
grep "connection table .* attached\|connection table .* started empty" "$WORK/dp2.log" || true
grep -q "connection table .* attached, [1-9][0-9]* entries kept" "$WORK/dp2.log" ||
  fail "the restarted lb-dataplane did not attach the connection tables"
((total == NCONN)) || fail "the client reported $total/$NCONN connections"
((alive == NCONN)) || fail "only $alive/$NCONN connections kept their backend across the dataplane restart"
((ok == 10)) || fail "the restarted dataplane forwarded only $ok/10 new requests"
grep -q "sticky table .* attached, [1-9][0-9]* clients kept" "$WORK/dp2.log" ||
  echo "note: the restarted lb-dataplane did not attach the sticky table (the check below says whether it mattered)"
[[ $sticky_after == "$(printf '%s;' "$sticky_x" "$sticky_x" "$sticky_x" "$sticky_x" "$sticky_x")" ]] ||
  fail "sticky client lost its backend across the dataplane restart: $sticky_after (want $sticky_x x5)"
echo "RESULT restart: cp_kill_failed=$failed1 cp_kill_requests=$total1 generation=$gen_before->$gen_after fingerprints_equal=yes dp_restart_survived=$alive/$total sticky_kept=yes dp_gap_ms=$gap_ms"
echo "PASS: restart e2e ($PMD) in $(($(date +%s) - START)) s"
