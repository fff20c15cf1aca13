// The CPU's "SRAM": which cache level a core's share of resident data lives
// in, and the static split of rows into per-core shares.
#pragma once

#include <cstddef>
#include <vector>

#include "tstream/arch/cache.hpp"
#include "tstream/core/config.hpp"
#include "tstream/core/error.hpp"

namespace tstream {

/// Where a buffer that one core reads over and over settles.
enum class memory_level { l1, l2, l3, dram };

/// "L1", "L2", "L3" or "DRAM".
[[nodiscard]] constexpr const char* to_string(memory_level l) noexcept {
  switch (l) {
    case memory_level::l1: return "L1";
    case memory_level::l2: return "L2";
    case memory_level::l3: return "L3";
    default: return "DRAM";
  }
}

/// The fastest level that holds `bytes` read repeatedly by one core, when
/// `cores` cores each hold a share of that size. A level counts as holding
/// the data when it fills at most 3/4 of it: the rest goes to activations,
/// outputs and set-associativity conflicts.
[[nodiscard]] inline memory_level residency(std::size_t bytes, int cores = 1,
                                            const arch::cache_info& c = arch::caches()) noexcept {
  const auto fits = [&](std::size_t capacity) { return bytes <= capacity / 4 * 3; };
  if (fits(c.l1d)) return memory_level::l1;
  if (fits(c.l2 / (c.l2_shared_by ? c.l2_shared_by : 1))) return memory_level::l2;
  const std::size_t sharers = std::size_t(cores < 1 ? 1 : cores);
  // With fewer active cores than share the L3, each gets a larger slice.
  const std::size_t l3_slice = c.l3 / std::min<std::size_t>(sharers, c.l3_shared_by ? c.l3_shared_by : 1);
  if (fits(c.l2 + l3_slice)) return memory_level::l3;
  return memory_level::dram;
}

/// A contiguous half-open range of rows.
struct row_range {
  index_t begin = 0, end = 0;
  [[nodiscard]] index_t size() const noexcept { return end - begin; }
};

/// Splits n rows into `parts` contiguous ranges whose boundaries are
/// multiples of `granule` and whose sizes differ by at most one granule.
/// Empty ranges appear only when there are fewer granules than parts.
/// parts = 0 gives no ranges. Throws tstream::error unless n >= 0,
/// parts >= 0 and granule >= 1.
[[nodiscard]] inline std::vector<row_range> split_rows(index_t n, index_t parts, index_t granule) {
  detail::require(n >= 0, "split_rows", "n = ", n, " is negative");
  detail::require(parts >= 0, "split_rows", "parts = ", parts, " is negative");
  detail::require(granule >= 1, "split_rows", "granule = ", granule, " is not positive");
  std::vector<row_range> out(static_cast<std::size_t>(parts));
  const index_t units = (n + granule - 1) / granule;
  for (index_t p = 0; p < parts; ++p) {
    const index_t b = std::min(n, units * p / parts * granule), e = std::min(n, units * (p + 1) / parts * granule);
    out[std::size_t(p)] = {b, e};
  }
  return out;
}

}  // namespace tstream
