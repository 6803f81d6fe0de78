// RPC over HTTP through the real ringcable binary against a recording Node app
// (tests/integration/httprpc/app/recording_app.mjs): the exact request format, and every fault
// of the issue (500, 401, 422, HTML, truncated JSON, enum out of range, 10 MB body, no answer,
// connection closed mid-response or without an answer, app restart, TLS) with anycable-go's
// outcome: 1011 "Auth Error" for Connect, no reply for Command, retries only for network errors,
// counted in the RPC metrics, and no other session's calls lost. Circuit breaker open and close.
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "httprpc_fixture.h"
#include "tests/support/test_support.h"

namespace cable::httprpc {
namespace {

using test::ServerProcess;
using test::WsClient;

class RecordingAppTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(app_.Start("recording_app.mjs")) << app_.Output(); }

  void StartServer(std::vector<std::string> args) {
    args.insert(args.end(),
                {"--rpc_host", app_.Url(), "--metrics_http", "/metrics", "--broadcast_adapter",
                 "http", "--http_broadcast_port", std::to_string(test::FreePort())});
    ASSERT_TRUE(server_.Start(args)) << server_.Log();
  }

  // A connect whose app answer is `fault`; returns the first frame the client gets.
  test::WsFrame ConnectWithFault(const std::string& fault, WsClient& ws) {
    EXPECT_EQ(ws.Connect(server_.port(), "/cable?fault=" + fault), 101);
    return ws.Next(20s);
  }

  long M(const std::string& name) { return Metric(server_.port(), name); }

  NodeApp app_;
  ServerProcess server_;
};

TEST_F(RecordingAppTest, RequestsHaveAnycableGoFormat) {
  StartServer({"--http_rpc_secret", "sekret"});
  WsClient ws;
  ASSERT_EQ(
      ws.Connect(server_.port(), "/cable?x=1", {{"X-Request-ID", "fmt-sid"}, {"Cookie", "a=b"}}),
      101);
  EXPECT_EQ(ws.NextMessage().payload, R"({"type":"welcome","sid":"fmt-sid"})");
  const std::string id = WsClient::Identifier("Rec");
  ASSERT_TRUE(ws.Subscribe(id));
  EXPECT_NE(ws.NextMessage().payload.find("confirm_subscription"), std::string::npos);
  ASSERT_TRUE(ws.Perform(id, R"({"action":"go","n":1})"));
  EXPECT_NE(ws.NextMessage().payload.find(R"("message":{"ok":true})"), std::string::npos);
  ws.Close();
  ASSERT_TRUE(app_.WaitOutput("REQ /_anycable/disconnect")) << app_.Output();

  const std::string url = "http://127.0.0.1:" + std::to_string(server_.port()) + "/cable?x=1";
  const std::string env =
      R"("env":{"url":")" + url + R"(","headers":{"REMOTE_ADDR":"127.0.0.1","cookie":"a=b"}})";
  const std::string meta = "auth=Bearer sekret sid=fmt-sid protov=v1 ctype=application/json ";
  auto lines = app_.Lines("REQ ");
  ASSERT_EQ(lines.size(), 4u) << app_.Output();
  EXPECT_EQ(lines[0], "REQ /_anycable/connect " + meta + "body={" + env + "}");
  EXPECT_EQ(lines[1], "REQ /_anycable/command " + meta +
                          R"(body={"command":"subscribe","identifier":"{\"channel\":\"Rec\"}",)"
                          R"("connection_identifiers":"{\"sid\":\"fmt-sid\"}",)" +
                          env + "}");
  EXPECT_EQ(lines[2], "REQ /_anycable/command " + meta +
                          R"(body={"command":"message","identifier":"{\"channel\":\"Rec\"}",)"
                          R"("connection_identifiers":"{\"sid\":\"fmt-sid\"}",)"
                          R"("data":"{\"action\":\"go\",\"n\":1}",)" +
                          env + "}");
  EXPECT_EQ(lines[3], "REQ /_anycable/disconnect " + meta +
                          R"(body={"identifiers":"{\"sid\":\"fmt-sid\"}",)"
                          R"("subscriptions":["{\"channel\":\"Rec\"}"],)" +
                          env + "}");
}

TEST_F(RecordingAppTest, ConnectFaultsAreAuthErrorsWithoutRetry) {
  StartServer({"--rpc_request_timeout", "1500"});
  const std::vector<std::string> faults = {"500",  "401",  "422",    "html", "truncated",
                                           "enum", "huge", "silent", "cut"};
  long errors = 0;
  for (const std::string& fault : faults) {
    WsClient ws;
    auto frame = ConnectWithFault(fault, ws);
    ASSERT_EQ(frame.opcode, 8) << fault << ": " << frame.payload;
    EXPECT_EQ(frame.close_code(), 1011) << fault;
    EXPECT_EQ(frame.close_reason(), "Auth Error") << fault;
    // As anycable-go, rpc_error_total counts failed calls; an answer with a status outside the
    // enum is a delivered answer the session then refuses (rpc_call_total only).
    if (fault != "enum") ++errors;
    EXPECT_EQ(WaitMetric(server_.port(), "rpc_error_total", errors), errors) << fault;
  }
  EXPECT_EQ(M("rpc_call_total"), static_cast<long>(faults.size()));
  EXPECT_EQ(M("rpc_retries_total"), 0);
  EXPECT_EQ(M("rpc_timeout_total"), 1);  // silent
  EXPECT_EQ(M("failed_auths_total"), 0);
  EXPECT_EQ(app_.Count("REQ /_anycable/connect"), faults.size()) << "one attempt per fault";
  const std::string log = server_.Log();
  EXPECT_NE(log.find("http 500: Internal Server Error"), std::string::npos) << log;
  EXPECT_NE(log.find("http 422: Unprocessable Entity"), std::string::npos) << log;
  EXPECT_NE(log.find("response body exceeds 4194304 bytes"), std::string::npos) << log;
  EXPECT_NE(log.find("invalid response body"), std::string::npos) << log;
  // The server is still fine: a normal connect right after.
  WsClient ok;
  ASSERT_EQ(ok.Connect(server_.port(), "/cable", {{"X-Request-ID", "after"}}), 101);
  EXPECT_EQ(ok.NextMessage().payload, R"({"type":"welcome","sid":"after"})");
}

TEST_F(RecordingAppTest, ConnectionDroppedWithoutAnswerIsRetriedThenAuthError) {
  StartServer({"--rpc_command_timeout", "1000"});
  WsClient ws;
  auto frame = ConnectWithFault("drop", ws);
  ASSERT_EQ(frame.opcode, 8) << frame.payload;
  EXPECT_EQ(frame.close_code(), 1011);
  const long retries = M("rpc_retries_total");
  EXPECT_GE(retries, 1);
  EXPECT_EQ(M("rpc_error_total"), 1);
  EXPECT_EQ(static_cast<long>(app_.Count("REQ /_anycable/connect")), retries + 1);
}

TEST_F(RecordingAppTest, CommandFaultsGetNoReplyAndTheSessionGoesOn) {
  StartServer({"--rpc_request_timeout", "1500"});
  WsClient ws;
  ASSERT_EQ(ws.Connect(server_.port(), "/cable", {{"X-Request-ID", "cmd"}}), 101);
  ASSERT_EQ(ws.NextMessage().payload, R"({"type":"welcome","sid":"cmd"})");
  const std::vector<std::string> faults = {"500",  "401",  "422",    "html", "truncated",
                                           "enum", "huge", "silent", "cut"};
  for (const std::string& fault : faults) {
    ASSERT_TRUE(ws.Subscribe(WsClient::Identifier("Rec", {{"fault", fault}})));
  }
  // Commands run one at a time in order: the first frame after all of them is the healthy
  // confirmation, so none of the faulty subscribes produced a frame.
  const std::string healthy = WsClient::Identifier("Rec", {{"fault", ""}});
  ASSERT_TRUE(ws.Subscribe(healthy));
  auto next = ws.NextMessage(30s);
  EXPECT_EQ(next.payload,
            R"({"identifier":)" + test::JsonString(healthy) + R"(,"type":"confirm_subscription"})");
  EXPECT_EQ(M("rpc_error_total"), static_cast<long>(faults.size()) - 1);  // all but "enum"
  EXPECT_EQ(M("rpc_call_total"), static_cast<long>(faults.size()) + 2);   // + connect, healthy
  EXPECT_EQ(M("rpc_retries_total"), 0);
  EXPECT_EQ(M("rpc_timeout_total"), 1);
  // None of the failed subscriptions exists: a message to one is ignored without an RPC.
  const long calls = M("rpc_call_total");
  ASSERT_TRUE(ws.Perform(WsClient::Identifier("Rec", {{"fault", "500"}}), R"({"action":"x"})"));
  ASSERT_TRUE(ws.Perform(healthy, R"({"action":"x"})"));
  EXPECT_NE(ws.NextMessage().payload.find(R"("message":{"ok":true})"), std::string::npos);
  EXPECT_EQ(M("rpc_call_total"), calls + 1);
}

TEST_F(RecordingAppTest, HangingCallsDoNotHoldUpOtherSessions) {
  StartServer({"--rpc_request_timeout", "4000"});
  std::vector<std::unique_ptr<WsClient>> stuck;
  for (int i = 0; i < 5; ++i) {
    stuck.push_back(std::make_unique<WsClient>());
    ASSERT_EQ(stuck.back()->Connect(server_.port(), "/cable?fault=silent"), 101);
  }
  ASSERT_TRUE(app_.WaitOutput("REQ /_anycable/connect", 5));
  // While five Connect calls hang in the app, another session connects and works.
  WsClient healthy;
  ASSERT_EQ(healthy.Connect(server_.port(), "/cable", {{"X-Request-ID", "free"}}), 101);
  EXPECT_EQ(healthy.NextMessage().payload, R"({"type":"welcome","sid":"free"})");
  ASSERT_TRUE(healthy.Subscribe(WsClient::Identifier("Rec")));
  EXPECT_NE(healthy.NextMessage().payload.find("confirm_subscription"), std::string::npos);
  // The hanging ones end in their own time with 1011.
  for (auto& ws : stuck) {
    auto frame = ws->Next(20s);
    ASSERT_EQ(frame.opcode, 8);
    EXPECT_EQ(frame.close_code(), 1011);
  }
  EXPECT_EQ(M("rpc_timeout_total"), 5);
}

TEST_F(RecordingAppTest, AppRestartIsRetriedThrough) {
  StartServer({"--rpc_command_timeout", "30000"});
  WsClient before;
  ASSERT_EQ(before.Connect(server_.port(), "/cable", {{"X-Request-ID", "before"}}), 101);
  ASSERT_EQ(before.NextMessage().payload, R"({"type":"welcome","sid":"before"})");
  const int port = app_.port();
  app_.Stop();
  WsClient during;
  ASSERT_EQ(during.Connect(server_.port(), "/cable", {{"X-Request-ID", "during"}}), 101);
  ASSERT_GE(WaitMetric(server_.port(), "rpc_retries_total", 1), 1);
  ASSERT_TRUE(app_.Start("recording_app.mjs", {}, port)) << app_.Output();
  // The kept-alive connection to the old process is gone; a new one carries the retry.
  EXPECT_EQ(during.NextMessage(30s).payload, R"({"type":"welcome","sid":"during"})");
  ASSERT_TRUE(before.Subscribe(WsClient::Identifier("Rec")));
  EXPECT_NE(before.NextMessage(30s).payload.find("confirm_subscription"), std::string::npos);
  EXPECT_EQ(M("rpc_error_total"), 0);
}

TEST_F(RecordingAppTest, CircuitBreakerOpensAndCloses) {
  // One attempt per call (no retries), so each call is one breaker failure.
  StartServer({"--rpc_command_timeout", "1"});
  const int port = app_.port();
  app_.Stop();
  for (int i = 0; i < 10; ++i) {
    WsClient ws;
    auto frame = ConnectWithFault("", ws);
    ASSERT_EQ(frame.opcode, 8);
    EXPECT_EQ(frame.close_code(), 1011);
  }
  ASSERT_TRUE(server_.running());
  EXPECT_NE(server_.Log().find("circuit breaker opened"), std::string::npos) << server_.Log();
  EXPECT_EQ(M("rpc_error_total"), 10);

  // The app is back, but the open breaker fails calls without asking it.
  ASSERT_TRUE(app_.Start("recording_app.mjs", {}, port)) << app_.Output();
  const size_t connects_before = app_.Count("REQ /_anycable/connect");
  {
    WsClient ws;
    auto frame = ConnectWithFault("", ws);
    ASSERT_EQ(frame.opcode, 8);
    EXPECT_EQ(frame.close_code(), 1011);
  }
  EXPECT_NE(server_.Log().find("circuit breaker open)"), std::string::npos) << server_.Log();
  // After its 5 s it lets probes through; poll with fresh clients until one is welcomed.
  bool welcomed = false;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!welcomed && std::chrono::steady_clock::now() < deadline) {
    WsClient ws;
    auto frame = ConnectWithFault("", ws);
    welcomed = frame.opcode == 1 && frame.payload.find("welcome") != std::string::npos;
    if (!welcomed) std::this_thread::sleep_for(200ms);
  }
  ASSERT_TRUE(welcomed) << server_.Log();
  EXPECT_GT(app_.Count("REQ /_anycable/connect"), connects_before);
  // Five successful probes close it.
  for (int i = 0; i < 5; ++i) {
    WsClient ws;
    auto frame = ConnectWithFault("", ws);
    EXPECT_NE(frame.payload.find("welcome"), std::string::npos) << frame.payload;
  }
  EXPECT_NE(server_.Log().find("circuit breaker closed"), std::string::npos) << server_.Log();
}

// A throwaway CA and a certificate for 127.0.0.1 it signed, made with the openssl tool.
class TlsFiles {
 public:
  bool Make() {
    char tmpl[] = "/tmp/ringcable-httprpc-tls.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return false;
    dir_ = tmpl;
    const std::string d = dir_;
    std::ofstream(d + "/ext.cnf") << "subjectAltName=IP:127.0.0.1\n";
    const std::vector<std::vector<std::string>> steps = {
        {"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
         "/CN=ringcable test CA", "-keyout", d + "/ca.key", "-out", d + "/ca.pem"},
        {"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout",
         d + "/app.key", "-out", d + "/app.csr"},
        {"openssl", "x509", "-req", "-in", d + "/app.csr", "-CA", d + "/ca.pem", "-CAkey",
         d + "/ca.key", "-CAcreateserial", "-days", "2", "-extfile", d + "/ext.cnf", "-out",
         d + "/app.pem"},
    };
    for (const auto& argv : steps) {
      auto r = test::RunCommand(argv, 60s);
      if (r.exit_code != 0) {
        error_ = r.output;
        return false;
      }
    }
    return true;
  }
  ~TlsFiles() {
    if (!dir_.empty()) test::RunCommand({"rm", "-rf", dir_}, 10s);
  }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  const std::string& error() const { return error_; }

 private:
  std::string dir_;
  std::string error_;
};

TEST_F(RecordingAppTest, HttpsVerifiesTheCertificateAgainstTheGivenCa) {
  TlsFiles tls;
  ASSERT_TRUE(tls.Make()) << tls.error();
  NodeApp https_app;
  ASSERT_TRUE(https_app.Start(
      "recording_app.mjs", {"--tls-cert", tls.Path("app.pem"), "--tls-key", tls.Path("app.key")}))
      << https_app.Output();
  const std::string url = "https://127.0.0.1:" + std::to_string(https_app.port()) + "/_anycable";

  // System roots only: the app's certificate is not trusted, the call never reaches the app.
  ServerProcess untrusting;
  ASSERT_TRUE(
      untrusting.Start({"--rpc_host", url, "--rpc_command_timeout", "300", "--broadcast_adapter",
                        "http", "--http_broadcast_port", std::to_string(test::FreePort())}))
      << untrusting.Log();
  {
    WsClient ws;
    ASSERT_EQ(ws.Connect(untrusting.port(), "/cable"), 101);
    auto frame = ws.Next(20s);
    ASSERT_EQ(frame.opcode, 8);
    EXPECT_EQ(frame.close_code(), 1011);
  }
  EXPECT_EQ(https_app.Count("REQ "), 0u);
  EXPECT_NE(untrusting.Log().find("certificate"), std::string::npos) << untrusting.Log();

  // Pointed at the CA: verified and served.
  ServerProcess trusting;
  ASSERT_TRUE(trusting.Start({"--rpc_host", url, "--rpc_tls_root_ca", tls.Path("ca.pem"),
                              "--broadcast_adapter", "http", "--http_broadcast_port",
                              std::to_string(test::FreePort())}))
      << trusting.Log();
  WsClient ws;
  ASSERT_EQ(ws.Connect(trusting.port(), "/cable", {{"X-Request-ID", "tls"}}), 101);
  EXPECT_EQ(ws.NextMessage().payload, R"({"type":"welcome","sid":"tls"})");
  EXPECT_EQ(https_app.Count("REQ /_anycable/connect"), 1u);
}

}  // namespace
}  // namespace cable::httprpc
