// libFuzzer target: decode attention. From the input: KV type (f32, bf16,
// int8), mode (exact, fast), KV heads 1-4, query heads per KV head 1-5,
// head_dim from {16, 32, 64, 80, 128}, context L (up to 1200, so chunks of
// 1024 are crossed), spare capacity, sliding window, logit scale, team size
// 1-4, a prefill / one-by-one split of the appends, and every value (NaN,
// infinities, denormals and huge values included). Checks, trapping on
// failure:
//   * int8: a non-finite K or V is kv_cache::append's error naming the first
//     (position, value), and nothing is stored;
//   * storage: bf16 keeps the round-to-nearest-even value; int8 keeps each
//     value within its position's scale / 2;
//   * bitwise determinism: a team of 1 and a plan replay give the same bits;
//   * values against a double reference over the stored K and V: NaN where
//     the reference is NaN; a NaN or infinity in a query head makes that
//     head NaN; otherwise, unless a logit or V is near fp32 overflow, the
//     documented tolerance (docs/bad-input.md, "Fuzzing tolerances").
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_input.hpp"
#include "tstream/kernels/attention/decode.hpp"

using tstream::bf16;
using tstream::index_t;
using tstream::matrix_view;
using tstream::precision;

namespace {

using fz::team_of;

bool all_finite(const float* p, index_t n) {
  for (index_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i])) return false;
  return true;
}

template <class T>
void run(fz::input& in, precision mode, index_t kvh, index_t group, index_t dim, index_t L, int threads) {
  const index_t qh = kvh * group, width = kvh * dim;
  const index_t capacity = L + in.range(0, 70);
  tstream::decode_options opt;
  opt.mode = mode;
  opt.window = in.flag() ? in.range(1, int(L) + 3) : 0;
  static constexpr float scales[] = {0.f, 0.f, 0.f, 0.01f, 0.1f, 1.f, 10.f, 1e-20f};
  opt.scale = scales[in.byte() % 8];
  const index_t pre = in.range(0, int(L));
  const float kmag = in.magnitude(), vmag = in.magnitude(), qmag = in.magnitude();
  std::vector<float> k(std::size_t(L * width)), v(k.size()), q(std::size_t(qh * dim));
  for (auto& x : k) x = in.value(kmag);
  for (auto& x : v) x = in.value(vmag);
  for (auto& x : q) x = in.value(qmag);
  const bool is_i8 = std::is_same_v<T, std::int8_t>, fast = mode == precision::fast && !std::is_same_v<T, float>;

  // The quantization contract (quantize.hpp): rows (and, in int8 fast mode,
  // a block's p x V-scale) below tstream::quantize_floor quantize to zero;
  // the reference quantizes exactly, so flush such rows here.
  auto flush = [](float* row, index_t len, float below) {
    float amax = 0;
    for (index_t j = 0; j < len; ++j) amax = std::fmax(amax, std::fabs(row[j]));
    if (std::isfinite(amax) && amax > 0 && amax < below)
      for (index_t j = 0; j < len; ++j) row[j] = 0;
  };
  if (is_i8) {
    for (index_t r = 0; r < L * kvh; ++r) {
      flush(&k[std::size_t(r * dim)], dim, tstream::quantize_floor);
      flush(&v[std::size_t(r * dim)], dim, fast ? 1e-25f : tstream::quantize_floor);
    }
    if (fast)
      for (index_t h = 0; h < qh; ++h) flush(&q[std::size_t(h * dim)], dim, tstream::quantize_floor);
  }

  tstream::kv_cache<T> cache(kvh, dim, capacity);
  if constexpr (std::is_same_v<T, std::int8_t>) {
    // The first non-finite (position, value), k before v at the same place.
    index_t bad = -1;
    for (index_t i = 0; i < L * width && bad < 0; ++i)
      if (!std::isfinite(k[std::size_t(i)]) || !std::isfinite(v[std::size_t(i)])) bad = i;
    if (bad >= 0) {
      std::string msg;
      try {
        cache.append(matrix_view<const float>(k.data(), L, width), matrix_view<const float>(v.data(), L, width));
      } catch (const tstream::error& e) {
        msg = e.what();
      }
      const std::string which = std::isfinite(k[std::size_t(bad)]) ? "v" : "k";
      FZ_CHECK(msg == "tstream::kv_cache::append: " + which + " at position " + std::to_string(bad / width) + ", value " +
                          std::to_string(bad % width) + " is not finite (int8 needs a finite scale)",
               "int8 append of a non-finite value: wrong or missing error");
      FZ_CHECK(cache.size() == 0, "int8 append stored something before failing");
      return;
    }
  }
  if (pre > 0) cache.append(matrix_view<const float>(k.data(), pre, width), matrix_view<const float>(v.data(), pre, width));
  for (index_t t = pre; t < L; ++t)
    cache.append(std::span<const float>(k.data() + t * width, std::size_t(width)), std::span<const float>(v.data() + t * width, std::size_t(width)));
  FZ_CHECK(cache.size() == L, "kv_cache size");

  // Storage.
  for (index_t p = 0; p < L; ++p)
    for (index_t h = 0; h < kvh; ++h)
      for (index_t d = 0; d < dim; ++d) {
        const float kin = k[std::size_t(p * width + h * dim + d)], vin = v[std::size_t(p * width + h * dim + d)];
        const float ks = cache.key(h, p, d), vs = cache.value(h, p, d);
        if constexpr (std::is_same_v<T, std::int8_t>) {
          FZ_CHECK(std::fabs(double(ks) - kin) <= 0.5 * (1 + 1e-5) * cache.key_scale(h, p) + 1e-44, "int8 K beyond scale / 2");
          FZ_CHECK(std::fabs(double(vs) - vin) <= 0.5 * (1 + 1e-5) * cache.value_scale(h, p) + 1e-44, "int8 V beyond scale / 2");
        } else {
          const double ek = std::is_same_v<T, bf16> ? fz::to_bf16(kin) : double(kin);
          const double ev = std::is_same_v<T, bf16> ? fz::to_bf16(vin) : double(vin);
          FZ_CHECK((std::isnan(ek) && std::isnan(ks)) || double(ks) == ek, "stored K is not the input (rounded)");
          FZ_CHECK((std::isnan(ev) && std::isnan(vs)) || double(vs) == ev, "stored V is not the input (rounded)");
        }
      }

  // Run, twice (a replay), then on a team of 1.
  tstream::decode_plan<T> plan(cache, qh, opt);
  std::vector<float> out(q.size(), -1.f), again(q.size()), single(q.size());
  plan.run(team_of(threads), q, out);
  plan.run(team_of(threads), q, again);
  tstream::attention_decode(team_of(1), cache, q, single, opt);
  FZ_CHECK(std::memcmp(out.data(), again.data(), out.size() * 4) == 0, "a plan replay differs");
  FZ_CHECK(std::memcmp(out.data(), single.data(), out.size() * 4) == 0, "attention not bitwise identical across team sizes");

  // Reference in double over the stored values.
  const index_t lo = opt.window > 0 ? std::max<index_t>(0, L - opt.window) : 0;
  // The case and the output element, for a failure's message.
  const auto describe = [&](index_t h, index_t d, float got) {
    std::fprintf(stderr, "attention T=%d %s kvh=%ld qh=%ld dim=%ld L=%ld window=%ld scale=%g h=%ld d=%ld got=%.9g",
                 int(sizeof(typename tstream::kv_cache<T>::storage)), fast ? "fast" : "exact", long(kvh), long(qh), long(dim),
                 long(L), long(opt.window), double(opt.scale), long(h), long(d), double(got));
  };
  const double scale = opt.scale > 0 ? opt.scale : 1.0 / std::sqrt(double(dim)), u = fz::u32;
  for (index_t h = 0; h < qh; ++h) {
    const index_t g = h / group;
    const float* qv = q.data() + h * dim;
    const float* oh = out.data() + h * dim;
    if (!all_finite(qv, dim)) {
      for (index_t d = 0; d < dim; ++d) FZ_CHECK(std::isnan(oh[d]), "a non-finite query must make its head NaN");
      continue;
    }
    double qamax = 0;
    for (index_t d = 0; d < dim; ++d) qamax = std::fmax(qamax, std::fabs(double(qv[d])));
    std::vector<double> s(std::size_t(L), -INFINITY);
    double mx = -INFINITY, delta = 0, huge = 0;
    bool nan_logit = false;
    for (index_t j = lo; j < L; ++j) {
      double dot = 0, mag = 0, kabs = 0;
      for (index_t d = 0; d < dim; ++d) {
        const double kd = cache.key(g, j, d), t = double(qv[d]) * kd;
        dot += t;
        if (std::isfinite(t)) mag += std::fabs(t);
        if (std::isfinite(kd)) kabs += std::fabs(kd);
      }
      if (std::isnan(dot)) nan_logit = true;
      s[std::size_t(j)] = dot * scale;
      mx = std::max(mx, s[std::size_t(j)]);
      const double ksc = is_i8 ? double(cache.key_scale(g, j)) : 1.0;  // int8 sums q x code, then scales
      // The kernel forms q . k before the logit scale (int8: the code sums,
      // then times the K scale): either overflowing fp32 is outside the bound.
      huge = std::max({huge, mag, is_i8 && ksc > 0 ? mag / ksc : mag});
      double dj = (double(dim) + 8) * u * mag * scale + 8 * u * std::fabs(dot * scale);
      if (fast && std::is_same_v<T, bf16>)  // q rounded to bf16; vdpbf16ps treats denormal q and K as 0
        dj += std::ldexp(1.0, -8) * mag * scale + (kabs + double(dim) * qamax) * fz::flt_min * scale;
      if (fast && is_i8) dj += (qamax / 254) * 1.001 * kabs * scale + 1e-30;            // q quantized to 8 bits
      delta = std::max(delta, dj);
    }
    // V magnitudes in the window.
    double vmax = 0, vsmax = 0;
    bool v_nonfinite = false;
    for (index_t j = lo; j < L; ++j) {
      for (index_t d = 0; d < dim; ++d) {
        const double vd = cache.value(g, j, d);
        if (!std::isfinite(vd)) v_nonfinite = true;
        else vmax = std::max(vmax, std::fabs(vd));
      }
      vsmax = std::max(vsmax, double(cache.value_scale(g, j)));
    }
    if (nan_logit || std::isnan(mx) || mx == INFINITY) {
      for (index_t d = 0; d < dim; ++d) FZ_CHECK(std::isnan(oh[d]), "a NaN or +inf logit must make its head NaN");
      continue;
    }
    // Near fp32 overflow (logits, products or V) anything goes; exact int8's
    // one- and two-head tiles hold their code sums and V sums 2^24 times too
    // large (overflow past 2^104 ~ 2e31, and from |V| = 2^94 ~ 2e28).
    const bool scaled = is_i8 && !fast;
    if (huge > (scaled ? 1e30 : 1e36) || vmax > (scaled ? 1e27 : 1e36) || std::fabs(mx) > 1e36 || !std::isfinite(mx))
      continue;
    double sum = 0, sum_block_max = 0;
    for (index_t j = lo; j < L; ++j) sum += std::exp(s[std::size_t(j)] - mx);
    for (index_t b = lo / 64; b * 64 < L; ++b) {  // sum over blocks of the block's largest p
      double bm = 0;
      for (index_t j = std::max(lo, b * 64); j < std::min(L, (b + 1) * 64); ++j) bm = std::max(bm, std::exp(s[std::size_t(j)] - mx));
      sum_block_max += bm;
    }
    for (index_t d = 0; d < dim; ++d) {
      double ref = 0, mag = 0;
      bool bad_v = false;
      for (index_t j = lo; j < L; ++j) {
        const double p = std::exp(s[std::size_t(j)] - mx) / sum, vd = cache.value(g, j, d);
        if (!std::isfinite(vd)) bad_v = true;
        ref += p * vd;
        if (std::isfinite(vd)) mag += p * std::fabs(vd);
      }
      const float got = oh[d];
      if (bad_v || std::isnan(ref)) {
        // IEEE: NaN, or the infinity (a p of 0 times inf is NaN too).
        FZ_CHECK(std::isnan(got) || (std::isinf(ref) && got == ref), "non-finite V: output is neither NaN nor the infinity");
        continue;
      }
      (void)v_nonfinite;
      const double rel = std::expm1(2 * delta);
      if (!(rel < 1e3)) {  // logits too coarse in fp32 to pin the softmax down: a convex combination of V
        if (!(std::isfinite(got) && std::fabs(double(got)) <= 1.01 * vmax * (fast && is_i8 ? 2 : 1) + 1e-30)) {
          describe(h, d, got);
          std::fprintf(stderr, " max|v|=%.9g\n", vmax);
          fz::fail("attention output outside the range of V");
        }
        continue;
      }
      double tol = (rel + 1e-5) * mag + double(L) * std::ldexp(1.0, -125) * vmax + 1e-37;
      if (fast) tol += 2.3e-4 * mag;  // exp2_fast: 1.1e-4 per weight, in sum p v and in sum p
      if (fast && std::is_same_v<T, bf16>) tol += std::ldexp(1.0, -8) * mag + double(L) * fz::flt_min * (1 + vmax);  // p to bf16, DAZ
      if (fast && is_i8) tol += (64.0 * 127 / 510 + 1) * vsmax * (sum_block_max / sum) + 1e-37;          // p quantized per block
      if (!(std::isfinite(got) && std::fabs(double(got) - ref) <= tol)) {
        describe(h, d, got);
        std::fprintf(stderr, " ref=%.9g tol=%.3g\n", ref, tol);
        fz::fail("attention value outside the documented tolerance");
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fz::input in(data, size);
  const int type = in.range(0, 2);
  const precision mode = in.flag() ? precision::fast : precision::exact;
  const index_t kvh = in.range(1, 4), group = in.range(1, 5);
  static constexpr index_t dims[] = {16, 32, 64, 80, 128};
  const index_t dim = dims[in.byte() % 5];
  index_t L = in.flag() ? in.range(1, 1200) : in.range(1, 130);
  if (L * kvh * group * dim > (1 << 20)) L = std::max<index_t>(1, (1 << 20) / (kvh * group * dim));
  const int threads = in.range(1, 4);
  if (type == 0) run<float>(in, mode, kvh, group, dim, L, threads);
  else if (type == 1) run<bf16>(in, mode, kvh, group, dim, L, threads);
  else run<std::int8_t>(in, mode, kvh, group, dim, L, threads);
  return 0;
}
