#include "httprpc_fixture.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/support/test_support.h"

namespace cable::httprpc {

std::string AppDir() {
  const char* src = std::getenv("RINGCABLE_SOURCE_DIR");
  return std::string(src ? src : ".") + "/tests/integration/httprpc/app";
}

NodeApp::~NodeApp() {
  Stop();
  if (!log_path_.empty()) unlink(log_path_.c_str());
}

bool NodeApp::Start(const std::string& script, const std::vector<std::string>& args, int port) {
  if (log_path_.empty()) {
    char path[] = "/tmp/ringcable-httprpc-app.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return false;
    close(fd);
    log_path_ = path;
  }
  const size_t listening_before = Count("listening on");
  if (port == 0) port = test::FreePort();
  std::vector<std::string> argv = {
      "node",   "--import",          AppDir() + "/dir_imports.mjs", AppDir() + "/" + script,
      "--port", std::to_string(port)};
  argv.insert(argv.end(), args.begin(), args.end());
  int out = open(log_path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (out < 0) return false;
  pid_ = test::SpawnProcess(argv, {}, out, out, 0, /*search_path=*/true);
  close(out);
  if (pid_ < 0) return false;
  port_ = port;
  return WaitOutput("listening on", listening_before + 1);
}

void NodeApp::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  for (int i = 0; i < 100; ++i) {
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(100ms);
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

std::string NodeApp::Output() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t NodeApp::Count(const std::string& needle) const {
  if (log_path_.empty()) return 0;
  const std::string out = Output();
  size_t n = 0;
  for (size_t at = out.find(needle); at != std::string::npos; at = out.find(needle, at + 1)) ++n;
  return n;
}

bool NodeApp::WaitOutput(const std::string& needle, size_t count,
                         std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (Count(needle) >= count) return true;
    std::this_thread::sleep_for(20ms);
  }
  return Count(needle) >= count;
}

std::vector<std::string> NodeApp::Lines(const std::string& prefix) const {
  std::vector<std::string> lines;
  std::istringstream in(Output());
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) lines.push_back(line);
  }
  return lines;
}

long Metric(int port, const std::string& name) {
  auto r = test::HttpRequest(port, "GET", "/metrics");
  const std::string key = "\nanycable_go_" + name + " ";
  size_t at = r.body.find(key);
  if (r.status != 200 || at == std::string::npos) return -1;
  return std::strtol(r.body.c_str() + at + key.size(), nullptr, 10);
}

long WaitMetric(int port, const std::string& name, long at_least,
                std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  long seen = Metric(port, name);
  while (seen < at_least && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
    seen = Metric(port, name);
  }
  return seen;
}

}  // namespace cable::httprpc
