// ring: the only module that talks to io_uring (liburing 2.3). One Ring per worker thread; a Ring
// and everything it owns (its provided-buffer ring, its SQEs) is used by that thread alone
// (IORING_SETUP_SINGLE_ISSUER). Other modules see ring:: types and never include liburing directly,
// except the worker loop that dispatches completions.
//
// Completions are identified by a 64-bit tag, never by a pointer: {op:8 | generation:24 | slot:32}.
// A completion whose generation does not match its slot's current generation is a late completion
// for a recycled slot and is dropped (after releasing whatever buffer it carries).
#pragma once

#include <liburing.h>

#include <cstdint>
#include <string>

#include "common/result.h"

namespace cable::ring {

// What the running kernel supports, probed once at start-up.
struct Features {
  bool single_issuer = false;  // IORING_SETUP_SINGLE_ISSUER (6.0)
  bool defer_taskrun = false;  // IORING_SETUP_DEFER_TASKRUN (6.1)
  bool buf_ring = false;       // provided-buffer rings (5.19): required
  bool multishot_accept = false;
  bool multishot_recv = false;  // 6.0
  bool msg_ring = false;        // IORING_OP_MSG_RING (5.18): ring-to-ring doorbell
  bool ext_arg = false;         // timeouts on wait without a timeout SQE (5.11): required
  std::string Describe() const;
};

// Probes the kernel. Fails with a clear message when a required feature is missing.
cable::Result<Features, std::string> ProbeFeatures();

enum class Op : uint8_t {
  kAccept = 1,
  kRecv,
  kSend,
  kClose,
  kCancel,
  kDoorbell,  // eventfd read (foreign-thread wake-ups)
  kMsgRing,   // a MSG_RING wake-up arriving from another ring
  kMsgRingSent,
  kShutdown,
};

inline uint64_t PackTag(Op op, uint32_t generation, uint32_t slot) {
  return (static_cast<uint64_t>(op) << 56) | (static_cast<uint64_t>(generation & 0xffffff) << 32) |
         slot;
}
inline Op TagOp(uint64_t tag) { return static_cast<Op>(tag >> 56); }
inline uint32_t TagGeneration(uint64_t tag) { return (tag >> 32) & 0xffffff; }
inline uint32_t TagSlot(uint64_t tag) { return static_cast<uint32_t>(tag); }

// A provided-buffer ring (set up by hand: liburing 2.3 has no io_uring_setup_buf_ring). The kernel
// picks a buffer for each recv; the worker hands it back with Recycle() before leaving the
// completion handler, so buffers are never held across an RPC.
class BufRing {
 public:
  BufRing() = default;
  ~BufRing();
  BufRing(const BufRing&) = delete;
  BufRing& operator=(const BufRing&) = delete;

  cable::Result<bool, std::string> Init(io_uring* ring, uint16_t group_id, uint32_t entries,
                                        uint32_t buffer_size);
  char* Buffer(uint16_t bid) const { return base_ + static_cast<size_t>(bid) * buffer_size_; }
  void Recycle(uint16_t bid);
  uint16_t group_id() const { return group_id_; }
  uint32_t buffer_size() const { return buffer_size_; }

 private:
  io_uring* ring_ = nullptr;
  io_uring_buf_ring* br_ = nullptr;
  char* base_ = nullptr;
  size_t ring_bytes_ = 0;
  size_t pool_bytes_ = 0;
  uint32_t entries_ = 0;
  uint32_t buffer_size_ = 0;
  uint16_t group_id_ = 0;
};

// The per-thread io_uring instance.
class Ring {
 public:
  Ring() = default;
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  cable::Result<bool, std::string> Init(const Features& features, uint32_t sq_entries);
  // Never returns null: when the SQ is full it submits what is queued first.
  io_uring_sqe* GetSqe();
  io_uring* raw() { return &ring_; }
  int fd() const { return ring_.ring_fd; }

 private:
  io_uring ring_{};
  bool initialized_ = false;
};

}  // namespace cable::ring
