// hub::MemoryBroker — `--broker memory`: stream history with epoch/offset positions, and the cache
// of disconnected sessions that `actioncable-v1-ext-json` clients can restore.
//
// Offsets are assigned in ONE place for every producer: each publication, whichever thread accepted
// it (a worker serving POST /_broadcast or a whisper, the cluster thread delivering Redis/NATS
// messages), goes through Publish(). Under one mutex, Publish() gives a non-transient publication
// the next offset of its stream, appends it to the stream's history and hands it to the
// BroadcastLog; when the log is full it waits in the broker's own FIFO, which is drained (under the
// same mutex) before anything newer. So log order = offset order, and since every worker consumes
// the log in the same order, every subscriber sees a stream's offsets in increasing order.
//
// Why a mutex and not a broker thread (design doc §2.1): the lock covers only the stamp + append +
// one TryPublish (or a push to the FIFO), a few hundred nanoseconds per publication, and is never
// taken on the per-subscriber delivery path or by an idle worker. History reads (a client command)
// and session take/commit (a connect with a restore sid / a disconnect) take it too. A broker
// thread would add a thread hop to every publication for no ordering gain.
//
// The session store is a second, separate mutex-protected map: it is touched once per ext
// disconnect (commit) and once per connect that carries a restore sid (take), never on the data
// path, and it lets a restore arriving on any worker find a session kept by any other worker
// without cross-worker messaging. Sids are single-use: TakeSession() removes the entry.
//
// Threads: every public method may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "hub/broadcast_log.h"
#include "hub/message.h"

namespace cable::hub {

// A disconnected session as kept for restore (anycable-go's cache entry: ids, subs, cstate,
// istate).
struct CachedSubscription {
  std::string identifier;
  std::vector<std::string> streams;
  std::map<std::string, std::string> istate;
  bool builtin = false;
};
struct CachedSession {
  std::string identifiers;
  std::map<std::string, std::string> cstate;
  std::vector<CachedSubscription> subs;
  bool rpc_free_auth = false;
  bool used_rpc = false;
};

class MemoryBroker {
 public:
  MemoryBroker(BroadcastLog& log, int history_limit, int history_ttl_s, int sessions_ttl_s);
  ~MemoryBroker();
  MemoryBroker(const MemoryBroker&) = delete;
  MemoryBroker& operator=(const MemoryBroker&) = delete;

  // Random per process start (4 url-safe characters from getrandom, as anycable-go's nanoid(4)).
  const std::string& epoch() const { return epoch_; }

  // Takes ownership of `msg` (its per-worker references). Stamps non-transient publications, then
  // appends to the log in call order. False when something waits for room in the log: call Flush()
  // later (workers do, every loop turn, while HasBacklog()).
  bool Publish(Message* msg);
  bool Flush();
  bool HasBacklog() const { return backlog_size_.load(std::memory_order_acquire) > 0; }

  // History of one stream. On success `out` gets the messages (one reference each, for the caller
  // to Release) in offset order and `horizon` the last seq stamped (any stream) at the time of the
  // read: every publication of the stream with seq <= horizon was either returned or not asked for.
  // HistoryFrom: messages after `offset`; refused (false) as anycable-go's memory broker does: an
  // epoch other than ours, an unknown or empty stream, `offset` below the lowest retained one (so
  // lowest-1 is refused too, though nothing would be missing), or above the top.
  bool HistoryFrom(const std::string& stream, std::string_view epoch, uint64_t offset,
                   std::vector<Message*>* out, uint64_t* horizon);
  // HistorySince: messages stamped at or after `since` (unix seconds); an unknown stream is an
  // empty success, as in anycable-go.
  bool HistorySince(const std::string& stream, int64_t since, std::vector<Message*>* out,
                    uint64_t* horizon);

  // Drops history entries older than --history_ttl, streams idle for 10 x ttl (their offsets
  // restart) and expired sessions. Called about once a second by worker 0.
  void Sweep();

  void CommitSession(const std::string& sid, CachedSession session);
  // Removes and returns the session (single use); nullopt if unknown or expired.
  std::optional<CachedSession> TakeSession(const std::string& sid);

  // Live upgrade (src/upgrade/upgrade.h, kBrokerState): the whole state — epoch, stamp counter,
  // every stream's numbering and retained history, every cached session with its expiry — as
  // bytes, and back. Export once nothing publishes any more (the old process's intake is closed);
  // Import before anything is published or read (the new process holds its publications until the
  // handover ends, and has no connection yet). Import replaces the epoch: positions clients hold
  // stay valid. False (state untouched) on malformed bytes.
  std::string ExportState();
  bool ImportState(const std::string& bytes);

  // For tests/metrics (relaxed reads of counters kept under the locks; never take a lock).
  size_t sessions() const {
    return static_cast<size_t>(sessions_count_.load(std::memory_order_relaxed));
  }
  int64_t history_streams() const { return streams_count_.load(std::memory_order_relaxed); }
  int64_t history_entries() const { return entries_count_.load(std::memory_order_relaxed); }

 private:
  struct Stream {
    uint64_t top = 0;
    int64_t last_add = 0;  // unix seconds
    std::deque<Message*> entries;
  };
  void ExpireLocked(Stream& s, int64_t now);
  bool FlushLocked();

  BroadcastLog& log_;
  const size_t history_limit_;
  const int64_t history_ttl_s_;
  const int64_t sessions_ttl_s_;
  std::string epoch_;

  std::mutex mu_;
  std::unordered_map<std::string, Stream> streams_;
  uint64_t seq_ = 0;  // last Message::seq() given
  std::deque<Message*> backlog_;
  std::atomic<size_t> backlog_size_{0};
  std::atomic<int64_t> streams_count_{0};  // streams_.size()
  int64_t entries_ = 0;                    // sum of entries.size(), under mu_
  // Copies for metrics readers (plain relaxed stores under the locks: no read-modify-write on
  // the publish path).
  std::atomic<int64_t> entries_count_{0};
  std::atomic<int64_t> sessions_count_{0};  // sessions_.size()

  struct SessionEntry {
    int64_t expires;
    CachedSession session;
  };
  mutable std::mutex sessions_mu_;
  std::unordered_map<std::string, SessionEntry> sessions_;
};

// 21 url-safe characters (nanoid's alphabet) from the kernel CSPRNG (getrandom): a sid is a bearer
// token for session restore (spec §5 item 39). `n` characters.
std::string RandomId(size_t n);

}  // namespace cable::hub
