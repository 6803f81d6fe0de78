// server::Shared — the process-wide, read-mostly context every worker gets a reference to.
// Built by main() before any worker starts and immutable afterwards, except the atomics.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "cluster/cluster.h"
#include "config/config.h"
#include "hub/broadcast_log.h"
#include "hub/broker.h"
#include "hub/presence.h"
#include "ring/ring.h"
#include "rpc/client.h"
#include "tls/tls.h"

namespace cable::server {

class Worker;

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
  // Broadcast endpoint placement (spec: main port when a key is configured, else 8090).
  bool broadcast_on_main_port = false;
  int broadcast_port = 8090;
  // REST API placement (--api_port): the main port (0 or equal), the broadcast port when equal to a
  // separate --http_broadcast_port, or a listener of its own.
  bool api_on_main_port = false;
  bool api_on_broadcast_port = false;
  int64_t ping_interval_ms = 3000;
};

}  // namespace cable::server
