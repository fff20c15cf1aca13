// tstream_bench: the machine's limits, tstream's runtime against OpenMP and
// the GEMV peers, in one process so every ratio is taken in one run
// (shared/design/measuring.md). Families, in run order:
//
//   BM_read_bw/<bytes>/threads:<t>                     limits.cpp
//   BM_peak_fma/<f32|bf16|i8>/threads:<t>              limits.cpp
//   BM_dispatch/<tstream|openmp>/threads:<t>           dispatch.cpp
//   BM_gemv[_cold]/<impl>/<wtype>/<N>x<K>/threads:<t>  gemv_peers.cpp, gemv_tstream.cpp
//   BM_attn_decode/...                                 attention.cpp
//   BM_gemm/<impl>/<type>/<M>x<N>x<K>/threads:<t>      gemm.cpp
//   BM_stream/<impl>/f32/<chain>_<n>/threads:1         stream.cpp
//
// Select one with --benchmark_filter, e.g. --benchmark_filter='BM_gemv/onednn/.*'.
#include <cstring>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "tstream/arch/cache.hpp"
#include "tstream/arch/cpu.hpp"

int main(int argc, char** argv) {
  using namespace tstream_bench;
  const auto& c = tstream::arch::caches();
  benchmark::AddCustomContext("cpu", tstream::arch::cpu_name());
  benchmark::AddCustomContext("isa_compiled", tstream::arch::compiled_isa().to_string());
  benchmark::AddCustomContext("isa_runtime", tstream::arch::runtime_isa().to_string());
  benchmark::AddCustomContext(
      "caches", "L1d " + std::to_string(c.l1d >> 10) + " KiB, L2 " + std::to_string(c.l2 >> 10) + " KiB, L3 " +
                    std::to_string(c.l3 >> 20) + " MiB shared by " + std::to_string(c.l3_shared_by) + " (" +
                    c.source + ")");
  benchmark::AddCustomContext("rates", "decimal: bytes_per_second 1G/s = 1e9 B/s; frac_of_bw against the BM_read_bw "
                                       "kernel at the same footprint and threads, measured next to each benchmark");
  add_peer_context();

  register_limits();
  register_dispatch();
  register_gemv_peers();
#if defined(TSTREAM_BENCH_HAVE_GEMV_TSTREAM)
  register_gemv_tstream();
#endif
#if defined(TSTREAM_BENCH_HAVE_ATTENTION)
  register_attention();
#endif
#if defined(TSTREAM_BENCH_HAVE_GEMM)
  register_gemm();
#endif
  register_stream();

  // This binary's default minimum time per benchmark is 0.25 s (Google
  // Benchmark's is 0.5 s) so the whole run stays within minutes on 2 cores;
  // --benchmark_min_time=... overrides it. (Per-benchmark MinTime() would
  // append "/min_time:..." to every name.)
  std::vector<char*> args(argv, argv + argc);
  bool has_min_time = false;
  for (int i = 1; i < argc; ++i) has_min_time |= std::strncmp(argv[i], "--benchmark_min_time", 20) == 0;
  static char default_min_time[] = "--benchmark_min_time=0.25";
  if (!has_min_time) args.insert(args.begin() + 1, default_min_time);
  int n = int(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
