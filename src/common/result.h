// Result<T, E>: a small std::expected look-alike (C++20 has none). Used on the data plane, where
// nothing throws: parsers, codecs and decoders return a value or an error code.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace cable {

template <typename E>
struct Unexpected {
  E error;
};

template <typename E>
Unexpected<E> MakeError(E e) {
  return Unexpected<E>{std::move(e)};
}

template <typename T, typename E = std::string>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  template <typename E2>
  Result(Unexpected<E2> err) : v_(std::in_place_index<1>, E(std::move(err.error))) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const E& error() const { return std::get<1>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }

 private:
  std::variant<T, E> v_;
};

}  // namespace cable
