// A bounded single-producer single-consumer mailbox between two lcores.
//
// One thread (the producer) calls Post, one other thread (the consumer) calls
// Take; each index is written by one side only and lives on its own cache
// line, so a post dirties the consumer's view of one line and a take the
// producer's view of another, nothing else. Capacity is N - 1 messages (one
// cell stays empty to tell full from empty); N is a power of two.
//
// Used for rare control messages between lcores (learned next hops, see
// dataplane/l4/worker.h), not for packets. Post on a full mailbox returns
// false and the message is not sent; the caller decides (the next hop
// mailbox drops it: the neighbour is learned again on its next answer).
//
// Thread-safety: exactly one producer thread and one consumer thread at a
// time. Per-packet safe: no allocation, no locks, no system calls.
#ifndef LB_LIB_SPSC_MAILBOX_H_
#define LB_LIB_SPSC_MAILBOX_H_

#include <atomic>
#include <cstdint>
#include <type_traits>

namespace lb {

template <typename T, uint32_t N>
class SpscMailbox {
  static_assert(N >= 2 && (N & (N - 1)) == 0, "SpscMailbox size must be a power of two");
  static_assert(std::is_trivially_copyable_v<T>, "SpscMailbox carries plain values");

 public:
  // Producer side. False (nothing sent) when N - 1 messages are waiting.
  bool Post(const T& msg) {
    const uint32_t head = head_.load(std::memory_order_relaxed);
    if (head - tail_.load(std::memory_order_acquire) == N - 1) return false;
    cells_[head & (N - 1)] = msg;
    head_.store(head + 1, std::memory_order_release);  // publishes the cell
    return true;
  }

  // Consumer side. False when nothing is waiting; else the oldest message.
  bool Take(T* out) {
    const uint32_t tail = tail_.load(std::memory_order_relaxed);
    if (tail == head_.load(std::memory_order_acquire)) return false;
    *out = cells_[tail & (N - 1)];
    tail_.store(tail + 1, std::memory_order_release);  // frees the cell
    return true;
  }

  // Either side: true when nothing is waiting (a hint under concurrency).
  bool Empty() const {
    return head_.load(std::memory_order_acquire) == tail_.load(std::memory_order_acquire);
  }

 private:
  alignas(64) std::atomic<uint32_t> head_{0};  // next cell to write; producer-owned
  alignas(64) std::atomic<uint32_t> tail_{0};  // next cell to read; consumer-owned
  alignas(64) T cells_[N] = {};
};

}  // namespace lb

#endif  // LB_LIB_SPSC_MAILBOX_H_
