// Decoding libFuzzer's bytes into shapes, options and float values.
//
// Shapes and options come first, one byte each. Each float value then takes
// one byte that says what kind of value it is (mostly ordinary values of the
// tensor's magnitude; NaN, +-inf, denormals, huge values, zeros and small
// integers at fixed rates); the value itself comes from a generator seeded
// by the input, so short inputs still fill large tensors deterministically.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>

#include "tstream/runtime/thread_team.hpp"

namespace fz {

class input {
 public:
  input(const std::uint8_t* data, std::size_t size) : p_(data), n_(size) {
    std::uint64_t h = 0x9E3779B97F4A7C15ull;
    for (std::size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 0x100000001B3ull;
    state_ = h;
  }
  /// The next input byte (0 once the input is used up).
  std::uint8_t byte() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  /// An integer in [lo, hi] from the next one or two bytes.
  int range(int lo, int hi) {
    const unsigned span = unsigned(hi - lo) + 1;
    unsigned v = byte();
    if (span > 256) v = (v << 8) | byte();
    return lo + int(v % span);
  }
  bool flag() { return byte() & 1; }
  /// A magnitude for one tensor: mostly 1, sometimes tiny or huge.
  float magnitude() {
    static constexpr float table[] = {1.f, 1.f, 1.f, 1.f, 1e-3f, 1e3f, 1e-20f, 1e20f, 1e-38f, 1e-42f, 1e30f, 1e-30f, 0.5f, 8.f, 1e37f, 1e-36f};
    return table[byte() % 16];
  }
  /// One value of a tensor whose ordinary values are uniform in [-mag, mag].
  float value(float mag) {
    const std::uint8_t kind = n_ ? byte() : std::uint8_t(next() % 256);
    const std::uint64_t r = next();
    const float u = float(r >> 40) / float(1u << 24) * 2.f - 1.f;  // [-1, 1)
    if (kind < 192) return u * mag;
    if (kind < 200) return std::bit_cast<float>(std::uint32_t(0x7FC00000u | (r & 0x803FFFFFu)));  // NaN, either sign
    if (kind < 208) return std::numeric_limits<float>::infinity();
    if (kind < 216) return -std::numeric_limits<float>::infinity();
    if (kind < 224) return std::bit_cast<float>(std::uint32_t((r & 0x807FFFFFu) | 1u));  // denormal, either sign
    if (kind < 232) return (r & 1 ? -1.f : 1.f) * std::numeric_limits<float>::max() * (0.25f + 0.75f * std::fabs(u));
    if (kind < 240) return r & 1 ? -0.f : 0.f;
    return float(int(r % 17) - 8);
  }

 private:
  std::uint64_t next() {  // splitmix64
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  const std::uint8_t* p_;
  std::size_t n_;
  std::uint64_t state_;
};

/// Stops the fuzzer with a message: every broken promise is a crash.
[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "tstream fuzz: %s\n", what);
  std::fflush(stderr);
  __builtin_trap();
}
#define FZ_CHECK(cond, what) ((cond) ? (void)0 : ::fz::fail(what))

/// Round to bf16 (nearest, ties to even; NaN stays NaN), in double, written
/// independently of tstream::bf16.
inline double to_bf16(float f) {
  if (std::isnan(f) || std::isinf(f) || f == 0) return f;
  int e;
  const double m = std::frexp(double(f), &e);  // f = m 2^e, 0.5 <= |m| < 1
  const int emin = -125;                        // bf16 has float's exponent range
  const int bits = e >= emin ? 8 : 8 - (emin - e);  // significant bits kept (fewer for denormals)
  if (bits <= 0) {
    // Below half the smallest denormal (2^-133): 0; exactly half: ties to even (0).
    const double half = std::ldexp(1.0, -134);
    return std::fabs(f) > half ? std::copysign(std::ldexp(1.0, -133), double(f)) : std::copysign(0.0, double(f));
  }
  const double scaled = std::ldexp(m, bits);  // integer part holds the kept bits
  const double r = std::nearbyint(scaled);     // current rounding mode: to nearest, ties to even
  const double out = std::ldexp(r, e - bits);
  return std::fabs(out) > double(std::numeric_limits<float>::max()) ? std::copysign(INFINITY, out) : out;
}

/// Equal bits, or both NaN: a NaN's sign and payload depend on which NaN
/// operand the instruction form picks, which differs between tile and panel
/// widths (so between splits); documented in docs/bad-input.md.
inline bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0 || (std::isnan(a) && std::isnan(b)); }
inline bool same_bits(const float* a, const float* b, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (!same_bits(a[i], b[i])) return false;
  return true;
}

inline constexpr double u32 = 1.0 / 16777216.0;  // 2^-24, fp32 unit roundoff
inline constexpr double flt_min = 1.17549435e-38;
inline constexpr double flt_max = 3.40282347e38;

/// Teams of 1..4 members, made once per fuzzer process (unpinned, short
/// spins: a fuzzer runs millions of small calls next to other fuzzers).
inline tstream::thread_team& team_of(int t) {
  static std::unique_ptr<tstream::thread_team> teams[4];
  if (!teams[t - 1]) {
    tstream::team_options o;
    o.pin_workers = false;
    o.spin_iterations = 256;
    teams[t - 1] = std::make_unique<tstream::thread_team>(t, o);
  }
  return *teams[t - 1];
}

}  // namespace fz
