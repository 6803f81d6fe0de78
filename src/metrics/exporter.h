// metrics exporters that run on their own threads, never on a worker:
// - HttpServer: serves GET <path> on a separate --metrics_port from one blocking thread (one
//   request per connection, then close). Used only when the port differs from the main port;
//   otherwise the workers route <path> themselves.
// - LogReporter: every --metrics_rotate_interval seconds logs the counters (as deltas) and gauges
//   at info, only those named by --metrics_log_filter when it is set.
// (The StatsD sender, the third exporter thread, is in statsd.h.)
// Both take a callback that samples the counters (relaxed loads only); Stop() joins the thread and
// may be called from any thread except the exporter's own. Each object owns its thread and socket.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "metrics/metrics.h"

namespace cable::metrics {

class HttpServer {
 public:
  using RenderFn = std::function<std::string()>;
  // Binds host:port (port 0 = any free port, see port()) and starts serving. Error: one line,
  // e.g. "cannot listen on 127.0.0.1:9090 (metrics): Address already in use".
  static cable::Result<std::unique_ptr<HttpServer>, std::string> Start(const std::string& host,
                                                                       int port, std::string path,
                                                                       RenderFn render);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  void Stop();
  int port() const { return port_; }

 private:
  HttpServer(int fd, int port, std::string path, RenderFn render);
  void Run();
  void Serve(int fd);
  int fd_;
  int port_;
  std::string path_;
  RenderFn render_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class LogReporter {
 public:
  using SnapshotFn = std::function<Snapshot()>;
  // An empty filter logs every metric.
  LogReporter(int interval_s, std::vector<std::string> filter, SnapshotFn snapshot);
  ~LogReporter();
  LogReporter(const LogReporter&) = delete;
  LogReporter& operator=(const LogReporter&) = delete;
  void Stop();

 private:
  void Run();
  int interval_s_;
  std::vector<std::string> filter_;
  SnapshotFn snapshot_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace cable::metrics
