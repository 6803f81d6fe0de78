// Presence through the real binary (--broker memory, actioncable-v1-ext-json): the join / leave /
// presence commands, events to the presence stream (istate "$p"), the info reply, error replies,
// `presence` inside subscribe, RPC CommandResponse.presence, unsubscribe, --presence_ttl expiry,
// session restore without leave/join flicker, and $pubsub streams (--streams_presence). Spec rows
// "Presence" and "REST API" (POST <api_path>/publish, GET <api_path>/presence/<stream>/users).
#include "core_fixture.h"

namespace cable::itcore {
namespace {

class PresenceTest : public CoreTest {
 protected:
  void SetUp() override {
    CoreTest::SetUp();
    // The demo app, plus: PresenceChannel subscriptions get istate $p = their stream, and the
    // actions "rpc_join" / "rpc_leave" answer with CommandResponse.presence.
    rpc_.SetCommandHandler([](const anycable::CommandMessage& req, const tools::Metadata& meta,
                              anycable::CommandResponse* res) {
      grpc::Status st = tools::ScriptedRpcServer::DemoCommand(req, meta, res);
      const bool presence_channel =
          req.identifier().find("\"PresenceChannel\"") != std::string::npos;
      if (req.command() == "subscribe" && presence_channel && res->status() == anycable::SUCCESS) {
        (*res->mutable_env()->mutable_istate())["$p"] = res->streams(0);
      }
      if (req.command() == "message" && req.data().find("rpc_join") != std::string::npos) {
        res->mutable_presence()->set_type("join");
        res->mutable_presence()->set_id("rpc-42");
        res->mutable_presence()->set_info(R"({"name":"Rpc"})");
      }
      if (req.command() == "message" && req.data().find("rpc_join_text") != std::string::npos) {
        res->mutable_presence()->set_info("plain text");  // not JSON: sent as a JSON string
      }
      if (req.command() == "message" && req.data().find("rpc_leave") != std::string::npos) {
        res->mutable_presence()->set_type("leave");
        res->mutable_presence()->set_id("rpc-42");
      }
      return st;
    });
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
  static std::string PresenceChannel(const std::string& stream) {
    return WsClient::Identifier("PresenceChannel", {{"stream", stream}});
  }
};

TEST_F(PresenceTest, JoinLeaveEventsAndInfoCountPresenceIdsNotSessions) {
  StartServer({"--broker", "memory", "--workers", "2"});
  const std::string id = PresenceChannel("room");
  WsClient a, b;
  ConnectExt(a);
  ConnectExt(b);
  SubscribeConfirmed(a, id);
  SubscribeConfirmed(b, id);
  // First session of u1: a join event to every subscriber (the joiner included).
  ASSERT_TRUE(a.SendText(Join(id, "u1", R"({"name":"Jo"})")));
  const std::string join_u1 = Presence(id, R"({"type":"join","info":{"name":"Jo"},"id":"u1"})");
  EXPECT_EQ(Next(a), join_u1);
  EXPECT_EQ(Next(b), join_u1);
  // Joining again as the same id: no event. A second session of u1: no event either.
  ASSERT_TRUE(a.SendText(Join(id, "u1", R"({"name":"Jo"})")));
  ASSERT_TRUE(b.SendText(Join(id, "u1", R"({"name":"Jo"})")));
  ASSERT_TRUE(b.SendText(Cmd("presence", id)));
  EXPECT_EQ(
      Next(b),
      Presence(id, R"({"type":"info","total":1,"records":[{"info":{"name":"Jo"},"id":"u1"}]})"));
  Barrier(a);
  // a leaves (b still holds u1): no event. b leaves: u1's last session, a leave event.
  ASSERT_TRUE(a.SendText(Cmd("leave", id, R"(,"presence":{"id":"u1"})")));
  Barrier(a);
  ASSERT_TRUE(b.SendText(Cmd("leave", id)));
  EXPECT_EQ(Next(a), Presence(id, R"({"type":"leave","id":"u1"})"));
  EXPECT_EQ(Next(b), Presence(id, R"({"type":"leave","id":"u1"})"));
  // Another id without info: a join event without info.
  ASSERT_TRUE(b.SendText(Cmd("join", id, R"(,"presence":{"id":"u2"})")));
  EXPECT_EQ(Next(a), Presence(id, R"({"type":"join","id":"u2"})"));
  EXPECT_EQ(Next(b), Presence(id, R"({"type":"join","id":"u2"})"));
  ASSERT_TRUE(a.SendText(Join(id, "u1", R"({"name":"Jo"})")));
  EXPECT_EQ(Next(a), join_u1);
  EXPECT_EQ(Next(b), join_u1);
  // Records are sorted by id; the client's "data" is ignored.
  ASSERT_TRUE(a.SendText(Cmd("presence", id, R"(,"data":{"return_records":true})")));
  EXPECT_EQ(Next(a), Presence(id, R"({"type":"info","total":2,"records":[)"
                                  R"({"info":{"name":"Jo"},"id":"u1"},{"id":"u2"}]})"));
  // One leave at a time: the two sessions may live on different workers.
  ASSERT_TRUE(a.SendText(Cmd("leave", id)));
  EXPECT_EQ(Next(a), Presence(id, R"({"type":"leave","id":"u1"})"));
  EXPECT_EQ(Next(b), Presence(id, R"({"type":"leave","id":"u1"})"));
  ASSERT_TRUE(b.SendText(Cmd("leave", id)));
  EXPECT_EQ(Next(a), Presence(id, R"({"type":"leave","id":"u2"})"));
  EXPECT_EQ(Next(b), Presence(id, R"({"type":"leave","id":"u2"})"));
  ASSERT_TRUE(a.SendText(Cmd("presence", id)));
  EXPECT_EQ(Next(a), Presence(id, R"({"type":"info","total":0})"));
  Barrier(b);
}

TEST_F(PresenceTest, SwitchingIdsLeavesTheOldOneAndLeavingTwiceIsSilent) {
  StartServer({"--broker", "memory"});
  const std::string id = PresenceChannel("room");
  WsClient a;
  ConnectExt(a);
  SubscribeConfirmed(a, id);
  ASSERT_TRUE(a.SendText(Join(id, "u1", "1")));
  EXPECT_EQ(Next(a), Presence(id, R"({"type":"join","info":1,"id":"u1"})"));
  ASSERT_TRUE(a.SendText(Join(id, "u2", R"("x")")));
  EXPECT_EQ(Next(a), Presence(id, R"({"type":"leave","id":"u1"})"));
  EXPECT_EQ(Next(a), Presence(id, R"({"type":"join","info":"x","id":"u2"})"));
  ASSERT_TRUE(a.SendText(Cmd("leave", id)));
  EXPECT_EQ(Next(a), Presence(id, R"({"type":"leave","id":"u2"})"));
  ASSERT_TRUE(a.SendText(Cmd("leave", id)));
  Barrier(a);
}

TEST_F(PresenceTest, BadInputsGetExactReplies) {
  StartServer({"--broker", "memory"});
  const std::string id = PresenceChannel("room");
  const std::string plain = WsClient::Identifier("ChatChannel", {{"stream", "plain"}});
  WsClient a;
  ConnectExt(a);
  SubscribeConfirmed(a, id);
  SubscribeConfirmed(a, plain);
  // Unknown identifier: ignored, no reply.
  const std::string unknown = PresenceChannel("nope");
  ASSERT_TRUE(a.SendText(Join(unknown, "u1", "{}")));
  ASSERT_TRUE(a.SendText(Cmd("leave", unknown)));
  ASSERT_TRUE(a.SendText(Cmd("presence", unknown)));
  Barrier(a);
  // A subscription without a presence stream: every presence command is an error.
  ASSERT_TRUE(a.SendText(Join(plain, "u1", "{}")));
  EXPECT_EQ(Next(a), Error(plain));
  ASSERT_TRUE(a.SendText(Cmd("leave", plain)));
  EXPECT_EQ(Next(a), Error(plain));
  ASSERT_TRUE(a.SendText(Cmd("presence", plain)));
  EXPECT_EQ(Next(a), Error(plain));
  // Join without a usable presence member.
  for (const std::string& extra :
       {std::string(), std::string(R"(,"presence":null)"), std::string(R"(,"presence":{})"),
        std::string(R"(,"presence":{"id":""})"), std::string(R"(,"presence":{"id":42})"),
        std::string(R"(,"presence":"u1")"), std::string(R"(,"presence":[1])"),
        std::string(R"(,"presence":{"info":{"a":1}})")}) {
    ASSERT_TRUE(a.SendText(Cmd("join", id, extra)));
    EXPECT_EQ(Next(a), Error(id)) << extra;
  }
  // Nothing was recorded.
  ASSERT_TRUE(a.SendText(Cmd("presence", id)));
  EXPECT_EQ(Next(a), Presence(id, R"({"type":"info","total":0})"));
  // The plain actioncable-v1-json protocol has no presence commands: ignored.
  WsClient v1;
  ConnectWelcome(v1, "v1");
  SubscribeConfirmed(v1, id);
  ASSERT_TRUE(v1.SendText(Join(id, "u1", "{}")));
  ASSERT_TRUE(v1.SendText(Cmd("presence", id)));
  Barrier(v1);
  Barrier(a);
}

TEST_F(PresenceTest, WithoutABrokerPresenceIsAnError) {
  StartServer();
  const std::string id = PresenceChannel("room");
  WsClient a;
  ConnectExt(a);
  SubscribeConfirmed(a, id);
  ASSERT_TRUE(a.SendText(Join(id, "u1", "{}")));
  EXPECT_EQ(Next(a), Error(id));
  ASSERT_TRUE(a.SendText(Cmd("presence", id)));
  EXPECT_EQ(Next(a), Error(id));
}

TEST_F(PresenceTest, SubscribeWithPresenceJoinsRightAfterTheConfirmation) {
  StartServer({"--broker", "memory"});
  const std::string id = PresenceChannel("room");
  WsClient a;
  ConnectExt(a);
  ASSERT_TRUE(a.SendText(Cmd("subscribe", id, R"(,"presence":{"id":"u1","info":{"n":1}})")));
  EXPECT_EQ(Next(a), ConfirmFrame(id));
  EXPECT_EQ(Next(a), Presence(id, R"({"type":"join","info":{"n":1},"id":"u1"})"));
  // A rejected subscription joins nothing (and gets no presence reply).
  const std::string rejected = WsClient::Identifier("RejectChannel", {});
  ASSERT_TRUE(a.SendText(Cmd("subscribe", rejected, R"(,"presence":{"id":"u9"})")));
  EXPECT_EQ(Next(a), RejectFrame(rejected));
  ASSERT_TRUE(a.SendText(Cmd("presence", id)));
  EXPECT_EQ(Next(a),
            Presence(id, R"({"type":"info","total":1,"records":[{"info":{"n":1},"id":"u1"}]})"));
}

TEST_F(PresenceTest, RpcCommandResponsePresenceJoinsAndLeaves) {
  StartServer({"--broker", "memory"});
  const std::string id = PresenceChannel("room");
  WsClient a;
  ConnectExt(a);
  SubscribeConfirmed(a, id);
  ASSERT_TRUE(a.Perform(id, R"({"action":"rpc_join"})"));
  EXPECT_EQ(Next(a), Presence(id, R"({"type":"join","info":{"name":"Rpc"},"id":"rpc-42"})"));
  ASSERT_TRUE(a.Perform(id, R"({"action":"rpc_leave"})"));
  EXPECT_EQ(Next(a), Presence(id, R"({"type":"leave","id":"rpc-42"})"));
  ASSERT_TRUE(a.Perform(id, R"({"action":"rpc_join_text"})"));
  EXPECT_EQ(Next(a), Presence(id, R"({"type":"join","info":"plain text","id":"rpc-42"})"));
  // RPC presence on a subscription without a presence stream: nothing happens.
  const std::string plain = WsClient::Identifier("ChatChannel", {{"stream", "plain"}});
  SubscribeConfirmed(a, plain);
  ASSERT_TRUE(a.Perform(plain, R"({"action":"rpc_join"})"));
  Barrier(a);
}

TEST_F(PresenceTest, UnsubscribeLeavesThePresenceStream) {
  StartServer({"--broker", "memory"});
  const std::string id = PresenceChannel("room");
  WsClient a, b;
  ConnectExt(a);
  ConnectExt(b);
  SubscribeConfirmed(a, id);
  SubscribeConfirmed(b, id);
  ASSERT_TRUE(a.SendText(Join(id, "u1", "{}")));
  EXPECT_EQ(Next(a), Presence(id, R"({"type":"join","info":{},"id":"u1"})"));
  EXPECT_EQ(Next(b), Presence(id, R"({"type":"join","info":{},"id":"u1"})"));
  ASSERT_TRUE(a.SendText(Cmd("unsubscribe", id)));
  EXPECT_EQ(Next(b), Presence(id, R"({"type":"leave","id":"u1"})"));
}

TEST_F(PresenceTest, DisconnectedSessionsExpireAfterPresenceTtl) {
  StartServer({"--broker", "memory", "--presence_ttl", "1"});
  const std::string id = PresenceChannel("room");
  WsClient watcher;
  ConnectExt(watcher);
  SubscribeConfirmed(watcher, id);
  {
    WsClient a;
    ConnectExt(a);
    SubscribeConfirmed(a, id);
    ASSERT_TRUE(a.SendText(Join(id, "u1", "{}")));
    EXPECT_EQ(Next(a), Presence(id, R"({"type":"join","info":{},"id":"u1"})"));
    a.Close();
  }
  EXPECT_EQ(Next(watcher), Presence(id, R"({"type":"join","info":{},"id":"u1"})"));
  // The leave arrives once the TTL passed (the client pings keep coming meanwhile).
  auto leave = watcher.WaitFor("\"leave\"", 20s);
  ASSERT_TRUE(leave.has_value());
  EXPECT_EQ(*leave, Presence(id, R"({"type":"leave","id":"u1"})"));
}

TEST_F(PresenceTest, RestoredSessionKeepsItsPresenceWithoutFlicker) {
  StartServer({"--broker", "memory", "--workers", "2", "--presence_ttl", "300"});
  const std::string id = PresenceChannel("room");
  WsClient watcher;
  ConnectExt(watcher);
  SubscribeConfirmed(watcher, id);
  std::string sid;
  {
    WsClient a;
    sid = SidOf(ConnectExt(a));
    SubscribeConfirmed(a, id);
    ASSERT_TRUE(a.SendText(Join(id, "u1", R"({"n":1})")));
    EXPECT_EQ(Next(a), Presence(id, R"({"type":"join","info":{"n":1},"id":"u1"})"));
    a.Close();
  }
  EXPECT_EQ(Next(watcher), Presence(id, R"({"type":"join","info":{"n":1},"id":"u1"})"));
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& r) { return r.disconnects().size() == 1; }, 10s));
  WsClient back;
  const std::string welcome = ConnectExt(back, "/cable", {{"X-AnyCable-Restore-Sid", sid}});
  ASSERT_NE(welcome.find("\"restored\":true"), std::string::npos) << welcome;
  // The client re-sends its join after a restore (as @anycable/core does): no event.
  ASSERT_TRUE(back.SendText(Join(id, "u1", R"({"n":1})")));
  ASSERT_TRUE(back.SendText(Cmd("presence", id)));
  EXPECT_EQ(Next(back),
            Presence(id, R"({"type":"info","total":1,"records":[{"info":{"n":1},"id":"u1"}]})"));
  // The watcher saw neither a leave nor a join: its next frame is this broadcast.
  Broadcast(Publication("room", R"({"after":"restore"})"));
  const std::string f = Next(watcher);
  EXPECT_NE(f.find(R"("message":{"after":"restore"})"), std::string::npos) << f;
  // The restored session owns the record: its leave is the last one.
  ASSERT_TRUE(back.SendText(Cmd("leave", id)));
  EXPECT_EQ(Next(watcher), Presence(id, R"({"type":"leave","id":"u1"})"));
}

TEST_F(PresenceTest, PubSubStreamsHavePresenceUnlessStreamsPresenceIsOff) {
  const std::string id = R"({"channel":"$pubsub","stream_name":"lobby"})";
  {
    StartServer({"--broker", "memory", "--public_streams"});
    WsClient a;
    ConnectExt(a);
    SubscribeConfirmed(a, id);
    ASSERT_TRUE(a.SendText(Join(id, "u1", R"({"n":1})")));
    EXPECT_EQ(Next(a), Presence(id, R"({"type":"join","info":{"n":1},"id":"u1"})"));
    ASSERT_TRUE(a.SendText(Cmd("presence", id)));
    EXPECT_EQ(Next(a),
              Presence(id, R"({"type":"info","total":1,"records":[{"info":{"n":1},"id":"u1"}]})"));
    server_.Kill();
  }
  StartServer({"--broker", "memory", "--public_streams", "--streams_presence=false"});
  WsClient a;
  ConnectExt(a);
  SubscribeConfirmed(a, id);
  ASSERT_TRUE(a.SendText(Join(id, "u1", "{}")));
  EXPECT_EQ(Next(a), Error(id));
}

// ---- REST API ----

TEST_F(PresenceTest, RestApiIsOffWithoutSecretPublicModeOrApiPort) {
  StartServer({"--broker", "memory"});
  EXPECT_EQ(cable::test::HttpRequest(server_.port(), "GET", "/api/presence/room/users").status,
            404);
  EXPECT_EQ(
      cable::test::HttpRequest(server_.port(), "POST", "/api/publish", {}, Publication("room", "1"))
          .status,
      404);
}

TEST_F(PresenceTest, RestApiPublishesAndListsPresenceWithItsSecret) {
  StartServer({"--broker", "memory", "--api_secret", "s3cret", "--api_path", "/rest"});
  const int port = server_.port();
  const std::map<std::string, std::string> auth = {{"Authorization", "Bearer s3cret"}};
  const std::string id = PresenceChannel("room/1");
  WsClient a;
  ConnectExt(a);
  SubscribeConfirmed(a, id);
  ASSERT_TRUE(a.SendText(Join(id, "u1", R"({"n":1})")));
  EXPECT_EQ(Next(a), Presence(id, R"({"type":"join","info":{"n":1},"id":"u1"})"));
  // Presence of a stream (percent-decoded), as JSON.
  auto r = cable::test::HttpRequest(port, "GET", "/rest/presence/room%2F1/users", auth);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["content-type"], "application/json");
  EXPECT_EQ(r.body, R"({"type":"info","total":1,"records":[{"info":{"n":1},"id":"u1"}]})");
  r = cable::test::HttpRequest(port, "GET", "/rest/presence/empty/users", auth);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"type":"info","total":0})");
  // Errors: no/bad token 401, not GET 422, other paths 404; the default prefix is not served.
  EXPECT_EQ(cable::test::HttpRequest(port, "GET", "/rest/presence/room%2F1/users").status, 401);
  EXPECT_EQ(cable::test::HttpRequest(port, "GET", "/rest/presence/room%2F1/users",
                                     {{"Authorization", "Bearer nope"}})
                .status,
            401);
  EXPECT_EQ(cable::test::HttpRequest(port, "POST", "/rest/presence/room%2F1/users", auth).status,
            422);
  EXPECT_EQ(cable::test::HttpRequest(port, "GET", "/rest/presence/users", auth).status, 404);
  EXPECT_EQ(cable::test::HttpRequest(port, "GET", "/rest/other", auth).status, 404);
  EXPECT_EQ(cable::test::HttpRequest(port, "GET", "/api/presence/room%2F1/users", auth).status,
            404);
  // Publish: the /_broadcast body and status codes.
  EXPECT_EQ(cable::test::HttpRequest(port, "POST", "/rest/publish", {}, Publication("room/1", "1"))
                .status,
            401);
  EXPECT_EQ(cable::test::HttpRequest(port, "GET", "/rest/publish", auth).status, 422);
  EXPECT_EQ(cable::test::HttpRequest(port, "POST", "/rest/publish", auth,
                                     Publication("room/1", R"({"via":"api"})"))
                .status,
            201);
  const std::string f = Next(a);
  EXPECT_NE(f.find(R"("message":{"via":"api"})"), std::string::npos) << f;
}

TEST_F(PresenceTest, RestApiSecretIsDerivedFromSecretAndPresenceNeedsABroker) {
  StartServer({"--secret", "k3y"});
  const std::string derived = "100644c7b6c69cbd656ce0dd45e11f5d06a01dfabe1fc3ba4951626b18b4d59c";
  EXPECT_EQ(cable::test::HttpRequest(server_.port(), "GET", "/api/presence/room/users",
                                     {{"Authorization", "Bearer " + derived}})
                .status,
            501);
  EXPECT_EQ(cable::test::HttpRequest(server_.port(), "GET", "/api/presence/room/users",
                                     {{"Authorization", "Bearer k3y"}})
                .status,
            401);
}

TEST_F(PresenceTest, RestApiNeedsNoTokenInPublicMode) {
  StartServer({"--public", "--broker", "memory"});
  auto r = cable::test::HttpRequest(server_.port(), "GET", "/api/presence/room/users");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"type":"info","total":0})");
}

TEST_F(PresenceTest, RestApiOnItsOwnPortServesOnlyTheApi) {
  const int api_port = cable::test::FreePort();
  StartServer({"--broker", "memory", "--api_port", std::to_string(api_port), "--api_secret", "s"});
  const std::map<std::string, std::string> auth = {{"Authorization", "Bearer s"}};
  const std::string id = PresenceChannel("room");
  WsClient a;
  ConnectExt(a);
  SubscribeConfirmed(a, id);
  ASSERT_TRUE(a.SendText(Join(id, "u1", "{}")));
  EXPECT_EQ(Next(a), Presence(id, R"({"type":"join","info":{},"id":"u1"})"));
  // The API port answers the API (with its token) ...
  auto r = cable::test::HttpRequest(api_port, "GET", "/api/presence/room/users", auth);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"type":"info","total":1,"records":[{"info":{},"id":"u1"}]})");
  EXPECT_EQ(cable::test::HttpRequest(api_port, "GET", "/api/presence/room/users").status, 401);
  EXPECT_EQ(cable::test::HttpRequest(api_port, "POST", "/api/publish", auth,
                                     Publication("room", R"({"via":"api_port"})"))
                .status,
            201);
  const std::string f = Next(a);
  EXPECT_NE(f.find(R"("message":{"via":"api_port"})"), std::string::npos) << f;
  // ... and nothing else: no WebSocket, health or broadcast endpoint there.
  EXPECT_EQ(cable::test::HttpRequest(api_port, "GET", "/cable").status, 404);
  EXPECT_EQ(cable::test::HttpRequest(api_port, "GET", "/health").status, 404);
  EXPECT_EQ(cable::test::HttpRequest(api_port, "POST", "/_broadcast", {}, Publication("room", "1"))
                .status,
            404);
  // The main port no longer serves the API.
  EXPECT_EQ(
      cable::test::HttpRequest(server_.port(), "GET", "/api/presence/room/users", auth).status,
      404);
  EXPECT_EQ(cable::test::HttpRequest(server_.port(), "POST", "/api/publish", auth,
                                     Publication("room", "1"))
                .status,
            404);
}

TEST_F(PresenceTest, RestApiSharesASeparateBroadcastPort) {
  // --api_port equal to a separate --http_broadcast_port: one listener serves both.
  const int shared_port = cable::test::FreePort();
  StartServer({"--broker", "memory", "--http_broadcast_port", std::to_string(shared_port),
               "--api_port", std::to_string(shared_port), "--api_secret", "s"});
  broadcast_port_ = shared_port;  // the later flag wins: Broadcast() posts there
  const std::map<std::string, std::string> auth = {{"Authorization", "Bearer s"}};
  EXPECT_EQ(cable::test::HttpRequest(shared_port, "GET", "/api/presence/room/users", auth).body,
            R"({"type":"info","total":0})");
  const std::string id = PresenceChannel("room");
  WsClient a;
  ConnectExt(a);
  SubscribeConfirmed(a, id);
  EXPECT_EQ(cable::test::HttpRequest(shared_port, "POST", "/api/publish", auth,
                                     Publication("room", R"({"n":1})"))
                .status,
            201);
  Broadcast(Publication("room", R"({"n":2})"));
  EXPECT_NE(Next(a).find(R"("message":{"n":1})"), std::string::npos);
  EXPECT_NE(Next(a).find(R"("message":{"n":2})"), std::string::npos);
  EXPECT_EQ(
      cable::test::HttpRequest(server_.port(), "GET", "/api/presence/room/users", auth).status,
      404);
}

TEST_F(PresenceTest, PresenceAndApiRequestsAreMetrics) {
  StartServer(
      {"--broker", "memory", "--api_secret", "s", "--metrics_http", "/metrics", "--workers", "1"});
  const std::map<std::string, std::string> auth = {{"Authorization", "Bearer s"}};
  const std::string room = PresenceChannel("room");
  WsClient a;
  WsClient b;
  ConnectExt(a);
  ConnectExt(b);
  SubscribeConfirmed(a, room);
  SubscribeConfirmed(b, room);
  ASSERT_TRUE(a.SendText(Join(room, "u1", "{}")));
  EXPECT_EQ(Next(a), Presence(room, R"({"type":"join","info":{},"id":"u1"})"));
  EXPECT_EQ(Next(b), Presence(room, R"({"type":"join","info":{},"id":"u1"})"));
  ASSERT_TRUE(b.SendText(Join(room, "u2", "{}")));
  EXPECT_EQ(Next(b), Presence(room, R"({"type":"join","info":{},"id":"u2"})"));
  // Four API requests, two of them refused (no token).
  const int port = server_.port();
  EXPECT_EQ(cable::test::HttpRequest(port, "GET", "/api/presence/room/users", auth).status, 200);
  EXPECT_EQ(cable::test::HttpRequest(port, "GET", "/api/presence/room/users").status, 401);
  EXPECT_EQ(
      cable::test::HttpRequest(port, "POST", "/api/publish", auth, Publication("room", "1")).status,
      201);
  EXPECT_EQ(
      cable::test::HttpRequest(port, "POST", "/api/publish", {}, Publication("room", "1")).status,
      401);
  auto m = cable::test::HttpRequest(port, "GET", "/metrics");
  ASSERT_EQ(m.status, 200);
  for (const char* line :
       {"\nringcable_presence_records_num 2\n", "\nringcable_presence_sessions_num 2\n",
        "\nringcable_presence_streams_num 1\n",
        "\nringcable_worker_api_requests_total{worker=\"0\"} 4\n",
        "\nringcable_worker_api_failed_requests_total{worker=\"0\"} 2\n"}) {
    EXPECT_NE(m.body.find(line), std::string::npos) << line << m.body;
  }
}

// ---- Bad input and bounds (issue #15 hardening) ----

// Reads frames until the `presence` info reply for `identifier` (bounded in count); the frames
// before it in *before.
std::string InfoAfter(WsClient& ws, const std::string& identifier, std::vector<std::string>* before,
                      size_t max_frames) {
  const std::string info_prefix =
      "{\"type\":\"presence\",\"identifier\":" + JsonString(identifier) +
      ",\"message\":{\"type\":\"info\"";
  for (size_t i = 0; i < max_frames; ++i) {
    WsFrame f = ws.NextMessage();
    if (f.opcode != 1) return "";
    if (f.payload.rfind(info_prefix, 0) == 0) return f.payload;
    before->push_back(std::move(f.payload));
  }
  return "";
}

int64_t MetricValue(const std::string& body, const std::string& name) {
  const size_t at = body.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::strtoll(body.c_str() + at + name.size() + 2, nullptr, 10);
}

TEST_F(PresenceTest, AJoinFloodFromOneConnectionKeepsOneRecordAndStopsAtTheStreamBound) {
  StartServer({"--broker", "memory", "--metrics_http", "/metrics", "--workers", "1"});
  const std::string room = PresenceChannel("flood");
  WsClient a;
  ConnectExt(a);
  SubscribeConfirmed(a, room);
  // Leave without a join: silent.
  ASSERT_TRUE(a.SendText(Cmd("leave", room)));
  Barrier(a);
  // 2,000 distinct ids sent back to back by one session: each switches ids (one record at most).
  constexpr int kJoins = 2000;
  for (int i = 0; i < kJoins; ++i) {
    ASSERT_TRUE(a.SendText(Join(room, "id-" + std::to_string(i), "{}")));
  }
  // Events travel through the hub, the info reply does not: read (bounded) until both the last
  // event and the info reply of a `presence` sent after the flood are in.
  ASSERT_TRUE(a.SendText(Cmd("presence", room)));
  const std::string last_join = Presence(room, R"({"type":"join","info":{},"id":"id-1999"})");
  std::vector<std::string> events;
  std::string info;
  for (int i = 0; i < 3 * kJoins && (info.empty() || events.empty() || events.back() != last_join);
       ++i) {
    const std::string f = Next(a);
    ASSERT_FALSE(f.empty()) << "after " << events.size() << " events";
    if (f.find(R"("message":{"type":"info")") != std::string::npos) {
      info = f;
    } else {
      events.push_back(f);
    }
  }
  // Whenever the info was taken, the session held exactly one record.
  EXPECT_NE(info.find(R"({"type":"info","total":1,"records":[{"info":{},"id":"id-)"),
            std::string::npos)
      << info;
  // A join per id and a leave for every id but the last, in order.
  ASSERT_EQ(events.size(), 2u * kJoins - 1);
  EXPECT_EQ(events[0], Presence(room, R"({"type":"join","info":{},"id":"id-0"})"));
  EXPECT_EQ(events[1], Presence(room, R"({"type":"leave","id":"id-0"})"));
  EXPECT_EQ(events.back(), last_join);
  ASSERT_TRUE(a.SendText(Cmd("presence", room)));
  EXPECT_EQ(Next(a),
            Presence(room, R"({"type":"info","total":1,"records":[{"info":{},"id":"id-1999"}]})"));
  auto m = cable::test::HttpRequest(server_.port(), "GET", "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(MetricValue(m.body, "ringcable_presence_records_num"), 1) << m.body;
  EXPECT_EQ(MetricValue(m.body, "ringcable_presence_sessions_num"), 1) << m.body;

  // 100 presence streams per session: the 101st join gets the error reply and records nothing.
  constexpr int kStreams = 100;
  for (int i = 0; i < kStreams; ++i) {
    SubscribeConfirmed(a, PresenceChannel("s" + std::to_string(i)));
  }
  const std::string over = PresenceChannel("s-over");
  SubscribeConfirmed(a, over);
  for (int i = 1; i < kStreams; ++i) {  // "flood" is the first of the 100
    const std::string id = PresenceChannel("s" + std::to_string(i));
    ASSERT_TRUE(a.SendText(Join(id, "u", "1")));
    ASSERT_EQ(Next(a), Presence(id, R"({"type":"join","info":1,"id":"u"})")) << i;
  }
  ASSERT_TRUE(a.SendText(Join(over, "u", "1")));
  EXPECT_EQ(Next(a), Error(over));
  ASSERT_TRUE(a.SendText(Join(over, "u", "1")));  // again: still refused, nothing grew
  EXPECT_EQ(Next(a), Error(over));
  ASSERT_TRUE(a.SendText(Cmd("presence", over)));
  EXPECT_EQ(Next(a), Presence(over, R"({"type":"info","total":0})"));
  m = cable::test::HttpRequest(server_.port(), "GET", "/metrics");
  EXPECT_EQ(MetricValue(m.body, "ringcable_presence_records_num"), kStreams) << m.body;
  EXPECT_EQ(MetricValue(m.body, "ringcable_presence_streams_num"), kStreams) << m.body;
  // Leaving one frees a slot.
  ASSERT_TRUE(a.SendText(Cmd("leave", PresenceChannel("s1"))));
  EXPECT_EQ(Next(a), Presence(PresenceChannel("s1"), R"({"type":"leave","id":"u"})"));
  ASSERT_TRUE(a.SendText(Join(over, "u", "1")));
  EXPECT_EQ(Next(a), Presence(over, R"({"type":"join","info":1,"id":"u"})"));
}

TEST_F(PresenceTest, MalformedAndOversizedPresencePayloadsAreRefusedAndLoseNothing) {
  StartServer({"--broker", "memory", "--max_message_size", "65536"});
  const std::string room = PresenceChannel("odd");
  WsClient a;
  ConnectExt(a);
  SubscribeConfirmed(a, room);
  ASSERT_TRUE(a.SendText(Join(room, "keep", "{}")));
  EXPECT_EQ(Next(a), Presence(room, R"({"type":"join","info":{},"id":"keep"})"));
  // Ids that are not non-empty strings; presence members that are not objects.
  for (const std::string& extra :
       {std::string(R"(,"presence":{"id":{"a":1}})"), std::string(R"(,"presence":{"id":[]})"),
        std::string(R"(,"presence":{"id":true})"), std::string(R"(,"presence":{"id":null})"),
        std::string(R"(,"presence":7)"), std::string(R"(,"presence":true)")}) {
    ASSERT_TRUE(a.SendText(Cmd("join", room, extra)));
    EXPECT_EQ(Next(a), Error(room)) << extra;
  }
  // The refused joins changed nothing: "keep" is still this session's record.
  ASSERT_TRUE(a.SendText(Cmd("presence", room)));
  EXPECT_EQ(Next(a),
            Presence(room, R"({"type":"info","total":1,"records":[{"info":{},"id":"keep"}]})"));
  // A large info within --max_message_size is kept verbatim.
  const std::string big_info = "\"" + std::string(60000, 'i') + "\"";
  ASSERT_TRUE(a.SendText(Join(room, "big", big_info)));
  EXPECT_EQ(Next(a), Presence(room, R"({"type":"leave","id":"keep"})"));
  EXPECT_EQ(Next(a), Presence(room, R"({"type":"join","info":)" + big_info + R"(,"id":"big"})"));
  // Over --max_message_size: the connection is closed (1009), the server goes on and the
  // session's record expires like any closed session's.
  WsClient b;
  ConnectExt(b);
  SubscribeConfirmed(b, room);
  ASSERT_TRUE(b.SendText(Join(room, "huge", "\"" + std::string(70000, 'h') + "\"")));
  WsFrame closed = b.WaitClose();
  EXPECT_EQ(closed.opcode, 8);
  EXPECT_EQ(closed.close_code(), 1009);
  ASSERT_TRUE(a.SendText(Cmd("presence", room)));
  std::vector<std::string> before;
  EXPECT_EQ(InfoAfter(a, room, &before, 10),
            Presence(room, R"({"type":"info","total":1,"records":[{"info":)" + big_info +
                               R"(,"id":"big"}]})"));
  EXPECT_TRUE(before.empty());
}

TEST_F(PresenceTest, RestApiOddPathsAreAnsweredWithoutNormalizing) {
  StartServer({"--broker", "memory", "--api_secret", "s"});
  const int port = server_.port();
  const std::map<std::string, std::string> auth = {{"Authorization", "Bearer s"}};
  const std::string odd = PresenceChannel("room/1 \xc3\xa9");
  const std::string dots = PresenceChannel("..");
  WsClient a;
  ConnectExt(a);
  SubscribeConfirmed(a, odd);
  SubscribeConfirmed(a, dots);
  ASSERT_TRUE(a.SendText(Join(odd, "u1", "{}")));
  EXPECT_EQ(Next(a), Presence(odd, R"({"type":"join","info":{},"id":"u1"})"));
  ASSERT_TRUE(a.SendText(Join(dots, "u2", "{}")));
  EXPECT_EQ(Next(a), Presence(dots, R"({"type":"join","info":{},"id":"u2"})"));
  const std::string u1 = R"({"type":"info","total":1,"records":[{"info":{},"id":"u1"}]})";
  const std::string u2 = R"({"type":"info","total":1,"records":[{"info":{},"id":"u2"}]})";
  const std::string none = R"({"type":"info","total":0})";
  struct Case {
    std::string path;
    int status;
    std::string body;  // checked when the status is 200
  };
  const std::vector<Case> cases = {
      // The stream segment is percent-decoded (upper or lower case hex), nothing else is done.
      {"/api/presence/room%2F1%20%C3%A9/users", 200, u1},
      {"/api/presence/room%2f1%20%c3%a9/users", 200, u1},
      {"/api/presence/room/1%20%C3%A9/users", 200, u1},  // a raw '/' inside the stream
      {"/api/presence/../users", 200, u2},               // ".." is a stream name, not a step up
      {"/api/presence/%2E%2E/users", 200, u2},
      {"/api/presence/a%00b/users", 200, none},  // NUL decoded into the name: nobody there
      {"/api/presence/%zz%/users", 200, none},   // bad escapes are kept as they are
      {"/api/presence/" + std::string(8000, 'x') + "/users", 200, none},
      // Not the presence path: 404.
      {"/api/presence/room/users/", 404, ""},
      {"/api/presence//users", 404, ""},
      {"/api/presence/users", 404, ""},
      {"/api/presence/room/usersx", 404, ""},
      {"/api/presence/", 404, ""},
      {"/api/presence", 404, ""},
      {"/api/Presence/room/users", 404, ""},
      // A request head over 16 KiB: 431, the connection is closed.
      {"/api/presence/" + std::string(17000, 'y') + "/users", 431, ""},
  };
  for (const auto& c : cases) {
    auto r = cable::test::HttpRequest(port, "GET", c.path, auth);
    EXPECT_EQ(r.status, c.status) << c.path.substr(0, 80);
    if (c.status == 200) {
      EXPECT_EQ(r.body, c.body) << c.path.substr(0, 80);
    }
  }
  // Still serving: the WebSocket session and the API.
  ASSERT_TRUE(a.SendText(Cmd("presence", odd)));
  EXPECT_EQ(Next(a), Presence(odd, u1));
  EXPECT_EQ(cable::test::HttpRequest(port, "GET", "/api/presence/%2E%2E/users", auth).body, u2);
}

}  // namespace
}  // namespace cable::itcore
