#include "rpc/client.h"

#include <pthread.h>

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
#include <grpcpp/alarm.h>
#include <grpcpp/channel.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/create_channel.h>

#include "common/log.h"
#include "rpc.grpc.pb.h"
#include "rpc/channel_config.h"
#include "rpc/http_codec.h"
#include "rpc/http_transport.h"

namespace cable::rpc {

using Clock = std::chrono::steady_clock;
using internal::CallNode;
using internal::CallState;

namespace {

// anycable-go rpc/rpc.go: retryExhaustedInterval / retryUnavailableInterval.
constexpr int kExhaustedBackoffMs = 10;
constexpr int kUnavailableBackoffMs = 100;
constexpr int kMaxBackoffStep = 16;  // 100 ms << 16 is far beyond any sane command timeout
// While calls wait for a connection, a channel in reconnect backoff is told to try again this
// often: a restarted RPC server is found within this time, not after gRPC's backoff (up to
// kMaxReconnectBackoffMs).
constexpr int kReconnectPokeMs = 200;
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

// Owns the queue, the gate, the timers and one transport: gRPC (the channels and the completion
// queue) or HTTP (http_, when rpc_host is an http(s):// URL; it then sleeps in libcurl instead of
// the completion queue). Everything not atomic is touched only by the dispatcher thread (Run and
// the functions it calls), except wake_alarm_ / http_->Wake(), which the one producer that takes
// sleeping_ uses (see PushAndWake).
class Dispatcher {
 public:
  Dispatcher(const Options& options, std::vector<std::shared_ptr<grpc::Channel>> channels)
      : options_(options), channels_(std::move(channels)) {
    for (const auto& ch : channels_) stubs_.push_back(anycable::RPC::NewStub(ch));
    capacity_ = options_.concurrency;
  }
  Dispatcher(const Options& options, std::unique_ptr<HttpTransport> http)
      : options_(options), http_(std::move(http)) {
    capacity_ = options_.concurrency;
  }

  ~Dispatcher() {
    Shutdown(std::chrono::milliseconds(0));
    stubs_.clear();
  }

  void Start() {
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "rpc-dispatch");
      Run();
    });
  }

  void Submit(CallPtr call, CompletionSink* sink, bool wake) {
    Call* c = call.get();
    producers_.fetch_add(1, std::memory_order_seq_cst);
    if (!accepting_.load(std::memory_order_seq_cst)) {
      producers_.fetch_sub(1, std::memory_order_seq_cst);
      c->outcome = Outcome::kError;
      c->grpc_code = grpc::StatusCode::UNAVAILABLE;
      c->error_message = "rpc client is shut down";
      sink->OnRpcDone(std::move(call));
      sink->OnRpcBatchEnd();
      return;
    }
    c->internal_.sink = sink;
    c->internal_.self = std::move(call);
    c->internal_.submit_node.call = c;
    c->internal_.submit_node.is_cancel = false;
    if (wake) {
      PushAndWake(&c->internal_.submit_node);
    } else {
      queue_.Push(&c->internal_.submit_node);
    }
    producers_.fetch_sub(1, std::memory_order_seq_cst);
  }

  void Flush() {
    producers_.fetch_add(1, std::memory_order_seq_cst);
    if (!exiting_.load(std::memory_order_seq_cst)) Wake();
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
    Flush();
    thread_.join();
  }

  Stats stats_;

 private:
  void PushAndWake(MpscNode* node) {
    queue_.Push(node);
    Wake();
  }

  // Pairs with Run(): it sets sleeping_ and then re-checks the queue and the stop flag, so either
  // it sees this thread's work or this thread takes sleeping_ and rings the alarm (only then).
  // Only the taker rings, and Run() sets sleeping_ again only after that ring has come back, so
  // the alarm is never set twice at once.
  void Wake() {
    if (sleeping_.load(std::memory_order_seq_cst) &&
        sleeping_.exchange(false, std::memory_order_seq_cst)) {
      if (http_) {
        http_->Wake();  // libcurl's wakeup may be rung any number of times
        return;
      }
      // A deadline already in the past fires inline, on this thread; "now" would go through
      // gRPC's timer thread (one more thread hop per wake-up).
      wake_alarm_.Set(&cq_, gpr_time_0(GPR_CLOCK_MONOTONIC), &wake_alarm_);
    }
  }

  // Takes sleeping_ back after a wait; if a producer took it first, its alarm is owed to us.
  void StopSleeping() {
    if (!sleeping_.exchange(false, std::memory_order_seq_cst) && !http_) wake_owed_ = true;
  }

  void Run() {
    bool grace_expired = false;
    while (true) {
      Drain();
      FireTimers(Clock::now());
      StartWaiting();

      int timeout_ms = -1;
      const bool stop_seen = stop_requested_.load(std::memory_order_seq_cst);
      if (stop_seen) {
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
      if (in_use_ > 0 && !http_) {  // gRPC only: HTTP has no channel to poke
        PokeReconnects();
        int t = MsUntil(next_poke_);
        timeout_ms = timeout_ms < 0 ? t : std::min(timeout_ms, t);
      }

      EndSinkBatches();
      bool slept = false;
      if (!wake_owed_) {
        sleeping_.store(true, std::memory_order_seq_cst);
        if (!queue_.Empty() || (!stop_seen && stop_requested_.load(std::memory_order_seq_cst))) {
          StopSleeping();
          continue;
        }
        slept = true;
      }
      if (http_) {
        http_finished_.clear();
        http_->Wait(timeout_ms, &http_finished_);
        if (slept) StopSleeping();
        for (HttpTransport::Finished& f : http_finished_) {
          f.call->internal_.status = std::move(f.status);
          HandleAttemptDone(f.call);
        }
        continue;
      }
      // With an alarm owed the wait ends when it rings (or on a response / timer) anyway.
      const gpr_timespec deadline =
          timeout_ms < 0 ? gpr_inf_future(GPR_CLOCK_MONOTONIC)
                         : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                        gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
      void* tag = nullptr;
      bool ok = false;
      grpc::CompletionQueue::NextStatus st = cq_.AsyncNext(&tag, &ok, deadline);
      if (slept) StopSleeping();
      // Take every completion already there before looking at the queue again.
      while (st == grpc::CompletionQueue::GOT_EVENT) {
        OnCompletion(tag);
        st = cq_.AsyncNext(&tag, &ok, gpr_time_0(GPR_CLOCK_MONOTONIC));
      }
    }
    EndSinkBatches();
    // Nothing is in flight and no producer is left: only an owed alarm can still come back.
    cq_.Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (cq_.Next(&tag, &ok)) {
    }
  }

  // Calls wait for a connection (wait-for-ready) instead of failing fast while the RPC server is
  // unreachable. gRPC retries connecting on its own backoff schedule (up to 3 s apart); while
  // calls are waiting, a channel in TRANSIENT_FAILURE is told to retry now, at most every
  // kReconnectPokeMs, so a restarted server is found well within --rpc_command_timeout.
  void PokeReconnects() {
    const Clock::time_point now = Clock::now();
    if (now < next_poke_) return;
    next_poke_ = now + std::chrono::milliseconds(kReconnectPokeMs);
    for (const auto& ch : channels_) {
      if (ch->GetState(false) == GRPC_CHANNEL_TRANSIENT_FAILURE) {
        grpc::experimental::ChannelResetConnectionBackoff(ch.get());
      }
    }
  }

  bool AnyChannelReady() const {
    for (const auto& ch : channels_) {
      if (ch->GetState(false) == GRPC_CHANNEL_READY) return true;
    }
    return false;
  }

  void OnCompletion(void* tag) {
    if (tag == &wake_alarm_) {
      wake_owed_ = false;
      return;
    }
    HandleAttemptDone(static_cast<Call*>(tag));
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
      } else {
        HandleSubmit(c);
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
        if (http_) {
          http_->Cancel(c);  // the attempt completes with CANCELLED (or its result, if it ended)
          break;
        }
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
    if (http_) {
      // request_timeout_ms is never 0 here (Create gives HTTP its 3 s default).
      http_->Start(c, std::chrono::milliseconds(options_.request_timeout_ms));
      return;
    }
    in.context = std::make_unique<grpc::ClientContext>();
    in.context->AddMetadata("sid", c->sid);
    in.context->AddMetadata("protov", kProtoVersion);
    // Wait for a connection within the deadline instead of failing fast with UNAVAILABLE while
    // the channel reconnects (a restarted RPC server): see PokeReconnects.
    in.context->set_wait_for_ready(true);
    Clock::time_point deadline =
        options_.request_timeout_ms > 0
            ? Clock::now() + std::chrono::milliseconds(options_.request_timeout_ms)
            : in.first_attempt + std::chrono::milliseconds(options_.command_timeout_ms);
    // gRPC takes only system_clock deadlines; the retry budget itself is kept on steady_clock.
    in.context->set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::duration_cast<std::chrono::system_clock::duration>(deadline - Clock::now()));
    anycable::RPC::Stub* stub = stubs_[next_stub_++ % stubs_.size()].get();
    // The Call itself is the completion tag: Finish fills in.status and the response.
    switch (c->kind) {
      case CallKind::kConnect:
        c->connect_response.Clear();
        in.connect_reader = stub->PrepareAsyncConnect(in.context.get(), c->connect_request, &cq_);
        in.connect_reader->StartCall();
        in.connect_reader->Finish(&c->connect_response, &in.status, c);
        break;
      case CallKind::kCommand:
        c->command_response.Clear();
        in.command_reader = stub->PrepareAsyncCommand(in.context.get(), c->command_request, &cq_);
        in.command_reader->StartCall();
        in.command_reader->Finish(&c->command_response, &in.status, c);
        break;
      case CallKind::kDisconnect:
        c->disconnect_response.Clear();
        in.disconnect_reader =
            stub->PrepareAsyncDisconnect(in.context.get(), c->disconnect_request, &cq_);
        in.disconnect_reader->StartCall();
        in.disconnect_reader->Finish(&c->disconnect_response, &in.status, c);
        break;
    }
  }

  // The readers live in the finished call's arena: drop them before the context that owns it.
  static void EndAttempt(internal::CallInternals& in) {
    in.connect_reader.reset();
    in.command_reader.reset();
    in.disconnect_reader.reset();
    in.context.reset();
  }

  void HandleAttemptDone(Call* c) {
    auto& in = c->internal_;
    EndAttempt(in);
    const auto code = in.status.error_code();
    c->grpc_code = code;
    c->error_message = in.status.error_message();
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
    // A per-attempt deadline (--rpc_request_timeout) that passed while no channel was connected
    // most likely passed waiting for the connection: the request never left, so it is retried
    // like the UNAVAILABLE that a fail-fast call would have got. Any other deadline is final.
    const bool waited_for_connection = !http_ && code == grpc::StatusCode::DEADLINE_EXCEEDED &&
                                       options_.request_timeout_ms > 0 && !AnyChannelReady();
    if (code == grpc::StatusCode::DEADLINE_EXCEEDED && !waited_for_connection) {
      stats_.timeouts.fetch_add(1, std::memory_order_relaxed);
      Fail(c);
      return;
    }
    if (code != grpc::StatusCode::UNAVAILABLE && code != grpc::StatusCode::RESOURCE_EXHAUSTED &&
        !waited_for_connection) {
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
    EndAttempt(in);
    c->outcome = outcome;
    if (outcome == Outcome::kCanceled) {
      stats_.canceled.fetch_add(1, std::memory_order_relaxed);
      c->grpc_code = grpc::StatusCode::CANCELLED;
      if (c->error_message.empty()) c->error_message = "canceled";
    }
    active_.erase(c);
    --live_;
    CompletionSink* sink = in.sink;
    if (std::find(batch_sinks_.begin(), batch_sinks_.end(), sink) == batch_sinks_.end()) {
      batch_sinks_.push_back(sink);
    }
    sink->OnRpcDone(std::move(in.self));
  }

  // Every sink that got calls since the last time hears once that the batch is over.
  void EndSinkBatches() {
    for (CompletionSink* sink : batch_sinks_) sink->OnRpcBatchEnd();
    batch_sinks_.clear();
  }

  const Options options_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<anycable::RPC::Stub>> stubs_;
  std::unique_ptr<HttpTransport> http_;                 // set in HTTP mode (then stubs_ is empty)
  std::vector<HttpTransport::Finished> http_finished_;  // reused by every Wait
  grpc::CompletionQueue cq_;  // attempts' completions and the wake alarm; Run() drains it
  grpc::Alarm wake_alarm_;    // its own address is its tag
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
  bool wake_owed_ = false;  // a producer took sleeping_; its alarm has not come back yet
  int capacity_ = kDefaultConcurrency;
  int in_use_ = 0;  // slots held: in flight or backing off
  size_t live_ = 0;
  size_t next_stub_ = 0;
  Clock::time_point next_poke_{};
  bool cancel_all_ = false;
  std::list<Call*> waiting_;
  std::multimap<Clock::time_point, Call*> timers_;
  std::unordered_set<Call*> active_;
  std::vector<CompletionSink*> batch_sinks_;  // got OnRpcDone since the last EndSinkBatches
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
  if (http::IsHttpHost(options.host)) {
    if (options.request_timeout_ms == 0) options.request_timeout_ms = kHttpDefaultRequestTimeoutMs;
    auto http = HttpTransport::Create(options);
    if (!http.ok()) return cable::MakeError(http.error());
    const std::string mode = http.value()->Describe();
    auto dispatcher = std::make_unique<Dispatcher>(options, std::move(http.value()));
    dispatcher->Start();
    LOG_INFO("RPC client initialized: %s (over %s, concurrency: %d, request timeout: %d ms)",
             options.host.c_str(), mode.c_str(), options.concurrency, options.request_timeout_ms);
    return std::unique_ptr<Client>(new Client(std::move(dispatcher)));
  }
  auto target = ResolveTarget(options.host);
  if (!target.ok()) return cable::MakeError(target.error());
  auto creds = BuildCredentials(options);
  if (!creds.ok()) return cable::MakeError(creds.error());
  grpc::ChannelArguments args = ToGrpcArguments(BuildChannelArgs(options));

  const int channels = ChannelCount(options.concurrency);
  std::vector<std::shared_ptr<grpc::Channel>> grpc_channels;
  for (int i = 0; i < channels; ++i) {
    grpc_channels.push_back(grpc::CreateCustomChannel(target.value(), creds.value(), args));
  }
  auto dispatcher = std::make_unique<Dispatcher>(options, std::move(grpc_channels));
  dispatcher->Start();
  LOG_INFO("RPC client initialized: %s (target %s, concurrency: %d, channels: %d, tls: %s)",
           options.host.c_str(), target.value().c_str(), options.concurrency, channels,
           options.enable_tls ? (options.tls_verify ? "verify" : "no-verify") : "off");
  return std::unique_ptr<Client>(new Client(std::move(dispatcher)));
}

Client::Client(std::unique_ptr<Dispatcher> dispatcher) : dispatcher_(std::move(dispatcher)) {}

Client::~Client() = default;  // ~Dispatcher shuts down with no grace

void Client::Submit(CallPtr call, CompletionSink* sink) { SubmitTo(std::move(call), sink, true); }

void Client::SubmitDeferred(CallPtr call, CompletionSink* sink) {
  SubmitTo(std::move(call), sink, false);
}

void Client::SubmitTo(CallPtr call, CompletionSink* sink, bool wake) {
  if (call == nullptr || sink == nullptr) {
    LOG_ERROR("rpc: Submit without a call or a sink");
    return;
  }
  dispatcher_->Submit(std::move(call), sink, wake);
}

void Client::Flush() { dispatcher_->Flush(); }

void Client::Cancel(const CallPtr& call) {
  if (call != nullptr) dispatcher_->Cancel(call);
}

void Client::Shutdown(std::chrono::milliseconds grace) { dispatcher_->Shutdown(grace); }

const Stats& Client::stats() const { return dispatcher_->stats_; }

}  // namespace cable::rpc
