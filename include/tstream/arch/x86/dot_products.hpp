// The dot-product instructions as single-register operations: vdpbf16ps
// (bf16 pairs into fp32) and vpdpbusd (u8 x s8 quads into s32) where the
// build may emit them, and the same arithmetic in portable code where it may
// not. The GEMV and attention kernels compose them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "tstream/arch/simd.hpp"
#include "tstream/core/bf16.hpp"

namespace tstream::arch {

/// True when this build emits vdpbf16ps for dot_bf16_pairs.
inline constexpr bool have_bf16_dot =
#if defined(__AVX512BF16__) && defined(__AVX512F__)
    width<float> == 16;
#else
    false;
#endif

/// True when this build emits vpdpbusd for dot_u8s8_quads.
inline constexpr bool have_vnni_dot =
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
    width<float> == 16;
#else
    false;
#endif

/// acc + a . b over bf16 pairs, lane-wise: each 32-bit lane of a and b holds
/// two bf16 (the even element low); the result is acc + a_odd b_odd +
/// a_even b_even, the odd product added first, as vdpbf16ps does (products
/// of two bf16 are exact in fp32; vdpbf16ps also flushes denormals to zero).
[[nodiscard]] inline batch<float> dot_bf16_pairs(const batch<float>& acc, const batch<std::int32_t>& a,
                                                 const batch<std::int32_t>& b) noexcept {
#if defined(__AVX512BF16__) && defined(__AVX512F__)
  if constexpr (have_bf16_dot) {
#if defined(__GNUC__) || defined(__clang__)
    // In-place asm: with the intrinsic, GCC 12 copies every accumulator of
    // a 16-register tile to a fresh register and back around each
    // instruction, tripling the uops of the attention kernels.
    __m512 r = acc;
    __asm__("vdpbf16ps %2, %1, %0" : "+v"(r) : "v"(__m512i(a)), "vm"(__m512i(b)));
    return batch<float>(r);
#else
    return batch<float>(_mm512_dpbf16_ps(acc, (__m512bh)(__m512i)a, (__m512bh)(__m512i)b));
#endif
  }
#endif
  const batch<float> odd = arch::fma(high_bf16(a), high_bf16(b), acc);
  return arch::fma(low_bf16(a), low_bf16(b), odd);
}

/// acc + sum over the four bytes of each 32-bit lane of u8(a) x s8(b), in
/// int32 (vpdpbusd). Integer arithmetic: the portable path gives the same bits.
[[nodiscard]] inline batch<std::int32_t> dot_u8s8_quads(const batch<std::int32_t>& acc, const batch<std::int32_t>& a,
                                                        const batch<std::int32_t>& b) noexcept {
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
  if constexpr (have_vnni_dot) {
#if defined(__GNUC__) || defined(__clang__)
    __m512i r = acc;  // in-place asm, as for vdpbf16ps above
    __asm__("vpdpbusd %2, %1, %0" : "+v"(r) : "v"(__m512i(a)), "vm"(__m512i(b)));
    return batch<std::int32_t>(r);
#else
    return batch<std::int32_t>(_mm512_dpbusd_epi32(acc, a, b));
#endif
  }
#endif
  using ib = batch<std::int32_t>;
  const ib m(0xFF);
  return acc + (a & m) * signed_byte<0>(b) + ((a >> 8) & m) * signed_byte<1>(b) + ((a >> 16) & m) * signed_byte<2>(b) +
         ((a >> 24) & m) * signed_byte<3>(b);
}

/// Accumulator registers a panel kernel may use: leaves room for the
/// broadcast activations and the decoded weights.
inline constexpr std::size_t accumulator_registers =
#if defined(__AVX512F__)
    20;  // of 32 zmm: one 320-lane fp32 vector, exactly the TSP's
#else
    12;  // of 16 ymm/xmm
#endif

}  // namespace tstream::arch
