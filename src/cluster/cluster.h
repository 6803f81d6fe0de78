// cluster — Redis and NATS broadcasting and node-to-node pub/sub, on one dedicated thread.
//
// What it does (spec §1 "Broadcasting: Redis Pub/Sub / Redis Streams / NATS", "Pub/Sub"):
//   - broadcast adapters `redis` (SUBSCRIBE --redis_channel) and `nats` (subject --nats_channel):
//     every node receives every publication and delivers it to its own subscribers;
//   - `redisx`: a Redis Streams consumer group; exactly one node consumes each entry and spreads it
//     through pub/sub (XACK + XDEL only after pub/sub took it, so a failure leaves it pending for
//     XAUTOCLAIM instead of losing it);
//   - pub/sub `redis` / `nats`: a publication accepted by this node (HTTP, redisx) is published on
//     the stream's channel/subject; each node subscribes only to the streams it has subscribers for
//     (workers report first/last subscriber) plus the internal channel for remote commands, and
//     delivers what arrives. A node receives its own publications that way, so every node delivers
//     each publication exactly once.
//
// Redis may be one server, a Sentinel-managed master or a Redis Cluster (redis::MakeClient picks
// the client; see redis/cluster_client.h for routing, MOVED/ASK and the subscribe connection).
//
// Threads and ownership: one cluster thread owns the Redis clients (redis::Client on an epoll
// loop), the subscription counts and the pending deliveries. libnats runs its own threads;
// their callbacks only push to the cluster's inbox. Workers talk to the cluster only through
// Publish/StreamUp/StreamDown (lock-free inbox + eventfd); the cluster answers a Publish through
// AckSink (called on the cluster thread) and hands received messages to the Sink (the server's
// broadcast log). No ring thread ever waits for Redis or NATS.
//
// Faults: the node keeps serving when a broker goes away. Each link logs once when it goes down
// and once when it is back, reconnects with backoff forever (anycable-go exits after 5 attempts),
// and resubscribes everything. Publications that cannot be handed to the broker are counted as
// failed and acknowledged as failed (HTTP 501), never claimed delivered.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "config/config.h"
#include "hub/message.h"
#include "protocol/broadcast.h"

namespace cable::cluster {

struct Counters {
  std::atomic<uint64_t> received_total{0};         // messages that came from Redis / NATS
  std::atomic<uint64_t> published_total{0};        // publications the pub/sub broker accepted
  std::atomic<uint64_t> publish_failed_total{0};   // publications the broker could not take
  std::atomic<uint64_t> redisx_consumed_total{0};  // stream entries this node consumed
  std::atomic<uint64_t> invalid_total{0};          // received payloads that were not publications
  std::atomic<int64_t> redis_connected{0};         // 1 while every Redis connection is ready
  std::atomic<int64_t> nats_connected{0};
  std::atomic<uint64_t> subscribed_streams{0};  // streams the node is subscribed to (pub/sub)
};

// Where received messages go (the server's broadcast log). Cluster thread only.
class Sink {
 public:
  virtual ~Sink() = default;
  // False when the log is full: the cluster keeps the message and retries, in order.
  virtual bool TryDeliver(hub::Message* msg) = 0;
  virtual int workers() const = 0;
};

// Told whether a Publish reached the broker. Called on the cluster thread.
class AckSink {
 public:
  virtual ~AckSink() = default;
  virtual void OnClusterAck(uint64_t token, bool ok) = 0;
};

// One item for pub/sub: a publication of `stream`, or (stream empty) a remote command. `payload` is
// the JSON anycable-go carries: EncodePublication / EncodeRemoteDisconnect.
struct Outgoing {
  std::string stream;
  std::string payload;
};

std::string EncodePublication(const protocol::Publication& pub);
std::string EncodeRemoteDisconnect(const protocol::RemoteDisconnect& cmd);

class Cluster {
 public:
  // Nothing to do (no redis/redisx/nats adapter, no pub/sub) → nullptr value. Errors are bad
  // URLs / server lists, one line. Brokers being down is not an error.
  // `drop_until_fence`: the new process of a live upgrade whose old process announced a fence.
  static cable::Result<std::unique_ptr<Cluster>, std::string> Start(const config::Config& cfg,
                                                                    Sink* sink,
                                                                    bool drop_until_fence = false);
  // The same checks as Start (broker URLs, server lists) without starting anything: main runs it
  // before anything else logs, so a bad value is the one line the user sees.
  static cable::Result<bool, std::string> CheckConfig(const config::Config& cfg);
  ~Cluster();

  // True when publications accepted by this node travel through pub/sub (not delivered directly).
  bool pubsub() const { return pubsub_; }
  // Any thread. Publishes the batch in order; `ack` (may be null) hears once for the whole batch.
  void Publish(std::vector<Outgoing> batch, AckSink* ack, uint64_t token);
  // Any thread (workers, in their own order): a worker's first subscriber of `stream` appeared /
  // its last one left. The node is subscribed while any worker has the stream.
  void StreamUp(const std::string& stream);
  void StreamDown(const std::string& stream);
  // Stops the thread and closes every connection. Idempotent.
  void Stop();

  // ---- Live upgrade: the pub/sub fence (design: src/upgrade/upgrade.h, "Pub/sub fence") ----
  // Any thread; callbacks run on the cluster thread. A fence is a channel / subject named
  // `__ringcable_upgrade__.<pid>.<random>` that both processes subscribe to on each link (Redis
  // SUBSCRIBE connection, NATS connection); the old one publishes one message on it, and where it
  // falls in each link's message order is the cut: the old process delivers what came before, the
  // new one what came after.
  //
  // True when this node receives through a pub/sub link (so an upgrade needs a fence).
  bool has_pubsub_links() const;
  // True when every pub/sub link is connected (a fence on a link that is down cannot be set).
  bool pubsub_links_up() const;
  // Old process: the streams this node is subscribed to.
  void UpgradeStreams(std::function<void(std::vector<std::string>)> done);
  // Old process: publishes the fence on every link; from the fence on, a link's messages are
  // dropped here (the new process delivers them). done(true) once every link delivered the fence
  // and everything before it went to the sink; done(false) when a link is down or `timeout_ms`
  // passed (then nothing is dropped: the fence is ended).
  void PublishFence(const std::string& fence, int timeout_ms, std::function<void(bool)> done);
  // New process (Start with `drop_until_fence`): subscribes to `fence` and `streams` (held until
  // ReleaseUpgradeStreams) and calls done() once every link confirmed the subscriptions (a Redis
  // PING answered after them, a NATS flush). Until its fence arrives, a link's messages are
  // dropped (the old process delivers them).
  void SubscribeForUpgrade(const std::string& fence, std::vector<std::string> streams,
                           std::function<void()> done);
  // Either process: deliver everything again (old: an aborted upgrade; new: the handover ended or
  // the old process gave up the fence) and unsubscribe from the fence. Returns once the cluster
  // thread did it (at most 2 s).
  void EndFence();
  // New process, after the handover: drops the subscriptions SubscribeForUpgrade made (adopted
  // subscribers hold their own by then).
  void ReleaseUpgradeStreams();
  // Messages dropped by a fence (old: after it; new: before it), for tests and the log.
  uint64_t fence_dropped() const { return fence_dropped_.load(std::memory_order_relaxed); }

  const Counters& counters() const { return counters_; }

  struct Impl;

 private:
  Cluster() = default;
  bool pubsub_ = false;
  Counters counters_;
  std::atomic<uint64_t> fence_dropped_{0};
  std::unique_ptr<Impl> impl_;
};

}  // namespace cable::cluster
