#include "hub/message.h"

#include <cstring>
#include <ctime>
#include <utility>

#include "protocol/encode.h"
#include "ws/deflate.h"
#include "ws/frame.h"

namespace cable::hub {
namespace {
int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
}  // namespace

Message* Message::NewPublication(std::string stream, std::string message_json,
                                 std::string exclude_socket, int workers, bool transient) {
  Message* m = new Message();
  m->kind_ = Kind::kPublication;
  m->stream_ = std::move(stream);
  m->message_json_ = std::move(message_json);
  m->exclude_socket_ = std::move(exclude_socket);
  m->transient_ = transient;
  m->workers_ = workers;
  m->accepted_ns_ = NowNs();
  m->refs_.store(workers, std::memory_order_relaxed);
  return m;
}

Message* Message::NewPresence(std::string stream, std::string message_json, int workers) {
  Message* m = NewPublication(std::move(stream), std::move(message_json), {}, workers, true);
  m->presence_ = true;
  return m;
}

Message* Message::NewRemoteDisconnect(std::string identifiers, bool reconnect, int workers) {
  Message* m = new Message();
  m->kind_ = Kind::kRemoteDisconnect;
  m->stream_ = std::move(identifiers);
  m->reconnect_ = reconnect;
  m->workers_ = workers;
  m->accepted_ns_ = NowNs();
  m->refs_.store(workers, std::memory_order_relaxed);
  return m;
}

Message::~Message() {
  for (auto& slot : cache_) {
    CacheEntry* e = slot.load(std::memory_order_acquire);
    if (e) {
      e->frame->ReleaseCreator();
      if (Frame* d = e->deflated.load(std::memory_order_acquire)) d->ReleaseCreator();
      delete e;
    }
  }
}

void Message::Release() {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

Frame* Message::Build(const std::string& identifier, bool ext, bool shared) const {
  uint8_t header[ws::kMaxHeaderSize];
  if (presence_) {
    std::string payload = protocol::EncodePresence(identifier, message_json_);
    size_t hlen = ws::WriteFrameHeader(header, ws::Opcode::kText, payload.size());
    Frame* f = shared ? Frame::NewShared(hlen + payload.size(), workers_)
                      : Frame::NewLocal(hlen + payload.size());
    std::memcpy(f->data(), header, hlen);
    std::memcpy(f->data() + hlen, payload.data(), payload.size());
    return f;
  }
  if (ext) {
    std::string payload =
        protocol::EncodeBroadcastExt(identifier, message_json_, stream_, epoch_, offset_);
    size_t hlen = ws::WriteFrameHeader(header, ws::Opcode::kText, payload.size());
    Frame* f = shared ? Frame::NewShared(hlen + payload.size(), workers_)
                      : Frame::NewLocal(hlen + payload.size());
    std::memcpy(f->data(), header, hlen);
    std::memcpy(f->data() + hlen, payload.data(), payload.size());
    return f;
  }
  size_t payload = protocol::BroadcastSize(identifier, message_json_);
  size_t hlen = ws::WriteFrameHeader(header, ws::Opcode::kText, payload);
  Frame* f = shared ? Frame::NewShared(hlen + payload, workers_) : Frame::NewLocal(hlen + payload);
  std::memcpy(f->data(), header, hlen);
  protocol::WriteBroadcast(f->data() + hlen, identifier, message_json_);
  return f;
}

Frame* Message::BuildLocalFrame(const std::string& identifier, bool ext) const {
  return Build(identifier, ext && offset_ != 0, false);
}

Frame* Message::FrameFor(const std::string& identifier, bool ext) {
  CacheEntry* e = EntryFor(identifier, ext);
  return e ? e->frame : nullptr;
}

Frame* Message::DeflatedFrameFor(const std::string& identifier, bool ext) {
  CacheEntry* e = EntryFor(identifier, ext);
  if (!e) return nullptr;
  Frame* d = e->deflated.load(std::memory_order_acquire);
  if (d) return d;
  if (e->deflate_not_smaller.load(std::memory_order_acquire)) return e->frame;
  // Compress the plain frame's payload (skip its header): the JSON is serialized once either way.
  const Frame* plain = e->frame;
  const auto* p = reinterpret_cast<const uint8_t*>(plain->data());
  uint8_t len7 = p[1] & 0x7fu;
  size_t hlen = len7 == 126 ? 4 : (len7 == 127 ? 10 : 2);
  std::string compressed;
  ws::DeflateMessage(std::string_view(plain->data() + hlen, plain->size() - hlen), &compressed);
  deflate_builds_.fetch_add(1, std::memory_order_relaxed);
  if (compressed.size() >= plain->size() - hlen) {
    // Compression does not pay (short messages): RFC 7692 lets this message go uncompressed, so
    // every compressing subscriber gets the shared plain frame.
    e->deflate_not_smaller.store(true, std::memory_order_release);
    return e->frame;
  }
  uint8_t header[ws::kMaxHeaderSize];
  size_t dh = ws::WriteFrameHeader(header, ws::Opcode::kText, compressed.size());
  header[0] |= 0x40;  // RSV1: compressed message
  Frame* mine = Frame::NewShared(dh + compressed.size(), workers_);
  std::memcpy(mine->data(), header, dh);
  std::memcpy(mine->data() + dh, compressed.data(), compressed.size());
  if (e->deflated.compare_exchange_strong(d, mine, std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
    return mine;
  }
  mine->ReleaseCreator();  // another worker won; d is its frame
  return d;
}

Message::CacheEntry* Message::EntryFor(const std::string& identifier, bool ext) {
  ext = ext && offset_ != 0;  // without a position both variants are the v1 frame
  CacheEntry* mine = nullptr;
  for (auto& slot : cache_) {
    CacheEntry* e = slot.load(std::memory_order_acquire);
    if (!e) {
      if (!mine) mine = new CacheEntry{identifier, ext, Build(identifier, ext, true)};
      if (slot.compare_exchange_strong(e, mine, std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
        return mine;
      }
      // Lost the race: e now holds the winner, compare it below.
    }
    if (e->ext == ext && e->identifier == identifier) {
      if (mine) {
        mine->frame->ReleaseCreator();
        delete mine;
      }
      return e;
    }
  }
  if (mine) {
    mine->frame->ReleaseCreator();
    delete mine;
  }
  return nullptr;
}

}  // namespace cable::hub
