// nats::JetStreamStore against a real `nats-server -js` (loopback, file storage, started here and
// stopped by PID): Append and ReadFrom of 100 messages, next to the baseline of one core NATS
// round trip (publish + flush, i.e. PUB + PING/PONG) on the same server in the same run.
// Real time: every iteration waits for the server.
#include <benchmark/benchmark.h>
#include <nats/nats.h>
#include <stdlib.h>

#include <cstdio>
#include <memory>
#include <string>

#include "nats/jetstream_store.h"
#include "tests/support/brokers.h"
#include "tests/support/test_support.h"

namespace {

using cable::nats::JetStreamStore;
using cable::test::BrokerProcess;

struct Server {
  std::string dir;
  std::unique_ptr<BrokerProcess> proc;
  Server() {
    char tmpl[] = "/tmp/ringcable-jsbench-XXXXXX";
    if (mkdtemp(tmpl)) dir = tmpl;
    proc = std::make_unique<BrokerProcess>(BrokerProcess::Kind::kNats);
    if (dir.empty() || !proc->Start({"-js", "-sd", dir})) proc.reset();
  }
  ~Server() {
    proc.reset();
    if (!dir.empty()) cable::test::RunCommand({"/bin/rm", "-rf", dir}, std::chrono::seconds(10));
  }
};

Server& TheServer() {
  static Server server;
  return server;
}

std::unique_ptr<JetStreamStore> OpenStore(benchmark::State& state, int history_limit = 100) {
  if (!TheServer().proc) {
    state.SkipWithError("nats-server -js did not start");
    return nullptr;
  }
  JetStreamStore::Options o;
  o.servers = TheServer().proc->url();
  o.history_limit = history_limit;
  auto store = JetStreamStore::Open(o);
  if (!store.ok()) {
    state.SkipWithError(store.error().c_str());
    return nullptr;
  }
  for (int i = 0; i < 200 && !(*store)->Epoch().ok(); ++i) usleep(25000);
  return std::move(store.value());
}

const std::string kPayload(200, 'x');  // a typical broadcast message JSON

void BM_CoreNatsPublishFlush(benchmark::State& state) {
  if (!TheServer().proc) return state.SkipWithError("nats-server did not start");
  natsConnection* nc = nullptr;
  if (natsConnection_ConnectTo(&nc, TheServer().proc->url().c_str()) != NATS_OK) {
    return state.SkipWithError("connect failed");
  }
  for (auto _ : state) {
    natsConnection_Publish(nc, "bench.core", kPayload.data(), static_cast<int>(kPayload.size()));
    natsConnection_FlushTimeout(nc, 2000);
  }
  natsConnection_Destroy(nc);
}
BENCHMARK(BM_CoreNatsPublishFlush)->UseRealTime();

void BM_Append(benchmark::State& state) {
  auto store = OpenStore(state);
  if (!store) return;
  for (auto _ : state) {
    auto off = store->Append("bench_append", kPayload, 0);
    if (!off.ok()) return state.SkipWithError(off.error().c_str());
  }
}
BENCHMARK(BM_Append)->UseRealTime();

void BM_ReadFrom100(benchmark::State& state) {
  // 101 retained, read after the first (reading below the lowest retained is refused).
  auto store = OpenStore(state, 200);
  if (!store) return;
  uint64_t top = 0;
  for (int i = 0; i < 101; ++i) {
    auto off = store->Append("bench_read", kPayload, 0);
    if (!off.ok()) return state.SkipWithError(off.error().c_str());
    top = *off;
  }
  for (auto _ : state) {
    auto pubs = store->ReadFrom("bench_read", top - 100);
    if (!pubs.ok() || pubs->size() != 100) return state.SkipWithError("ReadFrom failed");
  }
}
BENCHMARK(BM_ReadFrom100)->UseRealTime();

}  // namespace
