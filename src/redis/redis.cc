// Connection: non-blocking socket, optional TLS, AUTH/SELECT and Sentinel discovery as a small
// state machine; hiredis only encodes commands and parses replies.
#include "redis/redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/log.h"

namespace cable::redis {
namespace {

// One busy connection must not starve the owner's loop: read at most this much per OnEvents.
constexpr size_t kMaxReadPerCall = 256 * 1024;
// Bytes handed to one write call (bounded so a TLS retry always covers the previous length).
constexpr size_t kMaxWriteChunk = 1024 * 1024;

int64_t MonotonicMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::string HostPort(const Endpoint& ep) {
  if (ep.host.find(':') != std::string::npos) {
    return "[" + ep.host + "]:" + std::to_string(ep.port);
  }
  return ep.host + ":" + std::to_string(ep.port);
}

bool IsIpLiteral(const std::string& host) {
  in6_addr a6;
  in_addr a4;
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

std::string OpenSslErrors() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown TLS error" : out;
}

Reply ConvertReply(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::kError;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::kArray;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(ConvertReply(r->element[i]));
      break;
    default:
      out.type = Reply::Type::kNil;
      break;
  }
  return out;
}

void AppendCommand(const std::vector<std::string>& args, std::string* out) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  char* cmd = nullptr;
  int len = redisFormatCommandArgv(&cmd, static_cast<int>(args.size()), argv.data(), lens.data());
  if (len > 0) out->append(cmd, static_cast<size_t>(len));
  redisFreeCommand(cmd);
}

// A socket BIO that sends with MSG_NOSIGNAL: OpenSSL's own socket BIO uses write(2), which
// raises SIGPIPE on a peer reset unless the process ignores it.
int BioWrite(BIO* bio, const char* data, int len) {
  int fd = static_cast<int>(reinterpret_cast<intptr_t>(BIO_get_data(bio)));
  BIO_clear_retry_flags(bio);
  ssize_t n = send(fd, data, static_cast<size_t>(len), MSG_NOSIGNAL);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    BIO_set_retry_write(bio);
  }
  return static_cast<int>(n);
}

int BioRead(BIO* bio, char* data, int len) {
  int fd = static_cast<int>(reinterpret_cast<intptr_t>(BIO_get_data(bio)));
  BIO_clear_retry_flags(bio);
  ssize_t n = recv(fd, data, static_cast<size_t>(len), 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    BIO_set_retry_read(bio);
  }
  return static_cast<int>(n);
}

long BioCtrl(BIO*, int cmd, long, void*) {  // NOLINT(runtime/int): OpenSSL's signature
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

int BioCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

BIO_METHOD* SocketBioMethod() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "cable-redis-socket");
    BIO_meth_set_write(m, BioWrite);
    BIO_meth_set_read(m, BioRead);
    BIO_meth_set_ctrl(m, BioCtrl);
    BIO_meth_set_create(m, BioCreate);
    return m;
  }();
  return method;
}

}  // namespace

struct Connection::Impl {
  // Where the connection is within one attempt (one server: a sentinel or the master).
  enum class Phase : uint8_t { kNone, kTcpConnecting, kTlsHandshake, kHandshake, kReady };
  enum class Role : uint8_t { kSentinel, kMaster };
  // Replies the connection consumes itself before it is ready.
  enum class Step : uint8_t { kAuth, kSelect, kSentinelQuery };

  Phase phase = Phase::kNone;
  Role role = Role::kMaster;
  Endpoint target;
  std::vector<sockaddr_storage> addrs;
  std::vector<socklen_t> addr_lens;
  size_t addr_index = 0;
  std::string connect_error;  // last failed address, for the message when all fail
  size_t sentinel_index = 0;
  std::string sentinel_errors;
  int64_t deadline_ms = 0;  // 0: no connect timeout

  redisReader* reader = nullptr;
  SSL_CTX* ssl_ctx = nullptr;
  SSL* ssl = nullptr;
  bool tls_handshake_wants_write = false;
  bool tls_read_wants_write = false;
  bool tls_write_wants_read = false;

  std::string out;  // encoded commands on the wire's way
  size_t out_off = 0;
  std::string queued;  // user commands encoded before the connection was ready
  std::deque<Step> steps;
  // Bumped whenever the socket is torn down: loops that call out (callbacks, handler) compare it
  // to notice the connection was closed or restarted underneath them.
  uint64_t epoch = 0;

  bool output_pending() const { return out_off < out.size(); }
};

Connection::Connection(Options options, Handler* handler, std::string name)
    : options_(std::move(options)),
      handler_(handler),
      name_(std::move(name)),
      impl_(std::make_unique<Impl>()) {}

Connection::~Connection() {
  // Pending callbacks are dropped without a call: they may refer to the dying owner.
  callbacks_.clear();
  TearDownSocket();
  if (impl_->ssl_ctx) SSL_CTX_free(impl_->ssl_ctx);
}

void Connection::TearDownSocket() {
  impl_->epoch++;
  if (impl_->ssl) {
    SSL_free(impl_->ssl);  // no close_notify: the peer handles a plain close
    impl_->ssl = nullptr;
  }
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  if (impl_->reader) {
    redisReaderFree(impl_->reader);
    impl_->reader = nullptr;
  }
  impl_->phase = Impl::Phase::kNone;
  impl_->out.clear();
  impl_->out_off = 0;
  impl_->steps.clear();
  impl_->tls_handshake_wants_write = false;
  impl_->tls_read_wants_write = false;
  impl_->tls_write_wants_read = false;
}

void Connection::Connect() {
  if (state_ == State::kConnecting || state_ == State::kReady) return;
  state_ = State::kConnecting;
  if (impl_->ssl_ctx) {
    // Rebuilt on each Connect so rotated certificate files are picked up on reconnect.
    SSL_CTX_free(impl_->ssl_ctx);
    impl_->ssl_ctx = nullptr;
  }
  if (options_.sentinel_mode()) {
    impl_->sentinel_index = 0;
    impl_->sentinel_errors.clear();
    StartAttempt(options_.sentinels[0], /*sentinel=*/true);
  } else {
    StartAttempt(Endpoint{options_.host, options_.port}, /*sentinel=*/false);
  }
}

void Connection::StartAttempt(const Endpoint& target, bool sentinel) {
  TearDownSocket();
  impl_->role = sentinel ? Impl::Role::kSentinel : Impl::Role::kMaster;
  impl_->target = target;
  impl_->deadline_ms =
      options_.connect_timeout_ms > 0 ? MonotonicMs() + options_.connect_timeout_ms : 0;
  impl_->addrs.clear();
  impl_->addr_lens.clear();
  impl_->addr_index = 0;
  impl_->connect_error.clear();

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(target.port);
  int rc = getaddrinfo(target.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    FailAttempt("resolve " + target.host + ": " + gai_strerror(rc));
    return;
  }
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    sockaddr_storage ss{};
    std::memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    impl_->addrs.push_back(ss);
    impl_->addr_lens.push_back(ai->ai_addrlen);
  }
  freeaddrinfo(res);
  TryNextAddress();
}

void Connection::TryNextAddress() {
  while (impl_->addr_index < impl_->addrs.size()) {
    const auto& addr = impl_->addrs[impl_->addr_index];
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      impl_->connect_error = std::string("socket: ") + strerror(errno);
      impl_->addr_index++;
      continue;
    }
    int rc =
        connect(fd, reinterpret_cast<const sockaddr*>(&addr), impl_->addr_lens[impl_->addr_index]);
    if (rc == 0 || errno == EINPROGRESS) {
      fd_ = fd;
      impl_->phase = Impl::Phase::kTcpConnecting;
      if (rc == 0) OnTcpConnected();
      return;
    }
    impl_->connect_error = strerror(errno);
    close(fd);
    impl_->addr_index++;
  }
  FailAttempt("connect " + HostPort(impl_->target) + ": " +
              (impl_->connect_error.empty() ? "no address" : impl_->connect_error));
}

void Connection::OnTcpConnected() {
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(fd_, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  impl_->reader = redisReaderCreate();
  if (impl_->role == Impl::Role::kMaster && options_.tls) {
    if (!StartTls()) return;
    ContinueTlsHandshake();
    return;
  }
  BeginHandshake();
}

bool Connection::StartTls() {
  ERR_clear_error();
  if (!impl_->ssl_ctx) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
      FailAttempt("TLS: " + OpenSslErrors());
      return false;
    }
    impl_->ssl_ctx = ctx;
    if (options_.tls_verify) {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
      int ok = options_.tls_ca_cert_path.empty()
                   ? SSL_CTX_set_default_verify_paths(ctx)
                   : SSL_CTX_load_verify_locations(ctx, options_.tls_ca_cert_path.c_str(), nullptr);
      if (ok != 1) {
        FailAttempt("TLS: cannot load CA certificates " + options_.tls_ca_cert_path + ": " +
                    OpenSslErrors());
        return false;
      }
    } else {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    }
    if (!options_.tls_client_cert_path.empty()) {
      if (SSL_CTX_use_certificate_chain_file(ctx, options_.tls_client_cert_path.c_str()) != 1 ||
          SSL_CTX_use_PrivateKey_file(
              ctx,
              (options_.tls_client_key_path.empty() ? options_.tls_client_cert_path
                                                    : options_.tls_client_key_path)
                  .c_str(),
              SSL_FILETYPE_PEM) != 1) {
        FailAttempt("TLS: cannot load client certificate/key: " + OpenSslErrors());
        return false;
      }
    }
  }
  SSL* ssl = SSL_new(impl_->ssl_ctx);
  BIO* bio = ssl ? BIO_new(SocketBioMethod()) : nullptr;
  if (!ssl || !bio) {
    if (ssl) SSL_free(ssl);
    FailAttempt("TLS: " + OpenSslErrors());
    return false;
  }
  BIO_set_data(bio, reinterpret_cast<void*>(static_cast<intptr_t>(fd_)));
  SSL_set_bio(ssl, bio, bio);
  SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  const std::string& host = impl_->target.host;
  if (!IsIpLiteral(host)) SSL_set_tlsext_host_name(ssl, host.c_str());
  if (options_.tls_verify) {
    if (IsIpLiteral(host)) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
    } else {
      SSL_set1_host(ssl, host.c_str());
    }
  }
  impl_->ssl = ssl;
  impl_->phase = Impl::Phase::kTlsHandshake;
  return true;
}

void Connection::ContinueTlsHandshake() {
  ERR_clear_error();
  int rc = SSL_connect(impl_->ssl);
  if (rc == 1) {
    impl_->tls_handshake_wants_write = false;
    BeginHandshake();
    return;
  }
  int err = SSL_get_error(impl_->ssl, rc);
  if (err == SSL_ERROR_WANT_READ) {
    impl_->tls_handshake_wants_write = false;
  } else if (err == SSL_ERROR_WANT_WRITE) {
    impl_->tls_handshake_wants_write = true;
  } else {
    std::string why = err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0
                          ? (errno ? strerror(errno) : "connection closed")
                          : OpenSslErrors();
    if (err == SSL_ERROR_SSL && SSL_get_verify_result(impl_->ssl) != X509_V_OK) {
      why += " (verify: ";
      why += X509_verify_cert_error_string(SSL_get_verify_result(impl_->ssl));
      why += ")";
    }
    FailAttempt("TLS handshake with " + HostPort(impl_->target) + ": " + why);
  }
}

void Connection::BeginHandshake() {
  impl_->phase = Impl::Phase::kHandshake;
  if (impl_->role == Impl::Role::kSentinel) {
    if (!options_.sentinel_password.empty()) {
      AppendCommand({"AUTH", options_.sentinel_password}, &impl_->out);
      impl_->steps.push_back(Impl::Step::kAuth);
    }
    AppendCommand({"SENTINEL", "get-master-addr-by-name", options_.host}, &impl_->out);
    impl_->steps.push_back(Impl::Step::kSentinelQuery);
  } else {
    if (!options_.password.empty()) {
      if (options_.username.empty()) {
        AppendCommand({"AUTH", options_.password}, &impl_->out);
      } else {
        AppendCommand({"AUTH", options_.username, options_.password}, &impl_->out);
      }
      impl_->steps.push_back(Impl::Step::kAuth);
    }
    if (options_.db != 0) {
      AppendCommand({"SELECT", std::to_string(options_.db)}, &impl_->out);
      impl_->steps.push_back(Impl::Step::kSelect);
    }
  }
  if (impl_->steps.empty()) {
    BecomeReady();
    return;
  }
  FlushOutput();
}

void Connection::BecomeReady() {
  impl_->phase = Impl::Phase::kReady;
  state_ = State::kReady;
  impl_->out += impl_->queued;
  impl_->queued.clear();
  uint64_t epoch = impl_->epoch;
  if (impl_->output_pending() && !FlushOutput()) return;
  if (epoch != impl_->epoch) return;
  handler_->OnReady(*this);
}

bool Connection::HandleHandshakeReply(Reply&& reply) {
  Impl::Step step = impl_->steps.front();
  impl_->steps.pop_front();
  switch (step) {
    case Impl::Step::kAuth:
      if (reply.is_error()) {
        FailAttempt("AUTH: " + reply.str);
        return false;
      }
      break;
    case Impl::Step::kSelect:
      if (reply.is_error()) {
        FailAttempt("SELECT " + std::to_string(options_.db) + ": " + reply.str);
        return false;
      }
      break;
    case Impl::Step::kSentinelQuery: {
      std::string who = "sentinel " + HostPort(impl_->target);
      if (reply.is_error()) {
        FailAttempt(who + ": " + reply.str);
        return false;
      }
      if (reply.type != Reply::Type::kArray || reply.elements.size() < 2 ||
          reply.elements[0].type != Reply::Type::kString ||
          reply.elements[1].type != Reply::Type::kString) {
        FailAttempt(who + " does not know master " + options_.host);
        return false;
      }
      Endpoint master{reply.elements[0].str, 0};
      master.port = std::atoi(reply.elements[1].str.c_str());
      if (master.host.empty() || master.port <= 0 || master.port > 65535) {
        FailAttempt(who + " gave a bad master address");
        return false;
      }
      LOG_DEBUG("redis %s: %s reports master %s at %s", name_.c_str(), who.c_str(),
                options_.host.c_str(), HostPort(master).c_str());
      StartAttempt(master, /*sentinel=*/false);
      return false;  // the sentinel's socket and reader are gone
    }
  }
  if (impl_->steps.empty()) {
    uint64_t epoch = impl_->epoch;
    BecomeReady();
    return epoch == impl_->epoch;
  }
  return true;
}

void Connection::FailAttempt(const std::string& reason) {
  if (impl_->role == Impl::Role::kSentinel) {
    if (!impl_->sentinel_errors.empty()) impl_->sentinel_errors += "; ";
    impl_->sentinel_errors += reason;
    size_t next = ++impl_->sentinel_index;
    if (next < options_.sentinels.size()) {
      StartAttempt(options_.sentinels[next], /*sentinel=*/true);
      return;
    }
    Shutdown("no sentinel knows master " + options_.host + ": " + impl_->sentinel_errors,
             /*notify=*/true);
    return;
  }
  Shutdown(reason, /*notify=*/true);
}

void Connection::Shutdown(const std::string& reason, bool notify) {
  TearDownSocket();
  impl_->queued.clear();
  state_ = State::kClosed;
  // Callbacks may queue new commands (for the next Connect): take the pending ones out first.
  std::deque<Callback> pending;
  pending.swap(callbacks_);
  for (auto& cb : pending) {
    if (cb) cb(Reply::Error("connection lost: " + reason));
  }
  if (notify) handler_->OnClosed(*this, reason);
}

void Connection::Close() { Shutdown("closed", /*notify=*/false); }

void Connection::Command(std::vector<std::string> args, Callback cb) {
  if (args.empty()) {
    if (cb) cb(Reply::Error("empty command"));
    return;
  }
  bool ready = state_ == State::kReady && impl_->phase == Impl::Phase::kReady;
  AppendCommand(args, ready ? &impl_->out : &impl_->queued);
  // In subscribe mode replies go to OnPush, so there is nothing to match a callback to.
  if (!subscribe_mode_) callbacks_.push_back(std::move(cb));
}

uint32_t Connection::events() const {
  if (fd_ < 0) return 0;
  switch (impl_->phase) {
    case Impl::Phase::kTcpConnecting:
      return EPOLLOUT;
    case Impl::Phase::kTlsHandshake:
      return impl_->tls_handshake_wants_write ? EPOLLOUT : EPOLLIN;
    default:
      break;
  }
  uint32_t ev = EPOLLIN;
  if ((impl_->output_pending() && !impl_->tls_write_wants_read) || impl_->tls_read_wants_write) {
    ev |= EPOLLOUT;
  }
  return ev;
}

void Connection::OnEvents(uint32_t epoll_events) {
  if (fd_ < 0) return;
  switch (impl_->phase) {
    case Impl::Phase::kTcpConnecting: {
      if (!(epoll_events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      int err = 0;
      socklen_t len = sizeof err;
      if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      if (err == 0) {
        OnTcpConnected();
        return;
      }
      impl_->connect_error = strerror(err);
      close(fd_);
      fd_ = -1;
      impl_->addr_index++;
      TryNextAddress();
      return;
    }
    case Impl::Phase::kTlsHandshake:
      ContinueTlsHandshake();
      return;
    case Impl::Phase::kHandshake:
    case Impl::Phase::kReady: {
      uint64_t epoch = impl_->epoch;
      if (!ReadInput()) return;
      if (epoch != impl_->epoch) return;
      if (impl_->output_pending()) FlushOutput();
      return;
    }
    case Impl::Phase::kNone:
      return;
  }
}

void Connection::Tick(int64_t now_ms) {
  if (state_ != State::kConnecting || impl_->phase == Impl::Phase::kNone) return;
  if (impl_->deadline_ms == 0 || now_ms < impl_->deadline_ms) return;
  FailAttempt("connect to " + HostPort(impl_->target) + " timed out after " +
              std::to_string(options_.connect_timeout_ms) + " ms");
}

// Reads what the socket has (bounded) and dispatches every complete reply. False when the
// connection was torn down meanwhile.
bool Connection::ReadInput() {
  char buf[16384];
  size_t total = 0;
  impl_->tls_read_wants_write = false;
  while (true) {
    ssize_t n;
    if (impl_->ssl) {
      // Past the budget, still drain what OpenSSL already decrypted: with the socket empty,
      // a level-triggered epoll would never report it.
      if (total >= kMaxReadPerCall && SSL_pending(impl_->ssl) == 0) return true;
      ERR_clear_error();
      int rc = SSL_read(impl_->ssl, buf, sizeof buf);
      if (rc > 0) {
        n = rc;
      } else {
        int err = SSL_get_error(impl_->ssl, rc);
        if (err == SSL_ERROR_WANT_READ) return true;
        if (err == SSL_ERROR_WANT_WRITE) {
          impl_->tls_read_wants_write = true;
          return true;
        }
        std::string why;
        if (err == SSL_ERROR_ZERO_RETURN) {
          why = "EOF";
        } else if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
          why = errno ? std::string("read: ") + strerror(errno) : "EOF";
        } else {
          why = "TLS read: " + OpenSslErrors();
        }
        FailAttempt(why);
        return false;
      }
    } else {
      if (total >= kMaxReadPerCall) return true;
      n = recv(fd_, buf, sizeof buf, 0);
      if (n == 0) {
        FailAttempt("EOF");
        return false;
      }
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
        if (errno == EINTR) continue;
        FailAttempt(std::string("read: ") + strerror(errno));
        return false;
      }
    }
    total += static_cast<size_t>(n);
    if (redisReaderFeed(impl_->reader, buf, static_cast<size_t>(n)) != REDIS_OK) {
      FailAttempt(std::string("protocol error: ") + impl_->reader->errstr);
      return false;
    }
    if (!DispatchReplies()) return false;
  }
}

bool Connection::DispatchReplies() {
  uint64_t epoch = impl_->epoch;
  while (true) {
    void* raw = nullptr;
    if (redisReaderGetReply(impl_->reader, &raw) != REDIS_OK) {
      FailAttempt(std::string("protocol error: ") + impl_->reader->errstr);
      return false;
    }
    if (!raw) return true;
    Reply reply = ConvertReply(static_cast<redisReply*>(raw));
    freeReplyObject(raw);
    if (impl_->phase == Impl::Phase::kHandshake) {
      if (!HandleHandshakeReply(std::move(reply))) return false;
      continue;
    }
    if (!callbacks_.empty()) {
      Callback cb = std::move(callbacks_.front());
      callbacks_.pop_front();
      if (cb) cb(std::move(reply));
    } else if (subscribe_mode_) {
      handler_->OnPush(*this, std::move(reply));
    } else {
      LOG_WARN("redis %s: reply without a pending command dropped", name_.c_str());
    }
    if (epoch != impl_->epoch) return false;
  }
}

// Writes as much pending output as the socket takes. False when the connection was torn down.
bool Connection::FlushOutput() {
  impl_->tls_write_wants_read = false;
  while (impl_->output_pending()) {
    const char* data = impl_->out.data() + impl_->out_off;
    size_t len = std::min(impl_->out.size() - impl_->out_off, kMaxWriteChunk);
    ssize_t n;
    if (impl_->ssl) {
      ERR_clear_error();
      int rc = SSL_write(impl_->ssl, data, static_cast<int>(len));
      if (rc > 0) {
        n = rc;
      } else {
        int err = SSL_get_error(impl_->ssl, rc);
        if (err == SSL_ERROR_WANT_WRITE) break;
        if (err == SSL_ERROR_WANT_READ) {
          impl_->tls_write_wants_read = true;
          break;
        }
        std::string why = err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0
                              ? std::string("write: ") + strerror(errno)
                              : "TLS write: " + OpenSslErrors();
        FailAttempt(why);
        return false;
      }
    } else {
      n = send(fd_, data, len, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        if (errno == EINTR) continue;
        FailAttempt(std::string("write: ") + strerror(errno));
        return false;
      }
    }
    impl_->out_off += static_cast<size_t>(n);
  }
  if (!impl_->output_pending()) {
    impl_->out.clear();
    impl_->out_off = 0;
  } else if (impl_->out_off >= kMaxWriteChunk && impl_->out_off * 2 >= impl_->out.size()) {
    impl_->out.erase(0, impl_->out_off);
    impl_->out_off = 0;
  }
  return true;
}

}  // namespace cable::redis
