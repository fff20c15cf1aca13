// Decode attention against a double-precision reference over the values the
// cache stores, over awkward lengths, head dims, GQA ratios and windows;
// storage error of bf16/int8 against the fp32 data; bitwise determinism
// across thread counts; large and equal logits; every bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "tstream/core/math.hpp"
#include "tstream/kernels/attention/decode.hpp"

using tstream::bf16;
using tstream::index_t;
using tstream::kv_cache;

namespace {

std::vector<float> random_vector(std::size_t n, unsigned seed, float amp = 1.f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(-amp, amp);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

template <class T>
kv_cache<T> filled_cache(index_t kvh, index_t dim, index_t L, unsigned seed, float amp = 1.f, index_t capacity = 0) {
  kv_cache<T> c(kvh, dim, capacity ? capacity : L);
  const auto k = random_vector(std::size_t(L * kvh * dim), seed, amp), v = random_vector(std::size_t(L * kvh * dim), seed + 1);
  // Half as a prefill, the rest one token at a time (both paths).
  const index_t pre = L / 2;
  if (pre) c.append(tstream::matrix_view<const float>(k.data(), pre, kvh * dim), tstream::matrix_view<const float>(v.data(), pre, kvh * dim));
  for (index_t t = pre; t < L; ++t)
    c.append(std::span<const float>(k.data() + t * kvh * dim, std::size_t(kvh * dim)),
             std::span<const float>(v.data() + t * kvh * dim, std::size_t(kvh * dim)));
  return c;
}

// Double-precision attention over the values the cache holds; also returns
// the scale of each output (sum_j p_j |v_jd|) for relative tolerances.
template <class T>
void reference(const kv_cache<T>& c, const std::vector<float>& q, index_t qh, tstream::decode_options opt,
               std::vector<double>& out, std::vector<double>& mag) {
  const index_t dim = c.head_dim(), L = c.size(), group = qh / c.kv_heads();
  const double scale = opt.scale > 0 ? opt.scale : 1.0 / std::sqrt(double(dim));
  const index_t lo = opt.window > 0 ? std::max<index_t>(0, L - opt.window) : 0;
  out.assign(std::size_t(qh * dim), 0.0);
  mag.assign(std::size_t(qh * dim), 0.0);
  for (index_t h = 0; h < qh; ++h) {
    const index_t kv = h / group;
    std::vector<double> s(static_cast<std::size_t>(L));
    double mx = -INFINITY;
    for (index_t j = lo; j < L; ++j) {
      double dot = 0;
      for (index_t d = 0; d < dim; ++d) dot += double(q[std::size_t(h * dim + d)]) * c.key(kv, j, d);
      s[std::size_t(j)] = dot * scale;
      mx = std::max(mx, s[std::size_t(j)]);
    }
    double sum = 0;
    for (index_t j = lo; j < L; ++j) sum += std::exp(s[std::size_t(j)] - mx);
    for (index_t j = lo; j < L; ++j) {
      const double p = std::exp(s[std::size_t(j)] - mx) / sum;
      for (index_t d = 0; d < dim; ++d) {
        out[std::size_t(h * dim + d)] += p * c.value(kv, j, d);
        mag[std::size_t(h * dim + d)] += p * std::fabs(c.value(kv, j, d));
      }
    }
  }
}

// exp2_fast's polynomial (its fp32 coefficients) evaluated in double.
double exp2_fast_emulated(double x) {
  const double xc = std::max(x, -127.0), n = std::nearbyint(xc), f = xc - n;
  if (n <= -127) return 0.0;
  const double p = ((double(5.50089329e-02f) * f + double(2.42210969e-01f)) * f + double(6.93282902e-01f)) * f + 1.0;
  return std::ldexp(p, int(n));
}

// The fast modes' own arithmetic, emulated in double: queries rounded to
// bf16 or quantized per head (code + 128, exact integer dot with the K codes),
// the online softmax over the same 1024-position chunks and 512-position
// pages with exp2_fast's polynomial, each 64-position block's probabilities
// rounded to bf16 or quantized to u8 (nearest) against the block's largest
// p x v_scale, then chunks merged. What is left between this and the kernel
// is fp32 rounding, so the tolerance is tight enough to catch a wrong
// offset or scale.
template <class T>
std::vector<double> reference_fast(const kv_cache<T>& c, const std::vector<float>& q, index_t qh, index_t window) {
  const index_t dim = c.head_dim(), L = c.size(), group = qh / c.kv_heads();
  const double scale = 1.0 / std::sqrt(double(dim)) * 1.4426950408889634;  // base-2 logits
  const index_t lo = window > 0 ? std::max<index_t>(0, L - window) : 0;
  std::vector<double> out(std::size_t(qh * dim), 0.0);
  for (index_t h = 0; h < qh; ++h) {
    const index_t kv = h / group;
    const float* qv = q.data() + h * dim;
    // The query as the dot product sees it.
    std::vector<double> qd(static_cast<std::size_t>(dim));
    float amax = 0;
    for (index_t d = 0; d < dim; ++d) amax = std::max(amax, std::fabs(qv[d]));
    const float inv = amax > 0 ? 127.f / amax : 0.f, qs = amax / 127.f;
    for (index_t d = 0; d < dim; ++d)
      qd[std::size_t(d)] = std::is_same_v<T, bf16> ? double(float(bf16(qv[d]))) : double(tstream::quantize_value(qv[d], inv));
    struct partial { double m, l; std::vector<double> acc; };
    std::vector<partial> parts;
    for (index_t c0 = lo / 1024 * 1024; c0 < L; c0 += 1024) {
      partial pr{-INFINITY, 0.0, std::vector<double>(static_cast<std::size_t>(dim), 0.0)};
      constexpr index_t page = kv_cache<T>::page;  // one softmax step per page
      for (index_t b0 = std::max(lo, c0) / page * page; b0 < std::min(L, c0 + 1024); b0 += page) {
        const index_t p0 = std::max({b0, lo, c0}), p1 = std::min({b0 + page, L, c0 + 1024});
        std::vector<double> t(std::size_t(page), -INFINITY);
        for (index_t j = p0; j < p1; ++j) {
          double dot = 0;
          for (index_t d = 0; d < dim; ++d) {
            const double k = std::is_same_v<T, bf16> ? c.key(kv, j, d) : std::round(c.key(kv, j, d) / c.key_scale(kv, j));
            dot += qd[std::size_t(d)] * k;
          }
          if constexpr (std::is_same_v<T, std::int8_t>) dot *= double(c.key_scale(kv, j)) * qs;
          t[std::size_t(j - b0)] = dot * scale;
        }
        double mb = -INFINITY;
        for (double x : t) mb = std::max(mb, x);
        const double mn = std::max(pr.m, mb), alpha = std::exp2(pr.m - mn);
        std::vector<double> p(std::size_t(page), 0.0);
        double psum = 0;
        for (index_t i = 0; i < page; ++i) {
          p[std::size_t(i)] = exp2_fast_emulated(t[std::size_t(i)] - mn);
          psum += p[std::size_t(i)];
          if constexpr (std::is_same_v<T, std::int8_t>) {
            if (b0 + i < L) p[std::size_t(i)] *= c.value_scale(kv, b0 + i);
          }
        }
        for (index_t i0 = 0; i0 < page; i0 += 64) {  // int8 codes per 64-position block
          double pmax = 0;
          for (index_t i = i0; i < i0 + 64; ++i) pmax = std::max(pmax, p[std::size_t(i)]);
          for (index_t i = i0; i < i0 + 64; ++i) {
            double& x = p[std::size_t(i)];
            if constexpr (std::is_same_v<T, bf16>) x = double(float(bf16(float(x))));
            else x = pmax > 0 ? std::nearbyint(x * (255.0 / pmax)) * (pmax / 255.0) : 0.0;
          }
        }
        pr.l = pr.l * alpha + psum;
        for (index_t d = 0; d < dim; ++d) {
          double a = pr.acc[std::size_t(d)] * alpha;
          for (index_t j = p0; j < p1; ++j) {
            const double v = std::is_same_v<T, bf16> ? c.value(kv, j, d) : std::round(c.value(kv, j, d) / c.value_scale(kv, j));
            a += p[std::size_t(j - b0)] * v;
          }
          pr.acc[std::size_t(d)] = a;
        }
        pr.m = mn;
      }
      parts.push_back(std::move(pr));
    }
    double M = -INFINITY, Ls = 0;
    for (auto& pr : parts) M = std::max(M, pr.m);
    for (auto& pr : parts) {
      const double f = std::exp2(pr.m - M);
      Ls += pr.l * f;
      for (index_t d = 0; d < dim; ++d) out[std::size_t(h * dim + d)] += pr.acc[std::size_t(d)] * f;
    }
    for (index_t d = 0; d < dim; ++d) out[std::size_t(h * dim + d)] /= Ls;
  }
  return out;
}

template <class T>
void check_case(index_t qh, index_t kvh, index_t dim, index_t L, tstream::decode_options opt, int threads,
                double tol, float qamp = 1.f, index_t capacity = 0) {
  CAPTURE(qh);
  CAPTURE(kvh);
  CAPTURE(dim);
  CAPTURE(L);
  CAPTURE(opt.window);
  const auto c = filled_cache<T>(kvh, dim, L, unsigned(L * 3 + dim), 1.f, capacity);
  const auto q = random_vector(std::size_t(qh * dim), unsigned(qh + L), qamp);
  std::vector<float> out(std::size_t(qh * dim), -1.f);
  tstream::thread_team team(threads);
  tstream::attention_decode(team, c, q, out, opt);
  std::vector<double> ref, mag;
  reference(c, q, qh, opt, ref, mag);
  for (std::size_t i = 0; i < out.size(); ++i) {
    CAPTURE(i);
    REQUIRE(std::fabs(out[i] - ref[i]) <= tol * mag[i] + 1e-30);
  }
  if (opt.mode == tstream::precision::fast && !std::is_same_v<T, float>) {
    const auto emulated = reference_fast(c, q, qh, opt.window);
    for (std::size_t i = 0; i < out.size(); ++i) {
      CAPTURE(i);
      REQUIRE(std::fabs(out[i] - emulated[i]) <= 2e-5 * mag[i] + 1e-30);
    }
  }
}

}  // namespace

TEST_CASE("exp2: relative error below 2e-7, exact zero below -126, NaN stays NaN") {
  using B = tstream::arch::batch<float>;
  for (float x = -126.f; x <= 100.f; x += 0.0137f) {
    const float y = tstream::exp2(B(x)).get(0);
    REQUIRE(std::fabs(double(y) - std::exp2(double(x))) <= 2e-7 * std::exp2(double(x)));
  }
  CHECK(tstream::exp2(B(-INFINITY)).get(0) == 0.f);
  CHECK(tstream::exp2(B(-200.f)).get(0) == 0.f);
  CHECK(tstream::exp2(B(0.f)).get(0) == 1.f);
  CHECK(std::isnan(tstream::exp2(B(NAN)).get(0)));
}

TEST_CASE("exp2_fast: relative error below 1.1e-4 for x <= 0, 2^0 = 1, exact zero at -127 and below, NaN stays NaN") {
  using B = tstream::arch::batch<float>;
  for (float x = -126.f; x <= 0.f; x += 0.00137f) {
    const float y = tstream::exp2_fast(B(x)).get(0);
    REQUIRE(std::fabs(double(y) - std::exp2(double(x))) <= 1.1e-4 * std::exp2(double(x)));
  }
  // The test's emulation (reference_fast) is the same polynomial.
  for (float x = -126.f; x <= 0.f; x += 0.0731f) {
    const double y = tstream::exp2_fast(B(x)).get(0), e = exp2_fast_emulated(double(x));
    REQUIRE(std::fabs(y - e) <= 5e-7 * e);
  }
  CHECK(tstream::exp2_fast(B(0.f)).get(0) == 1.f);
  CHECK(tstream::exp2_fast(B(-0.f)).get(0) == 1.f);
  CHECK(tstream::exp2_fast(B(-3.f)).get(0) == 0.125f);
  CHECK(tstream::exp2_fast(B(-126.7f)).get(0) == 0.f);
  CHECK(tstream::exp2_fast(B(-INFINITY)).get(0) == 0.f);
  CHECK(tstream::exp2_fast(B(-127.f)).get(0) == 0.f);
  CHECK(tstream::exp2_fast(B(-200.f)).get(0) == 0.f);
  CHECK(std::isnan(tstream::exp2_fast(B(NAN)).get(0)));
}

TEST_CASE("store_u8_codes: nearest (ties to even), 255 above and for NaN") {
  using B = tstream::arch::batch<float>;
  constexpr std::size_t W = B::size;
  const float in[] = {0.f, 0.49f, 0.5f, 1.5f, 2.5f, 7.6f, 254.4f, 254.5f, 255.f, 255.4f, 300.f, 1e30f, INFINITY, NAN, -0.f, 128.f};
  const int want[] = {0, 0, 0, 2, 2, 8, 254, 254, 255, 255, 255, 255, 255, 255, 0, 128};
  for (std::size_t i0 = 0; i0 < std::size(in); i0 += W) {
    alignas(64) float lanes[W] = {};
    for (std::size_t i = 0; i < W && i0 + i < std::size(in); ++i) lanes[i] = in[i0 + i];
    std::uint8_t out[W + 1];
    out[W] = 0xAB;
    tstream::arch::store_u8_codes(out, B::load_aligned(lanes));
    for (std::size_t i = 0; i < W && i0 + i < std::size(in); ++i) {
      CAPTURE(in[i0 + i]);
      CHECK(int(out[i]) == want[i0 + i]);
    }
    CHECK(out[W] == 0xAB);  // W bytes written, no more
  }
}

TEST_CASE("attention f32: lengths, head dims and GQA ratios against double") {
  // 512, 513, 1024: a page (512 positions) and a chunk (1024) boundary.
  for (index_t L : {1, 2, 7, 319, 320, 321, 512, 513, 1000, 1024, 4097, 5000})  // 4097: a last chunk of one position
    for (auto [qh, kvh] : {std::pair<index_t, index_t>{8, 8}, {8, 2}, {8, 1}}) check_case<float>(qh, kvh, 64, L, {}, 2, 1e-5);
  for (index_t dim : {80, 96, 128, 256}) check_case<float>(8, 2, dim, 777, {}, 2, 1e-5);
  check_case<float>(12, 4, 128, 1500, {}, 3, 1e-5);  // 3 heads per group: a partial tile
}

TEST_CASE("attention bf16 and int8 KV: the kernel is exact on the stored values") {
  for (index_t L : {1, 321, 2100}) {
    check_case<bf16>(8, 2, 128, L, {}, 2, 1e-5);
    check_case<std::int8_t>(8, 2, 128, L, {}, 2, 1e-5);
  }
  check_case<std::int8_t>(4, 4, 80, 130, {}, 1, 1e-5);
  // GQA ratio 8: two tiles of four query heads per KV head.
  check_case<bf16>(8, 1, 128, 700, {}, 2, 1e-5);
  check_case<std::int8_t>(8, 1, 128, 700, {}, 2, 1e-5);
  // Exact int8 tiles of one or two heads read codes as 2^24 x code, of three
  // or four sign-extend them. AVX-512 (four heads a tile): groups of 5 and 6
  // mix both in one plan (4 + 1, 4 + 2), 3 is one tile of three, 2 one of
  // two. AVX2 (two a tile): every tile reads from the top byte.
  check_case<std::int8_t>(5, 1, 64, 1100, {}, 2, 1e-5);
  check_case<std::int8_t>(6, 1, 96, 1100, {}, 2, 1e-5);
  check_case<std::int8_t>(6, 2, 80, 700, {}, 2, 1e-5);
  check_case<std::int8_t>(4, 2, 128, 600, {}, 2, 1e-5);
  // Odd L over several pages (a bf16 pair straddles the end), a narrow last
  // V slice (head_dim 80) over several pages, capacity above L.
  check_case<bf16>(8, 2, 64, 1537, {}, 2, 1e-5);
  check_case<std::int8_t>(8, 2, 64, 1537, {}, 2, 1e-5);
  check_case<bf16>(8, 2, 80, 1100, {}, 2, 1e-5, 1.f, 2000);
  check_case<std::int8_t>(8, 2, 80, 1100, {}, 2, 1e-5, 1.f, 2000);
}

TEST_CASE("attention bf16 and int8 KV, fast mode: within the stated tolerance of the stored values") {
  tstream::decode_options fast;
  fast.mode = tstream::precision::fast;
  for (index_t L : {1, 63, 321, 2100}) {
    check_case<bf16>(8, 2, 128, L, fast, 2, 2e-3);
    check_case<std::int8_t>(8, 2, 128, L, fast, 2, 5e-3);
  }
  check_case<bf16>(4, 4, 80, 130, fast, 1, 2e-3);
  check_case<std::int8_t>(6, 2, 96, 500, fast, 1, 5e-3);
  check_case<bf16>(8, 2, 64, 1537, fast, 2, 2e-3);
  check_case<bf16>(8, 2, 80, 1100, fast, 2, 2e-3, 1.f, 2000);
  check_case<std::int8_t>(8, 2, 80, 1100, fast, 2, 5e-3, 1.f, 2000);
  fast.window = 70;
  check_case<std::int8_t>(8, 1, 64, 1000, fast, 2, 5e-3);
  check_case<float>(8, 1, 64, 1000, fast, 2, 1e-5);  // fp32: fast is exact
}

TEST_CASE("kv_cache: memory is whole 512-position pages of K, V and the int8 scales") {
  // Per position and head: K and V (head_dim each), plus 12 bytes of int8 scales and sums.
  auto expect = [](index_t kvh, index_t dim, index_t cap, std::size_t elem, std::size_t extra) {
    const std::size_t pages = std::size_t((cap + 511) / 512);
    return std::size_t(kvh) * pages * 512 * (2 * std::size_t(dim) * elem + extra);
  };
  CHECK(kv_cache<float>(8, 128, 64).memory_bytes() == expect(8, 128, 64, 4, 0));  // 4 MiB
  CHECK(kv_cache<float>(8, 128, 64).memory_bytes() == std::size_t(4) << 20);
  CHECK(kv_cache<float>(2, 80, 512).memory_bytes() == expect(2, 80, 512, 4, 0));
  CHECK(kv_cache<bf16>(3, 64, 513).memory_bytes() == expect(3, 64, 513, 2, 0));
  CHECK(kv_cache<std::int8_t>(2, 96, 1500).memory_bytes() == expect(2, 96, 1500, 1, 12));
  CHECK(kv_cache<std::int8_t>(1, 16, 1).memory_bytes() == expect(1, 16, 1, 1, 12));
}

TEST_CASE("attention: sliding window") {
  for (index_t w : {1, 5, 64, 65, 1500}) {
    tstream::decode_options opt;
    opt.window = w;
    check_case<float>(8, 2, 64, 3000, opt, 2, 1e-5);
  }
  // The window starts at an odd position (a bf16 pair and an int8 quad
  // straddle it) inside a page's sixth block (w = 65) or last block (1501).
  for (index_t w : {65, 1501}) {
    tstream::decode_options opt;
    opt.window = w;
    check_case<bf16>(8, 2, 64, 3000, opt, 2, 1e-5);
    check_case<std::int8_t>(8, 2, 64, 3000, opt, 2, 1e-5);
    opt.mode = tstream::precision::fast;
    check_case<bf16>(8, 2, 64, 3000, opt, 2, 2e-3);
    check_case<std::int8_t>(8, 2, 64, 3000, opt, 2, 5e-3);
  }
}

TEST_CASE("attention: large logits (1e4) and all-equal logits are safe") {
  check_case<float>(4, 1, 64, 700, {}, 2, 1e-5, 300.f);  // |logits| up to ~1e4
  // All-equal logits: q = 0 gives the mean of V.
  const auto c = filled_cache<float>(1, 64, 333, 5);
  std::vector<float> q(64, 0.f), out(64);
  tstream::thread_team team(2);
  tstream::attention_decode(team, c, q, out);
  for (index_t d = 0; d < 64; ++d) {
    double mean = 0;
    for (index_t j = 0; j < 333; ++j) mean += c.value(0, j, d);
    mean /= 333;
    REQUIRE(out[std::size_t(d)] == doctest::Approx(mean).epsilon(1e-5));
  }
}

TEST_CASE("attention: stored bf16 and int8 K/V stay within their stated error of fp32") {
  const index_t kvh = 2, dim = 128, L = 600, qh = 8;
  const auto c32 = filled_cache<float>(kvh, dim, L, 9);
  const auto c16 = filled_cache<bf16>(kvh, dim, L, 9);
  const auto c8 = filled_cache<std::int8_t>(kvh, dim, L, 9);
  const auto q = random_vector(std::size_t(qh * dim), 10, 2.f);
  std::vector<float> o32(std::size_t(qh * dim)), o16(o32.size()), o8(o32.size());
  tstream::thread_team team(2);
  tstream::attention_decode(team, c32, q, o32);
  tstream::attention_decode(team, c16, q, o16);
  tstream::attention_decode(team, c8, q, o8);
  double max32 = 0, e16 = 0, e8 = 0;
  for (std::size_t i = 0; i < o32.size(); ++i) {
    max32 = std::max(max32, double(std::fabs(o32[i])));
    e16 = std::max(e16, double(std::fabs(o16[i] - o32[i])));
    e8 = std::max(e8, double(std::fabs(o8[i] - o32[i])));
  }
  // The README's stated bounds, relative to the largest output.
  CHECK(e16 <= 1e-2 * max32);
  CHECK(e8 <= 3e-2 * max32);
  CHECK(e16 > 0);  // bf16 storage does round
}

TEST_CASE_TEMPLATE("attention: bitwise identical for any thread count", T, float, bf16, std::int8_t) {
  const auto c = filled_cache<T>(4, 128, 5000, 77);
  const auto q = random_vector(32 * 128, 78);
  for (auto mode : {tstream::precision::exact, tstream::precision::fast}) {
    std::vector<float> first;
    tstream::decode_options opt;
    opt.mode = mode;
    for (int t : {1, 2, 3, 4, 7}) {
      tstream::thread_team team(t);
      std::vector<float> out(q.size());
      tstream::decode_plan<T> plan(c, 32, opt);
      plan.run(team, q, out);
      plan.run(team, q, out);  // a plan replays
      if (first.empty()) first = out;
      CAPTURE(t);
      REQUIRE(std::memcmp(out.data(), first.data(), out.size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("attention: bad input is a clear tstream::error and writes nothing") {
  CHECK_THROWS_WITH_AS(kv_cache<float>(2, 100, 10), "tstream::kv_cache: head_dim = 100 is unsupported (a multiple of 16 up to 1024)", tstream::error);
  CHECK_THROWS_WITH_AS(kv_cache<float>(0, 64, 10), "tstream::kv_cache: kv_heads = 0 must be at least 1", tstream::error);
  CHECK_THROWS_WITH_AS(kv_cache<float>(1, 64, 0), "tstream::kv_cache: capacity = 0 must be at least 1", tstream::error);
  kv_cache<float> c(2, 64, 3);
  std::vector<float> kv(128, 1.f), q(6 * 64, 1.f), out(6 * 64, 42.f);
  tstream::thread_team team(2);
  CHECK_THROWS_WITH_AS(tstream::attention_decode(team, c, q, out), "tstream::attention_decode: the KV cache is empty (L = 0)", tstream::error);
  CHECK_THROWS_WITH_AS(c.append(std::span<const float>(kv.data(), 127), kv),
                       "tstream::kv_cache::append: k has 127 values per position, expected kv_heads x head_dim = 128", tstream::error);
  for (int i = 0; i < 3; ++i) c.append(kv, kv);
  CHECK_THROWS_WITH_AS(c.append(kv, kv), "tstream::kv_cache::append: appending 1 positions to 3 exceeds capacity = 3", tstream::error);
  CHECK(c.size() == 3);
  CHECK_THROWS_WITH_AS(tstream::decode_plan<float>(c, 3), "tstream::decode_plan: q_heads = 3 is not a positive multiple of kv_heads = 2", tstream::error);
  CHECK_THROWS_WITH_AS(tstream::attention_decode(team, c, std::span<const float>(q.data(), 6 * 64 - 1), out),
                       "tstream::attention_decode: q has 383 elements, not a multiple of head_dim = 64", tstream::error);
  tstream::decode_plan<float> plan(c, 6);
  CHECK_THROWS_WITH_AS(plan.run(team, q, std::span<float>(out.data(), 64)),
                       "tstream::attention_decode: out has 64 elements, expected q_heads x head_dim = 384", tstream::error);
  CHECK_THROWS_WITH_AS(plan.run(team, q, std::span<float>(q.data(), q.size()).subspan(0)), "tstream::attention_decode: out overlaps q", tstream::error);
  for (float v : out) REQUIRE(v == 42.f);
  std::vector<float> bad(128, 1.f);
  bad[5] = NAN;
  kv_cache<std::int8_t> c8(2, 64, 4);
  CHECK_THROWS_AS(c8.append(bad, kv), tstream::error);
  CHECK(c8.size() == 0);
}
