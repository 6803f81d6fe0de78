// server::Counters — one worker's metrics, written only by that worker (single writer, no shared
// read-modify-write on the hot path) and read by a scraper thread with relaxed loads.
// Names follow anycable-go's metrics (spec Appendix E).
#pragma once

#include <atomic>
#include <cstdint>

namespace cable::server {

struct Counter {
  std::atomic<uint64_t> v{0};
  void Add(uint64_t n = 1) {
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t Get() const { return v.load(std::memory_order_relaxed); }
};

struct Gauge {
  std::atomic<int64_t> v{0};
  void Set(int64_t n) { v.store(n, std::memory_order_relaxed); }
  void Add(int64_t n) { v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  int64_t Get() const { return v.load(std::memory_order_relaxed); }
};

struct Counters {
  Counter client_msg_total;
  Counter failed_client_msg_total;
  Counter failed_auths_total;
  Counter broadcast_msg_total;  // publications delivered to this worker's index
  Counter publications_total;   // publications accepted by this worker's ingress
  Counter failed_broadcast_msg_total;
  Counter remote_commands_total;
  Counter disconnected_slow_clients_total;
  Counter data_sent_total;
  Counter data_rcvd_total;
  Counter no_pong_total;             // ext sessions closed with no_pong (--pong_timeout)
  Counter broker_gap_repairs_total;  // --broker redis: live offsets skipped ahead, read back
  Counter disconnect_dropped_total;  // Disconnect calls dropped because the backlog was full
  Counter submissions_total;         // io_uring_submit calls
  Counter wakeups_total;
  Counter tls_errors_total;           // TLS handshakes / records that failed (connection closed)
  Counter tls_compact_total;          // TLS sessions moved onto the compact record layer
  Counter api_requests_total;         // REST API requests answered (any status)
  Counter api_failed_requests_total;  // ... of which answered with a status >= 400
  Counter long_poll_stale_requests_total;  // polls for an expired or unknown session
  Counter upgrade_handed_over_total;  // live upgrade: connections sent to the new process (acked)
  Counter upgrade_adopted_total;      // live upgrade: connections taken over from the old process
  Counter upgrade_fallbacks_total;    // live upgrade: closed with server_restart instead
  // Live upgrade that started this process (worker 0 only; written by the main thread, once).
  Gauge upgrade_duration_seconds;
  Gauge clients_num;
  Gauge sse_clients_num;        // SSE streams (started or starting)
  Gauge long_poll_clients_num;  // long-poll sessions
  Gauge streams_num;
  Gauge disconnect_queue_size;
  Gauge send_queue_bytes;  // bytes queued on this worker's sockets, published every tick
};

}  // namespace cable::server
