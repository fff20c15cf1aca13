// core/math.hpp: the lane-wise exponentials against double-precision
// std::exp / std::exp2, over their whole documented ranges and at the edges.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

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
