// StatsD exporter (--statsd_host): every --metrics_rotate_interval seconds the metrics of the log
// line go out over UDP as anycable-go sends them through smira/go-statsd:
//   <prefix><name>:<delta>|c   for counters (skipped when the delta is 0, as go-statsd's Incr)
//   <prefix><name>:<value>|g   for gauges (a negative one is preceded by "<name>:0|g")
// with the global --metrics_tags in the chosen --statsd_tags_format:
//   datadog   name:1|c|#k:v,k2:v2
//   influxdb  name,k=v,k2=v2:1|c
//   graphite  name;k=v;k2=v2:1|c
// Lines are joined by '\n' into datagrams of at most --statsd_max_packet_size bytes (a single
// line longer than that goes alone).
//
// Threading: StatsdLines/PackStatsd are pure functions (any thread). A StatsdReporter owns one
// thread and one connected, non-blocking UDP socket; the thread samples counters through the
// given callback (relaxed loads only), never waits on a worker, and drops what the socket will
// not take. Stop() joins the thread; call it from any thread but the reporter's own.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/result.h"
#include "metrics/exporter.h"
#include "metrics/metrics.h"

namespace cable::metrics {

enum class StatsdTagFormat { kDatadog, kInfluxdb, kGraphite };

// "datadog" | "influxdb" | "graphite". Error: `unknown StatsD tags format "x" (supported:
// datadog, influxdb, graphite)`.
cable::Result<StatsdTagFormat, std::string> ParseStatsdTagFormat(std::string_view name);

struct StatsdOptions {
  std::string prefix = "anycable_go.";
  StatsdTagFormat format = StatsdTagFormat::kDatadog;
  Tags tags;  // global tags, in this order
  size_t max_packet_size = 1400;
};

// The interval's lines (no trailing newline), in IntervalValues order.
std::vector<std::string> StatsdLines(const Snapshot& cur, const Snapshot* prev,
                                     const StatsdOptions& options);

// Packs lines into datagram payloads of at most max_packet_size bytes, '\n'-separated.
std::vector<std::string> PackStatsd(const std::vector<std::string>& lines, size_t max_packet_size);

class StatsdReporter {
 public:
  using SnapshotFn = SnapshotTicker::SnapshotFn;
  // Resolves "host:port" (UDP), connects a socket and starts the thread. Error: one line, e.g.
  // `cannot resolve StatsD host "nohost:8125": Name or service not known`.
  static cable::Result<std::unique_ptr<StatsdReporter>, std::string> Start(
      const std::string& host_port, int interval_s, StatsdOptions options, SnapshotFn snapshot);
  ~StatsdReporter();
  StatsdReporter(const StatsdReporter&) = delete;
  StatsdReporter& operator=(const StatsdReporter&) = delete;
  void Stop();

 private:
  StatsdReporter(int fd, int interval_s, StatsdOptions options, SnapshotFn snapshot);
  void Send(const std::vector<std::string>& packets);

  int fd_;
  StatsdOptions options_;
  SnapshotTicker ticker_;  // last: its thread uses fd_ and options_
};

}  // namespace cable::metrics
