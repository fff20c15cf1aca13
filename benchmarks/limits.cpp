// The machine's limits, measured in this binary: read bandwidth at a
// footprint (BM_read_bw) and peak multiply-add throughput per type
// (BM_peak_fma), plus measure_read_bw_fresh / measure_peak_flops_fresh,
// which other families divide by to report a fraction of the limit
// measured next to them.
//
// Intrinsics are fine here: these are measuring tools, not the library.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <immintrin.h>

#include "bench_common.hpp"
#include "tstream/arch/simd.hpp"
#include "tstream/arch/x86/amx.hpp"

namespace tstream_bench {
namespace {

// ---------------------------------------------------------------------------
// Read bandwidth.

using fbatch = tstream::arch::batch<float>;
constexpr std::size_t lanes = fbatch::size;

// Sum of n floats at p with 8 independent accumulators (one native register
// each: zmm with AVX-512), so the adds' latency never limits the loads.
float stream_sum(const float* p, std::size_t n) noexcept {
  fbatch a0(0.f), a1(0.f), a2(0.f), a3(0.f), a4(0.f), a5(0.f), a6(0.f), a7(0.f);
  std::size_t i = 0;
  for (; i + 8 * lanes <= n; i += 8 * lanes) {
    a0 += fbatch::load_unaligned(p + i + 0 * lanes);
    a1 += fbatch::load_unaligned(p + i + 1 * lanes);
    a2 += fbatch::load_unaligned(p + i + 2 * lanes);
    a3 += fbatch::load_unaligned(p + i + 3 * lanes);
    a4 += fbatch::load_unaligned(p + i + 4 * lanes);
    a5 += fbatch::load_unaligned(p + i + 5 * lanes);
    a6 += fbatch::load_unaligned(p + i + 6 * lanes);
    a7 += fbatch::load_unaligned(p + i + 7 * lanes);
  }
  for (; i + lanes <= n; i += lanes) a0 += fbatch::load_unaligned(p + i);
  float s = xsimd::hadd(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)));
  for (; i < n; ++i) s += p[i];
  return s;
}

// Bytes one timed run reads at least: small footprints are summed many times
// per run so the hand-off to the team (~1 us) stays below 1% of it.
constexpr std::size_t run_bytes = std::size_t(64) << 20;

std::size_t passes_for(std::size_t bytes) { return std::max<std::size_t>(1, (run_bytes + bytes - 1) / bytes); }

// One team run: every member sums its own contiguous slice (whole cache
// lines) `passes` times.
void read_run(tstream::thread_team& team, const float* p, std::size_t n, std::size_t passes) {
  team.run([&](int m) {
    const auto [b, e] = share(n, team.size(), m, 64 / sizeof(float));
    for (std::size_t r = 0; r < passes; ++r) {
      float s = stream_sum(p + b, e - b);
      benchmark::DoNotOptimize(s);
      benchmark::ClobberMemory();  // the next pass must read the buffer again
    }
  });
}

tstream::aligned_buffer<float> make_read_buffer(std::size_t bytes) {
  tstream::aligned_buffer<float> b(bytes / sizeof(float));
  std::fill(b.data(), b.data() + b.size(), 1.0f);  // first touch, outside any timing
  return b;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

template <class F>
double median_rate(double work_per_run, int reps, F&& run) {
  using clock = std::chrono::steady_clock;
  std::vector<double> rates;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = clock::now();
    run();
    const std::chrono::duration<double> dt = clock::now() - t0;
    rates.push_back(work_per_run / dt.count());
  }
  return median(std::move(rates));
}

void BM_read_bw(benchmark::State& state, std::size_t bytes, int threads, const std::string& key) {
  settle(key);
  auto& buf = reuse_fixture<tstream::aligned_buffer<float>>(
      key, [&] { return std::make_shared<tstream::aligned_buffer<float>>(make_read_buffer(bytes)); });
  const std::size_t passes = passes_for(bytes);
  pinned_team pt(threads);
  read_run(pt.team, buf.data(), buf.size(), passes);  // warm: the footprint is in the caches it fits
  const double sec = timed_loop(state, [&] { read_run(pt.team, buf.data(), buf.size(), passes); });
  set_rate(state, "bytes_per_second", double(buf.bytes() * passes), sec);
  state.counters["passes"] = double(passes);
}

// ---------------------------------------------------------------------------
// Peak multiply-add throughput: 24 independent accumulators per thread (two
// pipes x latency 4-6 need at most 12), all in registers. The accumulators
// are 24 named variables, not an array (GCC 12 spills an unrolled array of
// integer vectors to the stack inside the loop), each starting from its own
// value; the operands are hidden from the optimiser (opaque) so it cannot
// fold them into the result.

constexpr std::size_t peak_iters = std::size_t(1) << 17;  // blocks of 24 instructions per run and member

#if defined(__GNUC__)
#define TSTREAM_BENCH_NOINLINE __attribute__((noinline))
#else
#define TSTREAM_BENCH_NOINLINE
#endif

#define TSB_REP24(X)                                                                                              \
  X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19) \
  X(20) X(21) X(22) X(23)

template <class V>
inline void opaque(V& v) noexcept {
#if defined(__AVX512F__)
  __asm__ volatile("" : "+v"(v));
#else
  __asm__ volatile("" : "+x"(v));
#endif
}

// 24 accumulators c_i = op(c_i, a, b) from c_i = init(i), iters times;
// returns their sum.
template <class Init, class W, class Op, class Add>
inline auto peak_loop(std::size_t iters, Init init, W a, W b, Op op, Add add) noexcept {
  using V = decltype(init(0));
#define TSB_DECL(i) V c##i = init(i);
  TSB_REP24(TSB_DECL)
#undef TSB_DECL
  opaque(a);
  opaque(b);
  for (std::size_t n = 0; n < iters; ++n) {
#define TSB_STEP(i) c##i = op(c##i, a, b);
    TSB_REP24(TSB_STEP)
#undef TSB_STEP
  }
  V s = c0;
#define TSB_SUM(i) s = add(s, c##i);
  TSB_REP24(TSB_SUM)
#undef TSB_SUM
  return s;
}

#if defined(__AVX512F__)
float lane_sum(__m512 v) noexcept {
  alignas(64) float out[16];
  _mm512_store_ps(out, v);
  float r = 0;
  for (float x : out) r += x;
  return r;
}
#endif

#if defined(__AVX512F__)
// vfmadd231ps zmm: 16 lanes x 2 FLOP.
constexpr double f32_flop_per_block = 24 * 16 * 2;
TSTREAM_BENCH_NOINLINE float peak_f32(std::size_t iters, float seed) {
  return lane_sum(peak_loop(
      iters, [seed](int i) { return _mm512_set1_ps(seed * float(i + 1)); }, _mm512_set1_ps(0.999999f), _mm512_set1_ps(seed * 1e-6f),
      [](__m512 c, __m512 a, __m512 b) { return _mm512_fmadd_ps(c, a, b); },
      [](__m512 x, __m512 y) { return _mm512_add_ps(x, y); }));
}
#elif defined(__AVX2__) && defined(__FMA__)
// AVX2 fallback: vfmadd231ps ymm, 8 lanes x 2 FLOP (24 accumulators of the
// 16 registers: some spill, a lower bound).
constexpr double f32_flop_per_block = 24 * 8 * 2;
TSTREAM_BENCH_NOINLINE float peak_f32(std::size_t iters, float seed) {
  const __m256 s = peak_loop(
      iters, [seed](int i) { return _mm256_set1_ps(seed * float(i + 1)); }, _mm256_set1_ps(0.999999f), _mm256_set1_ps(seed * 1e-6f),
      [](__m256 c, __m256 a, __m256 b) { return _mm256_fmadd_ps(c, a, b); },
      [](__m256 x, __m256 y) { return _mm256_add_ps(x, y); });
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  float r = 0;
  for (float v : out) r += v;
  return r;
}
#endif
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#define TSTREAM_BENCH_HAVE_PEAK_F32 1
#endif

#if defined(__AVX512BF16__) && defined(__AVX512F__)
// vdpbf16ps zmm: 32 bf16 pairs x 2 FLOP = 64 FLOP.
constexpr double bf16_flop_per_block = 24 * 32 * 2;
TSTREAM_BENCH_NOINLINE float peak_bf16(std::size_t iters, float seed) {
  const __m512 x = _mm512_set1_ps(seed * 0x1p-10f);
  return lane_sum(peak_loop(
      iters, [seed](int i) { return _mm512_set1_ps(seed * float(i + 1)); }, _mm512_cvtne2ps_pbh(x, x), _mm512_cvtne2ps_pbh(x, x),
      [](__m512 c, __m512bh a, __m512bh b) { return _mm512_dpbf16_ps(c, a, b); },
      [](__m512 p, __m512 q) { return _mm512_add_ps(p, q); }));
}
#endif

#if defined(__AVX512VNNI__) && defined(__AVX512F__)
// vpdpbusd zmm: 64 u8 x s8 pairs x 2 OP = 128 OP.
constexpr double i8_op_per_block = 24 * 64 * 2;
TSTREAM_BENCH_NOINLINE int peak_i8(std::size_t iters, int seed) {
  // __v16si, not __m512i (a vector of 64-bit lanes): with __m512i GCC 12
  // moves every accumulator through the stack on each iteration.
  const __v16si s = peak_loop(
      iters, [seed](int i) { return __v16si(_mm512_set1_epi32(seed * (i + 1))); },
      __v16si(_mm512_set1_epi8(char(seed | 1))), __v16si(_mm512_set1_epi8(char(3))),
      [](__v16si c, __v16si a, __v16si b) {
        return __v16si(_mm512_dpbusd_epi32(__m512i(c), __m512i(a), __m512i(b)));
      },
      [](__v16si p, __v16si q) { return p + q; });
  alignas(64) int out[16];
  _mm512_store_si512(out, __m512i(s));
  unsigned r = 0;  // wraps: only its use matters
  for (int v : out) r += unsigned(v);
  return int(r & 0x7FFFFFFF);
}
#endif

// Where the GEMM runs bf16 and int8 on AMX tiles (arch/x86/amx.hpp), their
// limit is the tile unit's: four independent accumulator tiles, each
// tdpbf16ps 16 x 16 x 32 x 2 FLOP, each tdpbusd 16 x 16 x 64 x 2 OP, on
// tiles loaded once (ones, so nothing is a zero special case).
constexpr std::size_t amx_iters = std::size_t(1) << 14;  // 4 tile products each; int32 sums stay < 2^31
bool use_amx(peak_type type) { return type != peak_type::f32 && tstream::arch::amx_ready(); }
double amx_flop_per_run(peak_type type) {
  return 4.0 * 16 * 16 * (type == peak_type::i8 ? 64 : 32) * 2 * double(amx_iters);
}
#if TSTREAM_HAVE_AMX
template <bool Int8>
TSTREAM_BENCH_NOINLINE float peak_amx() {
  alignas(64) std::uint16_t ones[16 * 32];
  for (auto& v : ones) v = Int8 ? 0x0101 : 0x3F80;  // u8 / s8 ones, or bf16 1.0
  alignas(64) float out[16 * 16];
  tstream::arch::amx_configure();
  _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
  _tile_loadd(4, ones, 64); _tile_loadd(5, ones, 64); _tile_loadd(6, ones, 64); _tile_loadd(7, ones, 64);
  for (std::size_t i = 0; i < amx_iters; ++i) {
    if constexpr (Int8) {
      _tile_dpbusd(0, 4, 6); _tile_dpbusd(1, 4, 7); _tile_dpbusd(2, 5, 6); _tile_dpbusd(3, 5, 7);
    } else {
      _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(3, out, 64);
  tstream::arch::amx_release();
  return out[0];
}
#endif

// FLOP per member and run for `type`, 0 when not compiled in.
double flop_per_run(peak_type type) {
  if (use_amx(type)) return amx_flop_per_run(type);
  switch (type) {
    case peak_type::f32:
#if defined(TSTREAM_BENCH_HAVE_PEAK_F32)
      return f32_flop_per_block * double(peak_iters);
#else
      return 0;
#endif
    case peak_type::bf16:
#if defined(__AVX512BF16__) && defined(__AVX512F__)
      return bf16_flop_per_block * double(peak_iters);
#else
      return 0;
#endif
    case peak_type::i8:
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
      return i8_op_per_block * double(peak_iters);
#else
      return 0;
#endif
  }
  return 0;
}

const char* missing_isa(peak_type type) {
  switch (type) {
    case peak_type::f32: return "needs AVX-512F or AVX2+FMA (not compiled in)";
    case peak_type::bf16: return "needs AVX512_BF16 (vdpbf16ps, not compiled in)";
    case peak_type::i8: return "needs AVX512_VNNI (vpdpbusd, not compiled in)";
  }
  return "";
}

// One team run: every member runs the peak loop for `type` once.
void peak_run(tstream::thread_team& team, peak_type type) {
  team.run([type](int m) {
    const float seed = 1e-3f * float(m + 1);
#if TSTREAM_HAVE_AMX
    if (use_amx(type)) {
      float r = type == peak_type::i8 ? peak_amx<true>() : peak_amx<false>();
      benchmark::DoNotOptimize(r);
      return;
    }
#endif
    switch (type) {
      case peak_type::f32: {
#if defined(TSTREAM_BENCH_HAVE_PEAK_F32)
        float r = peak_f32(peak_iters, seed);
        benchmark::DoNotOptimize(r);
#endif
        break;
      }
      case peak_type::bf16: {
#if defined(__AVX512BF16__) && defined(__AVX512F__)
        float r = peak_bf16(peak_iters, seed);
        benchmark::DoNotOptimize(r);
#endif
        break;
      }
      case peak_type::i8: {
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
        int r = peak_i8(peak_iters, m + 1);
        benchmark::DoNotOptimize(r);
#endif
        break;
      }
    }
    (void)seed;
  });
}

void BM_peak_fma(benchmark::State& state, peak_type type, int threads, const std::string& key) {
  settle(key);
  const double flop = flop_per_run(type);
  if (flop == 0) {
    state.SkipWithError(missing_isa(type));
    for (auto _ : state) {}
    return;
  }
  pinned_team pt(threads);
  peak_run(pt.team, type);  // let the clock settle
  const double sec = timed_loop(state, [&] { peak_run(pt.team, type); });
  set_rate(state, "FLOP/s", flop * threads, sec);
}

// The footprints BM_read_bw covers: the cache levels, DRAM, and exactly the
// weight bytes of every GEMV shape and weight type.
std::vector<std::size_t> read_footprints() {
  constexpr std::size_t KiB = 1024, MiB = 1024 * KiB;
  std::set<std::size_t> s{16 * KiB, 32 * KiB, 256 * KiB, 512 * KiB, 1 * MiB, 2 * MiB,
                          4 * MiB,  8 * MiB,  16 * MiB,  64 * MiB,  176 * MiB};
  for (auto shape : gemv_shapes)
    for (auto t : all_wtypes) s.insert(weight_bytes(shape, t));
  return {s.begin(), s.end()};
}

// One reference measurement at a time (they pin teams over the same CPUs).
std::mutex reference_mutex;

}  // namespace

namespace {

// The reference measurements' buffer: one process-wide array, grown to the
// largest footprint asked for and filled once; a footprint is its prefix.
const float* reference_buffer(std::size_t floats) {
  static tstream::aligned_buffer<float> buf;
  if (buf.size() < floats) {
    buf = tstream::aligned_buffer<float>();
    buf = make_read_buffer(floats * sizeof(float));
  }
  return buf.data();
}

// A benchmark may measure its reference while its own team still exists;
// that team's workers spin about a millisecond (thread_team's
// spin_iterations) after their last call before they sleep, sharing a core
// with the reference meanwhile. Wait until they sleep.
void let_spinning_workers_sleep() { std::this_thread::sleep_for(std::chrono::milliseconds(5)); }

double read_bw_now(std::size_t bytes, int threads, int reps) {
  let_spinning_workers_sleep();
  const std::size_t n = bytes / sizeof(float);
  const float* p = reference_buffer(n);
  const std::size_t passes = passes_for(bytes);
  pinned_team pt(threads);
  read_run(pt.team, p, n, passes);  // warm
  return median_rate(double(n * sizeof(float) * passes), reps, [&] { read_run(pt.team, p, n, passes); });
}

}  // namespace

double measure_read_bw_fresh(std::size_t bytes, int threads) {
  std::lock_guard<std::mutex> lock(reference_mutex);
  return read_bw_now(bytes, threads, 5);
}

double measure_peak_flops_fresh(peak_type type, int threads) {
  std::lock_guard<std::mutex> lock(reference_mutex);
  const double flop = flop_per_run(type) * threads;
  if (flop <= 0) return 0;
  let_spinning_workers_sleep();
  pinned_team pt(threads);
  peak_run(pt.team, type);
  return median_rate(flop, 5, [&] { peak_run(pt.team, type); });
}

void register_limits() {
  for (std::size_t bytes : read_footprints())
    for (int t : {1, 2}) {
      const std::string bm = "BM_read_bw/" + std::to_string(bytes) + "/threads:" + std::to_string(t);
      benchmark::RegisterBenchmark(bm.c_str(), [bytes, t, bm](benchmark::State& s) { BM_read_bw(s, bytes, t, bm); })
          ->Unit(benchmark::kMicrosecond);
    }
  for (peak_type type : {peak_type::f32, peak_type::bf16, peak_type::i8})
    for (int t : {1, 2}) {
      const std::string bm = std::string("BM_peak_fma/") + name(type) + "/threads:" + std::to_string(t);
      benchmark::RegisterBenchmark(bm.c_str(), [type, t, bm](benchmark::State& s) { BM_peak_fma(s, type, t, bm); })
          ->Unit(benchmark::kMicrosecond);
    }
}

}  // namespace tstream_bench
