// server::Shared — the process-wide, read-mostly context every worker gets a reference to.
// Built by main() before any worker starts and immutable afterwards, except the atomics.
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "cluster/cluster.h"
#include "config/config.h"
#include "hub/broadcast_log.h"
#include "hub/broker.h"
#include "hub/presence.h"
#include "hub/remote_broker.h"
#include "ring/ring.h"
#include "rpc/client.h"
#include "tls/tls.h"

namespace cable::server {

class Worker;

// Live upgrade (src/upgrade/upgrade.h, worker_upgrade.cc, upgrade_ctl.cc). Always allocated.
struct UpgradeState {
  // Old process: connections ready to go, {socket, encoded ConnRecord}, pushed by workers and
  // sent by the controller (main thread), which `outbox_event` wakes.
  std::mutex outbox_mu;
  std::deque<std::pair<int, std::string>> outbox;
  int outbox_event = -1;
  // Old process: workers whose broadcast intake is closed (the barrier before the first move).
  std::atomic<int> intake_closed{0};
  // New process: publications accepted between kReady and kDone wait here, in arrival order
  // (Worker::PublishLocal and main's LogSink check `holding` first).
  std::atomic<bool> holding{false};
  std::mutex hold_mu;
  std::deque<hub::Message*> held;
};

struct Shared {
  config::Config cfg;
  ring::Features features;
  std::string version = "1.6.16-ringcable-0.1.0";
  std::unique_ptr<rpc::Client> rpc;
  std::unique_ptr<hub::BroadcastLog> log;
  // --broker memory: every publication enters the log through it (offsets, history) and it keeps
  // disconnected ext sessions; null without a broker. Declared after `log`: destroyed before it.
  std::unique_ptr<hub::MemoryBroker> broker;
  // --broker memory: presence records (hub/presence.h); null without a broker.
  std::unique_ptr<hub::PresenceStore> presence;
  // Redis / NATS broadcasting and pub/sub; null when no adapter needs it. Started before the
  // workers, stopped after them.
  std::unique_ptr<cluster::Cluster> cluster;
  // --ssl_cert/--ssl_key: TLS on the main listener; null = plain. Read-only once workers run
  // (declared before `workers`, so it outlives them).
  std::unique_ptr<tls::ServerContext> tls;
  std::vector<std::unique_ptr<Worker>> workers;
  // --broker redis: the broker thread and its store (hub/remote_broker.h); null otherwise (then
  // `broker` above may be the memory one). Declared after `workers`: its thread, which answers
  // workers, is gone before they are; main stops it before the cluster.
  std::unique_ptr<hub::RemoteBroker> remote_broker;
  // Broadcast endpoint placement (spec: main port when a key is configured, else 8090).
  bool broadcast_on_main_port = false;
  int broadcast_port = 8090;
  // REST API placement (--api_port): the main port (0 or equal), the broadcast port when equal to a
  // separate --http_broadcast_port, or a listener of its own.
  bool api_on_main_port = false;
  bool api_on_broadcast_port = false;
  int64_t ping_interval_ms = 3000;
  std::unique_ptr<UpgradeState> upgrade = std::make_unique<UpgradeState>();
};

// Holds `msg` when a live upgrade holds publications (true: taken); else the caller publishes.
inline bool HoldForUpgrade(Shared& shared, hub::Message* msg) {
  UpgradeState& u = *shared.upgrade;
  if (!u.holding.load(std::memory_order_acquire)) return false;
  std::lock_guard<std::mutex> lock(u.hold_mu);
  if (!u.holding.load(std::memory_order_relaxed)) return false;
  u.held.push_back(msg);
  return true;
}

}  // namespace cable::server
