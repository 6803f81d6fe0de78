// hub::RemoteBroker — `--broker redis` (and later nats): the broker thread in front of a blocking
// hub::BrokerStore. Workers never touch the store: they push a request to the broker's inbox
// (lock-free, an eventfd wakes the thread) and get the answer back through their own inbox
// (ReplySink, exactly like RPC completions), so no ring thread ever waits for the network.
//
// Requests:
//   - Append: stamps a batch of publications (one store round trip); the `done` callback runs ON
//     THE BROKER THREAD with the epoch and one offset per entry (0 = not stored: the store is down
//     and the publication goes out unstamped, as anycable-go does when its broker fails). The
//     caller's callback then hands the stamped batch to pub/sub (unless the store already
//     published it atomically with the append: Redis pub/sub on the broker's Redis), so every
//     node delivers the same stream_id/epoch/offset without restamping.
//   - History: one subscription's `history` (positions or `since`, per stream); answered with
//     hub::Messages (one reference each, owned by the reply) or a reject.
//   - TakeSession / PutSession: the session cache (single use); a store error answers "no
//     session" (the worker then runs the normal Connect) / drops the commit.
//   - Presence (cluster-wide): join / leave / info / touch / restore go to the store; the events
//     they cause (and the leaves of the once-a-second sweep of expired sessions) are handed to
//     the PresencePublish callback ON THE BROKER THREAD, which publishes them through pub/sub, so
//     each event reaches every node exactly once (the store decides atomically who emits it).
//     Join and info answer the worker with a kPresence reply (a failed join → the error reply).
// Store failures are logged once per outage ("... unavailable", then "... is back") and counted.
//
// Ownership and threads: main() owns the RemoteBroker (Shared::remote_broker), started before the
// workers and stopped after them. The broker thread owns the store. A reply belongs to the worker
// that receives it; whatever it holds (messages, session) is freed by its destructor.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/inbox.h"
#include "hub/broker.h"
#include "hub/broker_store.h"
#include "hub/message.h"

namespace cable::hub {

struct BrokerReply {
  enum class Kind : uint8_t { kHistory, kSession, kPresence };
  Kind kind = Kind::kHistory;
  uint64_t token = 0;  // the requesting connection {generation:32, slot:32}
  // kHistory
  std::string identifier;
  uint64_t request_id = 0;
  bool ok = false;
  struct StreamMessages {
    uint32_t link = 0;
    std::vector<Message*> messages;  // offset order, one reference each
  };
  std::vector<StreamMessages> streams;
  // kSession
  std::string old_sid;
  std::optional<CachedSession> session;
  // kPresence (identifier: the subscription; empty = the REST API on an HTTP connection)
  bool presence_info = false;  // an info reply (records) rather than a join's outcome
  std::vector<PresenceRecord> records;

  BrokerReply() = default;
  BrokerReply(const BrokerReply&) = delete;
  BrokerReply& operator=(const BrokerReply&) = delete;
  ~BrokerReply();
};

// Where replies go (a worker). Called on the broker thread.
class BrokerReplySink {
 public:
  virtual ~BrokerReplySink() = default;
  virtual void OnBrokerReply(std::unique_ptr<BrokerReply> reply) = 0;
};

struct HistoryQuery {
  uint32_t link = 0;
  std::string stream;
  bool has_position = false;
  std::string epoch;
  uint64_t offset = 0;
  int64_t since = 0;
};

struct BrokerCounters {
  std::atomic<uint64_t> errors_total{0};     // store calls that failed
  std::atomic<uint64_t> unstamped_total{0};  // publications delivered without a position
  std::atomic<uint64_t> stamped_total{0};    // publications stored with an offset
  std::atomic<uint64_t> history_rejected_total{0};
  std::atomic<uint64_t> presence_events_total{0};  // join/leave events this node published
  std::atomic<int64_t> store_up{1};                // 0 while the store is failing
};

class RemoteBroker {
 public:
  // `published`: the store also published every stamped entry that named a channel
  // (BrokerStore::PublishesOnAppend); the caller publishes the rest.
  using AppendDone = std::function<void(const std::string& epoch,
                                        const std::vector<uint64_t>& offsets, bool published)>;

  // `name` for logs ("redis"). Starts the thread.
  RemoteBroker(std::unique_ptr<BrokerStore> store, std::string name, int sessions_ttl_s);
  ~RemoteBroker();
  RemoteBroker(const RemoteBroker&) = delete;
  RemoteBroker& operator=(const RemoteBroker&) = delete;

  // Any thread. See the header comment.
  void Append(std::vector<AppendEntry> batch, AppendDone done);
  void History(BrokerReplySink* sink, uint64_t token, std::string identifier, uint64_t request_id,
               std::vector<HistoryQuery> queries);
  void TakeSession(BrokerReplySink* sink, uint64_t token, std::string old_sid);
  void PutSession(std::string sid, CachedSession session);
  // Presence. EnablePresence: once, before the workers start; `publish` runs on the broker thread.
  using PresencePublish = std::function<void(std::vector<PresenceEvent>)>;
  void EnablePresence(int ttl_s, PresencePublish publish);
  bool presence_enabled() const { return presence_ttl_s_.load(std::memory_order_acquire) > 0; }
  int presence_ttl_s() const { return presence_ttl_s_.load(std::memory_order_acquire); }
  void PresenceJoin(BrokerReplySink* sink, uint64_t token, std::string identifier,
                    std::string stream, std::string sid, std::string id, std::string info_json);
  void PresenceLeave(std::string stream, std::string sid);
  void PresenceInfo(BrokerReplySink* sink, uint64_t token, std::string identifier,
                    std::string stream);
  // The sessions' records expire --presence_ttl from now (live: every ttl/2; disconnect: once).
  void PresenceTouch(std::vector<std::string> sids);
  void PresenceRestore(std::string old_sid, std::string new_sid);
  // Stops the thread (requests still queued are dropped). Idempotent.
  void Stop();

  const BrokerCounters& counters() const { return counters_; }

 private:
  struct Request;
  void Push(Request* r);
  void Run();
  void Handle(Request& r);
  void Failed(const std::string& what, const std::string& error);
  void Succeeded();
  void HandlePresence(Request& r);
  void PublishPresence(std::vector<PresenceEvent> events);
  void SweepPresence();

  std::unique_ptr<BrokerStore> store_;
  const std::string name_;
  const int sessions_ttl_s_;
  int event_fd_ = -1;
  Inbox<Request> inbox_;
  std::thread thread_;
  bool stopped_ = false;
  bool down_ = false;  // broker thread only
  std::atomic<int> presence_ttl_s_{0};
  PresencePublish presence_publish_;  // set before presence_ttl_s_
  int64_t next_sweep_ms_ = 0;         // broker thread only
  BrokerCounters counters_;
};

// The session cache entry as an opaque blob (length-prefixed fields, versioned).
std::string EncodeSession(const CachedSession& s);
std::optional<CachedSession> DecodeSession(std::string_view blob);

}  // namespace cable::hub
