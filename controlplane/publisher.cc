#include "controlplane/publisher.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "controlplane/clock.h"
#include "lib/slot_verify.h"

namespace lb {

absl::StatusOr<Publisher> Publisher::Open(const PublisherOptions& options,
                                          std::shared_ptr<const DataplaneView> view) {
  auto w = TableWriter::Open(options.table_path, options.caps, options.recreate_tables);
  if (!w.ok()) return w.status();
  if (view == nullptr) {
    view = std::make_shared<const DataplaneView>(options.stats_path, options.stuck_after_ns);
  }
  Publisher p(options, *std::move(w), std::move(view));
  const uint64_t g = p.writer_.published_generation();
  if (g > 0) {
    SlotView current = p.writer_.CurrentSlot();
    absl::Status st = ValidateSlot(current);
    absl::StatusOr<SlotAssignment> seeded =
        st.ok() ? SeedAssignmentFromSlot(current) : absl::StatusOr<SlotAssignment>(st);
    if (!seeded.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(options.table_path, ": published generation ", g, " cannot be continued: ",
                       seeded.status().message(), " (start with --recreate_tables to discard it)"));
    }
    p.assignment_ = *std::move(seeded);
  }
  return p;
}

absl::Status Publisher::WaitForReclaim(uint64_t next, PublishReport* report) {
  // Slot next % kNumTableSlots last held next - kNumTableSlots; lcores that
  // have observed anything newer have let go of it.
  if (next <= kNumTableSlots - 1) return absl::OkStatus();
  const uint64_t min_generation = next - kNumTableSlots + 1;
  // After a refusal the slot is the refused generation's own, which lcores
  // that refused it no longer read (protocol step 4, lib/table_format.h).
  const uint64_t released = writer_.skipping_refused() ? next - kNumTableSlots : 0;
  uint64_t waited_ns = 0;
  const ReclaimCheck rc =
      view_->WaitReclaim(min_generation, options_.reclaim_timeout_ns, &waited_ns, released);
  report->wait_ms = NsToMs(waited_ns);
  switch (rc.region) {
    case ReclaimCheck::Region::kAbsent:
      return absl::OkStatus();  // no dataplane ever ran
    case ReclaimCheck::Region::kUnusable:
      // Without a readable stats region we cannot know whether an lcore
      // still reads the slot; refusing is the only safe answer.
      return absl::FailedPreconditionError(absl::StrCat(
          "stats region unusable, cannot check that the slot is free: ", rc.unusable_reason));
    case ReclaimCheck::Region::kAttached:
      break;
  }
  report->stats_region_present = true;
  if (rc.ok) return absl::OkStatus();
  if (rc.refused_generation != 0) {
    writer_.SkipRefused();
    return absl::FailedPreconditionError(absl::StrCat(
        "dataplane refused generation ", rc.refused_generation, " (", rc.DescribeHolding(),
        "; lb-dataplane logs the field at fault): its lcores keep forwarding with the table they "
        "had, so generation ",
        next, " is not published into their slot; the next publish writes generation ",
        rc.refused_generation + kNumTableSlots, " into the refused slot"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "generation ", next, " not published: slot ", next % kNumTableSlots, " may still be read; ",
      rc.DescribeHolding(), "; need observed generation >= ", min_generation, " (waited ",
      static_cast<uint64_t>(report->wait_ms), " ms); the published table is unchanged"));
}

bool Publisher::SlotFreeNow() const {
  const uint64_t next = writer_.NextGeneration();
  if (next <= kNumTableSlots - 1) return true;
  const uint64_t released = writer_.skipping_refused() ? next - kNumTableSlots : 0;
  const ReclaimCheck rc = view_->CheckReclaim(next - kNumTableSlots + 1, released);
  return rc.region != ReclaimCheck::Region::kAttached || rc.ok || rc.refused_generation != 0;
}

absl::StatusOr<PublishReport> Publisher::Publish(const DesiredState& desired) {
  auto report = Prepare(desired);
  if (!report.ok()) return report.status();
  auto g = Commit();
  if (!g.ok()) return g.status();
  return report;
}

absl::StatusOr<uint64_t> Publisher::Commit() {
  if (!prepared_.has_value()) {
    return absl::FailedPreconditionError("Publisher::Commit without a prepared slot");
  }
  const uint64_t g = writer_.PublishSealed();
  assignment_ = *std::move(prepared_);
  prepared_.reset();
  return g;
}

absl::StatusOr<PublishReport> Publisher::Prepare(const DesiredState& desired) {
  prepared_.reset();
  PublishReport report;
  const uint64_t next = writer_.NextGeneration();
  if (absl::Status st = WaitForReclaim(next, &report); !st.ok()) return st;

  const uint64_t t0 = MonotonicNs();
  SlotView slot = writer_.NextSlot();
  auto built = BuildTables(desired, assignment_, slot, &scratch_);
  if (!built.ok()) return built.status();
  // Check every index the fast path follows, as a dataplane will, before it
  // can see the slot; then seal it (generation, time, checksum: the one pass
  // of the checksum over the rings). Commit only publishes the generation,
  // so the publish time is the sealing time, a store save earlier.
  const uint64_t t1 = MonotonicNs();
  if (SlotFault f; !CheckSlotIndices(slot, &f)) {
    return absl::InternalError(
        absl::StrCat("built slot fails validation: ", DescribeSlotFault(f, next)));
  }
  writer_.Seal();
  const uint64_t t2 = MonotonicNs();
  report.build_ms = NsToMs(t2 - t0);
  report.check_seal_ms = NsToMs(t2 - t1);

  report.generation = next;
  prepared_ = built->assignment;
  report.build = *std::move(built);
  return report;
}

}  // namespace lb
