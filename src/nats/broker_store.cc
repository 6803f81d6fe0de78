#include "nats/broker_store.h"

#include <time.h>

#include "common/log.h"

namespace cable::nats {
namespace {

constexpr int64_t kSweepEveryS = 60;

int64_t MonotonicSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec;
}

std::vector<hub::StoredPublication> ToHub(std::vector<StoredPublication> in) {
  std::vector<hub::StoredPublication> out;
  out.reserve(in.size());
  for (auto& p : in) out.push_back({p.offset, p.unix_ts, std::move(p.data)});
  return out;
}

}  // namespace

void JetStreamBrokerStore::MaybeSweep() {
  const int64_t now = MonotonicSeconds();
  if (now < next_sweep_s_) return;
  next_sweep_s_ = now + kSweepEveryS;
  auto swept = store_->Sweep();
  if (!swept.ok()) {
    LOG_DEBUG("broker (nats): sweep failed: %s", swept.error().c_str());
  } else if (swept.value() > 0) {
    LOG_DEBUG("broker (nats): deleted %zu idle history streams", swept.value());
  }
}

Result<std::string> JetStreamBrokerStore::Epoch() {
  MaybeSweep();
  return store_->Epoch();
}

Result<std::vector<uint64_t>> JetStreamBrokerStore::Append(
    const std::vector<hub::AppendEntry>& batch, int64_t unix_ts) {
  std::vector<uint64_t> offsets;
  offsets.reserve(batch.size());
  std::string first_error;
  bool stored_any = false;
  for (const auto& entry : batch) {
    auto offset = store_->Append(entry.stream, entry.data, unix_ts);
    if (offset.ok()) {
      offsets.push_back(offset.value());
      stored_any = true;
    } else {
      offsets.push_back(0);  // goes out unstamped, like a publication during an outage
      if (first_error.empty()) first_error = offset.error();
    }
  }
  if (!stored_any && !batch.empty()) return MakeError(first_error);
  return offsets;
}

Result<std::vector<hub::StoredPublication>> JetStreamBrokerStore::ReadFrom(
    const std::string& stream, uint64_t from_offset) {
  // The broker thread applies anycable-go's refusal rules to what is retained.
  auto read = store_->ReadRetained(stream, from_offset);
  if (!read.ok()) return MakeError(read.error());
  return ToHub(std::move(read.value()));
}

Result<std::vector<hub::StoredPublication>> JetStreamBrokerStore::ReadSince(
    const std::string& stream, int64_t since_unix_ts) {
  auto read = store_->ReadSince(stream, since_unix_ts);
  if (!read.ok()) return MakeError(read.error());
  return ToHub(std::move(read.value()));
}

Result<bool> JetStreamBrokerStore::PutSession(const std::string& sid, std::string_view blob,
                                              int ttl_s) {
  return store_->PutSession(sid, blob, ttl_s);
}

Result<std::optional<std::string>> JetStreamBrokerStore::TakeSession(const std::string& sid) {
  return store_->TakeSession(sid);
}

}  // namespace cable::nats
