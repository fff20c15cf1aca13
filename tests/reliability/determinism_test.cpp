// Determinism and concurrency. GEMV (every weight type, both modes) and
// decode attention (every KV type, both modes) must give bitwise identical
// results for thread counts 1..8, any share count, any batch size and on
// every repeated run; immutable objects (resident_weights, kv_cache) may be
// shared by user threads that each bring their own team (and plan).
// These tests also run under ThreadSanitizer (the tsan preset selects the
// "determinism:" and "concurrency:" names).
#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "common.hpp"
#include "tstream/kernels/attention/decode.hpp"
#include "tstream/kernels/gemm/gemm.hpp"
#include "tstream/kernels/gemv/gemv.hpp"

using tstream::bf16;
using tstream::index_t;
using tstream::kv_cache;
using tstream::matrix_view;
using tstream::precision;
using tstream::resident_weights;

namespace {

// Teams of 1..8 members, made once for the whole suite.
tstream::thread_team& team_of(int threads) {
  static std::vector<std::unique_ptr<tstream::thread_team>> teams = [] {
    std::vector<std::unique_ptr<tstream::thread_team>> t;
    for (int i = 1; i <= 8; ++i) t.push_back(std::make_unique<tstream::thread_team>(i));
    return t;
  }();
  return *teams[std::size_t(threads - 1)];
}

constexpr precision modes[] = {precision::exact, precision::fast};

template <class W>
std::vector<float> gemv_once(tstream::thread_team& team, const resident_weights<W>& w, const std::vector<float>& x, precision mode) {
  std::vector<float> y(static_cast<std::size_t>(w.rows()));
  tstream::gemv(team, w, x, y, tstream::vxm::identity{}, {mode});
  return y;
}

}  // namespace

TEST_CASE_TEMPLATE("determinism: gemv is bitwise identical for 1..8 threads and any share count", W, float, bf16, std::int8_t) {
  const index_t n = 333, k = 130;
  const auto w32 = rel::random_vector(std::size_t(n * k), 101);
  const auto x = rel::random_vector(std::size_t(k), 102, -2.f, 2.f);
  for (precision mode : modes) {
    CAPTURE(int(mode));
    std::vector<float> first;
    for (int shares : {1, 3, 8}) {
      const resident_weights<W> w(matrix_view<const float>(w32.data(), n, k), shares);
      for (int t = 1; t <= 8; ++t) {
        CAPTURE(shares);
        CAPTURE(t);
        const auto y = gemv_once(team_of(t), w, x, mode);
        if (first.empty()) first = y;
        REQUIRE(rel::same_bits(y, first));
      }
    }
  }
}

TEST_CASE_TEMPLATE("determinism: gemm is bitwise identical for 1..8 threads, any M, and with A prepared", W, float, bf16, std::int8_t) {
  // Small, for ThreadSanitizer: 45 rows (4 row panels), K over a few k-groups.
  const index_t m = 45, n = 70, k = 130;
  const auto a = rel::random_vector(std::size_t(m * k), 111);
  const auto b = rel::random_vector(std::size_t(k * n), 112);
  const tstream::gemm_weights<W> w(matrix_view<const float>(b.data(), k, n));
  const matrix_view<const float> A(a.data(), m, k);
  std::vector<float> first(std::size_t(m * n));
  tstream::gemm(team_of(1), A, w, matrix_view<float>(first.data(), m, n));
  for (int t = 2; t <= 8; ++t) {
    CAPTURE(t);
    std::vector<float> c(std::size_t(m * n));
    tstream::gemm(team_of(t), A, w, matrix_view<float>(c.data(), m, n));
    REQUIRE(rel::same_bits(c, first));
    const tstream::gemm_activations<W> prepared(team_of(t), A);
    std::fill(c.begin(), c.end(), 0.f);
    tstream::gemm(team_of(t), prepared, w, matrix_view<float>(c.data(), m, n));
    REQUIRE(rel::same_bits(c, first));
  }
  // Row i alone (M = 1) and rows [13, 30) give the same bits as in the full product.
  for (auto [r0, r1] : {std::pair<index_t, index_t>{0, 1}, {44, 45}, {13, 30}}) {
    CAPTURE(r0);
    std::vector<float> c(std::size_t((r1 - r0) * n));
    tstream::gemm(team_of(3), matrix_view<const float>(a.data() + r0 * k, r1 - r0, k), w, matrix_view<float>(c.data(), r1 - r0, n));
    REQUIRE(rel::same_bits(c, std::vector<float>(first.begin() + r0 * n, first.begin() + r1 * n)));
  }
}

TEST_CASE_TEMPLATE("determinism: gemv batch rows equal the single-vector results for batch sizes 1..33", W, float, bf16, std::int8_t) {
  const index_t n = 170, k = 67;
  const auto w32 = rel::random_vector(std::size_t(n * k), 111);
  const auto bias = rel::random_vector(std::size_t(n), 112);
  const resident_weights<W> w(matrix_view<const float>(w32.data(), n, k), 3);
  auto& team = team_of(3);
  namespace vxm = tstream::vxm;
  const auto epi = vxm::then(vxm::add(tstream::mem::read(bias)), vxm::silu{});
  for (precision mode : modes) {
    for (index_t m : {1, 2, 15, 16, 17, 33}) {
      CAPTURE(int(mode));
      CAPTURE(m);
      const index_t ldx = k + 5, ldy = n + 3;
      const auto xs = rel::random_vector(std::size_t(m * ldx), unsigned(113 + m), -3.f, 3.f);
      std::vector<float> ys(std::size_t(m * ldy), -1.f);
      tstream::gemv(team, w, matrix_view<const float>(xs.data(), m, k, ldx), matrix_view<float>(ys.data(), m, n, ldy), epi, {mode});
      for (index_t r = 0; r < m; ++r) {
        std::vector<float> y1(static_cast<std::size_t>(n));
        tstream::gemv(team_of(1), w, std::span<const float>(xs.data() + r * ldx, std::size_t(k)), y1, epi, {mode});
        REQUIRE(rel::same_bits(y1, std::vector<float>(ys.begin() + r * ldy, ys.begin() + r * ldy + n)));
        for (index_t j = n; j < ldy; ++j) REQUIRE(ys[std::size_t(r * ldy + j)] == -1.f);  // the gap between rows
      }
    }
  }
}

TEST_CASE_TEMPLATE("determinism: gemv repeated runs give the same bits, whatever ran in between", W, float, bf16, std::int8_t) {
  const index_t n = 100, k = 45;
  const auto w32 = rel::random_vector(std::size_t(n * k), 121);
  const auto x = rel::random_vector(std::size_t(k), 122), other = rel::random_vector(std::size_t(4 * k), 123, -50.f, 50.f);
  const resident_weights<W> w(matrix_view<const float>(w32.data(), n, k), 2);
  for (precision mode : modes) {
    const auto first = gemv_once(team_of(2), w, x, mode);
    for (int rep = 0; rep < 20; ++rep) {
      // A batch with other activations in between reuses the thread's scratch.
      std::vector<float> ys(std::size_t(4 * n));
      tstream::gemv(team_of(2), w, matrix_view<const float>(other.data(), 4, k), matrix_view<float>(ys.data(), 4, n),
                    tstream::vxm::identity{}, {mode});
      REQUIRE(rel::same_bits(gemv_once(team_of(1 + rep % 4), w, x, mode), first));
    }
  }
}

namespace {
template <class T>
kv_cache<T> filled(index_t kvh, index_t dim, index_t L, unsigned seed) {
  kv_cache<T> c(kvh, dim, L + 10);
  const auto k = rel::random_vector(std::size_t(L * kvh * dim), seed, -2.f, 2.f), v = rel::random_vector(std::size_t(L * kvh * dim), seed + 1);
  const index_t pre = L / 3;  // a prefill, then one position at a time
  c.append(matrix_view<const float>(k.data(), pre, kvh * dim), matrix_view<const float>(v.data(), pre, kvh * dim));
  for (index_t t = pre; t < L; ++t)
    c.append(std::span<const float>(k.data() + t * kvh * dim, std::size_t(kvh * dim)),
             std::span<const float>(v.data() + t * kvh * dim, std::size_t(kvh * dim)));
  return c;
}
}  // namespace

TEST_CASE_TEMPLATE("determinism: attention is bitwise identical for 1..8 threads, both modes, with and without a window", T, float, bf16, std::int8_t) {
  const index_t kvh = 2, qh = 6, dim = 80, L = 2100;  // three chunks, a partial GQA tile, dim of 5 registers
  const auto c = filled<T>(kvh, dim, L, 131);
  const auto q = rel::random_vector(std::size_t(qh * dim), 132);
  for (precision mode : modes) {
    for (index_t window : {index_t(0), index_t(1500), index_t(7)}) {
      CAPTURE(int(mode));
      CAPTURE(window);
      tstream::decode_options o;
      o.mode = mode;
      o.window = window;
      tstream::decode_plan<T> plan(c, qh, o);
      std::vector<float> first;
      for (int t = 1; t <= 8; ++t) {
        CAPTURE(t);
        std::vector<float> out(q.size());
        plan.run(team_of(t), q, out);
        if (first.empty()) first = out;
        REQUIRE(rel::same_bits(out, first));
      }
      // A one-shot call and a replay agree with the plan.
      std::vector<float> once(q.size());
      tstream::attention_decode(team_of(3), c, q, once, o);
      REQUIRE(rel::same_bits(once, first));
      plan.run(team_of(8), q, once);
      REQUIRE(rel::same_bits(once, first));
    }
  }
}

TEST_CASE("concurrency: one resident_weights shared by two user threads, each with its own team") {
  const index_t n = 300, k = 77;
  const auto w32 = rel::random_vector(std::size_t(n * k), 141);
  const resident_weights<float> wf(matrix_view<const float>(w32.data(), n, k), 2);
  const resident_weights<std::int8_t> w8(matrix_view<const float>(w32.data(), n, k), 2);
  const resident_weights<bf16> wb(matrix_view<const float>(w32.data(), n, k), 2);
  const auto xa = rel::random_vector(std::size_t(k), 142), xb = rel::random_vector(std::size_t(k), 143);
  // Expected results, one thread.
  const auto fa = gemv_once(team_of(1), wf, xa, precision::exact), fb = gemv_once(team_of(1), wf, xb, precision::exact);
  const auto ia = gemv_once(team_of(1), w8, xa, precision::fast), ib = gemv_once(team_of(1), w8, xb, precision::fast);
  const auto ba = gemv_once(team_of(1), wb, xa, precision::fast), bb = gemv_once(team_of(1), wb, xb, precision::fast);
  std::atomic<int> mismatches{0};
  auto worker = [&](const std::vector<float>& x, const std::vector<float>& ef, const std::vector<float>& ei,
                    const std::vector<float>& eb) {
    tstream::thread_team team(2);
    for (int rep = 0; rep < 15; ++rep) {
      if (!rel::same_bits(gemv_once(team, wf, x, precision::exact), ef)) ++mismatches;
      if (!rel::same_bits(gemv_once(team, w8, x, precision::fast), ei)) ++mismatches;
      if (!rel::same_bits(gemv_once(team, wb, x, precision::fast), eb)) ++mismatches;
    }
  };
  std::thread a(worker, std::cref(xa), std::cref(fa), std::cref(ia), std::cref(ba));
  std::thread b(worker, std::cref(xb), std::cref(fb), std::cref(ib), std::cref(bb));
  a.join();
  b.join();
  CHECK(mismatches.load() == 0);
}

TEST_CASE_TEMPLATE("concurrency: one kv_cache read by two user threads, each with its own plan and team", T, float, bf16, std::int8_t) {
  const index_t kvh = 2, qh = 4, dim = 64, L = 1100;
  const auto c = filled<T>(kvh, dim, L, 151);
  const auto qa = rel::random_vector(std::size_t(qh * dim), 152), qb = rel::random_vector(std::size_t(qh * dim), 153);
  std::vector<float> ea(qa.size()), eb(qb.size());
  tstream::attention_decode(team_of(1), c, qa, ea);
  tstream::attention_decode(team_of(1), c, qb, eb);
  std::atomic<int> mismatches{0};
  auto worker = [&](const std::vector<float>& q, const std::vector<float>& expect) {
    tstream::thread_team team(2);
    tstream::decode_plan<T> plan(c, qh);
    std::vector<float> out(q.size());
    for (int rep = 0; rep < 10; ++rep) {
      plan.run(team, q, out);
      if (!rel::same_bits(out, expect)) ++mismatches;
    }
  };
  std::thread a(worker, std::cref(qa), std::cref(ea));
  std::thread b(worker, std::cref(qb), std::cref(eb));
  a.join();
  b.join();
  CHECK(mismatches.load() == 0);
}

TEST_CASE("concurrency: run() on one team from two user threads is serialised") {
  auto& team = team_of(3);
  const index_t n = 64, k = 32;
  const auto w32 = rel::random_vector(std::size_t(n * k), 161);
  const resident_weights<float> w(matrix_view<const float>(w32.data(), n, k), 3);
  const auto xa = rel::random_vector(std::size_t(k), 162), xb = rel::random_vector(std::size_t(k), 163);
  const auto ea = gemv_once(team_of(1), w, xa, precision::exact), eb = gemv_once(team_of(1), w, xb, precision::exact);
  std::atomic<int> mismatches{0};
  std::vector<int> calls(3, 0);  // plain ints: a data race here if two jobs overlapped
  auto worker = [&](const std::vector<float>& x, const std::vector<float>& e) {
    for (int rep = 0; rep < 25; ++rep) {
      if (!rel::same_bits(gemv_once(team, w, x, precision::exact), e)) ++mismatches;
      team.run([&](int m) { calls[std::size_t(m)] += 1; });
    }
  };
  std::thread a(worker, std::cref(xa), std::cref(ea));
  std::thread b(worker, std::cref(xb), std::cref(eb));
  a.join();
  b.join();
  CHECK(mismatches.load() == 0);
  CHECK(calls == std::vector<int>{50, 50, 50});
}

TEST_CASE("concurrency: gemv rejects a bias aliasing y (in place y = W x + y would race)") {
  // Each panel's epilogue loads a whole 320-lane vector of the bias, so a
  // bias overlapping y would read rows another team member is writing. The
  // bias overload refuses it, writing nothing.
  const index_t n = 1000, k = 16;
  const auto w32 = rel::random_vector(std::size_t(n * k), 171);
  const resident_weights<float> w(matrix_view<const float>(w32.data(), n, k), 2);
  const auto x = rel::random_vector(std::size_t(k), 172);
  auto y = rel::random_vector(std::size_t(n), 173);
  const auto y0 = y;
  CHECK_THROWS_WITH_AS(tstream::gemv(team_of(2), w, x, y, std::span<const float>(y)),
                       "tstream::gemv: bias overlaps y (for y = W x + y, copy y first)", tstream::error);
  CHECK(y == y0);
}
