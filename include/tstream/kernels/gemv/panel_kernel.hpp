// The GEMV's inner loop: one panel of P = J superlanes of output rows,
// updated group by group along K with J accumulator registers (J = 20 on
// AVX-512: one 320-lane fp32 vector, the TSP's MXM output).
//
// A "policy" says how one group of packed weights meets the activations:
//   f32_exact   fp32 weights x fp32 activations, one FMA per k
//   bf16_exact  bf16 pairs widened to fp32 in registers (exact), two FMAs
//   i8_exact    int8 quads widened to fp32 in registers (exact), four FMAs
//   bf16_dot    vdpbf16ps against activations rounded to bf16 (fast)
//   i8_dot      vpdpbusd against activations quantized to u8 (fast)
// The dot policies fall back to the same arithmetic in portable code where
// the instruction is missing. Each output row accumulates its own products
// in k order, in one lane: the result never depends on how rows are split
// over threads or on how many vectors are in a batch.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "tstream/arch/simd.hpp"
#include "tstream/arch/x86/dot_products.hpp"
#include "tstream/core/config.hpp"
#include "tstream/kernels/gemv/formats.hpp"

namespace tstream::detail::gemv {

using fbatch = arch::batch<float>;
using ibatch = arch::batch<std::int32_t>;
inline constexpr std::size_t W = fbatch::size;
static_assert(ibatch::size == W, "int32 and fp32 registers must hold the same number of lanes");

struct f32_exact {
  using storage = float;
  using acc_type = fbatch;
  using x_type = float;                 // activations as given
  static constexpr int group = 1;
  static constexpr int x_per_group = 1;
  template <std::size_t Off, std::size_t N, std::size_t J>
  static void step(acc_type (&acc)[J], const storage* w, const x_type* x) noexcept {
    const fbatch xb(x[0]);
    [&]<std::size_t... j>(std::index_sequence<j...>) {
      ((acc[Off + j] = arch::fma(fbatch::load_unaligned(w + W * j), xb, acc[Off + j])), ...);
    }(std::make_index_sequence<N>{});
  }
};

struct bf16_exact {
  using storage = std::uint16_t;
  using acc_type = fbatch;
  using x_type = float;
  static constexpr int group = 2;
  static constexpr int x_per_group = 2;
  template <std::size_t Off, std::size_t N, std::size_t J>
  static void step(acc_type (&acc)[J], const storage* w, const x_type* x) noexcept {
    const fbatch x0(x[0]), x1(x[1]);
    [&]<std::size_t... j>(std::index_sequence<j...>) {
      (
          [&] {
            const ibatch v = arch::load_lanes(w, j);  // (row, k even) in the low half, k odd in the high
            acc[Off + j] = arch::fma(arch::low_bf16(v), x0, acc[Off + j]);
            acc[Off + j] = arch::fma(arch::high_bf16(v), x1, acc[Off + j]);
          }(),
          ...);
    }(std::make_index_sequence<N>{});
  }
};

// The accumulators hold 2^24 times the sums: each weight is converted from
// the top byte of its lane (arch::byte_to_top, one shuffle where sign
// extension takes two shifts), so every product is 2^24 w x exactly and
// every sum rounds as the unscaled one would; the dequantization takes the
// 2^24 back out, exactly.
struct i8_exact {
  using storage = std::int8_t;
  using acc_type = fbatch;
  using x_type = float;
  static constexpr int group = 4;
  static constexpr int x_per_group = 4;
  static constexpr float acc_scale = arch::byte_to_top_scale;  // what the accumulators are multiplied by
  template <std::size_t Off, std::size_t N, std::size_t J>
  static void step(acc_type (&acc)[J], const storage* w, const x_type* x) noexcept {
    const fbatch x0(x[0]), x1(x[1]), x2(x[2]), x3(x[3]);
    [&]<std::size_t... j>(std::index_sequence<j...>) {
      (
          [&] {
            const ibatch v = arch::load_lanes(w, j);  // four k of one row per lane
            acc[Off + j] = arch::fma(xsimd::to_float(arch::byte_to_top<0>(v)), x0, acc[Off + j]);
            acc[Off + j] = arch::fma(xsimd::to_float(arch::byte_to_top<1>(v)), x1, acc[Off + j]);
            acc[Off + j] = arch::fma(xsimd::to_float(arch::byte_to_top<2>(v)), x2, acc[Off + j]);
            acc[Off + j] = arch::fma(xsimd::to_float(arch::byte_to_top<3>(v)), x3, acc[Off + j]);
          }(),
          ...);
    }(std::make_index_sequence<N>{});
  }
};

// Activations for the dot policies are prepared per call: one dword per group.
struct bf16_dot {
  using storage = std::uint16_t;
  using acc_type = fbatch;
  using x_type = std::uint32_t;         // two bf16 activations, the even k low
  static constexpr int group = 2;
  static constexpr int x_per_group = 1;
  template <std::size_t Off, std::size_t N, std::size_t J>
  static void step(acc_type (&acc)[J], const storage* w, const x_type* x) noexcept {
    const ibatch xb(static_cast<std::int32_t>(x[0]));
    // The weights go last so their load folds into vdpbf16ps as its memory
    // operand (the products, so the bits, are the same either way). From
    // DRAM a separate load per register streamed at 16-19 GB/s on one Zen 4
    // core where the folded form, like the f32 and int8 policies, gets 20-24
    // (measured; the cause is inside the core, not in the access pattern).
    [&]<std::size_t... j>(std::index_sequence<j...>) {
      ((acc[Off + j] = arch::dot_bf16_pairs(acc[Off + j], xb, arch::load_lanes(w, j))), ...);
    }(std::make_index_sequence<N>{});
  }
};

struct i8_dot {
  using storage = std::int8_t;
  using acc_type = ibatch;
  using x_type = std::uint32_t;         // four u8 activations (code + 128)
  static constexpr int group = 4;
  static constexpr int x_per_group = 1;
  template <std::size_t Off, std::size_t N, std::size_t J>
  static void step(acc_type (&acc)[J], const storage* w, const x_type* x) noexcept {
    const ibatch xb(static_cast<std::int32_t>(x[0]));
    [&]<std::size_t... j>(std::index_sequence<j...>) {
      ((acc[Off + j] = arch::dot_u8s8_quads(acc[Off + j], xb, arch::load_lanes(w, j))), ...);
    }(std::make_index_sequence<N>{});
  }
};

/// Runs groups [g0, g0 + groups) of one panel of J registers of rows whose
/// packed rows hold `row_elems` elements (the padded K): acc_io (J * W
/// values) is loaded when `accumulate`, else starts at zero, and is stored
/// back at the end. The panel's sub-panels (formats.hpp) are read side by
/// side, one pointer each. Storing and reloading fp32/int32 accumulators is
/// exact, so splitting K into chunks (for batches) gives the same bits as
/// one pass.
template <class Policy, std::size_t J>
void panel(const typename Policy::storage* w, index_t row_elems, const typename Policy::x_type* x, index_t g0,
           index_t groups, typename Policy::acc_type::value_type* acc_io, bool accumulate) noexcept {
  using acc_t = typename Policy::acc_type;
  constexpr int P = int(J * W), granules = P / panel_row_granule;
  static_assert(granules * panel_row_granule == P, "a panel is whole 16-row granules");
  constexpr std::size_t S = std::size_t(granules < panel_streams ? granules : panel_streams);
  // Sub-panel s: registers [first(s), first(s) + count(s)), rows count(s) * W.
  constexpr auto first = [](std::size_t st) { return std::size_t(sub_panel(P, int(st)).first) / W; };
  constexpr auto count = [](std::size_t st) { return std::size_t(sub_panel(P, int(st)).count) / W; };
  acc_t acc[J];
  [&]<std::size_t... j>(std::index_sequence<j...>) {
    ((acc[j] = accumulate ? acc_t::load_aligned(acc_io + W * j) : acc_t(0)), ...);
  }(std::make_index_sequence<J>{});
  [&]<std::size_t... st>(std::index_sequence<st...>) {
    const typename Policy::storage* ws[S] = {
        (w + first(st) * W * std::size_t(row_elems) + std::size_t(g0) * count(st) * W * Policy::group)...};
    for (index_t g = 0; g < groups; ++g) {
      (Policy::template step<first(st), count(st)>(acc, ws[st], x), ...);
      ((ws[st] += count(st) * W * Policy::group), ...);
      x += Policy::x_per_group;
    }
  }(std::make_index_sequence<S>{});
  [&]<std::size_t... j>(std::index_sequence<j...>) {
    ((acc[j].store_aligned(acc_io + W * j)), ...);
  }(std::make_index_sequence<J>{});
}

template <class Policy>
using panel_fn = void (*)(const typename Policy::storage*, index_t, const typename Policy::x_type*, index_t, index_t,
                          typename Policy::acc_type::value_type*, bool) noexcept;

template <class Policy, std::size_t J>
constexpr panel_fn<Policy> panel_entry() noexcept {
  if constexpr (J * W % std::size_t(panel_row_granule) == 0) return &panel<Policy, J>;
  else return nullptr;
}

/// panel<Policy, J> for J = 1 .. accumulator_registers, indexed by J - 1
/// (null where J registers are not whole 16-row granules: AVX2's odd J,
/// which no panel has).
template <class Policy>
inline constexpr auto panel_table = []<std::size_t... j>(std::index_sequence<j...>) {
  return std::array<panel_fn<Policy>, sizeof...(j)>{panel_entry<Policy, j + 1>()...};
}(std::make_index_sequence<arch::accumulator_registers>{});

}  // namespace tstream::detail::gemv
