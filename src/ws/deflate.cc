#include "ws/deflate.h"

#include <zlib.h>

#include <cstring>

namespace cable::ws {
namespace {

constexpr unsigned char kTail[4] = {0x00, 0x00, 0xff, 0xff};

// One deflater per thread. Level 1 (best speed) as gorilla's default; raw deflate, 15-bit window.
struct Deflater {
  z_stream z{};
  bool ok = false;
  Deflater() { ok = deflateInit2(&z, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK; }
  ~Deflater() {
    if (ok) deflateEnd(&z);
  }
};

// One inflater per thread; a 15-bit window takes any client_max_window_bits the peer used.
struct Inflater {
  z_stream z{};
  bool ok = false;
  Inflater() { ok = inflateInit2(&z, -15) == Z_OK; }
  ~Inflater() {
    if (ok) inflateEnd(&z);
  }
};

Deflater& ThreadDeflater() {
  thread_local Deflater d;
  return d;
}

Inflater& ThreadInflater() {
  thread_local Inflater i;
  return i;
}

}  // namespace

void DeflateMessage(std::string_view payload, std::string* out) {
  Deflater& d = ThreadDeflater();
  if (!d.ok) {
    // Cannot happen short of OOM at thread start; a stored (uncompressed) block is still valid.
    out->push_back('\x00');
    return;
  }
  deflateReset(&d.z);  // no context takeover: every message starts from an empty window
  size_t start = out->size();
  d.z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(payload.data()));
  d.z.avail_in = static_cast<uInt>(payload.size());
  size_t bound = deflateBound(&d.z, static_cast<uLong>(payload.size())) + 16;
  out->resize(start + bound);
  d.z.next_out = reinterpret_cast<Bytef*>(out->data() + start);
  d.z.avail_out = static_cast<uInt>(bound);
  for (;;) {
    int rc = deflate(&d.z, Z_SYNC_FLUSH);
    if (rc == Z_STREAM_ERROR) break;
    if (d.z.avail_in == 0 && d.z.avail_out > 0) break;
    // Out of room (bound is generous, but be safe): grow and continue.
    size_t used = out->size() - d.z.avail_out;
    out->resize(out->size() + 256);
    d.z.next_out = reinterpret_cast<Bytef*>(out->data() + used);
    d.z.avail_out = static_cast<uInt>(out->size() - used);
  }
  out->resize(out->size() - d.z.avail_out);
  // A sync flush ends with an empty stored block 00 00 ff ff, which the receiver adds back.
  if (out->size() - start >= 4 && std::memcmp(out->data() + out->size() - 4, kTail, 4) == 0) {
    out->resize(out->size() - 4);
  }
}

std::string BuildDeflatedFrame(Opcode op, std::string_view payload) {
  std::string compressed;
  DeflateMessage(payload, &compressed);
  // RFC 7692 lets any message go uncompressed: short ones usually grow when deflated.
  const bool smaller = compressed.size() < payload.size();
  std::string_view body = smaller ? std::string_view(compressed) : payload;
  uint8_t header[kMaxHeaderSize];
  size_t hlen = WriteFrameHeader(header, op, body.size());
  if (smaller) header[0] |= 0x40;  // RSV1: this message is compressed
  std::string frame(reinterpret_cast<const char*>(header), hlen);
  frame += body;
  return frame;
}

InflateResult InflateMessage(std::string_view compressed, size_t max_size, std::string* out) {
  out->clear();
  Inflater& inf = ThreadInflater();
  if (!inf.ok) return InflateResult::kCorrupt;
  inflateReset(&inf.z);
  char chunk[16384];
  // Two inputs: the message, then the 4-byte tail the sender removed.
  std::string_view parts[2] = {compressed,
                               std::string_view(reinterpret_cast<const char*>(kTail), 4)};
  for (std::string_view part : parts) {
    inf.z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(part.data()));
    inf.z.avail_in = static_cast<uInt>(part.size());
    while (inf.z.avail_in > 0) {
      inf.z.next_out = reinterpret_cast<Bytef*>(chunk);
      inf.z.avail_out = sizeof(chunk);
      int rc = inflate(&inf.z, Z_SYNC_FLUSH);
      size_t produced = sizeof(chunk) - inf.z.avail_out;
      if (max_size > 0 && out->size() + produced > max_size) return InflateResult::kTooBig;
      out->append(chunk, produced);
      if (rc == Z_STREAM_END) {
        // A final block: whatever follows (at most our tail) is ignored, as gorilla does.
        inf.z.avail_in = 0;
        break;
      }
      if (rc == Z_BUF_ERROR && produced == 0) break;  // needs input we do not have
      if (rc != Z_OK && rc != Z_BUF_ERROR) return InflateResult::kCorrupt;
    }
  }
  // Output left in zlib's window after the flush (a full chunk above loops until drained).
  for (int guard = 0; guard < 1 << 20; ++guard) {
    inf.z.next_out = reinterpret_cast<Bytef*>(chunk);
    inf.z.avail_out = sizeof(chunk);
    int rc = inflate(&inf.z, Z_SYNC_FLUSH);
    size_t produced = sizeof(chunk) - inf.z.avail_out;
    if (max_size > 0 && out->size() + produced > max_size) return InflateResult::kTooBig;
    out->append(chunk, produced);
    if (produced == 0 || rc == Z_STREAM_END) break;
    if (rc != Z_OK && rc != Z_BUF_ERROR) return InflateResult::kCorrupt;
  }
  return InflateResult::kOk;
}

}  // namespace cable::ws
