#include "options.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include <simdjson.h>

namespace cable::load {
namespace {

Result<int64_t, std::string> ParseInt(const std::string& flag, const std::string& v, int64_t lo,
                                      int64_t hi) {
  auto bad = [&] {
    return MakeError("--" + flag + ": expected an integer in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "], got '" + v + "'");
  };
  if (v.empty()) return bad();
  errno = 0;
  char* end = nullptr;
  long long n = std::strtoll(v.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || n < lo || n > hi) return bad();
  return static_cast<int64_t>(n);
}

Result<double, std::string> ParseNumber(const std::string& flag, const std::string& v, double lo,
                                        double hi, bool lo_inclusive) {
  auto bad = [&] {
    std::string range = (lo_inclusive ? "[" : "(") + std::to_string(static_cast<int64_t>(lo)) +
                        ", " + std::to_string(static_cast<int64_t>(hi)) + "]";
    return MakeError("--" + flag + ": expected a number in " + range + ", got '" + v + "'");
  };
  if (v.empty()) return bad();
  errno = 0;
  char* end = nullptr;
  double d = std::strtod(v.c_str(), &end);
  if (errno != 0 || *end != '\0' || !std::isfinite(d) || d > hi || d < lo ||
      (!lo_inclusive && d == lo)) {
    return bad();
  }
  return d;
}

// The "stream" member of the identifier, "" when absent; an error when the identifier is not a
// JSON object (the server would reject the subscription anyway).
Result<std::string, std::string> IdentifierStream(const std::string& identifier) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(identifier).get(doc) != simdjson::SUCCESS || !doc.is_object()) {
    return MakeError("--identifier: expected a JSON object, got '" + identifier + "'");
  }
  std::string_view stream;
  if (doc["stream"].get(stream) != simdjson::SUCCESS) return std::string();
  return std::string(stream);
}

}  // namespace

const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kConnect:
      return "connect";
    case Mode::kIdle:
      return "idle";
    case Mode::kBroadcast:
      return "broadcast";
    case Mode::kRestore:
      return "restore";
  }
  return "?";
}

Result<Endpoint, std::string> ParseUrl(const std::string& url, const std::string& scheme) {
  std::string prefix = scheme + "://";
  if (url.rfind(prefix, 0) != 0) {
    return MakeError("expected a " + prefix + "host:port/path URL, got '" + url + "'");
  }
  std::string rest = url.substr(prefix.size());
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  Endpoint ep;
  ep.path = slash == std::string::npos ? "/" : rest.substr(slash);
  std::string host = authority;
  ep.port = 80;
  size_t colon = authority.rfind(':');
  if (colon != std::string::npos) {
    host = authority.substr(0, colon);
    std::string port = authority.substr(colon + 1);
    char* end = nullptr;
    long p = std::strtol(port.c_str(), &end, 10);
    if (port.empty() || *end != '\0' || p < 1 || p > 65535) {
      return MakeError("bad port in '" + url + "'");
    }
    ep.port = static_cast<uint16_t>(p);
  }
  if (host == "localhost") host = "127.0.0.1";
  in_addr a{};
  if (inet_pton(AF_INET, host.c_str(), &a) != 1) {
    return MakeError("expected an IPv4 address or localhost in '" + url + "'");
  }
  // Clients bind to 127.0.0.x source addresses to get more ephemeral ports, which only works for
  // loopback destinations.
  if ((ntohl(a.s_addr) >> 24) != 127) {
    return MakeError("only loopback targets (127.0.0.0/8) are supported, got '" + url + "'");
  }
  ep.addr = a.s_addr;
  ep.host_port = host + ":" + std::to_string(ep.port);
  return ep;
}

Result<Options, std::string> ParseOptions(const std::vector<std::string>& args) {
  Options o;
  std::string url = "ws://127.0.0.1:8080/cable";
  std::string broadcast_url = "http://127.0.0.1:8090/_broadcast";
  for (size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (arg == "-h" || arg == "--help") {
      o.help = true;
      return o;
    }
    if (arg == "--no-progress") {
      o.progress = false;
      continue;
    }
    if (arg == "--compression") {
      o.compression = true;
      continue;
    }
    if (arg == "--ext") {
      o.ext = true;
      continue;
    }
    if (arg == "--turbo") {
      o.turbo = true;
      continue;
    }
    if (arg == "--sse") {
      o.sse = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) return MakeError("unexpected argument '" + arg + "'");
    std::string flag = arg.substr(2);
    std::string value;
    size_t eq = flag.find('=');
    if (eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else {
      static const char* kKnown[] = {
          "mode",         "url",           "connections",   "processes",  "source-ips", "rate",
          "concurrency",  "identifier",    "stream",        "duration",   "messages",   "msg-rate",
          "payload-size", "broadcast-url", "broadcast-key", "server-pid", "timeout",    "batch"};
      bool known = false;
      for (const char* k : kKnown) known = known || flag == k;
      if (!known) return MakeError("unknown option '" + arg + "' (see --help)");
      if (i + 1 >= args.size()) return MakeError("--" + flag + ": missing value");
      value = args[++i];
    }
#define CABLE_INT(name, field, lo, hi)      \
  if (flag == name) {                       \
    auto r = ParseInt(name, value, lo, hi); \
    if (!r) return MakeError(r.error());    \
    o.field = static_cast<int>(r.value());  \
    continue;                               \
  }
#define CABLE_NUM(name, field, lo, hi, inclusive)         \
  if (flag == name) {                                     \
    auto r = ParseNumber(name, value, lo, hi, inclusive); \
    if (!r) return MakeError(r.error());                  \
    o.field = r.value();                                  \
    continue;                                             \
  }
    if (flag == "mode") {
      if (value == "connect") {
        o.mode = Mode::kConnect;
      } else if (value == "idle") {
        o.mode = Mode::kIdle;
      } else if (value == "broadcast") {
        o.mode = Mode::kBroadcast;
      } else if (value == "restore") {
        o.mode = Mode::kRestore;
        o.ext = true;  // session restore is an extended-protocol feature
      } else {
        return MakeError("--mode: expected connect, idle, broadcast or restore, got '" + value +
                         "'");
      }
      continue;
    }
    if (flag == "url") {
      url = value;
      continue;
    }
    if (flag == "broadcast-url") {
      broadcast_url = value;
      continue;
    }
    if (flag == "identifier") {
      o.identifier = value;
      continue;
    }
    if (flag == "stream") {
      if (value.empty()) return MakeError("--stream: must not be empty");
      o.stream = value;
      continue;
    }
    if (flag == "broadcast-key") {
      o.broadcast_key = value;
      continue;
    }
    CABLE_INT("connections", connections, 1, 1000000)
    CABLE_INT("processes", processes, 1, 1000)
    CABLE_INT("source-ips", source_ips, 1, 65534)
    CABLE_INT("concurrency", concurrency, 1, 1000000)
    CABLE_INT("messages", messages, 1, 10000000)
    CABLE_INT("payload-size", payload_size, 0, 1 << 20)
    CABLE_INT("batch", batch, 1, 10000)
    CABLE_INT("server-pid", server_pid, 1, 1 << 30)
    CABLE_NUM("rate", rate, 0, 1e7, true)
    CABLE_NUM("msg-rate", msg_rate, 0, 1e7, true)
    CABLE_NUM("duration", duration, 0, 86400, false)
    CABLE_NUM("timeout", timeout, 0, 86400, false)
#undef CABLE_INT
#undef CABLE_NUM
    return MakeError("unknown option '--" + flag + "' (see --help)");
  }

  // --sse takes the SSE endpoint as http(s)://.
  const bool http_url = o.sse && (url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0);
  o.tls = url.rfind("wss://", 0) == 0 || (http_url && url.rfind("https://", 0) == 0);
  auto ws = ParseUrl(url, http_url ? (o.tls ? "https" : "http") : (o.tls ? "wss" : "ws"));
  if (!ws) return MakeError("--url: " + ws.error());
  o.url = ws.value();
  const bool https = broadcast_url.rfind("https://", 0) == 0;
  auto http = ParseUrl(broadcast_url, https ? "https" : "http");
  if (!http) return MakeError("--broadcast-url: " + http.error());
  o.broadcast_url = http.value();
  o.broadcast_url.tls = https;

  auto stream = IdentifierStream(o.identifier);
  if (!stream) return MakeError(stream.error());
  if (o.stream.empty()) o.stream = stream.value();
  if ((o.mode == Mode::kBroadcast || o.mode == Mode::kRestore) && o.stream.empty()) {
    return MakeError(std::string("--mode ") + ModeName(o.mode) +
                     ": the identifier has no \"stream\"; pass --stream");
  }

  if (o.processes == 0) {
    o.processes = (o.connections + kMaxSocketsPerProcess - 1) / kMaxSocketsPerProcess;
  }
  if (o.processes > o.connections) {
    return MakeError("--processes: " + std::to_string(o.processes) +
                     " is more than --connections " + std::to_string(o.connections));
  }
  int per_process = (o.connections + o.processes - 1) / o.processes;
  if (per_process > kMaxSocketsPerProcess) {
    return MakeError("--processes: " + std::to_string(o.processes) + " processes would hold " +
                     std::to_string(per_process) + " sockets each (max " +
                     std::to_string(kMaxSocketsPerProcess) + ")");
  }
  if (o.source_ips == 0) o.source_ips = (o.connections + 19999) / 20000 + 1;

  if (o.server_pid != 0) {
    std::string path = "/proc/" + std::to_string(o.server_pid) + "/stat";
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return MakeError("--server-pid: no process " + std::to_string(o.server_pid));
    close(fd);
  }
  return o;
}

std::string HelpText() {
  return R"(ringcable-load: load generator for Action Cable-compatible WebSocket servers
(actioncable-v1-json over ws://, broadcasts over HTTP POST). Loopback targets only.

Usage: ringcable-load [options]

  --mode MODE            connect | idle | broadcast | restore (default connect)
                         restore: a reconnect storm (implies --ext; the server needs a broker):
                         connect and subscribe, drop every socket, publish --messages, then
                         reconnect all with their sid (?sid=) and catch up with `history`; the
                         reconnect phase is measured (restores, deliveries, server CPU)
                           connect:   open N connections (upgrade, welcome, subscribe, confirm),
                                      report connects/s and handshake time percentiles
                           idle:      open N, hold them --duration seconds, report server memory
                           broadcast: open N subscribed, publish --messages over HTTP, report
                                      delivery latency percentiles, deliveries/s, lost, out-of-order
  --url URL              WebSocket endpoint (default ws://127.0.0.1:8080/cable); wss:// for TLS
                         (the server certificate is not verified)
  --connections N        total connections (default 1000)
  --processes P          worker processes (default ceil(N/15000); at most 15000 sockets each)
  --source-ips K         bind clients to 127.0.0.1 .. 127.0.0.K round-robin (default
                         ceil(N/20000)+1), so ephemeral ports do not run out
  --rate R               new connections per second over all workers (default 0 = unlimited)
  --concurrency C        at most C handshakes in flight over all workers (default 500)
  --identifier JSON      channel identifier to subscribe to
                         (default {"channel":"BenchmarkChannel","stream":"bench"})
  --stream NAME          stream to publish to (default: the identifier's "stream")
  --duration S           idle: seconds to hold the connections (default 10)
  --messages M           broadcast: publications to send (default 100)
  --msg-rate R           broadcast: publications per second; 0 = closed loop, the next one is sent
                         when every client has received the previous one, or after
                         min(--timeout, 10) s (default 100)
  --payload-size B       broadcast: bytes of padding in each publication (default 64)
  --turbo                broadcast: the padding is Turbo Stream-like HTML (<turbo-stream> elements
                         with varied words), so compression sees realistic text; default: one
                         repeated character
  --batch B              broadcast: B publications per POST, as AnyCable's batch (a JSON array of
                         {"stream","data"}; ringcable and anycable-go take it, Action Cable does
                         not); --msg-rate still counts publications (default 1 = one object)
  --broadcast-url URL    HTTP broadcast endpoint (default http://127.0.0.1:8090/_broadcast);
                         https:// for TLS (the server certificate is not verified)
  --broadcast-key KEY    send "Authorization: Bearer KEY" with publications
  --server-pid PID       also report the server's CPU seconds (/proc/PID/stat) over the measured
                         phase and its VmRSS before/after (/proc/PID/status)
  --timeout S            cap on each phase: connecting, publishing, draining (default 60)
  --no-progress          no progress line on stderr
  --compression          offer permessage-deflate (RFC 7692, no context takeover) and inflate
                         compressed messages (measures the client side of --enable_ws_compression)
  --sse                  subscribe over Server-Sent Events: GET <url>?identifier=<identifier> (url
                         http://127.0.0.1:8080/events); data events are the deliveries
  --ext                  ask for actioncable-v1-ext-json (sid in welcome; with --broker, frames carry
                         stream_id/epoch/offset): measures the extended protocol's cost
  -h, --help             this text

Output: a progress line on stderr every second, a table on stdout, then one line
"RESULT {json}" with every figure (latencies in ms, CPU in seconds, memory in KiB).
Exit status: 0 done, 1 server or broadcast endpoint unreachable / run failed, 2 bad arguments.
)";
}

}  // namespace cable::load
