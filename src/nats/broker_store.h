// nats::JetStreamBrokerStore — `--broker nats`: the broker thread's blocking store
// (hub::BrokerStore) over nats::JetStreamStore (history in JetStream streams, the epoch and the
// sessions in KV buckets; see jetstream_store.h for the layout).
//
// Presence (issue #15) is JetStreamStore's (two KV buckets, compare-and-set; see its header).
//
// Threads: like every BrokerStore, called only on the broker thread (hub::RemoteBroker). It owns
// its JetStreamStore; libnats reconnects by itself, so Reset() has nothing to drop.
//
// Maintenance rides on the calls the broker thread makes anyway: at most once a minute, the next
// call first runs JetStreamStore::Sweep() (deletes JetStream streams empty and idle for 10 x
// --history_ttl, which bounds their number). Epoch() is asked before every append, which also keeps
// the epoch key alive past its bucket TTL.
#pragma once

#include <memory>

#include "hub/broker_store.h"
#include "nats/jetstream_store.h"

namespace cable::nats {

class JetStreamBrokerStore final : public hub::BrokerStore {
 public:
  explicit JetStreamBrokerStore(std::unique_ptr<JetStreamStore> store) : store_(std::move(store)) {}

  Result<std::string> Epoch() override;
  Result<std::vector<uint64_t>> Append(const std::vector<hub::AppendEntry>& batch,
                                       int64_t unix_ts) override;
  Result<std::vector<hub::StoredPublication>> ReadFrom(const std::string& stream,
                                                       uint64_t from_offset) override;
  Result<std::vector<hub::StoredPublication>> ReadSince(const std::string& stream,
                                                        int64_t since_unix_ts) override;
  Result<bool> PutSession(const std::string& sid, std::string_view blob, int ttl_s) override;
  Result<std::optional<std::string>> TakeSession(const std::string& sid) override;
  Result<bool> PresenceJoin(const std::string& stream, const std::string& sid,
                            const std::string& id, const std::string& info_json, int64_t expires_at,
                            std::vector<hub::PresenceEvent>* events) override {
    return store_->PresenceJoin(stream, sid, id, info_json, expires_at, events);
  }
  Result<bool> PresenceLeave(const std::string& stream, const std::string& sid,
                             std::vector<hub::PresenceEvent>* events) override {
    return store_->PresenceLeave(stream, sid, events);
  }
  Result<std::vector<hub::PresenceRecord>> PresenceInfo(const std::string& stream) override {
    return store_->PresenceInfo(stream);
  }
  Result<bool> PresenceTouch(const std::vector<std::string>& sids, int64_t expires_at) override {
    return store_->PresenceTouch(sids, expires_at);
  }
  Result<bool> PresenceRestore(const std::string& old_sid, const std::string& new_sid,
                               int64_t expires_at) override {
    return store_->PresenceRestore(old_sid, new_sid, expires_at);
  }
  Result<bool> PresenceSweep(int64_t now, std::vector<hub::PresenceEvent>* events) override {
    return store_->PresenceSweep(now, events);
  }
  bool SupportsPresence() const override { return true; }

 private:
  void MaybeSweep();

  std::unique_ptr<JetStreamStore> store_;
  int64_t next_sweep_s_ = 0;  // monotonic seconds
};

}  // namespace cable::nats
