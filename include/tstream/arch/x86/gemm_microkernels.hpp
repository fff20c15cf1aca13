// The MXM's GEMM micro-kernels: a register tile of C updated by one k-group
// of A and B at a time. The only per-ISA piece of the GEMM; the blocking
// around it (kernels/gemm/) is portable.
//
// Tile (MR x NR, NR = 2 registers of fp32):
//   AVX-512  14 x 32: 28 accumulators + 2 B registers + 1 broadcast = 31/32 zmm
//   AVX2      6 x 16: 12 accumulators + 2 B registers + 1 broadcast = 15/16 ymm
//
// An atom says how one k-group meets the accumulators (CuTe's "Op"):
//   gemm_atom_f32   fp32 A x fp32 B, one FMA per k               (group 1)
//   gemm_atom_bf16  bf16 pairs x bf16 pairs into fp32, vdpbf16ps  (group 2)
//   gemm_atom_i8    u8 quads x s8 quads into int32, vpdpbusd      (group 4)
// The dot atoms run the same arithmetic in portable code where the build
// lacks the instruction (dot_products.hpp), so every build gives the bits it
// documents.
//
// B is a packed micro-panel: per k-group, NR columns x group values, each
// column's group in one 32-bit lane (128 bytes per group for every type on
// AVX-512). A is read either packed (per k-group, MR rows of one 32-bit
// word) or directly from row-major rows `lda` words apart, packing it on the
// way for the tiles that follow.
//
// Every C element is one chain of atom steps in k order, whatever tile,
// row count or packing computed it: the result of a micro-kernel never
// depends on where its tile sits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "tstream/arch/simd.hpp"
#include "tstream/arch/x86/dot_products.hpp"

namespace tstream::arch {

/// Rows of the register tile (broadcast A elements per k-group).
inline constexpr std::size_t gemm_mr =
#if defined(__AVX512F__)
    width<float> == 16 ? 14 : 6;
#else
    6;
#endif

/// Columns of the register tile: two fp32 registers.
inline constexpr std::size_t gemm_nr = 2 * width<float>;

/// fp32 x fp32 into fp32: acc + a b, fused.
struct gemm_atom_f32 {
  using a_type = float;          // one A element per k
  using b_storage = float;
  using operand = batch<float>;
  using acc_type = batch<float>;
  static constexpr std::size_t group = 1;
  [[nodiscard]] static operand a_operand(const a_type* p) noexcept { return operand(*p); }
  [[nodiscard]] static operand b_operand(const b_storage* p, std::size_t j) noexcept {
    return operand::load_unaligned(p + width<float> * j);
  }
  [[nodiscard]] static acc_type step(const acc_type& acc, const operand& a, const operand& b) noexcept {
    return arch::fma(a, b, acc);
  }
};

/// bf16 pairs x bf16 pairs into fp32 (vdpbf16ps: the odd product first).
struct gemm_atom_bf16 {
  using a_type = std::uint32_t;  // two bf16 of A, the even k low
  using b_storage = std::uint16_t;
  using operand = batch<std::int32_t>;
  using acc_type = batch<float>;
  static constexpr std::size_t group = 2;
  [[nodiscard]] static operand a_operand(const a_type* p) noexcept { return operand(static_cast<std::int32_t>(*p)); }
  [[nodiscard]] static operand b_operand(const b_storage* p, std::size_t j) noexcept { return load_lanes(p, j); }
  [[nodiscard]] static acc_type step(const acc_type& acc, const operand& a, const operand& b) noexcept {
    return dot_bf16_pairs(acc, b, a);
  }
};

/// u8 quads (A) x s8 quads (B) into int32 (vpdpbusd), exact.
struct gemm_atom_i8 {
  using a_type = std::uint32_t;  // four u8 codes of A, k = 4g + byte
  using b_storage = std::int8_t;
  using operand = batch<std::int32_t>;
  using acc_type = batch<std::int32_t>;
  static constexpr std::size_t group = 4;
  [[nodiscard]] static operand a_operand(const a_type* p) noexcept { return operand(static_cast<std::int32_t>(*p)); }
  [[nodiscard]] static operand b_operand(const b_storage* p, std::size_t j) noexcept { return load_lanes(p, j); }
  [[nodiscard]] static acc_type step(const acc_type& acc, const operand& a, const operand& b) noexcept {
    return dot_u8s8_quads(acc, a, b);
  }
};

/// Accumulator registers per tile row.
inline constexpr std::size_t gemm_tile_regs = gemm_nr / width<float>;

/// The micro-kernel: acc (Rows x NR) starts at zero, or at `start` (Rows x
/// NR values, row-major) when start is non-null, then takes `groups`
/// k-groups of A and B; a copy of finish (so Finish must be copyable, its
/// operator() const) then receives each accumulator register by value,
/// fin.template operator()<r, j>(acc[r][j]), r and j known at compile
/// time. (Handed the array, GCC stored the whole tile to the stack and
/// loaded it back; with the finish's own reloads that was about a fifth of
/// an int8 GEMM at 256^3.)
///   PackedA: A at a + g * gemm_mr + r; else at a + r * lda + g, each value
///   also written to pack_to + g * gemm_mr + r (so pack_to must then be
///   non-null; it is unused with PackedA): the packed micro-panel, made
///   by the first tile that reads it (its broadcasts already load every
///   value; one scalar store each rides along on ports the FMAs leave idle).
///   b: the micro-panel at the first group (gemm_nr * group values per group).
///   pf, pf_lines: a stream prefetched into L2 alongside, pf_lines (0, 1
///   or 2) cache lines per k-group from pf on (the next tile's operands).
template <class Atom, std::size_t Rows, bool PackedA, class Finish>
inline void gemm_microkernel(const typename Atom::a_type* a, std::ptrdiff_t lda, const typename Atom::b_storage* b,
                             std::ptrdiff_t groups, const typename Atom::acc_type::value_type* start,
                             Finish&& finish, const char* pf = nullptr, int pf_lines = 0,
                             typename Atom::a_type* pack_to = nullptr) noexcept {
  static_assert(Rows >= 1 && Rows <= gemm_mr, "tstream::arch::gemm_microkernel: Rows must be in [1, gemm_mr]");
  using acc_t = typename Atom::acc_type;
  constexpr std::size_t J = gemm_tile_regs, W = width<float>;
  constexpr std::ptrdiff_t b_step = std::ptrdiff_t(gemm_nr * Atom::group);
  // Raw registers in the loop: GCC 12 spills xsimd's int32 batches held
  // across vpdpbusd, not the bare __m512i.
  using reg_t = typename acc_t::register_type;
  reg_t acc[Rows][J];
  [&]<std::size_t... r>(std::index_sequence<r...>) {
    (
        [&] {
          for (std::size_t j = 0; j < J; ++j)
            acc[r][j] = start ? reg_t(acc_t::load_unaligned(start + r * gemm_nr + j * W)) : reg_t(acc_t(0));
        }(),
        ...);
  }(std::make_index_sequence<Rows>{});

  for (std::ptrdiff_t g = 0; g < groups; ++g) {
    if (pf_lines > 0) {
      prefetch_l2(pf);
      if (pf_lines > 1) prefetch_l2(pf + 64);
      pf += 64 * pf_lines;
    }
    typename Atom::operand bj[J];
    for (std::size_t j = 0; j < J; ++j) {
      bj[j] = Atom::b_operand(b, j);
      keep_in_register(bj[j]);  // one load feeds Rows steps
    }
    [&]<std::size_t... r>(std::index_sequence<r...>) {
      (
          [&] {
            auto ar = Atom::a_operand(PackedA ? a + r : a + std::ptrdiff_t(r) * lda);
            if constexpr (!PackedA) {
              keep_in_register(ar);  // else GCC loads the scalar, then broadcasts it on a vector port
              store_first_lane(pack_to + r, ar);
            }
            for (std::size_t j = 0; j < J; ++j) acc[r][j] = reg_t(Atom::step(acc_t(acc[r][j]), ar, bj[j]));
          }(),
          ...);
    }(std::make_index_sequence<Rows>{});
    b += b_step;
    a += PackedA ? std::ptrdiff_t(gemm_mr) : 1;
    if constexpr (!PackedA) pack_to += gemm_mr;
  }
  // A local copy: its fields stay in registers between the stores to C
  // (which may alias the caller's object, so each would be reloaded).
  const std::remove_cvref_t<Finish> fin = finish;
  [&]<std::size_t... i>(std::index_sequence<i...>) {
    (fin.template operator()<i / J, i % J>(acc_t(acc[i / J][i % J])), ...);
  }(std::make_index_sequence<Rows * J>{});
}


/// Deals `rows` (<= gemm_mr) rows of 32-bit words into a packed A
/// micro-panel: dst[g * gemm_mr + r] = src[r][g] for g in [g0, g1). Moves
/// words only (any 32-bit type); rows past `rows` may receive any value.
/// AVX-512: 16 k-groups at a time through a 16 x 16 register transpose and
/// 16 masked stores (the scalar deal ran at ~4 cycles a word, 5% of a
/// 1024^3 fp32 GEMM).
template <class T>
inline void gemm_deal_a(const T* const* src, std::size_t rows, std::ptrdiff_t g0, std::ptrdiff_t g1, T* dst) noexcept {
  static_assert(sizeof(T) == 4, "tstream::arch::gemm_deal_a: 32-bit words");
  std::ptrdiff_t g = g0;
#if defined(__AVX512F__)
  if constexpr (gemm_mr == 14) {
    const __mmask16 keep = __mmask16((1u << gemm_mr) - 1);
    for (; g + 16 <= g1; g += 16) {
      __m512 r[16], t[16];
      for (std::size_t i = 0; i < gemm_mr; ++i)
        r[i] = i < rows ? _mm512_loadu_ps(reinterpret_cast<const float*>(src[i] + g)) : _mm512_setzero_ps();
      r[14] = r[15] = _mm512_setzero_ps();
      for (std::size_t i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
      }
      for (std::size_t i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
      }
      for (std::size_t h = 0; h < 16; h += 8)
        for (std::size_t i = 0; i < 4; ++i) {
          t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
          t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
        }
      for (std::size_t i = 0; i < 8; ++i) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
      }
      // r[c] holds column g + c of every row.
      for (std::size_t c = 0; c < 16; ++c)
        _mm512_mask_storeu_ps(reinterpret_cast<float*>(dst + (g + std::ptrdiff_t(c)) * std::ptrdiff_t(gemm_mr)), keep, r[c]);
    }
  }
#endif
  for (; g < g1; ++g)
    for (std::size_t r = 0; r < rows; ++r) dst[g * std::ptrdiff_t(gemm_mr) + std::ptrdiff_t(r)] = src[r][g];
}

}  // namespace tstream::arch
