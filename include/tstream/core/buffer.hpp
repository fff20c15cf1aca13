// An owning, aligned, uninitialised array: storage for packed weights and
// plans. Allocated once, never resized.
#pragma once

#include <cstddef>
#include <limits>
#include <memory>
#include <new>
#include <span>
#include <type_traits>

#include "tstream/core/config.hpp"
#include "tstream/core/error.hpp"

namespace tstream {

/// Owning array of trivially copyable T, aligned to buffer_alignment bytes.
template <class T>
class aligned_buffer {
  static_assert(std::is_trivially_copyable_v<T>, "aligned_buffer holds trivially copyable element types only");

  struct deleter {
    void operator()(T* p) const noexcept { ::operator delete[](p, std::align_val_t{buffer_alignment}); }
  };

 public:
  aligned_buffer() = default;
  /// Allocates n elements (contents unspecified). Throws std::bad_alloc.
  /// Throws std::bad_array_new_length when n * sizeof(T) overflows.
  explicit aligned_buffer(std::size_t n) : data_(allocate(n)), size_(n) {}

  [[nodiscard]] T* data() noexcept { return data_.get(); }
  [[nodiscard]] const T* data() const noexcept { return data_.get(); }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::size_t bytes() const noexcept { return size_ * sizeof(T); }
  [[nodiscard]] T& operator[](std::size_t i) noexcept { return data_.get()[i]; }
  [[nodiscard]] const T& operator[](std::size_t i) const noexcept { return data_.get()[i]; }
  [[nodiscard]] std::span<T> span() noexcept { return {data(), size_}; }
  [[nodiscard]] std::span<const T> span() const noexcept { return {data(), size_}; }

 private:
  static T* allocate(std::size_t n) {
    if (n == 0) return nullptr;
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(::operator new[](n * sizeof(T), std::align_val_t{buffer_alignment}));
  }

  std::unique_ptr<T[], deleter> data_;
  std::size_t size_ = 0;
};

}  // namespace tstream
