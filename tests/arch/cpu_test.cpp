// What the arch layer reports: plausible cache sizes, consistent ISA sets.
#include <doctest/doctest.h>

#include "tstream/arch/cache.hpp"
#include "tstream/arch/cpu.hpp"

#include <string>

namespace ta = tstream::arch;

TEST_CASE("arch: cache sizes are plausible and ordered") {
  const auto& c = ta::caches();
  CAPTURE(c.source);
  CHECK(c.l1d >= (8u << 10));
  CHECK(c.l1d <= (4u << 20));
  CHECK(c.l2 >= c.l1d);
  CHECK(c.l2 <= (64u << 20));
  CHECK(c.l3 >= c.l2 / 4);  // a few CPUs have a small L3 relative to L2
  CHECK(c.l3_shared_by >= 1);
  CHECK(c.sram_per_core() >= c.l2 / c.l2_shared_by);
  CHECK(c.sram_per_core() == c.l2 / c.l2_shared_by + c.l3 / c.l3_shared_by);
}

TEST_CASE("arch: size and CPU-list parsing") {
  CHECK(ta::detail::parse_size("48K") == 48u << 10);
  CHECK(ta::detail::parse_size("1024K") == 1u << 20);
  CHECK(ta::detail::parse_size("32M") == 32u << 20);
  CHECK(ta::detail::parse_size("") == 0);
  CHECK(ta::detail::count_cpu_list("0") == 1);
  CHECK(ta::detail::count_cpu_list("0-1") == 2);
  CHECK(ta::detail::count_cpu_list("0-3,8-11") == 8);
  CHECK(ta::detail::count_cpu_list("0,2,4") == 3);
}

TEST_CASE("arch: the CPU supports what this test was compiled for") {
  const auto built = ta::compiled_isa();
  const auto& cpu = ta::runtime_isa();
  // If the build used an extension, the CPU running it must have it (else the
  // test would already have crashed with an illegal instruction).
  if (built.avx2) CHECK(cpu.avx2);
  if (built.fma) CHECK(cpu.fma);
  if (built.avx512f) CHECK(cpu.avx512f);
  if (built.avx512bw) CHECK(cpu.avx512bw);
  if (built.avx512_bf16) CHECK(cpu.avx512_bf16);
  if (built.avx512_vnni) CHECK(cpu.avx512_vnni);
  // Implications that hold on every real CPU.
  if (cpu.avx512bw) CHECK(cpu.avx512f);
  if (cpu.avx512_bf16) CHECK(cpu.avx512f);
  CHECK_FALSE(cpu.to_string().empty());
  CHECK_FALSE(ta::cpu_name().empty());
}

TEST_CASE("arch: the vendor agrees with the brand string") {
  // An Intel or AMD brand string names its maker's vendor id (a hypervisor
  // may show a brand of its own, e.g. "QEMU Virtual CPU", with either id).
  const std::string name = ta::cpu_name();
  CAPTURE(name);
  if (name.find("Intel") != std::string::npos) CHECK(ta::runtime_vendor() == ta::cpu_vendor::intel);
  if (name.find("AMD") != std::string::npos) CHECK(ta::runtime_vendor() == ta::cpu_vendor::amd);
  CHECK(ta::runtime_vendor() == ta::runtime_vendor());  // read once, cached
}
