// Slow client protection through the real binary (spec §1 "Slow client protection", §5 item 26):
// a subscriber that stops reading is disconnected with too_slow once more than
// --ws_max_pending_size bytes wait for it, while a reader that keeps up loses nothing.
//
// No timing thresholds: publishing goes on in rounds until the server reports the slow session
// gone (its Disconnect RPC reaches the scripted RPC server), bounded by a volume cap.
#include <sys/socket.h>

#include <algorithm>
#include <cstdlib>

#include "hub_fixture.h"

namespace cable::ithub {
namespace {

class SlowTest : public HubTest {
 protected:
  // Opens the non-reading client (small SO_RCVBUF set before connect), subscribed to `id`; returns
  // its sid.
  std::string OpenSlow(Swarm& swarm, const std::string& id, const std::string& query = "") {
    int idx = swarm.Add(server_.port(), "/cable" + query, MaskedText(SubscribeCommand(id)), 4096);
    if (idx != 0) return "";
    std::string sid;
    bool confirmed = false;
    swarm.Pump(
        [&](size_t, std::string_view text) {
          if (sid.empty()) sid = SidOf(text);
          if (text.find("confirm_subscription") != std::string_view::npos) confirmed = true;
        },
        [&] { return confirmed; }, 10s, {0});
    return confirmed ? sid : "";
  }
  bool SlowGone(const std::string& sid) {
    for (const auto& d : rpc_.disconnects()) {
      if (d.meta.sid == sid) return true;
    }
    return false;
  }
  // What the slow client reads once it finally reads: publication numbers, other text frames.
  struct SlowRead {
    std::vector<int> numbers;
    std::vector<std::string> others;
  };
  SlowRead DrainSlow(Swarm& swarm) {
    SlowRead r;
    swarm.Pump(
        [&](size_t, std::string_view text) {
          size_t at = text.find("\"message\":{\"n\":");
          if (at != std::string_view::npos) {
            r.numbers.push_back(std::atoi(std::string(text.substr(at + 15, 12)).c_str()));
          } else if (text.find("\"type\":\"ping\"") == std::string_view::npos &&
                     text.find("confirm_subscription") == std::string_view::npos) {
            r.others.emplace_back(text);
          }
        },
        [&] { return swarm.client(0).closed; }, 60s, {0});
    return r;
  }
};

std::string PaddedData(int n, size_t pad) {
  return "{\"n\":" + std::to_string(n) + ",\"pad\":\"" + std::string(pad, 'x') + "\"}";
}

TEST_F(SlowTest, SlowReaderIsDisconnectedWhileFastReaderGetsEverything) {
  // A long write timeout keeps the too_slow path (not the write deadline) in charge, and lets
  // the slow client read its last frames before the server gives up flushing.
  StartServer({"--ws_max_pending_size", "65536", "--ws_write_timeout", "60"});
  const std::string id = StreamId("firehose");
  Swarm swarm;
  std::string slow_sid = OpenSlow(swarm, id);
  ASSERT_FALSE(slow_sid.empty());
  WsClient fast;
  ASSERT_FALSE(Connect(fast).empty());
  ASSERT_TRUE(Subscribe(fast, id));

  // Rounds of 16 x ~2 KiB (well under 64 KiB, so the fast reader, which drains each round before
  // the next, is never over the limit), until the slow one is gone; at most ~64 MiB in all.
  constexpr int kPerRound = 16;
  constexpr size_t kPad = 2000;
  constexpr int kMaxRounds = 2000;
  int published = 0;
  int rounds_after_gone = -1;
  for (int round = 0; round < kMaxRounds && rounds_after_gone < 3; ++round) {
    std::string batch = "[";
    for (int k = 0; k < kPerRound; ++k) {
      batch += (k ? "," : "") + Pub("firehose", PaddedData(published + k, kPad));
    }
    ASSERT_EQ(Publish(batch + "]"), 201);
    for (int k = 0; k < kPerRound; ++k) {
      WsFrame f = fast.NextMessage(10s);
      ASSERT_EQ(f.payload, Delivered(id, PaddedData(published + k, kPad)))
          << "fast reader, publication " << published + k;
    }
    published += kPerRound;
    if (rounds_after_gone >= 0) {
      ++rounds_after_gone;
    } else if (SlowGone(slow_sid)) {
      rounds_after_gone = 0;  // keep going a little: the fast reader must be unaffected
    }
  }
  ASSERT_GE(rounds_after_gone, 0) << "slow client never disconnected after " << published
                                  << " publications";
  ASSERT_TRUE(server_.running());

  SlowRead r = DrainSlow(swarm);
  ASSERT_TRUE(swarm.client(0).closed);
  EXPECT_LT(r.numbers.size(), static_cast<size_t>(published));
  for (size_t i = 0; i < r.numbers.size(); ++i) {
    ASSERT_EQ(r.numbers[i], static_cast<int>(i)) << "the slow client's frames are a prefix";
  }
  // The disconnect frame can be read because the write timeout has not run out yet.
  ASSERT_EQ(r.others.size(), 1u);
  EXPECT_EQ(r.others[0], R"({"type":"disconnect","reason":"too_slow","reconnect":true})");
  EXPECT_EQ(swarm.client(0).close_code, 1000);
  EXPECT_EQ(swarm.client(0).close_reason, "");
}

TEST_F(SlowTest, FrameExactlyAsLargeAsTheLimitIsAllowed) {
  // The limit is "more than": a frame of exactly --ws_max_pending_size bytes is delivered whole;
  // once frames pile up behind an unsent one the client is too slow. The disconnect frame must
  // not re-trigger the limit, and the server keeps serving others.
  constexpr size_t kLimit = 65536;
  StartServer({"--ws_max_pending_size", std::to_string(kLimit), "--ws_write_timeout", "60"});
  const std::string id = StreamId("big");
  // Frame = 4-byte header (payload < 65536) + {"identifier":<id>,"message":"<pad>"}.
  const size_t overhead = std::string("{\"identifier\":").size() + JsonString(id).size() +
                          std::string(",\"message\":\"\"}").size();
  const size_t pad = kLimit - 4 - overhead;
  Swarm swarm;
  std::string slow_sid = OpenSlow(swarm, id, "?pi=0");  // no pings: only publications queue up
  ASSERT_FALSE(slow_sid.empty());
  auto data = [&](int n) { return std::to_string(n % 10) + std::string(pad - 1, 'y'); };
  // A frame of exactly the limit on an empty queue is delivered (read it before going on, so
  // later publications cannot share its delivery pass).
  ASSERT_EQ(Publish(Pub("big", data(0))), 201);
  std::vector<std::string> texts;
  auto collect = [&](size_t, std::string_view t) { texts.emplace_back(t); };
  ASSERT_TRUE(swarm.Pump(collect, [&] { return !texts.empty(); }, 10s, {0}));
  ASSERT_EQ(texts[0], Delivered(id, JsonString(data(0))));
  texts.clear();
  int published = 1;
  for (; published < 2000 && !SlowGone(slow_sid); ++published) {
    ASSERT_EQ(Publish(Pub("big", data(published))), 201);
    ASSERT_TRUE(server_.running()) << "server died after publication " << published;
  }
  ASSERT_TRUE(SlowGone(slow_sid)) << "slow client never disconnected";
  ASSERT_TRUE(server_.running());
  WsClient other;
  ASSERT_FALSE(Connect(other).empty());
  ASSERT_TRUE(Subscribe(other, StreamId("after")));
  ASSERT_EQ(Publish(Pub("after", "1")), 201);
  EXPECT_EQ(other.NextMessage().payload, Delivered(StreamId("after"), "1"));
  // The slow client gets whole frames, then too_slow and a normal close.
  swarm.Pump(collect, [&] { return swarm.client(0).closed; }, 60s, {0});
  ASSERT_TRUE(swarm.client(0).closed);
  ASSERT_FALSE(texts.empty());
  EXPECT_EQ(texts.back(), R"({"type":"disconnect","reason":"too_slow","reconnect":true})");
  for (size_t i = 0; i + 1 < texts.size(); ++i) {
    EXPECT_EQ(texts[i], Delivered(id, JsonString(data(static_cast<int>(i) + 1)))) << i;
  }
  EXPECT_LT(texts.size() - 1, static_cast<size_t>(published - 1));
  EXPECT_EQ(swarm.client(0).close_code, 1000);
}

}  // namespace
}  // namespace cable::ithub
