// Worker: the event loop, socket I/O and connection lifecycle. Session logic is in
// worker_session.cc, HTTP in worker_http.cc, broadcast delivery and timers in worker_hub.cc.
#include "server/worker.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <future>

#include "common/log.h"
#include "ws/deflate.h"
#include "ws/frame.h"

namespace cable::server {
namespace {
thread_local Worker* t_current_worker = nullptr;
// Input frames queued behind a running command before we stop reading from the socket
// (TCP backpressure, as anycable-go gets by not reading while a command runs).
constexpr size_t kMaxPendingInput = 64 * 1024;
constexpr uint32_t kRecvBuffers = 2048;
constexpr uint32_t kRecvBufferSize = 4096;

int MakeListener(const sockaddr_storage& addr, socklen_t len, int user_timeout_s,
                 std::string* err) {
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = std::string("socket: ") + strerror(errno);
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  // One listener per worker: the kernel spreads new connections over the workers.
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  // Accepted sockets inherit these, which saves a setsockopt per connection. TCP_USER_TIMEOUT drops
  // a peer that vanished without a FIN (half-open): once a ping stays unacknowledged that long, the
  // kernel errors the socket and the pending receive completes with ETIMEDOUT.
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (user_timeout_s > 0) {
    unsigned timeout_ms = static_cast<unsigned>(user_timeout_s) * 1000u;
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout_ms, sizeof(timeout_ms));
  }
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0 || listen(fd, 4096) != 0) {
    *err = strerror(errno);
    close(fd);
    return -1;
  }
  return fd;
}
}  // namespace

SubState* Session::Find(const std::string& identifier) {
  for (auto& s : subs) {
    if (s->sub.identifier == identifier) return s.get();
  }
  return nullptr;
}

Worker::Worker(Shared& shared, int index)
    : shared_(shared), cfg_(shared.cfg), index_(index), wheel_(kWheelSize, kNil) {
  std::random_device rd;
  rng_.seed((static_cast<uint64_t>(rd()) << 32) ^ rd() ^ static_cast<uint64_t>(index));
  wake_targets_.assign(shared.cfg.workers, false);
  if (cfg_.max_conn > 0) {
    max_conns_ = static_cast<size_t>((cfg_.max_conn + cfg_.workers - 1) / cfg_.workers);
  }
}

Worker::~Worker() {
  for (int fd : listen_fds_) {
    if (fd >= 0) close(fd);
  }
  if (event_fd_ >= 0) close(event_fd_);
  // Items another worker pushed after this one finished (a long-poll answer during shutdown).
  for (InboxItem* item = inbox_.TakeAll(); item;) {
    InboxItem* next = item->next;
    delete item;
    item = next;
  }
  // Publications that never made it into the log (it was full at shutdown) still hold one
  // reference per worker.
  for (hub::Message* msg : pending_publish_) {
    for (int i = 0; i < cfg_.workers; ++i) msg->Release();
  }
  // --broker redis: live publications held behind a history read, and late broker replies.
  for (auto& [sub, p] : pending_history_) {
    for (auto& [link, m] : p.buffer) m->Release();
  }
  for (InboxItem* item = inbox_.TakeAll(); item;) {
    InboxItem* next = item->next;
    delete item;
    item = next;
  }
}

cable::Result<bool, std::string> Worker::Init(const ListenAddress& main,
                                              const ListenAddress* broadcast,
                                              const ListenAddress* api) {
  // With pub/sub, the node subscribes to the streams its workers have subscribers for.
  if (shared_.cluster && shared_.cluster->pubsub()) index_map_.SetObserver(this);
  std::string err;
  // Live upgrade: the old process's listeners (same sockets, same accept queues).
  listen_fds_[0] = inherited_fds_[0] >= 0
                       ? inherited_fds_[0]
                       : MakeListener(main.addr, main.len, cfg_.tcp_user_timeout_s, &err);
  if (listen_fds_[0] < 0)
    return MakeError("cannot listen on port " + std::to_string(cfg_.port) + ": " + err);
  if (broadcast) {
    listen_fds_[1] = inherited_fds_[1] >= 0 ? inherited_fds_[1]
                                            : MakeListener(broadcast->addr, broadcast->len,
                                                           cfg_.tcp_user_timeout_s, &err);
    if (listen_fds_[1] < 0) {
      return MakeError("cannot listen on broadcast port " + std::to_string(shared_.broadcast_port) +
                       ": " + err);
    }
  }
  if (api) {
    listen_fds_[2] = inherited_fds_[2] >= 0
                         ? inherited_fds_[2]
                         : MakeListener(api->addr, api->len, cfg_.tcp_user_timeout_s, &err);
    if (listen_fds_[2] < 0) {
      return MakeError("cannot listen on API port " + std::to_string(cfg_.api_port) + ": " + err);
    }
  }
  event_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (event_fd_ < 0) return MakeError(std::string("eventfd: ") + strerror(errno));
  return true;
}

cable::Result<bool, std::string> Worker::Start() {
  std::promise<std::string> ready;
  std::future<std::string> status = ready.get_future();
  thread_ = std::thread([this, &ready] {
    auto r = ring_.Init(shared_.features, 4096);
    if (!r.ok()) {
      ready.set_value(r.error());
      return;
    }
    auto b = bufs_.Init(ring_.raw(), 0, kRecvBuffers, kRecvBufferSize);
    if (!b.ok()) {
      ready.set_value(b.error());
      return;
    }
    ring_ready_.store(true, std::memory_order_release);
    ready.set_value("");
    Run();
  });
  std::string err = status.get();
  if (!err.empty()) {
    thread_.join();
    return MakeError(err);
  }
  return true;
}

void Worker::Join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::Run() {
  t_current_worker = this;
  // io_uring_register_ring_fd saves an fd lookup per io_uring_enter; optional.
  io_uring_register_ring_fd(ring_.raw());
  UpdateClock();
  next_tick_ms_ = now_ms_ + kTickMs;
  disconnect_last_ms_ = now_ms_;
  for (int l = 0; l < kListenerCount; ++l) {
    if (listen_fds_[l] >= 0) ArmAccept(l);
  }
  ArmDoorbell();
  Loop();
  finished_.store(true, std::memory_order_release);
}

void Worker::UpdateClock() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  now_ms_ = static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void Worker::Loop() {
  io_uring* ring = ring_.raw();
  for (;;) {
    UpdateClock();
    ProcessInbox();
    ProcessBroadcasts();
    FlushPendingPublications();
    if (now_ms_ >= next_tick_ms_) ProcessTicks();
    ProcessDisconnectQueue();
    if (handover_ != Handover::kNone) ProgressHandover();
    FlushSends();
    for (uint32_t slot : rearm_) {
      Conn& c = conns_[slot];
      if (c.state != ConnState::kFree && !c.recv_armed && !c.read_paused && !c.reading_stopped &&
          c.state != ConnState::kClosing && c.handover == 0) {
        ArmRecv(c, slot);
      }
    }
    rearm_.clear();
    if (notify_pending_) NotifyWorkers();
    if (rpc_unflushed_) {
      rpc_unflushed_ = false;
      shared_.rpc->Flush();
    }
    // Also wait for the accept cancellations: with DEFER_TASKRUN they complete only while this
    // thread waits on the ring, and until then the pending accept keeps the closed listener alive,
    // so the kernel keeps queueing (and never serving) new connections on it.
    if (stopping_ && ShutdownComplete() && AcceptsDisarmed()) break;

    // Sleep only if nothing is waiting: announce the intent, then re-check (Dekker with producers,
    // who publish, fence, then look at sleeping_).
    sleeping_.store(true, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    bool busy = !inbox_.Empty() || shared_.log->HasPending(index_) || !dirty_.empty() ||
                (!pending_publish_.empty()) || (shared_.broker && shared_.broker->HasBacklog());
    int64_t wait_ms = next_tick_ms_ - now_ms_;
    if (busy || wait_ms <= 0) {
      sleeping_.store(false, std::memory_order_relaxed);
      io_uring_submit_and_get_events(ring);
    } else {
      __kernel_timespec ts{};
      ts.tv_sec = wait_ms / 1000;
      ts.tv_nsec = (wait_ms % 1000) * 1000000;
      io_uring_cqe* cqe = nullptr;
      io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, nullptr);
      sleeping_.store(false, std::memory_order_relaxed);
    }
    counters_.submissions_total.Add();
    unsigned head;
    unsigned count = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(ring, head, cqe) {
      ++count;
      Dispatch(cqe);
    }
    io_uring_cq_advance(ring, count);
  }
  io_uring_submit(ring);
}

void Worker::Dispatch(io_uring_cqe* cqe) {
  uint64_t tag = cqe->user_data;
  switch (ring::TagOp(tag)) {
    case ring::Op::kAccept:
      OnAccept(static_cast<int>(ring::TagSlot(tag)), cqe);
      break;
    case ring::Op::kRecv:
      OnRecv(ring::TagSlot(tag), ring::TagGeneration(tag), cqe);
      break;
    case ring::Op::kSend:
      OnSend(ring::TagSlot(tag), cqe);
      break;
    case ring::Op::kDoorbell:
      counters_.wakeups_total.Add();
      ArmDoorbell();
      break;
    case ring::Op::kMsgRing:
      counters_.wakeups_total.Add();
      break;
    case ring::Op::kMsgRingSent:
      if (cqe->res < 0) {
        // The target could not take the MSG_RING (e.g. its CQ is full): fall back to its eventfd.
        uint32_t target = ring::TagSlot(tag);
        if (target < shared_.workers.size()) eventfd_write(shared_.workers[target]->event_fd_, 1);
      }
      break;
    default:
      break;  // cancel/close completions need no action
  }
}

void Worker::ArmDoorbell() {
  io_uring_sqe* sqe = ring_.GetSqe();
  io_uring_prep_read(sqe, event_fd_, &doorbell_buf_, sizeof(doorbell_buf_), 0);
  io_uring_sqe_set_data64(sqe, ring::PackTag(ring::Op::kDoorbell, 0, 0));
}

void Worker::ArmAccept(int listener) {
  if (listen_fds_[listener] < 0 || accept_armed_[listener]) return;
  if (handover_ != Handover::kNone) return;  // the new process accepts now
  if (accept_held_) return;                  // new process: the old one still accepts
  if (!AcceptAllowed()) return;              // re-armed when a connection slot frees up
  io_uring_sqe* sqe = ring_.GetSqe();
  // With --max-conn, one accept at a time so the count is checked before every connection.
  if (shared_.features.multishot_accept && max_conns_ == 0) {
    io_uring_prep_multishot_accept(sqe, listen_fds_[listener], nullptr, nullptr, SOCK_CLOEXEC);
  } else {
    io_uring_prep_accept(sqe, listen_fds_[listener], nullptr, nullptr, SOCK_CLOEXEC);
  }
  io_uring_sqe_set_data64(sqe,
                          ring::PackTag(ring::Op::kAccept, 0, static_cast<uint32_t>(listener)));
  accept_armed_[listener] = true;
}

void Worker::OnAccept(int listener, io_uring_cqe* cqe) {
  if (!(cqe->flags & IORING_CQE_F_MORE)) accept_armed_[listener] = false;
  if (cqe->res < 0) {
    int err = -cqe->res;
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
      // Out of descriptors: retrying at once would spin a core. Retry on a later tick.
      if (accept_retry_ms_ == 0) LOG_WARN("accept: %s; pausing accepts for 100 ms", strerror(err));
      accept_retry_ms_ = now_ms_ + kTickMs;
    } else if (err != ECANCELED && !stopping_) {
      LOG_WARN("accept: %s", strerror(err));
    }
    if (!accept_armed_[listener] && !stopping_ && accept_retry_ms_ == 0) ArmAccept(listener);
    return;
  }
  int fd = cqe->res;
  if (stopping_) {
    close(fd);
    return;
  }
  uint32_t slot = AllocSlot();
  ++live_conns_;
  Conn& c = conns_[slot];
  c.fd = fd;
  c.state = ConnState::kHttp;
  c.listener = static_cast<Listener>(listener);
  c.http = std::make_unique<HttpState>();
  // With --ssl_cert/--ssl_key every worker listener speaks TLS: the main port and separate HTTP
  // broadcast and API ports (the metrics port is served by its own thread, plain).
  if (shared_.tls) {
    c.tls = std::make_unique<ConnTls>(*shared_.tls);
    if (!c.tls->session.ok()) {
      LOG_WARN("tls: cannot allocate a session; closing the connection");
      c.tls.reset();
      BeginClosing(c, slot);
      ForceClose(c, slot);
      if (!accept_armed_[listener] && accept_retry_ms_ == 0) ArmAccept(listener);
      return;
    }
  }
  WatchHandshake(c, slot);
  ArmRecv(c, slot);
  if (!accept_armed_[listener] && accept_retry_ms_ == 0) ArmAccept(listener);
}

uint32_t Worker::AllocSlot() {
  if (!free_slots_.empty()) {
    uint32_t slot = free_slots_.back();
    free_slots_.pop_back();
    return slot;
  }
  conns_.emplace_back();
  return static_cast<uint32_t>(conns_.size() - 1);
}

Conn* Worker::Lookup(uint32_t slot, uint32_t gen) {
  if (slot >= conns_.size()) return nullptr;
  Conn& c = conns_[slot];
  if (c.state == ConnState::kFree || (c.gen & 0xffffff) != (gen & 0xffffff)) return nullptr;
  return &c;
}

void Worker::ArmRecv(Conn& c, uint32_t slot) {
  io_uring_sqe* sqe = ring_.GetSqe();
  if (shared_.features.multishot_recv) {
    io_uring_prep_recv_multishot(sqe, c.fd, nullptr, 0, 0);
  } else {
    io_uring_prep_recv(sqe, c.fd, nullptr, 0, 0);
  }
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = bufs_.group_id();
  io_uring_sqe_set_data64(sqe, ring::PackTag(ring::Op::kRecv, c.gen, slot));
  c.recv_armed = true;
  ++c.inflight_ops;
}

void Worker::OnRecv(uint32_t slot, uint32_t gen, io_uring_cqe* cqe) {
  bool has_buffer = cqe->flags & IORING_CQE_F_BUFFER;
  uint16_t bid = static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
  bool more = cqe->flags & IORING_CQE_F_MORE;
  Conn* c = slot < conns_.size() ? &conns_[slot] : nullptr;
  if (c && (c->gen & 0xffffff) != gen) c = nullptr;
  if (c && !more) {
    c->recv_armed = false;
    --c->inflight_ops;
  }
  if (cqe->res > 0 && has_buffer) {
    if (c && c->state != ConnState::kClosing && !c->reading_stopped) {
      counters_.data_rcvd_total.Add(static_cast<uint64_t>(cqe->res));
      if (c->tls) {
        OnTlsBytes(*c, slot, bufs_.Buffer(bid), static_cast<size_t>(cqe->res));
      } else {
        OnBytes(*c, slot, bufs_.Buffer(bid), static_cast<size_t>(cqe->res));
      }
    }
    // Hand the buffer back before leaving the handler: buffers are never held across an RPC.
    bufs_.Recycle(bid);
  } else if (has_buffer) {
    bufs_.Recycle(bid);
  }
  if (!c) return;
  if (c->state == ConnState::kFree) return;
  if (c->state == ConnState::kClosing) {
    MaybeFinishClose(*c, slot);
    return;
  }
  if (cqe->res == 0) {
    // Peer closed the TCP connection. In the middle of a TLS handshake that is a failed one
    // (a truncated ClientHello); a connection that sent nothing is just a probe.
    if (c->tls && c->tls->got_bytes && !c->tls->session.handshake_done()) {
      counters_.tls_errors_total.Add();
    }
    BeginClosing(*c, slot);
    ForceClose(*c, slot);
    return;
  }
  if (cqe->res < 0) {
    int err = -cqe->res;
    if (err == ENOBUFS || err == ECANCELED) {
      if (!c->recv_armed) rearm_.push_back(slot);
      return;
    }
    BeginClosing(*c, slot);
    ForceClose(*c, slot);
    return;
  }
  if (!more && !c->recv_armed) rearm_.push_back(slot);
}

void Worker::OnBytes(Conn& c, uint32_t slot, const char* data, size_t len) {
  if (c.state == ConnState::kHttp) {
    c.http->buf.append(data, len);
    OnHttpBytes(c, slot);
    return;
  }
  // SSE and long polling read nothing after their request (the session's commands came in it);
  // the receive stays armed only to notice the client going away.
  if (c.transport != Transport::kWs) return;
  cur_conn_ = &c;
  cur_slot_ = slot;
  c.reader.Feed(std::string_view(data, len), static_cast<size_t>(cfg_.max_message_size), *this);
  cur_conn_ = nullptr;
  // A close decided inside Feed could not free the slot then (the reader was running).
  if (c.state == ConnState::kClosing) MaybeFinishClose(c, slot);
}

void Worker::MarkDirty(Conn& c, uint32_t slot) {
  if (!c.dirty) {
    c.dirty = true;
    dirty_.push_back(slot);
  }
}

void Worker::Enqueue(Conn& c, uint32_t slot, hub::Frame* frame) {
  // A connection parked for a live upgrade is the new process's to write to.
  if (c.state == ConnState::kFree || (c.state == ConnState::kClosing && !c.close_after_flush) ||
      c.handover == 2) {
    return;
  }
  frame->Acquire(index_);
  c.sendq.push_back(frame);
  c.pending_bytes += frame->size();
  queued_bytes_ += frame->size();
  MarkDirty(c, slot);
  if (cfg_.ws_max_pending_size > 0 && c.state == ConnState::kOpen && !closing_slow_client_ &&
      c.pending_bytes > static_cast<uint64_t>(cfg_.ws_max_pending_size)) {
    counters_.disconnected_slow_clients_total.Add();
    LOG_DEBUG("sid=%s closing slow client: %llu bytes pending",
              c.session ? c.session->sid.c_str() : "-",
              static_cast<unsigned long long>(c.pending_bytes));
    DropUnsentFrames(c);
    // The farewell frames themselves are exempt from the limit (else they would re-enter here).
    closing_slow_client_ = true;
    CloseWithDisconnect(c, slot, "too_slow", true, ws::close_code::kNormal, "");
    closing_slow_client_ = false;
  }
}

void Worker::EnqueueRaw(Conn& c, uint32_t slot, std::string_view bytes) {
  hub::Frame* f = hub::Frame::NewLocal(bytes.size());
  std::memcpy(f->data(), bytes.data(), bytes.size());
  Enqueue(c, slot, f);
  f->ReleaseCreator();
}

void Worker::DropUnsentFrames(Conn& c) {
  // Frames covered by the in-flight send stay: the kernel may be reading them.
  size_t keep = c.sendq_head + (c.send_inflight ? send_ops_[c.send_op]->frames : 0);
  // Ciphertext already made belongs to the TLS record stream: dropping it would corrupt what
  // follows (the farewell frames of a slow client).
  if (c.tls) keep = std::max(keep, c.sendq_head + static_cast<size_t>(c.tls->cipher_frames));
  for (size_t i = keep; i < c.sendq.size(); ++i) {
    c.pending_bytes -= c.sendq[i]->size();
    queued_bytes_ -= c.sendq[i]->size();
    c.sendq[i]->Release(index_);
  }
  c.sendq.resize(keep);
}

void Worker::FlushSends() {
  // Index loop: StartSend may not add to dirty_, but closing paths might.
  for (size_t i = 0; i < dirty_.size(); ++i) {
    uint32_t slot = dirty_[i];
    Conn& c = conns_[slot];
    c.dirty = false;
    if (c.state == ConnState::kFree) continue;
    if (c.hold_output) {
      if (c.transport == Transport::kPoll)
        PollDirty(c, slot);  // answered by the session's poll request
      continue;
    }
    if (!c.send_inflight && c.sendq_head < c.sendq.size()) StartSend(c, slot);
  }
  dirty_.clear();
}

void Worker::StartSend(Conn& c, uint32_t slot) {
  // TLS: only ciphertext goes to the socket; encrypt the plaintext queued behind it first.
  uint32_t sendable = UINT32_MAX;
  if (c.tls) {
    TlsEncryptQueued(c);
    sendable = c.tls->cipher_frames;
    if (sendable == 0) return;
  }
  uint32_t op_index;
  if (!free_send_ops_.empty()) {
    op_index = free_send_ops_.back();
    free_send_ops_.pop_back();
  } else {
    send_ops_.push_back(std::make_unique<SendOp>());
    op_index = static_cast<uint32_t>(send_ops_.size() - 1);
  }
  SendOp& op = *send_ops_[op_index];
  op.conn_slot = slot;
  op.conn_gen = c.gen;
  uint32_t n = 0;
  for (size_t i = c.sendq_head; i < c.sendq.size() && n < 64 && n < sendable; ++i, ++n) {
    hub::Frame* f = c.sendq[i];
    size_t off = (n == 0) ? c.head_offset : 0;
    op.iov[n].iov_base = f->data() + off;
    op.iov[n].iov_len = f->size() - off;
  }
  op.frames = n;
  io_uring_sqe* sqe = ring_.GetSqe();
  if (n == 1) {
    // One frame (the common case of a fan-out): a plain send skips the kernel's msghdr and
    // iovec import that SENDMSG pays for.
    io_uring_prep_send(sqe, c.fd, op.iov[0].iov_base, op.iov[0].iov_len, MSG_NOSIGNAL);
  } else {
    std::memset(&op.msg, 0, sizeof(op.msg));
    op.msg.msg_iov = op.iov;
    op.msg.msg_iovlen = n;
    io_uring_prep_sendmsg(sqe, c.fd, &op.msg, MSG_NOSIGNAL);
  }
  io_uring_sqe_set_data64(sqe, ring::PackTag(ring::Op::kSend, c.gen, op_index));
  c.send_inflight = true;
  c.send_op = op_index;
  c.send_started_ms = now_ms_;
  ++c.inflight_ops;
}

void Worker::OnSend(uint32_t op_index, io_uring_cqe* cqe) {
  SendOp& op = *send_ops_[op_index];
  Conn& c = conns_[op.conn_slot];
  uint32_t slot = op.conn_slot;
  free_send_ops_.push_back(op_index);
  c.send_inflight = false;
  c.send_op = kNil;
  --c.inflight_ops;
  if (cqe->res < 0) {
    // EPIPE, ECONNRESET, ...: the peer is gone.
    if (c.state != ConnState::kClosing) BeginClosing(c, slot);
    ForceClose(c, slot);
    return;
  }
  size_t sent = static_cast<size_t>(cqe->res);
  counters_.data_sent_total.Add(sent);
  c.pending_bytes -= sent;
  queued_bytes_ -= sent;
  while (sent > 0 && c.sendq_head < c.sendq.size()) {
    hub::Frame* f = c.sendq[c.sendq_head];
    size_t left = f->size() - c.head_offset;
    if (sent >= left) {
      sent -= left;
      c.head_offset = 0;
      f->Release(index_);
      ++c.sendq_head;
      if (c.tls) --c.tls->cipher_frames;
    } else {
      c.head_offset += static_cast<uint32_t>(sent);
      sent = 0;
    }
  }
  if (c.sendq_head == c.sendq.size()) {
    std::vector<hub::Frame*>().swap(c.sendq);  // idle connections keep no queue memory
    c.sendq_head = 0;
  } else if (c.sendq_head > 64 && c.sendq_head * 2 > c.sendq.size()) {
    c.sendq.erase(c.sendq.begin(), c.sendq.begin() + c.sendq_head);
    c.sendq_head = 0;
  }
  if (c.sendq_head < c.sendq.size()) {
    MarkDirty(c, slot);
  } else if (c.state == ConnState::kClosing) {
    MaybeFinishClose(c, slot);
  } else if (c.state == ConnState::kHttp && !c.keep_alive) {
    BeginClosing(c, slot);
    if (!c.tls) ForceClose(c, slot);  // TLS: close_notify first (MaybeFinishClose)
  } else if (c.state == ConnState::kHttp && c.http && c.http->sse_deferred) {
    c.http->sse_deferred = false;
    OnHttpBytes(c, slot);  // the SSE request that waited for this answer to go out
  }
}

void Worker::PauseReading(Conn& c, uint32_t slot) {
  if (c.read_paused) return;
  c.read_paused = true;
  if (c.recv_armed) {
    io_uring_sqe* sqe = ring_.GetSqe();
    io_uring_prep_cancel64(sqe, ring::PackTag(ring::Op::kRecv, c.gen, slot), 0);
    io_uring_sqe_set_data64(sqe, ring::PackTag(ring::Op::kCancel, 0, 0));
  }
}

void Worker::MaybeResumeReading(Conn& c, uint32_t slot) {
  if (!c.read_paused || !c.session || c.session->pending_bytes > kMaxPendingInput / 2) return;
  c.read_paused = false;
  if (!c.recv_armed) rearm_.push_back(slot);
}

void Worker::BeginClosing(Conn& c, uint32_t slot) {
  if (c.state == ConnState::kClosing || c.state == ConnState::kFree) return;
  if (c.handover == 2) return;  // parked for a live upgrade: its socket is not ours to end
  bool was_ws = c.state == ConnState::kOpen || c.state == ConnState::kConnecting;
  c.state = ConnState::kClosing;
  c.close_after_flush = true;
  c.close_deadline_ms = now_ms_ + static_cast<int64_t>(cfg_.ws_write_timeout_s) * 1000;
  if (!c.closing_listed) {
    c.closing_listed = true;
    closing_.push_back(slot);
  }
  PingWheelRemove(c);
  if (was_ws) counters_.clients_num.Add(c.session && c.session->authenticated ? -1 : 0);
  if (was_ws && c.transport == Transport::kSse) counters_.sse_clients_num.Add(-1);
  if (was_ws && c.transport == Transport::kPoll) counters_.long_poll_clients_num.Add(-1);
  if (c.session) {
    Session& s = *c.session;
    if (s.presence_joined && shared_.presence) {
      // Its records stay for --presence_ttl: a restore within it keeps them without events.
      // Marked before the session is committed, so a restore that takes it finds them marked.
      shared_.presence->Disconnect(s.sid, static_cast<int64_t>(std::time(nullptr)));
      s.presence_joined = false;
    } else if (s.presence_joined && RemotePresence()) {
      // The store keeps its records for --presence_ttl from now (any node may restore them).
      shared_.remote_broker->PresenceTouch({s.sid});
      s.presence_joined = false;
    }
    if (was_ws && s.authenticated) CommitSessionForRestore(c);
    for (auto& sub : s.subs) index_map_.RemoveAll(&sub->sub);
    if (s.inflight) {
      // A Connect is left to finish (its deadline bounds it): cancelling it would not undo the
      // app's side of it, and if the app accepts the connection it is owed a Disconnect, which
      // ProcessInbox queues for the orphaned result (anycable-go never abandons a Connect).
      if (s.inflight->kind != rpc::CallKind::kConnect) shared_.rpc->Cancel(s.inflight);
      s.inflight.reset();
    }
    QueueDisconnectRpc(c);
    s.pending.clear();
    s.pending_head = 0;
    s.pending_bytes = 0;
  }
  // Stop reading: nothing the peer sends now matters.
  if (c.recv_armed) {
    io_uring_sqe* sqe = ring_.GetSqe();
    io_uring_prep_cancel64(sqe, ring::PackTag(ring::Op::kRecv, c.gen, slot), 0);
    io_uring_sqe_set_data64(sqe, ring::PackTag(ring::Op::kCancel, 0, 0));
  }
  MaybeFinishClose(c, slot);
}

void Worker::ForceClose(Conn& c, uint32_t slot) {
  if (c.handover == 2) return;  // parked for a live upgrade (see BeginClosing)
  DropUnsentFrames(c);
  c.close_after_flush = false;
  if (c.fd >= 0) shutdown(c.fd, SHUT_RDWR);  // completes any pending recv/send on the socket
  MaybeFinishClose(c, slot);
}

void Worker::MaybeFinishClose(Conn& c, uint32_t slot) {
  if (c.state != ConnState::kClosing) return;
  if (cur_conn_ == &c) return;  // inside c.reader.Feed(): OnBytes finishes the close afterwards
  if (c.close_after_flush && c.sendq_head < c.sendq.size()) return;  // still flushing
  if (c.close_after_flush) {
    if (c.tls && TlsShutdown(c, slot)) return;  // close_notify goes out last
    c.close_after_flush = false;
    if (c.fd >= 0) shutdown(c.fd, SHUT_RDWR);
  }
  if (c.inflight_ops > 0) return;  // wait for the kernel to hand back every operation
  FreeSlot(c, slot);
}

void Worker::FreeSlot(Conn& c, uint32_t slot) {
  queued_bytes_ -= c.pending_bytes;
  if (PollState* ps = c.poll_state()) polls_.erase(ps->id);
  if (c.fd >= 0) close(c.fd);
  for (size_t i = c.sendq_head; i < c.sendq.size(); ++i) c.sendq[i]->Release(index_);
  if (c.session && !pending_history_.empty()) {
    for (const auto& sub : c.session->subs) ForgetPendingHistory(&sub->sub);
  }
  uint32_t gen = c.gen + 1;
  c.~Conn();
  new (&c) Conn();
  c.gen = gen;
  free_slots_.push_back(slot);
  --live_conns_;
  if (!stopping_ && accept_retry_ms_ == 0) {
    for (int l = 0; l < kListenerCount; ++l) ArmAccept(l);
  }
}

void Worker::OnRpcDone(rpc::CallPtr call) {
  InboxItem* item = new InboxItem();
  item->kind = InboxItem::Kind::kRpcDone;
  item->call = std::move(call);
  inbox_.Push(item);
  // The wake-up waits for OnRpcBatchEnd: one per dispatcher batch, not one per call.
}

void Worker::OnRpcBatchEnd() { WakeIfSleeping(); }

void Worker::SubmitRpc(rpc::CallPtr call) {
  // The dispatcher is rung once per loop turn (Loop), not once per call.
  shared_.rpc->SubmitDeferred(std::move(call), this);
  rpc_unflushed_ = true;
}

void Worker::OnClusterAck(uint64_t token, bool ok) {
  InboxItem* item = new InboxItem();
  item->kind = InboxItem::Kind::kClusterAck;
  item->token = token;
  item->ok = ok;
  inbox_.Push(item);
  WakeIfSleeping();
}

void Worker::OnStreamChange(const std::string& stream, bool up) {
  if (up) {
    shared_.cluster->StreamUp(stream);
  } else {
    shared_.cluster->StreamDown(stream);
  }
}

void Worker::RequestShutdown() {
  InboxItem* item = new InboxItem();
  item->kind = InboxItem::Kind::kShutdown;
  inbox_.Push(item);
  Wake();
}

void Worker::Wake() {
  Worker* caller = t_current_worker;
  if (caller && caller != this && shared_.features.msg_ring &&
      ring_ready_.load(std::memory_order_acquire)) {
    // Ring-to-ring doorbell: rides on the caller's next submit, no extra syscall.
    io_uring_sqe* sqe = caller->ring_.GetSqe();
    io_uring_prep_msg_ring(sqe, ring_.fd(), 0, ring::PackTag(ring::Op::kMsgRing, 0, 0), 0);
    io_uring_sqe_set_data64(
        sqe, ring::PackTag(ring::Op::kMsgRingSent, 0, static_cast<uint32_t>(index_)));
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    return;
  }
  eventfd_write(event_fd_, 1);
}

void Worker::NotifyWorkers() {
  notify_pending_ = false;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  for (auto& w : shared_.workers) {
    if (w.get() == this) continue;
    if (w->sleeping_.load(std::memory_order_relaxed) && w->sleeping_.exchange(false)) w->Wake();
  }
}

std::string Worker::NewSid() {
  // The kernel CSPRNG: with session restore a sid is a bearer token (spec §5 item 39).
  return hub::RandomId(21);
}

}  // namespace cable::server
