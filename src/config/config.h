// Configuration module: turns the command line, ANYCABLE_* environment variables and the TOML
// file into one validated, immutable Config, using anycable-go 1.6 flag names, env names, TOML
// keys and defaults (spec §2, anycable-go cli/options.go, config/config.go). Flags that
// anycable-go has but ringcable does not implement yet are recognised: their default value is
// accepted and ignored, any other value is an error, so a deployment never silently loses a
// feature it asked for. Platform presets (fly, heroku, broker; spec §2.9) run after every source
// and go through the same setters, so a preset that needs a missing feature fails the same way.
// ToToml() prints the effective configuration in anycable-go's anycable.toml layout; reading that
// file back gives the same configuration.
//
// Threading: Parse() is a pure function (no globals touched); call it once from main() before
// any worker starts. EnvironFromProcess() reads `environ` and must not race with setenv().
// Ownership: the returned Config is a plain value; copy it into whatever needs it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace cable::config {

enum class DisconnectMode { kAuto, kAlways, kNever };
enum class PingPrecision { kSeconds, kMilliseconds, kNanoseconds };

struct Config {
  // node identity: --node_id, else a random 6-character id (anycable-go's nanoid alphabet)
  std::string node_id;
  bool node_id_user_provided = false;
  // --presets as given (e.g. {"broker"}, {"none"}); empty = detected from the environment
  std::vector<std::string> presets;
  std::vector<std::string> applied_presets;  // what actually ran, user's or detected

  // server
  std::string host = "localhost";
  int port = 8080;
  std::vector<std::string> paths{"/cable"};
  std::string health_path = "/health";
  int workers = 0;  // 0 = number of online CPUs (ringcable-only flag --workers)
  std::vector<std::string> allowed_origins;  // lower-cased; empty = no Origin check
  int max_conn = 0;                          // 0 = unlimited
  std::string secret;
  // Effective HTTP broadcast key: --broadcast_key, else the deprecated --http_broadcast_secret,
  // else hex HMAC-SHA256(key=secret, msg="broadcast-cable") when secret is set. Empty = no auth
  // (also when --broadcast_key=none, which disables the derivation).
  std::string broadcast_key;
  bool broadcast_key_derived = false;
  // REST API (/api/publish, /api/presence/<stream>/users) on the main port.
  bool api_enabled = false;
  int api_port = 0;  // 0 or the main port (a separate port is refused at startup)
  std::string api_path = "/api";
  std::string api_secret;           // --api_secret, else HMAC(secret, "api-cable"); empty = no auth
  bool api_secret_derived = false;  // broadcast_key is HMAC(secret), not given explicitly
  bool public_mode = false;         // --public (its effects are already folded in below)
  int shutdown_timeout_s = 30;
  int shutdown_delay_s = 0;
  std::string log_level = "info";   // debug|info|warn|error; --debug forces "debug"
  std::string log_format = "text";  // text|json; --debug forces "text" (as anycable-go does)
  bool debug = false;

  // auth / streams (spec §2.6). Secrets are effective values: empty = unset ("none" = unset too).
  std::string jwt_secret;  // --jwt_secret, else --secret
  std::string jwt_param = "jid";
  bool enforce_jwt = false;
  bool noauth = false;  // --noauth or --public
  bool norpc = false;
  std::string streams_secret;   // --streams_secret, else --secret
  bool public_streams = false;  // --public_streams or --public
  bool streams_whisper = false;
  bool streams_presence = true;      // $pubsub subscriptions get istate $p = stream (with a broker)
  bool turbo_streams = false;        // also enabled by the deprecated --turbo_rails_key
  std::string turbo_streams_secret;  // else the streams secret
  bool cable_ready = false;          // also enabled by the deprecated --cable_ready_key
  std::string cable_ready_secret;    // else the streams secret

  // rpc
  // "grpc://" stripped; dns:/// and grpc-list:// kept; an http(s):// URL selects RPC over HTTP.
  std::string rpc_host = "localhost:50051";
  int rpc_concurrency = 28;  // a value <= 0 becomes 28
  // Per attempt; 0 = none. With an http(s):// rpc_host, 0 becomes --http_rpc_timeout if set,
  // else 3000 (anycable-go's HTTP default).
  int rpc_request_timeout_ms = 0;
  int rpc_command_timeout_ms = 3000;           // whole retry loop
  std::vector<std::string> headers{"cookie"};  // lower-cased header names proxied to RPC
  std::vector<std::string> proxy_cookies;      // empty = all cookies
  bool rpc_enable_tls = false;
  bool rpc_tls_verify = true;
  std::string rpc_tls_root_ca;  // file path or PEM text
  int rpc_max_call_recv_size = 0;
  int rpc_max_call_send_size = 0;
  // Effective HTTP RPC secret: --http_rpc_secret, else hex HMAC-SHA256(key=secret,
  // msg="rpc-cable") when secret is set; empty = no Authorization header.
  std::string http_rpc_secret;
  DisconnectMode disconnect_mode = DisconnectMode::kAuto;
  int disconnect_rate = 100;  // Disconnect calls per second, >= 1
  int disconnect_backlog_size = 4096;

  // broadcasting
  std::vector<std::string> broadcast_adapters{"http", "redis"};  // http, redis, redisx, nats
  int http_broadcast_port = 0;  // 0 = main port when a broadcast key is set, else 8090
  std::string http_broadcast_path = "/_broadcast";

  // clusters: Redis / NATS broadcasting and node-to-node pub/sub (spec §2.4)
  std::string pubsub;  // "" (none), "redis" or "nats"; "redis" implied by redisx / a custom URL
  std::string redis_url = "redis://localhost:6379";
  std::string redis_channel = "__anycable__";
  std::string redis_sentinels;  // "[:password@]host:port,..."
  int redis_keepalive_interval_s = 30;
  bool redis_tls_verify = false;
  std::string redis_tls_ca_cert_path;
  std::string redis_tls_client_cert_path;
  std::string redis_tls_client_key_path;
  std::string redisx_stream = "__anycable__";
  std::string redisx_group = "bx";
  int redisx_read_block_ms = 2000;
  std::string nats_servers = "nats://127.0.0.1:4222";
  std::string nats_channel = "__anycable__";
  bool nats_dont_randomize_servers = false;
  // --broker: "" (none) or "memory" (history and session restore, src/hub/broker.h); "redis" and
  // "nats" are refused at startup. The embedded NATS server would turn JetStream on for "nats".
  std::string broker;
  int history_limit = 100;   // messages kept per stream
  int history_ttl_s = 300;   // seconds a history entry is kept
  int presence_ttl_s = 15;   // seconds a disconnected session keeps its presence
  int sessions_ttl_s = 300;  // seconds a disconnected ext session can be restored; 0 = never

  // embedded NATS (--embed_nats): a supervised nats-server child (src/enats). With it,
  // --nats_servers defaults to --enats_addr (as anycable-go).
  bool embed_nats = false;
  std::string enats_addr = "nats://127.0.0.1:4222";
  std::string enats_cluster;  // cluster listen address; empty = no cluster
  std::string enats_cluster_name = "anycable-cluster";
  std::string enats_cluster_routes;  // comma-separated URLs
  std::string enats_gateway;         // gateway listen address; empty = no gateway
  std::string enats_gateways;        // "name:url,url;name2:url"
  std::string enats_gateway_advertise;
  std::string enats_store_dir;  // JetStream store; empty = $TMPDIR/nats-data/<server name>
  std::string enats_server_name;
  int enats_max_payload = 0;  // 0 = nats-server's default (1 MB)
  bool enats_debug = false;
  bool enats_trace = false;
  std::string enats_server_path;  // ringcable-only; empty = nats-server from PATH or /usr/sbin

  // ping / websocket
  int ping_interval_s = 3;
  PingPrecision ping_timestamp_precision = PingPrecision::kSeconds;
  bool enable_native_pings = false;
  int pong_timeout_s = 0;  // ext protocol: seconds a ping may stay unanswered; 0 = disabled
  int max_message_size = 65536;
  int ws_write_timeout_s = 2;
  int handshake_timeout_s = 10;  // ringcable-only: HTTP request/upgrade deadline, 0 = none
  int tcp_user_timeout_s = 30;   // ringcable-only: TCP_USER_TIMEOUT (vanished peers), 0 = kernel's
  int64_t ws_max_pending_size = 1048576;  // 0 = unlimited
  int read_buffer_size = 1024;            // accepted for compatibility, no effect
  int write_buffer_size = 1024;           // accepted for compatibility, no effect
  bool enable_ws_compression = false;     // permessage-deflate (RFC 7692), no context takeover
  // transports beyond WebSocket (spec §2.8): Server-Sent Events and long polling
  bool sse = false;
  std::string sse_path = "/events";
  bool poll = false;
  std::string poll_path = "/lp";
  int poll_interval_s = 15;
  int poll_flush_interval_ms = 500;
  int poll_keepalive_timeout_s = 5;
  int poll_max_request_size = 65536;
  // TLS on the main listener (wss://, https://) when both are set; checked by main at startup.
  std::string ssl_cert;
  std::string ssl_key;
  // --ssl_compact (ringcable only): established TLS 1.3 connections leave OpenSSL for the compact
  // record layer (tls/record.h) once quiet. false keeps every connection on OpenSSL.
  bool ssl_compact = true;

  // observability (spec §2.7)
  std::string metrics_http;  // Prometheus endpoint path; empty = off
  std::string metrics_host;  // empty = --host (only used with a separate --metrics_port)
  int metrics_port = 0;      // 0 = served by the workers on the main port
  std::string metrics_tags;  // raw "k:v,k2:v2"; parsed by metrics::ParseTags
  bool metrics_log = false;
  int metrics_rotate_interval_s = 15;
  std::vector<std::string> metrics_log_filter;  // metric names for the log line; empty = all
  int stats_refresh_interval_s = 5;             // accepted; ringcable's gauges are always live
  std::string statsd_host;                      // "host:port"; empty = StatsD off
  std::string statsd_prefix = "anycable_go.";
  std::string statsd_tags_format = "datadog";  // datadog | influxdb | graphite
  int statsd_max_packet_size = 1400;

  // Normalised text of every flag some source (file, env, CLI, preset) set, by canonical flag
  // name, last writer wins. ToToml() reads settings that have no typed field above from here
  // (features ringcable does not implement yet), so they still round-trip.
  std::map<std::string, std::string> flag_values;
  // Flags a preset recorded for a feature that is off (embedded NATS addresses): flag -> preset.
  // ToToml() writes them as comments; the preset sets them again when the file is read back.
  std::map<std::string, std::string> inert_preset_flags;
};

enum class Action { kRun, kHelp, kVersion, kPrintConfig };  // kPrintConfig: text = ToToml()

struct Parsed {
  Action action = Action::kRun;
  Config config;
  std::string text;  // help or version text when action != kRun
};

// args = argv without the program name; env = the process environment as name -> value.
// Precedence: default < TOML file < env < command line; then presets change settings that are
// still at their default (as anycable-go's do). The file is --config-path, else ./anycable.toml,
// else /etc/anycable/anycable.toml (none with --ignore-config-path). Its keys are anycable-go's
// (`[server] host`, `[metrics.statsd] host`, `[rpc] implementation`, ...); as a fallback a key may
// also be a flag name (top level, or `[section] key` meaning section_key). Every key goes through
// the flag's setter. File errors name the key and the file. Error: one human-readable line, e.g.
// "unknown flag: --foo" or "invalid value \"abc\" for flag --port: not an integer".
cable::Result<Parsed, std::string> Parse(const std::vector<std::string>& args,
                                         const std::map<std::string, std::string>& env);

// Reads `environ` into a map (first '=' splits name and value).
std::map<std::string, std::string> EnvironFromProcess();

// Lowercase hex HMAC-SHA256 (OpenSSL), as anycable-go derives keys from --secret.
std::string HexHmacSha256(std::string_view key, std::string_view message);

// One "name: value" line per setting, secrets redacted; for debug logs.
std::string Describe(const Config& config);

// The configuration as an anycable.toml in anycable-go 1.6's layout (top-level keys, [server],
// [logging], [rpc], [broker], [jwt], [streams], [ws], [sse], [redis], [nats], the broadcast and
// pub/sub sections, [metrics], [metrics.statsd], [app], [disconnector], [embedded_nats], then
// ringcable's own [ringcable]). Secrets are written as their values ("none" when unset); settings
// at their default are written as comments where anycable-go does so. Parse() of this text as a
// config file gives back the same Config (except a random node_id, which stays random).
std::string ToToml(const Config& config);

// A random node id: 6 characters of anycable-go's nanoid alphabet (A-Za-z0-9_-).
std::string RandomNodeId();

// anycable-go's TOML keys ("server.host", ...) and the flag each sets ("" = file-only setting).
std::vector<std::pair<std::string, std::string>> TomlKeyFlags();

// Read-only view of the flag table, for help-like tooling and table-driven tests.
enum class FlagKind { kBool, kInt, kString, kSecret, kList };
struct FlagInfo {
  std::string_view name;  // canonical spelling, e.g. "health-path", "ping_interval"
  FlagKind kind;
  std::string_view default_value;  // anycable-go's default, as text
  bool supported;                  // false: only the default value is accepted
  bool hidden;                     // not listed in --help
  std::vector<std::string> env;    // env names, highest priority first
};
std::vector<FlagInfo> FlagTable();

}  // namespace cable::config
