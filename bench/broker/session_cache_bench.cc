// The memory broker's session cache (issue #14): what one disconnected, restorable session costs
// (the mimalloc block bytes it holds: every operator new of this binary is counted by its usable
// size, size-class slack included) and how long a commit and a restore (TakeSession) take. The
// session has the shape the load tool's clients leave behind with the demo RPC app: identifiers,
// one subscription with one stream, no state.
//
// Baseline in the same run: the bytes of the strings themselves (sid + identifiers + identifier
// + stream), so the figure reads as "payload + overhead".
#include <benchmark/benchmark.h>
#include <mimalloc.h>

#include <atomic>
#include <new>
#include <string>
#include <vector>

#include "hub/broadcast_log.h"
#include "hub/broker.h"

namespace {
std::atomic<int64_t> g_live_bytes{0};
}  // namespace

// Counting replacements of the global allocation functions (mimalloc underneath, as the server).
void* operator new(size_t n) {
  void* p = mi_malloc(n == 0 ? 1 : n);
  if (!p) throw std::bad_alloc();
  g_live_bytes.fetch_add(static_cast<int64_t>(mi_usable_size(p)), std::memory_order_relaxed);
  return p;
}
void operator delete(void* p) noexcept {
  if (!p) return;
  g_live_bytes.fetch_sub(static_cast<int64_t>(mi_usable_size(p)), std::memory_order_relaxed);
  mi_free(p);
}
void operator delete(void* p, size_t) noexcept { operator delete(p); }

namespace {

using cable::hub::BroadcastLog;
using cable::hub::CachedSession;
using cable::hub::CachedSubscription;
using cable::hub::MemoryBroker;

constexpr int kSessions = 50'000;

CachedSession DemoSession(int i) {
  CachedSession s;
  s.identifiers = R"({"user":"user-)" + std::to_string(i) + R"("})";
  CachedSubscription sub;
  sub.identifier = R"({"channel":"BenchmarkChannel","stream":"bench"})";
  sub.streams = {"bench"};
  s.subs.push_back(std::move(sub));
  s.used_rpc = true;
  return s;
}

// Bytes held per cached session; counters: bytes_per_session, payload_bytes.
void BM_SessionCacheBytesPerSession(benchmark::State& state) {
  for (auto _ : state) {
    state.PauseTiming();
    BroadcastLog log(1024, 1);
    auto broker = std::make_unique<MemoryBroker>(log, 100, 300, 300);
    std::vector<std::string> sids;
    sids.reserve(kSessions);
    for (int i = 0; i < kSessions; ++i) sids.push_back(cable::hub::RandomId(21));
    const int64_t before = g_live_bytes.load();
    state.ResumeTiming();
    // Built inside the measured window: every byte the cache keeps is allocated after `before`.
    for (int i = 0; i < kSessions; ++i) broker->CommitSession(sids[i], DemoSession(i));
    state.PauseTiming();
    const int64_t after = g_live_bytes.load();
    const size_t payload = sids[0].size() + DemoSession(kSessions / 2).identifiers.size() +
                           DemoSession(0).subs[0].identifier.size() + 5;
    state.counters["bytes_per_session"] =
        static_cast<double>(after - before) / static_cast<double>(kSessions);
    state.counters["payload_bytes"] = static_cast<double>(payload);
    state.counters["sessions"] = static_cast<double>(broker->sessions());
    broker.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * kSessions);
}
BENCHMARK(BM_SessionCacheBytesPerSession)->Iterations(3)->Unit(benchmark::kMillisecond);

// Restore: TakeSession of every cached session (single use), time per take.
void BM_SessionRestore(benchmark::State& state) {
  BroadcastLog log(1024, 1);
  MemoryBroker broker(log, 100, 300, 300);
  std::vector<std::string> sids;
  for (auto _ : state) {
    state.PauseTiming();
    sids.clear();
    for (int i = 0; i < kSessions; ++i) {
      sids.push_back(cable::hub::RandomId(21));
      broker.CommitSession(sids.back(), DemoSession(i));
    }
    state.ResumeTiming();
    int restored = 0;
    for (const auto& sid : sids) restored += broker.TakeSession(sid).has_value();
    benchmark::DoNotOptimize(restored);
  }
  state.SetItemsProcessed(state.iterations() * kSessions);
}
BENCHMARK(BM_SessionRestore)->Iterations(5)->Unit(benchmark::kMillisecond);

}  // namespace
