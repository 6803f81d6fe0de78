#include "rpc/client.h"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include <absl/synchronization/mutex.h>
#include <grpcpp/create_channel.h>

#include "common/log.h"
#include "rpc.grpc.pb.h"
#include "rpc/channel_config.h"

namespace cable::rpc {

using Clock = std::chrono::steady_clock;
using internal::CallNode;
using internal::CallState;
using internal::EventType;

namespace {

// anycable-go rpc/rpc.go: retryExhaustedInterval / retryUnavailableInterval.
constexpr int kExhaustedBackoffMs = 10;
constexpr int kUnavailableBackoffMs = 100;
constexpr int kMaxBackoffStep = 16;  // 100 ms << 16 is far beyond any sane command timeout
constexpr const char* kProtoVersion = "v1";

const char* KindName(CallKind kind) {
  switch (kind) {
    case CallKind::kConnect:
      return "Connect";
    case CallKind::kCommand:
      return "Command";
    case CallKind::kDisconnect:
      return "Disconnect";
  }
  return "?";
}

}  // namespace

// Owns the queue, the gate, the timers and the channels. Everything not atomic is touched only by
// the dispatcher thread (Run and the functions it calls).
class Dispatcher {
 public:
  Dispatcher(const Options& options, std::vector<std::unique_ptr<anycable::RPC::Stub>> stubs,
             int event_fd)
      : options_(options), stubs_(std::move(stubs)), event_fd_(event_fd) {
    capacity_ = options_.concurrency;
  }

  ~Dispatcher() {
    Shutdown(std::chrono::milliseconds(0));
    stubs_.clear();
    close(event_fd_);
  }

  void Start() {
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "rpc-dispatch");
      Run();
    });
  }

  void Submit(CallPtr call, CompletionSink* sink) {
    Call* c = call.get();
    producers_.fetch_add(1, std::memory_order_seq_cst);
    if (!accepting_.load(std::memory_order_seq_cst)) {
      producers_.fetch_sub(1, std::memory_order_seq_cst);
      c->outcome = Outcome::kError;
      c->grpc_code = grpc::StatusCode::UNAVAILABLE;
      c->error_message = "rpc client is shut down";
      sink->OnRpcDone(std::move(call));
      return;
    }
    c->internal_.sink = sink;
    c->internal_.self = std::move(call);
    c->internal_.event = EventType::kSubmit;
    c->internal_.event_node.call = c;
    c->internal_.event_node.is_cancel = false;
    PushAndWake(&c->internal_.event_node);
    producers_.fetch_sub(1, std::memory_order_seq_cst);
  }

  void Cancel(const CallPtr& call) {
    Call* c = call.get();
    producers_.fetch_add(1, std::memory_order_seq_cst);
    // exiting_ is set once nothing is live, so there is nothing left to cancel.
    if (exiting_.load(std::memory_order_seq_cst) ||
        c->internal_.cancel_requested.exchange(true, std::memory_order_acq_rel)) {
      producers_.fetch_sub(1, std::memory_order_seq_cst);
      return;
    }
    c->internal_.cancel_self = call;
    c->internal_.cancel_node.call = c;
    c->internal_.cancel_node.is_cancel = true;
    PushAndWake(&c->internal_.cancel_node);
    producers_.fetch_sub(1, std::memory_order_seq_cst);
  }

  void Shutdown(std::chrono::milliseconds grace) {
    std::lock_guard<std::mutex> lock(shutdown_mu_);
    if (!thread_.joinable()) return;
    accepting_.store(false, std::memory_order_seq_cst);
    grace_deadline_ns_.store((Clock::now() + grace).time_since_epoch().count(),
                             std::memory_order_relaxed);
    stop_requested_.store(true, std::memory_order_seq_cst);
    eventfd_write(event_fd_, 1);
    thread_.join();
  }

  Stats stats_;

 private:
  // gRPC callback thread: record the status and hand the call back.
  void OnAttemptDone(Call* c, const grpc::Status& status) {
    producers_.fetch_add(1, std::memory_order_seq_cst);
    c->internal_.status_code = status.error_code();
    c->internal_.status_message = status.error_message();
    c->internal_.event = EventType::kAttemptDone;
    c->internal_.event_node.call = c;
    c->internal_.event_node.is_cancel = false;
    PushAndWake(&c->internal_.event_node);
    producers_.fetch_sub(1, std::memory_order_seq_cst);
  }

  void PushAndWake(MpscNode* node) {
    queue_.Push(node);
    // Pairs with Run(): it sets sleeping_ and then re-checks the queue, so either it sees this
    // node or this thread sees sleeping_ and pays for the eventfd write (only then).
    if (sleeping_.load(std::memory_order_seq_cst) &&
        sleeping_.exchange(false, std::memory_order_seq_cst)) {
      eventfd_write(event_fd_, 1);
    }
  }

  void Run() {
    bool grace_expired = false;
    while (true) {
      Drain();
      FireTimers(Clock::now());
      StartWaiting();

      int timeout_ms = -1;
      if (stop_requested_.load(std::memory_order_seq_cst)) {
        Clock::time_point grace_end{Clock::duration(grace_deadline_ns_.load())};
        if (!grace_expired && Clock::now() >= grace_end) {
          grace_expired = true;
          cancel_all_ = true;
          CancelAll();
          continue;
        }
        if (live_ == 0 && queue_.Empty()) {
          exiting_.store(true, std::memory_order_seq_cst);
          if (producers_.load(std::memory_order_seq_cst) == 0 && queue_.Empty()) break;
          timeout_ms = 1;  // a producer is between its push and its return
        } else if (!grace_expired) {
          timeout_ms = MsUntil(grace_end);
        }
      }
      if (!timers_.empty()) {
        int t = MsUntil(timers_.begin()->first);
        timeout_ms = timeout_ms < 0 ? t : std::min(timeout_ms, t);
      }

      sleeping_.store(true, std::memory_order_seq_cst);
      if (!queue_.Empty()) {
        sleeping_.store(false, std::memory_order_relaxed);
        continue;
      }
      pollfd pfd{event_fd_, POLLIN, 0};
      int rc = poll(&pfd, 1, timeout_ms);
      sleeping_.store(false, std::memory_order_seq_cst);
      if (rc > 0) {
        eventfd_t value;
        eventfd_read(event_fd_, &value);
      } else if (rc < 0 && errno != EINTR) {
        LOG_ERROR("rpc: poll on eventfd failed: %s", std::strerror(errno));
      }
    }
  }

  static int MsUntil(Clock::time_point t) {
    auto d = t - Clock::now();
    if (d <= Clock::duration::zero()) return 0;
    // Round up so a timer is never polled for early and then spun on.
    return static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(d).count());
  }

  void Drain() {
    while (MpscNode* node = queue_.Pop()) {
      auto* cn = static_cast<CallNode*>(node);
      Call* c = cn->call;
      if (cn->is_cancel) {
        HandleCancel(c);
      } else if (c->internal_.event == EventType::kSubmit) {
        HandleSubmit(c);
      } else {
        HandleAttemptDone(c);
      }
    }
  }

  void HandleSubmit(Call* c) {
    ++live_;
    active_.insert(c);
    stats_.calls.fetch_add(1, std::memory_order_relaxed);
    if (cancel_all_ || c->internal_.cancel_requested.load(std::memory_order_acquire)) {
      Complete(c, Outcome::kCanceled);
      return;
    }
    c->internal_.state = CallState::kWaiting;
    c->internal_.waiting_pos = waiting_.insert(waiting_.end(), c);
    stats_.pending.fetch_add(1, std::memory_order_relaxed);
  }

  // Cancellation requested by Cancel() (the node holds a reference) or by the shutdown sweep.
  void HandleCancel(Call* c) {
    CallPtr keep = std::move(c->internal_.cancel_self);
    CancelNow(c);
  }

  void CancelNow(Call* c) {
    switch (c->internal_.state) {
      case CallState::kNew:  // its submit is still queued; HandleSubmit sees the flag
      case CallState::kDone:
        break;
      case CallState::kWaiting:
        waiting_.erase(c->internal_.waiting_pos);
        stats_.pending.fetch_sub(1, std::memory_order_relaxed);
        Complete(c, Outcome::kCanceled);
        break;
      case CallState::kInFlight:
        c->internal_.context->TryCancel();  // the attempt completes with CANCELLED (or OK)
        break;
      case CallState::kBackoff:
        timers_.erase(c->internal_.timer_pos);
        --in_use_;
        Complete(c, Outcome::kCanceled);
        break;
    }
  }

  void CancelAll() {
    std::vector<Call*> calls(active_.begin(), active_.end());
    for (Call* c : calls) {
      c->internal_.cancel_requested.store(true, std::memory_order_release);
      CancelNow(c);
    }
  }

  void StartWaiting() {
    while (in_use_ < capacity_ && !waiting_.empty()) {
      Call* c = waiting_.front();
      waiting_.pop_front();
      stats_.pending.fetch_sub(1, std::memory_order_relaxed);
      ++in_use_;
      c->internal_.first_attempt = Clock::now();
      StartAttempt(c);
    }
  }

  void FireTimers(Clock::time_point now) {
    while (!timers_.empty() && timers_.begin()->first <= now) {
      Call* c = timers_.begin()->second;
      timers_.erase(timers_.begin());
      StartAttempt(c);
    }
  }

  void StartAttempt(Call* c) {
    auto& in = c->internal_;
    in.state = CallState::kInFlight;
    ++c->attempts;
    in.context = std::make_unique<grpc::ClientContext>();
    in.context->AddMetadata("sid", c->sid);
    in.context->AddMetadata("protov", kProtoVersion);
    Clock::time_point deadline =
        options_.request_timeout_ms > 0
            ? Clock::now() + std::chrono::milliseconds(options_.request_timeout_ms)
            : in.first_attempt + std::chrono::milliseconds(options_.command_timeout_ms);
    // gRPC takes only system_clock deadlines; the retry budget itself is kept on steady_clock.
    in.context->set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::duration_cast<std::chrono::system_clock::duration>(deadline - Clock::now()));
    anycable::RPC::Stub* stub = stubs_[next_stub_++ % stubs_.size()].get();
    auto done = [this, c](grpc::Status status) { OnAttemptDone(c, status); };
    switch (c->kind) {
      case CallKind::kConnect:
        c->connect_response.Clear();
        stub->async()->Connect(in.context.get(), &c->connect_request, &c->connect_response,
                               std::move(done));
        break;
      case CallKind::kCommand:
        c->command_response.Clear();
        stub->async()->Command(in.context.get(), &c->command_request, &c->command_response,
                               std::move(done));
        break;
      case CallKind::kDisconnect:
        c->disconnect_response.Clear();
        stub->async()->Disconnect(in.context.get(), &c->disconnect_request, &c->disconnect_response,
                                  std::move(done));
        break;
    }
  }

  void HandleAttemptDone(Call* c) {
    auto& in = c->internal_;
    in.context.reset();
    c->grpc_code = in.status_code;
    c->error_message = std::move(in.status_message);
    const auto code = static_cast<grpc::StatusCode>(in.status_code);
    if (code == grpc::StatusCode::OK) {
      --in_use_;
      Complete(c, Outcome::kOk);
      return;
    }
    if (in.cancel_requested.load(std::memory_order_acquire)) {
      --in_use_;
      Complete(c, Outcome::kCanceled);
      return;
    }
    if (code == grpc::StatusCode::DEADLINE_EXCEEDED) {
      stats_.timeouts.fetch_add(1, std::memory_order_relaxed);
      Fail(c);
      return;
    }
    if (code != grpc::StatusCode::UNAVAILABLE && code != grpc::StatusCode::RESOURCE_EXHAUSTED) {
      Fail(c);
      return;
    }
    // anycable-go restarts the exponent whenever the failure kind switches.
    const bool exhausted = code == grpc::StatusCode::RESOURCE_EXHAUSTED;
    if (exhausted != in.last_was_exhausted) {
      in.backoff_step = 0;
      in.last_was_exhausted = exhausted;
    }
    const int base = exhausted ? kExhaustedBackoffMs : kUnavailableBackoffMs;
    const auto delay = std::chrono::milliseconds(static_cast<int64_t>(base)
                                                 << std::min(in.backoff_step, kMaxBackoffStep));
    ++in.backoff_step;
    const Clock::time_point retry_at = Clock::now() + delay;
    if (retry_at >= in.first_attempt + std::chrono::milliseconds(options_.command_timeout_ms)) {
      LOG_DEBUG("rpc: %s gave up after %d attempts sid=%s code=%d: %s", KindName(c->kind),
                c->attempts, c->sid.c_str(), c->grpc_code, c->error_message.c_str());
      Fail(c);
      return;
    }
    LOG_DEBUG("rpc: %s retry in %lld ms sid=%s code=%d: %s", KindName(c->kind),
              static_cast<long long>(delay.count()), c->sid.c_str(), c->grpc_code,
              c->error_message.c_str());
    stats_.retries.fetch_add(1, std::memory_order_relaxed);
    in.state = CallState::kBackoff;  // keeps its slot, as anycable-go holds the barrier
    in.timer_pos = timers_.emplace(retry_at, c);
  }

  void Fail(Call* c) {
    --in_use_;
    stats_.errors.fetch_add(1, std::memory_order_relaxed);
    Complete(c, Outcome::kError);
  }

  void Complete(Call* c, Outcome outcome) {
    auto& in = c->internal_;
    in.state = CallState::kDone;
    in.context.reset();
    c->outcome = outcome;
    if (outcome == Outcome::kCanceled) {
      stats_.canceled.fetch_add(1, std::memory_order_relaxed);
      c->grpc_code = grpc::StatusCode::CANCELLED;
      if (c->error_message.empty()) c->error_message = "canceled";
    }
    active_.erase(c);
    --live_;
    CompletionSink* sink = in.sink;
    sink->OnRpcDone(std::move(in.self));
  }

  const Options options_;
  std::vector<std::unique_ptr<anycable::RPC::Stub>> stubs_;
  const int event_fd_;
  std::thread thread_;
  std::mutex shutdown_mu_;  // only serializes Shutdown callers; never on the call path

  MpscQueue queue_;
  alignas(64) std::atomic<bool> sleeping_{false};
  std::atomic<int> producers_{0};  // threads between "may push" and "done waking"
  std::atomic<bool> accepting_{true};
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> exiting_{false};
  std::atomic<Clock::rep> grace_deadline_ns_{0};

  // Dispatcher thread only.
  int capacity_ = kDefaultConcurrency;
  int in_use_ = 0;  // slots held: in flight or backing off
  size_t live_ = 0;
  size_t next_stub_ = 0;
  bool cancel_all_ = false;
  std::list<Call*> waiting_;
  std::multimap<Clock::time_point, Call*> timers_;
  std::unordered_set<Call*> active_;
};

cable::Result<std::unique_ptr<Client>, std::string> Client::Create(const Options& input) {
  // Debian's abseil is built without NDEBUG, so every absl::Mutex gRPC takes also runs the
  // deadlock detector (GraphCycles): ~3 % of the server's CPU per connect in a profile. gRPC's
  // locking is not ours to debug in production.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  Options options = input;
  if (options.concurrency <= 0) options.concurrency = kDefaultConcurrency;
  if (options.request_timeout_ms < 0) {
    return cable::MakeError("rpc_request_timeout must be >= 0, got " +
                            std::to_string(options.request_timeout_ms));
  }
  if (options.command_timeout_ms <= 0) {
    return cable::MakeError("rpc_command_timeout must be > 0, got " +
                            std::to_string(options.command_timeout_ms));
  }
  if (options.max_recv_size < 0) {
    return cable::MakeError("rpc_max_call_recv_size must be >= 0, got " +
                            std::to_string(options.max_recv_size));
  }
  if (options.max_send_size < 0) {
    return cable::MakeError("rpc_max_call_send_size must be >= 0, got " +
                            std::to_string(options.max_send_size));
  }
  auto target = ResolveTarget(options.host);
  if (!target.ok()) return cable::MakeError(target.error());
  auto creds = BuildCredentials(options);
  if (!creds.ok()) return cable::MakeError(creds.error());
  grpc::ChannelArguments args = ToGrpcArguments(BuildChannelArgs(options));

  const int channels = ChannelCount(options.concurrency);
  std::vector<std::unique_ptr<anycable::RPC::Stub>> stubs;
  for (int i = 0; i < channels; ++i) {
    stubs.push_back(
        anycable::RPC::NewStub(grpc::CreateCustomChannel(target.value(), creds.value(), args)));
  }
  int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return cable::MakeError(std::string("rpc: eventfd: ") + std::strerror(errno));

  auto dispatcher = std::make_unique<Dispatcher>(options, std::move(stubs), efd);
  dispatcher->Start();
  LOG_INFO("RPC client initialized: %s (target %s, concurrency: %d, channels: %d, tls: %s)",
           options.host.c_str(), target.value().c_str(), options.concurrency, channels,
           options.enable_tls ? (options.tls_verify ? "verify" : "no-verify") : "off");
  return std::unique_ptr<Client>(new Client(std::move(dispatcher)));
}

Client::Client(std::unique_ptr<Dispatcher> dispatcher) : dispatcher_(std::move(dispatcher)) {}

Client::~Client() = default;  // ~Dispatcher shuts down with no grace

void Client::Submit(CallPtr call, CompletionSink* sink) {
  if (call == nullptr || sink == nullptr) {
    LOG_ERROR("rpc: Submit without a call or a sink");
    return;
  }
  dispatcher_->Submit(std::move(call), sink);
}

void Client::Cancel(const CallPtr& call) {
  if (call != nullptr) dispatcher_->Cancel(call);
}

void Client::Shutdown(std::chrono::milliseconds grace) { dispatcher_->Shutdown(grace); }

const Stats& Client::stats() const { return dispatcher_->stats_; }

}  // namespace cable::rpc
