// Asynchronous gRPC client of the app's AnyCable RPC server (anycable-go rpc/rpc.go semantics).
//
// Threads: Submit() and Cancel() may be called from any thread (ring threads) and never block:
// they push onto a lock-free MPSC queue and wake one internal dispatcher thread. The dispatcher
// owns the global concurrency gate (anycable `rpc_concurrency`, shared by Connect, Command and
// Disconnect) and the retry timers, starts calls in bursts with gRPC's callback API and invokes
// CompletionSink::OnRpcDone exactly once per submitted call, on the dispatcher thread. gRPC's own
// callback threads only hand finished attempts back to the dispatcher.
//
// Ownership: the caller allocates a Call (std::make_shared<Call>()), fills kind/sid/request and
// submits it once; the client keeps a reference until the sink gets it back. Requests must not be
// touched between Submit and OnRpcDone. A Call is not reusable after completion.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <string>

#include <grpcpp/client_context.h>

#include "common/result.h"
#include "rpc.pb.h"
#include "rpc/mpsc_queue.h"
#include "rpc/options.h"

namespace cable::rpc {

enum class CallKind : uint8_t { kConnect, kCommand, kDisconnect };
// kOk = a response arrived (the app-level status is inside it).
enum class Outcome : uint8_t { kOk, kError, kCanceled };

struct Call;
using CallPtr = std::shared_ptr<Call>;

// Implemented by the caller (a ring thread's inbox); invoked on the rpc dispatcher thread.
class CompletionSink {
 public:
  virtual ~CompletionSink() = default;
  // Exactly once per submitted call; must not block.
  virtual void OnRpcDone(CallPtr call) = 0;
};

class Client;
class Dispatcher;

namespace internal {

enum class CallState : uint8_t { kNew, kWaiting, kInFlight, kBackoff, kDone };
enum class EventType : uint8_t { kSubmit, kAttemptDone };

// A queue node that knows its Call (Call is not standard-layout, so no container_of).
struct CallNode : MpscNode {
  Call* call = nullptr;
  bool is_cancel = false;
};

// Dispatcher-private bookkeeping of one Call. Written only by the dispatcher thread, except the
// atomics and the fields a submitting/completing thread fills before its queue push (the push
// is a release, the dispatcher's pop an acquire).
struct CallInternals {
  CallNode event_node;   // kSubmit, then one kAttemptDone per attempt; never queued twice
  CallNode cancel_node;  // queued at most once, by the thread that first sets cancel_requested
  EventType event = EventType::kSubmit;
  std::atomic<bool> cancel_requested{false};
  CallState state = CallState::kNew;
  CompletionSink* sink = nullptr;
  CallPtr self;         // keeps the Call alive from Submit until the sink has it
  CallPtr cancel_self;  // keeps it alive while cancel_node is queued
  std::unique_ptr<grpc::ClientContext> context;  // one per attempt
  int status_code = 0;  // of the last attempt, set by the gRPC callback thread
  std::string status_message;
  std::chrono::steady_clock::time_point first_attempt{};
  int backoff_step = 0;
  bool last_was_exhausted = false;
  std::list<Call*>::iterator waiting_pos;  // valid in kWaiting
  std::multimap<std::chrono::steady_clock::time_point, Call*>::iterator timer_pos;  // kBackoff
};

}  // namespace internal

struct Call {
  CallKind kind = CallKind::kCommand;
  std::string sid;     // sent as metadata "sid"; "protov" = "v1" is always sent
  uint64_t owner = 0;  // opaque for the caller (connection id)
  uint32_t tag = 0;    // opaque for the caller
  anycable::ConnectionRequest connect_request;
  anycable::ConnectionResponse connect_response;
  anycable::CommandMessage command_request;
  anycable::CommandResponse command_response;
  anycable::DisconnectRequest disconnect_request;
  anycable::DisconnectResponse disconnect_response;
  Outcome outcome = Outcome::kError;
  int grpc_code = 0;  // grpc::StatusCode of the last attempt (0 = OK)
  std::string error_message;
  int attempts = 0;  // attempts actually sent

 private:
  friend class Client;
  friend class Dispatcher;
  internal::CallInternals internal_;
};

// anycable-go metric names: rpc_call_total, rpc_retries_total, rpc_error_total,
// rpc_timeout_total, rpc_canceled_total, rpc_pending_num (calls waiting for a concurrency slot).
struct Stats {
  std::atomic<uint64_t> calls{0}, retries{0}, errors{0}, timeouts{0}, canceled{0};
  std::atomic<int64_t> pending{0};
};

class Client {
 public:
  // Validates options, resolves the target and opens the channels (does not wait for a
  // connection: an unreachable server shows up as UNAVAILABLE on calls, which are retried).
  static cable::Result<std::unique_ptr<Client>, std::string> Create(const Options& options);
  ~Client();  // Shutdown(0 ms) if not done yet
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Any thread, never blocks. After Shutdown has begun the sink is called right away on the
  // calling thread with kError / UNAVAILABLE "rpc client is shut down".
  void Submit(CallPtr call, CompletionSink* sink);
  // Any thread, never blocks. A waiting or backing-off call completes with kCanceled; an in-flight
  // one is TryCancel()ed and completes with kCanceled, unless its response had already arrived
  // (then kOk: e.g. a successful Connect the caller may still owe a Disconnect for). A call is
  // never retried after Cancel. Idempotent; a no-op for a completed call.
  void Cancel(const CallPtr& call);
  // Stops accepting calls, lets queued and in-flight calls run for up to `grace`, then cancels
  // the rest; returns once every sink call has happened and the threads are joined. Idempotent;
  // call from a thread that is not a sink callback.
  void Shutdown(std::chrono::milliseconds grace);

  const Stats& stats() const;

 private:
  explicit Client(std::unique_ptr<Dispatcher> dispatcher);
  std::unique_ptr<Dispatcher> dispatcher_;
};

}  // namespace cable::rpc
