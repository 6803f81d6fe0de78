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
  // Serves on a listening socket this process already has (live upgrade: the old process's,
  // received by SCM_RIGHTS). Takes ownership of `fd`.
  static cable::Result<std::unique_ptr<HttpServer>, std::string> Adopt(int fd, std::string path,
                                                                       RenderFn render);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  // Stops serving and closes this process's descriptor. The listening socket itself is left
  // alone (no shutdown()): after a live upgrade another process serves on the same socket.
  void Stop();
  int port() const { return port_; }
  // The listening socket (live upgrade hands it to the new process; it stays owned here).
  int listen_fd() const { return fd_; }

 private:
  HttpServer(int fd, int port, std::string path, RenderFn render);
  static cable::Result<std::unique_ptr<HttpServer>, std::string> Serving(int fd, std::string path,
                                                                         RenderFn render);
  void Run();
  void Serve(int fd);
  int fd_;
  int wake_fd_ = -1;  // eventfd: Stop() wakes Run() with it
  int port_;
  std::string path_;
  RenderFn render_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// The periodic metrics thread behind the log reporter and the StatsD sender: every interval_s it
// takes a snapshot and calls tick(current, previous) until Stop(). `previous` is null on the first
// tick: counters start at zero with the process, so the first interval reports everything since
// start (a baseline sampled here would hide whatever was counted before this thread got to run).
class SnapshotTicker {
 public:
  using SnapshotFn = std::function<Snapshot()>;
  using TickFn = std::function<void(const Snapshot& current, const Snapshot* previous)>;
  SnapshotTicker(int interval_s, SnapshotFn snapshot, TickFn tick);
  ~SnapshotTicker();
  SnapshotTicker(const SnapshotTicker&) = delete;
  SnapshotTicker& operator=(const SnapshotTicker&) = delete;
  // Wakes and joins the thread; idempotent.
  void Stop();

 private:
  void Run();
  int interval_s_;
  SnapshotFn snapshot_;
  TickFn tick_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

class LogReporter {
 public:
  using SnapshotFn = SnapshotTicker::SnapshotFn;
  // An empty filter logs every metric.
  LogReporter(int interval_s, std::vector<std::string> filter, SnapshotFn snapshot);
  LogReporter(const LogReporter&) = delete;
  LogReporter& operator=(const LogReporter&) = delete;
  void Stop() { ticker_.Stop(); }

 private:
  std::vector<std::string> filter_;
  SnapshotTicker ticker_;  // last: its thread reads filter_
};

}  // namespace cable::metrics
