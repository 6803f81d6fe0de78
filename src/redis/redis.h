// redis — a Redis client connection driven by its owner's event loop (the cluster thread).
//
// hiredis (libhiredis-dev 0.14) provides the protocol: commands are encoded with
// redisFormatCommandArgv and replies parsed with redisReader. The socket, TLS (OpenSSL, for
// rediss://; hiredis 0.14 has none), AUTH/SELECT, Sentinel master discovery and timeouts are ours,
// so the connection never blocks the thread that drives it, except for the name lookup
// (getaddrinfo), which happens on that same non-ring thread.
//
// Threads and ownership: a Connection belongs to the thread that created it; every method is
// called on that thread. Handler callbacks run inside Connect/OnEvents/Tick/Close on that thread.
// A handler must not destroy the Connection from inside a callback (mark it and do it later);
// Close(), Connect() and Command() from inside a callback are fine. The destructor drops pending
// callbacks without calling them.
//
// Event-loop contract: watch fd() for events() level-triggered, and re-read both after every call
// into the connection: the socket changes on reconnect and from a sentinel to the master (the
// new fd may reuse the old number), and Command() only appends to the output buffer (it never
// writes; events() then asks for EPOLLOUT). Reads are bounded per OnEvents call, so an
// edge-triggered watch could miss data. Sentinels are spoken to over plain TCP; TLS (rediss://)
// applies to the master.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"

namespace cable::redis {

struct Endpoint {
  std::string host;
  int port = 0;
};

struct Options {
  std::string host = "localhost";  // with sentinels: the master's name
  int port = 6379;
  std::string username;  // ACL user (redis://user:pass@host), may be empty
  std::string password;
  int db = 0;
  bool tls = false;         // rediss://
  bool tls_verify = false;  // --redis_tls_verify (anycable-go default: false)
  std::string tls_ca_cert_path, tls_client_cert_path, tls_client_key_path;
  std::vector<Endpoint> sentinels;  // --redis_sentinels; non-empty = Sentinel mode
  std::string sentinel_password;    // "[:pass@]host:port,..." in --redis_sentinels
  int connect_timeout_ms = 5000;

  bool sentinel_mode() const { return !sentinels.empty(); }
  // For logs: "redis://host:port/db" or "sentinels host:port,... (master name)"; no password.
  std::string Describe() const;
};

// Parses anycable-go's --redis_url / REDIS_URL forms: redis://[[user]:password@]host[:port][/db]
// and rediss://... (TLS). `sentinels` is --redis_sentinels ("[:password@]host:port,host:port");
// when given, the URL's host is the master name. Errors name the problem in one line.
cable::Result<Options, std::string> ParseUrl(const std::string& url, const std::string& sentinels);

// One reply, owned (converted from redisReply so callers never touch hiredis).
struct Reply {
  enum class Type : uint8_t { kString, kStatus, kInteger, kNil, kArray, kError };
  Type type = Type::kNil;
  std::string str;  // string, status, error text
  int64_t integer = 0;
  std::vector<Reply> elements;

  bool is_error() const { return type == Type::kError; }
  static Reply Error(std::string text) {
    Reply r;
    r.type = Type::kError;
    r.str = std::move(text);
    return r;
  }
};

class Connection {
 public:
  enum class State : uint8_t { kIdle, kConnecting, kReady, kClosed };

  class Handler {
   public:
    virtual ~Handler() = default;
    // Connected, TLS done, authenticated, db selected: commands flow from now on.
    virtual void OnReady(Connection& conn) = 0;
    // In subscribe mode, every reply (subscribe confirmations, ["message", channel, payload],
    // ["pong", ""]) arrives here instead of a command callback.
    virtual void OnPush(Connection& conn, Reply&& reply) = 0;
    // The connection failed to connect or was lost (reason in one line). Callbacks of commands
    // still pending were already called with an error reply. The owner decides when to Connect()
    // again (backoff).
    virtual void OnClosed(Connection& conn, const std::string& reason) = 0;
  };
  // Called with the command's reply, or with Reply::Error("connection lost ...") when the
  // connection goes away first.
  using Callback = std::function<void(Reply&&)>;

  Connection(Options options, Handler* handler, std::string name);
  ~Connection();  // closes without calling the handler
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts connecting (from kIdle or kClosed): [Sentinel: ask a sentinel for the master's
  // address], TCP connect, TLS handshake, AUTH, SELECT, then Handler::OnReady. Never blocks on the
  // network; failures arrive as Handler::OnClosed.
  void Connect();
  // Queues a command (written when ready; before that it waits). `cb` may be empty.
  void Command(std::vector<std::string> args, Callback cb = nullptr);
  // From now on, replies go to Handler::OnPush (call before sending SUBSCRIBE).
  void SetSubscribeMode() { subscribe_mode_ = true; }
  // Drops the connection now; pending callbacks get an error reply; Handler::OnClosed is NOT
  // called. The connection can Connect() again.
  void Close();

  // Event-loop integration: the socket to watch (-1 when none) and what to watch it for.
  int fd() const { return fd_; }
  uint32_t events() const;  // EPOLLIN, plus EPOLLOUT while connecting or output is pending
  void OnEvents(uint32_t epoll_events);
  // Enforces the connect timeout; call at least every 100 ms.
  void Tick(int64_t now_ms);

  State state() const { return state_; }
  const std::string& name() const { return name_; }
  size_t pending_commands() const { return callbacks_.size(); }

 private:
  struct Impl;
  // The connection state machine (redis.cc). Functions returning bool return false when the
  // socket was torn down meanwhile (failure, or Close()/Connect() from a callback).
  void StartAttempt(const Endpoint& target, bool sentinel);
  void TryNextAddress();
  void OnTcpConnected();
  bool StartTls();
  void ContinueTlsHandshake();
  void BeginHandshake();
  void BecomeReady();
  bool HandleHandshakeReply(Reply&& reply);
  void FailAttempt(const std::string& reason);
  void Shutdown(const std::string& reason, bool notify);
  void TearDownSocket();
  bool ReadInput();
  bool DispatchReplies();
  bool FlushOutput();

  Options options_;
  Handler* handler_;
  std::string name_;
  State state_ = State::kIdle;
  bool subscribe_mode_ = false;
  int fd_ = -1;
  std::deque<Callback> callbacks_;
  std::unique_ptr<Impl> impl_;  // reader, TLS session, buffers, handshake phase
};

}  // namespace cable::redis
