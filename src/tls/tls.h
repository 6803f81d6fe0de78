// TLS for the main and HTTP broadcast listeners (--ssl_cert / --ssl_key): wss:// and https:// on
// the io_uring path.
//
// OpenSSL never touches a socket here. Each TLS connection's SSL object reads ciphertext from a
// memory BIO the worker fills with what io_uring received (Feed) and writes ciphertext into a
// second memory BIO the worker drains into its send queue (TakeOutput); the ring still does every
// recv and send. Nothing blocks: a handshake or a record that needs more bytes just reports
// kWantMore and resumes on the next Feed.
//
// Ownership / threads:
// - ServerContext: one per process, built by main before the workers start (certificate chain +
//   key, checked against each other), then shared read-only: SSL_new on an SSL_CTX is thread-safe.
//   It outlives every worker.
// - Session: one per TLS connection, owned by that connection (server::Conn::tls) and used only by
//   the worker thread that owns the connection; freed with the connection. Plain connections (and
//   the separate metrics port's) have none, so they pay 8 bytes (a null pointer) for TLS.
//
// Memory: SSL_MODE_RELEASE_BUFFERS frees OpenSSL's record buffers whenever they are empty, and
// Trim() swaps a drained memory BIO for a fresh, empty one, so an idle TLS connection keeps the SSL
// object and two empty BIOs, not its peak buffers. Measured: ~24 KB of server RSS per idle TLS 1.3
// connection against ~5 KB for a plain one (3000 idle clients, 2 workers); nearly all of the
// difference is OpenSSL's own per-connection state (SSL object, cipher contexts).
//
// Errors from OpenSSL are taken off the thread's error queue before returning (it is per thread
// and would otherwise leak into the next connection's diagnosis).
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct bio_st BIO;

namespace cable::tls {

class ServerContext {
 public:
  // Loads a PEM certificate chain and a PEM private key and checks they match. The error is one
  // line fit for "ringcable: <error>" (names the flag and the path, then OpenSSL's reason).
  static cable::Result<std::unique_ptr<ServerContext>, std::string> Load(
      const std::string& cert_path, const std::string& key_path);
  ~ServerContext();
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;
  // The context new connections use (workers call SSL_new on it).
  SSL_CTX* raw() const { return ctx_.load(std::memory_order_acquire); }
  // SIGHUP (main thread only): loads the files again, checked exactly as at startup. On success new
  // connections get the new certificate; open connections keep theirs (each SSL object holds a
  // reference on its SSL_CTX). The replaced context stays allocated until this object dies: a
  // worker may be inside SSL_new on it right now, and reloads are rare. Returns the error line on
  // failure (the current certificate stays).
  std::optional<std::string> Reload(const std::string& cert_path, const std::string& key_path);

 private:
  explicit ServerContext(SSL_CTX* ctx) : ctx_(ctx) {}
  std::atomic<SSL_CTX*> ctx_;
  std::vector<SSL_CTX*> retired_;  // main thread only
};

class Session {
 public:
  enum class Status { kDone, kWantMore, kClosed, kError };

  explicit Session(const ServerContext& ctx);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  bool ok() const { return ssl_ != nullptr; }  // false only when allocation failed

  // Hands ciphertext received from the socket to OpenSSL (copied into the read BIO).
  bool Feed(const char* data, size_t len);
  // Advances the handshake: kDone once established (and on every later call), kWantMore until the
  // peer sent enough, kError for anything that is not TLS or fails the handshake.
  Status Handshake();
  bool handshake_done() const { return done_; }
  // Decrypts into buf: > 0 bytes read; 0 when it needs more ciphertext. Sets *status to kClosed
  // (close_notify) or kError when the stream ends; kWantMore otherwise.
  size_t Read(char* buf, size_t cap, Status* status);
  // Encrypts len bytes (the whole of them: memory BIOs never refuse a write). False on failure.
  bool Write(const void* data, size_t len);
  // Ciphertext waiting to be sent, and taking it out (into dst, at most n bytes).
  size_t PendingOutput() const;
  size_t TakeOutput(char* dst, size_t n);
  // Frees drained BIO buffers that grew large (idle connections keep small ones).
  void Trim();
  // OpenSSL's reason for the last kError (for debug logs), e.g. "wrong version number".
  const std::string& last_error() const { return last_error_; }

 private:
  void CaptureError();
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;  // owned by ssl_
  BIO* wbio_ = nullptr;  // owned by ssl_
  bool done_ = false;
  std::string last_error_;
};

}  // namespace cable::tls
