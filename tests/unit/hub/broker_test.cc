// Unit tests for hub::MemoryBroker (offsets, history rules as anycable-go's memory broker, log
// order under concurrent producers, the backlog when the log is full, single-use sessions) and the
// ext frame variant of Message::FrameFor.
#include <atomic>
#include <ctime>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "hub/broadcast_log.h"
#include "hub/broker.h"
#include "hub/message.h"

namespace cable::hub {
namespace {

Message* Pub(const std::string& stream, const std::string& json, bool transient = false) {
  return Message::NewPublication(stream, json, "", 1, transient);
}

// Consumes everything consumer 0 can see; returns {stream, offset} pairs and releases them.
std::vector<std::pair<std::string, uint64_t>> Drain(BroadcastLog& log) {
  std::vector<std::pair<std::string, uint64_t>> out;
  while (Message* m = log.Peek(0)) {
    out.emplace_back(m->stream(), m->offset());
    log.Advance(0);
    m->Release();
  }
  return out;
}

std::vector<uint64_t> Offsets(std::vector<Message*>& ms) {
  std::vector<uint64_t> out;
  for (Message* m : ms) {
    out.push_back(m->offset());
    m->Release();
  }
  ms.clear();
  return out;
}

TEST(MemoryBrokerTest, StampsPerStreamOffsetsAndKeepsTransientOnesOut) {
  BroadcastLog log(16, 1);
  MemoryBroker b(log, 100, 300, 300);
  EXPECT_EQ(b.epoch().size(), 4u);
  EXPECT_TRUE(b.Publish(Pub("a", "1")));
  EXPECT_TRUE(b.Publish(Pub("a", "2")));
  EXPECT_TRUE(b.Publish(Pub("b", "1")));
  EXPECT_TRUE(b.Publish(Pub("a", "t", true)));
  EXPECT_TRUE(b.Publish(Message::NewRemoteDisconnect("{}", true, 1)));
  auto seen = Drain(log);
  ASSERT_EQ(seen.size(), 5u);
  EXPECT_EQ(seen[0], (std::pair<std::string, uint64_t>{"a", 1}));
  EXPECT_EQ(seen[1], (std::pair<std::string, uint64_t>{"a", 2}));
  EXPECT_EQ(seen[2], (std::pair<std::string, uint64_t>{"b", 1}));
  EXPECT_EQ(seen[3].second, 0u);  // transient
  EXPECT_EQ(seen[4].second, 0u);  // remote command
  std::vector<Message*> h;
  uint64_t horizon = 0;
  ASSERT_TRUE(b.HistorySince("a", 0, &h, &horizon));
  EXPECT_EQ(horizon, 3u);  // three stamped publications, any stream
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0]->seq(), 1u);
  EXPECT_EQ(h[1]->seq(), 2u);
  EXPECT_EQ(Offsets(h), (std::vector<uint64_t>{1, 2}));
  ASSERT_TRUE(b.HistorySince("b", 0, &h, &horizon));
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h[0]->seq(), 3u);  // seq counts across streams, offsets per stream
  EXPECT_EQ(Offsets(h), (std::vector<uint64_t>{1}));
}

TEST(MemoryBrokerTest, HistoryFromFollowsAnycableGoRules) {
  BroadcastLog log(64, 1);
  MemoryBroker b(log, 3, 300, 300);
  for (int i = 1; i <= 5; ++i) b.Publish(Pub("s", std::to_string(i)));
  Drain(log);  // 3, 4, 5 retained
  std::vector<Message*> h;
  uint64_t top = 0;
  EXPECT_FALSE(b.HistoryFrom("s", b.epoch(), 1, &h, &top));  // below the lowest
  EXPECT_FALSE(b.HistoryFrom("s", b.epoch(), 2, &h, &top));  // lowest-1: refused, as Go
  EXPECT_TRUE(b.HistoryFrom("s", b.epoch(), 3, &h, &top));
  EXPECT_EQ(top, 5u);
  EXPECT_EQ(Offsets(h), (std::vector<uint64_t>{4, 5}));
  EXPECT_TRUE(b.HistoryFrom("s", b.epoch(), 5, &h, &top));  // at the top: nothing
  EXPECT_TRUE(h.empty());
  EXPECT_FALSE(b.HistoryFrom("s", b.epoch(), 6, &h, &top));  // beyond the top
  EXPECT_FALSE(b.HistoryFrom("s", "nope", 4, &h, &top));     // other epoch
  EXPECT_FALSE(b.HistoryFrom("unknown", b.epoch(), 0, &h, &top));
  EXPECT_TRUE(b.HistorySince("unknown", 0, &h, &top));  // since: an empty success
  EXPECT_TRUE(h.empty());
  EXPECT_EQ(top, 5u);  // the horizon is node-wide
  // Messages stamped now are not older than a second ago; nothing is from the future.
  EXPECT_TRUE(b.HistorySince("s", time(nullptr) + 3600, &h, &top));
  EXPECT_TRUE(h.empty());
}

// Live upgrade: the state moves to another broker (epoch, offsets, history, sessions); the next
// publication continues the numbering; truncated or padded bytes are refused, state untouched.
TEST(MemoryBrokerTest, StateExportImportRoundTrip) {
  BroadcastLog log_a(64, 2);
  MemoryBroker a(log_a, 100, 300, 300);
  for (int i = 1; i <= 3; ++i) a.Publish(Message::NewPublication("s", std::to_string(i), "x", 2));
  a.Publish(Message::NewPublication("t", "t1", "", 2));
  CachedSession session;
  session.identifiers = R"({"u":1})";
  session.cstate = {{"k", "v"}};
  session.subs.push_back({"id1", {"s", "t"}, {{"ik", "iv"}}, true});
  session.used_rpc = true;
  a.CommitSession("sid1", session);
  const std::string state = a.ExportState();

  BroadcastLog log_b(64, 2);
  MemoryBroker b(log_b, 100, 300, 300);
  const std::string own_epoch = b.epoch();
  for (size_t n = 0; n < state.size(); ++n) EXPECT_FALSE(b.ImportState(state.substr(0, n))) << n;
  EXPECT_FALSE(b.ImportState(state + "x"));
  EXPECT_EQ(b.epoch(), own_epoch);
  EXPECT_EQ(b.history_streams(), 0);
  ASSERT_TRUE(b.ImportState(state));
  EXPECT_EQ(b.epoch(), a.epoch());
  EXPECT_EQ(b.history_streams(), 2);
  EXPECT_EQ(b.history_entries(), 4);
  std::vector<Message*> h;
  uint64_t horizon = 0;
  ASSERT_TRUE(b.HistoryFrom("s", a.epoch(), 1, &h, &horizon));
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0]->message_json(), "2");
  EXPECT_EQ(h[0]->exclude_socket(), "x");
  EXPECT_EQ(h[1]->seq(), 3u);
  EXPECT_EQ(Offsets(h), (std::vector<uint64_t>{2, 3}));
  b.Publish(Message::NewPublication("s", "4", "", 2));
  ASSERT_TRUE(b.HistoryFrom("s", a.epoch(), 3, &h, &horizon));
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h[0]->seq(), 5u);  // after the 4 stamped by `a`
  EXPECT_EQ(Offsets(h), (std::vector<uint64_t>{4}));
  auto restored = b.TakeSession("sid1");
  ASSERT_TRUE(restored.has_value());
  EXPECT_EQ(restored->identifiers, session.identifiers);
  EXPECT_EQ(restored->cstate, session.cstate);
  ASSERT_EQ(restored->subs.size(), 1u);
  EXPECT_EQ(restored->subs[0].streams, (std::vector<std::string>{"s", "t"}));
  EXPECT_EQ(restored->subs[0].istate, session.subs[0].istate);
  EXPECT_TRUE(restored->subs[0].builtin);
  EXPECT_TRUE(restored->used_rpc);
  EXPECT_FALSE(restored->rpc_free_auth);
  for (int c = 0; c < 2; ++c) {
    while (Message* m = log_a.Peek(c)) {
      log_a.Advance(c);
      m->Release();
    }
    while (Message* m = log_b.Peek(c)) {
      log_b.Advance(c);
      m->Release();
    }
  }
}

TEST(MemoryBrokerTest, FullLogKeepsOffsetOrderInTheBacklog) {
  BroadcastLog log(4, 1);
  MemoryBroker b(log, 100, 300, 300);
  for (int i = 0; i < 10; ++i) b.Publish(Pub("s", std::to_string(i)));
  EXPECT_TRUE(b.HasBacklog());
  std::vector<uint64_t> order;
  for (int round = 0; round < 10 && (b.HasBacklog() || log.HasPending(0)); ++round) {
    for (auto& [stream, off] : Drain(log)) order.push_back(off);
    b.Flush();
  }
  for (auto& [stream, off] : Drain(log)) order.push_back(off);
  EXPECT_FALSE(b.HasBacklog());
  ASSERT_EQ(order.size(), 10u);
  for (size_t i = 0; i < order.size(); ++i) EXPECT_EQ(order[i], i + 1);
}

TEST(MemoryBrokerTest, ConcurrentProducersShareOneOffsetOrder) {
  BroadcastLog log(1 << 12, 1);
  MemoryBroker b(log, 100, 300, 300);
  constexpr int kThreads = 4;
  constexpr int kEach = 500;
  std::atomic<bool> done{false};
  std::vector<uint64_t> order;
  std::thread consumer([&] {
    while (true) {
      bool finished = done.load();
      b.Flush();
      for (auto& [stream, off] : Drain(log)) order.push_back(off);
      if (finished && !b.HasBacklog() && !log.HasPending(0)) break;
    }
  });
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) b.Publish(Pub("s", "1"));
    });
  }
  for (auto& p : producers) p.join();
  done.store(true);
  consumer.join();
  ASSERT_EQ(order.size(), static_cast<size_t>(kThreads * kEach));
  for (size_t i = 0; i < order.size(); ++i) ASSERT_EQ(order[i], i + 1);
}

TEST(MemoryBrokerTest, SessionsAreSingleUseAndTtlZeroKeepsNone) {
  BroadcastLog log(4, 1);
  MemoryBroker b(log, 100, 300, 300);
  CachedSession s;
  s.identifiers = R"({"u":1})";
  s.subs.push_back({"id", {"a", "b"}, {{"k", "v"}}, false});
  b.CommitSession("sid1", s);
  EXPECT_EQ(b.sessions(), 1u);
  auto got = b.TakeSession("sid1");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->identifiers, R"({"u":1})");
  ASSERT_EQ(got->subs.size(), 1u);
  EXPECT_EQ(got->subs[0].streams, (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(b.TakeSession("sid1").has_value());
  EXPECT_FALSE(b.TakeSession("other").has_value());
  MemoryBroker none(log, 100, 300, 0);
  none.CommitSession("sid1", s);
  EXPECT_FALSE(none.TakeSession("sid1").has_value());
}

TEST(MemoryBrokerTest, SizesForMetricsFollowHistoryAndSessions) {
  BroadcastLog log(64, 1);
  MemoryBroker b(log, 2, 300, 300);  // history limit 2
  EXPECT_EQ(b.history_streams(), 0);
  EXPECT_EQ(b.history_entries(), 0);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(b.Publish(Pub("a", "1")));
  EXPECT_TRUE(b.Publish(Pub("b", "1")));
  EXPECT_TRUE(b.Publish(Pub("c", "t", true)));  // transient: no history
  Drain(log);
  EXPECT_EQ(b.history_streams(), 2);
  EXPECT_EQ(b.history_entries(), 3);  // a: 2 (limit), b: 1
  b.CommitSession("s1", CachedSession{});
  b.CommitSession("s2", CachedSession{});
  EXPECT_EQ(b.sessions(), 2u);
  EXPECT_TRUE(b.TakeSession("s1").has_value());
  EXPECT_EQ(b.sessions(), 1u);
}

TEST(MemoryBrokerTest, RandomIdsAreUrlSafeAndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string id = RandomId(21);
    ASSERT_EQ(id.size(), 21u);
    for (char c : id) ASSERT_TRUE(isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-');
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(MessageExtTest, ExtVariantIsCachedSeparatelyAndOnlyWithAPosition) {
  Message* m = Pub("room", R"({"a":1})");
  Frame* plain_before = m->FrameFor("id", true);  // no position yet: the v1 frame
  EXPECT_EQ(plain_before, m->FrameFor("id", false));
  m->SetPosition("abcd", 7, 1, 1);
  Frame* ext = m->FrameFor("id2", true);
  Frame* v1 = m->FrameFor("id2", false);
  ASSERT_NE(ext, nullptr);
  ASSERT_NE(v1, nullptr);
  EXPECT_NE(ext, v1);
  EXPECT_EQ(m->FrameFor("id2", true), ext);
  const std::string want =
      R"({"identifier":"id2","message":{"a":1},"stream_id":"room","epoch":"abcd","offset":7})";
  const std::string got(ext->data() + (ext->size() - want.size()), want.size());
  EXPECT_EQ(got, want);
  Frame* local = m->BuildLocalFrame("id2", true);
  ASSERT_EQ(local->size(), ext->size());
  local->ReleaseCreator();
  m->Release();
}

}  // namespace
}  // namespace cable::hub
