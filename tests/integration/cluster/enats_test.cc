// Embedded NATS (issue #20) through the real binary: ringcable nodes started with --embed_nats run
// Debian's nats-server as a supervised child; two and three nodes joined by
// --enats_cluster_routes exchange broadcasts (HTTP through --pubsub nats, and the legacy `nats`
// broadcaster); a killed nats-server is restarted and delivery resumes; a missing binary and a
// nats-server that cannot start are one-line startup errors; neither a graceful stop nor a SIGKILL
// of ringcable leaves a nats-server behind. Spec: ../shared/spec/anycable.md §1 "Embedded NATS".
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "brokers.h"
#include "hub_fixture.h"
#include "rpc_stub/scripted_server.h"
#include "test_support.h"

namespace cable::itenats {
namespace {

using namespace std::chrono_literals;
using cable::ithub::Delivered;
using cable::ithub::Pub;
using cable::ithub::SidOf;
using cable::ithub::StreamId;
using cable::test::BrokerProcess;
using cable::test::JsonString;
using cable::test::ServerProcess;
using cable::test::WsClient;
using cable::test::WsFrame;
using Clock = std::chrono::steady_clock;

size_t CountOf(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + needle.size()))
    ++n;
  return n;
}

// Field `index` (1-based, as in proc(5)) of /proc/<pid>/stat, "" when the process is gone.
std::string ProcStatField(pid_t pid, int index) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(in, text);
  size_t close = text.rfind(')');  // comm may contain spaces
  if (close == std::string::npos) return "";
  std::istringstream rest(text.substr(close + 2));
  std::string field;
  for (int i = 3; i <= index && rest >> field; ++i) {
  }
  return field;
}

// A process that exists and is not a zombie.
bool Alive(pid_t pid) {
  std::string state = ProcStatField(pid, 3);
  return !state.empty() && state != "Z" && state != "X";
}

// Children of `parent` whose executable name is `comm`.
std::vector<pid_t> ChildrenNamed(pid_t parent, const std::string& comm) {
  std::vector<pid_t> out;
  DIR* proc = opendir("/proc");
  if (!proc) return out;
  while (dirent* e = readdir(proc)) {
    pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream cin("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    std::getline(cin, name);
    if (name == comm && ProcStatField(pid, 4) == std::to_string(parent) && Alive(pid)) {
      out.push_back(pid);
    }
  }
  closedir(proc);
  return out;
}

bool Poll(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

struct Subscriber {
  int node = 0;
  std::string stream;
  std::string identifier;
  std::unique_ptr<WsClient> ws;
  std::string Name() const { return "node " + std::to_string(node) + " stream " + stream; }
};

class EnatsIt : public ::testing::Test {
 protected:
  void SetUp() override {
    if (BrokerProcess::FindBinary(BrokerProcess::Kind::kNats).empty()) {
      GTEST_SKIP() << "nats-server is not installed";
    }
    rpc_port_ = rpc_.Start("127.0.0.1:0");
    ASSERT_NE(rpc_port_, 0);
  }
  void TearDown() override {
    subs_.clear();
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (nodes_[i]->pid() <= 0) continue;
      EXPECT_EQ(nodes_[i]->Stop(15s), 0) << "node " << i << " did not exit cleanly";
      for (const char* report : {"AddressSanitizer", "LeakSanitizer", "runtime error:"})
        EXPECT_EQ(nodes_[i]->Log().find(report), std::string::npos) << "node " << i;
    }
    if (HasFailure()) {
      for (size_t i = 0; i < nodes_.size(); ++i)
        std::cerr << "---- ringcable node " << i << " log ----\n" << nodes_[i]->Log() << "\n";
    }
    rpc_.Stop();
  }

  // Starts `count` nodes with an embedded NATS server each: node 0 listens for routes, the others
  // route to node 0 (and node 2 also to node 1). Fatal failure when one does not come up.
  void StartNodes(int count, const std::vector<std::string>& extra) {
    for (int i = 0; i < count; ++i) {
      client_ports_.push_back(cable::test::FreePort());
      cluster_ports_.push_back(cable::test::FreePort());
      broadcast_ports_.push_back(cable::test::FreePort());
    }
    for (int i = 0; i < count; ++i) {
      std::vector<std::string> args = {"--rpc_host",
                                       "127.0.0.1:" + std::to_string(rpc_port_),
                                       "--workers",
                                       "2",
                                       "--http_broadcast_port",
                                       std::to_string(broadcast_ports_[i]),
                                       "--embed_nats",
                                       "--enats_addr",
                                       "nats://127.0.0.1:" + std::to_string(client_ports_[i]),
                                       "--enats_cluster",
                                       "nats://127.0.0.1:" + std::to_string(cluster_ports_[i]),
                                       "--enats_server_name",
                                       "node-" + std::to_string(i)};
      std::string routes;
      for (int r = 0; r < i && r < 2; ++r) routes += (routes.empty() ? "" : ",") + RouteUrl(r);
      if (!routes.empty()) args.insert(args.end(), {"--enats_cluster_routes", routes});
      args.insert(args.end(), extra.begin(), extra.end());
      nodes_.push_back(std::make_unique<ServerProcess>());
      ASSERT_TRUE(nodes_.back()->Start(args)) << "node " << i << ":\n" << nodes_.back()->Log();
    }
  }
  std::string RouteUrl(int node) {
    return "nats://127.0.0.1:" + std::to_string(cluster_ports_[static_cast<size_t>(node)]);
  }
  pid_t EmbeddedPid(int node) {
    auto kids = ChildrenNamed(nodes_[static_cast<size_t>(node)]->pid(), "nats-server");
    return kids.size() == 1 ? kids[0] : -1;
  }
  int Publish(int node, const std::string& body) {
    return cable::test::HttpRequest(broadcast_ports_[static_cast<size_t>(node)], "POST",
                                    "/_broadcast", {}, body)
        .status;
  }
  void AddSubscribers(const std::vector<std::string>& streams) {
    for (size_t node = 0; node < nodes_.size(); ++node) {
      for (const auto& stream : streams) {
        Subscriber sub{static_cast<int>(node), stream, StreamId(stream),
                       std::make_unique<WsClient>()};
        ASSERT_EQ(sub.ws->Connect(nodes_[node]->port(), "/cable?user=u"), 101);
        ASSERT_FALSE(SidOf(sub.ws->NextMessage(10s).payload).empty()) << sub.Name();
        ASSERT_TRUE(sub.ws->Subscribe(sub.identifier));
        ASSERT_TRUE(sub.ws->WaitFor("confirm_subscription", 10s).has_value()) << sub.Name();
        subs_.push_back(std::move(sub));
      }
    }
  }
  // Publishes `tag` to every stream (through `publish(stream, json)`) until every subscriber got
  // it, bounded; then a marked publication per stream, published the same way, must come next for
  // everyone (the probes still in flight are skipped).
  void ProbeUntilEveryoneHears(
      const std::function<void(const std::string&, const std::string&)>& publish,
      const std::string& tag, std::chrono::seconds limit) {
    std::vector<bool> reached(subs_.size(), false);
    const std::string data = JsonString(tag);
    auto deadline = Clock::now() + limit;
    while (std::count(reached.begin(), reached.end(), false) > 0 && Clock::now() < deadline) {
      for (const auto& stream : streams_) publish(stream, Pub(stream, data));
      for (size_t i = 0; i < subs_.size(); ++i) {
        for (WsFrame f = subs_[i].ws->NextMessage(100ms); f.opcode == 1;
             f = subs_[i].ws->NextMessage(1ms)) {
          if (f.payload == Delivered(subs_[i].identifier, data)) {
            reached[i] = true;
          } else if (f.payload.find("\"probe-") == std::string::npos) {
            ADD_FAILURE() << subs_[i].Name() << ": unexpected frame " << f.payload;
          }
        }
      }
    }
    for (size_t i = 0; i < subs_.size(); ++i)
      ASSERT_TRUE(reached[i]) << subs_[i].Name() << ": " << tag << " not delivered within "
                              << limit.count() << " s";
    // The mark takes the probes' path (same origin server, same routes), so it comes after them.
    const std::string mark = JsonString("mark-" + tag);
    for (const auto& stream : streams_) publish(stream, Pub(stream, mark));
    for (auto& sub : subs_) {
      WsFrame f;
      do {
        f = sub.ws->NextMessage(10s);
      } while (f.opcode == 1 && f.payload.find("\"probe-") != std::string::npos);
      ASSERT_EQ(f.payload, Delivered(sub.identifier, mark)) << sub.Name();
    }
  }
  // Each node in turn publishes one message per stream over HTTP; every subscriber on every node
  // gets each exactly once (publications that entered different NATS servers may arrive in
  // either order: routes forward asynchronously).
  void ExpectHttpFromEveryNode(const std::string& tag) {
    std::vector<std::string> sent;
    for (size_t node = 0; node < nodes_.size(); ++node) {
      for (const auto& stream : streams_) {
        const std::string data = JsonString(tag + "-" + std::to_string(node));
        ASSERT_EQ(Publish(static_cast<int>(node), Pub(stream, data)), 201) << "node " << node;
      }
      sent.push_back(JsonString(tag + "-" + std::to_string(node)));
    }
    for (auto& sub : subs_) {
      std::vector<std::string> want, got;
      for (const auto& data : sent) want.push_back(Delivered(sub.identifier, data));
      for (size_t k = 0; k < sent.size(); ++k) got.push_back(sub.ws->NextMessage(10s).payload);
      std::sort(want.begin(), want.end());
      std::sort(got.begin(), got.end());
      EXPECT_EQ(got, want) << sub.Name();
    }
    // Nothing more (a duplicate would show up before this marker).
    const std::string mark = JsonString("end-" + tag);
    for (const auto& stream : streams_) ASSERT_EQ(Publish(0, Pub(stream, mark)), 201);
    for (auto& sub : subs_) {
      EXPECT_EQ(sub.ws->NextMessage(10s).payload, Delivered(sub.identifier, mark)) << sub.Name();
    }
  }
  auto HttpOn(int node) {
    return [this, node](const std::string&, const std::string& json) { Publish(node, json); };
  }

  cable::tools::ScriptedRpcServer rpc_;
  int rpc_port_ = 0;
  std::vector<std::unique_ptr<ServerProcess>> nodes_;
  std::vector<int> client_ports_, cluster_ports_, broadcast_ports_;
  std::vector<Subscriber> subs_;
  const std::vector<std::string> streams_ = {"e1", "e2"};
};

const std::vector<std::string> kPubSubFlags = {"--broadcast_adapter", "http,nats", "--pubsub",
                                               "nats"};

TEST_F(EnatsIt, TwoNodesJoinedByRoutes) {
  StartNodes(2, kPubSubFlags);
  for (int node = 0; node < 2; ++node) {
    EXPECT_GT(EmbeddedPid(node), 0) << "node " << node << " runs one nats-server child";
    EXPECT_NE(nodes_[static_cast<size_t>(node)]->Log().find(
                  "embedded NATS server started: nats://127.0.0.1:" +
                  std::to_string(client_ports_[static_cast<size_t>(node)])),
              std::string::npos);
  }
  AddSubscribers(streams_);
  // Routes and subscription interest take a moment to spread: probe until both nodes hear.
  ProbeUntilEveryoneHears(HttpOn(1), "probe-http", 30s);
  if (HasFailure()) return;
  ExpectHttpFromEveryNode("http");
  // The legacy broadcaster: a plain NATS publish on node 0's embedded server reaches node 1 too.
  ProbeUntilEveryoneHears(
      [this](const std::string&, const std::string& json) {
        cable::test::NatsPublish(client_ports_[0], "__anycable__", json);
      },
      "probe-nats", 10s);
  for (int node = 0; node < 2; ++node) {
    EXPECT_EQ(CountOf(nodes_[static_cast<size_t>(node)]->Log(), "nats: link up"), 1u)
        << "node " << node << " connected to its own embedded server once";
  }
}

TEST_F(EnatsIt, ThreeNodesJoinedByRoutes) {
  StartNodes(3, kPubSubFlags);
  AddSubscribers(streams_);
  ProbeUntilEveryoneHears(HttpOn(2), "probe-http", 30s);
  if (HasFailure()) return;
  ExpectHttpFromEveryNode("three");
}

// The embedded server dies (SIGKILL): ringcable says so once, starts it again on the same port,
// its NATS link reconnects and delivery across the routes resumes.
TEST_F(EnatsIt, KilledServerIsRestartedAndDeliveryResumes) {
  StartNodes(2, kPubSubFlags);
  AddSubscribers(streams_);
  ProbeUntilEveryoneHears(HttpOn(0), "probe-before", 30s);
  if (HasFailure()) return;
  const pid_t victim = EmbeddedPid(1);
  ASSERT_GT(victim, 0);
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  const std::string died =
      "embedded NATS server (pid " + std::to_string(victim) + ") was killed by signal 9";
  ASSERT_TRUE(Poll([&] { return nodes_[1]->Log().find(died) != std::string::npos; }, 10s))
      << "node 1 must log the death";
  ASSERT_TRUE(Poll(
      [&] {
        return nodes_[1]->Log().find("embedded NATS server restarted (pid ") != std::string::npos;
      },
      30s))
      << "node 1 must restart it";
  const pid_t replacement = EmbeddedPid(1);
  EXPECT_GT(replacement, 0);
  EXPECT_NE(replacement, victim);
  EXPECT_FALSE(Alive(victim));
  ProbeUntilEveryoneHears(HttpOn(1), "probe-after", 30s);
  if (HasFailure()) return;
  ExpectHttpFromEveryNode("after");
  const std::string log = nodes_[1]->Log();
  EXPECT_EQ(CountOf(log, "was killed by signal 9"), 1u) << "one line per death";
  EXPECT_EQ(CountOf(log, "embedded NATS server restarted"), 1u);
  EXPECT_NE(log.find("nats: link down"), std::string::npos);
  EXPECT_NE(log.substr(log.find("nats: link down")).find("nats: link up"), std::string::npos)
      << "the node's NATS link came back";
}

// A graceful stop ends and reaps the child; a SIGKILLed ringcable takes it along (PDEATHSIG).
TEST_F(EnatsIt, NoNatsServerOutlivesRingcable) {
  StartNodes(2, kPubSubFlags);
  const pid_t graceful = EmbeddedPid(0);
  const pid_t crashed = EmbeddedPid(1);
  ASSERT_GT(graceful, 0);
  ASSERT_GT(crashed, 0);
  EXPECT_EQ(nodes_[0]->Stop(15s), 0);
  EXPECT_FALSE(Alive(graceful)) << "nats-server still running after ringcable stopped";
  EXPECT_NE(nodes_[0]->Log().find("embedded NATS server stopped"), std::string::npos);
  nodes_[1]->Kill();
  EXPECT_TRUE(Poll([&] { return !Alive(crashed); }, 10s))
      << "nats-server survived a SIGKILL of its ringcable";
}

TEST(EnatsStartup, MissingBinaryIsOneErrorLine) {
  auto r = cable::test::RunCommand(
      {cable::test::BinaryPath(), "--port", std::to_string(cable::test::FreePort()), "--rpc_host",
       "127.0.0.1:" + std::to_string(cable::test::FreePort()), "--broadcast_adapter", "http",
       "--embed_nats", "--enats_server_path", "/nonexistent/nats-server"},
      10s);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output,
            "ringcable: --enats_server_path: /nonexistent/nats-server is not an executable file "
            "(install Debian's nats-server package, or point --enats_server_path at "
            "nats-server)\n");
}

// Another server already has the port: nats-server exits, ringcable reports why and exits 1 (its
// readiness check is not fooled by the foreign server, which has another name).
TEST(EnatsStartup, ServerThatCannotStartIsOneErrorLine) {
  if (BrokerProcess::FindBinary(BrokerProcess::Kind::kNats).empty()) GTEST_SKIP();
  BrokerProcess foreign(BrokerProcess::Kind::kNats);
  ASSERT_TRUE(foreign.Start());
  auto r = cable::test::RunCommand(
      {cable::test::BinaryPath(), "--port", std::to_string(cable::test::FreePort()), "--rpc_host",
       "127.0.0.1:" + std::to_string(cable::test::FreePort()), "--broadcast_adapter", "http",
       "--embed_nats", "--enats_addr", "nats://127.0.0.1:" + std::to_string(foreign.port())},
      20s);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  const std::string last = r.output.substr(r.output.rfind("ringcable: "));
  EXPECT_EQ(last.rfind("ringcable: --embed_nats: ", 0), 0u) << r.output;
  EXPECT_NE(last.find("exited with status 1 during startup"), std::string::npos) << r.output;
  EXPECT_NE(last.find("address already in use"), std::string::npos) << r.output;
  EXPECT_EQ(std::count(last.begin(), last.end(), '\n'), 1) << r.output;
}

TEST(EnatsStartup, BadSettingsAreOneErrorLine) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"--enats_addr", "nats://127.0.0.1"},
       "ringcable: --enats_addr: missing port in \"nats://127.0.0.1\"\n"},
      {{"--enats_cluster", "nats://127.0.0.1:99999"},
       "ringcable: --enats_cluster: bad port \"99999\" in \"nats://127.0.0.1:99999\"\n"},
      {{"--enats_gateway", "nats://127.0.0.1:7222", "--enats_gateways", "nourl"},
       "ringcable: --enats_gateways: \"nourl\" is not name:url[,url] (want "
       "name_a:url1,url2;name_b:url3)\n"},
      {{"--enats_max_payload", "-1"},
       "ringcable: invalid value \"-1\" for flag --enats_max_payload: must be between 0 and "
       "67108864\n"},
  };
  for (const auto& [flags, want] : bad) {
    std::vector<std::string> argv = {cable::test::BinaryPath(),
                                     "--port",
                                     std::to_string(cable::test::FreePort()),
                                     "--rpc_host",
                                     "127.0.0.1:" + std::to_string(cable::test::FreePort()),
                                     "--broadcast_adapter",
                                     "http",
                                     "--embed_nats"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    auto r = cable::test::RunCommand(argv, 10s);
    EXPECT_EQ(r.exit_code, 1) << flags[0];
    EXPECT_EQ(r.output, want) << flags[0];
  }
}

}  // namespace
}  // namespace cable::itenats
