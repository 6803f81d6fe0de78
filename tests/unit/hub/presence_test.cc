// hub::PresenceStore: join/leave events per presence id, bounds, TTL expiry and restore.
#include "hub/presence.h"

#include <gtest/gtest.h>

namespace cable::hub {
namespace {

using Events = std::vector<PresenceStore::Event>;

std::string Str(const Events& ev) {
  std::string out;
  for (const auto& e : ev) out += e.type + ":" + e.stream + ":" + e.id + ";";
  return out;
}

TEST(PresenceStore, EventsOnlyForFirstAndLastSessionOfAnId) {
  PresenceStore p(15);
  Events ev;
  EXPECT_EQ(p.Join("s", "A", "u1", "{}", &ev), PresenceStore::JoinResult::kOk);
  EXPECT_EQ(p.Join("s", "B", "u1", "{}", &ev), PresenceStore::JoinResult::kOk);
  EXPECT_EQ(Str(ev), "join:s:u1;");
  p.Leave("s", "A", &ev);
  EXPECT_EQ(Str(ev), "join:s:u1;");
  p.Leave("s", "B", &ev);
  EXPECT_EQ(Str(ev), "join:s:u1;leave:s:u1;");
  EXPECT_TRUE(p.Info("s").empty());
  EXPECT_FALSE(p.HasSession("A"));
}

TEST(PresenceStore, BoundsPerStreamAndPerSession) {
  PresenceStore p(15);
  Events ev;
  for (size_t i = 0; i < PresenceStore::kMaxRecordsPerStream; ++i) {
    ASSERT_EQ(p.Join("s", "sid" + std::to_string(i), "u" + std::to_string(i), "", &ev),
              PresenceStore::JoinResult::kOk);
  }
  EXPECT_EQ(p.Join("s", "x", "new", "", &ev), PresenceStore::JoinResult::kLimit);
  EXPECT_EQ(p.Join("s", "x", "u1", "", &ev), PresenceStore::JoinResult::kOk);  // existing id
  EXPECT_EQ(p.Info("s").size(), PresenceStore::kMaxRecordsPerStream);
  for (size_t i = 0; i + 1 < PresenceStore::kMaxStreamsPerSession; ++i) {
    ASSERT_EQ(p.Join("t" + std::to_string(i), "x", "u", "", &ev), PresenceStore::JoinResult::kOk);
  }
  EXPECT_EQ(p.Join("over", "x", "u", "", &ev), PresenceStore::JoinResult::kLimit);
  EXPECT_TRUE(p.Info("over").empty());
}

TEST(PresenceStore, DisconnectedSessionsExpireUnlessRestored) {
  PresenceStore p(10);
  Events ev;
  p.Join("s", "A", "u1", "{}", &ev);
  p.Join("s", "B", "u2", "{}", &ev);
  ev.clear();
  p.Disconnect("A", 100);
  p.Disconnect("B", 100);
  p.Sweep(109, &ev);
  EXPECT_TRUE(ev.empty());
  p.Restore("A", "A2");
  EXPECT_TRUE(p.HasSession("A2"));
  EXPECT_FALSE(p.HasSession("A"));
  p.Sweep(110, &ev);
  EXPECT_EQ(Str(ev), "leave:s:u2;");
  ASSERT_EQ(p.Info("s").size(), 1u);
  EXPECT_EQ(p.Info("s")[0].id, "u1");
  // A restore of a connected or unknown session does nothing.
  p.Restore("A2", "A3");
  p.Restore("nope", "A4");
  EXPECT_TRUE(p.HasSession("A2"));
  EXPECT_FALSE(p.HasSession("A4"));
}

// Live upgrade: a session's records move from one store to another without any event; a record
// another session still holds stays in the old store.
TEST(PresenceStore, HeldRecordsMoveToAnotherStoreWithoutEvents) {
  PresenceStore old_store(10);
  PresenceStore new_store(10);
  Events ev;
  old_store.Join("room", "A", "u1", R"({"n":1})", &ev);
  old_store.Join("hall", "A", "u1", "", &ev);
  old_store.Join("room", "B", "u1", R"({"n":1})", &ev);
  ev.clear();
  auto held = old_store.HeldBy("A");
  ASSERT_EQ(held.size(), 2u);
  EXPECT_TRUE(old_store.HeldBy("nobody").empty());
  new_store.Adopt("A", held);
  old_store.Forget("A");
  EXPECT_FALSE(old_store.HasSession("A"));
  EXPECT_TRUE(old_store.Info("hall").empty());
  ASSERT_EQ(old_store.Info("room").size(), 1u);  // B still holds u1 there
  ASSERT_EQ(new_store.Info("room").size(), 1u);
  EXPECT_EQ(new_store.Info("room")[0].info_json, R"({"n":1})");
  ASSERT_EQ(new_store.Info("hall").size(), 1u);
  // B follows: adopting an existing record adds the sid, no event; leaving it takes both.
  new_store.Adopt("B", old_store.HeldBy("B"));
  old_store.Forget("B");
  EXPECT_EQ(old_store.sizes().streams, 0u);
  EXPECT_EQ(old_store.sizes().sessions, 0u);
  new_store.Leave("room", "A", &ev);
  EXPECT_TRUE(ev.empty());
  new_store.Leave("room", "B", &ev);
  EXPECT_EQ(Str(ev), "leave:room:u1;");
  // Adopting nothing leaves no empty session behind.
  new_store.Adopt("C", {});
  EXPECT_FALSE(new_store.HasSession("C"));
}

}  // namespace
}  // namespace cable::hub
