// `--broker nats` (issue #14) through the real binary: two ringcable nodes (--workers 2) sharing a
// real `nats-server -js` for history, offsets and sessions (JetStream streams and KV buckets,
// src/nats/jetstream_store.h) and, by default, for pub/sub. Clients speak actioncable-v1-ext-json.
//
// Covered: a session dropped on node A is restored on node B (restored:true, no Connect RPC) and
// catches up every missed publication exactly once, in order, with the positions every node
// delivered live; positions out of the window / a foreign epoch → reject_history; NATS down while
// pub/sub runs over Redis → live publications still delivered (unstamped), history rejected,
// restore falls back to Connect, one log line, and it heals with the same epoch (JetStream keeps
// its files) and the next offset.
#include "broker_test_util.h"

namespace cable::itcluster {
namespace {

class NatsBroker : public ExtClusterTest {
 protected:
  void StartBrokerNodes(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {
        "--broker", "nats", "--nats_servers", nats_.url(), "--broadcast_adapter", "http"};
    args.insert(args.end(), extra.begin(), extra.end());
    StartNodes(args);
  }
};

#define START_JETSTREAM_OR_SKIP()                                          \
  do {                                                                     \
    if (!StartJetStream()) GTEST_SKIP() << "nats-server is not installed"; \
  } while (0)

TEST_F(NatsBroker, RestoreOnTheOtherNodeCatchesUpEveryMissedPublicationOnceInOrder) {
  START_JETSTREAM_OR_SKIP();
  StartBrokerNodes();
  const std::string id = StreamId("chat");
  std::string welcome;
  auto a = ConnectExt(0, &welcome);
  const std::string sid = StringField(welcome, "sid");
  ASSERT_FALSE(sid.empty()) << welcome;
  SubscribeExt(*a, "chat", true);

  ASSERT_EQ(Publish(1, Pub("chat", SeqData(0))), 201);
  const std::string first = Next(*a);
  const std::string epoch = StringField(first, "epoch");
  ASSERT_FALSE(epoch.empty()) << first;
  EXPECT_EQ(first, Stamped(id, 0, "chat", epoch, 1));

  a->Close();
  ASSERT_TRUE(Poll([&] { return StoredSessions() >= 1; }, 10s));
  ASSERT_TRUE(WaitNatsSubscribed({"chat"}, 0));
  // Missed while away, accepted by both nodes: one cluster-wide sequence of offsets.
  constexpr int kMissed = 6;
  for (int i = 1; i <= kMissed; ++i) ASSERT_EQ(Publish(i % kNodes, Pub("chat", SeqData(i))), 201);

  auto b = ConnectExt(1, &welcome, {{"X-AnyCable-Restore-Sid", sid}});
  const std::string new_sid = StringField(welcome, "sid");
  EXPECT_EQ(welcome, "{\"type\":\"welcome\",\"sid\":\"" + new_sid +
                         "\",\"restored\":true,\"restored_ids\":[" + JsonString(id) + "]}");
  ASSERT_TRUE(WaitNatsSubscribed({"chat"}, 1));
  ASSERT_TRUE(b->SendText(HistoryFrom(id, "chat", epoch, 1)));
  for (int i = 1; i <= kMissed; ++i) EXPECT_EQ(Next(*b), Stamped(id, i, "chat", epoch, i + 1));
  EXPECT_EQ(Next(*b), Reply("confirm_history", id));
  ASSERT_EQ(Publish(0, Pub("chat", SeqData(100))), 201);
  EXPECT_EQ(Next(*b), Stamped(id, 100, "chat", epoch, kMissed + 2));
  EXPECT_EQ(rpc_.connects().size(), 1u);  // the restore made no Connect RPC

  // A sid restores once, cluster-wide: the old one now connects normally.
  auto c = ConnectExt(0, &welcome, {{"X-AnyCable-Restore-Sid", sid}});
  EXPECT_EQ(welcome.find("restored"), std::string::npos) << welcome;
  EXPECT_EQ(rpc_.connects().size(), 2u);
}

TEST_F(NatsBroker, HistoryOutsideTheWindowOrOfAForeignEpochIsRejected) {
  START_JETSTREAM_OR_SKIP();
  StartBrokerNodes({"--history_limit", "3"});
  const std::string id = StreamId("chat");
  std::string welcome;
  auto a = ConnectExt(0, &welcome);
  SubscribeExt(*a, "chat", true);
  for (int i = 1; i <= 5; ++i) ASSERT_EQ(Publish(1, Pub("chat", SeqData(i))), 201);
  std::string epoch;
  for (int i = 1; i <= 5; ++i) {
    const std::string f = Next(*a);
    if (epoch.empty()) epoch = StringField(f, "epoch");
    ASSERT_EQ(f, Stamped(id, i, "chat", epoch, i));
  }
  // Retained: 3..5. From 2 or below, above the top, or another epoch → reject_history.
  for (int64_t from : {2, 0, 9}) {
    ASSERT_TRUE(a->SendText(HistoryFrom(id, "chat", epoch, from)));
    EXPECT_EQ(Next(*a), Reply("reject_history", id)) << from;
  }
  ASSERT_TRUE(a->SendText(HistoryFrom(id, "chat", epoch == "zzzz" ? "yyyy" : "zzzz", 4)));
  EXPECT_EQ(Next(*a), Reply("reject_history", id));
  // A fresh subscriber on the other node gets 4 and 5 from JetStream, then confirm_history.
  auto b = ConnectExt(1, &welcome);
  ASSERT_TRUE(b->SendText("{\"command\":\"subscribe\",\"identifier\":" + JsonString(id) +
                          ",\"history\":{\"streams\":{\"chat\":{\"epoch\":" + JsonString(epoch) +
                          ",\"offset\":3}}}}"));
  EXPECT_EQ(Next(*b), Reply("confirm_subscription", id));
  EXPECT_EQ(Next(*b), Stamped(id, 4, "chat", epoch, 4));
  EXPECT_EQ(Next(*b), Stamped(id, 5, "chat", epoch, 5));
  EXPECT_EQ(Next(*b), Reply("confirm_history", id));
}

TEST_F(NatsBroker, NatsDownDeliversUnstampedRejectsHistoryFallsBackToConnectAndHeals) {
  START_JETSTREAM_OR_SKIP();
  if (!StartRedis()) GTEST_SKIP() << "redis-server is not installed";
  // Pub/sub over Redis, so live delivery does not depend on the broker's NATS.
  StartBrokerNodes({"--pubsub", "redis", "--redis_url", redis_.url()});
  const std::string id = StreamId("chat");
  std::string welcome;
  auto a = ConnectExt(0, &welcome);
  const std::string sid = StringField(welcome, "sid");
  SubscribeExt(*a, "chat");
  ASSERT_EQ(Publish(1, Pub("chat", SeqData(1))), 201);
  const std::string f = Next(*a);
  const std::string epoch = StringField(f, "epoch");
  ASSERT_EQ(f, Stamped(id, 1, "chat", epoch, 1));
  EXPECT_EQ(Metric(1, "ringcable_broker_store_up"), 1);

  nats_.Kill();
  for (int i = 2; i <= 4; ++i) {
    ASSERT_EQ(Publish(1, Pub("chat", SeqData(i))), 201);
    EXPECT_EQ(Next(*a), Delivered(id, SeqData(i)));
  }
  ASSERT_TRUE(a->SendText(HistoryFrom(id, "chat", epoch, 1)));
  EXPECT_EQ(Next(*a), Reply("reject_history", id));
  EXPECT_EQ(CountOf(NodeLog(1), "broker: nats unavailable"), 1u) << NodeLog(1);
  EXPECT_EQ(Metric(1, "ringcable_broker_unstamped_total"), 3);
  EXPECT_EQ(Metric(1, "ringcable_broker_store_up"), 0);
  auto b = ConnectExt(1, &welcome, {{"X-AnyCable-Restore-Sid", sid}});
  EXPECT_EQ(welcome.find("restored"), std::string::npos) << welcome;
  EXPECT_EQ(rpc_.connects().size(), 2u);

  // Back on the same port and store directory: the same epoch, the next offset.
  ASSERT_TRUE(nats_.Restart());
  ASSERT_TRUE(Poll([&] { return Metric(1, "ringcable_broker_store_up") == 1; }, 30s));
  EXPECT_EQ(CountOf(NodeLog(1), "broker: nats is back"), 1u) << NodeLog(1);
  ASSERT_EQ(Publish(1, Pub("chat", SeqData(5))), 201);
  EXPECT_EQ(Next(*a), Stamped(id, 5, "chat", epoch, 2));
  ASSERT_TRUE(a->SendText(HistoryFrom(id, "chat", epoch, 1)));
  EXPECT_EQ(Next(*a), Reply("confirm_history", id));
}

}  // namespace
}  // namespace cable::itcluster
