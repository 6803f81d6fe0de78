#include "metrics/exporter.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/log.h"
#include "http/http.h"

namespace cable::metrics {
namespace {
constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";
constexpr size_t kMaxHead = 16 * 1024;
}  // namespace

cable::Result<std::unique_ptr<HttpServer>, std::string> HttpServer::Start(const std::string& host,
                                                                          int port,
                                                                          std::string path,
                                                                          RenderFn render) {
  const std::string where = host + ":" + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port_str = std::to_string(port);
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port_str.c_str(), &hints, &res);
  if (rc != 0 || !res) {
    return cable::MakeError("cannot resolve metrics host \"" + host + "\": " + gai_strerror(rc));
  }
  addrinfo* pick = res;
  for (addrinfo* a = res; a; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  }
  int fd = socket(pick->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  std::string err;
  if (fd < 0) {
    err = strerror(errno);
  } else {
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, pick->ai_addr, pick->ai_addrlen) != 0 || listen(fd, 64) != 0) {
      err = strerror(errno);
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0) return cable::MakeError("cannot listen on " + where + " (metrics): " + err);
  return Serving(fd, std::move(path), std::move(render));
}

cable::Result<std::unique_ptr<HttpServer>, std::string> HttpServer::Adopt(int fd, std::string path,
                                                                          RenderFn render) {
  int listening = 0;
  socklen_t len = sizeof(listening);
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) {
    close(fd);
    return cable::MakeError(std::string("the inherited metrics socket is not listening"));
  }
  return Serving(fd, std::move(path), std::move(render));
}

cable::Result<std::unique_ptr<HttpServer>, std::string> HttpServer::Serving(int fd,
                                                                            std::string path,
                                                                            RenderFn render) {
  // Non-blocking accepts behind poll(): Stop() wakes the thread through an eventfd rather than a
  // shutdown() of the socket, which another process may be serving on too (live upgrade).
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    std::string err = strerror(errno);
    close(fd);
    return cable::MakeError("metrics: eventfd: " + err);
  }
  sockaddr_storage bound{};
  socklen_t blen = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen);
  int actual = bound.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in&>(bound).sin_port)
                                          : ntohs(reinterpret_cast<sockaddr_in6&>(bound).sin6_port);
  std::unique_ptr<HttpServer> server(
      new HttpServer(fd, actual, std::move(path), std::move(render)));
  server->wake_fd_ = wake;
  server->thread_ = std::thread([s = server.get()] { s->Run(); });
  return server;
}

HttpServer::HttpServer(int fd, int port, std::string path, RenderFn render)
    : fd_(fd), port_(port), path_(std::move(path)), render_(std::move(render)) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  if (stop_.exchange(true)) return;
  eventfd_write(wake_fd_, 1);
  if (thread_.joinable()) thread_.join();
  close(wake_fd_);
  close(fd_);
}

void HttpServer::Run() {
  while (!stop_.load(std::memory_order_acquire)) {
    pollfd pfd[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (poll(pfd, 2, -1) < 0 && errno != EINTR) break;
    if (stop_.load(std::memory_order_acquire)) break;
    if (!(pfd[0].revents & POLLIN)) continue;
    int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      // EAGAIN: another process serving on the same socket (live upgrade) took the connection.
      if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN) continue;
      if (stop_.load(std::memory_order_acquire)) break;
      if (errno == EMFILE || errno == ENFILE) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      break;
    }
    Serve(c);
    close(c);
  }
}

// One request per connection. A client that stalls holds this thread for at most the receive
// timeout; metrics scrapers are few and well-behaved.
void HttpServer::Serve(int fd) {
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  std::string buf;
  char chunk[4096];
  http::Request req;
  http::ParseError perr = http::ParseError::kNone;
  http::ParseStatus st = http::ParseStatus::kIncomplete;
  while (st == http::ParseStatus::kIncomplete) {
    ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) return;
    buf.append(chunk, static_cast<size_t>(n));
    st = http::ParseRequestHead(buf, kMaxHead, &req, &perr);
  }
  std::string resp;
  if (st == http::ParseStatus::kError) {
    resp = http::BuildResponse(400, http::StatusText(400), http::kDefaultContentType, {}, true);
  } else if (req.path != path_) {
    resp = http::BuildResponse(404, "404 page not found\n", http::kDefaultContentType, {}, true);
  } else {
    resp = http::BuildResponse(200, render_(), kContentType, {}, true);
  }
  size_t off = 0;
  while (off < resp.size()) {
    ssize_t n = send(fd, resp.data() + off, resp.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

SnapshotTicker::SnapshotTicker(int interval_s, SnapshotFn snapshot, TickFn tick)
    : interval_s_(interval_s), snapshot_(std::move(snapshot)), tick_(std::move(tick)) {
  thread_ = std::thread([this] { Run(); });
}

SnapshotTicker::~SnapshotTicker() { Stop(); }

void SnapshotTicker::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void SnapshotTicker::Run() {
  Snapshot prev;
  bool first = true;
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, std::chrono::seconds(interval_s_), [this] { return stop_; })) {
    Snapshot cur = snapshot_();
    tick_(cur, first ? nullptr : &prev);
    prev = std::move(cur);
    first = false;
  }
}

LogReporter::LogReporter(int interval_s, std::vector<std::string> filter, SnapshotFn snapshot)
    : filter_(std::move(filter)),
      ticker_(interval_s, std::move(snapshot), [this](const Snapshot& cur, const Snapshot* prev) {
        LOG_INFO("metrics %s", RenderLog(cur, prev, filter_).c_str());
      }) {}

}  // namespace cable::metrics
