// RPC over HTTP when the app's host name does not resolve: a network error, retried with
// anycable-go's backoff until the command timeout, then 1011 "Auth Error"; counted in the RPC
// metrics. The test runs in a private network namespace (only its own loopback), so the resolver's
// query cannot leave the machine: it fails at once for want of a route.
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <gtest/gtest.h>

#include "httprpc_fixture.h"
#include "tests/support/test_support.h"

namespace cable::httprpc {
namespace {

using test::RunCommand;
using test::ServerProcess;
using test::WsClient;

std::string IpTool() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return "";
}

TEST(HttpRpcDnsTest, UnresolvableHostIsRetriedThenAuthError) {
  const std::string ip = IpTool();
  if (ip.empty()) GTEST_SKIP() << "the ip tool (iproute2) is not installed";
  if (unshare(CLONE_NEWNET) != 0) {
    GTEST_SKIP() << "no private network namespace (needs CAP_SYS_ADMIN): " << std::strerror(errno);
  }
  auto up = RunCommand({ip, "link", "set", "lo", "up"}, 10s);
  ASSERT_EQ(up.exit_code, 0) << up.output;

  ServerProcess server;
  ASSERT_TRUE(
      server.Start({"--rpc_host", "http://rpc-app.invalid:8080/_anycable", "--rpc_command_timeout",
                    "1000", "--metrics_http", "/metrics", "--broadcast_adapter", "http",
                    "--http_broadcast_port", std::to_string(test::FreePort())}))
      << server.Log();
  WsClient ws;
  ASSERT_EQ(ws.Connect(server.port(), "/cable"), 101);
  auto frame = ws.Next(30s);
  ASSERT_EQ(frame.opcode, 8) << frame.payload;
  EXPECT_EQ(frame.close_code(), 1011);
  EXPECT_EQ(frame.close_reason(), "Auth Error");
  EXPECT_EQ(WaitMetric(server.port(), "rpc_error_total", 1), 1);
  EXPECT_GE(Metric(server.port(), "rpc_retries_total"), 1);
  EXPECT_EQ(Metric(server.port(), "rpc_timeout_total"), 0);
  EXPECT_NE(server.Log().find("resolve"), std::string::npos) << server.Log();
  // The server itself is unharmed and still answers.
  EXPECT_EQ(test::HttpRequest(server.port(), "GET", "/health").status, 200);
}

}  // namespace
}  // namespace cable::httprpc
