// Weight formats in stream order.
//
// A packed matrix is a sequence of panels. A panel holds P output rows
// (P a multiple of 16, zero-padded past N) for all K, k-group by k-group:
//
//   panel = [ group 0: P rows x G weights ][ group 1 ] ... [ group K/G ]
//
// where G (the group) is 1 for fp32, 2 for bf16 (the pair vdpbf16ps
// consumes) and 4 for int8 (the quad vpdpbusd consumes), and each row's G
// weights sit next to each other. The GEMV reads a panel strictly
// sequentially and updates one P-lane accumulator vector per group: the
// TSP's weight-stationary stream, with K padded to a multiple of G by zeros.
#pragma once

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

/// Weight types tstream packs.
template <class W>
concept weight_type = requires { weight_format<W>::group; };

}  // namespace tstream
