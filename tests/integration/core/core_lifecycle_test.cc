// Pings, Disconnect RPCs, graceful shutdown and WebSocket-level limits through the real binary
// (spec §1 "Ping", "Disconnect RPC & queue"; §5 items 15, 23, 25, 27).
#include <algorithm>
#include <ctime>
#include <set>
#include <thread>

#include "core_fixture.h"

namespace cable::itcore {
namespace {

using cable::tools::Metadata;
using Clock = std::chrono::steady_clock;

class LifecycleTest : public CoreTest {};

// The Action Cable pings `ws` received so far (reads until the socket has been quiet for a
// moment); fails on any other frame.
std::vector<std::string> DrainPings(WsClient& ws) {
  std::vector<std::string> pings;
  for (;;) {
    WsFrame f = ws.Next(100ms);
    if (f.opcode == -1) break;
    EXPECT_EQ(f.opcode, 1) << "unexpected frame, close code " << f.close_code();
    EXPECT_EQ(f.payload.rfind(R"({"type":"ping","message":)", 0), 0u) << f.payload;
    pings.push_back(f.payload);
  }
  return pings;
}

// DrainPings, then keeps reading until `ws` has at least `want` pings (bounded by `limit`): on a
// loaded machine the server's ping ticks come late, never early, so this waits for the pings
// instead of assuming they fit in the observation window.
std::vector<std::string> PingsAtLeast(WsClient& ws, size_t want,
                                      std::chrono::milliseconds limit = 30s) {
  std::vector<std::string> pings = DrainPings(ws);
  const auto deadline = Clock::now() + limit;
  while (pings.size() < want && Clock::now() < deadline) {
    WsFrame f = ws.Next(500ms);
    if (f.opcode == -1) continue;
    EXPECT_EQ(f.opcode, 1) << "unexpected frame, close code " << f.close_code();
    EXPECT_EQ(f.payload.rfind(R"({"type":"ping","message":)", 0), 0u) << f.payload;
    pings.push_back(f.payload);
  }
  return pings;
}

// The timestamp of {"type":"ping","message":<digits>} if it has exactly `digits` digits, else -1.
int64_t PingValue(const std::string& ping, size_t digits) {
  const std::string prefix = R"({"type":"ping","message":)";
  if (ping.rfind(prefix, 0) != 0 || ping.size() != prefix.size() + digits + 1 || ping.back() != '}')
    return -1;
  const std::string num = ping.substr(prefix.size(), digits);
  for (char ch : num) {
    if (ch < '0' || ch > '9') return -1;
  }
  return std::stoll(num);
}

// ---- 4. Pings ----

TEST_F(LifecycleTest, PingsFollowIntervalQueryParamsAndFlag) {
  // Two servers, four clients, one shared 4 s observation window.
  StartServer();  // default --ping_interval 3
  cable::test::ServerProcess flagged;
  ASSERT_TRUE(flagged.Start({"--rpc_host", "127.0.0.1:" + std::to_string(rpc_port_),
                             "--http_broadcast_port", std::to_string(cable::test::FreePort()),
                             "--ping_interval", "1"}))
      << flagged.Log();
  WsClient fast;     // ?pi=1
  WsClient off;      // ?pi=0
  WsClient millis;   // ?pi=1&ptp=ms
  WsClient nanos;    // ?pi=1&ptp=ns
  WsClient by_flag;  // default query, server flag 1 s
  ConnectWelcome(fast, "fast", "/cable?pi=1");
  ConnectWelcome(off, "off", "/cable?pi=0");
  ConnectWelcome(millis, "millis", "/cable?pi=1&ptp=ms");
  ConnectWelcome(nanos, "nanos", "/cable?pi=1&ptp=ns");
  ASSERT_EQ(by_flag.Connect(flagged.port(), "/cable", {{"X-Request-ID", "flag"}}), 101);
  EXPECT_EQ(by_flag.NextMessage().payload, WelcomeFrame("flag"));

  const int64_t before_s = std::time(nullptr);
  // Observation window for pi=0 (longer than the default 3 s interval), not a latency bound: the
  // 1 s clients are then read until each has its 2 pings, however late a loaded machine sends them.
  std::this_thread::sleep_for(4s);
  std::vector<std::string> fast_pings = PingsAtLeast(fast, 2);
  std::vector<std::string> millis_pings = PingsAtLeast(millis, 2);
  std::vector<std::string> nanos_pings = PingsAtLeast(nanos, 2);
  std::vector<std::string> flag_pings = PingsAtLeast(by_flag, 2);
  std::vector<std::string> off_pings = DrainPings(off);
  const int64_t after_s = std::time(nullptr);

  EXPECT_GE(fast_pings.size(), 2u);
  EXPECT_GE(millis_pings.size(), 2u);
  EXPECT_GE(nanos_pings.size(), 2u);
  EXPECT_GE(flag_pings.size(), 2u);
  EXPECT_TRUE(off_pings.empty()) << off_pings.size() << " pings with pi=0";
  // Values are Unix time in seconds (10 digits) or milliseconds (13 digits), taken while we
  // watched (one second of slack for truncation).
  for (const auto& p : fast_pings) {
    int64_t v = PingValue(p, 10);
    EXPECT_GE(v, before_s - 1) << p;
    EXPECT_LE(v, after_s + 1) << p;
  }
  for (const auto& p : flag_pings) EXPECT_NE(PingValue(p, 10), -1) << p;
  for (const auto& p : millis_pings) {
    int64_t v = PingValue(p, 13);
    EXPECT_GE(v, (before_s - 1) * 1000) << p;
    EXPECT_LE(v, (after_s + 1) * 1000) << p;
  }
  for (const auto& p : nanos_pings) {
    int64_t v = PingValue(p, 19);
    EXPECT_GE(v, (before_s - 1) * 1000000000) << p;
    EXPECT_LE(v, (after_s + 1) * 1000000000) << p;
  }
  flagged.Kill();
}

// ---- 5. Disconnect RPC ----

TEST_F(LifecycleTest, ClientCloseMakesDisconnectRpcWithFullState) {
  StartServer({"--headers", "cookie,x-api-token"});
  WsClient ws;
  ConnectWelcome(ws, "d1", "/cable?user=alice", {{"Cookie", "k=v"}, {"X-Api-Token", "t"}});
  const std::string a = WsClient::Identifier("AChannel");
  const std::string b = WsClient::Identifier("BChannel", {{"stream", "b"}});
  SubscribeConfirmed(ws, a);
  SubscribeConfirmed(ws, b);
  ASSERT_TRUE(ws.Perform(a, R"({"action":"state","value":"v1"})"));
  Barrier(ws);
  // Client-initiated close: the server echoes the close code.
  ASSERT_TRUE(ws.SendFrame(8, std::string("\x03\xe8", 2) + "bye"));
  WsFrame f = ws.Next();
  ASSERT_EQ(f.opcode, 8);
  EXPECT_EQ(f.close_code(), 1000);
  EXPECT_TRUE(ws.WaitEof());
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& s) { return s.disconnects().size() == 1; }, 5s));
  const auto d = rpc_.disconnects()[0];
  EXPECT_EQ(d.meta.sid, "d1");
  EXPECT_EQ(d.meta.protov, "v1");
  EXPECT_EQ(d.request.identifiers(), R"({"current_user":"alice"})");
  std::vector<std::string> subs(d.request.subscriptions().begin(), d.request.subscriptions().end());
  std::sort(subs.begin(), subs.end());
  std::vector<std::string> want_subs = {a, b};
  std::sort(want_subs.begin(), want_subs.end());
  EXPECT_EQ(subs, want_subs);
  const anycable::Env& env = d.request.env();
  EXPECT_EQ(env.url(), "http://127.0.0.1:" + std::to_string(server_.port()) + "/cable?user=alice");
  using M = std::map<std::string, std::string>;
  EXPECT_EQ(M(env.headers().begin(), env.headers().end()),
            (M{{"cookie", "k=v"}, {"x-api-token", "t"}, {"REMOTE_ADDR", "127.0.0.1"}}));
  EXPECT_EQ(M(env.cstate().begin(), env.cstate().end()), (M{{"user", "alice"}, {"last", "v1"}}));
  // istate: identifier -> JSON-encoded state map; identifiers without state are omitted.
  EXPECT_EQ(M(env.istate().begin(), env.istate().end()), (M{{a, R"({"k":"v1"})"}}));
  // Exactly one Disconnect per session: shutdown flushes every queued call before exiting.
  EXPECT_EQ(server_.Stop(), 0);
  EXPECT_EQ(rpc_.disconnects().size(), 1u);
}

TEST_F(LifecycleTest, TcpDropAlsoMakesDisconnectRpc) {
  StartServer();
  WsClient ws;
  ConnectWelcome(ws, "drop1");
  ws.Close();
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& s) { return s.disconnects().size() == 1; }, 5s));
  EXPECT_EQ(rpc_.disconnects()[0].meta.sid, "drop1");
  EXPECT_TRUE(rpc_.disconnects()[0].request.subscriptions().empty());
}

TEST_F(LifecycleTest, DisconnectModeNeverMakesNoDisconnectRpc) {
  StartServer({"--disconnect_mode", "never"});
  {
    WsClient ws;
    ConnectWelcome(ws, "never1");
    SubscribeConfirmed(ws, WsClient::Identifier("AChannel"));
    ASSERT_TRUE(ws.SendFrame(8, std::string("\x03\xe8", 2)));
    EXPECT_TRUE(ws.WaitEof());
  }
  WsClient live;
  ConnectWelcome(live, "never2");
  // Shutdown makes every Disconnect call still due (queued or for live sessions) before exiting,
  // so once it has exited nothing more can come.
  EXPECT_EQ(server_.Stop(), 0);
  EXPECT_EQ(live.WaitClose().close_code(), 1001);
  EXPECT_TRUE(rpc_.disconnects().empty());
}

TEST_F(LifecycleTest, DisconnectRateSpreadsCallsOut) {
  StartServer({"--disconnect_rate", "5"});
  constexpr int kClients = 10;
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<WsClient>());
    ConnectWelcome(*clients.back(), "rate" + std::to_string(i));
  }
  const auto closed_at = Clock::now();
  for (auto& c : clients) c->Close();
  std::this_thread::sleep_until(closed_at + 500ms);
  const size_t early = rpc_.disconnects().size();
  EXPECT_LT(early, static_cast<size_t>(kClients)) << "all Disconnect calls within 500 ms";
  ASSERT_TRUE(rpc_.WaitFor(
      [](const ScriptedRpcServer& s) { return s.disconnects().size() == kClients; }, 10s))
      << rpc_.disconnects().size() << " of " << kClients;
  std::set<std::string> sids;
  for (const auto& d : rpc_.disconnects()) sids.insert(d.meta.sid);
  EXPECT_EQ(sids.size(), static_cast<size_t>(kClients));
}

TEST_F(LifecycleTest, ClientLeavingDuringCommandStillGetsDisconnect) {
  Gate release;
  rpc_.SetCommandHandler([open = release.flag()](const anycable::CommandMessage& m,
                                                 const Metadata& meta,
                                                 anycable::CommandResponse* r) {
    if (m.command() == "message") Gate::Wait(open);
    return ScriptedRpcServer::DemoCommand(m, meta, r);
  });
  StartServer();
  WsClient ws;
  ConnectWelcome(ws, "leaver");
  const std::string id = WsClient::Identifier("EchoChannel");
  SubscribeConfirmed(ws, id);
  ASSERT_TRUE(ws.Perform(id, R"({"action":"echo"})"));
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& s) { return s.commands().size() == 2; }, 5s));
  ws.Close();
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& s) { return s.disconnects().size() == 1; }, 5s));
  auto d = rpc_.disconnects()[0];
  EXPECT_EQ(d.meta.sid, "leaver");
  ASSERT_EQ(d.request.subscriptions_size(), 1);
  EXPECT_EQ(d.request.subscriptions(0), id);
  release.Open();
}

TEST_F(LifecycleTest, ConnectThatSucceedsAfterClientLeftStillGetsDisconnect) {
  Gate release;
  rpc_.SetConnectHandler([open = release.flag()](const anycable::ConnectionRequest& req,
                                                 const Metadata& meta,
                                                 anycable::ConnectionResponse* r) {
    Gate::Wait(open);
    return ScriptedRpcServer::DemoConnect(req, meta, r);
  });
  StartServer();
  WsClient ws;
  ASSERT_EQ(ws.Connect(server_.port(), "/cable?user=ghost", {{"X-Request-ID", "ghost"}}), 101);
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& s) { return s.connects().size() == 1; }, 5s));
  ws.Close();
  // Give the server a moment to see the close (if it does not, the result is the same).
  std::this_thread::sleep_for(200ms);
  release.Open();
  // The app accepted the connection, so it must hear about its end (anycable-go makes Connect
  // and then the Disconnect call). Shutdown flushes every Disconnect still due.
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& s) { return s.connects().size() == 1; }, 5s));
  EXPECT_EQ(server_.Stop(), 0);
  auto ds = rpc_.disconnects();
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].meta.sid, "ghost");
  EXPECT_EQ(ds[0].request.identifiers(), R"({"current_user":"ghost"})");
}

// ---- 6. Graceful shutdown ----

TEST_F(LifecycleTest, SigtermSendsServerRestartThenClose1001AndDisconnectsEveryone) {
  StartServer();
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<WsClient>());
    ConnectWelcome(*clients.back(), "down" + std::to_string(i));
    SubscribeConfirmed(*clients.back(), WsClient::Identifier("AChannel"));
  }
  // The frames stay readable in our socket buffers after the process is gone.
  EXPECT_EQ(server_.Stop(), 0) << server_.Log();
  for (auto& c : clients) {
    WsFrame f = c->NextMessage();
    EXPECT_EQ(f.payload, R"({"type":"disconnect","reason":"server_restart","reconnect":true})");
    f = c->Next();
    ASSERT_EQ(f.opcode, 8);
    EXPECT_EQ(f.close_code(), 1001);
    EXPECT_EQ(f.close_reason(), "Server restart");
    EXPECT_TRUE(c->WaitEof());
  }
  auto ds = rpc_.disconnects();
  ASSERT_EQ(ds.size(), 3u);
  std::set<std::string> sids;
  for (const auto& d : ds) {
    sids.insert(d.meta.sid);
    EXPECT_EQ(d.request.subscriptions_size(), 1);
  }
  EXPECT_EQ(sids, (std::set<std::string>{"down0", "down1", "down2"}));
}

TEST_F(LifecycleTest, ShutdownClosesListenersAndWaitsForDisconnectCalls) {
  Gate release;
  rpc_.SetDisconnectHandler([open = release.flag()](const anycable::DisconnectRequest& req,
                                                    const Metadata& meta,
                                                    anycable::DisconnectResponse* r) {
    Gate::Wait(open);
    return ScriptedRpcServer::DemoDisconnect(req, meta, r);
  });
  StartServer();
  WsClient ws;
  ConnectWelcome(ws, "held");
  int exit_code = -2;
  std::thread stopper([&] { exit_code = server_.Stop(20s); });
  // While the Disconnect call is held the process is still alive, but its listeners are gone.
  bool health_gone = false;
  EXPECT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& s) { return s.disconnects().size() == 1; }, 10s));
  for (int i = 0; i < 200 && !health_gone; ++i) {
    health_gone = cable::test::HttpRequest(server_.port(), "GET", "/health").status == 0;
    if (!health_gone) std::this_thread::sleep_for(25ms);
  }
  EXPECT_TRUE(health_gone);
  EXPECT_TRUE(server_.running());
  release.Open();
  stopper.join();
  EXPECT_EQ(exit_code, 0);
}

TEST_F(LifecycleTest, SigtermDuringConnectClosesClientAndStillExitsCleanly) {
  Gate release;
  rpc_.SetConnectHandler([open = release.flag()](const anycable::ConnectionRequest& req,
                                                 const Metadata& meta,
                                                 anycable::ConnectionResponse* r) {
    Gate::Wait(open);
    return ScriptedRpcServer::DemoConnect(req, meta, r);
  });
  StartServer();
  WsClient ws;
  ASSERT_EQ(ws.Connect(server_.port(), "/cable?user=late", {{"X-Request-ID", "late"}}), 101);
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& s) { return s.connects().size() == 1; }, 5s));
  int exit_code = -2;
  std::thread stopper([&] { exit_code = server_.Stop(20s); });
  // The client is told right away, while its Connect is still running.
  WsFrame f = ws.Next();
  EXPECT_EQ(f.payload, R"({"type":"disconnect","reason":"server_restart","reconnect":true})");
  f = ws.Next();
  EXPECT_EQ(f.opcode, 8);
  EXPECT_EQ(f.close_code(), 1001);
  release.Open();
  stopper.join();
  EXPECT_EQ(exit_code, 0);
  // The app accepted the connection after all, so it got its Disconnect before the exit.
  auto ds = rpc_.disconnects();
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].meta.sid, "late");
}

// ---- 8. WebSocket limits ----

TEST_F(LifecycleTest, OversizedMessageClosesWith1009) {
  StartServer({"--max_message_size", "1024"});
  WsClient ws;
  ConnectWelcome(ws, "big");
  const std::string id = WsClient::Identifier("EchoChannel");
  SubscribeConfirmed(ws, id);
  // Within the limit: fine.
  std::string ok_data = R"({"action":"echo","pad":")" + std::string(900, 'x') + "\"}";
  ASSERT_TRUE(ws.Perform(id, ok_data));
  EXPECT_EQ(ws.NextMessage().payload, MessageFrame(id, ok_data));
  ASSERT_TRUE(ws.Perform(id, R"({"action":"echo","pad":")" + std::string(2000, 'x') + "\"}"));
  WsFrame f = ws.WaitClose();
  ASSERT_EQ(f.opcode, 8);
  EXPECT_EQ(f.close_code(), 1009);
  EXPECT_TRUE(ws.WaitEof());
  EXPECT_EQ(CommandCount(), 2u);
  // The session ends like any other: Disconnect RPC.
  ASSERT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& s) { return s.disconnects().size() == 1; }, 5s));
}

TEST_F(LifecycleTest, InvalidUtf8TextClosesWith1007) {
  StartServer();
  WsClient ws;
  ConnectWelcome(ws, "utf");
  ASSERT_TRUE(ws.SendFrame(1, "{\"command\":\"ping\",\"x\":\"\xc3\x28\"}"));
  WsFrame f = ws.WaitClose();
  ASSERT_EQ(f.opcode, 8);
  EXPECT_EQ(f.close_code(), 1007);
  EXPECT_TRUE(ws.WaitEof());
}

TEST_F(LifecycleTest, UnmaskedClientFrameClosesWith1002) {
  StartServer();
  WsClient ws;
  ConnectWelcome(ws, "unmasked");
  ASSERT_TRUE(ws.SendFrame(1, R"({"command":"ping"})", true, /*mask=*/false));
  WsFrame f = ws.WaitClose();
  ASSERT_EQ(f.opcode, 8);
  EXPECT_EQ(f.close_code(), 1002);
  EXPECT_TRUE(ws.WaitEof());
}

TEST_F(LifecycleTest, NativePingGetsPongAndTextStillWorks) {
  StartServer();
  WsClient ws;
  ConnectWelcome(ws, "native");
  ASSERT_TRUE(ws.SendFrame(9, "hello"));
  WsFrame f = ws.Next();
  EXPECT_EQ(f.opcode, 10);
  EXPECT_EQ(f.payload, "hello");
  Barrier(ws);
}

}  // namespace
}  // namespace cable::itcore
