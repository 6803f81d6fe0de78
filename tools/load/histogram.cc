#include "histogram.h"

#include <bit>
#include <cmath>
#include <cstring>

namespace cable::load {
namespace {

void PutU64(std::string* out, uint64_t v) {
  char b[8];
  std::memcpy(b, &v, 8);
  out->append(b, 8);
}

bool GetU64(std::string_view* in, uint64_t* v) {
  if (in->size() < 8) return false;
  std::memcpy(v, in->data(), 8);
  in->remove_prefix(8);
  return true;
}

int ShiftOf(size_t index) {
  return index < Histogram::kSubBuckets ? 0 : static_cast<int>(index / Histogram::kHalf) - 1;
}

}  // namespace

Histogram::Histogram() : counts_(kBuckets, 0) {}

size_t Histogram::BucketIndex(uint64_t value) {
  if (value < kSubBuckets) return static_cast<size_t>(value);
  int msb = 63 - std::countl_zero(value);
  int shift = msb - kSubBucketBits + 1;
  return static_cast<size_t>(shift) * kHalf + static_cast<size_t>(value >> shift);
}

uint64_t Histogram::BucketLowest(size_t index) {
  int shift = ShiftOf(index);
  return (static_cast<uint64_t>(index) - static_cast<uint64_t>(shift) * kHalf) << shift;
}

uint64_t Histogram::BucketHighest(size_t index) {
  return BucketLowest(index) + ((uint64_t{1} << ShiftOf(index)) - 1);
}

void Histogram::Record(uint64_t value, uint64_t times) {
  if (times == 0) return;
  counts_[BucketIndex(value)] += times;
  count_ += times;
  sum_ += value * times;
  if (value < min_) min_ = value;
  if (value > max_) max_ = value;
}

void Histogram::Merge(const Histogram& other) {
  if (other.count_ == 0) return;
  for (size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  if (other.min_ < min_) min_ = other.min_;
  if (other.max_ > max_) max_ = other.max_;
}

uint64_t Histogram::ValueAtQuantile(double q) const {
  if (count_ == 0) return 0;
  if (q < 0) q = 0;
  if (q > 1) q = 1;
  uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      uint64_t v = BucketHighest(i);
      if (v > max_) v = max_;
      if (v < min_) v = min_;
      return v;
    }
  }
  return max_;
}

void Histogram::AppendTo(std::string* out) const {
  uint64_t used = 0;
  for (uint64_t c : counts_) used += c != 0;
  PutU64(out, count_);
  PutU64(out, sum_);
  PutU64(out, min_);
  PutU64(out, max_);
  PutU64(out, used);
  for (size_t i = 0; i < kBuckets; ++i) {
    if (counts_[i] == 0) continue;
    PutU64(out, i);
    PutU64(out, counts_[i]);
  }
}

bool Histogram::ReadFrom(std::string_view* in) {
  Histogram h;
  uint64_t used = 0;
  if (!GetU64(in, &h.count_) || !GetU64(in, &h.sum_) || !GetU64(in, &h.min_) ||
      !GetU64(in, &h.max_) || !GetU64(in, &used)) {
    return false;
  }
  if (used > kBuckets) return false;
  uint64_t total = 0;
  for (uint64_t k = 0; k < used; ++k) {
    uint64_t index = 0, c = 0;
    if (!GetU64(in, &index) || !GetU64(in, &c) || index >= kBuckets) return false;
    h.counts_[index] += c;
    total += c;
  }
  if (total != h.count_) return false;
  *this = std::move(h);
  return true;
}

}  // namespace cable::load
