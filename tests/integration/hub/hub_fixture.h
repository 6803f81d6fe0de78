// Shared fixture for the hub integration tests: broadcast delivery through the real ringcable
// binary (--workers 2) against an in-process ScriptedRpcServer running the demo app, whose
// subscribe streams from the identifier's "stream" param.
//
// Swarm: many WebSocket clients driven by one thread with epoll (non-blocking sockets), for tests
// that need thousands of subscribers. Each client sends its upgrade request and its first frames
// (e.g. a subscribe) in one write; the server queues frames sent before the welcome.
//
// Threads: the fixture and a Swarm are used from one thread (the test's); Publish() may be called
// from any thread (it opens its own connection per request).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "rpc_stub/scripted_server.h"
#include "test_support.h"

namespace cable::ithub {

using namespace std::chrono_literals;
using cable::test::JsonString;
using cable::test::WsClient;
using cable::test::WsFrame;
using cable::tools::ScriptedRpcServer;

// {"stream":<s>,"data":<data as a JSON string>[,"meta":{"exclude_socket":<x>}]}
std::string Pub(const std::string& stream, const std::string& data,
                const std::string& exclude_socket = "");
// {"identifier":<identifier as JSON string>,"message":<message_json>} — the delivered frame.
std::string Delivered(const std::string& identifier, const std::string& message_json);
// The demo app's identifier for channel `channel` streaming from `stream`.
std::string StreamId(const std::string& stream, const std::string& channel = "Hub");
// "sid" of a demo welcome frame, or "" if `welcome` is not one.
std::string SidOf(std::string_view welcome);
// A masked client text frame.
std::string MaskedText(const std::string& payload);
std::string SubscribeCommand(const std::string& identifier);

class Swarm {
 public:
  struct Client {
    int fd = -1;
    std::string buf;
    size_t off = 0;  // parse position in buf
    bool upgraded = false;
    bool closed = false;      // EOF, error or close frame
    uint16_t close_code = 0;  // of the close frame, if one came
    std::string close_reason;
  };
  // Text frames go to on_text(client index, payload); pings included.
  using TextFn = std::function<void(size_t, std::string_view)>;

  Swarm();
  ~Swarm();
  Swarm(const Swarm&) = delete;
  Swarm& operator=(const Swarm&) = delete;

  // Opens one client at `path` (blocking connect, then non-blocking) and sends the upgrade request
  // followed by `frames` (already encoded). rcvbuf > 0 sets SO_RCVBUF before connecting. Returns
  // the client's index, or -1 if the connection failed.
  int Add(int port, const std::string& path, const std::string& frames, int rcvbuf = 0);
  // Reads from the given clients (all when `only` is empty) until done() is true or `timeout`
  // passes; returns done(). A client whose upgrade status is not 101 is marked closed.
  bool Pump(const TextFn& on_text, const std::function<bool()>& done,
            std::chrono::milliseconds timeout, const std::vector<size_t>& only = {});
  size_t size() const { return clients_.size(); }
  const Client& client(size_t i) const { return clients_[i]; }
  size_t closed() const;

 private:
  void ReadClient(size_t i, const TextFn& on_text);
  void Parse(size_t i, const TextFn& on_text);
  void MarkClosed(size_t i);
  int epfd_ = -1;
  std::vector<Client> clients_;
};

class HubTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Starts ringcable --workers 2 against rpc_, with --http_broadcast_port=<free> unless
  // `own_broadcast_port` is false, plus `extra`. Fatal failure if it does not come up.
  void StartServer(const std::vector<std::string>& extra = {}, bool own_broadcast_port = true);
  // POST <body> to /_broadcast on the broadcast port (the main port without one).
  int Publish(const std::string& body, const std::map<std::string, std::string>& headers = {});
  // Connects at /cable<query>, reads the demo welcome and returns its sid ("" on failure).
  std::string Connect(WsClient& ws, const std::string& query = "");
  // Subscribes and waits for the confirmation; false if it did not come.
  bool Subscribe(WsClient& ws, const std::string& identifier);

  ScriptedRpcServer rpc_;
  cable::test::ServerProcess server_;
  int rpc_port_ = 0;
  int broadcast_port_ = 0;  // 0: the main port
};

}  // namespace cable::ithub
