// redis::Store — `--broker redis`: stream history and the session cache in Redis, behind the
// blocking hub::BrokerStore interface. Used only on the broker thread (hub::RemoteBroker), which
// owns it; a blocking hiredis context with connect/command timeouts, so a dead Redis costs the
// broker thread at most one timeout per call and never touches a worker.
//
// Layout (own; anycable-go Pro's is unpublished), keys hash-tagged per stream:
//   <p>epoch          string, the cluster-wide epoch (SET NX by the first node, no TTL: a Redis
//                     that loses its data gets a new one, so old positions are refused)
//   <p>{stream}:o     integer, the stream's last offset (INCR), EXPIRE 10 x --history_ttl
//   <p>{stream}:x     stream; entry id "0-<offset>", fields d (message JSON) and t (unix s),
//                     XADD MAXLEN = --history_limit, EXPIRE --history_ttl
//   <p>s:<sid>        string, a session blob, SET EX --sessions_ttl, taken with GETDEL
//   <p>p:r:{stream}   hash presence id -> info JSON ("" = none): the stream's records
//   <p>p:c:{stream}   hash presence id -> number of sessions holding it
//   <p>p:s:<sid>      hash stream -> presence id: what a session holds (<= 100 streams)
//   <p>p:exp          sorted set of sids holding records, scored by their expiry (unix s)
// with <p> = "_ac_". Presence runs as Lua scripts (atomic: each event is returned to exactly one
// caller). anycable-go Pro keeps presence in hashes with per-field TTLs (HEXPIRE, Redis 7.4+);
// Debian 12 ships Redis 7.0, so expiry here is the sorted set, swept by every node's broker thread
// once a second (ZRANGEBYSCORE -inf now, 100 sessions per script run). Append is one Lua script per
// publication (INCR + XADD + EXPIREs), pipelined: one round trip per publication batch. Redis
// >= 6.2 (GETDEL, exclusive XRANGE not needed). Supported URLs: redis://[user:pass@]host:port/db
// (no TLS, Sentinel or Cluster for the broker yet: Make() refuses them with one line).
#pragma once

#include <memory>
#include <string>

#include "common/result.h"
#include "hub/broker_store.h"
#include "redis/redis.h"

struct redisContext;

namespace cable::redis {

class Store : public hub::BrokerStore {
 public:
  struct Limits {
    int history_limit = 100;
    int history_ttl_s = 300;
    // Pub/sub runs on this same Redis (--pubsub redis): Append publishes (PublishesOnAppend).
    bool publish = false;
  };
  static cable::Result<std::unique_ptr<Store>, std::string> Make(const Options& options,
                                                                 Limits limits);
  ~Store() override;

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
                            std::vector<hub::PresenceEvent>* events) override;
  Result<bool> PresenceLeave(const std::string& stream, const std::string& sid,
                             std::vector<hub::PresenceEvent>* events) override;
  Result<std::vector<hub::PresenceRecord>> PresenceInfo(const std::string& stream) override;
  Result<bool> PresenceTouch(const std::vector<std::string>& sids, int64_t expires_at) override;
  Result<bool> PresenceRestore(const std::string& old_sid, const std::string& new_sid,
                               int64_t expires_at) override;
  Result<bool> PresenceSweep(int64_t now, std::vector<hub::PresenceEvent>* events) override;
  bool SupportsPresence() const override { return true; }
  void Reset() override;
  bool PublishesOnAppend() const override { return limits_.publish; }

 private:
  Store(Options options, Limits limits) : options_(std::move(options)), limits_(limits) {}
  Result<bool> Connect();
  // EVAL of a presence script; its reply is {status, stream, type, id, info, ...}. Returns the
  // status (1 ok, 0 refused by a bound) and appends the events.
  Result<bool> EvalPresence(const char* script, std::vector<std::string> argv,
                            std::vector<hub::PresenceEvent>* events);
  Result<std::vector<hub::StoredPublication>> Range(const std::string& stream,
                                                    const std::string& start);

  Options options_;
  Limits limits_;
  redisContext* ctx_ = nullptr;
  std::string epoch_;
  int64_t retry_at_ms_ = 0;  // no reconnect attempt before this (a down Redis fails fast)
};

}  // namespace cable::redis
