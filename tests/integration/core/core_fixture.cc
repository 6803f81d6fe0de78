#include "core_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

namespace cable::itcore {

void Gate::Wait(const std::shared_ptr<std::atomic<bool>>& flag, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!flag->load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
}

RunOutput RunToExit(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                    const std::map<std::string, std::string>& env) {
  RunOutput result;
  int out_pipe[2];
  int err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return result;
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return result;
  }
  pid_t pid = cable::test::SpawnProcess(argv, env, out_pipe[1], err_pipe[1]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (pid < 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    return result;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) break;
    if (poll(fds, 2, static_cast<int>(left)) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return result;
    }
    std::this_thread::sleep_for(5ms);
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::string RawExchange(int port, const std::string& bytes, const std::string& until,
                        std::chrono::milliseconds timeout) {
  std::string got;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return got;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size())) {
    close(fd);
    return got;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (got.find(until) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return got;
}

RawServer::~RawServer() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  if (!log_path_.empty()) unlink(log_path_.c_str());
}

bool RawServer::Start(const std::vector<std::string>& args,
                      const std::map<std::string, std::string>& env, int port,
                      const std::string& probe_path) {
  char tmpl[] = "/tmp/ringcable-itcore-XXXXXX";
  int log_fd = mkstemp(tmpl);
  if (log_fd < 0) return false;
  log_path_ = tmpl;
  std::vector<std::string> argv = {cable::test::BinaryPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_ = cable::test::SpawnProcess(argv, env, log_fd, log_fd);
  close(log_fd);
  if (pid_ < 0) return false;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    if (cable::test::HttpRequest(port, "GET", probe_path).status == 200) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

int RawServer::Stop(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(10ms);
  }
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return -1;
}

std::string RawServer::Log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void CoreTest::SetUp() {
  rpc_port_ = rpc_.Start("127.0.0.1:0");
  ASSERT_NE(rpc_port_, 0) << "cannot start the scripted RPC server";
}

void CoreTest::TearDown() {
  if (HasFailure() && server_.pid() > 0) {
    std::cerr << "---- ringcable log ----\n" << server_.Log() << "-----------------------\n";
  }
  server_.Kill();
  rpc_.Stop();
}

void CoreTest::StartServer(const std::vector<std::string>& extra) {
  broadcast_port_ = cable::test::FreePort();
  std::vector<std::string> args = {"--rpc_host", "127.0.0.1:" + std::to_string(rpc_port_),
                                   "--http_broadcast_port", std::to_string(broadcast_port_)};
  args.insert(args.end(), extra.begin(), extra.end());
  ASSERT_TRUE(server_.Start(args)) << "ringcable did not start:\n" << server_.Log();
}

void CoreTest::ConnectWelcome(WsClient& ws, const std::string& sid, const std::string& path,
                              std::map<std::string, std::string> headers) {
  headers["X-Request-ID"] = sid;
  ASSERT_EQ(ws.Connect(server_.port(), path, headers), 101);
  WsFrame f = ws.NextMessage();
  ASSERT_EQ(f.opcode, 1) << "no welcome; close=" << ws.last_close().close_code();
  ASSERT_EQ(f.payload, WelcomeFrame(sid));
}

void CoreTest::SubscribeConfirmed(WsClient& ws, const std::string& identifier) {
  ASSERT_TRUE(ws.Subscribe(identifier));
  WsFrame f = ws.NextMessage();
  ASSERT_EQ(f.opcode, 1);
  ASSERT_EQ(f.payload, ConfirmFrame(identifier));
}

void CoreTest::Barrier(WsClient& ws) {
  ASSERT_TRUE(ws.SendText(R"({"command":"ping"})"));
  WsFrame f = ws.NextMessage();
  ASSERT_EQ(f.opcode, 1);
  ASSERT_EQ(f.payload, R"({"type":"pong"})");
}

void CoreTest::Broadcast(const std::string& body) {
  auto r = cable::test::HttpRequest(broadcast_port_, "POST", "/_broadcast",
                                    {{"Content-Type", "application/json"}}, body);
  ASSERT_EQ(r.status, 201) << body;
}

std::string CoreTest::ConnectExt(WsClient& ws, const std::string& path,
                                 const std::map<std::string, std::string>& headers) {
  EXPECT_EQ(ws.Connect(server_.port(), path, headers, {kExtProtocol}), 101);
  EXPECT_EQ(ws.response_headers().count("sec-websocket-protocol"), 1u);
  if (ws.response_headers().count("sec-websocket-protocol")) {
    EXPECT_EQ(ws.response_headers().at("sec-websocket-protocol"), kExtProtocol);
  }
  WsFrame f = ws.NextMessage();
  EXPECT_EQ(f.opcode, 1) << "no welcome; close=" << ws.last_close().close_code();
  return f.payload;
}

std::string CoreTest::StringFieldOf(const std::string& json, const std::string& key) {
  const std::string quoted = "\"" + key + "\":\"";
  size_t b = json.find(quoted);
  if (b == std::string::npos) return "";
  b += quoted.size();
  return json.substr(b, json.find('"', b) - b);
}

}  // namespace cable::itcore
