// Symmetric int8 quantization, per output row (weights) or per vector
// (activations).
#pragma once

#include <cmath>
#include <limits>
#include <cstdint>
#include <span>

#include "tstream/core/buffer.hpp"
#include "tstream/core/error.hpp"
#include "tstream/core/view.hpp"

namespace tstream {

/// A row-quantized matrix: w(i, j) ~= scale[i] * q(i, j), q in [-127, 127].
struct quantized_rows {
  aligned_buffer<std::int8_t> q;   ///< rows x cols, dense row-major
  aligned_buffer<float> scale;     ///< one per row
  index_t rows = 0, cols = 0;

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
