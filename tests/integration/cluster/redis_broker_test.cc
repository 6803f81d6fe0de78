// `--broker redis` (issue #14) through the real binary: two ringcable nodes (--workers 2) sharing
// a real redis-server (history, offsets, sessions) and pub/sub (Redis, or NATS for the outage
// tests so live delivery survives the broker's Redis going away). Clients speak
// actioncable-v1-ext-json. Spec: ../shared/spec/anycable.md rows "Broker / reliable streams",
// "History command", "Session restore".
//
// Covered: a session dropped on node A is restored on node B (restored:true, no Connect) and
// catches up every missed publication exactly once, in order, with the stream_id/epoch/offset
// every node delivered live; a position no longer retained, a foreign epoch, an unknown stream →
// reject_history (exact frame); `since` reads; a sid restores once; a publication accepted by
// either node gets one cluster-wide offset; Redis down → live publications still delivered
// (unstamped), history rejected, restore falls back to Connect, one log line and a metric, and
// everything heals when Redis is back.
#include <algorithm>
#include <atomic>
#include <ctime>
#include <sstream>
#include <thread>

#include "broker_test_util.h"

namespace cable::itcluster {
namespace {

class Broker : public ExtClusterTest {
 protected:
  void StartBrokerNodes(const std::string& pubsub, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"--broker", "redis", "--redis_url",         redis_.url(),
                                     "--pubsub", pubsub,  "--broadcast_adapter", "http"};
    if (pubsub == "nats") {
      args.push_back("--nats_servers");
      args.push_back(nats_.url());
    }
    args.insert(args.end(), extra.begin(), extra.end());
    StartNodes(args);
  }

  // Waits until the session of `sid` is in Redis (the commit is asynchronous).
  bool WaitSessionStored(const std::string& sid) {
    return Poll([&] { return Redis({"EXISTS", "_ac_s:" + sid}).find('1') == 0; }, 10s);
  }
};

#define START_REDIS_OR_SKIP()                                           \
  do {                                                                  \
    if (!StartRedis()) GTEST_SKIP() << "redis-server is not installed"; \
    ASSERT_TRUE(redis_.running());                                      \
  } while (0)

TEST_F(Broker, RestoreOnTheOtherNodeCatchesUpEveryMissedPublicationOnceInOrder) {
  START_REDIS_OR_SKIP();
  StartBrokerNodes("redis");
  const std::string id = StreamId("chat");
  std::string welcome;
  auto a = ConnectExt(0, &welcome);
  const std::string sid = StringField(welcome, "sid");
  ASSERT_FALSE(sid.empty()) << welcome;
  SubscribeExt(*a, "chat");

  ASSERT_EQ(Publish(1, Pub("chat", SeqData(0))), 201);
  const std::string first = Next(*a);
  const std::string epoch = StringField(first, "epoch");
  ASSERT_FALSE(epoch.empty()) << first;
  EXPECT_EQ(first, Stamped(id, 0, "chat", epoch, 1));

  a->Close();
  ASSERT_TRUE(WaitSessionStored(sid));
  ASSERT_TRUE(WaitRedisSubscribed({"chat"}, 0));
  // Missed while away, accepted by both nodes: one cluster-wide sequence of offsets.
  constexpr int kMissed = 6;
  for (int i = 1; i <= kMissed; ++i) ASSERT_EQ(Publish(i % kNodes, Pub("chat", SeqData(i))), 201);

  auto b = ConnectExt(1, &welcome, {{"X-AnyCable-Restore-Sid", sid}});
  const std::string new_sid = StringField(welcome, "sid");
  EXPECT_EQ(welcome, "{\"type\":\"welcome\",\"sid\":\"" + new_sid +
                         "\",\"restored\":true,\"restored_ids\":[" + JsonString(id) + "]}");
  EXPECT_NE(new_sid, sid);
  ASSERT_TRUE(WaitRedisSubscribed({"chat"}, 1));
  ASSERT_TRUE(b->SendText(HistoryFrom(id, "chat", epoch, 1)));
  for (int i = 1; i <= kMissed; ++i) EXPECT_EQ(Next(*b), Stamped(id, i, "chat", epoch, i + 1));
  EXPECT_EQ(Next(*b), Reply("confirm_history", id));
  // Live again, from either node, with the next offset; nothing repeated before it.
  ASSERT_EQ(Publish(0, Pub("chat", SeqData(100))), 201);
  EXPECT_EQ(Next(*b), Stamped(id, 100, "chat", epoch, kMissed + 2));
  // The Connect RPC ran once (the first connection); the restore made none.
  EXPECT_EQ(rpc_.connects().size(), 1u);

  // A sid restores once: the old one now connects normally.
  auto c = ConnectExt(0, &welcome, {{"X-AnyCable-Restore-Sid", sid}});
  EXPECT_EQ(welcome.find("restored"), std::string::npos) << welcome;
  EXPECT_FALSE(StringField(welcome, "sid").empty()) << welcome;
}

TEST_F(Broker, ALiveMessageBeforeTheRestoredClientsHistoryRequestLeavesNoGap) {
  START_REDIS_OR_SKIP();
  StartBrokerNodes("redis");
  const std::string id = StreamId("chat");
  std::string welcome;
  auto a = ConnectExt(0, &welcome);
  const std::string sid = StringField(welcome, "sid");
  SubscribeExt(*a, "chat");
  ASSERT_EQ(Publish(0, Pub("chat", SeqData(1))), 201);
  const std::string epoch = StringField(Next(*a), "epoch");
  a->Close();
  ASSERT_TRUE(WaitSessionStored(sid));
  ASSERT_TRUE(WaitRedisSubscribed({"chat"}, 0));
  for (int i = 2; i <= 4; ++i) ASSERT_EQ(Publish(1, Pub("chat", SeqData(i))), 201);
  auto b = ConnectExt(1, &welcome, {{"X-AnyCable-Restore-Sid", sid}});
  ASSERT_NE(welcome.find("\"restored\":true"), std::string::npos) << welcome;
  ASSERT_TRUE(WaitRedisSubscribed({"chat"}, 1));
  // Live before the client asked for its history: delivered at once ...
  ASSERT_EQ(Publish(0, Pub("chat", SeqData(5))), 201);
  EXPECT_EQ(Next(*b), Stamped(id, 5, "chat", epoch, 5));
  // ... and the history still brings what was missed before it (not 5 again), as the memory
  // broker does.
  ASSERT_TRUE(b->SendText(HistoryFrom(id, "chat", epoch, 1)));
  for (int i = 2; i <= 4; ++i) EXPECT_EQ(Next(*b), Stamped(id, i, "chat", epoch, i));
  EXPECT_EQ(Next(*b), Reply("confirm_history", id));
  ASSERT_EQ(Publish(1, Pub("chat", SeqData(6))), 201);
  EXPECT_EQ(Next(*b), Stamped(id, 6, "chat", epoch, 6));
  // Asking again changes nothing: everything from 2 on was sent.
  ASSERT_TRUE(b->SendText(HistoryFrom(id, "chat", epoch, 1)));
  EXPECT_EQ(Next(*b), Reply("confirm_history", id));
}

TEST_F(Broker, ConcurrentPublishersOnBothNodesGiveEverySubscriberOneContiguousSequence) {
  START_REDIS_OR_SKIP();
  StartBrokerNodes("redis");
  const std::string id = StreamId("chat");
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int node = 0; node < kNodes; ++node) {
    for (int k = 0; k < 2; ++k) {
      std::string welcome;
      clients.push_back(ConnectExt(node, &welcome));
      ASSERT_TRUE(Subscribe(*clients.back(), id));
    }
  }
  ASSERT_TRUE(WaitRedisSubscribed({"chat"}, kNodes));
  // Both nodes publish to one stream at the same time: offsets are assigned in Redis, and every
  // node must deliver them in offset order with no gap (a later offset arriving first would make
  // the earlier one a duplicate to drop, i.e. a gap).
  constexpr int kEach = 60;
  std::vector<std::thread> publishers;
  for (int node = 0; node < kNodes; ++node) {
    publishers.emplace_back([this, node] {
      for (int i = 0; i < kEach; ++i) {
        EXPECT_EQ(Publish(node, Pub("chat", SeqData(node * 1000 + i))), 201);
      }
    });
  }
  for (auto& t : publishers) t.join();
  for (size_t c = 0; c < clients.size(); ++c) {
    for (int64_t want = 1; want <= kNodes * kEach; ++want) {
      const std::string f = Next(*clients[c]);
      ASSERT_EQ(OffsetOf(f), want) << "client " << c << ": " << f;
    }
  }
}

TEST_F(Broker, ALiveOffsetAheadOfAMissingOneIsRepairedFromTheBrokerAndARestartedStreamIsNew) {
  START_REDIS_OR_SKIP();
  StartBrokerNodes("redis");
  const std::string id = StreamId("chat");
  std::string welcome;
  auto a = ConnectExt(0, &welcome);
  SubscribeExt(*a, "chat");
  ASSERT_EQ(Publish(1, Pub("chat", SeqData(1))), 201);
  const std::string f = Next(*a);
  const std::string epoch = StringField(f, "epoch");
  ASSERT_EQ(f, Stamped(id, 1, "chat", epoch, 1));
  // Offset 2 is stored but its pub/sub message is lost (what a node that was not yet subscribed
  // misses); 3 then arrives live: 2 is read back and both go out in order.
  ASSERT_TRUE(RedisPipe(
      {{"INCR", "_ac_{chat}:o"},
       {"XADD", "_ac_{chat}:x", "0-2", "d", SeqData(2), "t", std::to_string(std::time(nullptr))}}));
  ASSERT_EQ(Publish(0, Pub("chat", SeqData(3))), 201);
  EXPECT_EQ(Next(*a), Stamped(id, 2, "chat", epoch, 2));
  EXPECT_EQ(Next(*a), Stamped(id, 3, "chat", epoch, 3));
  EXPECT_EQ(Metric(0, "ringcable_worker_broker_gap_repairs_total"), 1);
  ASSERT_EQ(Publish(1, Pub("chat", SeqData(4))), 201);
  EXPECT_EQ(Next(*a), Stamped(id, 4, "chat", epoch, 4));
  // The stream's numbering expired (10 x --history_ttl idle): offsets start at 1 again, same
  // epoch; that is a new sequence, delivered.
  ASSERT_TRUE(RedisPipe({{"DEL", "_ac_{chat}:o", "_ac_{chat}:x"}}));
  ASSERT_EQ(Publish(0, Pub("chat", SeqData(5))), 201);
  EXPECT_EQ(Next(*a), Stamped(id, 5, "chat", epoch, 1));
  ASSERT_EQ(Publish(0, Pub("chat", SeqData(6))), 201);
  EXPECT_EQ(Next(*a), Stamped(id, 6, "chat", epoch, 2));
}

TEST_F(Broker, SubscribeWithHistoryDuringAFloodGetsEveryOffsetOnceInOrder) {
  START_REDIS_OR_SKIP();
  StartBrokerNodes("redis");
  const std::string id = StreamId("chat");
  std::string welcome;
  auto a = ConnectExt(0, &welcome);
  SubscribeExt(*a, "chat");
  constexpr int kTotal = 300;
  std::atomic<bool> failed{false};
  // Publishes on node 1, which has no subscriber of the stream yet: the history read, node 1's
  // SUBSCRIBE and the live flood race each other.
  std::thread publisher([&] {
    for (int i = 1; i <= kTotal && !failed; ++i) {
      if (Publish(1, Pub("chat", SeqData(i))) != 201) failed = true;
    }
  });
  std::string epoch;
  for (int i = 1; i <= 20; ++i) {
    const std::string f = Next(*a);
    if (epoch.empty()) epoch = StringField(f, "epoch");
    if (OffsetOf(f) != i) {
      failed = true;
      break;
    }
  }
  auto b = ConnectExt(1, &welcome);
  ASSERT_TRUE(b->SendText("{\"command\":\"subscribe\",\"identifier\":" + JsonString(id) +
                          ",\"history\":{\"streams\":{\"chat\":{\"epoch\":" + JsonString(epoch) +
                          ",\"offset\":5}}}}"));
  publisher.join();
  ASSERT_FALSE(failed);
  ASSERT_TRUE(WaitRedisSubscribed({"chat"}, kNodes));
  // One more once node 1 surely listens: anything stamped while it was subscribing is repaired
  // before this one is delivered.
  ASSERT_EQ(Publish(0, Pub("chat", SeqData(kTotal + 1))), 201);
  EXPECT_EQ(Next(*b), Reply("confirm_subscription", id));
  int64_t want = 6;
  bool confirmed = false;
  while (want <= kTotal + 1) {
    const std::string f = Next(*b);
    ASSERT_FALSE(f.empty()) << "timed out waiting for offset " << want;
    if (f == Reply("confirm_history", id)) {
      EXPECT_FALSE(confirmed);
      confirmed = true;
      continue;
    }
    ASSERT_EQ(f, Stamped(id, static_cast<int>(want), "chat", epoch, want));
    ++want;
  }
  if (!confirmed) {
    EXPECT_EQ(Next(*b), Reply("confirm_history", id));
  }
}

TEST_F(Broker, HistoryOutsideTheWindowForeignEpochOrUnknownStreamIsRejected) {
  START_REDIS_OR_SKIP();
  StartBrokerNodes("redis", {"--history_limit", "3"});
  const std::string id = StreamId("chat");
  std::string welcome;
  auto a = ConnectExt(0, &welcome);
  SubscribeExt(*a, "chat");
  for (int i = 1; i <= 5; ++i) ASSERT_EQ(Publish(1, Pub("chat", SeqData(i))), 201);
  std::string epoch;
  for (int i = 1; i <= 5; ++i) {
    const std::string f = Next(*a);
    if (epoch.empty()) epoch = StringField(f, "epoch");
    ASSERT_EQ(f, Stamped(id, i, "chat", epoch, i));
  }
  // Retained: offsets 3..5 (limit 3). From 2 (not retained) → reject; from 1 → reject.
  ASSERT_TRUE(a->SendText(HistoryFrom(id, "chat", epoch, 2)));
  EXPECT_EQ(Next(*a), Reply("reject_history", id));
  ASSERT_TRUE(a->SendText(HistoryFrom(id, "chat", epoch, 0)));
  EXPECT_EQ(Next(*a), Reply("reject_history", id));
  // Above the top → reject; a foreign epoch → reject.
  ASSERT_TRUE(a->SendText(HistoryFrom(id, "chat", epoch, 9)));
  EXPECT_EQ(Next(*a), Reply("reject_history", id));
  ASSERT_TRUE(a->SendText(HistoryFrom(id, "chat", epoch == "zzzz" ? "yyyy" : "zzzz", 4)));
  EXPECT_EQ(Next(*a), Reply("reject_history", id));
  // From 3 (the lowest retained): 4, 5 again? No: this subscription already got them live.
  ASSERT_TRUE(a->SendText(HistoryFrom(id, "chat", epoch, 3)));
  EXPECT_EQ(Next(*a), Reply("confirm_history", id));
  // A fresh subscriber on the other node gets them from history, then live.
  auto b = ConnectExt(1, &welcome);
  ASSERT_TRUE(b->SendText("{\"command\":\"subscribe\",\"identifier\":" + JsonString(id) +
                          ",\"history\":{\"streams\":{\"chat\":{\"epoch\":" + JsonString(epoch) +
                          ",\"offset\":3}}}}"));
  EXPECT_EQ(Next(*b), Reply("confirm_subscription", id));
  EXPECT_EQ(Next(*b), Stamped(id, 4, "chat", epoch, 4));
  EXPECT_EQ(Next(*b), Stamped(id, 5, "chat", epoch, 5));
  EXPECT_EQ(Next(*b), Reply("confirm_history", id));
  // An unknown stream with a position → reject; with `since` only → an empty success.
  const std::string other = StreamId("quiet");
  ASSERT_TRUE(Subscribe(*b, other));
  ASSERT_TRUE(b->SendText(HistoryFrom(other, "quiet", epoch, 1)));
  EXPECT_EQ(Next(*b), Reply("reject_history", other));
  ASSERT_TRUE(b->SendText("{\"command\":\"history\",\"identifier\":" + JsonString(other) +
                          ",\"history\":{\"since\":1}}"));
  EXPECT_EQ(Next(*b), Reply("confirm_history", other));
  // `since` on the busy stream: everything retained (3, 4, 5) not yet sent here (3).
  auto c = ConnectExt(0, &welcome);
  ASSERT_TRUE(Subscribe(*c, id));
  ASSERT_TRUE(c->SendText("{\"command\":\"history\",\"identifier\":" + JsonString(id) +
                          ",\"history\":{\"since\":1}}"));
  EXPECT_EQ(Next(*c), Stamped(id, 3, "chat", epoch, 3));
  EXPECT_EQ(Next(*c), Stamped(id, 4, "chat", epoch, 4));
  EXPECT_EQ(Next(*c), Stamped(id, 5, "chat", epoch, 5));
  EXPECT_EQ(Next(*c), Reply("confirm_history", id));
}

TEST_F(Broker, HistoryExpiredByTtlIsRejected) {
  START_REDIS_OR_SKIP();
  StartBrokerNodes("redis", {"--history_ttl", "1"});
  const std::string id = StreamId("chat");
  std::string welcome;
  auto a = ConnectExt(0, &welcome);
  SubscribeExt(*a, "chat");
  ASSERT_EQ(Publish(0, Pub("chat", SeqData(1))), 201);
  const std::string f = Next(*a);
  const std::string epoch = StringField(f, "epoch");
  ASSERT_EQ(f, Stamped(id, 1, "chat", epoch, 1));
  // The history key expires with --history_ttl (Redis EXPIRE): wait for that, not for a time.
  ASSERT_TRUE(Poll([&] { return Redis({"EXISTS", "_ac_{chat}:x"}).find('0') == 0; }, 10s));
  ASSERT_TRUE(a->SendText(HistoryFrom(id, "chat", epoch, 1)));
  EXPECT_EQ(Next(*a), Reply("reject_history", id));
}

TEST_F(Broker, RedisDownDeliversUnstampedRejectsHistoryFallsBackToConnectAndHeals) {
  START_REDIS_OR_SKIP();
  if (!StartNats()) GTEST_SKIP() << "nats-server is not installed";
  StartBrokerNodes("nats");
  const std::string id = StreamId("chat");
  std::string welcome;
  auto a = ConnectExt(0, &welcome);
  const std::string sid = StringField(welcome, "sid");
  SubscribeExt(*a, "chat", true);
  ASSERT_EQ(Publish(1, Pub("chat", SeqData(1))), 201);
  const std::string f = Next(*a);
  const std::string epoch = StringField(f, "epoch");
  ASSERT_EQ(f, Stamped(id, 1, "chat", epoch, 1));
  EXPECT_EQ(Metric(1, "ringcable_broker_store_up"), 1);

  redis_.Kill();
  // Live publications still arrive, without a position.
  for (int i = 2; i <= 4; ++i) {
    ASSERT_EQ(Publish(1, Pub("chat", SeqData(i))), 201);
    EXPECT_EQ(Next(*a), Delivered(id, SeqData(i)));
  }
  // History is rejected.
  ASSERT_TRUE(a->SendText(HistoryFrom(id, "chat", epoch, 1)));
  EXPECT_EQ(Next(*a), Reply("reject_history", id));
  // One log line for the outage, and the metrics say so.
  EXPECT_EQ(CountOf(NodeLog(1), "broker: redis unavailable"), 1u) << NodeLog(1);
  EXPECT_GE(Metric(1, "ringcable_broker_errors_total"), 3);
  EXPECT_EQ(Metric(1, "ringcable_broker_unstamped_total"), 3);
  EXPECT_EQ(Metric(1, "ringcable_broker_store_up"), 0);
  // A restore falls back to the normal Connect.
  auto b = ConnectExt(1, &welcome, {{"X-AnyCable-Restore-Sid", sid}});
  EXPECT_EQ(welcome.find("restored"), std::string::npos) << welcome;
  EXPECT_FALSE(StringField(welcome, "sid").empty()) << welcome;
  EXPECT_EQ(rpc_.connects().size(), 2u);

  // Back: the broker probes the store by itself; then publications are stamped again (a new
  // epoch: this Redis lost its data).
  ASSERT_TRUE(redis_.Restart());
  ASSERT_TRUE(Poll([&] { return Metric(1, "ringcable_broker_store_up") == 1; }, 10s));
  ASSERT_EQ(Publish(1, Pub("chat", SeqData(5))), 201);
  const std::string stamped = Next(*a);
  ASSERT_GT(OffsetOf(stamped), 0) << stamped;
  const std::string epoch2 = StringField(stamped, "epoch");
  EXPECT_EQ(OffsetOf(stamped), 1);
  EXPECT_EQ(CountOf(NodeLog(1), "broker: redis is back"), 1u);
  EXPECT_EQ(Metric(1, "ringcable_broker_store_up"), 1);
  ASSERT_TRUE(a->SendText(HistoryFrom(id, "chat", epoch2, 1)));
  EXPECT_EQ(Next(*a), Reply("confirm_history", id));
}

TEST(BrokerConfig, UnsupportedRedisUrlsAreOneExactErrorLine) {
  for (const std::vector<std::string>& flags :
       std::vector<std::vector<std::string>>{{"--redis_url", "rediss://127.0.0.1:1"},
                                             {"--redis_url", "redis://h1:1,redis://h2:2"},
                                             {"--redis_sentinels", "127.0.0.1:1"}}) {
    std::vector<std::string> argv = {cable::test::BinaryPath(),
                                     "--port",
                                     std::to_string(cable::test::FreePort()),
                                     "--rpc_host",
                                     "127.0.0.1:" + std::to_string(cable::test::FreePort()),
                                     "--broker",
                                     "redis"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    auto r = cable::test::RunCommand(argv, 5s);
    EXPECT_EQ(r.exit_code, 1) << flags[1];
    EXPECT_EQ(
        r.output,
        "ringcable: --broker redis supports a single plain redis:// server yet (no rediss://, "
        "Sentinel or Cluster)\n")
        << flags[1];
  }
}

}  // namespace
}  // namespace cable::itcluster
