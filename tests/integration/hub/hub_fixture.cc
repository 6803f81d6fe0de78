#include "hub_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <random>

namespace cable::ithub {

std::string Pub(const std::string& stream, const std::string& data,
                const std::string& exclude_socket) {
  std::string out = "{\"stream\":" + JsonString(stream) + ",\"data\":" + JsonString(data);
  if (!exclude_socket.empty()) {
    out += ",\"meta\":{\"exclude_socket\":" + JsonString(exclude_socket) + "}";
  }
  return out + "}";
}

std::string Delivered(const std::string& identifier, const std::string& message_json) {
  return "{\"identifier\":" + JsonString(identifier) + ",\"message\":" + message_json + "}";
}

std::string StreamId(const std::string& stream, const std::string& channel) {
  return WsClient::Identifier(channel, {{"stream", stream}});
}

std::string SidOf(std::string_view welcome) {
  constexpr std::string_view kPrefix = "{\"type\":\"welcome\",\"sid\":\"";
  if (welcome.substr(0, kPrefix.size()) != kPrefix) return "";
  size_t end = welcome.find('"', kPrefix.size());
  if (end == std::string_view::npos) return "";
  return std::string(welcome.substr(kPrefix.size(), end - kPrefix.size()));
}

std::string MaskedText(const std::string& payload) {
  std::string f;
  f += static_cast<char>(0x81);
  if (payload.size() < 126) {
    f += static_cast<char>(0x80 | payload.size());
  } else {
    f += static_cast<char>(0x80 | 126);
    f += static_cast<char>((payload.size() >> 8) & 0xff);
    f += static_cast<char>(payload.size() & 0xff);
  }
  static thread_local std::mt19937 rng(std::random_device{}());
  uint8_t key[4];
  for (auto& k : key) k = static_cast<uint8_t>(rng());
  f.append(reinterpret_cast<char*>(key), 4);
  for (size_t i = 0; i < payload.size(); ++i) f += static_cast<char>(payload[i] ^ key[i % 4]);
  return f;
}

std::string SubscribeCommand(const std::string& identifier) {
  return "{\"command\":\"subscribe\",\"identifier\":" + JsonString(identifier) + "}";
}

// ---------------------------------------------------------------------------------------------
// Swarm

Swarm::Swarm() : epfd_(epoll_create1(EPOLL_CLOEXEC)) {}

Swarm::~Swarm() {
  for (auto& c : clients_) {
    if (c.fd >= 0) close(c.fd);
  }
  if (epfd_ >= 0) close(epfd_);
}

int Swarm::Add(int port, const std::string& path, const std::string& frames, int rcvbuf) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
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
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n" +
                    frames;
  // Small enough for any socket buffer: a blocking write completes at once.
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return -1;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  size_t index = clients_.size();
  clients_.emplace_back();
  clients_.back().fd = fd;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = index;
  epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
  return static_cast<int>(index);
}

size_t Swarm::closed() const {
  size_t n = 0;
  for (const auto& c : clients_) n += c.closed;
  return n;
}

void Swarm::MarkClosed(size_t i) {
  Client& c = clients_[i];
  c.closed = true;
  if (c.fd >= 0) {
    epoll_ctl(epfd_, EPOLL_CTL_DEL, c.fd, nullptr);
    close(c.fd);
    c.fd = -1;
  }
}

void Swarm::Parse(size_t i, const TextFn& on_text) {
  Client& c = clients_[i];
  if (!c.upgraded) {
    size_t end = c.buf.find("\r\n\r\n");
    if (end == std::string::npos) return;
    if (c.buf.compare(0, 12, "HTTP/1.1 101") != 0) {
      MarkClosed(i);
      return;
    }
    c.upgraded = true;
    c.off = end + 4;
  }
  while (!c.closed) {
    size_t avail = c.buf.size() - c.off;
    if (avail < 2) break;
    const auto* b = reinterpret_cast<const uint8_t*>(c.buf.data() + c.off);
    uint64_t len = b[1] & 0x7f;
    size_t pos = 2;
    if (len == 126) {
      if (avail < 4) break;
      len = (static_cast<uint64_t>(b[2]) << 8) | b[3];
      pos = 4;
    } else if (len == 127) {
      if (avail < 10) break;
      len = 0;
      for (int k = 0; k < 8; ++k) len = (len << 8) | b[2 + k];
      pos = 10;
    }
    if (avail < pos + len) break;
    int opcode = b[0] & 0x0f;
    std::string_view payload(c.buf.data() + c.off + pos, len);
    c.off += pos + len;
    if (opcode == 1) {
      on_text(i, payload);
    } else if (opcode == 8) {
      if (payload.size() >= 2) {
        c.close_code = static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                                             static_cast<uint8_t>(payload[1]));
        c.close_reason = std::string(payload.substr(2));
      }
      MarkClosed(i);
    }
  }
  if (c.off > 0 && c.off * 2 >= c.buf.size()) {
    c.buf.erase(0, c.off);
    c.off = 0;
  }
}

void Swarm::ReadClient(size_t i, const TextFn& on_text) {
  char tmp[65536];
  for (;;) {
    Client& c = clients_[i];
    if (c.closed) return;
    ssize_t n = recv(c.fd, tmp, sizeof(tmp), 0);
    if (n > 0) {
      c.buf.append(tmp, static_cast<size_t>(n));
      Parse(i, on_text);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0 && errno == EINTR) continue;
    MarkClosed(i);  // EOF or reset
    return;
  }
}

bool Swarm::Pump(const TextFn& on_text, const std::function<bool()>& done,
                 std::chrono::milliseconds timeout, const std::vector<size_t>& only) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  if (!only.empty()) {
    // Poll just these clients, without epoll (the others are left unread on purpose).
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return done();
      bool any_open = false;
      for (size_t i : only) {
        if (!clients_[i].closed) {
          any_open = true;
          ReadClient(i, on_text);
        }
      }
      if (!any_open) return done();
      usleep(1000);
    }
    return true;
  }
  epoll_event events[256];
  while (!done()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) return done();
    if (closed() == clients_.size()) return done();
    int n = epoll_wait(epfd_, events, 256, static_cast<int>(std::min<int64_t>(left, 100)));
    for (int k = 0; k < n; ++k) ReadClient(static_cast<size_t>(events[k].data.u64), on_text);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// HubTest

void HubTest::SetUp() {
  rpc_port_ = rpc_.Start("127.0.0.1:0");
  ASSERT_NE(rpc_port_, 0) << "cannot start the scripted RPC server";
}

void HubTest::TearDown() {
  if (HasFailure() && server_.pid() > 0) {
    std::string log = server_.Log();
    if (log.size() > 20000) log = "...\n" + log.substr(log.size() - 20000);
    std::cerr << "---- ringcable log ----\n" << log << "-----------------------\n";
  }
  server_.Kill();
  rpc_.Stop();
}

void HubTest::StartServer(const std::vector<std::string>& extra, bool own_broadcast_port) {
  std::vector<std::string> args = {"--rpc_host", "127.0.0.1:" + std::to_string(rpc_port_),
                                   "--workers", "2"};
  broadcast_port_ = 0;
  if (own_broadcast_port) {
    broadcast_port_ = cable::test::FreePort();
    args.push_back("--http_broadcast_port");
    args.push_back(std::to_string(broadcast_port_));
  }
  args.insert(args.end(), extra.begin(), extra.end());
  ASSERT_TRUE(server_.Start(args)) << "ringcable did not start:\n" << server_.Log();
}

int HubTest::Publish(const std::string& body, const std::map<std::string, std::string>& headers) {
  int port = broadcast_port_ ? broadcast_port_ : server_.port();
  return cable::test::HttpRequest(port, "POST", "/_broadcast", headers, body).status;
}

std::string HubTest::Connect(WsClient& ws, const std::string& query) {
  if (ws.Connect(server_.port(), "/cable" + query) != 101) return "";
  WsFrame f = ws.NextMessage(10s);
  return SidOf(f.payload);
}

bool HubTest::Subscribe(WsClient& ws, const std::string& identifier) {
  if (!ws.Subscribe(identifier)) return false;
  auto confirm = ws.WaitFor("confirm_subscription", 10s);
  return confirm.has_value() && confirm->find(JsonString(identifier)) != std::string::npos;
}

}  // namespace cable::ithub
