// Half-open connections: a peer that vanishes without a FIN (cable pulled, NAT entry dropped) must
// not hold a slot forever. The whole test process moves into a private network namespace (needs
// CAP_SYS_ADMIN, as CI's root has; skipped otherwise) and takes its loopback interface down, so
// every packet is dropped and the server's pings stay unacknowledged. With --tcp_user_timeout the
// kernel gives up on the socket, the pending receive fails with ETIMEDOUT and the server drops the
// client; a control server with the kernel's default (minutes of retransmits) still holds its
// client when the link comes back, which shows the drop comes from the flag and not from the outage
// itself.
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "hardening_util.h"
#include "test_support.h"

namespace cable::ithard {
namespace {

using cable::test::HttpRequest;
using cable::test::RunCommand;
using cable::test::ServerProcess;
using cable::test::WsClient;

std::string IpTool() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return "";
}

std::string RpcStubPath() {
  const char* dir = std::getenv("RINGCABLE_TOOLS_DIR");
  return std::string(dir ? dir : "build/tools") + "/rpc_stub/rpc_stub";
}

// anycable_go_clients_num from the Prometheus text, or -1.
long ClientsNum(int port) {
  auto r = HttpRequest(port, "GET", "/metrics");
  const std::string key = "\nanycable_go_clients_num ";
  size_t at = r.body.find(key);
  if (r.status != 200 || at == std::string::npos) return -1;
  return std::strtol(r.body.c_str() + at + key.size(), nullptr, 10);
}

// Polls until the server reports `want` clients (bounded); returns the last value seen.
long WaitClients(int port, long want) {
  long seen = -1;
  auto deadline = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < deadline) {
    seen = ClientsNum(port);
    if (seen == want) break;
    std::this_thread::sleep_for(50ms);
  }
  return seen;
}

TEST(HalfOpenTest, VanishedPeerIsDroppedAfterTcpUserTimeout) {
  const std::string ip = IpTool();
  if (ip.empty()) GTEST_SKIP() << "the ip tool (iproute2) is not installed";
  if (unshare(CLONE_NEWNET) != 0) {
    GTEST_SKIP() << "no private network namespace (needs CAP_SYS_ADMIN): " << std::strerror(errno);
  }
  auto up = RunCommand({ip, "link", "set", "lo", "up"}, 10s);
  if (up.exit_code != 0) GTEST_SKIP() << "cannot configure the namespace's loopback: " << up.output;

  const std::string rpc_addr = "127.0.0.1:" + std::to_string(cable::test::FreePort());
  Child rpc;
  ASSERT_TRUE(rpc.Spawn({RpcStubPath(), "--address", rpc_addr}));
  ASSERT_TRUE(rpc.WaitOutput("listening on")) << rpc.Output();

  const std::vector<std::string> common = {
      "--rpc_host",     rpc_addr,   "--broadcast_adapter", "http",
      "--metrics_http", "/metrics", "--ping_interval",     "1"};
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.end(), common.begin(), common.end());
    extra.insert(extra.end(), {"--http_broadcast_port", std::to_string(cable::test::FreePort())});
    return extra;
  };
  ServerProcess guarded, control;
  ASSERT_TRUE(guarded.Start(with({"--tcp_user_timeout", "2"}))) << guarded.Log();
  ASSERT_TRUE(control.Start(with({"--tcp_user_timeout", "0"}))) << control.Log();

  WsClient a, b;
  ASSERT_EQ(a.Connect(guarded.port(), "/cable?user=a"), 101);
  ASSERT_NE(a.NextMessage().payload.find("welcome"), std::string::npos);
  ASSERT_EQ(b.Connect(control.port(), "/cable?user=b"), 101);
  ASSERT_NE(b.NextMessage().payload.find("welcome"), std::string::npos);
  ASSERT_EQ(WaitClients(guarded.port(), 1), 1);
  ASSERT_EQ(WaitClients(control.port(), 1), 1);

  // The peers vanish: nothing gets through in either direction, and nobody sends a FIN or RST.
  auto down = RunCommand({ip, "link", "set", "lo", "down"}, 10s);
  ASSERT_EQ(down.exit_code, 0) << down.output;
  // Long enough for several unacknowledged pings plus the 2 s user timeout, with room for a slow
  // machine; this waits for the kernel's timer, it does not measure anything.
  std::this_thread::sleep_for(8s);
  up = RunCommand({ip, "link", "set", "lo", "up"}, 10s);
  ASSERT_EQ(up.exit_code, 0) << up.output;

  // The guarded server dropped its client; the control server still has its own.
  EXPECT_EQ(WaitClients(guarded.port(), 0), 0) << guarded.Log();
  EXPECT_EQ(ClientsNum(control.port()), 1);
  // The control client's connection survived the outage: pings flow again once the link is back
  // (after the sender's next retransmission, which backs off exponentially during the outage).
  bool ping = false;
  const auto ping_deadline = std::chrono::steady_clock::now() + 40s;
  while (!ping && std::chrono::steady_clock::now() < ping_deadline) {
    auto f = b.Next(2s);
    if (f.opcode == 1) ping = f.payload.find("\"type\":\"ping\"") != std::string::npos;
    if (f.opcode == 8) break;  // closed: the control lost its client after all
  }
  EXPECT_TRUE(ping);
  // The guarded client learns it was dropped as soon as it sends something (RST from the server).
  a.SendText(R"({"command":"subscribe","identifier":"{\"channel\":\"X\"}"})");
  EXPECT_TRUE(a.WaitEof(30s));
}

}  // namespace
}  // namespace cable::ithard
