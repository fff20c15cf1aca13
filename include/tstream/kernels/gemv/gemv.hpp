// GEMV, the batch-1 decode pipeline: MEM (resident weights) -> MXM (panel
// kernel) -> VXM (dequantize, epilogue stage) -> MEM (y).
//
//   y = epilogue(W x)            one vector
//   Y(m, :) = epilogue(W X(m, :)) a small batch, reading the weights once
//
// Determinism: every output y[i] is accumulated in one register lane in k
// order, and the epilogue is lane-wise, so y is bitwise identical for any
// team size, any share split and any batch size (row m of a batch equals the
// single-vector result for X(m, :)).
//
// NaN and infinity: in exact mode they propagate as in IEEE arithmetic (a
// NaN in x or in row i of W makes y[i], or every y, NaN; inf x 0 is NaN).
// In fast int8 mode x is quantized, so any non-finite x makes every output
// NaN. Padding never meets a non-finite value.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>

#include "tstream/core/buffer.hpp"
#include "tstream/core/error.hpp"
#include "tstream/core/stream.hpp"
#include "tstream/core/view.hpp"
#include "tstream/kernels/gemv/panel_kernel.hpp"
#include "tstream/kernels/gemv/resident_weights.hpp"
#include "tstream/runtime/thread_team.hpp"
#include "tstream/units/mem.hpp"
#include "tstream/units/vxm.hpp"

namespace tstream {

// precision (core/config.hpp) for GEMV:
//   bf16 fast: x rounded to bf16, vdpbf16ps (about 2^-9 relative error per
//              activation);
//   int8 fast: x quantized per call to 8 bits (scale max|x| / 127),
//              vpdpbusd u8 x s8 with exact int32 sums (about 1/254 of max|x|
//              absolute error per activation).

/// Options of a GEMV call.
struct gemv_options {
  /// exact (default) or fast (tstream::precision; the same for fp32).
  precision mode = precision::exact;
};

namespace detail::gemv {

// Activations ready for a policy: groups of the padded K, and the tail.
// No member initializers: a call's array of them is left uninitialized and
// prepare() writes every field of the ones it uses (zeroing all 16 and
// copying each one in cost a memset and a store-forwarding stall per call).
template <class X>
struct prepared {
  const X* main;     // full groups
  index_t main_groups;
  X tail[4];         // one zero-padded group (exact policies), if any
  bool has_tail;
  float x_scale;     // int8 fast mode: x ~= x_scale * (code)
};

// Per-thread scratch reused across calls (no allocation in steady state).
inline std::uint32_t* scratch(std::size_t words) {
  thread_local aligned_buffer<std::uint32_t> buf;
  if (buf.size() < words) buf = aligned_buffer<std::uint32_t>(words);
  return buf.data();
}

template <class Policy>
void prepare(prepared<typename Policy::x_type>& p, const float* x, index_t k, index_t kp, std::uint32_t* work) {
  p.has_tail = false;
  p.x_scale = 1.f;
  for (auto& t : p.tail) t = typename Policy::x_type(0);
  if constexpr (std::is_same_v<typename Policy::x_type, float>) {
    p.main = x;
    p.main_groups = k / Policy::group;
    const index_t rem = k % Policy::group;
    p.has_tail = rem != 0;
    for (index_t i = 0; i < rem; ++i) p.tail[i] = x[k - rem + i];
  } else if constexpr (Policy::group == 2) {  // bf16 pairs, little-endian: k = 2g in the low half
    auto* half = reinterpret_cast<std::uint16_t*>(work);
    round_bf16(x, k, half);
    std::fill(half + k, half + kp, std::uint16_t(0));
    p.main = work;
    p.main_groups = kp / 2;
  } else {  // int8 quads, u8 code = round(x / x_scale) + 128, little-endian: byte b of a dword is k = 4g + b
    auto* codes = reinterpret_cast<std::uint8_t*>(work);
    p.x_scale = quantize_activations(x, k, codes);
    std::fill(codes + k, codes + kp, std::uint8_t(128));
    p.main = work;
    p.main_groups = kp / 4;
  }
}

// Rows of a batch handled together per panel (their accumulators live in L1).
inline constexpr index_t batch_block = 16;

template <class Policy, weight_type Wt, class Epilogue>
void run_share(const resident_weights<Wt>& w, const share_info& s, const prepared<typename Policy::x_type>* xs,
               index_t m_count, float* y, index_t ldy, const Epilogue& epilogue) {
  using acc_value = typename Policy::acc_type::value_type;
  constexpr index_t max_rows = index_t(arch::accumulator_registers * W);
  alignas(64) acc_value acc[batch_block][max_rows];
  const auto& table = panel_table<Policy>;
  // K chunk for batches: a chunk of a 320-row panel stays in L1/L2 while every
  // vector of the block passes over it; a single vector streams all of K.
  const index_t groups_total = xs[0].main_groups;
  const index_t row_elems = w.padded_cols();

  for (std::size_t pi = s.first_panel; pi < s.end_panel; ++pi) {
    const panel_info& p = w.panels()[pi];
    const auto fn = table[std::size_t(p.padded_rows) / W - 1];  // never null: panels are whole 16-row granules
    const typename Policy::storage* base = w.data() + p.offset;
    const std::size_t group_elems = std::size_t(p.padded_rows) * Policy::group;
    const index_t chunk = m_count == 1 ? groups_total
                                       : std::max<index_t>(1, index_t(16384 / (group_elems * sizeof(typename Policy::storage))));
    for (index_t m0 = 0; m0 < m_count; m0 += batch_block) {
      const index_t mb = std::min(batch_block, m_count - m0);
      for (index_t g0 = 0; g0 < groups_total; g0 += chunk) {
        const index_t gn = std::min(chunk, groups_total - g0);
        for (index_t m = 0; m < mb; ++m)
          fn(base, row_elems, xs[m0 + m].main + g0 * Policy::x_per_group, g0, gn, acc[m], g0 > 0);
      }
      for (index_t m = 0; m < mb; ++m) {
        const auto& xm = xs[m0 + m];
        if (xm.has_tail)
          fn(base, row_elems, xm.tail, groups_total, 1, acc[m], groups_total > 0);
        // VXM: dequantize, then the user's epilogue, on the panel in registers.
        using V = vec<float>;
        const std::size_t row0 = std::size_t(p.row_begin), rows = std::size_t(p.rows);
        const std::size_t packed_row0 = (p.offset / std::size_t(w.padded_cols()));  // rows before this panel
        const V v = [&] {
          if constexpr (std::is_same_v<Policy, i8_exact>) {
            return V::load(acc[m], rows) * i8_exact::acc_scale * V::load(w.scales() + packed_row0, rows);
          } else if constexpr (std::is_same_v<Policy, i8_dot>) {
            // sum((code + 128) w) - 128 sum(w) = sum(code w), exactly in int32.
            alignas(64) float tmp[max_rows];
            for (index_t r = 0; r < p.rows; ++r)
              tmp[r] = dequantize(float(acc[m][r] - 128 * w.row_sums()[packed_row0 + std::size_t(r)]),
                                  w.scales()[packed_row0 + std::size_t(r)], xm.x_scale);
            return V::load(tmp, rows);
          } else {
            return V::load(acc[m], rows);
          }
        }();
        float* const out = y + std::size_t(m0 + m) * std::size_t(ldy) + row0;
        if constexpr (std::is_same_v<Epilogue, vxm::identity>) {
          v.store(out, rows);  // no copy through the stage
        } else if constexpr (superlane_stage<Epilogue, V>) {  // one register at a time through the stage (stream.hpp)
          for (std::size_t j = 0; j < V::superlanes && j * W < rows; ++j)
            arch::store_partial(out + j * W, epilogue.superlane(v[j], row0, j), std::min(W, rows - j * W));
        } else {
          epilogue(v, row0).store(out, rows);
        }
      }
    }
  }
}

template <class Policy, weight_type Wt, class Epilogue>
void run(thread_team& team, const resident_weights<Wt>& w, const float* x, index_t ldx, index_t m_count, float* y,
         index_t ldy, const Epilogue& epilogue) {
  using X = typename Policy::x_type;
  const index_t k = w.cols(), kp = w.padded_cols();
  const std::size_t words = std::is_same_v<X, float> ? 0 : std::size_t(kp / Policy::group);
  std::uint32_t* work = words ? scratch(words * std::size_t(std::min(m_count, batch_block))) : nullptr;  // one block's
  // Prepared activations for every vector, on the caller's stack in blocks.
  for (index_t m0 = 0; m0 < m_count; m0 += batch_block) {
    const index_t mb = std::min(batch_block, m_count - m0);
    prepared<X> xs[batch_block];
    for (index_t m = 0; m < mb; ++m)
      prepare<Policy>(xs[m], x + (m0 + m) * ldx, k, kp, work ? work + std::size_t(m) * words : nullptr);
    // Captured by value, so a worker finds the whole job in the team's slot
    // (thread_team::run_copy) instead of fetching each capture from this
    // stack frame after it: one dependent cache-line transfer less per call.
    team.run_copy([w = &w, xs = &xs[0], mb, y = y + m0 * ldy, ldy, epilogue = &epilogue, T = team.size()](int member) {
      const int S = w->shares();
      for (int s = member * S / T; s < (member + 1) * S / T; ++s)
        run_share<Policy>(*w, w->share(s), xs, mb, y, ldy, *epilogue);
    });
  }
}

// Checks, then picks the policy for (W, mode).
template <weight_type Wt, class Epilogue>
void dispatch(thread_team& team, const resident_weights<Wt>& w, const float* x, index_t ldx, index_t m_count, float* y,
              index_t ldy, const Epilogue& epilogue, gemv_options opt) {
  if (w.rows() == 0 || m_count == 0) return;
  if constexpr (std::is_same_v<Wt, float>) {
    run<f32_exact>(team, w, x, ldx, m_count, y, ldy, epilogue);
  } else if constexpr (std::is_same_v<Wt, bf16>) {
    if (opt.mode == precision::fast) run<bf16_dot>(team, w, x, ldx, m_count, y, ldy, epilogue);
    else run<bf16_exact>(team, w, x, ldx, m_count, y, ldy, epilogue);
  } else {
    if (opt.mode == precision::fast) {
      // int32 sums of (u8 x s8) quads: 4 * 255 * 128 per group must not
      // overflow over K / 4 groups.
      detail::require(w.padded_cols() / 4 <= std::int64_t(INT32_MAX) / (4 * 255 * 128), "gemv",
                      "K = ", w.cols(), " is too long for fast int8 mode (at most 65792); use precision::exact");
      run<i8_dot>(team, w, x, ldx, m_count, y, ldy, epilogue);
    } else {
      run<i8_exact>(team, w, x, ldx, m_count, y, ldy, epilogue);
    }
  }
}

}  // namespace detail::gemv

/// y = epilogue(W x). x has K elements, y has N. The epilogue is a VXM stage
/// (tstream/units/vxm.hpp) applied to each panel of y in registers, e.g.
/// vxm::then(vxm::add(mem::read(bias)), vxm::silu{}). Throws tstream::error,
/// writing nothing, on mismatched sizes, null data, x overlapping y, or an
/// array the epilogue streams (mem::read) that does not hold N elements or
/// overlaps y.
template <weight_type Wt, class Epilogue = vxm::identity>
  requires stage_for<Epilogue, vec<float>>
void gemv(thread_team& team, const resident_weights<Wt>& w, std::span<const float> x, std::span<float> y,
          Epilogue epilogue = {}, gemv_options opt = {}) {
  detail::require(index_t(x.size()) == w.cols(), "gemv", "x has ", x.size(), " elements, W has K = ", w.cols());
  detail::require(index_t(y.size()) == w.rows(), "gemv", "y has ", y.size(), " elements, W has N = ", w.rows());
  detail::require(x.data() != nullptr, "gemv", "x is null");
  detail::require(y.data() != nullptr || y.empty(), "gemv", "y is null");
  detail::require(!detail::overlaps(x.data(), x.size_bytes(), y.data(), y.size_bytes()), "gemv",
                  "y overlaps x (the output must not alias the input)");
  detail::check_epilogue_reads(epilogue, y.size(), y.data(), y.size_bytes(), "gemv", "y");
  detail::gemv::dispatch(team, w, x.data(), w.cols(), 1, y.data(), w.rows(), epilogue, opt);
}

/// y = W x + bias. bias has N elements.
template <weight_type Wt>
void gemv(thread_team& team, const resident_weights<Wt>& w, std::span<const float> x, std::span<float> y,
          std::span<const float> bias, gemv_options opt = {}) {
  detail::require(index_t(bias.size()) == w.rows(), "gemv", "bias has ", bias.size(), " elements, W has N = ", w.rows());
  detail::require(bias.data() != nullptr || bias.empty(), "gemv", "bias is null");
  detail::require(!detail::overlaps(bias.data(), bias.size_bytes(), y.data(), y.size_bytes()), "gemv",
                  "bias overlaps y (for y = W x + y, copy y first)");
  gemv(team, w, x, y, vxm::add(mem::read(bias)), opt);
}

/// A batch: Y(m, :) = epilogue(W X(m, :)) for each of the M rows of X (M x K)
/// and Y (M x N). The weights are read from memory once per call for the
/// whole batch; row m of Y is bitwise identical to gemv on X(m, :) alone.
/// Throws as above (an epilogue's arrays hold N elements, one per column of
/// Y, and must not overlap Y).
template <weight_type Wt, class Epilogue = vxm::identity>
  requires stage_for<Epilogue, vec<float>>
void gemv(thread_team& team, const resident_weights<Wt>& w, matrix_view<const float> x, matrix_view<float> y,
          Epilogue epilogue = {}, gemv_options opt = {}) {
  detail::require(x.cols() == w.cols(), "gemv", "X has ", x.cols(), " columns, W has K = ", w.cols());
  detail::require(y.cols() == w.rows(), "gemv", "Y has ", y.cols(), " columns, W has N = ", w.rows());
  detail::require(x.rows() == y.rows(), "gemv", "X has ", x.rows(), " rows (vectors), Y has ", y.rows());
  const std::size_t xb = std::size_t(x.rows() > 0 ? (x.rows() - 1) * x.ld() + x.cols() : 0) * sizeof(float);
  const std::size_t yb = std::size_t(y.rows() > 0 ? (y.rows() - 1) * y.ld() + y.cols() : 0) * sizeof(float);
  detail::require(!detail::overlaps(x.data(), xb, y.data(), yb), "gemv",
                  "Y overlaps X (the output must not alias the input)");
  detail::check_epilogue_reads(epilogue, std::size_t(y.cols()), y.data(), yb, "gemv", "Y");
  detail::gemv::dispatch(team, w, x.data(), x.ld(), x.rows(), y.data(), y.ld(), epilogue, opt);
}

}  // namespace tstream
