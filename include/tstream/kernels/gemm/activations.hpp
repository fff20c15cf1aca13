// A, the activations, made ready for the micro-kernels: packed into MR-row
// micro-panels, as fp32, rounded to bf16 pairs, or quantized per row to u8
// quads (code + 128) with a row scale. gemm() does it in every call for an
// fp32 A; gemm_activations does it once for GEMMs that share A.
//
//   micro-panel = [ group 0: MR rows x one 32-bit word ][ group 1 ] ...   // (K/G, MR)
//
// Each row is prepared from that row alone, so a row of C never depends on
// the other rows of A, on M or on the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "tstream/arch/simd.hpp"
#include "tstream/arch/x86/gemm_microkernels.hpp"
#include "tstream/core/bf16.hpp"
#include "tstream/core/buffer.hpp"
#include "tstream/core/error.hpp"
#include "tstream/core/view.hpp"
#include "tstream/kernels/gemm/gemm_weights.hpp"
#include "tstream/kernels/gemv/quantize.hpp"
#include "tstream/runtime/thread_team.hpp"

namespace tstream::detail::gemm {

/// The micro-kernel atom for weights of type Wt (arch/x86/gemm_microkernels.hpp).
template <class Wt>
using atom_for = std::conditional_t<std::is_same_v<Wt, float>, arch::gemm_atom_f32,
                                    std::conditional_t<std::is_same_v<Wt, bf16>, arch::gemm_atom_bf16, arch::gemm_atom_i8>>;

/// One row x (K values) of A as 32-bit words for weights of group G (2:
/// bf16 pairs, even k low; 4: u8 quads, code + 128, k = 4g + byte), K
/// padded with zeros to `groups` words. Returns the int8 row scale (NaN
/// when the row is not finite), 0 for bf16.
template <index_t G>
inline float convert_row(const float* x, index_t K, index_t groups, std::uint32_t* words) noexcept {
  static_assert(G == 2 || G == 4, "tstream::detail::gemm::convert_row: bf16 pairs or int8 quads");
  if constexpr (G == 2) {
    auto* half = reinterpret_cast<std::uint16_t*>(words);  // little-endian: k = 2g low
    round_bf16(x, K, half);
    for (index_t k = K; k < groups * G; ++k) half[k] = 0;
    return 0.f;
  } else {
    auto* codes = reinterpret_cast<std::uint8_t*>(words);  // little-endian: k = 4g + byte
    const float scale = quantize_activations(x, K, codes);
    for (index_t k = K; k < groups * G; ++k) codes[k] = 128;
    return scale;
  }
}

/// Packs the micro-panels [p0, p1) of A (rows p * MR .. + MR) into dst
/// (micro-panel p at dst + (p - p0) * MR * groups), K zero-padded to
/// `groups` k-groups; int8 also writes row_scale[(p - p0) * MR + r] for
/// each row. Rows past A's end are left unwritten (no kernel reads them).
/// bf16 and int8 convert each row into `row_words` first (MR x groups words,
/// the caller's, so nothing here allocates; unused and may be null for fp32),
/// then deal it into the micro-panel 16 k-groups at a time.
template <class Atom>
void pack_a(matrix_view<const float> A, index_t groups, index_t p0, index_t p1, typename Atom::a_type* dst,
            float* row_scale, typename Atom::a_type* row_words) noexcept {
  using word = typename Atom::a_type;
  constexpr index_t MR = index_t(arch::gemm_mr), G = index_t(Atom::group);
  const index_t K = A.cols();
  for (index_t p = p0; p < p1; ++p) {
    word* panel = dst + (p - p0) * MR * groups;
    const index_t rows = std::min(MR, A.rows() - p * MR);
    const word* src_rows[MR] = {};
    for (index_t r = 0; r < rows; ++r) {
      const float* x = A.data() + (p * MR + r) * A.ld();
      const word* src = nullptr;
      if constexpr (G == 1) {
        src = x;  // fp32: the row itself
      } else {
        const float scale = convert_row<G>(x, K, groups, row_words + r * groups);
        if constexpr (G == 4) row_scale[(p - p0) * MR + r] = scale;
        src = row_words + r * groups;
      }
      src_rows[r] = src;
    }
    arch::gemm_deal_a<word>(src_rows, std::size_t(rows), 0, groups, panel);
  }
}

}  // namespace tstream::detail::gemm

namespace tstream {

/// Activations A (M x K, fp32) made ready once for GEMMs with weights of
/// type W, exactly as gemm() prepares an fp32 A in every call: packed into
/// the micro-kernels' row panels, and rounded to bf16 (W = bf16) or
/// quantized per row to 8-bit codes with a row scale (W = int8). Pass it to
/// every GEMM that shares A (the Q, K and V projections; gate and up): each
/// result is bitwise the one gemm() gives for the fp32 A, without preparing
/// A again. A row that is not finite makes its int8 row of C NaN, as there.
///
/// assign() reuses the storage when it is large enough, so a decode or
/// prefill loop that prepares a same-sized A every step allocates nothing.
/// Not thread-safe to assign while a GEMM reads it; safe to read from many.
template <gemm_weight_type W>
class gemm_activations {
  using atom = detail::gemm::atom_for<W>;

 public:
  /// One 32-bit word of a packed row: one fp32, two bf16 or four u8 codes.
  using word = typename atom::a_type;
  /// k values per word (1, 2 or 4), as gemm_weights<W>::group.
  static constexpr index_t group = index_t(atom::group);
  /// Rows per packed panel (the register tile's height).
  static constexpr index_t panel_rows = index_t(arch::gemm_mr);

  /// Empty (0 x 0); assign() before use.
  gemm_activations() = default;
  /// Prepares a (see assign).
  explicit gemm_activations(matrix_view<const float> a) { assign(a); }
  /// Prepares a with the team's members sharing the rows.
  gemm_activations(thread_team& team, matrix_view<const float> a) { assign(team, a); }

  /// Prepares a (M x K, K >= 1, any ld) on the calling thread. Throws
  /// tstream::error for K < 1 or a size past memory, and std::bad_alloc;
  /// the object keeps its previous contents then.
  void assign(matrix_view<const float> a) {
    reshape(a, 1);
    fill(a, 0, panels_, 0);
  }

  /// The same, each team member preparing a contiguous run of row panels.
  void assign(thread_team& team, matrix_view<const float> a) {
    const int t = team.size();
    const index_t panels = (a.rows() + panel_rows - 1) / panel_rows;
    // Members that fill at once, each in its own conversion region; with
    // more members than panels, member m's first panel (panels m / t) is
    // distinct among those with work, so it numbers the region.
    const int regions = t == 1 || panels < 2 ? 1 : int(std::min<index_t>(t, panels));
    reshape(a, regions);
    if (regions == 1) return fill(a, 0, panels_, 0);
    team.run([&](int m) { fill(a, panels_ * m / t, panels_ * (m + 1) / t, int(index_t(m) * regions / t)); });
  }

  [[nodiscard]] index_t rows() const noexcept { return m_; }     ///< M
  [[nodiscard]] index_t cols() const noexcept { return k_; }     ///< K
  [[nodiscard]] index_t groups() const noexcept { return kg_; }  ///< K / group, rounded up
  [[nodiscard]] index_t panels() const noexcept { return panels_; }  ///< M / panel_rows, rounded up
  /// Panel p's first word (groups() * panel_rows words per panel).
  [[nodiscard]] const word* panel(index_t p) const noexcept { return packed_.data() + p * panel_rows * kg_; }
  /// int8: row i's scale at row_scales()[i] (A(i, :) ~= scale (code - 128));
  /// null for fp32 and bf16.
  [[nodiscard]] const float* row_scales() const noexcept { return std::is_same_v<W, std::int8_t> ? scale_.data() : nullptr; }

 private:
  // Sizes the storage for a; everything that can throw (K, the size, the
  // allocations) happens before the object changes.
  // regions: how many fill() at once, each converting rows in its own
  // region of convert_ (bf16 and int8).
  void reshape(matrix_view<const float> a, int regions) {
    detail::require(a.cols() >= 1, "gemm_activations", "A has K = ", a.cols(), " columns (K must be at least 1)");
    const index_t kg = (a.cols() + group - 1) / group, panels = (a.rows() + panel_rows - 1) / panel_rows;
    const std::size_t rows = std::size_t(panels) * std::size_t(panel_rows);
    const std::size_t words = detail::checked_mul(rows, std::size_t(kg), "gemm_activations", "A");
    const bool scaled = std::is_same_v<W, std::int8_t>;
    const std::size_t stride = group > 1 ? convert_region(kg) : 0;
    const std::size_t convert_words = detail::checked_mul(stride, std::size_t(regions), "gemm_activations", "A");
    aligned_buffer<word> packed = packed_.size() < words ? aligned_buffer<word>(words) : aligned_buffer<word>();
    aligned_buffer<float> scale = scaled && scale_.size() < rows ? aligned_buffer<float>(rows) : aligned_buffer<float>();
    aligned_buffer<word> convert = convert_.size() < convert_words ? aligned_buffer<word>(convert_words) : aligned_buffer<word>();
    if (packed.size() != 0) packed_ = std::move(packed);
    if (scale.size() != 0) scale_ = std::move(scale);
    if (convert.size() != 0) convert_ = std::move(convert);
    convert_stride_ = stride;
    m_ = a.rows();
    k_ = a.cols();
    kg_ = kg;
    panels_ = panels;
  }

  // Words of one member's conversion rows (panel_rows x kg), whole 4 KiB
  // pages so members never share a cache line.
  static std::size_t convert_region(index_t kg) {
    constexpr std::size_t page_words = 4096 / sizeof(word);
    const std::size_t w = detail::checked_mul(std::size_t(panel_rows), std::size_t(kg), "gemm_activations", "A");
    return (w + page_words - 1) / page_words * page_words;
  }

  void fill(matrix_view<const float> a, index_t p0, index_t p1, int region) noexcept {
    if (p0 >= p1) return;
    float* scale = std::is_same_v<W, std::int8_t> ? scale_.data() + p0 * panel_rows : nullptr;
    word* convert = group > 1 ? convert_.data() + std::size_t(region) * convert_stride_ : nullptr;
    detail::gemm::pack_a<atom>(a, kg_, p0, p1, packed_.data() + p0 * panel_rows * kg_, scale, convert);
  }

  index_t m_ = 0, k_ = 0, kg_ = 0, panels_ = 0;
  aligned_buffer<word> packed_;
  aligned_buffer<float> scale_;
  aligned_buffer<word> convert_;  // bf16, int8: rows converted before they are dealt into panels
  std::size_t convert_stride_ = 0;  // words per region in convert_
};

}  // namespace tstream
