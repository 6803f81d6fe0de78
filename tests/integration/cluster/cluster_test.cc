// Clusters (issue #6) through the real binary: two ringcable nodes (--workers 2) sharing a real
// redis-server / nats-server, clients on both nodes. Spec: ../shared/spec/anycable.md §1 rows
// "Broadcasting: Redis Pub/Sub", "Redis Streams", "NATS", "Pub/Sub (node↔node)", §2.4, Appendix C.
//
// Covered: the legacy Redis / NATS broadcasters fan out to every node exactly once and in order;
// redisx hands each entry to exactly one node, which re-distributes it through Redis pub/sub
// (XACK + XDEL after); HTTP broadcasts on either node reach both through Redis or NATS pub/sub;
// remote disconnects cross nodes; a node SUBSCRIBEs a stream's channel only while it has local
// subscribers; a broker outage keeps the nodes serving (501 for HTTP broadcasts, one log line per
// transition, metrics) and deliveries resume with every stream resubscribed; bad broker config is
// a one-line error.
#include <algorithm>
#include <sstream>
#include <thread>

#include "cluster_fixture.h"

namespace cable::itcluster {
namespace {

constexpr int kPublications = 100;
const std::vector<std::string> kStreams = {"alpha", "beta", "gamma"};

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string RemoteDisconnect(const std::string& user, bool reconnect) {
  return R"({"command":"disconnect","payload":{"identifier":)" +
         JsonString(R"({"current_user":")" + user + R"("})") +
         ",\"reconnect\":" + (reconnect ? "true" : "false") + "}}";
}

std::string Unsubscribe(const std::string& identifier) {
  return "{\"command\":\"unsubscribe\",\"identifier\":" + JsonString(identifier) + "}";
}

#define START_REDIS_OR_SKIP()                                           \
  do {                                                                  \
    if (!StartRedis()) GTEST_SKIP() << "redis-server is not installed"; \
    ASSERT_TRUE(redis_.running());                                      \
  } while (0)

#define START_NATS_OR_SKIP()                                          \
  do {                                                                \
    if (!StartNats()) GTEST_SKIP() << "nats-server is not installed"; \
    ASSERT_TRUE(nats_.running());                                     \
  } while (0)

class Cluster : public ClusterTest {
 protected:
  // Each publication POSTed to node 0, 1, 0, ... in turn, one after the other; all must be 201.
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
  PublishFn RedisPublish() {
    return [this](const auto& batch) {
      std::vector<std::vector<std::string>> cmds;
      for (const auto& [stream, json] : batch) cmds.push_back({"PUBLISH", "__anycable__", json});
      return RedisPipe(cmds);
    };
  }
  PublishFn NatsPublish() {
    return [this](const auto& batch) {
      for (const auto& [stream, json] : batch)
        if (!cable::test::NatsPublish(nats_.port(), "__anycable__", json)) return false;
      return true;
    };
  }

  // Redis connections whose last command was XREADGROUP (a consumer waiting for entries; Redis
  // 7 creates the consumer itself only when a blocked read is served).
  int BlockedReaders() {
    return static_cast<int>(CountOf(Redis({"CLIENT", "LIST"}), "cmd=xreadgroup"));
  }

  void RemoteDisconnectAcrossNodes(const std::vector<std::string>& flags, bool redis);
  void OutageScenario(bool redis);
};

// ---- broadcasters ----

TEST_F(Cluster, LegacyRedisBroadcastReachesEveryNodeOnceInOrder) {
  START_REDIS_OR_SKIP();
  StartNodes({"--broadcast_adapter", "http,redis", "--redis_url", redis_.url()});
  AddSubscribers(kStreams, 2);
  ASSERT_TRUE(WaitRedisSubscribed({"__anycable__"}, kNodes))
      << "both nodes must SUBSCRIBE __anycable__";
  ExpectDeliveredOnce(kStreams, kPublications, RedisPublish());
}

TEST_F(Cluster, RedisUrlFromEnvironment) {
  START_REDIS_OR_SKIP();
  StartNodes({"--broadcast_adapter", "http,redis"}, {{"REDIS_URL", redis_.url()}});
  AddSubscribers({"env"}, 1);
  ASSERT_TRUE(WaitRedisSubscribed({"__anycable__"}, kNodes))
      << "both nodes must SUBSCRIBE __anycable__ at $REDIS_URL";
  ExpectDeliveredOnce({"env"}, 5, RedisPublish());
}

TEST_F(Cluster, CustomRedisChannel) {
  START_REDIS_OR_SKIP();
  StartNodes({"--broadcast_adapter", "http,redis", "--redis_url", redis_.url(), "--redis_channel",
              "custom_ch"});
  AddSubscribers({"cc"}, 1);
  ASSERT_TRUE(WaitRedisSubscribed({"custom_ch"}, kNodes));
  EXPECT_EQ(RedisNumSub("__anycable__"), 0);
  ExpectDeliveredOnce({"cc"}, 5, [this](const auto& batch) {
    std::vector<std::vector<std::string>> cmds;
    for (const auto& [stream, json] : batch) cmds.push_back({"PUBLISH", "custom_ch", json});
    return RedisPipe(cmds);
  });
}

TEST_F(Cluster, RedisStreamsEntryConsumedByExactlyOneNode) {
  START_REDIS_OR_SKIP();
  // pubsub redis comes on by itself with redisx.
  StartNodes({"--broadcast_adapter", "http,redisx", "--redis_url", redis_.url()});
  AddSubscribers(kStreams, 2);
  ASSERT_TRUE(Poll([&] { return BlockedReaders() == kNodes; }, 10s))
      << "each node should read group bx of stream __anycable__:\n"
      << Redis({"XINFO", "GROUPS", "__anycable__"}) << Redis({"CLIENT", "LIST"});
  ASSERT_TRUE(WaitRedisSubscribed(kStreams, kNodes))
      << "redisx needs pub/sub: each node SUBSCRIBEs its streams";
  // Two nodes consume concurrently, so two entries of one stream taken by different nodes may be
  // re-published in either order (as in anycable-go): exactly once, and one order per stream
  // shared by every subscriber (all come through the same Redis channel).
  ExpectDeliveredOnce(
      kStreams, kPublications,
      [this](const auto& batch) {
        std::vector<std::vector<std::string>> cmds;
        for (const auto& [stream, json] : batch)
          cmds.push_back({"XADD", "__anycable__", "*", "payload", json});
        return RedisPipe(cmds);
      },
      /*ordered=*/false);
  const int64_t total = kPublications + static_cast<int64_t>(kStreams.size());
  EXPECT_TRUE(Poll(
      [&] {
        return Metric(0, "ringcable_redisx_consumed_total") +
                   Metric(1, "ringcable_redisx_consumed_total") ==
               total;
      },
      10s))
      << "consumed: node 0 " << Metric(0, "ringcable_redisx_consumed_total") << ", node 1 "
      << Metric(1, "ringcable_redisx_consumed_total") << ", want a sum of " << total;
  // How the entries were split (informational: either node may take any entry).
  RecordProperty("consumed_by_node0", std::to_string(Metric(0, "ringcable_redisx_consumed_total")));
  RecordProperty("consumed_by_node1", std::to_string(Metric(1, "ringcable_redisx_consumed_total")));
  EXPECT_TRUE(Poll(
      [&] {
        return Redis({"XLEN", "__anycable__"}) == "0\n";
      },
      10s))
      << "entries must be XDELed: XLEN " << Redis({"XLEN", "__anycable__"});
  EXPECT_TRUE(Poll(
      [&] {
        return Lines(Redis({"XPENDING", "__anycable__", "bx"})).front() == "0";
      },
      10s))
      << "entries must be XACKed: " << Redis({"XPENDING", "__anycable__", "bx"});
}

// The URL's password and database reach Redis: a password-protected server, database 3. redisx
// reads (and XDELs) the stream in database 3 only; pub/sub is server-wide.
TEST_F(Cluster, PasswordAndDatabaseFromTheUrl) {
  if (BrokerProcess::FindBinary(BrokerProcess::Kind::kRedis).empty()) {
    GTEST_SKIP() << "redis-server is not installed";
  }
  ASSERT_TRUE(redis_.Start({"--requirepass", "s3cr3t"})) << redis_.Log();
  auto redis = [this](std::vector<std::string> args, int db) {
    args.insert(args.begin(), {"--no-auth-warning", "-a", "s3cr3t", "-n", std::to_string(db)});
    return Redis(args);
  };
  StartNodes({"--broadcast_adapter", "http,redisx", "--redis_url",
              "redis://:s3cr3t@127.0.0.1:" + std::to_string(redis_.port()) + "/3"});
  AddSubscribers({"pw"}, 1);
  ASSERT_TRUE(Poll(
      [&] {
        return CountOf(redis({"CLIENT", "LIST"}, 3), "cmd=xreadgroup") == kNodes &&
               redis({"PUBSUB", "NUMSUB", "pw"}, 0) == "pw\n2\n";
      },
      10s))
      << redis({"CLIENT", "LIST"}, 3) << NodeLog(0);
  ExpectDeliveredOnce(
      {"pw"}, 10,
      [&](const auto& batch) {
        for (const auto& [stream, json] : batch) {
          if (redis({"XADD", "__anycable__", "*", "payload", json}, 3).find('-') ==
              std::string::npos) {
            return false;  // an entry id looks like 1700000000000-0
          }
        }
        return true;
      },
      /*ordered=*/false);
  EXPECT_TRUE(Poll([&] { return redis({"XLEN", "__anycable__"}, 3) == "0\n"; }, 10s));
  EXPECT_EQ(redis({"EXISTS", "__anycable__"}, 0), "0\n") << "nothing may land in database 0";
  EXPECT_EQ(Metric(0, "ringcable_redis_connected"), 1);
}

TEST_F(Cluster, NatsBroadcastReachesEveryNodeOnceInOrder) {
  START_NATS_OR_SKIP();
  StartNodes({"--broadcast_adapter", "http,nats", "--nats_servers", nats_.url()});
  AddSubscribers(kStreams, 2);
  ASSERT_TRUE(WaitNatsSubscribed({"__anycable__"}, kNodes))
      << "both nodes must subscribe NATS subject __anycable__";
  ExpectDeliveredOnce(kStreams, kPublications, NatsPublish());
}

// ---- HTTP broadcasts through pub/sub ----

TEST_F(Cluster, HttpBroadcastOnEitherNodeThroughRedisPubSub) {
  START_REDIS_OR_SKIP();
  StartNodes({"--broadcast_adapter", "http", "--pubsub", "redis", "--redis_url", redis_.url()});
  AddSubscribers(kStreams, 2);
  ASSERT_TRUE(WaitRedisSubscribed(kStreams, kNodes));
  ExpectDeliveredOnce(kStreams, kPublications, HttpAlternating());
  const int64_t total = kPublications + static_cast<int64_t>(kStreams.size());
  EXPECT_TRUE(Poll(
      [&] {
        return Metric(0, "ringcable_cluster_published_total") +
                   Metric(1, "ringcable_cluster_published_total") ==
               total;
      },
      10s))
      << "published: " << Metric(0, "ringcable_cluster_published_total") << " + "
      << Metric(1, "ringcable_cluster_published_total") << ", want " << total;
  for (int node = 0; node < kNodes; ++node) {
    EXPECT_TRUE(
        Poll([&] { return Metric(node, "ringcable_cluster_received_total") == total; }, 10s))
        << "node " << node << " received " << Metric(node, "ringcable_cluster_received_total")
        << ", want " << total;
    EXPECT_EQ(Metric(node, "ringcable_cluster_publish_failed_total"), 0) << "node " << node;
    EXPECT_EQ(Metric(node, "ringcable_redis_connected"), 1) << "node " << node;
  }
}

TEST_F(Cluster, HttpBroadcastOnEitherNodeThroughNatsPubSub) {
  START_NATS_OR_SKIP();
  StartNodes({"--broadcast_adapter", "http", "--pubsub", "nats", "--nats_servers", nats_.url()});
  AddSubscribers(kStreams, 2);
  ASSERT_TRUE(WaitNatsSubscribed(kStreams, kNodes));
  ExpectDeliveredOnce(kStreams, kPublications, HttpAlternating());
  for (int node = 0; node < kNodes; ++node) {
    EXPECT_EQ(Metric(node, "ringcable_cluster_publish_failed_total"), 0) << "node " << node;
    EXPECT_EQ(Metric(node, "ringcable_nats_connected"), 1) << "node " << node;
  }
}

// ---- remote disconnect ----

void Cluster::RemoteDisconnectAcrossNodes(const std::vector<std::string>& flags, bool redis) {
  StartNodes(flags);
  // alice on both nodes (two on node 1: likely on both workers), bob on node 1.
  std::vector<std::pair<int, std::unique_ptr<WsClient>>> alices;
  for (int node : {0, 1, 1}) {
    alices.emplace_back(node, Connect(node, "alice"));
    ASSERT_NE(alices.back().second, nullptr);
    ASSERT_TRUE(Subscribe(*alices.back().second, StreamId("rd")));
  }
  auto bob = Connect(1, "bob");
  ASSERT_NE(bob, nullptr);
  ASSERT_TRUE(Subscribe(*bob, StreamId("rd")));
  const std::vector<std::string> channels = {"__anycable_internal__", "rd"};
  ASSERT_TRUE(redis ? WaitRedisSubscribed(channels, kNodes) : WaitNatsSubscribed(channels, kNodes))
      << "both nodes must subscribe the internal channel and stream rd";

  ASSERT_EQ(Publish(0, RemoteDisconnect("alice", false)), 201);
  for (auto& [node, ws] : alices) {
    EXPECT_EQ(ws->NextMessage(10s).payload,
              R"({"type":"disconnect","reason":"remote","reconnect":false})")
        << "alice on node " << node;
    WsFrame close = ws->WaitClose(10s);
    EXPECT_EQ(close.opcode, 8) << "alice on node " << node;
    EXPECT_EQ(close.close_code(), 1000) << "alice on node " << node;
  }
  ASSERT_EQ(Publish(0, Pub("rd", "\"bob stays\"")), 201);
  EXPECT_EQ(bob->NextMessage(10s).payload, Delivered(StreamId("rd"), "\"bob stays\""));

  ASSERT_EQ(Publish(0, RemoteDisconnect("bob", true)), 201);
  EXPECT_EQ(bob->NextMessage(10s).payload,
            R"({"type":"disconnect","reason":"remote","reconnect":true})");
  EXPECT_EQ(bob->WaitClose(10s).close_code(), 1000);
}

TEST_F(Cluster, RemoteDisconnectCrossesNodesThroughRedis) {
  START_REDIS_OR_SKIP();
  RemoteDisconnectAcrossNodes(
      {"--broadcast_adapter", "http", "--pubsub", "redis", "--redis_url", redis_.url()}, true);
}

TEST_F(Cluster, RemoteDisconnectCrossesNodesThroughNats) {
  START_NATS_OR_SKIP();
  RemoteDisconnectAcrossNodes(
      {"--broadcast_adapter", "http", "--pubsub", "nats", "--nats_servers", nats_.url()}, false);
}

// ---- a node subscribes only streams with local subscribers ----

TEST_F(Cluster, RedisChannelSubscribedOnlyWhileLocalSubscribersExist) {
  START_REDIS_OR_SKIP();
  StartNodes({"--broadcast_adapter", "http", "--pubsub", "redis", "--redis_url", redis_.url()});
  ASSERT_TRUE(WaitRedisSubscribed({"__anycable_internal__"}, kNodes));
  auto channels = [&] { return Lines(Redis({"PUBSUB", "CHANNELS"})); };
  auto has = [&](const std::string& ch) {
    auto list = channels();
    return std::find(list.begin(), list.end(), ch) != list.end();
  };
  EXPECT_FALSE(has("sol")) << "no subscriber yet";

  const std::string id = StreamId("sol");
  auto a = Connect(0);  // node 0
  auto b = Connect(1);  // node 1, unsubscribes first
  auto c = Connect(1);  // node 1, leaves by closing the socket
  ASSERT_TRUE(a && b && c);
  ASSERT_TRUE(Subscribe(*a, id));
  EXPECT_TRUE(Poll([&] { return RedisNumSub("sol") == 1; }, 10s)) << RedisNumSub("sol");
  EXPECT_TRUE(has("sol"));
  ASSERT_TRUE(Subscribe(*b, id));
  ASSERT_TRUE(Subscribe(*c, id));
  EXPECT_TRUE(Poll([&] { return RedisNumSub("sol") == 2; }, 10s)) << RedisNumSub("sol");

  ASSERT_TRUE(a->SendText(Unsubscribe(id)));
  EXPECT_TRUE(Poll([&] { return RedisNumSub("sol") == 1; }, 10s))
      << "node 0 lost its last subscriber: " << RedisNumSub("sol");

  // b leaves, c remains: node 1 must stay subscribed, so a publication on node 0 reaches c.
  ASSERT_TRUE(b->SendText(Unsubscribe(id)));
  // A session runs its commands in order: once this subscription is confirmed, b's unsubscribe
  // has been applied on node 1.
  ASSERT_TRUE(Subscribe(*b, StreamId("side")));
  ASSERT_EQ(Publish(0, Pub("sol", "\"c still here\"")), 201);
  EXPECT_EQ(c->NextMessage(10s).payload, Delivered(id, "\"c still here\""));
  EXPECT_EQ(RedisNumSub("sol"), 1);

  c->Close();
  EXPECT_TRUE(Poll([&] { return !has("sol"); }, 10s))
      << "the last subscriber left: PUBSUB CHANNELS must not list sol";
  EXPECT_EQ(RedisNumSub("__anycable_internal__"), kNodes) << "commands channel stays";
}

TEST_F(Cluster, NatsSubjectSubscribedOnlyWhileLocalSubscribersExist) {
  START_NATS_OR_SKIP();
  StartNodes({"--broadcast_adapter", "http", "--pubsub", "nats", "--nats_servers", nats_.url()});
  ASSERT_TRUE(WaitNatsSubscribed({"__anycable_internal__"}, kNodes));
  EXPECT_EQ(NatsNumSub("nsol"), 0);
  const std::string id = StreamId("nsol");
  auto a = Connect(0);
  auto b = Connect(1);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(Subscribe(*a, id));
  ASSERT_TRUE(Subscribe(*b, id));
  EXPECT_TRUE(WaitNatsSubscribed({"nsol"}, 2)) << NatsNumSub("nsol");
  ASSERT_TRUE(a->SendText(Unsubscribe(id)));
  EXPECT_TRUE(WaitNatsSubscribed({"nsol"}, 1)) << NatsNumSub("nsol");
  b->Close();
  EXPECT_TRUE(WaitNatsSubscribed({"nsol"}, 0)) << NatsNumSub("nsol");
}

// ---- broker outages ----

void Cluster::OutageScenario(bool redis) {
  const std::string prefix = redis ? "redis" : "nats";
  BrokerProcess& broker = redis ? redis_ : nats_;
  if (redis) {
    StartNodes(
        {"--broadcast_adapter", "http,redis", "--redis_url", redis_.url(), "--pubsub", "redis"});
  } else {
    StartNodes(
        {"--broadcast_adapter", "http,nats", "--nats_servers", nats_.url(), "--pubsub", "nats"});
  }
  auto wait_subscribed = [&](const std::vector<std::string>& channels) {
    return redis ? WaitRedisSubscribed(channels, kNodes, 30s)
                 : WaitNatsSubscribed(channels, kNodes, 30s);
  };
  const std::vector<std::string> before = {"o1", "o2"};
  AddSubscribers(before, 1);
  ASSERT_TRUE(wait_subscribed({"o1", "o2", "__anycable__", "__anycable_internal__"}));
  ExpectDeliveredOnce(before, 4, HttpAlternating());
  if (HasFailure()) return;

  broker.Kill();
  for (int node = 0; node < kNodes; ++node) {
    EXPECT_TRUE(
        Poll([&] { return NodeLog(node).find(prefix + ": link down") != std::string::npos; }, 10s))
        << "node " << node << " did not log \"" << prefix << ": link down\"";
    EXPECT_TRUE(Poll([&] { return Metric(node, "ringcable_" + prefix + "_connected") == 0; }, 10s))
        << "node " << node << " ringcable_" << prefix
        << "_connected = " << Metric(node, "ringcable_" + prefix + "_connected");
  }
  // The nodes keep serving: new clients get a welcome and RPC channels work (stream o3 is
  // subscribed during the outage, so it must be subscribed on the broker after it comes back).
  for (int node = 0; node < kNodes; ++node) {
    ASSERT_TRUE(nodes_[node].running()) << "node " << node << " exited during the outage";
    Subscriber sub{node, "o3", StreamId("o3"), Connect(node)};
    ASSERT_NE(sub.ws, nullptr);
    ASSERT_TRUE(Subscribe(*sub.ws, sub.identifier)) << "node " << node;
    subs_.push_back(std::move(sub));
  }
  for (int node = 0; node < kNodes; ++node) {
    EXPECT_EQ(Publish(node, Pub("o1", "\"lost\"")), 501)
        << "node " << node << ": an HTTP broadcast with the pub/sub link down";
    EXPECT_GT(Metric(node, "ringcable_cluster_publish_failed_total"), 0) << "node " << node;
  }
  // Stay down long enough for several reconnect attempts to fail (each must not log a line).
  std::this_thread::sleep_for(1500ms);
  ASSERT_TRUE(broker.Restart()) << prefix << " did not restart on port " << broker.port();

  // Probe until every subscriber on both nodes receives again (bounded).
  const std::vector<std::string> all = {"o1", "o2", "o3"};
  std::vector<bool> reached(subs_.size(), false);
  auto deadline = std::chrono::steady_clock::now() + 30s;
  int probes = 0;
  while (std::count(reached.begin(), reached.end(), false) > 0 &&
         std::chrono::steady_clock::now() < deadline) {
    for (const auto& stream : all) Publish(probes++ % kNodes, Pub(stream, "\"probe\""));
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
    EXPECT_TRUE(reached[i]) << subs_[i].Name() << ": no delivery within 30 s of the restart";
  if (HasFailure()) return;
  EXPECT_TRUE(wait_subscribed({"o1", "o2", "o3", "__anycable__", "__anycable_internal__"}))
      << "every stream with local subscribers must be resubscribed";

  // Drain the probes still in flight, then exact deliveries through HTTP and the broadcaster.
  for (const auto& stream : all) ASSERT_EQ(Publish(0, Pub(stream, "\"mark\"")), 201);
  for (auto& sub : subs_) {
    WsFrame f;
    do {
      f = sub.ws->NextMessage(10s);
    } while (f.payload == Delivered(sub.identifier, "\"probe\""));
    ASSERT_EQ(f.payload, Delivered(sub.identifier, "\"mark\"")) << sub.Name();
  }
  ExpectDeliveredOnce(all, 12, HttpAlternating());
  ExpectDeliveredOnce(all, 12, redis ? RedisPublish() : NatsPublish());

  for (int node = 0; node < kNodes; ++node) {
    EXPECT_TRUE(Poll([&] { return Metric(node, "ringcable_" + prefix + "_connected") == 1; }, 10s))
        << "node " << node;
    const std::string log = NodeLog(node);
    EXPECT_EQ(CountOf(log, prefix + ": link down"), 1u)
        << "node " << node << ": one line per outage, not one per retry";
    size_t down = log.find(prefix + ": link down");
    EXPECT_EQ(down == std::string::npos ? 0 : CountOf(log.substr(down), prefix + ": link up"), 1u)
        << "node " << node << ": one \"link up\" line when the link is back";
    EXPECT_TRUE(nodes_[node].running()) << "node " << node;
  }
}

TEST_F(Cluster, RedisOutageNodesServeAndResubscribe) {
  START_REDIS_OR_SKIP();
  OutageScenario(/*redis=*/true);
}

TEST_F(Cluster, NatsOutageNodesServeAndResubscribe) {
  START_NATS_OR_SKIP();
  OutageScenario(/*redis=*/false);
}

// ---- shutdown while the broker keeps sending ----

TEST_F(Cluster, NodeStopsCleanlyWhileBrokerTrafficFlows) {
  START_REDIS_OR_SKIP();
  StartNodes({"--broadcast_adapter", "http,redis", "--redis_url", redis_.url()});
  AddSubscribers({"flow"}, 1);
  ASSERT_TRUE(WaitRedisSubscribed({"__anycable__"}, kNodes));
  // Publications and remote disconnects (of nobody) keep arriving while node 0 shuts down: every
  // one the node took must be freed (checked by LeakSanitizer in the sanitizer build).
  std::vector<std::vector<std::string>> cmds;
  for (int i = 0; i < 3000; ++i) {
    cmds.push_back({"PUBLISH", "__anycable__",
                    i % 2 ? Pub("flow", SeqData(i)) : RemoteDisconnect("nobody", false)});
  }
  std::thread app([&] { RedisPipe(cmds); });
  WsFrame first = subs_[0].ws->NextMessage(10s);
  EXPECT_NE(SeqOf(first.payload), -1) << first.payload;
  EXPECT_EQ(nodes_[0].Stop(15s), 0) << "node 0 did not exit cleanly on SIGTERM";
  app.join();
  const std::string log = NodeLog(0);
  for (const char* report : {"AddressSanitizer", "LeakSanitizer", "runtime error:"})
    EXPECT_EQ(log.find(report), std::string::npos) << report;
  EXPECT_TRUE(nodes_[1].running());
}

// ---- configuration errors ----

TEST(ClusterConfig, BadBrokerConfigIsOneErrorLine) {
  // Each case: the flags, and the bad value the error must name. The broker URLs are checked in
  // a configuration that uses them (redis is in the default adapter list; nats is asked for).
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"--broadcast_adapter", "foo"}, "foo"},
      {{"--broadcast_adapter", "http,foo"}, "foo"},
      {{"--pubsub", "bogus"}, "bogus"},
      {{"--redis_url", "http://x"}, "http"},
      {{"--redis_url", "http://x", "--broadcast_adapter", "http", "--pubsub", "redis"}, "http"},
      {{"--nats_servers", "ftp://x", "--broadcast_adapter", "http,nats"}, "ftp"},
      {{"--nats_servers", "ftp://x", "--pubsub", "nats", "--broadcast_adapter", "http"}, "ftp"},
  };
  for (const auto& [flags, value] : bad) {
    std::vector<std::string> argv = {cable::test::BinaryPath(), "--port",
                                     std::to_string(cable::test::FreePort()), "--rpc_host",
                                     "127.0.0.1:" + std::to_string(cable::test::FreePort())};
    argv.insert(argv.end(), flags.begin(), flags.end());
    std::string what;
    for (const auto& f : flags) what += f + " ";
    auto r = cable::test::RunCommand(argv, 5s);
    EXPECT_NE(r.exit_code, 0) << what << ": " << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << what << ": " << r.output;
    EXPECT_EQ(r.output.rfind("ringcable: ", 0), 0u) << what << ": " << r.output;
    EXPECT_NE(r.output.find(value), std::string::npos)
        << what << ": the error should name the bad value: " << r.output;
  }
}

}  // namespace
}  // namespace cable::itcluster
