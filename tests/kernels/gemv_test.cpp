// GEMV against plain-loop references: bitwise against loops that do the
// kernel's own arithmetic in the kernel's order, and within stated
// tolerances against a double-precision Eigen reference. Awkward shapes,
// every type and mode, thread counts, batches and every bad input.
#include <doctest/doctest.h>

#include "tstream/arch/cpu.hpp"

#include <Eigen/Dense>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "reliability/common.hpp"
#include "tstream/kernels/gemv/gemv.hpp"

using tstream::bf16;
using tstream::index_t;
using tstream::matrix_view;
using tstream::precision;
using tstream::resident_weights;

namespace {

using rel::ref_fma;

struct shape { index_t n, k; };
const shape awkward_shapes[] = {{1, 1}, {7, 5}, {1, 4097}, {33, 3}, {319, 321}, {320, 320}, {321, 4097}, {700, 67}, {4097, 7}, {7, 319}};

using rel::random_vector;

// Weights as the kernel sees them, dequantized, and the kernel's exact arithmetic.
struct reference {
  index_t n, k;
  std::vector<float> w;      // effective fp32 weights (bf16-rounded; or codes for int8)
  std::vector<float> scale;  // int8 only

  template <class W>
  static reference of(const std::vector<float>& w32, index_t n, index_t k) {
    reference r{n, k, w32, {}};
    if constexpr (std::is_same_v<W, bf16>) {
      for (auto& v : r.w) v = float(bf16(v));
    } else if constexpr (std::is_same_v<W, std::int8_t>) {
      const auto q = tstream::quantize_rows(matrix_view<const float>(w32.data(), n, k));
      r.scale.assign(q.scale.data(), q.scale.data() + n);
      for (std::size_t i = 0; i < r.w.size(); ++i) r.w[i] = float(q.q[i]);
    }
    return r;
  }
  // fp32 fma chain in k order (then the int8 row scale): what exact mode computes.
  std::vector<float> exact(const float* x) const {
    std::vector<float> y(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) {
      float acc = 0;
      for (index_t j = 0; j < k; ++j) acc = ref_fma(w[std::size_t(i * k + j)], x[j], acc);
      y[std::size_t(i)] = scale.empty() ? acc : acc * scale[std::size_t(i)];
    }
    return y;
  }
  // bf16 fast mode: x rounded to bf16, pairs summed odd product first.
  std::vector<float> bf16_fast(const float* x) const {
    std::vector<float> y(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) {
      float acc = 0;
      for (index_t j = 0; j < k; j += 2) {
        const float* wr = &w[std::size_t(i * k)];
        if (j + 1 < k) acc = ref_fma(wr[j + 1], float(bf16(x[j + 1])), acc);
        else acc = ref_fma(0.f, 0.f, acc);
        acc = ref_fma(wr[j], float(bf16(x[j])), acc);
      }
      y[std::size_t(i)] = acc;
    }
    return y;
  }
  // int8 fast mode: x quantized per vector, exact integer sums.
  std::vector<float> i8_fast(const float* x) const {
    float amax = 0;
    for (index_t j = 0; j < k; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float inv = amax > 0 ? 127.f / amax : 0.f, sx = amax / 127.f;
    std::vector<float> y(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) {
      std::int64_t acc = 0;
      for (index_t j = 0; j < k; ++j) acc += std::int64_t(w[std::size_t(i * k + j)]) * tstream::quantize_value(x[j], inv);
      y[std::size_t(i)] = float(acc) * (scale[std::size_t(i)] * sx);
    }
    return y;
  }
};

// The true product in double, from the original fp32 weights (Eigen).
std::vector<double> true_product(const std::vector<float>& w32, const float* x, index_t n, index_t k) {
  Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> W(w32.data(), n, k);
  Eigen::Map<const Eigen::VectorXf> X(x, k);
  const Eigen::VectorXd y = W.cast<double>() * X.cast<double>();
  return {y.data(), y.data() + n};
}

template <class W>
void check_against_references(precision mode) {
  for (const auto s : awkward_shapes) {
    CAPTURE(s.n);
    CAPTURE(s.k);
    const auto w32 = random_vector(std::size_t(s.n * s.k), unsigned(s.n * 7 + s.k));
    const auto x = random_vector(std::size_t(s.k), unsigned(s.k + 1));
    const auto ref = reference::of<W>(w32, s.n, s.k);
    tstream::thread_team team(2);
    const resident_weights<W> rw(matrix_view<const float>(w32.data(), s.n, s.k), team.size());
    std::vector<float> y(static_cast<std::size_t>(s.n), -1.f);
    tstream::gemv(team, rw, x, y, tstream::vxm::identity{}, {mode});

    std::vector<float> expect;
    if (mode == precision::exact || std::is_same_v<W, float>) expect = ref.exact(x.data());
    else if constexpr (std::is_same_v<W, bf16>) expect = ref.bf16_fast(x.data());
    else expect = ref.i8_fast(x.data());
    for (index_t i = 0; i < s.n; ++i) {
      CAPTURE(i);
      REQUIRE(y[std::size_t(i)] == expect[std::size_t(i)]);  // bitwise: same arithmetic, same order
    }

    // Accuracy against the true product, relative to sum |w x| (the scale of
    // the rounding errors): the tolerances the README states.
    const double tol = std::is_same_v<W, float> ? 1e-6 * std::sqrt(double(s.k))
                       : std::is_same_v<W, bf16> ? (mode == precision::exact ? 8e-3 : 1.2e-2)
                                                 : (mode == precision::exact ? 1.6e-2 : 3.2e-2);
    const auto truth = true_product(w32, x.data(), s.n, s.k);
    for (index_t i = 0; i < s.n; ++i) {
      double mag = 0;
      for (index_t j = 0; j < s.k; ++j) mag += std::fabs(double(w32[std::size_t(i * s.k + j)]) * x[std::size_t(j)]);
      CAPTURE(i);
      REQUIRE(std::fabs(y[std::size_t(i)] - truth[std::size_t(i)]) <= tol * mag + 1e-30);
    }
  }
}

}  // namespace

TEST_CASE("gemv f32: bitwise equal to the k-ordered fma loop, accurate against double") {
  check_against_references<float>(precision::exact);
}
TEST_CASE("gemv bf16 exact: widened weights, fp32 activations") { check_against_references<bf16>(precision::exact); }
TEST_CASE("gemv bf16 fast: bf16 dot products") { check_against_references<bf16>(precision::fast); }
TEST_CASE("gemv int8 exact: widened weights, fp32 activations") {
  check_against_references<std::int8_t>(precision::exact);
}
TEST_CASE("gemv int8 fast: u8 x s8 dot products, integer-exact") {
  check_against_references<std::int8_t>(precision::fast);
}

TEST_CASE("resident_weights: scales and row sums exist for int8 only") {
  const auto w = random_vector(std::size_t(7 * 5), 31);
  const matrix_view<const float> v(w.data(), 7, 5);
  const resident_weights<float> f(v);
  const resident_weights<bf16> b(v);
  const resident_weights<std::int8_t> q(v);
  CHECK(f.scales() == nullptr);
  CHECK(f.row_sums() == nullptr);
  CHECK(b.scales() == nullptr);
  CHECK(b.row_sums() == nullptr);
  CHECK(q.scales() != nullptr);
  CHECK(q.row_sums() != nullptr);
}

TEST_CASE("resident_weights: each panel is up to four sub-panels of whole 16-row granules, at panel_index") {
  // Sub-panel sizes in granules, as even as whole granules allow.
  CHECK(tstream::stream_granules(20, 0) == 5);
  CHECK(tstream::stream_granules(20, 3) == 5);
  CHECK(tstream::stream_granules(7, 0) == 2);
  CHECK(tstream::stream_granules(7, 2) == 2);
  CHECK(tstream::stream_granules(7, 3) == 1);
  CHECK(tstream::stream_granules(3, 2) == 1);
  CHECK(tstream::stream_granules(3, 3) == 0);
  CHECK(tstream::stream_first_granule(7, 3) == 6);
  CHECK(tstream::stream_granules(19, 3) == 4);
  // Every stored element where panel_index says, padding zero, K with a
  // partial group: one share, N = 16 g and 16 g - 5 for g = 1..20 granules
  // (one panel of g granules where the registers hold it; AVX2 cuts more),
  // and two shares of an uneven N.
  std::vector<std::pair<index_t, int>> cases = {{700, 2}, {321, 2}};
  for (index_t g = 1; g <= 20; ++g) {
    cases.push_back({16 * g, 1});
    cases.push_back({16 * g - 5, 1});
  }
  for (const auto& [n, shares] : cases) {
    CAPTURE(n);
    const index_t k = 7;
    const auto w = random_vector(std::size_t(n * k), 33);
    const resident_weights<bf16> rw(matrix_view<const float>(w.data(), n, k), shares);
    if (shares == 1 && n <= index_t(tstream::arch::accumulator_registers * tstream::arch::width<float>))
      CHECK(rw.panels().size() == 1);
    const std::size_t kp = std::size_t(rw.padded_cols());
    std::size_t checked = 0;
    for (const auto& p : rw.panels()) {
      for (index_t r = 0; r < p.padded_rows; ++r)
        for (std::size_t c = 0; c < kp; ++c, ++checked) {
          const std::uint16_t want = r < p.rows && index_t(c) < k ? bf16(w[std::size_t((p.row_begin + r) * k) + c]).bits : 0;
          REQUIRE(rw.data()[p.offset + tstream::panel_index(int(p.padded_rows), kp, 2, int(r), c)] == want);
        }
    }
    std::size_t padded = 0;
    for (const auto& p : rw.panels()) padded += std::size_t(p.padded_rows) * kp;
    CHECK(checked == padded);
  }
}

TEST_CASE_TEMPLATE("gemv: bitwise identical for every thread count and share count", W, float, bf16, std::int8_t) {
  const index_t n = 1000, k = 333;
  const auto w32 = random_vector(std::size_t(n * k), 11);
  const auto x = random_vector(std::size_t(k), 12);
  for (precision mode : {precision::exact, precision::fast}) {
    std::vector<float> first;
    for (int shares : {1, 2, 3}) {
      const resident_weights<W> rw(matrix_view<const float>(w32.data(), n, k), shares);
      for (int t : {1, 2, 3, 4, 7}) {
        CAPTURE(shares);
        CAPTURE(t);
        tstream::thread_team team(t);
        std::vector<float> y(static_cast<std::size_t>(n));
        tstream::gemv(team, rw, x, y, tstream::vxm::identity{}, {mode});
        if (first.empty()) first = y;
        REQUIRE(std::memcmp(y.data(), first.data(), y.size() * sizeof(float)) == 0);
      }
    }
  }
}

TEST_CASE_TEMPLATE("gemv: a batch row equals the single-vector result, bitwise", W, float, bf16, std::int8_t) {
  for (const auto s : {shape{321, 4097}, shape{700, 67}, shape{7, 5}}) {
    CAPTURE(s.n);
    CAPTURE(s.k);
    const auto w32 = random_vector(std::size_t(s.n * s.k), 21);
    tstream::thread_team team(2);
    const resident_weights<W> rw(matrix_view<const float>(w32.data(), s.n, s.k), 2);
    for (index_t m : {1, 2, 5, 16, 17}) {
      CAPTURE(m);
      const index_t ldx = s.k + 3;  // strided batch
      const auto xs = random_vector(std::size_t(m * ldx), unsigned(m));
      std::vector<float> ys(static_cast<std::size_t>(m * s.n));
      for (precision mode : {precision::exact, precision::fast}) {
        tstream::gemv(team, rw, matrix_view<const float>(xs.data(), m, s.k, ldx), matrix_view<float>(ys.data(), m, s.n),
                      tstream::vxm::identity{}, {mode});
        for (index_t r = 0; r < m; ++r) {
          std::vector<float> y1(static_cast<std::size_t>(s.n));
          tstream::gemv(team, rw, std::span<const float>(xs.data() + r * ldx, std::size_t(s.k)), y1,
                        tstream::vxm::identity{}, {mode});
          REQUIRE(std::memcmp(y1.data(), ys.data() + r * s.n, y1.size() * sizeof(float)) == 0);
        }
      }
    }
  }
}

TEST_CASE("gemv: bias and a fused epilogue (bias + SiLU) match the plain loop") {
  const index_t n = 321, k = 77;
  const auto w32 = random_vector(std::size_t(n * k), 31);
  const auto x = random_vector(std::size_t(k), 32);
  const auto b = random_vector(std::size_t(n), 33);
  tstream::thread_team team(2);
  const resident_weights<float> rw(matrix_view<const float>(w32.data(), n, k), 2);
  const auto base = reference::of<float>(w32, n, k).exact(x.data());
  std::vector<float> y(static_cast<std::size_t>(n));
  tstream::gemv(team, rw, x, y, std::span<const float>(b));
  for (index_t i = 0; i < n; ++i) REQUIRE(y[std::size_t(i)] == base[std::size_t(i)] + b[std::size_t(i)]);
  namespace vxm = tstream::vxm;
  tstream::gemv(team, rw, x, y, vxm::then(vxm::add(tstream::mem::read(b)), vxm::silu{}));
  for (index_t i = 0; i < n; ++i) {
    const double t = double(base[std::size_t(i)] + b[std::size_t(i)]);
    REQUIRE(y[std::size_t(i)] == doctest::Approx(t / (1 + std::exp(-t))).epsilon(1e-5));
  }
  // A stage with only the vec form takes the vec path: the same bits.
  std::vector<float> by_vec(y.size());
  tstream::gemv(team, rw, x, by_vec, rel::vec_only{vxm::then(vxm::add(tstream::mem::read(b)), vxm::silu{})});
  REQUIRE(rel::same_bits(by_vec, y));
}

TEST_CASE("gemv: shares are contiguous, balanced and report where they live") {
  const index_t n = 1000, k = 64;
  const auto w32 = random_vector(std::size_t(n * k), 41);
  const resident_weights<float> rw(matrix_view<const float>(w32.data(), n, k), 3);
  CHECK(rw.shares() == 3);
  index_t next = 0;
  for (int s = 0; s < 3; ++s) {
    CHECK(rw.share(s).rows.begin == next);
    CHECK(rw.share(s).rows.begin % 16 == 0);
    next = rw.share(s).rows.end;
    CHECK(rw.share(s).rows.size() >= 320);
    CHECK(rw.share(s).level == tstream::residency(rw.share(s).bytes, 3));
  }
  CHECK(next == n);
  for (const auto& p : rw.panels()) {
    CHECK(p.padded_rows % 16 == 0);
    CHECK(p.padded_rows <= 320);
  }
  // A 1 MiB share is L2 or L3 here; a 64 GiB one never fits.
  CHECK(tstream::residency(std::size_t(64) << 30, 1) == tstream::memory_level::dram);
  CHECK(tstream::residency(1024, 1) == tstream::memory_level::l1);
}

TEST_CASE("gemv: NaN in x or in a weight row propagates as documented") {
  const index_t n = 40, k = 9;
  auto w32 = random_vector(std::size_t(n * k), 51);
  w32[5 * k + 2] = std::numeric_limits<float>::quiet_NaN();
  auto x = random_vector(std::size_t(k), 52);
  tstream::thread_team team(1);
  const resident_weights<float> rw(matrix_view<const float>(w32.data(), n, k));
  std::vector<float> y(static_cast<std::size_t>(n));
  tstream::gemv(team, rw, x, y);
  for (index_t i = 0; i < n; ++i) CHECK(std::isnan(y[std::size_t(i)]) == (i == 5));
  x[3] = std::numeric_limits<float>::infinity();
  const auto w8 = random_vector(std::size_t(n * k), 53);
  const resident_weights<std::int8_t> r8(matrix_view<const float>(w8.data(), n, k));
  tstream::gemv(team, r8, x, y, tstream::vxm::identity{}, {precision::fast});
  for (float v : y) CHECK(std::isnan(v));
}

TEST_CASE("gemv int8 fast: a code sum of 0 is 0 even where x's scale x the row's scale overflows fp32") {
  // x's scale 3e38 / 127 times row 0's 1.9e38 / 127 is beyond fp32; x's large
  // value meets row 0's zeros and row 0's large value meets an x value that
  // codes to 0: the sum is 0 (it was 0 x inf = NaN). Exact mode does not
  // quantize x: 1.9e38 x 1e-3.
  const index_t n = 3, k = 16;
  std::vector<float> w(std::size_t(n * k), 0.25f), x(std::size_t(k), 0.5f), y(static_cast<std::size_t>(n));
  std::fill(w.begin(), w.begin() + k, 0.f);
  w[10] = 1.9e38f;
  x[4] = 3e38f;
  x[10] = 1e-3f;
  tstream::thread_team team(1);
  const resident_weights<std::int8_t> r8(matrix_view<const float>(w.data(), n, k));
  tstream::gemv(team, r8, x, y, tstream::vxm::identity{}, {precision::fast});
  CHECK(y[0] == 0.f);
  tstream::gemv(team, r8, x, y, tstream::vxm::identity{}, {precision::exact});
  CHECK(y[0] == doctest::Approx(1.9e35).epsilon(1e-2));
  // Pre-quantized rows may have negative scales: -1.5e36 x x's scale is
  // below -FLT_MAX, held there; a code sum of 0 is still 0, of 127 -inf.
  std::vector<std::int8_t> q(std::size_t(2 * k), 0);
  q[std::size_t(k + 4)] = 1;  // row 1 meets x's large value (code 127): a true overflow
  const std::vector<float> scales = {-1.5e36f, -1.5e36f};
  const resident_weights<std::int8_t> rq(matrix_view<const std::int8_t>(q.data(), 2, k), scales);
  std::vector<float> y2(2);
  tstream::gemv(team, rq, x, y2, tstream::vxm::identity{}, {precision::fast});
  CHECK(y2[0] == 0.f);
  CHECK(y2[1] == -std::numeric_limits<float>::infinity());
}

TEST_CASE("gemv: bad input throws tstream::error naming the argument and writes nothing") {
  const index_t n = 8, k = 4096;
  const auto w32 = random_vector(std::size_t(n * k), 61);
  tstream::thread_team team(2);
  const resident_weights<float> rw(matrix_view<const float>(w32.data(), n, k), 2);
  std::vector<float> x(static_cast<std::size_t>(k), 1.f), y(std::size_t(n), 42.f);
  auto untouched = [&] { for (float v : y) REQUIRE(v == 42.f); };

  CHECK_THROWS_WITH_AS(tstream::gemv(team, rw, std::span<const float>(x.data(), 4095), y),
                       "tstream::gemv: x has 4095 elements, W has K = 4096", tstream::error);
  untouched();
  CHECK_THROWS_WITH_AS(tstream::gemv(team, rw, x, std::span<float>(y.data(), 7)),
                       "tstream::gemv: y has 7 elements, W has N = 8", tstream::error);
  untouched();
  CHECK_THROWS_WITH_AS(tstream::gemv(team, rw, std::span<const float>(static_cast<const float*>(nullptr), 4096), y),
                       "tstream::gemv: x is null", tstream::error);
  std::vector<float> b(7);
  CHECK_THROWS_WITH_AS(tstream::gemv(team, rw, x, y, std::span<const float>(b)),
                       "tstream::gemv: bias has 7 elements, W has N = 8", tstream::error);
  untouched();
  // Output aliasing the input.
  std::vector<float> both(static_cast<std::size_t>(k + n));
  CHECK_THROWS_WITH_AS(tstream::gemv(team, rw, std::span<const float>(both.data(), std::size_t(k)),
                                     std::span<float>(both.data() + k - 1, std::size_t(n))),
                       "tstream::gemv: y overlaps x (the output must not alias the input)", tstream::error);
  // Batch shapes.
  std::vector<float> xs(static_cast<std::size_t>(3 * k)), ys(std::size_t(2 * n), 42.f);
  CHECK_THROWS_WITH_AS(tstream::gemv(team, rw, matrix_view<const float>(xs.data(), 3, k), matrix_view<float>(ys.data(), 2, n)),
                       "tstream::gemv: X has 3 rows (vectors), Y has 2", tstream::error);
  CHECK_THROWS_WITH_AS(tstream::gemv(team, rw, matrix_view<const float>(xs.data(), 2, k - 1), matrix_view<float>(ys.data(), 2, n)),
                       "tstream::gemv: X has 4095 columns, W has K = 4096", tstream::error);
  for (float v : ys) REQUIRE(v == 42.f);

  // Construction.
  CHECK_THROWS_WITH_AS(resident_weights<float>(matrix_view<const float>(w32.data(), 8, 0)),
                       "tstream::resident_weights: w has K = 0 columns (K must be at least 1)", tstream::error);
  CHECK_THROWS_WITH_AS(resident_weights<float>(matrix_view<const float>(w32.data(), 8, 16), 0),
                       "tstream::resident_weights: shares = 0 is outside [1, 1024]", tstream::error);
  std::vector<std::int8_t> q(16, 1);
  std::vector<float> scales = {1.f, std::numeric_limits<float>::infinity()};
  CHECK_THROWS_WITH_AS(resident_weights<std::int8_t>(matrix_view<const std::int8_t>(q.data(), 2, 8), scales),
                       "tstream::resident_weights: scales[1] = inf is not finite", tstream::error);
  CHECK_THROWS_WITH_AS(resident_weights<std::int8_t>(matrix_view<const std::int8_t>(q.data(), 2, 8), std::span(scales.data(), 1)),
                       "tstream::resident_weights: scales has 1 elements, w has N = 2 rows", tstream::error);
  auto bad = w32;
  bad[3] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH_AS(resident_weights<std::int8_t>(matrix_view<const float>(bad.data(), 2, 8)),
                       "tstream::quantize_rows: w(0, 3) = nan is not finite", tstream::error);
}

TEST_CASE("gemv: empty N is a no-op; pre-quantized int8 and bf16 inputs pack like converted ones") {
  tstream::thread_team team(1);
  const auto w32 = random_vector(64 * 10, 71);
  const resident_weights<float> empty(matrix_view<const float>(w32.data(), 0, 10));
  std::vector<float> x(10, 1.f), y;
  tstream::gemv(team, empty, x, y);

  const auto q = tstream::quantize_rows(matrix_view<const float>(w32.data(), 64, 10));
  const resident_weights<std::int8_t> a(matrix_view<const float>(w32.data(), 64, 10));
  const resident_weights<std::int8_t> b(q.view(), q.scales());
  std::vector<float> ya(64), yb(64);
  tstream::gemv(team, a, x, ya);
  tstream::gemv(team, b, x, yb);
  CHECK(ya == yb);

  std::vector<bf16> wb(w32.size());
  for (std::size_t i = 0; i < wb.size(); ++i) wb[i] = bf16(w32[i]);
  const resident_weights<bf16> c(matrix_view<const float>(w32.data(), 64, 10));
  const resident_weights<bf16> d(matrix_view<const bf16>(wb.data(), 64, 10));
  tstream::gemv(team, c, x, ya);
  tstream::gemv(team, d, x, yb);
  CHECK(ya == yb);
}

TEST_CASE("quantize_value: std::round's rounding (ties away from zero), clamped to [-127, 127]") {
  for (float inv : {1.f, 0.5f, 127.f / 3.f, 1e-3f}) {
    for (int i = -400000; i <= 400000; i += 7) {
      const float v = float(i) * 0.001f;
      const float r = std::round(v * inv);
      const int expect = int(std::clamp(r, -127.f, 127.f));
      CAPTURE(v);
      REQUIRE(int(tstream::quantize_value(v, inv)) == expect);
    }
  }
  CHECK(tstream::quantize_value(0.5f, 1.f) == 1);
  CHECK(tstream::quantize_value(-0.5f, 1.f) == -1);
  CHECK(tstream::quantize_value(2.5f, 1.f) == 3);
  CHECK(tstream::quantize_value(1e30f, 1.f) == 127);
  CHECK(tstream::quantize_value(-1e30f, 1.f) == -127);
}

TEST_CASE("quantize_rows: codes and scales match the definition") {
  const index_t n = 5, k = 9;
  auto w = random_vector(std::size_t(n * k), 81, -3.f, 3.f);
  for (index_t j = 0; j < k; ++j) w[std::size_t(2 * k + j)] = 0.f;  // a zero row
  const auto q = tstream::quantize_rows(matrix_view<const float>(w.data(), n, k));
  for (index_t i = 0; i < n; ++i) {
    float amax = 0;
    for (index_t j = 0; j < k; ++j) amax = std::max(amax, std::fabs(w[std::size_t(i * k + j)]));
    CHECK(q.scale[std::size_t(i)] == amax / 127.f);
    for (index_t j = 0; j < k; ++j) {
      const float v = w[std::size_t(i * k + j)];
      CHECK(std::fabs(float(q.q[std::size_t(i * k + j)]) * q.scale[std::size_t(i)] - v) <= amax / 254.f * 1.0001f);
    }
  }
  CHECK(q.scale[2] == 0.f);
}

TEST_CASE("activation encodings: the vectorized bf16 rounding and u8 quantization give the scalar definitions' bits") {
  // Ties of the u8 rounding (+-k.5 after scaling), values past the clamp,
  // zeros, denormals, and lengths around the register width.
  std::vector<float> x = rel::random_vector(131, 7u, -3.f, 3.f);
  const float ties[] = {0.5f, -0.5f, 1.5f, -2.5f, 126.5f, -126.5f, 0.f, -0.f, 1e-40f, -1e-40f, 3.f, -3.f};
  for (std::size_t i = 0; i < std::size(ties); ++i) x[i * 9] = ties[i] * 3.f / 127.f;
  for (index_t n : {0, 1, 7, 15, 16, 17, 33, 131}) {
    CAPTURE(n);
    std::vector<std::uint16_t> half(std::size_t(n) + 1, 0xBEEF);
    tstream::detail::round_bf16(x.data(), n, half.data());
    for (index_t i = 0; i < n; ++i) REQUIRE(half[std::size_t(i)] == bf16::from_float(x[std::size_t(i)]));
    CHECK(half[std::size_t(n)] == 0xBEEF);  // nothing past n

    const float inv = 127.f / 3.f;
    std::vector<std::uint8_t> codes(std::size_t(n) + 1, 0xAB);
    tstream::detail::quantize_u8(x.data(), n, inv, codes.data());
    for (index_t i = 0; i < n; ++i)
      REQUIRE(codes[std::size_t(i)] == std::uint8_t(tstream::quantize_value(x[std::size_t(i)], inv) + 128));
    CHECK(codes[std::size_t(n)] == 0xAB);

    // The whole encoding: scale max|x| / 127 and the codes at its inverse.
    float amax = 0;
    for (index_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[std::size_t(i)]));
    const float scale = tstream::detail::quantize_activations(x.data(), n, codes.data());
    const float want_inv = tstream::inverse_scale(amax, 127.f);
    CHECK(scale == (want_inv > 0 ? amax / 127.f : 0.f));
    for (index_t i = 0; i < n; ++i)
      REQUIRE(codes[std::size_t(i)] ==
              (want_inv > 0 ? std::uint8_t(tstream::quantize_value(x[std::size_t(i)], want_inv) + 128) : std::uint8_t(128)));
  }
  // Every half-integer of the code range and past the clamp, and the floats
  // either side of it, at scale 1: the rounding's edge cases exactly.
  std::vector<float> edges;
  for (int k = -131; k <= 131; ++k) {
    const float tie = float(k) + 0.5f;
    edges.insert(edges.end(), {tie, std::nextafter(tie, -1e9f), std::nextafter(tie, 1e9f), float(k)});
  }
  for (float v : {0.49999997f, -0.49999997f, 1e-45f, -1e-45f, 1e30f, -1e30f, 8388607.5f, -8388607.5f})
    edges.push_back(v);
  std::vector<std::uint8_t> edge_codes(edges.size());
  tstream::detail::quantize_u8(edges.data(), index_t(edges.size()), 1.f, edge_codes.data());
  for (std::size_t i = 0; i < edges.size(); ++i) {
    CAPTURE(edges[i]);
    REQUIRE(edge_codes[i] == std::uint8_t(tstream::quantize_value(edges[i], 1.f) + 128));
  }
  // A non-finite value: NaN scale and all-zero codes (128), past the register width too.
  for (float bad : {rel::qnan, rel::inf, -rel::inf}) {
    std::vector<float> y = rel::random_vector(37, 3u);
    y[33] = bad;
    std::vector<std::uint8_t> codes(37, 0);
    CHECK(std::isnan(tstream::detail::quantize_activations(y.data(), 37, codes.data())));
    for (auto c : codes) REQUIRE(c == 128);
  }
  // Below the quantization floor: scale 0, codes 128.
  std::vector<float> tiny(20, 1e-31f);
  std::vector<std::uint8_t> codes(20, 0);
  CHECK(tstream::detail::quantize_activations(tiny.data(), 20, codes.data()) == 0.f);
  for (auto c : codes) REQUIRE(c == 128);
}
