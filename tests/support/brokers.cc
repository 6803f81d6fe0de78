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

bool RedisCluster::Start(int masters, int replicas, int node_timeout_ms) {
  const int total = masters * (1 + replicas);
  for (int i = 0; i < total; ++i) {
    auto node = std::make_unique<BrokerProcess>(BrokerProcess::Kind::kRedis);
    // nodes.conf lives in the node's own directory (redis --dir), so a restart keeps its identity.
    if (!node->Start({"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                      "--cluster-node-timeout", std::to_string(node_timeout_ms), "--cluster-port",
                      std::to_string(FreePort()),
                      // Replicas sync at once and may always take over: a failover test kills a
                      // master seconds after the cluster was made.
                      "--repl-diskless-sync-delay", "0", "--cluster-replica-validity-factor",
                      "0"})) {
      error_ = "redis-server node " + std::to_string(i) + " did not start:\n" + node->Log();
      return false;
    }
    nodes_.push_back(std::move(node));
  }
  std::vector<std::string> argv = {"redis-cli", "--cluster", "create"};
  for (auto& n : nodes_) argv.push_back("127.0.0.1:" + std::to_string(n->port()));
  argv.insert(argv.end(), {"--cluster-replicas", std::to_string(replicas), "--cluster-yes"});
  RunResult created = RunCommand(argv, 60s);
  if (created.exit_code != 0) {
    error_ = "redis-cli --cluster create failed:\n" + created.output;
    return false;
  }
  if (!WaitHealthy(30s)) {
    error_ = "the cluster did not become healthy:\n" + Cli(0, {"CLUSTER", "INFO"});
    return false;
  }
  // Every replica has its master's data (a replica that never synced cannot be promoted).
  auto deadline = Clock::now() + 30s;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    while (true) {
      std::string info = Cli(i, {"INFO", "replication"});
      if (info.find("role:master") != std::string::npos ||
          info.find("master_link_status:up") != std::string::npos) {
        break;
      }
      if (Clock::now() > deadline) {
        error_ = "replica " + std::to_string(i) + " did not sync:\n" + info;
        return false;
      }
      std::this_thread::sleep_for(50ms);
    }
  }
  return true;
}

std::string RedisCluster::Url() const {
  std::string url;
  for (const auto& n : nodes_) url += (url.empty() ? "" : ",") + n->url();
  return url;
}

std::string RedisCluster::Cli(size_t i, const std::vector<std::string>& args) {
  return RedisCli(nodes_[i]->port(), args);
}

int RedisCluster::IndexOfPort(int port) const {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i]->port() == port) return static_cast<int>(i);
  }
  return -1;
}

namespace {
// Lines of CLUSTER NODES: "<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link>
// <slot ranges...>"; returns (port, flags, slot ranges) of each.
struct NodeLine {
  int port = 0;
  std::string flags;
  std::string link;
  std::vector<std::string> ranges;
};
std::vector<NodeLine> ParseClusterNodes(const std::string& text) {
  std::vector<NodeLine> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string w; fields >> w;) f.push_back(w);
    if (f.size() < 8) continue;
    NodeLine n;
    size_t colon = f[1].rfind(':');
    n.port = std::atoi(f[1].c_str() + colon + 1);  // stops at '@'
    n.flags = f[2];
    n.link = f[7];
    n.ranges.assign(f.begin() + 8, f.end());
    out.push_back(std::move(n));
  }
  return out;
}
bool RangeHas(const std::string& range, int slot) {
  if (range.empty() || range[0] == '[') return false;  // a slot being migrated/imported
  size_t dash = range.find('-');
  int lo = std::atoi(range.c_str());
  int hi = dash == std::string::npos ? lo : std::atoi(range.c_str() + dash + 1);
  return slot >= lo && slot <= hi;
}
}  // namespace

int RedisCluster::MasterOf(int slot) {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (!nodes_[i]->running()) continue;
    for (const auto& n : ParseClusterNodes(Cli(i, {"CLUSTER", "NODES"}))) {
      if (n.flags.find("master") == std::string::npos || n.flags.find("fail") != std::string::npos)
        continue;
      for (const auto& r : n.ranges) {
        if (RangeHas(r, slot)) return IndexOfPort(n.port);
      }
    }
    return -1;
  }
  return -1;
}

std::vector<int> RedisCluster::Masters() {
  std::vector<int> out;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (!nodes_[i]->running()) continue;
    for (const auto& n : ParseClusterNodes(Cli(i, {"CLUSTER", "NODES"}))) {
      if (n.flags.find("master") != std::string::npos &&
          n.flags.find("fail") == std::string::npos && !n.ranges.empty()) {
        out.push_back(IndexOfPort(n.port));
      }
    }
    break;
  }
  return out;
}

bool RedisCluster::WaitHealthy(std::chrono::milliseconds timeout, int slot) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    bool ok = true;
    int owner = -2;
    for (size_t i = 0; ok && i < nodes_.size(); ++i) {
      if (!nodes_[i]->running()) continue;
      ok = Cli(i, {"CLUSTER", "INFO"}).find("cluster_state:ok") != std::string::npos;
      if (ok && slot >= 0) {
        int here = -1;
        for (const auto& n : ParseClusterNodes(Cli(i, {"CLUSTER", "NODES"}))) {
          if (n.flags.find("master") == std::string::npos ||
              n.flags.find("fail") != std::string::npos)
            continue;
          for (const auto& r : n.ranges) {
            if (RangeHas(r, slot)) here = IndexOfPort(n.port);
          }
        }
        ok = here >= 0 && nodes_[static_cast<size_t>(here)]->running() &&
             (owner == -2 || owner == here);
        owner = here;
      }
    }
    if (ok) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

std::string RedisCluster::Logs() const {
  std::string out;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    out += "---- redis node " + std::to_string(i) + " (port " + std::to_string(nodes_[i]->port()) +
           ") ----\n" + nodes_[i]->Log();
  }
  return out;
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
