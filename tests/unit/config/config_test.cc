#include "config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
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

TEST(ConfigValues, RpcConcurrencyNonPositiveMeans28) {
  EXPECT_EQ(MustParse({"--rpc_concurrency=0"}).rpc_concurrency, 28);
  EXPECT_EQ(MustParse({"--rpc_concurrency=-5"}).rpc_concurrency, 28);
}

TEST(ConfigValues, RpcHostSchemes) {
  EXPECT_EQ(MustParse({"--rpc_host=grpc://rpc:50051"}).rpc_host, "rpc:50051");
  EXPECT_EQ(MustParse({"--rpc_host=dns:///rpc:50051"}).rpc_host, "dns:///rpc:50051");
  EXPECT_EQ(MustParse({"--rpc_host=grpc-list://a:1,b:2"}).rpc_host, "grpc-list://a:1,b:2");
  EXPECT_EQ(MustParse({"--rpc_host=127.0.0.1:50052"}).rpc_host, "127.0.0.1:50052");
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
      {{"--rpc_host=http://localhost:3000/_anycable"},
       "HTTP RPC (--rpc_host=http://...) is not supported yet"},
      {{"--rpc_host=HTTPS://app.example.com/_anycable"},
       "HTTP RPC (--rpc_host=http://...) is not supported yet"},
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
  EXPECT_EQ(ParseError({}, {{"ANYCABLE_RPC_HOST", "https://app/_anycable"}}),
            "HTTP RPC (--rpc_host=http://...) is not supported yet");
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
  EXPECT_GT(unsupported, 35);
}

TEST(ConfigUnsupported, SpotChecks) {
  MustParse({"--broker=none", "--pubsub=none", "--presets=none", "--pong_timeout=0",
             "--noauth=false", "--public=false", "--sse=false", "--jwt_secret=none",
             "--streams_presence=true", "--redis_url=redis://localhost:6379", "--rpc_impl=grpc",
             "--jwt_id_param=jid", "--metrics_log_interval=0", "--config-path="});
  EXPECT_EQ(ParseError({"--sse"}), "flag --sse is not supported by ringcable yet");
  EXPECT_EQ(ParseError({"--broker=memory"}), "flag --broker is not supported by ringcable yet");
  EXPECT_EQ(ParseError({"--streams_presence=false"}),
            "flag --streams_presence is not supported by ringcable yet");
  EXPECT_EQ(ParseError({"--statsd_host=localhost:8125"}),
            "flag --statsd_host is not supported by ringcable yet");
  EXPECT_EQ(ParseError({"--ssl_cert=/c.pem"}), "flag --ssl_cert is not supported by ringcable yet");
  EXPECT_EQ(ParseError({"--pong_timeout=5"}),
            "flag --pong_timeout is not supported by ringcable yet");
  EXPECT_EQ(ParseError({"--enable_ws_compression"}),
            "flag --enable_ws_compression is not supported by ringcable yet");
  EXPECT_EQ(ParseError({"--api_port=8081"}), "flag --api_port is not supported by ringcable yet");
  EXPECT_EQ(ParseError({"--presets=fly"}), "flag --presets is not supported by ringcable yet");
  // TOML config (--config-path, --print-config) is covered end to end in tests/integration/ops.
  EXPECT_EQ(ParseError({"--config_path=/nonexistent/a.toml"}),
            "cannot read config file /nonexistent/a.toml: No such file or directory");
  EXPECT_EQ(ParseError({"--streams_presence=false"}),
            "flag --streams_presence is not supported by ringcable yet");
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
    EXPECT_THAT(r->text, Not(HasSubstr("--pong_timeout")));
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
  EXPECT_EQ(std::count(d.begin(), d.end(), '\n'), 64);
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

}  // namespace
}  // namespace cable::config
