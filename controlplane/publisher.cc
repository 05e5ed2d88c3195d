#include "controlplane/publisher.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace lb {
namespace {

constexpr uint64_t kFirstPollNs = 50'000;
constexpr uint64_t kMaxPollNs = 1'000'000;

void SleepNs(uint64_t ns) {
  timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  nanosleep(&ts, nullptr);
}

double Ms(uint64_t ns) { return static_cast<double>(ns) / 1e6; }

}  // namespace

absl::StatusOr<Publisher> Publisher::Open(const PublisherOptions& options) {
  auto w = TableWriter::Open(options.table_path, options.caps, options.recreate_tables);
  if (!w.ok()) return w.status();
  Publisher p(options, *std::move(w));
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
  if (access(options_.stats_path.c_str(), F_OK) != 0) return absl::OkStatus();
  auto stats = StatsRegion::Attach(options_.stats_path);
  if (!stats.ok()) {
    // Without a readable stats region we cannot know whether an lcore still
    // reads the slot; refusing is the only safe answer.
    return absl::FailedPreconditionError(absl::StrCat(
        "stats region unusable, cannot check that the slot is free: ", stats.status().message()));
  }
  report->stats_region_present = true;
  const uint64_t start = MonotonicNs();
  uint64_t pause = kFirstPollNs;
  while (true) {
    const uint64_t now = MonotonicNs();
    StatsRegion::ReclaimStatus rs =
        stats->CheckReclaim(min_generation, now, options_.stuck_after_ns);
    if (rs.ok) {
      report->wait_ms = Ms(now - start);
      return absl::OkStatus();
    }
    if (now - start >= options_.reclaim_timeout_ns) {
      report->wait_ms = Ms(now - start);
      std::vector<std::string> who;
      for (uint32_t i : rs.waiting) {
        const LcoreStats& l = stats->Lcore(i);
        const uint64_t seen = l.observed_generation.load(std::memory_order_relaxed);
        const uint64_t hb = l.heartbeat_ns.load(std::memory_order_relaxed);
        const bool stuck = std::find(rs.stuck.begin(), rs.stuck.end(), i) != rs.stuck.end();
        if (stuck) {
          who.push_back(absl::StrCat("lcore ", l.lcore_id, " stuck (observed generation ", seen,
                                     ", heartbeat ", now > hb ? (now - hb) / 1'000'000 : 0,
                                     " ms old)"));
        } else {
          who.push_back(
              absl::StrCat("lcore ", l.lcore_id, " waiting (observed generation ", seen, ")"));
        }
      }
      return absl::FailedPreconditionError(absl::StrCat(
          "generation ", next, " not published: slot ", next % kNumTableSlots,
          " may still be read; ", absl::StrJoin(who, ", "),
          "; need observed generation >= ", min_generation, " (waited ",
          static_cast<uint64_t>(report->wait_ms), " ms); the published table is unchanged"));
    }
    SleepNs(pause);
    pause = std::min(pause * 2, kMaxPollNs);
  }
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
  const uint64_t g = writer_.Publish();
  assignment_ = *std::move(prepared_);
  prepared_.reset();
  return g;
}

absl::StatusOr<PublishReport> Publisher::Prepare(const DesiredState& desired) {
  prepared_.reset();
  PublishReport report;
  const uint64_t next = writer_.published_generation() + 1;
  if (absl::Status st = WaitForReclaim(next, &report); !st.ok()) return st;

  const uint64_t t0 = MonotonicNs();
  SlotView slot = writer_.NextSlot();
  auto built = BuildTables(desired, assignment_, slot);
  if (!built.ok()) return built.status();
  // Check the slot exactly as an attaching dataplane will, before it can see
  // it. Publish() rewrites generation, time and checksum the same way.
  slot.header->generation = next;
  slot.header->checksum = SlotChecksum(slot);
  if (absl::Status st = ValidateSlot(slot); !st.ok()) {
    return absl::InternalError(absl::StrCat("built slot fails validation: ", st.message()));
  }
  report.build_ms = Ms(MonotonicNs() - t0);

  report.generation = next;
  prepared_ = built->assignment;
  report.build = *std::move(built);
  return report;
}

}  // namespace lb
