// ringcable-load: the parent process. Parses options, checks the target is reachable, forks the
// workers (worker.h), drives the phases (connect, hold, publish, drain), merges what the workers
// report and prints the table and the RESULT line. Single-threaded.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "histogram.h"
#include "ipc.h"
#include "options.h"
#include "publisher.h"
#include "worker.h"

namespace cable::load {
namespace {

constexpr int64_t kSecond = 1'000'000'000;

struct WorkerProc {
  pid_t pid = -1;
  int ctrl_w = -1;
  int report_r = -1;
  MessageReader reader;
  Counters counters;
  bool phase_done = false;
  bool dropped = false;  // restore mode: kDropped seen
  bool measure_seen = false;
  uint64_t acked = 0;
  bool have_result = false;
  bool eof = false;
  WorkerResult result;
};

double SelfCpu(int who) {
  rusage ru{};
  getrusage(who, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// VmRSS of pid in KiB, -1 when unreadable.
int64_t ServerRssKb(int pid) {
  if (pid <= 0) return -1;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

// utime + stime of pid in seconds, -1 when unreadable.
double ServerCpu(int pid) {
  if (pid <= 0) return -1;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = all.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(all.substr(paren + 2));
  std::string f;
  double ticks = 0;
  // Field 3 (state) is the first after the command name; utime and stime are fields 14 and 15.
  for (int k = 3; k <= 15 && fields >> f; ++k) {
    if (k >= 14) ticks += std::atof(f.c_str());
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += static_cast<char>(ch);
    } else if (ch < 0x20) {
      char b[8];
      std::snprintf(b, sizeof(b), "\\u%04x", ch);
      out += b;
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out + "\"";
}

std::string Ms(uint64_t ns) {
  char b[32];
  std::snprintf(b, sizeof(b), "%.3f", static_cast<double>(ns) / 1e6);
  return b;
}

std::string Num(double v, int decimals = 3) {
  if (!std::isfinite(v)) return "null";
  char b[48];
  std::snprintf(b, sizeof(b), "%.*f", decimals, v);
  return b;
}

class Runner {
 public:
  explicit Runner(Options o) : o_(std::move(o)) {}
  int Run();

 private:
  bool Fork();
  // Reads worker reports for up to timeout_ms; prints progress when due.
  void Pump(int timeout_ms);
  void Dispatch(WorkerProc& w, MsgType type, std::string_view payload);
  void MaybeProgress();
  void Broadcast(MsgType type, std::string_view payload);
  Counters Sum() const;
  uint64_t MinAcked() const;
  bool AllLive(bool WorkerProc::*flag) const;
  void KillWorkers();
  int Fatal(const std::string& msg);
  bool RunBroadcast();
  bool PublishAll(Publisher& pub, const std::string& pad);
  bool RunRestore();
  void Report(int64_t connect_ns);

  Options o_;
  std::vector<WorkerProc> workers_;
  int64_t t0_ = 0;
  int64_t next_progress_ = 0;
  std::string phase_ = "connect";
  // Measured phase.
  double parent_cpu_base_ = 0;
  double parent_cpu_ = 0;
  double server_cpu_ = -1;
  int64_t rss_before_ = -1;
  int64_t rss_loaded_ = -1;
  int64_t rss_after_ = -1;
  // Broadcast.
  uint64_t sent_ = 0;
  int64_t first_publish_rt_ = 0;
  int64_t publish_end_ns_ = 0;
  int64_t publish_start_ns_ = 0;
  bool publish_capped_ = false;
  // Restore.
  int64_t restore_ns_ = 0;
};

int Runner::Fatal(const std::string& msg) {
  std::fprintf(stderr, "ringcable-load: %s\n", msg.c_str());
  KillWorkers();
  return 1;
}

void Runner::KillWorkers() {
  for (auto& w : workers_) {
    if (w.pid > 0) {
      kill(w.pid, SIGKILL);
      waitpid(w.pid, nullptr, 0);
      w.pid = -1;
    }
  }
}

bool Runner::Fork() {
  int per = (o_.connections + o_.processes - 1) / o_.processes;
  workers_.resize(static_cast<size_t>(o_.processes));
  int first = 0;
  for (int k = 0; k < o_.processes; ++k) {
    WorkerPlan plan;
    plan.index = k;
    plan.first_conn = first;
    plan.count = std::min(per, o_.connections - first);
    first += plan.count;
    plan.rate = o_.rate / o_.processes;
    plan.concurrency = std::max(1, o_.concurrency / o_.processes);
    int ctrl[2], report[2];
    if (pipe2(ctrl, O_CLOEXEC) != 0 || pipe2(report, O_CLOEXEC) != 0) return false;
    std::fflush(nullptr);
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
      close(ctrl[1]);
      close(report[0]);
      // Earlier workers' pipe ends were inherited too; a worker only keeps its own.
      for (int j = 0; j < k; ++j) {
        close(workers_[static_cast<size_t>(j)].ctrl_w);
        close(workers_[static_cast<size_t>(j)].report_r);
      }
      _exit(RunWorker(o_, plan, ctrl[0], report[1]));
    }
    close(ctrl[0]);
    close(report[1]);
    workers_[static_cast<size_t>(k)].pid = pid;
    workers_[static_cast<size_t>(k)].ctrl_w = ctrl[1];
    workers_[static_cast<size_t>(k)].report_r = report[0];
  }
  return true;
}

void Runner::Dispatch(WorkerProc& w, MsgType type, std::string_view payload) {
  switch (type) {
    case MsgType::kProgress:
      DecodeCounters(payload, &w.counters);
      break;
    case MsgType::kPhaseDone:
      DecodeCounters(payload, &w.counters);
      w.phase_done = true;
      break;
    case MsgType::kDropped:
      w.dropped = true;
      break;
    case MsgType::kAck:
      if (payload.size() == 8) std::memcpy(&w.acked, payload.data(), 8);
      w.measure_seen = true;
      break;
    case MsgType::kResult:
      if (DecodeResult(payload, &w.result)) {
        w.have_result = true;
        w.counters = w.result.counters;
      }
      break;
    default:
      break;
  }
}

void Runner::Pump(int timeout_ms) {
  std::vector<pollfd> fds;
  std::vector<WorkerProc*> owners;
  for (auto& w : workers_) {
    if (w.eof) continue;
    fds.push_back(pollfd{w.report_r, POLLIN, 0});
    owners.push_back(&w);
  }
  int wait = std::max(0, static_cast<int>(std::min<int64_t>(
                             timeout_ms, (next_progress_ - MonotonicNs()) / 1'000'000 + 1)));
  if (fds.empty()) {
    if (wait > 0) usleep(static_cast<useconds_t>(wait) * 1000);
  } else if (poll(fds.data(), fds.size(), wait) > 0) {
    char buf[65536];
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      WorkerProc& w = *owners[i];
      ssize_t n = read(w.report_r, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        w.eof = true;
        continue;
      }
      w.reader.Feed(std::string_view(buf, static_cast<size_t>(n)));
      MsgType type;
      std::string_view payload;
      while (w.reader.Next(&type, &payload)) Dispatch(w, type, payload);
    }
  }
  MaybeProgress();
}

Counters Runner::Sum() const {
  Counters s;
  for (const auto& w : workers_) {
    const Counters& c = w.counters;
    s.attempted += c.attempted;
    s.subscribed += c.subscribed;
    s.failed += c.failed;
    s.in_flight += c.in_flight;
    s.live += c.live;
    s.dropped += c.dropped;
    s.measured += c.measured;
    s.deliveries += c.deliveries;
    s.out_of_order += c.out_of_order;
    s.lost += c.lost;
    s.restored += c.restored;
    s.not_restored += c.not_restored;
    for (int f = 0; f < static_cast<int>(Failure::kCount); ++f) s.failures[f] += c.failures[f];
    if (c.first_start_ns && (!s.first_start_ns || c.first_start_ns < s.first_start_ns)) {
      s.first_start_ns = c.first_start_ns;
    }
    s.last_ready_ns = std::max(s.last_ready_ns, c.last_ready_ns);
    s.last_delivery_ns = std::max(s.last_delivery_ns, c.last_delivery_ns);
    s.cpu_s += c.cpu_s;
    if (!s.first_errno) s.first_errno = c.first_errno;
    if (!s.first_status) s.first_status = c.first_status;
  }
  return s;
}

uint64_t Runner::MinAcked() const {
  uint64_t m = UINT64_MAX;
  for (const auto& w : workers_) {
    if (!w.eof) m = std::min(m, w.acked);
  }
  return m == UINT64_MAX ? 0 : m;
}

bool Runner::AllLive(bool WorkerProc::*flag) const {
  for (const auto& w : workers_) {
    if (!w.eof && !(w.*flag)) return false;
  }
  return true;
}

void Runner::MaybeProgress() {
  int64_t now = MonotonicNs();
  if (now < next_progress_) return;
  next_progress_ = now + kSecond;
  if (!o_.progress) return;
  Counters s = Sum();
  double t = static_cast<double>(now - t0_) / 1e9;
  if (phase_ == "connect") {
    std::fprintf(stderr, "[%6.1fs] connect: %llu/%d subscribed, %llu failed, %llu in flight\n", t,
                 static_cast<unsigned long long>(s.subscribed), o_.connections,
                 static_cast<unsigned long long>(s.failed),
                 static_cast<unsigned long long>(s.in_flight));
  } else if (phase_ == "broadcast" || phase_ == "drain") {
    std::fprintf(
        stderr, "[%6.1fs] %s: sent %llu/%d, all received up to %llu, deliveries %llu, live %llu\n",
        t, phase_.c_str(), static_cast<unsigned long long>(sent_), o_.messages,
        static_cast<unsigned long long>(MinAcked()), static_cast<unsigned long long>(s.deliveries),
        static_cast<unsigned long long>(s.live));
  } else {
    std::fprintf(stderr, "[%6.1fs] %s: %llu live, %llu dropped\n", t, phase_.c_str(),
                 static_cast<unsigned long long>(s.live),
                 static_cast<unsigned long long>(s.dropped));
  }
}

void Runner::Broadcast(MsgType type, std::string_view payload) {
  std::string msg;
  AppendMessage(&msg, type, payload);
  for (auto& w : workers_) {
    if (!w.eof) WriteAll(w.ctrl_w, msg);
  }
}

bool Runner::RunBroadcast() {
  Broadcast(MsgType::kMeasure, "");
  int64_t wait_until = MonotonicNs() + 10 * kSecond;
  while (!AllLive(&WorkerProc::measure_seen) && MonotonicNs() < wait_until) Pump(50);

  phase_ = "broadcast";
  Publisher pub(o_.broadcast_url, o_.broadcast_key);
  std::string pad(static_cast<size_t>(o_.payload_size), 'x');
  const double cap_s = std::min(o_.timeout, 10.0);
  publish_start_ns_ = MonotonicNs();
  const int64_t phase_deadline = publish_start_ns_ + static_cast<int64_t>(o_.timeout * 1e9);
  const uint64_t total = static_cast<uint64_t>(o_.messages);
  for (uint64_t first = 1; first <= total; first += static_cast<uint64_t>(o_.batch)) {
    const int count = static_cast<int>(std::min<uint64_t>(o_.batch, total - first + 1));
    const uint64_t last = first + static_cast<uint64_t>(count) - 1;
    if (o_.msg_rate > 0) {
      int64_t due = publish_start_ns_ + static_cast<int64_t>((first - 1) / o_.msg_rate * 1e9);
      for (int64_t now = MonotonicNs(); now < due; now = MonotonicNs()) {
        Pump(static_cast<int>(std::max<int64_t>(0, (due - now) / 1'000'000)));
      }
    }
    if (MonotonicNs() >= phase_deadline) {
      publish_capped_ = true;
      break;
    }
    int64_t ts = RealtimeNs();
    if (first == 1) first_publish_rt_ = ts;
    auto r = pub.Post(BatchBody(o_.stream, first, count, ts, pad), std::min(o_.timeout, 10.0));
    if (!r) {
      Fatal("broadcast to http://" + o_.broadcast_url.host_port + o_.broadcast_url.path +
            " failed: " + r.error());
      return false;
    }
    if (r.value() < 200 || r.value() > 299) {
      Fatal("broadcast to http://" + o_.broadcast_url.host_port + o_.broadcast_url.path +
            " answered HTTP " + std::to_string(r.value()) +
            (r.value() == 401 ? " (pass --broadcast-key)" : ""));
      return false;
    }
    sent_ = last;
    if (o_.msg_rate == 0) {
      int64_t until = MonotonicNs() + static_cast<int64_t>(cap_s * 1e9);
      while (MinAcked() < last && MonotonicNs() < until && MonotonicNs() < phase_deadline) {
        Pump(20);
        if (AllLive(&WorkerProc::eof)) break;
      }
    } else {
      Pump(0);
    }
  }
  publish_end_ns_ = MonotonicNs();

  // Drain: until everyone has everything, nothing arrives for 5 s, or --timeout.
  phase_ = "drain";
  int64_t deadline = MonotonicNs() + static_cast<int64_t>(o_.timeout * 1e9);
  uint64_t last_deliveries = Sum().deliveries;
  int64_t last_change = MonotonicNs();
  while (MinAcked() < sent_ && MonotonicNs() < deadline &&
         MonotonicNs() - last_change < 5 * kSecond) {
    Pump(20);
    uint64_t d = Sum().deliveries;
    if (d != last_deliveries) {
      last_deliveries = d;
      last_change = MonotonicNs();
    }
    if (AllLive(&WorkerProc::eof)) break;
  }
  return true;
}

// Restore mode: drop every client, publish --messages while they are away (each POST answered
// before the next), then reconnect them all with their sids; only that last phase is measured.
bool Runner::PublishAll(Publisher& pub, const std::string& pad) {
  const uint64_t total = static_cast<uint64_t>(o_.messages);
  for (uint64_t first = 1; first <= total; first += static_cast<uint64_t>(o_.batch)) {
    const int count = static_cast<int>(std::min<uint64_t>(o_.batch, total - first + 1));
    auto r =
        pub.Post(BatchBody(o_.stream, first, count, RealtimeNs(), pad), std::min(o_.timeout, 10.0));
    if (!r || r.value() < 200 || r.value() > 299) {
      Fatal("broadcast to http://" + o_.broadcast_url.host_port + o_.broadcast_url.path +
            " failed: " + (r ? "HTTP " + std::to_string(r.value()) : r.error()));
      return false;
    }
    sent_ = first + static_cast<uint64_t>(count) - 1;
    Pump(0);
  }
  return true;
}

bool Runner::RunRestore() {
  phase_ = "drop";
  Broadcast(MsgType::kDrop, "");
  int64_t until = MonotonicNs() + 30 * kSecond;
  while (!AllLive(&WorkerProc::dropped) && MonotonicNs() < until) Pump(50);
  if (!AllLive(&WorkerProc::dropped)) {
    Fatal("workers did not drop their connections");
    return false;
  }
  // The server turns each EOF into a cached session (and a Disconnect RPC); give it a moment
  // before the publications, so none of them races a session that is still being saved.
  until = MonotonicNs() + 2 * kSecond;
  for (int64_t now = MonotonicNs(); now < until; now = MonotonicNs()) {
    Pump(static_cast<int>((until - now) / 1'000'000 + 1));
  }
  phase_ = "publish";
  Publisher pub(o_.broadcast_url, o_.broadcast_key);
  if (!PublishAll(pub, std::string(static_cast<size_t>(o_.payload_size), 'x'))) return false;

  phase_ = "restore";
  for (auto& w : workers_) w.phase_done = false;
  const double cpu0 = ServerCpu(o_.server_pid);
  parent_cpu_base_ = SelfCpu(RUSAGE_SELF);
  const int64_t start = MonotonicNs();
  Broadcast(MsgType::kRestore, "");
  const int64_t deadline = start + static_cast<int64_t>(o_.timeout * 1e9) + 10 * kSecond;
  while (!AllLive(&WorkerProc::phase_done) && MonotonicNs() < deadline) Pump(100);
  if (!AllLive(&WorkerProc::phase_done)) {
    Fatal("workers did not finish the restore phase");
    return false;
  }
  restore_ns_ = MonotonicNs() - start;
  if (o_.server_pid) server_cpu_ = ServerCpu(o_.server_pid) - cpu0;
  return true;
}

int Runner::Run() {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rlim_t need = static_cast<rlim_t>((o_.connections + o_.processes - 1) / o_.processes + 64);
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
    std::fprintf(stderr,
                 "ringcable-load: --processes: %llu sockets per process need an open-file limit "
                 "of %llu, the hard limit is %llu; use more processes\n",
                 static_cast<unsigned long long>(need - 64), static_cast<unsigned long long>(need),
                 static_cast<unsigned long long>(rl.rlim_max));
    return 2;
  }
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);

  double probe_s = std::min(o_.timeout, 5.0);
  std::string err = ProbeTcp(o_.url, probe_s);
  if (!err.empty()) {
    std::fprintf(stderr, "ringcable-load: cannot connect to ws://%s%s: %s\n",
                 o_.url.host_port.c_str(), o_.url.path.c_str(), err.c_str());
    return 1;
  }
  if (o_.mode == Mode::kBroadcast || o_.mode == Mode::kRestore) {
    err = ProbeTcp(o_.broadcast_url, probe_s);
    if (!err.empty()) {
      std::fprintf(stderr, "ringcable-load: cannot connect to broadcast endpoint http://%s%s: %s\n",
                   o_.broadcast_url.host_port.c_str(), o_.broadcast_url.path.c_str(), err.c_str());
      return 1;
    }
  }

  rss_before_ = ServerRssKb(o_.server_pid);
  double server_cpu0 = ServerCpu(o_.server_pid);
  t0_ = MonotonicNs();
  next_progress_ = t0_ + kSecond;
  parent_cpu_base_ = SelfCpu(RUSAGE_SELF);
  if (!Fork()) return Fatal(std::string("fork/pipe failed: ") + std::strerror(errno));

  // Connect phase; workers enforce --timeout themselves, the slack covers a stuck worker.
  int64_t deadline = t0_ + static_cast<int64_t>(o_.timeout * 1e9) + 10 * kSecond;
  while (!AllLive(&WorkerProc::phase_done) && MonotonicNs() < deadline) Pump(100);
  if (!AllLive(&WorkerProc::phase_done)) return Fatal("workers did not finish the connect phase");
  for (const auto& w : workers_) {
    if (w.eof && !w.phase_done) return Fatal("a worker process died");
  }
  int64_t connect_ns = MonotonicNs() - t0_;

  if (o_.mode == Mode::kConnect || Sum().subscribed == 0) {
    // Nothing to hold or to publish to when no connection got through.
    if (o_.server_pid) server_cpu_ = ServerCpu(o_.server_pid) - server_cpu0;
  } else if (o_.mode == Mode::kRestore) {
    rss_loaded_ = ServerRssKb(o_.server_pid);
    if (!RunRestore()) return 1;
    rss_after_ = ServerRssKb(o_.server_pid);
  } else {
    rss_loaded_ = ServerRssKb(o_.server_pid);
    server_cpu0 = ServerCpu(o_.server_pid);
    parent_cpu_base_ = SelfCpu(RUSAGE_SELF);
    if (o_.mode == Mode::kIdle) {
      phase_ = "idle";
      int64_t until = MonotonicNs() + static_cast<int64_t>(o_.duration * 1e9);
      for (int64_t now = MonotonicNs(); now < until; now = MonotonicNs()) {
        Pump(static_cast<int>(std::min<int64_t>(200, (until - now) / 1'000'000 + 1)));
      }
    } else if (!RunBroadcast()) {
      return 1;
    }
    if (o_.server_pid) server_cpu_ = ServerCpu(o_.server_pid) - server_cpu0;
    rss_after_ = ServerRssKb(o_.server_pid);
  }
  parent_cpu_ = SelfCpu(RUSAGE_SELF) - parent_cpu_base_;

  phase_ = "finish";
  Broadcast(MsgType::kFinish, std::string_view(reinterpret_cast<const char*>(&sent_), 8));
  int64_t finish_until = MonotonicNs() + 15 * kSecond;
  while (!AllLive(&WorkerProc::have_result) && MonotonicNs() < finish_until) Pump(50);
  for (auto& w : workers_) {
    close(w.ctrl_w);
    if (!w.have_result) {
      return Fatal("a worker process did not report its results");
    }
  }
  for (auto& w : workers_) {
    int status = 0;
    waitpid(w.pid, &status, 0);
    w.pid = -1;
    close(w.report_r);
  }
  Report(connect_ns);
  Counters s = Sum();
  if (s.subscribed == 0) {
    std::fprintf(stderr, "ringcable-load: no connection subscribed (%llu failed)\n",
                 static_cast<unsigned long long>(s.failed));
    return 1;
  }
  return 0;
}

void Runner::Report(int64_t connect_ns) {
  Counters s = Sum();
  Histogram handshake, latency;
  for (const auto& w : workers_) {
    handshake.Merge(w.result.handshake);
    latency.Merge(w.result.latency);
  }
  double load_cpu = parent_cpu_ + s.cpu_s;
  double load_cpu_total = SelfCpu(RUSAGE_SELF) + SelfCpu(RUSAGE_CHILDREN);
  double connect_span = s.last_ready_ns > s.first_start_ns
                            ? static_cast<double>(s.last_ready_ns - s.first_start_ns) / 1e9
                            : 0;
  double connect_rate = connect_span > 0 ? static_cast<double>(s.subscribed) / connect_span : 0;
  double delivery_span = s.last_delivery_ns > first_publish_rt_ && first_publish_rt_ > 0
                             ? static_cast<double>(s.last_delivery_ns - first_publish_rt_) / 1e9
                             : 0;
  double deliveries_per_s =
      delivery_span > 0 ? static_cast<double>(s.deliveries) / delivery_span : 0;
  double publish_s = static_cast<double>(publish_end_ns_ - publish_start_ns_) / 1e9;
  double bytes_per_conn = rss_before_ >= 0 && rss_loaded_ >= 0 && s.subscribed > 0
                              ? static_cast<double>(rss_loaded_ - rss_before_) * 1024.0 /
                                    static_cast<double>(s.subscribed)
                              : NAN;

  auto pct_text = [](const Histogram& h) {
    return "p50 " + Ms(h.ValueAtQuantile(0.5)) + "  p90 " + Ms(h.ValueAtQuantile(0.9)) + "  p99 " +
           Ms(h.ValueAtQuantile(0.99)) + "  p99.9 " + Ms(h.ValueAtQuantile(0.999)) + "  max " +
           Ms(h.max());
  };
  auto pct_json = [](const Histogram& h) {
    return "{\"count\":" + std::to_string(h.count()) + ",\"p50\":" + Ms(h.ValueAtQuantile(0.5)) +
           ",\"p90\":" + Ms(h.ValueAtQuantile(0.9)) + ",\"p99\":" + Ms(h.ValueAtQuantile(0.99)) +
           ",\"p99_9\":" + Ms(h.ValueAtQuantile(0.999)) + ",\"max\":" + Ms(h.max()) +
           ",\"mean\":" + Num(h.mean() / 1e6) + "}";
  };

  std::string failures_text, failures_json = "{";
  for (int f = 0; f < static_cast<int>(Failure::kCount); ++f) {
    if (f) failures_json += ",";
    failures_json += std::string("\"") + FailureName(static_cast<Failure>(f)) +
                     "\":" + std::to_string(s.failures[f]);
    if (s.failures[f]) {
      failures_text += std::string(failures_text.empty() ? " (" : ", ") +
                       FailureName(static_cast<Failure>(f)) + " " + std::to_string(s.failures[f]);
    }
  }
  failures_json += "}";
  if (!failures_text.empty()) {
    if (s.first_errno)
      failures_text += std::string("; first error: ") + std::strerror(s.first_errno);
    if (s.first_status)
      failures_text += "; upgrade answered HTTP " + std::to_string(s.first_status);
    failures_text += ")";
  }

  std::printf("ringcable-load %s  ws://%s%s  %d connections, processes %d, source IPs %d\n",
              ModeName(o_.mode), o_.url.host_port.c_str(), o_.url.path.c_str(), o_.connections,
              o_.processes, o_.source_ips);
  std::printf("  connect          %llu subscribed, %llu failed%s in %.2f s (%.0f/s)\n",
              static_cast<unsigned long long>(s.subscribed),
              static_cast<unsigned long long>(s.failed), failures_text.c_str(), connect_span,
              connect_rate);
  std::printf("  handshake ms     %s\n", pct_text(handshake).c_str());
  if (o_.mode == Mode::kRestore) {
    const double restore_s = static_cast<double>(restore_ns_) / 1e9;
    std::printf(
        "  restore          %llu restored with history, %llu new sessions instead, in %.2f s\n",
        static_cast<unsigned long long>(s.restored),
        static_cast<unsigned long long>(s.not_restored), restore_s);
    std::printf(
        "  catch-up         %llu of %llu messages (%llu published while away), lost %llu, "
        "out-of-order %llu\n",
        static_cast<unsigned long long>(s.deliveries),
        static_cast<unsigned long long>(s.restored * sent_), static_cast<unsigned long long>(sent_),
        static_cast<unsigned long long>(s.lost), static_cast<unsigned long long>(s.out_of_order));
  }
  if (o_.mode == Mode::kBroadcast) {
    std::printf("  published        %llu/%d in %.2f s (%s, payload %d B, %d per POST)%s\n",
                static_cast<unsigned long long>(sent_), o_.messages, publish_s,
                o_.msg_rate > 0 ? (Num(o_.msg_rate, 0) + "/s").c_str() : "closed loop",
                o_.payload_size, o_.batch, publish_capped_ ? " (stopped by --timeout)" : "");
    std::printf("  deliveries       %llu of %llu (%.0f/s), lost %llu, out-of-order %llu\n",
                static_cast<unsigned long long>(s.deliveries),
                static_cast<unsigned long long>(s.measured * sent_), deliveries_per_s,
                static_cast<unsigned long long>(s.lost),
                static_cast<unsigned long long>(s.out_of_order));
    std::printf("  latency ms       %s\n", pct_text(latency).c_str());
  }
  if (o_.mode != Mode::kConnect) {
    std::printf("  dropped          %llu subscribed connections closed by the server\n",
                static_cast<unsigned long long>(s.dropped));
  }
  const char* phase = o_.mode == Mode::kConnect   ? "connect"
                      : o_.mode == Mode::kIdle    ? "hold"
                      : o_.mode == Mode::kRestore ? "restore"
                                                  : "publish+drain";
  std::printf("  load CPU s       %.2f (%s phase), %.2f (whole run)\n", load_cpu, phase,
              load_cpu_total);
  if (o_.server_pid) {
    std::printf("  server CPU s     %.2f (%s phase)\n", server_cpu_, phase);
    if (o_.mode != Mode::kConnect) {
      std::printf(
          "  server RSS KiB   %lld before, %lld connected, %lld at end (%.0f B/connection)\n",
          static_cast<long long>(rss_before_), static_cast<long long>(rss_loaded_),
          static_cast<long long>(rss_after_), bytes_per_conn);
    }
  }

  std::string j = "{";
  j += "\"mode\":\"" + std::string(ModeName(o_.mode)) + "\"";
  j += ",\"url\":" + JsonString((o_.tls ? "wss://" : "ws://") + o_.url.host_port + o_.url.path);
  if (o_.compression) j += ",\"compression\":true";
  j += ",\"connections\":" + std::to_string(o_.connections);
  j += ",\"processes\":" + std::to_string(o_.processes);
  j += ",\"source_ips\":" + std::to_string(o_.source_ips);
  j += ",\"subscribed\":" + std::to_string(s.subscribed);
  j += ",\"connect_failures\":" + std::to_string(s.failed);
  j += ",\"failure_reasons\":" + failures_json;
  j +=
      ",\"first_error\":" + (s.first_errno ? "\"" + std::string(std::strerror(s.first_errno)) + "\""
                                           : std::string("null"));
  j += ",\"first_upgrade_status\":" +
       (s.first_status ? std::to_string(s.first_status) : std::string("null"));
  j += ",\"connect_s\":" + Num(connect_span);
  j += ",\"connect_phase_s\":" + Num(static_cast<double>(connect_ns) / 1e9);
  j += ",\"connects_per_s\":" + Num(connect_rate, 1);
  j += ",\"handshake_ms\":" + pct_json(handshake);
  j += ",\"dropped\":" + std::to_string(s.dropped);
  if (o_.mode == Mode::kBroadcast) {
    j += ",\"messages\":" + std::to_string(o_.messages);
    j += ",\"messages_sent\":" + std::to_string(sent_);
    j += ",\"msg_rate\":" + Num(o_.msg_rate, 1);
    j += ",\"batch\":" + std::to_string(o_.batch);
    j += ",\"payload_size\":" + std::to_string(o_.payload_size);
    j += ",\"publish_s\":" + Num(publish_s);
    j += ",\"publish_rate\":" + Num(publish_s > 0 ? static_cast<double>(sent_) / publish_s : 0, 1);
    j += ",\"subscribers\":" + std::to_string(s.measured);
    j += ",\"expected_deliveries\":" + std::to_string(s.measured * sent_);
    j += ",\"deliveries\":" + std::to_string(s.deliveries);
    j += ",\"deliveries_per_s\":" + Num(deliveries_per_s, 1);
    j += ",\"lost\":" + std::to_string(s.lost);
    j += ",\"out_of_order\":" + std::to_string(s.out_of_order);
    j += ",\"latency_ms\":" + pct_json(latency);
  }
  if (o_.mode == Mode::kRestore) {
    j += ",\"messages\":" + std::to_string(sent_);
    j += ",\"restored\":" + std::to_string(s.restored);
    j += ",\"not_restored\":" + std::to_string(s.not_restored);
    j += ",\"restore_phase_s\":" + Num(static_cast<double>(restore_ns_) / 1e9);
    j += ",\"expected_deliveries\":" + std::to_string(s.restored * sent_);
    j += ",\"deliveries\":" + std::to_string(s.deliveries);
    j += ",\"lost\":" + std::to_string(s.lost);
    j += ",\"out_of_order\":" + std::to_string(s.out_of_order);
  }
  j += ",\"load_cpu_s\":" + Num(load_cpu);
  j += ",\"load_cpu_total_s\":" + Num(load_cpu_total);
  j += ",\"server_cpu_s\":" + (o_.server_pid ? Num(server_cpu_) : std::string("null"));
  if (o_.mode == Mode::kIdle || o_.mode == Mode::kBroadcast) {
    auto kb = [&](int64_t v) {
      return o_.server_pid && v >= 0 ? std::to_string(v) : std::string("null");
    };
    j += ",\"server_rss_before_kb\":" + kb(rss_before_);
    j += ",\"server_rss_connected_kb\":" + kb(rss_loaded_);
    j += ",\"server_rss_after_kb\":" + kb(rss_after_);
    j += ",\"server_bytes_per_conn\":" +
         (o_.server_pid ? Num(bytes_per_conn, 0) : std::string("null"));
  }
  if (o_.mode == Mode::kIdle) j += ",\"duration_s\":" + Num(o_.duration);
  j += "}";
  std::printf("RESULT %s\n", j.c_str());
  std::fflush(stdout);
}

}  // namespace
}  // namespace cable::load

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto parsed = cable::load::ParseOptions(args);
  if (!parsed) {
    std::fprintf(stderr, "ringcable-load: %s\n", parsed.error().c_str());
    return 2;
  }
  if (parsed->help) {
    std::fputs(cable::load::HelpText().c_str(), stdout);
    return 0;
  }
  signal(SIGPIPE, SIG_IGN);
  cable::load::Runner runner(std::move(parsed.value()));
  return runner.Run();
}
