// ringcable: process wiring. Parses configuration, probes io_uring, binds one listener per worker,
// starts the workers and the RPC client, then waits for SIGTERM/SIGINT and shuts down gracefully:
// workers send server_restart + close 1001 to every client and make the remaining Disconnect calls;
// the process exits 0 once they are done or --shutdown_timeout has passed.
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <thread>

#include "common/log.h"
#include "config/config.h"
#include "enats/enats.h"
#include "metrics/exporter.h"
#include "metrics/sd_notify.h"
#include "metrics/statsd.h"
#include "nats/broker_store.h"
#include "redis/store.h"
#include "server/upgrade_ctl.h"
#include "server/worker.h"

namespace cable::server {
namespace {

bool Resolve(const std::string& host, int port, sockaddr_storage* out, socklen_t* len,
             std::string* err) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port_str = std::to_string(port);
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port_str.c_str(), &hints, &res);
  if (rc != 0 || !res) {
    *err = "cannot resolve host \"" + host + "\": " + gai_strerror(rc);
    return false;
  }
  // Prefer IPv4 like Go's listener does for "localhost".
  addrinfo* pick = res;
  for (addrinfo* a = res; a; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  }
  std::memcpy(out, pick->ai_addr, pick->ai_addrlen);
  *len = pick->ai_addrlen;
  freeaddrinfo(res);
  return true;
}

// SO_REUSEPORT would let a second process share the port silently; a plain bind first tells us
// the port is really free.
bool PortFree(const sockaddr_storage& addr, socklen_t len, std::string* err) {
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = strerror(errno);
    return false;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  bool ok = bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) == 0;
  if (!ok) *err = strerror(errno);
  close(fd);
  return ok;
}

int PortOf(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(addr).sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6&>(addr).sin6_port);
}

// The cluster's way into the workers: the broadcast log, then a doorbell for sleeping workers.
class LogSink : public cluster::Sink {
 public:
  explicit LogSink(Shared& shared) : shared_(shared) {}
  bool TryDeliver(hub::Message* msg) override {
    if (HoldForUpgrade(shared_, msg)) return true;  // new process during a live upgrade
    if (shared_.broker) {
      // The broker stamps it and keeps it until the log has room (workers flush its backlog).
      shared_.broker->Publish(msg);
    } else if (!shared_.log->TryPublish(msg)) {
      return false;
    }
    for (auto& w : shared_.workers) w->WakeIfSleeping();
    return true;
  }
  int workers() const override { return static_cast<int>(shared_.workers.size()); }

 private:
  Shared& shared_;
};

// Stops the cluster thread before the sink and the workers it talks to go away, on every return.
struct ClusterStopper {
  Shared& shared;
  ~ClusterStopper() {
    if (shared.remote_broker) shared.remote_broker->Stop();  // it publishes through the cluster
    if (shared.cluster) shared.cluster->Stop();
  }
};

int Fail(const std::string& msg) {
  std::fprintf(stderr, "ringcable: %s\n", msg.c_str());
  return 1;
}

// The binary a live upgrade starts: the path this process was started from (a relative one made
// absolute now, since nothing changes the working directory later), else /proc/self/exe.
std::string UpgradeBinary(const char* argv0) {
  std::string a = argv0 ? argv0 : "";
  if (a.find('/') != std::string::npos) {
    if (a[0] == '/') return a;
    char cwd[4096];
    if (getcwd(cwd, sizeof(cwd))) return std::string(cwd) + "/" + a;
  }
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return a;
  std::string exe(buf, static_cast<size_t>(n));
  const std::string deleted = " (deleted)";
  if (exe.size() > deleted.size() && exe.ends_with(deleted))
    exe.resize(exe.size() - deleted.size());
  return exe;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> args_with_binary(argv, argv + argc);
  args_with_binary[0] = UpgradeBinary(argv[0]);
  auto parsed = config::Parse(args, config::EnvironFromProcess());
  if (!parsed.ok()) return Fail(parsed.error());
  if (parsed->action != config::Action::kRun) {
    std::fputs(parsed->text.c_str(), stdout);
    if (!parsed->text.empty() && parsed->text.back() != '\n') std::fputc('\n', stdout);
    return 0;
  }
  // Live upgrade: started by an old process that hands over its listeners and connections.
  int upgrade_ctl = TakeUpgradeSocket();
  Shared shared;
  shared.cfg = parsed->config;
  config::Config& cfg = shared.cfg;
  if (cfg.workers <= 0) cfg.workers = static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  log::SetLevel(cfg.log_level == "debug"   ? log::Level::kDebug
                : cfg.log_level == "warn"  ? log::Level::kWarn
                : cfg.log_level == "error" ? log::Level::kError
                                           : log::Level::kInfo);
  log::SetJsonFormat(cfg.log_format == "json");
  log::SetNodeId(cfg.node_id.c_str());
  shared.ping_interval_ms = static_cast<int64_t>(cfg.ping_interval_s) * 1000;
  auto tags = metrics::ParseTags(cfg.metrics_tags);
  if (!tags.ok()) return Fail(tags.error());
  auto statsd_format = metrics::ParseStatsdTagFormat(cfg.statsd_tags_format);
  if (!statsd_format.ok()) return Fail(statsd_format.error());
  if (!cfg.applied_presets.empty()) {
    std::string names;
    for (const auto& p : cfg.applied_presets) names += (names.empty() ? "" : ",") + p;
    LOG_INFO("config: presets loaded: %s", names.c_str());
  }
  if (auto brokers = cluster::Cluster::CheckConfig(cfg); !brokers.ok()) {
    return Fail(brokers.error());
  }
  // --broker redis: its store (not connected yet) is made here, so an unsupported URL is the one
  // line the user sees.
  std::unique_ptr<redis::Store> redis_store;
  std::string redis_store_at;
  if (cfg.broker == "redis") {
    auto opts = redis::ParseUrl(cfg.redis_url, cfg.redis_sentinels);
    if (!opts.ok()) return Fail(opts.error());
    auto store = redis::Store::Make(opts.value(),
                                    {cfg.history_limit, cfg.history_ttl_s, cfg.pubsub == "redis"});
    if (!store.ok()) return Fail(store.error());
    redis_store = std::move(store.value());
    redis_store_at = opts.value().Describe();
  }
  // --broker nats: the JetStream store (connects in the background; calls fail until it is up).
  std::unique_ptr<nats::JetStreamStore> nats_store;
  if (cfg.broker == "nats") {
    nats::JetStreamStore::Options no;
    no.servers = cfg.nats_servers;
    no.dont_randomize = cfg.nats_dont_randomize_servers;
    no.history_limit = cfg.history_limit;
    no.history_ttl_s = cfg.history_ttl_s;
    no.sessions_ttl_s = cfg.sessions_ttl_s;
    auto store = nats::JetStreamStore::Open(no);
    if (!store.ok()) return Fail("--broker nats: " + store.error());
    nats_store = std::move(store.value());
  }
  // --embed_nats: settings and the nats-server binary are checked before anything starts.
  std::optional<enats::Plan> enats_plan;
  if (cfg.embed_nats) {
    auto plan = enats::MakePlan(cfg);
    if (!plan.ok()) return Fail(plan.error());
    enats_plan = std::move(plan.value());
  }

  // TLS: a bad path or a key that does not match the certificate stops the start here.
  if (!cfg.ssl_cert.empty() || !cfg.ssl_key.empty()) {
    auto tls = tls::ServerContext::Load(cfg.ssl_cert, cfg.ssl_key);
    if (!tls.ok()) return Fail(tls.error());
    shared.tls = std::move(tls.value());
    shared.tls->set_compact(cfg.ssl_compact);
  }

  auto features = ring::ProbeFeatures();
  if (!features.ok()) return Fail(features.error());
  shared.features = features.value();

  // Block the shutdown signals (and SIGHUP: reload the TLS certificate) in every thread; main
  // collects them with sigwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGUSR2);  // live upgrade
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  ListenAddress main_listen;
  sockaddr_storage& main_addr = main_listen.addr;
  socklen_t& main_len = main_listen.len;
  std::string err;
  if (!Resolve(cfg.host, cfg.port, &main_addr, &main_len, &err)) return Fail(err);
  std::optional<InheritedListeners> inherited;
  if (upgrade_ctl >= 0) {
    auto l = ReceiveListeners(upgrade_ctl);
    if (!l.ok()) return Fail(l.error());
    inherited = std::move(l.value());
    // Held from now until the old process has handed every connection over (upgrade.h).
    shared.upgrade->holding.store(true);
  }
  if (!inherited && !PortFree(main_addr, main_len, &err)) {
    return Fail("cannot listen on " + cfg.host + ":" + std::to_string(cfg.port) + ": " + err);
  }
  // Broadcast endpoint: the main port when a key protects it, else its own port (8090 by default).
  bool want_http_broadcast = false;
  for (const auto& a : cfg.broadcast_adapters) want_http_broadcast |= a == "http";
  shared.broadcast_port = cfg.http_broadcast_port;
  if (shared.broadcast_port == 0)
    shared.broadcast_port = cfg.broadcast_key.empty() ? 8090 : cfg.port;
  shared.broadcast_on_main_port = want_http_broadcast && shared.broadcast_port == cfg.port;
  ListenAddress bcast_listen;
  bool separate_bcast = want_http_broadcast && !shared.broadcast_on_main_port;
  if (separate_bcast) {
    if (!Resolve(cfg.host, shared.broadcast_port, &bcast_listen.addr, &bcast_listen.len, &err))
      return Fail(err);
    if (!inherited && !PortFree(bcast_listen.addr, bcast_listen.len, &err)) {
      return Fail("cannot listen on " + cfg.host + ":" + std::to_string(shared.broadcast_port) +
                  " (HTTP broadcast): " + err);
    }
  }
  // REST API: the main port unless --api_port names another; a port equal to a separate HTTP
  // broadcast port shares that listener (as anycable-go shares one HTTP server per port).
  ListenAddress api_listen;
  bool separate_api = false;
  if (cfg.api_enabled) {
    if (cfg.api_port == 0 || cfg.api_port == cfg.port) {
      shared.api_on_main_port = true;
    } else if (separate_bcast && cfg.api_port == shared.broadcast_port) {
      shared.api_on_broadcast_port = true;
    } else {
      separate_api = true;
      if (!Resolve(cfg.host, cfg.api_port, &api_listen.addr, &api_listen.len, &err))
        return Fail(err);
      if (!inherited && !PortFree(api_listen.addr, api_listen.len, &err)) {
        return Fail("cannot listen on " + cfg.host + ":" + std::to_string(cfg.api_port) +
                    " (REST API): " + err);
      }
    }
  }

  rpc::Options ro;
  ro.host = cfg.rpc_host;
  ro.concurrency = cfg.rpc_concurrency;
  ro.request_timeout_ms = cfg.rpc_request_timeout_ms;
  ro.command_timeout_ms = cfg.rpc_command_timeout_ms;
  ro.enable_tls = cfg.rpc_enable_tls;
  ro.tls_verify = cfg.rpc_tls_verify;
  ro.tls_root_ca = cfg.rpc_tls_root_ca;
  ro.max_recv_size = cfg.rpc_max_call_recv_size;
  ro.max_send_size = cfg.rpc_max_call_send_size;
  ro.http_secret = cfg.http_rpc_secret;
  auto client = rpc::Client::Create(ro);
  if (!client.ok()) return Fail(client.error());
  shared.rpc = std::move(client.value());

  shared.log = std::make_unique<hub::BroadcastLog>(1u << 16, cfg.workers);
  if (cfg.broker == "memory") {
    shared.broker = std::make_unique<hub::MemoryBroker>(*shared.log, cfg.history_limit,
                                                        cfg.history_ttl_s, cfg.sessions_ttl_s);
    shared.presence = std::make_unique<hub::PresenceStore>(cfg.presence_ttl_s);
    LOG_INFO(
        "Using in-memory broker (epoch: %s, history limit: %d, history ttl: %ds, sessions "
        "ttl: %ds)",
        shared.broker->epoch().c_str(), cfg.history_limit, cfg.history_ttl_s, cfg.sessions_ttl_s);
  }
  for (int i = 0; i < cfg.workers; ++i) {
    shared.workers.push_back(std::make_unique<Worker>(shared, i));
  }
  if (redis_store) {
    // The broker thread: every store call runs there, never on a worker (hub/remote_broker.h).
    shared.remote_broker =
        std::make_unique<hub::RemoteBroker>(std::move(redis_store), "redis", cfg.sessions_ttl_s);
    LOG_INFO("Using redis broker at %s (history limit: %d, history ttl: %ds, sessions ttl: %ds)",
             redis_store_at.c_str(), cfg.history_limit, cfg.history_ttl_s, cfg.sessions_ttl_s);
  } else if (nats_store) {
    shared.remote_broker = std::make_unique<hub::RemoteBroker>(
        std::make_unique<nats::JetStreamBrokerStore>(std::move(nats_store)), "nats",
        cfg.sessions_ttl_s);
    LOG_INFO(
        "Using NATS JetStream broker at %s (history limit: %d, history ttl: %ds, sessions ttl: "
        "%ds)",
        cfg.nats_servers.c_str(), cfg.history_limit, cfg.history_ttl_s, cfg.sessions_ttl_s);
  }
  // The embedded NATS server runs before the node's NATS link connects to it; it outlives the
  // cluster thread on every return (declared before the ClusterStopper).
  std::unique_ptr<enats::Server> embedded_nats;
  if (enats_plan) {
    auto server = enats::Server::Start(*enats_plan);
    if (!server.ok()) return Fail(server.error());
    embedded_nats = std::move(server.value());
  }
  // Messages from Redis / NATS enter the same broadcast log as HTTP publications.
  LogSink cluster_sink(shared);
  // A live upgrade's new process drops pub/sub messages until the old one's fence (upgrade.h).
  auto cluster = cluster::Cluster::Start(cfg, &cluster_sink, inherited && inherited->pubsub_fence);
  if (!cluster.ok()) return Fail(cluster.error());
  shared.cluster = std::move(cluster.value());
  ClusterStopper cluster_stopper{shared};
  if (shared.remote_broker) {
    // Cluster-wide presence: the broker thread publishes the store's join/leave events through
    // pub/sub (transient, broadcast_type "presence"); every node delivers each once.
    cluster::Cluster* pubsub = shared.cluster.get();
    shared.remote_broker->EnablePresence(
        cfg.presence_ttl_s, [pubsub](std::vector<hub::PresenceEvent> events) {
          std::vector<cluster::Outgoing> batch;
          for (const auto& e : events) {
            protocol::Publication pub;
            pub.stream = e.stream;
            pub.data = protocol::EncodePresenceEvent(e.type, e.id, e.info_json);
            pub.transient = true;
            pub.broadcast_type = "presence";
            batch.push_back({e.stream, cluster::EncodePublication(pub)});
          }
          pubsub->Publish(std::move(batch), nullptr, 0);
        });
  }
  std::unique_ptr<metrics::HttpServer> metrics_server;
  const int inherited_metrics_fd = inherited ? inherited->metrics_fd : -1;
  if (!cfg.metrics_http.empty() && cfg.metrics_port != 0 && cfg.metrics_port != cfg.port) {
    // Live upgrade: the old process's listener (it serves on it too until it exits).
    auto ms = inherited_metrics_fd >= 0
                  ? metrics::HttpServer::Adopt(inherited_metrics_fd, cfg.metrics_http,
                                               [&shared] { return RenderMetrics(shared); })
                  : metrics::HttpServer::Start(
                        cfg.metrics_host.empty() ? cfg.host : cfg.metrics_host, cfg.metrics_port,
                        cfg.metrics_http, [&shared] { return RenderMetrics(shared); });
    if (!ms.ok()) return Fail(ms.error());
    metrics_server = std::move(ms.value());
  } else if (inherited_metrics_fd >= 0) {
    close(inherited_metrics_fd);  // no separate metrics port here
  }
  std::unique_ptr<metrics::StatsdReporter> statsd;
  if (!cfg.statsd_host.empty()) {
    metrics::StatsdOptions so;
    so.prefix = cfg.statsd_prefix;
    so.format = statsd_format.value();
    so.tags = tags.value();
    so.max_packet_size = static_cast<size_t>(cfg.statsd_max_packet_size);
    auto sr = metrics::StatsdReporter::Start(cfg.statsd_host, cfg.metrics_rotate_interval_s, so,
                                             [&shared] { return SampleMetrics(shared); });
    if (!sr.ok()) return Fail(sr.error());
    statsd = std::move(sr.value());
    LOG_INFO("StatsD metrics to %s every %ds (prefix=%s, tags format=%s, max packet %d bytes)",
             cfg.statsd_host.c_str(), cfg.metrics_rotate_interval_s, cfg.statsd_prefix.c_str(),
             cfg.statsd_tags_format.c_str(), cfg.statsd_max_packet_size);
  }
  if (inherited) {
    // Worker i takes the old worker i's listeners; extra workers bind their own (SO_REUSEPORT
    // joins the same group); listeners of old workers beyond ours are closed.
    for (size_t i = 0; i < shared.workers.size(); ++i) {
      int m = i < inherited->main_fds.size() ? inherited->main_fds[i] : -1;
      int b = separate_bcast && i < inherited->bcast_fds.size() ? inherited->bcast_fds[i] : -1;
      int a = separate_api && i < inherited->api_fds.size() ? inherited->api_fds[i] : -1;
      shared.workers[i]->InheritListeners(m, b, a);
    }
    for (size_t i = shared.workers.size(); i < inherited->main_fds.size(); ++i) {
      close(inherited->main_fds[i]);
    }
    for (size_t i = separate_bcast ? shared.workers.size() : 0; i < inherited->bcast_fds.size();
         ++i) {
      close(inherited->bcast_fds[i]);
    }
    for (size_t i = separate_api ? shared.workers.size() : 0; i < inherited->api_fds.size(); ++i) {
      close(inherited->api_fds[i]);
    }
  }
  for (auto& w : shared.workers) {
    auto r = w->Init(main_listen, separate_bcast ? &bcast_listen : nullptr,
                     separate_api ? &api_listen : nullptr);
    if (!r.ok()) return Fail(r.error());
  }
  for (auto& w : shared.workers) {
    auto r = w->Start();
    if (!r.ok()) return Fail("cannot set up io_uring: " + r.error());
  }

  LOG_INFO("ringcable %s: listening on %s:%d%s (%d workers; rpc %s)%s%s", "0.1.0", cfg.host.c_str(),
           PortOf(main_addr), cfg.paths.empty() ? "" : cfg.paths[0].c_str(), cfg.workers,
           cfg.rpc_host.c_str(), shared.tls ? " with TLS" : "",
           cfg.enable_ws_compression ? " (permessage-deflate enabled)" : "");
  if (want_http_broadcast) {
    LOG_INFO("HTTP broadcasting at %s:%d%s%s", cfg.host.c_str(), shared.broadcast_port,
             cfg.http_broadcast_path.c_str(),
             cfg.broadcast_key.empty() ? " (no authorization)" : "");
  }
  if (cfg.api_enabled) {
    const int api_port = shared.api_on_main_port ? PortOf(main_addr) : cfg.api_port;
    LOG_INFO("REST API at %s:%d%s/%s", cfg.host.c_str(), api_port, cfg.api_path.c_str(),
             cfg.api_secret.empty() ? " (no authorization)" : "");
  }
  LOG_DEBUG("io_uring: %s", shared.features.Describe().c_str());
  if (!cfg.metrics_http.empty()) {
    LOG_INFO("Prometheus metrics at %s:%d%s",
             metrics_server ? (cfg.metrics_host.empty() ? cfg.host : cfg.metrics_host).c_str()
                            : cfg.host.c_str(),
             metrics_server ? metrics_server->port() : PortOf(main_addr), cfg.metrics_http.c_str());
  }
  std::unique_ptr<metrics::LogReporter> metrics_log;
  if (cfg.metrics_log) {
    std::string only;
    for (const auto& name : cfg.metrics_log_filter) only += (only.empty() ? "" : ",") + name;
    if (!only.empty()) only = " (only " + only + ")";
    LOG_INFO("Log metrics every %ds%s", cfg.metrics_rotate_interval_s, only.c_str());
    metrics_log = std::make_unique<metrics::LogReporter>(
        cfg.metrics_rotate_interval_s, cfg.metrics_log_filter,
        [&shared] { return SampleMetrics(shared); });
  }
  if (upgrade_ctl >= 0) {
    // Live upgrade: take the old process's connections (this also tells systemd, MAINPID=).
    AdoptFromOldProcess(shared, upgrade_ctl);
  } else {
    // Every worker's listener is bound and its ring is running: tell systemd (Type=notify).
    metrics::SdNotify("READY=1\nSTATUS=Listening on " + cfg.host + ":" +
                      std::to_string(PortOf(main_addr)));
  }

  int sig = 0;
  bool upgraded = false;
  while (sigwait(&signals, &sig) == 0 && (sig == SIGHUP || sig == SIGUSR2)) {
    if (sig == SIGUSR2) {
      if (embedded_nats) {
        // The new process would start its own nats-server on the same ports while this one's
        // still holds them (and the node's links, JetStream and routes run through it): refuse
        // rather than half-upgrade. A plain restart is the way to deploy in this mode.
        LOG_ERROR(
            "received SIGUSR2: live upgrade refused: --embed_nats runs a nats-server that "
            "cannot be handed over; keeping every connection (restart to deploy)");
        continue;
      }
      LOG_INFO("received SIGUSR2: live upgrade to %s", args_with_binary[0].c_str());
      if (RunUpgrade(shared, args_with_binary, metrics_server ? metrics_server->listen_fd() : -1)) {
        upgraded = true;
        break;
      }
      continue;
    }
    if (!shared.tls) {
      LOG_INFO("received SIGHUP: nothing to reload (no --ssl_cert)");
      continue;
    }
    auto failed = shared.tls->Reload(cfg.ssl_cert, cfg.ssl_key);
    if (failed) {
      LOG_ERROR("received SIGHUP: keeping the current TLS certificate: %s", failed->c_str());
    } else {
      LOG_INFO("received SIGHUP: reloaded the TLS certificate %s and key %s (new connections)",
               cfg.ssl_cert.c_str(), cfg.ssl_key.c_str());
    }
  }
  if (upgraded) {
    // Every worker handed its connections over and stopped; nothing is left to close.
    for (auto& w : shared.workers) w->Join();
    if (shared.cluster) shared.cluster->Stop();
    if (embedded_nats) embedded_nats->Stop();
    shared.log->ReleaseUnconsumed();
    if (metrics_log) metrics_log->Stop();
    if (statsd) statsd->Stop();
    if (metrics_server) metrics_server->Stop();
    shared.rpc->Shutdown(std::chrono::milliseconds(1000));
    LOG_INFO("upgrade: the old process exits");
    return 0;
  }
  LOG_INFO("received %s, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  metrics::SdNotify("STOPPING=1\nSTATUS=Shutting down");
  if (cfg.shutdown_delay_s > 0)
    std::this_thread::sleep_for(std::chrono::seconds(cfg.shutdown_delay_s));
  // Nothing new from Redis/NATS while clients are being let go (broadcasts now answer 501).
  if (shared.cluster) shared.cluster->Stop();
  for (auto& w : shared.workers) w->RequestShutdown();

  // A second signal means "now".
  sigset_t stop_signals = signals;
  sigdelset(&stop_signals, SIGHUP);  // a reload request during shutdown is not "now"
  std::thread second([stop_signals]() mutable {
    int s2 = 0;
    sigwait(&stop_signals, &s2);
    std::fprintf(stderr, "ringcable: second signal, exiting immediately\n");
    std::_Exit(1);
  });
  second.detach();

  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(cfg.shutdown_timeout_s);
  bool all_done = false;
  while (std::chrono::steady_clock::now() < deadline) {
    all_done = true;
    for (auto& w : shared.workers) all_done &= w->finished();
    if (all_done) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!all_done) {
    LOG_WARN("shutdown timeout (%ds) reached; exiting with work left", cfg.shutdown_timeout_s);
    if (embedded_nats) embedded_nats->Stop(1000);
    std::fflush(stderr);
    std::_Exit(0);
  }
  for (auto& w : shared.workers) w->Join();
  if (shared.remote_broker) shared.remote_broker->Stop();
  if (shared.cluster) shared.cluster->Stop();  // frees what the workers queued meanwhile
  if (embedded_nats) embedded_nats->Stop();    // after the node's NATS link is closed
  shared.log->ReleaseUnconsumed();
  if (metrics_log) metrics_log->Stop();
  if (statsd) statsd->Stop();
  if (metrics_server) metrics_server->Stop();
  shared.rpc->Shutdown(std::chrono::milliseconds(1000));
  LOG_INFO("shutdown complete");
  return 0;
}

}  // namespace
}  // namespace cable::server

int main(int argc, char** argv) { return cable::server::Main(argc, argv); }
