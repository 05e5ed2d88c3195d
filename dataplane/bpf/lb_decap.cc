// lb-decap: attaches, detaches and reads the backend decapsulation program
// (decap.bpf.c) on one interface, with libbpf only (no ip/bpftool).
//
//   lb-decap attach --iface X [--mode xdp|tc] [--local ADDR ...] [--gue_port N] [--obj PATH]
//   lb-decap detach --iface X [--mode xdp|tc]
//   lb-decap stats  --iface X [--mode xdp|tc] [--json]
//
// Contract: attach loads the object, fills `local_addrs` with the --local
// addresses (or, without --local, every address of the interface), stores
// --gue_port (GUE, IP-in-UDP, decapsulated to that port; 0 or absent = off)
// in the `config` map, attaches
// the XDP program (kernel-chosen mode: native on veth) or a tc ingress
// cls_bpf direct-action filter (handle 0xdec, priority 1 on clsact), and pins
// the maps under <pin-root>/<iface>/. stats and detach find the program by
// querying the interface itself (so they work even when the pins are gone,
// e.g. after `ip netns exec`, whose bpffs mount is private to one command);
// they touch only programs named lb_decap_xdp / lb_decap_tc.
//
// How it fails: one line on stderr, "lb-decap: <what>: <why>", exit status 1
// (2 for usage errors). A program the verifier refuses prints the last lines
// of the verifier log after that line.
//
// Threads: single-threaded command-line tool.
#include "dataplane/bpf/bpf_tool.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <ifaddrs.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#ifndef LB_DECAP_OBJ
#define LB_DECAP_OBJ "decap.bpf.o"
#endif

namespace {

namespace bt = lb::bpf_tool;

constexpr char kXdpProgName[] = "lb_decap_xdp";
constexpr char kTcProgName[] = "lb_decap_tc";
constexpr uint32_t kTcHandle = 0xdec;
constexpr uint32_t kTcPriority = 1;
constexpr int kStatCount = 3;
constexpr const char* kStatNames[kStatCount] = {"decapsulated", "passed", "malformed"};

int Fail(const std::string& what, const std::string& why) {
  fprintf(stderr, "lb-decap: %s: %s\n", what.c_str(), why.c_str());
  return 1;
}

int Usage(const std::string& msg) {
  if (!msg.empty()) fprintf(stderr, "lb-decap: %s\n", msg.c_str());
  fprintf(stderr,
          "usage:\n"
          "  lb-decap attach --iface IFACE [--mode xdp|tc] [--local ADDR]... "
          "[--gue_port PORT] [--obj PATH] [--pin-root DIR]\n"
          "  lb-decap detach --iface IFACE [--mode xdp|tc] [--pin-root DIR]\n"
          "  lb-decap stats  --iface IFACE [--mode xdp|tc] [--json]\n");
  return 2;
}

struct Options {
  std::string command;
  std::string iface;
  std::string mode;  // "", "xdp" or "tc"
  std::vector<std::string> locals;
  uint16_t gue_port = 0;  // 0 = no GUE
  std::string obj;
  std::string pin_root = "/sys/fs/bpf/lb-decap";
  bool json = false;
};

// The id of our program attached on `ifindex` in `mode`, 0 if none.
// Sets *foreign to the id of another program in that slot.
uint32_t FindAttached(int ifindex, const std::string& mode, uint32_t* foreign,
                      uint32_t* xdp_flags) {
  *foreign = 0;
  if (mode == "xdp") {
    LIBBPF_OPTS(bpf_xdp_query_opts, q);
    if (bpf_xdp_query(ifindex, 0, &q) != 0) return 0;
    uint32_t id = 0;
    if (q.drv_prog_id) {
      id = q.drv_prog_id;
      *xdp_flags = XDP_FLAGS_DRV_MODE;
    } else if (q.skb_prog_id) {
      id = q.skb_prog_id;
      *xdp_flags = XDP_FLAGS_SKB_MODE;
    } else if (q.hw_prog_id) {
      id = q.hw_prog_id;
      *xdp_flags = XDP_FLAGS_HW_MODE;
    } else if (q.prog_id) {
      id = q.prog_id;
      *xdp_flags = 0;
    }
    if (id == 0) return 0;
    if (bt::ProgName(id) == kXdpProgName) return id;
    *foreign = id;
    return 0;
  }
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
  if (bpf_tc_query(&hook, &opts) != 0) return 0;
  if (bt::ProgName(opts.prog_id) == kTcProgName) return opts.prog_id;
  *foreign = opts.prog_id;
  return 0;
}

void RemovePins(const std::string& dir) {
  for (const char* m : {"stats", "local_addrs"}) unlink((dir + "/" + m).c_str());
  rmdir(dir.c_str());
}

// Adds one textual address to the local_addrs map (IPv4 as ::ffff:a.b.c.d).
bool AddLocal(int map_fd, const std::string& text, std::string* err) {
  uint8_t key[16] = {};
  in_addr a4;
  if (inet_pton(AF_INET, text.c_str(), &a4) == 1) {
    key[10] = key[11] = 0xff;
    memcpy(&key[12], &a4, 4);
  } else if (inet_pton(AF_INET6, text.c_str(), key) != 1) {
    *err = "not an IPv4 or IPv6 address";
    return false;
  }
  uint8_t one = 1;
  if (bpf_map_update_elem(map_fd, key, &one, BPF_ANY) != 0) {
    *err = bt::ErrStr(errno);
    return false;
  }
  return true;
}

std::vector<std::string> InterfaceAddresses(const std::string& iface) {
  std::vector<std::string> out;
  ifaddrs* ifa = nullptr;
  if (getifaddrs(&ifa) != 0) return out;
  for (ifaddrs* p = ifa; p; p = p->ifa_next) {
    if (!p->ifa_addr || iface != p->ifa_name) continue;
    char buf[INET6_ADDRSTRLEN];
    if (p->ifa_addr->sa_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(p->ifa_addr)->sin_addr, buf, sizeof(buf));
      out.push_back(buf);
    } else if (p->ifa_addr->sa_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(p->ifa_addr)->sin6_addr, buf,
                sizeof(buf));
      out.push_back(buf);
    }
  }
  freeifaddrs(ifa);
  return out;
}

// Entry 0 of the `config` map: the GUE port in network order.
bool SetGuePort(bpf_object* obj, uint16_t port, std::string* err) {
  int fd = bpf_object__find_map_fd_by_name(obj, "config");
  if (fd < 0) {
    *err = "the object has no config map";
    return false;
  }
  struct {
    uint16_t gue_port;
    uint16_t pad;
  } value = {htons(port), 0};
  uint32_t key = 0;
  if (bpf_map_update_elem(fd, &key, &value, BPF_ANY) != 0) {
    *err = bt::ErrStr(errno);
    return false;
  }
  return true;
}

int Attach(const Options& o, int ifindex) {
  std::string mode = o.mode.empty() ? "xdp" : o.mode;
  uint32_t foreign = 0, flags = 0;
  if (uint32_t id = FindAttached(ifindex, mode, &foreign, &flags))
    return Fail("interface " + o.iface, "lb-decap is already attached (" + mode + ", prog id " +
                                            std::to_string(id) + "); run lb-decap detach first");
  if (foreign)
    return Fail("interface " + o.iface, "another " + mode + " program is attached (prog id " +
                                            std::to_string(foreign) + ", " + bt::ProgName(foreign) +
                                            ")");

  for (const std::string& a : o.locals) {
    uint8_t buf[16];
    if (inet_pton(AF_INET, a.c_str(), buf) != 1 && inet_pton(AF_INET6, a.c_str(), buf) != 1)
      return Fail("--local " + a, "not an IPv4 or IPv6 address");
  }
  std::vector<std::string> locals = o.locals.empty() ? InterfaceAddresses(o.iface) : o.locals;
  if (locals.empty())
    return Fail("interface " + o.iface,
                "has no IP address; give the tunnel destinations with --local");

  std::string path = bt::ObjectPath(o.obj, "decap.bpf.o", LB_DECAP_OBJ);
  bpf_object* obj = bpf_object__open_file(path.c_str(), nullptr);
  if (!obj) return Fail("opening " + path, bt::ErrStr(errno));
  bpf_program* xdp = bpf_object__find_program_by_name(obj, kXdpProgName);
  bpf_program* tc = bpf_object__find_program_by_name(obj, kTcProgName);
  if (!xdp || !tc) {
    bpf_object__close(obj);
    return Fail(path, "lb_decap_xdp/lb_decap_tc programs not found");
  }
  bpf_program* prog = mode == "xdp" ? xdp : tc;
  bpf_program__set_autoload(mode == "xdp" ? tc : xdp, false);
  bt::ClearLog();
  if (int err = bpf_object__load(obj)) {
    Fail("loading " + path, "program refused by the kernel: " + bt::ErrStr(err));
    bt::PrintLogTail(20);
    bpf_object__close(obj);
    return 1;
  }
  int stats_fd = bpf_object__find_map_fd_by_name(obj, "stats");
  int addrs_fd = bpf_object__find_map_fd_by_name(obj, "local_addrs");
  if (std::string err; !SetGuePort(obj, o.gue_port, &err)) {
    bpf_object__close(obj);
    return Fail("--gue_port", err);
  }
  for (const std::string& a : locals) {
    std::string err;
    if (!AddLocal(addrs_fd, a, &err)) {
      bpf_object__close(obj);
      return Fail("--local " + a, err);
    }
  }

  int prog_fd = bpf_program__fd(prog);
  if (mode == "xdp") {
    int err = bpf_xdp_attach(ifindex, prog_fd, XDP_FLAGS_UPDATE_IF_NOEXIST, nullptr);
    if (err) {
      bpf_object__close(obj);
      return Fail("attaching XDP to " + o.iface, bt::ErrStr(err));
    }
  } else {
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
    int err = bpf_tc_hook_create(&hook);
    if (err && err != -EEXIST) {
      bpf_object__close(obj);
      return Fail("creating clsact on " + o.iface, bt::ErrStr(err));
    }
    LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .handle = kTcHandle,
                .priority = kTcPriority);
    err = bpf_tc_attach(&hook, &opts);
    if (err) {
      bpf_object__close(obj);
      return Fail("attaching tc ingress filter to " + o.iface, bt::ErrStr(err));
    }
  }

  // Pins are a convenience for other tools; stats/detach do not need them.
  std::string dir = o.pin_root + "/" + o.iface;
  if (bt::EnsureBpffs(o.pin_root)) {
    mkdir(o.pin_root.c_str(), 0700);
    RemovePins(dir);
    mkdir(dir.c_str(), 0700);
    if (bpf_obj_pin(stats_fd, (dir + "/stats").c_str()) != 0 ||
        bpf_obj_pin(addrs_fd, (dir + "/local_addrs").c_str()) != 0)
      fprintf(stderr, "lb-decap: warning: pinning maps under %s: %s\n", dir.c_str(),
              strerror(errno));
  } else {
    fprintf(stderr, "lb-decap: warning: no bpffs at %s; maps not pinned\n", o.pin_root.c_str());
  }
  printf("lb-decap: attached %s on %s (", mode.c_str(), o.iface.c_str());
  for (size_t i = 0; i < locals.size(); ++i) printf("%s%s", i ? " " : "", locals[i].c_str());
  printf(")");
  if (o.gue_port != 0) printf(" gue_port %u", o.gue_port);
  printf("\n");
  bpf_object__close(obj);  // the attachment keeps program and maps alive
  return 0;
}

int Detach(const Options& o, int ifindex) {
  std::vector<std::string> modes;
  if (o.mode.empty())
    modes = {"xdp", "tc"};
  else
    modes = {o.mode};
  int detached = 0;
  for (const std::string& mode : modes) {
    uint32_t foreign = 0, flags = 0;
    uint32_t id = FindAttached(ifindex, mode, &foreign, &flags);
    if (!id) continue;
    int err;
    if (mode == "xdp") {
      LIBBPF_OPTS(bpf_xdp_attach_opts, xo, .old_prog_fd = -1);
      int fd = bpf_prog_get_fd_by_id(id);
      xo.old_prog_fd = fd;
      err = bpf_xdp_detach(ifindex, flags | XDP_FLAGS_REPLACE, &xo);
      if (fd >= 0) close(fd);
    } else {
      LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
      LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
      err = bpf_tc_detach(&hook, &opts);
    }
    if (err) return Fail("detaching " + mode + " from " + o.iface, bt::ErrStr(err));
    printf("lb-decap: detached %s from %s (prog id %u)\n", mode.c_str(), o.iface.c_str(), id);
    ++detached;
  }
  RemovePins(o.pin_root + "/" + o.iface);
  if (!detached) return Fail("interface " + o.iface, "lb-decap is not attached");
  return 0;
}

int Stats(const Options& o, int ifindex) {
  std::vector<std::string> modes;
  if (o.mode.empty())
    modes = {"xdp", "tc"};
  else
    modes = {o.mode};
  uint32_t id = 0;
  std::string mode;
  for (const std::string& m : modes) {
    uint32_t foreign = 0, flags = 0;
    id = FindAttached(ifindex, m, &foreign, &flags);
    if (id) {
      mode = m;
      break;
    }
  }
  if (!id) return Fail("interface " + o.iface, "lb-decap is not attached");
  std::vector<std::vector<uint64_t>> per_cpu;
  std::vector<uint64_t> totals;
  if (std::string why = bt::ReadPerCpuCounters(id, "stats", kStatCount, &per_cpu, &totals);
      !why.empty()) {
    return Fail("prog id " + std::to_string(id), why);
  }
  if (o.json) {
    printf("{\"iface\":\"%s\",\"mode\":\"%s\",\"prog_id\":%u", o.iface.c_str(), mode.c_str(), id);
    for (int k = 0; k < kStatCount; ++k)
      printf(",\"%s\":%llu", kStatNames[k], static_cast<unsigned long long>(totals[k]));
    printf(",\"per_cpu\":{");
    for (int k = 0; k < kStatCount; ++k) {
      printf("%s\"%s\":[", k ? "," : "", kStatNames[k]);
      for (size_t c = 0; c < per_cpu[k].size(); ++c)
        printf("%s%llu", c ? "," : "", static_cast<unsigned long long>(per_cpu[k][c]));
      printf("]");
    }
    printf("}}\n");
  } else {
    printf("iface %s mode %s prog_id %u\n", o.iface.c_str(), mode.c_str(), id);
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
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--json") {
      o.json = true;
      continue;
    }
    if (a != "--iface" && a != "--mode" && a != "--local" && a != "--obj" && a != "--pin-root" &&
        a != "--gue_port")
      return Usage("unknown flag " + a);
    v = value();
    if (!v) return Usage(a + " needs a value");
    if (a == "--iface") o.iface = v;
    if (a == "--mode") o.mode = v;
    if (a == "--local") o.locals.push_back(v);
    if (a == "--obj") o.obj = v;
    if (a == "--pin-root") o.pin_root = v;
    if (a == "--gue_port") {
      char* end = nullptr;
      const unsigned long port = strtoul(v, &end, 10);
      if (*v == '\0' || *end != '\0' || port > 65535)
        return Usage("--gue_port must be a port number (0 = off), not " + std::string(v));
      o.gue_port = static_cast<uint16_t>(port);
    }
  }
  if (o.command != "attach" && o.command != "detach" && o.command != "stats")
    return Usage("unknown command " + o.command);
  if (o.iface.empty()) return Usage("--iface is required");
  if (!o.mode.empty() && o.mode != "xdp" && o.mode != "tc")
    return Usage("--mode must be xdp or tc, not " + o.mode);
  if (o.iface.size() >= IFNAMSIZ) return Fail("interface " + o.iface, "name too long");

  bt::CaptureLibbpfLog();
  int ifindex = static_cast<int>(if_nametoindex(o.iface.c_str()));
  if (ifindex == 0) return Fail("interface " + o.iface, "no such device");
  if (o.command == "attach") return Attach(o, ifindex);
  if (o.command == "detach") return Detach(o, ifindex);
  return Stats(o, ifindex);
}
