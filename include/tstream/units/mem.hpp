// MEM: the memory unit. Reads tensors into streams and writes streams back.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "tstream/core/error.hpp"
#include "tstream/core/stream.hpp"

namespace tstream::mem {

/// A source streaming the elements of a contiguous array, Lanes at a time;
/// reads nothing past the end.
template <class T, std::size_t Lanes = default_lanes>
class reader : public stream_node {
 public:
  using vec_type = vec<std::remove_const_t<T>, Lanes>;
  explicit reader(std::span<T> data) : data_(data) {
    detail::require(data.data() != nullptr || data.empty(), "mem::read", "data is null with size ", data.size());
  }
  [[nodiscard]] std::size_t size() const noexcept { return data_.size(); }
  /// Elements [first, first + Lanes); lanes at or past size() are zero.
  [[nodiscard]] vec_type at(std::size_t first) const noexcept {
    return first >= data_.size() ? vec_type() : vec_type::load(data_.data() + first, data_.size() - first);
  }
  /// The array it streams, for tstream::for_each_read.
  template <class F>
  void for_each_read(F& f) const {
    f(static_cast<const void*>(data_.data()), data_.size_bytes(), data_.size());
  }

 private:
  std::span<T> data_;
};

/// A sink writing a stream into a contiguous array (masked on the last chunk).
template <class T, std::size_t Lanes = default_lanes>
class writer : public stream_node {
 public:
  using is_sink = void;
  explicit writer(std::span<T> data) : data_(data) {
    detail::require(data.data() != nullptr || data.empty(), "mem::write", "data is null with size ", data.size());
  }
  [[nodiscard]] std::size_t size() const noexcept { return data_.size(); }
  void put(const vec<T, Lanes>& v, std::size_t first, std::size_t n) const noexcept { v.store(data_.data() + first, n); }

 private:
  std::span<T> data_;
};

/// Streams a contiguous array: mem::read(x) | ... .
template <std::size_t Lanes = default_lanes, class T>
[[nodiscard]] auto read(std::span<T> x) { return reader<T, Lanes>(x); }
template <std::size_t Lanes = default_lanes, class T, class Alloc>
[[nodiscard]] auto read(const std::vector<T, Alloc>& x) { return reader<const T, Lanes>(std::span<const T>(x)); }

/// Writes a stream into a contiguous array: ... | mem::write(y).
template <std::size_t Lanes = default_lanes, class T>
[[nodiscard]] auto write(std::span<T> y) { return writer<T, Lanes>(y); }
template <std::size_t Lanes = default_lanes, class T, class Alloc>
[[nodiscard]] auto write(std::vector<T, Alloc>& y) { return writer<T, Lanes>(std::span<T>(y)); }

}  // namespace tstream::mem
