// Asynchronous gRPC client of the app's AnyCable RPC server (anycable-go rpc/rpc.go semantics).
//
// Threads: Submit() and Cancel() may be called from any thread (ring threads) and never block:
// they push onto a lock-free MPSC queue and wake one internal dispatcher thread. The dispatcher
// owns the global concurrency gate (anycable `rpc_concurrency`, shared by Connect, Command and
// Disconnect) and the retry timers, starts calls in bursts with gRPC's async API and invokes
// CompletionSink::OnRpcDone exactly once per submitted call, on the dispatcher thread. It polls
// its own gRPC completion queue, so responses are read and decoded on the dispatcher thread too:
// no gRPC callback thread sits between a response and the sink (one thread hop fewer per call).
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
#include <grpcpp/support/async_unary_call.h>

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
  // After one or more OnRpcDone calls, on the same thread, before that thread sleeps or moves on
  // to other work: a sink may leave its wake-up to this, one per batch instead of one per call.
  virtual void OnRpcBatchEnd() {}
};

class Client;
class Dispatcher;

namespace internal {

enum class CallState : uint8_t { kNew, kWaiting, kInFlight, kBackoff, kDone };

// A queue node that knows its Call (Call is not standard-layout, so no container_of).
struct CallNode : MpscNode {
  Call* call = nullptr;
  bool is_cancel = false;
};

// Dispatcher-private bookkeeping of one Call. Written only by the dispatcher thread, except the
// atomics and the fields a submitting thread fills before its queue push (the push is a release,
// the dispatcher's pop an acquire).
struct CallInternals {
  CallNode submit_node;  // queued once, by Submit
  CallNode cancel_node;  // queued at most once, by the thread that first sets cancel_requested
  std::atomic<bool> cancel_requested{false};
  CallState state = CallState::kNew;
  CompletionSink* sink = nullptr;
  CallPtr self;         // keeps the Call alive from Submit until the sink has it
  CallPtr cancel_self;  // keeps it alive while cancel_node is queued
  std::unique_ptr<grpc::ClientContext> context;  // one per attempt
  // The attempt's response reader (one of the three, by kind; it lives in the gRPC call's
  // arena, so it is dropped before the context) and its status, filled by the completion queue.
  std::unique_ptr<grpc::ClientAsyncResponseReader<anycable::ConnectionResponse>> connect_reader;
  std::unique_ptr<grpc::ClientAsyncResponseReader<anycable::CommandResponse>> command_reader;
  std::unique_ptr<grpc::ClientAsyncResponseReader<anycable::DisconnectResponse>> disconnect_reader;
  grpc::Status status;
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
  // Submit without waking the dispatcher: the caller owes a Flush() before it sleeps (a ring
  // thread submits all calls of one loop turn, then rings once).
  void SubmitDeferred(CallPtr call, CompletionSink* sink);
  // Wakes the dispatcher if it sleeps; cheap when it is awake. Any thread.
  void Flush();
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
  void SubmitTo(CallPtr call, CompletionSink* sink, bool wake);
  std::unique_ptr<Dispatcher> dispatcher_;
};

}  // namespace cable::rpc
