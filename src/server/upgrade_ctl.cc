// Live upgrade, the main thread's part: spawning the new binary and relaying the control channel
// (see upgrade_ctl.h; protocol in src/upgrade/upgrade.h).
#include "server/upgrade_ctl.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "common/log.h"
#include "metrics/sd_notify.h"
#include "server/worker.h"
#include "upgrade/upgrade.h"

extern char** environ;

namespace cable::server {
namespace {

using Clock = std::chrono::steady_clock;

int64_t MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// fork + exec of argv with `child_fd` inherited and named in the environment. Everything is
// prepared before fork(): the child only calls fcntl and execve (this process has threads).
pid_t Spawn(const std::vector<std::string>& argv, int child_fd) {
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  std::vector<std::string> env;
  std::string prefix = std::string(upgrade::kFdEnv) + "=";
  for (char** e = environ; e && *e; ++e) {
    if (std::strncmp(*e, prefix.c_str(), prefix.size()) != 0) env.emplace_back(*e);
  }
  env.push_back(prefix + std::to_string(child_fd));
  std::vector<char*> cenv;
  for (auto& e : env) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    fcntl(child_fd, F_SETFD, 0);  // the one descriptor the new process inherits
    execve(cargv[0], cargv.data(), cenv.data());
    _exit(127);
  }
  return pid;
}

std::string ExitStatus(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// Reaps the new process if it has exited (bounded wait); "" when it is still running.
std::string Reap(pid_t pid, std::chrono::milliseconds wait) {
  auto deadline = Clock::now() + wait;
  for (;;) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return ExitStatus(status);
    if (Clock::now() >= deadline) return "";
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// Waits (bounded) for a callback another thread runs; the value it got.
template <typename T>
struct Handoff {
  std::mutex mu;
  std::condition_variable cv;
  bool set = false;
  T value{};
  void Put(T v) {
    std::lock_guard<std::mutex> lock(mu);
    value = std::move(v);
    set = true;
    cv.notify_all();
  }
  bool Wait(std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, limit, [this] { return set; });
  }
};

// Old process, between kReady and the first move: the pub/sub fence (upgrade.h, "Pub/sub
// fence"). The new process subscribes to this one's streams and the fence channel; then the fence
// is published on every link. Returns -1 when the new process went away, else whether the fence
// is set (0: not set, both deliver as before; the new process was told either way).
int FencePubSub(Shared& shared, int ctl) {
  auto cut = [&](bool set) {
    upgrade::Packet c;
    c.type = upgrade::Type::kPubSubCut;
    c.bytes = set ? "1" : "0";
    return upgrade::SendPacket(ctl, c) ? (set ? 1 : 0) : -1;
  };
  if (!shared.cluster->pubsub_links_up()) {
    // Its fence could not come back: both processes deliver what pub/sub brings, as before.
    LOG_WARN(
        "upgrade: a pub/sub link is down; no fence: pub/sub messages during the handover "
        "may be missed or repeated");
    return cut(false);
  }
  auto streams = std::make_shared<Handoff<std::vector<std::string>>>();
  shared.cluster->UpgradeStreams([streams](std::vector<std::string> s) { streams->Put(s); });
  std::vector<std::string> list;
  std::mt19937_64 rng(std::random_device{}());
  char token[17];
  std::snprintf(token, sizeof(token), "%016llx", static_cast<unsigned long long>(rng()));
  list.push_back("__ringcable_upgrade__." + std::to_string(getpid()) + "." + token);
  const std::string fence = list[0];
  if (streams->Wait(std::chrono::seconds(5))) {
    list.insert(list.end(), streams->value.begin(), streams->value.end());
  }
  upgrade::Packet p;
  p.type = upgrade::Type::kPubSubStreams;
  p.bytes = upgrade::EncodeStrings(list);
  if (!upgrade::SendPacket(ctl, p)) return -1;
  int r = upgrade::RecvPacket(ctl, &p, 5000);
  if (r < 0) return -1;
  if (r == 0 || p.type != upgrade::Type::kPubSubSubscribed) {
    LOG_WARN(
        "upgrade: the new process did not subscribe to the pub/sub streams in time; no fence: "
        "pub/sub messages during the handover may be missed or repeated");
    return cut(false);
  }
  auto fenced = std::make_shared<Handoff<bool>>();
  shared.cluster->PublishFence(fence, 5000, [fenced](bool ok) { fenced->Put(ok); });
  bool ok = fenced->Wait(std::chrono::seconds(7)) && fenced->value;
  if (!ok) shared.cluster->EndFence();
  LOG_INFO("upgrade: pub/sub fence %s on %zu streams (%s)", fence.c_str(), list.size() - 1,
           ok ? "cut: this process delivers what came before it, the new one what came after"
              : "not set");
  return cut(ok);
}

// Old process, --broker memory, once nothing is stamped here any more: the broker's state, in
// chunks (upgrade.h). False when the control socket failed.
bool SendBrokerState(Shared& shared, int ctl) {
  const std::string state = shared.broker->ExportState();
  for (size_t at = 0; at < state.size(); at += upgrade::kBrokerStateChunk) {
    upgrade::Packet chunk;
    chunk.type = upgrade::Type::kBrokerState;
    chunk.bytes = state.substr(at, upgrade::kBrokerStateChunk);
    if (!upgrade::SendPacket(ctl, chunk)) return false;
  }
  upgrade::Packet end;
  end.type = upgrade::Type::kBrokerStateEnd;
  end.bytes = upgrade::EncodeU64(state.size());
  LOG_INFO("upgrade: sent the memory broker's state (epoch %s, %zu bytes)",
           shared.broker->epoch().c_str(), state.size());
  return upgrade::SendPacket(ctl, end);
}

}  // namespace

bool RunUpgrade(Shared& shared, const std::vector<std::string>& argv, int metrics_fd) {
  auto started = Clock::now();
  UpgradeState& u = *shared.upgrade;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    LOG_ERROR("upgrade: socketpair: %s; keeping every connection", strerror(errno));
    return false;
  }
  int sndbuf = 4 << 20;
  setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
  setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
  if (u.outbox_event < 0) u.outbox_event = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  pid_t pid = Spawn(argv, sv[1]);
  close(sv[1]);
  int ctl = sv[0];
  if (pid < 0) {
    LOG_ERROR("upgrade: cannot start %s: %s; keeping every connection", argv[0].c_str(),
              strerror(errno));
    close(ctl);
    return false;
  }
  LOG_INFO("upgrade: started %s (pid %d)", argv[0].c_str(), static_cast<int>(pid));
  auto fail = [&](const std::string& why) {
    close(ctl);
    std::string status = Reap(pid, std::chrono::milliseconds(2000));
    LOG_ERROR("upgrade: %s (new process %d: %s); the old process keeps serving", why.c_str(),
              static_cast<int>(pid), status.empty() ? "still running" : status.c_str());
    return false;
  };

  // The listeners: every worker's main one, then the broadcast ones, then the REST API ones.
  upgrade::Packet listeners;
  listeners.type = upgrade::Type::kListeners;
  int counts[kListenerCount] = {};
  for (int l = 0; l < kListenerCount; ++l) {
    for (auto& w : shared.workers) {
      if (w->listen_fd(l) < 0) continue;
      listeners.fds.push_back(w->listen_fd(l));
      ++counts[l];
    }
  }
  // A fourth count announces a kMetricsListener message next (older readers ignore it).
  // A fifth announces the pub/sub fence (kPubSubStreams after kReady).
  const bool fence = shared.cluster && shared.cluster->has_pubsub_links();
  listeners.bytes = std::to_string(counts[0]) + " " + std::to_string(counts[1]) + " " +
                    std::to_string(counts[2]) + " " + (metrics_fd >= 0 ? "1" : "0") + " " +
                    (fence ? "1" : "0");
  if (!upgrade::SendPacket(ctl, listeners)) return fail("cannot send the listeners");
  if (metrics_fd >= 0) {
    // The metrics listener: both processes serve it until this one exits (same socket).
    upgrade::Packet metrics;
    metrics.type = upgrade::Type::kMetricsListener;
    metrics.fds = {metrics_fd};
    if (!upgrade::SendPacket(ctl, metrics)) return fail("cannot send the metrics listener");
  }

  upgrade::Packet p;
  int r = upgrade::RecvPacket(ctl, &p, shared.cfg.shutdown_timeout_s * 1000);
  if (r <= 0 || p.type != upgrade::Type::kReady) {
    if (r == 0) kill(pid, SIGTERM);
    return fail(r == 0 ? "the new process was not ready within --shutdown_timeout"
                       : "the new process exited before it was ready");
  }
  LOG_INFO("upgrade: new process %d is ready (%lld ms); handing over connections",
           static_cast<int>(pid), static_cast<long long>(MsSince(started)));
  if (fence && FencePubSub(shared, ctl) < 0) {
    shared.cluster->EndFence();
    return fail("the new process went away before the pub/sub fence");
  }
  u.intake_closed.store(0);
  for (auto& w : shared.workers) w->BeginHandover();
  // Workers close what they could not hand over at --shutdown_timeout; a new process that still
  // has not acknowledged what it was sent some seconds later is taken for hung and killed (its
  // unacknowledged connections stay here).
  const auto give_up =
      Clock::now() + std::chrono::seconds(shared.cfg.shutdown_timeout_s) + std::chrono::seconds(10);

  uint64_t sent = 0;
  uint64_t acked = 0;
  bool ok = true;
  bool accept_sent = false;
  for (;;) {
    if (!accept_sent && u.intake_closed.load() >= static_cast<int>(shared.workers.size())) {
      // Every old worker stopped accepting and answered its last broadcast: the new one starts.
      if (shared.broker && !SendBrokerState(shared, ctl)) {
        ok = false;
        break;
      }
      upgrade::Packet accept;
      accept.type = upgrade::Type::kAccept;
      if (!upgrade::SendPacket(ctl, accept)) {
        ok = false;
        break;
      }
      accept_sent = true;
    }
    bool all_done = true;
    for (auto& w : shared.workers) all_done &= w->finished();
    if (all_done) break;
    if (Clock::now() >= give_up) {
      LOG_ERROR("upgrade: the new process %d did not finish the handover in time; killing it",
                static_cast<int>(pid));
      kill(pid, SIGKILL);
      ok = false;
      break;
    }
    // Connections go after kAccept (and the broker state before it): the outbox waits till then.
    pollfd pfd[2] = {{ctl, POLLIN, 0}, {u.outbox_event, POLLIN, 0}};
    poll(pfd, accept_sent ? 2 : 1, accept_sent ? 20 : 5);
    if (pfd[1].revents & POLLIN) {
      eventfd_t v;
      eventfd_read(u.outbox_event, &v);
      std::deque<std::pair<int, std::string>> batch;
      {
        std::lock_guard<std::mutex> lock(u.outbox_mu);
        batch.swap(u.outbox);
      }
      for (auto& [fd, bytes] : batch) {
        upgrade::Packet conn;
        conn.type = upgrade::Type::kConn;
        conn.fds = {fd};
        conn.bytes = std::move(bytes);
        if (!upgrade::SendPacket(ctl, conn)) {
          ok = false;
          break;
        }
        ++sent;
      }
    }
    if (!ok) break;
    if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      int rr = upgrade::RecvPacket(ctl, &p, 0);
      if (rr < 0) {
        ok = false;
        break;
      }
      if (rr > 0 && p.type == upgrade::Type::kAck && p.bytes.size() == 16) {
        uint64_t worker = upgrade::DecodeU64(p.bytes.substr(0, 8));
        uint64_t token = upgrade::DecodeU64(p.bytes.substr(8));
        if (worker < shared.workers.size()) shared.workers[worker]->OnHandoverAck(token);
        ++acked;
      }
    }
  }
  if (!ok) {
    // Pub/sub messages after the fence are delivered here again (those between the fence and
    // now were the new process's: lost for the connections that stay, see upgrade.h).
    if (fence) shared.cluster->EndFence();
    for (auto& w : shared.workers) w->AbortHandover();
    std::lock_guard<std::mutex> lock(u.outbox_mu);
    u.outbox.clear();  // their connections are un-parked by AbortHandover
    return fail("the new process went away during the handover (" + std::to_string(acked) +
                " connections were handed over, " + std::to_string(sent - acked) +
                " in flight are kept)");
  }
  uint64_t fallbacks = 0;
  for (auto& w : shared.workers) fallbacks += w->counters().upgrade_fallbacks_total.Get();
  upgrade::Packet done;
  done.type = upgrade::Type::kDone;
  done.bytes =
      upgrade::EncodeU64(static_cast<uint64_t>(MsSince(started))) + upgrade::EncodeU64(fallbacks);
  upgrade::SendPacket(ctl, done);
  // The new process becomes systemd's main PID (NotifyAccess=all) before this one exits.
  metrics::SdNotify("MAINPID=" + std::to_string(pid) + "\nSTATUS=Upgraded to pid " +
                    std::to_string(pid));
  // Wait for its kDone: it has released the held publications and told systemd itself.
  upgrade::RecvPacket(ctl, &p, 5000);
  close(ctl);
  if (fence) {
    LOG_INFO("upgrade: %llu pub/sub messages after the fence were left to the new process",
             static_cast<unsigned long long>(shared.cluster->fence_dropped()));
  }
  LOG_INFO(
      "upgrade: complete in %lld ms: %llu connections handed over, %llu fell back to a "
      "reconnect; exiting",
      static_cast<long long>(MsSince(started)), static_cast<unsigned long long>(acked),
      static_cast<unsigned long long>(fallbacks));
  return true;
}

int TakeUpgradeSocket() {
  const char* v = std::getenv(upgrade::kFdEnv);
  if (!v) return -1;
  int fd = std::atoi(v);
  unsetenv(upgrade::kFdEnv);
  if (fd < 3 || fcntl(fd, F_GETFD) < 0) return -1;
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
}

cable::Result<InheritedListeners, std::string> ReceiveListeners(int ctl) {
  upgrade::Packet p;
  if (upgrade::RecvPacket(ctl, &p, 10000) <= 0 || p.type != upgrade::Type::kListeners) {
    return MakeError(std::string("upgrade: no listeners from the old process"));
  }
  size_t workers = 0;
  size_t bcast = 0;
  size_t api = 0;
  size_t metrics = 0;  // absent (an older old process): no metrics listener follows
  size_t fence = 0;    // absent: no pub/sub fence either
  int fields =
      std::sscanf(p.bytes.c_str(), "%zu %zu %zu %zu %zu", &workers, &bcast, &api, &metrics, &fence);
  if (fields < 3 || workers + bcast + api != p.fds.size() || metrics > 1 || fence > 1) {
    for (int fd : p.fds) close(fd);
    return MakeError(std::string("upgrade: malformed listener message"));
  }
  InheritedListeners l;
  const auto first = p.fds.begin();
  l.main_fds.assign(first, first + static_cast<long>(workers));
  l.bcast_fds.assign(first + static_cast<long>(workers),
                     first + static_cast<long>(workers + bcast));
  l.api_fds.assign(first + static_cast<long>(workers + bcast), p.fds.end());
  if (fields >= 4 && metrics == 1) {
    upgrade::Packet m;
    if (upgrade::RecvPacket(ctl, &m, 10000) <= 0 || m.type != upgrade::Type::kMetricsListener ||
        m.fds.size() != 1) {
      for (int fd : p.fds) close(fd);
      for (int fd : m.fds) close(fd);
      return MakeError(std::string("upgrade: the announced metrics listener did not come"));
    }
    l.metrics_fd = m.fds[0];
  }
  l.pubsub_fence = fields == 5 && fence == 1;
  return l;
}

void AdoptFromOldProcess(Shared& shared, int ctl) {
  UpgradeState& u = *shared.upgrade;
  upgrade::Packet p;
  p.type = upgrade::Type::kReady;
  bool ok = upgrade::SendPacket(ctl, p);
  uint64_t adopted = 0;
  std::vector<uint64_t> per_worker(shared.workers.size(), 0);
  // Tests only: stop acknowledging after this many connections (the new process then looks hung
  // mid-handover, and a test kills it).
  const char* limit_env = std::getenv("RINGCABLE_UPGRADE_TEST_ACK_LIMIT");
  const uint64_t ack_limit = limit_env ? std::strtoull(limit_env, nullptr, 10) : UINT64_MAX;
  std::vector<int> held_back;
  // Pub/sub fence: set by the cluster thread once the old process's streams are subscribed.
  auto subscribed = std::make_shared<std::atomic<bool>>(false);
  bool awaiting_subscribed = false;
  std::string broker_state;  // kBrokerState chunks until kBrokerStateEnd
  // Bounded: an old process that hangs must not keep this one holding publications for ever.
  const auto deadline_all =
      Clock::now() + std::chrono::seconds(shared.cfg.shutdown_timeout_s) + std::chrono::seconds(20);
  while (ok) {
    int64_t left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline_all - Clock::now()).count();
    if (awaiting_subscribed && subscribed->load(std::memory_order_acquire)) {
      awaiting_subscribed = false;
      upgrade::Packet s;
      s.type = upgrade::Type::kPubSubSubscribed;
      upgrade::SendPacket(ctl, s);
    }
    // While the subscriptions are being confirmed, look at that flag every few milliseconds.
    const int64_t wait = awaiting_subscribed ? std::min<int64_t>(left, 5) : left;
    int r = left > 0 ? upgrade::RecvPacket(ctl, &p, static_cast<int>(wait)) : 0;
    if (r == 0 && awaiting_subscribed && Clock::now() < deadline_all) continue;
    if (r == 0) {
      LOG_ERROR("upgrade: the old process did not finish the handover in time; going on alone");
      break;
    }
    if (r < 0) {
      LOG_WARN("upgrade: the old process went away before it said done");
      break;
    }
    if (p.type == upgrade::Type::kDone) {
      if (p.bytes.size() == 16) {
        // The old process's measure of the upgrade and its fallbacks, for this one's metrics.
        Counters& c0 = const_cast<Counters&>(shared.workers[0]->counters());
        c0.upgrade_duration_seconds.Set(  // whole seconds, rounded up (Prometheus base unit)
            static_cast<int64_t>((upgrade::DecodeU64(p.bytes.substr(0, 8)) + 999) / 1000));
        c0.upgrade_fallbacks_total.Add(upgrade::DecodeU64(p.bytes.substr(8)));
      }
      break;
    }
    if (p.type == upgrade::Type::kAccept) {
      for (auto& w : shared.workers) w->ResumeAccepts();
      continue;
    }
    if (p.type == upgrade::Type::kPubSubStreams) {
      std::vector<std::string> list;
      if (shared.cluster && upgrade::DecodeStrings(p.bytes, &list) && !list.empty()) {
        const std::string fence = list[0];
        list.erase(list.begin());
        shared.cluster->SubscribeForUpgrade(fence, std::move(list),
                                            [subscribed] { subscribed->store(true); });
        awaiting_subscribed = true;
      }
      continue;
    }
    if (p.type == upgrade::Type::kBrokerState) {
      broker_state += p.bytes;
      continue;
    }
    if (p.type == upgrade::Type::kBrokerStateEnd) {
      // Before any connection is adopted and before anything is stamped here (held until kDone).
      if (!shared.broker) {
        LOG_WARN("upgrade: the old process sent a memory broker state; no --broker memory here");
      } else if (upgrade::DecodeU64(p.bytes) != broker_state.size() ||
                 !shared.broker->ImportState(broker_state)) {
        LOG_ERROR("upgrade: malformed memory broker state (%zu bytes); starting a new epoch (%s)",
                  broker_state.size(), shared.broker->epoch().c_str());
      } else {
        LOG_INFO(
            "upgrade: took the memory broker's state: epoch %s, %lld streams, %lld history "
            "entries, %zu sessions",
            shared.broker->epoch().c_str(),
            static_cast<long long>(shared.broker->history_streams()),
            static_cast<long long>(shared.broker->history_entries()), shared.broker->sessions());
      }
      broker_state.clear();
      continue;
    }
    if (p.type == upgrade::Type::kPubSubCut) {
      // Not set: deliver whatever pub/sub brings (no cut to drop before).
      if (shared.cluster && p.bytes != "1") shared.cluster->EndFence();
      continue;
    }
    if (p.type != upgrade::Type::kConn || p.fds.size() != 1) {
      for (int fd : p.fds) close(fd);
      continue;
    }
    upgrade::ConnRecord rec;
    if (!upgrade::Decode(p.bytes, &rec)) {
      LOG_ERROR("upgrade: malformed connection record; closing it");
      close(p.fds[0]);
      continue;
    }
    if (adopted >= ack_limit) {
      if (held_back.empty())
        LOG_WARN("upgrade: test hook: holding back acks after %llu",
                 static_cast<unsigned long long>(adopted));
      held_back.push_back(p.fds[0]);
      continue;
    }
    upgrade::Packet ack;
    ack.type = upgrade::Type::kAck;
    ack.bytes = upgrade::EncodeU64(rec.worker) + upgrade::EncodeU64(rec.token);
    upgrade::SendPacket(ctl, ack);
    size_t w = rec.worker % shared.workers.size();
    shared.workers[w]->Adopt(p.fds[0], std::move(p.bytes));
    ++per_worker[w];
    ++adopted;
  }
  // Each worker must have adopted its connections before the held publications enter the log
  // (a worker could otherwise read one in the turn that precedes its adoption). Bounded wait.
  auto deadline = Clock::now() + std::chrono::seconds(10);
  for (size_t w = 0; w < shared.workers.size(); ++w) {
    const auto& adopted_w = shared.workers[w]->counters().upgrade_adopted_total;
    while (adopted_w.Get() < per_worker[w] && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  for (int fd : held_back) close(fd);
  // From here this process delivers everything pub/sub brings (held until the release below).
  if (shared.cluster) shared.cluster->EndFence();
  for (auto& w : shared.workers) w->ResumeAccepts();  // after an early end of the old process
  // Every handed-over subscriber is in an index (adoption items are ahead of anything published
  // from now on in each worker's order of work): release what was held, in arrival order.
  size_t held = 0;
  {
    std::lock_guard<std::mutex> lock(u.hold_mu);
    held = u.held.size();
  }
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(u.hold_mu);
      while (!u.held.empty()) {
        hub::Message* msg = u.held.front();
        if (shared.broker) {
          shared.broker->Publish(msg);
        } else if (!shared.log->TryPublish(msg)) {
          break;
        }
        u.held.pop_front();
      }
      if (u.held.empty()) u.holding.store(false, std::memory_order_release);
    }
    for (auto& w : shared.workers) w->WakeIfSleeping();
    if (!u.holding.load(std::memory_order_acquire)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (shared.cluster) shared.cluster->ReleaseUpgradeStreams();  // adopted subscribers hold theirs
  metrics::SdNotify("MAINPID=" + std::to_string(getpid()) + "\nREADY=1\nSTATUS=Upgraded");
  p.type = upgrade::Type::kDone;
  p.bytes.clear();
  p.fds.clear();
  upgrade::SendPacket(ctl, p);
  close(ctl);
  LOG_INFO(
      "upgrade: adopted %llu connections from the old process; released %zu publications "
      "held during the handover",
      static_cast<unsigned long long>(adopted), held);
  if (shared.cluster) {
    LOG_INFO("upgrade: %llu pub/sub messages before the fence were left to the old process",
             static_cast<unsigned long long>(shared.cluster->fence_dropped()));
  }
}

}  // namespace cable::server
