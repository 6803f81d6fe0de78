// RPC over HTTP through the real ringcable binary against the real @anycable/serverless-js app
// behind Node's http server (tests/integration/httprpc/app/serverless_app.mjs): connect,
// subscribe, perform with channel state, broadcast, disconnect; with and without a secret; a
// wrong secret is an Auth Error (1011).
#include <gtest/gtest.h>

#include "config/config.h"
#include "httprpc_fixture.h"
#include "tests/support/test_support.h"

namespace cable::httprpc {
namespace {

using test::HttpRequest;
using test::ServerProcess;
using test::WsClient;

const std::string kRoom = WsClient::Identifier("ChatChannel", {{"room", "42"}});

class ServerlessAppTest : public ::testing::Test {
 protected:
  void StartServer(std::vector<std::string> args) {
    args.insert(args.end(), {"--rpc_host", app_.Url(), "--metrics_http", "/metrics",
                             "--broadcast_adapter", "http"});
    ASSERT_TRUE(server_.Start(args)) << server_.Log();
  }
  NodeApp app_;
  ServerProcess server_;
};

TEST_F(ServerlessAppTest, FullSessionWithTheSecretDerivedFromSecret) {
  // The app is configured with the derived key, as an AnyCable app would be with the same
  // --secret (ANYCABLE_SECRET on both sides).
  const std::string derived = config::HexHmacSha256("app-secret", "rpc-cable");
  ASSERT_TRUE(app_.Start("serverless_app.mjs", {"--secret", derived})) << app_.Output();
  StartServer({"--secret", "app-secret"});

  WsClient ws;
  ASSERT_EQ(ws.Connect(server_.port(), "/cable?user=alice", {{"X-Request-ID", "sid-alice"}}), 101);
  EXPECT_EQ(ws.NextMessage().payload, R"({"type":"welcome","sid":"sid-alice"})");
  ASSERT_TRUE(ws.Subscribe(kRoom));
  auto confirm = ws.NextMessage();
  EXPECT_EQ(confirm.payload,
            R"({"identifier":)" + test::JsonString(kRoom) + R"(,"type":"confirm_subscription"})");

  // Each echo counts up a number the app keeps in the channel state (istate round trip).
  ASSERT_TRUE(ws.Perform(kRoom, R"({"action":"echo","text":"hi"})"));
  auto first = ws.NextMessage();
  EXPECT_NE(first.payload.find(R"("message":{"echo":"hi","count":1,"user":"alice"})"),
            std::string::npos)
      << first.payload;
  ASSERT_TRUE(ws.Perform(kRoom, R"({"action":"echo","text":"again"})"));
  auto second = ws.NextMessage();
  EXPECT_NE(second.payload.find(R"("message":{"echo":"again","count":2,"user":"alice"})"),
            std::string::npos)
      << second.payload;

  // The stream the app asked for receives broadcasts (key derived from the same --secret).
  auto pub = HttpRequest(
      server_.port(), "POST", "/_broadcast",
      {{"Authorization", "Bearer " + config::HexHmacSha256("app-secret", "broadcast-cable")}},
      R"({"stream":"chat:42","data":"{\"text\":\"news\"}"})");
  EXPECT_EQ(pub.status, 201);
  auto news = ws.NextMessage();
  EXPECT_NE(news.payload.find(R"("message":{"text":"news"})"), std::string::npos) << news.payload;

  // Closing calls Disconnect with the subscription: the app runs unsubscribed + disconnect.
  ws.Close();
  EXPECT_TRUE(app_.WaitOutput("unsubscribed 42")) << app_.Output();
  EXPECT_TRUE(app_.WaitOutput(R"(disconnect {"user":"alice"})")) << app_.Output();
  EXPECT_EQ(WaitMetric(server_.port(), "rpc_call_total", 5), 5);  // connect, 3 commands, disconnect
  EXPECT_EQ(Metric(server_.port(), "rpc_error_total"), 0);
}

TEST_F(ServerlessAppTest, ExplicitHttpRpcSecret) {
  ASSERT_TRUE(app_.Start("serverless_app.mjs", {"--secret", "explicit-one"})) << app_.Output();
  StartServer({"--http_rpc_secret", "explicit-one", "--secret", "other"});
  WsClient ws;
  ASSERT_EQ(ws.Connect(server_.port(), "/cable?user=bob", {{"X-Request-ID", "sid-bob"}}), 101);
  EXPECT_EQ(ws.NextMessage().payload, R"({"type":"welcome","sid":"sid-bob"})");
}

TEST_F(ServerlessAppTest, NoSecretOnEitherSide) {
  ASSERT_TRUE(app_.Start("serverless_app.mjs")) << app_.Output();
  StartServer({});
  WsClient ws;
  ASSERT_EQ(ws.Connect(server_.port(), "/cable?user=carol", {{"X-Request-ID", "sid-carol"}}), 101);
  EXPECT_EQ(ws.NextMessage().payload, R"({"type":"welcome","sid":"sid-carol"})");
  ASSERT_TRUE(ws.Subscribe(kRoom));
  EXPECT_NE(ws.NextMessage().payload.find("confirm_subscription"), std::string::npos);
}

TEST_F(ServerlessAppTest, WrongSecretIsAnAuthError) {
  ASSERT_TRUE(app_.Start("serverless_app.mjs", {"--secret", "right"})) << app_.Output();
  StartServer({"--http_rpc_secret", "wrong"});
  WsClient ws;
  ASSERT_EQ(ws.Connect(server_.port(), "/cable?user=mallory"), 101);
  // No welcome, no disconnect frame: the first thing is the close 1011 "Auth Error".
  auto frame = ws.Next(10s);
  ASSERT_EQ(frame.opcode, 8) << frame.payload;
  EXPECT_EQ(frame.close_code(), 1011);
  EXPECT_EQ(frame.close_reason(), "Auth Error");
  EXPECT_EQ(WaitMetric(server_.port(), "rpc_error_total", 1), 1);
  EXPECT_EQ(Metric(server_.port(), "rpc_retries_total"), 0);  // 401 is not retried
  EXPECT_EQ(Metric(server_.port(), "failed_auths_total"), 0);
  EXPECT_NE(server_.Log().find("http 401"), std::string::npos) << server_.Log();
}

TEST_F(ServerlessAppTest, RejectedConnectionIsAuthFailed) {
  ASSERT_TRUE(app_.Start("serverless_app.mjs")) << app_.Output();
  StartServer({});
  WsClient ws;
  ASSERT_EQ(ws.Connect(server_.port(), "/cable"), 101);  // no ?user=: the app rejects
  EXPECT_EQ(ws.NextMessage().payload, R"({"type":"disconnect","reason":"unauthorized"})");
  auto close = ws.WaitClose();
  EXPECT_EQ(close.close_code(), 1000);
  EXPECT_EQ(close.close_reason(), "Auth Failed");
  EXPECT_EQ(WaitMetric(server_.port(), "failed_auths_total", 1), 1);
}

}  // namespace
}  // namespace cable::httprpc
