// What this machine offers tstream, and a first stream through a chain of
// functional units: MEM (read) -> VXM (scale, bias, SiLU) -> MEM (write).
#include <cmath>
#include <cstdio>
#include <vector>

#include <tstream/tstream.hpp>

int main() {
  namespace ta = tstream::arch;
  const auto& c = ta::caches();
  std::printf("tstream %s\n", tstream::version_string);
  std::printf("cpu         : %s (%u logical CPUs)\n", ta::cpu_name().c_str(), std::thread::hardware_concurrency());
  std::printf("isa (cpu)   : %s\n", ta::runtime_isa().to_string().c_str());
  std::printf("isa (build) : %s\n", ta::compiled_isa().to_string().c_str());
  std::printf("amx tiles   : %s\n", ta::amx_ready()             ? "in use for bf16 and int8 GEMM"
                                    : ta::amx_compiled          ? "built for, not available here"
                                                                : "not built for (register tiles)");
  std::printf("caches (%s): L1d %zu KiB, L2 %zu KiB per core, L3 %zu MiB shared by %u CPUs\n", c.source, c.l1d >> 10,
              c.l2 >> 10, c.l3 >> 20, c.l3_shared_by);
  std::printf("SRAM budget : %.2f MiB per core (L2 + its share of L3)\n", double(c.sram_per_core()) / (1 << 20));
  using V = tstream::vec<float>;
  std::printf("vec<float>  : %zu lanes = %zu superlanes x %zu\n", V::lanes, V::superlanes, V::superlane_width);

  // One chain, fused into one loop over 1000 elements (3 full vectors and a
  // masked tail of 40 lanes): y = silu(2 x + b).
  const std::size_t n = 1000;
  std::vector<float> x(n), b(n, 0.5f), y(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = std::sin(0.01f * float(i));
  namespace mem = tstream::mem;
  namespace vxm = tstream::vxm;
  (mem::read(x) | vxm::scale(2.0f) | vxm::add(mem::read(b)) | vxm::silu{} | mem::write(y)).run();

  double max_err = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double t = 2.0 * x[i] + 0.5;
    max_err = std::fmax(max_err, std::fabs(y[i] - t / (1 + std::exp(-t))));
  }
  std::printf("stream      : y = silu(2x + b) over %zu elements in %zu vectors, max |error| %.2e\n", n,
              tstream::chunks_of(n), max_err);
  return max_err < 1e-5 ? 0 : 1;
}
