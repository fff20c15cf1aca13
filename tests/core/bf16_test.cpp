#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <vector>

#include "tstream/arch/simd.hpp"
#include "tstream/core/bf16.hpp"

using tstream::bf16;

namespace {
// Reference: round to nearest even by looking at the dropped half explicitly.
std::uint16_t reference_round(float f) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t hi = u >> 16, lo = u & 0xFFFFu;
  if (lo > 0x8000u || (lo == 0x8000u && (hi & 1u))) return std::uint16_t(hi + 1);
  return std::uint16_t(hi);
}
}  // namespace

TEST_CASE("bf16: round to nearest even, exact back-conversion") {
  CHECK(float(bf16(1.0f)) == 1.0f);
  CHECK(float(bf16(-2.5f)) == -2.5f);
  // 1 + 2^-8 is exactly between two bf16 values (1 and 1 + 2^-7): ties to even -> 1.
  CHECK(float(bf16(1.0f + 0x1p-8f)) == 1.0f);
  // 1 + 3 * 2^-8 is between 1 + 2^-7 (odd) and 1 + 2^-6: ties to even -> 1 + 2^-6.
  CHECK(float(bf16(1.0f + 3 * 0x1p-8f)) == 1.0f + 0x1p-6f);
  for (std::uint32_t u = 0; u < 0x7F800000u; u += 0x00012345u) {
    const float f = std::bit_cast<float>(u);
    REQUIRE(bf16::from_float(f) == reference_round(f));
    REQUIRE(bf16::from_float(-f) == std::uint16_t(reference_round(f) | 0x8000u));
  }
}

TEST_CASE("bf16: NaN stays NaN, infinities stay infinite, overflow rounds to inf") {
  CHECK(std::isnan(float(bf16(std::numeric_limits<float>::quiet_NaN()))));
  // A NaN whose payload lives only in the low 16 bits must not become inf.
  CHECK(std::isnan(float(bf16(std::bit_cast<float>(0x7F800001u)))));
  CHECK(float(bf16(std::numeric_limits<float>::infinity())) == std::numeric_limits<float>::infinity());
  CHECK(float(bf16(-std::numeric_limits<float>::infinity())) == -std::numeric_limits<float>::infinity());
  CHECK(std::isinf(float(bf16(std::numeric_limits<float>::max()))));
}

TEST_CASE("bf16: the vector rounding (arch::to_bf16_bits, store_bf16_pair) gives bf16::from_float's bits; store_offset_bytes clamps") {
  using fb = tstream::arch::batch<float>;
  using ib = tstream::arch::batch<std::int32_t>;
  constexpr std::size_t W = fb::size;
  // Ordinary values, ties, denormals, zeros, infinities and NaNs of both signs.
  std::vector<std::uint32_t> bits = {0u, 0x80000000u, 1u, 0x00008000u, 0x00018000u, 0x3F808000u, 0x3F818000u,
                                     0x7F7FFFFFu, 0x7F800000u, 0xFF800000u, 0x7F800001u, 0xFFC00000u, 0x7FFFFFFFu};
  for (std::uint32_t u = 0; u < 0xFFFF0000u; u += 0x0012345Fu) bits.push_back(u);
  while (bits.size() % W) bits.push_back(0x3F800000u);
  for (std::size_t i = 0; i < bits.size(); i += W) {
    alignas(64) float in[W];
    alignas(64) std::uint16_t out[W];
    for (std::size_t j = 0; j < W; ++j) in[j] = std::bit_cast<float>(bits[i + j]);
    tstream::arch::store_low_halves(out, tstream::arch::to_bf16_bits(fb::load_aligned(in)));
    for (std::size_t j = 0; j < W; ++j) REQUIRE(out[j] == bf16::from_float(in[j]));
  }
  // store_bf16_pair gives the same bits two registers at a time: on pairs
  // holding a subnormal (its slow route) and, with the subnormals replaced,
  // on pairs of ties, infinities and NaNs (vcvtne2ps2bf16 where built for).
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<std::uint32_t> pb = bits;
    if (pass == 1)
      for (auto& u : pb)
        if ((u & 0x7F800000u) == 0 && (u & 0x007FFFFFu) != 0) u = 0x3F800000u;
    while (pb.size() % (2 * W)) pb.push_back(0xBF800000u);
    for (std::size_t i = 0; i < pb.size(); i += 2 * W) {
      alignas(64) float in[2 * W];
      alignas(64) std::uint16_t out[2 * W + 1];
      out[2 * W] = 0xBEEF;  // a guard: nothing past 2W is written
      for (std::size_t j = 0; j < 2 * W; ++j) in[j] = std::bit_cast<float>(pb[i + j]);
      tstream::arch::store_bf16_pair(out, fb::load_aligned(in), fb::load_aligned(in + W));
      for (std::size_t j = 0; j < 2 * W; ++j) {
        CAPTURE(pb[i + j]);
        REQUIRE(out[j] == bf16::from_float(in[j]));
      }
      CHECK(out[2 * W] == 0xBEEF);
    }
  }
  // store_offset_bytes: four registers, each lane clamped to [-127, 127],
  // plus 128, in order (the int8 codes as u8).
  {
    const std::int32_t edge[] = {INT32_MIN, -1000000, -129, -128, -127, -126, -1, 0, 1, 126, 127, 128, 129, 300, INT32_MAX};
    alignas(64) std::int32_t in[4 * W];
    alignas(64) std::uint8_t out[4 * W + 1];
    for (std::size_t j = 0; j < 4 * W; ++j) in[j] = j < std::size(edge) ? edge[j] : std::int32_t(j * 13 % 255) - 127;
    out[4 * W] = 0x5A;
    tstream::arch::store_offset_bytes(out, ib::load_aligned(in), ib::load_aligned(in + W), ib::load_aligned(in + 2 * W),
                                      ib::load_aligned(in + 3 * W));
    for (std::size_t j = 0; j < 4 * W; ++j) {
      CAPTURE(in[j]);
      REQUIRE(out[j] == std::uint8_t(std::clamp(in[j], -127, 127) + 128));
    }
    CHECK(out[4 * W] == 0x5A);
  }
  // store_low_bytes keeps the low byte of every lane.
  alignas(64) std::int32_t lanes[W];
  alignas(64) std::uint8_t bytes[W + 1];
  bytes[W] = 0xA5;  // a guard: nothing past W is written
  for (std::size_t j = 0; j < W; ++j) lanes[j] = std::int32_t(j * 37 + 0x1200);
  tstream::arch::store_low_bytes(bytes, ib::load_aligned(lanes));
  for (std::size_t j = 0; j < W; ++j) CHECK(bytes[j] == std::uint8_t(j * 37 + 0x1200));
  CHECK(bytes[W] == 0xA5);
}
