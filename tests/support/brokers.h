// Real message brokers for tests: a redis-server or nats-server child process on a free loopback
// port, started and stopped by the test (never a system service). Restart() brings a killed broker
// back on the same port, for reconnect tests. Every wait is bounded.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
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

// A real Redis Cluster for tests: `masters` × (1 + `replicas`) redis-server processes with
// --cluster-enabled yes on free loopback ports (client and bus ports chosen separately), joined by
// `redis-cli --cluster create`. Nodes are BrokerProcesses: Kill() one to fail it over, Restart()
// brings it back with its nodes.conf (as a replica of whoever took over).
class RedisCluster {
 public:
  RedisCluster() = default;
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  // Starts the nodes, creates the cluster and waits until every node reports cluster_state:ok.
  // False (with the reason in error()) on any failure.
  bool Start(int masters, int replicas, int node_timeout_ms = 1000);
  const std::string& error() const { return error_; }
  size_t size() const { return nodes_.size(); }
  BrokerProcess& node(size_t i) { return *nodes_[i]; }
  // "redis://127.0.0.1:<p0>,redis://127.0.0.1:<p1>,..." (anycable-go's cluster form), every node.
  std::string Url() const;
  // Index of the node that serves `slot` as master right now (asked of any live node), or -1.
  int MasterOf(int slot);
  // Indexes of the live masters (CLUSTER NODES of a live node).
  std::vector<int> Masters();
  // redis-cli against node i.
  std::string Cli(size_t i, const std::vector<std::string>& args);
  // Waits until every live node says cluster_state:ok and (when `slot` >= 0) they all name the
  // same live node as the owner of `slot` (after a Kill: the promoted replica), bounded.
  bool WaitHealthy(std::chrono::milliseconds timeout, int slot = -1);
  std::string Logs() const;  // every node's log, for failure messages

 private:
  int IndexOfPort(int port) const;
  std::vector<std::unique_ptr<BrokerProcess>> nodes_;
  std::string error_;
};

// Runs one Redis command through redis-cli against 127.0.0.1:port; returns its stdout (raw mode).
std::string RedisCli(int port, const std::vector<std::string>& args);

// Publishes `payload` on NATS subject `subject` with a throwaway raw-protocol connection (CONNECT,
// PUB, PING/PONG so the publish is flushed before returning). False on any failure.
bool NatsPublish(int port, const std::string& subject, const std::string& payload);

}  // namespace cable::test
