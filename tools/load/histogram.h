// Histogram: a small HDR-style log-linear histogram of non-negative integers (the load tool records
// nanoseconds). Values below 2^kSubBucketBits are exact; above, every power-of-two range is split
// into 2^(kSubBucketBits-1) equal buckets, so a reported value is within 1/64 (1.6 %) of the
// recorded one. Min, max, count and sum are exact. Not thread-safe: one owner (one worker process)
// records; the parent merges the copies it receives over the result pipe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cable::load {

class Histogram {
 public:
  static constexpr int kSubBucketBits = 7;
  static constexpr uint64_t kSubBuckets = uint64_t{1} << kSubBucketBits;
  static constexpr uint64_t kHalf = kSubBuckets / 2;
  static constexpr size_t kBuckets = (64 - kSubBucketBits) * kHalf + kSubBuckets;

  Histogram();

  void Record(uint64_t value, uint64_t times = 1);
  void Merge(const Histogram& other);

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ ? static_cast<double>(sum_) / count_ : 0.0; }

  // The value at quantile q in [0, 1]: the highest value equivalent to the bucket holding the
  // ceil(q * count)-th smallest recording, capped at max(). 0 when empty.
  uint64_t ValueAtQuantile(double q) const;

  // Compact binary form (only non-empty buckets) for the worker -> parent pipe.
  void AppendTo(std::string* out) const;
  // Parses what AppendTo wrote at the front of `in` and advances it; false on malformed input.
  bool ReadFrom(std::string_view* in);

  static size_t BucketIndex(uint64_t value);
  static uint64_t BucketLowest(size_t index);
  static uint64_t BucketHighest(size_t index);

 private:
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
};

}  // namespace cable::load
