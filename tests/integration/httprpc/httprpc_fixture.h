// Helpers for the RPC-over-HTTP integration tests: Node.js apps (tests/integration/httprpc/app:
// the real @anycable/serverless-js app and a recording app with scripted faults) started and
// stopped by PID on a free loopback port, and Prometheus metric reads from the real ringcable
// binary. Used from the test thread only; every wait is bounded.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace cable::httprpc {

using namespace std::chrono_literals;

// <source>/tests/integration/httprpc/app
std::string AppDir();

class NodeApp {
 public:
  NodeApp() = default;
  ~NodeApp();
  NodeApp(const NodeApp&) = delete;
  NodeApp& operator=(const NodeApp&) = delete;

  // `node --import dir_imports.mjs <script> --port <port> <args>`; waits for "listening on".
  // port 0 = a free one. Output is kept across restarts (appended).
  bool Start(const std::string& script, const std::vector<std::string>& args = {}, int port = 0);
  // SIGTERM, then SIGKILL after 10 s; reaps it.
  void Stop();
  int port() const { return port_; }
  // Base URL for --rpc_host.
  std::string Url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/_anycable"; }
  std::string Output() const;
  // Waits until the output holds `needle` at least `count` times.
  bool WaitOutput(const std::string& needle, size_t count = 1,
                  std::chrono::milliseconds timeout = 15s) const;
  size_t Count(const std::string& needle) const;
  // Output lines that start with `prefix`.
  std::vector<std::string> Lines(const std::string& prefix) const;

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string log_path_;
};

// anycable_go_<name> from GET /metrics on `port` (no labels), or -1.
long Metric(int port, const std::string& name);
// Polls until Metric(port, name) >= at_least (bounded); returns the last value.
long WaitMetric(int port, const std::string& name, long at_least,
                std::chrono::milliseconds timeout = 15s);

}  // namespace cable::httprpc
