// vec<T, Lanes>: lane-wise arithmetic, masked tails and reductions against
// plain loops, over lane counts that are and are not multiples of a register.
#include <doctest/doctest.h>

#include "reliability/common.hpp"
#include "tstream/arch/cpu.hpp"

#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "tstream/core/vec.hpp"

using tstream::vec;

namespace {

using rel::ref_fma;

template <class T>
std::vector<T> random_values(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> d(-4.0, 4.0);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(d(gen));
  return v;
}

template <std::size_t L>
void check_lanes() {
  using V = vec<float, L>;
  CAPTURE(L);
  const auto a = random_values<float>(L, 1), b = random_values<float>(L, 2), c = random_values<float>(L, 3);
  const V va = V::load(a.data()), vb = V::load(b.data()), vc = V::load(c.data());

  std::vector<float> out(L);
  (va + vb).store(out.data());
  for (std::size_t i = 0; i < L; ++i) REQUIRE(out[i] == a[i] + b[i]);
  (va * vb - vc).store(out.data());
  for (std::size_t i = 0; i < L; ++i) REQUIRE(out[i] == a[i] * b[i] - c[i]);
  fma(va, vb, vc).store(out.data());
  for (std::size_t i = 0; i < L; ++i) { CAPTURE(i); CAPTURE(a[i]); CAPTURE(b[i]); CAPTURE(c[i]); REQUIRE(out[i] == ref_fma(a[i], b[i], c[i])); }
  max(va, vb).store(out.data());
  for (std::size_t i = 0; i < L; ++i) REQUIRE(out[i] == std::max(a[i], b[i]));
  (va / 2.0f).store(out.data());
  for (std::size_t i = 0; i < L; ++i) REQUIRE(out[i] == a[i] / 2.0f);

  // Reductions: the sum in double bounds the fp32 result; max/min are exact.
  double sum = 0, abs_sum = 0;
  for (float x : a) { sum += x; abs_sum += std::fabs(x); }
  CHECK(std::fabs(double(reduce_add(va)) - sum) <= 1e-6 * abs_sum + 1e-6);
  CHECK(reduce_max(va) == *std::max_element(a.begin(), a.end()));
  CHECK(reduce_min(va) == *std::min_element(a.begin(), a.end()));

  // Spare lanes of a partial last superlane never leak into reductions.
  const V ones(1.0f);
  CHECK(reduce_add(ones) == float(L));
  CHECK(reduce_max(V(-3.0f)) == -3.0f);
  CHECK(reduce_min(V(3.0f)) == 3.0f);

  // Broadcast and lane access.
  const V seven(7.0f);
  for (std::size_t i = 0; i < L; i += (L / 5 + 1)) CHECK(seven.lane(i) == 7.0f);
}

// Loading n < L elements zero-fills; storing n writes exactly n.
template <std::size_t L>
void check_tails() {
  using V = vec<float, L>;
  CAPTURE(L);
  const auto a = random_values<float>(L, 4);
  for (std::size_t n : {std::size_t(0), std::size_t(1), L / 2, L > 1 ? L - 1 : 0, L, L + 5}) {
    CAPTURE(n);
    const std::size_t m = std::min(n, L);
    const V v = V::load(a.data(), m);
    for (std::size_t i = 0; i < L; ++i) REQUIRE(v.lane(i) == (i < m ? a[i] : 0.0f));
    std::vector<float> out(L + 8, -1.0f);
    V(2.0f).store(out.data(), n);
    for (std::size_t i = 0; i < L + 8; ++i) REQUIRE(out[i] == (i < m ? 2.0f : -1.0f));
  }
}

}  // namespace

TEST_CASE("vec: lane-wise arithmetic and reductions match plain loops") {
  check_lanes<1>();
  check_lanes<7>();
  check_lanes<16>();
  check_lanes<319>();
  check_lanes<320>();
  check_lanes<321>();
  check_lanes<4097>();
}

TEST_CASE("vec: masked tail loads and stores touch exactly n elements") {
  check_tails<1>();
  check_tails<7>();
  check_tails<16>();
  check_tails<319>();
  check_tails<320>();
  check_tails<321>();
}

TEST_CASE("vec: the default is the TSP's 320 lanes") {
  using V = vec<float>;
  static_assert(V::lanes == 320);
  static_assert(V::superlanes * V::superlane_width >= 320);
  CHECK(V::superlanes == (320 + V::superlane_width - 1) / V::superlane_width);
}

TEST_CASE("vec: byte lanes: masked tails of 1-byte types (64 to a 512-bit register) touch exactly n elements") {
  using V = vec<std::int8_t, 100>;
  std::vector<std::int8_t> a(100);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<std::int8_t>(int(i % 251) - 100);
  for (std::size_t n : {0, 1, 7, 15, 16, 17, 31, 32, 40, 63, 64, 65, 99, 100}) {
    CAPTURE(n);
    const V v = V::load(a.data(), n);  // a tail of 32 to 63 bytes in one register: no mask wider than the lanes
    for (std::size_t i = 0; i < 100; ++i) REQUIRE(v.lane(i) == (i < n ? a[i] : 0));
    std::vector<std::int8_t> out(110, -1);
    V(std::int8_t(5)).store(out.data(), n);
    for (std::size_t i = 0; i < out.size(); ++i) REQUIRE(out[i] == (i < n ? 5 : -1));
  }
}

TEST_CASE("vec: integer lanes") {
  using V = vec<std::int32_t, 37>;
  std::vector<std::int32_t> a(37);
  std::iota(a.begin(), a.end(), -10);
  const V v = V::load(a.data());
  CHECK(reduce_add(v) == std::accumulate(a.begin(), a.end(), 0));
  CHECK(reduce_max(v) == 26);
  CHECK(reduce_min(v) == -10);
}
