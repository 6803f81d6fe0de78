// Helpers shared by the rpc tests: a recording CompletionSink, a latch for handlers that must
// block, and bounded waits (generous upper bounds so a broken build fails instead of hanging;
// no test asserts on how long anything took).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "rpc/client.h"

namespace cable::rpc::testing {

inline constexpr std::chrono::seconds kWaitLimit{30};

// Polls pred (for state that has no notification, e.g. Stats) until true or kWaitLimit.
inline bool WaitUntil(const std::function<bool()>& pred) {
  const auto end = std::chrono::steady_clock::now() + kWaitLimit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return pred();
}

class RecordingSink : public CompletionSink {
 public:
  void OnRpcDone(CallPtr call) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++counts_[call.get()];
    done_.push_back(std::move(call));
    events_.push_back({'D', std::this_thread::get_id()});
    cv_.notify_all();
  }

  void OnRpcBatchEnd() override {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back({'E', std::this_thread::get_id()});
  }

  // Every OnRpcDone (D) and OnRpcBatchEnd (E), in order, with the calling thread.
  struct Event {
    char kind;
    std::thread::id thread;
  };
  std::vector<Event> events() const {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }

  bool WaitCount(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kWaitLimit, [&] { return done_.size() >= n; });
  }

  bool WaitFor(const CallPtr& call) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kWaitLimit, [&] { return counts_.count(call.get()) > 0; });
  }

  int CountOf(const CallPtr& call) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = counts_.find(call.get());
    return it == counts_.end() ? 0 : it->second;
  }

  size_t total() const {
    std::lock_guard<std::mutex> lock(mu_);
    return done_.size();
  }

  std::vector<CallPtr> done() const {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<const Call*, int> counts_;
  std::vector<CallPtr> done_;  // keeps calls alive, so addresses in counts_ stay unique
  std::vector<Event> events_;
};

// Handlers call Enter(); they block until Open(). Tracks how many are inside at once.
class Gate {
 public:
  void Enter() {
    std::unique_lock<std::mutex> lock(mu_);
    ++inside_;
    max_inside_ = std::max(max_inside_, inside_);
    cv_.notify_all();
    cv_.wait_for(lock, kWaitLimit, [&] { return open_; });
    --inside_;
  }
  bool WaitInside(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kWaitLimit, [&] { return inside_ >= n; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  int max_inside() const {
    std::lock_guard<std::mutex> lock(mu_);
    return max_inside_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  int inside_ = 0;
  int max_inside_ = 0;
};

// A loopback port nobody listens on (bound, then closed).
inline int UnusedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace cable::rpc::testing
