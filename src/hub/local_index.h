// hub::LocalIndex — one worker's map from stream name to the subscriptions on that worker.
//
// Owned and used by exactly one worker thread; subscribing and unsubscribing never touch another
// thread. Subscriptions are owned by their connection's session; the index holds pointers to them,
// and each subscription remembers where it sits in every bucket, so removal is O(1) (swap with the
// bucket's last entry and fix that entry's back-reference).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace cable::hub {

struct Bucket;

// One (connection, identifier) subscription. The session owns it (heap-allocated, so it never
// moves).
struct Subscription {
  struct Link {
    Bucket* bucket;
    uint32_t index;  // position in bucket->entries
    // --broker: the range of the stream's publications (by Message::seq) this subscription was
    // already sent (contiguous: live delivery is in log order and history replies fill what is
    // before it); 0 = none yet. Written only by the owning worker. With --broker redis (messages
    // without a node seq) the same range by offset instead: lo = epoch tag << 32 | low end,
    // hi = high end (server/worker_broker.cc).
    uint64_t lo = 0;
    uint64_t hi = 0;
  };
  std::string identifier;
  uint32_t conn_slot = 0;
  uint32_t conn_generation = 0;
  std::vector<Link> links;  // one per stream; stream names live as the map keys
};

struct Bucket {
  struct Entry {
    Subscription* sub;
    uint32_t link;  // position in sub->links
  };
  const std::string* name = nullptr;  // the map key
  std::vector<Entry> entries;
};

class LocalIndex {
 public:
  // Told when a stream gets its first subscription on this worker (up = true) and when its last
  // one leaves (up = false); the cluster subscribes the node to streams it has subscribers for.
  // Called on the owning worker's thread, from inside Add/Remove/RemoveAll.
  class Observer {
   public:
    virtual ~Observer() = default;
    virtual void OnStreamChange(const std::string& stream, bool up) = 0;
  };
  void SetObserver(Observer* observer) { observer_ = observer; }

  // Adds `stream` to the subscription; no-op if it already streams from it (one frame per
  // identifier).
  void Add(Subscription* sub, const std::string& stream);
  // Removes one stream from the subscription (no-op if absent).
  void Remove(Subscription* sub, const std::string& stream);
  // Removes every stream of the subscription.
  void RemoveAll(Subscription* sub);
  const Bucket* Find(const std::string& stream) const;
  size_t streams() const { return map_.size(); }
  static bool Has(const Subscription* sub, const std::string& stream);

 private:
  void RemoveLink(Subscription* sub, uint32_t link_pos);
  std::unordered_map<std::string, Bucket> map_;
  Observer* observer_ = nullptr;
};

}  // namespace cable::hub
