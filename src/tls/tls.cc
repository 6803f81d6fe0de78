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

// A drained mem BIO still holding a buffer larger than this is replaced by a fresh, empty one.
// 0: always (two small allocations per receive, against ~1.5 KiB less per idle connection).
constexpr size_t kTrimAbove = 0;

bool Big(BIO* b) {
  BUF_MEM* m = nullptr;
  BIO_get_mem_ptr(b, &m);
  return m && m->max > kTrimAbove;
}

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
  // buffer (our plaintext frames are not pinned between retries, but memory BIOs never ask).
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
  ssl_ = SSL_new(ctx.raw());
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(BIO_s_mem());
  if (!ssl_ || !rbio_ || !wbio_) {
    if (ssl_) SSL_free(ssl_);
    BIO_free(rbio_);
    BIO_free(wbio_);
    ssl_ = nullptr;
    ERR_clear_error();
    return;
  }
  // An empty read BIO means "more to come", not EOF.
  BIO_set_mem_eof_return(rbio_, -1);
  SSL_set_bio(ssl_, rbio_, wbio_);
  SSL_set_accept_state(ssl_);
}

Session::~Session() {
  if (ssl_) SSL_free(ssl_);  // frees both BIOs
}

bool Session::Feed(const char* data, size_t len) {
  while (len > 0) {
    int chunk = static_cast<int>(len > INT_MAX ? INT_MAX : len);
    int n = BIO_write(rbio_, data, chunk);
    if (n <= 0) {
      CaptureError();
      return false;
    }
    data += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

void Session::CaptureError() { last_error_ = TakeErrors(); }

Session::Status Session::Handshake() {
  if (done_) return Status::kDone;
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    done_ = true;
    return Status::kDone;
  }
  int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return Status::kWantMore;
  CaptureError();
  return Status::kError;
}

size_t Session::Read(char* buf, size_t cap, Status* status) {
  *status = Status::kWantMore;
  size_t got = 0;
  int r = SSL_read_ex(ssl_, buf, cap, &got);
  if (r == 1) return got;
  int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return 0;
  if (err == SSL_ERROR_ZERO_RETURN) {
    *status = Status::kClosed;
    ERR_clear_error();
    return 0;
  }
  CaptureError();
  *status = Status::kError;
  return 0;
}

bool Session::Write(const void* data, size_t len) {
  if (len == 0) return true;
  size_t written = 0;
  if (SSL_write_ex(ssl_, data, len, &written) != 1 || written != len) {
    CaptureError();
    return false;
  }
  return true;
}

size_t Session::PendingOutput() const { return BIO_ctrl_pending(wbio_); }

size_t Session::TakeOutput(char* dst, size_t n) {
  size_t got = 0;
  if (n == 0 || BIO_read_ex(wbio_, dst, n, &got) != 1) return 0;
  return got;
}

void Session::Trim() {
  if (BIO_ctrl_pending(wbio_) == 0 && Big(wbio_)) {
    BIO* fresh = BIO_new(BIO_s_mem());
    if (fresh) {
      BIO_set_mem_eof_return(fresh, -1);
      SSL_set0_wbio(ssl_, fresh);  // frees the old one
      wbio_ = fresh;
    }
  }
  if (BIO_ctrl_pending(rbio_) == 0 && Big(rbio_)) {
    BIO* fresh = BIO_new(BIO_s_mem());
    if (fresh) {
      BIO_set_mem_eof_return(fresh, -1);
      SSL_set0_rbio(ssl_, fresh);
      rbio_ = fresh;
    }
  }
}

}  // namespace cable::tls
