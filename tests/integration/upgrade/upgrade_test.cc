// Live upgrade (#19) through the real binary: SIGUSR2 starts the binary at the same path, which
// takes over the listeners and every open WebSocket connection; the old process exits. The test
// process is a child subreaper, so the new process (a child of the old one) becomes its child
// once the old one exits and can be stopped and reaped by pid.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include "core_fixture.h"

namespace cable::itcore {
namespace {

using Clock = std::chrono::steady_clock;

// A process this test did not spawn directly (the upgraded server). Stopped with SIGTERM and
// reaped (the test is its subreaper); killed if still running at destruction.
class Adopted {
 public:
  ~Adopted() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      int st;
      waitpid(pid_, &st, 0);
    }
  }
  void set(pid_t pid) { pid_ = pid; }
  pid_t pid() const { return pid_; }
  // SIGTERM and wait (bounded); the exit status, -1 if it had to be killed.
  int Stop(std::chrono::milliseconds timeout = 15s) {
    if (pid_ <= 0) return -1;
    kill(pid_, SIGTERM);
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
};

class UpgradeTest : public CoreTest {
 protected:
  void SetUp() override {
    CoreTest::SetUp();
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << "---- log ----\n" << server_.Log() << "-------------\n";
    next_.Stop();
    CoreTest::TearDown();
  }
  // Waits until the server's log (old and new process share it) contains `needle`.
  bool WaitLog(const std::string& needle, std::chrono::milliseconds timeout = 20s) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (server_.Log().find(needle) != std::string::npos) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  // The pid of the process the last upgrade started ("upgrade: started <path> (pid N)").
  pid_t StartedPid() {
    std::string log = server_.Log();
    size_t at = log.rfind("upgrade: started ");
    if (at == std::string::npos) return -1;
    at = log.find("(pid ", at);
    return at == std::string::npos ? -1 : std::atoi(log.c_str() + at + 5);
  }
  // SIGUSR2; the old process exits after the handover; the new one is adopted by this test.
  void Upgrade() {
    ASSERT_EQ(kill(server_.pid(), SIGUSR2), 0);
    ASSERT_TRUE(WaitLog("upgrade: started "));
    pid_t pid = StartedPid();
    ASSERT_GT(pid, 0);
    next_.set(pid);  // stopped by TearDown whatever happens next
    ASSERT_EQ(server_.WaitExit(30s), 0) << "the old process did not exit";
    ASSERT_TRUE(WaitLog("upgrade: adopted "));
  }

  Adopted next_;
};

TEST_F(UpgradeTest, ConnectionsMoveWithTheirStateAndNoRpc) {
  StartServer({"--workers", "2", "--metrics_http", "/metrics"});
  const std::string room = WsClient::Identifier("ChatChannel", {{"stream", "room1"}});
  const std::string other = WsClient::Identifier("ChatChannel", {{"stream", "room2"}});
  // v1 clients with state (istate + cstate via the demo "state" action), and an ext client.
  std::vector<std::unique_ptr<WsClient>> v1;
  for (int i = 0; i < 6; ++i) {
    v1.push_back(std::make_unique<WsClient>());
    ConnectWelcome(*v1.back(), "sid-" + std::to_string(i), "/cable?user=u" + std::to_string(i));
    SubscribeConfirmed(*v1.back(), room);
    ASSERT_TRUE(
        v1.back()->Perform(room, R"({"action":"state","value":"v)" + std::to_string(i) + R"("})"));
    Barrier(*v1.back());
  }
  WsClient ext;
  std::string welcome = ConnectExt(ext, "/cable?user=x");
  ASSERT_FALSE(SidOf(welcome).empty());
  ASSERT_TRUE(ext.Subscribe(other));
  ASSERT_TRUE(ext.WaitFor("confirm_subscription").has_value());
  ASSERT_EQ(rpc_.connects().size(), 7u);
  size_t commands_before = rpc_.commands().size();

  Upgrade();
  EXPECT_EQ(rpc_.connects().size(), 7u) << "no Connect RPC for a handed-over connection";
  EXPECT_EQ(rpc_.disconnects().size(), 0u) << "no Disconnect RPC for a handed-over connection";
  EXPECT_EQ(rpc_.commands().size(), commands_before) << "no subscribe RPC either";
  EXPECT_NE(server_.Log().find("upgrade: complete in"), std::string::npos);
  auto metrics = cable::test::HttpRequest(server_.port(), "GET", "/metrics");
  ASSERT_EQ(metrics.status, 200);
  // ringcable_worker_upgrade_adopted_total{worker="N"} summed over the workers.
  long adopted = 0;
  const std::string series = "\nringcable_worker_upgrade_adopted_total{";
  for (size_t at = metrics.body.find(series); at != std::string::npos;
       at = metrics.body.find(series, at + 1)) {
    adopted += std::atol(metrics.body.c_str() + metrics.body.find("} ", at) + 2);
  }
  EXPECT_EQ(adopted, 7) << metrics.body;
  EXPECT_NE(metrics.body.find("ringcable_worker_upgrade_fallbacks_total{worker=\"0\"} 0\n"),
            std::string::npos);

  // Broadcasts reach every moved subscriber; the first thing each client sees is the message
  // (no welcome, no disconnect, no close).
  Broadcast(Publication("room1", R"({"n":1})"));
  Broadcast(Publication("room2", R"({"n":2})"));
  for (auto& ws : v1) {
    WsFrame f = ws->NextMessage();
    ASSERT_EQ(f.opcode, 1);
    EXPECT_EQ(f.payload, MessageFrame(room, R"({"n":1})"));
  }
  auto got = ext.WaitFor("\"n\":2");
  ASSERT_TRUE(got.has_value());

  // A later perform reaches the RPC server with the session's state: identifiers, cstate, istate.
  ASSERT_TRUE(v1[3]->Perform(room, R"({"action":"echo","x":1})"));
  auto echo = v1[3]->WaitFor("\"x\":1");
  ASSERT_TRUE(echo.has_value());
  auto cmds = rpc_.commands();
  ASSERT_EQ(cmds.size(), commands_before + 1);
  const auto& m = cmds.back().request;
  EXPECT_EQ(m.connection_identifiers(), R"({"current_user":"u3"})");
  EXPECT_EQ(cmds.back().meta.sid, "sid-3");
  ASSERT_EQ(m.env().istate().count("k"), 1u);
  EXPECT_EQ(m.env().istate().at("k"), "v3");
  ASSERT_EQ(m.env().cstate().count("last"), 1u);
  EXPECT_EQ(m.env().cstate().at("last"), "v3");
  EXPECT_NE(m.env().url().find("user=u3"), std::string::npos);

  // New connections are served by the new process, which stops normally: every session gets its
  // Disconnect call then.
  WsClient late;
  ConnectWelcome(late, "sid-late");
  EXPECT_EQ(next_.Stop(), 0);
  EXPECT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& s) { return s.disconnects().size() == 8; }, 10s));
}

TEST_F(UpgradeTest, SecondUpgradeWorksToo) {
  StartServer({"--workers", "1"});
  const std::string room = WsClient::Identifier("ChatChannel", {{"stream", "r"}});
  WsClient ws;
  ConnectWelcome(ws, "sid-twice");
  SubscribeConfirmed(ws, room);
  Upgrade();
  Broadcast(Publication("r", R"({"n":1})"));
  ASSERT_EQ(ws.NextMessage().payload, MessageFrame(room, R"({"n":1})"));
  // The new process is upgraded in turn (it is now the test's child).
  ASSERT_EQ(kill(next_.pid(), SIGUSR2), 0);
  auto deadline = Clock::now() + 30s;
  int st = 0;
  pid_t r = 0;
  while (Clock::now() < deadline && (r = waitpid(next_.pid(), &st, WNOHANG)) == 0) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(r, next_.pid());
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  next_.set(StartedPid());
  ASSERT_GT(next_.pid(), 0);
  Broadcast(Publication("r", R"({"n":2})"));
  ASSERT_EQ(ws.NextMessage().payload, MessageFrame(room, R"({"n":2})"));
  EXPECT_EQ(rpc_.connects().size(), 1u);
  EXPECT_EQ(rpc_.disconnects().size(), 0u);
}

// Publications at a steady rate while the connections move: every subscriber gets each one
// exactly once, in publication order, whichever process holds it at the time.
TEST_F(UpgradeTest, BroadcastsDuringTheHandoverArriveOnceAndInOrder) {
  StartServer({"--workers", "2"});
  const std::string room = WsClient::Identifier("ChatChannel", {{"stream", "seq"}});
  constexpr int kClients = 100;
  constexpr int kPublications = 400;
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<WsClient>());
    if (i % 2 == 0) {
      ConnectWelcome(*clients.back(), "sid-" + std::to_string(i));
    } else {
      ASSERT_FALSE(SidOf(ConnectExt(*clients.back())).empty());
    }
    ASSERT_TRUE(clients.back()->Subscribe(room));
    ASSERT_TRUE(clients.back()->WaitFor("confirm_subscription").has_value());
  }
  // One publisher, one POST per publication on a fresh connection, paced (not synchronised) by a
  // short pause; a POST refused at the transport level (the old process closed an idle
  // connection) published nothing and is sent again.
  std::atomic<int> published{0};
  std::atomic<int> failures{0};
  std::thread publisher([&] {
    for (int n = 1; n <= kPublications; ++n) {
      for (int attempt = 0; attempt < 50; ++attempt) {
        auto r = cable::test::HttpRequest(broadcast_port_, "POST", "/_broadcast",
                                          {{"Content-Type", "application/json"}},
                                          Publication("seq", "{\"n\":" + std::to_string(n) + "}"));
        if (attempt > 0) std::fprintf(stderr, "publication %d: attempt %d\n", n, attempt + 1);
        if (r.status == 201) break;
        if (r.status != 0) {
          failures.fetch_add(1);
          break;
        }
      }
      published.store(n);
      std::this_thread::sleep_for(1ms);
    }
  });
  auto deadline = Clock::now() + 30s;
  while (published.load() < kPublications / 4 && Clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  Upgrade();
  publisher.join();
  ASSERT_EQ(failures.load(), 0);
  ASSERT_EQ(published.load(), kPublications);
  for (int i = 0; i < kClients; ++i) {
    std::string seen;
    for (int n = 1; n <= kPublications; ++n) {
      WsFrame f = clients[i]->NextMessage();
      ASSERT_EQ(f.opcode, 1) << "client " << i << " lost publication " << n;
      size_t at = f.payload.find("{\"n\":");
      seen += f.payload.substr(at == std::string::npos ? 0 : at + 5, 4) + " ";
      ASSERT_NE(f.payload.find("{\"n\":" + std::to_string(n) + "}"), std::string::npos)
          << "client " << i << " expected " << n << ", got " << f.payload << "; seen " << seen;
    }
  }
  EXPECT_EQ(rpc_.connects().size(), static_cast<size_t>(kClients));
  EXPECT_EQ(rpc_.disconnects().size(), 0u);
  // Nothing more (no duplicate at the end): a marker publication is the next message.
  Broadcast(Publication("seq", R"({"n":"end"})"));
  for (auto& c : clients) ASSERT_NE(c->NextMessage().payload.find("\"end\""), std::string::npos);
}

// One keep-alive HTTP request/response exchange on `fd` (bounded); the response's status line.
std::string KeepAlivePost(int fd, const std::string& body) {
  std::string req =
      "POST /_broadcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) return "";
  std::string got;
  auto deadline = Clock::now() + 10s;
  while (got.find("\r\n\r\n") == std::string::npos && Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return got;
    got.append(buf, static_cast<size_t>(n));
  }
  return got.substr(0, got.find("\r\n"));
}

// A broadcaster's keep-alive connection moves with the rest: its next request, on the same socket,
// is answered by the new process.
TEST_F(UpgradeTest, KeepAliveBroadcastConnectionMovesToo) {
  StartServer({"--workers", "2"});
  const std::string room = WsClient::Identifier("ChatChannel", {{"stream", "room1"}});
  WsClient ws;
  ConnectWelcome(ws, "sid-ka");
  SubscribeConfirmed(ws, room);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(broadcast_port_));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(KeepAlivePost(fd, Publication("room1", R"({"n":1})")), "HTTP/1.1 201 Created");
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(room, R"({"n":1})"));
  Upgrade();
  EXPECT_EQ(KeepAlivePost(fd, Publication("room1", R"({"n":2})")), "HTTP/1.1 201 Created");
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(room, R"({"n":2})"));
  close(fd);
  EXPECT_EQ(rpc_.connects().size(), 1u);
  EXPECT_EQ(rpc_.disconnects().size(), 0u);
}

// The new process dies in the middle of the handover (a test hook makes it stop acknowledging
// after two connections; the test then kills it): the old process keeps every connection it had
// no ack for, and accepts again. The two acknowledged ones belonged to the dead process.
TEST_F(UpgradeTest, NewProcessKilledMidHandoverLeavesTheRestWithTheOld) {
  broadcast_port_ = cable::test::FreePort();
  ASSERT_TRUE(
      server_.Start({"--rpc_host", "127.0.0.1:" + std::to_string(rpc_port_),
                     "--http_broadcast_port", std::to_string(broadcast_port_), "--workers", "1"},
                    {{"RINGCABLE_UPGRADE_TEST_ACK_LIMIT", "2"}}));
  const std::string room = WsClient::Identifier("ChatChannel", {{"stream", "room1"}});
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < 5; ++i) {
    clients.push_back(std::make_unique<WsClient>());
    ConnectWelcome(*clients.back(), "sid-" + std::to_string(i));
    SubscribeConfirmed(*clients.back(), room);
  }
  ASSERT_EQ(kill(server_.pid(), SIGUSR2), 0);
  ASSERT_TRUE(WaitLog("test hook: holding back acks"));
  pid_t child = StartedPid();
  ASSERT_GT(child, 0);
  ASSERT_EQ(kill(child, SIGKILL), 0);  // the old process reaps it
  ASSERT_TRUE(WaitLog("the old process keeps serving"));
  EXPECT_NE(server_.Log().find("went away during the handover"), std::string::npos);
  EXPECT_TRUE(server_.running());

  Broadcast(Publication("room1", R"({"n":1})"));
  int kept = 0;
  int lost = 0;
  for (auto& c : clients) {
    WsFrame f = c->NextMessage();
    if (f.opcode == 1) {
      EXPECT_EQ(f.payload, MessageFrame(room, R"({"n":1})"));
      ++kept;
    } else {
      ++lost;
    }
  }
  EXPECT_EQ(kept, 3);
  EXPECT_EQ(lost, 2);
  // The old process accepts again and its kept sessions still work.
  WsClient fresh;
  ConnectWelcome(fresh, "sid-fresh");
  SubscribeConfirmed(fresh, room);
  EXPECT_EQ(rpc_.connects().size(), 6u);
  EXPECT_EQ(rpc_.disconnects().size(), 0u);
  EXPECT_EQ(server_.Stop(), 0);
  // Its shutdown owes a Disconnect to the 3 kept sessions and the fresh one.
  EXPECT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& s) { return s.disconnects().size() == 4; }, 10s));
}

// The binary at the server's path is replaced by one that refuses its flags: the new process
// exits before it is ready, and the old one keeps serving (and keeps accepting).
TEST_F(UpgradeTest, BadNewBinaryKeepsTheOldOneServing) {
  char dir_tmpl[] = "/tmp/ringcable-upgrade-XXXXXX";
  ASSERT_NE(mkdtemp(dir_tmpl), nullptr);
  const std::string dir = dir_tmpl;
  const std::string path = dir + "/ringcable";
  const std::string real = cable::test::BinaryPath();
  ASSERT_EQ(symlink(real.c_str(), path.c_str()), 0);
  const char* saved = std::getenv("RINGCABLE_BIN");
  std::string saved_value = saved ? saved : "";
  setenv("RINGCABLE_BIN", path.c_str(), 1);
  StartServer({"--workers", "2"});
  if (saved) {
    setenv("RINGCABLE_BIN", saved_value.c_str(), 1);
  } else {
    unsetenv("RINGCABLE_BIN");
  }
  const std::string room = WsClient::Identifier("ChatChannel", {{"stream", "room1"}});
  WsClient ws;
  ConnectWelcome(ws, "sid-stays");
  SubscribeConfirmed(ws, room);
  // Replace the binary: a script that adds a flag the new process rejects.
  {
    std::ofstream script(path + ".new");
    script << "#!/bin/sh\nexec '" << real << "' \"$@\" --no_such_flag_in_ringcable\n";
  }
  ASSERT_EQ(chmod((path + ".new").c_str(), 0755), 0);
  ASSERT_EQ(rename((path + ".new").c_str(), path.c_str()), 0);

  ASSERT_EQ(kill(server_.pid(), SIGUSR2), 0);
  ASSERT_TRUE(WaitLog("the old process keeps serving"));
  EXPECT_NE(server_.Log().find("exited before it was ready"), std::string::npos);
  EXPECT_TRUE(server_.running());
  Broadcast(Publication("room1", R"({"n":1})"));
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(room, R"({"n":1})"));
  WsClient fresh;
  ConnectWelcome(fresh, "sid-fresh");
  SubscribeConfirmed(fresh, room);
  Broadcast(Publication("room1", R"({"n":2})"));
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(room, R"({"n":2})"));
  EXPECT_EQ(fresh.NextMessage().payload, MessageFrame(room, R"({"n":2})"));
  EXPECT_EQ(rpc_.disconnects().size(), 0u);
  unlink(path.c_str());
  rmdir(dir.c_str());
}

// A separate --metrics_port moves like the other listeners: the new process serves on the same
// socket (never binds it), and answers after the old one exited, with its own counters.
TEST_F(UpgradeTest, SeparateMetricsPortIsHandedOver) {
  const int metrics_port = cable::test::FreePort();
  StartServer({"--workers", "1", "--metrics_http", "/metrics", "--metrics_port",
               std::to_string(metrics_port)});
  auto before = cable::test::HttpRequest(metrics_port, "GET", "/metrics");
  ASSERT_EQ(before.status, 200);
  EXPECT_NE(before.body.find("ringcable_worker_upgrade_adopted_total{worker=\"0\"} 0\n"),
            std::string::npos);
  const std::string room = WsClient::Identifier("ChatChannel", {{"stream", "room1"}});
  WsClient ws;
  ConnectWelcome(ws, "sid-metrics");
  SubscribeConfirmed(ws, room);
  Upgrade();
  EXPECT_EQ(server_.Log().find("cannot listen"), std::string::npos);
  // The old process is gone: whoever answers is the new one, which adopted the connection.
  auto after = cable::test::HttpRequest(metrics_port, "GET", "/metrics");
  ASSERT_EQ(after.status, 200);
  EXPECT_NE(after.body.find("ringcable_worker_upgrade_adopted_total{worker=\"0\"} 1\n"),
            std::string::npos)
      << after.body;
  Broadcast(Publication("room1", R"({"n":1})"));
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(room, R"({"n":1})"));
  EXPECT_EQ(next_.Stop(), 0);
}

// --embed_nats: the embedded nats-server cannot be handed over (the new process's own could not
// bind its ports while the old one's runs), so SIGUSR2 is refused with one logged line, and the
// process keeps serving its connections, its broadcasts and new clients.
TEST_F(UpgradeTest, EmbeddedNatsRefusesTheUpgradeAndKeepsServing) {
  const int nats_port = cable::test::FreePort();
  StartServer({"--workers", "1", "--embed_nats", "--enats_addr",
               "nats://127.0.0.1:" + std::to_string(nats_port), "--broadcast_adapter", "http,nats",
               "--pubsub", "nats"});
  const std::string room = WsClient::Identifier("ChatChannel", {{"stream", "room1"}});
  WsClient ws;
  ConnectWelcome(ws, "sid-enats");
  SubscribeConfirmed(ws, room);
  ASSERT_EQ(kill(server_.pid(), SIGUSR2), 0);
  ASSERT_TRUE(
      WaitLog("received SIGUSR2: live upgrade refused: --embed_nats runs a nats-server that "
              "cannot be handed over; keeping every connection (restart to deploy)"));
  EXPECT_EQ(server_.Log().find("upgrade: started "), std::string::npos) << "no new process";
  EXPECT_TRUE(server_.running());
  Broadcast(Publication("room1", R"({"n":1})"));
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(room, R"({"n":1})"));
  WsClient fresh;
  ConnectWelcome(fresh, "sid-fresh");
  SubscribeConfirmed(fresh, room);
  Broadcast(Publication("room1", R"({"n":2})"));
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(room, R"({"n":2})"));
  EXPECT_EQ(fresh.NextMessage().payload, MessageFrame(room, R"({"n":2})"));
  EXPECT_EQ(rpc_.disconnects().size(), 0u);
  EXPECT_EQ(server_.Stop(), 0);
}

}  // namespace
}  // namespace cable::itcore
