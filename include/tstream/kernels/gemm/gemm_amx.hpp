// The GEMM's bf16 and int8 path on AMX tiles (arch/x86/amx.hpp), taken by
// gemm() wherever arch::amx_ready(): the same weights (gemm_weights' panels
// are read as they are), the same A preparation, the same finish.
//
// Blocking, outermost first: N blocks of 8 panels (256 columns); K blocks of
// k-steps (16 k-groups each) whose B block (8 panels) takes a quarter of L2;
// 32-row blocks of the member's A; the block's panels. Accumulators go to a
// scratch tile (32 x 32) per (row block, panel) between K blocks, which is
// exact; the last K block finishes each tile into C (int8 dequantize, alpha,
// beta: the register path's arithmetic) and hands the block to the epilogue.
//
// A is converted per call (or read from gemm_activations' panels) into
// row-major rows of whole k-steps: zero-padded for bf16, code 128 (zero)
// for int8, rows past M zero. B's last k-step, where K is not a whole
// number of steps, is copied into a zero-padded tile so no read passes the
// panel. Row i of C depends only on row i of A: bitwise the same for every
// M, thread count and packing (for int8 also bitwise the register path).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "tstream/arch/simd.hpp"
#include "tstream/arch/x86/amx.hpp"
#include "tstream/arch/x86/gemm_microkernels.hpp"
#include "tstream/core/buffer.hpp"
#include "tstream/core/error.hpp"
#include "tstream/core/view.hpp"
#include "tstream/kernels/gemm/activations.hpp"
#include "tstream/kernels/gemm/blocking.hpp"
#include "tstream/kernels/gemm/gemm_weights.hpp"
#include "tstream/kernels/gemv/quantize.hpp"
#include "tstream/runtime/thread_team.hpp"

namespace tstream::detail::gemm {

namespace amx {

inline constexpr index_t rows = 32;        // rows of C per block: two A tiles
inline constexpr index_t step = 16;        // k-groups per k-step (one tile's 64 bytes of a row)
inline constexpr index_t block_panels = 8; // panels per N block
// gemm() takes this path only where arch::amx_ready() and a panel is two
// 16-column tiles (arch::gemm_nr == 32, the AVX-512 register tile).
inline constexpr bool usable = arch::amx_compiled && arch::gemm_nr == 32;

// k-steps per K block: the N block's B (8 panels x 16 groups x 128 bytes a
// step) in a quarter of one core's L2.
[[nodiscard]] inline index_t k_block_steps(const arch::cache_info& c = arch::caches()) noexcept {
  const std::size_t l2 = std::max<std::size_t>(c.l2 / (c.l2_shared_by ? c.l2_shared_by : 1), 256u << 10);
  return std::clamp<index_t>(index_t(l2 / 4 / (std::size_t(block_panels) * 16 * 128)), 4, 64);
}

// A's rows [r0, r0 + n) as the A tiles read them: `stride` words per row,
// row i at dst + (i - r0) * stride. int8 also writes each row's scale.
// Rows past M are zero (their C rows are never stored).
template <class Wt>
void convert_rows(matrix_view<const float> A, const gemm_activations<Wt>* prepared, index_t m, index_t groups, index_t r0,
                  index_t n, index_t stride, std::uint32_t* dst, float* scale) noexcept {
  constexpr bool int8 = std::is_same_v<Wt, std::int8_t>;
  constexpr index_t G = gemm_weights<Wt>::group, MR = index_t(arch::gemm_mr);
  const std::uint32_t pad = int8 ? 0x80808080u : 0u;  // four u8 codes of zero, or two bf16 zeros
  for (index_t i = r0; i < r0 + n; ++i) {
    std::uint32_t* row = dst + (i - r0) * stride;
    index_t filled = 0;
    if (i < m && prepared) {  // the panels' words, transposed back to a row
      const std::uint32_t* panel = prepared->panel(i / MR) + i % MR;
      for (index_t g = 0; g < groups; ++g) row[g] = panel[g * MR];
      if constexpr (int8) scale[i - r0] = prepared->row_scales()[i];
      filled = groups;
    } else if (i < m) {  // as pack_a converts a row
      const float s = convert_row<G>(A.data() + i * A.ld(), A.cols(), groups, row);
      if constexpr (int8) scale[i - r0] = s;
      filled = groups;
    } else if constexpr (int8) {
      scale[i - r0] = 0.f;
    }
    for (index_t g = filled; g < stride; ++g) row[g] = pad;
  }
}

// Sizes of one member's scratch, in words / floats / accumulators.
struct member_sizes {
  std::size_t a_words, scales, partials;
};
[[nodiscard]] inline member_sizes sizes(const gemm_part& part, index_t groups) {
  const index_t blocks = std::max<index_t>(0, part.m_end - part.m_begin);
  const index_t stride = (groups + step - 1) / step * step;
  const std::size_t r = std::size_t(blocks * rows);
  const std::size_t panels = std::size_t(std::min<index_t>(block_panels, std::max<index_t>(0, part.n_end - part.n_begin)));
  return {checked_mul(r, std::size_t(stride), "gemm", "A"), r,
          checked_mul(std::size_t(blocks) * panels, std::size_t(rows * 32), "gemm", "the partial sums")};
}

// The last K block of one 32 x 32 tile: acc (row-major, 32 per row) into C.
template <class Wt>
void finish(const typename arch::batch<std::conditional_t<std::is_same_v<Wt, std::int8_t>, std::int32_t, float>>::value_type*
                acc,
            float* c, index_t ldc, index_t n_rows, index_t n_cols, float alpha, float beta, const float* row_scale,
            const float* col_scale, const std::int32_t* col_sum) noexcept {
  using fbatch = arch::batch<float>;
  using ibatch = arch::batch<std::int32_t>;
  constexpr index_t W = index_t(fbatch::size);
  for (index_t r = 0; r < n_rows; ++r)
    for (index_t j = 0; j < 32; j += W) {
      const index_t lanes = std::min<index_t>(n_cols - j, W);
      if (lanes <= 0) break;
      fbatch v;
      if constexpr (std::is_same_v<Wt, std::int8_t>) {  // as finish_tile
        const ibatch offset = ibatch::load_unaligned(col_sum + j) * ibatch(128);
        v = dequantize(xsimd::to_float(ibatch::load_unaligned(acc + r * 32 + j) - offset), fbatch::load_unaligned(col_scale + j),
                       fbatch(row_scale[r]));
      } else {
        v = fbatch::load_unaligned(acc + r * 32 + j);
      }
      float* const out = c + r * ldc + j;
      if (alpha != 1.f) v = v * fbatch(alpha);
      if (beta != 0.f) v = arch::fma(fbatch(beta), arch::load_partial(out, std::size_t(lanes)), v);
      arch::store_partial(out, v, std::size_t(lanes));
    }
}

// One member's part of C (32-row blocks [m_begin, m_end), panels [n_begin,
// n_end)) with its scratch. after_block(i0, i1, j0, j1) runs the epilogue
// over rows [i0, i1) x columns [j0, j1) of C once they are final.
template <class Wt, class Problem, class AfterBlock>
void run_part(const Problem& pr, const gemm_part& part, std::uint32_t* a, float* scale,
              typename arch::batch<std::conditional_t<std::is_same_v<Wt, std::int8_t>, std::int32_t, float>>::value_type*
                  partial,
              AfterBlock& after_block) {  // not noexcept: after_block runs the caller's epilogue
  constexpr bool int8 = std::is_same_v<Wt, std::int8_t>;
  constexpr index_t G = gemm_weights<Wt>::group, NR = index_t(arch::gemm_nr);
  if (part.m_begin >= part.m_end || part.n_begin >= part.n_end) return;
  const gemm_weights<Wt>& B = *pr.b;
  const index_t groups = B.groups(), stride = (groups + step - 1) / step * step, total = stride / step;
  const index_t full_steps = groups / step;  // k-steps read straight from the panel
  const index_t kb = k_block_steps();
  const index_t tiles_per_block = std::min(block_panels, part.n_end - part.n_begin);  // as sizes() counts them
  convert_rows<Wt>(pr.a, pr.prepared, pr.m, groups, part.m_begin * rows, (part.m_end - part.m_begin) * rows, stride, a,
                   scale);
  alignas(64) std::int8_t tail[block_panels][16 * 128];  // the panels' last, partial k-step, zero-padded
  arch::amx_configure();
  for (index_t jc = part.n_begin; jc < part.n_end; jc += block_panels) {
    const index_t jn = std::min(block_panels, part.n_end - jc);
    if (full_steps < total) {
      const std::size_t bytes = std::size_t(groups - full_steps * step) * 128;
      for (index_t jr = 0; jr < jn; ++jr) {
        std::memset(tail[jr], 0, sizeof tail[jr]);
        std::memcpy(tail[jr], B.panel(jc + jr) + full_steps * step * NR * G, bytes);
      }
    }
    for (index_t ks = 0; ks < total; ks += kb) {
      const index_t kn = std::min(kb, total - ks);
      const bool last = ks + kn == total;
      const index_t direct = std::min(ks + kn, full_steps) - std::min(ks, full_steps);  // steps from the panel
      for (index_t mb = part.m_begin; mb < part.m_end; ++mb) {
        const std::uint32_t* a_blk = a + (mb - part.m_begin) * rows * stride + ks * step;
        for (index_t jr = 0; jr < jn; ++jr) {
          const index_t p = jc + jr;
          auto* acc = partial + ((mb - part.m_begin) * tiles_per_block + jr) * rows * 32;
          const bool with_tail = last && full_steps < total;
          arch::amx_block<int8>(a_blk, std::size_t(stride) * 4, B.panel(p) + ks * step * NR * G, std::size_t(direct),
                                with_tail ? tail[jr] : nullptr, acc, ks == 0);
          if (last) {
            const index_t row0 = mb * rows;
            finish<Wt>(acc, pr.c + row0 * pr.ldc + p * NR, pr.ldc, std::min(rows, pr.m - row0),
                       std::min(NR, pr.n - p * NR), pr.alpha, pr.beta,
                       int8 ? scale + (mb - part.m_begin) * rows : nullptr, int8 ? B.scales() + p * NR : nullptr,
                       int8 ? B.col_sums() + p * NR : nullptr);
          }
        }
        if (last) after_block(mb * rows, std::min(pr.m, (mb + 1) * rows), jc * NR, std::min(pr.n, (jc + jn) * NR));
      }
    }
  }
  arch::amx_release();
}

// Every member's part; their scratch is sized here, before any member
// writes C (running out of memory throws with C untouched).
template <class Wt, class Problem, class AfterBlock>
void run(thread_team& team, const Problem& pr, AfterBlock after_block) {
  using acc_value = std::conditional_t<std::is_same_v<Wt, std::int8_t>, std::int32_t, float>;
  const index_t m_blocks = (pr.m + rows - 1) / rows, n_panels = pr.b->panels();
  const int T = team.size();
  const auto round_up = [](std::size_t n, std::size_t unit) { return (n + unit - 1) / unit * unit; };
  std::size_t* offset = thread_scratch<std::size_t, 13>(3 * std::size_t(T));  // per member: A words, scales, partials
  std::size_t words = 0, scales = 0, partials = 0;
  for (int m = 0; m < T; ++m) {
    const member_sizes s = sizes(split_gemm(m_blocks, n_panels, T, m), pr.b->groups());
    offset[3 * m] = words;
    offset[3 * m + 1] = scales;
    offset[3 * m + 2] = partials;
    words += round_up(s.a_words, 1024);  // whole 4 KiB pages per member
    scales += round_up(s.scales, 16);
    partials += round_up(s.partials, 1024);
  }
  std::uint32_t* const a = thread_scratch<std::uint32_t, 10>(words);
  float* const scale = thread_scratch<float, 11>(scales);
  acc_value* const partial = thread_scratch<acc_value, 12>(partials);
  team.run([&](int member) {
    const std::size_t* off = offset + 3 * member;
    run_part<Wt>(pr, split_gemm(m_blocks, n_panels, T, member), a + off[0], scale + off[1], partial + off[2],
                 after_block);
  });
}

}  // namespace amx

}  // namespace tstream::detail::gemm
