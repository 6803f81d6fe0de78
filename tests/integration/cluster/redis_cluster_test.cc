// Redis Cluster (issue #20) through the real binary: two ringcable nodes (--workers 2) whose
// --redis_url lists the nodes of a real `redis-server --cluster-enabled yes` cluster made by the
// test (3 masters, with a replica each for the failover), clients on both nodes. Spec:
// ../shared/spec/anycable.md §1 "Broadcasting: Redis Pub/Sub" (Sentinel, Cluster), "Redis
// Streams", "Pub/Sub (node↔node)", §2.4.
//
// Covered: the legacy `redis` broadcaster, `redisx` (its stream lives on one master) and
// `--pubsub redis` (HTTP broadcasts on either node) all deliver exactly once through a cluster;
// after a master holding the nodes' subscriptions is killed and its replica promoted, and after a
// manual CLUSTER FAILOVER of the stream's master, broadcasts of every kind flow again and every
// stream is subscribed again.
#include <algorithm>
#include <sstream>

#include "cluster_fixture.h"
#include "redis/cluster_client.h"

namespace cable::itcluster {
namespace {

using cable::test::RedisCluster;

const std::vector<std::string> kStreams = {"red", "green", "blue"};
const std::vector<std::string> kFlags = {"--broadcast_adapter", "http,redis,redisx", "--pubsub",
                                         "redis"};

class RedisClusterIt : public ClusterTest {
 protected:
  void MakeCluster(int replicas) {
    if (BrokerProcess::FindBinary(BrokerProcess::Kind::kRedis).empty()) {
      GTEST_SKIP() << "redis-server is not installed";
    }
    ASSERT_TRUE(cluster_.Start(3, replicas)) << cluster_.error() << cluster_.Logs();
  }
  void TearDown() override {
    ClusterTest::TearDown();
    if (HasFailure()) std::cerr << cluster_.Logs().substr(0, 20000);
  }

  std::string Cli(size_t node, const std::vector<std::string>& args) {
    return cluster_.Cli(node, args);
  }
  // Subscribers of `channel` over the whole cluster (PUBSUB NUMSUB counts one node's clients).
  int NumSub(const std::string& channel) {
    int total = 0;
    for (size_t i = 0; i < cluster_.size(); ++i) {
      if (!cluster_.node(i).running()) continue;
      std::istringstream in(Cli(i, {"PUBSUB", "NUMSUB", channel}));
      std::string name, count;
      if (!std::getline(in, name) || !std::getline(in, count)) return -1;
      total += std::atoi(count.c_str());
    }
    return total;
  }
  bool WaitSubscribed(const std::vector<std::string>& channels, std::chrono::milliseconds t) {
    return Poll(
        [&] {
          for (const auto& ch : channels)
            if (NumSub(ch) != kNodes) return false;
          return true;
        },
        t);
  }
  // Cluster nodes with a connection in subscribe mode (a ringcable node's `sub`).
  std::vector<int> NodesWithSubscribers() {
    std::vector<int> out;
    for (size_t i = 0; i < cluster_.size(); ++i) {
      if (!cluster_.node(i).running()) continue;
      std::istringstream in(Cli(i, {"CLIENT", "LIST"}));
      for (std::string line; std::getline(in, line);) {
        size_t at = line.find(" sub=");
        if (at != std::string::npos && line[at + 5] != '0') {
          out.push_back(static_cast<int>(i));
          break;
        }
      }
    }
    return out;
  }
  int StreamOwner() { return cluster_.MasterOf(redis::KeySlot("__anycable__")); }

  PublishFn LegacyPublishOn(int node) {
    return [this, node](const auto& batch) {
      std::vector<std::vector<std::string>> cmds;
      for (const auto& [stream, json] : batch) cmds.push_back({"PUBLISH", "__anycable__", json});
      return RedisPipeTo(cluster_.node(static_cast<size_t>(node)).port(), cmds);
    };
  }
  // XADD on the stream's master (asked now: it changes with failovers).
  PublishFn StreamAdd() {
    return [this](const auto& batch) {
      int owner = StreamOwner();
      if (owner < 0) return false;
      std::vector<std::vector<std::string>> cmds;
      for (const auto& [stream, json] : batch)
        cmds.push_back({"XADD", "__anycable__", "*", "payload", json});
      return RedisPipeTo(cluster_.node(static_cast<size_t>(owner)).port(), cmds);
    };
  }
  PublishFn HttpAlternating() {
    return [this](const auto& batch) {
      for (size_t i = 0; i < batch.size(); ++i) {
        int status = Publish(static_cast<int>(i % kNodes), batch[i].second);
        EXPECT_EQ(status, 201) << "publication " << i << " on node " << i % kNodes;
        if (status != 201) return false;
      }
      return true;
    };
  }
  // Log lengths now, so WaitNodesSeeMaster looks only at what comes after a topology change.
  std::vector<size_t> LogMarks() {
    std::vector<size_t> marks;
    for (int n = 0; n < kNodes; ++n) marks.push_back(NodeLog(n).size());
    return marks;
  }
  // Since `marks`, every ringcable node's `cmd` client logged a slot map naming cluster node
  // `master` as a master: from then on both nodes publish each stream through the same Redis node
  // again, so publications keep their order across ringcable nodes.
  bool WaitNodesSeeMaster(int master, const std::vector<size_t>& marks,
                          std::chrono::milliseconds timeout) {
    const std::string port = "127.0.0.1:" + std::to_string(cluster_.node(master).port());
    return Poll(
        [&] {
          for (int n = 0; n < kNodes; ++n) {
            std::istringstream in(NodeLog(n).substr(marks[static_cast<size_t>(n)]));
            bool seen = false;
            for (std::string line; std::getline(in, line) && !seen;) {
              seen = line.find("redis cmd: cluster slot map") != std::string::npos &&
                     line.find(port) != std::string::npos;
            }
            if (!seen) return false;
          }
          return true;
        },
        timeout);
  }
  int LiveNode() {
    for (size_t i = 0; i < cluster_.size(); ++i)
      if (cluster_.node(i).running()) return static_cast<int>(i);
    return -1;
  }

  // Every kind of broadcast reaches every subscriber exactly once.
  void ExpectEveryAdapterDelivers() {
    ExpectDeliveredOnce(kStreams, 30, HttpAlternating());
    ExpectDeliveredOnce(kStreams, 30, LegacyPublishOn(LiveNode()));
    // Two nodes consume the stream concurrently: exactly once, one order per stream.
    ExpectDeliveredOnce(kStreams, 30, StreamAdd(), /*ordered=*/false);
  }

  // HTTP probes (alternating nodes) until every subscriber heard one, bounded; then one marked
  // publication per stream drains the probes still in flight.
  void ProbeUntilEveryoneHears(std::chrono::seconds limit) {
    std::vector<bool> reached(subs_.size(), false);
    auto deadline = std::chrono::steady_clock::now() + limit;
    int probes = 0;
    while (std::count(reached.begin(), reached.end(), false) > 0 &&
           std::chrono::steady_clock::now() < deadline) {
      for (const auto& stream : kStreams) Publish(probes++ % kNodes, Pub(stream, "\"probe\""));
      for (size_t i = 0; i < subs_.size(); ++i) {
        for (WsFrame f = subs_[i].ws->NextMessage(100ms); f.opcode == 1;
             f = subs_[i].ws->NextMessage(1ms)) {
          if (f.payload == Delivered(subs_[i].identifier, "\"probe\"")) {
            reached[i] = true;
          } else {
            ADD_FAILURE() << subs_[i].Name() << ": unexpected frame " << f.payload;
          }
        }
      }
    }
    for (size_t i = 0; i < subs_.size(); ++i)
      ASSERT_TRUE(reached[i]) << subs_[i].Name() << ": nothing delivered within " << limit.count()
                              << " s of the failover";
    for (const auto& stream : kStreams) ASSERT_EQ(Publish(0, Pub(stream, "\"mark\"")), 201);
    for (auto& sub : subs_) {
      WsFrame f;
      do {
        f = sub.ws->NextMessage(10s);
      } while (f.payload == Delivered(sub.identifier, "\"probe\""));
      ASSERT_EQ(f.payload, Delivered(sub.identifier, "\"mark\"")) << sub.Name();
    }
  }

  RedisCluster cluster_;
};

TEST_F(RedisClusterIt, EveryRedisAdapterDeliversThroughACluster) {
  MakeCluster(/*replicas=*/0);
  std::vector<std::string> flags = kFlags;
  flags.insert(flags.end(), {"--redis_url", cluster_.Url()});
  StartNodes(flags);
  AddSubscribers(kStreams, 2);
  std::vector<std::string> channels = kStreams;
  channels.insert(channels.end(), {"__anycable__", "__anycable_internal__"});
  ASSERT_TRUE(WaitSubscribed(channels, 10s)) << "every node subscribes through the cluster";
  ASSERT_TRUE(Poll(
      [&] {
        const int owner = StreamOwner();
        return owner >= 0 && CountOf(Cli(static_cast<size_t>(owner), {"CLIENT", "LIST"}),
                                     "cmd=xreadgroup") == static_cast<size_t>(kNodes);
      },
      10s))
      << "both nodes read the stream on its master";
  ExpectEveryAdapterDelivers();
  const int owner = StreamOwner();
  EXPECT_TRUE(Poll(
      [&] {
        return Cli(static_cast<size_t>(owner), {"XLEN", "__anycable__"}) == "0\n";
      },
      10s))
      << "entries are XDELed on the stream's master";
  for (int node = 0; node < kNodes; ++node) {
    EXPECT_EQ(Metric(node, "ringcable_redis_connected"), 1) << "node " << node;
    EXPECT_EQ(Metric(node, "ringcable_cluster_publish_failed_total"), 0) << "node " << node;
    EXPECT_NE(NodeLog(node).find("redis: connecting to cluster 127.0.0.1:"), std::string::npos)
        << "node " << node;
  }
}

// A master dies (SIGKILL) and its replica is promoted; later the stream's master hands over with
// CLUSTER FAILOVER. Both times broadcasts of every kind come back and every stream is subscribed.
TEST_F(RedisClusterIt, BroadcastsSurviveFailovers) {
  MakeCluster(/*replicas=*/1);
  std::vector<std::string> flags = kFlags;
  flags.insert(flags.end(), {"--redis_url", cluster_.Url()});
  StartNodes(flags);
  AddSubscribers(kStreams, 1);
  std::vector<std::string> channels = kStreams;
  channels.insert(channels.end(), {"__anycable__", "__anycable_internal__"});
  ASSERT_TRUE(WaitSubscribed(channels, 10s));
  ExpectDeliveredOnce(kStreams, 6, HttpAlternating());
  if (HasFailure()) return;

  // The victim holds at least one node's subscriptions (the stream's master, if it does).
  const auto holders = NodesWithSubscribers();
  ASSERT_FALSE(holders.empty());
  int victim = holders.front();
  if (std::find(holders.begin(), holders.end(), StreamOwner()) != holders.end()) {
    victim = StreamOwner();
  }
  // A slot the victim serves: healthy again once a live node (its replica) serves it.
  int victim_slot = -1;
  for (int i = 0; i < 2000 && victim_slot < 0; ++i) {
    const int slot = redis::KeySlot("probe:" + std::to_string(i));
    if (cluster_.MasterOf(slot) == victim) victim_slot = slot;
  }
  ASSERT_GE(victim_slot, 0);
  RecordProperty("killed_stream_master", victim == StreamOwner() ? "yes" : "no");
  auto marks = LogMarks();
  cluster_.node(static_cast<size_t>(victim)).Kill();
  ASSERT_TRUE(cluster_.WaitHealthy(30s, victim_slot)) << "no failover";
  ASSERT_TRUE(cluster_.WaitHealthy(30s, redis::KeySlot("__anycable__")));
  ASSERT_TRUE(WaitNodesSeeMaster(cluster_.MasterOf(victim_slot), marks, 30s))
      << "both nodes must learn the promoted replica";
  ProbeUntilEveryoneHears(60s);
  if (HasFailure()) return;
  EXPECT_TRUE(WaitSubscribed(channels, 20s)) << "every stream subscribed again";
  ExpectEveryAdapterDelivers();
  if (HasFailure()) return;
  // Whoever had its subscribe connection on the victim said so once and came back once.
  int relinked = 0;
  for (int node = 0; node < kNodes; ++node) {
    const std::string log = NodeLog(node);
    size_t down = CountOf(log, "redis: link down");
    EXPECT_LE(down, 1u) << "node " << node << ": one line per outage";
    if (down == 1) {
      ++relinked;
      EXPECT_EQ(CountOf(log.substr(log.find("redis: link down")), "redis: link up"), 1u)
          << "node " << node;
    }
  }
  EXPECT_GE(relinked, 1) << "at least one node's subscriptions lived on the killed master";

  // The killed node comes back as a replica; then the stream's master fails over by hand.
  ASSERT_TRUE(cluster_.node(static_cast<size_t>(victim)).Restart());
  const int old_owner = StreamOwner();
  int replica = -1;
  ASSERT_TRUE(Poll(
      [&] {
        // A live replica of the stream's master (CLUSTER REPLICAS <id> lists them).
        std::string id = Cli(static_cast<size_t>(old_owner), {"CLUSTER", "MYID"});
        id = id.substr(0, id.find('\n'));
        std::string replicas = Cli(static_cast<size_t>(old_owner), {"CLUSTER", "REPLICAS", id});
        for (size_t i = 0; i < cluster_.size(); ++i) {
          if (cluster_.node(i).running() &&
              replicas.find(":" + std::to_string(cluster_.node(i).port()) + "@") !=
                  std::string::npos &&
              replicas.find("fail") == std::string::npos) {
            replica = static_cast<int>(i);
            return true;
          }
        }
        return false;
      },
      30s))
      << "the stream's master has no live replica";
  marks = LogMarks();
  ASSERT_EQ(Cli(static_cast<size_t>(replica), {"CLUSTER", "FAILOVER"}), "OK\n");
  ASSERT_TRUE(Poll([&] { return StreamOwner() == replica; }, 30s)) << "manual failover";
  ASSERT_TRUE(cluster_.WaitHealthy(30s, redis::KeySlot("__anycable__")));
  // The demoted master still takes PUBLISH: the nodes move by the periodic map re-read.
  ASSERT_TRUE(WaitNodesSeeMaster(replica, marks, 30s)) << "both nodes must learn the new master";
  ExpectEveryAdapterDelivers();
  EXPECT_TRUE(WaitSubscribed(channels, 10s));
  for (int node = 0; node < kNodes; ++node) {
    EXPECT_TRUE(nodes_[node].running()) << "node " << node;
    EXPECT_TRUE(Poll([&] { return Metric(node, "ringcable_redis_connected") == 1; }, 10s))
        << "node " << node;
  }
}

// One address of a cluster (a managed service's configuration endpoint): the nodes find out with
// CLUSTER INFO and route by slot from then on, so redisx works even when that address does not
// own the stream.
TEST_F(RedisClusterIt, SingleNodeUrlIsDetectedAsACluster) {
  MakeCluster(/*replicas=*/0);
  const int owner = StreamOwner();
  ASSERT_GE(owner, 0);
  const size_t other = static_cast<size_t>((owner + 1) % 3);
  std::vector<std::string> flags = kFlags;
  flags.insert(flags.end(), {"--redis_url", cluster_.node(other).url()});
  StartNodes(flags);
  const std::string detected = "redis: 127.0.0.1:" + std::to_string(cluster_.node(other).port()) +
                               " is a Redis Cluster node; using cluster mode";
  for (int node = 0; node < kNodes; ++node) {
    ASSERT_TRUE(Poll([&] { return NodeLog(node).find(detected) != std::string::npos; }, 10s))
        << "node " << node;
  }
  AddSubscribers(kStreams, 1);
  std::vector<std::string> channels = kStreams;
  channels.insert(channels.end(), {"__anycable__", "__anycable_internal__"});
  ASSERT_TRUE(WaitSubscribed(channels, 10s));
  ExpectEveryAdapterDelivers();
  for (int node = 0; node < kNodes; ++node) {
    EXPECT_EQ(CountOf(NodeLog(node), detected), 1u) << "node " << node;
    EXPECT_EQ(NodeLog(node).find("XREADGROUP failed"), std::string::npos) << "node " << node;
  }
}

// A standalone Redis answers CLUSTER INFO with an error: nothing changes.
TEST_F(RedisClusterIt, StandaloneRedisStaysStandalone) {
  if (!StartRedis()) GTEST_SKIP() << "redis-server is not installed";
  std::vector<std::string> flags = kFlags;
  flags.insert(flags.end(), {"--redis_url", redis_.url()});
  StartNodes(flags);
  AddSubscribers({"plain"}, 1);
  ASSERT_TRUE(WaitRedisSubscribed({"plain", "__anycable__", "__anycable_internal__"}, kNodes));
  ExpectDeliveredOnce({"plain"}, 5, HttpAlternating());
  for (int node = 0; node < kNodes; ++node) {
    EXPECT_EQ(NodeLog(node).find("Redis Cluster node"), std::string::npos) << "node " << node;
  }
}

TEST(RedisClusterConfig, BadClusterUrlIsOneErrorLine) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"redis://127.0.0.1:7000/2,redis://127.0.0.1:7001",
       "ringcable: --redis_url: a Redis Cluster has only database 0, got /2 in "
       "\"redis://127.0.0.1:7000/2\"\n"},
      {"redis://127.0.0.1:7000,,redis://127.0.0.1:7001",
       "ringcable: --redis_url: empty address #2 in "
       "\"redis://127.0.0.1:7000,,redis://127.0.0.1:7001\"\n"},
  };
  for (const auto& [url, want] : bad) {
    auto r = cable::test::RunCommand(
        {cable::test::BinaryPath(), "--port", std::to_string(cable::test::FreePort()), "--rpc_host",
         "127.0.0.1:" + std::to_string(cable::test::FreePort()), "--broadcast_adapter",
         "http,redis", "--redis_url", url},
        5s);
    EXPECT_EQ(r.exit_code, 1) << url;
    EXPECT_EQ(r.output, want) << url;
  }
}

}  // namespace
}  // namespace cable::itcluster
