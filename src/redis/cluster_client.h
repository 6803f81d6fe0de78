// redis::ClusterClient — a Redis Cluster client with the same event-loop contract as Connection.
//
// The slot map comes from CLUSTER SLOTS, asked of the known masters and then the URL's addresses
// (shuffled, as anycable-go does) until one answers. Commands:
//   - KeyCommand(key, ...) goes to the master owning the key's slot (CRC16 of the key, or of the
//     part between the first '{' and the next '}' when that part is non-empty: a hash tag);
//   - Command(...) (no key) goes to the master of the slot of its first argument after the command
//     name (for PUBLISH: the channel), so every publication of one channel travels through one
//     node and keeps its order; PING goes to the same node as the command before it;
//   - -MOVED <slot> <host:port>: the slot's owner is updated, the command is resent there and a
//     map refresh is scheduled; -ASK <slot> <host:port>: ASKING + the command go to that node, the
//     map is left as it is. At most 5 redirections per command.
//   - a node whose connection fails is left alone for Options::cluster_node_retry_ms (500 ms;
//     commands for it fail at once, so a caller never waits on a dead node) and the map is
//     refreshed (at most every 250 ms); a failover thus reaches the promoted replica as soon as
//     the cluster reports it.
// The map is also re-read every Options::cluster_refresh_ms (5 s): after a manual failover the
// demoted master still accepts PUBLISH, and only a fresh map moves each channel back to one path.
// The client is ready once a map is known; a refresh that no node answers closes it (OnClosed),
// and its owner reconnects with backoff as with a single connection.
//
// Subscribe mode (SetSubscribeMode before Connect): one connection to one master picked at random
// from the map (as anycable-go's rueidis client does), which receives every PUBLISH of the whole
// cluster (classic pub/sub is cluster-wide). When it is lost the client closes; the owner's
// reconnect asks for the map again and subscribes on a live node.
//
// Event loop: the client keeps its node connections in an epoll set of its own; fd() is that
// epoll descriptor (stable for the client's life), always watched for EPOLLIN.
//
// Threads and ownership: as Connection (one owner thread). Node connections are owned by the
// client; ones dropped inside a callback are destroyed at the next OnEvents/Tick.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "redis/redis.h"

namespace cable::redis {

constexpr int kClusterSlots = 16384;

// The cluster slot of `key` (hash tags honoured), 0..16383.
uint16_t KeySlot(std::string_view key);

class ClusterClient : public Client {
 public:
  struct Stats {
    uint64_t moved = 0;      // -MOVED replies followed
    uint64_t ask = 0;        // -ASK replies followed
    uint64_t maps = 0;       // slot maps installed (the first one included)
    uint64_t node_lost = 0;  // node connections that failed or were lost
  };

  ClusterClient(Options options, Client::Handler* handler, std::string name);
  ~ClusterClient() override;
  ClusterClient(const ClusterClient&) = delete;
  ClusterClient& operator=(const ClusterClient&) = delete;

  void Connect() override;
  void Command(std::vector<std::string> args, Callback cb = nullptr) override;
  void KeyCommand(const std::string& key, std::vector<std::string> args,
                  Callback cb = nullptr) override;
  void SetSubscribeMode() override { subscribe_mode_ = true; }
  void Close() override;

  int fd() const override { return epoll_fd_; }
  uint32_t events() const override;
  void OnEvents(uint32_t epoll_events) override;
  void Tick(int64_t now_ms) override;

  State state() const override { return state_; }
  const std::string& name() const override { return name_; }
  size_t pending_commands() const override;

  const Stats& stats() const { return stats_; }
  // "host:port" of the master the map names for `slot`, or "" when none.
  std::string OwnerOf(uint16_t slot) const;
  // Masters in the current map, "host:port" each.
  std::vector<std::string> Masters() const;
  // Subscribe mode: the node the subscriptions live on ("" when not connected).
  std::string SubscribeNode() const;

 private:
  struct Watched;
  struct Map;

  // What the probe and the node connections tell the client.
  class NodeHandler : public Client::Handler {
   public:
    explicit NodeHandler(ClusterClient* owner) : owner_(owner) {}
    void OnReady(Client& c) override { owner_->OnNodeReady(c); }
    void OnPush(Client& c, Reply&& reply) override { owner_->OnNodePush(c, std::move(reply)); }
    void OnClosed(Client& c, const std::string& reason) override {
      owner_->OnNodeClosed(c, reason);
    }

   private:
    ClusterClient* owner_;
  };
  void OnNodeReady(Client& c);
  void OnNodePush(Client& c, Reply&& reply);
  void OnNodeClosed(Client& c, const std::string& reason);

  void StartDiscovery();
  void NextProbe();
  void OnSlots(Connection* probe, Reply&& reply);
  void InstallMap(Map&& map);
  void DiscoveryFailed();
  void ScheduleRefresh();
  void Route(int slot, std::vector<std::string> args, Callback cb, int redirects,
             const std::string& forced_addr, bool asking);
  Watched* EnsureNode(const std::string& addr);
  void CloseRetired();
  Watched* FindByClient(const Client& c);
  void Bury(std::unique_ptr<Watched> w);
  void Collect();
  void SyncEpoll();
  void Shutdown(const std::string& reason, bool notify);
  Options NodeOptions(const Endpoint& ep) const;

  Options options_;
  Client::Handler* handler_;
  NodeHandler node_handler_{this};
  std::string name_;
  State state_ = State::kIdle;
  bool subscribe_mode_ = false;
  int epoll_fd_ = -1;
  uint64_t next_id_ = 1;

  std::unique_ptr<Watched> probe_;
  std::vector<Endpoint> probe_candidates_;
  std::string probe_errors_;
  bool discovering_ = false;
  int64_t refresh_due_ms_ = 0;  // 0 = no refresh scheduled
  int64_t last_discovery_ms_ = 0;

  std::vector<std::unique_ptr<Watched>> nodes_;      // cmd mode: one per master used
  std::unique_ptr<Watched> sub_;                     // subscribe mode: the one connection
  std::vector<std::unique_ptr<Watched>> graveyard_;  // closed, destroyed outside callbacks
  std::unique_ptr<Map> map_;
  std::string last_addr_;  // node of the last keyless command (PING follows it)
  Stats stats_;
};

}  // namespace cable::redis
