// libFuzzer target: GEMV. From the input: weight type (f32, bf16, int8),
// mode (exact, fast), team size 1-4, share count 1-4, N in [0, 699], K in
// [1, 700] (N x K at most 2^15), the call form (single, bias, batch of
// M <= 5 strided rows) and every value (NaN, infinities, denormals and huge
// values included). Checks, trapping on failure:
//   * nothing is written outside y (guard zones);
//   * bitwise determinism: the same bits on a team of 1 with 1 share, and
//     each batch row equal to the single-vector call;
//   * int8 packing: non-finite weights are quantize_rows' error naming the
//     first one; finite weights are within scale / 2 of the original;
//   * the value, against a double reference over the stored weights, within
//     the documented error (docs/bad-input.md, "Fuzzing tolerances"):
//       - the reference is NaN  -> y is NaN;
//       - the reference is +-inf (no other term near overflow) -> y is it;
//       - fast int8 with a non-finite x -> every y of that row is NaN;
//       - else, unless sum |w x| may overflow fp32, |y - ref| <= bound.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_input.hpp"
#include "tstream/arch/x86/dot_products.hpp"
#include "tstream/kernels/gemv/gemv.hpp"

using tstream::bf16;
using tstream::index_t;
using tstream::matrix_view;
using tstream::precision;

namespace {

using fz::same_bits;
using fz::team_of;

constexpr float guard = -12345.f;
constexpr index_t guard_len = 37;

template <class W>
void run(fz::input& in, precision mode, int threads, int shares, index_t n, index_t k, int form, index_t m) {
  const float wmag = in.magnitude(), xmag = in.magnitude();
  std::vector<float> w(std::size_t(n * k)), x(std::size_t(m * k)), bias(static_cast<std::size_t>(n));
  for (auto& v : w) v = in.value(wmag);
  for (auto& v : x) v = in.value(xmag);
  for (auto& v : bias) v = in.value(1.f);
  const bool is_i8 = std::is_same_v<W, std::int8_t>, fast = mode == precision::fast;

  // The quantization contract (quantize.hpp): a row whose largest magnitude
  // is below tstream::quantize_floor quantizes to zero. The reference below
  // quantizes such rows exactly, so flush them here.
  auto flush_tiny_rows = [](float* row, index_t len) {
    float amax = 0;
    for (index_t j = 0; j < len; ++j) amax = std::fmax(amax, std::fabs(row[j]));
    if (std::isfinite(amax) && amax > 0 && amax < tstream::quantize_floor)
      for (index_t j = 0; j < len; ++j) row[j] = 0;
  };
  if (is_i8) {
    for (index_t i = 0; i < n; ++i) flush_tiny_rows(&w[std::size_t(i * k)], k);
    if (fast)
      for (index_t r = 0; r < m; ++r) flush_tiny_rows(&x[std::size_t(r * k)], k);
  }

  // Pack. int8: a non-finite weight is quantize_rows' error naming the first.
  const matrix_view<const float> wv(w.data(), n, k);
  std::unique_ptr<tstream::resident_weights<W>> rw;
  if constexpr (std::is_same_v<W, std::int8_t>) {
    index_t bad = -1;
    for (index_t i = 0; i < n * k && bad < 0; ++i)
      if (!std::isfinite(w[std::size_t(i)])) bad = i;
    if (bad >= 0) {
      std::string msg;
      try {
        tstream::resident_weights<W> r(wv, shares);
      } catch (const tstream::error& e) {
        msg = e.what();
      }
      const std::string prefix = "tstream::quantize_rows: w(" + std::to_string(bad / k) + ", " + std::to_string(bad % k) + ") = ";
      const std::string suffix = " is not finite";
      FZ_CHECK(msg.rfind(prefix, 0) == 0 && msg.size() > prefix.size() + suffix.size() &&
                   msg.compare(msg.size() - suffix.size(), suffix.size(), suffix) == 0,
               "int8 packing of a non-finite weight: wrong or missing error");
      return;
    }
  }
  rw = std::make_unique<tstream::resident_weights<W>>(wv, shares);
  const tstream::resident_weights<W> one_share(wv, 1);

  // Effective weights (double): what the kernel multiplies.
  std::vector<double> we(w.size());
  std::vector<float> row_scale(static_cast<std::size_t>(n), 1.f);
  if constexpr (std::is_same_v<W, std::int8_t>) {
    const auto q = tstream::quantize_rows(wv);
    for (index_t i = 0; i < n; ++i) {
      const float s = q.scale[std::size_t(i)];
      row_scale[std::size_t(i)] = s;
      for (index_t j = 0; j < k; ++j) {
        const double e = double(q.q[std::size_t(i * k + j)]) * s;
        FZ_CHECK(std::fabs(e - w[std::size_t(i * k + j)]) <= double(s) * 0.5 * (1 + 1e-5) + 1e-45, "int8 weight beyond scale / 2");
        we[std::size_t(i * k + j)] = e;
      }
    }
  } else if constexpr (std::is_same_v<W, bf16>) {
    for (std::size_t i = 0; i < w.size(); ++i) we[i] = fz::to_bf16(w[i]);
  } else {
    for (std::size_t i = 0; i < w.size(); ++i) we[i] = w[i];
  }
  const bool daz = std::is_same_v<W, bf16> && fast && tstream::arch::have_bf16_dot;  // vdpbf16ps: denormals are zero
  if (daz)
    for (auto& v : we)
      if (std::fabs(v) < fz::flt_min) v = std::copysign(0.0, v);

  // Call, with guard zones around y.
  const index_t ldx = k, ldy = n;
  std::vector<float> ybuf(std::size_t(m * ldy + 2 * guard_len), guard);
  float* y = ybuf.data() + guard_len;
  namespace vxm = tstream::vxm;
  tstream::thread_team& team = team_of(threads);
  const tstream::gemv_options opt{mode};
  const bool too_long = is_i8 && fast && n > 0 && rw->padded_cols() / 4 > std::int64_t(INT32_MAX) / (4 * 255 * 128);
  FZ_CHECK(!too_long, "K above the fast int8 limit cannot occur here");
  if (form == 0) tstream::gemv(team, *rw, std::span<const float>(x.data(), std::size_t(k)), std::span<float>(y, std::size_t(n)), vxm::identity{}, opt);
  else if (form == 1) tstream::gemv(team, *rw, std::span<const float>(x.data(), std::size_t(k)), std::span<float>(y, std::size_t(n)), std::span<const float>(bias), opt);
  else tstream::gemv(team, *rw, matrix_view<const float>(x.data(), m, k, ldx), matrix_view<float>(y, m, n, ldy), vxm::identity{}, opt);
  const index_t rows = form == 2 ? m : 1;
  for (index_t i = 0; i < guard_len; ++i) {
    FZ_CHECK(ybuf[std::size_t(i)] == guard, "gemv wrote before y");
    FZ_CHECK(ybuf[std::size_t(guard_len + rows * ldy + i)] == guard, "gemv wrote after y");
  }

  // Determinism: one member, one share, one vector at a time.
  for (index_t r = 0; r < rows; ++r) {
    std::vector<float> y1(static_cast<std::size_t>(n));
    const std::span<const float> xr(x.data() + r * ldx, std::size_t(k));
    if (form == 1) tstream::gemv(team_of(1), one_share, xr, y1, std::span<const float>(bias), opt);
    else tstream::gemv(team_of(1), one_share, xr, y1, vxm::identity{}, opt);
    if (!same_bits(y1.data(), y + r * ldy, std::size_t(n))) {
      for (index_t i = 0; i < n; ++i)
        if (!same_bits(&y1[std::size_t(i)], y + r * ldy + i, 1))
          std::fprintf(stderr, "gemv %s %s form %d: row %ld of %ld: %.9g (team %d, %d shares) vs %.9g (team 1, 1 share)\n",
                       tstream::weight_format<W>::name, fast ? "fast" : "exact", form, long(i), long(n), double(y[r * ldy + i]), threads,
                       shares, double(y1[std::size_t(i)]));
      fz::fail("gemv not bitwise identical across team size / shares / batch");
    }
  }

  // Values.
  for (index_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * ldx;
    bool x_finite = true;
    double xamax = 0;
    for (index_t j = 0; j < k; ++j) {
      x_finite = x_finite && std::isfinite(xr[j]);
      xamax = std::fmax(xamax, std::fabs(double(xr[j])));
    }
    std::vector<double> xe(static_cast<std::size_t>(k));
    for (index_t j = 0; j < k; ++j) {
      double v = xr[j];
      if (std::is_same_v<W, bf16> && fast) v = fz::to_bf16(xr[j]);
      if (daz && std::fabs(v) < fz::flt_min) v = std::copysign(0.0, v);
      xe[std::size_t(j)] = v;
    }
    const double x_scale = xamax / 127;  // int8 fast: |x_q - x| <= x_scale / 2
    for (index_t i = 0; i < n; ++i) {
      const float got = y[r * ldy + i];
      const double b = form == 1 ? double(bias[std::size_t(i)]) : 0.0;
      if (is_i8 && fast && !x_finite) {
        FZ_CHECK(std::isnan(got), "fast int8: a non-finite x must make every output NaN");
        continue;
      }
      double ref = 0, mag = 0, wabs = 0, qmag = 0;
      for (index_t j = 0; j < k; ++j) {
        const double wv_ = we[std::size_t(i * k + j)], t = wv_ * xe[std::size_t(j)];
        ref += t;
        if (std::isfinite(t)) mag += std::fabs(t);
        wabs += std::fabs(wv_);
        if (is_i8 && row_scale[std::size_t(i)] > 0) qmag += std::fabs(wv_ / row_scale[std::size_t(i)] * xe[std::size_t(j)]);
      }
      ref += b;
      mag += std::isfinite(b) ? std::fabs(b) : 0.0;
      if (std::isnan(ref)) {
        FZ_CHECK(std::isnan(got), "reference is NaN, gemv is not");
        continue;
      }
      // Near fp32 overflow anything goes (an inf - inf may appear in fp32).
      // Exact int8 sums 2^24 q x (panel_kernel.hpp), so it reaches it 2^24
      // times sooner.
      const double qmag_sums = is_i8 && !fast ? std::ldexp(qmag, 24) : qmag;
      if (mag > fz::flt_max / 8 || qmag_sums > fz::flt_max / 8 || (is_i8 && fast && wabs * (xamax + x_scale) > fz::flt_max / 8)) continue;
      if (std::isinf(ref)) {
        FZ_CHECK(got == ref, "reference is infinite, gemv differs");
        continue;
      }
      FZ_CHECK(std::isfinite(got), "finite reference, non-finite gemv");
      const double K = double(k), u = fz::u32;
      double tol = (K + 3) * u * mag + (K + 2) * std::ldexp(1.0, -149);
      if (is_i8) tol += (K + 3) * u * qmag * row_scale[std::size_t(i)];
      if (daz) tol += (K + 1) * fz::flt_min;                       // vdpbf16ps flushes denormal results
      if (is_i8 && fast) {
        tol += wabs * x_scale * 0.5 * (1 + 1e-4) + 4 * u * std::fabs(ref)  // activation quantization
               + 127.0 * 127.0 * (K + 4) * std::ldexp(1.0, -148);        // row scale x x scale may be denormal
      }
      if (!(std::fabs(double(got) - ref) <= tol)) {
        std::fprintf(stderr, "gemv %s %s n=%ld k=%ld row=%ld i=%ld got=%.9g ref=%.9g tol=%.3g\n", tstream::weight_format<W>::name,
                         fast ? "fast" : "exact", long(n), long(k), long(r), long(i), double(got), ref, tol);
        fz::fail("gemv value outside the documented tolerance");
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fz::input in(data, size);
  const int type = in.range(0, 2);
  const precision mode = in.flag() ? precision::fast : precision::exact;
  const int threads = in.range(1, 4), shares = in.range(1, 4);
  index_t n = in.range(0, 699), k = in.range(1, 700);
  if (n * k > (1 << 15)) k = std::max<index_t>(1, (1 << 15) / n);
  const int form = in.range(0, 2);
  const index_t m = form == 2 ? in.range(0, 5) : 1;
  if (type == 0) run<float>(in, mode, threads, shares, n, k, form, m);
  else if (type == 1) run<bf16>(in, mode, threads, shares, n, k, form, m);
  else run<std::int8_t>(in, mode, threads, shares, n, k, form, m);
  return 0;
}
