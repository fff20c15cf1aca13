// Streams: MEM -> VXM -> MEM chains against plain loops, at every tail.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "reliability/common.hpp"
#include "tstream/core/stream.hpp"
#include "tstream/units/mem.hpp"
#include "tstream/units/vxm.hpp"

namespace tmem = tstream::mem;
namespace vx = tstream::vxm;

TEST_CASE("stream: read | scale | add(bias) | silu | write equals the plain loop") {
  for (std::size_t n : {0, 1, 7, 319, 320, 321, 4097}) {
    CAPTURE(n);
    std::vector<float> x(n), b(n), y(n + 3, -7.0f);
    for (std::size_t i = 0; i < n; ++i) { x[i] = std::sin(float(i)) * 3; b[i] = std::cos(float(i)); }
    auto p = tmem::read(x) | vx::scale(2.0f) | vx::add(tmem::read(b)) | vx::silu{} |
             tmem::write(std::span<float>(y.data(), n));
    p.run();
    for (std::size_t i = 0; i < n; ++i) {
      const double t = 2.0 * x[i] + b[i];
      REQUIRE(y[i] == doctest::Approx(t / (1 + std::exp(-t))).epsilon(1e-5));
    }
    for (std::size_t i = n; i < n + 3; ++i) REQUIRE(y[i] == -7.0f);  // nothing written past the sink
  }
}

TEST_CASE("stream: SwiGLU, read(gate) | silu | mul(read(up)) | write, equals the plain loop") {
  for (std::size_t n : {0, 1, 7, 319, 320, 321, 4097}) {
    CAPTURE(n);
    std::vector<float> g(n), u(n), y(n + 3, -7.0f);
    for (std::size_t i = 0; i < n; ++i) { g[i] = std::sin(float(i)) * 4; u[i] = std::cos(float(i) * 0.7f); }
    (tmem::read(g) | vx::silu{} | vx::mul(tmem::read(u)) | tmem::write(std::span<float>(y.data(), n))).run();
    for (std::size_t i = 0; i < n; ++i) {
      const double s = g[i] / (1 + std::exp(-double(g[i])));
      REQUIRE(y[i] == doctest::Approx(s * u[i]).epsilon(1e-6));
    }
    for (std::size_t i = n; i < n + 3; ++i) REQUIRE(y[i] == -7.0f);
  }
  std::vector<float> x = {1, -2, 3}, y(3);
  (tmem::read(x) | vx::mul(2.0f) | tmem::write(y)).run();  // a scalar: scale
  CHECK(y == std::vector<float>{2, -4, 6});
}

TEST_CASE("stream: relu, gelu and then() compose") {
  std::vector<float> x = {-2, -0.5f, 0, 0.5f, 2, 10};
  std::vector<float> y(x.size());
  (tmem::read(x) | vx::then(vx::relu{}, vx::add(1.0f)) | tmem::write(y)).run();
  for (std::size_t i = 0; i < x.size(); ++i) CHECK(y[i] == std::max(x[i], 0.0f) + 1.0f);
  (tmem::read(x) | vx::gelu{} | tmem::write(y)).run();
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = x[i], g = 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
    CHECK(y[i] == doctest::Approx(g).epsilon(1e-5));
  }
}

namespace {
using rel::vec_only;

template <std::size_t L>
void check_paths_agree() {
  CAPTURE(L);
  for (std::size_t n : {0, 1, 7, 15, 16, 17, 319, 320, 321, 4097}) {
    CAPTURE(n);
    std::vector<float> x(n), b(n);
    for (std::size_t i = 0; i < n; ++i) { x[i] = std::sin(float(i)) * 6; b[i] = std::cos(float(i)); }
    const auto stage = vx::then(vx::then(vx::scale(2.0f), vx::add(tmem::read<L>(b))),
                                vx::then(vx::then(vx::gelu{}, vx::silu{}), vx::mul(tmem::read<L>(x))));
    std::vector<float> fused(n + 3, -7.0f), by_vec(n + 3, -7.0f);
    auto p1 = tmem::read<L>(x) | stage | vx::relu{} | tmem::write<L>(std::span<float>(fused.data(), n));
    auto p2 = tmem::read<L>(x) | vec_only{stage} | vx::relu{} | tmem::write<L>(std::span<float>(by_vec.data(), n));
    static_assert(tstream::superlane_source<std::remove_cvref_t<decltype(tmem::read<L>(x) | stage)>>);
    static_assert(!tstream::superlane_source<std::remove_cvref_t<decltype(tmem::read<L>(x) | vec_only{stage})>>);
    p1.run();
    p2.run();
    for (std::size_t i = 0; i < n + 3; ++i) {
      CAPTURE(i);
      REQUIRE(std::bit_cast<std::uint32_t>(fused[i]) == std::bit_cast<std::uint32_t>(by_vec[i]));
    }
    for (std::size_t i = n; i < n + 3; ++i) REQUIRE(fused[i] == -7.0f);  // nothing written past the sink
  }
}
}  // namespace

// Streams of different lane counts do not compose: add(read<7>) takes only vec<float, 7>.
static_assert(tstream::stage_for<tstream::vxm::add_stream<tstream::mem::reader<const float, 7>>, tstream::vec<float, 7>>);
static_assert(!tstream::stage_for<tstream::vxm::add_stream<tstream::mem::reader<const float, 7>>, tstream::vec<float, 16>>);
static_assert(!tstream::stage_for<tstream::vxm::mul_stream<tstream::mem::reader<const float, 7>>, tstream::vec<float, 16>>);

TEST_CASE("stream: the superlane path (every node has it) and the vec path give the same bits") {
  check_paths_agree<320>();
  check_paths_agree<7>();   // a vec narrower than a register: one partial superlane per chunk
  check_paths_agree<40>();  // whole registers and a partial last one (AVX-512: 16 + 16 + 8)
}

TEST_CASE("stream: silu and gelu are within their documented error of a double-precision reference") {
  // docs/bad-input.md: silu within 5e-7 relative + 1e-36; gelu within 2^-22
  // |x|, and 2e-6 relative where x >= -3 (measured 1.6e-7, 1.1e-7 |x| and
  // 7.3e-7 over this sweep).
  std::vector<float> x;
  for (int i = -100000; i <= 100000; ++i) x.push_back(float(i) * 1e-3f);
  std::vector<float> y(x.size());
  (tmem::read(x) | vx::silu{} | tmem::write(y)).run();
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = x[i], ref = v / (1 + std::exp(-v));
    CAPTURE(v);
    REQUIRE(std::fabs(y[i] - ref) <= 5e-7 * std::fabs(ref) + 1e-36);
  }
  (tmem::read(x) | vx::gelu{} | tmem::write(y)).run();
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = x[i], ref = 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
    CAPTURE(v);
    REQUIRE(std::fabs(y[i] - ref) <= std::ldexp(std::fabs(v), -22));
    if (v >= -3) REQUIRE(std::fabs(y[i] - ref) <= 2e-6 * std::fabs(ref));
  }
}

TEST_CASE("stream: a sink smaller than the source is an error and writes nothing") {
  std::vector<float> x(10, 1.0f), y(9, 0.0f);
  auto p = tmem::read(x) | tmem::write(y);
  CHECK_THROWS_WITH_AS(p.run(), "tstream::pipeline::run: the sink holds 9 elements, the source streams 10", tstream::error);
  for (float v : y) CHECK(v == 0.0f);
}

TEST_CASE("stream: NaN and infinity propagate through VXM stages as documented") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x = {nan, inf, -inf}, y(3);
  (tmem::read(x) | vx::silu{} | tmem::write(y)).run();
  CHECK(std::isnan(y[0]));
  CHECK(y[1] == inf);
  CHECK(y[2] == 0.0f);
  CHECK(std::signbit(y[2]));  // -0: the limit from below
  (tmem::read(x) | vx::gelu{} | tmem::write(y)).run();
  CHECK(std::isnan(y[0]));
  CHECK(y[1] == inf);
  CHECK(y[2] == 0.0f);
  CHECK(std::signbit(y[2]));
  (tmem::read(x) | vx::relu{} | tmem::write(y)).run();
  CHECK(std::isnan(y[0]));
  CHECK(y[1] == inf);
  CHECK(y[2] == 0.0f);
}
