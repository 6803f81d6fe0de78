#include "metrics/statsd.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/log.h"

namespace cable::metrics {
namespace {

struct TagStyle {
  bool in_name;       // tags go right after the name (influxdb, graphite) or at the end (datadog)
  const char* first;  // before the first tag
  char between;       // between tags
  char key_value;     // between a tag's name and value
};

TagStyle StyleOf(StatsdTagFormat f) {
  switch (f) {
    case StatsdTagFormat::kInfluxdb:
      return {true, ",", ',', '='};
    case StatsdTagFormat::kGraphite:
      return {true, ";", ';', '='};
    case StatsdTagFormat::kDatadog:
      break;
  }
  return {false, "|#", ',', ':'};
}

void AppendTags(std::string& line, const Tags& tags, const TagStyle& style) {
  if (tags.empty()) return;
  line += style.first;
  for (size_t i = 0; i < tags.size(); ++i) {
    if (i) line += style.between;
    line.append(tags[i].first).append(1, style.key_value).append(tags[i].second);
  }
}

std::string Line(std::string_view name, int64_t value, const char* type,
                 const StatsdOptions& options, const TagStyle& style) {
  std::string line = options.prefix;
  line.append(name);
  if (style.in_name) AppendTags(line, options.tags, style);
  line.append(":").append(std::to_string(value)).append("|").append(type);
  if (!style.in_name) AppendTags(line, options.tags, style);
  return line;
}

// "host:port" or "[v6]:port" (the config module has validated the shape).
bool SplitHostPort(const std::string& text, std::string* host, std::string* port) {
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find("]:");
    if (close == std::string::npos) return false;
    *host = text.substr(1, close - 1);
    *port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos) return false;
    *host = text.substr(0, colon);
    *port = text.substr(colon + 1);
  }
  return !host->empty() && !port->empty();
}

}  // namespace

cable::Result<StatsdTagFormat, std::string> ParseStatsdTagFormat(std::string_view name) {
  if (name == "datadog") return StatsdTagFormat::kDatadog;
  if (name == "influxdb") return StatsdTagFormat::kInfluxdb;
  if (name == "graphite") return StatsdTagFormat::kGraphite;
  return cable::MakeError("unknown StatsD tags format \"" + std::string(name) +
                          "\" (supported: datadog, influxdb, graphite)");
}

std::vector<std::string> StatsdLines(const Snapshot& cur, const Snapshot* prev,
                                     const StatsdOptions& options) {
  const TagStyle style = StyleOf(options.format);
  std::vector<std::string> lines;
  for (const auto& m : IntervalValues(cur, prev)) {
    if (m.counter) {
      if (m.value != 0) lines.push_back(Line(m.name, m.value, "c", options, style));
      continue;
    }
    // A StatsD gauge line with a sign is a delta; a negative value must be reached from 0.
    if (m.value < 0) lines.push_back(Line(m.name, 0, "g", options, style));
    lines.push_back(Line(m.name, m.value, "g", options, style));
  }
  return lines;
}

std::vector<std::string> PackStatsd(const std::vector<std::string>& lines, size_t max_packet_size) {
  std::vector<std::string> packets;
  std::string current;
  for (const auto& line : lines) {
    if (!current.empty() && current.size() + 1 + line.size() > max_packet_size) {
      packets.push_back(std::move(current));
      current.clear();
    }
    if (!current.empty()) current += '\n';
    current += line;
  }
  if (!current.empty()) packets.push_back(std::move(current));
  return packets;
}

cable::Result<std::unique_ptr<StatsdReporter>, std::string> StatsdReporter::Start(
    const std::string& host_port, int interval_s, StatsdOptions options, SnapshotFn snapshot) {
  std::string host, port;
  if (!SplitHostPort(host_port, &host, &port)) {
    return cable::MakeError("invalid StatsD address \"" + host_port + "\": expected host:port");
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    return cable::MakeError("cannot resolve StatsD host \"" + host_port +
                            "\": " + gai_strerror(rc));
  }
  int fd = socket(res->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  std::string err;
  if (fd < 0) {
    err = strerror(errno);
  } else if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    err = strerror(errno);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) return cable::MakeError("cannot open StatsD socket to " + host_port + ": " + err);
  std::unique_ptr<StatsdReporter> reporter(
      new StatsdReporter(fd, interval_s, std::move(options), std::move(snapshot)));
  return reporter;
}

StatsdReporter::StatsdReporter(int fd, int interval_s, StatsdOptions options, SnapshotFn snapshot)
    : fd_(fd),
      options_(std::move(options)),
      ticker_(interval_s, std::move(snapshot), [this](const Snapshot& cur, const Snapshot* prev) {
        Send(PackStatsd(StatsdLines(cur, prev, options_), options_.max_packet_size));
      }) {}

StatsdReporter::~StatsdReporter() { Stop(); }

void StatsdReporter::Stop() {
  ticker_.Stop();
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
}

void StatsdReporter::Send(const std::vector<std::string>& packets) {
  size_t failed = 0;
  int last_errno = 0;
  for (const auto& packet : packets) {
    // Non-blocking: a full socket buffer or an ICMP "port unreachable" loses this interval's
    // datagram, never delays the next one (StatsD over UDP is lossy by design).
    if (send(fd_, packet.data(), packet.size(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
      ++failed;
      last_errno = errno;
    }
  }
  if (failed > 0) {
    LOG_DEBUG("statsd: %zu of %zu packets not sent: %s", failed, packets.size(),
              strerror(last_errno));
  }
}

}  // namespace cable::metrics
