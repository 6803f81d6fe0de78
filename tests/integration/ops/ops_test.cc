// Operations through the real binary: a Prometheus scrape whose values match what the test did
// (validated by a strict text-format parser, and by `promtool check metrics` when installed), the
// separate metrics port, the metrics log, sd_notify READY/STOPPING, and startup errors.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "hub_fixture.h"

namespace cable::ithub {
namespace {

// Strict parser for the subset of the Prometheus text format 0.0.4 anycable-go emits: blank lines,
// "# HELP <name> <text>", then "# TYPE <name> counter|gauge", then samples of that family only,
// "<name>[{k="v",...}] <integer>". Returns "" and fills `out` (series → value), or the first
// problem found.
std::string ParseExposition(const std::string& text, std::map<std::string, int64_t>* out) {
  auto valid_name = [](std::string_view s) {
    if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
    for (char ch : s)
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != ':') return false;
    return true;
  };
  std::string help_name, family, family_type;
  std::set<std::string> seen_families;
  bool gauges_started = false;
  size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) return "last line has no newline";
    std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    const std::string where = "line " + std::to_string(line_no) + " \"" + line + "\": ";
    if (line.empty()) continue;
    if (line.rfind("# HELP ", 0) == 0) {
      std::string rest = line.substr(7);
      size_t sp = rest.find(' ');
      help_name = rest.substr(0, sp);
      if (!valid_name(help_name) || sp == std::string::npos || sp + 1 >= rest.size())
        return where + "bad HELP";
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::string rest = line.substr(7);
      size_t sp = rest.find(' ');
      if (sp == std::string::npos) return where + "bad TYPE";
      family = rest.substr(0, sp);
      family_type = rest.substr(sp + 1);
      if (family != help_name) return where + "TYPE without a HELP for the same name";
      if (family_type != "counter" && family_type != "gauge") return where + "unknown type";
      if (!seen_families.insert(family).second) return where + "duplicate family";
      if (family_type == "counter" && family.size() < 6) return where + "short counter name";
      if (family_type == "counter" && family.substr(family.size() - 6) != "_total")
        return where + "counter without _total";
      if (family.rfind("anycable_go_", 0) == 0) {
        if (family_type == "gauge") gauges_started = true;
        if (family_type == "counter" && gauges_started) return where + "counter after a gauge";
      }
      continue;
    }
    if (line[0] == '#') return where + "unexpected comment";
    size_t sp = line.rfind(' ');
    if (sp == std::string::npos) return where + "no value";
    std::string series = line.substr(0, sp);
    std::string value = line.substr(sp + 1);
    std::string name = series.substr(0, series.find('{'));
    if (name != family) return where + "sample outside its family";
    if (series.size() > name.size()) {
      std::string labels = series.substr(name.size());
      if (labels.back() != '}') return where + "unterminated labels";
      std::string body = labels.substr(1, labels.size() - 2);
      size_t p = 0;
      while (p < body.size()) {
        size_t eq = body.find('=', p);
        if (eq == std::string::npos || !valid_name(body.substr(p, eq - p)))
          return where + "bad label name";
        if (eq + 1 >= body.size() || body[eq + 1] != '"') return where + "unquoted label value";
        size_t q = eq + 2;
        while (q < body.size() && body[q] != '"') q += body[q] == '\\' ? 2 : 1;
        if (q >= body.size()) return where + "unterminated label value";
        p = q + 1;
        if (p < body.size()) {
          if (body[p] != ',') return where + "labels not comma-separated";
          ++p;
        }
      }
    }
    if (value.empty()) return where + "empty value";
    for (size_t i = 0; i < value.size(); ++i) {
      if (!std::isdigit(static_cast<unsigned char>(value[i])) && !(i == 0 && value[i] == '-'))
        return where + "value is not an integer";
    }
    if (family_type == "counter" && value[0] == '-') return where + "negative counter";
    if (!out->emplace(series, std::stoll(value)).second) return where + "duplicate series";
  }
  return "";
}

class OpsTest : public HubTest {
 protected:
  std::map<std::string, int64_t> Scrape(int port, const std::string& path, std::string* raw) {
    auto r = cable::test::HttpRequest(port, "GET", path);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    std::map<std::string, int64_t> values;
    std::string problem = ParseExposition(r.body, &values);
    EXPECT_EQ(problem, "") << r.body;
    if (raw) *raw = r.body;
    return values;
  }
};

TEST_F(OpsTest, ScrapeMatchesClientsAndBroadcast) {
  StartServer({"--metrics_http", "/metrics", "--metrics_tags", "env:test,dc:eu"});
  const std::string id = StreamId("ops");
  WsClient a, b, c;
  ASSERT_NE(Connect(a), "");
  ASSERT_NE(Connect(b), "");
  ASSERT_NE(Connect(c), "");
  ASSERT_TRUE(Subscribe(a, id));
  ASSERT_TRUE(Subscribe(b, id));
  ASSERT_EQ(Publish(Pub("ops", "\"hello\"")), 201);
  ASSERT_TRUE(a.WaitFor("hello", 10s).has_value());
  ASSERT_TRUE(b.WaitFor("hello", 10s).has_value());

  std::string raw;
  auto m = Scrape(server_.port(), "/metrics", &raw);
  const std::string tags = "{env=\"test\",dc=\"eu\"}";
  EXPECT_EQ(m["anycable_go_clients_num" + tags], 3) << raw;
  EXPECT_EQ(m["anycable_go_clients_uniq_num" + tags], 3);
  EXPECT_EQ(m["anycable_go_broadcast_msg_total" + tags], 1);
  EXPECT_EQ(m["anycable_go_publications_total" + tags], 1);
  EXPECT_EQ(m["anycable_go_client_msg_total" + tags], 2);  // the two subscribe commands
  EXPECT_EQ(m["anycable_go_rpc_call_total" + tags], 5);    // 3 Connect + 2 Command
  EXPECT_EQ(m["anycable_go_failed_auths_total" + tags], 0);
  EXPECT_GT(m["anycable_go_data_sent_total" + tags], 0);
  EXPECT_GT(m["anycable_go_data_rcvd_total" + tags], 0);
  EXPECT_EQ(m.count("anycable_go_rpc_pending_num" + tags), 1u);
  EXPECT_EQ(m["ringcable_worker_clients_num{env=\"test\",dc=\"eu\",worker=\"0\"}"] +
                m["ringcable_worker_clients_num{env=\"test\",dc=\"eu\",worker=\"1\"}"],
            3);
  EXPECT_EQ(m.count("ringcable_worker_clients_num{env=\"test\",dc=\"eu\",worker=\"2\"}"), 0u);
  // Doorbell wake-ups: RPC replies come back from the dispatcher thread to a worker that sleeps
  // while it waits for them; which worker got the clients is up to the kernel, so sum both.
  EXPECT_GT(m["ringcable_worker_wakeups_total{env=\"test\",dc=\"eu\",worker=\"0\"}"] +
                m["ringcable_worker_wakeups_total{env=\"test\",dc=\"eu\",worker=\"1\"}"],
            0);
  // Send-queue depth per worker: sampled every tick, so its value depends on timing; its
  // presence does not.
  EXPECT_EQ(m.count("ringcable_worker_send_queue_bytes{env=\"test\",dc=\"eu\",worker=\"0\"}"), 1u);
  EXPECT_EQ(m.count("ringcable_worker_send_queue_bytes{env=\"test\",dc=\"eu\",worker=\"1\"}"), 1u);

  // A second publication and a closed client show up in the next scrape.
  c.Close();
  ASSERT_EQ(Publish(Pub("ops", "\"again\"")), 201);
  ASSERT_TRUE(a.WaitFor("again", 10s).has_value());
  std::map<std::string, int64_t> m2;
  for (int i = 0; i < 500; ++i) {  // the close is processed asynchronously; poll, no timing bound
    m2 = Scrape(server_.port(), "/metrics", nullptr);
    if (m2["anycable_go_clients_num" + tags] == 2) break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(m2["anycable_go_clients_num" + tags], 2);
  EXPECT_EQ(m2["anycable_go_broadcast_msg_total" + tags], 2);

  // promtool's own checker, when the prometheus package is installed.
  if (cable::test::RunCommand({"/bin/sh", "-c", "command -v promtool"}, 10s).exit_code == 0) {
    std::string file = "/tmp/ringcable-ops-scrape-" + std::to_string(getpid()) + ".txt";
    std::ofstream(file) << raw;
    auto r = cable::test::RunCommand({"/bin/sh", "-c", "promtool check metrics < " + file}, 30s);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::remove(file.c_str());
  }
}

TEST_F(OpsTest, MetricsPathIsNotServedWhenDisabled) {
  StartServer();
  EXPECT_EQ(cable::test::HttpRequest(server_.port(), "GET", "/metrics").status, 404);
}

TEST_F(OpsTest, SeparateMetricsPort) {
  int mport = cable::test::FreePort();
  StartServer({"--metrics_http", "/prom", "--metrics_port", std::to_string(mport), "--metrics_host",
               "127.0.0.1"});
  WsClient a;
  ASSERT_NE(Connect(a), "");
  auto m = Scrape(mport, "/prom", nullptr);
  EXPECT_EQ(m["anycable_go_clients_num"], 1);
  EXPECT_EQ(cable::test::HttpRequest(mport, "GET", "/other").status, 404);
  EXPECT_EQ(cable::test::HttpRequest(server_.port(), "GET", "/prom").status, 404);
}

TEST_F(OpsTest, MetricsLogWritesDeltasEveryInterval) {
  StartServer({"--metrics_log", "--metrics_rotate_interval", "1"});
  ASSERT_EQ(Publish(Pub("nobody", "\"x\"")), 201);
  bool seen = false;
  for (int i = 0; i < 1000 && !seen; ++i) {  // waits for the line, bounded; no timing assertion
    seen = server_.Log().find("metrics broadcast_msg_total=1 ") != std::string::npos;
    if (!seen) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(seen) << server_.Log();
  EXPECT_NE(server_.Log().find(" clients_num=0 "), std::string::npos);
}

TEST_F(OpsTest, SdNotifyReadyThenStopping) {
  std::string name = "@ringcable-ops-notify-" + std::to_string(getpid());
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, name.data(), name.size());
  addr.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), len), 0);
  timeval tv{20, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  auto recv_one = [fd] {
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    return n < 0 ? std::string("<none>") : std::string(buf, static_cast<size_t>(n));
  };
  ASSERT_TRUE(server_.Start({"--rpc_host", "127.0.0.1:" + std::to_string(rpc_port_), "--workers",
                             "2", "--http_broadcast_port", std::to_string(cable::test::FreePort())},
                            {{"NOTIFY_SOCKET", name}}))
      << server_.Log();
  std::string ready = recv_one();
  EXPECT_EQ(ready, "READY=1\nSTATUS=Listening on 127.0.0.1:" + std::to_string(server_.port()));
  EXPECT_EQ(server_.Stop(), 0);
  EXPECT_EQ(recv_one(), "STOPPING=1\nSTATUS=Shutting down");
  close(fd);
}

TEST_F(OpsTest, BadMetricsTagsIsOneErrorLine) {
  auto r =
      cable::test::RunCommand({cable::test::BinaryPath(), "--port",
                               std::to_string(cable::test::FreePort()), "--metrics_tags", "env"},
                              20s);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "ringcable: invalid metrics tag \"env\": expected key:value\n");
}

TEST_F(OpsTest, ServerRunsFromAPrintedConfig) {
  // --print-config's output saved as a file is a configuration ringcable starts with.
  char tmpl[] = "/tmp/ringcable-ops-printed-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string file = std::string(tmpl) + "/anycable.toml";
  auto printed = cable::test::RunCommand(
      {cable::test::BinaryPath(), "--print-config", "--ignore-config-path", "--path", "/from-file",
       "--metrics_http", "/m", "--metrics_tags", "env:file"},
      20s);
  ASSERT_EQ(printed.exit_code, 0) << printed.output;
  std::ofstream(file) << printed.output;
  StartServer({"--config-path", file});
  WsClient ws;
  EXPECT_EQ(ws.Connect(server_.port(), "/from-file"), 101);
  WsClient other;
  EXPECT_EQ(other.Connect(server_.port(), "/cable"), 404);
  std::string raw;
  Scrape(server_.port(), "/m", &raw);
  EXPECT_NE(raw.find("anycable_go_clients_num{env=\"file\"} "), std::string::npos) << raw;
  EXPECT_EQ(server_.Stop(), 0);
  cable::test::RunCommand({"/bin/rm", "-rf", tmpl}, 10s);
}

TEST_F(OpsTest, BadMetricsPathIsRejected) {
  auto r = cable::test::RunCommand({cable::test::BinaryPath(), "--metrics_http", "metrics"}, 20s);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output,
            "ringcable: invalid value \"metrics\" for flag --metrics_http: must start with '/'\n");
}

}  // namespace
}  // namespace cable::ithub

namespace cable::ithub {
namespace {

// The value text of `key` in [section] ("" = top level) of a --print-config output, skipping
// comments; "<absent>" when the key is not set there.
std::string TomlValue(const std::string& toml, const std::string& section, const std::string& key) {
  std::string current;
  size_t pos = 0;
  while (pos < toml.size()) {
    size_t nl = toml.find('\n', pos);
    if (nl == std::string::npos) nl = toml.size();
    const std::string line = toml.substr(pos, nl - pos);
    pos = nl + 1;
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '[') {
      current = line.substr(1, line.find(']') - 1);
      continue;
    }
    if (current == section && line.rfind(key + " = ", 0) == 0) return line.substr(key.size() + 3);
  }
  return "<absent>";
}

// TOML config file through the real binary's --print-config (anycable-go's anycable.toml).
class ConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ringcable-ops-cfg-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { cable::test::RunCommand({"/bin/rm", "-rf", dir_}, 10s); }
  std::string Write(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  // Runs `cd <dir> && ringcable <args>`.
  cable::test::RunResult Run(const std::vector<std::string>& args,
                             const std::map<std::string, std::string>& env = {}) {
    std::string cmd = "cd '" + dir_ + "' && exec '" + cable::test::BinaryPath() + "'";
    for (const auto& a : args) cmd += " '" + a + "'";
    return cable::test::RunCommand({"/bin/sh", "-c", cmd}, 20s, env);
  }
  std::string dir_;
};

TEST_F(ConfigFileTest, FileIsBelowEnvWhichIsBelowCli) {
  std::string path = Write("my.toml",
                           "port = 9001\nhealth-path = \"/from-file\"\nmetrics_tags = \"a:1\"\n"
                           "[rpc]\nhost = \"file-rpc:50051\"\n[metrics]\nhttp = \"/m\"\n"
                           "[logging]\nlevel = \"warn\"\n");
  auto file_only = Run({"--config-path", path, "--print-config"});
  ASSERT_EQ(file_only.exit_code, 0) << file_only.output;
  const std::string& f = file_only.output;
  EXPECT_EQ(TomlValue(f, "server", "port"), "9001") << f;
  EXPECT_EQ(TomlValue(f, "server", "health_path"), "\"/from-file\"");
  EXPECT_EQ(TomlValue(f, "rpc", "host"), "\"file-rpc:50051\"");
  EXPECT_EQ(TomlValue(f, "metrics", "http"), "\"/m\"");
  EXPECT_EQ(TomlValue(f, "metrics", "tags.a"), "\"1\"");
  EXPECT_EQ(TomlValue(f, "logging", "level"), "\"warn\"");

  auto env = Run({"--config-path", path, "--print-config"},
                 {{"ANYCABLE_PORT", "9002"}, {"ANYCABLE_RPC_HOST", "env-rpc:1"}});
  ASSERT_EQ(env.exit_code, 0) << env.output;
  EXPECT_EQ(TomlValue(env.output, "server", "port"), "9002") << env.output;
  EXPECT_EQ(TomlValue(env.output, "rpc", "host"), "\"env-rpc:1\"");
  EXPECT_EQ(TomlValue(env.output, "server", "health_path"), "\"/from-file\"");

  auto cli =
      Run({"--config-path", path, "--print-config", "--port", "9003"}, {{"ANYCABLE_PORT", "9002"}});
  ASSERT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_EQ(TomlValue(cli.output, "server", "port"), "9003") << cli.output;
}

TEST_F(ConfigFileTest, DefaultFileInWorkingDirectoryAndIgnoreFlag) {
  Write("anycable.toml", "port = 9011\n");
  auto found = Run({"--print-config"});
  ASSERT_EQ(found.exit_code, 0) << found.output;
  EXPECT_EQ(TomlValue(found.output, "server", "port"), "9011") << found.output;
  auto ignored = Run({"--print-config", "--ignore-config-path"});
  ASSERT_EQ(ignored.exit_code, 0) << ignored.output;
  EXPECT_EQ(TomlValue(ignored.output, "server", "port"), "8080") << ignored.output;
}

TEST_F(ConfigFileTest, BadValueNamesKeyAndFile) {
  std::string path = Write("bad.toml", "port = \"abc\"\n");
  auto r = Run({"--config-path", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "ringcable: invalid value \"abc\" for key \"port\" in config file " + path +
                          ": not an integer\n");
}

TEST_F(ConfigFileTest, BadSectionValueNamesKeyAndFile) {
  std::string path = Write("bad.toml", "[metrics]\nhttp = \"nope\"\n");
  auto r = Run({"--config-path", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "ringcable: invalid value \"nope\" for key \"metrics.http\" in config file " +
                          path + ": must start with '/'\n");
}

TEST_F(ConfigFileTest, UnknownKeyIsAnError) {
  std::string path = Write("bad.toml", "nope = 1\n");
  auto r = Run({"--config-path", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "ringcable: unknown key \"nope\" in config file " + path + "\n");
}

TEST_F(ConfigFileTest, FloatValueIsAnError) {
  std::string path = Write("bad.toml", "port = 1.5\n");
  auto r = Run({"--config-path", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "ringcable: invalid value for key \"port\" in config file " + path +
                          ": expected a string, integer, boolean or array\n");
}

TEST_F(ConfigFileTest, SyntaxErrorNamesFileAndLine) {
  std::string path = Write("bad.toml", "port = 1\nhost = \n");
  auto r = Run({"--config-path", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output.rfind("ringcable: config file " + path + ": ", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("(line 2, column "), std::string::npos) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1);
}

TEST_F(ConfigFileTest, PrintConfigReadsBackToTheSameOutput) {
  // Many flags, secrets, lists, a preset and env values; the second run sees only the file.
  const std::vector<std::string> args = {"--print-config",
                                         "--host",
                                         "127.0.0.1",
                                         "--path",
                                         "/cable,/admin/cable",
                                         "--allowed_origins",
                                         "a.example.com,*.example.io",
                                         "--secret",
                                         "s3cr\"t",
                                         "--streams_secret",
                                         "streams",
                                         "--broadcast_key",
                                         "bk",
                                         "--turbo_streams",
                                         "--jwt_param",
                                         "token",
                                         "--headers",
                                         "cookie,x-api-key",
                                         "--proxy-cookies",
                                         "_session",
                                         "--rpc_host",
                                         "dns:///rpc.internal:50051",
                                         "--rpc_concurrency",
                                         "12",
                                         "--broadcast_adapter",
                                         "http,redisx",
                                         "--redis_url",
                                         "redis://u:pw@cache:6379/1",
                                         "--metrics_http",
                                         "/metrics",
                                         "--metrics_tags",
                                         "app:chat,zone:eu",
                                         "--metrics_log",
                                         "--metrics_log_filter",
                                         "clients_num,rpc_call_total",
                                         "--statsd_host",
                                         "127.0.0.1:8125",
                                         "--statsd_tags_format",
                                         "graphite",
                                         "--node_id",
                                         "node-7",
                                         "--presets",
                                         "heroku",
                                         "--disconnect_mode",
                                         "never",
                                         "--ping_timestamp_precision",
                                         "ns",
                                         "--workers",
                                         "2"};
  auto first = Run(args, {{"PORT", "7010"}, {"ANYCABLE_DEBUG", "true"}});
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_EQ(first.output.rfind("# AnyCable server configuration", 0), 0u) << first.output;
  EXPECT_EQ(TomlValue(first.output, "", "presets"), "[\"heroku\"]");
  EXPECT_EQ(TomlValue(first.output, "http_broadcast", "port"), "7010");  // heroku: $PORT
  EXPECT_EQ(TomlValue(first.output, "", "secret"), "\"s3cr\\\"t\"");
  EXPECT_EQ(TomlValue(first.output, "metrics.statsd", "host"), "\"127.0.0.1:8125\"");
  const std::string path = Write("saved.toml", first.output);
  auto second = Run({"--config-path", path, "--print-config"});
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_EQ(second.output, first.output);
}

TEST_F(ConfigFileTest, DetectedPresetsShowTheirEffect) {
  const std::map<std::string, std::string> fly = {{"FLY_APP_NAME", "chat"},
                                                  {"FLY_REGION", "ams"},
                                                  {"FLY_ALLOC_ID", "a1b2"},
                                                  {"ANYCABLE_FLY_RPC_APP_NAME", "web"}};
  std::map<std::string, std::string> with_redis = fly;
  with_redis["REDIS_URL"] = "redis://cache:6379";
  auto first = Run({"--print-config", "--port", "8081"}, with_redis);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_EQ(TomlValue(first.output, "server", "host"), "\"0.0.0.0\"");
  EXPECT_EQ(TomlValue(first.output, "http_broadcast", "port"), "8081");
  EXPECT_EQ(TomlValue(first.output, "", "pubsub_adapter"), "\"redis\"");
  EXPECT_EQ(TomlValue(first.output, "rpc", "host"), "\"dns:///ams.web.internal:50051\"");
  EXPECT_NE(first.output.find("# (detected from the environment: fly)\n"), std::string::npos);
  const std::string path = Write("fly.toml", first.output);
  auto second = Run({"--config-path", path, "--print-config"}, fly);
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_EQ(second.output, first.output);
}

TEST_F(ConfigFileTest, UnknownPresetIsOneErrorLine) {
  auto r = Run({"--presets", "fly,koyeb"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output,
            "ringcable: invalid value \"fly,koyeb\" for flag --presets: unknown preset \"koyeb\" "
            "(supported: none, fly, heroku, broker)\n");
}

TEST_F(ConfigFileTest, KnownButUnsupportedKeysFailLikeTheirFlags) {
  std::string path = Write("ds.toml", "[ds]\nenabled = true\n");
  auto r = Run({"--config-path", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "ringcable: flag --ds is not supported by ringcable yet\n");
  path = Write("redis.toml", "[redis]\nmax_reconnect_attempts = 10\n");
  r = Run({"--config-path", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "ringcable: key \"redis.max_reconnect_attempts\" in config file " + path +
                          ": value \"10\" is not supported by ringcable yet (only \"5\")\n");
  // At anycable-go's defaults the same keys are fine.
  path = Write("ok.toml",
               "[broker]\n# adapter = \"memory\"\nhistory_limit = 100\n"
               "[redis]\nmax_reconnect_attempts = 5\n");
  r = Run({"--config-path", path, "--print-config"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(ConfigFileTest, MissingExplicitFileIsAnError) {
  auto r = Run({"--config-path", dir_ + "/none.toml"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "ringcable: cannot read config file " + dir_ +
                          "/none.toml: No such file or directory\n");
}

}  // namespace
}  // namespace cable::ithub
