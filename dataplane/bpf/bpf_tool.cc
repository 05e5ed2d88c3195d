#include "dataplane/bpf/bpf_tool.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <vector>

namespace lb::bpf_tool {
namespace {

constexpr unsigned long kBpfFsMagic = 0xcafe4a11;

std::string g_log;  // everything libbpf printed (the verifier's log included)

int LibbpfPrint(enum libbpf_print_level level, const char* fmt, va_list ap) {
  if (level == LIBBPF_DEBUG) return 0;
  char buf[4096];
  int n = vsnprintf(buf, sizeof(buf), fmt, ap);
  if (n > 0) g_log.append(buf, std::min<size_t>(n, sizeof(buf) - 1));
  return 0;
}

}  // namespace

void CaptureLibbpfLog() { libbpf_set_print(LibbpfPrint); }

void ClearLog() { g_log.clear(); }

void PrintLogTail(size_t n) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < g_log.size()) {
    size_t end = g_log.find('\n', start);
    if (end == std::string::npos) end = g_log.size();
    if (end > start) lines.push_back(g_log.substr(start, end - start));
    start = end + 1;
  }
  for (size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i) {
    fprintf(stderr, "  %s\n", lines[i].c_str());
  }
}

std::string ErrStr(int err) { return strerror(err < 0 ? -err : err); }

std::string ObjectPath(const std::string& explicit_path, const char* file_name,
                       const char* installed_path) {
  if (!explicit_path.empty()) return explicit_path;
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    exe[n] = '\0';
    std::string dir(exe);
    std::string cand = dir.substr(0, dir.rfind('/')) + "/" + file_name;
    if (access(cand.c_str(), R_OK) == 0) return cand;
  }
  return installed_path;
}

std::string ProgName(uint32_t prog_id) {
  int fd = bpf_prog_get_fd_by_id(prog_id);
  if (fd < 0) return "";
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  std::string name;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) name = info.name;
  close(fd);
  return name;
}

int ProgMapFd(uint32_t prog_id, const char* map_name) {
  int pfd = bpf_prog_get_fd_by_id(prog_id);
  if (pfd < 0) return -1;
  uint32_t ids[16] = {};
  bpf_prog_info info{};
  info.nr_map_ids = 16;
  info.map_ids = reinterpret_cast<uint64_t>(ids);
  uint32_t len = sizeof(info);
  int found = -1;
  if (bpf_obj_get_info_by_fd(pfd, &info, &len) == 0) {
    for (uint32_t i = 0; i < info.nr_map_ids && i < 16 && found < 0; ++i) {
      int mfd = bpf_map_get_fd_by_id(ids[i]);
      if (mfd < 0) continue;
      bpf_map_info minfo{};
      uint32_t mlen = sizeof(minfo);
      if (bpf_obj_get_info_by_fd(mfd, &minfo, &mlen) == 0 && strcmp(minfo.name, map_name) == 0) {
        found = mfd;
      } else {
        close(mfd);
      }
    }
  }
  close(pfd);
  return found;
}

std::string ReadPerCpuCounters(uint32_t prog_id, const char* map_name, uint32_t count,
                               std::vector<std::vector<uint64_t>>* per_cpu,
                               std::vector<uint64_t>* totals) {
  const int fd = ProgMapFd(prog_id, map_name);
  if (fd < 0) return std::string(map_name) + " map not found";
  const int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) {
    close(fd);
    return "counting CPUs: " + ErrStr(ncpu);
  }
  per_cpu->assign(count, std::vector<uint64_t>(ncpu));
  totals->assign(count, 0);
  for (uint32_t k = 0; k < count; ++k) {
    if (bpf_map_lookup_elem(fd, &k, (*per_cpu)[k].data()) != 0) {
      const std::string why = "reading " + std::string(map_name) + ": " + ErrStr(errno);
      close(fd);
      return why;
    }
    for (uint64_t v : (*per_cpu)[k]) (*totals)[k] += v;
  }
  close(fd);
  return "";
}

bool EnsureBpffs(const std::string& pin_root) {
  std::string base = pin_root.substr(0, pin_root.rfind('/'));
  struct statfs st {};
  if (statfs(base.c_str(), &st) == 0 && static_cast<unsigned long>(st.f_type) == kBpfFsMagic) {
    return true;
  }
  if (base != "/sys/fs/bpf") return false;
  mkdir(base.c_str(), 0700);
  return mount("bpf", base.c_str(), "bpf", 0, nullptr) == 0;
}

}  // namespace lb::bpf_tool
