// Streams: MEM -> VXM -> MEM chains against plain loops, at every tail.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

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
  (tmem::read(x) | vx::relu{} | tmem::write(y)).run();
  CHECK(std::isnan(y[0]));
  CHECK(y[1] == inf);
  CHECK(y[2] == 0.0f);
}
