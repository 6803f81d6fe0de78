// Live upgrade (#19) with --broker memory, through the real binary: the broker's epoch, offsets,
// history and cached sessions move to the new process (kBrokerState), so a moved ext client keeps
// receiving the next offsets of the same epoch, a new client resumes from a position taken before
// the upgrade, and a session cached before the upgrade is restored by the new process.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "core_fixture.h"

namespace cable::itcore {
namespace {

using Clock = std::chrono::steady_clock;

class UpgradeBrokerTest : public CoreTest {
 protected:
  void SetUp() override {
    CoreTest::SetUp();
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << "---- log ----\n" << server_.Log() << "-------------\n";
    if (next_ > 0) {
      kill(next_, SIGKILL);
      int st;
      waitpid(next_, &st, 0);
    }
    CoreTest::TearDown();
  }
  bool WaitLog(const std::string& needle, std::chrono::milliseconds timeout = 20s) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (server_.Log().find(needle) != std::string::npos) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  void Upgrade() {
    ASSERT_EQ(kill(server_.pid(), SIGUSR2), 0);
    ASSERT_TRUE(WaitLog("upgrade: started "));
    std::string log = server_.Log();
    size_t at = log.find("(pid ", log.rfind("upgrade: started "));
    ASSERT_NE(at, std::string::npos);
    next_ = std::atoi(log.c_str() + at + 5);
    ASSERT_GT(next_, 0);
    ASSERT_EQ(server_.WaitExit(30s), 0) << "the old process did not exit";
    ASSERT_TRUE(WaitLog("upgrade: adopted "));
  }
  static std::string ExtFrame(const std::string& identifier, const std::string& message,
                              const std::string& stream, const std::string& epoch,
                              uint64_t offset) {
    return "{\"identifier\":" + JsonString(identifier) + ",\"message\":" + message +
           ",\"stream_id\":" + JsonString(stream) + ",\"epoch\":" + JsonString(epoch) +
           ",\"offset\":" + std::to_string(offset) + "}";
  }
  pid_t next_ = -1;
};

TEST_F(UpgradeBrokerTest, HistoryOffsetsEpochAndSessionsMove) {
  StartServer({"--broker", "memory", "--workers", "2"});
  const std::string id = WsClient::Identifier("ChatChannel", {{"stream", "hist"}});
  WsClient moved;
  ConnectExt(moved);
  SubscribeConfirmed(moved, id);
  for (int n = 1; n <= 3; ++n) Broadcast(Publication("hist", "{\"n\":" + std::to_string(n) + "}"));
  const std::string first = Next(moved);
  const std::string epoch = StringFieldOf(first, "epoch");
  ASSERT_EQ(epoch.size(), 4u) << first;
  EXPECT_EQ(first, ExtFrame(id, R"({"n":1})", "hist", epoch, 1));
  EXPECT_EQ(Next(moved), ExtFrame(id, R"({"n":2})", "hist", epoch, 2));
  EXPECT_EQ(Next(moved), ExtFrame(id, R"({"n":3})", "hist", epoch, 3));
  // A session cached before the upgrade (its client went away).
  std::string cached_sid;
  {
    WsClient gone;
    cached_sid = SidOf(ConnectExt(gone));
    SubscribeConfirmed(gone, id);
    gone.Close();
  }
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& r) { return r.disconnects().size() == 1; }, 10s));

  Upgrade();
  EXPECT_NE(server_.Log().find("upgrade: took the memory broker's state: epoch " + epoch),
            std::string::npos);
  // The moved client: the next offset of the same epoch.
  Broadcast(Publication("hist", R"({"n":4})"));
  EXPECT_EQ(Next(moved), ExtFrame(id, R"({"n":4})", "hist", epoch, 4));
  // A new client resumes from offset 1 of that epoch: 2, 3 (before the upgrade) and 4.
  WsClient resumer;
  ConnectExt(resumer);
  SubscribeConfirmed(resumer, id);
  ASSERT_TRUE(resumer.SendText("{\"command\":\"history\",\"identifier\":" + JsonString(id) +
                               ",\"history\":{\"streams\":{\"hist\":{\"offset\":1,\"epoch\":\"" +
                               epoch + "\"}}}}"));
  EXPECT_EQ(Next(resumer), ExtFrame(id, R"({"n":2})", "hist", epoch, 2));
  EXPECT_EQ(Next(resumer), ExtFrame(id, R"({"n":3})", "hist", epoch, 3));
  EXPECT_EQ(Next(resumer), ExtFrame(id, R"({"n":4})", "hist", epoch, 4));
  EXPECT_EQ(Next(resumer), "{\"type\":\"confirm_history\",\"identifier\":" + JsonString(id) + "}");
  // The session cached by the old process is restored by the new one, without RPC.
  const size_t connects = rpc_.connects().size();
  WsClient restored;
  const std::string welcome =
      ConnectExt(restored, "/cable", {{"X-AnyCable-Restore-Sid", cached_sid}});
  EXPECT_EQ(welcome, "{\"type\":\"welcome\",\"sid\":\"" + SidOf(welcome) +
                         "\",\"restored\":true,\"restored_ids\":[" + JsonString(id) + "]}");
  EXPECT_EQ(rpc_.connects().size(), connects);
  Broadcast(Publication("hist", R"({"n":5})"));
  EXPECT_EQ(Next(restored), ExtFrame(id, R"({"n":5})", "hist", epoch, 5));
  EXPECT_EQ(Next(moved), ExtFrame(id, R"({"n":5})", "hist", epoch, 5));
}

}  // namespace
}  // namespace cable::itcore
