#include "config/config.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <optional>
#include <utility>

// Header-only and exception-free: parse errors come back as values.
#define TOML_HEADER_ONLY 1
#define TOML_EXCEPTIONS 0
#include <toml++/toml.h>
#include <unistd.h>

extern char** environ;

namespace cable::config {
namespace {

constexpr std::string_view kVersionText =
    "ringcable 0.1.0 (AnyCable protocol compatible with anycable-go 1.6)";
constexpr int kDefaultRpcConcurrency = 28;

// A flag value after kind-specific parsing; only the member matching the kind is meaningful.
struct Value {
  bool b = false;
  int64_t i = 0;
  std::string s;
  std::vector<std::string> list;
};

// Config plus the raw inputs that only make sense once every source has been applied
// (derived broadcast key, deprecated aliases, --debug overrides).
struct Builder {
  Config config;
  std::string broadcast_key;
  bool broadcast_key_none = false;
  std::string http_broadcast_secret;
  bool disable_disconnect = false;
  bool public_mode = false;
  std::string jwt_id_key;
  std::string turbo_rails_key;
  std::string cable_ready_key;
};

std::string NoneIsUnset(const std::string& s) { return s == "none" ? std::string() : s; }

using ApplyFn = void (*)(Builder&, const Value&);
// Returns a full error line, or nothing when the value is acceptable. `origin` is
// "flag --name" or "env NAME".
using CheckFn = std::optional<std::string> (*)(std::string_view origin, const Value&);

struct FlagSpec {
  std::string_view name;
  FlagKind kind;
  std::string_view default_value;
  bool supported = false;
  bool hidden = false;
  std::string_view help;
  ApplyFn apply = nullptr;  // nullptr on a supported flag = accepted, no effect
  int64_t min = INT64_MIN;
  int64_t max = INT64_MAX;
  std::vector<std::string_view> choices = {};       // kString: the only accepted values
  std::vector<std::string_view> env_aliases = {};   // extra env names after ANYCABLE_<NAME>
  std::vector<std::string_view> also_default = {};  // unsupported flags: more values meaning "off"
  CheckFn check = nullptr;
};

std::string InvalidValue(std::string_view origin, std::string_view raw, std::string_view reason) {
  std::string out = "invalid value \"";
  out.append(raw).append("\" for ").append(origin).append(": ").append(reason);
  return out;
}

std::string Trim(std::string_view s) {
  size_t b = 0;
  size_t e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::vector<std::string> SplitList(std::string_view s) {
  std::vector<std::string> out;
  while (true) {
    size_t comma = s.find(',');
    std::string item = Trim(s.substr(0, comma));
    if (!item.empty()) out.push_back(std::move(item));
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> LowerAll(std::vector<std::string> v) {
  for (auto& s : v) s = Lower(std::move(s));
  return v;
}

// Go strconv.ParseBool: exactly these spellings.
std::optional<bool> ParseBool(std::string_view s) {
  if (s == "1" || s == "t" || s == "T" || s == "TRUE" || s == "true" || s == "True") return true;
  if (s == "0" || s == "f" || s == "F" || s == "FALSE" || s == "false" || s == "False") {
    return false;
  }
  return std::nullopt;
}

// Decimal only (Go also accepts 0x/0o/0b prefixes and '_' separators; nobody configures those).
std::optional<int64_t> ParseInt(std::string_view s, bool* overflow) {
  *overflow = false;
  size_t pos = 0;
  bool negative = false;
  if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) negative = s[pos++] == '-';
  if (pos == s.size()) return std::nullopt;
  uint64_t magnitude = 0;
  const uint64_t limit = negative ? uint64_t{1} << 63 : uint64_t{INT64_MAX};
  for (; pos < s.size(); ++pos) {
    if (s[pos] < '0' || s[pos] > '9') return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(s[pos] - '0');
    if (magnitude > (limit - digit) / 10) {
      *overflow = true;
      return std::nullopt;
    }
    magnitude = magnitude * 10 + digit;
  }
  if (!negative) return static_cast<int64_t>(magnitude);
  return magnitude == (uint64_t{1} << 63) ? INT64_MIN : -static_cast<int64_t>(magnitude);
}

cable::Result<Value, std::string> ParseValue(const FlagSpec& spec, std::string_view origin,
                                             std::string_view raw) {
  Value v;
  switch (spec.kind) {
    case FlagKind::kBool: {
      auto b = ParseBool(raw);
      if (!b) return cable::MakeError(InvalidValue(origin, raw, "not a boolean"));
      v.b = *b;
      break;
    }
    case FlagKind::kInt: {
      bool overflow = false;
      auto i = ParseInt(raw, &overflow);
      if (!i) {
        return cable::MakeError(
            InvalidValue(origin, raw, overflow ? "integer out of range" : "not an integer"));
      }
      v.i = *i;
      break;
    }
    case FlagKind::kString:
    case FlagKind::kSecret:
      v.s = std::string(raw);
      break;
    case FlagKind::kList:
      v.s = std::string(raw);
      v.list = SplitList(raw);
      break;
  }
  return v;
}

// Parses a table literal (default values); these are known-good.
Value LiteralValue(const FlagSpec& spec, std::string_view raw) {
  auto v = ParseValue(spec, "default", raw);
  return v.ok() ? std::move(v).value() : Value{};
}

bool SameValue(FlagKind kind, const Value& a, const Value& b) {
  switch (kind) {
    case FlagKind::kBool:
      return a.b == b.b;
    case FlagKind::kInt:
      return a.i == b.i;
    case FlagKind::kString:
    case FlagKind::kSecret:
      return a.s == b.s;
    case FlagKind::kList:
      return a.list == b.list;
  }
  return false;
}

// True when a value for an unsupported flag leaves that feature as anycable-go's default does.
bool IsDefaultEquivalent(const FlagSpec& spec, const Value& v) {
  if (SameValue(spec.kind, LiteralValue(spec, spec.default_value), v)) return true;
  for (std::string_view alt : spec.also_default) {
    if (SameValue(spec.kind, LiteralValue(spec, alt), v)) return true;
  }
  const bool textual = spec.kind == FlagKind::kString || spec.kind == FlagKind::kSecret ||
                       spec.kind == FlagKind::kList;
  // An empty string is how env files "unset" a variable; it cannot switch a feature on.
  if (textual && Trim(v.s).empty()) return true;
  return spec.kind == FlagKind::kSecret && v.s == "none";
}

std::string RangeReason(int64_t min, int64_t max) {
  if (min == INT_MIN || min == INT64_MIN) return "out of range";
  if (max == INT_MAX || max == INT64_MAX) {
    if (min == 0) return "must be non-negative";
    if (min == 1) return "must be positive";
    return "must be at least " + std::to_string(min);
  }
  return "must be between " + std::to_string(min) + " and " + std::to_string(max);
}

std::string JoinChoices(const std::vector<std::string_view>& choices) {
  std::string out;
  for (size_t i = 0; i < choices.size(); ++i) {
    if (i) out += ", ";
    out += choices[i];
  }
  return out;
}

std::optional<std::string> CheckPaths(std::string_view origin, const Value& v) {
  for (const auto& p : v.list) {
    if (p.front() != '/')
      return InvalidValue(origin, v.s, "path \"" + p + "\" must start with '/'");
  }
  return std::nullopt;
}

std::optional<std::string> CheckPath(std::string_view origin, const Value& v) {
  if (v.s.empty() || v.s.front() != '/') return InvalidValue(origin, v.s, "must start with '/'");
  return std::nullopt;
}

std::optional<std::string> CheckOptionalPath(std::string_view origin, const Value& v) {
  if (v.s.empty()) return std::nullopt;
  return CheckPath(origin, v);
}

std::optional<std::string> CheckBroadcastAdapters(std::string_view, const Value& v) {
  for (const auto& a : v.list) {
    if (a == "http" || a == "redis" || a == "redisx" || a == "nats") continue;
    return "unknown broadcast adapter \"" + a + "\" (supported: http, redis, redisx, nats)";
  }
  return std::nullopt;
}

std::optional<std::string> CheckNotEmpty(std::string_view origin, const Value& v) {
  if (Trim(v.s).empty()) return InvalidValue(origin, v.s, "must not be empty");
  return std::nullopt;
}

std::optional<std::string> CheckPubsub(std::string_view origin, const Value& v) {
  std::string p = Lower(Trim(v.s));
  if (p.empty() || p == "none" || p == "redis" || p == "nats") return std::nullopt;
  return InvalidValue(origin, v.s, "must be one of none, redis, nats");
}

// "scheme://user:secret@host" → "scheme://user:***@host", for every URL of a comma list.
std::string RedactUrl(std::string s) {
  size_t from = 0;
  while (true) {
    size_t scheme = s.find("://", from);
    if (scheme == std::string::npos) break;
    size_t start = scheme + 3;
    size_t end = s.find_first_of(",/", start);
    if (end == std::string::npos) end = s.size();
    size_t at = s.rfind('@', end);
    if (at != std::string::npos && at >= start) {
      size_t colon = s.find(':', start);
      if (colon != std::string::npos && colon < at) s.replace(colon + 1, at - colon - 1, "***");
    }
    from = start;
  }
  return s;
}

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

std::optional<std::string> CheckRpcHost(std::string_view origin, const Value& v) {
  if (StartsWithNoCase(v.s, "http://") || StartsWithNoCase(v.s, "https://")) {
    return std::string("HTTP RPC (--rpc_host=http://...) is not supported yet");
  }
  std::string_view host = v.s;
  if (host.starts_with("grpc://")) host.remove_prefix(7);
  if (Trim(host).empty()) return InvalidValue(origin, v.s, "must not be empty");
  return std::nullopt;
}

std::vector<std::string> Dedup(const std::vector<std::string>& in) {
  std::vector<std::string> out;
  for (const auto& s : in) {
    bool seen = false;
    for (const auto& o : out) seen = seen || o == s;
    if (!seen) out.push_back(s);
  }
  return out;
}

int AsInt(const Value& v) { return static_cast<int>(v.i); }

#define CFG_SET(field, expr) [](Builder& b, const Value& v) { b.config.field = (expr); }

// One row per anycable-go flag (spec §2, section by section), plus ringcable's own --workers.
// To implement a flag later: set .supported = true, add a Config field and an .apply setter.
const std::vector<FlagSpec>& Table() {
  using K = FlagKind;
  // clang-format off
  static const std::vector<FlagSpec> kTable = {
      // --- 2.1 Server / general ---
      {.name = "host", .kind = K::kString, .default_value = "localhost", .supported = true,
       .help = "Server host", .apply = CFG_SET(host, v.s)},
      {.name = "port", .kind = K::kInt, .default_value = "8080", .supported = true,
       .help = "Server port", .apply = CFG_SET(port, AsInt(v)), .min = 0, .max = 65535,
       .env_aliases = {"PORT"}},
      {.name = "path", .kind = K::kList, .default_value = "/cable", .supported = true,
       .help = "WebSocket endpoint paths (comma-separated)",
       .apply = CFG_SET(paths, v.list.empty() ? std::vector<std::string>{"/cable"} : v.list),
       .check = CheckPaths},
      {.name = "health-path", .kind = K::kString, .default_value = "/health", .supported = true,
       .help = "HTTP health endpoint path", .apply = CFG_SET(health_path, v.s), .check = CheckPath},
      {.name = "workers", .kind = K::kInt, .default_value = "0", .supported = true,
       .help = "Worker threads, one io_uring each (ringcable only; 0 = number of online CPUs)",
       .apply = CFG_SET(workers, AsInt(v)), .min = 0, .max = 256},
      {.name = "allowed_origins", .kind = K::kList, .default_value = "", .supported = true,
       .help = "Accept WebSocket upgrades only from these origins, e.g. "
               "\"www.example.com,*example.io\" (empty = no check)",
       .apply = CFG_SET(allowed_origins, LowerAll(v.list))},
      {.name = "max-conn", .kind = K::kInt, .default_value = "0", .supported = true,
       .help = "Limit simultaneous server connections (0 = no limit)",
       .apply = CFG_SET(max_conn, AsInt(v)), .min = 0, .max = INT_MAX},
      {.name = "secret", .kind = K::kSecret, .default_value = "", .supported = true,
       .help = "Application secret; the HTTP broadcast key is derived from it",
       .apply = CFG_SET(secret, v.s == "none" ? std::string() : v.s)},
      {.name = "broadcast_key", .kind = K::kSecret, .default_value = "", .supported = true,
       .help = "Key to authenticate HTTP broadcasts (default: derived from --secret; \"none\" "
               "disables authentication)",
       .apply =
           [](Builder& b, const Value& v) {
             b.broadcast_key_none = v.s == "none";
             b.broadcast_key = b.broadcast_key_none ? std::string() : v.s;
           }},
      {.name = "noauth", .kind = K::kBool, .default_value = "false", .supported = true,
       .help = "Accept every connection without authentication",
       .apply = CFG_SET(noauth, v.b)},
      {.name = "public", .kind = K::kBool, .default_value = "false", .supported = true,
       .help = "Public mode: noauth + public streams + unauthenticated broadcasting",
       .apply = [](Builder& b, const Value& v) { b.public_mode = v.b; }},
      {.name = "shutdown_timeout", .kind = K::kInt, .default_value = "30", .supported = true,
       .help = "Graceful shutdown timeout (in seconds)",
       .apply = CFG_SET(shutdown_timeout_s, AsInt(v)), .min = 0, .max = INT_MAX},
      {.name = "shutdown_delay", .kind = K::kInt, .default_value = "0", .supported = true,
       .help = "Delay before starting the graceful shutdown (in seconds)",
       .apply = CFG_SET(shutdown_delay_s, AsInt(v)), .min = 0, .max = INT_MAX},
      // Goroutine pool size: ringcable closes sessions from its own workers, so any value is
      // accepted and has no effect.
      {.name = "shutdown_pool_size", .kind = K::kInt, .default_value = "16", .supported = true,
       .hidden = true, .help = "Accepted for compatibility, no effect"},
      {.name = "node_id", .kind = K::kString, .default_value = "", .hidden = true,
       .help = "Node identifier (random by default)"},
      {.name = "ssl_cert", .kind = K::kString, .default_value = "", .help = "SSL certificate path"},
      {.name = "ssl_key", .kind = K::kString, .default_value = "", .help = "SSL private key path"},
      // Read by Parse() itself (pass 1); no setter.
      {.name = "config-path", .kind = K::kString, .default_value = "", .supported = true,
       .help = "Path to a TOML configuration file (default: ./anycable.toml, then "
               "/etc/anycable/anycable.toml)"},
      {.name = "ignore-config-path", .kind = K::kBool, .default_value = "false",
       .supported = true, .help = "Do not read a TOML configuration file"},
      {.name = "print-config", .kind = K::kBool, .default_value = "false", .supported = true,
       .help = "Print the effective configuration and exit"},
      {.name = "presets", .kind = K::kString, .default_value = "",
       .help = "Configuration presets (none, fly, heroku, broker)", .also_default = {"none"}},
      {.name = "log_level", .kind = K::kString, .default_value = "info", .supported = true,
       .help = "Logging level (debug, info, warn, error)", .apply = CFG_SET(log_level, v.s),
       .choices = {"debug", "info", "warn", "error"}},
      {.name = "log_format", .kind = K::kString, .default_value = "text", .supported = true,
       .help = "Logging format (text, json)", .apply = CFG_SET(log_format, v.s),
       .choices = {"text", "json"}},
      {.name = "debug", .kind = K::kBool, .default_value = "false", .supported = true,
       .help = "Enable debug mode (debug log level, text format)", .apply = CFG_SET(debug, v.b)},

      // --- 2.2 RPC ---
      {.name = "rpc_host", .kind = K::kString, .default_value = "localhost:50051",
       .supported = true,
       .help = "RPC service address (host:port, grpc://, dns:///host:port or grpc-list://h1,h2)",
       .apply = CFG_SET(rpc_host, v.s.starts_with("grpc://") ? v.s.substr(7) : v.s),
       .check = CheckRpcHost},
      {.name = "norpc", .kind = K::kBool, .default_value = "false", .supported = true,
       .help = "Disable RPC (standalone mode)", .apply = CFG_SET(norpc, v.b)},
      {.name = "rpc_concurrency", .kind = K::kInt, .default_value = "28", .supported = true,
       .help = "Max number of concurrent RPC requests (<= 0 means 28)",
       .apply = CFG_SET(rpc_concurrency, AsInt(v)), .min = INT_MIN, .max = INT_MAX},
      {.name = "rpc_request_timeout", .kind = K::kInt, .default_value = "0", .supported = true,
       .help = "Timeout of one RPC attempt (in ms, 0 = none)",
       .apply = CFG_SET(rpc_request_timeout_ms, AsInt(v)), .min = 0, .max = INT_MAX},
      {.name = "rpc_command_timeout", .kind = K::kInt, .default_value = "3000", .supported = true,
       .hidden = true, .help = "Timeout of an RPC call with retries (in ms)",
       .apply = CFG_SET(rpc_command_timeout_ms, AsInt(v)), .min = 0, .max = INT_MAX},
      {.name = "headers", .kind = K::kList, .default_value = "cookie", .supported = true,
       .help = "List of headers to proxy to RPC", .apply = CFG_SET(headers, LowerAll(v.list))},
      {.name = "proxy-cookies", .kind = K::kList, .default_value = "", .supported = true,
       .help = "Cookie names to proxy to RPC (default: all)",
       .apply = CFG_SET(proxy_cookies, v.list)},
      {.name = "http_rpc_secret", .kind = K::kSecret, .default_value = "",
       .help = "Authentication secret for RPC over HTTP"},
      {.name = "http_rpc_timeout", .kind = K::kInt, .default_value = "0", .hidden = true,
       .help = "[DEPRECATED] HTTP RPC timeout (in ms)"},
      {.name = "rpc_enable_tls", .kind = K::kBool, .default_value = "false", .supported = true,
       .hidden = true, .help = "Enable client-side TLS with the RPC server",
       .apply = CFG_SET(rpc_enable_tls, v.b)},
      {.name = "rpc_tls_verify", .kind = K::kBool, .default_value = "true", .supported = true,
       .hidden = true, .help = "Verify the RPC server certificate",
       .apply = CFG_SET(rpc_tls_verify, v.b)},
      {.name = "rpc_tls_root_ca", .kind = K::kString, .default_value = "", .supported = true,
       .hidden = true, .help = "CA root certificate file path or PEM contents",
       .apply = CFG_SET(rpc_tls_root_ca, v.s)},
      {.name = "rpc_max_call_recv_size", .kind = K::kInt, .default_value = "0", .supported = true,
       .hidden = true, .help = "Max RPC response size (bytes, 0 = gRPC default)",
       .apply = CFG_SET(rpc_max_call_recv_size, AsInt(v)), .min = 0, .max = INT_MAX},
      {.name = "rpc_max_call_send_size", .kind = K::kInt, .default_value = "0", .supported = true,
       .hidden = true, .help = "Max RPC request size (bytes, 0 = gRPC default)",
       .apply = CFG_SET(rpc_max_call_send_size, AsInt(v)), .min = 0, .max = INT_MAX},
      {.name = "rpc_impl", .kind = K::kString, .default_value = "", .hidden = true,
       .help = "RPC implementation (grpc, http)", .also_default = {"grpc"}},

      // --- 2.3 Disconnector ---
      {.name = "disconnect_mode", .kind = K::kString, .default_value = "auto", .supported = true,
       .help = "When to call the Disconnect RPC (auto, always, never)", .apply =
           [](Builder& b, const Value& v) {
             b.config.disconnect_mode = v.s == "always"  ? DisconnectMode::kAlways
                                        : v.s == "never" ? DisconnectMode::kNever
                                                         : DisconnectMode::kAuto;
           },
       .choices = {"auto", "always", "never"}},
      {.name = "disconnect_rate", .kind = K::kInt, .default_value = "100", .supported = true,
       .hidden = true, .help = "Max number of Disconnect calls per second",
       .apply = CFG_SET(disconnect_rate, AsInt(v)), .min = 1, .max = INT_MAX},
      {.name = "disconnect_backlog_size", .kind = K::kInt, .default_value = "4096",
       .supported = true, .hidden = true, .help = "Disconnect queue capacity",
       .apply = CFG_SET(disconnect_backlog_size, AsInt(v)), .min = 0, .max = INT_MAX},
      {.name = "disable_disconnect", .kind = K::kBool, .default_value = "false", .supported = true,
       .hidden = true, .help = "[DEPRECATED] Same as --disconnect_mode=never",
       .apply = [](Builder& b, const Value& v) { b.disable_disconnect = v.b; }},
      // Deprecated in anycable-go and already without effect there.
      {.name = "disconnect_timeout", .kind = K::kInt, .default_value = "0", .supported = true,
       .hidden = true, .help = "[DEPRECATED] No effect"},

      // --- 2.4 Broadcasting / pub-sub / broker ---
      {.name = "broadcast_adapter", .kind = K::kList, .default_value = "http,redis",
       .supported = true,
       .help = "Broadcasting adapters, comma-separated (http, redis, redisx, nats)",
       .apply = CFG_SET(broadcast_adapters, Dedup(v.list)), .check = CheckBroadcastAdapters},
      {.name = "http_broadcast_port", .kind = K::kInt, .default_value = "0", .supported = true,
       .help = "HTTP broadcast server port (0 = main port when a broadcast key is set, else 8090)",
       .apply = CFG_SET(http_broadcast_port, AsInt(v)), .min = 0, .max = 65535},
      {.name = "http_broadcast_path", .kind = K::kString, .default_value = "/_broadcast",
       .supported = true, .help = "HTTP broadcast endpoint path",
       .apply = CFG_SET(http_broadcast_path, v.s), .check = CheckPath},
      {.name = "http_broadcast_cors", .kind = K::kBool, .default_value = "false", .hidden = true,
       .help = "Enable CORS for the HTTP broadcast endpoint"},
      {.name = "http_broadcast_secret", .kind = K::kSecret, .default_value = "", .supported = true,
       .hidden = true, .help = "[DEPRECATED] Same as --broadcast_key", .apply =
           [](Builder& b, const Value& v) {
             b.http_broadcast_secret = v.s == "none" ? std::string() : v.s;
           }},
      {.name = "redis_url", .kind = K::kString, .default_value = "redis://localhost:6379",
       .supported = true,
       .help = "Redis URL (redis://, rediss:// for TLS; comma-separated node URLs: Redis Cluster)",
       // An empty value (an env file's "unset") keeps the default.
       .apply = CFG_SET(redis_url, Trim(v.s).empty() ? "redis://localhost:6379" : Trim(v.s)),
       .env_aliases = {"REDIS_URL"}},
      {.name = "redis_channel", .kind = K::kString, .default_value = "__anycable__",
       .supported = true, .help = "Redis channel for broadcasts",
       .apply = CFG_SET(redis_channel, v.s), .check = CheckNotEmpty},
      {.name = "redis_sentinels", .kind = K::kString, .default_value = "", .supported = true,
       .help = "Comma-separated list of Redis sentinels ([:password@]host:port,...)",
       .apply = CFG_SET(redis_sentinels, Trim(v.s))},
      {.name = "redis_sentinel_discovery_interval", .kind = K::kInt, .default_value = "30",
       .hidden = true, .help = "Interval to rediscover sentinels (in seconds)"},
      {.name = "redis_keepalive_interval", .kind = K::kInt, .default_value = "30", .supported = true,
       .hidden = true, .help = "Interval to ping Redis (in seconds)",
       .apply = CFG_SET(redis_keepalive_interval_s, AsInt(v)), .min = 1, .max = 86400},
      {.name = "redis_tls_verify", .kind = K::kBool, .default_value = "false", .supported = true,
       .hidden = true, .help = "Verify the Redis server TLS certificate",
       .apply = CFG_SET(redis_tls_verify, v.b)},
      {.name = "redis_tls_ca_cert_path", .kind = K::kString, .default_value = "", .supported = true,
       .help = "Redis TLS CA certificate path", .apply = CFG_SET(redis_tls_ca_cert_path, v.s)},
      {.name = "redis_tls_client_cert_path", .kind = K::kString, .default_value = "",
       .supported = true, .help = "Redis TLS client certificate path",
       .apply = CFG_SET(redis_tls_client_cert_path, v.s)},
      {.name = "redis_tls_client_key_path", .kind = K::kString, .default_value = "",
       .supported = true, .help = "Redis TLS client key path",
       .apply = CFG_SET(redis_tls_client_key_path, v.s)},
      {.name = "redis_disable_cache", .kind = K::kBool, .default_value = "false", .hidden = true,
       .help = "Disable Redis client-side caching"},
      {.name = "redisx_stream", .kind = K::kString, .default_value = "__anycable__",
       .supported = true, .help = "Redis stream for broadcasts (redisx)",
       .apply = CFG_SET(redisx_stream, v.s), .check = CheckNotEmpty},
      {.name = "redisx_group", .kind = K::kString, .default_value = "bx", .supported = true,
       .hidden = true, .help = "Redis stream consumer group", .apply = CFG_SET(redisx_group, v.s),
       .check = CheckNotEmpty},
      {.name = "redisx_read_block_milliseconds", .kind = K::kInt, .default_value = "2000",
       .supported = true, .hidden = true, .help = "Redis stream read block time (in ms)",
       .apply = CFG_SET(redisx_read_block_ms, AsInt(v)), .min = 1, .max = 600000},
      {.name = "nats_servers", .kind = K::kString, .default_value = "nats://127.0.0.1:4222",
       .supported = true, .help = "Comma-separated list of NATS servers",
       .apply = CFG_SET(nats_servers, v.s), .check = CheckNotEmpty},
      {.name = "nats_channel", .kind = K::kString, .default_value = "__anycable__",
       .supported = true, .help = "NATS subject for broadcasts",
       .apply = CFG_SET(nats_channel, v.s), .check = CheckNotEmpty},
      {.name = "nats_dont_randomize_servers", .kind = K::kBool, .default_value = "false",
       .supported = true, .hidden = true, .help = "Disable NATS servers randomization",
       .apply = CFG_SET(nats_dont_randomize_servers, v.b)},
      {.name = "pubsub", .kind = K::kString, .default_value = "none", .supported = true,
       .help = "Pub/sub adapter for node-to-node broadcasts (none, redis, nats)",
       .apply = CFG_SET(pubsub, Lower(Trim(v.s)) == "none" ? std::string() : Lower(Trim(v.s))),
       .check = CheckPubsub},
      // Not built yet; the setter takes effect once the row is supported (--embed_nats reads
      // it: JetStream for "nats").
      {.name = "broker", .kind = K::kString, .default_value = "",
       .help = "Broker adapter (memory, nats)",
       .apply = CFG_SET(broker, Lower(Trim(v.s)) == "none" ? std::string() : Lower(Trim(v.s))),
       .also_default = {"none"}},
      {.name = "history_limit", .kind = K::kInt, .default_value = "100",
       .help = "Max number of messages in a stream's history"},
      {.name = "history_ttl", .kind = K::kInt, .default_value = "300",
       .help = "TTL of stream history (in seconds)"},
      {.name = "sessions_ttl", .kind = K::kInt, .default_value = "300",
       .help = "TTL of disconnected sessions (in seconds)"},
      {.name = "presence_ttl", .kind = K::kInt, .default_value = "15",
       .help = "TTL of presence records (in seconds)"},
      // Broadcast goroutine pool size: ringcable's fan-out has its own sharding, so any value is
      // accepted and has no effect.
      {.name = "hub_gopool_size", .kind = K::kInt, .default_value = "16", .supported = true,
       .hidden = true, .help = "Accepted for compatibility, no effect"},
      {.name = "embed_nats", .kind = K::kBool, .default_value = "false", .supported = true,
       .help = "Run an embedded NATS server (a supervised nats-server) and use it for NATS",
       .apply = CFG_SET(embed_nats, v.b)},
      {.name = "enats_addr", .kind = K::kString, .default_value = "nats://127.0.0.1:4222",
       .supported = true, .hidden = true, .help = "Embedded NATS bind address",
       .apply = CFG_SET(enats_addr, v.s), .check = CheckNotEmpty},
      {.name = "enats_cluster", .kind = K::kString, .default_value = "", .supported = true,
       .hidden = true, .help = "Embedded NATS cluster bind address",
       .apply = CFG_SET(enats_cluster, v.s)},
      {.name = "enats_cluster_name", .kind = K::kString, .default_value = "anycable-cluster",
       .supported = true, .help = "Embedded NATS cluster name",
       .apply = CFG_SET(enats_cluster_name, v.s), .check = CheckNotEmpty},
      {.name = "enats_cluster_routes", .kind = K::kString, .default_value = "", .supported = true,
       .help = "Embedded NATS cluster routes (comma-separated URLs)",
       .apply = CFG_SET(enats_cluster_routes, v.s)},
      {.name = "enats_gateway", .kind = K::kString, .default_value = "", .supported = true,
       .hidden = true, .help = "Embedded NATS gateway bind address",
       .apply = CFG_SET(enats_gateway, v.s)},
      {.name = "enats_gateways", .kind = K::kString, .default_value = "", .supported = true,
       .help = "Embedded NATS gateways (name_a:url1,url2;name_b:url3)",
       .apply = CFG_SET(enats_gateways, v.s)},
      {.name = "enats_gateway_advertise", .kind = K::kString, .default_value = "",
       .supported = true, .help = "Embedded NATS gateway advertise address",
       .apply = CFG_SET(enats_gateway_advertise, v.s)},
      {.name = "enats_store_dir", .kind = K::kString, .default_value = "", .supported = true,
       .hidden = true, .help = "Embedded NATS JetStream store directory",
       .apply = CFG_SET(enats_store_dir, v.s)},
      {.name = "enats_server_name", .kind = K::kString, .default_value = "", .supported = true,
       .help = "Embedded NATS server name (generated by default)",
       .apply = CFG_SET(enats_server_name, v.s)},
      {.name = "enats_max_payload", .kind = K::kInt, .default_value = "0", .supported = true,
       .help = "Embedded NATS max payload (bytes, 0 = 1MB)",
       .apply = CFG_SET(enats_max_payload, AsInt(v)), .min = 0, .max = 64 * 1024 * 1024},
      {.name = "enats_debug", .kind = K::kBool, .default_value = "false", .supported = true,
       .hidden = true, .help = "Embedded NATS debug logs", .apply = CFG_SET(enats_debug, v.b)},
      {.name = "enats_trace", .kind = K::kBool, .default_value = "false", .supported = true,
       .hidden = true, .help = "Embedded NATS trace logs", .apply = CFG_SET(enats_trace, v.b)},
      // ringcable's own: the embedded server is Debian's nats-server, run as a child process.
      {.name = "enats_server_path", .kind = K::kString, .default_value = "", .supported = true,
       .help = "Path of the nats-server binary for --embed_nats (ringcable only; default: "
               "nats-server from PATH, then /usr/sbin)",
       .apply = CFG_SET(enats_server_path, v.s)},

      // --- 2.5 Ping / WebSocket ---
      {.name = "ping_interval", .kind = K::kInt, .default_value = "3", .supported = true,
       .help = "Action Cable ping interval (in seconds)",
       .apply = CFG_SET(ping_interval_s, AsInt(v)), .min = 0, .max = INT_MAX},
      {.name = "ping_timestamp_precision", .kind = K::kString, .default_value = "s",
       .supported = true, .hidden = true, .help = "Precision of ping timestamps (s, ms, ns)",
       .apply =
           [](Builder& b, const Value& v) {
             b.config.ping_timestamp_precision = v.s == "ms"   ? PingPrecision::kMilliseconds
                                                 : v.s == "ns" ? PingPrecision::kNanoseconds
                                                               : PingPrecision::kSeconds;
           },
       .choices = {"s", "ms", "ns"}},
      {.name = "pong_timeout", .kind = K::kInt, .default_value = "0",
       .help = "Disconnect clients that do not pong in time (in seconds, 0 = disabled)"},
      {.name = "enable_native_pings", .kind = K::kBool, .default_value = "false", .supported = true,
       .help = "Also send WebSocket ping frames", .apply = CFG_SET(enable_native_pings, v.b)},
      {.name = "max_message_size", .kind = K::kInt, .default_value = "65536", .supported = true,
       .hidden = true, .help = "Maximum size of an incoming message (bytes)",
       .apply = CFG_SET(max_message_size, AsInt(v)), .min = 1, .max = INT_MAX},
      {.name = "ws_write_timeout", .kind = K::kInt, .default_value = "2", .supported = true,
       .help = "WebSocket write timeout (in seconds)",
       .apply = CFG_SET(ws_write_timeout_s, AsInt(v)), .min = 0, .max = INT_MAX},
      // ringcable's own (anycable-go has none): drops slowloris clients that never finish the
      // HTTP request or upgrade. Hidden, like other tuning knobs.
      {.name = "handshake_timeout", .kind = K::kInt, .default_value = "10", .supported = true,
       .hidden = true,
       .help = "Seconds an HTTP request or WebSocket upgrade may take (0 = no limit)",
       .apply = CFG_SET(handshake_timeout_s, AsInt(v)), .min = 0, .max = 86400},
      {.name = "tcp_user_timeout", .kind = K::kInt, .default_value = "30", .supported = true,
       .hidden = true,
       .help = "Seconds sent data may stay unacknowledged before the connection is dropped "
               "(half-open peers; 0 = kernel default)",
       .apply = CFG_SET(tcp_user_timeout_s, AsInt(v)), .min = 0, .max = 86400},
      {.name = "ws_max_pending_size", .kind = K::kInt, .default_value = "1048576",
       .supported = true,
       .help = "Max bytes queued for one client before it is disconnected (0 = unlimited)",
       .apply = CFG_SET(ws_max_pending_size, v.i), .min = 0, .max = INT64_MAX},
      {.name = "read_buffer_size", .kind = K::kInt, .default_value = "1024", .supported = true,
       .hidden = true, .help = "Accepted for compatibility, no effect",
       .apply = CFG_SET(read_buffer_size, AsInt(v)), .min = 0, .max = INT_MAX},
      {.name = "write_buffer_size", .kind = K::kInt, .default_value = "1024", .supported = true,
       .hidden = true, .help = "Accepted for compatibility, no effect",
       .apply = CFG_SET(write_buffer_size, AsInt(v)), .min = 0, .max = INT_MAX},
      {.name = "enable_ws_compression", .kind = K::kBool, .default_value = "false", .hidden = true,
       .help = "Enable WebSocket per-message compression"},

      // --- 2.6 Auth / streams ---
      {.name = "jwt_secret", .kind = K::kSecret, .default_value = "", .supported = true,
       .help = "Secret to verify JWT tokens (default: --secret)",
       .apply = CFG_SET(jwt_secret, NoneIsUnset(v.s))},
      {.name = "jwt_param", .kind = K::kString, .default_value = "jid", .supported = true,
       .help = "Query param / header (X-<param>) carrying the JWT token",
       .apply = CFG_SET(jwt_param, v.s)},
      {.name = "enforce_jwt", .kind = K::kBool, .default_value = "false", .supported = true,
       .help = "Require a JWT token for every connection", .apply = CFG_SET(enforce_jwt, v.b)},
      {.name = "jwt_id_key", .kind = K::kSecret, .default_value = "", .supported = true,
       .hidden = true, .help = "[DEPRECATED] Same as --jwt_secret",
       .apply = [](Builder& b, const Value& v) { b.jwt_id_key = NoneIsUnset(v.s); }},
      {.name = "jwt_id_param", .kind = K::kString, .default_value = "", .supported = true,
       .hidden = true, .help = "[DEPRECATED] Same as --jwt_param",
       .apply = [](Builder& b, const Value& v) {
         if (!v.s.empty()) b.config.jwt_param = v.s;
       }},
      {.name = "jwt_id_enforce", .kind = K::kBool, .default_value = "false", .supported = true,
       .hidden = true, .help = "[DEPRECATED] Same as --enforce_jwt",
       .apply = [](Builder& b, const Value& v) {
         if (v.b) b.config.enforce_jwt = true;
       }},
      {.name = "streams_secret", .kind = K::kSecret, .default_value = "", .supported = true,
       .help = "Secret to verify signed streams (default: --secret)",
       .apply = CFG_SET(streams_secret, NoneIsUnset(v.s))},
      {.name = "public_streams", .kind = K::kBool, .default_value = "false", .supported = true,
       .help = "Allow unsigned public streams", .apply = CFG_SET(public_streams, v.b)},
      {.name = "streams_whisper", .kind = K::kBool, .default_value = "false", .supported = true,
       .help = "Enable whispering for signed/public streams",
       .apply = CFG_SET(streams_whisper, v.b)},
      {.name = "streams_presence", .kind = K::kBool, .default_value = "true",
       .help = "Enable presence for signed/public streams"},
      {.name = "turbo_streams", .kind = K::kBool, .default_value = "false", .supported = true,
       .help = "Enable the Turbo Streams fast lane", .apply = CFG_SET(turbo_streams, v.b)},
      {.name = "turbo_streams_secret", .kind = K::kSecret, .default_value = "", .supported = true,
       .help = "Secret to verify Turbo Streams names (default: streams secret)",
       .apply = CFG_SET(turbo_streams_secret, NoneIsUnset(v.s))},
      {.name = "cable_ready", .kind = K::kBool, .default_value = "false", .supported = true,
       .help = "Enable the CableReady fast lane", .apply = CFG_SET(cable_ready, v.b)},
      {.name = "cable_ready_secret", .kind = K::kSecret, .default_value = "", .supported = true,
       .help = "Secret to verify CableReady stream names (default: streams secret)",
       .apply = CFG_SET(cable_ready_secret, NoneIsUnset(v.s))},
      {.name = "turbo_rails_key", .kind = K::kSecret, .default_value = "", .supported = true,
       .hidden = true, .help = "[DEPRECATED] Enable Turbo Streams with this key",
       .apply = [](Builder& b, const Value& v) { b.turbo_rails_key = NoneIsUnset(v.s); }},
      {.name = "cable_ready_key", .kind = K::kSecret, .default_value = "", .supported = true,
       .hidden = true, .help = "[DEPRECATED] Enable CableReady with this key",
       .apply = [](Builder& b, const Value& v) { b.cable_ready_key = NoneIsUnset(v.s); }},
      // Deprecated no-ops in anycable-go.
      {.name = "turbo_rails_cleartext", .kind = K::kBool, .default_value = "false",
       .supported = true, .hidden = true, .help = "[DEPRECATED] No effect"},
      {.name = "cable_ready_cleartext", .kind = K::kBool, .default_value = "false",
       .supported = true, .hidden = true, .help = "[DEPRECATED] No effect"},

      // --- 2.7 Observability ---
      {.name = "metrics_http", .kind = K::kString, .default_value = "", .supported = true,
       .help = "Serve Prometheus metrics at this path, e.g. /metrics (empty = off)",
       .apply = CFG_SET(metrics_http, v.s), .check = CheckOptionalPath},
      {.name = "metrics_host", .kind = K::kString, .default_value = "", .supported = true,
       .help = "Metrics server host (default: --host)", .apply = CFG_SET(metrics_host, v.s)},
      {.name = "metrics_port", .kind = K::kInt, .default_value = "0", .supported = true,
       .help = "Metrics server port (0 = main port)", .apply = CFG_SET(metrics_port, AsInt(v)),
       .min = 0, .max = 65535},
      {.name = "metrics_tags", .kind = K::kString, .default_value = "", .supported = true,
       .help = "Global metrics tags (k:v,k2:v2)", .apply = CFG_SET(metrics_tags, v.s)},
      {.name = "metrics_log", .kind = K::kBool, .default_value = "false", .supported = true,
       .help = "Log metrics periodically", .apply = CFG_SET(metrics_log, v.b)},
      {.name = "metrics_rotate_interval", .kind = K::kInt, .default_value = "15",
       .supported = true, .help = "Metrics flush interval (in seconds)",
       .apply = CFG_SET(metrics_rotate_interval_s, AsInt(v)), .min = 1, .max = INT_MAX},
      {.name = "metrics_log_interval", .kind = K::kInt, .default_value = "-1", .hidden = true,
       .help = "[DEPRECATED] Metrics log interval", .also_default = {"0"}},
      {.name = "metrics_log_filter", .kind = K::kString, .default_value = "",
       .help = "Metrics to log (comma-separated)"},
      {.name = "metrics_log_formatter", .kind = K::kString, .default_value = "", .hidden = true,
       .help = "Custom metrics log formatter"},
      {.name = "stats_refresh_interval", .kind = K::kInt, .default_value = "5",
       .help = "Stats refresh interval (in seconds)"},
      {.name = "statsd_host", .kind = K::kString, .default_value = "",
       .help = "StatsD server (host:port)"},
      {.name = "statsd_prefix", .kind = K::kString, .default_value = "anycable_go.",
       .help = "StatsD metrics prefix"},
      {.name = "statsd_tags_format", .kind = K::kString, .default_value = "datadog",
       .help = "StatsD tags format (datadog, influxdb, graphite)"},
      {.name = "statsd_max_packet_size", .kind = K::kInt, .default_value = "1400", .hidden = true,
       .help = "StatsD max UDP packet size"},

      // --- 2.8 Transports / APIs ---
      {.name = "sse", .kind = K::kBool, .default_value = "false",
       .help = "Enable the Server-Sent Events endpoint"},
      {.name = "sse_path", .kind = K::kString, .default_value = "/events",
       .help = "Server-Sent Events endpoint path"},
      {.name = "api_port", .kind = K::kInt, .default_value = "0", .help = "REST API port"},
      {.name = "api_path", .kind = K::kString, .default_value = "/api",
       .help = "REST API path prefix"},
      {.name = "api_secret", .kind = K::kSecret, .default_value = "",
       .help = "REST API secret (default: derived from --secret)"},
      {.name = "ds", .kind = K::kBool, .default_value = "false", .help = "Enable Durable Streams"},
      {.name = "ds_path", .kind = K::kString, .default_value = "/ds",
       .help = "Durable Streams path prefix"},
      {.name = "ds_skip_auth", .kind = K::kBool, .default_value = "false",
       .help = "Durable Streams without authentication"},
      {.name = "ds_poll_interval", .kind = K::kInt, .default_value = "10",
       .help = "Durable Streams long-poll interval (in seconds)"},
      {.name = "ds_sse_ttl", .kind = K::kInt, .default_value = "60",
       .help = "Durable Streams SSE TTL (in seconds)"},
      {.name = "pusher_app_id", .kind = K::kString, .default_value = "",
       .help = "Pusher application id"},
      {.name = "pusher_app_key", .kind = K::kString, .default_value = "",
       .help = "Pusher application key"},
      {.name = "pusher_secret", .kind = K::kSecret, .default_value = "", .help = "Pusher secret"},
      {.name = "pusher_api_port", .kind = K::kInt, .default_value = "0",
       .help = "Pusher REST API port"},
  };
  // clang-format on
  return kTable;
}

#undef CFG_SET

std::string Normalize(std::string_view name) {
  std::string out(name);
  for (char& c : out) {
    if (c == '-') c = '_';
  }
  return out;
}

const FlagSpec* FindFlag(std::string_view name) {
  const std::string wanted = Normalize(name);
  for (const auto& spec : Table()) {
    if (Normalize(spec.name) == wanted) return &spec;
  }
  return nullptr;
}

std::vector<std::string> EnvNames(const FlagSpec& spec) {
  std::string primary = "ANYCABLE_";
  for (char c : Normalize(spec.name)) {
    primary += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  std::vector<std::string> names{std::move(primary)};
  for (auto alias : spec.env_aliases) names.emplace_back(alias);
  return names;
}

// Parses, validates and applies one occurrence of a flag.
std::optional<std::string> ApplyOne(Builder& builder, const FlagSpec& spec, std::string_view origin,
                                    std::string_view raw) {
  auto parsed = ParseValue(spec, origin, raw);
  if (!parsed.ok()) return parsed.error();
  const Value& v = parsed.value();
  if (!spec.supported) {
    if (IsDefaultEquivalent(spec, v)) return std::nullopt;
    return "flag --" + std::string(spec.name) + " is not supported by ringcable yet";
  }
  if (spec.kind == FlagKind::kInt && (v.i < spec.min || v.i > spec.max)) {
    return InvalidValue(origin, raw, RangeReason(spec.min, spec.max));
  }
  if (!spec.choices.empty()) {
    bool ok = false;
    for (auto c : spec.choices) ok = ok || c == v.s;
    if (!ok) return InvalidValue(origin, raw, "must be one of " + JoinChoices(spec.choices));
  }
  if (spec.check != nullptr) {
    if (auto err = spec.check(origin, v)) return err;
  }
  if (spec.apply != nullptr) spec.apply(builder, v);
  return std::nullopt;
}

std::string HelpText() {
  std::string out(kVersionText);
  out +=
      "\n\nUSAGE\n  ringcable [options]\n\n"
      "Options take --name=value, --name value or -name value; '_' and '-' are interchangeable.\n"
      "Each option can also be set with ANYCABLE_<NAME> (upper-case, '-' as '_').\n"
      "Precedence: default < environment < command line.\n\nOPTIONS\n";
  auto line = [&out](std::string left, std::string_view right) {
    out += "  ";
    out += left;
    out.append(left.size() < 38 ? 38 - left.size() : 1, ' ');
    out += right;
    out += '\n';
  };
  for (const auto& spec : Table()) {
    if (!spec.supported || spec.hidden) continue;
    std::string left = "--" + std::string(spec.name);
    if (spec.kind != FlagKind::kBool) left += " value";
    std::string right(spec.help);
    if (!spec.default_value.empty()) right += " (default: " + std::string(spec.default_value) + ")";
    right += " [$";
    const auto envs = EnvNames(spec);
    for (size_t i = 0; i < envs.size(); ++i) {
      if (i) right += ", $";
      right += envs[i];
    }
    right += "]";
    line(std::move(left), right);
  }
  line("--help, -h", "Show this help");
  line("--version, -v", "Show the version");
  return out;
}

struct CliItem {
  const FlagSpec* spec;
  std::string raw;
};

// The TOML file as (flag, raw value, origin) in file order. A key is a flag name at the top level;
// inside [section] it means "<section>_<key>" if that flag exists, else "<key>" ([logging] also
// tries "log_<key>"). Arrays become comma lists; strings, integers and booleans their text.
struct FileItem {
  const FlagSpec* spec;
  std::string raw;
  std::string origin;
};

cable::Result<std::vector<FileItem>, std::string> ReadTomlFile(const std::string& path) {
  auto parsed = toml::parse_file(path);
  if (!parsed) {
    const auto& err = parsed.error();
    return cable::MakeError("config file " + path + ": " + std::string(err.description()) +
                            " (line " + std::to_string(err.source().begin.line) + ", column " +
                            std::to_string(err.source().begin.column) + ")");
  }
  std::vector<FileItem> out;
  std::optional<std::string> error;
  auto scalar = [](const toml::node& n) -> std::optional<std::string> {
    if (auto v = n.value<std::string>()) return *v;
    if (n.is_integer()) return std::to_string(*n.value<int64_t>());
    if (n.is_boolean()) return std::string(*n.value<bool>() ? "true" : "false");
    return std::nullopt;
  };
  auto add = [&](const std::string& key, const std::vector<std::string>& names,
                 const toml::node& n) {
    if (error) return;
    const std::string origin = "key \"" + key + "\" in config file " + path;
    const FlagSpec* spec = nullptr;
    for (const auto& name : names) {
      if ((spec = FindFlag(name))) break;
    }
    if (!spec) {
      error = "unknown key \"" + key + "\" in config file " + path;
      return;
    }
    std::string raw;
    if (auto v = scalar(n)) {
      raw = *v;
    } else if (const toml::array* arr = n.as_array()) {
      for (const auto& el : *arr) {
        auto v = scalar(el);
        if (!v) {
          error = "invalid value for " + origin + ": array items must be strings or integers";
          return;
        }
        if (!raw.empty()) raw += ',';
        raw += *v;
      }
    } else {
      error = "invalid value for " + origin + ": expected a string, integer, boolean or array";
      return;
    }
    out.push_back({spec, std::move(raw), origin});
  };
  for (const auto& [k, node] : parsed.table()) {
    const std::string key(k.str());
    if (const toml::table* section = node.as_table()) {
      for (const auto& [k2, node2] : *section) {
        const std::string sub(k2.str());
        std::vector<std::string> names{key + "_" + sub, sub};
        if (key == "logging") names.insert(names.begin() + 1, "log_" + sub);
        if (node2.is_table()) {
          error = "unknown key \"" + key + "." + sub + "\" in config file " + path;
          break;
        }
        add(key + "." + sub, names, node2);
      }
    } else {
      add(key, {key}, node);
    }
    if (error) return cable::MakeError(*error);
  }
  return out;
}

}  // namespace

cable::Result<Parsed, std::string> Parse(const std::vector<std::string>& args,
                                         const std::map<std::string, std::string>& env) {
  // Pass 1: syntax and flag names, so --help works even with bad values elsewhere.
  std::vector<CliItem> items;
  bool help = false;
  bool version = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      if (i + 1 < args.size()) {
        return cable::MakeError("unexpected argument: \"" + args[i + 1] + "\"");
      }
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      return cable::MakeError("unexpected argument: \"" + arg + "\"");
    }
    std::string_view body(arg);
    body.remove_prefix(arg[1] == '-' ? 2 : 1);
    if (body.empty() || body[0] == '-' || body[0] == '=') {
      return cable::MakeError("bad flag syntax: " + arg);
    }
    const size_t eq = body.find('=');
    const std::string_view name = body.substr(0, eq);
    const bool has_value = eq != std::string_view::npos;
    const std::string_view inline_value =
        has_value ? body.substr(eq + 1) : std::string_view("true");

    const std::string norm = Normalize(name);
    if (norm == "h" || norm == "help" || norm == "v" || norm == "version") {
      auto b = ParseBool(inline_value);
      if (!b) {
        return cable::MakeError(
            InvalidValue("flag --" + std::string(name), inline_value, "not a boolean"));
      }
      bool& target = (norm == "h" || norm == "help") ? help : version;
      target = target || *b;
      continue;
    }
    const FlagSpec* spec = FindFlag(name);
    if (spec == nullptr) return cable::MakeError("unknown flag: --" + std::string(name));
    if (spec->kind == FlagKind::kBool || has_value) {
      items.push_back({spec, std::string(inline_value)});
    } else if (i + 1 < args.size()) {
      items.push_back({spec, args[++i]});
    } else {
      return cable::MakeError("flag needs an argument: --" + std::string(name));
    }
  }
  if (help) return Parsed{Action::kHelp, Config{}, HelpText()};
  if (version) return Parsed{Action::kVersion, Config{}, std::string(kVersionText)};

  Builder builder;
  // Pass 1.5: the TOML file, lowest precedence after the defaults.
  std::string config_path;
  bool ignore_config = false;
  bool print_config = false;
  for (const auto& item : items) {
    auto b = ParseBool(item.raw);
    if (item.spec->name == "config-path") config_path = item.raw;
    if (item.spec->name == "ignore-config-path" && b) ignore_config = *b;
    if (item.spec->name == "print-config" && b) print_config = *b;
  }
  if (!ignore_config) {
    if (config_path.empty()) {
      for (const char* candidate : {"./anycable.toml", "/etc/anycable/anycable.toml"}) {
        if (access(candidate, F_OK) == 0) {
          config_path = candidate;
          break;
        }
      }
    } else if (access(config_path.c_str(), R_OK) != 0) {
      return cable::MakeError("cannot read config file " + config_path + ": " + strerror(errno));
    }
  }
  if (!ignore_config && !config_path.empty()) {
    auto file = ReadTomlFile(config_path);
    if (!file.ok()) return cable::MakeError(file.error());
    for (const auto& item : file.value()) {
      if (auto err = ApplyOne(builder, *item.spec, item.origin, item.raw)) {
        return cable::MakeError(*err);
      }
    }
  }
  // Pass 2: environment. The first env name present wins (ANYCABLE_PORT before PORT); as in
  // urfave/cli, an empty value leaves an int or bool flag at its default.
  for (const auto& spec : Table()) {
    for (const auto& env_name : EnvNames(spec)) {
      auto it = env.find(env_name);
      if (it == env.end()) continue;
      const bool scalar = spec.kind == FlagKind::kBool || spec.kind == FlagKind::kInt;
      if (!(scalar && it->second.empty())) {
        if (auto err = ApplyOne(builder, spec, "env " + env_name, it->second)) {
          return cable::MakeError(*err);
        }
      }
      break;
    }
  }
  // Pass 3: command line, in order (the last occurrence wins).
  for (const auto& item : items) {
    if (auto err =
            ApplyOne(builder, *item.spec, "flag --" + std::string(item.spec->name), item.raw)) {
      return cable::MakeError(*err);
    }
  }

  Config& c = builder.config;
  if (c.rpc_concurrency <= 0) c.rpc_concurrency = kDefaultRpcConcurrency;
  if (c.debug) {
    c.log_level = "debug";
    c.log_format = "text";
  }
  if (builder.disable_disconnect) c.disconnect_mode = DisconnectMode::kNever;
  if (builder.broadcast_key_none) {
    c.broadcast_key.clear();
  } else if (!builder.broadcast_key.empty()) {
    c.broadcast_key = builder.broadcast_key;
  } else if (!builder.http_broadcast_secret.empty()) {
    c.broadcast_key = builder.http_broadcast_secret;
  } else if (!c.secret.empty()) {
    c.broadcast_key = HexHmacSha256(c.secret, "broadcast-cable");
  }
  // Auth / streams: --secret is used directly (not derived) for JWT and signed streams.
  if (c.jwt_secret.empty()) c.jwt_secret = builder.jwt_id_key;
  if (c.jwt_secret.empty()) c.jwt_secret = c.secret;
  if (c.streams_secret.empty()) c.streams_secret = c.secret;
  if (!builder.turbo_rails_key.empty()) {
    c.turbo_streams = true;
    if (c.turbo_streams_secret.empty()) c.turbo_streams_secret = builder.turbo_rails_key;
  }
  if (!builder.cable_ready_key.empty()) {
    c.cable_ready = true;
    if (c.cable_ready_secret.empty()) c.cable_ready_secret = builder.cable_ready_key;
  }
  if (c.turbo_streams_secret.empty()) c.turbo_streams_secret = c.streams_secret;
  if (c.cable_ready_secret.empty()) c.cable_ready_secret = c.streams_secret;
  // As anycable-go: Redis pub/sub comes on by itself with redisx (which needs it to reach every
  // node) or when the user pointed us at a Redis of their own.
  if (c.pubsub.empty()) {
    bool redisx = std::find(c.broadcast_adapters.begin(), c.broadcast_adapters.end(), "redisx") !=
                  c.broadcast_adapters.end();
    if (redisx || c.redis_url != "redis://localhost:6379") c.pubsub = "redis";
  }
  // As anycable-go: the embedded NATS server is the node's NATS unless servers were given.
  if (c.embed_nats && c.nats_servers == "nats://127.0.0.1:4222") c.nats_servers = c.enats_addr;
  if (builder.public_mode) {
    c.noauth = true;
    c.public_streams = true;
    c.broadcast_key.clear();  // as anycable-go: public mode makes broadcasting public too
  }
  if (print_config) return Parsed{Action::kPrintConfig, c, Describe(c)};
  return Parsed{Action::kRun, std::move(c), std::string()};
}

std::map<std::string, std::string> EnvironFromProcess() {
  std::map<std::string, std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    const size_t eq = entry.find('=');
    if (eq == std::string_view::npos || eq == 0) continue;
    out.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }
  return out;
}

std::string HexHmacSha256(std::string_view key, std::string_view message) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest,
           &len) == nullptr) {
    return std::string();
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 0xf];
  }
  return out;
}

std::string Describe(const Config& c) {
  auto join = [](const std::vector<std::string>& v) {
    std::string out;
    for (size_t i = 0; i < v.size(); ++i) {
      if (i) out += ',';
      out += v[i];
    }
    return out.empty() ? std::string("(none)") : out;
  };
  auto redact = [](const std::string& s) {
    return s.empty() ? std::string("(unset)") : std::string("(set)");
  };
  auto b = [](bool v) { return std::string(v ? "true" : "false"); };
  auto i = [](int64_t v) { return std::to_string(v); };
  const char* mode = c.disconnect_mode == DisconnectMode::kAlways  ? "always"
                     : c.disconnect_mode == DisconnectMode::kNever ? "never"
                                                                   : "auto";
  const char* precision = c.ping_timestamp_precision == PingPrecision::kMilliseconds  ? "ms"
                          : c.ping_timestamp_precision == PingPrecision::kNanoseconds ? "ns"
                                                                                      : "s";
  const std::pair<const char*, std::string> rows[] = {
      {"host", c.host},
      {"port", i(c.port)},
      {"path", join(c.paths)},
      {"health_path", c.health_path},
      {"workers", c.workers == 0 ? std::string("0 (online CPUs)") : i(c.workers)},
      {"allowed_origins", join(c.allowed_origins)},
      {"max_conn", i(c.max_conn)},
      {"secret", redact(c.secret)},
      {"broadcast_key", redact(c.broadcast_key)},
      {"jwt_secret", redact(c.jwt_secret)},
      {"jwt_param", c.jwt_param},
      {"enforce_jwt", b(c.enforce_jwt)},
      {"noauth", b(c.noauth)},
      {"norpc", b(c.norpc)},
      {"streams_secret", redact(c.streams_secret)},
      {"public_streams", b(c.public_streams)},
      {"streams_whisper", b(c.streams_whisper)},
      {"turbo_streams", b(c.turbo_streams)},
      {"turbo_streams_secret", redact(c.turbo_streams_secret)},
      {"cable_ready", b(c.cable_ready)},
      {"cable_ready_secret", redact(c.cable_ready_secret)},
      {"shutdown_timeout", i(c.shutdown_timeout_s) + "s"},
      {"shutdown_delay", i(c.shutdown_delay_s) + "s"},
      {"log_level", c.log_level},
      {"log_format", c.log_format},
      {"debug", b(c.debug)},
      {"rpc_host", c.rpc_host},
      {"rpc_concurrency", i(c.rpc_concurrency)},
      {"rpc_request_timeout", i(c.rpc_request_timeout_ms) + "ms"},
      {"rpc_command_timeout", i(c.rpc_command_timeout_ms) + "ms"},
      {"headers", join(c.headers)},
      {"proxy_cookies", c.proxy_cookies.empty() ? std::string("(all)") : join(c.proxy_cookies)},
      {"rpc_enable_tls", b(c.rpc_enable_tls)},
      {"rpc_tls_verify", b(c.rpc_tls_verify)},
      {"rpc_tls_root_ca", c.rpc_tls_root_ca.empty() ? std::string("(system)") : "(set)"},
      {"rpc_max_call_recv_size", i(c.rpc_max_call_recv_size)},
      {"rpc_max_call_send_size", i(c.rpc_max_call_send_size)},
      {"disconnect_mode", mode},
      {"disconnect_rate", i(c.disconnect_rate) + "/s"},
      {"disconnect_backlog_size", i(c.disconnect_backlog_size)},
      {"broadcast_adapter", join(c.broadcast_adapters)},
      {"http_broadcast_port",
       c.http_broadcast_port == 0 ? std::string("0 (auto)") : i(c.http_broadcast_port)},
      {"http_broadcast_path", c.http_broadcast_path},
      {"pubsub", c.pubsub.empty() ? std::string("none") : c.pubsub},
      {"redis_url", RedactUrl(c.redis_url)},
      {"redis_channel", c.redis_channel},
      {"redis_sentinels", c.redis_sentinels.empty() ? std::string("(none)") : "(set)"},
      {"redisx_stream", c.redisx_stream},
      {"nats_servers", RedactUrl(c.nats_servers)},
      {"nats_channel", c.nats_channel},
      {"ping_interval", i(c.ping_interval_s) + "s"},
      {"ping_timestamp_precision", precision},
      {"enable_native_pings", b(c.enable_native_pings)},
      {"max_message_size", i(c.max_message_size)},
      {"ws_write_timeout", i(c.ws_write_timeout_s) + "s"},
      {"ws_max_pending_size", i(c.ws_max_pending_size)},
      {"read_buffer_size", i(c.read_buffer_size)},
      {"write_buffer_size", i(c.write_buffer_size)},
      {"metrics_http", c.metrics_http.empty() ? std::string("(off)") : c.metrics_http},
      {"metrics_host", c.metrics_host},
      {"metrics_port", i(c.metrics_port)},
      {"metrics_tags", c.metrics_tags},
      {"metrics_log", b(c.metrics_log)},
      {"metrics_rotate_interval", i(c.metrics_rotate_interval_s) + "s"},
  };
  std::string out;
  for (const auto& [name, value] : rows) {
    out.append(name).append(": ").append(value).append("\n");
  }
  return out;
}

std::vector<FlagInfo> FlagTable() {
  std::vector<FlagInfo> out;
  for (const auto& spec : Table()) {
    out.push_back(
        {spec.name, spec.kind, spec.default_value, spec.supported, spec.hidden, EnvNames(spec)});
  }
  return out;
}

}  // namespace cable::config
