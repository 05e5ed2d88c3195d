#!/usr/bin/env bash
# shellcheck disable=SC2034  # read by lib.sh
# End to end (issue 9): health checks through the tunnel. A backend that
# answers on its own address but cannot decapsulate must be DOWN for a
# tunnelled check and UP for a direct one; a backend running lb-decap is UP
# for both.
#
#   tunnel_health_test.sh LB_CONTROLPLANE LB_DECAP LB_HC_ENCAP LBCTL
#
# Namespaces (prefix t<pid>): <p>-hc (the checker: the real lb-controlplane,
# lb-hc-encap on the VIP's egress veth), <p>-be1 and <p>-be2 (python3
# http.server on port 80 with /health, dual stack, the VIPs 198.51.100.10,
# .11, .12, 2001:db8:77::10 and ::11 on lo,
# rp_filter=0, arp_ignore=1, arp_announce=2; be1 runs lb-decap in XDP mode,
# be2 does not).
#
#   <p>-hc: hc0 10.77.0.1 fd00:77::1 (VIP routes via 10.77.0.2 / fd00:77::2:
#           a peer end with nobody behind it, the absent load balancer;
#           lb-hc-encap on hc0, forwarding on for its FIB lookups)
#           hc1 10.77.1.1 fd00:77:1::1 <-> be1 eth0 10.77.1.2 fd00:77:1::2
#           hc2 10.77.2.1 fd00:77:2::1 <-> be2 eth0 10.77.2.2 fd00:77:2::2
#
# Pools: "tun" (HTTP /health, through_tunnel, VIP 198.51.100.10:80) with
# backend ids 1 (be1) and 2 (be2); "direct" (HTTP /health) with ids 3 (be1)
# and 4 (be2); "tun6" (the same as tun over IPv6: IPv6 in IPv6, VIP
# [2001:db8:77::10]:80) with ids 5 (be1) and 6 (be2); "mix46" (IPv4
# backends, only an IPv6 VIP: IPv6 in IPv4) with ids 7 and 8; "mix64" (IPv6
# backends, only an IPv4 VIP: IPv4 in IPv6) with ids 9 and 10. Asserts
# through REST GET /pools/P/backends/N/health: be1's (1, 3, 4, 5, 7, 9)
# HEALTHY, be2's tunnelled ones (2, 6, 8, 10) UNHEALTHY, be2 direct (4)
# HEALTHY; lb-hc-encap counted encapsulated packets; the pinned map holds
# exactly the marks of the tunnelled backends; a plain (unmarked) request to
# the VIP from the checker fails (the tunnel is the only way to the VIP).
# Then through the API (lbctl pool set-health-check --through_tunnel) the
# "direct" pool (VIP .11) is checked through the tunnel: 3 stays HEALTHY, 4
# becomes UNHEALTHY and the map gains marks 3 and 4; switched back, 4 is
# HEALTHY again and they leave.
# Also: lb-controlplane started without --health_tunnel_map refuses the
# config, naming pools[0].health_check.through_tunnel.
# Bounded (< 60 s); every process is killed by pid, the namespaces deleted
# by name, the bpffs unmounted, also on failure. Must run as root.
set -euo pipefail
CP_BIN=$(realpath "$1")
DECAP_BIN=$(realpath "$2")
ENCAP_BIN=$(realpath "$3")
LBCTL_BIN=$(realpath "$4")
. "$(dirname "$0")/lib.sh"
P=t$$
HC=$P-hc
BE=("" "$P-be1" "$P-be2")
MARK_BASE=$((0x4c420000))
REST=127.0.0.1:18080
VIP4B=198.51.100.11
VIP6=2001:db8:77::10
VIP4C=198.51.100.12
VIP6B=2001:db8:77::11

WORK=$(mktemp -d /dev/shm/lb-e2e-tunhc.XXXXXX)
BPF=$WORK/bpf
CP_PID=""
HTTP_PIDS=()
stop_all() {
  stop_pids 30 "$CP_PID" "${HTTP_PIDS[@]}"
  ip netns exec "$HC" "$ENCAP_BIN" detach --iface hc0 --pin-root "$BPF/hc" --unpin \
    >/dev/null 2>&1 || true
  umount "$BPF" 2>/dev/null || true
  for ns in "$HC" "${BE[1]}" "${BE[2]}"; do ip netns del "$ns" 2>/dev/null || true; done
}
show_logs() {
  show_tail 30 "lb-controlplane log" "$WORK/cp.log"
  show_tail 10 "lb-hc-encap stats" "$WORK/encap_stats.txt"
}
# lib.sh's on_exit also runs topology.sh down for $P: harmless, nothing of
# ours is named by it.
install_traps

# 1. The network.
ip netns add "$HC"
ip -n "$HC" link set lo up
ip netns exec "$HC" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
ip -n "$HC" link add hc0 mtu 1600 type veth peer name hc0p mtu 1600
ip -n "$HC" addr add 10.77.0.1/24 dev hc0
ip -n "$HC" addr add fd00:77::1/64 dev hc0 nodad
ip -n "$HC" link set hc0 up
ip -n "$HC" link set hc0p up
for i in 1 2; do
  ns=${BE[$i]}
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$HC" link add "hc$i" mtu 1600 type veth peer name eth0 mtu 1600 netns "$ns"
  ip -n "$HC" addr add "10.77.$i.1/24" dev "hc$i"
  ip -n "$HC" addr add "fd00:77:$i::1/64" dev "hc$i" nodad
  ip -n "$HC" link set "hc$i" up
  # Checksums in software: a packet the tc program rewrote must leave with
  # a finished inner TCP checksum (docs: veth checksum offload).
  ip netns exec "$HC" ethtool -K "hc$i" tx off >/dev/null
  ip -n "$ns" addr add "10.77.$i.2/24" dev eth0
  ip -n "$ns" addr add "fd00:77:$i::2/64" dev eth0 nodad
  ip -n "$ns" link set eth0 up
  ip -n "$ns" addr add "$VIP4/32" dev lo
  ip -n "$ns" addr add "$VIP4B/32" dev lo
  ip -n "$ns" addr add "$VIP6/128" dev lo
  ip -n "$ns" addr add "$VIP4C/32" dev lo
  ip -n "$ns" addr add "$VIP6B/128" dev lo
  ip -n "$ns" route add default via "10.77.$i.1"
  ip -n "$ns" -6 route add default via "fd00:77:$i::1"
  ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 \
    net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0 \
    net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
  mkdir -p "$WORK/www$i"
  echo "be$i" >"$WORK/www$i/health"
  ip netns exec "$ns" /usr/bin/python3 -m http.server 80 --bind :: \
    --directory "$WORK/www$i" >"$WORK/http$i.log" 2>&1 &
  HTTP_PIDS+=($!)
done
ip netns exec "$HC" ethtool -K hc0 tx off >/dev/null
# lb-hc-encap's FIB lookup needs forwarding on the interface it runs on.
ip netns exec "$HC" sysctl -qw net.ipv4.conf.hc0.forwarding=1 net.ipv6.conf.hc0.forwarding=1
ip -n "$HC" route add "$VIP4/32" via 10.77.0.2 dev hc0
ip -n "$HC" route add "$VIP4B/32" via 10.77.0.2 dev hc0
ip -n "$HC" route add "$VIP4C/32" via 10.77.0.2 dev hc0
# The absent load balancer: its address resolves, nothing answers.
ip -n "$HC" neigh add 10.77.0.2 lladdr 02:00:00:00:77:02 dev hc0 nud permanent
ip -n "$HC" -6 route add "$VIP6/128" via fd00:77::2 dev hc0
ip -n "$HC" -6 route add "$VIP6B/128" via fd00:77::2 dev hc0
ip -n "$HC" neigh add fd00:77::2 lladdr 02:00:00:00:77:02 dev hc0 nud permanent
ip netns exec "${BE[1]}" "$DECAP_BIN" attach --iface eth0 --mode xdp --local 10.77.1.2 \
  --local fd00:77:1::2 \
  >"$WORK/decap.log" 2>&1 || { cat "$WORK/decap.log"; fail "lb-decap attach on be1"; }

# 2. lb-hc-encap on the VIP's egress veth, its maps on a bpffs of our own
#    (mounted in the root mount namespace, so every `ip netns exec` sees it).
mkdir -p "$BPF"
mount -t bpf bpf "$BPF"
ip netns exec "$HC" "$ENCAP_BIN" attach --iface hc0 --pin-root "$BPF/hc" \
  >"$WORK/encap.log" 2>&1 || { cat "$WORK/encap.log"; fail "lb-hc-encap attach"; }

for i in 1 2; do
  ok=""
  for _ in $(seq 50); do
    if ip netns exec "$HC" curl -s --max-time 1 -o /dev/null "http://10.77.$i.2/health"; then
      ok=yes; break
    fi
    sleep 0.1
  done
  [[ -n $ok ]] || fail "be$i's http.server does not answer on 10.77.$i.2"
  ip netns exec "$HC" curl -s --max-time 2 -o /dev/null "http://[fd00:77:$i::2]/health" ||
    fail "be$i's http.server does not answer on [fd00:77:$i::2]"
done
for url in "http://$VIP4/health" "http://[$VIP6]/health" "http://$VIP4C/" "http://[$VIP6B]/"; do
  if ip netns exec "$HC" curl -g -s --max-time 1 -o /dev/null "$url"; then
    fail "an unmarked request to $url was answered: the test could not tell a tunnelled check"
  fi
done

cat >"$WORK/lb.textproto" <<CFG
pools {
  name: "tun"
  health_check {
    kind: HEALTH_CHECK_KIND_HTTP
    interval_ms: 200
    timeout_ms: 150
    healthy_threshold: 2
    unhealthy_threshold: 2
    http_path: "/health"
    through_tunnel: true
  }
  backends { id: 1 address: "10.77.1.2" port: 80 }
  backends { id: 2 address: "10.77.2.2" port: 80 }
}
pools {
  name: "direct"
  health_check {
    kind: HEALTH_CHECK_KIND_HTTP
    interval_ms: 200
    timeout_ms: 150
    healthy_threshold: 2
    unhealthy_threshold: 2
    http_path: "/health"
  }
  backends { id: 3 address: "10.77.1.2" port: 80 }
  backends { id: 4 address: "10.77.2.2" port: 80 }
}
pools {
  name: "tun6"
  health_check {
    kind: HEALTH_CHECK_KIND_HTTP
    interval_ms: 200
    timeout_ms: 150
    healthy_threshold: 2
    unhealthy_threshold: 2
    http_path: "/health"
    through_tunnel: true
  }
  backends { id: 5 address: "fd00:77:1::2" port: 80 }
  backends { id: 6 address: "fd00:77:2::2" port: 80 }
}
pools {
  name: "mix46"
  health_check {
    kind: HEALTH_CHECK_KIND_HTTP
    interval_ms: 200
    timeout_ms: 150
    healthy_threshold: 2
    unhealthy_threshold: 2
    http_path: "/health"
    through_tunnel: true
  }
  backends { id: 7 address: "10.77.1.2" port: 80 }
  backends { id: 8 address: "10.77.2.2" port: 80 }
}
pools {
  name: "mix64"
  health_check {
    kind: HEALTH_CHECK_KIND_TCP
    interval_ms: 200
    timeout_ms: 150
    healthy_threshold: 2
    unhealthy_threshold: 2
    through_tunnel: true
  }
  backends { id: 9 address: "fd00:77:1::2" port: 80 }
  backends { id: 10 address: "fd00:77:2::2" port: 80 }
}
vips { address: "$VIP4" protocol: PROTOCOL_TCP port: 80 pool: "tun" }
vips { address: "$VIP6B" protocol: PROTOCOL_TCP port: 80 pool: "mix46" }
vips { address: "$VIP4C" protocol: PROTOCOL_TCP port: 80 pool: "mix64" }
vips { address: "$VIP6" protocol: PROTOCOL_TCP port: 80 pool: "tun6" }
vips { address: "$VIP4B" protocol: PROTOCOL_TCP port: 80 pool: "direct" }
CFG
TABLES=$WORK/tables
STATS=$WORK/stats

# 3. Without --health_tunnel_map the config is refused, naming the field.
if ip netns exec "$HC" "$CP_BIN" --config "$WORK/lb.textproto" --check \
  --max_vips 16 --max_backends 64 >"$WORK/check.log" 2>&1; then
  cat "$WORK/check.log"; fail "--check accepted through_tunnel without --health_tunnel_map"
fi
grep -q "pools\[0\].health_check.through_tunnel: lb-controlplane was started without --health_tunnel_map" \
  "$WORK/check.log" || { cat "$WORK/check.log"; fail "refusal does not name the field"; }
echo "without --health_tunnel_map: refused: $(grep -o 'pools\[0\].health_check.through_tunnel[^;]*' "$WORK/check.log" | head -1)"

# 4. The real control plane in the checker namespace.
ip netns exec "$HC" "$CP_BIN" --config "$WORK/lb.textproto" --state_dir "$WORK/state" \
  --table_region "$TABLES" --stats_region "$STATS" --max_vips 16 --max_backends 64 \
  --grpc_listen="$GRPC" --http_listen="$REST" --health_tunnel_map "$BPF/hc/hc_reals" \
  >"$WORK/cp.log" 2>&1 &
CP_PID=$!
wait_log "$WORK/cp.log" "published generation=1 " 100 "$CP_PID" || fail "lb-controlplane did not publish"

# health_of ID: the health of backend ID through REST ("?" when unknown).
health_of() {
  ip netns exec "$HC" curl -s --max-time 1 "http://$REST/pools/$2/backends/$1/health" 2>/dev/null |
    /usr/bin/python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
except Exception:
    print("?"); sys.exit(0)
print(d.get("health") or d.get("status") or "?")'
}

pool=([1]=tun [2]=tun [3]=direct [4]=direct [5]=tun6 [6]=tun6 [7]=mix46 [8]=mix46 [9]=mix64
  [10]=mix64)
IDS=(1 2 3 4 5 6 7 8 9 10)
# settle H1 .. H10: 0 once backends 1..10 show these health words (healthy /
# unhealthy) through REST, checked every 0.1 s for up to 10 s; prints them.
settle() {
  local -a want=("" "$@")
  local ok="" id got
  for _ in $(seq 100); do
    ok=yes
    for id in "${IDS[@]}"; do
      got=$(health_of "$id" "${pool[$id]}" | tr 'A-Z' 'a-z')
      [[ ${got#health_status_} == "${want[$id]}" ]] || { ok=""; break; }
    done
    [[ -n $ok ]] && break
    sleep 0.1
  done
  for id in "${IDS[@]}"; do
    echo "  backend $id (pool ${pool[$id]}): $(health_of "$id" "${pool[$id]}")"
  done
  [[ -n $ok ]]
}
# map_marks: the keys of the pinned hc_reals map minus the mark base, sorted.
map_marks() {
  bpftool map dump pinned "$BPF/hc/hc_reals" -j | /usr/bin/python3 -c '
import json, sys
ks = []
for e in json.load(sys.stdin):
    k = e["key"]
    ks.append(int.from_bytes(bytes(int(b, 16) for b in k), "little") if isinstance(k, list) else int(k))
print(" ".join(str(k - int(sys.argv[1])) for k in sorted(ks)))' "$MARK_BASE"
}
lbctl() { ip netns exec "$HC" "$LBCTL_BIN" --server "$GRPC" "$@"; }
set_direct_check() {
  lbctl pool set-health-check direct http --http_path /health --interval_ms 200 \
    --timeout_ms 150 --healthy_threshold 2 --unhealthy_threshold 2 "$@" >"$WORK/lbctl.log" 2>&1 ||
    { cat "$WORK/lbctl.log"; fail "lbctl pool set-health-check direct $*"; }
}

echo "config: pools tun, tun6, mix46, mix64 through the tunnel, pool direct direct"
U=unhealthy H=healthy
settle $H $U $H $H $H $U $H $U $H $U ||
  fail "health did not settle to: tunnel be1 up, tunnel be2 down (IPv4 and IPv6), direct be1/be2 up"

# 5. The tc program did the work, and the map holds exactly our two marks.
ip netns exec "$HC" "$ENCAP_BIN" stats --iface hc0 --json >"$WORK/encap_stats.txt" 2>&1 || true
encapsulated=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["encapsulated"])' \
  "$WORK/encap_stats.txt")
((encapsulated > 0)) || { cat "$WORK/encap_stats.txt"; fail "lb-hc-encap encapsulated nothing"; }
[[ $(map_marks) == "1 2 5 6 7 8 9 10" ]] ||
  fail "hc_reals holds marks base+[$(map_marks)], want base+[1 2 5 6 7 8 9 10]"
echo "lb-hc-encap: $encapsulated packets encapsulated; hc_reals = base + {1, 2, 5..10}"

# 6. Through the API: the direct pool through the tunnel, then back.
set_direct_check --through_tunnel
echo "lbctl: pool direct through the tunnel"
settle $H $U $H $U $H $U $H $U $H $U || fail "after lbctl --through_tunnel: want 3 up, 4 down"
[[ $(map_marks) == "1 2 3 4 5 6 7 8 9 10" ]] ||
  fail "hc_reals holds marks base+[$(map_marks)], want base+[1 .. 10]"
set_direct_check
echo "lbctl: pool direct direct again"
settle $H $U $H $H $H $U $H $U $H $U || fail "after lbctl without --through_tunnel: want 4 up"
[[ $(map_marks) == "1 2 5 6 7 8 9 10" ]] ||
  fail "hc_reals holds marks base+[$(map_marks)], want base+[1 2 5 6 7 8 9 10]"
echo "hc_reals follows the API: base + {1 .. 10}, then without 3 and 4"
echo "PASS: tunnelled check (4in4, 6in6, 6in4, 4in6): be1 (lb-decap) up, be2 (no decap) down; direct: both up ($(($(date +%s) - START)) s)"
