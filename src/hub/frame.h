// hub::Frame — the bytes of one complete server→client WebSocket frame (header + payload) in a
// single allocation. Server frames are unmasked, so one Frame feeds the send of every subscriber
// that gets it: a broadcast is serialized once per (publication, identifier), never once per
// subscriber.
//
// Ownership and threads:
// - A *local* frame belongs to one worker (replies, transmissions, the ping of one tick). Its count
// is
//   a plain integer touched only by that worker.
// - A *shared* frame is used by several workers. It carries one atomic count plus one plain counter
// per
//   worker, each on its own cache line. A worker takes one atomic reference the first time it
//   queues the frame on any of its connections and drops it when its last queued use is sent, so
//   fan-out to 100k subscribers costs W atomic operations, not 100k (Seastar's local/foreign
//   split).
// - Frames are immutable once built. The creator holds one reference and must Release it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace cable::hub {

class Frame {
 public:
  static Frame* NewLocal(size_t size);
  static Frame* NewShared(size_t size, int workers);

  char* data() { return reinterpret_cast<char*>(this) + data_offset_; }
  const char* data() const { return reinterpret_cast<const char*>(this) + data_offset_; }
  size_t size() const { return size_; }
  bool shared() const { return workers_ != 0; }

  // For a shared frame: `worker` is the calling worker's index. Ignored for local frames.
  void Acquire(int worker);
  void Release(int worker);
  // Drops the creator's reference (for shared frames: the atomic one taken at creation).
  void ReleaseCreator();

  // Test hook: called with each frame just before its memory is returned, so tests can check that
  // every frame is freed exactly once. Set it only while no other thread is freeing frames.
  static inline void (*free_hook)(const Frame*) = nullptr;

 private:
  struct alignas(64) LocalCount {
    uint32_t count;
  };
  Frame() = default;
  LocalCount* locals() { return reinterpret_cast<LocalCount*>(reinterpret_cast<char*>(this) + 64); }
  void Free();

  std::atomic<uint32_t> shared_refs_{0};
  uint32_t local_refs_ = 0;  // local frames only
  uint32_t size_ = 0;
  uint32_t data_offset_ = 0;
  uint16_t workers_ = 0;
};

// Owning handle for the creator's reference, for code paths that may return early.
class CreatorRef {
 public:
  explicit CreatorRef(Frame* f) : f_(f) {}
  ~CreatorRef() {
    if (f_) f_->ReleaseCreator();
  }
  CreatorRef(const CreatorRef&) = delete;
  CreatorRef& operator=(const CreatorRef&) = delete;
  Frame* get() const { return f_; }

 private:
  Frame* f_;
};

}  // namespace cable::hub
