#include "cluster/cluster.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <deque>
#include <future>
#include <random>
#include <thread>
#include <unordered_map>

#include "common/inbox.h"
#include "common/log.h"
#include "nats/nats_link.h"
#include "protocol/encode.h"
#include "redis/redis.h"

namespace cable::cluster {
namespace {

constexpr const char kInternalChannel[] = "__anycable_internal__";
// Live upgrade fences (cluster.h): never delivered, whoever publishes on them.
constexpr std::string_view kFencePrefix = "__ringcable_upgrade__.";
constexpr size_t kSubscribeBatch = 256;  // channels per SUBSCRIBE on (re)connect, as anycable-go
constexpr int kRedisxCount = 64;         // entries per XREADGROUP / XAUTOCLAIM
constexpr int64_t kRedisxRetryMs = 250;  // after a failed XREADGROUP

int64_t MonoMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

bool Has(const std::vector<std::string>& v, const char* s) {
  for (const auto& x : v) {
    if (x == s) return true;
  }
  return false;
}

}  // namespace

std::string EncodePublication(const protocol::Publication& pub) {
  std::string out = "{\"stream\":";
  protocol::AppendJsonString(out, pub.stream);
  out += ",\"data\":";
  protocol::AppendJsonString(out, pub.data);
  if (pub.offset != 0) {
    out += ",\"offset\":";
    out += std::to_string(pub.offset);
    out += ",\"epoch\":";
    protocol::AppendJsonString(out, pub.epoch);
  }
  if (!pub.exclude_socket.empty() || pub.transient || !pub.broadcast_type.empty()) {
    out += ",\"meta\":{";
    bool first = true;
    auto sep = [&] {
      if (!first) out += ',';
      first = false;
    };
    if (!pub.exclude_socket.empty()) {
      sep();
      out += "\"exclude_socket\":";
      protocol::AppendJsonString(out, pub.exclude_socket);
    }
    if (!pub.broadcast_type.empty()) {
      sep();
      out += "\"broadcast_type\":";
      protocol::AppendJsonString(out, pub.broadcast_type);
    }
    if (pub.transient) {
      sep();
      out += "\"transient\":true";
    }
    out += '}';
  }
  out += '}';
  return out;
}

std::string EncodeRemoteDisconnect(const protocol::RemoteDisconnect& cmd) {
  std::string out = "{\"command\":\"disconnect\",\"payload\":{\"identifier\":";
  protocol::AppendJsonString(out, cmd.identifier);
  out += cmd.reconnect ? ",\"reconnect\":true}}" : ",\"reconnect\":false}}";
  return out;
}

namespace {

// Work handed to the cluster thread.
struct Item {
  enum class Kind : uint8_t {
    kPublish,
    kStreamUp,
    kStreamDown,
    kNatsMessage,
    kNatsState,
    kRun,  // `run` on the cluster thread (live upgrade requests)
    kStop
  };
  Item* next = nullptr;
  Kind kind = Kind::kPublish;
  std::vector<Outgoing> batch;
  AckSink* ack = nullptr;
  uint64_t token = 0;
  std::string a;  // stream / subject
  std::string b;  // payload / detail
  bool flag = false;
  std::function<void()> run;
};

// Completion of one batch published through pub/sub: acked once every item has an answer.
struct PendingBatch {
  size_t remaining = 0;
  bool ok = true;
  std::function<void(bool)> done;
};

// One Redis connection with its reconnect schedule and epoll registration.
struct RedisSlot {
  std::unique_ptr<redis::Client> conn;  // a Connection, or a ClusterClient for a cluster URL
  bool ready = false;
  int attempt = 0;
  int64_t reconnect_at_ms = 0;  // 0 = not scheduled
  int64_t last_heard_ms = 0;
  int registered_fd = -1;
  uint32_t registered_events = 0;
};

}  // namespace

struct Cluster::Impl : redis::Client::Handler, nats::Link::Handler {
  Impl(Cluster& owner, const config::Config& cfg, Sink* sink, bool drop_until_fence)
      : owner(owner), cfg(cfg), sink(sink), rng(std::random_device{}()) {
    if (drop_until_fence) fence_mode = FenceMode::kDropUntil;
  }

  Cluster& owner;
  config::Config cfg;
  Sink* sink;
  Counters& counters() { return owner.counters_; }

  // Wiring decided at start.
  const bool remote_broker =
      cfg.broker == "redis" || cfg.broker == "nats";  // pub/sub carries the broker's positions
  bool redis_broadcast = false;                       // legacy `redis` adapter
  bool redisx = false;
  bool nats_broadcast = false;
  std::string pubsub;  // "", "redis", "nats"
  std::string internal_channel = kInternalChannel;
  redis::Options redis_options;

  int epoll_fd = -1;
  int event_fd = -1;
  std::thread thread;
  std::atomic<bool> stopped{false};
  Inbox<Item> inbox;
  std::mt19937_64 rng;

  // Cluster-thread state.
  RedisSlot sub;  // subscribe mode: broadcast channel, internal channel, streams
  RedisSlot cmd;  // PUBLISH, XACK, XDEL, XAUTOCLAIM, XGROUP
  RedisSlot rx;   // XREADGROUP (blocks for --redisx_read_block_milliseconds)
  std::vector<RedisSlot*> slots;
  bool redis_link_up = false;
  bool redis_link_reported = false;                  // a state was logged at least once
  std::unordered_map<std::string, int> stream_refs;  // stream -> workers with subscribers
  std::unique_ptr<nats::Link> nats_link;
  bool nats_up = false;
  bool rx_reading = false;
  bool cluster_probe_sent = false;  // CLUSTER INFO asked of a single --redis_url
  bool cluster_known = false;       // whether Redis is a cluster is settled (redisx waits for it)
  bool switch_to_cluster = false;   // it answered: a Redis Cluster node
  int64_t redisx_retry_at_ms = 0;   // no XREADGROUP before this (after a failed one)
  std::string redisx_last_error;    // the last XREADGROUP failure, logged once
  int64_t next_autoclaim_ms = 0;
  int64_t next_keepalive_ms = 0;
  std::string consumer_name;
  protocol::BroadcastParser parser;
  protocol::MessageEncoder encoder;
  std::deque<hub::Message*> pending_delivery;
  std::vector<std::pair<size_t, std::function<void(bool)>>> nats_unflushed;

  // Live upgrade fence (cluster.h). kDropAfter: the old process drops what a link delivers after
  // the fence; kDropUntil: the new process drops what a link delivers before it.
  enum class FenceMode : uint8_t { kOff, kDropAfter, kDropUntil };
  FenceMode fence_mode = FenceMode::kOff;
  std::string fence;          // its channel / subject ("" until known)
  bool redis_fenced = false;  // the fence came through the Redis SUBSCRIBE link
  bool nats_fenced = false;   // ... through the NATS link
  std::string fence_ping;     // argument of the PING that follows the fence SUBSCRIBEs
  bool redis_confirmed = false;
  bool nats_confirmed = false;
  std::function<void(bool)> fence_done;  // old: PublishFence's callback
  int64_t fence_deadline_ms = 0;
  std::function<void()> subscribed_done;     // new: SubscribeForUpgrade's callback
  std::vector<std::string> upgrade_streams;  // new: subscriptions held for the handover

  // ---------------------------------------------------------------------------------------------
  // Start / stop

  cable::Result<bool, std::string> Init() {
    redis_broadcast = Has(cfg.broadcast_adapters, "redis");
    redisx = Has(cfg.broadcast_adapters, "redisx");
    nats_broadcast = Has(cfg.broadcast_adapters, "nats");
    pubsub = cfg.pubsub;
    // The internal channel must not collide with the legacy broadcast channel (anycable-go
    // renames).
    if ((pubsub == "redis" && internal_channel == cfg.redis_channel) ||
        (pubsub == "nats" && internal_channel == cfg.nats_channel)) {
      internal_channel += "-int";
    }
    bool need_redis = redis_broadcast || redisx || pubsub == "redis";
    bool need_nats = nats_broadcast || pubsub == "nats";
    if (need_redis) {
      auto parsed = redis::ParseUrl(cfg.redis_url, cfg.redis_sentinels);
      if (!parsed.ok()) return cable::MakeError(parsed.error());
      redis_options = parsed.value();
      redis_options.tls_verify = cfg.redis_tls_verify;
      redis_options.tls_ca_cert_path = cfg.redis_tls_ca_cert_path;
      redis_options.tls_client_cert_path = cfg.redis_tls_client_cert_path;
      redis_options.tls_client_key_path = cfg.redis_tls_client_key_path;
      // Only a single address (not Sentinel) needs asking whether it is a cluster node.
      cluster_known = redis_options.cluster_mode() || redis_options.sentinel_mode();
    }
    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epoll_fd < 0 || event_fd < 0) {
      return cable::MakeError(std::string("cluster: cannot create epoll/eventfd: ") +
                              std::strerror(errno));
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // nullptr = the eventfd
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, event_fd, &ev);

    char host[128] = {0};
    gethostname(host, sizeof host - 1);
    consumer_name =
        std::string(host) + "-" + std::to_string(getpid()) + "-" + std::to_string(rng() % 100000);
    if (redis_broadcast || pubsub == "redis") {
      sub.conn = redis::MakeClient(redis_options, this, "sub");
      // Before connecting: a cluster client then keeps its subscriptions on one node.
      sub.conn->SetSubscribeMode();
      slots.push_back(&sub);
    }
    // The command connection also serves the legacy broadcast channel: a live upgrade PUBLISHes
    // its fence on it (a subscribed connection cannot publish).
    if (redisx || pubsub == "redis" || redis_broadcast) {
      cmd.conn = redis::MakeClient(redis_options, this, "cmd");
      slots.push_back(&cmd);
    }
    if (redisx) {
      rx.conn = redis::MakeClient(redis_options, this, "redisx");
      slots.push_back(&rx);
    }
    if (need_nats) {
      auto opts = nats::ParseServers(cfg.nats_servers);
      if (!opts.ok()) return cable::MakeError(opts.error());
      opts->dont_randomize = cfg.nats_dont_randomize_servers;
      auto link = nats::Link::Start(opts.value(), this);
      if (!link.ok()) return cable::MakeError(link.error());
      nats_link = std::move(link.value());
      if (nats_broadcast) nats_link->Subscribe(cfg.nats_channel);
      if (pubsub == "nats") nats_link->Subscribe(internal_channel);
    }
    if (!slots.empty()) {
      LOG_INFO("redis: connecting to %s (%s%s%s)", redis_options.Describe().c_str(),
               redis_broadcast ? "broadcast channel " : "",
               redis_broadcast ? cfg.redis_channel.c_str() : "",
               redisx ? (" redisx stream " + cfg.redisx_stream).c_str() : "");
    }
    if (pubsub == "redis") LOG_INFO("pub/sub: redis (%s)", redis_options.Describe().c_str());
    if (pubsub == "nats") LOG_INFO("pub/sub: nats (%s)", cfg.nats_servers.c_str());
    has_redis_sub = sub.conn != nullptr;
    has_nats = nats_link != nullptr;
    thread = std::thread([this] { Run(); });
    return true;
  }

  void Push(Item* item) {
    if (inbox.Push(item)) eventfd_write(event_fd, 1);
  }

  // Stops the thread (once) and frees whatever is still queued; called again after the workers
  // are gone, it frees what they queued in the meantime. The eventfd stays open until the
  // destructor, so a late Push never writes to a reused descriptor.
  void Stop() {
    if (!stopped.exchange(true)) {
      Item* item = new Item();
      item->kind = Item::Kind::kStop;
      Push(item);
      if (thread.joinable()) thread.join();
      // libnats delivers on its own threads until Close returns; after that, nothing comes.
      if (nats_link) nats_link->Close();
    }
    for (Item* it = inbox.TakeAll(); it;) {
      Item* next = it->next;
      if (it->kind == Item::Kind::kPublish && it->ack) it->ack->OnClusterAck(it->token, false);
      delete it;
      it = next;
    }
    for (hub::Message* m : pending_delivery) m->Release();
    pending_delivery.clear();
  }

  ~Impl() override {
    Stop();
    if (event_fd >= 0) close(event_fd);
    if (epoll_fd >= 0) close(epoll_fd);
  }

  // ---------------------------------------------------------------------------------------------
  // The loop

  void Run() {
    int64_t now = MonoMs();
    for (RedisSlot* s : slots) s->reconnect_at_ms = now;  // connect on the first tick
    next_keepalive_ms = now + cfg.redis_keepalive_interval_s * 1000LL;
    next_autoclaim_ms = now + cfg.redisx_read_block_ms;
    bool running = true;
    epoll_event events[32];
    while (running) {
      Tick(MonoMs());
      SyncEpoll();
      int timeout = pending_delivery.empty() ? 100 : 1;
      int n = epoll_wait(epoll_fd, events, 32, timeout);
      for (int i = 0; i < n; ++i) {
        if (events[i].data.ptr == nullptr) {
          eventfd_t v;
          eventfd_read(event_fd, &v);
          continue;
        }
        RedisSlot* slot = static_cast<RedisSlot*>(events[i].data.ptr);
        if (slot->conn) slot->conn->OnEvents(events[i].events);
      }
      running = DrainInbox();
      if (switch_to_cluster) SwitchToCluster();
      FlushNats();
      FlushDeliveries();
      CheckFence();
    }
    for (RedisSlot* s : slots) {
      if (s->conn) s->conn->Close();  // pending callbacks fail: acks go out as failed
    }
  }

  void SyncEpoll(bool force = false) {
    for (RedisSlot* s : slots) {
      int fd = s->conn->fd();
      uint32_t ev = fd >= 0 ? s->conn->events() : 0;
      if (!force && fd == s->registered_fd && ev == s->registered_events) continue;
      if (s->registered_fd >= 0 && fd != s->registered_fd) {
        epoll_ctl(epoll_fd, EPOLL_CTL_DEL, s->registered_fd, nullptr);  // may already be gone
      }
      if (fd >= 0) {
        epoll_event e{};
        e.events = ev;
        e.data.ptr = s;
        // A socket closed and reopened under the same number left epoll on close: MOD then ADD.
        if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &e) != 0 && errno == ENOENT) {
          epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &e);
        }
      }
      s->registered_fd = fd;
      s->registered_events = ev;
    }
  }

  void Tick(int64_t now) {
    for (RedisSlot* s : slots) {
      s->conn->Tick(now);
      if (s->reconnect_at_ms != 0 && now >= s->reconnect_at_ms) {
        s->reconnect_at_ms = 0;
        s->conn->Connect();
      }
    }
    // Keepalive: a PING on every ready connection; one that stays silent for two intervals is
    // treated as lost (a broker that vanished without a FIN).
    const int64_t interval = cfg.redis_keepalive_interval_s * 1000LL;
    if (now >= next_keepalive_ms) {
      next_keepalive_ms = now + interval;
      for (RedisSlot* s : slots) {
        if (!s->ready || s == &rx) continue;  // rx answers every block interval anyway
        RedisSlot* slot = s;
        if (s == &sub) {
          s->conn->Command({"PING"});
        } else {
          s->conn->Command({"PING"},
                           [this, slot](redis::Reply&&) { slot->last_heard_ms = MonoMs(); });
        }
      }
    }
    for (RedisSlot* s : slots) {
      int64_t limit = s == &rx ? cfg.redisx_read_block_ms + interval : 2 * interval;
      if (s->ready && s->last_heard_ms != 0 && now - s->last_heard_ms > limit) {
        s->conn->Close();
        OnClosed(*s->conn, "no reply to keepalive");
      }
    }
    if (redisx && now >= next_autoclaim_ms) {
      next_autoclaim_ms = now + cfg.redisx_read_block_ms;
      AutoClaim();
    }
    if (redisx && !rx_reading) StartRedisxRead();
    if (++tick_count % 50 == 0) SyncEpoll(true);  // belt and braces for reused descriptors
  }
  uint64_t tick_count = 0;

  bool DrainInbox() {
    bool running = true;
    for (Item* it = inbox.TakeAll(); it;) {
      Item* next = it->next;
      switch (it->kind) {
        case Item::Kind::kPublish:
          PublishBatch(std::move(it->batch), [ack = it->ack, token = it->token](bool ok) {
            if (ack) ack->OnClusterAck(token, ok);
          });
          break;
        case Item::Kind::kStreamUp:
          if (stream_refs[it->a]++ == 0) SubscribeStream(it->a);
          break;
        case Item::Kind::kStreamDown: {
          auto found = stream_refs.find(it->a);
          if (found != stream_refs.end() && --found->second <= 0) {
            stream_refs.erase(found);
            UnsubscribeStream(it->a);
          }
          break;
        }
        case Item::Kind::kNatsMessage:
          counters().received_total.fetch_add(1, std::memory_order_relaxed);
          if (AdmitThroughFence(it->a, &nats_fenced)) DeliverLocally(it->b);
          break;
        case Item::Kind::kRun:
          it->run();
          break;
        case Item::Kind::kNatsState:
          if (it->flag != nats_up) {
            nats_up = it->flag;
            counters().nats_connected.store(nats_up ? 1 : 0, std::memory_order_relaxed);
            if (nats_up) {
              LOG_INFO("nats: link up: %s", it->b.c_str());
              if (subscribed_done) ConfirmUpgradeSubscriptions();
            } else {
              LOG_WARN("nats: link down: %s", it->b.c_str());
            }
          }
          break;
        case Item::Kind::kStop:
          running = false;
          break;
      }
      delete it;
      it = next;
    }
    return running;
  }

  // ---------------------------------------------------------------------------------------------
  // Delivery to this node's workers

  void DeliverLocally(const std::string& payload) {
    auto parsed = parser.Parse(payload);
    if (!parsed.ok()) {
      counters().invalid_total.fetch_add(1, std::memory_order_relaxed);
      LOG_WARN("cluster: ignoring a message that is not a publication (%s): %.200s",
               protocol::BroadcastErrorName(parsed.error()), payload.c_str());
      return;
    }
    const int workers = sink->workers();
    for (auto& item : parsed.value()) {
      if (auto* pub = std::get_if<protocol::Publication>(&item)) {
        if (remote_broker && pub->broadcast_type == "presence") {
          // A presence event (--broker redis|nats): published once by the node whose store
          // operation caused it, delivered as {"type":"presence",...} to the stream's subscribers.
          pending_delivery.push_back(
              hub::Message::NewPresence(pub->stream, encoder.MessageJson(pub->data), workers));
          continue;
        }
        hub::Message* m =
            hub::Message::NewPublication(pub->stream, encoder.MessageJson(pub->data),
                                         pub->exclude_socket, workers, pub->transient);
        // Stamped by the node that stored it (--broker redis): delivered with that position.
        // Only a remote broker's nodes trust a position in the payload (an app cannot forge one
        // through a legacy broadcaster otherwise).
        if (remote_broker && pub->offset != 0 && !pub->transient) {
          m->SetPosition(pub->epoch, pub->offset, 0, 0);
        }
        pending_delivery.push_back(m);
      } else if (auto* cmd = std::get_if<protocol::RemoteDisconnect>(&item)) {
        pending_delivery.push_back(
            hub::Message::NewRemoteDisconnect(cmd->identifier, cmd->reconnect, workers));
      }
    }
    FlushDeliveries();
  }

  void FlushDeliveries() {
    while (!pending_delivery.empty() && sink->TryDeliver(pending_delivery.front())) {
      pending_delivery.pop_front();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Pub/sub

  const std::string& ChannelOf(const Outgoing& o) const {
    return o.stream.empty() ? internal_channel : o.stream;
  }

  void PublishBatch(std::vector<Outgoing> batch, std::function<void(bool)> done) {
    const size_t n = batch.size();
    if (n == 0) {
      done(true);
      return;
    }
    if (pubsub == "nats") {
      bool ok = nats_link && nats_link->connected();
      for (const auto& o : batch) {
        if (ok && !nats_link->Publish(ChannelOf(o), o.payload)) ok = false;
      }
      if (!ok) {
        counters().publish_failed_total.fetch_add(n, std::memory_order_relaxed);
        LOG_DEBUG("nats: %zu publication(s) not sent: link down", n);
        done(false);
        return;
      }
      // Acknowledged after one flush for everything published in this round (FlushNats).
      nats_unflushed.push_back({n, std::move(done)});
      return;
    }
    if (pubsub != "redis" || !cmd.ready) {
      counters().publish_failed_total.fetch_add(n, std::memory_order_relaxed);
      LOG_DEBUG("redis: %zu publication(s) not sent: link down", n);
      done(false);
      return;
    }
    auto pending = std::make_shared<PendingBatch>();
    pending->remaining = n;
    pending->done = std::move(done);
    for (auto& o : batch) {
      const std::string& channel = ChannelOf(o);
      cmd.conn->Command({"PUBLISH", channel, std::move(o.payload)},
                        [this, pending](redis::Reply&& r) {
                          cmd.last_heard_ms = MonoMs();
                          if (r.is_error()) {
                            pending->ok = false;
                            counters().publish_failed_total.fetch_add(1, std::memory_order_relaxed);
                          } else {
                            counters().published_total.fetch_add(1, std::memory_order_relaxed);
                          }
                          if (--pending->remaining == 0) pending->done(pending->ok);
                        });
    }
  }

  // The server has everything published so far once a PING/PONG round trip completes: only then
  // are NATS publications acknowledged, so requests answered one after another stay in order
  // across nodes.
  void FlushNats() {
    if (nats_unflushed.empty()) return;
    const bool ok = nats_link && nats_link->Flush(2000);
    std::vector<std::pair<size_t, std::function<void(bool)>>> batches;
    batches.swap(nats_unflushed);
    for (auto& [n, done] : batches) {
      (ok ? counters().published_total : counters().publish_failed_total)
          .fetch_add(n, std::memory_order_relaxed);
      done(ok);
    }
  }

  void SubscribeStream(const std::string& stream) {
    counters().subscribed_streams.store(stream_refs.size(), std::memory_order_relaxed);
    if (pubsub == "redis") {
      if (sub.ready) sub.conn->Command({"SUBSCRIBE", stream});
      // Otherwise the (re)connect subscribes to everything in stream_refs.
    } else if (pubsub == "nats" && nats_link) {
      nats_link->Subscribe(stream);
    }
  }

  void UnsubscribeStream(const std::string& stream) {
    counters().subscribed_streams.store(stream_refs.size(), std::memory_order_relaxed);
    if (pubsub == "redis") {
      if (sub.ready) sub.conn->Command({"UNSUBSCRIBE", stream});
    } else if (pubsub == "nats" && nats_link) {
      nats_link->Unsubscribe(stream);
    }
  }

  void SubscribeAll() {
    std::vector<std::string> channels;
    if (redis_broadcast) channels.push_back(cfg.redis_channel);
    if (pubsub == "redis") {
      channels.push_back(internal_channel);
      for (const auto& [stream, refs] : stream_refs) channels.push_back(stream);
    }
    if (fence_mode != FenceMode::kOff && !fence.empty()) channels.push_back(fence);
    for (size_t i = 0; i < channels.size(); i += kSubscribeBatch) {
      std::vector<std::string> args{"SUBSCRIBE"};
      for (size_t j = i; j < channels.size() && j < i + kSubscribeBatch; ++j)
        args.push_back(channels[j]);
      sub.conn->Command(std::move(args));
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Live upgrade fence (cluster.h; design in upgrade/upgrade.h)

  // Which links exist: set by Init before the thread starts, read-only afterwards (any thread;
  // SwitchToCluster replaces the clients, not the links).
  bool has_redis_sub = false;
  bool has_nats = false;
  bool redis_link() const { return has_redis_sub; }
  bool nats_link_on() const { return has_nats; }

  // Whether a message that came through a link on `channel` is delivered here. The fence itself
  // never is; it marks the link's cut.
  bool AdmitThroughFence(const std::string& channel, bool* link_fenced) {
    if (channel.size() >= kFencePrefix.size() &&
        channel.compare(0, kFencePrefix.size(), kFencePrefix) == 0) {
      if (fence_mode != FenceMode::kOff && channel == fence) *link_fenced = true;
      return false;
    }
    const bool drop = (fence_mode == FenceMode::kDropAfter && *link_fenced) ||
                      (fence_mode == FenceMode::kDropUntil && !*link_fenced);
    if (drop) owner.fence_dropped_.fetch_add(1, std::memory_order_relaxed);
    return !drop;
  }

  // Old process.
  void StartFence(const std::string& name, int timeout_ms, std::function<void(bool)> done) {
    fence_mode = FenceMode::kDropAfter;
    fence = name;
    redis_fenced = !redis_link();
    nats_fenced = !nats_link_on();
    fence_done = std::move(done);
    fence_deadline_ms = MonoMs() + timeout_ms;
    if (redis_link()) {
      if (!sub.ready || !cmd.ready) return FinishFence(false, "the Redis link is down");
      // SUBSCRIBE, then a PING on the same connection: its answer says the subscription is in
      // effect, and only then is the fence PUBLISHed (on the command connection).
      fence_ping = fence + ".ping";
      sub.conn->Command({"SUBSCRIBE", fence});
      sub.conn->Command({"PING", fence_ping});
    }
    if (nats_link_on()) {
      if (!nats_up) return FinishFence(false, "the NATS link is down");
      // One connection: the server handles our SUB before our PUB.
      nats_link->Subscribe(fence);
      if (!nats_link->Publish(fence, "fence") || !nats_link->Flush(2000)) {
        return FinishFence(false, "cannot publish the fence on NATS");
      }
    }
  }

  void OnFencePong() {
    if (fence_mode == FenceMode::kDropAfter && fence_done) {
      if (!cmd.ready) return FinishFence(false, "the Redis link is down");
      cmd.conn->Command({"PUBLISH", fence, "fence"});
    } else if (fence_mode == FenceMode::kDropUntil) {
      redis_confirmed = true;
      MaybeSubscribed();
    }
  }

  // Old process: every link delivered its fence and everything before it reached the sink.
  void CheckFence() {
    if (fence_mode != FenceMode::kDropAfter || !fence_done) return;
    if (redis_fenced && nats_fenced && pending_delivery.empty()) {
      auto done = std::move(fence_done);
      fence_done = nullptr;
      done(true);
    } else if (MonoMs() >= fence_deadline_ms) {
      FinishFence(false, "the fence did not come back in time");
    }
  }

  void FinishFence(bool ok, const char* why) {
    if (!ok) {
      LOG_WARN(
          "upgrade: pub/sub fence not set (%s): pub/sub messages during the handover may be "
          "missed or repeated",
          why);
      EndFenceHere();
    }
    if (fence_done) {
      auto done = std::move(fence_done);
      fence_done = nullptr;
      done(ok);
    }
  }

  // New process.
  void SubscribeUpgrade(const std::string& name, std::vector<std::string> streams,
                        std::function<void()> done) {
    fence = name;
    subscribed_done = std::move(done);
    upgrade_streams = std::move(streams);
    for (const auto& stream : upgrade_streams) {
      if (stream_refs[stream]++ == 0) SubscribeStream(stream);
    }
    redis_confirmed = !redis_link();
    nats_confirmed = !nats_link_on();
    if (redis_link()) {
      fence_ping = fence + ".ping";
      if (sub.ready) {
        sub.conn->Command({"SUBSCRIBE", fence});
        sub.conn->Command({"PING", fence_ping});
      }  // else OnReady subscribes to everything and pings
    }
    if (nats_link_on()) {
      nats_link->Subscribe(fence);
      if (nats_up) ConfirmUpgradeSubscriptions();  // else when the link comes up
    }
    MaybeSubscribed();
  }

  void ConfirmUpgradeSubscriptions() {
    if (nats_link && nats_link->Flush(2000)) {
      nats_confirmed = true;
      MaybeSubscribed();
    }
  }

  void MaybeSubscribed() {
    if (subscribed_done && redis_confirmed && nats_confirmed) {
      auto done = std::move(subscribed_done);
      subscribed_done = nullptr;
      done();
    }
  }

  void EndFenceHere() {
    if (fence_mode == FenceMode::kOff) return;
    fence_mode = FenceMode::kOff;
    subscribed_done = nullptr;
    fence_ping.clear();
    if (!fence.empty()) {
      if (sub.conn && sub.ready) sub.conn->Command({"UNSUBSCRIBE", fence});
      if (nats_link) nats_link->Unsubscribe(fence);
    }
    fence.clear();
    redis_fenced = nats_fenced = false;
  }

  void ReleaseUpgradeStreamsHere() {
    for (const auto& stream : upgrade_streams) {
      auto found = stream_refs.find(stream);
      if (found != stream_refs.end() && --found->second <= 0) {
        stream_refs.erase(found);
        UnsubscribeStream(stream);
      }
    }
    upgrade_streams.clear();
  }

  void RunOnThread(std::function<void()> fn) {
    Item* item = new Item();
    item->kind = Item::Kind::kRun;
    item->run = std::move(fn);
    Push(item);
  }

  // ---------------------------------------------------------------------------------------------
  // Redis Streams (redisx)

  // The redisx connection is ready (and Redis known to be a cluster or not): make sure the group
  // exists and read.
  void StartRedisx() {
    CreateGroup();
    rx_reading = false;
    StartRedisxRead();
  }

  void StartRedisxRead() {
    if (!rx.ready || !cluster_known || rx_reading || MonoMs() < redisx_retry_at_ms) return;
    // Entries wait in Redis while pub/sub cannot take them: nothing is read just to be dropped.
    if (pubsub == "redis" && !cmd.ready) return;
    if (pubsub == "nats" && !nats_up) return;
    rx_reading = true;
    rx.conn->KeyCommand(
        cfg.redisx_stream,
        {"XREADGROUP", "GROUP", cfg.redisx_group, consumer_name, "COUNT",
         std::to_string(kRedisxCount), "BLOCK", std::to_string(cfg.redisx_read_block_ms), "STREAMS",
         cfg.redisx_stream, ">"},
        [this](redis::Reply&& r) {
          rx_reading = false;
          rx.last_heard_ms = MonoMs();
          if (r.is_error()) {
            // A failing read is not retried at once: a cluster that is down (CLUSTERDOWN) or a
            // node being failed over answers immediately, so an instant retry would spin.
            redisx_retry_at_ms = MonoMs() + kRedisxRetryMs;
            const bool repeated = r.str == redisx_last_error;
            redisx_last_error = r.str;
            if (r.str.rfind("NOGROUP", 0) == 0) {
              redisx_retry_at_ms = 0;
              CreateGroup();  // stream was deleted
            } else if (r.str.rfind("connection lost", 0) != 0 && !repeated) {
              // One line per distinct failure, not one per retry.
              LOG_WARN("redis: XREADGROUP failed: %s (retrying)", r.str.c_str());
            }
            return;
          }
          redisx_last_error.clear();
          // [[stream, [[id, [field, value, ...]], ...]]] or nil on timeout
          if (r.type == redis::Reply::Type::kArray) {
            for (auto& stream : r.elements) {
              if (stream.elements.size() == 2) ConsumeEntries(stream.elements[1]);
            }
          }
          StartRedisxRead();
        });
  }

  void CreateGroup() {
    rx.conn->KeyCommand(cfg.redisx_stream,
                        {"XGROUP", "CREATE", cfg.redisx_stream, cfg.redisx_group, "$", "MKSTREAM"},
                        [this](redis::Reply&& r) {
                          if (r.is_error() && r.str.rfind("BUSYGROUP", 0) != 0 &&
                              r.str.rfind("connection lost", 0) != 0) {
                            LOG_WARN("redis: XGROUP CREATE %s %s failed: %s",
                                     cfg.redisx_stream.c_str(), cfg.redisx_group.c_str(),
                                     r.str.c_str());
                          }
                        });
  }

  void AutoClaim() {
    if (!cmd.ready || !cluster_known || (pubsub == "nats" && !nats_up)) return;
    cmd.conn->KeyCommand(
        cfg.redisx_stream,
        {"XAUTOCLAIM", cfg.redisx_stream, cfg.redisx_group, consumer_name,
         std::to_string(cfg.redisx_read_block_ms), "0-0", "COUNT", std::to_string(kRedisxCount)},
        [this](redis::Reply&& r) {
          // [next-id, [[id, [field, value...]], ...], (7.0+) [deleted ids]]
          if (r.type == redis::Reply::Type::kArray && r.elements.size() >= 2) {
            ConsumeEntries(r.elements[1]);
          }
        });
  }

  void ConsumeEntries(const redis::Reply& entries) {
    for (const auto& entry : entries.elements) {
      if (entry.elements.size() != 2) continue;
      const std::string& id = entry.elements[0].str;
      const auto& fields = entry.elements[1].elements;
      std::string payload;
      bool found = false;
      for (size_t i = 0; i + 1 < fields.size(); i += 2) {
        if (fields[i].str == "payload") {
          payload = fields[i + 1].str;
          found = true;
        }
      }
      if (id.empty()) continue;  // a claimed entry that was deleted meanwhile
      counters().redisx_consumed_total.fetch_add(1, std::memory_order_relaxed);
      if (!found) {
        counters().invalid_total.fetch_add(1, std::memory_order_relaxed);
        LOG_WARN("redis: stream entry %s has no payload field; dropped", id.c_str());
        AckEntry(id);
        continue;
      }
      if (pubsub.empty()) {
        DeliverLocally(payload);
        AckEntry(id);
        continue;
      }
      auto parsed = parser.Parse(payload);
      if (!parsed.ok()) {
        counters().invalid_total.fetch_add(1, std::memory_order_relaxed);
        LOG_WARN("redis: stream entry %s is not a publication (%s); dropped", id.c_str(),
                 protocol::BroadcastErrorName(parsed.error()));
        AckEntry(id);
        continue;
      }
      std::vector<Outgoing> batch;
      for (auto& item : parsed.value()) {
        if (auto* pub = std::get_if<protocol::Publication>(&item)) {
          pub->offset = 0;  // positions come from a broker, never from the app
          pub->epoch.clear();
          batch.push_back({pub->stream, EncodePublication(*pub)});
        } else if (auto* c = std::get_if<protocol::RemoteDisconnect>(&item)) {
          batch.push_back({std::string(), EncodeRemoteDisconnect(*c)});
        }
      }
      // Acknowledge only once pub/sub took it; otherwise it stays pending and is claimed again.
      PublishBatch(std::move(batch), [this, id](bool ok) {
        if (ok) AckEntry(id);
      });
    }
  }

  void AckEntry(const std::string& id) {
    if (!cmd.ready) return;
    cmd.conn->KeyCommand(cfg.redisx_stream, {"XACK", cfg.redisx_stream, cfg.redisx_group, id});
    cmd.conn->KeyCommand(cfg.redisx_stream, {"XDEL", cfg.redisx_stream, id});
  }

  // ---------------------------------------------------------------------------------------------
  // redis::Client::Handler

  // The single --redis_url is a Redis Cluster node: every client is replaced by a cluster client
  // seeded with that address (outside any client callback: the old ones are destroyed here).
  // What was in flight fails (a publication is answered 501), as on a reconnect.
  void SwitchToCluster() {
    switch_to_cluster = false;
    redis_options.cluster = true;
    redis_options.cluster_seeds = {redis::Endpoint{redis_options.host, redis_options.port}};
    LOG_INFO("redis: %s:%d is a Redis Cluster node; using cluster mode", redis_options.host.c_str(),
             redis_options.port);
    const int64_t now = MonoMs();
    for (RedisSlot* s : slots) {
      if (s->registered_fd >= 0) epoll_ctl(epoll_fd, EPOLL_CTL_DEL, s->registered_fd, nullptr);
      s->registered_fd = -1;
      s->registered_events = 0;
      s->conn->Close();
      const std::string name = s->conn->name();
      s->conn = redis::MakeClient(redis_options, this, name);
      if (s == &sub) s->conn->SetSubscribeMode();
      s->ready = false;
      s->attempt = 0;
      s->last_heard_ms = 0;
      s->reconnect_at_ms = now;
    }
    rx_reading = false;
    redisx_retry_at_ms = 0;
    UpdateRedisLink("");
  }

  RedisSlot* SlotOf(redis::Client& c) {
    for (RedisSlot* s : slots) {
      if (s->conn.get() == &c) return s;
    }
    return nullptr;
  }

  void OnReady(redis::Client& c) override {
    RedisSlot* s = SlotOf(c);
    if (!s) return;
    s->ready = true;
    s->attempt = 0;
    s->last_heard_ms = MonoMs();
    if (s == &cmd && !cluster_known && !cluster_probe_sent) {
      // Is the one address a Redis Cluster node? (anycable-go's client detects it too.) A
      // standalone server answers "ERR This instance has cluster support disabled".
      cluster_probe_sent = true;
      cmd.conn->Command({"CLUSTER", "INFO"}, [this](redis::Reply&& r) {
        if (r.is_error() && r.str.rfind("connection lost", 0) == 0) {
          cluster_probe_sent = false;  // asked again on the next connect
          return;
        }
        cluster_known = true;
        if (!r.is_error()) {
          switch_to_cluster = true;
        } else if (rx.ready) {
          StartRedisx();  // it waited for the answer
        }
      });
    }
    if (s == &sub) {
      SubscribeAll();
      if (!fence_ping.empty()) sub.conn->Command({"PING", fence_ping});  // confirm them again
    } else if (s == &rx && cluster_known) {
      StartRedisx();
    }
    UpdateRedisLink("");
  }

  void OnPush(redis::Client& c, redis::Reply&& r) override {
    RedisSlot* s = SlotOf(c);
    if (s) s->last_heard_ms = MonoMs();
    if (r.type == redis::Reply::Type::kArray && r.elements.size() == 2 &&
        r.elements[0].str == "pong" && !fence_ping.empty() && r.elements[1].str == fence_ping) {
      OnFencePong();  // every SUBSCRIBE sent before it is in effect
      return;
    }
    if (r.type != redis::Reply::Type::kArray || r.elements.size() < 3) return;
    if (r.elements[0].str != "message") return;  // subscribe confirmations, pong
    counters().received_total.fetch_add(1, std::memory_order_relaxed);
    if (AdmitThroughFence(r.elements[1].str, &redis_fenced)) DeliverLocally(r.elements[2].str);
  }

  void OnClosed(redis::Client& c, const std::string& reason) override {
    RedisSlot* s = SlotOf(c);
    if (!s) return;
    s->ready = false;
    s->last_heard_ms = 0;
    if (s == &rx) rx_reading = false;
    // Backoff: 250 ms, 500 ms, 1 s, 2 s, then 2–5 s with jitter; forever.
    int64_t delay =
        s->attempt < 4 ? 250LL << s->attempt : 2000 + static_cast<int64_t>(rng() % 3000);
    ++s->attempt;
    s->reconnect_at_ms = MonoMs() + delay;
    LOG_DEBUG("redis %s: %s; reconnecting in %lld ms", c.name().c_str(), reason.c_str(),
              static_cast<long long>(delay));
    UpdateRedisLink(reason);
  }

  void UpdateRedisLink(const std::string& reason) {
    bool up = true;
    for (RedisSlot* s : slots) up = up && s->ready;
    counters().redis_connected.store(up ? 1 : 0, std::memory_order_relaxed);
    // Once per change; while partly connected at start, say nothing until up or a failure.
    if (up == redis_link_up && redis_link_reported) return;
    if (up) {
      LOG_INFO("redis: link up: %s", redis_options.Describe().c_str());
    } else if (!reason.empty()) {
      LOG_WARN("redis: link down: %s (reconnecting with backoff; this node keeps serving)",
               reason.c_str());
    } else {
      return;
    }
    redis_link_up = up;
    redis_link_reported = true;
  }

  // ---------------------------------------------------------------------------------------------
  // nats::Link::Handler (libnats threads: hand over and return)

  void OnNatsMessage(std::string subject, std::string payload) override {
    Item* item = new Item();
    item->kind = Item::Kind::kNatsMessage;
    item->a = std::move(subject);
    item->b = std::move(payload);
    Push(item);
  }

  void OnNatsState(bool connected, const std::string& detail) override {
    Item* item = new Item();
    item->kind = Item::Kind::kNatsState;
    item->flag = connected;
    item->b = detail;
    Push(item);
  }
};

cable::Result<std::unique_ptr<Cluster>, std::string> Cluster::Start(const config::Config& cfg,
                                                                    Sink* sink,
                                                                    bool drop_until_fence) {
  const auto& a = cfg.broadcast_adapters;
  bool needed = Has(a, "redis") || Has(a, "redisx") || Has(a, "nats") || !cfg.pubsub.empty();
  if (!needed) return std::unique_ptr<Cluster>();
  std::unique_ptr<Cluster> cluster(new Cluster());
  cluster->pubsub_ = !cfg.pubsub.empty();
  cluster->impl_ = std::make_unique<Impl>(*cluster, cfg, sink, drop_until_fence);
  auto r = cluster->impl_->Init();
  if (!r.ok()) return cable::MakeError(r.error());
  return cluster;
}

cable::Result<bool, std::string> Cluster::CheckConfig(const config::Config& cfg) {
  const auto& a = cfg.broadcast_adapters;
  if (Has(a, "redis") || Has(a, "redisx") || cfg.pubsub == "redis") {
    auto r = redis::ParseUrl(cfg.redis_url, cfg.redis_sentinels);
    if (!r.ok()) return cable::MakeError(r.error());
  }
  if (Has(a, "nats") || cfg.pubsub == "nats") {
    auto n = nats::ParseServers(cfg.nats_servers);
    if (!n.ok()) return cable::MakeError(n.error());
  }
  return true;
}

Cluster::~Cluster() { Stop(); }

void Cluster::Stop() {
  if (impl_) impl_->Stop();
}

void Cluster::Publish(std::vector<Outgoing> batch, AckSink* ack, uint64_t token) {
  if (impl_->stopped.load(std::memory_order_acquire)) {
    counters_.publish_failed_total.fetch_add(batch.size(), std::memory_order_relaxed);
    if (ack) ack->OnClusterAck(token, false);
    return;
  }
  Item* item = new Item();
  item->kind = Item::Kind::kPublish;
  item->batch = std::move(batch);
  item->ack = ack;
  item->token = token;
  impl_->Push(item);
}

void Cluster::StreamUp(const std::string& stream) {
  if (impl_->stopped.load(std::memory_order_acquire)) return;
  Item* item = new Item();
  item->kind = Item::Kind::kStreamUp;
  item->a = stream;
  impl_->Push(item);
}

void Cluster::StreamDown(const std::string& stream) {
  if (impl_->stopped.load(std::memory_order_acquire)) return;
  Item* item = new Item();
  item->kind = Item::Kind::kStreamDown;
  item->a = stream;
  impl_->Push(item);
}

}  // namespace cable::cluster

namespace cable::cluster {

bool Cluster::has_pubsub_links() const { return impl_->redis_link() || impl_->nats_link_on(); }

bool Cluster::pubsub_links_up() const {
  return (!impl_->redis_link() || counters_.redis_connected.load() == 1) &&
         (!impl_->nats_link_on() || counters_.nats_connected.load() == 1);
}

void Cluster::UpgradeStreams(std::function<void(std::vector<std::string>)> done) {
  Impl* impl = impl_.get();
  impl->RunOnThread([impl, done = std::move(done)] {
    std::vector<std::string> streams;
    streams.reserve(impl->stream_refs.size());
    for (const auto& [stream, refs] : impl->stream_refs) streams.push_back(stream);
    done(std::move(streams));
  });
}

void Cluster::PublishFence(const std::string& fence, int timeout_ms,
                           std::function<void(bool)> done) {
  Impl* impl = impl_.get();
  impl->RunOnThread([impl, fence, timeout_ms, done = std::move(done)]() mutable {
    impl->StartFence(fence, timeout_ms, std::move(done));
  });
}

void Cluster::SubscribeForUpgrade(const std::string& fence, std::vector<std::string> streams,
                                  std::function<void()> done) {
  Impl* impl = impl_.get();
  impl->RunOnThread([impl, fence, streams = std::move(streams), done = std::move(done)]() mutable {
    impl->SubscribeUpgrade(fence, std::move(streams), std::move(done));
  });
}

void Cluster::EndFence() {
  // Waits (bounded) until the cluster thread did it: what the links bring next is delivered.
  Impl* impl = impl_.get();
  auto ended = std::make_shared<std::promise<void>>();
  std::future<void> done = ended->get_future();
  impl->RunOnThread([impl, ended] {
    impl->EndFenceHere();
    ended->set_value();
  });
  done.wait_for(std::chrono::seconds(2));
}

void Cluster::ReleaseUpgradeStreams() {
  Impl* impl = impl_.get();
  impl->RunOnThread([impl] { impl->ReleaseUpgradeStreamsHere(); });
}

}  // namespace cable::cluster
