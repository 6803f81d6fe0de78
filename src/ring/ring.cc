#include "ring/ring.h"

#include <sys/mman.h>
#include <sys/utsname.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace cable::ring {
namespace {

bool KernelAtLeast(int want_major, int want_minor) {
  utsname u;
  if (uname(&u) != 0) return false;
  int major = 0, minor = 0;
  if (std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return false;
  return major > want_major || (major == want_major && minor >= want_minor);
}

}  // namespace

std::string Features::Describe() const {
  std::string s;
  auto add = [&](const char* name, bool on) {
    if (!s.empty()) s += ' ';
    s += name;
    s += on ? "=on" : "=off";
  };
  add("single_issuer", single_issuer);
  add("defer_taskrun", defer_taskrun);
  add("buf_ring", buf_ring);
  add("multishot_accept", multishot_accept);
  add("multishot_recv", multishot_recv);
  add("msg_ring", msg_ring);
  return s;
}

cable::Result<Features, std::string> ProbeFeatures() {
  Features f;
  io_uring probe_ring;
  io_uring_params params{};
  int rc = io_uring_queue_init_params(8, &probe_ring, &params);
  if (rc < 0) {
    return MakeError(std::string("io_uring is not available (io_uring_setup: ") + strerror(-rc) +
                     "); ringcable needs Linux >= 6.0 with io_uring enabled");
  }
  f.ext_arg = params.features & IORING_FEAT_EXT_ARG;
  io_uring_probe* probe = io_uring_get_probe_ring(&probe_ring);
  if (probe) {
    f.msg_ring = io_uring_opcode_supported(probe, IORING_OP_MSG_RING);
    io_uring_free_probe(probe);
  }
  // Buffer rings: try to register a tiny one.
  {
    size_t bytes = sizeof(io_uring_buf) * 8;
    void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem != MAP_FAILED) {
      io_uring_buf_reg reg{};
      reg.ring_addr = reinterpret_cast<uint64_t>(mem);
      reg.ring_entries = 8;
      reg.bgid = 0;
      if (io_uring_register_buf_ring(&probe_ring, &reg, 0) == 0) {
        f.buf_ring = true;
        io_uring_unregister_buf_ring(&probe_ring, 0);
      }
      munmap(mem, bytes);
    }
  }
  io_uring_queue_exit(&probe_ring);

  // Setup flags are probed by trying them: an unknown flag fails with EINVAL.
  io_uring r2;
  io_uring_params p2{};
  p2.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  if (io_uring_queue_init_params(8, &r2, &p2) == 0) {
    f.single_issuer = f.defer_taskrun = true;
    io_uring_queue_exit(&r2);
  } else {
    io_uring_params p3{};
    p3.flags = IORING_SETUP_SINGLE_ISSUER;
    if (io_uring_queue_init_params(8, &r2, &p3) == 0) {
      f.single_issuer = true;
      io_uring_queue_exit(&r2);
    }
  }
  // Multishot accept (5.19) and recv (6.0) have no probe bit; the kernel version decides.
  f.multishot_accept = KernelAtLeast(5, 19);
  f.multishot_recv = KernelAtLeast(6, 0);

  if (!f.ext_arg)
    return MakeError(
        std::string("the kernel's io_uring lacks IORING_FEAT_EXT_ARG (Linux >= 5.11 needed)"));
  if (!f.buf_ring) {
    return MakeError(
        std::string("the kernel's io_uring lacks provided-buffer rings (Linux >= 5.19 needed)"));
  }
  return f;
}

BufRing::~BufRing() {
  if (br_ && ring_) io_uring_unregister_buf_ring(ring_, group_id_);
  if (br_) munmap(br_, ring_bytes_);
  if (base_) munmap(base_, pool_bytes_);
}

cable::Result<bool, std::string> BufRing::Init(io_uring* ring, uint16_t group_id, uint32_t entries,
                                               uint32_t buffer_size) {
  ring_ = ring;
  group_id_ = group_id;
  entries_ = entries;
  buffer_size_ = buffer_size;
  ring_bytes_ = sizeof(io_uring_buf) * entries;
  void* mem =
      mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) return MakeError(std::string("mmap for buffer ring failed"));
  br_ = static_cast<io_uring_buf_ring*>(mem);
  pool_bytes_ = static_cast<size_t>(entries) * buffer_size;
  void* pool =
      mmap(nullptr, pool_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (pool == MAP_FAILED) return MakeError(std::string("mmap for receive buffers failed"));
  base_ = static_cast<char*>(pool);
  io_uring_buf_ring_init(br_);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(br_);
  reg.ring_entries = entries;
  reg.bgid = group_id;
  int rc = io_uring_register_buf_ring(ring_, &reg, 0);
  if (rc < 0) return MakeError(std::string("io_uring_register_buf_ring: ") + strerror(-rc));
  int mask = io_uring_buf_ring_mask(entries);
  for (uint32_t i = 0; i < entries; ++i) {
    io_uring_buf_ring_add(br_, Buffer(static_cast<uint16_t>(i)), buffer_size,
                          static_cast<uint16_t>(i), mask, static_cast<int>(i));
  }
  io_uring_buf_ring_advance(br_, static_cast<int>(entries));
  return true;
}

void BufRing::Recycle(uint16_t bid) {
  io_uring_buf_ring_add(br_, Buffer(bid), buffer_size_, bid, io_uring_buf_ring_mask(entries_), 0);
  io_uring_buf_ring_advance(br_, 1);
}

Ring::~Ring() {
  if (initialized_) io_uring_queue_exit(&ring_);
}

cable::Result<bool, std::string> Ring::Init(const Features& features, uint32_t sq_entries) {
  io_uring_params params{};
  // CQ 8x the SQ: multishot accept/recv post many CQEs per SQE and the CQ must never overflow.
  params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
  params.cq_entries = sq_entries * 8;
  // Only this thread submits, and completions run when it waits: lets the kernel skip locking
  // and IPIs for task work.
  if (features.single_issuer) params.flags |= IORING_SETUP_SINGLE_ISSUER;
  if (features.defer_taskrun) params.flags |= IORING_SETUP_DEFER_TASKRUN;
  int rc = io_uring_queue_init_params(sq_entries, &ring_, &params);
  if (rc < 0) return MakeError(std::string("io_uring_queue_init: ") + strerror(-rc));
  initialized_ = true;
  return true;
}

io_uring_sqe* Ring::GetSqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (!sqe) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

}  // namespace cable::ring
