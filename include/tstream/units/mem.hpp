// MEM: the memory unit. Reads tensors into streams and writes streams back.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <type_traits>
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
  /// Superlane j of at(first).
  [[nodiscard]] typename vec_type::superlane superlane(std::size_t first, std::size_t j) const noexcept {
    using B = typename vec_type::superlane;
    const std::size_t off = first + j * vec_type::superlane_width;
    if (vec_type::lanes_in(j) == B::size && off + B::size <= data_.size()) [[likely]]
      return B::load_unaligned(data_.data() + off);
    if (off >= data_.size()) return B(std::remove_const_t<T>(0));
    const std::size_t n = std::min(vec_type::lanes_in(j), data_.size() - off);
    return arch::load_partial<std::remove_const_t<T>, typename vec_type::arch_type>(data_.data() + off, n);
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
  /// put() for superlane j of the chunk alone (n > j x the superlane width).
  void put_superlane(const typename vec<T, Lanes>::superlane& x, std::size_t first, std::size_t j,
                     std::size_t n) const noexcept {
    using V = vec<T, Lanes>;
    const std::size_t off = j * V::superlane_width;
    if (V::lanes_in(j) == V::superlane_width && off + V::superlane_width <= n) [[likely]]
      x.store_unaligned(data_.data() + first + off);
    else
      arch::store_partial<T, typename V::arch_type>(data_.data() + first + off, x, std::min(V::lanes_in(j), n - off));
  }

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
