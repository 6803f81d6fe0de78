// RPC over HTTP: the transport the Dispatcher uses instead of gRPC when rpc_host is an http:// or
// https:// URL. Each attempt is one POST of the call's JSON to <base>/connect|command|disconnect
// (rpc/http_codec.h) on libcurl's multi interface: keep-alive connections are reused across calls
// (HTTP/1.1, or HTTP/2 when an https server offers it), TLS verification is on by default, DNS
// is resolved off-thread by libcurl, and nothing ever blocks the dispatcher.
//
// Threads: owned by the Dispatcher and used only on its thread, which sleeps in Wait(); Wake() is
// the one call any thread may make (it interrupts that sleep).
// Ownership: the transport owns the curl multi handle, a pool of easy handles and one Transfer per
// attempt in flight. A Call is borrowed from Start() until Wait() hands it back as Finished (or
// until Cancel() queued it as Finished); the transport never touches its Dispatcher internals.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <grpcpp/support/status.h>

#include "common/result.h"
#include "rpc/circuit_breaker.h"
#include "rpc/client.h"
#include "rpc/options.h"

namespace cable::rpc {

// The per-attempt timeout used for HTTP when rpc_request_timeout is 0 (anycable-go's default).
inline constexpr int kHttpDefaultRequestTimeoutMs = 3000;
// The response size limit when rpc_max_call_recv_size is 0 (gRPC's default receive limit).
inline constexpr int kHttpDefaultMaxRecvSize = 4 * 1024 * 1024;

class HttpTransport {
 public:
  struct Finished {
    Call* call;
    grpc::Status status;  // OK: the call's response of its kind is filled
  };

  static cable::Result<std::unique_ptr<HttpTransport>, std::string> Create(const Options& options);
  ~HttpTransport();
  HttpTransport(const HttpTransport&) = delete;
  HttpTransport& operator=(const HttpTransport&) = delete;

  // Starts one attempt of `call` (its request is read now; its response is written when the
  // attempt ends). Never fails directly: a refusal (circuit breaker open) comes out of Wait().
  void Start(Call* call, std::chrono::milliseconds timeout);
  // Aborts the call's attempt if one is in flight; it then comes out of Wait() as CANCELLED.
  // A no-op when the attempt has already ended (its result stands, as gRPC's TryCancel).
  void Cancel(Call* call);
  // Sleeps up to timeout_ms (< 0: until something happens) unless an attempt has already ended,
  // moves the transfers along and appends every attempt that ended.
  void Wait(int timeout_ms, std::vector<Finished>* out);
  // Any thread: makes a sleeping Wait() return.
  void Wake();

  // A human description for the startup log line ("http, verify", ...).
  std::string Describe() const;

 private:
  struct Transfer;
  explicit HttpTransport(const Options& options);
  cable::Result<bool, std::string> Init();
  Transfer* Acquire();
  void Release(Transfer* transfer);
  void CollectDone(std::vector<Finished>* out);
  grpc::Status Conclude(Transfer& transfer, int curl_code);
  void RecordBreaker(uint64_t ticket, CircuitBreaker::Result result);

  const Options options_;
  std::string urls_[3];  // by CallKind
  std::string auth_header_;
  size_t max_recv_size_;
  bool verify_ = true;
  std::string ca_pem_;     // --rpc_tls_root_ca given as PEM text
  std::string ca_file_;    // --rpc_tls_root_ca given as a path
  void* multi_ = nullptr;  // CURLM*
  std::vector<std::unique_ptr<Transfer>> all_;
  std::vector<Transfer*> idle_;
  std::unordered_map<Call*, Transfer*> active_;
  std::vector<Finished> finished_;  // ended without a curl transfer (refused, canceled)
  bool added_since_perform_ = false;
  CircuitBreaker breaker_;
  CircuitBreaker::State logged_state_ = CircuitBreaker::State::kClosed;
};

}  // namespace cable::rpc
