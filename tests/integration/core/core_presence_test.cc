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

}  // namespace
}  // namespace cable::itcore
