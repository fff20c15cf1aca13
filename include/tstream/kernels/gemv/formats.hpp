// Weight formats in stream order.
//
// A packed matrix is a sequence of panels. A panel holds P output rows
// (P a multiple of 16, zero-padded past N) for all K, k-group by k-group:
//
//   panel = [ group 0: P rows x G weights ][ group 1 ] ... [ group K/G ]
//
// where G (the group) is 1 for fp32, 2 for bf16 (the pair vdpbf16ps
// consumes) and 4 for int8 (the quad vpdpbusd consumes), and each row's G
// weights sit next to each other. The GEMV updates one P-lane accumulator
// vector per group: the TSP's weight-stationary stream, with K padded to a
// multiple of G by zeros.
//
// A panel is cut into up to panel_streams sub-panels of whole 16-row
// granules, stored one after another, each in the layout above for its own
// rows. The GEMV reads the sub-panels side by side, each strictly
// sequentially: several streams per core keep more cache lines in flight
// than one. On an Intel Xeon (GEMV 11008 x 4096, beyond its caches, one
// thread) fp32 went from 16.2-16.8 to 17.5-18.2 GB/s and exact bf16 from
// 16.8 to 21.1; shares in L2 or L3 read as before; 2 and 4 streams measured
// alike (4 kept: a stand-alone probe of the same loop read DRAM 3-5% faster
// with 4 than 2). On Zen 4 one and four streams measured alike within the
// DRAM noise (4096 x 4096 and 11008 x 4096, 1 and 2 threads, 5 rounds of
// processes alternated). Every row still accumulates its own products in k order,
// so the results keep their bits.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tstream/core/bf16.hpp"

namespace tstream {

/// How a weight type is stored and grouped along K.
template <class W>
struct weight_format;

template <>
struct weight_format<float> {
  using storage = float;
  static constexpr int group = 1;
  static constexpr const char* name = "f32";
  static storage encode(float v) noexcept { return v; }
};

template <>
struct weight_format<bf16> {
  using storage = std::uint16_t;
  static constexpr int group = 2;
  static constexpr const char* name = "bf16";
  static storage encode(float v) noexcept { return bf16::from_float(v); }
};

template <>
struct weight_format<std::int8_t> {
  using storage = std::int8_t;
  static constexpr int group = 4;
  static constexpr const char* name = "i8";
};

/// Rows per panel are padded to a multiple of this (the widest fp32 register).
inline constexpr int panel_row_granule = 16;

/// Sub-panels (side-by-side read streams) per panel, at most.
inline constexpr int panel_streams = 4;

/// Granules in sub-panel s of a panel of `granules` granules (0 past the
/// last): as even as whole granules allow, the larger ones first.
[[nodiscard]] constexpr int stream_granules(int granules, int s) noexcept {
  const int n = granules < panel_streams ? granules : panel_streams;
  return s < n ? granules / n + (s < granules % n ? 1 : 0) : 0;
}

/// Granules of a panel before its sub-panel s.
[[nodiscard]] constexpr int stream_first_granule(int granules, int s) noexcept {
  int first = 0;
  for (int t = 0; t < s; ++t) first += stream_granules(granules, t);
  return first;
}

/// The rows of one sub-panel: [first, first + count) of its panel.
struct stream_rows {
  int first = 0, count = 0;
};

/// Rows of sub-panel s of a panel of P rows (a multiple of 16); count 0
/// past the last. The packing, the panel kernel and panel_index all place
/// sub-panels through this.
[[nodiscard]] constexpr stream_rows sub_panel(int P, int s) noexcept {
  const int granules = P / panel_row_granule;
  return {panel_row_granule * stream_first_granule(granules, s), panel_row_granule * stream_granules(granules, s)};
}

/// Where element (r, k) of a panel with P rows (a multiple of 16) and Kp
/// padded columns sits, in elements from the panel's start (0 <= r < P,
/// k < Kp): sub-panel s starts at its first row x Kp and holds its rows
/// group by group. resident_weights' pack writes this layout sub-panel by
/// sub-panel; the panel kernel reads it with one pointer per sub-panel.
[[nodiscard]] constexpr std::size_t panel_index(int P, std::size_t Kp, int group, int r, std::size_t k) noexcept {
  int s = 0;
  while (s + 1 < panel_streams && r >= sub_panel(P, s + 1).first) ++s;
  const stream_rows sp = sub_panel(P, s);
  return std::size_t(sp.first) * Kp + (k / std::size_t(group)) * std::size_t(sp.count * group) +
         std::size_t((r - sp.first) * group) + k % std::size_t(group);
}

/// Weight types tstream packs.
template <class W>
concept weight_type = requires { weight_format<W>::group; };

}  // namespace tstream
