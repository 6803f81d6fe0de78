#include "tls/tls.h"

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <string_view>

namespace cable::tls {
namespace {

std::string TakeErrors() {
  unsigned long e = ERR_get_error();
  std::string first;
  if (e != 0) {
    const char* reason = ERR_reason_error_string(e);
    first = reason ? reason : ("error " + std::to_string(e));
  }
  ERR_clear_error();
  return first.empty() ? std::string("unknown error") : first;
}

bool Readable(const std::string& path, std::string* why) {
  std::ifstream f(path);
  if (!f) {
    *why = strerror(errno);
    return false;
  }
  return true;
}

}  // namespace

// ---- the transport BIO ------------------------------------------------------------------------
// One BIO per thread, shared by every SSL that thread owns (each SSL holds a reference). It keeps
// no bytes: reads take from the current session's input window (Feed's bytes, read in place),
// writes append to the current session's output. "Current" is the session whose method is running
// on this thread (IoScope), so the BIO never needs to know which SSL calls it. Per thread, not per
// process: OpenSSL sets the retry flags on the BIO object itself.
namespace {
thread_local Session* t_io = nullptr;

struct IoScope {
  explicit IoScope(Session* s) : prev(t_io) { t_io = s; }
  ~IoScope() { t_io = prev; }
  Session* prev;
};

}  // namespace

int Session::BioRead(BIO* b, char* buf, int len) {
  BIO_clear_retry_flags(b);
  Session* s = t_io;
  if (!s || s->in_len_ == 0 || len <= 0) {
    BIO_set_retry_read(b);  // "more to come", never EOF: the ring reports the peer's FIN
    return -1;
  }
  size_t n = s->in_len_ < static_cast<size_t>(len) ? s->in_len_ : static_cast<size_t>(len);
  std::memcpy(buf, s->in_, n);
  if (s->want_compact_) s->in_track_.Scan(s->in_, n, s->done_, &s->no_switch_);
  s->in_ += n;
  s->in_len_ -= n;
  return static_cast<int>(n);
}

int Session::BioWrite(BIO* b, const char* buf, int len) {
  BIO_clear_retry_flags(b);
  Session* s = t_io;
  if (!s || len < 0) return -1;
  s->out_.append(buf, static_cast<size_t>(len));
  if (s->want_compact_) s->out_track_.Scan(buf, static_cast<size_t>(len), s->done_, &s->no_switch_);
  return len;
}

void Session::RecordTrack::Scan(const char* p, size_t n, bool count, bool* unexpected) {
  // Bounded: every round consumes at least one byte.
  while (n > 0) {
    if (body_left > 0) {
      size_t k = n < body_left ? n : body_left;
      body_left -= static_cast<uint32_t>(k);
      p += k;
      n -= k;
      continue;
    }
    hdr[hdr_got++] = static_cast<uint8_t>(*p++);
    --n;
    if (hdr_got < kHeaderLen) continue;
    hdr_got = 0;
    body_left = (static_cast<uint32_t>(hdr[3]) << 8) | hdr[4];
    if (count) {
      if (hdr[0] == 23) {
        ++app_records;
      } else {
        *unexpected = true;  // not an application-data record after the handshake
      }
    }
  }
}

void Session::KeyLog(const SSL*, const char* line) {
  Session* s = t_io;
  if (!s || !s->want_compact_) return;
  std::string_view l(line);
  Direction* d = nullptr;
  uint8_t* len = nullptr;
  if (l.starts_with("CLIENT_TRAFFIC_SECRET_0 ")) {
    d = &s->rx_;
    len = &s->rx_secret_len_;
  } else if (l.starts_with("SERVER_TRAFFIC_SECRET_0 ")) {
    d = &s->tx_;
    len = &s->tx_secret_len_;
  } else {
    return;
  }
  // "<label> <client random hex> <secret hex>"
  size_t sp = l.rfind(' ');
  std::string_view hex = l.substr(sp + 1);
  if (hex.size() % 2 != 0 || hex.size() / 2 > kMaxSecret) {
    s->no_switch_ = true;
    return;
  }
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < hex.size() / 2; ++i) {
    int hi = nibble(hex[2 * i]);
    int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      s->no_switch_ = true;
      return;
    }
    d->secret[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  *len = static_cast<uint8_t>(hex.size() / 2);
}

void Session::OnMessage(int write_p, int, int content_type, const void* buf, size_t len, SSL*,
                        void*) {
  Session* s = t_io;
  if (!s || !s->done_ || content_type != SSL3_RT_HANDSHAKE || len == 0) return;
  (void)write_p;
  (void)buf;
  s->no_switch_ = true;  // a KeyUpdate (or anything) after the handshake: our counts are off
}

namespace {

long BioCtrl(BIO*, int cmd, long, void*) {
  // OpenSSL flushes after each flight; everything else (pending counts, kTLS queries, ...) is 0.
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

int BioCreate(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

BIO_METHOD* Method() {
  static BIO_METHOD* m = [] {
    BIO_METHOD* bm = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ringcable tls");
    if (bm) {
      BIO_meth_set_write(bm, &Session::BioWrite);
      BIO_meth_set_read(bm, &Session::BioRead);
      BIO_meth_set_ctrl(bm, BioCtrl);
      BIO_meth_set_create(bm, BioCreate);
    }
    return bm;
  }();
  return m;
}

// The thread's BIO; this holder's reference is dropped at thread exit (SSLs keep theirs).
struct ThreadBio {
  BIO* bio = nullptr;
  ~ThreadBio() { BIO_free(bio); }
  BIO* Get() {
    if (!bio && Method()) bio = BIO_new(Method());
    return bio;
  }
};
thread_local ThreadBio t_bio;

}  // namespace

cable::Result<std::unique_ptr<ServerContext>, std::string> ServerContext::Load(
    const std::string& cert_path, const std::string& key_path) {
  if (cert_path.empty() || key_path.empty()) {
    return MakeError(std::string("--ssl_cert and --ssl_key must be given together"));
  }
  std::string why;
  if (!Readable(cert_path, &why)) {
    return MakeError("cannot read --ssl_cert " + cert_path + ": " + why);
  }
  if (!Readable(key_path, &why)) {
    return MakeError("cannot read --ssl_key " + key_path + ": " + why);
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) return MakeError("TLS: " + TakeErrors());
  std::unique_ptr<ServerContext> out(new ServerContext(ctx));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // Release record buffers whenever they are empty (idle connections); accept a moving write
  // buffer (our plaintext frames are not pinned between retries, but the transport BIO never asks).
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 0);  // no session tickets: nothing extra written after handshake
  // The compact record layer (MaybeSwitch) needs the application traffic secrets and must know of
  // any handshake message after the handshake (a KeyUpdate changes the keys).
  SSL_CTX_set_keylog_callback(ctx, &Session::KeyLog);
  SSL_CTX_set_msg_callback(ctx, &Session::OnMessage);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_path.c_str()) != 1) {
    return MakeError("cannot load --ssl_cert " + cert_path + ": " + TakeErrors());
  }
  const std::string mismatch =
      "--ssl_key " + key_path + " does not match the certificate in --ssl_cert " + cert_path;
  if (SSL_CTX_use_PrivateKey_file(ctx, key_path.c_str(), SSL_FILETYPE_PEM) != 1) {
    // OpenSSL compares the key with the certificate as it loads it.
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_X509 && (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH ||
                                           ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH)) {
      ERR_clear_error();
      return MakeError(mismatch);
    }
    return MakeError("cannot load --ssl_key " + key_path + ": " + TakeErrors());
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    return MakeError(mismatch);
  }
  return out;
}

ServerContext::~ServerContext() {
  SSL_CTX_free(ctx_.load());
  for (SSL_CTX* old : retired_) SSL_CTX_free(old);
}

std::optional<std::string> ServerContext::Reload(const std::string& cert_path,
                                                 const std::string& key_path) {
  auto fresh = Load(cert_path, key_path);
  if (!fresh.ok()) return fresh.error();
  SSL_CTX* next = fresh.value()->ctx_.exchange(nullptr);
  retired_.push_back(ctx_.exchange(next, std::memory_order_acq_rel));
  return std::nullopt;
}

Session::Session(const ServerContext& ctx) : want_compact_(ctx.compact()) {
  BIO* bio = t_bio.Get();
  if (!bio || !BIO_up_ref(bio)) {
    ERR_clear_error();
    return;
  }
  ssl_ = SSL_new(ctx.raw());
  if (!ssl_) {
    BIO_free(bio);
    ERR_clear_error();
    return;
  }
  SSL_set_bio(ssl_, bio, bio);  // takes the one reference for both directions
  SSL_set_accept_state(ssl_);
}

CompactState::~CompactState() {
  OPENSSL_cleanse(rx_secret, sizeof(rx_secret));
  OPENSSL_cleanse(tx_secret, sizeof(tx_secret));
}

Session::Session(const CompactState& state) {
  const bool known = state.suite == Suite::kAes128GcmSha256 ||
                     state.suite == Suite::kAes256GcmSha384 ||
                     state.suite == Suite::kChacha20Poly1305Sha256;
  const size_t len = known ? SuiteHashLen(state.suite) : 0;
  if (len == 0 || state.secret_len != len || !rx_.Set(state.suite, state.rx_secret, len) ||
      !tx_.Set(state.suite, state.tx_secret, len)) {
    ERR_clear_error();
    rx_.Wipe();
    tx_.Wipe();
    return;  // ok() is false: neither an SSL nor a compact layer
  }
  rx_.seq = state.rx_seq;
  tx_.seq = state.tx_seq;
  rx_secret_len_ = tx_secret_len_ = static_cast<uint8_t>(len);
  suite_ = state.suite;
  done_ = true;
  want_compact_ = true;
  compact_ = true;
}

bool Session::ExportCompact(CompactState* out) const {
  if (!CompactAndQuiet()) return false;
  const size_t len = SuiteHashLen(suite_);
  out->suite = suite_;
  out->secret_len = static_cast<uint8_t>(len);
  std::memcpy(out->rx_secret, rx_.secret, len);
  std::memcpy(out->tx_secret, tx_.secret, len);
  out->rx_seq = rx_.seq;
  out->tx_seq = tx_.seq;
  return true;
}

Session::~Session() {
  IoScope io(this);  // SSL_free writes nothing, but the BIO must never see another session
  if (ssl_) SSL_free(ssl_);
}

void Session::Fail(const char* why, uint8_t alert) {
  // A fatal alert (sent if the connection still sends anything; a failing one usually does not).
  if (!failed_) {
    uint8_t a[2] = {2, alert};
    CompactSeal(21, a, sizeof(a));
  }
  failed_ = true;
  last_error_ = why;
  std::string().swap(partial_);
  Feed(nullptr, 0);
}

void Session::MaybeSwitch() {
  // Only a quiet, plain TLS 1.3 session moves: every byte fed taken, OpenSSL holding no partial
  // record, no plaintext and nothing to send, both record streams at a record boundary, and no
  // handshake message seen since the handshake (the counted sequence numbers are then exact).
  if (no_switch_ && (rx_secret_len_ | tx_secret_len_)) {  // staying on OpenSSL: drop the secrets
    rx_.Wipe();
    tx_.Wipe();
    rx_secret_len_ = tx_secret_len_ = 0;
  }
  if (!want_compact_ || no_switch_ || compact_ || !done_ || failed_ || shutdown_sent_ || !ssl_) {
    return;
  }
  if (in_len_ != 0 || !in_track_.at_boundary() || !out_track_.at_boundary()) return;
  if (SSL_version(ssl_) != TLS1_3_VERSION || SSL_has_pending(ssl_) || SSL_pending(ssl_) > 0 ||
      SSL_get_shutdown(ssl_) != 0 || SSL_get_key_update_type(ssl_) != SSL_KEY_UPDATE_NONE ||
      SSL_get_early_data_status(ssl_) == SSL_EARLY_DATA_ACCEPTED) {
    no_switch_ = SSL_version(ssl_) != TLS1_3_VERSION;
    return;
  }
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_);
  Suite suite = cipher ? SuiteFromId(SSL_CIPHER_get_id(cipher)) : Suite::kNone;
  if (suite == Suite::kNone || rx_secret_len_ != SuiteHashLen(suite) ||
      tx_secret_len_ != SuiteHashLen(suite)) {
    no_switch_ = true;
    return;
  }
  if (!rx_.Set(suite, rx_.secret, rx_secret_len_) || !tx_.Set(suite, tx_.secret, tx_secret_len_)) {
    ERR_clear_error();
    no_switch_ = true;
    rx_.Wipe();
    tx_.Wipe();
    return;
  }
  rx_.seq = in_track_.app_records;
  tx_.seq = out_track_.app_records;
  suite_ = suite;
  compact_ = true;
  SSL_free(ssl_);  // inside the caller's IoScope: writes nothing
  ssl_ = nullptr;
  ERR_clear_error();
}

bool Session::CompactSeal(uint8_t type, const uint8_t* data, size_t len) {
  if (!compact_) return false;
  if (!Seal(suite_, tx_, type, data, len, &out_)) {
    ERR_clear_error();
    return false;
  }
  return true;
}

size_t Session::OpenRecord(const uint8_t* rec, size_t len, char* buf, size_t cap, Status* status) {
  if (rec[0] != 23) {
    Fail("unexpected record type", 10);  // unexpected_message
    *status = Status::kError;
    return 0;
  }
  thread_local std::unique_ptr<uint8_t[]> scratch;
  const size_t body = len - kHeaderLen;
  uint8_t* out = reinterpret_cast<uint8_t*>(buf);
  if (body > cap + kTagLen) {  // padding or a record at the very limit: decrypt aside
    if (!scratch) scratch.reset(new uint8_t[kMaxCipher]);
    out = scratch.get();
  }
  uint8_t type = 0;
  long n = Open(suite_, rx_, rec, len, out, &type);
  if (n < 0) {
    ERR_clear_error();
    Fail("bad record mac", 20);  // bad_record_mac
    *status = Status::kError;
    return 0;
  }
  if (type == 23) {
    if (static_cast<size_t>(n) > cap) {
      Fail("record overflow", 22);
      *status = Status::kError;
      return 0;
    }
    if (out != reinterpret_cast<uint8_t*>(buf)) std::memcpy(buf, out, static_cast<size_t>(n));
    return static_cast<size_t>(n);
  }
  if (type == 21) {
    if (n == 2 && out[1] == 0) {  // close_notify
      *status = Status::kClosed;
      Feed(nullptr, 0);
      return 0;
    }
    failed_ = true;  // any other alert ends the connection; none is answered
    last_error_ = "alert received";
    Feed(nullptr, 0);
    *status = Status::kError;
    return 0;
  }
  if (type == 22) {
    // Only KeyUpdate (RFC 8446 §4.6.3), whole and last in its record (the key changes after it).
    if (n != 5 || out[0] != 24 || out[1] != 0 || out[2] != 0 || out[3] != 1 || out[4] > 1) {
      Fail("unexpected handshake message", 10);
      *status = Status::kError;
      return 0;
    }
    const bool requested = out[4] == 1;
    if (!rx_.Update(suite_)) {
      Fail("key update failed", 80);
      *status = Status::kError;
      return 0;
    }
    if (requested) {
      const uint8_t answer[5] = {24, 0, 0, 1, 0};  // update_not_requested, then our new key
      if (!CompactSeal(22, answer, sizeof(answer)) || !tx_.Update(suite_)) {
        Fail("key update failed", 80);
        *status = Status::kError;
        return 0;
      }
    }
    return 0;
  }
  Fail("unexpected record content type", 10);
  *status = Status::kError;
  return 0;
}

size_t Session::CompactRead(char* buf, size_t cap, Status* status) {
  auto body_len = [](const void* hdr) {
    const uint8_t* h = static_cast<const uint8_t*>(hdr);
    return (static_cast<size_t>(h[3]) << 8) | h[4];
  };
  // Bounded: each round opens one whole record or returns.
  for (;;) {
    if (failed_) {
      *status = Status::kError;
      return 0;
    }
    if (partial_.empty()) {
      if (in_len_ == 0) return 0;
      if (in_len_ >= kHeaderLen) {
        const size_t body = body_len(in_);
        if (body > kMaxCipher) {
          Fail("record overflow", 22);
          *status = Status::kError;
          return 0;
        }
        if (in_len_ >= kHeaderLen + body) {  // a whole record: opened in place
          const uint8_t* rec = reinterpret_cast<const uint8_t*>(in_);
          in_ += kHeaderLen + body;
          in_len_ -= kHeaderLen + body;
          size_t n = OpenRecord(rec, kHeaderLen + body, buf, cap, status);
          if (n > 0 || *status != Status::kWantMore) return n;
          continue;
        }
        partial_.reserve(kHeaderLen + body);
      }
      partial_.assign(in_, in_len_);  // less than one record: kept until the rest arrives
      Feed(nullptr, 0);
      return 0;
    }
    if (partial_.size() < kHeaderLen) {
      size_t k = std::min(kHeaderLen - partial_.size(), in_len_);
      partial_.append(in_, k);
      in_ += k;
      in_len_ -= k;
      if (partial_.size() < kHeaderLen) return 0;
    }
    const size_t need = kHeaderLen + body_len(partial_.data());
    if (need - kHeaderLen > kMaxCipher) {
      Fail("record overflow", 22);
      *status = Status::kError;
      return 0;
    }
    size_t k = std::min(need - partial_.size(), in_len_);
    partial_.append(in_, k);
    in_ += k;
    in_len_ -= k;
    if (partial_.size() < need) return 0;
    std::string rec;
    rec.swap(partial_);  // partial_ is empty (no capacity) again
    size_t n =
        OpenRecord(reinterpret_cast<const uint8_t*>(rec.data()), rec.size(), buf, cap, status);
    if (n > 0 || *status != Status::kWantMore) return n;
  }
}

void Session::Feed(const char* data, size_t len) {
  in_ = data;
  in_len_ = len;
}

void Session::CaptureError() {
  failed_ = true;
  last_error_ = TakeErrors();
}

Session::Status Session::Handshake() {
  if (done_) return Status::kDone;
  IoScope io(this);
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    done_ = true;
    // Records are counted from here on (application traffic keys): only from a record boundary.
    if (!in_track_.at_boundary() || !out_track_.at_boundary()) no_switch_ = true;
    return Status::kDone;
  }
  int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return Status::kWantMore;
  CaptureError();
  Feed(nullptr, 0);
  return Status::kError;
}

size_t Session::Read(char* buf, size_t cap, Status* status) {
  *status = Status::kWantMore;
  if (compact_) return CompactRead(buf, cap, status);
  IoScope io(this);
  size_t got = 0;
  int r = SSL_read_ex(ssl_, buf, cap, &got);
  if (r == 1) return got;
  int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    MaybeSwitch();  // everything fed was taken: the moment a quiet session can leave OpenSSL
    return 0;
  }
  if (err == SSL_ERROR_ZERO_RETURN) {
    *status = Status::kClosed;
    ERR_clear_error();
    Feed(nullptr, 0);
    return 0;
  }
  CaptureError();
  Feed(nullptr, 0);
  *status = Status::kError;
  return 0;
}

bool Session::Write(const void* data, size_t len) {
  if (len == 0) return true;
  if (compact_) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    // Bounded: each round seals up to one full record.
    while (len > 0) {
      size_t k = std::min(len, kMaxPlain);
      if (failed_ || !CompactSeal(23, p, k)) {
        failed_ = true;
        last_error_ = "encrypting a record failed";
        return false;
      }
      p += k;
      len -= k;
    }
    return true;
  }
  IoScope io(this);
  size_t written = 0;
  if (SSL_write_ex(ssl_, data, len, &written) != 1 || written != len) {
    CaptureError();
    return false;
  }
  return true;
}

size_t Session::TakeOutput(char* dst, size_t n) {
  size_t k = n < out_.size() ? n : out_.size();
  std::memcpy(dst, out_.data(), k);
  if (k == out_.size()) {
    std::string().swap(out_);  // idle connections keep no output buffer
  } else {
    out_.erase(0, k);
  }
  return k;
}

bool Session::Shutdown() {
  if (!done_ || shutdown_sent_ || failed_) return false;
  shutdown_sent_ = true;
  if (compact_) {
    const uint8_t close_notify[2] = {1, 0};
    return CompactSeal(21, close_notify, sizeof(close_notify));
  }
  IoScope io(this);
  int r = SSL_shutdown(ssl_);  // 0: ours sent, the peer's not seen yet; 1: both
  if (r < 0) {
    CaptureError();
    return false;
  }
  return true;
}

}  // namespace cable::tls
