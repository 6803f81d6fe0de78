#include "tests/integration/tls/tls_util.h"

#include <unistd.h>

#include <cstdlib>
#include <sstream>

#include "test_support.h"

namespace cable::ittls {

using namespace std::chrono_literals;

CertDir::CertDir() {
  char tmpl[] = "/tmp/ringcable-tls-XXXXXX";
  if (!mkdtemp(tmpl)) {
    error_ = "mkdtemp failed";
    return;
  }
  dir_ = tmpl;
  auto r = cable::test::RunCommand(
      {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
       "-nodes", "-keyout", key(), "-out", cert(), "-days", "2", "-subj", "/CN=localhost"},
      60s);
  if (r.exit_code != 0) {
    error_ = "openssl req: " + r.output;
    return;
  }
  r = cable::test::RunCommand({"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                               "ec_paramgen_curve:prime256v1", "-out", other_key()},
                              60s);
  if (r.exit_code != 0) {
    error_ = "openssl genpkey: " + r.output;
    return;
  }
  ok_ = true;
}

CertDir::~CertDir() {
  if (dir_.empty()) return;
  cable::test::RunCommand({"rm", "-rf", dir_}, 10s);
}

std::vector<std::string> PublicArgs() {
  return {"--noauth",        "--public_streams",
          "--broadcast_key", kBroadcastKey,
          "--metrics_http",  "/metrics",
          "--workers",       "2",
          "--ping_interval", "60"};
}

std::string PubsubId(const std::string& stream) {
  return "{\"channel\":\"$pubsub\",\"stream_name\":" + cable::test::JsonString(stream) + "}";
}

std::string SubscribeCommand(const std::string& identifier) {
  return "{\"command\":\"subscribe\",\"identifier\":" + cable::test::JsonString(identifier) + "}";
}

std::string Publication(const std::string& stream, const std::string& data_json) {
  return "{\"stream\":" + cable::test::JsonString(stream) +
         ",\"data\":" + cable::test::JsonString(data_json) + "}";
}

std::string Delivered(const std::string& identifier, const std::string& data_json) {
  return "{\"identifier\":" + cable::test::JsonString(identifier) + ",\"message\":" + data_json +
         "}";
}

long long SumSeries(const std::string& metrics_text, const std::string& name) {
  std::istringstream in(metrics_text);
  std::string line;
  long long total = -1;
  while (std::getline(in, line)) {
    if (line.rfind(name + "{", 0) != 0) continue;
    size_t sp = line.rfind(' ');
    if (sp == std::string::npos) continue;
    total = (total < 0 ? 0 : total) + std::atoll(line.c_str() + sp + 1);
  }
  return total;
}

}  // namespace cable::ittls
