// A, the activations, made ready for the micro-kernels once per call:
// packed into MR-row micro-panels (fp32 when M is large), rounded to bf16
// pairs, or quantized per row to u8 quads (code + 128) with a row scale.
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

#include "tstream/arch/x86/gemm_microkernels.hpp"
#include "tstream/core/bf16.hpp"
#include "tstream/core/view.hpp"
#include "tstream/kernels/gemv/quantize.hpp"

namespace tstream::detail::gemm {

/// A as the micro-kernels read it.
template <class Atom>
struct activations {
  const typename Atom::a_type* data = nullptr;
  index_t ld = 0;               // direct: words between rows
  index_t groups = 0;           // packed: k-groups per micro-panel
  bool packed = false;          // micro-panel p at data + p * MR * groups
  const float* row_scale = nullptr;  // int8: A(i, :) ~= row_scale[i] * (code - 128)
};

/// Packs the micro-panels [p0, p1) of A (rows p * MR .. + MR) into dst, K
/// zero-padded to `groups` k-groups; int8 also writes row_scale[i] for
/// each row i. Rows past A's end are left unwritten (no kernel reads them).
template <class Atom>
void pack_a(matrix_view<const float> A, index_t groups, index_t p0, index_t p1, typename Atom::a_type* dst,
            float* row_scale) noexcept {
  constexpr index_t MR = index_t(arch::gemm_mr), G = index_t(Atom::group);
  constexpr index_t gb = 64;  // k-groups per block: MR x 64 words stay in L1 while the rows are written
  const index_t K = A.cols();
  for (index_t p = p0; p < p1; ++p) {
    typename Atom::a_type* panel = dst + p * MR * groups;
    const index_t rows = std::min(MR, A.rows() - p * MR);
    float inv[MR] = {};
    if constexpr (std::is_same_v<Atom, arch::gemm_atom_i8>) {
      for (index_t r = 0; r < rows; ++r) {
        const float* x = A.data() + (p * MR + r) * A.ld();
        float amax = 0, poison = 0;  // poison: x * 0 is NaN exactly when x is not finite
        for (index_t k = 0; k < K; ++k) {
          poison += x[k] * 0.f;
          amax = std::max(amax, std::fabs(x[k]));
        }
        const bool finite = poison == 0.f;
        inv[r] = finite ? inverse_scale(amax, 127.f) : 0.f;
        row_scale[p * MR + r] = !finite ? std::numeric_limits<float>::quiet_NaN() : inv[r] > 0 ? amax / 127.f : 0.f;
      }
    }
    for (index_t g0 = 0; g0 < groups; g0 += gb) {
      const index_t g1 = std::min(groups, g0 + gb);
      for (index_t r = 0; r < rows; ++r) {
        const float* x = A.data() + (p * MR + r) * A.ld();
        for (index_t g = g0; g < g1; ++g) {
          typename Atom::a_type word;
          if constexpr (G == 1) {
            word = x[g];
          } else if constexpr (G == 2) {
            const std::uint32_t lo = bf16::from_float(x[2 * g]);
            const std::uint32_t hi = 2 * g + 1 < K ? bf16::from_float(x[2 * g + 1]) : 0u;
            word = lo | (hi << 16);
          } else {
            word = 0;
            for (index_t b = 0; b < 4; ++b) {
              const index_t k = 4 * g + b;
              const std::uint32_t code = k < K && inv[r] > 0 ? std::uint32_t(quantize_value(x[k], inv[r]) + 128) : 128u;
              word |= code << (8 * b);
            }
          }
          panel[g * MR + r] = word;
        }
      }
    }
  }
}

}  // namespace tstream::detail::gemm
