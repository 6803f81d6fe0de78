// Real message brokers for tests: a redis-server or nats-server child process on a free loopback
// port, started and stopped by the test (never a system service). Restart() brings a killed broker
// back on the same port, for reconnect tests. Every wait is bounded.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace cable::test {

class BrokerProcess {
 public:
  enum class Kind { kRedis, kNats };
  explicit BrokerProcess(Kind kind) : kind_(kind) {}
  ~BrokerProcess();
  BrokerProcess(const BrokerProcess&) = delete;
  BrokerProcess& operator=(const BrokerProcess&) = delete;

  // Path of the server binary, or "" when it is not installed (tests then GTEST_SKIP).
  static std::string FindBinary(Kind kind);
  // Starts on a free port (or the previous one after Stop/Kill) and waits until it accepts
  // connections. `extra` are appended to the command line.
  bool Start(const std::vector<std::string>& extra = {});
  bool Restart() { return Start(extra_); }
  void Kill();  // SIGKILL: the broker vanishes without a goodbye
  void Stop();  // SIGTERM and wait
  bool running() const { return pid_ > 0; }
  int port() const { return port_; }
  std::string url() const;  // redis://127.0.0.1:<port> or nats://127.0.0.1:<port>
  std::string Log() const;

 private:
  Kind kind_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string dir_;  // working directory (redis dump files, logs)
  std::vector<std::string> extra_;
};

// Runs one Redis command through redis-cli against 127.0.0.1:port; returns its stdout (raw mode).
std::string RedisCli(int port, const std::vector<std::string>& args);

// Publishes `payload` on NATS subject `subject` with a throwaway raw-protocol connection (CONNECT,
// PUB, PING/PONG so the publish is flushed before returning). False on any failure.
bool NatsPublish(int port, const std::string& subject, const std::string& payload);

}  // namespace cable::test
