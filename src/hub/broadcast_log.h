// hub::BroadcastLog — the ordered, lock-free path from publishers to every worker.
//
// A multi-producer ring of Message pointers that every worker consumes in full, each with its own
// cursor (the LMAX Disruptor shape). Because all workers read the same sequence, every subscriber
// of a stream sees publications in the one order in which they were accepted, whichever thread
// accepted them and whichever ring holds the subscriber; batches keep their order because their
// items are published in order by one producer.
//
// Threads: TryPublish from any thread (workers serving HTTP broadcasts, adapters). Consume only by
// the worker that owns the cursor. No locks: producers claim positions with a CAS on head_ after
// checking that the slowest consumer has freed the slot, then publish the slot with a release
// store. A full log makes TryPublish return false; the producer keeps the message and retries
// later, so a lagging worker slows publishers down instead of losing messages.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "hub/message.h"

namespace cable::hub {

class BroadcastLog {
 public:
  BroadcastLog(uint32_t capacity_pow2, int consumers);
  BroadcastLog(const BroadcastLog&) = delete;
  BroadcastLog& operator=(const BroadcastLog&) = delete;

  // Any thread. False when the log is full; nothing was published then.
  bool TryPublish(Message* msg);

  // Consumer `c` only: the next message, or nullptr when caught up (or when the next position is
  // claimed but not yet filled by its producer; it will be there on a later call).
  Message* Peek(int c) const;
  void Advance(int c);
  bool HasPending(int c) const { return Peek(c) != nullptr; }
  int consumers() const { return consumers_; }
  // Once every consumer has stopped for good (process exit): releases what they never consumed.
  void ReleaseUnconsumed();

 private:
  struct Slot {
    std::atomic<uint64_t> seq{0};  // position + 1 once filled
    Message* msg = nullptr;
  };
  struct alignas(64) Cursor {
    std::atomic<uint64_t> pos{0};
  };
  uint64_t MinCursor() const;

  const uint32_t capacity_;
  const uint64_t mask_;
  const int consumers_;
  std::unique_ptr<Slot[]> slots_;
  std::unique_ptr<Cursor[]> cursors_;
  alignas(64) std::atomic<uint64_t> head_{0};
};

}  // namespace cable::hub
