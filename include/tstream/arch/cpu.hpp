// What the build targets and what the CPU running it supports.
//
// This directory (include/tstream/arch/) is the only place in tstream with
// intrinsics or ISA #ifdefs; everything above it asks these functions.
#pragma once

#include <string>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define TSTREAM_ARCH_X86 1
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#else
#define TSTREAM_ARCH_X86 0
#endif

namespace tstream::arch {

/// The instruction-set extensions tstream's kernels care about.
struct isa_set {
  bool sse2 = false;      ///< the x86-64 baseline
  bool avx2 = false;      ///< 256-bit integer and float vectors
  bool fma = false;       ///< fused multiply-add (FMA3)
  bool avx512f = false;   ///< 512-bit vectors, 32 registers, masks
  bool avx512bw = false;  ///< 8- and 16-bit lanes in 512-bit vectors
  bool avx512vl = false;  ///< AVX-512 encodings of 128- and 256-bit operations
  bool avx512_bf16 = false;   ///< vdpbf16ps: bf16 pair dot products into fp32
  bool avx512_vnni = false;   ///< vpdpbusd: u8 x s8 quad dot products into s32

  /// "avx512f avx512bw ..." for logs and the demo.
  [[nodiscard]] std::string to_string() const {
    std::string s;
    auto add = [&](bool on, const char* name) {
      if (on) { if (!s.empty()) s += ' '; s += name; }
    };
    add(sse2, "sse2"); add(avx2, "avx2"); add(fma, "fma"); add(avx512f, "avx512f");
    add(avx512bw, "avx512bw"); add(avx512vl, "avx512vl"); add(avx512_bf16, "avx512_bf16");
    add(avx512_vnni, "avx512_vnni");
    return s.empty() ? std::string("none") : s;
  }
};

/// The extensions this translation unit was compiled for (-march and friends).
/// Kernels are selected from this set: an instruction the compiler was not
/// allowed to emit cannot be used, whatever the CPU offers.
[[nodiscard]] constexpr isa_set compiled_isa() noexcept {
  isa_set s;
#if defined(__SSE2__) || defined(_M_X64)
  s.sse2 = true;
#endif
#if defined(__AVX2__)
  s.avx2 = true;
#endif
#if defined(__FMA__)
  s.fma = true;
#endif
#if defined(__AVX512F__)
  s.avx512f = true;
#endif
#if defined(__AVX512BW__)
  s.avx512bw = true;
#endif
#if defined(__AVX512VL__)
  s.avx512vl = true;
#endif
#if defined(__AVX512BF16__)
  s.avx512_bf16 = true;
#endif
#if defined(__AVX512VNNI__)
  s.avx512_vnni = true;
#endif
  return s;
}

namespace detail {
#if TSTREAM_ARCH_X86
struct cpuid_regs { unsigned a = 0, b = 0, c = 0, d = 0; };
inline cpuid_regs cpuid(unsigned leaf, unsigned sub = 0) {
  cpuid_regs r;
#if defined(_MSC_VER)
  int v[4];
  __cpuidex(v, static_cast<int>(leaf), static_cast<int>(sub));
  r = {unsigned(v[0]), unsigned(v[1]), unsigned(v[2]), unsigned(v[3])};
#else
  __cpuid_count(leaf, sub, r.a, r.b, r.c, r.d);
#endif
  return r;
}
inline unsigned long long xgetbv0() {
#if defined(_MSC_VER)
  return _xgetbv(0);
#else
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<unsigned long long>(hi) << 32) | lo;
#endif
}
#endif
}  // namespace detail

/// The extensions the CPU running this process supports *and* the OS has
/// enabled (XCR0 state for AVX and AVX-512 registers). Read once, cached.
[[nodiscard]] inline const isa_set& runtime_isa() {
  static const isa_set s = [] {
    isa_set r;
#if TSTREAM_ARCH_X86
    using detail::cpuid;
    const unsigned max_leaf = cpuid(0).a;
    const auto l1 = cpuid(1);
    r.sse2 = (l1.d >> 26) & 1;
    const bool osxsave = (l1.c >> 27) & 1;
    const unsigned long long xcr0 = osxsave ? detail::xgetbv0() : 0;
    const bool os_avx = (xcr0 & 0x6) == 0x6;        // XMM and YMM state
    const bool os_avx512 = (xcr0 & 0xE6) == 0xE6;   // plus opmask and ZMM state
    r.fma = os_avx && ((l1.c >> 12) & 1);
    if (max_leaf >= 7) {
      const auto l7 = cpuid(7, 0);
      r.avx2 = os_avx && ((l7.b >> 5) & 1);
      r.avx512f = os_avx512 && ((l7.b >> 16) & 1);
      r.avx512bw = r.avx512f && ((l7.b >> 30) & 1);
      r.avx512vl = r.avx512f && ((l7.b >> 31) & 1);
      r.avx512_vnni = r.avx512f && ((l7.c >> 11) & 1);
      if (cpuid(7, 0).a >= 1) r.avx512_bf16 = r.avx512f && ((cpuid(7, 1).a >> 5) & 1);
    }
#endif
    return r;
  }();
  return s;
}

/// Who designed the CPU: kernels keep a few tuning choices per vendor where
/// the same code measures differently (see where runtime_vendor is used).
enum class cpu_vendor { intel, amd, other };

/// The running CPU's vendor, from cpuid leaf 0 (other off x86). Read once.
[[nodiscard]] inline cpu_vendor runtime_vendor() {
  static const cpu_vendor v = [] {
#if TSTREAM_ARCH_X86
    const auto r = detail::cpuid(0);
    // The vendor string is in ebx, edx, ecx: "GenuineIntel" / "AuthenticAMD".
    if (r.b == 0x756E6547u && r.d == 0x49656E69u && r.c == 0x6C65746Eu) return cpu_vendor::intel;
    if (r.b == 0x68747541u && r.d == 0x69746E65u && r.c == 0x444D4163u) return cpu_vendor::amd;
#endif
    return cpu_vendor::other;
  }();
  return v;
}

/// The CPU's brand string ("AMD EPYC ..."), or "unknown".
[[nodiscard]] inline std::string cpu_name() {
#if TSTREAM_ARCH_X86
  if (detail::cpuid(0x80000000u).a < 0x80000004u) return "unknown";
  char buf[49] = {};
  for (unsigned i = 0; i < 3; ++i) {
    const auto r = detail::cpuid(0x80000002u + i);
    const unsigned v[4] = {r.a, r.b, r.c, r.d};
    for (int j = 0; j < 4; ++j)
      for (int b = 0; b < 4; ++b) buf[i * 16 + j * 4 + b] = static_cast<char>((v[j] >> (8 * b)) & 0xFF);
  }
  std::string s(buf);
  const auto first = s.find_first_not_of(' ');
  return first == std::string::npos ? "unknown" : s.substr(first, s.find_last_not_of(' ') - first + 1);
#else
  return "unknown";
#endif
}

}  // namespace tstream::arch
