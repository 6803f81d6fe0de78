// cable_rpc Client against a real in-process ScriptedRpcServer on 127.0.0.1.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "rpc/client.h"
#include "rpc_stub/scripted_server.h"
#include "tests/unit/rpc/rpc_test_util.h"

namespace cable::rpc {
namespace {

using cable::tools::Metadata;
using cable::tools::ScriptedRpcServer;
using testing::Gate;
using testing::kWaitLimit;
using testing::RecordingSink;
using testing::WaitUntil;

CallPtr MakeConnect(const std::string& sid, const std::string& url) {
  auto call = std::make_shared<Call>();
  call->kind = CallKind::kConnect;
  call->sid = sid;
  call->connect_request.mutable_env()->set_url(url);
  return call;
}

CallPtr MakeCommand(const std::string& sid, const std::string& command,
                    const std::string& identifier, const std::string& data = "") {
  auto call = std::make_shared<Call>();
  call->kind = CallKind::kCommand;
  call->sid = sid;
  call->command_request.set_command(command);
  call->command_request.set_identifier(identifier);
  call->command_request.set_data(data);
  return call;
}

class RpcClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = server_.Start();
    ASSERT_GT(port_, 0);
  }

  void TearDown() override {
    gate_.Open();
    if (client_) client_->Shutdown(std::chrono::milliseconds(0));
    client_.reset();
    server_.Stop();
  }

  Client& NewClient(Options options) {
    if (options.host == Options().host) options.host = "127.0.0.1:" + std::to_string(port_);
    auto created = Client::Create(options);
    EXPECT_TRUE(created.ok()) << created.error();
    client_ = std::move(created.value());
    return *client_;
  }

  // Command handler that blocks every call on gate_, then answers like the demo app.
  void BlockCommands() {
    server_.SetCommandHandler([this](const anycable::CommandMessage& req, const Metadata& meta,
                                     anycable::CommandResponse* resp) {
      gate_.Enter();
      return ScriptedRpcServer::DemoCommand(req, meta, resp);
    });
  }

  size_t CommandsSeen() const { return server_.commands().size(); }
  bool WaitCommandsSeen(size_t n) {
    return server_.WaitFor([n](const ScriptedRpcServer& s) { return s.commands().size() >= n; },
                           kWaitLimit);
  }

  ScriptedRpcServer server_;
  int port_ = 0;
  Gate gate_;
  RecordingSink sink_;
  std::unique_ptr<Client> client_;
};

TEST_F(RpcClientTest, ConnectRoundTripSendsSidAndProtoVersion) {
  Client& client = NewClient({});
  CallPtr call = MakeConnect("sid-connect", "http://example.com/cable?user=alice");
  call->owner = 42;
  call->tag = 7;
  client.Submit(call, &sink_);
  ASSERT_TRUE(sink_.WaitFor(call));

  EXPECT_EQ(call->outcome, Outcome::kOk);
  EXPECT_EQ(call->grpc_code, 0);
  EXPECT_EQ(call->attempts, 1);
  EXPECT_EQ(call->owner, 42u);
  EXPECT_EQ(call->tag, 7u);
  EXPECT_EQ(call->connect_response.status(), anycable::SUCCESS);
  EXPECT_EQ(call->connect_response.identifiers(), R"({"current_user":"alice"})");
  ASSERT_EQ(call->connect_response.transmissions_size(), 1);
  EXPECT_EQ(call->connect_response.transmissions(0), R"({"type":"welcome","sid":"sid-connect"})");

  auto connects = server_.connects();
  ASSERT_EQ(connects.size(), 1u);
  EXPECT_EQ(connects[0].meta.sid, "sid-connect");
  EXPECT_EQ(connects[0].meta.protov, "v1");
  EXPECT_EQ(connects[0].request.env().url(), "http://example.com/cable?user=alice");
  EXPECT_EQ(client.stats().calls.load(), 1u);
  EXPECT_EQ(client.stats().errors.load(), 0u);
}

TEST_F(RpcClientTest, CommandAndDisconnectRoundTrips) {
  Client& client = NewClient({});
  const std::string id = R"({"channel":"ChatChannel","stream":"room1"})";
  CallPtr sub = MakeCommand("sid-cmd", "subscribe", id);
  sub->command_request.set_connection_identifiers(R"({"current_user":"bob"})");
  auto disc = std::make_shared<Call>();
  disc->kind = CallKind::kDisconnect;
  disc->sid = "sid-disc";
  disc->disconnect_request.set_identifiers(R"({"current_user":"bob"})");
  disc->disconnect_request.add_subscriptions(id);
  client.Submit(sub, &sink_);
  client.Submit(disc, &sink_);
  ASSERT_TRUE(sink_.WaitCount(2));

  EXPECT_EQ(sub->outcome, Outcome::kOk);
  EXPECT_EQ(sub->command_response.status(), anycable::SUCCESS);
  ASSERT_EQ(sub->command_response.streams_size(), 1);
  EXPECT_EQ(sub->command_response.streams(0), "room1");
  ASSERT_EQ(sub->command_response.transmissions_size(), 1);
  EXPECT_EQ(
      sub->command_response.transmissions(0),
      R"({"type":"confirm_subscription","identifier":"{\"channel\":\"ChatChannel\",\"stream\":\"room1\"}"})");
  EXPECT_EQ(disc->outcome, Outcome::kOk);
  EXPECT_EQ(disc->disconnect_response.status(), anycable::SUCCESS);

  auto commands = server_.commands();
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].meta.sid, "sid-cmd");
  EXPECT_EQ(commands[0].meta.protov, "v1");
  EXPECT_EQ(commands[0].request.identifier(), id);
  EXPECT_EQ(commands[0].request.connection_identifiers(), R"({"current_user":"bob"})");
  auto disconnects = server_.disconnects();
  ASSERT_EQ(disconnects.size(), 1u);
  EXPECT_EQ(disconnects[0].meta.sid, "sid-disc");
  EXPECT_EQ(disconnects[0].meta.protov, "v1");
  ASSERT_EQ(disconnects[0].request.subscriptions_size(), 1);
  EXPECT_EQ(disconnects[0].request.subscriptions(0), id);
}

TEST_F(RpcClientTest, AppLevelFailureIsAnOkOutcome) {
  Client& client = NewClient({});
  CallPtr call = MakeConnect("s", "http://example.com/cable?reject=1");
  client.Submit(call, &sink_);
  ASSERT_TRUE(sink_.WaitFor(call));
  EXPECT_EQ(call->outcome, Outcome::kOk);
  EXPECT_EQ(call->connect_response.status(), anycable::FAILURE);
  EXPECT_EQ(client.stats().errors.load(), 0u);
}

TEST_F(RpcClientTest, ConcurrencyLimitIsGlobal) {
  BlockCommands();
  Options options;
  options.concurrency = 3;
  options.command_timeout_ms = 60000;
  Client& client = NewClient(options);
  std::vector<CallPtr> calls;
  for (int i = 0; i < 10; ++i) {
    calls.push_back(MakeCommand("s" + std::to_string(i), "message", R"({"channel":"C"})",
                                R"({"action":"noop"})"));
    client.Submit(calls.back(), &sink_);
  }
  ASSERT_TRUE(gate_.WaitInside(3));
  ASSERT_TRUE(WaitUntil([&] { return client.stats().pending.load() == 7; }));
  // A Connect shares the same gate: it must wait too.
  CallPtr connect = MakeConnect("c", "http://example.com/cable");
  client.Submit(connect, &sink_);
  ASSERT_TRUE(WaitUntil([&] { return client.stats().pending.load() == 8; }));
  EXPECT_EQ(CommandsSeen(), 3u);
  EXPECT_TRUE(server_.connects().empty());

  gate_.Open();
  ASSERT_TRUE(sink_.WaitCount(11));
  EXPECT_EQ(gate_.max_inside(), 3);
  for (const CallPtr& c : calls) {
    EXPECT_EQ(c->outcome, Outcome::kOk);
    EXPECT_EQ(sink_.CountOf(c), 1);
  }
  EXPECT_EQ(connect->outcome, Outcome::kOk);
  EXPECT_EQ(client.stats().pending.load(), 0);
  EXPECT_EQ(client.stats().calls.load(), 11u);
}

TEST_F(RpcClientTest, NonPositiveConcurrencyMeansTheDefault28) {
  BlockCommands();
  Options options;
  options.concurrency = 0;
  options.command_timeout_ms = 60000;
  Client& client = NewClient(options);
  for (int i = 0; i < 30; ++i) {
    client.Submit(MakeCommand("s", "message", R"({"channel":"C"})", "{}"), &sink_);
  }
  ASSERT_TRUE(gate_.WaitInside(28));
  ASSERT_TRUE(WaitUntil([&] { return client.stats().pending.load() == 2; }));
  EXPECT_EQ(CommandsSeen(), 28u);
  gate_.Open();
  ASSERT_TRUE(sink_.WaitCount(30));
  EXPECT_EQ(gate_.max_inside(), 28);
}

TEST_F(RpcClientTest, RetriesUnavailable) {
  std::atomic<int> seen{0};
  server_.SetCommandHandler([&](const anycable::CommandMessage& req, const Metadata& meta,
                                anycable::CommandResponse* resp) {
    if (seen.fetch_add(1) < 2) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "warming up");
    return ScriptedRpcServer::DemoCommand(req, meta, resp);
  });
  Options options;
  options.command_timeout_ms = 60000;
  Client& client = NewClient(options);
  CallPtr call = MakeCommand("s", "unsubscribe", R"({"channel":"C"})");
  client.Submit(call, &sink_);
  ASSERT_TRUE(sink_.WaitFor(call));
  EXPECT_EQ(call->outcome, Outcome::kOk);
  EXPECT_EQ(call->attempts, 3);
  EXPECT_TRUE(call->command_response.stop_streams());
  EXPECT_EQ(CommandsSeen(), 3u);
  EXPECT_EQ(client.stats().retries.load(), 2u);
  EXPECT_EQ(client.stats().calls.load(), 1u);
  EXPECT_EQ(client.stats().errors.load(), 0u);
  for (const auto& rec : server_.commands()) EXPECT_EQ(rec.meta.sid, "s");
}

TEST_F(RpcClientTest, RetriesResourceExhausted) {
  std::atomic<int> seen{0};
  server_.SetConnectHandler([&](const anycable::ConnectionRequest& req, const Metadata& meta,
                                anycable::ConnectionResponse* resp) {
    if (seen.fetch_add(1) < 3) return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "busy");
    return ScriptedRpcServer::DemoConnect(req, meta, resp);
  });
  Options options;
  options.command_timeout_ms = 60000;
  Client& client = NewClient(options);
  CallPtr call = MakeConnect("s", "http://x/cable");
  client.Submit(call, &sink_);
  ASSERT_TRUE(sink_.WaitFor(call));
  EXPECT_EQ(call->outcome, Outcome::kOk);
  EXPECT_EQ(call->attempts, 4);
  EXPECT_EQ(call->connect_response.status(), anycable::SUCCESS);
  EXPECT_EQ(server_.connects().size(), 4u);
  EXPECT_EQ(client.stats().retries.load(), 3u);
}

TEST_F(RpcClientTest, RetriesGiveUpAtCommandTimeout) {
  server_.SetCommandHandler(
      [](const anycable::CommandMessage&, const Metadata&, anycable::CommandResponse*) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "always down");
      });
  Options options;
  options.command_timeout_ms = 1000;  // backoff 100, 200, 400 ms; the next (800) does not fit
  Client& client = NewClient(options);
  CallPtr call = MakeCommand("s", "message", R"({"channel":"C"})", "{}");
  client.Submit(call, &sink_);
  ASSERT_TRUE(sink_.WaitFor(call));
  EXPECT_EQ(call->outcome, Outcome::kError);
  EXPECT_EQ(call->grpc_code, grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(call->error_message, "always down");
  EXPECT_GE(call->attempts, 1);
  EXPECT_LE(call->attempts, 4);
  EXPECT_EQ(CommandsSeen(), static_cast<size_t>(call->attempts));
  EXPECT_EQ(client.stats().retries.load(), static_cast<uint64_t>(call->attempts - 1));
  EXPECT_EQ(client.stats().errors.load(), 1u);
}

TEST_F(RpcClientTest, NoRetryOnInternal) {
  server_.SetCommandHandler(
      [](const anycable::CommandMessage&, const Metadata&, anycable::CommandResponse*) {
        return grpc::Status(grpc::StatusCode::INTERNAL, "boom");
      });
  Client& client = NewClient({});
  CallPtr call = MakeCommand("s", "message", R"({"channel":"C"})", "{}");
  client.Submit(call, &sink_);
  ASSERT_TRUE(sink_.WaitFor(call));
  EXPECT_EQ(call->outcome, Outcome::kError);
  EXPECT_EQ(call->grpc_code, grpc::StatusCode::INTERNAL);
  EXPECT_EQ(call->error_message, "boom");
  EXPECT_EQ(call->attempts, 1);
  EXPECT_EQ(CommandsSeen(), 1u);
  EXPECT_EQ(client.stats().retries.load(), 0u);
  EXPECT_EQ(client.stats().errors.load(), 1u);
  EXPECT_EQ(client.stats().timeouts.load(), 0u);
}

TEST_F(RpcClientTest, NoRetryOnDeadlineExceededFromServer) {
  server_.SetCommandHandler(
      [](const anycable::CommandMessage&, const Metadata&, anycable::CommandResponse*) {
        return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "too slow");
      });
  Client& client = NewClient({});
  CallPtr call = MakeCommand("s", "message", R"({"channel":"C"})", "{}");
  client.Submit(call, &sink_);
  ASSERT_TRUE(sink_.WaitFor(call));
  EXPECT_EQ(call->outcome, Outcome::kError);
  EXPECT_EQ(call->grpc_code, grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(call->attempts, 1);
  EXPECT_EQ(CommandsSeen(), 1u);
  EXPECT_EQ(client.stats().timeouts.load(), 1u);
  EXPECT_EQ(client.stats().retries.load(), 0u);
}

TEST_F(RpcClientTest, RequestTimeoutIsATimeoutNotRetried) {
  BlockCommands();
  Options options;
  options.request_timeout_ms = 50;
  options.command_timeout_ms = 60000;
  Client& client = NewClient(options);
  CallPtr call = MakeCommand("s", "message", R"({"channel":"C"})", "{}");
  client.Submit(call, &sink_);
  ASSERT_TRUE(sink_.WaitFor(call));
  EXPECT_EQ(call->outcome, Outcome::kError);
  EXPECT_EQ(call->grpc_code, grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(call->attempts, 1);
  EXPECT_EQ(client.stats().timeouts.load(), 1u);
  EXPECT_EQ(client.stats().errors.load(), 1u);
}

TEST_F(RpcClientTest, ServerDownWaitsForTheConnectionUntilTheCommandTimeout) {
  Options options;
  options.host = "127.0.0.1:" + std::to_string(testing::UnusedPort());
  options.command_timeout_ms = 300;
  Client& client = NewClient(options);
  CallPtr call = MakeConnect("s", "http://x/cable");
  client.Submit(call, &sink_);
  ASSERT_TRUE(sink_.WaitFor(call));
  // Wait-for-ready: one attempt that waits for a connection, not a burst of fail-fast retries.
  EXPECT_EQ(call->outcome, Outcome::kError);
  EXPECT_EQ(call->grpc_code, grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(call->attempts, 1);
  EXPECT_EQ(client.stats().retries.load(), 0u);
  EXPECT_EQ(client.stats().timeouts.load(), 1u);
  EXPECT_EQ(client.stats().errors.load(), 1u);
}

// The RPC server restarts: a call made while it is down completes once it is back, within the
// call's --rpc_command_timeout, instead of failing on a channel still in reconnect backoff.
TEST_F(RpcClientTest, CallMadeWhileServerIsDownSucceedsWhenItComesBack) {
  const int port = testing::UnusedPort();
  Options options;
  options.host = "127.0.0.1:" + std::to_string(port);
  options.command_timeout_ms = 60000;
  Client& client = NewClient(options);
  CallPtr early = MakeConnect("early", "http://x/cable");
  client.Submit(early, &sink_);
  ASSERT_TRUE(WaitUntil([&] { return client.stats().calls.load() == 1; }));
  EXPECT_EQ(sink_.CountOf(early), 0);

  ScriptedRpcServer late_server;
  ASSERT_EQ(late_server.Start("127.0.0.1:" + std::to_string(port)), port);
  ASSERT_TRUE(sink_.WaitFor(early));
  EXPECT_EQ(early->outcome, Outcome::kOk) << early->error_message;
  EXPECT_EQ(early->connect_response.status(), anycable::SUCCESS);
  EXPECT_EQ(early->attempts, 1);
  EXPECT_EQ(late_server.connects().size(), 1u);
  client.Shutdown(std::chrono::milliseconds(0));
  late_server.Stop();
}

// With a per-attempt deadline (--rpc_request_timeout) shorter than the time the server is away,
// attempts that expire while no connection exists are retried within the command timeout.
TEST_F(RpcClientTest, AttemptsThatExpireWaitingForAConnectionAreRetried) {
  const int port = testing::UnusedPort();
  Options options;
  options.host = "127.0.0.1:" + std::to_string(port);
  options.request_timeout_ms = 50;
  options.command_timeout_ms = 60000;
  Client& client = NewClient(options);
  CallPtr call = MakeCommand("s", "subscribe", R"({"channel":"C"})");
  client.Submit(call, &sink_);
  ASSERT_TRUE(WaitUntil([&] { return client.stats().retries.load() >= 2; }));
  EXPECT_EQ(sink_.CountOf(call), 0);

  ScriptedRpcServer late_server;
  ASSERT_EQ(late_server.Start("127.0.0.1:" + std::to_string(port)), port);
  ASSERT_TRUE(sink_.WaitFor(call));
  EXPECT_EQ(call->outcome, Outcome::kOk) << call->error_message;
  EXPECT_EQ(call->command_response.status(), anycable::SUCCESS);
  EXPECT_GE(call->attempts, 3);
  EXPECT_EQ(client.stats().timeouts.load(), 0u);
  client.Shutdown(std::chrono::milliseconds(0));
  late_server.Stop();
}

TEST_F(RpcClientTest, CancelQueuedCall) {
  BlockCommands();
  Options options;
  options.concurrency = 1;
  options.command_timeout_ms = 60000;
  Client& client = NewClient(options);
  CallPtr first = MakeCommand("a", "message", R"({"channel":"C"})", "{}");
  CallPtr queued = MakeCommand("b", "message", R"({"channel":"C"})", "{}");
  client.Submit(first, &sink_);
  ASSERT_TRUE(WaitCommandsSeen(1));
  client.Submit(queued, &sink_);
  ASSERT_TRUE(WaitUntil([&] { return client.stats().pending.load() == 1; }));
  client.Cancel(queued);
  client.Cancel(queued);  // idempotent
  ASSERT_TRUE(sink_.WaitFor(queued));
  EXPECT_EQ(queued->outcome, Outcome::kCanceled);
  EXPECT_EQ(queued->grpc_code, grpc::StatusCode::CANCELLED);
  EXPECT_EQ(queued->attempts, 0);
  EXPECT_EQ(client.stats().pending.load(), 0);

  gate_.Open();
  ASSERT_TRUE(sink_.WaitFor(first));
  EXPECT_EQ(first->outcome, Outcome::kOk);
  client.Shutdown(std::chrono::milliseconds(0));
  EXPECT_EQ(sink_.CountOf(queued), 1);
  EXPECT_EQ(sink_.CountOf(first), 1);
  EXPECT_EQ(CommandsSeen(), 1u);
  EXPECT_EQ(client.stats().canceled.load(), 1u);
}

TEST_F(RpcClientTest, CancelInFlightCall) {
  BlockCommands();
  Options options;
  options.command_timeout_ms = 60000;
  Client& client = NewClient(options);
  CallPtr call = MakeCommand("a", "message", R"({"channel":"C"})", "{}");
  client.Submit(call, &sink_);
  ASSERT_TRUE(WaitCommandsSeen(1));
  client.Cancel(call);
  ASSERT_TRUE(sink_.WaitFor(call));  // the handler is still blocked: the cancel completed it
  EXPECT_EQ(call->outcome, Outcome::kCanceled);
  EXPECT_EQ(call->attempts, 1);
  client.Cancel(call);  // after completion: no-op
  gate_.Open();
  client.Shutdown(std::chrono::milliseconds(1000));
  EXPECT_EQ(sink_.CountOf(call), 1);
  EXPECT_EQ(client.stats().canceled.load(), 1u);
  EXPECT_EQ(client.stats().retries.load(), 0u);
}

TEST_F(RpcClientTest, CancelBeforeSubmitNeverReachesServer) {
  Client& client = NewClient({});
  CallPtr call = MakeConnect("a", "http://x/cable");
  client.Cancel(call);
  client.Submit(call, &sink_);
  ASSERT_TRUE(sink_.WaitFor(call));
  EXPECT_EQ(call->outcome, Outcome::kCanceled);
  EXPECT_EQ(call->attempts, 0);
  client.Shutdown(std::chrono::milliseconds(0));
  EXPECT_TRUE(server_.connects().empty());
  EXPECT_EQ(sink_.CountOf(call), 1);
}

TEST_F(RpcClientTest, CancelDuringBackoffStopsRetries) {
  std::atomic<int> seen{0};
  server_.SetCommandHandler(
      [&](const anycable::CommandMessage&, const Metadata&, anycable::CommandResponse*) {
        seen.fetch_add(1);
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "down");
      });
  Options options;
  options.concurrency = 1;
  options.command_timeout_ms = 600000;
  Client& client = NewClient(options);
  CallPtr call = MakeCommand("a", "message", R"({"channel":"C"})", "{}");
  client.Submit(call, &sink_);
  ASSERT_TRUE(WaitUntil([&] { return client.stats().retries.load() >= 3; }));
  client.Cancel(call);
  ASSERT_TRUE(sink_.WaitFor(call));
  EXPECT_EQ(call->outcome, Outcome::kCanceled);
  // The canceled call released its only slot: another call gets through.
  server_.SetCommandHandler(ScriptedRpcServer::DemoCommand);
  CallPtr next = MakeCommand("b", "unsubscribe", R"({"channel":"C"})");
  client.Submit(next, &sink_);
  ASSERT_TRUE(sink_.WaitFor(next));
  EXPECT_EQ(next->outcome, Outcome::kOk);
  client.Shutdown(std::chrono::milliseconds(0));
  EXPECT_EQ(sink_.CountOf(call), 1);
  EXPECT_EQ(seen.load(), call->attempts);
}

TEST_F(RpcClientTest, ShutdownCancelsEverythingLeftAfterGrace) {
  BlockCommands();
  Options options;
  options.concurrency = 2;
  options.command_timeout_ms = 60000;
  Client& client = NewClient(options);
  std::vector<CallPtr> calls;
  for (int i = 0; i < 5; ++i) {
    calls.push_back(MakeCommand("s" + std::to_string(i), "message", R"({"channel":"C"})", "{}"));
    client.Submit(calls.back(), &sink_);
  }
  ASSERT_TRUE(WaitCommandsSeen(2));
  client.Shutdown(std::chrono::milliseconds(0));  // handlers are still blocked
  EXPECT_EQ(sink_.total(), 5u);
  for (const CallPtr& c : calls) {
    EXPECT_EQ(sink_.CountOf(c), 1);
    EXPECT_EQ(c->outcome, Outcome::kCanceled);
  }
  EXPECT_EQ(client.stats().canceled.load(), 5u);
  EXPECT_EQ(client.stats().pending.load(), 0);

  CallPtr late = MakeCommand("late", "message", R"({"channel":"C"})", "{}");
  client.Submit(late, &sink_);  // completed inline
  EXPECT_EQ(sink_.CountOf(late), 1);
  EXPECT_EQ(late->outcome, Outcome::kError);
  EXPECT_EQ(late->grpc_code, grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(late->error_message, "rpc client is shut down");
  client.Shutdown(std::chrono::milliseconds(0));  // idempotent
}

TEST_F(RpcClientTest, ShutdownGraceLetsInFlightCallsFinish) {
  BlockCommands();
  Options options;
  options.command_timeout_ms = 60000;
  Client& client = NewClient(options);
  CallPtr call = MakeCommand("s", "unsubscribe", R"({"channel":"C"})");
  client.Submit(call, &sink_);
  ASSERT_TRUE(WaitCommandsSeen(1));
  std::thread opener([this] { gate_.Open(); });
  client.Shutdown(std::chrono::milliseconds(60000));
  opener.join();
  EXPECT_EQ(sink_.CountOf(call), 1);
  EXPECT_EQ(call->outcome, Outcome::kOk);
  EXPECT_TRUE(call->command_response.stop_streams());
}

TEST_F(RpcClientTest, ManyThreadsEveryCallCompletesOnce) {
  Options options;
  options.concurrency = 8;
  options.command_timeout_ms = 60000;
  Client& client = NewClient(options);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 250;
  std::vector<std::vector<CallPtr>> calls(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto call = MakeCommand("t" + std::to_string(t), "message", R"({"channel":"C"})",
                                R"({"action":"echo","n":)" + std::to_string(i) + "}");
        call->owner = static_cast<uint64_t>(t);
        call->tag = static_cast<uint32_t>(i);
        calls[t].push_back(call);
        client.Submit(call, &sink_);
        if (i % 50 == 49) client.Cancel(call);  // some cancels race with completions
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(sink_.WaitCount(kThreads * kPerThread));
  client.Shutdown(std::chrono::milliseconds(0));
  EXPECT_EQ(sink_.total(), static_cast<size_t>(kThreads * kPerThread));
  uint64_t canceled = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      const CallPtr& c = calls[t][i];
      ASSERT_EQ(sink_.CountOf(c), 1);
      if (c->outcome == Outcome::kCanceled) {
        ++canceled;
        EXPECT_EQ(i % 50, 49);
        continue;
      }
      ASSERT_EQ(c->outcome, Outcome::kOk);
      ASSERT_EQ(c->command_response.transmissions_size(), 1);
      EXPECT_EQ(c->command_response.transmissions(0),
                R"({"identifier":"{\"channel\":\"C\"}","message":{"action":"echo","n":)" +
                    std::to_string(i) + "}}");
    }
  }
  EXPECT_EQ(client.stats().calls.load(), static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(client.stats().canceled.load(), canceled);
  EXPECT_EQ(client.stats().errors.load(), 0u);
  EXPECT_EQ(client.stats().pending.load(), 0);
}

// A sink may leave its wake-up to OnRpcBatchEnd: every OnRpcDone is followed, on the same
// thread, by an OnRpcBatchEnd, and no batch end comes without a completion before it.
TEST_F(RpcClientTest, EveryCompletionIsFollowedByABatchEndOnItsThread) {
  Client& client = NewClient({});
  constexpr int kCalls = 300;
  std::vector<CallPtr> calls;
  for (int i = 0; i < kCalls; ++i) {
    calls.push_back(MakeCommand("b", "message", R"({"channel":"C"})", R"({"action":"echo"})"));
    client.Submit(calls.back(), &sink_);
  }
  ASSERT_TRUE(sink_.WaitCount(kCalls));
  client.Shutdown(std::chrono::milliseconds(0));  // joins the dispatcher: no event is still due
  auto events = sink_.events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().kind, 'E');
  size_t done = 0;
  size_t open_since = 0;  // completions since the last batch end
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i].kind == 'D') {
      ++done;
      ++open_since;
      continue;
    }
    EXPECT_GT(open_since, 0u) << "batch end without a completion, event " << i;
    EXPECT_EQ(events[i].thread, events[i - (i > 0 ? 1 : 0)].thread) << "event " << i;
    open_since = 0;
  }
  EXPECT_EQ(done, static_cast<size_t>(kCalls));
}

// The shut-down path completes on the submitting thread and ends its batch there too.
TEST_F(RpcClientTest, SubmitAfterShutdownEndsItsBatchOnTheCaller) {
  Client& client = NewClient({});
  client.Shutdown(std::chrono::milliseconds(0));
  CallPtr call = MakeConnect("late", "http://example.com/cable");
  client.Submit(call, &sink_);
  auto events = sink_.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, 'D');
  EXPECT_EQ(events[1].kind, 'E');
  EXPECT_EQ(events[0].thread, std::this_thread::get_id());
  EXPECT_EQ(events[1].thread, std::this_thread::get_id());
  EXPECT_EQ(call->outcome, Outcome::kError);
}

// SubmitDeferred leaves the wake-up to Flush: calls queued by several threads, each flushing
// once at the end, all complete exactly once.
TEST_F(RpcClientTest, DeferredSubmitsCompleteAfterFlush) {
  Client& client = NewClient({});
  constexpr int kThreads = 3;
  constexpr int kPerThread = 100;
  std::vector<std::vector<CallPtr>> calls(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        calls[t].push_back(MakeConnect("d" + std::to_string(t) + "-" + std::to_string(i),
                                       "http://example.com/cable?user=u"));
        client.SubmitDeferred(calls[t].back(), &sink_);
      }
      client.Flush();
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(sink_.WaitCount(kThreads * kPerThread));
  for (const auto& per_thread : calls) {
    for (const CallPtr& c : per_thread) {
      EXPECT_EQ(sink_.CountOf(c), 1);
      EXPECT_EQ(c->outcome, Outcome::kOk);
    }
  }
  EXPECT_EQ(server_.connects().size(), static_cast<size_t>(kThreads * kPerThread));
  client.Shutdown(std::chrono::milliseconds(0));
  client.Flush();  // after shutdown: a no-op, not a crash
}

// Without BDP probing the HTTP/2 windows stay at their defaults (64 KiB), so replies and requests
// of megabytes must flow through WINDOW_UPDATEs, several at once on one connection.
TEST_F(RpcClientTest, MegabyteRequestsAndRepliesFlowConcurrently) {
  server_.SetCommandHandler(
      [](const anycable::CommandMessage& req, const Metadata&, anycable::CommandResponse* resp) {
        resp->set_status(anycable::SUCCESS);
        // Echo the request's data three times over: 1.5 MiB per reply, well under the 4 MiB limit.
        resp->add_transmissions(req.data() + req.data() + req.data());
        return grpc::Status::OK;
      });
  Client& client = NewClient({});
  constexpr int kCalls = 6;
  std::vector<CallPtr> calls;
  for (int i = 0; i < kCalls; ++i) {
    std::string data(512 * 1024, static_cast<char>('a' + i));
    data[i] = '#';  // each reply must carry its own request's bytes
    calls.push_back(MakeCommand("big" + std::to_string(i), "message", "{}", data));
    client.Submit(calls.back(), &sink_);
  }
  ASSERT_TRUE(sink_.WaitCount(kCalls));
  for (int i = 0; i < kCalls; ++i) {
    const CallPtr& c = calls[i];
    ASSERT_EQ(c->outcome, Outcome::kOk) << "call " << i << " grpc code " << c->grpc_code;
    ASSERT_EQ(c->command_response.transmissions_size(), 1);
    const std::string& reply = c->command_response.transmissions(0);
    const std::string& sent = c->command_request.data();
    ASSERT_EQ(reply.size(), 3 * sent.size());
    EXPECT_TRUE(reply == sent + sent + sent) << "call " << i << " got someone else's bytes";
  }
}

}  // namespace
}  // namespace cable::rpc
