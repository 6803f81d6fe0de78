// Ring send batching: what it costs, per frame, to hand K small frames (100 B, the size of a
// broadcast frame) to real loopback TCP sockets, the way Worker::StartSend does it against the
// obvious alternatives, all in one binary so the ratios come from the same run.
//
// One socket, K frames:
//   BM_SendPerFrame          baseline A: one send() syscall per frame
//   BM_SendmsgPerSocket      one sendmsg() syscall with K iovecs (batching without io_uring)
//   BM_UringSendPerFrame     baseline B: one IORING_OP_SEND per frame, one submit for the K
//   BM_UringSendmsg          ringcable: one IORING_OP_SENDMSG with K iovecs, one submit
// Fan-out, S sockets × K frames each (one publication reaching S subscribers when K = 1):
//   BM_FanoutSendPerFrame    one send() per socket per frame
//   BM_FanoutSendmsg         one sendmsg() syscall per socket
//   BM_FanoutUringSendPerFrame  one IORING_OP_SEND per socket per frame, one submit for all
//   BM_FanoutUringSendmsg    ringcable: one IORING_OP_SENDMSG per socket, one submit for all
//
// Every io_uring variant waits for all its completions and checks them inside the timed region
// (the worker reaps them too). Items = frames, so items_per_second compares directly.
//
// Threads: one. The receiving ends are drained by the same thread with the timers paused whenever
// 16 KiB per socket are unread, so a sender never finds a full socket and nothing runs
// concurrently with the measurement on this 2-core machine. Every receive has a 10 s timeout so a
// bug fails the benchmark instead of hanging it. Time is wall-clock (UseRealTime: it includes the
// loopback receive path that runs in softirq) and the CPU column is the whole process's CPU time.
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "ring/ring.h"

namespace {

constexpr size_t kFrameSize = 100;
constexpr int kMaxFrames = 64;           // Worker::StartSend's iovec cap
constexpr size_t kDrainAt = 16 * 1024;   // unread bytes per socket that trigger a (paused) drain
constexpr int kSocketBuffer = 4 << 20;   // so undrained data never fills either end
constexpr unsigned kRingEntries = 4096;  // the worker's SQ size

// Frames live in separate allocations, as queued hub::Frames do; fan-out sockets share them, as
// subscribers of one stream share a publication's frame.
class Frames {
 public:
  Frames() {
    for (int i = 0; i < kMaxFrames; ++i) {
      frames_[i] = std::make_unique<char[]>(kFrameSize);
      std::memset(frames_[i].get(), 'a' + i % 26, kFrameSize);
      frames_[i][0] = static_cast<char>(0x81);  // a WebSocket text frame header, for looks
      frames_[i][1] = static_cast<char>(kFrameSize - 2);
    }
  }
  char* frame(int i) const { return frames_[i].get(); }
  void FillIov(iovec* iov, int k) const {
    for (int i = 0; i < k; ++i) iov[i] = {frames_[i].get(), kFrameSize};
  }

 private:
  std::array<std::unique_ptr<char[]>, kMaxFrames> frames_;
};

const Frames& SharedFrames() {
  static const Frames frames;
  return frames;
}

// S connected loopback TCP pairs. The sending ends are non-blocking with TCP_NODELAY (as the
// server's accepted sockets are); the receiving ends block with a 10 s receive timeout.
class SocketPairs {
 public:
  explicit SocketPairs(int count) {
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0) {
      Fail("socket");
      return;
    }
    // Set before listen() so accepted sockets inherit it and the window scale allows it.
    setsockopt(listener, SOL_SOCKET, SO_RCVBUF, &kSocketBuffer, sizeof(kSocketBuffer));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(listener, 1024) != 0 ||
        getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      Fail("bind/listen");
      close(listener);
      return;
    }
    for (int i = 0; i < count && error_.empty(); ++i) {
      int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (s < 0) {
        Fail("socket");
        break;
      }
      senders_.push_back(s);
      int one = 1;
      setsockopt(s, SOL_SOCKET, SO_SNDBUF, &kSocketBuffer, sizeof(kSocketBuffer));
      setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      if (connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        Fail("connect");
        break;
      }
      int r = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (r < 0) {
        Fail("accept");
        break;
      }
      receivers_.push_back(r);
      timeval tv{10, 0};
      setsockopt(r, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      int fl = fcntl(s, F_GETFL);
      fcntl(s, F_SETFL, fl | O_NONBLOCK);
    }
    close(listener);
  }
  ~SocketPairs() {
    for (int fd : senders_) close(fd);
    for (int fd : receivers_) close(fd);
  }
  SocketPairs(const SocketPairs&) = delete;
  SocketPairs& operator=(const SocketPairs&) = delete;

  const std::string& error() const { return error_; }
  int size() const { return static_cast<int>(senders_.size()); }
  int sender(int i) const { return senders_[i]; }

  // Called once per iteration after every socket got `bytes`. Drains with the timers paused once
  // enough is unread. False (with error()) when a socket did not deliver what was sent.
  bool Sent(benchmark::State& state, size_t bytes) {
    unread_ += bytes;
    sent_total_ += bytes;
    if (unread_ < kDrainAt) return true;
    state.PauseTiming();
    bool ok = DrainAll();
    state.ResumeTiming();
    return ok;
  }

  // Reads everything still unread; afterwards every receiver got exactly what its sender sent.
  bool DrainAll() {
    static thread_local std::vector<char> buf(1 << 20);
    for (int fd : receivers_) {
      size_t left = unread_;
      while (left > 0) {
        ssize_t n = recv(fd, buf.data(), std::min(left, buf.size()), 0);
        if (n <= 0) return Fail(n == 0 ? "recv: peer closed" : "recv (timeout or error)");
        left -= static_cast<size_t>(n);
      }
    }
    unread_ = 0;
    return true;
  }

  size_t sent_total() const { return sent_total_; }

 private:
  bool Fail(const char* what) {
    if (error_.empty()) error_ = std::string(what) + ": " + strerror(errno);
    return false;
  }

  std::vector<int> senders_;
  std::vector<int> receivers_;
  size_t unread_ = 0;  // per socket: every socket gets the same bytes each iteration
  size_t sent_total_ = 0;
  std::string error_;
};

// The server's ring (SINGLE_ISSUER + DEFER_TASKRUN when the kernel has them, 4096 entries).
class BenchRing {
 public:
  BenchRing() {
    auto features = cable::ring::ProbeFeatures();
    if (!features) {
      error_ = features.error();
      return;
    }
    auto r = ring_.Init(*features, kRingEntries);
    if (!r) error_ = r.error();
  }
  const std::string& error() const { return error_; }
  cable::ring::Ring& ring() { return ring_; }

  // Submits what is queued, waits for `count` completions and checks that each sent `expect`
  // bytes. Returns false on a short or failed send.
  bool SubmitAndReap(unsigned count, int expect) {
    io_uring* raw = ring_.raw();
    int rc = io_uring_submit_and_wait(raw, count);
    if (rc < 0) return Fail("io_uring_submit_and_wait", -rc);
    unsigned reaped = 0;
    while (reaped < count) {
      io_uring_cqe* cqe = nullptr;
      rc = io_uring_wait_cqe(raw, &cqe);
      if (rc < 0) return Fail("io_uring_wait_cqe", -rc);
      unsigned head;
      unsigned seen = 0;
      bool ok = true;
      io_uring_for_each_cqe(raw, head, cqe) {
        if (cqe->res != expect) ok = false;
        ++seen;
      }
      io_uring_cq_advance(raw, seen);
      reaped += seen;
      if (!ok) return Fail("short or failed send completion", 0);
    }
    return true;
  }

 private:
  bool Fail(const char* what, int err) {
    error_ = std::string(what) + (err ? std::string(": ") + strerror(err) : std::string());
    return false;
  }

  cable::ring::Ring ring_;
  std::string error_;
};

void Finish(benchmark::State& state, SocketPairs& pairs, int sockets, int frames) {
  if (!pairs.DrainAll()) state.SkipWithError(pairs.error().c_str());
  state.SetItemsProcessed(state.iterations() * sockets * frames);
  state.SetBytesProcessed(state.iterations() * sockets * frames * static_cast<int64_t>(kFrameSize));
  state.counters["sockets"] = sockets;
  state.counters["frames_per_socket"] = frames;
}

// ---- send() / sendmsg() syscalls -----------------------------------------------------------

void RunSendPerFrame(benchmark::State& state, int sockets, int frames) {
  const Frames& f = SharedFrames();
  SocketPairs pairs(sockets);
  if (!pairs.error().empty()) return state.SkipWithError(pairs.error().c_str());
  for (auto _ : state) {
    for (int s = 0; s < sockets; ++s) {
      for (int i = 0; i < frames; ++i) {
        ssize_t n = send(pairs.sender(s), f.frame(i), kFrameSize, MSG_NOSIGNAL);
        if (n != static_cast<ssize_t>(kFrameSize)) return state.SkipWithError("short send()");
      }
    }
    if (!pairs.Sent(state, frames * kFrameSize)) return state.SkipWithError(pairs.error().c_str());
  }
  Finish(state, pairs, sockets, frames);
}

void RunSendmsgPerSocket(benchmark::State& state, int sockets, int frames) {
  const Frames& f = SharedFrames();
  SocketPairs pairs(sockets);
  if (!pairs.error().empty()) return state.SkipWithError(pairs.error().c_str());
  iovec iov[kMaxFrames];
  f.FillIov(iov, frames);
  const ssize_t expect = static_cast<ssize_t>(frames * kFrameSize);
  for (auto _ : state) {
    for (int s = 0; s < sockets; ++s) {
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = static_cast<size_t>(frames);
      if (sendmsg(pairs.sender(s), &msg, MSG_NOSIGNAL) != expect) {
        return state.SkipWithError("short sendmsg()");
      }
    }
    if (!pairs.Sent(state, frames * kFrameSize)) return state.SkipWithError(pairs.error().c_str());
  }
  Finish(state, pairs, sockets, frames);
}

// ---- io_uring --------------------------------------------------------------------------------

void RunUringSendPerFrame(benchmark::State& state, int sockets, int frames) {
  const Frames& f = SharedFrames();
  SocketPairs pairs(sockets);
  if (!pairs.error().empty()) return state.SkipWithError(pairs.error().c_str());
  BenchRing br;
  if (!br.error().empty()) return state.SkipWithError(br.error().c_str());
  const unsigned ops = static_cast<unsigned>(sockets * frames);
  for (auto _ : state) {
    for (int s = 0; s < sockets; ++s) {
      for (int i = 0; i < frames; ++i) {
        io_uring_sqe* sqe = br.ring().GetSqe();
        io_uring_prep_send(sqe, pairs.sender(s), f.frame(i), kFrameSize, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, cable::ring::PackTag(cable::ring::Op::kSend, 0, s));
      }
    }
    if (!br.SubmitAndReap(ops, static_cast<int>(kFrameSize))) {
      return state.SkipWithError(br.error().c_str());
    }
    if (!pairs.Sent(state, frames * kFrameSize)) return state.SkipWithError(pairs.error().c_str());
  }
  Finish(state, pairs, sockets, frames);
}

void RunUringSendmsg(benchmark::State& state, int sockets, int frames) {
  const Frames& f = SharedFrames();
  SocketPairs pairs(sockets);
  if (!pairs.error().empty()) return state.SkipWithError(pairs.error().c_str());
  BenchRing br;
  if (!br.error().empty()) return state.SkipWithError(br.error().c_str());
  // One msghdr + iovec array per socket, alive until the completion, as the worker's SendOps are.
  struct Op {
    msghdr msg;
    iovec iov[kMaxFrames];
  };
  std::vector<Op> op_list(static_cast<size_t>(sockets));
  for (Op& op : op_list) {
    f.FillIov(op.iov, frames);
    op.msg = {};
    op.msg.msg_iov = op.iov;
    op.msg.msg_iovlen = static_cast<size_t>(frames);
  }
  const int expect = static_cast<int>(frames * kFrameSize);
  for (auto _ : state) {
    for (int s = 0; s < sockets; ++s) {
      io_uring_sqe* sqe = br.ring().GetSqe();
      io_uring_prep_sendmsg(sqe, pairs.sender(s), &op_list[s].msg, MSG_NOSIGNAL);
      io_uring_sqe_set_data64(sqe, cable::ring::PackTag(cable::ring::Op::kSend, 0, s));
    }
    if (!br.SubmitAndReap(static_cast<unsigned>(sockets), expect)) {
      return state.SkipWithError(br.error().c_str());
    }
    if (!pairs.Sent(state, frames * kFrameSize)) return state.SkipWithError(pairs.error().c_str());
  }
  Finish(state, pairs, sockets, frames);
}

// ---- registrations ---------------------------------------------------------------------------

// One socket, K frames.
void BM_SendPerFrame(benchmark::State& s) { RunSendPerFrame(s, 1, static_cast<int>(s.range(0))); }
void BM_SendmsgPerSocket(benchmark::State& s) {
  RunSendmsgPerSocket(s, 1, static_cast<int>(s.range(0)));
}
void BM_UringSendPerFrame(benchmark::State& s) {
  RunUringSendPerFrame(s, 1, static_cast<int>(s.range(0)));
}
void BM_UringSendmsg(benchmark::State& s) { RunUringSendmsg(s, 1, static_cast<int>(s.range(0))); }

// S sockets, K frames each.
void BM_FanoutSendPerFrame(benchmark::State& s) {
  RunSendPerFrame(s, static_cast<int>(s.range(0)), static_cast<int>(s.range(1)));
}
void BM_FanoutSendmsg(benchmark::State& s) {
  RunSendmsgPerSocket(s, static_cast<int>(s.range(0)), static_cast<int>(s.range(1)));
}
void BM_FanoutUringSendPerFrame(benchmark::State& s) {
  RunUringSendPerFrame(s, static_cast<int>(s.range(0)), static_cast<int>(s.range(1)));
}
void BM_FanoutUringSendmsg(benchmark::State& s) {
  RunUringSendmsg(s, static_cast<int>(s.range(0)), static_cast<int>(s.range(1)));
}

void SingleArgs(benchmark::internal::Benchmark* b) {
  b->ArgName("frames")->Arg(1)->Arg(4)->Arg(16)->Arg(64);
  b->UseRealTime()->MeasureProcessCPUTime();
}
void FanoutArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"sockets", "frames"})->ArgsProduct({{16, 256}, {1, 16}});
  b->UseRealTime()->MeasureProcessCPUTime();
}

BENCHMARK(BM_SendPerFrame)->Apply(SingleArgs);
BENCHMARK(BM_SendmsgPerSocket)->Apply(SingleArgs);
BENCHMARK(BM_UringSendPerFrame)->Apply(SingleArgs);
BENCHMARK(BM_UringSendmsg)->Apply(SingleArgs);
BENCHMARK(BM_FanoutSendPerFrame)->Apply(FanoutArgs);
BENCHMARK(BM_FanoutSendmsg)->Apply(FanoutArgs);
BENCHMARK(BM_FanoutUringSendPerFrame)->Apply(FanoutArgs);
BENCHMARK(BM_FanoutUringSendmsg)->Apply(FanoutArgs);

}  // namespace
