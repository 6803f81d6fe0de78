// Unit tests for hub::RemoteBroker against an in-memory fake BrokerStore: the history rules it
// applies on the broker thread (the memory broker's: position must be retained, foreign epoch or
// an unknown stream with a position → reject, `since`), append stamping and the outage path
// (offsets 0, counters, store_up), session take/put, and the session blob codec.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "hub/remote_broker.h"

namespace cable::hub {
namespace {

using namespace std::chrono_literals;

class FakeStore : public BrokerStore {
 public:
  explicit FakeStore(std::atomic<bool>* down) : down_(down) {}
  Result<std::string> Epoch() override {
    if (*down_) return MakeError(std::string("down"));
    return std::string("EPCH");
  }
  Result<std::vector<uint64_t>> Append(const std::vector<AppendEntry>& batch,
                                       int64_t unix_ts) override {
    if (*down_) return MakeError(std::string("down"));
    std::vector<uint64_t> out;
    for (const auto& e : batch) {
      auto& s = streams_[e.stream];
      s.push_back({s.empty() ? 1 : s.back().offset + 1, unix_ts, e.data});
      while (s.size() > 3) s.erase(s.begin());  // history_limit 3
      out.push_back(s.back().offset);
    }
    return out;
  }
  Result<std::vector<StoredPublication>> ReadFrom(const std::string& stream,
                                                  uint64_t from) override {
    if (*down_) return MakeError(std::string("down"));
    std::vector<StoredPublication> out;
    for (const auto& p : streams_[stream])
      if (p.offset >= from) out.push_back(p);
    return out;
  }
  Result<std::vector<StoredPublication>> ReadSince(const std::string& stream,
                                                   int64_t since) override {
    if (*down_) return MakeError(std::string("down"));
    std::vector<StoredPublication> out;
    for (const auto& p : streams_[stream])
      if (p.unix_ts >= since) out.push_back(p);
    return out;
  }
  Result<bool> PutSession(const std::string& sid, std::string_view blob, int) override {
    if (*down_) return MakeError(std::string("down"));
    sessions_[sid] = std::string(blob);
    return true;
  }
  Result<std::optional<std::string>> TakeSession(const std::string& sid) override {
    if (*down_) return MakeError(std::string("down"));
    auto it = sessions_.find(sid);
    if (it == sessions_.end()) return std::optional<std::string>();
    std::optional<std::string> out = std::move(it->second);
    sessions_.erase(it);
    return out;
  }

 private:
  std::atomic<bool>* down_;
  std::map<std::string, std::vector<StoredPublication>> streams_;
  std::map<std::string, std::string> sessions_;
};

class Sink : public BrokerReplySink {
 public:
  void OnBrokerReply(std::unique_ptr<BrokerReply> reply) override {
    std::lock_guard<std::mutex> lock(mu_);
    replies_.push_back(std::move(reply));
    cv_.notify_all();
  }
  std::unique_ptr<BrokerReply> Next() {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, 5s, [&] { return !replies_.empty(); })) return nullptr;
    auto r = std::move(replies_.front());
    replies_.erase(replies_.begin());
    return r;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<BrokerReply>> replies_;
};

struct Stamp {
  std::string epoch;
  std::vector<uint64_t> offsets;
  bool published = true;
};

Stamp AppendSync(RemoteBroker& b, std::vector<std::string> streams) {
  std::vector<AppendEntry> batch;
  for (auto& s : streams) batch.push_back({s, "{\"n\":1}", {}, {}, {}});
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Stamp out;
  b.Append(std::move(batch), [&](const std::string& e, const std::vector<uint64_t>& o, bool p) {
    std::lock_guard<std::mutex> lock(mu);
    out = {e, o, p};
    done = true;
    cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(mu);
  EXPECT_TRUE(cv.wait_for(lock, 5s, [&] { return done; }));
  return out;
}

HistoryQuery From(const std::string& stream, const std::string& epoch, uint64_t offset) {
  HistoryQuery q;
  q.stream = stream;
  q.has_position = true;
  q.epoch = epoch;
  q.offset = offset;
  return q;
}

std::vector<uint64_t> Offsets(const BrokerReply& r) {
  std::vector<uint64_t> out;
  for (const auto& s : r.streams)
    for (const Message* m : s.messages) out.push_back(m->offset());
  return out;
}

TEST(RemoteBroker, StampsHistoryRulesAndSessions) {
  std::atomic<bool> down{false};
  RemoteBroker b(std::make_unique<FakeStore>(&down), "fake", 300);
  Sink sink;
  Stamp s = AppendSync(b, {"a", "a", "b", "a", "a"});
  EXPECT_EQ(s.epoch, "EPCH");
  EXPECT_EQ(s.offsets, (std::vector<uint64_t>{1, 2, 1, 3, 4}));
  EXPECT_FALSE(s.published);  // the fake store does not publish
  EXPECT_EQ(b.counters().stamped_total.load(), 5u);

  // "a" retains 2..4: from 2 → 3, 4; from 4 → nothing (confirm); from 1 or 5 → reject.
  b.History(&sink, 7, "id", 1, {From("a", "EPCH", 2)});
  auto r = sink.Next();
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(r->ok);
  EXPECT_EQ(r->token, 7u);
  EXPECT_EQ(r->request_id, 1u);
  EXPECT_EQ(Offsets(*r), (std::vector<uint64_t>{3, 4}));
  EXPECT_EQ(r->streams[0].messages[0]->epoch(), "EPCH");
  EXPECT_EQ(r->streams[0].messages[0]->message_json(), "{\"n\":1}");
  for (uint64_t off : {4u}) {
    b.History(&sink, 7, "id", 2, {From("a", "EPCH", off)});
    r = sink.Next();
    EXPECT_TRUE(r->ok);
    EXPECT_TRUE(Offsets(*r).empty());
  }
  for (uint64_t off : {0u, 1u, 5u}) {
    b.History(&sink, 7, "id", 3, {From("a", "EPCH", off)});
    r = sink.Next();
    EXPECT_FALSE(r->ok) << off;
    EXPECT_TRUE(r->streams.empty());
  }
  b.History(&sink, 7, "id", 4, {From("a", "OTHR", 3)});
  EXPECT_FALSE(sink.Next()->ok);
  b.History(&sink, 7, "id", 5, {From("nope", "EPCH", 1)});
  EXPECT_FALSE(sink.Next()->ok);
  // One bad stream rejects the whole request.
  b.History(&sink, 7, "id", 6, {From("b", "EPCH", 1), From("a", "EPCH", 1)});
  EXPECT_FALSE(sink.Next()->ok);
  HistoryQuery since;
  since.stream = "nope";
  since.since = 1;
  b.History(&sink, 7, "id", 8, {since});
  r = sink.Next();
  EXPECT_TRUE(r->ok);
  EXPECT_TRUE(Offsets(*r).empty());
  EXPECT_EQ(b.counters().history_rejected_total.load(), 6u);

  CachedSession cs;
  cs.identifiers = "{\"u\":1}";
  cs.cstate = {{"k", "v"}};
  cs.used_rpc = true;
  cs.subs.push_back({"sub-id", {"s1", "s2"}, {{"ik", "iv"}}, true});
  b.PutSession("sid1", cs);
  b.TakeSession(&sink, 9, "sid1");
  r = sink.Next();
  ASSERT_TRUE(r->session.has_value());
  EXPECT_EQ(r->old_sid, "sid1");
  EXPECT_EQ(r->session->identifiers, cs.identifiers);
  EXPECT_EQ(r->session->cstate, cs.cstate);
  EXPECT_TRUE(r->session->used_rpc);
  EXPECT_FALSE(r->session->rpc_free_auth);
  ASSERT_EQ(r->session->subs.size(), 1u);
  EXPECT_EQ(r->session->subs[0].streams, (std::vector<std::string>{"s1", "s2"}));
  EXPECT_EQ(r->session->subs[0].istate, (std::map<std::string, std::string>{{"ik", "iv"}}));
  EXPECT_TRUE(r->session->subs[0].builtin);
  b.TakeSession(&sink, 9, "sid1");  // single use
  EXPECT_FALSE(sink.Next()->session.has_value());
}

TEST(RemoteBroker, StoreDownMeansUnstampedRejectedAndNoSessionThenHeals) {
  std::atomic<bool> down{true};
  RemoteBroker b(std::make_unique<FakeStore>(&down), "fake", 300);
  Sink sink;
  Stamp s = AppendSync(b, {"a", "a"});
  EXPECT_EQ(s.epoch, "");
  EXPECT_EQ(s.offsets, (std::vector<uint64_t>{0, 0}));
  EXPECT_EQ(b.counters().unstamped_total.load(), 2u);
  EXPECT_EQ(b.counters().store_up.load(), 0);
  b.History(&sink, 1, "id", 1, {From("a", "EPCH", 1)});
  EXPECT_FALSE(sink.Next()->ok);
  b.TakeSession(&sink, 1, "sid");
  EXPECT_FALSE(sink.Next()->session.has_value());
  EXPECT_GE(b.counters().errors_total.load(), 3u);
  down = false;
  // The broker probes the store while it is down: store_up comes back without traffic.
  for (int i = 0; i < 500 && b.counters().store_up.load() == 0; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(b.counters().store_up.load(), 1);
  s = AppendSync(b, {"a"});
  EXPECT_EQ(s.offsets, (std::vector<uint64_t>{1}));
}

TEST(SessionCodec, RoundTripsAndRejectsGarbage) {
  CachedSession cs;
  cs.identifiers = std::string("a\0b", 3);
  cs.rpc_free_auth = true;
  auto back = DecodeSession(EncodeSession(cs));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->identifiers, cs.identifiers);
  EXPECT_TRUE(back->rpc_free_auth);
  EXPECT_FALSE(DecodeSession("").has_value());
  EXPECT_FALSE(DecodeSession("{\"ids\":1}").has_value());
  std::string blob = EncodeSession(cs);
  EXPECT_FALSE(DecodeSession(blob.substr(0, blob.size() - 1)).has_value());
  EXPECT_FALSE(DecodeSession(blob + "x").has_value());
}

}  // namespace
}  // namespace cable::hub
