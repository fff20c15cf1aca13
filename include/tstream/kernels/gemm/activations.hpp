// A, the activations, made ready for the micro-kernels once per call:
// packed into MR-row micro-panels, as fp32, rounded to bf16 pairs, or
// quantized per row to u8 quads (code + 128) with a row scale.
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
#include <vector>

#include "tstream/arch/simd.hpp"
#include "tstream/arch/x86/gemm_microkernels.hpp"
#include "tstream/core/bf16.hpp"
#include "tstream/core/view.hpp"
#include "tstream/kernels/gemv/quantize.hpp"

namespace tstream::detail::gemm {

/// Packs the micro-panels [p0, p1) of A (rows p * MR .. + MR) into dst
/// (micro-panel p at dst + (p - p0) * MR * groups), K zero-padded to
/// `groups` k-groups; int8 also writes row_scale[(p - p0) * MR + r] for
/// each row. Rows past A's end are left unwritten (no kernel reads them).
template <class Atom>
void pack_a(matrix_view<const float> A, index_t groups, index_t p0, index_t p1, typename Atom::a_type* dst,
            float* row_scale) noexcept {
  using word = typename Atom::a_type;
  constexpr index_t MR = index_t(arch::gemm_mr), G = index_t(Atom::group);
  const index_t K = A.cols(), kp = groups * G;
  // One row converted into contiguous words first (loops that vectorize),
  // then dealt into the micro-panel 16 k-groups at a time.
  thread_local std::vector<word> row_words;
  if (index_t(row_words.size()) < MR * groups) row_words.resize(std::size_t(MR * groups));
  for (index_t p = p0; p < p1; ++p) {
    word* panel = dst + (p - p0) * MR * groups;
    const index_t rows = std::min(MR, A.rows() - p * MR);
    const word* src_rows[MR] = {};
    for (index_t r = 0; r < rows; ++r) {
      const float* x = A.data() + (p * MR + r) * A.ld();
      const word* src = nullptr;
      if constexpr (G == 1) {
        src = x;  // fp32: the row itself
      } else if constexpr (G == 2) {
        auto* half = reinterpret_cast<std::uint16_t*>(row_words.data() + r * groups);  // little-endian: k = 2g low
        round_bf16(x, K, half);
        for (index_t k = K; k < kp; ++k) half[k] = 0;
        src = row_words.data() + r * groups;
      } else {
        auto* codes = reinterpret_cast<std::uint8_t*>(row_words.data() + r * groups);  // little-endian: k = 4g + byte
        row_scale[(p - p0) * MR + r] = quantize_activations(x, K, codes);  // NaN when the row is not finite
        for (index_t k = K; k < kp; ++k) codes[k] = 128;
        src = row_words.data() + r * groups;
      }
      src_rows[r] = src;
    }
    arch::gemm_deal_a<word>(src_rows, std::size_t(rows), 0, groups, panel);
  }
}

}  // namespace tstream::detail::gemm
