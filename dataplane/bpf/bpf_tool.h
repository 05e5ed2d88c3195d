// What lb-decap and lb-hc-encap (the two libbpf loaders) share: libbpf's log
// collected for the verifier's verdict, the BPF object found next to the
// binary, a loaded program's name and maps by id, a bpffs for pins.
// Command-line tools, single-threaded: nothing here is for the packet path.
#ifndef LB_DATAPLANE_BPF_BPF_TOOL_H_
#define LB_DATAPLANE_BPF_BPF_TOOL_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lb::bpf_tool {

// From now on libbpf's messages (not its debug ones) are kept; ClearLog
// forgets them, PrintLogTail writes the last `n` lines to stderr, indented.
void CaptureLibbpfLog();
void ClearLog();
void PrintLogTail(size_t n);

// strerror of a libbpf (-errno) or errno value.
std::string ErrStr(int err);

// `explicit_path` when given; else `file_name` beside this binary (build and
// install trees); else `installed_path` (compiled in by meson).
std::string ObjectPath(const std::string& explicit_path, const char* file_name,
                       const char* installed_path);

// Name of a loaded program by id, "" if it cannot be read.
std::string ProgName(uint32_t prog_id);

// A file descriptor of the map named `map_name` among the maps of the loaded
// program `prog_id`, -1 if none. The caller closes it.
int ProgMapFd(uint32_t prog_id, const char* map_name);

// Reads keys 0..count-1 of the per-CPU u64 array `map_name` of the loaded
// program `prog_id` into (*per_cpu)[key][cpu] and their sums into
// (*totals)[key]. "" on success, else what failed (for the tool's message).
std::string ReadPerCpuCounters(uint32_t prog_id, const char* map_name, uint32_t count,
                               std::vector<std::vector<uint64_t>>* per_cpu,
                               std::vector<uint64_t>* totals);

// True when `pin_root`'s parent is a bpffs; mounts one at /sys/fs/bpf when
// that is the parent (the default pin roots live there).
bool EnsureBpffs(const std::string& pin_root);

}  // namespace lb::bpf_tool

#endif  // LB_DATAPLANE_BPF_BPF_TOOL_H_
