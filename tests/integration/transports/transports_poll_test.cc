// Long polling (--poll; AnyCable PRO's docs/long_polling.md) through the real binary, as raw HTTP:
// the whole lifecycle (init with commands → poll id + welcome/confirmations, 204 after the poll
// interval, queued messages, commands in a poll, expiry → 401, remote disconnect → 401, re-init),
// polls that land on another worker, bad input (garbage ids, sizes, methods) and the queue bound.
#include <gtest/gtest.h>

#include <thread>

#include "transports_util.h"

namespace cable::ittransports {
namespace {

using cable::test::HttpRequest;
using cable::test::HttpResponse;
using cable::test::JsonString;
using cable::tools::ScriptedRpcServer;

const std::string kChat = R"({"channel":"ChatChannel"})";

std::vector<std::string> Lines(const std::string& body) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < body.size()) {
    size_t nl = body.find('\n', start);
    if (nl == std::string::npos) nl = body.size();
    if (nl > start) out.push_back(body.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

class PollTest : public cable::itcore::CoreTest {
 protected:
  int port() { return server_.port(); }
  HttpResponse Poll(const std::string& id, const std::string& body = "",
                    const std::string& target = "/lp") {
    std::map<std::string, std::string> h;
    if (!id.empty()) h["X-AnyCable-Poll-ID"] = id;
    return HttpRequest(port(), "POST", target, h, body);
  }
  static std::string Subscribe(const std::string& identifier) {
    return "{\"command\":\"subscribe\",\"identifier\":" + JsonString(identifier) + "}\n";
  }
  // A poll interval long enough that, on a busy machine, an answer due to a message or a takeover
  // is never confused with the interval's 204; a keepalive long enough for the test's own pauses.
  std::vector<std::string> base_ = {"--poll", "--poll_interval=3", "--poll_flush_interval=50",
                                    "--poll_keepalive_timeout=2", "--metrics_http=/metrics"};
};

TEST_F(PollTest, WholeLifecycle) {
  StartServer(base_);
  // Init: commands ride along; the answer has the poll id and the welcome + confirmation.
  auto init = Poll("", Subscribe(kChat), "/lp?user=ann");
  ASSERT_EQ(init.status, 200) << server_.Log();
  ASSERT_TRUE(init.headers.count("x-anycable-poll-id"));
  const std::string id = init.headers["x-anycable-poll-id"];
  EXPECT_EQ(init.headers["access-control-allow-origin"], "*");
  auto lines = Lines(init.body);
  ASSERT_EQ(lines.size(), 2u) << init.body;
  EXPECT_NE(lines[0].find("\"type\":\"welcome\""), std::string::npos);
  EXPECT_EQ(lines[1], ConfirmFrame(kChat));
  EXPECT_EQ(MetricValue(port(), "anycable_go_long_poll_clients_num"), 1);

  // Nothing queued: 204 after --poll_interval.
  auto start = std::chrono::steady_clock::now();
  auto empty = Poll(id);
  EXPECT_EQ(empty.status, 204);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 2900ms);

  // Queued while no poll was open: returned at once. A 201 means "accepted", not "queued on the
  // session's worker" (delivery is asynchronous), so a poll may come back with only the first one:
  // poll again (bounded) until both are in, and check them in order.
  Broadcast(Publication("ChatChannel", R"({"text":"one"})"));
  Broadcast(Publication("ChatChannel", R"({"text":"two"})"));
  std::vector<std::string> queued_lines;
  for (int attempt = 0; attempt < 5 && queued_lines.size() < 2; ++attempt) {
    auto queued = Poll(id);
    ASSERT_EQ(queued.status, 200);
    EXPECT_EQ(queued.headers["x-anycable-poll-id"], id);
    for (auto& line : Lines(queued.body)) queued_lines.push_back(std::move(line));
  }
  EXPECT_EQ(queued_lines, (std::vector<std::string>{MessageFrame(kChat, R"({"text":"one"})"),
                                                    MessageFrame(kChat, R"({"text":"two"})")}));

  // A message arriving while a poll waits: answered after the flush interval, not the poll one.
  std::thread later([&] {
    std::this_thread::sleep_for(200ms);
    Broadcast(Publication("ChatChannel", R"({"text":"three"})"));
  });
  start = std::chrono::steady_clock::now();
  auto waited = Poll(id);
  later.join();
  EXPECT_EQ(waited.status, 200);
  EXPECT_EQ(Lines(waited.body),
            (std::vector<std::string>{MessageFrame(kChat, R"({"text":"three"})")}));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2900ms);

  // Commands in a poll run on the session (the demo app echoes).
  const std::string echo = "{\"command\":\"message\",\"identifier\":" + JsonString(kChat) +
                           ",\"data\":" + JsonString(R"({"action":"echo","x":1})") + "}\n";
  auto echoed = Poll(id, echo);
  ASSERT_EQ(echoed.status, 200);
  EXPECT_EQ(Lines(echoed.body),
            (std::vector<std::string>{MessageFrame(kChat, R"({"action":"echo","x":1})")}));

  // No poll for --poll_keepalive_timeout: the session expires (Disconnect RPC) and the next poll
  // gets 401 with session_expired.
  std::this_thread::sleep_for(2600ms);
  EXPECT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& r) { return r.disconnects().size() == 1; }, 5s));
  auto expired = Poll(id);
  EXPECT_EQ(expired.status, 401);
  EXPECT_EQ(Lines(expired.body),
            (std::vector<std::string>{
                R"({"type":"disconnect","reason":"session_expired","reconnect":false})"}));
  EXPECT_EQ(MetricValue(port(), "anycable_go_long_poll_clients_num"), 0);
  EXPECT_GE(MetricValue(port(), "anycable_go_long_poll_stale_requests_total"), 1);

  // Re-init: a new session with a new id.
  auto again = Poll("", Subscribe(kChat), "/lp?user=ann");
  ASSERT_EQ(again.status, 200);
  EXPECT_NE(again.headers["x-anycable-poll-id"], id);
}

TEST_F(PollTest, RemoteDisconnectAnswers401WithTheDisconnect) {
  StartServer(base_);
  auto init = Poll("", Subscribe(kChat), "/lp?user=rem");
  ASSERT_EQ(init.status, 200);
  const std::string id = init.headers["x-anycable-poll-id"];
  // While no poll is open: the next poll gets it.
  Broadcast(
      R"({"command":"disconnect","payload":{"identifier":"{\"current_user\":\"rem\"}","reconnect":false}})");
  EXPECT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& r) { return r.disconnects().size() == 1; }, 5s));
  auto r = Poll(id);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(
      Lines(r.body),
      (std::vector<std::string>{R"({"type":"disconnect","reason":"remote","reconnect":false})"}));

  // While a poll is open: that poll is answered.
  auto init2 = Poll("", Subscribe(kChat), "/lp?user=rem2");
  ASSERT_EQ(init2.status, 200);
  const std::string id2 = init2.headers["x-anycable-poll-id"];
  std::thread later([&] {
    std::this_thread::sleep_for(300ms);
    Broadcast(
        R"({"command":"disconnect","payload":{"identifier":"{\"current_user\":\"rem2\"}","reconnect":true}})");
  });
  auto open = Poll(id2);
  later.join();
  EXPECT_EQ(open.status, 401);
  EXPECT_EQ(
      Lines(open.body),
      (std::vector<std::string>{R"({"type":"disconnect","reason":"remote","reconnect":true})"}));
}

TEST_F(PollTest, UnauthorizedInitIs401) {
  StartServer(base_);
  auto r = Poll("", Subscribe(kChat), "/lp?reject=1");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.headers.count("x-anycable-poll-id"), 0u);
  EXPECT_EQ(Lines(r.body),
            (std::vector<std::string>{
                R"({"type":"disconnect","reason":"unauthorized","reconnect":false})"}));
  EXPECT_EQ(MetricValue(port(), "anycable_go_long_poll_clients_num"), 0);
}

TEST_F(PollTest, BadInput) {
  std::vector<std::string> args = base_;
  args.insert(args.end(), {"--poll_max_request_size", "1024"});
  StartServer(args);
  // Garbage, foreign-looking and stolen-but-expired ids: 401, counted as stale.
  EXPECT_EQ(Poll("garbage").status, 401);
  EXPECT_EQ(Poll("0.AAAAAAAAAAAAAAAAAAAAA").status, 401);
  EXPECT_EQ(Poll("99.x").status, 401);
  EXPECT_EQ(Poll(std::string(5000, 'z')).status, 401);
  EXPECT_GE(MetricValue(port(), "anycable_go_long_poll_stale_requests_total"), 4);
  // Body limits and methods.
  EXPECT_EQ(Poll("", std::string(2000, ' ')).status, 413);
  EXPECT_EQ(HttpRequest(port(), "GET", "/lp").status, 405);
  EXPECT_EQ(HttpRequest(port(), "OPTIONS", "/lp").status, 200);
  // Malformed commands do not break the session (as a WebSocket client's would not).
  auto init = Poll("", "not json\n" + Subscribe(kChat), "/lp?user=bad");
  EXPECT_EQ(init.status, 200);
}

TEST_F(PollTest, PollsFromManyConnectionsReachTheOwner) {
  // Two workers: each poll is a new connection, which the kernel may hand to either worker;
  // the owner is named by the id.
  std::vector<std::string> args = base_;
  args.insert(args.end(), {"--workers", "2"});
  StartServer(args);
  auto init = Poll("", Subscribe(kChat), "/lp?user=w");
  ASSERT_EQ(init.status, 200);
  const std::string id = init.headers["x-anycable-poll-id"];
  for (int i = 0; i < 10; ++i) {
    Broadcast(Publication("ChatChannel", "{\"i\":" + std::to_string(i) + "}"));
    auto r = Poll(id);
    ASSERT_EQ(r.status, 200) << i;
    EXPECT_EQ(Lines(r.body),
              (std::vector<std::string>{MessageFrame(kChat, "{\"i\":" + std::to_string(i) + "}")}));
  }
}

TEST_F(PollTest, AbandonedPollKeepsItsLinesAndTheSessionStillExpires) {
  std::vector<std::string> args = base_;
  args.insert(args.end(), {"--workers", "1"});
  StartServer(args);
  auto init = Poll("", Subscribe(kChat), "/lp?user=gone");
  ASSERT_EQ(init.status, 200);
  const std::string id = init.headers["x-anycable-poll-id"];
  {
    // A poll whose client gives up before the answer.
    HttpStream abandoned;
    ASSERT_TRUE(abandoned.Open(port(), HttpPostRequest("/lp", "", {{"X-AnyCable-Poll-ID", id}})));
    std::this_thread::sleep_for(100ms);
  }
  std::this_thread::sleep_for(100ms);
  Broadcast(Publication("ChatChannel", R"({"kept":1})"));
  std::this_thread::sleep_for(300ms);  // past the flush interval: the answer found no client
  auto next = Poll(id);
  ASSERT_EQ(next.status, 200);
  EXPECT_EQ(Lines(next.body), (std::vector<std::string>{MessageFrame(kChat, R"({"kept":1})")}));
  // Then no more polls: it expires as usual.
  EXPECT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& r) { return r.disconnects().size() == 1; }, 5s));
  EXPECT_EQ(Poll(id).status, 401);
}

TEST_F(PollTest, NewerPollTakesOverTheOpenOne) {
  // @anycable/long-polling aborts its open poll to send commands at once: the open one is
  // answered empty and whatever is due goes to the newer one.
  StartServer(base_);
  auto init = Poll("", Subscribe(kChat), "/lp?user=over");
  ASSERT_EQ(init.status, 200);
  const std::string id = init.headers["x-anycable-poll-id"];
  HttpResponse first;
  std::thread open([&] { first = Poll(id); });
  std::this_thread::sleep_for(500ms);
  const std::string echo = "{\"command\":\"message\",\"identifier\":" + JsonString(kChat) +
                           ",\"data\":" + JsonString(R"({"action":"echo","y":2})") + "}\n";
  auto second = Poll(id, echo);
  open.join();
  EXPECT_EQ(first.status, 204);
  EXPECT_EQ(first.body, "");
  ASSERT_EQ(second.status, 200);
  EXPECT_EQ(Lines(second.body),
            (std::vector<std::string>{MessageFrame(kChat, R"({"action":"echo","y":2})")}));
}

TEST_F(PollTest, QueueIsBoundedWhileNoPollIsOpen) {
  std::vector<std::string> args = base_;
  args = {"--poll", "--poll_keepalive_timeout", "30",      "--ws_max_pending_size",
          "65536",  "--metrics_http",           "/metrics"};
  StartServer(args);
  auto init = Poll("", Subscribe(kChat), "/lp?user=slow");
  ASSERT_EQ(init.status, 200);
  const std::string id = init.headers["x-anycable-poll-id"];
  const std::string big(8000, 'y');
  for (int i = 0; i < 20; ++i) Broadcast(Publication("ChatChannel", "\"" + big + "\""));
  EXPECT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& r) { return r.disconnects().size() == 1; }, 5s));
  auto r = Poll(id);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(
      Lines(r.body),
      (std::vector<std::string>{R"({"type":"disconnect","reason":"too_slow","reconnect":true})"}));
  EXPECT_GE(MetricValue(port(), "anycable_go_disconnected_slow_clients_total"), 1);
}

TEST_F(PollTest, ShutdownEndsSessions) {
  StartServer(base_);
  auto init = Poll("", Subscribe(kChat), "/lp?user=s");
  ASSERT_EQ(init.status, 200);
  EXPECT_EQ(server_.Stop(), 0);
  EXPECT_TRUE(
      rpc_.WaitFor([](const ScriptedRpcServer& r) { return r.disconnects().size() == 1; }, 5s));
}

}  // namespace
}  // namespace cable::ittransports
