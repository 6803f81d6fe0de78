#include "publisher.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "ipc.h"

namespace cable::load {
namespace {

// Connected blocking socket or -errno.
int ConnectWithTimeout(const Endpoint& ep, double timeout_s) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_addr.s_addr = ep.addr;
  dst.sin_port = htons(ep.port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof(dst)) != 0) {
    if (errno != EINPROGRESS) {
      int err = errno;
      close(fd);
      return -err;
    }
    pollfd p{fd, POLLOUT, 0};
    int rc = poll(&p, 1, static_cast<int>(timeout_s * 1000));
    if (rc <= 0) {
      close(fd);
      return -ETIMEDOUT;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      close(fd);
      return -err;
    }
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

void SetTimeouts(int fd, double timeout_s) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout_s);
  tv.tv_usec = static_cast<suseconds_t>((timeout_s - static_cast<double>(tv.tv_sec)) * 1e6);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

bool HeaderValue(std::string_view head, std::string_view lower_name, std::string_view* value) {
  size_t at = 0;
  while ((at = head.find("\r\n", at)) != std::string_view::npos) {
    at += 2;
    size_t eol = head.find("\r\n", at);
    std::string_view line = head.substr(at, eol == std::string_view::npos ? eol : eol - at);
    size_t colon = line.find(':');
    if (colon != lower_name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < colon && same; ++i) {
      same = std::tolower(static_cast<unsigned char>(line[i])) == lower_name[i];
    }
    if (!same) continue;
    std::string_view v = line.substr(colon + 1);
    while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
    *value = v;
    return true;
  }
  return false;
}

}  // namespace

std::string ProbeTcp(const Endpoint& endpoint, double timeout_s) {
  int fd = ConnectWithTimeout(endpoint, timeout_s);
  if (fd < 0) return std::strerror(-fd);
  close(fd);
  return "";
}

std::string PublicationBody(std::string_view stream, uint64_t seq, int64_t ts_ns,
                            std::string_view pad) {
  std::string b;
  b.reserve(pad.size() + stream.size() + 96);
  b += R"({"stream":")";
  for (char ch : stream) {
    if (ch == '"' || ch == '\\') b += '\\';
    b += ch;
  }
  b += R"(","data":"{\"seq\":)";
  b += std::to_string(seq);
  b += R"(,\"ts\":)";
  b += std::to_string(ts_ns);
  b += R"(,\"pad\":\")";
  b += pad;
  b += R"(\"}"})";
  return b;
}

std::string BatchBody(std::string_view stream, uint64_t first_seq, int count, int64_t ts_ns,
                      std::string_view pad) {
  if (count == 1) return PublicationBody(stream, first_seq, ts_ns, pad);
  std::string b = "[";
  for (int k = 0; k < count; ++k) {
    if (k > 0) b += ',';
    b += PublicationBody(stream, first_seq + static_cast<uint64_t>(k), ts_ns, pad);
  }
  b += ']';
  return b;
}

Publisher::~Publisher() {
  Close();
  if (ssl_ctx_) SSL_CTX_free(static_cast<SSL_CTX*>(ssl_ctx_));
}

void Publisher::Close() {
  if (ssl_) SSL_free(static_cast<SSL*>(ssl_));
  ssl_ = nullptr;
  ERR_clear_error();
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

Result<int, std::string> Publisher::Post(std::string_view body, double timeout_s) {
  std::string req =
      "POST " + ep_.path + " HTTP/1.1\r\nHost: " + ep_.host_port +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\n";
  if (!key_.empty()) req += "Authorization: Bearer " + key_ + "\r\n";
  req += "\r\n";
  req += body;
  bool reused = fd_ >= 0;
  bool sent_any = false;
  auto r = Exchange(req, timeout_s, &sent_any);
  // A kept-alive connection the server closed meanwhile: nothing was processed, so retry once.
  if (!r && reused && !sent_any) r = Exchange(req, timeout_s, &sent_any);
  return r;
}

Result<int, std::string> Publisher::Exchange(const std::string& request, double timeout_s,
                                             bool* sent_any) {
  *sent_any = false;
  if (fd_ < 0) {
    int fd = ConnectWithTimeout(ep_, timeout_s);
    if (fd < 0) return MakeError(std::string("connect: ") + std::strerror(-fd));
    fd_ = fd;
    SetTimeouts(fd_, timeout_s);
    if (ep_.tls) {
      if (!ssl_ctx_) {
        SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx) return MakeError(std::string("TLS: cannot make a context"));
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);  // load tests use test certificates
        ssl_ctx_ = ctx;
      }
      SSL* ssl = SSL_new(static_cast<SSL_CTX*>(ssl_ctx_));
      ssl_ = ssl;
      if (!ssl || SSL_set_fd(ssl, fd_) != 1 || SSL_connect(ssl) != 1) {
        Close();
        return MakeError(std::string("TLS handshake failed"));
      }
    }
  }
  // Blocking socket: a send or receive comes back whole, or fails (SO_SNDTIMEO / SO_RCVTIMEO).
  auto send_all = [&]() -> bool {
    if (!ssl_) {
      return send(fd_, request.data(), request.size(), MSG_NOSIGNAL) ==
             static_cast<ssize_t>(request.size());
    }
    size_t written = 0;
    return SSL_write_ex(static_cast<SSL*>(ssl_), request.data(), request.size(), &written) == 1 &&
           written == request.size();
  };
  auto recv_some = [&](char* buf, size_t cap) -> ssize_t {
    if (!ssl_) return recv(fd_, buf, cap, 0);
    size_t got = 0;
    errno = 0;
    if (SSL_read_ex(static_cast<SSL*>(ssl_), buf, cap, &got) == 1) return static_cast<ssize_t>(got);
    int err = SSL_get_error(static_cast<SSL*>(ssl_), 0);
    ERR_clear_error();
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {  // SO_RCVTIMEO expired
      errno = EAGAIN;
      return -1;
    }
    return 0;  // close_notify, EOF or a TLS error: the connection is over
  };
  if (!send_all()) {
    Close();
    return MakeError(std::string("send failed"));
  }
  std::string in;
  char tmp[4096];
  size_t head_end = std::string::npos;
  size_t want = 0;
  bool chunked = false;
  for (;;) {
    ssize_t n = recv_some(tmp, sizeof(tmp));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      bool timed_out = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
      Close();
      *sent_any = !in.empty() || timed_out;
      return MakeError(std::string(timed_out ? "no response (timeout)" : "connection closed"));
    }
    in.append(tmp, static_cast<size_t>(n));
    if (head_end == std::string::npos) {
      head_end = in.find("\r\n\r\n");
      if (head_end == std::string::npos) continue;
      std::string_view head(in.data(), head_end + 2);
      std::string_view v;
      if (HeaderValue(head, "content-length", &v)) {
        want = std::strtoul(std::string(v).c_str(), nullptr, 10);
      }
      chunked = HeaderValue(head, "transfer-encoding", &v);
    }
    if (chunked) {
      // Only a short chunked body is expected from a broadcast endpoint: wait for its last chunk.
      if (in.find("0\r\n\r\n", head_end + 4) == std::string::npos) continue;
    } else if (in.size() < head_end + 4 + want) {
      continue;
    }
    break;
  }
  if (in.size() < 12 || in.compare(0, 5, "HTTP/") != 0) {
    Close();
    return MakeError(std::string("not an HTTP response"));
  }
  int status = std::atoi(in.c_str() + 9);
  std::string_view head(in.data(), head_end + 2);
  std::string_view conn;
  if (HeaderValue(head, "connection", &conn) && conn.find("close") != std::string_view::npos) {
    Close();
  }
  return status;
}

std::string TurboPad(size_t n) {
  static const char* const kWords[] = {
      "the",     "order",   "shipped", "today",   "customer", "invoice", "report",  "meeting",
      "project", "update",  "comment", "replied", "thanks",   "please",  "review",  "draft",
      "status",  "pending", "done",    "monday",  "weekly",   "numbers", "growth",  "team",
      "design",  "launch",  "budget",  "signed",  "contract", "account", "details", "notes"};
  std::string out;
  out.reserve(n + 256);
  uint32_t x = 2463534242u;  // xorshift32: the same text every run
  auto next = [&x]() {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
  };
  for (int id = 1; out.size() < n; ++id) {
    std::string sid = std::to_string(100000 + next() % 900000);
    out += "<turbo-stream action='append' target='messages'><template><div id='message_" + sid +
           "' class='message'><p class='author'>user_" + std::to_string(next() % 5000) +
           "</p><p class='body'>";
    int words = 8 + static_cast<int>(next() % 24);
    for (int w = 0; w < words; ++w) {
      if (w) out += ' ';
      out += kWords[next() % (sizeof(kWords) / sizeof(kWords[0]))];
    }
    out += "</p><time datetime='2026-12-0" + std::to_string(1 + id % 9) + "T" +
           std::to_string(10 + next() % 10) + ":" + std::to_string(10 + next() % 50) +
           "'></time></div></template></turbo-stream>";
  }
  out.resize(n);
  return out;
}

}  // namespace cable::load
