#include "config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <set>

namespace cable::config {
namespace {

using Env = std::map<std::string, std::string>;
using Args = std::vector<std::string>;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

Config MustParse(const Args& args, const Env& env = {}) {
  auto r = Parse(args, env);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error());
  if (!r.ok()) return Config{};
  EXPECT_EQ(r->action, Action::kRun);
  return r->config;
}

std::string ParseError(const Args& args, const Env& env = {}) {
  auto r = Parse(args, env);
  EXPECT_FALSE(r.ok());
  return r.ok() ? std::string("<no error>") : r.error();
}

TEST(ConfigDefaults, MatchAnycableGo) {
  const Config c = MustParse({});
  EXPECT_EQ(c.host, "localhost");
  EXPECT_EQ(c.port, 8080);
  EXPECT_THAT(c.paths, ElementsAre("/cable"));
  EXPECT_EQ(c.health_path, "/health");
  EXPECT_EQ(c.workers, 0);
  EXPECT_TRUE(c.allowed_origins.empty());
  EXPECT_EQ(c.max_conn, 0);
  EXPECT_EQ(c.secret, "");
  EXPECT_EQ(c.broadcast_key, "");
  EXPECT_EQ(c.shutdown_timeout_s, 30);
  EXPECT_EQ(c.shutdown_delay_s, 0);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.log_format, "text");
  EXPECT_FALSE(c.debug);
  EXPECT_EQ(c.rpc_host, "localhost:50051");
  EXPECT_EQ(c.rpc_concurrency, 28);
  EXPECT_EQ(c.rpc_request_timeout_ms, 0);
  EXPECT_EQ(c.rpc_command_timeout_ms, 3000);
  EXPECT_THAT(c.headers, ElementsAre("cookie"));
  EXPECT_TRUE(c.proxy_cookies.empty());
  EXPECT_FALSE(c.rpc_enable_tls);
  EXPECT_TRUE(c.rpc_tls_verify);
  EXPECT_EQ(c.rpc_tls_root_ca, "");
  EXPECT_EQ(c.rpc_max_call_recv_size, 0);
  EXPECT_EQ(c.rpc_max_call_send_size, 0);
  EXPECT_EQ(c.disconnect_mode, DisconnectMode::kAuto);
  EXPECT_EQ(c.disconnect_rate, 100);
  EXPECT_EQ(c.disconnect_backlog_size, 4096);
  EXPECT_THAT(c.broadcast_adapters, ElementsAre("http", "redis"));  // anycable-go's default list
  EXPECT_EQ(c.pubsub, "");
  EXPECT_EQ(c.redis_url, "redis://localhost:6379");
  EXPECT_EQ(c.redis_channel, "__anycable__");
  EXPECT_EQ(c.redisx_stream, "__anycable__");
  EXPECT_EQ(c.redisx_group, "bx");
  EXPECT_EQ(c.redisx_read_block_ms, 2000);
  EXPECT_EQ(c.nats_servers, "nats://127.0.0.1:4222");
  EXPECT_EQ(c.nats_channel, "__anycable__");
  EXPECT_EQ(c.http_broadcast_port, 0);
  EXPECT_EQ(c.http_broadcast_path, "/_broadcast");
  EXPECT_EQ(c.ping_interval_s, 3);
  EXPECT_EQ(c.ping_timestamp_precision, PingPrecision::kSeconds);
  EXPECT_FALSE(c.enable_native_pings);
  EXPECT_EQ(c.max_message_size, 65536);
  EXPECT_EQ(c.ws_write_timeout_s, 2);
  EXPECT_EQ(c.ws_max_pending_size, 1048576);
  EXPECT_EQ(c.read_buffer_size, 1024);
  EXPECT_EQ(c.write_buffer_size, 1024);
}

TEST(ConfigForms, AllFlagSpellingsSetTheValue) {
  EXPECT_EQ(MustParse({"--port=9001"}).port, 9001);
  EXPECT_EQ(MustParse({"--port", "9002"}).port, 9002);
  EXPECT_EQ(MustParse({"-port", "9003"}).port, 9003);
  EXPECT_EQ(MustParse({"-port=9004"}).port, 9004);
  EXPECT_EQ(MustParse({"--port=+9005"}).port, 9005);
}

TEST(ConfigForms, UnderscoreAndDashAreInterchangeable) {
  EXPECT_EQ(MustParse({"--health-path=/hc"}).health_path, "/hc");
  EXPECT_EQ(MustParse({"--health_path=/hc2"}).health_path, "/hc2");
  EXPECT_EQ(MustParse({"--max-conn=10"}).max_conn, 10);
  EXPECT_EQ(MustParse({"--max_conn=11"}).max_conn, 11);
  EXPECT_EQ(MustParse({"--ping-interval=7"}).ping_interval_s, 7);
  EXPECT_THAT(MustParse({"--proxy_cookies=a"}).proxy_cookies, ElementsAre("a"));
  EXPECT_THAT(MustParse({"--proxy-cookies=b"}).proxy_cookies, ElementsAre("b"));
}

TEST(ConfigForms, LastOccurrenceWins) { EXPECT_EQ(MustParse({"--port=1", "--port", "2"}).port, 2); }

TEST(ConfigForms, StringValueMayStartWithDash) {
  // Like Go's flag package, a non-bool flag takes the next argument whatever it looks like.
  EXPECT_EQ(MustParse({"--host", "-weird"}).host, "-weird");
}

TEST(ConfigEnv, NamesAreDerivedFromFlagNames) {
  const Config c = MustParse({}, {{"ANYCABLE_HEALTH_PATH", "/up"},
                                  {"ANYCABLE_MAX_CONN", "42"},
                                  {"ANYCABLE_PROXY_COOKIES", "session, csrf"},
                                  {"ANYCABLE_HOST", "0.0.0.0"},
                                  {"ANYCABLE_PING_TIMESTAMP_PRECISION", "ms"},
                                  {"ANYCABLE_WORKERS", "4"},
                                  {"ANYCABLE_WS_MAX_PENDING_SIZE", "5000000000"}});
  EXPECT_EQ(c.health_path, "/up");
  EXPECT_EQ(c.max_conn, 42);
  EXPECT_THAT(c.proxy_cookies, ElementsAre("session", "csrf"));
  EXPECT_EQ(c.host, "0.0.0.0");
  EXPECT_EQ(c.ping_timestamp_precision, PingPrecision::kMilliseconds);
  EXPECT_EQ(c.workers, 4);
  EXPECT_EQ(c.ws_max_pending_size, 5000000000LL);
}

TEST(ConfigEnv, CommandLineBeatsEnv) {
  const Env env{{"ANYCABLE_PORT", "7000"}, {"ANYCABLE_HOST", "envhost"}};
  const Config c = MustParse({"--port=7001"}, env);
  EXPECT_EQ(c.port, 7001);
  EXPECT_EQ(c.host, "envhost");
}

TEST(ConfigEnv, PortAlias) {
  EXPECT_EQ(MustParse({}, {{"PORT", "5000"}}).port, 5000);
  EXPECT_EQ(MustParse({}, {{"PORT", "5000"}, {"ANYCABLE_PORT", "6000"}}).port, 6000);
  EXPECT_EQ(MustParse({"--port=7000"}, {{"PORT", "5000"}}).port, 7000);
}

TEST(ConfigEnv, EmptyScalarEnvIsIgnoredLikeUrfaveCli) {
  // The first env name present wins; an empty int/bool leaves the default in place.
  EXPECT_EQ(MustParse({}, {{"ANYCABLE_PORT", ""}}).port, 8080);
  EXPECT_EQ(MustParse({}, {{"ANYCABLE_PORT", ""}, {"PORT", "5000"}}).port, 8080);
  EXPECT_FALSE(MustParse({}, {{"ANYCABLE_DEBUG", ""}}).debug);
  // An empty string flag is a real (empty) value.
  EXPECT_EQ(MustParse({}, {{"ANYCABLE_HOST", ""}}).host, "");
}

TEST(ConfigEnv, UnknownAnycableVariablesAreIgnored) {
  const Config c = MustParse(
      {},
      {{"ANYCABLE_NO_SUCH_THING", "1"}, {"ANYCABLE_DISABLE_TELEMETRY", "true"}, {"HOME", "/root"}});
  EXPECT_EQ(c.port, 8080);
}

TEST(ConfigEnv, InvalidEnvValueNamesTheVariable) {
  EXPECT_EQ(ParseError({}, {{"ANYCABLE_PORT", "abc"}}),
            "invalid value \"abc\" for env ANYCABLE_PORT: not an integer");
  EXPECT_EQ(ParseError({}, {{"PORT", "x1"}}), "invalid value \"x1\" for env PORT: not an integer");
  EXPECT_EQ(ParseError({}, {{"ANYCABLE_DEBUG", "yes"}}),
            "invalid value \"yes\" for env ANYCABLE_DEBUG: not a boolean");
}

TEST(ConfigBool, BareFlagIsTrue) {
  EXPECT_TRUE(MustParse({"--enable_native_pings"}).enable_native_pings);
  EXPECT_TRUE(MustParse({"-enable_native_pings"}).enable_native_pings);
}

TEST(ConfigBool, GoParseBoolSpellings) {
  for (const char* t : {"true", "TRUE", "True", "t", "T", "1"}) {
    EXPECT_TRUE(MustParse({std::string("--rpc_enable_tls=") + t}).rpc_enable_tls) << t;
    EXPECT_TRUE(MustParse({}, {{"ANYCABLE_RPC_ENABLE_TLS", t}}).rpc_enable_tls) << t;
  }
  for (const char* f : {"false", "FALSE", "False", "f", "F", "0"}) {
    EXPECT_FALSE(MustParse({std::string("--rpc_tls_verify=") + f}).rpc_tls_verify) << f;
    EXPECT_FALSE(MustParse({}, {{"ANYCABLE_RPC_TLS_VERIFY", f}}).rpc_tls_verify) << f;
  }
}

TEST(ConfigBool, InvalidBoolean) {
  EXPECT_EQ(ParseError({"--debug=yes"}), "invalid value \"yes\" for flag --debug: not a boolean");
  EXPECT_EQ(ParseError({"--debug="}), "invalid value \"\" for flag --debug: not a boolean");
  EXPECT_EQ(ParseError({"--debug=tRUE"}), "invalid value \"tRUE\" for flag --debug: not a boolean");
}

TEST(ConfigBool, BoolDoesNotConsumeTheNextArgument) {
  EXPECT_EQ(ParseError({"--debug", "false"}), "unexpected argument: \"false\"");
}

TEST(ConfigBool, DebugForcesDebugLevelAndTextFormat) {
  const Config c = MustParse({"--debug", "--log_level=error", "--log_format=json"});
  EXPECT_TRUE(c.debug);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.log_format, "text");
  EXPECT_EQ(MustParse({}, {{"ANYCABLE_DEBUG", "true"}}).log_level, "debug");
}

TEST(ConfigLists, SplitTrimAndDropEmpties) {
  const Config c = MustParse({"--path= /a, /b,,/c/* ,", "--headers=Cookie, X-Api-Key,,",
                              "--allowed_origins=WWW.Example.com:3000, *.example.io",
                              "--broadcast_adapter=http, http"});
  EXPECT_THAT(c.paths, ElementsAre("/a", "/b", "/c/*"));
  EXPECT_THAT(c.headers, ElementsAre("cookie", "x-api-key"));
  EXPECT_THAT(c.allowed_origins, ElementsAre("www.example.com:3000", "*.example.io"));
  EXPECT_THAT(c.broadcast_adapters, ElementsAre("http"));
}

TEST(ConfigLists, EmptyPathKeepsDefaultEmptyHeadersMeansNone) {
  EXPECT_THAT(MustParse({"--path="}).paths, ElementsAre("/cable"));
  EXPECT_TRUE(MustParse({"--headers="}).headers.empty());
  EXPECT_TRUE(MustParse({"--broadcast_adapter="}).broadcast_adapters.empty());
  EXPECT_THAT(MustParse({}, {{"ANYCABLE_PATH", "/x,/y"}}).paths, ElementsAre("/x", "/y"));
}

TEST(ConfigValues, SupportedFlagsReachTheirFields) {
  const Config c = MustParse({"--host=0.0.0.0",
                              "--shutdown_timeout=5",
                              "--shutdown_delay=2",
                              "--rpc_request_timeout=150",
                              "--rpc_command_timeout=900",
                              "--rpc_tls_root_ca=/ca.pem",
                              "--rpc_max_call_recv_size=10",
                              "--rpc_max_call_send_size=20",
                              "--disconnect_mode=always",
                              "--disconnect_rate=5",
                              "--disconnect_backlog_size=0",
                              "--http_broadcast_port=8091",
                              "--http_broadcast_path=/pub",
                              "--ping_interval=0",
                              "--ping_timestamp_precision=ns",
                              "--max_message_size=1",
                              "--ws_write_timeout=9",
                              "--ws_max_pending_size=0",
                              "--read_buffer_size=4096",
                              "--write_buffer_size=8192",
                              "--workers=256",
                              "--log_level=warn",
                              "--log_format=json",
                              "--rpc_concurrency=3"});
  EXPECT_EQ(c.host, "0.0.0.0");
  EXPECT_EQ(c.shutdown_timeout_s, 5);
  EXPECT_EQ(c.shutdown_delay_s, 2);
  EXPECT_EQ(c.rpc_request_timeout_ms, 150);
  EXPECT_EQ(c.rpc_command_timeout_ms, 900);
  EXPECT_EQ(c.rpc_tls_root_ca, "/ca.pem");
  EXPECT_EQ(c.rpc_max_call_recv_size, 10);
  EXPECT_EQ(c.rpc_max_call_send_size, 20);
  EXPECT_EQ(c.disconnect_mode, DisconnectMode::kAlways);
  EXPECT_EQ(c.disconnect_rate, 5);
  EXPECT_EQ(c.disconnect_backlog_size, 0);
  EXPECT_EQ(c.http_broadcast_port, 8091);
  EXPECT_EQ(c.http_broadcast_path, "/pub");
  EXPECT_EQ(c.ping_interval_s, 0);
  EXPECT_EQ(c.ping_timestamp_precision, PingPrecision::kNanoseconds);
  EXPECT_EQ(c.max_message_size, 1);
  EXPECT_EQ(c.ws_write_timeout_s, 9);
  EXPECT_EQ(c.ws_max_pending_size, 0);
  EXPECT_EQ(c.read_buffer_size, 4096);
  EXPECT_EQ(c.write_buffer_size, 8192);
  EXPECT_EQ(c.workers, 256);
  EXPECT_EQ(c.log_level, "warn");
  EXPECT_EQ(c.log_format, "json");
  EXPECT_EQ(c.rpc_concurrency, 3);
  EXPECT_EQ(MustParse({"--disconnect_mode=never"}).disconnect_mode, DisconnectMode::kNever);
  EXPECT_EQ(MustParse({"--ping_timestamp_precision=ms"}).ping_timestamp_precision,
            PingPrecision::kMilliseconds);
}

TEST(ConfigValues, TlsAndCompressionFlags) {
  const Config d = MustParse({});
  EXPECT_EQ(d.ssl_cert, "");
  EXPECT_EQ(d.ssl_key, "");
  EXPECT_FALSE(d.enable_ws_compression);
  const Config c =
      MustParse({"--ssl_cert=/c.pem", "--ssl_key", "/k.pem", "--enable_ws_compression"});
  EXPECT_EQ(c.ssl_cert, "/c.pem");
  EXPECT_EQ(c.ssl_key, "/k.pem");
  EXPECT_TRUE(c.enable_ws_compression);
  const Config e = MustParse({}, {{"ANYCABLE_SSL_CERT", "/e.pem"},
                                  {"ANYCABLE_SSL_KEY", "/f.pem"},
                                  {"ANYCABLE_ENABLE_WS_COMPRESSION", "true"}});
  EXPECT_EQ(e.ssl_cert, "/e.pem");
  EXPECT_EQ(e.ssl_key, "/f.pem");
  EXPECT_TRUE(e.enable_ws_compression);
}

TEST(ConfigValues, RpcConcurrencyNonPositiveMeans28) {
  EXPECT_EQ(MustParse({"--rpc_concurrency=0"}).rpc_concurrency, 28);
  EXPECT_EQ(MustParse({"--rpc_concurrency=-5"}).rpc_concurrency, 28);
}

TEST(ConfigValues, RpcHostSchemes) {
  EXPECT_EQ(MustParse({"--rpc_host=grpc://rpc:50051"}).rpc_host, "rpc:50051");
  EXPECT_EQ(MustParse({"--rpc_host=dns:///rpc:50051"}).rpc_host, "dns:///rpc:50051");
  EXPECT_EQ(MustParse({"--rpc_host=grpc-list://a:1,b:2"}).rpc_host, "grpc-list://a:1,b:2");
  EXPECT_EQ(MustParse({"--rpc_host=127.0.0.1:50052"}).rpc_host, "127.0.0.1:50052");
  EXPECT_EQ(MustParse({"--rpc_host=https://app.example.com/_anycable"}).rpc_host,
            "https://app.example.com/_anycable");
  EXPECT_EQ(MustParse({"--rpc_host=HTTP://127.0.0.1:3000/rpc"}).rpc_host,
            "HTTP://127.0.0.1:3000/rpc");
}

TEST(ConfigValues, RedisDisableCacheIsAcceptedEitherWay) {
  EXPECT_EQ(MustParse({"--redis_disable_cache"}).rpc_host, "localhost:50051");
  EXPECT_EQ(MustParse({}, {{"ANYCABLE_REDIS_DISABLE_CACHE", "false"}}).rpc_host, "localhost:50051");
  EXPECT_EQ(ParseError({"--redis_disable_cache=maybe"}).rfind("invalid value \"maybe\"", 0), 0u);
}

// The transport follows --rpc_host's scheme; --rpc_impl (as anycable-go users set it) must agree.
TEST(ConfigValues, RpcImplConfirmsTheHostsScheme) {
  EXPECT_EQ(MustParse({"--rpc_impl=http", "--rpc_host=http://app/_anycable"}).rpc_host,
            "http://app/_anycable");
  EXPECT_EQ(MustParse({"--rpc_impl=grpc", "--rpc_host=rpc:50051"}).rpc_host, "rpc:50051");
  EXPECT_EQ(MustParse({}, {{"ANYCABLE_RPC_IMPL", "HTTP"},
                           {"ANYCABLE_RPC_HOST", "https://app.example.com/_anycable"}})
                .rpc_request_timeout_ms,
            3000);
  EXPECT_EQ(MustParse({"--rpc_impl=http", "--norpc"}).norpc, true);
  EXPECT_EQ(ParseError({"--rpc_impl=http"}),
            "--rpc_impl=http needs an http(s):// --rpc_host (got \"localhost:50051\")");
  EXPECT_EQ(ParseError({"--rpc_impl=grpc", "--rpc_host=http://app/_anycable"}),
            "--rpc_impl=grpc cannot call an http(s):// --rpc_host (got \"http://app/_anycable\")");
  EXPECT_EQ(ParseError({"--rpc_impl=trpc"}),
            "invalid value \"trpc\" for flag --rpc_impl: must be grpc or http");
}

TEST(ConfigValues, HttpRpcRequestTimeoutDefaultsTo3000) {
  EXPECT_EQ(MustParse({}).rpc_request_timeout_ms, 0);  // gRPC: none
  EXPECT_EQ(MustParse({"--rpc_host=http://app/_anycable"}).rpc_request_timeout_ms, 3000);
  EXPECT_EQ(MustParse({"--rpc_host=http://app/_anycable", "--rpc_request_timeout=250"})
                .rpc_request_timeout_ms,
            250);
  // The deprecated flag applies when --rpc_request_timeout is not given.
  EXPECT_EQ(MustParse({"--rpc_host=http://app/_anycable", "--http_rpc_timeout=700"})
                .rpc_request_timeout_ms,
            700);
  EXPECT_EQ(MustParse({"--rpc_host=http://app/_anycable", "--http_rpc_timeout=700",
                       "--rpc_request_timeout=250"})
                .rpc_request_timeout_ms,
            250);
  EXPECT_EQ(MustParse({"--http_rpc_timeout=700"}).rpc_request_timeout_ms, 0);  // gRPC: no effect
}

TEST(ConfigValues, DeprecatedDisableDisconnect) {
  EXPECT_EQ(MustParse({"--disable_disconnect"}).disconnect_mode, DisconnectMode::kNever);
  EXPECT_EQ(MustParse({"--disable_disconnect", "--disconnect_mode=always"}).disconnect_mode,
            DisconnectMode::kNever);
  EXPECT_EQ(MustParse({"--disable_disconnect=false", "--disconnect_mode=always"}).disconnect_mode,
            DisconnectMode::kAlways);
  EXPECT_EQ(MustParse({}, {{"ANYCABLE_DISABLE_DISCONNECT", "true"}}).disconnect_mode,
            DisconnectMode::kNever);
}

TEST(ConfigValues, NoEffectCompatibilityFlagsAcceptAnyValue) {
  // Deprecated no-ops / goroutine pool sizes in anycable-go: accepted with any value.
  MustParse({"--disconnect_timeout=10", "--hub_gopool_size=64", "--shutdown_pool_size=4",
             "--turbo_rails_cleartext", "--cable_ready_cleartext"});
}

struct ErrorCase {
  Args args;
  std::string error;
};

TEST(ConfigValidation, ExactMessages) {
  const std::vector<ErrorCase> cases = {
      {{"--port=abc"}, "invalid value \"abc\" for flag --port: not an integer"},
      {{"--port="}, "invalid value \"\" for flag --port: not an integer"},
      {{"--port=12x"}, "invalid value \"12x\" for flag --port: not an integer"},
      {{"--port=-"}, "invalid value \"-\" for flag --port: not an integer"},
      {{"--port=0x10"}, "invalid value \"0x10\" for flag --port: not an integer"},
      {{"--port=99999999999999999999"},
       "invalid value \"99999999999999999999\" for flag --port: integer out of range"},
      {{"--port=65536"}, "invalid value \"65536\" for flag --port: must be between 0 and 65535"},
      {{"--port=-1"}, "invalid value \"-1\" for flag --port: must be between 0 and 65535"},
      {{"--http_broadcast_port=70000"},
       "invalid value \"70000\" for flag --http_broadcast_port: must be between 0 and 65535"},
      {{"--workers=257"}, "invalid value \"257\" for flag --workers: must be between 0 and 256"},
      {{"--workers=-1"}, "invalid value \"-1\" for flag --workers: must be between 0 and 256"},
      {{"--max-conn=-1"}, "invalid value \"-1\" for flag --max-conn: must be non-negative"},
      {{"--shutdown_timeout=-1"},
       "invalid value \"-1\" for flag --shutdown_timeout: must be non-negative"},
      {{"--shutdown_delay=-2"},
       "invalid value \"-2\" for flag --shutdown_delay: must be non-negative"},
      {{"--ping_interval=-3"},
       "invalid value \"-3\" for flag --ping_interval: must be non-negative"},
      {{"--rpc_request_timeout=-1"},
       "invalid value \"-1\" for flag --rpc_request_timeout: must be non-negative"},
      {{"--rpc_command_timeout=-1"},
       "invalid value \"-1\" for flag --rpc_command_timeout: must be non-negative"},
      {{"--rpc_max_call_recv_size=-1"},
       "invalid value \"-1\" for flag --rpc_max_call_recv_size: must be non-negative"},
      {{"--rpc_max_call_send_size=-1"},
       "invalid value \"-1\" for flag --rpc_max_call_send_size: must be non-negative"},
      {{"--disconnect_backlog_size=-1"},
       "invalid value \"-1\" for flag --disconnect_backlog_size: must be non-negative"},
      {{"--ws_write_timeout=-1"},
       "invalid value \"-1\" for flag --ws_write_timeout: must be non-negative"},
      {{"--ws_max_pending_size=-1"},
       "invalid value \"-1\" for flag --ws_max_pending_size: must be non-negative"},
      {{"--read_buffer_size=-1"},
       "invalid value \"-1\" for flag --read_buffer_size: must be non-negative"},
      {{"--write_buffer_size=-1"},
       "invalid value \"-1\" for flag --write_buffer_size: must be non-negative"},
      {{"--max_message_size=0"},
       "invalid value \"0\" for flag --max_message_size: must be positive"},
      {{"--max_message_size=2147483648"},
       "invalid value \"2147483648\" for flag --max_message_size: must be positive"},
      {{"--disconnect_rate=0"}, "invalid value \"0\" for flag --disconnect_rate: must be positive"},
      {{"--rpc_concurrency=9999999999"},
       "invalid value \"9999999999\" for flag --rpc_concurrency: out of range"},
      {{"--disconnect_mode=sometimes"},
       "invalid value \"sometimes\" for flag --disconnect_mode: must be one of auto, always, "
       "never"},
      {{"--log_level=verbose"},
       "invalid value \"verbose\" for flag --log_level: must be one of debug, info, warn, error"},
      {{"--log_level=INFO"},
       "invalid value \"INFO\" for flag --log_level: must be one of debug, info, warn, error"},
      {{"--log_format=xml"},
       "invalid value \"xml\" for flag --log_format: must be one of text, json"},
      {{"--ping_timestamp_precision=us"},
       "invalid value \"us\" for flag --ping_timestamp_precision: must be one of s, ms, ns"},
      {{"--broadcast_adapter=http,kafka"},
       "unknown broadcast adapter \"kafka\" (supported: http, redis, redisx, nats)"},
      {{"--pubsub=kafka"},
       "invalid value \"kafka\" for flag --pubsub: must be one of none, redis, nats"},
      {{"--redis_channel="}, "invalid value \"\" for flag --redis_channel: must not be empty"},
      {{"--nats_servers="}, "invalid value \"\" for flag --nats_servers: must not be empty"},
      {{"--path=/cable,ws"},
       "invalid value \"/cable,ws\" for flag --path: path \"ws\" must start with '/'"},
      {{"--health-path=health"},
       "invalid value \"health\" for flag --health-path: must start with '/'"},
      {{"--health_path="}, "invalid value \"\" for flag --health-path: must start with '/'"},
      {{"--http_broadcast_path=pub"},
       "invalid value \"pub\" for flag --http_broadcast_path: must start with '/'"},
      {{"--rpc_host=http://"},
       "invalid value \"http://\" for flag --rpc_host: an http(s):// RPC URL needs a host"},
      {{"--rpc_host=HTTPS:///_anycable"},
       "invalid value \"HTTPS:///_anycable\" for flag --rpc_host: an http(s):// RPC URL needs a "
       "host"},
      {{"--rpc_host="}, "invalid value \"\" for flag --rpc_host: must not be empty"},
      {{"--rpc_host=grpc://"}, "invalid value \"grpc://\" for flag --rpc_host: must not be empty"},
  };
  for (const auto& tc : cases) {
    EXPECT_EQ(ParseError(tc.args), tc.error) << tc.args[0];
  }
}

TEST(ConfigValidation, EnvValuesAreValidatedToo) {
  EXPECT_EQ(ParseError({}, {{"ANYCABLE_BROADCAST_ADAPTER", "http,rabbit"}}),
            "unknown broadcast adapter \"rabbit\" (supported: http, redis, redisx, nats)");
  EXPECT_EQ(ParseError({}, {{"ANYCABLE_RPC_HOST", "https://"}}),
            "invalid value \"https://\" for env ANYCABLE_RPC_HOST: an http(s):// RPC URL needs a "
            "host");
  EXPECT_EQ(ParseError({}, {{"ANYCABLE_LOG_LEVEL", "trace"}}),
            "invalid value \"trace\" for env ANYCABLE_LOG_LEVEL: must be one of debug, info, warn, "
            "error");
  // A bad env value is an error even when the command line overrides it (as in anycable-go).
  EXPECT_EQ(ParseError({"--port=1"}, {{"ANYCABLE_PORT", "nope"}}),
            "invalid value \"nope\" for env ANYCABLE_PORT: not an integer");
}

TEST(ConfigSyntax, Errors) {
  EXPECT_EQ(ParseError({"--foo"}), "unknown flag: --foo");
  EXPECT_EQ(ParseError({"-foo=1"}), "unknown flag: --foo");
  EXPECT_EQ(ParseError({"--rpc_concurrency_max=10"}), "unknown flag: --rpc_concurrency_max");
  EXPECT_EQ(ParseError({"--port"}), "flag needs an argument: --port");
  EXPECT_EQ(ParseError({"--host=a", "-rpc_host"}), "flag needs an argument: --rpc_host");
  EXPECT_EQ(ParseError({"serve"}), "unexpected argument: \"serve\"");
  EXPECT_EQ(ParseError({"-"}), "unexpected argument: \"-\"");
  EXPECT_EQ(ParseError({"--", "extra"}), "unexpected argument: \"extra\"");
  EXPECT_EQ(ParseError({"---port=1"}), "bad flag syntax: ---port=1");
  EXPECT_EQ(ParseError({"--=1"}), "bad flag syntax: --=1");
  EXPECT_EQ(ParseError({"--help=maybe"}), "invalid value \"maybe\" for flag --help: not a boolean");
}

TEST(ConfigSyntax, DoubleDashEndsFlags) { EXPECT_EQ(MustParse({"--port=1", "--"}).port, 1); }

// A value of the right kind that differs from the flag's anycable-go default.
std::string NonDefault(const FlagInfo& f) {
  switch (f.kind) {
    case FlagKind::kBool:
      return f.default_value == "true" ? "false" : "true";
    case FlagKind::kInt:
      return std::to_string(std::stoll(std::string(f.default_value)) + 7);
    default:
      return "something-else";
  }
}

TEST(ConfigUnsupported, EveryUnsupportedFlagAcceptsItsDefaultAndRejectsOthers) {
  int unsupported = 0;
  for (const FlagInfo& f : FlagTable()) {
    if (f.supported) continue;
    ++unsupported;
    const std::string name(f.name);
    const std::string dflt(f.default_value);
    const std::string error = "flag --" + name + " is not supported by ringcable yet";
    // Default value, both spellings on the CLI and via env.
    MustParse({"--" + name + "=" + dflt});
    MustParse({}, {{f.env[0], dflt}});
    // Any other value.
    EXPECT_EQ(ParseError({"--" + name + "=" + NonDefault(f)}), error);
    if (f.kind != FlagKind::kBool) {
      EXPECT_EQ(ParseError({"-" + name, NonDefault(f)}), error);
      MustParse({"--" + name, dflt});
    }
    for (const auto& env_name : f.env) {
      EXPECT_EQ(ParseError({}, {{env_name, NonDefault(f)}}), error) << env_name;
    }
  }
  // A floor, not the count: features land one by one and flip their flags to supported.
  EXPECT_GT(unsupported, 10);
}

TEST(ConfigUnsupported, SpotChecks) {
  MustParse({"--broker=none", "--pubsub=none", "--presets=none", "--pong_timeout=0",
             "--noauth=false", "--public=false", "--sse=false", "--jwt_secret=none",
             "--streams_presence=true", "--redis_url=redis://localhost:6379", "--rpc_impl=grpc",
             "--jwt_id_param=jid", "--metrics_log_interval=0", "--config-path="});
  EXPECT_EQ(ParseError({"--ds"}), "flag --ds is not supported by ringcable yet");
  // The transports of #17.
  EXPECT_TRUE(MustParse({"--sse"}).sse);
  EXPECT_EQ(MustParse({"--sse_path=/sse"}).sse_path, "/sse");
  const auto poll =
      MustParse({"--poll", "--poll_path=/poll", "--poll_interval=7", "--poll_flush_interval=0",
                 "--poll_keepalive_timeout=9", "--poll_max_request_size=1024"});
  EXPECT_TRUE(poll.poll);
  EXPECT_EQ(poll.poll_path, "/poll");
  EXPECT_EQ(poll.poll_interval_s, 7);
  EXPECT_EQ(poll.poll_flush_interval_ms, 0);
  EXPECT_EQ(poll.poll_keepalive_timeout_s, 9);
  EXPECT_EQ(poll.poll_max_request_size, 1024);
  EXPECT_FALSE(MustParse({}).poll);
  EXPECT_EQ(MustParse({}).poll_interval_s, 15);
  EXPECT_EQ(MustParse({"--broker=memory"}).broker, "memory");
  EXPECT_EQ(MustParse({"--broker=redis"}).broker, "redis");
  EXPECT_EQ(MustParse({"--broker=redis"}).pubsub, "redis");  // as anycable-go: implied
  EXPECT_EQ(MustParse({"--broker=redis", "--pubsub=nats"}).pubsub, "nats");
  EXPECT_EQ(MustParse({"--broker=nats"}).broker, "nats");
  EXPECT_EQ(MustParse({"--broker=nats"}).pubsub, "nats");  // stamped publications travel by NATS
  EXPECT_EQ(MustParse({"--broker=nats", "--pubsub=redis"}).pubsub, "redis");
  EXPECT_EQ(ParseError({"--broker=disk"}),
            "invalid value \"disk\" for flag --broker: must be one of none, memory, redis, nats");
  EXPECT_FALSE(MustParse({"--streams_presence=false"}).streams_presence);
  EXPECT_TRUE(MustParse({}).streams_presence);
  EXPECT_EQ(MustParse({}).presence_ttl_s, 15);
  EXPECT_EQ(MustParse({"--presence_ttl=3"}).presence_ttl_s, 3);
  EXPECT_EQ(ParseError({"--presence_ttl=-1"}),
            "invalid value \"-1\" for flag --presence_ttl: must be non-negative");
  EXPECT_EQ(MustParse({"--pong_timeout=5"}).pong_timeout_s, 5);
  EXPECT_EQ(MustParse({"--history_limit=7", "--history_ttl=9", "--sessions_ttl=0"}).history_limit,
            7);
  EXPECT_EQ(ParseError({"--history_limit=0"}),
            "invalid value \"0\" for flag --history_limit: must be between 1 and 1000000");
  {
    // A separate API port enables the API; only the metrics server's port cannot be shared.
    const auto separate = MustParse({"--api_port=8081"});
    EXPECT_TRUE(separate.api_enabled);
    EXPECT_EQ(separate.api_port, 8081);
    EXPECT_EQ(ParseError({"--api_port=8082", "--metrics_http=/metrics", "--metrics_port=8082"}),
              "invalid value \"8082\" for flag --api_port: the REST API cannot share the metrics "
              "server's port (--metrics_port) in ringcable yet");
  }
  {
    // REST API: enabled as anycable-go enables it; the token is given or derived.
    EXPECT_FALSE(MustParse({}).api_enabled);
    const auto api = MustParse({"--api_port=8081", "--port=8081", "--api_path=/rest"});
    EXPECT_TRUE(api.api_enabled);
    EXPECT_EQ(api.api_path, "/rest");
    EXPECT_EQ(api.api_secret, "");
    EXPECT_TRUE(MustParse({"--public"}).api_enabled);
    EXPECT_EQ(MustParse({"--api_secret=abc"}).api_secret, "abc");
    const auto derived = MustParse({"--secret=k3y"});
    EXPECT_TRUE(derived.api_enabled);
    EXPECT_EQ(derived.api_secret,
              "100644c7b6c69cbd656ce0dd45e11f5d06a01dfabe1fc3ba4951626b18b4d59c");
  }
  EXPECT_EQ(ParseError({"--metrics_log_formatter=f.rb"}),
            "flag --metrics_log_formatter is not supported by ringcable yet");
  // TOML config (--config-path, --print-config) is covered end to end in tests/integration/ops.
  EXPECT_EQ(ParseError({"--config_path=/nonexistent/a.toml"}),
            "cannot read config file /nonexistent/a.toml: No such file or directory");
  // Type errors are still reported for unsupported flags.
  EXPECT_EQ(ParseError({"--pong_timeout=soon"}),
            "invalid value \"soon\" for flag --pong_timeout: not an integer");
}

TEST(ConfigClusters, RedisUrlAliasAndAutoPubsub) {
  EXPECT_EQ(MustParse({}, {{"REDIS_URL", "redis://localhost:6379"}}).pubsub, "");
  // A Redis of the user's own turns Redis pub/sub on (anycable-go does the same).
  Config c = MustParse({}, {{"REDIS_URL", "redis://cache:6379/1"}});
  EXPECT_EQ(c.redis_url, "redis://cache:6379/1");
  EXPECT_EQ(c.pubsub, "redis");
  // ANYCABLE_REDIS_URL wins over REDIS_URL.
  c = MustParse({}, {{"REDIS_URL", "redis://cache:6379/1"},
                     {"ANYCABLE_REDIS_URL", "redis://localhost:6379"}});
  EXPECT_EQ(c.redis_url, "redis://localhost:6379");
  EXPECT_EQ(c.pubsub, "");
  // redisx needs pub/sub to reach every node.
  EXPECT_EQ(MustParse({"--broadcast_adapter=http,redisx"}).pubsub, "redis");
  // An explicit choice wins.
  EXPECT_EQ(MustParse({"--broadcast_adapter=redisx", "--pubsub=nats"}).pubsub, "nats");
  EXPECT_EQ(MustParse({"--pubsub=NATS"}).pubsub, "nats");
  EXPECT_EQ(MustParse({"--pubsub=none"}).pubsub, "");
  c = MustParse({"--broadcast_adapter=nats,http", "--nats_servers=nats://a:1,nats://b:2",
                 "--nats_channel=bc", "--redis_channel=rc", "--redisx_stream=xs"});
  EXPECT_THAT(c.broadcast_adapters, ElementsAre("nats", "http"));
  EXPECT_EQ(c.nats_servers, "nats://a:1,nats://b:2");
  EXPECT_EQ(c.nats_channel, "bc");
  EXPECT_EQ(c.redis_channel, "rc");
  EXPECT_EQ(c.redisx_stream, "xs");
}

TEST(ConfigClusters, EmbeddedNats) {
  Config c = MustParse({});
  EXPECT_FALSE(c.embed_nats);
  EXPECT_EQ(c.enats_addr, "nats://127.0.0.1:4222");
  EXPECT_EQ(c.enats_cluster_name, "anycable-cluster");
  EXPECT_EQ(c.enats_max_payload, 0);
  EXPECT_EQ(c.enats_server_path, "");
  // The embedded server is the node's NATS unless servers were given (as anycable-go).
  c = MustParse({"--embed_nats", "--enats_addr=nats://127.0.0.1:4333"});
  EXPECT_TRUE(c.embed_nats);
  EXPECT_EQ(c.nats_servers, "nats://127.0.0.1:4333");
  EXPECT_EQ(MustParse({"--embed_nats", "--nats_servers=nats://n:1"}).nats_servers, "nats://n:1");
  EXPECT_EQ(MustParse({"--enats_addr=nats://127.0.0.1:4333"}).nats_servers, "nats://127.0.0.1:4222")
      << "without --embed_nats nothing changes";
  c = MustParse({"--embed_nats", "--enats_cluster=nats://0.0.0.0:4243", "--enats_cluster_name=c1",
                 "--enats_gateway=nats://0.0.0.0:7222",
                 "--enats_gateways=a:nats://x:1;b:nats://y:2", "--enats_gateway_advertise=g:7222",
                 "--enats_store_dir=/data", "--enats_server_name=s1", "--enats_max_payload=2048",
                 "--enats_debug", "--enats_trace", "--enats_server_path=/opt/nats-server"},
                {{"ANYCABLE_ENATS_CLUSTER_ROUTES", "nats://r1:4243,nats://r2:4243"}});
  EXPECT_EQ(c.enats_cluster, "nats://0.0.0.0:4243");
  EXPECT_EQ(c.enats_cluster_name, "c1");
  EXPECT_EQ(c.enats_cluster_routes, "nats://r1:4243,nats://r2:4243");
  EXPECT_EQ(c.enats_gateway, "nats://0.0.0.0:7222");
  EXPECT_EQ(c.enats_gateways, "a:nats://x:1;b:nats://y:2");
  EXPECT_EQ(c.enats_gateway_advertise, "g:7222");
  EXPECT_EQ(c.enats_store_dir, "/data");
  EXPECT_EQ(c.enats_server_name, "s1");
  EXPECT_EQ(c.enats_max_payload, 2048);
  EXPECT_TRUE(c.enats_debug);
  EXPECT_TRUE(c.enats_trace);
  EXPECT_EQ(c.enats_server_path, "/opt/nats-server");
  EXPECT_EQ(ParseError({"--enats_max_payload=67108865"}),
            "invalid value \"67108865\" for flag --enats_max_payload: must be between 0 and "
            "67108864");
  EXPECT_EQ(ParseError({"--enats_addr="}),
            "invalid value \"\" for flag --enats_addr: must not be empty");
}

TEST(ConfigUnsupported, EmptyStringsCountAsDefault) {
  MustParse({}, {{"ANYCABLE_REDIS_URL", ""}, {"ANYCABLE_JWT_PARAM", ""}, {"ANYCABLE_BROKER", ""}});
  MustParse({"--metrics_http="});
}

// Computed once with:
//   echo -n "broadcast-cable" | openssl dgst -sha256 -hmac "s3cr3t"
constexpr char kBroadcastKeyForS3cr3t[] =
    "83149057b2f956b5f862c0ef5ad6a24d3677dc076d77e8999c24f77ca17d7a20";

TEST(ConfigSecrets, BroadcastKeyDerivedFromSecret) {
  EXPECT_EQ(HexHmacSha256("s3cr3t", "broadcast-cable"), kBroadcastKeyForS3cr3t);
  const Config c = MustParse({"--secret=s3cr3t"});
  EXPECT_EQ(c.secret, "s3cr3t");
  EXPECT_EQ(c.broadcast_key, kBroadcastKeyForS3cr3t);
  EXPECT_EQ(MustParse({}, {{"ANYCABLE_SECRET", "s3cr3t"}}).broadcast_key, kBroadcastKeyForS3cr3t);
}

TEST(ConfigSecrets, HttpRpcSecretDerivedFromSecretUnlessGiven) {
  // hex HMAC-SHA256(key="s3cr3t", msg="rpc-cable"), computed with `openssl dgst -hmac`.
  const std::string derived = "4b7da2749fe2a4534cec0d2acbd16277a800cf2acd31158ac4edae4a62a8f18d";
  EXPECT_EQ(MustParse({"--secret=s3cr3t"}).http_rpc_secret, derived);
  EXPECT_EQ(MustParse({}, {{"ANYCABLE_SECRET", "s3cr3t"}}).http_rpc_secret, derived);
  EXPECT_EQ(MustParse({"--secret=s3cr3t", "--http_rpc_secret=mine"}).http_rpc_secret, "mine");
  EXPECT_EQ(MustParse({}, {{"ANYCABLE_HTTP_RPC_SECRET", "env"}}).http_rpc_secret, "env");
  EXPECT_EQ(MustParse({"--secret=s3cr3t", "--http_rpc_secret=none"}).http_rpc_secret, derived);
  EXPECT_EQ(MustParse({}).http_rpc_secret, "");
}

TEST(ConfigSecrets, HmacRfc4231Case2) {
  EXPECT_EQ(HexHmacSha256("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(ConfigSecrets, ExplicitKeyWins) {
  EXPECT_EQ(MustParse({"--secret=s3cr3t", "--broadcast_key=k1"}).broadcast_key, "k1");
  EXPECT_EQ(MustParse({"--broadcast_key=k1", "--http_broadcast_secret=k2"}).broadcast_key, "k1");
  EXPECT_EQ(MustParse({"--secret=s3cr3t", "--http_broadcast_secret=k2"}).broadcast_key, "k2");
  EXPECT_EQ(MustParse({}, {{"ANYCABLE_HTTP_BROADCAST_SECRET", "k3"}}).broadcast_key, "k3");
}

TEST(ConfigSecrets, NoneMeansUnset) {
  const Config none_key = MustParse({"--secret=s3cr3t", "--broadcast_key=none"});
  EXPECT_EQ(none_key.secret, "s3cr3t");
  EXPECT_EQ(none_key.broadcast_key, "");
  const Config none_secret = MustParse({"--secret=none"});
  EXPECT_EQ(none_secret.secret, "");
  EXPECT_EQ(none_secret.broadcast_key, "");
  // A later non-"none" value replaces an earlier "none".
  EXPECT_EQ(MustParse({"--broadcast_key=none", "--broadcast_key=k"}).broadcast_key, "k");
  EXPECT_EQ(MustParse({"--secret=s3cr3t", "--http_broadcast_secret=none"}).broadcast_key,
            kBroadcastKeyForS3cr3t);
  // An empty explicit key falls back to the derived one, as in anycable-go.
  EXPECT_EQ(MustParse({"--secret=s3cr3t", "--broadcast_key="}).broadcast_key,
            kBroadcastKeyForS3cr3t);
}

TEST(ConfigHelp, ListsSupportedFlagsWithEnvAndDefault) {
  for (const char* flag : {"--help", "-h", "-help"}) {
    auto r = Parse({flag}, {});
    ASSERT_TRUE(r.ok()) << flag;
    EXPECT_EQ(r->action, Action::kHelp);
    EXPECT_THAT(r->text, HasSubstr("--ping_interval"));
    EXPECT_THAT(r->text, HasSubstr("ANYCABLE_PING_INTERVAL"));
    EXPECT_THAT(r->text, HasSubstr("(default: 3)"));
    EXPECT_THAT(r->text, HasSubstr("[$ANYCABLE_PORT, $PORT]"));
    EXPECT_THAT(r->text, HasSubstr("--health-path"));
    EXPECT_THAT(r->text, HasSubstr("--workers"));
    // Hidden and unsupported flags are not listed.
    EXPECT_THAT(r->text, Not(HasSubstr("--max_message_size")));
    EXPECT_THAT(r->text, Not(HasSubstr("--metrics_log_formatter")));
    EXPECT_THAT(r->text, Not(HasSubstr("--redisx_group")));
  }
  for (const FlagInfo& f : FlagTable()) {
    if (!f.supported || f.hidden) continue;
    EXPECT_THAT(Parse({"-h"}, {})->text, HasSubstr("--" + std::string(f.name) + " ")) << f.name;
    EXPECT_THAT(Parse({"-h"}, {})->text, HasSubstr("$" + f.env[0])) << f.name;
  }
}

TEST(ConfigHelp, HelpAndVersionShortCircuit) {
  // Help is shown even when other flag values would not validate.
  auto r = Parse({"--port=abc", "--help"}, {{"ANYCABLE_PORT", "bad"}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->action, Action::kHelp);
  // ... but unknown flags are still errors, as in anycable-go.
  EXPECT_EQ(ParseError({"--help", "--nope"}), "unknown flag: --nope");
  EXPECT_EQ(Parse({"--help=false"}, {})->action, Action::kRun);
  for (const char* flag : {"--version", "-v"}) {
    auto v = Parse({flag}, {});
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->action, Action::kVersion);
    EXPECT_EQ(v->text, "ringcable 0.1.0 (AnyCable protocol compatible with anycable-go 1.6)");
  }
}

TEST(ConfigDescribe, OneLinePerSettingSecretsRedacted) {
  const Config c = MustParse({"--secret=s3cr3t", "--path=/a,/b"});
  const std::string d = Describe(c);
  EXPECT_THAT(d, HasSubstr("port: 8080\n"));
  EXPECT_THAT(d, HasSubstr("path: /a,/b\n"));
  EXPECT_THAT(d, HasSubstr("secret: (set)\n"));
  EXPECT_THAT(d, HasSubstr("broadcast_key: (set)\n"));
  EXPECT_THAT(d, HasSubstr("disconnect_mode: auto\n"));
  EXPECT_THAT(d, Not(HasSubstr("s3cr3t")));
  EXPECT_THAT(d, Not(HasSubstr(kBroadcastKeyForS3cr3t)));
  EXPECT_THAT(d, HasSubstr("jwt_secret: (set)\n"));  // falls back to --secret
  EXPECT_EQ(std::count(d.begin(), d.end(), '\n'), 67);
  EXPECT_THAT(d, HasSubstr("enable_ws_compression: false\n"));
  EXPECT_THAT(d, HasSubstr("ssl_cert: (none)\n"));
  EXPECT_THAT(d, HasSubstr("http_rpc_secret: (set)\n"));  // derived from --secret
  // Broker URLs keep their shape but never their passwords.
  const std::string d2 = Describe(MustParse(
      {"--redis_url=redis://u:pw1@cache:6379/2", "--nats_servers=nats://a:pw2@n1:4222,nats://n2"}));
  EXPECT_THAT(d2, HasSubstr("redis_url: redis://u:***@cache:6379/2\n"));
  EXPECT_THAT(d2, HasSubstr("nats_servers: nats://a:***@n1:4222,nats://n2\n"));
  EXPECT_THAT(d2, HasSubstr("pubsub: redis\n"));
}

TEST(ConfigTable, NamesAndEnvNamesAreUnique) {
  std::set<std::string> names;
  std::set<std::string> envs;
  for (const FlagInfo& f : FlagTable()) {
    std::string n(f.name);
    for (char& ch : n) ch = ch == '-' ? '_' : ch;
    EXPECT_TRUE(names.insert(n).second) << n;
    for (const auto& e : f.env) EXPECT_TRUE(envs.insert(e).second) << e;
  }
  EXPECT_FALSE(names.count("h"));
  EXPECT_FALSE(names.count("v"));
}

TEST(ConfigEnviron, ReadsProcessEnvironment) {
  ASSERT_EQ(setenv("RINGCABLE_CONFIG_TEST_VAR", "a=b", 1), 0);
  const auto env = EnvironFromProcess();
  unsetenv("RINGCABLE_CONFIG_TEST_VAR");
  auto it = env.find("RINGCABLE_CONFIG_TEST_VAR");
  ASSERT_NE(it, env.end());
  EXPECT_EQ(it->second, "a=b");
}

TEST(ConfigAuth, DefaultsAreOff) {
  const Config c = MustParse({});
  EXPECT_EQ(c.jwt_secret, "");
  EXPECT_EQ(c.jwt_param, "jid");
  EXPECT_FALSE(c.enforce_jwt);
  EXPECT_FALSE(c.noauth);
  EXPECT_FALSE(c.norpc);
  EXPECT_EQ(c.streams_secret, "");
  EXPECT_FALSE(c.public_streams);
  EXPECT_FALSE(c.streams_whisper);
  EXPECT_FALSE(c.turbo_streams);
  EXPECT_FALSE(c.cable_ready);
}

TEST(ConfigAuth, SecretIsUsedDirectlyAsFallback) {
  const Config c = MustParse({"--secret=s3cr3t"});
  EXPECT_EQ(c.jwt_secret, "s3cr3t");
  EXPECT_EQ(c.streams_secret, "s3cr3t");
  EXPECT_EQ(c.turbo_streams_secret, "s3cr3t");
  EXPECT_EQ(c.cable_ready_secret, "s3cr3t");
  const Config own = MustParse(
      {"--secret=s3cr3t", "--jwt_secret=j", "--streams_secret=st", "--turbo_streams_secret=t"});
  EXPECT_EQ(own.jwt_secret, "j");
  EXPECT_EQ(own.streams_secret, "st");
  EXPECT_EQ(own.turbo_streams_secret, "t");
  EXPECT_EQ(own.cable_ready_secret, "st");  // ← streams secret
}

TEST(ConfigAuth, NoneMeansUnset) {
  const Config c = MustParse({"--secret=s3cr3t", "--jwt_secret=none", "--streams_secret=none"});
  EXPECT_EQ(c.jwt_secret, "s3cr3t");
  EXPECT_EQ(c.streams_secret, "s3cr3t");
}

TEST(ConfigAuth, PublicImpliesNoauthPublicStreamsAndOpenBroadcasting) {
  const Config c = MustParse({"--public", "--secret=s3cr3t"});
  EXPECT_TRUE(c.noauth);
  EXPECT_TRUE(c.public_streams);
  EXPECT_EQ(c.broadcast_key, "");
  EXPECT_EQ(c.jwt_secret, "s3cr3t");
}

TEST(ConfigAuth, FlagsAndEnv) {
  const Config c = MustParse({"--jwt_param=token", "--enforce_jwt", "--noauth", "--norpc",
                              "--public_streams", "--streams_whisper", "--turbo_streams",
                              "--cable_ready", "--cable_ready_secret=cr"});
  EXPECT_EQ(c.jwt_param, "token");
  EXPECT_TRUE(c.enforce_jwt);
  EXPECT_TRUE(c.noauth);
  EXPECT_TRUE(c.norpc);
  EXPECT_TRUE(c.public_streams);
  EXPECT_TRUE(c.streams_whisper);
  EXPECT_TRUE(c.turbo_streams);
  EXPECT_TRUE(c.cable_ready);
  EXPECT_EQ(c.cable_ready_secret, "cr");
  const Config e = MustParse({}, {{"ANYCABLE_JWT_SECRET", "k"}, {"ANYCABLE_NORPC", "true"}});
  EXPECT_EQ(e.jwt_secret, "k");
  EXPECT_TRUE(e.norpc);
}

TEST(ConfigAuth, DeprecatedAliases) {
  const Config c = MustParse({"--jwt_id_key=k", "--jwt_id_param=t", "--jwt_id_enforce",
                              "--turbo_rails_key=tk", "--cable_ready_key=ck"});
  EXPECT_EQ(c.jwt_secret, "k");
  EXPECT_EQ(c.jwt_param, "t");
  EXPECT_TRUE(c.enforce_jwt);
  EXPECT_TRUE(c.turbo_streams);
  EXPECT_EQ(c.turbo_streams_secret, "tk");
  EXPECT_TRUE(c.cable_ready);
  EXPECT_EQ(c.cable_ready_secret, "ck");
}

// --- node id (spec §2.1) ---

TEST(ConfigNodeId, RandomSixCharactersByDefault) {
  const Config a = MustParse({});
  const Config b = MustParse({});
  EXPECT_FALSE(a.node_id_user_provided);
  ASSERT_EQ(a.node_id.size(), 6u);
  for (char ch : a.node_id) {
    EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-') << ch;
  }
  EXPECT_NE(a.node_id, b.node_id);  // 64^6 ids: a repeat here means no randomness
  EXPECT_NE(RandomNodeId(), RandomNodeId());
}

TEST(ConfigNodeId, FlagAndEnv) {
  Config c = MustParse({"--node_id=node-a"});
  EXPECT_EQ(c.node_id, "node-a");
  EXPECT_TRUE(c.node_id_user_provided);
  c = MustParse({}, {{"ANYCABLE_NODE_ID", "from-env"}});
  EXPECT_EQ(c.node_id, "from-env");
  EXPECT_TRUE(c.node_id_user_provided);
  // An empty value (an env file's "unset") keeps the random id.
  c = MustParse({}, {{"ANYCABLE_NODE_ID", ""}});
  EXPECT_FALSE(c.node_id_user_provided);
  EXPECT_EQ(c.node_id.size(), 6u);
}

// --- StatsD and the metrics log filter (spec §2.7) ---

TEST(ConfigStatsd, DefaultsAndFlags) {
  Config c = MustParse({});
  EXPECT_EQ(c.statsd_host, "");
  EXPECT_EQ(c.statsd_prefix, "anycable_go.");
  EXPECT_EQ(c.statsd_tags_format, "datadog");
  EXPECT_EQ(c.statsd_max_packet_size, 1400);
  EXPECT_TRUE(c.metrics_log_filter.empty());
  EXPECT_EQ(c.stats_refresh_interval_s, 5);
  c = MustParse({"--statsd_host=127.0.0.1:8125", "--statsd_prefix=app.",
                 "--statsd_tags_format=graphite", "--statsd_max_packet_size=512",
                 "--metrics_log_filter=clients_num, rpc_call_total", "--stats_refresh_interval=9"});
  EXPECT_EQ(c.statsd_host, "127.0.0.1:8125");
  EXPECT_EQ(c.statsd_prefix, "app.");
  EXPECT_EQ(c.statsd_tags_format, "graphite");
  EXPECT_EQ(c.statsd_max_packet_size, 512);
  EXPECT_THAT(c.metrics_log_filter, ElementsAre("clients_num", "rpc_call_total"));
  EXPECT_EQ(c.stats_refresh_interval_s, 9);
  c = MustParse({}, {{"ANYCABLE_STATSD_HOST", "[::1]:9125"},
                     {"ANYCABLE_STATSD_TAGS_FORMAT", "influxdb"},
                     {"ANYCABLE_METRICS_LOG_FILTER", "clients_num"}});
  EXPECT_EQ(c.statsd_host, "[::1]:9125");
  EXPECT_EQ(c.statsd_tags_format, "influxdb");
  EXPECT_THAT(c.metrics_log_filter, ElementsAre("clients_num"));
  EXPECT_EQ(MustParse({"--statsd_host=stats.internal:8125"}).statsd_host, "stats.internal:8125");
}

TEST(ConfigStatsd, ExactErrors) {
  const std::string want_host = ": expected host:port with a port between 1 and 65535";
  for (const char* bad : {"localhost", ":8125", "host:", "host:0", "host:65536", "host:abc",
                          "host:+1", "::1:8125", "[::1]", "[]:8125", "[::1]8125"}) {
    EXPECT_EQ(ParseError({std::string("--statsd_host=") + bad}),
              std::string("invalid value \"") + bad + "\" for flag --statsd_host" + want_host);
  }
  EXPECT_EQ(ParseError({}, {{"ANYCABLE_STATSD_HOST", "nope"}}),
            "invalid value \"nope\" for env ANYCABLE_STATSD_HOST" + want_host);
  EXPECT_EQ(ParseError({"--statsd_tags_format=prometheus"}),
            "invalid value \"prometheus\" for flag --statsd_tags_format: must be one of datadog, "
            "influxdb, graphite");
  EXPECT_EQ(ParseError({"--statsd_max_packet_size=10"}),
            "invalid value \"10\" for flag --statsd_max_packet_size: must be between 64 and 65507");
  EXPECT_EQ(ParseError({"--statsd_max_packet_size=70000"}),
            "invalid value \"70000\" for flag --statsd_max_packet_size: must be between 64 and "
            "65507");
}

// --- presets (spec §2.9) ---

TEST(ConfigPresets, NothingDetectedNothingApplied) {
  const Config c = MustParse({});
  EXPECT_TRUE(c.presets.empty());
  EXPECT_TRUE(c.applied_presets.empty());
  EXPECT_EQ(c.host, "localhost");
}

TEST(ConfigPresets, HerokuDetectedFromItsEnvironment) {
  const Env heroku = {{"HEROKU_APP_ID", "id"}, {"HEROKU_DYNO_ID", "dyno"}, {"PORT", "5000"}};
  Config c = MustParse({}, heroku);
  EXPECT_THAT(c.applied_presets, ElementsAre("heroku"));
  EXPECT_TRUE(c.presets.empty());  // detected, not asked for
  EXPECT_EQ(c.host, "0.0.0.0");
  EXPECT_EQ(c.port, 5000);
  EXPECT_EQ(c.http_broadcast_port, 5000);
  // Only one of the two variables: not Heroku.
  EXPECT_TRUE(MustParse({}, {{"HEROKU_APP_ID", "id"}}).applied_presets.empty());
  // Settings the user gave win over the preset.
  c = MustParse({"--host=127.0.0.1", "--http_broadcast_port=9000"}, heroku);
  EXPECT_EQ(c.host, "127.0.0.1");
  EXPECT_EQ(c.http_broadcast_port, 9000);
  // --presets=none turns detection off.
  c = MustParse({"--presets=none"}, heroku);
  EXPECT_TRUE(c.applied_presets.empty());
  EXPECT_EQ(c.host, "localhost");
  EXPECT_THAT(c.presets, ElementsAre("none"));
}

TEST(ConfigPresets, FlyWithRedis) {
  const Env fly = {{"FLY_APP_NAME", "chat"},
                   {"FLY_REGION", "ams"},
                   {"FLY_ALLOC_ID", "a1b2"},
                   {"REDIS_URL", "redis://r:6379"},
                   {"ANYCABLE_FLY_RPC_APP_NAME", "web"}};
  const Config c = MustParse({"--port=8081"}, fly);
  EXPECT_THAT(c.applied_presets, ElementsAre("fly"));
  EXPECT_EQ(c.host, "0.0.0.0");
  EXPECT_EQ(c.http_broadcast_port, 8081);  // broadcasts on the main port
  EXPECT_EQ(c.pubsub, "redis");
  EXPECT_EQ(c.rpc_host, "dns:///ams.web.internal:50051");
  // Embedded NATS addresses are recorded (they do nothing while --embed_nats is off).
  EXPECT_EQ(c.flag_values.at("enats_addr"), "nats://0.0.0.0:4222");
  EXPECT_EQ(c.flag_values.at("enats_cluster"), "nats://0.0.0.0:5222");
  EXPECT_EQ(c.flag_values.at("enats_cluster_name"), "chat-ams-cluster");
  EXPECT_EQ(c.flag_values.at("enats_cluster_routes"), "nats://ams.chat.internal:5222");
  EXPECT_EQ(c.flag_values.at("enats_gateway_advertise"), "ams.chat.internal:7222");
  const std::string name = c.flag_values.at("enats_server_name");
  EXPECT_EQ(name.rfind("fly-ams-a1b2-", 0), 0u) << name;
  EXPECT_EQ(name.size(), std::string("fly-ams-a1b2-").size() + 3);
  EXPECT_EQ(MustParse({}, fly).flag_values.at("enats_server_name"), name);  // stable per alloc
}

TEST(ConfigPresets, FeaturesRingcableLacksFailLikeTheirFlags) {
  // Fly without Redis: an embedded NATS with the NATS broker (both supported).
  const Config fly_nats =
      MustParse({}, {{"FLY_APP_NAME", "chat"}, {"FLY_REGION", "ams"}, {"FLY_ALLOC_ID", "x"}});
  EXPECT_TRUE(fly_nats.embed_nats);
  EXPECT_EQ(fly_nats.broker, "nats");
  // Without Redis or embedded NATS the broker preset is the memory broker (supported).
  EXPECT_EQ(MustParse({"--presets=broker"}).broker, "memory");
  EXPECT_EQ(MustParse({}, {{"ANYCABLE_PRESETS", "heroku,broker"}}).broker, "memory");
  EXPECT_EQ(MustParse({"--presets=broker", "--embed_nats"}).broker, "nats");
  // An explicit --broker=none keeps the preset's broker away (anycable-go compares with the
  // default); the rest of the preset still applies.
  const Config c = MustParse({"--presets=broker", "--broker=none"});
  EXPECT_THAT(c.broadcast_adapters, ElementsAre("http"));
  EXPECT_THAT(c.applied_presets, ElementsAre("broker"));
  const Config redis =
      MustParse({"--presets=broker", "--broker=none", "--redis_url=redis://r:6379"});
  EXPECT_THAT(redis.broadcast_adapters, ElementsAre("http", "redisx", "redis"));
  EXPECT_EQ(redis.pubsub, "redis");
}

TEST(ConfigPresets, ExactErrors) {
  EXPECT_EQ(ParseError({"--presets=fly"}), "preset fly: FLY_REGION env is missing");
  EXPECT_EQ(ParseError({"--presets=fly"}, {{"FLY_REGION", "ams"}}),
            "preset fly: FLY_APP_NAME env is missing");
  EXPECT_EQ(ParseError({"--presets=fly,render"}),
            "invalid value \"fly,render\" for flag --presets: unknown preset \"render\" "
            "(supported: none, fly, heroku, broker)");
  EXPECT_EQ(ParseError({}, {{"ANYCABLE_PRESETS", "Heroku2"}}),
            "invalid value \"Heroku2\" for env ANYCABLE_PRESETS: unknown preset \"Heroku2\" "
            "(supported: none, fly, heroku, broker)");
  EXPECT_EQ(ParseError({"--presets=heroku"}, {{"PORT", "x"}}),
            "invalid value \"x\" for env PORT: not an integer");
}

// --- TOML file in anycable-go's layout, and --print-config ---

class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    char tmpl[] = "/tmp/ringcable-config-test-XXXXXX";
    const int fd = mkstemp(tmpl);
    EXPECT_GE(fd, 0);
    if (fd >= 0) {
      EXPECT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
      close(fd);
    }
    path_ = tmpl;
  }
  ~TempFile() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string PrintConfig(Args args, const Env& env = {}) {
  args.push_back("--print-config");
  auto r = Parse(args, env);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error());
  if (!r.ok()) return "";
  EXPECT_EQ(r->action, Action::kPrintConfig);
  return r->text;
}

Config FromFile(const std::string& text, const Env& env = {}) {
  TempFile f(text);
  return MustParse({"--config-path", f.path()}, env);
}

// The error for `text` as a config file, with the file's path written as "<file>".
std::string FileError(const std::string& text) {
  TempFile f(text);
  std::string error = ParseError({"--config-path", f.path()});
  const size_t at = error.find(f.path());
  if (at != std::string::npos) error.replace(at, f.path().size(), "<file>");
  return error;
}

// Runs print → file → print and checks the text and the effective settings are the same. The
// second run sees `later_env` (a platform's variables that presets detect), not the settings the
// first run took from the environment: those are in the file now.
void ExpectRoundTrip(const Args& args, const Env& env, const Env& later_env) {
  const std::string first = PrintConfig(args, env);
  TempFile file(first);
  const std::string second = PrintConfig({"--config-path", file.path()}, later_env);
  EXPECT_EQ(first, second);
  EXPECT_EQ(Describe(MustParse(args, env)),
            Describe(MustParse({"--config-path", file.path()}, later_env)));
}

TEST(ConfigToml, RoundTripOfANonTrivialConfiguration) {
  ExpectRoundTrip({"--host=127.0.0.1",
                   "--port=9090",
                   "--path=/cable,/admin/cable",
                   "--health-path=/up",
                   "--allowed_origins=WWW.Example.com,*.example.io",
                   "--max-conn=500",
                   "--secret=s3cr\"et\\x",
                   "--node_id=node-1",
                   "--presets=heroku",
                   "--streams_secret=streams",
                   "--turbo_streams",
                   "--cable_ready_secret=cr",
                   "--jwt_param=token",
                   "--enforce_jwt",
                   "--rpc_host=grpc://rpc.internal:50051",
                   "--rpc_concurrency=0",
                   "--rpc_request_timeout=250",
                   "--rpc_command_timeout=0",
                   "--headers=",
                   "--proxy-cookies=_session,remember",
                   "--rpc_tls_root_ca=-----BEGIN CERTIFICATE-----\nAAA\n-----END",
                   "--rpc_tls_verify=false",
                   "--disconnect_mode=always",
                   "--disconnect_rate=5",
                   "--broadcast_adapter=http,redisx",
                   "--redis_url=rediss://u:pw@cache:6380/2",
                   "--redis_sentinels=:sp@s1:26379,s2:26379",
                   "--redis_tls_verify",
                   "--nats_servers=nats://a:4222,nats://b:4222",
                   "--nats_dont_randomize_servers",
                   "--ping_interval=5",
                   "--ping_timestamp_precision=ms",
                   "--enable_native_pings",
                   "--ws_max_pending_size=0",
                   "--metrics_http=/metrics",
                   "--metrics_port=9091",
                   "--metrics_tags=app:chat,zone:eu",
                   "--metrics_log",
                   "--metrics_log_filter=clients_num,broadcast_msg_total",
                   "--statsd_host=127.0.0.1:8125",
                   "--statsd_tags_format=influxdb",
                   "--statsd_max_packet_size=512",
                   "--broker=none",
                   "--sse_path=/events",
                   "--debug",
                   "--workers=3",
                   "--shutdown_delay=2"},
                  {{"PORT", "7000"}, {"ANYCABLE_HISTORY_LIMIT", "100"}}, {});
}

TEST(ConfigToml, MetricsTagsComeBackSortedByName) {
  // TOML tables have no order; the file lists tags by name and reads back that way.
  const std::string text = PrintConfig({"--metrics_tags=zone:eu, app:chat"});
  EXPECT_THAT(text, HasSubstr("\ntags.app = \"chat\"\ntags.zone = \"eu\"\n"));
  EXPECT_EQ(FromFile(text).metrics_tags, "app:chat,zone:eu");
  // Not key:value pairs: written as one string, which reads back unchanged (startup rejects it).
  EXPECT_THAT(PrintConfig({"--metrics_tags=oops"}), HasSubstr("\ntags = \"oops\"\n"));
  EXPECT_EQ(FromFile(PrintConfig({"--metrics_tags=oops"})).metrics_tags, "oops");
}

TEST(ConfigToml, RoundTripOfDefaultsPublicModeAndDetectedPresets) {
  ExpectRoundTrip({}, {}, {});
  ExpectRoundTrip({"--public", "--secret=s", "--norpc"}, {}, {});
  ExpectRoundTrip({"--broadcast_key=explicit", "--http_broadcast_secret=legacy"}, {}, {});
  ExpectRoundTrip({"--turbo_rails_key=t", "--jwt_id_key=j", "--disable_disconnect"}, {}, {});
  const Env fly = {{"FLY_APP_NAME", "chat"}, {"FLY_REGION", "ams"}, {"FLY_ALLOC_ID", "a1"}};
  Env fly_redis = fly;
  fly_redis["REDIS_URL"] = "redis://r:6379";
  ExpectRoundTrip({}, fly_redis, fly);
  const Env heroku = {{"HEROKU_APP_ID", "id"}, {"HEROKU_DYNO_ID", "d"}};
  Env heroku_port = heroku;
  heroku_port["PORT"] = "5000";
  ExpectRoundTrip({}, heroku_port, heroku);
}

TEST(ConfigToml, PrintsAnycableLayoutWithSecretsAsValues) {
  std::string t = PrintConfig({"--secret=s3cr3t", "--statsd_host=h:1", "--node_id=n"});
  EXPECT_THAT(t, HasSubstr("\nsecret = \"s3cr3t\"\n"));
  EXPECT_THAT(t, HasSubstr("\nnode_id = \"n\"\n"));
  EXPECT_THAT(t,
              HasSubstr("\n# broadcast_key = \"<auto-generated from the application secret>\"\n"));
  for (const char* section : {"[server]",
                              "[logging]",
                              "[rpc]",
                              "[broker]",
                              "[jwt]",
                              "[streams]",
                              "[ws]",
                              "[sse]",
                              "[redis]",
                              "[nats]",
                              "[http_broadcast]",
                              "[redis_stream_broadcast]",
                              "[redis_pubsub_broadcast]",
                              "[nats_broadcast]",
                              "[redis_pubsub]",
                              "[nats_pubsub]",
                              "[metrics]",
                              "[metrics.statsd]",
                              "[app]",
                              "[disconnector]",
                              "[embedded_nats]"}) {
    EXPECT_THAT(t, HasSubstr(std::string("\n") + section + "\n")) << section;
  }
  EXPECT_THAT(t, HasSubstr("[metrics.statsd]\n# StatsD server (host:port)\nhost = \"h:1\"\n"));
  t = PrintConfig({});
  EXPECT_THAT(t, HasSubstr("\nsecret = \"none\"\n"));
  EXPECT_THAT(t, HasSubstr("\nbroadcast_key = \"none\"\n"));
  EXPECT_THAT(t, HasSubstr("\n# node_id = \"<auto-generated at each server start>\"\n"));
}

TEST(ConfigToml, EveryAnycableKeyIsAccepted) {
  // The flag's default under each of anycable-go's keys parses; for a flag ringcable does not
  // support yet, another value fails exactly as the flag does.
  std::map<std::string, FlagInfo> flags;
  for (const FlagInfo& f : FlagTable()) {
    std::string n(f.name);
    for (char& ch : n) ch = ch == '-' ? '_' : ch;
    flags.emplace(n, f);
  }
  auto literal = [](const FlagInfo& f, const std::string& text) {
    switch (f.kind) {
      case FlagKind::kBool:
      case FlagKind::kInt:
        return text;
      case FlagKind::kList: {
        std::string out = "[";
        for (const auto& item : std::vector<std::string>{text}) {
          if (!item.empty()) out += "\"" + item + "\"";
        }
        return out + "]";
      }
      default:
        return "\"" + text + "\"";
    }
  };
  int checked = 0;
  for (const auto& [path, flag] : TomlKeyFlags()) {
    if (flag.empty()) continue;
    std::string name = flag;
    for (char& ch : name) ch = ch == '-' ? '_' : ch;
    ASSERT_TRUE(flags.count(name)) << path << " -> " << flag;
    const FlagInfo& f = flags.at(name);
    FromFile(path + " = " + literal(f, std::string(f.default_value)) + "\n");
    if (!f.supported) {
      EXPECT_EQ(FileError(path + " = " + literal(f, NonDefault(f)) + "\n"),
                "flag --" + std::string(f.name) + " is not supported by ringcable yet")
          << path;
    }
    ++checked;
  }
  EXPECT_GT(checked, 100);
}

TEST(ConfigToml, TlsAndCompressionKeys) {
  const Config c = FromFile(
      "[server]\nssl.cert_path = \"/c.pem\"\nssl.key_path = \"/k.pem\"\n"
      "[ws]\nenable_compression = true\n");
  EXPECT_EQ(c.ssl_cert, "/c.pem");
  EXPECT_EQ(c.ssl_key, "/k.pem");
  EXPECT_TRUE(c.enable_ws_compression);
}

TEST(ConfigToml, AnycableKeysReachTheirSettings) {
  const Config c = FromFile(
      "secret = \"top\"\nbroadcast_adapters = [\"http\", \"nats\"]\npresets = [\"none\"]\n"
      "[server]\nhost = \"0.0.0.0\"\nport = 8181\nmax_conn = 9\nssl.cert_path = \"\"\n"
      "[logging]\nlevel = \"warn\"\nformat = \"json\"\n"
      "[rpc]\nimplementation = \"grpc\"\nproxy_headers = [\"Cookie\", \"X-Api\"]\n"
      "tls_root_ca_path = \"/ca.pem\"\n"
      "[ws]\npaths = [\"/a\", \"/b\"]\nmax_pending_size = 0\n"
      "[jwt]\nparam = \"tok\"\nforce = true\n"
      "[metrics]\nhttp_path = \"/m\"\nlog_filter = [\"clients_num\"]\n"
      "tags.zone = \"eu\"\ntags.app = \"chat\"\n"
      "[metrics.statsd]\nhost = \"127.0.0.1:9125\"\ntags_format = \"graphite\"\n"
      "[app]\nping_interval = 7\nbroadcast_gopool_size = 4\n"
      "[embedded_nats]\nroutes = []\ngateways = []\njetstream_ready_timeout = 99\n"
      "[ringcable]\nworkers = 2\n");
  EXPECT_EQ(c.secret, "top");
  EXPECT_THAT(c.broadcast_adapters, ElementsAre("http", "nats"));
  EXPECT_THAT(c.presets, ElementsAre("none"));
  EXPECT_EQ(c.host, "0.0.0.0");
  EXPECT_EQ(c.port, 8181);
  EXPECT_EQ(c.max_conn, 9);
  EXPECT_EQ(c.log_level, "warn");
  EXPECT_EQ(c.log_format, "json");
  EXPECT_THAT(c.headers, ElementsAre("cookie", "x-api"));
  EXPECT_EQ(c.rpc_tls_root_ca, "/ca.pem");
  EXPECT_THAT(c.paths, ElementsAre("/a", "/b"));
  EXPECT_EQ(c.ws_max_pending_size, 0);
  EXPECT_EQ(c.jwt_param, "tok");
  EXPECT_TRUE(c.enforce_jwt);
  EXPECT_EQ(c.metrics_http, "/m");
  EXPECT_THAT(c.metrics_log_filter, ElementsAre("clients_num"));
  EXPECT_EQ(c.metrics_tags, "app:chat,zone:eu");  // TOML tables are read in key order
  EXPECT_EQ(c.statsd_host, "127.0.0.1:9125");
  EXPECT_EQ(c.statsd_tags_format, "graphite");
  EXPECT_EQ(c.ping_interval_s, 7);
  EXPECT_EQ(c.workers, 2);
  EXPECT_TRUE(FromFile("[rpc]\nimplementation = \"none\"\n").norpc);
  // Flag names still work as keys (the layout ringcable read before).
  EXPECT_EQ(FromFile("port = 9001\n[rpc]\nhost = \"r:1\"\n").rpc_host, "r:1");
}

TEST(ConfigToml, ExactErrors) {
  EXPECT_EQ(FileError("[server]\nnope = 1\n"), "unknown key \"server.nope\" in config file <file>");
  EXPECT_EQ(FileError("[server.ssl]\nnope = \"x\"\n"),
            "unknown key \"server.ssl.nope\" in config file <file>");
  EXPECT_EQ(FileError("[redis]\nmax_reconnect_attempts = 7\n"),
            "key \"redis.max_reconnect_attempts\" in config file <file>"
            ": value \"7\" is not supported by ringcable yet (only \"5\")");
  EXPECT_EQ(FileError("[streams]\npubsub_channel = \"$other\"\n"),
            "key \"streams.pubsub_channel\" in config file <file>"
            ": value \"$other\" is not supported by ringcable yet (only \"$pubsub\")");
  EXPECT_EQ(FileError("[broker]\nadapter = \"disk\"\n"),
            "invalid value \"disk\" for key \"broker.adapter\" in config file <file>: must be "
            "one of none, memory, redis, nats");
  EXPECT_EQ(FileError("[ds]\nenabled = true\n"), "flag --ds is not supported by ringcable yet");
  EXPECT_EQ(FileError("[rpc]\nimplementation = \"http\"\n"),
            "--rpc_impl=http needs an http(s):// --rpc_host (got \"localhost:50051\")");
  EXPECT_EQ(FileError("[rpc]\nimplementation = \"trpc\"\n"),
            "invalid value \"trpc\" for key \"rpc.implementation\" in config file <file>"
            ": must be grpc or http");
  EXPECT_EQ(FileError("[metrics.statsd]\ntags_format = \"x\"\n"),
            "invalid value \"x\" for key \"metrics.statsd.tags_format\" in config file <file>"
            ": must be one of datadog, influxdb, graphite");
  EXPECT_EQ(FileError("[metrics]\ntags.zone = 1.5\n"),
            "invalid value for key \"metrics.tags.zone\" in config file <file>"
            ": expected a string");
  EXPECT_EQ(FileError("presets = [\"fly\", \"render\"]\n"),
            "invalid value \"fly,render\" for key \"presets\" in config file <file>"
            ": unknown preset \"render\" (supported: none, fly, heroku, broker)");
  // File-only keys at anycable-go's default are fine.
  FromFile("[redis]\nmax_reconnect_attempts = 5\n[streams]\npubsub_channel = \"$pubsub\"\n");
}

}  // namespace
}  // namespace cable::config
