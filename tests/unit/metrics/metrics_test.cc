// Unit tests for src/metrics: rendering, tags, log deltas and filter, StatsD lines and packets,
// sd_notify datagrams, the metrics server.
#include "metrics/metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "metrics/exporter.h"
#include "metrics/sd_notify.h"
#include "metrics/statsd.h"

namespace cable::metrics {
namespace {

Snapshot TwoWorkers() {
  Snapshot s;
  s.workers.resize(2);
  s.workers[0].clients_num = 3;
  s.workers[1].clients_num = 4;
  s.workers[0].publications_total = 10;
  s.workers[1].publications_total = 5;
  s.workers[0].broadcast_msg_total = 15;
  s.workers[1].broadcast_msg_total = 15;
  s.workers[0].submissions_total = 7;
  s.workers[1].wakeups_total = 2;
  s.rpc.calls = 9;
  s.rpc.pending = 1;
  return s;
}

TEST(ParseTags, ParsesPairsAndTrims) {
  auto t = ParseTags(" env:prod , region:eu-1,");
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->size(), 2u);
  EXPECT_EQ((*t)[0], (std::pair<std::string, std::string>{"env", "prod"}));
  EXPECT_EQ((*t)[1], (std::pair<std::string, std::string>{"region", "eu-1"}));
  EXPECT_TRUE(ParseTags("")->empty());
}

TEST(ParseTags, RejectsBadItems) {
  EXPECT_EQ(ParseTags("env").error(), "invalid metrics tag \"env\": expected key:value");
  EXPECT_EQ(ParseTags("1a:x").error(),
            "invalid metrics tag name \"1a\": must match [a-zA-Z_][a-zA-Z0-9_]*");
  EXPECT_EQ(ParseTags(":x").error(),
            "invalid metrics tag name \"\": must match [a-zA-Z_][a-zA-Z0-9_]*");
  EXPECT_EQ(ParseTags("a-b:x").error(),
            "invalid metrics tag name \"a-b\": must match [a-zA-Z_][a-zA-Z0-9_]*");
}

TEST(RenderPrometheus, SumsWorkersAndUsesAnycableFormat) {
  std::string text = RenderPrometheus(TwoWorkers(), {});
  EXPECT_NE(text.find("\n# HELP anycable_go_clients_num The number of active clients\n"
                      "# TYPE anycable_go_clients_num gauge\n"
                      "anycable_go_clients_num 7\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\n# TYPE anycable_go_broadcast_msg_total counter\n"
                      "anycable_go_broadcast_msg_total 15\n"),
            std::string::npos);
  EXPECT_NE(text.find("\nanycable_go_rpc_call_total 9\n"), std::string::npos);
  EXPECT_NE(text.find("\nanycable_go_publications_total 15\n"), std::string::npos);
  EXPECT_NE(text.find("\nringcable_worker_broadcast_msg_total{worker=\"1\"} 15\n"),
            std::string::npos);
  EXPECT_NE(text.find("\nanycable_go_rpc_pending_num 1\n"), std::string::npos);
  EXPECT_NE(text.find("\nanycable_go_clients_uniq_num 7\n"), std::string::npos);
  EXPECT_NE(text.find("\nringcable_worker_clients_num{worker=\"0\"} 3\n"
                      "ringcable_worker_clients_num{worker=\"1\"} 4\n"),
            std::string::npos);
  EXPECT_NE(text.find("\nringcable_worker_io_uring_submissions_total{worker=\"0\"} 7\n"),
            std::string::npos);
  // Counters before gauges in the anycable_go_ block.
  size_t last_counter = text.rfind("# TYPE anycable_go_rpc_timeout_total counter");
  size_t first_gauge = text.find("gauge\n");
  EXPECT_LT(last_counter, first_gauge);
  size_t own = text.find("# HELP ringcable_");
  ASSERT_NE(own, std::string::npos);
  EXPECT_EQ(text.substr(first_gauge, own - first_gauge).find(" counter\n"), std::string::npos);
  EXPECT_EQ(text.front(), '\n');
}

TEST(RenderPrometheus, BrokerSeriesFollowTheBrokerKind) {
  Snapshot s = TwoWorkers();
  std::string text = RenderPrometheus(s, {});
  EXPECT_EQ(text.find("ringcable_broker_"), std::string::npos);  // no broker
  s.broker.memory = true;
  s.broker.history_streams = 2;
  s.broker.history_entries = 3;
  s.broker.sessions = 4;
  text = RenderPrometheus(s, {});
  EXPECT_NE(text.find("\nringcable_broker_history_entries 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nringcable_broker_history_streams 2\n"), std::string::npos);
  EXPECT_NE(text.find("\nringcable_broker_sessions 4\n"), std::string::npos);
  EXPECT_EQ(text.find("ringcable_broker_store_up"), std::string::npos);
  s.broker = BrokerSample{};
  s.broker.remote = true;
  s.broker.store_up = 1;
  s.broker.unstamped_total = 5;
  text = RenderPrometheus(s, {});
  EXPECT_NE(text.find("# TYPE ringcable_broker_unstamped_total counter\n"
                      "ringcable_broker_unstamped_total 5\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\nringcable_broker_store_up 1\n"), std::string::npos);
  EXPECT_EQ(text.find("ringcable_broker_history_entries"), std::string::npos);
}

TEST(RenderPrometheus, TagsBecomeEscapedLabels) {
  Tags tags{{"env", "pr\"od"}, {"dc", "a\\b"}};
  std::string text = RenderPrometheus(TwoWorkers(), tags);
  EXPECT_NE(text.find("\nanycable_go_clients_num{env=\"pr\\\"od\",dc=\"a\\\\b\"} 7\n"),
            std::string::npos)
      << text;
  EXPECT_NE(
      text.find("\nringcable_worker_clients_num{env=\"pr\\\"od\",dc=\"a\\\\b\",worker=\"1\"} 4\n"),
      std::string::npos);
}

TEST(RenderLog, CountersAreDeltasGaugesAbsoluteKeysSorted) {
  Snapshot prev = TwoWorkers();
  Snapshot cur = prev;
  cur.workers[0].publications_total += 6;
  cur.rpc.calls += 2;
  std::string line = RenderLog(cur, &prev);
  EXPECT_EQ(line.rfind("broadcast_msg_total=6 ", 0), 0u) << line;
  EXPECT_NE(line.find(" clients_num=7 "), std::string::npos);
  EXPECT_NE(line.find(" rpc_call_total=2 "), std::string::npos);
  EXPECT_NE(line.find(" rpc_pending_num=1"), std::string::npos);
  EXPECT_NE(RenderLog(cur, nullptr).find(" rpc_call_total=11 "), std::string::npos);
  // Sorted: each key is >= the previous one.
  std::string prev_key;
  size_t pos = 0;
  while (pos < line.size()) {
    size_t eq = line.find('=', pos);
    std::string key = line.substr(pos, eq - pos);
    EXPECT_LE(prev_key, key);
    prev_key = key;
    size_t sp = line.find(' ', eq);
    pos = sp == std::string::npos ? line.size() : sp + 1;
  }
}

TEST(RenderLog, FilterKeepsOnlyNamedMetrics) {
  Snapshot prev = TwoWorkers();
  Snapshot cur = prev;
  cur.rpc.calls += 2;
  EXPECT_EQ(RenderLog(cur, &prev, {"rpc_call_total", "clients_num", "no_such_metric"}),
            "clients_num=7 rpc_call_total=2");
  EXPECT_EQ(RenderLog(cur, &prev, {"no_such_metric"}), "");
  EXPECT_EQ(RenderLog(cur, &prev, {}), RenderLog(cur, &prev));
}

// The interval of TwoWorkers() plus 6 publications and 2 RPC calls.
std::vector<std::string> IntervalLines(const StatsdOptions& options) {
  Snapshot prev = TwoWorkers();
  Snapshot cur = prev;
  cur.workers[0].publications_total += 6;
  cur.rpc.calls += 2;
  return StatsdLines(cur, &prev, options);
}

TEST(Statsd, DatadogLinesAsGoStatsdWritesThem) {
  StatsdOptions o;
  o.tags = {{"env", "prod"}, {"app", "x"}};
  // Counters with a zero delta are not sent; gauges always are; names in order.
  EXPECT_EQ(IntervalLines(o), (std::vector<std::string>{
                                  "anycable_go.broadcast_msg_total:6|c|#env:prod,app:x",
                                  "anycable_go.broadcast_streams_num:0|g|#env:prod,app:x",
                                  "anycable_go.clients_num:7|g|#env:prod,app:x",
                                  "anycable_go.clients_uniq_num:7|g|#env:prod,app:x",
                                  "anycable_go.disconnect_queue_size:0|g|#env:prod,app:x",
                                  "anycable_go.long_poll_clients_num:0|g|#env:prod,app:x",
                                  "anycable_go.publications_total:6|c|#env:prod,app:x",
                                  "anycable_go.rpc_call_total:2|c|#env:prod,app:x",
                                  "anycable_go.rpc_pending_num:1|g|#env:prod,app:x",
                                  "anycable_go.sse_clients_num:0|g|#env:prod,app:x",
                              }));
  // First interval: counters since the start.
  StatsdOptions plain;
  const auto first = StatsdLines(TwoWorkers(), nullptr, plain);
  EXPECT_EQ(first[0], "anycable_go.broadcast_msg_total:15|c");
  EXPECT_EQ(std::count(first.begin(), first.end(), "anycable_go.rpc_call_total:9|c"), 1);
}

TEST(Statsd, InfluxdbAndGraphiteTagsFollowTheName) {
  StatsdOptions o;
  o.prefix = "app.";
  o.tags = {{"env", "prod"}, {"app", "x"}};
  o.format = StatsdTagFormat::kInfluxdb;
  auto lines = IntervalLines(o);
  ASSERT_EQ(lines.size(), 10u);
  EXPECT_EQ(lines[0], "app.broadcast_msg_total,env=prod,app=x:6|c");
  EXPECT_EQ(lines[2], "app.clients_num,env=prod,app=x:7|g");
  o.format = StatsdTagFormat::kGraphite;
  lines = IntervalLines(o);
  EXPECT_EQ(lines[0], "app.broadcast_msg_total;env=prod;app=x:6|c");
  EXPECT_EQ(lines[2], "app.clients_num;env=prod;app=x:7|g");
  o.tags.clear();
  EXPECT_EQ(IntervalLines(o)[2], "app.clients_num:7|g");
}

TEST(Statsd, NegativeGaugeIsReachedFromZero) {
  Snapshot s;
  s.workers.resize(1);
  s.workers[0].clients_num = -2;
  const auto lines = StatsdLines(s, &s, StatsdOptions{});
  const auto at = std::find(lines.begin(), lines.end(), "anycable_go.clients_num:0|g");
  ASSERT_NE(at, lines.end());
  ASSERT_NE(at + 1, lines.end());
  EXPECT_EQ(*(at + 1), "anycable_go.clients_num:-2|g");
}

TEST(Statsd, PacketsHoldWholeLinesUpToTheLimit) {
  const std::string a(10, 'a'), b(10, 'b'), c(10, 'c'), big(30, 'z');
  // "a\nb" is exactly 21 bytes.
  EXPECT_EQ(PackStatsd({a, b, c}, 21), (std::vector<std::string>{a + "\n" + b, c}));
  EXPECT_EQ(PackStatsd({a, b, c}, 20), (std::vector<std::string>{a, b, c}));
  EXPECT_EQ(PackStatsd({a, b, c}, 100), (std::vector<std::string>{a + "\n" + b + "\n" + c}));
  // A line longer than the limit still goes, alone.
  EXPECT_EQ(PackStatsd({a, big, b}, 20), (std::vector<std::string>{a, big, b}));
  EXPECT_TRUE(PackStatsd({}, 20).empty());
}

TEST(Statsd, TagFormatNamesAndBadAddress) {
  EXPECT_EQ(ParseStatsdTagFormat("datadog").value(), StatsdTagFormat::kDatadog);
  EXPECT_EQ(ParseStatsdTagFormat("influxdb").value(), StatsdTagFormat::kInfluxdb);
  EXPECT_EQ(ParseStatsdTagFormat("graphite").value(), StatsdTagFormat::kGraphite);
  auto bad = ParseStatsdTagFormat("statsite");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error(),
            "unknown StatsD tags format \"statsite\" (supported: datadog, influxdb, graphite)");
  auto r = StatsdReporter::Start("no-port", 1, StatsdOptions{}, [] { return Snapshot{}; });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), "invalid StatsD address \"no-port\": expected host:port");
}

TEST(Sample, ReadsCounters) {
  server::Counters c;
  c.client_msg_total.Add(3);
  c.clients_num.Add(2);
  c.streams_num.Set(5);
  WorkerSample w = Sample(c);
  EXPECT_EQ(w.client_msg_total, 3u);
  EXPECT_EQ(w.clients_num, 2);
  EXPECT_EQ(w.streams_num, 5);
  rpc::Stats st;
  st.timeouts = 4;
  st.pending = 2;
  RpcSample r = Sample(st);
  EXPECT_EQ(r.timeouts, 4u);
  EXPECT_EQ(r.pending, 2);
}

class DgramSocket {
 public:
  explicit DgramSocket(const std::string& name) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, name.data(), name.size());
    if (name[0] == '@') addr.sun_path[0] = '\0';
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    ok_ = bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0;
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~DgramSocket() { close(fd_); }
  bool ok() const { return ok_; }
  std::string Recv() {
    char buf[1024];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    return n < 0 ? std::string("<none>") : std::string(buf, static_cast<size_t>(n));
  }

 private:
  int fd_ = -1;
  bool ok_ = false;
};

TEST(SdNotify, SendsToAbstractSocket) {
  std::string name = "@ringcable-test-" + std::to_string(getpid());
  DgramSocket sock(name);
  ASSERT_TRUE(sock.ok());
  EXPECT_TRUE(SdNotifyTo(name, "READY=1\nSTATUS=x"));
  EXPECT_EQ(sock.Recv(), "READY=1\nSTATUS=x");
}

TEST(SdNotify, SendsToPathSocket) {
  std::string name = "/tmp/ringcable-notify-" + std::to_string(getpid());
  unlink(name.c_str());
  DgramSocket sock(name);
  ASSERT_TRUE(sock.ok());
  EXPECT_TRUE(SdNotifyTo(name, "STOPPING=1"));
  EXPECT_EQ(sock.Recv(), "STOPPING=1");
  unlink(name.c_str());
}

TEST(SdNotify, RejectsUnusableTargets) {
  EXPECT_FALSE(SdNotifyTo("", "READY=1"));
  EXPECT_FALSE(SdNotifyTo("relative/path", "READY=1"));
  EXPECT_FALSE(SdNotifyTo("/" + std::string(200, 'x'), "READY=1"));
  EXPECT_FALSE(SdNotifyTo("/tmp/ringcable-no-such-socket-" + std::to_string(getpid()), "READY=1"));
  unsetenv("NOTIFY_SOCKET");
  EXPECT_FALSE(SdNotify("READY=1"));
}

std::string HttpGet(int port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "<connect failed>";
  }
  send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

TEST(HttpServer, ServesPathOnly) {
  auto s = HttpServer::Start("127.0.0.1", 0, "/metrics", [] { return std::string("m 1\n"); });
  ASSERT_TRUE(s.ok()) << s.error();
  int port = (*s)->port();
  ASSERT_GT(port, 0);
  std::string ok = HttpGet(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(ok.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << ok;
  EXPECT_NE(ok.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            std::string::npos);
  EXPECT_EQ(ok.substr(ok.size() - 4), "m 1\n");
  std::string missing = HttpGet(port, "GET /other HTTP/1.1\r\n\r\n");
  EXPECT_EQ(missing.rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u) << missing;
  std::string bad = HttpGet(port, "NOT HTTP\r\n\r\n");
  EXPECT_EQ(bad.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << bad;
  (*s)->Stop();
  EXPECT_EQ(HttpGet(port, "GET /metrics HTTP/1.1\r\n\r\n"), "<connect failed>");
}

TEST(HttpServer, BusyPortIsOneErrorLine) {
  auto a = HttpServer::Start("127.0.0.1", 0, "/m", [] { return std::string(); });
  ASSERT_TRUE(a.ok());
  int port = (*a)->port();
  auto b = HttpServer::Start("127.0.0.1", port, "/m", [] { return std::string(); });
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error(), "cannot listen on 127.0.0.1:" + std::to_string(port) +
                           " (metrics): Address already in use");
}

}  // namespace
}  // namespace cable::metrics
