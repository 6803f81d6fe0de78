// Extended protocol (actioncable-v1-ext-json) and reliable streams through the real binary: sid in
// the welcome, ping/pong commands, --pong_timeout, --broker memory positions on broadcasts, the
// history command (and history inside subscribe), and session restore (spec rows "Pong
// requirement", "Broker / reliable streams", "History command", "Session restore"; §5 items 5,
// 17, 39).
#include <atomic>
#include <set>
#include <thread>

#include "core_fixture.h"

namespace cable::itcore {
namespace {

class StreamsTest : public CoreTest {
 protected:
  // An ext connection (no X-Request-ID: the server generates the sid). Returns the welcome.
  static std::string ExtFrame(const std::string& identifier, const std::string& message,
                              const std::string& stream, const std::string& epoch,
                              uint64_t offset) {
    return "{\"identifier\":" + JsonString(identifier) + ",\"message\":" + message +
           ",\"stream_id\":" + JsonString(stream) + ",\"epoch\":" + JsonString(epoch) +
           ",\"offset\":" + std::to_string(offset) + "}";
  }
  static std::string EpochOf(const std::string& frame) { return StringFieldOf(frame, "epoch"); }
  static std::string ConfirmHistory(const std::string& identifier) {
    return "{\"type\":\"confirm_history\",\"identifier\":" + JsonString(identifier) + "}";
  }
  static std::string RejectHistory(const std::string& identifier) {
    return "{\"type\":\"reject_history\",\"identifier\":" + JsonString(identifier) + "}";
  }
  static std::string HistoryCmd(const std::string& identifier, const std::string& history) {
    return "{\"command\":\"history\",\"identifier\":" + JsonString(identifier) +
           ",\"history\":" + history + "}";
  }
  // Publishes n messages {"n":<i>} (first..first+n-1) to `stream` in one batch.
  void PublishN(const std::string& stream, int first, int n) {
    std::string body = "[";
    for (int i = 0; i < n; ++i) {
      if (i) body += ',';
      body += Publication(stream, "{\"n\":" + std::to_string(first + i) + "}");
    }
    body += "]";
    Broadcast(body);
  }
  // Learns the broker epoch: an ext subscriber of a scratch stream gets one publication.
  std::string LearnEpoch() {
    WsClient ws;
    ConnectExt(ws);
    const std::string id = WsClient::Identifier("ChatChannel", {{"stream", "epoch_probe"}});
    SubscribeConfirmed(ws, id);
    Broadcast(Publication("epoch_probe", "{}"));
    return EpochOf(Next(ws));
  }
};

// ---- 1. Extended protocol ----

TEST_F(StreamsTest, ExtIsNegotiatedWhenOfferedAloneAndWelcomeCarriesAGeneratedSid) {
  StartServer();
  WsClient ws;
  const std::string welcome = ConnectExt(ws);
  const std::string sid = SidOf(welcome);
  ASSERT_EQ(sid.size(), 21u) << welcome;
  for (char ch : sid) {
    EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-') << sid;
  }
  EXPECT_EQ(welcome, WelcomeFrame(sid));
  // The sid the app saw (metadata) is the one in the welcome.
  ASSERT_EQ(rpc_.connects().size(), 1u);
  EXPECT_EQ(rpc_.connects()[0].meta.sid, sid);
  // Two connections never share a sid.
  WsClient other;
  EXPECT_NE(SidOf(ConnectExt(other)), sid);
}

TEST_F(StreamsTest, V1CommandsKeepWorkingUnderExtAndPingPongCommands) {
  StartServer();
  WsClient ws;
  ConnectExt(ws);
  const std::string id = WsClient::Identifier("ChatChannel", {{"stream", "room"}});
  SubscribeConfirmed(ws, id);
  ASSERT_TRUE(ws.SendText(R"({"command":"pong"})"));  // accepted, no reply
  ASSERT_TRUE(ws.SendText(R"({"command":"ping"})"));
  EXPECT_EQ(Next(ws), R"({"type":"pong"})");
  Broadcast(Publication("room", R"({"text":"hi"})"));
  // No broker: no positions, even under ext.
  EXPECT_EQ(Next(ws), MessageFrame(id, R"({"text":"hi"})"));
}

TEST_F(StreamsTest, ExtClientThatNeverPongsIsDisconnectedWithNoPong) {
  StartServer({"--ping_interval", "1", "--pong_timeout", "1", "--metrics_http", "/metrics",
               "--workers", "1"});
  WsClient ws;
  ConnectExt(ws);
  // A ping, then (no answer) the no_pong disconnect and close 1000 "No Pong".
  WsFrame ping = ws.Next(10s);
  ASSERT_EQ(ping.opcode, 1);
  EXPECT_NE(ping.payload.find("\"type\":\"ping\""), std::string::npos) << ping.payload;
  auto d = ws.WaitFor("disconnect", 10s);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(*d, R"({"type":"disconnect","reason":"no_pong","reconnect":true})");
  WsFrame close = ws.WaitClose(10s);
  EXPECT_EQ(close.close_code(), 1000);
  EXPECT_EQ(close.close_reason(), "No Pong");
  auto m = cable::test::HttpRequest(server_.port(), "GET", "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_NE(m.body.find("ringcable_worker_no_pong_total{worker=\"0\"} 1"), std::string::npos)
      << m.body;
}

TEST_F(StreamsTest, AnsweringPingsKeepsAnExtClientAndV1ClientsNeedNoPong) {
  StartServer({"--ping_interval", "1", "--pong_timeout", "1"});
  WsClient ext;
  ConnectExt(ext);
  WsClient v1;
  ConnectWelcome(v1, "v1");
  // The ext client answers three pings; the v1 client answers none.
  for (int i = 0; i < 3; ++i) {
    WsFrame f = ext.Next(10s);
    ASSERT_EQ(f.opcode, 1) << i;
    ASSERT_NE(f.payload.find("\"type\":\"ping\""), std::string::npos) << f.payload;
    ASSERT_TRUE(ext.SendText(R"({"command":"pong"})"));
  }
  for (int i = 0; i < 3; ++i) {
    WsFrame f = v1.Next(10s);
    ASSERT_EQ(f.opcode, 1) << i;
    ASSERT_NE(f.payload.find("\"type\":\"ping\""), std::string::npos) << f.payload;
  }
  // Both still served.
  ASSERT_TRUE(ext.SendText(R"({"command":"ping"})"));
  EXPECT_TRUE(ext.WaitFor(R"({"type":"pong"})", 10s).has_value());
  Barrier(v1);
}

// ---- 2. Memory broker: positions ----

TEST_F(StreamsTest, BrokerStampsOffsetsForExtClientsAndV1FramesStayUnchanged) {
  StartServer({"--broker", "memory"});
  WsClient ext;
  ConnectExt(ext);
  WsClient v1;
  ConnectWelcome(v1, "v1");
  const std::string id = WsClient::Identifier("ChatChannel", {{"stream", "room"}});
  SubscribeConfirmed(ext, id);
  SubscribeConfirmed(v1, id);
  PublishN("room", 1, 3);
  const std::string first = Next(ext);
  const std::string epoch = EpochOf(first);
  ASSERT_EQ(epoch.size(), 4u) << first;
  EXPECT_EQ(first, ExtFrame(id, R"({"n":1})", "room", epoch, 1));
  EXPECT_EQ(Next(ext), ExtFrame(id, R"({"n":2})", "room", epoch, 2));
  EXPECT_EQ(Next(ext), ExtFrame(id, R"({"n":3})", "room", epoch, 3));
  for (int i = 1; i <= 3; ++i) {
    EXPECT_EQ(Next(v1), MessageFrame(id, "{\"n\":" + std::to_string(i) + "}"));
  }
  // Transient publications get no position (and are not stored).
  Broadcast(R"({"stream":"room","data":"{\"t\":1}","meta":{"transient":true}})");
  EXPECT_EQ(Next(ext), MessageFrame(id, R"({"t":1})"));
  // Each stream counts on its own; a stream without subscribers still gets offsets (§5 item 17).
  PublishN("elsewhere", 1, 2);
  PublishN("room", 4, 1);
  EXPECT_EQ(Next(ext), ExtFrame(id, R"({"n":4})", "room", epoch, 4));
}

TEST_F(StreamsTest, ConcurrentProducersGetOneOffsetOrderEverySubscriberSees) {
  StartServer({"--broker", "memory", "--workers", "2"});
  const std::string id = WsClient::Identifier("ChatChannel", {{"stream", "busy"}});
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(std::make_unique<WsClient>());
    ConnectExt(*clients.back());
    SubscribeConfirmed(*clients.back(), id);
  }
  constexpr int kProducers = 4;
  constexpr int kEach = 25;
  std::vector<std::thread> producers;
  std::atomic<int> failures{0};
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kEach; ++i) {
        auto r = cable::test::HttpRequest(broadcast_port_, "POST", "/_broadcast",
                                          {{"Content-Type", "application/json"}},
                                          Publication("busy", "{\"p\":" + std::to_string(p) + "}"));
        if (r.status != 201) failures.fetch_add(1);
      }
    });
  }
  for (auto& t : producers) t.join();
  ASSERT_EQ(failures.load(), 0);
  for (auto& ws : clients) {
    for (int expected = 1; expected <= kProducers * kEach; ++expected) {
      const std::string f = Next(*ws);
      ASSERT_NE(f.find(",\"offset\":" + std::to_string(expected) + "}"), std::string::npos)
          << "expected offset " << expected << ", got " << f;
    }
  }
}

// ---- 3. History ----

TEST_F(StreamsTest, HistorySinceAndFromAnOffsetDeliverMissedMessagesThenConfirm) {
  StartServer({"--broker", "memory"});
  PublishN("room", 1, 3);  // no subscriber yet: stored anyway
  const std::string epoch = LearnEpoch();
  WsClient ws;
  ConnectExt(ws);
  const std::string id = WsClient::Identifier("ChatChannel", {{"stream", "room"}});
  SubscribeConfirmed(ws, id);
  ASSERT_TRUE(ws.SendText(HistoryCmd(id, R"({"since":1})")));
  EXPECT_EQ(Next(ws), ExtFrame(id, R"({"n":1})", "room", epoch, 1));
  EXPECT_EQ(Next(ws), ExtFrame(id, R"({"n":2})", "room", epoch, 2));
  EXPECT_EQ(Next(ws), ExtFrame(id, R"({"n":3})", "room", epoch, 3));
  EXPECT_EQ(Next(ws), ConfirmHistory(id));
  // From a position: only what follows it; at the top: nothing, still confirmed.
  ASSERT_TRUE(ws.SendText(
      HistoryCmd(id, R"({"streams":{"room":{"offset":2,"epoch":")" + epoch + R"("}}})")));
  EXPECT_EQ(Next(ws), ConfirmHistory(id));  // 3 was already sent on this connection
  WsClient fresh;
  ConnectExt(fresh);
  SubscribeConfirmed(fresh, id);
  ASSERT_TRUE(fresh.SendText(
      HistoryCmd(id, R"({"streams":{"room":{"offset":2,"epoch":")" + epoch + R"("}}})")));
  EXPECT_EQ(Next(fresh), ExtFrame(id, R"({"n":3})", "room", epoch, 3));
  EXPECT_EQ(Next(fresh), ConfirmHistory(id));
  ASSERT_TRUE(fresh.SendText(
      HistoryCmd(id, R"({"streams":{"room":{"offset":3,"epoch":")" + epoch + R"("}}})")));
  EXPECT_EQ(Next(fresh), ConfirmHistory(id));
  // Live delivery goes on after history, each offset once.
  PublishN("room", 4, 1);
  EXPECT_EQ(Next(fresh), ExtFrame(id, R"({"n":4})", "room", epoch, 4));
  EXPECT_EQ(Next(ws), ExtFrame(id, R"({"n":4})", "room", epoch, 4));
}

TEST_F(StreamsTest, HistoryRejectsWhatAnycableGoRejects) {
  StartServer({"--broker", "memory", "--history_limit", "2"});
  PublishN("room", 1, 5);  // offsets 1..5; 4 and 5 retained
  const std::string epoch = LearnEpoch();
  WsClient ws;
  ConnectExt(ws);
  const std::string id = WsClient::Identifier("ChatChannel", {{"stream", "room"}});
  SubscribeConfirmed(ws, id);
  auto pos = [&](uint64_t offset, const std::string& e) {
    return HistoryCmd(id, "{\"streams\":{\"room\":{\"offset\":" + std::to_string(offset) +
                              ",\"epoch\":\"" + e + "\"}}}");
  };
  ASSERT_TRUE(ws.SendText(pos(2, epoch)));  // below the lowest retained (4)
  EXPECT_EQ(Next(ws), RejectHistory(id));
  ASSERT_TRUE(ws.SendText(pos(3, epoch)));  // lowest-1: refused too, as anycable-go
  EXPECT_EQ(Next(ws), RejectHistory(id));
  ASSERT_TRUE(ws.SendText(pos(6, epoch)));  // beyond the top
  EXPECT_EQ(Next(ws), RejectHistory(id));
  ASSERT_TRUE(ws.SendText(pos(4, "zzzz")));  // unknown epoch
  EXPECT_EQ(Next(ws), RejectHistory(id));
  ASSERT_TRUE(ws.SendText(pos(4, epoch)));
  EXPECT_EQ(Next(ws), ExtFrame(id, R"({"n":5})", "room", epoch, 5));
  EXPECT_EQ(Next(ws), ConfirmHistory(id));
  // A since request only gets what is retained.
  WsClient other;
  ConnectExt(other);
  SubscribeConfirmed(other, id);
  ASSERT_TRUE(other.SendText(HistoryCmd(id, R"({"since":1})")));
  EXPECT_EQ(Next(other), ExtFrame(id, R"({"n":4})", "room", epoch, 4));
  EXPECT_EQ(Next(other), ExtFrame(id, R"({"n":5})", "room", epoch, 5));
  EXPECT_EQ(Next(other), ConfirmHistory(id));
}

TEST_F(StreamsTest, HistoryBadInputsGetExactReplies) {
  StartServer({"--broker", "memory"});
  const std::string epoch = LearnEpoch();
  WsClient ws;
  ConnectExt(ws);
  const std::string id = WsClient::Identifier("ChatChannel", {{"stream", "quiet"}});
  SubscribeConfirmed(ws, id);
  // A position in a stream that never had a message: rejected (anycable-go: stream not found).
  ASSERT_TRUE(ws.SendText(
      HistoryCmd(id, R"({"streams":{"quiet":{"offset":0,"epoch":")" + epoch + R"("}}})")));
  EXPECT_EQ(Next(ws), RejectHistory(id));
  // since on such a stream: nothing to send, confirmed.
  ASSERT_TRUE(ws.SendText(HistoryCmd(id, R"({"since":1})")));
  EXPECT_EQ(Next(ws), ConfirmHistory(id));
  // Garbage payloads: rejected, the connection keeps working.
  for (const char* garbage :
       {R"("abc")", R"(42)", R"({"since":"yesterday"})", R"({"since":1.5})", R"({"streams":[1]})",
        R"({"streams":{"quiet":{"offset":-1,"epoch":"x"}}})",
        R"({"streams":{"quiet":{"offset":1,"epoch":7}}})"}) {
    ASSERT_TRUE(ws.SendText(HistoryCmd(id, garbage)));
    EXPECT_EQ(Next(ws), RejectHistory(id)) << garbage;
  }
  // Ignored without a reply: no "history" member, neither since nor streams, unknown identifier.
  ASSERT_TRUE(ws.SendText("{\"command\":\"history\",\"identifier\":" + JsonString(id) + "}"));
  ASSERT_TRUE(ws.SendText(HistoryCmd(id, R"({})")));
  ASSERT_TRUE(ws.SendText(HistoryCmd(id, R"(null)")));
  ASSERT_TRUE(ws.SendText(HistoryCmd(R"({"channel":"Nope"})", R"({"since":1})")));
  Barrier(ws);
}

TEST_F(StreamsTest, HistoryWithoutBrokerIsRejected) {
  StartServer();
  WsClient ws;
  ConnectExt(ws);
  const std::string id = WsClient::Identifier("ChatChannel", {{"stream", "room"}});
  SubscribeConfirmed(ws, id);
  ASSERT_TRUE(ws.SendText(HistoryCmd(id, R"({"since":1})")));
  EXPECT_EQ(Next(ws), RejectHistory(id));
  // A subscription without streams reads nothing: confirmed, as anycable-go does.
  rpc_.SetCommandHandler([](const anycable::CommandMessage& req, const cable::tools::Metadata&,
                            anycable::CommandResponse* resp) {
    resp->set_status(anycable::SUCCESS);
    resp->add_transmissions(
        "{\"type\":\"confirm_subscription\",\"identifier\":" + JsonString(req.identifier()) + "}");
    return grpc::Status::OK;
  });
  const std::string bare = WsClient::Identifier("BareChannel");
  SubscribeConfirmed(ws, bare);
  ASSERT_TRUE(ws.SendText(HistoryCmd(bare, R"({"since":1})")));
  EXPECT_EQ(Next(ws), ConfirmHistory(bare));
}

TEST_F(StreamsTest, SubscribeWithHistoryRunsItRightAfterTheConfirmation) {
  StartServer({"--broker", "memory", "--public_streams"});
  PublishN("room", 1, 2);
  const std::string epoch = LearnEpoch();
  WsClient ws;
  ConnectExt(ws);
  const std::string id = WsClient::Identifier("ChatChannel", {{"stream", "room"}});
  ASSERT_TRUE(ws.SendText("{\"command\":\"subscribe\",\"identifier\":" + JsonString(id) +
                          ",\"history\":{\"since\":1}}"));
  EXPECT_EQ(Next(ws), ConfirmFrame(id));
  EXPECT_EQ(Next(ws), ExtFrame(id, R"({"n":1})", "room", epoch, 1));
  EXPECT_EQ(Next(ws), ExtFrame(id, R"({"n":2})", "room", epoch, 2));
  EXPECT_EQ(Next(ws), ConfirmHistory(id));
  // A rejected subscription runs no history.
  const std::string rejected = WsClient::Identifier("RejectChannel");
  ASSERT_TRUE(ws.SendText("{\"command\":\"subscribe\",\"identifier\":" + JsonString(rejected) +
                          ",\"history\":{\"since\":1}}"));
  EXPECT_EQ(Next(ws), RejectFrame(rejected));
  Barrier(ws);
  // Built-in channels too ($pubsub public stream).
  const std::string pub = R"({"channel":"$pubsub","stream_name":"room"})";
  ASSERT_TRUE(ws.SendText("{\"command\":\"subscribe\",\"identifier\":" + JsonString(pub) +
                          ",\"history\":{\"streams\":{\"room\":{\"offset\":1,\"epoch\":\"" + epoch +
                          "\"}}}}"));
  EXPECT_EQ(Next(ws), ConfirmFrame(pub));
  EXPECT_EQ(Next(ws), ExtFrame(pub, R"({"n":2})", "room", epoch, 2));
  EXPECT_EQ(Next(ws), ConfirmHistory(pub));
}

// ---- 4. Session restore ----

TEST_F(StreamsTest, RestoredSessionSkipsConnectAndSubscribeAndStreamsAgain) {
  StartServer({"--broker", "memory", "--workers", "2"});
  const std::string id = WsClient::Identifier("ChatChannel", {{"stream", "room"}});
  std::string sid;
  {
    WsClient ws;
    sid = SidOf(ConnectExt(ws));
    SubscribeConfirmed(ws, id);
    ws.Close();
  }
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& r) { return r.disconnects().size() == 1; }, 10s));
  const size_t connects = rpc_.connects().size();
  const size_t commands = rpc_.commands().size();
  // Restore through the header; several connections so both workers get to restore.
  for (int round = 0; round < 4; ++round) {
    WsClient ws;
    const std::string welcome = ConnectExt(ws, "/cable", {{"X-AnyCable-Restore-Sid", sid}});
    const std::string new_sid = SidOf(welcome);
    ASSERT_EQ(new_sid.size(), 21u) << welcome;
    EXPECT_NE(new_sid, sid);
    EXPECT_EQ(welcome, "{\"type\":\"welcome\",\"sid\":\"" + new_sid +
                           "\",\"restored\":true,\"restored_ids\":[" + JsonString(id) + "]}");
    Broadcast(Publication("room", "{\"round\":" + std::to_string(round) + "}"));
    const std::string f = Next(ws);
    EXPECT_NE(f.find("{\"identifier\":" + JsonString(id) +
                     ",\"message\":{\"round\":" + std::to_string(round) + "}"),
              std::string::npos)
        << f;
    sid = new_sid;  // sids are single use: the next round restores the new one
    ws.Close();
    ASSERT_TRUE(rpc_.WaitFor(
        [&](const ScriptedRpcServer& r) {
          return r.disconnects().size() == static_cast<size_t>(round) + 2;
        },
        10s));
  }
  EXPECT_EQ(rpc_.connects().size(), connects);
  EXPECT_EQ(rpc_.commands().size(), commands);
  // The disconnect of a restored session still carries its identifiers and subscriptions.
  const auto last = rpc_.disconnects().back().request;
  EXPECT_EQ(last.identifiers(), R"({"current_user":"alice"})");
  ASSERT_EQ(last.subscriptions_size(), 1);
  EXPECT_EQ(last.subscriptions(0), id);
}

TEST_F(StreamsTest, RestoreBySidQueryParamAndUnknownOrReusedSidsConnectNormally) {
  StartServer({"--broker", "memory"});
  std::string sid;
  {
    WsClient ws;
    sid = SidOf(ConnectExt(ws));
    ws.Close();
  }
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& r) { return r.disconnects().size() == 1; }, 10s));
  {
    WsClient ws;
    const std::string welcome = ConnectExt(ws, "/cable?sid=" + sid);
    EXPECT_EQ(welcome,
              "{\"type\":\"welcome\",\"sid\":\"" + SidOf(welcome) + "\",\"restored\":true}");
  }
  EXPECT_EQ(rpc_.connects().size(), 1u);
  // Used once: the same sid again is a normal Connect (the app's welcome).
  WsClient again;
  std::string welcome = ConnectExt(again, "/cable?user=bob", {{"X-AnyCable-Restore-Sid", sid}});
  EXPECT_EQ(welcome, WelcomeFrame(SidOf(welcome)));
  EXPECT_EQ(rpc_.connects().size(), 2u);
  // Unknown sid: normal Connect.
  WsClient unknown;
  welcome = ConnectExt(unknown, "/cable?user=bob", {{"X-AnyCable-Restore-Sid", "nope"}});
  EXPECT_EQ(welcome, WelcomeFrame(SidOf(welcome)));
  EXPECT_EQ(rpc_.connects().size(), 3u);
}

TEST_F(StreamsTest, OnlyServerGeneratedExtSessionsAreRestorable) {
  StartServer({"--broker", "memory"});
  {
    // A client-chosen sid (X-Request-ID) is never kept (spec §5 item 39).
    WsClient ws;
    ASSERT_EQ(ws.Connect(server_.port(), "/cable", {{"X-Request-ID", "chosen"}}, {kExtProtocol}),
              101);
    EXPECT_EQ(Next(ws), WelcomeFrame("chosen"));
    ws.Close();
  }
  std::string v1_sid;
  {
    // v1 sessions are not kept either.
    WsClient ws;
    ASSERT_EQ(ws.Connect(server_.port(), "/cable"), 101);
    v1_sid = SidOf(Next(ws));
    ws.Close();
  }
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& r) { return r.disconnects().size() == 2; }, 10s));
  for (const std::string& sid : {std::string("chosen"), v1_sid}) {
    WsClient ws;
    const std::string welcome = ConnectExt(ws, "/cable", {{"X-AnyCable-Restore-Sid", sid}});
    EXPECT_EQ(welcome, WelcomeFrame(SidOf(welcome))) << sid;
  }
  EXPECT_EQ(rpc_.connects().size(), 4u);
  // A v1 client presenting a restorable sid is not restored.
  std::string sid;
  {
    WsClient ws;
    sid = SidOf(ConnectExt(ws));
    ws.Close();
  }
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& r) { return r.disconnects().size() == 5; }, 10s));
  WsClient v1;
  ASSERT_EQ(v1.Connect(server_.port(), "/cable", {{"X-AnyCable-Restore-Sid", sid}}), 101);
  const std::string welcome = Next(v1);
  EXPECT_EQ(welcome, WelcomeFrame(SidOf(welcome)));
  EXPECT_EQ(rpc_.connects().size(), 6u);
}

TEST_F(StreamsTest, KickedSessionsAreNotRestorableButReconnectableOnesAre) {
  StartServer({"--broker", "memory"});
  auto remote_disconnect = [&](const std::string& user, bool reconnect) {
    Broadcast(R"({"command":"disconnect","payload":{"identifier":)" +
              JsonString("{\"current_user\":\"" + user + "\"}") +
              ",\"reconnect\":" + (reconnect ? "true" : "false") + "}}");
  };
  std::string kicked;
  {
    WsClient ws;
    kicked = SidOf(ConnectExt(ws, "/cable?user=carol"));
    remote_disconnect("carol", false);
    EXPECT_EQ(Next(ws), R"({"type":"disconnect","reason":"remote","reconnect":false})");
  }
  std::string dropped;
  {
    WsClient ws;
    dropped = SidOf(ConnectExt(ws, "/cable?user=dave"));
    remote_disconnect("dave", true);
    EXPECT_EQ(Next(ws), R"({"type":"disconnect","reason":"remote","reconnect":true})");
  }
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& r) { return r.disconnects().size() == 2; }, 10s));
  WsClient a;
  std::string welcome = ConnectExt(a, "/cable", {{"X-AnyCable-Restore-Sid", kicked}});
  EXPECT_EQ(welcome, WelcomeFrame(SidOf(welcome)));
  WsClient b;
  welcome = ConnectExt(b, "/cable", {{"X-AnyCable-Restore-Sid", dropped}});
  EXPECT_EQ(welcome, "{\"type\":\"welcome\",\"sid\":\"" + SidOf(welcome) + "\",\"restored\":true}");
  EXPECT_EQ(rpc_.connects().size(), 3u);
}

TEST_F(StreamsTest, SessionsTtlZeroDisablesRestore) {
  StartServer({"--broker", "memory", "--sessions_ttl", "0"});
  std::string sid;
  {
    WsClient ws;
    sid = SidOf(ConnectExt(ws));
    ws.Close();
  }
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& r) { return r.disconnects().size() == 1; }, 10s));
  WsClient ws;
  const std::string welcome = ConnectExt(ws, "/cable", {{"X-AnyCable-Restore-Sid", sid}});
  EXPECT_EQ(welcome, WelcomeFrame(SidOf(welcome)));
  EXPECT_EQ(rpc_.connects().size(), 2u);
}

TEST_F(StreamsTest, RestoredClientCatchesUpWithHistoryWithoutDuplicates) {
  StartServer({"--broker", "memory"});
  const std::string id = WsClient::Identifier("ChatChannel", {{"stream", "room"}});
  std::string sid;
  std::string epoch;
  {
    WsClient ws;
    sid = SidOf(ConnectExt(ws));
    SubscribeConfirmed(ws, id);
    PublishN("room", 1, 1);
    epoch = EpochOf(Next(ws));
    ws.Close();
  }
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& r) { return r.disconnects().size() == 1; }, 10s));
  PublishN("room", 2, 2);  // missed while away
  WsClient ws;
  ConnectExt(ws, "/cable", {{"X-AnyCable-Restore-Sid", sid}});
  PublishN("room", 4, 1);  // live, before the client asks for history
  EXPECT_EQ(Next(ws), ExtFrame(id, R"({"n":4})", "room", epoch, 4));
  ASSERT_TRUE(ws.SendText(
      HistoryCmd(id, R"({"streams":{"room":{"offset":1,"epoch":")" + epoch + R"("}}})")));
  EXPECT_EQ(Next(ws), ExtFrame(id, R"({"n":2})", "room", epoch, 2));
  EXPECT_EQ(Next(ws), ExtFrame(id, R"({"n":3})", "room", epoch, 3));
  EXPECT_EQ(Next(ws), ConfirmHistory(id));  // 4 is not sent twice
  PublishN("room", 5, 1);
  EXPECT_EQ(Next(ws), ExtFrame(id, R"({"n":5})", "room", epoch, 5));
}

}  // namespace
}  // namespace cable::itcore
