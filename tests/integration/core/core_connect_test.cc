// Upgrade, health and the Connect RPC through the real binary (spec §1 "WebSocket endpoint",
// "Handshake / welcome", "Session id", "Env: URL & headers"; §5 items 1-2).
#include <atomic>
#include <cctype>
#include <set>
#include <thread>

#include "core_fixture.h"

namespace cable::itcore {
namespace {

using cable::test::HttpRequest;
constexpr char kHealthBody[] = "Ah, ha, ha, ha, stayin' alive, stayin' alive.";

class ConnectTest : public CoreTest {};

// 21 characters of the nanoid alphabet A-Za-z0-9_- (no std::regex: GCC 12 + ASan + -Werror
// trips over a false maybe-uninitialized inside <regex>).
bool IsNanoid(const std::string& s) {
  if (s.size() != 21) return false;
  for (char ch : s) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != '-') return false;
  }
  return true;
}

// ---- 1. Upgrade / HTTP ----

TEST_F(ConnectTest, UpgradeSelectsActionCableProtocolAndSendsVersion) {
  StartServer();
  WsClient ws;
  ASSERT_EQ(ws.Connect(server_.port(), "/cable"), 101);
  EXPECT_EQ(ws.response_headers().at("sec-websocket-protocol"), "actioncable-v1-json");
  EXPECT_EQ(ws.response_headers().at("upgrade"), "websocket");
  EXPECT_EQ(ws.response_headers().at("sec-websocket-accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  ASSERT_EQ(ws.response_headers().count("x-anycable-version"), 1u);
  EXPECT_FALSE(ws.response_headers().at("x-anycable-version").empty());
}

TEST_F(ConnectTest, ServerPrefersV1JsonWhenBothAreOffered) {
  StartServer();
  WsClient ws;
  ASSERT_EQ(
      ws.Connect(server_.port(), "/cable", {}, {"actioncable-v1-ext-json", "actioncable-v1-json"}),
      101);
  EXPECT_EQ(ws.response_headers().at("sec-websocket-protocol"), "actioncable-v1-json");
}

TEST_F(ConnectTest, UnknownSubprotocolOnlyStillUpgradesWithoutProtocolHeader) {
  StartServer();
  WsClient ws;
  ASSERT_EQ(ws.Connect(server_.port(), "/cable", {{"X-Request-ID", "np"}}, {"graphql-ws"}), 101);
  EXPECT_EQ(ws.response_headers().count("sec-websocket-protocol"), 0u);
  // The connection still speaks Action Cable JSON.
  WsFrame f = ws.NextMessage();
  EXPECT_EQ(f.payload, WelcomeFrame("np"));
}

TEST_F(ConnectTest, UnknownPathIs404AndNoConnectRpc) {
  StartServer();
  WsClient ws;
  EXPECT_EQ(ws.Connect(server_.port(), "/nope"), 404);
  auto r = HttpRequest(server_.port(), "GET", "/cable/extra");
  EXPECT_EQ(r.status, 404);
  EXPECT_TRUE(rpc_.connects().empty());
}

TEST_F(ConnectTest, HealthReturnsStayinAlive) {
  StartServer();
  auto r = HttpRequest(server_.port(), "GET", "/health");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, kHealthBody);
}

TEST_F(ConnectTest, NonGetUpgradeIsRejectedWithoutUpgrading) {
  StartServer();
  auto r = HttpRequest(server_.port(), "POST", "/cable",
                       {{"Upgrade", "websocket"},
                        {"Connection", "Upgrade"},
                        {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                        {"Sec-WebSocket-Version", "13"}});
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.headers.count("sec-websocket-accept"), 0u);
  EXPECT_TRUE(rpc_.connects().empty());
}

TEST_F(ConnectTest, PlainGetOnCablePathIsBadRequest) {
  StartServer();
  auto r = HttpRequest(server_.port(), "GET", "/cable");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.headers.count("sec-websocket-accept"), 0u);
  EXPECT_TRUE(rpc_.connects().empty());
}

TEST_F(ConnectTest, UpgradeWithoutKeyIsBadRequest) {
  StartServer();
  auto r = HttpRequest(
      server_.port(), "GET", "/cable",
      {{"Upgrade", "websocket"}, {"Connection", "Upgrade"}, {"Sec-WebSocket-Version", "13"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.headers.count("sec-websocket-accept"), 0u);
  EXPECT_TRUE(rpc_.connects().empty());
}

TEST_F(ConnectTest, UpgradeWithWrongVersionIsRejected) {
  StartServer();
  auto r = HttpRequest(server_.port(), "GET", "/cable",
                       {{"Upgrade", "websocket"},
                        {"Connection", "Upgrade"},
                        {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                        {"Sec-WebSocket-Version", "8"}});
  EXPECT_GE(r.status, 400);
  EXPECT_LT(r.status, 500);
  EXPECT_EQ(r.headers.count("sec-websocket-accept"), 0u);
  EXPECT_TRUE(rpc_.connects().empty());
}

TEST_F(ConnectTest, PathAndHealthPathFlagsMoveTheEndpoints) {
  const int port = cable::test::FreePort();
  RawServer server;
  ASSERT_TRUE(server.Start(
      {"--host", "127.0.0.1", "--port", std::to_string(port), "--rpc_host",
       "127.0.0.1:" + std::to_string(rpc_port_), "--http_broadcast_port",
       std::to_string(cable::test::FreePort()), "--path", "/ws", "--health-path", "/alive"},
      {}, port, "/alive"))
      << server.Log();
  {
    WsClient ws;
    EXPECT_EQ(ws.Connect(port, "/cable"), 404);
  }
  EXPECT_EQ(HttpRequest(port, "GET", "/health").status, 404);
  auto r = HttpRequest(port, "GET", "/alive");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, kHealthBody);
  WsClient ws;
  ASSERT_EQ(ws.Connect(port, "/ws", {{"X-Request-ID", "moved"}}), 101);
  EXPECT_EQ(ws.NextMessage().payload, WelcomeFrame("moved"));
  ASSERT_EQ(rpc_.connects().size(), 1u);
  EXPECT_EQ(rpc_.connects()[0].request.env().url(),
            "http://127.0.0.1:" + std::to_string(port) + "/ws");
  ws.Close();
  EXPECT_EQ(server.Stop(), 0);
}

// ---- 2. Connect RPC ----

TEST_F(ConnectTest, ConnectEnvCarriesUrlWhitelistedHeadersAndRemoteAddr) {
  StartServer({"--headers", "cookie,x-api-token"});
  WsClient ws;
  ConnectWelcome(ws, "req-123", "/cable?user=bob&x=1",
                 {{"Cookie", "a=1; b=2"}, {"X-Api-Token", "tok"}, {"X-Other", "nope"}});
  auto connects = rpc_.connects();
  ASSERT_EQ(connects.size(), 1u);
  const anycable::Env& env = connects[0].request.env();
  EXPECT_EQ(env.url(),
            "http://127.0.0.1:" + std::to_string(server_.port()) + "/cable?user=bob&x=1");
  std::map<std::string, std::string> headers(env.headers().begin(), env.headers().end());
  std::map<std::string, std::string> want = {
      {"cookie", "a=1; b=2"}, {"x-api-token", "tok"}, {"REMOTE_ADDR", "127.0.0.1"}};
  EXPECT_EQ(headers, want);
  EXPECT_TRUE(env.cstate().empty());
  EXPECT_TRUE(env.istate().empty());
  EXPECT_EQ(connects[0].meta.sid, "req-123");
  EXPECT_EQ(connects[0].meta.protov, "v1");
}

TEST_F(ConnectTest, DefaultHeaderWhitelistIsCookieOnly) {
  StartServer();
  WsClient ws;
  ConnectWelcome(ws, "d1", "/cable", {{"Cookie", "user=carol"}, {"X-Api-Token", "tok"}});
  auto connects = rpc_.connects();
  ASSERT_EQ(connects.size(), 1u);
  std::map<std::string, std::string> headers(connects[0].request.env().headers().begin(),
                                             connects[0].request.env().headers().end());
  std::map<std::string, std::string> want = {{"cookie", "user=carol"},
                                             {"REMOTE_ADDR", "127.0.0.1"}};
  EXPECT_EQ(headers, want);
}

TEST_F(ConnectTest, SidIsGenerated21CharIdWithoutRequestId) {
  StartServer();
  WsClient a;
  WsClient b;
  ASSERT_EQ(a.Connect(server_.port(), "/cable"), 101);
  ASSERT_EQ(b.Connect(server_.port(), "/cable"), 101);
  WsFrame fa = a.NextMessage();
  WsFrame fb = b.NextMessage();
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& s) { return s.connects().size() == 2; }, 5s));
  std::set<std::string> sids;
  for (const auto& c : rpc_.connects()) {
    EXPECT_TRUE(IsNanoid(c.meta.sid)) << c.meta.sid;
    EXPECT_EQ(c.meta.protov, "v1");
    sids.insert(c.meta.sid);
  }
  EXPECT_EQ(sids.size(), 2u);
  std::set<std::string> welcomes = {fa.payload, fb.payload};
  std::set<std::string> want;
  for (const auto& sid : sids) want.insert(WelcomeFrame(sid));
  EXPECT_EQ(welcomes, want);
}

TEST_F(ConnectTest, WelcomeIsTheAppTransmissionsVerbatim) {
  rpc_.SetConnectHandler([](const anycable::ConnectionRequest&, const cable::tools::Metadata&,
                            anycable::ConnectionResponse* r) {
    r->set_status(anycable::SUCCESS);
    r->set_identifiers("{\"u\":1}");
    r->add_transmissions(R"({ "type" : "welcome", "extra":[1, 2.50] })");
    r->add_transmissions("not json at all");
    return grpc::Status::OK;
  });
  StartServer();
  WsClient ws;
  ASSERT_EQ(ws.Connect(server_.port(), "/cable"), 101);
  EXPECT_EQ(ws.NextMessage().payload, R"({ "type" : "welcome", "extra":[1, 2.50] })");
  EXPECT_EQ(ws.NextMessage().payload, "not json at all");
  // The session is open: commands work.
  Barrier(ws);
}

TEST_F(ConnectTest, AuthFailureSendsTransmissionsThenClose1000) {
  StartServer();
  WsClient ws;
  ASSERT_EQ(ws.Connect(server_.port(), "/cable?reject=1"), 101);
  WsFrame f = ws.Next();
  ASSERT_EQ(f.opcode, 1);
  EXPECT_EQ(f.payload, R"({"type":"disconnect","reason":"unauthorized","reconnect":false})");
  f = ws.Next();
  ASSERT_EQ(f.opcode, 8);
  EXPECT_EQ(f.close_code(), 1000);
  EXPECT_EQ(f.close_reason(), "Auth Failed");
  EXPECT_TRUE(ws.WaitEof());
  // No session was established, so there is nothing to disconnect.
  EXPECT_TRUE(rpc_.disconnects().empty());
}

TEST_F(ConnectTest, AuthErrorStatusClosesWith1011AndNoOtherFrame) {
  rpc_.SetConnectHandler([](const anycable::ConnectionRequest&, const cable::tools::Metadata&,
                            anycable::ConnectionResponse* r) {
    r->set_status(anycable::ERROR);
    r->set_error_msg("boom");
    r->add_transmissions(R"({"type":"welcome"})");  // must be discarded
    return grpc::Status::OK;
  });
  StartServer();
  WsClient ws;
  ASSERT_EQ(ws.Connect(server_.port(), "/cable"), 101);
  WsFrame f = ws.Next();
  ASSERT_EQ(f.opcode, 8);
  EXPECT_EQ(f.close_code(), 1011);
  EXPECT_EQ(f.close_reason(), "Auth Error");
  EXPECT_TRUE(ws.WaitEof());
}

TEST_F(ConnectTest, AuthGrpcStatusErrorClosesWith1011) {
  rpc_.SetConnectHandler([](const anycable::ConnectionRequest&, const cable::tools::Metadata&,
                            anycable::ConnectionResponse*) {
    return grpc::Status(grpc::StatusCode::INTERNAL, "app crashed");
  });
  StartServer();
  WsClient ws;
  ASSERT_EQ(ws.Connect(server_.port(), "/cable"), 101);
  WsFrame f = ws.Next();
  ASSERT_EQ(f.opcode, 8);
  EXPECT_EQ(f.close_code(), 1011);
  EXPECT_EQ(f.close_reason(), "Auth Error");
}

TEST_F(ConnectTest, RpcServerDownClosesWith1011) {
  // Point the server at a port nobody listens on.
  rpc_port_ = cable::test::FreePort();
  StartServer({"--rpc_command_timeout", "500"});
  WsClient ws;
  ASSERT_EQ(ws.Connect(server_.port(), "/cable"), 101);
  WsFrame f = ws.Next(10s);
  ASSERT_EQ(f.opcode, 8);
  EXPECT_EQ(f.close_code(), 1011);
  EXPECT_EQ(f.close_reason(), "Auth Error");
}

TEST_F(ConnectTest, SlowConnectQueuesEarlyFramesUntilAfterWelcome) {
  // Connect is held open until the frames are sent (a gate, not a sleep: on a loaded machine
  // sending could outlast any fixed delay, and the frames would not be early any more).
  Gate release;
  rpc_.SetConnectHandler([open = release.flag()](const anycable::ConnectionRequest& req,
                                                 const cable::tools::Metadata& meta,
                                                 anycable::ConnectionResponse* r) {
    Gate::Wait(open);
    return ScriptedRpcServer::DemoConnect(req, meta, r);
  });
  StartServer();
  WsClient ws;
  ASSERT_EQ(ws.Connect(server_.port(), "/cable?user=slow", {{"X-Request-ID", "slow1"}}), 101);
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& s) { return s.connects().size() == 1; }, 5s));
  const std::string id = WsClient::Identifier("EchoChannel");
  // Sent while Connect is still running.
  ASSERT_TRUE(ws.Subscribe(id));
  ASSERT_TRUE(ws.Perform(id, R"({"action":"echo","n":1})"));
  ASSERT_TRUE(ws.Perform(id, R"({"action":"echo","n":2})"));
  ASSERT_TRUE(ws.SendText(R"({"command":"ping"})"));
  release.Open();
  EXPECT_EQ(ws.NextMessage(10s).payload, WelcomeFrame("slow1"));
  EXPECT_EQ(ws.NextMessage().payload, ConfirmFrame(id));
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(id, R"({"action":"echo","n":1})"));
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(id, R"({"action":"echo","n":2})"));
  EXPECT_EQ(ws.NextMessage().payload, R"({"type":"pong"})");
  auto cmds = rpc_.commands();
  ASSERT_EQ(cmds.size(), 3u);
  EXPECT_EQ(cmds[0].request.command(), "subscribe");
  EXPECT_EQ(cmds[1].request.data(), R"({"action":"echo","n":1})");
  EXPECT_EQ(cmds[2].request.data(), R"({"action":"echo","n":2})");
}

TEST_F(ConnectTest, FramesSentBeforeWelcomeAreDroppedWhenAuthFails) {
  Gate release;
  rpc_.SetConnectHandler([open = release.flag()](const anycable::ConnectionRequest& req,
                                                 const cable::tools::Metadata& meta,
                                                 anycable::ConnectionResponse* r) {
    Gate::Wait(open);
    return ScriptedRpcServer::DemoConnect(req, meta, r);
  });
  StartServer();
  WsClient ws;
  ASSERT_EQ(ws.Connect(server_.port(), "/cable?reject=1"), 101);
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& s) { return s.connects().size() == 1; }, 5s));
  ASSERT_TRUE(ws.Subscribe(WsClient::Identifier("EchoChannel")));
  ASSERT_TRUE(ws.SendText(R"({"command":"ping"})"));
  release.Open();
  WsFrame f = ws.Next();
  EXPECT_EQ(f.payload, R"({"type":"disconnect","reason":"unauthorized","reconnect":false})");
  f = ws.Next();
  ASSERT_EQ(f.opcode, 8);
  EXPECT_EQ(f.close_code(), 1000);
  EXPECT_EQ(f.close_reason(), "Auth Failed");
  EXPECT_TRUE(rpc_.commands().empty());
}

std::string UpgradeRequest(const std::string& extra_headers) {
  return "GET /cable HTTP/1.1\r\nHost: 127.0.0.1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
         "Sec-WebSocket-Version: 13\r\n" +
         extra_headers + "\r\n";
}

TEST_F(ConnectTest, BrowserStyleConnectionAndUpgradeHeadersAreAccepted) {
  StartServer();
  // Firefox sends "Connection: keep-alive, Upgrade"; header values are case-insensitive tokens.
  std::string got = RawExchange(
      server_.port(),
      UpgradeRequest("Connection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n"
                     "Sec-WebSocket-Protocol: actioncable-v1-json\r\nX-Request-ID: ff\r\n"),
      WelcomeFrame("ff"));
  EXPECT_EQ(got.rfind("HTTP/1.1 101", 0), 0u) << got;
  EXPECT_NE(got.find(WelcomeFrame("ff")), std::string::npos) << got;
}

TEST_F(ConnectTest, SubprotocolOfferedInSeparateHeadersIsFound) {
  StartServer();
  std::string got = RawExchange(server_.port(),
                                UpgradeRequest("Connection: Upgrade\r\nUpgrade: websocket\r\n"
                                               "Sec-WebSocket-Protocol: graphql-ws\r\n"
                                               "Sec-WebSocket-Protocol: actioncable-v1-json\r\n"),
                                "\r\n\r\n");
  EXPECT_EQ(got.rfind("HTTP/1.1 101", 0), 0u) << got;
  EXPECT_NE(got.find("Sec-WebSocket-Protocol: actioncable-v1-json\r\n"), std::string::npos) << got;
}

TEST_F(ConnectTest, HealthOnKeepAliveConnectionServesPipelinedRequests) {
  StartServer();
  const std::string req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  std::string got = RawExchange(server_.port(), req + req, std::string(kHealthBody) + "HTTP/1.1");
  // Two complete responses.
  size_t first = got.find(kHealthBody);
  ASSERT_NE(first, std::string::npos) << got;
  EXPECT_NE(got.find("HTTP/1.1 200", first), std::string::npos) << got;
}

TEST_F(ConnectTest, AllowedOriginsRejectsOtherAndMissingOrigins) {
  StartServer({"--allowed_origins", "example.com"});
  {
    WsClient ws;
    EXPECT_EQ(ws.Connect(server_.port(), "/cable", {{"Origin", "https://example.com"}}), 101);
  }
  {
    WsClient ws;
    EXPECT_EQ(ws.Connect(server_.port(), "/cable", {{"Origin", "https://evil.com"}}), 403);
  }
  {
    WsClient ws;
    EXPECT_EQ(ws.Connect(server_.port(), "/cable"), 403);
  }
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& s) { return s.connects().size() == 1; }, 5s));
}

TEST_F(ConnectTest, EmptyRequestIdGetsAGeneratedSid) {
  StartServer();
  WsClient ws;
  ASSERT_EQ(ws.Connect(server_.port(), "/cable", {{"X-Request-ID", ""}}), 101);
  ASSERT_EQ(ws.NextMessage().opcode, 1);
  ASSERT_EQ(rpc_.connects().size(), 1u);
  EXPECT_TRUE(IsNanoid(rpc_.connects()[0].meta.sid));
}

}  // namespace
}  // namespace cable::itcore
