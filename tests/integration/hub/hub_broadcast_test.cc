// Broadcast delivery through the real binary with two workers (spec §1 "Broadcast delivery",
// "Broadcasting: HTTP", "Publication format", "Remote disconnect"; §5 items 17-24).
//
// Negative checks ("X did not get Y") never wait for silence: a later marker publication must be
// the next thing the client reads, because a connection's frames arrive in delivery order.
#include <atomic>
#include <cstdlib>
#include <set>
#include <thread>

#include "hub_fixture.h"

namespace cable::ithub {
namespace {

class BroadcastTest : public HubTest {};

// ---- ordering ----

TEST_F(BroadcastTest, ConcurrentPublishersAllClientsSeeOneGlobalOrder) {
  StartServer();
  constexpr int kClients = 20;
  constexpr int kPublishers = 4;
  constexpr int kPerPublisher = 200;
  constexpr size_t kTotal = kPublishers * kPerPublisher;
  const std::string id = StreamId("order");
  Swarm swarm;
  for (int i = 0; i < kClients; ++i) {
    ASSERT_GE(swarm.Add(server_.port(), "/cable", MaskedText(SubscribeCommand(id))), 0);
  }
  // (publisher, number) per client, in arrival order.
  std::vector<std::vector<std::pair<int, int>>> got(kClients);
  std::vector<int> confirmed(kClients, 0);
  size_t confirmed_total = 0, received_total = 0;
  std::vector<std::string> bad;
  auto on_text = [&](size_t c, std::string_view text) {
    if (text.find("confirm_subscription") != std::string_view::npos) {
      ++confirmed[c];
      ++confirmed_total;
      return;
    }
    constexpr std::string_view kMarker = "\"message\":{\"p\":";
    size_t at = text.find(kMarker);
    if (at == std::string_view::npos) {
      if (text.find("\"type\":\"welcome\"") == std::string_view::npos &&
          text.find("\"type\":\"ping\"") == std::string_view::npos) {
        bad.emplace_back(text);
      }
      return;
    }
    std::string rest(text.substr(at + kMarker.size()));
    int p = -1, n = -1;
    if (std::sscanf(rest.c_str(), "%d,\"i\":%d}}", &p, &n) != 2) {
      bad.emplace_back(text);
      return;
    }
    got[c].emplace_back(p, n);
    ++received_total;
  };
  ASSERT_TRUE(swarm.Pump(
      on_text, [&] { return confirmed_total == kClients; }, 30s))
      << confirmed_total << " of " << kClients << " subscribed";
  ASSERT_EQ(swarm.closed(), 0u);

  std::atomic<int> failed_posts{0};
  std::vector<std::thread> publishers;
  for (int p = 0; p < kPublishers; ++p) {
    publishers.emplace_back([&, p] {
      for (int n = 0; n < kPerPublisher; ++n) {
        std::string data = "{\"p\":" + std::to_string(p) + ",\"i\":" + std::to_string(n) + "}";
        if (Publish(Pub("order", data)) != 201) failed_posts.fetch_add(1);
      }
    });
  }
  bool all = swarm.Pump(
      on_text, [&] { return received_total == kClients * kTotal; }, 60s);
  for (auto& t : publishers) t.join();
  ASSERT_EQ(failed_posts.load(), 0);
  ASSERT_TRUE(all) << received_total << " of " << kClients * kTotal << " frames arrived";
  EXPECT_TRUE(bad.empty()) << "unexpected frame: " << bad.front();
  EXPECT_EQ(swarm.closed(), 0u);
  for (int c = 0; c < kClients; ++c) {
    ASSERT_EQ(got[c].size(), kTotal) << "client " << c;
    std::vector<int> next(kPublishers, 0);
    for (auto [p, n] : got[c]) {
      ASSERT_TRUE(p >= 0 && p < kPublishers);
      ASSERT_EQ(n, next[p]) << "client " << c << " publisher " << p << ": duplicate or reorder";
      ++next[p];
    }
  }
  for (int c = 1; c < kClients; ++c) {
    EXPECT_TRUE(got[c] == got[0]) << "client " << c << " saw another global order than client 0";
  }
}

TEST_F(BroadcastTest, BatchIsDeliveredInOrder) {
  StartServer();
  WsClient ws;
  ASSERT_FALSE(Connect(ws).empty());
  const std::string id = StreamId("batch");
  ASSERT_TRUE(Subscribe(ws, id));
  std::string batch = "[";
  for (int i = 0; i < 50; ++i) {
    if (i) batch += ",";
    batch += Pub("batch", "{\"i\":" + std::to_string(i) + "}");
  }
  batch += "]";
  ASSERT_EQ(Publish(batch), 201);
  for (int i = 0; i < 50; ++i) {
    WsFrame f = ws.NextMessage(10s);
    ASSERT_EQ(f.payload, Delivered(id, "{\"i\":" + std::to_string(i) + "}")) << i;
  }
}

TEST_F(BroadcastTest, BatchesFromTwoConnectionsStayContiguousPerBatchOrder) {
  // Two batches to two streams at once; each stream's subscriber sees its batch in order.
  StartServer();
  WsClient a, b;
  ASSERT_FALSE(Connect(a).empty());
  ASSERT_FALSE(Connect(b).empty());
  ASSERT_TRUE(Subscribe(a, StreamId("ba")));
  ASSERT_TRUE(Subscribe(b, StreamId("bb")));
  auto make = [](const std::string& stream) {
    std::string batch = "[";
    for (int i = 0; i < 100; ++i) batch += (i ? "," : "") + Pub(stream, std::to_string(i));
    return batch + "]";
  };
  std::thread t([&] { EXPECT_EQ(Publish(make("bb")), 201); });
  ASSERT_EQ(Publish(make("ba")), 201);
  t.join();
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(a.NextMessage(10s).payload, Delivered(StreamId("ba"), std::to_string(i)));
    ASSERT_EQ(b.NextMessage(10s).payload, Delivered(StreamId("bb"), std::to_string(i)));
  }
}

// ---- exclude_socket, identifiers ----

TEST_F(BroadcastTest, ExcludeSocketSkipsExactlyTheSender) {
  StartServer();
  WsClient a, b;
  std::string sid_a = Connect(a);
  std::string sid_b = Connect(b);
  ASSERT_FALSE(sid_a.empty());
  ASSERT_FALSE(sid_b.empty());
  ASSERT_NE(sid_a, sid_b);
  const std::string id = StreamId("room");
  ASSERT_TRUE(Subscribe(a, id));
  ASSERT_TRUE(Subscribe(b, id));
  ASSERT_EQ(Publish(Pub("room", "\"from a\"", sid_a)), 201);
  ASSERT_EQ(Publish(Pub("room", "\"marker\"")), 201);
  EXPECT_EQ(b.NextMessage().payload, Delivered(id, "\"from a\""));
  EXPECT_EQ(b.NextMessage().payload, Delivered(id, "\"marker\""));
  EXPECT_EQ(a.NextMessage().payload, Delivered(id, "\"marker\"")) << "the excluded sid got it";
  // An exclude_socket naming nobody excludes nobody.
  ASSERT_EQ(Publish(Pub("room", "\"all\"", "no-such-sid")), 201);
  EXPECT_EQ(a.NextMessage().payload, Delivered(id, "\"all\""));
  EXPECT_EQ(b.NextMessage().payload, Delivered(id, "\"all\""));
}

TEST_F(BroadcastTest, SameStreamUnderTwoIdentifiersGivesTwoFrames) {
  StartServer();
  WsClient ws;
  ASSERT_FALSE(Connect(ws).empty());
  const std::string one = StreamId("shared", "One");
  const std::string two = StreamId("shared", "Two");
  ASSERT_TRUE(Subscribe(ws, one));
  ASSERT_TRUE(Subscribe(ws, two));
  // The same stream added twice to one identifier still gives one frame for that identifier.
  ASSERT_TRUE(ws.Perform(one, R"({"action":"follow","stream":"shared"})"));
  ASSERT_TRUE(ws.Perform(one, R"({"action":"echo","done":1})"));  // commands run in order
  ASSERT_TRUE(ws.WaitFor("\"done\":1", 10s).has_value());
  for (const char* msg : {"1", "2"}) {
    ASSERT_EQ(Publish(Pub("shared", msg)), 201);
    std::set<std::string> frames;
    frames.insert(ws.NextMessage().payload);
    frames.insert(ws.NextMessage().payload);
    EXPECT_EQ(frames, (std::set<std::string>{Delivered(one, msg), Delivered(two, msg)})) << msg;
  }
  // A client on another worker with one identifier gets one frame.
  WsClient other;
  ASSERT_FALSE(Connect(other).empty());
  ASSERT_TRUE(Subscribe(other, two));
  ASSERT_EQ(Publish(Pub("shared", "3")), 201);
  ASSERT_EQ(Publish(Pub("shared", "4")), 201);
  EXPECT_EQ(other.NextMessage().payload, Delivered(two, "3"));
  EXPECT_EQ(other.NextMessage().payload, Delivered(two, "4"));
}

TEST_F(BroadcastTest, PublicationToAStreamWithoutSubscribersIsANoOp) {
  StartServer();
  WsClient ws;
  ASSERT_FALSE(Connect(ws).empty());
  const std::string id = StreamId("watched");
  ASSERT_TRUE(Subscribe(ws, id));
  ASSERT_EQ(Publish(Pub("nobody", "1")), 201);
  ASSERT_EQ(Publish(Pub("watched", "2")), 201);
  EXPECT_EQ(ws.NextMessage().payload, Delivered(id, "2"));
}

// ---- data rule ----

TEST_F(BroadcastTest, DataIsEmbeddedAsJsonOrSentAsAString) {
  StartServer();
  WsClient ws;
  ASSERT_FALSE(Connect(ws).empty());
  const std::string id = StreamId("data");
  ASSERT_TRUE(Subscribe(ws, id));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"a":1})", R"({"a":1})"},            // JSON object embedded
      {R"([1,"x"])", R"([1,"x"])"},            // JSON array embedded
      {"42", "42"},                            // JSON number
      {R"("quoted")", R"("quoted")"},          // JSON string stays that string
      {"hello world", R"("hello world")"},     // plain text → JSON string
      {"null", R"("null")"},                   // literal null → the string "null"
      {R"({"broken":)", R"("{\"broken\":")"},  // invalid JSON → JSON string
  };
  for (const auto& [data, message] : cases) {
    ASSERT_EQ(Publish(Pub("data", data)), 201) << data;
    EXPECT_EQ(ws.NextMessage().payload, Delivered(id, message)) << data;
  }
}

// ---- HTTP endpoint ----

TEST_F(BroadcastTest, GarbageBodyIs201AndDeliversNothing) {
  StartServer();
  WsClient ws;
  ASSERT_FALSE(Connect(ws).empty());
  const std::string id = StreamId("g");
  ASSERT_TRUE(Subscribe(ws, id));
  EXPECT_EQ(Publish("not json at all {"), 201);
  EXPECT_EQ(Publish(R"({"nostream":"g","data":"x"})"), 201);
  EXPECT_EQ(Publish(""), 201);
  ASSERT_EQ(Publish(Pub("g", "\"after\"")), 201);
  EXPECT_EQ(ws.NextMessage().payload, Delivered(id, "\"after\""));
}

TEST_F(BroadcastTest, NonPostIs422AndNotPublished) {
  StartServer();
  WsClient ws;
  ASSERT_FALSE(Connect(ws).empty());
  const std::string id = StreamId("m");
  ASSERT_TRUE(Subscribe(ws, id));
  auto get = cable::test::HttpRequest(broadcast_port_, "GET", "/_broadcast");
  EXPECT_EQ(get.status, 422);
  auto put =
      cable::test::HttpRequest(broadcast_port_, "PUT", "/_broadcast", {}, Pub("m", "\"by put\""));
  EXPECT_EQ(put.status, 422);
  ASSERT_EQ(Publish(Pub("m", "\"by post\"")), 201);
  EXPECT_EQ(ws.NextMessage().payload, Delivered(id, "\"by post\""));
}

TEST_F(BroadcastTest, KeyedEndpointIsOnTheMainPortAndChecksTheBearer) {
  StartServer({"--broadcast_key", "s3cret"}, /*own_broadcast_port=*/false);
  WsClient ws;
  ASSERT_FALSE(Connect(ws).empty());
  const std::string id = StreamId("k");
  ASSERT_TRUE(Subscribe(ws, id));
  EXPECT_EQ(Publish(Pub("k", "\"no auth\"")), 401);
  EXPECT_EQ(Publish(Pub("k", "\"wrong\""), {{"Authorization", "Bearer nope"}}), 401);
  EXPECT_EQ(Publish(Pub("k", "\"no scheme\""), {{"Authorization", "s3cret"}}), 401);
  EXPECT_EQ(Publish(Pub("k", "\"prefix\""), {{"Authorization", "Bearer s3cre"}}), 401);
  EXPECT_EQ(Publish(Pub("k", "\"ok\""), {{"Authorization", "Bearer s3cret"}}), 201);
  EXPECT_EQ(ws.NextMessage().payload, Delivered(id, "\"ok\"")) << "a rejected publication leaked";
}

// ---- remote disconnect ----

TEST_F(BroadcastTest, RemoteDisconnectClosesEveryMatchingSessionOnly) {
  StartServer();
  constexpr int kAlices = 4;  // likely spread over both workers
  std::vector<std::unique_ptr<WsClient>> alices;
  const std::string id = StreamId("kick");
  for (int i = 0; i < kAlices; ++i) {
    alices.push_back(std::make_unique<WsClient>());
    ASSERT_FALSE(Connect(*alices.back(), "?user=alice").empty());
    ASSERT_TRUE(Subscribe(*alices.back(), id));
  }
  WsClient bob, alice_bob;
  ASSERT_FALSE(Connect(bob, "?user=bob").empty());
  ASSERT_TRUE(Subscribe(bob, id));
  ASSERT_FALSE(Connect(alice_bob, "?user=alicebob").empty());  // a prefix match is no match
  ASSERT_TRUE(Subscribe(alice_bob, id));

  const std::string cmd = R"({"command":"disconnect","payload":{"identifier":)" +
                          JsonString(R"({"current_user":"alice"})") + R"(,"reconnect":false}})";
  ASSERT_EQ(Publish(cmd), 201);
  for (int i = 0; i < kAlices; ++i) {
    WsClient& a = *alices[i];
    EXPECT_EQ(a.NextMessage(10s).payload,
              R"({"type":"disconnect","reason":"remote","reconnect":false})")
        << "alice " << i;
    WsFrame close = a.WaitClose(10s);
    EXPECT_EQ(close.opcode, 8) << "alice " << i;
    EXPECT_EQ(close.close_code(), 1000);
    EXPECT_EQ(close.close_reason(), "Closed remotely");
    EXPECT_TRUE(a.WaitEof(10s));
  }
  ASSERT_EQ(Publish(Pub("kick", "\"still here\"")), 201);
  EXPECT_EQ(bob.NextMessage().payload, Delivered(id, "\"still here\""));
  EXPECT_EQ(alice_bob.NextMessage().payload, Delivered(id, "\"still here\""));

  // reconnect:true is passed through.
  const std::string cmd2 = R"({"command":"disconnect","payload":{"identifier":)" +
                           JsonString(R"({"current_user":"bob"})") + R"(,"reconnect":true}})";
  ASSERT_EQ(Publish(cmd2), 201);
  EXPECT_EQ(bob.NextMessage(10s).payload,
            R"({"type":"disconnect","reason":"remote","reconnect":true})");
  EXPECT_EQ(bob.WaitClose(10s).close_code(), 1000);
  ASSERT_EQ(Publish(Pub("kick", "\"last\"")), 201);
  EXPECT_EQ(alice_bob.NextMessage().payload, Delivered(id, "\"last\""));
}

TEST_F(BroadcastTest, CommandInsideABatchIsNotExecuted) {
  // As in Go, a body whose first element has "stream" is a batch of publications: a command
  // element has no stream and reaches nobody; the session stays open.
  StartServer();
  WsClient carol;
  ASSERT_FALSE(Connect(carol, "?user=carol").empty());
  const std::string id = StreamId("b2");
  ASSERT_TRUE(Subscribe(carol, id));
  const std::string batch = "[" + Pub("b2", "\"before\"") +
                            R"(,{"command":"disconnect","payload":{"identifier":)" +
                            JsonString(R"({"current_user":"carol"})") + R"(,"reconnect":false}},)" +
                            Pub("b2", "\"after\"") + "]";
  ASSERT_EQ(Publish(batch), 201);
  EXPECT_EQ(carol.NextMessage().payload, Delivered(id, "\"before\""));
  EXPECT_EQ(carol.NextMessage().payload, Delivered(id, "\"after\""));
  ASSERT_EQ(Publish(Pub("b2", "\"open\"")), 201);
  EXPECT_EQ(carol.NextMessage().payload, Delivered(id, "\"open\""));
}

}  // namespace
}  // namespace cable::ithub
