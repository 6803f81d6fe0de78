// Faults: the RPC server (a separate rpc_stub process) is SIGKILLed while a command is in flight.
// gRPC framing makes "the RPC server returns garbage" impossible to produce through a real
// channel (a malformed HTTP/2 or protobuf payload is a transport error, the same path as this
// one), so only the crash is tested.
#include <signal.h>

#include <cstdlib>
#include <thread>

#include "core_fixture.h"
#include "hardening_util.h"

namespace cable::ithard {
namespace {

using cable::test::ServerProcess;
using cable::test::WsClient;
using cable::test::WsFrame;

std::string RpcStubPath() {
  const char* dir = std::getenv("RINGCABLE_TOOLS_DIR");
  return std::string(dir ? dir : "build/tools") + "/rpc_stub/rpc_stub";
}

std::string Welcome(const std::string& sid) { return R"({"type":"welcome","sid":")" + sid + "\"}"; }

std::string Confirm(const std::string& identifier) {
  return "{\"type\":\"confirm_subscription\",\"identifier\":" +
         cable::test::JsonString(identifier) + "}";
}

TEST(FaultsTest, RpcServerKilledMidCommandThenBack) {
  const int rpc_port = cable::test::FreePort();
  const std::string rpc_addr = "127.0.0.1:" + std::to_string(rpc_port);
  Child rpc;
  // The delay keeps the command in the handler when the process is killed.
  ASSERT_TRUE(rpc.Spawn({RpcStubPath(), "--address", rpc_addr, "--delay_ms", "300"}));
  ASSERT_TRUE(rpc.WaitOutput("listening on")) << rpc.Output();

  // The default --rpc_command_timeout (3 s): a command waits that long for the RPC server.
  ServerProcess server;
  ASSERT_TRUE(server.Start(
      {"--rpc_host", rpc_addr, "--http_broadcast_port", std::to_string(cable::test::FreePort())}))
      << server.Log();
  WsClient a, b;
  ASSERT_EQ(a.Connect(server.port(), "/cable?user=a", {{"X-Request-ID", "a"}}), 101);
  ASSERT_EQ(a.NextMessage().payload, Welcome("a"));
  ASSERT_EQ(b.Connect(server.port(), "/cable?user=b", {{"X-Request-ID", "b"}}), 101);
  ASSERT_EQ(b.NextMessage().payload, Welcome("b"));

  const std::string lost = WsClient::Identifier("LostChannel");
  ASSERT_TRUE(a.Subscribe(lost));
  std::this_thread::sleep_for(100ms);  // let the call reach the handler (either way it is lost)
  rpc.Kill(SIGKILL);

  // The call is retried and waits for the server until --rpc_command_timeout, then fails; the
  // server logs it.
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (server.Log().find("subscribe RPC failed") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_NE(server.Log().find("subscribe RPC failed"), std::string::npos) << server.Log();
  ASSERT_TRUE(server.running());

  // The RPC server comes back on the same address; both connections keep working. Commands sent
  // at once wait for the reconnection (gRPC wait-for-ready; ringcable retries connecting every
  // 200 ms while calls wait) instead of failing on a channel still in reconnect backoff.
  Child rpc2;
  ASSERT_TRUE(rpc2.Spawn({RpcStubPath(), "--address", rpc_addr}));
  ASSERT_TRUE(rpc2.WaitOutput("listening on")) << rpc2.Output();

  const std::string next = WsClient::Identifier("NextChannel");
  ASSERT_TRUE(a.Subscribe(next));
  // The first message after the crash is the reply to the new command: the lost one never
  // answers (no reply on RPC error, as anycable-go).
  WsFrame f = a.NextMessage(15s);
  EXPECT_EQ(f.payload, Confirm(next));

  const std::string other = WsClient::Identifier("OtherChannel");
  ASSERT_TRUE(b.Subscribe(other));
  EXPECT_EQ(b.NextMessage(15s).payload, Confirm(other));

  // A fresh client connects (Connect RPC) as usual.
  WsClient c;
  ASSERT_EQ(c.Connect(server.port(), "/cable?user=c", {{"X-Request-ID", "c"}}), 101);
  EXPECT_EQ(c.NextMessage(15s).payload, Welcome("c"));
  server.Stop();
}

}  // namespace
}  // namespace cable::ithard
