// What every tstream_bench family shares: thread pinning, buffers, the GEMV
// shape list and counters, and the in-process machine limits (read bandwidth
// at a footprint, peak FLOP/s) that turn a kernel's speed into a fraction.
//
// Units: every rate counter is decimal (benchmark::Counter::kIs1000), so
// `bytes_per_second=35.2G/s` means 35.2e9 B/s = 35.2 GB/s, the unit
// shared/design/measuring.md quotes. FLOP/s likewise.
//
// Threads: benchmark's own ->Threads() starts new threads for every run;
// these benchmarks run on a tstream::thread_team instead (member 0 is the
// calling thread), pinned one member per CPU. Peers that bring their own
// pools (OpenMP, OpenBLAS, oneDNN) run with the calling thread unpinned, so
// the threads they create inherit the whole CPU set.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

#include <benchmark/benchmark.h>

#include "tstream/arch/cache.hpp"
#include "tstream/core/buffer.hpp"
#include "tstream/runtime/thread_team.hpp"

namespace tstream_bench {

// ---------------------------------------------------------------------------
// Registration: bench_main.cpp calls these in this order (the run order).
void register_limits();        // limits.cpp: BM_read_bw, BM_peak_fma
void register_dispatch();      // dispatch.cpp: BM_dispatch
void register_gemv_peers();    // gemv_peers.cpp: BM_gemv[_cold] for eigen, openblas, onednn
void register_gemv_tstream();  // gemv_tstream.cpp: BM_gemv[_cold]/tstream*, when compiled in
void register_attention();     // attention.cpp: BM_attn_decode, when compiled in
void register_gemm();          // gemm.cpp: BM_gemm for tstream and its peers, when compiled in
void register_stream();        // stream.cpp: BM_stream, VXM pipelines against Eigen array expressions
void add_peer_context();       // gemv_peers.cpp: library versions and configuration

// ---------------------------------------------------------------------------
// Pinning.

/// Restores the calling thread's CPU affinity when it goes out of scope.
class affinity_guard {
 public:
  affinity_guard() noexcept {
#if defined(__linux__)
    CPU_ZERO(&saved_);
    ok_ = pthread_getaffinity_np(pthread_self(), sizeof(saved_), &saved_) == 0;
#endif
  }
  ~affinity_guard() {
#if defined(__linux__)
    if (ok_) (void)pthread_setaffinity_np(pthread_self(), sizeof(saved_), &saved_);
#endif
  }
  affinity_guard(const affinity_guard&) = delete;
  affinity_guard& operator=(const affinity_guard&) = delete;

 private:
#if defined(__linux__)
  cpu_set_t saved_;
  bool ok_ = false;
#endif
};

/// A thread_team with every member pinned (the caller too) for the lifetime
/// of this object; the caller's previous affinity comes back afterwards.
struct pinned_team {
  affinity_guard guard;  // constructed first, restores last
  tstream::thread_team team;
  explicit pinned_team(int threads) : team(threads, tstream::team_options{.pin_caller = true}) {}
};

/// [begin, end) of member m's contiguous share of n items, shares rounded
/// to multiples of `grain` (the last member takes the remainder).
inline std::pair<std::size_t, std::size_t> share(std::size_t n, int members, int m, std::size_t grain = 1) {
  const std::size_t units = (n + grain - 1) / grain;
  const std::size_t per = units / std::size_t(members), extra = units % std::size_t(members);
  const std::size_t mu = std::size_t(m);
  const std::size_t b = (mu * per + std::min(mu, extra)) * grain;
  const std::size_t e = ((mu + 1) * per + std::min(mu + 1, extra)) * grain;
  return {std::min(b, n), std::min(e, n)};
}

// ---------------------------------------------------------------------------
// Buffers and weights.

/// Deterministic values in [-1, 1] (a 32-bit xorshift, no denormals).
inline void fill_uniform(float* p, std::size_t n, std::uint32_t seed) {
  std::uint32_t x = seed * 2654435761u + 1u;
  for (std::size_t i = 0; i < n; ++i) {
    x ^= x << 13; x ^= x >> 17; x ^= x << 5;
    p[i] = float(std::int32_t(x >> 8) - (1 << 23)) * (1.0f / float(1 << 23));
  }
}

/// Called first by every benchmark with its name: the first time a new
/// benchmark starts, waits until the previous one's thread pools have gone
/// to sleep. On 2 cores a pool still spinning steals a core from the next
/// benchmark: OpenBLAS's idle threads spin about 100 ms after its last call,
/// libgomp's a few ms.
inline void settle(const std::string& benchmark_name) {
  static std::string last;
  if (benchmark_name == last) return;
  last = benchmark_name;
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
}

/// Keeps one fixture (weights, packed copies, primitives) alive between the
/// repeated calls Google Benchmark makes to the same benchmark while it
/// chooses an iteration count, so the setup runs once per benchmark. The
/// previous fixture is freed before a new one is built. `key` is the
/// benchmark's name; a new key also settle()s first.
template <class T, class Make>
T& reuse_fixture(const std::string& key, Make&& make) {
  settle(key);
  struct slot {
    std::string key;
    std::shared_ptr<void> obj;
  };
  static slot s;  // one slot for the whole binary, whatever T
  if (s.key != key || !s.obj) {
    s.obj.reset();
    s.key.clear();
    std::shared_ptr<T> fresh = make();
    s.obj = fresh;
    s.key = key;
  }
  return *static_cast<T*>(s.obj.get());
}

// ---------------------------------------------------------------------------
// Timing and rates.
//
// Rates come from the wall-clock time of the timing loop, measured here.
// Benchmark's own rate counters divide by the calling thread's CPU time
// unless ->UseRealTime() is set, and that (like ->MinTime()) appends
// "/real_time" to every benchmark name; the names are a contract, so no
// family sets either. The Time column is wall-clock time in any case.

/// Runs body() once per benchmark iteration; returns the loop's wall-clock
/// seconds.
template <class F>
double timed_loop(benchmark::State& state, F&& body) {
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) body();
  const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
  return dt.count();
}

/// Sets counter `name` to work_per_iteration x iterations / seconds
/// (decimal prefixes) and returns that rate.
inline double set_rate(benchmark::State& state, const char* name, double work_per_iteration, double seconds) {
  const double rate = seconds > 0 ? work_per_iteration * double(state.iterations()) / seconds : 0.0;
  state.counters[name] = benchmark::Counter(rate, benchmark::Counter::kDefaults, benchmark::Counter::kIs1000);
  return rate;
}

// ---------------------------------------------------------------------------
// Machine limits, measured in this process (limits.cpp).

/// Bytes per second of a warm streaming sum over a buffer of exactly `bytes`
/// bytes, each of `threads` pinned members summing its own contiguous slice:
/// the ceiling for a kernel that reads a buffer of that size once per call.
/// Measured when called (median of 5 repetitions), not cached: the
/// reference to pair with a kernel timed just before or after it. DRAM
/// bandwidth on the shared development VMs drifts by +-20% from one second
/// to the next, so a reference cached minutes earlier can put a DRAM-bound
/// kernel above 1.0 of it.
double measure_read_bw_fresh(std::size_t bytes, int threads);

/// The instruction each peak loop issues (24 independent zmm accumulators).
enum class peak_type { f32, bf16, i8 };
[[nodiscard]] constexpr const char* name(peak_type t) noexcept {
  return t == peak_type::f32 ? "f32" : t == peak_type::bf16 ? "bf16" : "i8";
}

/// FLOP/s (OP/s for i8) of `threads` pinned members each running the peak
/// loop for `type`; 0 when this binary was not compiled for the instruction.
/// Median of 5 repetitions, measured when called (about 10 ms), not cached:
/// the host's load moves the 2-core peak between 70 and 220 GFLOP/s from
/// one minute to the next, so a kernel's frac_of_peak pairs its time with
/// a peak measured right after it.
double measure_peak_flops_fresh(peak_type type, int threads);

// ---------------------------------------------------------------------------
// GEMV: shapes, weight types, names and counters, shared by every GEMV
// benchmark file (peers now, tstream's own later) so their rows line up.

/// y[N] = W[N x K] x[K], W row-major: N outputs, K the reduction.
struct gemv_shape {
  std::size_t n, k;
};
inline constexpr std::array<gemv_shape, 5> gemv_shapes{{
    {512, 512}, {1024, 1024}, {2048, 2048}, {4096, 4096}, {11008, 4096}}};
inline constexpr std::array<int, 2> gemv_threads{1, 2};

/// Weight element types.
enum class wtype { f32, bf16, i8 };
inline constexpr std::array<wtype, 3> all_wtypes{wtype::f32, wtype::bf16, wtype::i8};
[[nodiscard]] constexpr const char* name(wtype t) noexcept {
  return t == wtype::f32 ? "f32" : t == wtype::bf16 ? "bf16" : "i8";
}
[[nodiscard]] constexpr std::size_t size_of(wtype t) noexcept {
  return t == wtype::f32 ? 4 : t == wtype::bf16 ? 2 : 1;
}
[[nodiscard]] inline std::size_t weight_bytes(gemv_shape s, wtype t) noexcept { return s.n * s.k * size_of(t); }

/// The first `count` elements of one process-wide fp32 matrix (values in
/// [-1, 1], deterministic), large enough for the biggest GEMV shape. Weights
/// of every type are made from it.
inline const float* source_weights(std::size_t count) {
  static const tstream::aligned_buffer<float> w = [] {
    std::size_t most = 0;
    for (auto s : gemv_shapes) most = std::max(most, s.n * s.k);
    tstream::aligned_buffer<float> b(most);
    fill_uniform(b.data(), b.size(), 12345u);
    return b;
  }();
  return count <= w.size() ? w.data() : nullptr;
}

/// "BM_gemv/<impl>/<wtype>/<N>x<K>/threads:<t>" (family "BM_gemv" or "BM_gemv_cold").
[[nodiscard]] inline std::string gemv_name(const char* family, const char* impl, wtype t, gemv_shape s, int threads) {
  return std::string(family) + "/" + impl + "/" + name(t) + "/" + std::to_string(s.n) + "x" + std::to_string(s.k) +
         "/threads:" + std::to_string(threads);
}

/// Copies of the weights a cold benchmark rotates over (one per call, in
/// turn): enough that together they reach twice the detected L3, so a copy
/// is gone from the caches by the time it comes round again (1 when one copy
/// alone is that large); 0 when they would exceed `cap` bytes (not run).
[[nodiscard]] inline std::size_t cold_copies(std::size_t bytes, std::size_t cap = std::size_t(2) << 30) {
  const std::size_t target = 2 * tstream::arch::caches().l3;
  const std::size_t copies = std::max<std::size_t>(1, (target + bytes - 1) / bytes);
  return copies * bytes <= cap ? copies : 0;
}

/// The GEMV counters, from the loop's wall-clock `seconds` (timed_loop):
/// bytes_per_second (weight bytes per call), FLOP/s (2*N*K per call),
/// frac_of_bw (bytes_per_second over `ref_bw`, the read bandwidth at the
/// footprint this benchmark reads, from gemv_reference_bw) and read_bw (that
/// reference, B/s).
inline void set_gemv_counters(benchmark::State& state, gemv_shape s, wtype t, double seconds, double ref_bw) {
  const double bps = set_rate(state, "bytes_per_second", double(weight_bytes(s, t)), seconds);
  set_rate(state, "FLOP/s", 2.0 * double(s.n) * double(s.k), seconds);
  if (ref_bw > 0) state.counters["frac_of_bw"] = bps / ref_bw;
  state.counters["read_bw"] = benchmark::Counter(ref_bw, benchmark::Counter::kDefaults, benchmark::Counter::kIs1000);
}

/// The reference for frac_of_bw: read bandwidth at the weight footprint
/// (warm), or at the whole rotation (`copies` x weight bytes, cold),
/// measured now (measure_read_bw_fresh): call it right before or after the
/// timing loop, while no other thread pool is spinning. With --benchmark_repetitions=N every repetition pairs its own
/// kernel time with its own reference (A B A B ...), and the _median row is
/// the robust figure.
[[nodiscard]] inline double gemv_reference_bw(gemv_shape s, wtype t, int threads, std::size_t copies = 1) {
  return measure_read_bw_fresh(weight_bytes(s, t) * copies, threads);
}

/// Settings shared by the GEMV families (no UseRealTime/MinTime: see
/// timed_loop).
inline benchmark::internal::Benchmark* gemv_settings(benchmark::internal::Benchmark* b) {
  return b->Unit(benchmark::kMicrosecond);
}

}  // namespace tstream_bench
