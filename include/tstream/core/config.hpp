// Library-wide constants and the index type.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tstream {

/// Sizes and counts. Signed, so that a negative value passed by mistake is
/// caught by the argument checks instead of wrapping to a huge size.
using index_t = std::ptrdiff_t;

/// The TSP's vector length: 20 superlanes x 16 lanes. The unit the library's
/// kernels are written in; vec<T, Lanes> takes any other length.
inline constexpr std::size_t default_lanes = 320;

/// Alignment of every buffer tstream allocates (one cache line, one zmm).
inline constexpr std::size_t buffer_alignment = 64;

/// Which arithmetic a kernel may use.
enum class precision {
  /// The stored values (fp32, bf16 or int8 with its scales) times fp32
  /// activations, accumulated in fp32. bf16 and int8 are widened to fp32 in
  /// registers, exactly.
  exact,
  /// Activations rounded to the stored type so the CPU's dot-product
  /// instructions apply: bf16 x bf16 into fp32 (vdpbf16ps) or u8 x s8 into
  /// int32 (vpdpbusd). Each kernel documents the extra error. Same as exact
  /// for fp32.
  fast,
};

}  // namespace tstream
