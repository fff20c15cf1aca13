// core/math.hpp: the lane-wise exponentials against double-precision
// std::exp / std::exp2, over their whole documented ranges and at the edges,
// and the arch helpers they stand on.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "tstream/arch/simd.hpp"
#include "tstream/core/math.hpp"

namespace {

using B = tstream::arch::batch<float>;
constexpr std::size_t W = B::size;
constexpr float inf = std::numeric_limits<float>::infinity();
constexpr double flt_min = std::numeric_limits<float>::min();  // the smallest normal

// f over every x in xs, a register at a time (the tail padded with the last x).
template <class F>
std::vector<float> apply(const std::vector<float>& xs, F f) {
  std::vector<float> out(xs.size());
  alignas(64) float in[W], res[W];
  for (std::size_t i = 0; i < xs.size(); i += W) {
    for (std::size_t l = 0; l < W; ++l) in[l] = xs[std::min(i + l, xs.size() - 1)];
    f(B::load_aligned(in)).store_aligned(res);
    for (std::size_t l = 0; l < W && i + l < xs.size(); ++l) out[i + l] = res[l];
  }
  return out;
}

std::vector<float> sweep(double lo, double hi, double step) {
  std::vector<float> xs;
  for (double x = lo; x <= hi; x += step) xs.push_back(float(x));
  return xs;
}

}  // namespace

TEST_CASE("math: exp is within 1e-7 relative where e^x is normal, rounds subnormals, saturates at the ends") {
  const auto xs = sweep(-110.0, 90.0, 1e-3);
  const auto ys = apply(xs, [](const B& x) { return tstream::exp(x); });
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const double ref = std::exp(double(xs[i]));
    CAPTURE(xs[i]);
    if (ref > double(std::numeric_limits<float>::max())) {
      REQUIRE(ys[i] == inf);
    } else if (ref >= flt_min) {
      REQUIRE(std::fabs(ys[i] - ref) <= 1e-7 * ref);
    } else {
      REQUIRE(std::fabs(ys[i] - ref) <= std::ldexp(1.0, -149));  // within one subnormal step
    }
  }
  const std::vector<float> edges = {0.f, -0.f, 1.f, -1.f, inf, -inf, std::numeric_limits<float>::quiet_NaN(),
                                    88.72f, 88.73f, -103.9f, -104.f, 1e30f, -1e30f};
  const auto e = apply(edges, [](const B& x) { return tstream::exp(x); });
  CHECK(e[0] == 1.f);
  CHECK(e[1] == 1.f);
  CHECK(e[2] == doctest::Approx(2.718281828).epsilon(1e-7));
  CHECK(e[3] == doctest::Approx(0.3678794412).epsilon(1e-7));
  CHECK(e[4] == inf);
  CHECK(e[5] == 0.f);
  CHECK(std::isnan(e[6]));
  CHECK(e[7] == doctest::Approx(3.3931806e38).epsilon(1e-7));  // the largest finite results survive
  CHECK(e[8] == inf);
  CHECK(e[9] > 0.f);  // 2^-149.9: rounds to the smallest subnormal
  CHECK(e[10] == 0.f);
  CHECK(e[11] == inf);
  CHECK(e[12] == 0.f);
}

TEST_CASE("math: scale_pow2 is p 2^n exactly rounded, on the native registers and the portable path") {
  const auto check = [](auto tag) {
    using A = decltype(tag);
    using BA = tstream::arch::batch<float, A>;
    constexpr std::size_t WA = BA::size;
    alignas(64) float p[WA], n[WA], out[WA];
    for (int e = -150; e <= 128; ++e)
      for (float base : {0.5f, 0.70710677f, 1.f, 1.4142135f, 1.9999999f}) {
        for (std::size_t l = 0; l < WA; ++l) {
          p[l] = std::min(base * (1.f + float(l) * 1e-3f), 1.9999999f);  // p in [0.5, 2)
          n[l] = float(e);
        }
        tstream::arch::scale_pow2(BA::load_aligned(p), BA::load_aligned(n)).store_aligned(out);
        for (std::size_t l = 0; l < WA; ++l) {
          CAPTURE(e);
          CAPTURE(p[l]);
          REQUIRE(out[l] == std::ldexp(p[l], e));  // ldexp rounds once, to nearest even, and overflows to inf
        }
      }
  };
  check(tstream::arch::native{});
#if XSIMD_WITH_AVX2
  check(xsimd::avx2{});  // 8 lanes: the exponent-split path even on an AVX-512 build
#endif
}

TEST_CASE("math: exp2 is within 2e-7 relative below 127.5 and exactly 0 below -126") {
  const auto xs = sweep(-130.0, 127.4, 1e-3);
  const auto ys = apply(xs, [](const B& x) { return tstream::exp2(x); });
  for (std::size_t i = 0; i < xs.size(); ++i) {
    CAPTURE(xs[i]);
    if (xs[i] < -126.f) {
      REQUIRE(ys[i] == 0.f);
    } else {
      const double ref = std::exp2(double(xs[i]));
      REQUIRE(std::fabs(ys[i] - ref) <= 2e-7 * ref);
    }
  }
  const auto n = apply({-inf, std::numeric_limits<float>::quiet_NaN()}, [](const B& x) { return tstream::exp2(x); });
  CHECK(n[0] == 0.f);
  CHECK(std::isnan(n[1]));
}

TEST_CASE("math: exp2_fast is within 1.1e-4 relative on [-126, 0], 1 at 0, 0 below -126.5") {
  const auto xs = sweep(-126.0, 0.0, 1e-3);
  const auto ys = apply(xs, [](const B& x) { return tstream::exp2_fast(x); });
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const double ref = std::exp2(double(xs[i]));
    CAPTURE(xs[i]);
    REQUIRE(std::fabs(ys[i] - ref) <= 1.1e-4 * ref);
  }
  const auto e = apply({0.f, -127.f, -inf, std::numeric_limits<float>::quiet_NaN()},
                       [](const B& x) { return tstream::exp2_fast(x); });
  CHECK(e[0] == 1.f);
  CHECK(e[1] == 0.f);
  CHECK(e[2] == 0.f);
  CHECK(std::isnan(e[3]));
}

TEST_CASE("math: arch::byte_to_top is the lane's signed byte times 2^24, on every register width") {
  const auto check = [](auto tag) {
    using A = decltype(tag);
    using IA = tstream::arch::batch<std::int32_t, A>;
    constexpr std::size_t WA = IA::size;
    alignas(64) std::int32_t in[WA], out[4][WA];
    for (int base = 0; base < 256; base += int(WA)) {
      for (std::size_t l = 0; l < WA; ++l) {  // four different bytes per lane, every value in every position
        const unsigned b = unsigned(base) + unsigned(l);
        in[l] = std::int32_t(b | ((b * 7 + 1) & 255) << 8 | ((b * 13 + 2) & 255) << 16 | ((b * 29 + 3) & 255) << 24);
      }
      const IA v = IA::load_aligned(in);
      tstream::arch::byte_to_top<0>(v).store_aligned(out[0]);
      tstream::arch::byte_to_top<1>(v).store_aligned(out[1]);
      tstream::arch::byte_to_top<2>(v).store_aligned(out[2]);
      tstream::arch::byte_to_top<3>(v).store_aligned(out[3]);
      for (std::size_t l = 0; l < WA; ++l)
        for (int b = 0; b < 4; ++b) {
          const auto byte = std::int8_t(std::uint8_t(std::uint32_t(in[l]) >> (8 * b)));
          CAPTURE(in[l]);
          CAPTURE(b);
          REQUIRE(std::int64_t(out[b][l]) == std::int64_t(byte) * (std::int64_t(1) << 24));
        }
    }
  };
  check(tstream::arch::native{});
#if XSIMD_WITH_AVX2
  check(xsimd::avx2{});
#endif
#if XSIMD_WITH_SSE2
  check(xsimd::sse2{});
#endif
}

TEST_CASE("math: arch::max_keep_nan and clamp_keep_nan bound every number and keep a NaN") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> xs = {nan, -inf, -5.f, -1.f, 0.f, 2.f, 7.f, inf};
  const auto lo = apply(xs, [](const B& x) { return tstream::arch::max_keep_nan(B(-1.f), x); });
  const auto cl = apply(xs, [](const B& x) { return tstream::arch::clamp_keep_nan(x, B(-1.f), B(2.f)); });
  CHECK(std::isnan(lo[0]));
  CHECK(std::isnan(cl[0]));
  for (std::size_t i = 1; i < xs.size(); ++i) {
    CHECK(lo[i] == std::max(-1.f, xs[i]));
    CHECK(cl[i] == std::clamp(xs[i], -1.f, 2.f));
  }
}
