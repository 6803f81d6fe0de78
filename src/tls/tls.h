// TLS for the main and HTTP broadcast listeners (--ssl_cert / --ssl_key): wss:// and https:// on
// the io_uring path.
//
// OpenSSL never touches a socket here. Each TLS connection's SSL object reads the ciphertext
// io_uring received (Feed: read in place from the ring's buffer) and writes ciphertext into the
// session's output, which the worker moves into its send queue (TakeOutput), both through one
// byte-less BIO per thread; the ring still does every recv and send. Nothing blocks: a handshake or
// a record that needs more bytes just reports kWantMore and resumes on the next Feed.
//
// Ownership / threads:
// - ServerContext: one per process, built by main before the workers start (certificate chain +
//   key, checked against each other), then shared read-only: SSL_new on an SSL_CTX is thread-safe.
//   It outlives every worker.
// - Session: one per TLS connection, owned by that connection (server::Conn::tls) and used only by
//   the worker thread that owns the connection; freed with the connection. Its compact record
//   layer state (keys, sequence numbers) belongs to it too. Until the switch its SSL holds a
//   reference on that thread's transport BIO (a thread_local in tls.cc holds another until the
//   thread exits; the last SSL_free frees it). Plain connections (and
//   the separate metrics port's) have none, so they pay 8 bytes (a null pointer) for TLS.
//
// Memory: SSL_MODE_RELEASE_BUFFERS frees OpenSSL's record buffers whenever they are empty; the
// transport BIO is one per thread and holds no bytes (input is read in place, output is handed
// over after each call and its buffer freed), and there is no session cache and no ticket. Still,
// an established OpenSSL 3.0 TLS 1.3 session keeps ~14 KB of heap (7.6 KB of it the SSL object), so
// once a TLS 1.3 connection is established and quiet the session leaves OpenSSL (the compact
// record layer, --ssl_compact, on by default):
// - The key log callback hands over CLIENT/SERVER_TRAFFIC_SECRET_0 during the handshake (kept in
//   rx_/tx_ until the switch); the transport BIO follows the record headers both ways and counts
//   the records protected with those secrets after the handshake (their sequence numbers); the
//   message callback vetoes the switch on any handshake message after the handshake (a KeyUpdate
//   OpenSSL handled would make the counted keys stale).
// - MaybeSwitch (after a Read that took every byte fed) checks the session is quiet: TLS 1.3, one
//   of the three suites record.h implements, no byte buffered in OpenSSL (partial record, pending
//   plaintext), both record streams at a record boundary, no shutdown, no key update pending, no
//   early data. Then it derives key/iv per direction (HKDF-Expand-Label), sets the counted
//   sequence numbers and SSL_frees the session. Anything else stays on OpenSSL (TLS 1.2 always):
//   the switch is an optimisation with a safe fallback.
// - From then on Read/Write/Shutdown run on record.h: application data; close_notify (kClosed) and
//   other alerts (kError); KeyUpdate (the receiving key moves on; update_requested is answered
//   with our own KeyUpdate and our sending key moves on: the current traffic secrets are kept, 32
//   or 48 bytes per direction, for that); any other handshake message, a bad tag, an oversized
//   record or an unknown content type are fatal (an alert is queued; the worker closes). A record
//   received in part waits in partial_ (no capacity otherwise).
// What an idle compact session keeps is this object (~400 B) and nothing in OpenSSL: the cipher
// contexts are per thread (record.cc). Secrets are wiped when replaced and on destruction.
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
#include "tls/record.h"

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
  // Whether established TLS 1.3 sessions move to the compact record layer (--ssl_compact, on by
  // default). Set by main before the workers start.
  void set_compact(bool on) { compact_ = on; }
  bool compact() const { return compact_; }
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
  bool compact_ = true;
};

// A compact session's state as it moves to another process (live upgrade, #19): the suite, and per
// direction the current traffic secret and the next record's sequence number (key and iv are
// derived again from the secret). Wiped on destruction.
struct CompactState {
  Suite suite = Suite::kNone;
  uint8_t rx_secret[kMaxSecret] = {};
  uint8_t tx_secret[kMaxSecret] = {};
  uint8_t secret_len = 0;  // SuiteHashLen(suite)
  uint64_t rx_seq = 0;
  uint64_t tx_seq = 0;
  ~CompactState();
};

class Session {
 public:
  enum class Status { kDone, kWantMore, kClosed, kError };

  explicit Session(const ServerContext& ctx);
  // A session that goes on on the compact record layer from `state` (live upgrade); ok() is false
  // if the state is unusable (unknown suite, wrong secret length).
  explicit Session(const CompactState& state);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  bool ok() const { return ssl_ != nullptr || compact_; }  // false only when allocation failed
  // True once the session runs on the compact record layer (its SSL freed).
  bool compact() const { return compact_; }

  // Hands ciphertext received from the socket to OpenSSL: it is read in place, not copied, by the
  // Handshake / Read calls that follow. Run them until they want more (then every byte was taken:
  // OpenSSL keeps a partial record in its own buffer), and Feed(nullptr, 0) before the bytes go
  // away if stopping early (the connection is closing).
  void Feed(const char* data, size_t len);
  // Advances the handshake: kDone once established (and on every later call), kWantMore until the
  // peer sent enough, kError for anything that is not TLS or fails the handshake.
  Status Handshake();
  bool handshake_done() const { return done_; }
  // Decrypts into buf: > 0 bytes read; 0 when it needs more ciphertext. Sets *status to kClosed
  // (close_notify) or kError when the stream ends; kWantMore otherwise.
  size_t Read(char* buf, size_t cap, Status* status);
  // Encrypts len bytes (the whole of them: the transport BIO never refuses a write). False on
  // failure.
  bool Write(const void* data, size_t len);
  // Queues close_notify (after everything written so far) once the handshake is done and nothing
  // failed; false when there is nothing to send (not established, failed, or sent already).
  bool Shutdown();
  // Ciphertext waiting to be sent, and taking it out (into dst, at most n bytes; once all of it
  // is taken the buffer is freed).
  size_t PendingOutput() const { return out_.size(); }
  size_t TakeOutput(char* dst, size_t n);
  // Live upgrade: the compact state, only when the session is on the compact record layer and
  // quiet (no partial record received, no output waiting, not failed, no close_notify sent).
  bool ExportCompact(CompactState* out) const;
  bool CompactAndQuiet() const {
    return compact_ && !failed_ && !shutdown_sent_ && out_.empty() && partial_.empty() &&
           in_len_ == 0;
  }
  // OpenSSL's reason for the last kError (for debug logs), e.g. "wrong version number".
  const std::string& last_error() const { return last_error_; }

  // The thread's transport BIO (tls.cc, not for other callers): reads from in_ and appends to
  // out_ of the session whose method is running on this thread.
  static int BioRead(BIO* b, char* buf, int len);
  static int BioWrite(BIO* b, const char* buf, int len);
  // SSL_CTX callbacks (tls.cc): the traffic secrets, and post-handshake handshake messages.
  static void KeyLog(const SSL* ssl, const char* line);
  static void OnMessage(int write_p, int version, int content_type, const void* buf, size_t len,
                        SSL* ssl, void* arg);

 private:
  // Follows the 5-byte record headers of one direction of OpenSSL's ciphertext, to count the
  // records protected with the application traffic keys (their sequence numbers).
  struct RecordTrack {
    uint8_t hdr[kHeaderLen] = {};
    uint8_t hdr_got = 0;
    uint32_t body_left = 0;
    uint64_t app_records = 0;  // type-23 records begun after the handshake
    bool at_boundary() const { return hdr_got == 0 && body_left == 0; }
    void Scan(const char* p, size_t n, bool count, bool* unexpected);
  };
  void CaptureError();
  void MaybeSwitch();
  void Fail(const char* why, uint8_t alert);
  // Compact mode: one whole record (header + body).
  size_t OpenRecord(const uint8_t* rec, size_t len, char* buf, size_t cap, Status* status);
  size_t CompactRead(char* buf, size_t cap, Status* status);
  bool CompactSeal(uint8_t type, const uint8_t* data, size_t len);

  SSL* ssl_ = nullptr;        // null once compact (or when allocation failed)
  const char* in_ = nullptr;  // Feed's bytes not yet taken by OpenSSL (not owned)
  size_t in_len_ = 0;
  std::string out_;  // ciphertext not yet taken; no capacity while idle
  bool done_ = false;
  bool failed_ = false;  // an OpenSSL call failed: no close_notify then
  bool shutdown_sent_ = false;
  std::string last_error_;
  // The compact record layer (record.h). Before the switch rx_/tx_ hold only the client / server
  // application traffic secrets given by the key log (secret_len_ bytes each, 0 until known).
  Direction rx_;
  Direction tx_;
  Suite suite_ = Suite::kNone;
  uint8_t rx_secret_len_ = 0;
  uint8_t tx_secret_len_ = 0;
  bool want_compact_ = false;  // the context allows the switch
  bool no_switch_ = false;     // something made the switch unsafe: stays on OpenSSL
  bool compact_ = false;
  RecordTrack in_track_;
  RecordTrack out_track_;
  std::string partial_;  // compact mode: a record received in part (empty, no capacity, if none)
};

}  // namespace cable::tls
