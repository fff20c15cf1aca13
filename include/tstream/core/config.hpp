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

}  // namespace tstream
