// Live upgrade (#19) of the sessions that used to fall back to a reconnect, through the real
// binary: sessions holding presence records (--broker memory: the records move with them;
// --broker redis against a real redis-server: the membership and its touch schedule move), with
// no join/leave event and the same `presence` info after the upgrade; SSE streams (GET, raw GET,
// POST with two subscriptions) keep receiving broadcasts and pings on the same socket; wss
// connections on the compact TLS 1.3 record layer (each suite) go on with the same encrypted
// stream, while a TLS 1.2 one falls back to server_restart; a long-poll session keeps its
// subscription, state and queued messages, and the poll the old process held open is answered at
// once.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "brokers.h"
#include "tests/integration/tls/tls_util.h"
#include "transports_util.h"
#include "upgrade_fixture.h"

namespace cable::itcore {
namespace {

using Clock = std::chrono::steady_clock;
using cable::ittransports::MetricValue;

class UpgradeSessionsTest : public UpgradeFixture {
 protected:
  void SetUp() override {
    UpgradeFixture::SetUp();
    // The demo app; PresenceChannel subscriptions get istate $p = their stream.
    rpc_.SetCommandHandler([](const anycable::CommandMessage& req, const tools::Metadata& meta,
                              anycable::CommandResponse* res) {
      grpc::Status st = tools::ScriptedRpcServer::DemoCommand(req, meta, res);
      if (req.command() == "subscribe" &&
          req.identifier().find("\"PresenceChannel\"") != std::string::npos &&
          res->status() == anycable::SUCCESS) {
        (*res->mutable_env()->mutable_istate())["$p"] = res->streams(0);
      }
      return st;
    });
  }

  static std::string Presence(const std::string& identifier, const std::string& message) {
    return "{\"type\":\"presence\",\"identifier\":" + JsonString(identifier) +
           ",\"message\":" + message + "}";
  }
  static std::string Cmd(const std::string& command, const std::string& identifier,
                         const std::string& extra = "") {
    return "{\"command\":\"" + command + "\",\"identifier\":" + JsonString(identifier) + extra +
           "}";
  }
  static std::string Join(const std::string& identifier, const std::string& id) {
    return Cmd("join", identifier,
               ",\"presence\":{\"id\":" + JsonString(id) + ",\"info\":{\"name\":\"" + id + "\"}}");
  }
  static std::string JoinEvent(const std::string& identifier, const std::string& id) {
    return Presence(identifier,
                    R"({"type":"join","info":{"name":")" + id + R"("},"id":")" + id + "\"}");
  }
  static std::string Info(const std::string& identifier, const std::vector<std::string>& ids) {
    std::string records;
    for (const auto& id : ids) {
      records += (records.empty() ? "" : ",") + std::string(R"({"info":{"name":")") + id +
                 R"("},"id":")" + id + "\"}";
    }
    return Presence(identifier, R"({"type":"info","total":)" + std::to_string(ids.size()) +
                                    (ids.empty() ? "" : ",\"records\":[" + records + "]") + "}");
  }

  // Two ext sessions in one presence stream, u1 and u2 joined (their events seen by both).
  void JoinTwo(WsClient& a, WsClient& b, const std::string& id) {
    ConnectExt(a, "/cable?user=a");
    ConnectExt(b, "/cable?user=b");
    SubscribeConfirmed(a, id);
    SubscribeConfirmed(b, id);
    ASSERT_TRUE(a.SendText(Join(id, "u1")));
    EXPECT_EQ(Next(a), JoinEvent(id, "u1"));
    EXPECT_EQ(Next(b), JoinEvent(id, "u1"));
    ASSERT_TRUE(b.SendText(Join(id, "u2")));
    EXPECT_EQ(Next(a), JoinEvent(id, "u2"));
    EXPECT_EQ(Next(b), JoinEvent(id, "u2"));
  }

  // After the upgrade: no event came (the first message each session gets is the reply to its
  // own `presence`, listing both), the records still belong to their sessions (a's leave is one
  // leave event to both), and nothing was reconnected.
  void ExpectPresenceKept(WsClient& a, WsClient& b, const std::string& id) {
    ASSERT_TRUE(b.SendText(Cmd("presence", id)));
    EXPECT_EQ(Next(b), Info(id, {"u1", "u2"}));
    ASSERT_TRUE(a.SendText(Cmd("presence", id)));
    EXPECT_EQ(Next(a), Info(id, {"u1", "u2"}));
    ASSERT_TRUE(a.SendText(Cmd("leave", id)));
    EXPECT_EQ(Next(a), Presence(id, R"({"type":"leave","id":"u1"})"));
    EXPECT_EQ(Next(b), Presence(id, R"({"type":"leave","id":"u1"})"));
    ASSERT_TRUE(b.SendText(Cmd("presence", id)));
    EXPECT_EQ(Next(b), Info(id, {"u2"}));
    EXPECT_EQ(rpc_.connects().size(), 2u);
    EXPECT_EQ(rpc_.disconnects().size(), 0u);
    EXPECT_EQ(WorkerMetric("ringcable_worker_upgrade_adopted_total"), 2);
  }
};

TEST_F(UpgradeSessionsTest, PresenceRecordsMoveWithTheirSessionsOnTheMemoryBroker) {
  StartServer({"--broker", "memory", "--workers", "2", "--metrics_http", "/metrics"});
  const std::string id = WsClient::Identifier("PresenceChannel", {{"stream", "room"}});
  WsClient a, b;
  JoinTwo(a, b, id);
  Upgrade();
  ExpectPresenceKept(a, b, id);
}

TEST_F(UpgradeSessionsTest, PresenceMembershipMovesAndIsTouchedOnTheRedisBroker) {
  cable::test::BrokerProcess redis(cable::test::BrokerProcess::Kind::kRedis);
  if (cable::test::BrokerProcess::FindBinary(cable::test::BrokerProcess::Kind::kRedis).empty()) {
    GTEST_SKIP() << "redis-server is not installed";
  }
  ASSERT_TRUE(redis.Start());
  // A short TTL: the new process must touch the moved sessions for them to stay.
  StartServer({"--broker", "redis", "--redis_url", redis.url(), "--presence_ttl", "2", "--workers",
               "2", "--metrics_http", "/metrics"});
  const std::string id = WsClient::Identifier("PresenceChannel", {{"stream", "room"}});
  WsClient a, b;
  JoinTwo(a, b, id);
  Upgrade();
  // The new process touches the moved sessions (their expiry moves forward) ...
  auto score = [&] {
    std::string out =
        cable::test::RedisCli(redis.port(), {"ZRANGE", "_ac_p:exp", "0", "-1", "WITHSCORES"});
    return out;
  };
  const std::string first = score();
  ASSERT_FALSE(first.empty());
  auto deadline = Clock::now() + 10s;
  while (score() == first && Clock::now() < deadline) std::this_thread::sleep_for(50ms);
  EXPECT_NE(score(), first) << "the new process does not touch the moved presence sessions";
  // ... so they outlive the TTL with their records and no event.
  ExpectPresenceKept(a, b, id);
}

// The next event that is not a ping (pings come on their own schedule).
std::optional<cable::ittransports::SseEvent> NextNonPing(cable::ittransports::HttpStream& s) {
  for (int i = 0; i < 20; ++i) {
    auto e = s.NextEvent();
    if (!e || e->event != "ping") return e;
  }
  return std::nullopt;
}

TEST_F(UpgradeSessionsTest, SseStreamsKeepReceivingOnTheSameSocket) {
  StartServer({"--sse", "--workers", "2", "--ping_interval", "1", "--metrics_http", "/metrics"});
  using cable::ittransports::HttpStream;
  const std::string chat = R"({"channel":"ChatChannel"})";
  const std::string a = R"({"channel":"ChatChannel","stream":"a"})";
  const std::string b = R"({"channel":"ChatChannel","stream":"b"})";
  HttpStream get, raw, post;
  ASSERT_TRUE(
      get.Get(server_.port(), "/events?channel=ChatChannel&user=g", {{"X-Request-ID", "sse-get"}}));
  ASSERT_TRUE(get.ReadHead());
  ASSERT_EQ(get.status, 200);
  ASSERT_EQ(get.NextOfType("confirm_subscription")->data, ConfirmFrame(chat));
  ASSERT_TRUE(raw.Get(server_.port(), "/events?channel=ChatChannel&user=r&raw=1"));
  ASSERT_TRUE(raw.ReadHead());
  ASSERT_EQ(raw.status, 200);
  std::string body = "{\"command\":\"subscribe\",\"identifier\":" + JsonString(a) + "}\n" +
                     "{\"command\":\"subscribe\",\"identifier\":" + JsonString(b) + "}\n";
  ASSERT_TRUE(
      post.Open(server_.port(), cable::ittransports::HttpPostRequest("/events?user=p", body)));
  ASSERT_TRUE(post.ReadHead());
  ASSERT_EQ(post.status, 200);
  ASSERT_EQ(post.NextOfType("confirm_subscription")->data, ConfirmFrame(a));
  ASSERT_EQ(post.NextOfType("confirm_subscription")->data, ConfirmFrame(b));
  // Every stream is live (the raw one too: it gets data events only).
  Broadcast(Publication("ChatChannel", R"({"n":0})"));
  Broadcast(Publication("b", R"({"n":0})"));
  ASSERT_EQ(NextNonPing(get)->data, R"({"n":0})");
  ASSERT_EQ(raw.NextData()->data, R"({"n":0})");
  ASSERT_EQ(NextNonPing(post)->data, MessageFrame(b, R"({"n":0})"));

  Upgrade();
  EXPECT_EQ(WorkerMetric("ringcable_worker_upgrade_adopted_total"), 3);
  // The first event after the upgrade is the next broadcast: no disconnect event, no new
  // welcome, the chunked body goes on (the same socket, read by the same HttpStream).
  Broadcast(Publication("ChatChannel", R"({"n":1})"));
  Broadcast(Publication("a", R"({"n":1})"));
  auto g = NextNonPing(get);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->event, "");
  EXPECT_EQ(g->data, R"({"n":1})");
  auto r = raw.NextEvent();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->event, "") << "a raw stream gets data events only";
  EXPECT_EQ(r->data, R"({"n":1})");
  auto p = NextNonPing(post);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->data, MessageFrame(a, R"({"n":1})"));
  // The ping schedule goes on in the new process (GET and POST streams).
  EXPECT_TRUE(get.NextOfType("ping", 5s).has_value());
  EXPECT_TRUE(post.NextOfType("ping", 5s).has_value());
  EXPECT_FALSE(get.body_ended());
  EXPECT_EQ(rpc_.connects().size(), 3u);
  EXPECT_EQ(rpc_.disconnects().size(), 0u);
  EXPECT_EQ(MetricValue(server_.port(), "anycable_go_sse_clients_num"), 3);
}

// wss: three TLS 1.3 connections (one per suite the compact record layer implements) move with
// their encrypted streams; a TLS 1.2 one (its state is OpenSSL's) gets server_restart.
TEST_F(UpgradeSessionsTest, CompactTls13ConnectionsMoveAndTls12FallsBack) {
  cable::ittls::CertDir certs;
  ASSERT_TRUE(certs.ok()) << certs.error();
  server_.set_tls(true);
  StartServer({"--ssl_cert", certs.cert(), "--ssl_key", certs.key(), "--workers", "2"});
  const std::string room = WsClient::Identifier("ChatChannel", {{"stream", "tls"}});
  std::vector<std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>> ctxs;
  auto client_ctx = [&](const char* suite) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    if (suite) {
      SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
      EXPECT_EQ(SSL_CTX_set_ciphersuites(ctx, suite), 1);
    } else {
      SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    }
    ctxs.emplace_back(ctx, &SSL_CTX_free);
    return ctx;
  };
  const char* suites[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                          "TLS_CHACHA20_POLY1305_SHA256", nullptr};
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(std::make_unique<WsClient>());
    clients.back()->set_tls(true);
    clients.back()->set_tls_context(client_ctx(suites[i]));
    ConnectWelcome(*clients.back(), "sid-tls-" + std::to_string(i));
    SubscribeConfirmed(*clients.back(), room);
    Barrier(*clients.back());  // traffic after the handshake: the session left OpenSSL
  }
  auto broadcast = [&](const std::string& data) {
    auto r =
        cable::test::HttpsRequest(broadcast_port_, "POST", "/_broadcast",
                                  {{"Content-Type", "application/json"}}, Publication("tls", data));
    ASSERT_EQ(r.status, 201);
  };
  Upgrade();
  EXPECT_NE(server_.Log().find("3 connections handed over, 1 fell back to a reconnect"),
            std::string::npos);
  broadcast(R"({"n":1})");
  for (int i = 0; i < 3; ++i) {
    // The first frame after the upgrade is the broadcast, decrypted with the moved keys; then
    // traffic both ways (a ping answered) on the same stream.
    WsFrame f = clients[i]->NextMessage();
    ASSERT_EQ(f.opcode, 1) << suites[i];
    EXPECT_EQ(f.payload, MessageFrame(room, R"({"n":1})")) << suites[i];
    Barrier(*clients[i]);
  }
  // TLS 1.2: the reconnect notice, then the close.
  WsFrame notice = clients[3]->NextMessage();
  ASSERT_EQ(notice.opcode, 1);
  EXPECT_NE(notice.payload.find("\"server_restart\""), std::string::npos) << notice.payload;
  EXPECT_EQ(clients[3]->NextMessage().opcode, -1);  // the close frame ends the messages
  EXPECT_EQ(clients[3]->last_close().close_code(), 1001);
  // A later broadcast still decrypts (sequence numbers kept in step both ways).
  broadcast(R"({"n":2})");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(clients[i]->NextMessage().payload, MessageFrame(room, R"({"n":2})")) << suites[i];
  }
  EXPECT_EQ(rpc_.connects().size(), 4u);
}

// Long polling: the session (no socket: each poll is an HTTP request) moves between polls. The poll
// the old process holds open is answered at once (204: nothing queued), the next polls are served
// by the new process with the subscription, the connection state and a message queued before the
// upgrade.
TEST_F(UpgradeSessionsTest, LongPollSessionKeepsItsSubscriptionAndQueue) {
  // A poll interval longer than the HTTP client's 10 s wait: an open poll only returns in time if
  // it is answered at once.
  StartServer({"--poll", "--poll_interval=30", "--poll_flush_interval=50",
               "--poll_keepalive_timeout=10", "--workers", "2"});
  const std::string chat = R"({"channel":"ChatChannel"})";
  auto poll = [&](const std::string& id, const std::string& body) {
    std::map<std::string, std::string> h;
    if (!id.empty()) h["X-AnyCable-Poll-ID"] = id;
    return cable::test::HttpRequest(server_.port(), "POST", "/lp?user=ann", h, body);
  };
  auto init = poll("", "{\"command\":\"subscribe\",\"identifier\":" + JsonString(chat) + "}\n");
  ASSERT_EQ(init.status, 200);
  const std::string id = init.headers["x-anycable-poll-id"];
  ASSERT_FALSE(id.empty());
  ASSERT_NE(init.body.find("confirm_subscription"), std::string::npos) << init.body;
  // A poll left open in the old process: it carries a command that sets the connection state and
  // sends nothing back, so it waits (for --poll_interval) once the app has seen the command.
  const std::string state_cmd = "{\"command\":\"message\",\"identifier\":" + JsonString(chat) +
                                ",\"data\":" + JsonString(R"({"action":"state","value":"lp1"})") +
                                "}\n";
  cable::test::HttpResponse open_poll;
  std::thread holder([&] { open_poll = poll(id, state_cmd); });
  ASSERT_TRUE(rpc_.WaitFor(
      [](const tools::ScriptedRpcServer& r) { return r.commands().size() >= 2; }, 10s));
  Upgrade();
  holder.join();
  EXPECT_EQ(open_poll.status, 204) << "the open poll was not answered at once: " << open_poll.body;
  // A message published now is queued for the session (in the new process) ...
  Broadcast(Publication("ChatChannel", R"({"n":1})"));
  auto next = poll(id, "");
  ASSERT_EQ(next.status, 200) << next.body;
  EXPECT_EQ(next.headers["x-anycable-poll-id"], id);
  EXPECT_EQ(next.body, MessageFrame(chat, R"({"n":1})") + "\n");
  // ... and the session's state went along: a perform reaches the app with cstate and istate.
  auto echo = poll(id, "{\"command\":\"message\",\"identifier\":" + JsonString(chat) +
                           ",\"data\":" + JsonString(R"({"action":"echo","x":1})") + "}\n");
  ASSERT_EQ(echo.status, 200) << echo.body;
  EXPECT_NE(echo.body.find("\"x\":1"), std::string::npos) << echo.body;
  auto cmds = rpc_.commands();
  ASSERT_EQ(cmds.size(), 3u);
  EXPECT_EQ(cmds.back().request.env().cstate().at("last"), "lp1");
  EXPECT_EQ(cmds.back().request.env().istate().at("k"), "lp1");
  EXPECT_EQ(rpc_.connects().size(), 1u);
  EXPECT_EQ(rpc_.disconnects().size(), 0u);
  // An id the new process never received: 401, as before.
  EXPECT_EQ(poll("0.nosuchsession", "").status, 401);
}

// A poll that reaches the new process before its session does is held until the handover ends,
// then served. The session cannot move yet (a command's RPC call is held by the test) and its
// client dropped the poll that carried the command, so the old process's intake closes and the
// next poll, sent once it has, can only be accepted by the new process.
TEST_F(UpgradeSessionsTest, PollForASessionStillOnItsWayIsHeldThenServed) {
  Gate gate;
  rpc_.SetCommandHandler([flag = gate.flag()](const anycable::CommandMessage& req,
                                              const tools::Metadata& meta,
                                              anycable::CommandResponse* res) {
    if (req.data().find("\"slow\"") != std::string::npos) Gate::Wait(flag);
    return tools::ScriptedRpcServer::DemoCommand(req, meta, res);
  });
  StartServer({"--poll", "--poll_interval=30", "--poll_flush_interval=50",
               "--poll_keepalive_timeout=20", "--workers", "1", "--log_level", "debug"});
  const std::string chat = R"({"channel":"ChatChannel"})";
  auto init = cable::test::HttpRequest(
      server_.port(), "POST", "/lp?user=ann", {},
      "{\"command\":\"subscribe\",\"identifier\":" + JsonString(chat) + "}\n");
  ASSERT_EQ(init.status, 200);
  const std::string id = init.headers["x-anycable-poll-id"];
  ASSERT_FALSE(id.empty());
  // The poll carrying the slow command, on a socket the test closes once the app has the call.
  const std::string slow = "{\"command\":\"message\",\"identifier\":" + JsonString(chat) +
                           ",\"data\":" + JsonString(R"({"action":"echo","slow":1})") + "}\n";
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server_.port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string req = "POST /lp HTTP/1.1\r\nHost: x\r\nX-AnyCable-Poll-ID: " + id +
                          "\r\nContent-Length: " + std::to_string(slow.size()) + "\r\n\r\n" + slow;
  ASSERT_EQ(send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  ASSERT_TRUE(rpc_.WaitFor(
      [](const tools::ScriptedRpcServer& r) { return r.commands().size() >= 2; }, 10s));
  close(fd);

  ASSERT_EQ(kill(server_.pid(), SIGUSR2), 0);
  ASSERT_TRUE(WaitLog("upgrade: worker 0 closed its intake"));
  next_.set(StartedPid());
  cable::test::HttpResponse held;
  std::thread poller([&] {
    held = cable::test::HttpRequest(server_.port(), "POST", "/lp", {{"X-AnyCable-Poll-ID", id}});
  });
  const bool was_held = WaitLog("held until the handover ends");
  gate.Open();  // the command finishes in the old process; the session moves with its reply
  poller.join();
  ASSERT_TRUE(was_held);
  EXPECT_EQ(held.status, 200) << held.body;
  EXPECT_NE(held.body.find("\"slow\":1"), std::string::npos) << held.body;
  ASSERT_EQ(server_.WaitExit(30s), 0);
  EXPECT_EQ(rpc_.connects().size(), 1u);
  EXPECT_EQ(rpc_.disconnects().size(), 0u);
}

}  // namespace
}  // namespace cable::itcore
