// Configuration through the real binary: errors are one "ringcable:" line and a non-zero exit;
// --help; env vars and their precedence (spec §2).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core_fixture.h"

namespace cable::itcore {
namespace {

using cable::test::BinaryPath;
using cable::test::FreePort;
using cable::test::HttpRequest;

class ConfigTest : public CoreTest {
 protected:
  // Runs the binary to completion with `args` (plus a free broadcast port so nothing touches
  // 8090) and checks the single-error-line contract; returns that line.
  std::string ExpectOneErrorLine(std::vector<std::string> args,
                                 const std::map<std::string, std::string>& env = {}) {
    std::vector<std::string> argv = {BinaryPath()};
    argv.insert(argv.end(), args.begin(), args.end());
    RunOutput r = RunToExit(argv, 10s, env);
    EXPECT_NE(r.exit_code, 0) << r.err;
    EXPECT_NE(r.exit_code, -1) << "did not exit: " << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err.rfind("ringcable:", 0), 0u) << r.err;
    EXPECT_FALSE(r.err.empty());
    if (!r.err.empty()) {
      EXPECT_EQ(r.err.back(), '\n') << r.err;
      EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "more than one line:\n" << r.err;
    }
    return r.err;
  }

  std::vector<std::string> RpcArgs() const {
    return {"--rpc_host", "127.0.0.1:" + std::to_string(rpc_port_)};
  }
};

// A listening socket on a free loopback port, closed on destruction.
class Occupied {
 public:
  Occupied() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    ok_ = bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 && listen(fd_, 8) == 0;
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~Occupied() { close(fd_); }
  bool ok() const { return ok_; }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  bool ok_ = false;
};

TEST_F(ConfigTest, UnknownFlagIsOneErrorLine) {
  std::string line = ExpectOneErrorLine({"--no_such_flag", "1"});
  EXPECT_NE(line.find("no_such_flag"), std::string::npos) << line;
}

TEST_F(ConfigTest, BadIntegerValueIsOneErrorLine) {
  std::string line = ExpectOneErrorLine({"--port", "abc"});
  EXPECT_NE(line.find("port"), std::string::npos) << line;
  EXPECT_NE(line.find("abc"), std::string::npos) << line;
}

TEST_F(ConfigTest, BadEnumValueIsOneErrorLine) {
  std::string line = ExpectOneErrorLine({"--disconnect_mode", "sometimes"});
  EXPECT_NE(line.find("disconnect_mode"), std::string::npos) << line;
}

TEST_F(ConfigTest, BadEnvValueIsOneErrorLine) {
  std::string line = ExpectOneErrorLine({}, {{"ANYCABLE_PORT", "eighty"}});
  EXPECT_NE(line.find("eighty"), std::string::npos) << line;
}

TEST_F(ConfigTest, MainPortInUseIsOneErrorLine) {
  Occupied busy;
  ASSERT_TRUE(busy.ok());
  std::vector<std::string> args = {"--host",
                                   "127.0.0.1",
                                   "--port",
                                   std::to_string(busy.port()),
                                   "--http_broadcast_port",
                                   std::to_string(FreePort())};
  for (auto& a : RpcArgs()) args.push_back(a);
  std::string line = ExpectOneErrorLine(args);
  EXPECT_NE(line.find(std::to_string(busy.port())), std::string::npos) << line;
}

TEST_F(ConfigTest, BroadcastPortInUseIsOneErrorLine) {
  Occupied busy;
  ASSERT_TRUE(busy.ok());
  std::vector<std::string> args = {"--host",
                                   "127.0.0.1",
                                   "--port",
                                   std::to_string(FreePort()),
                                   "--http_broadcast_port",
                                   std::to_string(busy.port())};
  for (auto& a : RpcArgs()) args.push_back(a);
  std::string line = ExpectOneErrorLine(args);
  EXPECT_NE(line.find(std::to_string(busy.port())), std::string::npos) << line;
}

TEST_F(ConfigTest, ApiPortInUseIsOneErrorLine) {
  Occupied busy;
  ASSERT_TRUE(busy.ok());
  std::vector<std::string> args = {"--host",
                                   "127.0.0.1",
                                   "--port",
                                   std::to_string(FreePort()),
                                   "--http_broadcast_port",
                                   std::to_string(FreePort()),
                                   "--api_port",
                                   std::to_string(busy.port())};
  for (auto& a : RpcArgs()) args.push_back(a);
  EXPECT_EQ(ExpectOneErrorLine(args),
            "ringcable: cannot listen on 127.0.0.1:" + std::to_string(busy.port()) +
                " (REST API): Address already in use\n");
}

TEST_F(ConfigTest, HelpExitsZeroAndListsRpcHost) {
  RunOutput r = RunToExit({BinaryPath(), "--help"}, 10s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("--rpc_host"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--port"), std::string::npos) << r.out;
  EXPECT_EQ(r.err, "");
}

TEST_F(ConfigTest, AnycablePortEnvIsUsed) {
  const int port = FreePort();
  RawServer server;
  std::vector<std::string> args = {"--host", "127.0.0.1", "--http_broadcast_port",
                                   std::to_string(FreePort())};
  for (auto& a : RpcArgs()) args.push_back(a);
  ASSERT_TRUE(server.Start(args, {{"ANYCABLE_PORT", std::to_string(port)}}, port, "/health"))
      << server.Log();
  WsClient ws;
  ASSERT_EQ(ws.Connect(port, "/cable", {{"X-Request-ID", "env"}}), 101);
  EXPECT_EQ(ws.NextMessage().payload, WelcomeFrame("env"));
  ws.Close();
  EXPECT_EQ(server.Stop(), 0);
}

TEST_F(ConfigTest, PortEnvAliasIsUsed) {
  const int port = FreePort();
  RawServer server;
  std::vector<std::string> args = {"--host", "127.0.0.1", "--http_broadcast_port",
                                   std::to_string(FreePort())};
  for (auto& a : RpcArgs()) args.push_back(a);
  ASSERT_TRUE(server.Start(args, {{"PORT", std::to_string(port)}}, port, "/health"))
      << server.Log();
  EXPECT_EQ(server.Stop(), 0);
}

TEST_F(ConfigTest, CommandLineWinsOverEnv) {
  const int env_port = FreePort();
  const int cli_port = FreePort();
  RawServer server;
  std::vector<std::string> args = {"--host",
                                   "127.0.0.1",
                                   "--port",
                                   std::to_string(cli_port),
                                   "--http_broadcast_port",
                                   std::to_string(FreePort())};
  for (auto& a : RpcArgs()) args.push_back(a);
  ASSERT_TRUE(server.Start(args,
                           {{"ANYCABLE_PORT", std::to_string(env_port)},
                            {"ANYCABLE_HEALTH_PATH", "/from-env"},
                            {"ANYCABLE_HEADERS", "x-env"}},
                           cli_port, "/from-env"))
      << server.Log();
  EXPECT_EQ(HttpRequest(env_port, "GET", "/from-env").status, 0);  // nothing listens there
  // Env values without a CLI override apply: the header whitelist came from ANYCABLE_HEADERS.
  WsClient ws;
  ASSERT_EQ(ws.Connect(cli_port, "/cable", {{"X-Env", "yes"}, {"Cookie", "c=1"}}), 101);
  ASSERT_EQ(ws.NextMessage().opcode, 1);
  auto connects = rpc_.connects();
  ASSERT_EQ(connects.size(), 1u);
  std::map<std::string, std::string> headers(connects[0].request.env().headers().begin(),
                                             connects[0].request.env().headers().end());
  EXPECT_EQ(headers,
            (std::map<std::string, std::string>{{"x-env", "yes"}, {"REMOTE_ADDR", "127.0.0.1"}}));
  ws.Close();
  EXPECT_EQ(server.Stop(), 0);
}

TEST_F(ConfigTest, SecondSignalDuringShutdownExitsAtOnce) {
  // Not a config error, but process-level behaviour of main.cc: a held Disconnect keeps the
  // first SIGTERM's shutdown waiting; a second SIGTERM ends the process with a non-zero status.
  Gate release;
  rpc_.SetDisconnectHandler([open = release.flag()](const anycable::DisconnectRequest& req,
                                                    const cable::tools::Metadata& meta,
                                                    anycable::DisconnectResponse* r) {
    Gate::Wait(open);
    return ScriptedRpcServer::DemoDisconnect(req, meta, r);
  });
  StartServer({"--rpc_command_timeout", "20000"});
  WsClient ws;
  ConnectWelcome(ws, "twice");
  kill(server_.pid(), SIGTERM);
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& s) { return s.disconnects().size() == 1; }, 10s));
  EXPECT_TRUE(server_.running());
  // Stop() sends the second SIGTERM.
  EXPECT_EQ(server_.Stop(), 1);
  release.Open();
}

}  // namespace
}  // namespace cable::itcore
