// libFuzzer target: GEMM. From the input: weight type (f32, bf16, int8),
// weight layout (K x N or N x K), team size 1-4, M in [0, 40], N in [0, 80],
// K in [1, 300] (M x N x K at most 2^17), strides (ld past the columns), the
// call form (plain; bias; alpha and beta; SiLU and a residual; B unpacked,
// packed per call; A prepared by gemm_activations, one object per type
// reassigned across inputs) and every value (NaN, infinities, denormals and
// huge values included). Checks, trapping on failure:
//   * nothing is written outside C's M x N (guard values in C's ld padding
//     and around it), and beta = 0 never reads C (C starts as NaN there);
//   * int8 packing: a non-finite weight is gemm_weights' error;
//   * bitwise determinism: the same bits on a team of 1, and each row of C
//     equal to the call on that row of A alone (M = 1; with A prepared,
//     that row through the fp32-A path);
//   * values, where every input is finite and far from overflow: within the
//     documented bound of a double reference over the kernel's own inputs
//     (fp32 only: K 2^-24 sum|a b| plus the epilogue's rounding); for bf16
//     and int8 the value bound is tests/kernels/gemm_test.cpp's business.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_input.hpp"
#include "tstream/kernels/gemm/gemm.hpp"

using tstream::bf16;
using tstream::index_t;
using tstream::matrix_view;

namespace {

using fz::same_bits;
using fz::team_of;

constexpr float guard = -12345.f;
constexpr index_t guard_len = 29;

struct call_args {
  int form;       // 0 plain, 1 bias, 2 alpha/beta, 3 silu + residual, 4 unpacked B, 5 A prepared
  float alpha, beta;
};

// C (m x n, ld ldc) for A (m x k, ld lda) on `team`, in the requested form.
template <class W>
void call(tstream::thread_team& team, const call_args& c, matrix_view<const float> A, const tstream::gemm_weights<W>& B,
          matrix_view<const float> b_raw, matrix_view<float> C, const std::vector<float>& bias,
          matrix_view<const float> residual) {
  namespace vxm = tstream::vxm;
  switch (c.form) {
    case 0: tstream::gemm(team, A, B, C); break;
    case 1: tstream::gemm(team, A, B, C, std::span<const float>(bias)); break;
    case 2: tstream::gemm(team, A, B, C, vxm::identity{}, {.alpha = c.alpha, .beta = c.beta}); break;
    case 3: tstream::gemm(team, A, B, C, vxm::silu{}, {.residual = residual}); break;
    case 5: {
      static thread_local tstream::gemm_activations<W> prepared;  // reused across shapes: reassignment is tested too
      prepared.assign(team, A);
      tstream::gemm(team, prepared, B, C);
      break;
    }
    default:
      if constexpr (std::is_same_v<W, float>) tstream::gemm(team, A, b_raw, C);
      else tstream::gemm(team, A, B, C);
      break;
  }
}

template <class W>
void run(fz::input& in, bool n_by_k, int threads, index_t m, index_t n, index_t k, index_t pad_a, index_t pad_c,
         call_args args) {
  const float amag = in.magnitude(), bmag = in.magnitude();
  const index_t lda = k + pad_a, ldc = n + pad_c;
  std::vector<float> a(std::size_t(std::max<index_t>(m, 1) * lda)), b(std::size_t(k * n));
  std::vector<float> bias(static_cast<std::size_t>(n)), res(std::size_t(m * n));
  for (auto& v : a) v = in.value(amag);
  for (auto& v : b) v = in.value(bmag);
  for (auto& v : bias) v = in.value(1.f);
  for (auto& v : res) v = in.value(1.f);
  // b holds B as K x N, or its transpose W (N x K) for the N x K constructor.
  const matrix_view<const float> bv = n_by_k ? matrix_view<const float>(b.data(), n, k) : matrix_view<const float>(b.data(), k, n);

  // int8: a non-finite weight is an error, thrown before anything is packed.
  if constexpr (std::is_same_v<W, std::int8_t>) {
    bool finite = true;
    for (float v : b) finite = finite && std::isfinite(v);
    if (!finite) {
      bool threw = false;
      try {
        tstream::gemm_weights<W> w(bv);
        if (n_by_k) tstream::gemm_weights<W> w2(tstream::n_by_k, bv);
      } catch (const tstream::error& e) {
        threw = std::string(e.what()).rfind("tstream::gemm_weights: B(", 0) == 0;
      }
      FZ_CHECK(threw, "int8 packing of a non-finite weight: wrong or missing error");
      return;
    }
  }
  const auto B = n_by_k ? tstream::gemm_weights<W>(tstream::n_by_k, bv) : tstream::gemm_weights<W>(bv);
  // The unpacked-B form takes K x N: materialize it.
  std::vector<float> b_kn(b);
  if (n_by_k)
    for (index_t r = 0; r < k; ++r)
      for (index_t j = 0; j < n; ++j) b_kn[std::size_t(r * n + j)] = b[std::size_t(j * k + r)];
  const matrix_view<const float> b_raw(b_kn.data(), k, n);
  if (args.form == 4 && !std::is_same_v<W, float>) args.form = 0;

  // C with guards around it and in its ld padding; beta = 0 must not read C,
  // so its M x N starts as NaN unless beta != 0.
  const float start = args.form == 2 && args.beta != 0.f ? 0.5f : std::numeric_limits<float>::quiet_NaN();
  std::vector<float> cbuf(std::size_t(m * ldc + 2 * guard_len), guard);
  float* c = cbuf.data() + guard_len;
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) c[i * ldc + j] = start;
  const matrix_view<const float> A(a.data(), m, k, lda), R(res.data(), m, n);
  call(team_of(threads), args, A, B, b_raw, matrix_view<float>(c, m, n, ldc), bias, R);
  for (index_t i = 0; i < guard_len; ++i) {
    FZ_CHECK(cbuf[std::size_t(i)] == guard, "gemm wrote before C");
    FZ_CHECK(cbuf[std::size_t(guard_len + m * ldc + i)] == guard, "gemm wrote after C");
  }
  for (index_t i = 0; i < m; ++i)
    for (index_t j = n; j < ldc; ++j) FZ_CHECK(c[i * ldc + j] == guard, "gemm wrote into C's ld padding");

  // Determinism: a team of 1, one row of A at a time. Where beta = 0 the
  // row starts at 0, not NaN: had the full call read C, they would differ.
  for (index_t i = 0; i < m; ++i) {
    std::vector<float> row(static_cast<std::size_t>(n), std::isnan(start) ? 0.f : start);
    const call_args alone = args.form == 5 ? call_args{0, 1.f, 0.f} : args;
    call(team_of(1), alone, matrix_view<const float>(a.data() + i * lda, 1, k), B, b_raw,
         matrix_view<float>(row.data(), 1, n), bias, matrix_view<const float>(res.data() + i * n, 1, n));
    for (index_t j = 0; j < n; ++j)
      if (!same_bits(row[std::size_t(j)], c[i * ldc + j])) {
        std::fprintf(stderr, "gemm %s form %d, %ld x %ld x %ld, team %d: C(%ld, %ld) = %.9g, alone %.9g\n",
                     tstream::weight_format<W>::name, args.form, long(m), long(n), long(k), threads, long(i), long(j),
                     double(c[i * ldc + j]), double(row[std::size_t(j)]));
        fz::fail("gemm not bitwise identical across team size / M");
      }
  }

  // Values (fp32, plain and bias forms): a NaN reference gives NaN; finite
  // inputs far from overflow are within K 2^-24 sum|a b| (+ the bias's add).
  if constexpr (std::is_same_v<W, float>) {
    if (args.form > 1 && args.form != 4 && args.form != 5) return;
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) {
        double ref = args.form == 1 ? double(bias[std::size_t(j)]) : 0.0, mag = std::fabs(ref);
        bool finite = std::isfinite(ref);
        for (index_t r = 0; r < k; ++r) {
          const double t = double(a[std::size_t(i * lda + r)]) * double(b_kn[std::size_t(r * n + j)]);
          ref += t;
          mag += std::fabs(t);
          finite = finite && std::isfinite(a[std::size_t(i * lda + r)]) && std::isfinite(b_kn[std::size_t(r * n + j)]);
        }
        const float got = c[i * ldc + j];
        if (std::isnan(ref)) {
          FZ_CHECK(std::isnan(got), "reference is NaN, gemm is not");
          continue;
        }
        if (!finite || mag > fz::flt_max / 8) continue;
        const double bound = (double(k) + 2) * fz::u32 * mag + double(k + 2) * 1.4e-45;
        FZ_CHECK(std::fabs(double(got) - ref) <= bound, "fp32 gemm beyond K 2^-24 sum|a b|");
      }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fz::input in(data, size);
  const int type = in.range(0, 2);
  const bool n_by_k = in.flag();
  const int threads = in.range(1, 4);
  const index_t m = in.range(0, 40), n = in.range(0, 80), k = in.range(1, 300);
  const index_t pad_a = in.range(0, 3), pad_c = in.range(0, 3);
  call_args args{in.range(0, 5), 1.f, 0.f};
  if (args.form == 2) {
    args.alpha = in.value(1.f);
    args.beta = in.flag() ? 0.f : in.value(1.f);
  }
  if (m * n * k > (index_t(1) << 17)) return 0;
  if (type == 0) run<float>(in, n_by_k, threads, m, n, k, pad_a, pad_c, args);
  else if (type == 1) run<bf16>(in, n_by_k, threads, m, n, k, pad_a, pad_c, args);
  else run<std::int8_t>(in, n_by_k, threads, m, n, k, pad_a, pad_c, args);
  return 0;
}
