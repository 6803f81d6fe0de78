#include "tls/tls.h"

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>

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
  s->in_ += n;
  s->in_len_ -= n;
  return static_cast<int>(n);
}

int Session::BioWrite(BIO* b, const char* buf, int len) {
  BIO_clear_retry_flags(b);
  Session* s = t_io;
  if (!s || len < 0) return -1;
  s->out_.append(buf, static_cast<size_t>(len));
  return len;
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

Session::Session(const ServerContext& ctx) {
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

Session::~Session() {
  IoScope io(this);  // SSL_free writes nothing, but the BIO must never see another session
  if (ssl_) SSL_free(ssl_);
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
  IoScope io(this);
  size_t got = 0;
  int r = SSL_read_ex(ssl_, buf, cap, &got);
  if (r == 1) return got;
  int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return 0;
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
  IoScope io(this);
  int r = SSL_shutdown(ssl_);  // 0: ours sent, the peer's not seen yet; 1: both
  if (r < 0) {
    CaptureError();
    return false;
  }
  return true;
}

}  // namespace cable::tls
