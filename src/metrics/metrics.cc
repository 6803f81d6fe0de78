#include "metrics/metrics.h"

#include <algorithm>
#include <cctype>
#include <map>

namespace cable::metrics {
namespace {

enum class Type { kCounter, kGauge };

// A global series: summed over workers (or taken from the RPC sample).
struct Def {
  std::string_view name;
  Type type;
  std::string_view help;
  int64_t (*get)(const Snapshot&);
};

template <typename F>
int64_t SumWorkers(const Snapshot& s, F f) {
  int64_t total = 0;
  for (const auto& w : s.workers) total += static_cast<int64_t>(f(w));
  return total;
}

#define SUM(field) \
  [](const Snapshot& s) { return SumWorkers(s, [](const WorkerSample& w) { return w.field; }); }
#define RPC(field) [](const Snapshot& s) { return static_cast<int64_t>(s.rpc.field); }

// Sorted by name within each type; counters first, then gauges (as anycable-go renders them).
const std::vector<Def>& Defs() {
  static const std::vector<Def> kDefs = {
      // Every publication accepted by any worker reaches every worker through the BroadcastLog, so
      // the node-level count (anycable-go counts each message the node handles) is the sum of
      // the ingress counts, not of per-worker deliveries.
      {"broadcast_msg_total", Type::kCounter,
       "The total number of messages received through PubSub (for broadcast)",
       SUM(publications_total)},
      {"client_msg_total", Type::kCounter, "The total number of received messages from clients",
       SUM(client_msg_total)},
      {"data_rcvd_total", Type::kCounter, "The total amount of bytes received from clients",
       SUM(data_rcvd_total)},
      {"data_sent_total", Type::kCounter, "The total amount of bytes sent to clients",
       SUM(data_sent_total)},
      {"disconnected_slow_clients_total", Type::kCounter,
       "The total number of slow clients disconnected", SUM(disconnected_slow_clients_total)},
      {"failed_auths_total", Type::kCounter, "The total number of failed authentication attempts",
       SUM(failed_auths_total)},
      {"failed_broadcast_msg_total", Type::kCounter,
       "The total number of unrecognized messages received through PubSub",
       SUM(failed_broadcast_msg_total)},
      {"failed_client_msg_total", Type::kCounter,
       "The total number of unrecognized messages received from clients",
       SUM(failed_client_msg_total)},
      {"publications_total", Type::kCounter,
       "The total number of publications accepted by the broadcaster", SUM(publications_total)},
      {"remote_commands_total", Type::kCounter, "The total number of remote commands received",
       SUM(remote_commands_total)},
      {"long_poll_stale_requests_total", Type::kCounter,
       "The total number of poll requests for expired or unknown poll sessions",
       SUM(long_poll_stale_requests_total)},
      {"rpc_call_total", Type::kCounter, "The total number of RPC calls", RPC(calls)},
      {"rpc_canceled_total", Type::kCounter, "The total number of canceled RPC calls",
       RPC(canceled)},
      {"rpc_error_total", Type::kCounter, "The total number of failed RPC calls", RPC(errors)},
      {"rpc_retries_total", Type::kCounter, "The total number of RPC call retries", RPC(retries)},
      {"rpc_timeout_total", Type::kCounter, "The total number of RPC calls that timed out",
       RPC(timeouts)},
      {"broadcast_streams_num", Type::kGauge, "The number of active broadcasting streams",
       SUM(streams_num)},
      // Uniqueness by connection identifiers is not tracked; equals clients_num.
      {"clients_num", Type::kGauge, "The number of active clients", SUM(clients_num)},
      {"clients_uniq_num", Type::kGauge,
       "The number of unique clients (with respect to connection identifiers)", SUM(clients_num)},
      {"disconnect_queue_size", Type::kGauge, "The size of delayed disconnect",
       SUM(disconnect_queue_size)},
      {"sse_clients_num", Type::kGauge, "The number of active SSE clients", SUM(sse_clients_num)},
      {"long_poll_clients_num", Type::kGauge, "The number of active long polling clients",
       SUM(long_poll_clients_num)},
      {"rpc_pending_num", Type::kGauge, "The number of pending RPC calls", RPC(pending)},
  };
  return kDefs;
}

// ringcable's own, one series per worker.
struct WorkerDef {
  std::string_view name;
  Type type;
  std::string_view help;
  int64_t (*get)(const WorkerSample&);
};

#define W(field) [](const WorkerSample& w) { return static_cast<int64_t>(w.field); }

const std::vector<WorkerDef>& WorkerDefs() {
  static const std::vector<WorkerDef> kDefs = {
      {"ringcable_worker_api_failed_requests_total", Type::kCounter,
       "REST API requests answered with an error status (401, 404, 422, 501, ...)",
       W(api_failed_requests_total)},
      {"ringcable_worker_api_requests_total", Type::kCounter,
       "REST API requests (publish, presence) answered by the worker", W(api_requests_total)},
      {"ringcable_worker_broadcast_msg_total", Type::kCounter,
       "Publications that had at least one subscriber on the worker", W(broadcast_msg_total)},
      {"ringcable_worker_broker_gap_repairs_total", Type::kCounter,
       "Live publications that arrived ahead of a missing offset (--broker redis): the missing "
       "ones were read back from the broker",
       W(broker_gap_repairs_total)},
      {"ringcable_worker_disconnect_dropped_total", Type::kCounter,
       "Disconnect calls dropped because the worker's backlog was full",
       W(disconnect_dropped_total)},
      {"ringcable_worker_no_pong_total", Type::kCounter,
       "Extended-protocol clients disconnected for not answering a ping within --pong_timeout",
       W(no_pong_total)},
      {"ringcable_worker_io_uring_submissions_total", Type::kCounter,
       "io_uring_submit calls made by the worker", W(submissions_total)},
      {"ringcable_worker_tls_errors_total", Type::kCounter,
       "TLS connections closed because their handshake or a record failed (not TLS, bad "
       "ClientHello, truncated handshake)",
       W(tls_errors_total)},
      {"ringcable_worker_tls_compact_sessions_total", Type::kCounter,
       "TLS 1.3 connections moved off OpenSSL onto ringcable's compact record layer once "
       "established and quiet (--ssl_compact)",
       W(tls_compact_total)},
      {"ringcable_worker_wakeups_total", Type::kCounter,
       "Times another thread rang the sleeping worker's doorbell (RPC replies, publications, "
       "cross-worker messages)",
       W(wakeups_total)},
      {"ringcable_worker_broadcast_streams_num", Type::kGauge,
       "Streams with at least one subscriber on the worker", W(streams_num)},
      {"ringcable_worker_clients_num", Type::kGauge, "Clients connected to the worker",
       W(clients_num)},
      {"ringcable_worker_upgrade_handed_over_total", Type::kCounter,
       "Connections the worker handed over to a new process (live upgrade)",
       W(upgrade_handed_over_total)},
      {"ringcable_worker_upgrade_adopted_total", Type::kCounter,
       "Connections the worker took over from the process it upgraded", W(upgrade_adopted_total)},
      {"ringcable_worker_upgrade_fallbacks_total", Type::kCounter,
       "Connections closed with server_restart instead of being handed over (live upgrade; the "
       "old process's count is carried over to worker 0)",
       W(upgrade_fallbacks_total)},
      {"ringcable_worker_upgrade_duration_seconds", Type::kGauge,
       "Worker 0: duration of the live upgrade that started this process, from SIGUSR2 to the old "
       "process's last connection, in whole seconds rounded up (the log has milliseconds)",
       W(upgrade_duration_seconds)},
      {"ringcable_worker_disconnect_queue_size", Type::kGauge,
       "Disconnect calls waiting in the worker's queue", W(disconnect_queue_size)},
      {"ringcable_worker_send_queue_bytes", Type::kGauge,
       "Bytes queued for sending on the worker's sockets (sampled every 100 ms)",
       W(send_queue_bytes)},
  };
  return kDefs;
}

struct PresenceDef {
  std::string_view name;
  std::string_view help;
  int64_t (*get)(const PresenceSample&);
};

const std::vector<PresenceDef>& PresenceDefs() {
  static const std::vector<PresenceDef> kDefs = {
      {"ringcable_presence_records_num",
       "Presence records (distinct presence ids per stream) held by the broker",
       [](const PresenceSample& p) { return p.records; }},
      {"ringcable_presence_sessions_num",
       "Sessions with presence (connected, or disconnected within --presence_ttl)",
       [](const PresenceSample& p) { return p.sessions; }},
      {"ringcable_presence_streams_num", "Streams with at least one presence record",
       [](const PresenceSample& p) { return p.streams; }},
  };
  return kDefs;
}

struct ClusterDef {
  std::string_view name;
  Type type;
  std::string_view help;
  int64_t (*get)(const ClusterSample&);
};
#define CL(field) [](const ClusterSample& c) { return static_cast<int64_t>(c.field); }

const std::vector<ClusterDef>& ClusterDefs() {
  static const std::vector<ClusterDef> kDefs = {
      {"ringcable_cluster_invalid_total", Type::kCounter,
       "Messages from Redis/NATS that were not publications or commands", CL(invalid_total)},
      {"ringcable_cluster_publish_failed_total", Type::kCounter,
       "Publications the pub/sub broker could not take (link down or error); answered 501",
       CL(publish_failed_total)},
      {"ringcable_cluster_published_total", Type::kCounter,
       "Publications this node handed to the pub/sub broker", CL(published_total)},
      {"ringcable_cluster_received_total", Type::kCounter,
       "Messages received from Redis/NATS (broadcast channels and pub/sub)", CL(received_total)},
      {"ringcable_redisx_consumed_total", Type::kCounter,
       "Redis Streams entries consumed by this node (redisx)", CL(redisx_consumed_total)},
      {"ringcable_cluster_subscribed_streams", Type::kGauge,
       "Streams this node is subscribed to in pub/sub (streams with local subscribers)",
       CL(subscribed_streams)},
      {"ringcable_nats_connected", Type::kGauge, "1 while the NATS link is up", CL(nats_connected)},
      {"ringcable_redis_connected", Type::kGauge, "1 while every Redis connection is ready",
       CL(redis_connected)},
  };
  return kDefs;
}

struct BrokerDef {
  std::string_view name;
  Type type;
  bool remote;  // shown with a remote broker (else with the memory broker)
  std::string_view help;
  int64_t (*get)(const BrokerSample&);
};
#define BR(field) [](const BrokerSample& b) { return static_cast<int64_t>(b.field); }

const std::vector<BrokerDef>& BrokerDefs() {
  static const std::vector<BrokerDef> kDefs = {
      {"ringcable_broker_errors_total", Type::kCounter, true,
       "Broker store calls that failed (store unreachable or erroring)", BR(errors_total)},
      {"ringcable_broker_history_rejected_total", Type::kCounter, true,
       "History requests answered reject_history by the broker", BR(history_rejected_total)},
      {"ringcable_broker_presence_events_total", Type::kCounter, true,
       "Presence join/leave events this node's broker thread published (cluster-wide presence)",
       BR(presence_events_total)},
      {"ringcable_broker_stamped_total", Type::kCounter, true,
       "Publications this node stored in the broker with an offset", BR(stamped_total)},
      {"ringcable_broker_unstamped_total", Type::kCounter, true,
       "Publications delivered without an offset because the broker store failed",
       BR(unstamped_total)},
      {"ringcable_broker_history_entries", Type::kGauge, false,
       "Publications kept in the memory broker's history", BR(history_entries)},
      {"ringcable_broker_history_streams", Type::kGauge, false,
       "Streams with history (or numbering) in the memory broker", BR(history_streams)},
      {"ringcable_broker_sessions", Type::kGauge, false,
       "Disconnected sessions kept for restore by the memory broker", BR(sessions)},
      {"ringcable_broker_store_up", Type::kGauge, true,
       "1 while the broker's store answers (0 after a failure, until a call succeeds)",
       BR(store_up)},
  };
  return kDefs;
}

bool Shown(const BrokerDef& d, const BrokerSample& b) { return d.remote ? b.remote : b.memory; }

std::string EscapeLabel(std::string_view v) {
  std::string out;
  for (char ch : v) {
    if (ch == '\\')
      out += "\\\\";
    else if (ch == '"')
      out += "\\\"";
    else if (ch == '\n')
      out += "\\n";
    else
      out += ch;
  }
  return out;
}

std::string Labels(const Tags& tags, const std::string* worker) {
  if (tags.empty() && !worker) return "";
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : tags) {
    if (!first) out += ',';
    first = false;
    out.append(k).append("=\"").append(EscapeLabel(v)).append("\"");
  }
  if (worker) {
    if (!first) out += ',';
    out.append("worker=\"").append(*worker).append("\"");
  }
  out += '}';
  return out;
}

void Header(std::string& out, std::string_view name, Type type, std::string_view help) {
  out.append("\n# HELP ").append(name).append(" ").append(help).append("\n# TYPE ");
  out.append(name).append(type == Type::kCounter ? " counter\n" : " gauge\n");
}

bool ValidName(std::string_view s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(),
                     [](unsigned char ch) { return std::isalnum(ch) || ch == '_'; });
}

std::string Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

}  // namespace

WorkerSample Sample(const server::Counters& c) {
  WorkerSample w;
  w.client_msg_total = c.client_msg_total.Get();
  w.failed_client_msg_total = c.failed_client_msg_total.Get();
  w.failed_auths_total = c.failed_auths_total.Get();
  w.broadcast_msg_total = c.broadcast_msg_total.Get();
  w.publications_total = c.publications_total.Get();
  w.failed_broadcast_msg_total = c.failed_broadcast_msg_total.Get();
  w.remote_commands_total = c.remote_commands_total.Get();
  w.disconnected_slow_clients_total = c.disconnected_slow_clients_total.Get();
  w.data_sent_total = c.data_sent_total.Get();
  w.data_rcvd_total = c.data_rcvd_total.Get();
  w.disconnect_dropped_total = c.disconnect_dropped_total.Get();
  w.no_pong_total = c.no_pong_total.Get();
  w.broker_gap_repairs_total = c.broker_gap_repairs_total.Get();
  w.submissions_total = c.submissions_total.Get();
  w.wakeups_total = c.wakeups_total.Get();
  w.tls_errors_total = c.tls_errors_total.Get();
  w.long_poll_stale_requests_total = c.long_poll_stale_requests_total.Get();
  w.tls_compact_total = c.tls_compact_total.Get();
  w.api_requests_total = c.api_requests_total.Get();
  w.api_failed_requests_total = c.api_failed_requests_total.Get();
  w.upgrade_handed_over_total = c.upgrade_handed_over_total.Get();
  w.upgrade_adopted_total = c.upgrade_adopted_total.Get();
  w.upgrade_fallbacks_total = c.upgrade_fallbacks_total.Get();
  w.upgrade_duration_seconds = c.upgrade_duration_seconds.Get();
  w.clients_num = c.clients_num.Get();
  w.sse_clients_num = c.sse_clients_num.Get();
  w.long_poll_clients_num = c.long_poll_clients_num.Get();
  w.streams_num = c.streams_num.Get();
  w.disconnect_queue_size = c.disconnect_queue_size.Get();
  w.send_queue_bytes = c.send_queue_bytes.Get();
  return w;
}

ClusterSample Sample(const cluster::Counters& c) {
  ClusterSample s;
  s.present = true;
  s.received_total = c.received_total.load(std::memory_order_relaxed);
  s.published_total = c.published_total.load(std::memory_order_relaxed);
  s.publish_failed_total = c.publish_failed_total.load(std::memory_order_relaxed);
  s.redisx_consumed_total = c.redisx_consumed_total.load(std::memory_order_relaxed);
  s.invalid_total = c.invalid_total.load(std::memory_order_relaxed);
  s.redis_connected = c.redis_connected.load(std::memory_order_relaxed);
  s.nats_connected = c.nats_connected.load(std::memory_order_relaxed);
  s.subscribed_streams = static_cast<int64_t>(c.subscribed_streams.load(std::memory_order_relaxed));
  return s;
}

RpcSample Sample(const rpc::Stats& s) {
  RpcSample r;
  r.calls = s.calls.load(std::memory_order_relaxed);
  r.retries = s.retries.load(std::memory_order_relaxed);
  r.errors = s.errors.load(std::memory_order_relaxed);
  r.timeouts = s.timeouts.load(std::memory_order_relaxed);
  r.canceled = s.canceled.load(std::memory_order_relaxed);
  r.pending = s.pending.load(std::memory_order_relaxed);
  return r;
}

cable::Result<Tags, std::string> ParseTags(std::string_view text) {
  Tags tags;
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::string item = Trim(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    if (item.empty()) continue;
    size_t colon = item.find(':');
    if (colon == std::string::npos) {
      return cable::MakeError("invalid metrics tag \"" + item + "\": expected key:value");
    }
    std::string key = Trim(std::string_view(item).substr(0, colon));
    std::string value = Trim(std::string_view(item).substr(colon + 1));
    if (!ValidName(key)) {
      return cable::MakeError("invalid metrics tag name \"" + key +
                              "\": must match [a-zA-Z_][a-zA-Z0-9_]*");
    }
    tags.emplace_back(std::move(key), std::move(value));
  }
  return tags;
}

std::string RenderPrometheus(const Snapshot& snap, const Tags& tags) {
  std::string out;
  out.reserve(4096);
  const std::string labels = Labels(tags, nullptr);
  for (const auto& d : Defs()) {
    std::string name = "anycable_go_" + std::string(d.name);
    Header(out, name, d.type, d.help);
    out.append(name).append(labels).append(" ").append(std::to_string(d.get(snap))).append("\n");
  }
  for (const auto& d : WorkerDefs()) {
    Header(out, d.name, d.type, d.help);
    for (size_t i = 0; i < snap.workers.size(); ++i) {
      std::string idx = std::to_string(i);
      out.append(d.name).append(Labels(tags, &idx)).append(" ");
      out.append(std::to_string(d.get(snap.workers[i]))).append("\n");
    }
  }
  if (snap.cluster.present) {
    for (const auto& d : ClusterDefs()) {
      Header(out, d.name, d.type, d.help);
      out.append(d.name).append(labels).append(" ");
      out.append(std::to_string(d.get(snap.cluster))).append("\n");
    }
  }
  if (snap.presence.present) {
    for (const auto& d : PresenceDefs()) {
      Header(out, d.name, Type::kGauge, d.help);
      out.append(d.name).append(labels).append(" ");
      out.append(std::to_string(d.get(snap.presence))).append("\n");
    }
  }
  for (const auto& d : BrokerDefs()) {
    if (!Shown(d, snap.broker)) continue;
    Header(out, d.name, d.type, d.help);
    out.append(d.name).append(labels).append(" ");
    out.append(std::to_string(d.get(snap.broker))).append("\n");
  }
  return out;
}

std::vector<IntervalValue> IntervalValues(const Snapshot& snap, const Snapshot* prev) {
  std::vector<IntervalValue> out;
  for (const auto& d : Defs()) {
    int64_t v = d.get(snap);
    if (d.type == Type::kCounter && prev) v -= d.get(*prev);
    out.push_back({d.name, d.type == Type::kCounter, v});
  }
  if (snap.cluster.present) {
    for (const auto& d : ClusterDefs()) {
      int64_t v = d.get(snap.cluster);
      if (d.type == Type::kCounter && prev) v -= d.get(prev->cluster);
      out.push_back({d.name, d.type == Type::kCounter, v});
    }
  }
  if (snap.presence.present) {
    for (const auto& d : PresenceDefs()) out.push_back({d.name, false, d.get(snap.presence)});
  }
  for (const auto& d : BrokerDefs()) {
    if (!Shown(d, snap.broker)) continue;
    int64_t v = d.get(snap.broker);
    if (d.type == Type::kCounter && prev) v -= d.get(prev->broker);
    out.push_back({d.name, d.type == Type::kCounter, v});
  }
  std::sort(out.begin(), out.end(),
            [](const IntervalValue& a, const IntervalValue& b) { return a.name < b.name; });
  return out;
}

std::string RenderLog(const Snapshot& snap, const Snapshot* prev,
                      const std::vector<std::string>& filter) {
  std::string out;
  for (const auto& m : IntervalValues(snap, prev)) {
    if (!filter.empty() && std::find(filter.begin(), filter.end(), m.name) == filter.end()) {
      continue;
    }
    if (!out.empty()) out += ' ';
    out.append(m.name).append("=").append(std::to_string(m.value));
  }
  return out;
}

}  // namespace cable::metrics
