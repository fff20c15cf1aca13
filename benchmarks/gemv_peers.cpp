// GEMV peers: y[N] = W[N x K] x[K] in Eigen, OpenBLAS and oneDNN, over the
// shapes, weight types and counters of bench_common.hpp, so a tstream GEMV
// benchmark registered under the same scheme lines up row for row.
//
//   BM_gemv/<impl>/<wtype>/<N>x<K>/threads:<t>       warm: one copy of the weights
//   BM_gemv_cold/<impl>/<wtype>/<N>x<K>/threads:<t>  cold: rotates over copies
//                                                    that together reach 2x L3
//
// Each peer in its fast configuration:
//  - eigen: a row-major Map times a vector. Eigen never threads a GEMV, so
//    with 2 threads the rows are split in two contiguous blocks run on a
//    pinned tstream::thread_team. f32; bf16 is Eigen::bfloat16 throughout
//    (W, x and y: Eigen has no mixed bf16 x bf16 -> f32 product), which
//    converts element by element: slow, kept as the "plain C++" baseline.
//  - openblas: cblas_sgemv / cblas_sbgemv (bf16 weights and x, f32 y),
//    row-major, threads via openblas_set_num_threads. Its kernels follow
//    OPENBLAS_CORETYPE (Debian's 0.3.21 takes Zen 5 for Haswell: AVX2); the
//    core it chose is in the context block of the output.
//  - onednn: a matmul primitive 1xK times KxN whose weights memory desc is
//    format_tag::any, reordered once at setup into the primitive's preferred
//    layout. f32; bf16 src and weights with f32 dst; u8 src x s8 weights with
//    f32 dst. Threads via omp_set_num_threads before creating and running.
//    The implementation it picked is the benchmark's label.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <omp.h>

#include "bench_common.hpp"
#include "tstream/core/bf16.hpp"

#if defined(TSTREAM_BENCH_HAVE_EIGEN)
#include <Eigen/Core>
#endif
#if defined(TSTREAM_BENCH_HAVE_OPENBLAS)
#include <cblas.h>
#endif
#if defined(TSTREAM_BENCH_HAVE_ONEDNN)
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace tstream_bench {
namespace {

enum class peer { eigen, openblas, onednn };
constexpr const char* name(peer p) { return p == peer::eigen ? "eigen" : p == peer::openblas ? "openblas" : "onednn"; }

bool supports(peer p, wtype t) {
  switch (p) {
    case peer::eigen:
#if defined(TSTREAM_BENCH_HAVE_EIGEN)
      return t == wtype::f32 || t == wtype::bf16;
#else
      return false;
#endif
    case peer::openblas:
#if defined(TSTREAM_BENCH_HAVE_OPENBLAS)
#if defined(TSTREAM_BENCH_HAVE_OPENBLAS_SBGEMV)
      return t == wtype::f32 || t == wtype::bf16;
#else
      return t == wtype::f32;
#endif
#else
      return false;
#endif
    case peer::onednn:
#if defined(TSTREAM_BENCH_HAVE_ONEDNN)
      return true;
#else
      return false;
#endif
  }
  return false;
}

// `copies` row-major N x K weight matrices of element type T, back to back,
// made from source_weights (bf16 rounds, i8 is round(127 w)).
template <class T>
tstream::aligned_buffer<T> weight_copies(gemv_shape s, std::size_t copies) {
  const std::size_t n = s.n * s.k;
  const float* src = source_weights(n);
  tstream::aligned_buffer<T> b(n * copies);
  for (std::size_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<T, float>) b[i] = src[i];
    else if constexpr (std::is_same_v<T, tstream::bf16>) b[i] = tstream::bf16(src[i]);
    else b[i] = static_cast<T>(std::lround(127.0f * src[i]));
  }
  for (std::size_t c = 1; c < copies; ++c) std::memcpy(b.data() + c * n, b.data(), n * sizeof(T));
  return b;
}

template <class T>
tstream::aligned_buffer<T> input_vector(std::size_t k) {
  tstream::aligned_buffer<float> f(k);
  fill_uniform(f.data(), k, 777u);
  tstream::aligned_buffer<T> x(k);
  for (std::size_t i = 0; i < k; ++i) {
    if constexpr (std::is_same_v<T, float>) x[i] = f[i];
    else if constexpr (std::is_same_v<T, tstream::bf16>) x[i] = tstream::bf16(f[i]);
    else x[i] = static_cast<T>(std::lround(127.5f + 127.5f * f[i]));  // u8
  }
  return x;
}

// Whether y (read through y_at(row)) is W x for three rows, recomputed in
// double from the same inputs: catches a peer called with the wrong layout
// or transpose. The tolerance is relative to sum |w x| of the row; a wrong
// row or transpose is off by O(sqrt(K)) of that scale.
template <class YAt>
bool rows_match(benchmark::State& state, gemv_shape s, wtype t, YAt y_at, double tol) {
  const auto xf = input_vector<float>(s.k);
  for (std::size_t r : {std::size_t(0), s.n / 2, s.n - 1}) {
    const float* w = source_weights(s.n * s.k) + r * s.k;
    double e = 0, mag = 0;
    for (std::size_t k = 0; k < s.k; ++k) {
      double a = w[k], b = xf[k];
      if (t == wtype::bf16) {
        a = float(tstream::bf16(w[k]));
        b = float(tstream::bf16(xf[k]));
      } else if (t == wtype::i8) {
        a = double(std::lround(127.0f * w[k]));
        b = double(std::lround(127.5f + 127.5f * xf[k]));
      }
      e += a * b;
      mag += std::abs(a * b);
    }
    const double got = y_at(r);
    if (!(std::abs(got - e) <= tol * mag)) {
      state.SkipWithError(("wrong result: row " + std::to_string(r) + " is " + std::to_string(got) + ", expected " +
                           std::to_string(e))
                              .c_str());
      return false;
    }
  }
  return true;
}

// Everything one benchmark needs besides its threads: set up once (see
// reuse_fixture), rotated over per call.
struct plain_fixture {
  std::size_t copies = 1;
  std::size_t stride = 0;  // elements between copies
  tstream::aligned_buffer<float> w32;
  tstream::aligned_buffer<tstream::bf16> w16;
  tstream::aligned_buffer<float> x32;
  tstream::aligned_buffer<tstream::bf16> x16;
  tstream::aligned_buffer<float> y;
};

std::shared_ptr<plain_fixture> make_plain(gemv_shape s, wtype t, std::size_t copies) {
  auto f = std::make_shared<plain_fixture>();
  f->copies = copies;
  f->stride = s.n * s.k;
  if (t == wtype::f32) { f->w32 = weight_copies<float>(s, copies); f->x32 = input_vector<float>(s.k); }
  else { f->w16 = weight_copies<tstream::bf16>(s, copies); f->x16 = input_vector<tstream::bf16>(s.k); }
  f->y = tstream::aligned_buffer<float>(s.n);
  return f;
}

// ---- Eigen -----------------------------------------------------------------

#if defined(TSTREAM_BENCH_HAVE_EIGEN)
template <class T>
void eigen_call(tstream::thread_team& team, const T* w, const T* x, T* y, gemv_shape s) {
  using mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  team.run([&](int m) {
    const auto [r0, r1] = share(s.n, team.size(), m, 16);
    const Eigen::Index rows = Eigen::Index(r1 - r0), k = Eigen::Index(s.k);
    Eigen::Map<const mat> W(w + r0 * s.k, rows, k);
    Eigen::Map<const vec> X(x, k);
    Eigen::Map<vec> Y(y + r0, rows);
    Y.noalias() = W * X;
  });
}

// Eigen's own bfloat16 copies of a bf16 fixture (same bits).
struct eigen_bf16_fixture {
  plain_fixture plain;
  tstream::aligned_buffer<Eigen::bfloat16> w, x, y;
};

std::shared_ptr<eigen_bf16_fixture> make_eigen_bf16(gemv_shape s, std::size_t copies) {
  auto f = std::make_shared<eigen_bf16_fixture>();
  f->plain = std::move(*make_plain(s, wtype::bf16, copies));
  static_assert(sizeof(Eigen::bfloat16) == sizeof(tstream::bf16));
  f->w = tstream::aligned_buffer<Eigen::bfloat16>(f->plain.w16.size());
  std::memcpy(static_cast<void*>(f->w.data()), f->plain.w16.data(), f->plain.w16.bytes());
  f->plain.w16 = {};
  f->x = tstream::aligned_buffer<Eigen::bfloat16>(s.k);
  std::memcpy(static_cast<void*>(f->x.data()), f->plain.x16.data(), f->plain.x16.bytes());
  f->y = tstream::aligned_buffer<Eigen::bfloat16>(s.n);
  return f;
}
#endif

void BM_gemv_eigen(benchmark::State& state, const std::string& key, gemv_shape s, wtype t, int threads,
                   std::size_t copies) {
#if defined(TSTREAM_BENCH_HAVE_EIGEN)
  // Before the peer runs: its pool may spin for a while after its last call.
  const double ref = gemv_reference_bw(s, t, threads, copies);
  const std::size_t stride = s.n * s.k;
  std::size_t c = 0;
  double sec = 0;
  if (t == wtype::f32) {
    auto& f = reuse_fixture<plain_fixture>(key, [&] { return make_plain(s, t, copies); });
    pinned_team pt(threads);
    eigen_call(pt.team, f.w32.data(), f.x32.data(), f.y.data(), s);
    if (!rows_match(state, s, t, [&](std::size_t r) { return double(f.y[r]); }, 1e-5)) return;
    sec = timed_loop(state, [&] {
      eigen_call(pt.team, f.w32.data() + c * stride, f.x32.data(), f.y.data(), s);
      c = c + 1 == copies ? 0 : c + 1;
    });
    benchmark::DoNotOptimize(f.y.data());
  } else {
    auto& f = reuse_fixture<eigen_bf16_fixture>(key, [&] { return make_eigen_bf16(s, copies); });
    pinned_team pt(threads);
    eigen_call(pt.team, f.w.data(), f.x.data(), f.y.data(), s);
    if (!rows_match(state, s, t, [&](std::size_t r) { return double(float(f.y[r])); }, 5e-3)) return;
    sec = timed_loop(state, [&] {
      eigen_call(pt.team, f.w.data() + c * stride, f.x.data(), f.y.data(), s);
      c = c + 1 == copies ? 0 : c + 1;
    });
    benchmark::DoNotOptimize(f.y.data());
  }
  set_gemv_counters(state, s, t, sec, ref);
#else
  (void)key, (void)s, (void)t, (void)threads, (void)copies;
  state.SkipWithError("built without Eigen");
  for (auto _ : state) {}
#endif
}

// ---- OpenBLAS --------------------------------------------------------------

void BM_gemv_openblas(benchmark::State& state, const std::string& key, gemv_shape s, wtype t, int threads,
                      std::size_t copies) {
#if defined(TSTREAM_BENCH_HAVE_OPENBLAS)
  // Before the peer runs: its pool may spin for a while after its last call.
  const double ref = gemv_reference_bw(s, t, threads, copies);
  auto& f = reuse_fixture<plain_fixture>(key, [&] { return make_plain(s, t, copies); });
  openblas_set_num_threads(threads);
  const blasint n = blasint(s.n), k = blasint(s.k);
  auto call = [&](std::size_t c) {
    if (t == wtype::f32) {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, 1.0f, f.w32.data() + c * f.stride, k, f.x32.data(), 1, 0.0f,
                  f.y.data(), 1);
    } else {
#if defined(TSTREAM_BENCH_HAVE_OPENBLAS_SBGEMV)
      static_assert(sizeof(bfloat16) == sizeof(tstream::bf16));
      cblas_sbgemv(CblasRowMajor, CblasNoTrans, n, k, 1.0f,
                   reinterpret_cast<const bfloat16*>(f.w16.data() + c * f.stride), k,
                   reinterpret_cast<const bfloat16*>(f.x16.data()), 1, 0.0f, f.y.data(), 1);
#endif
    }
  };
  call(0);
  if (!rows_match(state, s, t, [&](std::size_t r) { return double(f.y[r]); }, 1e-5)) return;
  std::size_t c = 0;
  const double sec = timed_loop(state, [&] {
    call(c);
    c = c + 1 == copies ? 0 : c + 1;
  });
  benchmark::DoNotOptimize(f.y.data());
  set_gemv_counters(state, s, t, sec, ref);
#else
  (void)key, (void)s, (void)t, (void)threads, (void)copies;
  state.SkipWithError("built without OpenBLAS");
  for (auto _ : state) {}
#endif
}

// ---- oneDNN ----------------------------------------------------------------

#if defined(TSTREAM_BENCH_HAVE_ONEDNN)
struct onednn_fixture {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  dnnl::matmul prim;
  std::string impl;
  dnnl::memory src, dst;
  std::vector<dnnl::memory> weights;                       // `copies` reordered copies
  std::vector<std::unordered_map<int, dnnl::memory>> args;  // one argument set per copy
};

std::shared_ptr<onednn_fixture> make_onednn(gemv_shape s, wtype t, std::size_t copies) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  auto f = std::make_shared<onednn_fixture>();
  const dnnl::memory::dim K = dnnl::memory::dim(s.k), N = dnnl::memory::dim(s.n);
  const dt sdt = t == wtype::f32 ? dt::f32 : t == wtype::bf16 ? dt::bf16 : dt::u8;
  const dt wdt = t == wtype::f32 ? dt::f32 : t == wtype::bf16 ? dt::bf16 : dt::s8;
  const dnnl::memory::desc src_md({1, K}, sdt, tag::ab), wei_md({K, N}, wdt, tag::any),
      dst_md({1, N}, dt::f32, tag::ab);
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, wei_md, dst_md), f->eng);
  f->prim = dnnl::matmul(pd);
  f->impl = pd.impl_info_str();

  // The weights as the user holds them: W row-major N x K is the K x N
  // weights matrix in "ba" order. f32 is reordered (and for bf16 converted)
  // straight from the fp32 source; int8 is quantised first.
  tstream::aligned_buffer<std::int8_t> w8;
  dnnl::memory user;
  if (t == wtype::i8) {
    w8 = weight_copies<std::int8_t>(s, 1);
    user = dnnl::memory({{K, N}, dt::s8, tag::ba}, f->eng, w8.data());
  } else {
    user = dnnl::memory({{K, N}, dt::f32, tag::ba}, f->eng, const_cast<float*>(source_weights(s.n * s.k)));
  }
  for (std::size_t c = 0; c < copies; ++c) {
    dnnl::memory w(pd.weights_desc(), f->eng);
    dnnl::reorder(user, w).execute(f->strm, user, w);
    f->weights.push_back(w);
  }
  f->strm.wait();

  f->src = dnnl::memory(pd.src_desc(), f->eng);
  f->dst = dnnl::memory(pd.dst_desc(), f->eng);
  if (t == wtype::f32) {
    auto x = input_vector<float>(s.k);
    std::memcpy(f->src.get_data_handle(), x.data(), x.bytes());
  } else if (t == wtype::bf16) {
    auto x = input_vector<tstream::bf16>(s.k);
    std::memcpy(f->src.get_data_handle(), x.data(), x.bytes());
  } else {
    auto x = input_vector<std::uint8_t>(s.k);
    std::memcpy(f->src.get_data_handle(), x.data(), x.bytes());
  }
  for (auto& w : f->weights)
    f->args.push_back({{DNNL_ARG_SRC, f->src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, f->dst}});
  return f;
}
#endif

void BM_gemv_onednn(benchmark::State& state, const std::string& key, gemv_shape s, wtype t, int threads,
                    std::size_t copies) {
#if defined(TSTREAM_BENCH_HAVE_ONEDNN)
  // Before the peer runs: its pool may spin for a while after its last call.
  const double ref = gemv_reference_bw(s, t, threads, copies);
  omp_set_num_threads(threads);
  onednn_fixture* f = nullptr;
  try {
    f = &reuse_fixture<onednn_fixture>(key, [&] { return make_onednn(s, t, copies); });
  } catch (const dnnl::error& e) {
    state.SkipWithError((std::string("oneDNN: ") + e.what()).c_str());
    for (auto _ : state) {}
    return;
  }
  if (f->impl.rfind("ref", 0) == 0) {  // reference C loops: not a peer worth timing
    state.SkipWithError(("oneDNN has only its reference implementation here: " + f->impl).c_str());
    for (auto _ : state) {}
    return;
  }
  f->prim.execute(f->strm, f->args[0]);
  f->strm.wait();
  const float* y = static_cast<const float*>(f->dst.get_data_handle());
  if (!rows_match(state, s, t, [&](std::size_t r) { return double(y[r]); }, 1e-5)) return;
  std::size_t c = 0;
  const double sec = timed_loop(state, [&] {
    f->prim.execute(f->strm, f->args[c]);
    f->strm.wait();
    c = c + 1 == copies ? 0 : c + 1;
  });
  state.SetLabel(f->impl);
  set_gemv_counters(state, s, t, sec, ref);
#else
  (void)key, (void)s, (void)t, (void)threads, (void)copies;
  state.SkipWithError("built without oneDNN");
  for (auto _ : state) {}
#endif
}

void run_peer(benchmark::State& state, peer p, const std::string& key, gemv_shape s, wtype t, int threads,
              std::size_t copies) {
  settle(key);
  switch (p) {
    case peer::eigen: BM_gemv_eigen(state, key, s, t, threads, copies); break;
    case peer::openblas: BM_gemv_openblas(state, key, s, t, threads, copies); break;
    case peer::onednn: BM_gemv_onednn(state, key, s, t, threads, copies); break;
  }
}

}  // namespace

void register_gemv_peers() {
  for (const bool cold : {false, true})
    for (gemv_shape s : gemv_shapes)
      for (wtype t : all_wtypes)
        for (int threads : gemv_threads)
          for (peer p : {peer::eigen, peer::openblas, peer::onednn}) {  // peers side by side
            if (!supports(p, t)) continue;
            const std::size_t copies = cold ? cold_copies(weight_bytes(s, t)) : 1;
            if (copies == 0) continue;  // the rotation would not fit in memory
            const std::string bm = gemv_name(cold ? "BM_gemv_cold" : "BM_gemv", name(p), t, s, threads);
            gemv_settings(benchmark::RegisterBenchmark(
                bm.c_str(), [=](benchmark::State& st) { run_peer(st, p, bm, s, t, threads, copies); }));
          }
}

void add_peer_context() {
#if defined(TSTREAM_BENCH_HAVE_EIGEN)
  benchmark::AddCustomContext("eigen", std::to_string(EIGEN_WORLD_VERSION) + "." +
                                           std::to_string(EIGEN_MAJOR_VERSION) + "." +
                                           std::to_string(EIGEN_MINOR_VERSION));
#endif
#if defined(TSTREAM_BENCH_HAVE_OPENBLAS)
  benchmark::AddCustomContext("openblas", std::string(openblas_get_config()) + "; core " + openblas_get_corename());
#endif
#if defined(TSTREAM_BENCH_HAVE_ONEDNN)
  const dnnl_version_t* v = dnnl_version();
  benchmark::AddCustomContext("onednn", std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                                            std::to_string(v->patch) + " (cpu runtime " +
                                            (v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "other") + ")");
#endif
  benchmark::AddCustomContext("openmp_max_threads", std::to_string(omp_get_max_threads()));
}

}  // namespace tstream_bench
