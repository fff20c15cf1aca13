// bfloat16: the upper half of an IEEE fp32, stored as 16 bits.
#pragma once

#include <bit>
#include <cstdint>

namespace tstream {

/// A bfloat16 value. Conversion from float rounds to nearest, ties to even;
/// NaN stays NaN (quiet), +-inf stay infinite, and finite values that round
/// past the largest bf16 become +-inf as in IEEE arithmetic. Conversion to
/// float is exact.
struct bf16 {
  /// The 16 stored bits: sign, 8 exponent bits, 7 mantissa bits.
  std::uint16_t bits = 0;

  bf16() = default;
  explicit bf16(float f) noexcept : bits(from_float(f)) {}
  [[nodiscard]] explicit operator float() const noexcept { return to_float(bits); }

  /// float -> bf16 bits, round to nearest even, NaN preserved as quiet NaN.
  [[nodiscard]] static constexpr std::uint16_t from_float(float f) noexcept {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
    const std::uint32_t lsb = (u >> 16) & 1u;
    return static_cast<std::uint16_t>((u + 0x7FFFu + lsb) >> 16);
  }
  /// bf16 bits -> float, exact.
  [[nodiscard]] static constexpr float to_float(std::uint16_t b) noexcept {
    return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
  }
  friend constexpr bool operator==(bf16 a, bf16 b) noexcept { return a.bits == b.bits; }
};

static_assert(sizeof(bf16) == 2, "bf16 must be 16 bits so arrays of it are bf16 tensors");

}  // namespace tstream
