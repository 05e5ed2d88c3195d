// The publisher: owns the table region (the control plane is its only writer)
// and turns a DesiredState into a published generation, safely.
//
// Publish(desired), for generation G = published + 1 into slot G % 2:
//  1. Reclaim: the slot last held G - 2, which a dataplane lcore may still
//     read. Wait until every live lcore in the stats region has observed
//     G - 1 (DataplaneView::WaitReclaim, protocol in lib/table_format.h),
//     polling adaptively, for at most reclaim_timeout_ns. No stats region file = no dataplane ever
//     ran: publish at once. On timeout: FailedPrecondition naming the lcores that are stuck
//     (heartbeat stalled) or still waiting; the slot is NOT touched and the published generation
//     stays what it was. An lcore that refused the published generation R
//     (lib/slot_verify.h) will never observe it: FailedPrecondition at once,
//     naming R, and the next publish writes R + 2 into R's slot, free once
//     every lcore refused R (protocol step 4 in lib/table_format.h).
//  2. Build: BuildTables(desired, last assignment, NextSlot()).
//  3. Check: the slot must pass ValidateSlot, as the dataplane will check it.
//  4. TableWriter::Publish(): one release-store of G.
// Prepare() does steps 1-3 and Commit() step 4, so that a caller can make
// the change durable in between (the control plane persists first and
// publishes second: a change it cannot store never reaches an lcore). A
// prepared slot that is never committed is invisible to the dataplane (no
// generation names it) and is overwritten by the next Prepare().
// The assignment of the build becomes the next build's `previous`; on open it
// is recovered from the published slot (SeedAssignmentFromSlot), so that a
// restart with the same config republishes identical rings and slots.
//
// Errors: Open fails as TableWriter::Open does (FailedPrecondition for a
// region of other geometry unless recreate_tables), or with
// FailedPrecondition when the published slot is corrupt. Publish fails as
// above, or with BuildTables' errors; a failed Publish leaves the published
// generation unchanged.
//
// Threads: one thread at a time (the control plane's publishing thread).
#ifndef LB_CONTROLPLANE_PUBLISHER_H_
#define LB_CONTROLPLANE_PUBLISHER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "controlplane/config.h"
#include "controlplane/dataplane_view.h"
#include "controlplane/table_builder.h"
#include "lib/shm_region.h"

namespace lb {

struct PublisherOptions {
  std::string table_path;
  std::string stats_path;  // may not exist yet (no dataplane ran)
  TableCapacities caps;
  bool recreate_tables = false;
  uint64_t reclaim_timeout_ns = 2'000'000'000;
  uint64_t stuck_after_ns = 500'000'000;  // heartbeat age that makes a waiting lcore "stuck"
};

struct PublishReport {
  uint64_t generation = 0;
  double wait_ms = 0;   // reclamation wait
  double build_ms = 0;  // BuildTables + ValidateSlot
  // Of build_ms: the index check and the seal (the slot checksum), after
  // BuildTables (whose Maglev fills are build.fill_ms).
  double check_seal_ms = 0;
  // Wall-clock phases of the transaction that published this report, filled
  // by the control plane (0 for a publish that is not a config change):
  // from the API call to the validation, ValidateConfig, Store::Save (with
  // its fsync), and from Commit until every live lcore observed the
  // generation. perf/control_bench prints them.
  double before_validate_ms = 0;
  double validate_ms = 0;
  double save_ms = 0;
  double observe_ms = 0;
  bool stats_region_present = false;
  BuildResult build;
};

class Publisher {
 public:
  // `view` reads the stats region at options.stats_path; nullptr = the
  // publisher makes its own (the control plane shares one with its queries).
  static absl::StatusOr<Publisher> Open(const PublisherOptions& options,
                                        std::shared_ptr<const DataplaneView> view = nullptr);

  // Prepare() + Commit().
  absl::StatusOr<PublishReport> Publish(const DesiredState& desired);
  // Steps 1-3: fills the next slot. report.generation is the generation
  // Commit() will publish; report.build the build's assignment and summary.
  absl::StatusOr<PublishReport> Prepare(const DesiredState& desired);
  // Step 4 for the last successful Prepare() (FailedPrecondition when there
  // is none). Returns the published generation.
  absl::StatusOr<uint64_t> Commit();
  // Forgets a prepared slot (it is simply never published).
  void Abandon() { prepared_.reset(); }

  uint64_t published_generation() const { return writer_.published_generation(); }
  // Whether Prepare() would go ahead without waiting for the lcores: its
  // slot is free, or the dataplane refused the published generation (then
  // Prepare fails at once, naming it, and arms the recovery). For callers
  // that defer a publish instead of waiting (health republish, drains).
  bool SlotFreeNow() const;
  const SlotAssignment& assignment() const { return assignment_; }
  const TableWriter& writer() const { return writer_; }
  const PublisherOptions& options() const { return options_; }

 private:
  Publisher(PublisherOptions options, TableWriter writer, std::shared_ptr<const DataplaneView> view)
      : options_(std::move(options)), writer_(std::move(writer)), view_(std::move(view)) {}

  // Step 1 above for the slot generation `next` will fill.
  absl::Status WaitForReclaim(uint64_t next, PublishReport* report);

  PublisherOptions options_;
  TableWriter writer_;
  std::shared_ptr<const DataplaneView> view_;
  SlotAssignment assignment_;
  std::optional<SlotAssignment> prepared_;  // the assignment of a prepared slot
  BuildScratch scratch_;                    // ring buffers kept between builds
};

}  // namespace lb

#endif  // LB_CONTROLPLANE_PUBLISHER_H_
