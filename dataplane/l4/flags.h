// lb-dataplane's flags, defined in main.cc (so that `--help` lists them under
// one file) and read by the start-up and monitor rooms. Read-only after
// ParseFlags.
#ifndef LB_DATAPLANE_L4_FLAGS_H_
#define LB_DATAPLANE_L4_FLAGS_H_

#include "gflags/gflags.h"

DECLARE_string(table_region);
DECLARE_string(stats_region);
DECLARE_int32(wait_for_table_s);
DECLARE_string(ipv4);
DECLARE_string(ipv6);
DECLARE_string(gateway_ipv4);
DECLARE_string(gateway_ipv6);
DECLARE_string(gateway_mac);
DECLARE_int32(mtu);
DECLARE_bool(set_port_mtu);
DECLARE_uint32(conn_table_size);
DECLARE_bool(conn_table_persist);
DECLARE_string(conn_table_dir);
DECLARE_uint32(conn_table_grace_s);
DECLARE_uint32(sticky_table_size);
DECLARE_bool(sticky_table_persist);
DECLARE_uint32(tcp_timeout_s);
DECLARE_uint32(tcp_closing_timeout_s);
DECLARE_uint32(udp_timeout_s);
DECLARE_uint32(tcp_syn_timeout_s);
DECLARE_uint32(new_flow_rate_limit);
DECLARE_uint32(rx_desc);
DECLARE_uint32(tx_desc);
DECLARE_uint32(mbufs);
DECLARE_bool(promiscuous);
DECLARE_uint32(idle_exit_ms);
DECLARE_uint32(drain_us);
DECLARE_uint32(summary_interval_s);
DECLARE_string(exception_path);
DECLARE_uint32(exception_path_pps);

#endif  // LB_DATAPLANE_L4_FLAGS_H_
