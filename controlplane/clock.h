// The control plane's one clock helper: monotonic nanoseconds for intervals
// and latencies, realtime milliseconds for what an operator reads (event
// times, drain deadlines, health check times), and the ns -> ms conversion
// the latency reports use. Header-only; every function is thread-safe.
#ifndef LB_CONTROLPLANE_CLOCK_H_
#define LB_CONTROLPLANE_CLOCK_H_

#include <time.h>

#include <cstdint>

#include "lib/shm_region.h"  // MonotonicNs(): the clock the dataplane's heartbeats use

namespace lb {

// MonotonicNs() as a signed value, for schedulers that subtract deadlines.
inline int64_t SteadyNs() { return static_cast<int64_t>(MonotonicNs()); }

// CLOCK_REALTIME in ms since the Unix epoch.
inline uint64_t NowUnixMs() { return RealtimeNs() / 1'000'000; }

// A monotonic interval in ms, for latency reports.
inline double NsToMs(uint64_t ns) { return static_cast<double>(ns) / 1e6; }

// Sleeps for `ns` (interrupted sleeps end early; callers poll).
inline void SleepNs(uint64_t ns) {
  timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  nanosleep(&ts, nullptr);
}

}  // namespace lb

#endif  // LB_CONTROLPLANE_CLOCK_H_
