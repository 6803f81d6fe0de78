// Live upgrade tests' fixture: SIGUSR2 through the real binary; the new process (a child of the
// old one) is found by its pid in the shared log. The test process is a child subreaper, so the
// new process becomes its child once the old one exits and can be stopped and reaped by pid.
// (upgrade_test.cc keeps its own copy of these helpers.)
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <cstdlib>
#include <thread>

#include "core_fixture.h"

namespace cable::itcore {

// A process this test did not spawn directly (the upgraded server). Stopped with SIGTERM and
// reaped (the test is its subreaper); killed if still running at destruction.
class AdoptedProcess {
 public:
  ~AdoptedProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      int st;
      waitpid(pid_, &st, 0);
    }
  }
  void set(pid_t pid) { pid_ = pid; }
  pid_t pid() const { return pid_; }
  // SIGTERM and wait (bounded); the exit status, -1 if it had to be killed.
  int Stop(std::chrono::milliseconds timeout = std::chrono::seconds(15)) {
    if (pid_ <= 0) return -1;
    kill(pid_, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
};

class UpgradeFixture : public CoreTest {
 protected:
  void SetUp() override {
    CoreTest::SetUp();
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  }
  // The upgraded process stops cleanly, and neither process logged a sanitizer report (ASan/UBSan
  // builds: both write to the same log).
  void TearDown() override {
    if (next_.pid() > 0) {
      EXPECT_EQ(next_.Stop(), 0) << "the upgraded process did not stop cleanly";
    }
    const std::string log = server_.Log();
    EXPECT_EQ(log.find("Sanitizer"), std::string::npos);
    EXPECT_EQ(log.find("runtime error"), std::string::npos);
    if (HasFailure()) std::cerr << "---- log ----\n" << log << "-------------\n";
    CoreTest::TearDown();
  }
  // Waits until the server's log (old and new process share it) contains `needle`.
  bool WaitLog(const std::string& needle,
               std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (server_.Log().find(needle) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  // The pid of the process the last upgrade started ("upgrade: started <path> (pid N)").
  pid_t StartedPid() {
    std::string log = server_.Log();
    size_t at = log.rfind("upgrade: started ");
    if (at == std::string::npos) return -1;
    at = log.find("(pid ", at);
    return at == std::string::npos ? -1 : std::atoi(log.c_str() + at + 5);
  }
  // SIGUSR2; the old process exits after the handover; the new one is adopted by this test.
  void Upgrade() {
    ASSERT_EQ(kill(server_.pid(), SIGUSR2), 0);
    ASSERT_TRUE(WaitLog("upgrade: started "));
    pid_t pid = StartedPid();
    ASSERT_GT(pid, 0);
    next_.set(pid);  // stopped by TearDown whatever happens next
    ASSERT_EQ(server_.WaitExit(std::chrono::seconds(30)), 0) << "the old process did not exit";
    ASSERT_TRUE(WaitLog("upgrade: adopted "));
  }
  // The number in "<name>{worker="N"} <value>" summed over the workers of the new process.
  long WorkerMetric(const std::string& name) {
    auto metrics = cable::test::HttpRequest(server_.port(), "GET", "/metrics");
    long sum = 0;
    const std::string series = "\n" + name + "{";
    for (size_t at = metrics.body.find(series); at != std::string::npos;
         at = metrics.body.find(series, at + 1)) {
      sum += std::atol(metrics.body.c_str() + metrics.body.find("} ", at) + 2);
    }
    return sum;
  }

  AdoptedProcess next_;
};

}  // namespace cable::itcore
