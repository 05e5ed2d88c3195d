#include "controlplane/health_tunnel_map.h"

#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "controlplane/health_target.h"

namespace lb {
namespace {

using health::ErrnoText;

long Bpf(int cmd, bpf_attr* attr) { return syscall(__NR_bpf, cmd, attr, sizeof(*attr)); }

int ObjGet(const std::string& path) {
  bpf_attr a;
  memset(&a, 0, sizeof(a));
  a.pathname = reinterpret_cast<uint64_t>(path.c_str());
  return int(Bpf(BPF_OBJ_GET, &a));
}

}  // namespace

absl::StatusOr<std::unique_ptr<HealthTunnelMap>> HealthTunnelMap::Open(
    const std::string& pin_path) {
  const int fd = ObjGet(pin_path);
  if (fd < 0) {
    const int err = errno;
    std::string why = absl::StrCat("--health_tunnel_map ", pin_path, ": ", ErrnoText(err),
                                   " (attach lb-hc-encap first; it pins the map there)");
    if (err == ENOENT) return absl::NotFoundError(why);
    return absl::FailedPreconditionError(why);
  }
  bpf_map_info info;
  memset(&info, 0, sizeof(info));
  bpf_attr a;
  memset(&a, 0, sizeof(a));
  a.info.bpf_fd = uint32_t(fd);
  a.info.info_len = sizeof(info);
  a.info.info = reinterpret_cast<uint64_t>(&info);
  if (Bpf(BPF_OBJ_GET_INFO_BY_FD, &a) != 0 || info.type != BPF_MAP_TYPE_HASH ||
      info.key_size != 4 || info.value_size != sizeof(TunnelReal)) {
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("--health_tunnel_map ", pin_path,
                     ": not lb-hc-encap's hc_reals map (a hash of u32 -> struct hc_real)"));
  }
  return std::unique_ptr<HealthTunnelMap>(new HealthTunnelMap(pin_path, fd));
}

HealthTunnelMap::~HealthTunnelMap() {
  if (fd_ >= 0) close(fd_);
}

absl::Status HealthTunnelMap::Sync(const std::map<uint32_t, TunnelReal>& entries) {
  for (const auto& [mark, addr] : entries) {
    bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_fd = uint32_t(fd_);
    a.key = reinterpret_cast<uint64_t>(&mark);
    a.value = reinterpret_cast<uint64_t>(&addr);
    a.flags = BPF_ANY;
    if (Bpf(BPF_MAP_UPDATE_ELEM, &a) != 0) {
      return absl::InternalError(
          absl::StrCat(path_, ": adding mark ", mark, ": ", ErrnoText(errno)));
    }
  }
  // Collect the stale keys first: deleting while walking restarts the walk.
  std::vector<uint32_t> stale;
  uint32_t key = 0, next = 0;
  bool first = true;
  for (;;) {
    bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_fd = uint32_t(fd_);
    a.key = first ? 0 : reinterpret_cast<uint64_t>(&key);
    a.next_key = reinterpret_cast<uint64_t>(&next);
    if (Bpf(BPF_MAP_GET_NEXT_KEY, &a) != 0) {
      if (errno == ENOENT) break;
      return absl::InternalError(absl::StrCat(path_, ": walking the map: ", ErrnoText(errno)));
    }
    if (entries.find(next) == entries.end()) stale.push_back(next);
    key = next;
    first = false;
  }
  for (uint32_t k : stale) {
    bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_fd = uint32_t(fd_);
    a.key = reinterpret_cast<uint64_t>(&k);
    if (Bpf(BPF_MAP_DELETE_ELEM, &a) != 0 && errno != ENOENT) {
      return absl::InternalError(
          absl::StrCat(path_, ": deleting mark ", k, ": ", ErrnoText(errno)));
    }
  }
  return absl::OkStatus();
}

}  // namespace lb
