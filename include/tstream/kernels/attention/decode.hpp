// Decode attention as a stream pipeline: one new query token against a
// resident KV cache, flash-decoding style.
//
//   out[h] = softmax(scale * q[h] . K^T) V     for every query head h
//
// Grouped-query attention: query head h reads KV head h / (q_heads /
// kv_heads), and the query heads of a group share passes over their KV
// head's blocks, up to four heads a tile (two on AVX2), so K and V bytes are
// read once per tile of heads, not once per head.
//
// Per block of 64 positions and up to four query heads (MXM): the scores are
// 4 x 64 lanes in 16 registers, accumulated over head_dim with every K load
// shared by the heads (AVX2: up to two heads; two of them in two passes of
// 32 positions). Per page of 8 blocks (kv_cache.hpp), VXM: an online softmax
// in base 2 over the page's 512 scores (running max m and sum l per head,
// fp32, safe for large logits). MXM again: acc += p V over the page, with
// every V load shared by the heads (AVX2, two heads: 32 dims a pass).
//
// The split: the context is cut into fixed chunks of 1024 positions (two
// pages; a plan constant, never L / threads); (KV head, chunk) work items
// are spread over the team; partial (m, l, acc) results merge in chunk
// order. So the output is bitwise identical for any thread count.
//
// NaN and infinity follow IEEE arithmetic: a NaN in q, K or V makes the
// affected heads' outputs NaN; an infinite logit of +inf gives NaN, one of
// -inf just weighs 0; an infinite V gives +-inf (or NaN where infinities of
// both signs meet). Values outside the attended positions never reach the
// output (the fp32 V pass skips them; the bf16 pass masks them; int8 cannot
// hold non-finite values). int8 fast: where q's scale times a position's K
// scale exceeds fp32 it is held at FLT_MAX, so a code sum of 0 is a logit of
// 0 (not NaN) and +-1 a logit of +-FLT_MAX. int8 exact, tiles of one or two
// heads (top_byte_codes below): a code sum q . code past 2^104 overflows to
// +-inf, and V values from 2^94 on can make the output +-inf or NaN
// (docs/bad-input.md).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "tstream/arch/cache.hpp"
#include "tstream/arch/simd.hpp"
#include "tstream/arch/x86/dot_products.hpp"
#include "tstream/core/buffer.hpp"
#include "tstream/core/error.hpp"
#include "tstream/core/math.hpp"
#include "tstream/kernels/attention/kv_cache.hpp"
#include "tstream/runtime/thread_team.hpp"

namespace tstream {

/// Options of decode attention.
struct decode_options {
  /// Logit scale; 0 means 1 / sqrt(head_dim).
  float scale = 0.f;
  /// Sliding window: attend to the last `window` positions only; 0 = all.
  index_t window = 0;
  /// exact: the stored K and V widened to fp32, fp32 queries and
  /// probabilities. fast (bf16, int8 KV): the query rounded to bf16 or
  /// quantized per head to 8 bits, the exponentials by exp2_fast (1.1e-4
  /// relative), the probabilities of each block rounded to bf16 or quantized
  /// to 8 bits, and vdpbf16ps / vpdpbusd.
  precision mode = precision::exact;
};

namespace detail::attn {

using fbatch = arch::batch<float>;
using ibatch = arch::batch<std::int32_t>;
inline constexpr std::size_t W = fbatch::size;
inline constexpr index_t block = kv_cache<float>::block;
inline constexpr index_t page = kv_cache<float>::page;
inline constexpr index_t page_blocks = kv_cache<float>::page_blocks;
inline constexpr std::size_t R = std::size_t(block) / W;  // registers per row of 64 scores
static_assert(std::size_t(block) % W == 0, "a block of positions must be whole registers");
// Accumulators a tile holds: 16 of 32 registers on AVX-512, 8 of 16 on AVX2
// (the rest hold K or V, the broadcast queries or probabilities).
inline constexpr std::size_t tile_accumulators = arch::accumulator_registers >= 16 ? 16 : 8;
// Query heads per tile (the heads of a group share each K and V load), each
// with at least four accumulators: four heads on AVX-512, two on AVX2.
inline constexpr std::size_t min_head_accumulators = 4;
inline constexpr std::size_t heads_per_tile = std::clamp<std::size_t>(tile_accumulators / min_head_accumulators, 1, 4);
// Registers of head_dim per V slice.
inline constexpr std::size_t dim_regs = std::size_t(kv_cache<float>::value_slice) / W;
// A tile of H heads takes a block's R score registers, and a V slice's
// dim_regs, in passes of this many per head: one pass on AVX-512 (4 x 4), and
// on AVX2 for one head (1 x 8); two for two heads on AVX2 (2 x 4, each pass
// over half of every row). Built for AVX2, one Zen 4 core, GQA (four heads a
// group, head_dim 128), us per token, one head per tile (one pass; each KV
// head's K and V read four times) -> two:
//              fp32         bf16        int8        bf16 fast   int8 fast
//   L = 512    218 -> 132   119 -> 98   155 -> 133  127 -> 112  187 -> 150
//   L = 4096   2288 -> 2164 1117 -> 824 1240 -> 1030 1184 -> 949 1512 -> 1178
//   L = 16384  9541 -> 9430 4924 -> 3889 6038 -> 4919 5324 -> 5484 6167 -> 5374
// and on two threads at L = 512 / 16384 (bench, alternated): fp32 124 -> 66 /
// 5725-5988 -> 6031-7198, bf16 69 -> 50 / 3514 -> 2375, int8 83 -> 68 /
// 3097 -> 2900. The losses: fp32 from DRAM on two threads (up to 1.26x
// slower; neither tiling overlaps its FMAs with the stream there, about 14
// GB/s a core either way) and bf16 fast from DRAM on one (1.03x).
// Four heads in four passes: fp32 93 and 805 us at L = 512 and 4096, but
// 15397 at 16384 (each pass reads a quarter of every row from DRAM, strided),
// and bf16 and the fast modes slower everywhere; prefetching the rest of each
// row in the first pass cost more than it saved.
template <std::size_t H>
inline constexpr std::size_t score_regs = std::bit_floor(std::min(R, tile_accumulators / H));
template <std::size_t H>
inline constexpr std::size_t value_regs = std::bit_floor(std::min(dim_regs, tile_accumulators / H));
// Software prefetch into L2 ahead of the stream (bytes; 0 = none), chosen
// per CPU vendor, since the same code measures in opposite directions (one
// machine of each measured; other cores of a vendor take its choice
// untested).
// Intel (a 2-vCPU Xeon with AMX, 15 GB/s a core beyond L2; L = 16384,
// in-process, alternated, medians; distances tried 1-16 KiB):
//   2 KiB for every tile but bf16 GQA: its hardware prefetcher keeps too few
//     lines in flight once a tile does several operations per loaded line.
//     fp32 GQA 10.6 -> 15.8 GB/s (20 -> 30 on two threads, the plain read's
//     speed); fp32 MHA 14.5 -> 17; int8 exact 7.9 -> 12.4 (GQA), 9.5 -> 12.8
//     (MHA); bf16 MHA 14.0 -> 15.3; int8 fast about even. 4-16 KiB ahead
//     helps these less (fp32 GQA 13.6-13.9). A plain fp32 stream with 16 FMAs
//     per 4 lines and nothing else shows the same (10.7 -> 17.4 GB/s).
//   16 KiB for bf16 GQA tiles (exact 12.0 -> 18.5, two threads 31.7 -> 50;
//     fast two threads 27 -> 43; 2 KiB gets 14 and 37).
// AMD (Zen 4, 26-30 GB/s a core from DRAM; L = 8192-16384, 1 thread):
//   none, but 16 KiB for the exact bf16 GQA tile (4 heads, widening: ~10%).
//   fp32 with 4 or 16 KiB ahead ran at 0.72-0.78x of none; bf16 MHA and the
//   fast modes slower with it too; int8 MHA fast 0.68 of the bandwidth with
//   it against 0.86 without.
//   64 KiB for fp32 tiles of several heads when all the K and V a run
//   reads fit in the L3 (in_l3). Our reading, which these figures bear
//   out but nothing measures directly: there the tile is compute-bound on
//   the lines the L3 still holds and memory-bound on the ones it lost to
//   DRAM, and without help the two take turns; far enough ahead, the
//   prefetches of the lost lines overlap the FMAs. GQA (4 heads, head_dim 128), in
//   one process, alternated, medians: 24 MiB (L = 3072) 39-41 -> 44-50
//   GB/s, two threads 71-88 -> 97-99; 32 MiB (L = 4096) 30-36 -> 40-46, two
//   threads 44-64 -> 72-85; 16 MiB and under even; 1-4 KiB ahead were
//   slower (24-30 against 30-41 at 24-32 MiB), 32 KiB like 64. Past the
//   L3 it costs (48 MiB: 33 -> 25; 128 MiB: 27 -> 20), as it does for one
//   head (MHA at 16 MiB: 67-72 -> 53-61); bf16 and int8 tiles at 8-32 MiB
//   came out even, so they keep the choices above.
template <kv_type T>
[[nodiscard]] inline std::size_t prefetch_ahead(precision mode, std::size_t heads, bool in_l3) noexcept {
  const bool intel = arch::runtime_vendor() == arch::cpu_vendor::intel;
  if (std::is_same_v<T, bf16> && heads > 1 && (intel || mode == precision::exact)) return 16384;
  if (intel) return 2048;
  return std::is_same_v<T, float> && heads > 1 && in_l3 ? 65536 : 0;
}

template <class S>
inline void prefetch_lines(const S* p, std::size_t bytes, std::size_t ahead) noexcept {
  if (ahead == 0) return;
  // An address, not a pointer into the array: it may lie past the cache's
  // end (a prefetch never faults, and nothing reads it).
  const std::uintptr_t c = reinterpret_cast<std::uintptr_t>(p) + ahead;
  for (std::size_t off = 0; off < bytes; off += 64) arch::prefetch_l2(reinterpret_cast<const void*>(c + off));
}

// The query heads of one tile, as each format wants them.
struct query_tile {
  const float* q;              // H rows of head_dim, fp32
  const std::uint32_t* packed; // fast modes: H rows of head_dim / G dwords (bf16 pairs, u8 quads)
  const float* scale;          // int8 fast: per head, q ~= scale * (code)
};

// The probabilities of one page for a tile, as the values step wants them,
// with the rescale of the running sums that goes before them. Only the
// blocks that hold attended positions are filled.
struct prob_tile {
  alignas(64) float p[4][page];                   // the logits, then (exact, and int8 fast as scratch) 2^(logit - m), times the V scale for int8
  alignas(64) std::uint32_t packed[4][page / 2];  // fast: bf16 pairs or u8 quads
  float scale[page_blocks][4];                    // int8 fast, per block: p ~= scale * (code)
  float alpha[4];                                 // acc = alpha acc + p V
  index_t lo, hi;                                 // the page's attended positions
};

// A KV format: how a block's K^T meets the queries and a page's V the
// probabilities. One per (stored type, precision).
//   scores<H, R0, RN>(cache, pg, j, qt, s, ahead)
//                                   s[h][r] = q_h . K(position) for the positions of block j
//                                   in registers r of [R0, R0 + RN)
//   probs(cache, pg, pt, h, m)      turns head h's base-2 logits in pt.p into
//                                   what values() reads (page_exps below);
//                                   returns the sum of their 2^(t - m)
//   values<H, C>(cache, pg, d0, pt, acc, ahead)
//                                   acc = pt.alpha acc + p V over the C registers of dims
//                                   from d0 (in one V slice), positions [pt.lo, pt.hi) of the page
//                                   (exact int8, top_byte_codes: 2^24 p V)
// (ahead: the software prefetch distance, prefetch_ahead above)
template <kv_type T, precision M>
struct kv_format;

// Where values<H, C>(.., d0, ..) reads: the V slice holding dim d0, from d0
// on (d0 may lie inside it: value_regs), and the slice's width ws (a row of
// its positions is ws x group elements).
template <kv_type T>
struct value_rows {
  const typename kv_cache<T>::storage* v;
  index_t ws;
  value_rows(const kv_cache<T>& kc, const std::byte* pg, index_t d0) noexcept {
    const index_t s0 = d0 - d0 % kv_cache<T>::value_slice;
    v = kc.values(pg) + s0 * page + (d0 - s0) * kv_cache<T>::group;
    ws = kc.slice_width(s0);
  }
};

// Shared driver of the V pass: o[h][c] starts at alpha_h acc, `step` adds
// one group of positions, the result goes back to acc.
template <std::size_t H, std::size_t C, class Step>
inline void values_pass(index_t g0, index_t g1, index_t d0, const prob_tile& pt, float* const* acc, Step step) noexcept {
  fbatch o[H][C];
  for (std::size_t h = 0; h < H; ++h)
    for (std::size_t c = 0; c < C; ++c) o[h][c] = fbatch::load_unaligned(acc[h] + d0 + index_t(c * W)) * fbatch(pt.alpha[h]);
  for (index_t g = g0; g < g1; ++g) step(g, o);
  for (std::size_t h = 0; h < H; ++h)
    for (std::size_t c = 0; c < C; ++c) o[h][c].store_unaligned(acc[h] + d0 + index_t(c * W));
}

// The exponentials of head h's attended blocks of the page, every register
// of each block in position order: e = 2^(t - m) from the logits t in pt.p
// (exactly 0 where masked; exp2_fast in the fast modes, whose probabilities
// are rounded right after), each handed to use(j, r, e) (block j, register
// r) while in a register, so a format converts it in the same pass. Returns
// the sum of the e.
template <precision M, class Use>
TSTREAM_ALWAYS_INLINE float page_exps(const prob_tile& pt, std::size_t h, float m, Use use) noexcept {
  fbatch sum(0.f);
  for (index_t j = pt.lo / block; j * block < pt.hi; ++j)
    for (std::size_t r = 0; r < R; ++r) {
      const fbatch t = fbatch::load_aligned(&pt.p[h][j * block + index_t(r * W)]) - fbatch(m);
      const fbatch e = M == precision::fast ? tstream::exp2_fast(t) : tstream::exp2(t);
      sum += e;
      use(j, r, e);
    }
  return xsimd::hadd(sum);
}

// page_exps writing each e back over its logit: the probabilities as the
// fp32 and exact bf16 values passes read them.
template <precision M>
TSTREAM_ALWAYS_INLINE float page_exps_in_place(prob_tile& pt, std::size_t h, float m) noexcept {
  return page_exps<M>(pt, h, m, [&](index_t j, std::size_t r, const fbatch& e) {
    e.store_aligned(&pt.p[h][j * block + index_t(r * W)]);
  });
}

template <precision M>
struct kv_format<float, M> {
  template <std::size_t H, std::size_t R0, std::size_t RN>
  static void scores(const kv_cache<float>& kc, const std::byte* pg, index_t j, const query_tile& qt,
                     fbatch (&s)[H][R], std::size_t ahead) noexcept {
    const float* kt = kc.keys(pg, j);
    const index_t dim = kc.head_dim();
    for (index_t d = 0; d < dim; ++d) {
      const float* row = kt + d * block;
      prefetch_lines(row + R0 * W, RN * W * 4, ahead);
      // The heads' q values held, one K register at a time: holding the
      // block's four K registers instead, GCC 12 spilled three of them to
      // the stack and read every FMA's operand back from there (Zen 4, GQA
      // at L = 512, one thread: 38-41 -> 47-52 GB/s, same bits).
      fbatch qb[H];
      for (std::size_t h = 0; h < H; ++h) {
        qb[h] = fbatch(qt.q[std::size_t(h) * std::size_t(dim) + std::size_t(d)]);
        arch::keep_in_register(qb[h]);
      }
      for (std::size_t r = R0; r < R0 + RN; ++r) {
        fbatch k = fbatch::load_unaligned(row + r * W);
        arch::keep_in_register(k);  // loaded once, used by every head (not folded into each FMA)
        for (std::size_t h = 0; h < H; ++h) s[h][r] = arch::fma(k, qb[h], s[h][r]);
      }
    }
  }
  static float probs(const kv_cache<float>&, const std::byte*, prob_tile& pt, std::size_t h, float m) noexcept {
    return page_exps_in_place<M>(pt, h, m);
  }
  template <std::size_t H, std::size_t C>
  static void values(const kv_cache<float>& kc, const std::byte* pg, index_t d0, const prob_tile& pt,
                     float* const* acc, std::size_t ahead) noexcept {
    const value_rows rows(kc, pg, d0);  // the slice: [position][ws]
    const auto* v = rows.v;
    const index_t ws = rows.ws;
    values_pass<H, C>(pt.lo, pt.hi, d0, pt, acc, [&](index_t pos, fbatch(&o)[H][C]) {
      prefetch_lines(v + pos * ws, C * W * 4, ahead);
      fbatch x[C];
      for (std::size_t c = 0; c < C; ++c) {
        x[c] = fbatch::load_unaligned(v + pos * ws + index_t(c * W));
        arch::keep_in_register(x[c]);
      }
      for (std::size_t h = 0; h < H; ++h) {
        const fbatch pb(pt.p[h][pos]);
        for (std::size_t c = 0; c < C; ++c) o[h][c] = arch::fma(x[c], pb, o[h][c]);
      }
    });
  }
};

// bf16: K^T as [d/2][position][2], V as [position/2][d][2].
template <precision M>
struct kv_format<bf16, M> {
  using S = std::uint16_t;
  template <std::size_t H, std::size_t R0, std::size_t RN>
  static void scores(const kv_cache<bf16>& kc, const std::byte* pg, index_t j, const query_tile& qt,
                     fbatch (&s)[H][R], std::size_t ahead) noexcept {
    const S* kt = kc.keys(pg, j);
    const index_t dim = kc.head_dim();
    for (index_t dp = 0; dp < dim / 2; ++dp) {
      const S* row = kt + dp * block * 2;
      prefetch_lines(row + R0 * W * 2, RN * W * 4, ahead);
      for (std::size_t r = R0; r < R0 + RN; ++r) {
        ibatch v = arch::load_lanes(row, r);  // 16 positions x (d even, d odd)
        arch::keep_in_register(v);
        if constexpr (M == precision::fast) {
          for (std::size_t h = 0; h < H; ++h)
            s[h][r] = arch::dot_bf16_pairs(s[h][r], v, ibatch(std::int32_t(qt.packed[h * std::size_t(dim / 2) + std::size_t(dp)])));
        } else {
          const fbatch even = arch::low_bf16(v), odd = arch::high_bf16(v);
          for (std::size_t h = 0; h < H; ++h) {
            const float* qh = qt.q + std::size_t(h) * std::size_t(dim) + std::size_t(2 * dp);
            s[h][r] = arch::fma(even, fbatch(qh[0]), s[h][r]);
            s[h][r] = arch::fma(odd, fbatch(qh[1]), s[h][r]);
          }
        }
      }
    }
  }
  static float probs(const kv_cache<bf16>&, const std::byte*, prob_tile& pt, std::size_t h, float m) noexcept {
    if constexpr (M == precision::exact) {
      return page_exps_in_place<M>(pt, h, m);
    } else {  // positions 2g and 2g + 1 as the low and high half of dword g
      return page_exps<M>(pt, h, m, [&](index_t j, std::size_t r, const fbatch& e) {
        arch::store_low_halves(reinterpret_cast<std::uint16_t*>(pt.packed[h]) + j * block + index_t(r * W),
                               arch::to_bf16_bits(e));
      });
    }
  }
  template <std::size_t H, std::size_t C>
  static void values(const kv_cache<bf16>& kc, const std::byte* pg, index_t d0, const prob_tile& pt,
                     float* const* acc, std::size_t ahead) noexcept {
    const index_t lo = pt.lo, hi = pt.hi;
    const value_rows rows(kc, pg, d0);  // the slice: [position / 2][ws][2]
    const auto* v = rows.v;
    const index_t ws = rows.ws;
    values_pass<H, C>(lo / 2, (hi + 1) / 2, d0, pt, acc, [&](index_t g, fbatch(&o)[H][C]) {
      const S* row = v + g * ws * 2;  // 16 dims x (position even, position odd) per register
      prefetch_lines(row, C * W * 4, ahead);
      // A pair straddling [lo, hi) has a position outside it: zero that half,
      // so a non-finite value there (outside a window, or stale past L)
      // cannot turn 0 x inf into NaN.
      const std::uint32_t keep = (2 * g >= lo ? 0x0000FFFFu : 0u) | (2 * g + 1 < hi ? 0xFFFF0000u : 0u);
      const ibatch keep_mask(static_cast<std::int32_t>(keep));
      for (std::size_t c = 0; c < C; ++c) {
        ibatch x = arch::load_lanes(row, c) & keep_mask;
        arch::keep_in_register(x);
        if constexpr (M == precision::fast) {
          for (std::size_t h = 0; h < H; ++h) o[h][c] = arch::dot_bf16_pairs(o[h][c], x, ibatch(std::int32_t(pt.packed[h][g])));
        } else {
          const fbatch even = arch::low_bf16(x), odd = arch::high_bf16(x);
          for (std::size_t h = 0; h < H; ++h) {
            o[h][c] = arch::fma(even, fbatch(pt.p[h][2 * g]), o[h][c]);
            o[h][c] = arch::fma(odd, fbatch(pt.p[h][2 * g + 1]), o[h][c]);
          }
        }
      }
    });
  }
};

// Exact int8 tiles of one or two query heads convert each code from the top
// byte of its lane (arch::byte_to_top: one shuffle where sign extension takes
// two shifts), as 2^24 times the code, so their score and V sums are 2^24
// times the unscaled ones, rounded alike; the 2^24 comes out exactly, from
// each block's scores before the K scale and from the V sums at the end of
// each chunk (run_pages). The cost is range: a score sum past 2^104
// overflows, and so can the V sums of a chunk (1024 positions) from |V| =
// 2^94 on. Zen 4, one core, L = 512, alternated: one head per tile (MHA)
// 205 -> 159 us, L = 16384 7000 -> 5610 us; two heads 60 -> 54 us. With
// three or four heads (AVX-512) the FMAs bound the tile and the shuffles'
// constants cost registers: 69 -> 70 and 84 -> 88 us, so those keep the
// shifts. Built for AVX2 (L = 512): one head 53 -> 39 us, two heads (the
// GQA tile there) 129 -> 129-131, even.
inline constexpr std::size_t top_byte_max_heads = 2;
template <kv_type T, precision M>
[[nodiscard]] constexpr bool top_byte_codes(std::size_t heads) noexcept {
  return std::is_same_v<T, std::int8_t> && M == precision::exact && heads <= top_byte_max_heads;
}
// Code B of each lane as fp32: 2^24 x code (Top) or the code.
template <int B, bool Top>
TSTREAM_ALWAYS_INLINE fbatch code_to_float(const ibatch& v) noexcept {
  if constexpr (Top) return xsimd::to_float(arch::byte_to_top<B>(v));
  else return xsimd::to_float(arch::signed_byte<B>(v));
}

// int8: K^T as [d/4][position][4], V as [position/4][d][4], per-position
// scales; fast mode offsets the u8 query codes by 128 and subtracts
// 128 x (sum of the position's K codes) exactly in int32.
template <precision M>
struct kv_format<std::int8_t, M> {
  using S = std::int8_t;
  template <std::size_t H>
  static constexpr bool top = top_byte_codes<std::int8_t, M>(H);  // codes as 2^24 x code
  template <std::size_t H, std::size_t R0, std::size_t RN>
  static void scores(const kv_cache<std::int8_t>& kc, const std::byte* pg, index_t j, const query_tile& qt,
                     fbatch (&s)[H][R], std::size_t ahead) noexcept {
    const S* kt = kc.keys(pg, j);
    const index_t dim = kc.head_dim();
    if constexpr (M == precision::fast) {
      ibatch si[H][RN];  // registers R0 .. R0 + RN of the block
      for (std::size_t h = 0; h < H; ++h)
        for (std::size_t r = 0; r < RN; ++r) si[h][r] = ibatch(0);
      for (index_t dq = 0; dq < dim / 4; ++dq) {
        const S* row = kt + dq * block * 4;
        prefetch_lines(row + R0 * W * 4, RN * W * 4, ahead);
        for (std::size_t r = R0; r < R0 + RN; ++r) {
          ibatch v = arch::load_lanes(row, r);  // 16 positions x 4 dims
          arch::keep_in_register(v);
          for (std::size_t h = 0; h < H; ++h)
            si[h][r - R0] = arch::dot_u8s8_quads(si[h][r - R0], ibatch(std::int32_t(qt.packed[h * std::size_t(dim / 4) + std::size_t(dq)])), v);
        }
      }
      for (std::size_t r = R0; r < R0 + RN; ++r) {
        const ibatch offset = ibatch::load_unaligned(kc.key_sums(pg, j) + r * W) * ibatch(128);
        const fbatch ks = fbatch::load_unaligned(kc.key_scales(pg, j) + r * W);
        for (std::size_t h = 0; h < H; ++h) s[h][r] = dequantize(xsimd::to_float(si[h][r - R0] - offset), ks, fbatch(qt.scale[h]));
      }
    } else {
      for (index_t dq = 0; dq < dim / 4; ++dq) {
        const S* row = kt + dq * block * 4;
        prefetch_lines(row + R0 * W * 4, RN * W * 4, ahead);
        for (std::size_t r = R0; r < R0 + RN; ++r) {
          ibatch v = arch::load_lanes(row, r);
          arch::keep_in_register(v);
          const fbatch k0 = code_to_float<0, top<H>>(v), k1 = code_to_float<1, top<H>>(v);
          const fbatch k2 = code_to_float<2, top<H>>(v), k3 = code_to_float<3, top<H>>(v);
          for (std::size_t h = 0; h < H; ++h) {
            const float* qh = qt.q + std::size_t(h) * std::size_t(dim) + std::size_t(4 * dq);
            s[h][r] = arch::fma(k0, fbatch(qh[0]), s[h][r]);
            s[h][r] = arch::fma(k1, fbatch(qh[1]), s[h][r]);
            s[h][r] = arch::fma(k2, fbatch(qh[2]), s[h][r]);
            s[h][r] = arch::fma(k3, fbatch(qh[3]), s[h][r]);
          }
        }
      }
      for (std::size_t r = R0; r < R0 + RN; ++r) {
        const fbatch ks = fbatch::load_unaligned(kc.key_scales(pg, j) + r * W);
        for (std::size_t h = 0; h < H; ++h) {
          if constexpr (top<H>) s[h][r] = s[h][r] * fbatch(arch::byte_to_top_scale);
          s[h][r] = s[h][r] * ks;
        }
      }
    }
  }
  // p' = 2^(t - m) times the position's V scale (folded in, so the values
  // pass multiplies by one number per position); the fast mode then codes
  // each block as u8 0..255 of p' / (its largest p' / 255), rounded to
  // nearest (a NaN p' gives 255), while the block is in L1.
  static float probs(const kv_cache<std::int8_t>& kc, const std::byte* pg, prob_tile& pt, std::size_t h,
                     float m) noexcept {
    fbatch mx(0.f);  // p' >= 0; a NaN p' is skipped here (as std::max would)
    return page_exps<M>(pt, h, m, [&](index_t j, std::size_t r, const fbatch& e) {
      float* p_blk = &pt.p[h][j * block];
      const fbatch p = e * fbatch::load_unaligned(kc.value_scales(pg, j) + r * W);
      p.store_aligned(p_blk + r * W);
      if constexpr (M == precision::fast) {
        mx = xsimd::select(p > mx, p, mx);
        if (r + 1 < R) return;
        const float top = arch::reduce_max(mx);
        mx = fbatch(0.f);
        const float inv = inverse_scale(top, 255.f);
        pt.scale[j][h] = inv > 0 ? top / 255.f : 0.f;
        // little-endian: byte b of dword g is position 4g + b
        auto* codes = reinterpret_cast<std::uint8_t*>(pt.packed[h]) + j * block;
        for (std::size_t i = 0; i < R; ++i)
          arch::store_u8_codes(codes + i * W, fbatch::load_aligned(p_blk + i * W) * fbatch(inv));
      }
    });
  }
  template <std::size_t H, std::size_t C>
  static void values(const kv_cache<std::int8_t>& kc, const std::byte* pg, index_t d0, const prob_tile& pt,
                     float* const* acc, std::size_t ahead) noexcept {
    const index_t lo = pt.lo, hi = pt.hi;
    const value_rows rows(kc, pg, d0);  // the slice: [position / 4][ws][4]
    const auto* v = rows.v;
    const index_t ws = rows.ws;
    const index_t g0 = lo / 4, g1 = (hi + 3) / 4;
    if constexpr (M == precision::fast) {
      // int32 sums per block (each block has its own probability scale).
      for (index_t j = lo / block; j * block < hi; ++j) {
        ibatch oi[H][C];
        for (std::size_t h = 0; h < H; ++h)
          for (std::size_t c = 0; c < C; ++c) oi[h][c] = ibatch(0);
        for (index_t g = std::max(g0, j * (block / 4)); g < std::min(g1, (j + 1) * (block / 4)); ++g) {
          const S* row = v + g * ws * 4;  // 16 dims x 4 positions per register
          prefetch_lines(row, C * W * 4, ahead);
          for (std::size_t c = 0; c < C; ++c) {
            ibatch x = arch::load_lanes(row, c);
            arch::keep_in_register(x);
            for (std::size_t h = 0; h < H; ++h) oi[h][c] = arch::dot_u8s8_quads(oi[h][c], ibatch(std::int32_t(pt.packed[h][g])), x);
          }
        }
        const bool first = j == lo / block;
        for (std::size_t h = 0; h < H; ++h)
          for (std::size_t c = 0; c < C; ++c) {
            float* a = acc[h] + d0 + index_t(c * W);
            const fbatch o = first ? fbatch::load_unaligned(a) * fbatch(pt.alpha[h]) : fbatch::load_unaligned(a);
            arch::fma(xsimd::to_float(oi[h][c]), fbatch(pt.scale[j][h]), o).store_unaligned(a);
          }
      }
    } else {
      values_pass<H, C>(g0, g1, d0, pt, acc, [&](index_t g, fbatch(&o)[H][C]) {
        const S* row = v + g * ws * 4;
        prefetch_lines(row, C * W * 4, ahead);
        for (std::size_t c = 0; c < C; ++c) {
          ibatch x = arch::load_lanes(row, c);
          arch::keep_in_register(x);
          const fbatch x0 = code_to_float<0, top<H>>(x), x1 = code_to_float<1, top<H>>(x);
          const fbatch x2 = code_to_float<2, top<H>>(x), x3 = code_to_float<3, top<H>>(x);
          for (std::size_t h = 0; h < H; ++h) {
            const float* ph = &pt.p[h][4 * g];
            o[h][c] = arch::fma(x0, fbatch(ph[0]), o[h][c]);
            o[h][c] = arch::fma(x1, fbatch(ph[1]), o[h][c]);
            o[h][c] = arch::fma(x2, fbatch(ph[2]), o[h][c]);
            o[h][c] = arch::fma(x3, fbatch(ph[3]), o[h][c]);
          }
        }
      });
    }
  }
};

// acc over all of head_dim, in passes of value_regs<H> registers (the last
// may be narrower), each inside one V slice.
template <class F, std::size_t H, kv_type T>
inline void values_all(const kv_cache<T>& kc, const std::byte* pg, const prob_tile& pt, float* const* acc,
                       std::size_t ahead) noexcept {
  const index_t dim = kc.head_dim();
  constexpr std::size_t CN = value_regs<H>;
  constexpr index_t step = index_t(CN * W);
  static_assert(kv_cache<T>::value_slice % step == 0, "a values pass stays inside one V slice");
  index_t d0 = 0;
  for (; d0 + step <= dim; d0 += step) F::template values<H, CN>(kc, pg, d0, pt, acc, ahead);
  const std::size_t rest = std::size_t(dim - d0) / W;  // head_dim is a multiple of 16, so of W
  [&]<std::size_t... C>(std::index_sequence<C...>) {
    ((rest == C + 1 ? F::template values<H, C + 1>(kc, pg, d0, pt, acc, ahead) : void()), ...);
  }(std::make_index_sequence<CN - 1>{});
}

// The running state of one query head over one chunk.
struct head_state {
  float m;    // running max of the base-2 logits
  float l;    // running sum of 2^(logit - m)
  float* acc; // head_dim running sum of 2^(logit - m) v (2^24 times it in
              // top-byte tiles until the end of run_pages)
};

// Scores (MXM) of the blocks of one page that hold positions [lo, hi), then
// one online-softmax step (VXM) over them for H query heads (a tile): fills
// pt and updates each head's running max and sum.
template <kv_type T, precision M, std::size_t H>
void softmax_page(const kv_cache<T>& kc, const std::byte* pg, index_t lo, index_t hi, const query_tile& qt, float c,
                  head_state* st, prob_tile& pt, std::size_t ahead) noexcept {
  using F = kv_format<T, M>;
  alignas(64) float lane_pos[W];
  for (std::size_t i = 0; i < W; ++i) lane_pos[i] = float(i);
  const fbatch iota = fbatch::load_aligned(lane_pos);
  const fbatch neg_inf(-std::numeric_limits<float>::infinity());
  pt.lo = lo;
  pt.hi = hi;
  const index_t j0 = lo / block, j1 = (hi + block - 1) / block;
  // Running max per head and lane, kept in memory rather than in four of the
  // registers the scores loop uses (no measured difference either way).
  alignas(64) float mx_lanes[H][W];
  for (std::size_t h = 0; h < H; ++h) neg_inf.store_aligned(mx_lanes[h]);
  for (index_t j = j0; j < j1; ++j) {
    fbatch s[H][R];
    for (std::size_t h = 0; h < H; ++h)
      for (std::size_t r = 0; r < R; ++r) s[h][r] = fbatch(0.f);
    constexpr std::size_t RN = score_regs<H>;
    static_assert(R % RN == 0, "the passes cover a block whole");
    [&]<std::size_t... P>(std::index_sequence<P...>) {
      (F::template scores<H, P * RN, RN>(kc, pg, j, qt, s, ahead), ...);
    }(std::make_index_sequence<R / RN>{});
    // Base-2 logits, masked outside [lo, hi) (only the first and last block
    // of a chunk can be partial).
    const index_t blo = std::max<index_t>(lo - j * block, 0), bhi = std::min<index_t>(hi - j * block, block);
    const bool full = blo == 0 && bhi == block;
    for (std::size_t h = 0; h < H; ++h) {
      fbatch mx = fbatch::load_aligned(mx_lanes[h]);
      for (std::size_t r = 0; r < R; ++r) {
        fbatch t = s[h][r] * fbatch(c);
        if (!full) {
          const fbatch pos = iota + fbatch(float(r * W));
          t = xsimd::select((pos >= fbatch(float(blo))) && (pos < fbatch(float(bhi))), t, neg_inf);
        }
        mx = xsimd::max(mx, t);
        t.store_aligned(&pt.p[h][j * block + index_t(r * W)]);
      }
      mx.store_aligned(mx_lanes[h]);
    }
  }
  for (std::size_t h = 0; h < H; ++h) {
    // Invariant: st.m is the max so far; m_new >= st.m, so alpha <= 1 and
    // every 2^(t - m_new) <= 1: no overflow whatever the logits.
    const float m_new = std::max(st[h].m, arch::reduce_max(fbatch::load_aligned(mx_lanes[h])));
    pt.alpha[h] = st[h].m == m_new ? 1.f : tstream::exp2(fbatch(st[h].m - m_new)).get(0);
    st[h].l = st[h].l * pt.alpha[h] + F::probs(kc, pg, pt, h, m_new);
    st[h].m = m_new;
  }
}

// Positions [plo, phi) of KV head kvh for one tile of H query heads, page by
// page, each page's K^T then V: the order they lie in memory, so the stream
// is sequential. (Issuing the next scores before this page's values breaks
// that order: with 64-position steps, 20-35% slower from DRAM. The softmax
// sits between the scores and the values once per page, not per block:
// each of its steps waits on the one before, and the stream stalled for it
// cost 9-11% of a GQA tile per 64 positions; independent FMAs of the same
// count cost nothing from DRAM.)
// in_l3: all the K and V a run reads fit in the L3 (prefetch_ahead).
template <kv_type T, precision M, std::size_t H>
void run_pages(const kv_cache<T>& kc, index_t kvh, index_t plo, index_t phi, const query_tile& qt, float c,
               head_state* st, bool in_l3) noexcept {
  using F = kv_format<T, M>;
  const std::size_t ahead = prefetch_ahead<T>(M, H, in_l3);
  float* accs[H];
  for (std::size_t h = 0; h < H; ++h) accs[h] = st[h].acc;
  prob_tile pt;
  for (index_t pi = plo / page; pi * page < phi; ++pi) {
    const std::byte* pg = kc.page_data(kvh, pi);
    softmax_page<T, M, H>(kc, pg, std::max<index_t>(plo - pi * page, 0), std::min<index_t>(phi - pi * page, page), qt,
                          c, st, pt, ahead);
    values_all<F, H>(kc, pg, pt, accs, ahead);
  }
  if constexpr (top_byte_codes<T, M>(H))  // the V sums' 2^24 out, exactly
    for (std::size_t h = 0; h < H; ++h)
      for (index_t d = 0; d < kc.head_dim(); ++d) accs[h][d] *= arch::byte_to_top_scale;
}

}  // namespace detail::attn

/// A decode-attention plan for one KV cache and query-head count: the chunk
/// split and the buffers for partial results, made once; run() replays it
/// for every token with no allocation. Bound to `cache` (which must outlive
/// it) and valid for any context length up to its capacity. One run() at a
/// time per plan.
template <kv_type T>
class decode_plan {
 public:
  /// Positions per work item: fixed, so the reduction order never depends
  /// on the thread count.
  static constexpr index_t chunk = 1024;
  static_assert(chunk % kv_cache<T>::page == 0, "a chunk is a whole number of pages");

  decode_plan(const kv_cache<T>& cache, index_t q_heads, decode_options opt = {})
      : cache_(&cache), q_heads_(q_heads), opt_(opt) {
    detail::require(q_heads >= 1 && q_heads % cache.kv_heads() == 0, "decode_plan", "q_heads = ", q_heads,
                    " is not a positive multiple of kv_heads = ", cache.kv_heads());
    detail::require(opt.window >= 0, "decode_plan", "window = ", opt.window, " is negative");
    detail::require(std::isfinite(opt.scale) && opt.scale >= 0.f, "decode_plan", "scale = ", opt.scale,
                    " is not a finite non-negative number");
    chunks_ = (cache.capacity() + chunk - 1) / chunk;
    const std::size_t per = std::size_t(cache.head_dim()) + 2;  // acc, m, l
    partial_ = aligned_buffer<float>(detail::checked_mul(
        detail::checked_mul(std::size_t(chunks_), std::size_t(q_heads), "decode_plan", "q_heads x chunks"), per,
        "decode_plan", "the partial-result buffer"));
    if (fast()) {
      packed_q_ = aligned_buffer<std::uint32_t>(std::size_t(q_heads * cache.head_dim() / group));
      q_scale_ = aligned_buffer<float>(std::size_t(q_heads));
    }
  }

  [[nodiscard]] index_t q_heads() const noexcept { return q_heads_; }           ///< query heads per run()
  [[nodiscard]] const kv_cache<T>& cache() const noexcept { return *cache_; }  ///< the cache it reads
  /// K and V bytes one run() reads at the cache's current length.
  [[nodiscard]] std::size_t bytes() const noexcept {
    const auto [lo, hi] = range();
    return cache_->bytes_for(hi - lo);
  }
  /// FLOPs of one run(): q.K and p.V, 2 x 2 x head_dim per position per query head.
  [[nodiscard]] double flops() const noexcept {
    const auto [lo, hi] = range();
    return 4.0 * double(q_heads_) * double(cache_->head_dim()) * double(hi - lo);
  }

  /// out = attention(q) over the cache's positions; q and out hold q_heads x
  /// head_dim values. Throws tstream::error, writing nothing, on bad sizes or
  /// an empty cache.
  void run(thread_team& team, std::span<const float> q, std::span<float> out) {
    const index_t dim = cache_->head_dim(), L = cache_->size();
    const std::size_t want = std::size_t(q_heads_ * dim);
    detail::require(q.size() == want, "attention_decode", "q has ", q.size(), " elements, expected q_heads x head_dim = ", want);
    detail::require(out.size() == want, "attention_decode", "out has ", out.size(), " elements, expected q_heads x head_dim = ", want);
    detail::require(q.data() != nullptr && out.data() != nullptr, "attention_decode", "q or out is null");
    detail::require(L >= 1, "attention_decode", "the KV cache is empty (L = 0)");
    detail::require(!detail::overlaps(q.data(), q.size_bytes(), out.data(), out.size_bytes()), "attention_decode",
                    "out overlaps q");

    const auto span_range = range();
    const index_t lo = span_range.first, hi = span_range.second;  // (captured below: no structured binding)
    const index_t c0 = lo / chunk, c1 = (hi + chunk - 1) / chunk;  // chunks touching [lo, hi)
    const index_t kvh = cache_->kv_heads(), group = q_heads_ / kvh, items = kvh * (c1 - c0);
    const float scale = (opt_.scale > 0.f ? opt_.scale : 1.f / std::sqrt(float(dim))) * 1.4426950408889634f;
    const std::size_t per = std::size_t(dim) + 2;
    float* partial = partial_.data();
    const int threads = team.size();
    if (fast()) pack_queries(q.data());
    const bool in_l3 = bytes() <= arch::caches().l3;  // where the stream comes from (prefetch_ahead)

    team.run([&](int m) {
      for (index_t it = index_t(m) * items / threads; it < index_t(m + 1) * items / threads; ++it) {
        const index_t h = it / (c1 - c0), c = c0 + it % (c1 - c0);
        const index_t plo = std::max(lo, c * chunk), phi = std::min(hi, (c + 1) * chunk);
        for (index_t g0 = 0; g0 < group; g0 += index_t(detail::attn::heads_per_tile)) {
          const index_t hq0 = h * group + g0, n = std::min<index_t>(index_t(detail::attn::heads_per_tile), group - g0);
          float* out_rows = partial + std::size_t(c * q_heads_ + hq0) * per;
          if (fast()) run_item<precision::fast>(h, plo, phi, q.data(), hq0, n, scale, in_l3, out_rows);
          else run_item<precision::exact>(h, plo, phi, q.data(), hq0, n, scale, in_l3, out_rows);
        }
      }
    });
    // Merge the chunks of each query head in chunk order.
    team.run([&](int m) {
      for (index_t h = index_t(m) * q_heads_ / threads; h < index_t(m + 1) * q_heads_ / threads; ++h) {
        float M = -std::numeric_limits<float>::infinity();
        for (index_t c = c0; c < c1; ++c) M = std::max(M, partial[std::size_t(c * q_heads_ + h) * per + std::size_t(dim)]);
        float Lsum = 0;
        float* o = out.data() + h * dim;
        std::fill(o, o + dim, 0.f);
        for (index_t c = c0; c < c1; ++c) {
          const float* pr = partial + std::size_t(c * q_heads_ + h) * per;
          const float f = pr[dim] == M ? 1.f : std::exp2(pr[dim] - M);
          Lsum = std::fma(pr[dim + 1], f, Lsum);
          for (index_t d = 0; d < dim; ++d) o[d] = std::fma(pr[d], f, o[d]);
        }
        const float inv = 1.f / Lsum;
        for (index_t d = 0; d < dim; ++d) o[d] *= inv;
      }
    });
  }

 private:
  // The positions attended to: [L - window, L) or [0, L).
  [[nodiscard]] std::pair<index_t, index_t> range() const noexcept {
    const index_t L = cache_->size();
    return {opt_.window > 0 ? std::max<index_t>(0, L - opt_.window) : 0, L};
  }

  static constexpr index_t group = kv_cache<T>::group;
  [[nodiscard]] bool fast() const noexcept { return opt_.mode == precision::fast && group > 1; }

  // Fast modes: each query head as bf16 pairs, or as u8 quads (code + 128)
  // with its scale max|q| / 127 (NaN if q has a non-finite value).
  void pack_queries(const float* q) {
    const index_t dim = cache_->head_dim(), words = dim / group;
    for (index_t h = 0; h < q_heads_; ++h) {
      const float* qh = q + h * dim;
      std::uint32_t* out = packed_q_.data() + h * words;
      if constexpr (group == 2) {
        detail::round_bf16(qh, dim, reinterpret_cast<std::uint16_t*>(out));  // little-endian: d = 2g in the low half
      } else {
        q_scale_[std::size_t(h)] = detail::quantize_activations(qh, dim, reinterpret_cast<std::uint8_t*>(out));
      }
    }
  }

  // Heads [hq0, hq0 + n) of KV head h over positions [plo, phi); writes their
  // partial (acc, m, l) rows at out (consecutive heads).
  template <precision M>
  void run_item(index_t h, index_t plo, index_t phi, const float* q, index_t hq0, index_t n, float scale, bool in_l3,
                float* out) const {
    using namespace detail::attn;
    const index_t dim = cache_->head_dim();
    const std::size_t per = std::size_t(dim) + 2;
    head_state st[heads_per_tile];
    for (index_t i = 0; i < n; ++i) {
      st[i] = {-std::numeric_limits<float>::infinity(), 0.f, out + std::size_t(i) * per};
      std::fill(st[i].acc, st[i].acc + dim, 0.f);
    }
    const query_tile qt{q + hq0 * dim, fast() ? packed_q_.data() + hq0 * (dim / group) : nullptr,
                        fast() ? q_scale_.data() + hq0 : nullptr};
    switch (n) {
      case 1: run_pages<T, M, 1>(*cache_, h, plo, phi, qt, scale, st, in_l3); break;
      case 2: if constexpr (heads_per_tile >= 2) run_pages<T, M, 2>(*cache_, h, plo, phi, qt, scale, st, in_l3); break;
      case 3: if constexpr (heads_per_tile >= 3) run_pages<T, M, 3>(*cache_, h, plo, phi, qt, scale, st, in_l3); break;
      default: if constexpr (heads_per_tile >= 4) run_pages<T, M, heads_per_tile>(*cache_, h, plo, phi, qt, scale, st, in_l3); break;
    }
    for (index_t i = 0; i < n; ++i) {
      out[std::size_t(i) * per + std::size_t(dim)] = st[i].m;
      out[std::size_t(i) * per + std::size_t(dim) + 1] = st[i].l;
    }
  }

  const kv_cache<T>* cache_;
  index_t q_heads_;
  decode_options opt_;
  index_t chunks_ = 0;
  aligned_buffer<float> partial_;
  aligned_buffer<std::uint32_t> packed_q_;  // fast modes: queries as the dot products take them
  aligned_buffer<float> q_scale_;           // int8 fast: per query head
};

/// One-shot decode attention: q_heads = q.size() / head_dim. Makes a plan
/// (allocating its buffers) on every call; a decode loop should keep a
/// decode_plan and call run().
template <kv_type T>
void attention_decode(thread_team& team, const kv_cache<T>& cache, std::span<const float> q, std::span<float> out,
                      decode_options opt = {}) {
  const index_t dim = cache.head_dim();
  detail::require(q.size() % std::size_t(dim) == 0, "attention_decode", "q has ", q.size(),
                  " elements, not a multiple of head_dim = ", dim);
  decode_plan<T> plan(cache, index_t(q.size()) / dim, opt);
  plan.run(team, q, out);
}

}  // namespace tstream
