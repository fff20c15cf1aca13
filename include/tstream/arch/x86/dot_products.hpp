// Dot-product steps of the GEMV: vdpbf16ps (bf16 pairs into fp32) and
// vpdpbusd (u8 x s8 quads into s32) where the build may emit them, and the
// same arithmetic in portable code where it may not. Each step updates J
// registers of accumulators from one k-group of a packed panel.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "tstream/arch/simd.hpp"
#include "tstream/core/bf16.hpp"

namespace tstream::arch {

/// True when this build emits vdpbf16ps for bf16_dot_step.
inline constexpr bool have_bf16_dot =
#if defined(__AVX512BF16__) && defined(__AVX512F__)
    width<float> == 16;
#else
    false;
#endif

/// True when this build emits vpdpbusd for vnni_dot_step.
inline constexpr bool have_vnni_dot =
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
    width<float> == 16;
#else
    false;
#endif

/// acc[j] += w(rows of register j, k pair) . (x_even, x_odd), for j < J.
/// `w` points at one k-pair group (each 32-bit lane: one row's two bf16,
/// even k low); `xpair` holds two bf16 activations, even k low. Sums the odd
/// product first, then the even one, as vdpbf16ps does (the products of two
/// bf16 are exact in fp32; vdpbf16ps also flushes denormals to zero).
template <std::size_t J>
inline void bf16_dot_step(batch<float> (&acc)[J], const std::uint16_t* w, std::uint32_t xpair) noexcept {
#if defined(__AVX512BF16__) && defined(__AVX512F__)
  if constexpr (have_bf16_dot) {
    const __m512bh xb = (__m512bh)_mm512_set1_epi32(static_cast<int>(xpair));
    [&]<std::size_t... j>(std::index_sequence<j...>) {
      ((acc[j] = batch<float>(_mm512_dpbf16_ps(acc[j], (__m512bh)_mm512_loadu_si512(w + 32 * j), xb))), ...);
    }(std::make_index_sequence<J>{});
    return;
  }
#endif
  const batch<float> x_even(bf16::to_float(std::uint16_t(xpair & 0xFFFFu)));
  const batch<float> x_odd(bf16::to_float(std::uint16_t(xpair >> 16)));
  [&]<std::size_t... j>(std::index_sequence<j...>) {
    (
        [&] {
          const auto v = load_lanes(w, j);
          acc[j] = arch::fma(high_bf16(v), x_odd, acc[j]);
          acc[j] = arch::fma(low_bf16(v), x_even, acc[j]);
        }(),
        ...);
  }(std::make_index_sequence<J>{});
}

/// acc[j] += sum over the quad of u8 activation x s8 weight, for j < J.
/// `w` points at one k-quad group (each 32-bit lane: one row's four s8);
/// `xquad` holds four u8 activations, lowest k in the low byte. Integer
/// arithmetic: both paths give the same bits.
template <std::size_t J>
inline void vnni_dot_step(batch<std::int32_t> (&acc)[J], const std::int8_t* w, std::uint32_t xquad) noexcept {
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
  if constexpr (have_vnni_dot) {
    const __m512i xb = _mm512_set1_epi32(static_cast<int>(xquad));
    [&]<std::size_t... j>(std::index_sequence<j...>) {
      ((acc[j] = batch<std::int32_t>(_mm512_dpbusd_epi32(acc[j], xb, _mm512_loadu_si512(w + 64 * j)))), ...);
    }(std::make_index_sequence<J>{});
    return;
  }
#endif
  using ib = batch<std::int32_t>;
  const ib x0(std::int32_t(xquad & 0xFF)), x1(std::int32_t((xquad >> 8) & 0xFF));
  const ib x2(std::int32_t((xquad >> 16) & 0xFF)), x3(std::int32_t(xquad >> 24));
  [&]<std::size_t... j>(std::index_sequence<j...>) {
    (
        [&] {
          const ib v = load_lanes(w, j);
          acc[j] = acc[j] + signed_byte<0>(v) * x0 + signed_byte<1>(v) * x1 + signed_byte<2>(v) * x2 +
                   signed_byte<3>(v) * x3;
        }(),
        ...);
  }(std::make_index_sequence<J>{});
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
