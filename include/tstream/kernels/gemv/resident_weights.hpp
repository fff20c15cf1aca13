// Resident weights: the MEM unit's "SRAM". A weight matrix packed once into
// stream order and split into per-core shares that stay in that core's
// caches wherever they fit.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "tstream/core/buffer.hpp"
#include "tstream/core/error.hpp"
#include "tstream/core/view.hpp"
#include "tstream/kernels/gemv/formats.hpp"
#include "tstream/kernels/gemv/quantize.hpp"
#include "tstream/memory/sram.hpp"
#include "tstream/arch/x86/dot_products.hpp"

namespace tstream {

/// One panel of a packed matrix: rows [row_begin, row_begin + rows), stored
/// as padded_rows (a multiple of 16) rows at `offset` elements into the
/// packed buffer.
struct panel_info {
  index_t row_begin = 0;
  index_t rows = 0;
  index_t padded_rows = 0;
  std::size_t offset = 0;
};

/// One core's share: a contiguous run of panels (and so of output rows and of
/// packed bytes), and where it lives when that core reads it every call.
struct share_info {
  std::size_t first_panel = 0, end_panel = 0;
  row_range rows;
  std::size_t bytes = 0;
  memory_level level = memory_level::dram;
};

/// An N x K weight matrix of type W (float, bf16 or std::int8_t) packed into
/// stream order (see formats.hpp) and partitioned into `shares` contiguous
/// per-core shares. Immutable after construction; share s is meant to be read
/// by team member s on every call, so it stays in that core's L2 (or its
/// slice of L3) when it fits.
///
/// For int8, each row i has a scale s_i (W(i, :) ~= s_i * q(i, :)).
template <weight_type W>
class resident_weights {
 public:
  using format = weight_format<W>;
  using storage = typename format::storage;
  static constexpr int group = format::group;

  /// Packs fp32 weights: copied (f32), rounded to nearest even (bf16) or
  /// quantized per row (int8, see quantize_rows). shares is the number of
  /// cores that will read it (normally thread_team::size()).
  explicit resident_weights(matrix_view<const float> w, int shares = 1) {
    check_shape(w.rows(), w.cols(), shares);
    if constexpr (std::is_same_v<W, std::int8_t>) {
      const quantized_rows q = quantize_rows(w);
      init(q.view(), q.scales(), shares);
    } else {
      layout(w.rows(), w.cols(), shares);
      pack([&](index_t i, index_t k) { return format::encode(w(i, k)); });
    }
  }

  /// Packs weights already in bf16.
  explicit resident_weights(matrix_view<const bf16> w, int shares = 1)
    requires std::is_same_v<W, bf16>
  {
    check_shape(w.rows(), w.cols(), shares);
    layout(w.rows(), w.cols(), shares);
    pack([&](index_t i, index_t k) { return w(i, k).bits; });
  }

  /// Packs weights already quantized: W(i, :) = scales[i] * q(i, :). Scales
  /// must be finite; codes may use the full [-128, 127] range.
  resident_weights(matrix_view<const std::int8_t> q, std::span<const float> scales, int shares = 1)
    requires std::is_same_v<W, std::int8_t>
  {
    check_shape(q.rows(), q.cols(), shares);
    init(q, scales, shares);
  }

  [[nodiscard]] index_t rows() const noexcept { return n_; }    ///< N, outputs
  [[nodiscard]] index_t cols() const noexcept { return k_; }    ///< K, inputs
  [[nodiscard]] index_t padded_cols() const noexcept { return kp_; }  ///< K rounded up to the group
  /// The contiguous shares the panels are split into (one per core, as asked).
  [[nodiscard]] int shares() const noexcept { return int(shares_.size()); }
  /// Share s (0 <= s < shares()); throws tstream::error otherwise.
  [[nodiscard]] const share_info& share(int s) const {
    detail::require(s >= 0 && s < shares(), "resident_weights::share", "s = ", s, " is outside [0, shares = ", shares(), ")");
    return shares_[std::size_t(s)];
  }
  /// Every panel (a block of output rows, stream-ordered), in row order.
  [[nodiscard]] std::span<const panel_info> panels() const noexcept { return panels_; }
  /// The packed stream (formats.hpp); panel p starts at data() + panels()[p].offset.
  [[nodiscard]] const storage* data() const noexcept { return packed_.data(); }
  /// Bytes one GEMV reads from the resident weights (packed weights, plus
  /// scales and row sums for int8).
  [[nodiscard]] std::size_t bytes() const noexcept {
    return packed_.bytes() + scale_.bytes() + row_sum_.bytes();
  }
  /// Per-row scales, padded per panel like the rows (int8; null for fp32 and bf16).
  [[nodiscard]] const float* scales() const noexcept { return scale_.data(); }
  /// Per-row sums of the int8 codes, for the u8 x s8 dot product's offset (null for fp32 and bf16).
  [[nodiscard]] const std::int32_t* row_sums() const noexcept { return row_sum_.data(); }

 private:
  static void check_shape(index_t n, index_t k, int shares) {
    detail::require(k > 0, "resident_weights", "w has K = ", k, " columns (K must be at least 1)");
    detail::require(n >= 0, "resident_weights", "w has N = ", n, " rows");
    detail::require(shares >= 1 && shares <= 1024, "resident_weights", "shares = ", shares, " is outside [1, 1024]");
  }

  void init(matrix_view<const std::int8_t> q, std::span<const float> scales, int shares) {
    detail::require(index_t(scales.size()) == q.rows(), "resident_weights", "scales has ", scales.size(),
                    " elements, w has N = ", q.rows(), " rows");
    detail::require(scales.data() != nullptr || scales.empty(), "resident_weights", "scales is null");
    for (std::size_t i = 0; i < scales.size(); ++i)
      detail::require(std::isfinite(scales[i]), "resident_weights", "scales[", i, "] = ", scales[i], " is not finite");
    layout(q.rows(), q.cols(), shares);
    pack([&](index_t i, index_t k) { return q(i, k); });
    // Scales and row sums, stored at the packed row position of each row.
    std::size_t padded_total = 0;
    for (const auto& p : panels_) padded_total += std::size_t(p.padded_rows);
    scale_ = aligned_buffer<float>(padded_total);
    row_sum_ = aligned_buffer<std::int32_t>(padded_total);
    std::size_t at = 0;
    for (const auto& p : panels_) {
      for (index_t r = 0; r < p.padded_rows; ++r, ++at) {
        const index_t i = p.row_begin + r;
        std::int32_t sum = 0;
        if (r < p.rows)
          for (index_t k = 0; k < q.cols(); ++k) sum += q(i, k);
        scale_[at] = r < p.rows ? scales[std::size_t(i)] : 0.f;
        row_sum_[at] = sum;
      }
    }
  }

  // Shares: balanced contiguous row ranges on 16-row boundaries. Panels: each
  // share cut into the fewest panels of at most max_panel rows, balanced.
  void layout(index_t n, index_t k, int shares) {
    n_ = n;
    k_ = k;
    kp_ = (k + group - 1) / group * group;
    const index_t max_panel = index_t(arch::accumulator_registers) * index_t(arch::width<float>);
    const index_t granule = panel_row_granule;
    std::size_t offset = 0;
    for (const row_range share_rows : split_rows(n, shares, granule)) {
      share_info s;
      s.rows = share_rows;
      s.first_panel = panels_.size();
      const index_t count = (share_rows.size() + max_panel - 1) / max_panel;
      for (const row_range pr : split_rows(share_rows.size(), count, granule)) {
        if (pr.size() == 0) continue;
        panel_info p;
        p.row_begin = share_rows.begin + pr.begin;
        p.rows = pr.size();
        p.padded_rows = (pr.size() + granule - 1) / granule * granule;
        p.offset = offset;
        offset += std::size_t(p.padded_rows * kp_);
        panels_.push_back(p);
      }
      s.end_panel = panels_.size();
      shares_.push_back(s);
    }
    packed_ = aligned_buffer<storage>(offset);
    const std::size_t per_row_extra = std::is_same_v<W, std::int8_t> ? 8 : 0;  // scale + row sum
    for (auto& s : shares_) {
      for (std::size_t p = s.first_panel; p < s.end_panel; ++p)
        s.bytes += std::size_t(panels_[p].padded_rows) * (std::size_t(kp_) * sizeof(storage) + per_row_extra);
      s.level = residency(s.bytes, shares);
    }
  }

  // Writes every panel in stream order, sub-panel by sub-panel: the layout of
  // formats.hpp's panel_index (which the layout test checks this against),
  // spelled per sub-panel so the loop needs no search. element(i, k) gives
  // the encoded weight. Blocked along K so the scattered writes stay in cache.
  template <class Element>
  void pack(Element element) {
    constexpr index_t kb = 64;
    for (const auto& p : panels_) {
      for (int st = 0; st < panel_streams; ++st) {
        const stream_rows sp = sub_panel(int(p.padded_rows), st);
        const index_t r0 = sp.first, P = sp.count;
        if (P == 0) break;
        storage* dst = packed_.data() + p.offset + std::size_t(r0 * kp_);
        for (index_t k0 = 0; k0 < kp_; k0 += kb) {
          const index_t k1 = std::min(kp_, k0 + kb);
          for (index_t r = 0; r < P; ++r) {
            for (index_t k = k0; k < k1; ++k) {
              const bool real = r0 + r < p.rows && k < k_;
              dst[(k / group) * P * group + r * group + k % group] = real ? element(p.row_begin + r0 + r, k) : storage(0);
            }
          }
        }
      }
    }
  }

  index_t n_ = 0, k_ = 0, kp_ = 0;
  std::vector<panel_info> panels_;
  std::vector<share_info> shares_;
  aligned_buffer<storage> packed_;
  aligned_buffer<float> scale_;
  aligned_buffer<std::int32_t> row_sum_;
};

}  // namespace tstream
