#include "rpc/circuit_breaker.h"

namespace cable::rpc {

CircuitBreaker::CircuitBreaker(const Settings& settings) : settings_(settings) {}

void CircuitBreaker::Enter(State state, Clock::time_point now) {
  state_ = state;
  ++generation_;
  requests_ = failures_ = successes_ = 0;
  if (state == State::kClosed) expiry_ = now + settings_.window;
  if (state == State::kOpen) expiry_ = now + settings_.open_for;
}

void CircuitBreaker::Refresh(Clock::time_point now) {
  if (generation_ == 0) Enter(State::kClosed, now);  // the first window starts at first use
  if (state_ == State::kClosed && now >= expiry_) Enter(State::kClosed, now);
  if (state_ == State::kOpen && now >= expiry_) Enter(State::kHalfOpen, now);
}

CircuitBreaker::State CircuitBreaker::StateAt(Clock::time_point now) {
  Refresh(now);
  return state_;
}

std::optional<uint64_t> CircuitBreaker::Allow(Clock::time_point now) {
  Refresh(now);
  if (state_ == State::kOpen) return std::nullopt;
  if (state_ == State::kHalfOpen && requests_ >= settings_.half_open_requests) return std::nullopt;
  ++requests_;
  return generation_;
}

void CircuitBreaker::Record(uint64_t ticket, Result result, Clock::time_point now) {
  Refresh(now);
  if (ticket != generation_) return;
  switch (result) {
    case Result::kNeutral:
      if (state_ == State::kHalfOpen && requests_ > 0) --requests_;
      return;
    case Result::kSuccess:
      if (state_ == State::kHalfOpen && ++successes_ >= settings_.half_open_requests) {
        Enter(State::kClosed, now);
      }
      return;
    case Result::kFailure:
      if (state_ == State::kHalfOpen) {
        Enter(State::kOpen, now);
        return;
      }
      ++failures_;
      if (requests_ >= settings_.min_requests &&
          failures_ >= settings_.failure_ratio * static_cast<double>(requests_)) {
        Enter(State::kOpen, now);
      }
      return;
  }
}

}  // namespace cable::rpc
