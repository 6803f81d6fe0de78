// Test helpers for redis clients: a Handler that records what it hears and a tiny epoll loop
// that pumps one client until a condition holds (bounded). Header-only; one copy per test binary.
#pragma once

#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "redis/redis.h"

namespace cable::redis {

using namespace std::chrono_literals;

inline int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// ---------------------------------------------------------------- event-loop driver

class Recorder : public Client::Handler {
 public:
  void OnReady(Client& conn) override {
    ready++;
    if (on_ready) on_ready(conn);
  }
  void OnPush(Client&, Reply&& reply) override { pushes.push_back(std::move(reply)); }
  void OnClosed(Client& conn, const std::string& reason) override {
    closed.push_back(reason);
    EXPECT_EQ(conn.state(), Connection::State::kClosed);
    EXPECT_EQ(conn.pending_commands(), 0u);
  }

  int ready = 0;
  std::vector<Reply> pushes;
  std::vector<std::string> closed;
  std::function<void(Client&)> on_ready;
};

// Pumps one connection with epoll (level-triggered, re-registered every round because the
// connection may switch sockets) until `done` holds or 10 s pass.
class Loop {
 public:
  Loop() : epfd_(epoll_create1(EPOLL_CLOEXEC)) {}
  ~Loop() { close(epfd_); }

  bool Until(Client& conn, const std::function<bool()>& done,
             std::chrono::milliseconds limit = 10s) {
    int64_t deadline = NowMs() + limit.count();
    while (!done()) {
      if (NowMs() > deadline) return false;
      if (registered_ >= 0) epoll_ctl(epfd_, EPOLL_CTL_DEL, registered_, nullptr);
      registered_ = -1;
      if (conn.fd() >= 0 && conn.events() != 0) {
        epoll_event ev{};
        ev.events = conn.events();
        ev.data.fd = conn.fd();
        if (epoll_ctl(epfd_, EPOLL_CTL_ADD, conn.fd(), &ev) == 0) registered_ = conn.fd();
      }
      epoll_event got[4];
      int n = epoll_wait(epfd_, got, 4, 20);
      for (int i = 0; i < n; ++i) {
        if (got[i].data.fd == conn.fd()) conn.OnEvents(got[i].events);
      }
      conn.Tick(NowMs());
    }
    return true;
  }

 private:
  int epfd_;
  int registered_ = -1;
};

// Runs one command to completion and returns its reply.
inline Reply Roundtrip(Loop& loop, Client& conn, std::vector<std::string> args) {
  bool done = false;
  Reply out = Reply::Error("no reply (timeout)");
  conn.Command(std::move(args), [&](Reply&& r) {
    out = std::move(r);
    done = true;
  });
  loop.Until(conn, [&] { return done; });
  return out;
}

}  // namespace cable::redis
