// Shared fixture for the core integration tests: an in-process ScriptedRpcServer (demo app by
// default) plus one real ringcable process per test, always with its own HTTP broadcast port so
// parallel test binaries never fight over the default 8090.
//
// Threads: the fixture is used from the test thread only; RPC handlers installed by tests run on
// gRPC threads and must synchronise whatever they share with the test.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "rpc_stub/scripted_server.h"
#include "test_support.h"

namespace cable::itcore {

using namespace std::chrono_literals;
using cable::test::JsonString;
using cable::test::WsClient;
using cable::test::WsFrame;
using cable::tools::ScriptedRpcServer;

// A flag shared with RPC handlers by value, so a handler still running after a failed test never
// touches a dead stack frame. Open() releases handlers that wait on it; the destructor opens it
// too, so a failing test cannot leave a handler blocked (which would hang rpc_.Stop()).
class Gate {
 public:
  Gate() : open_(std::make_shared<std::atomic<bool>>(false)) {}
  ~Gate() { Open(); }
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;
  void Open() { open_->store(true); }
  // For handlers: a copy that outlives the Gate.
  std::shared_ptr<std::atomic<bool>> flag() const { return open_; }
  // Blocks until opened or `limit` passed.
  static void Wait(const std::shared_ptr<std::atomic<bool>>& flag,
                   std::chrono::milliseconds limit = 20s);

 private:
  std::shared_ptr<std::atomic<bool>> open_;
};

// Runs argv to completion (bounded by `timeout`, then SIGKILL) and captures stdout and stderr
// separately. exit_code is -1 if it had to be killed. (cable::test::RunCommand reads its pipe
// with recv(), which fails with ENOTSOCK, so it never captures any output.)
struct RunOutput {
  int exit_code = -1;
  std::string out;
  std::string err;
};
RunOutput RunToExit(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                    const std::map<std::string, std::string>& env = {});

// Writes `bytes` on a fresh loopback connection to `port` and reads until the received data
// contains `until` (or EOF / `timeout`); returns everything received.
std::string RawExchange(int port, const std::string& bytes, const std::string& until,
                        std::chrono::milliseconds timeout = 5s);

// A ringcable process started with exactly the given arguments and environment (ServerProcess
// always adds --port and probes /health, which some tests must avoid). Ready once `probe_path`
// on `port` answers 200. Killed on destruction if still running.
class RawServer {
 public:
  RawServer() = default;
  ~RawServer();
  RawServer(const RawServer&) = delete;
  RawServer& operator=(const RawServer&) = delete;
  // Output goes to a temporary file (see Log()).
  bool Start(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
             int port, const std::string& probe_path);
  // SIGTERM, then waits for the exit status (-1 if it had to be killed).
  int Stop(std::chrono::milliseconds timeout = 10s);
  std::string Log() const;

 private:
  pid_t pid_ = -1;
  std::string log_path_;
};

class CoreTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Starts ringcable against rpc_ with --http_broadcast_port=<free> plus `extra`.
  // Fails the test (fatal) if it does not come up.
  void StartServer(const std::vector<std::string>& extra = {});

  // Upgrades `ws` at `path` with X-Request-ID = sid (so the demo welcome is predictable) and
  // expects the demo welcome as the first message.
  void ConnectWelcome(WsClient& ws, const std::string& sid,
                      const std::string& path = "/cable?user=alice",
                      std::map<std::string, std::string> headers = {});
  // Subscribes and expects the demo confirmation as the next message.
  void SubscribeConfirmed(WsClient& ws, const std::string& identifier);
  // Sends {"command":"ping"} and expects {"type":"pong"} as the next message: every frame the
  // client sent before has been fully processed by then (commands run one at a time).
  void Barrier(WsClient& ws);
  // POSTs `body` to the HTTP broadcast endpoint; expects 201.
  void Broadcast(const std::string& body);

  static std::string ConfirmFrame(const std::string& identifier) {
    return "{\"type\":\"confirm_subscription\",\"identifier\":" + JsonString(identifier) + "}";
  }
  static std::string RejectFrame(const std::string& identifier) {
    return "{\"type\":\"reject_subscription\",\"identifier\":" + JsonString(identifier) + "}";
  }
  static std::string WelcomeFrame(const std::string& sid) {
    return "{\"type\":\"welcome\",\"sid\":" + JsonString(sid) + "}";
  }
  // Broadcast payload delivered for `identifier` (data is a compact JSON object text).
  static std::string MessageFrame(const std::string& identifier, const std::string& data) {
    return "{\"identifier\":" + JsonString(identifier) + ",\"message\":" + data + "}";
  }
  static std::string Publication(const std::string& stream, const std::string& data) {
    return "{\"stream\":" + JsonString(stream) + ",\"data\":" + JsonString(data) + "}";
  }
  size_t CommandCount() const { return rpc_.commands().size(); }

  // actioncable-v1-ext-json clients (reliable streams, presence): upgrades `ws` offering only the
  // extended protocol, expects it chosen, and returns the welcome's text.
  static constexpr const char* kExtProtocol = "actioncable-v1-ext-json";
  std::string ConnectExt(WsClient& ws, const std::string& path = "/cable?user=alice",
                         const std::map<std::string, std::string>& headers = {});
  // The value of a JSON string field ("sid" of a welcome, "epoch" of a frame), "" when absent.
  static std::string StringFieldOf(const std::string& json, const std::string& key);
  static std::string SidOf(const std::string& welcome) { return StringFieldOf(welcome, "sid"); }
  // The text of the next message (pings skipped), or "" on timeout.
  static std::string Next(WsClient& ws) {
    WsFrame f = ws.NextMessage();
    return f.opcode == 1 ? f.payload : "";
  }

  ScriptedRpcServer rpc_;
  int rpc_port_ = 0;
  int broadcast_port_ = 0;
  cable::test::ServerProcess server_;  // declared after rpc_: stopped before it
};

}  // namespace cable::itcore
