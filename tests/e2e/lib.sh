# shellcheck shell=bash disable=SC2034
# Shared helpers of the end-to-end scripts in tests/e2e, sourced (never run)
# right after `set -euo pipefail` by each script:
#   . "$(dirname "$0")/lib.sh"
# It defines the common settings (ROOT, TOPO, VIP4, GRPC, START, PMD) and
# functions; it starts nothing by itself. Helpers that wait are bounded and
# return 1 on timeout (the caller decides the verdict); start_dataplane_fallback
# and fail() end the script, and the EXIT trap (on_exit) cleans up.
# Single-threaded: for the script's own shell only.

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TOPO=$ROOT/scripts/topology.sh
VIP4=198.51.100.10
VIP6=2001:db8:100::10
GRPC=127.0.0.1:50051  # inside a namespace of our own: the port is free
START=$(date +%s)
PMD=af_xdp            # becomes af_packet when start_dataplane_fallback falls back

# fail MSG...: print "FAIL: MSG" and exit 1 (the EXIT trap cleans up).
fail() { echo "FAIL: $*"; exit 1; }

# stop_pids TRIES PID...: SIGTERM every non-empty PID, give each up to
# TRIES x 0.1 s to exit, then SIGKILL and reap it.
stop_pids() {
  local tries=$1 pid
  shift
  for pid in "$@"; do
    if [[ -n "$pid" ]]; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  for pid in "$@"; do
    [[ -z "$pid" ]] && continue
    for _ in $(seq "$tries"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

# show_tail LINES TITLE FILE: print "--- TITLE" and the last LINES of FILE
# (nothing when FILE is missing).
show_tail() { echo "--- $2"; tail -n "$1" "$3" 2>/dev/null || true; }

# on_exit: the EXIT trap (see install_traps). Calls the script's stop_all
# (stop what it started), removes the topology of prefix $P and the EAL
# runtime dirs of the dataplanes' default file prefixes (lb-e2e-$P,
# lb-e2e-$P-<node>), on failure calls the script's show_logs, removes $WORK
# and exits with the script's status.
on_exit() {
  local rc=$?
  trap - EXIT
  stop_all
  bash "$TOPO" down --prefix "$P" >/dev/null 2>&1 || true
  rm -rf "/var/run/dpdk/lb-e2e-$P" "/var/run/dpdk/lb-e2e-$P"-[0-9]*
  if ((rc != 0)); then show_logs; fi
  rm -rf "$WORK"
  exit "$rc"
}

# install_traps: on_exit on EXIT; INT/TERM exit 130 (which runs on_exit).
install_traps() {
  trap on_exit EXIT
  trap 'exit 130' INT TERM
}

# wait_log FILE PATTERN TRIES [PID]: 0 once FILE has a line matching the
# grep PATTERN, checked every 0.1 s up to TRIES times; 1 when it never did or
# when PID exited first.
wait_log() {
  local file=$1 pattern=$2 tries=$3 pid=${4:-}
  for _ in $(seq "$tries"); do
    grep -qs -- "$pattern" "$file" && return 0
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  grep -qs -- "$pattern" "$file"
}

# start_controlplane NETNS LOG GRPC_LISTEN [PATTERN]: lb-controlplane
# ($CP_BIN) on $WORK/lb.textproto, state dir $WORK/state, regions
# $TABLES/$STATS, REST off, in namespace NETNS (the root namespace when
# empty), output to LOG; sets CP_PID. 0 once LOG shows PATTERN (default: the
# first table published), 1 after 10 s or when the process exited.
start_controlplane() {
  local ns=$1 log=$2 grpc=$3 pattern=${4:-"published generation=1 "}
  local -a pre=()
  if [[ -n "$ns" ]]; then pre=(ip netns exec "$ns"); fi
  "${pre[@]}" "$CP_BIN" --config "$WORK/lb.textproto" --state_dir "$WORK/state" \
    --table_region "$TABLES" --stats_region "$STATS" --max_vips 16 --max_backends 64 \
    --grpc_listen="$grpc" --http_listen= >"$log" 2>&1 &
  CP_PID=$!
  wait_log "$log" "$pattern" 100 "$CP_PID"
}

# lbctl ARGS...: lbctl ($LBCTL_BIN) against the control plane in <p>-router.
lbctl() { ip netns exec "$P-router" "$LBCTL_BIN" --server "$GRPC" "$@"; }

# start_dataplane NODE VDEV LOG: lb-dataplane ($DP_BIN) in namespace
# <p>-lbNODE on VDEV over the regions $TABLES/$STATS, address 10.99.0.1NODE
# (and fd00:99::1NODE when DP_IPV6=yes), DPDK file prefix $DP_FILE_PREFIX
# (default lb-e2e-<p>), egress MTU $DP_MTU (default 1600; DP_SET_PORT_MTU=yes
# also programs it into the port), extra flags $DP_EXTRA_ARGS (word-split),
# output to LOG; sets DP_PID. 0 once its
# port is up, 1 after 10 s or when it exited.
start_dataplane() {
  local node=$1 vdev=$2 log=$3
  local -a ip6=() gw6=() extra=()
  read -ra extra <<<"${DP_EXTRA_ARGS:-}"
  if [[ ${DP_IPV6:-} == yes ]]; then
    ip6=(--ipv6 "fd00:99::1$node")
    gw6=(--gateway_ipv6 fd00:99::1)
  fi
  ip netns exec "$P-lb$node" "$DP_BIN" -l 0 --no-huge -m 512 --no-pci \
    --file-prefix "${DP_FILE_PREFIX:-lb-e2e-$P}" --log-level lib.eal:error --vdev="$vdev" -- \
    --table_region "$TABLES" --stats_region "$STATS" --wait_for_table_s 5 \
    --ipv4 "10.99.0.1$node" "${ip6[@]}" --gateway_ipv4 10.99.0.1 "${gw6[@]}" \
    --mtu "${DP_MTU:-1600}" ${DP_SET_PORT_MTU:+--set_port_mtu} \
    --conn_table_size 65536 --sticky_table_size 4096 "${extra[@]}" >"$log" 2>&1 &
  DP_PID=$!
  wait_log "$log" "] port [0-9]* " 100 "$DP_PID"
}

# start_dataplane_fallback NODE LOG [TAG]: start_dataplane on af_xdp over
# eth0; when that port does not come up, kill it and start on net_af_packet
# (PMD=af_packet). Sets VDEV to the vdev in use. Fails the test when neither
# comes up. TAG (a node number) prefixes the messages.
start_dataplane_fallback() {
  local node=$1 log=$2 tag=${3:-}
  VDEV="net_af_xdp0,iface=eth0"
  if ! start_dataplane "$node" "$VDEV" "$log"; then
    echo "${tag:+node $tag: }af_xdp port did not come up; falling back to af_packet:"
    tail -n 5 "$log"
    kill -KILL "$DP_PID" 2>/dev/null || true; wait "$DP_PID" 2>/dev/null || true
    PMD=af_packet
    VDEV="net_af_packet0,iface=eth0"
    start_dataplane "$node" "$VDEV" "$log" || fail "lb-dataplane${tag:+ $tag} did not start"
  fi
}

# warm_up TRIES URL: 0 once a curl from <p>-client to URL succeeds (2 s
# each, 0.5 s apart, TRIES times: ARP/NDP on the way); 1 otherwise.
warm_up() {
  for _ in $(seq "$1"); do
    ip netns exec "$P-client" curl -g -s --max-time 2 -o /dev/null "$2" && return 0
    sleep 0.5
  done
  return 1
}

# start_capture NETNS IFACE PCAP LOG FILTER: tcpdump on IFACE in NETNS into
# PCAP (stderr/stdout to LOG), each packet written as it arrives (a TERM
# must not lose a ring block not yet retired); sets CAP_PID. Wait for it with
# wait_log LOG "listening on" 50.
start_capture() {
  ip netns exec "$1" tcpdump -i "$2" -nn -U --immediate-mode -w "$3" "$5" >"$4" 2>&1 &
  CAP_PID=$!
}

# wrk_failed FILE: socket errors (connect+read+write+timeout) + non-2xx.
wrk_failed() {
  awk '/Socket errors:/ { gsub(",", ""); s += $4 + $6 + $8 + $10 }
       /Non-2xx or 3xx responses:/ { s += $5 }
       END { print s + 0 }' "$1"
}

# wrk_requests FILE: the number of requests wrk completed.
wrk_requests() { awk '/requests in/ { print $1 }' "$1"; }

# node_lbctl K ARGS...: lbctl against LB node K's control plane (the
# multi-node tests run one per node, gRPC on $GRPC in $P-lb<K>).
node_lbctl() { ip netns exec "$P-lb$1" "$LBCTL_BIN" --server "$GRPC" "${@:2}"; }

# node_tables K: node K's published tables, a "generation G" line, then one
# "vip fingerprint" line per VIP (fingerprint "-" when it has none).
node_tables() {
  node_lbctl "$1" tables --json | /usr/bin/python3 -c '
import json, sys
doc = json.loads(sys.stdin.read())
print("generation", doc.get("generation", "-"))
for v in doc.get("vips", []):
    print(json.dumps(v.get("vip", {}), sort_keys=True), v.get("fingerprint", "-"))'
}

# l7_tier_config: the L4 desired state of the L7 tests (l7_path,
# l7_sticky_cp): one Maglev pool "l7" of the two L7 nodes behind $VIP4:80.
l7_tier_config() {
  cat <<CFG
node { tunnel_source_ipv4: "10.99.0.11" tunnel_source_ipv6: "fd00:99::11" }
pools {
  name: "l7"
  algorithm: ALGORITHM_MAGLEV
  backends { address: "10.99.0.101" port: 80 }
  backends { address: "10.99.0.102" port: 80 }
}
vips { address: "$VIP4" protocol: PROTOCOL_TCP port: 80 pool: "l7" }
CFG
}

# node_config ADDR [ADDR6]: the desired state of one LB node in the
# multi-node tests (ecmp, bgp, vrrp): tunnel source ADDR, Maglev pool web4
# over the three backends, VIP $VIP4:80; with ADDR6 also the IPv6 tunnel
# source ADDR6, pool web6 over the backends' IPv6 addresses and VIP
# $VIP6:80 (IPv6-in-IPv6). Identical pools on every node: identical tables.
node_config() {
  local v6src="" v6=""
  if [[ -n ${2:-} ]]; then
    v6src=" tunnel_source_ipv6: \"$2\""
    v6="pools {
  name: \"web6\"
  algorithm: ALGORITHM_MAGLEV
  backends { address: \"fd00:99::21\" port: 80 }
  backends { address: \"fd00:99::22\" port: 80 }
  backends { address: \"fd00:99::23\" port: 80 }
}
vips { address: \"$VIP6\" protocol: PROTOCOL_TCP port: 80 pool: \"web6\" }"
  fi
  cat <<CFG
node { tunnel_source_ipv4: "$1"$v6src }
pools {
  name: "web4"
  algorithm: ALGORITHM_MAGLEV
  backends { address: "10.99.0.21" port: 80 }
  backends { address: "10.99.0.22" port: 80 }
  backends { address: "10.99.0.23" port: 80 }
}
vips { address: "$VIP4" protocol: PROTOCOL_TCP port: 80 pool: "web4" }
${v6}
CFG
}
