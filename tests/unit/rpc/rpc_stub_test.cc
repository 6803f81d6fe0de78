// The demo app of tools/rpc_stub (ScriptedRpcServer defaults) and the rpc_stub binary.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "rpc_stub/scripted_server.h"

extern char** environ;

namespace cable::tools {
namespace {

const Metadata kMeta{"sid-1", "v1"};

anycable::ConnectionResponse Connect(const std::string& url, const std::string& cookie = "") {
  anycable::ConnectionRequest req;
  req.mutable_env()->set_url(url);
  if (!cookie.empty()) (*req.mutable_env()->mutable_headers())["cookie"] = cookie;
  anycable::ConnectionResponse resp;
  EXPECT_TRUE(ScriptedRpcServer::DemoConnect(req, kMeta, &resp).ok());
  return resp;
}

anycable::CommandResponse Command(const std::string& command, const std::string& identifier,
                                  const std::string& data = "") {
  anycable::CommandMessage req;
  req.set_command(command);
  req.set_identifier(identifier);
  req.set_data(data);
  anycable::CommandResponse resp;
  EXPECT_TRUE(ScriptedRpcServer::DemoCommand(req, kMeta, &resp).ok());
  return resp;
}

TEST(DemoAppTest, ConnectUserFromQueryCookieOrAnonymous) {
  auto q = Connect("http://h/cable?x=1&user=al%20ice");
  EXPECT_EQ(q.status(), anycable::SUCCESS);
  EXPECT_EQ(q.identifiers(), R"({"current_user":"al ice"})");
  ASSERT_EQ(q.transmissions_size(), 1);
  EXPECT_EQ(q.transmissions(0), R"({"type":"welcome","sid":"sid-1"})");
  EXPECT_EQ(q.env().cstate().at("user"), "al ice");

  auto c = Connect("http://h/cable", "a=b; user=bob");
  EXPECT_EQ(c.identifiers(), R"({"current_user":"bob"})");
  auto a = Connect("http://h/cable");
  EXPECT_EQ(a.identifiers(), R"({"current_user":"anonymous"})");
  auto quote = Connect("http://h/cable?user=a%22b");
  EXPECT_EQ(quote.identifiers(), R"({"current_user":"a\"b"})");
}

TEST(DemoAppTest, ConnectRejectsByUrlOrCookie) {
  for (const auto& resp : {Connect("http://h/cable?reject=1"), Connect("http://h/", "reject=1")}) {
    EXPECT_EQ(resp.status(), anycable::FAILURE);
    EXPECT_EQ(resp.identifiers(), "");
    ASSERT_EQ(resp.transmissions_size(), 1);
    EXPECT_EQ(resp.transmissions(0),
              R"({"type":"disconnect","reason":"unauthorized","reconnect":false})");
  }
}

TEST(DemoAppTest, Subscribe) {
  auto ok = Command("subscribe", R"({"channel":"Chat"})");
  EXPECT_EQ(ok.status(), anycable::SUCCESS);
  ASSERT_EQ(ok.streams_size(), 1);
  EXPECT_EQ(ok.streams(0), "Chat");
  ASSERT_EQ(ok.transmissions_size(), 1);
  EXPECT_EQ(ok.transmissions(0),
            R"({"type":"confirm_subscription","identifier":"{\"channel\":\"Chat\"}"})");

  auto stream = Command("subscribe", R"({"channel":"Chat","stream":"room:1"})");
  ASSERT_EQ(stream.streams_size(), 1);
  EXPECT_EQ(stream.streams(0), "room:1");

  auto rej = Command("subscribe", R"({"channel":"RejectChannel"})");
  EXPECT_EQ(rej.status(), anycable::FAILURE);
  EXPECT_EQ(rej.streams_size(), 0);
  ASSERT_EQ(rej.transmissions_size(), 1);
  EXPECT_EQ(rej.transmissions(0),
            R"({"type":"reject_subscription","identifier":"{\"channel\":\"RejectChannel\"}"})");
}

TEST(DemoAppTest, BadInputsAreErrors) {
  auto bad_id = Command("subscribe", "not json");
  EXPECT_EQ(bad_id.status(), anycable::ERROR);
  EXPECT_EQ(bad_id.error_msg(), "invalid identifier: not json");
  auto no_channel = Command("subscribe", R"({"x":1})");
  EXPECT_EQ(no_channel.status(), anycable::ERROR);
  EXPECT_EQ(no_channel.error_msg(), R"(invalid identifier: {"x":1})");
  auto bad_data = Command("message", R"({"channel":"C"})", "[1]");
  EXPECT_EQ(bad_data.status(), anycable::ERROR);
  EXPECT_EQ(bad_data.error_msg(), "invalid data: [1]");
  auto unknown = Command("whisper", R"({"channel":"C"})");
  EXPECT_EQ(unknown.status(), anycable::ERROR);
  EXPECT_EQ(unknown.error_msg(), "unknown command: whisper");
}

TEST(DemoAppTest, MessageActions) {
  const std::string id = R"({"channel":"C"})";
  auto echo = Command("message", id, R"({"action":"echo","text":"hi"})");
  EXPECT_EQ(echo.status(), anycable::SUCCESS);
  ASSERT_EQ(echo.transmissions_size(), 1);
  EXPECT_EQ(echo.transmissions(0),
            R"({"identifier":"{\"channel\":\"C\"}","message":{"action":"echo","text":"hi"}})");

  auto follow = Command("message", id, R"({"action":"follow","stream":"s1"})");
  ASSERT_EQ(follow.streams_size(), 1);
  EXPECT_EQ(follow.streams(0), "s1");
  auto unfollow = Command("message", id, R"({"action":"unfollow","stream":"s1"})");
  ASSERT_EQ(unfollow.stopped_streams_size(), 1);
  EXPECT_EQ(unfollow.stopped_streams(0), "s1");
  EXPECT_TRUE(Command("message", id, R"({"action":"stop_all"})").stop_streams());
  auto disc = Command("message", id, R"({"action":"disconnect"})");
  EXPECT_EQ(disc.status(), anycable::SUCCESS);
  EXPECT_TRUE(disc.disconnect());
  auto err = Command("message", id, R"({"action":"error"})");
  EXPECT_EQ(err.status(), anycable::ERROR);
  EXPECT_EQ(err.error_msg(), "demo app error");
  EXPECT_EQ(Command("message", id, R"({"action":"fail"})").status(), anycable::FAILURE);
  auto state = Command("message", id, R"({"action":"state","value":"v1"})");
  EXPECT_EQ(state.env().istate().at("k"), "v1");
  EXPECT_EQ(state.env().cstate().at("last"), "v1");
  auto num = Command("message", id, R"({"action":"state","value":{"a":1}})");
  EXPECT_EQ(num.env().istate().at("k"), R"({"a":1})");
  auto other = Command("message", id, R"({"action":"whatever"})");
  EXPECT_EQ(other.status(), anycable::SUCCESS);
  EXPECT_EQ(other.transmissions_size(), 0);
  EXPECT_EQ(other.streams_size(), 0);
}

TEST(DemoAppTest, UnsubscribeAndDisconnect) {
  auto unsub = Command("unsubscribe", R"({"channel":"C"})");
  EXPECT_EQ(unsub.status(), anycable::SUCCESS);
  EXPECT_TRUE(unsub.stop_streams());
  anycable::DisconnectResponse resp;
  EXPECT_TRUE(ScriptedRpcServer::DemoDisconnect({}, kMeta, &resp).ok());
  EXPECT_EQ(resp.status(), anycable::SUCCESS);
}

TEST(ScriptedRpcServerTest, RecordsAndWaits) {
  ScriptedRpcServer server;
  int port = server.Start();
  ASSERT_GT(port, 0);
  EXPECT_EQ(server.Start(), 0);  // already started
  auto stub = anycable::RPC::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.AddMetadata("sid", "abc");
  ctx.AddMetadata("protov", "v1");
  anycable::DisconnectRequest req;
  req.set_identifiers("ids");
  anycable::DisconnectResponse resp;
  server.SetDisconnectHandler([](const auto&, const Metadata& meta, auto* r) {
    r->set_status(anycable::FAILURE);
    r->set_error_msg("seen " + meta.sid);
    return grpc::Status::OK;
  });
  ASSERT_TRUE(stub->Disconnect(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.status(), anycable::FAILURE);
  EXPECT_EQ(resp.error_msg(), "seen abc");
  EXPECT_TRUE(server.WaitFor([](const ScriptedRpcServer& s) { return s.disconnects().size() == 1; },
                             std::chrono::seconds(30)));
  auto recs = server.disconnects();
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].request.identifiers(), "ids");
  EXPECT_EQ(recs[0].meta.sid, "abc");
  EXPECT_EQ(recs[0].meta.protov, "v1");
  EXPECT_FALSE(server.WaitFor([](const ScriptedRpcServer& s) { return !s.connects().empty(); },
                              std::chrono::milliseconds(1)));
  server.Stop();
  server.Stop();
}

TEST(ScriptedRpcServerTest, StartFailsOnUnbindableAddress) {
  ScriptedRpcServer server;
  EXPECT_EQ(server.Start("256.0.0.1:1"), 0);
}

TEST(RpcStubBinaryTest, ServesDemoAppAndExitsOnSigterm) {
  const char* dir = std::getenv("RINGCABLE_TOOLS_DIR");
  if (dir == nullptr) GTEST_SKIP() << "RINGCABLE_TOOLS_DIR not set (run through ctest)";
  const std::string bin = std::string(dir) + "/rpc_stub/rpc_stub";
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  std::string addr_flag = "--address";
  std::string addr = "127.0.0.1:0";
  char* argv[] = {const_cast<char*>(bin.c_str()), addr_flag.data(), addr.data(), nullptr};
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv, environ), 0) << bin;
  posix_spawn_file_actions_destroy(&fa);
  close(out[1]);
  FILE* f = fdopen(out[0], "r");
  char line[128] = {};
  ASSERT_NE(fgets(line, sizeof(line), f), nullptr);
  int port = 0;
  ASSERT_EQ(std::sscanf(line, "listening on %d", &port), 1) << line;
  ASSERT_GT(port, 0);

  auto stub = anycable::RPC::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.AddMetadata("sid", "bin-sid");
  anycable::ConnectionRequest req;
  req.mutable_env()->set_url("http://h/cable?user=zed");
  anycable::ConnectionResponse resp;
  ASSERT_TRUE(stub->Connect(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.identifiers(), R"({"current_user":"zed"})");
  EXPECT_EQ(resp.transmissions(0), R"({"type":"welcome","sid":"bin-sid"})");

  kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  fclose(f);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace cable::tools
