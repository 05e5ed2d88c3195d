// lbctl's grammar as data: the global flags and every command with its
// words, arguments, help and flags, bound to the method that runs it. A
// declarative table; adding a command is one entry here and one method.
#include "absl/strings/str_cat.h"
#include "controlplane/cli/lbctl.h"

namespace lb::cli {

Lbctl::Lbctl() {
  global_flags_ = {
      {"server", "HOST:PORT",
       absl::StrCat("lb-controlplane's gRPC address (default ", kDefaultServer, ")")},
      {"token_file", "PATH",
       "file holding the bearer token (sent as \"authorization: Bearer <token>\")"},
      {"tls_ca", "PATH", "PEM CA certificate(s): connect with TLS and verify the server"},
      {"tls_server_name", "NAME", "expect this name in the server certificate (with --tls_ca)"},
      {"timeout_ms", "N", absl::StrCat("deadline of each call (default ", kDefaultTimeoutMs, ")")},
      {"json", "", "print protobuf JSON (proto field names), one document per line"},
      {"help", "", "help for lbctl or the command given"},
  };
  auto bind = [this](int (Lbctl::*fn)(const ParsedArgs&)) {
    return [this, fn](const ParsedArgs& a) { return (this->*fn)(a); };
  };
  const FlagDef pool_flag{"pool", "NAME", "the pool (default: the default pool)"};
  const FlagDef weight_flag{"weight", "N", "relative share of new flows, 0..65535 (default 1)"};
  const FlagDef maxconn_flag{"max_connections", "N", "connection limit, 0 = unlimited"};
  const FlagDef state_flag{"state", "STATE", "active | draining | down"};
  const FlagDef sticky_flag{"sticky", "", "sticky sessions: a client keeps its backend"};
  const FlagDef ttl_flag{"sticky_ttl", "SECONDS",
                         "sticky entry lifetime after the last packet "
                         "(default 3600)"};
  commands_ = {
      {{"vip", "add"},
       "ADDRESS:PORT tcp|udp",
       2,
       2,
       "Create a VIP",
       "PORT 0 = every port of the address. Write IPv6 as [ADDRESS]:PORT.\n"
       "Example: lbctl vip add 192.0.2.10:443 tcp --pool web",
       {{"pool", "NAME", "the pool serving it (required)"},
        {"id", "N", "the VIP id (default: the lowest unused)"},
        {"fragment_tolerant", "", "hash on addresses and protocol only, so fragments follow"}},
       bind(&Lbctl::VipAdd)},
      {{"vip", "list"},
       "",
       0,
       0,
       "List VIPs with their table generation and fingerprint",
       "",
       {},
       bind(&Lbctl::VipList)},
      {{"vip", "rm"}, "ID", 1, 1, "Delete a VIP", "", {}, bind(&Lbctl::VipRm)},

      {{"pool", "add"},
       "NAME",
       1,
       1,
       "Create a pool",
       "NAME: [A-Za-z0-9_.:-]{1,64}. Backends are added with 'lbctl backend add --pool NAME'.",
       {{"algorithm", "ALGORITHM",
         "maglev (default) | ip_hash | round_robin | weighted_round_robin | random | "
         "least_connections | weighted_least_connections"},
        sticky_flag,
        ttl_flag,
        {"drain_timeout", "SECONDS", "how long a removed backend drains (default 30)"},
        {"kind", "KIND",
         "dsr (default: lb-dataplane tunnels to the address; one backend per address) | proxy "
         "(lb-l7 connects to address:port)"}},
       bind(&Lbctl::PoolAdd)},
      {{"pool", "list"}, "", 0, 0, "List pools and their settings", "", {}, bind(&Lbctl::PoolList)},
      {{"pool", "rm"},
       "NAME",
       1,
       1,
       "Delete a pool (refused while a VIP uses it)",
       "",
       {},
       bind(&Lbctl::PoolRm)},
      {{"pool", "set-algorithm"},
       "NAME ALGORITHM",
       2,
       2,
       "Set a pool's algorithm and sticky sessions (new flows only)",
       "ALGORITHM: maglev | ip_hash | round_robin | weighted_round_robin | random |\n"
       "least_connections | weighted_least_connections.",
       {sticky_flag, ttl_flag},
       bind(&Lbctl::PoolSetAlgorithm)},
      {{"pool", "set-health-check"},
       "NAME KIND",
       2,
       2,
       "Set a pool's health check",
       "KIND: none | tcp | http | script. Unset numbers take the defaults (interval 5000 ms,\n"
       "timeout 3000 ms, healthy 2, unhealthy 3). The first --script is a script's name in\n"
       "the control plane's --health_script_dir, the rest its arguments (at most 8 of at most\n"
       "256 bytes); the backend's address and port are appended; exit 0 = healthy.\n"
       "Example: lbctl pool set-health-check web http --http_path /healthz --interval_ms 1000",
       {{"interval_ms", "N", "time between checks"},
        {"timeout_ms", "N", "time a check may take"},
        {"healthy_threshold", "N", "consecutive successes to become healthy"},
        {"unhealthy_threshold", "N", "consecutive failures to become unhealthy"},
        {"http_path", "PATH", "HTTP path (default /health)"},
        {"http_host", "HOST", "HTTP Host header (default the backend address)"},
        {"http_max_body_bytes", "N", "response body size limit (default 4096)"},
        {"script", "ARG", "script name in --health_script_dir, then its arguments, one per flag",
         true},
        {"min_state_duration_ms", "N", "damping: minimum time between transitions"},
        {"through_tunnel", "",
         "check through the tunnel: connect to the pool's VIP, marked per backend, for "
         "lb-hc-encap to tunnel (needs lb-controlplane --health_tunnel_map)"}},
       bind(&Lbctl::PoolSetHealthCheck)},

      {{"backend", "add"},
       "ADDRESS:PORT",
       1,
       1,
       "Add a backend to a pool",
       "PORT is the service port (health checks); tunnelled packets keep the VIP's port.\n"
       "Write IPv6 as [ADDRESS]:PORT. The pool is created if it is the default one.\n"
       "Example: lbctl backend add 10.1.0.7:8080 --pool web --weight 2",
       {pool_flag,
        weight_flag,
        maxconn_flag,
        {"id", "N", "the backend id (default: the lowest unused)"},
        {"state", "STATE", "active (default) | draining | down"},
        {"health_check_path", "PATH", "HTTP health-check path for this backend"}},
       bind(&Lbctl::BackendAdd)},
      {{"backend", "list"},
       "",
       0,
       0,
       "List backends: configured and effective state, health, live flows",
       "",
       {{"pool", "NAME", "only this pool (default: every pool)"}},
       bind(&Lbctl::BackendList)},
      {{"backend", "update"},
       "ID",
       1,
       1,
       "Change a backend's weight, limit or state",
       "",
       {weight_flag, maxconn_flag, state_flag},
       bind(&Lbctl::BackendUpdate)},
      {{"backend", "drain"},
       "ID",
       1,
       1,
       "Drain a backend: no new flows, existing flows continue",
       "",
       {},
       bind(&Lbctl::BackendDrain)},
      {{"backend", "rm"},
       "ID",
       1,
       1,
       "Remove a backend (drains first, then leaves)",
       "It leaves when its flows end or after the pool's drain timeout; the output says how\n"
       "many live flows it had.",
       {},
       bind(&Lbctl::BackendRm)},
      {{"backend", "health"},
       "ID",
       1,
       1,
       "Show a backend's health-check state",
       "",
       {},
       bind(&Lbctl::BackendHealth)},

      {{"stats"},
       "",
       0,
       0,
       "Show per-lcore counters from the dataplane",
       "",
       {},
       bind(&Lbctl::Stats)},
      {{"node", "show"},
       "",
       0,
       0,
       "Show this node's settings (tunnel sources)",
       "",
       {},
       bind(&Lbctl::NodeShow)},
      {{"node", "set"},
       "",
       0,
       0,
       "Set this node's tunnel sources",
       "The outer source address of IPv4 / IPv6 tunnel packets. \"\" = lb-dataplane's own\n"
       "--ipv4 / --ipv6. Settings not named keep their value.\n"
       "Example: lbctl node set --tunnel_source_ipv4 192.0.2.1",
       {{"tunnel_source_ipv4", "ADDRESS", "outer source of IPv4 tunnels"},
        {"tunnel_source_ipv6", "ADDRESS", "outer source of IPv6 tunnels"}},
       bind(&Lbctl::NodeSet)},
      {{"l7", "get"},
       "",
       0,
       0,
       "Print lb-l7's configuration (lb.v1.L7Config text format) and its generation",
       "The output is a file 'lbctl l7 set' takes back: get, edit, set.",
       {},
       bind(&Lbctl::L7Get)},
      {{"l7", "set"},
       "FILE",
       1,
       1,
       "Replace lb-l7's configuration with FILE (lb.v1.L7Config text format)",
       "Validated by the validator lb-l7 runs; refused with the field named, nothing changed.\n"
       "Every lb-l7 started with --controlplane applies the new generation live.\n"
       "Example: lbctl l7 get > l7.txt; edit l7.txt; lbctl l7 set l7.txt --expected_generation 4",
       {{"expected_generation", "N",
         "refuse (FAILED_PRECONDITION) unless the current generation is N "
         "(0 = any; 'lbctl l7 get' prints it)"}},
       bind(&Lbctl::L7Set)},
      {{"l7", "set-cert"},
       "",
       0,
       0,
       "Upload a certificate and its private key for an L7 listener (inline PEM)",
       "Reads the L7 configuration, puts the certificate (then --chain, if given) and the key\n"
       "into the listener's certificates[--index] (default 0; the count appends), replacing\n"
       "that entry (its files and OCSP response included), and sets it back with the\n"
       "generation read. Every lb-l7 swaps it in live, no connection dropped. The key is\n"
       "read from a file only and is never shown again: 'lbctl l7 get' prints\n"
       "key_pem: \"redacted:sha256:<hex>\", which 'lbctl l7 set' takes back as \"keep it\".\n"
       "Example: lbctl l7 set-cert --listener https --cert site.crt --key site.key",
       {{"listener", "NAME", "the listener (listeners[].name); it must have a tls block"},
        {"cert", "FILE", "PEM certificate (then its chain)"},
        {"key", "FILE", "PEM private key (unencrypted); keep it 0600"},
        {"chain", "FILE", "PEM intermediates appended after the certificate"},
        {"index", "N", "which certificates[] entry (default 0; the count appends)"}},
       bind(&Lbctl::L7SetCert)},
      {{"l7", "rotate-ticket-keys"},
       "",
       0,
       0,
       "Rotate lb-l7's session ticket keys now (they also rotate every "
       "--l7_ticket_key_rotate_s)",
       "Every lb-l7 gets the new keys live. Tickets issued before still resume (older keys\n"
       "keep decrypting) unless --drop_previous, which replaces every key (after a leak:\n"
       "every client does one full handshake). Prints the new key generation, never a key.",
       {{"drop_previous", "", "replace every key; tickets issued so far are refused"}},
       bind(&Lbctl::L7RotateTicketKeys)},
      {{"tables"},
       "",
       0,
       0,
       "Show the published table generation, per-VIP fingerprints, stuck lcores",
       "",
       {},
       bind(&Lbctl::Tables)},
      {{"explain"},
       "SRC:PORT DST:PORT tcp|udp",
       3,
       3,
       "Which backend this node would pick for a flow, and why",
       "Example: lbctl explain 198.51.100.7:40000 192.0.2.10:443 tcp",
       {},
       bind(&Lbctl::Explain)},
      {{"watch"},
       "",
       0,
       0,
       "Stream events: publishes, health transitions, refusals",
       "The first event is \"subscribed\"; after it no event is lost silently: a client too\n"
       "slow to keep up gets a \"dropped N events\" event in place of the oldest ones.\n"
       "Runs until Ctrl-C, --count or --timeout (--timeout_ms does not apply).\n"
       "With --json: one event per line.",
       {{"count", "N", "exit 0 after N events following \"subscribed\""},
        {"timeout", "DURATION",
         "stop after this long (30, 30s, 500ms, 2m); exit 0, or 9 if "
         "--count events did not arrive"}},
       bind(&Lbctl::Watch)},
  };
}

}  // namespace lb::cli
