// GEMM against references: bitwise against plain loops that do the
// kernel's own arithmetic in the kernel's order, and within stated
// tolerances against a double-precision Eigen product of the original fp32
// inputs. Awkward shapes, strided views, both weight layouts, M and thread
// invariance, epilogues and every bad input.
//
// Tolerances, relative to the double product, with S = sum_k |A(i,k)| |B(k,j)|:
//   fp32  K 2^-24 S                  (the worst-case bound of a K-term fp32 sum)
//   bf16  (2^-7 + K 2^-24) S         (A and B each rounded to bf16: at most 2^-8 relative each)
//   int8  e_b sum|A(i,:)| + e_a sum|B(:,j)| + K e_a e_b + 2^-20 S, e_a = max|A(i,:)| / 254,
//         e_b = max|B(:,j)| / 254    (each value rounded to half a quantization step)
#include <doctest/doctest.h>

#include <Eigen/Dense>
#include <cmath>
#include <cstring>
#include <span>
#include <vector>

#include "reliability/common.hpp"
#include "tstream/arch/cpu.hpp"
#include "tstream/kernels/gemm/gemm.hpp"

using tstream::bf16;
using tstream::gemm_weights;
using tstream::index_t;
using tstream::matrix_view;
using rel::random_vector;

namespace {

using rel::ref_fma;

struct shape { index_t m, n, k; };
const shape awkward_shapes[] = {{1, 1, 1}, {1, 320, 7}, {7, 5, 3}, {319, 321, 320}, {321, 17, 4097}, {57, 33, 1030}, {16, 95, 2},
                               {7, 319, 321}, {5, 7, 319}, {3, 4097, 7},
                               {2, 33, 5000}};  // one micro-panel, K over several K blocks (kc <= 1024 groups) for every type

using mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Row-major M x N result of `C = A B`, A and B row-major float, in double.
mat true_product(const std::vector<float>& a, const std::vector<float>& b, index_t m, index_t n, index_t k) {
  Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> A(a.data(), m, k), B(b.data(), k, n);
  return A.cast<double>() * B.cast<double>();
}

// True when bf16 and int8 GEMMs run on AMX tiles here (gemm_amx.hpp).
bool amx_in_use() { return tstream::detail::gemm::amx::usable && tstream::arch::amx_ready(); }

// The kernel's arithmetic for W, in the kernel's order, with plain loops
// (bf16: the vdpbf16ps order of the register path).
template <class W>
std::vector<float> kernel_order(const std::vector<float>& a, const std::vector<float>& b, index_t m, index_t n, index_t k) {
  std::vector<float> c(std::size_t(m * n));
  if constexpr (std::is_same_v<W, float>) {
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) {
        float acc = 0;
        for (index_t p = 0; p < k; ++p) acc = ref_fma(a[std::size_t(i * k + p)], b[std::size_t(p * n + j)], acc);
        c[std::size_t(i * n + j)] = acc;
      }
  } else if constexpr (std::is_same_v<W, bf16>) {
    const auto r = [](float v) { return float(bf16(v)); };
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) {
        float acc = 0;
        for (index_t p = 0; p < k; p += 2) {  // the odd product first, as vdpbf16ps
          if (p + 1 < k) acc = ref_fma(r(a[std::size_t(i * k + p + 1)]), r(b[std::size_t((p + 1) * n + j)]), acc);
          else acc = ref_fma(0.f, 0.f, acc);
          acc = ref_fma(r(a[std::size_t(i * k + p)]), r(b[std::size_t(p * n + j)]), acc);
        }
        c[std::size_t(i * n + j)] = acc;
      }
  } else {
    std::vector<float> sb(std::size_t{0}), ib, sa, ia;
    sb.resize(std::size_t(n)), ib.resize(std::size_t(n)), sa.resize(std::size_t(m)), ia.resize(std::size_t(m));
    for (index_t j = 0; j < n; ++j) {
      float amax = 0;
      for (index_t p = 0; p < k; ++p) amax = std::fmax(amax, std::fabs(b[std::size_t(p * n + j)]));
      ib[std::size_t(j)] = tstream::inverse_scale(amax, 127.f);
      sb[std::size_t(j)] = ib[std::size_t(j)] > 0 ? amax / 127.f : 0.f;
    }
    for (index_t i = 0; i < m; ++i) {
      float amax = 0;
      for (index_t p = 0; p < k; ++p) amax = std::fmax(amax, std::fabs(a[std::size_t(i * k + p)]));
      ia[std::size_t(i)] = tstream::inverse_scale(amax, 127.f);
      sa[std::size_t(i)] = ia[std::size_t(i)] > 0 ? amax / 127.f : 0.f;
    }
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) {
        std::int64_t acc = 0;
        for (index_t p = 0; p < k; ++p)
          acc += std::int64_t(tstream::quantize_value(a[std::size_t(i * k + p)], ia[std::size_t(i)])) *
                 tstream::quantize_value(b[std::size_t(p * n + j)], ib[std::size_t(j)]);
        c[std::size_t(i * n + j)] = float(acc) * (sb[std::size_t(j)] * sa[std::size_t(i)]);
      }
  }
  return c;
}

// The documented error bound of element (i, j) for W.
template <class W>
double bound(const std::vector<float>& a, const std::vector<float>& b, index_t n, index_t k, index_t i, index_t j) {
  double s = 0, sa = 0, sb = 0, ma = 0, mb = 0;
  for (index_t p = 0; p < k; ++p) {
    const double x = std::fabs(a[std::size_t(i * k + p)]), y = std::fabs(b[std::size_t(p * n + j)]);
    s += x * y, sa += x, sb += y, ma = std::max(ma, x), mb = std::max(mb, y);
  }
  const double u = std::ldexp(1.0, -24);
  if constexpr (std::is_same_v<W, float>) return double(k) * u * s;
  else if constexpr (std::is_same_v<W, bf16>) return (std::ldexp(1.0, -7) + double(k) * u) * s;
  else {
    const double ea = ma / 254, eb = mb / 254;
    return eb * sa + ea * sb + double(k) * ea * eb + std::ldexp(1.0, -20) * s;
  }
}

// C (M x N, ldc) of gemm on A (M x K, lda) and B packed from K x N or N x K.
template <class W>
std::vector<float> run_gemm(tstream::thread_team& team, const std::vector<float>& a, const gemm_weights<W>& w, index_t m,
                            index_t lda, index_t ldc) {
  std::vector<float> c(std::size_t(m * ldc), -7.f);
  tstream::gemm(team, matrix_view<const float>(a.data(), m, w.rows(), lda), w, matrix_view<float>(c.data(), m, w.cols(), ldc));
  return c;
}

// Copies a dense rows x cols matrix into one with leading dimension ld (padding: a NaN the kernels must never read).
std::vector<float> strided(const std::vector<float>& x, index_t rows, index_t cols, index_t ld) {
  std::vector<float> y(std::size_t(rows * ld), rel::qnan);
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) y[std::size_t(i * ld + j)] = x[std::size_t(i * cols + j)];
  return y;
}

std::vector<float> transpose(const std::vector<float>& x, index_t rows, index_t cols) {
  std::vector<float> y(x.size());
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) y[std::size_t(j * rows + i)] = x[std::size_t(i * cols + j)];
  return y;
}

// bf16 on AMX: the exact product of the bf16-rounded A and B in double, and
// sum |a_r b_r| (an fp32 sum of K products in any order is within
// (K - 1) 2^-24 of that sum of it; the test allows twice that).
struct rounded_product {
  mat value, magnitude;
};
rounded_product bf16_rounded_product(const std::vector<float>& a, const std::vector<float>& b, index_t m, index_t n, index_t k) {
  const auto r = [](float v) { return double(float(bf16(v))); };
  mat A(m, k), B(k, n);
  for (index_t i = 0; i < m; ++i)
    for (index_t p = 0; p < k; ++p) A(i, p) = r(a[std::size_t(i * k + p)]);
  for (index_t p = 0; p < k; ++p)
    for (index_t j = 0; j < n; ++j) B(p, j) = r(b[std::size_t(p * n + j)]);
  return {A * B, A.cwiseAbs() * B.cwiseAbs()};
}

template <class W>
void check_shapes(std::span<const shape> shapes = awkward_shapes) {
  tstream::thread_team team(2);
  for (const auto s : shapes) {
    CAPTURE(s.m);
    CAPTURE(s.n);
    CAPTURE(s.k);
    const auto a = random_vector(std::size_t(s.m * s.k), unsigned(s.m * 3 + s.k));
    const auto b = random_vector(std::size_t(s.k * s.n), unsigned(s.n * 5 + s.k));
    const index_t lda = s.k + 3, ldb = s.n + 5, ldw = s.k + 1, ldc = s.n + 2;
    const auto as = strided(a, s.m, s.k, lda);
    const auto bs = strided(b, s.k, s.n, ldb);
    const auto ws = strided(transpose(b, s.k, s.n), s.n, s.k, ldw);  // N x K, strided
    const gemm_weights<W> w_kn(matrix_view<const float>(bs.data(), s.k, s.n, ldb));
    const gemm_weights<W> w_nk(tstream::n_by_k, matrix_view<const float>(ws.data(), s.n, s.k, ldw));
    const auto c = run_gemm(team, as, w_kn, s.m, lda, ldc);
    const auto c_nk = run_gemm(team, as, w_nk, s.m, lda, ldc);
    REQUIRE(rel::same_bits(c, c_nk));  // both layouts pack to the same bits

    const auto expect = kernel_order<W>(a, b, s.m, s.n, s.k);
    const mat exact = true_product(a, b, s.m, s.n, s.k);
    // On AMX, tdpbf16ps sums in an order Intel does not specify (amx.hpp):
    // bf16 is held to the bound only; int8's integer sums stay bitwise.
    const bool ordered = !std::is_same_v<W, bf16> || !amx_in_use();
    const rounded_product rounded = ordered ? rounded_product{} : bf16_rounded_product(a, b, s.m, s.n, s.k);
    for (index_t i = 0; i < s.m; ++i) {
      for (index_t j = 0; j < s.n; ++j) {
        CAPTURE(i);
        CAPTURE(j);
        const float got = c[std::size_t(i * ldc + j)];
        if (ordered) REQUIRE(rel::bits(got) == rel::bits(expect[std::size_t(i * s.n + j)]));
        else REQUIRE(std::fabs(double(got) - rounded.value(i, j)) <= 2.0 * double(s.k) * 0x1p-24 * rounded.magnitude(i, j));
        REQUIRE(std::fabs(double(got) - exact(i, j)) <= bound<W>(a, b, s.n, s.k, i, j));
      }
      for (index_t j = s.n; j < ldc; ++j) REQUIRE(c[std::size_t(i * ldc + j)] == -7.f);  // padding untouched
    }
    {  // A prepared once (on the team and on the caller) gives the same bits, and writes only C
      const matrix_view<const float> av(as.data(), s.m, s.k, lda);
      const tstream::gemm_activations<W> on_team(team, av), on_caller(av);
      for (const auto* prepared : {&on_team, &on_caller}) {
        std::vector<float> c3(std::size_t(s.m * ldc), -7.f);
        tstream::gemm(team, *prepared, w_nk, matrix_view<float>(c3.data(), s.m, s.n, ldc));
        REQUIRE(rel::same_bits(c, c3));
      }
    }
    if constexpr (std::is_same_v<W, float>) {  // the per-call packing overload gives the same bits
      std::vector<float> c2(std::size_t(s.m * ldc), -7.f);
      tstream::gemm(team, matrix_view<const float>(as.data(), s.m, s.k, lda), matrix_view<const float>(bs.data(), s.k, s.n, ldb),
                    matrix_view<float>(c2.data(), s.m, s.n, ldc));
      REQUIRE(rel::same_bits(c, c2));
    }
  }
}

}  // namespace

TEST_CASE("gemm f32: bitwise equal to the k-ordered fma loop, accurate against double") { check_shapes<float>(); }
TEST_CASE("gemm bf16: vdpbf16ps order (AMX: its own), accurate against double") { check_shapes<bf16>(); }
TEST_CASE("gemm int8: u8 x s8 integer sums, accurate against double") { check_shapes<std::int8_t>(); }
TEST_CASE_TEMPLATE("gemm: K over several AMX K blocks, with and without a partial last k-step", W, bf16, std::int8_t) {
  // amx::k_block_steps() k-steps of 16 k-groups per K block: two blocks
  // exactly, and one more k past them (a last block of one partial step).
  const index_t k = 2 * tstream::detail::gemm::amx::k_block_steps() * 16 * gemm_weights<W>::group;
  const shape shapes[] = {{33, 40, k}, {33, 40, k + 1}};
  check_shapes<W>(shapes);
}

TEST_CASE("gemm f32: A packed by each micro-panel's first tile, over several K blocks, gives the k-ordered bits") {
  // Many micro-panels, K over two long K blocks, rows of A not 4 KiB apart:
  // the first tile of each micro-panel reads A in place and packs it for
  // the tiles after it. One row alone (M = 1) takes the separate packing.
  const index_t mr = index_t(tstream::arch::gemm_mr);
  const index_t m = 5 * mr + 3, n = 40, k = 2 * tstream::plan_blocking().kc_long + 37;
  index_t lda = k + 3;
  if (lda * index_t(sizeof(float)) % 4096 == 0) ++lda;
  const auto a = random_vector(std::size_t(m * k), 91);
  const auto b = random_vector(std::size_t(k * n), 92);
  const auto as = strided(a, m, k, lda);
  const gemm_weights<float> w(matrix_view<const float>(b.data(), k, n));
  const auto expect = kernel_order<float>(a, b, m, n, k);
  for (int t : {1, 2}) {
    CAPTURE(t);
    tstream::thread_team team(t);
    const auto c = run_gemm(team, as, w, m, lda, n);
    REQUIRE(rel::same_bits(c, expect));
    for (index_t i : {index_t(0), mr + 1, m - 1}) {
      CAPTURE(i);
      const std::vector<float> row(as.begin() + i * lda, as.begin() + i * lda + k);
      const auto c1 = run_gemm(team, row, w, 1, k, n);
      REQUIRE(std::memcmp(c1.data(), c.data() + i * n, std::size_t(n) * sizeof(float)) == 0);
    }
  }
}

TEST_CASE_TEMPLATE("gemm: row i of C is bitwise the same for every M and thread count", W, float, bf16, std::int8_t) {
  const index_t n = 77, k = 1100, m_big = 64;  // K over one K block; N over two panels plus a tail
  const auto a = random_vector(std::size_t(m_big * k), 81);
  const auto b = random_vector(std::size_t(k * n), 82);
  const gemm_weights<W> w(matrix_view<const float>(b.data(), k, n));
  tstream::thread_team one(1);
  const auto full = run_gemm(one, a, w, m_big, k, n);
  for (int t : {1, 2, 3, 4, 7}) {
    tstream::thread_team team(t);
    for (index_t m : {index_t(1), index_t(13), index_t(14), index_t(37), m_big}) {
      CAPTURE(t);
      CAPTURE(m);
      for (index_t first : {index_t(0), m_big - m}) {  // rows [first, first + m) of A
        const std::vector<float> part(a.begin() + first * k, a.begin() + (first + m) * k);
        const auto c = run_gemm(team, part, w, m, k, n);
        REQUIRE(std::memcmp(c.data(), full.data() + first * n, c.size() * sizeof(float)) == 0);
      }
    }
  }
}

TEST_CASE_TEMPLATE("gemm: alpha, beta, bias, activations and residual match the stages applied to A B", W, float, bf16,
                   std::int8_t) {
  namespace vxm = tstream::vxm;
  const index_t m = 23, n = 350, k = 40;
  const auto a = random_vector(std::size_t(m * k), 91);
  const auto b = random_vector(std::size_t(k * n), 92);
  const auto bias = random_vector(std::size_t(n), 93);
  const auto c_old = random_vector(std::size_t(m * n), 94);
  const auto res = random_vector(std::size_t(m * n), 95);
  tstream::thread_team team(3);
  const gemm_weights<W> w(matrix_view<const float>(b.data(), k, n));
  const auto A = matrix_view<const float>(a.data(), m, k);
  const auto base = run_gemm(team, a, w, m, k, n);
  using V = tstream::vec<float>;
  // expect = stage applied row by row to `from`, the way a VXM pipeline would.
  const auto staged = [&](const std::vector<float>& from, auto stage) {
    std::vector<float> out(from.size());
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; j += index_t(V::lanes)) {
        const auto cnt = std::size_t(n - j);
        stage(V::load(from.data() + i * n + j, cnt), std::size_t(j)).store(out.data() + i * n + j, cnt);
      }
    return out;
  };
  std::vector<float> c(std::size_t(m * n));
  const auto C = matrix_view<float>(c.data(), m, n);

  SUBCASE("alpha and beta") {
    c = c_old;
    tstream::gemm(team, A, w, C, vxm::identity{}, {.alpha = 0.5f, .beta = -2.f});
    std::vector<float> expect(c.size());
    // alpha is applied to the same chain: the kernel computes (chain) * alpha, then fma(beta, C, that).
    tstream::gemm(team, A, w, matrix_view<float>(expect.data(), m, n), vxm::scale{0.5f});
    for (std::size_t e = 0; e < c.size(); ++e) REQUIRE(rel::bits(c[e]) == rel::bits(ref_fma(-2.f, c_old[e], expect[e])));
    // beta = 0 never reads C: NaN in C does not leak.
    std::fill(c.begin(), c.end(), rel::qnan);
    tstream::gemm(team, A, w, C);
    REQUIRE(rel::same_bits(c, base));
  }
  SUBCASE("bias, bias + SiLU, ReLU, GELU") {
    tstream::gemm(team, A, w, C, std::span<const float>(bias));
    REQUIRE(rel::same_bits(c, staged(base, vxm::add(tstream::mem::read(bias)))));
    const auto silu = vxm::then(vxm::add(tstream::mem::read(bias)), vxm::silu{});
    tstream::gemm(team, A, w, C, silu);
    REQUIRE(rel::same_bits(c, staged(base, silu)));
    for (std::size_t e = 0; e < c.size(); ++e) {
      const double t = double(base[e]) + double(bias[e % std::size_t(n)]);
      REQUIRE(c[e] == doctest::Approx(t / (1 + std::exp(-t))).epsilon(1e-5).scale(1e-6));
    }
    tstream::gemm(team, A, w, C, vxm::relu{});
    REQUIRE(rel::same_bits(c, staged(base, vxm::relu{})));
    for (std::size_t e = 0; e < c.size(); ++e) REQUIRE(c[e] == (base[e] < 0.f ? 0.f : base[e]));  // plain max(x, 0)
    tstream::gemm(team, A, w, C, vxm::gelu{});
    REQUIRE(rel::same_bits(c, staged(base, vxm::gelu{})));
    for (std::size_t e = 0; e < c.size(); ++e) {  // the tanh form in double; fp32 loses ~1e-7 |x| in 1 + tanh
      const double x = base[e], g = 0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
      CAPTURE(x);
      REQUIRE(std::fabs(double(c[e]) - g) <= 1e-5 * std::fabs(x) + 1e-7);
    }
  }
  SUBCASE("residual, after the epilogue") {
    tstream::gemm(team, A, w, C, vxm::relu{}, {.residual = matrix_view<const float>(res.data(), m, n)});
    const auto relu = staged(base, vxm::relu{});
    for (std::size_t e = 0; e < c.size(); ++e) REQUIRE(rel::bits(c[e]) == rel::bits(relu[e] + res[e]));
  }
  SUBCASE("a stage with only the vec form takes the vec path, with the same bits") {
    const auto silu = vxm::then(vxm::add(tstream::mem::read(bias)), vxm::silu{});
    const auto opt = tstream::gemm_options{.residual = matrix_view<const float>(res.data(), m, n)};
    tstream::gemm(team, A, w, C, silu, opt);
    std::vector<float> by_vec(c.size());
    tstream::gemm(team, A, w, matrix_view<float>(by_vec.data(), m, n), rel::vec_only{silu}, opt);
    REQUIRE(rel::same_bits(by_vec, c));
  }
}

TEST_CASE("gemm: NaN in a row of A reaches only that row of C") {
  const index_t m = 60, n = 40, k = 9;
  auto a = random_vector(std::size_t(m * k), 101);
  a[std::size_t(5 * k + 2)] = rel::qnan;
  const auto b = random_vector(std::size_t(k * n), 102);
  tstream::thread_team team(2);
  const auto check = [&](const std::vector<float>& c) {
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) REQUIRE(std::isnan(c[std::size_t(i * n + j)]) == (i == 5));
  };
  check(run_gemm(team, a, gemm_weights<float>(matrix_view<const float>(b.data(), k, n)), m, k, n));
  check(run_gemm(team, a, gemm_weights<bf16>(matrix_view<const float>(b.data(), k, n)), m, k, n));
  a[std::size_t(5 * k + 2)] = rel::inf;
  check(run_gemm(team, a, gemm_weights<std::int8_t>(matrix_view<const float>(b.data(), k, n)), m, k, n));
}

TEST_CASE("gemm int8: a code sum of 0 is 0 even where A's row scale x B's column scale overflows fp32") {
  // A's scale 3e38 / 127 times B's 1.9e38 / 127 is beyond fp32; A(0, 4)'s
  // large value meets B's zeros and B(10, 0)'s meets an A value that codes to
  // 0, so C(0, 0)'s code sum is 0 (it was 0 x inf = NaN). Column 1 of B is
  // ordinary (scale 1 / 127) and meets A's large value: 3e38, finite.
  const index_t k = 16, n = 2;
  std::vector<float> a(std::size_t(k), 0.5f), b(std::size_t(k * n), 0.f);
  a[4] = 3e38f;
  a[10] = 1e-3f;
  b[std::size_t(10 * n)] = 1.9e38f;
  b[std::size_t(4 * n + 1)] = 1.f;
  tstream::thread_team team(1);
  const auto c = run_gemm(team, a, gemm_weights<std::int8_t>(matrix_view<const float>(b.data(), k, n)), 1, k, n);
  CHECK(c[0] == 0.f);
  CHECK(c[1] == doctest::Approx(3e38).epsilon(1e-6));
}

TEST_CASE("gemm: bad input throws tstream::error naming the argument and writes nothing") {
  const index_t m = 4, n = 8, k = 16;
  const auto a = random_vector(std::size_t(m * k), 111);
  const auto b = random_vector(std::size_t(k * n), 112);
  tstream::thread_team team(2);
  const gemm_weights<float> w(matrix_view<const float>(b.data(), k, n));
  std::vector<float> c(std::size_t(m * n), 42.f);
  const auto A = matrix_view<const float>(a.data(), m, k);
  const auto C = matrix_view<float>(c.data(), m, n);
  auto untouched = [&] { REQUIRE(rel::untouched(c, 42.f)); };

  CHECK_THROWS_WITH_AS(tstream::gemm(team, matrix_view<const float>(a.data(), m, k - 1), w, C),
                       "tstream::gemm: A has 15 columns, B has K = 16 rows", tstream::error);
  untouched();
  CHECK_THROWS_WITH_AS(tstream::gemm(team, A, w, matrix_view<float>(c.data(), m - 1, n)),
                       "tstream::gemm: C has 3 rows, A has M = 4", tstream::error);
  untouched();
  CHECK_THROWS_WITH_AS(tstream::gemm(team, A, w, matrix_view<float>(c.data(), m, n - 1)),
                       "tstream::gemm: C has 7 columns, B has N = 8", tstream::error);
  untouched();
  CHECK_THROWS_WITH_AS(tstream::gemm(team, A, matrix_view<const float>(b.data(), k, n - 1), C),
                       "tstream::gemm: C has 8 columns, B has N = 7", tstream::error);
  untouched();
  CHECK_THROWS_WITH_AS(tstream::gemm(team, A, matrix_view<const float>(b.data(), 0, n), C),
                       "tstream::gemm: B has K = 0 rows (K must be at least 1)", tstream::error);
  untouched();
  // C aliasing an input.
  std::vector<float> both(std::size_t(m * k + m * n), 42.f);
  const std::vector<float> both_before = both;
  CHECK_THROWS_WITH_AS(tstream::gemm(team, matrix_view<const float>(both.data(), m, k), w,
                                     matrix_view<float>(both.data() + m * k - 1, m, n)),
                       "tstream::gemm: C overlaps A (the output must not alias an input)", tstream::error);
  REQUIRE(rel::same_bits(both, both_before));
  std::vector<float> both_b(std::size_t(k * n + m * n), 42.f);
  const std::vector<float> both_b_before = both_b;
  CHECK_THROWS_WITH_AS(tstream::gemm(team, A, matrix_view<const float>(both_b.data(), k, n),
                                     matrix_view<float>(both_b.data() + k * n - 3, m, n)),
                       "tstream::gemm: C overlaps B (the output must not alias an input)", tstream::error);
  REQUIRE(rel::same_bits(both_b, both_b_before));
  // Epilogue arguments.
  std::vector<float> bias(std::size_t(n - 1));
  CHECK_THROWS_WITH_AS(tstream::gemm(team, A, w, C, std::span<const float>(bias)),
                       "tstream::gemm: bias has 7 elements, B has N = 8", tstream::error);
  CHECK_THROWS_WITH_AS(tstream::gemm(team, A, w, C, std::span<const float>(c.data() + 3, std::size_t(n))),
                       "tstream::gemm: bias overlaps C", tstream::error);
  {  // the same arrays through the epilogue form, also nested and staged; every GEMM form
    namespace mem = tstream::mem;
    namespace vxm = tstream::vxm;
    CHECK_THROWS_WITH_AS(tstream::gemm(team, A, w, C, vxm::add(mem::read(bias))),
                         "tstream::gemm: an array the epilogue streams has 7 elements, C has N = 8", tstream::error);
    CHECK_THROWS_WITH_AS(tstream::gemm(team, A, w, C, vxm::then(vxm::silu{}, vxm::add(mem::read(bias) | vxm::scale(2.f)))),
                         "tstream::gemm: an array the epilogue streams has 7 elements, C has N = 8", tstream::error);
    CHECK_THROWS_WITH_AS(tstream::gemm(team, A, matrix_view<const float>(b.data(), k, n), C, vxm::add(mem::read(bias))),
                         "tstream::gemm: an array the epilogue streams has 7 elements, C has N = 8", tstream::error);
    CHECK_THROWS_WITH_AS(tstream::gemm(team, A, w, C, vxm::add(mem::read(std::span<const float>(c.data() + n, std::size_t(n))))),
                         "tstream::gemm: an array the epilogue streams overlaps C", tstream::error);
    const tstream::gemm_activations<float> prepared(A);
    CHECK_THROWS_WITH_AS(tstream::gemm(team, prepared, w, C, vxm::add(mem::read(std::span<const float>(c.data(), std::size_t(n))))),
                         "tstream::gemm: an array the epilogue streams overlaps C", tstream::error);
    untouched();
  }
  std::vector<float> res(std::size_t(m * n));
  CHECK_THROWS_WITH_AS(tstream::gemm(team, A, w, C, tstream::vxm::identity{},
                                     {.residual = matrix_view<const float>(res.data(), m, n - 1)}),
                       "tstream::gemm: residual is 4 x 7, C is 4 x 8", tstream::error);
  CHECK_THROWS_WITH_AS(tstream::gemm(team, A, w, C, tstream::vxm::identity{},
                                     {.beta = 1.f, .residual = matrix_view<const float>(c.data(), m, n)}),
                       "tstream::gemm: residual overlaps C (for C = A B + C, use beta = 1)", tstream::error);
  untouched();
  // Construction.
  CHECK_THROWS_WITH_AS(gemm_weights<float>(matrix_view<const float>(b.data(), 0, n)),
                       "tstream::gemm_weights: B has K = 0 rows (K must be at least 1)", tstream::error);
  CHECK_THROWS_WITH_AS(gemm_weights<float>(tstream::n_by_k, matrix_view<const float>(b.data(), n, 0)),
                       "tstream::gemm_weights: B has K = 0 rows (K must be at least 1)", tstream::error);
  auto bad = b;
  bad[std::size_t(2 * n + 3)] = rel::inf;
  CHECK_THROWS_WITH_AS(gemm_weights<std::int8_t>(matrix_view<const float>(bad.data(), k, n)),
                       "tstream::gemm_weights: B(2, 3) = inf is not finite", tstream::error);
  // int8 K past the int32 accumulator's range.
  const index_t long_k = 65800;
  const std::vector<float> long_b(std::size_t(long_k), 0.5f), long_a(std::size_t(long_k), 0.25f);
  const gemm_weights<std::int8_t> w8(matrix_view<const float>(long_b.data(), long_k, 1));
  float out = 42.f;
  CHECK_THROWS_WITH_AS(tstream::gemm(team, matrix_view<const float>(long_a.data(), 1, long_k), w8, matrix_view<float>(&out, 1, 1)),
                       "tstream::gemm: K = 65800 is too long for int8 (at most 65792)", tstream::error);
  REQUIRE(out == 42.f);
}

TEST_CASE("gemm: empty M or N is a no-op; the blocking and split cover C exactly") {
  tstream::thread_team team(2);
  const auto b = random_vector(std::size_t(8 * 5), 121);
  const gemm_weights<float> w(matrix_view<const float>(b.data(), 8, 5));
  std::vector<float> a(8, 1.f), c(5, 42.f);
  tstream::gemm(team, matrix_view<const float>(a.data(), 0, 8), w, matrix_view<float>(c.data(), 0, 5));
  const gemm_weights<float> none(matrix_view<const float>(b.data(), 8, 0));
  tstream::gemm(team, matrix_view<const float>(a.data(), 1, 8), none, matrix_view<float>(c.data(), 1, 0));
  CHECK(rel::untouched(c, 42.f));
  CHECK(w.scales() == nullptr);  // int8 only, as documented
  CHECK(w.col_sums() == nullptr);
  const gemm_weights<bf16> wb(matrix_view<const float>(b.data(), 8, 5));
  CHECK(wb.scales() == nullptr);
  CHECK(wb.col_sums() == nullptr);

  const auto bl = w.blocking();
  CHECK(bl.kc >= 64);
  CHECK(bl.mc % index_t(tstream::arch::gemm_mr) == 0);
  CHECK(bl.nc % index_t(tstream::arch::gemm_nr) == 0);
  for (int members : {1, 2, 3, 4, 7})
    for (index_t mp : {1, 3, 10})
      for (index_t np : {1, 2, 9}) {
        std::vector<int> owner(std::size_t(mp * np), 0);
        for (int me = 0; me < members; ++me) {
          const auto p = tstream::split_gemm(mp, np, members, me);
          for (index_t i = p.m_begin; i < p.m_end; ++i)
            for (index_t j = p.n_begin; j < p.n_end; ++j) ++owner[std::size_t(i * np + j)];
        }
        for (int o : owner) REQUIRE(o == 1);
      }
}

TEST_CASE("gemm: block sizes per L2 size and vendor, as documented") {
  namespace ta = tstream::arch;
  for (const std::size_t l2 : {std::size_t(256) << 10, std::size_t(1) << 20, std::size_t(2) << 20, std::size_t(4) << 20})
    for (const auto vendor : {ta::cpu_vendor::intel, ta::cpu_vendor::amd, ta::cpu_vendor::other}) {
      ta::cache_info c;
      c.l2 = l2;
      c.l2_shared_by = 1;
      const auto bl = tstream::plan_blocking(c, vendor);
      CAPTURE(l2);
      CHECK(bl.kc >= 64);
      CHECK(bl.kc <= (vendor == ta::cpu_vendor::intel ? 256 : 1024));
      CHECK(bl.kc_long >= bl.kc);
      if (vendor == ta::cpu_vendor::intel) CHECK(bl.kc_long <= 1024);
      CHECK(bl.mc % index_t(ta::gemm_mr) == 0);
      CHECK(bl.nc % index_t(ta::gemm_nr) == 0);
      // The A block (mc x kc words) takes at most half of L2.
      CHECK(std::size_t(bl.mc) * std::size_t(bl.kc) * 4 <= std::max<std::size_t>(l2 / 2, std::size_t(ta::gemm_mr) * std::size_t(bl.kc) * 4));
    }
  if constexpr (ta::gemm_mr == 14 && ta::gemm_nr == 32) {  // the AVX-512 tile: the sizes the comments quote
    ta::cache_info zen, xeon;
    zen.l2 = std::size_t(1) << 20, xeon.l2 = std::size_t(2) << 20;
    zen.l2_shared_by = xeon.l2_shared_by = 1;
    const auto a = tstream::plan_blocking(zen, ta::cpu_vendor::amd);
    CHECK(a.kc == 1024);
    CHECK(a.mc == 126);
    CHECK(a.nc == 512);
    CHECK(a.kc_long == 4672);
    const auto i = tstream::plan_blocking(xeon, ta::cpu_vendor::intel);
    CHECK(i.kc == 256);
    CHECK(i.kc_long == 1024);
  }
}

TEST_CASE_TEMPLATE("gemm_activations: A prepared once is bitwise gemm on the fp32 A, for any M, team and reuse", W, float, bf16,
                   std::int8_t) {
  namespace vxm = tstream::vxm;
  const index_t n = 77, k = 1100, m_big = 64;
  auto a = random_vector(std::size_t(m_big * k), 131);
  a[std::size_t(9 * k + 4)] = rel::inf;  // a row that is not finite: NaN for int8, as on the fp32 path
  const auto b = random_vector(std::size_t(k * n), 132);
  const auto bias = random_vector(std::size_t(n), 133);
  const gemm_weights<W> w(matrix_view<const float>(b.data(), k, n));
  tstream::thread_team one(1);
  const auto full = run_gemm(one, a, w, m_big, k, n);
  if constexpr (std::is_same_v<W, std::int8_t>)
    for (index_t j = 0; j < n; ++j) REQUIRE(std::isnan(full[std::size_t(9 * n + j)]));

  tstream::gemm_activations<W> prepared;  // one object, reassigned: storage reused
  prepared.assign(matrix_view<const float>(a.data(), m_big, k));
  const auto* storage = prepared.panel(0);
  for (int t : {1, 2, 3, 7}) {
    tstream::thread_team team(t);
    for (index_t m : {index_t(1), index_t(14), index_t(37), m_big}) {
      for (index_t first : {index_t(0), m_big - m}) {
        CAPTURE(t);
        CAPTURE(m);
        CAPTURE(first);
        prepared.assign(team, matrix_view<const float>(a.data() + first * k, m, k));
        REQUIRE(prepared.panel(0) == storage);  // no allocation for a smaller or equal A
        REQUIRE(prepared.rows() == m);
        REQUIRE(prepared.cols() == k);
        std::vector<float> c(std::size_t(m * n), -7.f);
        tstream::gemm(team, prepared, w, matrix_view<float>(c.data(), m, n));
        REQUIRE(std::memcmp(c.data(), full.data() + first * n, c.size() * sizeof(float)) == 0);
        // The bias overload and an epilogue: as on the fp32 A.
        std::vector<float> c_bias(c.size()), expect(c.size());
        const auto A = matrix_view<const float>(a.data() + first * k, m, k);
        tstream::gemm(team, prepared, w, matrix_view<float>(c_bias.data(), m, n), std::span<const float>(bias));
        tstream::gemm(team, A, w, matrix_view<float>(expect.data(), m, n), std::span<const float>(bias));
        REQUIRE(rel::same_bits(c_bias, expect));
        tstream::gemm(team, prepared, w, matrix_view<float>(c_bias.data(), m, n), vxm::silu{}, {.alpha = 0.5f});
        tstream::gemm(team, A, w, matrix_view<float>(expect.data(), m, n), vxm::silu{}, {.alpha = 0.5f});
        REQUIRE(rel::same_bits(c_bias, expect));
      }
    }
  }
}

TEST_CASE("gemm_activations: bad input throws tstream::error naming the argument and writes nothing") {
  const index_t m = 4, n = 8, k = 16;
  const auto a = random_vector(std::size_t(m * k), 141);
  const auto b = random_vector(std::size_t(k * n), 142);
  tstream::thread_team team(2);
  const gemm_weights<bf16> w(matrix_view<const float>(b.data(), k, n));
  std::vector<float> c(std::size_t(m * n), 42.f);
  const auto C = matrix_view<float>(c.data(), m, n);
  const tstream::gemm_activations<bf16> short_k(matrix_view<const float>(a.data(), m, k - 1));
  CHECK_THROWS_WITH_AS(tstream::gemm(team, short_k, w, C), "tstream::gemm: A has 15 columns, B has K = 16 rows", tstream::error);
  const tstream::gemm_activations<bf16> prepared(team, matrix_view<const float>(a.data(), m, k));
  CHECK_THROWS_WITH_AS(tstream::gemm(team, prepared, w, matrix_view<float>(c.data(), m - 1, n)),
                       "tstream::gemm: C has 3 rows, A has M = 4", tstream::error);
  std::vector<float> bias(std::size_t(n - 1));
  CHECK_THROWS_WITH_AS(tstream::gemm(team, prepared, w, C, std::span<const float>(bias)),
                       "tstream::gemm: bias has 7 elements, B has N = 8", tstream::error);
  CHECK_THROWS_WITH_AS(tstream::gemm(team, prepared, w, C, tstream::vxm::identity{},
                                     {.beta = 1.f, .residual = matrix_view<const float>(c.data(), m, n)}),
                       "tstream::gemm: residual overlaps C (for C = A B + C, use beta = 1)", tstream::error);
  CHECK(rel::untouched(c, 42.f));
  // K = 0 is refused, and the object keeps what it held.
  tstream::gemm_activations<bf16> kept(matrix_view<const float>(a.data(), m, k));
  CHECK_THROWS_WITH_AS(kept.assign(matrix_view<const float>(a.data(), m, 0)),
                       "tstream::gemm_activations: A has K = 0 columns (K must be at least 1)", tstream::error);
  CHECK(kept.rows() == m);
  CHECK(kept.cols() == k);
  tstream::gemm(team, kept, w, C);
  std::vector<float> expect(c.size());
  tstream::gemm(team, matrix_view<const float>(a.data(), m, k), w, matrix_view<float>(expect.data(), m, n));
  CHECK(rel::same_bits(c, expect));
  // M = 0: nothing to do.
  const tstream::gemm_activations<bf16> empty(matrix_view<const float>(a.data(), 0, k));
  std::vector<float> none(1, 42.f);
  tstream::gemm(team, empty, w, matrix_view<float>(none.data(), 0, n));
  CHECK(none[0] == 42.f);
}

TEST_CASE_TEMPLATE("gemm_activations: one object reassigned across shapes (K, M up and down) stays exact", W, float, bf16,
                   std::int8_t) {
  tstream::thread_team team(2);
  tstream::gemm_activations<W> prepared;
  const shape shapes[] = {{7, 33, 5}, {80, 40, 301}, {3, 17, 1030}, {29, 65, 2}, {80, 40, 301}};
  for (const auto s : shapes) {
    CAPTURE(s.m);
    CAPTURE(s.k);
    const auto a = random_vector(std::size_t(s.m * s.k), unsigned(151 + s.k));
    const auto b = random_vector(std::size_t(s.k * s.n), unsigned(152 + s.n));
    const gemm_weights<W> w(matrix_view<const float>(b.data(), s.k, s.n));
    const auto A = matrix_view<const float>(a.data(), s.m, s.k);
    prepared.assign(team, A);
    std::vector<float> c(std::size_t(s.m * s.n), -7.f);
    tstream::gemm(team, prepared, w, matrix_view<float>(c.data(), s.m, s.n));
    REQUIRE(rel::same_bits(c, run_gemm(team, a, w, s.m, s.k, s.n)));
  }
}

TEST_CASE("gemm_activations: the int8 K limit holds for prepared A too") {
  const index_t long_k = 65800;
  const std::vector<float> long_b(std::size_t(long_k), 0.5f), long_a(std::size_t(long_k), 0.25f);
  tstream::thread_team team(1);
  const gemm_weights<std::int8_t> w8(matrix_view<const float>(long_b.data(), long_k, 1));
  const tstream::gemm_activations<std::int8_t> a8(matrix_view<const float>(long_a.data(), 1, long_k));
  float out = 42.f;
  CHECK_THROWS_WITH_AS(tstream::gemm(team, a8, w8, matrix_view<float>(&out, 1, 1)),
                       "tstream::gemm: K = 65800 is too long for int8 (at most 65792)", tstream::error);
  CHECK(out == 42.f);
}
