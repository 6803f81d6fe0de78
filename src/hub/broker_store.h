// hub::BrokerStore — the seam between ringcable and a remote history/session store (`--broker
// redis`; a NATS JetStream store slots in the same way). A store is BLOCKING and is called only on
// the broker thread (hub::RemoteBroker): workers never call it and never wait for it.
//
// Final interface (differences from the first sketch, for the NATS store):
//   - Result<bool> instead of Result<void> (cable::Result has no void specialisation); true = done.
//   - Append takes a batch (one round trip per HTTP broadcast batch) and returns one offset per
//     entry, in order; the store keeps at most --history_limit entries per stream and drops
//     entries older than --history_ttl (at the latest when they are read).
//   - ReadFrom returns the retained entries with offset >= `from_offset` (the entry AT the
//     client's position included when it is still retained): the caller applies anycable-go's
//     rules from that (position not retained or above the top → reject_history) without a second
//     call for the stream's bounds.
//   - Publish-on-append (optional, PublishesOnAppend()): an entry may name a pub/sub channel and
//     carry the pub/sub payload around its position; a store sharing the pub/sub server (Redis)
//     publishes it in the same atomic step as the append, so pub/sub order = offset order even
//     when several nodes publish to one stream. Others ignore it (the caller publishes).
//   - Reset() drops the connection after an error, so the next call reconnects (and Epoch() is
//     read again: a store that lost its data gets a new epoch and old positions are refused).
//   - Presence (cluster-wide, issue #15): records per stream keyed by presence id, held by one or
//     more sessions (sids) on any node; the same model and bounds as hub::PresenceStore. Each
//     operation is atomic in the store and returns the join/leave events it caused, so exactly
//     one node publishes each event. A session's records expire at `expires_at` (unix s) unless
//     touched again (live sessions are touched every --presence_ttl / 2, a disconnect sets
//     now + --presence_ttl); PresenceSweep expires them. Stores without presence keep the
//     defaults (an error: the client gets the presence error reply).
// Every error is a one-line message (logged once per outage by the broker thread).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace cable::hub {

// One retained publication. `data` is the message JSON a subscriber's frame carries ("message").
struct StoredPublication {
  uint64_t offset = 0;
  int64_t unix_ts = 0;
  std::string data;
};

struct AppendEntry {
  std::string stream;
  std::string data;
  // Publish-on-append: the store publishes payload_head + <offset> + ,"epoch":<epoch> +
  // payload_tail on `channel` (empty = nothing to publish).
  std::string channel;
  std::string payload_head;
  std::string payload_tail;
};

struct PresenceEvent {
  std::string stream;
  std::string type;  // "join" | "leave"
  std::string id;
  std::string info_json;  // join only; empty = no info
};
struct PresenceRecord {
  std::string id;
  std::string info_json;
};
inline constexpr size_t kPresenceMaxRecordsPerStream = 10000;
inline constexpr size_t kPresenceMaxStreamsPerSession = 100;

class BrokerStore {
 public:
  virtual ~BrokerStore() = default;
  // Cluster-wide epoch: created once (by whichever node asks first), then kept.
  virtual Result<std::string> Epoch() = 0;
  // Gives each entry the next offset of its stream (from 1) and stores it; offsets in order, 0 for
  // an entry that could not be stored (an error only when none could). Called after Epoch()
  // succeeded on the same connection (publish-on-append carries that epoch).
  virtual Result<std::vector<uint64_t>> Append(const std::vector<AppendEntry>& batch,
                                               int64_t unix_ts) = 0;
  virtual Result<std::vector<StoredPublication>> ReadFrom(const std::string& stream,
                                                          uint64_t from_offset) = 0;
  // Retained entries with unix_ts >= since_unix_ts; an unknown stream is an empty success.
  virtual Result<std::vector<StoredPublication>> ReadSince(const std::string& stream,
                                                           int64_t since_unix_ts) = 0;
  // Stores an opaque session blob for `ttl_s` seconds (overwrites).
  virtual Result<bool> PutSession(const std::string& sid, std::string_view blob, int ttl_s) = 0;
  // Removes and returns the blob (single use); nullopt when unknown or expired.
  virtual Result<std::optional<std::string>> TakeSession(const std::string& sid) = 0;
  // Presence (see above). Join: false = a bound was reached (nothing changed); a different id of
  // the same session in that stream is left first.
  virtual Result<bool> PresenceJoin(const std::string& stream, const std::string& sid,
                                    const std::string& id, const std::string& info_json,
                                    int64_t expires_at, std::vector<PresenceEvent>* events) {
    (void)stream, (void)sid, (void)id, (void)info_json, (void)expires_at, (void)events;
    return MakeError(std::string("presence is not supported by this store"));
  }
  virtual Result<bool> PresenceLeave(const std::string& stream, const std::string& sid,
                                     std::vector<PresenceEvent>* events) {
    (void)stream, (void)sid, (void)events;
    return MakeError(std::string("presence is not supported by this store"));
  }
  // Records of a stream, ordered by id.
  virtual Result<std::vector<PresenceRecord>> PresenceInfo(const std::string& stream) {
    (void)stream;
    return MakeError(std::string("presence is not supported by this store"));
  }
  // Sets the expiry of sessions that hold records (unknown sids are ignored).
  virtual Result<bool> PresenceTouch(const std::vector<std::string>& sids, int64_t expires_at) {
    (void)sids, (void)expires_at;
    return MakeError(std::string("presence is not supported by this store"));
  }
  // The records of `old_sid` (not expired) now belong to `new_sid`, without events.
  virtual Result<bool> PresenceRestore(const std::string& old_sid, const std::string& new_sid,
                                       int64_t expires_at) {
    (void)old_sid, (void)new_sid, (void)expires_at;
    return MakeError(std::string("presence is not supported by this store"));
  }
  // Expires sessions whose expiry is <= now; appends the resulting leave events.
  virtual Result<bool> PresenceSweep(int64_t now, std::vector<PresenceEvent>* events) {
    (void)now, (void)events;
    return MakeError(std::string("presence is not supported by this store"));
  }
  virtual bool SupportsPresence() const { return false; }
  // True when Append publishes entries that name a channel (see above).
  virtual bool PublishesOnAppend() const { return false; }
  // Forget the connection (after an error); the next call reconnects.
  virtual void Reset() {}
};

}  // namespace cable::hub
