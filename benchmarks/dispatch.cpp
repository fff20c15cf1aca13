// The cost of one parallel call with an empty body: tstream::thread_team::run
// against an OpenMP parallel region, in the same binary. The real time per
// iteration is the number for the "dispatch overhead < 2 us with 2 threads"
// target.
//
// OpenMP runs with its defaults (the environment is left alone): GNU
// libgomp's threads spin for a while after a region before they sleep, which
// is what back-to-back regions here see. Its threads are created while the
// caller is unpinned; tstream's team is pinned (caller included).
#include <string>

#include <omp.h>

#include "bench_common.hpp"

namespace tstream_bench {
namespace {

void BM_dispatch_tstream(benchmark::State& state, int threads, const std::string& key) {
  settle(key);
  pinned_team pt(threads);
  pt.team.run([](int) { benchmark::ClobberMemory(); });  // workers are up and spinning
  const double sec = timed_loop(state, [&] { pt.team.run([](int) { benchmark::ClobberMemory(); }); });
  state.counters["ns_per_call"] = sec * 1e9 / double(state.iterations());
}

void BM_dispatch_openmp(benchmark::State& state, int threads, const std::string& key) {
  settle(key);
#pragma omp parallel num_threads(threads)
  benchmark::ClobberMemory();
  const double sec = timed_loop(state, [threads] {
#pragma omp parallel num_threads(threads)
    benchmark::ClobberMemory();  // "empty": GCC deletes a region whose body is {}
  });
  state.counters["ns_per_call"] = sec * 1e9 / double(state.iterations());
}

}  // namespace

void register_dispatch() {
  for (int t : {1, 2}) {
    const std::string suffix = "/threads:" + std::to_string(t);
    const std::string ts = "BM_dispatch/tstream" + suffix, omp = "BM_dispatch/openmp" + suffix;
    benchmark::RegisterBenchmark(ts.c_str(), [t, ts](benchmark::State& s) { BM_dispatch_tstream(s, t, ts); })
        ->Unit(benchmark::kNanosecond);
    benchmark::RegisterBenchmark(omp.c_str(), [t, omp](benchmark::State& s) { BM_dispatch_openmp(s, t, omp); })
        ->Unit(benchmark::kNanosecond);
  }
}

}  // namespace tstream_bench
