// A scripted HTTP/1.1 server on 127.0.0.1 for the RPC-over-HTTP client tests: keep-alive, one
// thread per connection, every request recorded, and a handler that picks the answer, including
// the broken ones (hang, close mid-body, raw bytes). Every wait is bounded (rpc_test_util.h).
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/rpc/rpc_test_util.h"

namespace cable::rpc::testing {

struct HttpRequestSeen {
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;
  int connection = 0;  // which accepted connection carried it (1-based)
};

struct HttpReply {
  enum class Mode { kNormal, kHang, kCloseMidBody, kCloseNoAnswer, kRaw };
  Mode mode = Mode::kNormal;
  int status = 200;
  std::string body;
  std::string raw;  // kRaw: written as is, then the connection is closed
};

inline HttpReply Answer(std::string body, int status = 200) {
  HttpReply r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

inline HttpReply Misbehave(HttpReply::Mode mode) {
  HttpReply r;
  r.mode = mode;
  return r;
}

class ScriptedHttpServer {
 public:
  using Handler = std::function<HttpReply(const HttpRequestSeen&)>;

  ~ScriptedHttpServer() { Stop(); }

  // Returns the port, or 0.
  int Start(Handler handler) { return StartOn(0, std::move(handler)); }
  // On a given port (0 = any); returns the port, or 0.
  int StartOn(int port, Handler handler) {
    handler_ = std::move(handler);
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return 0;
    if (listen(listen_fd_, 128) != 0) return 0;
    socklen_t len = sizeof(addr);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    acceptor_ = std::thread([this] { AcceptLoop(); });
    return ntohs(addr.sin_port);
  }

  void Stop() {
    if (stopping_.exchange(true)) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cv_.notify_all();  // releases hanging handlers
    }
    if (listen_fd_ >= 0) shutdown(listen_fd_, SHUT_RDWR);
    if (acceptor_.joinable()) acceptor_.join();
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int fd : conn_fds_) shutdown(fd, SHUT_RDWR);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
    if (listen_fd_ >= 0) close(listen_fd_);
    listen_fd_ = -1;
  }

  std::vector<HttpRequestSeen> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  size_t request_count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_.size();
  }
  int connections() const { return connections_.load(); }
  int max_concurrent() const {
    std::lock_guard<std::mutex> lock(mu_);
    return max_inside_;
  }
  bool WaitRequests(size_t n) {
    return WaitUntil([&] { return request_count() >= n; });
  }
  bool WaitInside(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kWaitLimit, [&] { return inside_ >= n; });
  }
  // Lets every kHang request (now and later) be answered 200 with `body`.
  void Release(const std::string& body) {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    release_body_ = body;
    cv_.notify_all();
  }

 private:
  void AcceptLoop() {
    while (!stopping_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      const int id = ++connections_;
      std::lock_guard<std::mutex> lock(mu_);
      conn_fds_.push_back(fd);
      threads_.emplace_back([this, fd, id] { Serve(fd, id); });
    }
  }

  static bool WriteAll(int fd, const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads one request; false on EOF / error / stop.
  bool ReadRequest(int fd, std::string& buf, HttpRequestSeen* req) {
    const auto deadline = std::chrono::steady_clock::now() + kWaitLimit;
    size_t head_end;
    while ((head_end = buf.find("\r\n\r\n")) == std::string::npos) {
      if (!ReadSome(fd, buf, deadline)) return false;
    }
    std::string head = buf.substr(0, head_end);
    size_t line_end = head.find("\r\n");
    std::string line = head.substr(0, line_end);
    size_t sp1 = line.find(' ');
    size_t sp2 = line.find(' ', sp1 + 1);
    req->method = line.substr(0, sp1);
    req->path = line.substr(sp1 + 1, sp2 - sp1 - 1);
    size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      size_t e = head.find("\r\n", pos);
      if (e == std::string::npos) e = head.size();
      std::string h = head.substr(pos, e - pos);
      size_t colon = h.find(':');
      if (colon != std::string::npos) {
        std::string name = h.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(), ::tolower);
        size_t v = h.find_first_not_of(' ', colon + 1);
        req->headers[name] = v == std::string::npos ? "" : h.substr(v);
      }
      pos = e + 2;
    }
    size_t body_len = 0;
    if (auto it = req->headers.find("content-length"); it != req->headers.end()) {
      body_len = std::stoul(it->second);
    }
    const size_t total = head_end + 4 + body_len;
    while (buf.size() < total) {
      if (!ReadSome(fd, buf, deadline)) return false;
    }
    req->body = buf.substr(head_end + 4, body_len);
    buf.erase(0, total);
    return true;
  }

  bool ReadSome(int fd, std::string& buf, std::chrono::steady_clock::time_point deadline) {
    while (!stopping_ && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      int r = poll(&p, 1, 100);
      if (r < 0) return false;
      if (r == 0) continue;
      char tmp[65536];
      ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
      if (n <= 0) return false;
      buf.append(tmp, static_cast<size_t>(n));
      return true;
    }
    return false;
  }

  static std::string Response(int status, const std::string& body) {
    return "HTTP/1.1 " + std::to_string(status) +
           " X\r\nContent-Type: application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
  }

  void Serve(int fd, int id) {
    std::string buf;
    while (!stopping_) {
      HttpRequestSeen req;
      if (!ReadRequest(fd, buf, &req)) break;
      req.connection = id;
      {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.push_back(req);
        ++inside_;
        max_inside_ = std::max(max_inside_, inside_);
        cv_.notify_all();
      }
      HttpReply reply = handler_(req);
      bool keep = true;
      switch (reply.mode) {
        case HttpReply::Mode::kNormal:
          keep = WriteAll(fd, Response(reply.status, reply.body));
          break;
        case HttpReply::Mode::kHang: {
          std::unique_lock<std::mutex> lock(mu_);
          cv_.wait_for(lock, kWaitLimit, [&] { return released_ || stopping_.load(); });
          const bool released = released_;
          const std::string body = release_body_;
          lock.unlock();
          keep = released && WriteAll(fd, Response(200, body));
          break;
        }
        case HttpReply::Mode::kCloseMidBody:
          WriteAll(fd,
                   "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                   "100\r\n\r\n{\"status\":1,");
          keep = false;
          break;
        case HttpReply::Mode::kCloseNoAnswer:
          keep = false;
          break;
        case HttpReply::Mode::kRaw:
          WriteAll(fd, reply.raw);
          keep = false;
          break;
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        --inside_;
      }
      if (!keep) break;
    }
    {
      // Forgotten before it is closed, so Stop() never touches a reused descriptor.
      std::lock_guard<std::mutex> lock(mu_);
      conn_fds_.erase(std::remove(conn_fds_.begin(), conn_fds_.end(), fd), conn_fds_.end());
    }
    shutdown(fd, SHUT_RDWR);
    close(fd);
  }

  Handler handler_;
  int listen_fd_ = -1;
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> threads_;
  std::vector<int> conn_fds_;
  std::vector<HttpRequestSeen> requests_;
  int inside_ = 0;
  int max_inside_ = 0;
  bool released_ = false;
  std::string release_body_;
};

}  // namespace cable::rpc::testing
