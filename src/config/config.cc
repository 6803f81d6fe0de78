#include "config/config.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <random>
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
constexpr int kHttpRpcRequestTimeoutMs = 3000;

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
  std::string http_rpc_secret;
  int http_rpc_timeout_ms = 0;
  std::string rpc_impl;  // --rpc_impl: "" (from --rpc_host's scheme), "grpc" or "http"
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

std::optional<std::string> CheckBroker(std::string_view origin, const Value& v) {
  // A preset's error line already starts with "preset <name>: "; name the flag it set.
  if (origin.rfind("preset ", 0) == 0) origin = "flag --broker";
  std::string p = Lower(Trim(v.s));
  if (p.empty() || p == "none" || p == "memory" || p == "redis" || p == "nats") {
    return std::nullopt;
  }
  return InvalidValue(origin, v.s, "must be one of none, memory, redis, nats");
}

constexpr std::string_view kPresetNames[] = {"none", "fly", "heroku", "broker"};

std::optional<std::string> CheckPresets(std::string_view origin, const Value& v) {
  for (const auto& name : v.list) {
    const std::string lower = Lower(name);
    if (std::find(std::begin(kPresetNames), std::end(kPresetNames), lower) ==
        std::end(kPresetNames)) {
      return InvalidValue(origin, v.s,
                          "unknown preset \"" + name + "\" (supported: none, fly, heroku, broker)");
    }
  }
  return std::nullopt;
}

// "host:port" or "[v6]:port", port 1-65535; what the StatsD sender resolves at startup.
std::optional<std::string> CheckStatsdHost(std::string_view origin, const Value& v) {
  const std::string text = Trim(v.s);
  if (text.empty()) return std::nullopt;
  size_t colon = std::string::npos;
  bool host_ok = false;
  if (text.front() == '[') {
    const size_t close = text.find(']');
    host_ok = close != std::string::npos && close > 1;
    if (host_ok && close + 1 < text.size() && text[close + 1] == ':') colon = close + 1;
  } else {
    colon = text.rfind(':');
    host_ok = colon != std::string::npos && colon > 0 && text.find(':') == colon;
  }
  bool overflow = false;
  const auto port = colon == std::string::npos
                        ? std::nullopt
                        : ParseInt(std::string_view(text).substr(colon + 1), &overflow);
  if (!host_ok || !port || *port < 1 || *port > 65535 || text[colon + 1] == '+' ||
      text[colon + 1] == '-') {
    return InvalidValue(origin, v.s, "expected host:port with a port between 1 and 65535");
  }
  return std::nullopt;
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

std::optional<std::string> CheckRpcImpl(std::string_view origin, const Value& v) {
  const std::string impl = Lower(Trim(v.s));
  if (impl.empty() || impl == "grpc" || impl == "http") return std::nullopt;
  return InvalidValue(origin, v.s, "must be grpc or http");
}

std::optional<std::string> CheckRpcHost(std::string_view origin, const Value& v) {
  for (std::string_view scheme : {"http://", "https://"}) {
    if (!StartsWithNoCase(v.s, scheme)) continue;
    std::string_view rest = std::string_view(v.s).substr(scheme.size());
    if (rest.empty() || rest.front() == '/' || rest.front() == ':') {
      return InvalidValue(origin, v.s, "an http(s):// RPC URL needs a host");
    }
    return std::nullopt;
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
      {.name = "node_id", .kind = K::kString, .default_value = "", .supported = true,
       .hidden = true, .help = "Unique node identifier (default: random, 6 characters)",
       .apply =
           [](Builder& b, const Value& v) {
             b.config.node_id = Trim(v.s);
             b.config.node_id_user_provided = !b.config.node_id.empty();
           }},
      {.name = "ssl_cert", .kind = K::kString, .default_value = "", .supported = true,
       .help = "SSL certificate path", .apply = CFG_SET(ssl_cert, Trim(v.s))},
      {.name = "ssl_key", .kind = K::kString, .default_value = "", .supported = true,
       .help = "SSL private key path", .apply = CFG_SET(ssl_key, Trim(v.s))},
      {.name = "ssl_compact", .kind = K::kBool, .default_value = "true", .supported = true,
       .help = "Move idle TLS 1.3 connections off OpenSSL onto ringcable's own record layer "
               "(ringcable only; false = every connection stays on OpenSSL)",
       .apply = CFG_SET(ssl_compact, v.b)},
      // Read by Parse() itself (pass 1); no setter.
      {.name = "config-path", .kind = K::kString, .default_value = "", .supported = true,
       .help = "Path to a TOML configuration file (default: ./anycable.toml, then "
               "/etc/anycable/anycable.toml)"},
      {.name = "ignore-config-path", .kind = K::kBool, .default_value = "false",
       .supported = true, .help = "Do not read a TOML configuration file"},
      {.name = "print-config", .kind = K::kBool, .default_value = "false", .supported = true,
       .help = "Print the effective configuration and exit"},
      {.name = "presets", .kind = K::kList, .default_value = "", .supported = true,
       .help = "Configuration presets, comma-separated (none, fly, heroku, broker; default: "
               "detected from the platform's environment)",
       .apply = CFG_SET(presets, LowerAll(v.list)), .check = CheckPresets},
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
       .help = "RPC service address (host:port, grpc://, dns:///host:port, grpc-list://h1,h2, "
               "or an http(s):// URL for RPC over HTTP)",
       .apply = CFG_SET(rpc_host, v.s.starts_with("grpc://") ? v.s.substr(7) : v.s),
       .check = CheckRpcHost},
      {.name = "norpc", .kind = K::kBool, .default_value = "false", .supported = true,
       .help = "Disable RPC (standalone mode)", .apply = CFG_SET(norpc, v.b)},
      {.name = "rpc_concurrency", .kind = K::kInt, .default_value = "28", .supported = true,
       .help = "Max number of concurrent RPC requests (<= 0 means 28)",
       .apply = CFG_SET(rpc_concurrency, AsInt(v)), .min = INT_MIN, .max = INT_MAX},
      {.name = "rpc_request_timeout", .kind = K::kInt, .default_value = "0", .supported = true,
       .help = "Timeout of one RPC attempt (in ms; 0 = none for gRPC, 3000 for HTTP)",
       .apply = CFG_SET(rpc_request_timeout_ms, AsInt(v)), .min = 0, .max = INT_MAX},
      {.name = "rpc_command_timeout", .kind = K::kInt, .default_value = "3000", .supported = true,
       .hidden = true, .help = "Timeout of an RPC call with retries (in ms)",
       .apply = CFG_SET(rpc_command_timeout_ms, AsInt(v)), .min = 0, .max = INT_MAX},
      {.name = "headers", .kind = K::kList, .default_value = "cookie", .supported = true,
       .help = "List of headers to proxy to RPC", .apply = CFG_SET(headers, LowerAll(v.list))},
      {.name = "proxy-cookies", .kind = K::kList, .default_value = "", .supported = true,
       .help = "Cookie names to proxy to RPC (default: all)",
       .apply = CFG_SET(proxy_cookies, v.list)},
      {.name = "http_rpc_secret", .kind = K::kSecret, .default_value = "", .supported = true,
       .help = "Authentication secret for RPC over HTTP (default: derived from --secret)",
       .apply = [](Builder& b, const Value& v) { b.http_rpc_secret = NoneIsUnset(v.s); }},
      {.name = "http_rpc_timeout", .kind = K::kInt, .default_value = "0", .supported = true,
       .hidden = true, .help = "[DEPRECATED] HTTP RPC timeout (in ms; use --rpc_request_timeout)",
       .apply = [](Builder& b, const Value& v) { b.http_rpc_timeout_ms = AsInt(v); },
       .min = 0, .max = INT_MAX},
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
      {.name = "rpc_impl", .kind = K::kString, .default_value = "", .supported = true,
       .hidden = true, .help = "RPC implementation (grpc, http; default: from --rpc_host)",
       .apply = [](Builder& b, const Value& v) { b.rpc_impl = Lower(Trim(v.s)); },
       .check = CheckRpcImpl},

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
      // anycable-go's Redis client may cache reads client-side; ringcable's never reads what it
      // could cache (it publishes and subscribes), so either value behaves the same.
      {.name = "redis_disable_cache", .kind = K::kBool, .default_value = "false",
       .supported = true, .hidden = true,
       .help = "Disable Redis client-side caching (accepted; ringcable caches nothing)"},
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
      // memory and redis (nats: one startup error line, CheckBroker).
      {.name = "broker", .kind = K::kString, .default_value = "", .supported = true,
       .help = "Broker adapter (memory, nats)",
       .apply = CFG_SET(broker, Lower(Trim(v.s)) == "none" ? std::string() : Lower(Trim(v.s))),
       .check = CheckBroker},
      {.name = "history_limit", .kind = K::kInt, .default_value = "100", .supported = true,
       .help = "Max number of messages in a stream's history",
       .apply = CFG_SET(history_limit, AsInt(v)), .min = 1, .max = 1000000},
      {.name = "history_ttl", .kind = K::kInt, .default_value = "300", .supported = true,
       .help = "TTL of stream history (in seconds)", .apply = CFG_SET(history_ttl_s, AsInt(v)),
       .min = 1, .max = INT_MAX},
      {.name = "sessions_ttl", .kind = K::kInt, .default_value = "300", .supported = true,
       .help = "TTL of disconnected sessions (in seconds)",
       .apply = CFG_SET(sessions_ttl_s, AsInt(v)), .min = 0, .max = INT_MAX},
      {.name = "presence_ttl", .kind = K::kInt, .default_value = "15", .supported = true,
       .help = "TTL of presence records (in seconds)",
       .apply = CFG_SET(presence_ttl_s, AsInt(v)), .min = 0, .max = INT_MAX},
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
      {.name = "pong_timeout", .kind = K::kInt, .default_value = "0", .supported = true,
       .help = "Disconnect clients that do not pong in time (in seconds, 0 = disabled)",
       .apply = CFG_SET(pong_timeout_s, AsInt(v)), .min = 0, .max = INT_MAX},
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
      {.name = "enable_ws_compression", .kind = K::kBool, .default_value = "false",
       .supported = true, .hidden = true, .help = "Enable WebSocket per-message compression",
       .apply = CFG_SET(enable_ws_compression, v.b)},

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
      {.name = "streams_presence", .kind = K::kBool, .default_value = "true", .supported = true,
       .help = "Enable presence for signed/public streams",
       .apply = CFG_SET(streams_presence, v.b)},
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
      {.name = "metrics_log_filter", .kind = K::kList, .default_value = "", .supported = true,
       .help = "Only these metrics in the metrics log line (comma-separated; default: all)",
       .apply = CFG_SET(metrics_log_filter, v.list)},
      {.name = "metrics_log_formatter", .kind = K::kString, .default_value = "", .hidden = true,
       .help = "Custom metrics log formatter"},
      // anycable-go refreshes sampled gauges this often; ringcable's gauges are read live, so the
      // value is kept (and printed) but changes nothing.
      {.name = "stats_refresh_interval", .kind = K::kInt, .default_value = "5", .supported = true,
       .help = "Stats refresh interval (in seconds; accepted, gauges are always live)",
       .apply = CFG_SET(stats_refresh_interval_s, AsInt(v)), .min = 0, .max = INT_MAX},
      {.name = "statsd_host", .kind = K::kString, .default_value = "", .supported = true,
       .help = "Send metrics to this StatsD server over UDP (host:port; empty = off)",
       .apply = CFG_SET(statsd_host, Trim(v.s)), .check = CheckStatsdHost},
      {.name = "statsd_prefix", .kind = K::kString, .default_value = "anycable_go.",
       .supported = true, .help = "StatsD metrics prefix",
       .apply = CFG_SET(statsd_prefix, v.s)},
      {.name = "statsd_tags_format", .kind = K::kString, .default_value = "datadog",
       .supported = true, .help = "StatsD tags format (datadog, influxdb, graphite)",
       .apply = CFG_SET(statsd_tags_format, v.s), .choices = {"datadog", "influxdb", "graphite"}},
      {.name = "statsd_max_packet_size", .kind = K::kInt, .default_value = "1400",
       .supported = true, .hidden = true, .help = "StatsD maximum UDP packet size (bytes)",
       .apply = CFG_SET(statsd_max_packet_size, AsInt(v)), .min = 64, .max = 65507},

      // --- 2.8 Transports / APIs ---
      {.name = "sse", .kind = K::kBool, .default_value = "false", .supported = true,
       .help = "Enable the Server-Sent Events endpoint", .apply = CFG_SET(sse, v.b)},
      {.name = "sse_path", .kind = K::kString, .default_value = "/events", .supported = true,
       .help = "Server-Sent Events endpoint path", .apply = CFG_SET(sse_path, v.s),
       .check = CheckNotEmpty},
      // Long polling (anycable-go PRO's flags and defaults; open here).
      {.name = "poll", .kind = K::kBool, .default_value = "false", .supported = true,
       .help = "Enable the long polling endpoint", .apply = CFG_SET(poll, v.b)},
      {.name = "poll_path", .kind = K::kString, .default_value = "/lp", .supported = true,
       .help = "Long polling endpoint path", .apply = CFG_SET(poll_path, v.s),
       .check = CheckNotEmpty},
      {.name = "poll_interval", .kind = K::kInt, .default_value = "15", .supported = true,
       .help = "Seconds a poll request waits for messages before 204",
       .apply = CFG_SET(poll_interval_s, AsInt(v)), .min = 1, .max = 3600},
      {.name = "poll_flush_interval", .kind = K::kInt, .default_value = "500", .supported = true,
       .help = "Milliseconds messages are buffered before a waiting poll is answered",
       .apply = CFG_SET(poll_flush_interval_ms, AsInt(v)), .min = 0, .max = 60000},
      {.name = "poll_keepalive_timeout", .kind = K::kInt, .default_value = "5", .supported = true,
       .help = "Seconds a poll session lives without a poll request",
       .apply = CFG_SET(poll_keepalive_timeout_s, AsInt(v)), .min = 1, .max = 3600},
      {.name = "poll_max_request_size", .kind = K::kInt, .default_value = "65536",
       .supported = true, .help = "Maximum poll request body (bytes)",
       .apply = CFG_SET(poll_max_request_size, AsInt(v)), .min = 1, .max = 16777216},
      // REST API: the main port (0), or its own port (shared with a separate broadcast port).
      {.name = "api_port", .kind = K::kInt, .default_value = "0", .supported = true,
       .help = "REST API port (0 = main port)", .apply = CFG_SET(api_port, AsInt(v)), .min = 0,
       .max = 65535},
      {.name = "api_path", .kind = K::kString, .default_value = "/api", .supported = true,
       .help = "REST API path prefix", .apply = CFG_SET(api_path, v.s),
       .check = CheckNotEmpty},
      {.name = "api_secret", .kind = K::kSecret, .default_value = "", .supported = true,
       .help = "REST API secret (default: derived from --secret)",
       .apply = CFG_SET(api_secret, NoneIsUnset(v.s))},
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

std::string JoinList(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += separator;
    out += items[i];
  }
  return out;
}

// The value as Config::flag_values keeps it: one spelling per value.
std::string NormalText(const FlagSpec& spec, const Value& v) {
  switch (spec.kind) {
    case FlagKind::kBool:
      return v.b ? "true" : "false";
    case FlagKind::kInt:
      return std::to_string(v.i);
    case FlagKind::kList:
      return JoinList(v.list, ",");
    case FlagKind::kString:
    case FlagKind::kSecret:
      break;
  }
  return v.s;
}

// Parses, validates and applies one occurrence of a flag.
std::optional<std::string> ApplyOne(Builder& builder, const FlagSpec& spec, std::string_view origin,
                                    std::string_view raw) {
  auto parsed = ParseValue(spec, origin, raw);
  if (!parsed.ok()) return parsed.error();
  const Value& v = parsed.value();
  if (!spec.supported) {
    if (!IsDefaultEquivalent(spec, v)) {
      return "flag --" + std::string(spec.name) + " is not supported by ringcable yet";
    }
    builder.config.flag_values[Normalize(spec.name)] = NormalText(spec, v);
    return std::nullopt;
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
  builder.config.flag_values[Normalize(spec.name)] = NormalText(spec, v);
  if (spec.apply != nullptr) spec.apply(builder, v);
  return std::nullopt;
}

std::string HelpText() {
  std::string out(kVersionText);
  out +=
      "\n\nUSAGE\n  ringcable [options]\n\n"
      "Options take --name=value, --name value or -name value; '_' and '-' are interchangeable.\n"
      "Each option can also be set with ANYCABLE_<NAME> (upper-case, '-' as '_').\n"
      "Precedence: default < config file (anycable.toml) < environment < command line; presets\n"
      "then change settings still at their default. --print-config writes the result as TOML.\n"
      "\nOPTIONS\n";
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

// anycable-go 1.6's anycable.toml keys (the `toml` tags of config.Config and its sections, as its
// ToToml writes them) and the flag each one sets. Keys not listed here fall back to flag names
// (see ReadTomlFile). Read from anycable-go's sources: the top level, [server], [rpc], [broker],
// [streams], [ws], [sse], [redis], [nats], [redis_stream_broadcast], [metrics], [app],
// [embedded_nats]. Following the flag names because those sources were not at hand: [logging],
// [jwt], [metrics.statsd], [http_broadcast], [redis_pubsub_broadcast]/[nats_broadcast] channel,
// [disconnector], [app] enable_native_pings/shutdown_delay, [ws] max_pending_size,
// [streams] presence, and the [pusher], [api], [ds] sections (flag-name fallback).
struct TomlKey {
  std::string_view path;  // "server.host", "metrics.statsd.prefix", "secret"
  std::string_view flag;  // "" = a file-only setting anycable-go has no flag for
  // File-only settings: the one value ringcable accepts (anycable-go's default); "*" = any value
  // (settings that only matter with a feature whose own flag is checked).
  std::string_view only_value = {};
  std::string_view separator = ",";  // how an array becomes the flag's text
};

const std::vector<TomlKey>& TomlKeys() {
  static const std::vector<TomlKey> kKeys = {
      {"public", "public"},
      {"noauth", "noauth"},
      {"node_id", "node_id"},
      {"secret", "secret"},
      {"broadcast_adapters", "broadcast_adapter"},
      {"broadcast_key", "broadcast_key"},
      {"pubsub_adapter", "pubsub"},
      {"presets", "presets"},
      {"server.host", "host"},
      {"server.port", "port"},
      {"server.allowed_origins", "allowed_origins"},
      {"server.max_conn", "max-conn"},
      {"server.health_path", "health-path"},
      {"server.ssl.cert_path", "ssl_cert"},
      {"server.ssl.key_path", "ssl_key"},
      {"logging.level", "log_level"},
      {"logging.format", "log_format"},
      {"logging.debug", "debug"},
      // rpc.implementation is handled in ReadTomlFile ("none" means --norpc).
      {"rpc.host", "rpc_host"},
      {"rpc.proxy_headers", "headers"},
      {"rpc.proxy_cookies", "proxy-cookies"},
      {"rpc.concurrency", "rpc_concurrency"},
      {"rpc.enable_tls", "rpc_enable_tls"},
      {"rpc.tls_verify", "rpc_tls_verify"},
      {"rpc.tls_root_ca_path", "rpc_tls_root_ca"},
      {"rpc.max_recv_size", "rpc_max_call_recv_size"},
      {"rpc.max_send_size", "rpc_max_call_send_size"},
      {"rpc.secret", "http_rpc_secret"},
      {"rpc.request_timeout", "rpc_request_timeout"},
      {"rpc.command_timeout", "rpc_command_timeout"},
      {"rpc.http_request_timeout", "http_rpc_timeout"},
      {"broker.adapter", "broker"},
      {"broker.history_ttl", "history_ttl"},
      {"broker.history_limit", "history_limit"},
      {"broker.sessions_ttl", "sessions_ttl"},
      {"broker.presence_ttl", "presence_ttl"},
      {"jwt.secret", "jwt_secret"},
      {"jwt.param", "jwt_param"},
      {"jwt.force", "enforce_jwt"},
      {"streams.secret", "streams_secret"},
      {"streams.public", "public_streams"},
      {"streams.whisper", "streams_whisper"},
      {"streams.presence", "streams_presence"},
      {"streams.pubsub_channel", "", "$pubsub"},
      {"streams.turbo", "turbo_streams"},
      {"streams.turbo_secret", "turbo_streams_secret"},
      {"streams.cable_ready", "cable_ready"},
      {"streams.cable_ready_secret", "cable_ready_secret"},
      {"ws.paths", "path"},
      {"ws.read_buffer_size", "read_buffer_size"},
      {"ws.write_buffer_size", "write_buffer_size"},
      {"ws.max_message_size", "max_message_size"},
      {"ws.write_timeout", "ws_write_timeout"},
      {"ws.max_pending_size", "ws_max_pending_size"},
      {"ws.enable_compression", "enable_ws_compression"},
      {"sse.enabled", "sse"},
      {"sse.path", "sse_path"},
      {"sse.ping_interval", "", "0"},
      {"poll.enabled", "poll"},
      {"poll.path", "poll_path"},
      {"poll.interval", "poll_interval"},
      {"poll.flush_interval", "poll_flush_interval"},
      {"poll.keepalive_timeout", "poll_keepalive_timeout"},
      {"poll.max_request_size", "poll_max_request_size"},
      {"redis.url", "redis_url"},
      {"redis.sentinels", "redis_sentinels"},
      {"redis.sentinel_discovery_interval", "redis_sentinel_discovery_interval"},
      {"redis.keepalive_ping_interval", "redis_keepalive_interval"},
      {"redis.tls_verify", "redis_tls_verify"},
      {"redis.tls_ca_cert_path", "redis_tls_ca_cert_path"},
      {"redis.tls_client_cert_path", "redis_tls_client_cert_path"},
      {"redis.tls_client_key_path", "redis_tls_client_key_path"},
      {"redis.max_reconnect_attempts", "", "5"},
      {"redis.disable_cache", "redis_disable_cache"},
      {"nats.servers", "nats_servers"},
      {"nats.dont_randomize_servers", "nats_dont_randomize_servers"},
      {"nats.max_reconnect_attempts", "", "5"},
      {"http_broadcast.port", "http_broadcast_port"},
      {"http_broadcast.path", "http_broadcast_path"},
      {"http_broadcast.secret", "http_broadcast_secret"},
      {"http_broadcast.cors", "http_broadcast_cors"},
      {"redis_stream_broadcast.stream", "redisx_stream"},
      {"redis_stream_broadcast.group", "redisx_group"},
      {"redis_stream_broadcast.stream_read_block_milliseconds", "redisx_read_block_milliseconds"},
      {"redis_pubsub_broadcast.channel", "redis_channel"},
      {"nats_broadcast.channel", "nats_channel"},
      {"metrics.http", "metrics_http"},
      {"metrics.http_path", "metrics_http"},  // the tag anycable-go reads (it writes "http")
      {"metrics.host", "metrics_host"},
      {"metrics.port", "metrics_port"},
      {"metrics.log", "metrics_log"},
      {"metrics.rotate_interval", "metrics_rotate_interval"},
      {"metrics.log_filter", "metrics_log_filter"},
      // metrics.tags (a table) is handled in ReadTomlFile.
      {"metrics.statsd.host", "statsd_host"},
      {"metrics.statsd.prefix", "statsd_prefix"},
      {"metrics.statsd.tags_format", "statsd_tags_format"},
      {"metrics.statsd.max_packet_size", "statsd_max_packet_size"},
      {"app.ping_interval", "ping_interval"},
      {"app.ping_timestamp_precision", "ping_timestamp_precision"},
      {"app.pong_timeout", "pong_timeout"},
      {"app.enable_native_pings", "enable_native_pings"},
      {"app.disconnect_mode", "disconnect_mode"},
      {"app.shutdown_timeout", "shutdown_timeout"},
      {"app.shutdown_delay", "shutdown_delay"},
      {"app.stats_refresh_interval", "stats_refresh_interval"},
      {"app.broadcast_gopool_size", "hub_gopool_size"},
      {"app.shutdown_disconnect_gopool_size", "shutdown_pool_size"},
      {"disconnector.rate", "disconnect_rate"},
      {"disconnector.backlog_size", "disconnect_backlog_size"},
      {"disconnector.shutdown_timeout", "disconnect_timeout"},
      {"embedded_nats.enabled", "embed_nats"},
      {"embedded_nats.debug", "enats_debug"},
      {"embedded_nats.trace", "enats_trace"},
      {"embedded_nats.name", "enats_server_name"},
      {"embedded_nats.service_addr", "enats_addr"},
      {"embedded_nats.cluster_addr", "enats_cluster"},
      {"embedded_nats.cluster_name", "enats_cluster_name"},
      {"embedded_nats.gateway_addr", "enats_gateway"},
      {"embedded_nats.gateway_advertise", "enats_gateway_advertise"},
      {"embedded_nats.gateways", "enats_gateways", {}, ";"},
      {"embedded_nats.routes", "enats_cluster_routes"},
      {"embedded_nats.jetstream", "", "false"},
      {"embedded_nats.jetstream_store_dir", "enats_store_dir"},
      {"embedded_nats.jetstream_ready_timeout", "", "*"},
      {"embedded_nats.max_payload", "enats_max_payload"},
      {"ds.enabled", "ds"},
  };
  return kKeys;
}

const TomlKey* FindTomlKey(std::string_view path) {
  for (const auto& key : TomlKeys()) {
    if (key.path == path) return &key;
  }
  return nullptr;
}

// The TOML file as (flag, raw value, origin) in file order (toml++ keeps a table's keys sorted).
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
  const std::string in_file = " in config file " + path;
  auto scalar = [](const toml::node& n) -> std::optional<std::string> {
    if (auto v = n.value<std::string>()) return *v;
    if (n.is_integer()) return std::to_string(*n.value<int64_t>());
    if (n.is_boolean()) return std::string(*n.value<bool>() ? "true" : "false");
    return std::nullopt;
  };
  // A scalar as its text, an array as its items joined by `separator`.
  auto text_of = [&](const std::string& key, const toml::node& n,
                     std::string_view separator) -> std::optional<std::string> {
    if (auto v = scalar(n)) return v;
    if (const toml::array* arr = n.as_array()) {
      std::string raw;
      bool first = true;
      for (const auto& el : *arr) {
        auto v = scalar(el);
        if (!v) {
          error = "invalid value for key \"" + key + "\"" + in_file +
                  ": array items must be strings or integers";
          return std::nullopt;
        }
        if (!first) raw += separator;
        raw += *v;
        first = false;
      }
      return raw;
    }
    error = "invalid value for key \"" + key + "\"" + in_file +
            ": expected a string, integer, boolean or array";
    return std::nullopt;
  };
  auto push = [&](std::string_view flag, std::string raw, const std::string& key) {
    out.push_back({FindFlag(flag), std::move(raw), "key \"" + key + "\"" + in_file});
  };
  auto add = [&](const std::string& key, const toml::node& n) {
    if (key == "rpc.implementation") {
      auto raw = text_of(key, n, ",");
      if (!raw) return;
      if (*raw == "none") {
        push("norpc", "true", key);
      } else {
        push("rpc_impl", *raw, key);
      }
      return;
    }
    const FlagSpec* spec = nullptr;
    std::string_view separator = ",";
    if (const TomlKey* known = FindTomlKey(key)) {
      separator = known->separator;
      if (known->flag.empty()) {
        auto raw = text_of(key, n, separator);
        if (raw && known->only_value != "*" && *raw != known->only_value) {
          error = "key \"" + key + "\"" + in_file + ": value \"" + *raw +
                  "\" is not supported by ringcable yet (only \"" + std::string(known->only_value) +
                  "\")";
        }
        return;
      }
      spec = FindFlag(known->flag);
    } else {
      // Fallback: a flag name at the top level, or in [section] "<section>_<key>" if that flag
      // exists, else "<key>" ([logging] also tries "log_<key>").
      const size_t dot = key.find('.');
      std::vector<std::string> names;
      if (dot == std::string::npos) {
        names = {key};
      } else if (key.find('.', dot + 1) == std::string::npos) {
        const std::string section = key.substr(0, dot);
        const std::string sub = key.substr(dot + 1);
        names = {section + "_" + sub, sub};
        if (section == "logging") names.insert(names.begin() + 1, "log_" + sub);
      }
      for (const auto& name : names) {
        if ((spec = FindFlag(name))) break;
      }
    }
    if (!spec) {
      error = "unknown key \"" + key + "\"" + in_file;
      return;
    }
    if (auto raw = text_of(key, n, separator)) push(spec->name, std::move(*raw), key);
  };
  // Walks nested tables as dotted paths ([metrics.statsd] host → "metrics.statsd.host").
  std::function<void(const toml::table&, const std::string&)> walk =
      [&](const toml::table& table, const std::string& prefix) {
        for (const auto& [k, node] : table) {
          if (error) return;
          const std::string key =
              prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
          if (key == "metrics.tags" && node.is_table()) {
            // [metrics] tags.<name> = "<value>" → --metrics_tags "<name>:<value>,..."
            std::string raw;
            for (const auto& [tag, value] : *node.as_table()) {
              auto v = scalar(value);
              if (!v) {
                error = "invalid value for key \"metrics.tags." + std::string(tag.str()) + "\"" +
                        in_file + ": expected a string";
                return;
              }
              if (!raw.empty()) raw += ',';
              raw += std::string(tag.str()) + ":" + *v;
            }
            push("metrics_tags", raw, key);
          } else if (const toml::table* sub = node.as_table()) {
            walk(*sub, key);
          } else {
            add(key, node);
          }
        }
      };
  walk(parsed.table(), "");
  if (error) return cable::MakeError(*error);
  return out;
}

// --- Presets (spec §2.9, anycable-go config/presets.go) ---
// A preset changes a setting only while it is at its default, through the flag's own setter, so
// a preset that needs a feature ringcable lacks fails with that flag's "not supported yet" error.

// True when no source set `flag`, or set it to a value meaning the same as its default.
bool FlagAtDefault(const Config& c, std::string_view flag) {
  const FlagSpec* spec = FindFlag(flag);
  auto it = c.flag_values.find(Normalize(flag));
  if (spec == nullptr || it == c.flag_values.end()) return true;
  // As anycable-go: only the default itself counts (an explicit --broker=none keeps the broker
  // preset away); an empty string is how env files leave a setting unset.
  const Value v = LiteralValue(*spec, it->second);
  if (SameValue(spec->kind, LiteralValue(*spec, spec->default_value), v)) return true;
  return spec->kind != FlagKind::kBool && spec->kind != FlagKind::kInt && Trim(it->second).empty();
}

// The flag's effective text: what a source set, else its default.
std::string FlagValueText(const Config& c, std::string_view flag) {
  auto it = c.flag_values.find(Normalize(flag));
  if (it != c.flag_values.end()) return it->second;
  const FlagSpec* spec = FindFlag(flag);
  return spec ? std::string(spec->default_value) : std::string();
}

bool AtDefault(const Builder& b, std::string_view flag) { return FlagAtDefault(b.config, flag); }
std::string FlagText(const Builder& b, std::string_view flag) {
  return FlagValueText(b.config, flag);
}

std::optional<std::string> PresetSet(Builder& b, std::string_view preset, std::string_view flag,
                                     const std::string& value) {
  const FlagSpec* spec = FindFlag(flag);
  if (auto err = ApplyOne(b, *spec, "preset " + std::string(preset), value)) {
    return "preset " + std::string(preset) + ": " + *err;
  }
  return std::nullopt;
}

// Embedded NATS addresses and names: inert unless --embed_nats is on (a flag checked on its own),
// so a preset records them even before ringcable has an embedded NATS.
std::optional<std::string> PresetSetEnats(Builder& b, std::string_view preset,
                                          std::string_view flag, const std::string& value) {
  const FlagSpec* spec = FindFlag(flag);
  if (spec->supported) return PresetSet(b, preset, flag, value);
  b.config.flag_values[Normalize(flag)] = value;
  b.config.inert_preset_flags[Normalize(flag)] = std::string(preset);
  return std::nullopt;
}

bool Has(const std::map<std::string, std::string>& env, const char* name) {
  return env.find(name) != env.end();
}

std::vector<std::string> DetectPresets(const std::map<std::string, std::string>& env) {
  std::vector<std::string> out;
  if (Has(env, "FLY_APP_NAME") && Has(env, "FLY_ALLOC_ID") && Has(env, "FLY_REGION")) {
    out.push_back("fly");
  }
  if (Has(env, "HEROKU_APP_ID") && Has(env, "HEROKU_DYNO_ID")) out.push_back("heroku");
  return out;
}

std::string RandomChars(size_t n);
std::string StableChars(std::string_view seed, size_t n);

std::optional<std::string> LoadFlyPreset(Builder& b,
                                         const std::map<std::string, std::string>& env) {
  constexpr std::string_view kName = "fly";
  auto env_or = [&env](const char* name) {
    auto it = env.find(name);
    return it == env.end() ? std::optional<std::string>() : std::optional<std::string>(it->second);
  };
  if (AtDefault(b, "host")) {
    if (auto err = PresetSet(b, kName, "host", "0.0.0.0")) return err;
  }
  const auto region = env_or("FLY_REGION");
  if (!region) return std::string("preset fly: FLY_REGION env is missing");
  const auto app = env_or("FLY_APP_NAME");
  if (!app) return std::string("preset fly: FLY_APP_NAME env is missing");
  // HTTP broadcasts on the main port: Fly exposes one port per service.
  if (AtDefault(b, "http_broadcast_port")) {
    if (auto err = PresetSet(b, kName, "http_broadcast_port", std::to_string(b.config.port))) {
      return err;
    }
  }
  const std::string internal = *region + "." + *app + ".internal";
  const std::pair<const char*, std::string> enats[] = {
      {"enats_addr", "nats://0.0.0.0:4222"},
      {"enats_cluster", "nats://0.0.0.0:5222"},
      {"enats_cluster_name", *app + "-" + *region + "-cluster"},
      {"enats_cluster_routes", "nats://" + internal + ":5222"},
      {"enats_gateway_advertise", internal + ":7222"},
      {"enats_server_name", "fly-" + *region + "-" + env_or("FLY_ALLOC_ID").value_or("") + "-" +
                                StableChars(env_or("FLY_ALLOC_ID").value_or(""), 3)},
  };
  for (const auto& [flag, value] : enats) {
    if (!AtDefault(b, flag)) continue;
    if (auto err = PresetSetEnats(b, kName, flag, value)) return err;
  }
  // Pub/sub: the user's Redis if there is one, else an embedded NATS cluster.
  if (AtDefault(b, "pubsub") && b.config.pubsub.empty()) {
    if (!AtDefault(b, "redis_url")) {
      if (auto err = PresetSet(b, kName, "pubsub", "redis")) return err;
    } else {
      if (auto err = PresetSet(b, kName, "pubsub", "nats")) return err;
      if (FlagText(b, "embed_nats") != "true" || AtDefault(b, "nats_servers")) {
        if (auto err = PresetSet(b, kName, "embed_nats", "true")) return err;
        if (auto err = PresetSet(b, kName, "nats_servers", FlagText(b, "enats_addr"))) return err;
      }
    }
  }
  if (AtDefault(b, "broker") && FlagText(b, "embed_nats") == "true") {
    if (auto err = PresetSet(b, kName, "broker", "nats")) return err;
  }
  if (auto rpc_app = env_or("ANYCABLE_FLY_RPC_APP_NAME"); rpc_app && AtDefault(b, "rpc_host")) {
    const std::string host = "dns:///" + *region + "." + *rpc_app + ".internal:50051";
    if (auto err = PresetSet(b, kName, "rpc_host", host)) return err;
  }
  return std::nullopt;
}

std::optional<std::string> LoadHerokuPreset(Builder& b,
                                            const std::map<std::string, std::string>& env) {
  constexpr std::string_view kName = "heroku";
  if (AtDefault(b, "host")) {
    if (auto err = PresetSet(b, kName, "host", "0.0.0.0")) return err;
  }
  // Heroku routes only $PORT to the dyno: broadcasts must arrive there too.
  auto port = env.find("PORT");
  if (AtDefault(b, "http_broadcast_port") && port != env.end() && !port->second.empty()) {
    if (auto err = PresetSet(b, kName, "http_broadcast_port", port->second)) return err;
  }
  return std::nullopt;
}

std::optional<std::string> LoadBrokerPreset(Builder& b) {
  constexpr std::string_view kName = "broker";
  const bool redis = !AtDefault(b, "redis_url");
  const bool enats = FlagText(b, "embed_nats") == "true";
  if (AtDefault(b, "broker")) {
    if (auto err = PresetSet(b, kName, "broker", enats ? "nats" : "memory")) return err;
  }
  if (AtDefault(b, "broadcast_adapter")) {
    const char* adapters = enats ? "http,nats" : redis ? "http,redisx,redis" : "http";
    if (auto err = PresetSet(b, kName, "broadcast_adapter", adapters)) return err;
  }
  if (AtDefault(b, "pubsub") && (enats || redis)) {
    if (auto err = PresetSet(b, kName, "pubsub", enats ? "nats" : "redis")) return err;
  }
  return std::nullopt;
}

std::optional<std::string> LoadPresets(Builder& b, const std::map<std::string, std::string>& env) {
  Config& c = b.config;
  const std::vector<std::string> presets = c.presets.empty() ? DetectPresets(env) : c.presets;
  for (const auto& preset : presets) {
    std::optional<std::string> err;
    if (preset == "fly") {
      err = LoadFlyPreset(b, env);
    } else if (preset == "heroku") {
      err = LoadHerokuPreset(b, env);
    } else if (preset == "broker") {
      err = LoadBrokerPreset(b);
    } else {
      continue;  // "none": no preset, and no detection either
    }
    if (err) return err;
    c.applied_presets.push_back(preset);
  }
  return std::nullopt;
}

constexpr std::string_view kNanoidAlphabet =
    "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

std::string RandomChars(size_t n) {
  unsigned char bytes[32];
  std::string out;
  // 64 symbols: the low 6 bits of a random byte pick one without bias.
  if (n > sizeof(bytes) || RAND_bytes(bytes, static_cast<int>(n)) != 1) {
    std::random_device rd;
    for (size_t i = 0; i < n; ++i) out += kNanoidAlphabet[rd() & 63];
    return out;
  }
  for (size_t i = 0; i < n; ++i) out += kNanoidAlphabet[bytes[i] & 63];
  return out;
}

// anycable-go adds 3 random characters to the eNATS server name; ringcable derives them from the
// seed (the Fly allocation id) so that --print-config output reads back unchanged.
std::string StableChars(std::string_view seed, size_t n) {
  const std::string digest = HexHmacSha256(seed, "enats-server-name");
  std::string out;
  for (size_t i = 0; i < n && 2 * i + 1 < digest.size(); ++i) {
    out += kNanoidAlphabet[std::stoi(digest.substr(2 * i, 2), nullptr, 16) & 63];
  }
  return out;
}

}  // namespace

std::string RandomNodeId() { return RandomChars(6); }

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
  // Pass 4: presets, on whatever is still at its default.
  if (auto err = LoadPresets(builder, env)) return cable::MakeError(*err);

  Config& c = builder.config;
  if (c.node_id.empty()) c.node_id = RandomNodeId();
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
    c.broadcast_key_derived = true;
  }
  // RPC over HTTP: its own secret or one derived from --secret, and a 3 s attempt timeout unless
  // one is given (anycable-go cannot run HTTP requests without one).
  if (!builder.http_rpc_secret.empty()) {
    c.http_rpc_secret = builder.http_rpc_secret;
  } else if (!c.secret.empty()) {
    c.http_rpc_secret = HexHmacSha256(c.secret, "rpc-cable");
  }
  // --rpc_impl only confirms what --rpc_host's scheme already says (the transport follows the
  // URL); a contradiction is a startup error rather than a guess.
  const bool http_rpc_host =
      StartsWithNoCase(c.rpc_host, "http://") || StartsWithNoCase(c.rpc_host, "https://");
  if (!c.norpc && builder.rpc_impl == "http" && !http_rpc_host) {
    return cable::MakeError("--rpc_impl=http needs an http(s):// --rpc_host (got \"" + c.rpc_host +
                            "\")");
  }
  if (!c.norpc && builder.rpc_impl == "grpc" && http_rpc_host) {
    return cable::MakeError("--rpc_impl=grpc cannot call an http(s):// --rpc_host (got \"" +
                            c.rpc_host + "\")");
  }
  if (http_rpc_host && c.rpc_request_timeout_ms == 0) {
    c.rpc_request_timeout_ms =
        builder.http_rpc_timeout_ms > 0 ? builder.http_rpc_timeout_ms : kHttpRpcRequestTimeoutMs;
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
  // node), with the Redis broker (stamped publications reach every node through it) or when the
  // user pointed us at a Redis of their own.
  if (c.pubsub.empty()) {
    bool redisx = std::find(c.broadcast_adapters.begin(), c.broadcast_adapters.end(), "redisx") !=
                  c.broadcast_adapters.end();
    if (redisx || c.broker == "redis" || c.redis_url != "redis://localhost:6379") {
      c.pubsub = "redis";
    } else if (c.broker == "nats") {
      // Stamped publications reach every node through NATS (as anycable-go's broker preset).
      c.pubsub = "nats";
    }
  }
  // As anycable-go: the embedded NATS server is the node's NATS unless servers were given.
  if (c.embed_nats && c.nats_servers == "nats://127.0.0.1:4222") c.nats_servers = c.enats_addr;
  if (builder.public_mode) {
    c.public_mode = true;
    c.noauth = true;
    c.public_streams = true;
    c.broadcast_key.clear();  // as anycable-go: public mode makes broadcasting public too
    c.broadcast_key_derived = false;
  }
  // REST API (anycable-go): enabled in public mode or with any of secret, api_secret, api_port;
  // the bearer token is --api_secret or HMAC(secret, "api-cable"); none in public mode.
  c.api_enabled = c.public_mode || !c.secret.empty() || !c.api_secret.empty() || c.api_port != 0;
  if (c.api_secret.empty() && !c.secret.empty()) {
    c.api_secret = HexHmacSha256(c.secret, "api-cable");
    c.api_secret_derived = true;
  }
  if (c.api_enabled && c.api_port != 0 && c.api_port != c.port && !c.metrics_http.empty() &&
      c.api_port == c.metrics_port) {
    return cable::MakeError(
        "invalid value \"" + std::to_string(c.api_port) +
        "\" for flag --api_port: the REST API cannot share the metrics server's "
        "port (--metrics_port) in ringcable yet");
  }
  if (print_config) return Parsed{Action::kPrintConfig, c, ToToml(c)};
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
      {"http_rpc_secret", redact(c.http_rpc_secret)},
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
      {"enable_ws_compression", b(c.enable_ws_compression)},
      {"ssl_cert", c.ssl_cert.empty() ? std::string("(none)") : c.ssl_cert},
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

namespace {

// TOML basic string: quotes, backslashes and control characters escaped.
std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (ch == '\n') {
      out += "\\n";
    } else if (ch == '\t') {
      out += "\\t";
    } else if (ch == '\r') {
      out += "\\r";
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", u);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string QuoteList(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += Quote(items[i]);
  }
  return out + "]";
}

std::vector<std::string> SplitOn(std::string_view s, char separator) {
  std::vector<std::string> out;
  while (!s.empty()) {
    const size_t at = s.find(separator);
    std::string item = Trim(s.substr(0, at));
    if (!item.empty()) out.push_back(std::move(item));
    if (at == std::string_view::npos) break;
    s.remove_prefix(at + 1);
  }
  return out;
}

bool BareKey(std::string_view key) {
  return !key.empty() && std::all_of(key.begin(), key.end(), [](unsigned char ch) {
    return std::isalnum(ch) || ch == '_' || ch == '-';
  });
}

// Builds the file: a setting at its default is written as a comment (so the file keeps
// following ringcable's defaults), anything else as `key = value`.
class TomlWriter {
 public:
  explicit TomlWriter(const Config& c) : c_(c) {}
  void Section(std::string_view comment, std::string_view name) {
    if (!comment.empty()) out_.append("# ").append(comment).append("\n");
    out_.append("[").append(name).append("]\n");
  }
  void End() { out_ += "\n"; }
  void Comment(std::string_view text) { out_.append("# ").append(text).append("\n"); }
  // `value` is TOML text; `example` is what the comment shows when at the default.
  void Put(std::string_view help, std::string_view key, const std::string& value, bool at_default,
           const std::string& example) {
    if (!help.empty()) Comment(help);
    if (at_default) {
      out_.append("# ").append(key).append(" = ").append(example).append("\n");
    } else {
      out_.append(key).append(" = ").append(value).append("\n");
    }
  }
  void Put(std::string_view help, std::string_view key, const std::string& value, bool at_default) {
    Put(help, key, value, at_default, value);
  }
  void Always(std::string_view help, std::string_view key, const std::string& value) {
    Put(help, key, value, false);
  }
  // A flag ringcable keeps no typed field for: its text from Config::flag_values.
  void Flag(std::string_view help, std::string_view key, std::string_view flag,
            char list_separator = ',') {
    const FlagSpec* spec = FindFlag(flag);
    const std::string text = FlagValueText(c_, flag);
    if (auto by = c_.inert_preset_flags.find(Normalize(flag)); by != c_.inert_preset_flags.end()) {
      // Recorded by a preset for a feature that is off: the preset sets it again on read-back.
      if (!help.empty()) Comment(help);
      Comment(std::string(key) + " = " + Quote(text) + " (set by the " + by->second + " preset)");
      return;
    }
    std::string value;
    switch (spec->kind) {
      case FlagKind::kBool:
      case FlagKind::kInt:
        value = text;
        break;
      case FlagKind::kList:
        value = QuoteList(SplitOn(text, list_separator));
        break;
      case FlagKind::kString:
      case FlagKind::kSecret:
        value = Quote(text);
        break;
    }
    std::string example = value;
    if (spec->kind == FlagKind::kBool) example = text == "true" ? "false" : "true";
    Put(help, key, value, FlagAtDefault(c_, flag), example);
  }
  void FlagList(std::string_view help, std::string_view key, std::string_view flag, char sep) {
    const std::string text = FlagValueText(c_, flag);
    if (auto by = c_.inert_preset_flags.find(Normalize(flag)); by != c_.inert_preset_flags.end()) {
      if (!help.empty()) Comment(help);
      Comment(std::string(key) + " = " + QuoteList(SplitOn(text, sep)) + " (set by the " +
              by->second + " preset)");
      return;
    }
    Put(help, key, QuoteList(SplitOn(text, sep)), FlagAtDefault(c_, flag));
  }
  std::string Take() { return std::move(out_); }

 private:
  const Config& c_;
  std::string out_;
};

std::string B(bool v) { return v ? "true" : "false"; }
std::string I(int64_t v) { return std::to_string(v); }

const char* ModeName(DisconnectMode m) {
  return m == DisconnectMode::kAlways ? "always" : m == DisconnectMode::kNever ? "never" : "auto";
}

const char* PrecisionName(PingPrecision p) {
  return p == PingPrecision::kMilliseconds ? "ms" : p == PingPrecision::kNanoseconds ? "ns" : "s";
}

// "k:v,k2:v2" as TOML dotted keys (tags.k = "v"), sorted by name so the file reads back into the
// same text; nullopt when the text is not a clean list of unique key:value pairs.
std::optional<std::vector<std::pair<std::string, std::string>>> TagPairs(const std::string& raw) {
  std::map<std::string, std::string> sorted;
  for (const auto& item : SplitOn(raw, ',')) {
    const size_t colon = item.find(':');
    if (colon == std::string::npos) return std::nullopt;
    std::string key = Trim(std::string_view(item).substr(0, colon));
    if (!BareKey(key) ||
        !sorted.emplace(key, Trim(std::string_view(item).substr(colon + 1))).second) {
      return std::nullopt;
    }
  }
  return std::vector<std::pair<std::string, std::string>>(sorted.begin(), sorted.end());
}

}  // namespace

std::string ToToml(const Config& c) {
  static const Config kDefault;
  TomlWriter w(c);
  w.Comment("AnyCable server configuration (written by ringcable --print-config).");
  w.Comment("Save it as anycable.toml (or pass --config-path); keys follow anycable-go 1.6.");
  w.Comment("Commented lines show a default or an example; secrets are written as they are.");
  w.End();
  w.Comment("General settings");
  w.End();
  w.Put(
      "Public mode disables connection authentication, pub/sub streams and broadcasts "
      "verification",
      "public", "true", !c.public_mode, "false");
  w.Put("Disable connection authentication only", "noauth", "true", !c.noauth, "false");
  w.Put("Application instance ID", "node_id", Quote(c.node_id), !c.node_id_user_provided,
        "\"<auto-generated at each server start>\"");
  w.Always("The application secret key", "secret", Quote(c.secret.empty() ? "none" : c.secret));
  w.Always("Broadcasting adapters for app-to-clients messages", "broadcast_adapters",
           QuoteList(c.broadcast_adapters));
  w.Comment("Broadcasting authorization key");
  if (c.broadcast_key_derived) {
    w.Comment("broadcast_key = \"<auto-generated from the application secret>\"");
  } else {
    w.Always("", "broadcast_key", Quote(c.broadcast_key.empty() ? "none" : c.broadcast_key));
  }
  w.Put("Pub/sub adapter for inter-node communication", "pubsub_adapter", Quote(c.pubsub),
        c.pubsub.empty(), "\"redis\" # or \"nats\"");
  w.Put("User-provided configuration presets", "presets", QuoteList(c.presets), c.presets.empty(),
        "[\"broker\"]");
  if (c.presets.empty() && !c.applied_presets.empty()) {
    w.Comment("(detected from the environment: " + JoinList(c.applied_presets, ", ") + ")");
  }
  w.End();

  w.Section("Server configuration", "server");
  w.Always("Host address to bind to", "host", Quote(c.host));
  w.Always("Port to listen on", "port", I(c.port));
  w.Always("Allowed origins (a comma-separated list)", "allowed_origins",
           Quote(JoinList(c.allowed_origins, ",")));
  w.Put("Maximum number of allowed concurrent connections", "max_conn", I(c.max_conn),
        c.max_conn == 0, "1000");
  w.Always("Health check endpoint path", "health_path", Quote(c.health_path));
  w.Comment("SSL configuration");
  w.Flag("", "ssl.cert_path", "ssl_cert");
  w.Flag("", "ssl.key_path", "ssl_key");
  w.End();

  w.Section("Logging configuration", "logging");
  w.Always("Log level (debug, info, warn, error)", "level", Quote(c.log_level));
  w.Always("Log format (text, json)", "format", Quote(c.log_format));
  w.Put("Debug mode (debug level, text format)", "debug", "true", !c.debug, "false");
  w.End();

  w.Section("RPC configuration", "rpc");
  w.Always("RPC implementation (grpc, http, or none)", "implementation",
           Quote(c.norpc ? "none" : FlagValueText(c, "rpc_impl")));
  w.Always("RPC service hostname (including port, e.g., 'anycable-rpc:50051')", "host",
           Quote(c.rpc_host));
  w.Always("Specify HTTP headers that must be proxied to the RPC service", "proxy_headers",
           QuoteList(c.headers));
  w.Put("Specify which cookies must be kept in the proxied Cookie header", "proxy_cookies",
        QuoteList(c.proxy_cookies), c.proxy_cookies.empty(), "[\"_session_id\"]");
  w.Always("RPC concurrency (max number of concurrent RPC requests)", "concurrency",
           I(c.rpc_concurrency));
  w.Put("Enable client-side TLS on RPC connections", "enable_tls", "true", !c.rpc_enable_tls,
        "true");
  w.Put("Enable TLS Verify for RPC connections", "tls_verify", B(c.rpc_tls_verify),
        c.rpc_tls_verify, "true");
  w.Put("CA root TLS certificate path (or PEM contents)", "tls_root_ca_path",
        Quote(c.rpc_tls_root_ca), c.rpc_tls_root_ca.empty(), "\"/path/to/ca.pem\"");
  w.Comment("HTTP RPC specific settings");
  w.Flag("Secret for HTTP RPC authentication", "secret", "http_rpc_secret");
  w.Flag("[DEPRECATED] HTTP RPC timeout (in ms)", "http_request_timeout", "http_rpc_timeout");
  w.Put("Timeout for RPC requests (in ms)", "request_timeout", I(c.rpc_request_timeout_ms),
        c.rpc_request_timeout_ms == kDefault.rpc_request_timeout_ms, "3000");
  w.Put("Total timeout for RPC commands including retries (in ms)", "command_timeout",
        I(c.rpc_command_timeout_ms), c.rpc_command_timeout_ms == kDefault.rpc_command_timeout_ms);
  w.Comment("GRPC fine-tuning");
  w.Always("Max allowed incoming message size (bytes)", "max_recv_size",
           I(c.rpc_max_call_recv_size));
  w.Always("Max allowed outgoing message size (bytes)", "max_send_size",
           I(c.rpc_max_call_send_size));
  w.End();

  w.Section("Broker configuration", "broker");
  w.Flag("Broker backend adapter (memory, redis, nats)", "adapter", "broker");
  w.Flag("For how long to keep streams history (seconds)", "history_ttl", "history_ttl");
  w.Flag("Max number of messages to keep in a stream history", "history_limit", "history_limit");
  w.Flag("For how long to store sessions state for resumeability (seconds)", "sessions_ttl",
         "sessions_ttl");
  w.Flag("For how long to keep presence information after session disconnect (seconds)",
         "presence_ttl", "presence_ttl");
  w.End();

  w.Section("JWT configuration", "jwt");
  w.Put("Secret key used to verify JWT tokens", "secret", Quote(c.jwt_secret), c.jwt_secret.empty(),
        "\"\"");
  w.Always("Query parameter (or X-<param> header) carrying the token", "param", Quote(c.jwt_param));
  w.Put("Require a token for every connection", "force", "true", !c.enforce_jwt, "true");
  w.End();

  w.Section("Pub/sub (signed) streams configuration", "streams");
  w.Put("Secret key used to sign and verify pub/sub streams", "secret", Quote(c.streams_secret),
        c.streams_secret.empty(), "\"\"");
  w.Put("Enable public (unsigned) streams", "public", "true", !c.public_streams, "true");
  w.Put("Enable whispering support for pub/sub streams", "whisper", "true", !c.streams_whisper,
        "true");
  w.Flag("Enable presence for pub/sub streams", "presence", "streams_presence");
  w.Always("Name of the channel used for pub/sub", "pubsub_channel", Quote("$pubsub"));
  w.Put("Enable Turbo Streams support", "turbo", "true", !c.turbo_streams, "true");
  w.Put("Custom secret key used to verify Turbo Streams", "turbo_secret",
        Quote(c.turbo_streams_secret), c.turbo_streams_secret.empty(), "\"\"");
  w.Put("Enable CableReady support", "cable_ready", "true", !c.cable_ready, "true");
  w.Put("Custom secret key used to verify CableReady streams", "cable_ready_secret",
        Quote(c.cable_ready_secret), c.cable_ready_secret.empty(), "\"\"");
  w.End();

  w.Section("WebSockets configuration", "ws");
  w.Always("WebSocket endpoint paths", "paths", QuoteList(c.paths));
  w.Always("Read buffer size (accepted, no effect)", "read_buffer_size", I(c.read_buffer_size));
  w.Always("Write buffer size (accepted, no effect)", "write_buffer_size", I(c.write_buffer_size));
  w.Always("Maximum message size", "max_message_size", I(c.max_message_size));
  w.Always("Write timeout (seconds)", "write_timeout", I(c.ws_write_timeout_s));
  w.Always("Max bytes queued for one client before it is disconnected (0 = unlimited)",
           "max_pending_size", I(c.ws_max_pending_size));
  w.Flag("Enable compression (per-message deflate)", "enable_compression", "enable_ws_compression");
  w.End();

  w.Section("SSE configuration", "sse");
  w.Flag("Enable Server-sent events support", "enabled", "sse");
  w.Flag("Server-sent events endpoint path", "path", "sse_path");
  w.Comment("Keepalive interval for comment-based pings in raw mode (seconds)");
  w.Comment("ping_interval = 15");
  w.End();

  w.Section("Long polling configuration", "poll");
  w.Flag("Enable long polling", "enabled", "poll");
  w.Flag("Long polling endpoint path", "path", "poll_path");
  w.Flag("Seconds a poll waits for messages", "interval", "poll_interval");
  w.Flag("Milliseconds messages are buffered before a poll is answered", "flush_interval",
         "poll_flush_interval");
  w.Flag("Seconds a poll session lives between polls", "keepalive_timeout",
         "poll_keepalive_timeout");
  w.Flag("Maximum poll request body (bytes)", "max_request_size", "poll_max_request_size");
  w.End();

  w.Section("Redis configuration", "redis");
  w.Always("Redis instance URL or master name in case of sentinels usage", "url",
           Quote(c.redis_url));
  w.Always("Sentinel addresses (comma-separated list)", "sentinels", Quote(c.redis_sentinels));
  w.Flag("Sentinel discovery interval (seconds)", "sentinel_discovery_interval",
         "redis_sentinel_discovery_interval");
  w.Always("Keepalive ping interval (seconds)", "keepalive_ping_interval",
           I(c.redis_keepalive_interval_s));
  w.Put("Enable TLS Verify", "tls_verify", "true", !c.redis_tls_verify, "true");
  w.Put("Path to CA certificate file to verify Redis server", "tls_ca_cert_path",
        Quote(c.redis_tls_ca_cert_path), c.redis_tls_ca_cert_path.empty(), "\"/path/to/ca.pem\"");
  w.Put("Path to client TLS certificate file for mutual TLS", "tls_client_cert_path",
        Quote(c.redis_tls_client_cert_path), c.redis_tls_client_cert_path.empty(),
        "\"/path/to/cert.pem\"");
  w.Put("Path to client TLS private key file for mutual TLS", "tls_client_key_path",
        Quote(c.redis_tls_client_key_path), c.redis_tls_client_key_path.empty(),
        "\"/path/to/key.pem\"");
  w.Always("Max number of reconnect attempts", "max_reconnect_attempts", "5");
  w.Flag("Disable client-side caching", "disable_cache", "redis_disable_cache");
  w.End();

  w.Section("NATS configuration", "nats");
  w.Always("NATS server URLs (comma-separated)", "servers", Quote(c.nats_servers));
  w.Put("Don't randomize servers during connection", "dont_randomize_servers", "true",
        !c.nats_dont_randomize_servers, "true");
  w.Always("Max number of reconnect attempts", "max_reconnect_attempts", "5");
  w.End();

  w.Section("Broadcast adapters configuration", "http_broadcast");
  w.Put("HTTP broadcasting port (default: the main port when a broadcast key is set, else 8090)",
        "port", I(c.http_broadcast_port), c.http_broadcast_port == 0, "8090");
  w.Always("HTTP broadcasting endpoint path", "path", Quote(c.http_broadcast_path));
  w.Flag("Add CORS headers to HTTP broadcast responses", "cors", "http_broadcast_cors");
  w.Section("", "redis_stream_broadcast");
  w.Always("Redis stream name", "stream", Quote(c.redisx_stream));
  w.Always("Redis stream consumer group name", "group", Quote(c.redisx_group));
  w.Always("Redis stream read wait time (milliseconds)", "stream_read_block_milliseconds",
           I(c.redisx_read_block_ms));
  w.Section("", "redis_pubsub_broadcast");
  w.Always("Redis channel for legacy broadcasting", "channel", Quote(c.redis_channel));
  w.Section("", "nats_broadcast");
  w.Always("NATS subject for legacy broadcasting", "channel", Quote(c.nats_channel));
  w.End();

  w.Section("Pub/sub adapters configuration (nothing to set in ringcable)", "redis_pubsub");
  w.Section("", "nats_pubsub");
  w.End();

  w.Section("Metrics configuration", "metrics");
  w.Put("HTTP endpoint (Prometheus)", "http", Quote(c.metrics_http), c.metrics_http.empty(),
        "\"/metrics\"");
  w.Put("Standalone metrics HTTP server host to bind to", "host", Quote(c.metrics_host),
        c.metrics_host.empty(), "\"localhost\"");
  w.Put("Metrics HTTP server port (default: the main server's port)", "port", I(c.metrics_port),
        c.metrics_port == 0, "8082");
  w.Put("Enable metrics logging", "log", "true", !c.metrics_log, "true");
  w.Always("Metrics flush interval for logs and StatsD (seconds)", "rotate_interval",
           I(c.metrics_rotate_interval_s));
  w.Put("Log filter (show only selected metrics)", "log_filter", QuoteList(c.metrics_log_filter),
        c.metrics_log_filter.empty(), "[]");
  w.Comment("Metrics tags");
  if (c.metrics_tags.empty()) {
    w.Comment("tags.key = \"value\"");
  } else if (auto pairs = TagPairs(c.metrics_tags)) {
    for (const auto& [key, value] : *pairs) w.Always("", "tags." + key, Quote(value));
  } else {
    w.Always("", "tags", Quote(c.metrics_tags));  // not key:value pairs; startup rejects it
  }
  w.End();
  w.Section("StatsD (UDP) metrics exporter", "metrics.statsd");
  w.Put("StatsD server (host:port)", "host", Quote(c.statsd_host), c.statsd_host.empty(),
        "\"localhost:8125\"");
  w.Always("Metric names prefix", "prefix", Quote(c.statsd_prefix));
  w.Always("Tags format (datadog, influxdb, graphite)", "tags_format", Quote(c.statsd_tags_format));
  w.Always("Maximum UDP packet size (bytes)", "max_packet_size", I(c.statsd_max_packet_size));
  w.End();

  w.Section("App configuration", "app");
  w.Always("Server-to-client heartbeat interval (seconds)", "ping_interval", I(c.ping_interval_s));
  w.Always("Timestamp format for ping messages (s, ms, or ns)", "ping_timestamp_precision",
           Quote(PrecisionName(c.ping_timestamp_precision)));
  w.Flag("Client-to-server pong timeout (seconds)", "pong_timeout", "pong_timeout");
  w.Put("Also send WebSocket ping frames", "enable_native_pings", "true", !c.enable_native_pings,
        "true");
  w.Always("Define when to invoke Disconnect RPC callback", "disconnect_mode",
           Quote(ModeName(c.disconnect_mode)));
  w.Always("Graceful shutdown period (seconds)", "shutdown_timeout", I(c.shutdown_timeout_s));
  w.Put("Sleep before shutting down (seconds)", "shutdown_delay", I(c.shutdown_delay_s),
        c.shutdown_delay_s == 0, "0");
  w.Always("How often to refresh system-wide metrics (seconds)", "stats_refresh_interval",
           I(c.stats_refresh_interval_s));
  w.Flag("Broadcasting goroutine pool size (accepted, no effect)", "broadcast_gopool_size",
         "hub_gopool_size");
  w.Flag("Disconnect-on-shutdown goroutine pool size (accepted, no effect)",
         "shutdown_disconnect_gopool_size", "shutdown_pool_size");
  w.End();

  w.Section("Disconnector configuration", "disconnector");
  w.Always("Max number of Disconnect calls per second", "rate", I(c.disconnect_rate));
  w.Always("Disconnect queue capacity", "backlog_size", I(c.disconnect_backlog_size));
  w.Flag("[DEPRECATED] No effect", "shutdown_timeout", "disconnect_timeout");
  w.End();

  w.Section("Embedded NATS configuration", "embedded_nats");
  w.Flag("Run an embedded NATS server", "enabled", "embed_nats");
  w.Flag("Verbose logging settings", "debug", "enats_debug");
  w.Flag("", "trace", "enats_trace");
  w.Flag("Service name", "name", "enats_server_name");
  w.Flag("Service address", "service_addr", "enats_addr");
  w.Comment("Cluster configuration");
  w.Flag("", "cluster_addr", "enats_cluster");
  w.Flag("", "cluster_name", "enats_cluster_name");
  w.Flag("", "gateway_addr", "enats_gateway");
  w.Flag("", "gateway_advertise", "enats_gateway_advertise");
  w.FlagList("", "gateways", "enats_gateways", ';');
  w.FlagList("", "routes", "enats_cluster_routes", ',');
  w.Comment("JetStream configuration");
  w.Comment("jetstream = true");
  w.Flag("", "jetstream_store_dir", "enats_store_dir");
  w.Flag("Maximum message payload size (0 = 1 MB)", "max_payload", "enats_max_payload");
  w.End();

  w.Section("Pusher protocol", "pusher");
  w.Flag("Pusher application ID", "app_id", "pusher_app_id");
  w.Flag("Pusher application key", "app_key", "pusher_app_key");
  w.Flag("Pusher secret", "secret", "pusher_secret");
  w.Flag("Pusher REST API port", "api_port", "pusher_api_port");
  w.End();

  w.Section("REST API", "api");
  w.Flag("API server port (0 = disabled)", "port", "api_port");
  w.Flag("API path prefix", "path", "api_path");
  w.Flag("API secret", "secret", "api_secret");
  w.End();

  w.Section("Durable Streams", "ds");
  w.Flag("Enable Durable Streams", "enabled", "ds");
  w.Flag("Path prefix", "path", "ds_path");
  w.Flag("Serve without authentication", "skip_auth", "ds_skip_auth");
  w.Flag("Long-poll interval (seconds)", "poll_interval", "ds_poll_interval");
  w.Flag("SSE TTL (seconds)", "sse_ttl", "ds_sse_ttl");
  w.End();

  w.Section("ringcable's own settings (anycable-go has none of these)", "ringcable");
  w.Put("Worker threads, one io_uring each (0 = number of online CPUs)", "workers", I(c.workers),
        c.workers == 0, "0");
  w.Always("Seconds an HTTP request or WebSocket upgrade may take (0 = no limit)",
           "handshake_timeout", I(c.handshake_timeout_s));
  w.Always("Seconds sent data may stay unacknowledged (0 = kernel default)", "tcp_user_timeout",
           I(c.tcp_user_timeout_s));
  return w.Take();
}

std::vector<std::pair<std::string, std::string>> TomlKeyFlags() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& key : TomlKeys()) out.emplace_back(key.path, key.flag);
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
