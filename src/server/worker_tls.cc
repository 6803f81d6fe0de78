// Worker: TLS on the io_uring path (see tls/tls.h). The ring receives ciphertext into its provided
// buffers like any socket's bytes; OnTlsBytes lets the connection's SSL read it in place (before
// the buffer goes back to the ring), advances the handshake and decrypts whole chunks into the
// worker's plaintext buffer, which then takes the usual OnBytes path (HTTP parser, FrameReader). On
// the way out, frames are queued as plaintext (shared broadcast frames included, so "serialize
// once" still holds up to this point) and encrypted per connection in StartSend, right before the
// send, consecutive small frames gathered into records of up to 16 KiB: every ciphertext byte the
// SSL writes is moved into one local frame placed after the ciphertext already queued, so the TLS
// record stream keeps its order whatever mix of handshake output and data there is. A connection
// closing in good order ends with close_notify (TlsShutdown, from MaybeFinishClose). None of this
// changes when a quiet TLS 1.3 session moves onto the compact record layer (tls/tls.h): the
// session's Read/Write/Shutdown keep their contract; the worker only counts the switch.
#include <cstring>
#include <memory>

#include "common/log.h"
#include "server/worker.h"

namespace cable::server {
namespace {
// One SSL_read at most (a TLS record carries at most 16 KiB of plaintext).
constexpr size_t kTlsPlainSize = 16 * 1024;
// Plaintext gathered into one SSL_write at most: one full TLS record.
constexpr size_t kTlsRecordSize = 16 * 1024;
// Plaintext encrypted per send at most: bounds the ciphertext made ahead of the socket.
constexpr size_t kTlsEncryptBudget = 256 * 1024;
}  // namespace

void Worker::OnTlsFailure(Conn& c, uint32_t slot, const char* what) {
  counters_.tls_errors_total.Add();
  LOG_DEBUG("tls: closing connection: %s: %s", what, c.tls->session.last_error().c_str());
  DropUnsentFrames(c);
  if (c.state != ConnState::kClosing) BeginClosing(c, slot);
  ForceClose(c, slot);
}

void Worker::OnTlsBytes(Conn& c, uint32_t slot, const char* data, size_t len) {
  ConnTls& t = *c.tls;
  t.got_bytes = true;
  const uint32_t gen = c.gen;
  t.session.Feed(data, len);  // read in place: the bytes go back to the ring when this returns
  struct Unfeed {
    Conn& c;
    uint32_t gen;
    ~Unfeed() {
      if (c.gen == gen && c.tls) c.tls->session.Feed(nullptr, 0);
    }
  } unfeed{c, gen};
  if (!t.session.handshake_done()) {
    tls::Session::Status st = t.session.Handshake();
    if (st == tls::Session::Status::kError) return OnTlsFailure(c, slot, "handshake");
    TlsQueueOutput(c);  // ServerHello ... Finished, or nothing yet
    MarkDirty(c, slot);
    if (st != tls::Session::Status::kDone) return;
  }
  if (!tls_plain_) tls_plain_.reset(new char[kTlsPlainSize]);
  // Bounded: every round consumes ciphertext fed above (at most len bytes + one partial record).
  for (;;) {
    tls::Session::Status st;
    size_t n = t.session.Read(tls_plain_.get(), kTlsPlainSize, &st);
    if (n > 0) {
      OnBytes(c, slot, tls_plain_.get(), n);
      // OnBytes may have closed (or even freed) the connection: nothing more to read then.
      if (c.state == ConnState::kFree || c.gen != gen || c.state == ConnState::kClosing) return;
      continue;
    }
    if (st == tls::Session::Status::kClosed) {
      // close_notify: the peer is done; ours answers it as the connection closes (TlsShutdown).
      BeginClosing(c, slot);
      return;
    }
    if (st == tls::Session::Status::kError) return OnTlsFailure(c, slot, "record");
    break;
  }
  if (t.session.compact() && !t.counted_compact) {  // SSL freed: the compact record layer runs
    t.counted_compact = true;
    counters_.tls_compact_total.Add();
  }
  if (t.session.PendingOutput() > 0) {  // e.g. an alert or a key update answer
    TlsQueueOutput(c);
    MarkDirty(c, slot);
  }
}

bool Worker::TlsShutdown(Conn& c, uint32_t slot) {
  if (!c.tls->session.Shutdown()) return false;
  TlsQueueOutput(c);
  MarkDirty(c, slot);
  return c.tls->cipher_frames > 0;
}

void Worker::TlsQueueOutput(Conn& c) {
  ConnTls& t = *c.tls;
  size_t n = t.session.PendingOutput();
  if (n == 0) return;
  hub::Frame* f = hub::Frame::NewLocal(n);
  size_t got = 0;
  while (got < n) {  // a memory BIO hands over everything pending at once; bounded anyway
    size_t k = t.session.TakeOutput(f->data() + got, n - got);
    if (k == 0) break;
    got += k;
  }
  if (got != n) {  // cannot happen with a memory BIO; never send a torn record stream
    f->ReleaseCreator();
    LOG_WARN("tls: lost %zu bytes of output", n - got);
    return;
  }
  f->Acquire(index_);
  f->ReleaseCreator();
  c.sendq.insert(c.sendq.begin() + c.sendq_head + t.cipher_frames, f);
  ++t.cipher_frames;
  c.pending_bytes += got;
  queued_bytes_ += got;
}

void Worker::TlsEncryptQueued(Conn& c) {
  ConnTls& t = *c.tls;
  if (!t.session.handshake_done()) return;  // plaintext waits for the handshake (never happens)
  const size_t pos = c.sendq_head + t.cipher_frames;
  size_t end = pos;
  size_t plain = 0;
  // Frames queued together (a burst of broadcasts) are gathered into one SSL_write of up to a
  // full record, so they cost one record (header, tag, one AEAD call) instead of one each.
  thread_local std::unique_ptr<char[]> gather;
  size_t gathered = 0;
  size_t gathered_frames = 0;
  auto flush = [&]() -> bool {
    if (gathered == 0) return true;
    bool ok = t.session.Write(gather.get(), gathered);
    gathered = 0;
    if (!ok) return false;
    for (size_t i = end; i < end + gathered_frames; ++i) {
      plain += c.sendq[i]->size();
      c.sendq[i]->Release(index_);
    }
    end += gathered_frames;
    gathered_frames = 0;
    return true;
  };
  bool failed = false;
  for (size_t i = pos; i < c.sendq.size() && plain + gathered < kTlsEncryptBudget; ++i) {
    hub::Frame* f = c.sendq[i];
    if (gathered + f->size() > kTlsRecordSize && !flush()) {
      failed = true;
      break;
    }
    if (gathered == 0 && (i + 1 == c.sendq.size() || f->size() >= kTlsRecordSize)) {
      // Alone (or a record by itself): encrypted in place, no copy.
      if (!t.session.Write(f->data(), f->size())) {
        failed = true;
        break;
      }
      plain += f->size();
      f->Release(index_);
      ++end;
      continue;
    }
    if (!gather) gather.reset(new char[kTlsRecordSize]);
    std::memcpy(gather.get() + gathered, f->data(), f->size());
    gathered += f->size();
    ++gathered_frames;
  }
  if (!failed && !flush()) failed = true;
  if (failed) {
    // The frames not encrypted stay queued; the write deadline drops a connection that is stuck.
    LOG_WARN("tls: encrypting failed: %s", t.session.last_error().c_str());
  }
  if (end == pos) return TlsQueueOutput(c);
  c.sendq.erase(c.sendq.begin() + static_cast<std::ptrdiff_t>(pos),
                c.sendq.begin() + static_cast<std::ptrdiff_t>(end));
  c.pending_bytes -= plain;
  queued_bytes_ -= plain;
  TlsQueueOutput(c);
}

}  // namespace cable::server
