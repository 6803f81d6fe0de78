#include "cluster_fixture.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

namespace cable::itcluster {
namespace {

using Clock = std::chrono::steady_clock;

std::string Tail(const std::string& s, size_t n) {
  return s.size() <= n ? s : "...\n" + s.substr(s.size() - n);
}

}  // namespace

std::string SeqData(int seq) { return "{\"seq\":" + std::to_string(seq) + "}"; }

int SeqOf(const std::string& frame) {
  constexpr std::string_view kKey = "\"message\":{\"seq\":";
  size_t at = frame.find(kKey);
  if (at == std::string::npos) return -1;
  const char* begin = frame.c_str() + at + kKey.size();
  char* end = nullptr;
  long v = std::strtol(begin, &end, 10);
  if (end == begin || *end != '}') return -1;
  return static_cast<int>(v);
}

size_t CountOf(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + needle.size()))
    ++n;
  return n;
}

void ClusterTest::SetUp() {
  rpc_port_ = rpc_.Start("127.0.0.1:0");
  ASSERT_NE(rpc_port_, 0) << "cannot start the scripted RPC server";
}

void ClusterTest::TearDown() {
  subs_.clear();
  // A graceful stop, so a sanitizer build reports leaks and errors in the node's log.
  std::array<bool, kNodes> started{};
  for (int i = 0; i < kNodes; ++i) {
    started[i] = nodes_[i].pid() > 0;
    if (!started[i]) continue;
    EXPECT_EQ(nodes_[i].Stop(15s), 0) << "node " << i << " did not exit cleanly on SIGTERM";
    const std::string log = NodeLog(i);
    for (const char* report : {"AddressSanitizer", "LeakSanitizer", "runtime error:"})
      EXPECT_EQ(log.find(report), std::string::npos) << "node " << i << ": " << report;
  }
  if (HasFailure()) {
    for (int i = 0; i < kNodes; ++i) {
      if (NodeLog(i).empty()) continue;  // never started
      std::cerr << "---- ringcable node " << i << " log ----\n"
                << Tail(NodeLog(i), 12000) << "-----------------------\n";
    }
  }
  redis_.Kill();
  nats_.Kill();
  rpc_.Stop();
}

bool ClusterTest::StartRedis() {
  if (BrokerProcess::FindBinary(BrokerProcess::Kind::kRedis).empty()) return false;
  EXPECT_TRUE(redis_.Start()) << "redis-server did not start:\n" << redis_.Log();
  return true;
}

bool ClusterTest::StartNats() {
  if (BrokerProcess::FindBinary(BrokerProcess::Kind::kNats).empty()) return false;
  nats_monitor_port_ = cable::test::FreePort();
  EXPECT_TRUE(nats_.Start({"-m", std::to_string(nats_monitor_port_)}))
      << "nats-server did not start:\n"
      << nats_.Log();
  return true;
}

void ClusterTest::StartNodes(const std::vector<std::string>& common,
                             const std::map<std::string, std::string>& env) {
  for (int i = 0; i < kNodes; ++i) {
    broadcast_ports_[i] = cable::test::FreePort();
    std::vector<std::string> args = {"--rpc_host",
                                     "127.0.0.1:" + std::to_string(rpc_port_),
                                     "--workers",
                                     "2",
                                     "--http_broadcast_port",
                                     std::to_string(broadcast_ports_[i]),
                                     "--metrics_http",
                                     "/metrics"};
    args.insert(args.end(), common.begin(), common.end());
    ASSERT_TRUE(nodes_[i].Start(args, env)) << "node " << i << " did not start:\n" << NodeLog(i);
  }
}

int ClusterTest::Publish(int node, const std::string& body) {
  return cable::test::HttpRequest(broadcast_ports_[node], "POST", "/_broadcast", {}, body).status;
}

std::unique_ptr<WsClient> ClusterTest::Connect(int node, const std::string& user) {
  auto ws = std::make_unique<WsClient>();
  int status = ws->Connect(nodes_[node].port(), "/cable?user=" + user);
  if (status != 101) {
    ADD_FAILURE() << "node " << node << ": upgrade answered " << status;
    return nullptr;
  }
  WsFrame welcome = ws->NextMessage(10s);
  if (cable::ithub::SidOf(welcome.payload).empty()) {
    ADD_FAILURE() << "node " << node << ": no welcome, got \"" << welcome.payload << "\"";
    return nullptr;
  }
  return ws;
}

bool ClusterTest::Subscribe(WsClient& ws, const std::string& identifier) {
  if (!ws.Subscribe(identifier)) return false;
  auto confirm = ws.WaitFor("confirm_subscription", 10s);
  return confirm.has_value() && confirm->find(JsonString(identifier)) != std::string::npos;
}

void ClusterTest::AddSubscribers(const std::vector<std::string>& streams, int per_node) {
  for (int node = 0; node < kNodes; ++node) {
    for (const auto& stream : streams) {
      for (int k = 0; k < per_node; ++k) {
        Subscriber sub{node, stream, StreamId(stream), Connect(node)};
        ASSERT_NE(sub.ws, nullptr);
        ASSERT_TRUE(Subscribe(*sub.ws, sub.identifier)) << sub.Name();
        subs_.push_back(std::move(sub));
      }
    }
  }
}

int64_t ClusterTest::Metric(int node, const std::string& name) {
  auto r = cable::test::HttpRequest(nodes_[node].port(), "GET", "/metrics");
  if (r.status != 200) return -1;
  std::istringstream in(r.body);
  std::string line;
  bool found = false;
  int64_t sum = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    size_t name_end = line.find_first_of("{ ");
    if (name_end == std::string::npos || line.compare(0, name_end, name) != 0 ||
        name_end != name.size())
      continue;
    found = true;
    sum += static_cast<int64_t>(std::strtod(line.c_str() + line.rfind(' ') + 1, nullptr));
  }
  return found ? sum : -1;
}

std::string ClusterTest::NodeLog(int node) const { return nodes_[node].Log(); }

std::string ClusterTest::Redis(const std::vector<std::string>& args) {
  return cable::test::RedisCli(redis_.port(), args);
}

bool ClusterTest::RedisPipe(const std::vector<std::vector<std::string>>& commands) {
  return RedisPipeTo(redis_.port(), commands);
}

bool ClusterTest::RedisPipeTo(int port, const std::vector<std::vector<std::string>>& commands) {
  char tmpl[] = "/tmp/ringcable-pipe-XXXXXX";
  int fd = mkstemp(tmpl);
  if (fd < 0) return false;
  close(fd);
  const std::string path = tmpl;
  {
    // RESP arrays of bulk strings: any payload bytes pass unchanged.
    std::ofstream out(path, std::ios::binary);
    for (const auto& cmd : commands) {
      out << '*' << cmd.size() << "\r\n";
      for (const auto& arg : cmd) out << '$' << arg.size() << "\r\n" << arg << "\r\n";
    }
  }
  auto r = cable::test::RunCommand(
      {"/bin/sh", "-c", "redis-cli -h 127.0.0.1 -p " + std::to_string(port) + " --pipe < " + path},
      30s);
  unlink(path.c_str());
  const std::string want = "errors: 0, replies: " + std::to_string(commands.size());
  EXPECT_NE(r.output.find(want), std::string::npos) << "redis-cli --pipe: " << r.output;
  return r.exit_code == 0 && r.output.find(want) != std::string::npos;
}

int ClusterTest::RedisNumSub(const std::string& channel) {
  // Raw output: "<channel>\n<count>\n".
  std::istringstream in(Redis({"PUBSUB", "NUMSUB", channel}));
  std::string name, count;
  if (!std::getline(in, name) || !std::getline(in, count) || name != channel) return -1;
  return std::atoi(count.c_str());
}

int ClusterTest::NatsNumSub(const std::string& subject) {
  auto r = cable::test::HttpRequest(nats_monitor_port_, "GET", "/connz?subs=1");
  if (r.status != 200) return -1;
  return static_cast<int>(CountOf(r.body, JsonString(subject)));
}

bool ClusterTest::WaitRedisSubscribed(const std::vector<std::string>& channels, int count,
                                      std::chrono::milliseconds timeout) {
  return Poll(
      [&] {
        for (const auto& ch : channels)
          if (RedisNumSub(ch) != count) return false;
        return true;
      },
      timeout);
}

bool ClusterTest::WaitNatsSubscribed(const std::vector<std::string>& subjects, int count,
                                     std::chrono::milliseconds timeout) {
  return Poll(
      [&] {
        for (const auto& s : subjects)
          if (NatsNumSub(s) != count) return false;
        return true;
      },
      timeout);
}

void ClusterTest::ExpectDeliveredOnce(const std::vector<std::string>& streams, int n,
                                      const PublishFn& publish, bool ordered) {
  std::map<std::string, std::vector<int>> expected;  // stream → seqs in publication order
  std::vector<std::pair<std::string, std::string>> batch;
  for (int seq = 0; seq < n; ++seq) {
    const std::string& stream = streams[seq % streams.size()];
    expected[stream].push_back(seq);
    batch.emplace_back(stream, Pub(stream, SeqData(seq)));
  }
  ASSERT_TRUE(publish(batch)) << "publishing failed";

  std::map<std::string, std::vector<int>> first_order;  // stream → first subscriber's order
  for (auto& sub : subs_) {
    const auto& want = expected[sub.stream];
    std::vector<int> got;
    for (size_t k = 0; k < want.size(); ++k) {
      WsFrame f = sub.ws->NextMessage(10s);
      if (f.opcode != 1) break;  // reported by the comparison below
      int seq = SeqOf(f.payload);
      if (seq < 0 || f.payload != Delivered(sub.identifier, SeqData(seq))) {
        ADD_FAILURE() << sub.Name() << ": unexpected frame " << f.payload;
        break;
      }
      got.push_back(seq);
    }
    if (ordered) {
      EXPECT_EQ(got, want) << sub.Name() << ": not every publication exactly once, in order";
    } else {
      std::vector<int> sorted = got;
      std::sort(sorted.begin(), sorted.end());
      EXPECT_EQ(sorted, want) << sub.Name() << ": not every publication exactly once";
      auto [it, first] = first_order.emplace(sub.stream, got);
      if (!first) {
        EXPECT_EQ(got, it->second) << sub.Name() << ": order differs between subscribers";
      }
    }
  }

  // One more per stream, published only now: a late duplicate would arrive before it.
  batch.clear();
  for (size_t k = 0; k < streams.size(); ++k)
    batch.emplace_back(streams[k], Pub(streams[k], SeqData(n + static_cast<int>(k))));
  ASSERT_TRUE(publish(batch)) << "publishing the final publications failed";
  for (auto& sub : subs_) {
    int want = n + static_cast<int>(std::find(streams.begin(), streams.end(), sub.stream) -
                                    streams.begin());
    EXPECT_EQ(sub.ws->NextMessage(10s).payload, Delivered(sub.identifier, SeqData(want)))
        << sub.Name() << ": a duplicate or a missing final publication";
  }
}

bool ClusterTest::Poll(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

}  // namespace cable::itcluster
