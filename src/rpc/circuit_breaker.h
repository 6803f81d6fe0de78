// The circuit breaker in front of RPC over HTTP, with anycable-go's settings (rpc/http.go, which
// uses sony/gobreaker's two-step breaker):
//   closed    counts requests and network failures in a fixed 10 s window; a failure that leaves
//             the window at >= 10 requests with >= 80 % of them failed opens the breaker;
//   open      for 5 s every request is refused without touching the network;
//   half-open then up to 5 probe requests go; 5 successes close it, one failure opens it again.
// "Failure" means the app could not be reached (no HTTP response). Any HTTP response, whatever its
// status, is a success; a timeout is neither (gobreaker never hears about it), so it only counts
// as a request. One deviation: in half-open, a probe that ended neutral (timeout, cancel) frees its
// probe slot, where gobreaker would stay half-open and refuse everything for good.
//
// Pure logic: time is passed in, so tests need no clock. Owned and used by one thread (the RPC
// dispatcher's HTTP transport); not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace cable::rpc {

class CircuitBreaker {
 public:
  using Clock = std::chrono::steady_clock;
  enum class State : uint8_t { kClosed, kOpen, kHalfOpen };
  enum class Result : uint8_t { kSuccess, kFailure, kNeutral };

  struct Settings {
    int min_requests = 10;       // closed: no trip below this many requests in the window
    double failure_ratio = 0.8;  // closed: trip at this share of failures
    std::chrono::milliseconds window{10000};
    std::chrono::milliseconds open_for{5000};
    int half_open_requests = 5;  // probes allowed, and successes needed to close
  };

  CircuitBreaker() : CircuitBreaker(Settings{}) {}
  explicit CircuitBreaker(const Settings& settings);

  // A ticket for a request that may go now, or nothing while the breaker refuses requests.
  std::optional<uint64_t> Allow(Clock::time_point now);
  // The outcome of a request allowed with `ticket`. Results from before the last state change
  // are ignored, as gobreaker does.
  void Record(uint64_t ticket, Result result, Clock::time_point now);
  // The state at `now` (an open breaker whose time is up is half-open).
  State StateAt(Clock::time_point now);

 private:
  void Refresh(Clock::time_point now);
  void Enter(State state, Clock::time_point now);

  Settings settings_;
  State state_ = State::kClosed;
  uint64_t generation_ = 0;
  Clock::time_point expiry_{};  // closed: window end; open: reopen time
  int requests_ = 0;
  int failures_ = 0;
  int successes_ = 0;  // half-open: consecutive successes
};

}  // namespace cable::rpc
