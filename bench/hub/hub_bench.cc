// Cost of delivering one publication to N subscribers in-process, split in two:
// - BM_FrameBuild: Message::FrameFor once per distinct identifier (all N subscribers share one, as
//   usual for a stream), flat in N; BM_FrameForEverySubscriber does the cache lookup per
//   subscriber instead;
// - BM_Enqueue: per-subscriber work, Frame::Acquire + a push onto the subscriber's send queue,
//   then the matching Release once "sent" (linear in N).
// BM_DeliveryLoop is both together as Worker::DeliverPublication runs them.
// BM_NaiveBuildPerSubscriber is the baseline: one frame built per subscriber, as a server that
// serializes per connection does. Ratios between the three are what to read.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "hub/frame.h"
#include "hub/message.h"

namespace cable::hub {
namespace {

const std::string kIdentifier = R"({"channel":"ChatChannel","room":"lobby"})";
const std::string kMessage = R"({"user":"alice","text":"Hello, world! How is everyone today?"})";
constexpr int kWorkers = 2;

// Per-subscriber identifier references, as the index holds them.
std::vector<const std::string*> Subscribers(int64_t n) {
  return std::vector<const std::string*>(static_cast<size_t>(n), &kIdentifier);
}

void BM_FrameBuild(benchmark::State& state) {
  // All N subscribers share one identifier: one FrameFor per publication whatever N is.
  const int64_t n = state.range(0);
  for (auto _ : state) {
    Message* m = Message::NewPublication("lobby", kMessage, "", 1);
    benchmark::DoNotOptimize(m->FrameFor(kIdentifier));
    m->Release();
  }
  state.counters["subscribers"] = static_cast<double>(n);
}

void BM_FrameForEverySubscriber(benchmark::State& state) {
  // A cache lookup per subscriber (no "same identifier as the previous one" shortcut).
  auto subs = Subscribers(state.range(0));
  for (auto _ : state) {
    Message* m = Message::NewPublication("lobby", kMessage, "", 1);
    for (const std::string* id : subs) benchmark::DoNotOptimize(m->FrameFor(*id));
    m->Release();
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

void BM_DeliveryLoop(benchmark::State& state) {
  // The whole of Worker::DeliverPublication minus the connection lookup: per subscriber, compare
  // its identifier with the previous one, then Acquire + push; the sends later Release.
  const size_t n = static_cast<size_t>(state.range(0));
  auto subs = Subscribers(state.range(0));
  std::vector<std::vector<Frame*>> queues(n);
  for (auto& q : queues) q.reserve(4);
  for (auto _ : state) {
    Message* m = Message::NewPublication("lobby", kMessage, "", kWorkers);
    const std::string* last = nullptr;
    Frame* frame = nullptr;
    for (size_t i = 0; i < n; ++i) {
      if (!last || *last != *subs[i]) {
        frame = m->FrameFor(*subs[i]);
        last = subs[i];
      }
      frame->Acquire(0);
      queues[i].push_back(frame);
    }
    m->Release();
    m->Release();
    benchmark::ClobberMemory();
    for (auto& q : queues) {
      q.back()->Release(0);
      q.pop_back();
    }
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

void BM_Enqueue(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  Message* m = Message::NewPublication("lobby", kMessage, "", kWorkers);
  Frame* frame = m->FrameFor(kIdentifier);
  // One send queue per subscriber, kept warm (capacity reserved) as a live connection's is.
  std::vector<std::vector<Frame*>> queues(n);
  for (auto& q : queues) q.reserve(4);
  for (auto _ : state) {
    for (auto& q : queues) {
      frame->Acquire(0);
      q.push_back(frame);
    }
    benchmark::ClobberMemory();
    for (auto& q : queues) {
      q.back()->Release(0);
      q.pop_back();
    }
  }
  m->Release();
  m->Release();
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

void BM_NaiveBuildPerSubscriber(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  Message* m = Message::NewPublication("lobby", kMessage, "", 1);
  std::vector<std::vector<Frame*>> queues(n);
  for (auto& q : queues) q.reserve(4);
  for (auto _ : state) {
    for (auto& q : queues) q.push_back(m->BuildLocalFrame(kIdentifier));
    benchmark::ClobberMemory();
    for (auto& q : queues) {
      q.back()->ReleaseCreator();
      q.pop_back();
    }
  }
  m->Release();
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

#define SUBSCRIBER_COUNTS RangeMultiplier(10)->Range(1, 100000)
BENCHMARK(BM_FrameBuild)->SUBSCRIBER_COUNTS;
BENCHMARK(BM_FrameForEverySubscriber)->SUBSCRIBER_COUNTS;
BENCHMARK(BM_DeliveryLoop)->SUBSCRIBER_COUNTS;
BENCHMARK(BM_Enqueue)->SUBSCRIBER_COUNTS;
BENCHMARK(BM_NaiveBuildPerSubscriber)->SUBSCRIBER_COUNTS;

}  // namespace
}  // namespace cable::hub
