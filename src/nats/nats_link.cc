#include "nats/nats_link.h"

#include <nats/nats.h>

#include <algorithm>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <random>

#include "common/log.h"

namespace cable::nats {
namespace {

// Reconnect backoff: 100 ms doubling per failed pass over the server list, capped at 2 s, each
// delay drawn from [d/2, d] so that many nodes losing one server do not return in lockstep.
constexpr int64_t kBaseReconnectDelayMs = 100;
constexpr int64_t kMaxReconnectDelayMs = 2000;
// A dead peer that sends no RST (partition) is noticed after about interval × (max out + 1).
constexpr int64_t kPingIntervalMs = 10000;
constexpr int kMaxPingsOut = 2;
// libnats has no "no reconnect buffer" setting (0 means its 8 MB default, negative is rejected):
// 1 byte is the smallest. Publish also refuses to call libnats unless the connection is up, so
// this buffer only matters for a publication racing the disconnect itself.
constexpr int kReconnectBufBytes = 1;

// libnats keeps process-wide state (timers, the async-callback thread, the delivery pool). A Link
// opens it once and never closes it: other links may still use it.
natsStatus OpenLibraryOnce() {
  static std::once_flag once;
  static natsStatus status = NATS_OK;
  std::call_once(once, [] { status = nats_Open(-1); });
  return status;
}

std::string LastError(natsStatus status) {
  std::string text = natsStatus_GetText(status);
  const char* detail = nats_GetLastError(nullptr);
  if (detail && *detail && text != detail) text += std::string(": ") + detail;
  return text;
}

// What the libnats callbacks of one link reach.
struct Target {
  Link::Handler* handler = nullptr;
  std::atomic<bool>* connected = nullptr;
  std::mutex state_mu;  // a connected_ change and its OnNatsState happen together
  std::string last_url;
  int active = 0;  // callbacks inside the handler now; guarded by Registry::mu
};

// libnats may run a callback after Close (its delivery and async-callback threads outlive the
// connection object). So callbacks get a numeric key, not a pointer, and look their link up here:
// a late callback finds nothing instead of freed memory. Close waits for running ones to leave.
class Registry {
 public:
  static Registry& Get() {
    static auto* registry = new Registry;  // never destroyed: libnats threads may run at exit
    return *registry;
  }

  void* Add(Target* target) {
    std::lock_guard lock(mu_);
    uint64_t key = next_key_++;
    live_.emplace(key, target);
    return reinterpret_cast<void*>(static_cast<uintptr_t>(key));
  }

  // After this returns no callback is inside the target's handler and none will enter it.
  void Retire(void* closure) {
    std::unique_lock lock(mu_);
    auto it = live_.find(Key(closure));
    if (it == live_.end()) return;
    Target* target = it->second;
    live_.erase(it);
    idle_.wait(lock, [&] { return target->active == 0; });
  }

  // Holds a target for the duration of one callback (nullptr when the link is closed).
  class Visit {
   public:
    explicit Visit(void* closure) : registry_(Get()) {
      std::lock_guard lock(registry_.mu_);
      auto it = registry_.live_.find(Key(closure));
      if (it == registry_.live_.end()) return;
      target_ = it->second;
      target_->active++;
    }
    ~Visit() {
      if (!target_) return;
      std::lock_guard lock(registry_.mu_);
      if (--target_->active == 0) registry_.idle_.notify_all();
    }
    Visit(const Visit&) = delete;
    Visit& operator=(const Visit&) = delete;
    Target* operator->() const { return target_; }
    explicit operator bool() const { return target_ != nullptr; }

   private:
    Registry& registry_;
    Target* target_ = nullptr;
  };

 private:
  static uint64_t Key(void* closure) {
    return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(closure));
  }

  std::mutex mu_;
  std::condition_variable idle_;
  std::unordered_map<uint64_t, Target*> live_;
  uint64_t next_key_ = 1;
};

std::string ConnectedUrl(natsConnection* conn) {
  char url[512];
  if (natsConnection_GetConnectedUrl(conn, url, sizeof url) == NATS_OK && url[0]) return url;
  return "";
}

// Reports `up` to the handler if it differs from what was last reported.
void ReportState(Target* target, natsConnection* conn, bool up) {
  std::lock_guard lock(target->state_mu);
  if (target->connected->load(std::memory_order_acquire) == up) return;
  std::string detail;
  if (up) {
    target->last_url = ConnectedUrl(conn);
    detail = "connected to " + target->last_url;  // the handler logs state changes
  } else {
    const char* error = nullptr;
    natsConnection_GetLastError(conn, &error);
    detail = "disconnected from " + target->last_url;
    if (error && *error) detail += std::string(": ") + error;
  }
  target->connected->store(up, std::memory_order_release);
  target->handler->OnNatsState(up, detail);
}

// Connected (after a delayed first connect) or reconnected.
void OnConnected(natsConnection* conn, void* closure) {
  Registry::Visit target(closure);
  if (target) ReportState(target.operator->(), conn, true);
}

void OnDisconnected(natsConnection* conn, void* closure) {
  Registry::Visit target(closure);
  if (target) ReportState(target.operator->(), conn, false);
}

// With unlimited reconnects this only happens on Close (then the link is already retired) or
// when libnats gives up for a reason of its own.
void OnClosed(natsConnection* conn, void* closure) {
  Registry::Visit target(closure);
  if (!target) return;
  LOG_WARN("nats: connection closed by the client library");
  ReportState(target.operator->(), conn, false);
}

void OnAsyncError(natsConnection*, natsSubscription* sub, natsStatus error, void*) {
  const char* subject = sub ? natsSubscription_GetSubject(sub) : nullptr;
  LOG_WARN("nats: %s%s%s", natsStatus_GetText(error), subject ? " on subject " : "",
           subject ? subject : "");
}

void OnMessage(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  {
    Registry::Visit target(closure);
    if (target) {
      int length = natsMsg_GetDataLength(msg);
      std::string payload;
      if (length > 0) payload.assign(natsMsg_GetData(msg), static_cast<size_t>(length));
      target->handler->OnNatsMessage(natsMsg_GetSubject(msg), std::move(payload));
    }
  }
  natsMsg_Destroy(msg);
}

int64_t ReconnectDelay(natsConnection*, int attempts, void*) {
  thread_local std::minstd_rand random{std::random_device{}()};
  int doublings = std::clamp(attempts - 1, 0, 10);
  int64_t ceiling = std::min(kMaxReconnectDelayMs, kBaseReconnectDelayMs << doublings);
  return ceiling / 2 + static_cast<int64_t>(random() % static_cast<uint64_t>(ceiling / 2 + 1));
}

// NATS subjects are dot-separated tokens of non-whitespace bytes; '*' and '>' are wildcard tokens
// ('>' only last), allowed for subscriptions but not for publications.
bool ValidSubject(std::string_view subject, bool allow_wildcards) {
  if (subject.empty()) return false;
  size_t start = 0;
  for (;;) {
    size_t dot = subject.find('.', start);
    std::string_view token =
        subject.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (token.empty()) return false;
    for (unsigned char c : token) {
      if (c <= ' ' || c == 0x7f) return false;
    }
    if (token == "*" || token == ">") {
      if (!allow_wildcards) return false;
      if (token == ">" && dot != std::string_view::npos) return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

std::string_view Trim(std::string_view s) {
  const char* kSpace = " \t\r\n";
  size_t first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(kSpace) - first + 1);
}

// One --nats_servers entry → a URL libnats accepts, or what is wrong with it.
Result<std::string, std::string> NormalizeServer(std::string_view entry) {
  for (unsigned char c : entry) {
    if (c <= ' ' || c == 0x7f) return MakeError(std::string("whitespace or control character"));
  }
  std::string scheme = "nats";
  std::string_view rest = entry;
  if (size_t sep = entry.find("://"); sep != std::string_view::npos) {
    scheme.assign(entry.substr(0, sep));
    std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    rest = entry.substr(sep + 3);
  }
  if (scheme != "nats" && scheme != "tls") return MakeError(std::string("unsupported scheme"));
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) return MakeError(std::string("unexpected path"));
  std::string_view host_port = rest;
  if (size_t at = rest.rfind('@'); at != std::string_view::npos) {
    if (at == 0) return MakeError(std::string("empty user info"));
    host_port = rest.substr(at + 1);
  }
  std::string_view host = host_port;
  std::string_view port;
  bool has_port = false;
  if (!host_port.empty() && host_port.front() == '[') {  // [IPv6]:port
    size_t close = host_port.find(']');
    if (close == std::string_view::npos) return MakeError(std::string("unterminated IPv6 address"));
    host = host_port.substr(1, close - 1);
    std::string_view after = host_port.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return MakeError(std::string("bad port"));
      has_port = true;
      port = after.substr(1);
    }
  } else if (size_t colon = host_port.rfind(':'); colon != std::string_view::npos) {
    host = host_port.substr(0, colon);
    has_port = true;
    port = host_port.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return MakeError(std::string("IPv6 address without brackets"));
    }
  }
  if (host.empty()) return MakeError(std::string("missing host"));
  if (has_port) {
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return MakeError(std::string("bad port"));
    }
    int number = std::stoi(std::string(port));
    if (number < 1 || number > 65535) return MakeError(std::string("bad port"));
  }
  return scheme + "://" + std::string(rest);
}

}  // namespace

Result<Options, std::string> ParseServers(const std::string& list) {
  Options options;
  if (Trim(list).empty()) return MakeError(std::string("--nats_servers: no servers given"));
  size_t start = 0;
  for (int position = 1;; position++) {
    size_t comma = list.find(',', start);
    std::string_view entry = Trim(std::string_view(list).substr(
        start, comma == std::string::npos ? std::string::npos : comma - start));
    if (entry.empty()) {
      return MakeError("--nats_servers: empty entry #" + std::to_string(position) + " in \"" +
                       list + "\"");
    }
    auto url = NormalizeServer(entry);
    if (!url) {
      return MakeError("--nats_servers: " + url.error() + " in \"" + std::string(entry) + "\"");
    }
    options.servers.push_back(std::move(url.value()));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return options;
}

struct Link::Impl {
  Target target;
  void* closure = nullptr;  // this link's key in the Registry
  natsConnection* conn = nullptr;
  std::unordered_map<std::string, natsSubscription*> subscriptions;
  bool closed = false;
};

Result<std::unique_ptr<Link>, std::string> Link::Start(const Options& options, Handler* handler) {
  if (!handler) return MakeError(std::string("nats: no handler"));
  if (options.servers.empty()) return MakeError(std::string("nats: no servers"));
  if (natsStatus s = OpenLibraryOnce(); s != NATS_OK) {
    return MakeError("nats: cannot initialize the client library: " + LastError(s));
  }
  std::unique_ptr<Link> link(new Link());
  link->impl_ = std::make_unique<Impl>();
  Impl& impl = *link->impl_;
  impl.target.handler = handler;
  impl.target.connected = &link->connected_;
  impl.closure = Registry::Get().Add(&impl.target);

  std::vector<const char*> urls;
  for (const auto& url : options.servers) urls.push_back(url.c_str());
  natsOptions* opts = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK) s = natsOptions_SetServers(opts, urls.data(), static_cast<int>(urls.size()));
  if (s == NATS_OK) s = natsOptions_SetNoRandomize(opts, options.dont_randomize);
  if (s == NATS_OK && !options.name.empty()) s = natsOptions_SetName(opts, options.name.c_str());
  if (s == NATS_OK) s = natsOptions_SetAllowReconnect(opts, true);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);
  if (s == NATS_OK) s = natsOptions_SetCustomReconnectDelay(opts, ReconnectDelay, nullptr);
  if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(opts, kReconnectBufBytes);
  if (s == NATS_OK) s = natsOptions_SetPingInterval(opts, kPingIntervalMs);
  if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(opts, kMaxPingsOut);
  // One shared delivery thread instead of one thread per subscription (a node may subscribe to
  // many subjects); it also keeps one delivery order across this link's subscriptions.
  if (s == NATS_OK) s = natsOptions_UseGlobalMessageDelivery(opts, true);
  if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(opts, true, OnConnected, impl.closure);
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(opts, OnConnected, impl.closure);
  if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(opts, OnDisconnected, impl.closure);
  if (s == NATS_OK) s = natsOptions_SetClosedCB(opts, OnClosed, impl.closure);
  if (s == NATS_OK) s = natsOptions_SetErrorHandler(opts, OnAsyncError, nullptr);
  if (s != NATS_OK) {
    std::string error = "nats: bad options: " + LastError(s);
    natsOptions_Destroy(opts);
    return MakeError(std::move(error));
  }
  s = natsConnection_Connect(&impl.conn, opts);
  natsOptions_Destroy(opts);  // the connection keeps its own copy
  if (s == NATS_OK) {
    // No connected callback for a connect that succeeds at once; report it here unless a
    // disconnect already overtook it.
    if (natsConnection_Status(impl.conn) == NATS_CONN_STATUS_CONNECTED) {
      ReportState(&impl.target, impl.conn, true);
    }
  } else if (s == NATS_NOT_YET_CONNECTED) {
    LOG_WARN("nats: link down: no server reachable yet (retrying in the background)");
  } else {
    std::string error = "nats: cannot connect: " + LastError(s);
    impl.conn = nullptr;
    return MakeError(std::move(error));
  }
  return link;
}

Link::~Link() { Close(); }

void Link::Subscribe(const std::string& subject) {
  if (!impl_ || impl_->closed || impl_->subscriptions.count(subject)) return;
  if (!ValidSubject(subject, true)) {
    LOG_WARN("nats: cannot subscribe to invalid subject \"%s\"", subject.c_str());
    return;
  }
  natsSubscription* sub = nullptr;
  // libnats accepts subscriptions while (re)connecting and sends them once connected.
  natsStatus s =
      natsConnection_Subscribe(&sub, impl_->conn, subject.c_str(), OnMessage, impl_->closure);
  if (s != NATS_OK) {
    LOG_WARN("nats: subscribe to \"%s\" failed: %s", subject.c_str(), LastError(s).c_str());
    return;
  }
  impl_->subscriptions.emplace(subject, sub);
}

void Link::Unsubscribe(const std::string& subject) {
  if (!impl_ || impl_->closed) return;
  auto it = impl_->subscriptions.find(subject);
  if (it == impl_->subscriptions.end()) return;
  natsSubscription_Unsubscribe(it->second);  // fails only if already closed: nothing to undo
  natsSubscription_Destroy(it->second);
  impl_->subscriptions.erase(it);
}

bool Link::Publish(const std::string& subject, std::string_view payload) {
  if (!impl_ || impl_->closed) return false;
  if (!ValidSubject(subject, false) || payload.size() > static_cast<size_t>(INT_MAX)) return false;
  // Both: what the handler was told, and what libnats knows right now (its callbacks lag).
  if (!connected() || natsConnection_Status(impl_->conn) != NATS_CONN_STATUS_CONNECTED) {
    return false;
  }
  return natsConnection_Publish(impl_->conn, subject.c_str(), payload.data(),
                                static_cast<int>(payload.size())) == NATS_OK;
}

bool Link::Flush(int timeout_ms) {
  if (!impl_ || impl_->closed || !connected()) return false;
  return natsConnection_FlushTimeout(impl_->conn, timeout_ms) == NATS_OK;
}

void Link::Close() {
  if (!impl_ || impl_->closed) return;
  impl_->closed = true;
  // First stop and drain our callbacks, so nothing reaches the handler while libnats shuts down.
  Registry::Get().Retire(impl_->closure);
  connected_.store(false, std::memory_order_release);
  if (impl_->conn) natsConnection_Close(impl_->conn);
  for (auto& [subject, sub] : impl_->subscriptions) natsSubscription_Destroy(sub);
  impl_->subscriptions.clear();
  if (impl_->conn) natsConnection_Destroy(impl_->conn);
  impl_->conn = nullptr;
}

}  // namespace cable::nats
