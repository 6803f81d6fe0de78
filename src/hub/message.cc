#include "hub/message.h"

#include <cstring>
#include <ctime>
#include <utility>

#include "protocol/encode.h"
#include "protocol/transport_encode.h"
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

std::string Message::Payload(const std::string& identifier, bool ext) const {
  if (presence_) return protocol::EncodePresence(identifier, message_json_);
  if (ext && offset_ != 0) {
    return protocol::EncodeBroadcastExt(identifier, message_json_, stream_, epoch_, offset_);
  }
  return protocol::EncodeBroadcast(identifier, message_json_);
}

Frame* Message::Build(const std::string& identifier, Wire wire, bool shared) const {
  auto make = [&](std::string_view bytes) {
    Frame* f = shared ? Frame::NewShared(bytes.size(), workers_) : Frame::NewLocal(bytes.size());
    std::memcpy(f->data(), bytes.data(), bytes.size());
    return f;
  };
  switch (wire) {
    case Wire::kSse:
    case Wire::kSseFull: {
      const std::string id = protocol::SseEventId(offset_, epoch_, stream_);
      std::string event;
      if (presence_) {
        protocol::AppendSseEvent(event, "presence", Payload(identifier, false), id, false);
      } else if (wire == Wire::kSse) {
        protocol::AppendSseEvent(event, "", protocol::SseMessageText(message_json_), id, false);
      } else {
        protocol::AppendSseEvent(event, "", Payload(identifier, true), id, false);
      }
      return make(protocol::HttpChunk(event));
    }
    case Wire::kJsonl:
      return make(protocol::JsonLine(Payload(identifier, true)));
    case Wire::kWs:
    case Wire::kWsExt:
      break;
  }
  uint8_t header[ws::kMaxHeaderSize];
  if (presence_ || wire == Wire::kWsExt) {
    std::string payload = Payload(identifier, wire == Wire::kWsExt);
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

Frame* Message::BuildLocalFrame(const std::string& identifier, Wire wire) const {
  if (wire == Wire::kWsExt && offset_ == 0) wire = Wire::kWs;
  return Build(identifier, wire, false);
}

Frame* Message::FrameFor(const std::string& identifier, Wire wire) {
  CacheEntry* e = EntryFor(identifier, wire);
  return e ? e->frame : nullptr;
}

Frame* Message::DeflatedFrameFor(const std::string& identifier, bool ext) {
  CacheEntry* e = EntryFor(identifier, ext ? Wire::kWsExt : Wire::kWs);
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

Message::CacheEntry* Message::EntryFor(const std::string& identifier, Wire wire) {
  if (wire == Wire::kWsExt && offset_ == 0) wire = Wire::kWs;  // no position: the v1 frame
  CacheEntry* mine = nullptr;
  for (auto& slot : cache_) {
    CacheEntry* e = slot.load(std::memory_order_acquire);
    if (!e) {
      if (!mine) mine = new CacheEntry{identifier, wire, Build(identifier, wire, true)};
      if (slot.compare_exchange_strong(e, mine, std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
        return mine;
      }
      // Lost the race: e now holds the winner, compare it below.
    }
    if (e->wire == wire && e->identifier == identifier) {
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
