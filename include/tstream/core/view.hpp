// Non-owning, checked views of row-major matrices.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#include "tstream/core/config.hpp"
#include "tstream/core/error.hpp"

namespace tstream {

/// A rows x cols row-major matrix at data, consecutive rows ld elements apart
/// (ld >= cols; ld > cols views a sub-matrix). Does not own its memory.
/// T may be const-qualified for read-only views.
template <class T>
class matrix_view {
 public:
  using element_type = T;

  matrix_view() = default;
  /// Checks the shape: rows, cols >= 0, ld >= cols, data non-null unless empty.
  /// Throws tstream::error naming the offending argument.
  matrix_view(T* data, index_t rows, index_t cols, index_t ld)
      : data_(data), rows_(rows), cols_(cols), ld_(ld) {
    detail::require(rows >= 0, "matrix_view", "rows = ", rows, " is negative");
    detail::require(cols >= 0, "matrix_view", "cols = ", cols, " is negative");
    detail::require(ld >= cols, "matrix_view", "ld = ", ld, " is smaller than cols = ", cols);
    detail::require(data != nullptr || rows == 0 || cols == 0, "matrix_view", "data is null for a ", rows, " x ",
                    cols, " matrix");
  }
  /// A dense view (ld = cols).
  matrix_view(T* data, index_t rows, index_t cols) : matrix_view(data, rows, cols, cols) {}
  /// Read-only view of a mutable one.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  matrix_view(const matrix_view<U>& o) noexcept : data_(o.data()), rows_(o.rows()), cols_(o.cols()), ld_(o.ld()) {}

  [[nodiscard]] T* data() const noexcept { return data_; }
  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }
  [[nodiscard]] index_t ld() const noexcept { return ld_; }
  [[nodiscard]] bool empty() const noexcept { return rows_ == 0 || cols_ == 0; }
  [[nodiscard]] T& operator()(index_t i, index_t j) const noexcept { return data_[i * ld_ + j]; }
  /// Row i as a span of cols elements.
  [[nodiscard]] std::span<T> row(index_t i) const noexcept {
    return {data_ + i * ld_, static_cast<std::size_t>(cols_)};
  }

 private:
  T* data_ = nullptr;
  index_t rows_ = 0, cols_ = 0, ld_ = 0;
};

template <class T>
matrix_view(T*, index_t, index_t) -> matrix_view<T>;
template <class T>
matrix_view(T*, index_t, index_t, index_t) -> matrix_view<T>;

namespace detail {

/// Whether two byte ranges share a byte (empty ranges share none).
inline bool overlaps(const void* a, std::size_t a_bytes, const void* b, std::size_t b_bytes) noexcept {
  const auto pa = reinterpret_cast<std::uintptr_t>(a), pb = reinterpret_cast<std::uintptr_t>(b);
  return a_bytes && b_bytes && pa < pb + b_bytes && pb < pa + a_bytes;
}

/// Bytes a view spans, from its first element to its last.
template <class T>
std::size_t span_bytes(const matrix_view<T>& v) noexcept {
  return v.empty() ? 0 : std::size_t((v.rows() - 1) * v.ld() + v.cols()) * sizeof(T);
}

}  // namespace detail
}  // namespace tstream
