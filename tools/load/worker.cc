#include "worker.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ipc.h"
#include "ws.h"

namespace cable::load {
namespace {

constexpr uint64_t kCtrlTag = UINT64_MAX;
constexpr int64_t kProgressEveryNs = 500'000'000;
constexpr size_t kReadChunk = 256 * 1024;

// Value of "key" (after optional blanks and the colon), or npos.
size_t ValueAt(std::string_view text, std::string_view quoted_key, size_t from = 0) {
  size_t at = text.find(quoted_key, from);
  if (at == std::string_view::npos) return at;
  at += quoted_key.size();
  while (at < text.size() && (text[at] == ' ' || text[at] == ':')) ++at;
  return at;
}

// Parses the integer after `name` (which may be wrapped in escaped quotes: the publication can be
// embedded as a JSON string). false when absent.
bool IntAfter(std::string_view text, size_t from, std::string_view name, int64_t* out) {
  size_t at = text.find(name, from);
  if (at == std::string_view::npos) return false;
  at += name.size();
  while (at < text.size() &&
         (text[at] == '\\' || text[at] == '"' || text[at] == ':' || text[at] == ' ')) {
    ++at;
  }
  if (at >= text.size() || text[at] < '0' || text[at] > '9') return false;
  int64_t v = 0;
  while (at < text.size() && text[at] >= '0' && text[at] <= '9') {
    v = v * 10 + (text[at] - '0');
    ++at;
  }
  *out = v;
  return true;
}

// The "sid" string of a welcome ("" when absent); sids are url-safe, no escapes to undo.
std::string SidOf(std::string_view welcome) {
  size_t at = ValueAt(welcome, "\"sid\"");
  if (at == std::string_view::npos || at >= welcome.size() || welcome[at] != '"') return "";
  size_t end = welcome.find('"', at + 1);
  return end == std::string_view::npos ? "" : std::string(welcome.substr(at + 1, end - at - 1));
}

uint32_t SplitMix(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return static_cast<uint32_t>(z ^ (z >> 31));
}

std::string Base64Key(uint64_t seed) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  // 16 random bytes -> 22 base64 chars + "==": the last char only carries 2 bits.
  std::string key;
  uint64_t s = seed;
  for (int i = 0; i < 21; ++i) key += kAlphabet[SplitMix(&s) & 63];
  key += kAlphabet[(SplitMix(&s) & 3) << 4];
  key += "==";
  return key;
}

double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

enum class State : uint8_t {
  kIdle,         // not started
  kConnecting,   // TCP connect in progress
  kUpgrading,    // upgrade request sent
  kWelcome,      // waiting for welcome
  kSubscribing,  // subscribe sent, waiting for confirm
  kCatchingUp,   // restore mode: restored, history asked, waiting for confirm_history
  kReady,
  kDone,  // failed or closed
};

struct Conn {
  int fd = -1;
  State state = State::kIdle;
  bool measured = false;  // subscribed when the broadcast phase started
  bool want_write = false;
  int64_t start_ns = 0;
  uint64_t max_seq = 0;
  uint64_t received = 0;
  std::string sid;   // restore mode: the session id from the first welcome
  std::string head;  // upgrade response bytes until the head is complete (--sse: raw body too)
  std::string sse;   // --sse: decoded body not yet split into events
  std::string out;   // bytes the socket did not take yet
  FrameReader reader;
  // wss://: the connection's TLS over memory BIOs (the socket stays ours and non-blocking):
  // ciphertext read from the socket goes into the SSL's read BIO, everything it writes is sent.
  SSL* ssl = nullptr;
};

void FreeTls(Conn& c) {
  if (c.ssl) SSL_free(c.ssl);  // frees both BIOs
  c.ssl = nullptr;
}

class Worker {
 public:
  Worker(const Options& o, const WorkerPlan& plan, int ctrl_fd, int report_fd)
      : o_(o), plan_(plan), ctrl_fd_(ctrl_fd), report_fd_(report_fd), conns_(plan.count) {
    mask_state_ = 0x5eed0000ULL + static_cast<uint64_t>(plan.index);
    subscribe_ = R"({"command":"subscribe","identifier":)" + JsonQuote(o.identifier) + "}";
    if (o.tls) {
      tls_ctx_ = SSL_CTX_new(TLS_client_method());
      SSL_CTX_set_verify(tls_ctx_, SSL_VERIFY_NONE, nullptr);  // load tests use test certificates
      SSL_CTX_set_mode(tls_ctx_, SSL_MODE_RELEASE_BUFFERS);
    }
  }
  ~Worker() {
    for (Conn& c : conns_) FreeTls(c);
    if (tls_ctx_) SSL_CTX_free(tls_ctx_);
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  int Run();

 private:
  static std::string JsonQuote(std::string_view s);
  void StartOne(int i);
  void OnEvent(int i, uint32_t events);
  void OnReadable(int i);
  void HandleFrame(int i, const WsMessage& m);
  void HandleCable(int i, const CableEvent& e, std::string_view payload);
  std::string HandshakeRequest(int i) const;  // the WebSocket upgrade, or the SSE GET
  // --sse: the response head, then the chunked body's events.
  void OnSseBytes(int i, std::string_view data);
  void Fail(int i, Failure why, int err = 0);
  void CloseReady(int i);
  void Send(int i, std::string_view data);     // plaintext: through TLS when wss://
  void SendRaw(int i, std::string_view data);  // bytes for the socket as they are
  bool StartTls(int i);
  bool FlushTls(int i);  // sends what the SSL wrote; false if the connection failed
  void SendFrame(int i, Opcode op, std::string_view payload);
  void Flush(int i);
  void UpdateEpoll(int i);
  void Report(MsgType type, std::string_view payload);
  void ReportProgress() { Report(MsgType::kProgress, EncodeCounters(c_)); }
  bool HandleCtrl();
  void StartMeasuring();
  void AdvanceAck();
  void Finish(uint64_t sent);
  void DropAll();
  void StartRestore();
  std::string PathFor(int i) const;

  const Options& o_;
  WorkerPlan plan_;
  int ctrl_fd_;
  int report_fd_;
  int epfd_ = -1;
  std::vector<Conn> conns_;
  Counters c_;
  Histogram handshake_;
  Histogram latency_;
  std::string subscribe_;
  uint64_t mask_state_;
  char* buf_ = nullptr;
  MessageReader ctrl_;
  SSL_CTX* tls_ctx_ = nullptr;
  std::string plain_;  // decrypted bytes of one read (wss://)
  bool done_ = false;
  int exit_code_ = 0;
  double cpu_base_ = 0;
  // Broadcast phase: how many live measured connections have each max_seq, and the lowest one.
  bool measuring_ = false;
  std::vector<uint32_t> at_seq_;
  uint64_t min_seq_ = 0;
  uint64_t acked_ = 0;
  uint64_t measured_live_ = 0;
  // Connect (or, in restore mode, reconnect) schedule: the next connection to start.
  int next_ = 0;
  bool phase_done_ = false;
  int64_t phase_start_ns_ = 0;
  int64_t phase_deadline_ns_ = 0;
  // Restore mode: reconnecting with sids; the history command every restored client sends.
  bool restoring_ = false;
  std::string history_;
};

std::string Worker::JsonQuote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += static_cast<char>(ch);
    } else if (ch < 0x20) {
      char b[8];
      std::snprintf(b, sizeof(b), "\\u%04x", ch);
      out += b;
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out + "\"";
}

void Worker::Report(MsgType type, std::string_view payload) {
  std::string msg;
  AppendMessage(&msg, type, payload);
  if (!WriteAll(report_fd_, msg)) _exit(1);  // the parent is gone
}

void Worker::UpdateEpoll(int i) {
  Conn& c = conns_[i];
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  if (c.want_write) ev.events |= EPOLLOUT;
  ev.data.u64 = static_cast<uint64_t>(i);
  epoll_ctl(epfd_, EPOLL_CTL_MOD, c.fd, &ev);
}

void Worker::StartOne(int i) {
  Conn& c = conns_[i];
  ++c_.attempted;
  c.start_ns = MonotonicNs();
  if (c_.first_start_ns == 0) c_.first_start_ns = c.start_ns;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    c.state = State::kDone;
    ++c_.failed;
    ++c_.failures[static_cast<int>(Failure::kSocket)];
    if (!c_.first_errno) c_.first_errno = errno;
    return;
  }
  c.fd = fd;
  c.state = State::kConnecting;
  ++c_.in_flight;
  int one = 1;
  // Pick the port at connect() time, per destination, instead of reserving one per bind().
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in src{};
  src.sin_family = AF_INET;
  src.sin_addr.s_addr =
      htonl(INADDR_LOOPBACK + static_cast<uint32_t>((plan_.first_conn + i) % o_.source_ips));
  if (bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof(src)) != 0) {
    Fail(i, Failure::kSocket, errno);
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
  ev.data.u64 = static_cast<uint64_t>(i);
  c.want_write = true;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    Fail(i, Failure::kSocket, errno);
    return;
  }
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_addr.s_addr = o_.url.addr;
  dst.sin_port = htons(o_.url.port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof(dst)) != 0 && errno != EINPROGRESS) {
    Fail(i, Failure::kConnect, errno);
  }
}

std::string Worker::PathFor(int i) const {
  if (!restoring_) return o_.url.path;
  // As @anycable/web without custom headers: the previous sid in the query.
  const char sep = o_.url.path.find('?') == std::string::npos ? '?' : '&';
  return o_.url.path + sep + "sid=" + conns_[i].sid;
}

void Worker::Fail(int i, Failure why, int err) {
  Conn& c = conns_[i];
  if (c.state == State::kDone) return;
  if (c.state == State::kReady) {
    CloseReady(i);
    return;
  }
  if (c.state != State::kIdle) --c_.in_flight;
  if (c.fd >= 0) close(c.fd);  // also removes it from epoll
  c.fd = -1;
  c.state = State::kDone;
  ++c_.failed;
  ++c_.failures[static_cast<int>(why)];
  if (err && !c_.first_errno) c_.first_errno = err;
  std::string().swap(c.head);
  std::string().swap(c.out);
  c.reader = FrameReader();
  FreeTls(c);
}

// A subscribed connection went away (server closed it or sent garbage).
void Worker::CloseReady(int i) {
  Conn& c = conns_[i];
  close(c.fd);
  c.fd = -1;
  c.state = State::kDone;
  --c_.live;
  ++c_.dropped;
  if (c.measured && measuring_) {
    --at_seq_[c.max_seq];
    --measured_live_;
  }
  std::string().swap(c.out);
  c.reader = FrameReader();
  FreeTls(c);
}

void Worker::Send(int i, std::string_view data) {
  Conn& c = conns_[i];
  if (!c.ssl) return SendRaw(i, data);
  size_t written = 0;
  if (!data.empty() &&
      (SSL_write_ex(c.ssl, data.data(), data.size(), &written) != 1 || written != data.size())) {
    ERR_clear_error();
    Fail(i, Failure::kProtocol);
    return;
  }
  FlushTls(i);
}

bool Worker::StartTls(int i) {
  Conn& c = conns_[i];
  c.ssl = SSL_new(tls_ctx_);
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  if (!c.ssl || !rbio || !wbio) {
    BIO_free(rbio);
    BIO_free(wbio);
    ERR_clear_error();
    Fail(i, Failure::kProtocol);
    return false;
  }
  BIO_set_mem_eof_return(rbio, -1);
  SSL_set_bio(c.ssl, rbio, wbio);
  SSL_set_connect_state(c.ssl);
  SSL_do_handshake(c.ssl);  // writes the ClientHello
  return FlushTls(i);
}

bool Worker::FlushTls(int i) {
  Conn& c = conns_[i];
  BIO* wbio = SSL_get_wbio(c.ssl);
  char tmp[16384];
  for (;;) {
    int n = BIO_read(wbio, tmp, sizeof(tmp));
    if (n <= 0) return true;
    SendRaw(i, std::string_view(tmp, static_cast<size_t>(n)));
    if (c.state == State::kDone || !c.ssl) return false;
  }
}

void Worker::SendRaw(int i, std::string_view data) {
  Conn& c = conns_[i];
  if (c.out.empty()) {
    ssize_t n = send(c.fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        Fail(i, Failure::kClosed, errno);
        return;
      }
      n = 0;
    }
    data.remove_prefix(static_cast<size_t>(n));
    if (data.empty()) return;
  }
  c.out.append(data);
  if (!c.want_write) {
    c.want_write = true;
    UpdateEpoll(i);
  }
}

void Worker::SendFrame(int i, Opcode op, std::string_view payload) {
  std::string frame;
  AppendClientFrame(&frame, op, payload, SplitMix(&mask_state_));
  Send(i, frame);
}

void Worker::Flush(int i) {
  Conn& c = conns_[i];
  while (!c.out.empty()) {
    ssize_t n = send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      Fail(i, Failure::kClosed, errno);
      return;
    }
    c.out.erase(0, static_cast<size_t>(n));
  }
  c.want_write = false;
  UpdateEpoll(i);
}

void Worker::OnEvent(int i, uint32_t events) {
  Conn& c = conns_[i];
  if (c.state == State::kConnecting) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
      Fail(i, Failure::kConnect, err ? err : ECONNRESET);
      return;
    }
    c.state = State::kUpgrading;
    c.want_write = false;
    UpdateEpoll(i);
    if (tls_ctx_) {
      StartTls(i);  // the upgrade request follows once the handshake is done (OnReadable)
      return;
    }
    Send(i, HandshakeRequest(i));
    return;
  }
  if (c.state == State::kDone) return;
  if (events & EPOLLOUT) {
    Flush(i);
    if (c.state == State::kDone) return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) OnReadable(i);
}

void Worker::OnReadable(int i) {
  Conn& c = conns_[i];
  for (;;) {
    ssize_t n = recv(c.fd, buf_, kReadChunk, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      Fail(i, Failure::kClosed, errno);
      return;
    }
    if (n == 0) {
      Fail(i, Failure::kClosed);
      return;
    }
    if (measuring_ && c.measured) c_.wire_bytes += static_cast<uint64_t>(n);
    std::string_view data(buf_, static_cast<size_t>(n));
    if (c.ssl) {
      BIO_write(SSL_get_rbio(c.ssl), buf_, static_cast<int>(n));
      if (!SSL_is_init_finished(c.ssl)) {
        int r = SSL_do_handshake(c.ssl);
        if (!FlushTls(i)) return;
        if (r != 1) {
          if (SSL_get_error(c.ssl, r) != SSL_ERROR_WANT_READ) {
            ERR_clear_error();
            Fail(i, Failure::kProtocol);
            return;
          }
          if (static_cast<size_t>(n) < kReadChunk) return;
          continue;
        }
        Send(i, HandshakeRequest(i));
        if (c.state == State::kDone) return;
      }
      plain_.clear();
      for (;;) {
        size_t got = 0;
        char tmp[16384];
        if (SSL_read_ex(c.ssl, tmp, sizeof(tmp), &got) == 1) {
          plain_.append(tmp, got);
          continue;
        }
        int err = SSL_get_error(c.ssl, 0);
        if (err == SSL_ERROR_WANT_READ) break;
        ERR_clear_error();
        Fail(i, err == SSL_ERROR_ZERO_RETURN ? Failure::kClosed : Failure::kProtocol);
        return;
      }
      if (plain_.empty()) {
        if (static_cast<size_t>(n) < kReadChunk) return;
        continue;
      }
      data = plain_;
    }
    if (o_.sse) {
      OnSseBytes(i, data);
      if (c.state == State::kDone) return;
      if (static_cast<size_t>(n) < kReadChunk) return;
      continue;
    }
    if (c.state == State::kUpgrading) {
      c.head.append(data);
      int status = 0;
      std::string key = Base64Key(static_cast<uint64_t>(plan_.first_conn + i) * 7919 + 17);
      auto r = ParseUpgradeResponse(c.head, WebSocketAccept(key), &status);
      if (!r) {
        if (!c_.first_status) c_.first_status = status;
        Fail(i, Failure::kUpgrade);
        return;
      }
      if (r.value() == 0) {
        if (static_cast<size_t>(n) < kReadChunk) return;
        continue;
      }
      c.state = State::kWelcome;
      c.reader.set_deflate(o_.compression);
      c.reader.Feed(std::string_view(c.head).substr(r.value()));
      std::string().swap(c.head);
    } else {
      c.reader.Feed(data);
    }
    WsMessage m;
    for (;;) {
      auto next = c.reader.Next(&m);
      if (!next) {
        Fail(i, Failure::kProtocol);
        return;
      }
      if (!next.value()) break;
      HandleFrame(i, m);
      if (c.state == State::kDone) return;
    }
    if (static_cast<size_t>(n) < kReadChunk) return;
  }
}

void Worker::HandleFrame(int i, const WsMessage& m) {
  switch (m.opcode) {
    case Opcode::kPing:
      SendFrame(i, Opcode::kPong, m.payload);
      return;
    case Opcode::kClose:
      Fail(i, Failure::kClosed);
      return;
    case Opcode::kText:
    case Opcode::kBinary:
      break;
    default:
      return;
  }
  HandleCable(i, ClassifyFrame(m.payload), m.payload);
}

void Worker::HandleCable(int i, const CableEvent& e, std::string_view payload) {
  Conn& c = conns_[i];
  switch (c.state) {
    case State::kWelcome:
      if (e.kind == CableKind::kWelcome && restoring_) {
        // The server restores the subscriptions itself; the client only asks for what it missed.
        if (payload.find("\"restored\":true") == std::string::npos) {
          ++c_.not_restored;
          Fail(i, Failure::kRejected);
          return;
        }
        c.state = State::kCatchingUp;
        SendFrame(i, Opcode::kText, history_);
      } else if (e.kind == CableKind::kWelcome) {
        if (o_.mode == Mode::kRestore) c.sid = SidOf(payload);
        c.state = State::kSubscribing;
        if (!o_.sse) SendFrame(i, Opcode::kText, subscribe_);  // SSE: the GET subscribed
      } else if (e.kind == CableKind::kDisconnect) {
        Fail(i, Failure::kRejected);
      }
      return;
    case State::kSubscribing:
      if (e.kind == CableKind::kConfirm) {
        int64_t now = MonotonicNs();
        handshake_.Record(static_cast<uint64_t>(now - c.start_ns));
        c.state = State::kReady;
        --c_.in_flight;
        ++c_.subscribed;
        ++c_.live;
        c_.last_ready_ns = now;
      } else if (e.kind == CableKind::kReject || e.kind == CableKind::kDisconnect) {
        Fail(i, Failure::kRejected);
      }
      return;
    case State::kCatchingUp:
      if (e.kind == CableKind::kDelivery) {
        ++c_.deliveries;
        ++c.received;
        c_.last_delivery_ns = RealtimeNs();
        if (e.seq > c.max_seq) {
          c.max_seq = e.seq;
        } else {
          ++c_.out_of_order;
        }
      } else if (e.kind == CableKind::kConfirmHistory) {
        int64_t now = MonotonicNs();
        handshake_.Record(static_cast<uint64_t>(now - c.start_ns));
        c.state = State::kReady;
        --c_.in_flight;
        ++c_.subscribed;
        ++c_.restored;
        ++c_.live;
        c_.last_ready_ns = now;
      } else if (e.kind == CableKind::kRejectHistory || e.kind == CableKind::kDisconnect) {
        Fail(i, Failure::kRejected);
      }
      return;
    case State::kReady:
      if (e.kind == CableKind::kDelivery) {
        if (!measuring_ || !c.measured) return;
        int64_t now = RealtimeNs();
        latency_.Record(e.ts > 0 && now > e.ts ? static_cast<uint64_t>(now - e.ts) : 0);
        ++c_.deliveries;
        c_.last_delivery_ns = now;
        if (e.seq > static_cast<uint64_t>(o_.messages)) return;
        ++c.received;
        if (e.seq > c.max_seq) {
          --at_seq_[c.max_seq];
          ++at_seq_[e.seq];
          c.max_seq = e.seq;
        } else {
          ++c_.out_of_order;
        }
      } else if (e.kind == CableKind::kDisconnect) {
        CloseReady(i);
      }
      return;
    default:
      return;
  }
}

std::string Worker::HandshakeRequest(int i) const {
  if (o_.sse) {
    std::string target = o_.url.path;
    target += target.find('?') == std::string::npos ? '?' : '&';
    target += "identifier=";
    static const char* kHex = "0123456789ABCDEF";
    for (unsigned char ch : o_.identifier) {
      if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
        target += static_cast<char>(ch);
      } else {
        target += '%';
        target += kHex[ch >> 4];
        target += kHex[ch & 15];
      }
    }
    return "GET " + target + " HTTP/1.1\r\nHost: " + o_.url.host_port +
           "\r\nAccept: text/event-stream\r\n\r\n";
  }
  std::string key = Base64Key(static_cast<uint64_t>(plan_.first_conn + i) * 7919 + 17);
  return UpgradeRequest(o_.url.host_port, PathFor(i), key, o_.compression, o_.ext);
}

void Worker::OnSseBytes(int i, std::string_view data) {
  Conn& c = conns_[i];
  c.head.append(data);
  if (c.state == State::kUpgrading) {
    size_t end = c.head.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (c.head.size() > 16384) Fail(i, Failure::kUpgrade);
      return;
    }
    int status = 0;
    size_t sp = c.head.find(' ');
    if (sp != std::string::npos) status = std::atoi(c.head.c_str() + sp + 1);
    if (status != 200) {
      if (!c_.first_status) c_.first_status = status;
      Fail(i, Failure::kUpgrade);
      return;
    }
    c.head.erase(0, end + 4);
    c.state = State::kWelcome;
  }
  // Chunks → body (c.sse) → events.
  size_t pos = 0;
  for (;;) {
    size_t eol = c.head.find("\r\n", pos);
    if (eol == std::string::npos) break;
    size_t size = std::strtoul(c.head.c_str() + pos, nullptr, 16);
    if (c.head.size() < eol + 2 + size + 2) break;
    if (size == 0) {
      pos = c.head.size();
      Fail(i, Failure::kClosed);
      return;
    }
    c.sse.append(c.head, eol + 2, size);
    pos = eol + 2 + size + 2;
  }
  c.head.erase(0, pos);
  size_t start = 0;
  for (;;) {
    size_t end = c.sse.find("\n\n", start);
    if (end == std::string::npos) break;
    std::string_view block(c.sse.data() + start, end - start);
    start = end + 2;
    std::string_view type;
    std::string_view text;
    size_t line = 0;
    while (line < block.size()) {
      size_t nl = block.find('\n', line);
      if (nl == std::string_view::npos) nl = block.size();
      std::string_view l = block.substr(line, nl - line);
      if (l.rfind("event: ", 0) == 0) type = l.substr(7);
      if (l.rfind("data: ", 0) == 0) text = l.substr(6);
      line = nl + 1;
    }
    CableEvent e;
    if (type.empty()) {
      // A GET stream's data event is the publication's message itself.
      int64_t seq = 0, ts = 0;
      if (IntAfter(text, 0, "\"seq", &seq) && IntAfter(text, 0, "\"ts", &ts)) {
        e.kind = CableKind::kDelivery;
        e.seq = static_cast<uint64_t>(seq);
        e.ts = ts;
      }
    } else {
      e = ClassifyFrame(text);
    }
    HandleCable(i, e, text);
    if (c.state == State::kDone) return;
  }
  c.sse.erase(0, start);
}

void Worker::StartMeasuring() {
  measuring_ = true;
  cpu_base_ = CpuSeconds();
  at_seq_.assign(static_cast<size_t>(o_.messages) + 1, 0);
  for (Conn& c : conns_) {
    if (c.state != State::kReady) continue;
    c.measured = true;
    ++measured_live_;
  }
  at_seq_[0] = static_cast<uint32_t>(measured_live_);
  c_.measured = measured_live_;
  // Tells the parent that deliveries from now on are counted.
  Report(MsgType::kAck, std::string_view(reinterpret_cast<const char*>(&acked_), 8));
}

void Worker::AdvanceAck() {
  if (!measuring_) return;
  uint64_t last = static_cast<uint64_t>(o_.messages);
  if (measured_live_ == 0) {
    min_seq_ = last;
  } else {
    while (min_seq_ < last && at_seq_[min_seq_] == 0) ++min_seq_;
  }
  if (min_seq_ > acked_) {
    acked_ = min_seq_;
    Report(MsgType::kAck, std::string_view(reinterpret_cast<const char*>(&acked_), 8));
  }
}

void Worker::DropAll() {
  for (Conn& c : conns_) {
    if (c.state != State::kReady) continue;
    close(c.fd);  // the server sees an EOF: Disconnect RPC, the session goes to its cache
    c.fd = -1;
    c.state = State::kIdle;
    --c_.live;
    c.received = 0;
    c.max_seq = 0;
    std::string().swap(c.out);
    c.reader = FrameReader();
    FreeTls(c);
  }
  // Publications come after this second; `since` returns every one stamped at or after it.
  history_ = R"({"command":"history","identifier":)" + JsonQuote(o_.identifier) +
             R"(,"history":{"since":)" + std::to_string(RealtimeNs() / 1'000'000'000) + "}}";
  Report(MsgType::kDropped, "");
}

void Worker::StartRestore() {
  restoring_ = true;
  c_ = Counters();
  handshake_ = Histogram();
  cpu_base_ = CpuSeconds();
  next_ = 0;
  phase_done_ = false;
  phase_start_ns_ = MonotonicNs();
  phase_deadline_ns_ = phase_start_ns_ + static_cast<int64_t>(o_.timeout * 1e9);
}

void Worker::Finish(uint64_t sent) {
  if (restoring_) {
    for (const Conn& c : conns_) {
      if (c.state == State::kReady && c.received < sent) c_.lost += sent - c.received;
    }
  }
  if (measuring_) {
    for (const Conn& c : conns_) {
      if (c.measured && c.received < sent) c_.lost += sent - c.received;
    }
  }
  c_.cpu_s = CpuSeconds() - cpu_base_;
  WorkerResult r;
  r.counters = c_;
  r.handshake = handshake_;
  r.latency = latency_;
  Report(MsgType::kResult, EncodeResult(r));
  done_ = true;
}

bool Worker::HandleCtrl() {
  char tmp[4096];
  ssize_t n = read(ctrl_fd_, tmp, sizeof(tmp));
  if (n < 0 && errno == EINTR) return true;
  if (n <= 0) return false;  // the parent is gone
  ctrl_.Feed(std::string_view(tmp, static_cast<size_t>(n)));
  MsgType type;
  std::string_view payload;
  while (ctrl_.Next(&type, &payload)) {
    if (type == MsgType::kMeasure) {
      StartMeasuring();
      AdvanceAck();
    } else if (type == MsgType::kDrop) {
      DropAll();
    } else if (type == MsgType::kRestore) {
      StartRestore();
    } else if (type == MsgType::kFinish) {
      uint64_t sent = 0;
      if (payload.size() == 8) std::memcpy(&sent, payload.data(), 8);
      Finish(sent);
      return true;
    }
  }
  return true;
}

int Worker::Run() {
  std::vector<char> buffer(kReadChunk);
  buf_ = buffer.data();
  cpu_base_ = CpuSeconds();
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) return 1;
  epoll_event cev{};
  cev.events = EPOLLIN;
  cev.data.u64 = kCtrlTag;
  epoll_ctl(epfd_, EPOLL_CTL_ADD, ctrl_fd_, &cev);

  phase_start_ns_ = MonotonicNs();
  phase_deadline_ns_ = phase_start_ns_ + static_cast<int64_t>(o_.timeout * 1e9);
  int64_t next_progress = phase_start_ns_;
  std::vector<epoll_event> events(1024);

  while (!done_) {
    int64_t now = MonotonicNs();
    int64_t wake = next_progress;
    if (!phase_done_) {
      // Start connections the schedule and the in-flight cap allow.
      while (next_ < plan_.count && c_.in_flight < static_cast<uint64_t>(plan_.concurrency)) {
        if (restoring_ && conns_[next_].state != State::kIdle) {
          ++next_;  // never subscribed in the first phase: nothing to restore
          continue;
        }
        if (plan_.rate > 0) {
          int64_t due = phase_start_ns_ + static_cast<int64_t>(next_ / plan_.rate * 1e9);
          if (due > now) {
            wake = std::min(wake, due);
            break;
          }
        }
        StartOne(next_++);
      }
      if (now >= phase_deadline_ns_) {
        for (int i = 0; i < plan_.count; ++i) {
          if (conns_[i].state == State::kIdle) ++c_.attempted;
          if (conns_[i].state != State::kReady) Fail(i, Failure::kTimeout);
        }
        next_ = plan_.count;
      }
      if (next_ == plan_.count && c_.in_flight == 0) {
        phase_done_ = true;
        Report(MsgType::kPhaseDone, EncodeCounters(c_));
      } else {
        wake = std::min(wake, phase_deadline_ns_);
      }
    }
    if (now >= next_progress) {
      ReportProgress();
      next_progress = now + kProgressEveryNs;
      wake = std::min(wake, next_progress);
    }
    int timeout_ms = static_cast<int>(std::max<int64_t>(0, (wake - now + 999'999) / 1'000'000));
    int n = epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), timeout_ms);
    if (n < 0 && errno != EINTR) return 1;
    for (int k = 0; k < n; ++k) {
      if (events[k].data.u64 == kCtrlTag) {
        if (!HandleCtrl()) return 1;
        if (done_) break;
        continue;
      }
      OnEvent(static_cast<int>(events[k].data.u64), events[k].events);
    }
    AdvanceAck();
  }
  return exit_code_;
}

}  // namespace

int64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

int64_t RealtimeNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

CableEvent ClassifyFrame(std::string_view text) {
  CableEvent e;
  size_t msg = ValueAt(text, "\"message\"");
  if (msg != std::string_view::npos) {
    int64_t seq = 0, ts = 0;
    if (IntAfter(text, msg, "\"seq", &seq) && IntAfter(text, msg, "\"ts", &ts)) {
      e.kind = CableKind::kDelivery;
      e.seq = static_cast<uint64_t>(seq);
      e.ts = ts;
      return e;
    }
  }
  size_t type = ValueAt(text, "\"type\"");
  if (type == std::string_view::npos || type >= text.size() || text[type] != '"') return e;
  std::string_view rest = text.substr(type + 1);
  std::string_view value = rest.substr(0, rest.find('"'));
  if (value == "ping") {
    e.kind = CableKind::kPing;
  } else if (value == "welcome") {
    e.kind = CableKind::kWelcome;
  } else if (value == "confirm_subscription") {
    e.kind = CableKind::kConfirm;
  } else if (value == "reject_subscription") {
    e.kind = CableKind::kReject;
  } else if (value == "disconnect") {
    e.kind = CableKind::kDisconnect;
  } else if (value == "confirm_history") {
    e.kind = CableKind::kConfirmHistory;
  } else if (value == "reject_history") {
    e.kind = CableKind::kRejectHistory;
  }
  return e;
}

int RunWorker(const Options& options, const WorkerPlan& plan, int ctrl_fd, int report_fd) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  signal(SIGPIPE, SIG_IGN);
  Worker w(options, plan, ctrl_fd, report_fd);
  return w.Run();
}

}  // namespace cable::load
