// Fixture for the cluster integration tests (issue #6): ONE in-process ScriptedRpcServer (the demo
// app: subscribing to {"channel":"Hub","stream":"x"} streams from "x"), a real redis-server and/or
// nats-server on free loopback ports (tests/support/brokers.h), and TWO real ringcable nodes
// (--workers 2, each with its own --http_broadcast_port and --metrics_http /metrics) sharing them.
//
// Threads: everything runs on the test's thread. Ownership: the fixture owns the brokers, the node
// processes and every subscriber's WsClient; TearDown kills the nodes and brokers it started (by
// PID) and prints the node logs when the test failed.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "brokers.h"
#include "hub_fixture.h"
#include "rpc_stub/scripted_server.h"
#include "test_support.h"

namespace cable::itcluster {

using namespace std::chrono_literals;
using cable::ithub::Delivered;
using cable::ithub::Pub;
using cable::ithub::StreamId;
using cable::test::BrokerProcess;
using cable::test::JsonString;
using cable::test::WsClient;
using cable::test::WsFrame;

constexpr int kNodes = 2;

// One WebSocket client on one node, subscribed to one stream of the demo app.
struct Subscriber {
  int node = 0;
  std::string stream;
  std::string identifier;  // StreamId(stream)
  std::unique_ptr<WsClient> ws;
  std::string Name() const { return "node " + std::to_string(node) + " stream " + stream; }
};

// The publication data used for sequence checks: {"seq":<n>} (delivered verbatim as "message").
std::string SeqData(int seq);
// The seq of a delivered frame {"identifier":..,"message":{"seq":N}}, or -1.
int SeqOf(const std::string& frame);
// Counts non-overlapping occurrences of `needle` in `text`.
size_t CountOf(const std::string& text, const std::string& needle);

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Start the brokers; false when the binary is missing (the caller GTEST_SKIPs) — a broker that
  // is installed but does not come up is a fatal failure.
  bool StartRedis();
  bool StartNats();  // with an HTTP monitoring port (nats_monitor_port_) for subscription checks

  // Starts both nodes with `common` flags; fatal failure if one does not come up.
  void StartNodes(const std::vector<std::string>& common,
                  const std::map<std::string, std::string>& env = {});

  // POST `body` to node `node`'s broadcast endpoint; the HTTP status.
  int Publish(int node, const std::string& body);
  // Connects to node `node` as `user`, reads the welcome; nullptr (with a failure) if it fails.
  std::unique_ptr<WsClient> Connect(int node, const std::string& user = "u");
  // Subscribes and waits for the confirmation.
  bool Subscribe(WsClient& ws, const std::string& identifier);
  // `per_node` clients per (node, stream), each subscribed to that stream (fatal failure
  // otherwise).
  void AddSubscribers(const std::vector<std::string>& streams, int per_node);

  // Sum of the samples of metric `name` in node `node`'s /metrics, or -1 if absent/unreachable.
  int64_t Metric(int node, const std::string& name);
  std::string NodeLog(int node) const;

  // Redis helpers (redis_ must be running).
  std::string Redis(const std::vector<std::string>& args);
  // Sends the commands through `redis-cli --pipe` (one connection, in order); true when every
  // command was answered without an error.
  bool RedisPipe(const std::vector<std::vector<std::string>>& commands);
  // The same against any Redis port (a Redis Cluster node).
  bool RedisPipeTo(int port, const std::vector<std::vector<std::string>>& commands);
  // Number of Redis connections subscribed to `channel` (PUBSUB NUMSUB).
  int RedisNumSub(const std::string& channel);
  // Number of NATS connections subscribed to `subject` (monitoring endpoint /connz?subs=1).
  int NatsNumSub(const std::string& subject);
  // Waits (bounded) until every channel/subject has exactly `count` subscribed connections.
  bool WaitRedisSubscribed(const std::vector<std::string>& channels, int count,
                           std::chrono::milliseconds timeout = 10s);
  bool WaitNatsSubscribed(const std::vector<std::string>& subjects, int count,
                          std::chrono::milliseconds timeout = 10s);

  // Publishes seq 0..n-1 round-robin over `streams` in one call of `publish` (a list of
  // (stream, publication JSON) in order; it returns true when all were accepted), then checks
  // that every subscriber got exactly its stream's publications: in publication order when
  // `ordered`, else each exactly once and in the same order as every other subscriber of that
  // stream. Then publishes one more per stream and expects it next (a late duplicate would come
  // before it).
  using PublishFn =
      std::function<bool(const std::vector<std::pair<std::string, std::string>>& batch)>;
  void ExpectDeliveredOnce(const std::vector<std::string>& streams, int n, const PublishFn& publish,
                           bool ordered = true);

  // Re-evaluates `pred` every 20 ms until it is true or `timeout` passes.
  static bool Poll(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

  cable::tools::ScriptedRpcServer rpc_;
  int rpc_port_ = 0;
  BrokerProcess redis_{BrokerProcess::Kind::kRedis};
  BrokerProcess nats_{BrokerProcess::Kind::kNats};
  int nats_monitor_port_ = 0;
  std::array<cable::test::ServerProcess, kNodes> nodes_;
  std::array<int, kNodes> broadcast_ports_{};
  std::vector<Subscriber> subs_;
};

}  // namespace cable::itcluster
