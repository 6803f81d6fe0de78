// Server limits through the real binary: handshake timeout (slowloris), request-head size,
// --max-conn and running out of file descriptors.
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "core_fixture.h"
#include "hardening_util.h"

namespace cable::ithard {
namespace {

using cable::itcore::CoreTest;
using cable::test::WsClient;

class LimitsTest : public CoreTest {};

TEST_F(LimitsTest, HandshakeTimeoutDropsSlowlorisWithoutHurtingOthers) {
  StartServer({"--handshake_timeout", "2"});
  const std::string request = UpgradeRequest("/cable?user=slow", "slow");
  int slow = ConnectTcp(server_.port());
  ASSERT_GE(slow, 0);
  ASSERT_EQ(send(slow, request.data(), 1, MSG_NOSIGNAL), 1);

  // A normal client connecting meanwhile is served as usual.
  WsClient normal;
  ConnectWelcome(normal, "normal");

  // One byte per second: the request (~250 bytes) would take minutes; the server must drop the
  // connection long before it is complete. EOF without any response bytes is the drop.
  size_t sent = 1;
  bool eof = false;
  std::string got;
  while (!eof && sent < 40) {
    got += ReadFor(slow, 1s, &eof);
    if (eof) break;
    if (send(slow, request.data() + sent, 1, MSG_NOSIGNAL) != 1) {
      eof = true;  // reset by the server
      break;
    }
    ++sent;
  }
  close(slow);
  EXPECT_TRUE(eof) << "slow client still connected after " << sent << " bytes";
  EXPECT_LT(sent, request.size());
  EXPECT_EQ(got, "") << "a dropped handshake gets no response";

  // The normal client is unaffected.
  Barrier(normal);
}

TEST_F(LimitsTest, CompleteUpgradeIsNotSubjectToTheHandshakeTimeout) {
  StartServer({"--handshake_timeout", "1"});
  WsClient ws;
  ConnectWelcome(ws, "s1");
  // Well past the timeout: the upgraded connection stays (the deadline only covers kHttp).
  std::this_thread::sleep_for(2500ms);
  Barrier(ws);
}

TEST_F(LimitsTest, HeadOverSixteenKiBGets431AndOneUnderItUpgrades) {
  StartServer();
  std::string base = UpgradeRequest("/cable?user=a", "big");
  base.resize(base.size() - 2);  // drop the final CRLF to add a header
  std::string big = base + "X-Pad: " + std::string(17 * 1024, 'a') + "\r\n\r\n";
  std::string resp = cable::itcore::RawExchange(server_.port(), big, "\r\n\r\n");
  EXPECT_EQ(resp.rfind("HTTP/1.1 431 ", 0), 0u) << resp;

  std::string ok = base + "X-Pad: " + std::string(15 * 1024, 'a') + "\r\n\r\n";
  resp = cable::itcore::RawExchange(server_.port(), ok, "welcome");
  EXPECT_EQ(resp.rfind("HTTP/1.1 101 ", 0), 0u) << resp;
  EXPECT_NE(resp.find(WelcomeFrame("big")), std::string::npos) << resp;
}

TEST_F(LimitsTest, MaxConnHoldsTheThirdClientInTheBacklogUntilOneCloses) {
  StartServer({"--workers", "1", "--max-conn", "2"});
  WsClient a, b;
  ConnectWelcome(a, "a");
  ConnectWelcome(b, "b");

  int third = ConnectTcp(server_.port());  // the kernel completes the TCP handshake (backlog)
  ASSERT_GE(third, 0);
  std::string req = UpgradeRequest("/cable?user=c", "c");
  ASSERT_EQ(send(third, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  // An absence check: nothing may arrive while two connections are open (waiting longer only
  // makes it stricter; a slow machine cannot make it fail wrongly).
  bool eof = false;
  EXPECT_EQ(ReadFor(third, 1s, &eof), "");
  EXPECT_FALSE(eof);

  a.Close();
  std::string got = ReadUntil(third, WelcomeFrame("c"));
  EXPECT_EQ(got.rfind("HTTP/1.1 101 ", 0), 0u) << got;
  EXPECT_NE(got.find(WelcomeFrame("c")), std::string::npos) << got;
  close(third);
  Barrier(b);
}

// The server under RLIMIT_NOFILE=64: flooding it with connections makes accept fail with EMFILE.
TEST_F(LimitsTest, OutOfFileDescriptorsIsLoggedDoesNotSpinAndRecovers) {
  const int port = cable::test::FreePort();
  broadcast_port_ = cable::test::FreePort();
  Child server;
  ASSERT_TRUE(
      server.Spawn({cable::test::BinaryPath(), "--host", "127.0.0.1", "--port",
                    std::to_string(port), "--rpc_host", "127.0.0.1:" + std::to_string(rpc_port_),
                    "--http_broadcast_port", std::to_string(broadcast_port_), "--workers", "1"},
                   64));
  bool up = false;
  for (int i = 0; i < 500 && !up; ++i) {
    up = cable::test::HttpRequest(port, "GET", "/health").status == 200;
    if (!up) std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(up) << server.Output();

  WsClient existing;
  ASSERT_EQ(existing.Connect(port, "/cable?user=x", {{"X-Request-ID", "existing"}}), 101);
  ASSERT_EQ(existing.NextMessage().payload, WelcomeFrame("existing"));

  // More connections than descriptors: the excess waits in the backlog.
  std::vector<int> flood;
  for (int i = 0; i < 100; ++i) {
    int fd = ConnectTcp(port);
    if (fd < 0) break;
    std::string req = UpgradeRequest("/cable", "f" + std::to_string(i));
    send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    flood.push_back(fd);
  }
  ASSERT_TRUE(server.WaitOutput("Too many open files")) << server.Output();

  // Not a latency threshold: CPU time is a count of work done. A server that retried accept in a
  // tight loop would burn a whole core (about 100% of the interval); a loaded machine can only
  // lower the measured share, never raise it.
  const long hz = sysconf(_SC_CLK_TCK);
  long before = CpuTicks(server.pid());
  std::this_thread::sleep_for(2s);
  long after = CpuTicks(server.pid());
  ASSERT_GE(before, 0);
  EXPECT_LT(after - before, hz) << "server CPU ticks in 2 s: " << (after - before);

  // Existing clients are still served.
  ASSERT_TRUE(existing.SendText(R"({"command":"ping"})"));
  EXPECT_EQ(existing.NextMessage().payload, R"({"type":"pong"})");

  // Descriptors free up: a new client gets in again.
  for (int fd : flood) close(fd);
  WsClient fresh;
  ASSERT_EQ(fresh.Connect(port, "/cable?user=y", {{"X-Request-ID", "fresh"}}), 101)
      << server.Output();
  EXPECT_EQ(fresh.NextMessage(10s).payload, WelcomeFrame("fresh"));
  server.Kill(SIGKILL);
}

}  // namespace
}  // namespace cable::ithard
