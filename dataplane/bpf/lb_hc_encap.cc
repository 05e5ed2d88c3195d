// lb-hc-encap: attaches, detaches and reads the health-check encapsulation
// program (hc_encap.bpf.c) on the checker's host, with libbpf only.
//
//   lb-hc-encap attach --iface X [--source IPV4] [--source6 IPV6] [--obj PATH]
//                      [--pin-root DIR]
//   lb-hc-encap detach --iface X [--pin-root DIR] [--unpin]
//   lb-hc-encap stats  --iface X [--json]
//
// Contract: attach loads the object, attaches it as a tc egress cls_bpf
// direct-action filter (clsact, handle 0x4c8, priority 1) on X, and shares
// its maps through pins in DIR (default /sys/fs/bpf/lb-hc-encap, a bpffs):
// <DIR>/hc_reals (mark -> backend; lb-controlplane --health_tunnel_map fills
// it) and <DIR>/hc_config (outer source). When the pins exist already (a
// second interface, or a control plane already running) the new program
// reuses those maps, so one map serves every interface the VIPs route over.
// --source / --source6 set the outer sources of IPv4 / IPv6 tunnels (default:
// X's first IPv4 / global IPv6 address). The program's FIB lookup needs
// forwarding on X for each family used (net.ipv4.conf.X.forwarding=1,
// net.ipv6.conf.X.forwarding=1): a given source without it is refused, a
// default one is left unset; attach refuses when no family is left.
// detach removes our filter from X (only a filter named lb_hc_encap); with
// --unpin it also removes the pins. stats reads the attached program's
// counters through the interface (no pins needed).
//
// How it fails: one line on stderr, "lb-hc-encap: <what>: <why>", exit
// status 1 (2 for usage errors); a program the verifier refuses prints the
// end of the verifier log.
//
// Threads: single-threaded command-line tool.
#include "dataplane/bpf/bpf_tool.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#ifndef LB_HC_ENCAP_OBJ
#define LB_HC_ENCAP_OBJ "hc_encap.bpf.o"
#endif

namespace {

namespace bt = lb::bpf_tool;

constexpr char kProgName[] = "lb_hc_encap";
constexpr uint32_t kTcHandle = 0x4c8;
constexpr uint32_t kTcPriority = 1;
// Same order as HC_STAT_* in hc_encap.bpf.c.
constexpr int kStatCount = 6;
constexpr const char* kStatNames[kStatCount] = {"encapsulated", "passed",   "no_source",
                                                "unsupported",  "no_route", "error"};
constexpr const char* kSharedMaps[] = {"hc_reals", "hc_config"};

int Fail(const std::string& what, const std::string& why) {
  fprintf(stderr, "lb-hc-encap: %s: %s\n", what.c_str(), why.c_str());
  return 1;
}

int Usage(const std::string& msg) {
  if (!msg.empty()) fprintf(stderr, "lb-hc-encap: %s\n", msg.c_str());
  fprintf(stderr,
          "usage:\n"
          "  lb-hc-encap attach --iface IFACE [--source IPV4] [--source6 IPV6] [--obj PATH]\n"
          "                     [--pin-root DIR]\n"
          "  lb-hc-encap detach --iface IFACE [--pin-root DIR] [--unpin]\n"
          "  lb-hc-encap stats  --iface IFACE [--json]\n");
  return 2;
}

struct Options {
  std::string command;
  std::string iface;
  std::string source;
  std::string source6;
  std::string obj;
  std::string pin_root = "/sys/fs/bpf/lb-hc-encap";
  bool json = false;
  bool unpin = false;
};

// Our program's id on the egress hook of `ifindex`, 0 if none; *foreign gets
// the id of another program holding our handle/priority.
uint32_t FindAttached(int ifindex, uint32_t* foreign) {
  *foreign = 0;
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_EGRESS);
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
  if (bpf_tc_query(&hook, &opts) != 0) return 0;
  if (bt::ProgName(opts.prog_id) == kProgName) return opts.prog_id;
  *foreign = opts.prog_id;
  return 0;
}

// Same layout as struct hc_cfg in hc_encap.bpf.c.
struct HcCfg {
  uint32_t saddr = 0;       // network order; 0 = not set
  uint8_t saddr6[16] = {};  // :: = not set
};
static_assert(sizeof(HcCfg) == 20, "struct hc_cfg");

// The first IPv4 (family AF_INET) or global IPv6 (AF_INET6, not fe80::/10)
// address of `iface`, "" if none.
std::string FirstAddress(const std::string& iface, int family) {
  ifaddrs* ifa = nullptr;
  std::string out;
  if (getifaddrs(&ifa) != 0) return out;
  for (ifaddrs* p = ifa; p && out.empty(); p = p->ifa_next) {
    if (!p->ifa_addr || iface != p->ifa_name || p->ifa_addr->sa_family != family) continue;
    char buf[INET6_ADDRSTRLEN];
    if (family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(p->ifa_addr)->sin_addr, buf, sizeof(buf));
    } else {
      const in6_addr& a = reinterpret_cast<sockaddr_in6*>(p->ifa_addr)->sin6_addr;
      if (IN6_IS_ADDR_LINKLOCAL(&a)) continue;
      inet_ntop(AF_INET6, &a, buf, sizeof(buf));
    }
    out = buf;
  }
  freeifaddrs(ifa);
  return out;
}

// net.ipv{4,6}.conf.<iface>.forwarding: the program's FIB lookup
// (bpf_fib_lookup) refuses to route for an interface without it.
std::string ForwardingSysctl(const std::string& iface, int family) {
  return std::string(family == AF_INET ? "net.ipv4" : "net.ipv6") + ".conf." + iface +
         ".forwarding";
}

bool ForwardingEnabled(const std::string& iface, int family) {
  std::string path = std::string("/proc/sys/net/") + (family == AF_INET ? "ipv4" : "ipv6") +
                     "/conf/" + iface + "/forwarding";
  FILE* f = fopen(path.c_str(), "r");
  if (!f) return false;
  int c = fgetc(f);
  fclose(f);
  return c == '1';
}

// Fills the outer sources: a given address must parse and have forwarding
// on its family; a default one (the interface's) is used only when it does.
// At least one family must end up set. Returns 0, or Fail's status.
int ResolveSources(const Options& o, HcCfg* cfg, std::string* shown) {
  std::string missing_forwarding;
  for (int family : {AF_INET, AF_INET6}) {
    const std::string& given = family == AF_INET ? o.source : o.source6;
    const char* flag = family == AF_INET ? "--source" : "--source6";
    std::string addr = given.empty() ? FirstAddress(o.iface, family) : given;
    if (addr.empty()) continue;
    void* dst = family == AF_INET ? static_cast<void*>(&cfg->saddr) : cfg->saddr6;
    if (inet_pton(family, addr.c_str(), dst) != 1)
      return Fail(std::string(flag) + " " + addr,
                  family == AF_INET ? "not an IPv4 address" : "not an IPv6 address");
    if (!ForwardingEnabled(o.iface, family)) {
      const std::string why = ForwardingSysctl(o.iface, family) +
                              " is not 1; the program's FIB lookup needs it (sysctl -w " +
                              ForwardingSysctl(o.iface, family) + "=1)";
      if (!given.empty()) return Fail("interface " + o.iface, why);
      missing_forwarding = why;
      if (family == AF_INET) cfg->saddr = 0;
      if (family == AF_INET6) memset(cfg->saddr6, 0, sizeof(cfg->saddr6));
      continue;
    }
    *shown += (shown->empty() ? "" : " ") + addr;
  }
  if (shown->empty())
    return Fail("interface " + o.iface,
                missing_forwarding.empty()
                    ? "has no address to be the outer source; give --source / --source6"
                    : missing_forwarding);
  return 0;
}

// Reuses the pinned shared maps when they exist; returns false with *err set
// when a pin exists but cannot be reused.
bool ReusePins(bpf_object* obj, const std::string& root, bool* reused, std::string* err) {
  *reused = false;
  for (const char* name : kSharedMaps) {
    std::string pin = root + "/" + name;
    if (access(pin.c_str(), F_OK) != 0) continue;
    int fd = bpf_obj_get(pin.c_str());
    if (fd < 0) {
      *err = pin + ": " + bt::ErrStr(errno);
      return false;
    }
    int rc = bpf_map__reuse_fd(bpf_object__find_map_by_name(obj, name), fd);
    close(fd);
    if (rc != 0) {
      *err = pin + ": not a map of this program (" + bt::ErrStr(rc) + ")";
      return false;
    }
    *reused = true;
  }
  return true;
}

int AttachLoaded(const Options& o, int ifindex, bpf_object* obj) {
  int prog_fd = bpf_program__fd(bpf_object__find_program_by_name(obj, kProgName));
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_EGRESS);
  int err = bpf_tc_hook_create(&hook);
  if (err && err != -EEXIST) return Fail("creating clsact on " + o.iface, bt::ErrStr(err));
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .handle = kTcHandle, .priority = kTcPriority);
  err = bpf_tc_attach(&hook, &opts);
  if (err) return Fail("attaching tc egress filter to " + o.iface, bt::ErrStr(err));
  return 0;
}

int Attach(const Options& o, int ifindex) {
  uint32_t foreign = 0;
  if (uint32_t id = FindAttached(ifindex, &foreign))
    return Fail("interface " + o.iface, "lb-hc-encap is already attached (prog id " +
                                            std::to_string(id) + "); run lb-hc-encap detach first");
  if (foreign)
    return Fail("interface " + o.iface, "another tc egress filter holds handle 0x4c8 (prog id " +
                                            std::to_string(foreign) + ")");
  HcCfg src;
  std::string source;
  if (int rc = ResolveSources(o, &src, &source)) return rc;
  if (!bt::EnsureBpffs(o.pin_root)) return Fail("--pin-root " + o.pin_root, "not on a bpffs");
  mkdir(o.pin_root.c_str(), 0700);

  std::string path = bt::ObjectPath(o.obj, "hc_encap.bpf.o", LB_HC_ENCAP_OBJ);
  bpf_object* obj = bpf_object__open_file(path.c_str(), nullptr);
  if (!obj) return Fail("opening " + path, bt::ErrStr(errno));
  if (!bpf_object__find_program_by_name(obj, kProgName)) {
    bpf_object__close(obj);
    return Fail(path, "program lb_hc_encap not found");
  }
  bool reused = false;
  std::string err;
  if (!ReusePins(obj, o.pin_root, &reused, &err)) {
    bpf_object__close(obj);
    return Fail("reusing pinned maps", err);
  }
  bt::ClearLog();
  if (int rc = bpf_object__load(obj)) {
    Fail("loading " + path, "program refused by the kernel: " + bt::ErrStr(rc));
    bt::PrintLogTail(20);
    bpf_object__close(obj);
    return 1;
  }
  uint32_t zero = 0;
  int cfg_fd = bpf_object__find_map_fd_by_name(obj, "hc_config");
  if (bpf_map_update_elem(cfg_fd, &zero, &src, BPF_ANY) != 0) {
    bpf_object__close(obj);
    return Fail("setting the outer source", bt::ErrStr(errno));
  }
  for (const char* name : kSharedMaps) {
    std::string pin = o.pin_root + "/" + name;
    if (access(pin.c_str(), F_OK) == 0) continue;
    if (bpf_obj_pin(bpf_object__find_map_fd_by_name(obj, name), pin.c_str()) != 0) {
      bpf_object__close(obj);
      return Fail("pinning " + pin, bt::ErrStr(errno));
    }
  }
  int rc = AttachLoaded(o, ifindex, obj);
  bpf_object__close(obj);  // the attachment and the pins keep program and maps alive
  if (rc != 0) return rc;
  printf("lb-hc-encap: attached tc egress on %s (outer source %s, maps %s under %s)\n",
         o.iface.c_str(), source.c_str(), reused ? "shared" : "pinned", o.pin_root.c_str());
  return 0;
}

int Detach(const Options& o, int ifindex) {
  uint32_t foreign = 0;
  uint32_t id = FindAttached(ifindex, &foreign);
  if (o.unpin)
    for (const char* name : kSharedMaps) unlink((o.pin_root + "/" + name).c_str());
  if (!id) return o.unpin ? 0 : Fail("interface " + o.iface, "lb-hc-encap is not attached");
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_EGRESS);
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
  if (int err = bpf_tc_detach(&hook, &opts))
    return Fail("detaching tc egress from " + o.iface, bt::ErrStr(err));
  printf("lb-hc-encap: detached from %s (prog id %u)\n", o.iface.c_str(), id);
  return 0;
}

int Stats(const Options& o, int ifindex) {
  uint32_t foreign = 0;
  uint32_t id = FindAttached(ifindex, &foreign);
  if (!id) return Fail("interface " + o.iface, "lb-hc-encap is not attached");
  std::vector<std::vector<uint64_t>> per_cpu;
  std::vector<uint64_t> totals;
  if (std::string why = bt::ReadPerCpuCounters(id, "hc_stats", kStatCount, &per_cpu, &totals);
      !why.empty()) {
    return Fail("prog id " + std::to_string(id), why);
  }
  if (o.json) {
    printf("{\"iface\":\"%s\",\"prog_id\":%u", o.iface.c_str(), id);
    for (int k = 0; k < kStatCount; ++k)
      printf(",\"%s\":%llu", kStatNames[k], static_cast<unsigned long long>(totals[k]));
    printf("}\n");
  } else {
    printf("iface %s prog_id %u\n", o.iface.c_str(), id);
    for (int k = 0; k < kStatCount; ++k)
      printf("%-13s %llu\n", kStatNames[k], static_cast<unsigned long long>(totals[k]));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (argc < 2) return Usage("");
  o.command = argv[1];
  if (o.command == "-h" || o.command == "--help") return Usage(""), 0;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--json" || a == "--unpin") {
      (a == "--json" ? o.json : o.unpin) = true;
      continue;
    }
    if (a != "--iface" && a != "--source" && a != "--source6" && a != "--obj" && a != "--pin-root")
      return Usage("unknown flag " + a);
    if (i + 1 >= argc) return Usage(a + " needs a value");
    const char* v = argv[++i];
    if (a == "--iface") o.iface = v;
    if (a == "--source") o.source = v;
    if (a == "--source6") o.source6 = v;
    if (a == "--obj") o.obj = v;
    if (a == "--pin-root") o.pin_root = v;
  }
  if (o.command != "attach" && o.command != "detach" && o.command != "stats")
    return Usage("unknown command " + o.command);
  if (o.iface.empty()) return Usage("--iface is required");
  if (o.iface.size() >= IFNAMSIZ) return Fail("interface " + o.iface, "name too long");
  if (!o.pin_root.empty() && o.pin_root.back() == '/') o.pin_root.pop_back();

  bt::CaptureLibbpfLog();
  int ifindex = static_cast<int>(if_nametoindex(o.iface.c_str()));
  if (ifindex == 0) return Fail("interface " + o.iface, "no such device");
  if (o.command == "attach") return Attach(o, ifindex);
  if (o.command == "detach") return Detach(o, ifindex);
  return Stats(o, ifindex);
}
