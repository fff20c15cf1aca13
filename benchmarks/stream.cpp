// The chained units on their own: MEM -> VXM -> MEM pipelines, one fused
// loop per call (tstream/core/stream.hpp), against the same expression in
// Eigen (a fused, vectorized array expression: its natural peer).
//
//   BM_stream/<impl>/f32/<chain>_<n>/threads:1
//
// chain bias_silu: y = silu(x + b) over n elements, the epilogue a
// transformer's FFN applies after its up-projection:
//   tstream  (mem::read(x) | vxm::add(mem::read(b)) | vxm::silu{} | mem::write(y)).run()
//   eigen    t = x + b; y = t / (1 + exp(-t))   (ArrayXf maps)
// n: 4096 (48 KiB of x, b and y: L1/L2), 65536 (768 KiB: L2), 1048576
// (12 MiB: L3). A pipeline runs on the calling thread, so threads:1 only.
// Counters: bytes_per_second (x and b read, y written: 12 n bytes a call),
// FLOP/s (4 per element: the add, the exponential, 1 + e and the division,
// each counted once), frac_of_bw against the read bandwidth at the 12 n
// byte footprint (the writes keep a pipeline below 1.0 once y is past L1).
#include <string>
#include <vector>

#if defined(TSTREAM_BENCH_HAVE_EIGEN)
#include <Eigen/Core>
#endif

#include "bench_common.hpp"
#include "tstream/units/mem.hpp"
#include "tstream/units/vxm.hpp"

namespace tstream_bench {
namespace {

constexpr std::size_t stream_sizes[] = {4096, 65536, 1048576};

struct stream_fixture {
  tstream::aligned_buffer<float> x, b, y;
  explicit stream_fixture(std::size_t n) : x(n), b(n), y(n) {
    fill_uniform(x.data(), n, 3u);
    fill_uniform(b.data(), n, 5u);
  }
};

std::string stream_name(const char* impl, std::size_t n) {
  return std::string("BM_stream/") + impl + "/f32/bias_silu_" + std::to_string(n) + "/threads:1";
}

void set_stream_counters(benchmark::State& state, std::size_t n, double sec) {
  const double bytes = 12.0 * double(n);
  const double bps = set_rate(state, "bytes_per_second", bytes, sec);
  set_rate(state, "FLOP/s", 4.0 * double(n), sec);
  const double ref = measure_read_bw_fresh(std::size_t(bytes), 1);
  if (ref > 0) state.counters["frac_of_bw"] = bps / ref;
  state.counters["read_bw"] = benchmark::Counter(ref, benchmark::Counter::kDefaults, benchmark::Counter::kIs1000);
}

void bm_tstream(benchmark::State& state, std::size_t n, const std::string& key) {
  auto& f = reuse_fixture<stream_fixture>(key, [&] { return std::make_shared<stream_fixture>(n); });
  pinned_team pin(1);  // pins the calling thread, as every other family does
  const auto pipe = tstream::mem::read(std::span<const float>(f.x.span())) |
                    tstream::vxm::add(tstream::mem::read(std::span<const float>(f.b.span()))) | tstream::vxm::silu{} |
                    tstream::mem::write(f.y.span());
  pipe.run();  // warm
  const double sec = timed_loop(state, [&] {
    pipe.run();
    benchmark::ClobberMemory();
  });
  set_stream_counters(state, n, sec);
}

#if defined(TSTREAM_BENCH_HAVE_EIGEN)
void bm_eigen(benchmark::State& state, std::size_t n, const std::string& key) {
  auto& f = reuse_fixture<stream_fixture>(key, [&] { return std::make_shared<stream_fixture>(n); });
  pinned_team pin(1);
  const Eigen::Index len = Eigen::Index(n);
  Eigen::Map<const Eigen::ArrayXf> X(f.x.data(), len), B(f.b.data(), len);
  Eigen::Map<Eigen::ArrayXf> Y(f.y.data(), len);
  const auto call = [&] {
    const auto t = X + B;
    Y = t / (1.f + (-t).exp());
  };
  call();
  const double sec = timed_loop(state, [&] {
    call();
    benchmark::ClobberMemory();
  });
  set_stream_counters(state, n, sec);
}
#endif

}  // namespace

void register_stream() {
  for (const std::size_t n : stream_sizes) {
    const std::string t = stream_name("tstream", n);
    benchmark::RegisterBenchmark(t.c_str(), [=](benchmark::State& st) { bm_tstream(st, n, t); })
        ->Unit(benchmark::kMicrosecond);
#if defined(TSTREAM_BENCH_HAVE_EIGEN)
    const std::string e = stream_name("eigen", n);
    benchmark::RegisterBenchmark(e.c_str(), [=](benchmark::State& st) { bm_eigen(st, n, e); })
        ->Unit(benchmark::kMicrosecond);
#endif
  }
}

}  // namespace tstream_bench
