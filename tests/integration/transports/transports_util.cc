#include "transports_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "test_support.h"

namespace cable::ittransports {

HttpStream::~HttpStream() { Close(); }

void HttpStream::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

bool HttpStream::Open(int port, const std::string& request) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return false;
  size_t off = 0;
  while (off < request.size()) {
    ssize_t n = send(fd_, request.data() + off, request.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

bool HttpStream::Get(int port, const std::string& target,
                     const std::map<std::string, std::string>& hdrs) {
  return Open(port, HttpGetRequest(target, hdrs));
}

bool HttpStream::Fill(std::chrono::steady_clock::time_point deadline) {
  if (eof_ || fd_ < 0) return false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 100)));
    if (r <= 0) continue;
    char buf[16384];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    in_.append(buf, static_cast<size_t>(n));
    return true;
  }
}

bool HttpStream::ReadHead(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t end;
  while ((end = in_.find("\r\n\r\n")) == std::string::npos) {
    if (!Fill(deadline)) return false;
  }
  std::string head = in_.substr(0, end);
  in_.erase(0, end + 4);
  size_t sp = head.find(' ');
  status = sp == std::string::npos ? 0 : std::atoi(head.c_str() + sp + 1);
  size_t pos = head.find("\r\n");
  while (pos != std::string::npos) {
    size_t next = head.find("\r\n", pos + 2);
    std::string line =
        head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      headers[name] = value;
    }
    pos = next;
  }
  chunked_ = headers.count("transfer-encoding") && headers["transfer-encoding"] == "chunked";
  Decode();
  return true;
}

void HttpStream::Decode() {
  if (!chunked_) {
    body += in_;
    in_.clear();
    return;
  }
  while (!body_ended_) {
    size_t eol = in_.find("\r\n");
    if (eol == std::string::npos) return;
    size_t size = std::strtoul(in_.substr(0, eol).c_str(), nullptr, 16);
    if (in_.size() < eol + 2 + size + 2) return;
    body.append(in_, eol + 2, size);
    in_.erase(0, eol + 2 + size + 2);
    if (size == 0) body_ended_ = true;
  }
}

std::optional<SseEvent> HttpStream::NextEvent(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t end;
  while ((end = body.find("\n\n")) == std::string::npos) {
    if (!Fill(deadline)) return std::nullopt;
    Decode();
  }
  std::string block = body.substr(0, end);
  body.erase(0, end + 2);
  SseEvent ev;
  size_t start = 0;
  bool first_data = true;
  while (start <= block.size()) {
    size_t nl = block.find('\n', start);
    std::string line =
        block.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    start = nl == std::string::npos ? block.size() + 1 : nl + 1;
    size_t colon = line.find(": ");
    if (colon == std::string::npos) continue;
    std::string field = line.substr(0, colon);
    std::string value = line.substr(colon + 2);
    if (field == "event") ev.event = value;
    if (field == "id") ev.id = value;
    if (field == "retry") ev.retry = value;
    if (field == "data") {
      if (!first_data) ev.data += '\n';
      ev.data += value;
      first_data = false;
    }
  }
  return ev;
}

std::optional<SseEvent> HttpStream::NextData(std::chrono::milliseconds timeout) {
  return NextOfType("", timeout);  // data events have no type
}

std::optional<SseEvent> HttpStream::NextOfType(const std::string& type,
                                               std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    auto ev = NextEvent(left);
    if (!ev) return ev;
    if (ev->event == type) return ev;
  }
}

bool HttpStream::WaitClosed(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!eof_) {
    if (!Fill(deadline) && !eof_) return false;
    Decode();
  }
  return true;
}

std::string HttpGetRequest(const std::string& target,
                           const std::map<std::string, std::string>& headers) {
  std::string r = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n";
  for (const auto& [k, v] : headers) r += k + ": " + v + "\r\n";
  return r + "\r\n";
}

std::string HttpPostRequest(const std::string& target, const std::string& body,
                            const std::map<std::string, std::string>& headers) {
  std::string r = "POST " + target +
                  " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " + std::to_string(body.size()) +
                  "\r\n";
  for (const auto& [k, v] : headers) r += k + ": " + v + "\r\n";
  return r + "\r\n" + body;
}

long long MetricValue(int port, const std::string& name) {
  auto r = cable::test::HttpRequest(port, "GET", "/metrics");
  size_t pos = 0;
  const std::string key = "\n" + name;
  std::string text = "\n" + r.body;
  while ((pos = text.find(key, pos)) != std::string::npos) {
    size_t after = pos + key.size();
    if (after < text.size() && (text[after] == ' ' || text[after] == '{')) {
      size_t sp = text.find(' ', after);
      return std::atoll(text.c_str() + sp + 1);
    }
    pos = after;
  }
  return -1;
}

}  // namespace cable::ittransports
