// cable_rpc Client in HTTP mode (rpc_host = http://...) against a ScriptedHttpServer on
// 127.0.0.1: the request format, anycable-go's status mapping, retries, timeouts, the response
// size limit, cancellation, the global gate, keep-alive reuse and the circuit breaker. No test
// asserts on how long anything took; waits are bounded by kWaitLimit.
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "rpc/client.h"
#include "tests/unit/rpc/http_test_server.h"
#include "tests/unit/rpc/rpc_test_util.h"

namespace cable::rpc {
namespace {

using testing::Answer;
using testing::HttpReply;
using testing::HttpRequestSeen;
using testing::Misbehave;
using testing::RecordingSink;
using testing::ScriptedHttpServer;
using testing::UnusedPort;
using testing::WaitUntil;

constexpr const char* kWelcome = R"({"status":1,"identifiers":"{\"u\":\"a\"}",)"
                                 R"("transmissions":["{\"type\":\"welcome\"}"]})";

CallPtr MakeConnect(const std::string& sid) {
  auto call = std::make_shared<Call>();
  call->kind = CallKind::kConnect;
  call->sid = sid;
  call->connect_request.mutable_env()->set_url("http://example.com/cable?token=1");
  (*call->connect_request.mutable_env()->mutable_headers())["cookie"] = "a=b";
  return call;
}

CallPtr MakeCommand(const std::string& sid) {
  auto call = std::make_shared<Call>();
  call->kind = CallKind::kCommand;
  call->sid = sid;
  call->command_request.set_command("subscribe");
  call->command_request.set_identifier(R"({"channel":"Chat"})");
  call->command_request.set_connection_identifiers(R"({"u":"a"})");
  return call;
}

class RpcHttpClientTest : public ::testing::Test {
 protected:
  void TearDown() override {
    server_.Release("{}");
    if (client_) client_->Shutdown(std::chrono::milliseconds(0));
    client_.reset();
    server_.Stop();
  }

  void Serve(ScriptedHttpServer::Handler handler) {
    port_ = server_.Start(std::move(handler));
    ASSERT_GT(port_, 0);
  }

  std::string Base() const { return "http://127.0.0.1:" + std::to_string(port_) + "/_anycable"; }

  Client& NewClient(Options options) {
    if (options.host == Options().host) options.host = Base();
    auto created = Client::Create(options);
    EXPECT_TRUE(created.ok()) << created.error();
    client_ = std::move(created.value());
    return *client_;
  }

  CallPtr RunOne(CallPtr call) {
    client_->Submit(call, &sink_);
    EXPECT_TRUE(sink_.WaitFor(call));
    return call;
  }

  ScriptedHttpServer server_;
  int port_ = 0;
  RecordingSink sink_;
  std::unique_ptr<Client> client_;
};

TEST_F(RpcHttpClientTest, ConnectPostsJsonWithMetaHeadersAndSecret) {
  Serve([](const HttpRequestSeen&) { return Answer(kWelcome); });
  Options o;
  o.http_secret = "s3cret";
  NewClient(o);
  CallPtr call = RunOne(MakeConnect("sid-1"));

  EXPECT_EQ(call->outcome, Outcome::kOk);
  EXPECT_EQ(call->grpc_code, 0);
  EXPECT_EQ(call->connect_response.status(), anycable::SUCCESS);
  EXPECT_EQ(call->connect_response.identifiers(), R"({"u":"a"})");
  ASSERT_EQ(call->connect_response.transmissions_size(), 1);
  EXPECT_EQ(call->connect_response.transmissions(0), R"({"type":"welcome"})");
  auto seen = server_.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].path, "/_anycable/connect");
  EXPECT_EQ(seen[0].headers["content-type"], "application/json");
  EXPECT_EQ(seen[0].headers["authorization"], "Bearer s3cret");
  EXPECT_EQ(seen[0].headers["x-anycable-meta-sid"], "sid-1");
  EXPECT_EQ(seen[0].headers["x-anycable-meta-protov"], "v1");
  EXPECT_EQ(seen[0].headers.count("expect"), 0u);
  EXPECT_EQ(seen[0].body,
            R"({"env":{"url":"http://example.com/cable?token=1","headers":{"cookie":"a=b"}}})");
  EXPECT_EQ(client_->stats().calls.load(), 1u);
  EXPECT_EQ(client_->stats().errors.load(), 0u);
}

TEST_F(RpcHttpClientTest, NoSecretMeansNoAuthorizationHeader) {
  Serve([](const HttpRequestSeen&) { return Answer(R"({"status":1})"); });
  NewClient({});
  RunOne(MakeCommand("sid-2"));
  auto seen = server_.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].path, "/_anycable/command");
  EXPECT_EQ(seen[0].headers.count("authorization"), 0u);
  EXPECT_EQ(seen[0].body, R"({"command":"subscribe","identifier":"{\"channel\":\"Chat\"}",)"
                          R"("connection_identifiers":"{\"u\":\"a\"}"})");
}

TEST_F(RpcHttpClientTest, ErrorStatusesFailWithoutRetry) {
  struct Case {
    int http;
    grpc::StatusCode code;
  };
  for (Case tc :
       {Case{500, grpc::StatusCode::UNKNOWN}, Case{401, grpc::StatusCode::UNAUTHENTICATED},
        Case{422, grpc::StatusCode::INVALID_ARGUMENT},
        Case{400, grpc::StatusCode::INVALID_ARGUMENT}, Case{503, grpc::StatusCode::UNKNOWN}}) {
    ScriptedHttpServer server;
    const int port =
        server.Start([&](const HttpRequestSeen&) { return Answer("<h1>nope</h1>", tc.http); });
    ASSERT_GT(port, 0);
    Options o;
    o.host = "http://127.0.0.1:" + std::to_string(port) + "/rpc";
    auto client = Client::Create(o);
    ASSERT_TRUE(client.ok());
    RecordingSink sink;
    CallPtr call = MakeConnect("sid");
    client.value()->Submit(call, &sink);
    ASSERT_TRUE(sink.WaitFor(call));
    EXPECT_EQ(call->outcome, Outcome::kError) << tc.http;
    EXPECT_EQ(call->grpc_code, tc.code) << tc.http;
    EXPECT_EQ(call->attempts, 1) << tc.http;
    EXPECT_NE(call->error_message.find("nope"), std::string::npos) << call->error_message;
    EXPECT_EQ(client.value()->stats().errors.load(), 1u);
    EXPECT_EQ(client.value()->stats().retries.load(), 0u);
    client.value()->Shutdown(std::chrono::milliseconds(0));
    EXPECT_EQ(server.request_count(), 1u);
  }
}

TEST_F(RpcHttpClientTest, HtmlOrTruncatedJsonIsAnErrorNotRetried) {
  Serve([](const HttpRequestSeen& r) {
    if (r.headers.at("x-anycable-meta-sid") == "html") {
      return Answer("<html>maintenance</html>");
    }
    return Answer(R"({"status":1,"transmissions":["a")");
  });
  NewClient({});
  CallPtr html = RunOne(MakeConnect("html"));
  CallPtr cut = RunOne(MakeConnect("cut"));
  for (const CallPtr& c : {html, cut}) {
    EXPECT_EQ(c->outcome, Outcome::kError);
    EXPECT_EQ(c->grpc_code, grpc::StatusCode::UNKNOWN);
    EXPECT_EQ(c->attempts, 1);
    EXPECT_EQ(c->connect_response.transmissions_size(), 0);
  }
  EXPECT_EQ(client_->stats().errors.load(), 2u);
}

TEST_F(RpcHttpClientTest, UnreachableAppIsRetriedUntilTheCommandTimeout) {
  Options o;
  o.host = "http://127.0.0.1:" + std::to_string(UnusedPort()) + "/_anycable";
  o.command_timeout_ms = 1000;  // room for backoffs of 100, 200 and 400 ms
  NewClient(o);
  CallPtr call = RunOne(MakeConnect("down"));
  EXPECT_EQ(call->outcome, Outcome::kError);
  EXPECT_EQ(call->grpc_code, grpc::StatusCode::UNAVAILABLE);
  EXPECT_GE(call->attempts, 2);
  EXPECT_EQ(client_->stats().retries.load(), static_cast<uint64_t>(call->attempts - 1));
  EXPECT_EQ(client_->stats().errors.load(), 1u);
}

TEST_F(RpcHttpClientTest, AnAppThatComesUpDuringRetriesIsReached) {
  const int port = UnusedPort();
  Options o;
  o.host = "http://127.0.0.1:" + std::to_string(port) + "/_anycable";
  o.command_timeout_ms = 60000;
  NewClient(o);
  CallPtr call = MakeConnect("late");
  client_->Submit(call, &sink_);
  ASSERT_TRUE(WaitUntil([&] { return client_->stats().retries.load() >= 1; }));
  ScriptedHttpServer late;
  ASSERT_EQ(late.StartOn(port, [](const HttpRequestSeen&) { return Answer(kWelcome); }), port);
  ASSERT_TRUE(sink_.WaitFor(call));
  EXPECT_EQ(call->outcome, Outcome::kOk);
  EXPECT_GE(call->attempts, 2);
  client_->Shutdown(std::chrono::milliseconds(0));
  late.Stop();
}

TEST_F(RpcHttpClientTest, SilentAppTimesOutOnceAndCountsATimeout) {
  Serve([](const HttpRequestSeen&) { return Misbehave(HttpReply::Mode::kHang); });
  Options o;
  o.request_timeout_ms = 200;
  NewClient(o);
  CallPtr call = RunOne(MakeConnect("silent"));
  EXPECT_EQ(call->outcome, Outcome::kError);
  EXPECT_EQ(call->grpc_code, grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(call->attempts, 1);
  EXPECT_EQ(client_->stats().timeouts.load(), 1u);
  EXPECT_EQ(client_->stats().errors.load(), 1u);
}

TEST_F(RpcHttpClientTest, ClosedMidResponseOrWithoutAnswerIsAnError) {
  Serve([](const HttpRequestSeen& r) {
    if (r.headers.at("x-anycable-meta-sid") == "mid") {
      return Misbehave(HttpReply::Mode::kCloseMidBody);
    }
    return Misbehave(HttpReply::Mode::kCloseNoAnswer);
  });
  Options o;
  o.command_timeout_ms = 2000;
  NewClient(o);
  CallPtr mid = RunOne(MakeConnect("mid"));
  EXPECT_EQ(mid->outcome, Outcome::kError);
  EXPECT_EQ(mid->grpc_code, grpc::StatusCode::UNKNOWN) << mid->error_message;
  EXPECT_EQ(mid->attempts, 1);
  // No status line at all is a network error: retried (as anycable-go), then given up.
  CallPtr none = RunOne(MakeConnect("none"));
  EXPECT_EQ(none->outcome, Outcome::kError);
  EXPECT_EQ(none->grpc_code, grpc::StatusCode::UNAVAILABLE) << none->error_message;
  EXPECT_GE(none->attempts, 2);
}

TEST_F(RpcHttpClientTest, BodiesOverTheLimitAreRefused) {
  const std::string big =
      R"({"status":1,"error_msg":")" + std::string(2 * 1024 * 1024, 'x') + R"("})";
  Serve([&](const HttpRequestSeen&) { return Answer(big); });
  Options o;
  o.max_recv_size = 1024 * 1024;
  NewClient(o);
  CallPtr call = RunOne(MakeConnect("big"));
  EXPECT_EQ(call->outcome, Outcome::kError);
  EXPECT_EQ(call->grpc_code, grpc::StatusCode::UNKNOWN);
  EXPECT_NE(call->error_message.find("exceeds 1048576 bytes"), std::string::npos)
      << call->error_message;
  EXPECT_EQ(call->attempts, 1);
  // Under the limit the same kind of body goes through.
  o.max_recv_size = 4 * 1024 * 1024;
  client_->Shutdown(std::chrono::milliseconds(0));
  NewClient(o);
  CallPtr ok = RunOne(MakeConnect("big-ok"));
  EXPECT_EQ(ok->outcome, Outcome::kOk) << ok->error_message;
  EXPECT_EQ(ok->connect_response.error_msg().size(), 2u * 1024 * 1024);
}

TEST_F(RpcHttpClientTest, CancelInFlightCompletesCanceledAndOthersGoOn) {
  Serve([](const HttpRequestSeen& r) {
    if (r.headers.at("x-anycable-meta-sid") == "stuck") {
      return Misbehave(HttpReply::Mode::kHang);
    }
    return Answer(kWelcome);
  });
  Options o;
  o.request_timeout_ms = 60000;
  o.command_timeout_ms = 60000;
  NewClient(o);
  CallPtr stuck = MakeConnect("stuck");
  client_->Submit(stuck, &sink_);
  ASSERT_TRUE(server_.WaitInside(1));
  CallPtr other = RunOne(MakeConnect("other"));
  EXPECT_EQ(other->outcome, Outcome::kOk);
  client_->Cancel(stuck);
  ASSERT_TRUE(sink_.WaitFor(stuck));
  EXPECT_EQ(stuck->outcome, Outcome::kCanceled);
  EXPECT_EQ(client_->stats().canceled.load(), 1u);
  EXPECT_EQ(sink_.CountOf(stuck), 1);
}

TEST_F(RpcHttpClientTest, ConcurrencyGateHoldsAndKeepAliveReusesConnections) {
  Serve([](const HttpRequestSeen& r) {
    if (r.headers.at("x-anycable-meta-sid").rfind("hold", 0) == 0) {
      return Misbehave(HttpReply::Mode::kHang);
    }
    return Answer(R"({"status":1})");
  });
  Options o;
  o.concurrency = 3;
  o.request_timeout_ms = 60000;
  o.command_timeout_ms = 60000;
  NewClient(o);
  std::vector<CallPtr> held;
  for (int i = 0; i < 6; ++i) {
    held.push_back(MakeCommand("hold-" + std::to_string(i)));
    client_->Submit(held.back(), &sink_);
  }
  ASSERT_TRUE(server_.WaitInside(3));
  ASSERT_TRUE(WaitUntil([&] { return client_->stats().pending.load() == 3; }));
  EXPECT_EQ(server_.request_count(), 3u);
  server_.Release(R"({"status":1})");
  ASSERT_TRUE(sink_.WaitCount(6));
  EXPECT_EQ(server_.max_concurrent(), 3);
  EXPECT_EQ(client_->stats().pending.load(), 0);
  // Sequential calls after that ride the connections already open.
  const int before = server_.connections();
  for (int i = 0; i < 20; ++i) RunOne(MakeCommand("seq"));
  EXPECT_EQ(server_.connections(), before);
  EXPECT_LE(before, 3);
}

TEST_F(RpcHttpClientTest, CircuitBreakerOpensAfterTenNetworkFailures) {
  Options o;
  o.host = "http://127.0.0.1:" + std::to_string(UnusedPort()) + "/_anycable";
  o.command_timeout_ms = 1;  // no retries: one attempt, one breaker failure per call
  NewClient(o);
  for (int i = 0; i < 10; ++i) {
    CallPtr c = RunOne(MakeConnect("f" + std::to_string(i)));
    EXPECT_EQ(c->grpc_code, grpc::StatusCode::UNAVAILABLE) << c->error_message;
  }
  CallPtr refused = RunOne(MakeConnect("refused"));
  EXPECT_EQ(refused->outcome, Outcome::kError);
  EXPECT_EQ(refused->grpc_code, grpc::StatusCode::UNKNOWN);
  EXPECT_NE(refused->error_message.find("circuit breaker open"), std::string::npos)
      << refused->error_message;
  EXPECT_EQ(client_->stats().errors.load(), 11u);
}

TEST_F(RpcHttpClientTest, ShutdownCancelsHangingCalls) {
  Serve([](const HttpRequestSeen&) { return Misbehave(HttpReply::Mode::kHang); });
  Options o;
  o.request_timeout_ms = 60000;
  o.command_timeout_ms = 60000;
  NewClient(o);
  CallPtr call = MakeConnect("hang");
  client_->Submit(call, &sink_);
  ASSERT_TRUE(server_.WaitInside(1));
  client_->Shutdown(std::chrono::milliseconds(0));
  EXPECT_EQ(sink_.CountOf(call), 1);
  EXPECT_EQ(call->outcome, Outcome::kCanceled);
}

TEST_F(RpcHttpClientTest, InvalidUrlsAreRefusedAtCreate) {
  Options o;
  o.host = "http://";
  EXPECT_FALSE(Client::Create(o).ok());
  o.host = "https://app/_anycable";
  o.tls_root_ca = "/nonexistent/ca.pem";
  auto bad_ca = Client::Create(o);
  ASSERT_FALSE(bad_ca.ok());
  EXPECT_NE(bad_ca.error().find("rpc_tls_root_ca"), std::string::npos) << bad_ca.error();
}

}  // namespace
}  // namespace cable::rpc
