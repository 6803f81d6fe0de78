// hub::Message — one publication (or remote command) on its way from the thread that accepted it to
// every worker. Built once, in one place, by the ingress thread; then read-only, except for the
// encoded-frame cache.
//
// Threads and ownership: created by any thread, handed to the BroadcastLog, which gives every
// worker a pointer. `refs` starts at the number of workers; each worker calls Release() when done
// with it. Frames obtained from FrameFor() stay valid while the caller holds the message (the cache
// holds a reference); a worker that queues a frame takes its own reference with Frame::Acquire.
//
// The cache gives anycable-go's "encode once per identifier" semantics process-wide without a lock:
// the first worker that needs the frame for an identifier builds it and installs it with a
// compare-and-swap; a worker that loses the race frees its copy and uses the winner's.
//
// permessage-deflate: each cache entry also holds the *compressed* frame for its identifier, built
// lazily by the first worker that has a compressing subscriber (deflated from the plain frame's
// payload, RSV1 set) and published once with the same compare-and-swap; every compressing
// subscriber of every worker then shares it. Messages nobody compresses never build one.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>

#include "hub/frame.h"
#include "hub/wire.h"

namespace cable::hub {

class Message {
 public:
  enum class Kind : uint8_t { kPublication, kRemoteDisconnect };

  static Message* NewPublication(std::string stream, std::string message_json,
                                 std::string exclude_socket, int workers, bool transient = false);
  // A presence event (transient): delivered as {"type":"presence","identifier":..,"message":..}.
  static Message* NewPresence(std::string stream, std::string message_json, int workers);
  static Message* NewRemoteDisconnect(std::string identifiers, bool reconnect, int workers);

  Kind kind() const { return kind_; }
  const std::string& stream() const { return stream_; }
  const std::string& message_json() const { return message_json_; }
  const std::string& exclude_socket() const { return exclude_socket_; }
  const std::string& identifiers() const { return stream_; }  // remote disconnect target
  bool reconnect() const { return reconnect_; }
  // meta.transient: never stored in history, never given an offset.
  bool transient() const { return transient_; }
  bool presence() const { return presence_; }
  // Broker position (--broker): set once by the broker before the message enters the log, then
  // read-only. offset 0 = none (no broker, transient, or a remote command).
  const std::string& epoch() const { return epoch_; }
  uint64_t offset() const { return offset_; }
  int64_t unix_ts() const { return unix_ts_; }
  // The broker's node-wide stamp counter: increases with log order across all streams and never
  // restarts (a stream's offsets do, after 10 x --history_ttl idle), so per-subscription
  // "already sent" checks compare seq, not offset.
  uint64_t seq() const { return seq_; }
  void SetPosition(std::string epoch, uint64_t offset, int64_t unix_ts, uint64_t seq) {
    epoch_ = std::move(epoch);
    offset_ = offset;
    unix_ts_ = unix_ts;
    seq_ = seq;
  }
  // One more reference (the broker's history keeps messages beyond the workers' use).
  void Acquire() { refs_.fetch_add(1, std::memory_order_relaxed); }
  // Monotonic acceptance time, for latency metrics.
  int64_t accepted_ns() const { return accepted_ns_; }

  // The shared frame of this message for `identifier` in encoding `wire` (hub/wire.h): the
  // WebSocket text frame {"identifier":<id>,"message":<json>}, with kWsExt and a broker position
  // the same plus "stream_id","epoch","offset"; an SSE event or a JSON line for the HTTP
  // transports. One cached frame per (identifier, wire); without a position kWsExt is the kWs
  // frame. Returns nullptr when the cache is full of other entries: the caller then builds its
  // own with BuildLocalFrame().
  Frame* FrameFor(const std::string& identifier, Wire wire);
  Frame* FrameFor(const std::string& identifier, bool ext = false) {
    return FrameFor(identifier, ext ? Wire::kWsExt : Wire::kWs);
  }
  // Builds a frame for this message and identifier, not cached (a local frame of the caller).
  Frame* BuildLocalFrame(const std::string& identifier, Wire wire) const;
  Frame* BuildLocalFrame(const std::string& identifier, bool ext = false) const {
    return BuildLocalFrame(identifier, ext ? Wire::kWsExt : Wire::kWs);
  }
  // The shared permessage-deflate frame (RSV1, no context takeover) of FrameFor(identifier, ext),
  // built once per (message, identifier, variant) process-wide; the plain shared frame itself
  // when compressing does not make the payload smaller. nullptr when the cache is full:
  // the caller then sends the plain frame (an uncompressed message is valid on a compressing
  // connection).
  Frame* DeflatedFrameFor(const std::string& identifier, bool ext = false);
  // Test/bench hook: how many deflated frames this message built (losers of a race included).
  int deflate_builds() const { return deflate_builds_.load(std::memory_order_relaxed); }

  void Release();

 private:
  static constexpr int kCacheSlots = 8;
  struct CacheEntry {
    std::string identifier;
    Wire wire;
    Frame* frame;
    std::atomic<Frame*> deflated{nullptr};         // installed once, released with the message
    std::atomic<bool> deflate_not_smaller{false};  // compressed ≥ plain: send `frame` instead
  };
  CacheEntry* EntryFor(const std::string& identifier, Wire wire);
  Message() = default;
  ~Message();
  Frame* Build(const std::string& identifier, Wire wire, bool shared) const;
  std::string Payload(const std::string& identifier, bool ext) const;  // the reply JSON

  Kind kind_ = Kind::kPublication;
  bool reconnect_ = false;
  bool transient_ = false;
  bool presence_ = false;
  uint64_t offset_ = 0;
  uint64_t seq_ = 0;
  int64_t unix_ts_ = 0;
  std::string epoch_;
  int workers_ = 1;
  int64_t accepted_ns_ = 0;
  std::atomic<int> refs_{0};
  std::string stream_;
  std::string message_json_;
  std::string exclude_socket_;
  std::atomic<CacheEntry*> cache_[kCacheSlots] = {};
  std::atomic<int> deflate_builds_{0};
};

}  // namespace cable::hub
