// metrics: anycable-go's metrics (spec Appendix E) rendered from ringcable's per-worker counters.
// Sampling reads the single-writer counters (server/counters.h) and the RPC client's Stats with
// relaxed loads, so a scrape never blocks or slows a worker; values are summed at scrape time.
// Rendering and tag parsing are pure functions (any thread). A Snapshot is a plain value.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cluster/cluster.h"
#include "common/result.h"
#include "rpc/client.h"
#include "server/counters.h"

namespace cable::metrics {

// One worker's counters and gauges at one instant, in Appendix E names where one exists.
struct WorkerSample {
  uint64_t client_msg_total = 0;
  uint64_t failed_client_msg_total = 0;
  uint64_t failed_auths_total = 0;
  uint64_t broadcast_msg_total = 0;
  uint64_t publications_total = 0;
  uint64_t failed_broadcast_msg_total = 0;
  uint64_t remote_commands_total = 0;
  uint64_t disconnected_slow_clients_total = 0;
  uint64_t data_sent_total = 0;
  uint64_t data_rcvd_total = 0;
  uint64_t disconnect_dropped_total = 0;
  uint64_t no_pong_total = 0;
  uint64_t broker_gap_repairs_total = 0;
  uint64_t submissions_total = 0;
  uint64_t wakeups_total = 0;
  uint64_t tls_errors_total = 0;
  uint64_t long_poll_stale_requests_total = 0;
  uint64_t tls_compact_total = 0;
  uint64_t api_requests_total = 0;
  uint64_t api_failed_requests_total = 0;
  uint64_t upgrade_handed_over_total = 0;
  uint64_t upgrade_adopted_total = 0;
  uint64_t upgrade_fallbacks_total = 0;
  int64_t upgrade_duration_seconds = 0;
  int64_t clients_num = 0;
  int64_t sse_clients_num = 0;
  int64_t long_poll_clients_num = 0;
  int64_t streams_num = 0;
  int64_t disconnect_queue_size = 0;
  int64_t send_queue_bytes = 0;
};

struct RpcSample {
  uint64_t calls = 0, retries = 0, errors = 0, timeouts = 0, canceled = 0;
  int64_t pending = 0;
};

// Redis / NATS links (cluster::Counters); absent when no cluster adapter runs.
struct ClusterSample {
  bool present = false;
  uint64_t received_total = 0, published_total = 0, publish_failed_total = 0;
  uint64_t redisx_consumed_total = 0, invalid_total = 0;
  int64_t redis_connected = 0, nats_connected = 0, subscribed_streams = 0;
};

// Presence store sizes (hub::PresenceStore::Sizes); absent without a broker.
struct PresenceSample {
  bool present = false;
  int64_t streams = 0, records = 0, sessions = 0;
};

// --broker: the memory broker's sizes, or the remote broker's (redis) health and counters.
// Filled by the server (SampleMetrics); absent without a broker.
struct BrokerSample {
  bool memory = false;  // history_streams, history_entries, sessions
  bool remote = false;  // the rest
  int64_t history_streams = 0, history_entries = 0, sessions = 0;
  uint64_t errors_total = 0, stamped_total = 0, unstamped_total = 0, history_rejected_total = 0;
  uint64_t presence_events_total = 0;  // remote broker: presence events this node published
  int64_t store_up = 0;
};

struct Snapshot {
  std::vector<WorkerSample> workers;  // index = worker number
  RpcSample rpc;
  ClusterSample cluster;
  PresenceSample presence;
  BrokerSample broker;
};

WorkerSample Sample(const server::Counters& c);
RpcSample Sample(const rpc::Stats& s);
ClusterSample Sample(const cluster::Counters& c);

using Tags = std::vector<std::pair<std::string, std::string>>;

// "k:v,k2:v2" → {{k,v},{k2,v2}} (spaces around items trimmed; empty input = no tags). Errors:
// `invalid metrics tag "x": expected key:value`, `invalid metrics tag name "1a": must match
// [a-zA-Z_][a-zA-Z0-9_]*`.
cable::Result<Tags, std::string> ParseTags(std::string_view text);

// Prometheus text exposition format 0.0.4, as anycable-go writes it: for every metric a blank
// line, "# HELP", "# TYPE", then the sample; counters first, then gauges; names prefixed
// "anycable_go_", global tags as labels. Followed by ringcable's own per-worker series
// (prefix "ringcable_", label worker="<n>").
std::string RenderPrometheus(const Snapshot& snap, const Tags& tags);

// One anycable-go metric over an interval: the log line, StatsD and Prometheus share the names.
struct IntervalValue {
  std::string_view name;  // without prefix, e.g. "clients_num"
  bool counter;           // counters: delta over the interval; gauges: value now
  int64_t value;
};

// anycable-go's metrics (plus the cluster ones when a cluster adapter runs), sorted by name;
// counters are deltas since `prev` (absolute when prev is null), gauges absolute.
std::vector<IntervalValue> IntervalValues(const Snapshot& snap, const Snapshot* prev);

// One log line's payload: "name=value" pairs sorted by name, separated by spaces; counters are
// deltas since `prev` (absolute when prev is null), gauges absolute. A non-empty `filter` keeps
// only the metrics it names (--metrics_log_filter; unknown names are ignored, as anycable-go).
std::string RenderLog(const Snapshot& snap, const Snapshot* prev,
                      const std::vector<std::string>& filter = {});

}  // namespace cable::metrics
