// The native SIMD register ("superlane") and the few operations xsimd 8 does
// not offer: masked tail loads/stores, prefetch and the spin-wait hint.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "tstream/arch/cpu.hpp"

#if TSTREAM_ARCH_X86
#include <immintrin.h>
#endif

/// Inlines a function whatever the compiler's heuristics say: for helpers
/// called with a register tile live, where a call would spill the whole
/// tile (every vector register is caller-saved).
#if defined(__GNUC__) || defined(__clang__)
#define TSTREAM_ALWAYS_INLINE [[gnu::always_inline]] inline
#else
#define TSTREAM_ALWAYS_INLINE inline
#endif

namespace tstream::arch {

/// The widest instruction set this translation unit was compiled for.
using native = xsimd::default_arch;

/// One superlane: a native SIMD register of T.
template <class T, class Arch = native>
using batch = xsimd::batch<T, Arch>;

/// Lanes of T in one native register (16 for fp32 on AVX-512, 8 on AVX2).
template <class T, class Arch = native>
inline constexpr std::size_t width = batch<T, Arch>::size;

#if defined(__AVX2__)
/// All-ones in the 32-bit lanes i < n of a ymm register (AVX2 masked loads).
[[nodiscard]] inline __m256i avx2_lane_mask(std::size_t n) noexcept {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n < 8 ? n : 8)), iota);
}
#endif

/// Loads the first min(n, width) elements at p, zero-filling the rest; reads
/// nothing past p + n, so a tail at the end of a page is safe.
template <class T, class Arch = native>
[[nodiscard]] inline batch<T, Arch> load_partial(const T* p, std::size_t n) noexcept {
  constexpr std::size_t W = width<T, Arch>;
#if defined(__AVX512F__)
  // Masked even when n >= W: an unmasked full load on a path the compiler
  // sees as reachable draws -Warray-bounds on short arrays.
  if constexpr (std::is_same_v<Arch, xsimd::avx512bw> || std::is_same_v<Arch, xsimd::avx512dq> ||
                std::is_same_v<Arch, xsimd::avx512cd> || std::is_same_v<Arch, xsimd::avx512f>) {
    if constexpr (sizeof(T) == 4) {  // 16 lanes: n < 16 here, so the shift is defined
      const __mmask16 m = n >= W ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
      if constexpr (std::is_same_v<T, float>) return batch<T, Arch>(_mm512_maskz_loadu_ps(m, p));
      if constexpr (std::is_same_v<T, std::int32_t>) return batch<T, Arch>(_mm512_maskz_loadu_epi32(m, p));
    }
  }
#endif
#if defined(__AVX2__)
  if constexpr (W == 8 && sizeof(T) == 4) {
    const __m256i m = avx2_lane_mask(n);
    if constexpr (std::is_same_v<T, float>) return batch<T, Arch>(_mm256_maskload_ps(p, m));
    if constexpr (std::is_same_v<T, std::int32_t>) return batch<T, Arch>(_mm256_maskload_epi32(reinterpret_cast<const int*>(p), m));
  }
#endif
  if (n >= W) return batch<T, Arch>::load_unaligned(p);
  alignas(64) T tmp[W] = {};
  if (n) std::memcpy(tmp, p, n * sizeof(T));
  return batch<T, Arch>::load_aligned(tmp);
}

/// Stores the first min(n, width) lanes of v to p; writes nothing past p + n.
template <class T, class Arch = native>
inline void store_partial(T* p, const batch<T, Arch>& v, std::size_t n) noexcept {
  constexpr std::size_t W = width<T, Arch>;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<Arch, xsimd::avx512bw> || std::is_same_v<Arch, xsimd::avx512dq> ||
                std::is_same_v<Arch, xsimd::avx512cd> || std::is_same_v<Arch, xsimd::avx512f>) {
    if constexpr (sizeof(T) == 4) {  // 16 lanes: n < 16 here, so the shift is defined
      const __mmask16 m = n >= W ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
      if constexpr (std::is_same_v<T, float>) { _mm512_mask_storeu_ps(p, m, v); return; }
      if constexpr (std::is_same_v<T, std::int32_t>) { _mm512_mask_storeu_epi32(p, m, v); return; }
    }
  }
#endif
#if defined(__AVX2__)
  if constexpr (W == 8 && sizeof(T) == 4) {
    const __m256i m = avx2_lane_mask(n);
    if constexpr (std::is_same_v<T, float>) { _mm256_maskstore_ps(p, m, v); return; }
    if constexpr (std::is_same_v<T, std::int32_t>) { _mm256_maskstore_epi32(reinterpret_cast<int*>(p), m, v); return; }
  }
#endif
  if (n >= W) { v.store_unaligned(p); return; }
  alignas(64) T tmp[W];
  v.store_aligned(tmp);
  if (n) std::memcpy(p, tmp, n * sizeof(T));
}

/// a * b + c with a single rounding. xsimd 8 spells some of its fma as
/// a * b + c and leaves fusion to the compiler's -ffp-contract setting; the
/// kernels' results must not depend on the user's flags, so fuse explicitly.
template <class T, class Arch>
[[nodiscard]] inline batch<T, Arch> fma(const batch<T, Arch>& a, const batch<T, Arch>& b,
                                        const batch<T, Arch>& c) noexcept {
  if constexpr (std::is_same_v<T, float>) {
#if defined(__AVX512F__)
    if constexpr (width<T, Arch> == 16) return batch<T, Arch>(_mm512_fmadd_ps(a, b, c));
#endif
#if defined(__FMA__)
    if constexpr (width<T, Arch> == 8) return batch<T, Arch>(_mm256_fmadd_ps(a, b, c));
    if constexpr (width<T, Arch> == 4) return batch<T, Arch>(_mm_fmadd_ps(a, b, c));
#endif
  }
  return xsimd::fma(a, b, c);
}

/// max(lo, x) lane-wise, a NaN x kept as NaN. x86's maxps (and maxpd)
/// returns its second operand when either is NaN, so x goes second: one
/// instruction where a select on isnan(x) takes three.
template <class T, class Arch>
[[nodiscard]] inline batch<T, Arch> max_keep_nan(const batch<T, Arch>& lo, const batch<T, Arch>& x) noexcept {
#if TSTREAM_ARCH_X86
  return xsimd::max(lo, x);  // maxps(lo, x)
#else
  return xsimd::select(xsimd::isnan(x), x, xsimd::max(lo, x));
#endif
}

/// min(max(x, lo), hi) lane-wise, a NaN x kept as NaN (see max_keep_nan).
template <class T, class Arch>
[[nodiscard]] inline batch<T, Arch> clamp_keep_nan(const batch<T, Arch>& x, const batch<T, Arch>& lo,
                                                   const batch<T, Arch>& hi) noexcept {
#if TSTREAM_ARCH_X86
  return xsimd::min(hi, xsimd::max(lo, x));  // minps(hi, maxps(lo, x))
#else
  return xsimd::select(xsimd::isnan(x), x, xsimd::min(hi, xsimd::max(lo, x)));
#endif
}

/// p 2^n, lane-wise, for n a whole number in [-150, 128] (held as a float)
/// and p in [0.5, 2): rounded once where the result is subnormal, +inf where
/// it overflows. AVX-512: one vscalefps. Elsewhere n is split in two halves,
/// one added to p's exponent bits and 2^(the other) multiplied in, so
/// neither leaves the exponent field's range. A NaN p with a NaN n (exp's
/// NaN) gives NaN: vscalefps does, and the split leaves p's bits alone where
/// a NaN n converts to INT_MIN (x86) or 0 (Arm).
template <class Arch>
[[nodiscard]] inline batch<float, Arch> scale_pow2(const batch<float, Arch>& p, const batch<float, Arch>& n) noexcept {
#if defined(__AVX512F__)
  if constexpr (width<float, Arch> == 16) return batch<float, Arch>(_mm512_scalef_ps(p, n));
#endif
  using I = batch<std::int32_t, Arch>;
  const I ni = xsimd::to_int(n), half = ni >> 1;
  const batch<float, Arch> p_half = xsimd::bitwise_cast<batch<float, Arch>>(xsimd::bitwise_cast<I>(p) + (half << 23));
  return p_half * xsimd::bitwise_cast<batch<float, Arch>>((ni - half + I(127)) << 23);
}

/// The 32-bit lanes of register j of a packed array of S (float, bf16
/// pairs or int8 quads: four bytes per lane whatever S is).
template <class S, class Arch = native>
[[nodiscard]] inline batch<std::int32_t, Arch> load_lanes(const S* base, std::size_t j) noexcept {
  constexpr std::size_t per_lane = 4 / sizeof(S), W = width<std::int32_t, Arch>;
  return batch<std::int32_t, Arch>::load_unaligned(reinterpret_cast<const std::int32_t*>(base + per_lane * W * j));
}

/// Byte B (0 = lowest) of every 32-bit lane, sign-extended.
template <int B, class Arch>
[[nodiscard]] inline batch<std::int32_t, Arch> signed_byte(const batch<std::int32_t, Arch>& v) noexcept {
  if constexpr (B == 3) return v >> 24;
  else return (v << (24 - 8 * B)) >> 24;
}

/// Byte B (0 = lowest) of every 32-bit lane moved to the lane's top byte,
/// the other three zero: the signed byte times 2^24, as an int32 (so its
/// conversion to float is exact too). One vpshufb where signed_byte takes
/// two shifts: exact int8 GEMV's four conversions per register cost 4
/// shuffles instead of 7 shifts (512 x 512 panel kernel on one Zen 4 core,
/// in L2: 21 -> 29-31 GB/s).
template <int B, class Arch>
[[nodiscard]] inline batch<std::int32_t, Arch> byte_to_top(const batch<std::int32_t, Arch>& v) noexcept {
  using I = batch<std::int32_t, Arch>;
  constexpr std::size_t W = width<std::int32_t, Arch>;
  // vpshufb control, per 128-bit lane: dword d takes byte 4 d + B into its
  // top byte; 0x80 zeroes the others.
  [[maybe_unused]] constexpr int c0 = int((unsigned(B) << 24) | 0x808080u), c1 = c0 + (4 << 24), c2 = c0 + (8 << 24),
                                 c3 = c0 + (12 << 24);
#if defined(__AVX512BW__)
  if constexpr (W == 16)
    return I(_mm512_shuffle_epi8(v, _mm512_set_epi32(c3, c2, c1, c0, c3, c2, c1, c0, c3, c2, c1, c0, c3, c2, c1, c0)));
#endif
#if defined(__AVX2__)
  if constexpr (W == 8) return I(_mm256_shuffle_epi8(v, _mm256_set_epi32(c3, c2, c1, c0, c3, c2, c1, c0)));
#endif
#if defined(__SSSE3__)
  if constexpr (W == 4) return I(_mm_shuffle_epi8(v, _mm_set_epi32(c3, c2, c1, c0)));
#endif
  const I top(std::int32_t(0xFF000000u));
  if constexpr (B == 3) return v & top;
  else return (v << (24 - 8 * B)) & top;
}
/// What sums of byte_to_top's values are multiplied by to undo its 2^24
/// (exact while the result is a normal float).
inline constexpr float byte_to_top_scale = 0x1p-24f;

/// The bf16 in the low half of every 32-bit lane, as fp32 (exact).
template <class Arch>
[[nodiscard]] inline batch<float, Arch> low_bf16(const batch<std::int32_t, Arch>& v) noexcept {
  return xsimd::bitwise_cast<batch<float, Arch>>(v << 16);
}

/// The bf16 in the high half of every 32-bit lane, as fp32 (exact).
template <class Arch>
[[nodiscard]] inline batch<float, Arch> high_bf16(const batch<std::int32_t, Arch>& v) noexcept {
  return xsimd::bitwise_cast<batch<float, Arch>>(v & batch<std::int32_t, Arch>(static_cast<std::int32_t>(0xFFFF0000u)));
}

/// Every lane of v rounded to bf16 (nearest even; NaN kept as a quiet NaN),
/// the 16 bits in the low half of each 32-bit lane: bf16::from_float, lane-wise.
template <class Arch>
[[nodiscard]] inline batch<std::int32_t, Arch> to_bf16_bits(const batch<float, Arch>& v) noexcept {
  using ib = batch<std::int32_t, Arch>;
  const ib u = xsimd::bitwise_cast<ib>(v);
  const ib hi = xsimd::bitwise_cast<ib>(xsimd::bitwise_cast<batch<std::uint32_t, Arch>>(u) >> 16);
  const ib rounded = xsimd::bitwise_cast<ib>(
      xsimd::bitwise_cast<batch<std::uint32_t, Arch>>(u + ib(0x7FFF) + (hi & ib(1))) >> 16);
  // Selected as floats: xsimd 8's int32 select does not compile at -O0.
  using fb = batch<float, Arch>;
  return xsimd::bitwise_cast<ib>(
      xsimd::select(xsimd::isnan(v), xsimd::bitwise_cast<fb>(hi | ib(0x40)), xsimd::bitwise_cast<fb>(rounded)));
}

/// Stores the low 16 bits of each 32-bit lane of v at p (W values).
template <class Arch>
inline void store_low_halves(std::uint16_t* p, const batch<std::int32_t, Arch>& v) noexcept {
  constexpr std::size_t W = width<std::int32_t, Arch>;
#if defined(__AVX512F__)
  if constexpr (W == 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(v));
    return;
  }
#endif
  alignas(64) std::int32_t tmp[W];
  v.store_aligned(tmp);
  for (std::size_t i = 0; i < W; ++i) p[i] = static_cast<std::uint16_t>(tmp[i]);
}

/// Stores the low byte of each 32-bit lane of v at p (W values).
template <class Arch>
inline void store_low_bytes(std::uint8_t* p, const batch<std::int32_t, Arch>& v) noexcept {
  constexpr std::size_t W = width<std::int32_t, Arch>;
#if defined(__AVX512F__)
  if constexpr (W == 16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(v));
    return;
  }
#endif
  alignas(64) std::int32_t tmp[W];
  v.store_aligned(tmp);
  for (std::size_t i = 0; i < W; ++i) p[i] = static_cast<std::uint8_t>(tmp[i]);
}

/// Stores 2W floats (a, then b) rounded to bf16 at p: to_bf16_bits' bits
/// (bf16::from_float). With AVX512_BF16, one vcvtne2ps2bf16 (GEMM's bf16 A,
/// 256 rows of 256 in L2: 6.2-7.4 -> 3.6-3.9 us); it flushes subnormal inputs to
/// zero, so a pair of registers holding one takes the long way (vfpclassps
/// finds them).
template <class Arch>
inline void store_bf16_pair(std::uint16_t* p, const batch<float, Arch>& a, const batch<float, Arch>& b) noexcept {
  constexpr std::size_t W = width<float, Arch>;
#if defined(__AVX512BF16__) && defined(__AVX512DQ__)
  if constexpr (W == 16) {
    constexpr int subnormal = 0x20;  // vfpclassps category: denormal
    if (((_mm512_fpclass_ps_mask(a, subnormal) | _mm512_fpclass_ps_mask(b, subnormal))) == 0) {
      _mm512_storeu_si512(p, std::bit_cast<__m512i>(_mm512_cvtne2ps_pbh(b, a)));  // a in the low half
      return;
    }
  }
#endif
  store_low_halves(p, to_bf16_bits(a));
  store_low_halves(p + W, to_bf16_bits(b));
}

/// Stores the 4W int32 lanes of a, b, c, d (in that order), each clamped
/// to [-127, 127], as the bytes lane + 128 (int8 codes as u8). On AVX-512 two
/// saturating packs, one byte max, a sign flip and one lane permutation make
/// one 64-byte store, in place of four clamps, four narrowing stores and
/// four additions.
template <class Arch>
inline void store_offset_bytes(std::uint8_t* p, const batch<std::int32_t, Arch>& a, const batch<std::int32_t, Arch>& b,
                               const batch<std::int32_t, Arch>& c, const batch<std::int32_t, Arch>& d) noexcept {
  constexpr std::size_t W = width<std::int32_t, Arch>;
#if defined(__AVX512BW__)
  if constexpr (W == 16) {
    // packs work per 128-bit lane: byte group 4i + j of the result holds
    // dword group i of register j, so dwords (0 4 8 12 1 5 ...) restore order.
    const __m512i v = _mm512_max_epi8(_mm512_packs_epi16(_mm512_packs_epi32(a, b), _mm512_packs_epi32(c, d)),
                                      _mm512_set1_epi8(-127));
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_storeu_si512(p, _mm512_permutexvar_epi32(order, _mm512_xor_si512(v, _mm512_set1_epi8(char(0x80)))));
    return;
  }
#endif
  using ib = batch<std::int32_t, Arch>;
  const auto code = [](const ib& v) { return xsimd::min(xsimd::max(v, ib(-127)), ib(127)) + ib(128); };
  store_low_bytes(p, code(a));
  store_low_bytes(p + W, code(b));
  store_low_bytes(p + 2 * W, code(c));
  store_low_bytes(p + 3 * W, code(d));
}

/// Stores each lane of x (>= 0) rounded to the nearest integer (ties to
/// even) as a byte at p (W values), 255 for anything above 255 and for NaN.
/// Negative lanes give unspecified bytes (the callers' values are >= 0).
/// The fast modes' 8-bit probability codes: one conversion and one
/// saturating narrow on AVX-512.
template <class Arch>
inline void store_u8_codes(std::uint8_t* p, const batch<float, Arch>& x) noexcept {
#if defined(__AVX512F__)
  if constexpr (width<float, Arch> == 16) {
    // NaN and overflow convert to 0x80000000, which saturates to 255 too.
    const __m512i n = _mm512_cvt_roundps_epi32(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtusepi32_epi8(n));
    return;
  }
#endif
  using B = batch<float, Arch>;
  store_low_bytes(p, xsimd::to_int(xsimd::nearbyint(xsimd::select(x < B(255.f), x, B(255.f)))));
}

/// Stores lane 0 of v at p as a T of the same width (one scalar store).
template <class T, class U, class Arch>
  requires(sizeof(T) == sizeof(U))
TSTREAM_ALWAYS_INLINE void store_first_lane(T* p, const batch<U, Arch>& v) noexcept {
  const U x = v.get(0);
  std::memcpy(p, &x, sizeof x);
}

/// Makes the compiler hold v in a register from here on. Without it, GCC
/// folds a load shared by several FMAs into each FMA's memory operand, and
/// a kernel whose loads feed four heads becomes load-port bound.
template <class T, class Arch>
inline void keep_in_register(batch<T, Arch>& v) noexcept {
#if (defined(__GNUC__) || defined(__clang__)) && TSTREAM_ARCH_X86
  if constexpr (sizeof(v) == 64 || sizeof(v) == 32 || sizeof(v) == 16) {
    auto r = static_cast<typename batch<T, Arch>::register_type>(v);
    __asm__("" : "+v"(r));
    v = batch<T, Arch>(r);
  }
#else
  (void)v;
#endif
}

/// Largest lane of v, fp32 or int32 (lanes compared left to right; for
/// fp32, NaN handling as max_ps).
template <class T, class Arch>
  requires(std::is_same_v<T, float> || std::is_same_v<T, std::int32_t>)
[[nodiscard]] inline T reduce_max(const batch<T, Arch>& v) noexcept {
#if defined(__AVX512F__)
  if constexpr (width<T, Arch> == 16) {
    if constexpr (std::is_same_v<T, float>) return _mm512_reduce_max_ps(v);
    else return _mm512_reduce_max_epi32(v);
  }
#endif
  alignas(64) T lanes[width<T, Arch>];
  v.store_aligned(lanes);
  T m = lanes[0];
  for (std::size_t i = 1; i < width<T, Arch>; ++i) m = lanes[i] > m ? lanes[i] : m;
  return m;
}

/// Hint that the line at p will be read later (into L2).
inline void prefetch_l2(const void* p) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p, 0, 2);
#else
  (void)p;
#endif
}

/// The spin-wait hint (PAUSE on x86): lets the sibling hyperthread run and
/// saves power while a worker polls for work.
inline void cpu_relax() noexcept {
#if TSTREAM_ARCH_X86
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

}  // namespace tstream::arch
