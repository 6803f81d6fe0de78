// nats — a NATS connection for broadcasting and node-to-node pub/sub, on the NATS C client
// (libnats-dev 3.4).
//
// libnats runs its own threads (reader, flusher, reconnect, message delivery). This wrapper makes
// it behave like the rest of ringcable: it never gives up (connect retries and reconnects forever,
// with backoff), it reports each state change once, it resubscribes after reconnects (libnats
// does this itself for live subscriptions), and Publish never buffers while disconnected — it
// returns false so the caller can count the publication as failed instead of claiming it.
//
// Threads: Start/Subscribe/Unsubscribe/Publish/Close are called from one owner thread (the cluster
// thread). Handler callbacks run on libnats threads: they must only hand work over (push to a
// queue, wake the owner) and return — Close waits for a running callback, so one that blocks on
// the owner thread deadlocks. The first OnNatsState(true) may also come from Start itself (when
// the first connect succeeds at once). Messages of all subscriptions of a link are delivered by
// one libnats delivery thread, in the order the server sent them.
//
// Ownership and lifetime: the Handler must outlive Close (or the Link). libnats threads may still
// run after Close, but they never reach the handler or the Link again. libnats' process-wide state
// is opened on first use and never closed by a Link (tests call nats_CloseAndWait at exit).
//
// Subjects: NATS subjects are dot-separated tokens of non-whitespace bytes. Publish refuses empty
// subjects, empty tokens ("a..b", ".a", "a."), whitespace or control bytes, and the wildcard
// tokens "*" and ">"; Subscribe accepts wildcards but refuses the rest (logged). So a stream name
// with spaces or tabs cannot be carried over NATS as a subject; callers must map or reject it.
//
// Not buffering: libnats cannot turn its reconnect buffer off (0 means 8 MB), so it is set to
// 1 byte and Publish does not call libnats unless the connection is up. A publication that races
// the disconnect itself may still be sent once the connection is back.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/result.h"

namespace cable::nats {

struct Options {
  std::vector<std::string> servers;  // nats://host:port, tls://host:port (user:pass@ allowed)
  bool dont_randomize = false;       // --nats_dont_randomize_servers
  std::string name = "ringcable";    // connection name shown by the server
};

// Parses --nats_servers: a comma-separated list of URLs (nats://, tls://; a bare host:port is
// taken as nats://). Errors name the bad entry.
cable::Result<Options, std::string> ParseServers(const std::string& list);

class Link {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    // A message on a subscribed subject (libnats thread).
    virtual void OnNatsMessage(std::string subject, std::string payload) = 0;
    // Connected (first time or after a reconnect) or disconnected; `detail` is one line (server
    // URL or error). Called once per change (libnats thread).
    virtual void OnNatsState(bool connected, const std::string& detail) = 0;
  };

  // Starts connecting in the background; fails only on bad options or resource errors, never
  // because the servers are down.
  static cable::Result<std::unique_ptr<Link>, std::string> Start(const Options& options,
                                                                 Handler* handler);
  ~Link();  // Close()

  // Idempotent: subscribing twice to a subject keeps one subscription.
  void Subscribe(const std::string& subject);
  void Unsubscribe(const std::string& subject);
  // False (nothing sent) when not connected right now or the subject is invalid.
  bool Publish(const std::string& subject, std::string_view payload);
  // Round trip to the server (PING/PONG): true once everything published before it was accepted.
  // Blocks the caller up to `timeout_ms` (the cluster thread, never a ring thread).
  bool Flush(int timeout_ms);
  bool connected() const { return connected_.load(std::memory_order_acquire); }
  // Closes the connection and waits for libnats' threads to finish delivering to the handler:
  // after Close returns, the handler is never called again.
  void Close();

 private:
  struct Impl;
  Link() = default;
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> connected_{false};
};

}  // namespace cable::nats
