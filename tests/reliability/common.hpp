// Helpers shared by the reliability suites.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "tstream/arch/cpu.hpp"
#include "tstream/core/error.hpp"
#include "tstream/core/stream.hpp"

namespace rel {

inline constexpr float inf = std::numeric_limits<float>::infinity();
inline constexpr float qnan = std::numeric_limits<float>::quiet_NaN();

/// The message of the tstream::error f throws, "no error" if it returns, or
/// "other exception: ..." for any other exception.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const tstream::error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("other exception: ") + e.what();
  }
  return "no error";
}

/// What the kernels' fused multiply-add is: one rounding where the build has
/// FMA instructions, a multiply and an add (two roundings) where it has not.
inline float ref_fma(float a, float b, float c) {
  return tstream::arch::compiled_isa().fma ? std::fma(a, b, c) : a * b + c;
}

inline std::vector<float> random_vector(std::size_t n, unsigned seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

/// Bitwise equality of two float arrays.
inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// A VXM stage with only the vec form (no superlane form): a chain or an
/// epilogue holding one takes the whole-vec path (core/stream.hpp).
template <class St>
struct vec_only {
  St st;
  template <class V>
  V operator()(const V& v, std::size_t first) const noexcept { return st(v, first); }
  template <class F>
  void for_each_read(F& f) const {
    tstream::for_each_read(st, f);
  }
};
template <class St>
vec_only(St) -> vec_only<St>;

/// True when every element still holds `sentinel` (an output left untouched).
inline bool untouched(const std::vector<float>& v, float sentinel) {
  for (float x : v)
    if (std::memcmp(&x, &sentinel, sizeof(float)) != 0) return false;
  return true;
}

inline std::uint32_t bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace rel
