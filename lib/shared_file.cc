// AttachOrCreateSharedFile and the lifecycle markers (shared_file.h).
#include "lib/shared_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/shm_region.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace lb {
namespace {

constexpr uint64_t kHugePageBytes = uint64_t{2} << 20;

std::string Errno(const SharedFileFormat& f, const std::string& what, const std::string& path) {
  return absl::StrCat(f.what, " ", what, " ", path, ": ", std::strerror(errno));
}

}  // namespace

void ReadBootId(char out[40]) {
  std::memset(out, 0, 40);
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string id;
  if (std::getline(f, id)) std::memcpy(out, id.data(), id.size() < 39 ? id.size() : 39);
}

bool SameBoot(const char boot_id[40]) {
  char boot[40];
  ReadBootId(boot);
  return std::memcmp(boot, boot_id, sizeof(boot)) == 0;
}

uint64_t RoundUpToHugePage(uint64_t bytes) {
  return (bytes + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
}

// Reading, not writing, on kernels without MADV_POPULATE_WRITE: the file may
// hold entries.
void PopulateMapping(void* p, size_t bytes) {
  madvise(p, bytes, MADV_HUGEPAGE);
  if (madvise(p, bytes, MADV_POPULATE_WRITE) != 0) {
    volatile const char* c = static_cast<volatile const char*>(p);
    for (size_t off = 0; off < bytes; off += 4096) (void)c[off];
  }
}

absl::StatusOr<SharedFileMapping> AttachOrCreateSharedFile(const std::string& path,
                                                           const SharedFileFormat& f,
                                                           SharedFileAttach* report) {
  *report = SharedFileAttach();
  const int fd = open(path.c_str(), O_RDWR | O_CREAT, 0644);
  if (fd < 0) return absl::UnavailableError(Errno(f, "cannot create", path));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const std::string err = Errno(f, "cannot stat", path);
    close(fd);
    return absl::UnavailableError(err);
  }
  SharedFileMapping m;
  uint64_t prior_discards = 0;
  const size_t old_size = static_cast<size_t>(st.st_size);
  if (old_size == 0) {
    report->created = true;
  } else if (old_size < f.header_bytes) {
    report->reason = absl::StrFormat("file of %u bytes is shorter than a header", old_size);
  } else {
    void* p = mmap(nullptr, old_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const std::string err = Errno(f, "cannot map", path);
      close(fd);
      return absl::UnavailableError(err);
    }
    uint64_t magic;
    std::memcpy(&magic, p, sizeof(magic));
    const SharedFileLife life = f.life(p);
    const uint32_t state = __atomic_load_n(life.state, __ATOMIC_ACQUIRE);
    const uint32_t pid = *life.writer_pid;
    if (magic == f.magic) prior_discards = *life.discards;
    if (magic == f.magic && state == kSharedFileOpen && pid != 0 &&
        static_cast<pid_t>(pid) != getpid() && kill(static_cast<pid_t>(pid), 0) == 0) {
      munmap(p, old_size);
      close(fd);
      return absl::FailedPreconditionError(
          absl::StrFormat("%s %s is in use by pid %u", f.what, path, pid));
    }
    report->reason = f.check(p, old_size);
    if (report->reason.empty()) {
      report->attached = true;
      report->was_dirty = state != kSharedFileClosed;
      m.base = p;
      m.bytes = old_size;
    } else {
      munmap(p, old_size);
    }
  }

  if (!report->attached) {
    if (!report->created) {
      report->discarded = true;
      report->discards = prior_discards + 1;
    }
    // Truncate to zero first: the re-created table starts zero-filled.
    if (ftruncate(fd, 0) != 0 || ftruncate(fd, static_cast<off_t>(f.file_size)) != 0) {
      const std::string err = Errno(f, "cannot size", path);
      close(fd);
      return absl::ResourceExhaustedError(err);
    }
    void* p = mmap(nullptr, f.file_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const std::string err = Errno(f, "cannot map", path) + " (hugepages or /dev/shm exhausted?)";
      close(fd);
      return absl::ResourceExhaustedError(err);
    }
    // First touch: this thread's NUMA node gets the pages.
    PopulateMapping(p, f.file_size);
    f.init(p);
    const SharedFileLife life = f.life(p);
    *life.discards = report->discards;
    std::snprintf(life.last_discard_reason, life.reason_bytes, "%s", report->reason.c_str());
    m.base = p;
    m.bytes = f.file_size;
  }
  close(fd);
  return m;
}

void MarkSharedFileOpen(const SharedFileLife& life, bool attached) {
  *life.writer_pid = static_cast<uint32_t>(getpid());
  if (attached) ++*life.attaches;
  __atomic_store_n(life.state, static_cast<uint32_t>(kSharedFileOpen), __ATOMIC_RELEASE);
}

void MarkSharedFileClosed(const SharedFileLife& life) {
  *life.closed_ms = MonotonicNs() / 1000000;
  *life.writer_pid = 0;
  __atomic_store_n(life.state, static_cast<uint32_t>(kSharedFileClosed), __ATOMIC_RELEASE);
}

}  // namespace lb
