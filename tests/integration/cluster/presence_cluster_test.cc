// Cluster-wide presence (issue #15) through the real binary: two ringcable nodes (--workers 2)
// sharing a real redis-server (`--broker redis`: records in Redis, pub/sub on the same Redis) or
// a real `nats-server -js` (`--broker nats`: records in JetStream KV buckets, pub/sub on NATS);
// every test runs against both (parameterized by the broker).
// Clients speak actioncable-v1-ext-json and subscribe to public $pubsub streams, whose presence
// stream is the stream itself (--streams_presence). Spec row "Presence" and "REST API".
//
// Covered: a join on node A reaches a subscriber on node B, which lists it with `presence`; a
// second session of the same id (on the other node) joins without an event; leaving one session
// emits nothing, leaving the last emits one leave on both nodes; a dropped connection's presence
// expires after --presence_ttl (one leave on both nodes); a session restored on the other node
// within the TTL keeps its presence without leave/join; the REST API on B lists a user present on
// A; bad inputs get the memory store's replies; the broker down → the error reply, and back.
#include "broker_test_util.h"

namespace cable::itcluster {
namespace {

constexpr const char* kApiSecret = "api-s3cret";

class ClusterPresence : public ExtClusterTest, public ::testing::WithParamInterface<std::string> {
 protected:
  bool nats() const { return GetParam() == "nats"; }

  // The broker's server: false when it is not installed (the test skips).
  bool StartBroker() {
    if (nats()) return StartJetStream();
    if (!StartRedis()) return false;
    EXPECT_TRUE(redis_.running());
    return true;
  }
  BrokerProcess& broker() { return nats() ? nats_ : redis_; }

  void StartPresenceNodes(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {
        "--broker", GetParam(),         "--pubsub",     GetParam(), "--broadcast_adapter",
        "http",     "--public_streams", "--api_secret", kApiSecret};
    if (nats()) {
      args.insert(args.end(), {"--nats_servers", nats_.url()});
    } else {
      args.insert(args.end(), {"--redis_url", redis_.url()});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    StartNodes(args);
  }

  // Waits (bounded) until `count` connections subscribed to each stream's channel/subject.
  bool WaitSubscribed(const std::vector<std::string>& streams, int count) {
    return nats() ? WaitNatsSubscribed(streams, count) : WaitRedisSubscribed(streams, count);
  }

  static std::string Ident(const std::string& stream) {
    return "{\"channel\":\"$pubsub\",\"stream_name\":\"" + stream + "\"}";
  }
  static std::string Presence(const std::string& identifier, const std::string& message) {
    return "{\"type\":\"presence\",\"identifier\":" + JsonString(identifier) +
           ",\"message\":" + message + "}";
  }
  static std::string Error(const std::string& identifier) {
    return Presence(identifier, R"({"type":"error","total":0})");
  }
  static std::string Cmd(const std::string& command, const std::string& identifier,
                         const std::string& extra = "") {
    return "{\"command\":\"" + command + "\",\"identifier\":" + JsonString(identifier) + extra +
           "}";
  }
  static std::string Join(const std::string& identifier, const std::string& id,
                          const std::string& info) {
    return Cmd("join", identifier,
               ",\"presence\":{\"id\":" + JsonString(id) + ",\"info\":" + info + "}");
  }

  // An ext client on `node` subscribed to `stream` (the node subscribed to its channel).
  std::unique_ptr<WsClient> Member(int node, const std::string& stream, std::string* sid = nullptr,
                                   const std::map<std::string, std::string>& headers = {}) {
    std::string welcome;
    auto ws = ConnectExt(node, &welcome, headers);
    if (sid) *sid = StringField(welcome, "sid");
    EXPECT_TRUE(Subscribe(*ws, Ident(stream)));
    return ws;
  }

  // Everything sent before is answered: a `presence` round trip through the store.
  std::string Info(WsClient& ws, const std::string& identifier) {
    EXPECT_TRUE(ws.SendText(Cmd("presence", identifier)));
    return Next(ws);
  }

  cable::test::HttpResponse ApiUsers(int node, const std::string& stream) {
    return cable::test::HttpRequest(nodes_[node].port(), "GET",
                                    "/api/presence/" + stream + "/users",
                                    {{"Authorization", std::string("Bearer ") + kApiSecret}});
  }
};

#define START_BROKER_OR_SKIP()                                                    \
  do {                                                                            \
    if (!StartBroker()) GTEST_SKIP() << GetParam() << " server is not installed"; \
  } while (0)

TEST_P(ClusterPresence, JoinOnOneNodeIsListedOnTheOtherAndTheLastLeaveEmitsOnce) {
  START_BROKER_OR_SKIP();
  StartPresenceNodes();
  const std::string id = Ident("room");
  auto a = Member(0, "room");
  auto b = Member(1, "room");
  ASSERT_TRUE(WaitSubscribed({"room"}, 2));

  ASSERT_TRUE(a->SendText(Join(id, "u1", R"({"name":"Jo"})")));
  const std::string join_u1 = Presence(id, R"({"type":"join","info":{"name":"Jo"},"id":"u1"})");
  EXPECT_EQ(Next(*a), join_u1);
  EXPECT_EQ(Next(*b), join_u1);
  const std::string info_u1 =
      Presence(id, R"({"type":"info","total":1,"records":[{"info":{"name":"Jo"},"id":"u1"}]})");
  EXPECT_EQ(Info(*b, id), info_u1);
  // The REST API on node B lists the user present through node A.
  auto users = ApiUsers(1, "room");
  EXPECT_EQ(users.status, 200);
  EXPECT_EQ(users.body,
            R"({"type":"info","total":1,"records":[{"info":{"name":"Jo"},"id":"u1"}]})");
  EXPECT_EQ(ApiUsers(0, "nobody-here").body, R"({"type":"info","total":0})");

  // A second session of u1, on node B: no event (the info reply comes first on both).
  ASSERT_TRUE(b->SendText(Join(id, "u1", R"({"name":"Jo"})")));
  EXPECT_EQ(Info(*b, id), info_u1);
  EXPECT_EQ(Info(*a, id), info_u1);
  // One session leaves: nothing. The last one leaves: one leave event on both nodes.
  ASSERT_TRUE(a->SendText(Cmd("leave", id, R"(,"presence":{"id":"u1"})")));
  EXPECT_EQ(Info(*a, id), info_u1);
  EXPECT_EQ(Info(*b, id), info_u1);
  ASSERT_TRUE(b->SendText(Cmd("leave", id)));
  const std::string leave_u1 = Presence(id, R"({"type":"leave","id":"u1"})");
  EXPECT_EQ(Next(*a), leave_u1);
  EXPECT_EQ(Next(*b), leave_u1);
  EXPECT_EQ(Info(*a, id), Presence(id, R"({"type":"info","total":0})"));
  EXPECT_EQ(Info(*b, id), Presence(id, R"({"type":"info","total":0})"));

  // Switching ids in one session: the old one leaves, the new one joins (once each, everywhere).
  ASSERT_TRUE(b->SendText(Join(id, "u2", "1")));
  EXPECT_EQ(Next(*a), Presence(id, R"({"type":"join","info":1,"id":"u2"})"));
  EXPECT_EQ(Next(*b), Presence(id, R"({"type":"join","info":1,"id":"u2"})"));
  ASSERT_TRUE(b->SendText(Cmd("join", id, R"(,"presence":{"id":"u3"})")));
  for (WsClient* ws : {a.get(), b.get()}) {
    EXPECT_EQ(Next(*ws), Presence(id, R"({"type":"leave","id":"u2"})"));
    EXPECT_EQ(Next(*ws), Presence(id, R"({"type":"join","id":"u3"})"));
  }
  // Unsubscribing leaves.
  ASSERT_TRUE(b->SendText(Cmd("unsubscribe", id)));
  EXPECT_EQ(Next(*a), Presence(id, R"({"type":"leave","id":"u3"})"));
  // Each event was published once, by one of the nodes.
  EXPECT_EQ(Metric(0, "ringcable_broker_presence_events_total") +
                Metric(1, "ringcable_broker_presence_events_total"),
            6);
}

TEST_P(ClusterPresence, ADroppedConnectionExpiresAfterTheTtlWithOneLeaveEverywhere) {
  START_BROKER_OR_SKIP();
  StartPresenceNodes({"--presence_ttl", "2"});
  const std::string id = Ident("room");
  std::string sid_a;
  auto a = Member(0, "room", &sid_a);
  auto b = Member(1, "room");
  auto gone = Member(0, "room");
  ASSERT_TRUE(WaitSubscribed({"room"}, 2));
  ASSERT_TRUE(gone->SendText(Join(id, "u9", "{}")));
  const std::string join_u9 = Presence(id, R"({"type":"join","info":{},"id":"u9"})");
  EXPECT_EQ(Next(*a), join_u9);
  EXPECT_EQ(Next(*b), join_u9);
  EXPECT_EQ(Next(*gone), join_u9);
  // A live session outlives several TTLs (touched every ttl/2): a's own join stays listed while
  // u9's leave comes after the drop.
  ASSERT_TRUE(a->SendText(Join(id, "u1", "{}")));
  EXPECT_EQ(Next(*a), Presence(id, R"({"type":"join","info":{},"id":"u1"})"));
  EXPECT_EQ(Next(*b), Presence(id, R"({"type":"join","info":{},"id":"u1"})"));
  const auto joined_at = std::chrono::system_clock::now();
  gone->Close();
  // The leave arrives once the TTL passed (the wait is bounded by Next's 10 s, no threshold).
  EXPECT_EQ(Next(*a), Presence(id, R"({"type":"leave","id":"u9"})"));
  EXPECT_EQ(Next(*b), Presence(id, R"({"type":"leave","id":"u9"})"));
  EXPECT_EQ(Info(*b, id),
            Presence(id, R"({"type":"info","total":1,"records":[{"info":{},"id":"u1"}]})"));
  // a's session is touched while it lives (every ttl/2): its expiry moves forward.
  if (!nats()) {
    const std::string first = Redis({"ZSCORE", "_ac_p:exp", sid_a});
    ASSERT_FALSE(first.empty());
    ASSERT_TRUE(Poll([&] { return Redis({"ZSCORE", "_ac_p:exp", sid_a}) != first; }, 10s));
  }
  // Still listed well past its join's own expiry (2 s): three TTLs later, no leave came.
  ASSERT_TRUE(Poll([&] { return std::chrono::system_clock::now() > joined_at + 6s; }, 10s));
  EXPECT_EQ(Info(*a, id),
            Presence(id, R"({"type":"info","total":1,"records":[{"info":{},"id":"u1"}]})"));
  EXPECT_EQ(Info(*b, id),
            Presence(id, R"({"type":"info","total":1,"records":[{"info":{},"id":"u1"}]})"));
}

TEST_P(ClusterPresence, ASessionRestoredOnTheOtherNodeKeepsItsPresenceWithoutEvents) {
  START_BROKER_OR_SKIP();
  StartPresenceNodes({"--presence_ttl", "60"});
  const std::string id = Ident("room");
  auto watcher = Member(1, "room");
  std::string sid;
  auto a = Member(0, "room", &sid);
  ASSERT_FALSE(sid.empty());
  ASSERT_TRUE(WaitSubscribed({"room"}, 2));
  ASSERT_TRUE(a->SendText(Join(id, "u1", "{}")));
  const std::string join_u1 = Presence(id, R"({"type":"join","info":{},"id":"u1"})");
  EXPECT_EQ(Next(*watcher), join_u1);
  EXPECT_EQ(Next(*a), join_u1);
  const int64_t sessions_before = nats() ? StoredSessions() : 0;
  a->Close();
  // The dropped session is stored (restorable) once node A handled the close.
  ASSERT_TRUE(Poll(
      [&] {
        return nats() ? StoredSessions() > sessions_before
                      : Redis({"EXISTS", "_ac_s:" + sid}).find('1') == 0;
      },
      10s));
  std::string welcome;
  auto back = ConnectExt(1, &welcome, {{"X-AnyCable-Restore-Sid", sid}});
  ASSERT_NE(welcome.find("\"restored\":true"), std::string::npos) << welcome;
  const std::string new_sid = StringField(welcome, "sid");
  // The records moved to the new sid: no leave/join; listed on both nodes.
  const std::string info_u1 =
      Presence(id, R"({"type":"info","total":1,"records":[{"info":{},"id":"u1"}]})");
  EXPECT_EQ(Info(*back, id), info_u1);
  EXPECT_EQ(Info(*watcher, id), info_u1);
  if (!nats()) {
    ASSERT_TRUE(Poll([&] { return Redis({"EXISTS", "_ac_p:s:" + new_sid}).find('1') == 0; }, 10s));
    EXPECT_EQ(Redis({"EXISTS", "_ac_p:s:" + sid}).find('0'), 0u);
  }
  // The restored session leaves: one leave event (it held u1 alone).
  ASSERT_TRUE(back->SendText(Cmd("leave", id)));
  EXPECT_EQ(Next(*watcher), Presence(id, R"({"type":"leave","id":"u1"})"));
  EXPECT_EQ(Next(*back), Presence(id, R"({"type":"leave","id":"u1"})"));
}

TEST_P(ClusterPresence, BadInputsAndTheBrokerDownGetTheErrorReply) {
  START_BROKER_OR_SKIP();
  StartPresenceNodes();
  const std::string id = Ident("room");
  auto a = Member(0, "room");
  ASSERT_TRUE(WaitSubscribed({"room"}, 1));
  for (const std::string& bad :
       {std::string(), std::string(R"(,"presence":null)"), std::string(R"(,"presence":{})"),
        std::string(R"(,"presence":{"id":""})"), std::string(R"(,"presence":{"id":42})")}) {
    ASSERT_TRUE(a->SendText(Cmd("join", id, bad)));
    EXPECT_EQ(Next(*a), Error(id)) << bad;
  }
  // Unknown subscription: ignored (the next reply is the info's).
  ASSERT_TRUE(a->SendText(Cmd("presence", Ident("unknown"))));
  EXPECT_EQ(Info(*a, id), Presence(id, R"({"type":"info","total":0})"));
  // Non-GET on the REST API: 422; without the secret: 401.
  EXPECT_EQ(cable::test::HttpRequest(nodes_[1].port(), "POST", "/api/presence/room/users",
                                     {{"Authorization", std::string("Bearer ") + kApiSecret}})
                .status,
            422);
  EXPECT_EQ(cable::test::HttpRequest(nodes_[1].port(), "GET", "/api/presence/room/users").status,
            401);

  // The broker goes away: join and presence answer the error reply; the REST API 503.
  broker().Stop();
  ASSERT_TRUE(a->SendText(Join(id, "u1", "{}")));
  EXPECT_EQ(Next(*a), Error(id));
  EXPECT_EQ(Info(*a, id), Error(id));
  EXPECT_EQ(ApiUsers(1, "room").status, 503);
  EXPECT_GE(Metric(0, "ringcable_broker_errors_total"), 1);
  // The broker is back: presence heals (the broker thread probes it while it is down).
  ASSERT_TRUE(broker().Restart()) << broker().Log();
  ASSERT_TRUE(Poll([&] { return Metric(0, "ringcable_broker_store_up") == 1; }, 10s));
  ASSERT_TRUE(WaitSubscribed({"room"}, 1));
  ASSERT_TRUE(a->SendText(Join(id, "u1", "{}")));
  EXPECT_EQ(Next(*a), Presence(id, R"({"type":"join","info":{},"id":"u1"})"));
  EXPECT_EQ(ApiUsers(1, "room").body,
            R"({"type":"info","total":1,"records":[{"info":{},"id":"u1"}]})");
}

INSTANTIATE_TEST_SUITE_P(Brokers, ClusterPresence, ::testing::Values("redis", "nats"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace cable::itcluster
