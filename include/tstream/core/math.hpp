// Elementary functions the kernels need in registers, with their accuracy
// stated. Portable (xsimd) code.
#pragma once

#include <cstdint>
#include <limits>

#include <xsimd/xsimd.hpp>

#include "tstream/arch/simd.hpp"

namespace tstream {

namespace detail {
// The range reduction both exponentials share: x = n + f with n an integer
// and f in [-1/2, 1/2], x first clamped to -127 from below. A NaN passes the
// clamp (arch::max_keep_nan) and every step after: p is NaN, so exp2_scale's
// p 2^n is NaN whatever n converts to.
template <class Arch>
struct exp2_parts {
  xsimd::batch<float, Arch> n, f;
};
template <class Arch>
[[nodiscard]] inline exp2_parts<Arch> exp2_reduce(const xsimd::batch<float, Arch>& x) noexcept {
  const xsimd::batch<float, Arch> xc = arch::max_keep_nan(xsimd::batch<float, Arch>(-127.f), x);
  const xsimd::batch<float, Arch> n = xsimd::nearbyint(xc);
  return {n, xc - n};
}
// p 2^n through the exponent bits, for n in [-127, 128): n = -127 gives
// exponent bits 0, so exactly 0.
template <class Arch>
[[nodiscard]] inline xsimd::batch<float, Arch> exp2_scale(const xsimd::batch<float, Arch>& p,
                                                          const xsimd::batch<float, Arch>& n) noexcept {
  using I = xsimd::batch<std::int32_t, Arch>;
  return p * xsimd::bitwise_cast<xsimd::batch<float, Arch>>((xsimd::to_int(n) + I(127)) << 23);
}
}  // namespace detail

/// e^x, lane-wise, for every x: relative error below 1e-7 where the result
/// is normal (7.7e-8 the largest over a sweep of [-87.3, 88.7] in steps of
/// 1e-4; tests/core/math_test.cpp checks 1e-7 over [-110, 90] in steps of
/// 1e-3); x > 88.72 gives +inf, x < -103.98 gives 0,
/// subnormal results are within one subnormal step (not flushed), NaN gives
/// NaN (it passes the clamp, arch::clamp_keep_nan, and every step after).
/// x = n ln2 + r: n rounded by adding 1.5 2^23 (whose ulp is 1), r in two
/// FMAs with ln2 split in a high and a low part; e^r by its degree-7 Taylor
/// polynomial on |r| <= ln2 / 2 in Horner's scheme (seven FMAs: against
/// Estrin's nine operations, silu over 64 Ki floats in L2 ran 3% faster and
/// the error fell from 1.7e-7, since Estrin rounds r^2 and r^4); 2^n by
/// arch::scale_pow2 (one instruction on AVX-512). Every multiply-add goes
/// through arch::fma (fused where the CPU has FMA), so the bits do not
/// depend on -ffp-contract (xsimd::exp spells some as a * b + c).
template <class Arch>
[[nodiscard]] inline xsimd::batch<float, Arch> exp(const xsimd::batch<float, Arch>& x) noexcept {
  using B = xsimd::batch<float, Arch>;
  const B xc = arch::clamp_keep_nan(x, B(-104.f), B(89.f));
  const B shifter(12582912.f);  // 1.5 2^23
  const B n = arch::fma(xc, B(1.44269504088896341f), shifter) - shifter;
  B r = arch::fma(n, B(-0.693147182464599609375f), xc);  // ln2 rounded to float
  r = arch::fma(n, B(1.904654323148236e-09f), r);       // minus what that rounding left out
  B p = arch::fma(r, B(1.f / 5040.f), B(1.f / 720.f));
  p = arch::fma(p, r, B(1.f / 120.f));
  p = arch::fma(p, r, B(1.f / 24.f));
  p = arch::fma(p, r, B(1.f / 6.f));
  p = arch::fma(p, r, B(0.5f));
  p = arch::fma(p, r, B(1.f));
  p = arch::fma(p, r, B(1.f));  // e^r, in [0.70, 1.42]
  return arch::scale_pow2(p, n);
}

/// 2^x for x < 127.5, lane-wise, relative error below 2e-7 (a degree-7
/// polynomial for 2^f on f in [-1/2, 1/2], scaled by 2^n through the
/// exponent bits). x < -126 gives exactly 0 (so a -inf mask gives 0), NaN
/// gives NaN. The online softmax's exponential, in base 2 so that the scale
/// log2(e) / sqrt(d) is folded into one multiply.
template <class Arch>
[[nodiscard]] inline xsimd::batch<float, Arch> exp2(const xsimd::batch<float, Arch>& x) noexcept {
  using B = xsimd::batch<float, Arch>;
  const auto [n, f] = detail::exp2_reduce(x);
  // Taylor series of 2^f = e^(f ln 2): coefficients ln2^k / k!.
  B p(1.5252733804059841e-05f);          // ln2^7 / 7!
  p = arch::fma(p, f, B(1.5403530393381606e-04f));  // ln2^6 / 6!
  p = arch::fma(p, f, B(1.3333558146428441e-03f));  // ln2^5 / 5!
  p = arch::fma(p, f, B(9.6181291076284768e-03f));  // ln2^4 / 4!
  p = arch::fma(p, f, B(5.5504108664821580e-02f));  // ln2^3 / 3!
  p = arch::fma(p, f, B(2.4022650695910071e-01f));  // ln2^2 / 2!
  p = arch::fma(p, f, B(6.9314718055994531e-01f));  // ln2
  p = arch::fma(p, f, B(1.f));
  return xsimd::select(x < B(-126.f), B(0.f), detail::exp2_scale(p, n));
}

/// 2^x for -126 <= x <= 0, lane-wise, relative error below 1.1e-4 (a
/// degree-3 polynomial for 2^f on [-1/2, 1/2], minimax in relative error
/// with 2^0 kept exactly 1, so the largest logit still weighs exactly 1);
/// x < -126.5 (a -inf mask included) gives exactly 0, [-126.5, -126) a
/// subnormal or 0, NaN gives NaN; x > 0 is outside its contract (it behaves
/// as exp2 below 127.5, not above). For the fast decode modes, whose
/// probabilities are rounded to bf16 (up to 2^-9 relative) or 8-bit codes
/// (up to 1/510 of a block's largest) right after: four FMAs, a compare and
/// a select fewer than exp2, at an error about 18 times below that rounding.
template <class Arch>
[[nodiscard]] inline xsimd::batch<float, Arch> exp2_fast(const xsimd::batch<float, Arch>& x) noexcept {
  using B = xsimd::batch<float, Arch>;
  const auto [n, f] = detail::exp2_reduce(x);
  B p(5.50089329e-02f);
  p = arch::fma(p, f, B(2.42210969e-01f));
  p = arch::fma(p, f, B(6.93282902e-01f));
  p = arch::fma(p, f, B(1.f));
  return detail::exp2_scale(p, n);
}

}  // namespace tstream
