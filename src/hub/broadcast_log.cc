#include "hub/broadcast_log.h"

namespace cable::hub {

BroadcastLog::BroadcastLog(uint32_t capacity_pow2, int consumers)
    : capacity_(capacity_pow2),
      mask_(capacity_pow2 - 1),
      consumers_(consumers),
      slots_(new Slot[capacity_pow2]),
      cursors_(new Cursor[consumers]) {}

uint64_t BroadcastLog::MinCursor() const {
  uint64_t min = UINT64_MAX;
  for (int i = 0; i < consumers_; ++i) {
    uint64_t p = cursors_[i].pos.load(std::memory_order_acquire);
    if (p < min) min = p;
  }
  return min;
}

bool BroadcastLog::TryPublish(Message* msg) {
  uint64_t h = head_.load(std::memory_order_relaxed);
  for (;;) {
    // Consumers may have moved past a stale `h` (the producer was preempted after reading it):
    // then h < min, the log is not full, and the CAS below fails and refreshes h. Without this
    // check the unsigned difference wraps and reports a spurious "full".
    uint64_t min = MinCursor();
    if (h >= min && h - min >= capacity_) return false;
    if (head_.compare_exchange_weak(h, h + 1, std::memory_order_acq_rel,
                                    std::memory_order_relaxed)) {
      break;
    }
  }
  Slot& s = slots_[h & mask_];
  s.msg = msg;
  s.seq.store(h + 1, std::memory_order_release);
  return true;
}

Message* BroadcastLog::Peek(int c) const {
  uint64_t pos = cursors_[c].pos.load(std::memory_order_relaxed);
  const Slot& s = slots_[pos & mask_];
  if (s.seq.load(std::memory_order_acquire) != pos + 1) return nullptr;
  return s.msg;
}

void BroadcastLog::Advance(int c) { cursors_[c].pos.fetch_add(1, std::memory_order_release); }

void BroadcastLog::ReleaseUnconsumed() {
  for (int c = 0; c < consumers_; ++c) {
    while (Message* msg = Peek(c)) {
      Advance(c);
      msg->Release();
    }
  }
}

}  // namespace cable::hub
