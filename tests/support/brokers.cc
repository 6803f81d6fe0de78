#include "brokers.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "test_support.h"

namespace cable::test {
namespace {

using Clock = std::chrono::steady_clock;

int ConnectLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Reads until `needle` appears (bounded by the socket timeout).
bool ReadUntil(int fd, const std::string& needle, std::string* got) {
  char buf[4096];
  while (got->find(needle) == std::string::npos) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return false;
    got->append(buf, static_cast<size_t>(n));
  }
  return true;
}

bool Ready(BrokerProcess::Kind kind, int port) {
  int fd = ConnectLoopback(port);
  if (fd < 0) return false;
  std::string got;
  bool ok;
  if (kind == BrokerProcess::Kind::kRedis) {
    // With --requirepass the answer is -NOAUTH, which still means the server is up.
    ok = SendAll(fd, "PING\r\n") && ReadUntil(fd, "\r\n", &got) &&
         (got.rfind("+PONG", 0) == 0 || got.rfind("-NOAUTH", 0) == 0);
  } else {
    ok = ReadUntil(fd, "\r\n", &got) && got.rfind("INFO", 0) == 0;
  }
  close(fd);
  return ok;
}

}  // namespace

std::string BrokerProcess::FindBinary(Kind kind) {
  const char* name = kind == Kind::kRedis ? "redis-server" : "nats-server";
  for (const char* dir : {"/usr/bin/", "/usr/sbin/", "/usr/local/bin/", "/usr/local/sbin/"}) {
    std::string p = std::string(dir) + name;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

BrokerProcess::~BrokerProcess() {
  Kill();
  if (!dir_.empty()) RunCommand({"/bin/rm", "-rf", dir_}, 10s);
}

bool BrokerProcess::Start(const std::vector<std::string>& extra) {
  if (pid_ > 0) return true;
  std::string bin = FindBinary(kind_);
  if (bin.empty()) return false;
  extra_ = extra;
  if (dir_.empty()) {
    char tmpl[] = "/tmp/ringcable-broker-XXXXXX";
    if (!mkdtemp(tmpl)) return false;
    dir_ = tmpl;
  }
  if (port_ == 0) port_ = FreePort();
  std::vector<std::string> argv = {bin};
  if (kind_ == Kind::kRedis) {
    argv.insert(argv.end(), {"--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", dir_, "--daemonize", "no",
                             "--protected-mode", "no"});
  } else {
    argv.insert(argv.end(), {"-a", "127.0.0.1", "-p", std::to_string(port_)});
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  std::string log = dir_ + "/broker.log";
  int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return false;
  pid_ = SpawnProcess(argv, {}, log_fd, log_fd);
  close(log_fd);
  if (pid_ < 0) return false;
  // A restart on the same port may race the old socket's TIME_WAIT: both brokers set SO_REUSEADDR,
  // so waiting for readiness is enough.
  auto deadline = Clock::now() + 10s;
  while (Clock::now() < deadline) {
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    if (Ready(kind_, port_)) return true;
    std::this_thread::sleep_for(20ms);
  }
  Kill();
  return false;
}

void BrokerProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

void BrokerProcess::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  auto deadline = Clock::now() + 10s;
  int status;
  while (Clock::now() < deadline) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(10ms);
  }
  Kill();
}

std::string BrokerProcess::url() const {
  return std::string(kind_ == Kind::kRedis ? "redis" : "nats") +
         "://127.0.0.1:" + std::to_string(port_);
}

std::string BrokerProcess::Log() const {
  std::ifstream in(dir_ + "/broker.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string RedisCli(int port, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"redis-cli", "--raw", "-h",
                                   "127.0.0.1", "-p",    std::to_string(port)};
  argv.insert(argv.end(), args.begin(), args.end());
  for (const char* dir : {"/usr/bin/", "/usr/local/bin/"}) {
    std::string p = std::string(dir) + "redis-cli";
    if (access(p.c_str(), X_OK) == 0) {
      argv[0] = p;
      break;
    }
  }
  return RunCommand(argv, 10s).output;
}

bool NatsPublish(int port, const std::string& subject, const std::string& payload) {
  int fd = ConnectLoopback(port);
  if (fd < 0) return false;
  std::string got;
  bool ok = ReadUntil(fd, "\r\n", &got) &&
            SendAll(fd, "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPUB " + subject + " " +
                            std::to_string(payload.size()) + "\r\n" + payload + "\r\nPING\r\n") &&
            ReadUntil(fd, "PONG\r\n", &got);
  close(fd);
  return ok;
}

}  // namespace cable::test
