// Decode attention as a stream pipeline: one new query token against a
// resident KV cache, flash-decoding style.
//
//   out[h] = softmax(scale * q[h] . K^T) V     for every query head h
//
// Grouped-query attention: query head h reads KV head h / (q_heads /
// kv_heads), and the query heads of a group share one pass over their KV
// head's blocks, so K and V bytes are read once per group.
//
// Per block of 64 positions and up to four query heads (MXM): the scores are
// 4 x 64 lanes in 16 registers, accumulated over head_dim with every K load
// shared by the heads. VXM: an online softmax in base 2 (running max m and
// sum l per head, fp32, safe for large logits). MXM again: acc += p V with
// every V load shared by the heads.
//
// The split: the context is cut into fixed chunks of 1024 positions (a plan
// constant, never L / threads); (KV head, chunk) work items are spread over
// the team; partial (m, l, acc) results merge in chunk order. So the output
// is bitwise identical for any thread count.
//
// NaN and infinity: a NaN or infinity in q, K or V reaches the affected
// heads' outputs as NaN. Positions outside the window are never read.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include "tstream/arch/simd.hpp"
#include "tstream/arch/x86/dot_products.hpp"
#include "tstream/core/buffer.hpp"
#include "tstream/core/error.hpp"
#include "tstream/core/math.hpp"
#include "tstream/kernels/attention/kv_cache.hpp"
#include "tstream/runtime/thread_team.hpp"

namespace tstream {

/// Options of decode attention.
struct decode_options {
  /// Logit scale; 0 means 1 / sqrt(head_dim).
  float scale = 0.f;
  /// Sliding window: attend to the last `window` positions only; 0 = all.
  index_t window = 0;
};

namespace detail::attn {

using fbatch = arch::batch<float>;
inline constexpr std::size_t W = fbatch::size;
inline constexpr index_t block = 64;
inline constexpr std::size_t R = std::size_t(block) / W;  // registers per row of 64 scores
static_assert(std::size_t(block) % W == 0, "a block of positions must be whole registers");
// Query heads per tile: 4 x 4 score registers on AVX-512 (16 of 32).
inline constexpr std::size_t heads_per_tile = std::min<std::size_t>(4, arch::accumulator_registers / R);
// Registers of head_dim per PV pass: heads_per_tile x this accumulators.
inline constexpr std::size_t dim_regs = arch::accumulator_registers >= 16 ? 4 : 2;
inline constexpr std::size_t prefetch_distance = 8192;  // bytes ahead of the stream

inline void prefetch_lines(const void* p, std::size_t bytes) noexcept {
  const char* c = static_cast<const char*>(p) + prefetch_distance;
  for (std::size_t off = 0; off < bytes; off += 64) arch::prefetch_l1(c + off);
}

// s[h][r] = sum_d q[h][d] K^T[d][r-th register of positions], H heads.
template <class S, std::size_t H>
inline void block_scores(const S* kt, index_t dim, const float* q, fbatch (&s)[H][R]) noexcept {
  for (std::size_t h = 0; h < H; ++h)
    for (std::size_t r = 0; r < R; ++r) s[h][r] = fbatch(0.f);
  for (index_t d = 0; d < dim; ++d) {
    const S* row = kt + d * block;
    prefetch_lines(row, std::size_t(block) * sizeof(S));
    fbatch k[R];
    for (std::size_t r = 0; r < R; ++r) {
      k[r] = arch::load_as_float(row + r * W);
      arch::keep_in_register(k[r]);  // loaded once, used by every head
    }
    for (std::size_t h = 0; h < H; ++h) {
      const fbatch qb(q[std::size_t(h) * std::size_t(dim) + std::size_t(d)]);
      for (std::size_t r = 0; r < R; ++r) s[h][r] = arch::fma(k[r], qb, s[h][r]);
    }
  }
}

// acc[h][d0 .. d0 + C*W) = alpha[h] * acc + sum over positions [lo, hi) of p[h][pos] V[pos][...].
template <class S, std::size_t H, std::size_t C>
inline void block_values(const S* v, index_t dim, index_t d0, index_t lo, index_t hi, const float (*p)[block],
                         const float* alpha, float* const* acc, bool prefetch) noexcept {
  fbatch o[H][C];
  for (std::size_t h = 0; h < H; ++h)
    for (std::size_t c = 0; c < C; ++c) o[h][c] = fbatch::load_unaligned(acc[h] + d0 + index_t(c * W)) * fbatch(alpha[h]);
  for (index_t pos = lo; pos < hi; ++pos) {
    const S* row = v + pos * dim + d0;
    if (prefetch) prefetch_lines(v + pos * dim, std::size_t(dim) * sizeof(S));
    fbatch x[C];
    for (std::size_t c = 0; c < C; ++c) {
      x[c] = arch::load_as_float(row + c * W);
      arch::keep_in_register(x[c]);  // loaded once, used by every head
    }
    for (std::size_t h = 0; h < H; ++h) {
      const fbatch pb(p[h][pos]);
      for (std::size_t c = 0; c < C; ++c) o[h][c] = arch::fma(x[c], pb, o[h][c]);
    }
  }
  for (std::size_t h = 0; h < H; ++h)
    for (std::size_t c = 0; c < C; ++c) o[h][c].store_unaligned(acc[h] + d0 + index_t(c * W));
}

template <class S, std::size_t H>
inline void values_all(const S* v, index_t dim, index_t lo, index_t hi, const float (*p)[block], const float* alpha,
                       float* const* acc) noexcept {
  index_t d0 = 0;
  bool first = true;
  constexpr index_t step = index_t(dim_regs * W);
  for (; d0 + step <= dim; d0 += step, first = false) block_values<S, H, dim_regs>(v, dim, d0, lo, hi, p, alpha, acc, first);
  const index_t rest = (dim - d0) / index_t(W);  // head_dim is a multiple of 16, so of W
  if constexpr (dim_regs > 1) {
    if (rest == 1) block_values<S, H, 1>(v, dim, d0, lo, hi, p, alpha, acc, first);
  }
  if constexpr (dim_regs > 2) {
    if (rest == 2) block_values<S, H, 2>(v, dim, d0, lo, hi, p, alpha, acc, first);
  }
  if constexpr (dim_regs > 3) {
    if (rest == 3) block_values<S, H, 3>(v, dim, d0, lo, hi, p, alpha, acc, first);
  }
}

// The running state of one query head over one chunk.
struct head_state {
  float m;    // running max of the base-2 logits
  float l;    // running sum of 2^(logit - m)
  float* acc; // head_dim running sum of 2^(logit - m) v
};

// One block, H query heads (a tile): scores, online softmax, values.
template <kv_type T, std::size_t H>
void block_step(const kv_cache<T>& cache, const std::byte* blk, index_t lo, index_t hi, const float* q, float c,
                head_state* st) noexcept {
  using S = typename kv_cache<T>::storage;
  const index_t dim = cache.head_dim();
  fbatch s[H][R];
  block_scores<S, H>(cache.keys(blk), dim, q, s);

  alignas(64) float p[H][block];
  float alpha[H];
  float* accs[H];
  alignas(64) float lane_pos[W];
  for (std::size_t i = 0; i < W; ++i) lane_pos[i] = float(i);
  const fbatch iota = fbatch::load_aligned(lane_pos);
  const fbatch neg_inf(-std::numeric_limits<float>::infinity());
  for (std::size_t h = 0; h < H; ++h) {
    // Base-2 logits, masked outside [lo, hi).
    fbatch t[R];
    fbatch mx = neg_inf;
    for (std::size_t r = 0; r < R; ++r) {
      fbatch scale(c);
      if constexpr (std::is_same_v<T, std::int8_t>) scale = scale * fbatch::load_unaligned(cache.key_scales(blk) + r * W);
      const fbatch pos = iota + fbatch(float(r * W));
      const auto valid = (pos >= fbatch(float(lo))) && (pos < fbatch(float(hi)));
      t[r] = xsimd::select(valid, s[h][r] * scale, neg_inf);
      mx = xsimd::max(mx, t[r]);
    }
    const float m_blk = arch::reduce_max(mx);
    // Invariant: st.m is the max so far; m_new >= st.m, so alpha <= 1.
    const float m_new = std::max(st[h].m, m_blk);
    alpha[h] = st[h].m == m_new ? 1.f : tstream::exp2(fbatch(st[h].m - m_new)).get(0);
    fbatch sum(0.f);
    for (std::size_t r = 0; r < R; ++r) {
      const fbatch e = tstream::exp2(t[r] - fbatch(m_new));
      sum += e;
      fbatch pv = e;
      if constexpr (std::is_same_v<T, std::int8_t>) pv = pv * fbatch::load_unaligned(cache.value_scales(blk) + r * W);
      pv.store_aligned(&p[h][r * W]);
    }
    st[h].l = st[h].l * alpha[h] + xsimd::hadd(sum);
    st[h].m = m_new;
    accs[h] = st[h].acc;
  }
  values_all<S, H>(cache.values(blk), dim, lo, hi, p, alpha, accs);
}

}  // namespace detail::attn

/// A decode-attention plan for one KV cache and query-head count: the chunk
/// split and the buffers for partial results, made once; run() replays it
/// for every token with no allocation. Bound to `cache` (which must outlive
/// it) and valid for any context length up to its capacity. One run() at a
/// time per plan.
template <kv_type T>
class decode_plan {
 public:
  /// Positions per work item: fixed, so the reduction order never depends
  /// on the thread count.
  static constexpr index_t chunk = 1024;

  decode_plan(const kv_cache<T>& cache, index_t q_heads, decode_options opt = {})
      : cache_(&cache), q_heads_(q_heads), opt_(opt) {
    detail::require(q_heads >= 1 && q_heads % cache.kv_heads() == 0, "decode_plan", "q_heads = ", q_heads,
                    " is not a positive multiple of kv_heads = ", cache.kv_heads());
    detail::require(opt.window >= 0, "decode_plan", "window = ", opt.window, " is negative");
    detail::require(std::isfinite(opt.scale) && opt.scale >= 0.f, "decode_plan", "scale = ", opt.scale,
                    " is not a finite non-negative number");
    chunks_ = (cache.capacity() + chunk - 1) / chunk;
    const std::size_t per = std::size_t(cache.head_dim()) + 2;  // acc, m, l
    partial_ = aligned_buffer<float>(std::size_t(chunks_ * q_heads) * per);
  }

  [[nodiscard]] index_t q_heads() const noexcept { return q_heads_; }
  [[nodiscard]] const kv_cache<T>& cache() const noexcept { return *cache_; }
  /// K and V bytes one run() reads at the cache's current length.
  [[nodiscard]] std::size_t bytes() const noexcept {
    const auto [lo, hi] = range();
    return cache_->bytes_for(hi - lo);
  }
  /// FLOPs of one run(): q.K and p.V, 2 x 2 x head_dim per position per query head.
  [[nodiscard]] double flops() const noexcept {
    const auto [lo, hi] = range();
    return 4.0 * double(q_heads_) * double(cache_->head_dim()) * double(hi - lo);
  }

  /// out = attention(q) over the cache's positions; q and out hold q_heads x
  /// head_dim values. Throws tstream::error, writing nothing, on bad sizes or
  /// an empty cache.
  void run(thread_team& team, std::span<const float> q, std::span<float> out) {
    const index_t dim = cache_->head_dim(), L = cache_->size();
    const std::size_t want = std::size_t(q_heads_ * dim);
    detail::require(q.size() == want, "attention_decode", "q has ", q.size(), " elements, expected q_heads x head_dim = ", want);
    detail::require(out.size() == want, "attention_decode", "out has ", out.size(), " elements, expected q_heads x head_dim = ", want);
    detail::require(q.data() != nullptr && out.data() != nullptr, "attention_decode", "q or out is null");
    detail::require(L >= 1, "attention_decode", "the KV cache is empty (L = 0)");
    const auto qa = reinterpret_cast<std::uintptr_t>(q.data()), oa = reinterpret_cast<std::uintptr_t>(out.data());
    detail::require(qa + q.size_bytes() <= oa || oa + out.size_bytes() <= qa, "attention_decode", "out overlaps q");

    const auto [lo, hi] = range();
    const index_t c0 = lo / chunk, c1 = (hi + chunk - 1) / chunk;  // chunks touching [lo, hi)
    const index_t kvh = cache_->kv_heads(), group = q_heads_ / kvh, items = kvh * (c1 - c0);
    const float scale = (opt_.scale > 0.f ? opt_.scale : 1.f / std::sqrt(float(dim))) * 1.4426950408889634f;
    const std::size_t per = std::size_t(dim) + 2;
    float* partial = partial_.data();
    const int threads = team.size();

    team.run([&](int m) {
      for (index_t it = index_t(m) * items / threads; it < index_t(m + 1) * items / threads; ++it) {
        const index_t h = it / (c1 - c0), c = c0 + it % (c1 - c0);
        const index_t plo = std::max(lo, c * chunk), phi = std::min(hi, (c + 1) * chunk);
        for (index_t g0 = 0; g0 < group; g0 += index_t(detail::attn::heads_per_tile))
          run_item(h, plo, phi, q.data(), h * group + g0, std::min<index_t>(index_t(detail::attn::heads_per_tile), group - g0),
                   scale, partial + std::size_t(c * q_heads_ + h * group + g0) * per);
      }
    });
    // Merge the chunks of each query head in chunk order.
    team.run([&](int m) {
      for (index_t h = index_t(m) * q_heads_ / threads; h < index_t(m + 1) * q_heads_ / threads; ++h) {
        float M = -std::numeric_limits<float>::infinity();
        for (index_t c = c0; c < c1; ++c) M = std::max(M, partial[std::size_t(c * q_heads_ + h) * per + std::size_t(dim)]);
        float Lsum = 0;
        float* o = out.data() + h * dim;
        std::fill(o, o + dim, 0.f);
        for (index_t c = c0; c < c1; ++c) {
          const float* pr = partial + std::size_t(c * q_heads_ + h) * per;
          const float f = pr[dim] == M ? 1.f : std::exp2(pr[dim] - M);
          Lsum = std::fma(pr[dim + 1], f, Lsum);
          for (index_t d = 0; d < dim; ++d) o[d] = std::fma(pr[d], f, o[d]);
        }
        const float inv = 1.f / Lsum;
        for (index_t d = 0; d < dim; ++d) o[d] *= inv;
      }
    });
  }

 private:
  // The positions attended to: [L - window, L) or [0, L).
  [[nodiscard]] std::pair<index_t, index_t> range() const noexcept {
    const index_t L = cache_->size();
    return {opt_.window > 0 ? std::max<index_t>(0, L - opt_.window) : 0, L};
  }

  // Heads [hq0, hq0 + n) of KV head h over positions [plo, phi); writes their
  // partial (acc, m, l) rows at out (consecutive heads).
  void run_item(index_t h, index_t plo, index_t phi, const float* q, index_t hq0, index_t n, float scale,
                float* out) const {
    using namespace detail::attn;
    const index_t dim = cache_->head_dim();
    const std::size_t per = std::size_t(dim) + 2;
    head_state st[heads_per_tile];
    for (index_t i = 0; i < n; ++i) {
      st[i] = {-std::numeric_limits<float>::infinity(), 0.f, out + std::size_t(i) * per};
      std::fill(st[i].acc, st[i].acc + dim, 0.f);
    }
    const float* qh = q + hq0 * dim;
    for (index_t b = plo / block; b * block < phi; ++b) {
      const index_t lo = std::max<index_t>(plo - b * block, 0), hi = std::min<index_t>(phi - b * block, block);
      const std::byte* blk = cache_->block_data(h, b);
      switch (n) {
        case 1: block_step<T, 1>(*cache_, blk, lo, hi, qh, scale, st); break;
        case 2: if constexpr (heads_per_tile >= 2) block_step<T, 2>(*cache_, blk, lo, hi, qh, scale, st); break;
        case 3: if constexpr (heads_per_tile >= 3) block_step<T, 3>(*cache_, blk, lo, hi, qh, scale, st); break;
        default: if constexpr (heads_per_tile >= 4) block_step<T, heads_per_tile>(*cache_, blk, lo, hi, qh, scale, st); break;
      }
    }
    for (index_t i = 0; i < n; ++i) {
      out[std::size_t(i) * per + std::size_t(dim)] = st[i].m;
      out[std::size_t(i) * per + std::size_t(dim) + 1] = st[i].l;
    }
  }

  const kv_cache<T>* cache_;
  index_t q_heads_;
  decode_options opt_;
  index_t chunks_ = 0;
  aligned_buffer<float> partial_;
};

/// One-shot decode attention: q_heads = q.size() / head_dim. Makes a plan
/// (allocating its buffers) on every call; a decode loop should keep a
/// decode_plan and call run().
template <kv_type T>
void attention_decode(thread_team& team, const kv_cache<T>& cache, std::span<const float> q, std::span<float> out,
                      decode_options opt = {}) {
  const index_t dim = cache.head_dim();
  detail::require(q.size() % std::size_t(dim) == 0, "attention_decode", "q has ", q.size(),
                  " elements, not a multiple of head_dim = ", dim);
  decode_plan<T> plan(cache, index_t(q.size()) / dim, opt);
  plan.run(team, q, out);
}

}  // namespace tstream
