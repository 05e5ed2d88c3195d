#!/usr/bin/env bash
# shellcheck disable=SC2034  # CP_BIN, TABLES, DP_IPV6, ... are read by lib.sh
# End to end (issue 4, tests 1 (UDP part) and 3): a UDP VIP with real UDP
# servers, then a backend added and another drained under keep-alive load.
# Real lb-controlplane (in the router namespace, gRPC on its loopback, no
# health checks) + lb-dataplane (af_xdp on veth, af_packet fallback) +
# lb-decap + nginx; network from scripts/topology.sh --backends 4 (prefix
# u<pid>); pools start with backends 1..3.
#
#   udp_drain_test.sh LB_CONTROLPLANE LB_DATAPLANE LB_DECAP LBCTL
#
# Part A (UDP): VIP 198.51.100.10:53/udp -> pool dns4 (be1..3 port 53); each
# backend runs a python3 UDP server bound to the VIP that replies with its
# name. 20 queries from the client, each from a new socket (new flow): all
# answered, by >= 2 backends, every reply's source is the VIP, and no packet
# with a VIP source crossed the LB's bridge port (replies come straight from
# the backends: DSR).
# Part B (add + drain under load): 12 keep-alive HTTP connections from the
# client, one request every 200 ms each, for 13 s. At ~2 s `lbctl backend add`
# puts be4 in the TCP pool: no long-lived connection fails and fresh curls
# reach be4. At ~6 s `lbctl backend drain` the backend holding the most
# long-lived connections: its connections keep answering (requests counted
# after the drain) and 30 fresh curls never reach it. Counts are printed.
# Bounded (< 60 s: every wait has a limit); everything it starts is killed by
# pid, the topology removed by prefix, also on failure. Must run as root.
set -euo pipefail
CP_BIN=$(realpath "$1")
DP_BIN=$(realpath "$2")
DECAP_BIN=$(realpath "$3")
LBCTL_BIN=$(realpath "$4")
. "$(dirname "$0")/lib.sh"
P=u$$
PY=/usr/bin/python3

WORK=$(mktemp -d /dev/shm/lb-e2e-udpdrain.XXXXXX)
CP_PID=""
DP_PID=""
LL_PID=""
CAP_PID=""
UDP_PIDS=()
stop_all() { stop_pids 30 "$LL_PID" "$CAP_PID" "${UDP_PIDS[@]}" "$DP_PID" "$CP_PID"; }
show_logs() {
  show_tail 30 "lb-controlplane log" "$WORK/cp.log"
  show_tail 20 "lb-dataplane log" "$WORK/dp.log"
  show_tail 30 "long-lived client" "$WORK/ll.log"
}
install_traps

# 1. The network: client, router, lb1, be1..4 (nginx + lb-decap).
bash "$TOPO" up --prefix "$P" --backends 4 --lbs 1 --lb_decap "$DECAP_BIN" >/dev/null

# 2. Control plane in the router namespace; pools hold be1..3 only.
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
  name: "dns4"
  algorithm: ALGORITHM_MAGLEV
  backends { address: "10.99.0.21" port: 53 }
  backends { address: "10.99.0.22" port: 53 }
  backends { address: "10.99.0.23" port: 53 }
}
vips { address: "$VIP4" protocol: PROTOCOL_TCP port: 80 pool: "web4" }
vips { address: "$VIP4" protocol: PROTOCOL_UDP port: 53 pool: "dns4" }
CFG
TABLES=$WORK/tables
STATS=$WORK/stats
start_controlplane "$P-router" "$WORK/cp.log" "$GRPC" || fail "lb-controlplane did not publish"

# backend_id ADDRESS PORT: the id of that backend (empty when absent).
backend_id() {
  lbctl backend list --json 2>/dev/null | "$PY" -c '
import json, sys
addr, port = sys.argv[1], int(sys.argv[2])
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    for b in json.loads(line).get("backends", []):
        be = b.get("backend", {})
        if be.get("address") == addr and int(be.get("port", 0)) == port:
            print(be.get("id", 0)); sys.exit(0)' "$1" "$2"
}

# 3. The dataplane inside <p>-lb1 (af_xdp, af_packet fallback).
DP_IPV6=yes
start_dataplane_fallback 1 "$WORK/dp.log"
echo "lb-dataplane on $PMD in $P-lb1 (pid $DP_PID); lb-controlplane in $P-router (pid $CP_PID)"

# ---------------------------------------------------------------- part A: UDP
cat > "$WORK/udp_server.py" <<'PYEOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
name = sys.argv[2].encode()
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(name + b" " + data, peer)
PYEOF
for i in 1 2 3; do
  ip netns exec "$P-be$i" "$PY" -u "$WORK/udp_server.py" "$VIP4" "$P-be$i" >"$WORK/udp$i.log" 2>&1 &
  UDP_PIDS+=($!)
done
for i in 1 2 3; do
  wait_log "$WORK/udp$i.log" ready 50 || fail "UDP server in $P-be$i did not start"
done
start_capture "$P-router" l1 "$WORK/l1.pcap" "$WORK/tcpdump.log" "src host $VIP4"
wait_log "$WORK/tcpdump.log" "listening on" 50 || fail "tcpdump on l1 did not start"

# N queries, each from a new socket; warm-up (ARP on the way) first, bounded.
cat > "$WORK/udp_client.py" <<'PYEOF'
import collections, socket, sys, time
vip, n, warm = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "warm"
def query(i, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(b"q%d" % i, (vip, 53))
        data, src = s.recvfrom(2048)
        return data.decode(), src[0]
    except socket.timeout:
        return None, None
    finally:
        s.close()
if warm:
    for i in range(20):
        if query(i, 0.5)[0] is not None:
            sys.exit(0)
        time.sleep(0.2)
    sys.exit(1)
answered, bad_src, bad_body = 0, 0, 0
by = collections.Counter()
for i in range(n):
    body, src = query(i, 2.0)
    if body is None:
        print("query %d: no answer" % i)
        continue
    answered += 1
    name, _, echo = body.partition(" ")
    if echo != "q%d" % i:
        bad_body += 1
    if src != vip:
        bad_src += 1
        print("query %d: reply from %s" % (i, src))
    by[name] += 1
print("udp answered=%d of=%d bad_source=%d bad_body=%d backends=%d" % (answered, n, bad_src, bad_body, len(by)))
for k in sorted(by):
    print("  %s: %d" % (k, by[k]))
PYEOF
ip netns exec "$P-client" "$PY" "$WORK/udp_client.py" "$VIP4" 0 warm \
  || fail "no UDP query through the VIP was answered during the warm-up (14 s)"
udp_out=$(ip netns exec "$P-client" timeout 50 "$PY" "$WORK/udp_client.py" "$VIP4" 20 count)
echo "$udp_out"
sleep 0.3
kill -INT "$CAP_PID" 2>/dev/null || true
wait "$CAP_PID" 2>/dev/null || true
CAP_PID=""
udp_via_lb=$(tcpdump -nn -r "$WORK/l1.pcap" 2>/dev/null | wc -l)
echo "udp: packets with a VIP source on the LB's port: $udp_via_lb"
read -r u_answered u_bad_src u_bad_body u_backends < <(sed -n \
  's/^udp answered=\([0-9]*\) of=20 bad_source=\([0-9]*\) bad_body=\([0-9]*\) backends=\([0-9]*\)$/\1 \2 \3 \4/p' \
  <<<"$udp_out")
[[ -n "${u_answered:-}" ]] || fail "udp client printed no summary"
((u_answered == 20)) || fail "UDP: only $u_answered/20 queries answered"
((u_backends >= 2)) || fail "UDP: only $u_backends backend(s) answered"
((u_bad_src == 0)) || fail "UDP: $u_bad_src replies did not come from the VIP"
((u_bad_body == 0)) || fail "UDP: $u_bad_body replies did not echo the query"
((udp_via_lb == 0)) || fail "UDP DSR: $udp_via_lb packets from the VIP crossed the LB's port"
echo "PASS part A: UDP VIP $VIP4:53, 20/20 answered by $u_backends backends, DSR"

# ---------------------------------------------------------------- part B: add + drain
warm_up 10 "http://$VIP4/" || fail "no HTTP request through the VIP succeeded during the warm-up"

# Long-lived keep-alive connections: raw sockets (no silent reconnect), one
# request per connection every 200 ms; writes pinned.json once all are open,
# marks.txt lines "<label> <t>" come from the shell, result.json at the end.
cat > "$WORK/longlived.py" <<'PYEOF'
import json, os, socket, sys, time
vip, n, duration, work = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
REQ = b"GET / HTTP/1.1\r\nHost: lb\r\nUser-Agent: longlived\r\n\r\n"
def request(s):
    s.sendall(REQ)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed by peer")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    if " 200 " not in lines[0] + " ":
        raise ConnectionError("status " + lines[0])
    length = 0
    for l in lines[1:]:
        k, _, v = l.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v)
        if k.strip().lower() == "connection" and v.strip().lower() == "close":
            raise ConnectionError("server closes")
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed by peer mid-body")
        body += chunk
    return body.decode().strip()
conns = []
t0 = time.time()
# 5 s per request: a flow that moved is reset by its new backend at once;
# a timeout is only lost packets on a loaded guest, which TCP retransmits
# (200 ms, 400 ms, 800 ms, ...) inside this bound.
for i in range(n):
    s = socket.create_connection((vip, 80), timeout=5)
    name = request(s)
    conns.append({"sock": s, "backend": name, "ok": 1, "failed": None,
                  "times": [time.time() - t0], "port": s.getsockname()[1]})
with open(os.path.join(work, "pinned.tmp"), "w") as f:
    json.dump([c["backend"] for c in conns], f)
os.rename(os.path.join(work, "pinned.tmp"), os.path.join(work, "pinned.json"))
tick = time.time()
while time.time() - t0 < duration:
    tick += 0.2
    time.sleep(max(0.0, tick - time.time()))
    for c in conns:
        if c["failed"] is not None:
            continue
        try:
            name = request(c["sock"])
            if name != c["backend"]:
                raise ConnectionError("answered by %s" % name)
            c["ok"] += 1
            c["times"].append(time.time() - t0)
        except Exception as e:
            c["failed"] = "%.2fs: %s" % (time.time() - t0, e)
            print("connection port %d (%s) failed at %s" % (c["port"], c["backend"], c["failed"]), flush=True)
marks = {}
try:
    for l in open(os.path.join(work, "marks.txt")):
        k, v = l.split()
        marks[k] = float(v) - t0
except FileNotFoundError:
    pass
drain_t = marks.get("drain")
out = []
for c in conns:
    after = sum(1 for t in c["times"] if drain_t is not None and t > drain_t + 0.3)
    out.append({"backend": c["backend"], "ok": c["ok"], "failed": c["failed"],
                "after_drain": after})
with open(os.path.join(work, "result.json"), "w") as f:
    json.dump(out, f)
print("done", flush=True)
PYEOF
NCONN=12
ip netns exec "$P-client" timeout 40 "$PY" -u "$WORK/longlived.py" "$VIP4" "$NCONN" 13 "$WORK" \
  >"$WORK/ll.log" 2>&1 &
LL_PID=$!
for _ in $(seq 100); do [[ -f "$WORK/pinned.json" ]] && break; sleep 0.1; done
[[ -f "$WORK/pinned.json" ]] || { cat "$WORK/ll.log"; fail "the long-lived connections did not open"; }
pinned=$(cat "$WORK/pinned.json")
echo "long-lived connections: $NCONN, pinned to: $pinned"
mark() { echo "$1 $(date +%s.%N)" >>"$WORK/marks.txt"; }

# fresh N: N new-connection curls; prints "name count" lines.
fresh() {
  local i body
  declare -A seen=()
  local failed=0
  for i in $(seq "$1"); do
    if body=$(ip netns exec "$P-client" curl -s --max-time 2 "http://$VIP4/"); then
      seen[${body#backend }]=$((${seen[${body#backend }]:-0} + 1))
    else
      failed=$((failed + 1))
    fi
  done
  for b in "${!seen[@]}"; do echo "$b ${seen[$b]}"; done
  echo "failed $failed"
}

sleep 1.5
mark add
lbctl backend add 10.99.0.24:80 --pool web4 >/dev/null || fail "lbctl backend add 10.99.0.24:80 failed"
BE4=$(backend_id 10.99.0.24 80)
[[ -n "$BE4" ]] || fail "backend 10.99.0.24:80 not listed after add"
echo "added backend $BE4 (10.99.0.24, $P-be4) under load"
sleep 0.5
fresh_add=$(fresh 30)
echo "fresh curls after the add:"; sed 's/^/  /' <<<"$fresh_add"
be4_new=$(awk -v n="$P-be4" '$1 == n { print $2 }' <<<"$fresh_add")
add_failed=$(awk '$1 == "failed" { print $2 }' <<<"$fresh_add")

# Drain the backend with the most long-lived connections.
DRAIN_NAME=$("$PY" -c '
import collections, json, sys
c = collections.Counter(json.load(open(sys.argv[1])))
print(c.most_common(1)[0][0].split()[-1])' "$WORK/pinned.json")
DRAIN_IDX=${DRAIN_NAME#"$P-be"}
DRAIN_ID=$(backend_id "10.99.0.2$DRAIN_IDX" 80)
[[ -n "$DRAIN_ID" ]] || fail "no backend id for 10.99.0.2$DRAIN_IDX"
mark drain
lbctl backend drain "$DRAIN_ID" >/dev/null || fail "lbctl backend drain $DRAIN_ID failed"
echo "drained backend $DRAIN_ID (10.99.0.2$DRAIN_IDX, $DRAIN_NAME) under load"
sleep 0.5
fresh_drain=$(fresh 30)
echo "fresh curls after the drain:"; sed 's/^/  /' <<<"$fresh_drain"
drained_new=$(awk -v n="$DRAIN_NAME" '$1 == n { print $2 }' <<<"$fresh_drain")
drain_failed=$(awk '$1 == "failed" { print $2 }' <<<"$fresh_drain")

wait_log "$WORK/ll.log" '^done' 200 || true
wait "$LL_PID" && ll_rc=0 || ll_rc=$?
LL_PID=""
cat "$WORK/ll.log"
((ll_rc == 0)) || fail "long-lived client exited with $ll_rc"
summary=$("$PY" -c '
import json, sys
r = json.load(open(sys.argv[1])); drained = sys.argv[2]
on = [c for c in r if c["backend"].split()[-1] == drained]
off = [c for c in r if c["backend"].split()[-1] != drained]
print(len(r), sum(1 for c in r if c["failed"] is None), len(on),
      sum(1 for c in on if c["failed"] is None), min([c["after_drain"] for c in on] or [0]),
      len(off), sum(1 for c in off if c["failed"] is None), sum(c["ok"] for c in r))' \
  "$WORK/result.json" "$DRAIN_NAME")
read -r ll_total ll_alive on_total on_alive on_min_after off_total off_alive ll_requests <<<"$summary"
echo "long-lived: $ll_alive/$ll_total connections survived ($ll_requests requests);" \
  "on the drained backend $on_alive/$on_total survived, each answered >= $on_min_after requests after the drain;" \
  "on the other backends $off_alive/$off_total survived"
echo "fresh connections: after the add ${be4_new:-0}/30 went to $P-be4 ($add_failed failed);" \
  "after the drain ${drained_new:-0}/30 went to $DRAIN_NAME ($drain_failed failed)"

# Verdicts.
((off_alive == off_total)) || fail "$((off_total - off_alive)) long-lived connection(s) to unaffected backends failed"
((on_total > 0)) || fail "no long-lived connection on the drained backend"
((on_alive == on_total)) || fail "$((on_total - on_alive)) long-lived connection(s) on the draining backend failed"
((on_min_after >= 10)) || fail "a connection on the draining backend answered only $on_min_after requests after the drain"
((add_failed == 0)) || fail "$add_failed fresh curl(s) failed after the add"
((${be4_new:-0} > 0)) || fail "no fresh connection reached the added backend $P-be4"
((drain_failed == 0)) || fail "$drain_failed fresh curl(s) failed after the drain"
((${drained_new:-0} == 0)) || fail "${drained_new} fresh connection(s) went to the draining backend"
echo "RESULT udp_drain: udp_answered=$u_answered udp_backends=$u_backends longlived_survived=$ll_alive/$ll_total" \
  "draining_survived=$on_alive/$on_total new_to_added=${be4_new:-0}/30 new_to_draining=${drained_new:-0}/30"
echo "PASS: udp + add/drain e2e ($PMD) in $(($(date +%s) - START)) s"
