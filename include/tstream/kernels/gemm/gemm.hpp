// GEMM, the MXM: C = epilogue(alpha A B + beta C) + residual, with A (M x K)
// activations and B (K x N) weights packed once (gemm_weights).
//
//   MEM (A, packed B) -> MXM (register-tiled micro-kernels) -> VXM (dequantize,
//   alpha/beta, epilogue stage, residual) -> MEM (C)
//
// Blocking (BLIS, loops outermost first): N blocks of nc columns, M blocks
// of about mc rows, K blocks, then either NR-column panels outer and MR-row
// micro-panels inner (at most 3 micro-panels in the M block: each B
// micro-panel read from memory once, K blocks of kc) or micro-panels outer
// and panels inner (K blocks of kc_long). Each tile prefetches the next
// tile's B micro-panel into L2.
// A is packed per call into MR-row micro-panels (rounded to bf16 or
// quantized on the way), by each member for the rows its part of C needs,
// one M block at a time right before its first use (fp32 A: by the first
// tile of each micro-panel, which reads it in place). Partial sums go to a
// per-thread scratch block in fp32 (int32 for int8) between K blocks; the
// last K block finishes each tile in registers (dequantize, alpha, beta)
// and stores it to C, and the epilogue stage then runs over the mc x nc
// block of C while it is still in L1/L2.
//
// Determinism: each C element is one chain of atom steps over k = 0 .. K-1
// in order (storing and reloading partial sums is exact), finished by the
// same per-element operations whatever tile, block or thread computes it.
// Row i of C is bitwise identical for every M, every thread count and
// prepacked or per-call packed weights.
//
// Where arch::amx_ready(), bf16 and int8 run on AMX tiles instead
// (gemm_amx.hpp: its own blocking around a 32 x 32 tile block, the same
// weights, A preparation and finish; int8 gives the same bits, bf16
// tdpbf16ps' own). Blocking above: plan_blocking (blocking.hpp).
//
// Types (bf16 and int8 always use the dot-product instructions, what GEMV
// calls precision::fast):
//   fp32  fp32 FMA
//   bf16  A rounded to bf16 (nearest even), vdpbf16ps into fp32 (each value
//         of A and B off by at most 2^-8 relative, so each product by 2^-7)
//   int8  A quantized per row to 8 bits (scale max|A(i, :)| / 127), B per
//         column; vpdpbusd u8 x s8 with exact int32 sums
// Without AVX512_BF16/VNNI the same arithmetic runs in portable code.
//
// NaN and infinity propagate as in IEEE arithmetic for fp32 and bf16; an
// int8 row of A with a non-finite value makes that row of C NaN, and where
// A's row scale times B's column scale exceeds fp32 the product is held at
// FLT_MAX (a code sum of 0 gives 0, not NaN; docs/bad-input.md).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>

#include "tstream/arch/simd.hpp"
#include "tstream/arch/x86/gemm_microkernels.hpp"
#include "tstream/core/buffer.hpp"
#include "tstream/core/error.hpp"
#include "tstream/core/stream.hpp"
#include "tstream/core/view.hpp"
#include "tstream/kernels/gemm/activations.hpp"
#include "tstream/kernels/gemm/blocking.hpp"
#include "tstream/kernels/gemm/gemm_amx.hpp"
#include "tstream/kernels/gemm/gemm_weights.hpp"
#include "tstream/runtime/thread_team.hpp"
#include "tstream/units/mem.hpp"
#include "tstream/units/vxm.hpp"

namespace tstream {

/// Options of a GEMM call: C = epilogue(alpha A B + beta C) + residual.
struct gemm_options {
  /// Scales A B (before beta C and the epilogue).
  float alpha = 1.f;
  /// 0 (the default) never reads C, so C may hold anything (NaN included).
  float beta = 0.f;
  /// M x N, added after the epilogue (a transformer's residual stream);
  /// empty for none. Must not overlap C (for C += ..., use beta = 1).
  matrix_view<const float> residual{};
};

namespace detail::gemm {

using fbatch = arch::batch<float>;
inline constexpr index_t MR = index_t(arch::gemm_mr), NR = index_t(arch::gemm_nr);
inline constexpr std::size_t W = fbatch::size;

// One micro-kernel call.
template <class Atom>
struct tile_args {
  using acc_value = typename Atom::acc_type::value_type;
  const typename Atom::a_type* a = nullptr;  // the packed micro-panel at the K block
  typename Atom::a_type* pack_to = nullptr;  // packing tile: where it packs that micro-panel
  const typename Atom::b_storage* b = nullptr;
  index_t groups = 0;
  acc_value* partial = nullptr;  // MR x NR scratch tile
  bool first = true, last = true;
  float* c = nullptr;            // the tile's first element in C
  index_t ldc = 0, n_valid = 0;  // columns of the tile inside C
  float alpha = 1.f, beta = 0.f;
  const char* pf = nullptr;  // prefetched alongside, pf_lines cache lines per k-group
  int pf_lines = 0;
  const float* a_scale = nullptr;       // int8: the tile's row scales
  const float* b_scale = nullptr;       // int8: the panel's column scales
  const std::int32_t* b_sum = nullptr;  // int8: the panel's column code sums
  const typename Atom::a_type* a_rows = nullptr;  // packing tile: A in place, rows lda apart
  index_t lda = 0;
};

// The last K block, one accumulator register at a time: dequantize,
// alpha, beta, store the valid part. The arguments are copied once (as far
// as the compiler knows, a store to C may change *t, so it reloaded them
// for every register).
template <class Atom>
struct finish_tile {
  using ibatch = arch::batch<std::int32_t>;
  static constexpr bool int8 = std::is_same_v<Atom, arch::gemm_atom_i8>;
  float* c;
  index_t ldc, n_valid;
  float alpha, beta;
  const float* row_scale;      // int8: the tile's row scales
  const float* col_scale;      // int8: the panel's column scales
  const std::int32_t* col_sum;  // int8: the panel's column code sums
  bool plain;                   // fp32 accumulators (fp32, bf16), whole tile inside C, C = acc: plain stores

  explicit finish_tile(const tile_args<Atom>& t) noexcept
      : c(t.c), ldc(t.ldc), n_valid(t.n_valid), alpha(t.alpha), beta(t.beta), row_scale(t.a_scale),
        col_scale(t.b_scale), col_sum(t.b_sum), plain(!int8 && t.n_valid >= index_t(arch::gemm_nr) && t.alpha == 1.f && t.beta == 0.f) {}

  template <std::size_t R, std::size_t J>
  TSTREAM_ALWAYS_INLINE void operator()(const typename Atom::acc_type& acc) const noexcept {
    if constexpr (!int8) {
      if (plain) {
        fbatch(acc).store_unaligned(c + index_t(R) * ldc + index_t(J * W));
        return;
      }
    }
    const index_t lanes = std::min<index_t>(n_valid - index_t(J * W), index_t(W));
    if (lanes <= 0) return;  // past the edge of C
    fbatch v;
    if constexpr (int8) {
      // sum((code + 128) q) - 128 sum(q) = sum(code q), exactly in int32.
      const ibatch offset = ibatch::load_unaligned(col_sum + J * W) * ibatch(128);
      v = dequantize(xsimd::to_float(acc - offset), fbatch::load_unaligned(col_scale + J * W), fbatch(row_scale[R]));
    } else {
      v = acc;
    }
    float* const out = c + index_t(R) * ldc + index_t(J * W);
    if (alpha != 1.f) v = v * fbatch(alpha);
    if (beta != 0.f) v = arch::fma(fbatch(beta), arch::load_partial(out, std::size_t(lanes)), v);
    arch::store_partial(out, v, std::size_t(lanes));
  }
};

// A K block before the last: the partial sums go to the scratch tile.
template <class Atom>
struct keep_partial {
  typename Atom::acc_type::value_type* partial;
  template <std::size_t R, std::size_t J>
  TSTREAM_ALWAYS_INLINE void operator()(const typename Atom::acc_type& acc) const noexcept {
    acc.store_unaligned(partial + R * arch::gemm_nr + J * W);
  }
};

// One tile; with Packing, A is read in place (t.a_rows) and packed to t.pack_to.
template <class Atom, std::size_t Rows, bool Packing>
void tile(const tile_args<Atom>& t) noexcept {
  const typename Atom::acc_type::value_type* start = t.first ? nullptr : t.partial;
  const typename Atom::a_type* a = Packing ? t.a_rows : t.a;
  typename Atom::a_type* const pack_to = Packing ? t.pack_to : nullptr;
  if (t.last) {
    for (std::size_t r = 0; r < Rows; ++r)  // the tile of C arrives while the K loop runs
      for (std::size_t j = 0; j < arch::gemm_tile_regs; ++j) arch::prefetch_l2(t.c + index_t(r) * t.ldc + index_t(j * W));
    arch::gemm_microkernel<Atom, Rows, !Packing>(a, t.lda, t.b, t.groups, start, finish_tile<Atom>(t), t.pf,
                                                 t.pf_lines, pack_to);
  } else {
    arch::gemm_microkernel<Atom, Rows, !Packing>(a, t.lda, t.b, t.groups, start, keep_partial<Atom>{t.partial}, t.pf,
                                                 t.pf_lines, pack_to);
  }
}

template <class Atom>
using tile_fn = void (*)(const tile_args<Atom>&) noexcept;

/// tile<Atom, Rows, Packing> for Rows = 1 .. MR, indexed by Rows - 1.
template <class Atom, bool Packing = false>
inline constexpr auto tile_table = []<std::size_t... r>(std::index_sequence<r...>) {
  return std::array<tile_fn<Atom>, sizeof...(r)>{&tile<Atom, r + 1, Packing>...};
}(std::make_index_sequence<arch::gemm_mr>{});


// Everything a member needs for its part of C.
template <class Atom, class Wt, class Epilogue>
struct problem {
  matrix_view<const float> a;  // unpacked: each member packs the rows it needs
  const gemm_activations<Wt>* prepared;  // or packed already (then a is unused)
  const gemm_weights<Wt>* b;
  float* c;
  index_t ldc, m, n;
  float alpha, beta;
  matrix_view<const float> residual;
  const Epilogue* epilogue;
};

// The VXM pass over rows [i0, i1) x columns [j0, j1) of C, just written.
template <class Atom, class Wt, class Epilogue>
void epilogue_pass(const problem<Atom, Wt, Epilogue>& pr, index_t i0, index_t i1, index_t j0, index_t j1) {
  using V = vec<float>;
  constexpr bool has_stage = !std::is_same_v<Epilogue, vxm::identity>;
  const bool has_residual = !pr.residual.empty();
  if (!has_stage && !has_residual) return;
  for (index_t i = i0; i < i1; ++i) {
    float* row = pr.c + i * pr.ldc;
    const float* res = has_residual ? pr.residual.data() + i * pr.residual.ld() : nullptr;
    for (index_t j = j0; j < j1; j += index_t(V::lanes)) {
      const std::size_t n = std::size_t(j1 - j);
      if constexpr (!has_stage || superlane_stage<Epilogue, V>) {  // one register at a time (stream.hpp)
        for (std::size_t s = 0; s < V::superlanes && s * W < n; ++s) {
          const std::size_t cnt = std::min(W, n - s * W);
          float* const out = row + j + index_t(s * W);
          fbatch x = arch::load_partial(out, cnt);
          if constexpr (has_stage) x = pr.epilogue->superlane(x, std::size_t(j), s);
          if (has_residual) x = x + arch::load_partial(res + j + index_t(s * W), cnt);
          arch::store_partial(out, x, cnt);
        }
      } else {
        V v = V::load(row + j, n);
        v = (*pr.epilogue)(v, std::size_t(j));
        if (has_residual) v = v + V::load(res + j, n);
        v.store(row + j, n);
      }
    }
  }
}

// A member's rows of A: micro-panel part.m_begin + i at data + i * MR *
// groups (int8 row scales at scale + i * MR), and where the member packs
// them (the same words; null when A came prepared, so nothing is written).
template <class Atom>
struct member_a {
  const typename Atom::a_type* data = nullptr;
  const float* scale = nullptr;
  typename Atom::a_type* pack = nullptr;
  float* pack_scale = nullptr;
  typename Atom::a_type* convert = nullptr;   // bf16/int8 packing: MR rows of converted words
  typename Atom::acc_type::value_type* partial = nullptr;  // K blocks before the last: mcp x ncp tiles
};

// A part's blocking: M blocks of about mc rows, as even as can be, the count
// rounded to nearest (128 rows: one block of 10 micro-panels rather than
// 9 + 1, the second reading all of B again for 2 rows); K blocks of kc for
// few micro-panels of A per block (small M: B micro-panel outer), of kc_long
// otherwise, as even as can be.
struct part_blocking {
  index_t m_blocks, mcp;  // M blocks, micro-panels per block (at most)
  bool b_outer;
  index_t kc;             // k-groups per K block
  [[nodiscard]] std::size_t partial_tiles(index_t kg, index_t ncp) const noexcept {
    return kg > kc ? std::size_t(mcp) * std::size_t(ncp) : 0;
  }
};
inline part_blocking block_part(const gemm_part& part, const gemm_blocking& bl, index_t kg) noexcept {
  part_blocking b;
  const index_t m_span = part.m_end - part.m_begin;
  b.m_blocks = std::max<index_t>(1, (m_span + bl.mc / MR / 2) / (bl.mc / MR));
  b.mcp = (m_span + b.m_blocks - 1) / b.m_blocks;
  b.b_outer = b.mcp <= 3;
  const index_t kb = b.b_outer ? bl.kc : bl.kc_long;
  const index_t k_blocks = (kg + kb - 1) / kb;
  b.kc = (kg + k_blocks - 1) / k_blocks;
  return b;
}

template <class Atom, class Wt, class Epilogue>
void run_part(const problem<Atom, Wt, Epilogue>& pr, const gemm_part& part, const member_a<Atom>& a) {
  using acc_value = typename Atom::acc_type::value_type;
  constexpr index_t G = index_t(Atom::group);
  if (part.m_begin >= part.m_end || part.n_begin >= part.n_end) return;
  const gemm_weights<Wt>& B = *pr.b;
  const gemm_blocking& bl = B.blocking();
  const index_t ncp = bl.nc / NR, kg = B.groups();
  const part_blocking pb = block_part(part, bl, kg);
  const index_t m_span = part.m_end - part.m_begin, m_blocks = pb.m_blocks, mcp = pb.mcp, kc = pb.kc;
  const bool b_outer = pb.b_outer;  // few micro-panels of A per block: B micro-panel outer (below)
  // fp32 A with many micro-panels is packed by the first tile of each one
  // (reading it in place), not in a pass of its own: 256^3 +3%, 300^3,
  // 512^3 and 1000^3 +2% on one thread, 256^3 on two +1.7% (paired
  // medians). Not when its rows lie a multiple of 4 KiB apart (the 14 rows
  // would share one L1 set), nor for a few micro-panels (their packing is
  // noise against B's stream).
  constexpr bool fp32 = std::is_same_v<Atom, arch::gemm_atom_f32>;
  const bool packed = pr.prepared != nullptr;
  const bool pack_in_tile = fp32 && !packed && !b_outer && (pr.a.ld() * index_t(sizeof(float))) % 4096 != 0;
  acc_value* partial = a.partial;  // pb.partial_tiles(kg, ncp) tiles, from the caller
  const auto& table = tile_table<Atom>;

  tile_args<Atom> t;
  t.ldc = pr.ldc;
  t.alpha = pr.alpha;
  t.beta = pr.beta;
  t.lda = pr.a.ld();
  for (index_t jc = part.n_begin; jc < part.n_end; jc += ncp) {
    const index_t jn = std::min(ncp, part.n_end - jc);
    for (index_t mb = 0; mb < m_blocks; ++mb) {
      const index_t ic = part.m_begin + m_span * mb / m_blocks, im = part.m_begin + m_span * (mb + 1) / m_blocks - ic;
      // The M block's rows of A, packed by this member when first needed
      // (then hot in L2 for the first N block).
      if (jc == part.n_begin && !pack_in_tile && !packed)
        pack_a<Atom>(pr.a, kg, ic, ic + im, a.pack + (ic - part.m_begin) * MR * kg,
                     a.pack_scale ? a.pack_scale + (ic - part.m_begin) * MR : nullptr, a.convert);
      for (index_t pc = 0; pc < kg; pc += kc) {
        t.groups = std::min(kc, kg - pc);
        t.first = pc == 0;
        t.last = pc + t.groups == kg;
        const auto run_tile = [&](index_t jr, index_t ir) {
          const index_t p = jc + jr;
          t.b = B.panel(p) + pc * NR * G;
          t.n_valid = std::min(NR, pr.n - p * NR);
          if constexpr (std::is_same_v<Atom, arch::gemm_atom_i8>) {
            t.b_scale = B.scales() + p * NR;
            t.b_sum = B.col_sums() + p * NR;
          }
          const index_t mp = ic + ir, row0 = mp * MR;
          t.a = a.data + (mp - part.m_begin) * MR * kg + pc * MR;
          t.partial = partial ? partial + (jr * mcp + ir) * MR * NR : nullptr;
          t.c = pr.c + row0 * pr.ldc + p * NR;
          if constexpr (std::is_same_v<Atom, arch::gemm_atom_i8>) t.a_scale = a.scale + (mp - part.m_begin) * MR;
          const std::size_t rows = std::size_t(std::min(MR, pr.m - row0) - 1);
          if constexpr (fp32) {
            if (pack_in_tile && jc == part.n_begin && jr == 0) {  // the micro-panel's first tile at this K block
              t.a_rows = pr.a.data() + row0 * pr.a.ld() + pc;
              t.pack_to = a.pack + (mp - part.m_begin) * MR * kg + pc * MR;
              return tile_table<Atom, true>[rows](t);
            }
          }
          table[rows](t);
        };
        // Few micro-panels of A (small M): B micro-panel outer, each read
        // from memory once and serving the M block's tiles in turn while
        // they prefetch the next one into L2, a share each (32 x 4096 x
        // 4096: 0.75 -> 0.87 of peak; 8 x 4096 x 4096: 0.45 -> 0.69).
        // Otherwise A micro-panel outer, serving the N block's panels
        // while each tile prefetches the next tile's B (against B outer:
        // 0.92 -> 0.93 at 1024^3, 0.92 -> 0.94 at 2048^3; already better at
        // 64 x 4096 x 4096).
        if (b_outer) {
          const index_t b_bytes = t.groups * NR * G * index_t(sizeof(typename Atom::b_storage));
          for (index_t jr = 0; jr < jn; ++jr) {
            // The B micro-panel after this one: the next panel, else the
            // block's first panel at the next K block, else the next N block's.
            const typename Atom::b_storage* next = nullptr;
            index_t next_bytes = b_bytes;
            if (jr + 1 < jn) {
              next = B.panel(jc + jr + 1) + pc * NR * G;
            } else if (pc + kc < kg) {
              next = B.panel(jc) + (pc + kc) * NR * G;
              next_bytes = std::min(kc, kg - pc - kc) * NR * G * index_t(sizeof(typename Atom::b_storage));
            } else if (mb + 1 == m_blocks && jc + jn < part.n_end) {
              next = B.panel(jc + jn);
              next_bytes = std::min(kc, kg) * NR * G * index_t(sizeof(typename Atom::b_storage));
            }
            for (index_t ir = 0; ir < im; ++ir) {
              t.pf_lines = 0;
              if (next && ir * t.groups * 64 < next_bytes) {
                t.pf = reinterpret_cast<const char*>(next) + ir * t.groups * 64;
                t.pf_lines = im == 1 ? 2 : 1;
              }
              run_tile(jr, ir);
            }
          }
        } else {
          for (index_t ir = 0; ir < im; ++ir)
            for (index_t jr = 0; jr < jn; ++jr) {
              t.pf_lines = 0;
              if (jr + 1 < jn) {
                t.pf = reinterpret_cast<const char*>(B.panel(jc + jr + 1) + pc * NR * G);
                t.pf_lines = 2;
              } else if (ir + 1 < im) {  // the next A micro-panel (or where its first tile will pack it)
                t.pf = reinterpret_cast<const char*>(a.data + (ic + ir + 1 - part.m_begin) * MR * kg + pc * MR);
                t.pf_lines = 1;
              }
              run_tile(jr, ir);
            }
        }
      }
      epilogue_pass(pr, ic * MR, std::min(pr.m, (ic + im) * MR), jc * NR, std::min(pr.n, (jc + jn) * NR));
    }
  }
}

// Runs every member's part. Each member packs the rows of A its part needs
// into its own region of one buffer: no member reads what another wrote
// (with A packed once on the team and shared, 256^3 on 2 threads spent
// 85 us of 295 packing and more reading the other core's half, against
// 11 us of 332 on 1 thread), and no second hand-off. With N split over
// members, each packs all of A: M K words against M N K / members FMAs.
// Always packed, even for a few rows: rows of A read in place sit ld
// apart, and with ld a multiple of 4 KiB all 14 of them land in one L1 set
// (measured: 0.47 of peak in place against 0.72 packed at 32 x 4096 x 4096).
// With A prepared (gemm_activations), members read its panels in place and
// nothing is packed.
template <class Wt, class Epilogue>
void run(thread_team& team, matrix_view<const float> A, const gemm_weights<Wt>& B, matrix_view<float> C,
         const Epilogue& epilogue, const gemm_options& opt, const gemm_activations<Wt>* prepared = nullptr) {
  using Atom = atom_for<Wt>;
  using a_type = typename Atom::a_type;
  constexpr bool scaled = std::is_same_v<Wt, std::int8_t>;
  const index_t M = C.rows(), m_panels = (M + MR - 1) / MR, n_panels = B.panels(), groups = B.groups();
  const problem<Atom, Wt, Epilogue> pr{A, prepared, &B, C.data(), C.ld(), M, B.cols(), opt.alpha, opt.beta, opt.residual, &epilogue};
  if constexpr (amx::usable && !std::is_same_v<Wt, float>) {
    if (arch::amx_ready())  // bf16 and int8 on the CPU's matrix unit (gemm_amx.hpp)
      return amx::run<Wt>(team, pr, [&](index_t i0, index_t i1, index_t j0, index_t j1) { epilogue_pass(pr, i0, i1, j0, j1); });
  }
  const int T = team.size();
  // Every member's scratch (per-thread slots 0-4; the AMX path uses 10-13),
  // sized here before any member writes C (so
  // running out of memory throws with C untouched): its rows of A (all K
  // groups) and their int8 scales, its partial sums between K blocks, and
  // for bf16 and int8 MR rows of converted A words. Each region is whole
  // 4 KiB pages (the int8 scales whole 64-byte lines), so members never
  // share a cache line. Offsets are worked out once, here.
  using acc_value = typename Atom::acc_type::value_type;
  const index_t ncp = B.blocking().nc / NR;
  const auto round_up = [](std::size_t n, std::size_t unit) { return (n + unit - 1) / unit * unit; };
  std::size_t* offset = thread_scratch<std::size_t, 4>(3 * std::size_t(T));  // per member: A words, scales, partial values
  std::size_t words = 0, scales = 0, partials = 0;
  for (int m = 0; m < T; ++m) {
    const gemm_part part = split_gemm(m_panels, n_panels, T, m);
    offset[3 * m] = words;
    offset[3 * m + 1] = scales;
    offset[3 * m + 2] = partials;
    if (!prepared) {
      const std::size_t rows = std::size_t(std::max<index_t>(0, part.m_end - part.m_begin) * MR);
      words += round_up(checked_mul(rows, std::size_t(groups), "gemm", "A"), 4096 / sizeof(a_type));
      scales += round_up(rows, 16);
    }
    const std::size_t tiles = block_part(part, B.blocking(), groups).partial_tiles(groups, ncp);
    partials += round_up(checked_mul(tiles, std::size_t(MR * NR), "gemm", "the partial sums"), 4096 / sizeof(acc_value));
  }
  const std::size_t convert_region =
      Atom::group > 1 && !prepared ? round_up(checked_mul(std::size_t(MR), std::size_t(groups), "gemm", "A"), 4096 / sizeof(a_type)) : 0;
  a_type* const buf = words ? thread_scratch<a_type, 1>(words) : nullptr;
  float* const scale = scaled && scales ? thread_scratch<float, 2>(scales) : nullptr;
  acc_value* const partial = partials ? thread_scratch<acc_value, 0>(partials) : nullptr;
  a_type* const convert = convert_region ? thread_scratch<a_type, 3>(checked_mul(convert_region, std::size_t(T), "gemm", "A")) : nullptr;
  team.run([&](int member) {
    const gemm_part part = split_gemm(m_panels, n_panels, T, member);
    const std::size_t* off = offset + 3 * member;
    member_a<Atom> a;
    a.partial = partial ? partial + off[2] : nullptr;
    a.convert = convert ? convert + std::size_t(member) * convert_region : nullptr;
    if (prepared) {  // its panels from this part's first row on, read in place
      a.data = prepared->panel(part.m_begin);
      if (scaled) a.scale = prepared->row_scales() + part.m_begin * MR;
    } else {
      a.pack = buf + off[0];
      a.pack_scale = scale ? scale + off[1] : nullptr;
      a.data = a.pack;
      a.scale = a.pack_scale;
    }
    run_part(pr, part, a);
  });
}

// Every check, before anything is written: A (m x a_cols) against B (k x n),
// C and the options.
inline void check_shapes(index_t m, index_t a_cols, index_t k, index_t n, matrix_view<float> C, const gemm_options& opt) {
  detail::require(a_cols == k, "gemm", "A has ", a_cols, " columns, B has K = ", k, " rows");
  detail::require(C.rows() == m, "gemm", "C has ", C.rows(), " rows, A has M = ", m);
  detail::require(C.cols() == n, "gemm", "C has ", C.cols(), " columns, B has N = ", n);
  if (opt.residual.rows() != 0 || opt.residual.cols() != 0) {
    detail::require(opt.residual.rows() == C.rows() && opt.residual.cols() == C.cols(), "gemm", "residual is ",
                    opt.residual.rows(), " x ", opt.residual.cols(), ", C is ", C.rows(), " x ", C.cols());
    detail::require(!overlaps(opt.residual.data(), span_bytes(opt.residual), C.data(), span_bytes(C)), "gemm",
                    "residual overlaps C (for C = A B + C, use beta = 1)");
  }
}

inline void check(matrix_view<const float> A, index_t k, index_t n, matrix_view<float> C, const gemm_options& opt) {
  check_shapes(A.rows(), A.cols(), k, n, C, opt);
  detail::require(!overlaps(A.data(), span_bytes(A), C.data(), span_bytes(C)), "gemm",
                  "C overlaps A (the output must not alias an input)");
}

// int32 sums of (u8 x s8) quads: 4 * 255 * 128 per group must not overflow
// over K / 4 groups.
template <class Wt>
void check_k(const gemm_weights<Wt>& B) {
  if constexpr (std::is_same_v<Wt, std::int8_t>)
    detail::require(B.groups() <= std::int64_t(INT32_MAX) / (4 * 255 * 128), "gemm", "K = ", B.rows(),
                    " is too long for int8 (at most 65792)");
}

// Per-call packing of an fp32 B into a reusable gemm_weights.
struct weights_access {
  static gemm_weights<float> empty() { return {}; }
  static void repack(gemm_weights<float>& w, matrix_view<const float> b, thread_team& team) {
    w.reshape(b.rows(), b.cols());
    const index_t panels = w.panels();
    const auto code = [&](index_t k, index_t n) { return b(k, n); };
    if (team.size() == 1 || b.rows() * b.cols() < (index_t(1) << 16)) w.write_panels(code, 0, panels);
    else team.run([&](int m) { w.write_panels(code, panels * m / team.size(), panels * (m + 1) / team.size()); });
  }
};

}  // namespace detail::gemm

/// C = epilogue(alpha A B + beta C) + residual, with A (M x K), B packed
/// (K x N) and C (M x N), on every member of the team. The epilogue is a VXM
/// stage (tstream/units/vxm.hpp) applied along each row of C, lane j being
/// column `first + j`, e.g. vxm::then(vxm::add(mem::read(bias)), vxm::silu{}).
/// Throws tstream::error, writing nothing, on mismatched shapes, C
/// overlapping A or the residual, an array the epilogue streams (mem::read)
/// that does not hold N elements or overlaps C, or an int8 K over 65792.
template <gemm_weight_type Wt, class Epilogue = vxm::identity>
  requires stage_for<Epilogue, vec<float>>
void gemm(thread_team& team, matrix_view<const float> A, const gemm_weights<Wt>& B, matrix_view<float> C,
          Epilogue epilogue = {}, gemm_options opt = {}) {
  detail::gemm::check(A, B.rows(), B.cols(), C, opt);
  detail::gemm::check_k(B);
  detail::check_epilogue_reads(epilogue, std::size_t(C.cols()), C.data(), detail::span_bytes(C), "gemm", "C");
  if (C.empty()) return;
  detail::gemm::run(team, A, B, C, epilogue, opt);
}

/// The same with A prepared once (gemm_activations<Wt>, for GEMMs that
/// share A): C is bitwise what the fp32 A gives above, without converting
/// A again. Throws tstream::error, writing nothing, on mismatched shapes, C
/// overlapping the residual, an epilogue array as above, or an int8 K over
/// 65792.
template <gemm_weight_type Wt, class Epilogue = vxm::identity>
  requires stage_for<Epilogue, vec<float>>
void gemm(thread_team& team, const gemm_activations<Wt>& A, const gemm_weights<Wt>& B, matrix_view<float> C,
          Epilogue epilogue = {}, gemm_options opt = {}) {
  detail::gemm::check_shapes(A.rows(), A.cols(), B.rows(), B.cols(), C, opt);
  detail::gemm::check_k(B);
  detail::check_epilogue_reads(epilogue, std::size_t(C.cols()), C.data(), detail::span_bytes(C), "gemm", "C");
  if (C.empty()) return;
  detail::gemm::run(team, matrix_view<const float>{}, B, C, epilogue, opt, &A);
}

namespace detail::gemm {
inline void check_bias(std::span<const float> bias, index_t n, matrix_view<float> C) {
  detail::require(index_t(bias.size()) == n, "gemm", "bias has ", bias.size(), " elements, B has N = ", n);
  detail::require(bias.data() != nullptr || bias.empty(), "gemm", "bias is null");
  detail::require(!overlaps(bias.data(), bias.size_bytes(), C.data(), span_bytes(C)), "gemm", "bias overlaps C");
}
}  // namespace detail::gemm

/// C = A B + bias (bias has N elements), then opt's beta and residual.
template <gemm_weight_type Wt>
void gemm(thread_team& team, matrix_view<const float> A, const gemm_weights<Wt>& B, matrix_view<float> C,
          std::span<const float> bias, gemm_options opt = {}) {
  detail::gemm::check_bias(bias, B.cols(), C);
  gemm(team, A, B, C, vxm::add(mem::read(bias)), opt);
}

/// The same with A prepared (gemm_activations<Wt>).
template <gemm_weight_type Wt>
void gemm(thread_team& team, const gemm_activations<Wt>& A, const gemm_weights<Wt>& B, matrix_view<float> C,
          std::span<const float> bias, gemm_options opt = {}) {
  detail::gemm::check_bias(bias, B.cols(), C);
  gemm(team, A, B, C, vxm::add(mem::read(bias)), opt);
}

/// The same with fp32 B (K x N, row-major, any ld) unpacked: packs it into
/// this thread's reusable buffer on every call (on the team), then runs as
/// above; bitwise identical to packing once. For weights used more than
/// once, pack them once with gemm_weights<float>.
template <class Epilogue = vxm::identity>
  requires stage_for<Epilogue, vec<float>>
void gemm(thread_team& team, matrix_view<const float> A, matrix_view<const float> B, matrix_view<float> C,
          Epilogue epilogue = {}, gemm_options opt = {}) {
  detail::require(B.rows() >= 1, "gemm", "B has K = ", B.rows(), " rows (K must be at least 1)");
  detail::gemm::check(A, B.rows(), B.cols(), C, opt);
  detail::require(!detail::overlaps(B.data(), detail::span_bytes(B), C.data(), detail::span_bytes(C)),
                  "gemm", "C overlaps B (the output must not alias an input)");
  detail::check_epilogue_reads(epilogue, std::size_t(C.cols()), C.data(), detail::span_bytes(C), "gemm", "C");
  if (C.empty()) return;
  thread_local gemm_weights<float> packed = detail::gemm::weights_access::empty();
  detail::gemm::weights_access::repack(packed, B, team);
  detail::gemm::run(team, A, packed, C, epilogue, opt);
}

}  // namespace tstream
