// Symmetric int8 quantization, per output row (weights) or per vector
// (activations), and the activation encodings of the fast modes (bf16 pairs,
// u8 codes), vectorized with the scalar definitions' exact bits.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>

#include "tstream/arch/simd.hpp"
#include "tstream/core/bf16.hpp"
#include "tstream/core/buffer.hpp"
#include "tstream/core/error.hpp"
#include "tstream/core/view.hpp"

namespace tstream {

/// A row-quantized matrix: w(i, j) ~= scale[i] * q(i, j), q in [-127, 127].
struct quantized_rows {
  aligned_buffer<std::int8_t> q;   ///< rows x cols, dense row-major
  aligned_buffer<float> scale;     ///< one per row
  index_t rows = 0, cols = 0;      ///< the matrix's shape

  [[nodiscard]] matrix_view<const std::int8_t> view() const { return {q.data(), rows, cols}; }
  [[nodiscard]] std::span<const float> scales() const { return scale.span(); }
};

/// Magnitudes below this quantize to zero: 127 / amax (and 255 / amax) must
/// stay finite, and values this small are below any kernel's error anyway.
inline constexpr float quantize_floor = 1e-30f;

/// levels / amax, or 0 when amax is below quantize_floor (or not finite):
/// the inverse of a symmetric scale amax / levels.
[[nodiscard]] inline float inverse_scale(float amax, float levels) noexcept {
  return amax >= quantize_floor && amax <= std::numeric_limits<float>::max() ? levels / amax : 0.f;
}

/// The symmetric int8 code of v at 1 / inv_scale, round to nearest (ties
/// away from zero), clamped to [-127, 127].
/// (std::round's rounding, written so it inlines and vectorizes.)
[[nodiscard]] inline std::int8_t quantize_value(float v, float inv_scale) noexcept {
  const float s = v * inv_scale;
  float r = std::trunc(s);
  if (std::fabs(s - r) >= 0.5f) r += s < 0.f ? -1.f : 1.f;  // s - r is exact
  return static_cast<std::int8_t>(r > 127.f ? 127.f : (r < -127.f ? -127.f : r));
}

namespace detail {

/// An integer code sum times its two scales, dot x (a x b), for scalars or
/// registers. a x b can exceed fp32 when both sources are near its limit;
/// it is held at +-FLT_MAX so that a sum of 0 stays 0 (not 0 x inf = NaN)
/// and any other sum (at least 1 in size) still overflows to +-inf, save a
/// sum of +-1, which gives +-FLT_MAX. A NaN scale stays NaN (min and max
/// return their second operand when either is NaN, on every x86 ISA, and
/// a comparison with NaN is false).
/// The scalar form (GEMV, whose pre-quantized row scales may be negative)
/// clamps both ends; the register form (GEMM and attention, whose scales
/// are max|x| / 127 >= 0 or NaN) only the top: one min in every int8 GEMM
/// tile's finish (a compare and a blend there cost 3-4% at 256^3).
template <class F>
[[nodiscard]] inline F dequantize(F dot, F a, F b) noexcept {
  constexpr float top = std::numeric_limits<float>::max();
  if constexpr (std::is_same_v<F, float>) {
    const float ab = a * b;
    return dot * (ab > top ? top : ab < -top ? -top : ab);
  } else {
    return dot * xsimd::min(F(top), a * b);
  }
}

/// out[k] = bf16::from_float(x[k]) for k < n, a register at a time.
inline void round_bf16(const float* x, index_t n, std::uint16_t* out) noexcept {
  using fb = arch::batch<float>;
  constexpr index_t W = index_t(fb::size);
  index_t k = 0;
  for (; k + 2 * W <= n; k += 2 * W) arch::store_bf16_pair(out + k, fb::load_unaligned(x + k), fb::load_unaligned(x + k + W));
  for (; k + W <= n; k += W) arch::store_low_halves(out + k, arch::to_bf16_bits(fb::load_unaligned(x + k)));
  for (; k < n; ++k) out[k] = bf16::from_float(x[k]);
}

/// max|x[k]| over k < n (0 for n = 0); `finite` is false when some x[k] is
/// NaN or infinite. Both are independent of the order of the scan.
/// On the bits: the magnitudes of non-negative floats order like their bit
/// patterns as integers, and a float is NaN or infinite exactly when its
/// magnitude's bits are at least those of infinity, so one integer max
/// (a 1-cycle chain) does both jobs.
inline float abs_max(const float* x, index_t n, bool& finite) noexcept {
  using fb = arch::batch<float>;
  using ib = arch::batch<std::int32_t>;
  constexpr index_t W = index_t(fb::size);
  constexpr std::int32_t magnitude = 0x7FFFFFFF, infinity = 0x7F800000;
  ib m(0);
  index_t k = 0;
  for (; k + W <= n; k += W) m = xsimd::max(m, xsimd::bitwise_cast<ib>(fb::load_unaligned(x + k)) & ib(magnitude));
  std::int32_t bits = arch::reduce_max(m);
  for (; k < n; ++k) {
    std::int32_t b;
    std::memcpy(&b, x + k, sizeof b);
    bits = std::max(bits, b & magnitude);
  }
  finite = bits < infinity;
  float amax;
  std::memcpy(&amax, &bits, sizeof amax);
  return amax;
}

/// codes[k] = quantize_value(x[k], inv) + 128 for k < n, a register at a
/// time, with quantize_value's bits by a shorter route: for a float s,
/// trunc(s + copysign(0.49999997f, s)) is s rounded half away from zero
/// (the constant is the float just below 1/2: k + 1/2 still rounds up to
/// k + 1, the float just below it stays under), clamped at 127 before the
/// truncating conversion and at -127 after it; fewer operations than
/// trunc-compare-select (GEMM's int8 A, 256 rows of 256: 9.4 -> 8.0 us).
/// Four registers at a time go out in one packed store, clamped there
/// (arch::store_offset_bytes; the same 256 x 256: 7.3-7.5 -> 5.3 us).
inline void quantize_u8(const float* x, index_t n, float inv, std::uint8_t* codes) noexcept {
  using fb = arch::batch<float>;
  using ib = arch::batch<std::int32_t>;
  constexpr index_t W = index_t(fb::size);
  static_assert(0.49999997f < 0.5f && 0.49999997f + 0x1p-25f == 0.5f, "the float just below 1/2");
  const fb just_below_half(0.49999997f);
  // quantize_value(x[at..], inv) for W lanes before the clamp at -127 (the
  // top one comes first: a float past int32 converts to INT32_MIN).
  const auto rounded = [&](index_t at) {
    const fb s = fb::load_unaligned(x + at) * fb(inv);
    return xsimd::to_int(xsimd::min(s + xsimd::copysign(just_below_half, s), fb(127.f)));  // to_int truncates
  };
  index_t k = 0;
  for (; k + 4 * W <= n; k += 4 * W)
    arch::store_offset_bytes(codes + k, rounded(k), rounded(k + W), rounded(k + 2 * W), rounded(k + 3 * W));
  for (; k + W <= n; k += W) arch::store_low_bytes(codes + k, xsimd::max(rounded(k), ib(-127)) + ib(128));
  for (; k < n; ++k) codes[k] = std::uint8_t(quantize_value(x[k], inv) + 128);
}

/// The u8 codes of a fast-mode activation vector: codes[k] = round(x[k] /
/// scale) + 128 with scale = max|x| / 127, returned. All codes are 128 (zero)
/// and the scale 0 when max|x| is below quantize_floor, or NaN when x holds
/// a NaN or infinity (so every output it meets is NaN).
inline float quantize_activations(const float* x, index_t n, std::uint8_t* codes) noexcept {
  bool finite = true;
  const float amax = abs_max(x, n, finite);
  const float inv = finite ? inverse_scale(amax, 127.f) : 0.f;
  if (inv > 0) quantize_u8(x, n, inv, codes);
  else std::fill(codes, codes + n, std::uint8_t(128));
  return !finite ? std::numeric_limits<float>::quiet_NaN() : inv > 0 ? amax / 127.f : 0.f;
}

}  // namespace detail

/// Quantizes each row of w with scale = max|w(i, :)| / 127 (a row whose
/// largest magnitude is below quantize_floor gets scale 0 and codes 0). The rounding error is at most scale / 2 per weight:
/// a relative error of at most 1/254 of the row's largest magnitude.
/// Throws tstream::error if w holds a NaN or infinity (no finite scale exists).
[[nodiscard]] inline quantized_rows quantize_rows(matrix_view<const float> w) {
  quantized_rows out;
  out.rows = w.rows();
  out.cols = w.cols();
  out.q = aligned_buffer<std::int8_t>(std::size_t(w.rows() * w.cols()));
  out.scale = aligned_buffer<float>(std::size_t(w.rows()));
  for (index_t i = 0; i < w.rows(); ++i) {
    float amax = 0;
    for (index_t j = 0; j < w.cols(); ++j) {
      const float v = w(i, j);
      detail::require(std::isfinite(v), "quantize_rows", "w(", i, ", ", j, ") = ", v, " is not finite");
      amax = std::fmax(amax, std::fabs(v));
    }
    const float inv = inverse_scale(amax, 127.f), scale = inv > 0 ? amax / 127.f : 0.f;
    out.scale[std::size_t(i)] = scale;
    for (index_t j = 0; j < w.cols(); ++j) out.q[std::size_t(i * w.cols() + j)] = quantize_value(w(i, j), inv);
  }
  return out;
}

}  // namespace tstream
