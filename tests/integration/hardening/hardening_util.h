// Helpers for the hardening tests: raw TCP sockets, a server process started under a descriptor
// limit, a child process's CPU time, and a child rpc_stub process that can be SIGKILLed.
// Used from the test thread only.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace cable::ithard {

using namespace std::chrono_literals;

// A loopback TCP connection to `port` (blocking connect); -1 on failure.
int ConnectTcp(int port);
// A WebSocket upgrade request for `path` on 127.0.0.1 with the given X-Request-ID.
std::string UpgradeRequest(const std::string& path, const std::string& sid);
// Reads whatever arrives within `wait` (stops early at EOF, which sets *eof). Bounded.
std::string ReadFor(int fd, std::chrono::milliseconds wait, bool* eof = nullptr);
// Reads until `needle` appears, EOF or `timeout`.
std::string ReadUntil(int fd, const std::string& needle, std::chrono::milliseconds timeout = 10s);

// user+system CPU time of `pid` in clock ticks (/proc/<pid>/stat fields 14 and 15); -1 on error.
long CpuTicks(pid_t pid);

// A child process with stdout+stderr in a temporary file and an optional RLIMIT_NOFILE.
class Child {
 public:
  Child() = default;
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  bool Spawn(const std::vector<std::string>& argv, long nofile_limit = 0);
  // Waits (bounded) until the output contains `needle`.
  bool WaitOutput(const std::string& needle, std::chrono::milliseconds timeout = 10s) const;
  std::string Output() const;
  void Kill(int sig);  // and reaps it
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::string log_path_;
};

}  // namespace cable::ithard
