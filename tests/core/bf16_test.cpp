#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

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
