// Unit tests for the broadcast hub: Frame refcounting, the Message frame cache, the BroadcastLog
// and the per-worker LocalIndex. The threaded tests are also meant to run under ThreadSanitizer
// (-DCABLE_SANITIZE=thread builds only this target).
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <gtest/gtest.h>

#include "hub/broadcast_log.h"
#include "hub/frame.h"
#include "hub/local_index.h"
#include "hub/message.h"
#include "ws/deflate.h"

namespace cable::hub {
namespace {

// Records every freed frame; installed for the lifetime of a test fixture.
class FreeRecorder {
 public:
  FreeRecorder() {
    Instance() = this;
    Frame::free_hook = &FreeRecorder::Hook;
  }
  ~FreeRecorder() {
    Frame::free_hook = nullptr;
    Instance() = nullptr;
  }
  int Count(const Frame* f) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = freed_.find(f);
    return it == freed_.end() ? 0 : it->second;
  }
  size_t Total() const {
    std::lock_guard<std::mutex> lock(mu_);
    size_t n = 0;
    for (const auto& [f, c] : freed_) n += static_cast<size_t>(c);
    return n;
  }
  // The allocator may hand the same address to a later frame: forget it once it was checked.
  void Forget(const Frame* f) {
    std::lock_guard<std::mutex> lock(mu_);
    freed_.erase(f);
  }
  void Reset() {
    std::lock_guard<std::mutex> lock(mu_);
    freed_.clear();
  }

 private:
  static FreeRecorder*& Instance() {
    static FreeRecorder* r = nullptr;
    return r;
  }
  static void Hook(const Frame* f) {
    FreeRecorder* r = Instance();
    std::lock_guard<std::mutex> lock(r->mu_);
    ++r->freed_[f];
  }
  mutable std::mutex mu_;
  std::unordered_map<const Frame*, int> freed_;
};

// ---------------------------------------------------------------------------------------------
// Frame

class FrameTest : public ::testing::Test {
 protected:
  FreeRecorder rec_;
};

TEST_F(FrameTest, LocalFrameIsFreedOnceWhenTheLastReferenceGoes) {
  Frame* f = Frame::NewLocal(5);
  EXPECT_FALSE(f->shared());
  EXPECT_EQ(f->size(), 5u);
  std::memcpy(f->data(), "hello", 5);
  f->Acquire(0);
  f->Acquire(3);  // the worker index is ignored for local frames
  f->ReleaseCreator();
  EXPECT_EQ(rec_.Count(f), 0);
  EXPECT_EQ(std::string(f->data(), f->size()), "hello");
  f->Release(0);
  EXPECT_EQ(rec_.Count(f), 0);
  f->Release(1);
  EXPECT_EQ(rec_.Count(f), 1);
  EXPECT_EQ(rec_.Total(), 1u);
}

TEST_F(FrameTest, LocalFrameWithoutExtraReferencesIsFreedByTheCreator) {
  Frame* f = Frame::NewLocal(0);
  EXPECT_EQ(f->size(), 0u);
  f->ReleaseCreator();
  EXPECT_EQ(rec_.Count(f), 1);
}

TEST_F(FrameTest, CreatorRefReleasesOnScopeExit) {
  Frame* f = Frame::NewLocal(3);
  {
    CreatorRef ref(f);
    EXPECT_EQ(ref.get(), f);
    f->Acquire(0);
  }
  EXPECT_EQ(rec_.Count(f), 0);  // the queued reference keeps it
  f->Release(0);
  EXPECT_EQ(rec_.Count(f), 1);
  {
    CreatorRef empty(nullptr);  // no-op
  }
  EXPECT_EQ(rec_.Total(), 1u);
}

TEST_F(FrameTest, SharedFrameLayoutAndWritableBytes) {
  for (int workers : {1, 2, 7, 64}) {
    for (size_t size : {0u, 1u, 63u, 64u, 65u, 4096u}) {
      Frame* f = Frame::NewShared(size, workers);
      EXPECT_TRUE(f->shared());
      EXPECT_EQ(f->size(), size);
      std::memset(f->data(), 0xab, size);  // ASan flags any out-of-bounds byte
      // Per-worker counters sit before the data: touching every worker's counter must not
      // corrupt the bytes.
      for (int w = 0; w < workers; ++w) f->Acquire(w);
      for (size_t i = 0; i < size; ++i) ASSERT_EQ(static_cast<uint8_t>(f->data()[i]), 0xab);
      for (int w = 0; w < workers; ++w) f->Release(w);
      EXPECT_EQ(rec_.Count(f), 0) << "creator still holds it";
      f->ReleaseCreator();
      EXPECT_EQ(rec_.Count(f), 1);
      rec_.Forget(f);
    }
  }
}

TEST_F(FrameTest, SharedFrameSurvivesCreatorUntilEveryWorkerReleases) {
  Frame* f = Frame::NewShared(16, 3);
  f->Acquire(0);
  f->Acquire(0);
  f->Acquire(2);
  f->ReleaseCreator();
  EXPECT_EQ(rec_.Count(f), 0);
  f->Release(0);
  EXPECT_EQ(rec_.Count(f), 0);
  f->Release(2);
  EXPECT_EQ(rec_.Count(f), 0) << "worker 0 still has one queued use";
  f->Release(0);
  EXPECT_EQ(rec_.Count(f), 1);
}

TEST_F(FrameTest, SharedFrameReacquiredAfterWorkerDroppedToZero) {
  Frame* f = Frame::NewShared(8, 2);
  f->Acquire(1);
  f->Release(1);  // worker 1's local count back to 0: its atomic reference is returned
  EXPECT_EQ(rec_.Count(f), 0);
  f->Acquire(1);
  f->ReleaseCreator();
  EXPECT_EQ(rec_.Count(f), 0);
  f->Release(1);
  EXPECT_EQ(rec_.Count(f), 1);
}

TEST_F(FrameTest, SharedFrameFromManyThreadsIsFreedExactlyOnce) {
  constexpr int kWorkers = 4;
  constexpr int kUses = 1000;
  for (int round = 0; round < 50; ++round) {
    Frame* f = Frame::NewShared(32, kWorkers);
    std::barrier sync(kWorkers + 1);
    std::vector<std::thread> threads;
    for (int w = 0; w < kWorkers; ++w) {
      threads.emplace_back([&, w] {
        for (int i = 0; i < kUses; ++i) f->Acquire(w);
        sync.arrive_and_wait();  // every worker holds references
        sync.arrive_and_wait();  // the creator may be gone now
        for (int i = 0; i < kUses; ++i) {
          EXPECT_EQ(f->size(), 32u);
          f->Release(w);
        }
      });
    }
    sync.arrive_and_wait();
    f->ReleaseCreator();
    EXPECT_EQ(rec_.Count(f), 0);
    sync.arrive_and_wait();
    for (auto& t : threads) t.join();
    ASSERT_EQ(rec_.Count(f), 1) << "round " << round;
    rec_.Forget(f);
  }
}

TEST_F(FrameTest, SharedFrameCreatorRacingWithWorkersIsFreedExactlyOnce) {
  // The creator drops its reference while workers are still acquiring and releasing: the frame
  // must outlive every use and be freed by whoever is last.
  constexpr int kWorkers = 4;
  for (int round = 0; round < 200; ++round) {
    Frame* f = Frame::NewShared(8, kWorkers);
    for (int w = 0; w < kWorkers; ++w) f->Acquire(w);  // taken while the creator holds it
    std::barrier sync(kWorkers + 1);
    std::vector<std::thread> threads;
    for (int w = 0; w < kWorkers; ++w) {
      threads.emplace_back([&, w] {
        sync.arrive_and_wait();
        for (int i = 0; i < 50; ++i) {
          f->Acquire(w);
          f->Release(w);
        }
        f->Release(w);
      });
    }
    sync.arrive_and_wait();
    f->ReleaseCreator();
    for (auto& t : threads) t.join();
    ASSERT_EQ(rec_.Count(f), 1) << "round " << round;
    rec_.Forget(f);
  }
}

// ---------------------------------------------------------------------------------------------
// Message

// Decodes one unmasked server frame; returns false if the bytes are not exactly one such frame.
bool DecodeServerFrame(const Frame* f, int* opcode, std::string* payload) {
  const auto* b = reinterpret_cast<const uint8_t*>(f->data());
  size_t n = f->size();
  if (n < 2) return false;
  if ((b[0] & 0x80) == 0) return false;  // FIN
  if ((b[0] & 0x70) != 0) return false;  // RSV bits
  if ((b[1] & 0x80) != 0) return false;  // server frames are never masked
  *opcode = b[0] & 0x0f;
  uint64_t len = b[1] & 0x7f;
  size_t pos = 2;
  if (len == 126) {
    if (n < 4) return false;
    len = (static_cast<uint64_t>(b[2]) << 8) | b[3];
    if (len < 126) return false;  // not minimal
    pos = 4;
  } else if (len == 127) {
    if (n < 10) return false;
    len = 0;
    for (int i = 0; i < 8; ++i) len = (len << 8) | b[2 + i];
    if (len < 65536) return false;
    pos = 10;
  }
  if (pos + len != n) return false;
  payload->assign(f->data() + pos, len);
  return true;
}

class MessageTest : public ::testing::Test {
 protected:
  FreeRecorder rec_;
};

TEST_F(MessageTest, FrameIsAValidUnmaskedTextFrame) {
  const std::string id = R"({"channel":"ChatChannel","room":"a\"b"})";
  std::vector<std::string> messages = {
      R"({"text":"hi"})", R"("plain")",
      std::string("\"") + std::string(200, 'x') + "\"",    // 16-bit length
      std::string("\"") + std::string(70000, 'y') + "\"",  // 64-bit length
  };
  for (const std::string& json : messages) {
    Message* m = Message::NewPublication("s", json, "", 1);
    Frame* f = m->FrameFor(id);
    ASSERT_NE(f, nullptr);
    EXPECT_TRUE(f->shared());
    int opcode = -1;
    std::string payload;
    ASSERT_TRUE(DecodeServerFrame(f, &opcode, &payload)) << json.size();
    EXPECT_EQ(opcode, 1);
    EXPECT_EQ(payload,
              R"({"identifier":"{\"channel\":\"ChatChannel\",\"room\":\"a\\\"b\"}","message":)" +
                  json + "}");
    Frame* local = m->BuildLocalFrame(id);
    EXPECT_FALSE(local->shared());
    ASSERT_EQ(local->size(), f->size());
    EXPECT_EQ(std::memcmp(local->data(), f->data(), f->size()), 0);
    local->ReleaseCreator();
    m->Release();
    EXPECT_EQ(rec_.Count(f), 1);
    rec_.Forget(f);
  }
}

TEST_F(MessageTest, AccessorsOfPublicationAndRemoteDisconnect) {
  Message* p = Message::NewPublication("stream", "1", "sid-1", 2);
  EXPECT_EQ(p->kind(), Message::Kind::kPublication);
  EXPECT_EQ(p->stream(), "stream");
  EXPECT_EQ(p->message_json(), "1");
  EXPECT_EQ(p->exclude_socket(), "sid-1");
  EXPECT_GT(p->accepted_ns(), 0);
  p->Release();
  p->Release();
  Message* d = Message::NewRemoteDisconnect(R"({"current_user":"bob"})", true, 1);
  EXPECT_EQ(d->kind(), Message::Kind::kRemoteDisconnect);
  EXPECT_EQ(d->identifiers(), R"({"current_user":"bob"})");
  EXPECT_TRUE(d->reconnect());
  d->Release();
}

TEST_F(MessageTest, SameIdentifierReturnsTheCachedFrame) {
  Message* m = Message::NewPublication("s", "1", "", 1);
  Frame* a = m->FrameFor("A");
  Frame* b = m->FrameFor("B");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  EXPECT_EQ(m->FrameFor("A"), a);
  EXPECT_EQ(m->FrameFor("B"), b);
  EXPECT_EQ(rec_.Total(), 0u);
  m->Release();
  EXPECT_EQ(rec_.Count(a), 1);
  EXPECT_EQ(rec_.Count(b), 1);
}

TEST_F(MessageTest, EachWireHasItsOwnSharedFrame) {
  // The transports' encodings (hub/wire.h): one shared frame per (identifier, wire).
  Message* m = Message::NewPublication("chat", R"("a\nb")", "", 1);
  m->SetPosition("ep", 7, 0, 1);
  Frame* ws = m->FrameFor("I", Wire::kWs);
  Frame* ext = m->FrameFor("I", Wire::kWsExt);
  Frame* sse = m->FrameFor("I", Wire::kSse);
  Frame* full = m->FrameFor("I", Wire::kSseFull);
  Frame* line = m->FrameFor("I", Wire::kJsonl);
  for (Frame* f : {ws, ext, sse, full, line}) {
    ASSERT_NE(f, nullptr);
    EXPECT_TRUE(f->shared());
  }
  EXPECT_EQ(m->FrameFor("I", Wire::kSse), sse);
  EXPECT_EQ(m->FrameFor("I", Wire::kJsonl), line);
  EXPECT_NE(ws, ext);
  // GET stream: the message's text, one data line per line, the position as the id; a chunk.
  EXPECT_EQ(std::string(sse->data(), sse->size()), "1f\r\ndata: a\ndata: b\nid: 7/ep/chat\n\n\r\n");
  const std::string ext_json =
      R"({"identifier":"I","message":"a\nb","stream_id":"chat","epoch":"ep","offset":7})";
  const std::string full_event = "data: " + ext_json + "\nid: 7/ep/chat\n\n";
  std::string full_bytes(full->data(), full->size());
  EXPECT_EQ(full_bytes.substr(full_bytes.find("\r\n") + 2), full_event + "\r\n");
  EXPECT_EQ(std::string(line->data(), line->size()), ext_json + "\n");
  Frame* local = m->BuildLocalFrame("I", Wire::kSse);
  ASSERT_EQ(local->size(), sse->size());
  EXPECT_EQ(std::memcmp(local->data(), sse->data(), sse->size()), 0);
  local->ReleaseCreator();
  m->Release();
  for (Frame* f : {ws, ext, sse, full, line}) EXPECT_EQ(rec_.Count(f), 1);
  // Without a position the ext variant is the v1 frame, and SSE events carry no id.
  Message* plain = Message::NewPublication("chat", "1", "", 1);
  EXPECT_EQ(plain->FrameFor("I", Wire::kWsExt), plain->FrameFor("I", Wire::kWs));
  Frame* bare = plain->FrameFor("I", Wire::kSse);
  EXPECT_EQ(std::string(bare->data(), bare->size()), "9\r\ndata: 1\n\n\r\n");
  plain->Release();
}

TEST_F(MessageTest, CacheOverflowReturnsNullptrAndKeepsEarlierEntries) {
  Message* m = Message::NewPublication("s", "1", "", 1);
  std::vector<Frame*> frames;
  for (int i = 0; i < 8; ++i) {
    Frame* f = m->FrameFor("id" + std::to_string(i));
    ASSERT_NE(f, nullptr) << i;
    frames.push_back(f);
  }
  size_t freed_before = rec_.Total();
  EXPECT_EQ(m->FrameFor("id8"), nullptr);
  EXPECT_EQ(m->FrameFor("id9"), nullptr);
  // A full cache is detected before building anything: no frame was made (or leaked) for them.
  EXPECT_EQ(rec_.Total(), freed_before);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(m->FrameFor("id" + std::to_string(i)), frames[i]);
  Frame* local = m->BuildLocalFrame("id8");
  int opcode = -1;
  std::string payload;
  ASSERT_TRUE(DecodeServerFrame(local, &opcode, &payload));
  EXPECT_EQ(payload, R"({"identifier":"id8","message":1})");
  local->ReleaseCreator();
  m->Release();
  for (Frame* f : frames) EXPECT_EQ(rec_.Count(f), 1);
}

TEST_F(MessageTest, FrameOutlivesMessageWhileAWorkerHoldsIt) {
  Message* m = Message::NewPublication("s", "1", "", 2);
  Frame* f = m->FrameFor("A");
  f->Acquire(1);
  m->Release();
  EXPECT_EQ(rec_.Count(f), 0) << "one worker reference on the message remains";
  m->Release();  // message deleted: the cache's creator reference is dropped
  EXPECT_EQ(rec_.Count(f), 0) << "worker 1 still queues it";
  f->Release(1);
  EXPECT_EQ(rec_.Count(f), 1);
}

TEST_F(MessageTest, ConcurrentFrameForAgreesOnOneFramePerIdentifier) {
  constexpr int kThreads = 6;
  for (int round = 0; round < 200; ++round) {
    rec_.Reset();  // losers of earlier rounds may share an address with this round's winner
    Message* m = Message::NewPublication("s", R"({"n":1})", "", kThreads);
    std::vector<Frame*> got(kThreads, nullptr);
    std::barrier sync(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        sync.arrive_and_wait();
        got[t] = m->FrameFor("same");
        // Use it as a worker would: queue it, read it, drop it.
        got[t]->Acquire(t);
        EXPECT_EQ(got[t]->data()[got[t]->size() - 1], '}');
        got[t]->Release(t);
      });
    }
    for (auto& t : threads) t.join();
    for (int t = 1; t < kThreads; ++t) ASSERT_EQ(got[t], got[0]) << "round " << round;
    Frame* winner = got[0];
    ASSERT_NE(winner, nullptr);
    EXPECT_EQ(rec_.Count(winner), 0) << "the cached frame survives while the message lives";
    for (int t = 0; t < kThreads; ++t) m->Release();
    ASSERT_EQ(rec_.Count(winner), 1) << "round " << round;
    rec_.Forget(winner);
  }
}

TEST_F(MessageTest, ConcurrentFrameForManyIdentifiers) {
  constexpr int kThreads = 4;
  constexpr int kIds = 8;  // exactly fills the cache
  for (int round = 0; round < 100; ++round) {
    Message* m = Message::NewPublication("s", "2", "", kThreads);
    std::vector<std::vector<Frame*>> got(kThreads, std::vector<Frame*>(kIds, nullptr));
    std::barrier sync(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        std::vector<int> order(kIds);
        for (int i = 0; i < kIds; ++i) order[i] = i;
        std::mt19937 rng(static_cast<uint32_t>(round * 31 + t));
        std::shuffle(order.begin(), order.end(), rng);
        sync.arrive_and_wait();
        for (int i : order) got[t][i] = m->FrameFor("id" + std::to_string(i));
      });
    }
    for (auto& t : threads) t.join();
    std::set<Frame*> distinct;
    for (int i = 0; i < kIds; ++i) {
      ASSERT_NE(got[0][i], nullptr) << "round " << round << " id " << i;
      for (int t = 1; t < kThreads; ++t) ASSERT_EQ(got[t][i], got[0][i]);
      int opcode = -1;
      std::string payload;
      ASSERT_TRUE(DecodeServerFrame(got[0][i], &opcode, &payload));
      EXPECT_EQ(payload, R"({"identifier":"id)" + std::to_string(i) + R"(","message":2})");
      distinct.insert(got[0][i]);
    }
    EXPECT_EQ(distinct.size(), static_cast<size_t>(kIds));
    EXPECT_EQ(m->FrameFor("id8"), nullptr);
    // A loser's frame for one identifier may have been freed at an address a winner for another
    // identifier got later: count the frees the message's end causes, per winner.
    std::map<Frame*, int> before;
    for (Frame* f : distinct) before[f] = rec_.Count(f);
    for (int t = 0; t < kThreads; ++t) m->Release();
    for (Frame* f : distinct) ASSERT_EQ(rec_.Count(f) - before[f], 1);
    rec_.Reset();
  }
}

// ---------------------------------------------------------------------------------------------
// BroadcastLog

// Messages whose identity is their position in a vector; freed at the end of each test.
class LogTest : public ::testing::Test {
 protected:
  ~LogTest() override {
    for (Message* m : owned_) m->Release();
  }
  Message* Make(const std::string& stream) {
    Message* m = Message::NewPublication(stream, "1", "", 1);
    owned_.push_back(m);
    return m;
  }
  std::vector<Message*> owned_;
};

TEST_F(LogTest, EveryConsumerReadsEveryMessageInOrder) {
  BroadcastLog log(16, 3);
  EXPECT_EQ(log.consumers(), 3);
  std::vector<Message*> sent;
  for (int i = 0; i < 10; ++i) {
    sent.push_back(Make("s" + std::to_string(i)));
    ASSERT_TRUE(log.TryPublish(sent.back()));
  }
  for (int c = 0; c < 3; ++c) {
    EXPECT_TRUE(log.HasPending(c));
    for (int i = 0; i < 10; ++i) {
      ASSERT_EQ(log.Peek(c), sent[i]) << "consumer " << c << " pos " << i;
      EXPECT_EQ(log.Peek(c), sent[i]) << "Peek does not advance";
      log.Advance(c);
    }
    EXPECT_EQ(log.Peek(c), nullptr);
    EXPECT_FALSE(log.HasPending(c));
  }
}

TEST_F(LogTest, EmptyLogHasNothingPending) {
  BroadcastLog log(4, 2);
  EXPECT_EQ(log.Peek(0), nullptr);
  EXPECT_EQ(log.Peek(1), nullptr);
}

TEST_F(LogTest, FullLogRejectsAndLosesNothing) {
  BroadcastLog log(4, 2);
  std::vector<Message*> accepted;
  for (int i = 0; i < 4; ++i) {
    accepted.push_back(Make("a" + std::to_string(i)));
    ASSERT_TRUE(log.TryPublish(accepted.back()));
  }
  Message* late = Make("late");
  EXPECT_FALSE(log.TryPublish(late));
  // Consumer 0 catching up is not enough: consumer 1 still holds every slot.
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(log.Peek(0), accepted[i]);
    log.Advance(0);
  }
  EXPECT_FALSE(log.TryPublish(late));
  EXPECT_EQ(log.Peek(0), nullptr) << "the rejected message was not published";
  // The slowest consumer frees one slot: exactly one more fits.
  ASSERT_EQ(log.Peek(1), accepted[0]);
  log.Advance(1);
  EXPECT_TRUE(log.TryPublish(late));
  accepted.push_back(late);
  Message* later = Make("later");
  EXPECT_FALSE(log.TryPublish(later));
  // Both consumers see the whole sequence, wrapping around the ring, with nothing overwritten.
  ASSERT_EQ(log.Peek(0), late);
  log.Advance(0);
  EXPECT_EQ(log.Peek(0), nullptr);
  for (int i = 1; i < 5; ++i) {
    ASSERT_EQ(log.Peek(1), accepted[i]) << i;
    log.Advance(1);
  }
  EXPECT_EQ(log.Peek(1), nullptr);
  EXPECT_TRUE(log.TryPublish(later));
  EXPECT_EQ(log.Peek(0), later);
  EXPECT_EQ(log.Peek(1), later);
}

TEST_F(LogTest, WrapsAroundManyTimes) {
  BroadcastLog log(8, 1);
  for (int i = 0; i < 1000; ++i) {
    Message* m = Make("w");
    ASSERT_TRUE(log.TryPublish(m));
    ASSERT_EQ(log.Peek(0), m);
    log.Advance(0);
    ASSERT_EQ(log.Peek(0), nullptr);
  }
}

TEST_F(LogTest, MultiProducerStressIdenticalSequencePerConsumer) {
  constexpr int kProducers = 4;
  constexpr int kConsumers = 3;
  constexpr int kPerProducer = 20000;
  constexpr int kTotal = kProducers * kPerProducer;
  BroadcastLog log(64, kConsumers);  // small: producers hit the full path constantly
  std::vector<std::vector<Message*>> msgs(kProducers);
  std::unordered_map<const Message*, std::pair<int, int>> origin;
  for (int p = 0; p < kProducers; ++p) {
    for (int i = 0; i < kPerProducer; ++i) {
      msgs[p].push_back(Make("p"));
      origin[msgs[p].back()] = {p, i};
    }
  }
  std::atomic<uint64_t> rejected{0};
  std::vector<std::vector<const Message*>> seen(kConsumers);
  std::vector<std::thread> threads;
  for (int c = 0; c < kConsumers; ++c) {
    seen[c].reserve(kTotal);
    threads.emplace_back([&, c] {
      while (seen[c].size() < static_cast<size_t>(kTotal)) {
        Message* m = log.Peek(c);
        if (!m) {
          std::this_thread::yield();
          continue;
        }
        seen[c].push_back(m);
        log.Advance(c);
      }
    });
  }
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      for (Message* m : msgs[p]) {
        while (!log.TryPublish(m)) {
          rejected.fetch_add(1, std::memory_order_relaxed);
          std::this_thread::yield();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int c = 0; c < kConsumers; ++c) {
    ASSERT_EQ(seen[c].size(), static_cast<size_t>(kTotal));
    EXPECT_EQ(log.Peek(c), nullptr) << "nothing beyond what was published";
  }
  for (int c = 1; c < kConsumers; ++c) {
    ASSERT_TRUE(seen[c] == seen[0]) << "consumer " << c << " saw a different global order";
  }
  // Each message exactly once, each producer's messages in its own order.
  std::vector<int> next(kProducers, 0);
  for (const Message* m : seen[0]) {
    auto it = origin.find(m);
    ASSERT_NE(it, origin.end());
    auto [p, i] = it->second;
    ASSERT_EQ(i, next[p]) << "producer " << p;
    ++next[p];
  }
  for (int p = 0; p < kProducers; ++p) EXPECT_EQ(next[p], kPerProducer);
  RecordProperty("rejected_publishes", std::to_string(rejected.load()));
}

// ---------------------------------------------------------------------------------------------
// LocalIndex

std::set<const Subscription*> Members(const LocalIndex& index, const std::string& stream) {
  std::set<const Subscription*> out;
  const Bucket* b = index.Find(stream);
  if (!b) return out;
  for (const auto& e : b->entries) out.insert(e.sub);
  return out;
}

TEST(LocalIndexTest, AddFindRemove) {
  LocalIndex index;
  Subscription a, b;
  a.identifier = "A";
  b.identifier = "B";
  EXPECT_EQ(index.Find("s1"), nullptr);
  index.Add(&a, "s1");
  index.Add(&b, "s1");
  index.Add(&a, "s2");
  EXPECT_EQ(index.streams(), 2u);
  EXPECT_EQ(Members(index, "s1"), (std::set<const Subscription*>{&a, &b}));
  EXPECT_EQ(Members(index, "s2"), (std::set<const Subscription*>{&a}));
  ASSERT_NE(index.Find("s1"), nullptr);
  EXPECT_EQ(*index.Find("s1")->name, "s1");
  EXPECT_TRUE(LocalIndex::Has(&a, "s1"));
  EXPECT_TRUE(LocalIndex::Has(&a, "s2"));
  EXPECT_FALSE(LocalIndex::Has(&b, "s2"));

  index.Add(&a, "s1");  // already streaming: no second entry (one frame per identifier)
  EXPECT_EQ(index.Find("s1")->entries.size(), 2u);
  EXPECT_EQ(a.links.size(), 2u);

  index.Remove(&b, "s2");  // not subscribed: no-op
  index.Remove(&b, "nope");
  EXPECT_EQ(index.streams(), 2u);

  index.Remove(&a, "s1");
  EXPECT_EQ(Members(index, "s1"), (std::set<const Subscription*>{&b}));
  EXPECT_FALSE(LocalIndex::Has(&a, "s1"));
  index.Remove(&a, "s2");
  EXPECT_EQ(index.Find("s2"), nullptr) << "empty bucket is erased";
  EXPECT_EQ(index.streams(), 1u);
  EXPECT_TRUE(a.links.empty());
}

TEST(LocalIndexTest, RemoveAllLeavesOthersIntact) {
  LocalIndex index;
  Subscription a, b;
  a.identifier = "A";
  b.identifier = "B";
  for (int i = 0; i < 10; ++i) {
    index.Add(&a, "s" + std::to_string(i));
    if (i % 2 == 0) index.Add(&b, "s" + std::to_string(i));
  }
  EXPECT_EQ(index.streams(), 10u);
  index.RemoveAll(&a);
  EXPECT_TRUE(a.links.empty());
  EXPECT_EQ(index.streams(), 5u);
  for (int i = 0; i < 10; ++i) {
    std::string s = "s" + std::to_string(i);
    if (i % 2 == 0) {
      EXPECT_EQ(Members(index, s), (std::set<const Subscription*>{&b}));
    } else {
      EXPECT_EQ(index.Find(s), nullptr);
    }
  }
  index.RemoveAll(&a);  // idempotent
  index.RemoveAll(&b);
  EXPECT_EQ(index.streams(), 0u);
}

// Checks every back-reference both ways, and the index against the reference model.
void CheckConsistent(const LocalIndex& index, const std::vector<Subscription>& subs,
                     const std::map<std::string, std::set<const Subscription*>>& model) {
  size_t non_empty = 0;
  for (const auto& [stream, members] : model) {
    if (members.empty()) {
      ASSERT_EQ(index.Find(stream), nullptr) << stream;
      continue;
    }
    ++non_empty;
    const Bucket* b = index.Find(stream);
    ASSERT_NE(b, nullptr) << stream;
    ASSERT_EQ(*b->name, stream);
    ASSERT_EQ(b->entries.size(), members.size()) << stream;
    for (uint32_t i = 0; i < b->entries.size(); ++i) {
      const Bucket::Entry& e = b->entries[i];
      ASSERT_TRUE(members.count(e.sub)) << stream;
      ASSERT_LT(e.link, e.sub->links.size());
      ASSERT_EQ(e.sub->links[e.link].bucket, b);
      ASSERT_EQ(e.sub->links[e.link].index, i);
    }
  }
  ASSERT_EQ(index.streams(), non_empty);
  for (const Subscription& s : subs) {
    size_t expected_links = 0;
    for (const auto& [stream, members] : model) expected_links += members.count(&s);
    ASSERT_EQ(s.links.size(), expected_links) << s.identifier;
    for (uint32_t l = 0; l < s.links.size(); ++l) {
      const Subscription::Link& link = s.links[l];
      ASSERT_LT(link.index, link.bucket->entries.size());
      ASSERT_EQ(link.bucket->entries[link.index].sub, &s);
      ASSERT_EQ(link.bucket->entries[link.index].link, l);
      ASSERT_TRUE(model.at(*link.bucket->name).count(&s));
    }
  }
}

TEST(LocalIndexTest, RandomisedAgainstReferenceModel) {
  constexpr int kSubs = 200;
  constexpr int kStreams = 40;
  constexpr int kOps = 30000;
  std::vector<Subscription> subs(kSubs);
  for (int i = 0; i < kSubs; ++i) subs[i].identifier = "id" + std::to_string(i);
  std::vector<std::string> streams;
  for (int i = 0; i < kStreams; ++i) streams.push_back("stream:" + std::to_string(i));
  LocalIndex index;
  std::map<std::string, std::set<const Subscription*>> model;
  for (const auto& s : streams) model[s];
  std::mt19937 rng(12345);
  // Skew towards Add so buckets grow large (hundreds of entries) before removals thin them out.
  for (int op = 0; op < kOps; ++op) {
    Subscription* sub = &subs[rng() % kSubs];
    const std::string& stream = streams[rng() % kStreams];
    uint32_t kind = rng() % 100;
    if (kind < 55) {
      index.Add(sub, stream);
      model[stream].insert(sub);
    } else if (kind < 95) {
      index.Remove(sub, stream);
      model[stream].erase(sub);
    } else {
      index.RemoveAll(sub);
      for (auto& [s, members] : model) members.erase(sub);
    }
    ASSERT_EQ(LocalIndex::Has(sub, stream), model[stream].count(sub) > 0);
    if (op % 97 == 0 || op == kOps - 1) {
      ASSERT_NO_FATAL_FAILURE(CheckConsistent(index, subs, model)) << "after op " << op;
    }
  }
  for (auto& s : subs) index.RemoveAll(&s);
  EXPECT_EQ(index.streams(), 0u);
}

TEST(LocalIndexTest, ManySubscriptionsOneStreamRemovedInRandomOrder) {
  constexpr int kSubs = 5000;
  std::vector<Subscription> subs(kSubs);
  LocalIndex index;
  for (auto& s : subs) {
    index.Add(&s, "big");
    index.Add(&s, "other");
  }
  ASSERT_EQ(index.Find("big")->entries.size(), static_cast<size_t>(kSubs));
  std::vector<int> order(kSubs);
  for (int i = 0; i < kSubs; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937(7));
  std::map<std::string, std::set<const Subscription*>> model;
  for (auto& s : subs) {
    model["big"].insert(&s);
    model["other"].insert(&s);
  }
  for (int n = 0; n < kSubs; ++n) {
    Subscription* s = &subs[order[n]];
    if (n % 2) {
      index.Remove(s, "big");
      model["big"].erase(s);
    } else {
      index.RemoveAll(s);
      model["big"].erase(s);
      model["other"].erase(s);
    }
    if (n % 500 == 0) {
      ASSERT_NO_FATAL_FAILURE(CheckConsistent(index, subs, model));
    }
  }
  EXPECT_EQ(index.Find("big"), nullptr);
  ASSERT_NO_FATAL_FAILURE(CheckConsistent(index, subs, model));
  EXPECT_EQ(index.Find("other")->entries.size(), static_cast<size_t>(kSubs / 2));
}

// ---------------------------------------------------------------------------------------------
// permessage-deflate: one shared compressed frame per (message, identifier)

namespace deflate_test {
// Inflates a raw-deflate payload (RFC 7692: the 00 00 ff ff tail is added back).
std::string InflateRfc7692(const std::string& compressed) {
  std::string out;
  EXPECT_EQ(ws::InflateMessage(compressed, 0, &out), ws::InflateResult::kOk);
  return out;
}
}  // namespace deflate_test

TEST_F(MessageTest, DeflatedFrameIsBuiltOnceAndInflatesToThePlainPayload) {
  Message* m = Message::NewPublication("s", R"({"text":"hello hello hello hello"})", "", 1);
  Frame* plain = m->FrameFor("A");
  Frame* z = m->DeflatedFrameFor("A");
  ASSERT_NE(z, nullptr);
  EXPECT_TRUE(z->shared());
  EXPECT_EQ(m->DeflatedFrameFor("A"), z);
  EXPECT_EQ(m->deflate_builds(), 1);
  const auto* b = reinterpret_cast<const uint8_t*>(z->data());
  EXPECT_EQ(b[0], 0xc1) << "FIN + RSV1 + text";
  size_t len = b[1] & 0x7f;
  ASSERT_LT(len, 126u);
  ASSERT_EQ(z->size(), 2 + len);
  int opcode = -1;
  std::string payload;
  ASSERT_TRUE(DecodeServerFrame(plain, &opcode, &payload));
  EXPECT_EQ(deflate_test::InflateRfc7692(std::string(z->data() + 2, len)), payload);
  m->Release();
  EXPECT_EQ(rec_.Count(plain), 1);
  EXPECT_EQ(rec_.Count(z), 1);
}

TEST_F(MessageTest, DeflatedFrameOfAShortMessageIsThePlainSharedFrame) {
  // {"identifier":"A","message":1}: deflate cannot shrink it, so compressing subscribers get the
  // plain shared frame (RFC 7692 allows uncompressed messages), and it is not compressed again.
  Message* m = Message::NewPublication("s", "1", "", 1);
  Frame* plain = m->FrameFor("A");
  EXPECT_EQ(m->DeflatedFrameFor("A"), plain);
  EXPECT_EQ(m->DeflatedFrameFor("A"), plain);
  EXPECT_EQ(m->deflate_builds(), 1);
  EXPECT_EQ(static_cast<uint8_t>(plain->data()[0]), 0x81);
  m->Release();
  EXPECT_EQ(rec_.Count(plain), 1);
}

TEST_F(MessageTest, DeflatedFrameWithoutPlainFrameFirstAndCacheOverflow) {
  Message* m = Message::NewPublication("s", "1", "", 1);
  for (int i = 0; i < 8; ++i) ASSERT_NE(m->DeflatedFrameFor("id" + std::to_string(i)), nullptr);
  EXPECT_EQ(m->DeflatedFrameFor("id8"), nullptr) << "cache full: the caller sends the plain frame";
  EXPECT_EQ(m->deflate_builds(), 8);
  m->Release();
}

TEST_F(MessageTest, ConcurrentDeflatedFrameForAgreesOnOneFrame) {
  constexpr int kThreads = 6;
  const std::string json = "{\"text\":\"" + std::string(5000, 'z') + "\"}";
  for (int round = 0; round < 100; ++round) {
    rec_.Reset();
    Message* m = Message::NewPublication("s", json, "", kThreads);
    std::vector<Frame*> got(kThreads, nullptr);
    std::barrier sync(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        sync.arrive_and_wait();
        got[t] = m->DeflatedFrameFor("same");
        got[t]->Acquire(t);
        EXPECT_EQ(static_cast<uint8_t>(got[t]->data()[0]), 0xc1);
        got[t]->Release(t);
      });
    }
    for (auto& t : threads) t.join();
    for (int t = 1; t < kThreads; ++t) ASSERT_EQ(got[t], got[0]) << "round " << round;
    EXPECT_GE(m->deflate_builds(), 1);
    EXPECT_LE(m->deflate_builds(), kThreads);
    for (int t = 0; t < kThreads; ++t) m->Release();
    EXPECT_EQ(rec_.Count(got[0]), 1) << "round " << round;
  }
}

}  // namespace
}  // namespace cable::hub
