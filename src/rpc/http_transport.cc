#include "rpc/http_transport.h"

#include <curl/curl.h>

#include <algorithm>
#include <climits>
#include <mutex>

#include "common/log.h"
#include "rpc/channel_config.h"
#include "rpc/http_codec.h"

namespace cable::rpc {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kProtoVersion = "v1";
// A Wait() with nothing to wait for still returns now and then; being woken early is harmless.
constexpr int kIdlePollMs = 60000;
// A pooled handle keeps at most this much response capacity between attempts.
constexpr size_t kKeptBodyCapacity = 64 * 1024;

CURLM* Multi(void* p) { return static_cast<CURLM*>(p); }

// libcurl's global state is set up once per process and never torn down (other threads may still
// be starting when a transport goes away).
bool GlobalInit() {
  static const CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
  return rc == CURLE_OK;
}

// Header values come from clients (the sid may be a client's X-Request-ID): no line breaks.
std::string HeaderSafe(std::string_view value) {
  std::string out(value);
  for (char& ch : out) {
    if (ch == '\r' || ch == '\n' || ch == '\0') ch = ' ';
  }
  return out;
}

}  // namespace

struct HttpTransport::Transfer {
  CURL* easy = nullptr;
  Call* call = nullptr;
  std::string request;
  std::string response;
  curl_slist* headers = nullptr;
  size_t limit = 0;
  bool too_large = false;
  uint64_t ticket = 0;
  char error[CURL_ERROR_SIZE] = {};

  static size_t OnBody(char* data, size_t size, size_t count, void* user) {
    auto* t = static_cast<Transfer*>(user);
    const size_t len = size * count;
    if (t->response.size() + len > t->limit) {
      t->too_large = true;
      return 0;  // anything but len aborts the transfer (CURLE_WRITE_ERROR)
    }
    t->response.append(data, len);
    return len;
  }
};

HttpTransport::HttpTransport(const Options& options)
    : options_(options),
      max_recv_size_(options.max_recv_size > 0 ? static_cast<size_t>(options.max_recv_size)
                                               : static_cast<size_t>(kHttpDefaultMaxRecvSize)) {
  urls_[static_cast<int>(CallKind::kConnect)] = http::MethodUrl(options.host, CallKind::kConnect);
  urls_[static_cast<int>(CallKind::kCommand)] = http::MethodUrl(options.host, CallKind::kCommand);
  urls_[static_cast<int>(CallKind::kDisconnect)] =
      http::MethodUrl(options.host, CallKind::kDisconnect);
  if (!options.http_secret.empty()) {
    auth_header_ = "Authorization: Bearer " + HeaderSafe(options.http_secret);
  }
  // As anycable-go (rpc.Config.TLSConfig): --rpc_tls_verify=false only takes effect together with
  // --rpc_enable_tls or --rpc_tls_root_ca; a bare https:// URL is always verified.
  const bool tls_configured = options.enable_tls || !options.tls_root_ca.empty();
  verify_ = !(tls_configured && !options.tls_verify);
}

cable::Result<std::unique_ptr<HttpTransport>, std::string> HttpTransport::Create(
    const Options& options) {
  if (!http::IsHttpHost(options.host)) {
    return cable::MakeError("not an http(s):// RPC host: " + options.host);
  }
  if (!GlobalInit()) return cable::MakeError(std::string("libcurl failed to initialize"));
  std::unique_ptr<HttpTransport> transport(new HttpTransport(options));
  auto init = transport->Init();
  if (!init.ok()) return cable::MakeError(init.error());
  return transport;
}

cable::Result<bool, std::string> HttpTransport::Init() {
  // The URL must be one libcurl accepts, with a host; checked once here, not per call.
  CURLU* url = curl_url();
  CURLUcode uc = curl_url_set(url, CURLUPART_URL, options_.host.c_str(), 0);
  char* host = nullptr;
  if (uc == CURLUE_OK) uc = curl_url_get(url, CURLUPART_HOST, &host, 0);
  const bool has_host = uc == CURLUE_OK && host != nullptr && host[0] != '\0';
  curl_free(host);
  curl_url_cleanup(url);
  if (!has_host) return cable::MakeError("rpc_host: invalid URL '" + options_.host + "'");

  if (!options_.tls_root_ca.empty()) {
    auto pem = LoadRootCa(options_.tls_root_ca);
    if (!pem.ok()) return cable::MakeError(pem.error());
    ca_pem_ = std::move(pem.value());
  }
  multi_ = curl_multi_init();
  if (multi_ == nullptr) return cable::MakeError(std::string("curl_multi_init failed"));
  // Keep an idle connection for every call that may be in flight at once.
  curl_multi_setopt(Multi(multi_), CURLMOPT_MAXCONNECTS, static_cast<long>(options_.concurrency));
  return true;
}

HttpTransport::~HttpTransport() {
  for (auto& [call, t] : active_) curl_multi_remove_handle(Multi(multi_), t->easy);
  for (auto& t : all_) {
    curl_slist_free_all(t->headers);
    curl_easy_cleanup(t->easy);
  }
  if (multi_ != nullptr) curl_multi_cleanup(Multi(multi_));
}

std::string HttpTransport::Describe() const {
  if (options_.host.size() >= 8 && (options_.host[4] == 's' || options_.host[4] == 'S')) {
    return std::string("https, ") + (verify_ ? "verify" : "no-verify") +
           (ca_pem_.empty() ? "" : ", own CA");
  }
  return "http";
}

HttpTransport::Transfer* HttpTransport::Acquire() {
  if (!idle_.empty()) {
    Transfer* t = idle_.back();
    idle_.pop_back();
    return t;
  }
  auto owned = std::make_unique<Transfer>();
  Transfer* t = owned.get();
  t->easy = curl_easy_init();
  if (t->easy == nullptr) return nullptr;
  all_.push_back(std::move(owned));
  CURL* e = t->easy;
  // Options that stay for the handle's life (curl keeps them across transfers).
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_POST, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Transfer::OnBody);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
  curl_easy_setopt(e, CURLOPT_PRIVATE, t);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "ringcable");
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  // Straight to the app, as anycable-go's client (no Proxy func): *_proxy variables meant for other
  // traffic must not reroute RPC.
  curl_easy_setopt(e, CURLOPT_PROXY, "");
  // A declared length over the limit fails before any byte of the body is read.
  curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(max_recv_size_));
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, verify_ ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, verify_ ? 2L : 0L);
  if (!ca_pem_.empty()) {
    // Only the given CA, as anycable-go's RootCAs pool: no system bundle besides it.
    curl_blob blob{ca_pem_.data(), ca_pem_.size(), CURL_BLOB_NOCOPY};
    curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
    curl_easy_setopt(e, CURLOPT_CAINFO, static_cast<char*>(nullptr));
    curl_easy_setopt(e, CURLOPT_CAPATH, static_cast<char*>(nullptr));
  }
  return t;
}

void HttpTransport::Release(Transfer* t) {
  curl_slist_free_all(t->headers);
  t->headers = nullptr;
  t->call = nullptr;
  t->request.clear();
  t->response.clear();
  if (t->response.capacity() > kKeptBodyCapacity) std::string().swap(t->response);
  if (t->request.capacity() > kKeptBodyCapacity) std::string().swap(t->request);
  t->too_large = false;
  t->error[0] = '\0';
  idle_.push_back(t);
}

void HttpTransport::RecordBreaker(uint64_t ticket, CircuitBreaker::Result result) {
  const auto now = Clock::now();
  breaker_.Record(ticket, result, now);
  const auto state = breaker_.StateAt(now);
  if (state == logged_state_) return;
  logged_state_ = state;
  switch (state) {
    case CircuitBreaker::State::kOpen:
      LOG_WARN("rpc: HTTP RPC circuit breaker opened: %s is failing; calls fail at once for 5 s",
               options_.host.c_str());
      break;
    case CircuitBreaker::State::kHalfOpen:
      LOG_INFO("rpc: HTTP RPC circuit breaker half-open: probing %s", options_.host.c_str());
      break;
    case CircuitBreaker::State::kClosed:
      LOG_INFO("rpc: HTTP RPC circuit breaker closed: %s answers again", options_.host.c_str());
      break;
  }
}

void HttpTransport::Start(Call* call, std::chrono::milliseconds timeout) {
  auto ticket = breaker_.Allow(Clock::now());
  if (!ticket) {
    finished_.push_back({call, grpc::Status(grpc::StatusCode::UNKNOWN,
                                            "http rpc is temporarily unavailable (circuit "
                                            "breaker open)")});
    return;
  }
  Transfer* t = Acquire();
  if (t == nullptr) {
    RecordBreaker(*ticket, CircuitBreaker::Result::kNeutral);
    finished_.push_back({call, grpc::Status(grpc::StatusCode::UNKNOWN, "curl_easy_init failed")});
    return;
  }
  t->call = call;
  t->ticket = *ticket;
  t->limit = max_recv_size_;
  t->request = http::EncodeRequest(*call);
  t->headers = curl_slist_append(nullptr, "Content-Type: application/json");
  // No "Expect: 100-continue" round trip for larger bodies.
  t->headers = curl_slist_append(t->headers, "Expect:");
  if (!auth_header_.empty()) t->headers = curl_slist_append(t->headers, auth_header_.c_str());
  t->headers =
      curl_slist_append(t->headers, ("x-anycable-meta-sid: " + HeaderSafe(call->sid)).c_str());
  t->headers = curl_slist_append(t->headers,
                                 (std::string("x-anycable-meta-protov: ") + kProtoVersion).c_str());
  CURL* e = t->easy;
  curl_easy_setopt(e, CURLOPT_URL, urls_[static_cast<int>(call->kind)].c_str());
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->request.data());
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t->request.size()));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, std::max<long>(1, static_cast<long>(timeout.count())));
  const CURLMcode mc = curl_multi_add_handle(Multi(multi_), e);
  if (mc != CURLM_OK) {
    RecordBreaker(*ticket, CircuitBreaker::Result::kNeutral);
    Release(t);
    finished_.push_back({call, grpc::Status(grpc::StatusCode::UNKNOWN,
                                            std::string("curl: ") + curl_multi_strerror(mc))});
    return;
  }
  active_[call] = t;
  added_since_perform_ = true;
}

void HttpTransport::Cancel(Call* call) {
  auto it = active_.find(call);
  if (it == active_.end()) return;
  Transfer* t = it->second;
  active_.erase(it);
  // Removing an unfinished transfer closes its connection; nothing of it is read afterwards.
  curl_multi_remove_handle(Multi(multi_), t->easy);
  RecordBreaker(t->ticket, CircuitBreaker::Result::kNeutral);
  Release(t);
  finished_.push_back({call, grpc::Status(grpc::StatusCode::CANCELLED, "canceled")});
}

void HttpTransport::Wake() { curl_multi_wakeup(Multi(multi_)); }

void HttpTransport::Wait(int timeout_ms, std::vector<Finished>* out) {
  int running = 0;
  if (added_since_perform_) {
    added_since_perform_ = false;
    curl_multi_perform(Multi(multi_), &running);
    CollectDone(out);
  }
  if (!finished_.empty()) {
    out->insert(out->end(), finished_.begin(), finished_.end());
    finished_.clear();
  }
  if (!out->empty()) timeout_ms = 0;
  int fds = 0;
  curl_multi_poll(Multi(multi_), nullptr, 0, timeout_ms < 0 ? kIdlePollMs : timeout_ms, &fds);
  curl_multi_perform(Multi(multi_), &running);
  CollectDone(out);
}

void HttpTransport::CollectDone(std::vector<Finished>* out) {
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(Multi(multi_), &left)) {
    if (msg->msg != CURLMSG_DONE) continue;
    Transfer* t = nullptr;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &t);
    const int code = msg->data.result;  // read before remove_handle frees the message
    curl_multi_remove_handle(Multi(multi_), t->easy);
    Call* call = t->call;
    active_.erase(call);
    grpc::Status status = Conclude(*t, code);
    Release(t);
    out->push_back({call, std::move(status)});
  }
}

// Maps one finished transfer to anycable-go's result (rpc/http.go) and tells the breaker.
grpc::Status HttpTransport::Conclude(Transfer& t, int curl_code) {
  long http_code = 0;
  curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &http_code);
  const auto rc = static_cast<CURLcode>(curl_code);
  const std::string detail = t.error[0] != '\0' ? t.error : curl_easy_strerror(rc);
  using R = CircuitBreaker::Result;
  if (rc == CURLE_OK) {
    RecordBreaker(t.ticket, R::kSuccess);
    if (http_code == 200) return http::DecodeResponse(*t.call, t.response);
    return http::StatusForHttpCode(http_code, t.response);
  }
  if (t.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
    RecordBreaker(t.ticket, R::kSuccess);  // the app answered; its answer is unusable
    return grpc::Status(grpc::StatusCode::UNKNOWN, "http " + std::to_string(http_code) +
                                                       ": response body exceeds " +
                                                       std::to_string(max_recv_size_) + " bytes");
  }
  if (rc == CURLE_OPERATION_TIMEDOUT) {
    RecordBreaker(t.ticket, http_code > 0 ? R::kSuccess : R::kNeutral);
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "request timeout: " + detail);
  }
  if (http_code > 0) {
    // The status line came, then the body broke off (closed mid-response): not retried.
    RecordBreaker(t.ticket, R::kSuccess);
    return grpc::Status(grpc::StatusCode::UNKNOWN,
                        "http " + std::to_string(http_code) + ": response body: " + detail);
  }
  // No answer at all (refused, reset, DNS, TLS): the only failure anycable-go retries.
  RecordBreaker(t.ticket, R::kFailure);
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, detail);
}

}  // namespace cable::rpc
