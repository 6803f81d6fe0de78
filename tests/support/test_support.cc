#include "test_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

namespace cable::test {
namespace {

using Clock = std::chrono::steady_clock;

int ConnectTcp(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

bool WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

// --- TLS client side (tests only): non-blocking socket, every wait bounded by a deadline. ---
SSL_CTX* ClientTlsContext() {
  static SSL_CTX* ctx = [] {
    SSL_CTX* c = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);  // self-signed test certificates
    return c;
  }();
  return ctx;
}

bool WaitFd(int fd, short events, Clock::time_point deadline) {
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return false;
  pollfd p{fd, events, 0};
  return poll(&p, 1, static_cast<int>(left)) > 0;
}

// Wraps a connected socket in TLS; nullptr (and the socket left as is) on failure or timeout.
SSL* TlsHandshake(int fd, Clock::time_point deadline, SSL_CTX* ctx = nullptr) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  SSL* ssl = SSL_new(ctx ? ctx : ClientTlsContext());
  SSL_set_fd(ssl, fd);
  SSL_set_tlsext_host_name(ssl, "localhost");
  for (;;) {
    int r = SSL_connect(ssl);
    if (r == 1) return ssl;
    int err = SSL_get_error(ssl, r);
    short ev = err == SSL_ERROR_WANT_READ ? POLLIN : err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (ev == 0 || !WaitFd(fd, ev, deadline)) {
      ERR_clear_error();
      SSL_free(ssl);
      return nullptr;
    }
  }
}

bool TlsWriteAll(SSL* ssl, int fd, const std::string& data) {
  auto deadline = Clock::now() + 10s;
  size_t off = 0;
  while (off < data.size()) {
    size_t n = 0;
    if (SSL_write_ex(ssl, data.data() + off, data.size() - off, &n) == 1) {
      off += n;
      continue;
    }
    int err = SSL_get_error(ssl, 0);
    short ev = err == SSL_ERROR_WANT_READ ? POLLIN : err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (ev == 0 || !WaitFd(fd, ev, deadline)) {
      ERR_clear_error();
      return false;
    }
  }
  return true;
}

// Reads some plaintext into buf. 1 = got bytes, 0 = timeout, -1 = EOF/error.
int TlsReadSome(SSL* ssl, int fd, std::string& buf, Clock::time_point deadline) {
  char tmp[65536];
  for (;;) {
    size_t n = 0;
    if (SSL_read_ex(ssl, tmp, sizeof(tmp), &n) == 1) {
      buf.append(tmp, n);
      return 1;
    }
    int err = SSL_get_error(ssl, 0);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
      ERR_clear_error();
      return -1;
    }
    if (!WaitFd(fd, err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) return 0;
  }
}

// Reads from fd into buf until deadline; false on EOF/error/timeout.
bool ReadSome(int fd, std::string& buf, Clock::time_point deadline) {
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return false;
  pollfd p{fd, POLLIN, 0};
  int rc = poll(&p, 1, static_cast<int>(left));
  if (rc <= 0) return false;
  char tmp[65536];
  ssize_t n = read(fd, tmp, sizeof(tmp));  // read(), not recv(): also used on pipes
  if (n <= 0) return false;
  buf.append(tmp, static_cast<size_t>(n));
  return true;
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Parses "HTTP/1.1 200 OK\r\nA: b\r\n\r\n" heads; returns head length or 0 if incomplete.
size_t ParseHead(const std::string& buf, int* status, std::map<std::string, std::string>* headers) {
  size_t end = buf.find("\r\n\r\n");
  if (end == std::string::npos) return 0;
  std::istringstream in(buf.substr(0, end));
  std::string line;
  std::getline(in, line);
  *status = 0;
  if (line.size() > 12) *status = std::atoi(line.c_str() + 9);
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    (*headers)[Lower(line.substr(0, colon))] = value;
  }
  return end + 4;
}

}  // namespace

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char b[8];
          std::snprintf(b, sizeof(b), "\\u%04x", c);
          out += b;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

int FreePort() {
  // The kernel may hand the same ephemeral port to two bind(0) calls once the first socket is
  // closed; a test that asks for several ports (a node's client, cluster and broadcast ports) must
  // not get one twice, so ports already handed out by this process are skipped.
  static std::mutex mu;
  static std::set<int> handed_out;
  std::lock_guard<std::mutex> lock(mu);
  int port = 0;
  for (int attempt = 0; attempt < 64; ++attempt) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
    close(fd);
    if (handed_out.insert(port).second) break;
  }
  return port;
}

std::string BinaryPath() {
  // $RINGCABLE_BIN (the caller's choice: CI runs the sanitizer build's tests against the optimized
  // server too), else the server of this build tree (set by ctest), else build/ringcable.
  const char* env = std::getenv("RINGCABLE_BIN");
  if (!env || !*env) env = std::getenv("RINGCABLE_BIN_BUILT");
  return env ? env : "build/ringcable";
}

namespace {
// A chunked body (RFC 9112 §7.1) as far as it is complete; chunk extensions and trailers ignored.
std::string DecodeChunked(const std::string& in) {
  std::string out;
  size_t at = 0;
  while (at < in.size()) {
    size_t eol = in.find("\r\n", at);
    if (eol == std::string::npos) break;
    const size_t len = std::strtoul(in.c_str() + at, nullptr, 16);
    if (len == 0 || eol + 2 + len > in.size()) break;
    out.append(in, eol + 2, len);
    at = eol + 2 + len + 2;
  }
  return out;
}

HttpResponse HttpRequestOver(bool tls, int port, const std::string& method, const std::string& path,
                             const std::map<std::string, std::string>& headers,
                             const std::string& body) {
  HttpResponse resp;
  int fd = ConnectTcp(port);
  if (fd < 0) return resp;
  SSL* ssl = nullptr;
  if (tls && !(ssl = TlsHandshake(fd, Clock::now() + 10s))) {
    close(fd);
    return resp;
  }
  auto write_all = [&](const std::string& data) {
    return ssl ? TlsWriteAll(ssl, fd, data) : WriteAll(fd, data);
  };
  auto read_some = [&](std::string& buf, Clock::time_point deadline) {
    return ssl ? TlsReadSome(ssl, fd, buf, deadline) == 1 : ReadSome(fd, buf, deadline);
  };
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                    "\r\nConnection: close\r\n";
  for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
  if (!body.empty() || method == "POST")
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  write_all(req);
  std::string buf;
  auto deadline = Clock::now() + 10s;
  size_t head = 0;
  while (!(head = ParseHead(buf, &resp.status, &resp.headers))) {
    if (!read_some(buf, deadline)) break;
  }
  if (head && resp.headers.count("content-length")) {
    size_t want = static_cast<size_t>(std::atol(resp.headers["content-length"].c_str()));
    while (buf.size() < head + want && read_some(buf, deadline)) {
    }
    resp.body = buf.substr(head, want);
  } else if (head) {
    // No length: the body runs to EOF (we sent Connection: close), chunked or not.
    while (read_some(buf, deadline)) {
    }
    resp.body = buf.substr(head);
    auto te = resp.headers.find("transfer-encoding");
    if (te != resp.headers.end() && te->second.find("chunked") != std::string::npos) {
      resp.body = DecodeChunked(resp.body);
    }
  }
  if (ssl) SSL_free(ssl);
  close(fd);
  return resp;
}
}  // namespace

HttpResponse HttpRequest(int port, const std::string& method, const std::string& path,
                         const std::map<std::string, std::string>& headers,
                         const std::string& body) {
  return HttpRequestOver(false, port, method, path, headers, body);
}

HttpResponse HttpsRequest(int port, const std::string& method, const std::string& path,
                          const std::map<std::string, std::string>& headers,
                          const std::string& body) {
  return HttpRequestOver(true, port, method, path, headers, body);
}

ServerProcess::~ServerProcess() {
  Kill();
  if (!log_path_.empty()) unlink(log_path_.c_str());
}

bool ServerProcess::Start(const std::vector<std::string>& args,
                          std::map<std::string, std::string> env) {
  port_ = FreePort();
  char tmpl[] = "/tmp/ringcable-test-XXXXXX";
  int log_fd = mkstemp(tmpl);
  log_path_ = tmpl;
  std::vector<std::string> argv = {BinaryPath(), "--host", "127.0.0.1", "--port",
                                   std::to_string(port_)};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_ = SpawnProcess(argv, env, log_fd, log_fd);
  close(log_fd);
  if (pid_ < 0) return false;
  auto deadline = Clock::now() + 10s;
  while (Clock::now() < deadline) {
    if (!running()) return false;
    HttpResponse r =
        tls_ ? HttpsRequest(port_, "GET", "/health") : HttpRequest(port_, "GET", "/health");
    if (r.status == 200) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

bool ServerProcess::running() {
  if (pid_ <= 0) return false;
  int status;
  return waitpid(pid_, &status, WNOHANG) == 0;
}

int ServerProcess::Stop(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  auto deadline = Clock::now() + timeout;
  int status = 0;
  while (Clock::now() < deadline) {
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(10ms);
  }
  Kill();
  return -1;
}

int ServerProcess::WaitExit(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  auto deadline = Clock::now() + timeout;
  int status = 0;
  while (Clock::now() < deadline) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(10ms);
  }
  return -1;
}

void ServerProcess::Kill() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }
}

std::string ServerProcess::Log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

pid_t SpawnProcess(const std::vector<std::string>& argv,
                   const std::map<std::string, std::string>& env, int out_fd, int err_fd,
                   long nofile_limit, bool search_path) {
  if (argv.empty()) return -1;
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; e && *e; ++e) {
    std::string entry(*e);
    std::string name = entry.substr(0, entry.find('='));
    if (env.count(name) == 0) env_strings.push_back(std::move(entry));
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> cenv;
  for (auto& e : env_strings) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  rlimit lim{static_cast<rlim_t>(nofile_limit), static_cast<rlim_t>(nofile_limit)};
  pid_t pid = fork();
  if (pid == 0) {
    if (out_fd >= 0) dup2(out_fd, STDOUT_FILENO);
    if (err_fd >= 0) dup2(err_fd, STDERR_FILENO);
    if (nofile_limit > 0 && setrlimit(RLIMIT_NOFILE, &lim) != 0) _exit(126);
    if (search_path) {
      execvpe(cargv[0], cargv.data(), cenv.data());
    } else {
      execve(cargv[0], cargv.data(), cenv.data());
    }
    _exit(127);
  }
  return pid;
}

RunResult RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                     const std::map<std::string, std::string>& env) {
  RunResult result;
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return result;
  pid_t pid = SpawnProcess(argv, env, pipefd[1], pipefd[1], 0, /*search_path=*/true);
  close(pipefd[1]);
  if (pid < 0) {
    close(pipefd[0]);
    return result;
  }
  auto deadline = Clock::now() + timeout;
  while (ReadSome(pipefd[0], result.output, deadline)) {
  }
  close(pipefd[0]);
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      result.output += "\n[killed: timeout]";
      return result;
    }
    std::this_thread::sleep_for(10ms);
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

uint16_t WsFrame::close_code() const {
  if (opcode != 8 || payload.size() < 2) return 0;
  return static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                               static_cast<uint8_t>(payload[1]));
}

std::string WsFrame::close_reason() const { return payload.size() > 2 ? payload.substr(2) : ""; }

WsClient::~WsClient() { Close(); }

void WsClient::Close() {
  if (ssl_) SSL_free(static_cast<SSL*>(ssl_));
  ssl_ = nullptr;
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

int WsClient::Connect(int port, const std::string& path,
                      const std::map<std::string, std::string>& headers,
                      const std::vector<std::string>& protocols) {
  fd_ = ConnectTcp(port);
  if (fd_ < 0) return 0;
  if (tls_) {
    ssl_ = TlsHandshake(fd_, Clock::now() + 10s, static_cast<SSL_CTX*>(tls_ctx_));
    if (!ssl_) return 0;
  }
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
  if (!protocols.empty()) {
    std::string joined;
    for (const auto& p : protocols) joined += (joined.empty() ? "" : ", ") + p;
    req += "Sec-WebSocket-Protocol: " + joined + "\r\n";
  }
  for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
  req += "\r\n";
  if (!SendRaw(req)) return 0;
  auto deadline = Clock::now() + 10s;
  int status = 0;
  size_t head = 0;
  while (!(head = ParseHead(buf_, &status, &response_headers_))) {
    if (!ReadMore(deadline)) return 0;
  }
  buf_.erase(0, head);
  return status;
}

bool WsClient::SendRaw(const std::string& bytes) {
  if (fd_ < 0) return false;
  return ssl_ ? TlsWriteAll(static_cast<SSL*>(ssl_), fd_, bytes) : WriteAll(fd_, bytes);
}

bool WsClient::SendFrame(int opcode, const std::string& payload, bool fin, bool mask, bool rsv1) {
  std::string f;
  f += static_cast<char>((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0f));
  uint8_t mbit = mask ? 0x80 : 0;
  if (payload.size() < 126) {
    f += static_cast<char>(mbit | payload.size());
  } else if (payload.size() < 65536) {
    f += static_cast<char>(mbit | 126);
    f += static_cast<char>(payload.size() >> 8);
    f += static_cast<char>(payload.size() & 0xff);
  } else {
    f += static_cast<char>(mbit | 127);
    for (int i = 7; i >= 0; --i) f += static_cast<char>((payload.size() >> (8 * i)) & 0xff);
  }
  if (mask) {
    static thread_local std::mt19937 rng(std::random_device{}());
    uint8_t key[4];
    for (auto& k : key) k = static_cast<uint8_t>(rng());
    f.append(reinterpret_cast<char*>(key), 4);
    for (size_t i = 0; i < payload.size(); ++i) f += static_cast<char>(payload[i] ^ key[i % 4]);
  } else {
    f += payload;
  }
  return SendRaw(f);
}

bool WsClient::SendText(const std::string& payload) { return SendFrame(1, payload); }

bool WsClient::ReadMore(Clock::time_point deadline) {
  if (fd_ < 0) return false;
  if (ssl_) return TlsReadSome(static_cast<SSL*>(ssl_), fd_, buf_, deadline) == 1;
  return ReadSome(fd_, buf_, deadline);
}

WsFrame WsClient::Next(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (buf_.size() >= 2) {
      uint8_t b0 = static_cast<uint8_t>(buf_[0]);
      uint8_t b1 = static_cast<uint8_t>(buf_[1]);
      size_t len = b1 & 0x7f;
      size_t pos = 2;
      bool have = true;
      if (len == 126) {
        if (buf_.size() < 4)
          have = false;
        else {
          len = (static_cast<uint8_t>(buf_[2]) << 8) | static_cast<uint8_t>(buf_[3]);
          pos = 4;
        }
      } else if (len == 127) {
        if (buf_.size() < 10)
          have = false;
        else {
          len = 0;
          for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<uint8_t>(buf_[2 + i]);
          pos = 10;
        }
      }
      if (have && buf_.size() >= pos + len) {
        WsFrame f;
        f.opcode = b0 & 0x0f;
        f.rsv1 = (b0 & 0x40) != 0;
        f.payload = buf_.substr(pos, len);
        buf_.erase(0, pos + len);
        if (f.opcode == 8) last_close_ = f;
        return f;
      }
    }
    if (!ReadMore(deadline)) return WsFrame{};
  }
}

WsFrame WsClient::NextMessage(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return WsFrame{};
    WsFrame f = Next(left);
    if (f.opcode == -1 || f.opcode == 8) return WsFrame{};
    if (f.opcode == 1 && f.payload.rfind("{\"type\":\"ping\"", 0) == 0) continue;
    if (f.opcode == 9 || f.opcode == 10) continue;
    return f;
  }
}

std::optional<std::string> WsClient::WaitFor(const std::string& needle,
                                             std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    WsFrame f = NextMessage(left);
    if (f.opcode == -1) return std::nullopt;
    if (f.payload.find(needle) != std::string::npos) return f.payload;
  }
}

WsFrame WsClient::WaitClose(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return WsFrame{};
    WsFrame f = Next(left);
    if (f.opcode == -1 || f.opcode == 8) return f;
  }
}

bool WsClient::WaitEof(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (fd_ < 0) return true;
    if (ssl_) {
      std::string discard;
      int r = TlsReadSome(static_cast<SSL*>(ssl_), fd_, discard, Clock::now() + 50ms);
      if (r < 0) return true;
      continue;
    }
    pollfd p{fd_, POLLIN, 0};
    int rc = poll(&p, 1, 50);
    if (rc > 0) {
      char tmp[65536];
      ssize_t n = recv(fd_, tmp, sizeof(tmp), 0);
      if (n <= 0) return true;
    }
  }
  return false;
}

int WsClient::WaitTlsEnd(std::chrono::milliseconds timeout) {
  if (!ssl_) return -1;
  SSL* ssl = static_cast<SSL*>(ssl_);
  auto deadline = Clock::now() + timeout;
  char tmp[65536];
  for (;;) {
    size_t n = 0;
    if (SSL_read_ex(ssl, tmp, sizeof(tmp), &n) == 1) continue;
    int err = SSL_get_error(ssl, 0);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
      ERR_clear_error();
      return err;
    }
    if (!WaitFd(fd_, err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) return -1;
  }
}

std::string WsClient::Identifier(const std::string& channel,
                                 const std::map<std::string, std::string>& params) {
  std::string id = "{\"channel\":" + JsonString(channel);
  for (const auto& [k, v] : params) id += "," + JsonString(k) + ":" + JsonString(v);
  return id + "}";
}

bool WsClient::Subscribe(const std::string& identifier) {
  return SendText("{\"command\":\"subscribe\",\"identifier\":" + JsonString(identifier) + "}");
}

bool WsClient::Perform(const std::string& identifier, const std::string& data_json) {
  return SendText("{\"command\":\"message\",\"identifier\":" + JsonString(identifier) +
                  ",\"data\":" + JsonString(data_json) + "}");
}

}  // namespace cable::test
