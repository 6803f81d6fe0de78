// nats::JetStreamStore against a real `nats-server -js` on a loopback port (one per suite, with
// its own store directory): offsets, limit/ttl trimming and the memory broker's refusals, the
// shared epoch, single-use sessions, odd stream names, a server restart, Sweep, and two stores on
// a 2-node JetStream cluster. Every wait is for a condition, bounded.
#include "nats/jetstream_store.h"

#include <gtest/gtest.h>
#include <nats/nats.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "config/config.h"
#include "enats/enats.h"
#include "tests/support/brokers.h"
#include "tests/support/test_support.h"

namespace cable::nats {
namespace {

using namespace std::chrono_literals;
using test::BrokerProcess;

class NatsLibraryEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { nats_CloseAndWait(10000); }
};
[[maybe_unused]] const auto* const kNatsEnvironment =
    ::testing::AddGlobalTestEnvironment(new NatsLibraryEnvironment);

// Polls `cond` until it holds or `limit` passes (bounded; the poll interval is not a threshold).
bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds limit = 20000ms) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(25ms);
  }
  return cond();
}

int64_t UnixNow() { return static_cast<int64_t>(::time(nullptr)); }

std::string MakeTempDir() {
  char tmpl[] = "/tmp/ringcable-js-XXXXXX";
  return mkdtemp(tmpl) ? std::string(tmpl) : std::string();
}

std::vector<std::string> Datas(const std::vector<StoredPublication>& pubs) {
  std::vector<std::string> out;
  for (const auto& p : pubs) out.push_back(p.data);
  return out;
}
std::vector<uint64_t> Offsets(const std::vector<StoredPublication>& pubs) {
  std::vector<uint64_t> out;
  for (const auto& p : pubs) out.push_back(p.offset);
  return out;
}

bool Refused(const Result<std::vector<StoredPublication>>& r) {
  return !r.ok() && r.error().rfind("refused:", 0) == 0;
}

std::string Events(const std::vector<hub::PresenceEvent>& events) {
  std::string out;
  for (const auto& e : events) {
    out += e.type + ":" + e.stream + ":" + e.id + (e.info_json.empty() ? "" : "=" + e.info_json);
    out += ";";
  }
  return out;
}

std::string Records(const Result<std::vector<hub::PresenceRecord>>& records) {
  if (!records.ok()) return "error: " + records.error();
  std::string out;
  for (const auto& r : records.value()) out += r.id + "=" + r.info_json + ";";
  return out;
}

class JetStreamStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (BrokerProcess::FindBinary(BrokerProcess::Kind::kNats).empty()) return;
    store_dir_ = MakeTempDir();
    server_ = new BrokerProcess(BrokerProcess::Kind::kNats);
    if (!server_->Start({"-js", "-sd", store_dir_})) {
      delete server_;
      server_ = nullptr;
    }
  }
  static void TearDownTestSuite() {
    delete server_;  // SIGKILL by PID, then its directory
    server_ = nullptr;
    if (!store_dir_.empty()) test::RunCommand({"/bin/rm", "-rf", store_dir_}, 10s);
  }
  void SetUp() override {
    if (BrokerProcess::FindBinary(BrokerProcess::Kind::kNats).empty()) {
      GTEST_SKIP() << "nats-server not installed";
    }
    ASSERT_NE(server_, nullptr) << "nats-server -js did not start";
    if (!server_->running()) {
      ASSERT_TRUE(server_->Restart()) << server_->Log();
    }
  }

  // A store on the suite's server; the stream name is unique per test.
  std::unique_ptr<JetStreamStore> OpenStore(int limit = 100, int ttl_s = 300,
                                            int sessions_ttl_s = 300) {
    JetStreamStore::Options o;
    o.servers = server_->url();
    o.history_limit = limit;
    o.history_ttl_s = ttl_s;
    o.sessions_ttl_s = sessions_ttl_s;
    auto store = JetStreamStore::Open(o);
    EXPECT_TRUE(store.ok()) << store.error();
    if (!store.ok()) return nullptr;
    auto s = std::move(store.value());
    // JetStream answers a moment after the port does: the first call may need a retry.
    std::string last;
    EXPECT_TRUE(WaitFor([&] {
      auto e = s->Epoch();
      if (!e.ok()) last = e.error();
      return e.ok();
    })) << last;
    return s;
  }
  // A store with lowered presence bounds (0 keeps hub::BrokerStore's).
  std::unique_ptr<JetStreamStore> OpenPresenceStore(size_t max_records = 0,
                                                    size_t max_streams = 0) {
    JetStreamStore::Options o;
    o.servers = server_->url();
    if (max_records) o.presence_max_records = max_records;
    if (max_streams) o.presence_max_streams = max_streams;
    auto store = JetStreamStore::Open(o);
    EXPECT_TRUE(store.ok()) << store.error();
    if (!store.ok()) return nullptr;
    auto s = std::move(store.value());
    std::string last;
    EXPECT_TRUE(WaitFor([&] {
      auto info = s->PresenceInfo("warm-up");
      if (!info.ok()) last = info.error();
      return info.ok();
    })) << last;
    return s;
  }
  static std::string Stream() {
    return std::string("t_") + ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }

  static BrokerProcess* server_;
  static std::string store_dir_;
};
BrokerProcess* JetStreamStoreTest::server_ = nullptr;
std::string JetStreamStoreTest::store_dir_;

TEST_F(JetStreamStoreTest, OffsetsAreConsecutiveFromOne) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  const std::string s = Stream();
  for (uint64_t i = 1; i <= 5; ++i) {
    auto off = store->Append(s, "m" + std::to_string(i), UnixNow());
    ASSERT_TRUE(off.ok()) << off.error();
    EXPECT_EQ(*off, i);
  }
  // Another stream starts at 1 too.
  auto other = store->Append(s + "_other", "x", UnixNow());
  ASSERT_TRUE(other.ok()) << other.error();
  EXPECT_EQ(*other, 1u);

  auto from1 = store->ReadFrom(s, 1);
  ASSERT_TRUE(from1.ok()) << from1.error();
  EXPECT_EQ(Offsets(*from1), (std::vector<uint64_t>{2, 3, 4, 5}));
  EXPECT_EQ(Datas(*from1), (std::vector<std::string>{"m2", "m3", "m4", "m5"}));
  auto at_top = store->ReadFrom(s, 5);
  ASSERT_TRUE(at_top.ok()) << at_top.error();
  EXPECT_TRUE(at_top->empty());
  // As MemoryBroker::HistoryFrom: below the lowest retained (0 < 1) and above the top refused.
  EXPECT_TRUE(Refused(store->ReadFrom(s, 0)));
  EXPECT_TRUE(Refused(store->ReadFrom(s, 6)));
  EXPECT_TRUE(Refused(store->ReadFrom(s + "_unknown", 0)));
  // The inclusive, never-refusing form.
  auto retained = store->ReadRetained(s, 0);
  ASSERT_TRUE(retained.ok()) << retained.error();
  EXPECT_EQ(Offsets(*retained), (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  auto retained3 = store->ReadRetained(s, 3);
  ASSERT_TRUE(retained3.ok());
  EXPECT_EQ(Offsets(*retained3), (std::vector<uint64_t>{3, 4, 5}));
  auto unknown = store->ReadRetained(s + "_unknown", 1);
  ASSERT_TRUE(unknown.ok());
  EXPECT_TRUE(unknown->empty());
}

// Long ranges go through an ordered consumer, short ones message by message: same results.
TEST_F(JetStreamStoreTest, LongRangesReadTheSameAsShortOnes) {
  auto store = OpenStore(/*limit=*/40);
  ASSERT_TRUE(store);
  const std::string s = Stream();
  const int64_t now = UnixNow();
  for (int i = 1; i <= 50; ++i) {
    auto off = store->Append(s, "m" + std::to_string(i), now - 50 + i);
    ASSERT_TRUE(off.ok()) << off.error();
  }
  // Retained 11..50.
  EXPECT_TRUE(Refused(store->ReadFrom(s, 10)));
  auto from11 = store->ReadFrom(s, 11);
  ASSERT_TRUE(from11.ok()) << from11.error();
  ASSERT_EQ(from11->size(), 39u);
  for (size_t i = 0; i < from11->size(); ++i) {
    EXPECT_EQ((*from11)[i].offset, 12 + i);
    EXPECT_EQ((*from11)[i].data, "m" + std::to_string(12 + i));
    EXPECT_EQ((*from11)[i].unix_ts, now - 50 + static_cast<int64_t>(12 + i));
  }
  auto from45 = store->ReadFrom(s, 45);  // short: message by message
  ASSERT_TRUE(from45.ok());
  EXPECT_EQ(Offsets(*from45), (std::vector<uint64_t>{46, 47, 48, 49, 50}));
  auto since = store->ReadSince(s, now - 50 + 21);
  ASSERT_TRUE(since.ok()) << since.error();
  ASSERT_EQ(since->size(), 30u);
  EXPECT_EQ(since->front().offset, 21u);
  EXPECT_EQ(since->back().offset, 50u);
  auto retained = store->ReadRetained(s, 0);
  ASSERT_TRUE(retained.ok());
  ASSERT_EQ(retained->size(), 40u);
  EXPECT_EQ(retained->front().offset, 11u);

  // The ordered consumers of those reads are gone from the server (bounded server state).
  natsConnection* nc = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&nc, server_->url().c_str()), NATS_OK);
  jsCtx* js = nullptr;
  ASSERT_EQ(natsConnection_JetStream(&js, nc, nullptr), NATS_OK);
  int64_t consumers = -1;
  EXPECT_TRUE(WaitFor([&] {
    jsStreamInfo* si = nullptr;
    if (js_GetStreamInfo(&si, js, JetStreamStore::JetStreamName(s).c_str(), nullptr, nullptr) !=
        NATS_OK) {
      return false;
    }
    consumers = si->State.Consumers;
    jsStreamInfo_Destroy(si);
    return consumers == 0;
  })) << consumers;
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
}

TEST_F(JetStreamStoreTest, BatchAppendGivesOffsetsInOrder) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  const std::string s = Stream();
  std::vector<AppendEntry> batch = {{s + "_a", "1"}, {s + "_b", "1"}, {s + "_a", "2"}};
  auto offsets = store->Append(batch, UnixNow());
  ASSERT_TRUE(offsets.ok()) << offsets.error();
  EXPECT_EQ(*offsets, (std::vector<uint64_t>{1, 1, 2}));
}

TEST_F(JetStreamStoreTest, ReadSinceUsesThePublishersTimestamp) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  const std::string s = Stream();
  const int64_t now = UnixNow();
  ASSERT_TRUE(store->Append(s, "old", now - 100).ok());
  ASSERT_TRUE(store->Append(s, "mid", now - 50).ok());
  ASSERT_TRUE(store->Append(s, "new", now).ok());
  auto since = store->ReadSince(s, now - 50);
  ASSERT_TRUE(since.ok()) << since.error();
  EXPECT_EQ(Datas(*since), (std::vector<std::string>{"mid", "new"}));
  EXPECT_EQ((*since)[0].unix_ts, now - 50);
  EXPECT_EQ((*since)[1].offset, 3u);
  auto all = store->ReadSince(s, 0);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 3u);
  auto none = store->ReadSince(s, now + 1);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  auto unknown = store->ReadSince(s + "_unknown", 0);  // empty success, as anycable-go
  ASSERT_TRUE(unknown.ok()) << unknown.error();
  EXPECT_TRUE(unknown->empty());
}

TEST_F(JetStreamStoreTest, HistoryLimitTrimsAndRefusesBelowTheLowestRetained) {
  auto store = OpenStore(/*limit=*/3);
  ASSERT_TRUE(store);
  const std::string s = Stream();
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(store->Append(s, std::to_string(i), UnixNow()).ok());
  // Retained: 3, 4, 5. Lowest - 1 (2) is refused too, as the memory broker does.
  EXPECT_TRUE(Refused(store->ReadFrom(s, 1)));
  EXPECT_TRUE(Refused(store->ReadFrom(s, 2)));
  auto from3 = store->ReadFrom(s, 3);
  ASSERT_TRUE(from3.ok()) << from3.error();
  EXPECT_EQ(Offsets(*from3), (std::vector<uint64_t>{4, 5}));
  auto since = store->ReadSince(s, 0);
  ASSERT_TRUE(since.ok());
  EXPECT_EQ(Offsets(*since), (std::vector<uint64_t>{3, 4, 5}));
  // The next offset continues.
  auto next = store->Append(s, "6", UnixNow());
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, 6u);
}

TEST_F(JetStreamStoreTest, LoweringTheLimitAppliesToExistingStreams) {
  const std::string s = Stream();
  {
    auto wide = OpenStore(/*limit=*/10);
    ASSERT_TRUE(wide);
    for (int i = 1; i <= 6; ++i) ASSERT_TRUE(wide->Append(s, std::to_string(i), UnixNow()).ok());
  }
  auto narrow = OpenStore(/*limit=*/2);
  ASSERT_TRUE(narrow);
  ASSERT_TRUE(narrow->Append(s, "7", UnixNow()).ok());  // updates the stream's MaxMsgs
  auto since = narrow->ReadSince(s, 0);
  ASSERT_TRUE(since.ok());
  EXPECT_EQ(Offsets(*since), (std::vector<uint64_t>{6, 7}));
}

TEST_F(JetStreamStoreTest, TtlExpiresHistoryButOffsetsNeverGoBack) {
  auto store = OpenStore(/*limit=*/100, /*ttl_s=*/1);
  ASSERT_TRUE(store);
  const std::string s = Stream();
  ASSERT_TRUE(store->Append(s, "a", UnixNow()).ok());
  ASSERT_TRUE(store->Append(s, "b", UnixNow()).ok());
  ASSERT_TRUE(store->ReadFrom(s, 1).ok());
  EXPECT_TRUE(WaitFor([&] { return Refused(store->ReadFrom(s, 1)); }));
  auto since = store->ReadSince(s, 0);
  ASSERT_TRUE(since.ok());
  EXPECT_TRUE(since->empty());
  auto next = store->Append(s, "c", UnixNow());
  ASSERT_TRUE(next.ok()) << next.error();
  EXPECT_EQ(*next, 3u);
  // Retained: 3 only; so 2 (lowest - 1) is refused, as the memory broker does.
  EXPECT_TRUE(Refused(store->ReadFrom(s, 2)));
  auto at3 = store->ReadFrom(s, 3);
  ASSERT_TRUE(at3.ok()) << at3.error();
  EXPECT_TRUE(at3->empty());
  auto retained = store->ReadRetained(s, 0);
  ASSERT_TRUE(retained.ok());
  EXPECT_EQ(Datas(*retained), (std::vector<std::string>{"c"}));
}

TEST_F(JetStreamStoreTest, EpochIsSharedAndSurvivesReopen) {
  auto a = OpenStore();
  auto b = OpenStore();
  ASSERT_TRUE(a && b);
  auto ea = a->Epoch();
  auto eb = b->Epoch();
  ASSERT_TRUE(ea.ok() && eb.ok());
  EXPECT_FALSE(ea->empty());
  EXPECT_EQ(*ea, *eb);
  a->Close();
  a.reset();
  auto c = OpenStore();
  ASSERT_TRUE(c);
  auto ec = c->Epoch();
  ASSERT_TRUE(ec.ok());
  EXPECT_EQ(*ec, *eb);
}

// The epoch bucket has anycable-go's TTL (10 x max ttl = 10 s here); a store that keeps asking
// keeps the epoch alive past it.
TEST_F(JetStreamStoreTest, EpochOutlivesTheBucketTtlWhileAskedFor) {
  auto store = OpenStore(100, /*ttl_s=*/1, /*sessions_ttl_s=*/1);
  ASSERT_TRUE(store);
  auto first = store->Epoch();
  ASSERT_TRUE(first.ok());
  const auto until = std::chrono::steady_clock::now() + 25s;  // 2.5 x the bucket TTL
  bool same = true;
  WaitFor(
      [&] {
        auto e = store->Epoch();
        if (e.ok() && *e != *first) same = false;
        return !same || std::chrono::steady_clock::now() > until;
      },
      40000ms);
  EXPECT_TRUE(same);
}

TEST_F(JetStreamStoreTest, SessionsAreSingleUseAcrossStores) {
  auto a = OpenStore();
  auto b = OpenStore();
  ASSERT_TRUE(a && b);
  const std::string blob("{\"ids\":\"x\"}\0bin", 15);
  ASSERT_TRUE(a->PutSession("sid-1", blob, 60).ok());
  auto taken = b->TakeSession("sid-1");
  ASSERT_TRUE(taken.ok()) << taken.error();
  ASSERT_TRUE(taken->has_value());
  EXPECT_EQ(**taken, blob);
  auto again = a->TakeSession("sid-1");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
  auto unknown = a->TakeSession("nope");
  ASSERT_TRUE(unknown.ok());
  EXPECT_FALSE(unknown->has_value());
  // Put again after a take: usable again; an empty blob is a session too.
  ASSERT_TRUE(a->PutSession("sid-1", "", 60).ok());
  auto empty = a->TakeSession("sid-1");
  ASSERT_TRUE(empty.ok() && empty->has_value());
  EXPECT_EQ(**empty, "");
  // Odd session ids are hashed into valid keys.
  for (const std::string& sid :
       std::vector<std::string>{"a b", "a.b", "h_abc", "*", std::string(300, 'z')}) {
    ASSERT_TRUE(a->PutSession(sid, "v" + sid, 60).ok()) << sid;
    auto got = b->TakeSession(sid);
    ASSERT_TRUE(got.ok() && got->has_value()) << sid;
    EXPECT_EQ(**got, "v" + sid);
  }
}

// Two stores (two nodes' broker threads) race to take the same sessions: each is taken once.
TEST_F(JetStreamStoreTest, ConcurrentTakesGetEachSessionOnce) {
  auto a = OpenStore();
  auto b = OpenStore();
  ASSERT_TRUE(a && b);
  constexpr int kSessions = 30;
  for (int i = 0; i < kSessions; ++i) {
    ASSERT_TRUE(a->PutSession("race-" + std::to_string(i), std::to_string(i), 60).ok());
  }
  std::vector<int> got_a(kSessions), got_b(kSessions);
  auto take_all = [&](JetStreamStore* store, std::vector<int>* got) {
    for (int i = 0; i < kSessions; ++i) {
      auto t = store->TakeSession("race-" + std::to_string(i));
      if (t.ok() && t->has_value() && **t == std::to_string(i)) (*got)[i] = 1;
    }
  };
  std::thread ta(take_all, a.get(), &got_a);
  std::thread tb(take_all, b.get(), &got_b);
  ta.join();
  tb.join();
  for (int i = 0; i < kSessions; ++i) EXPECT_EQ(got_a[i] + got_b[i], 1) << i;
}

TEST_F(JetStreamStoreTest, SessionsExpire) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  const int64_t put_at = UnixNow();
  ASSERT_TRUE(store->PutSession("short", "s", 1).ok());
  ASSERT_TRUE(store->PutSession("long", "l", 600).ok());
  // Wait (bounded) for the wall clock to pass the expiry, then take.
  ASSERT_TRUE(WaitFor([&] { return UnixNow() > put_at + 1; }, 10000ms));
  auto gone = store->TakeSession("short");
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
  auto kept = store->TakeSession("long");
  ASSERT_TRUE(kept.ok() && kept->has_value());

  // The bucket TTL (--sessions_ttl) caps a longer ttl: JetStream itself removes the value.
  auto capped = OpenStore(100, 300, /*sessions_ttl_s=*/1);
  ASSERT_TRUE(capped);
  const int64_t capped_at = UnixNow();
  auto put = capped->PutSession("capped", "c", 600);
  ASSERT_TRUE(put.ok()) << put.error();
  ASSERT_TRUE(WaitFor([&] { return UnixNow() > capped_at + 1; }, 10000ms));
  auto capped_gone = capped->TakeSession("capped");
  ASSERT_TRUE(capped_gone.ok());
  EXPECT_FALSE(capped_gone->has_value());
}

TEST_F(JetStreamStoreTest, OddStreamNamesAreSafeAndDistinct) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  const std::vector<std::string> names = {"a.b",
                                          "a b",
                                          ">",
                                          "*",
                                          "chat.*.>",
                                          "gid://app/Post/1",
                                          "\xc3\xbc\xe6\x97\xa5",
                                          "tab\t1",
                                          "\r\n",
                                          "",
                                          "_",
                                          "x",
                                          std::string(1024, 'x'),
                                          std::string(1024, '.'),
                                          "a_b",
                                          "a-b",
                                          "a:b",
                                          std::string(64, 'p'),
                                          std::string(65, 'p')};
  std::set<std::string> js_names;
  for (const auto& n : names) js_names.insert(JetStreamStore::JetStreamName(n));
  EXPECT_EQ(js_names.size(), names.size());
  for (const auto& j : js_names) {
    EXPECT_LE(j.size(), 80u) << j;
    EXPECT_EQ(j.find_first_of(" \t\r\n.*>/\\"), std::string::npos) << j;
  }
  for (size_t i = 0; i < names.size(); ++i) {
    for (size_t k = 0; k <= i % 3; ++k) {
      auto off = store->Append(names[i], "d" + std::to_string(i), UnixNow());
      ASSERT_TRUE(off.ok()) << i << ": " << off.error();
      EXPECT_EQ(*off, k + 1) << i;
    }
  }
  for (size_t i = 0; i < names.size(); ++i) {
    auto got = store->ReadSince(names[i], 0);
    ASSERT_TRUE(got.ok()) << i << ": " << got.error();
    EXPECT_EQ(got->size(), i % 3 + 1) << i;
    for (const auto& p : *got) EXPECT_EQ(p.data, "d" + std::to_string(i)) << i;
  }
}

TEST_F(JetStreamStoreTest, SweepDeletesIdleStreams) {
  auto store = OpenStore(/*limit=*/100, /*ttl_s=*/1);
  ASSERT_TRUE(store);
  const std::string s = Stream();
  ASSERT_TRUE(store->Append(s, "a", UnixNow()).ok());
  ASSERT_TRUE(store->Append(s, "b", UnixNow()).ok());
  // Idle for 10 x ttl (10 s) with nothing left: deleted.
  EXPECT_TRUE(WaitFor(
      [&] {
        auto n = store->Sweep();
        return n.ok() && Refused(store->ReadFrom(s, 0)) &&
               store->ReadFrom(s, 0).error().find("unknown") != std::string::npos;
      },
      40000ms));
  // Its offsets restart (clients holding 2 are refused: above the new top or empty).
  auto first = store->Append(s, "again", UnixNow());
  ASSERT_TRUE(first.ok()) << first.error();
  EXPECT_EQ(*first, 1u);
  EXPECT_TRUE(Refused(store->ReadFrom(s, 2)));
}

TEST_F(JetStreamStoreTest, ServerRestartFailsCallsCleanlyThenHeals) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  const std::string s = Stream();
  auto epoch = store->Epoch();
  ASSERT_TRUE(epoch.ok());
  ASSERT_TRUE(store->Append(s, "1", UnixNow()).ok());
  ASSERT_TRUE(store->PutSession("restart-sid", "blob", 60).ok());

  server_->Stop();
  ASSERT_TRUE(WaitFor([&] { return !store->connected(); }));
  auto failed = store->Append(s, "lost", UnixNow());
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().rfind("nats:", 0), 0u) << failed.error();
  EXPECT_FALSE(store->ReadFrom(s, 1).ok());
  EXPECT_FALSE(Refused(store->ReadFrom(s, 1)));  // an outage, not a refusal
  EXPECT_FALSE(store->Epoch().ok());
  EXPECT_FALSE(store->TakeSession("restart-sid").ok());
  EXPECT_FALSE(store->PutSession("x", "y", 60).ok());
  std::vector<hub::PresenceEvent> ev;
  auto join = store->PresenceJoin(s, "restart-sid", "u1", "", UnixNow() + 60, &ev);
  ASSERT_FALSE(join.ok());
  EXPECT_EQ(join.error().rfind("nats:", 0), 0u) << join.error();
  EXPECT_FALSE(store->PresenceInfo(s).ok());
  EXPECT_FALSE(store->PresenceSweep(UnixNow(), &ev).ok());

  ASSERT_TRUE(server_->Restart()) << server_->Log();
  // Heals by itself: the same store appends again, with the next offset (file storage kept it).
  Result<uint64_t> next = MakeError(std::string("not tried"));
  ASSERT_TRUE(WaitFor([&] {
    next = store->Append(s, "2", UnixNow());
    return next.ok();
  })) << next.error();
  EXPECT_EQ(*next, 2u);
  auto epoch2 = store->Epoch();
  ASSERT_TRUE(epoch2.ok());
  EXPECT_EQ(*epoch2, *epoch);
  auto taken = store->TakeSession("restart-sid");
  ASSERT_TRUE(taken.ok() && taken->has_value());
  EXPECT_EQ(**taken, "blob");
  // Presence heals too.
  std::vector<hub::PresenceEvent> joined;
  ASSERT_TRUE(store->PresenceJoin(s, "restart-sid", "u1", "", UnixNow() + 60, &joined).value());
  EXPECT_EQ(Events(joined), "join:" + s + ":u1;");
  ASSERT_TRUE(store->PresenceLeave(s, "restart-sid", &joined).ok());
}

// ---------------------------------------------------------------------------------------------
// Presence (issue #15): the same contract as redis::Store's (hub::BrokerStore).

TEST_F(JetStreamStoreTest, PresenceCountsSessionsOfAnIdAcrossStores) {
  auto a = OpenPresenceStore();
  auto b = OpenPresenceStore();
  ASSERT_TRUE(a && b);
  const std::string s = Stream();
  const int64_t later = UnixNow() + 600;
  std::vector<hub::PresenceEvent> ev;
  // The first session of u1 anywhere joins; a second one (other store) does not.
  auto joined = a->PresenceJoin(s, "pc-a", "u1", R"({"n":1})", later, &ev);
  ASSERT_TRUE(joined.ok()) << joined.error();
  EXPECT_TRUE(*joined);
  EXPECT_EQ(Events(ev), "join:" + s + ":u1={\"n\":1};");
  ev.clear();
  ASSERT_TRUE(b->PresenceJoin(s, "pc-b", "u1", R"({"n":2})", later, &ev).value());
  EXPECT_EQ(Events(ev), "");
  EXPECT_EQ(Records(a->PresenceInfo(s)), R"(u1={"n":2};)");  // the latest info
  // Re-sending the same join: no event, info refreshed.
  ASSERT_TRUE(a->PresenceJoin(s, "pc-a", "u1", R"({"n":3})", later, &ev).value());
  EXPECT_EQ(Events(ev), "");
  EXPECT_EQ(Records(b->PresenceInfo(s)), R"(u1={"n":3};)");
  // One session leaves: nothing; the last one: one leave.
  ASSERT_TRUE(a->PresenceLeave(s, "pc-a", &ev).ok());
  EXPECT_EQ(Events(ev), "");
  ASSERT_TRUE(b->PresenceLeave(s, "pc-b", &ev).ok());
  EXPECT_EQ(Events(ev), "leave:" + s + ":u1;");
  EXPECT_EQ(Records(a->PresenceInfo(s)), "");
  ev.clear();
  // Leave without join, a second leave, an unknown stream: nothing, no error.
  ASSERT_TRUE(a->PresenceLeave(s, "pc-a", &ev).ok());
  ASSERT_TRUE(a->PresenceLeave(s + "-none", "pc-z", &ev).ok());
  EXPECT_EQ(Events(ev), "");
  EXPECT_EQ(Records(b->PresenceInfo(s + "-none")), "");
  // Switching ids within a session: the old one leaves, the new one joins.
  ASSERT_TRUE(a->PresenceJoin(s, "pc-a", "u2", "", later, &ev).value());
  ASSERT_TRUE(b->PresenceJoin(s, "pc-a", "u3", "7", later, &ev).value());
  EXPECT_EQ(Events(ev), "join:" + s + ":u2;leave:" + s + ":u2;join:" + s + ":u3=7;");
  // Records are listed by id; odd stream names and ids are stored as they are.
  const std::string odd = "room.*> :/\xc3\xa9" + std::string(200, 'x');
  ASSERT_TRUE(a->PresenceJoin(odd, "pc-a", "z \"id\"", "{}", later, &ev).value());
  ASSERT_TRUE(a->PresenceJoin(odd, "pc-b", "a.b", "[1]", later, &ev).value());
  EXPECT_EQ(Records(b->PresenceInfo(odd)), "a.b=[1];z \"id\"={};");
  ev.clear();
  ASSERT_TRUE(b->PresenceLeave(odd, "pc-a", &ev).ok());
  ASSERT_TRUE(b->PresenceLeave(odd, "pc-b", &ev).ok());
  ASSERT_TRUE(b->PresenceLeave(s, "pc-a", &ev).ok());
  EXPECT_EQ(Events(ev), "leave:" + odd + ":z \"id\";leave:" + odd + ":a.b;leave:" + s + ":u3;");
}

// Two stores join and leave the same ids concurrently: compare-and-set conflicts are retried and
// each id joins once and leaves once in all.
TEST_F(JetStreamStoreTest, ConcurrentJoinsAndLeavesEmitEachEventOnce) {
  auto a = OpenPresenceStore();
  auto b = OpenPresenceStore();
  ASSERT_TRUE(a && b);
  const std::string s = Stream();
  constexpr int kSessionsPerStore = 16;
  constexpr int kIds = 6;
  const int64_t later = UnixNow() + 600;
  std::vector<hub::PresenceEvent> ev_a, ev_b;
  std::string error_a, error_b;
  auto run = [&](JetStreamStore* store, const std::string& prefix, bool join,
                 std::vector<hub::PresenceEvent>* ev, std::string* error) {
    for (int i = 0; i < kSessionsPerStore; ++i) {
      const std::string sid = prefix + std::to_string(i);
      auto r = join ? store->PresenceJoin(s, sid, "u" + std::to_string(i % kIds), "", later, ev)
                    : store->PresenceLeave(s, sid, ev);
      if (!r.ok() && error->empty()) *error = r.error();
    }
  };
  for (bool join : {true, false}) {
    ev_a.clear();
    ev_b.clear();
    std::thread ta(run, a.get(), "cc-a", join, &ev_a, &error_a);
    std::thread tb(run, b.get(), "cc-b", join, &ev_b, &error_b);
    ta.join();
    tb.join();
    EXPECT_EQ(error_a, "");
    EXPECT_EQ(error_b, "");
    std::multiset<std::string> seen;
    for (const auto* ev : {&ev_a, &ev_b}) {
      for (const auto& e : *ev) {
        EXPECT_EQ(e.type, join ? "join" : "leave");
        seen.insert(e.id);
      }
    }
    std::multiset<std::string> want;
    for (int i = 0; i < kIds; ++i) want.insert("u" + std::to_string(i));
    EXPECT_EQ(seen, want) << (join ? "joins" : "leaves");
    EXPECT_EQ(Records(a->PresenceInfo(s)), join ? "u0=;u1=;u2=;u3=;u4=;u5=;" : "");
  }
}

// Expired sessions (not touched) are swept: two stores sweeping at once hand each leave to one.
TEST_F(JetStreamStoreTest, ExpiredSessionsAreSweptOnceAndTouchedOnesStay) {
  auto a = OpenPresenceStore();
  auto b = OpenPresenceStore();
  ASSERT_TRUE(a && b);
  const std::string s1 = Stream() + "-1";
  const std::string s2 = Stream() + "-2";
  const int64_t now = UnixNow();
  std::vector<hub::PresenceEvent> ev;
  // "gone" closed: expires now (in the past for the sweep below), in two streams.
  ASSERT_TRUE(a->PresenceJoin(s1, "sw-gone", "g", "", now + 600, &ev).value());
  ASSERT_TRUE(a->PresenceJoin(s2, "sw-gone", "g", "", now + 600, &ev).value());
  ASSERT_TRUE(a->PresenceTouch({"sw-gone", "sw-unknown"}, now - 1).ok());
  // "live" is touched forward; "shared" holds g in s1 too, so g stays there.
  ASSERT_TRUE(b->PresenceJoin(s1, "sw-live", "l", "", now - 1, &ev).value());
  ASSERT_TRUE(b->PresenceTouch({"sw-live"}, now + 600).ok());
  ASSERT_TRUE(b->PresenceJoin(s1, "sw-shared", "g", "", now + 600, &ev).value());
  ev.clear();
  std::vector<hub::PresenceEvent> ev_a, ev_b;
  std::string error;
  std::thread ta([&] {
    auto r = a->PresenceSweep(now, &ev_a);
    if (!r.ok()) error = r.error();
  });
  auto rb = b->PresenceSweep(now, &ev_b);
  ta.join();
  ASSERT_TRUE(rb.ok()) << rb.error();
  ASSERT_EQ(error, "");
  // One leave in all: g left s2 (its only session there); in s1 "sw-shared" still holds g.
  std::vector<hub::PresenceEvent> all = ev_a;
  all.insert(all.end(), ev_b.begin(), ev_b.end());
  EXPECT_EQ(Events(all), "leave:" + s2 + ":g;");
  EXPECT_EQ(Records(a->PresenceInfo(s1)), "g=;l=;");
  EXPECT_EQ(Records(a->PresenceInfo(s2)), "");
  // Swept sessions are gone: sweeping again gives nothing; the swept sid restores nothing.
  ASSERT_TRUE(a->PresenceSweep(now, &ev).ok());
  EXPECT_EQ(Events(ev), "");
  auto restored = b->PresenceRestore("sw-gone", "sw-new", now + 600);
  ASSERT_TRUE(restored.ok());
  EXPECT_FALSE(*restored);
  // The rest expire later: their own leaves.
  ASSERT_TRUE(b->PresenceSweep(now + 601, &ev).ok());
  EXPECT_EQ(Events(ev), "leave:" + s1 + ":l;leave:" + s1 + ":g;");
  EXPECT_EQ(Records(a->PresenceInfo(s1)), "");
}

TEST_F(JetStreamStoreTest, RestoreMovesRecordsToTheNewSessionWithoutEvents) {
  auto a = OpenPresenceStore();
  auto b = OpenPresenceStore();
  ASSERT_TRUE(a && b);
  const std::string s = Stream();
  const int64_t now = UnixNow();
  std::vector<hub::PresenceEvent> ev;
  ASSERT_TRUE(a->PresenceJoin(s, "rs-old", "u1", "{}", now + 600, &ev).value());
  ev.clear();
  auto restored = b->PresenceRestore("rs-old", "rs-new", now + 600);
  ASSERT_TRUE(restored.ok()) << restored.error();
  EXPECT_TRUE(*restored);
  EXPECT_EQ(Records(a->PresenceInfo(s)), "u1={};");
  // Single use; an unknown sid restores nothing.
  EXPECT_FALSE(a->PresenceRestore("rs-old", "rs-other", now + 600).value());
  EXPECT_FALSE(a->PresenceRestore("rs-unknown", "rs-other", now + 600).value());
  // The old sid no longer holds anything; the new one does (its leave is the last one).
  ASSERT_TRUE(a->PresenceLeave(s, "rs-old", &ev).ok());
  EXPECT_EQ(Events(ev), "");
  // The new session is touched and swept like any other.
  ASSERT_TRUE(a->PresenceSweep(now + 300, &ev).ok());
  EXPECT_EQ(Events(ev), "");
  ASSERT_TRUE(b->PresenceLeave(s, "rs-new", &ev).ok());
  EXPECT_EQ(Events(ev), "leave:" + s + ":u1;");
  // A session past its expiry (closed longer than the TTL) is not restored.
  ASSERT_TRUE(a->PresenceJoin(s, "rs-late", "u2", "", now - 1, &ev).value());
  EXPECT_FALSE(b->PresenceRestore("rs-late", "rs-late2", now + 600).value());
  ASSERT_TRUE(a->PresenceLeave(s, "rs-late", &ev).ok());
}

TEST_F(JetStreamStoreTest, PresenceBoundsRefuseWithoutChangingAnything) {
  auto store = OpenPresenceStore(/*max_records=*/3, /*max_streams=*/2);
  ASSERT_TRUE(store);
  const std::string s = Stream();
  const int64_t later = UnixNow() + 600;
  std::vector<hub::PresenceEvent> ev;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(
        store->PresenceJoin(s, "bd-" + std::to_string(i), "u" + std::to_string(i), "", later, &ev)
            .value());
  }
  ev.clear();
  // A 4th id: refused; a held id by another session is not a new record.
  EXPECT_FALSE(store->PresenceJoin(s, "bd-3", "u3", "", later, &ev).value());
  EXPECT_TRUE(store->PresenceJoin(s, "bd-3", "u0", "", later, &ev).value());
  EXPECT_EQ(Events(ev), "");
  EXPECT_EQ(Records(store->PresenceInfo(s)), "u0=;u1=;u2=;");
  // Per session: 2 streams, the 3rd refused (then a leave frees one).
  ASSERT_TRUE(store->PresenceJoin(s + "-b", "bd-0", "x", "", later, &ev).value());
  EXPECT_FALSE(store->PresenceJoin(s + "-c", "bd-0", "x", "", later, &ev).value());
  EXPECT_EQ(Records(store->PresenceInfo(s + "-c")), "");
  ASSERT_TRUE(store->PresenceLeave(s + "-b", "bd-0", &ev).ok());
  EXPECT_TRUE(store->PresenceJoin(s + "-c", "bd-0", "x", "", later, &ev).value());
  // A record set past the server's max payload is refused like a bound.
  const std::string huge = "\"" + std::string(2 << 20, 'i') + "\"";
  ev.clear();
  EXPECT_FALSE(store->PresenceJoin(s + "-d", "bd-1", "big", huge, later, &ev).value());
  EXPECT_EQ(Events(ev), "");
  EXPECT_EQ(Records(store->PresenceInfo(s + "-d")), "");

  // The default bound of streams per session (hub::kPresenceMaxStreamsPerSession).
  auto defaults = OpenPresenceStore();
  ASSERT_TRUE(defaults);
  for (size_t i = 0; i < hub::kPresenceMaxStreamsPerSession; ++i) {
    ASSERT_TRUE(defaults->PresenceJoin(s + "-m" + std::to_string(i), "bd-many", "u", "", later, &ev)
                    .value())
        << i;
  }
  EXPECT_FALSE(defaults->PresenceJoin(s + "-over", "bd-many", "u", "", later, &ev).value());
  // Expired: every stream's leave at once (sweeps go on in batches).
  ASSERT_TRUE(defaults->PresenceTouch({"bd-many"}, UnixNow() - 1).ok());
  ev.clear();
  ASSERT_TRUE(defaults->PresenceSweep(UnixNow(), &ev).ok());
  EXPECT_EQ(ev.size(), hub::kPresenceMaxStreamsPerSession);
}

TEST(JetStreamStoreOpenTest, OpensWhileNoServerAndRefusesBadOptions) {
  JetStreamStore::Options o;
  o.servers = "nats://127.0.0.1:" + std::to_string(test::FreePort());
  o.timeout_ms = 200;
  auto store = JetStreamStore::Open(o);
  ASSERT_TRUE(store.ok()) << store.error();
  EXPECT_FALSE((*store)->connected());
  auto epoch = (*store)->Epoch();
  ASSERT_FALSE(epoch.ok());
  EXPECT_NE(epoch.error().find("not connected"), std::string::npos) << epoch.error();
  (*store)->Close();
  (*store)->Close();  // idempotent

  JetStreamStore::Options bad = o;
  bad.history_limit = 0;
  EXPECT_FALSE(JetStreamStore::Open(bad).ok());
  bad = o;
  bad.history_ttl_s = 0;
  EXPECT_FALSE(JetStreamStore::Open(bad).ok());
  bad = o;
  bad.servers = "nats://a:1,,nats://b:2";
  EXPECT_FALSE(JetStreamStore::Open(bad).ok());
}

// Two stores on the two nodes of a JetStream cluster share history, epoch and sessions.
TEST(JetStreamStoreClusterTest, TwoNodesShareEverything) {
  if (BrokerProcess::FindBinary(BrokerProcess::Kind::kNats).empty()) {
    GTEST_SKIP() << "nats-server not installed";
  }
  const int route1 = test::FreePort();
  const int route2 = test::FreePort();
  const std::string dir1 = MakeTempDir();
  const std::string dir2 = MakeTempDir();
  BrokerProcess n1(BrokerProcess::Kind::kNats);
  BrokerProcess n2(BrokerProcess::Kind::kNats);
  auto node_args = [](const std::string& name, const std::string& dir, int route, int peer) {
    return std::vector<std::string>{"-js",
                                    "-sd",
                                    dir,
                                    "-n",
                                    name,
                                    "--cluster_name",
                                    "rc",
                                    "--cluster",
                                    "nats://127.0.0.1:" + std::to_string(route),
                                    "--routes",
                                    "nats://127.0.0.1:" + std::to_string(peer)};
  };
  ASSERT_TRUE(n1.Start(node_args("n1", dir1, route1, route2))) << n1.Log();
  ASSERT_TRUE(n2.Start(node_args("n2", dir2, route2, route1))) << n2.Log();

  auto open = [](const BrokerProcess& n) {
    JetStreamStore::Options o;
    o.servers = n.url();
    o.dont_randomize = true;
    auto s = JetStreamStore::Open(o);
    EXPECT_TRUE(s.ok()) << s.error();
    return s.ok() ? std::move(s.value()) : nullptr;
  };
  auto a = open(n1);
  auto b = open(n2);
  ASSERT_TRUE(a && b);
  // The JetStream meta leader is elected a moment after both nodes run.
  Result<std::string> ea = MakeError(std::string("not tried"));
  ASSERT_TRUE(WaitFor([&] { return (ea = a->Epoch()).ok(); }, 60000ms)) << ea.error() << "\n"
                                                                        << n1.Log();
  Result<std::string> eb = MakeError(std::string("not tried"));
  ASSERT_TRUE(WaitFor([&] { return (eb = b->Epoch()).ok(); }, 60000ms)) << eb.error();
  EXPECT_EQ(*ea, *eb);

  for (uint64_t i = 1; i <= 3; ++i) {
    auto off = a->Append("room.1", std::to_string(i), UnixNow());
    ASSERT_TRUE(off.ok()) << off.error();
    EXPECT_EQ(*off, i);
  }
  auto off4 = b->Append("room.1", "4", UnixNow());
  ASSERT_TRUE(off4.ok()) << off4.error();
  EXPECT_EQ(*off4, 4u);
  auto read = b->ReadFrom("room.1", 1);
  ASSERT_TRUE(read.ok()) << read.error();
  EXPECT_EQ(Datas(*read), (std::vector<std::string>{"2", "3", "4"}));

  ASSERT_TRUE(a->PutSession("cluster-sid", "blob", 60).ok());
  auto taken = b->TakeSession("cluster-sid");
  ASSERT_TRUE(taken.ok() && taken->has_value()) << (taken.ok() ? "" : taken.error());
  auto again = a->TakeSession("cluster-sid");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());

  a.reset();
  b.reset();
  n1.Kill();
  n2.Kill();
  test::RunCommand({"/bin/rm", "-rf", dir1, dir2}, 10s);
}

// --embed_nats with --broker nats: the embedded nats-server runs JetStream in --enats_store_dir,
// and the store works against it.
TEST(JetStreamStoreEmbeddedTest, EmbeddedNatsRunsJetStreamInItsStoreDir) {
  if (BrokerProcess::FindBinary(BrokerProcess::Kind::kNats).empty()) {
    GTEST_SKIP() << "nats-server not installed";
  }
  const std::string dir = MakeTempDir();
  const int port = test::FreePort();
  config::Config cfg;
  cfg.embed_nats = true;
  cfg.broker = "nats";
  cfg.enats_addr = "nats://127.0.0.1:" + std::to_string(port);
  cfg.enats_server_name = "jsunit";
  cfg.enats_store_dir = dir;
  auto plan = enats::MakePlan(cfg);
  ASSERT_TRUE(plan.ok()) << plan.error();
  ASSERT_TRUE(plan->jetstream);
  auto server = enats::Server::Start(*plan);
  ASSERT_TRUE(server.ok()) << server.error();

  JetStreamStore::Options o;
  o.servers = cfg.enats_addr;
  auto store = JetStreamStore::Open(o);
  ASSERT_TRUE(store.ok()) << store.error();
  std::string last;
  ASSERT_TRUE(WaitFor([&] {
    auto e = (*store)->Epoch();
    if (!e.ok()) last = e.error();
    return e.ok();
  })) << last;
  auto off = (*store)->Append("embedded", "x", UnixNow());
  ASSERT_TRUE(off.ok()) << off.error();
  EXPECT_EQ(*off, 1u);
  struct stat st;
  EXPECT_EQ(stat((dir + "/jetstream").c_str(), &st), 0) << "no JetStream data in " << dir;
  (*store)->Close();
  (*server)->Stop();
  test::RunCommand({"/bin/rm", "-rf", dir}, 10s);
}

}  // namespace
}  // namespace cable::nats
