// Per-core L1d/L2 and shared L3 sizes: the CPU's "SRAM".
//
// Read from Linux sysfs (what the kernel was told by the firmware), else from
// cpuid's deterministic cache leaves, else a conservative default. The SRAM
// planner sizes each core's budget from this.
#pragma once

#include <cstddef>
#include <fstream>
#include <string>
#include <thread>

#include "tstream/arch/cpu.hpp"

namespace tstream::arch {

/// Cache sizes in bytes, and how the numbers were found.
struct cache_info {
  std::size_t l1d = 0;            ///< per core
  std::size_t l2 = 0;             ///< per core (or per the cores in l2_shared_by)
  std::size_t l3 = 0;             ///< one instance (shared by l3_shared_by cores)
  unsigned l2_shared_by = 1;      ///< logical CPUs sharing one L2
  unsigned l3_shared_by = 1;      ///< logical CPUs sharing one L3
  const char* source = "default"; ///< "sysfs", "cpuid" or "default"

  /// One core's share of the last-level cache.
  [[nodiscard]] std::size_t l3_per_core() const noexcept { return l3 / (l3_shared_by ? l3_shared_by : 1); }
  /// One core's "SRAM": its private L2 plus its share of L3 — what weights
  /// partitioned to that core can occupy and still be read at cache speed.
  [[nodiscard]] std::size_t sram_per_core() const noexcept {
    return l2 / (l2_shared_by ? l2_shared_by : 1) + l3_per_core();
  }
};

namespace detail {

// "48K", "1024K", "32M" -> bytes; 0 when unreadable.
inline std::size_t parse_size(const std::string& s) {
  std::size_t v = 0, i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') v = v * 10 + std::size_t(s[i++] - '0');
  if (i < s.size() && (s[i] == 'K' || s[i] == 'k')) v <<= 10;
  else if (i < s.size() && (s[i] == 'M' || s[i] == 'm')) v <<= 20;
  else if (i < s.size() && (s[i] == 'G' || s[i] == 'g')) v <<= 30;
  return v;
}

// "0-1", "0,2", "3" -> number of CPUs in the list.
inline unsigned count_cpu_list(const std::string& s) {
  unsigned n = 0;
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    const std::string part = s.substr(i, j - i);
    const auto dash = part.find('-');
    if (dash == std::string::npos) { if (!part.empty() && part[0] >= '0' && part[0] <= '9') ++n; }
    else n += unsigned(std::stoul(part.substr(dash + 1)) - std::stoul(part.substr(0, dash)) + 1);
    i = j + 1;
  }
  return n ? n : 1;
}

inline std::string read_line(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  if (f) std::getline(f, s);
  return s;
}

inline bool from_sysfs(cache_info& c) {
  bool any = false;
  for (int idx = 0; idx < 16; ++idx) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(idx) + "/";
    const std::string level = read_line(dir + "level");
    if (level.empty()) break;
    const std::string type = read_line(dir + "type");
    const std::size_t size = parse_size(read_line(dir + "size"));
    const std::string shared = read_line(dir + "shared_cpu_list");
    if (size == 0 || type == "Instruction") continue;
    const unsigned sharing = shared.empty() ? 1u : count_cpu_list(shared);
    if (level == "1") c.l1d = size;
    else if (level == "2") { c.l2 = size; c.l2_shared_by = sharing; }
    else if (level == "3") { c.l3 = size; c.l3_shared_by = sharing; }
    any = true;
  }
  return any && c.l1d && c.l2;
}

inline bool from_cpuid(cache_info& c) {
#if TSTREAM_ARCH_X86
  // Leaf 4 (Intel) and 0x8000001D (AMD) share one layout.
  const bool amd = cpuid(0).b == 0x68747541u;  // "Auth"
  const unsigned leaf = amd ? 0x8000001Du : 4u;
  if (amd && cpuid(0x80000000u).a < leaf) return false;
  if (!amd && cpuid(0).a < 4) return false;
  bool any = false;
  for (unsigned sub = 0; sub < 16; ++sub) {
    const auto r = cpuid(leaf, sub);
    const unsigned type = r.a & 0x1F;
    if (type == 0) break;
    if (type == 2) continue;  // instruction cache
    const unsigned level = (r.a >> 5) & 0x7;
    const unsigned sharing = ((r.a >> 14) & 0xFFF) + 1;
    const std::size_t ways = ((r.b >> 22) & 0x3FF) + 1, parts = ((r.b >> 12) & 0x3FF) + 1;
    const std::size_t line = (r.b & 0xFFF) + 1, sets = std::size_t(r.c) + 1;
    const std::size_t size = ways * parts * line * sets;
    if (level == 1) c.l1d = size;
    else if (level == 2) { c.l2 = size; c.l2_shared_by = sharing; }
    else if (level == 3) { c.l3 = size; c.l3_shared_by = sharing; }
    any = true;
  }
  // cpuid's sharing count is the maximum the package allows, not what this
  // (possibly virtual) machine has: clamp to the CPUs we can see.
  const unsigned hw = std::thread::hardware_concurrency();
  if (hw) {
    if (c.l3_shared_by > hw) c.l3_shared_by = hw;
    if (c.l2_shared_by > hw) c.l2_shared_by = hw;
  }
  return any && c.l1d && c.l2;
#else
  (void)c;
  return false;
#endif
}

}  // namespace detail

/// Detects the cache sizes once per process (sysfs, then cpuid, then defaults
/// of 32 KiB L1d, 1 MiB L2 and 8 MiB L3 shared by all CPUs).
[[nodiscard]] inline const cache_info& caches() {
  static const cache_info info = [] {
    cache_info c;
    if (detail::from_sysfs(c)) c.source = "sysfs";
    else if (c = cache_info{}; detail::from_cpuid(c)) c.source = "cpuid";
    else {
      c = cache_info{};
      c.l1d = 32u << 10; c.l2 = 1u << 20; c.l3 = 8u << 20;
      const unsigned hw = std::thread::hardware_concurrency();
      c.l3_shared_by = hw ? hw : 1;
    }
    if (c.l3 == 0) { c.l3 = c.l2; c.l3_shared_by = c.l2_shared_by; }  // no L3: L2 is the last level
    return c;
  }();
  return info;
}

}  // namespace tstream::arch
