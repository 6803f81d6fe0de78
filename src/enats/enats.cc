// enats: --enats_* → nats-server configuration, and the supervised nats-server child.
#include "enats/enats.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "common/log.h"

extern char** environ;

namespace cable::enats {
namespace {

constexpr int64_t kFirstRestartDelayMs = 250;
constexpr int64_t kMaxRestartDelayMs = 5000;
constexpr int64_t kStableRunMs = 10000;  // a child that ran this long resets the backoff
constexpr int kRestartReadyTimeoutMs = 15000;

int64_t MonoMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t at = s.find(sep, start);
    out.push_back(Trim(s.substr(start, at == std::string::npos ? at : at - start)));
    if (at == std::string::npos) return out;
    start = at + 1;
  }
}

// A double-quoted string for nats-server's configuration format (JSON-style escapes).
std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

bool HasControl(const std::string& s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

struct HostPort {
  std::string host;  // as written, without brackets
  int port = 0;
};

// "nats://host:port", "host:port" (also "nats://[v6]:port"): the listen address of a flag.
cable::Result<HostPort, std::string> ParseListen(const std::string& flag, const std::string& raw) {
  std::string rest = Trim(raw);
  const std::string bad = "--" + flag + ": ";
  if (HasControl(rest)) return cable::MakeError(bad + "control character in \"" + raw + "\"");
  if (size_t sep = rest.find("://"); sep != std::string::npos) rest = rest.substr(sep + 3);
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  HostPort hp;
  std::string port;
  if (!rest.empty() && rest[0] == '[') {
    size_t close = rest.find(']');
    if (close == std::string::npos) {
      return cable::MakeError(bad + "unterminated IPv6 address in \"" + raw + "\"");
    }
    hp.host = rest.substr(1, close - 1);
    if (close + 1 < rest.size() && rest[close + 1] == ':') port = rest.substr(close + 2);
  } else if (size_t colon = rest.rfind(':'); colon != std::string::npos) {
    hp.host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (port.empty()) return cable::MakeError(bad + "missing port in \"" + raw + "\"");
  if (port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoi(port) < 1 || std::stoi(port) > 65535) {
    return cable::MakeError(bad + "bad port \"" + port + "\" in \"" + raw + "\"");
  }
  hp.port = std::stoi(port);
  return hp;
}

std::string Listen(const HostPort& hp) {
  const std::string host = hp.host.empty() ? "0.0.0.0" : hp.host;
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(hp.port);
  return host + ":" + std::to_string(hp.port);
}

// anycable-go's generated name: the client address without ':' and '/', plus 3 random chars.
std::string GeneratedServerName(const std::string& addr) {
  std::string name;
  for (char c : addr) {
    if (c == '/') continue;
    name += c == ':' ? '-' : c;
  }
  static constexpr char kAlphabet[] =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz-";
  std::random_device rd;
  name += '-';
  for (int i = 0; i < 3; ++i) name += kAlphabet[rd() % (sizeof kAlphabet - 1)];
  return name;
}

bool Executable(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

std::string TempDir() {
  const char* t = getenv("TMPDIR");
  return t && *t ? std::string(t) : std::string("/tmp");
}

// Connects to the child's client port and reads the INFO line (bounded: ~1 s). True when it
// carries our server name, so a foreign server already on that port is not mistaken for ours.
bool AnswersInfo(const std::string& host, int port, const std::string& server_name) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res) {
    return false;
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  bool ok = false;
  if (fd >= 0) {
    int rc = connect(fd, res->ai_addr, res->ai_addrlen);
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    if ((rc == 0 || (errno == EINPROGRESS && poll(&p, 1, 300) == 1)) &&
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
      std::string got;
      char buf[4096];
      int64_t deadline = MonoMs() + 700;
      while (got.find("\r\n") == std::string::npos && got.size() < 65536) {
        int64_t left = deadline - MonoMs();
        p = {fd, POLLIN, 0};
        if (left <= 0 || poll(&p, 1, static_cast<int>(left)) != 1) break;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        got.append(buf, static_cast<size_t>(n));
      }
      ok = got.rfind("INFO ", 0) == 0 &&
           got.find("\"server_name\":\"" + server_name + "\"") != std::string::npos;
    }
    close(fd);
  }
  freeaddrinfo(res);
  return ok;
}

std::string DescribeStatus(int status) {
  if (WIFEXITED(status)) {
    int code = WEXITSTATUS(status);
    if (code == 127) return "could not be executed (exit status 127)";
    return "exited with status " + std::to_string(code);
  }
  if (WIFSIGNALED(status)) {
    return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  return "stopped";
}

}  // namespace

cable::Result<std::string, std::string> FindBinary(const std::string& configured) {
  if (!configured.empty()) {
    if (configured.find('/') == std::string::npos) {
      // A bare name is looked up like the default.
      const char* path = getenv("PATH");
      for (const auto& dir : Split(path ? path : "", ':')) {
        if (!dir.empty() && Executable(dir + "/" + configured)) return dir + "/" + configured;
      }
    } else if (Executable(configured)) {
      return configured;
    }
    return cable::MakeError("--enats_server_path: " + configured +
                            " is not an executable file (install Debian's nats-server package, "
                            "or point --enats_server_path at nats-server)");
  }
  const char* path = getenv("PATH");
  std::vector<std::string> dirs = Split(path ? path : "", ':');
  for (const char* extra : {"/usr/sbin", "/usr/local/sbin", "/sbin"}) dirs.push_back(extra);
  for (const auto& dir : dirs) {
    if (!dir.empty() && Executable(dir + "/nats-server")) return dir + "/nats-server";
  }
  return cable::MakeError(std::string(
      "--embed_nats: nats-server not found in PATH, /usr/sbin, /usr/local/sbin or /sbin "
      "(install Debian's nats-server package, or set --enats_server_path)"));
}

cable::Result<Plan, std::string> MakePlan(const config::Config& cfg) {
  Plan plan;
  auto client = ParseListen("enats_addr", cfg.enats_addr);
  if (!client.ok()) return cable::MakeError(client.error());
  plan.client_port = client->port;
  const std::string& h = client->host;
  plan.client_host = h.empty() || h == "0.0.0.0" ? "127.0.0.1" : h == "::" ? "::1" : h;
  plan.server_name = Trim(cfg.enats_server_name);
  if (plan.server_name.empty()) plan.server_name = GeneratedServerName(Trim(cfg.enats_addr));
  if (HasControl(plan.server_name) || plan.server_name.find(' ') != std::string::npos) {
    return cable::MakeError("--enats_server_name: must not contain spaces or control characters");
  }
  plan.jetstream = cfg.broker == "nats";
  plan.log_to_stderr = cfg.enats_debug || cfg.enats_trace;

  std::ostringstream conf;
  conf << "# Generated by ringcable for --embed_nats; rewritten on every start.\n";
  conf << "server_name: " << Quote(plan.server_name) << "\n";
  conf << "listen: " << Quote(Listen(client.value())) << "\n";
  if (cfg.enats_max_payload > 0) conf << "max_payload: " << cfg.enats_max_payload << "\n";
  if (cfg.enats_debug) conf << "debug: true\n";
  if (cfg.enats_trace) conf << "trace: true\n";
  plan.description = "nats://" + Listen(client.value());

  const std::string cluster_name = Trim(cfg.enats_cluster_name);
  if (HasControl(cluster_name) || cluster_name.find(' ') != std::string::npos) {
    return cable::MakeError("--enats_cluster_name: must not contain spaces or control characters");
  }
  std::vector<std::string> routes;
  for (const auto& r : Split(cfg.enats_cluster_routes, ',')) {
    if (r.empty()) continue;
    if (HasControl(r)) return cable::MakeError("--enats_cluster_routes: control character");
    if (r.find("://") == std::string::npos) {
      return cable::MakeError("--enats_cluster_routes: \"" + r +
                              "\" is not a URL (want nats://host:port)");
    }
    routes.push_back(r);
  }
  if (!Trim(cfg.enats_cluster).empty()) {
    if (cluster_name.empty()) {
      return cable::MakeError(std::string("--enats_cluster_name: must not be empty"));
    }
    auto listen = ParseListen("enats_cluster", cfg.enats_cluster);
    if (!listen.ok()) return cable::MakeError(listen.error());
    conf << "cluster {\n  name: " << Quote(cluster_name)
         << "\n  listen: " << Quote(Listen(listen.value())) << "\n";
    plan.description += " (cluster: " + Trim(cfg.enats_cluster) + ", cluster_name: " + cluster_name;
    if (!routes.empty()) {
      conf << "  routes: [";
      std::string joined;
      for (size_t i = 0; i < routes.size(); ++i) {
        conf << (i ? ", " : "") << Quote(routes[i]);
        joined += (i ? "," : "") + routes[i];
      }
      conf << "]\n";
      plan.description += ", routes: " + joined;
    }
    conf << "}\n";
    plan.description += ")";
  } else if (!routes.empty()) {
    // As anycable-go: routes only mean something with a cluster address to listen on.
    LOG_WARN("--enats_cluster_routes ignored: the embedded NATS server has no --enats_cluster");
  }
  if (!Trim(cfg.enats_gateway).empty()) {
    auto listen = ParseListen("enats_gateway", cfg.enats_gateway);
    if (!listen.ok()) return cable::MakeError(listen.error());
    conf << "gateway {\n  name: " << Quote(cluster_name)
         << "\n  listen: " << Quote(Listen(listen.value())) << "\n";
    const std::string advertise = Trim(cfg.enats_gateway_advertise);
    if (!advertise.empty()) {
      if (HasControl(advertise)) return cable::MakeError("--enats_gateway_advertise: bad value");
      conf << "  advertise: " << Quote(advertise) << "\n";
    }
    // "name:url1,url2;name2:url3"
    std::vector<std::string> remotes;
    for (const auto& g : Split(cfg.enats_gateways, ';')) {
      if (g.empty()) continue;
      size_t colon = g.find(':');
      std::string name = colon == std::string::npos ? "" : Trim(g.substr(0, colon));
      if (name.empty() || HasControl(g)) {
        return cable::MakeError("--enats_gateways: \"" + g +
                                "\" is not name:url[,url] (want name_a:url1,url2;name_b:url3)");
      }
      std::string urls;
      for (const auto& u : Split(g.substr(colon + 1), ',')) {
        if (u.empty()) continue;
        urls += (urls.empty() ? "" : ", ") + Quote(u);
      }
      if (urls.empty()) {
        return cable::MakeError("--enats_gateways: gateway \"" + name + "\" has no URL");
      }
      remotes.push_back("{name: " + Quote(name) + ", urls: [" + urls + "]}");
    }
    if (!remotes.empty()) {
      conf << "  gateways: [\n";
      for (const auto& r : remotes) conf << "    " << r << "\n";
      conf << "  ]\n";
    }
    conf << "}\n";
    plan.description += " (gateway: " + Trim(cfg.enats_gateway) + ")";
  }
  if (plan.jetstream) {
    plan.store_dir = Trim(cfg.enats_store_dir);
    if (plan.store_dir.empty()) plan.store_dir = TempDir() + "/nats-data/" + plan.server_name;
    if (HasControl(plan.store_dir)) return cable::MakeError("--enats_store_dir: bad path");
    conf << "jetstream {\n  store_dir: " << Quote(plan.store_dir) << "\n}\n";
    plan.description += " (JetStream: " + plan.store_dir + ")";
  }
  plan.config_text = conf.str();
  auto binary = FindBinary(Trim(cfg.enats_server_path));
  if (!binary.ok()) return cable::MakeError(binary.error());
  plan.binary = binary.value();
  return plan;
}

// ------------------------------------------------------------------------------------------------
// Server

cable::Result<std::unique_ptr<Server>, std::string> Server::Start(const Plan& plan,
                                                                  int ready_timeout_ms) {
  std::unique_ptr<Server> server(new Server());
  server->plan_ = plan;
  std::string tmpl = TempDir() + "/ringcable-enats-XXXXXX";
  if (!mkdtemp(tmpl.data())) {
    return cable::MakeError("--embed_nats: cannot create a directory in " + TempDir() + ": " +
                            strerror(errno));
  }
  server->run_dir_ = tmpl;
  server->config_path_ = server->run_dir_ + "/nats.conf";
  server->log_path_ = server->run_dir_ + "/nats-server.log";
  {
    std::ofstream out(server->config_path_);
    out << plan.config_text;
    if (!plan.log_to_stderr) out << "log_file: " << Quote(server->log_path_) << "\n";
    if (!out) {
      server->Stop();
      return cable::MakeError("--embed_nats: cannot write " + server->config_path_);
    }
  }
  server->argv_ = {plan.binary, "-c", server->config_path_};
  for (char** e = environ; e && *e; ++e) server->env_.emplace_back(*e);
  server->stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (server->stop_fd_ < 0) {
    server->Stop();
    return cable::MakeError(std::string("--embed_nats: eventfd: ") + strerror(errno));
  }
  auto pid = server->SpawnAndWaitReady(ready_timeout_ms);
  if (!pid.ok()) {
    std::string error = "--embed_nats: " + pid.error();
    server->Stop();
    return cable::MakeError(std::move(error));
  }
  server->pid_.store(pid.value(), std::memory_order_release);
  LOG_INFO("embedded NATS server started: %s (%s, pid %d)", plan.description.c_str(),
           plan.server_name.c_str(), static_cast<int>(pid.value()));
  server->supervisor_ = std::thread([s = server.get()] { s->Supervise(); });
  return server;
}

Server::~Server() { Stop(); }

pid_t Server::Spawn() {
  // Everything the child needs is made here, before fork (see the header).
  std::vector<char*> argv;
  for (auto& a : argv_) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env_) envp.push_back(e.data());
  envp.push_back(nullptr);
  int log_fd = -1;
  if (!plan_.log_to_stderr) {
    log_fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  }
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  sigset_t none;
  sigemptyset(&none);
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    // ringcable blocks SIGTERM/SIGINT in every thread; the mask survives exec.
    sigprocmask(SIG_SETMASK, &none, nullptr);
    // Its own process group: a terminal's Ctrl-C goes to ringcable, which stops it in order.
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(126);  // ringcable died before the line above
    if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
    if (log_fd >= 0) {
      dup2(log_fd, STDOUT_FILENO);
      dup2(log_fd, STDERR_FILENO);
    }
    syscall(SYS_close_range, 3u, ~0u, 0u);  // nothing of ringcable's leaks into nats-server
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  if (log_fd >= 0) close(log_fd);
  if (null_fd >= 0) close(null_fd);
  return pid;
}

cable::Result<pid_t, std::string> Server::SpawnAndWaitReady(int timeout_ms) {
  pid_t pid = Spawn();
  if (pid < 0) return cable::MakeError(std::string("fork: ") + strerror(errno));
  const int64_t deadline = MonoMs() + timeout_ms;
  while (true) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      std::string why = plan_.binary + " " + DescribeStatus(status) + " during startup";
      std::string last = LastLogLine();
      if (!last.empty()) why += ": " + last;
      return cable::MakeError(std::move(why));
    }
    if (AnswersInfo(plan_.client_host, plan_.client_port, plan_.server_name)) return pid;
    if (MonoMs() >= deadline || WaitStop(50)) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      if (stopping_.load()) return cable::MakeError(std::string("stopping"));
      return cable::MakeError("nats-server did not answer on " + plan_.client_host + ":" +
                              std::to_string(plan_.client_port) + " within " +
                              std::to_string(timeout_ms) + " ms");
    }
  }
}

bool Server::WaitStop(int64_t ms) {
  if (stopping_.load(std::memory_order_acquire)) return true;
  if (stop_fd_ < 0) return false;
  pollfd p{stop_fd_, POLLIN, 0};
  poll(&p, 1, static_cast<int>(std::max<int64_t>(0, ms)));
  return stopping_.load(std::memory_order_acquire);
}

void Server::Supervise() {
  pid_t pid = pid_.load();
  int64_t started_at = MonoMs();
  int64_t delay = kFirstRestartDelayMs;
  while (true) {
    int status = 0;
    // Wait for the child to die, or for Stop.
    while (true) {
      if (WaitStop(100)) {
        kill(pid, SIGTERM);
        return;  // Stop() reaps it
      }
      pid_t r = waitpid(pid, &status, WNOHANG);
      if (r == pid || (r < 0 && errno == ECHILD)) break;
    }
    pid_.store(0, std::memory_order_release);
    if (MonoMs() - started_at >= kStableRunMs) delay = kFirstRestartDelayMs;
    std::string last = LastLogLine();
    LOG_WARN("embedded NATS server (pid %d) %s%s%s; restarting in %lld ms", static_cast<int>(pid),
             DescribeStatus(status).c_str(), last.empty() ? "" : ": ", last.c_str(),
             static_cast<long long>(delay));
    bool reported_failure = false;
    while (true) {
      if (WaitStop(delay)) return;
      delay = std::min(delay * 2, kMaxRestartDelayMs);
      auto started = SpawnAndWaitReady(kRestartReadyTimeoutMs);
      if (started.ok()) {
        pid = started.value();
        pid_.store(pid, std::memory_order_release);
        restarts_.fetch_add(1, std::memory_order_relaxed);
        started_at = MonoMs();
        LOG_INFO("embedded NATS server restarted (pid %d)", static_cast<int>(pid));
        break;
      }
      if (stopping_.load()) return;
      // One line for the first failed attempt; the rest only in debug logs.
      if (!reported_failure) {
        LOG_WARN("embedded NATS server: restart failed: %s; retrying with backoff",
                 started.error().c_str());
        reported_failure = true;
      } else {
        LOG_DEBUG("embedded NATS server: restart failed: %s", started.error().c_str());
      }
    }
  }
}

void Server::Stop(int grace_ms) {
  if (stopped_) return;
  stopped_ = true;
  stopping_.store(true, std::memory_order_release);
  if (stop_fd_ >= 0) eventfd_write(stop_fd_, 1);
  if (supervisor_.joinable()) supervisor_.join();
  // The supervisor is gone: the child (if any) is ours to end.
  pid_t pid = pid_.exchange(0);
  if (pid > 0) {
    kill(pid, SIGTERM);
    int status = 0;
    const int64_t deadline = MonoMs() + grace_ms;
    bool reaped = false;
    while (MonoMs() < deadline) {
      pid_t r = waitpid(pid, &status, WNOHANG);
      if (r == pid || (r < 0 && errno == ECHILD)) {
        reaped = true;
        break;
      }
      usleep(10000);
    }
    if (!reaped) {
      LOG_WARN("embedded NATS server (pid %d) ignored SIGTERM for %d ms; killing it",
               static_cast<int>(pid), grace_ms);
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
    }
    LOG_INFO("embedded NATS server stopped");
  }
  if (stop_fd_ >= 0) {
    close(stop_fd_);
    stop_fd_ = -1;
  }
  if (!run_dir_.empty()) {
    unlink(config_path_.c_str());
    unlink(log_path_.c_str());
    rmdir(run_dir_.c_str());
  }
}

std::string Server::LastLogLine() const {
  if (plan_.log_to_stderr) return "";
  std::ifstream in(log_path_);
  std::string line, last_error;
  while (std::getline(in, line)) {
    if (line.find("[ERR]") != std::string::npos || line.find("[FTL]") != std::string::npos) {
      last_error = line;
    }
  }
  // Drop nats-server's "[pid] date time " prefix: the level tag is what matters.
  size_t tag = last_error.find(" [");
  return tag == std::string::npos ? last_error : last_error.substr(tag + 1);
}

}  // namespace cable::enats
