// nats::JetStreamStore — the storage behind `--broker nats` (reliable streams across a cluster,
// issue #14): stream history with consecutive offsets, the cluster-wide epoch and the session
// cache, kept in NATS JetStream (libnats-dev 3.4, nats-server >= 2.9 started with -js).
//
// It is the NATS implementation of the broker thread's blocking store interface (Epoch, Append,
// ReadFrom, ReadSince, PutSession, TakeSession); the base class is added when the broker thread
// is merged. Every call is one or a few request/reply round trips, each bounded by
// Options::timeout_ms.
//
// Layout (as anycable-go's NATS broker, so a cluster may mix both servers for plain names):
//   - History: one JetStream stream per ringcable stream, named and subscribed as
//     "_ac_<stream>" (anycable-go's streamPrefix) when the name is 1..64 bytes of [A-Za-z0-9_-];
//     any other name (dots, spaces, '*', '>', ':', '/', unicode, long) becomes
//     "_ach_<up to 32 sanitized bytes>_<128 bits of SHA-256 hex>" ("_ach_" never collides with
//     "_ac_" + a plain name: the 4th byte differs). MaxMsgs = --history_limit, MaxAge =
//     --history_ttl, file storage, discard old, `replicas` replicas.
//     Offsets ARE the JetStream stream sequences. Why one JetStream stream per ringcable stream
//     rather than one shared stream with a subject per ringcable stream: a stream sequence is
//     consecutive from 1 and never goes backwards, even after every message expired (the
//     stream's LastSeq stays, FirstSeq = LastSeq + 1), and JetStream's own MaxMsgs/MaxAge do the
//     trimming per stream. In a shared stream the sequence is global (gaps per subject), so
//     per-subject offsets would need a second counter kept consistent across nodes.
//     The publisher's unix_ts travels in a "Ringcable-Ts" header (messages written by
//     anycable-go have none: their JetStream time is used).
//   - Epoch: KV bucket "_anycable_epoch_", key "_epoch_" (anycable-go's names; bucket TTL
//     10 x max(history ttl, sessions ttl), as anycable-go). Created once with a create-if-absent,
//     read by everyone else; so every node (and a reopened store) sees the same epoch. Epoch()
//     rewrites the same value once it is past half that TTL, so it is kept while any node keeps
//     asking (call it now and then, e.g. with Sweep); it changes only when JetStream lost its data
//     (or nobody asked for 10 x ttl), and then every node reads the new one.
//   - Sessions: KV bucket "_ringcable_sessions_" (the blob format is ringcable's, so it does not
//     share anycable-go's "_anycable_" bucket), TTL --sessions_ttl. Value = 8-byte big-endian
//     expiry (unix seconds, from PutSession's ttl_s) + blob. TakeSession is single use across
//     the cluster: it replaces the value with a 1-byte "taken" marker by compare-and-set on the
//     revision it read, so of two concurrent takers only one gets the blob. Keys that are not
//     valid KV keys are hashed ("h_<sha256 hex>").
//
//   - Presence (issue #15): two KV buckets without TTL, compare-and-set on the key's revision
//     for every read-modify-write (retried up to kPresenceCasAttempts on conflicts):
//       "_ringcable_presence_streams_", key = the stream (hashed as sessions are): the stream's
//       records, id -> {latest info, the sids holding it}. A join/leave event is produced only by
//       the write that adds the first / removes the last sid of an id, so exactly one caller
//       (node) gets it. The value is bounded by presence_max_records ids and the server's max
//       payload (a join past either is refused like the bound).
//       "_ringcable_presence_sessions_", key = the sid: {state, sid, expires_at, streams}; the
//       index for touch, restore and sweep. State 'L' live; 'C' claimed by a sweeping node and
//       'M' being moved by a restore, both with expires_at = now + kPresenceClaimLeaseS (a node
//       that dies mid-way leaves it to the next sweep). Sweep reads the bucket's values through
//       one watcher, claims each expired session by compare-and-set (one node wins), removes its
//       sid from its streams (leave events as above) and deletes it (a delete marker published
//       with Nats-Expected-Last-Subject-Sequence). Delete markers are purged by Sweep().
//
// Bounds: per stream MaxMsgs/MaxAge; ReadFrom/ReadSince return at most history_limit messages;
// sessions expire with the bucket TTL; Sweep() deletes the JetStream streams of ringcable streams
// idle for 10 x --history_ttl (their offsets restart, as the memory broker's do; clients holding
// old offsets are refused because the stream is empty or their offset is above the new top).
// The cache of streams known to exist is bounded (kMaxKnownStreams, then cleared).
//
// Refusals: ReadFrom fails, like MemoryBroker::HistoryFrom, for an unknown or empty stream, an
// offset below the lowest retained one (lowest - 1 included) or above the top; the error then
// starts with "refused:". Any other error (starting with "nats:") means NATS/JetStream is
// unreachable or failed; while the connection is down every call fails at once with
// "nats: not connected" and libnats reconnects in the background forever; calls work again once
// it is back.
//
// Threads and ownership: a store is used by one thread at a time (the broker thread); libnats
// runs its own threads (reader, flusher, reconnect) but this class registers no callbacks, so no
// code of ours runs on them. The store owns its connection, JetStream context and KV handles;
// Close() (idempotent, also the destructor) destroys them. libnats' process-wide state is opened
// on first use and never closed here.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "common/result.h"
#include "hub/broker_store.h"

namespace cable::nats {

// The store interface's types (hub::StoredPublication / hub::AppendEntry in the broker thread's
// branch; the lead aliases these at merge).
struct StoredPublication {
  uint64_t offset = 0;
  int64_t unix_ts = 0;
  std::string data;
};

struct AppendEntry {
  std::string stream;
  std::string data;
};

struct PresenceOps;

class JetStreamStore {
 public:
  struct Options {
    std::string servers = "nats://127.0.0.1:4222";  // --nats_servers (comma-separated)
    bool dont_randomize = false;
    int history_limit = 100;                // --history_limit (>= 1)
    int history_ttl_s = 300;                // --history_ttl (>= 1)
    int sessions_ttl_s = 300;               // --sessions_ttl (0: sessions are not stored)
    int replicas = 1;                       // JetStream replicas of every stream and bucket
    int timeout_ms = 2000;                  // bound of every request (and of Open's first connect)
    std::string name = "ringcable-broker";  // connection name shown by the server
    // Presence bounds (hub::BrokerStore's; lowered only by tests).
    size_t presence_max_records = hub::kPresenceMaxRecordsPerStream;
    size_t presence_max_streams = hub::kPresenceMaxStreamsPerSession;
  };

  // Checks the options and starts connecting. Succeeds even when no server is reachable yet
  // (calls fail until one is); fails on bad options.
  static cable::Result<std::unique_ptr<JetStreamStore>> Open(const Options& options);
  ~JetStreamStore();
  JetStreamStore(const JetStreamStore&) = delete;
  JetStreamStore& operator=(const JetStreamStore&) = delete;

  cable::Result<std::string> Epoch();
  // The next offset of `stream` (from 1); JetStream trims to the history limit/ttl.
  cable::Result<uint64_t> Append(const std::string& stream, std::string_view data, int64_t unix_ts);
  // The batch form (one offset per entry, in order). Stops at the first failure (entries before it
  // are stored).
  cable::Result<std::vector<uint64_t>> Append(const std::vector<AppendEntry>& batch,
                                              int64_t unix_ts);
  // Publications with offset > after_offset, in order ("refused: ..." as described above).
  cable::Result<std::vector<StoredPublication>> ReadFrom(const std::string& stream,
                                                         uint64_t after_offset);
  // The retained publications with offset >= from_offset (at most history_limit, in order), never
  // refused: an unknown stream or a position out of range gives what is retained there (maybe
  // nothing), for a caller that applies the refusal rules itself.
  cable::Result<std::vector<StoredPublication>> ReadRetained(const std::string& stream,
                                                             uint64_t from_offset);
  // Retained publications stamped at or after since_unix_ts; an unknown stream is empty.
  cable::Result<std::vector<StoredPublication>> ReadSince(const std::string& stream,
                                                          int64_t since_unix_ts);
  // Stores (replaces) a session (Result<bool>: cable::Result has no void; true = done) for
  // min(ttl_s, --sessions_ttl) seconds.
  cable::Result<bool> PutSession(const std::string& sid, std::string_view blob, int ttl_s);
  // Removes and returns the session (single use, cluster-wide); nullopt if unknown, expired or
  // already taken.
  cable::Result<std::optional<std::string>> TakeSession(const std::string& sid);

  // Presence (hub::BrokerStore's contract; see "Presence" in the layout above).
  cable::Result<bool> PresenceJoin(const std::string& stream, const std::string& sid,
                                   const std::string& id, const std::string& info_json,
                                   int64_t expires_at, std::vector<hub::PresenceEvent>* events);
  cable::Result<bool> PresenceLeave(const std::string& stream, const std::string& sid,
                                    std::vector<hub::PresenceEvent>* events);
  cable::Result<std::vector<hub::PresenceRecord>> PresenceInfo(const std::string& stream);
  cable::Result<bool> PresenceTouch(const std::vector<std::string>& sids, int64_t expires_at);
  cable::Result<bool> PresenceRestore(const std::string& old_sid, const std::string& new_sid,
                                      int64_t expires_at);
  cable::Result<bool> PresenceSweep(int64_t now, std::vector<hub::PresenceEvent>* events);

  // Deletes the JetStream streams of ringcable streams with no message left and no publication
  // for 10 x --history_ttl, and the presence buckets' delete markers older than 30 minutes.
  // Returns how many streams were deleted. Call now and then (every minute).
  cable::Result<size_t> Sweep();

  // True once connected right now (for logs/metrics; calls check it themselves).
  bool connected() const;
  // Idempotent.
  void Close();

  // The JetStream stream (and subject) name of a ringcable stream (see the layout above).
  static std::string JetStreamName(std::string_view stream);
  // The KV key of a session id.
  static std::string SessionKey(std::string_view sid);

  static constexpr const char* kEpochBucket = "_anycable_epoch_";
  static constexpr const char* kEpochKey = "_epoch_";
  static constexpr const char* kSessionsBucket = "_ringcable_sessions_";
  static constexpr const char* kPresenceSessionsBucket = "_ringcable_presence_sessions_";
  static constexpr const char* kPresenceStreamsBucket = "_ringcable_presence_streams_";
  static constexpr const char* kTsHeader = "Ringcable-Ts";
  // Compare-and-set attempts of one presence step before it fails (conflicts = other writers).
  static constexpr int kPresenceCasAttempts = 32;
  // A sweeping (or restoring) node owns a claimed session this long; after it another may retry.
  static constexpr int64_t kPresenceClaimLeaseS = 30;
  // Expired sessions swept per call (the next call goes on).
  static constexpr size_t kPresenceSweepBatch = 100;
  static constexpr size_t kMaxKnownStreams = 4096;

 private:
  friend struct PresenceOps;
  struct Impl;
  explicit JetStreamStore(std::unique_ptr<Impl> impl);
  // The presence buckets (opened on first use); fails while NATS is down.
  cable::Result<PresenceOps> Presence();
  std::unique_ptr<Impl> impl_;
};

}  // namespace cable::nats
