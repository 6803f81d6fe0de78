// enats — the embedded NATS server (--embed_nats).
//
// anycable-go links the Go NATS server into its binary; a C++ server cannot, so ringcable runs
// Debian's `nats-server` as a supervised child process instead and gives the user the same one
// command: the --enats_* settings become a generated nats-server configuration file (client
// address, server name, max payload, cluster name/listen/routes, gateways, JetStream store for
// --broker nats, debug/trace), the child is started and must answer INFO on its client port
// before the node starts, it is restarted with backoff whenever it dies (one log line per death
// and one when it is back), and it is stopped (SIGTERM, then SIGKILL after 5 s) and reaped on
// shutdown. The node's NATS link (--nats_servers, which defaults to --enats_addr with
// --embed_nats, as in anycable-go) reconnects to it by itself.
//
// Threads and ownership: MakePlan is pure (it only looks for the binary). Server::Start runs on
// the main thread (first start, synchronous); a supervisor thread owned by the Server then waits
// for the child and restarts it. Stop() (main thread, idempotent; also the destructor) ends the
// supervisor and the child. The child is forked with everything (argv, envp, log descriptor)
// prepared beforehand: between fork and exec it only resets its signal mask, leaves ringcable's
// process group (a terminal's Ctrl-C reaches ringcable, which then stops it), asks for SIGTERM
// when ringcable dies (PR_SET_PDEATHSIG, so a crash or SIGKILL of ringcable leaves no nats-server
// behind), redirects its output and closes other descriptors, because ringcable already runs other
// threads (gRPC) whose locks a forked child must not touch.
//
// Files: a private run directory ($TMPDIR/ringcable-enats-XXXXXX) holds nats.conf and
// nats-server.log (its log, unless --enats_debug/--enats_trace send it to ringcable's stderr); it
// is removed on Stop. The JetStream store (--enats_store_dir, default $TMPDIR/nats-data/<server
// name>, as anycable-go) is kept.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "config/config.h"

namespace cable::enats {

// Everything needed to run nats-server, checked.
struct Plan {
  std::string binary;       // absolute path of nats-server
  std::string server_name;  // --enats_server_name, or generated as anycable-go does
  std::string client_host;  // where readiness is probed (a wildcard bind → loopback)
  int client_port = 0;
  bool jetstream = false;
  std::string store_dir;  // with JetStream
  bool log_to_stderr = false;
  std::string config_text;  // nats.conf, without log_file (added by Start)
  std::string description;  // for the log line: "nats://127.0.0.1:4222 (cluster: ..., ...)"
};

// Checks the --enats_* settings and renders nats-server's configuration. Errors are one line that
// names the flag (or the missing binary).
cable::Result<Plan, std::string> MakePlan(const config::Config& cfg);

// Finds nats-server: `configured` (--enats_server_path) when set, else PATH, then /usr/sbin,
// /usr/local/sbin and /sbin (Debian installs it in /usr/sbin, which a non-root PATH may lack).
cable::Result<std::string, std::string> FindBinary(const std::string& configured);

class Server {
 public:
  // Starts nats-server and waits up to `ready_timeout_ms` for its client port to answer INFO with
  // our server name. Errors (one line): the child exited (with its status and last log line), or
  // it did not become ready in time (then it is stopped).
  static cable::Result<std::unique_ptr<Server>, std::string> Start(const Plan& plan,
                                                                   int ready_timeout_ms = 15000);
  ~Server();  // Stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Stops supervising, SIGTERMs the child (SIGKILL after `grace_ms`) and reaps it, removes the run
  // directory. Idempotent.
  void Stop(int grace_ms = 5000);

  // The running child's pid (0 while it is being restarted or after Stop). Any thread.
  pid_t pid() const { return pid_.load(std::memory_order_acquire); }
  // Times the child died and was started again. Any thread.
  uint64_t restarts() const { return restarts_.load(std::memory_order_relaxed); }

 private:
  Server() = default;
  cable::Result<pid_t, std::string> SpawnAndWaitReady(int timeout_ms);
  pid_t Spawn();
  void Supervise();
  // Sleeps up to `ms`, returning early (true) when Stop was asked.
  bool WaitStop(int64_t ms);
  // The last [ERR]/[FTL] line of nats-server's log file ("" when none, or logging to stderr).
  std::string LastLogLine() const;

  Plan plan_;
  std::string run_dir_;
  std::string config_path_;
  std::string log_path_;
  std::vector<std::string> argv_;
  std::vector<std::string> env_;
  std::atomic<pid_t> pid_{0};
  std::atomic<uint64_t> restarts_{0};
  int stop_fd_ = -1;  // eventfd: Stop wakes the supervisor
  std::atomic<bool> stopping_{false};
  bool stopped_ = false;
  std::thread supervisor_;
};

}  // namespace cable::enats
