// vec<T, Lanes>: the TSP's 320-lane vector, made of native SIMD superlanes.
//
// On AVX-512 an fp32 vec<float> is 20 superlanes x 16 lanes (the TSP's own
// 20 x 16), on AVX2 40 x 8. Lanes need not be a multiple of the register
// width: the last superlane is then partial, loads fill its spare lanes with
// zero and reductions ignore them.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <type_traits>
#include <utility>

#include "tstream/arch/simd.hpp"
#include "tstream/core/config.hpp"

namespace tstream {

/// A vector of Lanes elements of T, held in registers as superlanes.
/// Lane-wise arithmetic, broadcast, masked loads/stores and horizontal
/// reductions in a fixed order (so results are reproducible bit for bit).
template <class T, std::size_t Lanes = default_lanes, class Arch = arch::native>
class vec {
  static_assert(Lanes > 0, "tstream::vec: Lanes must be at least 1");

 public:
  using value_type = T;
  using superlane = arch::batch<T, Arch>;
  using arch_type = Arch;
  static constexpr std::size_t lanes = Lanes;
  static constexpr std::size_t superlane_width = superlane::size;
  static constexpr std::size_t superlanes = (Lanes + superlane_width - 1) / superlane_width;
  /// Lanes used in the last superlane (superlane_width when it is full).
  static constexpr std::size_t last_width = Lanes - (superlanes - 1) * superlane_width;

  /// All lanes zero.
  TSTREAM_ALWAYS_INLINE vec() noexcept : vec(T(0)) {}
  /// All lanes set to x (the SXM's "distribute").
  TSTREAM_ALWAYS_INLINE explicit vec(T x) noexcept {
    each_superlane([&](auto s) { s_[s] = superlane(x); });
  }

  /// Loads Lanes elements from p.
  [[nodiscard]] TSTREAM_ALWAYS_INLINE static vec load(const T* p) noexcept { return load(p, Lanes); }
  /// Loads the first min(n, Lanes) elements from p; the other lanes are zero.
  /// Reads nothing at or past p + n.
  [[nodiscard]] TSTREAM_ALWAYS_INLINE static vec load(const T* p, std::size_t n) noexcept {
    vec v(uninitialized);
    if (n >= Lanes && last_width == superlane_width) {  // a whole chunk: plain loads
      each_superlane([&](auto s) { v.s_[s] = superlane::load_unaligned(p + s * superlane_width); });
      return v;
    }
    n = std::min(n, Lanes);
    for (std::size_t s = 0; s < superlanes; ++s) {
      const std::size_t first = s * superlane_width;
      v.s_[s] = first < n ? arch::load_partial<T, Arch>(p + first, n - first) : superlane(T(0));
    }
    return v;
  }
  /// Stores all Lanes elements to p.
  TSTREAM_ALWAYS_INLINE void store(T* p) const noexcept { store(p, Lanes); }
  /// Stores the first min(n, Lanes) lanes to p; writes nothing at or past p + n.
  TSTREAM_ALWAYS_INLINE void store(T* p, std::size_t n) const noexcept {
    if (n >= Lanes && last_width == superlane_width) {
      each_superlane([&](auto s) { s_[s].store_unaligned(p + s * superlane_width); });
      return;
    }
    n = std::min(n, Lanes);
    for (std::size_t s = 0; s < superlanes; ++s) {
      const std::size_t first = s * superlane_width;
      if (first >= n) break;
      arch::store_partial<T, Arch>(p + first, s_[s], n - first);
    }
  }

  /// Builds a vec superlane by superlane: superlane j is f(j), j a
  /// std::integral_constant (so f may index compile-time tables by it).
  template <class F>
  [[nodiscard]] TSTREAM_ALWAYS_INLINE static vec generate(F&& f) noexcept {
    vec v(uninitialized);
    each_superlane([&](auto j) { v.s_[j] = f(j); });
    return v;
  }
  /// Lanes of superlane j that belong to the vec: superlane_width, or
  /// last_width for the last one.
  [[nodiscard]] static constexpr std::size_t lanes_in(std::size_t j) noexcept {
    return j + 1 == superlanes ? last_width : superlane_width;
  }

  /// Superlane s (registers s * superlane_width .. + superlane_width).
  [[nodiscard]] superlane& operator[](std::size_t s) noexcept { return s_[s]; }
  [[nodiscard]] const superlane& operator[](std::size_t s) const noexcept { return s_[s]; }
  /// Lane i, read through memory (for tests and debugging, not hot loops).
  [[nodiscard]] T lane(std::size_t i) const noexcept {
    alignas(64) T tmp[superlane_width];
    s_[i / superlane_width].store_aligned(tmp);
    return tmp[i % superlane_width];
  }

  /// Applies f to every superlane: f(superlane) -> superlane. The building
  /// block of the VXM's lane-wise operations.
  template <class F>
  [[nodiscard]] TSTREAM_ALWAYS_INLINE friend vec map(const vec& a, F&& f) noexcept {
    vec r(uninitialized);
    each_superlane([&](auto s) { r.s_[s] = f(a.s_[s]); });
    return r;
  }
  /// Applies f lane-wise to two vectors: f(superlane, superlane) -> superlane.
  template <class F>
  [[nodiscard]] TSTREAM_ALWAYS_INLINE friend vec zip(const vec& a, const vec& b, F&& f) noexcept {
    vec r(uninitialized);
    each_superlane([&](auto s) { r.s_[s] = f(a.s_[s], b.s_[s]); });
    return r;
  }

  friend vec operator+(const vec& a, const vec& b) noexcept { return zip(a, b, [](auto x, auto y) { return x + y; }); }
  friend vec operator-(const vec& a, const vec& b) noexcept { return zip(a, b, [](auto x, auto y) { return x - y; }); }
  friend vec operator*(const vec& a, const vec& b) noexcept { return zip(a, b, [](auto x, auto y) { return x * y; }); }
  friend vec operator/(const vec& a, const vec& b) noexcept { return zip(a, b, [](auto x, auto y) { return x / y; }); }
  friend vec operator+(const vec& a, T b) noexcept { return a + vec(b); }
  friend vec operator-(const vec& a, T b) noexcept { return a - vec(b); }
  friend vec operator*(const vec& a, T b) noexcept { return a * vec(b); }
  friend vec operator/(const vec& a, T b) noexcept { return a / vec(b); }
  friend vec operator-(const vec& a) noexcept { return map(a, [](auto x) { return -x; }); }
  vec& operator+=(const vec& b) noexcept { return *this = *this + b; }
  vec& operator*=(const vec& b) noexcept { return *this = *this * b; }

  /// a * b + c lane-wise, one rounding (fused multiply-add where the ISA has it).
  [[nodiscard]] TSTREAM_ALWAYS_INLINE friend vec fma(const vec& a, const vec& b, const vec& c) noexcept {
    vec r(uninitialized);
    each_superlane([&](auto s) { r.s_[s] = arch::fma<T, Arch>(a.s_[s], b.s_[s], c.s_[s]); });
    return r;
  }
  [[nodiscard]] friend vec min(const vec& a, const vec& b) noexcept { return zip(a, b, [](auto x, auto y) { return xsimd::min(x, y); }); }
  [[nodiscard]] friend vec max(const vec& a, const vec& b) noexcept { return zip(a, b, [](auto x, auto y) { return xsimd::max(x, y); }); }

  /// Sum of the Lanes lanes. Order is fixed (superlanes left to right, then
  /// the register's own tree), so the result is reproducible.
  [[nodiscard]] friend T reduce_add(const vec& a) noexcept {
    return a.fold(T(0), [](auto x, auto y) { return x + y; }, [](auto b) { return xsimd::hadd(b); },
                  [](T x, T y) { return x + y; });
  }
  /// Largest lane (NaN lanes propagate as xsimd::max does: unspecified which wins).
  [[nodiscard]] friend T reduce_max(const vec& a) noexcept {
    return a.fold(a.lane(0), [](auto x, auto y) { return xsimd::max(x, y); }, [](auto b) { return hfold(b, [](T x, T y) { return std::max(x, y); }); },
                  [](T x, T y) { return std::max(x, y); });
  }
  /// Smallest lane.
  [[nodiscard]] friend T reduce_min(const vec& a) noexcept {
    return a.fold(a.lane(0), [](auto x, auto y) { return xsimd::min(x, y); }, [](auto b) { return hfold(b, [](T x, T y) { return std::min(x, y); }); },
                  [](T x, T y) { return std::min(x, y); });
  }

 private:
  // Every superlane is written before it is read (map, zip, fma, load): no
  // zero fill first. A 320-lane vec is 1280 bytes, more than GCC keeps in
  // registers, so a fill it cannot see through became a memset per chunk.
  struct uninitialized_t {};
  static constexpr uninitialized_t uninitialized{};
  TSTREAM_ALWAYS_INLINE explicit vec(uninitialized_t) noexcept {}

  // f(s) for s = 0 .. superlanes - 1, s a compile-time constant: unrolled
  // whatever the count (GCC peels at most 16 iterations of a loop itself;
  // a 320-lane vec has 20 or 40 superlanes).
  template <class F>
  TSTREAM_ALWAYS_INLINE static void each_superlane(F&& f) noexcept {
    [&]<std::size_t... s>(std::index_sequence<s...>) {
      (f(std::integral_constant<std::size_t, s>{}), ...);
    }(std::make_index_sequence<superlanes>{});
  }

  // Folds one register's lanes left to right (xsimd 8 has no horizontal max).
  template <class ScalarOp>
  static T hfold(const superlane& b, ScalarOp sop) noexcept {
    alignas(64) T tmp[superlane_width];
    b.store_aligned(tmp);
    T r = tmp[0];
    for (std::size_t i = 1; i < superlane_width; ++i) r = sop(r, tmp[i]);
    return r;
  }

  // Folds the full superlanes with op, reduces that register with hred, then
  // folds in the used lanes of a partial last superlane one by one.
  template <class Op, class HRed, class ScalarOp>
  T fold(T identity, Op op, HRed hred, ScalarOp sop) const noexcept {
    constexpr std::size_t full = last_width == superlane_width ? superlanes : superlanes - 1;
    T r = identity;
    if constexpr (full > 0) {
      superlane acc = s_[0];
      for (std::size_t s = 1; s < full; ++s) acc = op(acc, s_[s]);
      r = hred(acc);
    }
    if constexpr (full < superlanes) {
      alignas(64) T tmp[superlane_width];
      s_[superlanes - 1].store_aligned(tmp);
      for (std::size_t i = 0; i < last_width; ++i) r = sop(r, tmp[i]);
    }
    return r;
  }

  std::array<superlane, superlanes> s_;
};

/// Number of Lanes-wide chunks that cover n elements (the last one masked).
[[nodiscard]] constexpr std::size_t chunks_of(std::size_t n, std::size_t lanes = default_lanes) noexcept {
  return (n + lanes - 1) / lanes;
}

}  // namespace tstream
