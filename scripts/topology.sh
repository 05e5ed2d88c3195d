#!/usr/bin/env bash
# Creates or destroys the end-to-end test network on this machine: network
# namespaces joined by veth pairs and one bridge, every object named with a
# prefix so `down` removes exactly what `up` made and nothing else.
#
#   scripts/topology.sh up   [--prefix NAME] [--backends N] [--lbs N] [--lb_decap PATH]
#                            [--mtu N] [--decap_mode xdp|tc] [--gue_port N] [--l7_nodes N]
#   scripts/topology.sh down [--prefix NAME]
#
# --mtu (default 1600) is the MTU of every link (jumbo frames: 9100; native
# XDP on veth needs an MTU below ~3,500, so jumbo topologies attach lb-decap
# with --decap_mode tc). --gue_port makes lb-decap also take GUE (IP-in-UDP)
# to that port, for pools with ENCAPSULATION_GUE. --l7_nodes N (default 0)
# adds N L7 nodes: namespaces set up like a backend (VIPs on lo, lb-decap)
# but without nginx, where the caller runs lb-l7 on the VIP; the backends
# are then its application servers.
#
#   <p>-client  eth0 172.31.1.2/24, fd00:31:1::2/64 (TX checksum offload off)
#        |
#   <p>-router  c0 172.31.1.1, fd00:31:1::1;  br0 10.99.0.1/24, fd00:99::1/64
#        |        (bridge ports l1.., b1..; IPv4/IPv6 forwarding; VIP routes)
#        +-- <p>-lb1..   eth0, MTU 1600, NO kernel address: lb-dataplane owns
#        |               it (af_xdp) as 10.99.0.11.. / fd00:99::11..
#        +-- <p>-be1..N  eth0 10.99.0.21.. / fd00:99::21.., MTU 1600, VIP on lo,
#                        lb-decap attached, nginx on :80 (page "<p>-beK"),
#                        default route via the router (replies skip the LB: DSR)
#        +-- <p>-l7n1..N eth0 10.99.0.101.. / fd00:99::101.. (bridge ports n1..),
#                        as a backend minus nginx (--l7_nodes; the caller runs lb-l7)
#
# VIPs 198.51.100.10 and 2001:db8:100::10 are routed by the router to the LB
# node(s) (--lbs 1..3: <p>-lb1 at .11, <p>-lb2 at .12, <p>-lb3 at .13); with
# --lbs 2 or 3 through one ECMP route hashed on L4
# (fib_multipath_hash_policy=1), a next hop per node. Starting lb-controlplane / lb-dataplane is
# the caller's job; this script only builds the network and the backends.
#
# lb-decap: --lb_decap PATH, else $LB_DECAP, else build/dataplane/bpf/lb-decap
# next to this script. nginx runs from /tmp/<p>-nginx/beK (own config, pid
# file); `down` stops it by pid file, deletes the namespaces (which deletes
# their veths and the bridge) and the temp dir. Both commands are idempotent;
# `down` is safe after a failed or partial `up`. Must run as root.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CMD=${1:-}
shift || true
PREFIX=lbt
BACKENDS=3
LBS=1
LB_DECAP_BIN=${LB_DECAP:-$ROOT/build/dataplane/bpf/lb-decap}
MTU=1600
DECAP_MODE=xdp
GUE_PORT=0
L7_NODES=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --prefix) PREFIX=$2; shift 2 ;;
    --backends) BACKENDS=$2; shift 2 ;;
    --lbs) LBS=$2; shift 2 ;;
    --lb_decap) LB_DECAP_BIN=$2; shift 2 ;;
    --mtu) MTU=$2; shift 2 ;;
    --decap_mode) DECAP_MODE=$2; shift 2 ;;
    --gue_port) GUE_PORT=$2; shift 2 ;;
    --l7_nodes) L7_NODES=$2; shift 2 ;;
    *) echo "topology.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
if [[ "$CMD" != up && "$CMD" != down ]]; then
  echo "usage: topology.sh up|down [--prefix NAME] [--backends N] [--lbs N] [--lb_decap PATH] [--mtu N] [--decap_mode xdp|tc] [--gue_port N] [--l7_nodes N]" >&2
  exit 2
fi
if [[ ! "$PREFIX" =~ ^[a-zA-Z][a-zA-Z0-9]{0,11}$ ]]; then
  echo "topology.sh: --prefix must be 1-12 letters/digits, got '$PREFIX'" >&2; exit 2
fi
if [[ ! "$BACKENDS" =~ ^[0-9]+$ ]] || ((BACKENDS < 1 || BACKENDS > 50)); then
  echo "topology.sh: --backends must be 1..50, got '$BACKENDS'" >&2; exit 2
fi
if [[ ! "$L7_NODES" =~ ^[0-9]$ ]] || ((L7_NODES > 4)); then
  echo "topology.sh: --l7_nodes must be 0..4, got '$L7_NODES'" >&2; exit 2
fi
if [[ ! "$LBS" =~ ^[1-3]$ ]]; then
  echo "topology.sh: --lbs must be 1, 2 or 3, got '$LBS'" >&2; exit 2
fi

VIP4=198.51.100.10
VIP6=2001:db8:100::10
NGINX_DIR=/tmp/$PREFIX-nginx
ns() { ip netns exec "$1" "${@:2}"; }

down() {
  # nginx first (by its pid files), then every namespace with our prefix.
  local pidf pid n
  for pidf in "$NGINX_DIR"/*/nginx.pid; do
    [[ -f "$pidf" ]] || continue
    pid=$(cat "$pidf" 2>/dev/null || true)
    [[ "$pid" =~ ^[0-9]+$ ]] || continue
    # Only signal it if it is really our nginx (pid may have been reused).
    if grep -q "$NGINX_DIR" "/proc/$pid/cmdline" 2>/dev/null; then
      kill -QUIT "$pid" 2>/dev/null || true
      for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  local removed=0
  for n in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    case $n in
      "$PREFIX"-client | "$PREFIX"-router | "$PREFIX"-lb[0-9]* | "$PREFIX"-be[0-9]* | "$PREFIX"-l7n[0-9]*)
        # Any process still inside (e.g. a stray nginx worker) goes first.
        for pid in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns delete "$n" 2>/dev/null || true
        removed=$((removed + 1)) ;;
    esac
  done
  rm -rf "$NGINX_DIR"
  echo "topology $PREFIX: down ($removed namespaces removed)"
}

if [[ "$CMD" == down ]]; then
  down
  exit 0
fi

# ---------------------------------------------------------------- up
[[ $(id -u) -eq 0 ]] || { echo "topology.sh: must run as root" >&2; exit 1; }
command -v nginx >/dev/null || { echo "topology.sh: nginx missing (scripts/install-deps.sh)" >&2; exit 1; }
[[ -x "$LB_DECAP_BIN" ]] || { echo "topology.sh: lb-decap not found at $LB_DECAP_BIN (build dataplane/bpf/lb-decap or pass --lb_decap)" >&2; exit 1; }
# Idempotent: start from nothing of ours.
down >/dev/null

fail() { echo "topology.sh: $*; run: $0 down --prefix $PREFIX" >&2; exit 1; }
trap 'echo "topology.sh: up failed at line $LINENO; run: $0 down --prefix $PREFIX" >&2' ERR

R=$PREFIX-router
C=$PREFIX-client
ip netns add "$R"
ip netns add "$C"
for ((i = 1; i <= LBS; i++)); do ip netns add "$PREFIX-lb$i"; done
for ((i = 1; i <= BACKENDS; i++)); do ip netns add "$PREFIX-be$i"; done
for ((i = 1; i <= L7_NODES; i++)); do ip netns add "$PREFIX-l7n$i"; done

sysctl_ns() { ns "$1" sysctl -qw "$2" >/dev/null; }

# Router: forwarding, no rp_filter, no redirects (the LB and the backends share
# the bridge, so forwarded tunnel packets leave by the interface they came in).
ns "$R" ip link set lo up
sysctl_ns "$R" net.ipv4.ip_forward=1
sysctl_ns "$R" net.ipv6.conf.all.forwarding=1
sysctl_ns "$R" net.ipv4.conf.all.rp_filter=0
sysctl_ns "$R" net.ipv4.conf.default.rp_filter=0
sysctl_ns "$R" net.ipv4.conf.all.send_redirects=0
sysctl_ns "$R" net.ipv4.conf.default.send_redirects=0
sysctl_ns "$R" net.ipv4.fib_multipath_hash_policy=1
sysctl_ns "$R" net.ipv6.fib_multipath_hash_policy=1
ns "$R" ip link add br0 type bridge
ns "$R" ip link set br0 mtu "$MTU"
ns "$R" ip addr add 10.99.0.1/24 dev br0
ns "$R" ip addr add fd00:99::1/64 dev br0 nodad
ns "$R" ip link set br0 up

# Client <-> router.
ip link add c0 netns "$R" type veth peer name eth0 netns "$C"
ns "$C" ip link set lo up
ns "$C" ip link set eth0 mtu "$MTU"
ns "$R" ip link set c0 mtu "$MTU"
ns "$C" ip addr add 172.31.1.2/24 dev eth0
ns "$C" ip addr add fd00:31:1::2/64 dev eth0 nodad
ns "$C" ip link set eth0 up
ns "$C" ip route add default via 172.31.1.1
ns "$C" ip -6 route add default via fd00:31:1::1
# Partial checksums would reach the LB's af_xdp socket unfilled and the
# backend would drop the decapsulated segments: compute them in software.
ns "$C" ethtool -K eth0 tx off >/dev/null
ns "$R" ip addr add 172.31.1.1/24 dev c0
ns "$R" ip addr add fd00:31:1::1/64 dev c0 nodad
ns "$R" ip link set c0 up
ns "$R" ethtool -K c0 tx off >/dev/null

# A bridge port in the router for namespace $1 (router-side name $2).
bridge_port() {
  ip link add "$2" netns "$R" type veth peer name eth0 netns "$1"
  ns "$R" ip link set "$2" mtu "$MTU" master br0 up
  ns "$R" ethtool -K "$2" tx off >/dev/null
  ns "$1" ip link set lo up
  ns "$1" ip link set eth0 mtu "$MTU"
}

# LB nodes: the dataplane owns eth0 (af_xdp); the kernel gets no address on it
# and keeps quiet (no IPv6 autoconfiguration).
LB_HOPS4=()
for ((i = 1; i <= LBS; i++)); do
  n=$PREFIX-lb$i
  bridge_port "$n" "l$i"
  sysctl_ns "$n" net.ipv6.conf.eth0.disable_ipv6=1
  ns "$n" ip link set eth0 up
  LB_HOPS4+=("10.99.0.$((10 + i))")
done

# VIP routes on the router.
if ((LBS == 1)); then
  ns "$R" ip route add "$VIP4/32" via 10.99.0.11 dev br0
  ns "$R" ip -6 route add "$VIP6/128" via fd00:99::11 dev br0
else
  hops4=()
  hops6=()
  for ((i = 1; i <= LBS; i++)); do
    hops4+=(nexthop via "10.99.0.$((10 + i))" dev br0)
    hops6+=(nexthop via "fd00:99::$((10 + i))" dev br0)
  done
  ns "$R" ip route add "$VIP4/32" "${hops4[@]}"
  ns "$R" ip -6 route add "$VIP6/128" "${hops6[@]}"
fi

# A node behind the LB (namespace $1, bridge port $2, addresses $3 / $4):
# the VIPs on lo, ARP/rp_filter settings for DSR, lb-decap on eth0, default
# route via the router.
tunnel_node() {
  local n=$1 a4=$3 a6=$4 c
  bridge_port "$n" "$2"
  for c in all default eth0 lo; do sysctl_ns "$n" "net.ipv4.conf.$c.rp_filter=0"; done
  for c in all eth0; do
    sysctl_ns "$n" "net.ipv4.conf.$c.arp_ignore=1"
    sysctl_ns "$n" "net.ipv4.conf.$c.arp_announce=2"
  done
  ns "$n" ip addr add "$a4/24" dev eth0
  ns "$n" ip addr add "$a6/64" dev eth0 nodad
  ns "$n" ip addr add "$VIP4/32" dev lo
  ns "$n" ip addr add "$VIP6/128" dev lo nodad
  ns "$n" ip link set eth0 up
  ns "$n" ip route add default via 10.99.0.1
  ns "$n" ip -6 route add default via fd00:99::1
  local -a gue=()
  if ((GUE_PORT != 0)); then gue=(--gue_port "$GUE_PORT"); fi
  ns "$n" "$LB_DECAP_BIN" attach --iface eth0 --mode "$DECAP_MODE" "${gue[@]}" >/dev/null \
    || fail "lb-decap attach --iface eth0 --mode $DECAP_MODE failed in $n"
}

# L7 nodes (--l7_nodes): everything a backend has but nginx.
for ((i = 1; i <= L7_NODES; i++)); do
  tunnel_node "$PREFIX-l7n$i" "n$i" "10.99.0.$((100 + i))" "fd00:99::$((100 + i))"
done

# Backends.
mkdir -p "$NGINX_DIR"
for ((i = 1; i <= BACKENDS; i++)); do
  n=$PREFIX-be$i
  tunnel_node "$n" "b$i" "10.99.0.$((20 + i))" "fd00:99::$((20 + i))"

  d=$NGINX_DIR/be$i
  mkdir -p "$d/html"
  echo "backend $n" > "$d/html/index.html"
  cat > "$d/nginx.conf" <<NGINX
# nginx for backend $n (scripts/topology.sh; removed by 'down').
daemon on;
user root;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 1024; }
http {
  access_log $d/access.log;
  client_body_temp_path $d/tmp_body;
  proxy_temp_path $d/tmp_proxy;
  fastcgi_temp_path $d/tmp_fastcgi;
  uwsgi_temp_path $d/tmp_uwsgi;
  scgi_temp_path $d/tmp_scgi;
  keepalive_timeout 65;
  server {
    # Every local address: the VIPs on lo (traffic from the LB) and the
    # backend's own address (health checks, direct measurements).
    listen 80;
    listen [::]:80 ipv6only=on;
    root $d/html;
    location = /health { default_type text/plain; return 200 "ok\n"; }
    # Takes (and discards) a request body: large uploads cross the LB.
    location = /upload { client_max_body_size 16m; default_type text/plain; return 200 "received\n"; }
    location / { default_type text/html; }
  }
}
NGINX
  ns "$n" nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" \
    || fail "nginx did not start in $n (see $d/error.log)"
done
trap - ERR

# Summary.
echo "topology $PREFIX: up"
echo "  $C       eth0 172.31.1.2/24 fd00:31:1::2/64 (tx checksum offload off), default via the router"
echo "  $R       c0 172.31.1.1 fd00:31:1::1; br0 10.99.0.1/24 fd00:99::1/64 (MTU $MTU)"
for ((i = 1; i <= LBS; i++)); do
  echo "  $PREFIX-lb$i        eth0 (MTU $MTU, no kernel address) -> run lb-dataplane as 10.99.0.$((10 + i)) / fd00:99::$((10 + i))"
done
for ((i = 1; i <= L7_NODES; i++)); do
  echo "  $PREFIX-l7n$i       eth0 10.99.0.$((100 + i)) fd00:99::$((100 + i)) (MTU $MTU), VIPs on lo, lb-decap ($DECAP_MODE), no nginx: run lb-l7 on the VIP"
done
for ((i = 1; i <= BACKENDS; i++)); do
  echo "  $PREFIX-be$i        eth0 10.99.0.$((20 + i)) fd00:99::$((20 + i)) (MTU $MTU), VIPs on lo, lb-decap ($DECAP_MODE), nginx pid $(cat "$NGINX_DIR/be$i/nginx.pid")"
done
echo "  VIPs $VIP4 and $VIP6 routed to ${LB_HOPS4[*]}$( ((LBS > 1)) && echo ' (ECMP, L4 hash)')"
