// redis — Redis clients driven by their owner's event loop (the cluster thread).
//
// hiredis (libhiredis-dev 0.14) provides the protocol: commands are encoded with
// redisFormatCommandArgv and replies parsed with redisReader. The socket, TLS (OpenSSL, for
// rediss://; hiredis 0.14 has none), AUTH/SELECT, Sentinel master discovery, Redis Cluster routing
// and timeouts are ours, so a client never blocks the thread that drives it, except for the name
// lookup (getaddrinfo), which happens on that same non-ring thread.
//
// Two clients share one interface (Client): Connection, one server (standalone or the master a
// Sentinel names), and ClusterClient (cluster_client.h), which routes each command to the master
// owning its key's slot. MakeClient picks the one the URL asks for.
//
// Threads and ownership: a client belongs to the thread that created it; every method is
// called on that thread. Handler callbacks run inside Connect/OnEvents/Tick/Close/Command on that
// thread. A handler must not destroy the client from inside a callback (mark it and do it later);
// Close(), Connect() and Command() from inside a callback are fine. The destructor drops pending
// callbacks without calling them.
//
// Event-loop contract: watch fd() for events() level-triggered, and re-read both after every call
// into the client: a Connection's socket changes on reconnect and from a sentinel to the master
// (the new fd may reuse the old number), and Command() only appends to the output buffer (it never
// writes; events() then asks for EPOLLOUT). Reads are bounded per OnEvents call, so an
// edge-triggered watch could miss data. Sentinels are spoken to over plain TCP; TLS (rediss://)
// applies to the master (and to every cluster node).
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
  // Redis Cluster: set for a comma-separated --redis_url (or by the owner once a single address
  // turned out to be a cluster node). The seeds are where the slot map is first asked for: every
  // address of the list, the first one included.
  bool cluster = false;
  std::vector<Endpoint> cluster_seeds;
  int cluster_node_retry_ms = 500;  // a failed cluster node is not dialled again sooner
  // The slot map is re-read at least this often: after a manual failover a demoted master still
  // takes keyless commands (PUBLISH), so no error would ever ask for a new map.
  int cluster_refresh_ms = 5000;
  int connect_timeout_ms = 5000;

  bool sentinel_mode() const { return !sentinels.empty(); }
  bool cluster_mode() const { return cluster; }
  // For logs: "redis://host:port/db", "sentinels host:port,... (master name)" or
  // "cluster host:port,..."; no password.
  std::string Describe() const;
};

// Parses anycable-go's --redis_url / REDIS_URL forms: redis://[[user]:password@]host[:port][/db]
// and rediss://... (TLS); a missing scheme means redis://. A comma-separated list of them names a
// Redis Cluster (anycable-go 1.6: "redis://h1:7000,redis://h2:7001" or the short
// "redis://h1:7000,h2:7001"): the first entry gives user, password and TLS for every node, the
// others only add addresses; the database must be 0. `sentinels` is --redis_sentinels
// ("[:password@]host:port,host:port"); when given, the URL's host is the master name. Errors name
// the problem in one line.
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

// What the owner's event loop and the cluster layer see of a Redis client.
class Client {
 public:
  enum class State : uint8_t { kIdle, kConnecting, kReady, kClosed };

  class Handler {
   public:
    virtual ~Handler() = default;
    // Connected, TLS done, authenticated, db selected (cluster: slot map known; in subscribe mode
    // also the subscribe connection up): commands flow from now on.
    virtual void OnReady(Client& client) = 0;
    // In subscribe mode, every reply (subscribe confirmations, ["message", channel, payload],
    // ["pong", ""]) arrives here instead of a command callback.
    virtual void OnPush(Client& client, Reply&& reply) = 0;
    // The client failed to connect or was lost (reason in one line). Callbacks of commands still
    // pending were already called with an error reply. The owner decides when to Connect() again
    // (backoff).
    virtual void OnClosed(Client& client, const std::string& reason) = 0;
  };
  // Called with the command's reply, or with Reply::Error("connection lost ...") when the
  // connection goes away first.
  using Callback = std::function<void(Reply&&)>;

  virtual ~Client() = default;

  // Starts connecting (from kIdle or kClosed). Never blocks on the network; failures arrive as
  // Handler::OnClosed.
  virtual void Connect() = 0;
  // A command without a key (PING, SUBSCRIBE): any server. `cb` may be empty.
  virtual void Command(std::vector<std::string> args, Callback cb = nullptr) = 0;
  // A command whose keys all hash to `key`'s slot (use {hash tags} for several keys): in a
  // cluster it goes to the slot's master, following MOVED and ASK redirections. A standalone
  // connection ignores `key`.
  virtual void KeyCommand(const std::string& key, std::vector<std::string> args,
                          Callback cb = nullptr) = 0;
  // From now on, replies go to Handler::OnPush. Call before Connect (a cluster client then keeps
  // one connection, to one node, for its subscriptions).
  virtual void SetSubscribeMode() = 0;
  // Drops the client now; pending callbacks get an error reply; Handler::OnClosed is NOT called.
  // The client can Connect() again.
  virtual void Close() = 0;

  // Event-loop integration: the descriptor to watch (-1 when none) and what to watch it for.
  virtual int fd() const = 0;
  virtual uint32_t events() const = 0;
  virtual void OnEvents(uint32_t epoll_events) = 0;
  // Enforces timeouts and runs timers; call at least every 100 ms.
  virtual void Tick(int64_t now_ms) = 0;

  virtual State state() const = 0;
  virtual const std::string& name() const = 0;
  virtual size_t pending_commands() const = 0;
};

// A Connection for a standalone / Sentinel URL, a ClusterClient for a cluster URL.
std::unique_ptr<Client> MakeClient(const Options& options, Client::Handler* handler,
                                   std::string name);

// One connection to one server (the master a Sentinel names, or a cluster node).
class Connection : public Client {
 public:
  Connection(Options options, Handler* handler, std::string name);
  ~Connection() override;  // closes without calling the handler
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // [Sentinel: ask a sentinel for the master's address], TCP connect, TLS handshake, AUTH,
  // SELECT, then Handler::OnReady.
  void Connect() override;
  // Queues a command (written when ready; before that it waits).
  void Command(std::vector<std::string> args, Callback cb = nullptr) override;
  void KeyCommand(const std::string&, std::vector<std::string> args,
                  Callback cb = nullptr) override {
    Command(std::move(args), std::move(cb));
  }
  void SetSubscribeMode() override { subscribe_mode_ = true; }
  void Close() override;

  int fd() const override { return fd_; }
  // EPOLLIN, plus EPOLLOUT while connecting or output is pending.
  uint32_t events() const override;
  void OnEvents(uint32_t epoll_events) override;
  // Enforces the connect timeout.
  void Tick(int64_t now_ms) override;

  State state() const override { return state_; }
  const std::string& name() const override { return name_; }
  size_t pending_commands() const override { return callbacks_.size(); }

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
