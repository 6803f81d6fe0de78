// StatsD, the metrics log filter and the node id through the real binary: ringcable sends to a
// UDP socket this test owns on loopback; every datagram is parsed line by line and checked for
// name, value, type, tags (per format) and size. Waits are for a state (a line with the expected
// value), bounded by datagram count and socket timeouts; nothing sleeps to synchronise.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "hub_fixture.h"

namespace cable::ithub {
namespace {

// A UDP socket bound to 127.0.0.1:<free port>; Receive() waits at most `timeout` per datagram.
class UdpListener {
 public:
  UdpListener() {
    fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~UdpListener() { close(fd_); }
  bool ok() const { return ok_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // One datagram, or nullopt after the timeout.
  std::optional<std::string> Receive() {
    char buf[70000];
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
  }

 private:
  int fd_ = -1;
  int port_ = 0;
  bool ok_ = false;
};

struct StatsdLine {
  std::string name;  // without prefix
  int64_t value = 0;
  char type = '?';
  std::string tags;  // as written, in the format's syntax
};

bool IsName(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(),
                                   [](char ch) { return (ch >= 'a' && ch <= 'z') || ch == '_'; });
}

bool IsInteger(const std::string& s) {
  const size_t digits = !s.empty() && s[0] == '-' ? 1 : 0;
  return s.size() > digits && std::all_of(s.begin() + static_cast<std::ptrdiff_t>(digits), s.end(),
                                          [](char ch) { return ch >= '0' && ch <= '9'; });
}

// Parses one line for `prefix` and `format`; nullopt when it does not follow the format:
//   datadog   <prefix>name:value|type[|#tags]
//   influxdb  <prefix>name[,tags]:value|type
//   graphite  <prefix>name[;tags]:value|type
std::optional<StatsdLine> ParseLine(const std::string& line, const std::string& prefix,
                                    const std::string& format) {
  if (line.rfind(prefix, 0) != 0) return std::nullopt;
  const std::string rest = line.substr(prefix.size());
  const size_t colon = rest.find(':');
  const size_t bar = rest.find('|', colon == std::string::npos ? 0 : colon);
  if (colon == std::string::npos || bar == std::string::npos || bar + 2 > rest.size()) {
    return std::nullopt;
  }
  StatsdLine out;
  std::string head = rest.substr(0, colon);  // name, and for influxdb/graphite the tags
  const std::string value = rest.substr(colon + 1, bar - colon - 1);
  out.type = rest[bar + 1];
  std::string tail = rest.substr(bar + 2);  // datadog: "|#tags" or ""
  if (format == "datadog") {
    if (!tail.empty()) {
      if (tail.rfind("|#", 0) != 0 || tail.size() == 2) return std::nullopt;
      out.tags = tail.substr(2);
    }
  } else {
    if (!tail.empty()) return std::nullopt;
    const size_t sep = head.find(format == "influxdb" ? ',' : ';');
    if (sep != std::string::npos) {
      out.tags = head.substr(sep + 1);
      head = head.substr(0, sep);
      if (out.tags.empty()) return std::nullopt;
    }
  }
  out.name = head;
  if (!IsName(out.name) || !IsInteger(value) || (out.type != 'c' && out.type != 'g')) {
    return std::nullopt;
  }
  out.value = std::stoll(value);
  return out;
}

std::vector<std::string> Lines(const std::string& datagram) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= datagram.size()) {
    const size_t nl = datagram.find('\n', pos);
    out.push_back(datagram.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos));
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  return out;
}

class StatsdTest : public HubTest {
 protected:
  // Receives datagrams until `done` holds for the lines seen so far (at most 60 datagrams, each
  // within the socket timeout). Every line must parse and every datagram fit `max_packet`.
  std::vector<StatsdLine> ReceiveUntil(UdpListener& udp, const std::string& prefix,
                                       const std::string& format, size_t max_packet,
                                       const std::function<bool(const StatsdLine&)>& done,
                                       size_t* datagrams = nullptr) {
    std::vector<StatsdLine> seen;
    for (int i = 0; i < 60; ++i) {
      auto d = udp.Receive();
      if (!d) {
        ADD_FAILURE() << "no datagram within the timeout";
        break;
      }
      if (datagrams) ++*datagrams;
      EXPECT_LE(d->size(), max_packet) << *d;
      EXPECT_FALSE(d->empty());
      EXPECT_NE(d->back(), '\n') << "datagram ends with a newline";
      bool finished = false;
      for (const auto& line : Lines(*d)) {
        auto parsed = ParseLine(line, prefix, format);
        EXPECT_TRUE(parsed.has_value()) << "line does not follow " << format << ": " << line;
        if (!parsed) continue;
        finished = finished || done(*parsed);
        seen.push_back(*parsed);
      }
      if (finished) break;
    }
    return seen;
  }
};

// Counter names end in _total, everything else anycable-go sends is a gauge.
void ExpectTypes(const std::vector<StatsdLine>& lines) {
  for (const auto& l : lines) {
    const bool counter = l.name.size() > 6 && l.name.substr(l.name.size() - 6) == "_total";
    EXPECT_EQ(l.type, counter ? 'c' : 'g') << l.name;
    if (counter) {
      EXPECT_NE(l.value, 0) << l.name << ": zero deltas are not sent";
    }
  }
}

TEST_F(StatsdTest, DatadogCountersGaugesAndTags) {
  UdpListener udp;
  ASSERT_TRUE(udp.ok());
  StartServer({"--statsd_host", udp.address(), "--metrics_rotate_interval", "1", "--metrics_tags",
               "env:test,region:eu"});
  WsClient ws;
  ASSERT_NE(Connect(ws), "");
  ASSERT_EQ(Publish(Pub("nobody", "\"x\"")), 201);
  bool published = false, connected = false;
  auto lines = ReceiveUntil(udp, "anycable_go.", "datadog", 1400, [&](const StatsdLine& l) {
    published = published || (l.name == "broadcast_msg_total" && l.value == 1);
    connected = connected || (l.name == "clients_num" && l.value == 1);
    return published && connected;
  });
  EXPECT_TRUE(published);
  EXPECT_TRUE(connected);
  ExpectTypes(lines);
  std::set<std::string> names;
  for (const auto& l : lines) {
    EXPECT_EQ(l.tags, "env:test,region:eu") << l.name;
    names.insert(l.name);
  }
  for (const char* gauge : {"clients_num", "clients_uniq_num", "broadcast_streams_num",
                            "disconnect_queue_size", "rpc_pending_num"}) {
    EXPECT_TRUE(names.count(gauge)) << gauge;
  }
  EXPECT_EQ(server_.Stop(), 0);
  EXPECT_NE(server_.Log().find("StatsD metrics to " + udp.address() + " every 1s"),
            std::string::npos)
      << server_.Log();
}

TEST_F(StatsdTest, InfluxdbTagsPrefixAndSmallPackets) {
  UdpListener udp;
  ASSERT_TRUE(udp.ok());
  StartServer({"--statsd_host", udp.address(), "--metrics_rotate_interval", "1", "--metrics_tags",
               "env:test", "--statsd_prefix", "rc.", "--statsd_tags_format", "influxdb",
               "--statsd_max_packet_size", "100"});
  size_t datagrams = 0;
  // rpc_pending_num is the last of an interval's lines (they are sorted by name).
  auto lines = ReceiveUntil(
      udp, "rc.", "influxdb", 100, [](const StatsdLine& l) { return l.name == "rpc_pending_num"; },
      &datagrams);
  ExpectTypes(lines);
  for (const auto& l : lines) EXPECT_EQ(l.tags, "env=test") << l.name;
  // One interval's ~12 lines of ~35 bytes cannot share one 100-byte datagram.
  EXPECT_GT(datagrams, 2u);
  EXPECT_EQ(server_.Stop(), 0);
}

TEST_F(StatsdTest, GraphiteTagsAndNoTags) {
  UdpListener udp;
  ASSERT_TRUE(udp.ok());
  StartServer({"--statsd_host", udp.address(), "--metrics_rotate_interval", "1", "--metrics_tags",
               "env:test,app:chat", "--statsd_tags_format", "graphite"});
  auto lines = ReceiveUntil(udp, "anycable_go.", "graphite", 1400,
                            [](const StatsdLine& l) { return l.name == "rpc_pending_num"; });
  ASSERT_FALSE(lines.empty());
  for (const auto& l : lines) EXPECT_EQ(l.tags, "env=test;app=chat") << l.name;
  EXPECT_EQ(server_.Stop(), 0);

  UdpListener plain;
  ASSERT_TRUE(plain.ok());
  StartServer({"--statsd_host", plain.address(), "--metrics_rotate_interval", "1"});
  lines = ReceiveUntil(plain, "anycable_go.", "datadog", 1400,
                       [](const StatsdLine& l) { return l.name == "rpc_pending_num"; });
  ASSERT_FALSE(lines.empty());
  for (const auto& l : lines) EXPECT_EQ(l.tags, "") << l.name;
  EXPECT_EQ(server_.Stop(), 0);
}

TEST_F(StatsdTest, BadSettingsAreOneErrorLine) {
  auto run = [](std::vector<std::string> args) {
    args.insert(args.begin(), cable::test::BinaryPath());
    return cable::test::RunCommand(args, 20s);
  };
  auto r = run({"--statsd_host", "localhost"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output,
            "ringcable: invalid value \"localhost\" for flag --statsd_host: expected host:port "
            "with a port between 1 and 65535\n");
  r = run({"--statsd_host", "127.0.0.1:8125", "--statsd_tags_format", "dogstatsd"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output,
            "ringcable: invalid value \"dogstatsd\" for flag --statsd_tags_format: must be one of "
            "datadog, influxdb, graphite\n");
  r = run({"--statsd_max_packet_size", "8"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output,
            "ringcable: invalid value \"8\" for flag --statsd_max_packet_size: must be between 64 "
            "and 65507\n");
}

// What follows "INFO metrics " on the first complete metrics log line, or "".
std::string MetricsLine(const std::string& log) {
  const size_t at = log.find(" INFO metrics ");
  if (at == std::string::npos) return "";
  const size_t start = at + std::string(" INFO metrics ").size();
  const size_t end = log.find('\n', start);
  return end == std::string::npos ? "" : log.substr(start, end - start);
}

TEST_F(StatsdTest, MetricsLogFilterAndNodeId) {
  StartServer({"--metrics_log", "--metrics_rotate_interval", "1", "--metrics_log_filter",
               "clients_num,broadcast_msg_total,no_such_metric", "--node_id", "ops-node-1"});
  std::string line;
  for (int i = 0; i < 1000 && line.empty(); ++i) {  // waits for the line, bounded
    line = MetricsLine(server_.Log());
    if (line.empty()) std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(line, "broadcast_msg_total=0 clients_num=0 nodeid=ops-node-1") << server_.Log();
  EXPECT_NE(server_.Log().find("Log metrics every 1s (only clients_num,broadcast_msg_total,"
                               "no_such_metric) nodeid=ops-node-1\n"),
            std::string::npos)
      << server_.Log();
  EXPECT_EQ(server_.Stop(), 0);
  // Every line of ringcable's logger ("2025-01-31T12:00:00.000Z LEVEL ...") carries the node id.
  for (const auto& l : Lines(server_.Log())) {
    if (l.size() < 11 || l[4] != '-' || l[10] != 'T') continue;
    EXPECT_EQ(l.substr(l.size() - std::string(" nodeid=ops-node-1").size()), " nodeid=ops-node-1")
        << l;
  }
}

TEST_F(StatsdTest, RandomNodeIdByDefault) {
  StartServer({});
  EXPECT_EQ(server_.Stop(), 0);
  const std::string log = server_.Log();
  const std::string marker = "shutdown complete nodeid=";
  const size_t at = log.find(marker);
  ASSERT_NE(at, std::string::npos) << log;
  const size_t end = log.find('\n', at);
  ASSERT_NE(end, std::string::npos);
  const std::string id = log.substr(at + marker.size(), end - at - marker.size());
  ASSERT_EQ(id.size(), 6u) << id;
  for (char ch : id) {
    EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-') << id;
  }
  // The same id on the first line too.
  EXPECT_NE(log.substr(0, log.find('\n')).find(" nodeid=" + id), std::string::npos) << log;
}

}  // namespace
}  // namespace cable::ithub
