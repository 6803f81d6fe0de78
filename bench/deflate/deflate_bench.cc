// permessage-deflate for one broadcast delivered to N compressing subscribers on one worker:
// - BM_SharedDeflate: ringcable's way: Message::DeflatedFrameFor builds the compressed frame once
//   (deflate of the plain frame's payload) and every subscriber queues that shared frame
//   (Acquire + push, released once "sent");
// - BM_DeflatePerSubscriber: the baseline, a server that compresses per connection (one
//   BuildDeflatedFrame per subscriber, as a per-connection deflate stream would have to);
// - BM_PlainDelivery: the same delivery without compression, for reference.
// Read the ratio BM_DeflatePerSubscriber / BM_SharedDeflate at each N, measured in the same run.
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "hub/frame.h"
#include "hub/message.h"
#include "ws/deflate.h"

namespace cable::hub {
namespace {

const std::string kIdentifier = R"({"channel":"ChatChannel","room":"lobby"})";
// A ~1 KB chat-like message (repetitive enough that compression pays, as JSON usually does).
std::string MakeMessage() {
  std::string m = R"({"messages":[)";
  for (int i = 0; i < 12; ++i) {
    if (i) m += ",";
    m += R"({"user":"user)" + std::to_string(i) +
         R"(","text":"Hello, world! How is everyone today?","ts":1700000000)" + std::to_string(i) +
         "}";
  }
  return m + "]}";
}
const std::string kMessage = MakeMessage();

template <bool kCompress, bool kShared>
void Deliver(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  std::vector<std::vector<Frame*>> queues(n);
  for (auto& q : queues) q.reserve(4);
  size_t frame_bytes = 0;
  for (auto _ : state) {
    Message* m = Message::NewPublication("lobby", kMessage, "", 1);
    Frame* shared = nullptr;
    for (size_t i = 0; i < n; ++i) {
      Frame* f;
      if (!kCompress) {
        if (!shared) shared = m->FrameFor(kIdentifier);
        f = shared;
        f->Acquire(0);
      } else if (kShared) {
        if (!shared) shared = m->DeflatedFrameFor(kIdentifier);
        f = shared;
        f->Acquire(0);
      } else {
        // Per connection: serialize the plain frame's payload once (cached), compress per
        // subscriber.
        Frame* plain = m->FrameFor(kIdentifier);
        const auto* p = reinterpret_cast<const uint8_t*>(plain->data());
        size_t hlen = (p[1] & 0x7f) == 126 ? 4 : ((p[1] & 0x7f) == 127 ? 10 : 2);
        std::string bytes = ws::BuildDeflatedFrame(
            ws::Opcode::kText, std::string_view(plain->data() + hlen, plain->size() - hlen));
        f = Frame::NewLocal(bytes.size());
        std::memcpy(f->data(), bytes.data(), bytes.size());
      }
      queues[i].push_back(f);
      frame_bytes = f->size();
    }
    m->Release();
    benchmark::ClobberMemory();
    for (auto& q : queues) {
      Frame* f = q.back();
      if (f->shared()) {
        f->Release(0);
      } else {
        f->ReleaseCreator();
      }
      q.pop_back();
    }
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.counters["frame_bytes"] = static_cast<double>(frame_bytes);
  state.counters["plain_bytes"] = static_cast<double>(kMessage.size() + kIdentifier.size() + 30);
}

void BM_PlainDelivery(benchmark::State& state) { Deliver<false, true>(state); }
void BM_SharedDeflate(benchmark::State& state) { Deliver<true, true>(state); }
void BM_DeflatePerSubscriber(benchmark::State& state) { Deliver<true, false>(state); }

#define SUBSCRIBER_COUNTS RangeMultiplier(10)->Range(1, 10000)
BENCHMARK(BM_PlainDelivery)->SUBSCRIBER_COUNTS;
BENCHMARK(BM_SharedDeflate)->SUBSCRIBER_COUNTS;
BENCHMARK(BM_DeflatePerSubscriber)->SUBSCRIBER_COUNTS;

}  // namespace
}  // namespace cable::hub
