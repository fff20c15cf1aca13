// GEMM weights: B packed once into the MXM's tile layout and reused by
// every call, so a prefill or decode loop never repacks.
//
// Layout: N is cut into panels of NR columns (the register tile's width,
// zero-padded past N); a panel holds all of K, k-group by k-group:
//
//   panel = [ group 0: NR columns x G values ][ group 1 ] ... [ group K/G ]   // (K/G, NR, G)
//
// with G = 1 (fp32), 2 (bf16 pairs, vdpbf16ps) or 4 (int8 quads,
// vpdpbusd), K zero-padded to a multiple of G. Any run of k-groups of a
// panel is a contiguous micro-panel, so the K block size is a traversal
// choice, not part of the layout.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "tstream/arch/x86/gemm_microkernels.hpp"
#include "tstream/core/bf16.hpp"
#include "tstream/core/buffer.hpp"
#include "tstream/core/error.hpp"
#include "tstream/core/view.hpp"
#include "tstream/kernels/gemm/blocking.hpp"
#include "tstream/kernels/gemv/formats.hpp"
#include "tstream/kernels/gemv/quantize.hpp"

namespace tstream {

namespace detail::gemm {
struct weights_access;  // the per-call packing of gemm.hpp
}  // namespace detail::gemm

/// Tag: weights given N x K, one row per output (the LLM checkpoint layout,
/// and resident_weights' layout), rather than K x N.
struct n_by_k_t {
  explicit n_by_k_t() = default;
};
/// The N x K tag value: gemm_weights<bf16> w(tstream::n_by_k, w_nk).
inline constexpr n_by_k_t n_by_k{};

/// Weight types the GEMM packs: fp32, bf16 and int8.
template <class W>
concept gemm_weight_type = std::is_same_v<W, float> || std::is_same_v<W, bf16> || std::is_same_v<W, std::int8_t>;

/// A K x N weight matrix B of type W packed into panels (see above).
///   float        copied
///   bf16         rounded to nearest even
///   std::int8_t  quantized per column n (per output): B(:, n) ~= s_n q(:, n),
///                s_n = max|B(:, n)| / 127 (quantize_value's rounding)
/// Immutable after construction; safe to share between threads and calls.
template <gemm_weight_type W>
class gemm_weights {
 public:
  using format = weight_format<W>;
  using storage = typename format::storage;
  /// k values per group (1, 2 or 4).
  static constexpr index_t group = format::group;
  /// Columns per panel (the register tile's width).
  static constexpr index_t panel_cols = index_t(arch::gemm_nr);

  /// Packs B given K x N (row-major, any ld). Throws tstream::error for K < 1
  /// and, for int8, for a non-finite weight.
  explicit gemm_weights(matrix_view<const float> b) { pack(b.rows(), b.cols(), [&](index_t k, index_t n) { return b(k, n); }); }

  /// Packs the same weights given N x K (w(n, k) = B(k, n)).
  gemm_weights(n_by_k_t, matrix_view<const float> w) {
    pack(w.cols(), w.rows(), [&](index_t k, index_t n) { return w(n, k); });
  }

  [[nodiscard]] index_t rows() const noexcept { return k_; }    ///< K, the reduction
  [[nodiscard]] index_t cols() const noexcept { return n_; }    ///< N, outputs
  [[nodiscard]] index_t groups() const noexcept { return kg_; } ///< K / group, rounded up
  [[nodiscard]] index_t panels() const noexcept { return panels_; }  ///< N / NR, rounded up
  /// Panel p's first k-group (groups() * NR * group values per panel).
  [[nodiscard]] const storage* panel(index_t p) const noexcept {
    return packed_.data() + std::size_t(p) * std::size_t(kg_ * panel_cols * group);
  }
  /// int8: per-column scales s_n (panels() * NR, zero past N); null for fp32 and bf16.
  [[nodiscard]] const float* scales() const noexcept { return scale_.data(); }
  /// int8: per-column sums of the codes (for u8 activations' +128 offset); null for fp32 and bf16.
  [[nodiscard]] const std::int32_t* col_sums() const noexcept { return col_sum_.data(); }
  /// Packed bytes (weights, plus scales and sums for int8).
  [[nodiscard]] std::size_t bytes() const noexcept { return packed_.bytes() + scale_.bytes() + col_sum_.bytes(); }
  /// The block sizes chosen for this machine's caches when packed.
  [[nodiscard]] const gemm_blocking& blocking() const noexcept { return blocking_; }

 private:
  friend struct detail::gemm::weights_access;
  gemm_weights() = default;

  // Sets the shape and makes room (reusing the buffer when it is large enough).
  void reshape(index_t k, index_t n) {
    detail::require(k >= 1, "gemm_weights", "B has K = ", k, " rows (K must be at least 1)");
    k_ = k;
    n_ = n;
    kg_ = (k + group - 1) / group;
    panels_ = (n + panel_cols - 1) / panel_cols;
    blocking_ = plan_blocking();
    const std::size_t per_panel = detail::checked_mul(std::size_t(kg_ * panel_cols), std::size_t(group), "gemm_weights", "B");
    const std::size_t total = detail::checked_mul(per_panel, std::size_t(panels_), "gemm_weights", "B");
    // aligned_buffer asks for huge pages: a tile reads 128 KiB of one panel
    // then jumps to the next, and with 4 KiB pages the TLB misses were the
    // small-M GEMM's limit (32 x 11008 x 4096: 0.87 -> 0.97 of peak).
    if (packed_.size() < total) packed_ = aligned_buffer<storage>(total);
  }

  template <class Element>
  void pack(index_t k, index_t n, Element element) {
    reshape(k, n);
    if constexpr (std::is_same_v<W, std::int8_t>) {
      // Per-column scales first (the whole column decides its scale).
      scale_ = aligned_buffer<float>(std::size_t(panels_ * panel_cols));
      col_sum_ = aligned_buffer<std::int32_t>(std::size_t(panels_ * panel_cols));
      aligned_buffer<float> inv(std::size_t(panels_ * panel_cols));
      for (index_t c = 0; c < panels_ * panel_cols; ++c) scale_[std::size_t(c)] = 0.f;
      for (index_t c = 0; c < panels_ * panel_cols; ++c) inv[std::size_t(c)] = 0.f;
      std::vector<float> amax(std::size_t(n), 0.f);
      for (index_t kk = 0; kk < k; ++kk)
        for (index_t c = 0; c < n; ++c) {
          const float v = element(kk, c);
          detail::require(std::isfinite(v), "gemm_weights", "B(", kk, ", ", c, ") = ", v, " is not finite");
          amax[std::size_t(c)] = std::fmax(amax[std::size_t(c)], std::fabs(v));
        }
      for (index_t c = 0; c < n; ++c) {
        const float iv = inverse_scale(amax[std::size_t(c)], 127.f);
        inv[std::size_t(c)] = iv;
        scale_[std::size_t(c)] = iv > 0 ? amax[std::size_t(c)] / 127.f : 0.f;
      }
      write_panels([&](index_t kk, index_t c) { return quantize_value(element(kk, c), inv[std::size_t(c)]); }, 0, panels_);
      for (index_t p = 0; p < panels_; ++p)
        for (index_t c = 0; c < panel_cols; ++c) {
          std::int32_t s = 0;
          const storage* src = panel(p);
          for (index_t g = 0; g < kg_; ++g)
            for (index_t e = 0; e < group; ++e) s += src[(g * panel_cols + c) * group + e];
          col_sum_[std::size_t(p * panel_cols + c)] = s;
        }
    } else {
      write_panels([&](index_t kk, index_t c) { return format::encode(element(kk, c)); }, 0, panels_);
    }
  }

  // Panels [p0, p1), k-group by k-group; code(k, n) gives the stored value.
  // Blocked over 64 k so both a K x N and an N x K source are read from cache.
  template <class Code>
  void write_panels(Code code, index_t p0, index_t p1) {
    constexpr index_t kb = 64;
    const index_t kp = kg_ * group;
    for (index_t p = p0; p < p1; ++p) {
      storage* dst = packed_.data() + std::size_t(p) * std::size_t(kg_ * panel_cols * group);
      for (index_t k0 = 0; k0 < kp; k0 += kb) {
        const index_t k1 = std::min(kp, k0 + kb);
        for (index_t c = 0; c < panel_cols; ++c) {
          const index_t col = p * panel_cols + c;
          for (index_t kk = k0; kk < k1; ++kk) {
            const bool real = col < n_ && kk < k_;
            dst[((kk / group) * panel_cols + c) * group + kk % group] = real ? storage(code(kk, col)) : storage(0);
          }
        }
      }
    }
  }

  index_t k_ = 0, n_ = 0, kg_ = 0, panels_ = 0;
  gemm_blocking blocking_;
  aligned_buffer<storage> packed_;
  aligned_buffer<float> scale_;
  aligned_buffer<std::int32_t> col_sum_;
};

}  // namespace tstream
