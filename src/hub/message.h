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

#include "hub/frame.h"

namespace cable::hub {

class Message {
 public:
  enum class Kind : uint8_t { kPublication, kRemoteDisconnect };

  static Message* NewPublication(std::string stream, std::string message_json,
                                 std::string exclude_socket, int workers);
  static Message* NewRemoteDisconnect(std::string identifiers, bool reconnect, int workers);

  Kind kind() const { return kind_; }
  const std::string& stream() const { return stream_; }
  const std::string& message_json() const { return message_json_; }
  const std::string& exclude_socket() const { return exclude_socket_; }
  const std::string& identifiers() const { return stream_; }  // remote disconnect target
  bool reconnect() const { return reconnect_; }
  // Monotonic acceptance time, for latency metrics.
  int64_t accepted_ns() const { return accepted_ns_; }

  // The shared WebSocket text frame {"identifier":<id>,"message":<json>}. Returns nullptr when the
  // cache is full of other identifiers: the caller then builds its own with BuildFrame().
  Frame* FrameFor(const std::string& identifier);
  // Builds a frame for this message and identifier, not cached (a local frame of the caller).
  Frame* BuildLocalFrame(const std::string& identifier) const;
  // The shared permessage-deflate frame (RSV1, no context takeover) for the identifier, built once
  // per (message, identifier) process-wide. nullptr when the cache is full: the caller then sends
  // the plain frame (an uncompressed message is valid on a compressing connection).
  Frame* DeflatedFrameFor(const std::string& identifier);
  // Test/bench hook: how many deflated frames this message built (losers of a race included).
  int deflate_builds() const { return deflate_builds_.load(std::memory_order_relaxed); }

  void Release();

 private:
  static constexpr int kCacheSlots = 8;
  struct CacheEntry {
    std::string identifier;
    Frame* frame;
    std::atomic<Frame*> deflated{nullptr};  // installed once, released with the message
  };
  CacheEntry* EntryFor(const std::string& identifier);
  Message() = default;
  ~Message();
  Frame* Build(const std::string& identifier, bool shared) const;

  Kind kind_ = Kind::kPublication;
  bool reconnect_ = false;
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
