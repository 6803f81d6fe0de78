// CircuitBreaker: anycable-go's HTTP RPC breaker settings, driven with explicit time points (no
// clock, no sleeps).
#include "rpc/circuit_breaker.h"

#include <gtest/gtest.h>

namespace cable::rpc {
namespace {

using namespace std::chrono_literals;
using State = CircuitBreaker::State;
using R = CircuitBreaker::Result;

class CircuitBreakerTest : public ::testing::Test {
 protected:
  // n requests allowed and recorded with `result`, all at `at`.
  void Run(int n, R result, CircuitBreaker::Clock::time_point at) {
    for (int i = 0; i < n; ++i) {
      auto ticket = breaker_.Allow(at);
      ASSERT_TRUE(ticket.has_value()) << "request " << i << " was refused";
      breaker_.Record(*ticket, result, at);
    }
  }
  CircuitBreaker breaker_;
  CircuitBreaker::Clock::time_point t0_ = CircuitBreaker::Clock::time_point() + 1000h;
};

TEST_F(CircuitBreakerTest, NineFailuresDoNotTripTheTenthDoes) {
  Run(9, R::kFailure, t0_);
  EXPECT_EQ(breaker_.StateAt(t0_), State::kClosed);
  Run(1, R::kFailure, t0_);
  EXPECT_EQ(breaker_.StateAt(t0_), State::kOpen);
  EXPECT_FALSE(breaker_.Allow(t0_).has_value());
}

TEST_F(CircuitBreakerTest, TripsAtEightyPercentNotBelow) {
  // 3 successes + 11 failures = 78.6 %: stays closed; the 12th failure makes 12/15 = 80 %.
  Run(3, R::kSuccess, t0_);
  Run(11, R::kFailure, t0_);
  EXPECT_EQ(breaker_.StateAt(t0_), State::kClosed);
  Run(1, R::kFailure, t0_);
  EXPECT_EQ(breaker_.StateAt(t0_), State::kOpen);
}

TEST_F(CircuitBreakerTest, TimeoutsCountAsRequestsButNotFailures) {
  // 8 failures among 10 requests trip it; 3 timeouts make 8/11 < 80 %.
  Run(3, R::kNeutral, t0_);
  Run(8, R::kFailure, t0_);
  EXPECT_EQ(breaker_.StateAt(t0_), State::kClosed);
}

TEST_F(CircuitBreakerTest, TheWindowStartsOverAfterTenSeconds) {
  Run(9, R::kFailure, t0_);
  Run(1, R::kFailure, t0_ + 10s);  // a new window: 1 request, 1 failure
  EXPECT_EQ(breaker_.StateAt(t0_ + 10s), State::kClosed);
}

TEST_F(CircuitBreakerTest, OpenForFiveSecondsThenFiveProbesCloseIt) {
  Run(10, R::kFailure, t0_);
  EXPECT_FALSE(breaker_.Allow(t0_ + 4999ms).has_value());
  const auto probe = t0_ + 5s;
  EXPECT_EQ(breaker_.StateAt(probe), State::kHalfOpen);
  std::vector<uint64_t> tickets;
  for (int i = 0; i < 5; ++i) {
    auto t = breaker_.Allow(probe);
    ASSERT_TRUE(t.has_value());
    tickets.push_back(*t);
  }
  EXPECT_FALSE(breaker_.Allow(probe).has_value()) << "only 5 probes at once";
  for (int i = 0; i < 4; ++i) breaker_.Record(tickets[i], R::kSuccess, probe);
  EXPECT_EQ(breaker_.StateAt(probe), State::kHalfOpen);
  breaker_.Record(tickets[4], R::kSuccess, probe);
  EXPECT_EQ(breaker_.StateAt(probe), State::kClosed);
  EXPECT_TRUE(breaker_.Allow(probe).has_value());
}

TEST_F(CircuitBreakerTest, AFailedProbeOpensItAgain) {
  Run(10, R::kFailure, t0_);
  const auto probe = t0_ + 5s;
  auto t = breaker_.Allow(probe);
  ASSERT_TRUE(t.has_value());
  breaker_.Record(*t, R::kFailure, probe);
  EXPECT_EQ(breaker_.StateAt(probe), State::kOpen);
  EXPECT_FALSE(breaker_.Allow(probe + 4s).has_value());
  EXPECT_TRUE(breaker_.Allow(probe + 5s).has_value());
}

TEST_F(CircuitBreakerTest, ATimedOutProbeFreesItsSlot) {
  Run(10, R::kFailure, t0_);
  const auto probe = t0_ + 5s;
  std::vector<uint64_t> tickets;
  for (int i = 0; i < 5; ++i) tickets.push_back(*breaker_.Allow(probe));
  EXPECT_FALSE(breaker_.Allow(probe).has_value());
  breaker_.Record(tickets[0], R::kNeutral, probe);
  EXPECT_TRUE(breaker_.Allow(probe).has_value());
}

TEST_F(CircuitBreakerTest, ResultsFromAnEarlierStateAreIgnored) {
  auto stale = breaker_.Allow(t0_);
  ASSERT_TRUE(stale.has_value());
  Run(9, R::kFailure, t0_);  // 10 requests, 9 failures: open
  ASSERT_EQ(breaker_.StateAt(t0_), State::kOpen);
  const auto probe = t0_ + 5s;
  auto t = breaker_.Allow(probe);
  ASSERT_TRUE(t.has_value());
  breaker_.Record(*stale, R::kFailure, probe);  // from the closed state: no effect
  EXPECT_EQ(breaker_.StateAt(probe), State::kHalfOpen);
}

}  // namespace
}  // namespace cable::rpc
